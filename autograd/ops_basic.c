// ops_basic.c — the basic differentiable ops: linear and LoRA linear, elementwise add / mul /
// scale, RMSNorm and LayerNorm, the activations (SwiGLU, exact and tanh GELU), the embedding
// gather and the row concatenation / scatter. Each forward is followed by its backward, which
// accumulates (+=) into the gradient of every input that requires one (see ag.h).
//
// Shapes follow the legend of ag.h. Row-wise ops see a tensor [..., C] as [N, C] with N the
// product of the leading dims. Products go through ag_sgemm (blas.h: one thread, on oneDNN's
// kernels, for small ones; OpenBLAS for large ones), always called outside OpenMP regions; OpenMP loops write disjoint outputs. Reductions over rows
// (bias / norm-weight / broadcast gradients) are split by column blocks, each summed serially
// over the rows, so results are bit-identical run to run and for any thread count.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ag.h"
#include "blas.h"
#include "loramm.h"
#include "mm16.h"
#include "vmath.h"
#include "wide16.h"

// --- helpers

#define PAR_MIN AG_PAR_MIN   // elements below which a loop stays serial (ag.h: measured, issue 17)
#define COLBLK 64       // columns per block in the deterministic column reductions

// shape string for error messages; the buffer lives until the end of the enclosing block
#define SHP(t) ag_shape_str((t), (char[64]){0}, 64)


// dx[N,In] += dy[N,O] · W[O,In] for a frozen W of either storage (the large backward product)
static void frozen_dx_acc(float *dx, const float *dy, const ag_tensor *W, int N, int In, int O) {
    if (W->dtype == AG_BF16) mm16_xw(dx, dy, W->w16, N, O, In, 1);
    else if (W->dtype == AG_BF16X) w16_xw(dx, dy, W->w16, N, O, In, 1);
    else ag_sgemm(0, 0, N, In, O, 1.0f, dy, O, W->data, In, 1.0f, dx, In);
}

// y[N,O] (+)= x[N,In] · W[O,In]ᵀ for a frozen W of either storage
static void frozen_xwt(float *y, const float *x, const ag_tensor *W, int N, int O, int In, int accumulate) {
    if (W->dtype == AG_BF16) mm16_xwt(y, x, W->w16, N, O, In, accumulate);
    else if (W->dtype == AG_BF16X) w16_xwt(y, x, W->w16, N, O, In, accumulate);
    else ag_sgemm(0, 1, N, O, In, 1.0f, x, In, W->data, In, accumulate ? 1.0f : 0.0f, y, O);
}

