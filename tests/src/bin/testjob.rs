//! A job program for prun's end-to-end tests: each mode behaves (or misbehaves) in one way and
//! checks what it can itself, exiting non-zero when a check fails.
//!
//! `prun-testjob MODE [ARGS]`; see `main` for the modes.

use prun::{Error, World};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

fn ready(world: &World) {
    println!("ready {}", world.rank());
    let _ = std::io::stdout().flush();
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1000));
    }
}

fn arg(n: usize) -> i64 {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(0)
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Sample {
    from: u32,
    seq: u64,
    name: String,
    values: Vec<f64>,
}

fn check(cond: bool, what: &str) -> Result<(), String> {
    if cond { Ok(()) } else { Err(format!("check failed: {what}")) }
}

/// Typed point-to-point: any-source, per-tag order, probe, try_recv, self-send.
fn p2p(world: &World) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let (rank, size) = (world.rank(), world.size());
    if rank != 0 {
        let s = Sample {
            from: rank as u32,
            seq: 0,
            name: format!("rank-{rank}"),
            values: vec![rank as f64; rank],
        };
        world.send(0, 1, &s).map_err(e)?;
        if rank == 1 {
            for seq in 0..100u64 {
                world.send(0, if seq % 2 == 0 { 5 } else { 6 }, &seq).map_err(e)?;
            }
        }
    } else {
        let mut seen = vec![false; size];
        for _ in 1..size {
            let (src, s): (usize, Sample) = world.recv_any(1).map_err(e)?;
            check(
                s.from as usize == src && s.values.len() == src && s.name == format!("rank-{src}"),
                "sample",
            )?;
            check(!seen[src], "each source once")?;
            seen[src] = true;
        }
        if size > 1 {
            // odd numbers on tag 6 first, then even ones on tag 5: each tag keeps its order
            for expect in (1..100u64).step_by(2) {
                check(world.recv::<u64>(1, 6).map_err(e)? == expect, "tag 6 order")?;
            }
            for expect in (0..100u64).step_by(2) {
                check(world.recv::<u64>(1, 5).map_err(e)? == expect, "tag 5 order")?;
            }
        }
        check(world.try_recv::<u64>(None, None).map_err(e)?.is_none(), "nothing left")?;
        world.send(0, 9, "to myself").map_err(e)?;
        let st = world.probe(None, Some(9)).map_err(e)?.ok_or("probe found nothing")?;
        check(st.source == 0 && st.tag == 9, "probe status")?;
        let (text, st2) =
            world.try_recv::<String>(Some(0), None).map_err(e)?.ok_or("try_recv found nothing")?;
        check(text == "to myself" && st2 == st, "try_recv")?;
    }
    world.barrier().map_err(e)?;
    println!("p2p ok {rank}");
    Ok(())
}

/// A receive from a rank that exited without sending fails with PeerLost.
fn peer_lost(world: &World) -> Result<(), String> {
    match world.rank() {
        1 => Ok(()),
        0 => match world.recv::<u64>(1, 0) {
            Err(Error::PeerLost { rank: 1, reason }) => {
                println!("peer lost ok: {reason}");
                Ok(())
            }
            other => Err(format!("expected PeerLost from rank 1, got {other:?}")),
        },
        _ => Ok(()),
    }
}

/// Sending one type and receiving another gives a decode error naming the type.
fn mismatch(world: &World) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    if world.rank() == 0 {
        world.send(1, 0, "not a number").map_err(e)?;
    } else if world.rank() == 1 {
        match world.recv::<u64>(0, 0) {
            Err(err @ Error::Decode { .. }) if err.to_string().contains("u64") => {
                println!("mismatch ok: {err}")
            }
            other => return Err(format!("expected a decode error, got {other:?}")),
        }
    }
    world.barrier().map_err(e)
}

/// A message over PRUN_MAX_MESSAGE is refused at the sender; smaller ones still pass.
fn too_large(world: &World) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    if world.rank() == 0 {
        match world.send(1, 0, &vec![7u8; 5000]) {
            Err(Error::MessageTooLarge { .. }) => {}
            other => return Err(format!("expected MessageTooLarge, got {other:?}")),
        }
        world.send(1, 0, &vec![7u8; 10]).map_err(e)?;
    } else if world.rank() == 1 {
        check(world.recv::<Vec<u8>>(0, 0).map_err(e)? == vec![7u8; 10], "small message")?;
        println!("too large ok");
    }
    world.barrier().map_err(e)
}

/// Strangers connect to rank 1's socket and send garbage; the job goes on undisturbed.
fn stranger(world: &World) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    if world.rank() == 0 {
        let dir = std::env::var("PRUN_SOCKET_DIR").map_err(|e| e.to_string())?;
        let path = std::path::Path::new(&dir).join("r1.sock");
        let attempts: [&[u8]; 4] = [
            b"",
            b"GET / HTTP/1.0\r\n\r\n",
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 127],
            b"PRUN\x01\x00\x10wrong-job-id-xxx\x00\x00\x00\x00aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ];
        for bytes in attempts {
            let mut s = std::os::unix::net::UnixStream::connect(&path).map_err(|e| e.to_string())?;
            let _ = s.write_all(bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            check(answer.is_empty(), "a stranger gets no answer")?;
        }
        // a full handshake with the right job id but a wrong secret, and one for another job
        use prun::auth::{self, AuthError, Credentials, Secret};
        let job = std::env::var("PRUN_JOB_ID").map_err(|e| e.to_string())?;
        let wrong = Secret::generate().map_err(|e| e.to_string())?;
        for (job_id, what) in [(job.clone(), "wrong secret"), ("another-job".to_string(), "other job")] {
            let mut s = std::os::unix::net::UnixStream::connect(&path).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
            let creds = Credentials { job_id, secret: wrong.clone() };
            match auth::client(&mut s, &creds, 0) {
                Err(AuthError::BadProof | AuthError::Io(_) | AuthError::Protocol(_)) => {}
                other => return Err(format!("{what}: the rank accepted a stranger: {other:?}")),
            }
        }
        world.send(1, 3, &42u32).map_err(e)?;
        check(world.recv::<u32>(1, 4).map_err(e)? == 43, "reply after strangers")?;
        println!("stranger ok");
    } else if world.rank() == 1 {
        let v: u32 = world.recv(0, 3).map_err(e)?;
        world.send(0, 4, &(v + 1)).map_err(e)?;
    }
    world.barrier().map_err(e)
}

/// Counts this process's sockets after a barrier: connections open lazily.
fn sockets(world: &World) -> Result<(), String> {
    world.barrier().map_err(|e| e.to_string())?;
    let n = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| e.to_string())?
        .filter_map(|d| d.ok())
        .filter(|d| std::fs::read_link(d.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
        .count();
    println!("sockets {} {n}", world.rank());
    world.barrier().map_err(|e| e.to_string())
}

/// Rank 0 knocks at the launcher's control socket as a program built against an older prun
/// would (protocol version 1), then the job goes on.
fn old_protocol(world: &World) -> Result<(), String> {
    if world.rank() == 0 {
        let control = std::env::var("PRUN_CONTROL").map_err(|e| e.to_string())?;
        let path = control.strip_prefix("unix:").ok_or("PRUN_CONTROL is not a Unix socket")?;
        let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| e.to_string())?;
        let _ = s.write_all(b"PRUN\x01\x00\x03job");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        println!("old protocol refused");
    }
    world.barrier().map_err(|e| e.to_string())
}

