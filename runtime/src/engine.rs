//! The point-to-point engine over byte streams: lazy authenticated connections, framing,
//! delivery into the [`Mailbox`].
//!
//! Each rank listens on one socket. The first message to a peer opens a connection to it
//! (authenticated as [`crate::auth`] describes) that then carries every later message to that
//! peer, in order; messages *from* a peer arrive on the connection the peer opened
//! ([`crate::incoming`] reads them into the mailbox). So a rank opens only the connections its
//! program uses, and a send never waits for the receiver to call `recv` (at most a millisecond for
//! its progress thread: `incoming`'s parked connections).

use crate::auth::{self, Credentials, HANDSHAKE_TIMEOUT};
use crate::error::{Error, Result};
use crate::lend::{self, LEND_MIN, Pipe};
use crate::log::debug;
use crate::mailbox::{Envelope, Mailbox, Pattern};
use crate::protocol::Peer;
use crate::transport::{self, Stream};
use crate::wire::{self, HEADER_LEN, KIND_DATA};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What a sender does while the receiver of a lent message copies it
/// ([`Engine::lend_while`]'s `meanwhile`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Lending {
    /// Nothing: it waits, answers the receiver at once and can copy part of a message lent in
    /// memory itself when the receiver asks ([`lend::SHARE_MIN`]).
    Waits,
    /// As [`Lending::Waits`], a program's own point-to-point send: lent where ranks share cores
    /// from [`lend::CROWDED_SEND_MIN`].
    Sends,
    /// Its own work, such as a copy.
    Works,
    /// It receives: one step of an exchange between ranks. Lent where ranks share cores from
    /// [`lend::CROWDED_EXCHANGE_MIN`].
    Exchanges,
    /// It sends other messages: one of a fan of messages out at once. Lent where ranks share
    /// cores too ([`lend::CROWDED_LEND_MIN`]). The last of a fan whose sender then only waits
    /// `waits` as [`Lending::Waits`] does. `distinct`: no two messages of the fan share a byte
    /// (a scatter's blocks, not a broadcast's buffer), so that their receivers read different
    /// pages ([`lend::MEMORY_ONLY_FAN_MIN`]).
    Fans { waits: bool, distinct: bool },
}

impl Lending {
    /// The shortest message lent this way to a rank on a host with more ranks than cores.
    fn crowded_min(self) -> usize {
        match self {
            Lending::Waits | Lending::Works => lend::CROWDED_LEND_MIN,
            Lending::Sends => lend::CROWDED_SEND_MIN,
            Lending::Exchanges => lend::CROWDED_EXCHANGE_MIN,
            Lending::Fans { .. } => LEND_MIN,
        }
    }

    /// The shortest message lent this way where the host's pipes are of one page
    /// ([`lend::MEMORY_ONLY_PIPE`]), all read out of the sender's memory.
    fn memory_only_min(self) -> usize {
        match self {
            Lending::Fans { distinct: true, .. } => lend::MEMORY_ONLY_FAN_MIN,
            Lending::Exchanges => lend::MEMORY_ONLY_EXCHANGE_MIN,
            _ => lend::MEMORY_MIN,
        }
    }
}

/// Sends and receives the messages of one rank.
pub(crate) struct Engine {
    rank: usize,
    size: usize,
    creds: Option<Arc<Credentials>>,
    /// This rank's host, and every rank's host and endpoints.
    node: u32,
    peers: Vec<Peer>,
    mailbox: Arc<Mailbox>,
    outgoing: Vec<Mutex<Option<Box<dyn Stream>>>>,
    limit: u64,
    /// Whether some host of the job runs more ranks than it has cores (see [`Peer::crowded`]).
    crowded: bool,
    /// Whether large messages to ranks on this host are lent ([`crate::lend`]): always, never,
    /// or (`None`) when the host has a core per rank; the pipe to each rank, once made; and the
    /// ranks that could not read from one.
    lending: Option<bool>,
    pipes: Vec<Mutex<Option<Pipe>>>,
    /// How large each pipe is to be ([`lend::pipe_size`]; [`lend::MEMORY_ONLY_PIPE`] when there
    /// are too many ranks on this host for pipes to lend through; 0 alone or on MPI).
    pipe_size: usize,
    refused: Vec<AtomicBool>,
    /// The ranks that could not read this rank's memory (messages of [`lend::MEMORY_MIN`] or
    /// more, or too long for the pipe).
    memory_refused: Vec<AtomicBool>,
    /// The ranks whose memory this rank can read, as it found when it connected to each.
    reads_memory: Vec<AtomicBool>,
    /// On the MPI backend, what carries the messages instead of sockets.
    #[cfg(feature = "mpi")]
    mpi: Option<crate::mpi::Transport>,
}

