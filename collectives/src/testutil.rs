//! Helpers shared by the tests: deterministic data, and running a group that returns results.

use crate::threads::{ThreadError, ThreadGroup, ThreadRank};
use std::sync::{Mutex, PoisonError};

/// Group sizes every algorithm is tested at: powers of two and everything in between.
pub(crate) const SIZES: std::ops::RangeInclusive<usize> = 1..=17;

/// A few sizes for the expensive (several MiB) cases.
pub(crate) const LARGE_SIZES: [usize; 5] = [1, 2, 3, 5, 8];

/// `len` pseudo-random bytes determined by `seed` (splitmix64), different for different seeds.
pub(crate) fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Element-wise wrapping sum of little-endian u64s, an operation for the reduction tests.
pub(crate) fn add_u64(acc: &mut [u8], other: &[u8]) {
    for (a, b) in acc.chunks_exact_mut(8).zip(other.chunks_exact(8)) {
        let sum = u64::from_le_bytes((&*a).try_into().expect("8 bytes"))
            .wrapping_add(u64::from_le_bytes(b.try_into().expect("8 bytes")));
        a.copy_from_slice(&sum.to_le_bytes());
    }
}

/// Rank `r`'s u64s for the reduction tests: `len` bytes of them.
pub(crate) fn u64s(r: usize, len: usize) -> Vec<u8> {
    bytes(r as u64 * 31 + len as u64, len)
}

/// Composition of affine maps `x -> a x + b` modulo 2^64, element-wise over 16-byte
/// elements `(a, b)`: `op(f, g)` applies `f` then `g`. Associative, not commutative, so a
/// reduction's result shows the order it combined the ranks in.
pub(crate) fn affine(left: &[u8], right: &[u8]) -> Result<Vec<u8>, ThreadError> {
    if left.len() != right.len() || left.len() % 16 != 0 {
        return Err(ThreadError::Malformed(format!("lengths {} and {}", left.len(), right.len())));
    }
    let word = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let mut out = Vec::with_capacity(left.len());
    for i in (0..left.len()).step_by(16) {
        let (fa, fb, ga, gb) = (word(left, i), word(left, i + 8), word(right, i), word(right, i + 8));
        out.extend_from_slice(&ga.wrapping_mul(fa).to_le_bytes());
        out.extend_from_slice(&ga.wrapping_mul(fb).wrapping_add(gb).to_le_bytes());
    }
    Ok(out)
}

/// [`affine`] in place, as the buffer algorithms fold: `acc` becomes `acc` then `other`.
pub(crate) fn affine_into(acc: &mut [u8], other: &[u8]) {
    let out = affine(acc, other).expect("16-byte elements, equal lengths");
    acc.copy_from_slice(&out);
}

/// Rank `r`'s contribution of `len` bytes (a multiple of 16) for [`affine`].
pub(crate) fn maps(r: usize, len: usize) -> Vec<u8> {
    bytes(r as u64 + 1, len)
}

/// The reduction tests' reference: every rank's `data` folded with `op`, one after the other.
pub(crate) fn reference(
    size: usize,
    len: usize,
    data: fn(usize, usize) -> Vec<u8>,
    op: fn(&mut [u8], &[u8]),
) -> Vec<u8> {
    let mut acc = data(0, len);
    for r in 1..size {
        op(&mut acc, &data(r, len));
    }
    acc
}

/// Runs `body` on a group of `size` thread ranks and returns what each rank returned, by rank.
pub(crate) fn run<T: Send>(size: usize, body: impl Fn(ThreadRank) -> T + Sync) -> Vec<T> {
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..size).map(|_| None).collect());
    ThreadGroup::run(size, |p| {
        use crate::p2p::PointToPoint;
        let rank = p.rank();
        let value = body(p);
        results.lock().unwrap_or_else(PoisonError::into_inner)[rank] = Some(value);
    });
    results
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .map(|r| r.expect("every rank returns"))
        .collect()
}

/// Runs an allgather into place (`allgather(rank, block, recv)`) at every size of [`SIZES`],
/// with blocks of 0, 5 and 2048 bytes, and checks that every rank gets every block in rank
/// order; at the sizes it does not take (`takes(size)` false) every rank must fail instead.
pub(crate) fn allgather_every_size(
    name: &str,
    allgather: impl Fn(&ThreadRank, &[u8], &mut [u8]) -> Result<(), ThreadError> + Sync,
    takes: impl Fn(usize) -> bool,
) {
    for size in SIZES {
        for len in [0, 5, 2048] {
            let all: Vec<u8> = (0..size).flat_map(|r| bytes(r as u64 + 99, len)).collect();
            let out = run(size, |p| {
                use crate::p2p::PointToPoint;
                let r = p.rank();
                let mut recv = vec![0; size * len];
                allgather(&p, &all[r * len..(r + 1) * len], &mut recv).map(|()| recv)
            });
            for got in out {
                match got {
                    Ok(got) => assert!(takes(size) && got == all, "{name}: size {size} len {len}"),
                    Err(e) => assert!(!takes(size), "{name}: size {size} len {len}: {e:?}"),
                }
            }
        }
    }
}

