// test_mm_linear.c — the fused linear of the SigLIP tower (mm_linear, autograd/mm16.h):
// y (+)= act(x·Wᵀ + b) with fp32 and BF16 weights, every activation, with and without the
// residual add, against a double-precision reference on the same operands; the same bits at
// 1 and 2 threads; and the emulated BF16 path (oneDNN limited to AVX2, as on a CPU without
// AVX-512: widened sgemm + lorac's epilogue) against the same reference.
// And mm32_1, the one-thread fp32 product of the cross-entropy's small pass: strided operands,
// both orientations, against the reference; the same bits outside and inside a parallel
// region, on every thread of it, and at 1 and 3 threads; and no harm from signals arriving
// mid-product (a timer signal every 30 µs: oneDNN's kernels keep data below the stack pointer,
// so mm16.c blocks signals around each execute; without that this case crashed every time).
#include <omp.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mm16.h"
#include "test.h"

static float frand(uint64_t *s) {   // uniform in [-1, 1)
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*s >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static double act_ref(double v, mm_act act) {
    if (act == MM_GELU_TANH) return 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
    if (act == MM_GELU_ERF) return 0.5 * v * (1.0 + erf(v * 0.7071067811865476));
    return v;
}

// One product of [M, In] · [O, In]ᵀ for every (storage, activation, accumulate); returns the
// number of failed cases. Bound per element: fp32 accumulation of In products errs by at most
// In·u·Σ|x_k·w_k| (u = 2⁻²⁴, any summation order), + a few ulp of |b|, |y_old| and the
// activation (GELU's slope is below 1.13, oneDNN's GELU within a few ulp): (In + 8)·u times
// the sum of the magnitudes.
static int check_products(int M, int O, int In, const char *where) {
    int bad = 0;
    uint64_t s = (uint64_t)M * 1000003 + (uint64_t)O * 101 + (uint64_t)In;
    float *x = malloc(sizeof(float) * M * In), *W = malloc(sizeof(float) * O * In), *b = malloc(sizeof(float) * O);
    float *y0 = malloc(sizeof(float) * M * O), *y = malloc(sizeof(float) * M * O);
    uint16_t *W16 = malloc(sizeof(uint16_t) * O * In), *x16 = malloc(sizeof(uint16_t) * M * In);
    for (int i = 0; i < M * In; i++) x[i] = 2 * frand(&s);
    for (int i = 0; i < O * In; i++) W[i] = 0.1f * frand(&s);
    for (int i = 0; i < O; i++) b[i] = frand(&s);
    for (int i = 0; i < M * O; i++) y0[i] = frand(&s);
    bf16_round(W16, W, O * In);
    bf16_round(x16, x, M * In);
    for (int bf = 0; bf < 2; bf++)
        for (int act = MM_ACT_NONE; act <= MM_GELU_ERF; act++)
            for (int acc = 0; acc < 2; acc++) {
                memcpy(y, y0, sizeof(float) * M * O);
                mm_linear(y, x, bf ? NULL : W, bf ? W16 : NULL, b, M, O, In, (mm_act)act, acc);
                double worst = 0;
                for (int i = 0; i < M; i++)
                    for (int o = 0; o < O; o++) {
                        double z = b[o], mag = fabs(b[o]);
                        for (int k = 0; k < In; k++) {
                            double xv = bf ? bf16_to_f32(x16[i * In + k]) : x[i * In + k];
                            double wv = bf ? bf16_to_f32(W16[o * In + k]) : W[o * In + k];
                            z += xv * wv, mag += fabs(xv * wv);
                        }
                        double want = act_ref(z, (mm_act)act) + (acc ? y0[i * O + o] : 0.0);
                        mag += acc ? fabs(y0[i * O + o]) : 0.0;
                        double e = fabs(y[i * O + o] - want) / ((In + 8) * ldexp(mag, -24));
                        if (!(e <= worst)) worst = e;   // NaN counts as the worst
                    }
                if (!(worst <= 1.0)) {
                    test_fail("%s [%d,%d]x[%d,%d]ᵀ %s act %d acc %d: error %.3g of the bound", where, M, In, O, In,
                              bf ? "bf16" : "fp32", act, acc, worst);
                    bad++;
                }
            }
    free(x), free(W), free(b), free(y0), free(y), free(W16), free(x16);
    return bad;
}

static void test_fused(void) {
    check_products(37, 48, 40, "native");
    check_products(196, 96, 160, "native");
}

// The fp32 and BF16 products give the same bits at 1 and 2 threads (oneDNN splits the output
// rows/columns, never the reduction, so the SigLIP features do not depend on the thread count).
static void test_threads(void) {
    int M = 392, O = 192, In = 128;
    uint64_t s = 7;
    float *x = malloc(sizeof(float) * M * In), *W = malloc(sizeof(float) * O * In), *b = malloc(sizeof(float) * O);
    float *y1 = malloc(sizeof(float) * M * O), *y2 = malloc(sizeof(float) * M * O);
    uint16_t *W16 = malloc(sizeof(uint16_t) * O * In);
    for (int i = 0; i < M * In; i++) x[i] = frand(&s);
    for (int i = 0; i < O * In; i++) W[i] = frand(&s);
    for (int i = 0; i < O; i++) b[i] = frand(&s);
    bf16_round(W16, W, O * In);
    int nt = omp_get_max_threads();
    for (int bf = 0; bf < 2; bf++) {
        for (int i = 0; i < M * O; i++) y1[i] = y2[i] = (float)i;
        omp_set_num_threads(1);
        mm_linear(y1, x, bf ? NULL : W, bf ? W16 : NULL, b, M, O, In, MM_GELU_TANH, 1);
        omp_set_num_threads(2);
        mm_linear(y2, x, bf ? NULL : W, bf ? W16 : NULL, b, M, O, In, MM_GELU_TANH, 1);
        CHECK(!memcmp(y1, y2, sizeof(float) * M * O), "%s: 1 and 2 threads differ", bf ? "bf16" : "fp32");
    }
    omp_set_num_threads(nt);
    free(x), free(W), free(b), free(y1), free(y2), free(W16);
}


// mm32_1: C[M, N] = A[M, K]·op(B) with row strides larger than the rows (as the cross-entropy
// pieces: a column slice of the logits), B as Bᵀ of [N, K] or as [K, N]; returns failed cases.
// Bound as above: K·u·Σ|a·b| (fp32 accumulation of K products, any order).
static int check_mm32(int M, int N, int K, const char *where) {
    int bad = 0;
    uint64_t s = (uint64_t)M * 7919 + (uint64_t)N * 31 + (uint64_t)K;
    int64_t lda = K + 5, ldb = (N > K ? N : K) + 3, ldc = N + 7;
    float *A = malloc(sizeof(float) * M * lda), *B = malloc(sizeof(float) * (N > K ? N : K) * ldb);
    float *C = malloc(sizeof(float) * M * ldc), *C2 = malloc(sizeof(float) * M * ldc);
    for (int64_t i = 0; i < M * lda; i++) A[i] = frand(&s);
    for (int64_t i = 0; i < (N > K ? N : K) * ldb; i++) B[i] = frand(&s);
    int nt = omp_get_max_threads();
    for (int bt = 0; bt < 2; bt++) {
        for (int64_t i = 0; i < M * ldc; i++) C[i] = C2[i] = -7.0f;
        mm32_1(C, ldc, A, lda, B, ldb, M, N, K, bt, 0);
        double worst = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double z = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    double p = (double)A[i * lda + k] * (bt ? B[j * ldb + k] : B[k * ldb + j]);
                    z += p, mag += fabs(p);
                }
                double e = fabs(C[i * ldc + j] - z) / ((K + 2) * ldexp(mag, -24));
                if (!(e <= worst)) worst = e;
            }
        int pad = 0;   // the stride's gap is not written
        for (int i = 0; i < M; i++)
            for (int64_t j = N; j < ldc && i * ldc + j < M * ldc; j++) pad |= C[i * ldc + j] != -7.0f;
        if (!(worst <= 1.0) || pad) {
            test_fail("%s mm32_1 [%d,%d]x%s bt %d: error %.3g of the bound%s", where, M, K, bt ? "[N,K]ᵀ" : "[K,N]", bt,
                      worst, pad ? ", wrote past N" : "");
            bad++;
        }
        int diff = 0;   // every thread of a region, and 1 / 3 threads outside one: the same bits
#pragma omp parallel num_threads(2) reduction(| : diff)
        {
            float *Ct = malloc(sizeof(float) * M * ldc);
            memcpy(Ct, C2, sizeof(float) * M * ldc);
            mm32_1(Ct, ldc, A, lda, B, ldb, M, N, K, bt, 0);
            diff |= memcmp(Ct, C, sizeof(float) * M * ldc) != 0;
            free(Ct);
        }
        for (int t = 1; t <= 3; t += 2) {
            omp_set_num_threads(t);
            memcpy(C2, C, sizeof(float) * M * ldc);
            for (int64_t i = 0; i < M * ldc; i++) C2[i] = (i % ldc) < N ? 0.0f : -7.0f;
            mm32_1(C2, ldc, A, lda, B, ldb, M, N, K, bt, 0);
            diff |= memcmp(C2, C, sizeof(float) * M * ldc) != 0;
        }
        omp_set_num_threads(nt);
        if (diff) {
            test_fail("%s mm32_1 [%d,%d] bt %d: bits differ inside a parallel region or at 1 / 3 threads", where, M, K, bt);
            bad++;
        }
    }
    free(A), free(B), free(C), free(C2);
    return bad;
}

