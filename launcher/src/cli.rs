//! The command line, with the spellings of Open MPI's `mpirun` and MPICH's `mpiexec`.

use crate::placement::MapBy;
use clap::{CommandFactory, Parser};
use std::ffi::OsString;
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  prun -n 4 ./job                      4 ranks of ./job on this host
  prun -np 64 ./job input.dat          64 ranks, however many cores this host has
  prun -n 8 --hostfile hosts ./job     place ranks by the slots of a hostfile
  prun -n 4 --tag-output ./job         prefix each output line with its rank: [2] ...
  prun -n 4 --timeout 60 ./job         end the job after 60 s (exit status 124)
  prun -n 2 -x OMP_NUM_THREADS=1 ./job set a variable for every rank
  echo data | prun -n 4 ./job          stdin goes to rank 0 (see --stdin)

Exit status: 0 when every rank exits 0; otherwise the status of the first rank that failed
(128+N if signal N killed it), the code given to World::abort, 124 on --timeout, 130 on Ctrl-C,
126/127 when the program cannot be run, 2 for bad usage. Every rank gets PRUN_RANK, PRUN_SIZE,
PRUN_LOCAL_RANK, PRUN_LOCAL_SIZE, PRUN_JOB_ID in its environment.";

/// Which ranks receive prun's standard input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdinTarget {
    /// No rank: every rank's stdin is /dev/null.
    None,
    /// Every rank gets a copy.
    All,
    /// One rank.
    Rank(usize),
}

/// What each rank is bound to, as `--bind-to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindTo {
    /// No binding: the kernel places the ranks' threads.
    None,
    /// One core each (all of its hardware threads), round robin over the cores allowed.
    Core,
    /// One hardware thread (logical CPU) each, round robin.
    Hwthread,
}

impl BindTo {
    /// The word `--bind-to` and the runtime's `PRUN_BIND` take for it.
    pub fn word(self) -> &'static str {
        match self {
            BindTo::None => "none",
            BindTo::Core => "core",
            BindTo::Hwthread => "hwthread",
        }
    }
}

fn parse_bind_to(s: &str) -> Result<BindTo, String> {
    match s.to_ascii_lowercase().as_str() {
        "none" => Ok(BindTo::None),
        "core" | "cores" => Ok(BindTo::Core),
        "hwthread" | "hwthreads" | "thread" | "threads" => Ok(BindTo::Hwthread),
        _ => Err(format!("expected none, core or hwthread, not '{s}'")),
    }
}

fn parse_stdin(s: &str) -> Result<StdinTarget, String> {
    match s {
        "none" => Ok(StdinTarget::None),
        "all" => Ok(StdinTarget::All),
        n => n
            .parse()
            .map(StdinTarget::Rank)
            .map_err(|_| format!("expected none, all or a rank number, not '{n}'")),
    }
}

fn parse_np(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("a job needs at least one rank: use -n 1 or more".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("expected a number of ranks, not '{s}'")),
    }
}

fn parse_map_by(s: &str) -> Result<MapBy, String> {
    match s.to_ascii_lowercase().as_str() {
        "slot" | "core" => Ok(MapBy::Slot),
        "node" => Ok(MapBy::Node),
        _ => Err(format!("expected slot or node, not '{s}'")),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("expected a positive number of seconds, not '{s}'")),
    }
}

/// `prun [options] <program> [args...]`
#[derive(Parser, Debug)]
#[command(
    name = "prun",
    version = concat!(env!("CARGO_PKG_VERSION"), " (the prun SPMD launcher for Rust; not PRRTE's prun)"),
    about = "Start an SPMD job: N ranks of one program, their output forwarded, the whole job ended cleanly.",
    after_help = EXAMPLES,
    max_term_width = 100
)]
pub struct Cli {
    /// Number of ranks to start (also -np). Default: the slots of the hostfile or --host, else
    /// this host's core count.
    #[arg(short = 'n', long = "np", value_name = "N", value_parser = parse_np)]
    pub np: Option<u32>,

    /// Hostfile: `host slots=N max_slots=M` (Open MPI) or `host:N` (MPICH) lines, # comments.
    #[arg(long = "hostfile", visible_alias = "machinefile", short = 'f', value_name = "FILE")]
    pub hostfile: Option<PathBuf>,

    /// Hosts and slots, as HOST[:SLOTS],... (a host named twice gets two slots).
    #[arg(short = 'H', long = "host", value_name = "HOST[:N],...")]
    pub host: Vec<String>,

