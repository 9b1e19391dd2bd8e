#!/usr/bin/env python3
"""The Python peer of prun's map benchmarks (examples maprate and skew), standard library only.

Usage:
    bench/map_peers.py [WORKERS...]      (default: 2 16)

Measures multiprocessing.Pool (fork start method, pool started before timing):

- task rate at 2 workers of the same trivial task as `maprate`
  (`(i * 0x9E3779B97F4A7C15 mod 2^64) >> 7`), one task per message with
  `imap(f, range(N), chunksize=1)`, and with the static chunked `map(f, range(N))`
  (its default chunksize, about N / (4 x workers));
- at each worker count, the efficiency of the same heavy-first sleep task list as `skew`
  (same defaults: 200 tasks, the first 25% sleep 20 ms, the rest 2 ms) with
  `imap_unordered(chunksize=1)` and with a static split (`map` with chunksize =
  ceil(len / workers)): total planned task time / (workers x makespan). As in `skew`, each
  worker shortens its sleeps by the measured overshoot of time.sleep, so that tasks last their
  planned time.

Prints a markdown table on stdout; progress on stderr.

Environment: PEER_IMAP_N (default 100000) and PEER_MAP_N (default 5000000) items for the two
rate measurements; SKEW="TASKS HEAVY_MS LIGHT_MS HEAVY_FRACTION" (default "200 20 2 0.25").
"""

import multiprocessing
import os
import sys
import time

MASK = (1 << 64) - 1
_overshoot = None


def tiny(i):
    """The trivial item of `maprate`."""
    return ((i * 0x9E3779B97F4A7C15) & MASK) >> 7


def calibrate():
    """Median overshoot of a 1 ms time.sleep on this process, in seconds."""
    over = []
    for _ in range(21):
        start = time.perf_counter()
        time.sleep(0.001)
        over.append(time.perf_counter() - start - 0.001)
    over.sort()
    return max(over[len(over) // 2], 0.0)


def init_worker():
    """Pool initializer: measure this worker's sleep overshoot once."""
    global _overshoot
    _overshoot = calibrate()


def sleep_task(seconds):
    """One skew task: sleep its planned duration, less this worker's sleep overshoot."""
    time.sleep(max(seconds - (_overshoot or 0.0), 0.0))
    return seconds


def skew_plan():
    """The planned durations of the skew task list, in seconds."""
    words = os.environ.get("SKEW", "200 20 2 0.25").split()
    tasks, heavy_ms, light_ms, fraction = int(words[0]), float(words[1]), float(words[2]), float(words[3])
    heavy = round(tasks * fraction)
    return [(heavy_ms if i < heavy else light_ms) / 1000.0 for i in range(tasks)]


def new_pool(workers):
    """A started pool whose workers have all calibrated their sleeps (an initializer takes
    about 25 ms; the pause leaves them ample time) before anything is timed."""
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=init_worker)
    pool.map(sleep_task, [0.0] * (workers * 4), chunksize=1)
    time.sleep(0.2)
    return pool


def rate(workers, n, how):
    with new_pool(workers) as pool:
        start = time.perf_counter()
        if how == "imap":
            results = list(pool.imap(tiny, range(n), chunksize=1))
        else:
            results = pool.map(tiny, range(n))
        seconds = time.perf_counter() - start
    assert len(results) == n and results[n // 2] == tiny(n // 2) and results[-1] == tiny(n - 1)
    return n / seconds


def efficiency(workers, plan, how):
    with new_pool(workers) as pool:
        start = time.perf_counter()
        if how == "dynamic":
            done = sum(1 for _ in pool.imap_unordered(sleep_task, plan, chunksize=1))
        else:
            chunk = -(-len(plan) // workers)
            done = len(pool.map(sleep_task, plan, chunksize=chunk))
        makespan = time.perf_counter() - start
    assert done == len(plan)
    return sum(plan) / (workers * makespan), makespan


def main():
    args = sys.argv[1:] or ["2", "16"]
    if not all(a.isdigit() and int(a) > 0 for a in args):
        sys.exit("map_peers.py: worker counts must be positive integers")
    counts = [int(a) for a in args]
    imap_n = int(os.environ.get("PEER_IMAP_N", "100000"))
    map_n = int(os.environ.get("PEER_MAP_N", "5000000"))
    plan = skew_plan()
    version = "Python %d.%d.%d multiprocessing.Pool" % sys.version_info[:3]
    rows = []
    print(f"map_peers: {version}: task rates at 2 workers ...", file=sys.stderr)
    r = rate(2, imap_n, "imap")
    rows.append(("task rate, one task per message (imap chunksize=1)", "2", f"{r:,.0f} items/s"))
    r = rate(2, map_n, "map")
    rows.append(("task rate, static chunks (map, default chunksize)", "2", f"{r:,.0f} items/s"))
    for w in counts:
        print(f"map_peers: skew efficiency at {w} workers ...", file=sys.stderr)
        e, m = efficiency(w, plan, "static")
        rows.append(("skew efficiency, static split (map chunksize=len/workers)", str(w), f"{e:.3f} ({m:.3f} s)"))
        e, m = efficiency(w, plan, "dynamic")
        rows.append(("skew efficiency, dynamic (imap_unordered chunksize=1)", str(w), f"{e:.3f} ({m:.3f} s)"))
    print(f"\n{version} (bench/map_peers.py)\n")
    print("| measure | workers | figure |")
    print("| --- | ---: | ---: |")
    for measure, w, figure in rows:
        print(f"| {measure} | {w} | {figure} |")


if __name__ == "__main__":
    main()
