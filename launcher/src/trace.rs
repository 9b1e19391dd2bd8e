//! Merging the ranks' trace files into one Chrome trace (`prun --trace FILE`).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Writes the events of every `rank-R.trace` in `dir` to `out` as Chrome trace JSON, with a
/// name for each rank's row; returns the number of events.
pub fn merge(dir: &Path, ranks: usize, out: &Path) -> io::Result<usize> {
    let mut events: Vec<String> = (0..ranks)
        .map(|r| format!("{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":{r},\"args\":{{\"name\":\"rank {r}\"}}}}"))
        .collect();
    let mut count = 0;
    for r in 0..ranks {
        let Ok(text) = fs::read_to_string(dir.join(format!("rank-{r}.trace"))) else { continue };
        // each line is one event object, as the runtime wrote it
        for line in text.lines().filter(|l| l.starts_with('{') && l.ends_with('}')) {
            events.push(line.to_string());
            count += 1;
        }
    }
    let mut f = io::BufWriter::new(fs::File::create(out)?);
    writeln!(f, "{{\"displayTimeUnit\":\"ms\",\"traceEvents\":[")?;
    writeln!(f, "{}", events.join(",\n"))?;
    writeln!(f, "]}}")?;
    f.flush()?;
    Ok(count)
}