    /// How ranks fill the hosts: `slot` fills each host's slots in turn, `node` deals ranks
    /// round robin over the hosts.
    #[arg(long = "map-by", value_name = "slot|node", default_value = "slot", value_parser = parse_map_by)]
    pub map_by: MapBy,

    /// Bind each rank, with its threads, to one core (or hardware thread) of those it may use,
    /// round robin by its rank on the host (sets PRUN_BIND). Default: a core each where a host
    /// runs more ranks than it has CPUs (a power of two of them, up to four per CPU), until
    /// other work loads the host (then prun unbinds them); elsewhere none. Binding helps
    /// lockstep collectives on an otherwise idle host with more ranks than cores, and hurts
    /// when something else keeps a core busy: `core` binds whatever the load, `none` never.
    #[arg(long = "bind-to", value_name = "none|core|hwthread", value_parser = parse_bind_to)]
    pub bind_to: Option<BindTo>,

    /// Make each rank print, as it starts, the CPUs it is bound to or may run on (sets
    /// PRUN_REPORT_BINDINGS=1).
    #[arg(long = "report-bindings")]
    pub report_bindings: bool,

    /// Command that starts prun's agent on a remote host (the host name and the agent's command
    /// line are appended), as `ssh -p 2222 -i KEY`. Default: `ssh`, always in batch mode with a
    /// connect timeout.
    #[arg(long = "launch-agent", value_name = "COMMAND", env = "PRUN_LAUNCH_AGENT", hide_env = true)]
    pub launch_agent: Option<String>,

    /// Agents started by prun itself, and by each agent in turn (the launch tree's width).
    #[arg(long = "tree-width", value_name = "K", default_value = "16", value_parser = parse_np)]
    pub tree_width: u32,

    /// Network interface whose address the job uses between hosts (default: the one that
    /// routes to them, loopback when every host is a loopback address).
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,

    /// Where prun is installed on remote hosts (DIR/bin/prun); default: the same path as here.
    #[arg(long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,

    /// Ranks per host (also -ppn, --npernode): every host of the hostfile, --host or allocation
    /// gets exactly N slots.
    #[arg(long = "ppn", visible_alias = "npernode", value_name = "N", value_parser = parse_np)]
    pub ppn: Option<u32>,

    /// Print the placement (hosts, slots, ranks, and where the hosts came from) before starting.
    #[arg(long = "display-map")]
    pub display_map: bool,

    /// With --tag-output, put the host in the tag too: `[3@node2] text`.
    #[arg(long = "tag-host")]
    pub tag_host: bool,

    /// Allow more ranks than the hostfile or --host has slots.
    #[arg(long)]
    pub oversubscribe: bool,

    /// Export VAR (from prun's environment) or set VAR=VALUE for every rank. Repeatable.
    #[arg(short = 'x', value_name = "VAR[=VALUE]")]
    pub export: Vec<String>,

    /// Working directory of the ranks (default: prun's).
    #[arg(long = "wdir", visible_alias = "wd", value_name = "DIR")]
    pub wdir: Option<PathBuf>,

    /// Prefix every output line with its rank, as `[3] text`; lines never mix.
    #[arg(long = "tag-output", visible_alias = "prepend-rank", short = 'l')]
    pub tag_output: bool,

    /// Write each rank's output to DIR/rank.R.stdout and DIR/rank.R.stderr instead of the terminal.
    #[arg(long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,

    /// Which rank reads prun's standard input: a rank number, `all` or `none`.
    #[arg(long, value_name = "RANK|all|none", default_value = "0", value_parser = parse_stdin)]
    pub stdin: StdinTarget,

    /// End the job after SECS seconds; prun then exits with status 124. Default: MPIEXEC_TIMEOUT.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, env = "MPIEXEC_TIMEOUT", hide_env = true)]
    pub timeout: Option<f64>,

    /// Seconds between SIGTERM and SIGKILL when the job is ended.
    #[arg(long = "kill-grace", value_name = "SECS", default_value = "3", value_parser = parse_seconds)]
    pub kill_grace: f64,

    /// Make every collective call check first that every rank makes the same call (operation,
    /// root, buffer length), so that ranks that disagree fail with a collective mismatch even
    /// where the call would end without one; a barrier per call. Sets PRUN_CHECK_COLLECTIVES=1.
    #[arg(long = "check-collectives")]
    pub check_collectives: bool,

    /// Show a progress bar for dynamic maps (automatic when stderr is a terminal; elsewhere
    /// this prints a progress line every few seconds).
    #[arg(long)]
    pub progress: bool,