// product of all dims but the last (the rows of a [..., C] tensor)
static int64_t lead_rows(const ag_tensor *t) { return t->ndim ? ag_numel(t->ndim - 1, t->shape) : 1; }
static int64_t last_dim(const ag_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

// the output tensor of an op; on a full arena the message gets the op's name in front
static ag_tensor *op_out(ag_ctx *c, const char *op, int ndim, const int64_t *shape) {
    ag_tensor *t = ag_new(c, ndim, shape);
    if (!t) err_prefix("%s: output", op);
    return t;
}

// Saved state of the node just recorded; on a full arena the node is dropped again (the op
// then returns NULL, so nothing downstream can reach it).
static void *op_save(ag_ctx *c, const char *op, size_t bytes) {
    void *p = ag_alloc(c, bytes, "saved state");
    if (!p) {
        err_prefix("%s", op);
        c->nnodes--;
    }
    return p;
}

// Transient scratch: taken from the arena above everything allocated so far and given back
// with scratch_release (the arena is a bump allocator and nothing else allocates meanwhile).
// Falls back to the heap when the arena has no room (backward kernels cannot fail).
typedef struct scratch {
    size_t mark;
    void *heap;
} scratch;

static void *scratch_get(ag_ctx *c, scratch *s, size_t bytes) {
    s->mark = c->arena.used;
    s->heap = NULL;
    size_t start = (c->arena.used + 63) & ~(size_t)63;
    if (start <= c->arena.cap && c->arena.cap - start >= bytes) return ag_alloc(c, bytes, "scratch");
    return s->heap = xmalloc(bytes ? bytes : 1);
}

static void scratch_release(ag_ctx *c, scratch *s) {
    if (s->heap) free(s->heap);
    else c->arena.used = s->mark;
}

// dst[j] += Σ_i src[i·cols + j] over rows i: column blocks in parallel, rows serially.
static void colsum_acc(float *dst, const float *src, int64_t rows, int64_t cols) {
    int64_t nb = (cols + COLBLK - 1) / COLBLK;
#pragma omp parallel for schedule(static) if (rows * cols >= PAR_MIN)
    for (int64_t bk = 0; bk < nb; bk++) {
        int64_t j0 = bk * COLBLK, nj = imin(COLBLK, cols - j0);
        double acc[COLBLK] = {0};
        for (int64_t i = 0; i < rows; i++) {
            const float *s = src + i * cols + j0;
            for (int64_t j = 0; j < nj; j++) acc[j] += s[j];
        }
        for (int64_t j = 0; j < nj; j++) dst[j0 + j] += (float)acc[j];
    }
}

// dst[n] += src[n]
static void vec_acc(float *dst, const float *src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

// --- linear: y[N,O] = x[N,In] · W[O,In]ᵀ (+ b[O])

static void linear_backward(ag_ctx *c, ag_node *n) {
    ag_tensor *x = n->in[0], *W = n->in[1], *b = n->in[2];
    const float *dy = n->out->grad;   // [N, O]
    int N = (int)n->i[0], In = (int)n->i[1], O = (int)n->i[2];
    float *dx = ag_grad(c, x), *dW = ag_grad(c, W), *db = ag_grad(c, b);
    if (N == 0) return;
    if (dx) frozen_dx_acc(dx, dy, W, N, In, O);   // dx[N,In] += dy[N,O] · W[O,In]
    if (dW)   // dW[O,In] += dyᵀ · x
        ag_sgemm(1, 0, O, In, N, 1.0f, dy, O, x->data, In, 1.0f, dW, In);
    if (db) colsum_acc(db, dy, N, O);
}

// x [..., In] against W [O, In]: sizes out, or -1 + err_set naming the op and both shapes
static int check_xw(const char *op, const ag_tensor *x, const ag_tensor *W, int64_t *O, int64_t *In, int64_t *N) {
    if (W->ndim != 2 || x->ndim < 1 || last_dim(x) != W->shape[1])
        return err_set("%s: x [N, In] %s does not match W [O, In] %s (x's last dim must equal W's columns)", op,
                       SHP(x), SHP(W));
    *O = W->shape[0], *In = W->shape[1], *N = lead_rows(x);
    if (*O == 0 || *In == 0) return err_set("%s: W %s has an empty dimension", op, SHP(W));
    if (ag_is16(W) && W->requires_grad)
        return err_set("%s: W %s is held in BF16 (a frozen weight) and cannot be trained", op, SHP(W));
    return 0;
}

ag_tensor *ag_linear(ag_ctx *c, ag_tensor *x, ag_tensor *W, ag_tensor *b) {
    if (!x || !W) return NULL;
    int64_t O, In, N;
    if (check_xw("linear", x, W, &O, &In, &N) != 0) return NULL;
    if (b && b->numel != O) {
        err_set("linear: bias b %s does not match W [O, In] %s (b needs O = %lld values)", SHP(b), SHP(W),
                (long long)O);
        return NULL;
    }
    int64_t shape[AG_MAXDIM];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = O;
    ag_tensor *y = op_out(c, "linear", x->ndim, shape);
    if (!y) return NULL;
    // bias rows first (serially: memory-bound, and no OpenMP region right before the BLAS call)
    if (b)
        for (int64_t i = 0; i < N; i++) memcpy(y->data + i * O, b->data, (size_t)O * sizeof(float));
    if (N > 0 && O > 0) frozen_xwt(y->data, x->data, W, (int)N, (int)O, (int)In, b != NULL);
    ag_tensor *in[3] = {x, W, b};
    ag_node *nd = ag_record(c, AG_OP_LINEAR, y, in, 3, linear_backward);
    if (nd) {
        nd->i[0] = N;
        nd->i[1] = In;
        nd->i[2] = O;
    }
    return y;
}

// --- LoRA linear: y[N,O] = x Wᵀ + s · (drop(x) Aᵀ) Bᵀ, W[O,In] frozen, A[r,In], B[O,r]
//
// Dropout (inverted: kept values scaled by 1/(1-p)) draws one ag_rng_uniform per element of
// x, row-major, from c->rng; an element is dropped when its draw is < p. The mask is never
// stored: splitmix64 advances its state by a constant, so draw k of a stream starting at s0
// is the mix of s0 + (k+1)·γ. Any row can be regenerated on its own (in parallel), and
// backward replays the forward's mask from the saved s0. Saved state: u = drop(x)Aᵀ [N,r]
// only; backward's du [N,r] and the dropout buffers are transient scratch.
//
// With a BF16 W (precision bf16) the LoRA products are loramm's one-pass kernels, the mask made
// on the fly; with an fp32 W they are ag_sgemm calls around dropout_rows (results exactly
// as always).

// Rows [r0, r1) of x[N,In] through dropout (stream s0): xd[i-r0, :] = kept ? x·inv : 0.
// With dx (backward) also dx[i, :] += kept ? t[i-r0, :]·inv : 0.
static void dropout_rows(float *xd, float *dx, const float *t, const float *x, int64_t r0, int64_t r1,
                         int64_t In, uint64_t s0, float p, float inv) {
    uint64_t thr = loramm_drop_of(0, p).thr;
#pragma omp parallel for schedule(static) if ((r1 - r0) * In >= PAR_MIN / 4)
    for (int64_t i = r0; i < r1; i++) {
        uint64_t st = s0 + (uint64_t)(i * In) * LORA_RNG_GAMMA;
        const float *xi = x + i * In;
        float *xdi = xd + (i - r0) * In;
        if (dx) {
            const float *ti = t + (i - r0) * In;
            float *dxi = dx + i * In;
            for (int64_t j = 0; j < In; j++) {
                int keep = lora_rng_draw24(st, j) >= thr;
                xdi[j] = keep ? xi[j] * inv : 0.0f;
                dxi[j] += keep ? ti[j] * inv : 0.0f;
            }
        } else {
            for (int64_t j = 0; j < In; j++) xdi[j] = lora_rng_draw24(st, j) >= thr ? xi[j] * inv : 0.0f;
        }
    }
}

// Rows per block of dropout scratch ([rows, In] floats, at most 2M floats = 8 MB per buffer):
// the whole batch at once for typical shapes, bounded memory for very long ones.
static int64_t dropout_block_rows(int64_t N, int64_t In) {
    int64_t bs = ((int64_t)1 << 21) / (In > 0 ? In : 1);
    if (bs < 8) bs = 8;
    return imin(bs, N > 0 ? N : 1);
}

// The LoRA factors' small products of an fp32 W: C[M,N] (+)= alpha · op(A) · op(B) (contiguous
// row-major operands; ta: A is [K,M], tb: B is [N,K]); ag_sgemm (one thread below
// AG_SGEMM_PAR_MIN, as all fp32 products).
static void lora_mm(float *C, const float *A, const float *B, int M, int N, int K, int ta, int tb, float alpha,
                    int acc) {
    ag_sgemm(ta, tb, M, N, K, alpha, A, ta ? M : K, B, tb ? K : N, acc ? 1.0f : 0.0f, C, N);
}

// Backward of a BF16 W: dB[O,r] += s · dyᵀ u; du = s · dy B (rounding dy to BF16 in the same
// pass), dx += dy W (BF16); then one pass over x for dx += mask∘(du A)/(1-p), dA += duᵀ drop(x).
static void lora16_backward(ag_ctx *c, ag_node *n, float *dx, float *dA, float *dB) {
    ag_tensor *x = n->in[0], *W = n->in[1], *A = n->in[2], *B = n->in[3];
    const float *dy = n->out->grad;   // [N, O]
    int64_t N = n->i[0], In = n->i[1], O = n->i[2], r = n->i[3];
    float s = n->f[0];
    loramm_drop d = loramm_drop_of((uint64_t)n->i[5], n->f[1]);
    const float *u = n->saved;   // [N, r]
    if (dB) loramm_cols(NULL, 0, dB, 1, s, u, NULL, dy, N, O, r, NULL);
    if (!dx && !dA) return;
    scratch sd;
    float *du = scratch_get(c, &sd, (size_t)(N * r + r * O) * sizeof(float)), *Bt = du + N * r;   // [N,r], [r,O]
    loramm_transpose(Bt, B->data, O, r);
    uint16_t *dyb = dx ? mm16_operand(N * O) : NULL;   // bf16(dy), made by the du pass
    loramm_rows(du, dyb, dy, Bt, N, O, r, s, NULL);
    if (dx) mm16_xw_b16(dx, dyb, W->w16, N, O, In, 1);   // dx[N,In] += dy W (the large product)
    loramm_cols(dx, 1.0f, dA, 0, 1.0f, du, A->data, x->data, N, In, r, n->i[4] ? &d : NULL);
    scratch_release(c, &sd);
}

static void lora_linear_backward(ag_ctx *c, ag_node *n) {
    ag_tensor *x = n->in[0], *W = n->in[1], *A = n->in[2], *B = n->in[3];
    const float *dy = n->out->grad;   // [N, O]
    int N = (int)n->i[0], In = (int)n->i[1], O = (int)n->i[2], r = (int)n->i[3];
    int drop = (int)n->i[4];
    uint64_t s0 = (uint64_t)n->i[5];
    float s = n->f[0], p = n->f[1];
    float *u = n->saved;   // [N, r]
    float *dx = ag_grad(c, x), *dA = ag_grad(c, A), *dB = ag_grad(c, B);
    if (N == 0) return;
    if (W->dtype == AG_BF16) return lora16_backward(c, n, dx, dA, dB);
    if (dB) lora_mm(dB, dy, u, O, r, N, 1, 0, s, 1);   // dB[O,r] += s · dyᵀ u
    if (dx) frozen_dx_acc(dx, dy, W, N, In, O);   // dx[N,In] += dy W  (the large product)
    if (!dx && !dA) return;
    // du[N,r] = s · dy B
    scratch sd;
    float *du = scratch_get(c, &sd, (size_t)N * (size_t)r * sizeof(float));
    lora_mm(du, dy, B->data, N, r, O, 0, 0, s, 0);
    if (!drop) {
        if (dA) lora_mm(dA, du, x->data, r, In, N, 1, 0, 1.0f, 1);   // dA[r,In] += duᵀ x
        if (dx) lora_mm(dx, du, A->data, N, In, r, 0, 0, 1.0f, 1);   // dx += du A
        scratch_release(c, &sd);
        return;
    }
    // with dropout, per block of rows (one block for typical shapes): t = du A, then the mask
    // replayed: dx += mask∘t/(1-p) and xd = drop(x), then dA += duᵀ xd
    float inv = 1.0f / (1.0f - p);
    int64_t bs = dropout_block_rows(N, In);
    scratch sc;
    float *xd = scratch_get(c, &sc, (size_t)(2 * bs * In) * sizeof(float)), *t = xd + bs * In;
    for (int64_t r0 = 0; r0 < N; r0 += bs) {
        int m = (int)imin(bs, N - r0);
        const float *dub = du + r0 * r;
        if (dx) lora_mm(t, dub, A->data, m, In, r, 0, 0, 1.0f, 0);
        dropout_rows(xd, dx, dx ? t : NULL, x->data, r0, r0 + m, In, s0, p, inv);
        if (dA) lora_mm(dA, dub, xd, r, In, m, 1, 0, 1.0f, 1);
    }
    scratch_release(c, &sc);
    scratch_release(c, &sd);
}

ag_tensor *ag_lora_linear(ag_ctx *c, ag_tensor *x, ag_tensor *W, ag_tensor *A, ag_tensor *B, float scale,
                          float dropout) {
    if (!x || !W || !A || !B) return NULL;
    int64_t O, In, N;
    if (check_xw("lora_linear", x, W, &O, &In, &N) != 0) return NULL;
    if (A->ndim != 2 || A->shape[1] != In) {
        err_set("lora_linear: A [r, In] %s does not match W [O, In] %s", SHP(A), SHP(W));
        return NULL;
    }
    int64_t r = A->shape[0];
    if (r == 0) {
        err_set("lora_linear: A %s has rank 0", SHP(A));
        return NULL;
    }
    if (B->ndim != 2 || B->shape[0] != O || B->shape[1] != r) {
        err_set("lora_linear: B [O, r] %s does not match W [O, In] %s and A [r, In] %s", SHP(B), SHP(W),
                SHP(A));
        return NULL;
    }
    if (W->requires_grad) {
        err_set("lora_linear: W %s must be frozen but requires a gradient (use ag_linear to train it)",
                SHP(W));
        return NULL;
    }
    if (!(dropout >= 0.0f && dropout < 1.0f)) {
        err_set("lora_linear: dropout %g is outside [0, 1)", (double)dropout);
        return NULL;
    }
    int64_t shape[AG_MAXDIM];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = O;
    ag_tensor *y = op_out(c, "lora_linear", x->ndim, shape);
    if (!y) return NULL;
    int drop = c->training && dropout > 0.0f;
    uint64_t s0 = c->rng;
    if (drop) c->rng = s0 + (uint64_t)(N * In) * LORA_RNG_GAMMA;   // N·In draws, as if made one by one

    ag_tensor *in[4] = {x, W, A, B};
    ag_node *nd = ag_record(c, AG_OP_LORA_LINEAR, y, in, 4, lora_linear_backward);
    float *u;   // [N, r]
    if (nd) {
        if (!(u = op_save(c, "lora_linear", (size_t)(N * r) * sizeof(float)))) return NULL;
        nd->saved = u;
        nd->i[0] = N;
        nd->i[1] = In;
        nd->i[2] = O;
        nd->i[3] = r;
        nd->i[4] = drop;
        nd->i[5] = (int64_t)s0;
        nd->f[0] = scale;
        nd->f[1] = dropout;
    }
    size_t mark = c->arena.used;   // everything below is transient
    if (!nd && !(u = ag_alloc(c, (size_t)(N * r) * sizeof(float), "lora_linear scratch u"))) {
        err_prefix("lora_linear");
        return NULL;
    }
    if (N == 0) {
        c->arena.used = mark;
        return y;
    }
    if (W->dtype == AG_BF16) {   // u = drop(x) Aᵀ (and bf16(x)), y = x Wᵀ (BF16), y += s · u Bᵀ
        loramm_drop d = loramm_drop_of(s0, dropout);
        scratch sb;
        float *Bt = scratch_get(c, &sb, (size_t)(r * O) * sizeof(float));   // [r, O]
        uint16_t *xb = mm16_operand(N * In);   // bf16(x), made by the u pass
        loramm_rows(u, xb, x->data, A->data, N, In, r, 1.0f, drop ? &d : NULL);
        mm16_xwt_b16(y->data, xb, W->w16, N, O, In, 0);
        loramm_transpose(Bt, B->data, O, r);
        loramm_cols(y->data, scale, NULL, 0, 0, u, Bt, NULL, N, O, r, NULL);
        scratch_release(c, &sb);
        c->arena.used = mark;
        ag_prof_mark(c, AG_OP_LORA_LINEAR);
        return y;
    }
    // u = drop(x) Aᵀ (first: the OpenMP dropout pass and the BLAS calls are not interleaved)
    if (!drop) {
        lora_mm(u, x->data, A->data, (int)N, (int)r, (int)In, 0, 1, 1.0f, 0);
    } else {
        int64_t bs = dropout_block_rows(N, In);
        scratch sc;
        float *xd = scratch_get(c, &sc, (size_t)(bs * In) * sizeof(float));
        float inv = 1.0f / (1.0f - dropout);
        for (int64_t r0 = 0; r0 < N; r0 += bs) {
            int64_t m = imin(bs, N - r0);
            dropout_rows(xd, NULL, NULL, x->data, r0, r0 + m, In, s0, dropout, inv);
            lora_mm(u + r0 * r, xd, A->data, (int)m, (int)r, (int)In, 0, 1, 1.0f, 0);
        }
        scratch_release(c, &sc);
    }
    // y = x Wᵀ + s · u Bᵀ
    frozen_xwt(y->data, x->data, W, (int)N, (int)O, (int)In, 0);
    lora_mm(y->data, u, B->data, (int)N, (int)O, (int)r, 0, 1, scale, 1);
    c->arena.used = mark;
    ag_prof_mark(c, AG_OP_LORA_LINEAR);   // it records before computing
    return y;
}

// --- add: y = a + b, b[bn] repeated over a's leading rows when bn divides a's size

static void add_backward(ag_ctx *c, ag_node *n) {
    const float *dy = n->out->grad;
    int64_t an = n->out->numel, bn = n->in[1]->numel;
    float *da = ag_grad(c, n->in[0]), *db = ag_grad(c, n->in[1]);
    if (da) vec_acc(da, dy, an);
    if (db) {
        if (bn == an) vec_acc(db, dy, an);
        else colsum_acc(db, dy, an / bn, bn);
    }
}

ag_tensor *ag_add(ag_ctx *c, ag_tensor *a, ag_tensor *b) {
    if (!a || !b) return NULL;
    if (b->numel == 0 ? a->numel != 0 : a->numel % b->numel != 0) {
        err_set("add: b %s cannot be broadcast over a %s (b's size must divide a's; b is repeated over "
                "a's leading rows)", SHP(b), SHP(a));
        return NULL;
    }
    ag_tensor *y = op_out(c, "add", a->ndim, a->shape);
    if (!y) return NULL;
    int64_t an = a->numel, bn = b->numel, reps = bn ? an / bn : 0;
    const float *ad = a->data, *bd = b->data;
    float *yd = y->data;
    if (reps <= 1) {
#pragma omp parallel for schedule(static) if (an >= PAR_MIN)
        for (int64_t i = 0; i < an; i++) yd[i] = ad[i] + bd[i];
    } else {
#pragma omp parallel for schedule(static) if (an >= PAR_MIN)
        for (int64_t k = 0; k < reps; k++)
            for (int64_t j = 0; j < bn; j++) yd[k * bn + j] = ad[k * bn + j] + bd[j];
    }
    ag_tensor *in[2] = {a, b};
    ag_record(c, AG_OP_ADD, y, in, 2, add_backward);
    return y;
}

// --- mul: y = a ∘ b (same shape)

static void mul_backward(ag_ctx *c, ag_node *n) {
    const float *dy = n->out->grad, *ad = n->in[0]->data, *bd = n->in[1]->data;
    int64_t m = n->out->numel;
    float *da = ag_grad(c, n->in[0]), *db = ag_grad(c, n->in[1]);
    if (da) {
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
        for (int64_t i = 0; i < m; i++) da[i] += dy[i] * bd[i];
    }
    if (db) {
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
        for (int64_t i = 0; i < m; i++) db[i] += dy[i] * ad[i];
    }
}

ag_tensor *ag_mul(ag_ctx *c, ag_tensor *a, ag_tensor *b) {
    if (!a || !b) return NULL;
    if (!ag_same_shape(a, b)) {
        err_set("mul: a %s and b %s must have the same shape", SHP(a), SHP(b));
        return NULL;
    }
    ag_tensor *y = op_out(c, "mul", a->ndim, a->shape);
    if (!y) return NULL;
    int64_t m = a->numel;
    const float *ad = a->data, *bd = b->data;
    float *yd = y->data;
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
    for (int64_t i = 0; i < m; i++) yd[i] = ad[i] * bd[i];
    ag_tensor *in[2] = {a, b};
    ag_record(c, AG_OP_MUL, y, in, 2, mul_backward);
    return y;
}

// --- scale: y = s·a

static void scale_backward(ag_ctx *c, ag_node *n) {
    const float *dy = n->out->grad;
    float s = n->f[0], *da = ag_grad(c, n->in[0]);
    int64_t m = n->out->numel;
    if (!da) return;
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
    for (int64_t i = 0; i < m; i++) da[i] += s * dy[i];
}

ag_tensor *ag_scale(ag_ctx *c, ag_tensor *a, float s) {
    if (!a) return NULL;
    ag_tensor *y = op_out(c, "scale", a->ndim, a->shape);
    if (!y) return NULL;
    int64_t m = a->numel;
    const float *ad = a->data;
    float *yd = y->data;
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
    for (int64_t i = 0; i < m; i++) yd[i] = s * ad[i];
    ag_node *nd = ag_record(c, AG_OP_SCALE, y, &a, 1, scale_backward);
    if (nd) nd->f[0] = s;
    return y;
}

// --- RMSNorm (HF Llama, fp32): y = w ∘ (x · rstd), rstd = 1/√(mean(x²) + eps). Saves rstd [N].

// Norm weight gradient: dw[j] += Σᵢ dy[i,j]·(x[i,j] − mu[i])·rstd[i] (mu NULL: RMSNorm),
// summed over rows in order per column block (deterministic for any thread count).
static void norm_dw_acc(float *dw, const float *dy, const float *xd, const float *mu, const float *rstd,
                        int64_t N, int64_t C) {
    int64_t nb = (C + COLBLK - 1) / COLBLK;
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
    for (int64_t bk = 0; bk < nb; bk++) {
        int64_t j0 = bk * COLBLK, nj = imin(COLBLK, C - j0);
        double acc[COLBLK] = {0};
        for (int64_t i = 0; i < N; i++) {
            const float *xi = xd + i * C + j0, *gi = dy + i * C + j0;
            float m = mu ? mu[i] : 0.0f, r = rstd[i];
            for (int64_t j = 0; j < nj; j++) acc[j] += gi[j] * ((xi[j] - m) * r);
        }
        for (int64_t j = 0; j < nj; j++) dw[j0 + j] += (float)acc[j];
    }
}

static void rmsnorm_backward(ag_ctx *c, ag_node *n) {
    ag_tensor *x = n->in[0], *w = n->in[1];
    const float *dy = n->out->grad, *xd = x->data, *wd = w->data, *rstd = n->saved;
    int64_t N = n->i[0], C = n->i[1];
    float *dx = ag_grad(c, x), *dw = ag_grad(c, w);
    if (dx) {
        // dx = rstd·w∘dy − rstd³·x·(Σₖ dyₖ wₖ xₖ)/C
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
        for (int64_t i = 0; i < N; i++) {
            const float *xi = xd + i * C, *gi = dy + i * C;
            float *dxi = dx + i * C, r = rstd[i];
            double dot = 0;
            for (int64_t j = 0; j < C; j++) dot += (double)gi[j] * wd[j] * xi[j];
            float k = (float)(dot / (double)C) * r * r * r;
            for (int64_t j = 0; j < C; j++) dxi[j] += r * wd[j] * gi[j] - k * xi[j];
        }
    }
    if (dw) norm_dw_acc(dw, dy, xd, NULL, rstd, N, C);
}

ag_tensor *ag_rmsnorm(ag_ctx *c, ag_tensor *x, ag_tensor *w, float eps) {
    if (!x || !w) return NULL;
    int64_t C = last_dim(x), N = lead_rows(x);
    if (x->ndim < 1 || w->ndim != 1 || w->shape[0] != C || C == 0) {
        err_set("rmsnorm: x [N, C] %s does not match w [C] %s", SHP(x), SHP(w));
        return NULL;
    }
    ag_tensor *y = op_out(c, "rmsnorm", x->ndim, x->shape);
    if (!y) return NULL;
    ag_tensor *in[2] = {x, w};
    ag_node *nd = ag_record(c, AG_OP_RMSNORM, y, in, 2, rmsnorm_backward);
    float *rstd = NULL;   // [N]
    if (nd) {
        if (!(rstd = op_save(c, "rmsnorm", (size_t)N * sizeof(float)))) return NULL;
        nd->saved = rstd;
        nd->i[0] = N;
        nd->i[1] = C;
    }
    const float *xd = x->data, *wd = w->data;
    float *yd = y->data;
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float *xi = xd + i * C;
        float *yi = yd + i * C;
        double ss = 0;
        for (int64_t j = 0; j < C; j++) ss += (double)xi[j] * xi[j];
        float r = 1.0f / sqrtf((float)(ss / (double)C) + eps);
        for (int64_t j = 0; j < C; j++) yi[j] = wd[j] * (xi[j] * r);
        if (rstd) rstd[i] = r;
    }
    ag_prof_mark(c, AG_OP_RMSNORM);
    return y;
}

// --- LayerNorm: y = (x − μ)·rstd ∘ w (+ b), biased variance. Saves μ and rstd [N] each.

static void layernorm_backward(ag_ctx *c, ag_node *n) {
    ag_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    const float *dy = n->out->grad, *xd = x->data, *wd = w->data;
    const float *mu = n->saved, *rstd = mu + n->i[0];
    int64_t N = n->i[0], C = n->i[1];
    float *dx = ag_grad(c, x), *dw = ag_grad(c, w), *db = ag_grad(c, b);
    if (dx) {
        // g = dy∘w, x̂ = (x−μ)·rstd: dx = rstd·(g − mean(g) − x̂·mean(g∘x̂))
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
        for (int64_t i = 0; i < N; i++) {
            const float *xi = xd + i * C, *gi = dy + i * C;
            float *dxi = dx + i * C, m = mu[i], r = rstd[i];
            double sg = 0, sgx = 0;
            for (int64_t j = 0; j < C; j++) {
                float g = gi[j] * wd[j], xh = (xi[j] - m) * r;
                sg += g;
                sgx += (double)g * xh;
            }
            float mg = (float)(sg / (double)C), mgx = (float)(sgx / (double)C);
            for (int64_t j = 0; j < C; j++) {
                float g = gi[j] * wd[j], xh = (xi[j] - m) * r;
                dxi[j] += r * (g - mg - xh * mgx);
            }
        }
    }
    if (dw) norm_dw_acc(dw, dy, xd, mu, rstd, N, C);
    if (db) colsum_acc(db, dy, N, C);
}

// Σ x[j] (sq 0) or Σ (x[j] − m)² (sq 1) over a row, in double: 8 interleaved partial sums
// (lane j mod 8, added pairwise at the end) so the loop vectorizes; with 29 more mantissa
// bits than fp32 the order does not show in the fp32 mean and 1/std derived from it.
static double row_sum_d(const float *x, int64_t n, double m, int sq) {
    double p[8] = {0}, t = 0;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) {
            double d = (double)x[j + l] - m;
            p[l] += sq ? d * d : d;
        }
    for (; j < n; j++) t += sq ? ((double)x[j] - m) * ((double)x[j] - m) : (double)x[j] - m;
    return (((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]))) + t;
}

