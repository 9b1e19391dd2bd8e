//! The server side of the handshake every listening socket runs, fed what a stranger sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prun::auth::{self, Credentials, Secret};

fuzz_target!(|data: &[u8]| {
    let Some(secret) = Secret::from_hex(&"5a".repeat(32)) else { return };
    let creds = Credentials { job_id: "fuzz-job".into(), secret };
    let mut stream = std::io::Cursor::new(data.to_vec());
    // no stranger proves knowledge of a secret it never saw
    assert!(auth::server(&mut stream, &creds, |_| true, |_| {}).is_err());
});