/// Runs an all-to-all into place (`alltoall(rank, send, recv)`) at every size of [`SIZES`],
/// with blocks of 0, 3 and 2048 bytes, and checks that every rank gets, from every source in
/// rank order, the block that source meant for it.
pub(crate) fn alltoall_every_size(
    alltoall: impl Fn(&ThreadRank, &[u8], &mut [u8]) -> Result<(), ThreadError> + Sync,
) {
    // what rank `s` sends rank `d`
    let block = |s: usize, d: usize, len: usize| bytes((s * 1000 + d) as u64, len);
    for size in SIZES {
        for len in [0, 3, 2048] {
            let out = run(size, |p| {
                use crate::p2p::PointToPoint;
                let r = p.rank();
                let send: Vec<u8> = (0..size).flat_map(|d| block(r, d, len)).collect();
                let mut recv = vec![0; size * len];
                alltoall(&p, &send, &mut recv).map(|()| recv)
            });
            for (r, got) in out.into_iter().enumerate() {
                let want: Vec<u8> = (0..size).flat_map(|s| block(s, r, len)).collect();
                assert!(got.is_ok_and(|got| got == want), "size {size} len {len} rank {r}");
            }
        }
    }
}

/// Runs an all-to-all of blocks of varying length (`alltoallv(rank, send, send_lens, recv,
/// recv_lens)`) at every size of [`SIZES`], each pair's block of its own length (none, one
/// byte, a few KiB), and checks that every rank gets every block meant for it.
pub(crate) fn alltoallv_every_size(
    alltoallv: impl Fn(&ThreadRank, &[u8], &[usize], &mut [u8], &[usize]) -> Result<(), ThreadError> + Sync,
) {
    // what rank `s` sends rank `d`
    let len = |s: usize, d: usize| (s * 7 + d * 3) % 5 * 1000 + (s + d) % 2;
    let block = |s: usize, d: usize| bytes((s * 1000 + d) as u64, len(s, d));
    for size in SIZES {
        let out = run(size, |p| {
            use crate::p2p::PointToPoint;
            let r = p.rank();
            let send: Vec<u8> = (0..size).flat_map(|d| block(r, d)).collect();
            let send_lens: Vec<usize> = (0..size).map(|d| len(r, d)).collect();
            let recv_lens: Vec<usize> = (0..size).map(|s| len(s, r)).collect();
            let mut recv = vec![0; recv_lens.iter().sum()];
            alltoallv(&p, &send, &send_lens, &mut recv, &recv_lens).map(|()| recv)
        });
        for (r, got) in out.into_iter().enumerate() {
            let want: Vec<u8> = (0..size).flat_map(|s| block(s, r)).collect();
            assert!(got.is_ok_and(|got| got == want), "size {size} rank {r}");
        }
    }
}

/// Block lengths that vary by rank (none, one byte, a few KiB), for the `v` collectives.
pub(crate) fn varying_len(r: usize) -> usize {
    (r * 7 + 2) % 5 * 1000 + r % 2
}

/// Runs an allgather of blocks of varying length (`allgatherv(rank, block, recv, lens)`) at
/// every size of [`SIZES`], rank `r`'s block [`varying_len`]`(r)` bytes long, and checks that
/// every rank gets every block in rank order; at the sizes it does not take (`takes(size)`
/// false) every rank must fail instead.
pub(crate) fn allgatherv_every_size(
    name: &str,
    allgatherv: impl Fn(&ThreadRank, &[u8], &mut [u8], &[usize]) -> Result<(), ThreadError> + Sync,
    takes: impl Fn(usize) -> bool,
) {
    for size in SIZES {
        let lens: Vec<usize> = (0..size).map(varying_len).collect();
        let blocks: Vec<Vec<u8>> = (0..size).map(|r| bytes(r as u64 + 5, lens[r])).collect();
        let all = blocks.concat();
        let out = run(size, |p| {
            use crate::p2p::PointToPoint;
            let mut recv = vec![0; all.len()];
            allgatherv(&p, &blocks[p.rank()], &mut recv, &lens).map(|()| recv)
        });
        for got in out {
            match got {
                Ok(got) => assert!(takes(size) && got == all, "{name}: size {size}"),
                Err(e) => assert!(!takes(size), "{name}: size {size}: {e:?}"),
            }
        }
    }
}
