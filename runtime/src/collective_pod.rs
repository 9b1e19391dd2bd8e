//! Zero-copy collectives for plain-old-data slices (`bytemuck::Pod`): no serialisation, the
//! bytes of the caller's buffers go on the wire as they are, and built-in element-wise
//! reductions ([`Op`]) run on them in place.

use crate::communicator::Communicator;
use crate::error::{Error, Result};
use crate::op::{self, Element, Op};
use crate::trace::Call;
use bytemuck::Pod;
use prun_collectives::{direct, elementwise, flat, halving, in_place, reduce_scatter, tuning};

pub(crate) fn copy_exact(what: &str, dst: &mut [u8], src: &[u8]) -> Result<()> {
    if dst.len() != src.len() {
        return Err(length_mismatch(what, dst.len(), src.len()));
    }
    dst.copy_from_slice(src);
    Ok(())
}

/// The error for `received` bytes that were to fill a buffer of `buffer` bytes.
fn length_mismatch(what: &str, buffer: usize, received: usize) -> Error {
    Error::Malformed(format!(
        "{what}: received {received} bytes for a buffer of {buffer} bytes (ranks passed buffers of different lengths)"
    ))
}

/// The error for a reduce-scatter whose `send` (`sent` elements) is not `size` blocks of
/// `recv`'s `kept` elements.
fn blocks_fit(what: &str, sent: usize, kept: usize, size: usize) -> Result<()> {
    if sent == kept.saturating_mul(size) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "{what}: send must hold {size} blocks of recv's {kept} elements, not {sent}"
    )))
}

/// The error for an element-wise collective whose `send` and `recv` differ in length.
pub(crate) fn same_count(what: &str, sent: usize, received: usize) -> Result<()> {
    if sent == received {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!("{what}: send has {sent} elements but recv {received}")))
}

fn missing(what: &str) -> Error {
    Error::InvalidArgument(format!("{what}: the root must pass its buffer"))
}

