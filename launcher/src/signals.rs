//! Catching the signals prun forwards to its ranks.

use nix::sys::signal::Signal;
use signal_hook::consts::signal::{SIGCONT, SIGHUP, SIGINT, SIGTERM, SIGTSTP, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use std::io;
use std::sync::mpsc::Sender;

/// Signals that end the job (forwarded, then SIGKILL after the grace period).
pub const ENDING: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];
/// Signals that are only passed on to every rank.
pub const PASSED_ON: [i32; 4] = [SIGUSR1, SIGUSR2, SIGCONT, SIGTSTP];

/// Starts a thread that turns each caught signal into `wrap(signal)` on `events`.
pub fn catch<E: Send + 'static>(events: Sender<E>, wrap: fn(i32) -> E) -> io::Result<()> {
    let mut signals = Signals::new(ENDING.iter().chain(PASSED_ON.iter()))?;
    std::thread::Builder::new().name("prun-signals".into()).spawn(move || {
        for sig in signals.forever() {
            if events.send(wrap(sig)).is_err() {
                break;
            }
        }
    })?;
    Ok(())
}

/// The `nix` signal for a number (the numbers above all exist).
pub fn to_signal(n: i32) -> Signal {
    Signal::try_from(n).unwrap_or(Signal::SIGTERM)
}
