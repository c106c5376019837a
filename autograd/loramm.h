// loramm.h — the LoRA factors' thin fp32 products in bf16 mode, each one pass over the large
// operand with the dropout mask applied on the fly (no masked copy of x, no [N, In] temporary).
//
// Shapes: N rows, J the wide dimension (In or O), r the rank (r ≪ J).
//   loramm_rows:  out[N, r] = alpha · drop(x)[N, J] · Mᵀ          M [r, J]
//                 (u = drop(x)·Aᵀ forward; du = s·dy·B backward with M = Bᵀ); with xb also
//                 xb[N, J] = bf16(x) (nearest even, no dropout): the operand of the BF16
//                 product against the frozen weight, made in the same pass over x
//   loramm_cols:  y[N, J] += ys · mask∘(g[N, r] · M[r, J])        (when y)
//                 G += gs · gᵀ · drop(x)[N, J], G [r, J] or, gt, [J, r]   (when G)
//                 (forward y += s·u·Bᵀ with M = Bᵀ; backward dx and dA with g = du, M = A;
//                 dB with g = u, x = dy, gt)
// Numerics: fp32 products and sums in a fixed order that depends on neither the thread count
// nor the row split: loramm_rows sums each output over 16 interleaved lanes (j mod 16) and then
// the lanes in order; loramm_cols sums G over the rows in order. Rows (loramm_rows) or blocks of
// 16 columns (loramm_cols) are split over the OpenMP threads; call outside parallel regions.
//
// Dropout (inverted, p ∈ [0, 1)): element (i, j) of x is kept when draw i·J + j of the
// splitmix64 stream after state s0 is ≥ p (ag_rng_uniform's draws; see lora_rng_draw24), and a
// kept value is scaled by inv = 1/(1-p). With d == NULL nothing is dropped.
#ifndef LORAC_LORAMM_H
#define LORAC_LORAMM_H

#include <stdint.h>

#define LORA_RNG_GAMMA 0x9E3779B97F4A7C15ULL   // splitmix64's increment (ag_rng_next)

// Draw j (0-based) after state st, exactly as ag_rng_uniform: (mix(st + (j+1)·γ) >> 40)·2⁻²⁴.
// It is < p iff the integer (mix >> 40) is < ceil(p·2²⁴) (both sides exact), so the mask
// compares integers; each element's state is computed directly, so any row or column block
// can be regenerated on its own and the loops vectorize.
static inline uint64_t lora_rng_draw24(uint64_t st, int64_t j) {
    uint64_t z = st + (uint64_t)(j + 1) * LORA_RNG_GAMMA;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return (z ^ (z >> 31)) >> 40;
}

typedef struct loramm_drop {
    uint64_t s0;    // stream state before the first draw of x[0, 0]
    uint64_t thr;   // ceil(p·2²⁴): kept when the 24-bit draw is ≥ thr
    float inv;      // 1/(1-p)
} loramm_drop;

loramm_drop loramm_drop_of(uint64_t s0, float p);

void loramm_rows(float *out, uint16_t *xb, const float *x, const float *M, int64_t N, int64_t J, int64_t r, float alpha,
                 const loramm_drop *d);
void loramm_cols(float *y, float ys, float *G, int gt, float gs, const float *g, const float *M, const float *x,
                 int64_t N, int64_t J, int64_t r, const loramm_drop *d);

// Mt[r, O] = B[O, r]ᵀ (the operand layout of loramm_rows / loramm_cols for B)
void loramm_transpose(float *Mt, const float *B, int64_t O, int64_t r);

#endif