ag_tensor *ag_layernorm(ag_ctx *c, ag_tensor *x, ag_tensor *w, ag_tensor *b, float eps) {
    if (!x || !w) return NULL;
    int64_t C = last_dim(x), N = lead_rows(x);
    if (x->ndim < 1 || w->ndim != 1 || w->shape[0] != C || C == 0) {
        err_set("layernorm: x [N, C] %s does not match w [C] %s", SHP(x), SHP(w));
        return NULL;
    }
    if (b && (b->ndim != 1 || b->shape[0] != C)) {
        err_set("layernorm: x [N, C] %s does not match b [C] %s", SHP(x), SHP(b));
        return NULL;
    }
    ag_tensor *y = op_out(c, "layernorm", x->ndim, x->shape);
    if (!y) return NULL;
    ag_tensor *in[3] = {x, w, b};
    ag_node *nd = ag_record(c, AG_OP_LAYERNORM, y, in, 3, layernorm_backward);
    float *mu = NULL, *rstd = NULL;   // [N] each
    if (nd) {
        if (!(mu = op_save(c, "layernorm", (size_t)(2 * N) * sizeof(float)))) return NULL;
        rstd = mu + N;
        nd->saved = mu;
        nd->i[0] = N;
        nd->i[1] = C;
    }
    const float *xd = x->data, *wd = w->data, *bd = b ? b->data : NULL;
    float *yd = y->data;
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float *xi = xd + i * C;
        float *yi = yd + i * C;
        double md = row_sum_d(xi, C, 0.0, 0) / (double)C, ss = row_sum_d(xi, C, md, 1);
        float m = (float)md, r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        if (bd)
            for (int64_t j = 0; j < C; j++) yi[j] = (xi[j] - m) * r * wd[j] + bd[j];
        else
            for (int64_t j = 0; j < C; j++) yi[j] = (xi[j] - m) * r * wd[j];
        if (mu) {
            mu[i] = m;
            rstd[i] = r;
        }
    }
    ag_prof_mark(c, AG_OP_LAYERNORM);
    return y;
}

