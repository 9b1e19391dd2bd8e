//! Example jobs for prun, as binaries: `hello` and `ring`. Run them with
//! `target/release/prun -n 4 target/release/hello`.
