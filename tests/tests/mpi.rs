//! `prun --mpi`: the same command line through Open MPI's real mpirun, with an MPI program
//! (bench/mpi_hello.c) compiled by its mpicc. `tests/scripts/mpi.sh` installs Open MPI if needed.

use prun_tests::prun;
use std::path::PathBuf;
use std::sync::OnceLock;

fn mpi_hello() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let install = std::process::Command::new("bash").arg(root.join("tests/scripts/mpi.sh")).status();
            assert!(install.is_ok_and(|s| s.success()), "cannot install Open MPI");
            let out = std::env::temp_dir().join(format!("prun-mpi-hello-{}", std::process::id()));
            let cc = std::process::Command::new("mpicc.openmpi")
                .arg("-O2")
                .arg("-o")
                .arg(&out)
                .arg(root.join("bench/mpi_hello.c"))
                .status()
                .expect("run mpicc");
            assert!(cc.success(), "mpicc failed");
            out
        })
        .clone()
}

#[test]
fn an_mpi_program_runs_through_mpirun() {
    let hello = mpi_hello();
    let out = prun([
        "--mpi",
        "--mpi-launcher",
        "/usr/bin/mpirun.openmpi",
        "-v",
        "-n",
        "2",
        "--tag-output",
        "-x",
        "A=1",
    ])
    .run_with_program(&hello);
    out.expect_code(0).no_leftovers();
    assert!(out.stderr.contains("mpirun.openmpi") && out.stderr.contains("--tag-output"), "{}", out.stderr);
    for r in 0..2 {
        assert!(
            out.lines().iter().any(|l| l.contains(&format!("hello from rank {r} of 2"))),
            "{}",
            out.stdout
        );
    }
}

#[test]
fn options_without_an_mpi_equivalent_are_refused() {
    let out =
        prun(["--mpi", "--mpi-launcher", "/usr/bin/mpirun.openmpi", "--trace", "t.json", "-n", "2", "true"])
            .run();
    out.expect_code(2);
    assert!(out.stderr.contains("--trace") && out.stderr.contains("no equivalent"), "{}", out.stderr);
}
