//! The runtime's error type.

use std::fmt;

/// What went wrong in a runtime call.
///
/// Every fallible call of the runtime returns this error; none of them panics on bad input,
/// bad peers or bad bytes on the wire.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A peer this call needed has exited or been killed; `reason` says how.
    #[error("rank {rank} is gone: {reason}")]
    PeerLost {
        /// The lost rank.
        rank: usize,
        /// How it ended, as the launcher or the connection reported it.
        reason: String,
    },
    /// A receive from any source found no message and no rank left that could send one.
    #[error("no message can arrive: every other rank has exited")]
    AllPeersGone,
    /// A received message could not be decoded as the type the receiver asked for.
    #[error("message from rank {src} (tag {tag}) is not a valid {type_name}: {detail}")]
    Decode {
        /// The sender.
        src: usize,
        /// The message's tag.
        tag: u32,
        /// The type the receiver asked for.
        type_name: &'static str,
        /// The codec's explanation.
        detail: String,
    },
    /// A value could not be encoded (for example, a map whose `Serialize` fails).
    #[error("could not encode a {type_name}: {detail}")]
    Encode {
        /// The type being sent.
        type_name: &'static str,
        /// The codec's explanation.
        detail: String,
    },
    /// A message is larger than the configured limit (`PRUN_MAX_MESSAGE`).
    #[error("message of {len} bytes exceeds the limit of {limit} bytes (raise PRUN_MAX_MESSAGE to allow it)")]
    MessageTooLarge {
        /// The message's length.
        len: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A message from a peer did not have the form the operation expects (for example ranks
    /// calling different collectives, or passing buffers of different lengths).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// An item of a map failed (its closure returned an error or panicked) on some rank; the
    /// map ended on every rank.
    #[error("map item {index} failed on rank {rank}: {message}")]
    MapFailed {
        /// The item's index.
        index: usize,
        /// The rank that ran it.
        rank: usize,
        /// The error or panic message.
        message: String,
    },
    /// An argument the call cannot accept (wrong buffer length, missing root value, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A rank number outside `0..size`.
    #[error("rank {rank} does not exist in a world of {size} ranks")]
    InvalidRank {
        /// The rank asked for.
        rank: usize,
        /// The world's size.
        size: usize,
    },
    /// The job could not be joined: bad environment, launcher unreachable, a rank that never
    /// started.
    #[error("prun bootstrap failed: {0}")]
    Bootstrap(String),
    /// `prun::init()` was called twice in one process.
    #[error("prun::init() was already called in this process")]
    AlreadyInitialized,
    /// The connection to the launcher was lost.
    #[error("lost the connection to the prun launcher")]
    LauncherLost,
    /// An operating-system error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the runtime was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl fmt::Display, source: std::io::Error) -> Error {
        Error::Io { context: context.to_string(), source }
    }
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