// --- SwiGLU: y = silu(gate) ∘ up, silu(g) = g·σ(g)

static void swiglu_backward(ag_ctx *c, ag_node *n) {
    const float *dy = n->out->grad, *gd = n->in[0]->data, *ud = n->in[1]->data;
    float *dg = ag_grad(c, n->in[0]), *du = ag_grad(c, n->in[1]);
    int64_t m = n->out->numel, nb = (m + 7) / 8;
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i = 8 * b, k = imin(8, m - i);
        vm8 g = k == 8 ? vm_ld(gd + i) : vm_tail_load(gd + i, k), sg = vm_sigmoid(g);
        vm8 d = k == 8 ? vm_ld(dy + i) : vm_tail_load(dy + i, k);
        if (dg) {
            vm8 u = k == 8 ? vm_ld(ud + i) : vm_tail_load(ud + i, k);
            vm8 o = k == 8 ? vm_ld(dg + i) : vm_tail_load(dg + i, k);
            o += d * u * (sg * (1.0f + g * (1.0f - sg)));
            if (k == 8) vm_st(dg + i, o);
            else vm_tail_store(dg + i, o, k);
        }
        if (du) {
            vm8 o = k == 8 ? vm_ld(du + i) : vm_tail_load(du + i, k);
            o += d * (g * sg);
            if (k == 8) vm_st(du + i, o);
            else vm_tail_store(du + i, o, k);
        }
    }
}

