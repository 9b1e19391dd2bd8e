//! Jobs across hosts: a real sshd on loopback addresses 127.0.0.2 to 127.0.0.9 (each one host),
//! agents started with ssh, ranks talking over TCP between hosts. The sshd is started by
//! `tests/scripts/sshd.sh` (as root; it installs openssh-server when missing).

use nix::sys::signal::Signal;
use prun_tests::{Finished, assert_no_leftovers, prun, rank_pid, trace_number};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The tests of this file run one at a time, so that "no agent left" means this test's agents.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const KEY: &str = "/tmp/prun-test-sshd/userkey";

fn sshd() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/sshd.sh");
        let out = std::process::Command::new("bash").arg(script).arg("start").output().expect("run sshd.sh");
        assert!(out.status.success(), "cannot start the test sshd: {}", String::from_utf8_lossy(&out.stderr));
    });
}

fn launch_agent(key: &str) -> String {
    format!(
        "ssh -p 2222 -i {key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    )
}

fn hosts(n: usize, slots: usize) -> String {
    (2..2 + n).map(|i| format!("127.0.0.{i}:{slots}")).collect::<Vec<_>>().join(",")
}

/// prun over ssh with the test key; the job's mark is exported so that remote ranks carry it.
fn remote_job(extra: &[&str]) -> prun_tests::Job {
    sshd();
    let agent = launch_agent(KEY);
    let mut args = vec!["--launch-agent", agent.as_str(), "-x", "PRUN_TEST_MARK"];
    args.extend_from_slice(extra);
    prun(args)
}

/// Running agents: (pid, environment), found by their command line `/…/prun __agent`.
fn agents() -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd);
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            (cmd.starts_with('/') && cmd.contains("prun\0__agent"))
                .then(|| (pid, String::from_utf8_lossy(&env).into_owned()))
        })
        .collect()
}

