//! Turning the command line into a job plan, checking everything that can be checked before a
//! single rank starts.

use crate::allocation;
use crate::cli::{Cli, StdinTarget};
use crate::hostfile::{self, HostSpec};
use crate::hosts;
use crate::placement::{self, Placement};
use crate::program;
use crate::status::EXIT_USAGE;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Inside a Slurm allocation, agents start with srun: one task on the named node, sharing the
/// allocation's resources with the ranks.
const SRUN_AGENT: &str = "srun --nodes=1 --ntasks=1 --overlap --nodelist";

/// Everything the job needs, checked.
pub struct Plan {
    /// Where each rank runs, by rank.
    pub placements: Vec<Placement>,
    /// The resolved program.
    pub program: PathBuf,
    /// `argv[0]` as the user wrote it.
    pub arg0: OsString,
    /// The program's arguments.
    pub args: Vec<OsString>,
    /// Working directory of the ranks.
    pub wdir: Option<PathBuf>,
    /// Variables set for every rank (`-x`).
    pub exports: Vec<(OsString, OsString)>,
    /// Prefix output lines with the rank.
    pub tag_output: bool,
    /// Put the host in the prefix too.
    pub tag_host: bool,
    /// Per-rank output files instead of forwarding.
    pub output_dir: Option<PathBuf>,
    /// Who reads stdin.
    pub stdin: StdinTarget,
    /// When to end the job.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// -1 quiet, 0 normal, 1+ verbose.
    pub verbosity: i8,
    /// Progress bar forced on.
    pub progress: bool,
    /// Where to write the merged trace.
    pub trace: Option<PathBuf>,
    /// The launch agent command's words.
    pub launch_agent: Vec<String>,
    /// prun's path on remote hosts.
    pub remote_prun: PathBuf,
    /// Agents each agent starts in the launch tree.
    pub tree_width: usize,
    /// The address to use between hosts (`--iface`), if chosen.
    pub iface: Option<std::net::IpAddr>,
}

