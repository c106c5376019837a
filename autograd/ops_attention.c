// ops_attention.c — rotary position embedding (rope) and fused grouped-query attention,
// each forward with its backward beside it.
//
// Attention is flash-attention style: the forward keeps, per (query row, head), only the
// log-sum-exp of the scores; the backward recomputes each score tile from q and k. Work is
// split into tiles of BQ query rows × BK keys that fit in L1/L2; the small products inside a
// tile (scores = q·kᵀ, p·v, ...) run through one register-blocked kernel (mm below). Every
// output element is written by exactly one OpenMP task with a fixed order of operations, so
// results are bit-identical run to run (and across thread counts).
//
// Shapes (legend in ag.h): q[Nq, H*D], k/v[Nk, K*D], out[Nq, H*D], lse[Nq, H]; query row i
// attends keys [beg[i], end[i]); query head h reads key/value head h / (H/K).
#include "ag.h"
#include "vmath.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

// --- arena scratch released at the end of an op (stack discipline on the bump arena)

static size_t arena_mark(ag_ctx *c) { return c->arena.used; }
static void arena_release(ag_ctx *c, size_t mark) { c->arena.used = mark; }

// --- RoPE (HF Llama rotate-half): pairs (i, i + D/2) of each head rotated by pos·inv_freq[i]

#define ROPE_MAXHALF 512

// cos/sin of θ = (float)pos · inv_freq[i], computed in fp32 as HF does
static void rope_table(float *cs, float *sn, int32_t pos, const float *inv_freq, int half) {
    for (int i = 0; i < half; i++) {
        float th = (float)pos * inv_freq[i];
        cs[i] = cosf(th);
        sn[i] = sinf(th);
    }
}

// out = rot(x, θ), or (backward) the inverse rotation added into out. Products are rounded
// before the sum (no fused multiply-add), as HF's q·cos + rotate_half(q)·sin does.
__attribute__((optimize("fp-contract=off")))
static void rope_apply(float *out, const float *x, int64_t N, int nheads, int D, const int32_t *pos,
                       const float *inv_freq, int backward) {
    int half = D / 2;
    int64_t ld = (int64_t)nheads * D;
#pragma omp parallel for schedule(static) if (N * ld >= AG_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        float cs[ROPE_MAXHALF], sn[ROPE_MAXHALF];
        rope_table(cs, sn, pos[n], inv_freq, half);
        for (int h = 0; h < nheads; h++) {
            const float *a = x + n * ld + (int64_t)h * D, *b = a + half;
            float *oa = out + n * ld + (int64_t)h * D, *ob = oa + half;
            if (!backward) {
                for (int i = 0; i < half; i++) {
                    float ai = a[i], bi = b[i];
                    oa[i] = ai * cs[i] - bi * sn[i];
                    ob[i] = bi * cs[i] + ai * sn[i];
                }
            } else {   // dx = Rᵀ dout, accumulated
                for (int i = 0; i < half; i++) {
                    float ai = a[i], bi = b[i];
                    oa[i] += ai * cs[i] + bi * sn[i];
                    ob[i] += bi * cs[i] - ai * sn[i];
                }
            }
        }
    }
}

static void rope_backward(ag_ctx *c, ag_node *n) {
    ag_tensor *x = n->in[0];
    float *dx = ag_grad(c, x);
    if (!dx) return;
    rope_apply(dx, n->out->grad, x->shape[0], (int)n->i[0], (int)n->i[1], n->aux[0], n->aux[1], 1);
}

ag_tensor *ag_rope(ag_ctx *c, ag_tensor *x, int nheads, const int32_t *pos, const float *inv_freq) {
    if (!x) return NULL;
    char s[64];
    if (x->ndim != 2 || nheads <= 0 || x->shape[1] % nheads != 0 || (x->shape[1] / nheads) % 2 != 0)
        return err_set("rope: x %s must be [N, nheads*D] with nheads = %d and an even head dim D",
                       ag_shape_str(x, s, sizeof s), nheads), NULL;
    int D = (int)(x->shape[1] / nheads);
    if (D / 2 > ROPE_MAXHALF)
        return err_set("rope: head dim %d exceeds the supported %d", D, 2 * ROPE_MAXHALF), NULL;
    if (!pos || !inv_freq) return err_set("rope: positions and inv_freq must be given"), NULL;
    int64_t N = x->shape[0];
    ag_tensor *out = ag_new2(c, N, x->shape[1]);
    if (!out) return NULL;
    rope_apply(out->data, x->data, N, nheads, D, pos, inv_freq, 0);
    if (!ag_needs_grad(c, &x, 1)) ag_prof_mark(c, AG_OP_ROPE);
    else {
        int32_t *p = ag_alloc(c, (size_t)(N ? N : 1) * sizeof *p, "rope positions");
        float *f = ag_alloc(c, (size_t)(D / 2) * sizeof *f, "rope inv_freq");
        if (!p || !f) return NULL;
        memcpy(p, pos, (size_t)N * sizeof *p);
        memcpy(f, inv_freq, (size_t)(D / 2) * sizeof *f);
        ag_node *nd = ag_record(c, AG_OP_ROPE, out, &x, 1, rope_backward);
        if (!nd) return NULL;
        nd->aux[0] = p;
        nd->aux[1] = f;
        nd->i[0] = nheads;
        nd->i[1] = D;
    }
    return out;
}

