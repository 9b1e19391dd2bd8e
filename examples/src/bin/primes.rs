//! The classic parallel-map benchmark: trial-division primality of six large numbers, repeated.
//!
//! The list is `112272535095293, 112582705942171, 112272535095293, 115280095190773,
//! 115797848077099, 1099726899285419` (the first five prime, the last not) repeated `REPS`
//! times. It is tested three ways, each timed on rank 0 from a barrier until it has every answer
//! ([`prun_examples::timed`]):
//!
//! - `sequential`: rank 0 alone, while the other ranks wait at the barrier;
//! - `static`: [`prun::Communicator::map_static`], one contiguous block per rank;
//! - `dynamic`: [`prun::Communicator::map`], blocks rebalanced by work stealing.
//!
//! Rank 0 prints the six distinct answers (`112272535095293 prime`, ...), then
//! `sequential S s`, `static S s speedup X` and `dynamic S s speedup X`. The job exits non-zero
//! if an answer is wrong or differs between modes.
//!
//! `prun -n 2 target/release/primes [REPS]` (default 48 repetitions: about 2.6 s sequentially on
//! one core of this project's machine).

use prun_examples::timed;
use std::process::ExitCode;

/// The numbers to test, as in the classic `concurrent.futures` example.
const NUMBERS: [u64; 6] =
    [112272535095293, 112582705942171, 112272535095293, 115280095190773, 115797848077099, 1099726899285419];
/// Whether each of [`NUMBERS`] is prime.
const EXPECTED: [bool; 6] = [true, true, true, true, true, false];
/// Default number of repetitions of [`NUMBERS`].
const DEFAULT_REPS: usize = 48;

/// Primality by trial division by 2 and every odd number up to the square root.
// `u64::is_multiple_of` needs Rust 1.87; the workspace supports 1.85
#[allow(clippy::manual_is_multiple_of)]
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3u64;
    // d * d <= n, without overflow: d <= n / d
    while d <= n / d {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// Checks one mode's answers against the expected ones; reports the first difference.
fn check(mode: &str, answers: &[bool], items: &[u64]) -> bool {
    if answers.len() != items.len() {
        eprintln!("primes: {mode}: {} answers for {} numbers", answers.len(), items.len());
        return false;
    }
    for (i, (&n, &prime)) in items.iter().zip(answers).enumerate() {
        let expected = EXPECTED[i % NUMBERS.len()];
        if prime != expected {
            eprintln!("primes: {mode}: item {i}: {n} reported {}", if prime { "prime" } else { "not prime" });
            return false;
        }
    }
    true
}

fn run(reps: usize) -> Result<bool, prun::Error> {
    let world = prun::init()?;
    let root = world.rank() == 0;
    let items: Vec<u64> = NUMBERS.iter().copied().cycle().take(NUMBERS.len() * reps).collect();

    let (sequential, t_seq) =
        timed(&world, || Ok(root.then(|| items.iter().map(|&n| is_prime(n)).collect::<Vec<bool>>())))?;
    let (fixed, t_static) = timed(&world, || world.map_static(0, root.then(|| items.clone()), is_prime))?;
    let (dynamic, t_dynamic) = timed(&world, || world.map(0, root.then(|| items.clone()), is_prime))?;

    if !root {
        return Ok(true);
    }
    let (Some(sequential), Some(fixed), Some(dynamic)) = (sequential, fixed, dynamic) else {
        eprintln!("primes: rank 0 got no results from a map");
        return Ok(false);
    };
    let mut ok = check("sequential", &sequential, &items);
    ok &= check("static", &fixed, &items);
    ok &= check("dynamic", &dynamic, &items);
    if sequential != fixed || sequential != dynamic {
        eprintln!("primes: the three modes disagree");
        ok = false;
    }
    for (i, &n) in NUMBERS.iter().enumerate() {
        match sequential.get(i) {
            Some(&prime) => println!("{n} {}", if prime { "prime" } else { "not prime" }),
            None => ok = false,
        }
    }
    println!("sequential {t_seq:.3} s");
    println!("static {t_static:.3} s speedup {:.2}", t_seq / t_static);
    println!("dynamic {t_dynamic:.3} s speedup {:.2}", t_seq / t_dynamic);
    Ok(ok)
}

fn main() -> ExitCode {
    let reps = match std::env::args().nth(1) {
        None => DEFAULT_REPS,
        Some(a) => match a.parse() {
            Ok(r) if r > 0 => r,
            _ => {
                eprintln!("primes: REPS must be a positive whole number, not '{a}'");
                return ExitCode::from(2);
            }
        },
    };
    match run(reps) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("primes: {e}");
            ExitCode::FAILURE
        }
    }
}
