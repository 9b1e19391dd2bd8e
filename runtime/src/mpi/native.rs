//! A communicator's collectives as MPI's own: `MPI_Barrier`, `MPI_Bcast`, `MPI_Scatter`,
//! `MPI_Gather`, `MPI_Allgather`, `MPI_Alltoall`, their `v` variants (`MPI_Gatherv`,
//! `MPI_Scatterv`, `MPI_Allgatherv`, `MPI_Alltoallv`), `MPI_Reduce`, `MPI_Allreduce`,
//! `MPI_Reduce_scatter_block`, `MPI_Scan` and `MPI_Exscan` with MPI's predefined operations,
//! `MPI_Comm_split`; and the communicator's plain-old-data messages ([`P2p`]).
//!
//! Callers check arguments first; what reaches here is well formed on this rank.

use super::handle::{Comm, ThreadMultiple};
use super::p2p::{P2p, Registry};
use crate::op::{Element, Kind, Op};
use mpi::Count;
use mpi::collective::SystemOperation;
use mpi::datatype::{DynBuffer, DynBufferMut, Partition, PartitionMut};
use mpi::topology::Color;
use mpi::traits::*;
use std::sync::Arc;
use std::time::Duration;

/// One communicator's MPI side.
pub(crate) struct Native {
    proof: ThreadMultiple,
    /// For collectives.
    coll: Comm,
    /// Plain-old-data messages, on a duplicate of `coll`.
    p2p: Arc<P2p>,
    registry: Registry,
    limits: Limits,
}

/// What the MPI side of every communicator of a process is given at start-up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// How long a `recv_into` polls before it naps.
    pub spin: Duration,
    /// The largest count or offset handed to MPI's `v` collectives: MPI's `int`, or less as
    /// [`crate::env::MPI_COUNT_MAX`] says.
    pub count_max: usize,
}

fn mpi_op(op: Op) -> SystemOperation {
    match op {
        Op::Sum => SystemOperation::sum(),
        Op::Product => SystemOperation::product(),
        Op::Min => SystemOperation::min(),
        Op::Max => SystemOperation::max(),
        Op::BitAnd => SystemOperation::bitwise_and(),
        Op::BitOr => SystemOperation::bitwise_or(),
        Op::BitXor => SystemOperation::bitwise_xor(),
    }
}

/// `$buf`, a slice of the element type `T`, cast with bytemuck's `$cast` to the primitive `T` is
/// and wrapped in `$wrap`, a buffer that carries its MPI datatype; `None` for the 128-bit
/// integers, which MPI has no datatype for.
macro_rules! as_mpi {
    ($buf:expr, $cast:ident, $wrap:path) => {
        match T::kind() {
            Kind::i8 => bytemuck::$cast::<T, i8>($buf).ok().map($wrap),
            Kind::i16 => bytemuck::$cast::<T, i16>($buf).ok().map($wrap),
            Kind::i32 => bytemuck::$cast::<T, i32>($buf).ok().map($wrap),
            Kind::i64 => bytemuck::$cast::<T, i64>($buf).ok().map($wrap),
            Kind::isize => bytemuck::$cast::<T, isize>($buf).ok().map($wrap),
            Kind::u8 => bytemuck::$cast::<T, u8>($buf).ok().map($wrap),
            Kind::u16 => bytemuck::$cast::<T, u16>($buf).ok().map($wrap),
            Kind::u32 => bytemuck::$cast::<T, u32>($buf).ok().map($wrap),
            Kind::u64 => bytemuck::$cast::<T, u64>($buf).ok().map($wrap),
            Kind::usize => bytemuck::$cast::<T, usize>($buf).ok().map($wrap),
            Kind::f32 => bytemuck::$cast::<T, f32>($buf).ok().map($wrap),
            Kind::f64 => bytemuck::$cast::<T, f64>($buf).ok().map($wrap),
            Kind::i128 | Kind::u128 => None,
        }
    };
}

/// `n` as an MPI count, if it is at most `max` and fits one.
fn count(n: usize, max: usize) -> Option<Count> {
    Count::try_from(n).ok().filter(|_| n <= max)
}

