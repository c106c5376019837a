// ops_loss.c — the fused lm-head + cross-entropy loss (ag_cross_entropy, forward and backward)
// and the no-grad per-row NLL used by evaluation (ag_nll_rows).
//
// Logits are never materialized as [N, V]: only supervised rows (targets >= 0) are gathered
// into a compact hg[M, C], and logits are computed a block of rows × a chunk of the vocabulary
// at a time (products against rows of W on oneDNN's kernels, in fixed pieces of output columns
// that each run on one thread: one parallel region per product, or for a small pass one for
// the whole pass, see ce_small) while an online log-sum-exp
// per row runs in double.
// When h needs a gradient, the same pass over the vocabulary also accumulates
// dh_rows = (softmax − onehot)·W (a second product per chunk, rescaled online like the sum), so the
// backward is only dh[row] += dloss/norm · dh_rows (no second lm-head product); saved state is
// dh_rows [M, C] and the gathered row indices.
//
// With a BF16 lm-head (precision: bf16) both products run as BF16 matmuls with fp32
// accumulation (mm16.h): the gathered rows are rounded to BF16 once per block of rows, the
// probabilities once per chunk; the target's row W_t is widened exactly. A BF16 lm-head in fp32
// precision (AG_BF16X) is widened exactly a chunk at a time into a reusable buffer (wide16.h)
// and then runs the same fp32 products, so results equal those of an fp32 lm-head bit for bit.
#include "ag.h"
#include "blas.h"
#include "mm16.h"
#include "vmath.h"
#include "wide16.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define CE_CHUNK 4096   // vocabulary columns per logits chunk (default, BF16 matmuls)
#define CE_CHUNK_FLOATS (1 << 21)   // small passes: chunk × C ≤ 2M floats (8 MB; fewer chunks,
                                    // fewer barriers)
#define CE_ROWS 1024    // supervised rows per pass: bounds the scratch (see ce_scratch_floats)
#define CE_PIECE 512    // small passes: vocabulary columns per logits piece (see ce_pass_split)
#define CE_KPIECE 2048  // small passes: vocabulary columns per piece of the acc product's sum
#define CE_ROWGROUP 16  // small passes: rows per piece of the softmax update

// Scratch from the arena, released by the caller (arena.used = mark); from the heap when the
// arena is full (*heap is then set and must be freed).
static void *scratch(ag_ctx *c, size_t bytes, void **heap) {
    void *p = ag_alloc(c, bytes, "cross_entropy scratch");
    *heap = NULL;
    if (!p) p = *heap = xmalloc(bytes);
    return p;
}

typedef struct ce_problem {
    const float *h;          // [N, C]
    const float *W;          // [V, C] (NULL when W16 is set)
    const uint16_t *W16;     // [V, C] BF16 lm-head (BF16 matmuls), or NULL
    const uint16_t *W16x;    // [V, C] BF16 lm-head widened to fp32 a chunk at a time, or NULL
    int64_t C, V, M;
    const int32_t *rows;     // [M] rows of h with a target
    const int32_t *tgt;      // [M] their targets
    int chunk;               // vocabulary columns per chunk
} ce_problem;

// The fp32 products of a pass over mb rows smaller than CE_SPLIT_MIN multiply-adds per product
// (a small model: hidden 256 at 240 rows is 7.9G) run as fixed pieces handed out to the
// threads (ce_pass_split: one parallel region, three barriers per chunk); larger ones
// (Llama-3.2-1B at 128 rows and more) as one pieced product per step of a chunk (mm32_pieces,
// mm16_*: a parallel region each, long enough that its start and end do not matter). Either
// way the pieces are fixed by the shape, so results do not depend on the thread count.
#define CE_SPLIT_MIN (32ll << 30)
static int ce_small(const ce_problem *p, int64_t mb) {
    return !p->W16 && (double)mb * (double)p->V * (double)p->C < (double)CE_SPLIT_MIN;
}

