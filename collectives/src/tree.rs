//! Allreduce of equal-length buffers down and up a binomial tree: every rank's buffer reduced
//! up the tree to rank 0, in rank order, then the result broadcast down it, each message
//! received straight into place.
//!
//! It moves `2 (size - 1)` messages of the whole buffer, where recursive doubling
//! ([`allreduce_doubling_into`](crate::allreduce_doubling_into)) moves `size log2(size)`, in
//! twice as many steps: where ranks outnumber cores, the cores' copying and wake-ups, not the
//! steps, are the limit, and from some number of ranks the fewer messages win (see
//! [`ALLREDUCE_TREE_MIN_RANKS`](crate::tuning::ALLREDUCE_TREE_MIN_RANKS)).

use crate::binomial;
use crate::p2p::{PointToPoint, tag};

/// As [`allreduce_doubling_into`](crate::allreduce_doubling_into): every rank's `send` reduced
/// in rank order into every rank's `recv` (of the same length), with `op(acc, other)` setting
/// `acc` to `op(acc, other)` element-wise; by a binomial tree to rank 0 and back.
///
/// Each rank folds its children's partial results, nearest first, into its own (so `acc`
/// always holds the lower ranks' part), and sends the result to its parent; rank 0 ends with
/// the whole reduction and sends it down the same tree, every rank to its children at once
/// ([`PointToPoint::send_each`]). Every rank ends with the same bits, reduced in one place.
///
/// Errors: a transport error, or buffers of other lengths than this rank's (a peer's message of
/// another length fails the receive).
pub fn allreduce_tree_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    recv: &mut [u8],
    op: &dyn Fn(&mut [u8], &[u8]),
) -> Result<(), P::Error> {
    let (rank, size) = crate::reduce::buffers_of(p, send, recv)?;
    let parent = binomial::parent(rank);
    let children: Vec<usize> = binomial::children(rank, size).collect();
    let (up, down) = (tag(seq, 0), tag(seq, 1));
    if children.is_empty() {
        // a leaf sends its own buffer as it is
        match parent {
            Some(parent) => p.send(parent, up, send)?,
            None => recv.copy_from_slice(send),
        }
    } else {
        recv.copy_from_slice(send);
        let mut theirs = vec![0u8; send.len()];
        for &child in &children {
            p.recv_into(child, up, &mut theirs)?;
            op(recv, &theirs);
        }
        if let Some(parent) = parent {
            p.send(parent, up, recv)?;
        }
    }
    if let Some(parent) = parent {
        p.recv_into(parent, down, recv)?;
    }
    // farthest first, as the broadcast's tree; every child's copy at once where the transport
    // waits for copies
    let recv = &*recv;
    let sends: Vec<(usize, &[u8])> = children.iter().rev().map(|&c| (c, recv)).collect();
    p.send_each(down, &sends, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{SIZES, affine_into, maps, reference, run};

    /// Every size from 1 to 17 with a non-commutative operation (composing affine maps: the
    /// rank order shows), and buffers of other lengths refused.
    #[test]
    fn reduces_in_rank_order_at_every_size() {
        let len = 80;
        for size in SIZES {
            let got = run(size, |p| {
                let mut recv = vec![0u8; len];
                allreduce_tree_into(&p, 3, &maps(p.rank(), len), &mut recv, &affine_into).expect("allreduce");
                recv
            });
            let want = reference(size, len, maps, affine_into);
            assert!(got.iter().all(|g| *g == want), "size {size}");
        }
        let out = run(3, |p| {
            let n = if p.rank() == 2 { 32 } else { 16 };
            allreduce_tree_into(&p, 0, &vec![0; n], &mut vec![0; n], &affine_into).is_err()
        });
        assert!(out[0] && out[2], "a longer buffer fails its parent's receive and itself: {out:?}");
        let bad = run(1, |p| allreduce_tree_into(&p, 0, &[0; 16], &mut [0; 32], &affine_into).is_err());
        assert!(bad[0]);
    }
}
