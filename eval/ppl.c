// ppl.c — sliding-window perplexity (see ppl.h).
#include "ppl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// A pending batch of windows: rows concatenated, each window its own attention range.
typedef struct win_batch {
    int64_t n, cap;
    int32_t *ids, *pos, *begin, *targets;
} win_batch;

static void wb_reserve(win_batch *b, int64_t need) {
    if (b->n + need <= b->cap) return;
    while (b->cap < b->n + need) b->cap = b->cap ? 2 * b->cap : 4096;
    b->ids = xrealloc(b->ids, (size_t)b->cap * sizeof(int32_t));
    b->pos = xrealloc(b->pos, (size_t)b->cap * sizeof(int32_t));
    b->begin = xrealloc(b->begin, (size_t)b->cap * sizeof(int32_t));
    b->targets = xrealloc(b->targets, (size_t)b->cap * sizeof(int32_t));
}

static int wb_flush(ag_ctx *c, const llama_model *m, const llama_lora *lora, win_batch *b, eval_result *res,
                    float **nll_buf, int64_t *nll_cap) {
    if (b->n == 0) return 0;
    ag_ctx_reset(c);
    ag_tensor *h = llama_forward(c, m, lora, b->ids, NULL, b->n, b->pos, b->begin);
    if (!h) return -1;
    if (*nll_cap < b->n) {
        *nll_cap = b->n;
        *nll_buf = xrealloc(*nll_buf, (size_t)b->n * sizeof(float));
    }
    if (ag_nll_rows(c, h, (ag_tensor *)&m->w.lm_head, b->targets, *nll_buf) != 0) return -1;
    for (int64_t i = 0; i < b->n; i++)
        if (b->targets[i] >= 0) {
            res->nll += (*nll_buf)[i];
            res->tokens++;
        }
    res->rows += b->n;
    b->n = 0;
    return 0;
}

int eval_perplexity(ag_ctx *c, const llama_model *m, const llama_lora *lora, const data_set *ds,
                    int64_t M, int64_t S, int64_t batch_rows, eval_result *res,
                    eval_progress_fn progress, void *user) {
    memset(res, 0, sizeof *res);
    if (M < 2 || S < 1 || S > M) return err_set("eval: need max_length >= 2 and 1 <= stride <= max_length, got %lld and %lld",
                                               (long long)M, (long long)S);
    if (batch_rows < M) batch_rows = M;
    double t0 = now_seconds();
    int old_grad = ag_set_grad(c, 0), old_train = c->training;
    c->training = 0;
    win_batch b = {0};
    float *nll = NULL;
    int64_t nll_cap = 0;
    int rc = 0;
    for (int64_t d = 0; d < ds->n && rc == 0; d++) {
        const data_record *r = &ds->r[d];
        if (r->image) {
            rc = err_set("%s:%lld: records with images need --vision and --projector", ds->path, (long long)r->line);
            break;
        }
        int64_t L = r->n;
        if (L < 2) {
            res->empty++;
            continue;
        }
        res->documents++;
        int64_t prev_end = 0;
        for (int64_t start = 0;; start += S) {
            int64_t end = start + M < L ? start + M : L;
            int64_t first = prev_end > start + 1 ? prev_end : start + 1;
            if (b.n + (end - start) > batch_rows && wb_flush(c, m, lora, &b, res, &nll, &nll_cap) != 0) {
                rc = -1;
                break;
            }
            wb_reserve(&b, end - start);
            int32_t base = (int32_t)b.n;
            for (int64_t p = start; p < end; p++) {
                int64_t row = b.n++;
                b.ids[row] = r->ids[p];
                b.pos[row] = (int32_t)(p - start);
                b.begin[row] = base;
                // row p predicts token p+1
                int64_t q = p + 1;
                b.targets[row] = (q < end && q >= first && r->mask[q]) ? r->ids[q] : -1;
            }
            prev_end = end;
            if (end >= L) break;
        }
        if (progress && (d + 1) % 16 == 0) progress(user, d + 1, ds->n, res);
    }
    if (rc == 0) rc = wb_flush(c, m, lora, &b, res, &nll, &nll_cap);
    free(b.ids);
    free(b.pos);
    free(b.begin);
    free(b.targets);
    free(nll);
    ag_set_grad(c, old_grad);
    c->training = old_train;
    res->seconds = now_seconds() - t0;
    if (rc == 0 && progress) progress(user, ds->n, ds->n, res);
    return rc;
}