// --- small dense kernel: C[m,n] (= or +=) A[m,k] · B[k,n], row strides lda, ldb, ldc

// MR_BIG rows × 16 columns of C in registers: 16 accumulators when the ISA has 32 vector
// registers (AVX-512VL), 8 otherwise. Every path sums over k in the same order with fused
// multiply-adds, so a C element does not depend on which path computed it.
#if defined(__AVX512VL__)
#define MR_BIG 8
#else
#define MR_BIG 4
#endif

// 4 rows × 16 columns in registers, then 8-column and scalar remainders
static void mm4(float *restrict C, int64_t ldc, const float *restrict A, int64_t lda,
                const float *restrict B, int64_t ldb, int m, int n, int k, int acc) {
    int i = 0;
    for (; i + 4 <= m; i += 4) {
        const float *a0 = A + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        float *c0 = C + i * ldc, *c1 = c0 + ldc, *c2 = c1 + ldc, *c3 = c2 + ldc;
        int j = 0;
        for (; j + 16 <= n; j += 16) {
            vm8 x00 = {0}, x01 = {0}, x10 = {0}, x11 = {0}, x20 = {0}, x21 = {0}, x30 = {0}, x31 = {0};
            if (acc) {
                x00 = vm_ld(c0 + j), x01 = vm_ld(c0 + j + 8), x10 = vm_ld(c1 + j), x11 = vm_ld(c1 + j + 8);
                x20 = vm_ld(c2 + j), x21 = vm_ld(c2 + j + 8), x30 = vm_ld(c3 + j), x31 = vm_ld(c3 + j + 8);
            }
            for (int p = 0; p < k; p++) {
                vm8 b0 = vm_ld(B + p * ldb + j), b1 = vm_ld(B + p * ldb + j + 8);
                float s0 = a0[p], s1 = a1[p], s2 = a2[p], s3 = a3[p];
                x00 += s0 * b0, x01 += s0 * b1, x10 += s1 * b0, x11 += s1 * b1;
                x20 += s2 * b0, x21 += s2 * b1, x30 += s3 * b0, x31 += s3 * b1;
            }
            vm_st(c0 + j, x00), vm_st(c0 + j + 8, x01), vm_st(c1 + j, x10), vm_st(c1 + j + 8, x11);
            vm_st(c2 + j, x20), vm_st(c2 + j + 8, x21), vm_st(c3 + j, x30), vm_st(c3 + j + 8, x31);
        }
        for (; j + 8 <= n; j += 8) {
            vm8 x0 = {0}, x1 = {0}, x2 = {0}, x3 = {0};
            if (acc) x0 = vm_ld(c0 + j), x1 = vm_ld(c1 + j), x2 = vm_ld(c2 + j), x3 = vm_ld(c3 + j);
            for (int p = 0; p < k; p++) {
                vm8 b0 = vm_ld(B + p * ldb + j);
                x0 += a0[p] * b0, x1 += a1[p] * b0, x2 += a2[p] * b0, x3 += a3[p] * b0;
            }
            vm_st(c0 + j, x0), vm_st(c1 + j, x1), vm_st(c2 + j, x2), vm_st(c3 + j, x3);
        }
        for (; j < n; j++) {
            float x0 = acc ? c0[j] : 0, x1 = acc ? c1[j] : 0, x2 = acc ? c2[j] : 0, x3 = acc ? c3[j] : 0;
            for (int p = 0; p < k; p++) {
                float b = B[p * ldb + j];
                x0 += a0[p] * b, x1 += a1[p] * b, x2 += a2[p] * b, x3 += a3[p] * b;
            }
            c0[j] = x0, c1[j] = x1, c2[j] = x2, c3[j] = x3;
        }
    }
    for (; i < m; i++) {
        const float *a0 = A + i * lda;
        float *c0 = C + i * ldc;
        int j = 0;
        for (; j + 8 <= n; j += 8) {
            vm8 x0 = {0};
            if (acc) x0 = vm_ld(c0 + j);
            for (int p = 0; p < k; p++) x0 += a0[p] * vm_ld(B + p * ldb + j);
            vm_st(c0 + j, x0);
        }
        for (; j < n; j++) {
            float x0 = acc ? c0[j] : 0;
            for (int p = 0; p < k; p++) x0 += a0[p] * B[p * ldb + j];
            c0[j] = x0;
        }
    }
}

