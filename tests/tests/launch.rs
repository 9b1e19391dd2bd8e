//! Starting jobs: every rank runs, with the right environment, at several sizes.

use prun_tests::{bin, prun};
use std::collections::BTreeSet;

fn hostname() -> String {
    nix::unistd::gethostname().expect("hostname").into_string().expect("utf8")
}

fn hello(n: usize) {
    let out = prun(["-n", &n.to_string(), "@hello"]).run();
    out.expect_code(0).no_leftovers();
    let got: BTreeSet<&str> = out.lines().into_iter().collect();
    let host = hostname();
    let want: BTreeSet<String> = (0..n).map(|r| format!("hello from rank {r} of {n} on {host}")).collect();
    assert_eq!(got, want.iter().map(String::as_str).collect(), "{}", out.stdout);
    assert_eq!(out.lines().len(), n, "each rank prints exactly one line");
}

#[test]
fn hello_1_2_7_64() {
    for n in [1, 2, 7, 64] {
        hello(n);
    }
}

#[test]
fn ring_1_2_7_64() {
    for n in [1, 2, 7, 64] {
        let out = prun(["-n", &n.to_string(), "@ring", "3"]).run();
        out.expect_code(0).no_leftovers();
        assert_eq!(out.lines(), [format!("ring ok: 3 laps of {n} ranks")], "{}", out.stderr);
    }
}

#[test]
fn a_program_alone_is_a_world_of_one() {
    let out = std::process::Command::new(bin("hello")).env_remove("PRUN_RANK").output().expect("run hello");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("hello from rank 0 of 1 on {}", hostname())
    );
}

#[test]
fn every_rank_gets_its_environment() {
    let wdir = std::env::temp_dir();
    let out = prun([
        "-np",
        "3",
        "-x",
        "PRUN_TEST_EXTRA=forty two",
        "--wdir",
        wdir.to_str().expect("utf8"),
        "@prun-testjob",
        "env",
        "PRUN_TEST_EXTRA",
    ])
    .run();
    out.expect_code(0).no_leftovers();
    let mut lines = out.lines();
    lines.sort();
    let job = lines[0].split("job=").nth(1).and_then(|s| s.split(' ').next()).expect("job id").to_string();
    assert!(job.len() >= 8, "a real job id: {job}");
    let cwd = std::fs::canonicalize(&wdir).expect("canonical");
    for (r, line) in lines.iter().enumerate() {
        assert_eq!(
            *line,
            format!(
                "env rank={r} size=3 local_rank={r} local_size=3 job={job} world_rank={r} extra=forty two cwd={}",
                cwd.display()
            )
        );
    }
}

/// The policy and nice value (`policy/nice`) of every thread of every rank, from `n` ranks'
/// `sched` lines of the testjob.
fn sched_of(out: &prun_tests::Finished, n: usize) -> Vec<String> {
    let lines: Vec<&str> = out.lines().into_iter().filter(|l| l.starts_with("sched rank")).collect();
    assert_eq!(lines.len(), n, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    lines.iter().flat_map(|l| l.rsplit(' ').next().unwrap_or("").split(',').map(String::from)).collect()
}

/// This test process's nice value (field 19 of /proc's stat), which the ranks inherit.
fn own_nice() -> i32 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    prun_tests::stat_field(&stat, 19).and_then(|f| f.parse().ok()).expect("nice")
}

#[test]
fn ranks_sharing_cores_run_under_sched_batch_and_keep_their_nice_value() {
    // crowded (as where ranks outnumber cores): every thread of every rank in SCHED_BATCH (3),
    // the runtime's threads included, with the nice value the ranks were started with
    let nice = own_nice();
    let job = ["-x", "PRUN_CROWDED=1", "-n", "4", "nice", "-n", "5", "@prun-testjob", "sched"];
    let out = prun(job).run();
    out.expect_code(0).no_leftovers();
    let threads = sched_of(&out, 4);
    assert!(threads.len() > 4, "the runtime's threads are listed too: {threads:?}");
    let niced = (nice + 5).min(19);
    assert!(threads.iter().all(|t| *t == format!("3/{niced}")), "{threads:?}");
    // a core per rank: the default policy (0); PRUN_SCHED_BATCH overrides either way
    for (vars, policy) in [
        (&["PRUN_CROWDED=0"][..], 0),
        (&["PRUN_CROWDED=1", "PRUN_SCHED_BATCH=0"][..], 0),
        (&["PRUN_CROWDED=0", "PRUN_SCHED_BATCH=1"][..], 3),
    ] {
        let mut args: Vec<&str> = vars.iter().flat_map(|v| ["-x", *v]).collect();
        args.extend(["-n", "3", "@prun-testjob", "sched"]);
        let out = prun(args).run();
        out.expect_code(0);
        let threads = sched_of(&out, 3);
        assert!(threads.iter().all(|t| *t == format!("{policy}/{nice}")), "{vars:?}: {threads:?}");
    }
}

