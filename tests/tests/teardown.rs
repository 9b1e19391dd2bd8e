//! Ending jobs: exit statuses, signals, timeouts and abort, with nothing left behind.

use nix::sys::signal::Signal;
use prun_tests::{assert_no_leftovers, prun};

#[test]
fn a_failing_rank_ends_the_job_with_its_status() {
    let out = prun(["-n", "4", "@prun-testjob", "fail-on", "2", "7"]).run();
    out.expect_code(7).no_leftovers();
    let line = out.stderr.lines().find(|l| l.contains("rank 2")).expect("a line about rank 2");
    assert!(line.contains("pid ") && line.contains("exited with status 7"), "{line}");
    assert_eq!(out.stderr.lines().filter(|l| l.starts_with("prun:")).count(), 1, "one line: {}", out.stderr);
}

#[test]
fn a_rank_killed_by_a_signal_gives_128_plus_the_signal() {
    let out = prun(["-n", "3", "@prun-testjob", "segv-on", "1"]).run();
    out.expect_code(128 + 11).no_leftovers();
    assert!(out.stderr.contains("rank 1") && out.stderr.contains("SIGSEGV"), "{}", out.stderr);
}

#[test]
fn abort_ends_the_job_with_its_code() {
    let out = prun(["-n", "4", "@prun-testjob", "abort-on", "3", "42"]).run();
    out.expect_code(42).no_leftovers();
    assert!(out.stderr.contains("rank 3") && out.stderr.contains("abort(42)"), "{}", out.stderr);
}

#[test]
fn timeout_ends_the_job_with_124() {
    let out = prun(["-n", "3", "--timeout", "1", "@prun-testjob", "sleep"]).run();
    out.expect_code(124).no_leftovers();
    assert!(out.stderr.contains("--timeout"), "{}", out.stderr);
}

#[test]
fn timeout_kills_ranks_that_ignore_sigterm() {
    // 3 s: the ranks must have started (and turned deaf to SIGTERM) before it
    let out = prun(["-n", "2", "--timeout", "3", "--kill-grace", "1", "@prun-testjob", "ignore-term"]).run();
    out.expect_code(124).no_leftovers();
    assert!(out.stderr.contains("SIGKILL"), "{}", out.stderr);
}

#[test]
fn ctrl_c_is_forwarded_and_gives_130() {
    let mut job = prun(["-n", "4", "@prun-testjob", "sleep"]).spawn();
    job.wait_ready(4);
    job.signal(Signal::SIGINT);
    let out = job.wait();
    out.expect_code(130).no_leftovers();
    assert!(out.stderr.contains("SIGINT"), "{}", out.stderr);
}

#[test]
fn sigterm_to_prun_gives_143() {
    let mut job = prun(["-n", "3", "@prun-testjob", "sleep"]).spawn();
    job.wait_ready(3);
    job.signal(Signal::SIGTERM);
    job.wait().expect_code(143).no_leftovers();
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    // the ranks ignore SIGINT and SIGTERM and the grace period is longer than the test's
    // patience: only the second Ctrl-C can end this job
    let mut job = prun(["-n", "3", "--kill-grace", "100000", "@prun-testjob", "ignore-term"]).spawn();
    job.wait_ready(3);
    job.signal(Signal::SIGINT);
    // two signals sent before prun takes the first would arrive as one: wait until it says so
    let took = job.wait_stderr_line(std::time::Duration::from_secs(60), |l| l.contains("received SIGINT"));
    job.signal(Signal::SIGINT);
    let out = job.wait();
    out.expect_code(130).no_leftovers();
    assert!(took && out.stderr.contains("again"), "{}", out.stderr);
}

#[test]
fn children_of_ranks_are_ended_too() {
    let mut job = prun(["-n", "2", "@prun-testjob", "spawn-child"]).spawn();
    job.wait_ready(2);
    let mark = job.mark_owned();
    assert!(
        prun_tests::leftovers(&mark).iter().any(|(_, cmd)| cmd.starts_with("sleep 1000")),
        "children started"
    );
    job.signal(Signal::SIGTERM);
    job.wait().expect_code(143);
    assert_no_leftovers(&mark);
}

