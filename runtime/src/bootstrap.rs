//! Joining a job: listen, meet the launcher, learn every rank's endpoint, then watch the
//! launcher for as long as the process lives.

use crate::activity::Activity;
use crate::auth::{self, Credentials, HANDSHAKE_TIMEOUT};
use crate::engine::Engine;
use crate::env::JobEnv;
use crate::error::{Error, Result};
use crate::mailbox::Mailbox;
use crate::protocol::{self, Peer, ToLauncher, ToRank};
use crate::transport::{self, Endpoint, Listener, Stream};
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

/// Exit status of a rank whose launcher vanished.
pub const EXIT_LAUNCHER_LOST: i32 = 1;

/// The rank's connection to its launcher.
pub(crate) struct Control {
    writer: Arc<Mutex<Box<dyn Stream>>>,
}

impl Control {
    /// Asks the launcher to end the job with `code`.
    pub fn abort(&self, code: i32) -> Result<()> {
        self.tell(&ToLauncher::Abort { code })
    }

    /// Reports a dynamic map's progress (for the launcher's progress bar).
    pub fn progress(&self, map: u32, done: u64, total: u64) -> Result<()> {
        self.tell(&ToLauncher::Progress { map, done, total })
    }

    fn tell(&self, message: &ToLauncher) -> Result<()> {
        tell(&self.writer, message)
    }
}

/// Sends one message to the launcher on the control connection.
fn tell(writer: &Mutex<Box<dyn Stream>>, message: &ToLauncher) -> Result<()> {
    let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
    protocol::send(&mut **w, message).map_err(|e| Error::Bootstrap(format!("cannot reach the launcher: {e}")))
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Bootstrap(format!("{what}: {e}"))
}

/// Joins the job described by `env`; returns the engine and the control connection.
pub(crate) fn join(env: JobEnv, limit: u64, activity: Arc<Activity>) -> Result<(Engine, Control)> {
    // before this rank's first thread starts, so that every one of them inherits the policy
    // and the binding
    crate::sched::batch_if_crowded(env.local_size);
    crate::affinity::bind_if_asked(env.rank, env.local_rank, env.local_size, &env.socket_dir);
    let creds = Arc::new(Credentials { job_id: env.job_id.clone(), secret: env.secret.clone() });
    let mailbox = Arc::new(Mailbox::for_host(env.rank, env.size, env.local_size)?);

    let path = env.socket_dir.join(format!("r{}.sock", env.rank));
    let mut listeners = vec![Endpoint::Unix(path)];
    if let Some(ip) = env.tcp_bind {
        listeners.push(Endpoint::Tcp(std::net::SocketAddr::new(ip, 0)));
    }
    let mut endpoints = Vec::new();
    mailbox.attach(crate::incoming::Incoming::new(limit)?);
    crate::incoming::start(Arc::clone(&mailbox))?;
    for at in listeners {
        let listener = Listener::bind(&at).map_err(|e| failed(&format!("cannot listen at {at}"), e))?;
        endpoints.push(listener.endpoint().map_err(|e| failed("cannot read the socket's address", e))?);
        crate::incoming::serve(listener, Arc::clone(&creds), Arc::clone(&mailbox), env.size)?;
    }
    let peer = Peer { node: env.node, endpoints, crowded: crate::env::crowded(env.local_size) };

    let reach =
        |e: &dyn std::fmt::Display| failed(&format!("cannot reach the launcher at {}", env.control), e);
    let mut control = transport::connect(&env.control).map_err(|e| reach(&e))?;
    control.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(|e| reach(&e))?;
    auth::client(&mut *control, &creds, env.rank as u32).map_err(|e| reach(&e))?;
    control.set_read_timeout(None).map_err(|e| reach(&e))?;
    let register = ToLauncher::Register { rank: env.rank as u32, pid: std::process::id(), peer };
    protocol::send(&mut *control, &register).map_err(|e| reach(&e))?;

    let peers = loop {
        match protocol::recv::<ToRank>(&mut *control).map_err(|e| reach(&e))? {
            Some(ToRank::Table { peers }) => break peers,
            Some(ToRank::RankExited { rank, how }) => mailbox.peer_exited(rank as usize, how),
            Some(ToRank::Report) => {}
            Some(ToRank::BootstrapFailed { reason }) => return Err(Error::Bootstrap(reason)),
            None => {
                return Err(Error::Bootstrap(
                    "the launcher closed the connection before the job started".into(),
                ));
            }
        }
    };
    if peers.len() != env.size {
        return Err(Error::Bootstrap(format!(
            "the launcher sent {} endpoints for a job of {} ranks",
            peers.len(),
            env.size
        )));
    }
    let node = env.node;
    let reader = control.try_clone_box().map_err(|e| reach(&e))?;
    let watched = Arc::clone(&mailbox);
    let rank = env.rank;
    let writer = Arc::new(Mutex::new(control));
    let answer = Arc::clone(&writer);
    std::thread::Builder::new()
        .name("prun-control".into())
        .spawn(move || watch_launcher(reader, &watched, rank, &answer, &activity))
        .map_err(|e| Error::io("starting the control thread", e))?;
    let engine = Engine::new(env.rank, node, creds, peers, mailbox, limit);
    Ok((engine, Control { writer }))
}

/// Relays the launcher's news to the mailbox; exits the process when the launcher is gone.
fn watch_launcher(
    mut reader: Box<dyn Stream>,
    mailbox: &Mailbox,
    rank: usize,
    writer: &Mutex<Box<dyn Stream>>,
    activity: &Activity,
) {
    loop {
        match protocol::recv::<ToRank>(&mut *reader) {
            Ok(Some(ToRank::RankExited { rank, how })) => mailbox.peer_exited(rank as usize, how),
            Ok(Some(ToRank::Report)) => {
                let (text, call) = activity.describe();
                let _ = tell(writer, &ToLauncher::Activity { text, call });
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    mailbox.launcher_lost();
    // stderr may be a pipe to a dead launcher or agent: a failed write must not stop the exit
    let _ = writeln!(
        std::io::stderr(),
        "prun: rank {rank}: lost the launcher (it exited or was killed); exiting"
    );
    std::process::exit(EXIT_LAUNCHER_LOST);
}