/// Every collective, typed and zero-copy, at every root, checked against what it must give.
fn collectives(world: &World, max_len: usize) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let (rank, size) = (world.rank(), world.size());
    let lens: Vec<usize> =
        [0, 1, 7, 1000, 10_000, 70_000, 300_000].into_iter().filter(|&l| l <= max_len).collect();
    for root in 0..size {
        // typed: contributions of different sizes per rank
        let v = world.broadcast(root, (rank == root).then(|| format!("from {root}"))).map_err(e)?;
        check(v == format!("from {root}"), "broadcast")?;
        let all: Vec<Vec<u32>> = (0..size as u32).map(|r| vec![r; r as usize]).collect();
        let mine: Vec<u32> = world.scatter(root, (rank == root).then_some(&all[..])).map_err(e)?;
        check(mine == all[rank], "scatter")?;
        let got = world.gather(root, &vec![rank as u8; rank]).map_err(e)?;
        check(got.is_some() == (rank == root), "gather root only")?;
        if let Some(got) = got {
            check(got.iter().enumerate().all(|(r, v)| *v == vec![r as u8; r]), "gather")?;
        }
        let text = world.reduce(root, rank.to_string(), |a, b| a + "," + &b).map_err(e)?;
        let want = (0..size).map(|r| r.to_string()).collect::<Vec<_>>().join(",");
        check(
            text.is_none() || (rank == root && text.as_deref() == Some(want.as_str())),
            "reduce in rank order",
        )?;
        for &len in &lens {
            let mut buf: Vec<u64> = if rank == root { (0..len as u64).collect() } else { vec![0; len] };
            world.broadcast_into(root, &mut buf).map_err(e)?;
            check(buf.iter().enumerate().all(|(i, &x)| x == i as u64), "broadcast_into")?;
            let mut sum = vec![0i64; len];
            let recv = (rank == root).then_some(&mut sum[..]);
            let send: Vec<i64> = (0..len as i64).map(|i| i + rank as i64).collect();
            world.reduce_into(root, &send, recv, prun::Op::Sum).map_err(e)?;
            let n = size as i64;
            if rank == root {
                check(
                    sum.iter().enumerate().all(|(i, &x)| x == n * i as i64 + n * (n - 1) / 2),
                    "reduce_into",
                )?;
            }
            // a root that passes no buffer gets an error, and nobody waits for it in vain
            let missing = world.reduce_into(root, &send, None, prun::Op::Sum);
            check(missing.is_err() == (rank == root), "reduce_into without the root's buffer")?;
            let chunk = len / size.max(1) + 1;
            let all: Vec<u32> = (0..(chunk * size) as u32).collect();
            let mut part = vec![0u32; chunk];
            world.scatter_into(root, (rank == root).then_some(&all[..]), &mut part).map_err(e)?;
            check(part[..] == all[rank * chunk..(rank + 1) * chunk], "scatter_into")?;
            let mut back = vec![0u32; chunk * size];
            world.gather_into(root, &part, (rank == root).then_some(&mut back[..])).map_err(e)?;
            check(rank != root || back == all, "gather_into")?;
        }
    }
    let ranks: Vec<usize> = world.allgather(&rank).map_err(e)?;
    check(ranks == (0..size).collect::<Vec<_>>(), "allgather")?;
    let longest =
        world.allreduce(vec![rank; rank], |a, b| if b.len() >= a.len() { b } else { a }).map_err(e)?;
    check(longest == vec![size - 1; size - 1], "allreduce")?;
    let order = world.allreduce(rank.to_string(), |a, b| a + &b).map_err(e)?;
    check(order == (0..size).map(|r| r.to_string()).collect::<String>(), "allreduce in rank order")?;
    let prefix = world.scan(rank as u64 + 1, |a, b| a + b).map_err(e)?;
    check(prefix == (rank as u64 + 1) * (rank as u64 + 2) / 2, "scan")?;
    let before = world.exscan(format!("{rank};"), |a, b| a + &b).map_err(e)?;
    let want: String = (0..rank).map(|r| format!("{r};")).collect();
    check(before == (rank > 0).then_some(want), "exscan")?;
    let out: Vec<(usize, usize)> = (0..size).map(|d| (rank, d)).collect();
    let got = world.alltoall(&out).map_err(e)?;
    check(got.iter().enumerate().all(|(s, &(from, to))| from == s && to == rank), "alltoall")?;
    for &len in &lens {
        let send: Vec<u16> = vec![rank as u16; len];
        let mut recv = vec![0u16; len * size];
        world.allgather_into(&send, &mut recv).map_err(e)?;
        check(
            recv.chunks(len.max(1)).enumerate().all(|(r, c)| len == 0 || c.iter().all(|&x| x == r as u16)),
            "allgather_into",
        )?;
        let send: Vec<u16> = (0..size).flat_map(|d| vec![(rank * size + d) as u16; len]).collect();
        let mut recv = vec![0u16; len * size];
        world.alltoall_into(&send, &mut recv).map_err(e)?;
        check(
            recv.chunks(len.max(1))
                .enumerate()
                .all(|(s, c)| len == 0 || c.iter().all(|&x| x == (s * size + rank) as u16)),
            "alltoall_into",
        )?;
        // varying blocks: rank s sends rank d (s + d) % 3 halves of len values of s * size + d
        let halves = |s: usize, d: usize| (s + d) % 3 * len / 2;
        let counts: Vec<usize> = (0..size).map(|d| halves(rank, d)).collect();
        let send: Vec<u16> = (0..size).flat_map(|d| vec![(rank * size + d) as u16; counts[d]]).collect();
        let from: Vec<usize> = (0..size).map(|s| halves(s, rank)).collect();
        let mut recv = vec![0u16; from.iter().sum()];
        world.alltoallv_into(&send, &counts, &mut recv, &from).map_err(e)?;
        let want: Vec<u16> = (0..size).flat_map(|s| vec![(s * size + rank) as u16; from[s]]).collect();
        check(recv == want, "alltoallv_into")?;
        // blocks of varying length: rank r's (r % 3) halves of len values of r, gathered at the
        // last rank, scattered back from it, and gathered by every rank
        let counts: Vec<usize> = (0..size).map(|r| r % 3 * len / 2).collect();
        let send = vec![rank as u16; counts[rank]];
        let want: Vec<u16> = (0..size).flat_map(|r| vec![r as u16; counts[r]]).collect();
        let (root, mut all) = (size - 1, vec![0u16; want.len()]);
        let recv = (rank == root).then_some((&mut all[..], &counts[..]));
        world.gatherv_into(root, &send, recv).map_err(e)?;
        check(rank != root || all == want, "gatherv_into")?;
        let mut back = vec![u16::MAX; counts[rank]];
        world.scatterv_into(root, (rank == root).then_some((&all[..], &counts[..])), &mut back).map_err(e)?;
        check(back == send, "scatterv_into")?;
        let mut all = vec![0u16; want.len()];
        world.allgatherv_into(&send, &mut all, &counts).map_err(e)?;
        check(all == want, "allgatherv_into")?;
        // a user's operation: element i's largest value (i * rank) % 7 and the lowest rank
        // holding it, as [value, rank] pairs
        let maxloc = |acc: &mut [u32; 2], x: &[u32; 2]| {
            if x[0] > acc[0] || (x[0] == acc[0] && x[1] < acc[1]) {
                *acc = *x;
            }
        };
        let value = |i: usize, r: usize| (i * r % 7) as u32;
        let mine: Vec<[u32; 2]> = (0..len).map(|i| [value(i, rank), rank as u32]).collect();
        let want: Vec<[u32; 2]> = (0..len)
            .map(|i| {
                let best = (0..size).map(|r| value(i, r)).max().unwrap_or(0);
                [best, (0..size).position(|r| value(i, r) == best).unwrap_or(0) as u32]
            })
            .collect();
        let mut best = vec![[0u32; 2]; len];
        world.allreduce_into_with(&mine, &mut best, maxloc).map_err(e)?;
        check(best == want, "allreduce_into_with")?;
        let mut best = vec![[0u32; 2]; if rank == root { len } else { 0 }];
        world.reduce_into_with(root, &mine, (rank == root).then_some(&mut best[..]), maxloc).map_err(e)?;
        check(rank != root || best == want, "reduce_into_with")?;
        // prefixes: element i of rank r is i + r; the running sums and the maxima before
        let mine: Vec<u64> = (0..len as u64).map(|i| i + rank as u64).collect();
        let mut upto = vec![0u64; len];
        world.scan_into(&mine, &mut upto, prun::Op::Sum).map_err(e)?;
        let r = rank as u64;
        check(upto.iter().enumerate().all(|(i, &x)| x == (r + 1) * i as u64 + r * (r + 1) / 2), "scan_into")?;
        let mut before = vec![7u64; len];
        world.exscan_into(&mine, &mut before, prun::Op::Max).map_err(e)?;
        let want = |i: usize| if rank == 0 { 7 } else { i as u64 + r - 1 };
        check(before.iter().enumerate().all(|(i, &x)| x == want(i)), "exscan_into")?;
        // a user's prefix that is not commutative: maps x -> a x + b as [a, b], composed in rank
        // order; element i of rank r is x -> (r + 2) x + i + r
        let then = |acc: &mut [u64; 2], x: &[u64; 2]| {
            *acc = [x[0].wrapping_mul(acc[0]), x[0].wrapping_mul(acc[1]).wrapping_add(x[1])];
        };
        let map = |r: usize, i: usize| [r as u64 + 2, (i + r) as u64];
        let composed = |ranks: usize, i: usize| {
            (1..ranks).fold(map(0, i), |mut acc, q| {
                then(&mut acc, &map(q, i));
                acc
            })
        };
        let mine: Vec<[u64; 2]> = (0..len).map(|i| map(rank, i)).collect();
        let mut upto = vec![[0u64; 2]; len];
        world.scan_into_with(&mine, &mut upto, then).map_err(e)?;
        check(upto.iter().enumerate().all(|(i, x)| *x == composed(rank + 1, i)), "scan_into_with")?;
        let mut before = vec![[7u64; 2]; len];
        world.exscan_into_with(&mine, &mut before, then).map_err(e)?;
        let want = |i: usize| if rank == 0 { [7, 7] } else { composed(rank, i) };
        check(before.iter().enumerate().all(|(i, x)| *x == want(i)), "exscan_into_with")?;
        let send: Vec<u32> = (0..size).flat_map(|d| (0..len).map(move |i| (i + d + rank) as u32)).collect();
        let mut part = vec![0u32; len];
        world.reduce_scatter_into(&send, &mut part, prun::Op::Sum).map_err(e)?;
        let want = |i: usize| (0..size).map(|r| (i + rank + r) as u32).sum::<u32>();
        check(part.iter().enumerate().all(|(i, &x)| x == want(i)), "reduce_scatter_into")?;
        // the same sums as [sum, count] pairs by a closure: element i of block d from rank r
        // is [i + d + r, 1]
        let send: Vec<[u32; 2]> =
            (0..size).flat_map(|d| (0..len).map(move |i| [(i + d + rank) as u32, 1])).collect();
        let mut pairs = vec![[0u32; 2]; len];
        let add = |a: &mut [u32; 2], b: &[u32; 2]| *a = [a[0].wrapping_add(b[0]), a[1] + b[1]];
        world.reduce_scatter_into_with(&send, &mut pairs, add).map_err(e)?;
        check(
            pairs.iter().enumerate().all(|(i, &x)| x == [want(i), size as u32]),
            "reduce_scatter_into_with",
        )?;
        let send: Vec<f64> = (0..len).map(|i| (i * (rank + 1)) as f64).collect();
        let mut max = vec![0.0; len];
        world.allreduce_into(&send, &mut max, prun::Op::Max).map_err(e)?;
        check(max.iter().enumerate().all(|(i, &x)| x == (i * size) as f64), "allreduce_into max")?;
    }
    // blocks of over 1 MiB (where ranks share cores, sent straight from every rank to every other)
    if let Some(&len) = lens.last().filter(|&&l| l >= 300_000) {
        let value = |r: usize, i: usize| (i as u32) ^ ((r as u32) << 24);
        let send: Vec<u32> = (0..len).map(|i| value(rank, i)).collect();
        let mut recv = vec![0u32; len * size];
        world.allgather_into(&send, &mut recv).map_err(e)?;
        let right = |(r, c): (usize, &[u32])| c.iter().enumerate().all(|(i, &x)| x == value(r, i));
        check(recv.chunks(len).enumerate().all(right), "allgather_into of 1 MiB blocks")?;
    }
    println!("collectives ok {rank}");
    Ok(())
}

