//! The runtime's MPI backend (cargo feature `mpi`) on real Open MPI and real MPICH: the test job
//! and the examples (and the documentation's, `prun-docjob`), built with the feature against
//! each library (each in a target folder of its own), run under the library's own launcher and
//! under `prun --mpi`, and give what the built-in backend gives. `tests/scripts/mpi.sh` installs both libraries and libclang.

use prun_tests::{assert_no_leftovers, bin, doc_examples, idle_cpu, prun};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// An MPI library, its compiler wrapper and its launcher.
#[derive(Clone, Copy, Debug)]
struct Mpi {
    name: &'static str,
    mpicc: &'static str,
    launcher: &'static str,
}

const OPEN_MPI: Mpi =
    Mpi { name: "openmpi", mpicc: "/usr/bin/mpicc.openmpi", launcher: "/usr/bin/mpirun.openmpi" };
const MPICH: Mpi = Mpi { name: "mpich", mpicc: "/usr/bin/mpicc.mpich", launcher: "/usr/bin/mpiexec.mpich" };

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The folder of the examples and the test job built with `--features mpi` against `mpi`.
fn built(mpi: Mpi) -> PathBuf {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    static BUILDS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    INSTALLED.get_or_init(|| {
        let install = Command::new("bash").arg(root().join("tests/scripts/mpi.sh")).status();
        assert!(install.is_ok_and(|s| s.success()), "cannot install Open MPI, MPICH and libclang");
    });
    // one build at a time: two would share two cores
    let mut done = BUILDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let target =
        bin("prun").parent().and_then(Path::parent).expect("target folder").join(format!("mpi-{}", mpi.name));
    if !done.contains(&mpi.name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--quiet", "--release", "-p", "prun-examples", "-p", "prun-tests", "--bins"])
            .args(["--features", "prun/mpi,prun-examples/mpi", "--target-dir"])
            .arg(&target)
            .env("MPICC", mpi.mpicc)
            .current_dir(root())
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "build against {}:\n{}",
            mpi.name,
            String::from_utf8_lossy(&out.stderr)
        );
        done.push(mpi.name);
    }
    target.join("release")
}

/// collbench's sizes in these tests: up to 64 KiB.
const COLLBENCH_MAX_BYTES: &str = "65536";

/// Runs `program args` on `n` ranks with the library's own launcher.
fn launch(mpi: Mpi, n: usize, program: &Path, args: &[&str]) -> (Output, String) {
    // unique per run: tests running at once may start the same program
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mark = format!("mpi-{}-{run}", std::process::id());
    let mut cmd = bounded(mpi.launcher);
    if mpi.name == "openmpi" {
        // Hydra passes the whole environment on; Open MPI the variables named
        cmd.args([
            "--oversubscribe",
            "--allow-run-as-root",
            "-x",
            "COLLBENCH_MAX_BYTES",
            "-x",
            "PRUN_TEST_MARK",
        ]);
    }
    let out = cmd
        .args(["-n", &n.to_string()])
        .arg(program)
        .args(args)
        .env("PRUN_TEST_MARK", &mark)
        .env("COLLBENCH_MAX_BYTES", COLLBENCH_MAX_BYTES)
        .output()
        .expect("run the MPI launcher");
    (out, mark)
}

/// Runs `program args` on `n` ranks with `prun --mpi` through the library's launcher.
fn prun_mpi(mpi: Mpi, n: usize, program: &Path, args: &[&str]) -> prun_tests::Finished {
    let mut all = vec!["--mpi", "--mpi-launcher", mpi.launcher, "-x"];
    let max = format!("COLLBENCH_MAX_BYTES={COLLBENCH_MAX_BYTES}");
    let (n, program) = (n.to_string(), program.display().to_string());
    all.extend([max.as_str(), "-n", &n, &program]);
    all.extend(args);
    prun(all).run()
}