impl Engine {
    /// The engine of a world of one rank: messages to itself only.
    pub fn alone(limit: u64) -> Engine {
        Engine {
            rank: 0,
            size: 1,
            creds: None,
            node: 0,
            peers: Vec::new(),
            crowded: false,
            mailbox: Arc::new(Mailbox::new(0, 1, std::time::Duration::ZERO)),
            outgoing: vec![Mutex::new(None)],
            limit,
            lending: Some(false),
            pipes: Vec::new(),
            pipe_size: 0,
            refused: Vec::new(),
            memory_refused: Vec::new(),
            reads_memory: Vec::new(),
            #[cfg(feature = "mpi")]
            mpi: None,
        }
    }

    /// The engine of rank `rank` of `size` on the MPI backend.
    #[cfg(feature = "mpi")]
    pub fn over_mpi(
        rank: usize,
        size: usize,
        mailbox: Arc<Mailbox>,
        limit: u64,
        transport: crate::mpi::Transport,
    ) -> Engine {
        Engine {
            rank,
            size,
            creds: None,
            node: 0,
            peers: Vec::new(),
            crowded: false,
            mailbox,
            outgoing: Vec::new(),
            limit,
            lending: Some(false),
            pipes: Vec::new(),
            pipe_size: 0,
            refused: Vec::new(),
            memory_refused: Vec::new(),
            reads_memory: Vec::new(),
            mpi: Some(transport),
        }
    }

    /// The engine of rank `rank` of a job whose ranks listen at `endpoints`.
    pub fn new(
        rank: usize,
        node: u32,
        creds: Arc<Credentials>,
        peers: Vec<Peer>,
        mailbox: Arc<Mailbox>,
        limit: u64,
    ) -> Engine {
        let size = peers.len();
        let pipe_size = lend::pipe_size(peers.iter().filter(|p| p.node == node).count())
            .unwrap_or(lend::MEMORY_ONLY_PIPE);
        Engine {
            rank,
            size,
            creds: Some(creds),
            node,
            crowded: peers.iter().any(|p| p.crowded),
            peers,
            mailbox,
            outgoing: (0..size).map(|_| Mutex::new(None)).collect(),
            limit,
            lending: crate::env::single_copy(),
            pipes: (0..size).map(|_| Mutex::new(None)).collect(),
            pipe_size,
            refused: (0..size).map(|_| AtomicBool::new(false)).collect(),
            memory_refused: (0..size).map(|_| AtomicBool::new(false)).collect(),
            reads_memory: (0..size).map(|_| AtomicBool::new(false)).collect(),
            #[cfg(feature = "mpi")]
            mpi: None,
        }
    }

    /// Whether some host of the job runs more ranks than it has cores: the same answer on every
    /// rank (false on the MPI backend, whose own collectives are used where they exist).
    pub(crate) fn crowded(&self) -> bool {
        self.crowded
    }

    /// Checks that `rank` exists.
    pub fn check_rank(&self, rank: usize) -> Result<()> {
        if rank < self.size { Ok(()) } else { Err(Error::InvalidRank { rank, size: self.size }) }
    }

