//! The MPI backend's own cost, measured in one process: each of collbench's operations through
//! prun's `World` and the same MPI call made directly (through rsmpi, on a duplicate of
//! `MPI_COMM_WORLD`), alternating iteration by iteration.
//!
//! `mpirun -n 2 target/mpi-openmpi/release/mpi_overhead [latency|barrier|bcast|...]...`
//! (built with `--features mpi`; bench/mpi_backend.sh runs it).
//!
//! Two programs started one after the other (collbench against bench/mpi_collbench.c) see
//! different machines: on a shared 2-core VM their rows move 10 to 30% from run to run, which
//! hides a 5% overhead. Here both calls run in the same process, on the same buffers, at the same
//! MPI thread level and beside the same receiver thread, in alternating order (prun first on even
//! iterations, MPI first on odd ones), each after an `MPI_Barrier`: what differs is prun's own
//! path from `World` to MPI. What the backend costs by running at all (its thread level and its
//! receiver thread) is left to bench/mpi_backend.sh's comparison with the C reference.
//!
//! Sizes and iteration counts are collbench's (`COLLBENCH_MIN_BYTES`, `COLLBENCH_MAX_BYTES`,
//! `COLLBENCH_ITERS_SCALE`).
//! Rank 0 prints exactly `<op> <bytes> <prun_us> <mpi_us>` per measurement, each the mean time
//! per operation averaged over the ranks (over ranks 0 and 1 for `latency`, one way), and nothing
//! else on stdout. Exits 2 on an unknown operation, 1 when not started on the MPI backend or
//! when a result is wrong.

use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::traits::*;
use prun::{Backend, Op, World};
use prun_examples::collbench::{EMPTY, Page, iterations, operations, sizes};
use std::process::ExitCode;
use std::time::Instant;

/// Mean seconds per operation through prun (`op(true)`) and directly on MPI (`op(false)`), timed
/// in alternating order after an `MPI_Barrier` each, after warm-up iterations of both.
fn measure(
    raw: &SimpleCommunicator,
    bytes: usize,
    mut op: impl FnMut(bool) -> Result<(), prun::Error>,
) -> Result<[f64; 2], prun::Error> {
    let (iters, warm) = iterations(bytes);
    let mut total = [0.0f64; 2];
    for i in 0..warm + iters {
        for which in [i % 2, 1 - i % 2] {
            raw.barrier();
            let t = Instant::now();
            op(which == 0)?;
            if i >= warm {
                total[which] += t.elapsed().as_secs_f64();
            }
        }
    }
    Ok(total.map(|t| t / iters as f64))
}

/// Runs `op` once through prun and once directly on MPI, each on receive buffers reset by
/// `reset` first; whether both left what `check` expects on every rank.
fn verify(
    raw: &SimpleCommunicator,
    mut reset: impl FnMut(),
    mut op: impl FnMut(bool) -> Result<(), prun::Error>,
    mut check: impl FnMut() -> bool,
) -> Result<bool, prun::Error> {
    let mut ok = true;
    for through_prun in [true, false] {
        reset();
        raw.barrier();
        op(through_prun)?;
        ok &= check();
    }
    let mut bad = 0u32;
    raw.all_reduce_into(&u32::from(!ok), &mut bad, SystemOperation::sum());
    Ok(bad == 0)
}

/// [`measure`]s `op` both ways, then [`verify`]s both ways' results.
fn compare(
    raw: &SimpleCommunicator,
    bytes: usize,
    mut op: impl FnMut(bool) -> Result<(), prun::Error>,
    reset: impl FnMut(),
    check: impl FnMut() -> bool,
) -> Result<([f64; 2], bool), prun::Error> {
    let means = measure(raw, bytes, &mut op)?;
    Ok((means, verify(raw, reset, op, check)?))
}

