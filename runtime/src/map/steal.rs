//! The steal thread of each rank, and the policy of who steals from whom: random victims near
//! the thief, and the root's directions by the counts of unstarted items it keeps.

use super::work::Work;
use super::{Blocks, FORWARD, GIVE, HOLD_LIMIT, LOAD, MAX_VICTIMS, STEAL, lock, send_to};
use crate::codec;
use crate::communicator::Communicator;
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Opens this rank's connections to `peers` (its victims and the root; at the root, every rank)
/// until `over`, on a thread started once this rank's first batch has ended: the thieves that
/// run dry together at the end of a map then find their victims a message away, instead of a
/// connection and a handshake away on a crowded machine (which took 1 to 2 ms per steal with 16
/// ranks on 2 cores). Starting after the first batch keeps the handshakes, and the thread's own
/// start, from delaying the ranks' first items. Connections stay open for later maps and
/// messages; one that fails is left to the send that needs it, which reports it.
pub(super) fn open_connections(comm: &Communicator, peers: &[usize], over: &AtomicBool) {
    for &peer in peers {
        if over.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(dest) = comm.world_rank_of(peer) {
            let _ = comm.shared_engine().open(dest);
        }
    }
}

/// The steal thread: answers every steal request at once with half of the items this rank has not
/// started ([`Work::steal`]), a thief's own or one the root passed on ([`FORWARD`]), until this
/// rank asks it to stop. A victim that gives tells the root how many it has left. A refused thief
/// is pointed at the rank this one last dealt work with; the root, rather than refuse, passes the
/// request on to the rank with the most work by the counts the ranks report ([`direct`],
/// [`forward`]), and when no rank has any, the thief's request waits here until a count rises above
/// zero, the map ends or [`HOLD_LIMIT`] passes, so that the idle ranks of a map's last moments
/// sleep rather than ask each other round in circles.
pub(super) fn serve_steals<T: Serialize + Send>(
    comm: &Communicator,
    root: usize,
    loads: &Mutex<Vec<u64>>,
    steals: u64,
    replies: u64,
    work: &Mutex<Work<T>>,
    hint: &AtomicUsize,
) {
    // `loads`, at the root only: how many items each rank has not started, as dealt, reported
    // or directed; `waiting`: the thieves the root could not yet point anywhere
    let at_root = !lock(loads).is_empty();
    let mut waiting: Vec<(usize, u64)> = Vec::new();
    let me = comm.rank();
    loop {
        let Ok(pattern) = comm.pattern_on(steals, None, None) else { return };
        let request = if waiting.is_empty() {
            comm.shared_engine().recv(&pattern).map(Some)
        } else {
            comm.shared_engine().mailbox().recv_timeout(&pattern, HOLD_LIMIT)
        };
        let request = match request {
            Ok(Some(request)) => request,
            Ok(None) => {
                // held too long: the counts may have missed some work, so let the waiting
                // thieves look for themselves (they come back here when they find none)
                for (waiter, _) in waiting.drain(..) {
                    let _ = send_to(comm, waiter, replies, GIVE, &(Blocks::<T>::new(), u64::MAX, u64::MAX));
                }
                continue;
            }
            Err(_) => return,
        };
        let thief = comm.member_of(request.src);
        if request.tag == LOAD {
            let mut loads = lock(loads);
            if let (Some(load), Ok(n)) = (loads.get_mut(thief), codec::decode(&request.data, thief, LOAD)) {
                *load = n;
            }
            // pass the waiting thieves on to the work that appeared, as long as there is some
            while let Some(&(waiter, asked)) = waiting.last() {
                let (victim, want) = direct(&mut loads, waiter, asked, false);
                if victim == u64::MAX {
                    break;
                }
                waiting.pop();
                forward::<T>(comm, steals, replies, waiter, victim, want, false);
            }
            continue;
        }
        let (thief, want, ahead) = if request.tag == FORWARD {
            match codec::decode::<(u64, u64, bool)>(&request.data, thief, FORWARD) {
                Ok((t, want, ahead)) if (t as usize) < comm.size() && t as usize != me => {
                    (t as usize, want, ahead)
                }
                _ => continue,
            }
        } else if thief == me {
            return;
        } else {
            let (want, ahead) =
                codec::decode::<(u64, bool)>(&request.data, thief, STEAL).unwrap_or((u64::MAX, false));
            (thief, want, ahead)
        };
        let (given, left) = {
            let mut work = lock(work);
            let given = work.give(usize::try_from(want).unwrap_or(usize::MAX), ahead);
            let left = work.len() as u64;
            if !given.is_empty() && !at_root {
                // the root hears what is left here (holding the lock: see `report_load`)
                let _ = send_to(comm, root, steals, LOAD, &left);
            }
            (given, left)
        };
        // a thief that has gone has left the map: its items were not given to anyone else, but
        // the map is over once any rank has left it (only the root's DONE lets ranks go)
        if !given.is_empty() {
            // having given, remember the thief as the rank that holds half of what this had
            hint.store(thief, Ordering::Relaxed);
            if at_root {
                lock(loads)[me] = left;
            }
            let _ = send_to(comm, thief, replies, GIVE, &(given, u64::MAX, u64::MAX));
            continue;
        }
        if !at_root {
            // with nothing to give, point the thief at the rank this one last dealt with
            let _ =
                send_to(comm, thief, replies, GIVE, &(given, hint.load(Ordering::Relaxed) as u64, u64::MAX));
            continue;
        }
        // a thief has nothing left (it asks only when dry), nor has the root, which just gave
        // nothing (left at the deal's count, it sent thieves back to itself)
        let (victim, want) = {
            let mut loads = lock(loads);
            loads[thief] = 0;
            loads[me] = 0;
            direct(&mut loads, thief, want, ahead)
        };
        if victim == u64::MAX {
            if ahead {
                // the thief is still busy: it asks again when it runs dry
                let _ = send_to(comm, thief, replies, GIVE, &(given, u64::MAX, u64::MAX));
            } else {
                waiting.push((thief, want));
            }
            continue;
        }
        forward::<T>(comm, steals, replies, thief, victim, want, ahead);
    }
}

