//! Bandwidth-optimal reductions of equal-length buffers of fixed-size elements with a
//! commutative, associative element-wise operation: ring allreduce, and reduce as ring
//! reduce-scatter plus gather.
//!
//! The buffer is cut into `size` near-equal segments of whole elements (some empty when there
//! are fewer elements than ranks). The ring reduce-scatter takes `size - 1` steps: in step `s`
//! rank `r` sends its partial segment `r - s` to `r + 1` and folds the partial segment `r - s - 1`
//! received from `r - 1` into its own, so that afterwards it holds segment `r + 1` fully reduced.
//! Every received segment's length is checked, which catches ranks passing different lengths.

use crate::p2p::{PointToPoint, exchange_in_pieces, step_tag};
use crate::partition::{bytes_of_parts, disjoint_ranges, slice, slice_mut};

/// Reduces every rank's `data` element-wise with `op`; every rank returns the result.
///
/// `data` is a whole number of `elem_size`-byte elements, of the same length on every rank;
/// `op(acc, other)` folds `other` into `acc` (two slices of the same whole number of elements)
/// and must be commutative and associative. Ring reduce-scatter (`size - 1` steps), then ring
/// allgather of the reduced segments (`size - 1` steps): each rank sends and receives about
/// `2 * len` bytes whatever the size (see [`ALLREDUCE_LARGE`](crate::tuning::ALLREDUCE_LARGE)).
///
/// Errors: a transport error, `elem_size == 0`, `data` not a whole number of elements, or a
/// segment of the wrong length from a peer (ranks passing different lengths).
pub fn allreduce_ring<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    data: Vec<u8>,
    elem_size: usize,
    op: &dyn Fn(&mut [u8], &[u8]),
) -> Result<Vec<u8>, P::Error> {
    let mut out = vec![0; data.len()];
    allreduce_ring_into(p, seq, &data, &mut out, elem_size, op)?;
    Ok(out)
}

/// As [`allreduce_ring`], from `send` into `recv` (of the same length): every segment is
/// received straight into its place in `recv` ([`PointToPoint::sendrecv_into`]) and this rank's
/// own part folded into it there, so that nothing is copied or allocated on the way (a copy of
/// `send` into `recv` first and a scratch buffer for each step cost a fifth of a 1 MiB
/// allreduce at 2 ranks here).
///
/// Errors: as [`allreduce_ring`], or `send` and `recv` of different lengths.
pub fn allreduce_ring_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    recv: &mut [u8],
    elem_size: usize,
    op: &dyn Fn(&mut [u8], &[u8]),
) -> Result<(), P::Error> {
    same_length(p, "allreduce", send, recv)?;
    let mut ring = Ring::new(p, recv, elem_size, "allreduce")?;
    let (rank, size) = (ring.rank, ring.size);
    if size == 1 {
        ring.buf.copy_from_slice(send);
        return Ok(());
    }
    let (next, prev) = (ring.next(), ring.prev());
    // reduce-scatter: step 0 sends this rank's own segment, later steps the segment reduced in
    // the step before; each received partial segment is folded with this rank's own in place
    for s in 0..size - 1 {
        let (out, into) = ((rank + size - s) % size, (rank + 2 * size - s - 1) % size);
        let t = step_tag(seq, s);
        if s == 0 {
            let out = slice(p, send, ring.segment(out), "allreduce")?;
            let range = ring.segment(into);
            let into = slice_mut(p, ring.buf, range, "allreduce")?;
            exchange_in_pieces(p, next, t, out, prev, t, into)?;
        } else {
            let (out, into) = ring.two_segments(p, out, into)?;
            exchange_in_pieces(p, next, t, out, prev, t, into)?;
        }
        let range = ring.segment(into);
        op(slice_mut(p, ring.buf, range.clone(), "allreduce")?, slice(p, send, range, "allreduce")?);
    }
    for s in 0..size - 1 {
        let (out, into) = ((rank + 1 + size - s) % size, (rank + size - s) % size);
        let t = step_tag(seq, size - 1 + s);
        let (out, into) = ring.two_segments(p, out, into)?;
        exchange_in_pieces(p, next, t, out, prev, t, into)?;
    }
    Ok(())
}

/// Checks that the `send` and `recv` of an element-wise collective (`what`, for the error) have
/// the same length.
pub(crate) fn same_length<P: PointToPoint + ?Sized>(
    p: &P,
    what: &str,
    send: &[u8],
    recv: &[u8],
) -> Result<(), P::Error> {
    if send.len() != recv.len() {
        let (s, r) = (send.len(), recv.len());
        return Err(p.malformed(format!("{what}: {s} bytes to send but {r} to receive into")));
    }
    Ok(())
}

