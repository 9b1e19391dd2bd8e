//! Forwarding the ranks' output to prun's stdout and stderr, a whole line at a time.
//!
//! [`OutputSink`] assembles lines per rank and stream and writes each complete line with one
//! `write`, so lines of different ranks never mix, tagged with the rank when asked. Local ranks'
//! pipes are read by [`forward_pipes`]; remote hosts will feed the same sink.

use crate::progress::Progress;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Which of a rank's streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A partial line longer than this is written out even without its newline.
const MAX_LINE: usize = 64 * 1024;

/// How long an unfinished line (a prompt, say) waits before untagged output shows it.
pub const IDLE_FLUSH: Duration = Duration::from_millis(100);

/// Where forwarded output goes: prun's own streams ([`OutputSink`]) or, on a remote host, the
/// agent's channel to the launcher.
pub trait Sink: Send {
    /// Output from a rank.
    fn data(&mut self, rank: usize, kind: StreamKind, bytes: &[u8]);
    /// A rank's stream ended.
    fn eof(&mut self, rank: usize, kind: StreamKind);
    /// Whether unfinished lines are waiting for [`Sink::idle`].
    fn has_partial(&self) -> bool {
        false
    }
    /// Output has been quiet for a while.
    fn idle(&mut self) {}
}

/// Output files opened so far, by rank and stream.
type OpenFiles = HashMap<(usize, StreamKind), File>;

/// Writes the ranks' output lines to prun's own streams.
pub struct OutputSink {
    /// With `--output-dir`: the folder, and the files opened so far (for remote ranks, whose
    /// output arrives through their agent).
    folder: Option<(std::path::PathBuf, OpenFiles)>,
    tag: bool,
    /// With the host in the tag: each rank's host.
    hosts: Option<Vec<String>>,
    progress: Progress,
    partial: HashMap<(usize, StreamKind), Vec<u8>>,
    stdout_broken: bool,
    stderr_broken: bool,
}

impl OutputSink {
    /// A sink writing to prun's stdout and stderr; `tag` prefixes lines with `[rank] `; lines
    /// are written with the progress bar hidden.
    pub fn new(tag: bool, progress: Progress) -> OutputSink {
        OutputSink {
            folder: None,
            tag,
            hosts: None,
            progress,
            partial: HashMap::new(),
            stdout_broken: false,
            stderr_broken: false,
        }
    }

    /// Puts each rank's host in its tag: `[3@node2] `.
    pub fn with_hosts(mut self, hosts: Vec<String>) -> OutputSink {
        self.hosts = Some(hosts);
        self
    }

    /// Writes each rank's output to `dir/rank.R.stdout` and `dir/rank.R.stderr` instead.
    pub fn into_folder(mut self, dir: std::path::PathBuf) -> OutputSink {
        self.folder = Some((dir, HashMap::new()));
        self
    }

    fn emit(&mut self, rank: usize, kind: StreamKind, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut line;
        let data = if self.tag {
            line = match self.hosts.as_ref().and_then(|h| h.get(rank)) {
                Some(host) => format!("[{rank}@{host}] ").into_bytes(),
                None => format!("[{rank}] ").into_bytes(),
            };
            line.extend_from_slice(bytes);
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            &line[..]
        } else {
            bytes
        };
        // a closed stdout (prun ... | head) discards the rest, so ranks never block on it
        let write = |mut w: Box<dyn Write>| w.write_all(data).and_then(|()| w.flush());
        let (broken, result) = match kind {
            StreamKind::Stdout => {
                (&mut self.stdout_broken, self.progress.suspend(|| write(Box::new(io::stdout().lock()))))
            }
            StreamKind::Stderr => {
                (&mut self.stderr_broken, self.progress.suspend(|| write(Box::new(io::stderr().lock()))))
            }
        };
        if result.is_err() {
            *broken = true;
        }
    }
}

