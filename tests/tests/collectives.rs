//! Collectives between real rank processes: every operation, every root, sub-communicators,
//! oversubscription, and a rank dying in the middle.

use prun_tests::{deny_cross_memory, prun};

fn all_ok(n: usize, args: &[&str], word: &str) {
    all_ok_with(&[], n, args, word);
}

/// As [`all_ok`], with launcher options `options` (such as `-x NAME=VALUE`) first.
fn all_ok_with(options: &[&str], n: usize, args: &[&str], word: &str) {
    let n_text = n.to_string();
    let mut full = options.to_vec();
    full.extend_from_slice(&["-n", &n_text, "@prun-testjob"]);
    full.extend_from_slice(args);
    let out = prun(full).run();
    out.expect_code(0).no_leftovers();
    let ok = out.lines().iter().filter(|l| l.starts_with(word)).count();
    assert_eq!(ok, n, "every rank checks its results:\n{}", out.stderr);
}

#[test]
fn every_collective_at_every_root() {
    for n in [1, 2, 3, 5, 8] {
        all_ok(n, &["collectives", "300000"], "collectives ok");
    }
    // both families of algorithms whatever this machine's cores: the flat ones (and the
    // gather-and-release barrier) for hosts with more ranks than cores, the trees otherwise
    for crowded in ["PRUN_CROWDED=1", "PRUN_CROWDED=0"] {
        for n in [8, 17] {
            all_ok_with(&["-x", crowded], n, &["collectives", "1000"], "collectives ok");
        }
    }
}

/// Three threads per rank exchange messages on their own tags with every other rank while a
/// fourth receives from any source: several threads wait on one connection at once (one reads,
/// the others' messages included, each large one handed to the thread that posted for it), and
/// every message arrives whole, once and in order, with and without polling before sleeping.
#[test]
fn threads_share_connections_without_losing_or_reordering() {
    for (crowded, n) in [("PRUN_CROWDED=1", 6), ("PRUN_CROWDED=0", 3)] {
        all_ok_with(&["-x", crowded], n, &["traffic", "24"], "traffic ok");
    }
}

/// Large messages of every kind (in place, queued before the receive, of the wrong length, in
/// order) and collectives on large buffers, written through the sockets and, with
/// `PRUN_SINGLE_COPY=1`, lent through pipes.
#[test]
fn large_messages_by_socket_and_by_single_copy() {
    for copy in ["0", "1"] {
        let env = format!("PRUN_SINGLE_COPY={copy}");
        for (n, args, word) in
            [(3, vec!["pod"], "pod ok"), (3, vec!["collectives", "300000"], "collectives ok")]
        {
            let n_text = n.to_string();
            let mut full = vec!["-x", &env, "-n", &n_text, "@prun-testjob"];
            full.extend_from_slice(&args);
            let out = prun(full).run();
            out.expect_code(0).no_leftovers();
            let ok = out.lines().iter().filter(|l| l.starts_with(word)).count();
            assert_eq!(ok, n, "{env} {args:?}: every rank checks its results:\n{}", out.stderr);
        }
    }
}

/// Every collective, typed and zero-copy, of 4 MiB a rank on five ranks sharing the cores and
/// on the two halves of a split (three and two ranks, in reversed order), at three roots each:
/// every algorithm's path for large messages (straight to every rank, pipelined, halving and
/// doubling), lent and written through the sockets. Blocks from 4 MiB written to the sockets
/// once hung every rank of a crowded allgather.
#[test]
fn every_collective_of_4_mib_a_rank_lent_and_written() {
    for copy in ["PRUN_SINGLE_COPY=1", "PRUN_SINGLE_COPY=0"] {
        let options = ["--timeout", "120", "-x", "PRUN_CROWDED=1", "-x", copy];
        all_ok_with(&options, 5, &["big", "4194304"], "big ok");
    }
}

#[test]
fn collectives_with_64_ranks_on_2_cores() {
    all_ok(64, &["collectives", "1000"], "collectives ok");
}

