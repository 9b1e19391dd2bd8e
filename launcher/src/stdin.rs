//! Forwarding prun's standard input to the ranks that read it.

use std::io::{self, Read, Write};
use std::process::ChildStdin;

/// Where a copy of prun's stdin goes: a local rank's pipe, or a remote host's agent.
pub trait Target: Send {
    /// Passes a chunk on; an error drops the target.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Stdin ended (a pipe closes when dropped, an agent is told).
    fn end(&mut self) {}
}

impl Target for ChildStdin {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }
}

/// Copies prun's stdin to every target until stdin ends, then closes them (the ranks see EOF).
///
/// A rank that exits or closes its stdin is dropped from the targets; a rank that never reads
/// only blocks this thread, never the job.
pub fn forward(targets: Vec<Box<dyn Target>>) -> io::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    std::thread::Builder::new().name("prun-stdin".into()).spawn(move || {
        let mut targets: Vec<Option<Box<dyn Target>>> = targets.into_iter().map(Some).collect();
        let mut input = io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // a closed or invalid stdin counts as empty
            };
            for slot in targets.iter_mut() {
                if let Some(t) = slot
                    && t.write(&buf[..n]).is_err()
                {
                    *slot = None;
                }
            }
            if targets.iter().all(Option::is_none) {
                break;
            }
        }
        // dropping the pipes' write ends gives every target EOF
        for t in targets.iter_mut().flatten() {
            t.end();
        }
    })?;
    Ok(())
}
