//! Near-equal partitions of a buffer into contiguous parts, and checked slicing of them.

use crate::p2p::PointToPoint;
use std::ops::Range;

/// Start of part `i` (equivalently, end of part `i - 1`) when `total` items are split into
/// `parts` contiguous parts whose sizes differ by at most one, larger parts first.
///
/// `bound(total, parts, parts) == total`; `i` is clamped to `parts`, and zero parts have no items.
pub(crate) fn bound(total: usize, parts: usize, i: usize) -> usize {
    if parts == 0 {
        return 0;
    }
    let (base, rem) = (total / parts, total % parts);
    let i = i.min(parts);
    // i * base <= parts * base <= total: no overflow.
    i * base + i.min(rem)
}

/// Items of parts `first..first + count` of `total` items split into `parts` near-equal parts,
/// each part `unit` bytes per item, as a byte range. `total * unit` must not overflow.
pub(crate) fn bytes_of_parts(
    total: usize,
    parts: usize,
    first: usize,
    count: usize,
    unit: usize,
) -> Range<usize> {
    let end = first.saturating_add(count);
    bound(total, parts, first) * unit..bound(total, parts, end) * unit
}

/// `&buf[range]`, or a malformed-message error (naming `what`) if the range is out of bounds.
pub(crate) fn slice<'a, P: PointToPoint + ?Sized>(
    p: &P,
    buf: &'a [u8],
    range: Range<usize>,
    what: &str,
) -> Result<&'a [u8], P::Error> {
    let len = buf.len();
    buf.get(range.clone())
        .ok_or_else(|| p.malformed(format!("{what}: bytes {range:?} outside a {len}-byte buffer")))
}

/// `&mut buf[range]`, or a malformed-message error (naming `what`) if the range is out of bounds.
pub(crate) fn slice_mut<'a, P: PointToPoint + ?Sized>(
    p: &P,
    buf: &'a mut [u8],
    range: Range<usize>,
    what: &str,
) -> Result<&'a mut [u8], P::Error> {
    let len = buf.len();
    buf.get_mut(range.clone())
        .ok_or_else(|| p.malformed(format!("{what}: bytes {range:?} outside a {len}-byte buffer")))
}

/// Copies `data` into `buf[range]`, or returns a malformed-message error (naming `what`) if
/// `data` does not have exactly the range's length or the range is out of bounds.
pub(crate) fn fill<P: PointToPoint + ?Sized>(
    p: &P,
    buf: &mut [u8],
    range: Range<usize>,
    data: &[u8],
    what: &str,
) -> Result<(), P::Error> {
    if data.len() != range.len() {
        return Err(p.malformed(format!("{what}: got {} bytes, expected {}", data.len(), range.len())));
    }
    slice_mut(p, buf, range, what)?.copy_from_slice(data);
    Ok(())
}

/// `buf[a]` to read and `buf[b]` to write, two byte ranges that must not overlap; an error
/// naming `what` when they do or one lies outside `buf`.
pub(crate) fn disjoint_ranges<'a, P: PointToPoint + ?Sized>(
    p: &P,
    buf: &'a mut [u8],
    a: Range<usize>,
    b: Range<usize>,
    what: &str,
) -> Result<(&'a [u8], &'a mut [u8]), P::Error> {
    if a.end <= b.start {
        let (low, high) = buf.split_at_mut(b.start);
        Ok((slice(p, low, a, what)?, slice_mut(p, high, 0..b.len(), what)?))
    } else if b.end <= a.start {
        let (low, high) = buf.split_at_mut(a.start);
        Ok((slice(p, high, 0..a.len(), what)?, slice_mut(p, low, b, what)?))
    } else {
        Err(p.malformed(format!("{what}: byte ranges {a:?} and {b:?} overlap")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts cover the items exactly, in order, and differ in size by at most one.
    #[test]
    fn parts_are_near_equal_and_cover() {
        for total in 0..40 {
            for parts in 1..20 {
                assert_eq!(bound(total, parts, 0), 0);
                assert_eq!(bound(total, parts, parts), total);
                assert_eq!(bound(total, parts, parts + 5), total);
                let sizes: Vec<usize> =
                    (0..parts).map(|i| bound(total, parts, i + 1) - bound(total, parts, i)).collect();
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1), "{total}/{parts}: {sizes:?}");
                assert!(sizes.windows(2).all(|w| w[0] >= w[1]));
            }
        }
        assert_eq!(bound(5, 0, 3), 0);
        assert_eq!(bytes_of_parts(10, 3, 1, 2, 4), 16..40);
    }
}