/// On a host with too many ranks for a lending pipe between every pair (32, with the kernel's
/// default quota of pipe pages), messages of 1 MiB and more, a scatter's blocks from 64 KiB
/// and exchange steps from 128 KiB are still copied once, read out of their sender's memory:
/// the ranks of a 1 MiB allgather, the root of a 64 KiB scatter, the root of a 1 MiB broadcast
/// (straight to every rank, where on more than 16 ranks shorter ones go down a tree), and the
/// ranks of a 1 MiB allreduce (whose exchanges of 512 KiB down to 32 KiB, written, add up to
/// about twice that) write only frames and their short steps to their sockets, not the blocks
/// they send; every rank checks what it got.
#[test]
fn large_messages_are_lent_among_32_ranks() {
    for (op, len) in
        [("allgather", 1 << 20), ("scatter", 64 << 10), ("bcast", 1 << 20), ("allreduce", 1 << 20)]
    {
        writes_no_blocks(32, op, len);
    }
}

/// On 8 ranks sharing cores, the 1 MiB allgather goes by recursive doubling, exchanges of 1, 2
/// and 4 MiB: lent, each partner reads the other's blocks out of its memory, and no rank writes
/// a block to its sockets; where reading another process's memory is forbidden, they are
/// written (the pipes, of 512 KiB at 8 ranks, hold none of them). Every rank checks what it got.
#[test]
fn the_crowded_doubling_allgather_is_lent_or_written_whole() {
    writes_no_blocks(8, "allgather", 1 << 20);
    let wrapper = deny_cross_memory();
    let wrapper = wrapper.to_str().expect("a temporary path in UTF-8");
    let job = ["--timeout", "120", "-x", "PRUN_CROWDED=1", "-n", "8", wrapper, "@prun-testjob", "writes"];
    let out = prun(job.into_iter().chain(["allgather", "1048576"])).run();
    out.expect_code(0).no_leftovers();
    let reports = out.lines().iter().filter(|l| l.starts_with("writes ")).count();
    assert_eq!(reports, 8, "every rank checks what it got:\n{}", out.stderr);
}

/// Where ranks share cores and large messages are written to the sockets (`PRUN_SINGLE_COPY=0`,
/// or where reading another process's memory is forbidden), the allgather straight to every
/// rank completes: 3 ranks of 4 MiB blocks and 8 of 16 MiB, each rank writing its block to
/// every other before it receives theirs. A block written to a rank still writing its own is
/// read into a vector by that rank's progress thread; left for the rank's receive, which
/// begins only once its own writes end, it hung every rank. Every rank checks what it got.
#[test]
fn the_straight_allgather_written_to_the_sockets_completes() {
    let wrapper = deny_cross_memory();
    let wrapper = wrapper.to_str().expect("a temporary path in UTF-8");
    for (n, len) in [("3", "4194304"), ("8", "16777216")] {
        // written because single copy is off, or because no rank may read another's memory
        for how in [vec!["-x", "PRUN_SINGLE_COPY=0"], vec![wrapper]] {
            let mut job = vec!["--timeout", "120", "-x", "PRUN_CROWDED=1", "-n", n];
            job.extend(&how);
            job.extend(["@prun-testjob", "writes", "allgather", len]);
            let out = prun(job).run();
            out.expect_code(0).no_leftovers();
            let reports = out.lines().iter().filter(|l| l.starts_with("writes ")).count();
            let what = format!("{how:?}, {n} ranks");
            assert_eq!(reports.to_string(), n, "{what}: every rank checks what it got:\n{}", out.stderr);
        }
    }
}

/// Runs `op` of `len`-byte blocks on `n` ranks sharing cores and checks that no rank wrote a
/// block.
fn writes_no_blocks(n: usize, op: &str, len: usize) {
    let out =
        prun(["-x", "PRUN_CROWDED=1", "-n", &n.to_string(), "@prun-testjob", "writes", op, &len.to_string()])
            .run();
    out.expect_code(0).no_leftovers();
    let lines: Vec<Vec<String>> = out
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("writes "))
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    assert_eq!(lines.len(), n, "{op}: every rank reports:\n{}", out.stderr);
    for words in lines {
        let written: u64 = words[1].parse().expect("bytes");
        // where the system forbids reading another process's memory, they go through sockets
        if words[2] == "true" {
            assert!(written < len as u64, "{op}: rank {} wrote {written} bytes", words[0]);
        }
    }
}

