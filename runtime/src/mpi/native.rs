//! A communicator's collectives as MPI's own: `MPI_Barrier`, `MPI_Bcast`, `MPI_Scatter`,
//! `MPI_Gather`, `MPI_Allgather`, `MPI_Reduce` and `MPI_Allreduce` with MPI's predefined
//! operations, `MPI_Comm_split`, and plain-old-data messages as MPI messages.
//!
//! Callers check arguments first; what reaches here is well formed on this rank.

use super::handle::{Comm, ThreadMultiple};
use crate::error::{Error, Result};
use crate::op::{Element, Kind, Op};
use mpi::collective::SystemOperation;
use mpi::datatype::{DynBuffer, DynBufferMut};
use mpi::topology::Color;
use mpi::traits::*;

/// Largest tag of plain-old-data messages sent as MPI messages; every MPI library allows it
/// (`MPI_TAG_UB` is at least 32767). Larger tags go through the engine.
const MAX_NATIVE_TAG: u32 = 32_767;

/// Largest plain-old-data message sent as an MPI message: below the eager limits of Open MPI
/// (4 KiB over shared memory) and MPICH, so that `MPI_Send` returns without waiting for the
/// receiver, as every send of the runtime does. Larger ones go through the engine.
const MAX_NATIVE_LEN: usize = 4000;

/// Whether a plain-old-data message of `len` bytes with `tag` to another rank is sent as an MPI
/// message (else through the engine).
pub(crate) fn native_message(tag: u32, len: usize) -> bool {
    tag <= MAX_NATIVE_TAG && len <= MAX_NATIVE_LEN
}

/// One communicator's MPI side.
pub(crate) struct Native {
    proof: ThreadMultiple,
    /// For collectives.
    coll: Comm,
    /// For plain-old-data messages, apart from collectives and the engine.
    p2p: Comm,
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

/// `buf` as a buffer of its MPI datatype; `None` for types MPI has no datatype for (128-bit
/// integers), which the caller then reduces with the built-in algorithms.
fn typed<T: Element>(buf: &[T]) -> Option<DynBuffer<'_>> {
    macro_rules! as_ {
        ($t:ty) => {
            bytemuck::try_cast_slice::<T, $t>(buf).ok().map(DynBuffer::new)
        };
    }
    match T::kind() {
        Kind::i8 => as_!(i8),
        Kind::i16 => as_!(i16),
        Kind::i32 => as_!(i32),
        Kind::i64 => as_!(i64),
        Kind::isize => as_!(isize),
        Kind::u8 => as_!(u8),
        Kind::u16 => as_!(u16),
        Kind::u32 => as_!(u32),
        Kind::u64 => as_!(u64),
        Kind::usize => as_!(usize),
        Kind::f32 => as_!(f32),
        Kind::f64 => as_!(f64),
        Kind::i128 | Kind::u128 => None,
    }
}

/// As [`typed`], for a buffer MPI writes.
fn typed_mut<T: Element>(buf: &mut [T]) -> Option<DynBufferMut<'_>> {
    macro_rules! as_ {
        ($t:ty) => {
            bytemuck::try_cast_slice_mut::<T, $t>(buf).ok().map(DynBufferMut::new)
        };
    }
    match T::kind() {
        Kind::i8 => as_!(i8),
        Kind::i16 => as_!(i16),
        Kind::i32 => as_!(i32),
        Kind::i64 => as_!(i64),
        Kind::isize => as_!(isize),
        Kind::u8 => as_!(u8),
        Kind::u16 => as_!(u16),
        Kind::u32 => as_!(u32),
        Kind::u64 => as_!(u64),
        Kind::usize => as_!(usize),
        Kind::f32 => as_!(f32),
        Kind::f64 => as_!(f64),
        Kind::i128 | Kind::u128 => None,
    }
}

