//! The map examples (`primes`, `skew`, `maprate`, `mandelbrot`), the sample sort (`samplesort`)
//! and the collective benchmark (`collbench`) run as real jobs: their output formats, their
//! self-checks and, for `skew`, that work stealing beats a static split on a strongly skewed
//! task list. No timing figure is asserted: the machine is shared.

use prun_tests::prun;

/// The value after `key ` on the line that starts with it, parsed.
fn figure(line: &str, key: &str) -> f64 {
    let rest = line.strip_prefix(key).unwrap_or_else(|| panic!("'{line}' does not start with '{key}'"));
    let value = rest.split_whitespace().next().unwrap_or_else(|| panic!("no value in '{line}'"));
    value.parse().unwrap_or_else(|_| panic!("'{value}' in '{line}' is not a number"))
}

#[test]
fn primes_gives_the_six_answers_and_three_timings() {
    let out = prun(["-n", "2", "@primes", "2"]).run();
    out.expect_code(0).no_leftovers();
    let lines = out.lines();
    assert_eq!(
        lines[..6],
        [
            "112272535095293 prime",
            "112582705942171 prime",
            "112272535095293 prime",
            "115280095190773 prime",
            "115797848077099 prime",
            "1099726899285419 not prime",
        ],
        "{}",
        out.stdout
    );
    assert_eq!(lines.len(), 9, "{}", out.stdout);
    let words: Vec<Vec<&str>> = lines[6..].iter().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(words[0].len(), 3, "{}", lines[6]);
    assert_eq!((words[0][0], words[0][2]), ("sequential", "s"));
    for (w, mode) in words[1..].iter().zip(["static", "dynamic"]) {
        assert_eq!(w.len(), 5, "{w:?}");
        assert_eq!((w[0], w[2], w[3]), (mode, "s", "speedup"));
        assert!(w[4].parse::<f64>().is_ok_and(|x| x > 0.0), "{w:?}");
    }
    for w in &words {
        assert!(w[1].parse::<f64>().is_ok_and(|x| x > 0.0), "{w:?}");
    }
}

#[test]
fn primes_alone_is_a_world_of_one() {
    let out = prun(["-n", "1", "@primes", "1"]).run();
    out.expect_code(0).no_leftovers();
    assert_eq!(out.lines().len(), 9, "{}", out.stdout);
    assert_eq!(out.lines()[5], "1099726899285419 not prime");
}

#[test]
fn skew_dynamic_beats_static_on_heavy_first_tasks() {
    // 10 tasks of 40 ms first, then 30 of 1 ms: the static split leaves rank 0 with every heavy
    // task (efficiency about 0.5), stealing shares them
    let out = prun(["-n", "2", "@skew", "40", "40", "1", "0.25"]).run();
    out.expect_code(0).no_leftovers();
    let lines = out.lines();
    let n = lines.len();
    assert!(n >= 4, "{}", out.stdout);
    assert!(lines.iter().any(|l| l.starts_with("static makespan ") && l.ends_with(" s")), "{}", out.stdout);
    assert!(lines.iter().any(|l| l.starts_with("dynamic makespan ") && l.ends_with(" s")), "{}", out.stdout);
    for line in &lines[n - 2..] {
        let value = line.split_whitespace().nth(1).unwrap_or_default();
        let decimals = value.split_once('.').map(|(_, d)| d.len());
        assert_eq!(decimals, Some(3), "three decimals: {line}");
    }
    let fixed = figure(lines[n - 2], "static_efficiency ");
    let dynamic = figure(lines[n - 1], "dynamic_efficiency ");
    assert!(fixed > 0.0 && dynamic <= 1.05, "{}", out.stdout);
    assert!(dynamic > fixed, "stealing should beat the static split:\n{}", out.stdout);
}

#[test]
fn skew_refuses_bad_arguments() {
    let out = prun(["-n", "2", "@skew", "40", "40", "1", "1.5"]).run();
    out.expect_code(2).no_leftovers();
    assert!(out.stderr.contains("HEAVY_FRACTION"), "{}", out.stderr);
}

#[test]
fn maprate_checks_its_results_and_reports_a_rate() {
    for ranks in ["2", "3"] {
        let out = prun(["-n", ranks, "@maprate", "100000"]).run();
        out.expect_code(0).no_leftovers();
        let lines = out.lines();
        assert_eq!(lines.len(), 3, "{}", out.stdout);
        assert_eq!(lines[0], "items 100000");
        assert!(figure(lines[1], "seconds ") >= 0.0, "{}", out.stdout);
        let rate = lines[2].strip_prefix("items_per_s ").unwrap_or_else(|| panic!("{}", out.stdout));
        assert!(rate.parse::<u64>().is_ok_and(|r| r > 0), "a whole positive number: {rate}");
    }
    // with work per item: the sequential cost of an item (at least the work asked for) and the
    // efficiency against it come before the rate
    let out = prun(["-n", "2", "@maprate", "20000", "1000"]).run();
    out.expect_code(0).no_leftovers();
    let lines = out.lines();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    assert!(figure(lines[2], "sequential_item_us ") >= 1.0, "{}", out.stdout);
    let efficiency = figure(lines[3], "efficiency ");
    assert!(efficiency > 0.0 && efficiency < 2.0, "{}", out.stdout);
    assert!(lines[4].starts_with("items_per_s "), "{}", out.stdout);
}

