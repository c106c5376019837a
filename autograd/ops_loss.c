// ops_loss.c — the fused lm-head + cross-entropy loss (ag_cross_entropy, forward and backward)
// and the no-grad per-row NLL used by evaluation (ag_nll_rows).
//
// Logits are never materialized as [N, V]: only supervised rows (targets >= 0) are gathered
// into a compact hg[M, C], and logits are computed a block of rows × a chunk of the vocabulary
// at a time (cblas_sgemm against rows of W) while an online log-sum-exp per row runs in double.
// The forward saves only lse[M] and the gathered row indices; the backward recomputes each
// logits chunk, turns it into dlogits = (softmax − onehot)·dloss/norm and accumulates
// dh_rows += dlogits · W_chunk (sgemm), then scatters dh_rows into h's gradient.
#include "ag.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CE_CHUNK 4096   // vocabulary columns per logits chunk (default)
#define CE_ROWS 1024    // supervised rows per block: scratch ≤ CE_ROWS × (CE_CHUNK + 2C) floats

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
    const float *W;          // [V, C]
    int64_t C, V, M;
    const int32_t *rows;     // [M] rows of h with a target
    const int32_t *tgt;      // [M] their targets
    int chunk;               // vocabulary columns per sgemm
} ce_problem;

static int64_t ce_scratch_floats(const ce_problem *p, int with_grad) {
    int64_t rb = p->M < CE_ROWS ? p->M : CE_ROWS;
    return rb * (p->C + p->chunk + (with_grad ? p->C : 0)) + 64;
}

// hg[mb, C] = h rows rows[r0 .. r0+mb)
static void ce_gather(const ce_problem *p, float *hg, int64_t r0, int64_t mb) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < mb; r++)
        memcpy(hg + r * p->C, p->h + (int64_t)p->rows[r0 + r] * p->C, (size_t)p->C * sizeof(float));
}

// lse[M] and nll[M] (double) for every supervised row. scr: ce_scratch_floats(p, 0).
static void ce_forward(const ce_problem *p, float *scr, double *lse, double *nll) {
    int64_t C = p->C, V = p->V;
    int64_t rb = p->M < CE_ROWS ? p->M : CE_ROWS;
    double *sum = xmalloc((size_t)rb * 2 * sizeof *sum), *tlogit = sum + rb;   // per row of a block
    float *mx = xmalloc((size_t)rb * sizeof *mx);
    for (int64_t r0 = 0; r0 < p->M; r0 += CE_ROWS) {
        int64_t mb = p->M - r0 < CE_ROWS ? p->M - r0 : CE_ROWS;
        float *hg = scr, *logits = scr + mb * C;
        ce_gather(p, hg, r0, mb);
        for (int64_t r = 0; r < mb; r++) sum[r] = 0, mx[r] = -INFINITY, tlogit[r] = 0;
        for (int64_t v0 = 0; v0 < V; v0 += p->chunk) {
            int64_t cv = V - v0 < p->chunk ? V - v0 : p->chunk;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mb, (int)cv, (int)C, 1.0f, hg, (int)C,
                        p->W + v0 * C, (int)C, 0.0f, logits, (int)cv);
            // online log-sum-exp: running max mx and Σ exp(logit − mx) in double
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < mb; r++) {
                const float *l = logits + r * cv;
                float m = -INFINITY;
                for (int64_t j = 0; j < cv; j++) m = l[j] > m ? l[j] : m;
                if (m > mx[r]) {
                    sum[r] *= exp((double)mx[r] - (double)m);
                    mx[r] = m;
                }
                double s = 0;
                float mr = mx[r];
                for (int64_t j = 0; j < cv; j++) s += (double)expf(l[j] - mr);
                sum[r] += s;
                int64_t t = p->tgt[r0 + r] - v0;
                if (t >= 0 && t < cv) tlogit[r] = l[t];
            }
        }
        for (int64_t r = 0; r < mb; r++) {
            double L = (double)mx[r] + log(sum[r]);
            lse[r0 + r] = L;
            nll[r0 + r] = L - tlogit[r];
        }
    }
    free(sum);
    free(mx);
}

