// vision.c — images -> SigLIP features -> projector -> Llama input embeddings, and the
// multimodal micro-step (see vision.h; perplexity with images: eval/vision_ppl.c).
#include "vision.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- the tower

int vision_open(vision_tower *v, const char *dir, int select_layer, int64_t max_pixels, int max_batch,
                ag_precision precision, ag_weights weights) {
    memset(v, 0, sizeof *v);
    if (siglip_load_opts(dir, &v->sig, precision, weights) != 0) return -1;
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

int vision_open_projected(vision_tower *v, projector *p, const char *vision_dir, const char *proj_dir,
                          const llama_model *m, const char *model) {
    if (projector_load(p, proj_dir) != 0 || vision_open(v, vision_dir, p->select_layer, 0, 1, m->precision, m->weights) != 0)
        return -1;
    if (p->vision_hidden != v->C || p->num_patches != v->P || p->text_hidden != m->cfg.hidden_size)
        return err_set("%s/projector_config.json: the projector maps %d -> %d with %d patches; %s gives %d features "
                       "of width %d and %s has hidden_size %d",
                       proj_dir, p->vision_hidden, p->text_hidden, p->num_patches, vision_dir, v->P, v->C, model,
                       m->cfg.hidden_size);
    return 0;
}

int vision_open_xattn(xattn *xa, const char *proj_dir, const llama_model *m) {
    char *cfg = path_join(proj_dir, "xattn_config.json");
    int has = file_exists(cfg);
    free(cfg);
    if (!has) return 0;
    return xattn_load(xa, proj_dir, &m->cfg) == 0 ? 1 : -1;
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

// The token embeddings of ids [n] with rows[j] replaced by projector(f[j]); f [m, Cv] holds
// the (pooled) visual rows, on the tape.
static ag_tensor *embed_rows(ag_ctx *c, const llama_model *lm, const projector *p, const int32_t *ids, int64_t n,
                             ag_tensor *f, const int32_t *rows, int64_t m) {
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
    if (!f) return NULL;
    if (f->shape[0] != m) {
        err_set("projector: %lld visual rows for %lld image rows of the sequence", (long long)f->shape[0], (long long)m);
        return NULL;
    }
    ag_tensor *y = projector_forward(c, p, f);
    return ag_scatter_rows(c, x, y, rows);
}

// Raw patch features [images·P, Cv] into the arena (no grad).
static ag_tensor *feats_tensor(ag_ctx *c, const projector *p, const float *feats, int64_t rows) {
    ag_tensor *f = ag_new2(c, rows, p->vision_hidden);
    if (f) memcpy(f->data, feats, (size_t)rows * p->vision_hidden * sizeof(float));
    return f;
}

ag_tensor *vision_embed_pooled(ag_ctx *c, const llama_model *lm, const projector *p, const int32_t *ids,
                               int64_t n, const float *feats, const int32_t *rows, int64_t m) {
    return embed_rows(c, lm, p, ids, n, feats_tensor(c, p, feats, m), rows, m);
}

ag_tensor *vision_embed(ag_ctx *c, const llama_model *lm, const projector *p, const int32_t *ids,
                        int64_t n, const float *feats, const int32_t *rows, int64_t m) {
    int R = projector_rows(p);
    if (m == 0) return embed_rows(c, lm, p, ids, n, NULL, rows, 0);
    if (p->pool == POOL_NONE) return vision_embed_pooled(c, lm, p, ids, n, feats, rows, m);
    if (R <= 0 || m % R != 0) {
        err_set("vision: %lld image rows are not whole images of %d rows", (long long)m, R);
        return NULL;
    }
    ag_tensor *f = feats_tensor(c, p, feats, m / R * p->num_patches);
    return embed_rows(c, lm, p, ids, n, projector_pool(c, p, f), rows, m);
}

// The visual rows of a batch, in sequence order: rows [images·P] (P rows per image in the
// sequence). Returns the count.
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

// The fused lm-head cross-entropy of h and its backward: *loss += Σ nll / norm.
static int loss_backward(ag_ctx *c, const llama_model *m, ag_tensor *h, const int32_t *targets, float norm,
                         double *loss) {
    ag_tensor *l = ag_cross_entropy(c, h, (ag_tensor *)&m->w.lm_head, targets, norm);
    if (!l) return -1;
    *loss += l->data[0];
    if (!l->requires_grad) return 0;   // nothing supervised, or nothing trainable in the batch
    return ag_backward(c, l);
}

int vision_micro_step(ag_ctx *c, const llama_model *m, const llama_lora *lora, const projector *p,
                      const data_batch *b, const float *feats, const int32_t *targets, float norm,
                      double *loss) {
    ag_ctx_reset(c);
    int P = projector_rows(p);
    int32_t *rows = NULL;
    int64_t nr = batch_image_rows(c, b, P, &rows);
    if (nr < 0) return -1;
    ag_tensor *x = vision_embed(c, m, p, b->ids, b->n, feats, rows, nr);
    ag_tensor *h = llama_forward(c, m, lora, NULL, x, b->n, b->pos, b->kv_begin);
    return loss_backward(c, m, h, targets ? targets : b->targets, norm, loss);
}

// --- cross-attention fusion

ag_tensor *vision_xattn_rows(ag_ctx *c, const projector *p, const float *feats, int nimg) {
    if (nimg == 0) return NULL;
    int64_t rows = (int64_t)nimg * (p->pool == POOL_NONE ? projector_rows(p) : p->num_patches);
    return projector_forward(c, p, projector_pool(c, p, feats_tensor(c, p, feats, rows)));
}

// Each row's visual rows: image img[i] (-1: none) owns rows [img·R, (img+1)·R) of vis.
static int xattn_ranges(ag_ctx *c, const int32_t *img, int64_t n, int R, int32_t **kb, int32_t **ke) {
    *kb = ag_alloc(c, (size_t)n * sizeof **kb, "xattn ranges");
    *ke = ag_alloc(c, (size_t)n * sizeof **ke, "xattn ranges");
    if (!*kb || !*ke) return -1;
    for (int64_t i = 0; i < n; i++) {
        (*kb)[i] = img[i] >= 0 ? img[i] * R : 0;
        (*ke)[i] = img[i] >= 0 ? (img[i] + 1) * R : 0;
    }
    return 0;
}

ag_tensor *vision_project_pooled(ag_ctx *c, const projector *p, const float *feats, int64_t rows) {
    return projector_forward(c, p, feats_tensor(c, p, feats, rows));
}

ag_tensor *vision_xattn_forward_vis(ag_ctx *c, const llama_model *m, const llama_lora *lora, const xattn *xa,
                                    ag_tensor *vis, int R, const int32_t *ids, int64_t n, const int32_t *pos,
                                    const int32_t *kv_begin, int nimg, const int32_t *img) {
    if (nimg && !vis) return NULL;
    int32_t *kb, *ke;
    if (xattn_ranges(c, img, n, R, &kb, &ke) != 0) return NULL;
    xattn_run run = {xa, vis, kb, ke};
    llama_hook hook = xattn_hook(&run);
    return llama_forward_hooked(c, m, lora, ids, NULL, n, pos, kv_begin, &hook);
}

ag_tensor *vision_xattn_forward(ag_ctx *c, const llama_model *m, const llama_lora *lora, const projector *p,
                                const xattn *xa, const int32_t *ids, int64_t n, const int32_t *pos,
                                const int32_t *kv_begin, const float *feats, int nimg, const int32_t *img) {
    ag_tensor *vis = vision_xattn_rows(c, p, feats, nimg);
    return vision_xattn_forward_vis(c, m, lora, xa, vis, projector_rows(p), ids, n, pos, kv_begin, nimg, img);
}

int vision_xattn_micro_step(ag_ctx *c, const llama_model *m, const llama_lora *lora, const projector *p,
                            const xattn *xa, const data_batch *b, const float *feats, const int32_t *targets,
                            float norm, double *loss) {
    ag_ctx_reset(c);
    int32_t *img = ag_alloc(c, (size_t)b->n * sizeof *img, "xattn images");
    if (!img) return -1;
    int ni = 0;
    for (int s = 0; s < b->nseq; s++) {
        int has = b->image_row && b->image_row[s] >= 0;
        for (int64_t r = b->seq_begin[s]; r < b->seq_begin[s + 1]; r++) img[r] = has ? ni : -1;
        ni += has;
    }
    ag_tensor *h = vision_xattn_forward(c, m, lora, p, xa, b->ids, b->n, b->pos, b->kv_begin, feats, ni, img);
    return loss_backward(c, m, h, targets ? targets : b->targets, norm, loss);
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
