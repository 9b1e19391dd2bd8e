#!/usr/bin/env bash
# Collective benchmark: prun's collbench against the same measurements made
# with Open MPI (and optionally MPICH) by bench/mpi_collbench.c.
#
# Usage:
#   bench/collbench.sh [RANKS...]          (default ranks: 2 8)
#
# Environment:
#   OPS="bcast allreduce"   operations to run, space-separated, among
#                           latency barrier bcast allreduce gather scatter
#                           allgather (default: all, in that order), and
#                           alltoall (bytes per pair of ranks), reduce_scatter
#                           (bytes per rank's block), gatherv, scatterv and
#                           allgatherv (bytes per rank, equal counts) and
#                           allreduce_with (a user's f64 sum), scan (the f64
#                           sum's prefixes) and scan_with (the prefixes of a
#                           user's operation that is not commutative), only
#                           when named
#   COLLBENCH_MIN_BYTES     smallest message size (default 0)          }
#   COLLBENCH_MAX_BYTES     largest message size (default 16777216)   } passed to
#   COLLBENCH_ITERS_SCALE   iteration multiplier, float (default 1)  } both programs
#   COLLBENCH_STAT=avg      figure over the ranks' mean times: avg (default, as  }
#                           OSU), min or max (the rank that left last: what     }
#                           ranks that go on together wait for; OSU's -f)       }
#   WITH_MPICH=1            also run MPICH, at 2 ranks only (its ranks busy-poll,
#                           so oversubscribed runs do not finish)
#   PRUN_BIN                launcher      (default: target/release/prun)
#   COLLBENCH_BIN           program it runs (default: target/release/collbench)
#   PRUN_ARGS="--bind-to core"  more options for prun (split on spaces), before -n
#   OMPI_ARGS="--bind-to core:overload-allowed"  more options for Open MPI's mpirun
#   TIMEOUT=600             seconds before one run is killed and reported as "timeout"
#   REPEAT=1                runs of each program at each rank count, alternating; each row
#                           keeps its best (this machine's rows move by 10 to 30% run to run)
#
# Run it from anywhere; it works from the repository root.  If the default
# target/release/prun or target/release/collbench is missing it runs
# `cargo build --release -q` first.
#
# For each rank count N it runs
#   PRUN_BIN $PRUN_ARGS -n N COLLBENCH_BIN $OPS
#   mpirun.openmpi --allow-run-as-root --oversubscribe $OMPI_ARGS -n N ./mpi_collbench $OPS
#   mpiexec.mpich -n 2 ./mpi_collbench $OPS               (WITH_MPICH=1, N = 2)
# each of which prints lines "<op> <bytes> <avg_us>", and prints a markdown
# table per rank count on stdout, joined on (op, bytes):
#   | op | bytes | prun (us) | Open MPI (us) | prun / Open MPI | [MPICH (us) | prun / MPICH |]
# A run that times out or fails shows "timeout" / "failed" in place of the
# numbers it did not print (numbers printed before the failure are kept); a
# run that succeeded but left out a row shows "missing".  Without Open MPI
# only prun's column is shown.  Under each table, the CPU time the hypervisor took
# from the machine during each program's runs (Linux's steal time: on a virtual
# machine, a large figure there means the rows were disturbed, not slow).
# Progress and errors go to stderr.
# Exits 1 if any run failed or timed out, 2 on bad arguments.

