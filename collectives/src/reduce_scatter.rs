//! Reduce-scatter of equal blocks (`MPI_Reduce_scatter_block`): every rank's `send` holds one
//! block per rank, and rank `r` ends with the element-wise reduction of every rank's block `r`.
//!
//! By pairwise exchange, for ranks with a core each (where ranks share cores the runtime sends
//! every block at once instead, through its all-to-all, and folds them in rank order).

use crate::p2p::{PointToPoint, rank_and_size, step_tag};

/// Every rank's block `r` of `send` (`size` blocks as long as `recv`) folded element-wise with
/// `op` into rank `r`'s `recv`. Pairwise exchange: `recv` starts as this rank's own block, and
/// in step `k = 1..size` rank `r` sends its block `r + k` to rank `r + k` and receives rank
/// `r - k`'s block for it into a scratch block, folded into `recv` at once. One block of
/// scratch, the folds always in the same order (the own block, then ranks `r - 1`, `r - 2`,
/// ...), so the same bits every run; `op(acc, other)` folds `other` into `acc` and must be
/// commutative and associative.
///
/// Errors: a transport error, a `send` of another length than `size` times `recv`'s, or a block
/// of another length from a peer.
pub fn pairwise_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    recv: &mut [u8],
    op: &dyn Fn(&mut [u8], &[u8]),
) -> Result<(), P::Error> {
    let (rank, size) = rank_and_size(p, "reduce_scatter", 0)?;
    let len = recv.len();
    if Some(send.len()) != len.checked_mul(size) {
        let s = send.len();
        return Err(p.malformed(format!("reduce_scatter: {s} bytes to send, not {size} blocks of {len}")));
    }
    let block = |d: usize| send.get(d * len..(d + 1) * len).unwrap_or_default();
    recv.copy_from_slice(block(rank));
    let mut scratch = vec![0; len];
    for k in 1..size {
        let (to, from) = ((rank + k) % size, (rank + size - k) % size);
        let t = step_tag(seq, k);
        p.sendrecv_into(to, t, block(to), from, t, &mut scratch)?;
        op(recv, &scratch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{LARGE_SIZES, SIZES, add_u64, run, u64s};
    use crate::threads::ThreadError;

    /// Rank `r`'s block `d` of the sum: the sum over every rank's `send`, cut at `d`.
    fn want(size: usize, len: usize, d: usize) -> Vec<u8> {
        let mut acc = vec![0; len];
        for s in 0..size {
            add_u64(&mut acc, &u64s(s, size * len)[d * len..(d + 1) * len]);
        }
        acc
    }

    /// Every rank's block of the sum at every size, with empty and several-MiB blocks.
    #[test]
    fn every_size() {
        let cases = SIZES.flat_map(|size| [(size, 0), (size, 8), (size, 8 * 129)]);
        let large = LARGE_SIZES.into_iter().map(|size| (size, 4 * 1024 * 1024 / size / 8 * 8));
        for (size, len) in cases.chain(large) {
            let out = run(size, |p| {
                let mut recv = vec![0; len];
                pairwise_into(&p, 3, &u64s(p.rank(), size * len), &mut recv, &add_u64).map(|()| recv)
            });
            for (r, got) in out.into_iter().enumerate() {
                assert!(got.is_ok_and(|got| got == want(size, len, r)), "size {size} len {len} rank {r}");
            }
        }
    }

    /// A `send` of the wrong length is refused before anything is sent; a rank whose blocks are
    /// longer than its peers' makes them fail, and nobody waits for ever.
    #[test]
    fn wrong_lengths() {
        let out = run(2, |p| pairwise_into(&p, 0, &[0; 24], &mut [0; 8], &add_u64).err());
        assert!(out.iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
        let out = run(3, |p| {
            let len = if p.rank() == 1 { 16 } else { 8 };
            pairwise_into(&p, 0, &vec![1; 3 * len], &mut vec![0; len], &add_u64).err()
        });
        assert!(out.iter().all(Option::is_some), "{out:?}");
    }
}
