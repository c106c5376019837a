// test_gemv16.c — BF16 matrix-vector products (decode in bf16 mode) against a double-precision
// reference on the same BF16-rounded operands, plus the rounding helper against known patterns.
#include "test.h"
#include "gemv16.h"

#include <omp.h>
#include <stdint.h>

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static float urand(float lo, float hi) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return lo + (hi - lo) * (float)((rs >> 40) / 16777216.0);
}

// Products of two BF16 values (8-bit significands) are exact in fp32 (24 bits), so the only
// error of y = W·bf16(x) is fp32 accumulation: at most ~In·2^-24 of Σ|w·x| for any order.
// The bound below allows 2·In·2^-24 (VDPBF16PS adds a pair of products per step, the
// portable loop one); a wrong element, a skipped tail or an unrounded x is ≥ 2^-9 of the scale.
static void check_case(int64_t O, int64_t In) {
    uint16_t *W = malloc((size_t)(O * In) * sizeof *W);
    float *x = malloc((size_t)In * sizeof *x), *y = malloc((size_t)O * sizeof *y), *yr = malloc((size_t)O * sizeof *yr);
    for (int64_t i = 0; i < O * In; i++) W[i] = f32_to_bf16(urand(-1, 1));
    for (int64_t i = 0; i < In; i++) x[i] = urand(-2, 2);
    gemv_bf16(O, In, W, x, y);
    gemv_bf16_ref(O, In, W, x, yr);
    double worst = 0, worst_ref = 0;
    for (int64_t o = 0; o < O; o++) {
        double s = 0, sa = 0;
        for (int64_t i = 0; i < In; i++) {
            double p = (double)bf16_to_f32(W[o * In + i]) * (double)bf16_to_f32(f32_to_bf16(x[i]));
            s += p, sa += fabs(p);
        }
        double tol = 2.0 * (double)In * ldexp(1.0, -24) * (sa > 1e-30 ? sa : 1e-30);
        if (fabs(y[o] - s) / tol > worst) worst = fabs(y[o] - s) / tol;
        if (fabs(yr[o] - s) / tol > worst_ref) worst_ref = fabs(yr[o] - s) / tol;
    }
    CHECK(worst <= 1.0, "O=%ld In=%ld: error %.2f x the fp32 accumulation bound", (long)O, (long)In, worst);
    CHECK(worst_ref <= 1.0, "portable path O=%ld In=%ld: error %.2f x the bound", (long)O, (long)In, worst_ref);
    free(W), free(x), free(y), free(yr);
}

static void test_shapes(void) {
    // tails (In % 32), row groups of 4 and their remainders, one OpenMP block and several
    int64_t shapes[][2] = {{1, 1}, {1, 31}, {3, 32}, {4, 33}, {5, 64}, {7, 100}, {64, 7}, {65, 257},
                           {130, 2048}, {1000, 96}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) check_case(shapes[k][0], shapes[k][1]);
}

// Large enough to run on several threads: the same bits with 1 and 2 threads.
static void test_threads(void) {
    int64_t O = 1024, In = 1000;
    uint16_t *W = malloc((size_t)(O * In) * sizeof *W);
    float *x = malloc((size_t)In * sizeof *x), *y1 = malloc((size_t)O * 4), *y2 = malloc((size_t)O * 4);
    for (int64_t i = 0; i < O * In; i++) W[i] = f32_to_bf16(urand(-1, 1));
    for (int64_t i = 0; i < In; i++) x[i] = urand(-1, 1);
    int maxt = omp_get_max_threads();
    omp_set_num_threads(1);
    gemv_bf16(O, In, W, x, y1);
    omp_set_num_threads(2);
    gemv_bf16(O, In, W, x, y2);
    omp_set_num_threads(maxt);
    CHECK(!memcmp(y1, y2, (size_t)O * 4), "1 and 2 threads differ");
    free(W), free(x), free(y1), free(y2);
}

// Round to nearest even, as torch's float -> bfloat16 (patterns checked by hand).
static void test_rounding(void) {
    struct { uint32_t in; uint16_t out; } c[] = {
        {0x3f800000u, 0x3f80}, {0x3f808000u, 0x3f80},   // exactly half: to even (down)
        {0x3f818000u, 0x3f82},                          // exactly half: to even (up)
        {0x3f808001u, 0x3f81}, {0x3f807fffu, 0x3f80},   // just above / below half
        {0x7f7fffffu, 0x7f80},                          // FLT_MAX rounds to +inf
        {0xff800000u, 0xff80}, {0x00000001u, 0x0000},   // -inf; smallest denormal to +0
        {0x80000000u, 0x8000},                          // -0
    };
    for (size_t k = 0; k < sizeof c / sizeof *c; k++) {
        union { uint32_t u; float f; } v = {c[k].in};
        CHECK(f32_to_bf16(v.f) == c[k].out, "0x%08x -> 0x%04x, expected 0x%04x", c[k].in, f32_to_bf16(v.f), c[k].out);
    }
    // Every NaN (quiet, signalling, negative, any payload) -> the canonical quiet NaN 0x7FC0,
    // as torch's c10::BFloat16 conversion: torch.tensor([nan, -nan], dtype=torch.bfloat16)
    // .view(torch.int16) is [32704, 32704] with torch 1.13.
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7fc00001u, 0x7f800001u, 0xff800001u, 0x7fffffffu,
                             0xffffffffu, 0x7fa5a5a5u};
    for (size_t k = 0; k < sizeof nans / sizeof *nans; k++) {
        union { uint32_t u; float f; } v = {nans[k]};
        CHECK(f32_to_bf16(v.f) == 0x7fc0, "NaN 0x%08x -> 0x%04x, expected 0x7fc0", nans[k], f32_to_bf16(v.f));
    }
}

int main(void) {
    printf("# AVX512-BF16: %s\n", cpu_has_avx512bf16() ? "native" : "emulated (portable path only)");
    RUN(test_rounding);
    RUN(test_shapes);
    RUN(test_threads);
    return test_summary();
}
