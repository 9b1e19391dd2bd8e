//! Large messages between ranks on one host, copied once: the receiver reads the payload
//! straight from the sender's memory (cross-memory attach, `process_vm_readv`), as Open MPI
//! and MPICH do over shared memory. Used when `PRUN_SINGLE_COPY=1` (see [`crate::env`] for why
//! it is not the default).
//!
//! Over a socket every byte is copied twice, into the kernel and out of it. That is no slower
//! for one transfer on an idle machine (the two copies run on two cores at once), but wherever
//! the cores are the limit (data moving both ways at once, as in allgather and allreduce, or
//! more ranks than cores) the second copy costs its full price.
//!
//! The sender writes a [`KIND_LEND`] frame: the usual header (context, tag, length of the
//! payload), then its process id and where the payload lies in its memory (up to
//! [`MAX_PIECES`] address and length pairs). It then waits on the same connection for one byte:
//! [`READ`] when the receiver has copied the payload, or [`SEND`] when it could not (it may
//! not trace the sender, the pieces were not readable, or the connection is not a Unix socket
//! to the process that claims them), after which the sender writes the payload on the
//! connection as it would have. Either way the send returns once the payload is safe, so the
//! caller may reuse its buffer, and a send still never waits for the receiving program: the
//! receiver's progress thread copies the payload into a vector of its own when no receive is
//! posted for it, and a posted receive copies it straight into its buffer.
//!
//! The receiver checks that the process id in the frame is the one at the other end of the
//! Unix socket (`SO_PEERCRED`), so a peer can only have its own memory read.

use crate::transport::Stream;
use crate::wire::{HEADER_LEN, Header, KIND_LEND};
use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::unistd::Pid;
use std::io::{self, IoSliceMut};

/// Messages of at least this many bytes to a rank on this host are lent rather than written.
pub(crate) const LEND_MIN: usize = 64 * 1024;
/// Most pieces one lent message may lie in.
pub(crate) const MAX_PIECES: usize = 4;
/// The receiver's answer: the payload was read from the sender's memory.
const READ: u8 = 1;
/// The receiver's answer: it could not read the payload; the sender writes it.
const SEND: u8 = 2;

/// Where a lent payload lies in its sender's memory.
#[derive(Debug)]
pub(crate) struct Lent {
    pid: i32,
    pieces: Vec<RemoteIoVec>,
}

/// Lends `parts` (at least [`LEND_MIN`] bytes in all, at most [`MAX_PIECES`] non-empty parts) to
/// the receiver at the other end of `stream`, writing them instead when it cannot read them.
/// Returns whether the receiver read them itself.
pub(crate) fn send(stream: &mut dyn Stream, context: u64, tag: u32, parts: &[&[u8]]) -> io::Result<bool> {
    let pieces: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    let header = Header { kind: KIND_LEND, context, tag, len: len as u64 };
    let mut frame = Vec::with_capacity(HEADER_LEN + 8 + 16 * pieces.len());
    frame.extend_from_slice(&header.encode());
    frame.extend_from_slice(&std::process::id().to_le_bytes());
    frame.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
    for p in &pieces {
        frame.extend_from_slice(&(p.as_ptr() as u64).to_le_bytes());
        frame.extend_from_slice(&(p.len() as u64).to_le_bytes());
    }
    stream.write_all(&frame)?;
    stream.flush()?;
    let mut answer = [0u8];
    stream.read_exact(&mut answer)?;
    match answer[0] {
        READ => Ok(true),
        SEND => {
            for p in &pieces {
                stream.write_all(p)?;
            }
            stream.flush()?;
            Ok(false)
        }
        other => Err(io::Error::other(format!("answer {other} to a lent message"))),
    }
}

/// Reads the description that follows a [`KIND_LEND`] header, and checks it: between one and
/// [`MAX_PIECES`] pieces whose lengths add up to the header's.
pub(crate) fn read(stream: &mut dyn Stream, header: &Header) -> io::Result<Lent> {
    let mut head = [0u8; 8];
    stream.read_exact(&mut head)?;
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (pid, count) = (word(&head[..4]) as i32, word(&head[4..]) as usize);
    if count == 0 || count > MAX_PIECES {
        return Err(io::Error::other(format!("a lent message in {count} pieces")));
    }
    let mut raw = vec![0u8; 16 * count];
    stream.read_exact(&mut raw)?;
    let long = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let pieces: Vec<RemoteIoVec> = raw
        .chunks_exact(16)
        .map(|c| RemoteIoVec { base: long(&c[..8]) as usize, len: long(&c[8..]) as usize })
        .collect();
    let total = pieces.iter().try_fold(0u64, |sum, p| sum.checked_add(p.len as u64));
    if total != Some(header.len) {
        return Err(io::Error::other("a lent message whose pieces do not add up to its length"));
    }
    Ok(Lent { pid, pieces })
}

