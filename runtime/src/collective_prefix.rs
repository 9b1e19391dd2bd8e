//! Zero-copy prefix reductions for plain-old-data slices: `MPI_Scan` and `MPI_Exscan` with the
//! built-in element-wise operations or the caller's.

use crate::collective_pod::{combiner, copy_exact, same_count};
use crate::communicator::Communicator;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::op::{self, Element, Op};
use crate::trace::Call;
use bytemuck::Pod;
use prun_collectives::prefix::{self, Fold};
use prun_collectives::{flat, tuning};

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

    /// As [`Communicator::scan_into`] with an operation of the caller's: `op(&mut acc, &x)`
    /// folds `x` into `acc`, element by element, for any plain-old-data `T`; rank `r`'s `recv`
    /// becomes `send` of rank 0, then of rank 1, ..., then of rank `r`, combined in that order
    /// (as `MPI_Op_create` with an operation that is not commutative).
    ///
    /// **Collective.** Every rank passes the same `op`, and a `send` and `recv` of one length,
    /// the same on every rank. `op` must be associative; it need not be commutative: the
    /// algorithms of [`Communicator::scan_into`] fold what comes from lower ranks before and
    /// the rest after. No element goes through serialisation; on the MPI backend the built-in
    /// algorithms run over MPI's point-to-point.
    ///
    /// ```
    /// let world = prun::init()?;
    /// // the recurrence y(r) = 2 y(r - 1) + r, y(-1) = 0, as a scan of the maps x -> a x + b
    /// // held as [a, b]: "acc then x" is x -> x.a (acc.a x + acc.b) + x.b
    /// // (modulo 2^64)
    /// let then = |acc: &mut [u64; 2], x: &[u64; 2]| {
    ///     *acc = [x[0].wrapping_mul(acc[0]), x[0].wrapping_mul(acc[1]).wrapping_add(x[1])];
    /// };
    /// let mut upto = [[0u64; 2]];
    /// world.scan_into_with(&[[2, world.rank() as u64]], &mut upto, then)?;
    /// // y(r): the maps of ranks 0..=r applied to 0, 2^(r + 1) - r - 2
    /// let r = world.rank() as u64;
    /// assert_eq!(upto[0][1], 2u64.wrapping_pow(r as u32 + 1).wrapping_sub(r + 2));
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a `recv` of another length than `send`;
    /// [`Error::Malformed`] when lengths differ between ranks; [`Error::PeerLost`].
    pub fn scan_into_with<T: Pod, F: Fn(&mut T, &T)>(&self, send: &[T], recv: &mut [T], op: F) -> Result<()> {
        self.prefix_into_with("scan_into_with", send, recv, op, true)
    }

    /// As [`Communicator::exscan_into`] with an operation of the caller's: rank `r`'s `recv`
    /// becomes `send` of ranks `0..r` combined by `op` in rank order, for every rank but rank 0,
    /// whose `recv` is left as it was.
    ///
    /// **Collective.** As [`Communicator::scan_into_with`] (`op` associative, not necessarily
    /// commutative).
    ///
    /// ```
    /// let world = prun::init()?;
    /// // each rank holds the last of its items; the last item of the ranks before it
    /// let last = |acc: &mut u32, x: &u32| *acc = *x;
    /// let mut before = [u32::MAX];
    /// world.exscan_into_with(&[world.rank() as u32 * 10], &mut before, last)?;
    /// let r = world.rank() as u32;
    /// assert_eq!(before[0], if r == 0 { u32::MAX } else { (r - 1) * 10 });
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Communicator::scan_into_with`].
    pub fn exscan_into_with<T: Pod, F: Fn(&mut T, &T)>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: F,
    ) -> Result<()> {
        self.prefix_into_with("exscan_into_with", send, recv, op, false)
    }

    /// The prefix reduction `name` of [`Communicator::scan_into`] (`inclusive`) or
    /// [`Communicator::exscan_into`]: native on the MPI backend, else [`Communicator::prefix_bytes`].
    fn prefix_into<T: Element>(
        &self,
        name: &'static str,
        send: &[T],
        recv: &mut [T],
        op: Op,
        inclusive: bool,
    ) -> Result<()> {
        op::check::<T>(op)?;
        same_count(name, send.len(), recv.len())?;
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
        let elementwise = |acc: &mut [u8], other: &[u8]| op::apply::<T>(op, acc, other);
        let (send, recv) = (bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv));
        self.prefix_bytes(&call, send, recv, inclusive, Fold::commutative(&elementwise))
    }

    /// The prefix reduction `name` of [`Communicator::scan_into_with`] (`inclusive`) or
    /// [`Communicator::exscan_into_with`].
    fn prefix_into_with<T: Pod, F: Fn(&mut T, &T)>(
        &self,
        name: &'static str,
        send: &[T],
        recv: &mut [T],
        op: F,
        inclusive: bool,
    ) -> Result<()> {
        same_count(name, send.len(), recv.len())?;
        let mut call = self.begin(name);
        call.len = Some(std::mem::size_of_val(send));
        let after = |acc: &mut [u8], x: &[u8]| op::apply_with(acc, x, &op);
        let ahead = |acc: &mut T, x: &T| {
            let mut first = *x;
            op(&mut first, acc);
            *acc = first;
        };
        let before = |acc: &mut [u8], x: &[u8]| op::apply_with(acc, x, &ahead);
        let fold = Fold { after: &after, before: &before };
        self.prefix_bytes(&call, bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv), inclusive, fold)
    }

    /// The prefix reduction of `call` on bytes: into `recv`, `send` folded by `op` in rank order
    /// over ranks `0..=rank` (`inclusive`) or `0..rank` (else; rank 0's `recv` left as it was).
    /// Where ranks share cores, through rank 0 for short buffers (8 to 64 ranks), else along the
    /// chain of ranks; with a core per rank by recursive doubling into place.
    fn prefix_bytes(
        &self,
        call: &Call<'_>,
        send: &[u8],
        recv: &mut [u8],
        inclusive: bool,
        op: Fold<'_>,
    ) -> Result<()> {
        let (channel, seq) = (self.channel_for(call)?, call.seq);
        if self.flat_typed() && self.flat(send.len()) {
            // rank 0 combines in rank order
            let mut combine = combiner(send.len(), op.after);
            return match flat::scan(&channel, seq, send.to_vec(), inclusive, &mut combine)? {
                Some(prefix) => copy_exact(call.name, recv, &prefix),
                None => Ok(()),
            };
        }
        if self.shared_engine().crowded() && self.size() > 2 {
            // where ranks share cores the total work is the time: along the chain of ranks
            let piece = tuning::scan_piece(send.len());
            return prefix::chain_into(&channel, seq, send, recv, inclusive, op, piece);
        }
        prefix::scan_into(&channel, seq, send, recv, inclusive, op)
    }
}