// mm32_pieces (the 1B-sized cross-entropy's fp32 products): y += x·op(W) with a tail piece,
// both orientations, against the reference; the same bits at 1 and 3 threads.
static int check_pieces(int M, int K, int N) {
    int bad = 0, nt = omp_get_max_threads();
    uint64_t s = 5;
    float *x = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * K * N);
    float *y0 = malloc(sizeof(float) * M * N), *y = malloc(sizeof(float) * M * N), *y3 = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) x[i] = frand(&s);
    for (int i = 0; i < K * N; i++) W[i] = frand(&s);
    for (int i = 0; i < M * N; i++) y0[i] = frand(&s);
    for (int wt = 0; wt < 2; wt++) {
        memcpy(y, y0, sizeof(float) * M * N);
        memcpy(y3, y0, sizeof(float) * M * N);
        omp_set_num_threads(1);
        mm32_pieces(y, x, W, M, K, N, wt, 1);
        omp_set_num_threads(3);
        mm32_pieces(y3, x, W, M, K, N, wt, 1);
        omp_set_num_threads(nt);
        double worst = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double z = y0[i * N + j], mag = fabs(z);
                for (int k = 0; k < K; k++) {
                    double p = (double)x[i * K + k] * (wt ? W[j * K + k] : W[k * N + j]);
                    z += p, mag += fabs(p);
                }
                double e = fabs(y[i * N + j] - z) / ((K + 4) * ldexp(mag, -24));
                if (!(e <= worst)) worst = e;
            }
        if (!(worst <= 1.0) || memcmp(y, y3, sizeof(float) * M * N)) {
            test_fail("mm32_pieces [%d,%d] N %d wt %d: error %.3g of the bound%s", M, K, N, wt, worst,
                      memcmp(y, y3, sizeof(float) * M * N) ? ", 1 and 3 threads differ" : "");
            bad++;
        }
    }
    free(x), free(W), free(y0), free(y), free(y3);
    return bad;
}

