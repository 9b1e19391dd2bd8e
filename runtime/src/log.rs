//! Debug messages of the runtime, printed to stderr when `PRUN_DEBUG=1`.

use std::sync::OnceLock;

/// Whether debug messages are printed (read once from the environment).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(crate::env::debug_enabled)
}

/// Prints a debug message when `PRUN_DEBUG=1`.
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::enabled() {
            // a failed write to stderr (a closed pipe) is ignored, never a panic
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("prun[{}]: {}\n", std::process::id(), format_args!($($arg)*)),
            );
        }
    };
}
pub(crate) use debug;
