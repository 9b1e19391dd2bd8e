//! Broadcast: a binomial tree for short payloads, van de Geijn's scatter + ring allgather for
//! long ones.
//!
//! Non-roots do not know the payload's length in advance, so the one message each of them
//! receives from its parent in the tree starts with a header: the total length (`u64` LE) and
//! the algorithm the root chose (one byte). With the binomial tree the header is followed by the
//! whole payload; with scatter + allgather, by the bytes of the segments of the receiver's subtree.

use crate::binomial;
use crate::p2p::{PointToPoint, rank_and_size, step_tag, tag};
use crate::partition::{bytes_of_parts, fill, slice};
use crate::tuning::BCAST_LARGE;
use crate::wire::{read_u64, u64_bytes};

/// Length of the header: total length (`u64` LE) and algorithm byte.
const HEADER: usize = 9;

/// Algorithm byte: binomial tree, the header is followed by the whole payload.
const BINOMIAL: u8 = 0;

/// Algorithm byte: binomial scatter of `size` segments, then ring allgather of the segments.
const SCATTER_ALLGATHER: u8 = 1;

/// Sends the root's bytes to every rank; every rank returns them.
///
/// The root passes `Some(bytes)`, the other ranks `None` (and may not know the length). Uses a
/// binomial tree rooted at `root` when the payload is shorter than [`BCAST_LARGE`] or there are
/// at most two ranks, and otherwise van de Geijn's algorithm: the payload is cut into `size`
/// near-equal segments, scattered down the binomial tree, then gathered around a ring.
///
/// Errors: a malformed message (bad header, a payload of the wrong length), `root` out of range,
/// or `None` on the root.
pub fn broadcast<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    data: Option<Vec<u8>>,
) -> Result<Vec<u8>, P::Error> {
    let (rank, size) = rank_and_size(p, "broadcast", root)?;
    let tree = Tree { seq, root, size, vr: (rank + size - root) % size };
    let Some(parent) = binomial::parent(tree.vr) else {
        let data = data.ok_or_else(|| p.malformed("broadcast: the root passed no data".to_string()))?;
        if size > 2 && data.len() >= BCAST_LARGE {
            tree.scatter_segments(p, &data)?;
            return tree.ring_allgather(p, data);
        }
        if size > 1 {
            tree.forward(p, &[&data, &header(data.len(), BINOMIAL)])?;
        }
        return Ok(data);
    };
    let from = tree.abs(parent);
    let mut msg = p.recv(from, tag(seq, 0))?;
    let bad = |why: String| p.malformed(format!("broadcast: message from rank {from}: {why}"));
    // the header is a trailer, so that the payload can be kept where it is, without a copy
    let Some(end) = msg.len().checked_sub(HEADER) else {
        return Err(bad(format!("{} bytes, too short for a header", msg.len())));
    };
    let (len, algo) = match (read_u64(&msg, end).map(usize::try_from), msg.last()) {
        (Some(Ok(len)), Some(&algo)) => (len, algo),
        (Some(Err(_)), _) => return Err(bad("length does not fit in memory".to_string())),
        _ => return Err(bad(format!("{} bytes, too short for a header", msg.len()))),
    };
    let payload = slice(p, &msg, 0..end, "broadcast")?;
    match algo {
        BINOMIAL => {
            if payload.len() != len {
                return Err(bad(format!("header announces {len} bytes, {} come with it", payload.len())));
            }
            tree.forward(p, &[&msg])?;
            msg.truncate(end);
            Ok(msg)
        }
        SCATTER_ALLGATHER => {
            let mine = tree.subtree_bytes(len, tree.vr);
            if payload.len() != mine.len() {
                let expected = mine.len();
                return Err(bad(format!(
                    "{} bytes of segments, expected {expected} of {len}",
                    payload.len()
                )));
            }
            // At most size * (payload + 1) bytes: every subtree holds at least one segment.
            let mut buf = vec![0; len];
            fill(p, &mut buf, mine, payload, "broadcast")?;
            drop(msg);
            tree.scatter_segments(p, &buf)?;
            tree.ring_allgather(p, buf)
        }
        other => Err(bad(format!("unknown algorithm {other}"))),
    }
}

/// The header announcing `len` bytes sent with algorithm `algo`.
fn header(len: usize, algo: u8) -> [u8; HEADER] {
    let mut h = [algo; HEADER];
    for (to, from) in h.iter_mut().zip(u64_bytes(len)) {
        *to = from;
    }
    h
}

/// One rank's view of the binomial tree of a broadcast.
struct Tree {
    seq: u32,
    root: usize,
    size: usize,
    /// This rank relative to the root.
    vr: usize,
}

impl Tree {
    /// The rank of relative rank `v`.
    fn abs(&self, v: usize) -> usize {
        (v + self.root) % self.size
    }

    /// Byte range, in a `len`-byte payload, of the segments of the subtree of relative rank `v`.
    fn subtree_bytes(&self, len: usize, v: usize) -> std::ops::Range<usize> {
        bytes_of_parts(len, self.size, v, binomial::subtree_len(v, self.size), 1)
    }

    /// Sends `msg` (header and whole payload) to this rank's children, farthest first.
    fn forward<P: PointToPoint + ?Sized>(&self, p: &P, parts: &[&[u8]]) -> Result<(), P::Error> {
        for child in binomial::children(self.vr, self.size).rev() {
            p.send_parts(self.abs(child), tag(self.seq, 0), parts)?;
        }
        Ok(())
    }