impl Sink for OutputSink {
    /// Output from a rank: complete lines are written now, the rest is kept.
    fn data(&mut self, rank: usize, kind: StreamKind, bytes: &[u8]) {
        if let Some((dir, files)) = &mut self.folder {
            let name = match kind {
                StreamKind::Stdout => format!("rank.{rank}.stdout"),
                StreamKind::Stderr => format!("rank.{rank}.stderr"),
            };
            let file = match files.entry((rank, kind)) {
                std::collections::hash_map::Entry::Occupied(f) => Some(f.into_mut()),
                std::collections::hash_map::Entry::Vacant(v) => {
                    File::create(dir.join(name)).ok().map(|f| v.insert(f))
                }
            };
            if let Some(f) = file {
                let _ = f.write_all(bytes);
            }
            return;
        }
        let mut held = self.partial.remove(&(rank, kind)).unwrap_or_default();
        held.extend_from_slice(bytes);
        match held.iter().rposition(|&b| b == b'\n') {
            Some(end) if self.tag => {
                let rest = held.split_off(end + 1);
                for line in held.split_inclusive(|&b| b == b'\n') {
                    self.emit(rank, kind, line);
                }
                held = rest;
            }
            Some(end) => {
                let rest = held.split_off(end + 1);
                self.emit(rank, kind, &held);
                held = rest;
            }
            None => {}
        }
        if held.len() >= MAX_LINE {
            self.emit(rank, kind, &held);
            held.clear();
        }
        if !held.is_empty() {
            self.partial.insert((rank, kind), held);
        }
    }

    /// A rank's stream ended: its last, unfinished line is written.
    fn eof(&mut self, rank: usize, kind: StreamKind) {
        if self.folder.is_some() {
            // every rank gets both files, as local ranks do, even if it wrote nothing
            self.data(rank, kind, &[]);
            return;
        }
        if let Some(held) = self.partial.remove(&(rank, kind)) {
            self.emit(rank, kind, &held);
        }
    }

    /// Whether unfinished lines are waiting.
    fn has_partial(&self) -> bool {
        !self.tag && !self.partial.is_empty()
    }

    /// Output has been quiet for a while: untagged unfinished lines (prompts) are shown.
    fn idle(&mut self) {
        if !self.tag {
            for ((rank, kind), held) in std::mem::take(&mut self.partial) {
                self.emit(rank, kind, &held);
            }
        }
    }
}

/// One pipe to read.
pub struct Pipe {
    /// The rank writing into it.
    pub rank: usize,
    /// Which of its streams.
    pub kind: StreamKind,
    /// The read end.
    pub file: File,
}

/// Reads every pipe until all are closed, feeding the sink; one thread for all ranks.
pub fn forward_pipes<S: Sink + 'static>(
    pipes: Vec<Pipe>,
    sink: Arc<Mutex<S>>,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("prun-output".into()).spawn(move || {
        let mut open: Vec<Pipe> = pipes;
        let mut buf = vec![0u8; 64 * 1024];
        while !open.is_empty() {
            let waiting = sink.lock().unwrap_or_else(PoisonError::into_inner).has_partial();
            let timeout =
                if waiting { PollTimeout::from(IDLE_FLUSH.as_millis() as u16) } else { PollTimeout::NONE };
            let ready: Vec<bool> = {
                let mut fds: Vec<PollFd> =
                    open.iter().map(|p| PollFd::new(p.file.as_fd(), PollFlags::POLLIN)).collect();
                match poll(&mut fds, timeout) {
                    Ok(0) => {
                        sink.lock().unwrap_or_else(PoisonError::into_inner).idle();
                        continue;
                    }
                    Ok(_) => fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect(),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => vec![true; open.len()],
                }
            };
            let mut closed = Vec::new();
            for (i, pipe) in open.iter_mut().enumerate().filter(|(i, _)| ready[*i]) {
                let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
                match pipe.file.read(&mut buf) {
                    Ok(0) => {
                        sink.eof(pipe.rank, pipe.kind);
                        closed.push(i);
                    }
                    Ok(n) => sink.data(pipe.rank, pipe.kind, &buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        sink.eof(pipe.rank, pipe.kind);
                        closed.push(i);
                    }
                }
            }
            for i in closed.into_iter().rev() {
                open.swap_remove(i);
            }
        }
        sink.lock().unwrap_or_else(PoisonError::into_inner).idle();
    })
}
