//! The [`World`]: every rank of the job, and the calls that address them.

use crate::bootstrap::{self, Control};
use crate::codec;
use crate::engine::Engine;
use crate::env::{self, JobEnv};
use crate::error::{Error, Result};
use crate::mailbox::Pattern;
use crate::wire::HEADER_LEN;
use prun_collectives::PointToPoint;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// A message tag: receivers select messages by source and tag.
pub type Tag = u32;

/// Context of the world's point-to-point messages.
const CONTEXT_P2P: u32 = 0;
/// Context of the world's collective messages: never matched by user receives.
const CONTEXT_COLLECTIVE: u32 = 1;

/// Where a received message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The sending rank.
    pub source: usize,
    /// The message's tag.
    pub tag: Tag,
    /// Length of the encoded message in bytes.
    pub len: usize,
}

/// The ranks of a job, as seen from one of them. Obtained from [`init`].
///
/// Every method says whether it is **collective** (every rank must call it, in the same order
/// as the other collectives of the world) or **local** (it involves only the calling rank and
/// the peers it names). Methods take `&self`, and a `World` can be shared between threads;
/// collectives must still be called in the same order on every rank.
pub struct World {
    rank: usize,
    size: usize,
    local_rank: usize,
    local_size: usize,
    job_id: String,
    hostname: String,
    engine: Engine,
    control: Option<Control>,
    collectives: AtomicU32,
}

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Joins the job this process belongs to and returns its [`World`].
///
/// Reads the environment prun gives each rank (see [`crate::env`]), listens for peers, meets
/// the launcher and learns where every rank listens. Connections to peers open later, on first
/// use. Without prun's environment, returns a world of one rank, so a job also runs on its own.
///
/// **Collective**: returns once every rank of the job has called it.
///
/// ```
/// let world = prun::init()?;
/// println!("rank {} of {}", world.rank(), world.size());
/// # Ok::<(), prun::Error>(())
/// ```
///
/// # Errors
/// [`Error::Bootstrap`] when the environment is inconsistent, the launcher cannot be reached or
/// a rank ended before joining; [`Error::AlreadyInitialized`] on a second call.
pub fn init() -> Result<World> {
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Err(Error::AlreadyInitialized);
    }
    let world = World::join();
    if world.is_err() {
        INITIALIZED.store(false, Ordering::SeqCst);
    }
    world
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

impl World {
    fn join() -> Result<World> {
        let limit = env::max_message()?;
        let Some(job) = JobEnv::from_env()? else {
            return Ok(World {
                rank: 0,
                size: 1,
                local_rank: 0,
                local_size: 1,
                job_id: format!("alone-{}", std::process::id()),
                hostname: hostname(),
                engine: Engine::alone(limit),
                control: None,
                collectives: AtomicU32::new(0),
            });
        };
        let (rank, size, local_rank, local_size) = (job.rank, job.size, job.local_rank, job.local_size);
        let job_id = job.job_id.clone();
        let (engine, control) = bootstrap::join(job, limit)?;
        Ok(World {
            rank,
            size,
            local_rank,
            local_size,
            job_id,
            hostname: hostname(),
            engine,
            control: Some(control),
            collectives: AtomicU32::new(0),
        })
    }

    /// This rank's number, `0..size()`. **Local.**
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks in the job. **Local.**
    pub fn size(&self) -> usize {
        self.size
    }

    /// This rank's number among the ranks on its host, `0..local_size()`. **Local.**
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Number of ranks on this rank's host. **Local.**
    pub fn local_size(&self) -> usize {
        self.local_size
    }

    /// The name of the host this rank runs on. **Local.**
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The job's id, the same on every rank and different for every job. **Local.**
    pub fn job_id(&self) -> &str {
        &self.job_id
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
        self.engine.check_rank(dest)?;
        let frame = codec::encode_into(value, vec![0; HEADER_LEN])?;
        self.engine.send(dest, CONTEXT_P2P, tag, frame)
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
        self.engine.check_rank(src)?;
        Ok(self.recv_matching(Some(src), Some(tag))?.0)
    }

