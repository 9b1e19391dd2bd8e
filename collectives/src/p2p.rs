//! The point-to-point interface that collective algorithms are written against.

/// Number of distinct round numbers in the tags of one collective call.
///
/// [`tag`] keeps only the low 8 bits of a round, so rounds `k` and `k + 256` of one call share a
/// tag. Algorithms with more rounds than this (rings over more than 256 ranks) rely on that
/// aliasing being harmless: messages between a pair of ranks with one tag arrive in the order they
/// were sent, and every algorithm here consumes the messages from a given peer in the order that
/// peer sends them.
pub const MAX_ROUNDS: u32 = 256;

/// The tag of round `round` of collective call number `seq` on a communicator.
///
/// The tag is `seq << 8 | (round & 0xff)`: rounds alias modulo [`MAX_ROUNDS`] (see there why that
/// is safe), and sequence numbers wrap around, so two calls alias only if they are `2^24` calls
/// apart, which cannot happen since every rank finishes a call before it starts the next.
pub fn tag(seq: u32, round: u32) -> u32 {
    seq.wrapping_shl(8) | (round & 0xff)
}

/// The collective call number a [`tag`] was made for (its sequence number, `tag >> 8`).
pub fn seq_of(tag: u32) -> u32 {
    tag >> 8
}

/// The tag of step `step` (which may exceed [`MAX_ROUNDS`]) of collective call `seq`.
pub(crate) fn step_tag(seq: u32, step: usize) -> u32 {
    // Only the low 8 bits matter, so the truncating cast loses nothing `tag` would keep.
    tag(seq, (step & 0xff) as u32)
}

/// Blocking point-to-point messaging between the ranks of one group.
///
/// Implementations must deliver messages between a pair of ranks in the order they were sent for
/// each tag, must not busy-wait in `recv`, and must return an error (never block forever) when
/// the peer of a `recv` is gone.
pub trait PointToPoint {
    /// The transport's error.
    type Error: std::fmt::Display;

    /// This rank's number, `0..size()`.
    fn rank(&self) -> usize;

    /// Number of ranks in the group.
    fn size(&self) -> usize;

    /// Sends `data` to rank `dest` with `tag`. May return before the receiver has received it.
    fn send(&self, dest: usize, tag: u32, data: &[u8]) -> Result<(), Self::Error>;

    /// Sends the concatenation of `parts` as one message, to `dest` with `tag`.
    ///
    /// The default concatenates then sends; transports that can write several buffers at once
    /// override it, so that a header and a large payload go out without a copy.
    fn send_parts(&self, dest: usize, tag: u32, parts: &[&[u8]]) -> Result<(), Self::Error> {
        self.send(dest, tag, &parts.concat())
    }

    /// Sends `data` to `dest` with `tag`, running `meanwhile` (work of this rank's own that
    /// needs no message, such as a root copying its own block) while the transport may still
    /// be moving `data`; `meanwhile` runs once whatever the send's outcome.
    ///
    /// The default sends, then runs `meanwhile`; a transport whose send waits for the receiver
    /// to copy the message (as the runtime's single copy between ranks of a host) overrides it
    /// so that the two copies run at once.
    fn send_while(
        &self,
        dest: usize,
        tag: u32,
        data: &[u8],
        meanwhile: &mut dyn FnMut(),
    ) -> Result<(), Self::Error> {
        let sent = self.send(dest, tag, data);
        meanwhile();
        sent
    }

    /// Sends each `(dest, data)` of `sends` with `tag`, in order, then runs `meanwhile` (if
    /// any: `None` says the caller only waits); where the transport waits for its receivers to
    /// copy a message, every message is out before it waits for any, so that the receivers
    /// copy them at once (and `meanwhile` runs while they do). Every send is made whatever the
    /// others' outcome, and `meanwhile` runs once; the first error is returned.
    ///
    /// The default nests [`PointToPoint::send_while`] calls ([`nest_sends`]: each send's
    /// `meanwhile` makes the next one), the last a plain [`PointToPoint::send`] when there is
    /// nothing to run.
    fn send_each(
        &self,
        tag: u32,
        sends: &[(usize, &[u8])],
        meanwhile: Option<&mut dyn FnMut()>,
    ) -> Result<(), Self::Error> {
        nest_sends(sends, meanwhile, &|dest, data, waits, next| {
            if waits {
                let sent = self.send(dest, tag, data);
                next();
                sent
            } else {
                self.send_while(dest, tag, data, next)
            }
        })
    }

