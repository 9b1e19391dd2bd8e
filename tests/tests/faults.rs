//! Fault injection with real processes: ranks killed with SIGKILL in the middle of collectives,
//! maps and heavy output at 16 ranks, and many short jobs in a row, with nothing left behind.

use nix::sys::signal::Signal;
use prun_tests::{assert_no_leftovers, prun, rank_pid};

/// A rank killed by a signal just after a peer exited with an error is the job's cause, and its
/// status the job's (a killed rank's sockets close before prun can see it die, so the peers that
/// lose it can exit first); a signal long after the first failure is not.
#[test]
fn a_signal_just_after_a_failure_is_the_cause() {
    let out = prun(["-n", "2", "@prun-testjob", "exit-then-killed", "20"]).run();
    out.expect_code(128 + 9).no_leftovers();
    assert!(out.stderr.contains("rank 0 ") && out.stderr.contains("SIGKILL"), "{}", out.stderr);
    let out = prun(["-n", "2", "@prun-testjob", "exit-then-killed", "1500"]).run();
    out.expect_code(4).no_leftovers();
}

#[test]
fn a_rank_killed_during_a_collective_a_map_or_heavy_output() {
    for (mode, arg) in [("die-in-allreduce", "7"), ("die-in-map", "11")] {
        let out = prun(["-n", "16", "@prun-testjob", mode, arg]).run();
        out.expect_code(128 + 9).no_leftovers();
        assert!(
            out.stderr.contains(&format!("rank {arg} ")) && out.stderr.contains("SIGKILL"),
            "{mode}: {}",
            out.stderr
        );
    }
    // heavy output: 16 ranks each writing lines as fast as they can; rank 5 is killed from outside
    let job = prun(["-n", "16", "--tag-output", "@prun-testjob", "spew", "100000000", "100"]).spawn();
    let mark = job.mark_owned();
    let start = std::time::Instant::now();
    let pid = loop {
        if let Some(pid) = rank_pid(&mark, 5) {
            break pid;
        }
        assert!(start.elapsed().as_secs() < 30, "rank 5 never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).expect("kill rank 5");
    let out = job.wait();
    out.expect_code(128 + 9);
    assert!(out.stderr.contains("rank 5 ") && out.stderr.contains("SIGKILL"), "{}", out.stderr);
    // every line that made it out is tagged and whole, but for at most one per rank: the line a
    // rank was writing when the job ended it, which is kept as far as it got
    let mut partial = std::collections::HashMap::new();
    for line in out.stdout.lines() {
        let (tag, _) = line.split_once(']').unwrap_or_else(|| panic!("untagged line {line:.60}"));
        if !line.ends_with(&"x".repeat(100)) {
            *partial.entry(tag.to_string()).or_insert(0) += 1;
        }
    }
    assert!(partial.values().all(|&n| n <= 1), "lines cut in the middle of a rank's output: {partial:?}");
    assert_no_leftovers(&mark);
}

#[test]
fn a_thousand_short_jobs_leave_nothing_behind() {
    let tmp = std::env::temp_dir().join(format!("pt{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let tmp_text = tmp.to_str().expect("utf8").to_string();
    for i in 0..1000 {
        let out = prun(["-n", "2", "@hello"]).env("TMPDIR", &tmp_text).run();
        assert_eq!(out.code(), 0, "job {i}: {}", out.stderr);
        if i % 100 == 0 {
            out.no_leftovers();
        }
    }
    let left: Vec<_> = std::fs::read_dir(&tmp).expect("tmp").flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "job folders or sockets left: {left:?}");
    let _ = std::fs::remove_dir(&tmp);
}

#[test]
fn odd_output_and_input_habits_lose_nothing() {
    // 100 MB of output from 4 ranks: every line arrives, whole and in order per rank
    let out = prun(["-n", "4", "@prun-testjob", "spew", "250000", "90"]).run();
    out.expect_code(0).no_leftovers();
    let lines = out.lines();
    assert_eq!(lines.len(), 1_000_000, "lines lost");
    assert!(out.stdout.len() > 100_000_000, "{} bytes", out.stdout.len());
    // a rank that closes its stdout early and goes on writing to stderr
    let out = prun(["-n", "2", "@prun-testjob", "close-stdout"]).run();
    out.expect_code(0).no_leftovers();
    assert_eq!(out.stderr.lines().filter(|l| l.contains("still here")).count(), 2000, "{:.300}", out.stderr);
    // a rank that never reads the stdin it is given: the job still ends normally
    let input = vec![b'x'; 10 << 20];
    let out = prun(["-n", "2", "@hello"]).input(input).run();
    out.expect_code(0).no_leftovers();
    assert_eq!(out.lines().len(), 2);
}

/// Open file descriptors of process `pid`.
fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// prun closes what it held for each rank when that rank ends: with 15 of 16 ranks gone, it holds
/// no more descriptors than for a job of one rank.
#[test]
fn descriptors_in_prun_do_not_grow_with_ended_ranks() {
    let mut one = prun(["-n", "1", "@prun-testjob", "sleep"]).spawn();
    one.wait_ready(1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let baseline = fds(one.pid());
    one.signal(Signal::SIGTERM);
    one.wait();
    let mut job = prun(["-n", "16", "@prun-testjob", "linger", "0"]).spawn();
    job.wait_ready(16);
    let mark = job.mark_owned();
    let start = std::time::Instant::now();
    while (1..16).any(|r| rank_pid(&mark, r).is_some()) {
        assert!(start.elapsed().as_secs() < 30, "ranks 1..15 did not end");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // prun closes a rank's descriptors once it has seen the rank end: give it up to ten
    // seconds on a busy machine (one that never closes them fails below)
    let start = std::time::Instant::now();
    let left = loop {
        let left = fds(job.pid());
        if left <= baseline + 1 || start.elapsed().as_secs() >= 10 {
            break left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    job.signal(Signal::SIGTERM);
    job.wait();
    assert!(
        baseline > 0 && left > 0 && left <= baseline + 1,
        "prun holds {left} descriptors with one rank left, {baseline} for a job of one"
    );
    assert_no_leftovers(&mark);
}
