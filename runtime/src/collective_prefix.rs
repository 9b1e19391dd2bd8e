//! Zero-copy prefix reductions for plain-old-data slices: `MPI_Scan` and `MPI_Exscan` with the
//! built-in element-wise operations.

use crate::collective_pod::{combiner, copy_exact};
use crate::communicator::Communicator;
use crate::error::{Error, Result};
use crate::op::{self, Element, Op};
use crate::trace::Call;
use prun_collectives::flat;

impl Communicator {
    /// Leaves in rank `r`'s `recv` the element-wise combination with `op` of the `send` of
    /// ranks `0..=r`: `MPI_Scan` (running totals, each rank's offset into a global array).
    ///
    /// **Collective.** Every rank passes a `send` and a `recv` of one length, the same on every
    /// rank. Recursive doubling, combining in rank order; where some host runs more ranks than
    /// it has cores, through rank 0 on 8 to 64 ranks (every rank's buffer to rank 0, which
    /// sends each rank its prefix); on the MPI backend `MPI_Scan`.
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
        let call = self.begin_prefix("scan_into", send, recv, op)?;
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native().filter(|_| crate::mpi::Native::supports::<T>()) {
            native.scan(send, recv, op, true);
            return Ok(());
        }
        match self.prefix::<T>(&call, bytemuck::cast_slice(send), true, op)? {
            Some(prefix) => copy_exact(call.name, bytemuck::cast_slice_mut(recv), &prefix),
            None => Err(Error::Malformed("scan_into: no result".into())),
        }
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
        let call = self.begin_prefix("exscan_into", send, recv, op)?;
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native().filter(|_| crate::mpi::Native::supports::<T>()) {
            // MPI leaves rank 0's buffer undefined
            let kept = (self.rank() == 0).then(|| recv.to_vec());
            native.scan(send, recv, op, false);
            if let Some(kept) = kept {
                recv.copy_from_slice(&kept);
            }
            return Ok(());
        }
        match self.prefix::<T>(&call, bytemuck::cast_slice(send), false, op)? {
            Some(prefix) => copy_exact(call.name, bytemuck::cast_slice_mut(recv), &prefix),
            None => Ok(()),
        }
    }

    /// Checks a prefix reduction's arguments and begins the call `name`.
    fn begin_prefix<T: Element>(
        &self,
        name: &'static str,
        send: &[T],
        recv: &[T],
        op: Op,
    ) -> Result<Call<'_>> {
        op::check::<T>(op)?;
        if send.len() != recv.len() {
            return Err(Error::InvalidArgument(format!(
                "{name}: send has {} elements but recv {}",
                send.len(),
                recv.len()
            )));
        }
        let mut call = self.begin(name);
        call.len = Some(std::mem::size_of_val(send));
        Ok(call)
    }

    /// The prefix of `bytes` (`T`s) over ranks `0..=rank` (`inclusive`) or `0..rank` (else;
    /// `None` on rank 0), folded with `op` in rank order, as part of `call`.
    fn prefix<T: Element>(
        &self,
        call: &Call<'_>,
        bytes: &[u8],
        inclusive: bool,
        op: Op,
    ) -> Result<Option<Vec<u8>>> {
        let elementwise = |acc: &mut [u8], other: &[u8]| op::apply::<T>(op, acc, other);
        let mut combine = combiner(bytes.len(), &elementwise);
        let (channel, seq, data) = (self.channel_for(call)?, call.seq, bytes.to_vec());
        if self.flat_typed() {
            return flat::scan(&channel, seq, data, inclusive, &mut combine);
        }
        if inclusive {
            return prun_collectives::scan(&channel, seq, data, &mut combine).map(Some);
        }
        prun_collectives::exscan(&channel, seq, data, &mut combine)
    }
}
