//! Benchmarks for prun; see the binaries in `src/bin` and the scripts beside this crate.
