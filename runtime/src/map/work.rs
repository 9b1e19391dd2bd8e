//! The items one rank holds and has not started, and what a thief gets of them.

use super::Blocks;
use std::collections::VecDeque;

/// A contiguous range of items: indices `lo..lo + items.len()`.
pub(super) struct Block<T> {
    lo: usize,
    items: VecDeque<T>,
}

/// The items this rank holds and has not started, as blocks in index order, and how many.
pub(super) struct Work<T> {
    blocks: VecDeque<Block<T>>,
    len: usize,
}

impl<T> Work<T> {
    pub(super) fn new(blocks: Blocks<T>) -> Work<T> {
        let mut work = Work { blocks: VecDeque::new(), len: 0 };
        work.add(blocks);
        work
    }

    /// Adds `blocks` after the ones held (empty ones are dropped).
    pub(super) fn add(&mut self, blocks: Blocks<T>) {
        for (lo, items) in blocks.into_iter().filter(|(_, items)| !items.is_empty()) {
            self.len += items.len();
            self.blocks.push_back(Block { lo: lo as usize, items: items.into() });
        }
    }

    /// How many items are left.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Takes up to `count` items from the front of the first block: the first one's index and
    /// the items (none when no item is left).
    pub(super) fn take_front(&mut self, count: usize) -> (usize, Vec<T>) {
        let Some(front) = self.blocks.front_mut() else { return (0, Vec::new()) };
        let count = count.min(front.items.len());
        let first = front.lo;
        front.lo += count;
        let items: Vec<T> = front.items.drain(..count).collect();
        if front.items.is_empty() {
            self.blocks.pop_front();
        }
        self.len -= items.len();
        (first, items)
    }

    /// Gives a thief half of the items not started, or only the first `want` items when that is
    /// fewer. Half is every other block (the first, third, ...) when there are several, so that
    /// both halves still sample the blocks' spread; else the front half (rounded up) of the last
    /// block. The thief gets the front because this rank is busy with the batch it has taken:
    /// even its last unstarted item is better started by an idle thief, and both go on running
    /// the lowest indices first, so a list whose costly items come first ends on cheap ones
    /// everywhere.
    pub(super) fn steal(&mut self, want: usize) -> Blocks<T> {
        let len = self.len();
        if want < len - len / 2 {
            let mut given = Vec::new();
            let mut left = want;
            while left > 0 {
                let (lo, items) = self.take_front(left);
                left -= items.len();
                given.push((lo as u64, items));
            }
            return given;
        }
        if self.blocks.len() >= 2 {
            let (mut given, mut kept) = (Vec::new(), VecDeque::new());
            for (i, b) in self.blocks.drain(..).enumerate() {
                if i % 2 == 0 {
                    self.len -= b.items.len();
                    given.push((b.lo as u64, Vec::from(b.items)));
                } else {
                    kept.push_back(b);
                }
            }
            self.blocks = kept;
            return given;
        }
        // one block (or none): its front half
        let (lo, items) = self.take_front(len - len / 2);
        if items.is_empty() {
            return Vec::new();
        }
        vec![(lo as u64, items)]
    }

    /// What a thief's request for `want` items gets ([`Work::steal`]); a request `ahead`, from a
    /// rank still busy with its last batch, gets half at most, so never this rank's last item,
    /// which this rank starts sooner than the thief would.
    pub(super) fn give(&mut self, want: usize, ahead: bool) -> Blocks<T> {
        let want = if ahead { want.min(self.len() / 2) } else { want };
        if want == 0 { Vec::new() } else { self.steal(want) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(blocks: &[(u64, std::ops::Range<u32>)]) -> Work<u32> {
        Work::new(blocks.iter().map(|(lo, r)| (*lo, r.clone().collect())).collect())
    }

    fn left(w: &Work<u32>) -> Vec<(usize, Vec<u32>)> {
        w.blocks.iter().map(|b| (b.lo, b.items.iter().copied().collect())).collect()
    }

    #[test]
    fn batches_come_from_the_front_across_blocks() {
        let mut w = work(&[(0, 0..3), (10, 10..12)]);
        assert_eq!(w.len(), 5);
        assert_eq!(w.take_front(2), (0, vec![0, 1]));
        assert_eq!(w.len(), 3);
        assert_eq!(w.take_front(5), (2, vec![2]));
        assert_eq!(w.take_front(5), (10, vec![10, 11]));
        assert_eq!(w.take_front(5), (0, vec![]));
        assert!(w.blocks.is_empty());
    }

    #[test]
    fn thieves_get_every_other_block_then_the_front_half_of_the_last() {
        let mut w = work(&[(0, 0..2), (10, 10..12), (20, 20..22)]);
        let given = w.steal(usize::MAX);
        assert_eq!(given, vec![(0, vec![0, 1]), (20, vec![20, 21])]);
        assert_eq!(left(&w), vec![(10, vec![10, 11])]);
        assert_eq!(w.len(), 2);
        let mut w = work(&[(5, 5..10)]);
        assert_eq!(w.steal(usize::MAX), vec![(5, vec![5, 6, 7])]);
        assert_eq!(left(&w), vec![(8, vec![8, 9])]);
        assert_eq!(w.steal(usize::MAX), vec![(8, vec![8])]);
        assert_eq!(w.steal(usize::MAX), vec![(9, vec![9])]);
        assert!(w.blocks.is_empty());
        assert_eq!(w.steal(usize::MAX), vec![]);
        // empty blocks are dropped on arrival
        assert!(work(&[(3, 3..3)]).blocks.is_empty());
    }

    #[test]
    fn a_thief_can_ask_for_fewer_than_half() {
        let mut w = work(&[(0, 0..2), (10, 10..20)]);
        assert_eq!(w.steal(3), vec![(0, vec![0, 1]), (10, vec![10])]);
        assert_eq!(w.steal(1), vec![(11, vec![11])]);
        assert_eq!(left(&w), vec![(12, (12..20).collect())]);
        assert_eq!(w.len(), 8);
        // asking for half or more gets half
        assert_eq!(w.steal(5), vec![(12, vec![12, 13, 14, 15])]);
        assert_eq!(w.steal(0), vec![]);
        assert_eq!(left(&w), vec![(16, vec![16, 17, 18, 19])]);
        w.add(vec![(30, vec![30]), (40, vec![])]);
        assert_eq!((w.len(), w.blocks.len()), (5, 2));
    }

    /// A request ahead never takes a victim's last item, and at most half of the rest.
    #[test]
    fn a_thief_asking_ahead_leaves_the_victim_its_next_item() {
        let mut w = work(&[(0, 0..1)]);
        assert_eq!(w.give(1, true), vec![]);
        assert_eq!(w.give(1, false), vec![(0, vec![0])]);
        let mut w = work(&[(0, 0..3)]);
        assert_eq!(w.give(u64::MAX as usize, true), vec![(0, vec![0])]);
        assert_eq!(w.give(1, true), vec![(1, vec![1])]);
        assert_eq!(w.give(1, true), vec![]);
        assert_eq!(left(&w), vec![(2, vec![2])]);
    }
}
