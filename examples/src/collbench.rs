//! What `collbench` and `mpi_overhead` share: message sizes, iteration counts and page-aligned
//! buffers, the same as bench/mpi_collbench.c's, so that their figures compare like for like.

/// Message sizes measured, in bytes (per rank for gather, scatter and allgather).
pub const SIZES: [usize; 5] = [8, 1024, 65536, 1 << 20, 16 << 20];

/// The operations measured, in the order they run when none are named.
pub const OPS: [&str; 7] = ["latency", "barrier", "bcast", "allreduce", "gather", "scatter", "allgather"];

/// Operations measured only when named: `alltoall` (`bytes` per pair of ranks, as OSU's
/// `osu_alltoall`), whose 16 MiB blocks take `2 * size` times that on every rank,
/// `reduce_scatter` (f64 sum, `bytes` per rank's block, `size` times that sent), and the `v`
/// variants `gatherv`, `scatterv` and `allgatherv` (`bytes` per rank, every count the same, as
/// OSU's `osu_gatherv`, `osu_scatterv` and `osu_allgatherv`), and `allreduce_with` (the f64 sum
/// as the caller's operation: a closure for prun, `MPI_Op_create` for MPI), `scan` (the
/// f64 sum's prefixes, `MPI_Scan`) and `scan_with` (the prefixes of an operation of the
/// caller's that is not commutative, each element keeping the lowest rank's f64:
/// `MPI_Op_create` with `commute` 0).
pub const EXTRA_OPS: [&str; 8] = [
    "alltoall",
    "reduce_scatter",
    "gatherv",
    "scatterv",
    "allgatherv",
    "allreduce_with",
    "scan",
    "scan_with",
];

/// The operations named on the command line (all of [`OPS`] when none is), or, for a name not
/// among them, a message saying so that starts with `program`.
pub fn operations(program: &str) -> Result<Vec<String>, String> {
    let ops: Vec<String> = std::env::args().skip(1).collect();
    if let Some(bad) = ops.iter().find(|o| !OPS.contains(&o.as_str()) && !EXTRA_OPS.contains(&o.as_str())) {
        let known = OPS.iter().chain(&EXTRA_OPS).copied().collect::<Vec<_>>().join(" ");
        return Err(format!("{program}: unknown operation '{bad}'; choose among {known}"));
    }
    Ok(if ops.is_empty() { OPS.iter().map(|s| s.to_string()).collect() } else { ops })
}

/// The figure over the ranks that rank 0 prints for a measurement, each rank having timed its
/// own mean per operation: chosen by `COLLBENCH_STAT`, as the columns of the OSU benchmarks'
/// full format (`-f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// The average of the ranks' means (`avg`, the default): what the OSU benchmarks print.
    Avg,
    /// The least of the ranks' means (`min`): the rank that left the operation soonest.
    Min,
    /// The greatest of the ranks' means (`max`): the rank that left it last, which is what a
    /// program whose ranks go on together waits for.
    Max,
}

impl Stat {
    /// `COLLBENCH_STAT` (`avg`, `min` or `max`; `avg` when it is unset or empty), or, for another
    /// value, a message saying so that starts with `program`.
    pub fn from_env(program: &str) -> Result<Stat, String> {
        match std::env::var("COLLBENCH_STAT").unwrap_or_default().as_str() {
            "" | "avg" => Ok(Stat::Avg),
            "min" => Ok(Stat::Min),
            "max" => Ok(Stat::Max),
            other => Err(format!("{program}: COLLBENCH_STAT must be avg, min or max, not '{other}'")),
        }
    }

    /// This figure of the means (in seconds) of the ranks that took part, `None` when none did.
    pub fn of(self, means: impl IntoIterator<Item = f64>) -> Option<f64> {
        let means: Vec<f64> = means.into_iter().collect();
        if means.is_empty() {
            return None;
        }
        Some(match self {
            Stat::Avg => means.iter().sum::<f64>() / means.len() as f64,
            Stat::Min => means.iter().copied().fold(f64::INFINITY, f64::min),
            Stat::Max => means.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::Stat;

    /// Each figure of some ranks' means, and none of no ranks'.
    #[test]
    fn figures_over_ranks() {
        let means = [2.0, 1.0, 6.0];
        assert_eq!(Stat::Avg.of(means), Some(3.0));
        assert_eq!(Stat::Min.of(means), Some(1.0));
        assert_eq!(Stat::Max.of(means), Some(6.0));
        for stat in [Stat::Avg, Stat::Min, Stat::Max] {
            assert_eq!(stat.of([]), None);
            assert_eq!(stat.of([4.5]), Some(4.5));
        }
    }
}
