//! Collective benchmarks in the style of the OSU micro-benchmarks, so that figures line up with
//! an MPI reference (`bench/mpi_collbench.c`, compared by `bench/collbench.sh`).
//!
//! `prun -n 8 target/release/collbench [latency|barrier|bcast|allreduce|gather|scatter|allgather|alltoall|reduce_scatter|gatherv|scatterv|allgatherv|allreduce_with|scan|scan_with]...`
//!
//! For each operation and size (8 B to 16 MiB; per rank for gather, scatter, allgather, their
//! `v` variants and `reduce_scatter`'s blocks, per pair of ranks for `alltoall`; the last eight
//! run only when named):
//! warm-up iterations, then timed iterations each preceded by a barrier (and one after the
//! last), timing only the operation. Each rank's mean time per operation is averaged over the
//! ranks (over ranks 0 and 1 for `latency`, a ping-pong whose one-way time is half the round
//! trip). Rank 0 prints exactly `<op> <bytes> <avg_us>` per measurement and nothing else on
//! stdout.
//!
//! Environment: `COLLBENCH_MIN_BYTES` and `COLLBENCH_MAX_BYTES` bound the sizes;
//! `COLLBENCH_ITERS_SCALE` scales the iteration counts (`clamp(64 MiB / max(bytes, 1 KiB), 10,
//! 1000)`, a tenth of that to warm up); `COLLBENCH_STAT=min` or `max` prints the least or the
//! greatest of the ranks' means instead of their average (the columns of OSU's `-f`).

use prun::{Op, World};
use std::process::ExitCode;
use std::time::Instant;

use prun_examples::collbench::{EMPTY, Page, Stat, iterations, operations, sizes};

/// Mean seconds of `op` over the timed iterations, after warm-up; a barrier before each and
/// after the last.
fn measure(
    world: &World,
    bytes: usize,
    mut op: impl FnMut() -> Result<(), prun::Error>,
) -> Result<f64, prun::Error> {
    let (iters, warm) = iterations(bytes);
    for _ in 0..warm {
        world.barrier()?;
        op()?;
    }
    let mut total = 0.0;
    for _ in 0..iters {
        world.barrier()?;
        let t = Instant::now();
        op()?;
        total += t.elapsed().as_secs_f64();
    }
    // and one after the last, as OSU's (a barrier after each operation): no rank goes on to
    // fill the next size's buffers while others still time this one
    world.barrier()?;
    Ok(total / iters as f64)
}

/// `stat` of every rank's mean (or of those that `take_part`), printed by rank 0.
fn report(
    world: &World,
    stat: Stat,
    line: (&str, usize),
    mean: f64,
    take_part: bool,
) -> Result<(), prun::Error> {
    let mine = [mean, if take_part { 1.0 } else { 0.0 }];
    let mut all = vec![0.0f64; if world.rank() == 0 { 2 * world.size() } else { 0 }];
    world.gather_into(0, &mine, (world.rank() == 0).then_some(&mut all[..]))?;
    let taking_part = all.chunks_exact(2).filter(|m| m[1] != 0.0).map(|m| m[0]);
    if let Some(figure) = stat.of(taking_part) {
        println!("{} {} {:.2}", line.0, line.1, figure * 1e6);
    }
    Ok(())
}

