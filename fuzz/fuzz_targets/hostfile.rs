//! Hostfiles (Open MPI and MPICH grammars) and `--host` lists: any text gives hosts or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prun_launcher::hostfile;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(hosts) = hostfile::parse_hostfile_text("fuzz", &text) {
        assert!(hosts.iter().all(|h| h.slots <= hostfile::MAX_SLOTS_PER_HOST));
    }
    let _ = hostfile::parse_host_list(&text);
});
