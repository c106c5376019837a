// vision.c — images -> SigLIP features -> projector -> Llama input embeddings, the
// multimodal micro-step, and perplexity over records with images (see vision.h).
#include "vision.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- the tower

int vision_open(vision_tower *v, const char *dir, int select_layer, int64_t max_pixels, int max_batch) {
    memset(v, 0, sizeof *v);
    if (siglip_load(dir, &v->sig) != 0) return -1;
    const hf_siglip_config *sc = &v->sig.cfg;
    if (siglip_resolve_layer(sc, select_layer) < 0) {
        err_prefix("%s: select_layer", dir);
        siglip_free(&v->sig);
        return -1;
    }
    if (sc->resize_size != sc->image_size) {
        err_set("%s/preprocessor_config.json: size %d differs from config.json's image_size %d (the tower "
                "needs %dx%d images)", dir, sc->resize_size, sc->image_size, sc->image_size, sc->image_size);
        siglip_free(&v->sig);
        return -1;
    }
    v->size = sc->image_size;
    v->select_layer = select_layer;
    v->P = sc->num_patches;
    v->C = sc->hidden_size;
    v->max_pixels = max_pixels;
    v->max_batch = max_batch > 0 ? max_batch : 1;
    v->norm = data_fc_norm(sc);   // the same preprocessing as the feature cache's
    if (ag_ctx_init(&v->ctx, siglip_arena_bytes(&v->sig, v->max_batch)) != 0) {
        siglip_free(&v->sig);
        return -1;
    }
    v->pixels = xmalloc((size_t)v->max_batch * 3 * v->size * v->size * sizeof(float));
    return 0;
}

void vision_close(vision_tower *v) {
    if (v->pixels) siglip_free(&v->sig);
    ag_ctx_free(&v->ctx);
    free(v->pixels);
    memset(v, 0, sizeof *v);
}

int vision_features(vision_tower *v, const char *const *paths, int n, float *out, uint8_t *bad) {
    size_t img = (size_t)3 * v->size * v->size, rows = (size_t)v->P * v->C;
    v->failed = -1;
    for (int i0 = 0; i0 < n; i0 += v->max_batch) {
        int B = n - i0 < v->max_batch ? n - i0 : v->max_batch;
        for (int j = 0; j < B; j++) {
            if (img_preprocess(paths[i0 + j], v->size, &v->norm, v->max_pixels, v->pixels + j * img) != 0) {
                if (v->failed < 0) v->failed = i0 + j;
                if (!bad) return -1;
                fprintf(stderr, "warning: %s\n", err_get());
                bad[i0 + j] = 1;
                memset(v->pixels + j * img, 0, img * sizeof(float));
            }
        }
        ag_ctx_reset(&v->ctx);
        if (siglip_features(&v->ctx, &v->sig, v->pixels, B, v->select_layer, out + (size_t)i0 * rows) != 0) return -1;
        for (int j = 0; bad && j < B; j++)
            if (bad[i0 + j]) memset(out + (size_t)(i0 + j) * rows, 0, rows * sizeof(float));
    }
    return 0;
}

// --- splicing

ag_tensor *vision_embed(ag_ctx *c, const llama_model *lm, const projector *p, const int32_t *ids,
                        int64_t n, const float *feats, const int32_t *rows, int64_t m) {
    int32_t *safe = ag_alloc(c, (size_t)n * sizeof(int32_t), "vision ids");
    if (!safe) return NULL;
    for (int64_t i = 0; i < n; i++) safe[i] = ids[i] < 0 ? 0 : ids[i];   // visual rows: replaced below
    ag_tensor *x = ag_embedding(c, llama_embed(lm), safe, n);
    if (m == 0 || !x) return x;
    if (p->text_hidden != lm->cfg.hidden_size) {
        err_set("projector: text_hidden_size %d does not match the text model's hidden_size %d", p->text_hidden,
                lm->cfg.hidden_size);
        return NULL;
    }
    ag_tensor *f = ag_new2(c, m, p->vision_hidden);
    if (!f) return NULL;
    memcpy(f->data, feats, (size_t)m * p->vision_hidden * sizeof(float));
    ag_tensor *y = projector_forward(c, p, f);
    return ag_scatter_rows(c, x, y, rows);
}

