//! Large messages between ranks on one host, copied once: the sender lends the payload's pages
//! to a pipe (`vmsplice`), and the receiver copies them out of it into their destination, where
//! a socket copies every byte twice (into the kernel and out of it). Open MPI and MPICH copy
//! once over shared memory the same way (from the sender's memory by cross-memory attach).
//! On by default; `PRUN_SINGLE_COPY=0` turns it off (see [`crate::env`]).
//!
//! Each sender keeps one pipe per receiver on its host ([`Pipe`], made at the first large
//! message), of up to [`LEND_MAX`] bytes (less when the host runs many ranks: [`pipe_size`]
//! keeps the pipes within the kernel's quota for one user); a message that fits in it is
//! lent, a larger one written (the pipe then takes several rounds, and measured slower than
//! the socket from 4 MiB on). The sender puts the payload's pages into its pipe, then writes a
//! [`KIND_LEND`] frame on the connection: the usual header (context, tag, payload length), then
//! its process id and the pipe's file descriptor number. It then waits on the connection for
//! one byte: [`READ`] when the receiver has copied the payload out of the pipe, or [`SEND`]
//! when it could not open the pipe (the connection is not a Unix socket to the process that
//! names it, or `/proc` refused), after which the sender writes the payload on the connection
//! as it would have, and stops lending to that receiver. Either way the send returns once the
//! payload is safe: the pipe refers to the sender's pages, not to copies, so the caller may
//! reuse its buffer only once they are read. A send still never waits for the receiving
//! program: the receiver's progress thread copies the payload into a vector when no receive is
//! posted for it, and a posted receive copies it straight into its buffer.
//!
//! The receiver opens the sender's pipe as `/proc/PID/fd/FD`, once per connection, after
//! checking that the process id is the one at the other end of the Unix socket
//! (`SO_PEERCRED`), so a peer can only make it read a pipe of its own.
//!
//! Why a pipe and not cross-memory attach (`process_vm_readv`, what the first version used):
//! on the virtual machine this was measured on, the latter copied 1 MiB in 120-200 us, against
//! 80-190 us for a pipe lent 1 MiB and read, and 200-290 us for a Unix socket (a C program, one
//! way with a one-byte answer); two processes exchanging 1 MiB at once: 125-185 us by pipes,
//! 200-290 us by a socket.

use crate::transport::Stream;
use crate::wire::{HEADER_LEN, Header, KIND_LEND};
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, vmsplice};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::fs::File;
use std::io::{self, IoSlice, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};

/// Messages of at least this many bytes to a rank on this host are lent rather than written.
pub(crate) const LEND_MIN: usize = 64 * 1024;
/// The pipe size a sender asks for, and so the largest message it lends.
pub(crate) const LEND_MAX: usize = 1 << 20;
/// Largest lent message whose sender polls for the receiver's answer before it sleeps.
const SPIN_MAX: usize = 256 * 1024;
/// Most pieces one lent message may lie in (one `vmsplice` takes up to 1024).
pub(crate) const MAX_PIECES: usize = 64;
/// The receiver's answer: the payload was read from the pipe.
const READ: u8 = 1;
/// The receiver's answer: it could not read the pipe; the sender writes the payload.
const SEND: u8 = 2;

/// A sender's pipe to one receiver.
pub(crate) struct Pipe {
    /// The end the receiver opens (through `/proc`); the sender only keeps it open.
    read: OwnedFd,
    write: OwnedFd,
    /// How many bytes it holds: the longest message lent through it (a message whose pieces
    /// start mid-page takes a page more, which waits for the receiver to read the first).
    capacity: usize,
}

impl Pipe {
    /// A new pipe of up to `size` bytes (see [`pipe_size`]): less when the user's pipes are
    /// over the kernel's quota after all, and then only shorter messages are lent.
    pub fn new(size: usize) -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // refused over the quota or above `/proc/sys/fs/pipe-max-size`: the pipe keeps its size
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(i32::try_from(size).unwrap_or(i32::MAX)));
        let capacity = usize::try_from(fcntl(&write, FcntlArg::F_GETPIPE_SZ)?).unwrap_or(0);
        Ok(Pipe { read, write, capacity })
    }

    /// Whether a message of `len` bytes fits.
    pub fn fits(&self, len: usize) -> bool {
        len <= self.capacity
    }
}

