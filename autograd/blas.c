// blas.c — the fp32 matrix product with its thread count chosen by size (see blas.h).
//
// A product below AG_SGEMM_PAR_MIN runs on the calling thread on oneDNN's fp32 kernels
// (mm32_1: AVX-512 where OpenBLAS runs its AVX2 kernels here, 1.3-1.5x per thread) when it is
// of the form C (+)= A·op(B); the rest (Aᵀ, the weight gradients' form) on OpenBLAS.
//
// OpenBLAS (OpenMP build) runs a product on omp_get_max_threads() threads when called outside
// a parallel region, so lowering the calling thread's thread count for one call is how a
// product is kept on one thread; the count is restored right after. Inside a parallel region
// OpenBLAS always runs on the calling thread alone (ag_sgemm_1's callers rely on it).
#include "blas.h"
#include "mm16.h"

#include <omp.h>

static void sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void ag_sgemm_1(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (omp_in_parallel()) {
        sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int nt = omp_get_max_threads();
    if (nt > 1) omp_set_num_threads(1);
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (nt > 1) omp_set_num_threads(nt);
}

void ag_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
              const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if ((double)M * (double)N * (double)K < (double)AG_SGEMM_PAR_MIN) {
        if (!ta && alpha == 1.0f && (beta == 0.0f || beta == 1.0f))   // oneDNN's fp32 kernels
            mm32_1(C, ldc, A, lda, B, ldb, M, N, K, tb, beta == 1.0f);
        else
            ag_sgemm_1(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
    else
        sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