ag_tensor *ag_swiglu(ag_ctx *c, ag_tensor *gate, ag_tensor *up) {
    if (!gate || !up) return NULL;
    if (!ag_same_shape(gate, up)) {
        err_set("swiglu: gate %s and up %s must have the same shape", SHP(gate), SHP(up));
        return NULL;
    }
    ag_tensor *y = op_out(c, "swiglu", gate->ndim, gate->shape);
    if (!y) return NULL;
    int64_t m = gate->numel, nb = (m + 7) / 8;
    const float *gd = gate->data, *ud = up->data;
    float *yd = y->data;
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i = 8 * b, k = imin(8, m - i);
        vm8 g = k == 8 ? vm_ld(gd + i) : vm_tail_load(gd + i, k);
        vm8 u = k == 8 ? vm_ld(ud + i) : vm_tail_load(ud + i, k);
        vm8 o = g / (1.0f + vm_exp(-g)) * u;
        if (k == 8) vm_st(yd + i, o);
        else vm_tail_store(yd + i, o, k);
    }
    ag_tensor *in[2] = {gate, up};
    ag_record(c, AG_OP_SWIGLU, y, in, 2, swiglu_backward);
    return y;
}

// --- GELU, exact: y = x·Φ(x) = ½x(1 + erf(x/√2))

