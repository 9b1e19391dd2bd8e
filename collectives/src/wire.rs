//! Wire encoding of collective messages: little-endian integers and lists of byte blocks.
//!
//! A block list is `count: u64`, then `count` lengths as `u64`, then the blocks back to back.
//! Decoding checks every count and length against what the receiver expects and against the
//! message's actual length before allocating anything, so a malformed message gives an error.

use crate::p2p::PointToPoint;

/// Size of an encoded `u64`.
const U64: usize = 8;

/// Reads the little-endian `u64` at `at`, if the message is long enough.
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let raw = bytes.get(at..at.checked_add(U64)?)?;
    raw.try_into().ok().map(u64::from_le_bytes)
}

/// Encodes `len` (a byte count or block count) as a little-endian `u64`.
pub(crate) fn u64_bytes(len: usize) -> [u8; U64] {
    // usize is at most 64 bits on every platform Rust supports, so this is lossless.
    (len as u64).to_le_bytes()
}

/// The head of a block list (count and lengths); the blocks follow it in the message.
pub(crate) fn blocks_head<B: AsRef<[u8]>>(blocks: &[B]) -> Vec<u8> {
    let mut out = Vec::with_capacity(U64 * (1 + blocks.len()));
    out.extend_from_slice(&u64_bytes(blocks.len()));
    for b in blocks {
        out.extend_from_slice(&u64_bytes(b.as_ref().len()));
    }
    out
}

/// Sends a block list as one message without copying the blocks.
pub(crate) fn send_blocks<P: PointToPoint + ?Sized, B: AsRef<[u8]>>(
    p: &P,
    dest: usize,
    tag: u32,
    blocks: &[B],
) -> Result<(), P::Error> {
    let head = blocks_head(blocks);
    let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + blocks.len());
    parts.push(&head);
    parts.extend(blocks.iter().map(AsRef::as_ref));
    p.send_parts(dest, tag, &parts)
}

/// Encodes a list of blocks into one message.
pub(crate) fn encode_blocks<B: AsRef<[u8]>>(blocks: &[B]) -> Vec<u8> {
    let data: usize = blocks.iter().map(|b| b.as_ref().len()).sum();
    let mut out = Vec::with_capacity(U64 * (1 + blocks.len()) + data);
    out.extend_from_slice(&u64_bytes(blocks.len()));
    for b in blocks {
        out.extend_from_slice(&u64_bytes(b.as_ref().len()));
    }
    for b in blocks {
        out.extend_from_slice(b.as_ref());
    }
    out
}

/// Decodes a block list that must hold exactly `count` blocks; `what` names the message in
/// errors (e.g. "scatter: blocks from rank 3").
pub(crate) fn decode_blocks<P: PointToPoint + ?Sized>(
    p: &P,
    msg: &[u8],
    count: usize,
    what: &str,
) -> Result<Vec<Vec<u8>>, P::Error> {
    Ok(decode_ranges(p, msg, count, what)?.into_iter().map(|r| msg[r].to_vec()).collect())
}

/// Checks a block list that must hold exactly `count` blocks and returns where each block lies
/// in `msg` (every range is within `msg`).
pub(crate) fn decode_ranges<P: PointToPoint + ?Sized>(
    p: &P,
    msg: &[u8],
    count: usize,
    what: &str,
) -> Result<Vec<std::ops::Range<usize>>, P::Error> {
    let bad = |why: String| p.malformed(format!("{what}: {why}"));
    let announced =
        read_u64(msg, 0).ok_or_else(|| bad(format!("{}-byte message has no block count", msg.len())))?;
    if usize::try_from(announced).ok() != Some(count) {
        return Err(bad(format!("announces {announced} blocks, expected {count}")));
    }
    // `count` is ours, not the peer's; still, the lengths must fit in the message.
    let lengths_end =
        count
            .checked_add(1)
            .and_then(|n| n.checked_mul(U64))
            .filter(|&end| end <= msg.len())
            .ok_or_else(|| bad(format!("{}-byte message too short for {count} block lengths", msg.len())))?;
    let mut lengths = Vec::with_capacity(count);
    let mut data_len: usize = 0;
    for i in 0..count {
        let len = read_u64(msg, U64 * (1 + i)).and_then(|len| usize::try_from(len).ok());
        let total = len.and_then(|len| data_len.checked_add(len)).filter(|&t| t <= msg.len() - lengths_end);
        match (len, total) {
            (Some(len), Some(total)) => {
                lengths.push(len);
                data_len = total;
            }
            _ => return Err(bad(format!("block {i}'s length overruns the {}-byte message", msg.len()))),
        }
    }
    if lengths_end + data_len != msg.len() {
        return Err(bad(format!(
            "{} bytes of blocks, but {} bytes follow the lengths",
            data_len,
            msg.len() - lengths_end
        )));
    }
    // In bounds: the lengths sum to exactly what follows `lengths_end`.
    let mut at = lengths_end;
    Ok(lengths
        .into_iter()
        .map(|len| {
            at += len;
            at - len..at
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads::{ThreadError, ThreadGroup};

    /// Block lists round-trip, and every kind of corruption is an error rather than a panic.
    #[test]
    fn block_lists_round_trip_and_reject_corruption() {
        ThreadGroup::run(1, |p| {
            let blocks = vec![b"abc".to_vec(), Vec::new(), b"de".to_vec()];
            let msg = encode_blocks(&blocks);
            assert_eq!(decode_blocks(&p, &msg, 3, "t"), Ok(blocks.clone()));
            assert_eq!(decode_blocks(&p, &encode_blocks::<Vec<u8>>(&[]), 0, "t"), Ok(Vec::new()));
            let malformed = |msg: &[u8], count| {
                matches!(decode_blocks(&p, msg, count, "t"), Err(ThreadError::Malformed(_)))
            };
            assert!(malformed(&msg, 2), "wrong count");
            assert!(malformed(&msg[..msg.len() - 1], 3), "truncated data");
            assert!(malformed(&msg[..20], 3), "truncated lengths");
            assert!(malformed(&msg[..3], 3), "truncated count");
            assert!(malformed(&[], 0), "empty message");
            let mut long = msg.clone();
            long.push(0);
            assert!(malformed(&long, 3), "trailing byte");
            let mut huge = msg.clone();
            huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            assert!(malformed(&huge, 3), "huge length");
            let mut overflow = msg.clone();
            overflow[8..16].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
            overflow[16..24].copy_from_slice(&3u64.to_le_bytes());
            assert!(malformed(&overflow, 3), "lengths overflow");
            let mut many = u64::MAX.to_le_bytes().to_vec();
            many.extend_from_slice(&[0; 16]);
            assert!(malformed(&many, usize::MAX), "count too large for the message");
            assert!(malformed(&many, 2), "count mismatch");
        });
    }
}