/// A reason not to start, with prun's exit status.
#[derive(Debug)]
pub struct PlanError {
    /// prun's exit status.
    pub status: i32,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn usage(message: impl Into<String>) -> PlanError {
    PlanError { status: EXIT_USAGE, message: message.into() }
}

/// Checks the command line and builds the plan.
pub fn plan(cli: Cli) -> Result<Plan, PlanError> {
    let (hosts, source): (Option<Vec<HostSpec>>, String) = match (&cli.hostfile, cli.host.is_empty()) {
        (Some(_), false) => return Err(usage("give either --hostfile or --host, not both")),
        (Some(file), true) => (
            Some(hostfile::parse_hostfile(file).map_err(|e| usage(e.to_string()))?),
            format!("hostfile {}", file.display()),
        ),
        (None, false) => (
            Some(hostfile::parse_host_list(&cli.host.join(",")).map_err(|e| usage(e.to_string()))?),
            "--host".into(),
        ),
        (None, true) => match allocation::detect().map_err(usage)? {
            Some((hosts, source)) => (Some(hosts), source),
            None => (None, String::new()),
        },
    };
    let hosts = match (hosts, cli.ppn) {
        (Some(hosts), Some(n)) => Some(
            hosts
                .into_iter()
                .map(|h| HostSpec { slots: n as usize, max_slots: None, ..h })
                .collect::<Vec<_>>(),
        ),
        (hosts, _) => hosts,
    };
    let placements = match hosts {
        Some(hosts) => {
            let np = match cli.np {
                Some(n) => n as usize,
                None => placement::total_slots(&hosts),
            };
            let placements = placement::place(&hosts, np, cli.map_by, cli.oversubscribe, &source)
                .map_err(|e| usage(e.to_string()))?;
            if cli.display_map {
                display_map(&hosts, &placements, &source);
            }
            placements
        }
        None => {
            // like MPICH: every rank on this host, whatever its core count
            let np = match cli.np {
                Some(n) => n as usize,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            };
            let host = hosts::this_host();
            (0..np)
                .map(|rank| Placement {
                    rank,
                    host: host.clone(),
                    local_rank: rank,
                    local_size: np,
                    node_rank: 0,
                })
                .collect()
        }
    };
    if let StdinTarget::Rank(r) = cli.stdin
        && r >= placements.len()
    {
        return Err(usage(format!(
            "--stdin {r}: there is no rank {r} in a job of {} ranks",
            placements.len()
        )));
    }

    let mut command = cli.command.into_iter();
    let arg0 = command.next().ok_or_else(|| usage("no program given"))?;
    let program = program::resolve(&arg0).map_err(|e| PlanError { status: e.status, message: e.message })?;

    if let Some(dir) = &cli.wdir
        && !dir.is_dir()
    {
        return Err(usage(format!("--wdir {}: no such directory", dir.display())));
    }
    if let Some(dir) = &cli.output_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| usage(format!("--output-dir {}: cannot create it: {e}", dir.display())))?;
    }
    let mut exports = Vec::new();
    for x in &cli.export {
        let (name, value) = match x.split_once('=') {
            Some((name, value)) => (name.to_string(), OsString::from(value)),
            None => {
                let value = std::env::var_os(x).ok_or_else(|| {
                    usage(format!(
                        "-x {x}: {x} is not set in prun's environment; give a value with -x {x}=VALUE"
                    ))
                })?;
                (x.clone(), value)
            }
        };
        if name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit())
            || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        {
            return Err(usage(format!("-x {x}: '{name}' is not a valid variable name")));
        }
        exports.push((OsString::from(name), value));
    }
    if cli.check_collectives {
        exports.push((OsString::from(prun::env::CHECK_COLLECTIVES), OsString::from("1")));
    }
    match cli.bind_to {
        Some(bind) => exports.push((OsString::from(prun::env::BIND), OsString::from(bind.word()))),
        // by default, ranks that outnumber a host's CPUs bind themselves while nothing else
        // loads it (launcher/src/unbind.rs), unless the user set the variable
        None if std::env::var_os(prun::env::BIND).is_none()
            && !exports.iter().any(|(k, _)| k == prun::env::BIND) =>
        {
            exports.push((OsString::from(prun::env::BIND), OsString::from("auto")));
        }
        None => {}
    }
    if cli.report_bindings {
        exports.push((OsString::from(prun::env::REPORT_BINDINGS), OsString::from("1")));
    }
    Ok(Plan {
        placements,
        program,
        arg0,
        args: command.collect(),
        wdir: cli.wdir,
        exports,
        tag_output: cli.tag_output || cli.tag_host,
        tag_host: cli.tag_host,
        output_dir: cli.output_dir,
        stdin: cli.stdin,
        timeout: cli.timeout.map(Duration::from_secs_f64),
        grace: Duration::from_secs_f64(cli.kill_grace),
        verbosity: if cli.quiet { -1 } else { cli.verbose as i8 },
        progress: cli.progress,
        trace: cli.trace,
        launch_agent: cli
            .launch_agent
            .as_deref()
            .unwrap_or(if source.starts_with("the Slurm") { SRUN_AGENT } else { "ssh" })
            .split_whitespace()
            .map(String::from)
            .collect(),
        tree_width: cli.tree_width as usize,
        iface: cli.iface.as_deref().map(hosts::interface_address).transpose().map_err(usage)?,
        remote_prun: match &cli.prefix {
            Some(dir) => dir.join("bin").join("prun"),
            None => std::env::current_exe().map_err(|e| usage(format!("cannot tell where prun is: {e}")))?,
        },
    })
}

/// Prints the placement table: each host, its slots and its ranks.
fn display_map(hosts: &[HostSpec], placements: &[Placement], source: &str) {
    eprintln!("prun: placement of {} ranks on {} hosts from {source}:", placements.len(), hosts.len());
    eprintln!("  {:<24} {:>6}  ranks", "host", "slots");
    for h in hosts {
        let ranks: Vec<usize> = placements.iter().filter(|p| p.host == h.name).map(|p| p.rank).collect();
        let shown = match (ranks.first(), ranks.last()) {
            (Some(a), Some(b)) if b - a + 1 == ranks.len() && a != b => format!("{a}-{b}"),
            _ => ranks.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(","),
        };
        eprintln!("  {:<24} {:>6}  {}", h.name, h.slots, if shown.is_empty() { "-".into() } else { shown });
    }
}
