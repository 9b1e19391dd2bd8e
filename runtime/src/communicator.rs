//! [`Communicator`]: a group of ranks and the calls that address them; [`World`] is the one
//! holding every rank of the job.

use crate::activity::{Activity, Waiting};
use crate::bootstrap::Control;
use crate::codec;
use crate::engine::{Engine, Lending};
use crate::error::{Error, Result};
use crate::helpers::Helpers;
use crate::mailbox::{Envelope, Pattern, Placed, Target};
use crate::trace::{Call, Tracer};
use crate::wire::HEADER_LEN;
use prun_collectives::PointToPoint;
use prun_collectives::p2p::{copy_received, nest_sends, seq_of};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A message tag: receivers select messages by source and tag.
pub type Tag = u32;

/// The communicator of every rank of the job, as returned by [`crate::init`].
pub type World = Communicator;

/// Where a received message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The sending rank, in the communicator's numbering.
    pub source: usize,
    /// The message's tag.
    pub tag: Tag,
    /// Length of the encoded message in bytes.
    pub len: usize,
}

/// What every communicator of a process shares.
pub(crate) struct Shared {
    pub engine: Engine,
    pub control: Option<Control>,
    pub hostname: String,
    pub job_id: String,
    pub local_rank: usize,
    pub local_size: usize,
    /// Index of this process's host among the job's hosts.
    pub node: u32,
    pub tracer: Option<Tracer>,
    /// What this process waits for, for the launcher's hang report.
    pub activity: std::sync::Arc<Activity>,
    /// Helper threads, and the tasks calls left them (waited for when a communicator is dropped).
    pub helpers: Helpers,
    /// Whether every collective call first checks that every rank makes the same call
    /// ([`crate::env::CHECK_COLLECTIVES`]).
    pub check_collectives: bool,
    /// MPI, on the MPI backend; last, so that it is finalised after everything else is dropped.
    #[cfg(feature = "mpi")]
    #[allow(dead_code)] // held for its drop
    pub mpi: Option<crate::mpi::Universe>,
}

/// Which implementation carries a communicator's messages, as [`Communicator::backend`] tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// prun's own: Unix sockets within a host, TCP between hosts, started by `prun`, or a world
    /// of one without a launcher.
    Builtin,
    /// MPI (Open MPI, MPICH), for a program built with the `mpi` feature and started by an MPI
    /// launcher (`mpirun`, `mpiexec`, `srun --mpi=...`, `prun --mpi`).
    Mpi,
}

/// A group of ranks that exchange messages and call collectives together: the [`World`] from
/// [`crate::init`], or a part of it from [`Communicator::split`].
///
/// Every method says whether it is **collective** (every rank of the communicator must call it,
/// in the same order as the communicator's other collectives) or **local** (it involves only the
/// calling rank and the peers it names). Messages and collectives of different communicators
/// never match each other. Methods take `&self` and a communicator may be shared between
/// threads; its collectives must still be called in the same order on every rank.
pub struct Communicator {
    /// The MPI communicator, on the MPI backend; before `shared`, so that it is freed first.
    #[cfg(feature = "mpi")]
    native: Option<crate::mpi::Native>,
    shared: Arc<Shared>,
    /// World rank of each member, by rank in this communicator.
    group: Arc<[usize]>,
    /// Rank in this communicator of each member's world rank; `None` for the world itself.
    index: Option<Arc<HashMap<usize, usize>>>,
    rank: usize,
    /// Context of point-to-point messages; collectives use `context | 1`.
    context: u64,
    calls: AtomicU32,
    /// Whether this is a helper thread's handle ([`Communicator::helper_handle`]), which leaves
    /// the helpers to the communicators of the user's threads.
    helper: bool,
}

impl Communicator {
    /// The world of a job: every rank, in job order.
    pub(crate) fn world(shared: Shared, rank: usize, size: usize) -> Communicator {
        Communicator {
            #[cfg(feature = "mpi")]
            native: None,
            shared: Arc::new(shared),
            group: (0..size).collect(),
            index: None,
            rank,
            context: 0,
            calls: AtomicU32::new(0),
            helper: false,
        }
    }

    /// This world on MPI: its collectives become MPI's.
    #[cfg(feature = "mpi")]
    pub(crate) fn with_native(mut self, native: crate::mpi::Native) -> Communicator {
        self.native = Some(native);
        self
    }

    /// The MPI side of this communicator, on the MPI backend.
    #[cfg(feature = "mpi")]
    pub(crate) fn native(&self) -> Option<&crate::mpi::Native> {
        self.native.as_ref()
    }

    /// The MPI side, when a plain-old-data message with `tag` to or from `peer` is an MPI
    /// message: a tag every MPI accepts (up to 32767), and not to oneself (an MPI send to
    /// oneself could wait for its own receive).
    #[cfg(feature = "mpi")]
    fn native_p2p(&self, peer: usize, tag: Tag) -> Option<&crate::mpi::Native> {
        self.native().filter(|_| crate::mpi::native_tag(tag) && peer != self.rank)
    }

    /// Which implementation carries this communicator's messages. **Local.**
    ///
    /// ```
    /// let world = prun::init()?;
    /// // `Builtin` alone or under `prun`; `Mpi` under an MPI launcher with the `mpi` feature
    /// if world.backend() == prun::Backend::Mpi {
    ///     println!("rank {} on MPI", world.rank());
    /// }
    /// # Ok::<(), prun::Error>(())
    /// ```
    pub fn backend(&self) -> Backend {
        #[cfg(feature = "mpi")]
        if self.native.is_some() {
            return Backend::Mpi;
        }
        Backend::Builtin
    }

    /// This rank's number in the communicator, `0..size()`. **Local.**
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks in the communicator. **Local.**
    pub fn size(&self) -> usize {
        self.group.len()
    }

    /// This process's rank in the job's world. **Local.**
    pub fn world_rank(&self) -> usize {
        self.group[self.rank]
    }

    /// This process's number among the job's ranks on its host, `0..local_size()`. **Local.**
    pub fn local_rank(&self) -> usize {
        self.shared.local_rank
    }

    /// Number of the job's ranks on this process's host. **Local.**
    pub fn local_size(&self) -> usize {
        self.shared.local_size
    }

    /// The name of the host this rank runs on. **Local.**
    pub fn hostname(&self) -> &str {
        &self.shared.hostname
    }

