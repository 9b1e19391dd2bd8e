//! Messages between a rank and the launcher, on the rank's control connection.
//!
//! A rank opens one control connection at `init`, authenticated like every connection, and
//! keeps it until it exits: it registers its endpoint there, receives the table of all
//! endpoints, learns when peers exit, and asks for `abort`. When the launcher dies the
//! connection closes and the rank exits on its own. Used by prun's launcher; applications do
//! not need this module.

use crate::transport::{Endpoint, Stream};
use crate::wire::{self, HEADER_LEN, KIND_CONTROL, WireError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Largest control message accepted (a table of endpoints for many thousands of ranks fits).
pub const MAX_CONTROL_MESSAGE: u64 = 16 << 20;

/// Where a rank listens: its host (node) and its endpoints. Peers on the same node use its Unix
/// socket, others its TCP address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Index of the rank's host in the job (`PRUN_NODE_RANK`).
    pub node: u32,
    /// A Unix endpoint, and a TCP one in jobs spanning several hosts.
    pub endpoints: Vec<Endpoint>,
    /// Whether the rank's host runs more of the job's ranks than it has cores. If any host does,
    /// every rank chooses the collective algorithms made for that (fewer hops, see
    /// `prun_collectives::flat`): the choice must be the same on every rank.
    pub crowded: bool,
}

impl Peer {
    /// The endpoint a rank on `node` should connect to.
    pub fn endpoint_from(&self, node: u32) -> Option<&Endpoint> {
        let unix = self.endpoints.iter().find(|e| matches!(e, Endpoint::Unix(_)));
        let tcp = self.endpoints.iter().find(|e| matches!(e, Endpoint::Tcp(_)));
        if node == self.node { unix.or(tcp) } else { tcp }
    }
}

/// From a rank to the launcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToLauncher {
    /// The rank has started its runtime and listens at `endpoints`.
    Register {
        /// The rank.
        rank: u32,
        /// Its process id.
        pid: u32,
        /// Where its peers connect.
        peer: Peer,
    },
    /// The rank called `World::abort(code)`: end the job with `code`.
    Abort {
        /// Exit status for the job.
        code: i32,
    },
    /// What the rank is waiting for, in answer to [`ToRank::Report`].
    Activity {
        /// In words, as `gather(root 0) call #12, waiting for rank 5`.
        text: String,
        /// The collective call it waits in, if it waits in one.
        call: Option<CallAt>,
    },
    /// Progress of a dynamic map, from its root (a few times a second at most).
    Progress {
        /// The map's call number on its communicator.
        map: u32,
        /// Items whose results the root holds.
        done: u64,
        /// Items in the map.
        total: u64,
    },
}

/// A collective call a rank waits in: every rank of a communicator must make the same calls in
/// the same order, so two ranks in the same call of one communicator with different operations,
/// roots or lengths will wait for each other for ever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallAt {
    /// The communicator (its context).
    pub context: u64,
    /// The call's number on it (its low 24 bits).
    pub call: u32,
    /// The operation, as `broadcast_into`.
    pub op: String,
    /// Its root, for rooted collectives.
    pub root: Option<u64>,
    /// The length of its buffers in bytes, for the zero-copy collectives.
    pub len: Option<u64>,
}

impl CallAt {
    /// Whether `self` and `other` are the same call of one communicator, made differently.
    pub fn disagrees_with(&self, other: &CallAt) -> bool {
        (self.context, self.call) == (other.context, other.call)
            && (&self.op, self.root, self.len) != (&other.op, other.root, other.len)
    }
}

/// From the launcher to a rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToRank {
    /// Every rank has registered: where each one listens, indexed by rank.
    Table {
        /// Each rank's host and endpoints.
        peers: Vec<Peer>,
    },
    /// A rank's process has ended; `how` says how (for error messages).
    RankExited {
        /// The rank.
        rank: u32,
        /// Its status, in words.
        how: String,
    },
    /// Say what you are waiting for (the launcher's hang report).
    Report,
    /// The job cannot start (a rank ended without joining it).
    BootstrapFailed {
        /// Why.
        reason: String,
    },
}

/// Sends one control message.
pub fn send<T: Serialize>(stream: &mut dyn Stream, message: &T) -> Result<(), WireError> {
    let mut frame = postcard::to_extend(message, vec![0; HEADER_LEN])
        .map_err(|e| WireError::BadMessage(e.to_string()))?;
    wire::write_framed(stream, KIND_CONTROL, 0, 0, &mut frame)?;
    Ok(())
}

/// Receives one control message; `Ok(None)` when the peer closed the connection.
pub fn recv<T: DeserializeOwned>(stream: &mut dyn Stream) -> Result<Option<T>, WireError> {
    let Some((header, payload)) = wire::read_frame(stream, MAX_CONTROL_MESSAGE)? else {
        return Ok(None);
    };
    if header.kind != KIND_CONTROL {
        return Err(WireError::Malformed(format!("kind {} on a control connection", header.kind)));
    }
    postcard::from_bytes(&payload).map(Some).map_err(|e| WireError::BadMessage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn messages_round_trip() {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        let peer = Peer {
            node: 1,
            endpoints: vec![Endpoint::Unix("/x".into()), "tcp:127.0.0.2:9".parse().expect("tcp")],
            crowded: true,
        };
        assert_eq!(peer.endpoint_from(1), Some(&Endpoint::Unix("/x".into())));
        assert_eq!(peer.endpoint_from(0), peer.endpoints.get(1));
        let m = ToLauncher::Register { rank: 3, pid: 99, peer };
        send(&mut a, &m).expect("send");
        assert_eq!(recv::<ToLauncher>(&mut b).expect("recv"), Some(m));
        drop(a);
        assert_eq!(recv::<ToLauncher>(&mut b).expect("eof"), None);
    }
}
