// featbuild.c — computing a vision feature cache: unique images, decoded on the prefetch
// thread while SigLIP runs on the previous batch, features streamed into the HDF5 writer
// (see featcache.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "featcache.h"
#include "prefetch.h"
#include "util.h"

img_norm data_fc_norm(const hf_siglip_config *cfg) {
    img_norm n = img_norm_siglip();
    for (int c = 0; c < 3; c++) {
        n.mean[c] = cfg->image_mean[c];
        n.std[c] = cfg->image_std[c];
    }
    n.rescale = cfg->rescale_factor == (float)(1.0 / 255.0) ? 1.0 / 255.0 : (double)cfg->rescale_factor;
    return n;
}

// unique (ref, path) pairs in first-seen order; a ref naming two paths is an error
static int unique_images(const char *const *refs, const char *const *paths, int64_t n, int64_t **idx_out,
                         int64_t *nu_out) {
    int64_t cap = 64;
    while (cap < 2 * n) cap *= 2;
    int64_t *slot = xmalloc((size_t)cap * sizeof *slot);   // index into refs, -1 empty
    for (int64_t i = 0; i < cap; i++) slot[i] = -1;
    int64_t *idx = xmalloc((size_t)(n ? n : 1) * sizeof *idx), nu = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = hash64(refs[i], strlen(refs[i]), 0) & (uint64_t)(cap - 1);
        for (;; h = (h + 1) & (uint64_t)(cap - 1)) {
            int64_t j = slot[h];
            if (j < 0) {
                slot[h] = i;
                idx[nu++] = i;
                break;
            }
            if (!strcmp(refs[j], refs[i])) {
                if (strcmp(paths[j], paths[i])) {
                    err_set("image '%s' names two different files: %s and %s (data files in different folders? "
                            "the feature cache is keyed by the path as written in the JSONL)", refs[i], paths[j],
                            paths[i]);
                    free(slot);
                    free(idx);
                    return -1;
                }
                break;
            }
        }
    }
    free(slot);
    *idx_out = idx;
    *nu_out = nu;
    return 0;
}

int data_fc_build(const char *out, const char *vision_dir, const siglip_model *m, int select_layer,
                  const char *const *refs, const char *const *paths, int64_t n, int batch, int64_t max_pixels,
                  const char *source, const volatile sig_atomic_t *stop, data_fc_build_stats *st) {
    double t0 = now_seconds();
    if (st) memset(st, 0, sizeof *st);
    if (batch <= 0) batch = 8;
    const hf_siglip_config *cfg = &m->cfg;
    if (siglip_resolve_layer(cfg, select_layer) < 0) return err_prefix("%s: vision.select_layer", vision_dir);
    if (cfg->resize_size != cfg->image_size)
        return err_set("%s/preprocessor_config.json: size %d differs from config.json's image_size %d (the tower "
                       "needs %dx%d images)", vision_dir, cfg->resize_size, cfg->image_size, cfg->image_size,
                       cfg->image_size);
    data_fc_ident id;
    if (data_fc_ident_init(&id, vision_dir, cfg, select_layer)) return -1;
    int64_t *u = NULL, nu = 0;
    if (unique_images(refs, paths, n, &u, &nu)) return -1;

    int S = cfg->image_size;
    size_t rows = (size_t)cfg->num_patches * cfg->hidden_size;
    img_norm norm = data_fc_norm(cfg);
    data_fc_writer *w = data_fc_writer_open(out, &id, source);
    data_prefetch *pf = w ? data_prefetch_new(S, &norm, max_pixels, batch) : NULL;
    float *feat = xmalloc((size_t)batch * rows * sizeof(float));
    const char **bp = xcalloc((size_t)batch, sizeof *bp);
    ag_ctx ctx;
    int have_ctx = 0, rc = -1;
    double wait_s = 0;
    if (!pf) goto done;
    if (ag_ctx_init(&ctx, siglip_arena_bytes(m, batch))) goto done;
    have_ctx = 1;

    // batch k covers unique images [k·batch, min((k+1)·batch, nu))
    for (int64_t i0 = 0; i0 < nu; i0 += batch) {
        if (i0 == 0) {
            int B = nu < batch ? (int)nu : batch;
            for (int j = 0; j < B; j++) bp[j] = paths[u[j]];
            if (data_prefetch_submit(pf, bp, B)) goto done;
        }
        const float *pix;
        double tw = now_seconds();
        int B = data_prefetch_wait(pf, &pix);
        wait_s += now_seconds() - tw;
        if (B < 0) goto done;
        int64_t i1 = i0 + batch;
        if (i1 < nu) {   // the next batch decodes while this one runs through the tower
            int B1 = nu - i1 < batch ? (int)(nu - i1) : batch;
            for (int j = 0; j < B1; j++) bp[j] = paths[u[i1 + j]];
            if (data_prefetch_submit(pf, bp, B1)) goto done;
        }
        ag_ctx_reset(&ctx);
        if (siglip_features(&ctx, m, pix, B, select_layer, feat)) goto done;
        for (int j = 0; j < B; j++)
            if (data_fc_writer_add(w, refs[u[i0 + j]], feat + (size_t)j * rows)) goto done;
        if (stop && *stop) {
            err_set("%s: interrupted (no file written)", out);
            goto done;
        }
    }
    data_prefetch_free(pf);
    pf = NULL;
    rc = data_fc_writer_commit(w);
    w = NULL;
done:
    data_prefetch_free(pf);
    data_fc_writer_abort(w);
    if (have_ctx) ag_ctx_free(&ctx);
    free(feat);
    free(bp);
    free(u);
    if (st) {
        st->images = nu;
        st->refs = n;
        st->seconds = now_seconds() - t0;
        st->decode_seconds = wait_s;
    }
    return rc;
}
