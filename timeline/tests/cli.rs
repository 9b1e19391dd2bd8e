//! Runs the `prun-timeline` binary on files.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prun-timeline"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prun-timeline-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run prun-timeline")
}

const TRACE: &str = r#"{"traceEvents": [
  {"name": "thread_name", "ph": "M", "pid": 0, "tid": 1, "args": {"name": "rank 1"}},
  {"name": "batch", "cat": "map", "ph": "X", "ts": 1000.0, "dur": 50.0, "pid": 0, "tid": 0,
   "args": {"map": 1, "first": 0, "count": 10, "total": 20}},
  {"name": "batch", "cat": "map", "ph": "X", "ts": 1000.0, "dur": 60.0, "pid": 0, "tid": 1,
   "args": {"map": 1, "first": 10, "count": 10, "total": 20}},
  {"name": "map", "cat": "map", "ph": "X", "ts": 1000.0, "dur": 60.0, "pid": 0, "tid": 0,
   "args": {"map": 1, "total": 20, "balance": "static"}}
], "displayTimeUnit": "ms"}"#;

#[test]
fn writes_an_svg_next_to_the_trace() {
    let dir = temp_dir("default");
    let trace = dir.join("run.json");
    std::fs::write(&trace, TRACE).expect("write trace");
    let out = run(bin().arg(&trace));
    assert!(out.status.success(), "{out:?}");
    let svg = std::fs::read_to_string(dir.join("run.svg")).expect("svg written");
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains(">rank 0</text>") && svg.contains(">rank 1</text>"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("run.svg"));

    let named = dir.join("sub.svg");
    let out = run(bin().args(["--map", "1", "--width", "800"]).arg(&trace).arg(&named));
    assert!(out.status.success(), "{out:?}");
    let svg = std::fs::read_to_string(&named).expect("svg written");
    assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" width="800""#));
    assert!(svg.contains("map 1 only"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trace_errors_exit_1_naming_the_file() {
    let dir = temp_dir("errors");
    let missing = dir.join("missing.json");
    let out = run(bin().arg(&missing));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.json") && err.contains("cannot read"), "{err}");

    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"traceEvents\": [ {\"ph\": ").expect("write");
    let out = run(bin().arg(&bad));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json") && err.contains("not valid JSON"), "{err}");

    let empty = dir.join("other.json");
    std::fs::write(&empty, r#"{"events": []}"#).expect("write");
    let out = run(bin().arg(&empty));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("traceEvents"));

    let trace = dir.join("run.json");
    std::fs::write(&trace, TRACE).expect("write trace");
    let out = run(bin().arg(&trace).args(["--map", "7"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no events for map 7 (map calls in this trace: 1)")
    );
    assert!(!dir.join("run.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(run(&mut bin()).status.code(), Some(2));
    assert_eq!(run(bin().args(["t.json", "--bogus"])).status.code(), Some(2));
    assert_eq!(run(bin().args(["t.json", "--width", "abc"])).status.code(), Some(2));
    let out = run(bin().arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Usage: prun-timeline TRACE.json"));
}
