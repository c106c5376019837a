// gemv16.c — y = W·x with BF16 weights: AVX512-BF16 (VDPBF16PS) when the CPU has it, a
// portable widening loop otherwise. See gemv16.h.
#include "gemv16.h"

#include <stdlib.h>
#include <immintrin.h>

int cpu_has_avx512bf16(void) {
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    }
    return has;
}

// Rows [r0, r1) with x already rounded to BF16 (xb[In]). Four rows share each load of xb;
// the tail of a row (In % 32) is read with a masked load, zeros elsewhere.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void rows_avx512bf16(int64_t r0, int64_t r1, int64_t In, const uint16_t *W, const uint16_t *xb,
                            float *y) {
    int64_t full = In / 32 * 32;
    __mmask32 tail = (__mmask32)((1ull << (In - full)) - 1);
    __m512i xt = _mm512_maskz_loadu_epi16(tail, xb + full);
    int64_t o = r0;
    for (; o + 4 <= r1; o += 4) {
        const uint16_t *w0 = W + o * In, *w1 = w0 + In, *w2 = w1 + In, *w3 = w2 + In;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < full; i += 32) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + i);
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w0 + i), xv);
            a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(w1 + i), xv);
            a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_loadu_si512(w2 + i), xv);
            a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_loadu_si512(w3 + i), xv);
        }
        if (tail) {
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(tail, w0 + full), (__m512bh)xt);
            a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_maskz_loadu_epi16(tail, w1 + full), (__m512bh)xt);
            a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_maskz_loadu_epi16(tail, w2 + full), (__m512bh)xt);
            a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_maskz_loadu_epi16(tail, w3 + full), (__m512bh)xt);
        }
        y[o] = _mm512_reduce_add_ps(a0), y[o + 1] = _mm512_reduce_add_ps(a1);
        y[o + 2] = _mm512_reduce_add_ps(a2), y[o + 3] = _mm512_reduce_add_ps(a3);
    }
    for (; o < r1; o++) {
        const uint16_t *w = W + o * In;
        __m512 a = _mm512_setzero_ps();
        for (int64_t i = 0; i < full; i += 32)
            a = _mm512_dpbf16_ps(a, (__m512bh)_mm512_loadu_si512(w + i), (__m512bh)_mm512_loadu_si512(xb + i));
        if (tail) a = _mm512_dpbf16_ps(a, (__m512bh)_mm512_maskz_loadu_epi16(tail, w + full), (__m512bh)xt);
        y[o] = _mm512_reduce_add_ps(a);
    }
}

static void rows_ref(int64_t r0, int64_t r1, int64_t In, const uint16_t *W, const float *xr, float *y) {
    for (int64_t o = r0; o < r1; o++) {
        const uint16_t *w = W + o * In;
        float a = 0;
        for (int64_t i = 0; i < In; i++) a += bf16_to_f32(w[i]) * xr[i];
        y[o] = a;
    }
}

// Work below this many weights runs on the calling thread (a fork/join costs more than it
// saves there, and on a busy machine a parked thread stalls the barrier).
enum { GEMV_PAR_MIN = 1 << 18, GEMV_BLOCK = 64 };

static void gemv(int64_t O, int64_t In, const uint16_t *W, const float *x, float *y, int fast) {
    if (O <= 0) return;
    // x rounded once: BF16 patterns for the dot-product instruction, or their fp32 values.
    void *buf = malloc((size_t)(In > 0 ? In : 1) * (fast ? sizeof(uint16_t) : sizeof(float)));
    if (!buf) {   // 16-56 KB; without it, round x on the fly (same values, slower)
        for (int64_t o = 0; o < O; o++) {
            float a = 0;
            for (int64_t i = 0; i < In; i++) a += bf16_to_f32(W[o * In + i]) * bf16_to_f32(f32_to_bf16(x[i]));
            y[o] = a;
        }
        return;
    }
    uint16_t *xb = buf;
    float *xr = buf;
    for (int64_t i = 0; i < In; i++) {
        uint16_t h = f32_to_bf16(x[i]);
        if (fast) xb[i] = h;
        else xr[i] = bf16_to_f32(h);
    }
    int64_t nblk = (O + GEMV_BLOCK - 1) / GEMV_BLOCK;
#pragma omp parallel for schedule(static) if (O * In >= GEMV_PAR_MIN)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t r0 = b * GEMV_BLOCK, r1 = r0 + GEMV_BLOCK < O ? r0 + GEMV_BLOCK : O;
        if (fast) rows_avx512bf16(r0, r1, In, W, xb, y);
        else rows_ref(r0, r1, In, W, xr, y);
    }
    free(buf);
}

void gemv_bf16(int64_t O, int64_t In, const uint16_t *W, const float *x, float *y) {
    gemv(O, In, W, x, y, cpu_has_avx512bf16());
}

void gemv_bf16_ref(int64_t O, int64_t In, const uint16_t *W, const float *x, float *y) {
    gemv(O, In, W, x, y, 0);
}
