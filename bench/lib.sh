# shellcheck shell=bash
# Shell helpers shared by the benchmark scripts; source it after setting SCRIPT_NAME.

die() { echo "${SCRIPT_NAME:-bench}: $*" >&2; exit 2; }
note() { echo "$*" >&2; }

# check_counts NAME VALUE...: every VALUE must be a positive integer.
check_counts() {
    local what=$1 v
    shift
    for v in "$@"; do
        [[ $v =~ ^[1-9][0-9]*$ ]] || die "$what must be positive integers, not '$v'"
    done
}

# ensure_built DEFAULT=PATH...: builds the workspace when a binary at its default path is missing,
# then checks every binary exists (a path given by the user is never built).
ensure_built() {
    local pair default path need=0
    for pair in "$@"; do
        default=${pair%%=*} path=${pair#*=}
        [[ ! -x $path && $path == "$default" ]] && need=1
    done
    if ((need)); then
        note "building prun (cargo build --release -q) ..."
        cargo build --release -q
    fi
    for pair in "$@"; do
        path=${pair#*=}
        [[ -x $path ]] || die "$path not found"
    done
}
