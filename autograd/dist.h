// dist.h — data parallelism over MPI (Open MPI): the only file that calls MPI.
//
// `mpirun -np N lorac train|eval|prepare ...` runs N ranks of the same binary. dist_init
// initializes MPI only when a launcher started the process (its environment names a rank:
// OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK); a plain `lorac` run never touches MPI, and
// every function below is then a cheap no-op for one rank (rank 0 of size 1).
//
// How the ranks stay in step: every collective is reached by all ranks in the same order.
// A failure on one rank must not leave the others blocked, so status travels with the data:
// dist_sync(rc, v, n) is the one agreement point (a rank that failed calls it with rc = -1
// from its error path; the others call it at their next agreement point, which has the same
// shape). If any rank failed, every rank returns -1 with the message of the lowest failing
// rank as "rank R: <message>"; rank 0 alone prints it (the other ranks' stderr goes to
// /dev/null after dist_init, so progress lines, warnings and the error appear once).
// Operations that cannot fail on one rank alone (the gradient allreduce, the checksum
// comparison) run only after an agreement point that succeeded.
//
// Defaults under a launcher: OpenMP/OpenBLAS threads = online cores / ranks on this node
// (unless OMP_NUM_THREADS is set; train.threads overrides both).
#ifndef LORAC_DIST_H
#define LORAC_DIST_H

#include <stdint.h>

// Initializes MPI when launched by mpirun/srun; 0, or -1 + err_set.
int dist_init(int *argc, char ***argv);
// Finalizes MPI (when initialized) and returns the status to exit with.
int dist_finish(int status);
int dist_rank(void);      // 0 without a launcher
int dist_size(void);      // 1 without a launcher

// The agreement point described above. rc: this rank's status (0, or -1 with err_set). On
// success the n doubles of v are summed across ranks in place (v may be NULL when n = 0).
int dist_sync(int rc, double *v, int n);
// 1 when err_get() already holds an agreed message (a dist_sync failure), so an error path
// must not call dist_sync again.
int dist_agreed(void);
// Sums x [n] across ranks in place (one MPI_Allreduce). Timed: after a training run rank 0
// prints one `dist:` line with the calls, their size and the median/min/max milliseconds.
void dist_allreduce_sum_f32(float *x, int64_t n);
// -1 + err_set("<what> differs across ranks ...") unless every rank passed the same value.
int dist_same_u64(uint64_t x, const char *what);
// Rank 0 receives the n floats of rank `from` into buf (a send on `from`, nothing elsewhere).
void dist_to_root_f32(float *buf, int64_t n, int from);

#endif
