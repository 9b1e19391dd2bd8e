//! Helpers for prun's end-to-end tests: find the real binaries, run real jobs, and check that
//! nothing of a job is left running afterwards.
//!
//! Every job started here carries a unique `PRUN_TEST_MARK` in its environment; ranks and their
//! children inherit it, so [`leftovers`] finds any process of the job by scanning `/proc`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Longest any test job may run before the test fails as hung: above the longest jobs' own
/// `--timeout` (120 s), so that prun's report of what the ranks wait in comes first.
pub const HANG: Duration = Duration::from_secs(180);

/// The folder of this build's binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>
    exe.parent().and_then(|d| d.parent()).expect("target/<profile>").to_path_buf()
}

/// Builds the launcher and the examples in this test's profile, once per test process.
fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = bin_dir();
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug").to_string();
        let target = dir.parent().expect("target dir").to_path_buf();
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "prun-launcher",
            "-p",
            "prun-examples",
            "-p",
            "prun-tests",
            "-p",
            "prun-timeline",
            "--bins",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile == "release" {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build");
        assert!(out.status.success(), "cargo build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    });
}

/// Path of one of the workspace's binaries (`prun`, `hello`, `ring`, `prun-testjob`).
pub fn bin(name: &str) -> PathBuf {
    ensure_built();
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

fn new_mark() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// A prun command line about to run.
pub struct Job {
    cmd: Command,
    mark: String,
    input: Option<Vec<u8>>,
}

/// `prun ARGS...`, where `ARGS` may name binaries as `@hello` (replaced by their path).
pub fn prun<I, S>(args: I) -> Job
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut cmd = Command::new(bin("prun"));
    for a in args {
        let a = a.as_ref();
        match a.strip_prefix('@') {
            Some(name) => cmd.arg(bin(name)),
            None => cmd.arg(a),
        };
    }
    let mark = new_mark();
    cmd.env("PRUN_TEST_MARK", &mark);
    // a test run inside a batch allocation must not place its jobs by it
    for var in ["SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_TASKS_PER_NODE", "PBS_NODEFILE"] {
        cmd.env_remove(var);
    }
    Job { cmd, mark, input: None }
}

/// What a finished job printed and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// prun's exit status.
    pub status: ExitStatus,
    /// prun's stdout.
    pub stdout: String,
    /// prun's stderr.
    pub stderr: String,
    /// The job's mark.
    pub mark: String,
}

impl Finished {
    /// prun's exit code (panics if prun itself was killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| panic!("prun was killed: {:?}\n{}", self.status, self.stderr))
    }

    /// The lines of stdout.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Asserts that no process of the job remains.
    pub fn no_leftovers(&self) -> &Self {
        assert_no_leftovers(&self.mark);
        self
    }
}

impl Job {
    /// Sets an environment variable for prun (and so for the ranks).
    pub fn env(mut self, key: &str, value: &str) -> Job {
        self.cmd.env(key, value);
        self
    }

    /// Feeds `data` to prun's stdin.
    pub fn input(mut self, data: impl Into<Vec<u8>>) -> Job {
        self.input = Some(data.into());
        self
    }

    /// The job's mark, to look for leftovers.
    pub fn mark(&self) -> &str {
        &self.mark
    }

    /// Starts prun with piped stdio.
    pub fn spawn(mut self) -> Running {
        self.cmd.stdin(if self.input.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start prun");
        if let Some(data) = self.input.take() {
            let mut sin = child.stdin.take().expect("stdin");
            std::thread::spawn(move || {
                let _ = sin.write_all(&data);
            });
        }
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut stderr = child.stderr.take().expect("stderr");
        let so_far = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&so_far);
        let err = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            // whole lines only reach `so_far` once they are complete, so readers never see half a line
            let mut pending = Vec::new();
            while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                pending.extend_from_slice(&chunk[..n]);
                if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
                    let lines: Vec<u8> = pending.drain(..=end).collect();
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push_str(&String::from_utf8_lossy(&lines));
                }
            }
            sink.lock().unwrap_or_else(|e| e.into_inner()).push_str(&String::from_utf8_lossy(&pending));
        });
        Running {
            child,
            stdout: Some(stdout),
            seen: String::new(),
            err: Some(err),
            stderr: so_far,
            mark: self.mark,
        }
    }

    /// Appends `program` (a path) to the command line and runs prun to its end.
    pub fn run_with_program(mut self, program: &std::path::Path) -> Finished {
        self.cmd.arg(program);
        self.run()
    }

    /// Runs prun to its end.
    pub fn run(self) -> Finished {
        self.spawn().wait()
    }
}

/// A prun still running.
pub struct Running {
    child: Child,
    stdout: Option<BufReader<std::process::ChildStdout>>,
    seen: String,
    /// Reads prun's stderr into `stderr` until it ends.
    err: Option<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
    mark: String,
}

impl Running {
    /// Reads stdout until `n` lines starting with `ready` have been seen.
    pub fn wait_ready(&mut self, n: usize) {
        let mut ready = 0;
        while ready < n {
            let mut line = String::new();
            let out = self.stdout.as_mut().expect("stdout not yet handed to wait");
            let got = out.read_line(&mut line).expect("read prun's stdout");
            assert!(got > 0, "prun's stdout ended after {ready} of {n} ready lines:\n{}", self.seen);
            ready += usize::from(line.starts_with("ready"));
            self.seen.push_str(&line);
        }
    }