/// The size of each lending pipe when `local` ranks share a host, or `None` when they are too
/// many to lend at all: up to [`LEND_MAX`], and all of the host's pipes (one per pair of ranks)
/// within half the pages the kernel lets one user's pipes take
/// (`/proc/sys/fs/pipe-user-pages-soft`; past it, every new pipe of the user's, this job's or
/// any other program's, gets two pages).
pub(crate) fn pipe_size(local: usize) -> Option<usize> {
    let pages: usize = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(16384);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096);
    let pairs = local.saturating_mul(local.saturating_sub(1)).max(1);
    let share = if pages == 0 { LEND_MAX } else { pages.saturating_mul(page as usize) / 2 / pairs };
    // a power of two, as the kernel rounds to one anyway
    let size = match share.min(LEND_MAX) {
        0 => 0,
        s => 1 << s.ilog2(),
    };
    (size >= 2 * LEND_MIN).then_some(size)
}

/// A pipe a receiver opened, and whose it is.
#[derive(Clone)]
pub(crate) struct Lent {
    /// The sender's process id and the pipe's descriptor there.
    owner: (i32, i32),
    /// The pipe; `None` when it could not be opened.
    pipe: Option<Arc<File>>,
}

/// The pipe a connection's sender lends through, once opened, so that it is opened once.
#[derive(Default)]
pub(crate) struct Opened(Mutex<Option<Lent>>);