// MR_BIG rows × 2L columns [j, j + 2L) of C at a time, in the L-lane vector type VT (loads LD,
// stores ST), while they fit: the register block of mm, written once for 8 and for 16 lanes.
#define MM_ROWBLOCK(VT, LD, ST, L)                                                                      \
    for (; j + 2 * (L) <= n; j += 2 * (L)) {                                                            \
        VT x[MR_BIG][2];                                                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < MR_BIG; r++) {                                      \
            if (acc) x[r][0] = LD(C + (i + r) * ldc + j), x[r][1] = LD(C + (i + r) * ldc + j + (L));     \
            else x[r][0] = (VT){0}, x[r][1] = (VT){0};                                                  \
        }                                                                                               \
        for (int p = 0; p < k; p++) {                                                                   \
            VT b0 = LD(B + p * ldb + j), b1 = LD(B + p * ldb + j + (L));                                \
            _Pragma("GCC unroll 8") for (int r = 0; r < MR_BIG; r++) {                                  \
                float s = A[(i + r) * lda + p];                                                         \
                x[r][0] += s * b0, x[r][1] += s * b1;                                                   \
            }                                                                                           \
        }                                                                                               \
        _Pragma("GCC unroll 8") for (int r = 0; r < MR_BIG; r++)                                        \
            ST(C + (i + r) * ldc + j, x[r][0]), ST(C + (i + r) * ldc + j + (L), x[r][1]);               \
    }

static void mm(float *restrict C, int64_t ldc, const float *restrict A, int64_t lda,
               const float *restrict B, int64_t ldb, int m, int n, int k, int acc) {
    int i = 0;
#if MR_BIG > 4
    for (; i + MR_BIG <= m; i += MR_BIG) {
        int j = 0;
#if defined(__AVX512F__)
        // 16 lanes (vm16, one 512-bit register): MR_BIG rows × 32 columns in 16 accumulators,
        // twice the work per instruction of the 8-lane block; the same multiply-adds per element
        MM_ROWBLOCK(vm16, vm16_ld, vm16_st, 16)
#endif
        MM_ROWBLOCK(vm8, vm_ld, vm_st, 8)
        if (j < n) mm4(C + i * ldc + j, ldc, A + i * lda, lda, B + j, ldb, MR_BIG, n - j, k, acc);
    }
#endif
    if (i < m) mm4(C + i * ldc, ldc, A + i * lda, lda, B, ldb, m - i, n, k, acc);
}

// dst[d, j] = src[j, d] for j < n, d < D (dst row stride ldd)
static void transpose(float *restrict dst, int64_t ldd, const float *restrict src, int64_t lds, int n, int D) {
    for (int j = 0; j < n; j++)
        for (int d = 0; d < D; d++) dst[d * ldd + j] = src[j * lds + d];
}

// The same in 8 × 8 blocks, for the large strides of whole k/v matrices (rows of powers of two
// alias in the cache when a whole row or column is walked at once)
static void transpose_blocked(float *restrict dst, int64_t ldd, const float *restrict src, int64_t lds, int n,
                              int D) {
    for (int j0 = 0; j0 < n; j0 += 8)
        for (int d0 = 0; d0 < D; d0 += 8) {
            int j1 = j0 + 8 < n ? j0 + 8 : n, d1 = d0 + 8 < D ? d0 + 8 : D;
            for (int d = d0; d < d1; d++)
                for (int j = j0; j < j1; j++) dst[d * ldd + j] = src[j * lds + d];
        }
}

