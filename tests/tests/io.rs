//! Standard input and output: forwarding, tagging, nothing lost or mixed.

use prun_tests::prun;
use std::collections::HashMap;

fn sum(data: &[u8]) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

#[test]
fn stdin_goes_to_rank_0_only() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let out = prun(["-n", "3", "@prun-testjob", "cat"]).input(data.clone()).run();
    out.expect_code(0).no_leftovers();
    let mut lines = out.lines();
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("rank 0 read {} bytes, sum {}", data.len(), sum(&data)),
            "rank 1 read 0 bytes, sum 0".to_string(),
            "rank 2 read 0 bytes, sum 0".to_string()
        ]
    );
}

#[test]
fn stdin_to_all_to_one_or_to_none() {
    let out = prun(["-n", "2", "--stdin", "all", "@prun-testjob", "cat"]).input("abc").run();
    out.expect_code(0);
    assert_eq!(
        out.lines().iter().filter(|l| l.ends_with("read 3 bytes, sum 294")).count(),
        2,
        "{}",
        out.stdout
    );
    let out = prun(["-n", "2", "--stdin", "1", "@prun-testjob", "cat"]).input("abc").run();
    assert!(
        out.stdout.contains("rank 1 read 3 bytes") && out.stdout.contains("rank 0 read 0 bytes"),
        "{}",
        out.stdout
    );
    let out = prun(["-n", "2", "--stdin", "none", "@prun-testjob", "cat"]).input("abc").run();
    assert_eq!(out.lines().iter().filter(|l| l.contains("read 0 bytes")).count(), 2, "{}", out.stdout);
}

/// Parses `[R] rank R line I xxx` lines; checks every line is whole and each rank's lines come
/// complete and in order.
fn check_tagged(stdout: &str, ranks: usize, lines: usize, width: usize) {
    let mut next: HashMap<usize, usize> = HashMap::new();
    let payload = "x".repeat(width);
    for line in stdout.lines() {
        let (tag, rest) = line.split_once("] ").unwrap_or_else(|| panic!("untagged line: {line:.80}"));
        let tag: usize = tag.strip_prefix('[').and_then(|t| t.parse().ok()).expect("tag");
        let expect = format!("rank {tag} line {} {payload}", next.get(&tag).copied().unwrap_or(0));
        assert_eq!(rest, expect, "a line was cut, mixed or reordered");
        *next.entry(tag).or_default() += 1;
    }
    for r in 0..ranks {
        assert_eq!(next.get(&r).copied(), Some(lines), "rank {r} lost lines");
    }
}

#[test]
fn tagged_output_never_mixes_lines_under_heavy_output() {
    let (ranks, lines, width) = (16, 3000, 300);
    let out = prun([
        "-n",
        &ranks.to_string(),
        "--tag-output",
        "@prun-testjob",
        "spew",
        &lines.to_string(),
        &width.to_string(),
    ])
    .run();
    out.expect_code(0).no_leftovers();
    check_tagged(&out.stdout, ranks, lines, width);
}

#[test]
fn long_lines_and_untagged_output_arrive_whole() {
    let out = prun(["-n", "4", "@prun-testjob", "spew", "200", "20000"]).run();
    out.expect_code(0);
    let payload = "x".repeat(20000);
    let mut per_rank: HashMap<String, usize> = HashMap::new();
    for line in out.lines() {
        let words: Vec<&str> = line.splitn(5, ' ').collect();
        assert_eq!(words.len(), 5, "cut line");
        assert_eq!(words[4], payload, "a line was cut or mixed");
        let n = per_rank.entry(words[1].to_string()).or_default();
        assert_eq!(words[3], n.to_string(), "lines of rank {} out of order", words[1]);
        *n += 1;
    }
    assert_eq!(per_rank.len(), 4);
    assert!(per_rank.values().all(|&n| n == 200));
}

#[test]
fn output_without_a_final_newline_is_kept() {
    let out = prun(["-n", "3", "--tag-output", "@prun-testjob", "no-newline"]).run();
    out.expect_code(0);
    let mut lines = out.lines();
    lines.sort();
    assert_eq!(
        lines,
        ["[0] partial line from rank 0", "[1] partial line from rank 1", "[2] partial line from rank 2"]
    );
    let out = prun(["-n", "1", "@prun-testjob", "no-newline"]).run();
    assert_eq!(out.stdout, "partial line from rank 0");
}
