//! Allgather: every rank gets every rank's block, by recursive doubling, Bruck, or a ring.

use crate::p2p::{PointToPoint, step_tag, tag};
use crate::wire::{decode_blocks, encode_blocks};

/// Gives every rank every rank's `block`, in rank order.
///
/// Blocks may differ in size. With `large == false`: recursive doubling when `size` is a power
/// of two, Bruck's algorithm otherwise, both `ceil(log2(size))` rounds whose messages carry
/// several blocks. With `large == true`: a ring of `size - 1` steps, each forwarding one block
/// to the next rank, which is bandwidth-optimal (see
/// [`ALLGATHER_LARGE`](crate::tuning::ALLGATHER_LARGE)). Every rank must pass the same `large`.
///
/// Errors: a malformed message.
pub fn allgather<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: Vec<u8>,
    large: bool,
) -> Result<Vec<Vec<u8>>, P::Error> {
    let (rank, size) = (p.rank(), p.size());
    if rank >= size {
        return Err(p.malformed(format!("allgather: rank {rank} out of range for {size} ranks")));
    }
    if large {
        ring(p, seq, block)
    } else if size.is_power_of_two() {
        recursive_doubling(p, seq, block)
    } else {
        bruck(p, seq, block)
    }
}

/// Recursive doubling (size a power of two): in round `k` a rank swaps everything it has with
/// `rank ^ 2^k`, doubling its aligned range of blocks.
fn recursive_doubling<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: Vec<u8>,
) -> Result<Vec<Vec<u8>>, P::Error> {
    let (rank, size) = (p.rank(), p.size());
    // The blocks of ranks rank & !(mask - 1) .. + mask.
    let mut blocks = vec![block];
    let (mut mask, mut round) = (1, 0);
    while mask < size {
        let partner = rank ^ mask;
        let t = tag(seq, round);
        let msg = p.sendrecv(partner, t, &encode_blocks(&blocks), partner, t)?;
        let mut theirs = decode_blocks(p, &msg, mask, &format!("allgather: blocks from rank {partner}"))?;
        if partner < rank {
            theirs.append(&mut blocks);
            blocks = theirs;
        } else {
            blocks.append(&mut theirs);
        }
        mask <<= 1;
        round += 1;
    }
    Ok(blocks)
}

/// Bruck's algorithm (any size): a rank holds the blocks of `rank, rank + 1, ...`; in round `k`
/// it sends the first `min(2^k, size - 2^k)` of them to `rank - 2^k` and appends as many from
/// `rank + 2^k`. A final rotation puts the blocks in rank order.
fn bruck<P: PointToPoint + ?Sized>(p: &P, seq: u32, block: Vec<u8>) -> Result<Vec<Vec<u8>>, P::Error> {
    let (rank, size) = (p.rank(), p.size());
    let mut blocks = Vec::with_capacity(size);
    blocks.push(block);
    let (mut distance, mut round) = (1, 0);
    while distance < size {
        let count = distance.min(size - distance);
        let (to, from) = ((rank + size - distance) % size, (rank + distance) % size);
        let t = tag(seq, round);
        let ours = blocks.get(..count).ok_or_else(|| p.malformed("allgather: too few blocks".to_string()))?;
        let msg = p.sendrecv(to, t, &encode_blocks(ours), from, t)?;
        blocks.extend(decode_blocks(p, &msg, count, &format!("allgather: blocks from rank {from}"))?);
        distance *= 2;
        round += 1;
    }
    blocks.rotate_right(rank);
    Ok(blocks)
}

/// Ring: in step `s` a rank passes block `rank - s` to the next rank and receives block
/// `rank - s - 1` from the previous one.
fn ring<P: PointToPoint + ?Sized>(p: &P, seq: u32, block: Vec<u8>) -> Result<Vec<Vec<u8>>, P::Error> {
    let (rank, size) = (p.rank(), p.size());
    let mut blocks = vec![Vec::new(); size];
    let (next, prev) = ((rank + 1) % size, (rank + size - 1) % size);
    let missing = |i| p.malformed(format!("allgather: no block slot {i}"));
    *blocks.get_mut(rank).ok_or_else(|| missing(rank))? = block;
    for s in 0..size - 1 {
        let (send, recv) = ((rank + size - s) % size, (rank + 2 * size - s - 1) % size);
        let t = step_tag(seq, s);
        let got = p.sendrecv(next, t, blocks.get(send).ok_or_else(|| missing(send))?, prev, t)?;
        *blocks.get_mut(recv).ok_or_else(|| missing(recv))? = got;
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{LARGE_SIZES, SIZES, bytes, run};
    use crate::threads::ThreadError;
    use crate::tuning::ALLGATHER_LARGE;

    /// Every rank gets every block in rank order, for every size and algorithm, with empty,
    /// uneven and threshold-straddling blocks.
    #[test]
    fn every_size_and_algorithm() {
        let shapes: [&dyn Fn(usize) -> usize; 4] =
            [&|_| 0, &|r| r * 3, &|r| ALLGATHER_LARGE - 1 + r % 3, &|r| if r % 3 == 1 { 0 } else { 777 }];
        for size in SIZES {
            let cases: Vec<Vec<Vec<u8>>> = (0..shapes.len())
                .map(|c| (0..size).map(|r| bytes((c * 1000 + r) as u64, shapes[c](r))).collect())
                .collect();
            run(size, |p| {
                let mut seq = 0;
                for blocks in &cases {
                    for large in [false, true] {
                        let got = allgather(&p, seq, blocks[p.rank()].clone(), large).expect("allgather");
                        assert!(got == *blocks, "size {size} seq {seq}");
                        seq += 1;
                    }
                }
            });
        }
    }

    /// Several MiB in all, around the ring.
    #[test]
    fn large() {
        for size in LARGE_SIZES {
            let blocks: Vec<Vec<u8>> = (0..size).map(|r| bytes(r as u64, 1024 * 1024 + r)).collect();
            run(size, |p| {
                let got = allgather(&p, 0, blocks[p.rank()].clone(), true).expect("allgather");
                assert!(got == blocks, "size {size}");
            });
        }
    }

    /// A malformed block list is an error, not a panic or a hang, with both small-block
    /// algorithms.
    #[test]
    fn malformed() {
        for size in [2, 3] {
            let out = run(size, |p| match p.rank() {
                0 => Some(allgather(&p, 0, b"a".to_vec(), false)),
                1 => {
                    p.send(0, tag(0, 0), &[9; 5]).expect("send");
                    None
                }
                _ => None,
            });
            assert!(matches!(out[0], Some(Err(ThreadError::Malformed(_)))), "size {size}: {out:?}");
        }
    }
}
