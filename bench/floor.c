/*
 * What this machine's kernel mechanisms cost, without prun or MPI: the floor under prun's socket
 * transport (and its pipes), beside the shared memory MPI libraries use. Used by bench/floor.sh.
 *
 * Usage: ./floor [N]   (N processes, default 2; 2 or more)
 *
 * Prints one line per measurement, "<mechanism> <bytes> <us>":
 *   hop-socket 8        a token of 8 bytes passed around a ring of N processes over Unix
 *                       socket pairs, each waiting in a blocking read: time per hop (with N = 2,
 *                       a ping-pong's one-way time)
 *   hop-shm-yield 8     the same over shared memory, each polling a flag and calling
 *                       sched_yield between polls (how Open MPI waits where ranks share cores)
 *   copy-memcpy B       memcpy of B bytes within one process, buffers touched beforehand
 *   copy-pipe B         B bytes from process 0 to 1 through a 1 MiB pipe, the sender lending its
 *                       pages (vmsplice) and the receiver copying them out: one copy, as prun's
 *                       large messages between ranks of a host
 *   copy-socket B       B bytes from process 0 to 1 written to a Unix socket and read: two copies
 *   copy-cma B          B bytes read by process 1 out of process 0 (process_vm_readv), one copy,
 *                       as Open MPI's and MPICH's cross-memory attach
 *   copy-shm B          B bytes copied by process 0 into memory both share, then out of it by
 *                       process 1: two copies in user space, no system call but the answer
 *                       (what a shared-memory transport would do with a large message)
 * for B = 1 MiB and 16 MiB; each copy-* time is one transfer and a one-byte answer, averaged over
 * the last 80% of the iterations. While 0 and 1 copy, the other processes wait in a blocking
 * read. Then, with N up to ALLGATHER_MAX_PROCS, every process takes part in
 *   allgather-cma B     an allgather of B = 1 MiB per process: each copies its own block into
 *                       its N * B buffer and reads every other's out of its owner
 *                       (process_vm_readv), as prun's and Open MPI's large allgathers do
 *   allgather-shm B     the same, each block first copied into memory all share, then out of it
 *                       by every other process (user-space copies; one copy in serves N - 1)
 *   allgather-cma-told B  as allgather-cma, but as a library must do it: each process tells
 *                       every other where its block is over a socket once the call has begun
 *                       (its buffer is not known, nor ready, before), reads each block as it
 *                       is told of it (whichever comes first), answers its owner with one
 *                       byte, and returns once every other has answered it (the caller may
 *                       then write its block again): the floor under a large allgather read
 *                       straight out of the senders' memory
 *   allgather-cma-doubling B  the same by recursive doubling (N a power of two): in round k
 *                       each process tells its partner (itself xor 2^k) where the 2^k blocks
 *                       it holds are, reads the partner's, and answers; the floor under
 *                       prun's and Open MPI's large allgathers on 4 and 8 ranks
 * each the time of one whole call, from a barrier that starts it on every process to the
 * barrier that ends it on every process (a process-shared pthread barrier, which sleeps in the
 * kernel): what the copies cost on this machine's cores, with nothing else to do. (Averaging
 * over processes, each timing from when it leaves the first barrier, as the OSU benchmarks and
 * collbench do, gives less: processes released later time less.) Exits 2 on bad arguments, 1
 * if a system call fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 256
/* Most processes the allgather rows run with (each holds N blocks of 1 MiB). */
#define ALLGATHER_MAX_PROCS 16
#define HOPS 4000

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void fail(const char *what) {
    fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void read_all(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, (char *)buf + got, n - got);
        if (k > 0) got += (size_t)k;
        else if (k == 0 || errno != EINTR) fail("read");
    }
}

static void write_all(int fd, const void *buf, size_t n) {
    size_t put = 0;
    while (put < n) {
        ssize_t k = write(fd, (const char *)buf + put, n - put);
        if (k > 0) put += (size_t)k;
        else if (errno != EINTR) fail("write");
    }
}

/* Shared between the processes: ring flags, and a start signal for the copy phase. */
struct shared {
    _Atomic long turn; /* the hop count; process (turn % n) holds the token */
    _Atomic int go;    /* copy phase: 1 while a transfer is to be taken */
};

static int n_procs;
static int ring[MAX_PROCS][2]; /* ring[i]: socket pair from process i to process i + 1 */
static int wake[MAX_PROCS][2]; /* wake[i]: socket pair that ends process i's wait */
/* tell[i][j]: socket pair from process i (end 0) to j (end 1), for the allgather rows that tell */
static int tell[ALLGATHER_MAX_PROCS][ALLGATHER_MAX_PROCS][2];