// row[j] = exp(row[j]·scale − bias) for j in [b, e), 0 elsewhere in [0, n); returns Σ row
static float row_exp(float *row, int n, int64_t b, int64_t e, float scale, float bias) {
    vm8 acc = {0};
    int64_t j = b;
#if defined(__AVX512F__)
    for (; j + 16 <= e; j += 16) {   // 16 lanes at once; the sum as two 8-lane steps (same order)
        vm16 p = vm16_exp(vm16_ld(row + j) * scale - bias);
        vm16_st(row + j, p);
        acc += __builtin_shufflevector(p, p, 0, 1, 2, 3, 4, 5, 6, 7);
        acc += __builtin_shufflevector(p, p, 8, 9, 10, 11, 12, 13, 14, 15);
    }
#endif
    for (; j + 8 <= e; j += 8) {
        vm8 p = vm_exp(vm_ld(row + j) * scale - bias);
        vm_st(row + j, p);
        acc += p;
    }
    if (j < e) {   // tail: padded with -inf, whose exp is 0
        float tmp[8];
        for (int t = 0; t < 8; t++) tmp[t] = j + t < e ? row[j + t] * scale - bias : -INFINITY;
        vm8 p = vm_exp(vm_ld(tmp));
        vm_st(tmp, p);
        acc += p;
        for (int64_t t = 0; j + t < e; t++) row[j + t] = tmp[t];
    }
    for (int64_t t = 0; t < b; t++) row[t] = 0;
    for (int64_t t = e; t < n; t++) row[t] = 0;
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// --- attention

#define BQ 32   // query rows per tile
#define BK 64   // keys per tile

typedef struct attn_dims {
    int64_t Nq, Nk;
    int H, K, D, G;       // G = H / K query heads per key/value head
    int64_t ldq, ldk;     // H*D, K*D
    float scale;
    const int32_t *beg, *end;   // [Nq]
    int ntiles;                 // query tiles of BQ rows
    const int32_t *tlo, *thi;   // [ntiles] union of the tile rows' key ranges
    const float *kT, *vT;       // [K, D, Nk]: k and v transposed per head, once per op
} attn_dims;

// dst[g, d, j] = src[j, g·D + d] (per key/value head, keys contiguous): transposed once per op
// instead of once per (query head, query tile, key tile)
static void transpose_heads(float *dst, const float *src, int64_t Nk, int K, int D, int64_t ld) {
    int64_t nb = (Nk + BK - 1) / BK;
#pragma omp parallel for schedule(static) if (Nk * K * D >= AG_PAR_MIN)
    for (int64_t task = 0; task < (int64_t)K * nb; task++) {
        int g = (int)(task / nb);
        int64_t j0 = task % nb * BK;
        int n = (int)(Nk - j0 < BK ? Nk - j0 : BK);
        transpose_blocked(dst + (int64_t)g * D * Nk + j0, Nk, src + j0 * ld + (int64_t)g * D, ld, n, D);
    }
}

// the union of the key ranges of query rows [i0, i1) (empty ranges ignored)
static void tile_range(const attn_dims *a, int64_t i0, int64_t i1, int32_t *lo, int32_t *hi) {
    int32_t l = INT32_MAX, h = 0;
    for (int64_t i = i0; i < i1; i++) {
        if (a->beg[i] >= a->end[i]) continue;
        if (a->beg[i] < l) l = a->beg[i];
        if (a->end[i] > h) h = a->end[i];
    }
    if (l >= h) l = h = 0;
    *lo = l, *hi = h;
}

// multiply-adds of one pass over the (query row, key) pairs of every head: below ATTN_PAR_MIN
// (4M: ~0.1 ms on one core, e.g. a decoded token or the short records of a small model) the
// tiles run on one thread, so no barrier waits for a thread parked behind another process
// (issue 17); each tile writes only its own rows, so the result is the same either way
#define ATTN_PAR_MIN (1 << 22)
static int attn_parallel(const attn_dims *a) {
    int64_t keys = 0;
    for (int64_t i = 0; i < a->Nq; i++) keys += a->end[i] - a->beg[i];
    return keys * a->H * a->D >= ATTN_PAR_MIN;
}

static int attn_setup(ag_ctx *c, attn_dims *a) {
    a->ntiles = (int)((a->Nq + BQ - 1) / BQ);
    int32_t *lo = ag_alloc(c, (size_t)(a->ntiles + 1) * 2 * sizeof *lo, "attention tile ranges");
    if (!lo) return -1;
    for (int t = 0; t < a->ntiles; t++) {
        int64_t i0 = (int64_t)t * BQ, i1 = i0 + BQ < a->Nq ? i0 + BQ : a->Nq;
        tile_range(a, i0, i1, &lo[t], &lo[a->ntiles + 1 + t]);
    }
    a->tlo = lo;
    a->thi = lo + a->ntiles + 1;
    return 0;
}

// Forward of one (head h, query tile t): out rows and lse. Scratch: BK*D + BQ*BK + BQ*D + 2*BQ.
static void attn_fwd_tile(const attn_dims *a, const float *q, const float *k, const float *v, float *out,
                          float *lse, int h, int t, float *scr) {
    int D = a->D, g = h / a->G;
    int64_t i0 = (int64_t)t * BQ;
    int bq = (int)(a->Nq - i0 < BQ ? a->Nq - i0 : BQ);
    float *s = scr + (size_t)BK * D, *acc = s + BQ * BK, *mx = acc + (size_t)BQ * D, *l = mx + BQ;
    const float *qh = q + i0 * a->ldq + (int64_t)h * D;
    (void)k;
    for (int r = 0; r < bq; r++) mx[r] = -INFINITY, l[r] = 0;
    memset(acc, 0, (size_t)bq * D * sizeof *acc);
    for (int64_t j0 = a->tlo[t]; j0 < a->thi[t]; j0 += BK) {
        int bk = (int)(a->thi[t] - j0 < BK ? a->thi[t] - j0 : BK);
        mm(s, BK, qh, a->ldq, a->kT + (int64_t)g * D * a->Nk + j0, a->Nk, bq, bk, D, 0);
        for (int r = 0; r < bq; r++) {
            float *sr = s + r * BK;
            int64_t b = a->beg[i0 + r] - j0, e = a->end[i0 + r] - j0;
            if (b < 0) b = 0;
            if (e > bk) e = bk;
            if (b >= e) {
                memset(sr, 0, (size_t)bk * sizeof *sr);
                continue;
            }
            float m = -INFINITY;
            for (int64_t j = b; j < e; j++) {
                float x = sr[j] * a->scale;
                m = x > m ? x : m;
            }
            if (m > mx[r]) {
                float f = expf(mx[r] - m);   // 0 on the first tile
                l[r] *= f;
                float *ar = acc + (size_t)r * D;
                for (int d = 0; d < D; d++) ar[d] *= f;
                mx[r] = m;
            }
            l[r] += row_exp(sr, bk, b, e, a->scale, mx[r]);
        }
        mm(acc, D, s, BK, v + j0 * a->ldk + (int64_t)g * D, a->ldk, bq, D, bk, 1);
    }
    for (int r = 0; r < bq; r++) {
        float *o = out + (i0 + r) * a->ldq + (int64_t)h * D, *ar = acc + (size_t)r * D;
        if (l[r] > 0) {
            float inv = 1.0f / l[r];
            for (int d = 0; d < D; d++) o[d] = ar[d] * inv;
            lse[(i0 + r) * a->H + h] = mx[r] + logf(l[r]);
        } else {   // no key to attend: zero output, no gradient
            memset(o, 0, (size_t)D * sizeof *o);
            lse[(i0 + r) * a->H + h] = -INFINITY;
        }
    }
}

// P and dS of a (query tile × key tile) block from recomputed scores (s) and dP (dp):
// in place, s <- P, dp <- dS = P∘(dP − Dr); entries outside a row's range are 0.
static void attn_p_ds(const attn_dims *a, float *s, float *dp, int64_t i0, int bq, int64_t j0, int bk,
                      const float *lse, const float *Dr, int h) {
    for (int r = 0; r < bq; r++) {
        float *sr = s + r * BK, *dr = dp ? dp + r * BK : NULL;
        int64_t b = a->beg[i0 + r] - j0, e = a->end[i0 + r] - j0;
        if (b < 0) b = 0;
        if (e > bk) e = bk;
        float L = lse[(i0 + r) * a->H + h], Di = Dr[(i0 + r) * a->H + h];
        if (b >= e) {
            memset(sr, 0, (size_t)bk * sizeof *sr);
            if (dr) memset(dr, 0, (size_t)bk * sizeof *dr);
            continue;
        }
        row_exp(sr, bk, b, e, a->scale, L);
        if (dr)
            for (int j = 0; j < bk; j++) dr[j] = sr[j] * (dr[j] - Di);
    }
}

// dq rows of one (head h, query tile t), accumulated into dq. Scratch: 2*BK*D + 2*BQ*BK + BQ*D.
static void attn_dq_tile(const attn_dims *a, const float *q, const float *k, const float *v,
                         const float *dout, const float *lse, const float *Dr, float *dq, int h, int t,
                         float *scr) {
    int D = a->D, g = h / a->G;
    int64_t i0 = (int64_t)t * BQ;
    int bq = (int)(a->Nq - i0 < BQ ? a->Nq - i0 : BQ);
    float *s = scr + 2 * (size_t)BK * D, *dp = s + BQ * BK, *acc = dp + BQ * BK;
    const float *qh = q + i0 * a->ldq + (int64_t)h * D, *doh = dout + i0 * a->ldq + (int64_t)h * D;
    (void)v;
    memset(acc, 0, (size_t)bq * D * sizeof *acc);
    for (int64_t j0 = a->tlo[t]; j0 < a->thi[t]; j0 += BK) {
        int bk = (int)(a->thi[t] - j0 < BK ? a->thi[t] - j0 : BK);
        const float *kj = k + j0 * a->ldk + (int64_t)g * D;
        mm(s, BK, qh, a->ldq, a->kT + (int64_t)g * D * a->Nk + j0, a->Nk, bq, bk, D, 0);
        mm(dp, BK, doh, a->ldq, a->vT + (int64_t)g * D * a->Nk + j0, a->Nk, bq, bk, D, 0);
        attn_p_ds(a, s, dp, i0, bq, j0, bk, lse, Dr, h);
        mm(acc, D, dp, BK, kj, a->ldk, bq, D, bk, 1);
    }
    for (int r = 0; r < bq; r++) {
        float *o = dq + (i0 + r) * a->ldq + (int64_t)h * D, *ar = acc + (size_t)r * D;
        for (int d = 0; d < D; d++) o[d] += a->scale * ar[d];
    }
}

// dk/dv rows of one (kv head g, key tile starting at j0), accumulated into dk/dv (either may be
// NULL). Scratch: 2*BK*D + 2*BQ*BK + 2*BK*BQ + 2*BK*D.
static void attn_dkv_tile(const attn_dims *a, const float *q, const float *k, const float *v,
                          const float *dout, const float *lse, const float *Dr, float *dk, float *dv, int g,
                          int64_t j0, float *scr) {
    int D = a->D;
    int bk = (int)(a->Nk - j0 < BK ? a->Nk - j0 : BK);
    float *s = scr + 2 * (size_t)BK * D, *dp = s + BQ * BK;
    float *pt = dp + BQ * BK, *dst = pt + BK * BQ, *dka = dst + BK * BQ, *dva = dka + (size_t)BK * D;
    const float *kt = a->kT + (int64_t)g * D * a->Nk + j0, *vt = a->vT + (int64_t)g * D * a->Nk + j0;
    int64_t ldt = a->Nk;
    (void)k, (void)v;
    memset(dka, 0, (size_t)bk * D * sizeof *dka);
    memset(dva, 0, (size_t)bk * D * sizeof *dva);
    for (int h = g * a->G; h < (g + 1) * a->G; h++) {
        for (int t = 0; t < a->ntiles; t++) {
            if (a->tlo[t] >= j0 + bk || a->thi[t] <= j0) continue;   // no row of the tile sees these keys
            int64_t i0 = (int64_t)t * BQ;
            int bq = (int)(a->Nq - i0 < BQ ? a->Nq - i0 : BQ);
            const float *qh = q + i0 * a->ldq + (int64_t)h * D, *doh = dout + i0 * a->ldq + (int64_t)h * D;
            mm(s, BK, qh, a->ldq, kt, ldt, bq, bk, D, 0);
            if (dk) mm(dp, BK, doh, a->ldq, vt, ldt, bq, bk, D, 0);
            attn_p_ds(a, s, dk ? dp : NULL, i0, bq, j0, bk, lse, Dr, h);
            if (dv) {
                transpose(pt, BQ, s, BK, bq, bk);
                mm(dva, D, pt, BQ, doh, a->ldq, bk, D, bq, 1);
            }
            if (dk) {
                transpose(dst, BQ, dp, BK, bq, bk);
                mm(dka, D, dst, BQ, qh, a->ldq, bk, D, bq, 1);
            }
        }
    }
    for (int j = 0; j < bk; j++) {
        float *ok = dk ? dk + (j0 + j) * a->ldk + (int64_t)g * D : NULL;
        float *ov = dv ? dv + (j0 + j) * a->ldk + (int64_t)g * D : NULL;
        for (int d = 0; d < D; d++) {
            if (ok) ok[d] += a->scale * dka[(size_t)j * D + d];
            if (ov) ov[d] += dva[(size_t)j * D + d];
        }
    }
}

static size_t attn_scratch_floats(int D) {
    size_t fwd = (size_t)BK * D + BQ * BK + (size_t)BQ * D + 2 * BQ;
    size_t dq = 2 * (size_t)BK * D + 2 * BQ * BK + (size_t)BQ * D;
    size_t dkv = 4 * (size_t)BK * D + 4 * BQ * BK;
    size_t m = fwd > dq ? fwd : dq;
    m = m > dkv ? m : dkv;
    return (m + 15) & ~(size_t)15;   // 64-byte aligned slices
}

static void attn_dims_from_node(attn_dims *a, const ag_node *n) {
    memset(a, 0, sizeof *a);
    a->Nq = n->out->shape[0];
    a->Nk = n->in[1]->shape[0];
    a->H = (int)n->i[0];
    a->K = (int)n->i[1];
    a->D = (int)(n->out->shape[1] / a->H);
    a->G = a->H / a->K;
    a->ldq = (int64_t)a->H * a->D;
    a->ldk = (int64_t)a->K * a->D;
    a->scale = n->f[0];
    a->beg = n->aux[0];
    a->end = n->aux[1];
    a->ntiles = (int)n->i[2];
    a->tlo = n->aux[2];
    a->thi = a->tlo + a->ntiles + 1;
}

static void attention_backward(ag_ctx *c, ag_node *n) {
    ag_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
    attn_dims a;
    attn_dims_from_node(&a, n);
    const float *lse = n->saved, *out = n->out->data, *dout = n->out->grad;
    float *dq = ag_grad(c, q), *dk = ag_grad(c, k), *dv = ag_grad(c, v);
    size_t mark = arena_mark(c);
    int nth = omp_get_max_threads();
    size_t per = attn_scratch_floats(a.D);
    size_t nkt = ((size_t)(a.K * a.D * a.Nk) + 15) & ~(size_t)15;
    size_t bytes = ((size_t)(a.Nq * a.H + 16) + (size_t)nth * per + 2 * nkt) * sizeof(float);
    float *Dr = ag_alloc(c, bytes, "attention backward scratch"), *heap = NULL;
    if (!Dr) Dr = heap = xmalloc(bytes);   // a full arena must not lose the gradient
    float *scr = Dr + ((a.Nq * a.H + 15) & ~(int64_t)15), *kT = scr + (size_t)nth * per, *vT = kT + nkt;
    transpose_heads(kT, k->data, a.Nk, a.K, a.D, a.ldk);
    transpose_heads(vT, v->data, a.Nk, a.K, a.D, a.ldk);
    a.kT = kT, a.vT = vT;
    int par = attn_parallel(&a);
    // D_i = Σ_d dout·out per (row, head)
#pragma omp parallel for schedule(static) if (a.Nq * a.H * a.D >= AG_PAR_MIN)
    for (int64_t i = 0; i < a.Nq; i++)
        for (int h = 0; h < a.H; h++) {
            const float *o = out + i * a.ldq + (int64_t)h * a.D, *g = dout + i * a.ldq + (int64_t)h * a.D;
            float s = 0;
            for (int d = 0; d < a.D; d++) s += o[d] * g[d];
            Dr[i * a.H + h] = s;
        }
    if (dq) {
        int64_t ntask = (int64_t)a.H * a.ntiles;
#pragma omp parallel for schedule(dynamic, 1) if (par)
        for (int64_t task = 0; task < ntask; task++)
            attn_dq_tile(&a, q->data, k->data, v->data, dout, lse, Dr, dq, (int)(task % a.H),
                         (int)(task / a.H), scr + (size_t)omp_get_thread_num() * per);
    }
    if (dk || dv) {
        int64_t nkt = (a.Nk + BK - 1) / BK, ntask = (int64_t)a.K * nkt;
#pragma omp parallel for schedule(dynamic, 1) if (par)
        for (int64_t task = 0; task < ntask; task++)
            attn_dkv_tile(&a, q->data, k->data, v->data, dout, lse, Dr, dk, dv, (int)(task % a.K),
                          (task / a.K) * BK, scr + (size_t)omp_get_thread_num() * per);
    }
    free(heap);
    arena_release(c, mark);
}

ag_tensor *ag_attention(ag_ctx *c, ag_tensor *q, ag_tensor *k, ag_tensor *v, int H, int K,
                        const int32_t *kv_begin, const int32_t *kv_end, float scale) {
    if (!q || !k || !v) return NULL;
    char s1[64], s2[64], s3[64];
    ag_shape_str(q, s1, sizeof s1), ag_shape_str(k, s2, sizeof s2), ag_shape_str(v, s3, sizeof s3);
    if (H <= 0 || K <= 0 || H % K != 0)
        return err_set("attention: %d query heads are not a multiple of %d key/value heads", H, K), NULL;
    if (q->ndim != 2 || k->ndim != 2 || v->ndim != 2 || q->shape[1] % H != 0)
        return err_set("attention: q %s, k %s, v %s must be [Nq, H*D], [Nk, K*D], [Nk, K*D] with H = %d",
                       s1, s2, s3, H), NULL;
    int64_t D = q->shape[1] / H, Nq = q->shape[0], Nk = k->shape[0];
    if (k->shape[1] != K * D)
        return err_set("attention: k %s does not match q %s: expected [Nk, %lld] (K = %d heads of D = %lld)",
                       s2, s1, (long long)(K * D), K, (long long)D), NULL;
    if (!ag_same_shape(k, v))
        return err_set("attention: v %s must have the shape of k %s", s3, s2), NULL;
    if (!kv_end && Nq > Nk)
        return err_set("attention: causal attention needs at least as many keys as queries: q %s, k %s "
                       "(pass explicit kv ranges)", s1, s2), NULL;

    ag_tensor *out = ag_new2(c, Nq, H * D);
    if (!out) return NULL;
    size_t mark = arena_mark(c);
    int32_t *beg = ag_alloc(c, (size_t)(Nq + 1) * 2 * sizeof *beg, "attention ranges");
    float *lse = ag_alloc(c, (size_t)(Nq * H + 1) * sizeof *lse, "attention lse");
    if (!beg || !lse) return NULL;
    int32_t *end = beg + Nq + 1;
    for (int64_t i = 0; i < Nq; i++) {
        int64_t b = kv_begin ? kv_begin[i] : 0, e = kv_end ? kv_end[i] : Nk - Nq + i + 1;
        if (b < 0 || b > e || e > Nk) {
            arena_release(c, mark);
            return err_set("attention: query row %lld has key range [%lld, %lld); need 0 <= begin <= end <= Nk = "
                           "%lld (q %s, k %s)", (long long)i, (long long)b, (long long)e, (long long)Nk, s1, s2), NULL;
        }
        beg[i] = (int32_t)b, end[i] = (int32_t)e;
    }
    attn_dims a = {.Nq = Nq, .Nk = Nk, .H = H, .K = K, .D = (int)D, .G = H / K, .ldq = H * D, .ldk = K * D,
                   .scale = scale, .beg = beg, .end = end};
    if (attn_setup(c, &a) != 0) return NULL;
    size_t keep = arena_mark(c);

    int nth = omp_get_max_threads();
    size_t per = attn_scratch_floats((int)D);
    float *scr = ag_alloc(c, (size_t)nth * per * sizeof *scr, "attention scratch");
    float *kT = ag_alloc(c, (size_t)(K * D * Nk + 1) * sizeof *kT, "attention kT");
    if (!scr || !kT) return NULL;
    transpose_heads(kT, k->data, Nk, K, (int)D, K * D);
    a.kT = kT;
    int64_t ntask = (int64_t)H * a.ntiles;
#pragma omp parallel for schedule(dynamic, 1) if (attn_parallel(&a))
    for (int64_t task = 0; task < ntask; task++)
        attn_fwd_tile(&a, q->data, k->data, v->data, out->data, lse, (int)(task % H), (int)(task / H),
                      scr + (size_t)omp_get_thread_num() * per);

    ag_tensor *in[3] = {q, k, v};
    if (!ag_needs_grad(c, in, 3)) {
        arena_release(c, mark);
        ag_prof_mark(c, AG_OP_ATTENTION);
        return out;
    }
    arena_release(c, keep);
    ag_node *n = ag_record(c, AG_OP_ATTENTION, out, in, 3, attention_backward);
    if (!n) return NULL;
    n->saved = lse;
    n->aux[0] = beg;
    n->aux[1] = end;
    n->aux[2] = a.tlo;
    n->i[0] = H;
    n->i[1] = K;
    n->i[2] = a.ntiles;
    n->f[0] = scale;
    return out;
}