/// At the root: passes `thief`'s request for `want` items on to `victim` (a rank number from
/// [`direct`]), which answers the thief itself: one message less than pointing the thief there
/// (with 16 ranks on 2 cores, each hop of a map's last moments took 0.1 to 1 ms). Should that
/// fail, points the thief there instead.
fn forward<T: Serialize>(
    comm: &Communicator,
    steals: u64,
    replies: u64,
    thief: usize,
    victim: u64,
    want: u64,
    ahead: bool,
) {
    let passed = usize::try_from(victim)
        .is_ok_and(|v| send_to(comm, v, steals, FORWARD, &(thief as u64, want, ahead)).is_ok());
    if !passed {
        let _ = send_to(comm, thief, replies, GIVE, &(Blocks::<T>::new(), victim, want));
    }
}

/// The ranks rank `rank` of `size` steals from at random: those of `near` (the other ranks on
/// its host, empty when all are on it or where ranks run is not known) or else every other rank,
/// and of those the [`MAX_VICTIMS`] nearest around the ring of ranks, by distance and then
/// number (so that of every pair of ranks, each is among the other's or neither is). A refused thief then follows where the refuser points and asks the root, which knows
/// the counts of every rank, so work elsewhere is still found; the first try stays on the host,
/// where a steal costs a Unix socket's round trip rather than a network's (Cilk-style clusters
/// steal locally first for the same reason).
pub(super) fn victims_of(rank: usize, size: usize, near: Vec<usize>) -> Vec<usize> {
    let mut victims = if near.is_empty() { (0..size).filter(|&r| r != rank).collect() } else { near };
    let distance = |r: usize| ((r + size - rank) % size).min((rank + size - r) % size);
    victims.sort_by_key(|&r| (distance(r), r));
    victims.truncate(MAX_VICTIMS);
    victims
}

/// A victim for a random steal from the random number `r`, among `victims` (not empty).
pub(super) fn random_victim(r: u64, victims: &[usize]) -> usize {
    victims[(r % victims.len() as u64) as usize]
}

