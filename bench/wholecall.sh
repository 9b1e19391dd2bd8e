#!/usr/bin/env bash
# Whole calls: the wall time and the processor time one call of one collbench operation takes,
# prun beside Open MPI, barrier included, start-up and warm-up left out.
#
# Usage:
#   bench/wholecall.sh OP BYTES [RANKS...]      (default ranks: 8)
#
#   OP     one of collbench's operations (latency barrier bcast allreduce gather scatter
#          allgather); BYTES one of its sizes (8 1024 65536 1048576 16777216; 0 for barrier)
#
# Environment:
#   RUNS=3          runs of each program at each scale, alternating; the table shows medians
#   SCALE=31        the larger run's iteration scale (an integer, 2 or more); a short call needs
#                   more (start-up varies by tens of milliseconds, 10000 calls of 5 us take 50)
#   TIMEOUT=600     seconds before a run is killed (the script then fails)
#   PRUN_BIN, COLLBENCH_BIN, PRUN_ARGS, OMPI_ARGS   as for bench/collbench.sh
#
# Why: collbench reports, as the OSU benchmarks do, the average over ranks of each rank's mean
# time from leaving the barrier before a call to the end of its call. Where ranks share cores
# that figure leaves out what a rank spends waiting for a core before it leaves the barrier,
# and so favours whatever releases ranks late (see bench/RESULTS.md). This script times the
# whole loop instead: each program runs with COLLBENCH_ITERS_SCALE=1 and SCALE, and
#   per call = (time at SCALE - time at 1) / (calls at SCALE - calls at 1)
# for the wall time and for the processor time (user + system) of the program and every
# process it waited for, which cancels start-up, the warm-up's first touches and exit. A call
# here is the barrier and the operation, as collbench times them.
#
# Prints a markdown table per rank count on stdout (wall and processor time per call, in
# microseconds, and prun / Open MPI); progress and errors on stderr. Exits 1 if a run fails or
# times out, 2 on bad arguments or when Open MPI is missing.

set -euo pipefail
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCRIPT_NAME=wholecall.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

