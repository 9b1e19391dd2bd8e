//! Every environment variable prun uses, in one place.
//!
//! The launcher sets these for each rank; [`crate::init`] reads them. A program started without
//! them (no `PRUN_RANK`) runs as a world of one rank. Variables marked *user* may be set by the
//! user (for example with `prun -x NAME=VALUE`, or in the shell) to tune the runtime.
//!
//! | variable | set by | meaning |
//! | --- | --- | --- |
//! | `PRUN_RANK` | launcher | this rank's number, `0..PRUN_SIZE` |
//! | `PRUN_SIZE` | launcher | number of ranks in the job |
//! | `PRUN_LOCAL_RANK` | launcher | this rank's number among the ranks on its host, `0..PRUN_LOCAL_SIZE` |
//! | `PRUN_LOCAL_SIZE` | launcher | number of ranks on this rank's host |
//! | `PRUN_JOB_ID` | launcher | an opaque id, unique per job; connections of other jobs are refused |
//! | `PRUN_NODE_RANK` | launcher | index of this rank's host among the job's hosts |
//! | `PRUN_TCP_BIND` | launcher | in jobs spanning hosts: the address this rank listens on for ranks of other hosts |
//! | `PRUN_HOST` | launcher | the host name this rank was placed on (as written in the hostfile) |
//! | `PRUN_CONTROL` | launcher | address of the launcher's control socket, e.g. `unix:/tmp/prun-0-1a2b/control.sock` |
//! | `PRUN_SECRET` | launcher | the per-job secret (64 hex digits); proves membership, never sent on the wire |
//! | `PRUN_SOCKET_DIR` | launcher | a folder only the user can enter, where ranks on this host create their sockets |
//! | `PRUN_MAX_MESSAGE` | user | largest message a rank accepts, in bytes (default 1 GiB); larger ones are refused before allocation |
//! | `PRUN_DEBUG` | user | `1` prints the runtime's debug messages (refused connections, ...) to stderr |
//! | `PRUN_TRACE_DIR` | launcher | with `prun --trace FILE`: where each rank writes its trace events |
//! | `PRUN_SPIN_US` | user | microseconds a blocked receive polls before sleeping: its source's connection, which it reads itself, or else its mailbox (any source, or the connection busy; a receive posted for 16 KiB or more polls only its connection); also how long a send of a large message to a rank on the host polls for the receiver's answer (default 200 when the host has a core per rank, else 0; there waits for large messages poll as `PRUN_YIELD_US` says) |
//! | `PRUN_YIELD_US` | user | where the host runs more ranks than it has cores: microseconds a wait for a large message (a receive of 64 KiB or more, reading its source's connection, or a large send's wait for its receiver's answer) polls before sleeping, giving its core to any other thread that can run between polls (default 300; `0` sleeps at once). Elsewhere such waits poll as `PRUN_SPIN_US` says |
//! | `PRUN_CROWDED` | user | `1` or `0`: whether this host counts as running more ranks than it has cores (default: it does when `PRUN_LOCAL_SIZE` exceeds its cores); if any host does, short collectives take the flat algorithms made for that |
//! | `PRUN_SCHED_BATCH` | user | `1` or `0`: whether each rank's threads run under Linux's `SCHED_BATCH` scheduling policy (the default policy and nice value, without a woken thread preempting the one that woke it); default: they do where the host runs more ranks than it has cores (`PRUN_CROWDED`). Set in `prun::init`, for the thread that calls it and every thread started after it |
//! | `PRUN_BIND` | user | `core` or `hwthread`: bind each rank, and every thread it starts, to one core (or hardware thread) of those it may run on, local rank `i` to the `i % n`-th of `n`, round robin (`prun --bind-to` sets it); `auto` (what `prun` sets unless told otherwise): to a core where the host runs more of the job's ranks than it has CPUs, a power of two of them, as many per CPU and at most four, and `prun` unbinds them again as soon as other work loads the host's CPUs; `none` or unset: no binding. Set in `prun::init`, before the rank's own threads start |
//! | `PRUN_REPORT_BINDINGS` | user | `1`: each rank prints, to its stderr as it starts, the CPUs it is bound to or may run on (`prun --report-bindings` sets it) |
//! | `PRUN_CHECK_COLLECTIVES` | user | `1`: every collective call first checks that every rank of the communicator makes the same call (operation, root, buffer length), so that ranks that disagree get an error even where the call would have ended without one (two ranks each believing it is a broadcast's root); costs a barrier per call. Set it for every rank (`prun --check-collectives` does). On the MPI backend it checks the collectives prun runs itself, not MPI's own |
//! | `PRUN_MPI_COUNT_MAX` | user | on the MPI backend, the largest count or offset in bytes prun hands MPI's `v` collectives (default and at most `2^31 - 1`, MPI's `int`), the same on every rank: beyond it `alltoallv_into` and `allgatherv_into` run prun's own algorithms over MPI's point-to-point (every rank agreeing), and `gatherv_into` and `scatterv_into` fail on each rank whose own block, or (on the root) whose blocks' offsets, exceed it, with an error that says so (the other ranks then end with the job); for an MPI library that mishandles large counts |
//! | `PRUN_SINGLE_COPY` | user | `1` or `0`: whether large messages (64 KiB or more) between ranks on one host are copied once, out of the sender's memory (`process_vm_readv`; where ranks share cores from 1 MiB, below it through a pipe the sender lends its pages to, as where the receiver may not read the sender's memory), instead of through the socket (copied twice); default: they do when the host has a core for each of its ranks, and where ranks share cores only from 1 MiB for a program's own sends and 4 MiB for a collective's (from 128 KiB in exchanges, from 64 KiB when a rank sends to several at once); on a host with too many ranks for a lending pipe between every two (17 or more under the kernel's default quota of pipe pages), only messages read out of memory, from 1 MiB (a scatter's blocks from 64 KiB, a collective's exchange steps from 128 KiB). Where the system forbids one process to read another's memory (Yama's `ptrace_scope` 1, a seccomp profile), messages that would be read out of memory are written to the socket (each receiver says what it can take when it accepts a connection: `lend::Access`) |

