//! Sorts keys spread over the ranks by regular sampling (PSRS): every rank ends with one
//! contiguous, sorted range of all the keys, rank 0 the lowest.
//!
//! Each rank makes `KEYS` pseudo-random keys (default 200000, seeded by its rank) and sorts
//! them; every rank's evenly spaced samples are gathered everywhere (`allgather_into`), which
//! gives every rank the same splitters; each rank cuts its sorted keys at the splitters into one
//! bucket per rank, tells every rank how many keys it will send it (`alltoall_into` of the
//! counts), sends the buckets straight out of its keys into place in their ranks' buffers
//! (`alltoallv_into`, no copy on the way), and sorts what it got. Checks: each rank's lowest
//! key is not below the previous rank's highest (`allgather_into` of the ranges), and no key was
//! lost or changed (the count and a sum of the keys, before and after, by `allreduce_into`).
//! Rank 0 prints `samplesort ok: N keys on P ranks, largest share S` and the job exits 0, or
//! says what is wrong and exits 1.
//!
//! `prun -n 8 target/release/samplesort [KEYS]`.

use prun::{Op, World};
use std::process::ExitCode;

/// The `i`-th key of rank `rank`: SplitMix64, so that runs are the same everywhere.
fn key(rank: usize, i: usize) -> u64 {
    let mut z = (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (i as u64).wrapping_add(1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The count of `keys` and their sum (wrapping), over every rank.
fn census(world: &World, keys: &[u64]) -> Result<[u64; 2], prun::Error> {
    let sum = keys.iter().fold(0u64, |a, &k| a.wrapping_add(k));
    let mut total = [0u64; 2];
    world.allreduce_into(&[keys.len() as u64, sum], &mut total, Op::Sum)?;
    Ok(total)
}

/// Sorts the keys over the ranks: `Ok` with rank 0's line (empty on the others), or `Err` with
/// what this rank found wrong. Every rank makes every collective call whatever it finds, so that
/// none waits for another that gave up.
fn sort(world: &World, n: usize) -> Result<Result<String, String>, prun::Error> {
    let (rank, size) = (world.rank(), world.size());
    let mut keys: Vec<u64> = (0..n).map(|i| key(rank, i)).collect();
    let before = census(world, &keys)?;
    keys.sort_unstable();
    // size - 1 evenly spaced samples from each rank, every rank's gathered and sorted
    let samples: Vec<u64> = (1..size).map(|j| keys.get(j * n / size).copied().unwrap_or(u64::MAX)).collect();
    let mut all = vec![0u64; samples.len() * size];
    world.allgather_into(&samples, &mut all)?;
    all.sort_unstable();
    // the sorted samples come in size - 1 groups of size, each about one quantile j / size (one
    // sample of that quantile from each rank): every rank takes the same splitters, the middle
    // of each group
    let splitters = (1..size).map(|j| all.get((j - 1) * size + size / 2).copied().unwrap_or(u64::MAX));
    // bucket d: the keys from splitter d - 1 (inclusive) to splitter d (exclusive)
    let mut cuts = vec![0];
    cuts.extend(splitters.map(|s| keys.partition_point(|&k| k < s)));
    cuts.push(keys.len());
    // the buckets lie in `keys` one after the other, in rank order, as the all-to-all takes them
    let counts: Vec<usize> = cuts.windows(2).map(|w| w[1] - w[0]).collect();
    let mut incoming = vec![0usize; size];
    world.alltoall_into(&counts, &mut incoming)?;
    let mut mine = vec![0u64; incoming.iter().sum()];
    world.alltoallv_into(&keys, &counts, &mut mine, &incoming)?;
    // each source's bucket is sorted: a k-way merge would do; sorting the whole is simpler
    mine.sort_unstable();
    let after = census(world, &mine)?;
    let range = [mine.first().copied().unwrap_or(u64::MAX), mine.last().copied().unwrap_or(0)];
    let mut ranges = vec![0u64; 2 * size];
    world.allgather_into(&range, &mut ranges)?;
    let mut shares = vec![0usize; size];
    world.allgather_into(&[mine.len()], &mut shares)?;
    // the ranges of the ranks that hold keys, in rank order, must not overlap
    let held: Vec<&[u64]> = ranges.chunks(2).zip(&shares).filter(|&(_, &n)| n > 0).map(|(r, _)| r).collect();
    let wrong = if before != after {
        Some(format!("keys lost or changed: {before:?} (count, sum) before, {after:?} after"))
    } else {
        held.windows(2)
            .find(|w| w[0][1] > w[1][0])
            .map(|w| format!("ranges out of order: {:?} then {:?}", w[0], w[1]))
    };
    Ok(match wrong {
        Some(wrong) => Err(wrong),
        None if rank > 0 => Ok(String::new()),
        None => {
            let largest = shares.iter().max().copied().unwrap_or(0);
            Ok(format!("samplesort ok: {} keys on {size} ranks, largest share {largest}", before[0]))
        }
    })
}

fn main() -> ExitCode {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let run = || -> Result<Result<String, String>, prun::Error> { sort(&prun::init()?, n) };
    match run() {
        Ok(Ok(line)) if line.is_empty() => ExitCode::SUCCESS,
        Ok(Ok(line)) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Ok(Err(wrong)) => {
            eprintln!("samplesort: {wrong}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("samplesort: {e}");
            ExitCode::FAILURE
        }
    }
}
