//! The per-host agent: `prun __agent`, started on a remote host by the launch agent (ssh).
//!
//! It reads its host's share of the job from stdin, starts those ranks exactly as the launcher
//! starts local ones (own process groups, pipes), forwards their output and exit statuses on
//! stdout, passes on the launcher's signals, and ends every rank when the channel closes (the
//! launcher or the ssh session died), so nothing is left on the host.

use crate::agent_wire::{self, AgentJob, FromAgent, ToAgent};
use crate::jobdir::JobDir;
use crate::local::{self, OutputTo, RankCommand};
use crate::output::{self, Sink, StreamKind};
use crate::program;
use crate::remote::{Agent, Listener};
use crate::status::Ended;
use crate::unbind;
use crate::watchdog::Watchdog;
use nix::sys::signal::Signal;
use prun::env;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The hidden first argument that runs prun as an agent.
pub const ARG: &str = "__agent";

/// The agent's channel to the launcher, shared by the threads that write to it.
#[derive(Clone)]
struct Channel(Arc<Mutex<io::Stdout>>);

impl Channel {
    fn send(&self, message: &FromAgent) {
        let mut out = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // a broken channel means the launcher is gone; the read side notices and ends the ranks
        let _ = agent_wire::send(&mut *out, message);
    }
}

/// Output of the host's ranks, sent to the launcher as it comes.
struct Forward(Channel);

impl Sink for Forward {
    fn data(&mut self, rank: usize, kind: StreamKind, bytes: &[u8]) {
        let stderr = kind == StreamKind::Stderr;
        self.0.send(&FromAgent::Output { rank, stderr, bytes: bytes.to_vec() });
    }

    fn eof(&mut self, rank: usize, kind: StreamKind) {
        self.0.send(&FromAgent::OutputEnd { rank, stderr: kind == StreamKind::Stderr });
    }
}

/// Relays the messages of an agent this one started (below it in the launch tree) upwards.
struct Relay {
    channel: Channel,
    host: String,
}

impl Listener for Relay {
    fn message(&mut self, message: FromAgent) {
        self.channel.send(&message);
    }

    fn lost(&mut self, words: String) {
        self.channel.send(&FromAgent::Lost { host: self.host.clone(), words });
    }
}

enum Event {
    Launcher(Option<ToAgent>),
    Exited(usize, Ended),
}

/// Most bytes of trace lines in one message (the channel's frames hold 16 MiB at most).
const TRACE_CHUNK: usize = 4 << 20;

/// Sends the trace events rank `rank` wrote to `file` (none if it wrote none), in whole lines
/// of at most [`TRACE_CHUNK`] bytes a message.
fn send_trace(channel: &Channel, rank: usize, file: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(file) else { return };
    for text in chunks(&text, TRACE_CHUNK) {
        channel.send(&FromAgent::Trace { rank, text });
    }
}

/// `text`'s lines, each ended by a newline, gathered into chunks of at most `max` bytes (a
/// longer line alone in its chunk).
fn chunks(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut chunk = String::new();
    for line in text.lines() {
        if !chunk.is_empty() && chunk.len() + line.len() + 1 > max {
            out.push(std::mem::take(&mut chunk));
        }
        chunk.push_str(line);
        chunk.push('\n');
    }
    if !chunk.is_empty() {
        out.push(chunk);
    }
    out
}

/// The agent's main: returns its exit status.
pub fn run() -> i32 {
    let channel = Channel(Arc::new(Mutex::new(io::stdout())));
    let mut input = io::stdin();
    let job: AgentJob = match agent_wire::recv(&mut input) {
        Ok(Some(ToAgent::Start(job))) => *job,
        _ => return 1,
    };
    let host = job.host.clone();
    match start(job, &channel, input) {
        Ok(status) => status,
        Err(message) => {
            channel.send(&FromAgent::Failed { host, message });
            1
        }
    }
}