use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::transport::Endpoint;
use std::path::PathBuf;

/// `PRUN_RANK`: this rank's number.
pub const RANK: &str = "PRUN_RANK";
/// `PRUN_SIZE`: number of ranks in the job.
pub const SIZE: &str = "PRUN_SIZE";
/// `PRUN_LOCAL_RANK`: this rank's number among the ranks on its host.
pub const LOCAL_RANK: &str = "PRUN_LOCAL_RANK";
/// `PRUN_LOCAL_SIZE`: number of ranks on this rank's host.
pub const LOCAL_SIZE: &str = "PRUN_LOCAL_SIZE";
/// `PRUN_JOB_ID`: the job's opaque id.
pub const JOB_ID: &str = "PRUN_JOB_ID";
/// `PRUN_NODE_RANK`: index of the rank's host among the job's hosts.
pub const NODE_RANK: &str = "PRUN_NODE_RANK";
/// `PRUN_TCP_BIND`: the address to listen on for ranks of other hosts (multi-host jobs only).
pub const TCP_BIND: &str = "PRUN_TCP_BIND";
/// `PRUN_HOST`: the host name the rank was placed on.
pub const HOST: &str = "PRUN_HOST";
/// `PRUN_CONTROL`: address of the launcher's control socket.
pub const CONTROL: &str = "PRUN_CONTROL";
/// `PRUN_SECRET`: the per-job secret, as hex.
pub const SECRET: &str = "PRUN_SECRET";
/// `PRUN_SOCKET_DIR`: the folder where ranks on this host create their sockets.
pub const SOCKET_DIR: &str = "PRUN_SOCKET_DIR";
/// The file the launcher creates in [`SOCKET_DIR`] to tell the ranks of the host that were
/// bound by default (`PRUN_BIND=auto`) to let go of their cores: other work loads the host.
pub const UNBIND_FLAG: &str = "unbind";
/// The named pipe in [`SOCKET_DIR`] whose writer, coming and going, wakes the ranks of the host
/// bound by default to look for [`UNBIND_FLAG`] (each such rank makes it if it is not there).
pub const UNBIND_FIFO: &str = "unbind.fifo";
/// `PRUN_MAX_MESSAGE`: the largest message accepted, in bytes.
pub const MAX_MESSAGE: &str = "PRUN_MAX_MESSAGE";
/// `PRUN_DEBUG`: `1` turns on the runtime's debug messages.
pub const DEBUG: &str = "PRUN_DEBUG";

/// `PRUN_CROWDED`: `1` or `0`, whether this host counts as running more ranks than it has cores.
pub const CROWDED: &str = "PRUN_CROWDED";

/// `PRUN_MPI_COUNT_MAX`: on the MPI backend, the largest count or offset in bytes handed to MPI's
/// `v` collectives.
pub const MPI_COUNT_MAX: &str = "PRUN_MPI_COUNT_MAX";