/// Averages both means over the ranks (those that `take_part`); rank 0 prints them.
fn report(raw: &SimpleCommunicator, op: &str, bytes: usize, means: [f64; 2], take_part: bool) {
    let mine = if take_part { [means[0], means[1], 1.0] } else { [0.0; 3] };
    let mut sums = [0.0f64; 3];
    raw.all_reduce_into(&mine[..], &mut sums[..], SystemOperation::sum());
    if raw.rank() == 0 {
        let n = sums[2].max(1.0);
        println!("{op} {bytes} {:.2} {:.2}", sums[0] / n * 1e6, sums[1] / n * 1e6);
    }
}

/// Whether every chunk `r` of `bytes` in `buf` holds rank `r`'s fill byte.
/// MPI's counts and displacements for `size` blocks of `bytes` each, in rank order.
fn mpi_counts(bytes: usize, size: usize) -> (Vec<mpi::Count>, Vec<mpi::Count>) {
    let count = |n: usize| mpi::Count::try_from(n).unwrap_or(mpi::Count::MAX);
    ((0..size).map(|_| count(bytes)).collect(), (0..size).map(|r| count(r * bytes)).collect())
}

fn filled_by_rank(buf: &[u8], bytes: usize) -> bool {
    buf.chunks(bytes.max(1)).enumerate().all(|(r, c)| c.iter().all(|&b| b == (r % 255) as u8 + 1))
}