    /// Sends each `(dest, data)` of `sends` and receives into each `(src, buf)` of `recvs`
    /// the next message from `src`, all with `tag`, as one step: every rank of a group sending
    /// to and receiving from several others at once. Each `buf` must be filled exactly, as by
    /// [`PointToPoint::recv_into`]. Every send is made whatever the others' outcome, the
    /// receives until one fails; the first error is returned.
    ///
    /// `before`, if given, runs once, after the sends are on their way (while their receivers
    /// copy the messages lent to them) and before the receives: a rank's own work that need
    /// not hold up its messages, such as copying its own block into place.
    ///
    /// The default receives in order while the sends move ([`PointToPoint::send_each`]); a
    /// transport overrides it to have every receive ready before the messages come, and to
    /// take them in the order they come.
    fn send_recv_each(
        &self,
        tag: u32,
        sends: &[(usize, &[u8])],
        recvs: &mut [(usize, &mut [u8])],
        mut before: Option<&mut dyn FnMut()>,
    ) -> Result<(), Self::Error> {
        let mut received = Ok(());
        let mut receive = || {
            if let Some(before) = before.take() {
                before();
            }
            received = recvs.iter_mut().try_for_each(|(src, buf)| self.recv_into(*src, tag, buf));
        };
        let sent = self.send_each(tag, sends, Some(&mut receive));
        received.and(sent)
    }

    /// Receives the next message from rank `src` with `tag`, blocking until it arrives.
    fn recv(&self, src: usize, tag: u32) -> Result<Vec<u8>, Self::Error>;

    /// Receives the next message from rank `src` with `tag` into `buf`, which the message must
    /// fill exactly (a message of another length is an error, and is consumed).
    ///
    /// The default receives, then copies; transports that can read a message straight into
    /// place override it.
    fn recv_into(&self, src: usize, tag: u32, buf: &mut [u8]) -> Result<(), Self::Error> {
        copy_received(self, src, &self.recv(src, tag)?, buf)
    }

    /// Sends `data` to `dest` with `send_tag` and receives the next message from `src` with
    /// `recv_tag`, as one exchange step.
    ///
    /// Every exchange step of the algorithms goes through this method. The default sends, then
    /// receives, which is correct when `send` does not wait for the matching receive (as with
    /// buffered transports); a transport whose sends can block until received (such as MPI for
    /// large messages) must override it so that two ranks exchanging with each other cannot
    /// deadlock.
    fn sendrecv(
        &self,
        dest: usize,
        send_tag: u32,
        data: &[u8],
        src: usize,
        recv_tag: u32,
    ) -> Result<Vec<u8>, Self::Error> {
        self.send(dest, send_tag, data)?;
        self.recv(src, recv_tag)
    }

    /// As [`PointToPoint::sendrecv`], receiving into `buf`, which the message must fill exactly.
    fn sendrecv_into(
        &self,
        dest: usize,
        send_tag: u32,
        data: &[u8],
        src: usize,
        recv_tag: u32,
        buf: &mut [u8],
    ) -> Result<(), Self::Error> {
        self.send(dest, send_tag, data)?;
        self.recv_into(src, recv_tag, buf)
    }

    /// As [`PointToPoint::sendrecv_into`], running `before` (work of this rank's own, such as
    /// copying its own block) once `data` is on its way and before receiving, where the
    /// transport lets a send move while its rank works (the runtime's single copy: the peer
    /// copies `data` meanwhile); else after the exchange (the default), where it would only
    /// hold up the peer.
    #[allow(clippy::too_many_arguments)]
    fn sendrecv_into_while(
        &self,
        dest: usize,
        send_tag: u32,
        data: &[u8],
        src: usize,
        recv_tag: u32,
        buf: &mut [u8],
        before: &mut dyn FnMut(),
    ) -> Result<(), Self::Error> {
        let exchanged = self.sendrecv_into(dest, send_tag, data, src, recv_tag, buf);
        before();
        exchanged
    }