/// `PRUN_SCHED_BATCH`: `1` or `0`, whether each rank's threads run under `SCHED_BATCH`.
pub const SCHED_BATCH: &str = "PRUN_SCHED_BATCH";

/// `PRUN_BIND`: `core`, `hwthread`, `auto` or `none`, what each rank is bound to (set by `prun
/// --bind-to`; `prun` sets `auto` by default).
pub const BIND: &str = "PRUN_BIND";

/// `PRUN_REPORT_BINDINGS`: `1` makes each rank print where it may run as it starts (set by
/// `prun --report-bindings`).
pub const REPORT_BINDINGS: &str = "PRUN_REPORT_BINDINGS";

/// `PRUN_TRACE_DIR`: where ranks write trace events (set by `prun --trace`).
pub const TRACE_DIR: &str = "PRUN_TRACE_DIR";

/// `PRUN_SPIN_US`: how long a blocked receive polls before sleeping, in microseconds.
pub const SPIN_US: &str = "PRUN_SPIN_US";
/// `PRUN_YIELD_US`: how long a wait for a large message polls, yielding its core between polls,
/// where ranks share cores.
pub const YIELD_US: &str = "PRUN_YIELD_US";
/// `PRUN_SINGLE_COPY`: `1` or `0`, whether large messages between ranks on one host are lent
/// through a pipe (copied once) rather than written to their socket (copied twice).
pub const SINGLE_COPY: &str = "PRUN_SINGLE_COPY";

/// `PRUN_CHECK_COLLECTIVES`: `1` makes every collective call check first that every rank of
/// the communicator makes the same call.
pub const CHECK_COLLECTIVES: &str = "PRUN_CHECK_COLLECTIVES";

/// Every variable the launcher sets for a rank (the others are the user's to set).
pub const LAUNCHER_SET: &[&str] = &[
    RANK, SIZE, LOCAL_RANK, LOCAL_SIZE, NODE_RANK, TCP_BIND, JOB_ID, HOST, CONTROL, SECRET, SOCKET_DIR,
    TRACE_DIR,
];

/// Default for [`MAX_MESSAGE`]: 1 GiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 1 << 30;

/// What a rank learns from its environment.
#[derive(Debug)]
pub(crate) struct JobEnv {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    pub local_size: usize,
    pub job_id: String,
    pub control: Endpoint,
    pub secret: Secret,
    pub socket_dir: PathBuf,
    pub node: u32,
    pub tcp_bind: Option<std::net::IpAddr>,
}

fn var(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| {
        Error::Bootstrap(format!(
            "{name} is not set although {RANK} is: start the program with prun, or unset {RANK} to run it alone"
        ))
    })
}

fn number(name: &str) -> Result<usize> {
    let text = var(name)?;
    text.trim().parse().map_err(|_| Error::Bootstrap(format!("{name}={text:?} is not a number")))
}

/// The largest message this process accepts: [`MAX_MESSAGE`] or its default.
pub(crate) fn max_message() -> Result<u64> {
    match std::env::var(MAX_MESSAGE) {
        Err(_) => Ok(DEFAULT_MAX_MESSAGE),
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| Error::Bootstrap(format!("{MAX_MESSAGE}={text:?} is not a number of bytes"))),
    }
}

/// The largest count or offset in bytes handed to MPI's `v` collectives: [`MPI_COUNT_MAX`],
/// at most MPI's `int` (its default).
#[cfg(feature = "mpi")]
pub(crate) fn mpi_count_max() -> Result<usize> {
    let most = i32::MAX as usize;
    match std::env::var(MPI_COUNT_MAX) {
        Err(_) => Ok(most),
        Ok(text) => text.trim().parse::<usize>().map(|n| n.min(most)).map_err(|_| {
            Error::Bootstrap(format!("{MPI_COUNT_MAX}={text:?} is not a number of bytes (at most {most})"))
        }),
    }
}

