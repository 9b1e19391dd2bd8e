/*
 * OSU-style MPI reference for prun's `collbench`, used by bench/collbench.sh.
 * prun's collbench does exactly the same, so the two sets of numbers line up.
 *
 * Usage: mpirun -n N ./mpi_collbench [OPS...]
 *   OPS: latency barrier bcast allreduce gather scatter allgather alltoall reduce_scatter
 *        gatherv scatterv allgatherv allreduce_with scan scan_with
 *   (none means the first seven, in that order; given ops run in the order given)
 *
 * Sizes (bytes): 8 1024 65536 1048576 16777216, bounded by the environment
 * variables COLLBENCH_MIN_BYTES (default 0) and COLLBENCH_MAX_BYTES (default
 * 16777216); sizes outside them are skipped.
 *   latency    ping-pong between ranks 0 and 1, MPI_Send/MPI_Recv of MPI_BYTE;
 *              one-way time = round trip / 2; other ranks only join the
 *              barriers.  Skipped (note on stderr) with fewer than 2 ranks.
 *   barrier    MPI_Barrier; no size, reported with bytes 0.
 *   bcast      `bytes` MPI_BYTE from root 0.
 *   allreduce  bytes/8 MPI_DOUBLE, MPI_SUM; element values rank+1.
 *   gather     `bytes` MPI_BYTE per rank to root 0.
 *   scatter    `bytes` MPI_BYTE per rank from root 0.
 *   allgather  `bytes` MPI_BYTE per rank.
 *   alltoall   `bytes` MPI_BYTE per pair of ranks (as osu_alltoall); only when named.
 *   reduce_scatter  bytes/8 MPI_DOUBLE per rank's block (MPI_Reduce_scatter_block,
 *              MPI_SUM, element values rank+1, checked as allreduce's); only when named.
 *   gatherv, scatterv, allgatherv  as gather, scatter and allgather through MPI_Gatherv,
 *              MPI_Scatterv and MPI_Allgatherv, every count `bytes` (as osu_gatherv,
 *              osu_scatterv and osu_allgatherv); only when named.
 *   allreduce_with  as allreduce, the sum a user's operation (MPI_Op_create, commutative);
 *              only when named.
 *   scan       bytes/8 MPI_DOUBLE, MPI_Scan with MPI_SUM; only when named.
 *   scan_with  as scan, the operation a user's that is not commutative (MPI_Op_create,
 *              commute 0: each element keeps the lowest rank's value); only when named.
 *
 * Iterations per size (barrier counts as 0 bytes):
 *   iters  = clamp(67108864 / max(bytes, 1024), 10, 1000)   (integer division)
 *   warmup = max(2, iters / 10)                              (integer division)
 *   With COLLBENCH_ITERS_SCALE = s (a float > 0, default 1):
 *   iters  = max(2, (long)(iters * s)), warmup = max(1, (long)(warmup * s))
 *   (the cast truncates toward zero).
 *
 * Each warm-up and timed iteration is: MPI_Barrier, t0 = MPI_Wtime(), the
 * operation, t += MPI_Wtime() - t0; one more MPI_Barrier follows the last.
 * Each rank's mean is t / iters (for latency halved, ranks other than 0 and 1
 * not taking part); rank 0 gathers the means (MPI_Gather) and reports their
 * average, or with COLLBENCH_STAT=min or max their least or greatest (the
 * columns of the OSU benchmarks' -f).
 *
 * Buffers are allocated (page-aligned) once per size and memset before timing.  The
 * allreduce result (elements 0 and last) is checked once per size against
 * the sum of rank+1 over all ranks; a wrong result aborts the job.
 *
 * Output: rank 0 prints one line per measurement on stdout, nothing else:
 *     <op> <bytes> <avg_us>          (avg_us with 2 decimals, e.g. "bcast 1024 3.41")
 * Errors go to stderr; bad arguments or environment exit with status 2.
 *
 * Build: mpicc.openmpi -O2 -o mpi_collbench bench/mpi_collbench.c
 *        (add -DTHREAD_MULTIPLE to initialise with MPI_THREAD_MULTIPLE, as prun's MPI backend)
 *        mpicc.mpich   -O2 -o mpi_collbench bench/mpi_collbench.c
 */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ALL_OPS[] = {
    "latency", "barrier", "bcast", "allreduce", "gather", "scatter", "allgather",
};
#define N_ALL_OPS ((int)(sizeof ALL_OPS / sizeof ALL_OPS[0]))

