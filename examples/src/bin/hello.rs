//! Every rank says hello, then all meet at a barrier.
//!
//! `prun -n 4 target/release/hello` prints `hello from rank R of 4 on HOST` four times.

use std::process::ExitCode;

fn main() -> ExitCode {
    let world = match prun::init() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("hello: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("hello from rank {} of {} on {}", world.rank(), world.size(), world.hostname());
    if let Err(e) = world.barrier() {
        eprintln!("hello: rank {}: barrier failed: {e}", world.rank());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
