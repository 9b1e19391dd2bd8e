//! Flat algorithms for short messages: one rank talks to every other rank directly, so a
//! collective takes one or two hops however many ranks there are.
//!
//! A tree takes `ceil(log2(size))` hops in a row, and wherever ranks outnumber cores (or a
//! message costs more in wake-ups than in bytes) every hop waits for the scheduler: an 8-byte
//! allreduce of sixteen ranks on two cores took 766 us by recursive doubling against 484 us
//! through rank 0 (figures in [`tuning::FLAT_MAX_RANKS`](crate::tuning::FLAT_MAX_RANKS)). The
//! price is the root's: it sends or receives `size - 1` messages itself, which is why these are
//! for short messages on groups of moderate size only ([`tuning::flat`](crate::tuning::flat)),
//! and why the runtime uses them only where ranks outnumber cores: with a core per rank a hop
//! is cheap, and the trees win as they do for MPI libraries.
//!
//! The barrier here is the same idea made to scale: a gather-and-release tree of fan-out
//! [`FAN_OUT`], which is flat up to `FAN_OUT + 1` ranks.

use crate::p2p::{PointToPoint, rank_and_size, tag};
use crate::reduce::Combine;
use crate::tuning::FAN_OUT;
use crate::wire::{blocks_head, decode_blocks};

/// Blocks until every rank of the group has entered the barrier with the same `seq`.
///
/// Ranks form a tree of fan-out [`FAN_OUT`] rooted at rank 0 (rank `r`'s children are
/// `FAN_OUT * r + 1 ..= FAN_OUT * r + FAN_OUT`): each rank waits for a message from each of its
/// children, tells its parent, and waits for its parent's release, which it passes on to its
/// children. Up to `FAN_OUT + 1` ranks that is two hops: every rank to rank 0 and back.
pub fn barrier<P: PointToPoint + ?Sized>(p: &P, seq: u32) -> Result<(), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    let children = fan_children(rank, size);
    for child in children.clone() {
        p.recv(child, tag(seq, 0))?;
    }
    if rank > 0 {
        let parent = (rank - 1) / FAN_OUT;
        p.send(parent, tag(seq, 0), &[])?;
        p.recv(parent, tag(seq, 1))?;
    }
    for child in children {
        p.send(child, tag(seq, 1), &[])?;
    }
    Ok(())
}

/// The children of `rank` in the barrier's tree of fan-out [`FAN_OUT`].
fn fan_children(rank: usize, size: usize) -> std::ops::Range<usize> {
    let first = rank.saturating_mul(FAN_OUT).saturating_add(1).min(size);
    first..first.saturating_add(FAN_OUT).min(size)
}

/// Broadcasts the root's `buf` into every rank's `buf` (all of one length), straight from the
/// root to each rank.
///
/// Errors: a message of the wrong length, or `root` out of range.
pub fn broadcast_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    buf: &mut [u8],
) -> Result<(), P::Error> {
    let (rank, size) = rank_and_size(p, "broadcast", root)?;
    if rank != root {
        return p.recv_into(root, tag(seq, 0), buf);
    }
    to_others(p, seq, root, size, buf)
}

/// Sends the root's `data` (`Some` on the root; what others pass is ignored) straight to every
/// rank; every rank returns it. For receivers that do not know the length in advance.
///
/// Errors: a transport error, `root` out of range, or `None` on the root.
pub fn broadcast<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    data: Option<Vec<u8>>,
) -> Result<Vec<u8>, P::Error> {
    let (rank, size) = rank_and_size(p, "broadcast", root)?;
    if rank != root {
        return p.recv(root, tag(seq, 0));
    }
    let data = data.ok_or_else(|| p.malformed("broadcast: the root passed no data".to_string()))?;
    to_others(p, seq, root, size, &data)?;
    Ok(data)
}

/// The root sends `data` to every other rank.
fn to_others<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    size: usize,
    data: &[u8],
) -> Result<(), P::Error> {
    let sends: Vec<(usize, &[u8])> = (0..size).filter(|&r| r != root).map(|r| (r, data)).collect();
    p.send_each(tag(seq, 0), &sends, None)
}