    /// The longest piece an exchange with `peer` (each sending to and receiving from the other
    /// at once: a two-rank allgather, or a step of a two-rank ring) is cut into, a piece going
    /// each way at a time. Both ranks of the pair must get the same answer, since each cuts
    /// its message and its receive alike.
    ///
    /// The default, [`EXCHANGE_PIECE`](crate::tuning::EXCHANGE_PIECE), suits a transport that
    /// copies only shorter messages once; one that copies messages of any length once between
    /// these two ranks (the runtime, where each reads the other's memory) says `usize::MAX`.
    fn exchange_piece(&self, peer: usize) -> usize {
        let _ = peer;
        crate::tuning::EXCHANGE_PIECE
    }

    /// Whether an exchange step's message of `len` bytes to `peer` moves while this rank works
    /// (the runtime's single copy: the peer copies it out of this rank's memory), so that
    /// [`PointToPoint::sendrecv_into_while`]'s `before` runs during the peer's copy rather
    /// than after the exchange. A hint for choosing what to send: the default, `false`, suits a
    /// transport that writes every message.
    fn lends(&self, peer: usize, len: usize) -> bool {
        let _ = (peer, len);
        false
    }

    /// Builds the error for a malformed message from a peer, or arguments that violate a
    /// collective's documented shape; `what` describes the problem.
    fn malformed(&self, what: String) -> Self::Error;
}

/// One send in [`nest_sends`]: `(dest, data, waits, next)`, where `waits` says that nothing
/// is left to do after this send (it is the last and the caller gave nothing to run) and `next`
/// makes the sends after it; the send must call `next` once, while the message moves or after.
pub type NestedSend<'s, E> = dyn Fn(usize, &[u8], bool, &mut dyn FnMut()) -> Result<(), E> + 's;

/// Makes each `(dest, data)` of `sends` with `send`, each send's `next` making the ones after
/// it, the last one's running `meanwhile` (if any): the nesting of
/// [`PointToPoint::send_each`], for transports that override it to choose how each message
/// goes. Every send is made whatever the others' outcome; the first error is returned.
pub fn nest_sends<E>(
    sends: &[(usize, &[u8])],
    mut meanwhile: Option<&mut dyn FnMut()>,
    send: &NestedSend<'_, E>,
) -> Result<(), E> {
    let Some((&(dest, data), rest)) = sends.split_first() else {
        if let Some(f) = meanwhile {
            f();
        }
        return Ok(());
    };
    let waits = rest.is_empty() && meanwhile.is_none();
    let mut others = Ok(());
    let sent = send(dest, data, waits, &mut || {
        // reborrowed with the closure's lifetime shortened to this call's: `as_deref_mut` would
        // keep the longer one, which the call cannot take (`&mut` is invariant)
        #[allow(clippy::option_as_ref_deref)]
        let meanwhile = meanwhile.as_mut().map(|f| -> &mut dyn FnMut() { &mut **f });
        others = nest_sends(rest, meanwhile, send);
    });
    sent.and(others)
}

/// As [`PointToPoint::sendrecv_into`], between two ranks exchanging with each other (`dest` is
/// `src`) in pieces of at most [`PointToPoint::exchange_piece`] bytes: piece
/// `i` of `data` goes out while piece `i` of `buf` comes in, then what is left of the longer of
/// the two goes alone. Each side of a message knows its length and cuts it alike, so the
/// pieces match; nothing moves for empty `data` and `buf`. Other exchanges (a ring's, where
/// each piece would pay a step's fixed cost again: 3 ranks, 16 MiB allreduce 22.6 against 17.5
/// ms) go whole.
pub(crate) fn exchange_in_pieces<P: PointToPoint + ?Sized>(
    p: &P,
    dest: usize,
    send_tag: u32,
    data: &[u8],
    src: usize,
    recv_tag: u32,
    buf: &mut [u8],
) -> Result<(), P::Error> {
    if dest != src {
        return p.sendrecv_into(dest, send_tag, data, src, recv_tag, buf);
    }
    let piece = p.exchange_piece(dest).max(1);
    let (mut outs, mut intos) = (data.chunks(piece), buf.chunks_mut(piece));
    loop {
        match (outs.next(), intos.next()) {
            (Some(out), Some(into)) => p.sendrecv_into(dest, send_tag, out, src, recv_tag, into)?,
            (Some(out), None) => p.send(dest, send_tag, out)?,
            (None, Some(into)) => p.recv_into(src, recv_tag, into)?,
            (None, None) => return Ok(()),
        }
    }
}

