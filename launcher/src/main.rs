//! `prun`: starts the ranks of an SPMD job, forwards their output, and ends the whole job
//! cleanly. See `prun --help`, and the README for the environment of ranks and exit statuses.

/// `std::eprintln!`, except that a closed stderr (`prun ... 2>&-`) is not a panic: prun must
/// always finish ending its job. Defined before the modules, so it serves all of them.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod agent;
mod calls;
// shared with the fuzz targets through the library target
use prun_launcher::{agent_wire, allocation, hostfile};
mod cli;
mod control;
mod hosts;
mod job;
mod jobdir;
mod local;
mod mpi_launch;
mod output;
mod placement;
mod plan;
mod program;
mod progress;
mod remote;
mod robustness;
mod signals;
mod status;
mod stdin;
mod trace;
mod unbind;
mod watchdog;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

fn exit(status: i32) -> ExitCode {
    ExitCode::from((status & 0xff) as u8)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == agent::ARG) {
        return exit(agent::run());
    }
    if args.get(1).is_some_and(|a| a == watchdog::ARG) {
        let dir = args.get(2).map(PathBuf::from).unwrap_or_default();
        return exit(watchdog::run(dir));
    }
    let cli = match cli::Cli::parse_args(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return exit(if e.use_stderr() { status::EXIT_USAGE } else { 0 });
        }
    };
    if cli.mpi {
        return exit(mpi_launch::run(&cli));
    }
    match plan::plan(cli) {
        Ok(plan) => exit(job::run(plan)),
        Err(e) => {
            eprintln!("prun: error: {}", e.message);
            exit(e.status)
        }
    }
}
