#!/usr/bin/env bash
# The floor under prun's transport: what this machine's kernel mechanisms cost on their own
# (bench/floor.c), beside the shared memory MPI libraries use, so that prun's collbench figures
# can be read against what sockets, pipes and cross-memory attach allow here.
#
# Usage:
#   bench/floor.sh [PROCESSES...]          (default: 2 8)
#
# Environment:
#   CC=cc        the C compiler
#   TIMEOUT=300  seconds before a run is killed and reported as failed
#
# For each process count N it builds and runs `floor N` and prints a markdown table of
# "| mechanism | bytes | us |" (per hop for the hop-* rows, per transfer for the copy-* rows,
# per call for the allgather-* rows, run with up to 16 processes; see bench/floor.c). Exits 1
# if a run fails, 2 on bad arguments.

set -euo pipefail
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCRIPT_NAME=floor.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

CC=${CC:-cc}
TIMEOUT=${TIMEOUT:-300}
if [[ $# -gt 0 ]]; then COUNTS=("$@"); else COUNTS=(2 8); fi
check_counts "process counts" "${COUNTS[@]}" "$TIMEOUT"
for n in "${COUNTS[@]}"; do
    ((n >= 2 && n <= 256)) || die "process counts must be 2 to 256, not $n"
done
command -v "$CC" >/dev/null || die "needs a C compiler ($CC; set CC)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/prun-floor.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$CC" -O2 -o "$WORK/floor" bench/floor.c || die "$CC failed to compile bench/floor.c"

echo "Kernel mechanisms on their own, $(nproc) cores"
status=0
for n in "${COUNTS[@]}"; do
    echo
    echo "### $n processes"
    echo
    echo "| mechanism | bytes | us |"
    echo "|-----------|------:|---:|"
    if timeout "$TIMEOUT" "$WORK/floor" "$n" >"$WORK/out" 2>"$WORK/err"; then
        awk '{ printf "| %s | %s | %s |\n", $1, $2, $3 }' "$WORK/out"
    else
        note "floor $n failed:"
        sed 's/^/    /' "$WORK/err" >&2
        echo "| failed | | |"
        status=1
    fi
done
exit $status
