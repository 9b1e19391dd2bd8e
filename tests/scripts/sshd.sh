#!/usr/bin/env bash
# A real sshd on loopback addresses 127.0.0.2 to 127.0.0.17, port 2222, for the multi-host tests:
# each address stands for one host. Keys and config live in /tmp/prun-test-sshd.
#   tests/scripts/sshd.sh start   installs openssh-server if missing (as root), starts sshd
#   tests/scripts/sshd.sh stop    stops it
# The tests start it themselves when it is not running; .ci/run stops it at the end.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
one_at_a_time sshd "$@"
dir=/tmp/prun-test-sshd
case "${1:-start}" in
start)
    if [[ -f $dir/sshd.pid ]] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; then
        exit 0
    fi
    if [[ ! -x /usr/sbin/sshd ]]; then
        apt_install openssh-server
    fi
    mkdir -p "$dir" /run/sshd
    chmod 711 "$dir" # listable by nobody; sshd reads userkey.pub as the login user
    [[ -f $dir/hostkey ]] || ssh-keygen -q -t ed25519 -N '' -f "$dir/hostkey"
    [[ -f $dir/userkey ]] || ssh-keygen -q -t ed25519 -N '' -f "$dir/userkey"
    {
        echo "Port 2222"
        for i in $(seq 2 17); do echo "ListenAddress 127.0.0.$i"; done
        echo "HostKey $dir/hostkey"
        echo "AuthorizedKeysFile $dir/userkey.pub"
        echo "PermitRootLogin prohibit-password"
        echo "PasswordAuthentication no"
        echo "UsePAM no"
        echo "StrictModes no"
        echo "MaxStartups 100:30:200"
        echo "MaxSessions 100"
        echo "PidFile $dir/sshd.pid"
        echo "SetEnv PRUN_VIA_SSH=1"
    } >"$dir/sshd_config"
    /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
    for _ in $(seq 50); do
        [[ -f $dir/sshd.pid ]] && break
        sleep 0.1
    done
    ;;
stop)
    if [[ -f $dir/sshd.pid ]]; then
        kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
        rm -f "$dir/sshd.pid"
    fi
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
