#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser and wire decoder (fuzz/fuzz_targets/), each for a
# bounded time, with cargo fuzz (libFuzzer).
#
# Usage:
#   bench/fuzz.sh [TARGET...]        (default: every target of fuzz/Cargo.toml)
#
# Environment:
#   SECONDS_PER_TARGET=60   how long each target runs
#
# Installs cargo-fuzz from crates.io when it is missing. libFuzzer needs nightly compiler flags;
# the stable toolchain accepts them with RUSTC_BOOTSTRAP=1, which this script sets for its own
# builds only. The corpus grows in fuzz/corpus/TARGET (not committed); a crash leaves its input
# in fuzz/artifacts/TARGET and fails the script: fix it, then keep the input in
# fuzz/regressions/TARGET/, which `cargo test` replays (launcher/src/robustness.rs,
# runtime/src/wire.rs).
# Exits 1 when a target crashed, 2 on bad arguments.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SCRIPT_NAME=fuzz.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-60}
check_counts SECONDS_PER_TARGET "$SECONDS_PER_TARGET"
if ! cargo fuzz --version >/dev/null 2>&1; then
    note "installing cargo-fuzz ..."
    cargo install -q --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
cd fuzz
if [[ $# -gt 0 ]]; then TARGETS=("$@"); else mapfile -t TARGETS < <(cargo fuzz list); fi
STATUS=0
echo "| target | seconds | runs | corpus | crashes |"
echo "|--------|--------:|-----:|-------:|--------:|"
for t in "${TARGETS[@]}"; do
    note "fuzzing $t for $SECONDS_PER_TARGET s ..."
    mkdir -p "corpus/$t"
    if [[ -d regressions/$t ]]; then
        cp -n regressions/"$t"/* "corpus/$t/" 2>/dev/null || true
    fi
    log=$(mktemp)
    rc=0
    cargo fuzz run "$t" -- -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -rss_limit_mb=1024 \
        >"$log" 2>&1 || rc=$?
    runs=$(grep -Eo '#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
    crashes=0
    if [[ $rc -ne 0 ]]; then
        crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
        STATUS=1
        tail -n 30 "$log" | sed 's/^/    /' >&2
    fi
    echo "| $t | $SECONDS_PER_TARGET | ${runs:-?} | $(find "corpus/$t" -type f | wc -l) | $crashes |"
    rm -f "$log"
done
exit "$STATUS"