static void gelu_backward(ag_ctx *c, ag_node *n) {
    const float *dy = n->out->grad, *xd = n->in[0]->data;
    float *dx = ag_grad(c, n->in[0]);
    int64_t m = n->out->numel;
    const float inv_sqrt_2pi = 0.3989422804014327f;
    if (!dx) return;
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
    for (int64_t i = 0; i < m; i++) {
        float x = xd[i];
        float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)), pdf = expf(-0.5f * x * x) * inv_sqrt_2pi;
        dx[i] += dy[i] * (cdf + x * pdf);
    }
}

ag_tensor *ag_gelu(ag_ctx *c, ag_tensor *x) {
    if (!x) return NULL;
    ag_tensor *y = op_out(c, "gelu", x->ndim, x->shape);
    if (!y) return NULL;
    int64_t m = x->numel;
    const float *xd = x->data;
    float *yd = y->data;
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
    for (int64_t i = 0; i < m; i++) yd[i] = xd[i] * 0.5f * (1.0f + erff(xd[i] * (float)M_SQRT1_2));
    ag_record(c, AG_OP_GELU, y, &x, 1, gelu_backward);
    return y;
}

// --- GELU, tanh approximation (PyTorch approximate='tanh', HF gelu_pytorch_tanh):
//     y = ½x(1 + tanh(β(x + κx³))), β = √(2/π), κ = 0.044715

