#!/usr/bin/env bash
# Start-up benchmark: wall time of launching a whole `hello` job with prun,
# Open MPI and MPICH, plus the peak resident memory of one prun hello rank.
#
# Usage:
#   bench/startup.sh [RANKS...]          (default ranks: 2 16 64)
#
# Environment:
#   RUNS=5        timed runs per launcher and rank count; the median is reported
#   PRUN_BIN      launcher to time     (default: target/release/prun)
#   HELLO_BIN     program it launches  (default: target/release/hello)
#   TIMEOUT=60    seconds before a single run is killed and reported as "timeout"
#
# Run it from anywhere; it works from the repository root.  If the default
# target/release/prun or target/release/hello is missing it runs
# `cargo build --release -q` first.
#
# Open MPI is used when mpicc.openmpi and mpirun.openmpi are installed (or
# plain mpicc/mpirun that are Open MPI), MPICH when mpicc.mpich and
# mpiexec.mpich are (or plain mpicc/mpiexec that are MPICH).  Both compile
# bench/mpi_hello.c, which prints the same line as prun's hello.  A missing
# MPI is reported as "not installed" and skipped; nothing is ever installed.
#
# Each configuration is run once untimed to check it (exit status 0, one
# "hello from rank R of N" line for every rank) and to warm caches, then RUNS
# times with output to /dev/null, timed with bash's own clock.  Times include
# the start of `timeout` (about 1 ms), the same for every launcher.
#
# Prints a markdown table on stdout, then
#   hello rank peak RSS: X KiB (target < 4096 KiB)
# measured with bench/rss_probe.py (needs python3).  Progress goes to stderr.
# Exits 1 if a prun run failed or timed out.

set -euo pipefail
export LC_ALL=C # EPOCHREALTIME and printf must use '.' as the decimal point

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-5}
TIMEOUT=${TIMEOUT:-60}
PRUN_BIN=${PRUN_BIN:-target/release/prun}
HELLO_BIN=${HELLO_BIN:-target/release/hello}
if [[ $# -gt 0 ]]; then RANKS=("$@"); else RANKS=(2 16 64); fi

SCRIPT_NAME=startup.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT must be a positive integer, not '$TIMEOUT'"
check_counts "rank counts" "${RANKS[@]}"
command -v timeout >/dev/null || die "needs timeout (coreutils)"

ensure_built "target/release/prun=$PRUN_BIN" "target/release/hello=$HELLO_BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/prun-startup.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

now() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then echo "$EPOCHREALTIME"; else date +%s.%N; fi
}

median() { # numbers on stdin, one a line
    sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# check N CMD... : run once, capturing output; succeed when it exits 0 and printed
# exactly N lines, one "hello from rank R of N" for each R in 0..N-1.
# Sets CHECK_RESULT to "ok", "timeout" or "failed".
check() {
    local n=$1 rc=0
    shift
    timeout "$TIMEOUT" "$@" >"$WORK/out" 2>"$WORK/err" </dev/null || rc=$?
    if [[ $rc -eq 124 ]]; then
        CHECK_RESULT=timeout
    elif [[ $rc -ne 0 ]]; then
        CHECK_RESULT=failed
        note "  exit status $rc"
    elif ! awk -v n="$n" '
            match($0, /hello from rank [0-9]+ of [0-9]+ on /) {
                split(substr($0, RSTART, RLENGTH), w, " ")
                if (w[6] == n && w[4] < n && !(w[4] in seen)) { seen[w[4]] = 1; good++ }
            }
            END { exit !(NR == n && good == n) }' "$WORK/out"; then
        CHECK_RESULT=failed
        note "  expected $n lines \"hello from rank R of $n on HOST\", got $(wc -l <"$WORK/out") lines:"
        head -n 5 "$WORK/out" | sed 's/^/    /' >&2
    else
        CHECK_RESULT=ok
    fi
    if [[ $CHECK_RESULT != ok && -s $WORK/err ]]; then
        head -n 10 "$WORK/err" | sed 's/^/    stderr: /' >&2
    fi
}

# measure N CMD... : check once, then time RUNS runs.  Prints the median in seconds,
# or "timeout" / "failed".
measure() {
    local n=$1 i rc t0 t1
    check "$@"
    if [[ $CHECK_RESULT != ok ]]; then echo "$CHECK_RESULT"; return; fi
    shift
    : >"$WORK/times"
    for ((i = 0; i < RUNS; i++)); do
        rc=0
        t0=$(now)
        timeout "$TIMEOUT" "$@" >/dev/null 2>"$WORK/err" </dev/null || rc=$?
        t1=$(now)
        if [[ $rc -eq 124 ]]; then echo timeout; return; fi
        if [[ $rc -ne 0 ]]; then
            note "  exit status $rc on timed run $((i + 1))"
            head -n 10 "$WORK/err" | sed 's/^/    stderr: /' >&2
            echo failed
            return
        fi
        awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }' >>"$WORK/times"
    done
    median <"$WORK/times"
}

fmt_time() { if [[ $1 =~ ^[0-9.]+$ ]]; then printf '%.3f' "$1"; else printf '%s' "$1"; fi; }
fmt_ratio() {
    if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]]; then
        awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'
    else
        printf -- '-'
    fi
}