/// The root's pick for a refused thief: the rank with the most items not started, as the ranks
/// last reported (`u64::MAX`, none, when every count is zero), and how many items to ask it for:
/// a fair share of all the items left (half of the victim's at most), so that when many ranks
/// are idle at the end of a map each gets a little at once, instead of the first taking half and
/// the others queueing behind it. The victim's count drops as if the thief had taken them, so the
/// next thieves go elsewhere or take the rest; the thief's stays at zero until it reports what it
/// got (counting it there at once would send other thieves to a rank that may be refused).
/// Ranks report when they get work, before each batch when their count has halved or is small,
/// and after giving to a thief, so the counts lag by one batch at most.
pub(super) fn direct(loads: &mut [u64], thief: usize, asked: u64, ahead: bool) -> (u64, u64) {
    let most = loads.iter().enumerate().filter(|&(r, _)| r != thief).max_by_key(|&(_, &n)| n);
    let Some((victim, &n)) = most else { return (u64::MAX, u64::MAX) };
    // a request ahead takes half at most, and nothing from a rank's last item
    let most_given = if ahead { n / 2 } else { n - n / 2 };
    if most_given == 0 {
        return (u64::MAX, u64::MAX);
    }
    let left: u64 = loads.iter().sum();
    let want = left.div_ceil(loads.len() as u64).clamp(1, most_given).min(asked.max(1));
    loads[victim] = n - want;
    (victim as u64, want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_steals_stay_on_the_host_when_it_has_other_ranks() {
        let mut seen = [0usize; 8];
        let (host, all) = (victims_of(1, 8, vec![0, 2, 3]), victims_of(1, 8, Vec::new()));
        for r in 0..4000u64 {
            let r = r.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let v = random_victim(r, &host);
            assert!([0, 2, 3].contains(&v), "rank 1 stole from {v}, off its host");
            seen[v] += 1;
            let any = random_victim(r, &all);
            assert!(any != 1 && any < 8, "{any}");
            seen[any] += 1;
        }
        // every rank of the host, and with no host ranks every other rank, gets picked
        assert!(seen.iter().enumerate().all(|(v, &n)| (v == 1) == (n == 0)), "{seen:?}");
    }

    /// Up to [`MAX_VICTIMS`] + 1 ranks, every other rank is a victim; beyond, the nearest around
    /// the ring, and of every pair of ranks each is among the other's victims or neither is.
    #[test]
    fn victims_are_the_nearest_around_the_ring_and_mutual() {
        for size in [2, 5, MAX_VICTIMS + 1, MAX_VICTIMS + 2, 33, 64] {
            let all: Vec<Vec<usize>> = (0..size).map(|r| victims_of(r, size, Vec::new())).collect();
            for (r, v) in all.iter().enumerate() {
                assert_eq!(v.len(), (size - 1).min(MAX_VICTIMS), "size {size} rank {r}");
                assert!(!v.contains(&r), "size {size}: rank {r} steals from itself");
                for &p in v {
                    assert!(all[p].contains(&r), "size {size}: {r} steals from {p}, not {p} from {r}");
                }
            }
        }
        let v = victims_of(0, 64, Vec::new());
        assert_eq!(&v[..4], [1, 63, 2, 62]);
        assert!(v.iter().all(|&p| p <= 8 || p >= 56), "{v:?}");
    }

    #[test]
    fn the_root_directs_thieves_to_a_fair_share_of_the_most_loaded() {
        // 16 items left over 4 ranks: each should end with about 4
        let mut loads = vec![0, 12, 4, 0];
        assert_eq!(direct(&mut loads, 0, u64::MAX, false), (1, 4));
        assert_eq!(loads, vec![0, 8, 4, 0]);
        // the thieves' counts wait for their own reports
        loads[0] = 4;
        assert_eq!(direct(&mut loads, 3, u64::MAX, false), (1, 4));
        assert_eq!(loads, vec![4, 4, 4, 0]);
        // one item left: its holder keeps running it, a thief may take it
        let mut loads = vec![0, 1, 0];
        assert_eq!(direct(&mut loads, 2, u64::MAX, false), (1, 1));
        assert_eq!(loads, vec![0, 0, 0]);
        // nothing anywhere (or only the thief's own): no hint
        assert_eq!(direct(&mut [0, 0, 0], 1, u64::MAX, false), (u64::MAX, u64::MAX));
        assert_eq!(direct(&mut [0, 5], 1, u64::MAX, false), (u64::MAX, u64::MAX));
        // a thief asking ahead for one item takes it from a rank with two at least
        let mut loads = vec![0, 1, 3, 0];
        assert_eq!(direct(&mut loads, 0, 1, true), (2, 1));
        assert_eq!(loads, vec![0, 1, 2, 0]);
        assert_eq!(direct(&mut loads, 3, 1, true), (2, 1));
        assert_eq!(direct(&mut loads, 0, 1, true), (u64::MAX, u64::MAX));
        assert_eq!(loads, vec![0, 1, 1, 0]);
    }
}
