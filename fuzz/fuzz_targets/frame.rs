//! Frames as a peer or a stranger sends them: header, then a payload of the length it claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prun::wire;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // a claimed length never allocates beyond the limit
    while let Ok(Some((header, payload))) = wire::read_frame(&mut rest, 1 << 16) {
        assert_eq!(header.len as usize, payload.len());
    }
});