/// Every collective at `len` bytes a rank (typed and zero-copy), on the world and on halves of
/// it, every root, checked: large messages through every algorithm's large-message path.
fn big(world: &World, len: usize) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let half = world.split(Some((world.rank() % 2) as u32), -(world.rank() as i64)).map_err(e)?;
    for comm in [Some(world), half.as_ref()].into_iter().flatten() {
        let (rank, size) = (comm.rank(), comm.size());
        let value = |r: usize, i: usize| ((i % 251) as u8) ^ (r as u8).wrapping_mul(37);
        let block = |r: usize| (0..len).map(|i| value(r, i)).collect::<Vec<u8>>();
        let mine = block(rank);
        for root in [0, size - 1, size / 2] {
            let got = comm.broadcast(root, (rank == root).then(|| block(root))).map_err(e)?;
            check(got == block(root), "broadcast")?;
            let all: Vec<Vec<u8>> = (0..size).map(block).collect();
            let got: Vec<u8> = comm.scatter(root, (rank == root).then_some(&all[..])).map_err(e)?;
            check(got == mine, "scatter")?;
            let got = comm.gather(root, &mine).map_err(e)?;
            check(got.is_some() == (rank == root) && got.is_none_or(|g| g == all), "gather")?;
            let xor = |a: Vec<u8>, b: Vec<u8>| a.iter().zip(&b).map(|(x, y)| x ^ y).collect::<Vec<u8>>();
            let want = all.iter().cloned().reduce(xor).unwrap_or_default();
            let got = comm.reduce(root, mine.clone(), xor).map_err(e)?;
            check(got.is_none_or(|g| g == want), "reduce")?;
            let mut buf = if rank == root { block(root) } else { vec![0; len] };
            comm.broadcast_into(root, &mut buf).map_err(e)?;
            check(buf == block(root), "broadcast_into")?;
            let flat: Vec<u8> = all.concat();
            let mut part = vec![0; len];
            comm.scatter_into(root, (rank == root).then_some(&flat[..]), &mut part).map_err(e)?;
            check(part == mine, "scatter_into")?;
            let mut back = vec![0; len * size];
            comm.gather_into(root, &mine, (rank == root).then_some(&mut back[..])).map_err(e)?;
            check(rank != root || back == flat, "gather_into")?;
            let mut red = vec![0; len];
            comm.reduce_into(root, &mine, (rank == root).then_some(&mut red[..]), prun::Op::BitXor)
                .map_err(e)?;
            check(rank != root || red == want, "reduce_into")?;
            if root == 0 {
                let got = comm.allgather(&mine).map_err(e)?;
                check(got == all, "allgather")?;
                let got = comm.allreduce(mine.clone(), xor).map_err(e)?;
                check(got == want, "allreduce")?;
                let mut back = vec![0; len * size];
                comm.allgather_into(&mine, &mut back).map_err(e)?;
                check(back == flat, "allgather_into")?;
                let mut red = vec![0; len];
                comm.allreduce_into(&mine, &mut red, prun::Op::BitXor).map_err(e)?;
                check(red == want, "allreduce_into")?;
                let got = comm.scan(mine.clone(), xor).map_err(e)?;
                check(got == all[..=rank].iter().cloned().reduce(xor).unwrap_or_default(), "scan")?;
                let piece = len / size;
                let out: Vec<Vec<u8>> = (0..size).map(|d| vec![(rank * 16 + d) as u8; piece]).collect();
                let got = comm.alltoall(&out).map_err(e)?;
                check(
                    got.iter().enumerate().all(|(s, v)| *v == vec![(s * 16 + rank) as u8; piece]),
                    "alltoall",
                )?;
                let mut back = vec![0; piece * size];
                comm.alltoall_into(&out.concat(), &mut back).map_err(e)?;
                check(back == got.concat(), "alltoall_into")?;
                // varying blocks: rank r sends rank d the first (r + d) % 3 thirds of its block d
                let third = |s: usize, d: usize| (s + d) % 3 * piece / 3;
                let counts: Vec<usize> = (0..size).map(|d| third(rank, d)).collect();
                let send: Vec<u8> = out.iter().zip(&counts).flat_map(|(b, &n)| b[..n].to_vec()).collect();
                let from: Vec<usize> = (0..size).map(|s| third(s, rank)).collect();
                let mut back = vec![0; from.iter().sum()];
                comm.alltoallv_into(&send, &counts, &mut back, &from).map_err(e)?;
                let want: Vec<u8> = got.iter().zip(&from).flat_map(|(b, &n)| b[..n].to_vec()).collect();
                check(back == want, "alltoallv_into")?;
                // blocks of varying length: rank r's first (r % 3) thirds of its own block
                let counts: Vec<usize> = (0..size).map(|r| r % 3 * piece / 3).collect();
                let mut every = vec![0; counts.iter().sum()];
                comm.allgatherv_into(&mine[..counts[rank]], &mut every, &counts).map_err(e)?;
                let want: Vec<u8> = all.iter().zip(&counts).flat_map(|(m, &n)| m[..n].to_vec()).collect();
                check(every == want, "allgatherv_into")?;
                let mut gathered = vec![0; if rank == 0 { want.len() } else { 0 }];
                let recv = (rank == 0).then_some((&mut gathered[..], &counts[..]));
                comm.gatherv_into(0, &mine[..counts[rank]], recv).map_err(e)?;
                check(rank != 0 || gathered == want, "gatherv_into")?;
                let mut back = vec![0; counts[rank]];
                comm.scatterv_into(
                    size - 1,
                    (rank == size - 1).then_some((&want[..], &counts[..])),
                    &mut back,
                )
                .map_err(e)?;
                check(back == mine[..counts[rank]], "scatterv_into")?;
                let mut share = vec![0; piece];
                comm.reduce_scatter_into(&mine[..piece * size], &mut share, prun::Op::BitXor).map_err(e)?;
                let want =
                    all.iter().map(|m| m[rank * piece..][..piece].to_vec()).reduce(xor).unwrap_or_default();
                check(share == want, "reduce_scatter_into")?;
            }
        }
        comm.barrier().map_err(e)?;
    }
    println!("big ok {}", world.rank());
    Ok(())
}

/// An allgather, an allreduce, or a scatter or a broadcast from rank 0, of `len`-byte blocks,
/// checked; prints `writes RANK BYTES CMA`: the bytes this process wrote to files and sockets
/// meanwhile (`wchar` of `/proc/self/io`), and whether it may read a process's memory by
/// cross-memory attach (its own; a seccomp profile may forbid it), the way the runtime lends
/// large messages between ranks of a host.
fn writes(world: &World, op: &str, len: usize) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let (rank, size) = (world.rank(), world.size());
    let written = || -> Result<u64, String> {
        let io = std::fs::read_to_string("/proc/self/io").map_err(|e| e.to_string())?;
        let line = io.lines().find_map(|l| l.strip_prefix("wchar:")).ok_or("no wchar in /proc/self/io")?;
        line.trim().parse().map_err(|_| format!("wchar {line}"))
    };
    let value = |r: usize, i: usize| (i % 251) as u8 ^ r as u8;
    let right = |(r, c): (usize, &[u8])| c.iter().enumerate().all(|(i, &x)| x == value(r, i));
    world.barrier().map_err(e)?;
    let before = written()?;
    if op == "scatter" {
        let all: Vec<u8> = (0..size).flat_map(|r| (0..len).map(move |i| value(r, i))).collect();
        let mut mine = vec![0u8; len];
        world.scatter_into(0, (rank == 0).then_some(&all[..]), &mut mine).map_err(e)?;
        check(right((rank, &mine)), "scatter_into")?;
    } else if op == "allreduce" {
        let send: Vec<u8> = (0..len).map(|i| value(rank, i)).collect();
        let mut recv = vec![0u8; len];
        world.allreduce_into(&send, &mut recv, prun::Op::BitXor).map_err(e)?;
        let want = |i: usize| (0..size).fold(0, |acc, r| acc ^ value(r, i));
        check(recv.iter().enumerate().all(|(i, &x)| x == want(i)), "allreduce_into")?;
    } else if op == "bcast" {
        let mut buf: Vec<u8> = (0..len).map(|i| if rank == 0 { value(0, i) } else { 0 }).collect();
        world.broadcast_into(0, &mut buf).map_err(e)?;
        check(right((0, &buf)), "broadcast_into")?;
    } else {
        let send: Vec<u8> = (0..len).map(|i| value(rank, i)).collect();
        let mut recv = vec![0u8; len * size];
        world.allgather_into(&send, &mut recv).map_err(e)?;
        check(recv.chunks(len.max(1)).enumerate().all(right), "allgather_into")?;
    }
    let after = written()?;
    let (mut into, from) = ([0u8], [7u8]);
    let remote = [nix::sys::uio::RemoteIoVec { base: from.as_ptr() as usize, len: 1 }];
    let mut local = [std::io::IoSliceMut::new(&mut into)];
    let cma = nix::sys::uio::process_vm_readv(nix::unistd::Pid::this(), &mut local, &remote) == Ok(1);
    println!("writes {rank} {} {cma}", after - before);
    world.barrier().map_err(e)
}

