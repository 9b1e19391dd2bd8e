#!/usr/bin/env python3
"""Peak resident memory of a prun rank.

Usage (from the repository root):

    target/release/prun -n 2 python3 bench/rss_probe.py target/release/hello [ARGS...]

Runs ``PROGRAM ARGS...`` as a child process that inherits this process's
environment and file descriptors (so it joins the prun job in the probe's
place), waits for it, and prints

    max_rss_kib=<peak resident set size of the child, in KiB>

The exit status is the child's (128+N if it died from signal N).

Why not simply ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after
``subprocess.run``: Linux folds the high-water mark of the address space a
process had *before* ``execve`` into its ``ru_maxrss``.  A child forked or
vforked by Python starts out with Python's address space, so every child of
the interpreter reports at least the interpreter's own RSS (about 10-14 MiB),
whatever it does after exec; that would hide the number we want.  So the
probe lets a small ``/bin/sh`` start the program in the background and exit;
the program is then re-parented to the probe (a child subreaper) and reaped
with ``wait4``, whose ``ru_maxrss`` covers the program itself (and any
children it reaped) plus only the shell's small pre-exec footprint (~1 MiB).
The value is the maximum over everything the probe reaps except the shell,
i.e. what ``RUSAGE_CHILDREN`` would say without the interpreter's footprint.
"""

import ctypes
import os
import sys
import tempfile

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: rss_probe.py PROGRAM [ARGS...]", file=sys.stderr)
        return 2

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        print(f"rss_probe: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}", file=sys.stderr)
        return 1

    sys.stdout.flush()
    # sh starts the program in the background, writes its pid to a file and
    # exits; the program is then re-parented to us.  `<&0` keeps stdin (an
    # asynchronous list would otherwise get /dev/null).
    with tempfile.NamedTemporaryFile(prefix="rss_probe.", suffix=".pid") as pidfile:
        shell = os.posix_spawn(
            "/bin/sh",
            ["sh", "-c", 'f=$1; shift; "$@" <&0 & echo $! >"$f"', "sh", pidfile.name, *sys.argv[1:]],
            os.environ,
        )
        _, wstatus = os.waitpid(shell, 0)
        if os.waitstatus_to_exitcode(wstatus) != 0:
            print(f"rss_probe: sh failed to start {sys.argv[1]}", file=sys.stderr)
            return 127
        program = int(open(pidfile.name).read())

    # Reap the program and anything it left behind (orphans are re-parented to us too).
    max_rss = None
    status = 127
    while True:
        try:
            pid, wstatus, usage = os.wait4(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        max_rss = usage.ru_maxrss if max_rss is None else max(max_rss, usage.ru_maxrss)
        if pid == program:
            code = os.waitstatus_to_exitcode(wstatus)
            status = 128 - code if code < 0 else code

    if max_rss is None:
        print("rss_probe: the program was never reaped", file=sys.stderr)
        return 127
    print(f"max_rss_kib={max_rss}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