// The visual rows of a batch, in sequence order: rows [images·P]. Returns the count.
static int64_t batch_image_rows(ag_ctx *c, const data_batch *b, int P, int32_t **rows) {
    int64_t m = 0;
    for (int s = 0; s < b->nseq; s++)
        if (b->image_row && b->image_row[s] >= 0) m += P;
    *rows = m ? ag_alloc(c, (size_t)m * sizeof(int32_t), "image rows") : NULL;
    if (m && !*rows) return -1;
    int64_t j = 0;
    for (int s = 0; s < b->nseq; s++)
        if (b->image_row && b->image_row[s] >= 0)
            for (int k = 0; k < P; k++) (*rows)[j++] = (int32_t)(b->image_row[s] + k);
    return m;
}

int vision_micro_step(ag_ctx *c, const llama_model *m, const llama_lora *lora, const projector *p,
                      const data_batch *b, const float *feats, const int32_t *targets, float norm,
                      double *loss) {
    ag_ctx_reset(c);
    int P = p->num_patches;
    int32_t *rows = NULL;
    int64_t nr = batch_image_rows(c, b, P, &rows);
    if (nr < 0) return -1;
    ag_tensor *x = vision_embed(c, m, p, b->ids, b->n, feats, rows, nr);
    ag_tensor *h = llama_forward(c, m, lora, NULL, x, b->n, b->pos, b->kv_begin);
    ag_tensor *l = ag_cross_entropy(c, h, (ag_tensor *)&m->w.lm_head, targets ? targets : b->targets, norm);
    if (!l) return -1;
    *loss += l->data[0];
    if (!l->requires_grad) return 0;   // nothing supervised, or nothing trainable in the batch
    return ag_backward(c, l);
}

// --- feature sources

static int cache_fn(void *user, const data_record *r, float *out) {
    return data_fc_read(user, r->image_ref ? r->image_ref : r->image, out);
}

vision_source vision_cache_source(data_fc *fc) {
    vision_source s = {cache_fn, fc, data_fc_patches(fc), data_fc_hidden(fc)};
    return s;
}

static int tower_fn(void *user, const data_record *r, float *out) {
    const char *path = r->image;
    return vision_features(user, &path, 1, out, NULL);
}

vision_source vision_tower_source(vision_tower *v) {
    vision_source s = {tower_fn, v, v->P, v->C};
    return s;
}

// --- perplexity

typedef struct vwin {
    int64_t n, cap;
    int32_t *ids, *pos, *begin, *targets;
    int64_t m, mcap;       // visual rows
    int32_t *rows;         // [m]
    float *feats;          // [m, Cv]
} vwin;

static void vw_reserve(vwin *b, int64_t need) {
    if (b->n + need <= b->cap) return;
    while (b->cap < b->n + need) b->cap = b->cap ? 2 * b->cap : 4096;
    b->ids = xrealloc(b->ids, (size_t)b->cap * sizeof(int32_t));
    b->pos = xrealloc(b->pos, (size_t)b->cap * sizeof(int32_t));
    b->begin = xrealloc(b->begin, (size_t)b->cap * sizeof(int32_t));
    b->targets = xrealloc(b->targets, (size_t)b->cap * sizeof(int32_t));
}

static void vw_reserve_rows(vwin *b, int64_t need, int Cv) {
    if (b->m + need <= b->mcap) return;
    while (b->mcap < b->m + need) b->mcap = b->mcap ? 2 * b->mcap : 1024;
    b->rows = xrealloc(b->rows, (size_t)b->mcap * sizeof(int32_t));
    b->feats = xrealloc(b->feats, (size_t)b->mcap * Cv * sizeof(float));
}

static int vw_flush(ag_ctx *c, const llama_model *m, const llama_lora *lora, const projector *p, vwin *b,
                    eval_result *res, float **nll, int64_t *nll_cap) {
    if (b->n == 0) return 0;
    ag_ctx_reset(c);
    ag_tensor *x = b->m ? vision_embed(c, m, p, b->ids, b->n, b->feats, b->rows, b->m) : NULL;
    if (b->m && !x) return -1;
    ag_tensor *h = llama_forward(c, m, lora, x ? NULL : b->ids, x, b->n, b->pos, b->begin);
    if (!h) return -1;
    if (*nll_cap < b->n) {
        *nll_cap = b->n;
        *nll = xrealloc(*nll, (size_t)b->n * sizeof(float));
    }
    if (ag_nll_rows(c, h, (ag_tensor *)&m->w.lm_head, b->targets, *nll) != 0) return -1;
    for (int64_t i = 0; i < b->n; i++)
        if (b->targets[i] >= 0) {
            res->nll += (*nll)[i];
            res->tokens++;
        }
    res->rows += b->n;
    b->n = b->m = 0;
    return 0;
}