fn bench(world: &World, stat: Stat, op: &str, sizes: &[usize]) -> Result<(), prun::Error> {
    let report = |op: &str, bytes, mean, take_part| report(world, stat, (op, bytes), mean, take_part);
    let (rank, size) = (world.rank(), world.size());
    if op == "barrier" {
        let mean = measure(world, 0, || world.barrier())?;
        return report(op, 0, mean, true);
    }
    // buffers to send hold rank + 1 in every byte, as bench/mpi_collbench.c's: never zero, so
    // that they are real pages rather than the kernel's shared zero page
    let fill = (rank % 255) as u8 + 1;
    for &bytes in sizes {
        let mean = match op {
            "latency" => {
                if size < 2 {
                    return Ok(());
                }
                // buffers on ranks 0 and 1 only, as bench/mpi_collbench.c's: the others leave
                // the timed loop before the last round trip, and filling the next size's buffers
                // there took the cores from it (8 ranks, 1 MiB: 210 us instead of 80 when a
                // 16 MiB size followed)
                let len = if rank < 2 { bytes } else { 0 };
                let (send, mut recv) = (Page::new(len, fill), Page::new(len, EMPTY));
                let mean = measure(world, bytes, || match rank {
                    0 => {
                        world.send_slice(1, 0, &send)?;
                        world.recv_into(1, 0, &mut recv).map(drop)
                    }
                    1 => {
                        world.recv_into(0, 0, &mut recv)?;
                        world.send_slice(0, 0, &send)
                    }
                    _ => Ok(()),
                })?;
                report(op, bytes, mean / 2.0, rank < 2)?;
                continue;
            }
            "bcast" => {
                let mut buf = Page::new(bytes, fill);
                measure(world, bytes, || world.broadcast_into(0, &mut buf))?
            }
            "allreduce" | "allreduce_with" | "scan" | "scan_with" => {
                let n = (bytes / 8).max(1);
                let send = Page::new(n, rank as f64 + 1.0);
                let mut recv = Page::new(n, -1.0f64);
                let mean = measure(world, bytes, || match op {
                    "allreduce" => world.allreduce_into(&send, &mut recv, Op::Sum),
                    "scan" => world.scan_into(&send, &mut recv, Op::Sum),
                    // the first of the two: associative, not commutative
                    "scan_with" => world.scan_into_with(&send, &mut recv, |_: &mut f64, _| {}),
                    _ => world.allreduce_into_with(&send, &mut recv, |a: &mut f64, b| *a += *b),
                })?;
                // the sum over every rank, or (scan) over ranks 0..=rank, or rank 0's value
                let expect = match op {
                    "scan" => (rank + 1) * (rank + 2) / 2,
                    "scan_with" => 1,
                    _ => size * (size + 1) / 2,
                } as f64;
                if recv[0] != expect {
                    eprintln!("collbench: {op} gave {} instead of {expect}", recv[0]);
                    world.abort(1);
                }
                mean
            }
            "gather" => {
                let send = Page::new(bytes, fill);
                let mut recv = Page::new(if rank == 0 { bytes * size } else { 0 }, EMPTY);
                measure(world, bytes, || world.gather_into(0, &send, (rank == 0).then_some(&mut recv[..])))?
            }
            "scatter" => {
                let send = Page::new(if rank == 0 { bytes * size } else { 0 }, fill);
                let mut recv = Page::new(bytes, EMPTY);
                measure(world, bytes, || world.scatter_into(0, (rank == 0).then_some(&send[..]), &mut recv))?
            }
            "allgather" => {
                let send = Page::new(bytes, fill);
                let mut recv = Page::new(bytes * size, EMPTY);
                measure(world, bytes, || world.allgather_into(&send, &mut recv))?
            }
            "gatherv" => {
                let (counts, send) = (vec![bytes; size], Page::new(bytes, fill));
                let mut recv = Page::new(if rank == 0 { bytes * size } else { 0 }, EMPTY);
                measure(world, bytes, || {
                    world.gatherv_into(0, &send, (rank == 0).then_some((&mut recv[..], &counts[..])))
                })?
            }
            "scatterv" => {
                let counts = vec![bytes; size];
                let send = Page::new(if rank == 0 { bytes * size } else { 0 }, fill);
                let mut recv = Page::new(bytes, EMPTY);
                let send = (rank == 0).then_some((&send[..], &counts[..]));
                measure(world, bytes, || world.scatterv_into(0, send, &mut recv))?
            }
            "allgatherv" => {
                let (counts, send) = (vec![bytes; size], Page::new(bytes, fill));
                let mut recv = Page::new(bytes * size, EMPTY);
                measure(world, bytes, || world.allgatherv_into(&send, &mut recv, &counts))?
            }
            "alltoall" => {
                let send = Page::new(bytes * size, fill);
                let mut recv = Page::new(bytes * size, EMPTY);
                measure(world, bytes, || world.alltoall_into(&send, &mut recv))?
            }
            "reduce_scatter" => {
                let n = (bytes / 8).max(1);
                let send = Page::new(n * size, rank as f64 + 1.0);
                let mut recv = Page::new(n, -1.0f64);
                let mean = measure(world, bytes, || world.reduce_scatter_into(&send, &mut recv, Op::Sum))?;
                let expect = (size * (size + 1) / 2) as f64;
                if recv[0] != expect || recv[n - 1] != expect {
                    eprintln!("collbench: reduce_scatter gave {} instead of {expect}", recv[0]);
                    world.abort(1);
                }
                mean
            }
            _ => unreachable!("operations are checked in main"),
        };
        report(op, bytes, mean, true)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let (ops, stat) = match operations("collbench").and_then(|ops| Ok((ops, Stat::from_env("collbench")?))) {
        Ok(chosen) => chosen,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let sizes = sizes();
    let run = || -> Result<(), prun::Error> {
        let world = prun::init()?;
        for op in &ops {
            bench(&world, stat, op, &sizes)?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("collbench: {e}");
            ExitCode::FAILURE
        }
    }
}
