//! `prun --mpi`: the same command line, run through the system's MPI launcher (Open MPI's
//! `mpirun`, MPICH's `mpiexec`, or `srun` inside a Slurm allocation), for programs built with
//! the runtime's `mpi` feature.

use crate::cli::{BindTo, Cli, StdinTarget};
use crate::hostfile::{self, HostSpec};
use crate::placement::MapBy;
use crate::status::EXIT_USAGE;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which MPI launcher family a command belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Open MPI's `mpirun`.
    OpenMpi,
    /// MPICH's Hydra `mpiexec`.
    Mpich,
    /// Slurm's `srun`.
    Slurm,
}

/// Tells the family of `launcher` from its `--version`.
fn family_of(launcher: &Path) -> Result<Family, String> {
    let out = Command::new(launcher)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {} --version: {e}", launcher.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if text.contains("Open MPI") || text.contains("OpenRTE") {
        Ok(Family::OpenMpi)
    } else if text.contains("HYDRA") || text.contains("MPICH") {
        Ok(Family::Mpich)
    } else if text.to_ascii_lowercase().contains("slurm") {
        Ok(Family::Slurm)
    } else {
        Err(format!(
            "{} is neither Open MPI, MPICH nor Slurm ({})",
            launcher.display(),
            text.lines().next().unwrap_or("")
        ))
    }
}

/// The launcher to use: `--mpi-launcher`, srun inside a Slurm allocation, else mpirun or
/// mpiexec from PATH.
fn choose(given: Option<&Path>) -> Result<(PathBuf, Family), String> {
    if let Some(path) = given {
        return family_of(path).map(|f| (path.to_path_buf(), f));
    }
    let candidates: &[&str] = if std::env::var_os("SLURM_JOB_ID").is_some() {
        &["srun", "mpirun", "mpiexec"]
    } else {
        &["mpirun", "mpiexec"]
    };
    for name in candidates {
        if let Ok(path) = crate::program::resolve(std::ffi::OsStr::new(name))
            && let Ok(family) = family_of(&path)
        {
            return Ok((path, family));
        }
    }
    Err("no MPI launcher found: install Open MPI or MPICH, or name one with --mpi-launcher PATH".into())
}

