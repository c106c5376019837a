// blas.h — lorac's one door to the fp32 matrix product (issue 17: thread count by size).
//
// ag_sgemm is cblas_sgemm (row-major) with one rule on top: a product smaller than
// AG_SGEMM_PAR_MIN multiply-adds runs on the calling thread alone (on oneDNN's fp32 kernels
// when its first operand is not transposed, see blas.c). A parallel sgemm wakes the
// other threads and ends on a barrier; for a small product that costs more than the second
// core gives back, and on a busy machine the barrier waits for a thread parked behind another
// process (milliseconds per product). The rule depends only on the shape, so a small product
// gets the same single-thread bits whatever OMP_NUM_THREADS is; a large one is split as
// OpenBLAS splits it (its bits depend on the thread count, as they always did).
// Call it outside OpenMP parallel regions (inside one, OpenBLAS runs single-threaded).
#pragma once
#include <cblas.h>
#include <stdint.h>

// multiply-adds (M·N·K) below which a product stays on one thread. Measured on the small model
// of `make bench-busy` (hidden 256, ~240-270 rows a step, its projections 16M-63M): with the
// one-thread products on oneDNN's kernels, 64M made its quiet step 6-7% faster than 8M (every
// projection split over two OpenBLAS threads) and next to a busy process 1.3-1.4x faster (no
// barrier waiting for a parked thread). The 1B shapes' projections (512 rows: 537M+) are split.
// `lorac bench threads` prints one thread against all threads for the shapes lorac runs.
#define AG_SGEMM_PAR_MIN (64ll << 20)

// C[M,N] = alpha · op(A) · op(B) + beta · C, row-major, as cblas_sgemm
void ag_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
              const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

// the same product always on the calling thread (for callers that split the work themselves)
void ag_sgemm_1(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