/// Sub-communicators: even and odd ranks, collectives and messages kept apart.
fn split(world: &World) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let (rank, size) = (world.rank(), world.size());
    let color = (rank % 2) as u32;
    // key reverses the order inside each half
    let half = world.split(Some(color), -(rank as i64)).map_err(e)?.ok_or("no communicator")?;
    let members: Vec<usize> = (0..size).filter(|r| r % 2 == rank % 2).rev().collect();
    check(half.size() == members.len(), "split size")?;
    check(members[half.rank()] == rank, "split rank ordered by key")?;
    // the same tag on both communicators: messages never cross
    world.send(rank, 7, "world").map_err(e)?;
    half.send(half.rank(), 7, "half").map_err(e)?;
    check(half.recv::<String>(half.rank(), 7).map_err(e)? == "half", "sub-communicator message")?;
    check(world.recv::<String>(rank, 7).map_err(e)? == "world", "world message")?;
    let sum = half.allreduce(rank, |a, b| a + b).map_err(e)?;
    check(sum == members.iter().sum::<usize>(), "allreduce on the half")?;
    let ranks = half.allgather(&rank).map_err(e)?;
    check(ranks == members, "allgather on the half")?;
    let none = world.split(None, 0).map_err(e)?;
    check(none.is_none(), "no color, no communicator")?;
    world.barrier().map_err(e)?;
    println!("split ok {rank}");
    Ok(())
}

/// The `v` collectives around MPI's largest counts, run with `PRUN_MPI_COUNT_MAX=64` on the
/// MPI backend: blocks within 64 bytes go to MPI, longer ones to prun's algorithms over MPI's
/// point-to-point, every rank agreeing even where only one rank's blocks are long (an
/// all-to-all where the others' are short). With `gatherv`, ends with a gather of 100-byte
/// blocks, which MPI cannot take: every rank is refused, saying why, and exits with status 3.
fn mpi_counts(world: &World, gatherv: bool) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let (rank, size) = (world.rank(), world.size());
    // allgatherv: rank r's block 10 r values (20 r bytes), all of them 10 size (size - 1)
    // bytes: MPI's for 2 and 3 ranks, prun's from 4
    let counts: Vec<usize> = (0..size).map(|r| 10 * r).collect();
    let mine = vec![rank as u16; counts[rank]];
    let mut all = vec![0u16; counts.iter().sum()];
    world.allgatherv_into(&mine, &mut all, &counts).map_err(e)?;
    let want: Vec<u16> = (0..size).flat_map(|r| vec![r as u16; counts[r]]).collect();
    check(all == want, "allgatherv_into")?;
    // alltoallv: rank 1 sends the last rank 40 values (160 bytes), every other block is 2
    // values (8 bytes): rank 0's counts are MPI's, and it must learn that the others' are not;
    // then every block short. s * size + d in each block from s to d
    for long in [Some((1, size - 1)), None] {
        let values = |s: usize, d: usize| if long == Some((s, d)) { 40 } else { 2 };
        let send_counts: Vec<usize> = (0..size).map(|d| values(rank, d)).collect();
        let send: Vec<u32> =
            (0..size).flat_map(|d| vec![(rank * size + d) as u32; values(rank, d)]).collect();
        let recv_counts: Vec<usize> = (0..size).map(|s| values(s, rank)).collect();
        let mut recv = vec![0u32; recv_counts.iter().sum()];
        world.alltoallv_into(&send, &send_counts, &mut recv, &recv_counts).map_err(e)?;
        let want: Vec<u32> =
            (0..size).flat_map(|s| vec![(s * size + rank) as u32; values(s, rank)]).collect();
        check(recv == want, "alltoallv_into")?;
    }
    // gatherv and scatterv within the limit
    let eight = [rank as u8; 8];
    let mut at_root = vec![0u8; if rank == 0 { 8 * size } else { 0 }];
    let lens = vec![8; size];
    world.gatherv_into(0, &eight, (rank == 0).then_some((&mut at_root[..], &lens[..]))).map_err(e)?;
    check(rank != 0 || at_root.chunks(8).enumerate().all(|(r, b)| b == [r as u8; 8]), "gatherv_into")?;
    if gatherv {
        let wide = [rank as u8; 100];
        let mut at_root = vec![0u8; if rank == 0 { 100 * size } else { 0 }];
        let lens = vec![100; size];
        match world.gatherv_into(0, &wide, (rank == 0).then_some((&mut at_root[..], &lens[..]))) {
            Err(Error::InvalidArgument(why)) => {
                eprintln!("rank {rank}: refused: {why}");
                std::process::exit(3);
            }
            other => return Err(format!("a gatherv beyond the counts gave {other:?}")),
        }
    }
    println!("mpi-counts ok {rank}");
    Ok(())
}