#[test]
fn collbench_prints_op_bytes_and_time_for_the_sizes_asked() {
    // three ranks (the ping-pong's idle rank too); the sizes from 1 KiB to 64 KiB only
    let out = prun(["-n", "3", "@collbench", "latency", "barrier", "allreduce"])
        .env("COLLBENCH_MIN_BYTES", "1024")
        .env("COLLBENCH_MAX_BYTES", "65536")
        .env("COLLBENCH_ITERS_SCALE", "0.01")
        .run();
    out.expect_code(0).no_leftovers();
    let rows: Vec<(&str, &str)> = out
        .lines()
        .iter()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            assert_eq!(w.len(), 3, "<op> <bytes> <avg_us>: '{l}'");
            assert!(w[2].parse::<f64>().is_ok_and(|us| us > 0.0), "a time in microseconds: '{l}'");
            (w[0], w[1])
        })
        .collect();
    let expected = [
        ("latency", "1024"),
        ("latency", "65536"),
        ("barrier", "0"),
        ("allreduce", "1024"),
        ("allreduce", "65536"),
    ];
    assert_eq!(rows, expected, "{}", out.stdout);

    let out = prun(["-n", "2", "@collbench", "bcast", "reduce_all"]).run();
    out.expect_code(2).no_leftovers();
    assert!(out.stderr.contains("unknown operation 'reduce_all'"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    let out = prun(["-n", "2", "@collbench", "barrier"]).env("COLLBENCH_STAT", "median").run();
    out.expect_code(2).no_leftovers();
    assert!(out.stderr.contains("COLLBENCH_STAT must be avg, min or max, not 'median'"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

/// `COLLBENCH_STAT=min` and `max` print the least and the greatest of the means of the ranks
/// that take part: rank 2 of three only joins the ping-pong's barriers, its "mean" a few
/// nanoseconds, so a least figure counting it would be about 0.01 us where a one-way message
/// between processes takes a microsecond or more.
#[test]
fn collbench_prints_the_least_or_greatest_mean_over_ranks() {
    for stat in ["min", "max"] {
        let out = prun(["-n", "3", "@collbench", "latency", "allreduce"])
            .env("COLLBENCH_MIN_BYTES", "1024")
            .env("COLLBENCH_MAX_BYTES", "1024")
            .env("COLLBENCH_ITERS_SCALE", "0.05")
            .env("COLLBENCH_STAT", stat)
            .run();
        out.expect_code(0).no_leftovers();
        let lines = out.lines();
        assert_eq!(lines.len(), 2, "{}", out.stdout);
        let us = |line: &str, head: &str| {
            let us = line.strip_prefix(head).and_then(|v| v.parse::<f64>().ok());
            us.unwrap_or_else(|| panic!("{stat}: '{head}<us>': '{line}'"))
        };
        let (latency, allreduce) = (us(lines[0], "latency 1024 "), us(lines[1], "allreduce 1024 "));
        assert!(latency >= 0.5, "{stat}: the idle rank counted: {}", out.stdout);
        assert!(allreduce > 0.0, "{stat}: {}", out.stdout);
    }
}

#[test]
fn mandelbrot_writes_a_valid_pgm() {
    let dir = std::env::temp_dir().join(format!("prun-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (ranks, size) in [("2", None), ("3", Some(("64", "48")))] {
        let path = dir.join(format!("mandelbrot-{ranks}.pgm"));
        let path_arg = path.to_str().expect("utf-8 temp path").to_string();
        let mut args = vec!["-n".to_string(), ranks.into(), "@mandelbrot".into(), path_arg.clone()];
        let (w, h) = size.unwrap_or(("800", "600"));
        if size.is_some() {
            args.extend([w.to_string(), h.to_string()]);
        }
        let out = prun(args).run();
        out.expect_code(0).no_leftovers();
        let line = out.lines().last().copied().unwrap_or_default();
        assert!(line.starts_with(&format!("wrote {path_arg} ({w} x {h}), ")), "{}", out.stdout);
        assert!(line.ends_with(" s"), "{line}");
        let data = std::fs::read(&path).expect("the image");
        let header = format!("P5\n{w} {h}\n255\n");
        assert!(data.starts_with(header.as_bytes()), "header {:?}", &data[..data.len().min(20)]);
        let (w, h): (usize, usize) = (w.parse().expect("width"), h.parse().expect("height"));
        assert_eq!(data.len(), header.len() + w * h);
        let pixels = &data[header.len()..];
        assert!(pixels.contains(&0), "some pixels are inside the set (black)");
        assert!(pixels.iter().any(|&p| p > 0), "some are outside");
        std::fs::remove_file(&path).expect("remove the image");
    }
    let _ = std::fs::remove_dir(&dir);
}

/// The sample sort leaves every rank a sorted range of the keys, in rank order, none lost, with
/// shares near even (its checks; the line says the largest share), and with buckets left empty
/// when ranks hold fewer keys than there are ranks.
#[test]
fn samplesort_sorts_across_the_ranks() {
    for (n, keys) in [("1", "1000"), ("3", "100000"), ("8", "50000"), ("5", "3"), ("4", "0")] {
        let out = prun(["-n", n, "@samplesort", keys]).run();
        out.expect_code(0).no_leftovers();
        let total = keys.parse::<u64>().unwrap_or(0) * n.parse::<u64>().unwrap_or(0);
        let head = format!("samplesort ok: {total} keys on {n} ranks, largest share ");
        let line = out.lines().into_iter().find(|l| l.starts_with(&head));
        let largest = line.map(|l| figure(l, &head[..head.len() - 1]));
        assert!(largest.is_some(), "{n} ranks, {keys} keys: {}{}", out.stdout, out.stderr);
        if total >= 100_000 {
            // an even share, give or take 5%
            let even = total as f64 / n.parse::<f64>().unwrap_or(1.0);
            assert!(largest.is_some_and(|l| l < even * 1.05), "{line:?}");
        }
    }
}