int vision_perplexity(ag_ctx *c, const llama_model *m, const llama_lora *lora, const vision_source *v,
                      const projector *p, const data_set *ds, int64_t M, int64_t S,
                      int64_t batch_rows, eval_result *res, eval_progress_fn progress, void *user) {
    memset(res, 0, sizeof *res);
    if (M < 2 || S < 1 || S > M)
        return err_set("eval: need max_length >= 2 and 1 <= stride <= max_length, got %lld and %lld", (long long)M,
                       (long long)S);
    if (batch_rows < M) batch_rows = M;
    double t0 = now_seconds();
    int old_grad = ag_set_grad(c, 0), old_train = c->training;
    c->training = 0;
    int P = v ? v->P : 0, Cv = v ? v->Cv : 0;
    vwin b = {0};
    float *nll = NULL, *img = P ? xmalloc((size_t)P * Cv * sizeof(float)) : NULL;
    int64_t nll_cap = 0, rcap = 0;
    int32_t *rid = NULL;     // [L] the record's row ids (-1 on visual rows)
    uint8_t *rmask = NULL;   // [L]
    int rc = 0;
    for (int64_t d = 0; d < ds->n && rc == 0; d++) {
        const data_record *r = &ds->r[d];
        int has = r->image && r->image_pos >= 0;
        if (has && (!v || !p)) {
            rc = err_set("%s:%lld: records with images need --vision and --projector", ds->path, (long long)r->line);
            break;
        }
        int64_t L = r->n + (has ? P : 0);
        if (L > rcap) {
            rcap = L;
            rid = xrealloc(rid, (size_t)L * sizeof *rid);
            rmask = xrealloc(rmask, (size_t)L);
        }
        for (int64_t i = 0, t = 0; i < L; i++) {
            if (has && i >= r->image_pos && i < r->image_pos + P) {
                rid[i] = -1;
                rmask[i] = 0;
            } else {
                rid[i] = r->ids[t];
                rmask[i] = r->mask[t++];
            }
        }
        if (L < 2) {
            res->empty++;
            continue;
        }
        if (has) {
            if (v->fn(v->user, r, img) != 0) {
                rc = err_prefix("%s:%lld", ds->path, (long long)r->line);
                break;
            }
        }
        res->documents++;
        int64_t prev_end = 0;
        for (int64_t start = 0;; start += S) {
            int64_t end = start + M < L ? start + M : L;
            int64_t first = prev_end > start + 1 ? prev_end : start + 1;
            if (b.n + (end - start) > batch_rows && vw_flush(c, m, lora, p, &b, res, &nll, &nll_cap) != 0) {
                rc = -1;
                break;
            }
            vw_reserve(&b, end - start);
            int32_t base = (int32_t)b.n;
            for (int64_t q = start; q < end; q++) {
                int64_t row = b.n++;
                b.ids[row] = rid[q];
                b.pos[row] = (int32_t)(q - start);
                b.begin[row] = base;
                int64_t nx = q + 1;   // row q predicts row q+1 (a token, never a visual row)
                b.targets[row] = (nx < end && nx >= first && rid[nx] >= 0 && rmask[nx]) ? rid[nx] : -1;
                if (rid[q] < 0) {
                    vw_reserve_rows(&b, 1, Cv);
                    b.rows[b.m] = (int32_t)row;
                    memcpy(b.feats + b.m * Cv, img + (q - r->image_pos) * Cv, (size_t)Cv * sizeof(float));
                    b.m++;
                }
            }
            prev_end = end;
            if (end >= L) break;
        }
        if (progress && (d + 1) % 16 == 0) progress(user, d + 1, ds->n, res);
    }
    if (rc == 0) rc = vw_flush(c, m, lora, p, &b, res, &nll, &nll_cap);
    free(b.ids), free(b.pos), free(b.begin), free(b.targets), free(b.rows), free(b.feats);
    free(nll), free(img), free(rid), free(rmask);
    ag_set_grad(c, old_grad);
    c->training = old_train;
    res->seconds = now_seconds() - t0;
    if (rc == 0 && progress) progress(user, ds->n, ds->n, res);
    return rc;
}