// The default chunk: CE_CHUNK, or for a small pass sized by C (chunk × C ≤ CE_CHUNK_FLOATS).
static int ce_default_chunk(const ce_problem *p) {
    if (!ce_small(p, p->M < CE_ROWS ? p->M : CE_ROWS)) return CE_CHUNK;
    int64_t n = CE_CHUNK_FLOATS / p->C / 64 * 64;
    return (int)(n < 256 ? 256 : n > 16384 ? 16384 : n);
}

// scratch of ce_forward: the gathered rows hg [rb, C] (rb ≤ CE_ROWS) and logits [rb, chunk],
// plus the BF16 copy of hg (half a float per element) with a BF16 lm-head, or the acc partials
// of a small pass (chunk / CE_KPIECE of [rb, C]).
static int64_t ce_scratch_floats(const ce_problem *p) {
    int64_t rb = p->M < CE_ROWS ? p->M : CE_ROWS;
    int64_t extra = p->W16 ? (p->C + 1) / 2 : ce_small(p, rb) ? (p->chunk + CE_KPIECE - 1) / CE_KPIECE * p->C : 0;
    return rb * (p->C + p->chunk + extra) + 64;
}

// hg[mb, C] = h rows rows[r0 .. r0+mb)
static void ce_gather(const ce_problem *p, float *hg, int64_t r0, int64_t mb) {
#pragma omp parallel for schedule(static) if (mb * p->C >= AG_PAR_MIN)
    for (int64_t r = 0; r < mb; r++)
        memcpy(hg + r * p->C, p->h + (int64_t)p->rows[r0 + r] * p->C, (size_t)p->C * sizeof(float));
}

typedef double vd4 __attribute__((vector_size(32)));

// Σ over l[0..n) of e^(l[j] − m) (in double, fixed order); with store, l[j] = e^(l[j] − m).
static double exp_sum(float *l, int64_t n, float m, int store) {
    vd4 a0 = {0}, a1 = {0};
    int64_t j = 0;
    vm8 mv = vm_splat(m);
    for (; j + 8 <= n; j += 8) {
        vm8 p = vm_exp(vm_ld(l + j) - mv);
        if (store) vm_st(l + j, p);
        a0 += __builtin_convertvector(__builtin_shufflevector(p, p, 0, 1, 2, 3), vd4);
        a1 += __builtin_convertvector(__builtin_shufflevector(p, p, 4, 5, 6, 7), vd4);
    }
    if (j < n) {
        float t[8];
        for (int k = 0; k < 8; k++) t[k] = j + k < n ? l[j + k] - m : -INFINITY;
        vm8 p = vm_exp(vm_ld(t));
        if (store) vm_tail_store(l + j, p, n - j);
        a0 += __builtin_convertvector(__builtin_shufflevector(p, p, 0, 1, 2, 3), vd4);
        a1 += __builtin_convertvector(__builtin_shufflevector(p, p, 4, 5, 6, 7), vd4);
    }
    return ((a0[0] + a1[0]) + (a0[1] + a1[1])) + ((a0[2] + a1[2]) + (a0[3] + a1[3]));
}

// Per-row state of the online log-sum-exp over the vocabulary chunks (rows of one block of
// at most CE_ROWS supervised rows): running max mx, Σ_{j≠t} e^(l_j − mx), the target's logit
// and e^(l_t − mx) in double; acc (training) = Σ_{j≠t} e^(l_j − mx)·W_j, rescaled when mx grows.
typedef struct ce_rows {
    float *mx;
    double *sum, *tlogit, *texp;
    float *acc;   // [rows, C] or NULL
} ce_rows;