    /// Sends a message; `frame` holds [`HEADER_LEN`] bytes of room, then the payload; lent
    /// (to a rank on this host) as `how` says.
    pub(crate) fn send(
        &self,
        dest: usize,
        context: u64,
        tag: u32,
        mut frame: Vec<u8>,
        how: Lending,
    ) -> Result<()> {
        self.check(dest, (frame.len() - HEADER_LEN) as u64)?;
        if dest == self.rank {
            frame.drain(..HEADER_LEN);
            self.mailbox.push(Envelope { src: dest, context, tag, data: frame });
            return Ok(());
        }
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            mpi.send(dest, context, tag, &mut frame);
            return Ok(());
        }
        if let Some(sent) = self.lend_to(dest, context, tag, &[&frame[HEADER_LEN..]], how) {
            return sent;
        }
        self.write_to(dest, |s| wire::write_framed(s, KIND_DATA, context, tag, &mut frame))
    }

    /// Whether world rank `other` runs on this rank's host; `None` when the engine does not
    /// know where ranks run (on MPI, or without a launcher).
    pub(crate) fn same_host(&self, other: usize) -> Option<bool> {
        self.peers.get(other).map(|p| p.node == self.node)
    }

    /// Whether a message of `len` bytes to `dest` may be lent rather than written
    /// ([`crate::lend`]): large, to another rank on this host (not crowded, unless lending is
    /// asked for or the message is long enough for the way it is lent: [`Lending`]) that has not
    /// refused; [`Engine::lend_while`] may still write it when it would go in memory and `dest`
    /// could not read this rank's memory before.
    pub(crate) fn lends_to(&self, dest: usize, len: usize, how: Lending) -> bool {
        len >= LEND_MIN
            && dest != self.rank
            && self.pipe_size > 0
            && (self.pipe_size > lend::MEMORY_ONLY_PIPE || len >= how.memory_only_min())
            && self.peers.get(dest).is_some_and(|p| {
                p.node == self.node && self.lending.unwrap_or(!p.crowded || len >= how.crowded_min())
            })
            && self.refused.get(dest).is_some_and(|r| !r.load(Ordering::Relaxed))
    }

    /// Whether this rank and `dest` each read the other's large messages out of memory: on one
    /// host, lending not turned off, and each able to read the other's memory (what `dest` said
    /// as this rank connected to it, and what this rank found then). Both ranks of a pair get
    /// the same answer (each reads the other's answer to the same question), so that an
    /// exchange between them can be cut alike on both sides
    /// ([`PointToPoint::exchange_piece`](prun_collectives::PointToPoint::exchange_piece)).
    /// Connects to `dest` first if need be.
    pub(crate) fn memory_both_ways(&self, dest: usize) -> bool {
        let flag = |v: &[AtomicBool]| v.get(dest).is_some_and(|f| f.load(Ordering::Relaxed));
        dest != self.rank
            && self.pipe_size > 0
            && self.lending != Some(false)
            && self.same_host(dest) == Some(true)
            && self.open(dest).is_ok()
            && !flag(&self.memory_refused)
            && flag(&self.reads_memory)
    }

    /// Lends `parts` to `dest` through this rank's pipe to it, made now if need be, or in this
    /// rank's memory ([`crate::lend`]); `None` when they lie in too many pieces, no pipe can be
    /// made, or they would go in memory and `dest` could not read it before, and are to be
    /// written. Once `dest` could not read the pipe, later large messages to it are written; once
    /// it could not read this rank's memory, those that would go there.
    fn lend_to(
        &self,
        dest: usize,
        context: u64,
        tag: u32,
        parts: &[&[u8]],
        how: Lending,
    ) -> Option<Result<()>> {
        self.lend_while(dest, context, tag, parts, how, || ()).map(|(sent, ())| sent)
    }

    /// As [`Engine::lend_to`], calling `meanwhile` once the message is announced and in the
    /// pipe, before waiting for `dest` to take it: so a rank can receive while its peer
    /// copies, and two ranks can exchange lent messages each copying the other's at once
    /// (without that wait first, each would wait for the other's answer before receiving).
    /// `meanwhile` runs after the send when the message does not fit in the pipe at once, and
    /// not at all when it returns `None`. While it runs, the connection to `dest` stays this
    /// thread's: another thread of this rank sending to `dest` waits for `meanwhile` to end
    /// (so only the collectives' exchange steps use it, whose receive is of the same call).
    /// `how` says what `meanwhile` does ([`Lending`]).
    pub(crate) fn lend_while<R>(
        &self,
        dest: usize,
        context: u64,
        tag: u32,
        parts: &[&[u8]],
        how: Lending,
        meanwhile: impl FnOnce() -> R,
    ) -> Option<(Result<()>, R)> {
        let len = parts.iter().map(|p| p.len()).sum();
        let waits = matches!(how, Lending::Waits | Lending::Sends | Lending::Fans { waits: true, .. });
        // connected first: the receiver tells then which ways of lending it can take
        if !self.lends_to(dest, len, how) || self.open(dest).is_err() || !self.lends_to(dest, len, how) {
            return None;
        }
        let mut pipe = self.pipes.get(dest)?.lock().unwrap_or_else(PoisonError::into_inner);
        if pipe.is_none() {
            match Pipe::new(self.pipe_size) {
                Ok(p) => *pipe = Some(p),
                Err(e) => {
                    debug!("cannot make a pipe to rank {dest}: {e}; writing large messages to it");
                    self.refused[dest].store(true, Ordering::Relaxed);
                    return None;
                }
            }
        }
        let lent = pipe.as_ref().filter(|p| p.takes(parts))?;
        // too long for the pipe, or where ranks have a core each, it is read out of this
        // process's memory, if `dest` can
        let memory = self.memory_refused.get(dest).is_some_and(|r| !r.load(Ordering::Relaxed));
        let crowded = self.peers.get(dest).is_some_and(|p| p.crowded);
        let memory_from = if memory && !crowded { lend::UNCROWDED_MEMORY_MIN } else { lend::MEMORY_MIN };
        let in_memory = !lent.holds(parts, memory_from);
        if in_memory && !memory {
            return None;
        }
        // the first message through the pipe may be refused (its receiver cannot open the pipe
        // after all: out of file descriptors, say), and a refused payload is written only
        // once `meanwhile` ends; where `meanwhile` waits for that receiver, which may be
        // lending to this rank the same way, both would wait for ever. So that one is
        // answered before `meanwhile` runs, and read by the receiver's progress thread if its
        // receive is not posted (no rendezvous)
        let untried = !in_memory && !lent.proven;
        // one step of an exchange, or one of a fan, where ranks share cores: its receiver may
        // leave it unread until its receive is posted (it lies in the pipe or this process's
        // memory meanwhile); an exchange's sender receives while it waits, and a fan's receivers are
        // in the same collective call, so the receive comes (such a call returns once its
        // receivers have entered it, as MPI's large messages do)
        let rendezvous = !untried && matches!(how, Lending::Exchanges | Lending::Fans { .. }) && crowded;
        let mut read = true;
        let (mut meanwhile, mut outcome) = (Some(meanwhile), None);
        let polling = self.mailbox.large_polling();
        let sent = self.write_to(dest, |s| {
            let announced = lend::announce(s, lent, memory_from, context, tag, parts, waits, rendezvous)?;
            if announced.complete && !untried {
                outcome = meanwhile.take().map(|f| f());
            } else {
                // the peer may be waiting the same way for this rank to read its message: let
                // the progress thread read it ([`Mailbox::hold`])
                self.mailbox.unhold();
            }
            read = lend::finish(s, polling, lent, parts, announced)?;
            Ok(())
        });
        if sent.is_err() || (!read && !in_memory) {
            // it may still hold the message's pages
            *pipe = None;
        } else if read
            && !in_memory
            && let Some(p) = pipe.as_mut()
        {
            p.proven = true;
        }
        if sent.is_ok() && !read && in_memory {
            debug!(
                "rank {dest} cannot read rank {}'s memory; writing it the messages that would go there",
                self.rank
            );
            self.memory_refused[dest].store(true, Ordering::Relaxed);
        } else if sent.is_ok() && !read {
            debug!("rank {dest} cannot read rank {}'s pipe; writing large messages to it", self.rank);
            self.refused[dest].store(true, Ordering::Relaxed);
        }
        drop(pipe);
        // one of the two holds it: `meanwhile` was taken only to fill `outcome`
        let outcome = outcome.or_else(|| meanwhile.map(|f| f()))?;
        Some((sent, outcome))
    }

    /// Sends the concatenation of `parts` without copying them into a frame first; lent as
    /// `how` says.
    pub(crate) fn send_parts(
        &self,
        dest: usize,
        context: u64,
        tag: u32,
        parts: &[&[u8]],
        how: Lending,
    ) -> Result<()> {
        self.check(dest, parts.iter().map(|p| p.len() as u64).sum())?;
        if dest == self.rank {
            self.mailbox.push(Envelope { src: dest, context, tag, data: parts.concat() });
            return Ok(());
        }
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            let mut frame = Vec::with_capacity(HEADER_LEN + parts.iter().map(|p| p.len()).sum::<usize>());
            frame.resize(HEADER_LEN, 0);
            parts.iter().for_each(|p| frame.extend_from_slice(p));
            mpi.send(dest, context, tag, &mut frame);
            return Ok(());
        }
        if let Some(sent) = self.lend_to(dest, context, tag, parts, how) {
            return sent;
        }
        self.write_to(dest, |s| wire::write_parts(s, KIND_DATA, context, tag, parts))
    }

    fn check(&self, dest: usize, len: u64) -> Result<()> {
        self.check_rank(dest)?;
        self.check_len(len)
    }

    /// Checks that a message of `len` bytes is within the limit.
    pub fn check_len(&self, len: u64) -> Result<()> {
        if len > self.limit {
            return Err(Error::MessageTooLarge { len, limit: self.limit });
        }
        Ok(())
    }

    /// Writes to the connection to `dest`, opening it on first use; a failed connection is
    /// dropped (and reopened by the next send, if the peer still lives).
    fn write_to(
        &self,
        dest: usize,
        write: impl FnOnce(&mut dyn Stream) -> std::io::Result<()>,
    ) -> Result<()> {
        let mut slot = self.outgoing[dest].lock().unwrap_or_else(PoisonError::into_inner);
        let stream = match &mut *slot {
            Some(stream) => stream,
            empty => empty.insert(self.connect(dest)?),
        };
        write(&mut **stream).map_err(|e| {
            *slot = None;
            if e.kind() == std::io::ErrorKind::PermissionDenied && self.mailbox.exited(dest).is_none() {
                // refused, not lost (its receiver may not read this process's memory now)
                return Error::io(format!("sending to rank {dest}, which is alive"), e);
            }
            self.lost(dest, &e)
        })
    }

    /// Opens the connection to `dest` now unless it is open (nothing on MPI or to this rank), so
    /// that a later send to it does not wait for the connection and handshake.
    pub fn open(&self, dest: usize) -> Result<()> {
        self.check_rank(dest)?;
        if dest == self.rank || self.outgoing.is_empty() {
            return Ok(());
        }
        self.write_to(dest, |_| Ok(()))
    }

    /// Receives the first message matching `pattern`, blocking until there is one.
    pub fn recv(&self, pattern: &Pattern<'_>) -> Result<Envelope> {
        self.mailbox.recv(pattern)
    }

    /// The mailbox, for non-blocking calls.
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    fn lost(&self, dest: usize, e: &std::io::Error) -> Error {
        let reason = self.mailbox.exited(dest).unwrap_or_else(|| format!("its connection failed ({e})"));
        Error::PeerLost { rank: dest, reason }
    }

    fn connect(&self, dest: usize) -> Result<Box<dyn Stream>> {
        if let Some(reason) = self.mailbox.exited(dest) {
            return Err(Error::PeerLost { rank: dest, reason });
        }
        let endpoint = self.peers.get(dest).and_then(|p| p.endpoint_from(self.node));
        let (Some(creds), Some(endpoint)) = (&self.creds, endpoint) else {
            return Err(Error::InvalidRank { rank: dest, size: self.size });
        };
        let mut stream = transport::connect(endpoint).map_err(|e| self.lost(dest, &e))?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(|e| self.lost(dest, &e))?;
        auth::client(&mut *stream, creds, self.rank as u32).map_err(|e| Error::PeerLost {
            rank: dest,
            reason: self
                .mailbox
                .exited(dest)
                .unwrap_or_else(|| format!("handshake with {endpoint} failed: {e}")),
        })?;
        let mut access = [0; lend::Access::LEN];
        stream.read_exact(&mut access).map_err(|e| self.lost(dest, &e))?;
        self.grant(dest, lend::Access::decode(access));
        if let Some(reads) = self.reads_memory.get(dest) {
            reads.store(lend::reads_memory_of(&*stream), Ordering::Relaxed);
        }
        stream.set_read_timeout(None).map_err(|e| self.lost(dest, &e))?;
        debug!("rank {} connected to rank {dest} at {endpoint}", self.rank);
        Ok(stream)
    }

    /// Lends to `dest` only the ways its receiver said it can take ([`lend::Access`]): nothing
    /// where it cannot open this rank's pipes, no message in memory where it cannot read that.
    fn grant(&self, dest: usize, access: lend::Access) {
        let ways = [(&self.refused, access.pipes, "pipes"), (&self.memory_refused, access.memory, "memory")];
        for (refused, granted, way) in ways {
            if let Some(refused) = refused.get(dest).filter(|_| !granted) {
                if !refused.swap(true, Ordering::Relaxed) && self.same_host(dest) == Some(true) {
                    debug!(
                        "rank {dest} cannot read rank {}'s {way}; writing it the messages that would go there",
                        self.rank
                    );
                }
            }
        }
    }
}
