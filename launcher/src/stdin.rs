//! Forwarding prun's standard input to the ranks that read it.

use std::io::{self, Read, Write};
use std::process::ChildStdin;

/// Copies prun's stdin to every target until stdin ends, then closes them (the ranks see EOF).
///
/// A rank that exits or closes its stdin is dropped from the targets; a rank that never reads
/// only blocks this thread, never the job.
pub fn forward(targets: Vec<ChildStdin>) -> io::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    std::thread::Builder::new().name("prun-stdin".into()).spawn(move || {
        let mut targets: Vec<Option<ChildStdin>> = targets.into_iter().map(Some).collect();
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
                    && t.write_all(&buf[..n]).is_err()
                {
                    *slot = None;
                }
            }
            if targets.iter().all(Option::is_none) {
                break;
            }
        }
        // dropping the pipes' write ends gives every target EOF
    })?;
    Ok(())
}