/* Process `me` in the socket ring: HOPS hops in all; returns the time per hop (process 0). */
static double socket_ring(int me) {
    char token[8] = {0};
    int left = ring[(me + n_procs - 1) % n_procs][1], right = ring[me][0];
    /* whole rounds, so that the last hop brings the token back to process 0 */
    long hops = HOPS - HOPS % n_procs;
    double t0 = now();
    for (long hop = me; hop < hops; hop += n_procs) {
        if (hop > 0) read_all(left, token, sizeof token);
        write_all(right, token, sizeof token);
    }
    if (me == 0) read_all(left, token, sizeof token);
    return (now() - t0) / hops * 1e6;
}

static double shm_ring(int me, struct shared *s) {
    double t0 = now();
    for (long hop = me; hop < HOPS; hop += n_procs) {
        while (atomic_load(&s->turn) != hop) sched_yield();
        atomic_store(&s->turn, hop + 1);
    }
    if (me == 0)
        while (atomic_load(&s->turn) != HOPS) sched_yield();
    return (now() - t0) / HOPS * 1e6;
}

/* One transfer of `n` bytes from process 0 (`src`) to process 1 (`dst`) by `how`. */
enum how { PIPE, SOCKET, CMA, SHM };
static char *shm_buf; /* copy-shm's shared buffer, mapped before fork */

static double copies(int me, enum how how, size_t n, char *src, char *dst, int pipefd[2],
                     pid_t sender) {
    int iters = n >= (8u << 20) ? 20 : 200, skip = iters / 5;
    int sock0 = ring[0][0], sock1 = ring[0][1];
    char byte = 1;
    double t0 = 0;
    for (int i = 0; i < iters; i++) {
        if (i == skip) t0 = now();
        if (me == 0) {
            if (how == PIPE) {
                write_all(sock0, &byte, 1);
                struct iovec v = {src, n};
                while (v.iov_len > 0) {
                    ssize_t k = vmsplice(pipefd[1], &v, 1, 0);
                    if (k < 0) fail("vmsplice");
                    v.iov_base = (char *)v.iov_base + k;
                    v.iov_len -= (size_t)k;
                }
            } else if (how == SOCKET) {
                write_all(sock0, src, n);
            } else if (how == SHM) {
                memcpy(shm_buf, src, n);
                write_all(sock0, &byte, 1);
            } else {
                write_all(sock0, &byte, 1);
            }
            read_all(sock0, &byte, 1);
        } else {
            if (how == PIPE) {
                read_all(sock1, &byte, 1);
                read_all(pipefd[0], dst, n);
            } else if (how == SOCKET) {
                read_all(sock1, dst, n);
            } else if (how == SHM) {
                read_all(sock1, &byte, 1);
                memcpy(dst, shm_buf, n);
            } else {
                read_all(sock1, &byte, 1);
                struct iovec local = {dst, n}, remote = {src, n};
                if (process_vm_readv(sender, &local, 1, &remote, 1, 0) != (ssize_t)n)
                    fail("process_vm_readv");
            }
            write_all(sock1, &byte, 1);
        }
    }
    return (now() - t0) / (iters - skip) * 1e6;
}

/* What the allgather rows share: a barrier, every process's id, and the staging blocks. */
struct gathering {
    pthread_barrier_t barrier;
    pid_t pids[ALLGATHER_MAX_PROCS];
};

/* How the allgather rows move the blocks. */
enum gather_how { GATHER_CMA, GATHER_SHM, GATHER_CMA_TOLD, GATHER_CMA_DOUBLING };

/* Reads `b` bytes at `where` in process `pid` into `into`. */
static void read_from(pid_t pid, char *into, const char *where, size_t b) {
    struct iovec local = {into, b}, remote = {(void *)where, b};
    if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != (ssize_t)b) fail("process_vm_readv");
}

