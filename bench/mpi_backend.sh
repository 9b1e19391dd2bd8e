#!/usr/bin/env bash
# The MPI backend's overhead: prun's collbench built with `--features mpi` against the same
# operations called directly on MPI (bench/mpi_collbench.c), both built against the same
# library and run by its own launcher in the same invocation, at 2 ranks.
#
# Usage:
#   bench/mpi_backend.sh [openmpi] [mpich]       (default: both that are installed)
#
# Environment:
#   OPS="bcast allreduce"   operations (default: latency barrier bcast allreduce gather scatter
#                           allgather)
#   COLLBENCH_MAX_BYTES     largest message size (default 16777216)   } passed to
#   COLLBENCH_ITERS_SCALE   iteration multiplier (default 1)          } both programs
#   REPEAT=3                runs of each program, alternating; the table keeps each row's best
#   TIMEOUT=600             seconds before one run is killed
#   OVERHEAD_ITERS_SCALE=10 iteration multiplier of the in-process comparison
#
# collbench is built into target/mpi-<library> (MPICC names the library's compiler wrapper).
# Prints a markdown table per library on stdout:
#   | op | bytes | prun on MPI (us) | MPI (us) | ratio | difference (us) | MPI, THREAD_MULTIPLE (us) | ratio |
# The last two columns: the reference built with -DTHREAD_MULTIPLE, the thread level the backend
# needs, which costs something of its own.
# Then a second table per library from `mpi_overhead` (examples/src/bin/mpi_overhead.rs): each
# operation through prun and directly on MPI in one process, alternating iteration by iteration,
# with OVERHEAD_ITERS_SCALE (default 10) times collbench's iterations; medians of REPEAT runs:
#   | op | bytes | prun on MPI (us) | MPI, same process (us) | ratio | ratio range |
# Two programs run one after the other see this shared machine differently (rows move 10-30%);
# in one process the noise mostly cancels, and what is left is prun's own path to MPI.
# Exits 1 if a run failed, 2 on bad arguments.

set -euo pipefail
export LC_ALL=C
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCRIPT_NAME=mpi_backend.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