// Folds one chunk of logits l[cv] (columns v0 ..) into row r's state. With acc, l becomes the
// unnormalized probabilities e^(l − mx) with the target's entry zeroed (the coefficients of the
// acc product that follows).
static void ce_row_chunk(const ce_problem *p, ce_rows *s, int64_t r, int32_t target, float *l, int64_t cv,
                         int64_t v0) {
    float m = -INFINITY;
    for (int64_t j = 0; j < cv; j++) m = l[j] > m ? l[j] : m;
    if (m > s->mx[r]) {
        double f = exp((double)s->mx[r] - (double)m);
        s->sum[r] *= f;
        s->texp[r] *= f;
        if (s->acc) {
            float ff = (float)f, *ar = s->acc + r * p->C;
            for (int64_t j = 0; j < p->C; j++) ar[j] *= ff;
        }
        s->mx[r] = m;
    }
    int64_t t = target - v0;
    float lt = t >= 0 && t < cv ? l[t] : 0;
    double e = exp_sum(l, cv, s->mx[r], s->acc != NULL);
    if (t >= 0 && t < cv) {   // the target's term is kept apart (see ce_forward)
        float pt = vm_exp(vm_splat(lt - s->mx[r]))[0];
        s->tlogit[r] = lt;
        s->texp[r] += pt;
        e -= pt;
        if (s->acc) l[t] = 0;
    }
    s->sum[r] += e;
}

// The fp32 products of a small pass (an fp32 lm-head, or a BF16X one widened here a piece at
// a time) for the rows hg[mb, C] (supervised rows r0 ..), in one parallel region. Per chunk of
// the vocabulary, three phases with a barrier after each, each phase a list of pieces of fixed
// size handed out one at a time (schedule dynamic: a thread slowed by another process on its
// core takes fewer pieces):
//   1. logits[:, piece] = hg · W[piece]ᵀ, CE_PIECE columns a piece (widened first if BF16X);
//   2. per row: the previous chunk's acc partials added in order, then this chunk's softmax
//      update (ce_row_chunk, which turns the logits into the acc product's coefficients);
//   3. acc partial i = P[:, piece i] · W[piece i], CE_KPIECE columns a piece, each [mb, C]
//      (the sum over the vocabulary split in fixed pieces, added in step 2 of the next chunk).
// Each product runs on one thread (mm32_1: oneDNN's AVX-512 fp32 kernels, 1.3-1.5x OpenBLAS's
// on these pieces; the small model's step ran 1.5x faster with them) and packs its slice of W
// once (row blocks would pack the whole chunk once per block). The pieces and the order of
// every sum depend on the shape alone, so the result is the same whichever thread ran what and
// however many there are.
// lg: [mb, chunk]; part: [chunk / CE_KPIECE, mb, C] (training); wx: [chunk, C] (BF16X).
static void ce_pass_split(const ce_problem *p, ce_rows *s, const float *hg, float *lg, float *part, float *wx,
                          int64_t r0, int64_t mb) {
    int64_t C = p->C, V = p->V, chunk = p->chunk, nchunk = (V + chunk - 1) / chunk;
    int64_t nrg = (mb + CE_ROWGROUP - 1) / CE_ROWGROUP, nparts = 0;   // partials waiting from the last chunk
#pragma omp parallel
    for (int64_t k = 0; k <= nchunk; k++) {
        int64_t v0 = k * chunk, cv = k < nchunk ? (V - v0 < chunk ? V - v0 : chunk) : 0;
        const float *Wc = p->W ? p->W + v0 * C : wx;   // [cv, C]
        int64_t np = (cv + CE_PIECE - 1) / CE_PIECE, nk = (cv + CE_KPIECE - 1) / CE_KPIECE;
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < np; i++) {   // 1. logits (k == nchunk: none)
            int64_t j0 = i * CE_PIECE, n = cv - j0 < CE_PIECE ? cv - j0 : CE_PIECE;
            if (p->W16x) w16_rows(wx + j0 * C, p->W16x, v0 + j0, n, C);   // serial inside this region
            mm32_1(lg + j0, cv, hg, C, Wc + j0 * C, C, mb, n, C, 1, 0);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t g = 0; g < nrg; g++)   // 2. the last chunk's partials, then this chunk's softmax update
            for (int64_t r = g * CE_ROWGROUP; r < mb && r < (g + 1) * CE_ROWGROUP; r++) {
                if (s->acc)
                    for (int64_t i = 0; i < nparts; i++) {
                        float *ar = s->acc + r * C;
                        const float *pr = part + (i * mb + r) * C;
                        for (int64_t j = 0; j < C; j++) ar[j] += pr[j];
                    }
                if (k < nchunk) ce_row_chunk(p, s, r, p->tgt[r0 + r], lg + r * cv, cv, v0);
            }
        if (!s->acc || k == nchunk) continue;
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < nk; i++) {   // 3. this chunk's acc partials
            int64_t j0 = i * CE_KPIECE, n = cv - j0 < CE_KPIECE ? cv - j0 : CE_KPIECE;
            mm32_1(part + i * mb * C, C, lg + j0, cv, Wc + j0 * C, C, mb, C, n, 0, 0);
        }
