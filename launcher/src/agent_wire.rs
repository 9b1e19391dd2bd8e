//! Messages between the launcher and a per-host agent, over the launch agent's channel (the ssh
//! session's stdin and stdout), framed like every prun control message.

use prun::wire::{self, HEADER_LEN, KIND_CONTROL, WireError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// Largest message on an agent channel (output chunks are at most 64 KiB).
const LIMIT: u64 = 16 << 20;

/// What an agent must start: its host's share of the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentJob {
    /// The job's id.
    pub job_id: String,
    /// The job's secret, as hex (travels inside the authenticated launch channel only).
    pub secret: String,
    /// The launcher's TCP control address, `tcp:IP:PORT`.
    pub control: String,
    /// The address the host's ranks listen on for ranks of other hosts.
    pub tcp_bind: String,
    /// Ranks in the job.
    pub size: usize,
    /// This host's index among the job's hosts.
    pub node: u32,
    /// The host's name as the hostfile gives it.
    pub host: String,
    /// The program, its `argv[0]` and arguments.
    pub program: String,
    /// `argv[0]`.
    pub arg0: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub wdir: Option<String>,
    /// Variables set for every rank (`-x`, tracing, ...).
    pub env: Vec<(String, String)>,
    /// The ranks to start here, with their local ranks.
    pub ranks: Vec<(usize, usize)>,
    /// The ranks here that read prun's stdin (the rest read /dev/null).
    pub stdin_ranks: Vec<usize>,
    /// Hosts this agent starts agents on in turn (the launch tree), with their shares.
    pub children: Vec<AgentJob>,
    /// The launch agent command, for the children.
    pub launch_agent: Vec<String>,
    /// prun's path on the children's hosts.
    pub prun: String,
    /// Whether the launcher records a trace (`--trace`): the agent then gives its ranks a trace
    /// folder of its own and sends each rank's events up when the rank has ended.
    pub trace: bool,
}

impl AgentJob {
    /// Every rank of this host and of the hosts below it in the launch tree.
    pub fn subtree_ranks(&self) -> Vec<usize> {
        let mut ranks: Vec<usize> = self.ranks.iter().map(|&(r, _)| r).collect();
        for child in &self.children {
            ranks.extend(child.subtree_ranks());
        }
        ranks
    }
}

/// From the launcher to an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToAgent {
    /// Start these ranks.
    Start(Box<AgentJob>),
    /// Send this signal to every rank of the host.
    Signal(i32),
    /// A chunk of prun's stdin, for the ranks here that read it.
    Stdin(Vec<u8>),
    /// prun's stdin ended.
    StdinEnd,
    /// The job is over: exit once the ranks' output is forwarded.
    Finish,
}

/// From an agent to the launcher.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromAgent {
    /// A rank's process started.
    Started {
        /// The rank.
        rank: usize,
        /// Its process id on the host.
        pid: i32,
    },
    /// A chunk of a rank's output.
    Output {
        /// The rank.
        rank: usize,
        /// Its stderr (else stdout).
        stderr: bool,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A rank's stream ended.
    OutputEnd {
        /// The rank.
        rank: usize,
        /// Its stderr (else stdout).
        stderr: bool,
    },
    /// A rank's process ended: exit code, or signal and core dump.
    Exited {
        /// The rank.
        rank: usize,
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// The signal that killed it, if one did.
        signal: i32,
        /// Whether it dumped core.
        core: bool,
    },
    /// Part of a rank's trace events (`--trace`), sent when the rank has ended: lines of JSON,
    /// as the rank wrote them to its trace file.
    Trace {
        /// The rank.
        rank: usize,
        /// Whole lines.
        text: String,
    },
    /// The agent of `host` could not do its part (the program is missing there, ...).
    Failed {
        /// The host.
        host: String,
        /// What went wrong.
        message: String,
    },
    /// The agent of `host`, below this one in the launch tree, was lost: it, and the hosts
    /// below it, ended their ranks.
    Lost {
        /// The lost host.
        host: String,
        /// Its launch agent's last words.
        words: String,
    },
}

/// Sends one message.
pub fn send<W: Write + ?Sized, T: Serialize>(w: &mut W, message: &T) -> Result<(), WireError> {
    let mut frame = postcard::to_extend(message, vec![0; HEADER_LEN])
        .map_err(|e| WireError::BadMessage(e.to_string()))?;
    wire::write_framed(w, KIND_CONTROL, 0, 0, &mut frame)?;
    w.flush()?;
    Ok(())
}

/// Receives one message; `Ok(None)` at the end of the channel.
pub fn recv<R: Read + ?Sized, T: DeserializeOwned>(r: &mut R) -> Result<Option<T>, WireError> {
    let Some((_, payload)) = wire::read_frame(r, LIMIT)? else { return Ok(None) };
    postcard::from_bytes(&payload).map(Some).map_err(|e| WireError::BadMessage(e.to_string()))
}
