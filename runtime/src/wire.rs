//! Framing of every message on a connection, after the handshake.
//!
//! A frame is a 24-byte header, then `len` bytes of payload:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0 | kind: [`KIND_DATA`], [`KIND_CONTROL`] or [`KIND_LEND`] |
//! | 1..4 | zero |
//! | 4..8 | tag, little endian |
//! | 8..16 | context (communicator), little endian |
//! | 16..24 | payload length, little endian |
//!
//! The length is checked against the reader's limit before any payload memory is allocated, and
//! a header with an unknown kind or non-zero padding is refused.

use std::io::{self, Read, Write};

/// Length of a frame header.
pub const HEADER_LEN: usize = 24;
/// A message between ranks.
pub const KIND_DATA: u8 = 1;
/// A message between a rank and its launcher.
pub const KIND_CONTROL: u8 = 2;
/// A large message between ranks on one host whose payload comes through a pipe the sender
/// lent its pages to: which pipe follows instead, and the receiver reads the payload from it
/// (see the runtime's `lend` module).
pub const KIND_LEND: u8 = 3;

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// [`KIND_DATA`], [`KIND_CONTROL`] or [`KIND_LEND`].
    pub kind: u8,
    /// The communicator the message belongs to.
    pub context: u64,
    /// The message's tag.
    pub tag: u32,
    /// Length of the payload that follows.
    pub len: u64,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The header announces more bytes than the limit allows.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The reader's limit.
        limit: u64,
    },
    /// The bytes are not a frame header.
    #[error("malformed frame header: {0}")]
    Malformed(String),
    /// The payload is not the control message expected.
    #[error("malformed control message: {0}")]
    BadMessage(String),
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        b[0] = self.kind;
        b[4..8].copy_from_slice(&self.tag.to_le_bytes());
        b[8..16].copy_from_slice(&self.context.to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Parses and validates a header.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, WireError> {
        if b[0] != KIND_DATA && b[0] != KIND_CONTROL && b[0] != KIND_LEND {
            return Err(WireError::Malformed(format!("unknown kind {}", b[0])));
        }
        if b[1..4] != [0, 0, 0] {
            return Err(WireError::Malformed("non-zero padding".into()));
        }
        let mut tag = [0; 4];
        tag.copy_from_slice(&b[4..8]);
        let long = |r: std::ops::Range<usize>| {
            let mut w = [0; 8];
            w.copy_from_slice(&b[r]);
            u64::from_le_bytes(w)
        };
        Ok(Header { kind: b[0], tag: u32::from_le_bytes(tag), context: long(8..16), len: long(16..24) })
    }
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a header.
pub fn read_frame<R: Read + ?Sized>(r: &mut R, limit: u64) -> Result<Option<(Header, Vec<u8>)>, WireError> {
    let Some(header) = read_header(r, limit)? else {
        return Ok(None);
    };
    read_payload(r, &header).map(|payload| Some((header, payload)))
}

/// Reads a frame's header and checks its length against `limit`; `Ok(None)` on a clean end of
/// stream. The payload ([`read_payload`]) follows.
pub fn read_header<R: Read + ?Sized>(r: &mut R, limit: u64) -> Result<Option<Header>, WireError> {
    let mut head = [0; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let header = Header::decode(&head)?;
    if header.len > limit {
        return Err(WireError::TooLarge { len: header.len, limit });
    }
    Ok(Some(header))
}

/// Reads the payload of a frame whose header [`read_header`] returned (and so checked).
pub fn read_payload<R: Read + ?Sized>(r: &mut R, header: &Header) -> Result<Vec<u8>, WireError> {
    let len = usize::try_from(header.len)
        .map_err(|_| WireError::TooLarge { len: header.len, limit: usize::MAX as u64 })?;
    let mut payload = Vec::with_capacity(len);
    r.take(header.len).read_to_end(&mut payload)?;
    if payload.len() != len {
        return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(payload)
}

/// Writes a frame whose first [`HEADER_LEN`] bytes are room for the header, in one write.
pub fn write_framed<W: Write + ?Sized>(
    w: &mut W,
    kind: u8,
    context: u64,
    tag: u32,
    frame: &mut [u8],
) -> io::Result<()> {
    let len = (frame.len() - HEADER_LEN) as u64;
    frame[..HEADER_LEN].copy_from_slice(&Header { kind, context, tag, len }.encode());
    w.write_all(frame)
}

/// Writes a frame whose payload is the concatenation of `parts`, without copying them.
pub fn write_parts<W: Write + ?Sized>(
    w: &mut W,
    kind: u8,
    context: u64,
    tag: u32,
    parts: &[&[u8]],
) -> io::Result<()> {
    let len = parts.iter().map(|p| p.len() as u64).sum();
    let head = Header { kind, context, tag, len }.encode();
    let mut slices: Vec<io::IoSlice<'_>> =
        std::iter::once(&head[..]).chain(parts.iter().copied()).map(io::IoSlice::new).collect();
    let mut bufs = &mut slices[..];
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut frame = vec![0; HEADER_LEN];
        frame.extend_from_slice(b"payload");
        let mut wire = Vec::new();
        write_framed(&mut wire, KIND_DATA, 3, 9, &mut frame).expect("write");
        let (h, p) = read_frame(&mut wire.as_slice(), 100).expect("read").expect("frame");
        assert_eq!((h.kind, h.context, h.tag, h.len), (KIND_DATA, 3, 9, 7));
        assert_eq!(p, b"payload");
    }

    #[test]
    fn parts_round_trip() {
        let mut wire = Vec::new();
        write_parts(&mut wire, KIND_DATA, 5, 1, &[b"ab", b"", b"cd"]).expect("write");
        let (back, p) = read_frame(&mut wire.as_slice(), 100).expect("read").expect("frame");
        assert_eq!(
            (back, p.as_slice()),
            (Header { kind: KIND_DATA, context: 5, tag: 1, len: 4 }, &b"abcd"[..])
        );
    }

    #[test]
    fn huge_length_is_refused_before_allocation() {
        let h = Header { kind: KIND_DATA, context: 0, tag: 0, len: u64::MAX }.encode();
        let err = read_frame(&mut h.as_slice(), 1 << 20).expect_err("too large");
        assert!(matches!(err, WireError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn garbage_and_truncation() {
        assert!(matches!(
            read_frame(&mut &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], 100),
            Err(WireError::Malformed(_))
        ));
        assert!(read_frame(&mut &[][..], 100).expect("eof").is_none());
        assert!(matches!(read_frame(&mut &[1u8, 0, 0][..], 100), Err(WireError::Io(_))));
        let h = Header { kind: KIND_DATA, context: 0, tag: 0, len: 10 }.encode();
        assert!(matches!(read_frame(&mut h.as_slice(), 100), Err(WireError::Io(_))));
    }
}

#[cfg(test)]
mod robustness {
    //! Bounded random-input tests of every decoder a peer's bytes reach: frames, control
    //! messages, the handshake and typed messages. Any input gives a value or an error, never a
    //! panic or an allocation the input merely claims.

    use super::*;
    use crate::auth::{self, Credentials, Secret};
    use crate::protocol::{ToLauncher, ToRank};

    fn generator(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn decoders_take_any_bytes() {
        let mut next = generator(0xfeed_beef_0000_0001);
        let creds =
            Credentials { job_id: "job".into(), secret: Secret::from_hex(&"ab".repeat(32)).expect("hex") };
        for i in 0..20_000usize {
            let mut bytes: Vec<u8> = (0..i % 300).map(|_| next() as u8).collect();
            if i % 3 == 0 && bytes.len() >= HEADER_LEN {
                // a plausible header with a random length
                bytes[0] = KIND_CONTROL;
                bytes[1..4].copy_from_slice(&[0, 0, 0]);
            }
            let _ = read_frame(&mut bytes.as_slice(), 1 << 20);
            let _ = postcard::from_bytes::<ToLauncher>(&bytes);
            let _ = postcard::from_bytes::<ToRank>(&bytes);
            let _ = crate::codec::decode::<(String, Vec<u64>, Option<f64>)>(&bytes, 0, 0);
            let mut stream = std::io::Cursor::new(bytes);
            let _ = auth::server(&mut stream, &creds, |_| true, |_| {});
        }
    }
}