/// The counts and displacements of blocks of `lens` bytes contiguous in rank order, if every
/// one is a count of at most `max` (as is the end of the last).
fn counted(lens: &[usize], max: usize) -> Option<(Vec<Count>, Vec<Count>)> {
    let counts = lens.iter().map(|&n| count(n, max)).collect::<Option<Vec<_>>>()?;
    let mut at = 0usize;
    let displs = lens
        .iter()
        .map(|&n| {
            let here = count(at, max);
            at = at.saturating_add(n);
            here
        })
        .collect::<Option<Vec<_>>>()?;
    count(at, max)?;
    Some((counts, displs))
}

/// What an empty buffer handed to MPI points at. An empty slice of bytes points at address 1,
/// which is Open MPI's `MPI_IN_PLACE`: an all-to-all of no bytes failed with `MPI_ERR_ARG`.
static NOWHERE: [u8; 1] = [0];

/// `buf`, or, when it is empty, an empty slice at a real address ([`NOWHERE`]).
fn placed<T: bytemuck::Pod>(buf: &[T]) -> &[T] {
    match buf.is_empty() {
        // a `T` aligned more than a byte points empty slices at its alignment, not at 1
        true => bytemuck::try_cast_slice(&NOWHERE[..0]).unwrap_or(buf),
        false => buf,
    }
}

/// As [`placed`], for a buffer MPI writes: an empty one at `spare`.
fn placed_mut<'a, T: bytemuck::Pod>(buf: &'a mut [T], spare: &'a mut [u8; 1]) -> &'a mut [T] {
    match buf.is_empty() {
        true => bytemuck::try_cast_slice_mut(&mut spare[..0]).unwrap_or(buf),
        false => buf,
    }
}

/// `buf` as a buffer of its MPI datatype; `None` for types MPI has no datatype for (128-bit
/// integers), which the caller then reduces with the built-in algorithms.
fn typed<T: Element>(buf: &[T]) -> Option<DynBuffer<'_>> {
    let buf = placed(buf);
    as_mpi!(buf, try_cast_slice, DynBuffer::new)
}

/// As [`typed`], for a buffer MPI writes.
fn typed_mut<'a, T: Element>(buf: &'a mut [T], spare: &'a mut [u8; 1]) -> Option<DynBufferMut<'a>> {
    let buf = placed_mut(buf, spare);
    as_mpi!(buf, try_cast_slice_mut, DynBufferMut::new)
}

impl Native {
    /// The MPI side of a communicator `coll` whose members have world ranks `group` and whose
    /// point-to-point messages use `context` in the mailbox.
    pub fn new(
        proof: ThreadMultiple,
        coll: mpi::topology::SimpleCommunicator,
        group: Arc<[usize]>,
        context: u64,
        limits: Limits,
        registry: &Registry,
    ) -> Native {
        let p2p = P2p::new(Comm::new(proof, coll.duplicate()), group, context, limits.spin, registry);
        Native { proof, coll: Comm::new(proof, coll), p2p, registry: Arc::clone(registry), limits }
    }

    /// The largest count or offset in bytes handed to MPI's `v` collectives.
    pub fn count_max(&self) -> usize {
        self.limits.count_max
    }

    /// The communicator's plain-old-data messages.
    pub fn p2p(&self) -> &P2p {
        &self.p2p
    }

