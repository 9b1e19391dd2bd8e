//! [`init`]: joining the job.

use crate::bootstrap;
use crate::communicator::{Communicator, Shared, World};
use crate::engine::Engine;
use crate::env::{self, JobEnv};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};

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
    let world = join();
    if world.is_err() {
        INITIALIZED.store(false, Ordering::SeqCst);
    }
    world
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into())
}

fn join() -> Result<World> {
    let limit = env::max_message()?;
    let job = JobEnv::from_env()?;
    if job.is_none()
        && let Some((var, n)) = env::foreign_launcher()
    {
        #[cfg(feature = "mpi")]
        return crate::mpi::join(limit, (var, n), hostname());
        // N copies each believing they are alone would be wrong, silently
        #[cfg(not(feature = "mpi"))]
        return Err(Error::Bootstrap(format!(
            "this process is one of {n} started by another launcher ({var} is set), but this program \
             was built without MPI support: start it with prun (prun -n {n} ...), or build it with \
             `--features mpi` to run on MPI"
        )));
    }
    let Some(job) = job else {
        let shared = Shared {
            engine: Engine::alone(limit),
            control: None,
            hostname: hostname(),
            job_id: format!("alone-{}", std::process::id()),
            local_rank: 0,
            local_size: 1,
            node: 0,
            tracer: None,
            activity: Default::default(),
            helpers: Default::default(),
            check_collectives: crate::env::check_collectives(),
            #[cfg(feature = "mpi")]
            mpi: None,
        };
        return Ok(Communicator::world(shared, 0, 1));
    };
    let (rank, size) = (job.rank, job.size);
    let (local_rank, local_size, job_id, node) =
        (job.local_rank, job.local_size, job.job_id.clone(), job.node);
    let activity = std::sync::Arc::new(crate::activity::Activity::default());
    let (engine, control) = bootstrap::join(job, limit, std::sync::Arc::clone(&activity))?;
    let tracer = crate::trace::Tracer::from_env(rank);
    let shared = Shared {
        engine,
        control: Some(control),
        hostname: hostname(),
        job_id,
        local_rank,
        local_size,
        node,
        tracer,
        activity,
        helpers: Default::default(),
        check_collectives: crate::env::check_collectives(),
        #[cfg(feature = "mpi")]
        mpi: None,
    };
    Ok(Communicator::world(shared, rank, size))
}