#define GELU_BETA 0.7978845608028654f
#define GELU_KAPPA 0.044715f

static void gelu_tanh_backward(ag_ctx *c, ag_node *n) {
    const float *dy = n->out->grad, *xd = n->in[0]->data;
    float *dx = ag_grad(c, n->in[0]);
    int64_t m = n->out->numel, nb = (m + 7) / 8;
    if (!dx) return;
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i = 8 * b, k = imin(8, m - i);
        vm8 x = k == 8 ? vm_ld(xd + i) : vm_tail_load(xd + i, k), x2 = x * x;
        vm8 t = vm_tanh(GELU_BETA * (x + GELU_KAPPA * x2 * x));
        vm8 d = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_BETA * (1.0f + 3.0f * GELU_KAPPA * x2);
        vm8 g = k == 8 ? vm_ld(dy + i) : vm_tail_load(dy + i, k);
        vm8 o = k == 8 ? vm_ld(dx + i) : vm_tail_load(dx + i, k);
        o += g * d;
        if (k == 8) vm_st(dx + i, o);
        else vm_tail_store(dx + i, o, k);
    }
}

ag_tensor *ag_gelu_tanh(ag_ctx *c, ag_tensor *x) {
    if (!x) return NULL;
    ag_tensor *y = op_out(c, "gelu_tanh", x->ndim, x->shape);
    if (!y) return NULL;
    int64_t m = x->numel, nb = (m + 7) / 8;
    const float *xd = x->data;
    float *yd = y->data;
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i = 8 * b, k = imin(8, m - i);
        vm8 v = k == 8 ? vm_ld(xd + i) : vm_tail_load(xd + i, k);
        vm8 o = 0.5f * v * (1.0f + vm_tanh(GELU_BETA * (v + GELU_KAPPA * v * v * v)));
        if (k == 8) vm_st(yd + i, o);
        else vm_tail_store(yd + i, o, k);
    }
    ag_record(c, AG_OP_GELU_TANH, y, &x, 1, gelu_tanh_backward);
    return y;
}

// --- embedding: y[n,C] = table[ids[i]] (ids copied into the arena when recorded)

static void embedding_backward(ag_ctx *c, ag_node *n) {
    const float *dy = n->out->grad;
    const int32_t *ids = n->aux[0];
    int64_t m = n->i[0], C = n->i[1];
    float *dt = ag_grad(c, n->in[0]);
    if (!dt) return;
    // repeated ids add into the same row: column blocks in parallel, rows in order
    int64_t nb = (C + COLBLK - 1) / COLBLK;
#pragma omp parallel for schedule(static) if (m * C >= PAR_MIN)
    for (int64_t bk = 0; bk < nb; bk++) {
        int64_t j0 = bk * COLBLK, nj = imin(COLBLK, C - j0);
        for (int64_t i = 0; i < m; i++) {
            float *d = dt + (int64_t)ids[i] * C + j0;
            const float *g = dy + i * C + j0;
            for (int64_t j = 0; j < nj; j++) d[j] += g[j];
        }
    }
}

ag_tensor *ag_embedding(ag_ctx *c, ag_tensor *table, const int32_t *ids, int64_t n) {
    if (!table) return NULL;
    if (table->ndim != 2) {
        err_set("embedding: table %s must be [V, C]", SHP(table));
        return NULL;
    }
    if (n < 0 || (n > 0 && !ids)) {
        err_set("embedding: %lld ids given %s", (long long)n, ids ? "" : "as a NULL array");
        return NULL;
    }
    int64_t V = table->shape[0], C = table->shape[1];
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            err_set("embedding: ids[%lld] = %d is out of range for table %s (V = %lld; valid ids are 0..%lld)",
                    (long long)i, ids[i], SHP(table), (long long)V, (long long)V - 1);
            return NULL;
        }
    if (ag_is16(table) && table->requires_grad) {
        err_set("embedding: table %s is held in BF16 (a frozen weight) and cannot be trained", SHP(table));
        return NULL;
    }
    ag_tensor *y = op_out(c, "embedding", 2, (int64_t[2]){n, C});
    if (!y) return NULL;
    const float *td = table->data;
    float *yd = y->data;
    if (ag_is16(table)) {   // rows widened exactly
        const uint16_t *t16 = table->w16;
#pragma omp parallel for schedule(static) if (n * C >= PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < C; j++) yd[i * C + j] = bf16_to_f32(t16[(int64_t)ids[i] * C + j]);
    } else {
#pragma omp parallel for schedule(static) if (n * C >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) memcpy(yd + i * C, td + (int64_t)ids[i] * C, (size_t)C * sizeof(float));
    }
    ag_node *nd = ag_record(c, AG_OP_EMBEDDING, y, &table, 1, embedding_backward);
    if (nd) {
        int32_t *saved = op_save(c, "embedding", (size_t)n * sizeof(int32_t));
        if (!saved) return NULL;
        if (n) memcpy(saved, ids, (size_t)n * sizeof(int32_t));
        nd->aux[0] = saved;
        nd->i[0] = n;
        nd->i[1] = C;
    }
    return y;
}

