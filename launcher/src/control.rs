//! The launcher's control socket: ranks register their endpoints and ask for `abort` here.
//!
//! Every connection must pass the job's challenge-response handshake; strangers are dropped
//! (and mentioned with `-vv`). One thread per connection reads the rank's messages and turns
//! them into [`ControlEvent`]s for the job's event loop, which alone writes to the ranks.

use prun::auth::{self, Credentials, HANDSHAKE_TIMEOUT};
use prun::protocol::{self, CallAt, Peer, ToLauncher};
use prun::transport::{Listener, Stream};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

/// Longest the launcher waits to write to one rank's control connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a rank said on its control connection.
pub enum ControlEvent {
    /// The rank joined the job and listens at `peer`; `link` writes to it.
    Registered {
        /// The rank.
        rank: usize,
        /// Its host and where it listens.
        peer: Peer,
        /// The launcher's end of its control connection.
        link: Box<dyn Stream>,
    },
    /// A rank said what it is waiting for (for the hang report).
    Activity {
        /// The rank.
        rank: usize,
        /// What it does, in words.
        text: String,
        /// The collective call it waits in, if one.
        call: Option<CallAt>,
    },
    /// A dynamic map's root reported its progress.
    Progress {
        /// The map's call number.
        map: u32,
        /// Items done.
        done: u64,
        /// Items in all.
        total: u64,
    },
    /// The rank called `World::abort(code)`.
    Abort {
        /// The rank.
        rank: usize,
        /// The job's exit status it asks for.
        code: i32,
    },
}

/// Serves the control socket on `listener` in the background.
pub fn serve<E: Send + 'static>(
    listener: Listener,
    creds: Credentials,
    np: usize,
    events: Sender<E>,
    wrap: fn(ControlEvent) -> E,
    debug: bool,
) -> std::io::Result<()> {
    let creds = Arc::new(creds);
    std::thread::Builder::new().name("prun-control".into()).spawn(move || {
        loop {
            let Ok(stream) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let (creds, events) = (Arc::clone(&creds), events.clone());
            let _ = std::thread::Builder::new()
                .name("prun-control-conn".into())
                .spawn(move || connection(stream, &creds, np, &events, wrap, debug));
        }
    })?;
    Ok(())
}

fn connection<E>(
    mut stream: Box<dyn Stream>,
    creds: &Credentials,
    np: usize,
    events: &Sender<E>,
    wrap: fn(ControlEvent) -> E,
    debug: bool,
) {
    let refuse = |why: String| {
        if debug {
            eprintln!("prun: refused a control connection: {why}");
        }
    };
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let rank = match auth::server(&mut *stream, creds, |id| (id as usize) < np, |_| {}) {
        Ok(id) => id as usize,
        Err(auth::AuthError::Version { theirs }) => {
            // only the job's own ranks can reach this socket: a program of another prun (said
            // once, not by every rank)
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            eprintln!(
                "prun: a rank speaks prun protocol version {theirs}, this launcher version {}: the \
                 program was built against another version of the prun crate than this launcher; \
                 rebuild it against this prun, or start it with the prun launcher of its version",
                auth::PROTOCOL_VERSION
            );
            return;
        }
        Err(e) => return refuse(e.to_string()),
    };
    let peer = match protocol::recv::<ToLauncher>(&mut *stream) {
        Ok(Some(ToLauncher::Register { rank: r, peer, .. })) if r as usize == rank => peer,
        Ok(other) => return refuse(format!("rank {rank} did not register first: {other:?}")),
        Err(e) => return refuse(format!("rank {rank}: {e}")),
    };
    let _ = stream.set_read_timeout(None);
    let link = match stream.try_clone_box() {
        Ok(link) => link,
        Err(e) => return refuse(e.to_string()),
    };
    let _ = link.set_write_timeout(Some(WRITE_TIMEOUT));
    if events.send(wrap(ControlEvent::Registered { rank, peer, link })).is_err() {
        return;
    }
    while let Ok(Some(message)) = protocol::recv::<ToLauncher>(&mut *stream) {
        let event = match message {
            ToLauncher::Abort { code } => ControlEvent::Abort { rank, code },
            ToLauncher::Progress { map, done, total } => ControlEvent::Progress { map, done, total },
            ToLauncher::Activity { text, call } => ControlEvent::Activity { rank, text, call },
            ToLauncher::Register { .. } => continue,
        };
        if events.send(wrap(event)).is_err() {
            return;
        }
    }
}