/// A hostfile in the family's own syntax, written next to the job.
fn rewrite_hostfile(hosts: &[HostSpec], family: Family) -> Result<PathBuf, String> {
    let text: String = hosts
        .iter()
        .map(|h| match (family, h.max_slots) {
            (Family::OpenMpi, Some(m)) => format!("{} slots={} max_slots={m}\n", h.name, h.slots),
            (Family::OpenMpi, None) => format!("{} slots={}\n", h.name, h.slots),
            _ => format!("{}:{}\n", h.name, h.slots),
        })
        .collect();
    let path = std::env::temp_dir().join(format!("prun-mpi-hosts-{}", std::process::id()));
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn refuse(option: &str, family: Family) -> String {
    format!("{option} has no equivalent with {family:?}'s launcher; leave it out, or run without --mpi")
}

/// The MPI launcher's command line for `cli`, or why it cannot be built.
pub fn command(cli: &Cli, launcher: &Path, family: Family) -> Result<Vec<OsString>, String> {
    let mut c: Vec<OsString> = vec![launcher.into()];
    let mut arg = |a: &str| c.push(a.into());
    // options prun has and MPI launchers do not
    for (given, name) in [
        (cli.output_dir.is_some(), "--output-dir"),
        (cli.trace.is_some(), "--trace"),
        (cli.progress, "--progress"),
        (cli.launch_agent.is_some(), "--launch-agent"),
        (cli.tag_host, "--tag-host"),
        (cli.iface.is_some(), "--iface"),
        (cli.stdin != StdinTarget::Rank(0), "--stdin"),
    ] {
        if given {
            return Err(refuse(name, family));
        }
    }
    if family == Family::OpenMpi && nix::unistd::Uid::effective().is_root() {
        arg("--allow-run-as-root");
    }
    if let Some(n) = cli.np {
        arg("-n");
        arg(&n.to_string());
    }
    let hosts = match (&cli.hostfile, cli.host.is_empty()) {
        (Some(f), _) => Some(hostfile::parse_hostfile(f).map_err(|e| e.to_string())?),
        (None, false) => Some(hostfile::parse_host_list(&cli.host.join(",")).map_err(|e| e.to_string())?),
        (None, true) => None,
    };
    if let Some(hosts) = hosts {
        match family {
            Family::Slurm => {
                return Err(refuse("--hostfile/--host (srun takes hosts from the allocation)", family));
            }
            Family::OpenMpi => {
                arg("--hostfile");
                c.push(rewrite_hostfile(&hosts, family)?.into());
            }
            Family::Mpich => {
                c.push("-f".into());
                c.push(rewrite_hostfile(&hosts, family)?.into());
            }
        }
    }
    let mut arg = |a: &str| c.push(a.into());
    if let Some(n) = cli.ppn {
        match family {
            Family::OpenMpi => arg("--npernode"),
            Family::Mpich => arg("-ppn"),
            Family::Slurm => arg("--ntasks-per-node"),
        }
        arg(&n.to_string());
    }
    if cli.map_by == MapBy::Node {
        match family {
            Family::OpenMpi => {
                arg("--map-by");
                arg("node");
            }
            Family::Mpich => arg("-rr"),
            Family::Slurm => arg("--distribution=cyclic"),
        }
    }
    // without hosts prun runs every rank on this host however many cores it has; so does
    // the translation (Open MPI would refuse more ranks than cores)
    let local = cli.hostfile.is_none() && cli.host.is_empty();
    if cli.oversubscribe || (local && family == Family::OpenMpi) {
        match family {
            Family::OpenMpi => arg("--oversubscribe"),
            Family::Slurm => arg("--overcommit"),
            Family::Mpich => {} // Hydra never refuses more ranks than slots
        }
    }
    if cli.display_map {
        match family {
            Family::OpenMpi => arg("--display-map"),
            _ => return Err(refuse("--display-map", family)),
        }
    }
    // binding by the MPI launcher's own options (the runtime does not bind on MPI); Open MPI
    // refuses to bind more ranks than cores unless told it may
    match family {
        Family::OpenMpi => {
            if let Some(bind) = cli.bind_to {
                arg("--bind-to");
                arg(&match bind {
                    BindTo::None => "none".to_string(),
                    _ => format!("{}:overload-allowed", bind.word()),
                });
            }
            if cli.report_bindings {
                arg("--report-bindings");
            }
        }
        Family::Mpich => {
            if cli.report_bindings {
                return Err(refuse("--report-bindings", family));
            }
            if let Some(bind) = cli.bind_to.filter(|b| *b != BindTo::None) {
                arg("-bind-to");
                arg(bind.word());
            }
        }
        Family::Slurm => {
            let kind = cli.bind_to.map(|bind| match bind {
                BindTo::None => "none",
                BindTo::Core => "cores",
                BindTo::Hwthread => "threads",
            });
            let kinds: Vec<&str> = cli.report_bindings.then_some("verbose").into_iter().chain(kind).collect();
            if !kinds.is_empty() {
                arg(&format!("--cpu-bind={}", kinds.join(",")));
            }
        }
    }
    // --check-collectives is the variable the runtime reads, passed as -x would pass it
    let check = format!("{}=1", prun::env::CHECK_COLLECTIVES);
    for x in cli.export.iter().chain(cli.check_collectives.then_some(&check)) {
        let (name, value) = match x.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (x.clone(), None),
        };
        match (family, value) {
            (Family::OpenMpi, _) => {
                arg("-x");
                arg(x);
            }
            (Family::Mpich, Some(v)) => {
                arg("-genv");
                arg(&name);
                arg(&v);
            }
            (Family::Mpich, None) => {
                arg("-genvlist");
                arg(&name);
            }
            (Family::Slurm, _) => arg(&format!("--export=ALL,{x}")),
        }
    }
    if let Some(dir) = &cli.wdir {
        let dir = dir.to_string_lossy();
        match family {
            Family::OpenMpi => {
                arg("--wdir");
                arg(&dir);
            }
            Family::Mpich => {
                arg("-wdir");
                arg(&dir);
            }
            Family::Slurm => arg(&format!("--chdir={dir}")),
        }
    }
    if cli.tag_output {
        match family {
            Family::OpenMpi => arg("--tag-output"),
            Family::Mpich => arg("-prepend-rank"),
            Family::Slurm => arg("--label"),
        }
    }
    if family == Family::Slurm
        && std::env::var_os("SLURM_MPI_TYPE").is_none()
        && let Some(kind) = cli.command.first().and_then(|p| slurm_mpi_type(p))
    {
        // srun's default may be no PMI at all, with which no MPI program starts
        arg(&format!("--mpi={kind}"));
    }
    if let Some(secs) = cli.timeout {
        match family {
            Family::OpenMpi => {
                arg("--timeout");
                arg(&(secs.ceil() as u64).to_string());
            }
            Family::Slurm => arg(&format!("--time={}", (secs / 60.0).ceil() as u64)),
            Family::Mpich => {} // passed as MPIEXEC_TIMEOUT, which Hydra reads
        }
    }
    c.extend(cli.command.iter().cloned());
    Ok(c)
}

/// The PMI that srun must offer `program`, from the MPI library it is linked with: PMIx for
/// Open MPI, PMI-2 for MPICH; `None` when that cannot be told (srun's default then applies).
fn slurm_mpi_type(program: &OsStr) -> Option<&'static str> {
    let path = crate::program::resolve(program).ok()?;
    // the names of the shared libraries it needs are in its dynamic string table
    let mut bytes = Vec::new();
    std::fs::File::open(path).ok()?.take(256 << 20).read_to_end(&mut bytes).ok()?;
    let has = |name: &[u8]| bytes.windows(name.len()).any(|w| w == name);
    if has(b"libmpich.so") {
        Some("pmi2")
    } else if has(b"libmpi.so") {
        Some("pmix")
    } else {
        None
    }
}