/// Reduces every rank's `data` in rank order on `root`, which returns the result (others
/// `None`): every rank sends its value straight to the root, which combines them from rank 0
/// up, so the operation need not be commutative.
///
/// Errors: a transport error, the combiner's error, or `root` out of range.
pub fn reduce<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    data: Vec<u8>,
    combine: &mut Combine<'_, P::Error>,
) -> Result<Option<Vec<u8>>, P::Error> {
    let (rank, size) = rank_and_size(p, "reduce", root)?;
    if rank != root {
        p.send(root, tag(seq, 0), &data)?;
        return Ok(None);
    }
    let mut acc: Option<Vec<u8>> = None;
    for value in in_rank_order(p, seq, size, rank, data) {
        let value = value?;
        acc = Some(match acc {
            None => value,
            Some(left) => combine(&left, &value)?,
        });
    }
    // at least the root's own value was combined
    Ok(acc)
}

/// Every rank's value, in rank order, as the collecting rank `me` receives them (tag round 0);
/// its own `mine` is moved in at its place.
fn in_rank_order<'p, P: PointToPoint + ?Sized>(
    p: &'p P,
    seq: u32,
    size: usize,
    me: usize,
    mine: Vec<u8>,
) -> impl Iterator<Item = Result<Vec<u8>, P::Error>> + 'p {
    let mut mine = Some(mine);
    (0..size).map(move |src| match mine.take_if(|_| src == me) {
        Some(own) => Ok(own),
        None => p.recv(src, tag(seq, 0)),
    })
}

/// Reduces every rank's `data` in rank order; every rank returns the result: a flat
/// [`reduce`] to rank 0, which sends the result straight to every rank. Every rank gets the
/// same bytes, combined in one place.
///
/// Errors: a transport error or the combiner's error; when rank 0 fails to reduce (a value
/// that does not combine, a lost rank), it still answers every rank, which then fails too
/// rather than wait for a result that will not come.
pub fn allreduce<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    data: Vec<u8>,
    combine: &mut Combine<'_, P::Error>,
) -> Result<Vec<u8>, P::Error> {
    let (rank, size) = rank_and_size(p, "allreduce", 0)?;
    if rank != 0 {
        reduce(p, seq, 0, data, combine)?;
        return outcome(p, "allreduce", seq);
    }
    let reduced = reduce(p, seq, 0, data, combine)
        .and_then(|result| result.ok_or_else(|| p.malformed("allreduce: rank 0 got no result".to_string())));
    let parts = reduced.as_ref().map(|r| move |_| vec![&r[..]]);
    answer(p, seq, size, parts.as_ref().map_err(ToString::to_string))?;
    reduced
}

/// Every rank's block (blocks may differ in size) to every rank, in rank order: every rank
/// sends its block straight to rank 0, which sends the list of all of them straight to every
/// rank.
///
/// Errors: a transport error or a malformed message; when rank 0 fails to collect the blocks,
/// every rank fails (as for [`allreduce`]).
pub fn allgather<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: Vec<u8>,
) -> Result<Vec<Vec<u8>>, P::Error> {
    let (rank, size) = rank_and_size(p, "allgather", 0)?;
    if rank != 0 {
        p.send(0, tag(seq, 0), &block)?;
        let msg = outcome(p, "allgather", seq)?;
        return decode_blocks(p, &msg, size, "allgather: blocks from rank 0");
    }
    let collected = in_rank_order(p, seq, size, 0, block).collect::<Result<Vec<Vec<u8>>, P::Error>>();
    let list = collected.as_ref().map(|blocks| (blocks_head(blocks), blocks));
    let parts = list.as_ref().map(|(head, blocks)| {
        move |_| std::iter::once(&head[..]).chain(blocks.iter().map(|b| &b[..])).collect()
    });
    answer(p, seq, size, parts.as_ref().map_err(ToString::to_string))?;
    collected
}

/// Every rank's `block` (all of one length) into every rank's `recv` (`size * len` bytes), in
/// rank order, through rank 0: every rank sends its block straight there, into place in rank
/// 0's `recv` ([`in_place::gather_into`](crate::in_place::gather_into)), and rank 0 sends the
/// whole to every rank at once ([`broadcast_into`]). Two steps where recursive doubling takes
/// `log2(size)` and the ring `size - 1`, each of which waits for the scheduler where ranks share
/// cores; as many bytes copied into each rank as either (see
/// [`FLAT_MIN_RANKS`](crate::tuning::FLAT_MIN_RANKS) for the figures).
///
/// Errors: a message of the wrong length, or a wrongly sized `recv`.
pub fn allgather_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: &[u8],
    recv: &mut [u8],
) -> Result<(), P::Error> {
    let rank = p.rank();
    let recv = crate::in_place::blocks_of(p, "allgather", Some(recv), block.len())?;
    crate::in_place::gather_into(p, seq, 0, block, (rank == 0).then_some(&mut *recv))?;
    broadcast_into(p, seq, 0, recv)
}