/// No agent of any job is left on any host.
fn no_agents_left() {
    let start = Instant::now();
    loop {
        let left = agents();
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "agents left: {:?}",
            left.iter().map(|a| a.0).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hello_over(n_hosts: usize) -> Finished {
    let list = hosts(n_hosts, 2);
    let n = (2 * n_hosts).to_string();
    let out = remote_job(&["-n", &n, "--host", &list, "@hello"]).run();
    out.expect_code(0).no_leftovers();
    no_agents_left();
    out
}

#[test]
fn hello_and_ring_over_2_4_and_8_hosts() {
    let _one = serial();
    for n_hosts in [2, 4, 8] {
        let out = hello_over(n_hosts);
        let n = 2 * n_hosts;
        for r in 0..n {
            let line = format!("hello from rank {r} of {n} on ");
            assert_eq!(out.lines().iter().filter(|l| l.starts_with(&line)).count(), 1, "{}", out.stdout);
        }
        let list = hosts(n_hosts, 2);
        // a tree width of 2 makes agents start agents: three levels for 8 hosts
        let out =
            remote_job(&["--tree-width", "2", "-n", &n.to_string(), "--host", &list, "@ring", "2"]).run();
        out.expect_code(0).no_leftovers();
        assert_eq!(out.lines(), [format!("ring ok: 2 laps of {n} ranks")], "{}", out.stderr);
    }
    no_agents_left();
}

#[test]
fn local_and_remote_ranks_together() {
    let _one = serial();
    let out = remote_job(&[
        "-n",
        "6",
        "--host",
        "localhost:2,127.0.0.2:2,127.0.0.3:2",
        "@prun-testjob",
        "collectives",
        "70000",
    ])
    .run();
    out.expect_code(0).no_leftovers();
    assert_eq!(out.lines().iter().filter(|l| l.starts_with("collectives ok")).count(), 6, "{}", out.stderr);
    no_agents_left();
}

#[test]
fn unreachable_host_is_named_with_ssh_own_words() {
    let _one = serial();
    // nothing listens on 127.0.0.30: ssh fails at once
    let out = remote_job(&["-n", "4", "--host", "127.0.0.2:2,127.0.0.30:2", "@prun-testjob", "sleep"]).run();
    out.expect_code(1).no_leftovers();
    assert!(out.stderr.contains("127.0.0.30") && out.stderr.contains("Connection refused"), "{}", out.stderr);
    no_agents_left();
}

#[test]
fn refused_key_is_reported() {
    let _one = serial();
    sshd();
    let wrong = std::env::temp_dir().join(format!("prun-wrong-key-{}", std::process::id()));
    let _ = std::fs::remove_file(&wrong);
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    let agent = launch_agent(wrong.to_str().expect("utf8"));
    let out = prun(["--launch-agent", agent.as_str(), "-n", "2", "--host", "127.0.0.2:2", "@hello"]).run();
    out.expect_code(1).no_leftovers();
    assert!(out.stderr.contains("127.0.0.2") && out.stderr.contains("Permission denied"), "{}", out.stderr);
    no_agents_left();
}

#[test]
fn a_killed_agent_ends_the_job_everywhere() {
    let _one = serial();
    let list = hosts(2, 2);
    let before = agent_folders();
    let mut job = remote_job(&["-n", "4", "--host", &list, "@prun-testjob", "sleep"]).spawn();
    job.wait_ready(4);
    let mark = job.mark_owned();
    let ours: Vec<_> = agent_folders().into_iter().filter(|f| !before.contains(f)).collect();
    assert_eq!(ours.len(), 2, "one job folder per agent: {ours:?}");
    let agent = agents().first().map(|a| a.0).expect("an agent runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent), Signal::SIGKILL).expect("kill the agent");
    let out = job.wait();
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("lost host 127.0.0."), "{}", out.stderr);
    assert_no_leftovers(&mark);
    no_agents_left();
    // the killed agent's watchdog removes its folder too
    let start = Instant::now();
    while ours.iter().any(|f| f.exists()) {
        assert!(start.elapsed() < Duration::from_secs(10), "job folders left: {ours:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The agents' job folders (`/tmp/prun-<job>-n<node>`) that exist now.
fn agent_folders() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/tmp")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("prun-") && name.rsplit_once("-n").is_some_and(|(_, n)| n.parse::<u32>().is_ok())
        })
        .collect()
}

/// Two hosts of four ranks each counted as sharing cores: the allgather of 16 MiB blocks goes
/// straight to every rank, its blocks written over TCP between the hosts, each rank writing its
/// own before it receives; it completes (every rank hung before the receives were posted only
/// once the writes were out), every rank checking what it got.
#[test]
fn the_straight_allgather_crosses_hosts() {
    let _one = serial();
    let list = hosts(2, 4);
    let job = ["--timeout", "120", "-x", "PRUN_CROWDED=1", "-n", "8", "--host", &list, "@prun-testjob"];
    let out =
        remote_job(&job.into_iter().chain(["writes", "allgather", "16777216"]).collect::<Vec<_>>()).run();
    out.expect_code(0).no_leftovers();
    let reports = out.lines().iter().filter(|l| l.starts_with("writes ")).count();
    assert_eq!(reports, 8, "every rank checks what it got:\n{}", out.stderr);
    no_agents_left();
}

#[test]
fn ctrl_c_and_failures_cross_hosts() {
    let _one = serial();
    let list = hosts(2, 2);
    let mut job = remote_job(&["-n", "4", "--host", &list, "@prun-testjob", "sleep"]).spawn();
    job.wait_ready(4);
    job.signal(Signal::SIGINT);
    job.wait().expect_code(130).no_leftovers();
    no_agents_left();
    let out = remote_job(&["-n", "4", "--host", &list, "@prun-testjob", "fail-on", "3", "9"]).run();
    out.expect_code(9).no_leftovers();
    assert!(out.stderr.contains("rank 3") && out.stderr.contains("127.0.0.3"), "{}", out.stderr);
    no_agents_left();
}

#[test]
fn placement_tags_environment_and_host_communicators() {
    let _one = serial();
    let wdir = std::env::temp_dir();
    let wdir = wdir.to_str().expect("utf8");
    let out = remote_job(&[
        "--display-map",
        "--tag-host",
        "-ppn",
        "2",
        "--host",
        "localhost,127.0.0.2,127.0.0.3",
        "--wdir",
        wdir,
        "-x",
        "PRUN_TEST_EXTRA=seen",
        "@prun-testjob",
        "env",
        "PRUN_TEST_EXTRA",
    ])
    .run();
    out.expect_code(0).no_leftovers();
    assert!(
        out.stderr.contains("127.0.0.3") && out.stderr.contains("4-5"),
        "placement shown: {}",
        out.stderr
    );
    for (r, host) in [(0, "localhost"), (3, "127.0.0.2"), (5, "127.0.0.3")] {
        let tag = format!("[{r}@{host}] env rank={r} size=6 local_rank={} local_size=2", r % 2);
        let line = out
            .lines()
            .into_iter()
            .find(|l| l.starts_with(&tag))
            .unwrap_or_else(|| panic!("{tag}:\n{}", out.stdout));
        assert!(
            line.contains("extra=seen")
                && line.contains(&format!("cwd={}", std::fs::canonicalize(wdir).expect("dir").display())),
            "{line}"
        );
    }
    let out =
        remote_job(&["-ppn", "2", "--host", "localhost,127.0.0.2,127.0.0.3", "@prun-testjob", "host-comm"])
            .run();
    out.expect_code(0).no_leftovers();
    assert_eq!(
        out.lines().iter().filter(|l| l.starts_with("host comm ok") && l.ends_with("of size 2")).count(),
        6,
        "{}",
        out.stderr
    );
    no_agents_left();
}

#[test]
fn abort_and_timeout_cross_hosts() {
    let _one = serial();
    let list = hosts(2, 2);
    let out = remote_job(&["-n", "4", "--host", &list, "@prun-testjob", "abort-on", "2", "17"]).run();
    out.expect_code(17).no_leftovers();
    assert!(out.stderr.contains("abort(17)"), "{}", out.stderr);
    let out = remote_job(&["-n", "4", "--host", &list, "--timeout", "2", "@prun-testjob", "sleep"]).run();
    out.expect_code(124).no_leftovers();
    no_agents_left();
}

#[test]
fn output_dir_holds_remote_ranks_too() {
    let _one = serial();
    let dir = std::env::temp_dir().join(format!("prun-remote-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_text = dir.to_str().expect("utf8").to_string();
    let out = remote_job(&[
        "--output-dir",
        &dir_text,
        "-ppn",
        "1",
        "--host",
        "localhost,127.0.0.2,127.0.0.3",
        "@hello",
    ])
    .run();
    out.expect_code(0).no_leftovers();
    assert!(out.stdout.is_empty(), "output went to the files: {}", out.stdout);
    for r in 0..3 {
        let text = std::fs::read_to_string(dir.join(format!("rank.{r}.stdout"))).expect("stdout file");
        assert!(text.starts_with(&format!("hello from rank {r} of 3")), "{text}");
        assert!(dir.join(format!("rank.{r}.stderr")).exists(), "stderr file of rank {r}");
    }
    let _ = std::fs::remove_dir_all(dir);
    no_agents_left();
}

#[test]
fn stdin_reaches_a_remote_rank_0_and_all() {
    let _one = serial();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let out = remote_job(&["-n", "2", "--host", "127.0.0.2:1,127.0.0.3:1", "@prun-testjob", "cat"])
        .input(data.clone())
        .run();
    out.expect_code(0).no_leftovers();
    assert!(out.stdout.contains(&format!("rank 0 read {} bytes, sum {sum}", data.len())), "{}", out.stdout);
    assert!(out.stdout.contains("rank 1 read 0 bytes"), "{}", out.stdout);
    let out =
        remote_job(&["--stdin", "all", "-ppn", "1", "--host", "localhost,127.0.0.2", "@prun-testjob", "cat"])
            .input("abc")
            .run();
    out.expect_code(0).no_leftovers();
    assert_eq!(
        out.lines().iter().filter(|l| l.ends_with("read 3 bytes, sum 294")).count(),
        2,
        "{}",
        out.stdout
    );
    no_agents_left();
}

#[test]
fn the_launch_tree_relays_failures_and_losses() {
    let _one = serial();
    // a chain: prun starts 127.0.0.2, which starts the unreachable 127.0.0.30
    let out = remote_job(&[
        "--tree-width",
        "1",
        "-n",
        "2",
        "--host",
        "127.0.0.2:1,127.0.0.30:1",
        "@prun-testjob",
        "sleep",
    ])
    .run();
    out.expect_code(1).no_leftovers();
    assert!(out.stderr.contains("127.0.0.30") && out.stderr.contains("Connection refused"), "{}", out.stderr);
    no_agents_left();
    // a chain of three: killing the middle agent loses its host and the one below it
    let list = hosts(3, 1);
    let mut job =
        remote_job(&["--tree-width", "1", "-n", "3", "--host", &list, "@prun-testjob", "sleep"]).spawn();
    job.wait_ready(3);
    let mark = job.mark_owned();
    // sshd tells each session the address it was reached on: the middle host is 127.0.0.3
    let middle = agents()
        .into_iter()
        .find(|(_, env)| env.contains(" 127.0.0.3 2222"))
        .map(|a| a.0)
        .expect("the middle agent runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(middle), Signal::SIGKILL).expect("kill it");
    let out = job.wait();
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("lost host 127.0.0.3 (ranks 1..2)"), "{}", out.stderr);
    assert_no_leftovers(&mark);
    no_agents_left();
}

#[test]
fn killing_prun_ends_remote_ranks_and_a_missing_prun_is_named() {
    let _one = serial();
    let list = hosts(2, 2);
    let mut job = remote_job(&["-n", "4", "--host", &list, "@prun-testjob", "sleep"]).spawn();
    job.wait_ready(4);
    let mark = job.mark_owned();
    job.signal(Signal::SIGKILL);
    let _ = job.wait();
    assert_no_leftovers(&mark);
    no_agents_left();
    // a host without prun where --prefix says it is: ssh's shell says so, and prun passes it on
    let out =
        remote_job(&["--prefix", "/no/such/prefix", "-n", "2", "--host", "127.0.0.2:2", "@hello"]).run();
    out.expect_code(1).no_leftovers();
    assert!(
        out.stderr.contains("127.0.0.2") && out.stderr.contains("/no/such/prefix/bin/prun"),
        "{}",
        out.stderr
    );
    no_agents_left();
}

/// The fault-injection suite across two hosts at 16 ranks: a rank SIGKILLed during an
/// allreduce, during a map and during heavy output ends the job everywhere, naming the rank.
#[test]
fn faults_at_16_ranks_over_two_hosts() {
    let _serial = serial();
    let two = hosts(2, 8);
    for (mode, arg) in [("die-in-allreduce", "12"), ("die-in-map", "3")] {
        let out = remote_job(&["-n", "16", "--host", &two, "@prun-testjob", mode, arg]).run();
        out.expect_code(128 + 9).no_leftovers();
        assert!(
            out.stderr.contains(&format!("rank {arg} ")) && out.stderr.contains("SIGKILL"),
            "{mode}: {}",
            out.stderr
        );
        no_agents_left();
    }
    let job = remote_job(&[
        "-n",
        "16",
        "--host",
        &two,
        "--tag-output",
        "@prun-testjob",
        "spew",
        "100000000",
        "100",
    ])
    .spawn();
    let mark = job.mark_owned();
    let start = Instant::now();
    let pid = loop {
        if let Some(pid) = rank_pid(&mark, 13) {
            break pid;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "rank 13 never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).expect("kill rank 13");
    let out = job.wait();
    out.expect_code(128 + 9);
    assert!(out.stderr.contains("rank 13 ") && out.stderr.contains("SIGKILL"), "{}", out.stderr);
    assert_no_leftovers(&mark);
    no_agents_left();
}

/// Over two hosts, a map's thieves try ranks of their own host first, and `--trace` holds the
/// events of the ranks on other hosts (their agents send them up).
#[test]
fn steals_stay_on_the_host_first_and_remote_ranks_are_traced() {
    let _one = serial();
    let trace = std::env::temp_dir().join(format!("prun-mh-trace-{}.json", std::process::id()));
    let path = trace.to_str().expect("utf8");
    // 3 ranks on each host: ranks 0-2 on the first, 3-5 on the second
    let list = hosts(2, 3);
    let out =
        remote_job(&["--trace", path, "-n", "6", "--host", &list, "@skew", "60", "10", "1", "0.25"]).run();
    out.expect_code(0).no_leftovers();
    no_agents_left();
    let text = std::fs::read_to_string(&trace).expect("trace written");
    let _ = std::fs::remove_file(&trace);
    for rank in 0..6 {
        let tid = format!("\"tid\":{rank},");
        assert!(
            text.lines().any(|l| l.contains("\"name\":\"batch\"") && l.contains(&tid)),
            "rank {rank}'s batches are in the trace"
        );
    }
    // each thief's first steal of each map: (map, thief) -> (time, the rank it asked); the
    // rank that answered ("from") may be elsewhere, when the root passed the request on
    let mut first: std::collections::HashMap<(u64, u64), (f64, u64)> = Default::default();
    for line in text.lines().filter(|l| l.contains("\"name\":\"steal\"")) {
        let (Some(ts), Some(tid), Some(map), Some(victim)) = (
            trace_number(line, "ts"),
            trace_number(line, "tid"),
            trace_number(line, "map"),
            trace_number(line, "victim"),
        ) else {
            panic!("a steal event without its fields: {line}");
        };
        let e = first.entry((map as u64, tid as u64)).or_insert((ts, victim as u64));
        if ts < e.0 {
            *e = (ts, victim as u64);
        }
    }
    assert!(!first.is_empty(), "the dynamic map's ranks stole: {text}");
    for ((map, thief), (_, victim)) in &first {
        assert_eq!(
            thief / 3,
            victim / 3,
            "map {map}: rank {thief} first stole from rank {victim}, on another host"
        );
    }
}

/// Ranks on two hosts in different collective calls with no message between them (rank 3, on
/// the second host, waits for its parent's part of a broadcast while that parent waits for rank
/// 3's part of a gather): the launcher's check of what the ranks wait in reaches the remote
/// ranks too, and ends the job on both hosts.
#[test]
fn ranks_in_different_calls_on_two_hosts_end_the_job() {
    let _one = serial();
    let list = hosts(2, 2);
    let job = [
        "-n",
        "4",
        "--host",
        &list,
        "--timeout",
        "60",
        "@prun-testjob",
        "coll-mismatch",
        "into-len",
        "gather",
        "3",
        "10",
        "bcast",
    ];
    let out = remote_job(&job).run();
    assert_eq!(out.code(), 1, "{}", out.stderr);
    out.no_leftovers();
    assert!(
        out.stderr.contains(
            "in gather_into (root 0, 80-byte buffers) call #0, rank 3 in broadcast_into (root 0, 80-byte buffers) call #0"
        ),
        "{}",
        out.stderr
    );
    no_agents_left();
}