/// Measures `op` at every size up to `max`, both ways on the same buffers (so that where they
/// lie cannot favour either), then checks both ways' results; false when one is wrong.
fn bench(world: &World, raw: &SimpleCommunicator, op: &str, sizes: &[usize]) -> Result<bool, prun::Error> {
    let (rank, size) = (world.rank(), world.size());
    if op == "barrier" {
        let means = measure(raw, 0, |p| {
            if p {
                world.barrier()
            } else {
                raw.barrier();
                Ok(())
            }
        })?;
        report(raw, op, 0, means, true);
        return Ok(true);
    }
    let fill = (rank % 255) as u8 + 1;
    let root = raw.process_at_rank(0);
    for &bytes in sizes {
        let (means, ok) = match op {
            "latency" => {
                if size < 2 {
                    return Ok(true);
                }
                let (send, mut recv) = (Page::new(bytes, fill), Page::new(bytes, EMPTY));
                let peer = 1 - rank.min(1);
                let mpi_peer = raw.process_at_rank(peer as i32);
                let recv = std::cell::RefCell::new(&mut recv);
                let op = |through_prun: bool| {
                    let mut recv = recv.borrow_mut();
                    match (rank, through_prun) {
                        (0, true) => {
                            world.send_slice(peer, 0, &send)?;
                            world.recv_into(peer, 0, &mut recv[..]).map(drop)
                        }
                        (1, true) => {
                            world.recv_into(peer, 0, &mut recv[..])?;
                            world.send_slice(peer, 0, &send)
                        }
                        (0, false) => {
                            mpi_peer.send(&send[..]);
                            mpi_peer.receive_into(&mut recv[..]);
                            Ok(())
                        }
                        (1, false) => {
                            mpi_peer.receive_into(&mut recv[..]);
                            mpi_peer.send(&send[..]);
                            Ok(())
                        }
                        _ => Ok(()),
                    }
                };
                let expect = (peer % 255) as u8 + 1;
                let (means, ok) = compare(
                    raw,
                    bytes,
                    op,
                    || recv.borrow_mut().fill(EMPTY),
                    || rank >= 2 || recv.borrow().iter().all(|&b| b == expect),
                )?;
                (means.map(|m| m / 2.0), ok)
            }
            "bcast" => {
                let buf = std::cell::RefCell::new(Page::new(bytes, fill));
                let op = |p: bool| match p {
                    true => world.broadcast_into(0, &mut buf.borrow_mut()),
                    false => {
                        root.broadcast_into(&mut buf.borrow_mut()[..]);
                        Ok(())
                    }
                };
                let reset = || {
                    if rank != 0 {
                        buf.borrow_mut().fill(EMPTY)
                    }
                };
                compare(raw, bytes, op, reset, || buf.borrow().iter().all(|&b| b == 1))?
            }
            // every rank's sum, or its block of the sum
            "allreduce" | "reduce_scatter" | "scan" => {
                let scatter = op == "reduce_scatter";
                let n = (bytes / 8).max(1);
                let send = Page::new(if scatter { n * size } else { n }, rank as f64 + 1.0);
                let recv = std::cell::RefCell::new(Page::new(n, -1.0f64));
                let call = |p: bool| {
                    let (mut recv, sum) = (recv.borrow_mut(), SystemOperation::sum());
                    match (p, op) {
                        (true, "allreduce") => world.allreduce_into(&send, &mut recv, Op::Sum),
                        (true, "scan") => world.scan_into(&send, &mut recv, Op::Sum),
                        (true, _) => world.reduce_scatter_into(&send, &mut recv, Op::Sum),
                        (false, "allreduce") => {
                            raw.all_reduce_into(&send[..], &mut recv[..], sum);
                            Ok(())
                        }
                        (false, "scan") => {
                            raw.scan_into(&send[..], &mut recv[..], sum);
                            Ok(())
                        }
                        (false, _) => {
                            raw.reduce_scatter_block_into(&send[..], &mut recv[..], sum);
                            Ok(())
                        }
                    }
                };
                // the sum over every rank, or (scan) over ranks 0..=rank
                let last = if op == "scan" { rank + 1 } else { size };
                let expect = (last * (last + 1) / 2) as f64;
                compare(
                    raw,
                    bytes,
                    call,
                    || recv.borrow_mut().fill(-1.0),
                    || recv.borrow().iter().all(|&x| x == expect),
                )?
            }
            "gather" => {
                let send = Page::new(bytes, fill);
                let recv =
                    std::cell::RefCell::new(Page::new(if rank == 0 { bytes * size } else { 0 }, EMPTY));
                let op = |p: bool| {
                    let mut recv = recv.borrow_mut();
                    match (p, rank) {
                        (true, _) => world.gather_into(0, &send, (rank == 0).then_some(&mut recv[..])),
                        (false, 0) => {
                            root.gather_into_root(&send[..], &mut recv[..]);
                            Ok(())
                        }
                        (false, _) => {
                            root.gather_into(&send[..]);
                            Ok(())
                        }
                    }
                };
                compare(
                    raw,
                    bytes,
                    op,
                    || recv.borrow_mut().fill(EMPTY),
                    || filled_by_rank(&recv.borrow(), bytes),
                )?
            }
            "scatter" => {
                let send = Page::new(if rank == 0 { bytes * size } else { 0 }, fill);
                let recv = std::cell::RefCell::new(Page::new(bytes, EMPTY));
                let op = |p: bool| {
                    let mut recv = recv.borrow_mut();
                    match (p, rank) {
                        (true, _) => world.scatter_into(0, (rank == 0).then_some(&send[..]), &mut recv),
                        (false, 0) => {
                            root.scatter_into_root(&send[..], &mut recv[..]);
                            Ok(())
                        }
                        (false, _) => {
                            root.scatter_into(&mut recv[..]);
                            Ok(())
                        }
                    }
                };
                compare(
                    raw,
                    bytes,
                    op,
                    || recv.borrow_mut().fill(EMPTY),
                    || recv.borrow().iter().all(|&b| b == 1),
                )?
            }
            // the same block to every rank, or a block for each
            "allgather" | "alltoall" => {
                let each = op == "alltoall";
                let send = Page::new(if each { bytes * size } else { bytes }, fill);
                let recv = std::cell::RefCell::new(Page::new(bytes * size, EMPTY));
                let op = |p: bool| match (p, each) {
                    (true, false) => world.allgather_into(&send, &mut recv.borrow_mut()),
                    (true, true) => world.alltoall_into(&send, &mut recv.borrow_mut()),
                    (false, false) => {
                        raw.all_gather_into(&send[..], &mut recv.borrow_mut()[..]);
                        Ok(())
                    }
                    (false, true) => {
                        raw.all_to_all_into(&send[..], &mut recv.borrow_mut()[..]);
                        Ok(())
                    }
                };
                compare(
                    raw,
                    bytes,
                    op,
                    || recv.borrow_mut().fill(EMPTY),
                    || filled_by_rank(&recv.borrow(), bytes),
                )?
            }
            // every count the same, as OSU's `v` benchmarks
            "gatherv" | "scatterv" | "allgatherv" => {
                let counts = vec![bytes; size];
                let (mpi_counts, displs) = mpi_counts(bytes, size);
                let (gathers, all) = (op != "scatterv", op == "allgatherv");
                let whole = if all || rank == 0 { bytes * size } else { 0 };
                let send = Page::new(if gathers { bytes } else { whole }, fill);
                let recv = std::cell::RefCell::new(Page::new(if gathers { whole } else { bytes }, EMPTY));
                let op = |p: bool| {
                    let mut recv = recv.borrow_mut();
                    let on_root = rank == 0;
                    match (p, op) {
                        (true, "gatherv") => {
                            world.gatherv_into(0, &send, on_root.then_some((&mut recv[..], &counts[..])))
                        }
                        (true, "scatterv") => {
                            world.scatterv_into(0, on_root.then_some((&send[..], &counts[..])), &mut recv)
                        }
                        (true, _) => world.allgatherv_into(&send, &mut recv, &counts),
                        (false, "gatherv") if on_root => {
                            let mut part = PartitionMut::new(&mut recv[..], &mpi_counts[..], &displs[..]);
                            root.gather_varcount_into_root(&send[..], &mut part);
                            Ok(())
                        }
                        (false, "gatherv") => {
                            root.gather_varcount_into(&send[..]);
                            Ok(())
                        }
                        (false, "scatterv") if on_root => {
                            let part = Partition::new(&send[..], &mpi_counts[..], &displs[..]);
                            root.scatter_varcount_into_root(&part, &mut recv[..]);
                            Ok(())
                        }
                        (false, "scatterv") => {
                            root.scatter_varcount_into(&mut recv[..]);
                            Ok(())
                        }
                        (false, _) => {
                            let mut part = PartitionMut::new(&mut recv[..], &mpi_counts[..], &displs[..]);
                            raw.all_gather_varcount_into(&send[..], &mut part);
                            Ok(())
                        }
                    }
                };
                let filled = || match gathers {
                    true => rank != 0 && !all || filled_by_rank(&recv.borrow(), bytes),
                    false => recv.borrow().iter().all(|&b| b == 1),
                };
                compare(raw, bytes, op, || recv.borrow_mut().fill(EMPTY), filled)?
            }
            _ => unreachable!("operations are checked in main"),
        };
        // the ping-pong's figure is ranks 0 and 1's
        report(raw, op, bytes, means, op != "latency" || rank < 2);
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn main() -> ExitCode {
    let ops = match operations("mpi_overhead") {
        Ok(ops) => ops,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(op) = ops.iter().find(|o| ["allreduce_with", "scan_with"].contains(&o.as_str())) {
        // MPI's side would be an `MPI_Op_create` operation, which rsmpi makes only with its
        // `user-operations` feature (libffi), left out of this workspace
        eprintln!("mpi_overhead: {op} is not measured here (bench/collbench.sh compares it with MPI's)");
        return ExitCode::from(2);
    }
    let run = || -> Result<bool, prun::Error> {
        let world = prun::init()?;
        if world.backend() != Backend::Mpi {
            eprintln!("mpi_overhead: not on the MPI backend; start it with mpirun, mpiexec or prun --mpi");
            return Ok(false);
        }
        // a communicator of its own: the backend's receiver thread drains MPI_COMM_WORLD's
        // messages that no receive of prun's waits for
        let raw = SimpleCommunicator::world().duplicate();
        let sizes = sizes();
        for op in &ops {
            if !bench(&world, &raw, op, &sizes)? {
                if raw.rank() == 0 {
                    eprintln!("mpi_overhead: {op}: prun and MPI gave different or wrong results");
                }
                return Ok(false);
            }
        }
        Ok(true)
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mpi_overhead: {e}");
            ExitCode::FAILURE
        }
    }
}
