//! `prun-timeline`: draws an execution trace written by prun (Chrome trace JSON) as an SVG timeline,
//! one row per rank and time across, so static and dynamic runs of a parallel map can be compared by eye.
//!
//! Exit status: 0 when the picture was written, 1 when the trace cannot be read or drawn (bad JSON, no
//! `traceEvents`, no events for the `--map` asked for) or the picture cannot be written, 2 for usage errors.

mod render;
mod trace;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::render::Options;
use crate::trace::ParseError;

const USAGE: &str = "\
Usage: prun-timeline TRACE.json [OUT.svg] [--map K] [--width PX]

Draws a prun execution trace (Chrome trace JSON) as an SVG timeline: one row per
rank, time across. Batches of a parallel map are coloured by the position of
their items (first / total), so a static run shows one band of colour per rank
and a dynamic run mixes colours where ranks stole work; steals are dark ticks,
collectives grey, map calls light bands labelled \"map K (dynamic|static)\".
Hover over a rectangle in a browser for its details.

Arguments:
  TRACE.json     the trace to draw
  OUT.svg        where to write the picture (default: TRACE with the extension .svg)

Options:
  --map K        draw only map call K (its batches, steals and span)
  --width PX     width of the picture in pixels (300..=100000, default 1200)
  -h, --help     show this help

Exit status: 0 written, 1 trace unreadable or picture not written, 2 usage error.
";

/// Default picture width, pixels.
const DEFAULT_WIDTH: u32 = 1200;

/// What the command line asks for.
#[derive(Debug, PartialEq)]
struct Args {
    input: PathBuf,
    output: PathBuf,
    map: Option<u64>,
    width: u32,
}

/// Either a run or a request for help.
#[derive(Debug, PartialEq)]
enum Cli {
    Run(Args),
    Help,
}

/// Reads the command line (without the program name). `Err` is a usage error message.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Cli, String> {
    let mut positional: Vec<PathBuf> = Vec::new();
    let mut map = None;
    let mut width = DEFAULT_WIDTH;
    let mut args = args.into_iter();
    let mut only_positional = false;
    while let Some(arg) = args.next() {
        let text = arg.to_str();
        if only_positional || !text.is_some_and(|t| t.starts_with('-') && t.len() > 1) {
            positional.push(PathBuf::from(arg));
            continue;
        }
        let text = text.unwrap_or_default();
        let (flag, inline) = match text.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (text, None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(Cli::Help),
            "--" => only_positional = true,
            "--map" => {
                let v = value("--map")?;
                map = Some(v.parse().map_err(|_| format!("--map wants a map call number, not {v:?}"))?);
            }
            "--width" => {
                let v = value("--width")?;
                width = v.parse().ok().filter(|w| (300..=100_000).contains(w)).ok_or_else(|| {
                    format!("--width wants a number of pixels from 300 to 100000, not {v:?}")
                })?;
            }
            _ => return Err(format!("unknown option {text}")),
        }
    }
    let mut positional = positional.into_iter();
    let input = positional.next().ok_or("no trace file given")?;
    let output = positional.next().unwrap_or_else(|| input.with_extension("svg"));
    if let Some(extra) = positional.next() {
        return Err(format!("unexpected argument {}", extra.display()));
    }
    if output == input {
        return Err(format!(
            "the picture would overwrite the trace {}; name an output file",
            input.display()
        ));
    }
    Ok(Cli::Run(Args { input, output, map, width }))
}

/// Why a picture was not made (each names the file concerned).
#[derive(Debug, thiserror::Error)]
enum Error {
    /// The trace cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    /// The trace is not a trace.
    #[error("{path}: {source}")]
    Parse { path: String, source: ParseError },
    /// `--map K` but the trace has no events of map call K.
    #[error("{path}: no events for map {map} ({available})")]
    NoSuchMap { path: String, map: u64, available: String },
    /// The picture cannot be written.
    #[error("{path}: cannot write: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Reads, draws and writes; returns a one-line summary.
fn run(args: &Args) -> Result<String, Error> {
    let path = args.input.display().to_string();
    let text =
        std::fs::read_to_string(&args.input).map_err(|source| Error::Read { path: path.clone(), source })?;
    let mut trace = trace::parse(&text).map_err(|source| Error::Parse { path: path.clone(), source })?;
    if let Some(map) = args.map {
        let ids = trace.map_ids();
        if !ids.contains(&map) {
            let available = if ids.is_empty() {
                "the trace has no map calls".to_string()
            } else {
                let list: Vec<String> = ids.iter().map(u64::to_string).collect();
                format!("map calls in this trace: {}", list.join(", "))
            };
            return Err(Error::NoSuchMap { path, map, available });
        }
        trace = trace.only_map(map);
    }
    let title = file_name(&args.input);
    let drawn = render::render(&trace, &Options { width: args.width, title, map: args.map });
    let out = args.output.display().to_string();
    std::fs::write(&args.output, &drawn.svg).map_err(|source| Error::Write { path: out.clone(), source })?;
    let mut summary = format!(
        "wrote {out}: {} ranks, {} batches drawn as {} rectangles, {} KiB",
        trace.ranks.len(),
        drawn.batches,
        drawn.batch_rects,
        drawn.svg.len().div_ceil(1024)
    );
    if trace.skipped > 0 {
        summary.push_str(&format!(" ({} other trace entries ignored)", trace.skipped));
    }
    Ok(summary)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn main() -> ExitCode {
    match parse_args(std::env::args_os().skip(1)) {
        Ok(Cli::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Cli::Run(args)) => match run(&args) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("prun-timeline: {e}");
                ExitCode::from(1)
            }
        },
        Err(msg) => {
            eprintln!("prun-timeline: {msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Cli, String> {
        parse_args(list.iter().map(OsString::from))
    }

    #[test]
    fn command_line() {
        assert_eq!(
            args(&["t.json"]),
            Ok(Cli::Run(Args {
                input: "t.json".into(),
                output: "t.svg".into(),
                map: None,
                width: DEFAULT_WIDTH
            }))
        );
        assert_eq!(
            args(&["--map", "2", "t.json", "out/x.svg", "--width=800"]),
            Ok(Cli::Run(Args {
                input: "t.json".into(),
                output: "out/x.svg".into(),
                map: Some(2),
                width: 800
            }))
        );
        assert_eq!(
            args(&["--map=3", "--", "-odd.json"]).map(|c| matches!(c, Cli::Run(a) if a.map == Some(3))),
            Ok(true)
        );
        assert_eq!(args(&["t.json", "--help"]), Ok(Cli::Help));
        assert_eq!(args(&["-h"]), Ok(Cli::Help));
        for bad in [
            &[][..],
            &["t.json", "--map"],
            &["t.json", "--map", "x"],
            &["t.json", "--width", "10"],
            &["t.json", "--colour"],
            &["a.json", "b.svg", "c"],
            &["t.svg"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }
}
