//! Unix domain sockets, for processes on one host.

use super::Stream;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Stream for UnixStream {
    fn try_clone_box(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }
    fn shutdown(&self) -> io::Result<()> {
        UnixStream::shutdown(self, std::net::Shutdown::Both)
    }
    fn peer_pid(&self) -> Option<i32> {
        nix::sys::socket::getsockopt(self, nix::sys::socket::sockopt::PeerCredentials).ok().map(|c| c.pid())
    }
}

/// Connects to the Unix socket at `path`.
///
/// The connection asks for a send buffer of [`SEND_BUFFER`] bytes; the kernel grants at most
/// `net.core.wmem_max` (208 KiB by default, often raised), and a refusal is no error.
pub fn connect(path: &Path) -> io::Result<Box<dyn Stream>> {
    let s = UnixStream::connect(path)?;
    let _ = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::SndBuf, &SEND_BUFFER);
    Ok(Box::new(s))
}

/// Send buffer asked for on every connection (the kernel doubles it for its bookkeeping): room
/// for a whole 1 MiB message.
///
/// A Unix socket queues at most its sender's send buffer; the default, 208 KiB, cuts a 1 MiB
/// message into five fills and drains, each a wake-up of the blocked writer and of the reader.
/// Where wake-ups are dear (a VM sending interrupts between virtual cores) that dominates: on
/// this 2-core VM with `wmem_max` at 4 MiB, a 1 MiB ping-pong took 410-500 us with the default
/// and 150-220 us with 2 MiB, a 1 MiB broadcast 350-450 us and 150-180 us. Larger is not
/// better: with 4 MiB, 8 ranks broadcast 16 MiB in 22-23 ms against 18-19 ms. The reader
/// threads drain connections eagerly, so the total a rank buffers does not grow.
pub const SEND_BUFFER: usize = 2 << 20;

/// A listening Unix socket that removes its file when dropped.
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl UnixSocket {
    /// Listens at `path`, replacing a stale socket file left there.
    pub fn bind(path: &Path) -> io::Result<UnixSocket> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(UnixSocket { listener: UnixListener::bind(path)?, path: path.to_path_buf() })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the next connection.
    pub fn accept(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.listener.accept()?.0))
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
