// ppl.c — sliding-window perplexity (see ppl.h).
#include "ppl.h"

#include "dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// A pending batch of windows: rows concatenated, each window its own attention range; the
// visual rows among them with their features.
typedef struct win_batch {
    int64_t n, cap;
    int32_t *ids, *pos, *begin, *targets;
    int64_t m, mcap;       // visual rows
    int32_t *rows;         // [m]
    float *feats;          // [m, Cv]
    int32_t *img;          // [n] cross-attention: the row's window image, -1: none
    int nimg;              // cross-attention: images (R feature rows each) in feats
} win_batch;

static void wb_reserve(win_batch *b, int64_t need) {
    if (b->n + need <= b->cap) return;
    while (b->cap < b->n + need) b->cap = b->cap ? 2 * b->cap : 4096;
    b->ids = xrealloc(b->ids, (size_t)b->cap * sizeof(int32_t));
    b->pos = xrealloc(b->pos, (size_t)b->cap * sizeof(int32_t));
    b->begin = xrealloc(b->begin, (size_t)b->cap * sizeof(int32_t));
    b->targets = xrealloc(b->targets, (size_t)b->cap * sizeof(int32_t));
    b->img = xrealloc(b->img, (size_t)b->cap * sizeof(int32_t));
}

static void wb_reserve_rows(win_batch *b, int64_t need, int Cv) {
    if (b->m + need <= b->mcap) return;
    while (b->mcap < b->m + need) b->mcap = b->mcap ? 2 * b->mcap : 1024;
    b->rows = xrealloc(b->rows, (size_t)b->mcap * sizeof(int32_t));
    b->feats = xrealloc(b->feats, (size_t)b->mcap * Cv * sizeof(float));
}

static void wb_free(win_batch *b) {
    free(b->ids);
    free(b->pos);
    free(b->begin);
    free(b->targets);
    free(b->rows);
    free(b->feats);
    free(b->img);
}

// The batch goes through the model on its rank only (batch k on rank k mod N, see ppl.h).
static int wb_flush(ag_ctx *c, const llama_model *m, const llama_lora *lora, const eval_image_hook *img,
                    win_batch *b, eval_result *res, float **nll_buf, int64_t *nll_cap, int64_t *nflush) {
    if (b->n == 0) return 0;
    if ((*nflush)++ % dist_size() != dist_rank()) {
        b->n = b->m = 0;
        return 0;
    }
    ag_ctx_reset(c);
    ag_tensor *h;
    if (img && img->forward) {
        h = img->forward(img->user, c, b->ids, b->n, b->pos, b->begin, b->feats, b->nimg, b->img);
    } else {
        ag_tensor *x = b->m ? img->embed(img->user, c, b->ids, b->n, b->feats, b->rows, b->m) : NULL;
        if (b->m && !x) return -1;
        h = llama_forward(c, m, lora, x ? NULL : b->ids, x, b->n, b->pos, b->begin);
    }
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
    b->n = b->m = 0;
    b->nimg = 0;
    return 0;
}

int eval_perplexity(ag_ctx *c, const llama_model *m, const llama_lora *lora, const data_set *ds,
                    int64_t M, int64_t S, int64_t batch_rows, eval_result *res,
                    eval_progress_fn progress, void *user) {
    return eval_perplexity_img(c, m, lora, NULL, ds, M, S, batch_rows, res, progress, user);
}