/// As [`allreduce_ring_into`], for two ranks: rank 1 sends its whole `send` to rank 0, which
/// folds its own into it and sends the result back, so that both hold the same bits whatever
/// the operation does with signed zeros or NaNs. Two transfers of the whole buffer instead of
/// the ring's two exchanges of halves, each paying a transfer's fixed cost (wake-ups) once:
/// faster while the buffer is small enough for that cost to matter (see
/// [`ALLREDUCE_PAIR_MAX`](crate::tuning::ALLREDUCE_PAIR_MAX)).
///
/// Errors: as [`allreduce_ring_into`], or a communicator of other than two ranks.
pub fn allreduce_pair_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    recv: &mut [u8],
    op: &dyn Fn(&mut [u8], &[u8]),
) -> Result<(), P::Error> {
    if send.len() != recv.len() || p.size() != 2 {
        let (s, r, n) = (send.len(), recv.len(), p.size());
        return Err(p.malformed(format!("allreduce: a pair exchange of {s} bytes into {r} on {n} ranks")));
    }
    let (there, back) = (step_tag(seq, 0), step_tag(seq, 1));
    if p.rank() == 0 {
        if let Err(e) = p.recv_into(1, there, recv) {
            // rank 1 waits for an answer: this rank's own buffer makes its receive fail too
            let _ = p.send(1, back, send);
            return Err(e);
        }
        op(recv, send);
        p.send(1, back, recv)
    } else {
        p.send(0, there, send)?;
        p.recv_into(0, back, recv)
    }
}

/// Reduces every rank's `data` element-wise with `op`; `root` returns the result, others `None`.
///
/// Same arguments as [`allreduce_ring`]. Ring reduce-scatter (`size - 1` steps), then every rank
/// sends its reduced segment straight to `root`, which assembles them (see
/// [`REDUCE_LARGE`](crate::tuning::REDUCE_LARGE)).
///
/// Errors: as [`allreduce_ring`], or `root` out of range.
pub fn reduce_scatter_gather<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    data: Vec<u8>,
    elem_size: usize,
    op: &dyn Fn(&mut [u8], &[u8]),
) -> Result<Option<Vec<u8>>, P::Error> {
    if root >= p.size() {
        return Err(p.malformed(format!("reduce: root {root} out of range for {} ranks", p.size())));
    }
    let mut data = data;
    let mut ring = Ring::new(p, &mut data, elem_size, "reduce")?;
    ring.reduce_scatter(p, seq, op)?;
    let (rank, size) = (ring.rank, ring.size);
    let t = step_tag(seq, size - 1);
    if rank != root {
        p.send(root, t, slice(p, ring.buf, ring.segment((rank + 1) % size), "reduce")?)?;
        return Ok(None);
    }
    for src in (0..size).filter(|&src| src != root) {
        let range = ring.segment((src + 1) % size);
        p.recv_into(src, t, slice_mut(p, ring.buf, range, "reduce")?)?;
    }
    Ok(Some(data))
}

/// One rank's state in a ring reduction.
struct Ring<'b> {
    rank: usize,
    size: usize,
    /// The rank's buffer, reduced in place.
    buf: &'b mut [u8],
    elem_size: usize,
    /// What the caller is, for error messages.
    what: &'static str,
}

