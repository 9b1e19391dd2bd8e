//! Buffers cut into blocks of lengths that vary by rank, in rank order: the shape of MPI's `v`
//! collectives (`MPI_Gatherv`, `MPI_Scatterv`, `MPI_Allgatherv`, `MPI_Alltoallv`) with the
//! blocks contiguous, each rank's block starting where the one before it ends.
//!
//! Every function checks the lengths against the buffer and answers `None` rather than panic:
//! the lengths come from the caller, and in a collective from every rank's caller.

/// Whether `lens` are `size` lengths that add up to `buf` bytes exactly.
pub fn fills(size: usize, buf: usize, lens: &[usize]) -> bool {
    lens.len() == size && total(lens) == Some(buf)
}

/// The sum of `lens`, or `None` if it overflows.
pub fn total(lens: &[usize]) -> Option<usize> {
    lens.iter().try_fold(0usize, |a, &n| a.checked_add(n))
}

/// `buf` cut into blocks of `lens` bytes, in order, when they fill it exactly.
pub fn cut<'b>(buf: &'b [u8], lens: &[usize]) -> Option<Vec<&'b [u8]>> {
    let mut rest = buf;
    let blocks = lens
        .iter()
        .map(|&n| {
            let (block, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(block)
        })
        .collect::<Option<Vec<_>>>()?;
    rest.is_empty().then_some(blocks)
}

/// As [`cut`], into blocks the caller may write.
pub fn cut_mut<'b>(buf: &'b mut [u8], lens: &[usize]) -> Option<Vec<&'b mut [u8]>> {
    let mut rest = buf;
    let blocks = lens
        .iter()
        .map(|&n| {
            let (block, tail) = std::mem::take(&mut rest).split_at_mut_checked(n)?;
            rest = tail;
            Some(block)
        })
        .collect::<Option<Vec<_>>>()?;
    rest.is_empty().then_some(blocks)
}

/// Where each of the blocks of `lens` starts, and where the last ends (`lens.len() + 1`
/// offsets): block `r` is `offsets[r]..offsets[r + 1]`. `None` if the total overflows.
pub fn offsets(lens: &[usize]) -> Option<Vec<usize>> {
    let mut at = 0usize;
    let mut out = Vec::with_capacity(lens.len() + 1);
    out.push(0);
    for &n in lens {
        at = at.checked_add(n)?;
        out.push(at);
    }
    Some(out)
}

/// The bytes `a` and `b` of `buf`, both writable, when they lie within it and do not overlap.
pub fn two_mut(
    buf: &mut [u8],
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
) -> Option<(&mut [u8], &mut [u8])> {
    if a.end <= b.start {
        let (low, high) = buf.split_at_mut_checked(b.start)?;
        Some((low.get_mut(a)?, high.get_mut(..b.len())?))
    } else if b.end <= a.start {
        let (low, high) = buf.split_at_mut_checked(a.start)?;
        Some((high.get_mut(..a.len())?, low.get_mut(b)?))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_only_what_fills_the_buffer() {
        let buf: Vec<u8> = (0..10).collect();
        let blocks = cut(&buf, &[3, 0, 7]).expect("fills");
        assert_eq!(blocks, [&buf[..3], &[][..], &buf[3..]]);
        assert!(cut(&buf, &[3, 6]).is_none(), "short");
        assert!(cut(&buf, &[3, 8]).is_none(), "long");
        assert!(cut(&buf, &[usize::MAX, 11]).is_none(), "overflow");
        let mut b = buf.clone();
        let blocks = cut_mut(&mut b, &[5, 5]).expect("fills");
        assert_eq!(blocks.len(), 2);
        assert!(cut_mut(&mut b, &[5, 4]).is_none());
        assert!(cut_mut(&mut [], &[]).is_some_and(|b| b.is_empty()));
        assert!(fills(3, 10, &[3, 0, 7]) && !fills(2, 10, &[3, 0, 7]) && !fills(3, 9, &[3, 0, 7]));
        assert!(!fills(2, 0, &[usize::MAX, 1]));
        assert_eq!(offsets(&[3, 0, 7]), Some(vec![0, 3, 3, 10]));
        assert_eq!(offsets(&[usize::MAX, 1]), None);
    }

    #[test]
    fn two_mut_takes_disjoint_ranges_in_either_order() {
        let mut buf: Vec<u8> = (0..10).collect();
        let (a, b) = two_mut(&mut buf, 6..9, 1..3).expect("disjoint");
        assert_eq!((&*a, &*b), (&[6, 7, 8][..], &[1, 2][..]));
        let (a, b) = two_mut(&mut buf, 0..2, 2..10).expect("adjacent");
        assert_eq!((a.len(), b.len()), (2, 8));
        assert!(two_mut(&mut buf, 0..3, 2..4).is_none(), "overlap");
        assert!(two_mut(&mut buf, 0..3, 8..11).is_none(), "beyond the end");
        assert!(two_mut(&mut buf, 3..3, 3..3).is_some(), "empty ranges");
    }
}
