# Sourced by the service scripts (mpi.sh, slurm.sh, sshd.sh): one run of a script at a time, and
# Debian packages installed when missing.

# Runs the calling script again under a lock of its own `name`, once: test binaries and .ci/run
# may start it together. The lock stays with flock, not with the daemons and packages the run
# starts.
one_at_a_time() {
    local name=$1 var=PRUN_TEST_LOCKED_$1
    shift
    if [[ -z ${!var:-} ]]; then
        exec env "$var=1" flock --close "/tmp/prun-test-$name.lock" bash "${BASH_SOURCE[1]}" "$@"
    fi
}

# apt-get install of the packages, after updating the package lists if it fails at first;
# waits for dpkg's lock (another script may be installing).
apt_install() {
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -qq)
    export DEBIAN_FRONTEND=noninteractive
    "${apt[@]}" install -y "$@" >/dev/null 2>&1 ||
        { "${apt[@]}" update >/dev/null 2>&1 && "${apt[@]}" install -y "$@" >/dev/null; }
}