impl<'b> Ring<'b> {
    /// Checks the arguments and wraps `data`.
    fn new<P: PointToPoint + ?Sized>(
        p: &P,
        data: &'b mut [u8],
        elem_size: usize,
        what: &'static str,
    ) -> Result<Ring<'b>, P::Error> {
        let (rank, size) = (p.rank(), p.size());
        if rank >= size {
            return Err(p.malformed(format!("{what}: rank {rank} out of range for {size} ranks")));
        }
        if elem_size == 0 || data.len() % elem_size != 0 {
            let len = data.len();
            return Err(p.malformed(format!(
                "{what}: {len} bytes is not a whole number of {elem_size}-byte elements"
            )));
        }
        Ok(Ring { rank, size, buf: data, elem_size, what })
    }

    /// The next rank around the ring.
    fn next(&self) -> usize {
        (self.rank + 1) % self.size
    }

    /// The previous rank around the ring.
    fn prev(&self) -> usize {
        (self.rank + self.size - 1) % self.size
    }

    /// Byte range of segment `i`.
    fn segment(&self, i: usize) -> std::ops::Range<usize> {
        bytes_of_parts(self.buf.len() / self.elem_size, self.size, i, 1, self.elem_size)
    }

    /// Ring reduce-scatter over steps `0..size - 1`: afterwards this rank's segment `rank + 1`
    /// holds the reduction of every rank's.
    fn reduce_scatter<P: PointToPoint + ?Sized>(
        &mut self,
        p: &P,
        seq: u32,
        op: &dyn Fn(&mut [u8], &[u8]),
    ) -> Result<(), P::Error> {
        let (rank, size, what) = (self.rank, self.size, self.what);
        let (next, prev) = (self.next(), self.prev());
        // each received partial segment lands here, then is folded into this rank's
        let mut scratch = Vec::new();
        for s in 0..size - 1 {
            let (send, recv) = ((rank + size - s) % size, (rank + 2 * size - s - 1) % size);
            let t = step_tag(seq, s);
            let range = self.segment(recv);
            scratch.resize(range.len(), 0);
            p.sendrecv_into(next, t, slice(p, self.buf, self.segment(send), what)?, prev, t, &mut scratch)?;
            op(slice_mut(p, self.buf, range, what)?, &scratch);
        }
        Ok(())
    }

    /// Segment `a` to send and segment `b` to receive into, two different segments of `buf`.
    fn two_segments<P: PointToPoint + ?Sized>(
        &mut self,
        p: &P,
        a: usize,
        b: usize,
    ) -> Result<(&[u8], &mut [u8]), P::Error> {
        let (ra, rb) = (self.segment(a), self.segment(b));
        disjoint_ranges(p, self.buf, ra, rb, self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::tag;
    use crate::testutil::{LARGE_SIZES, SIZES, add_u64, bytes, reference, run, u64s};
    use crate::threads::ThreadError;
    use crate::tuning::{ALLREDUCE_LARGE, ALLREDUCE_PAIR_MAX, ALLREDUCE_PAIR_MIN, REDUCE_LARGE};

    /// Element-wise maximum of little-endian f64s.
    fn max_f64(acc: &mut [u8], other: &[u8]) {
        for (a, b) in acc.chunks_exact_mut(8).zip(other.chunks_exact(8)) {
            let max = f64::from_le_bytes((&*a).try_into().expect("8 bytes"))
                .max(f64::from_le_bytes(b.try_into().expect("8 bytes")));
            a.copy_from_slice(&max.to_le_bytes());
        }
    }

    /// Rank `r`'s data of a given length, in a test.
    type Data = fn(usize, usize) -> Vec<u8>;

    /// An element-wise operation of a test.
    type Op = fn(&mut [u8], &[u8]);

    /// Rank `r`'s f64s: `len` bytes of finite values of both signs.
    fn f64s(r: usize, len: usize) -> Vec<u8> {
        bytes(r as u64 * 17 + 5, len)
            .chunks_exact(8)
            .flat_map(|c| {
                let x = u64::from_le_bytes(c.try_into().expect("8 bytes"));
                ((x % 2_000_001) as f64 - 1_000_000.0).to_le_bytes()
            })
            .collect()
    }

    /// Between two ranks the ring's halves go in pieces of [`EXCHANGE_PIECE`] bytes; with an
    /// odd number of elements a rank sends one piece more than it receives, or one fewer.
    #[test]
    fn halves_in_pieces() {
        use crate::tuning::EXCHANGE_PIECE;
        for len in [2 * EXCHANGE_PIECE + 8, 2 * EXCHANGE_PIECE + 3 * 8, 4 * EXCHANGE_PIECE] {
            let want = reference(2, len, u64s, add_u64);
            let out = run(2, |p| {
                let mut got = vec![0xAA; len];
                allreduce_ring_into(&p, 0, &u64s(p.rank(), len), &mut got, 8, &add_u64).expect("allreduce");
                got == want
            });
            assert!(out.iter().all(|&ok| ok), "len {len}");
        }
    }

    /// Both algorithms, both operations, every size and root; empty buffers, fewer elements
    /// than ranks, and lengths straddling the thresholds.
    #[test]
    fn every_size_and_root() {
        let lens = [0, 8, 24, 8 * 17 + 8, ALLREDUCE_LARGE - 8, ALLREDUCE_LARGE, REDUCE_LARGE + 8];
        let ops: [(Data, Op); 2] = [(u64s, add_u64), (f64s, max_f64)];
        for size in SIZES {
            for &len in &lens {
                for (data, op) in ops {
                    let want = reference(size, len, data, op);
                    run(size, |p| {
                        let r = p.rank();
                        let got = allreduce_ring(&p, 0, data(r, len), 8, &op).expect("allreduce");
                        assert!(got == want, "allreduce size {size} len {len}");
                        for root in 0..size {
                            let got = reduce_scatter_gather(&p, 1 + root as u32, root, data(r, len), 8, &op);
                            let got = got.expect("reduce");
                            assert!(
                                got.as_ref() == (r == root).then_some(&want),
                                "reduce size {size} root {root}"
                            );
                        }
                    });
                }
            }
        }
    }

    /// The two-rank exchange equals the reference at every length it serves and around it, and
    /// both ranks hold the same bits even where the operation depends on its operands' order
    /// (`f64::min` of two zeros of different signs returns its second operand).
    #[test]
    fn pair_exchange() {
        // the last whole number of 8-byte elements within the pair's range, and one past it
        let last = (ALLREDUCE_PAIR_MAX + 1) / 8 * 8 - 8;
        let lens = [0, 8, 24, ALLREDUCE_PAIR_MIN, last, last + 8];
        let ops: [(Data, Op); 2] = [(u64s, add_u64), (f64s, max_f64)];
        for &len in &lens {
            for (data, op) in ops {
                let want = reference(2, len, data, op);
                run(2, |p| {
                    let mut got = vec![0xAA; len];
                    allreduce_pair_into(&p, 0, &data(p.rank(), len), &mut got, &op).expect("allreduce");
                    assert!(got == want, "len {len}");
                });
            }
        }
        let min_f64 = |acc: &mut [u8], other: &[u8]| {
            let (a, b) = (
                f64::from_le_bytes(acc[..8].try_into().expect("8")),
                f64::from_le_bytes(other[..8].try_into().expect("8")),
            );
            acc[..8].copy_from_slice(&a.min(b).to_le_bytes());
        };
        let out = run(2, |p| {
            let mine = if p.rank() == 0 { 0.0f64 } else { -0.0 };
            let mut got = [0u8; 8];
            allreduce_pair_into(&p, 0, &mine.to_le_bytes(), &mut got, &min_f64).expect("allreduce");
            got
        });
        assert_eq!(out[0], out[1]);
    }

    /// A rank that finds the lengths differ and goes on (rather than exit) leaves its peer an
    /// error, not a wait for ever.
    #[test]
    fn pair_exchange_mismatch_leaves_no_one_waiting() {
        let gate = std::sync::Barrier::new(2);
        let out = run(2, |p| {
            let len = 8 * (2 + p.rank());
            let result = allreduce_pair_into(&p, 0, &vec![0; len], &mut vec![0; len], &add_u64);
            // both ranks stay until both have returned
            gate.wait();
            result.is_err()
        });
        assert_eq!(out, vec![true, true]);
    }

    /// The two-rank exchange refuses other rank counts and buffers of different lengths.
    #[test]
    fn pair_exchange_bad_arguments() {
        let out = run(3, |p| allreduce_pair_into(&p, 0, &[0; 8], &mut [0; 8], &add_u64).err());
        assert!(out.iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
        let out = run(2, |p| allreduce_pair_into(&p, 0, &[0; 16], &mut [0; 8], &add_u64).err());
        assert!(out.iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
    }

    /// Several MiB.
    #[test]
    fn large() {
        let len = 4 * 1024 * 1024 + 8 * 3;
        for size in LARGE_SIZES {
            let want = reference(size, len, u64s, add_u64);
            run(size, |p| {
                let r = p.rank();
                assert!(allreduce_ring(&p, 0, u64s(r, len), 8, &add_u64).expect("allreduce") == want);
                let got = reduce_scatter_gather(&p, 1, size / 2, u64s(r, len), 8, &add_u64).expect("reduce");
                assert!(got.as_ref() == (r == size / 2).then_some(&want), "size {size}");
            });
        }
    }

    /// A segment of the wrong length is an error, not a panic; ranks passing different lengths
    /// get errors (not a hang).
    #[test]
    fn length_mismatch() {
        let out = run(2, |p| {
            if p.rank() == 1 {
                p.send(0, tag(0, 0), &[1, 2, 3]).expect("send");
                None
            } else {
                Some(allreduce_ring(&p, 0, vec![0; 16], 8, &add_u64))
            }
        });
        assert!(matches!(out[0], Some(Err(ThreadError::Malformed(_)))), "{out:?}");
        for size in [2, 3, 4] {
            let out = run(size, |p| allreduce_ring(&p, 0, vec![0; 8 * (3 + p.rank())], 8, &add_u64));
            assert!(out.iter().any(|r| matches!(r, Err(ThreadError::Malformed(_)))), "{out:?}");
            assert!(out.iter().all(Result::is_err), "{out:?}");
            let out =
                run(size, |p| reduce_scatter_gather(&p, 0, 0, vec![0; 8 * (3 + p.rank())], 8, &add_u64));
            assert!(out.iter().any(|r| matches!(r, Err(ThreadError::Malformed(_)))), "{out:?}");
        }
    }

    /// Bad element sizes, lengths and roots are errors.
    #[test]
    fn bad_arguments() {
        let out = run(1, |p| {
            [
                allreduce_ring(&p, 0, vec![0; 12], 8, &add_u64).err(),
                allreduce_ring(&p, 0, vec![0; 8], 0, &add_u64).err(),
                allreduce_ring_into(&p, 0, &[0; 16], &mut [0; 8], 8, &add_u64).err(),
                reduce_scatter_gather(&p, 0, 1, vec![0; 8], 8, &add_u64).err(),
            ]
        });
        assert!(out[0].iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
    }
}