/// Plain-old-data messages and collectives on every path a backend may take: small and large
/// tags, to another rank and to oneself, a length mismatch, 128-bit integers (which MPI has no
/// datatype for), and a split communicator's collectives; prints the backend.
fn pod(world: &World) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let (rank, size) = (world.rank(), world.size());
    let (next, prev) = ((rank + 1) % size, (rank + size - 1) % size);
    for tag in [3u32, 40_000] {
        for len in [0usize, 5, 300_000] {
            let mine: Vec<u32> = (0..len as u32).map(|i| i ^ rank as u32).collect();
            world.send_slice(next, tag, &mine).map_err(e)?;
            world.send_slice(rank, tag + 1, &mine).map_err(e)?;
            let mut got = vec![0u32; len];
            let st = world.recv_into(prev, tag, &mut got).map_err(e)?;
            check(st.source == prev && st.len == 4 * len, "recv_into status")?;
            check(got.iter().enumerate().all(|(i, &x)| x == i as u32 ^ prev as u32), "recv_into from prev")?;
            world.recv_into(rank, tag + 1, &mut got).map_err(e)?;
            check(got == mine, "recv_into from oneself")?;
        }
    }
    // many large messages in a row (100 KB, and every fifth 3.2 MB: longer than a lending
    // pipe), some taken by the receiver while it sleeps and some in place: they arrive in order
    let words = |seq: u64| if seq % 5 == 4 { 400_000 } else { 12_500 };
    for seq in 0..20u64 {
        world.send_slice(next, 12, &vec![seq ^ rank as u64; words(seq)]).map_err(e)?;
        if seq == 10 {
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    for seq in 0..20u64 {
        let mut big = vec![0u64; words(seq)];
        world.recv_into(prev, 12, &mut big).map_err(e)?;
        check(big.iter().all(|&x| x == seq ^ prev as u64), "large messages in order")?;
    }
    // a message longer than the buffer is reported and consumed
    world.send_slice(next, 9, &[1u8, 2, 3]).map_err(e)?;
    let mut two = [0u8; 2];
    check(matches!(world.recv_into(prev, 9, &mut two), Err(Error::Malformed(_))), "length mismatch")?;
    world.send_slice(next, 9, &[4u8, 5]).map_err(e)?;
    world.recv_into(prev, 9, &mut two).map_err(e)?;
    check(two == [4, 5], "the next message after a mismatch")?;
    // and a large message shorter than the buffer, whether it arrives before or after the receive
    world.barrier().map_err(e)?;
    if rank % 2 == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    world.send_slice(next, 10, &vec![7u8; 5000]).map_err(e)?;
    let mut roomy = vec![0u8; 8000];
    check(matches!(world.recv_into(prev, 10, &mut roomy), Err(Error::Malformed(_))), "short large message")?;
    world.send_slice(next, 10, &vec![7u8; 3 << 20]).map_err(e)?;
    let mut roomy = vec![0u8; 4 << 20];
    check(matches!(world.recv_into(prev, 10, &mut roomy), Err(Error::Malformed(_))), "short longer message")?;
    // 128-bit integers and the ordinary ones
    let mut wide = [0i128; 2];
    world.allreduce_into(&[i128::from(rank as u32) << 70, -1], &mut wide, prun::Op::Sum).map_err(e)?;
    let ranks: i128 = (0..size as i128).sum();
    check(wide == [ranks << 70, -(size as i128)], "allreduce_into of i128")?;
    let mut low = [0u16; 3];
    world.allreduce_into(&[rank as u16, 1, 0xff], &mut low, prun::Op::BitOr).map_err(e)?;
    check(low[1] == 1 && low[2] == 0xff, "allreduce_into of u16 with BitOr")?;
    let mut most = [0usize; 1];
    let recv = (rank == size - 1).then_some(&mut most[..]);
    world.reduce_into(size - 1, &[rank], recv, prun::Op::Max).map_err(e)?;
    check(rank != size - 1 || most[0] == size - 1, "reduce_into at the last rank")?;
    // all-to-all: block d, two elements, to rank d; a send not of one block per rank refused
    let send: Vec<u32> = (0..size as u32).flat_map(|d| [rank as u32, d]).collect();
    let mut recv = vec![0u32; send.len()];
    world.alltoall_into(&send, &mut recv).map_err(e)?;
    check(recv.chunks(2).enumerate().all(|(s, b)| b == [s as u32, rank as u32]), "alltoall_into")?;
    let uneven = world.alltoall_into(&send[1..], &mut recv[1..]);
    check(size == 1 || matches!(uneven, Err(Error::InvalidArgument(_))), "alltoall_into of uneven blocks")?;
    // all-to-all of varying blocks: rank r sends rank d r + d copies of r * 100 + d
    let counts: Vec<usize> = (0..size).map(|d| rank + d).collect();
    let send: Vec<u32> = (0..size).flat_map(|d| vec![(rank * 100 + d) as u32; rank + d]).collect();
    let from: Vec<usize> = (0..size).map(|s| s + rank).collect();
    let mut recv = vec![0u32; from.iter().sum()];
    world.alltoallv_into(&send, &counts, &mut recv, &from).map_err(e)?;
    let mut at = 0;
    for (s, &n) in from.iter().enumerate() {
        check(recv[at..at + n].iter().all(|&x| x == (s * 100 + rank) as u32), "alltoallv_into")?;
        at += n;
    }
    let short = world.alltoallv_into(&send, &counts[1..], &mut recv, &from);
    check(matches!(short, Err(Error::InvalidArgument(_))), "alltoallv_into with too few counts")?;
    // gather, scatter and allgather of varying blocks: rank r's r + 1 copies of r * 10 (u64,
    // and i128, which MPI has no datatype for, as bytes)
    let counts: Vec<usize> = (1..=size).collect();
    let mine = vec![(rank * 10) as u64; rank + 1];
    let want: Vec<u64> = (0..size).flat_map(|r| vec![(r * 10) as u64; r + 1]).collect();
    let mut all = vec![0u64; want.len()];
    world.allgatherv_into(&mine, &mut all, &counts).map_err(e)?;
    check(all == want, "allgatherv_into")?;
    let mut wide = vec![0i128; want.len()];
    let recv = (rank == 0).then_some((&mut wide[..], &counts[..]));
    let mine128: Vec<i128> = mine.iter().map(|&x| -i128::from(x) << 64).collect();
    world.gatherv_into(0, &mine128, recv).map_err(e)?;
    check(rank != 0 || wide.iter().zip(&want).all(|(&w, &x)| w == -i128::from(x) << 64), "gatherv_into")?;
    let mut back = vec![0i128; rank + 1];
    world.scatterv_into(0, (rank == 0).then_some((&wide[..], &counts[..])), &mut back).map_err(e)?;
    check(back == mine128, "scatterv_into")?;
    let wrong = world.allgatherv_into(&mine, &mut all, &counts[..size - 1]);
    check(matches!(wrong, Err(Error::InvalidArgument(_))), "allgatherv_into with too few counts")?;
    // prefixes of i128s (no MPI datatype: the built-in algorithms over MPI's point-to-point)
    // and of f32s (MPI_Scan, MPI_Exscan)
    let mut upto = [0i128; 2];
    world.scan_into(&[-(rank as i128) << 80, 1], &mut upto, prun::Op::Sum).map_err(e)?;
    let r = rank as i128;
    check(upto == [-(r * (r + 1) / 2) << 80, r + 1], "scan_into of i128")?;
    let mut before = [-1.0f32; 3];
    world.exscan_into(&[rank as f32; 3], &mut before, prun::Op::Sum).map_err(e)?;
    let sum_before = if rank == 0 { -1.0 } else { (rank * (rank - 1) / 2) as f32 };
    check(before == [sum_before; 3], "exscan_into of f32")?;
    // a user's operation that is not commutative (MPI's point-to-point): the last rank's
    // contribution before this one, or rank 0's own
    let mut last = [u16::MAX; 2];
    world.exscan_into_with(&[rank as u16; 2], &mut last, |acc, x| *acc = *x).map_err(e)?;
    check(last == [if rank == 0 { u16::MAX } else { rank as u16 - 1 }; 2], "exscan_into_with")?;
    let mut first = [0u16; 2];
    world.scan_into_with(&[rank as u16 + 1; 2], &mut first, |_, _| {}).map_err(e)?;
    check(first == [1; 2], "scan_into_with keeping rank 0's")?;
    let wrong = world.scan_into(&[1.0f64], &mut [0.0; 2], prun::Op::Sum);
    check(matches!(wrong, Err(Error::InvalidArgument(_))), "scan_into into a longer recv")?;
    // empty byte buffers (on MPI, empty slices of bytes point at Open MPI's MPI_IN_PLACE)
    let (none, mut nothing): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    world.broadcast_into(0, &mut nothing).map_err(e)?;
    world.allgather_into(&none, &mut nothing).map_err(e)?;
    world.alltoall_into(&none, &mut nothing).map_err(e)?;
    world.gather_into(0, &none, (rank == 0).then_some(&mut nothing[..])).map_err(e)?;
    world.scatter_into(0, (rank == 0).then_some(&none[..]), &mut nothing).map_err(e)?;
    world.allreduce_into(&none, &mut nothing, prun::Op::Max).map_err(e)?;
    world.reduce_scatter_into(&none, &mut nothing, prun::Op::Sum).map_err(e)?;
    world.allgatherv_into(&none, &mut nothing, &vec![0; size]).map_err(e)?;
    // the root's own mistakes, tried only where it is alone (elsewhere the others would send)
    if size == 1 {
        let mut short = vec![0u64; want.len() - 1];
        let wrong = world.gatherv_into(0, &mine, Some((&mut short[..], &counts[..])));
        check(matches!(wrong, Err(Error::InvalidArgument(_))), "gatherv_into into a short buffer")?;
        let wrong = world.scatterv_into(0, Some((&want[1..], &counts[..])), &mut all[..1]);
        check(matches!(wrong, Err(Error::InvalidArgument(_))), "scatterv_into of a short buffer")?;
    }
    let wrong = world.gatherv_into(size, &mine, None);
    check(matches!(wrong, Err(Error::InvalidRank { .. })), "gatherv_into at a root out of range")?;
    // reduce-scatter: rank r's block d holds r + d in each of its two elements (and i128s,
    // which MPI has no datatype for); rank d gets the sum over r
    let send: Vec<i64> = (0..size as i64).flat_map(|d| [rank as i64 + d; 2]).collect();
    let mut mine = [0i64; 2];
    world.reduce_scatter_into(&send, &mut mine, prun::Op::Sum).map_err(e)?;
    let n = size as i64;
    check(mine == [n * (n - 1) / 2 + n * rank as i64; 2], "reduce_scatter_into")?;
    let send: Vec<i128> = (0..size as i128).map(|d| (rank as i128) << 64 | d).collect();
    let mut most = [0i128];
    world.reduce_scatter_into(&send, &mut most, prun::Op::Max).map_err(e)?;
    check(most[0] == ((size as i128 - 1) << 64 | rank as i128), "reduce_scatter_into of i128")?;
    let wrong = world.reduce_scatter_into(&[1.0f64; 3], &mut [0.0f64; 2], prun::Op::Sum);
    check(matches!(wrong, Err(Error::InvalidArgument(_))), "reduce_scatter_into of the wrong length")?;
    // a split communicator's own collectives
    let half = world.split(Some((rank % 2) as u32), rank as i64).map_err(e)?.ok_or("no communicator")?;
    let members: Vec<u64> = (0..size as u64).filter(|r| r % 2 == rank as u64 % 2).collect();
    let mut all = vec![0u64; half.size()];
    half.allgather_into(&[rank as u64], &mut all).map_err(e)?;
    check(all == members, "allgather_into on the half")?;
    let mut first = [if half.rank() == 0 { rank as u64 } else { 0 }];
    half.broadcast_into(0, &mut first).map_err(e)?;
    check(first[0] == members[0], "broadcast_into on the half")?;
    if half.size() > 1 {
        let peer = 1 - half.rank().min(1);
        if half.rank() < 2 {
            half.send_slice(peer, 11, &[rank as u64]).map_err(e)?;
            let mut got = [0u64];
            half.recv_into(peer, 11, &mut got).map_err(e)?;
            check(got[0] == members[peer], "send_slice on the half")?;
        }
    }
    half.barrier().map_err(e)?;
    world.barrier().map_err(e)?;
    println!("pod ok {rank} backend {:?}", world.backend());
    Ok(())
}

/// Seconds of processor time this process (every thread) has used, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // utime and stime, fields 14 and 15, in ticks of 1/100 s
    let ticks: u64 =
        [14, 15].iter().filter_map(|&n| prun_tests::stat_field(&stat, n)?.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

/// Two ranks exchange 256 KiB blocks (an allgather: each lends its block to the other, through
/// its pipe where ranks share cores or memory may not be read, and receives meanwhile) when
/// neither can open the other's pipe: each has its pipe from a 2 MiB message sent before (read
/// out of memory, so the pipe was never opened), then no file descriptor can be made (the
/// limit lowered to 3). Both refuse, and each must still get the other's block, written on the
/// connection. Prints `refused exchange ok`.
fn refused_exchange(world: &World) -> Result<(), String> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let e = |e: Error| e.to_string();
    let (rank, peer) = (world.rank(), 1 - world.rank());
    let big: Vec<u8> = (0..2usize << 20).map(|i| (i % 253) as u8).collect();
    let mut got = vec![0u8; big.len()];
    for sender in [0, 1] {
        if rank == sender {
            world.send_slice(peer, 1, &big).map_err(e)?;
        } else {
            world.recv_into(peer, 1, &mut got).map_err(e)?;
        }
    }
    if got != big {
        return Err("the 2 MiB message arrived wrong".into());
    }
    world.barrier().map_err(e)?;
    let block: Vec<u8> = (0..256usize << 10).map(|i| (i % 251) as u8 ^ rank as u8).collect();
    let mut all = vec![0u8; 2 * block.len()];
    let before = getrlimit(Resource::Nofile);
    // a limit of 3, which the standard streams (0-2, open in every rank prun starts) fill: the
    // descriptors open stay usable, and none can be made, not even in the place of one closed
    // meanwhile (a rank whose message was refused drops its pipe); `poll` takes up to 3
    setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(3), ..before })
        .map_err(|e| e.to_string())?;
    // both limits lowered before either lends: a peer still able to open the pipe would read it
    let gathered = world.barrier().and_then(|()| world.allgather_into(&block, &mut all));
    setrlimit(Resource::Nofile, before).map_err(|e| e.to_string())?;
    gathered.map_err(e)?;
    let check = |all: &[u8]| {
        for (r, got) in all.chunks(block.len()).enumerate() {
            if got.iter().enumerate().any(|(i, &b)| b != (i % 251) as u8 ^ r as u8) {
                return Err(format!("rank {r}'s block arrived wrong"));
            }
        }
        Ok(())
    };
    check(&all)?;
    // the pipes are not tried again, and later large messages still arrive
    all.fill(0);
    world.allgather_into(&block, &mut all).map_err(e)?;
    check(&all)?;
    world.barrier().map_err(e)?;
    println!("refused exchange ok");
    Ok(())
}

