//! All-to-all: every rank sends a distinct block to every rank, by pairwise exchange.

use crate::p2p::{PointToPoint, step_tag};

/// Sends `blocks[d]` to rank `d` for every `d`; returns the blocks received, indexed by source.
///
/// Every rank passes exactly `size` blocks, which may differ in size. Pairwise exchange: in step
/// `k = 1..size` rank `r` sends to `r + k` and receives from `r - k` (modulo `size`); its own
/// block is moved, not sent.
///
/// Errors: a transport error, or a number of blocks other than `size`.
pub fn alltoall<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    blocks: Vec<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, P::Error> {
    let (rank, size) = (p.rank(), p.size());
    if rank >= size || blocks.len() != size {
        let n = blocks.len();
        return Err(p.malformed(format!("alltoall: rank {rank} passed {n} blocks for {size} ranks")));
    }
    let mut blocks = blocks;
    let mut received = vec![Vec::new(); size];
    let missing = |i| p.malformed(format!("alltoall: no block slot {i}"));
    *received.get_mut(rank).ok_or_else(|| missing(rank))? =
        std::mem::take(blocks.get_mut(rank).ok_or_else(|| missing(rank))?);
    for k in 1..size {
        let (to, from) = ((rank + k) % size, (rank + size - k) % size);
        let t = step_tag(seq, k);
        let got = p.sendrecv(to, t, blocks.get(to).ok_or_else(|| missing(to))?, from, t)?;
        *received.get_mut(from).ok_or_else(|| missing(from))? = got;
        // Free each block once sent.
        if let Some(sent) = blocks.get_mut(to) {
            *sent = Vec::new();
        }
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{LARGE_SIZES, SIZES, bytes, run};
    use crate::threads::ThreadError;

    /// Block `(s, d)` of a test case: what rank `s` sends rank `d`.
    fn block(case: usize, s: usize, d: usize, len: usize) -> Vec<u8> {
        bytes((case * 10_000 + s * 100 + d) as u64, len)
    }

    /// Every rank gets, from every source, the block meant for it, for every size, with empty,
    /// uneven (varying per source and destination) and larger blocks.
    #[test]
    fn every_size() {
        let shapes: [fn(usize, usize) -> usize; 4] =
            [|_, _| 0, |s, d| s * 3 + d * 5, |s, d| (s * 7 + d * 13) % 4 * 20_000, |s, d| (s + d) % 2];
        for size in SIZES {
            run(size, |p| {
                let r = p.rank();
                for (case, shape) in shapes.iter().enumerate() {
                    let mine = (0..size).map(|d| block(case, r, d, shape(r, d))).collect();
                    let got = alltoall(&p, case as u32, mine).expect("alltoall");
                    let want: Vec<Vec<u8>> = (0..size).map(|s| block(case, s, r, shape(s, r))).collect();
                    assert!(got == want, "size {size} case {case}");
                }
            });
        }
    }

    /// Several MiB per rank.
    #[test]
    fn large() {
        for size in LARGE_SIZES {
            run(size, |p| {
                let r = p.rank();
                let len = |s: usize, d: usize| 4 * 1024 * 1024 / size + s + d;
                let mine = (0..size).map(|d| block(7, r, d, len(r, d))).collect();
                let got = alltoall(&p, 0, mine).expect("alltoall");
                assert!(
                    got.into_iter().enumerate().all(|(s, b)| b == block(7, s, r, len(s, r))),
                    "size {size}"
                );
            });
        }
    }

    /// The wrong number of blocks is an error, not a panic.
    #[test]
    fn wrong_block_count() {
        let out = run(1, |p| alltoall(&p, 0, vec![Vec::new(); 2]));
        assert!(matches!(out[0], Err(ThreadError::Malformed(_))));
    }
}
