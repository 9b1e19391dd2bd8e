//! The map's overhead: how many trivial items per second a dynamic map gets through.
//!
//! [`prun::Communicator::map_range`] over `0..N` of `|i| (i as u64).wrapping_mul(K) >> 7`
//! (`K` = `0x9E3779B97F4A7C15`), with no chunk size to give: the map sizes its batches from the
//! measured cost per item. Each item costs a nanosecond, so what is measured is the machinery:
//! batching, steal requests, sending the results to rank 0 and putting them in order. The rate
//! is `N` over rank 0's wall time for the map (between a barrier before it and its return at
//! the root, once every result is in).
//!
//! Rank 0 checks the number of results and a sample of them against a sequential computation,
//! then prints `items N`, `seconds S` and as its last line exactly `items_per_s X` (a whole
//! number). The job exits non-zero if a result is missing or wrong.
//!
//! `prun -n 2 target/release/maprate [N] [WORK_NS]` (default 20000000 items of no work). With
//! `WORK_NS`, every item also computes for that many nanoseconds (a busy loop), and the lines
//! `sequential_item_us T` and `efficiency E` come before `items_per_s`: `T` is what one item
//! costs in a plain loop on rank 0 (the fastest of three timings of 20000 items: the busy loop
//! overshoots its nanoseconds a little, and reads the clock), and `E` is the speedup over that
//! sequential loop per rank, `N x T / (ranks x wall time)`. With `WORK_NS` = 1000 it measures how
//! well tasks of a microsecond are spread.

use std::process::ExitCode;
use std::time::Instant;

/// The trivial item: a multiplicative hash of the index.
fn item(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7
}

/// Indices to check: both ends, the middle, and a spread of pseudo-random ones.
fn samples(n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let mut picks = vec![0, n / 2, n - 1];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..1000 {
        // xorshift64: enough to spread the sample over the whole range
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        picks.push((x % n as u64) as usize);
    }
    picks
}

/// Computes for `ns` nanoseconds.
fn busy(ns: u64) {
    let start = Instant::now();
    while start.elapsed().as_nanos() < u128::from(ns) {
        std::hint::spin_loop();
    }
}

/// Seconds one item of `work_ns` takes in a plain loop: the fastest of three timings of a few
/// thousand items (the fastest, so that a busy machine cannot flatter the efficiency).
fn sequential_cost(work_ns: u64) -> f64 {
    const ITEMS: usize = 20_000;
    (0..3)
        .map(|_| {
            let start = Instant::now();
            let mut sum = 0u64;
            for i in 0..ITEMS {
                busy(work_ns);
                sum = sum.wrapping_add(item(i));
            }
            std::hint::black_box(sum);
            start.elapsed().as_secs_f64() / ITEMS as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn run(n: usize, work_ns: u64) -> Result<bool, prun::Error> {
    let world = prun::init()?;
    let item_cost = if work_ns > 0 && world.rank() == 0 { sequential_cost(work_ns) } else { 0.0 };
    world.barrier()?;
    let start = Instant::now();
    let results = world.map_range(0, n, |i| {
        if work_ns > 0 {
            busy(work_ns);
        }
        item(i)
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let Some(results) = results else { return Ok(true) };
    if results.len() != n {
        eprintln!("maprate: {} results for {n} items", results.len());
        return Ok(false);
    }
    if let Some(i) = samples(n).into_iter().find(|&i| results[i] != item(i)) {
        eprintln!("maprate: item {i} is {}, expected {}", results[i], item(i));
        return Ok(false);
    }
    println!("items {n}");
    println!("seconds {seconds:.3}");
    if work_ns > 0 {
        let efficiency = n as f64 * item_cost / (world.size() as f64 * seconds);
        println!("sequential_item_us {:.3}", item_cost * 1e6);
        println!("efficiency {efficiency:.3}");
    }
    println!("items_per_s {}", (n as f64 / seconds).round() as u64);
    Ok(true)
}

fn main() -> ExitCode {
    let n = match std::env::args().nth(1) {
        None => 20_000_000,
        Some(a) => match a.replace('_', "").parse() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("maprate: N must be a whole number, not '{a}'; usage: maprate [N]");
                return ExitCode::from(2);
            }
        },
    };
    let work_ns = match std::env::args().nth(2).map(|a| a.parse::<u64>()) {
        None => 0,
        Some(Ok(ns)) => ns,
        Some(Err(_)) => {
            eprintln!("maprate: WORK_NS must be a whole number of nanoseconds; usage: maprate [N] [WORK_NS]");
            return ExitCode::from(2);
        }
    };
    match run(n, work_ns) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("maprate: {e}");
            ExitCode::FAILURE
        }
    }
}
