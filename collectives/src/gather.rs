//! Gather: the root collects every rank's block, up a binomial tree or straight.

use crate::binomial;
use crate::p2p::{PointToPoint, rank_and_size, tag};
use crate::wire::{decode_blocks, send_blocks};

/// Collects every rank's `block` on `root`, which returns them in rank order; others get `None`.
///
/// Blocks may differ in size. With `large == false` the blocks travel up a binomial tree rooted
/// at `root`, each message carrying a whole subtree's blocks (`ceil(log2(size))` rounds); with
/// `large == true` every rank sends its block straight to the root, which avoids forwarding big
/// blocks several times (see [`GATHER_LARGE`](crate::tuning::GATHER_LARGE)). Every rank must pass
/// the same `large`.
///
/// Errors: a malformed message or `root` out of range.
pub fn gather<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    block: Vec<u8>,
    large: bool,
) -> Result<Option<Vec<Vec<u8>>>, P::Error> {
    let (rank, size) = rank_and_size(p, "gather", root)?;
    if large {
        if rank != root {
            p.send(root, tag(seq, 1), &block)?;
            return Ok(None);
        }
        let mut blocks = Vec::with_capacity(size);
        let mut own = block;
        for src in 0..size {
            blocks.push(if src == rank { std::mem::take(&mut own) } else { p.recv(src, tag(seq, 1))? });
        }
        return Ok(Some(blocks));
    }
    let vr = (rank + size - root) % size;
    let abs = |v: usize| (v + root) % size;
    // The blocks of this rank's subtree received so far, for relative ranks vr, vr + 1, ...
    let mut mine = Vec::with_capacity(binomial::subtree_len(vr, size));
    mine.push(block);
    for child in binomial::children(vr, size) {
        let msg = p.recv(abs(child), tag(seq, 0))?;
        let what = format!("gather: blocks from rank {}", abs(child));
        mine.extend(decode_blocks(p, &msg, binomial::subtree_len(child, size), &what)?);
    }
    match binomial::parent(vr) {
        Some(parent) => {
            send_blocks(p, abs(parent), tag(seq, 0), &mine)?;
            Ok(None)
        }
        None => {
            mine.rotate_right(root);
            Ok(Some(mine))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{LARGE_SIZES, SIZES, bytes, run};
    use crate::threads::ThreadError;
    use crate::tuning::GATHER_LARGE;
    use crate::wire::encode_blocks;

    /// The root gets every block in rank order, for every size, root and algorithm, with empty,
    /// uneven and threshold-straddling blocks.
    #[test]
    fn every_size_root_and_algorithm() {
        let shapes: [&dyn Fn(usize) -> usize; 4] =
            [&|_| 0, &|r| r * 3, &|r| GATHER_LARGE - 1 + r % 3, &|r| if r % 2 == 0 { 0 } else { 1000 }];
        for size in SIZES {
            let cases: Vec<Vec<Vec<u8>>> = (0..shapes.len())
                .map(|c| (0..size).map(|r| bytes((c * 1000 + r) as u64, shapes[c](r))).collect())
                .collect();
            for root in 0..size {
                run(size, |p| {
                    let mut seq = 0;
                    for blocks in &cases {
                        for large in [false, true] {
                            let got = gather(&p, seq, root, blocks[p.rank()].clone(), large).expect("gather");
                            let want = (p.rank() == root).then_some(blocks);
                            assert!(got.as_ref() == want, "size {size} root {root} seq {seq}");
                            seq += 1;
                        }
                    }
                });
            }
        }
    }

    /// Several MiB per rank, straight to the root (and once up the tree).
    #[test]
    fn large() {
        for size in LARGE_SIZES {
            let blocks: Vec<Vec<u8>> = (0..size).map(|r| bytes(r as u64, 3 * 1024 * 1024 + r)).collect();
            let root = size - 1;
            run(size, |p| {
                for (seq, large) in [(0, true), (1, size == 5)] {
                    let got = gather(&p, seq, root, blocks[p.rank()].clone(), large).expect("gather");
                    assert!(got.as_ref() == (p.rank() == root).then_some(&blocks), "size {size}");
                }
            });
        }
    }

    /// A malformed block list from a child is an error, not a panic or a hang.
    #[test]
    fn malformed() {
        let out = run(2, |p| {
            if p.rank() == 1 {
                p.send(0, tag(0, 0), &encode_blocks(&[b"x"; 3])).expect("send");
                None
            } else {
                Some(gather(&p, 0, 0, Vec::new(), false))
            }
        });
        assert!(matches!(out[0], Some(Err(ThreadError::Malformed(_)))), "{out:?}");
    }
}