// dh[N, C] (h's gradient) += dloss/norm · (softmax − onehot) · W for every supervised row.
static void ce_backward(const ce_problem *p, const double *lse, float g, float *scr, float *dh) {
    int64_t C = p->C, V = p->V;
    for (int64_t r0 = 0; r0 < p->M; r0 += CE_ROWS) {
        int64_t mb = p->M - r0 < CE_ROWS ? p->M - r0 : CE_ROWS;
        float *hg = scr, *logits = hg + mb * C, *dhg = logits + mb * p->chunk;
        ce_gather(p, hg, r0, mb);
        memset(dhg, 0, (size_t)(mb * C) * sizeof *dhg);
        for (int64_t v0 = 0; v0 < V; v0 += p->chunk) {
            int64_t cv = V - v0 < p->chunk ? V - v0 : p->chunk;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mb, (int)cv, (int)C, 1.0f, hg, (int)C,
                        p->W + v0 * C, (int)C, 0.0f, logits, (int)cv);
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < mb; r++) {
                float *l = logits + r * cv;
                double L = lse[r0 + r];
                for (int64_t j = 0; j < cv; j++) l[j] = expf((float)((double)l[j] - L)) * g;
                int64_t t = p->tgt[r0 + r] - v0;
                if (t >= 0 && t < cv) l[t] -= g;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mb, (int)C, (int)cv, 1.0f, logits,
                        (int)cv, p->W + v0 * C, (int)C, 1.0f, dhg, (int)C);
        }
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < mb; r++) {
            float *d = dh + (int64_t)p->rows[r0 + r] * C;
            const float *s = dhg + r * C;
            for (int64_t j = 0; j < C; j++) d[j] += s[j];
        }
    }
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

static void cross_entropy_backward(ag_ctx *c, ag_node *n) {
    ag_tensor *h = n->in[0];
    float *dh = ag_grad(c, h);
    if (!dh || n->i[0] == 0) return;
    ce_problem p = {.h = h->data, .W = n->aux[2], .C = h->shape[1], .V = n->i[2], .M = n->i[0],
                    .rows = n->aux[0], .tgt = n->aux[1], .chunk = (int)n->i[1]};
    size_t mark = c->arena.used;
    void *heap;
    float *scr = scratch(c, (size_t)ce_scratch_floats(&p, 1) * sizeof(float), &heap);
    ce_backward(&p, n->saved, n->out->grad[0] / n->f[0], scr, dh);
    free(heap);
    c->arena.used = mark;
}

ag_tensor *ag_cross_entropy_chunked(ag_ctx *c, ag_tensor *h, ag_tensor *W, const int32_t *targets, float norm,
                                    int chunk) {
    if (!h || !W) return NULL;
    if (!(norm > 0)) return err_set("cross_entropy: the normalizer must be > 0, got %g", (double)norm), NULL;
    if (chunk <= 0) chunk = CE_CHUNK;
    int64_t M = ce_check("cross_entropy", h, W, targets, NULL, NULL);
    if (M < 0) return NULL;
    ag_tensor *out = ag_new1(c, 1);
    size_t mark = c->arena.used;
    int32_t *rows = ag_alloc(c, (size_t)(2 * M + 1) * sizeof *rows, "cross_entropy rows");
    if (!out || !rows) return NULL;
    int32_t *tgt = rows + M;
    ce_check("cross_entropy", h, W, targets, rows, tgt);
    double *lse = ag_alloc(c, (size_t)(M + 1) * sizeof *lse, "cross_entropy lse");
    if (!lse) return NULL;
    size_t keep = c->arena.used;
    ce_problem p = {.h = h->data, .W = W->data, .C = h->shape[1], .V = W->shape[0], .M = M, .rows = rows,
                    .tgt = tgt, .chunk = chunk};
    double *nll = NULL;
    void *heap = NULL;
    double total = 0;
    if (M > 0) {
        nll = xmalloc((size_t)M * sizeof *nll);
        float *scr = scratch(c, (size_t)ce_scratch_floats(&p, 0) * sizeof(float), &heap);
        ce_forward(&p, scr, lse, nll);
        for (int64_t r = 0; r < M; r++) total += nll[r];
    }
    free(nll);
    free(heap);
    c->arena.used = keep;
    out->data[0] = (float)(total / norm);
    ag_node *n = ag_record(c, AG_OP_CROSS_ENTROPY, out, &h, 1, cross_entropy_backward);
    if (n) {
        n->saved = lse;
        n->aux[0] = rows;
        n->aux[1] = tgt;
        n->aux[2] = W->data;
        n->i[0] = M;
        n->i[1] = chunk;
        n->i[2] = W->shape[0];
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
    if (chunk <= 0) chunk = CE_CHUNK;
    int64_t M = ce_check("nll_rows", h, W, targets, NULL, NULL);
    if (M < 0) return -1;
    for (int64_t i = 0; i < h->shape[0]; i++) nll[i] = 0;
    if (M == 0) return 0;
    int32_t *rows = xmalloc((size_t)M * 2 * sizeof *rows);
    double *lse = xmalloc((size_t)M * sizeof *lse);
    double *d = xmalloc((size_t)M * sizeof *d);
    ce_check("nll_rows", h, W, targets, rows, rows + M);
    ce_problem p = {.h = h->data, .W = W->data, .C = h->shape[1], .V = W->shape[0], .M = M, .rows = rows,
                    .tgt = rows + M, .chunk = chunk};
    size_t mark = c->arena.used;
    void *heap;
    float *scr = scratch(c, (size_t)ce_scratch_floats(&p, 0) * sizeof(float), &heap);
    ce_forward(&p, scr, lse, d);
    for (int64_t r = 0; r < M; r++) nll[rows[r]] = (float)d[r];
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
