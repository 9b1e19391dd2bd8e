//! Typed collectives: any `serde` type, contributions of any size.
//!
//! Values are encoded with the runtime's codec and moved by the algorithms of the
//! `prun-collectives` crate (binomial trees, recursive doubling, pairwise exchange, ...), on the
//! communicator's collective context, so they never match point-to-point messages.

use crate::codec;
use crate::communicator::Communicator;
use crate::error::{Error, Result};
use prun_collectives::flat;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    codec::encode_into(value, Vec::new())
}

impl Communicator {
    pub(crate) fn check_root(&self, root: usize) -> Result<()> {
        if root < self.size() { Ok(()) } else { Err(Error::InvalidRank { rank: root, size: self.size() }) }
    }

    /// A combiner for the reduction algorithms: decodes both sides, applies `op`, encodes.
    fn combiner<'a, T, F>(&'a self, op: &'a F) -> impl FnMut(&[u8], &[u8]) -> Result<Vec<u8>> + 'a
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        move |left: &[u8], right: &[u8]| {
            let a: T = codec::decode(left, self.rank(), 0)?;
            let b: T = codec::decode(right, self.rank(), 0)?;
            encode(&op(a, b))
        }
    }

    /// Sends `value` from `root` to every rank; returns it on every rank.
    ///
    /// **Collective.** The root passes `Some(value)`, the others `None` (what they pass is
    /// ignored). Binomial tree for small values, scatter then allgather (van de Geijn) for large;
    /// straight from the root to every rank on 8 to 64 ranks where some host runs more ranks
    /// than it has cores.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let config = (world.rank() == 0).then(|| vec!["alpha".to_string(), "beta".to_string()]);
    /// let config: Vec<String> = world.broadcast(0, config)?;
    /// assert_eq!(config.len(), 2);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the root passes `None`; [`Error::PeerLost`] when a rank
    /// on the way has ended; [`Error::Decode`].
    pub fn broadcast<T: Serialize + DeserializeOwned>(&self, root: usize, value: Option<T>) -> Result<T> {
        self.check_root(root)?;
        let mut call = self.begin("broadcast");
        call.root = Some(root);
        let seq = call.seq;
        if self.rank() == root {
            let value = value.ok_or_else(|| {
                Error::InvalidArgument("the root of broadcast must pass Some(value)".into())
            })?;
            let bytes = Some(encode(&value)?);
            if self.flat_typed() {
                flat::broadcast(&self.channel_for(&call)?, seq, root, bytes)?;
            } else {
                prun_collectives::broadcast(&self.channel_for(&call)?, seq, root, bytes)?;
            }
            Ok(value)
        } else {
            let bytes = if self.flat_typed() {
                flat::broadcast(&self.channel_for(&call)?, seq, root, None)?
            } else {
                prun_collectives::broadcast(&self.channel_for(&call)?, seq, root, None)?
            };
            codec::decode(&bytes, root, 0)
        }
    }

    /// Hands value `r` of the root's `values` to rank `r`; returns this rank's value.
    ///
    /// **Collective.** The root passes `Some(values)` with one value per rank (of any sizes),
    /// the others `None`. A binomial tree; straight from the root to each rank up to 64 ranks
    /// where some host runs more ranks than it has cores.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let work: Vec<Vec<u32>> = (0..world.size() as u32).map(|r| vec![r; 3]).collect();
    /// let mine: Vec<u32> = world.scatter(0, (world.rank() == 0).then_some(&work[..]))?;
    /// assert_eq!(mine, vec![world.rank() as u32; 3]);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the root passes `None` or not one value per rank.
    pub fn scatter<T: Serialize + DeserializeOwned>(&self, root: usize, values: Option<&[T]>) -> Result<T> {
        self.check_root(root)?;
        let mut call = self.begin("scatter");
        call.root = Some(root);
        let seq = call.seq;
        let blocks = if self.rank() == root {
            let values = values.filter(|v| v.len() == self.size()).ok_or_else(|| {
                Error::InvalidArgument(format!("the root of scatter must pass {} values", self.size()))
            })?;
            Some(values.iter().map(|v| encode(v)).collect::<Result<Vec<_>>>()?)
        } else {
            None
        };
        // by the number of ranks alone (bytes 0): ranks cannot know each other's value sizes
        let direct = self.direct(0);
        let mine =
            prun_collectives::scatter(&self.channel_for(&call)?, seq, root, blocks.as_deref(), direct)?;
        codec::decode(&mine, root, 0)
    }

    /// Collects every rank's `value` at `root`, in rank order; other ranks get `None`.
    ///
    /// **Collective.** Values may differ in size (as `MPI_Gatherv`). A binomial tree; straight
    /// from each rank to the root up to 64 ranks where some host runs more ranks than it has
    /// cores.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let all = world.gather(0, &format!("rank {}", world.rank()))?;
    /// if world.rank() == 0 {
    ///     assert_eq!(all.expect("root")[0], "rank 0");
    /// }
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::PeerLost`], [`Error::Decode`].
    pub fn gather<T: Serialize + DeserializeOwned>(&self, root: usize, value: &T) -> Result<Option<Vec<T>>> {
        self.check_root(root)?;
        let mut call = self.begin("gather");
        call.root = Some(root);
        let seq = call.seq;
        let direct = self.direct(0);
        let all = prun_collectives::gather(&self.channel_for(&call)?, seq, root, encode(value)?, direct)?;
        all.map(|blocks| blocks.iter().enumerate().map(|(r, b)| codec::decode(b, r, 0)).collect()).transpose()
    }

    /// Collects every rank's `value` on every rank, in rank order.
    ///
    /// **Collective.** Values may differ in size. Recursive doubling (Bruck's algorithm when the
    /// size is not a power of two); through rank 0 on 8 to 64 ranks where some host runs more
    /// ranks than it has cores.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let ranks: Vec<usize> = world.allgather(&world.rank())?;
    /// assert_eq!(ranks, (0..world.size()).collect::<Vec<_>>());
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::PeerLost`], [`Error::Decode`].
    pub fn allgather<T: Serialize + DeserializeOwned>(&self, value: &T) -> Result<Vec<T>> {
        let call = self.begin("allgather");
        let seq = call.seq;
        let all = if self.flat_typed() {
            flat::allgather(&self.channel_for(&call)?, seq, encode(value)?)?
        } else {
            prun_collectives::allgather(&self.channel_for(&call)?, seq, encode(value)?, false)?
        };
        all.iter().enumerate().map(|(r, b)| codec::decode(b, r, 0)).collect()
    }

    /// Every rank sends `values[d]` to rank `d`; returns what each rank sent this one, by source.
    ///
    /// **Collective.** Each rank passes exactly one value per rank; sizes may differ. Pairwise
    /// exchange; every value at once, then every receive, on 8 to 64 ranks where some host runs
    /// more ranks than it has cores.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let out: Vec<(usize, usize)> = (0..world.size()).map(|d| (world.rank(), d)).collect();
    /// let got = world.alltoall(&out)?;
    /// assert!(got.iter().enumerate().all(|(s, &(from, to))| from == s && to == world.rank()));
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without one value per rank; [`Error::PeerLost`].
    pub fn alltoall<T: Serialize + DeserializeOwned>(&self, values: &[T]) -> Result<Vec<T>> {
        if values.len() != self.size() {
            return Err(Error::InvalidArgument(format!(
                "alltoall takes one value per rank: {} values for {} ranks",
                values.len(),
                self.size()
            )));
        }
        let call = self.begin("alltoall");
        let seq = call.seq;
        let blocks = values.iter().map(|v| encode(v)).collect::<Result<Vec<_>>>()?;
        let got = if self.flat_typed() {
            flat::alltoall(&self.channel_for(&call)?, seq, blocks)?
        } else {
            prun_collectives::alltoall(&self.channel_for(&call)?, seq, blocks)?
        };
        got.iter().enumerate().map(|(r, b)| codec::decode(b, r, 0)).collect()
    }

    /// Combines every rank's `value` with `op` at `root`: `op(v0, op(v1, ... v(n-1)))` in rank
    /// order; other ranks get `None`.
    ///
    /// **Collective.** `op` must be associative; it need not be commutative (values are always
    /// combined in rank order, lower ranks on the left). Binomial tree; straight to the root on
    /// 8 to 64 ranks where some host runs more ranks than it has cores.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let total = world.reduce(0, world.rank() as u64 + 1, |a, b| a + b)?;
    /// if world.rank() == 0 {
    ///     let n = world.size() as u64;
    ///     assert_eq!(total, Some(n * (n + 1) / 2));
    /// }
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::PeerLost`], [`Error::Decode`].
    pub fn reduce<T, F>(&self, root: usize, value: T, op: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        self.check_root(root)?;
        let mut call = self.begin("reduce");
        call.root = Some(root);
        let seq = call.seq;
        let mut combine = self.combiner(&op);
        let out = if self.flat_typed() {
            flat::reduce(&self.channel_for(&call)?, seq, root, encode(&value)?, &mut combine)?
        } else {
            prun_collectives::reduce(&self.channel_for(&call)?, seq, root, encode(&value)?, &mut combine)?
        };
        out.map(|b| codec::decode(&b, root, 0)).transpose()
    }

    /// Combines every rank's `value` with `op` and returns the result on every rank.
    ///
    /// **Collective.** `op` must be associative; it need not be commutative (rank order is
    /// kept). Recursive doubling; reduced on rank 0 and sent from there on 8 to 64 ranks where
    /// some host runs more ranks than it has cores.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let longest = world.allreduce(format!("rank{}", world.rank()), |a, b| if b.len() > a.len() { b } else { a })?;
    /// assert!(longest.starts_with("rank"));
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::PeerLost`], [`Error::Decode`].
    pub fn allreduce<T, F>(&self, value: T, op: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let call = self.begin("allreduce");
        let seq = call.seq;
        let mut combine = self.combiner(&op);
        let out = if self.flat_typed() {
            flat::allreduce(&self.channel_for(&call)?, seq, encode(&value)?, &mut combine)?
        } else {
            prun_collectives::allreduce(&self.channel_for(&call)?, seq, encode(&value)?, &mut combine)?
        };
        codec::decode(&out, self.rank(), 0)
    }

    /// Inclusive prefix reduction: rank `r` gets `op(v0, ... vr)`.
    ///
    /// **Collective.** `op` must be associative, need not be commutative. Recursive doubling;
    /// through rank 0 (which combines in rank order and sends each rank its prefix) on 8 to 64
    /// ranks where some host runs more ranks than it has cores.
    ///
    /// ```
    /// let world = prun::init()?;
    /// let upto = world.scan(1u32, |a, b| a + b)?;
    /// assert_eq!(upto as usize, world.rank() + 1);
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::PeerLost`], [`Error::Decode`].
    pub fn scan<T, F>(&self, value: T, op: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let call = self.begin("scan");
        let seq = call.seq;
        let mut combine = self.combiner(&op);
        let out = if self.flat_typed() {
            flat::scan(&self.channel_for(&call)?, seq, encode(&value)?, true, &mut combine)?
                .ok_or_else(|| Error::Malformed("scan: no result".into()))?
        } else {
            prun_collectives::scan(&self.channel_for(&call)?, seq, encode(&value)?, &mut combine)?
        };
        codec::decode(&out, self.rank(), 0)
    }

    /// Exclusive prefix reduction: rank `r > 0` gets `op(v0, ... v(r-1))`, rank 0 gets `None`.
    ///
    /// **Collective.** `op` must be associative, need not be commutative. As [`Communicator::scan`].
    ///
    /// ```
    /// let world = prun::init()?;
    /// let offset = world.exscan(10usize, |a, b| a + b)?.unwrap_or(0);
    /// assert_eq!(offset, 10 * world.rank());
    /// # Ok::<(), prun::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::PeerLost`], [`Error::Decode`].
    pub fn exscan<T, F>(&self, value: T, op: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(T, T) -> T,
    {
        let call = self.begin("exscan");
        let seq = call.seq;
        let mut combine = self.combiner(&op);
        let out = if self.flat_typed() {
            flat::scan(&self.channel_for(&call)?, seq, encode(&value)?, false, &mut combine)?
        } else {
            prun_collectives::exscan(&self.channel_for(&call)?, seq, encode(&value)?, &mut combine)?
        };
        out.map(|b| codec::decode(&b, self.rank(), 0)).transpose()
    }
}