TIMEOUT=${TIMEOUT:-600}
REPEAT=${REPEAT:-3}
OVERHEAD_ITERS_SCALE=${OVERHEAD_ITERS_SCALE:-10}
check_counts "TIMEOUT, REPEAT and OVERHEAD_ITERS_SCALE" "$TIMEOUT" "$REPEAT" "$OVERHEAD_ITERS_SCALE"
read -r -a OPS_LIST <<<"${OPS:-latency barrier bcast allreduce gather scatter allgather}"
export COLLBENCH_MAX_BYTES=${COLLBENCH_MAX_BYTES:-16777216}
export COLLBENCH_ITERS_SCALE=${COLLBENCH_ITERS_SCALE:-1}
if [[ $# -gt 0 ]]; then LIBS=("$@"); else LIBS=(openmpi mpich); fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/prun-mpi-backend.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STATUS=0

# run LABEL CMD...: appends the "<op> <bytes> <us>" lines of one run to $WORK/LABEL
run() {
    local label=$1
    shift
    if ! timeout -k 30 "$TIMEOUT" "$@" >>"$WORK/$label" 2>"$WORK/err" </dev/null; then
        note "  $label: failed"
        head -n 5 "$WORK/err" | sed 's/^/    /' >&2
        STATUS=1
    fi
}

echo "MPI backend overhead: collbench on prun's MPI backend against bench/mpi_collbench.c, 2 ranks,"
echo "best of $REPEAT alternating runs, $(nproc) cores"
for lib in "${LIBS[@]}"; do
    case $lib in
        openmpi)
            find_openmpi
            cc=$OMPI_CC launcher=(); [[ -n $OMPI_RUN ]] && launcher=("$OMPI_RUN" --allow-run-as-root -x COLLBENCH_MAX_BYTES -x COLLBENCH_ITERS_SCALE)
            ;;
        mpich)
            find_mpich
            cc=$MPICH_CC launcher=(); [[ -n $MPICH_RUN ]] && launcher=("$MPICH_RUN")
            ;;
        *) die "unknown library '$lib' (openmpi or mpich)" ;;
    esac
    if [[ -z $cc ]]; then
        note "$lib: not installed, skipped"
        continue
    fi
    note "$lib: building collbench with --features mpi ..."
    MPICC=$(command -v "$cc") cargo build --release -q -p prun-examples --features mpi --target-dir "target/mpi-$lib"
    "$cc" -O2 -o "$WORK/mpi_collbench-$lib" bench/mpi_collbench.c
    "$cc" -O2 -DTHREAD_MULTIPLE -o "$WORK/mpi_collbench_mt-$lib" bench/mpi_collbench.c
    : >"$WORK/prun-$lib"
    : >"$WORK/mpi-$lib"
    : >"$WORK/mt-$lib"
    for ((i = 1; i <= REPEAT; i++)); do
        note "$lib: run $i of $REPEAT ..."
        run "prun-$lib" "${launcher[@]}" -n 2 "target/mpi-$lib/release/collbench" "${OPS_LIST[@]}"
        run "mpi-$lib" "${launcher[@]}" -n 2 "$WORK/mpi_collbench-$lib" "${OPS_LIST[@]}"
        run "mt-$lib" "${launcher[@]}" -n 2 "$WORK/mpi_collbench_mt-$lib" "${OPS_LIST[@]}"
    done
    echo
    echo "### $("${launcher[0]}" --version 2>/dev/null | awk '/Open MPI|OpenRTE/ { print "Open MPI " $NF; exit } /Version:/ { print "MPICH " $2; exit }')"
    echo
    echo "| op | bytes | prun on MPI (us) | MPI (us) | ratio | difference (us) | MPI, THREAD_MULTIPLE (us) | ratio |"
    echo "|----|------:|-----------------:|---------:|------:|----------------:|--------------------------:|------:|"
    # best (smallest) time per row of each program, then joined in the order of the first run
    awk '
        FNR == 1 { file++ }
        NF == 3 && $3 ~ /^[0-9.]+$/ {
            key = $1 " " $2
            if (!(key in seen)) { seen[key] = 1; order[++n] = key }
            if (!((file, key) in best) || $3 < best[file, key]) best[file, key] = $3
        }
        END {
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, f, " ")
                p = best[1, k]; m = best[2, k]; t = best[3, k]
                if (p == "" || m == "" || t == "") { printf "| %s | %s | %s | %s | - | - | %s | - |\n", f[1], f[2], p, m, t; continue }
                printf "| %s | %s | %.2f | %.2f | %.2f | %+.2f | %.2f | %.2f |\n", f[1], f[2], p, m, (m > 0 ? p / m : 0), p - m, t, (t > 0 ? p / t : 0)
            }
        }' "$WORK/prun-$lib" "$WORK/mpi-$lib" "$WORK/mt-$lib"

    : >"$WORK/same-$lib"
    for ((i = 1; i <= REPEAT; i++)); do
        note "$lib: in one process, run $i of $REPEAT ..."
        run "same-$lib" env COLLBENCH_ITERS_SCALE="$(awk -v a="$COLLBENCH_ITERS_SCALE" -v b="$OVERHEAD_ITERS_SCALE" 'BEGIN { print a * b }')" \
            "${launcher[@]}" -n 2 "target/mpi-$lib/release/mpi_overhead" "${OPS_LIST[@]}"
    done
    echo
    echo "Same library, one process: prun's call and MPI's, alternating, median of $REPEAT runs"
    echo
    echo "| op | bytes | prun on MPI (us) | MPI, same process (us) | ratio | ratio range |"
    echo "|----|------:|-----------------:|-----------------------:|------:|------------:|"
    awk '
        function median(list,    v, n, i, j, t) {
            n = split(list, v, " ")
            for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
            return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        }
        NF == 4 && $3 ~ /^[0-9.]+$/ && $4 ~ /^[0-9.]+$/ && $4 > 0 {
            key = $1 " " $2
            if (!(key in p)) order[++n] = key
            p[key] = p[key] " " $3; m[key] = m[key] " " $4; r = $3 / $4; q[key] = q[key] " " r
            if (!(key in lo) || r < lo[key]) lo[key] = r
            if (!(key in hi) || r > hi[key]) hi[key] = r
        }
        END {
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, f, " ")
                printf "| %s | %s | %.2f | %.2f | %.2f | %.2f-%.2f |\n", f[1], f[2], median(p[k]), median(m[k]), median(q[k]), lo[k], hi[k]
            }
        }' "$WORK/same-$lib"
done
exit "$STATUS"