#[test]
fn split_keeps_communicators_apart() {
    for n in [1, 2, 5, 8] {
        all_ok(n, &["split"], "split ok");
    }
}

/// Where the system forbids one process to read another's memory (Yama's `ptrace_scope` 1, the
/// default on Ubuntu, or a container's seccomp profile; here a seccomp filter), every large
/// collective still completes, over the sockets and pipes. Each rank learns what its peers can
/// take from it when it connects: learning it from a lent message's refusal, two ranks
/// exchanging such messages (2 ranks, pieces of 1 MiB read out of memory; 8 ranks on 2 cores,
/// every exchange of 128 KiB or more) each waited for the other's payload for ever.
#[test]
fn large_collectives_where_reading_another_process_is_forbidden() {
    let wrapper = deny_cross_memory();
    let wrapper = wrapper.to_str().expect("a temporary path in UTF-8");
    for (crowded, n) in [("PRUN_CROWDED=0", "2"), ("PRUN_CROWDED=1", "8")] {
        let job =
            ["--timeout", "120", "-x", crowded, "-n", n, wrapper, "@prun-testjob", "collectives", "300000"];
        let out = prun(job).run();
        out.expect_code(0).no_leftovers();
        let ok = out.lines().iter().filter(|l| l.starts_with("collectives ok")).count();
        assert_eq!(ok.to_string(), n, "{crowded}: every rank checks its results:\n{}", out.stderr);
    }
}

