//! A token travels the ring of ranks a few times; rank 0 checks it.
//!
//! Each rank adds its rank number to the token's sum and appends itself to its path, so that
//! rank 0 can verify both the number of hops and their order. Prints `ring ok` on success,
//! exits non-zero otherwise. `prun -n 8 target/release/ring [LAPS]`.

use serde::{Deserialize, Serialize};
use std::process::ExitCode;

/// What travels around the ring.
#[derive(Serialize, Deserialize, Debug, Default)]
struct Token {
    lap: u32,
    hops: u64,
    sum: u64,
    last: Vec<u32>,
}

const TAG: prun::Tag = 1;

fn run() -> Result<bool, prun::Error> {
    let world = prun::init()?;
    let laps: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let (rank, size) = (world.rank(), world.size());
    let next = (rank + 1) % size;
    let prev = (rank + size - 1) % size;
    let mut token = Token::default();
    for lap in 0..laps {
        if rank == 0 {
            token.lap = lap;
            token.last.clear();
            world.send(next, TAG, &token)?;
            token = world.recv(prev, TAG)?;
        } else {
            token = world.recv(prev, TAG)?;
        }
        token.hops += 1;
        token.sum += rank as u64;
        token.last.push(rank as u32);
        if rank != 0 {
            world.send(next, TAG, &token)?;
        }
    }
    world.barrier()?;
    if rank != 0 {
        return Ok(true);
    }
    let n = size as u64;
    let expected_sum = u64::from(laps) * n * (n - 1) / 2;
    // rank 0's last lap: it appended itself last after the token came back from 1..size
    let expected_last: Vec<u32> = (1..size as u32).chain([0]).collect();
    let expected_last = if size == 1 { vec![0] } else { expected_last };
    let ok = token.hops == u64::from(laps) * n && token.sum == expected_sum && token.last == expected_last;
    if ok {
        println!("ring ok: {laps} laps of {size} ranks");
    } else {
        eprintln!(
            "ring: wrong token: hops {} (expected {}), sum {} (expected {expected_sum}), last lap {:?}",
            token.hops,
            u64::from(laps) * n,
            token.sum,
            token.last
        );
    }
    Ok(ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ring: {e}");
            ExitCode::FAILURE
        }
    }
}