static void test_mm32(void) {
    check_mm32(37, 48, 40, "native");
    check_mm32(240, 512, 256, "native");   // a logits piece of the small model
    check_mm32(240, 256, 2048, "native");  // an acc piece
    check_pieces(37, 300, 1100);
}

// A child multiplies under a storm of timer signals (handler on the thread's own stack, as the
// trainer's Ctrl-C handler): the cross-entropy's pieces of the tiny model (logits [40, 512] and
// acc [40, 64] = P[40, 2048] · W[2048, 64]) 300 times each; the same bits as before the storm,
// and the heap intact (the frees at the end check it). Exit 0, or 2 (bits), 3 (no signal came).
static volatile sig_atomic_t sig_hits;
static void on_alarm(int sig) { (void)sig; sig_hits++; }

static int storm_child(void) {
    int M = 40, C = 64, cv = 16384;
    float *lg = malloc(sizeof(float) * M * cv), *W = malloc(sizeof(float) * cv * C), *hg = malloc(sizeof(float) * M * C);
    float *acc0 = malloc(sizeof(float) * M * C * 8), *acc = malloc(sizeof(float) * M * C * 8);
    uint64_t s = 11;
    for (int64_t i = 0; i < (int64_t)cv * C; i++) W[i] = 0.1f * frand(&s);
    for (int64_t i = 0; i < (int64_t)M * C; i++) hg[i] = frand(&s);
    for (int j0 = 0; j0 < cv; j0 += 512) mm32_1(lg + j0, cv, hg, C, W + (int64_t)j0 * C, C, M, 512, C, 1, 0);
    for (int j0 = 0; j0 < cv; j0 += 2048) mm32_1(acc0 + (j0 / 2048) * M * C, C, lg + j0, cv, W + (int64_t)j0 * C, C, M, C, 2048, 0, 0);
    float *lg0 = malloc(sizeof(float) * M * cv);
    memcpy(lg0, lg, sizeof(float) * M * cv);
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 30}, {0, 30}};
    setitimer(ITIMER_REAL, &it, NULL);
    int bits = 0;
    for (int rep = 0; rep < 300; rep++) {
        for (int j0 = 0; j0 < cv; j0 += 512) mm32_1(lg + j0, cv, hg, C, W + (int64_t)j0 * C, C, M, 512, C, 1, 0);
        for (int j0 = 0; j0 < cv; j0 += 2048) mm32_1(acc + (j0 / 2048) * M * C, C, lg + j0, cv, W + (int64_t)j0 * C, C, M, C, 2048, 0, 0);
        bits |= memcmp(lg, lg0, sizeof(float) * M * cv) != 0 || memcmp(acc, acc0, sizeof(float) * M * C * 8) != 0;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    free(lg), free(lg0), free(W), free(hg), free(acc0), free(acc);
    return bits ? 2 : sig_hits == 0 ? 3 : 0;
}

