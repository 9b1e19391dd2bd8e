//! Inside a real Slurm allocation (a one-node cluster started by `tests/scripts/slurm.sh`), prun
//! takes its hosts and rank count from the allocation: no `-n`, no hostfile.

use prun_tests::bin;
use std::time::{Duration, Instant};

fn slurm() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm.sh");
    let out = std::process::Command::new("bash").arg(script).arg("start").output().expect("run slurm.sh");
    assert!(out.status.success(), "cannot start the test Slurm: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sbatch_job_gets_the_allocation_rank_count() {
    slurm();
    let dir = std::env::temp_dir().join(format!("prun-slurm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join("job.sh");
    let output = dir.join("out.txt");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nexec {} {}\n", bin("prun").display(), bin("hello").display()),
    )
    .expect("write the batch script");
    let submitted = std::process::Command::new("sbatch")
        // as many tasks as the one node has cores, so that the job never waits for resources
        .args(["--ntasks=2", "--wait", "--quiet", "--time=5", "-o"])
        .arg(&output)
        .arg(&script)
        .output()
        .expect("run sbatch");
    assert!(submitted.status.success(), "sbatch: {}", String::from_utf8_lossy(&submitted.stderr));
    // the output file is complete when sbatch --wait returns; allow the filesystem a moment
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        if text.lines().count() >= 2 || start.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{text}");
    for (r, line) in lines.iter().enumerate() {
        assert!(line.starts_with(&format!("hello from rank {r} of 2 on ")), "{text}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_interactive_allocation_gives_the_rank_count() {
    slurm();
    // salloc runs prun inside a fresh allocation of two tasks, as a user at a terminal would
    let out = std::process::Command::new("timeout")
        .args(["120", "salloc", "-n", "2", "--quiet", "--time=5"])
        .arg(bin("prun"))
        .arg(bin("hello"))
        .env_remove("SLURM_JOB_ID")
        .output()
        .expect("run salloc");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "salloc: {}{}", text, String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("hello from rank 0 of 2") && lines[1].starts_with("hello from rank 1 of 2"),
        "{text}"
    );
}