/// Where only one of two ranks may read the other's memory, the two still cut their exchanges
/// alike: each sends its large blocks whole only where both read each other's memory
/// (`PointToPoint::exchange_piece`), else in pieces; the 2.4 MB allreduce's halves, in one
/// piece on one side and two on the other, would not match.
#[test]
fn large_collectives_where_only_one_rank_may_read_the_others_memory() {
    let wrapper = deny_cross_memory();
    let wrapper = wrapper.to_str().expect("a temporary path in UTF-8");
    for denied in ["0", "1"] {
        let only = format!(r#"if [ "$PRUN_RANK" = {denied} ]; then exec {wrapper} "$@"; else exec "$@"; fi"#);
        let job = ["--timeout", "120", "-n", "2", "-x", "PRUN_DEBUG=1", "sh", "-c", &only, "sh"];
        let out = prun(job.into_iter().chain(["@prun-testjob", "collectives", "300000"])).run();
        out.expect_code(0).no_leftovers();
        let ok = out.lines().iter().filter(|l| l.starts_with("collectives ok")).count();
        assert_eq!(ok, 2, "rank {denied} denied: every rank checks its results:\n{}", out.stderr);
        // what the test is about: one way was refused, the other not
        let refused =
            format!("rank {denied} cannot read rank {}'s memory", 1 - denied.parse::<usize>().unwrap_or(0));
        assert!(out.stderr.contains(&refused), "no \"{refused}\": {}", out.stderr);
    }
}

/// The allreduce moves 800 KB: written to the sockets, lent through pipes where six ranks share
/// two cores (a peer waiting for the dead rank to read its pipe, or reading the dead rank's),
/// and read out of the sender's memory between two ranks; and 16 MB, whose halves are read
/// whole out of the sender's memory (a peer waiting for the dead rank's answer, or reading its
/// memory).
#[test]
fn a_rank_killed_mid_collective_ends_the_job() {
    for (n, copy, numbers) in [
        ("6", "PRUN_SINGLE_COPY=0", "100000"),
        ("6", "PRUN_SINGLE_COPY=1", "100000"),
        ("2", "PRUN_SINGLE_COPY=1", "100000"),
        ("2", "PRUN_SINGLE_COPY=1", "2000000"),
    ] {
        let out = prun(["-x", copy, "-n", n, "@prun-testjob", "die-in-allreduce", "1", numbers]).run();
        out.expect_code(128 + 9).no_leftovers();
        assert!(
            out.stderr.contains("rank 1") && out.stderr.contains("SIGKILL"),
            "{n} {copy} {numbers}: {}",
            out.stderr
        );
    }
}

/// Where ranks share cores, a rank killed while the root's messages are all out at once (a
/// broadcast of 8 MB read out of the root's memory, or of 400 KB through pipes) or while the
/// root waits for every block at once (a gather, and the allgather through rank 0), or while
/// every rank sends to and receives from every other (the allgather of 2.4 MB blocks), or in
/// the middle of recursive doubling's exchanges (the allgather of 1.2 MB blocks), or of an
/// allreduce up and down a binomial tree (80 KB), or of an all-to-all through rank 0 (8 bytes a
/// pair) or every block at once (400 KB a pair), ends the job, the killed rank named.
#[test]
fn a_rank_killed_mid_fan_ends_the_job() {
    for (op, numbers) in [
        ("bcast", "1000000"),
        ("bcast", "50000"),
        ("gather", "200000"),
        ("allgather", "20000"),
        ("allgather", "300000"),
        ("allgather", "150000"),
        ("allreduce", "10000"),
        ("alltoall", "1"),
        ("alltoall", "50000"),
    ] {
        let job = ["-x", "PRUN_CROWDED=1", "-n", "8", "@prun-testjob", "die-in-allreduce", "1", numbers, op];
        let out = prun(job).run();
        out.expect_code(128 + 9).no_leftovers();
        assert!(
            out.stderr.contains("rank 1") && out.stderr.contains("SIGKILL"),
            "{op} {numbers}: {}",
            out.stderr
        );
    }
}

#[test]
fn mismatched_collectives_are_errors_not_hangs() {
    // (a root mismatch is caught only when a message crosses between ranks that disagree)
    for (kind, said) in [("op", "allreduce_into"), ("len", "-byte buffers")] {
        let out = prun(["-n", "4", "@prun-testjob", "coll-mismatch", kind]).run();
        assert_ne!(out.code(), 0, "{kind}: {}", out.stderr);
        out.no_leftovers();
        assert!(
            out.stderr.contains("collective mismatch") && out.stderr.contains(said),
            "{kind}: {}",
            out.stderr
        );
    }
}

/// Ranks that each believe they are a broadcast's root only send and none receives, so the call
/// ends without an error everywhere; with `PRUN_CHECK_COLLECTIVES=1` (or `prun
/// --check-collectives`) every collective call first checks that the ranks agree on it, and this
/// job fails, naming the roots. The check changes nothing where ranks agree (every collective at
/// every root, both families of algorithms), and it catches the other mismatches too.
#[test]
fn checked_collectives_catch_ranks_that_each_believe_they_are_the_root() {
    let check = "PRUN_CHECK_COLLECTIVES=1";
    for (crowded, n) in [("PRUN_CROWDED=0", "2"), ("PRUN_CROWDED=0", "5"), ("PRUN_CROWDED=1", "8")] {
        let job = ["-x", check, "-x", crowded, "-n", n, "--timeout", "30", "@prun-testjob"];
        for kind in ["each-root", "root", "op", "len"] {
            let out = prun(job.into_iter().chain(["coll-mismatch", kind])).run();
            let what = format!("{kind}, {n} ranks, {crowded}");
            assert_ne!(out.code(), 124, "{what}: timed out: {}", out.stderr);
            assert_ne!(out.code(), 0, "{what}: {}", out.stderr);
            out.no_leftovers();
            assert!(out.stderr.contains("collective mismatch at call #0"), "{what}: {}", out.stderr);
            if kind.ends_with("root") {
                // the two roots the error names differ
                let line = out.stderr.lines().find(|l| l.contains("collective mismatch")).unwrap_or_default();
                let roots: Vec<&str> =
                    line.split("broadcast_into (root ").skip(1).filter_map(|r| r.split(')').next()).collect();
                assert!(roots.len() == 2 && roots[0] != roots[1], "{what}: {line}");
            }
        }
    }
    // the launcher's option sets the variable
    let out = prun([
        "--check-collectives",
        "-n",
        "3",
        "--timeout",
        "30",
        "@prun-testjob",
        "coll-mismatch",
        "each-root",
    ])
    .run();
    assert_ne!(out.code(), 0, "{}", out.stderr);
    out.no_leftovers();
    assert!(out.stderr.contains("collective mismatch at call #0"), "{}", out.stderr);
    for (crowded, n) in [("PRUN_CROWDED=0", 5), ("PRUN_CROWDED=1", 8)] {
        all_ok_with(&["-x", check, "-x", crowded], n, &["collectives", "1000"], "collectives ok");
        all_ok_with(&["-x", check, "-x", crowded], n, &["split"], "split ok");
    }
}

/// A rank whose buffer is longer than the others' in a broadcast (8 ranks on a host with
/// fewer cores: straight from the root at every length) gets the root's message of the same
/// call, for another length, and fails, naming the call; the others go on into a barrier, so
/// that it cannot learn of its mistake from their exit.
#[test]
fn a_broadcast_of_another_length_is_an_error_not_a_hang() {
    let job =
        ["-x", "PRUN_CROWDED=1", "-n", "8", "--timeout", "20", "@prun-testjob", "coll-mismatch", "bcast-len"];
    let out = prun(job).run();
    assert_ne!(out.code(), 124, "timed out: {}", out.stderr);
    assert_ne!(out.code(), 0, "{}", out.stderr);
    out.no_leftovers();
    assert!(out.stderr.contains("collective mismatch") && out.stderr.contains("rank 5"), "{}", out.stderr);
}

/// Ranks passing different lengths to a zero-copy collective can take different algorithms
/// (where ranks share cores, 80 bytes through rank 0 and 512 KiB by recursive halving, say),
/// and wait on peers that wait on others, or finish their part and wait in the next call. Every
/// such job fails with a mismatch, naming a length, whoever passed the longer buffer: the higher
/// rank of a halving exchange, its peer silent, sends its part anyway after a while, a message
/// of a call the receiver has finished is refused as one of another call, and ranks that wait
/// only for each other are found by the launcher.
#[test]
fn a_zero_copy_collective_of_another_length_is_an_error_not_a_hang() {
    let mut jobs: Vec<(&str, &str, &str, &str)> = Vec::new();
    let ops =
        ["bcast", "scatter", "gather", "allgather", "reduce", "allreduce", "alltoall", "reduce_scatter"];
    for op in ops.into_iter().chain(["allgatherv", "allreduce_with", "scan_with"]) {
        for long in ["1", "5", "4,5,6,7"] {
            jobs.push(("1", op, long, "65536"));
        }
    }
    // 1 MiB: the long ranks' allgather sends straight to every rank, the others' through rank 0
    for long in ["0", "5", "4,5,6,7"] {
        jobs.push(("1", "allgather", long, "131072"));
    }
    // with a core per rank (4 ranks: as the machine has fewer cores, said so)
    jobs.push(("0", "reduce", "1", "65536"));
    jobs.push(("0", "alltoall", "1", "65536"));
    for (crowded, op, long, len) in jobs {
        let crowded = format!("PRUN_CROWDED={crowded}");
        let n = if crowded.ends_with('1') { "8" } else { "4" };
        let job = [
            "-x",
            &crowded,
            "-n",
            n,
            "--timeout",
            "30",
            "@prun-testjob",
            "coll-mismatch",
            "into-len",
            op,
            long,
            len,
        ];
        let out = prun(job).run();
        let what = format!("{op}, ranks {long} passing {len} values, {crowded}");
        assert_ne!(out.code(), 124, "{what}: timed out: {}", out.stderr);
        assert_ne!(out.code(), 0, "{what}: {}", out.stderr);
        out.no_leftovers();
        // a rank that receives another call's message says so; in a scan, ranks along the chain
        // beside ranks through rank 0 only wait for each other, and the launcher finds them
        let found_by_launcher =
            op == "scan_with" && out.stderr.contains("wait in different collective calls");
        assert!(
            (out.stderr.contains("collective mismatch") || found_by_launcher)
                && out.stderr.contains("-byte buffers"),
            "{what}: {}",
            out.stderr
        );
    }
}

/// An all-to-all of varying blocks in which rank 1 sends longer blocks than its receivers'
/// counts say (its lengths legitimately differ from theirs, so no signature can tell; its own
/// counts agree with what it is sent, so rank 1 cannot fail first and hide the others' error):
/// every receiver fails, naming rank 1 and both lengths, and nobody hangs.
#[test]
fn alltoallv_with_counts_that_disagree_is_an_error_not_a_hang() {
    for (crowded, n) in [("PRUN_CROWDED=1", "8"), ("PRUN_CROWDED=0", "4")] {
        let job = ["-x", crowded, "-n", n, "--timeout", "30", "@prun-testjob", "coll-mismatch", "into-len"];
        let out = prun(job.into_iter().chain(["alltoallv", "1", "65536"])).run();
        assert_ne!(out.code(), 124, "{crowded}: timed out: {}", out.stderr);
        assert_ne!(out.code(), 0, "{crowded}: {}", out.stderr);
        out.no_leftovers();
        let said = "message from rank 1 has 524288 bytes where 80 were expected";
        assert!(out.stderr.contains(said), "{crowded}: {}", out.stderr);
    }
}

/// A gather or scatter of varying blocks in which rank 1's block is longer than the root's
/// count for it (the root alone knows the counts): the rank that receives the block fails,
/// naming its sender and both lengths, and nobody hangs.
#[test]
fn gatherv_and_scatterv_with_counts_that_disagree_are_errors_not_hangs() {
    for (crowded, n) in [("PRUN_CROWDED=1", "8"), ("PRUN_CROWDED=0", "4")] {
        for (op, said) in [
            ("gatherv", "message from rank 1 has 524288 bytes where 80 were expected"),
            ("scatterv", "message from rank 0 has 80 bytes where 524288 were expected"),
        ] {
            let job =
                ["-x", crowded, "-n", n, "--timeout", "30", "@prun-testjob", "coll-mismatch", "into-len"];
            let out = prun(job.into_iter().chain([op, "1", "65536"])).run();
            assert_ne!(out.code(), 124, "{op}, {crowded}: timed out: {}", out.stderr);
            assert_ne!(out.code(), 0, "{op}, {crowded}: {}", out.stderr);
            out.no_leftovers();
            assert!(out.stderr.contains(said), "{op}, {crowded}: {}", out.stderr);
        }
    }
}

/// A rank that only receives in its call (a broadcast from rank 0) while rank 0 waits in
/// another one (a barrier) for that rank's message: no message crosses between them, so the
/// runtime cannot see it, but prun's check of what the ranks wait in does, long before the
/// timeout, and names both calls.
#[test]
fn ranks_in_different_calls_with_no_message_between_them_end_the_job() {
    let job = [
        "-x",
        "PRUN_CROWDED=1",
        "-n",
        "8",
        "--timeout",
        "60",
        "@prun-testjob",
        "coll-mismatch",
        "into-len",
        "barrier",
        "5",
        "10",
        "bcast",
    ];
    let out = prun(job).run();
    assert_eq!(out.code(), 1, "{}", out.stderr);
    out.no_leftovers();
    assert!(
        out.stderr.contains("ranks wait in different collective calls")
            // the lowest rank in the barrier that answered in time (rank 0, unless it was slow)
            && out.stderr.contains(
                " in barrier call #0, rank 5 in broadcast_into (root 0, 80-byte buffers) call #0"
            ),
        "{}",
        out.stderr
    );
}
