//! Runs one example of the runtime's documentation as a rank of a job: `prun -n 3
//! prun-docjob N` runs example `N` on three ranks (`cargo test --doc` runs each as a world of
//! one). `prun-docjob count` prints how many there are; each rank whose example returns `Ok`
//! prints `ok <file>:<line>`, and one that returns an error says so and exits with status 1.
//! The examples are collected by the build script from `runtime/src`.

use std::process::ExitCode;

#[allow(clippy::all, clippy::pedantic, unused, missing_docs)]
mod examples {
    include!(concat!(env!("OUT_DIR"), "/doc_examples.rs"));
}

fn main() -> ExitCode {
    let arg = std::env::args().nth(1).unwrap_or_default();
    if arg == "count" {
        println!("{}", examples::EXAMPLES.len());
        return ExitCode::SUCCESS;
    }
    let Some(&(at, example)) = arg.parse::<usize>().ok().and_then(|n| examples::EXAMPLES.get(n)) else {
        eprintln!(
            "prun-docjob: '{arg}' is neither 'count' nor an example's number (0 to {})",
            examples::EXAMPLES.len()
        );
        return ExitCode::from(2);
    };
    match example() {
        Ok(()) => {
            println!("ok {at}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("prun-docjob: the example at {at} failed: {e}");
            ExitCode::from(1)
        }
    }
}
