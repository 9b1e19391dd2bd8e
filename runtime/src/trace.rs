//! Execution tracing for `prun --trace FILE`: each rank records its map batches, steals, maps
//! and collectives as Chrome trace events, and the launcher merges them into one file that opens
//! in Perfetto (or renders with `prun-timeline`).
//!
//! The launcher sets `PRUN_TRACE_DIR` (on other hosts, the host's agent sets it to a folder of
//! its own and sends each rank's events to the launcher once the rank has ended); each rank
//! appends one JSON event per line to `rank-R.trace` there, buffering in memory and writing at the end of each map, every few
//! thousand events, and when the last communicator is dropped (events of a process that exits
//! without dropping its `World` after its last map or collective are lost). Without the
//! variable nothing is recorded and tracing costs one branch per batch.

use crate::env;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Events kept in memory before they are written out.
const BUFFER: usize = 4096;

/// One rank's trace recorder.
pub(crate) struct Tracer {
    rank: usize,
    path: PathBuf,
    lines: Mutex<Vec<String>>,
    /// The same moment, as an `Instant` and as microseconds since the Unix epoch.
    base: (Instant, f64),
}

impl Tracer {
    /// A recorder for `rank` when the launcher asked for a trace.
    pub fn from_env(rank: usize) -> Option<Tracer> {
        let dir = std::env::var_os(env::TRACE_DIR)?;
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e6);
        Some(Tracer {
            rank,
            path: PathBuf::from(dir).join(format!("rank-{rank}.trace")),
            lines: Mutex::new(Vec::new()),
            base: (Instant::now(), wall),
        })
    }

    fn micros(&self, t: Instant) -> f64 {
        self.base.1 + t.saturating_duration_since(self.base.0).as_secs_f64() * 1e6
    }

    /// Records a complete event from `start` to `end`; `args` is the inside of a JSON object.
    pub fn record(&self, name: &str, cat: &str, start: Instant, end: Instant, args: &str) {
        let line = format!(
            "{{\"name\":\"{name}\",\"cat\":\"{cat}\",\"ph\":\"X\",\"ts\":{:.3},\"dur\":{:.3},\"pid\":0,\"tid\":{},\"args\":{{{args}}}}}",
            self.micros(start),
            end.saturating_duration_since(start).as_secs_f64() * 1e6,
            self.rank
        );
        let full = {
            let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
            lines.push(line);
            lines.len() >= BUFFER
        };
        if full {
            self.flush();
        }
    }

    /// Appends the recorded events to this rank's file; a failure to write loses them quietly
    /// (tracing must never break the job).
    pub fn flush(&self) {
        let lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(PoisonError::into_inner));
        if lines.is_empty() {
            return;
        }
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&self.path) {
            let mut text = lines.join("\n");
            text.push('\n');
            let _ = f.write_all(text.as_bytes());
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A collective call in progress: its sequence number, what every rank must agree on, and its
/// trace event when dropped.
pub(crate) struct Call<'a> {
    /// The call's sequence number on its communicator.
    pub seq: u32,
    /// The operation's name.
    pub name: &'static str,
    /// The root, for rooted operations.
    pub root: Option<usize>,
    /// The buffer length every rank must pass, for zero-copy operations.
    pub len: Option<usize>,
    /// More `"key":value` pairs for the trace event.
    pub args: String,
    /// The tracer and when the call started, when it is traced (reading the clock costs a small
    /// call's time).
    traced: Option<(&'a Tracer, Instant)>,
    cat: &'static str,
}

impl<'a> Call<'a> {
    /// Starts call `seq` named `name` in category `cat`.
    pub fn new(seq: u32, tracer: Option<&'a Tracer>, name: &'static str, cat: &'static str) -> Call<'a> {
        let traced = tracer.map(|t| (t, Instant::now()));
        Call { seq, name, root: None, len: None, args: String::new(), traced, cat }
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if let Some((t, start)) = self.traced {
            let sep = if self.args.is_empty() { "" } else { "," };
            t.record(
                self.name,
                self.cat,
                start,
                Instant::now(),
                &format!("\"call\":{}{sep}{}", self.seq, self.args),
            );
        }
    }
}
