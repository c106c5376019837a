// dist.c — the MPI layer of data-parallel runs (see dist.h).
#define _GNU_SOURCE
#include "dist.h"

#include <cblas.h>
#include <fcntl.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static int g_on;              // MPI initialized by dist_init
static int g_rank, g_size = 1;
static int g_agreed;          // err_get() holds an agreed "rank R: ..." message
static struct {
    int64_t calls, bytes;   // gradient allreduces, bytes reduced
    double seconds;
} g_stats;
#define MAX_TIMES 4096
static double g_times[MAX_TIMES];   // seconds of each gradient allreduce (the first MAX_TIMES)

#define MSG_MAX 4096

static int launched(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int dist_init(int *argc, char ***argv) {
    if (!launched()) return 0;
    int provided = 0;
    // FUNNELED: only the main thread calls MPI (OpenMP workers and the image prefetch thread never do)
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return err_set("MPI_Init failed (started by a launcher: OMPI_COMM_WORLD_SIZE/PMIX_RANK is set)");
    g_on = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    // threads: the node's online cores shared by the ranks on this node
    MPI_Comm node;
    int local = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
    }
    if (!getenv("OMP_NUM_THREADS")) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int t = cores > local ? (int)(cores / local) : 1;
        omp_set_num_threads(t);
        openblas_set_num_threads(t);
    }
    // one voice: rank 0 prints progress, warnings and the agreed error
    if (g_rank != 0) {   // stdout too: `eval --json` prints its object once
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            fflush(stdout);
            fflush(stderr);
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// One line on rank 0 after a training run: the gradient allreduces, each timed as the minimum
// over ranks (the last rank to arrive waits least: its time is the communication itself, not
// another rank's slower step). Every rank made the same calls.
static void report_allreduce(void) {
    int n = g_stats.calls < MAX_TIMES ? (int)g_stats.calls : MAX_TIMES;
    MPI_Allreduce(MPI_IN_PLACE, g_times, n, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    if (g_rank != 0) return;
    qsort(g_times, (size_t)n, sizeof *g_times, cmp_double);
    fprintf(stderr, "dist: %d ranks, %lld gradient allreduces of %.2f MB: median %.2f ms (min %.2f, max %.2f)\n", g_size,
            (long long)g_stats.calls, (double)g_stats.bytes / (double)g_stats.calls / 1e6, 1e3 * g_times[n / 2],
            1e3 * g_times[0], 1e3 * g_times[n - 1]);
}

int dist_finish(int status) {
    if (!g_on) return status;
    fflush(NULL);
    // the last agreement point, met by every rank that has not agreed on a failure yet: a rank
    // that failed outside one (before the first, the same config error everywhere, or after the
    // last) tells the others here or at their next one; a rank that had succeeded then exits 1
    // and rank 0 prints the failing rank's line (a failing rank printed its own already).
    if (!g_agreed) {
        int failed = status != 0 && status != 130;
        if (dist_sync(failed ? -1 : 0, NULL, 0) != 0 && !failed) {
            fprintf(stderr, "error: %s\n", err_get());
            status = 1;
        }
    }
    if (!g_agreed && g_stats.calls > 0) report_allreduce();
    MPI_Finalize();
    g_on = 0;
    return status;
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
int dist_agreed(void) { return g_agreed; }

int dist_sync(int rc, double *v, int n) {
    if (!g_on) return rc;
    int mine = rc ? g_rank : g_size, first = g_size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == g_size) {
        if (n > 0) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        return 0;
    }
    char msg[MSG_MAX];
    if (g_rank == first) snprintf(msg, sizeof msg, "%s", err_get());
    MPI_Bcast(msg, MSG_MAX, MPI_CHAR, first, MPI_COMM_WORLD);
    msg[MSG_MAX - 1] = 0;
    err_set("rank %d: %s", first, msg);
    g_agreed = 1;
    return -1;
}

void dist_allreduce_sum_f32(float *x, int64_t n) {
    if (!g_on) return;
    double t0 = now_seconds();
    // MPI counts are int: reduce in chunks of at most 2^30 floats (one call for any LoRA block)
    for (int64_t i = 0; i < n; i += (int64_t)1 << 30) {
        int64_t k = n - i < ((int64_t)1 << 30) ? n - i : ((int64_t)1 << 30);
        MPI_Allreduce(MPI_IN_PLACE, x + i, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    double dt = now_seconds() - t0;
    if (g_stats.calls < MAX_TIMES) g_times[g_stats.calls] = dt;
    g_stats.calls++;
    g_stats.bytes += n * (int64_t)sizeof(float);
    g_stats.seconds += dt;
}

int dist_same_u64(uint64_t x, const char *what) {
    if (!g_on) return 0;
    if (dist_sync(0, NULL, 0) != 0) return -1;   // a rank that failed before must not meet this collective
    uint64_t v[2] = {x, ~x}, r[2];   // min(x) and min(~x) = ~max(x): one call
    MPI_Allreduce(v, r, 2, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    if (r[0] == ~r[1]) return 0;
    return err_set("%s differs across ranks (checksums %016llx .. %016llx); the ranks diverged (different "
                   "builds, models, data or checkpoints on the nodes?)",
                   what, (unsigned long long)r[0], (unsigned long long)~r[1]);
}

void dist_to_root_f32(float *buf, int64_t n, int from) {
    if (!g_on || from == 0 || (g_rank != 0 && g_rank != from)) return;
    for (int64_t i = 0; i < n; i += (int64_t)1 << 30) {
        int k = (int)(n - i < ((int64_t)1 << 30) ? n - i : ((int64_t)1 << 30));
        if (g_rank == from) MPI_Send(buf + i, k, MPI_FLOAT, 0, 7, MPI_COMM_WORLD);
        else MPI_Recv(buf + i, k, MPI_FLOAT, from, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
}