/// Whether this host runs more ranks (`local_size`) than it has cores (as far as this process
/// may use them), unless [`CROWDED`] says (`1` or `0`; anything else is ignored).
pub(crate) fn crowded(local_size: usize) -> bool {
    match std::env::var(CROWDED).as_deref().map(str::trim) {
        Ok("1") => true,
        Ok("0") => false,
        _ => local_size > std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// What each rank is to be bound to ([`crate::affinity`]) on a host running `local_size` of
/// the job's ranks, and whether by default: as [`BIND`] says (`core` or `hwthread`; `auto`: a
/// core where [`crate::affinity::auto_binds`] says so, marked `true`); `None` for `none`, unset,
/// or anything else (ignored, with a debug message).
pub(crate) fn bind(local_size: usize) -> Option<(crate::affinity::Unit, bool)> {
    use crate::affinity::Unit;
    match std::env::var(BIND).as_deref().map(str::trim) {
        Ok("core") => Some((Unit::Core, false)),
        Ok("hwthread") => Some((Unit::Hwthread, false)),
        Ok("auto") => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            crate::affinity::auto_binds(crowded(local_size), local_size, cpus).then_some((Unit::Core, true))
        }
        Ok("none") | Err(_) => None,
        Ok(other) => {
            crate::log::debug!("{BIND}={other:?} is none of core, hwthread, auto, none: not binding");
            None
        }
    }
}

/// Whether each rank reports its binding as it starts ([`REPORT_BINDINGS`] is `1`).
pub(crate) fn report_bindings() -> bool {
    std::env::var(REPORT_BINDINGS).is_ok_and(|v| v.trim() == "1")
}

/// Whether this rank's threads should run under `SCHED_BATCH` ([`crate::sched`]): as
/// [`SCHED_BATCH`] says (`1` or `0`; anything else is ignored), by default where the host runs
/// more of the job's `local_size` ranks than it has cores ([`crowded`]).
pub(crate) fn sched_batch(local_size: usize) -> bool {
    match std::env::var(SCHED_BATCH).as_deref().map(str::trim) {
        Ok("1") => true,
        Ok("0") => false,
        _ => crowded(local_size),
    }
}

/// Microseconds of polling before sleeping, where every rank has a core: long enough to cover a
/// 1 MiB message's copy and its answer (2 ranks on 2 cores, medians of seven alternating runs of
/// collbench against 50 us: 1 MiB ping-pong 81 against 139 us, broadcast 85 against 116,
/// allreduce 155 against 245, scatter 110 against 157; barrier 11 against 16; 64 KiB rows within
/// the noise), and still brief: a wait that outlasts it sleeps.
pub(crate) const DEFAULT_SPIN_US: u64 = 200;

/// How long a blocked receive polls before sleeping: [`SPIN_US`], or [`DEFAULT_SPIN_US`] when
/// this host has a core for each of its `local_size` ranks and nothing otherwise (polling on an
/// oversubscribed host would take the core a peer needs to send).
pub(crate) fn spin(local_size: usize) -> Result<std::time::Duration> {
    let default = if crowded(local_size) { 0 } else { DEFAULT_SPIN_US };
    micros(SPIN_US, default)
}

/// The duration in microseconds the variable `name` gives, `default` when it is not set.
fn micros(name: &str, default: u64) -> Result<std::time::Duration> {
    let micros = match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| Error::Bootstrap(format!("{name}={text:?} is not a number of microseconds")))?,
        Err(_) => default,
    };
    Ok(std::time::Duration::from_micros(micros))
}

/// Where ranks share cores, microseconds a wait for a large message polls before it sleeps,
/// yielding its core between polls ([`YIELD_US`]).
///
/// The rank that waits gives the core to any other that can run, as Open MPI's waiting ranks
/// do, while a message that comes within the time needs no wake-up: no switch back, and on a
/// virtual machine no interrupt sent to a halted virtual CPU, which costs tens of microseconds
/// there. Measured with 8 ranks on 2 cores (collbench, eight alternating runs against sleeping
/// at once): 64 KiB ping-pong 24.5 against 29.5 us, allreduce 255 against 279, allgather 291
/// against 351; 1 MiB allreduce 1.51 against 1.71 ms, ping-pong and allgather within 1%; small
/// rows unchanged (their waits sleep at once: polling for them, yielding or not, made the 8-byte
/// ping-pong 1.3-1.5 times slower, its pair's cores taken by the six ranks polling in the
/// barrier). 100 us did less (1 MiB allreduce 1.72 against 1.55 ms at 300), 1000 us no more.
pub(crate) const DEFAULT_YIELD_US: u64 = 300;

/// Smallest receive, in bytes, that polls as [`large_waits`] says (where ranks share cores).
pub(crate) const LARGE_WAIT_MIN: u64 = 64 << 10;

