// loramm.c — the LoRA factors' thin fp32 products of bf16 mode (see loramm.h), written with
// GCC vector extensions: 16 fp32 lanes (one AVX-512 register; two AVX ones elsewhere).
//
// Why not a GEMM library: these products have one dimension of r = 16. oneDNN and OpenBLAS run
// them at 10-80 GFLOP/s, each call a separate pass over [N, J] activations, and dropout needs
// yet another pass plus an [N, J] masked copy (forward and backward). Here each product is one
// pass over its large operand with the mask made on the fly, the r accumulators in registers.
#include "loramm.h"

#include <math.h>
#include <stdlib.h>

#include "ag.h"
#include "gemv16.h"
#include "util.h"

#define LN 16                       // lanes per vector
#define PAR_WORK (AG_PAR_MIN / 2)   // N·J below which a product stays serial

typedef float v16 __attribute__((vector_size(LN * 4)));
typedef int32_t v16i __attribute__((vector_size(LN * 4)));
typedef float v16u __attribute__((vector_size(LN * 4), aligned(4)));   // unaligned access
typedef uint64_t v8u __attribute__((vector_size(LN * 4)));
typedef int64_t v8l __attribute__((vector_size(LN * 4)));
typedef int32_t v8i __attribute__((vector_size(LN * 2)));


loramm_drop loramm_drop_of(uint64_t s0, float p) {
    loramm_drop d = {.s0 = s0, .thr = (uint64_t)ceil((double)p * 16777216.0), .inv = 1.0f / (1.0f - p)};
    return d;
}

// w (≤ LN) floats at p as a vector, zeros beyond
static inline v16 ld(const float *p, int w) {
    if (w == LN) return *(const v16u *)p;
    v16 v = {0};
    for (int l = 0; l < w; l++) v[l] = p[l];
    return v;
}

static inline void st(float *p, v16 v, int w) {
    if (w == LN) *(v16u *)p = v;
    else
        for (int l = 0; l < w; l++) p[l] = v[l];
}