    fn root(&self, root: usize) -> mpi::topology::Process<'_> {
        self.coll.get().process_at_rank(root as i32)
    }

    fn is(&self, root: usize) -> bool {
        self.coll.get().rank() as usize == root
    }

    /// `MPI_Barrier`.
    pub fn barrier(&self) {
        self.coll.get().barrier();
    }

    /// `MPI_Bcast` of bytes.
    pub fn broadcast(&self, root: usize, buf: &mut [u8]) {
        let mut spare = [0u8; 1];
        self.root(root).broadcast_into(placed_mut(buf, &mut spare));
    }

    /// `MPI_Scatter` of bytes; the root passes `send`.
    pub fn scatter(&self, root: usize, send: Option<&[u8]>, recv: &mut [u8]) {
        let mut spare = [0u8; 1];
        let recv = placed_mut(recv, &mut spare);
        match send {
            Some(send) if self.is(root) => self.root(root).scatter_into_root(placed(send), recv),
            _ => self.root(root).scatter_into(recv),
        }
    }

    /// `MPI_Gather` of bytes; the root passes `recv`.
    pub fn gather(&self, root: usize, send: &[u8], recv: Option<&mut [u8]>) {
        let (send, mut spare) = (placed(send), [0u8; 1]);
        match recv {
            Some(recv) if self.is(root) => {
                self.root(root).gather_into_root(send, placed_mut(recv, &mut spare))
            }
            _ => self.root(root).gather_into(send),
        }
    }

    /// `MPI_Allgather` of bytes.
    pub fn allgather(&self, send: &[u8], recv: &mut [u8]) {
        let mut spare = [0u8; 1];
        self.coll.get().all_gather_into(placed(send), placed_mut(recv, &mut spare));
    }

    /// `MPI_Alltoall` of bytes.
    pub fn alltoall(&self, send: &[u8], recv: &mut [u8]) {
        let mut spare = [0u8; 1];
        self.coll.get().all_to_all_into(placed(send), placed_mut(recv, &mut spare));
    }

    /// Whether MPI has a datatype for `T` (all but the 128-bit integers).
    pub fn supports<T: Element>() -> bool {
        typed::<T>(&[]).is_some()
    }

    /// `MPI_Reduce`; the root passes `recv`. Does nothing unless [`Native::supports`] `T`.
    pub fn reduce<T: Element>(&self, root: usize, send: &[T], recv: Option<&mut [T]>, op: Op) {
        let Some(send) = typed(send) else { return };
        let mut spare = [0u8; 1];
        match recv.and_then(|r| typed_mut(r, &mut spare)) {
            Some(mut recv) if self.is(root) => self.root(root).reduce_into_root(&send, &mut recv, mpi_op(op)),
            _ => self.root(root).reduce_into(&send, mpi_op(op)),
        }
    }

    /// `MPI_Allreduce`. Does nothing unless [`Native::supports`] `T`.
    pub fn allreduce<T: Element>(&self, send: &[T], recv: &mut [T], op: Op) {
        let mut spare = [0u8; 1];
        if let (Some(send), Some(mut recv)) = (typed(send), typed_mut(recv, &mut spare)) {
            self.coll.get().all_reduce_into(&send, &mut recv, mpi_op(op));
        }
    }

    /// `MPI_Scan` (`inclusive`) or `MPI_Exscan`. Does nothing unless [`Native::supports`] `T`.
    pub fn scan<T: Element>(&self, send: &[T], recv: &mut [T], op: Op, inclusive: bool) {
        let mut spare = [0u8; 1];
        if let (Some(send), Some(mut recv)) = (typed(send), typed_mut(recv, &mut spare)) {
            match inclusive {
                true => self.coll.get().scan_into(&send, &mut recv, mpi_op(op)),
                false => self.coll.get().exclusive_scan_into(&send, &mut recv, mpi_op(op)),
            }
        }
    }

    /// `MPI_Alltoallv` of bytes, the blocks of `send_lens` and `recv_lens` bytes contiguous in
    /// rank order; false (nothing done) when a length or offset on some rank does not fit
    /// MPI's counts, for the caller to take another way. Every rank learns whether all ranks'
    /// fit (`MPI_Allreduce` of one byte), so that all of them take the same way.
    pub fn alltoallv(&self, send: &[u8], send_lens: &[usize], recv: &mut [u8], recv_lens: &[usize]) -> bool {
        let max = self.limits.count_max;
        let counts = counted(send_lens, max).zip(counted(recv_lens, max));
        let mut everywhere = 0u8;
        self.coll.get().all_reduce_into(&u8::from(counts.is_some()), &mut everywhere, SystemOperation::min());
        let (Some(((sc, sd), (rc, rd))), 1) = (counts, everywhere) else {
            return false;
        };
        let mut spare = [0u8; 1];
        let send = Partition::new(placed(send), sc, sd);
        let mut recv = PartitionMut::new(placed_mut(recv, &mut spare), rc, rd);
        self.coll.get().all_to_all_varcount_into(&send, &mut recv);
        true
    }

    /// `MPI_Allgatherv` of bytes, rank `r`'s block `lens[r]` bytes, contiguous in rank order;
    /// false (nothing done) when a length or offset does not fit MPI's counts. Every rank passes
    /// the same `lens`, and so decides alike.
    pub fn allgatherv(&self, send: &[u8], recv: &mut [u8], lens: &[usize]) -> bool {
        let Some((counts, displs)) = counted(lens, self.limits.count_max) else { return false };
        let mut spare = [0u8; 1];
        let mut recv = PartitionMut::new(placed_mut(recv, &mut spare), counts, displs);
        self.coll.get().all_gather_varcount_into(placed(send), &mut recv);
        true
    }

    /// `MPI_Gatherv` of bytes; the root passes `recv` and the lengths of the blocks, contiguous
    /// in rank order. False (nothing done) when this rank's lengths or offsets do not fit MPI's
    /// counts: only the root knows them all, so no other way is agreed on, and the caller fails
    /// (as MPI would; the other ranks end with the job).
    pub fn gatherv(&self, root: usize, send: &[u8], recv: Option<(&mut [u8], &[usize])>) -> bool {
        if count(send.len(), self.limits.count_max).is_none() {
            return false;
        }
        let (send, mut spare) = (placed(send), [0u8; 1]);
        match recv.filter(|_| self.is(root)) {
            Some((recv, lens)) => {
                let Some((counts, displs)) = counted(lens, self.limits.count_max) else { return false };
                let mut recv = PartitionMut::new(placed_mut(recv, &mut spare), counts, displs);
                self.root(root).gather_varcount_into_root(send, &mut recv);
            }
            None => self.root(root).gather_varcount_into(send),
        }
        true
    }

    /// `MPI_Scatterv` of bytes; the root passes `send` and the lengths of its blocks,
    /// contiguous in rank order. False (nothing done) as for [`Native::gatherv`].
    pub fn scatterv(&self, root: usize, send: Option<(&[u8], &[usize])>, recv: &mut [u8]) -> bool {
        if count(recv.len(), self.limits.count_max).is_none() {
            return false;
        }
        let mut spare = [0u8; 1];
        let recv = placed_mut(recv, &mut spare);
        match send.filter(|_| self.is(root)) {
            Some((send, lens)) => {
                let Some((counts, displs)) = counted(lens, self.limits.count_max) else { return false };
                let send = Partition::new(placed(send), counts, displs);
                self.root(root).scatter_varcount_into_root(&send, recv);
            }
            None => self.root(root).scatter_varcount_into(recv),
        }
        true
    }

    /// `MPI_Reduce_scatter_block`. Does nothing unless [`Native::supports`] `T`.
    pub fn reduce_scatter<T: Element>(&self, send: &[T], recv: &mut [T], op: Op) {
        let mut spare = [0u8; 1];
        if let (Some(send), Some(mut recv)) = (typed(send), typed_mut(recv, &mut spare)) {
            self.coll.get().reduce_scatter_block_into(&send, &mut recv, mpi_op(op));
        }
    }

    /// `MPI_Comm_split` with MPI colour `color` (`None`: `MPI_UNDEFINED`) and key `key`; the new
    /// communicator's members and context as [`Native::new`] takes them.
    pub fn split(&self, color: Option<i32>, key: i32, group: Arc<[usize]>, context: u64) -> Option<Native> {
        let color = color.map_or_else(Color::undefined, Color::with_value);
        let comm = self.coll.get().split_by_color_with_key(color, key)?;
        Some(Native::new(self.proof, comm, group, context, self.limits, &self.registry))
    }

    /// `MPI_Abort` on this communicator.
    pub fn abort(&self, code: i32) -> ! {
        self.coll.get().abort(code)
    }
}
