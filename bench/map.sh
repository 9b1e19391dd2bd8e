#!/usr/bin/env bash
# Dynamic-map benchmark: prun's map examples against their targets, and the
# Python multiprocessing peer (bench/map_peers.py) in the same invocation.
#
# Usage:
#   bench/map.sh [RANKS...]          (default ranks: 2 16)
#
# Runs, with target/release/prun:
#   maprate        at 2 ranks       aggregate items/s of a trivial map_range, and the
#                                   efficiency of 1 us tasks (maprate 2000000 1000):
#                                   speedup over the same items in a plain loop, per rank
#   skew           at each RANKS    static and dynamic efficiency, heavy tasks first
#   primes         at 2 ranks       static and dynamic speedup over one rank
#   map_peers.py RANKS...           the same measures with multiprocessing.Pool
#                                   (when python3 is installed)
# and prints a markdown table of the figures with their targets beside them:
#   maprate >= 40 M items/s at 2 ranks; skew dynamic efficiency >= 0.99 at 2
#   ranks and >= 0.98 at 16 ranks; primes dynamic speedup >= 1.9 at 2 ranks.
#
# Environment:
#   PRUN_BIN      launcher (default target/release/prun)
#   EXAMPLES_DIR  folder of maprate, skew and primes (default target/release)
#   TIMEOUT=600   seconds before one run is ended (prun --timeout)
#   SKEW_RUNS=3   runs of skew at each rank count; the table shows the median run, and
#                 every run's dynamic efficiency with the CPU time the hypervisor took
#                 from the machine during its dynamic map (steal, see skew's output)
# The other rows give the steal time during their run too: on a virtual machine, a large
# figure there means the row was disturbed rather than slow.
#
# Run it from anywhere; it works from the repository root. If a default binary
# is missing it runs `cargo build --release -q` first. Progress and errors go to
# stderr. Exits 1 if a run failed (a missed target is reported, not an error),
# 2 on bad arguments.

