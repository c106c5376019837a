// wide16.c — fp32 products against BF16-stored frozen weights, widened a block at a time
// (see wide16.h for why the results equal those of an fp32-stored weight bit for bit).
#include "wide16.h"

#include "blas.h"
#include <stdlib.h>

#include "mm16.h"
#include "util.h"

// Floats per block of a matrix-vector product (8 MB: the block stays in the L3 cache between
// being widened and being multiplied).
#define WBLK_FLOATS (1 << 21)

static _Thread_local float *wbuf;
static _Thread_local int64_t wcap;

float *w16_buffer(int64_t floats) {
    if (floats > wcap) {
        free(wbuf);
        size_t bytes = ((size_t)floats * sizeof(float) + 63) & ~(size_t)63;
        wbuf = aligned_alloc(64, bytes);
        wcap = wbuf ? floats : 0;
        if (!wbuf) {
            err_set("out of memory: %.1f MB for widening a BF16 weight", (double)bytes / 1e6);
            return NULL;
        }
    }
    return wbuf;
}

void w16_rows(float *dst, const uint16_t *W, int64_t r0, int64_t n, int64_t In) {
    bf16_widen(dst, W + r0 * In, n * In);
}

// The whole weight widened, then the very call an fp32 weight gets: OpenBLAS's sgemm results
// depend on how a product is split (its register tiles and edge kernels fall on other
// elements), even along output rows, so a block-wise product would not be bit-identical.
static float *widened(const uint16_t *W, int64_t O, int64_t In) {
    float *buf = w16_buffer(O * In);
    AG_ASSERT(buf, "%s", err_get());
    w16_rows(buf, W, 0, O, In);
    return buf;
}

void w16_xwt(float *y, const float *x, const uint16_t *W, int64_t N, int64_t O, int64_t In, int accumulate) {
    float *Wf = widened(W, O, In);
    ag_sgemm(0, 1, N, O, In, 1.0f, x, In, Wf, In, accumulate ? 1.0f : 0.0f, y, O);
}

void w16_xw(float *y, const float *x, const uint16_t *W, int64_t N, int64_t O, int64_t In, int accumulate) {
    float *Wf = widened(W, O, In);
    ag_sgemm(0, 0, N, In, O, 1.0f, x, O, Wf, In, accumulate ? 1.0f : 0.0f, y, In);
}

void w16_gemv(float *y, const uint16_t *W16, const float *W32, const float *x, int64_t O, int64_t In) {
    int64_t ob = WBLK_FLOATS / (In > 0 ? In : 1);
    ob = ob < 64 ? 64 : ob / 64 * 64;
    if (ob > O) ob = O;
    float *buf = W16 ? w16_buffer(ob * In) : NULL;
    AG_ASSERT(!W16 || buf, "%s", err_get());
    for (int64_t o0 = 0; o0 < O; o0 += ob) {
        int64_t nb = O - o0 < ob ? O - o0 : ob;
        const float *Wb = W32 ? W32 + o0 * In : buf;
        if (W16) w16_rows(buf, W16, o0, nb, In);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)nb, (int)In, 1.0f, Wb, (int)In, x, 1, 0.0f, y + o0, 1);
    }
}