static void test_signals(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        omp_set_num_threads(1);
        _exit(storm_child());
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid, "fork/waitpid failed");
    CHECK(WIFEXITED(st), "products under a signal storm: the child died of signal %d (heap corrupted)",
          WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (WIFEXITED(st))
        CHECK(WEXITSTATUS(st) == 0, "products under a signal storm: %s",
              WEXITSTATUS(st) == 2 ? "results changed" : WEXITSTATUS(st) == 3 ? "no signal arrived" : "the child failed");
}

static pid_t emu_pid;   // the child running the emulated products (forked first in main)

static void test_emulated(void) {
    int st = 0;
    if (emu_pid < 0 || waitpid(emu_pid, &st, 0) != emu_pid || !WIFEXITED(st))
        CHECK(0, "the emulated child did not run or crashed (status %d)", st);
    else
        CHECK(WEXITSTATUS(st) == 0, "%s", WEXITSTATUS(st) == 100 ? "ONEDNN_MAX_CPU_ISA=AVX2 did not disable oneDNN's BF16 matmul"
                                                               : "emulated products failed (see above)");
}

int main(void) {
    // the emulated path first, in a child that limits oneDNN to AVX2 before its first use
    // (oneDNN reads ONEDNN_MAX_CPU_ISA once): no BF16 matmul there, so mm_linear runs
    // lorac's widened product and epilogue; fp32 runs oneDNN's AVX2 kernels
    fflush(stdout);
    emu_pid = fork();
    if (emu_pid == 0) {
        setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
        int bad = mm16_native() ? -1 : check_products(37, 48, 40, "emulated") + check_mm32(37, 48, 40, "emulated");
        fflush(stdout);
        _exit(bad < 0 ? 100 : bad ? 1 : 0);
    }
    RUN(test_fused);
    RUN(test_threads);
    RUN(test_mm32);
    RUN(test_signals);
    RUN(test_emulated);
    return test_summary();
}
