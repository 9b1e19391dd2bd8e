//! The launcher's side of remote hosts: one agent per host, started with the launch agent
//! command (ssh by default), spoken to over that command's stdin and stdout.

use crate::agent;
use crate::agent_wire::{self, AgentJob, FromAgent, ToAgent};
use crate::output::{OutputSink, Sink, StreamKind};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};

/// Lines of the launch agent's own stderr kept for error messages.
const KEPT_LINES: usize = 8;

/// What receives an agent's messages: the job, or, in an agent, the relay to its parent.
pub trait Listener: Send + 'static {
    /// A message from the agent.
    fn message(&mut self, message: FromAgent);
    /// The agent's channel closed; the launch agent's last words.
    fn lost(&mut self, words: String);
}

/// The job's listener for agent `index`: output to the sink, the rest to the event loop.
pub struct ToJob<E> {
    /// The agent's index.
    pub index: usize,
    /// The job's events.
    pub events: Sender<E>,
    /// How agent events become job events.
    pub wrap: fn(AgentEvent) -> E,
    /// Where output goes.
    pub sink: Arc<Mutex<OutputSink>>,
}

impl<E: Send + 'static> Listener for ToJob<E> {
    fn message(&mut self, message: FromAgent) {
        match message {
            FromAgent::Output { rank, stderr, bytes } => {
                let kind = if stderr { StreamKind::Stderr } else { StreamKind::Stdout };
                self.sink.lock().unwrap_or_else(PoisonError::into_inner).data(rank, kind, &bytes);
            }
            FromAgent::OutputEnd { rank, stderr } => {
                let kind = if stderr { StreamKind::Stderr } else { StreamKind::Stdout };
                self.sink.lock().unwrap_or_else(PoisonError::into_inner).eof(rank, kind);
            }
            other => {
                let _ = self.events.send((self.wrap)(AgentEvent::Message(other)));
            }
        }
    }

    fn lost(&mut self, words: String) {
        let _ = self.events.send((self.wrap)(AgentEvent::Lost(self.index, words)));
    }
}

/// What an agent's channel tells the job.
pub enum AgentEvent {
    /// A message from an agent (or from one below it in the launch tree).
    Message(FromAgent),
    /// Agent `agent`'s channel closed; the launch agent's last words.
    Lost(usize, String),
}

/// A running agent.
pub struct Agent {
    /// The host it runs on.
    pub host: String,
    child: Child,
    stdin: Channel,
}

/// The launcher's end of an agent's channel, shared with the stdin forwarder.
#[derive(Clone)]
pub struct Channel(Arc<Mutex<Option<ChildStdin>>>);

impl Channel {
    /// Sends a message; a broken channel is closed (the reader notices the agent is gone).
    fn send(&self, message: &ToAgent) -> bool {
        let mut w = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let sent = w.as_mut().is_some_and(|w| agent_wire::send(w, message).is_ok());
        if !sent {
            *w = None;
        }
        sent
    }

    fn close(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl crate::stdin::Target for Channel {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.send(&ToAgent::Stdin(bytes.to_vec())) {
            Ok(())
        } else {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    fn end(&mut self) {
        self.send(&ToAgent::StdinEnd);
    }
}

/// The launch agent command for `host`: the user's words, then batch-mode options for ssh.
fn command(launch_agent: &[String], host: &str, prun: &Path) -> Command {
    let mut words = launch_agent.iter();
    let program = words.next().map_or("ssh", String::as_str);
    let mut cmd = Command::new(program);
    cmd.args(words);
    if Path::new(program).file_name().is_some_and(|n| n == "ssh") {
        // never ask for a password or a host key; give up on unreachable hosts in bounded time
        cmd.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-T", "-x"]);
    }
    cmd.arg(host).arg(prun).arg(agent::ARG);
    cmd
}

impl Agent {
    /// Starts the agent for `job` on its host and the threads that read its channel.
    pub fn start(
        job: AgentJob,
        launch_agent: &[String],
        prun: &Path,
        mut listener: impl Listener,
    ) -> std::io::Result<Agent> {
        let host = job.host.clone();
        let mut child = command(launch_agent, &host, prun)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let stdin = Channel(Arc::new(Mutex::new(child.stdin.take())));
        // a launch agent that fails at once (host unreachable) closes its stdin: its own words
        // then reach the job through the reader thread below
        stdin.send(&ToAgent::Start(Box::new(job)));
        let said = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let said = Arc::clone(&said);
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut kept = said.lock().unwrap_or_else(PoisonError::into_inner);
                    kept.push_back(line);
                    if kept.len() > KEPT_LINES {
                        kept.pop_front();
                    }
                }
            });
        }
        if let Some(mut out) = child.stdout.take() {
            std::thread::spawn(move || {
                while let Ok(Some(message)) = agent_wire::recv::<_, FromAgent>(&mut out) {
                    listener.message(message);
                }
                // give the stderr reader a moment to collect the launch agent's last words
                std::thread::sleep(std::time::Duration::from_millis(100));
                let words: Vec<String> =
                    said.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect();
                listener.lost(words.join("; "));
            });
        }
        Ok(Agent { host, child, stdin })
    }

    /// Passes prun's stdin on (to the agent's ranks that read it, and down the tree).
    pub fn stdin(&mut self, message: &ToAgent) {
        self.stdin.send(message);
    }

    /// Passes `signal` on to every rank of the host.
    pub fn signal(&mut self, signal: i32) {
        self.stdin.send(&ToAgent::Signal(signal));
    }

    /// The channel, for forwarding prun's stdin to ranks on this host.
    pub fn channel(&self) -> Channel {
        self.stdin.clone()
    }

    /// Tells the agent the job is over; it exits once its output is forwarded.
    pub fn finish(&mut self) {
        self.stdin.send(&ToAgent::Finish);
        self.stdin.close();
    }

    /// Ends the launch agent process (after `finish`, or when the job is torn down).
    pub fn kill(&mut self) {
        self.stdin.close();
        let _ = self.child.kill();
    }

    /// Waits for the launch agent process to end, killing it at `deadline`.
    pub fn wait_until(&mut self, deadline: std::time::Instant) {
        while std::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.kill();
        let _ = self.child.wait();
    }
}
