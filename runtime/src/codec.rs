//! The serde codec of typed messages: postcard.
//!
//! Chosen by `bench/src/bin/codecbench.rs` (figures in `docs/design.md`): postcard was as fast as
//! bincode 2 and 6x faster than bitcode's serde path on small messages (what latency-bound SPMD
//! code sends), within 10% of the best on large ones, the most compact but one, maintained, with a
//! documented stable wire format. Large plain-old-data arrays will bypass the codec altogether.

use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Appends the encoding of `value` to `buf` (which may already hold a frame header).
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, buf: Vec<u8>) -> Result<Vec<u8>> {
    postcard::to_extend(value, buf)
        .map_err(|e| Error::Encode { type_name: std::any::type_name::<T>(), detail: e.to_string() })
}

/// Decodes a whole message as a `T`; trailing bytes are an error (they mean a type mismatch).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], src: usize, tag: u32) -> Result<T> {
    let fail = |detail: String| Error::Decode { src, tag, type_name: std::any::type_name::<T>(), detail };
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(fail(format!("{} bytes left over after the value", rest.len()))),
        Err(e) => Err(fail(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let bytes = encode_into(&(7u32, "seven".to_string()), Vec::new()).expect("encode");
        let back: (u32, String) = decode(&bytes, 1, 2).expect("decode");
        assert_eq!(back, (7, "seven".to_string()));
        let wrong = decode::<u8>(&bytes, 1, 2).expect_err("a u8 is shorter than the message");
        assert!(wrong.to_string().contains("u8"), "{wrong}");
        assert!(decode::<String>(&[200], 3, 4).is_err());
    }
}