#pragma omp single
        nparts = nk;   // (the single's barrier: every thread sees it before the next chunk)
    }
}

// lse[M] and nll[M] (double) for every supervised row. scr: ce_scratch_floats(p).
// With dhs[M, C] (training), the gradient is computed in the same pass over the vocabulary
// (no second lm-head product in backward): per row, running max m, Σ_{j≠t} e^(l_j − m) and
// e^(l_t − m) in double, and acc = Σ_{j≠t} e^(l_j − m)·W_j (accumulated in dhs; rescaled
// when m grows). Then dhs = acc/Σ − (Σ_{j≠t}/Σ)·W_t = Σ_j softmax_j W_j − W_t, with the
// target's coefficient formed without cancellation.
static void ce_forward(const ce_problem *p, float *scr, double *lse, double *nll, float *dhs) {
    int64_t C = p->C, V = p->V;
    int64_t rb = p->M < CE_ROWS ? p->M : CE_ROWS;
    double *sum = xmalloc((size_t)rb * 3 * sizeof *sum);
    float *mx = xmalloc((size_t)rb * sizeof *mx);
    float *wx = NULL;   // [chunk, C] the widened chunk of a BF16X lm-head
    if (p->W16x) AG_ASSERT(wx = w16_buffer(p->chunk * C), "%s", err_get());
    for (int64_t r0 = 0; r0 < p->M; r0 += CE_ROWS) {
        int64_t mb = p->M - r0 < CE_ROWS ? p->M - r0 : CE_ROWS;
        ce_rows s = {.mx = mx, .sum = sum, .tlogit = sum + rb, .texp = sum + 2 * rb,
                     .acc = dhs ? dhs + r0 * C : NULL};
        float *hg = scr, *logits = scr + mb * C;
        ce_gather(p, hg, r0, mb);
        for (int64_t r = 0; r < mb; r++) s.sum[r] = 0, s.mx[r] = -INFINITY, s.tlogit[r] = 0, s.texp[r] = 0;
        if (dhs) memset(s.acc, 0, (size_t)(mb * C) * sizeof *s.acc);
        if (ce_small(p, mb)) {
            ce_pass_split(p, &s, hg, logits, logits + mb * p->chunk, wx, r0, mb);
        } else {   // per chunk: BF16 matmuls (mm16.h) or fp32 pieces (mm32_pieces), all threads
            uint16_t *hb = (uint16_t *)(logits + mb * p->chunk);   // [mb, C] BF16 rows (W16 only)
            if (p->W16) bf16_round(hb, hg, mb * C);
            for (int64_t v0 = 0; v0 < V; v0 += p->chunk) {
                int64_t cv = V - v0 < p->chunk ? V - v0 : p->chunk;
                const float *Wc = p->W ? p->W + v0 * C : wx;   // [cv, C] this chunk's rows in fp32
                if (p->W16x) w16_rows(wx, p->W16x, v0, cv, C);
                if (p->W16) mm16_xwt_b16(logits, hb, p->W16 + v0 * C, mb, cv, C, 0);
                else mm32_pieces(logits, hg, Wc, mb, C, cv, 1, 0);
#pragma omp parallel for schedule(static)
                for (int64_t r = 0; r < mb; r++) ce_row_chunk(p, &s, r, p->tgt[r0 + r], logits + r * cv, cv, v0);
                if (dhs && p->W16) mm16_xw(s.acc, logits, p->W16 + v0 * C, mb, cv, C, 1);
                else if (dhs) mm32_pieces(s.acc, logits, Wc, mb, cv, C, 0, 1);
            }
        }
        for (int64_t r = 0; r < mb; r++) {
            double tot = s.sum[r] + s.texp[r];
            double L = (double)s.mx[r] + log(tot);
            lse[r0 + r] = L;
            nll[r0 + r] = L - s.tlogit[r];
        }
        if (dhs) {
#pragma omp parallel for schedule(static) if (mb * C >= AG_PAR_MIN)
            for (int64_t r = 0; r < mb; r++) {
                double tot = s.sum[r] + s.texp[r];
                float inv = (float)(1.0 / tot), ct = (float)(-s.sum[r] / tot);
                float *d = s.acc + r * C;   // acc, turned into dhs in place
                int64_t t = p->tgt[r0 + r];
                if (p->W16 || p->W16x) {
                    const uint16_t *wt = (p->W16 ? p->W16 : p->W16x) + t * C;
                    for (int64_t j = 0; j < C; j++) d[j] = d[j] * inv + ct * bf16_to_f32(wt[j]);
                } else {
                    const float *wt = p->W + t * C;
                    for (int64_t j = 0; j < C; j++) d[j] = d[j] * inv + ct * wt[j];
                }
            }
        }
    }
    free(sum);
    free(mx);
}

