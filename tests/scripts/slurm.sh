#!/usr/bin/env bash
# A real one-node Slurm cluster (slurmctld, slurmd, munge from Debian's packages) for the
# allocation tests. As root; installs slurm-wlm and munge when missing. State lives in
# /tmp/prun-test-slurm.
#   tests/scripts/slurm.sh start | stop
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
one_at_a_time slurm "$@"
dir=/tmp/prun-test-slurm
host=$(hostname)
case "${1:-start}" in
start)
    if pgrep -x slurmctld >/dev/null && pgrep -x slurmd >/dev/null && sinfo -h >/dev/null 2>&1; then
        exit 0
    fi
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        apt_install slurm-wlm munge
    fi
    mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge "$dir/state" "$dir/spool" /etc/slurm
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    fi
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
    cpus=$(nproc)
    cat >/etc/slurm/slurm.conf <<CONF
ClusterName=prun-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
NodeName=$host CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    for _ in $(seq 100); do
        if sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix|alloc"; then exit 0; fi
        sleep 0.2
    done
    echo "slurm.sh: the test cluster did not come up; see $dir/*.log" >&2
    exit 1
    ;;
stop)
    scontrol shutdown >/dev/null 2>&1 || true
    for name in slurmd slurmctld munged; do
        pkill -x "$name" 2>/dev/null || true
    done
    for _ in $(seq 50); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x munged >/dev/null || break
        sleep 0.1
    done
    for name in slurmd slurmctld munged; do
        pkill -9 -x "$name" 2>/dev/null || true
    done
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