    /// Sends each child, farthest first, a header and the segments of its subtree from `buf`
    /// (the whole payload; only this rank's subtree's segments need be filled in).
    fn scatter_segments<P: PointToPoint + ?Sized>(&self, p: &P, buf: &[u8]) -> Result<(), P::Error> {
        for child in binomial::children(self.vr, self.size).rev() {
            let theirs = slice(p, buf, self.subtree_bytes(buf.len(), child), "broadcast")?;
            p.send_parts(
                self.abs(child),
                tag(self.seq, 0),
                &[theirs, &header(buf.len(), SCATTER_ALLGATHER)],
            )?;
        }
        Ok(())
    }

    /// Ring allgather of the segments: this rank holds segment `vr` of `buf`; in step `s` it
    /// passes segment `vr - s` to the next rank and receives segment `vr - s - 1` from the
    /// previous one, so after `size - 1` steps it holds them all.
    fn ring_allgather<P: PointToPoint + ?Sized>(&self, p: &P, mut buf: Vec<u8>) -> Result<Vec<u8>, P::Error> {
        let (size, vr, len) = (self.size, self.vr, buf.len());
        let (next, prev) = (self.abs(vr + 1), self.abs(vr + size - 1));
        for s in 0..size - 1 {
            let send = bytes_of_parts(len, size, (vr + size - s) % size, 1, 1);
            let recv = bytes_of_parts(len, size, (vr + 2 * size - s - 1) % size, 1, 1);
            let t = step_tag(self.seq, 1 + s);
            let got = p.sendrecv(next, t, slice(p, &buf, send, "broadcast")?, prev, t)?;
            fill(p, &mut buf, recv, &got, &format!("broadcast: segment from rank {prev}"))?;
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{LARGE_SIZES, SIZES, bytes, run};
    use crate::threads::ThreadError;

    /// Every rank gets the root's bytes, for every size, root and length (both algorithms),
    /// over consecutive calls on one group.
    #[test]
    fn every_size_root_and_length() {
        let lens = [0, 1, 2, 3, 16, 17, 1000, BCAST_LARGE - 1, BCAST_LARGE, BCAST_LARGE + 5];
        for size in SIZES {
            for root in 0..size {
                let payloads: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &len)| bytes((size * 100 + root * 10 + i) as u64, len))
                    .collect();
                run(size, |p| {
                    for (seq, data) in payloads.iter().enumerate() {
                        let mine = (p.rank() == root).then(|| data.clone());
                        let got = broadcast(&p, seq as u32, root, mine).expect("broadcast");
                        assert!(got == *data, "size {size} root {root} len {}", data.len());
                    }
                });
            }
        }
    }

    /// Several MiB with van de Geijn's algorithm (binomial on one or two ranks).
    #[test]
    fn large() {
        for size in LARGE_SIZES {
            let data = bytes(size as u64, 5 * 1024 * 1024 + 3);
            let root = size / 2;
            let out = run(size, |p| broadcast(&p, 9, root, (p.rank() == root).then(|| data.clone())));
            assert!(out.into_iter().all(|got| got.as_ref() == Ok(&data)), "size {size}");
        }
    }

    /// Sequence numbers wrap around without trouble.
    #[test]
    fn sequence_numbers_wrap() {
        run(5, |p| {
            for seq in [u32::MAX - 1, u32::MAX, 0, 1] {
                let data = bytes(u64::from(seq), 300_000);
                let mine = (p.rank() == 2).then(|| data.clone());
                assert!(broadcast(&p, seq, 2, mine).expect("broadcast") == data);
            }
        });
    }

    /// What rank 1 of two gets when rank 0, the root, sends `msg` instead of broadcasting.
    fn receive_forged(msg: &[u8]) -> Result<Vec<u8>, ThreadError> {
        let mut out = run(2, |p| {
            if p.rank() == 0 {
                p.send(1, tag(4, 0), msg).expect("send");
                None
            } else {
                Some(broadcast(&p, 4, 0, None))
            }
        });
        out.pop().flatten().expect("rank 1 returns a result")
    }

    /// Malformed headers and payloads of the wrong length are errors, not panics or hangs.
    #[test]
    fn malformed_messages() {
        let is_malformed = |r: Result<Vec<u8>, ThreadError>| matches!(r, Err(ThreadError::Malformed(_)));
        // the header is a trailer: payload first
        let forged = |len: usize, algo: u8, payload: &[u8]| [payload, &header(len, algo)].concat();
        assert!(
            is_malformed(receive_forged(&forged(100, BINOMIAL, &[7; 10]))),
            "announces more than arrives"
        );
        assert!(is_malformed(receive_forged(&forged(3, BINOMIAL, &[7; 10]))), "more bytes than announced");
        assert!(is_malformed(receive_forged(&[1, 2, 3])), "short header");
        assert!(is_malformed(receive_forged(&[])), "empty message");
        assert!(is_malformed(receive_forged(&forged(2, 9, &[7; 2]))), "unknown algorithm");
        let huge = forged(usize::MAX, SCATTER_ALLGATHER, &[7; 10]);
        assert!(is_malformed(receive_forged(&huge)), "huge scatter-allgather length");
        let segment = forged(1000, SCATTER_ALLGATHER, &[7; 10]);
        assert!(is_malformed(receive_forged(&segment)), "segment of the wrong length");
        assert_eq!(receive_forged(&forged(2, BINOMIAL, &[7; 2])), Ok(vec![7; 2]));
    }

    /// Bad arguments are errors too.
    #[test]
    fn bad_arguments() {
        let out = run(3, |p| match p.rank() {
            0 => Some(broadcast(&p, 0, 0, None)),
            _ => Some(broadcast(&p, 0, 3, None)),
        });
        assert!(out.iter().all(|r| matches!(r, Some(Err(ThreadError::Malformed(_))))));
    }
}