int eval_perplexity_img(ag_ctx *c, const llama_model *m, const llama_lora *lora, const eval_image_hook *img,
                        const data_set *ds, int64_t M, int64_t S, int64_t batch_rows, eval_result *res,
                        eval_progress_fn progress, void *user) {
    memset(res, 0, sizeof *res);
    if (M < 2 || S < 1 || S > M)
        return err_set("eval: need max_length >= 2 and 1 <= stride <= max_length, got %lld and %lld", (long long)M,
                       (long long)S);
    if (batch_rows < M) batch_rows = M;
    double t0 = now_seconds();
    int old_grad = ag_set_grad(c, 0), old_train = c->training;
    c->training = 0;
    int P = img ? img->P : 0, Cv = img ? img->Cv : 0, R = img && img->forward ? img->R : 0;
    win_batch b = {0};
    float *nll = NULL, *feat = img && img->features && (P || R) ? xmalloc((size_t)(P + R) * Cv * sizeof(float)) : NULL;
    int64_t nll_cap = 0, rcap = 0, nflush = 0;
    int32_t *rid_buf = NULL;     // [L] the rows of a record with an image (-1 on visual rows)
    uint8_t *rmask_buf = NULL;   // [L]
    int rc = 0;
    for (int64_t d = 0; d < ds->n && rc == 0; d++) {
        const data_record *r = &ds->r[d];
        int has = img && r->image && r->image_pos >= 0;
        if (img ? has && !img->features : r->image != NULL) {
            rc = err_set("%s:%lld: records with images need --vision and --projector", ds->path, (long long)r->line);
            break;
        }
        // the record's rows: its tokens, with the P visual rows spliced in at image_pos
        int64_t L = r->n + (has ? P : 0);
        const int32_t *rid = r->ids;
        const uint8_t *rmask = r->mask;
        if (has) {
            if (L > rcap) {
                rcap = L;
                rid_buf = xrealloc(rid_buf, (size_t)L * sizeof *rid_buf);
                rmask_buf = xrealloc(rmask_buf, (size_t)L);
            }
            for (int64_t i = 0, t = 0; i < L; i++) {
                int visual = i >= r->image_pos && i < r->image_pos + P;
                rid_buf[i] = visual ? -1 : r->ids[t];
                rmask_buf[i] = visual ? 0 : r->mask[t++];
            }
            rid = rid_buf;
            rmask = rmask_buf;
        }
        if (L < 2) {
            res->empty++;
            continue;
        }
        int have_feat = 0;   // the features, once a window of this record lands in a batch of this rank
        res->documents++;
        int64_t prev_end = 0;
        for (int64_t start = 0;; start += S) {
            int64_t end = start + M < L ? start + M : L;
            int64_t first = prev_end > start + 1 ? prev_end : start + 1;
            if (b.n + (end - start) > batch_rows && wb_flush(c, m, lora, img, &b, res, &nll, &nll_cap, &nflush) != 0) {
                rc = -1;
                break;
            }
            int mine = nflush % dist_size() == dist_rank();
            if (has && mine && !have_feat) {
                if (img->features(img->user, r, feat) != 0) {
                    rc = err_prefix("%s:%lld", ds->path, (long long)r->line);
                    break;
                }
                have_feat = 1;
            }
            wb_reserve(&b, end - start);
            int32_t base = (int32_t)b.n, wimg = -1;
            if (has && R) {   // cross-attention: the window carries its image's feature rows
                wb_reserve_rows(&b, R, Cv);
                memcpy(b.feats + b.m * Cv, feat, (size_t)R * Cv * sizeof(float));
                b.m += R;
                wimg = b.nimg++;
            }
            for (int64_t q = start; q < end; q++) {
                int64_t row = b.n++;
                b.img[row] = wimg;
                b.ids[row] = rid[q];
                b.pos[row] = (int32_t)(q - start);
                b.begin[row] = base;
                int64_t nx = q + 1;   // row q predicts row q+1 (a token, never a visual row)
                b.targets[row] = (nx < end && nx >= first && rid[nx] >= 0 && rmask[nx]) ? rid[nx] : -1;
                if (rid[q] < 0 && mine) {
                    wb_reserve_rows(&b, 1, Cv);
                    b.rows[b.m] = (int32_t)row;
                    memcpy(b.feats + b.m * Cv, feat + (q - r->image_pos) * Cv, (size_t)Cv * sizeof(float));
                    b.m++;
                }
            }
            prev_end = end;
            if (end >= L) break;
        }
        if (progress && (d + 1) % 16 == 0) progress(user, d + 1, ds->n, res);
    }
    if (rc == 0) rc = wb_flush(c, m, lora, img, &b, res, &nll, &nll_cap, &nflush);
    // every rank: the sums over its batches, added up in double (all ranks agree on failure)
    double v[3] = {res->nll, (double)res->tokens, (double)res->rows};
    if (dist_sync(rc, v, 3) == 0) {
        res->nll = v[0];
        res->tokens = (int64_t)v[1];
        res->rows = (int64_t)v[2];
    } else {
        rc = -1;
    }
    wb_free(&b);
    free(nll);
    free(feat);
    free(rid_buf);
    free(rmask_buf);
    ag_set_grad(c, old_grad);
    c->training = old_train;
    res->seconds = now_seconds() - t0;
    if (rc == 0 && progress) progress(user, ds->n, ds->n, res);
    return rc;
}