/// As [`allgather_into`] with blocks of any length: rank `r`'s `block` (`lens[r]` bytes) into
/// place `r` of every rank's `recv`, the places in rank order (`MPI_Allgatherv` without
/// displacements), through rank 0: every rank sends its block there, into place
/// ([`in_place::gatherv_into`](crate::in_place::gatherv_into)), and rank 0 sends the whole to
/// every rank, or, when it failed to collect the blocks, why, so that every rank fails (as for
/// [`allreduce`]). For short blocks: the whole goes to each rank as a vector and is copied into
/// place.
///
/// Errors: a message of another length than its place, or `lens` that are not `size` lengths
/// filling `recv` with this rank's own as long as `block`.
pub fn allgatherv_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: &[u8],
    recv: &mut [u8],
    lens: &[usize],
) -> Result<(), P::Error> {
    let rank = p.rank();
    if rank != 0 {
        // rank 0's gatherv checks its own lengths, and answers every rank when they are wrong
        crate::in_place::places_of(p, "allgatherv", recv, lens, (rank, block.len()))?;
        p.send(0, tag(seq, 1), block)?;
        let all = outcome(p, "allgatherv", seq)?;
        return crate::p2p::copy_received(p, 0, &all, recv);
    }
    let gathered = crate::in_place::gatherv_into(p, seq, 0, block, Some((&mut *recv, lens)));
    let whole = |_: usize| vec![&recv[..]];
    answer(p, seq, p.size(), gathered.as_ref().map(|()| &whole).map_err(ToString::to_string))?;
    gathered
}

/// Block `d` of every rank's `send` (`size` blocks of one length) into place `r` of rank `d`'s
/// `recv`, through rank 0: every rank sends its whole `send` straight there, into place
/// ([`in_place::gather_into`](crate::in_place::gather_into)), and rank 0 sends each rank its
/// column, the blocks meant for it, in one message of `size` parts. Two hops and `2 (size - 1)`
/// messages, where the pairwise exchange takes `size - 1` hops and every rank sends `size - 1`
/// messages.
///
/// Errors: a message of the wrong length, or a `send` or `recv` not of `size` blocks of one
/// length; when rank 0 fails to collect the blocks, every rank fails (as for [`allreduce`]).
pub fn alltoall_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    recv: &mut [u8],
) -> Result<(), P::Error> {
    let (rank, size) = rank_and_size(p, "alltoall", 0)?;
    let len = send.len() / size;
    crate::alltoall::Blocks::new(p, send, recv)?;
    if rank != 0 {
        p.send(0, tag(seq, 1), send)?;
        let column = outcome(p, "alltoall", seq)?;
        return crate::p2p::copy_received(p, 0, &column, recv);
    }
    let mut rows = vec![0; size * send.len()];
    let gathered = crate::in_place::gather_into(p, seq, 0, send, Some(&mut rows));
    // cell `s * size + d`: the block rank `s` meant for rank `d`
    let cells: Vec<&[u8]> = if len == 0 { vec![&[][..]; size * size] } else { rows.chunks(len).collect() };
    let column = |d: usize| (0..size).filter_map(|s| cells.get(s * size + d).copied()).collect::<Vec<_>>();
    answer(p, seq, size, gathered.as_ref().map(|()| &column).map_err(ToString::to_string))?;
    gathered?;
    crate::p2p::copy_received(p, 0, &column(0).concat(), recv)
}

