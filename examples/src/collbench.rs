//! What `collbench` and `mpi_overhead` share: message sizes, iteration counts and page-aligned
//! buffers, the same as bench/mpi_collbench.c's, so that their figures compare like for like.

/// Message sizes measured, in bytes (per rank for gather, scatter and allgather).
pub const SIZES: [usize; 5] = [8, 1024, 65536, 1 << 20, 16 << 20];

/// The operations measured, in the order they run when none are named.
pub const OPS: [&str; 7] = ["latency", "barrier", "bcast", "allreduce", "gather", "scatter", "allgather"];

/// The operations named on the command line (all of [`OPS`] when none is), or, for a name not
/// among them, a message saying so that starts with `program`.
pub fn operations(program: &str) -> Result<Vec<String>, String> {
    let ops: Vec<String> = std::env::args().skip(1).collect();
    if let Some(bad) = ops.iter().find(|o| !OPS.contains(&o.as_str())) {
        return Err(format!("{program}: unknown operation '{bad}'; choose among {}", OPS.join(" ")));
    }
    Ok(if ops.is_empty() { OPS.iter().map(|s| s.to_string()).collect() } else { ops })
}

/// What receive buffers hold before a receive (not zero, so that their pages are real).
pub const EMPTY: u8 = 0xEE;

/// The number in environment variable `name`, or `default` when it is unset or not a number.
pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Timed and warm-up iteration counts for a message of `bytes`: `clamp(64 MiB / max(bytes,
/// 1 KiB), 10, 1000)` and a tenth of that (at least 2), both scaled by `COLLBENCH_ITERS_SCALE`.
pub fn iterations(bytes: usize) -> (usize, usize) {
    let scale = env_f64("COLLBENCH_ITERS_SCALE", 1.0);
    let iters = ((64usize << 20) / bytes.max(1024)).clamp(10, 1000);
    let warm = (iters / 10).max(2);
    (((iters as f64 * scale) as usize).max(2), ((warm as f64 * scale) as usize).max(1))
}

/// The message sizes to measure: those of [`SIZES`] from `COLLBENCH_MIN_BYTES` (0 by default)
/// up to `COLLBENCH_MAX_BYTES` (16 MiB by default), as OSU's `-m min:max`.
pub fn sizes() -> Vec<usize> {
    let min = env_f64("COLLBENCH_MIN_BYTES", 0.0) as usize;
    let max = env_f64("COLLBENCH_MAX_BYTES", (16 << 20) as f64) as usize;
    SIZES.into_iter().filter(|b| (min..=max).contains(b)).collect()
}

/// `n` values starting on a page boundary, as bench/mpi_collbench.c's (`posix_memalign`). Where
/// buffers start matters: copies between buffers at different offsets within their pages ran
/// 2 to 3 times slower here (MPI's own 1 MiB gather took 130-180 us with page-aligned buffers,
/// 310-330 us with buffers from the middle of the heap, which is where glibc puts them once a
/// 16 MiB block has been freed); aligned on both sides, the two programs compare like for like.
pub struct Page<T> {
    v: Vec<T>,
    at: usize,
    n: usize,
}

impl<T: Copy> Page<T> {
    /// `n` copies of `value`, the first on a page boundary.
    pub fn new(n: usize, value: T) -> Page<T> {
        let spare = 4096 / std::mem::size_of::<T>();
        let v = vec![value; n + spare];
        let at = v.as_ptr().align_offset(4096).min(spare);
        Page { v, at, n }
    }
}

impl<T> std::ops::Deref for Page<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.v[self.at..self.at + self.n]
    }
}

impl<T> std::ops::DerefMut for Page<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.v[self.at..self.at + self.n]
    }
}
