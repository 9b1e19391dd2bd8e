//! The progress of dynamic maps, as the map's root reports it: an indicatif bar on a terminal,
//! a line every few seconds elsewhere (with `--progress`), nothing otherwise.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a progress line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

enum Show {
    Off,
    Bar(Option<(u32, ProgressBar)>),
    Lines(Option<Instant>),
}

/// The progress display, shared by the job's event loop and the output forwarder.
#[derive(Clone)]
pub struct Progress {
    show: Arc<Mutex<Show>>,
}

impl Progress {
    /// A bar when stderr is a terminal, lines when `forced` on a non-terminal, else nothing.
    pub fn new(forced: bool, quiet: bool) -> Progress {
        let show = match (std::io::stderr().is_terminal(), forced) {
            _ if quiet => Show::Off,
            (true, _) => Show::Bar(None),
            (false, true) => Show::Lines(None),
            (false, false) => Show::Off,
        };
        Progress { show: Arc::new(Mutex::new(show)) }
    }

    /// Map `map` has `done` of `total` items.
    pub fn update(&self, map: u32, done: u64, total: u64) {
        let mut show = self.show.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *show {
            Show::Off => {}
            Show::Bar(current) => {
                if current.as_ref().is_none_or(|(m, _)| *m != map) {
                    if let Some((_, old)) = current.take() {
                        old.finish();
                    }
                    let bar = ProgressBar::new(total);
                    let style = ProgressStyle::with_template(
                        "{spinner} map {msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} items ({per_sec}, {eta} left)",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
                    bar.set_style(style);
                    bar.set_message(map.to_string());
                    bar.enable_steady_tick(Duration::from_millis(200));
                    *current = Some((map, bar));
                }
                if let Some((_, bar)) = current {
                    bar.set_position(done);
                    if done >= total {
                        bar.finish();
                    }
                }
            }
            Show::Lines(last) => {
                if done >= total || last.is_none_or(|t| t.elapsed() >= LINE_EVERY) {
                    *last = Some(Instant::now());
                    let pct = if total == 0 { 100.0 } else { done as f64 * 100.0 / total as f64 };
                    eprintln!("prun: map {map}: {done}/{total} items ({pct:.0}%)");
                }
            }
        }
    }

    /// Runs `write` with the bar hidden, so that output lines never mix with it.
    pub fn suspend<R>(&self, write: impl FnOnce() -> R) -> R {
        let show = self.show.lock().unwrap_or_else(PoisonError::into_inner);
        match &*show {
            Show::Bar(Some((_, bar))) if !bar.is_finished() => bar.suspend(write),
            _ => write(),
        }
    }

    /// The job is over: leaves the last bar as it is.
    pub fn finish(&self) {
        if let Show::Bar(Some((_, bar))) = &*self.show.lock().unwrap_or_else(PoisonError::into_inner) {
            bar.abandon();
        }
    }
}
