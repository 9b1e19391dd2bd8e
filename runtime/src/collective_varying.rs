//! Zero-copy collectives of blocks whose lengths vary by rank, MPI's `v` variants
//! (`MPI_Gatherv`, `MPI_Scatterv`, `MPI_Allgatherv`, `MPI_Alltoallv`) for plain-old-data
//! slices: the blocks lie contiguous in rank order, each where the one before ends, and
//! counts (in elements) say their lengths, as MPI's without displacements.

use crate::communicator::Communicator;
use crate::error::{Error, Result};
use bytemuck::Pod;
use prun_collectives::{blocks, direct, flat, in_place, tuning};

/// `counts` of elements of `elem` bytes as byte lengths, `None` if one overflows.
fn byte_lens(counts: &[usize], elem: usize) -> Option<Vec<usize>> {
    counts.iter().map(|&n| n.checked_mul(elem)).collect()
}

/// The byte lengths of `counts` when they are `size` counts that add up to `buf` elements and
/// give rank `own.0` a block of `own.1` elements; else the error, for `what`.
fn fitting<T: Pod>(
    what: &str,
    (size, buf): (usize, usize),
    counts: &[usize],
    own: (usize, usize),
) -> Result<Vec<usize>> {
    let elem = std::mem::size_of::<T>();
    let fits = blocks::fills(size, buf, counts) && counts.get(own.0) == Some(&own.1);
    match byte_lens(counts, elem).filter(|_| fits) {
        Some(lens) => Ok(lens),
        None => Err(Error::InvalidArgument(format!(
            "{what}: counts {counts:?} must be {size} counts adding up to the buffer's {buf} elements, \
             rank {}'s count the {} elements of its own block",
            own.0, own.1
        ))),
    }
}

/// The error of a gather or scatter of varying blocks whose lengths or offsets on this rank
/// exceed MPI's counts, on the MPI backend.
#[cfg(feature = "mpi")]
fn beyond_mpi(what: &str, max: usize) -> Error {
    Error::InvalidArgument(format!(
        "{what}: a block or offset beyond {max} bytes, the most MPI's counts take (its int, or \
         {} when set); gather or scatter in several calls, or run on prun's built-in transport",
        crate::env::MPI_COUNT_MAX
    ))
}

