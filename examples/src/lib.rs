//! Example jobs for prun, as binaries: `hello`, `ring`, `collbench`, `primes`, `skew`,
//! `mandelbrot` and `maprate`. Run them with `target/release/prun -n 4 target/release/hello`.
//! This library holds what several of them share.

use std::time::Instant;

/// Runs `f` between two barriers; returns its result and the wall time seen by this rank.
///
/// **Collective** (the barriers).
///
/// # Errors
/// Those of the barriers and of `f`.
pub fn timed<R>(
    world: &prun::World,
    f: impl FnOnce() -> Result<R, prun::Error>,
) -> Result<(R, f64), prun::Error> {
    world.barrier()?;
    let start = Instant::now();
    let r = f()?;
    world.barrier()?;
    Ok((r, start.elapsed().as_secs_f64()))
}