// Keep mask (all ones / zero per lane) of row i, columns j0 .. j0+15: draws i·J + j of the stream.
static inline v16i keep_mask(const loramm_drop *d, int64_t i, int64_t J, int64_t j0) {
    uint64_t st0 = d->s0 + (uint64_t)(i * J) * LORA_RNG_GAMMA;
    v8i m[2];
    for (int h = 0; h < 2; h++) {   // two vectors of 8 64-bit states
        v8u z = {1, 2, 3, 4, 5, 6, 7, 8};
        z = st0 + (z + (uint64_t)(j0 + h * 8)) * LORA_RNG_GAMMA;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z = (z ^ (z >> 31)) >> 40;
        m[h] = __builtin_convertvector((v8l)(z >= d->thr), v8i);
    }
    return __builtin_shufflevector(m[0], m[1], 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

// keep ? v·inv : 0 per lane (exactly the value of the scalar dropout)
static inline v16 masked(v16 v, float inv, v16i keep) { return (v16)((v16i)(v * inv) & keep); }

// M [r, J] repacked as [ceil(J/16)][r][16] (zeros past J): the r vectors of a column block
// contiguous, so a sweep along J reads one stream (M's rows are 2^k floats apart: read row by
// row they would all fall into the same cache sets).
static v16 *pack_cols(const float *M, int64_t J, int64_t r) {
    int64_t nv = (J + LN - 1) / LN;
    v16 *Mp = aligned_alloc(sizeof(v16), (size_t)(nv * r) * sizeof *Mp);
    AG_ASSERT(Mp, "loramm: out of memory for a [%lld, %lld] operand", (long long)r, (long long)J);
#pragma omp parallel for schedule(static) if (nv * r * LN >= PAR_WORK)
    for (int64_t v = 0; v < nv; v++)
        for (int64_t k = 0; k < r; k++) Mp[v * r + k] = ld(M + k * J + v * LN, (int)imin(LN, J - v * LN));
    return Mp;
}

// --- loramm_rows: out[i, k] = alpha · Σ_j drop(x)[i, j] · M[k, j]
//
// Two rows at a time against KC rank rows of M (2·KC accumulators in registers): each vector
// of Mp loaded once serves both rows. Every output's sum runs over j in the same order
// whatever the blocking.

#define KC 8   // rank rows per pass

// acc[q][k] (k < kc ≤ KC): the lane-wise partial sums of rows xr[q] (q < nr ≤ 2) against rank
// rows k0.. of Mp
static inline __attribute__((always_inline)) void rows_dot(v16 acc[2][KC], const float *const xr[2], int nr,
                                                           const v16 *Mp, int64_t J, int64_t r, int64_t k0, int kc) {
    for (int q = 0; q < 2; q++)
        for (int k = 0; k < kc; k++) acc[q][k] = (v16){0};
    int64_t nv = (J + LN - 1) / LN;
    for (int64_t v = 0; v < nv; v++) {
        int w = (int)imin(LN, J - v * LN);
        v16 x0 = ld(xr[0] + v * LN, w), x1 = nr > 1 ? ld(xr[1] + v * LN, w) : (v16){0};
        const v16 *m = Mp + v * r + k0;
#pragma GCC unroll 8
        for (int k = 0; k < kc; k++) {
            acc[0][k] += x0 * m[k];
            if (nr > 1) acc[1][k] += x1 * m[k];
        }
    }
}

void loramm_rows(float *out, uint16_t *xb, const float *x, const float *M, int64_t N, int64_t J, int64_t r,
                 float alpha, const loramm_drop *d) {
    v16 *Mp = pack_cols(M, J, r);
    int64_t npair = (N + 1) / 2;
#pragma omp parallel if (N * J >= PAR_WORK)
    {
        float *xd = d ? xmalloc((size_t)(2 * J) * sizeof *xd) : NULL;   // the rows through dropout
#pragma omp for schedule(static)
        for (int64_t pr = 0; pr < npair; pr++) {
            int nr = (int)imin(2, N - 2 * pr);
            const float *xr[2] = {x + 2 * pr * J, x + (2 * pr + 1) * J};
            for (int q = 0; q < nr; q++) {
                int64_t i = 2 * pr + q;
                if (xb)
                    for (int64_t j = 0; j < J; j++) xb[i * J + j] = f32_to_bf16(xr[q][j]);
                if (d) {
                    for (int64_t j = 0; j < J; j += LN) {
                        int w = (int)imin(LN, J - j);
                        st(xd + q * J + j, masked(ld(xr[q] + j, w), d->inv, keep_mask(d, i, J, j)), w);
                    }
                    xr[q] = xd + q * J;
                }
            }
            for (int64_t k0 = 0; k0 < r; k0 += KC) {
                int kc = (int)imin(KC, r - k0);
                v16 acc[2][KC];
                if (kc == KC && nr == 2) rows_dot(acc, xr, 2, Mp, J, r, k0, KC);
                else rows_dot(acc, xr, nr, Mp, J, r, k0, kc);
                for (int q = 0; q < nr; q++)
                    for (int k = 0; k < kc; k++) {
                        float s = 0;
                        for (int l = 0; l < LN; l++) s += acc[q][k][l];
                        out[(2 * pr + q) * r + k0 + k] = alpha * s;
                    }
            }
        }
        free(xd);
    }
    free(Mp);
}

// --- loramm_cols: y[:, P] += ys · mask∘(g · M[:, P]); G[:, P] += gs · gᵀ · drop(x)[:, P]
//
// Per panel of PW columns (the unit of the thread split), rows in blocks of RB: the block's
// masked x and its y update first (each row a contiguous PW-column segment), then G's
// accumulators (L1-resident, [r][PV] vectors) take the block's rows in order, one fused
// multiply-add per row and element: the same order as a plain loop over the rows.

#define PV 8           // vectors per panel
#define PW (PV * LN)   // columns per panel
#define RB 8           // rows per block

static void cols_panel(float *y, float ys, float *G, int gt, float gs, const float *g, const v16 *Mp,
                       const float *x, int64_t N, int64_t J, int64_t r, const loramm_drop *d, int64_t p,
                       v16 *acc /* [r][PV] */) {
    int64_t j0 = p * PW, w = imin(PW, J - j0);
    int nv = (int)((w + LN - 1) / LN);
    v16 xd[RB][PV];
    for (int b = 0; b < RB; b++)
        for (int v = 0; v < PV; v++) xd[b][v] = (v16){0};
    for (int64_t q = 0; G && q < r * PV; q++) acc[q] = (v16){0};
    const v16 *mp = Mp ? Mp + p * PV * r : NULL;   // [nv][r] vectors of this panel
    for (int64_t i0 = 0; i0 < N; i0 += RB) {
        int nb = (int)imin(RB, N - i0);
        for (int b = 0; b < nb; b++) {
            int64_t i = i0 + b;
            const float *gi = g + i * r;
            if (i + RB < N)   // the row segments a block ahead: rows are J floats apart, beyond the
                for (int64_t l = 0; l < w; l += LN) {   // hardware prefetchers' reach
                    if (G) __builtin_prefetch(x + (i + RB) * J + j0 + l, 0, 3);
                    if (y) __builtin_prefetch(y + (i + RB) * J + j0 + l, 1, 3);
                }
            v16i keep[PV];
            for (int v = 0; v < nv; v++) keep[v] = d ? keep_mask(d, i, J, j0 + v * LN) : (v16i){0};
            if (G)
                for (int v = 0; v < nv; v++) {
                    v16 xv = ld(x + i * J + j0 + v * LN, (int)imin(LN, w - v * LN));
                    xd[b][v] = d ? masked(xv, d->inv, keep[v]) : xv;
                }
            if (y) {   // t = Σ_k g[i, k] · M[k, panel]: PV independent chains
                v16 t[PV];
                for (int v = 0; v < PV; v++) t[v] = (v16){0};
                for (int64_t k = 0; k < r; k++) {
                    float gk = gi[k];
#pragma GCC unroll 8
                    for (int v = 0; v < PV; v++)
                        if (v < nv) t[v] += gk * mp[v * r + k];
                }
                for (int v = 0; v < nv; v++) {
                    float *yp = y + i * J + j0 + v * LN;
                    int wv = (int)imin(LN, w - v * LN);
                    v16 tv = d ? masked(t[v], d->inv, keep[v]) : t[v];
                    st(yp, ld(yp, wv) + ys * tv, wv);
                }
            }
        }
        if (!G) continue;
        for (int64_t k = 0; k < r; k++) {   // PV independent chains per rank row
            v16 a[PV];
            for (int v = 0; v < PV; v++) a[v] = acc[k * PV + v];
            for (int b = 0; b < nb; b++) {
                float gk = g[(i0 + b) * r + k];
#pragma GCC unroll 8
                for (int v = 0; v < PV; v++) a[v] += gk * xd[b][v];
            }
            for (int v = 0; v < PV; v++) acc[k * PV + v] = a[v];
        }
    }
    for (int64_t k = 0; G && k < r; k++)
        for (int64_t l = 0; l < w; l++) {
            float *dst = gt ? &G[(j0 + l) * r + k] : &G[k * J + j0 + l];
            *dst += gs * acc[k * PV + l / LN][l % LN];
        }
}

void loramm_cols(float *y, float ys, float *G, int gt, float gs, const float *g, const float *M, const float *x,
                 int64_t N, int64_t J, int64_t r, const loramm_drop *d) {
    int64_t np = (J + PW - 1) / PW;
    v16 *Mp = y ? pack_cols(M, J, r) : NULL;
#pragma omp parallel if (N * J >= PAR_WORK)
    {
        v16 *acc = G ? aligned_alloc(sizeof(v16), (size_t)(r * PV) * sizeof *acc) : NULL;
        AG_ASSERT(acc || !G, "loramm_cols: out of memory for %lld accumulators", (long long)(r * PV));
#pragma omp for schedule(static)
        for (int64_t p = 0; p < np; p++) cols_panel(y, ys, G, gt, gs, g, Mp, x, N, J, r, d, p, acc);
        free(acc);
    }
    free(Mp);
}

void loramm_transpose(float *Mt, const float *B, int64_t O, int64_t r) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t k = 0; k < r; k++) Mt[k * O + o] = B[o * r + k];
}
