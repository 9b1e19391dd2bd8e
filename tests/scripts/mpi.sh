#!/usr/bin/env bash
# Installs Open MPI (mpirun, mpicc) for the `prun --mpi` tests when it is missing (as root).
set -euo pipefail
if command -v mpicc.openmpi >/dev/null && command -v mpirun.openmpi >/dev/null; then
    exit 0
fi
apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null; }