/// Rank 0 sends rank 1 a 2 MiB message, which rank 1 reads out of rank 0's memory; then the
/// permission to read it is taken away (rank 0 makes itself undumpable, and rank 1, if root,
/// becomes `nobody`, losing the capability that overrides that) and rank 0 sends another. Rank
/// 1's receive (posted half a second late with the argument `late`, so that the progress
/// thread reads the message) must fail with an error saying why (its text is printed as
/// `revoked: ...`, as is rank 0's failed send's), not wait for ever, and the job must end
/// (rank 0 fails once rank 1 has printed: exit status 4).
fn revoked_memory(world: &World) -> Result<(), String> {
    use nix::unistd::{Uid, geteuid, setresuid};
    let e = |e: Error| e.to_string();
    // made by rank 1 once it has printed its error, for rank 0 to end the job only then
    let job = std::env::var("PRUN_JOB_ID").unwrap_or_default();
    let said = std::env::temp_dir().join(format!("prun-testjob-revoked-{job}"));
    let big: Vec<u8> = (0..2usize << 20).map(|i| (i % 253) as u8).collect();
    let mut got = vec![0u8; big.len()];
    if world.rank() == 0 {
        world.send_slice(1, 1, &big).map_err(e)?;
    } else {
        world.recv_into(0, 1, &mut got).map_err(e)?;
        if got != big {
            return Err("the first 2 MiB message arrived wrong".into());
        }
    }
    // connections both ways before: `nobody` may not connect to the ranks' sockets
    world.barrier().map_err(e)?;
    if world.rank() == 0 {
        nix::sys::prctl::set_dumpable(false).map_err(|e| e.to_string())?;
    } else if geteuid().is_root() {
        // every thread's user (glibc's setresuid), and with it every capability
        let nobody = Uid::from_raw(65534);
        setresuid(nobody, nobody, nobody).map_err(|e| e.to_string())?;
    }
    world.barrier().map_err(e)?;
    if world.rank() == 0 {
        let err = match world.send_slice(1, 2, &big) {
            Ok(()) => return Err("a message sent with the permission taken away".into()),
            Err(err) => err,
        };
        println!("revoked: {err}");
        // the job ends when a rank fails: this one waits (up to 30 s) until rank 1 has said
        // what it got, then fails
        let start = std::time::Instant::now();
        while !said.exists() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&said);
        return Err(err.to_string());
    }
    if std::env::args().nth(2).as_deref() == Some("late") {
        // the receive comes after the message: the progress thread reads it, and fails
        std::thread::sleep(Duration::from_millis(500));
    }
    match world.recv_into(0, 2, &mut got) {
        Ok(_) => Err("a message read with the permission taken away".into()),
        Err(err) => {
            println!("revoked: {err}");
            // rank 0 ends the job once this rank has said it (`nobody` may write in /tmp)
            std::fs::write(&said, b"").map_err(|e| format!("{}: {e}", said.display()))?;
            sleep_forever()
        }
    }
}

/// Rank 0 waits 1.5 s each for a typed message, a small slice and a large one from rank 1, and
/// prints the processor time it used in each wait: a rank that waits must not spin. With the
/// argument `nofile`, rank 0 may open no more descriptors meanwhile.
fn idle_wait(world: &World) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let pause = Duration::from_millis(1500);
    // with `nofile`, rank 0 waits with its limit of descriptors lowered to 0 (the connections
    // made first, by a barrier): `poll` fails (more descriptors than the limit), and the waits
    // must neither spin nor miss the messages
    let nofile = std::env::args().nth(2).as_deref() == Some("nofile");
    if nofile {
        world.barrier().map_err(e)?;
    }
    match world.rank() {
        0 => {
            use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
            let before = getrlimit(Resource::Nofile);
            if nofile {
                setrlimit(Resource::Nofile, Rlimit { current: Some(0), ..before })
                    .map_err(|e| e.to_string())?;
            }
            let mut used = Vec::new();
            let start = cpu_seconds();
            let _: u8 = world.recv(1, 1).map_err(e)?;
            used.push(cpu_seconds() - start);
            let start = cpu_seconds();
            world.recv_into(1, 2, &mut [0u8; 8]).map_err(e)?;
            used.push(cpu_seconds() - start);
            let start = cpu_seconds();
            world.recv_into(1, 3, &mut vec![0u8; 1 << 16]).map_err(e)?;
            used.push(cpu_seconds() - start);
            setrlimit(Resource::Nofile, before).map_err(|e| e.to_string())?;
            let text: Vec<String> = used.iter().map(|s| format!("{s:.2}")).collect();
            println!("idle-wait cpu {} s over {} s each", text.join(" "), pause.as_secs_f64());
        }
        1 => {
            std::thread::sleep(pause);
            world.send(0, 1, &1u8).map_err(e)?;
            std::thread::sleep(pause);
            world.send_slice(0, 2, &[1u8; 8]).map_err(e)?;
            std::thread::sleep(pause);
            world.send_slice(0, 3, &vec![1u8; 1 << 16]).map_err(e)?;
        }
        _ => {}
    }
    world.barrier().map_err(e)
}

/// Dynamic and static maps give what a sequential map gives, for many sizes and cost patterns.
fn maps(world: &World) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let (rank, size) = (world.rank(), world.size());
    let spin = |us: u64| {
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_micros(us) {
            std::hint::spin_loop();
        }
    };
    for n in [0usize, 1, size.saturating_sub(1), 7, 1000, 200_000] {
        // cost pattern: the first tenth of the items is heavy
        let f = |i: usize| {
            if i < n / 10 && n <= 1000 {
                spin(200);
            }
            (i as u64).wrapping_mul(2_654_435_761)
        };
        let want: Vec<u64> = (0..n).map(|i| (i as u64).wrapping_mul(2_654_435_761)).collect();
        let got = world.map_range(0, n, f).map_err(e)?;
        check(got.is_some() == (rank == 0), "map_range: results at the root only")?;
        if let Some(got) = got {
            check(got == want, &format!("map_range over {n} items"))?;
        }
        let got = world.map_range_static(0, n, f).map_err(e)?;
        if let Some(got) = got {
            check(got == want, &format!("map_range_static over {n} items"))?;
        }
        let all = world.map_range_all(n, f).map_err(e)?;
        check(all == want, "map_range_all")?;
        // items at the root, uneven sizes: strings of the index
        let root = n % size;
        let items: Option<Vec<String>> = (rank == root).then(|| (0..n).map(|i| "x".repeat(i % 17)).collect());
        let got = world.map(root, items, |s: String| s.len() as u32).map_err(e)?;
        if let Some(got) = got {
            check(got == (0..n).map(|i| (i % 17) as u32).collect::<Vec<_>>(), "map over items")?;
        }
        // every item runs exactly once: each returns the rank that ran it; counts add up to n
        let who = world.map_range(0, n, |_| rank as u32).map_err(e)?;
        if let Some(who) = who {
            check(who.len() == n && who.iter().all(|&r| (r as usize) < size), "each item once")?;
        }
    }
    // items of 0.5 and 0.9 ms, long enough that ranks starting their last one ask ahead for more
    // (`AHEAD_MIN` in runtime/src/map/mod.rs), uneven and with their data at the root: every item
    // once, results in order
    let n = 12 * size + 5;
    let items: Option<Vec<(u64, u64)>> = (rank == 0).then(|| (0..n as u64).map(|i| (i, i % 3)).collect());
    let ran = world
        .map(0, items, |(i, heavy): (u64, u64)| {
            spin(if heavy == 0 { 900 } else { 500 });
            (i, rank as u32)
        })
        .map_err(e)?;
    if let Some(ran) = ran {
        check(
            ran.len() == n && ran.iter().enumerate().all(|(k, &(i, _))| i == k as u64),
            "costly items in order",
        )?;
    }
    // millions of cheap items: results equal a sequential map
    let n = 3_000_000;
    if let Some(got) = world.map_range(0, n, |i| (i as u64) * 3 + 1).map_err(e)? {
        check(got.len() == n && got.iter().enumerate().all(|(i, &v)| v == i as u64 * 3 + 1), "3 M items")?;
    }
    // an error in one item ends the map on every rank, naming the item
    let failed =
        world.try_map_range(0, 5000, |i| if i == 4321 { Err(format!("bad item {i}")) } else { Ok(i) });
    match failed {
        Err(Error::MapFailed { index: 4321, message, .. }) if message.contains("bad item") => {}
        other => return Err(format!("expected MapFailed for item 4321, got {other:?}")),
    }
    let panicked = world.map_range(0, 300, |i| if i == 77 { panic!("item 77 panics") } else { i });
    match panicked {
        Err(Error::MapFailed { index: 77, message, .. }) if message.contains("77") => {}
        other => return Err(format!("expected MapFailed for item 77, got {other:?}")),
    }
    world.barrier().map_err(e)?;
    println!("maps ok {rank}");
    Ok(())
}

/// Threads of every rank exchange messages at once: thread `t` sends every other rank, on tag
/// `t`, messages of sizes on both sides of the hand-over threshold (typed, and plain slices
/// received in place), and receives each source's in order, while one more thread takes tag
/// 100 from any source. Several threads of a rank wait on one connection at a time, so one of
/// them reads the others' messages; every message must arrive whole, in order, once.
fn traffic(world: &World, rounds: usize) -> Result<(), String> {
    const THREADS: u32 = 3;
    let (rank, size) = (world.rank(), world.size());
    let others: Vec<usize> = (0..size).filter(|&r| r != rank).collect();
    let len = |round: usize, t: u32| [8, 20_000, 300_000, 1000][(round + t as usize) % 4];
    let fill = |src: usize, round: usize, t: u32| (src * 1_000_003 + round * 101 + t as usize) as u32;
    let result: Result<(), String> = std::thread::scope(|scope| {
        let mut threads = Vec::new();
        for t in 0..THREADS {
            let others = &others;
            threads.push(scope.spawn(move || -> Result<(), String> {
                let e = |e: Error| format!("thread {t}: {e}");
                for round in 0..rounds {
                    let data = vec![fill(rank, round, t); len(round, t) / 4];
                    for &dest in others {
                        if round % 2 == 0 {
                            world.send_slice(dest, t, &data).map_err(e)?;
                        } else {
                            world.send(dest, t, &data).map_err(e)?;
                        }
                    }
                    world.send((rank + 1) % size, 100, &(rank, round)).map_err(e)?;
                    for &src in others {
                        let want = vec![fill(src, round, t); len(round, t) / 4];
                        let got = if round % 2 == 0 {
                            let mut buf = vec![0u32; want.len()];
                            world.recv_into(src, t, &mut buf).map_err(e)?;
                            buf
                        } else {
                            world.recv::<Vec<u32>>(src, t).map_err(e)?
                        };
                        if got != want {
                            return Err(format!("thread {t} round {round}: wrong message from rank {src}"));
                        }
                    }
                }
                Ok(())
            }));
        }
        let any = scope.spawn(move || -> Result<(), String> {
            let from = (rank + size - 1) % size;
            let mut next = vec![0usize; THREADS as usize];
            for _ in 0..rounds * THREADS as usize {
                let (src, (sender, round)) =
                    world.recv_any::<(usize, usize)>(100).map_err(|e| e.to_string())?;
                if src != from || sender != from || !next.contains(&round) {
                    return Err(format!("tag 100: ({sender}, {round}) from rank {src}"));
                }
                // each sending thread's rounds arrive in order
                let slot = next.iter().position(|&n| n == round).unwrap_or(0);
                next[slot] += 1;
            }
            Ok(())
        });
        for thread in threads {
            thread.join().map_err(|_| "a thread panicked".to_string())??;
        }
        any.join().map_err(|_| "the any-source thread panicked".to_string())?
    });
    result?;
    world.barrier().map_err(|e| e.to_string())?;
    println!("traffic ok {rank}");
    Ok(())
}