/// Runs the job through the MPI launcher; returns prun's exit status.
pub fn run(cli: &Cli) -> i32 {
    let (launcher, family) = match choose(cli.mpi_launcher.as_deref()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("prun: error: {e}");
            return EXIT_USAGE;
        }
    };
    let words = match command(cli, &launcher, family) {
        Ok(words) => words,
        Err(e) => {
            eprintln!("prun: error: --mpi: {e}");
            return EXIT_USAGE;
        }
    };
    if cli.verbose > 0 {
        let shown: Vec<String> = words.iter().map(|w| w.to_string_lossy().into_owned()).collect();
        eprintln!("prun: running {}", shown.join(" "));
    }
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]);
    if let (Family::Mpich, Some(secs)) = (family, cli.timeout) {
        cmd.env("MPIEXEC_TIMEOUT", (secs.ceil() as u64).to_string());
    }
    // the MPI launcher stays in prun's process group: Ctrl-C reaches it as it would directly
    match cmd.status() {
        Ok(status) => status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }),
        Err(e) => {
            eprintln!("prun: error: cannot run {}: {e}", launcher.display());
            crate::status::EXIT_FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(line: &str) -> Cli {
        Cli::parse_args(std::iter::once("prun").chain(line.split_whitespace()).map(OsString::from))
            .expect("parse")
    }

    fn words(line: &str, family: Family) -> Result<Vec<String>, String> {
        command(&cli(line), Path::new("L"), family)
            .map(|w| w.iter().map(|s| s.to_string_lossy().into_owned()).collect())
    }

    #[test]
    fn translations() {
        let w = words("--mpi -n 4 -x A=1 --wdir /tmp --tag-output --oversubscribe ./a b", Family::Mpich)
            .expect("ok");
        assert_eq!(w, ["L", "-n", "4", "-genv", "A", "1", "-wdir", "/tmp", "-prepend-rank", "./a", "b"]);
        let w = words("--mpi -n 4 -x A --tag-output --timeout 5 ./a", Family::OpenMpi).expect("ok");
        assert!(
            w.ends_with(
                &["-n", "4", "--oversubscribe", "-x", "A", "--tag-output", "--timeout", "5", "./a"]
                    .map(String::from)
            ),
            "{w:?}"
        );
        let w = words("--mpi -n 2 --wdir /w --tag-output ./a", Family::Slurm).expect("ok");
        assert_eq!(w, ["L", "-n", "2", "--chdir=/w", "--label", "./a"]);
        let bind = |b: &str, f| words(&format!("--mpi -n 2 --bind-to {b} ./a"), f).expect("ok");
        assert_eq!(bind("core", Family::Mpich), ["L", "-n", "2", "-bind-to", "core", "./a"]);
        assert_eq!(bind("none", Family::Mpich), ["L", "-n", "2", "./a"]);
        assert_eq!(bind("hwthread", Family::Slurm), ["L", "-n", "2", "--cpu-bind=threads", "./a"]);
        assert_eq!(bind("none", Family::Slurm), ["L", "-n", "2", "--cpu-bind=none", "./a"]);
        assert!(
            bind("core", Family::OpenMpi)
                .ends_with(&["--bind-to", "core:overload-allowed", "./a"].map(String::from))
        );
        let w = words("--mpi -n 2 --bind-to core --report-bindings ./a", Family::Slurm).expect("ok");
        assert_eq!(w, ["L", "-n", "2", "--cpu-bind=verbose,cores", "./a"]);
        let w = words("--mpi -n 2 --report-bindings ./a", Family::OpenMpi).expect("ok");
        assert!(w.ends_with(&["--report-bindings", "./a"].map(String::from)), "{w:?}");
        assert!(words("--mpi -n 2 --report-bindings ./a", Family::Mpich).is_err());
        let w = words("--mpi -n 2 --check-collectives ./a", Family::Mpich).expect("ok");
        assert_eq!(w, ["L", "-n", "2", "-genv", "PRUN_CHECK_COLLECTIVES", "1", "./a"]);
        let hosts = words("--mpi --host a:2,b ./a", Family::Mpich).expect("ok");
        let file = std::fs::read_to_string(&hosts[2]).expect("hostfile");
        assert_eq!(file, "a:2\nb:1\n");
    }

    #[test]
    fn options_without_equivalent_are_refused() {
        for (line, option) in
            [("--mpi --trace t ./a", "--trace"), ("--mpi --output-dir d ./a", "--output-dir")]
        {
            let err = words(line, Family::OpenMpi).expect_err("refused");
            assert!(err.contains(option), "{err}");
        }
        assert!(words("--mpi --display-map ./a", Family::Mpich).is_err());
    }
}