#[test]
fn connections_open_lazily() {
    // after a barrier each rank has its listener, its control connection and one connection
    // each way to the ranks the barrier talks to: by dissemination log2(64) = 6 of them, or, on
    // a host with fewer cores than ranks, up a gather-and-release tree (rank 0's children are
    // ranks 1-32, rank 1's 33-63) 1 for most ranks and up to 33 for ranks 0 and 1; if every rank
    // opened a connection to every peer, each would hold 2 x 63
    let out = prun(["-n", "64", "@prun-testjob", "sockets"]).run();
    out.expect_code(0).no_leftovers();
    let counts: Vec<usize> = out
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("sockets "))
        .map(|l| l.split(' ').nth(1).and_then(|n| n.parse().ok()).expect("count"))
        .collect();
    assert_eq!(counts.len(), 64);
    let most = counts.iter().max().copied().unwrap_or(0);
    assert!(most <= 2 + 2 * 33 + 2, "a rank holds {most} sockets: connections are not lazy");
    let total: usize = counts.iter().sum();
    assert!(total <= 64 * 16, "the ranks hold {total} sockets ({counts:?}): connections are not lazy");
}

#[test]
fn many_barriers_on_an_oversubscribed_host() {
    prun(["-n", "16", "@prun-testjob", "barriers", "200"]).run().expect_code(0).no_leftovers();
}

#[test]
fn hostfile_slots_place_the_ranks() {
    let hosts = prun_tests::temp_file("hosts-ok", "# two families\nlocalhost slots=2\nlocalhost:1\n\n");
    let out = prun(["-n", "3", "--hostfile", hosts.to_str().expect("utf8"), "@prun-testjob", "env"]).run();
    out.expect_code(0).no_leftovers();
    assert_eq!(out.lines().len(), 3);
    let out = prun(["--host", "localhost:2", "@hello"]).run();
    out.expect_code(0);
    assert_eq!(out.lines().len(), 2, "-n defaults to the slots");
}

#[test]
fn output_dir_gets_one_file_per_rank_and_stream() {
    let dir = std::env::temp_dir().join(format!("prun-outdir-{}", std::process::id()));
    let out = prun(["-n", "3", "--output-dir", dir.to_str().expect("utf8"), "@hello"]).run();
    out.expect_code(0).no_leftovers();
    assert!(out.stdout.is_empty(), "output went to the files: {}", out.stdout);
    for r in 0..3 {
        let text = std::fs::read_to_string(dir.join(format!("rank.{r}.stdout"))).expect("stdout file");
        assert!(text.starts_with(&format!("hello from rank {r} of 3")), "{text}");
        assert!(dir.join(format!("rank.{r}.stderr")).exists());
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn version_and_help() {
    let v = std::process::Command::new(bin("prun")).arg("--version").output().expect("run");
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(v.status.success() && text.contains("not PRRTE"), "{text}");
    let h = std::process::Command::new(bin("prun")).arg("--help").output().expect("run");
    let text = String::from_utf8_lossy(&h.stdout);
    assert!(h.status.success() && text.contains("Examples:") && text.contains("--tag-output"), "{text}");
}

#[test]
fn sample_hostfiles_work() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hostfiles");
    let path = |name: &str| dir.join(name).to_str().expect("utf8").to_string();
    let out = prun(["--hostfile", &path("openmpi.hosts"), "@hello"]).run();
    out.expect_code(0);
    assert_eq!(out.lines().len(), 6, "6 slots in openmpi.hosts");
    let out = prun(["--hostfile", &path("mpich.hosts"), "@hello"]).run();
    out.expect_code(0);
    assert_eq!(out.lines().len(), 3, "3 slots in mpich.hosts");
    let out = prun(["-n", "9", "--oversubscribe", "--hostfile", &path("openmpi.hosts"), "@hello"]).run();
    out.expect_code(2);
    assert!(out.stderr.contains("max_slots"), "max_slots=8 holds even with --oversubscribe: {}", out.stderr);
}

#[test]
fn a_pbs_allocation_gives_hosts_and_rank_count() {
    let nodefile = prun_tests::temp_file("pbs-nodes", "localhost\nlocalhost\nlocalhost\n");
    let out = prun(["--display-map", "@hello"]).env("PBS_NODEFILE", nodefile.to_str().expect("utf8")).run();
    out.expect_code(0).no_leftovers();
    assert_eq!(out.lines().len(), 3, "one rank per line of the node file: {}", out.stdout);
    assert!(out.stderr.contains("PBS allocation"), "the map names the source: {}", out.stderr);
}

#[test]
fn a_slurm_allocation_gives_hosts_and_rank_count() {
    let host = hostname();
    let out = prun(["@hello"]).env("SLURM_JOB_NODELIST", &host).env("SLURM_TASKS_PER_NODE", "4").run();
    out.expect_code(0).no_leftovers();
    assert_eq!(out.lines().len(), 4, "{}", out.stdout);
    let out = prun(["-n", "2", "--host", "localhost:2", "@hello"])
        .env("SLURM_JOB_NODELIST", "elsewhere[1-4]")
        .run();
    out.expect_code(0);
    assert_eq!(out.lines().len(), 2, "--host wins over the allocation: {}", out.stderr);
}

#[test]
fn started_by_an_mpi_launcher_without_mpi_support_is_a_clear_error() {
    for var in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        let out = std::process::Command::new(bin("hello"))
            .env_remove("PRUN_RANK")
            .env(var, "4")
            .output()
            .expect("run");
        assert!(!out.status.success(), "{var}: four lone worlds would be wrong");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var) && err.contains("--features mpi") && err.contains("prun -n 4"), "{err}");
    }
}