fn spew(world: &World, lines: i64, width: i64) {
    let mut out = std::io::stdout().lock();
    let payload = "x".repeat(width as usize);
    for i in 0..lines {
        let line = format!("rank {} line {i} {payload}\n", world.rank());
        // write in two pieces so that lines reach prun split across reads
        let (a, b) = line.split_at(line.len() / 2);
        let _ = out.write_all(a.as_bytes());
        let _ = out.flush();
        let _ = out.write_all(b.as_bytes());
    }
    let _ = out.flush();
}

/// Rank 0 sends rank 1 two small messages and, once rank 1 has answered them, 1 MiB (lent: its
/// send waits until rank 1 has read it), then leaves a file; rank 1 receives the small ones,
/// answers, then computes, outside any call of prun, until the file is there (at most 60 s),
/// then receives the rest and checks it. The large send can only end while rank 1 computes if
/// its progress thread reads the message, whatever rank 1's receive did with the connection.
fn send_to_busy(world: &World) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let mark = std::env::var("PRUN_TEST_MARK").unwrap_or_default();
    let flag = std::env::temp_dir().join(format!("prun-send-to-busy-{mark}"));
    let data: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
    match world.rank() {
        0 => {
            // the connection is opened by the first message; by the second, rank 1 waits in
            // its receive, most likely, and so reads it itself (if its progress thread does,
            // the test passes without testing much)
            world.send(1, 0, &0u8).map_err(e)?;
            std::thread::sleep(Duration::from_millis(300));
            world.send(1, 1, &1u8).map_err(e)?;
            // once rank 1 has read the second message (itself, most likely: the connection is
            // then parked where ranks have a core each)
            let _: u8 = world.recv(1, 3).map_err(e)?;
            world.send_slice(1, 2, &data).map_err(e)?;
            std::fs::write(&flag, b"sent").map_err(|e| e.to_string())?;
        }
        1 => {
            let _: u8 = world.recv(0, 0).map_err(e)?;
            let _: u8 = world.recv(0, 1).map_err(e)?;
            world.send(0, 3, &1u8).map_err(e)?;
            let start = std::time::Instant::now();
            while !flag.exists() {
                if start.elapsed() > Duration::from_secs(60) {
                    return Err("rank 0's send did not end while rank 1 computed".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = std::fs::remove_file(&flag);
            let mut got = vec![0u8; data.len()];
            world.recv_into(0, 2, &mut got).map_err(e)?;
            if got != data {
                return Err("the large message arrived changed".into());
            }
            println!("send to busy ok");
        }
        _ => {}
    }
    Ok(())
}

/// Prints the scheduling policy (field 41 of /proc's stat: 0 normal, 3 batch) and nice value
/// (field 19) of every thread of this rank, its own and the runtime's, after a barrier.
fn sched(world: &World) -> Result<(), String> {
    world.barrier().map_err(|e| e.to_string())?;
    let mut threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").map_err(|e| e.to_string())?.flatten() {
        let stat = match std::fs::read_to_string(task.path().join("stat")) {
            Ok(stat) => stat,
            // a thread that ended since the listing (one that admitted a connection)
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", task.path().display())),
        };
        let field = |n: usize| prun_tests::stat_field(&stat, n).unwrap_or("?");
        threads.push(format!("{}/{}", field(41), field(19)));
    }
    threads.sort();
    println!("sched rank {} threads {} policy/nice {}", world.rank(), threads.len(), threads.join(","));
    Ok(())
}

/// Prints `affinity RANK LIST SAME`: the CPUs this rank's main thread may run on (the kernel's
/// `Cpus_allowed_list`) and whether every thread of the rank has the same.
fn affinity(world: &World) -> Result<(), String> {
    let (main, same) = allowed_cpus()?;
    println!("affinity {} {main} {same}", world.rank());
    world.barrier().map_err(|e| e.to_string())
}

/// As `affinity`, once every thread of the rank may run on the CPUs `unbound` (the launcher
/// unbinds ranks bound by default when other work loads the host); fails after a minute
/// without that.
fn affinity_change(world: &World, unbound: &str) -> Result<(), String> {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (now, same) = allowed_cpus()?;
        // the rank's threads are unbound one after the other: until the last, some differ (and
        // the launcher may have let go before this rank got here: no first reading to compare)
        if now == unbound && same {
            println!("affinity {} {now} {same}", world.rank());
            return world.barrier().map_err(|e| e.to_string());
        }
        if std::time::Instant::now() > until {
            return Err(format!("still on CPUs {now} (all threads alike: {same}) after a minute"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The main thread's `Cpus_allowed_list`, and whether every thread of the process has the same.
fn allowed_cpus() -> Result<(String, bool), String> {
    let allowed = |status: &str| {
        status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_string())
    };
    let main = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let main = allowed(&main).ok_or("no Cpus_allowed_list")?;
    let mut same = true;
    for task in std::fs::read_dir("/proc/self/task").map_err(|e| e.to_string())?.flatten() {
        // a thread may end between the listing and the read
        if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
            same &= allowed(&status).as_deref() == Some(main.as_str());
        }
    }
    Ok((main, same))
}

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "ignore-term" {
        // before init, however long the start takes, so that the launcher's SIGTERM after
        // `--timeout` cannot come first
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            let _ = signal_hook::flag::register(sig, std::sync::Arc::clone(&flag));
        }
    }
    let world = match prun::init() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("testjob: init: {e}");
            return ExitCode::from(3);
        }
    };
    let rank = world.rank() as i64;
    let result: Result<(), String> = match mode.as_str() {
        "sleep" => {
            ready(&world);
            sleep_forever()
        }
        "idle-wait" => idle_wait(&world),
        "refused-exchange" => refused_exchange(&world),
        "revoked-memory" => revoked_memory(&world),
        "send-to-busy" => send_to_busy(&world),
        "linger" => {
            // every rank but one ends normally; that one stays
            ready(&world);
            let passed = world.barrier().map_err(|e| e.to_string());
            if passed.is_ok() && rank == arg(2) {
                sleep_forever()
            }
            passed
        }
        "fail-on" | "segv-on" | "abort-on" => {
            ready(&world);
            let _ = world.barrier();
            if rank == arg(2) {
                match mode.as_str() {
                    "fail-on" => std::process::exit(arg(3) as i32),
                    "segv-on" => {
                        // Rust's stack-overflow handler catches the first SIGSEGV, restores the
                        // default action and returns; the second one kills the process
                        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSEGV);
                        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSEGV);
                    }
                    _ => world.abort(arg(3) as i32),
                }
            }
            sleep_forever()
        }
        "ignore-term" => {
            // deaf to SIGTERM and SIGINT since before prun::init (in main)
            ready(&world);
            sleep_forever()
        }
        "usr1" => {
            // waits for SIGUSR1, which only reaches the rank if prun passes it on
            let got = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let _ = signal_hook::flag::register(signal_hook::consts::SIGUSR1, std::sync::Arc::clone(&got));
            ready(&world);
            while !got.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            println!("rank {rank} got SIGUSR1");
            Ok(())
        }
        "spawn-child" => {
            let child = std::process::Command::new("sleep").arg("1000").spawn();
            if let Ok(c) = &child {
                println!("child {}", c.id());
            }
            ready(&world);
            sleep_forever()
        }
        "spew" => {
            spew(&world, arg(2), arg(3));
            Ok(())
        }
        "close-stdout" => {
            // closes stdout at once, then goes on with stderr
            let _ = nix::unistd::close(1);
            for i in 0..1000 {
                eprintln!("rank {rank} still here {i}");
            }
            Ok(())
        }
        "no-newline" => {
            print!("partial line from rank {rank}");
            let _ = std::io::stdout().flush();
            Ok(())
        }
        "cat" => {
            let mut data = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut data);
            let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
            println!("rank {rank} read {} bytes, sum {sum}", data.len());
            Ok(())
        }
        "env" => {
            let v = |n: &str| std::env::var(n).unwrap_or_else(|_| "-".into());
            let extra = std::env::args().nth(2).map(|n| v(&n)).unwrap_or_default();
            let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default();
            println!(
                "env rank={} size={} local_rank={} local_size={} job={} world_rank={} extra={extra} cwd={cwd}",
                v("PRUN_RANK"),
                v("PRUN_SIZE"),
                v("PRUN_LOCAL_RANK"),
                v("PRUN_LOCAL_SIZE"),
                v("PRUN_JOB_ID"),
                world.rank()
            );
            Ok(())
        }
        "sched" => sched(&world),
        "affinity" => affinity(&world),
        // arg(2): the CPUs every thread may run on once unbound
        "affinity-change" => affinity_change(&world, &std::env::args().nth(2).unwrap_or_default()),
        "p2p" => p2p(&world),
        "collectives" => collectives(&world, arg(2).max(0) as usize),
        "split" => split(&world),
        "big" => big(&world, arg(2).max(0) as usize),
        "pod" => pod(&world),
        "mpi-counts" => mpi_counts(&world, std::env::args().nth(2).as_deref() == Some("gatherv")),
        "writes" => writes(&world, &std::env::args().nth(2).unwrap_or_default(), arg(3).max(0) as usize),
        "maps" => maps(&world),
        "hang" => {
            // rank 0 waits for a message rank 1 never sends, rank 1 for one from rank 0; the
            // others wait in a barrier that 0 and 1 never reach (SIGUSR1, passed on by prun
            // with its report, is caught)
            let _ = signal_hook::flag::register(
                signal_hook::consts::SIGUSR1,
                std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            );
            ready(&world);
            let r = match rank {
                0 => world.recv::<u64>(1, 7).map(drop),
                1 => world.recv::<u64>(0, 8).map(drop),
                _ => world.barrier(),
            };
            r.map_err(|e| e.to_string())
        }
        "stuck-send" => {
            // rank 1 stops itself; rank 0 sends it 64 MiB, more than its socket and its
            // stopped progress thread take, and waits in the send
            ready(&world);
            match rank {
                1 => {
                    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
                    Ok(())
                }
                0 => world.send_slice(1, 7, &vec![7u8; 64 << 20]).map_err(|e| e.to_string()),
                _ => Ok(()),
            }
        }
        "coll-mismatch" => {
            // ranks disagree on the operation, the root or the buffer length
            let mut buf = vec![1.0f64; 10];
            let mut out = vec![0.0f64; 10];
            let kind = std::env::args().nth(2).unwrap_or_default();
            let result = match (kind.as_str(), rank) {
                ("op", 0) => world.allreduce_into(&buf, &mut out, prun::Op::Sum),
                ("op", _) => world.broadcast_into(0, &mut buf),
                ("root", 0) => world.broadcast_into(0, &mut buf),
                ("root", _) => world.broadcast_into(1, &mut buf),
                // every rank believes it is the root: each only sends, none receives
                ("each-root", _) => world.broadcast_into(rank as usize, &mut buf),
                ("bcast-len", 5) => world.broadcast_into(0, &mut vec![0.0f64; 8192]),
                // the others go on (into a barrier) rather than exit, so that rank 5 cannot
                // learn of its mistake from its tree parent's exit
                ("bcast-len", _) => world.broadcast_into(0, &mut buf).and_then(|()| world.barrier()),
                // arg(3): a zero-copy collective; the ranks listed in arg(4) pass arg(5) f64s,
                // the others 10 (80 bytes), then all go into a barrier: ranks that disagree can
                // take different algorithms, and one that is through waits in the barrier
                ("into-len", _) => {
                    let listed = std::env::args().nth(4).unwrap_or_else(|| "5".into());
                    let listed = listed.split(',').any(|r| r.parse() == Ok(rank));
                    let n = if listed { arg(5) as usize } else { 10 };
                    // arg(6), if given: the listed ranks call this operation instead
                    let op = std::env::args().nth(if listed { 6 } else { 3 });
                    let op = op.or_else(|| std::env::args().nth(3)).unwrap_or_default();
                    let size = world.size();
                    let mine = vec![1.0f64; n];
                    let mut one = vec![0.0f64; n];
                    let mut all = vec![0.0f64; n * size];
                    let root = rank == 0;
                    // this rank's n values, 10 from each other rank
                    let own_then_ten: Vec<usize> =
                        (0..size).map(|r| if r as i64 == rank { n } else { 10 }).collect();
                    let r = match op.as_str() {
                        "barrier" => world.barrier(),
                        "bcast" => world.broadcast_into(0, &mut one),
                        "scatter" => world.scatter_into(0, root.then_some(&all[..]), &mut one),
                        "gather" => world.gather_into(0, &mine, root.then_some(&mut all[..])),
                        "allgather" => world.allgather_into(&mine, &mut all),
                        "reduce" => world.reduce_into(0, &mine, root.then_some(&mut one[..]), prun::Op::Sum),
                        "alltoall" => world.alltoall_into(&vec![1.0f64; n * size], &mut all),
                        // each rank sends its n values to every rank and counts `own_then_ten`:
                        // only the blocks of the listed ranks disagree with their receivers'
                        // counts, and only their receivers fail
                        "alltoallv" => {
                            let mut into = vec![0.0f64; own_then_ten.iter().sum()];
                            world.alltoallv_into(&all, &vec![n; size], &mut into, &own_then_ten)
                        }
                        "reduce_scatter" => world.reduce_scatter_into(&all, &mut one, prun::Op::Sum),
                        "allreduce_with" => world.allreduce_into_with(&mine, &mut one, |a, b| *a += *b),
                        "scan_with" => world.scan_into_with(&mine, &mut one, |a, b| *a += *b),
                        // the root counts 10 values from each rank, or sends each 10
                        "gatherv" => {
                            let (counts, mut ten) = (vec![10; size], vec![0.0f64; 10 * size]);
                            world.gatherv_into(0, &mine, root.then_some((&mut ten[..], &counts[..])))
                        }
                        "scatterv" => {
                            let (counts, ten) = (vec![10; size], vec![1.0f64; 10 * size]);
                            world.scatterv_into(0, root.then_some((&ten[..], &counts[..])), &mut one)
                        }
                        // each rank counts `own_then_ten`
                        "allgatherv" => {
                            let mut into = vec![0.0f64; own_then_ten.iter().sum()];
                            world.allgatherv_into(&mine, &mut into, &own_then_ten)
                        }
                        _ => world.allreduce_into(&mine, &mut one, prun::Op::Sum),
                    };
                    r.and_then(|()| world.barrier())
                }
                _ => {
                    let mine = vec![1.0f64; 10 + rank as usize];
                    let mut sum = vec![0.0f64; 10 + rank as usize];
                    world.allreduce_into(&mine, &mut sum, prun::Op::Sum)
                }
            };
            result.map_err(|e| e.to_string())
        }
        "host-comm" => {
            // the ranks of one host: as many as PRUN_LOCAL_SIZE, all with this rank's host index
            let here = world.split_by_host().map_err(|e| e.to_string());
            here.and_then(|here| {
                let nodes = here.allgather(&world.node_rank()).map_err(|e| e.to_string())?;
                check(here.size() == world.local_size(), "host communicator size")?;
                check(nodes.iter().all(|&n| n == world.node_rank()), "same host")?;
                println!("host comm ok {} node {} of size {}", world.rank(), world.node_rank(), here.size());
                Ok(())
            })
        }
        "die-in-map" => {
            // rank arg(2) kills itself with SIGKILL while items run
            let victim = arg(2);
            world
                .map_range(0, 2_000_000, |i| {
                    if i % 1000 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    if rank == victim && i % 1000 == 500 {
                        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                    }
                    i
                })
                .map(drop)
                .map_err(|e| e.to_string())
        }
        "die-in-allreduce" => {
            // rank arg(2) kills itself with SIGKILL during the 20th allreduce of arg(3) numbers
            // (100000 if not given); or of the collective named by the fourth argument:
            // `bcast`, `gather`, `allgather` or `alltoall` (of that many numbers per rank or
            // per pair of ranks)
            let n = usize::try_from(arg(3)).ok().filter(|&n| n > 0).unwrap_or(100_000);
            let op = std::env::args().nth(4).unwrap_or_else(|| "allreduce".into());
            let send = vec![1.0f64; n];
            let mut recv = vec![0.0; n];
            let mut all = vec![0.0; if op == "allreduce" { 0 } else { n * world.size() }];
            let spread = vec![1.0f64; if op == "alltoall" { n * world.size() } else { 0 }];
            let mut outcome = Ok(());
            for i in 0..1000 {
                if i == 20 && rank == arg(2) {
                    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                }
                let done = match op.as_str() {
                    "bcast" => world.broadcast_into(0, &mut recv),
                    "gather" => world.gather_into(0, &send, (rank == 0).then_some(&mut all[..])),
                    "allgather" => world.allgather_into(&send, &mut all),
                    "alltoall" => world.alltoall_into(&spread, &mut all),
                    _ => world.allreduce_into(&send, &mut recv, prun::Op::Sum),
                };
                if let Err(err) = done {
                    eprintln!("rank {rank}: {op} failed: {err}");
                    outcome = Err(err.to_string());
                    break;
                }
            }
            outcome
        }
        "exit-then-killed" => {
            // rank 1 fails at once; rank 0, deaf to the launcher's SIGTERM (from before the
            // barrier, so that the SIGTERM cannot come first), kills itself with SIGKILL arg(2)
            // ms later (a killed rank whose peer exits before prun sees it die)
            if rank == 0 {
                let _ = signal_hook::flag::register(
                    signal_hook::consts::SIGTERM,
                    std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
                );
            }
            world.barrier().map_err(|e| e.to_string()).and_then(|()| {
                if rank == 1 {
                    return Err("failing first".to_string());
                }
                std::thread::sleep(std::time::Duration::from_millis(arg(2) as u64));
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                Ok(())
            })
        }
        "peer-lost" => peer_lost(&world),
        "mismatch" => mismatch(&world),
        "too-large" => too_large(&world),
        "stranger" => stranger(&world),
        "sockets" => sockets(&world),
        "old-protocol" => old_protocol(&world),
        "traffic" => traffic(&world, arg(2).max(1) as usize),
        "barriers" => (0..arg(2)).try_for_each(|_| world.barrier()).map_err(|e| e.to_string()),
        other => Err(format!("unknown mode '{other}'")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testjob: rank {rank}: {e}");
            ExitCode::from(4)
        }
    }
}
