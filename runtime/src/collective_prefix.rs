//! Zero-copy prefix reductions for plain-old-data slices: `MPI_Scan` and `MPI_Exscan` with the
//! built-in element-wise operations.

use crate::collective_pod::{combiner, copy_exact};
use crate::communicator::Communicator;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::op::{self, Element, Op};
use prun_collectives::{flat, prefix, tuning};

impl Communicator {
    /// Leaves in rank `r`'s `recv` the element-wise combination with `op` of the `send` of
    /// ranks `0..=r`: `MPI_Scan` (running totals, each rank's offset into a global array).
    ///
    /// **Collective.** Every rank passes a `send` and a `recv` of one length, the same on every
    /// rank. Recursive doubling (MPICH's: `log2(size)` exchanges, each received into one
    /// scratch buffer or straight into `recv` and folded there); where some host runs more
    /// ranks than it has cores, short buffers through rank 0 on 8 to 64 ranks (every rank's
    /// buffer to rank 0, which sends each rank its prefix) and longer ones along the chain of
    /// ranks, each rank folding its own into what the rank before passes it (in pieces from
    /// 512 KiB, whole again from 4 MiB); on the MPI backend `MPI_Scan`.
    ///
    /// ```
    /// use prun::Op;
    /// let world = prun::init()?;
    /// // how many items the ranks up to this one hold, for two kinds of item
    /// let mine = [world.rank() as u64 + 1, 10];
    /// let mut upto = [0u64; 2];
    /// world.scan_into(&mine, &mut upto, Op::Sum)?;
    /// let r = world.rank() as u64;
    /// assert_eq!(upto, [(r + 1) * (r + 2) / 2, 10 * (r + 1)]);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a `recv` of another length than `send`, or a bitwise `op`
    /// on floats; [`Error::Malformed`] when lengths differ between ranks; [`Error::PeerLost`].
    pub fn scan_into<T: Element>(&self, send: &[T], recv: &mut [T], op: Op) -> Result<()> {
        self.prefix_into("scan_into", send, recv, op, true)
    }

    /// Leaves in rank `r`'s `recv` the element-wise combination with `op` of the `send` of
    /// ranks `0..r`, for every rank but rank 0, whose `recv` is left as it was: `MPI_Exscan`
    /// (each rank's offset, the total of the ranks before it).
    ///
    /// **Collective.** As [`Communicator::scan_into`], whose algorithms it shares; on the MPI
    /// backend `MPI_Exscan` (rank 0's `recv` kept as it was there too).
    ///
    /// ```
    /// use prun::Op;
    /// let world = prun::init()?;
    /// // where this rank's 100 items start in a global array
    /// let mut start = [0usize];
    /// world.exscan_into(&[100], &mut start, Op::Sum)?;
    /// assert_eq!(start[0], 100 * world.rank());
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Communicator::scan_into`].
    pub fn exscan_into<T: Element>(&self, send: &[T], recv: &mut [T], op: Op) -> Result<()> {
        self.prefix_into("exscan_into", send, recv, op, false)
    }

    /// The prefix reduction `name` of [`Communicator::scan_into`] (`inclusive`) or
    /// [`Communicator::exscan_into`]: into `recv`, `send` folded with `op` over ranks
    /// `0..=rank` (`inclusive`) or `0..rank` (else; rank 0's `recv` left as it was). Where ranks
    /// share cores, through rank 0 for short buffers (8 to 64 ranks), else along the chain of
    /// ranks; with a core per rank by recursive doubling into place.
    fn prefix_into<T: Element>(
        &self,
        name: &'static str,
        send: &[T],
        recv: &mut [T],
        op: Op,
        inclusive: bool,
    ) -> Result<()> {
        op::check::<T>(op)?;
        crate::collective_pod::same_count(name, send.len(), recv.len())?;
        let mut call = self.begin(name);
        call.len = Some(std::mem::size_of_val(send));
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native().filter(|_| crate::mpi::Native::supports::<T>()) {
            // MPI leaves an exclusive scan's buffer on rank 0 undefined
            let kept = (!inclusive && self.rank() == 0).then(|| recv.to_vec());
            native.scan(send, recv, op, inclusive);
            if let Some(kept) = kept {
                recv.copy_from_slice(&kept);
            }
            return Ok(());
        }
        let (send, recv): (&[u8], &mut [u8]) = (bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv));
        let elementwise = |acc: &mut [u8], other: &[u8]| op::apply::<T>(op, acc, other);
        let (channel, seq) = (self.channel_for(&call)?, call.seq);
        if self.flat_typed() && self.flat(send.len()) {
            let mut combine = combiner(send.len(), &elementwise);
            return match flat::scan(&channel, seq, send.to_vec(), inclusive, &mut combine)? {
                Some(prefix) => copy_exact(name, recv, &prefix),
                None => Ok(()),
            };
        }
        if self.shared_engine().crowded() && self.size() > 2 {
            // where ranks share cores the total work is the time: along the chain of ranks
            let piece = tuning::scan_piece(send.len());
            return prefix::chain_into(&channel, seq, send, recv, inclusive, &elementwise, piece);
        }
        prefix::scan_into(&channel, seq, send, recv, inclusive, &elementwise)
    }
}
