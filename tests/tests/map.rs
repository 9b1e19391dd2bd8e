//! The dynamic map between real rank processes: same results as a sequential map, every item
//! once, errors named, a rank killed mid-map ending the job.

use prun_tests::prun;

#[test]
fn maps_equal_a_sequential_map() {
    for n in [1, 2, 5, 16] {
        let out = prun(["-n", &n.to_string(), "@prun-testjob", "maps"]).run();
        out.expect_code(0).no_leftovers();
        let ok = out.lines().iter().filter(|l| l.starts_with("maps ok")).count();
        assert_eq!(ok, n, "every rank checks its results:\n{}", out.stderr);
    }
}

#[test]
fn a_rank_killed_mid_map_ends_the_job() {
    let out = prun(["-n", "4", "@prun-testjob", "die-in-map", "1"]).run();
    out.expect_code(128 + 9).no_leftovers();
    assert!(out.stderr.contains("rank 1") && out.stderr.contains("SIGKILL"), "{}", out.stderr);
}
