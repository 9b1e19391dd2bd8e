//! Dissemination barrier (Hensgen, Finkel and Manber), for any number of ranks.

use crate::p2p::{PointToPoint, tag};

/// Blocks until every rank of the group has entered the barrier with the same `seq`.
///
/// In round `k` each rank sends an empty message to `rank + 2^k` and receives one from
/// `rank - 2^k` (modulo the size), so it takes `ceil(log2(size))` rounds for any size, not just
/// powers of two.
pub fn barrier<P: PointToPoint + ?Sized>(p: &P, seq: u32) -> Result<(), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    let mut distance = 1;
    let mut round = 0;
    while distance < size {
        let to = (rank + distance) % size;
        let from = (rank + size - distance) % size;
        p.send(to, tag(seq, round), &[])?;
        p.recv(from, tag(seq, round))?;
        distance *= 2;
        round += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads::ThreadGroup;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Nobody leaves a barrier before everybody has entered it, for every size 1..=17.
    #[test]
    fn nobody_leaves_early() {
        for size in 1..=17 {
            let entered = AtomicUsize::new(0);
            ThreadGroup::run(size, |p| {
                for seq in 0..3 {
                    entered.fetch_add(1, Ordering::SeqCst);
                    barrier(&p, seq).expect("barrier");
                    let seen = entered.load(Ordering::SeqCst);
                    assert!(seen >= size * (seq as usize + 1), "size {size}: left after {seen}");
                    // second barrier so that nobody enters the next round before all have checked
                    barrier(&p, seq + 1000).expect("barrier");
                }
            });
        }
    }
}
