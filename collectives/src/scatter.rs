//! Scatter: the root hands each rank its own block, down a binomial tree.

use crate::binomial;
use crate::p2p::{PointToPoint, rank_and_size, tag};
use crate::wire::{decode_ranges, send_blocks};

/// Sends block `r` of the root's `blocks` to rank `r`; every rank returns its block.
///
/// With `large` (the same on every rank) the root sends each block directly; otherwise:
///
/// The root passes exactly `size` blocks, which may differ in size; the other ranks pass
/// `None`. The blocks travel down a binomial tree rooted at `root`: each message carries the
/// blocks of the receiver's whole subtree, so there are `ceil(log2(size))` rounds.
///
/// Errors: a malformed message, `root` out of range, or the root passing `None` or a number of
/// blocks other than `size`.
pub fn scatter<P: PointToPoint + ?Sized, B: AsRef<[u8]>>(
    p: &P,
    seq: u32,
    root: usize,
    blocks: Option<&[B]>,
    large: bool,
) -> Result<Vec<u8>, P::Error> {
    let (rank, size) = rank_and_size(p, "scatter", root)?;
    if large {
        return linear(p, seq, root, blocks);
    }
    let vr = (rank + size - root) % size;
    let abs = |v: usize| (v + root) % size;
    let received;
    // The blocks of this rank's subtree, for relative ranks vr, vr + 1, ..., borrowed from the
    // root's buffers or from the received message: blocks are copied only into the result.
    let mut mine: Vec<&[u8]> = match binomial::parent(vr) {
        None => {
            let blocks =
                blocks.ok_or_else(|| p.malformed("scatter: the root passed no blocks".to_string()))?;
            if blocks.len() != size {
                return Err(p.malformed(format!(
                    "scatter: the root passed {} blocks for {size} ranks",
                    blocks.len()
                )));
            }
            (0..size).map(|v| blocks[abs(v)].as_ref()).collect()
        }
        Some(parent) => {
            received = p.recv(abs(parent), tag(seq, 0))?;
            let what = format!("scatter: blocks from rank {}", abs(parent));
            let ranges = decode_ranges(p, &received, binomial::subtree_len(vr, size), &what)?;
            ranges.into_iter().map(|r| &received[r]).collect()
        }
    };
    for child in binomial::children(vr, size).rev() {
        // The farthest child's subtree is the tail of what is left.
        let offset = child - vr;
        if offset >= mine.len() {
            return Err(p.malformed(format!("scatter: no blocks left for relative rank {child}")));
        }
        let theirs = mine.split_off(offset);
        send_blocks(p, abs(child), tag(seq, 0), &theirs)?;
    }
    mine.pop()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| p.malformed("scatter: no block left for this rank".to_string()))
}

/// The root sends each block straight to its rank: every block moves once.
fn linear<P: PointToPoint + ?Sized, B: AsRef<[u8]>>(
    p: &P,
    seq: u32,
    root: usize,
    blocks: Option<&[B]>,
) -> Result<Vec<u8>, P::Error> {
    let size = p.size();
    if p.rank() != root {
        return p.recv(root, tag(seq, 1));
    }
    let blocks = blocks.ok_or_else(|| p.malformed("scatter: the root passed no blocks".to_string()))?;
    if blocks.len() != size {
        return Err(p.malformed(format!("scatter: the root passed {} blocks for {size} ranks", blocks.len())));
    }
    for (dest, block) in blocks.iter().enumerate().filter(|&(d, _)| d != root) {
        p.send(dest, tag(seq, 1), block.as_ref())?;
    }
    Ok(blocks[root].as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{SIZES, bytes, run};
    use crate::threads::ThreadError;
    use crate::wire::encode_blocks;

    /// Rank r gets block r, for every size and root, with empty, uneven and larger blocks.
    #[test]
    fn every_size_and_root() {
        let shapes: [&dyn Fn(usize) -> usize; 4] =
            [&|_| 0, &|r| r * 3, &|r| (r * 7919) % 5000, &|r| 70_000 + r];
        for size in SIZES {
            for root in 0..size {
                let cases: Vec<Vec<Vec<u8>>> = (0..shapes.len())
                    .map(|c| (0..size).map(|r| bytes((c * 1000 + r) as u64, shapes[c](r))).collect())
                    .collect();
                run(size, |p| {
                    for (seq, blocks) in cases.iter().enumerate() {
                        let mine = (p.rank() == root).then_some(&blocks[..]);
                        let got = scatter(&p, seq as u32, root, mine, seq % 2 == 1).expect("scatter");
                        assert!(got == blocks[p.rank()], "size {size} root {root} case {seq}");
                    }
                });
            }
        }
    }

    /// Malformed block lists and bad arguments are errors, not panics or hangs.
    #[test]
    fn malformed() {
        for forged in
            [encode_blocks(&[b"a".to_vec(), b"b".to_vec()]), vec![1, 2, 3], u64::MAX.to_le_bytes().to_vec()]
        {
            let out = run(2, |p| {
                if p.rank() == 0 {
                    p.send(1, tag(0, 0), &forged).expect("send");
                    None
                } else {
                    Some(scatter::<_, Vec<u8>>(&p, 0, 0, None, false))
                }
            });
            assert!(matches!(out[1], Some(Err(ThreadError::Malformed(_)))), "{out:?}");
        }
        let out = run(1, |p| {
            (
                scatter(&p, 0, 0, Some(&[Vec::new(), Vec::new()][..]), false),
                scatter::<_, Vec<u8>>(&p, 1, 0, None, true),
            )
        });
        assert!(matches!(out[0], (Err(ThreadError::Malformed(_)), Err(ThreadError::Malformed(_)))));
    }
}