[[ $# -ge 2 ]] || die "usage: bench/wholecall.sh OP BYTES [RANKS...]"
OP=$1 BYTES=$2
shift 2
if [[ $# -gt 0 ]]; then RANKS=("$@"); else RANKS=(8); fi
KNOWN="${ALL_OPS[*]} ${EXTRA_OPS[*]}"
[[ " $KNOWN " == *" $OP "* ]] || die "unknown operation '$OP' (known: $KNOWN)"
if [[ $OP == barrier ]]; then
    [[ $BYTES == 0 ]] || die "barrier moves no bytes: give 0, not '$BYTES'"
else
    [[ " ${SIZES[*]} " == *" $BYTES "* ]] || die "BYTES must be one of collbench's sizes (${SIZES[*]}), not '$BYTES'"
fi
RUNS=${RUNS:-3}
TIMEOUT=${TIMEOUT:-600}
check_counts "rank counts" "${RANKS[@]}"
check_counts "RUNS" "$RUNS"
check_counts "TIMEOUT" "$TIMEOUT"
SCALE=${SCALE:-31}
check_counts "SCALE" "$SCALE"
[[ $SCALE -ge 2 ]] || die "SCALE must be 2 or more, not '$SCALE'"
for n in "${RANKS[@]}"; do
    [[ $OP != latency || $n -ge 2 ]] || die "latency needs 2 ranks or more"
done
PRUN_BIN=${PRUN_BIN:-target/release/prun}
COLLBENCH_BIN=${COLLBENCH_BIN:-target/release/collbench}
read -r -a PRUN_EXTRA <<< "${PRUN_ARGS:-}"
read -r -a OMPI_EXTRA <<< "${OMPI_ARGS:-}"
command -v timeout >/dev/null || die "needs timeout (coreutils)"

ensure_built "target/release/prun=$PRUN_BIN" "target/release/collbench=$COLLBENCH_BIN"
find_openmpi
[[ -n $OMPI_CC ]] || die "needs Open MPI (mpicc.openmpi and mpirun.openmpi): the comparison is the point"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/prun-wholecall.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$OMPI_CC" -O2 -o "$WORK/mpi_collbench" bench/mpi_collbench.c || die "$OMPI_CC failed to compile bench/mpi_collbench.c"

# calls SCALE: how many times collbench calls OP at COLLBENCH_ITERS_SCALE=SCALE (its
# `iterations`: timed clamp(64 MiB / max(bytes, 1 KiB), 10, 1000) and a tenth of that, at
# least 2, as warm-up, both scaled, at least 2 and 1).
calls() {
    awk -v b="$BYTES" -v s="$1" 'BEGIN {
        it = int(67108864 / (b > 1024 ? b : 1024)); if (it < 10) it = 10; if (it > 1000) it = 1000
        warm = int(it / 10); if (warm < 2) warm = 2
        t = int(it * s); if (t < 2) t = 2
        w = int(warm * s); if (w < 1) w = 1
        print t + w }'
}
PER=$(($(calls "$SCALE") - $(calls 1)))

export COLLBENCH_MIN_BYTES=$BYTES COLLBENCH_MAX_BYTES=$BYTES

# timed SCALE CMD...: runs CMD at SCALE with the timeout, its output discarded; prints "wall
# cpu" in seconds (cpu: user + system of CMD and the processes it waited for).
timed() {
    local scale=$1 rc TIMEFORMAT='%R %U %S' t
    shift
    # the exit status through a file: the command substitution is a subshell of its own
    t=$({ time { COLLBENCH_ITERS_SCALE=$scale timeout -k 30 "$TIMEOUT" "$@" >"$WORK/out" 2>"$WORK/err" \
        </dev/null && echo 0 >"$WORK/rc" || echo $? >"$WORK/rc"; }; } 2>&1)
    rc=$(<"$WORK/rc")
    if [[ $rc -ne 0 ]]; then
        note "wholecall.sh: '$*' at scale $scale failed (exit $rc):"
        sed 's/^/    /' "$WORK/err" >&2
        exit 1
    fi
    awk '{ print $1, $2 + $3 }' <<<"$t"
}

# median: of the numbers on stdin.
median() {
    sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

echo "Whole calls of $OP, $BYTES bytes: time per call (barrier and operation) from runs at 1 and $SCALE times"
echo "collbench's iterations ($PER calls apart), medians of $RUNS runs each, $(nproc) cores"
for n in "${RANKS[@]}"; do
    : >"$WORK/prun" && : >"$WORK/ompi"
    for ((r = 1; r <= RUNS; r++)); do
        note "  $n ranks, run $r of $RUNS"
        for prog in prun ompi; do
            if [[ $prog == prun ]]; then
                cmd=("$PRUN_BIN" "${PRUN_EXTRA[@]}" -n "$n" "$COLLBENCH_BIN" "$OP")
            else
                cmd=("$OMPI_RUN" --allow-run-as-root --oversubscribe "${OMPI_EXTRA[@]}" -x COLLBENCH_MIN_BYTES
                    -x COLLBENCH_MAX_BYTES -x COLLBENCH_ITERS_SCALE -n "$n" "$WORK/mpi_collbench" "$OP")
            fi
            t1=$(timed 1 "${cmd[@]}") || exit 1
            t2=$(timed "$SCALE" "${cmd[@]}") || exit 1
            read -r w1 c1 <<<"$t1"
            read -r w2 c2 <<<"$t2"
            awk -v a="$w1" -v b="$w2" -v c="$c1" -v d="$c2" -v per="$PER" \
                'BEGIN { printf "%.1f %.1f\n", (b - a) / per * 1e6, (d - c) / per * 1e6 }' >>"$WORK/$prog"
        done
    done
    pw=$(cut -d' ' -f1 "$WORK/prun" | median) pc=$(cut -d' ' -f2 "$WORK/prun" | median)
    ow=$(cut -d' ' -f1 "$WORK/ompi" | median) oc=$(cut -d' ' -f2 "$WORK/ompi" | median)
    echo
    echo "### $n ranks"
    echo
    echo "| program | wall per call (us) | processor time per call (us) |"
    echo "|---------|-------------------:|-----------------------------:|"
    echo "| prun | $pw | $pc |"
    echo "| Open MPI ($OMPI_RUN) | $ow | $oc |"
    awk -v a="$pw" -v b="$ow" -v c="$pc" -v d="$oc" \
        'BEGIN { printf "| prun / Open MPI | %.3f | %.3f |\n", (b > 0 ? a / b : 0), (d > 0 ? c / d : 0) }'
done
