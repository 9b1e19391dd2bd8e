//! The dynamic map between real rank processes: same results as a sequential map, every item
//! once, errors named, a rank killed mid-map ending the job.

use prun_tests::{prun, trace_number};

#[test]
fn maps_equal_a_sequential_map() {
    // 24 ranks: more than a rank steals from at random (`MAX_VICTIMS` in runtime/src/map/mod.rs)
    for n in [1, 2, 5, 16, 24] {
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

#[test]
fn progress_lines_and_a_trace_of_every_rank() {
    let trace = std::env::temp_dir().join(format!("prun-trace-{}.json", std::process::id()));
    let out =
        prun(["-n", "3", "--progress", "--trace", trace.to_str().expect("utf8"), "@prun-testjob", "maps"])
            .run();
    out.expect_code(0).no_leftovers();
    assert!(
        out.stderr.contains("prun: map ") && out.stderr.contains("200000/200000 items (100%)"),
        "{}",
        out.stderr
    );
    let text = std::fs::read_to_string(&trace).expect("trace written");
    assert!(text.starts_with('{') && text.trim_end().ends_with("]}"), "a JSON object");
    for rank in 0..3 {
        let batches = text
            .lines()
            .filter(|l| l.contains("\"name\":\"batch\"") && l.contains(&format!("\"tid\":{rank},")))
            .count();
        assert!(batches > 0, "rank {rank} recorded its batches");
    }
    assert!(text.contains("\"name\":\"barrier\""), "collectives are traced too");
    // a rank starting its last batch of costly items asks for more ahead (`AHEAD_MIN` in
    // runtime/src/map/mod.rs): a steal event that spans a whole batch of its rank, its request sent
    // before the batch began and the answer taken after it ended (a dry rank's steal ends
    // before its next batch begins)
    let events = |name: &str| -> Vec<(u64, u64, f64, f64)> {
        let tag = format!("\"name\":\"{name}\"");
        text.lines()
            .filter(|l| l.contains(&tag))
            .filter_map(|l| {
                Some((
                    trace_number(l, "tid")? as u64,
                    trace_number(l, "map")? as u64,
                    trace_number(l, "ts")?,
                    trace_number(l, "dur")?,
                ))
            })
            .collect()
    };
    let (batches, steals) = (events("batch"), events("steal"));
    assert!(
        steals.iter().any(|&(tid, map, ts, dur)| batches
            .iter()
            .any(|&(t, m, b, d)| t == tid && m == map && ts <= b && b + d <= ts + dur)),
        "some rank asked ahead: {} steals, {} batches",
        steals.len(),
        batches.len()
    );
    // and the timeline draws it: one row per rank
    let svg = trace.with_extension("svg");
    let drawn = std::process::Command::new(prun_tests::bin("prun-timeline"))
        .arg(&trace)
        .arg(&svg)
        .output()
        .expect("run prun-timeline");
    assert!(drawn.status.success(), "{}", String::from_utf8_lossy(&drawn.stderr));
    let picture = std::fs::read_to_string(&svg).expect("svg written");
    assert!(picture.starts_with("<svg") || picture.starts_with("<?xml"), "an SVG");
    assert!((0..3).all(|r| picture.contains(&format!("rank {r}"))), "a row per rank");
    let _ = std::fs::remove_file(trace);
    let _ = std::fs::remove_file(svg);
}
