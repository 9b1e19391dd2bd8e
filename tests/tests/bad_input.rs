//! Bad input gets a clear error before anything starts.

use prun_tests::{prun, temp_file};

#[test]
fn missing_program() {
    let out = prun(["-n", "2", "./no-such-program"]).run();
    out.expect_code(127);
    assert!(out.stderr.contains("no-such-program") && out.stderr.contains("no such file"), "{}", out.stderr);
    let out = prun(["-n", "2", "no-such-program-in-path"]).run();
    out.expect_code(127);
    assert!(out.stderr.contains("PATH"), "{}", out.stderr);
}

#[test]
fn program_that_cannot_be_executed() {
    let file = temp_file("not-executable.sh", "echo hi\n");
    let out = prun(["-n", "2", file.to_str().expect("utf8")]).run();
    out.expect_code(126);
    assert!(out.stderr.contains("chmod +x"), "{}", out.stderr);
}

#[test]
fn zero_or_nonsense_ranks() {
    let out = prun(["-n", "0", "@hello"]).run();
    out.expect_code(2);
    assert!(out.stderr.contains("at least one rank"), "{}", out.stderr);
    prun(["-n", "many", "@hello"]).run().expect_code(2);
}

#[test]
fn malformed_hostfile_line_is_named() {
    let file = temp_file("bad-hosts", "# hosts\nlocalhost slots=2\n\nlocalhost slots=two\n");
    let out = prun(["-n", "2", "--hostfile", file.to_str().expect("utf8"), "@hello"]).run();
    out.expect_code(2);
    assert!(out.stderr.contains(":4:") && out.stderr.contains("two"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "nothing ran");
}

#[test]
fn too_many_ranks_for_the_slots() {
    let file = temp_file("small-hosts", "localhost slots=2\n");
    let path = file.to_str().expect("utf8");
    let out = prun(["-n", "5", "--hostfile", path, "@hello"]).run();
    out.expect_code(2);
    assert!(
        out.stderr.contains("5 ranks")
            && out.stderr.contains("2 slots")
            && out.stderr.contains("--oversubscribe"),
        "{}",
        out.stderr
    );
    let out = prun(["-n", "5", "--hostfile", path, "--oversubscribe", "@hello"]).run();
    out.expect_code(0);
    assert_eq!(out.lines().len(), 5);
}

#[test]
fn a_missing_launch_agent_is_reported() {
    let out =
        prun(["-n", "2", "--host", "127.0.0.2:2", "--launch-agent", "/no/such/launcher", "@hello"]).run();
    out.expect_code(1).no_leftovers();
    assert!(out.stderr.contains("127.0.0.2") && out.stderr.contains("/no/such/launcher"), "{}", out.stderr);
}

#[test]
fn a_tuning_variable_that_is_not_a_number_is_named() {
    for var in ["PRUN_SPIN_US", "PRUN_YIELD_US", "PRUN_MAX_MESSAGE"] {
        let setting = format!("{var}=soon");
        let out = prun(["-n", "2", "-x", &setting, "@prun-testjob", "env"]).run();
        assert_ne!(out.code(), 0, "{var}: {}", out.stdout);
        assert!(out.stderr.contains(&format!("{var}=\"soon\" is not a number")), "{var}: {}", out.stderr);
        assert!(!out.stdout.contains("env rank="), "{var}: no rank ran: {}", out.stdout);
        out.no_leftovers();
    }
}

#[test]
fn bad_options() {
    prun(["-n", "2", "--wdir", "/no/such/dir", "@hello"]).run().expect_code(2);
    prun(["-n", "2", "--stdin", "5", "@hello"]).run().expect_code(2);
    prun(["-n", "2", "-x", "1BAD=x", "@hello"]).run().expect_code(2);
    prun(["-n", "2", "--hostfile", "/no/such/hostfile", "@hello"]).run().expect_code(2);
    prun(["-n", "2", "--frobnicate", "@hello"]).run().expect_code(2);
}

/// A program built against another version of the prun crate (its handshake names protocol
/// version 1) is named as such by the launcher, once, and the job's own ranks carry on.
#[test]
fn a_program_of_another_prun_version_is_named() {
    let out = prun(["-n", "3", "@prun-testjob", "old-protocol"]).run();
    out.expect_code(0).no_leftovers();
    assert!(out.stdout.contains("old protocol refused"), "{}", out.stdout);
    let said = out.stderr.matches("speaks prun protocol version 1, this launcher version").count();
    assert_eq!(said, 1, "{}", out.stderr);
}
