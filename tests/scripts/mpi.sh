#!/usr/bin/env bash
# Installs what the MPI tests need when it is missing (as root): Open MPI (mpirun, mpicc) and
# MPICH (mpiexec.mpich, mpicc.mpich) with their headers, and libclang for the mpi crate's
# bindings.
set -euo pipefail
need=()
command -v mpicc.openmpi >/dev/null && command -v mpirun.openmpi >/dev/null || need+=(openmpi-bin libopenmpi-dev)
command -v mpicc.mpich >/dev/null && command -v mpiexec.mpich >/dev/null || need+=(mpich libmpich-dev)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${need[@]}" >/dev/null; }
