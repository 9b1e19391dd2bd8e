#!/usr/bin/env bash
# Installs what the MPI tests need when it is missing (as root): Open MPI (mpirun, mpicc) and
# MPICH (mpiexec.mpich, mpicc.mpich) with their headers, and libclang for the mpi crate's
# bindings.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
one_at_a_time mpi "$@"
need=()
command -v mpicc.openmpi >/dev/null && command -v mpirun.openmpi >/dev/null || need+=(openmpi-bin libopenmpi-dev)
command -v mpicc.mpich >/dev/null && command -v mpiexec.mpich >/dev/null || need+=(mpich libmpich-dev)
# libclang itself (libclang.so or libclang-N.so), not libclang-cpp, which other packages bring
has_libclang() {
    local f
    for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so*; do
        [[ -e $f ]] && return 0
    done
    return 1
}
has_libclang || need+=(libclang-dev)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
apt_install "${need[@]}"
