# shellcheck shell=bash
# Shell helpers shared by the benchmark scripts; source it after setting SCRIPT_NAME.

# collbench's operations (what it runs when none is named) and those it runs only when named,
# and its message sizes: the same as bench/mpi_collbench.c's.
ALL_OPS=(latency barrier bcast allreduce gather scatter allgather)
EXTRA_OPS=(alltoall reduce_scatter gatherv scatterv allgatherv allreduce_with scan scan_with)
SIZES=(8 1024 65536 1048576 16777216)

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

# find_openmpi: sets OMPI_CC and OMPI_RUN to Open MPI's compiler and launcher (the .openmpi
# names, or plain names that are Open MPI), empty when it is not installed; OMPI_STATUS too.
# shellcheck disable=SC2034 # the variables are the caller's
find_openmpi() {
    OMPI_CC="" OMPI_RUN="" OMPI_STATUS="not installed"
    if command -v mpicc.openmpi >/dev/null && command -v mpirun.openmpi >/dev/null; then
        OMPI_CC=mpicc.openmpi OMPI_RUN=mpirun.openmpi
    elif command -v mpicc >/dev/null && command -v mpirun >/dev/null &&
        mpicc --showme:version >/dev/null 2>&1 &&
        mpirun --version 2>/dev/null | grep -Eq 'Open MPI|OpenRTE'; then
        OMPI_CC=mpicc OMPI_RUN=mpirun
    fi
}

# find_mpich: sets MPICH_CC and MPICH_RUN to MPICH's compiler and launcher (the .mpich names, or
# plain names that are MPICH), empty when it is not installed; MPICH_STATUS too.
# shellcheck disable=SC2034 # the variables are the caller's
find_mpich() {
    MPICH_CC="" MPICH_RUN="" MPICH_STATUS="not installed"
    if command -v mpicc.mpich >/dev/null && command -v mpiexec.mpich >/dev/null; then
        MPICH_CC=mpicc.mpich MPICH_RUN=mpiexec.mpich
    elif command -v mpicc >/dev/null && command -v mpiexec >/dev/null &&
        mpicc -v 2>/dev/null | grep -q MPICH &&
        mpiexec --version 2>/dev/null | grep -q HYDRA; then
        MPICH_CC=mpicc MPICH_RUN=mpiexec
    fi
}

# steal_ms: CPU time the hypervisor has taken from this machine since it booted (the steal
# column of /proc/stat, in ticks of 10 ms), in ms; empty where it cannot be read. Benchmarks
# print how much of it fell during their runs, to tell a disturbed figure from a slow one.
steal_ms() {
    awk '$1 == "cpu" && NF >= 9 { print $9 * 10; exit }' /proc/stat 2>/dev/null || true
}

# steal_since MS: steal time since steal_ms printed MS, in ms; empty where it cannot be read.
steal_since() {
    local now
    now=$(steal_ms)
    if [[ -n $1 && -n $now ]]; then echo $((now - $1)); fi
}