/// This rank and the group's size, after checking that `root` and the rank are in range; `op`
/// names the collective in the error.
pub(crate) fn rank_and_size<P: PointToPoint + ?Sized>(
    p: &P,
    op: &str,
    root: usize,
) -> Result<(usize, usize), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    if root >= size || rank >= size {
        return Err(p.malformed(format!("{op}: root {root} or rank {rank} out of range for {size} ranks")));
    }
    Ok((rank, size))
}

/// Copies `data`, a message received from rank `src`, into `buf`, which it must fill exactly:
/// what a [`PointToPoint::recv_into`] does with a message it got as a vector.
pub fn copy_received<P: PointToPoint + ?Sized>(
    p: &P,
    src: usize,
    data: &[u8],
    buf: &mut [u8],
) -> Result<(), P::Error> {
    if data.len() != buf.len() {
        return Err(p.malformed(format!(
            "message from rank {src} has {} bytes where {} were expected",
            data.len(),
            buf.len()
        )));
    }
    buf.copy_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::run;

    /// Every message of a fan arrives, `meanwhile` runs once whatever the sends' outcome
    /// (a destination out of range fails its send, not the others), and without one the last
    /// send is a plain send; the fan with receives gets every message into its place and runs
    /// its `before` once.
    #[test]
    fn send_each_and_send_recv_each_move_every_message() {
        let got = run(4, |p| {
            let rank = p.rank();
            let mut runs = 0;
            if rank == 0 {
                let data: Vec<Vec<u8>> = (0..4).map(|d| vec![d as u8; d + 1]).collect();
                let sends: Vec<(usize, &[u8])> =
                    vec![(1, &data[1]), (9, &data[0]), (2, &data[2]), (3, &data[3])];
                let sent = p.send_each(tag(1, 0), &sends, Some(&mut || runs += 1));
                assert!(sent.is_err(), "a send to rank 9 of 4 must fail");
                let later: Vec<(usize, &[u8])> = (1..4).map(|d| (d, &data[d][..])).collect();
                p.send_each(tag(1, 1), &later, None).expect("plain fan");
            } else {
                assert_eq!(p.recv(0, tag(1, 0)).expect("fan"), vec![rank as u8; rank + 1]);
                assert_eq!(p.recv(0, tag(1, 1)).expect("plain fan"), vec![rank as u8; rank + 1]);
            }
            // every rank sends its rank to every other and receives theirs into place
            let others: Vec<usize> = (0..4).filter(|&r| r != rank).collect();
            let mine = [rank as u8; 3];
            let sends: Vec<(usize, &[u8])> = others.iter().map(|&d| (d, &mine[..])).collect();
            let mut bufs = vec![[0u8; 3]; 3];
            let mut recvs: Vec<(usize, &mut [u8])> =
                others.iter().copied().zip(bufs.iter_mut().map(|b| &mut b[..])).collect();
            let mut befores = 0;
            p.send_recv_each(tag(2, 0), &sends, &mut recvs, Some(&mut || befores += 1)).expect("all to all");
            (runs, befores, others.iter().zip(&bufs).all(|(&r, b)| *b == [r as u8; 3]))
        });
        assert_eq!(got[0].0, 1, "meanwhile runs once");
        assert!(got.iter().all(|&(_, befores, _)| befores == 1), "before runs once: {got:?}");
        assert!(got.iter().all(|&(_, _, ok)| ok), "{got:?}");
    }
}