// Validates shapes and targets and returns M, the number of supervised rows (or -1); fills
// rows[M] / tgt[M] when given.
static int64_t ce_check(const char *op, const ag_tensor *h, const ag_tensor *W, const int32_t *targets,
                        int32_t *rows, int32_t *tgt) {
    char s1[64], s2[64];
    if (h->ndim != 2 || W->ndim != 2 || h->shape[1] != W->shape[1])
        return err_set("%s: h %s and W %s must be [N, C] and [V, C]", op, ag_shape_str(h, s1, sizeof s1),
                       ag_shape_str(W, s2, sizeof s2));
    if (W->requires_grad)
        return err_set("%s: the lm-head weight W %s must be frozen (no gradient)", op,
                       ag_shape_str(W, s2, sizeof s2));
    if (h->shape[0] > 0 && !targets) return err_set("%s: no targets given", op);
    int64_t M = 0, V = W->shape[0];
    for (int64_t i = 0; i < h->shape[0]; i++) {
        if (targets[i] < 0) continue;   // not supervised
        if (targets[i] >= V)
            return err_set("%s: targets[%lld] = %d is outside the vocabulary [0, %lld) (W %s)", op,
                           (long long)i, targets[i], (long long)V, ag_shape_str(W, s2, sizeof s2));
        if (rows) rows[M] = (int32_t)i, tgt[M] = targets[i];
        M++;
    }
    return M;
}

// dh[rows[r]] += dloss/norm · dhs[r]: the forward already formed softmax·W − W_target per row
static void cross_entropy_backward(ag_ctx *c, ag_node *n) {
    ag_tensor *h = n->in[0];
    float *dh = ag_grad(c, h);
    int64_t M = n->i[0], C = h->shape[1];
    if (!dh || M == 0) return;
    const float *dhs = n->saved;
    const int32_t *rows = n->aux[0];
    float g = n->out->grad[0] / n->f[0];
#pragma omp parallel for schedule(static) if (M * C >= AG_PAR_MIN)
    for (int64_t r = 0; r < M; r++) {
        float *d = dh + (int64_t)rows[r] * C;
        const float *s = dhs + r * C;
        for (int64_t j = 0; j < C; j++) d[j] += g * s[j];
    }
}