    /// Waits until prun's stderr holds a complete line for which `found` is true, at most
    /// `within`; returns whether it came. For output that prun writes while the job goes on.
    pub fn wait_stderr_line(&self, within: Duration, found: impl Fn(&str) -> bool) -> bool {
        let start = Instant::now();
        loop {
            if self.stderr.lock().unwrap_or_else(|e| e.into_inner()).lines().any(&found) {
                return true;
            }
            if start.elapsed() > within {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The job's mark, to look for leftovers after prun is gone.
    pub fn mark_owned(&self) -> String {
        self.mark.clone()
    }

    /// prun's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` to prun.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("signal prun");
    }

    /// Waits for prun to end (failing the test if it hangs) and collects its output.
    pub fn wait(mut self) -> Finished {
        // keep reading stdout while waiting, so that prun never blocks on a full pipe
        let mut stdout = self.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut rest = String::new();
            if let Some(out) = &mut stdout {
                let _ = out.read_to_string(&mut rest);
            }
            rest
        });
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait for prun") {
                break st;
            }
            if start.elapsed() > HANG {
                let _ = self.child.kill();
                panic!("prun hung for {HANG:?}; output so far:\n{}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest = reader.join().unwrap_or_default();
        self.seen.push_str(&rest);
        if let Some(reader) = self.err.take() {
            let _ = reader.join();
        }
        let stderr = std::mem::take(&mut *self.stderr.lock().unwrap_or_else(|e| e.into_inner()));
        Finished { status, stdout: std::mem::take(&mut self.seen), stderr, mark: self.mark.clone() }
    }
}

/// Processes (not zombies) whose environment carries `PRUN_TEST_MARK=mark`: pid and command.
pub fn leftovers(mark: &str) -> Vec<(u32, String)> {
    let needle = format!("PRUN_TEST_MARK={mark}\0").into_bytes();
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return found };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()).unwrap_or("Z");
        if state == "Z" || state == "X" {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else { continue };
        if env.windows(needle.len()).any(|w| w == needle.as_slice()) {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            found.push((pid, cmd));
        }
    }
    found
}

/// Asserts that no process of the job marked `mark` remains, allowing a few seconds for
/// processes that were just killed to disappear.
pub fn assert_no_leftovers(mark: &str) {
    let start = Instant::now();
    loop {
        let left = leftovers(mark);
        if left.is_empty() {
            return;
        }
        if start.elapsed() > Duration::from_secs(10) {
            for (pid, _) in &left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            panic!("processes of the job are still running: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a temporary file with `text` and returns its path.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prun-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// Pid of rank `rank` of the job marked `mark`.
pub fn rank_pid(mark: &str, rank: usize) -> Option<i32> {
    let want_mark = format!("PRUN_TEST_MARK={mark}\0");
    let want_rank = format!("\0PRUN_RANK={rank}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        let env = String::from_utf8_lossy(&env);
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let is_rank = String::from_utf8_lossy(&cmd).contains("prun-testjob");
        (is_rank && env.contains(&want_mark) && env.contains(&want_rank)).then_some(pid)
    })
}

/// The processor seconds the test job's `idle-wait` mode reports for its three waits of 1.5 s.
pub fn idle_cpu(stdout: &str) -> Vec<f64> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("idle-wait cpu "))
        .unwrap_or_else(|| panic!("no idle-wait line: {stdout}"));
    line["idle-wait cpu ".len()..].split_whitespace().map_while(|w| w.parse::<f64>().ok()).collect()
}

/// The number after `"key":` in a line of a trace written by `prun --trace` (one event per
/// line), if there is one.
pub fn trace_number(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(&format!("\"{key}\":"))? + key.len() + 3..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Field `n` of a `/proc/.../stat` line, counted from 1 as proc(5) counts them (the command, field
/// 2, is in parentheses and may hold spaces: the fields after it are counted from its end).
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let (_, after) = stat.rsplit_once(')')?;
    after.split_whitespace().nth(n.checked_sub(3)?)
}

/// `tests/c/deny_cross_memory.c`, built once: runs a program where the kernel refuses it
/// `process_vm_readv` and `process_vm_writev`.
pub fn deny_cross_memory() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("c/deny_cross_memory.c");
            let out = std::env::temp_dir().join(format!("prun-deny-cross-memory-{}", std::process::id()));
            let cc = Command::new("cc").arg("-O2").arg("-o").arg(&out).arg(&source).status();
            assert!(cc.is_ok_and(|s| s.success()), "cannot compile {} with cc", source.display());
            out
        })
        .clone()
}

/// How many examples of the runtime's documentation `docjob` (a `prun-docjob` built for either
/// backend) holds, checked to be most of them: far fewer means its build script lost them.
pub fn doc_examples(docjob: &std::path::Path) -> usize {
    let out = Command::new(docjob).arg("count").output().expect("run prun-docjob");
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text.trim().parse().unwrap_or_else(|_| panic!("prun-docjob count printed '{text}'"));
    assert!(n >= 30, "only {n} examples found in runtime/src and the README");
    n
}
