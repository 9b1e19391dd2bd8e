//! The messages between the launcher and the ranks, from any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prun::protocol::{ToLauncher, ToRank};

fuzz_target!(|data: &[u8]| {
    let _ = postcard::from_bytes::<ToLauncher>(data);
    let _ = postcard::from_bytes::<ToRank>(data);
});