/// Prefix reduction through rank 0: every rank sends its `data` to rank 0, which combines them
/// in rank order and sends rank `r` the combination of ranks `0..=r` (`inclusive`) or `0..r`
/// (else; rank 0 then returns `None`, and every other rank `Some`). Two hops, where recursive
/// doubling takes `ceil(log2(size))` rounds of exchanges.
///
/// Errors: a transport error or the combiner's error; when rank 0 fails, every rank fails (as
/// for [`allreduce`]).
pub fn scan<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    data: Vec<u8>,
    inclusive: bool,
    combine: &mut Combine<'_, P::Error>,
) -> Result<Option<Vec<u8>>, P::Error> {
    let (rank, size) = rank_and_size(p, "scan", 0)?;
    if rank != 0 {
        p.send(0, tag(seq, 0), &data)?;
        return outcome(p, "scan", seq).map(Some);
    }
    // prefixes[r]: the combination of ranks 0..=r, computed in rank order
    let mut prefixes: Vec<Vec<u8>> = Vec::with_capacity(size);
    let mut failure = None;
    for value in in_rank_order(p, seq, size, 0, data) {
        let next = value.and_then(|v| match prefixes.last() {
            None => Ok(v),
            Some(left) => combine(left, &v),
        });
        match next {
            Ok(prefix) => prefixes.push(prefix),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    // rank `dest`'s prefix: through itself, or through the rank before
    let through = |dest: usize| if inclusive { dest } else { dest - 1 };
    let parts = |dest| vec![&prefixes[through(dest)][..]];
    answer(p, seq, size, failure.as_ref().map_or(Ok(&parts), |e| Err(e.to_string())))?;
    match failure {
        Some(e) => Err(e),
        None if inclusive => Ok(prefixes.into_iter().next()),
        None => Ok(None),
    }
}

/// First byte of rank 0's answer in [`allreduce`], [`allgather`] and [`scan`]: the result
/// follows.
const OK: u8 = 0;
/// First byte of rank 0's answer: it failed, and so must the receiver; its error follows.
const FAILED: u8 = 1;

/// Rank 0 sends every other rank `dest` its result's parts, `parts(dest)`, after [`OK`], or
/// [`FAILED`] and why when it has no result, so that nobody waits for one in vain and each
/// rank's error tells the cause (rank 0's own may not be seen: the launcher ends the job when
/// the first rank fails).
fn answer<'a, P: PointToPoint + ?Sized, F: Fn(usize) -> Vec<&'a [u8]>>(
    p: &P,
    seq: u32,
    size: usize,
    parts: Result<&F, String>,
) -> Result<(), P::Error> {
    for dest in 1..size {
        let message: Vec<&[u8]> = match &parts {
            Ok(f) => std::iter::once(&[OK][..]).chain(f(dest)).collect(),
            Err(why) => vec![&[FAILED], why.as_bytes()],
        };
        p.send_parts(dest, tag(seq, 1), &message)?;
    }
    Ok(())
}

/// Receives rank 0's [`answer`]: the result, or an error when rank 0 failed.
fn outcome<P: PointToPoint + ?Sized>(p: &P, what: &str, seq: u32) -> Result<Vec<u8>, P::Error> {
    let mut msg = p.recv(0, tag(seq, 1))?;
    match msg.first() {
        Some(&OK) => {
            msg.remove(0);
            Ok(msg)
        }
        Some(&FAILED) => {
            Err(p.malformed(format!("{what}: rank 0 failed: {}", String::from_utf8_lossy(&msg[1..]))))
        }
        _ => Err(p.malformed(format!("{what}: rank 0 answered with an unknown status"))),
    }
}

/// Sends `blocks[d]` to rank `d` for every `d` (exactly `size` blocks, which may differ in
/// size); returns the blocks received, indexed by source. Every block goes at once, then every
/// block is received: one hop, where the pairwise exchange takes `size - 1` in a row. Only for
/// transports whose sends never wait for the receiver (the runtime's sockets, whose progress
/// thread reads whatever no receive waits for), or the sends could wait for each other.
///
/// Errors: a transport error, or a number of blocks other than `size`.
pub fn alltoall<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    blocks: Vec<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, P::Error> {
    let (rank, size) = rank_and_size(p, "alltoall", 0)?;
    if blocks.len() != size {
        let n = blocks.len();
        return Err(p.malformed(format!("alltoall: rank {rank} passed {n} blocks for {size} ranks")));
    }
    // each rank starts with its next neighbour, so that not everyone writes to rank 0 first
    for to in (1..size).map(|k| (rank + k) % size) {
        p.send(to, tag(seq, 0), &blocks[to])?;
    }
    let mut blocks = blocks;
    let mut received: Vec<Vec<u8>> = vec![Vec::new(); size];
    received[rank] = std::mem::take(&mut blocks[rank]);
    for from in (1..size).map(|k| (rank + size - k) % size) {
        received[from] = p.recv(from, tag(seq, 0))?;
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads::ThreadGroup;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A value of `len` bytes distinct for each rank.
    fn value(rank: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| (rank * 31 + i * 7) as u8).collect()
    }

    /// Concatenation: associative, not commutative, so any reordering shows.
    fn concat<E>(left: &[u8], right: &[u8]) -> Result<Vec<u8>, E> {
        Ok([left, right].concat())
    }

    /// Nobody leaves the barrier before everybody has entered it, for every size 1..=17 and at
    /// sizes where the tree has two and three levels.
    #[test]
    fn barrier_lets_nobody_out_early() {
        for size in (1..=17).chain([FAN_OUT + 2, 3 * FAN_OUT, FAN_OUT * FAN_OUT + FAN_OUT + 2]) {
            let entered = AtomicUsize::new(0);
            ThreadGroup::run(size, |p| {
                for seq in 0..3 {
                    entered.fetch_add(1, Ordering::SeqCst);
                    barrier(&p, 2 * seq).expect("barrier");
                    let seen = entered.load(Ordering::SeqCst);
                    assert!(seen >= size * (seq as usize + 1), "size {size}: left after {seen}");
                    barrier(&p, 2 * seq + 1).expect("barrier");
                }
            });
        }
    }

    /// Every rank of the tree has one parent that lists it, so every rank is reached.
    #[test]
    fn fan_tree_covers_every_rank_once() {
        for size in 1..=300 {
            let mut seen = vec![0; size];
            for r in 0..size {
                for c in fan_children(r, size) {
                    assert_eq!((c - 1) / FAN_OUT, r);
                    seen[c] += 1;
                }
            }
            assert!(seen[1..].iter().all(|&n| n == 1) && seen[0] == 0, "size {size}");
        }
    }

    /// Broadcast, reduce, allreduce and allgather against the obvious results, for every size
    /// 1..=17, every root, and lengths 0, 1 and uneven.
    #[test]
    fn match_the_reference() {
        for size in 1..=17 {
            ThreadGroup::run(size, |p| {
                let rank = p.rank();
                let mut seq = 0;
                for root in 0..size {
                    for len in [0, 1, 13] {
                        let mut buf = if rank == root { value(root, len) } else { vec![0; len] };
                        broadcast_into(&p, seq, root, &mut buf).expect("broadcast");
                        assert_eq!(buf, value(root, len));
                        let mine = (rank == root).then(|| value(root, len + 2));
                        let got = broadcast(&p, seq + 1000, root, mine).expect("typed broadcast");
                        assert_eq!(got, value(root, len + 2));
                        let got =
                            reduce(&p, seq + 1, root, value(rank, len + rank), &mut concat).expect("reduce");
                        let expected: Vec<u8> = (0..size).flat_map(|r| value(r, len + r)).collect();
                        assert_eq!(got, (rank == root).then(|| expected.clone()));
                        seq += 2;
                    }
                }
                let got = allreduce(&p, seq, value(rank, rank % 3), &mut concat).expect("allreduce");
                let expected: Vec<u8> = (0..size).flat_map(|r| value(r, r % 3)).collect();
                assert_eq!(got, expected);
                let got = allgather(&p, seq + 1, value(rank, rank)).expect("allgather");
                assert_eq!(got, (0..size).map(|r| value(r, r)).collect::<Vec<_>>());
                for len in [0, 1, 13] {
                    let mut all = vec![0; size * len];
                    allgather_into(&p, seq + 6 + len as u32, &value(rank, len), &mut all)
                        .expect("allgather_into");
                    assert_eq!(all, (0..size).flat_map(|r| value(r, len)).collect::<Vec<_>>());
                }
                // block (s, d): what rank s sends rank d, of a length of its own
                let block = |s: usize, d: usize| value(s * 100 + d, (s + 2 * d) % 5);
                let got =
                    alltoall(&p, seq + 2, (0..size).map(|d| block(rank, d)).collect()).expect("alltoall");
                assert_eq!(got, (0..size).map(|s| block(s, rank)).collect::<Vec<_>>());
                assert!(alltoall(&p, seq + 3, vec![Vec::new(); size + 1]).is_err());
                let value = value(rank, rank % 3 + 1);
                let got = scan(&p, seq + 4, value.clone(), true, &mut concat).expect("scan");
                assert_eq!(got, Some((0..=rank).flat_map(|r| super::tests::value(r, r % 3 + 1)).collect()));
                let got = scan(&p, seq + 5, value, false, &mut concat).expect("exscan");
                let before: Vec<u8> = (0..rank).flat_map(|r| super::tests::value(r, r % 3 + 1)).collect();
                assert_eq!(got, (rank > 0).then_some(before));
            });
        }
    }

    /// A value that does not combine at rank 0 (the last rank's is longer) fails the allreduce
    /// on every rank, none waiting for ever, and the next collective still works.
    #[test]
    fn a_failure_at_rank_0_fails_every_rank() {
        for size in [2, 4, 9] {
            ThreadGroup::run(size, |p| {
                let rank = p.rank();
                let mut same_length = |left: &[u8], right: &[u8]| {
                    if left.len() == right.len() {
                        Ok(left.to_vec())
                    } else {
                        Err(p.malformed("length".into()))
                    }
                };
                let value = vec![1; if rank == size - 1 { 3 } else { 2 }];
                assert!(allreduce(&p, 0, value.clone(), &mut same_length).is_err(), "rank {rank} of {size}");
                let got = scan(&p, 2, value, true, &mut same_length);
                assert!(got.is_err(), "rank {rank} of {size}: {got:?}");
                let got = allgather(&p, 1, vec![rank as u8]);
                assert_eq!(
                    got.ok(),
                    Some((0..size as u8).map(|r| vec![r]).collect()),
                    "rank {rank} of {size}"
                );
            });
        }
    }

    /// The all-to-all through rank 0: every block where it belongs at every size, and a rank
    /// whose blocks are longer than the others' makes every rank fail, nobody left waiting.
    #[test]
    fn alltoall_through_rank_0() {
        crate::testutil::alltoall_every_size(|p, send, recv| alltoall_into(p, 6, send, recv));
        for size in [2, 4, 9] {
            ThreadGroup::run(size, |p| {
                let len = if p.rank() == size - 1 { 3 } else { 2 };
                let got = alltoall_into(&p, 0, &vec![1; size * len], &mut vec![0; size * len]);
                assert!(got.is_err(), "rank {} of {size}", p.rank());
            });
        }
    }

    /// The allgather of blocks of varying length through rank 0: every block in its place at
    /// every size; a rank whose block is longer than the lengths say (all ranks passing the
    /// same lengths, its block of another length) makes every rank fail, nobody left waiting.
    #[test]
    fn allgatherv_through_rank_0() {
        crate::testutil::allgatherv_every_size(
            "flat",
            |p, block, recv, lens| allgatherv_into(p, 5, block, recv, lens),
            |_| true,
        );
        for size in [2, 4, 9] {
            ThreadGroup::run(size, |p| {
                let last = p.rank() == size - 1;
                // the last rank says its block is 3 bytes long, the others that it is 2
                let lens: Vec<usize> = (0..size).map(|r| if last && r == size - 1 { 3 } else { 2 }).collect();
                let block = vec![1; lens[p.rank()]];
                let mut recv = vec![0; lens.iter().sum()];
                let got = allgatherv_into(&p, 0, &block, &mut recv, &lens);
                assert!(got.is_err(), "rank {} of {size}", p.rank());
                let got = allgather(&p, 1, vec![p.rank() as u8]);
                assert!(got.is_ok(), "the next collective, rank {} of {size}: {got:?}", p.rank());
            });
        }
    }

    /// A broadcast into a buffer of another length fails on that rank; a root out of range
    /// fails everywhere.
    #[test]
    fn bad_arguments_are_errors() {
        ThreadGroup::run(3, |p| {
            let mut buf = vec![0; if p.rank() == 2 { 5 } else { 4 }];
            let got = broadcast_into(&p, 0, 0, &mut buf);
            assert_eq!(got.is_err(), p.rank() == 2);
            assert!(broadcast_into(&p, 1, 3, &mut buf).is_err());
            assert!(reduce(&p, 2, 7, vec![], &mut concat).is_err());
        });
    }
}