/// The CPUs this test process may run on (its `Cpus_allowed_list`), which the ranks inherit.
fn own_cpus() -> Vec<usize> {
    cpu_list(&own_cpu_list())
}

/// This test process's `Cpus_allowed_list`, as the kernel writes it (`0-3,8`).
fn own_cpu_list() -> String {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).expect("list").trim().to_string()
}

/// A CPU list as the kernel writes them (`0-3,8`), expanded.
fn cpu_list(text: &str) -> Vec<usize> {
    text.split(',')
        .flat_map(|p| {
            let (lo, hi) = p.split_once('-').unwrap_or((p, p));
            lo.parse::<usize>().expect("cpu")..=hi.parse::<usize>().expect("cpu")
        })
        .collect()
}

/// Each rank's `affinity` line: its CPUs, in rank order, after checking that every thread of
/// every rank has the same as its main thread.
fn affinity_of(out: &prun_tests::Finished, n: usize) -> Vec<Vec<usize>> {
    out.expect_code(0).no_leftovers();
    let mut lines: Vec<(usize, Vec<usize>)> = out
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("affinity "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.get(2), Some(&"true"), "a thread of the rank is bound otherwise: {l}");
            (f[0].parse().expect("rank"), cpu_list(f[1]))
        })
        .collect();
    lines.sort();
    assert_eq!(lines.len(), n, "stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    lines.into_iter().map(|(_, cpus)| cpus).collect()
}