static const long SIZES[] = {8, 1024, 65536, 1048576, 16777216};
#define N_SIZES ((int)(sizeof SIZES / sizeof SIZES[0]))

static int rank, nranks;
static double iters_scale = 1.0;
/* COLLBENCH_STAT: what report() prints of the ranks' means */
enum stat { STAT_AVG, STAT_MIN, STAT_MAX };
static enum stat stat = STAT_AVG;

static void die(const char *msg)
{
    fprintf(stderr, "mpi_collbench: rank %d: %s\n", rank, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

/* Page-aligned, as collbench's buffers: copies between buffers at different
 * offsets within their pages run 2 to 3 times slower on this machine. */
static void *xmalloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, n ? n : 1) != 0) p = NULL;
    if (!p) {
        char msg[96];
        snprintf(msg, sizeof msg, "out of memory allocating %zu bytes", n);
        die(msg);
    }
    return p;
}

static void iterations(long bytes, long *iters, long *warmup)
{
    long it = 67108864L / (bytes > 1024 ? bytes : 1024);
    if (it < 10) it = 10;
    if (it > 1000) it = 1000;
    long wu = it / 10 > 2 ? it / 10 : 2;
    it = (long)((double)it * iters_scale);
    wu = (long)((double)wu * iters_scale);
    *iters = it > 2 ? it : 2;
    *warmup = wu > 1 ? wu : 1;
}

/* The average (or COLLBENCH_STAT's figure) of the mean times (seconds) of the
 * ranks that take part, in microseconds, at rank 0. */
static void report(const char *op, long bytes, double my_mean, int take_part)
{
    double mine[2] = {my_mean, take_part ? 1.0 : 0.0}, *all = NULL;
    if (rank == 0) all = xmalloc(2 * sizeof(double) * (size_t)nranks);
    MPI_Gather(mine, 2, MPI_DOUBLE, all, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        double sum = 0.0, min = INFINITY, max = -INFINITY;
        int n = 0;
        for (int i = 0; i < nranks; i++) {
            if (all[2 * i + 1] == 0.0) continue;
            double m = all[2 * i];
            sum += m;
            n++;
            if (m < min) min = m;
            if (m > max) max = m;
        }
        double figure = stat == STAT_MIN ? min : stat == STAT_MAX ? max : sum / (n ? n : 1);
        printf("%s %ld %.2f\n", op, bytes, figure * 1e6);
        fflush(stdout);
        free(all);
    }
}

/* ---- the operations --------------------------------------------------------- */

struct bufs {
    long bytes;
    char *send, *recv;
    double *dsend, *drecv;
    long ndoubles, nsend; /* doubles received, and sent (more for reduce_scatter) */
};

typedef void (*op_fn)(struct bufs *);

