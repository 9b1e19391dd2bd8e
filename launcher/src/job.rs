//! A running job: its ranks, the events that reach it, and how it ends.
//!
//! One thread (the caller of [`run`]) owns the job's state and handles events in order: a rank
//! ended, a signal reached prun, a rank registered or asked to abort, a deadline passed. The
//! first failure decides the job's exit status; every path ends with every rank's process group
//! gone: SIGTERM (or the forwarded signal) first, SIGKILL after the grace period.

use crate::agent_wire::{AgentJob, FromAgent};
use crate::calls;
use crate::cli::StdinTarget;
use crate::control::{self, ControlEvent};
use crate::hosts;
use crate::jobdir::JobDir;
use crate::local::{self, OutputTo, RankCommand};
use crate::output::{self, OutputSink};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::remote::{Agent, AgentEvent, ToJob};
use crate::signals::{self, ENDING};
use crate::status::{EXIT_FAILURE, EXIT_TIMEOUT, Ended, signal_name};
use crate::stdin;
use crate::trace;
use crate::unbind;
use crate::watchdog::Watchdog;
use nix::sys::signal::Signal;
use prun::auth::{Credentials, Secret};
use prun::env;
use prun::protocol::{self, CallAt, Peer, ToRank};
use prun::transport::{Endpoint, Listener, Stream};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest prun waits for the ranks' answers to a hang report.
const REPORT_WAIT: Duration = Duration::from_secs(1);

/// A rank's answer to a report: what it does, in words, and the collective call it waits in.
type Answer = (String, Option<CallAt>);

/// What a report of the ranks' activity is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Report {
    /// Printed, and the job goes on (SIGUSR1).
    Print,
    /// Printed, and the job ends (`--timeout`).
    PrintThenEnd,
    /// Not printed unless ranks wait in the same collective call made differently
    /// ([`calls`]), which ends the job.
    Check,
}

/// Longest prun waits, once every rank has ended, for output still in flight.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Something that happened to the job.
pub enum Event {
    /// A rank's process ended.
    Exited {
        /// The rank.
        rank: usize,
        /// How.
        ended: Ended,
    },
    /// prun received a signal.
    Signal(i32),
    /// A rank said something on its control connection.
    Control(ControlEvent),
    /// A remote host's agent said something, or its channel closed.
    Agent(AgentEvent),
}

/// Why the job ends early; the first one wins.
enum Cause {
    Failed(Ended),
    Abort(i32),
    Signal(i32),
    Timeout,
    /// Ranks waited in the same collective call made differently ([`calls`]).
    Mismatch,
    Internal,
}

#[derive(Default)]
struct Rank {
    /// The rank's agent, for ranks on remote hosts.
    agent: Option<usize>,
    pid: Option<i32>,
    ended: Option<Ended>,
    endpoint: Option<Peer>,
    link: Option<Box<dyn Stream>>,
}

/// How soon after a rank's failing exit another rank's death by a signal still counts as the
/// job's first cause: a killed process's sockets close before it can be reaped, so the ranks that
/// lose it can exit with an error before the launcher sees it die (a race of milliseconds, even
/// with 16 ranks on 2 cores; but a rank that dies by a signal just after a peer's failure may be
/// scheduled late on a loaded host, hence half a second).
const FIRST_CAUSE_WINDOW: Duration = Duration::from_millis(500);

struct Job {
    plan: Plan,
    ranks: Vec<Rank>,
    running: usize,
    cause: Option<Cause>,
    deadline: Option<Instant>,
    kill_at: Option<Instant>,
    /// When the first rank failed, for [`Job::not_ours`].
    failed_at: Option<Instant>,
    interrupts: u32,
    table_sent: bool,
    bootstrap_failure: Option<String>,
    watchdog: Watchdog,
    progress: Progress,
    agents: Vec<Agent>,
    /// Every rank of each remote host and of the hosts below it in the launch tree.
    subtrees: HashMap<String, Vec<usize>>,
    /// A report of what the ranks wait for being collected: when to conclude regardless, the
    /// answers so far (in words, and the collective call), and what it is for.
    report: Option<(Instant, Vec<Option<Answer>>, Report)>,
    /// When prun next checks that no two ranks wait in the same call made differently.
    checks: calls::Schedule,
    /// With `--trace`: the folder where ranks here write their events, and where those of
    /// ranks on other hosts, sent by their agents, are kept until the merge.
    trace_dir: Option<PathBuf>,
}

