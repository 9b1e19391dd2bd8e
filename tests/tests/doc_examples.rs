//! The examples of the runtime's documentation run as real jobs: `cargo test --doc` runs each
//! as a world of one rank, where most of them say nothing about the others; `prun-docjob`
//! (built from the same examples by the tests crate's build script) runs each on 2 ranks (a
//! core each), 3 and 5 (ranks sharing cores, not a power of two) and 8 (short collectives
//! through rank 0), so an example that is right only alone fails here.

use prun_tests::{bin, doc_examples, prun};

#[test]
fn every_doc_example_holds_on_every_rank() {
    let n = doc_examples(&bin("prun-docjob"));
    for ranks in [2, 3, 5, 8] {
        for example in 0..n {
            let (ranks_arg, example_arg) = (ranks.to_string(), example.to_string());
            let out = prun(["-n", &ranks_arg, "--timeout", "60", "@prun-docjob", &example_arg]).run();
            let at = out.stdout.lines().find_map(|l| l.strip_prefix("ok ")).unwrap_or("").to_string();
            let at = format!("example {example} {at}");
            assert_eq!(out.code(), 0, "{at}, {ranks} ranks: {}", out.stderr);
            out.no_leftovers();
            // each rank finished it
            let oks = out.stdout.lines().filter(|l| l.starts_with("ok ")).count();
            assert_eq!(oks, ranks, "{at}, {ranks} ranks: {}", out.stdout);
        }
    }
}

/// A number that names no example is refused, saying what is allowed.
#[test]
fn the_doc_job_refuses_an_unknown_example() {
    let out = std::process::Command::new(bin("prun-docjob")).arg("x").output().expect("run prun-docjob");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither 'count' nor"));
}
