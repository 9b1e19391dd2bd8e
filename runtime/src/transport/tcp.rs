//! TCP, for processes on different hosts.

use super::Stream;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// How long a TCP connect may take before the peer counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Stream for TcpStream {
    fn try_clone_box(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
    fn shutdown(&self) -> io::Result<()> {
        TcpStream::shutdown(self, std::net::Shutdown::Both)
    }
}

/// Connects to `addr`, with latency-friendly options.
pub fn connect(addr: &SocketAddr) -> io::Result<Box<dyn Stream>> {
    let s = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)?;
    s.set_nodelay(true)?;
    Ok(Box::new(s))
}

/// Accepts the next connection on `listener`, with the same options as [`connect`].
pub fn accept(listener: &TcpListener) -> io::Result<Box<dyn Stream>> {
    let (s, _) = listener.accept()?;
    s.set_nodelay(true)?;
    Ok(Box::new(s))
}