set -euo pipefail
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TIMEOUT=${TIMEOUT:-600}
REPEAT=${REPEAT:-1}
PRUN_BIN=${PRUN_BIN:-target/release/prun}
read -r -a PRUN_EXTRA <<< "${PRUN_ARGS:-}"
read -r -a OMPI_EXTRA <<< "${OMPI_ARGS:-}"
COLLBENCH_BIN=${COLLBENCH_BIN:-target/release/collbench}
WITH_MPICH=${WITH_MPICH:-0}
MIN_BYTES=${COLLBENCH_MIN_BYTES:-0}
MAX_BYTES=${COLLBENCH_MAX_BYTES:-16777216}
ITERS_SCALE=${COLLBENCH_ITERS_SCALE:-1}
STAT_OVER_RANKS=${COLLBENCH_STAT:-avg}
if [[ $# -gt 0 ]]; then RANKS=("$@"); else RANKS=(2 8); fi

SCRIPT_NAME=collbench.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT must be a positive integer, not '$TIMEOUT'"
[[ $MIN_BYTES =~ ^[0-9]+$ ]] || die "COLLBENCH_MIN_BYTES must be a non-negative integer, not '$MIN_BYTES'"
[[ $MAX_BYTES =~ ^[0-9]+$ ]] || die "COLLBENCH_MAX_BYTES must be a non-negative integer, not '$MAX_BYTES'"
if ! [[ $ITERS_SCALE =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] ||
    ! awk -v s="$ITERS_SCALE" 'BEGIN { exit !(s + 0 > 0) }'; then
    die "COLLBENCH_ITERS_SCALE must be a number > 0, not '$ITERS_SCALE'"
fi
case $STAT_OVER_RANKS in
    avg) STAT_TEXT="averaged over ranks" ;;
    min) STAT_TEXT="least over ranks (COLLBENCH_STAT=min)" ;;
    max) STAT_TEXT="greatest over ranks (COLLBENCH_STAT=max)" ;;
    *) die "COLLBENCH_STAT must be avg, min or max, not '$STAT_OVER_RANKS'" ;;
esac
check_counts "rank counts" "${RANKS[@]}"
check_counts "REPEAT" "$REPEAT"
read -r -a OPS_LIST <<<"${OPS:-}"
for op in "${OPS_LIST[@]}"; do
    known="${ALL_OPS[*]} ${EXTRA_OPS[*]}"
    [[ " $known " == *" $op "* ]] || die "unknown operation '$op' in OPS (known: $known)"