    /// Record every rank's map batches, steals and collectives, and write them to FILE as Chrome
    /// trace JSON (opens in Perfetto; `prun-timeline FILE` draws it as an SVG timeline).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,

    /// Run the job through the system's MPI launcher (Open MPI's mpirun, MPICH's mpiexec, or srun
    /// in a Slurm allocation), translating the options; for programs built with the runtime's
    /// `mpi` feature.
    #[arg(long)]
    pub mpi: bool,

    /// The MPI launcher for --mpi (default: srun in a Slurm allocation, else mpirun or mpiexec).
    #[arg(long = "mpi-launcher", value_name = "PATH", requires = "mpi")]
    pub mpi_launcher: Option<PathBuf>,

    /// Print only errors.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say more about what happens (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The program to run, and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM [ARGS]..."
    )]
    pub command: Vec<OsString>,
}

impl Cli {
    /// Parses prun's arguments, accepting single-dash long options (`-np 4`, `-wdir d`) as
    /// mpirun and mpiexec do, up to the program's name.
    pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(normalize(args.into_iter().collect()))
    }
}

/// Rewrites `-long` options before the program to `--long`, leaving the program's own
/// arguments untouched.
fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let cmd = Cli::command();
    let long_takes_value = |name: &str| -> Option<bool> {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name)))
            .map(|a| a.get_action().takes_values())
    };
    let short_takes_value = |c: char| -> bool {
        cmd.get_arguments().find(|a| a.get_short() == Some(c)).is_some_and(|a| a.get_action().takes_values())
    };
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    out.extend(it.next());
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str().map(str::to_owned) else {
            out.push(arg);
            break;
        };
        if text == "--" || !text.starts_with('-') || text == "-" {
            out.push(arg);
            break;
        }
        let (dashes, body) = if let Some(b) = text.strip_prefix("--") { (2, b) } else { (1, &text[1..]) };
        let name = body.split('=').next().unwrap_or(body);
        let long = if dashes == 2 || body.chars().count() > 1 { long_takes_value(name) } else { None };
        match long {
            Some(takes) => {
                out.push(OsString::from(format!("--{body}")));
                if takes && !body.contains('=') {
                    out.extend(it.next());
                }
            }
            None => {
                // short options, possibly clustered (-qv) or with the value attached (-n4)
                let mut chars = body.chars();
                match (chars.next(), chars.as_str()) {
                    (Some(c), "") if short_takes_value(c) => {
                        out.push(arg);
                        out.extend(it.next());
                    }
                    (Some(c), value) if short_takes_value(c) => {
                        out.push(OsString::from(format!("-{c}")));
                        out.push(OsString::from(value.strip_prefix('=').unwrap_or(value)));
                    }
                    _ => out.push(arg),
                }
            }
        }
    }
    out.extend(it);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::parse_args(std::iter::once("prun").chain(line.split_whitespace()).map(OsString::from))
    }

    #[test]
    fn mpi_spellings() {
        for line in ["-n 4 ./a", "-np 4 ./a", "--np 4 ./a", "-n4 ./a", "--np=4 ./a"] {
            assert_eq!(parse(line).expect(line).np, Some(4), "{line}");
        }
        let c = parse("-wdir /tmp -hostfile h -oversubscribe -x A=1 -x B ./a").expect("parse");
        assert_eq!(c.wdir, Some(PathBuf::from("/tmp")));
        assert_eq!(c.hostfile, Some(PathBuf::from("h")));
        assert!(c.oversubscribe);
        assert_eq!(c.export, ["A=1", "B"]);
    }

    #[test]
    fn program_arguments_are_left_alone() {
        let c = parse("-n 2 --tag-output ./a -np 7 --wdir x -- -q").expect("parse");
        assert_eq!(c.np, Some(2));
        assert!(c.tag_output);
        let rest: Vec<_> = c.command.iter().map(|s| s.to_str().expect("utf8")).collect();
        assert_eq!(rest, ["./a", "-np", "7", "--wdir", "x", "--", "-q"]);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse("-n 0 ./a").is_err());
        assert!(parse("-n two ./a").is_err());
        assert!(parse("-n 2").is_err(), "a program is required");
        assert!(parse("--stdin sideways -n 2 ./a").is_err());
        assert!(parse("--timeout -3 ./a").is_err());
        assert_eq!(parse("--stdin all ./a").expect("all").stdin, StdinTarget::All);
        assert_eq!(parse("--stdin 3 ./a").expect("3").stdin, StdinTarget::Rank(3));
    }
}