impl Communicator {
    /// Collects every rank's `send`, whose lengths may differ, into the root's `recv`, in rank
    /// order: `MPI_Gatherv` with the blocks contiguous. The root passes `Some((recv, counts))`,
    /// `counts[r]` the length of rank `r`'s `send`, adding up to `recv`'s length; other ranks
    /// pass `None`.
    ///
    /// **Collective.** Every rank sends its block straight to the root, which receives each
    /// into its place as it comes (as MPI libraries gather blocks of varying length); on the
    /// MPI backend `MPI_Gatherv`. For blocks of one length, [`Communicator::gather_into`]; for
    /// any serde type, [`Communicator::gather`].
    ///
    /// ```
    /// let world = prun::init()?;
    /// let (rank, size) = (world.rank(), world.size());
    /// // rank r contributes r + 1 copies of r
    /// let mine = vec![rank as u32; rank + 1];
    /// let counts: Vec<usize> = (1..=size).collect();
    /// let mut all = vec![0u32; counts.iter().sum()];
    /// let recv = (rank == 0).then_some((&mut all[..], &counts[..]));
    /// world.gatherv_into(0, &mine, recv)?;
    /// if rank == 0 {
    ///     let want: Vec<u32> = (0..size).flat_map(|r| vec![r as u32; r + 1]).collect();
    ///     assert_eq!(all, want);
    /// }
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidRank`] for a root out of range; [`Error::InvalidArgument`] on the root
    /// for a missing `recv`, or counts that are not `size()`, do not add up to `recv`'s length
    /// or do not give the root's own `send` its length, or, on the MPI backend, blocks or
    /// offsets beyond MPI's `int` counts (2 GiB);
    /// [`Error::Malformed`] on the root when a rank's block is not as long as its count says;
    /// [`Error::PeerLost`].
    pub fn gatherv_into<T: Pod>(
        &self,
        root: usize,
        send: &[T],
        recv: Option<(&mut [T], &[usize])>,
    ) -> Result<()> {
        self.check_root(root)?;
        let (rank, size) = (self.rank(), self.size());
        let mut recv = match recv {
            Some((recv, counts)) if rank == root => {
                let lens = fitting::<T>("gatherv_into", (size, recv.len()), counts, (rank, send.len()))?;
                Some((bytemuck::cast_slice_mut::<T, u8>(recv), lens))
            }
            None if rank == root => {
                return Err(Error::InvalidArgument(
                    "gatherv_into: the root must pass its buffer and counts".into(),
                ));
            }
            _ => None,
        };
        let mut call = self.begin("gatherv_into");
        call.root = Some(root);
        let send: &[u8] = bytemuck::cast_slice(send);
        let recv = recv.as_mut().map(|(buf, lens)| (&mut **buf, &lens[..]));
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            if !native.gatherv(root, send, recv) {
                return Err(beyond_mpi("gatherv_into", native.count_max()));
            }
            return Ok(());
        }
        in_place::gatherv_into(&self.channel_for(&call)?, call.seq, root, send, recv)
    }

    /// Hands block `r` of the root's `send`, whose blocks' lengths may differ, to rank `r`'s
    /// `recv`: `MPI_Scatterv` with the blocks contiguous. The root passes
    /// `Some((send, counts))`, `counts[r]` the length of rank `r`'s block (and of its `recv`),
    /// adding up to `send`'s length; other ranks pass `None`.
    ///
    /// **Collective.** The root sends every block straight to its rank, all at once (as MPI
    /// libraries scatter blocks of varying length); on the MPI backend `MPI_Scatterv`. For
    /// blocks of one length, [`Communicator::scatter_into`].
    ///
    /// ```
    /// let world = prun::init()?;
    /// let (rank, size) = (world.rank(), world.size());
    /// // rank r gets r + 1 elements, each r
    /// let counts: Vec<usize> = (1..=size).collect();
    /// let all: Vec<u64> = (0..size).flat_map(|r| vec![r as u64; r + 1]).collect();
    /// let send = (rank == 0).then_some((&all[..], &counts[..]));
    /// let mut mine = vec![0u64; rank + 1];
    /// world.scatterv_into(0, send, &mut mine)?;
    /// assert!(mine.iter().all(|&x| x == rank as u64));
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidRank`] for a root out of range; [`Error::InvalidArgument`] on the root
    /// for a missing `send`, or counts that are not `size()`, do not add up to `send`'s length
    /// or do not give the root's own `recv` its length, or, on the MPI backend, blocks or
    /// offsets beyond MPI's `int` counts (2 GiB);
    /// [`Error::Malformed`] on a rank whose `recv` is not as long as the root's count for it;
    /// [`Error::PeerLost`].
    pub fn scatterv_into<T: Pod>(
        &self,
        root: usize,
        send: Option<(&[T], &[usize])>,
        recv: &mut [T],
    ) -> Result<()> {
        self.check_root(root)?;
        let (rank, size) = (self.rank(), self.size());
        let send = match send {
            Some((send, counts)) if rank == root => {
                let lens = fitting::<T>("scatterv_into", (size, send.len()), counts, (rank, recv.len()))?;
                Some((bytemuck::cast_slice::<T, u8>(send), lens))
            }
            None if rank == root => {
                return Err(Error::InvalidArgument(
                    "scatterv_into: the root must pass its buffer and counts".into(),
                ));
            }
            _ => None,
        };
        let mut call = self.begin("scatterv_into");
        call.root = Some(root);
        let recv: &mut [u8] = bytemuck::cast_slice_mut(recv);
        let send = send.as_ref().map(|(buf, lens)| (*buf, &lens[..]));
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            if !native.scatterv(root, send, recv) {
                return Err(beyond_mpi("scatterv_into", native.count_max()));
            }
            return Ok(());
        }
        in_place::scatterv_into(&self.channel_for(&call)?, call.seq, root, send, recv)
    }

    /// Collects every rank's `send`, whose lengths may differ, into every rank's `recv`, in
    /// rank order: `MPI_Allgatherv` with the blocks contiguous. `counts[r]` is the length of
    /// rank `r`'s `send`; every rank passes the same counts, adding up to its `recv`'s length.
    ///
    /// **Collective.** Recursive doubling on a power of two of ranks, else around a ring, each
    /// block received straight into its place; where some host runs more ranks than it has
    /// cores, through rank 0 on 8 to 64 ranks for short blocks, by recursive doubling on four
    /// and eight ranks for blocks of 512 KiB to 2 MiB on average, else every block straight
    /// from its owner to every rank at once (as [`Communicator::allgather_into`] chooses); on the
    /// MPI backend `MPI_Allgatherv`. For blocks of one length,
    /// [`Communicator::allgather_into`].
    ///
    /// ```
    /// let world = prun::init()?;
    /// let (rank, size) = (world.rank(), world.size());
    /// // rank r contributes r + 1 copies of r
    /// let counts: Vec<usize> = (1..=size).collect();
    /// let mut all = vec![0i32; counts.iter().sum()];
    /// world.allgatherv_into(&vec![rank as i32; rank + 1], &mut all, &counts)?;
    /// assert_eq!(all[all.len() - size..], vec![size as i32 - 1; size]);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for counts that are not `size()`, do not add up to `recv`'s
    /// length or do not give this rank's `send` its length; [`Error::Malformed`] when a rank's
    /// block is not as long as the counts say (ranks passed different counts);
    /// [`Error::PeerLost`].
    pub fn allgatherv_into<T: Pod>(&self, send: &[T], recv: &mut [T], counts: &[usize]) -> Result<()> {
        let (rank, size) = (self.rank(), self.size());
        let lens = fitting::<T>("allgatherv_into", (size, recv.len()), counts, (rank, send.len()))?;
        let (send, recv): (&[u8], &mut [u8]) = (bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv));
        let mut call = self.begin("allgatherv_into");
        // every rank's counts add up to the same total: a rank whose counts differ is told so
        call.len = Some(recv.len());
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            if native.allgatherv(send, recv, &lens) {
                return Ok(());
            }
        }
        let (seq, channel) = (call.seq, self.channel_for(&call)?);
        if self.shared_engine().crowded() && size > 2 {
            let average = recv.len() / size;
            if tuning::flat(size, average) {
                return flat::allgatherv_into(&channel, seq, send, recv, &lens);
            }
            if tuning::crowded_doubling(size, average) {
                return in_place::allgatherv_doubling_into(&channel, seq, send, recv, &lens);
            }
            return direct::allgatherv_into(&channel, seq, send, recv, &lens);
        }
        if size.is_power_of_two() {
            return in_place::allgatherv_doubling_into(&channel, seq, send, recv, &lens);
        }
        in_place::allgatherv_ring_into(&channel, seq, send, recv, &lens)
    }

    /// As [`Communicator::alltoall_into`] with blocks of any length: block `d` of `send`
    /// (`send_counts[d]` elements, the blocks in rank order) goes to rank `d`, and rank `s`'s
    /// block for this rank lands in place `s` of `recv` (`recv_counts[s]` elements):
    /// `MPI_Alltoallv` with the blocks contiguous, in rank order. Each rank learns what the
    /// others send it beforehand, as with MPI (often by an [`Communicator::alltoall_into`] of
    /// the counts).
    ///
    /// **Collective.** `send_counts[d]` on rank `s` must equal `recv_counts[s]` on rank `d`;
    /// each list holds `size()` counts that add up to its buffer's length. Pairwise exchange,
    /// each block received straight into place; where some host runs more ranks than it has
    /// cores, every block at once. On the MPI backend `MPI_Alltoallv`, or, where
    /// some rank's blocks or offsets exceed MPI's `int` counts, the pairwise exchange over MPI's
    /// point-to-point (every rank learns which by an `MPI_Allreduce` of one byte).
    ///
    /// ```
    /// let world = prun::init()?;
    /// let (rank, size) = (world.rank(), world.size());
    /// // rank r sends d + 1 copies of r to rank d
    /// let send_counts: Vec<usize> = (0..size).map(|d| d + 1).collect();
    /// let send: Vec<u16> = send_counts.iter().flat_map(|&n| vec![rank as u16; n]).collect();
    /// // and so gets rank + 1 values from every rank
    /// let recv_counts = vec![rank + 1; size];
    /// let mut recv = vec![0u16; (rank + 1) * size];
    /// world.alltoallv_into(&send, &send_counts, &mut recv, &recv_counts)?;
    /// assert!(recv.chunks(rank + 1).enumerate().all(|(s, b)| b.iter().all(|&x| x == s as u16)));
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for counts that are not `size()` or do not add up to their
    /// buffer's length, or an own block (`send_counts[rank]`) of another length than its place
    /// (`recv_counts[rank]`); [`Error::Malformed`] when a block's length differs from its
    /// place's; [`Error::PeerLost`].
    pub fn alltoallv_into<T: Pod>(
        &self,
        send: &[T],
        send_counts: &[usize],
        recv: &mut [T],
        recv_counts: &[usize],
    ) -> Result<()> {
        let (rank, size, elem) = (self.rank(), self.size(), std::mem::size_of::<T>());
        let bytes =
            |counts: &[usize]| counts.iter().map(|&n| n.checked_mul(elem)).collect::<Option<Vec<usize>>>();
        let (sent, received) = (std::mem::size_of_val(send), std::mem::size_of_val(recv));
        let lens = bytes(send_counts)
            .zip(bytes(recv_counts))
            .filter(|(s, r)| prun_collectives::alltoall::lengths_fit(rank, size, (sent, s), (received, r)));
        let Some((send_lens, recv_lens)) = lens else {
            return Err(Error::InvalidArgument(format!(
                "alltoallv_into: send_counts {send_counts:?} and recv_counts {recv_counts:?} must hold {size} counts \
                 each, adding up to send's {} and recv's {} elements, with this rank's own (count {rank}) the same",
                send.len(),
                recv.len()
            )));
        };
        let call = self.begin("alltoallv_into");
        let (send, recv): (&[u8], &mut [u8]) = (bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv));
        #[cfg(feature = "mpi")]
        if let Some(native) = self.native() {
            if native.alltoallv(send, &send_lens, recv, &recv_lens) {
                return Ok(());
            }
        }
        let channel = self.channel_for(&call)?;
        if self.shared_engine().crowded() {
            return direct::alltoallv_into(&channel, call.seq, send, &send_lens, recv, &recv_lens);
        }
        prun_collectives::alltoall::alltoallv_into(&channel, call.seq, send, &send_lens, recv, &recv_lens)
    }
}
