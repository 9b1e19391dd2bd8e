//! The messages between prun and its per-host agents, from any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prun_launcher::agent_wire::{self, FromAgent, ToAgent};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(_)) = agent_wire::recv::<_, ToAgent>(&mut rest) {}
    let mut rest = data;
    while let Ok(Some(_)) = agent_wire::recv::<_, FromAgent>(&mut rest) {}
});