/// Lends `parts` (no more than `pipe` holds, [`LEND_MIN`] bytes or more in all) to the receiver
/// at the other end of `stream`, writing them instead when it cannot read them. Returns whether
/// the receiver read them from the pipe; after `false` or an error, `pipe` may still hold some
/// of them and must not be used again. Polls for the answer for up to `spin` before sleeping.
pub(crate) fn send(
    stream: &mut dyn Stream,
    spin: std::time::Duration,
    pipe: &Pipe,
    context: u64,
    tag: u32,
    parts: &[&[u8]],
) -> io::Result<bool> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if !pipe.fits(len) || parts.len() > MAX_PIECES {
        return Err(io::Error::other("a lent message larger than its pipe, or in too many pieces"));
    }
    let header = Header { kind: KIND_LEND, context, tag, len: len as u64 };
    let mut frame = Vec::with_capacity(HEADER_LEN + 8);
    frame.extend_from_slice(&header.encode());
    frame.extend_from_slice(&std::process::id().to_le_bytes());
    frame.extend_from_slice(&pipe.read.as_raw_fd().to_le_bytes());
    let mut slices: Vec<IoSlice<'_>> =
        parts.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)).collect();
    let mut pages = &mut slices[..];
    let mut announced = false;
    loop {
        // into the pipe, which is empty (every message before was read whole), as much as fits:
        // all of it unless its pieces start mid-page and it is nearly as large as the pipe
        while !pages.is_empty() {
            match vmsplice(&pipe.write, pages, SpliceFFlags::SPLICE_F_NONBLOCK) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut pages, n),
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if !announced {
            stream.write_all(&frame)?;
            stream.flush()?;
            announced = true;
        }
        if pages.is_empty() {
            break;
        }
        // the rest as the receiver makes room; or its answer, should it refuse the pipe
        let mut fds = [
            PollFd::new(pipe.write.as_fd(), PollFlags::POLLOUT),
            PollFd::new(stream.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if fds[1].any() != Some(false) {
            break;
        }
    }
    let mut answer = [0u8];
    // (the receiver copies 256 KiB in about 15 us here; a larger payload keeps it longer than
    // a poll is worth)
    if !spin.is_zero() && len <= SPIN_MAX {
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
        let _ = crate::mailbox::poll_then_sleep(&mut fds, spin);
    }
    stream.read_exact(&mut answer)?;
    match answer[0] {
        READ if pages.is_empty() => Ok(true),
        SEND => {
            for p in parts {
                stream.write_all(p)?;
            }
            stream.flush()?;
            Ok(false)
        }
        other => Err(io::Error::other(format!("answer {other} to a lent message"))),
    }
}

/// Reads the description that follows a [`KIND_LEND`] header and finds the pipe it names,
/// opening it unless `opened` holds it already; a pipe that cannot be opened (or that is not
/// the socket's peer's) gives a [`Lent`] that [`receive`] refuses.
pub(crate) fn read(stream: &mut dyn Stream, opened: &Opened) -> io::Result<Lent> {
    let mut raw = [0u8; 8];
    stream.read_exact(&mut raw)?;
    let word = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let owner = (word(&raw[..4]), word(&raw[4..]));
    let mut cached = opened.0.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(lent) = cached.as_ref().filter(|l| l.owner == owner) {
        return Ok(lent.clone());
    }
    let pipe = (stream.peer_pid() == Some(owner.0))
        .then(|| File::open(format!("/proc/{}/fd/{}", owner.0, owner.1)).ok())
        .flatten()
        .filter(|f| {
            use std::os::unix::fs::FileTypeExt;
            f.metadata().is_ok_and(|m| m.file_type().is_fifo())
        })
        .map(Arc::new);
    let lent = Lent { owner, pipe };
    if lent.pipe.is_some() {
        *cached = Some(lent.clone());
    }
    Ok(lent)
}

/// Whether the lent payload can be read (else the sender is asked to write it).
pub(crate) fn readable(lent: &Lent) -> bool {
    lent.pipe.is_some()
}

/// Copies the next bytes of a lent payload out of its pipe into `into`; false when the pipe
/// cannot be read or failed (the sender died).
pub(crate) fn pull(lent: &Lent, into: &mut [&mut [u8]]) -> bool {
    let Some(pipe) = &lent.pipe else { return false };
    into.iter_mut().all(|b| (&**pipe).read_exact(b).is_ok())
}

/// Finishes receiving a lent payload into `into` (whose lengths add up to the payload's): its
/// first bytes are `prefix` (read before), the rest comes out of the pipe, and the sender is
/// told; if the pipe cannot be read, the sender is asked for the bytes and the whole payload is
/// read from `stream` instead.
pub(crate) fn receive(
    stream: &mut dyn Stream,
    lent: &Lent,
    prefix: &[u8],
    into: &mut [&mut [u8]],
) -> io::Result<()> {
    let total: usize = into.iter().map(|b| b.len()).sum();
    if prefix.len() > total {
        return Err(io::Error::other("a payload longer than its receive"));
    }
    if !readable(lent) {
        refuse(stream)?;
        for b in into.iter_mut() {
            stream.read_exact(b)?;
        }
        return Ok(());
    }
    // the prefix into the front of `into`, and the rest out of the pipe
    let mut rest: Vec<&mut [u8]> = Vec::with_capacity(into.len());
    let mut copied = 0;
    for b in into.iter_mut() {
        let n = (prefix.len() - copied).min(b.len());
        b[..n].copy_from_slice(&prefix[copied..copied + n]);
        copied += n;
        rest.push(&mut b[n..]);
    }
    if !pull(lent, &mut rest) {
        return Err(io::Error::other("the sender's pipe failed mid-message"));
    }
    accept(stream)
}

/// Tells the sender at the other end of `stream` that its lent payload could not be read, so
/// that it writes it.
pub(crate) fn refuse(stream: &mut dyn Stream) -> io::Result<()> {
    stream.write_all(&[SEND])?;
    stream.flush()
}

/// Tells the sender at the other end of `stream` that its lent payload was read.
pub(crate) fn accept(stream: &mut dyn Stream) -> io::Result<()> {
    stream.write_all(&[READ])?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::read_header;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    /// One end lends, the other receives; returns what arrived and whether it was read from
    /// the pipe. `forge` changes the frame's process id.
    fn exchange(payload: &[&[u8]], forge: Option<u32>) -> (Vec<u8>, bool) {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        let pipe = Pipe::new(LEND_MAX).expect("pipe");
        std::thread::scope(|s| {
            let sender = s.spawn(|| match forge {
                // a frame by hand, naming another process's pipe
                Some(pid) => {
                    let len: usize = payload.iter().map(|p| p.len()).sum();
                    let h = Header { kind: KIND_LEND, context: 7, tag: 3, len: len as u64 };
                    let mut f = h.encode().to_vec();
                    f.extend_from_slice(&pid.to_le_bytes());
                    f.extend_from_slice(&0i32.to_le_bytes());
                    a.write_all(&f).expect("write");
                    let mut answer = [0u8];
                    a.read_exact(&mut answer).expect("answer");
                    assert_eq!(answer[0], SEND);
                    payload.iter().for_each(|p| a.write_all(p).expect("bytes"));
                    false
                }
                None => send(&mut a, std::time::Duration::ZERO, &pipe, 7, 3, payload).expect("send"),
            });
            let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
            assert_eq!((header.kind, header.context, header.tag), (KIND_LEND, 7, 3));
            let lent = read(&mut b, &Opened::default()).expect("description");
            let mut data = vec![0u8; header.len as usize];
            // out of the pipe: its first 2 bytes pulled first, as the progress thread does
            // before a receive is posted; the rest into two slices
            let mut prefix = Vec::new();
            if forge.is_none() {
                prefix = vec![0u8; 2];
                assert!(readable(&lent) && pull(&lent, &mut [&mut prefix]), "pull the prefix");
            }
            let (front, back) = data.split_at_mut(3);
            receive(&mut b, &lent, &prefix, &mut [front, back]).expect("receive");
            let read = sender.join().expect("sender");
            (data, read)
        })
    }

    #[test]
    fn pipes_shrink_with_the_ranks_of_a_host_and_stop_at_a_quota() {
        let quota: usize = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
            .expect("quota")
            .trim()
            .parse()
            .expect("pages");
        if quota == 0 {
            assert_eq!(pipe_size(1000), Some(LEND_MAX));
            return;
        }
        let sizes: Vec<Option<usize>> = [1, 2, 8, 16, 64, 1000].into_iter().map(pipe_size).collect();
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        assert!(sizes[0].is_some_and(|s| s <= LEND_MAX && s.is_power_of_two()));
        assert_eq!(sizes[5], None, "1000 ranks' pipes would take {quota} pages");
        // every pipe of the host together within half the quota
        for (local, size) in [1usize, 2, 8, 16, 64].into_iter().zip(&sizes) {
            let total = size.unwrap_or(0) * local * (local - 1);
            assert!(total <= quota * 4096 / 2, "{local} ranks: {total} bytes of pipes");
        }
    }

    #[test]
    fn a_lent_payload_is_read_from_the_pipe() {
        let (x, y) = (vec![1u8; 100_000], vec![2u8; 5]);
        let (data, read) = exchange(&[&x, &[], &y], None);
        assert!(read, "read from the pipe");
        assert_eq!(data.len(), 100_005);
        assert!(data[..100_000].iter().all(|&b| b == 1) && data[100_000..] == [2; 5]);
    }

    #[test]
    fn another_processs_pipe_is_refused_and_the_bytes_come_on_the_stream() {
        let x: Vec<u8> = (0..70_000).map(|i| i as u8).collect();
        let (data, read) = exchange(&[&x], Some(1));
        assert!(!read);
        assert_eq!(data, x);
    }

    /// The receiver opens a sender's pipe once per connection, and every message through it
    /// arrives whole and in order, the pipe empty after each.
    #[test]
    fn one_pipe_carries_message_after_message() {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        let pipe = Pipe::new(LEND_MAX).expect("pipe");
        let opened = Opened::default();
        let sizes = [LEND_MIN, 65_537, 300_000, pipe.capacity];
        std::thread::scope(|s| {
            s.spawn(|| {
                for (i, &n) in sizes.iter().enumerate() {
                    let data: Vec<u8> = (0..n).map(|j| (j * 7 + i) as u8).collect();
                    assert!(
                        send(&mut a, std::time::Duration::ZERO, &pipe, 0, i as u32, &[&data]).expect("send"),
                        "message {i} written"
                    );
                }
            });
            for (i, &n) in sizes.iter().enumerate() {
                let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
                assert_eq!((header.tag, header.len), (i as u32, n as u64));
                let lent = read(&mut b, &opened).expect("description");
                let mut got = vec![0u8; n];
                receive(&mut b, &lent, &[], &mut [&mut got]).expect("receive");
                assert!(got.iter().enumerate().all(|(j, &v)| v == (j * 7 + i) as u8), "message {i}");
            }
        });
        let too_large = vec![0u8; pipe.capacity + 1];
        assert!(send(&mut a, std::time::Duration::ZERO, &pipe, 0, 0, &[&too_large]).is_err(), "too large");
    }
}