ag_tensor *ag_cross_entropy_chunked(ag_ctx *c, ag_tensor *h, ag_tensor *W, const int32_t *targets, float norm,
                                    int chunk) {
    if (!h || !W) return NULL;
    if (!(norm > 0)) return err_set("cross_entropy: the normalizer must be > 0, got %g", (double)norm), NULL;
    int64_t M = ce_check("cross_entropy", h, W, targets, NULL, NULL);
    if (M < 0) return NULL;
    ag_tensor *out = ag_new1(c, 1);
    size_t mark = c->arena.used;
    int32_t *rows = ag_alloc(c, (size_t)(2 * M + 1) * sizeof *rows, "cross_entropy rows");
    if (!out || !rows) return NULL;
    int32_t *tgt = rows + M;
    ce_check("cross_entropy", h, W, targets, rows, tgt);
    int grad = ag_needs_grad(c, &h, 1);
    float *dhs = grad ? ag_alloc(c, (size_t)(M * h->shape[1] + 1) * sizeof *dhs, "cross_entropy dh") : NULL;
    if (grad && !dhs) return NULL;
    size_t keep = c->arena.used;
    ce_problem p = {.h = h->data, .W = W->data, .W16 = W->dtype == AG_BF16 ? W->w16 : NULL,
                    .W16x = W->dtype == AG_BF16X ? W->w16 : NULL, .C = h->shape[1], .V = W->shape[0], .M = M,
                    .rows = rows, .tgt = tgt, .chunk = chunk};
    if (p.chunk <= 0) p.chunk = ce_default_chunk(&p);
    double total = 0;
    if (M > 0) {
        double *lse = xmalloc((size_t)M * 2 * sizeof *lse), *nll = lse + M;
        void *heap = NULL;
        float *scr = scratch(c, (size_t)ce_scratch_floats(&p) * sizeof(float), &heap);
        ce_forward(&p, scr, lse, nll, dhs);
        for (int64_t r = 0; r < M; r++) total += nll[r];
        free(lse);
        free(heap);
    }
    c->arena.used = keep;
    out->data[0] = (float)(total / norm);
    if (!grad) ag_prof_mark(c, AG_OP_CROSS_ENTROPY);
    ag_node *n = grad ? ag_record(c, AG_OP_CROSS_ENTROPY, out, &h, 1, cross_entropy_backward) : NULL;
    if (n) {
        n->saved = dhs;
        n->aux[0] = rows;
        n->i[0] = M;
        n->f[0] = norm;
    } else {
        c->arena.used = mark;   // nothing saved in no-grad mode
    }
    return out;
}

ag_tensor *ag_cross_entropy(ag_ctx *c, ag_tensor *h, ag_tensor *W, const int32_t *targets, float norm) {
    return ag_cross_entropy_chunked(c, h, W, targets, norm, 0);
}

int ag_nll_rows_chunked(ag_ctx *c, const ag_tensor *h, const ag_tensor *W, const int32_t *targets, float *nll,
                        int chunk) {
    if (!h || !W) return -1;
    int64_t M = ce_check("nll_rows", h, W, targets, NULL, NULL);
    if (M < 0) return -1;
    for (int64_t i = 0; i < h->shape[0]; i++) nll[i] = 0;
    if (M == 0) return 0;
    int32_t *rows = xmalloc((size_t)M * 2 * sizeof *rows);
    double *lse = xmalloc((size_t)M * sizeof *lse);
    double *d = xmalloc((size_t)M * sizeof *d);
    ce_check("nll_rows", h, W, targets, rows, rows + M);
    ce_problem p = {.h = h->data, .W = W->data, .W16 = W->dtype == AG_BF16 ? W->w16 : NULL,
                    .W16x = W->dtype == AG_BF16X ? W->w16 : NULL, .C = h->shape[1], .V = W->shape[0], .M = M,
                    .rows = rows, .tgt = rows + M, .chunk = chunk};
    if (p.chunk <= 0) p.chunk = ce_default_chunk(&p);
    size_t mark = c->arena.used;
    void *heap;
    float *scr = scratch(c, (size_t)ce_scratch_floats(&p) * sizeof(float), &heap);
    ce_forward(&p, scr, lse, d, NULL);
    for (int64_t r = 0; r < M; r++) nll[rows[r]] = (float)d[r];
    ag_prof_mark(c, AG_OP_CROSS_ENTROPY);
    free(heap);
    c->arena.used = mark;
    free(rows);
    free(lse);
    free(d);
    return 0;
}

int ag_nll_rows(ag_ctx *c, const ag_tensor *h, const ag_tensor *W, const int32_t *targets, float *nll) {
    return ag_nll_rows_chunked(c, h, W, targets, nll, 0);
}
