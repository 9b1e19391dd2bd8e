//! The MPI backend (cargo feature `mpi`): a program started by an MPI launcher (Open MPI's
//! `mpirun`, MPICH's `mpiexec`, `srun --mpi=pmix`, or `prun --mpi`) runs every [`World`]
//! operation on MPI.
//!
//! - Rank and size are MPI's; ranks sharing a host are those of `MPI_Comm_split_type(SHARED)`.
//! - Barrier and the plain-old-data collectives (`*_into`, with [`crate::Op`]) are MPI's own
//!   (`MPI_Barrier`, `MPI_Bcast`, `MPI_Allreduce` with `MPI_SUM`, ...); `split` is
//!   `MPI_Comm_split`, `abort` is `MPI_Abort`; `send_slice` messages are `MPI_Send`s, drained
//!   by a receiver thread when no `recv_into` waits for them (see `p2p.rs`).
//! - Typed messages, typed collectives (the same algorithms as the built-in backend) and the
//!   dynamic map travel as MPI messages on a communicator of their own, delivered by a receiver
//!   thread; so the backend asks for `MPI_THREAD_MULTIPLE` and refuses to start without it.
//! - MPI is finalised when the world and every communicator split from it are dropped. A rank
//!   that exits without that makes the MPI launcher report the job as failed.

mod handle;
mod native;
mod p2p;
mod transport;

pub(crate) use native::Native;
pub(crate) use p2p::native_tag;
pub(crate) use transport::Transport;

use crate::communicator::{Communicator, Shared, World};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::mailbox::Mailbox;
use handle::{Comm, ThreadMultiple};
use mpi::Threading;
use mpi::traits::*;
// the trait, under another name than the runtime's type
use mpi::topology::Communicator as _;
use std::sync::Arc;

/// MPI itself, finalised when dropped (after every communicator).
pub(crate) struct Universe(#[allow(dead_code)] mpi::environment::Universe);

/// The MPI library's own description of itself, as `MPI_Get_library_version`.
pub(crate) fn library() -> String {
    // "Open MPI v4.1.4, package: ..." or "MPICH Version:\t4.0.2\n...": the name and version
    let text = mpi::environment::library_version().unwrap_or_default();
    let first = text.lines().next().unwrap_or_default().split(',').next().unwrap_or_default();
    let words: Vec<&str> = first.split_whitespace().collect();
    if words.is_empty() { "an MPI library".into() } else { words.join(" ") }
}

/// Initialises MPI and returns the world, for a process started by an MPI launcher that set
/// `var` to `n`.
pub(crate) fn join(limit: u64, (var, n): (&str, usize), hostname: String) -> Result<World> {
    let Some((universe, level)) = mpi::initialize_with_threading(Threading::Multiple) else {
        return Err(Error::Bootstrap("MPI was already initialised by another part of this program".into()));
    };
    let Some(proof) = ThreadMultiple::granted(level) else {
        return Err(Error::Bootstrap(format!(
            "{} grants only {level:?} threading, but prun's MPI backend needs MPI_THREAD_MULTIPLE: \
             use an MPI library built with thread support (Open MPI and MPICH are by default)",
            library()
        )));
    };
    let world = universe.world();
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    if size != n {
        return Err(Error::Bootstrap(format!(
            "{var}={n}, but MPI ({}) sees {size} rank(s): this program was built against another MPI \
             library than the launcher's, or the launcher gave MPI no PMI (with srun, pass \
             --mpi=pmix or --mpi=pmi2)",
            library()
        )));
    }
    let host = world.split_shared(rank as i32);
    let (local_rank, local_size) = (host.rank() as usize, host.size() as usize);
    // hosts are numbered by the world rank of their first rank
    let mut leader = [rank as u64];
    host.process_at_rank(0).broadcast_into(&mut leader);
    let mut leaders = vec![0u8; size];
    world.all_gather_into(&[u8::from(local_rank == 0)], &mut leaders);
    let node = leaders.iter().take(leader[0] as usize).filter(|&&l| l == 1).count() as u32;
    // one id for the whole job, from rank 0
    let mut id = [0u8; 8];
    if rank == 0 {
        getrandom::fill(&mut id)
            .map_err(|e| Error::Bootstrap(format!("no randomness for the job id: {e}")))?;
    }
    world.process_at_rank(0).broadcast_into(&mut id[..]);
    drop(host);

    let mailbox = Arc::new(Mailbox::for_host(rank, size, local_size)?);
    let transport = Transport::start(Comm::new(proof, world.duplicate()), Arc::clone(&mailbox))?;
    // MPI's own receives poll forever; ours poll as long, up to 10 ms, when the host has a core
    // per rank, and nap at once otherwise (the host's cores: MPI launchers bind each rank to one)
    let online = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN).ok().flatten();
    let cores = online
        .map_or(1, |n| n.max(1) as usize)
        .max(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let spin = match std::env::var_os(crate::env::SPIN_US) {
        Some(_) => crate::env::spin(local_size)?,
        None if local_size <= cores => std::time::Duration::from_millis(10),
        None => std::time::Duration::ZERO,
    };
    let limits = native::Limits { spin, count_max: crate::env::mpi_count_max()? };
    let native = Native::new(proof, world, (0..size).collect(), 0, limits, transport.registry());
    let shared = Shared {
        engine: Engine::over_mpi(rank, size, mailbox, limit, transport),
        control: None,
        hostname,
        job_id: format!("mpi-{:016x}", u64::from_le_bytes(id)),
        local_rank,
        local_size,
        node,
        tracer: crate::trace::Tracer::from_env(rank),
        activity: Default::default(),
        helpers: Default::default(),
        check_collectives: crate::env::check_collectives(),
        mpi: Some(Universe(universe)),
    };
    Ok(Communicator::world(shared, rank, size).with_native(native))
}
