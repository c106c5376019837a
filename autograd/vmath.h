// vmath.h — 8-lane fp32 vector math for the elementwise kernels (GCC vector extensions; the
// compiler maps them to AVX/AVX-512 under -march=native): exp, tanh and the logistic
// function, each within a few ulp of glibc's scalar expf/tanhf, plus an 8-wide loop helper
// that handles the tail by padding. Header-only (static inline) so every kernel inlines it.
#ifndef LORAC_VMATH_H
#define LORAC_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float vm8 __attribute__((vector_size(32)));
typedef int32_t vm8i __attribute__((vector_size(32)));

static inline vm8 vm_ld(const float *p) {
    vm8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void vm_st(float *p, vm8 v) { memcpy(p, &v, sizeof v); }
static inline vm8 vm_splat(float x) { return (vm8){0} + x; }
static inline vm8 vm_select(vm8i m, vm8 a, vm8 b) { return (vm8)(((vm8i)a & m) | ((vm8i)b & ~m)); }

// e^x: Cody–Waite reduction and the Cephes expf polynomial (~1 ulp on [-87.3, 88.4]);
// larger inputs give e^88.38 (~2.4e38, finite), smaller ones 0. Written once for any lane
// count (V float lanes, VI int32 lanes of the same width): every lane computes the same
// operations in the same order, so vm_exp and vm16_exp agree bit for bit.
#define VM_SEL(m, a, b, VI) (((VI)(a) & (m)) | ((VI)(b) & ~(m)))
#define VM_DEFINE_EXP(name, V, VI)                                                                 \
    static inline V name(V x) {                                                                    \
        const V xmax = (V){0} + 88.3762626647949f, xmin = (V){0} + -87.3365447504f;                \
        const V magic = (V){0} + 12582912.0f; /* 1.5·2²³: adding it rounds to an integer */      \
        VI small = x < xmin;                                                                       \
        x = (V)VM_SEL(x > xmax, xmax, x, VI);                                                      \
        x = (V)VM_SEL(small, xmin, x, VI);                                                         \
        V t = x * 1.44269504088896341f + magic;                                                    \
        VI n = (VI)t - (VI)magic;                                                                  \
        V fn = t - magic;                                                                          \
        V r = x - fn * 0.693359375f;                                                               \
        r = r - fn * -2.12194440e-4f;                                                              \
        V p = r * 1.9875691500E-4f + 1.3981999507E-3f;                                             \
        p = p * r + 8.3334519073E-3f;                                                              \
        p = p * r + 4.1665795894E-2f;                                                              \
        p = p * r + 1.6666665459E-1f;                                                              \
        p = p * r + 5.0000001201E-1f;                                                              \
        V y = p * (r * r) + r + 1.0f;                                                              \
        V pow2n = (V)((n + 127) << 23);                                                            \
        return (V)((VI)(y * pow2n) & ~small);                                                      \
    }
VM_DEFINE_EXP(vm_exp, vm8, vm8i)

// 16 lanes (one 512-bit register where the ISA has them)
typedef float vm16 __attribute__((vector_size(64)));
typedef int32_t vm16i __attribute__((vector_size(64)));
static inline vm16 vm16_ld(const float *p) {
    vm16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void vm16_st(float *p, vm16 v) { memcpy(p, &v, sizeof v); }
VM_DEFINE_EXP(vm16_exp, vm16, vm16i)

// tanh(x) as Cephes tanhf: an odd polynomial for |x| < 0.625, 1 − 2/(e^{2|x|} + 1) with the
// sign of x above (±1 exactly once |x| > 9.02; NaN propagates).
static inline vm8 vm_tanh(vm8 x) {
    vm8i neg = x < 0;
    vm8 a = vm_select(neg, -x, x);
    vm8 z = x * x;
    vm8 p = z * -5.70498872745E-3f + 2.06390887954E-2f;
    p = p * z - 5.37397155531E-2f;
    p = p * z + 1.33314422036E-1f;
    p = p * z - 3.33332819422E-1f;
    vm8 sm = x + x * z * p;
    vm8 big = 1.0f - 2.0f / (vm_exp(a + a) + 1.0f);
    big = vm_select(neg, -big, big);
    return vm_select(a < 0.625f, sm, big);
}

// σ(x) = 1 / (1 + e^{−x})
static inline vm8 vm_sigmoid(vm8 x) { return 1.0f / (1.0f + vm_exp(-x)); }

// Tail of an 8-wide loop: the last n < 8 elements of up to 4 input arrays copied into padded
// lanes (zeros), so the same vector body computes them; vm_tail_store writes the n results back.
static inline vm8 vm_tail_load(const float *p, int64_t n) {
    float t[8] = {0};
    memcpy(t, p, (size_t)n * sizeof *t);
    return vm_ld(t);
}
static inline void vm_tail_store(float *p, vm8 v, int64_t n) {
    float t[8];
    vm_st(t, v);
    memcpy(p, t, (size_t)n * sizeof *t);
}

#endif