/* allgather-cma-told's call on process `me`, its own block already in place in `all`. */
static void gather_told(int me, size_t b, struct gathering *g, const char *own, char *all) {
    for (int k = 1; k < n_procs; k++) write_all(tell[me][(me + k) % n_procs][0], &own, sizeof own);
    struct pollfd fds[ALLGATHER_MAX_PROCS];
    int from[ALLGATHER_MAX_PROCS], left = n_procs - 1;
    for (int k = 1; k < n_procs; k++) {
        from[k - 1] = (me + n_procs - k) % n_procs;
        fds[k - 1] = (struct pollfd){.fd = tell[from[k - 1]][me][1], .events = POLLIN};
    }
    while (left > 0) {
        if (poll(fds, n_procs - 1, -1) < 0 && errno != EINTR) fail("poll");
        for (int i = 0; i < n_procs - 1; i++) {
            if (fds[i].fd < 0 || !fds[i].revents) continue;
            const char *where;
            read_all(fds[i].fd, &where, sizeof where);
            read_from(g->pids[from[i]], all + from[i] * b, where, b);
            write_all(fds[i].fd, "", 1);
            fds[i].fd = -1; /* poll skips it from now on */
            left--;
        }
    }
    for (int k = 1; k < n_procs; k++) {
        char answer;
        read_all(tell[me][(me + k) % n_procs][0], &answer, 1);
    }
}

/* allgather-cma-doubling's call on process `me` (`n_procs` a power of two). */
static void gather_doubling(int me, size_t b, struct gathering *g, char *all) {
    for (int k = 1; k < n_procs; k <<= 1) {
        int partner = me ^ k;
        const char *mine = all + (size_t)(me & ~(k - 1)) * b, *theirs;
        write_all(tell[me][partner][0], &mine, sizeof mine);
        read_all(tell[partner][me][1], &theirs, sizeof theirs);
        read_from(g->pids[partner], all + (size_t)(partner & ~(k - 1)) * b, theirs, k * b);
        write_all(tell[partner][me][1], "", 1);
        char answer;
        read_all(tell[me][partner][0], &answer, 1);
    }
}

/* Process `me`'s part in allgathers of `b` bytes from `own` (at the same address in every
 * process) into `all`: read out of the owners (`how` GATHER_CMA; GATHER_CMA_TOLD and
 * GATHER_CMA_DOUBLING with the owners' messages) or staged through `stage` (GATHER_SHM);
 * returns the time per call (on process 0). */
static double allgathers(int me, enum gather_how how, size_t b, struct gathering *g, const char *own,
                         char *all, char *stage) {
    int shm = how == GATHER_SHM;
    int iters = 100, skip = iters / 5;
    double t0 = 0;
    memset(all, 0, n_procs * b); /* so that the check below sees this row's blocks */
    for (int i = 0; i < iters; i++) {
        pthread_barrier_wait(&g->barrier);
        if (i == skip) t0 = now();
        memcpy(all + me * b, own, b);
        if (shm) {
            memcpy(stage + me * b, own, b);
            pthread_barrier_wait(&g->barrier);
        }
        if (how == GATHER_CMA_TOLD) {
            gather_told(me, b, g, own, all);
            continue;
        }
        if (how == GATHER_CMA_DOUBLING) {
            gather_doubling(me, b, g, all);
            continue;
        }
        for (int k = 1; k < n_procs; k++) {
            int q = (me + n_procs - k) % n_procs; /* from the previous process on */
            if (shm) memcpy(all + q * b, stage + q * b, b);
            else read_from(g->pids[q], all + q * b, own, b);
        }
    }
    pthread_barrier_wait(&g->barrier);
    for (int q = 0; q < n_procs; q++)
        if (all[q * b + b / 2] != (char)(q + 1)) {
            fprintf(stderr, "floor: allgather: process %d has a wrong block from %d\n", me, q);
            exit(1);
        }
    return (now() - t0) / (iters - skip) * 1e6;
}