    /// Receives the next message with `tag` from any rank; returns the sender and the value.
    ///
    /// **Local.** Messages are taken in the order they arrived.
    ///
    /// ```
    /// let world = prun::init()?;
    /// world.send(0, 3, "hi")?;
    /// let (from, text): (usize, String) = world.recv_any(3)?;
    /// assert_eq!((from, text.as_str()), (0, "hi"));
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
    /// As [`World::recv`] and [`World::recv_any`].
    pub fn recv_matching<T: DeserializeOwned>(
        &self,
        src: Option<usize>,
        tag: Option<Tag>,
    ) -> Result<(T, Status)> {
        if let Some(src) = src {
            self.engine.check_rank(src)?;
        }
        let e = self.engine.recv(&Pattern { src, context: CONTEXT_P2P, tag })?;
        let status = Status { source: e.src, tag: e.tag, len: e.data.len() };
        Ok((codec::decode(&e.data, e.src, e.tag)?, status))
    }

    /// Takes a message from `src` (`None`: any) with `tag` (`None`: any) if one has arrived.
    ///
    /// **Local**, never blocks.
    ///
    /// ```
    /// let world = prun::init()?;
    /// assert!(world.try_recv::<u8>(None, None)?.is_none());
    /// world.send(0, 1, &42u8)?;
    /// let (value, status) = world.try_recv::<u8>(None, None)?.expect("sent to self");
    /// assert_eq!((value, status.source, status.tag), (42, 0, 1));
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`World::recv_matching`], without waiting.
    pub fn try_recv<T: DeserializeOwned>(
        &self,
        src: Option<usize>,
        tag: Option<Tag>,
    ) -> Result<Option<(T, Status)>> {
        if let Some(src) = src {
            self.engine.check_rank(src)?;
        }
        let pattern = Pattern { src, context: CONTEXT_P2P, tag };
        match self.engine.mailbox().try_recv(&pattern)? {
            None => Ok(None),
            Some(e) => {
                let status = Status { source: e.src, tag: e.tag, len: e.data.len() };
                Ok(Some((codec::decode(&e.data, e.src, e.tag)?, status)))
            }
        }
    }

    /// The [`Status`] of the first arrived message from `src` (`None`: any) with `tag`
    /// (`None`: any), without receiving it. **Local**, never blocks.
    ///
    /// # Errors
    /// As [`World::try_recv`].
    pub fn probe(&self, src: Option<usize>, tag: Option<Tag>) -> Result<Option<Status>> {
        if let Some(src) = src {
            self.engine.check_rank(src)?;
        }
        let pattern = Pattern { src, context: CONTEXT_P2P, tag };
        Ok(self.engine.mailbox().probe(&pattern)?.map(|(source, tag, len)| Status { source, tag, len }))
    }

    /// Blocks until every rank has called `barrier`.
    ///
    /// **Collective.** A dissemination barrier: `ceil(log2(size))` rounds of one message.
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
        let seq = self.collectives.fetch_add(1, Ordering::SeqCst);
        prun_collectives::barrier(&self.collective_channel(), seq)
    }

    /// Ends the whole job: every rank is stopped and `prun` exits with status `code`.
    ///
    /// **Local**: one rank calling it is enough, as `MPI_Abort`. Never returns. Alone (without a
    /// launcher), exits the process with `code`.
    pub fn abort(&self, code: i32) -> ! {
        if let Some(control) = &self.control
            && control.abort(code).is_ok()
        {
            // the launcher now ends every rank, this one included; exit anyway if it is slow
            std::thread::sleep(Duration::from_secs(30));
        } else {
            eprintln!("prun: rank {} called abort({code})", self.rank);
        }
        std::process::exit(code)
    }

    fn collective_channel(&self) -> Channel<'_> {
        Channel { engine: &self.engine, context: CONTEXT_COLLECTIVE }
    }
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("local_rank", &self.local_rank)
            .field("local_size", &self.local_size)
            .field("hostname", &self.hostname)
            .field("job_id", &self.job_id)
            .finish_non_exhaustive()
    }
}

/// One context of the engine, as the collectives crate's point-to-point interface.
struct Channel<'a> {
    engine: &'a Engine,
    context: u32,
}

impl PointToPoint for Channel<'_> {
    type Error = Error;

    fn rank(&self) -> usize {
        self.engine.rank()
    }

    fn size(&self) -> usize {
        self.engine.size()
    }

    fn send(&self, dest: usize, tag: u32, data: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(HEADER_LEN + data.len());
        frame.resize(HEADER_LEN, 0);
        frame.extend_from_slice(data);
        self.engine.send(dest, self.context, tag, frame)
    }

    fn recv(&self, src: usize, tag: u32) -> Result<Vec<u8>> {
        Ok(self.engine.recv(&Pattern { src: Some(src), context: self.context, tag: Some(tag) })?.data)
    }
}