/// How a wait for a large message polls before it sleeps where the host runs more of the job's
/// `local_size` ranks than it has cores ([`crowded`]): for [`YIELD_US`] (default
/// [`DEFAULT_YIELD_US`]), yielding the core between polls. `None` elsewhere, where such waits
/// poll as every receive does ([`spin`]).
pub(crate) fn large_waits(local_size: usize) -> Result<Option<crate::mailbox::Polling>> {
    // read (and checked) whether it is used or not
    let time = micros(YIELD_US, DEFAULT_YIELD_US)?;
    Ok(crowded(local_size).then_some(crate::mailbox::Polling { time, yields: true }))
}

/// Whether large messages between ranks on one host are lent through a pipe ([`crate::lend`]):
/// `Some` when [`SINGLE_COPY`] says (`1` or `0`), `None` to decide by the host. Lending wins
/// where the ranks have a core each (2 ranks on 2 cores, 1 MiB: allgather 327 against 378 us,
/// allreduce 349 against 420, 64 KiB broadcast and scatter in half the time) and loses where
/// they share cores, since each message waits for its receiver to run and copy it (8 ranks on
/// 2 cores, 64 KiB gather 140 against 51 us, allreduce 667 against 492).
pub(crate) fn single_copy() -> Option<bool> {
    match std::env::var(SINGLE_COPY).as_deref().map(str::trim) {
        Ok("1") => Some(true),
        Ok("0") => Some(false),
        _ => None,
    }
}

/// Whether [`CHECK_COLLECTIVES`] asks for collective calls to be checked.
pub(crate) fn check_collectives() -> bool {
    std::env::var(CHECK_COLLECTIVES).is_ok_and(|v| v.trim() == "1")
}

/// Whether [`DEBUG`] asks for debug messages.
pub(crate) fn debug_enabled() -> bool {
    std::env::var(DEBUG).is_ok_and(|v| v == "1")
}

/// The MPI (or Slurm step) launcher that started this process with others, if one did: its
/// variable and the number of processes it started (with the `mpi` feature, an MPI launcher
/// counts even for one process).
pub(crate) fn foreign_launcher() -> Option<(&'static str, usize)> {
    // an MPI launcher's own variables mean MPI even for one rank; Slurm's are also set for
    // one task outside any MPI
    const MPI: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"];
    #[cfg(feature = "mpi")]
    if let Some(found) =
        MPI.into_iter().find_map(|name| Some((name, std::env::var(name).ok()?.trim().parse().ok()?)))
    {
        return Some(found);
    }
    MPI.into_iter().chain(["SLURM_STEP_NUM_TASKS"]).find_map(|name| {
        let n: usize = std::env::var(name).ok()?.trim().parse().ok()?;
        (n > 1).then_some((name, n))
    })
}

impl JobEnv {
    /// Reads the job's environment; `None` when the program was not started by prun.
    pub fn from_env() -> Result<Option<JobEnv>> {
        if std::env::var_os(RANK).is_none() {
            return Ok(None);
        }
        let rank = number(RANK)?;
        let size = number(SIZE)?;
        let local_rank = number(LOCAL_RANK)?;
        let local_size = number(LOCAL_SIZE)?;
        if rank >= size || local_rank >= local_size {
            return Err(Error::Bootstrap(format!(
                "inconsistent environment: {RANK}={rank}, {SIZE}={size}, {LOCAL_RANK}={local_rank}, {LOCAL_SIZE}={local_size}"
            )));
        }
        let control = var(CONTROL)?;
        let control = control.parse().map_err(|e| Error::Bootstrap(format!("{CONTROL}={control:?}: {e}")))?;
        let secret = Secret::from_hex(&var(SECRET)?)
            .ok_or_else(|| Error::Bootstrap(format!("{SECRET} is not 64 hex digits")))?;
        Ok(Some(JobEnv {
            rank,
            size,
            local_rank,
            local_size,
            job_id: var(JOB_ID)?,
            control,
            secret,
            socket_dir: PathBuf::from(var(SOCKET_DIR)?),
            node: match std::env::var(NODE_RANK) {
                Ok(n) => n
                    .trim()
                    .parse()
                    .map_err(|_| Error::Bootstrap(format!("{NODE_RANK}={n:?} is not a number")))?,
                Err(_) => 0,
            },
            tcp_bind: match std::env::var(TCP_BIND) {
                Ok(a) => Some(
                    a.trim()
                        .parse()
                        .map_err(|_| Error::Bootstrap(format!("{TCP_BIND}={a:?} is not an IP address")))?,
                ),
                Err(_) => None,
            },
        }))
    }
}