/// Where ranks outnumber CPUs (at most four per CPU, a power of two of them), each binds itself
/// to a core by default, round robin, and the launcher lets go of them once other work loads
/// the host: here a thread of the test's own spinning, after which every thread of every rank
/// may run on every CPU again.
#[test]
fn ranks_bound_by_default_are_unbound_when_other_work_loads_the_host() {
    let (cpus, list) = (own_cpus(), own_cpu_list());
    let host = hostname();
    // a rank per CPU, crowded by decree: bound by default wherever the ranks are a power of two
    let n = cpus.len();
    if n < 2 {
        eprintln!("skipped: with one CPU, a rank bound to it and one unbound may run on the same");
        return;
    }
    if !n.is_power_of_two() {
        eprintln!("skipped: {n} CPUs, and ranks are bound by default only in powers of two");
        return;
    }
    let n_arg = n.to_string();
    let job = [
        "--report-bindings",
        "-x",
        "PRUN_CROWDED=1",
        "-n",
        &n_arg,
        "@prun-testjob",
        "affinity-change",
        &list,
    ];
    let spin = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let spinner = {
        let spin = std::sync::Arc::clone(&spin);
        std::thread::spawn(move || {
            while spin.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let out = prun(job).run();
    spin.store(false, std::sync::atomic::Ordering::Relaxed);
    spinner.join().expect("spinner");
    assert!(affinity_of(&out, n).iter().all(|c| *c == cpus), "{}\n{}", out.stdout, out.stderr);
    for rank in 0..n {
        // bound first, to its core of the round robin
        let bound = format!("prun: rank {rank} on {host}: bound to CPUs ");
        let line = out.stderr.lines().find(|l| l.starts_with(&bound)).unwrap_or_default();
        assert!(line.ends_with("(a core, until other work loads the host)"), "{}", out.stderr);
        let unbound = format!(
            "prun: rank {rank} on {host}: unbound (other work loads the host); may run on CPUs {list}"
        );
        assert!(out.stderr.lines().any(|l| l == unbound), "no '{unbound}' in:\n{}", out.stderr);
    }
}

#[test]
fn bind_to_spreads_ranks_round_robin_over_the_allowed_cpus() {
    let cpus = own_cpus();
    // unbound by default where each rank has a CPU, and with --bind-to none: every rank may
    // run wherever prun may
    let n = cpus.len().to_string();
    let out = prun(["-n", &n, "@prun-testjob", "affinity"]).run();
    assert!(affinity_of(&out, cpus.len()).iter().all(|c| *c == cpus));
    let out =
        prun(["--bind-to", "none", "-x", "PRUN_CROWDED=1", "-n", "3", "@prun-testjob", "affinity"]).run();
    assert!(affinity_of(&out, 3).iter().all(|c| *c == cpus));
    // a hardware thread each, round robin: with 2 CPUs, ranks 0, 2 and 4 on the first
    let out = prun(["--bind-to", "hwthread", "-n", "5", "@prun-testjob", "affinity"]).run();
    let got = affinity_of(&out, 5);
    for (rank, c) in got.iter().enumerate() {
        assert_eq!(*c, [cpus[rank % cpus.len()]], "rank {rank}: {got:?}");
    }
    // a core each (its allowed hardware threads), round robin over the cores: the distinct
    // sets are disjoint, and rank r gets the (r mod their number)-th
    let out = prun(["-bind-to", "core", "-n", "5", "@prun-testjob", "affinity"]).run();
    let got = affinity_of(&out, 5);
    let mut distinct: Vec<&Vec<usize>> = Vec::new();
    for c in &got {
        assert!(!c.is_empty() && c.iter().all(|x| cpus.contains(x)), "{got:?}");
        if !distinct.contains(&c) {
            distinct.push(c);
        }
    }
    assert!(distinct.len() >= 2.min(cpus.len()), "the ranks are not spread: {got:?}");
    for (rank, c) in got.iter().enumerate() {
        assert_eq!(c, distinct[rank % distinct.len()], "rank {rank}: {got:?}");
        assert!(distinct.iter().all(|d| *d == c || d.iter().all(|x| !c.contains(x))), "{got:?}");
    }
    // within what each rank may use: a rank started on one CPU stays on it
    let last = cpus[cpus.len() - 1].to_string();
    let job = ["--bind-to", "core", "-n", "2", "taskset", "-c", &last, "@prun-testjob", "affinity"];
    let got = affinity_of(&prun(job).run(), 2);
    assert!(got.iter().all(|c| c.len() == 1 && c[0].to_string() == last), "{got:?}");
    // --report-bindings: each rank says where it may run, bound or not
    let host = hostname();
    let job = ["--bind-to", "hwthread", "--report-bindings", "-n", "3", "@prun-testjob", "affinity"];
    let out = prun(job).run();
    for (rank, c) in affinity_of(&out, 3).iter().enumerate() {
        let line = format!("prun: rank {rank} on {host}: bound to CPUs {} (a hwthread)", c[0]);
        assert!(out.stderr.lines().any(|l| l == line), "no '{line}' in:\n{}", out.stderr);
    }
    // (a rank per CPU: not crowded, so not bound)
    let n = cpus.len().min(2);
    let out = prun(["--report-bindings", "-n", &n.to_string(), "@prun-testjob", "affinity"]).run();
    let own = own_cpu_list();
    for rank in 0..n {
        let line = format!("prun: rank {rank} on {host}: not bound; may run on CPUs {own}");
        assert!(out.stderr.lines().any(|l| l == line), "no '{line}' in:\n{}", out.stderr);
    }
    // a unit prun does not know is a usage error that names the ones it does
    let out = prun(["--bind-to", "socket", "-n", "2", "@prun-testjob", "affinity"]).run();
    out.expect_code(2);
    assert!(out.stderr.contains("expected none, core or hwthread, not 'socket'"), "{}", out.stderr);
}