/// Runs `example args` on `n` ranks of the built-in backend.
fn prun_builtin(n: usize, example: &str, args: &[&str]) -> prun_tests::Finished {
    let (n, example) = (n.to_string(), format!("@{example}"));
    let mut all = vec!["-n", &n, &example];
    all.extend(args);
    prun(all).env("COLLBENCH_MAX_BYTES", COLLBENCH_MAX_BYTES).run()
}

/// `program`, killed if it runs longer than a test job may (a hung MPI job fails the test
/// instead of hanging the suite).
fn bounded(program: &str) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "10", &prun_tests::HANG.as_secs().to_string(), program]);
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every mode of the test job checks its own results; on MPI they must all pass, on MPI.
fn test_job_passes_on(mpi: Mpi) {
    let job = built(mpi).join("prun-testjob");
    for (mode, n) in [("pod", 3), ("p2p", 3), ("collectives", 5), ("split", 4), ("maps", 3), ("pod", 1)] {
        let (out, mark) = launch(mpi, n, &job, &[mode]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{mode} under {}: {stdout}\n{}", mpi.launcher, text(&out.stderr));
        for r in 0..n {
            assert!(stdout.contains(&format!("{mode} ok {r}")), "{mode} rank {r}: {stdout}");
        }
        if mode == "pod" {
            assert_eq!(stdout.matches("backend Mpi").count(), n, "every rank on MPI: {stdout}");
        }
        assert_no_leftovers(&mark);
    }
    let out = prun_mpi(mpi, 4, &job, &["pod"]);
    out.expect_code(0).no_leftovers();
    assert_eq!(out.stdout.matches("backend Mpi").count(), 4, "{}", out.stdout);
    // waiting on MPI does not spin: a small fraction of a core over each 1.5 s wait
    let (out, mark) = launch(mpi, 2, &job, &["idle-wait"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "idle-wait: {stdout}\n{}", text(&out.stderr));
    let used = idle_cpu(&stdout);
    assert!(used.len() == 3 && used.iter().all(|&s| s < 0.5), "{stdout}");
    assert_no_leftovers(&mark);
}

#[test]
fn the_test_job_passes_on_open_mpi() {
    test_job_passes_on(OPEN_MPI);
}

#[test]
fn the_test_job_passes_on_mpich() {
    test_job_passes_on(MPICH);
}

/// The `v` collectives beyond the counts MPI takes (`PRUN_MPI_COUNT_MAX=64` standing in for
/// MPI's 2 GiB): an all-to-all where one rank's blocks are too long for MPI and an allgatherv
/// take prun's algorithms on every rank, and give the right blocks (one rank deciding alone hung
/// before); a gatherv is refused on every rank, saying why.
fn counts_beyond_mpi_on(mpi: Mpi) {
    let job = built(mpi).join("prun-testjob").display().to_string();
    let run = |n: &str, args: &[&str]| {
        let head = ["--mpi", "--mpi-launcher", mpi.launcher, "-x", "PRUN_MPI_COUNT_MAX=64", "-n", n, &job];
        prun(head.iter().chain(args)).run()
    };
    for n in ["2", "3", "4"] {
        let out = run(n, &["mpi-counts"]);
        out.expect_code(0).no_leftovers();
        assert_eq!(
            out.stdout.matches("mpi-counts ok").count(),
            n.parse().expect("a number"),
            "{}",
            out.stdout
        );
    }
    let out = run("3", &["mpi-counts", "gatherv"]);
    assert_ne!(out.code(), 0, "{}", out.stderr);
    out.no_leftovers();
    assert!(
        out.stderr.contains("refused: gatherv_into: a block or offset beyond 64 bytes"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("PRUN_MPI_COUNT_MAX"), "{}", out.stderr);
}

#[test]
fn counts_beyond_mpi_take_prun_algorithms_on_open_mpi() {
    counts_beyond_mpi_on(OPEN_MPI);
}

#[test]
fn counts_beyond_mpi_take_prun_algorithms_on_mpich() {
    counts_beyond_mpi_on(MPICH);
}

/// Every example of the runtime's documentation (`prun-docjob`, as `doc_examples.rs` runs them
/// on the built-in backend) holds on 3 ranks of MPI.
fn doc_examples_hold_on(mpi: Mpi) {
    let job = built(mpi).join("prun-docjob");
    for example in 0..doc_examples(&job) {
        let (out, mark) = launch(mpi, 3, &job, &[&example.to_string()]);
        let stdout = text(&out.stdout);
        let what = format!("example {example} under {}", mpi.launcher);
        assert!(out.status.success(), "{what}: {stdout}\n{}", text(&out.stderr));
        assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 3, "{what}: {stdout}");
        assert_no_leftovers(&mark);
    }
}

#[test]
fn the_doc_examples_hold_on_open_mpi() {
    doc_examples_hold_on(OPEN_MPI);
}

#[test]
fn the_doc_examples_hold_on_mpich() {
    doc_examples_hold_on(MPICH);
}

/// What an example's run must agree on between backends: the lines that carry results, not
/// timings.
fn results(example: &str, stdout: &str) -> Vec<String> {
    let mut lines: Vec<String> = stdout
        .lines()
        .filter(|l| match example {
            "hello" => l.starts_with("hello from"),
            "ring" => l.starts_with("ring ok"),
            "primes" => l.ends_with(" prime"),
            "skew" => l.starts_with("tasks "),
            "maprate" => l.starts_with("items "),
            "samplesort" => l.starts_with("samplesort ok"),
            "collbench" => true,
            _ => false,
        })
        .map(|l| match example {
            // the operation and size, not the time
            "collbench" => l.rsplit_once(' ').map_or(l, |(head, _)| head).to_string(),
            _ => l.to_string(),
        })
        .collect();
    lines.sort();
    lines
}

fn examples_agree_on(mpi: Mpi) {
    let dir = built(mpi);
    let small = ["latency", "barrier", "bcast", "allreduce", "gather", "scatter", "allgather"];
    let runs: [(&str, usize, Vec<&str>); 7] = [
        ("hello", 3, vec![]),
        ("samplesort", 3, vec![]),
        ("ring", 4, vec![]),
        ("primes", 2, vec![]),
        ("skew", 2, vec![]),
        ("maprate", 2, vec![]),
        ("collbench", 2, small.to_vec()),
    ];
    for (example, n, args) in runs {
        let builtin = prun_builtin(n, example, &args);
        builtin.expect_code(0);
        let expected = results(example, &builtin.stdout);
        assert!(!expected.is_empty(), "{example} printed no results: {}", builtin.stdout);
        let program = dir.join(example);
        let (out, mark) = launch(mpi, n, &program, &args);
        assert!(out.status.success(), "{example} under {}: {}", mpi.launcher, text(&out.stderr));
        assert_eq!(results(example, &text(&out.stdout)), expected, "{example} under {}", mpi.launcher);
        assert_no_leftovers(&mark);
        let through = prun_mpi(mpi, n, &program, &args);
        through.expect_code(0).no_leftovers();
        assert_eq!(results(example, &through.stdout), expected, "{example} under prun --mpi");
    }
}

#[test]
fn the_examples_agree_on_open_mpi_prun_mpi_and_the_builtin_backend() {
    examples_agree_on(OPEN_MPI);
}

#[test]
fn the_examples_agree_on_mpich_prun_mpi_and_the_builtin_backend() {
    examples_agree_on(MPICH);
}

/// `mpi_overhead` (bench/mpi_backend.sh's in-process comparison) runs every operation through
/// prun and directly on MPI and fails unless both give the expected results; on the built-in
/// backend it refuses to run.
fn overhead_benchmark_on(mpi: Mpi) {
    let program = built(mpi).join("mpi_overhead");
    let (out, mark) = launch(mpi, 2, &program, &[]);
    assert!(out.status.success(), "mpi_overhead under {}: {}", mpi.launcher, text(&out.stderr));
    assert_no_leftovers(&mark);
    let stdout = text(&out.stdout);
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split(' ').collect()).collect();
    // 7 operations, 3 sizes up to 64 KiB but the barrier's one
    assert_eq!(rows.len(), 6 * 3 + 1, "{stdout}");
    for row in &rows {
        assert!(
            row.len() == 4 && row[2..].iter().all(|t| t.parse::<f64>().is_ok_and(|us| us > 0.0)),
            "{stdout}"
        );
    }
    let builtin = prun(["-n", "2", &program.display().to_string()]).run();
    builtin.expect_code(1).no_leftovers();
    assert!(builtin.stderr.contains("not on the MPI backend"), "{}", builtin.stderr);
}

#[test]
fn the_overhead_benchmark_checks_its_results_on_open_mpi() {
    overhead_benchmark_on(OPEN_MPI);
}

#[test]
fn the_overhead_benchmark_checks_its_results_on_mpich() {
    overhead_benchmark_on(MPICH);
}

/// A rank that exits with an error, or calls abort, ends the MPI job with its status.
fn failures_end_the_job_on(mpi: Mpi) {
    let job = built(mpi).join("prun-testjob");
    let (out, mark) = launch(mpi, 3, &job, &["abort-on", "1", "7"]);
    assert_eq!(out.status.code(), Some(7), "MPI_Abort's code: {}", text(&out.stderr));
    // the runtime's line, or the library's own (forwarded or not within the runtime's moment
    // before MPI_Abort: on a loaded machine, either may be lost)
    let said = text(&out.stderr);
    let named = ["rank 1 called abort(7)", "MPI_ABORT was invoked on rank 1", "7) - process 1"];
    assert!(named.iter().any(|n| said.contains(n)), "{said}");
    assert_no_leftovers(&mark);
    let out = prun_mpi(mpi, 3, &job, &["fail-on", "2", "5"]);
    assert_ne!(out.code(), 0, "a failed rank fails the job: {}", out.stderr);
    out.no_leftovers();
}

#[test]
fn a_failing_rank_ends_the_job_on_open_mpi() {
    failures_end_the_job_on(OPEN_MPI);
}

#[test]
fn a_failing_rank_ends_the_job_on_mpich() {
    failures_end_the_job_on(MPICH);
}

#[test]
fn a_program_built_against_another_mpi_says_so() {
    // built for Open MPI, started by MPICH's launcher: each rank would be alone
    let job = built(OPEN_MPI).join("prun-testjob");
    let (out, mark) = launch(MPICH, 2, &job, &["pod"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("PMI_SIZE=2") && err.contains("Open MPI") && err.contains("another MPI library"),
        "{err}"
    );
    assert_no_leftovers(&mark);
}

/// In a Slurm allocation (the real one-node Slurm of `tests/scripts/slurm.sh`): `srun` with the
/// PMI each library needs starts the MPI backend, and `prun --mpi` picks that PMI itself from
/// the program's MPI library.
#[test]
fn srun_and_prun_mpi_in_a_slurm_allocation() {
    let slurm = Command::new("bash").arg(root().join("tests/scripts/slurm.sh")).arg("start").status();
    assert!(slurm.is_ok_and(|s| s.success()), "cannot start the test Slurm");
    for (mpi, pmi) in [(OPEN_MPI, "pmix"), (MPICH, "pmi2")] {
        let dir = built(mpi);
        let out = bounded("srun")
            .args([&format!("--mpi={pmi}"), "-n", "2"])
            .arg(dir.join("prun-testjob"))
            .arg("pod")
            .output()
            .expect("run srun");
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "srun --mpi={pmi}: {stdout}\n{}", text(&out.stderr));
        assert_eq!(stdout.matches("backend Mpi").count(), 2, "{stdout}");
        let out = bounded("salloc")
            .args(["-n", "2"])
            .arg(bin("prun"))
            .args(["--mpi", "-v"])
            .arg(dir.join("ring"))
            .output()
            .expect("run salloc");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "salloc prun --mpi ({}): {stdout}\n{stderr}", mpi.name);
        assert!(stderr.contains(&format!("srun --mpi={pmi}")), "{stderr}");
        assert!(stdout.contains("ring ok: 3 laps of 2 ranks"), "{stdout}");
    }
}