done
[[ ${#OPS_LIST[@]} -gt 0 ]] || OPS_LIST=("${ALL_OPS[@]}")
command -v timeout >/dev/null || die "needs timeout (coreutils)"

ensure_built "target/release/prun=$PRUN_BIN" "target/release/collbench=$COLLBENCH_BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/prun-collbench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- find and build the MPI reference ------------------------------------------

find_openmpi

MPICH_CC="" MPICH_RUN="" MPICH_STATUS="not run (set WITH_MPICH=1)"
if [[ $WITH_MPICH == 1 ]]; then
    find_mpich
fi

if [[ -n $OMPI_CC ]]; then
    mkdir "$WORK/ompi"
    if "$OMPI_CC" -O2 -o "$WORK/ompi/mpi_collbench" bench/mpi_collbench.c 2>"$WORK/err"; then
        OMPI_STATUS="$OMPI_RUN (Open MPI $({ "$OMPI_RUN" --version 2>/dev/null || true; } | awk 'NR == 1 { print $NF }'))"
    else
        OMPI_STATUS="$OMPI_CC failed to compile bench/mpi_collbench.c"
        sed 's/^/    /' "$WORK/err" >&2
        OMPI_CC=""
    fi
fi
if [[ -n $MPICH_CC ]]; then
    mkdir "$WORK/mpich"
    if "$MPICH_CC" -O2 -o "$WORK/mpich/mpi_collbench" bench/mpi_collbench.c 2>"$WORK/err"; then
        MPICH_STATUS="$MPICH_RUN ($({ "$MPICH_RUN" --version 2>/dev/null || true; } | awk '/Version:/ && !done { print "MPICH " $2; done = 1 }')), 2 ranks only"
    else
        MPICH_STATUS="$MPICH_CC failed to compile bench/mpi_collbench.c"
        sed 's/^/    /' "$WORK/err" >&2
        MPICH_CC=""
    fi
fi

# Open MPI's local ranks inherit mpirun's environment anyway; -x makes it explicit.
OMPI_ENV=()
for v in COLLBENCH_MIN_BYTES COLLBENCH_MAX_BYTES COLLBENCH_ITERS_SCALE COLLBENCH_STAT; do
    if [[ -n ${!v:-} ]]; then
        export "${v?}"
        OMPI_ENV+=(-x "$v")
    fi
done

# ---- running and collecting ----------------------------------------------------

declare -A RES  # "COLUMN op bytes" -> microseconds
declare -A STAT # COLUMN -> ok | timeout | failed
declare -A STEAL # COLUMN -> ms the hypervisor took from the machine during its runs
KEYS=()         # "op bytes" in table order
EXPECTED=()     # "op bytes" every run should print
declare -A HAVE_KEY
STATUS=0

add_key() {
    if [[ -z ${HAVE_KEY[$1]:-} ]]; then
        HAVE_KEY[$1]=1
        KEYS+=("$1")
    fi
}

# expected_keys N : the rows a run at N ranks should print, in table order, into
# KEYS and EXPECTED.
expected_keys() {
    local op s
    KEYS=()
    HAVE_KEY=()
    EXPECTED=()
    for op in "${OPS_LIST[@]}"; do
        if [[ $op == barrier ]]; then
            add_key "barrier 0"
            continue
        fi
        [[ $op == latency && $1 -lt 2 ]] && continue
        for s in "${SIZES[@]}"; do
            ((s >= 10#$MIN_BYTES && s <= 10#$MAX_BYTES)) && add_key "$op $s"
        done
    done
    EXPECTED=("${KEYS[@]}")
}

# run_one COLUMN DIR CMD... : run CMD in DIR with the timeout and record its lines
# in RES and its outcome in STAT.
run_one() {
    local col=$1 dir=$2 rc=0 op bytes us extra bad=0 got=0 key missing before stolen
    shift 2
    before=$(steal_ms)
    (cd "$dir" && exec timeout -k 30 "$TIMEOUT" "$@") >"$WORK/out" 2>"$WORK/err" </dev/null || rc=$?
    stolen=$(steal_since "$before")
    [[ -z $stolen ]] || STEAL[$col]=$((${STEAL[$col]:-0} + stolen))
    while read -r op bytes us extra || [[ -n $op ]]; do
        if [[ -z $extra && $op =~ ^[a-z_]+$ && $bytes =~ ^[0-9]+$ && $us =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
            local old=${RES["$col $op $bytes"]:-}
            if [[ -z $old ]] || awk -v a="$us" -v b="$old" 'BEGIN { exit !(a + 0 < b + 0) }'; then
                RES["$col $op $bytes"]=$us
            fi
            add_key "$op $bytes"
            got=$((got + 1))
        else
            bad=$((bad + 1))
        fi
    done <"$WORK/out"
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        STAT[$col]=timeout
        note "  $col: timed out after $TIMEOUT s"
    elif [[ $rc -ne 0 ]]; then
        STAT[$col]=failed
        note "  $col: exit status $rc"
    elif [[ $got -eq 0 && ${#EXPECTED[@]} -gt 0 ]]; then
        STAT[$col]=failed
        note "  $col: exit status 0 but no \"<op> <bytes> <avg_us>\" lines"
    else
        STAT[$col]=ok
        missing=()
        for key in "${EXPECTED[@]}"; do
            [[ -n ${RES["$col $key"]:-} ]] || missing+=("$key")
        done
        if [[ ${#missing[@]} -gt 0 ]]; then
            STATUS=1
            note "  $col: ${#missing[@]} expected lines missing, first: \"${missing[0]} ...\""
        fi
    fi
    if [[ $bad -gt 0 ]]; then
        note "  $col: ignored $bad stdout lines not of the form \"<op> <bytes> <avg_us>\":"
        grep -Ev '^[a-z_]+ [0-9]+ [0-9]+(\.[0-9]+)?$' "$WORK/out" | head -n 5 | sed 's/^/    /' >&2 || true
    fi
    if [[ ${STAT[$col]} != ok ]]; then
        STATUS=1
        if [[ -s $WORK/err ]]; then head -n 10 "$WORK/err" | sed 's/^/    stderr: /' >&2; fi
    fi
}

cell() { # cell COLUMN KEY
    local v=${RES["$1 $2"]:-}
    if [[ -n $v ]]; then
        printf '%s' "$v"
    elif [[ ${STAT[$1]} == ok ]]; then
        printf 'missing'
    else
        printf '%s' "${STAT[$1]}"
    fi
}

ratio() { # ratio A B
    if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]]; then
        awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'
    else
        printf -- '-'
    fi
}

# ---- the runs and the tables ---------------------------------------------------

echo "Collective benchmark: mean time per operation, $STAT_TEXT, $(nproc 2>/dev/null || echo '?') cores"
echo
echo "- ops: ${OPS_LIST[*]}; sizes $MIN_BYTES to $MAX_BYTES bytes; iterations scale $ITERS_SCALE"
echo "- prun: $PRUN_BIN ${PRUN_EXTRA[*]:+${PRUN_EXTRA[*]} }-n N $COLLBENCH_BIN"
echo "- Open MPI: $OMPI_STATUS${OMPI_EXTRA[*]:+, with ${OMPI_EXTRA[*]}}"
echo "- MPICH: $MPICH_STATUS"

for n in "${RANKS[@]}"; do
    RES=()
    STAT=()
    STEAL=()
    expected_keys "$n"

    mpich=""
    for rep in $(seq "$REPEAT"); do
        note "ranks $n: prun ($rep of $REPEAT) ..."
        run_one prun . "$PRUN_BIN" "${PRUN_EXTRA[@]}" -n "$n" "$COLLBENCH_BIN" "${OPS_LIST[@]}"

        if [[ -n $OMPI_CC ]]; then
            note "ranks $n: Open MPI ($rep of $REPEAT) ..."
            run_one ompi "$WORK/ompi" "$OMPI_RUN" --allow-run-as-root --oversubscribe "${OMPI_EXTRA[@]}" "${OMPI_ENV[@]}" \
                -n "$n" ./mpi_collbench "${OPS_LIST[@]}"
        fi

        if [[ -n $MPICH_CC && $n -eq 2 ]]; then
            mpich=1
            note "ranks $n: MPICH ($rep of $REPEAT) ..."
            run_one mpich "$WORK/mpich" "$MPICH_RUN" -n "$n" ./mpi_collbench "${OPS_LIST[@]}"
        fi
    done

    echo
    if [[ $n -eq 1 ]]; then echo "### 1 rank"; else echo "### $n ranks"; fi
    echo
    head="| op | bytes | prun (us) |"
    rule="|----|------:|----------:|"
    if [[ -n $OMPI_CC ]]; then
        head+=" Open MPI (us) | prun / Open MPI |"
        rule+="--------------:|----------------:|"
    fi
    if [[ -n $mpich ]]; then
        head+=" MPICH (us) | prun / MPICH |"
        rule+="-----------:|-------------:|"
    fi
    echo "$head"
    echo "$rule"
    for key in "${KEYS[@]}"; do
        p=$(cell prun "$key")
        row="| ${key% *} | ${key#* } | $p |"
        if [[ -n $OMPI_CC ]]; then
            o=$(cell ompi "$key")
            row+=" $o | $(ratio "$p" "$o") |"
        fi
        if [[ -n $mpich ]]; then
            m=$(cell mpich "$key")
            row+=" $m | $(ratio "$p" "$m") |"
        fi
        echo "$row"
    done
    if [[ -n ${STEAL[prun]:-} ]]; then
        echo
        line="CPU time the hypervisor took from the machine (steal) during the runs: prun ${STEAL[prun]} ms"
        [[ -z ${STEAL[ompi]:-} ]] || line+=", Open MPI ${STEAL[ompi]} ms"
        [[ -z ${STEAL[mpich]:-} ]] || line+=", MPICH ${STEAL[mpich]} ms"
        echo "$line"
    fi
done

exit "$STATUS"