/// Copies bytes `from..from + len` of a lent payload (`len` the total length of `into`) from
/// its sender's memory into `into`; false when they could not all be read.
pub(crate) fn pull(lent: &Lent, from: usize, into: &mut [&mut [u8]]) -> bool {
    let len: usize = into.iter().map(|b| b.len()).sum();
    let mut remote = Vec::with_capacity(lent.pieces.len());
    let (mut skip, mut left) = (from, len);
    for p in &lent.pieces {
        if left == 0 {
            break;
        }
        if skip >= p.len {
            skip -= p.len;
            continue;
        }
        let take = (p.len - skip).min(left);
        remote.push(RemoteIoVec { base: p.base + skip, len: take });
        left -= take;
        skip = 0;
    }
    if left > 0 {
        return false;
    }
    let mut local: Vec<IoSliceMut<'_>> =
        into.iter_mut().filter(|b| !b.is_empty()).map(|b| IoSliceMut::new(b)).collect();
    // a short read (part of a piece not readable) counts as a failure
    len == 0 || process_vm_readv(Pid::from_raw(lent.pid), &mut local, &remote).is_ok_and(|n| n == len)
}

/// Whether `stream` leads to the process that lent `lent`, whose memory may then be read.
pub(crate) fn readable(stream: &dyn Stream, lent: &Lent) -> bool {
    stream.peer_pid() == Some(lent.pid)
}

/// Finishes receiving a lent payload into `into` (whose lengths add up to the payload's): its
/// first bytes are `prefix` (read before), the rest is copied from the sender's memory, and the
/// sender is told; if that cannot be done, the sender is asked for the bytes and the whole
/// payload is read from `stream` instead.
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
    // the prefix into the front of `into`, and what is left after it
    let mut rest: Vec<&mut [u8]> = Vec::with_capacity(into.len());
    let mut copied = 0;
    for b in into.iter_mut() {
        let n = (prefix.len() - copied).min(b.len());
        b[..n].copy_from_slice(&prefix[copied..copied + n]);
        copied += n;
        rest.push(&mut b[n..]);
    }
    if readable(stream, lent) && pull(lent, prefix.len(), &mut rest) {
        return accept(stream);
    }
    refuse(stream)?;
    for b in into.iter_mut() {
        stream.read_exact(b)?;
    }
    Ok(())
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
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// One end lends, the other receives; returns what arrived and whether it was read from
    /// the sender's memory. `forge` changes the frame's process id.
    fn exchange(payload: &[&[u8]], forge: Option<u32>) -> (Vec<u8>, bool) {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        std::thread::scope(|s| {
            let sender = s.spawn(move || {
                match forge {
                    // a frame by hand, claiming another process's memory
                    Some(pid) => {
                        let len: usize = payload.iter().map(|p| p.len()).sum();
                        let h = Header { kind: KIND_LEND, context: 7, tag: 3, len: len as u64 };
                        let mut f = h.encode().to_vec();
                        f.extend_from_slice(&pid.to_le_bytes());
                        f.extend_from_slice(&1u32.to_le_bytes());
                        f.extend_from_slice(&(payload[0].as_ptr() as u64).to_le_bytes());
                        f.extend_from_slice(&(len as u64).to_le_bytes());
                        a.write_all(&f).expect("write");
                        let mut answer = [0u8];
                        a.read_exact(&mut answer).expect("answer");
                        assert_eq!(answer[0], SEND);
                        payload.iter().for_each(|p| a.write_all(p).expect("bytes"));
                        false
                    }
                    None => send(&mut a, 7, 3, payload).expect("send"),
                }
            });
            let header = read_header(&mut b, u64::MAX).expect("header").expect("a frame");
            assert_eq!((header.kind, header.context, header.tag), (KIND_LEND, 7, 3));
            let lent = read(&mut b, &header).expect("description");
            let mut data = vec![0u8; header.len as usize];
            // from the sender's memory: its first 2 bytes pulled first, as the progress thread does
            // before a receive is posted; the rest into two slices
            let mut prefix = Vec::new();
            if forge.is_none() {
                prefix = vec![0u8; 2];
                assert!(readable(&b, &lent) && pull(&lent, 0, &mut [&mut prefix]), "pull the prefix");
            }
            let (front, back) = data.split_at_mut(3);
            receive(&mut b, &lent, &prefix, &mut [front, back]).expect("receive");
            let read = sender.join().expect("sender");
            (data, read)
        })
    }

    #[test]
    fn a_lent_payload_is_read_from_the_senders_memory() {
        let (x, y) = (vec![1u8; 100_000], vec![2u8; 5]);
        let (data, read) = exchange(&[&x, &[], &y], None);
        assert!(read, "read from memory");
        assert_eq!(data.len(), 100_005);
        assert!(data[..100_000].iter().all(|&b| b == 1) && data[100_000..] == [2; 5]);
    }

    #[test]
    fn another_processs_memory_is_refused_and_the_bytes_come_on_the_stream() {
        let x: Vec<u8> = (0..70_000).map(|i| i as u8).collect();
        let (data, read) = exchange(&[&x], Some(1));
        assert!(!read);
        assert_eq!(data, x);
    }

    #[test]
    fn descriptions_that_do_not_add_up_are_refused() {
        let header = Header { kind: KIND_LEND, context: 0, tag: 0, len: 10 };
        for (count, len) in [(0u32, 10u64), (5, 2), (1, 9), (2, u64::MAX)] {
            let (mut a, mut b) = UnixStream::pair().expect("pair");
            let mut f = Vec::new();
            f.extend_from_slice(&1u32.to_le_bytes());
            f.extend_from_slice(&count.to_le_bytes());
            for _ in 0..count {
                f.extend_from_slice(&0u64.to_le_bytes());
                f.extend_from_slice(&len.to_le_bytes());
            }
            a.write_all(&f).expect("write");
            assert!(read(&mut b, &header).is_err(), "{count} pieces of {len}");
        }
    }
}