impl Native {
    /// The MPI side of a communicator `coll`.
    pub fn new(proof: ThreadMultiple, coll: mpi::topology::SimpleCommunicator) -> Native {
        let p2p = Comm::new(proof, coll.duplicate());
        Native { proof, coll: Comm::new(proof, coll), p2p }
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
        self.root(root).broadcast_into(buf);
    }

    /// `MPI_Scatter` of bytes; the root passes `send`.
    pub fn scatter(&self, root: usize, send: Option<&[u8]>, recv: &mut [u8]) {
        match send {
            Some(send) if self.is(root) => self.root(root).scatter_into_root(send, recv),
            _ => self.root(root).scatter_into(recv),
        }
    }

    /// `MPI_Gather` of bytes; the root passes `recv`.
    pub fn gather(&self, root: usize, send: &[u8], recv: Option<&mut [u8]>) {
        match recv {
            Some(recv) if self.is(root) => self.root(root).gather_into_root(send, recv),
            _ => self.root(root).gather_into(send),
        }
    }

    /// `MPI_Allgather` of bytes.
    pub fn allgather(&self, send: &[u8], recv: &mut [u8]) {
        self.coll.get().all_gather_into(send, recv);
    }

    /// Whether MPI has a datatype for `T` (all but the 128-bit integers).
    pub fn supports<T: Element>() -> bool {
        typed::<T>(&[]).is_some()
    }

    /// `MPI_Reduce`; the root passes `recv`. Does nothing unless [`Native::supports`] `T`.
    pub fn reduce<T: Element>(&self, root: usize, send: &[T], recv: Option<&mut [T]>, op: Op) {
        let Some(send) = typed(send) else { return };
        match recv.and_then(typed_mut) {
            Some(mut recv) if self.is(root) => self.root(root).reduce_into_root(&send, &mut recv, mpi_op(op)),
            _ => self.root(root).reduce_into(&send, mpi_op(op)),
        }
    }

    /// `MPI_Allreduce`. Does nothing unless [`Native::supports`] `T`.
    pub fn allreduce<T: Element>(&self, send: &[T], recv: &mut [T], op: Op) {
        if let (Some(send), Some(mut recv)) = (typed(send), typed_mut(recv)) {
            self.coll.get().all_reduce_into(&send, &mut recv, mpi_op(op));
        }
    }

    /// Sends bytes to `dest` as an MPI message with `tag`, when [`native_message`] says so.
    pub fn send(&self, dest: usize, tag: u32, data: &[u8]) {
        self.p2p.get().process_at_rank(dest as i32).send_with_tag(data, tag as i32);
    }

    /// Receives the next MPI message from `src` with `tag` into `buf` if one has arrived; a
    /// message of another length is consumed and reported.
    pub fn try_recv_into(&self, src: usize, tag: u32, buf: &mut [u8]) -> Option<Result<usize>> {
        let peer = self.p2p.get().process_at_rank(src as i32);
        let (message, status) = peer.immediate_matched_probe_with_tag(tag as i32)?;
        let len = status.count(u8::equivalent_datatype()) as usize;
        if len == buf.len() {
            message.matched_receive_into(buf);
            return Some(Ok(len));
        }
        let _ = (message, status).matched_receive_vec::<u8>();
        Some(Err(Error::Malformed(format!(
            "message from rank {src} (tag {tag}) has {len} bytes, the buffer {}",
            buf.len()
        ))))
    }

    /// `MPI_Comm_split` with MPI colour `color` (`None`: `MPI_UNDEFINED`) and key `key`.
    pub fn split(&self, color: Option<i32>, key: i32) -> Option<Native> {
        let color = color.map_or_else(Color::undefined, Color::with_value);
        let comm = self.coll.get().split_by_color_with_key(color, key)?;
        Some(Native::new(self.proof, comm))
    }

    /// `MPI_Abort` on this communicator.
    pub fn abort(&self, code: i32) -> ! {
        self.coll.get().abort(code)
    }
}
