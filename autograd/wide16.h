// wide16.h — fp32 matmuls against frozen weights kept in BF16 (fp32 precision, weights: auto).
//
// BF16 → fp32 is exact, so a BF16-stored weight can be used in fp32 mode without changing one
// bit of any result: each product widens the weight into a per-thread buffer and runs the
// same cblas call an fp32 weight gets. OpenBLAS's sgemm results depend on how a product is
// split (measured: splitting y = x·Wᵀ along its output columns changes ~1% of the elements
// in the last bit, even with one K block and one thread), so the matmuls widen the whole
// weight (the buffer grows to the largest one multiplied: 64 MB for Llama-3.2-1B's MLP, 235 MB
// for Llama-3.1-8B's; the lm-head loss widens one vocabulary chunk, ops_loss.c). The one-row
// product of decoding runs in 8 MB row blocks for BOTH storages (w16_gemv takes either), so
// the two agree by construction. tests/test_wide16.c checks the bytes.
//
// Shapes: W [O, In] row-major BF16 (out × in), N rows.
//   w16_xwt:  y[N, O]  (+)=  x[N, In] · Wᵀ     (linear forward)
//   w16_xw:   y[N, In] (+)=  x[N, O]  · W      (linear dx)
//   w16_gemv: y[O]      =   W · x[In]         (one row, token-by-token decoding; W16 or W32)
//   w16_rows: dst[n, In] = W rows [r0, r0+n) widened (lm-head chunks, embedding rows)
#ifndef LORAC_WIDE16_H
#define LORAC_WIDE16_H

#include <stdint.h>

void w16_xwt(float *y, const float *x, const uint16_t *W, int64_t N, int64_t O, int64_t In, int accumulate);
void w16_xw(float *y, const float *x, const uint16_t *W, int64_t N, int64_t O, int64_t In, int accumulate);
void w16_gemv(float *y, const uint16_t *W16, const float *W32, const float *x, int64_t O, int64_t In);
void w16_rows(float *dst, const uint16_t *W, int64_t r0, int64_t n, int64_t In);
// The per-thread widening buffer for `floats` values (grown, never shrunk; NULL + err_set
// when it cannot grow). Used by the products above and by callers that widen a chunk once
// and use it in several products (the lm-head loss).
float *w16_buffer(int64_t floats);

#endif
