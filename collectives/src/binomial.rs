//! Binomial trees over relative ranks `0..size`, rooted at relative rank 0.
//!
//! The parent of `v > 0` is `v` with its lowest set bit cleared; the children of `v` are `v + m`
//! for the powers of two `m` below `v`'s lowest set bit (below `size` for the root) with
//! `v + m < size`. The subtree of `v` is the contiguous range `v..v + subtree_len(v, size)`, and
//! the subtrees of `v`'s children, in increasing order, tile `v + 1..v + subtree_len(v, size)`.

/// The parent of relative rank `v`, or `None` for the root.
pub(crate) fn parent(v: usize) -> Option<usize> {
    (v != 0).then(|| v & (v - 1))
}

/// Bound on the child offsets of `v`: its lowest set bit, or `size` for the root.
fn limit(v: usize, size: usize) -> usize {
    if v == 0 { size } else { 1 << v.trailing_zeros() }
}

/// Number of relative ranks in the subtree rooted at `v` (including `v`), 0 if `v >= size`.
pub(crate) fn subtree_len(v: usize, size: usize) -> usize {
    limit(v, size).min(size.saturating_sub(v))
}

/// The children of `v`, nearest (smallest subtree) first.
pub(crate) fn children(v: usize, size: usize) -> impl DoubleEndedIterator<Item = usize> {
    // Number of powers of two below `limit` (which is at least 1 unless size is 0).
    let count = usize::BITS - limit(v, size).saturating_sub(1).leading_zeros();
    (0..count).map(move |k| v.saturating_add(1 << k)).filter(move |&c| c < size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every non-root has exactly the parent that lists it as a child, and subtrees tile.
    #[test]
    fn tree_is_consistent() {
        for size in 1..=40 {
            assert_eq!(subtree_len(0, size), size);
            for v in 0..size {
                let kids: Vec<usize> = children(v, size).collect();
                for &c in &kids {
                    assert_eq!(parent(c), Some(v), "size {size}: child {c} of {v}");
                }
                let mut next = v + 1;
                for &c in &kids {
                    assert_eq!(c, next);
                    next += subtree_len(c, size);
                }
                assert_eq!(next, v + subtree_len(v, size));
                if let Some(par) = parent(v) {
                    assert!(children(par, size).any(|c| c == v));
                }
            }
        }
    }
}
