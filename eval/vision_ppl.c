// vision_ppl.c — perplexity over records with images: eval_perplexity_img (ppl.h) with the
// projector splicing the features in (data/vision.h), or the cross-attention blocks (see vision_ppl.h).
#include "vision_ppl.h"

#include <stdlib.h>

// --- perplexity (eval_perplexity_img with the projector splicing the features in)

typedef struct vision_ppl {
    const llama_model *m;
    const projector *p;
    const vision_source *src;
    float *raw;   // [P, Cv] one image's patch features before pooling
    const llama_lora *lora;   // cross-attention: the forward runs here
    const xattn *xa;
} vision_ppl;

static int ppl_features(void *user, const data_record *r, float *out) {
    const vision_ppl *v = user;
    if (v->p->pool == POOL_NONE) return v->src->fn(v->src->user, r, out);
    if (v->src->fn(v->src->user, r, v->raw) != 0) return -1;
    projector_pool_plain(v->p, v->raw, 1, out);
    return 0;
}

static ag_tensor *ppl_embed(void *user, ag_ctx *c, const int32_t *ids, int64_t n, const float *feats,
                            const int32_t *rows, int64_t m) {
    const vision_ppl *v = user;
    return vision_embed_pooled(c, v->m, v->p, ids, n, feats, rows, m);
}

static ag_tensor *ppl_xattn(void *user, ag_ctx *c, const int32_t *ids, int64_t n, const int32_t *pos,
                            const int32_t *begin, const float *feats, int nimg, const int32_t *img) {
    const vision_ppl *v = user;
    // feats hold the pooled rows already: project them without pooling again
    int R = projector_rows(v->p);
    ag_tensor *vis = nimg ? vision_project_pooled(c, v->p, feats, (int64_t)nimg * R) : NULL;
    return vision_xattn_forward_vis(c, v->m, v->lora, v->xa, vis, R, ids, n, pos, begin, nimg, img);
}

int vision_perplexity_xattn(ag_ctx *c, const llama_model *m, const llama_lora *lora, const vision_source *v,
                            const projector *p, const xattn *xa, const data_set *ds, int64_t M, int64_t S,
                            int64_t batch_rows, eval_result *res, eval_progress_fn progress, void *user) {
    if (v && p && (p->pool != POOL_NONE || xa) && v->P != p->num_patches)
        return err_set("vision: the features have %d patches per image, the projector expects %d", v->P,
                       p->num_patches);
    vision_ppl vp = {m, p, v, v && p ? xmalloc((size_t)v->P * v->Cv * sizeof(float)) : NULL, lora, xa};
    eval_image_hook hook = {0};
    hook.Cv = v ? v->Cv : 0;
    hook.features = v && p ? ppl_features : NULL;
    hook.user = &vp;
    if (xa) {
        hook.R = p ? projector_rows(p) : 0;
        hook.forward = ppl_xattn;
    } else {
        hook.P = v ? (p ? projector_rows(p) : v->P) : 0;
        hook.embed = ppl_embed;
    }
    int rc = eval_perplexity_img(c, m, lora, &hook, ds, M, S, batch_rows, res, progress, user);
    free(vp.raw);
    return rc;
}

int vision_perplexity(ag_ctx *c, const llama_model *m, const llama_lora *lora, const vision_source *v,
                      const projector *p, const data_set *ds, int64_t M, int64_t S,
                      int64_t batch_rows, eval_result *res, eval_progress_fn progress, void *user) {
    return vision_perplexity_xattn(c, m, lora, v, p, NULL, ds, M, S, batch_rows, res, progress, user);
}
