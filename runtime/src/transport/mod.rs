//! Byte-stream transports between the processes of a job.
//!
//! An [`Endpoint`] names where a process listens; [`Listener`] accepts and [`connect`] opens
//! connections as boxed [`Stream`]s, so the layers above (authentication, framing, message
//! matching) are the same for every transport. Ranks on one host use Unix domain sockets
//! ([`unix`]); TCP ([`tcp`]) carries traffic between hosts. Shared memory and MPI replace the
//! whole point-to-point engine rather than the byte stream, and plug in above this module.

pub mod tcp;
pub mod unix;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Where a process of the job listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Endpoint {
    /// A Unix domain socket, on this host.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;

    /// Parses `unix:/path` or `tcp:host:port`.
    fn from_str(s: &str) -> Result<Endpoint, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("empty socket path".into());
            }
            Ok(Endpoint::Unix(PathBuf::from(path)))
        } else if let Some(addr) = s.strip_prefix("tcp:") {
            addr.parse().map(Endpoint::Tcp).map_err(|e| format!("bad TCP address {addr:?}: {e}"))
        } else {
            Err(format!("{s:?} is neither unix:PATH nor tcp:ADDR:PORT"))
        }
    }
}

/// A connected, reliable, ordered byte stream, with a file descriptor to wait on.
pub trait Stream: Read + Write + AsFd + Send + Sync {
    /// A second handle on the same connection (one thread reads while another writes).
    fn try_clone_box(&self) -> io::Result<Box<dyn Stream>>;
    /// Sets a timeout on reads; `None` blocks indefinitely.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Sets a timeout on writes; `None` blocks indefinitely.
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Shuts both directions down, waking a thread blocked on the other handle.
    fn shutdown(&self) -> io::Result<()>;
    /// The process at the other end, when the transport can tell (a Unix socket on this host);
    /// `None` otherwise.
    fn peer_pid(&self) -> Option<i32> {
        None
    }
}

/// Opens a connection to `endpoint`.
pub fn connect(endpoint: &Endpoint) -> io::Result<Box<dyn Stream>> {
    match endpoint {
        Endpoint::Unix(path) => unix::connect(path),
        Endpoint::Tcp(addr) => tcp::connect(addr),
    }
}

/// A listening socket of either kind.
pub enum Listener {
    /// A Unix domain socket; the file is removed when the listener is dropped.
    Unix(unix::UnixSocket),
    /// A TCP socket.
    Tcp(std::net::TcpListener),
}

impl Listener {
    /// Listens on `endpoint`; a Unix socket replaces a stale file of the same name.
    pub fn bind(endpoint: &Endpoint) -> io::Result<Listener> {
        match endpoint {
            Endpoint::Unix(path) => unix::UnixSocket::bind(path).map(Listener::Unix),
            Endpoint::Tcp(addr) => std::net::TcpListener::bind(addr).map(Listener::Tcp),
        }
    }

    /// The endpoint peers connect to (with the port the system chose, for TCP port 0).
    pub fn endpoint(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Unix(s) => Ok(Endpoint::Unix(s.path().to_path_buf())),
            Listener::Tcp(l) => l.local_addr().map(Endpoint::Tcp),
        }
    }

    /// Waits for the next connection.
    pub fn accept(&self) -> io::Result<Box<dyn Stream>> {
        match self {
            Listener::Unix(s) => s.accept(),
            Listener::Tcp(l) => tcp::accept(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_text_round_trip() {
        for text in ["unix:/tmp/x.sock", "tcp:127.0.0.1:4000", "tcp:[::1]:5"] {
            let e: Endpoint = text.parse().expect(text);
            assert_eq!(e.to_string(), text);
        }
        assert!("unix:".parse::<Endpoint>().is_err());
        assert!("http://x".parse::<Endpoint>().is_err());
        assert!("tcp:nohost".parse::<Endpoint>().is_err());
    }
}