static void do_latency(struct bufs *b)
{
    if (rank == 0) {
        MPI_Send(b->send, (int)b->bytes, MPI_BYTE, 1, 1, MPI_COMM_WORLD);
        MPI_Recv(b->recv, (int)b->bytes, MPI_BYTE, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else if (rank == 1) {
        MPI_Recv(b->recv, (int)b->bytes, MPI_BYTE, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(b->send, (int)b->bytes, MPI_BYTE, 0, 1, MPI_COMM_WORLD);
    }
}

static void do_barrier(struct bufs *b)
{
    (void)b;
    MPI_Barrier(MPI_COMM_WORLD);
}

static void do_bcast(struct bufs *b)
{
    MPI_Bcast(b->send, (int)b->bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
}

static void do_allreduce(struct bufs *b)
{
    MPI_Allreduce(b->dsend, b->drecv, (int)b->ndoubles, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

static void do_reduce_scatter(struct bufs *b)
{
    MPI_Reduce_scatter_block(b->dsend, b->drecv, (int)b->ndoubles, MPI_DOUBLE, MPI_SUM,
                             MPI_COMM_WORLD);
}

static void do_gather(struct bufs *b)
{
    MPI_Gather(b->send, (int)b->bytes, MPI_BYTE, b->recv, (int)b->bytes, MPI_BYTE, 0,
               MPI_COMM_WORLD);
}

static void do_scatter(struct bufs *b)
{
    MPI_Scatter(b->send, (int)b->bytes, MPI_BYTE, b->recv, (int)b->bytes, MPI_BYTE, 0,
                MPI_COMM_WORLD);
}

static void do_allgather(struct bufs *b)
{
    MPI_Allgather(b->send, (int)b->bytes, MPI_BYTE, b->recv, (int)b->bytes, MPI_BYTE,
                  MPI_COMM_WORLD);
}

static void do_alltoall(struct bufs *b)
{
    MPI_Alltoall(b->send, (int)b->bytes, MPI_BYTE, b->recv, (int)b->bytes, MPI_BYTE,
                 MPI_COMM_WORLD);
}

/* Counts and displacements of the v variants: `bytes` from each rank, in rank order. */
static int *vcounts, *vdispls;

static void do_gatherv(struct bufs *b)
{
    MPI_Gatherv(b->send, (int)b->bytes, MPI_BYTE, b->recv, vcounts, vdispls, MPI_BYTE, 0,
                MPI_COMM_WORLD);
}

static void do_scatterv(struct bufs *b)
{
    MPI_Scatterv(b->send, vcounts, vdispls, MPI_BYTE, b->recv, (int)b->bytes, MPI_BYTE, 0,
                 MPI_COMM_WORLD);
}

static void do_allgatherv(struct bufs *b)
{
    MPI_Allgatherv(b->send, (int)b->bytes, MPI_BYTE, b->recv, vcounts, vdispls, MPI_BYTE,
                   MPI_COMM_WORLD);
}

/* The user's operation of allreduce_with: the f64 sum. */
static void sum_doubles(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void)type;
    double *a = in, *b = inout;
    for (int i = 0; i < *len; i++) b[i] += a[i];
}

static MPI_Op user_sum;

static void do_allreduce_with(struct bufs *b)
{
    MPI_Allreduce(b->dsend, b->drecv, (int)b->ndoubles, MPI_DOUBLE, user_sum, MPI_COMM_WORLD);
}

static void do_scan(struct bufs *b)
{
    MPI_Scan(b->dsend, b->drecv, (int)b->ndoubles, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

/* The user's operation of scan_with, not commutative: the first of the two (MPI folds
 * `in`, from lower ranks, before `inout`). */
static void first_doubles(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void)type;
    memcpy(inout, in, (size_t)*len * sizeof(double));
}

static MPI_Op user_first;

static void do_scan_with(struct bufs *b)
{
    MPI_Scan(b->dsend, b->drecv, (int)b->ndoubles, MPI_DOUBLE, user_first, MPI_COMM_WORLD);
}

/* Mean time (seconds) of one operation on this rank. */
static double time_op(op_fn fn, struct bufs *b, long iters, long warmup)
{
    for (long i = 0; i < warmup; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        fn(b);
    }
    double total = 0.0;
    for (long i = 0; i < iters; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        fn(b);
        total += MPI_Wtime() - t0;
    }
    /* and one after the last, as OSU's (a barrier after each operation): no rank
     * goes on to fill the next size's buffers while others still time this one */
    MPI_Barrier(MPI_COMM_WORLD);
    return total / (double)iters;
}

/* Runs one operation at one size (bytes ignored for barrier) and reports it. */
static void run(const char *op, long bytes)
{
    struct bufs b = {0};
    size_t n = (size_t)bytes, all = (size_t)bytes * (size_t)nranks;
    op_fn fn;

    if (!strcmp(op, "latency")) {
        fn = do_latency;
        if (rank <= 1) {
            b.send = xmalloc(n);
            b.recv = xmalloc(n);
        }
    } else if (!strcmp(op, "barrier")) {
        fn = do_barrier;
    } else if (!strcmp(op, "bcast")) {
        fn = do_bcast;
        b.send = xmalloc(n);
    } else if (!strcmp(op, "allreduce")) {
        fn = do_allreduce;
        b.ndoubles = bytes / 8;
        b.nsend = b.ndoubles;
        b.dsend = xmalloc((size_t)b.ndoubles * sizeof(double));
        b.drecv = xmalloc((size_t)b.ndoubles * sizeof(double));
    } else if (!strcmp(op, "allreduce_with") || !strcmp(op, "scan") || !strcmp(op, "scan_with")) {
        fn = !strcmp(op, "scan") ? do_scan : !strcmp(op, "scan_with") ? do_scan_with : do_allreduce_with;
        b.ndoubles = bytes / 8;
        b.nsend = b.ndoubles;
        b.dsend = xmalloc((size_t)b.ndoubles * sizeof(double));
        b.drecv = xmalloc((size_t)b.ndoubles * sizeof(double));
    } else if (!strcmp(op, "reduce_scatter")) {
        fn = do_reduce_scatter;
        b.ndoubles = bytes / 8;
        b.nsend = b.ndoubles * nranks;
        b.dsend = xmalloc((size_t)b.nsend * sizeof(double));
        b.drecv = xmalloc((size_t)b.ndoubles * sizeof(double));
    } else if (!strcmp(op, "gather")) {
        fn = do_gather;
        b.send = xmalloc(n);
        if (rank == 0) b.recv = xmalloc(all);
    } else if (!strcmp(op, "scatter")) {
        fn = do_scatter;
        if (rank == 0) b.send = xmalloc(all);
        b.recv = xmalloc(n);
    } else if (!strcmp(op, "allgather")) {
        fn = do_allgather;
        b.send = xmalloc(n);
        b.recv = xmalloc(all);
    } else if (!strcmp(op, "alltoall")) {
        fn = do_alltoall;
        b.send = xmalloc(all);
        b.recv = xmalloc(all);
    } else if (!strcmp(op, "gatherv")) {
        fn = do_gatherv;
        b.send = xmalloc(n);
        if (rank == 0) b.recv = xmalloc(all);
    } else if (!strcmp(op, "scatterv")) {
        fn = do_scatterv;
        if (rank == 0) b.send = xmalloc(all);
        b.recv = xmalloc(n);
    } else if (!strcmp(op, "allgatherv")) {
        fn = do_allgatherv;
        b.send = xmalloc(n);
        b.recv = xmalloc(all);
    } else {
        die("internal error: unknown op"); /* checked in main */
        return;
    }
    b.bytes = bytes;

    vcounts = xmalloc((size_t)nranks * sizeof(int));
    vdispls = xmalloc((size_t)nranks * sizeof(int));
    for (int r = 0; r < nranks; r++) {
        vcounts[r] = (int)bytes;
        vdispls[r] = (int)(bytes * r);
    }

    /* Touch everything before timing. */
    int whole_send = fn == do_scatter || fn == do_alltoall || fn == do_scatterv;
    int whole_recv = fn == do_gather || fn == do_allgather || fn == do_alltoall || fn == do_gatherv ||
                     fn == do_allgatherv;
    if (b.send) memset(b.send, rank + 1, whole_send ? all : n);
    if (b.recv) memset(b.recv, 0, whole_recv ? all : n);
    for (long i = 0; i < b.nsend; i++) b.dsend[i] = (double)(rank + 1);
    for (long i = 0; i < b.ndoubles; i++) b.drecv[i] = 0.0;

    long iters, warmup;
    iterations(bytes, &iters, &warmup);
    double mean = time_op(fn, &b, iters, warmup);
    if (fn == do_latency) mean /= 2.0; /* one way: half the round trip */

    if ((fn == do_allreduce || fn == do_allreduce_with || fn == do_reduce_scatter || fn == do_scan ||
         fn == do_scan_with) &&
        b.ndoubles > 0) {
        /* the sum over every rank, or (scan) over ranks 0..rank, or (scan_with) rank 0's value */
        double last = fn == do_scan ? rank + 1 : fn == do_scan_with ? 1 : nranks;
        double want = last * (last + 1) / 2.0;
        double got0 = b.drecv[0], gotn = b.drecv[b.ndoubles - 1];
        if (got0 != want || gotn != want) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "%s of %ld doubles is wrong: element 0 = %g, last = %g, want %g", op,
                     b.ndoubles, got0, gotn, want);
            die(msg);
        }
    }

    report(op, bytes, mean, fn != do_latency || rank <= 1);

    free(b.send);
    free(b.recv);
    free(b.dsend);
    free(b.drecv);
    free(vcounts);
    free(vdispls);
}

/* ---- main -------------------------------------------------------------------- */

static int known_op(const char *s)
{
    for (int i = 0; i < N_ALL_OPS; i++)
        if (!strcmp(s, ALL_OPS[i])) return 1;
    /* only when named */
    return !strcmp(s, "alltoall") || !strcmp(s, "reduce_scatter") || !strcmp(s, "gatherv") ||
           !strcmp(s, "scatterv") || !strcmp(s, "allgatherv") || !strcmp(s, "allreduce_with") ||
           !strcmp(s, "scan") || !strcmp(s, "scan_with");
}

/* Parses the environment; returns an error message or NULL. */
static const char *read_env(long *min_bytes, long *max_bytes)
{
    const char *s;
    char *end;

    *min_bytes = 0;
    if ((s = getenv("COLLBENCH_MIN_BYTES")) && *s) {
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || *end || v < 0) return "COLLBENCH_MIN_BYTES must be a non-negative integer";
        *min_bytes = v;
    }
    *max_bytes = 16777216L;
    if ((s = getenv("COLLBENCH_MAX_BYTES")) && *s) {
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || *end || v < 0) return "COLLBENCH_MAX_BYTES must be a non-negative integer";
        *max_bytes = v;
    }
    if ((s = getenv("COLLBENCH_ITERS_SCALE")) && *s) {
        errno = 0;
        double v = strtod(s, &end);
        if (errno || *end || !isfinite(v) || !(v > 0.0))
            return "COLLBENCH_ITERS_SCALE must be a number > 0";
        iters_scale = v;
    }
    if ((s = getenv("COLLBENCH_STAT")) && *s) {
        if (!strcmp(s, "avg")) stat = STAT_AVG;
        else if (!strcmp(s, "min")) stat = STAT_MIN;
        else if (!strcmp(s, "max")) stat = STAT_MAX;
        else return "COLLBENCH_STAT must be avg, min or max";
    }
    return NULL;
}

int main(int argc, char **argv)
{
#ifdef THREAD_MULTIPLE
    /* built with -DTHREAD_MULTIPLE: the thread level prun's MPI backend runs at */
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
#else
    MPI_Init(&argc, &argv);
#endif
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);

    /* Every rank checks the same arguments and environment, so all agree. */
    long min_bytes, max_bytes;
    const char *err = read_env(&min_bytes, &max_bytes), *bad = "";
    for (int i = 1; !err && i < argc; i++)
        if (!known_op(argv[i])) err = "unknown operation: ", bad = argv[i];
    if (err) {
        if (rank == 0) {
            fprintf(stderr, "mpi_collbench: %s%s\n", err, bad);
            if (*bad)
                fprintf(stderr, "usage: mpi_collbench [latency|barrier|bcast|allreduce|gather|"
                                "scatter|allgather|alltoall|reduce_scatter|gatherv|scatterv|"
                                "allgatherv|allreduce_with|scan|scan_with]...\n");
        }
        MPI_Finalize();
        return 2;
    }

    MPI_Op_create(sum_doubles, 1, &user_sum);
    MPI_Op_create(first_doubles, 0, &user_first);
    int nops = argc > 1 ? argc - 1 : N_ALL_OPS;
    for (int k = 0; k < nops; k++) {
        const char *op = argc > 1 ? argv[k + 1] : ALL_OPS[k];
        if (!strcmp(op, "barrier")) {
            run(op, 0);
            continue;
        }
        if (!strcmp(op, "latency") && nranks < 2) {
            if (rank == 0) fprintf(stderr, "mpi_collbench: latency needs 2 ranks, skipped\n");
            continue;
        }
        for (int i = 0; i < N_SIZES; i++)
            if (SIZES[i] >= min_bytes && SIZES[i] <= max_bytes) run(op, SIZES[i]);
    }

    MPI_Op_free(&user_sum);
    MPI_Op_free(&user_first);
    MPI_Finalize();
    return 0;
}