    /// The job's id, the same on every rank and different for every job. **Local.**
    pub fn job_id(&self) -> &str {
        &self.shared.job_id
    }

    fn check_rank(&self, rank: usize) -> Result<usize> {
        self.group.get(rank).copied().ok_or(Error::InvalidRank { rank, size: self.size() })
    }

    /// This communicator's rank of a world rank that sent on its context.
    fn member(&self, world_rank: usize) -> usize {
        match &self.index {
            None => world_rank,
            Some(index) => index.get(&world_rank).copied().unwrap_or(usize::MAX),
        }
    }

    fn pattern(&self, src: Option<usize>, tag: Option<Tag>) -> Result<Pattern<'_>> {
        let src = src.map(|s| self.check_rank(s)).transpose()?;
        let group = self.index.as_ref().map(|_| &self.group[..]);
        Ok(Pattern { src, group, context: self.context, tag })
    }

    /// Sends `value` to rank `dest` with `tag`.
    ///
    /// **Local.** Returns once the message is on its way; it does not wait for `dest` to
    /// receive it. Messages from one rank to another with the same tag arrive in the order they
    /// were sent. A rank may send to itself.
    ///
    /// ```
    /// let world = prun::init()?;
    /// world.send(world.rank(), 7, &vec![1.5f64, 2.5])?;
    /// let v: Vec<f64> = world.recv(world.rank(), 7)?;
    /// assert_eq!(v, [1.5, 2.5]);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidRank`], [`Error::Encode`], [`Error::MessageTooLarge`], or
    /// [`Error::PeerLost`] when `dest` has ended.
    pub fn send<T: Serialize + ?Sized>(&self, dest: usize, tag: Tag, value: &T) -> Result<()> {
        let _wait = self.sending(dest, tag);
        let world_dest = self.check_rank(dest)?;
        let frame = codec::encode_into(value, vec![0; HEADER_LEN])?;
        self.shared.engine.send(world_dest, self.context, tag, frame, Lending::Sends)
    }

    /// Records, for the launcher, that this rank sends `dest` a message with `tag` until the
    /// guard is dropped (a send may wait for its receiver: a socket full, a large message not
    /// yet copied).
    fn sending(&self, dest: usize, tag: Tag) -> crate::activity::Guard<'_> {
        self.shared.activity.wait(Waiting::point_to_point("send", Some(dest), Some(tag), true))
    }

    /// Sends the elements of a plain-old-data slice to rank `dest` with `tag`, without
    /// serialisation: the slice's bytes go on the wire as they are.
    ///
    /// **Local.** Receive it with [`Communicator::recv_into`] only: the bytes are not in the
    /// codec's format. On the MPI backend, a slice to another rank with a tag up to 32767 is
    /// one `MPI_Send`, received in place when `recv_into` waits for it; the send still never
    /// waits for the receiver's program (a receiver thread takes what nobody waits for).
    ///
    /// ```
    /// let world = prun::init()?;
    /// // to the next rank (to itself on one), from the one before
    /// let (rank, size) = (world.rank(), world.size());
    /// world.send_slice((rank + 1) % size, 5, &[1.0f64, 2.0, rank as f64])?;
    /// let mut buf = [0.0f64; 3];
    /// let before = (rank + size - 1) % size;
    /// world.recv_into(before, 5, &mut buf)?;
    /// assert_eq!(buf, [1.0, 2.0, before as f64]);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Communicator::send`].
    pub fn send_slice<T: bytemuck::Pod>(&self, dest: usize, tag: Tag, data: &[T]) -> Result<()> {
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native_p2p(dest, tag) {
            self.check_rank(dest)?;
            self.shared.engine.check_len(std::mem::size_of_val(data) as u64)?;
            native.p2p().send(dest, tag, bytemuck::cast_slice(data));
            return Ok(());
        }
        let _wait = self.sending(dest, tag);
        let world_dest = self.check_rank(dest)?;
        let data = bytemuck::cast_slice(data);
        self.shared.engine.send_parts(world_dest, self.context, tag, &[data], Lending::Sends)
    }

    /// Receives a message sent with [`Communicator::send_slice`] from `src` with `tag` into
    /// `buf`, which must have exactly the message's length. **Local**, blocking.
    ///
    /// # Errors
    /// [`Error::Malformed`] when the message's length differs from `buf`'s (the message is then
    /// consumed); otherwise as [`Communicator::recv`].
    pub fn recv_into<T: bytemuck::Pod>(&self, src: usize, tag: Tag, buf: &mut [T]) -> Result<Status> {
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native_p2p(src, tag) {
            let pattern = self.pattern(Some(src), Some(tag))?;
            let bytes = bytemuck::cast_slice_mut(buf);
            let len = native.p2p().recv_into(self.shared.engine.mailbox(), &pattern, src, tag, bytes)?;
            return Ok(Status { source: src, tag, len });
        }
        let dst: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let len = dst.len();
        let pattern = self.pattern(Some(src), Some(tag))?;
        let target = Target { body: &mut *dst, tail: &mut [] };
        let e = match self.shared.engine.mailbox().recv_placed(&pattern, target, |_| None)? {
            Placed::InPlace => return Ok(Status { source: src, tag, len }),
            Placed::Queued(e) => e,
        };
        if len != e.data.len() {
            return Err(Error::Malformed(format!(
                "message from rank {src} (tag {tag}) has {} bytes, the buffer {len}",
                e.data.len(),
            )));
        }
        dst.copy_from_slice(&e.data);
        Ok(Status { source: src, tag, len })
    }

    /// Receives the next message from rank `src` with `tag`, blocking until it arrives.
    ///
    /// **Local.** Blocks without using the processor.
    ///
    /// # Errors
    /// [`Error::PeerLost`] when `src` has ended and no such message is left from it,
    /// [`Error::Decode`] when the message is not a `T` (it is then consumed),
    /// [`Error::InvalidRank`].
    pub fn recv<T: DeserializeOwned>(&self, src: usize, tag: Tag) -> Result<T> {
        Ok(self.recv_matching(Some(src), Some(tag))?.0)
    }

    /// Receives the next message with `tag` from any rank; returns the sender and the value.
    ///
    /// **Local.** Messages are taken in the order they arrived.
    ///
    /// ```
    /// let world = prun::init()?;
    /// // every rank but the last to the last (on one rank, rank 0 to itself)
    /// let last = world.size() - 1;
    /// if world.rank() != last || last == 0 {
    ///     world.send(last, 3, &format!("hi from {}", world.rank()))?;
    /// }
    /// if world.rank() == last {
    ///     // in the order the messages came
    ///     for _ in 0..last.max(1) {
    ///         let (from, text): (usize, String) = world.recv_any(3)?;
    ///         assert_eq!(text, format!("hi from {from}"));
    ///     }
    /// }
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::AllPeersGone`] when every other rank has ended and nothing is left to receive;
    /// [`Error::Decode`].
    pub fn recv_any<T: DeserializeOwned>(&self, tag: Tag) -> Result<(usize, T)> {
        let (value, status) = self.recv_matching(None, Some(tag))?;
        Ok((status.source, value))
    }

    /// Receives the next message from `src` (`None`: any rank) with `tag` (`None`: any tag),
    /// with its [`Status`]. **Local**, blocking.
    ///
    /// # Errors
    /// As [`Communicator::recv`] and [`Communicator::recv_any`].
    pub fn recv_matching<T: DeserializeOwned>(
        &self,
        src: Option<usize>,
        tag: Option<Tag>,
    ) -> Result<(T, Status)> {
        let pattern = self.pattern(src, tag)?;
        let _wait = self.shared.activity.wait(Waiting::point_to_point("recv", src, tag, false));
        let e = self.shared.engine.recv(&pattern)?;
        let status = Status { source: self.member(e.src), tag: e.tag, len: e.data.len() };
        Ok((codec::decode(&e.data, status.source, e.tag)?, status))
    }

    /// Takes a message from `src` (`None`: any) with `tag` (`None`: any) if one has arrived.
    ///
    /// **Local**, never blocks.
    ///
    /// ```
    /// let world = prun::init()?;
    /// assert!(world.try_recv::<u8>(None, Some(1))?.is_none());
    /// let me = world.rank();
    /// world.send(me, 1, &42u8)?;
    /// let (value, status) = world.try_recv::<u8>(None, Some(1))?.expect("sent to itself");
    /// assert_eq!((value, status.source, status.tag), (42, me, 1));
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Communicator::recv_matching`], without waiting.
    pub fn try_recv<T: DeserializeOwned>(
        &self,
        src: Option<usize>,
        tag: Option<Tag>,
    ) -> Result<Option<(T, Status)>> {
        match self.shared.engine.mailbox().try_recv(&self.pattern(src, tag)?)? {
            None => Ok(None),
            Some(e) => {
                let status = Status { source: self.member(e.src), tag: e.tag, len: e.data.len() };
                Ok(Some((codec::decode(&e.data, status.source, e.tag)?, status)))
            }
        }
    }

    /// The [`Status`] of the first arrived message from `src` (`None`: any) with `tag`
    /// (`None`: any), without receiving it. **Local**, never blocks.
    ///
    /// # Errors
    /// As [`Communicator::try_recv`].
    pub fn probe(&self, src: Option<usize>, tag: Option<Tag>) -> Result<Option<Status>> {
        let found = self.shared.engine.mailbox().probe(&self.pattern(src, tag)?)?;
        Ok(found.map(|(source, tag, len)| Status { source: self.member(source), tag, len }))
    }

    /// Blocks until every rank of the communicator has called `barrier`.
    ///
    /// **Collective.** A dissemination barrier (`ceil(log2(size))` rounds); where some host runs
    /// more ranks than it has cores, from four ranks every rank tells rank 0 and waits for its
    /// release (a tree of fan-out 32 beyond 33 ranks), fewer messages and so fewer wake-ups.
    ///
    /// ```
    /// let world = prun::init()?;
    /// world.barrier()?;
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::PeerLost`] when a rank it waits for has ended.
    pub fn barrier(&self) -> Result<()> {
        let call = self.begin("barrier");
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            native.barrier();
            return Ok(());
        }
        self.barrier_on(&self.channel_for(&call)?, call.seq)
    }

    /// Splits the communicator into disjoint groups, as `MPI_Comm_split`.
    ///
    /// **Collective.** Ranks passing the same `color` form one new communicator, numbered by
    /// `key` (ties broken by rank here); ranks passing `None` get `None`. Messages and
    /// collectives of the new communicator never match those of any other.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let half = world.split(Some((world.rank() % 2) as u32), world.rank() as i64)?.expect("has a color");
    /// assert_eq!(half.rank(), world.rank() / 2);
    /// half.barrier()?;
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Communicator::allgather`].
    pub fn split(&self, color: Option<u32>, key: i64) -> Result<Option<Communicator>> {
        let call = self.begin("split");
        let seq = call.seq;
        let mine = codec::encode_into(&(color, key), Vec::new())?;
        let all = prun_collectives::allgather(&self.channel_for(&call)?, seq, mine, false)?;
        let pairs: Vec<(Option<u32>, i64)> =
            all.iter().enumerate().map(|(r, bytes)| codec::decode(bytes, r, 0)).collect::<Result<_>>()?;
        // this rank's part: its colour, its members (world ranks, by key then rank), its rank there
        let part = match color {
            None => None,
            Some(color) => {
                let mut members: Vec<(i64, usize)> = pairs
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.0 == Some(color))
                    .map(|(r, p)| (p.1, r))
                    .collect();
                members.sort_unstable();
                let group: Arc<[usize]> = members.iter().map(|&(_, r)| self.group[r]).collect();
                let rank = members.iter().position(|&(_, r)| r == self.rank).ok_or_else(|| {
                    Error::Malformed("split: this rank is missing from its own color".into())
                })?;
                Some((color, group, rank))
            }
        };
        #[cfg(feature = "mpi")]
        let native = self.native().and_then(|native| {
            // MPI_Comm_split with small, non-negative colours (this one's place among all of
            // them) and this rank's place as its key: MPI's groups and ranks are exactly these
            let mut colors: Vec<u32> = pairs.iter().filter_map(|p| p.0).collect();
            colors.sort_unstable();
            colors.dedup();
            match &part {
                None => native.split(None, 0, Arc::from([]), 0),
                Some((color, group, rank)) => native.split(
                    colors.binary_search(color).ok().map(|c| c as i32),
                    *rank as i32,
                    Arc::clone(group),
                    self.split_context(seq, *color),
                ),
            }
        });
        let Some((color, group, rank)) = part else { return Ok(None) };
        let index = group.iter().enumerate().map(|(i, &w)| (w, i)).collect();
        let context = self.split_context(seq, color);
        Ok(Some(Communicator {
            #[cfg(feature = "mpi")]
            native,
            shared: Arc::clone(&self.shared),
            group,
            index: Some(Arc::new(index)),
            rank,
            context,
            calls: AtomicU32::new(0),
            helper: false,
        }))
    }

    /// The ranks of this communicator that share this rank's host, as a communicator of their
    /// own (ranked as here), to exploit locality.
    ///
    /// **Collective.**
    ///
    /// ```
    /// let world = prun::init()?;
    /// let here = world.split_by_host()?;
    /// assert_eq!(here.size(), world.local_size());
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Communicator::split`].
    pub fn split_by_host(&self) -> Result<Communicator> {
        self.split(Some(self.shared.node), self.rank as i64)?
            .ok_or_else(|| Error::Malformed("split by host gave no communicator".into()))
    }

    /// Index of this rank's host among the job's hosts (`PRUN_NODE_RANK`). **Local.**
    pub fn node_rank(&self) -> usize {
        self.shared.node as usize
    }

    /// Ends the whole job: every rank is stopped and `prun` exits with status `code`.
    ///
    /// **Local**: one rank calling it is enough, as `MPI_Abort`. Never returns. Alone (without a
    /// launcher), exits the process with `code`.
    pub fn abort(&self, code: i32) -> ! {
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            // MPI's own words about it are not always printed (Open MPI 4.1 may lose them); one
            // write, since the launcher may stop reading as soon as MPI_Abort starts
            let line =
                format!("prun: rank {} called abort({code}); MPI_Abort ends the job\n", self.world_rank());
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            // and a moment for the launcher to forward it: MPICH's mpiexec lost it now and then
            // when MPI_Abort followed at once (one run of the test suite in a few)
            std::thread::sleep(Duration::from_millis(100));
            native.abort(code);
        }
        if let Some(control) = &self.shared.control
            && control.abort(code).is_ok()
        {
            // the launcher now ends every rank, this one included; exit anyway if it is slow
            std::thread::sleep(Duration::from_secs(30));
        } else {
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("prun: rank {} called abort({code})\n", self.world_rank()),
            );
        }
        std::process::exit(code)
    }

    /// The point-to-point context of the part of colour `color` of split call `seq`: even
    /// contexts carry point-to-point messages, odd ones collectives; 0 and 1 are the world's.
    fn split_context(&self, seq: u32, color: u32) -> u64 {
        self.derived_context(seq, &color.to_le_bytes()) & !1
    }

    /// A context of its own for collective call `seq` (the dynamic map's messages).
    pub(crate) fn derived_context(&self, seq: u32, what: &[u8]) -> u64 {
        let mut h = blake3::Hasher::new();
        h.update(&self.context.to_le_bytes());
        h.update(&seq.to_le_bytes());
        h.update(what);
        let mut context = [0u8; 8];
        context.copy_from_slice(&h.finalize().as_bytes()[..8]);
        // never one of the world's contexts, 0 and 1
        u64::from_le_bytes(context).max(2)
    }

    /// Whether short collectives of `bytes` per rank go flat (broadcast, reduce, allreduce,
    /// allgather): only when some host of the job runs more ranks than it has cores, where each
    /// hop of a tree waits for the scheduler (see `prun_collectives::flat`); the classical trees
    /// otherwise. The same answer on every rank.
    pub(crate) fn flat(&self, bytes: usize) -> bool {
        self.shared.engine.crowded() && prun_collectives::tuning::flat(self.size(), bytes)
    }

    /// As [`Communicator::flat`], for the typed collectives, whose ranks cannot know each
    /// other's value sizes: by the number of ranks alone.
    pub(crate) fn flat_typed(&self) -> bool {
        self.shared.engine.crowded() && prun_collectives::tuning::flat_ranks(self.size())
    }

    /// As [`Communicator::flat`], for gather and scatter going straight to or from the root.
    pub(crate) fn direct(&self, bytes: usize) -> bool {
        self.shared.engine.crowded() && prun_collectives::tuning::direct(self.size(), bytes)
    }

    /// The engine every communicator of this process shares.
    pub(crate) fn shared_engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// The world rank of this communicator's rank `rank`.
    pub(crate) fn world_rank_of(&self, rank: usize) -> Result<usize> {
        self.check_rank(rank)
    }

    /// This communicator's rank of a world rank.
    pub(crate) fn member_of(&self, world_rank: usize) -> usize {
        self.member(world_rank)
    }

    /// A receive pattern on `context` for this communicator's members.
    pub(crate) fn pattern_on(
        &self,
        context: u64,
        src: Option<usize>,
        tag: Option<Tag>,
    ) -> Result<Pattern<'_>> {
        let src = src.map(|s| self.check_rank(s)).transpose()?;
        Ok(Pattern { src, group: Some(&self.group[..]), context, tag })
    }

    /// Starts the next collective call: its sequence number, traced as `name` until dropped.
    pub(crate) fn begin(&self, name: &'static str) -> Call<'_> {
        let cat = if name == "map" { "map" } else { "collective" };
        Call::new(self.calls.fetch_add(1, Ordering::SeqCst), self.shared.tracer.as_ref(), name, cat)
    }

    /// The connection to the launcher, when there is one.
    pub(crate) fn control(&self) -> Option<&Control> {
        self.shared.control.as_ref()
    }

    /// This communicator's context (of its point-to-point messages), which names it.
    pub(crate) fn base_context(&self) -> u64 {
        self.context
    }

    /// What this process is waiting for.
    pub(crate) fn activity(&self) -> &Activity {
        &self.shared.activity
    }

    /// The tracer, when `prun --trace` asked for one.
    pub(crate) fn tracer(&self) -> Option<&Tracer> {
        self.shared.tracer.as_ref()
    }

    /// A handle on this communicator for a thread that may outlive the call that starts it (a
    /// map's steal thread): the same members, rank and contexts, messages only (no MPI side,
    /// no collective calls of its own).
    pub(crate) fn helper_handle(&self) -> Communicator {
        Communicator {
            #[cfg(feature = "mpi")]
            native: None,
            shared: Arc::clone(&self.shared),
            group: Arc::clone(&self.group),
            index: self.index.clone(),
            rank: self.rank,
            context: self.context,
            calls: AtomicU32::new(0),
            helper: true,
        }
    }

    /// The helper threads, and the tasks calls left them ([`Helpers`]).
    pub(crate) fn helpers(&self) -> &Helpers {
        &self.shared.helpers
    }

    /// This communicator's collective traffic for `call`, as the collectives crate's interface;
    /// for each call once, when its root and length are known, before its first message.
    ///
    /// With [`crate::env::CHECK_COLLECTIVES`], first a barrier whose messages carry the call's
    /// signature, as every message of the call does: a rank that receives one of another
    /// signature fails with the mismatch error. Every rank has a predecessor whose message it
    /// receives (in the dissemination barrier's first round, or from its child or parent in the
    /// flat one), so where signatures differ some rank fails: also for calls that would end
    /// without an error, such as two ranks each believing it is a broadcast's root.
    pub(crate) fn channel_for(&self, call: &Call<'_>) -> Result<Channel<'_>> {
        let channel = Channel { comm: self, signature: Signature::of(call) };
        if self.shared.check_collectives && call.name != "barrier" {
            self.barrier_on(&channel, call.seq)?;
        }
        Ok(channel)
    }

    /// The barrier's algorithm on `channel` for call `seq`.
    fn barrier_on(&self, channel: &Channel<'_>, seq: u32) -> Result<()> {
        // where ranks outnumber cores: fewer messages, hence fewer wake-ups, than dissemination
        if self.shared.engine.crowded() && self.size() >= prun_collectives::tuning::FAN_MIN_RANKS {
            return prun_collectives::flat::barrier(channel, seq);
        }
        prun_collectives::barrier(channel, seq)
    }
}

impl Drop for Communicator {
    /// Waits for the helper tasks calls left stopping (a map's steal thread), so that their last
    /// messages and the tracer's last lines are out before the process can exit.
    fn drop(&mut self) {
        if !self.helper {
            self.shared.helpers.join_all();
        }
    }
}

impl std::fmt::Debug for Communicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Communicator")
            .field("rank", &self.rank)
            .field("size", &self.size())
            .field("world_rank", &self.world_rank())
            .field("hostname", &self.shared.hostname)
            .field("job_id", &self.shared.job_id)
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// A communicator's collective context, as the collectives crate's point-to-point interface.
pub(crate) struct Channel<'a> {
    comm: &'a Communicator,
    signature: Signature,
}

/// What every rank of a collective call must agree on, appended to each of its messages so that
/// ranks calling different operations, roots or buffer lengths get an error instead of a hang or
/// garbage.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Signature {
    op: &'static str,
    root: Option<usize>,
    len: Option<usize>,
}

/// Operations, by their code in a signature.
const OPERATIONS: [&str; 31] = [
    "barrier",
    "split",
    "broadcast",
    "scatter",
    "gather",
    "allgather",
    "alltoall",
    "reduce",
    "allreduce",
    "scan",
    "exscan",
    "broadcast_into",
    "scatter_into",
    "gather_into",
    "allgather_into",
    "reduce_into",
    "allreduce_into",
    "map",
    "alltoall_into",
    "reduce_scatter_into",
    "alltoallv_into",
    "gatherv_into",
    "scatterv_into",
    "allgatherv_into",
    "reduce_into_with",
    "allreduce_into_with",
    "scan_into",
    "exscan_into",
    "reduce_scatter_into_with",
    "scan_into_with",
    "exscan_into_with",
];

/// Length of an encoded signature.
const SIGNATURE_LEN: usize = 20;

/// The signature a collective message ends with, if it is long enough to hold one.
fn trailer(data: &[u8]) -> Option<&[u8]> {
    data.get(data.len().checked_sub(SIGNATURE_LEN)?..)
}

impl Signature {
    fn of(call: &Call<'_>) -> Signature {
        Signature { op: call.name, root: call.root, len: call.len }
    }

    fn encode(&self) -> [u8; SIGNATURE_LEN] {
        let mut b = [0u8; SIGNATURE_LEN];
        let code = OPERATIONS.iter().position(|&o| o == self.op).map_or(u32::MAX, |c| c as u32);
        b[..4].copy_from_slice(&code.to_le_bytes());
        b[4..12].copy_from_slice(&self.root.map_or(u64::MAX, |r| r as u64).to_le_bytes());
        b[12..].copy_from_slice(&self.len.map_or(u64::MAX, |l| l as u64).to_le_bytes());
        b
    }

    /// Describes an encoded signature, for error messages.
    fn describe(b: &[u8]) -> String {
        let word =
            |r: std::ops::Range<usize>| b.get(r).and_then(|w| w.try_into().ok()).map(u64::from_le_bytes);
        let code = b.get(..4).and_then(|w| w.try_into().ok()).map(u32::from_le_bytes);
        let op = code.and_then(|c| OPERATIONS.get(c as usize)).copied().unwrap_or("an unknown operation");
        let mut text = op.to_string();
        if let Some(root) = word(4..12).filter(|&r| r != u64::MAX) {
            text += &format!(" (root {root})");
        }
        if let Some(len) = word(12..20).filter(|&l| l != u64::MAX) {
            text += &format!(" with {len}-byte buffers");
        }
        text
    }
}

impl Channel<'_> {
    /// Lends `data` (and this call's signature) to `dest` with `tag`, running `meanwhile` while
    /// `dest` copies it ([`crate::engine::Engine::lend_while`]); `Ok(None)` when it is not to be
    /// lent (and `meanwhile` did not run). With `hold`, the connection from that rank is kept
    /// for this thread's next receive meanwhile (the peer's message, which may come before the
    /// receive starts, waits for it).
    fn lend_while<R>(
        &self,
        dest: usize,
        tag: u32,
        data: &[u8],
        hold: Option<usize>,
        how: Lending,
        meanwhile: impl FnOnce() -> R,
    ) -> Result<Option<(Result<()>, R)>> {
        let engine = &self.comm.shared.engine;
        let world_dest = self.comm.check_rank(dest)?;
        let signature = self.signature.encode();
        let len = data.len() + signature.len();
        if !engine.lends_to(world_dest, len, how) {
            return Ok(None);
        }
        engine.check_len(len as u64)?;
        if let Some(src) = hold {
            engine.mailbox().hold(self.comm.check_rank(src)?);
        }
        let _wait = self.sending(dest, tag);
        let lent = engine.lend_while(
            world_dest,
            self.comm.context | 1,
            tag,
            &[data, &signature[..]],
            how,
            meanwhile,
        );
        if hold.is_some() {
            engine.mailbox().unhold();
        }
        Ok(lent)
    }

    /// [`PointToPoint::send_each`]: each message lent as one of a fan when `fan`, the last one
    /// as from a sender that only waits when there is nothing left to run (so that its receiver
    /// can share the copy, [`crate::lend::SHARE_MIN`]).
    fn send_all(
        &self,
        tag: u32,
        sends: &[(usize, &[u8])],
        fan: bool,
        meanwhile: Option<&mut dyn FnMut()>,
    ) -> Result<()> {
        // whether no two messages share a byte (a scatter's blocks, not a broadcast's buffer);
        // asked only of a fan with a message long enough to be lent for it
        let lendable = |d: &&[u8]| d.len() >= crate::lend::MEMORY_ONLY_FAN_MIN;
        let distinct = fan && sends.iter().any(|(_, d)| lendable(d)) && {
            let mut spans: Vec<(usize, usize)> =
                sends.iter().map(|(_, d)| (d.as_ptr() as usize, d.as_ptr() as usize + d.len())).collect();
            spans.sort_unstable();
            spans.windows(2).all(|w| w[0].1 <= w[1].0)
        };
        nest_sends(sends, meanwhile, &|dest, data, waits, next| {
            let how = match (fan, waits) {
                (true, waits) => Lending::Fans { waits, distinct },
                (false, true) => Lending::Waits,
                (false, false) => Lending::Works,
            };
            self.lend_or_send(dest, tag, data, how, next)
        })
    }

    /// Lends `data` to `dest` `how` and runs `meanwhile` while `dest` copies it, or, when it is
    /// not to be lent, sends it, then runs `meanwhile`; `meanwhile` runs once either way.
    fn lend_or_send(
        &self,
        dest: usize,
        tag: u32,
        data: &[u8],
        how: Lending,
        meanwhile: &mut dyn FnMut(),
    ) -> Result<()> {
        match self.lend_while(dest, tag, data, None, how, &mut *meanwhile) {
            Ok(Some((sent, ()))) => sent,
            Ok(None) => {
                let sent = self.send(dest, tag, data);
                meanwhile();
                sent
            }
            Err(e) => {
                meanwhile();
                Err(e)
            }
        }
    }

    /// [`PointToPoint::sendrecv_into`] where the message is not lent: a pairwise exchange one
    /// way, then the other (the lower rank sends first), other exchanges receiving on this
    /// thread while a thread of their own sends.
    fn sendrecv_written(
        &self,
        dest: usize,
        send_tag: u32,
        data: &[u8],
        src: usize,
        recv_tag: u32,
        buf: &mut [u8],
    ) -> Result<()> {
        let large = data.len().min(buf.len()) >= SENDRECV_THREAD_MIN;
        if large && dest == src && self.comm.rank > dest {
            // a pairwise exchange: one direction after the other, each finding its receive
            // posted (measured at 2 ranks, 1 MiB: 0.47 ms against 0.54 to 0.77 with a thread);
            // the lower rank sends first, below; when this receive fails, the lower rank
            // still gets this rank's message, so that it fails too rather than wait for it.
            // A peer silent for EXCHANGE_PATIENCE may be in another algorithm for another
            // length, waiting for a rank that waits for this one: this rank's message, queued
            // there, shows it the mismatch; a peer merely late gets it queued, and the
            // exchange completes as any other
            let patience = Instant::now() + EXCHANGE_PATIENCE;
            let received = match self.recv_into_by(src, recv_tag, buf, Some(patience)) {
                Ok(false) => None,
                other => Some(other.map(drop)),
            };
            let sent = self.send(dest, send_tag, data);
            let received = received.unwrap_or_else(|| self.recv_into(src, recv_tag, buf));
            return received.and(sent);
        }
        if large && dest != src {
            let threaded = std::thread::scope(|scope| {
                let sender = std::thread::Builder::new()
                    .name("prun-sendrecv".into())
                    .spawn_scoped(scope, || self.send(dest, send_tag, data))
                    .ok()?;
                let received = self.recv_into(src, recv_tag, buf);
                let sent = sender
                    .join()
                    .unwrap_or_else(|_| Err(Error::Malformed("the sending thread panicked".into())));
                Some(sent.and(received))
            });
            // with no thread to be had, send, then receive, as below
            if let Some(result) = threaded {
                return result;
            }
        }
        self.send(dest, send_tag, data)?;
        self.recv_into(src, recv_tag, buf)
    }
}

impl PointToPoint for Channel<'_> {
    type Error = Error;

    /// Whole where this rank and `peer` each read the other's large messages out of memory
    /// ([`Engine::memory_both_ways`]): one copy of any length, where pieces each pay a lent
    /// message's round trip (2 ranks, 16 MiB, see
    /// [`EXCHANGE_PIECE`](prun_collectives::tuning::EXCHANGE_PIECE)); else in pieces, so that
    /// each fits the pipe it is lent through.
    fn exchange_piece(&self, peer: usize) -> usize {
        match self.comm.check_rank(peer) {
            Ok(world) if self.comm.shared.engine.memory_both_ways(world) => usize::MAX,
            _ => prun_collectives::tuning::EXCHANGE_PIECE,
        }
    }

    /// As an exchange step lends it ([`crate::lend`]): large, to a rank on this host, where the
    /// host's ranks share cores only from `lend::CROWDED_EXCHANGE_MIN`.
    fn lends(&self, peer: usize, len: usize) -> bool {
        let signed = len.saturating_add(SIGNATURE_LEN);
        self.comm
            .check_rank(peer)
            .is_ok_and(|w| self.comm.shared.engine.lends_to(w, signed, Lending::Exchanges))
    }

    fn rank(&self) -> usize {
        self.comm.rank
    }

    fn size(&self) -> usize {
        self.comm.size()
    }

    fn send(&self, dest: usize, tag: u32, data: &[u8]) -> Result<()> {
        self.send_parts(dest, tag, &[data])
    }

    fn send_parts(&self, dest: usize, tag: u32, parts: &[&[u8]]) -> Result<()> {
        let _wait = self.sending(dest, tag);
        let dest = self.comm.check_rank(dest)?;
        let signature = self.signature.encode();
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.extend_from_slice(parts);
        all.push(&signature);
        self.comm.shared.engine.send_parts(dest, self.comm.context | 1, tag, &all, Lending::Waits)
    }

    /// A lent message ([`crate::lend`]) is announced, then `meanwhile` runs while the receiver
    /// copies it.
    fn send_while(&self, dest: usize, tag: u32, data: &[u8], meanwhile: &mut dyn FnMut()) -> Result<()> {
        self.lend_or_send(dest, tag, data, Lending::Works, meanwhile)
    }

    /// Messages to ranks on this host are lent ([`crate::lend`]) and all announced before this
    /// rank waits for any to be copied, so their receivers copy them at once; where ranks
    /// share cores too, since the sender then waits once for all of them rather than once
    /// for each ([`crate::lend::CROWDED_LEND_MIN`]).
    fn send_each(
        &self,
        tag: u32,
        sends: &[(usize, &[u8])],
        meanwhile: Option<&mut dyn FnMut()>,
    ) -> Result<()> {
        self.send_all(tag, sends, sends.len() > 1, meanwhile)
    }

    /// The sends as [`PointToPoint::send_each`]; the receives, once the sends are out, each
    /// large message read straight into place in the order they come
    /// ([`crate::mailbox::Mailbox::complete_each`], which says why not before).
    fn send_recv_each(
        &self,
        tag: u32,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
        mut before: Option<&mut dyn FnMut()>,
    ) -> Result<()> {
        let context = self.comm.context | 1;
        let mut posts = Vec::with_capacity(recvs.len());
        for (src, buf) in recvs.iter() {
            let world_src = self.comm.check_rank(*src)?;
            posts.push((world_src, context, tag, (buf.len() + SIGNATURE_LEN) as u64));
        }
        let mut received = None;
        let mut receive = || {
            if let Some(before) = before.take() {
                before();
            }
            if received.is_none() {
                received = Some(self.complete_each(&posts, tag, recvs));
            }
        };
        let sent = self.send_all(tag, sends, sends.len() > 1, Some(&mut receive));
        received.unwrap_or(Ok(())).and(sent)
    }

    fn recv(&self, src: usize, tag: u32) -> Result<Vec<u8>> {
        match self.receive(src, tag, &mut [], None)? {
            Got::Copy(data) => Ok(data),
            Got::InPlace | Got::Late => Err(Error::Malformed("nothing received".into())),
        }
    }

    fn recv_into(&self, src: usize, tag: u32, buf: &mut [u8]) -> Result<()> {
        self.recv_into_by(src, tag, buf, None).map(drop)
    }

    /// For large messages, makes sure the receive is posted when its message comes, so that it
    /// is read in place instead of queued whole (two ranks exchanging large blocks would both
    /// send first): a lent message ([`crate::lend`]) is announced, then received while the
    /// peer copies it; otherwise a pairwise exchange goes one way, then the other (the lower
    /// rank sends first), and other exchanges receive on this thread while a thread of its own
    /// sends.
    fn sendrecv_into(
        &self,
        dest: usize,
        send_tag: u32,
        data: &[u8],
        src: usize,
        recv_tag: u32,
        buf: &mut [u8],
    ) -> Result<()> {
        self.sendrecv_into_while(dest, send_tag, data, src, recv_tag, buf, &mut || ())
    }

    /// `before` runs while the peer copies this rank's lent message, before receiving; after
    /// the exchange where the message is written.
    fn sendrecv_into_while(
        &self,
        dest: usize,
        send_tag: u32,
        data: &[u8],
        src: usize,
        recv_tag: u32,
        buf: &mut [u8],
        before: &mut dyn FnMut(),
    ) -> Result<()> {
        // lent (to a rank on this host, where ranks have a core each): the receive runs while
        // the peer copies, and two ranks exchanging copy each other's message at once
        let lent = self.lend_while(dest, send_tag, data, Some(src), Lending::Exchanges, || {
            before();
            self.recv_into(src, recv_tag, buf)
        })?;
        if let Some((sent, received)) = lent {
            return received.and(sent);
        }
        // written: `before` would only hold up the peer, waiting for this rank's message
        let exchanged = self.sendrecv_written(dest, send_tag, data, src, recv_tag, buf);
        before();
        exchanged
    }

    fn malformed(&self, what: String) -> Error {
        Error::Malformed(what)
    }
}

/// Exchanges of at least this many bytes each way send on a thread of their own (see
/// `Channel::sendrecv_into`); below it, a thread costs more than the copy it saves.
const SENDRECV_THREAD_MIN: usize = 256 * 1024;

/// How long the higher rank of a large pairwise exchange waits for the lower rank's message
/// before it sends its own anyway (see `Channel::sendrecv_into`): long beside any exchange's
/// wait for a peer in the same call, short beside a user's patience with a hung job.
const EXCHANGE_PATIENCE: Duration = Duration::from_millis(200);

/// The bits of a call's sequence number a collective message's tag keeps
/// ([`prun_collectives::p2p::tag`]), and half their range: a message of a call at most that
/// many calls back is of an earlier call, not of a later one.
pub(crate) const SEQ_MASK: u32 = (1 << 24) - 1;
const SEQ_HALF: u32 = 1 << 23;

/// What a collective receive got.
enum Got {
    /// The payload, in the caller's buffer.
    InPlace,
    /// The payload, checked and without its signature, for the caller to copy.
    Copy(Vec<u8>),
    /// Nothing by the receive's deadline.
    Late,
}

impl Channel<'_> {
    /// Receives the next collective message from `src` with `tag` into `buf`, as
    /// [`PointToPoint::recv_into`]; with a `deadline`, returns `false` if nothing came by
    /// then (a message that comes later is queued for the next receive).
    fn recv_into_by(&self, src: usize, tag: u32, buf: &mut [u8], deadline: Option<Instant>) -> Result<bool> {
        match self.receive(src, tag, buf, deadline)? {
            Got::InPlace => Ok(true),
            Got::Copy(data) => copy_received(self, src, &data, buf).map(|()| true),
            Got::Late => Ok(false),
        }
    }

    /// Receives the next collective message from `src` with `tag`, checking its signature:
    /// straight into `buf` when it is exactly `buf`'s length and `buf` is not empty, otherwise
    /// as a vector without the signature. A `deadline` counts for a non-empty `buf` only.
    fn receive(&self, src: usize, tag: u32, buf: &mut [u8], deadline: Option<Instant>) -> Result<Got> {
        let world_src = self.comm.check_rank(src)?;
        let pattern =
            Pattern { src: Some(world_src), group: None, context: self.comm.context | 1, tag: Some(tag) };
        let ours = self.signature.encode();
        let seq = seq_of(tag);
        let _wait = self.comm.shared.activity.wait(self.waiting(seq, Some(src)));
        let bad = self.objection(seq);
        let mailbox = self.comm.shared.engine.mailbox();
        let data = if buf.is_empty() {
            mailbox.recv_checked(&pattern, bad)?.data
        } else {
            let mut theirs = [0u8; SIGNATURE_LEN];
            match mailbox.recv_placed_by(&pattern, Target { body: buf, tail: &mut theirs }, bad, deadline)? {
                None => return Ok(Got::Late),
                Some(Placed::InPlace) if theirs == ours => return Ok(Got::InPlace),
                Some(Placed::InPlace) => return Err(self.mismatch(seq, src, Some(&theirs))),
                Some(Placed::Queued(e)) => e.data,
            }
        };
        self.payload(seq, src, data).map(Got::Copy)
    }

    /// What this rank waits for in call `seq`, for the launcher (from `peer`, or any).
    fn waiting(&self, seq: u32, peer: Option<usize>) -> Waiting {
        let sig = &self.signature;
        Waiting {
            op: sig.op,
            root: sig.root,
            call: Some(seq),
            context: Some(self.comm.context),
            len: sig.len,
            peer,
            tag: None,
            sending: false,
        }
    }

    /// Records, for the launcher, that this rank sends `dest` a message of this call on `tag`
    /// until the guard is dropped: a send may wait for its receiver (a socket full, a lent
    /// message not yet copied), and a receive within it records itself on top.
    fn sending(&self, dest: usize, tag: u32) -> crate::activity::Guard<'_> {
        let waiting = Waiting { sending: true, ..self.waiting(seq_of(tag), Some(dest)) };
        self.comm.shared.activity.wait(waiting)
    }

    /// The error for a message of call `seq` from `from` that carries the signature `theirs`
    /// (`None`: none that could be read) rather than this call's.
    fn mismatch(&self, seq: u32, from: usize, theirs: Option<&[u8]>) -> Error {
        Error::Malformed(format!(
            "collective mismatch at call #{seq} on this communicator: rank {from} called {}, this rank (rank {}) called {}",
            theirs.map_or_else(|| "something unrecognisable".to_string(), Signature::describe),
            self.comm.rank,
            Signature::describe(&self.signature.encode())
        ))
    }

    /// The error for a message of call `theirs_seq` from `from`, a call this rank has finished.
    fn stray(&self, theirs_seq: u32, from: usize, theirs: Option<&[u8]>) -> Error {
        Error::Malformed(format!(
            "collective mismatch at call #{theirs_seq} on this communicator: rank {from} called {} and sent rank {} a message that call did not take (ranks passed different lengths, roots or operations)",
            theirs.map_or_else(|| "something unrecognisable".to_string(), Signature::describe),
            self.comm.rank,
        ))
    }

    /// What objects to a queued message while a receive of call `seq` waits: a message of the
    /// same call (same sequence number) from any member with another signature means that rank
    /// is in another operation, or chose another algorithm for another length: fail now rather
    /// than wait forever for a message that will not come. So does a message of an earlier call:
    /// every call takes every message sent to it before it returns, so the sender took another
    /// algorithm for that call (it passed another length, say, and waits for this rank's part
    /// in it).
    fn objection(&self, seq: u32) -> impl Fn(&Envelope) -> Option<Error> + '_ {
        let ours = self.signature.encode();
        move |e: &Envelope| {
            let (theirs_seq, theirs) = (seq_of(e.tag), trailer(&e.data));
            if theirs_seq == seq {
                return (theirs != Some(&ours[..]))
                    .then(|| self.mismatch(seq, self.comm.member(e.src), theirs));
            }
            // sequence numbers are 24 bits and wrap: earlier means up to half their range back
            let back = seq.wrapping_sub(theirs_seq) & SEQ_MASK;
            (back < SEQ_HALF).then(|| self.stray(theirs_seq, self.comm.member(e.src), theirs))
        }
    }

    /// The payload of a queued message of call `seq` from `src`, its signature checked and
    /// removed (the signature is a trailer, so the payload stays where it is).
    fn payload(&self, seq: u32, src: usize, mut data: Vec<u8>) -> Result<Vec<u8>> {
        let theirs = trailer(&data);
        if theirs != Some(&self.signature.encode()[..]) {
            return Err(self.mismatch(seq, src, theirs));
        }
        data.truncate(data.len() - SIGNATURE_LEN);
        Ok(data)
    }

    /// [`PointToPoint::send_recv_each`]'s receives, `posts` as the mailbox's
    /// [`complete_each`](crate::mailbox::Mailbox::complete_each) takes them.
    fn complete_each(
        &self,
        posts: &[(usize, u64, u32, u64)],
        tag: u32,
        recvs: &mut [(usize, &mut [u8])],
    ) -> Result<()> {
        let seq = seq_of(tag);
        let _wait = self.comm.shared.activity.wait(self.waiting(seq, None));
        let mut theirs = vec![[0u8; SIGNATURE_LEN]; recvs.len()];
        let targets = recvs
            .iter_mut()
            .zip(&mut theirs)
            .map(|((_, buf), tail)| Some(Target { body: buf, tail }))
            .collect();
        let mailbox = self.comm.shared.engine.mailbox();
        let placed = mailbox.complete_each(posts, targets, self.objection(seq))?;
        let ours = self.signature.encode();
        for (((src, buf), theirs), placed) in recvs.iter_mut().zip(&theirs).zip(placed) {
            match placed {
                Placed::InPlace if *theirs == ours => {}
                Placed::InPlace => return Err(self.mismatch(seq, *src, Some(theirs))),
                Placed::Queued(e) => copy_received(self, *src, &self.payload(seq, *src, e.data)?, buf)?,
            }
        }
        Ok(())
    }
}