// --- concat_rows: parts[k] [Nₖ, ...] -> [ΣNₖ, ...] (same trailing shape)

static void concat_rows_backward(ag_ctx *c, ag_node *n) {
    const float *dy = n->out->grad;
    int64_t off = 0;
    for (int k = 0; k < n->nin; k++) {
        ag_tensor *p = n->in[k];
        float *dp = ag_grad(c, p);
        if (dp) vec_acc(dp, dy + off, p->numel);
        off += p->numel;
    }
}

ag_tensor *ag_concat_rows(ag_ctx *c, ag_tensor *const *parts, int nparts) {
    if (!parts || nparts <= 0) {
        err_set("concat_rows: no parts to concatenate (%d)", nparts);
        return NULL;
    }
    for (int k = 0; k < nparts; k++)
        if (!parts[k]) return NULL;
    const ag_tensor *p0 = parts[0];
    int64_t rows = 0;
    for (int k = 0; k < nparts; k++) {
        const ag_tensor *p = parts[k];
        int ok = p->ndim >= 1 && p->ndim == p0->ndim;
        for (int d = 1; ok && d < p->ndim; d++) ok = p->shape[d] == p0->shape[d];
        if (!ok) {
            err_set("concat_rows: part %d %s does not match part 0 %s (all parts need the same trailing "
                    "shape)", k, SHP(p), SHP(p0));
            return NULL;
        }
        rows += p->shape[0];
    }
    if (nparts > AG_MAXIN) {   // a node holds at most AG_MAXIN inputs: concatenate groups first
        int ng = (nparts + AG_MAXIN - 1) / AG_MAXIN;
        ag_tensor **grp = xmalloc((size_t)ng * sizeof *grp);
        ag_tensor *y = NULL;
        int g = 0;
        for (; g < ng; g++)
            if (!(grp[g] = ag_concat_rows(c, parts + g * AG_MAXIN, (int)imin(AG_MAXIN, nparts - g * AG_MAXIN))))
                break;
        if (g == ng) y = ag_concat_rows(c, grp, ng);
        free(grp);
        return y;
    }
    int64_t shape[AG_MAXDIM];
    memcpy(shape, p0->shape, sizeof shape);
    shape[0] = rows;
    ag_tensor *y = op_out(c, "concat_rows", p0->ndim, shape);
    if (!y) return NULL;
    int64_t off = 0;
    for (int k = 0; k < nparts; k++) {
        const float *src = parts[k]->data;
        float *dst = y->data + off;
        int64_t m = parts[k]->numel;
#pragma omp parallel for schedule(static) if (m >= PAR_MIN)
        for (int64_t i = 0; i < m; i++) dst[i] = src[i];
        off += m;
    }
    ag_record(c, AG_OP_CONCAT_ROWS, y, parts, nparts, concat_rows_backward);
    return y;
}

// --- scatter_rows: y = base [N, ...] with row rows[j] replaced by src[j] (src [M, ...]).
// Saves map[N] (int32): the src row written into each output row, or -1.

static void scatter_rows_backward(ag_ctx *c, ag_node *n) {
    const float *dy = n->out->grad;
    const int32_t *map = n->saved;
    int64_t N = n->i[0], C = n->i[1];
    float *dbase = ag_grad(c, n->in[0]), *dsrc = ag_grad(c, n->in[1]);
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float *d = map[i] < 0 ? (dbase ? dbase + i * C : NULL) : (dsrc ? dsrc + (int64_t)map[i] * C : NULL);
        if (!d) continue;
        const float *g = dy + i * C;
        for (int64_t j = 0; j < C; j++) d[j] += g[j];
    }
}

ag_tensor *ag_scatter_rows(ag_ctx *c, ag_tensor *base, ag_tensor *src, const int32_t *rows) {
    if (!base || !src) return NULL;
    int ok = base->ndim >= 1 && src->ndim == base->ndim;
    for (int d = 1; ok && d < base->ndim; d++) ok = src->shape[d] == base->shape[d];
    if (!ok) {
        err_set("scatter_rows: src %s does not match base %s (rows of the same trailing shape needed)",
                SHP(src), SHP(base));
        return NULL;
    }
    int64_t N = base->shape[0], M = src->shape[0], C = N ? base->numel / N : 0;
    if (M > 0 && !rows) {
        err_set("scatter_rows: %lld src rows but no row indices", (long long)M);
        return NULL;
    }
    ag_tensor *y = op_out(c, "scatter_rows", base->ndim, base->shape);
    if (!y) return NULL;
    size_t mark = c->arena.used;
    int32_t *map = ag_alloc(c, (size_t)N * sizeof(int32_t), "scatter_rows row map");
    if (!map) {
        err_prefix("scatter_rows");
        return NULL;
    }
    for (int64_t i = 0; i < N; i++) map[i] = -1;
    for (int64_t j = 0; j < M; j++) {
        if (rows[j] < 0 || rows[j] >= N) {
            err_set("scatter_rows: rows[%lld] = %d is out of range for base %s (N = %lld)", (long long)j, rows[j],
                    SHP(base), (long long)N);
            c->arena.used = mark;
            return NULL;
        }
        if (map[rows[j]] >= 0) {
            err_set("scatter_rows: rows[%lld] = %d repeats rows[%d] (rows must be distinct)", (long long)j,
                    rows[j], map[rows[j]]);
            c->arena.used = mark;
            return NULL;
        }
        map[rows[j]] = (int32_t)j;
    }
    const float *bd = base->data, *sd = src->data;
    float *yd = y->data;
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
    for (int64_t i = 0; i < N; i++)
        memcpy(yd + i * C, map[i] < 0 ? bd + i * C : sd + (int64_t)map[i] * C, (size_t)C * sizeof(float));
    ag_tensor *in[2] = {base, src};
    ag_node *nd = ag_record(c, AG_OP_SCATTER_ROWS, y, in, 2, scatter_rows_backward);
    if (nd) {
        nd->saved = map;
        nd->i[0] = N;
        nd->i[1] = C;
    } else {
        c->arena.used = mark;
    }
    return y;
}