# ---- find the MPIs -------------------------------------------------------------

find_openmpi

find_mpich

if [[ -n $OMPI_CC ]]; then
    if "$OMPI_CC" -O2 -o "$WORK/mpi_hello_ompi" bench/mpi_hello.c 2>"$WORK/err"; then
        OMPI_STATUS="$OMPI_RUN (Open MPI $({ "$OMPI_RUN" --version 2>/dev/null || true; } | awk 'NR == 1 { print $NF }'))"
        # Running as root needs --allow-run-as-root; more ranks than cores needs
        # --oversubscribe.  Shared-memory single-copy (CMA) needs ptrace rights that
        # containers often lack and warns when it can't; hello only sends a few
        # bytes, so turn it off.  The user's own setting wins.
        export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
    else
        OMPI_STATUS="$OMPI_CC failed to compile bench/mpi_hello.c"
        sed 's/^/    /' "$WORK/err" >&2
        OMPI_CC=""
    fi
fi
if [[ -n $MPICH_CC ]]; then
    if "$MPICH_CC" -O2 -o "$WORK/mpi_hello_mpich" bench/mpi_hello.c 2>"$WORK/err"; then
        MPICH_STATUS="$MPICH_RUN ($({ "$MPICH_RUN" --version 2>/dev/null || true; } | awk '/Version:/ && !done { print "MPICH " $2; done = 1 }'))"
    else
        MPICH_STATUS="$MPICH_CC failed to compile bench/mpi_hello.c"
        sed 's/^/    /' "$WORK/err" >&2
        MPICH_CC=""
    fi
fi

# ---- time the launches ---------------------------------------------------------

echo "Start-up time of a hello job: median wall time of $RUNS runs, $(nproc 2>/dev/null || echo '?') cores"
echo
echo "- prun: $PRUN_BIN -n N $HELLO_BIN"
echo "- Open MPI: $OMPI_STATUS"
echo "- MPICH: $MPICH_STATUS"
echo

STATUS=0
ROWS=()
for n in "${RANKS[@]}"; do
    note "ranks $n: prun ..."
    p=$(measure "$n" "$PRUN_BIN" -n "$n" "$HELLO_BIN")
    [[ $p =~ ^[0-9.]+$ ]] || STATUS=1

    o="not installed"
    if [[ -n $OMPI_CC ]]; then
        note "ranks $n: Open MPI ..."
        o=$(cd "$WORK" && measure "$n" "$OMPI_RUN" --allow-run-as-root --oversubscribe -n "$n" ./mpi_hello_ompi)
    fi

    m="not installed"
    if [[ -n $MPICH_CC ]]; then
        note "ranks $n: MPICH ..."
        m=$(cd "$WORK" && measure "$n" "$MPICH_RUN" -n "$n" ./mpi_hello_mpich)
    fi

    ROWS+=("| $n | $(fmt_time "$p") | $(fmt_time "$o") | $(fmt_ratio "$p" "$o") | $(fmt_time "$m") | $(fmt_ratio "$p" "$m") |")
done

echo "| ranks | prun (s) | Open MPI (s) | prun/Open MPI | MPICH (s) | prun/MPICH |"
echo "|------:|---------:|-------------:|--------------:|----------:|-----------:|"
printf '%s\n' "${ROWS[@]}"
echo

# ---- memory of one rank --------------------------------------------------------

if PYTHON=$(command -v python3); then
    note "peak RSS of a hello rank ..."
    rc=0
    timeout "$TIMEOUT" "$PRUN_BIN" -n 2 "$PYTHON" bench/rss_probe.py "$HELLO_BIN" \
        >"$WORK/rss" 2>"$WORK/err" </dev/null || rc=$?
    rss=$(grep -o 'max_rss_kib=[0-9]*' "$WORK/rss" | cut -d= -f2 | sort -n | tail -n 1 || true)
    if [[ $rc -eq 0 && -n $rss ]]; then
        echo "hello rank peak RSS: $rss KiB (target < 4096 KiB)"
    else
        STATUS=1
        echo "hello rank peak RSS: failed (exit status $rc)"
        head -n 10 "$WORK/err" | sed 's/^/    stderr: /' >&2
    fi
else
    echo "hello rank peak RSS: skipped (python3 not installed)"
fi

exit "$STATUS"