fn start(job: AgentJob, channel: &Channel, input: io::Stdin) -> Result<i32, String> {
    let host = job.host.clone();
    let program =
        program::resolve(OsStr::new(&job.program)).map_err(|e| format!("on {host}: {}", e.message))?;
    let dir = JobDir::create(&format!("{}-n{}", job.job_id, job.node))
        .map_err(|e| format!("on {host}: cannot create the job's socket folder: {e}"))?;
    // ends this host's ranks and removes the folder if this agent is killed
    let mut watchdog =
        Watchdog::start(dir.path()).map_err(|e| format!("on {host}: cannot start the watchdog: {e}"))?;
    let wdir = job.wdir.as_ref().map(PathBuf::from);
    if let Some(w) = &wdir
        && !w.is_dir()
    {
        return Err(format!("on {host}: --wdir {}: no such directory", w.display()));
    }
    let mut common: Vec<(OsString, OsString)> = [
        (env::JOB_ID, job.job_id.clone()),
        (env::CONTROL, job.control.clone()),
        (env::SECRET, job.secret.clone()),
        (env::SIZE, job.size.to_string()),
        (env::NODE_RANK, job.node.to_string()),
        (env::TCP_BIND, job.tcp_bind.clone()),
        (env::HOST, host.clone()),
        (env::LOCAL_SIZE, job.ranks.len().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (OsString::from(k), OsString::from(v)))
    .chain([(OsString::from(env::SOCKET_DIR), dir.path().as_os_str().to_owned())])
    .chain(job.env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))))
    .collect();
    // the ranks here write their trace events into this host's job folder; each rank's go up
    // once it has ended
    let trace_dir = job.trace.then(|| dir.path().join("trace"));
    if let Some(t) = &trace_dir {
        std::fs::create_dir(t).map_err(|e| format!("on {host}: cannot create the trace folder: {e}"))?;
        common.push((OsString::from(env::TRACE_DIR), t.as_os_str().to_owned()));
    }
    let arg0 = OsString::from(&job.arg0);
    let args: Vec<OsString> = job.args.iter().map(OsString::from).collect();
    let (tx, rx) = mpsc::channel();
    let mut pids = HashMap::new();
    let mut groups = HashMap::new();
    let mut pipes = Vec::new();
    let mut stdins = Vec::new();
    for &(rank, local_rank) in &job.ranks {
        let mut env = common.clone();
        env.push((OsString::from(env::RANK), OsString::from(rank.to_string())));
        env.push((OsString::from(env::LOCAL_RANK), OsString::from(local_rank.to_string())));
        let command = RankCommand {
            rank,
            program: &program,
            arg0: &arg0,
            args: &args,
            wdir: wdir.as_ref(),
            env_remove: env::LAUNCHER_SET,
            env,
            stdin: job.stdin_ranks.contains(&rank),
            output: &OutputTo::Pipes,
        };
        match local::start(&command) {
            Ok(started) => {
                pids.insert(started.pid, rank);
                groups.insert(rank, started.pid);
                watchdog.watch(started.pid);
                pipes.extend(started.pipes);
                stdins.extend(started.stdin);
                channel.send(&FromAgent::Started { rank, pid: started.pid });
            }
            Err(e) => {
                for &pgid in groups.values() {
                    local::signal_group(pgid, Signal::SIGKILL);
                }
                return Err(format!("on {host}: cannot start rank {rank}: {e}"));
            }
        }
    }
    let started: Vec<i32> = pids.keys().copied().collect();
    local::reap(pids, tx.clone(), Event::Exited).map_err(|e| e.to_string())?;
    unbind::watch(started, dir.path(), unbind::bind_of(&common).as_deref());
    // then the agents below this one in the launch tree
    let mut children = Vec::new();
    for child in job.children {
        let relay = Relay { channel: channel.clone(), host: child.host.clone() };
        let host = child.host.clone();
        match Agent::start(child, &job.launch_agent, Path::new(&job.prun), relay) {
            Ok(agent) => children.push(agent),
            Err(e) => {
                channel.send(&FromAgent::Lost { host, words: format!("cannot run the launch agent: {e}") })
            }
        }
    }
    let forwarder = output::forward_pipes(pipes, Arc::new(Mutex::new(Forward(channel.clone()))))
        .map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut input = input;
        loop {
            let message = agent_wire::recv::<_, ToAgent>(&mut input).ok().flatten();
            let end = message.is_none();
            if tx.send(Event::Launcher(message)).is_err() || end {
                break;
            }
        }
    });
    let mut running: HashMap<usize, i32> = groups;
    let signal_all = |running: &HashMap<usize, i32>, sig: Signal| {
        for &pgid in running.values() {
            local::signal_group(pgid, sig);
        }
    };
    loop {
        match rx.recv() {
            Ok(Event::Exited(rank, ended)) => {
                if let Some(pgid) = running.remove(&rank) {
                    local::signal_group(pgid, Signal::SIGKILL);
                    watchdog.forget(pgid);
                }
                let (code, signal, core) = match ended {
                    Ended::Code(c) => (Some(c), 0, false),
                    Ended::Signal { signal, core } => (None, signal, core),
                };
                if let Some(t) = &trace_dir {
                    send_trace(channel, rank, &t.join(format!("rank-{rank}.trace")));
                }
                channel.send(&FromAgent::Exited { rank, code, signal, core });
            }
            Ok(Event::Launcher(Some(ToAgent::Signal(sig)))) => {
                if let Ok(signal) = Signal::try_from(sig) {
                    signal_all(&running, signal);
                }
                children.iter_mut().for_each(|c| c.signal(sig));
            }
            Ok(Event::Launcher(Some(ToAgent::Stdin(bytes)))) => {
                // a rank that stopped reading drops out; the others still get their copy
                stdins.retain_mut(|s| s.write_all(&bytes).is_ok());
                children.iter_mut().for_each(|c| c.stdin(&ToAgent::Stdin(bytes.clone())));
            }
            Ok(Event::Launcher(Some(ToAgent::StdinEnd))) => {
                stdins.clear();
                children.iter_mut().for_each(|c| c.stdin(&ToAgent::StdinEnd));
            }
            Ok(Event::Launcher(Some(ToAgent::Finish))) => {
                children.iter_mut().for_each(Agent::finish);
                let deadline = Instant::now() + Duration::from_secs(3);
                children.iter_mut().for_each(|c| c.wait_until(deadline));
                break;
            }
            Ok(Event::Launcher(Some(ToAgent::Start(_)))) => {}
            Ok(Event::Launcher(None)) | Err(_) => {
                // the launcher is gone: the agents below end their ranks when their sessions
                // close, and this one ends its own
                children.iter_mut().for_each(Agent::kill);
                signal_all(&running, Signal::SIGTERM);
                std::thread::sleep(Duration::from_secs(1));
                signal_all(&running, Signal::SIGKILL);
                watchdog.finish();
                drop(dir);
                return Ok(1);
            }
        }
    }
    let drained = Instant::now() + Duration::from_secs(2);
    while !forwarder.is_finished() && Instant::now() < drained {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = channel.0.lock().unwrap_or_else(PoisonError::into_inner).flush();
    watchdog.finish();
    drop(dir);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn trace_lines_go_up_whole_in_bounded_chunks() {
        let text = "aaaa\nbb\ncccccc\nd";
        assert_eq!(chunks(text, 8), ["aaaa\nbb\n", "cccccc\n", "d\n"]);
        // a line longer than a chunk travels alone, whole
        assert_eq!(chunks("0123456789\nx\n", 4), ["0123456789\n", "x\n"]);
        assert!(chunks("", 8).is_empty());
        let many: String = (0..1000).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        let parts = chunks(&many, 100);
        assert!(parts.iter().all(|p| p.len() <= 100 && p.ends_with('\n')));
        assert_eq!(parts.concat(), many);
    }
}