set -euo pipefail
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TIMEOUT=${TIMEOUT:-600}
SKEW_RUNS=${SKEW_RUNS:-3}
PRUN_BIN=${PRUN_BIN:-target/release/prun}
EXAMPLES_DIR=${EXAMPLES_DIR:-target/release}
if [[ $# -gt 0 ]]; then RANKS=("$@"); else RANKS=(2 16); fi

SCRIPT_NAME=map.sh
source bench/lib.sh

[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT must be a positive integer, not '$TIMEOUT'"
[[ $SKEW_RUNS =~ ^[1-9][0-9]*$ ]] || die "SKEW_RUNS must be a positive integer, not '$SKEW_RUNS'"
for n in "${RANKS[@]}"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "rank counts must be positive integers, not '$n'"
done

missing=0
[[ -x $PRUN_BIN || $PRUN_BIN != target/release/prun ]] || missing=1
for b in maprate skew primes; do
    [[ -x $EXAMPLES_DIR/$b || $EXAMPLES_DIR != target/release ]] || missing=1
done
if [[ $missing == 1 ]]; then
    note "building prun and the examples (cargo build --release -q) ..."
    cargo build --release -q
fi
[[ -x $PRUN_BIN ]] || die "$PRUN_BIN not found"
for b in maprate skew primes; do
    [[ -x $EXAMPLES_DIR/$b ]] || die "$EXAMPLES_DIR/$b not found"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/prun-mapbench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STATUS=0
ROWS=()

# run NAME N ARGS... : run example NAME at N ranks; its stdout ends up in $WORK/out.
# Sets STOLEN to the steal time during the run (ms, or ?). Returns non-zero (and reports)
# when the run fails.
run() {
    local name=$1 n=$2 rc=0 before
    shift 2
    note "  $name at $n ranks ..."
    before=$(steal_ms)
    "$PRUN_BIN" --timeout "$TIMEOUT" -n "$n" "$EXAMPLES_DIR/$name" "$@" \
        >"$WORK/out" 2>"$WORK/err" </dev/null || rc=$?
    STOLEN=$(steal_since "$before")
    STOLEN=${STOLEN:-?}
    if [[ $rc -ne 0 ]]; then
        note "  $name at $n ranks: exit status $rc"
        sed 's/^/    /' "$WORK/err" >&2
        STATUS=1
        return 1
    fi
}

# value KEY : the field after KEY on the first line of $WORK/out starting with KEY.
value() {
    awk -v k="$1" '$1 == k { print $2; exit }' "$WORK/out"
}

# field KEY N : field N of the first line of $WORK/out starting with KEY.
field() {
    awk -v k="$1" -v n="$2" '$1 == k { print $n; exit }' "$WORK/out"
}

# row WHAT RANKS FIGURE [OP TARGET [SCALE UNIT]] : one table row; "met" compares
# FIGURE >= TARGET; with SCALE, both are shown divided by it, followed by UNIT.
row() {
    local what=$1 n=$2 fig=$3 op=${4:-} target=${5:-} scale=${6:-} unit=${7:-} met="" shown="-"
    if [[ -n $op ]]; then
        shown="$op $target"
        [[ -z $scale ]] || shown="$op $(awk -v t="$target" -v s="$scale" 'BEGIN { printf "%.1f", t / s }')$unit"
        if [[ -z $fig ]]; then
            met="failed"
        elif awk -v f="$fig" -v t="$target" 'BEGIN { exit !(f + 0 >= t + 0) }'; then
            met="yes"
        else
            met="**no**"
        fi
    fi
    if [[ -z $fig ]]; then
        fig="failed"
    elif [[ -n $scale ]]; then
        fig="$(awk -v f="$fig" -v s="$scale" 'BEGIN { printf "%.1f", f / s }')$unit"
    fi
    ROWS+=("| $what | $n | $fig | $shown | $met |")
}

note "map.sh: prun's map examples"

rate=""
if run maprate 2; then rate=$(value items_per_s); fi
row "maprate items/s (steal $STOLEN ms)" 2 "$rate" "≥" 40000000 1000000 " M"

eff=""
if run maprate 2 2000000 1000; then eff=$(value efficiency); fi
row "efficiency of 1 us tasks against a plain loop (maprate 2000000 1000; steal $STOLEN ms)" 2 "$eff" "≥" 0.90

for n in "${RANKS[@]}"; do
    # SKEW_RUNS runs; the rows show the run of median dynamic efficiency, and every run's
    # efficiency with the CPU time the hypervisor took from the machine during its dynamic map
    runs=()
    for ((k = 0; k < SKEW_RUNS; k++)); do
        if run skew "$n"; then
            steal=$(awk '$1 == "cpu" && /steal/ { print $NF == "ms" ? $(NF - 1) : "?" }' "$WORK/out")
            runs+=("$(value dynamic_efficiency) $(value static_efficiency) $(field static 3) $(field dynamic 3) ${steal:-?}")
        fi
    done
    se="" de="" sm="" dm="" all=""
    if [[ ${#runs[@]} -gt 0 ]]; then
        mapfile -t runs < <(printf '%s\n' "${runs[@]}" | sort -n)
        read -r de se sm dm _ <<<"${runs[$(((${#runs[@]} - 1) / 2))]}"
        all=$(printf '%s\n' "${runs[@]}" | awk '{ printf "%s%s (steal %s ms)", (NR > 1 ? ", " : ""), $1, $5 }')
    fi
    row "skew static efficiency (makespan ${sm:-?} s)" "$n" "$se"
    what="skew dynamic efficiency (makespan ${dm:-?} s; runs: ${all:-none})"
    case $n in
    2) row "$what" "$n" "$de" "≥" 0.99 ;;
    16) row "$what" "$n" "$de" "≥" 0.98 ;;
    *) row "$what" "$n" "$de" ;;
    esac
done

ss="" ds="" seq=""
if run primes 2; then
    seq=$(value sequential)
    ss=$(field static 5)
    ds=$(field dynamic 5)
fi
row "primes static speedup (sequential ${seq:-?} s; steal during the run $STOLEN ms)" 2 "$ss"
row "primes dynamic speedup" 2 "$ds" "≥" 1.9

PEERS=""
if command -v python3 >/dev/null; then
    note "map.sh: the Python peer (bench/map_peers.py ${RANKS[*]})"
    if python3 bench/map_peers.py "${RANKS[@]}" >"$WORK/peers" 2>"$WORK/err"; then
        PEERS=$(cat "$WORK/peers")
    else
        note "  map_peers.py failed:"
        sed 's/^/    /' "$WORK/err" >&2
        STATUS=1
    fi
else
    note "map.sh: python3 not found, no peer figures"
fi

echo "prun map benchmarks ($(nproc) cores, bench/map.sh ${RANKS[*]})"
echo
echo "| measure | ranks | figure | target | met |"
echo "| --- | ---: | ---: | ---: | :---: |"
printf '%s\n' "${ROWS[@]}"
if [[ -n $PEERS ]]; then
    echo "$PEERS"
fi
exit "$STATUS"