int main(int argc, char **argv) {
    n_procs = argc > 1 ? atoi(argv[1]) : 2;
    if (n_procs < 2 || n_procs > MAX_PROCS) {
        fprintf(stderr, "usage: floor [N]   (2 <= N <= %d)\n", MAX_PROCS);
        return 2;
    }
    const size_t sizes[] = {1u << 20, 16u << 20};
    struct shared *s =
        mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) fail("mmap");
    shm_buf = mmap(NULL, sizes[1], PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm_buf == MAP_FAILED) fail("mmap");
    memset(shm_buf, 3, sizes[1]);
    for (int i = 0; i < n_procs; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, ring[i]) || socketpair(AF_UNIX, SOCK_STREAM, 0, wake[i]))
            fail("socketpair");
    }
    /* the allgather rows' barrier, process ids, blocks and staging memory */
    const size_t block = 1u << 20;
    int gather = n_procs <= ALLGATHER_MAX_PROCS;
    for (int i = 0; gather && i < n_procs; i++)
        for (int j = 0; j < n_procs; j++)
            if (i != j && socketpair(AF_UNIX, SOCK_STREAM, 0, tell[i][j])) fail("socketpair");
    struct gathering *g =
        mmap(NULL, sizeof *g, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char *stage = mmap(NULL, gather ? n_procs * block : 1, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char *own = aligned_alloc(4096, block);
    if (g == MAP_FAILED || stage == MAP_FAILED) fail("mmap");
    if (!own) fail("aligned_alloc");
    pthread_barrierattr_t shared_attr;
    pthread_barrierattr_init(&shared_attr);
    pthread_barrierattr_setpshared(&shared_attr, PTHREAD_PROCESS_SHARED);
    if (gather && pthread_barrier_init(&g->barrier, &shared_attr, n_procs)) fail("pthread_barrier_init");
    int pipefd[2];
    if (pipe(pipefd)) fail("pipe");
    fcntl(pipefd[1], F_SETPIPE_SZ, 1 << 20);
    /* the sender's buffer, shared by fork (copy on write: process 0 touches it first) */
    char *src = aligned_alloc(4096, sizes[1]);
    if (!src) fail("aligned_alloc");
    memset(src, 1, sizes[1]);
    pid_t sender = getpid();
    int me = 0;
    for (int i = 1; i < n_procs; i++) {
        pid_t pid = fork();
        if (pid < 0) fail("fork");
        if (pid == 0) {
            me = i;
            break;
        }
    }
    /* process 0 shares its time for every ring; process 1 receives the copies */
    char *dst = me == 1 ? aligned_alloc(4096, sizes[1]) : NULL;
    if (me == 1) memset(dst, 0, sizes[1]);
    double hop = socket_ring(me);
    /* every process reaches the shared-memory ring after the socket ring ended for all */
    char byte = 0;
    if (me == 0) {
        printf("hop-socket 8 %.2f\n", hop);
        atomic_store(&s->turn, 0);
        for (int i = 1; i < n_procs; i++) write_all(wake[i][0], &byte, 1);
    } else {
        read_all(wake[me][1], &byte, 1);
    }
    hop = shm_ring(me, s);
    if (me == 0) printf("hop-shm-yield 8 %.2f\n", hop);
    if (me == 0) {
        char *a = aligned_alloc(4096, sizes[1]), *b = aligned_alloc(4096, sizes[1]);
        if (!a || !b) fail("aligned_alloc");
        memset(a, 1, sizes[1]);
        memset(b, 2, sizes[1]);
        for (int k = 0; k < 2; k++) {
            int iters = k ? 20 : 200;
            double t0 = 0;
            for (int i = 0; i < iters; i++) {
                if (i == iters / 5) t0 = now();
                memcpy(b, a, sizes[k]);
                __asm__ volatile("" ::: "memory");
            }
            printf("copy-memcpy %zu %.1f\n", sizes[k], (now() - t0) / (iters - iters / 5) * 1e6);
        }
    }
    if (me <= 1) {
        const char *names[] = {"copy-pipe", "copy-socket", "copy-cma", "copy-shm"};
        for (int h = PIPE; h <= SHM; h++)
            for (int k = 0; k < 2; k++) {
                double t = copies(me, (enum how)h, sizes[k], src, dst, pipefd, sender);
                if (me == 0) printf("%s %zu %.1f\n", names[h], sizes[k], t);
            }
    }
    fflush(stdout);
    /* the idle processes wait in a blocking read until the copies are done */
    if (me == 0) {
        for (int i = 2; i < n_procs; i++) write_all(wake[i][0], &byte, 1);
    } else if (me >= 2) {
        read_all(wake[me][1], &byte, 1);
    }
    if (gather) {
        /* own block at the same address in every process, its bytes its own (copied on write) */
        memset(own, me + 1, block);
        g->pids[me] = getpid();
        char *all = aligned_alloc(4096, n_procs * block);
        if (!all) fail("aligned_alloc");
        memset(all, 0, n_procs * block);
        memset(stage, 0, n_procs * block);
        const char *names[] = {"allgather-cma", "allgather-shm", "allgather-cma-told",
                               "allgather-cma-doubling"};
        int powers = (n_procs & (n_procs - 1)) == 0;
        for (int how = GATHER_CMA; how <= (powers ? GATHER_CMA_DOUBLING : GATHER_CMA_TOLD); how++) {
            double t = allgathers(me, (enum gather_how)how, block, g, own, all, stage);
            if (me == 0) printf("%s %zu %.1f\n", names[how], block, t);
        }
        fflush(stdout);
    }
    if (me == 0)
        while (wait(NULL) > 0) {}
    return 0;
}
