#!/usr/bin/env bash
# Launch time across hosts: `hello` at 64 ranks over loopback "hosts" (127.0.0.2, .3, ...) served
# by one real sshd (tests/scripts/sshd.sh, port 2222), prun against Open MPI's mpirun through the
# same ssh command, median of RUNS runs; then prun over 4, 8 and 16 hosts.
#
# Usage: bench/multihost.sh            (as root; starts the test sshd if needed)
# Environment:
#   RUNS=3
#   SSH_USER=prunbench  the login on the "hosts". The default is a plain account (created here,
#                       shell /bin/sh) because Debian's bash sources ~/.bashrc for every ssh
#                       command, and root's .bashrc on this machine runs `pyenv init` twice: about
#                       0.15 s of processor time per session, which dwarfs everything else measured
#                       here. SSH_USER=root measures with it.
#   SSH_KEX=curve25519-sha256  the key exchange. OpenSSH 9's default, sntrup761x25519, costs the
#                       client about 0.13 s of processor time per connection; every client runs on
#                       these same two cores. SSH_KEX=default keeps OpenSSH's choice.
# Both launchers use the same ssh command, so these settings apply to both.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SSH_USER=${SSH_USER:-prunbench}
SSH_KEX=${SSH_KEX:-curve25519-sha256}
bash tests/scripts/sshd.sh start
[[ -x target/release/prun && -x target/release/hello ]] || cargo build --release -q
KEY=/tmp/prun-test-sshd/userkey
if [[ $SSH_USER != root ]]; then
    # The account, its authorized key, and a copy of the private key that the account's own
    # agents can read (the launch tree starts agents from agents).
    id "$SSH_USER" >/dev/null 2>&1 || useradd -m -s /bin/sh "$SSH_USER"
    usermod -p '*' "$SSH_USER" # unlocked for key logins, no password
    home=$(getent passwd "$SSH_USER" | cut -d: -f6)
    install -d -o "$SSH_USER" -m 700 "$home/.ssh"
    install -o "$SSH_USER" -m 600 "$KEY" "$home/.ssh/prun-bench-key"
    chmod 711 /tmp/prun-test-sshd # sshd reads the authorized key file as the user
    KEY=$home/.ssh/prun-bench-key
fi
SSH="ssh -p 2222 -i $KEY -l $SSH_USER -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
[[ $SSH_KEX == default ]] || SSH="$SSH -o KexAlgorithms=$SSH_KEX"
WORK=$(mktemp -d)
chmod 755 "$WORK" # the MPI program runs as $SSH_USER
trap 'rm -rf "$WORK"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { # command... ; prints seconds, fails if the command fails
    local t0 t1
    t0=$EPOCHREALTIME
    "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}
hostfile() { # hosts slots
    for i in $(seq 2 $(($1 + 1))); do echo "127.0.0.$i slots=$2"; done >"$WORK/hosts.$1"
    echo "$WORK/hosts.$1"
}
prun_time() { # hosts
    local hf
    hf=$(hostfile "$1" $((64 / $1)))
    for _ in $(seq "$RUNS"); do
        timed target/release/prun -n 64 --hostfile "$hf" --launch-agent "$SSH" target/release/hello
    done | median
}

echo "Launch of hello, 64 ranks over loopback hosts through one sshd, median of $RUNS runs, 2 cores"
echo "(login $SSH_USER, key exchange $SSH_KEX)"
echo
p8=$(prun_time 8)
ompi="not installed"
if command -v mpicc.openmpi >/dev/null && command -v mpirun.openmpi >/dev/null; then
    mpicc.openmpi -O2 -o "$WORK/mpi_hello" bench/mpi_hello.c
    hf=$(hostfile 8 8)
    ompi=$(for _ in $(seq "$RUNS"); do
        PMIX_MCA_gds=hash OMPI_MCA_btl_vader_single_copy_mechanism=none timed mpirun.openmpi --allow-run-as-root \
            --hostfile "$hf" --mca plm_rsh_agent "$SSH" --mca btl self,tcp -x PMIX_MCA_gds=hash \
            -n 64 "$WORK/mpi_hello"
    done | median)
fi
echo "| hosts | prun (s) | Open MPI (s) | prun / Open MPI |"
echo "| ---: | ---: | ---: | ---: |"
ratio=$(awk -v p="$p8" -v o="$ompi" 'BEGIN { if (o + 0 > 0) printf "%.3f", p / o; else print "-" }')
echo "| 8 | $p8 | $ompi | $ratio |"
echo
p4=$(prun_time 4)
p16=$(prun_time 16)
echo "| hosts | prun (s) |"
echo "| ---: | ---: |"
echo "| 4 | $p4 |"
echo "| 8 | $p8 |"
echo "| 16 | $p16 |"
echo
echo "16 hosts / 4 hosts: $(awk -v a="$p16" -v b="$p4" 'BEGIN { printf "%.2f", a / b }') (target < 2)"
base=$(for _ in $(seq "$RUNS"); do
    timed bash -c "for i in \$(seq 2 9); do $SSH -o BatchMode=yes 127.0.0.\$i true & done; wait"
done | median)
echo "for reference, 8 parallel 'ssh HOST true' through the same sshd: $base s"
