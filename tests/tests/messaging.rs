//! Typed point-to-point messages between real rank processes, and their errors.

use prun_tests::{deny_cross_memory, idle_cpu, prun};

#[test]
fn typed_messages_any_source_order_probe() {
    for n in [1, 2, 5] {
        let out = prun(["-n", &n.to_string(), "@prun-testjob", "p2p"]).run();
        out.expect_code(0).no_leftovers();
        assert_eq!(out.lines().iter().filter(|l| l.starts_with("p2p ok")).count(), n, "{}", out.stderr);
    }
}

#[test]
fn type_mismatch_is_a_decode_error_naming_the_type() {
    let out = prun(["-n", "2", "@prun-testjob", "mismatch"]).run();
    out.expect_code(0);
    assert!(out.stdout.contains("mismatch ok"), "{}", out.stderr);
}

#[test]
fn messages_over_the_limit_are_refused() {
    let out = prun(["-n", "2", "-x", "PRUN_MAX_MESSAGE=1000", "@prun-testjob", "too-large"]).run();
    out.expect_code(0);
    assert!(out.stdout.contains("too large ok"), "{}", out.stderr);
}

#[test]
fn strangers_on_a_rank_socket_are_dropped() {
    let out = prun(["-n", "2", "@prun-testjob", "stranger"]).run();
    out.expect_code(0).no_leftovers();
    assert!(out.stdout.contains("stranger ok"), "{}", out.stderr);
}

/// A large send to a rank that computes outside any call of prun ends without waiting for it
/// to call again, though that rank's last receive came from the same sender (and so parked the
/// connection, where ranks have a core each): its progress thread reads the message.
#[test]
fn a_large_send_ends_while_its_receiver_computes() {
    for crowded in ["PRUN_CROWDED=0", "PRUN_CROWDED=1"] {
        let out = prun(["-n", "2", "-x", crowded, "@prun-testjob", "send-to-busy"]).run();
        out.expect_code(0).no_leftovers();
        assert!(out.stdout.contains("send to busy ok"), "{crowded}: {}", out.stderr);
    }
}

/// Two ranks exchanging blocks through pipes neither can open (out of file descriptors) both
/// refuse the other's, and both still get them, written on the connection, rather than each
/// waiting for the other to write first; later large messages go on the connection. Blocks go
/// through pipes where ranks share cores, and where ranks have a core each but may not read
/// each other's memory (here a seccomp filter); where they may, the blocks are read out of
/// memory, which needs no descriptor, and no pipe is refused.
#[test]
fn an_exchange_refused_both_ways_completes() {
    let wrapper = deny_cross_memory();
    let wrapper = wrapper.to_str().expect("a temporary path in UTF-8");
    let cases = [
        ("PRUN_CROWDED=1", None, true),
        ("PRUN_CROWDED=0", Some(wrapper), true),
        ("PRUN_CROWDED=0", None, false),
    ];
    for (crowded, program, piped) in cases {
        let job = ["--timeout", "60", "-n", "2", "-x", crowded, "-x", "PRUN_DEBUG=1"];
        let job = job.into_iter().chain(program).chain(["@prun-testjob", "refused-exchange"]);
        let out = prun(job).run();
        out.expect_code(0).no_leftovers();
        let case =
            format!("{crowded}, {}", if program.is_some() { "memory denied" } else { "memory allowed" });
        assert_eq!(out.stdout.matches("refused exchange ok").count(), 2, "{case}: {}", out.stderr);
        // what the test is about: each rank refused the other's pipe, or used none
        for (r, peer) in [(0, 1), (1, 0)] {
            let refused = format!("rank {r} cannot read rank {peer}'s pipe");
            assert_eq!(out.stderr.contains(&refused), piped, "{case}: \"{refused}\"? {}", out.stderr);
        }
    }
}

/// A large message read out of its sender's memory, once the permission to read it is taken
/// away mid-job (the sender made undumpable, the receiver no longer root), fails on both ranks
/// with an error that says so and what to do, rather than waiting or blaming a lost rank; the
/// job ends with the failing rank's status. Received at once, or late (read by the receiver's
/// progress thread first), with ranks that have a core each or share them.
#[test]
fn a_memory_read_refused_mid_job_is_a_clear_error_on_both_ranks() {
    for crowded in ["PRUN_CROWDED=0", "PRUN_CROWDED=1"] {
        for when in ["early", "late"] {
            let job = ["--timeout", "60", "-n", "2", "-x", crowded, "@prun-testjob", "revoked-memory", when];
            let out = prun(job).run();
            out.expect_code(4).no_leftovers();
            let said =
                |what: &str| out.lines().iter().any(|l| l.starts_with("revoked: ") && l.contains(what));
            for what in [
                "sending to rank 1, which is alive: the receiver cannot read this rank's memory",
                "receiving a large message from rank 0, which is alive: cannot read the sender's memory",
                "Operation not permitted",
                "PRUN_SINGLE_COPY=0",
            ] {
                assert!(said(what), "{crowded} {when}: no \"{what}\": {}\n{}", out.stdout, out.stderr);
            }
            assert!(!out.stdout.contains("is gone"), "{crowded} {when}: {}", out.stdout);
        }
    }
}

/// A rank blocked in a receive sleeps: over 1.5 s of waiting for a typed message, a small slice
/// and a large one it uses a small fraction of a core (spinning would use all of it); so too
/// where ranks share cores, whose waits for large messages poll a while, yielding, first; and
/// when the rank may open no more descriptors, so that its waits' `poll` fails (a receive that
/// claimed its connection and polled it then claimed it again at once, and never read it: the
/// job did not end).
#[test]
fn a_waiting_rank_does_not_spin() {
    for crowded in ["PRUN_CROWDED=0", "PRUN_CROWDED=1"] {
        for args in [&["idle-wait"][..], &["idle-wait", "nofile"]] {
            let job = ["--timeout", "60", "-n", "2", "-x", crowded, "@prun-testjob"];
            let out = prun(job.iter().chain(args)).run();
            out.expect_code(0);
            let used = idle_cpu(&out.stdout);
            assert!(used.len() == 3 && used.iter().all(|&s| s < 0.5), "{crowded} {args:?}: {}", out.stdout);
        }
    }
}