/// Runs the job to its end; returns prun's exit status.
pub fn run(plan: Plan) -> i32 {
    match Job::run(plan) {
        Ok(status) => status,
        Err(message) => {
            eprintln!("prun: error: {message}");
            EXIT_FAILURE
        }
    }
}

fn random_id() -> Result<String, String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for the job id: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Job {
    fn run(plan: Plan) -> Result<i32, String> {
        let np = plan.placements.len();
        let job_id = random_id()?;
        let secret = Secret::generate().map_err(|e| format!("no randomness for the job secret: {e}"))?;
        let dir =
            JobDir::create(&job_id).map_err(|e| format!("cannot create the job's socket folder: {e}"))?;
        let (tx, rx) = mpsc::channel::<Event>();
        signals::catch(tx.clone(), Event::Signal).map_err(|e| format!("cannot catch signals: {e}"))?;

        let control_at = Endpoint::Unix(dir.path().join("control.sock"));
        let listener =
            Listener::bind(&control_at).map_err(|e| format!("cannot listen at {control_at}: {e}"))?;
        let creds = Credentials { job_id: job_id.clone(), secret: secret.clone() };
        control::serve(listener, creds, np, tx.clone(), Event::Control, plan.verbosity >= 2)
            .map_err(|e| format!("cannot start the control thread: {e}"))?;
        let watchdog = Watchdog::start(dir.path()).map_err(|e| format!("cannot start the watchdog: {e}"))?;

        let mut job = Job {
            ranks: (0..np).map(|_| Rank::default()).collect(),
            running: 0,
            cause: None,
            deadline: plan.timeout.map(|t| Instant::now() + t),
            kill_at: None,
            failed_at: None,
            interrupts: 0,
            table_sent: false,
            bootstrap_failure: None,
            watchdog,
            progress: Progress::new(plan.progress, plan.verbosity < 0),
            agents: Vec::new(),
            subtrees: HashMap::new(),
            report: None,
            checks: calls::Schedule::new(),
            trace_dir: None,
            plan,
        };
        job.info(1, format_args!("job {job_id}: {np} ranks of {}", job.plan.program.display()));

        let mut common: Vec<(OsString, OsString)> = [
            (env::JOB_ID, OsString::from(&job_id)),
            (env::CONTROL, OsString::from(control_at.to_string())),
            (env::SECRET, OsString::from(secret.to_hex())),
            (env::SOCKET_DIR, dir.path().as_os_str().to_owned()),
            (env::SIZE, OsString::from(np.to_string())),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), v))
        .chain(job.plan.exports.iter().cloned())
        .collect();
        let trace_dir = dir.path().join("trace");
        if job.plan.trace.is_some() {
            std::fs::create_dir(&trace_dir).map_err(|e| format!("cannot create the trace folder: {e}"))?;
            common.push((OsString::from(env::TRACE_DIR), trace_dir.clone().into_os_string()));
            job.trace_dir = Some(trace_dir.clone());
        }
        // ranks on other hosts: a TCP control socket on the address that reaches them
        let remote: Vec<usize> =
            job.plan.placements.iter().filter(|p| !hosts::is_local(&p.host)).map(|p| p.rank).collect();
        let mut tcp_control = None;
        if !remote.is_empty() {
            let hosts: Vec<&str> = remote.iter().map(|&r| job.plan.placements[r].host.as_str()).collect();
            let ip = match job.plan.iface {
                Some(ip) => ip,
                None => hosts::reaching(&hosts)
                    .map_err(|e| format!("cannot find an address that reaches the hosts: {e}"))?,
            };
            let listener = Listener::bind(&Endpoint::Tcp(std::net::SocketAddr::new(ip, 0)))
                .map_err(|e| format!("cannot listen on {ip}: {e}"))?;
            let at = listener.endpoint().map_err(|e| e.to_string())?;
            let creds = Credentials { job_id: job_id.clone(), secret: secret.clone() };
            control::serve(listener, creds, np, tx.clone(), Event::Control, job.plan.verbosity >= 2)
                .map_err(|e| format!("cannot start the control thread: {e}"))?;
            common.push((OsString::from(env::TCP_BIND), OsString::from(ip.to_string())));
            tcp_control = Some(at);
        }
        let output_to = match &job.plan.output_dir {
            Some(d) => OutputTo::Folder(d.clone()),
            None => OutputTo::Pipes,
        };
        let mut pipes = Vec::new();
        let mut stdins = Vec::new();
        let mut pids = HashMap::new();
        for p in job.plan.placements.iter().filter(|p| hosts::is_local(&p.host)) {
            let mut env = common.clone();
            env.extend(
                [
                    (env::RANK, p.rank.to_string()),
                    (env::LOCAL_RANK, p.local_rank.to_string()),
                    (env::LOCAL_SIZE, p.local_size.to_string()),
                    (env::HOST, p.host.clone()),
                ]
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
            );
            let reads_stdin = job.reads_stdin(p.rank);
            let command = RankCommand {
                rank: p.rank,
                program: &job.plan.program,
                arg0: &job.plan.arg0,
                args: &job.plan.args,
                wdir: job.plan.wdir.as_ref(),
                env_remove: env::LAUNCHER_SET,
                env,
                stdin: reads_stdin,
                output: &output_to,
            };
            match local::start(&command) {
                Ok(started) => {
                    job.watchdog.watch(started.pid);
                    job.ranks[p.rank].pid = Some(started.pid);
                    job.running += 1;
                    pids.insert(started.pid, p.rank);
                    pipes.extend(started.pipes);
                    stdins.extend(started.stdin);
                }
                Err(e) => {
                    eprintln!("prun: error: cannot start rank {} on {}: {e}", p.rank, p.host);
                    job.cause = Some(Cause::Internal);
                    job.terminate(Signal::SIGTERM);
                    break;
                }
            }
        }
        let started: Vec<i32> = pids.keys().copied().collect();
        local::reap(pids, tx.clone(), |rank, ended| Event::Exited { rank, ended })
            .map_err(|e| format!("cannot start the reaper thread: {e}"))?;
        unbind::watch(started, dir.path(), unbind::bind_of(&common).as_deref());
        let mut sink = OutputSink::new(job.plan.tag_output, job.progress.clone());
        if job.plan.tag_host {
            sink = sink.with_hosts(job.plan.placements.iter().map(|p| p.host.clone()).collect());
        }
        if let Some(dir) = &job.plan.output_dir {
            // local ranks write their files directly; this is for remote ranks' forwarded output
            sink = sink.into_folder(dir.clone());
        }
        let sink = Arc::new(Mutex::new(sink));
        if let Some(control) = tcp_control.filter(|_| job.cause.is_none()) {
            job.start_agents(&remote, &control, &job_id, &secret, &tx, &sink);
        }
        let forwarder =
            output::forward_pipes(pipes, sink).map_err(|e| format!("cannot forward output: {e}"))?;
        let mut targets: Vec<Box<dyn stdin::Target>> =
            stdins.into_iter().map(|s| Box::new(s) as Box<dyn stdin::Target>).collect();
        for (index, agent) in job.agents.iter().enumerate() {
            let reads = (0..np).any(|r| job.ranks[r].agent == Some(index) && job.reads_stdin(r));
            if reads {
                targets.push(Box::new(agent.channel()));
            }
        }
        stdin::forward(targets).map_err(|e| format!("cannot forward stdin: {e}"))?;

        job.event_loop(&rx);

        let status = job.status();
        job.watchdog.finish();
        for agent in &mut job.agents {
            agent.finish();
        }
        for agent in &mut job.agents {
            agent.wait_until(Instant::now() + OUTPUT_DRAIN);
        }
        let drained = Instant::now() + OUTPUT_DRAIN;
        while !forwarder.is_finished() && Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(5));
        }
        job.progress.finish();
        if let Some(out) = &job.plan.trace {
            match trace::merge(&trace_dir, np, out) {
                Ok(n) => job.info(
                    0,
                    format_args!("wrote {n} trace events to {} (draw it with prun-timeline)", out.display()),
                ),
                Err(e) => eprintln!("prun: error: cannot write the trace to {}: {e}", out.display()),
            }
        }
        drop(dir);
        Ok(status)
    }

    fn event_loop(&mut self, rx: &mpsc::Receiver<Event>) {
        while self.running > 0 {
            let report_at = self.report.as_ref().map(|r| r.0);
            let next =
                [self.deadline, self.kill_at, report_at, self.checks.next()].into_iter().flatten().min();
            let event = match next {
                Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match event {
                Ok(Event::Exited { rank, ended }) => self.exited(rank, ended),
                Ok(Event::Signal(sig)) => self.signalled(sig),
                Ok(Event::Control(ControlEvent::Registered { rank, peer, link })) => {
                    self.registered(rank, peer, link)
                }
                Ok(Event::Control(ControlEvent::Abort { rank, code })) => self.aborted(rank, code),
                Ok(Event::Agent(event)) => self.agent_event(event),
                Ok(Event::Control(ControlEvent::Activity { rank, text, call })) => {
                    self.activity(rank, text, call)
                }
                Ok(Event::Control(ControlEvent::Progress { map, done, total })) => {
                    self.progress.update(map, done, total)
                }
                Err(RecvTimeoutError::Timeout) => self.tick(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// Whether `rank` reads prun's stdin (`--stdin`).
    fn reads_stdin(&self, rank: usize) -> bool {
        match self.plan.stdin {
            StdinTarget::None => false,
            StdinTarget::All => true,
            StdinTarget::Rank(r) => r == rank,
        }
    }

    /// Prints a message of prun's own at verbosity `level` or more.
    fn info(&self, level: i8, message: std::fmt::Arguments<'_>) {
        if self.plan.verbosity >= level {
            eprintln!("prun: {message}");
        }
    }

    fn who(&self, rank: usize) -> String {
        let host = self.plan.placements.get(rank).map_or("?", |p| p.host.as_str());
        match self.ranks[rank].pid {
            Some(pid) => format!("rank {rank} (pid {pid} on {host})"),
            None => format!("rank {rank} (on {host})"),
        }
    }

    fn send(link: &mut Option<Box<dyn Stream>>, message: &ToRank) {
        if let Some(l) = link
            && protocol::send(&mut **l, message).is_err()
        {
            *link = None;
        }
    }

    fn broadcast(&mut self, message: &ToRank) {
        for r in self.ranks.iter_mut().filter(|r| r.ended.is_none()) {
            Self::send(&mut r.link, message);
        }
    }

    /// Sends `signal` to every running rank's process group, through the agents for ranks on
    /// other hosts.
    fn signal_all(&mut self, signal: Signal) {
        let mut agents = vec![false; self.agents.len()];
        for r in self.ranks.iter().filter(|r| r.ended.is_none()) {
            match (r.agent, r.pid) {
                (Some(a), _) => agents[a] = true,
                (None, Some(pid)) => local::signal_group(pid, signal),
                (None, None) => {}
            }
        }
        for (agent, _) in self.agents.iter_mut().zip(&agents).filter(|(_, used)| **used) {
            agent.signal(signal as i32);
        }
    }

    /// Starts one agent per remote host for the `remote` ranks: the launcher starts the first
    /// `--tree-width` hosts' agents, and each agent starts the next ones below it, so start-up
    /// grows with the logarithm of the number of hosts.
    fn start_agents(
        &mut self,
        remote: &[usize],
        control: &Endpoint,
        job_id: &str,
        secret: &Secret,
        tx: &mpsc::Sender<Event>,
        sink: &Arc<Mutex<OutputSink>>,
    ) {
        // (host, its index, its ranks with their local ranks), in placement order
        type HostShare = (String, u32, Vec<(usize, usize)>);
        let mut by_host: Vec<HostShare> = Vec::new();
        for &r in remote {
            let p = &self.plan.placements[r];
            match by_host.iter_mut().find(|(h, _, _)| *h == p.host) {
                Some((_, _, ranks)) => ranks.push((r, p.local_rank)),
                None => by_host.push((p.host.clone(), p.node_rank as u32, vec![(r, p.local_rank)])),
            }
        }
        let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
        let mut jobs: Vec<Option<AgentJob>> = by_host
            .into_iter()
            .map(|(host, node, ranks)| {
                Some(AgentJob {
                    job_id: job_id.to_string(),
                    secret: secret.to_hex(),
                    control: control.to_string(),
                    tcp_bind: hosts::address_of(&host).map(|ip| ip.to_string()).unwrap_or_default(),
                    size: self.ranks.len(),
                    node,
                    host,
                    program: text(self.plan.program.as_os_str()),
                    arg0: text(&self.plan.arg0),
                    args: self.plan.args.iter().map(|a| text(a)).collect(),
                    wdir: self.plan.wdir.as_ref().map(|w| text(w.as_os_str())),
                    env: self.plan.exports.iter().map(|(k, v)| (text(k), text(v))).collect(),
                    stdin_ranks: ranks.iter().map(|&(r, _)| r).filter(|&r| self.reads_stdin(r)).collect(),
                    ranks,
                    children: Vec::new(),
                    launch_agent: self.plan.launch_agent.clone(),
                    prun: text(self.plan.remote_prun.as_os_str()),
                    trace: self.plan.trace.is_some(),
                })
            })
            .collect();
        // the launch tree: hosts 0..width are the launcher's; host i >= width hangs below
        // host (i - width) / width; deeper hosts move into their parents first
        let width = self.plan.tree_width.max(1);
        for i in (width..jobs.len()).rev() {
            let parent = (i - width) / width;
            if let Some(child) = jobs[i].take()
                && let Some(p) = jobs[parent].as_mut()
            {
                p.children.insert(0, child);
            }
        }
        for job in jobs.into_iter().flatten() {
            let index = self.agents.len();
            let host = job.host.clone();
            let ranks = job.subtree_ranks();
            for &r in &ranks {
                self.ranks[r].agent = Some(index);
            }
            self.running += ranks.len();
            collect_subtrees(&job, &mut self.subtrees);
            let listener = ToJob { index, events: tx.clone(), wrap: Event::Agent, sink: Arc::clone(sink) };
            match Agent::start(job, &self.plan.launch_agent, &self.plan.remote_prun, listener) {
                Ok(agent) => self.agents.push(agent),
                Err(e) => {
                    let agent = self.plan.launch_agent.join(" ");
                    eprintln!("prun: error: cannot run the launch agent '{agent}' for host {host}: {e}");
                    self.cause.get_or_insert(Cause::Internal);
                    for &r in &ranks {
                        self.ranks[r].ended = Some(Ended::Code(EXIT_FAILURE));
                        self.running -= 1;
                    }
                    self.terminate(Signal::SIGTERM);
                    return;
                }
            }
        }
    }

    /// A host's agent (with every host below it in the launch tree) vanished: reports it and
    /// ends the job.
    fn lost_hosts(&mut self, host: &str, words: &str) {
        let Some(ranks) = self.subtrees.get(host).cloned() else { return };
        let left: Vec<usize> = ranks.into_iter().filter(|&r| self.ranks[r].ended.is_none()).collect();
        let (Some(first), Some(last)) = (left.iter().min().copied(), left.iter().max().copied()) else {
            return;
        };
        let why = if words.is_empty() { String::new() } else { format!(": {words}") };
        if left.iter().any(|&r| self.ranks[r].pid.is_some()) {
            eprintln!("prun: lost host {host} (ranks {first}..{last}){why}");
        } else {
            let agent = self.plan.launch_agent.join(" ");
            eprintln!("prun: error: cannot start ranks {first}..{last} on host {host} with '{agent}'{why}");
        }
        for r in left {
            self.ranks[r].ended = Some(Ended::Code(EXIT_FAILURE));
            self.ranks[r].link = None;
            self.running -= 1;
            let how = format!("rank {r} was lost with its host");
            self.broadcast(&ToRank::RankExited { rank: r as u32, how });
        }
        self.cause.get_or_insert(Cause::Internal);
        self.terminate(Signal::SIGTERM);
    }

    /// Appends trace events that rank `rank`'s agent sent to the rank's file, for the merge.
    fn keep_trace(&self, rank: usize, text: &str) {
        let Some(dir) = self.trace_dir.as_ref().filter(|_| rank < self.ranks.len()) else { return };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("rank-{rank}.trace")));
        if let Err(e) = file.and_then(|mut f| f.write_all(text.as_bytes())) {
            eprintln!("prun: error: cannot keep rank {rank}'s trace events: {e}");
        }
    }

    fn agent_event(&mut self, event: AgentEvent) {
        match event {
            AgentEvent::Message(FromAgent::Started { rank, pid }) => {
                if let Some(r) = self.ranks.get_mut(rank) {
                    r.pid = Some(pid);
                }
            }
            AgentEvent::Message(FromAgent::Exited { rank, code, signal, core }) => {
                let ended = match code {
                    Some(c) => Ended::Code(c),
                    None => Ended::Signal { signal, core },
                };
                if rank < self.ranks.len() {
                    self.exited(rank, ended);
                }
            }
            AgentEvent::Message(FromAgent::Failed { host, message }) => {
                eprintln!("prun: error: {message}");
                self.lost_hosts(&host, "");
            }
            AgentEvent::Message(FromAgent::Lost { host, words }) => self.lost_hosts(&host, &words),
            AgentEvent::Message(FromAgent::Trace { rank, text }) => self.keep_trace(rank, &text),
            AgentEvent::Message(FromAgent::Output { .. } | FromAgent::OutputEnd { .. }) => {}
            AgentEvent::Lost(agent, words) => {
                if let Some(host) = self.agents.get(agent).map(|a| a.host.clone()) {
                    self.lost_hosts(&host, &words);
                }
            }
        }
    }

    /// Asks every rank what it is waiting for; the report is concluded when all have answered
    /// or after a second ([`Job::conclude_report`]).
    fn request_report(&mut self, why: Report) {
        self.report = Some((Instant::now() + REPORT_WAIT, vec![None; self.ranks.len()], why));
        self.broadcast(&ToRank::Report);
        if self.ranks.iter().all(|r| r.link.is_none()) {
            self.conclude_report();
        }
    }

    fn activity(&mut self, rank: usize, text: String, call: Option<CallAt>) {
        let Some((_, answers, _)) = &mut self.report else { return };
        if let Some(slot) = answers.get_mut(rank) {
            *slot = Some((text, call));
        }
        let all = answers.iter().zip(&self.ranks).all(|(a, r)| a.is_some() || r.link.is_none());
        if all {
            self.conclude_report();
        }
    }

    /// Prints the report (one line per rank) and ends the job, as it was asked for; for a
    /// check, only when two ranks wait in the same call made differently.
    fn conclude_report(&mut self) {
        let Some((_, answers, why)) = self.report.take() else { return };
        if why == Report::Check {
            let waits: Vec<Option<CallAt>> =
                answers.iter().map(|a| a.as_ref().and_then(|a| a.1.clone())).collect();
            let Some((a, b)) = calls::disagreement(&waits) else { return };
            if self.cause.is_some() {
                return;
            }
            let (ca, cb) = (waits[a].as_ref(), waits[b].as_ref());
            let name = |c: Option<&CallAt>| c.map_or_else(String::new, calls::describe);
            eprintln!(
                "prun: error: ranks wait in different collective calls and would wait for ever: rank {a} in {}, rank {b} in {} (every rank of a communicator must make the same collective calls, in the same order, with the same root and lengths); ending the job (exit status {EXIT_FAILURE})",
                name(ca),
                name(cb)
            );
            self.cause = Some(Cause::Mismatch);
        }
        eprintln!("prun: what each rank is doing:");
        for (rank, answer) in answers.into_iter().enumerate() {
            let what = match (answer, &self.ranks[rank]) {
                (Some((text, _)), _) => text,
                (None, r) if r.ended.is_some() => "ended".into(),
                (None, r) if r.link.is_none() => "running (does not use the prun runtime)".into(),
                (None, _) => "no answer (busy outside prun calls, or stopped)".into(),
            };
            eprintln!("prun:   {}: {what}", self.who(rank));
        }
        if why != Report::Print {
            self.terminate(Signal::SIGTERM);
        }
    }

    /// Whether a rank's end, seen within [`FIRST_CAUSE_WINDOW`] of the first failure, came from
    /// elsewhere than this launcher's teardown: a signal other than the SIGTERM it sends, or
    /// SIGKILL before its grace period has run out.
    fn not_ours(&self, ended: Ended) -> bool {
        if self.failed_at.is_none_or(|at| at.elapsed() > FIRST_CAUSE_WINDOW) {
            return false;
        }
        match ended {
            Ended::Code(_) => false,
            Ended::Signal { signal, .. } if signal == Signal::SIGTERM as i32 => false,
            Ended::Signal { signal, .. } if signal == Signal::SIGKILL as i32 => {
                self.kill_at.is_some_and(|at| Instant::now() < at)
            }
            Ended::Signal { .. } => true,
        }
    }

    /// Ends the job: `signal` now, SIGKILL after the grace period.
    fn terminate(&mut self, signal: Signal) {
        self.signal_all(signal);
        self.kill_at.get_or_insert(Instant::now() + self.plan.grace);
        self.deadline = None;
    }

    fn exited(&mut self, rank: usize, ended: Ended) {
        let r = &mut self.ranks[rank];
        if r.ended.is_some() {
            return;
        }
        r.ended = Some(ended);
        r.link = None;
        self.running -= 1;
        if let (None, Some(pid)) = (r.agent, r.pid) {
            // the rank's children live in its process group: they end with it
            local::signal_group(pid, Signal::SIGKILL);
            self.watchdog.forget(pid);
        }
        let registered = r.endpoint.is_some();
        self.info(1, format_args!("{} {ended}", self.who(rank)));
        self.broadcast(&ToRank::RankExited { rank: rank as u32, how: format!("rank {rank} {ended}") });
        if !ended.success() {
            if self.cause.is_none() {
                self.cause = Some(Cause::Failed(ended));
                self.failed_at = Some(Instant::now());
                let others = if self.running > 0 { "; ending the job" } else { "" };
                eprintln!("prun: {} {ended}{others}", self.who(rank));
                self.terminate(Signal::SIGTERM);
            } else if matches!(self.cause, Some(Cause::Failed(Ended::Code(_)))) && self.not_ours(ended) {
                // a killed process's sockets close before it can be reaped, so the ranks that
                // lose it can exit (with an error) before the launcher sees it die: the signal
                // is the likelier first cause, and the status the job reports
                self.cause = Some(Cause::Failed(ended));
                eprintln!("prun: {} {ended}", self.who(rank));
            }
        } else if !registered && !self.table_sent && self.bootstrap_failure.is_none() {
            let reason = format!(
                "rank {rank} exited ({ended}) without joining the job (it never called prun::init())"
            );
            self.broadcast(&ToRank::BootstrapFailed { reason: reason.clone() });
            self.bootstrap_failure = Some(reason);
        }
    }

    fn registered(&mut self, rank: usize, endpoint: Peer, link: Box<dyn Stream>) {
        let mut link = Some(link);
        for (other, r) in self.ranks.iter().enumerate() {
            if let Some(ended) = r.ended {
                Self::send(
                    &mut link,
                    &ToRank::RankExited { rank: other as u32, how: format!("rank {other} {ended}") },
                );
            }
        }
        if let Some(reason) = &self.bootstrap_failure {
            Self::send(&mut link, &ToRank::BootstrapFailed { reason: reason.clone() });
        }
        let r = &mut self.ranks[rank];
        r.endpoint = Some(endpoint);
        if r.ended.is_none() {
            r.link = link;
        }
        if !self.table_sent
            && self.bootstrap_failure.is_none()
            && self.ranks.iter().all(|r| r.endpoint.is_some())
        {
            let peers = self.ranks.iter().filter_map(|r| r.endpoint.clone()).collect();
            self.broadcast(&ToRank::Table { peers });
            self.table_sent = true;
            self.checks.start(Instant::now());
        }
    }

    fn aborted(&mut self, rank: usize, code: i32) {
        if self.cause.is_none() {
            self.cause = Some(Cause::Abort(code));
            eprintln!("prun: {} called abort({code}); ending the job", self.who(rank));
            self.terminate(Signal::SIGTERM);
        }
    }

    fn signalled(&mut self, sig: i32) {
        let name = signal_name(sig);
        if ENDING.contains(&sig) {
            self.interrupts += 1;
            if self.interrupts == 1 && self.cause.is_none() {
                self.cause = Some(Cause::Signal(sig));
                self.info(
                    0,
                    format_args!(
                        "received {name}; passing it to the ranks ({name} again kills them at once)"
                    ),
                );
                self.terminate(signals::to_signal(sig));
            } else {
                self.info(0, format_args!("received {name} again; killing every rank"));
                self.signal_all(Signal::SIGKILL);
                self.kill_at = None;
            }
        } else if sig == Signal::SIGTSTP as i32 {
            self.signal_all(Signal::SIGTSTP);
            let _ = nix::sys::signal::raise(Signal::SIGSTOP);
        } else {
            self.info(1, format_args!("passing {name} to the ranks"));
            self.signal_all(signals::to_signal(sig));
            if sig == Signal::SIGUSR1 as i32 && self.report.is_none() {
                // and print what every rank is waiting for; the job goes on
                self.request_report(Report::Print);
            }
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        if self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            if self.cause.is_none() {
                self.cause = Some(Cause::Timeout);
                let secs = self.plan.timeout.map_or(0.0, |t| t.as_secs_f64());
                eprintln!("prun: job exceeded --timeout {secs} s; ending it (exit status {EXIT_TIMEOUT})");
                // first, what each rank is waiting for; the job ends once that is printed
                self.request_report(Report::PrintThenEnd);
            }
        }
        if self.report.as_ref().is_some_and(|r| r.0 <= now) {
            self.conclude_report();
        }
        // (scheduled again whether or not it can run now, so that the loop never spins)
        if self.checks.due(now) && self.report.is_none() && self.cause.is_none() {
            self.request_report(Report::Check);
        }
        if self.kill_at.is_some_and(|k| k <= now) {
            self.kill_at = None;
            let left: Vec<String> = (0..self.ranks.len())
                .filter(|&r| self.ranks[r].ended.is_none())
                .map(|r| r.to_string())
                .collect();
            self.info(
                0,
                format_args!(
                    "rank(s) {} still running {} s after being asked to stop; sending SIGKILL",
                    left.join(", "),
                    self.plan.grace.as_secs_f64()
                ),
            );
            self.signal_all(Signal::SIGKILL);
        }
    }

    fn status(&self) -> i32 {
        match self.cause {
            None => 0,
            Some(Cause::Failed(ended)) => ended.shell_status(),
            Some(Cause::Abort(code)) => code,
            Some(Cause::Signal(sig)) => 128 + sig,
            Some(Cause::Timeout) => EXIT_TIMEOUT,
            Some(Cause::Mismatch | Cause::Internal) => EXIT_FAILURE,
        }
    }
}

/// Records, for `job`'s host and every host below it, the ranks of its subtree.
fn collect_subtrees(job: &AgentJob, into: &mut HashMap<String, Vec<usize>>) {
    into.insert(job.host.clone(), job.subtree_ranks());
    for child in &job.children {
        collect_subtrees(child, into);
    }
}
