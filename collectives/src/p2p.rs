//! The point-to-point interface that collective algorithms are written against.

/// Rounds one collective call may use; tags of consecutive calls never collide below this.
pub const MAX_ROUNDS: u32 = 64;

/// The tag of round `round` of collective call number `seq` on a communicator.
///
/// Sequence numbers wrap around; two calls alias only if they are `2^26` calls apart, which
/// cannot happen since every rank finishes a call before it starts the next.
pub fn tag(seq: u32, round: u32) -> u32 {
    debug_assert!(round < MAX_ROUNDS, "collective round {round} out of range");
    seq.wrapping_mul(MAX_ROUNDS).wrapping_add(round % MAX_ROUNDS)
}

/// Blocking point-to-point messaging between the ranks of one group.
///
/// Implementations must deliver messages between a pair of ranks in the order they were sent for
/// each tag, must not busy-wait in `recv`, and must return an error (never block forever) when
/// the peer of a `recv` is gone.
pub trait PointToPoint {
    /// The transport's error.
    type Error;

    /// This rank's number, `0..size()`.
    fn rank(&self) -> usize;

    /// Number of ranks in the group.
    fn size(&self) -> usize;

    /// Sends `data` to rank `dest` with `tag`. May return before the receiver has received it.
    fn send(&self, dest: usize, tag: u32, data: &[u8]) -> Result<(), Self::Error>;

    /// Receives the next message from rank `src` with `tag`, blocking until it arrives.
    fn recv(&self, src: usize, tag: u32) -> Result<Vec<u8>, Self::Error>;
}