#[test]
fn ranks_exit_on_their_own_when_prun_is_killed() {
    for mode in ["sleep", "spawn-child"] {
        let mut job = prun(["-n", "4", "@prun-testjob", mode]).spawn();
        job.wait_ready(4);
        let mark = job.mark_owned();
        job.signal(Signal::SIGKILL);
        let _ = job.wait();
        assert_no_leftovers(&mark);
    }
}

#[test]
fn a_rank_that_exits_early_without_failing_is_fine() {
    // rank 1 exits 0 at once; rank 0's receive from it fails cleanly instead of hanging
    let out = prun(["-n", "2", "@prun-testjob", "peer-lost"]).run();
    out.expect_code(0).no_leftovers();
    assert!(out.stdout.contains("peer lost ok"), "{}\n{}", out.stdout, out.stderr);
}

#[test]
fn sigusr1_is_passed_on_and_the_job_goes_on() {
    let mut job = prun(["-n", "3", "@prun-testjob", "usr1"]).spawn();
    job.wait_ready(3);
    job.signal(Signal::SIGUSR1);
    let out = job.wait();
    out.expect_code(0).no_leftovers();
    assert_eq!(out.lines().iter().filter(|l| l.ends_with("got SIGUSR1")).count(), 3, "{}", out.stdout);
}

#[test]
fn a_timeout_reports_what_each_rank_waits_for() {
    // long enough for every rank to reach its wait on a busy machine before the report
    let out = prun(["-n", "4", "--timeout", "5", "@prun-testjob", "hang"]).run();
    out.expect_code(124).no_leftovers();
    let line = |r: usize| {
        out.stderr.lines().find(|l| l.contains(&format!("rank {r} (pid"))).unwrap_or_default().to_string()
    };
    assert!(line(0).contains("recv tag 7, waiting for rank 1"), "{}", out.stderr);
    assert!(line(1).contains("recv tag 8, waiting for rank 0"), "{}", out.stderr);
    assert!(line(2).contains("barrier call #0, waiting for rank"), "{}", out.stderr);
}

/// A rank waiting in a send (its receiver stopped, so that nothing takes the message) is
/// reported as sending, with the tag and the receiver, not as running outside prun's calls.
#[test]
fn a_timeout_reports_a_rank_stuck_in_a_send() {
    let out = prun(["-n", "2", "--timeout", "5", "@prun-testjob", "stuck-send"]).run();
    out.expect_code(124).no_leftovers();
    let line = out.stderr.lines().find(|l| l.contains("rank 0 (pid")).unwrap_or_default();
    assert!(line.contains("send tag 7, sending to rank 1"), "{}", out.stderr);
}

#[test]
fn sigusr1_prints_the_report_and_the_job_goes_on() {
    let mut job = prun(["-n", "2", "@prun-testjob", "hang"]).spawn();
    job.wait_ready(2);
    // a rank prints "ready" just before its receive, so a report may find either rank still on
    // its way there: ask again until both have been reported waiting (each report must leave the
    // job running, which is what this test is about)
    let waiting = |rank: usize| {
        move |l: &str| {
            l.contains(&format!("rank {rank} (pid")) && l.contains(&format!("waiting for rank {}", 1 - rank))
        }
    };
    let within = std::time::Duration::from_secs(3);
    let mut reports = 0;
    while reports < 20 {
        job.signal(Signal::SIGUSR1);
        reports += 1;
        if job.wait_stderr_line(within, waiting(0)) && job.wait_stderr_line(within, waiting(1)) {
            break;
        }
    }
    job.signal(Signal::SIGTERM);
    let out = job.wait();
    out.expect_code(143).no_leftovers();
    assert!(out.stderr.contains("what each rank is doing"), "{}", out.stderr);
    for rank in 0..2 {
        let seen = out.stderr.lines().any(waiting(rank));
        assert!(seen, "no report in {reports} showed rank {rank}'s wait:\n{}", out.stderr);
    }
}