impl Communicator {
    /// Copies the root's `buf` into `buf` on every rank.
    ///
    /// **Collective.** Every rank passes a buffer of the same length. A binomial tree, each rank
    /// receiving straight into `buf`; where some host runs more ranks than it has cores,
    /// straight from the root to every rank, all at once, on 8 to 16 ranks (and on up to 64 for
    /// short buffers, or of 1 MiB and more). As with MPI, a rank may return only once the ranks
    /// it sends to have entered the call (where ranks share cores, buffers of 64 KiB or more are
    /// copied straight out of the sender's memory, which waits for them), so no rank should wait
    /// for another rank's message sent after the broadcast before it enters the broadcast
    /// itself.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let mut grid = vec![0.0f64; 1024];
    /// if world.rank() == 0 {
    ///     grid.iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
    /// }
    /// world.broadcast_into(0, &mut grid)?;
    /// assert_eq!(grid[1023], 1023.0);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Malformed`] when ranks pass buffers of different lengths; [`Error::PeerLost`].
    pub fn broadcast_into<T: Pod>(&self, root: usize, buf: &mut [T]) -> Result<()> {
        self.check_root(root)?;
        let mut call = self.begin("broadcast_into");
        call.root = Some(root);
        let seq = call.seq;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(buf);
        call.len = Some(bytes.len());
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            native.broadcast(root, bytes);
            return Ok(());
        }
        // where ranks share cores, straight from the root (at every size up to
        // `BCAST_FAN_MAX_RANKS` ranks, on more from `BCAST_FAN_MIN` bytes): its messages go out
        // at once and their receivers copy them at once (see `PointToPoint::send_each`)
        if self.flat_typed() && (self.flat(bytes.len()) || tuning::bcast_fan(self.size(), bytes.len())) {
            return flat::broadcast_into(&self.channel_for(&call)?, seq, root, bytes);
        }
        // a binomial tree, each rank receiving in place: with every rank's copy done straight
        // into its buffer, this beats scatter + allgather at every size measured (8 ranks on 2
        // cores, 16 MiB: 34 ms against 86 ms), since the cores, not the links, are the limit
        in_place::broadcast_into(&self.channel_for(&call)?, seq, root, bytes)
    }

    /// Hands the `r`-th chunk of the root's `send` to rank `r`'s `recv`.
    ///
    /// **Collective.** The root passes `Some(send)` holding `size() * recv.len()` elements; every
    /// rank's `recv` has the same length.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let all: Vec<u32> = (0..4 * world.size() as u32).collect();
    /// let mut mine = [0u32; 4];
    /// world.scatter_into(0, (world.rank() == 0).then_some(&all[..]), &mut mine)?;
    /// assert_eq!(mine[0] as usize, 4 * world.rank());
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a missing or wrongly sized root buffer; [`Error::Malformed`].
    pub fn scatter_into<T: Pod>(&self, root: usize, send: Option<&[T]>, recv: &mut [T]) -> Result<()> {
        self.check_root(root)?;
        let mut call = self.begin("scatter_into");
        call.root = Some(root);
        let seq = call.seq;
        let recv: &mut [u8] = bytemuck::cast_slice_mut(recv);
        call.len = Some(recv.len());
        let blocks = if self.rank() == root {
            let send: &[u8] = bytemuck::cast_slice(send.ok_or_else(|| missing("scatter_into"))?);
            if send.len() != recv.len() * self.size() {
                return Err(Error::InvalidArgument(format!(
                    "scatter_into: the root's buffer must hold {} ranks x {} bytes, not {} bytes",
                    self.size(),
                    recv.len(),
                    send.len()
                )));
            }
            // `send` holds exactly size x len bytes (checked above); empty blocks when len is 0
            Some(
                (0..self.size()).map(|r| &send[r * recv.len()..(r + 1) * recv.len()]).collect::<Vec<&[u8]>>(),
            )
        } else {
            None
        };
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            native.scatter(root, send.map(bytemuck::cast_slice), recv);
            return Ok(());
        }
        // straight from the root for large blocks, and for small ones where ranks outnumber cores
        let direct = recv.len() >= tuning::SCATTER_LARGE || self.direct(recv.len());
        if direct {
            let send = send.map(bytemuck::cast_slice);
            return in_place::scatter_into(&self.channel_for(&call)?, seq, root, send, recv);
        }
        let got = prun_collectives::scatter(&self.channel_for(&call)?, seq, root, blocks.as_deref(), direct)?;
        copy_exact("scatter_into", recv, &got)
    }

    /// Collects every rank's `send` into the root's `recv`, in rank order.
    ///
    /// **Collective.** Every rank's `send` has the same length; the root passes `Some(recv)`
    /// with `size() * send.len()` elements. Large buffers go straight to the root, which takes
    /// them in the order they come, each into its place; small ones up a binomial tree
    /// (straight too, up to 64 ranks, where some host runs more ranks than it has cores).
    ///
    /// ```
    /// let world = prun::init()?;
    /// let mut all = vec![0u64; world.size()];
    /// let recv = (world.rank() == 0).then_some(&mut all[..]);
    /// world.gather_into(0, &[world.rank() as u64], recv)?;
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a missing or wrongly sized root buffer; [`Error::Malformed`].
    pub fn gather_into<T: Pod>(&self, root: usize, send: &[T], recv: Option<&mut [T]>) -> Result<()> {
        self.check_root(root)?;
        let mut call = self.begin("gather_into");
        call.root = Some(root);
        let seq = call.seq;
        let send: &[u8] = bytemuck::cast_slice(send);
        call.len = Some(send.len());
        // straight to the root for large blocks, and for small ones where ranks outnumber cores
        let direct = send.len() >= tuning::GATHER_LARGE || self.direct(send.len());
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native()
            && self.rank() != root
        {
            native.gather(root, send, None);
            return Ok(());
        }
        if self.rank() != root {
            if direct {
                return in_place::gather_into(&self.channel_for(&call)?, seq, root, send, None);
            }
            prun_collectives::gather(&self.channel_for(&call)?, seq, root, send.to_vec(), direct)?;
            return Ok(());
        }
        let recv: &mut [u8] = bytemuck::cast_slice_mut(recv.ok_or_else(|| missing("gather_into"))?);
        if recv.len() != send.len() * self.size() {
            return Err(Error::InvalidArgument(format!(
                "gather_into: the root's buffer must hold {} ranks x {} bytes, not {} bytes",
                self.size(),
                send.len(),
                recv.len()
            )));
        }
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            native.gather(root, send, Some(recv));
            return Ok(());
        }
        if direct {
            return in_place::gather_into(&self.channel_for(&call)?, seq, root, send, Some(recv));
        }
        let blocks = prun_collectives::gather(&self.channel_for(&call)?, seq, root, send.to_vec(), direct)?
            .ok_or_else(|| Error::Malformed("gather_into: the root received nothing".into()))?;
        for (dst, block) in recv.chunks_mut(send.len().max(1)).zip(&blocks) {
            copy_exact("gather_into", dst, block)?;
        }
        Ok(())
    }

    /// Collects every rank's `send` into every rank's `recv`, in rank order.
    ///
    /// **Collective.** Every `send` has the same length and every `recv` `size()` times that.
    /// Small buffers by recursive doubling or Bruck; large ones are received in place, by
    /// recursive doubling on four, eight, sixteen... ranks and a ring on other counts. On 8 to
    /// 64 ranks where some host runs more ranks than it has cores, blocks go to rank 0 and back
    /// out (large ones in place, rank 0 sending to every rank at once); there blocks of 1 MiB
    /// or more go straight from every rank to every other, on any number of ranks above two,
    /// but on four and eight ranks those from 512 KiB to 2 MiB by recursive doubling.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let mut ranks = vec![0u32; world.size()];
    /// world.allgather_into(&[world.rank() as u32], &mut ranks)?;
    /// assert_eq!(ranks[world.rank()] as usize, world.rank());
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a wrongly sized `recv`; [`Error::Malformed`].
    pub fn allgather_into<T: Pod>(&self, send: &[T], recv: &mut [T]) -> Result<()> {
        let send: &[u8] = bytemuck::cast_slice(send);
        let recv: &mut [u8] = bytemuck::cast_slice_mut(recv);
        if recv.len() != send.len() * self.size() {
            return Err(Error::InvalidArgument(format!(
                "allgather_into: recv must hold {} ranks x {} bytes, not {} bytes",
                self.size(),
                send.len(),
                recv.len()
            )));
        }
        let mut call = self.begin("allgather_into");
        call.len = Some(send.len());
        let seq = call.seq;
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            native.allgather(send, recv);
            return Ok(());
        }
        if self.shared_engine().crowded() && tuning::crowded_doubling(self.size(), send.len()) {
            return in_place::allgather_doubling_into(&self.channel_for(&call)?, seq, send, recv);
        }
        if self.shared_engine().crowded() && self.size() > 2 && send.len() >= tuning::CROWDED_DIRECT_MIN {
            // where ranks share cores, every block straight from its owner to every rank
            return direct::allgather_into(&self.channel_for(&call)?, seq, send, recv);
        }
        let doubling = self.size().is_power_of_two() && self.size() >= tuning::ALLGATHER_DOUBLING_MIN_RANKS;
        if self.flat_typed() && !self.flat(send.len()) {
            // where ranks share cores, blocks too long for the flat vectors still go through
            // rank 0, into place
            return flat::allgather_into(&self.channel_for(&call)?, seq, send, recv);
        }
        let large = send.len() >= tuning::ALLGATHER_LARGE;
        if large {
            let channel = self.channel_for(&call)?;
            // as many bytes as the ring in log2(size) steps rather than size - 1
            if doubling {
                return in_place::allgather_doubling_into(&channel, seq, send, recv);
            }
            return in_place::allgather_ring_into(&channel, seq, send, recv);
        }
        let blocks = if self.flat(send.len()) {
            flat::allgather(&self.channel_for(&call)?, seq, send.to_vec())?
        } else {
            prun_collectives::allgather(&self.channel_for(&call)?, seq, send.to_vec(), large)?
        };
        for (dst, block) in recv.chunks_mut(send.len().max(1)).zip(&blocks) {
            copy_exact("allgather_into", dst, block)?;
        }
        Ok(())
    }

    /// Sends block `d` of `send` to rank `d` and receives rank `s`'s block for this rank into
    /// block `s` of `recv`, for every rank: `MPI_Alltoall`, the blocks all of one length,
    /// `send.len() / size()` elements (a transpose of the blocks across ranks, as in a
    /// distributed FFT or a shuffle).
    ///
    /// **Collective.** Every rank passes a `send` of `size()` blocks of one length, the same on
    /// every rank, and a `recv` of the same length as its `send`. Pairwise exchange (in step
    /// `k`, rank `r` sends to `r + k` and receives from `r - k`), each block received straight
    /// into place; where some host runs more ranks than it has cores, every block at once, or,
    /// on 8 to 64 ranks for short blocks, through rank 0 (see
    /// [`tuning::alltoall_flat`](prun_collectives::tuning::alltoall_flat)).
    /// For blocks of different lengths, [`Communicator::alltoall`] takes any serde type.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let (rank, size) = (world.rank() as u32, world.size() as u32);
    /// // block d (two elements) goes to rank d
    /// let send: Vec<u32> = (0..size).flat_map(|d| [rank, d]).collect();
    /// let mut recv = vec![0u32; send.len()];
    /// world.alltoall_into(&send, &mut recv)?;
    /// // block s came from rank s, meant for this rank
    /// assert!((0..size).all(|s| recv[2 * s as usize..][..2] == [s, rank]));
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a `send` whose length is not a multiple of `size()` or a
    /// `recv` of another length; [`Error::Malformed`] when ranks' blocks differ in length;
    /// [`Error::PeerLost`].
    pub fn alltoall_into<T: Pod>(&self, send: &[T], recv: &mut [T]) -> Result<()> {
        let size = self.size();
        if send.len() % size != 0 || recv.len() != send.len() {
            return Err(Error::InvalidArgument(format!(
                "alltoall_into: send ({} elements) must hold {size} blocks of one length and recv as many elements, not {}",
                send.len(),
                recv.len()
            )));
        }
        let mut call = self.begin("alltoall_into");
        call.len = Some(std::mem::size_of_val(send) / size);
        self.alltoall_bytes(&call, bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv))
    }

    /// The all-to-all of [`Communicator::alltoall_into`] on bytes, as part of `call`: `send` and
    /// `recv` hold `size()` blocks of one length each.
    fn alltoall_bytes(&self, call: &Call<'_>, send: &[u8], recv: &mut [u8]) -> Result<()> {
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            native.alltoall(send, recv);
            return Ok(());
        }
        let (size, seq, channel) = (self.size(), call.seq, self.channel_for(call)?);
        if self.shared_engine().crowded() {
            if tuning::alltoall_flat(size, send.len() / size) {
                return flat::alltoall_into(&channel, seq, send, recv);
            }
            return direct::alltoall_into(&channel, seq, send, recv);
        }
        prun_collectives::alltoall::alltoall_into(&channel, seq, send, recv)
    }

    /// Combines every rank's `send` element-wise with `op` and leaves block `r` of the result
    /// in rank `r`'s `recv`: `MPI_Reduce_scatter_block`, an allreduce of which each rank keeps
    /// its own share (the first half of Rabenseifner's allreduce; a sharded sum of gradients).
    ///
    /// **Collective.** Every rank passes a `send` of `size()` blocks of `recv.len()` elements,
    /// the same length on every rank. Pairwise exchange, each block received into one block of
    /// scratch and folded into `recv` at once (the own block first, then ranks `r - 1`,
    /// `r - 2`, ...); where some host runs more ranks than it has cores, every block at once
    /// as by [`Communicator::alltoall_into`], into a scratch buffer as long as `send`, folded
    /// in rank order. Either way the folds come in the same order every run, so the result is
    /// the same bits (on the MPI backend, `MPI_Reduce_scatter_block` decides).
    ///
    /// ```
    /// use prun::Op;
    /// let world = prun::init()?;
    /// let size = world.size();
    /// // every rank contributes 1.0 to every element; block r (three elements) ends on rank r
    /// let mut mine = [0.0f64; 3];
    /// world.reduce_scatter_into(&vec![1.0; 3 * size], &mut mine, Op::Sum)?;
    /// assert_eq!(mine, [size as f64; 3]);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a `send` of another length than `size()` times `recv`'s,
    /// or a bitwise `op` on floats; [`Error::Malformed`] when lengths differ between ranks;
    /// [`Error::PeerLost`].
    pub fn reduce_scatter_into<T: Element>(&self, send: &[T], recv: &mut [T], op: Op) -> Result<()> {
        op::check::<T>(op)?;
        blocks_fit("reduce_scatter_into", send.len(), recv.len(), self.size())?;
        let mut call = self.begin("reduce_scatter_into");
        call.len = Some(std::mem::size_of_val(recv));
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            if crate::mpi::Native::supports::<T>() {
                native.reduce_scatter(send, recv, op);
                return Ok(());
            }
        }
        let elementwise = |acc: &mut [u8], other: &[u8]| op::apply::<T>(op, acc, other);
        self.reduce_scatter_bytes(
            &call,
            bytemuck::cast_slice(send),
            bytemuck::cast_slice_mut(recv),
            &elementwise,
        )
    }

    /// As [`Communicator::reduce_scatter_into`] with an operation of the caller's: `op(&mut
    /// acc, &x)` folds `x` into `acc`, element by element, for any plain-old-data `T`, as
    /// [`Communicator::reduce_into_with`] (which says what `op` must be).
    ///
    /// **Collective.** As [`Communicator::reduce_scatter_into`], whose algorithms it takes; on
    /// the MPI backend `MPI_Alltoall` of the blocks, folded here.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let size = world.size();
    /// // every rank's [value, rank] for every element; block r (one element) ends on rank r
    /// // with the largest value and the lowest rank that holds it
    /// let send: Vec<[u32; 2]> = (0..size).map(|_| [7, world.rank() as u32]).collect();
    /// let mut mine = [[0u32; 2]];
    /// let maxloc = |acc: &mut [u32; 2], x: &[u32; 2]| {
    ///     if x[0] > acc[0] || (x[0] == acc[0] && x[1] < acc[1]) {
    ///         *acc = *x;
    ///     }
    /// };
    /// world.reduce_scatter_into_with(&send, &mut mine, maxloc)?;
    /// assert_eq!(mine, [[7, 0]]);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Communicator::reduce_scatter_into`].
    pub fn reduce_scatter_into_with<T: Pod, F: Fn(&mut T, &T)>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: F,
    ) -> Result<()> {
        blocks_fit("reduce_scatter_into_with", send.len(), recv.len(), self.size())?;
        let mut call = self.begin("reduce_scatter_into_with");
        call.len = Some(std::mem::size_of_val(recv));
        let elementwise = |acc: &mut [u8], other: &[u8]| op::apply_with(acc, other, &op);
        self.reduce_scatter_bytes(
            &call,
            bytemuck::cast_slice(send),
            bytemuck::cast_slice_mut(recv),
            &elementwise,
        )
    }

    /// The reduce-scatter of [`Communicator::reduce_scatter_into`] on bytes, folded by `fold`,
    /// as part of `call`: every block at once where ranks share cores (or through MPI's
    /// all-to-all, on the MPI backend), else pairwise.
    fn reduce_scatter_bytes(
        &self,
        call: &Call<'_>,
        send: &[u8],
        recv: &mut [u8],
        fold: &dyn Fn(&mut [u8], &[u8]),
    ) -> Result<()> {
        #[cfg(feature = "mpi")]
        if self.native().is_some() {
            // MPI's all-to-all of the bytes (no MPI datatype or operation here), folded here
            return self.reduce_scatter_at_once(call, send, recv, fold);
        }
        if self.shared_engine().crowded() {
            return self.reduce_scatter_at_once(call, send, recv, fold);
        }
        reduce_scatter::pairwise_into(&self.channel_for(call)?, call.seq, send, recv, fold)
    }

    /// [`Communicator::reduce_scatter_into`] where ranks share cores: every block at once by
    /// the all-to-all into a scratch buffer as long as `send`, folded in rank order.
    fn reduce_scatter_at_once(
        &self,
        call: &Call<'_>,
        send: &[u8],
        recv: &mut [u8],
        fold: &dyn Fn(&mut [u8], &[u8]),
    ) -> Result<()> {
        let mut blocks = vec![0u8; send.len()];
        self.alltoall_bytes(call, send, &mut blocks)?;
        let mut from = blocks.chunks(recv.len().max(1));
        if let Some(first) = from.next() {
            recv.copy_from_slice(first);
        }
        for block in from {
            fold(recv, block);
        }
        Ok(())
    }

    /// Combines every rank's `send` element-wise with `op` into the root's `recv`.
    ///
    /// **Collective.** Every `send` has the same length; the root passes `Some(recv)` of that
    /// length. Small buffers up a binomial tree (straight to the root on 8 to 64 ranks where
    /// some host runs more ranks than it has cores); for large ones a reduce-scatter then a
    /// gather to the root: around a ring on two and three ranks, by recursive halving
    /// (Rabenseifner's) from four, each reduced segment received straight into the root's
    /// `recv`.
    ///
    /// ```
    /// use prun::Op;
    /// let world = prun::init()?;
    /// let mut total = [0i64; 3];
    /// let recv = (world.rank() == 0).then_some(&mut total[..]);
    /// world.reduce_into(0, &[1, 2, 3], recv, Op::Sum)?;
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bitwise `op` on floats or a missing root buffer;
    /// [`Error::Malformed`] when lengths differ between ranks.
    pub fn reduce_into<T: Element>(
        &self,
        root: usize,
        send: &[T],
        recv: Option<&mut [T]>,
        op: Op,
    ) -> Result<()> {
        self.check_root(root)?;
        op::check::<T>(op)?;
        let mut call = self.begin("reduce_into");
        call.root = Some(root);
        let bytes: &[u8] = bytemuck::cast_slice(send);
        call.len = Some(bytes.len());
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native().filter(|_| crate::mpi::Native::supports::<T>()) {
            if self.rank() == root && recv.as_ref().is_none_or(|r| r.len() != send.len()) {
                // MPI must not write past the root's buffer: refuse before anyone waits in vain
                return Err(Error::InvalidArgument(format!(
                    "reduce_into: the root must pass a recv of {} elements, as long as its send",
                    send.len()
                )));
            }
            native.reduce(root, send, recv, op);
            return Ok(());
        }
        let elementwise = |acc: &mut [u8], other: &[u8]| op::apply::<T>(op, acc, other);
        let recv = recv.map(bytemuck::cast_slice_mut::<T, u8>);
        self.reduce_bytes(&call, root, bytes, recv, std::mem::size_of::<T>(), &elementwise)
    }

    /// Combines every rank's `send` element-wise with `op` into every rank's `recv`.
    ///
    /// **Collective.** All buffers have the same length. Small buffers by recursive doubling
    /// (where some host runs more ranks than it has cores, on 8 to 64 ranks reduced on rank 0
    /// and sent from there, and on 8 ranks or more up a binomial tree to rank 0 and down again
    /// when too long for that);
    /// for large ones (or from 128 KiB at two ranks) received in place, without serialising:
    /// between two ranks the whole buffer goes to rank 0 and back up to 2 MiB, beyond that a ring
    /// reduce-scatter then allgather; from four ranks recursive halving then doubling
    /// (Rabenseifner's). Every rank gets the same bits: each element is reduced in one place.
    ///
    /// ```
    /// use prun::Op;
    /// let world = prun::init()?;
    /// let mut sum = [0.0f64; 2];
    /// world.allreduce_into(&[1.0, world.rank() as f64], &mut sum, Op::Sum)?;
    /// assert_eq!(sum[0], world.size() as f64);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for mismatched `send`/`recv` or a bitwise `op` on floats;
    /// [`Error::Malformed`] when lengths differ between ranks.
    pub fn allreduce_into<T: Element>(&self, send: &[T], recv: &mut [T], op: Op) -> Result<()> {
        op::check::<T>(op)?;
        same_count("allreduce_into", send.len(), recv.len())?;
        let mut call = self.begin("allreduce_into");
        let bytes: &[u8] = bytemuck::cast_slice(send);
        call.len = Some(bytes.len());
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native().filter(|_| crate::mpi::Native::supports::<T>()) {
            native.allreduce(send, recv, op);
            return Ok(());
        }
        let elementwise = |acc: &mut [u8], other: &[u8]| op::apply::<T>(op, acc, other);
        let out = bytemuck::cast_slice_mut(recv);
        self.allreduce_bytes(&call, bytes, out, std::mem::size_of::<T>(), &elementwise)
    }

    /// As [`Communicator::reduce_into`] with an operation of the caller's: `op(&mut acc, &x)`
    /// folds `x` into `acc`, element by element, for any plain-old-data `T` (a pair of a value
    /// and its index for a maximum with its location, `MPI_MAXLOC`; a complex number as
    /// `[f64; 2]`), as `MPI_Op_create` with a commutative operation.
    ///
    /// **Collective.** Every rank passes the same `op` and a `send` of the same length; the root
    /// passes `Some(recv)` of that length. `op` must be associative and commutative: the
    /// algorithms (those of [`Communicator::reduce_into`]) fold contributions in whatever order
    /// suits them, which may differ from run to run. No element goes through serialisation;
    /// on the MPI backend the built-in algorithms run over MPI's point-to-point. For an
    /// operation that is not commutative, [`Communicator::reduce`] folds in rank order.
    ///
    /// ```
    /// let world = prun::init()?;
    /// // the largest value of each element and the rank that holds it (the lowest on a tie)
    /// let maxloc = |acc: &mut [f64; 2], x: &[f64; 2]| {
    ///     if x[0] > acc[0] || (x[0] == acc[0] && x[1] < acc[1]) {
    ///         *acc = *x;
    ///     }
    /// };
    /// let rank = world.rank() as f64;
    /// let mine = [[rank, rank], [-rank, rank]];
    /// let mut best = [[0.0; 2]; 2];
    /// let recv = (world.rank() == 0).then_some(&mut best[..]);
    /// world.reduce_into_with(0, &mine, recv, maxloc)?;
    /// if world.rank() == 0 {
    ///     let last = world.size() as f64 - 1.0;
    ///     assert_eq!(best, [[last, last], [0.0, 0.0]]);
    /// }
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidRank`] for a root out of range; [`Error::InvalidArgument`] for a missing
    /// root buffer; [`Error::Malformed`] when lengths differ between ranks; [`Error::PeerLost`].
    pub fn reduce_into_with<T: Pod, F: Fn(&mut T, &T)>(
        &self,
        root: usize,
        send: &[T],
        recv: Option<&mut [T]>,
        op: F,
    ) -> Result<()> {
        self.check_root(root)?;
        let mut call = self.begin("reduce_into_with");
        call.root = Some(root);
        let bytes: &[u8] = bytemuck::cast_slice(send);
        call.len = Some(bytes.len());
        let elementwise = |acc: &mut [u8], other: &[u8]| op::apply_with(acc, other, &op);
        let recv = recv.map(bytemuck::cast_slice_mut::<T, u8>);
        self.reduce_bytes(&call, root, bytes, recv, std::mem::size_of::<T>().max(1), &elementwise)
    }

    /// As [`Communicator::allreduce_into`] with an operation of the caller's: `op(&mut acc,
    /// &x)` folds `x` into `acc`, element by element, for any plain-old-data `T`, as
    /// [`Communicator::reduce_into_with`] (which says what `op` must be).
    ///
    /// **Collective.** Every rank passes the same `op`, and a `send` and `recv` of one length,
    /// the same on every rank. The algorithms of [`Communicator::allreduce_into`]; on the MPI
    /// backend the built-in algorithms over MPI's point-to-point.
    ///
    /// ```
    /// let world = prun::init()?;
    /// // complex numbers as [re, im]: the product of every rank's i
    /// let times = |acc: &mut [f64; 2], x: &[f64; 2]| {
    ///     *acc = [acc[0] * x[0] - acc[1] * x[1], acc[0] * x[1] + acc[1] * x[0]];
    /// };
    /// let mut product = [[0.0; 2]];
    /// world.allreduce_into_with(&[[0.0, 1.0]], &mut product, times)?;
    /// // i to the power of the number of ranks
    /// let want = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]][world.size() % 4];
    /// assert_eq!(product, [want]);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a `recv` of another length than `send`;
    /// [`Error::Malformed`] when lengths differ between ranks; [`Error::PeerLost`].
    pub fn allreduce_into_with<T: Pod, F: Fn(&mut T, &T)>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: F,
    ) -> Result<()> {
        same_count("allreduce_into_with", send.len(), recv.len())?;
        let mut call = self.begin("allreduce_into_with");
        let bytes: &[u8] = bytemuck::cast_slice(send);
        call.len = Some(bytes.len());
        let elementwise = |acc: &mut [u8], other: &[u8]| op::apply_with(acc, other, &op);
        let out = bytemuck::cast_slice_mut(recv);
        self.allreduce_bytes(&call, bytes, out, std::mem::size_of::<T>().max(1), &elementwise)
    }

    /// The reduction of [`Communicator::reduce_into`] on bytes, as part of `call`: `bytes` of
    /// elements of `elem` bytes, folded by `elementwise`, into the root's `recv`.
    fn reduce_bytes(
        &self,
        call: &Call<'_>,
        root: usize,
        bytes: &[u8],
        recv: Option<&mut [u8]>,
        elem: usize,
        elementwise: &dyn Fn(&mut [u8], &[u8]),
    ) -> Result<()> {
        let seq = call.seq;
        if bytes.len() >= tuning::REDUCE_LARGE && self.size() >= tuning::ALLREDUCE_HALVING_MIN_RANKS {
            // each segment reduced in place and sent straight into the root's `recv`; a root
            // without a fitting one takes part all the same (no rank waits for it), then fails
            // as the other algorithms make it fail
            let fault = match &recv {
                _ if self.rank() != root => None,
                None => Some(missing(call.name)),
                Some(r) if r.len() != bytes.len() => Some(length_mismatch(call.name, r.len(), bytes.len())),
                Some(_) => None,
            };
            let channel = self.channel_for(call)?;
            let reduced = halving::reduce_halving_into(&channel, seq, root, bytes, recv, elem, elementwise);
            return fault.map_or(reduced, Err);
        }
        let out = if bytes.len() >= tuning::REDUCE_LARGE {
            let channel = self.channel_for(call)?;
            prun_collectives::reduce_scatter_gather(&channel, seq, root, bytes.to_vec(), elem, elementwise)?
        } else {
            let mut combine = combiner(bytes.len(), elementwise);
            if self.flat(bytes.len()) {
                flat::reduce(&self.channel_for(call)?, seq, root, bytes.to_vec(), &mut combine)?
            } else {
                prun_collectives::reduce(&self.channel_for(call)?, seq, root, bytes.to_vec(), &mut combine)?
            }
        };
        match (out, recv) {
            (Some(out), Some(recv)) => copy_exact(call.name, recv, &out),
            (Some(_), None) => Err(missing(call.name)),
            (None, _) => Ok(()),
        }
    }

    /// The reduction of [`Communicator::allreduce_into`] on bytes, as part of `call`: `bytes`
    /// of elements of `elem` bytes, folded by `fold`, into `out` (as long as `bytes`).
    fn allreduce_bytes(
        &self,
        call: &Call<'_>,
        bytes: &[u8],
        out: &mut [u8],
        elem: usize,
        fold: &dyn Fn(&mut [u8], &[u8]),
    ) -> Result<()> {
        let seq = call.seq;
        // two ranks, below the ring's sizes: the whole buffer to rank 0 and back, two transfers
        // instead of the ring's four halves (from 256 KiB the ring's exchanges, each rank copying
        // the other's half at once, win); more ranks: as many bytes as the ring in
        // 2 log2(size) steps, not 2 (size - 1)
        let pair = self.size() == 2
            && (tuning::ALLREDUCE_PAIR_MIN..=tuning::ALLREDUCE_PAIR_MAX).contains(&bytes.len());
        if pair || bytes.len() >= tuning::ALLREDUCE_LARGE {
            // every part received straight into `out` and folded with `bytes` there
            let channel = self.channel_for(call)?;
            return if pair {
                elementwise::allreduce_pair_into(&channel, seq, bytes, out, fold)
            } else if self.size() >= tuning::ALLREDUCE_HALVING_MIN_RANKS {
                halving::allreduce_halving_into(&channel, seq, bytes, out, elem, fold)
            } else {
                elementwise::allreduce_ring_into(&channel, seq, bytes, out, elem, fold)
            };
        }
        // through rank 0 only while its share is short: beyond it, up and down a tree
        let flat = self.flat_typed() && tuning::allreduce_flat(self.size(), bytes.len());
        if !flat {
            let channel = self.channel_for(call)?;
            // where ranks share cores, up a binomial tree and down again: 2 (size - 1) messages
            // where recursive doubling sends size log2(size)
            if self.shared_engine().crowded() && self.size() >= tuning::ALLREDUCE_TREE_MIN_RANKS {
                return prun_collectives::tree::allreduce_tree_into(&channel, seq, bytes, out, fold);
            }
            // recursive doubling, each round received straight into `out` or one scratch buffer
            return prun_collectives::allreduce_doubling_into(&channel, seq, bytes, out, fold);
        }
        let mut combine = combiner(bytes.len(), fold);
        let reduced = flat::allreduce(&self.channel_for(call)?, seq, bytes.to_vec(), &mut combine)?;
        copy_exact(call.name, out, &reduced)
    }
}

/// Element-wise combination of two whole buffers, for the small-message algorithms.
pub(crate) fn combiner<'a>(
    len: usize,
    elementwise: &'a dyn Fn(&mut [u8], &[u8]),
) -> impl FnMut(&[u8], &[u8]) -> Result<Vec<u8>> + 'a {
    move |left: &[u8], right: &[u8]| {
        if left.len() != len || right.len() != len {
            return Err(Error::Malformed(format!(
                "reduction of {len}-byte buffers received {} and {} bytes (ranks passed buffers of different lengths)",
                left.len(),
                right.len()
            )));
        }
        let mut out = left.to_vec();
        elementwise(&mut out, right);
        Ok(out)
    }
}
