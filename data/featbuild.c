// featbuild.c — computing a vision feature cache: unique images, decoded on the prefetch
// thread while SigLIP runs on the previous batch, features streamed into the HDF5 writer
// (see featcache.h). Under mpirun (autograd/dist.h) batch k runs on rank k mod N and rank 0
// writes every batch in order: the same file as one process, byte for byte in its datasets.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
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
    if (data_fc_ident_init(&id, vision_dir, cfg, select_layer, m->precision)) return -1;
    int64_t *u = NULL, nu = 0;
    if (unique_images(refs, paths, n, &u, &nu)) return -1;

    int S = cfg->image_size;
    size_t rows = (size_t)cfg->num_patches * cfg->hidden_size;
    img_norm norm = data_fc_norm(cfg);
    int N = dist_size(), me = dist_rank();
    int64_t nb = (nu + batch - 1) / batch;   // batch k covers unique images [k·batch, min((k+1)·batch, nu))
    data_fc_writer *w = me == 0 ? data_fc_writer_open(out, &id, source) : NULL;
    data_prefetch *pf = me != 0 || w ? data_prefetch_new(S, &norm, max_pixels, batch) : NULL;
    float *feat = xmalloc((size_t)batch * rows * sizeof(float));
    float *recv = me == 0 && N > 1 ? xmalloc((size_t)batch * rows * sizeof(float)) : NULL;   // another rank's batch
    const char **bp = xcalloc((size_t)batch, sizeof *bp);
    ag_ctx ctx;
    int have_ctx = 0, rc = -1;
    double wait_s = 0;
    if (!pf) goto done;
    if (ag_ctx_init(&ctx, siglip_arena_bytes(m, batch))) goto done;
    have_ctx = 1;
#define BATCH_LEN(k) (nu - (k) * batch < batch ? (int)(nu - (k) * batch) : batch)
    if (me < nb) {
        for (int j = 0; j < BATCH_LEN(me); j++) bp[j] = paths[u[me * batch + j]];
        if (data_prefetch_submit(pf, bp, BATCH_LEN(me))) goto done;
    }
    // a round: batches k0 .. k0+N-1, one per rank; then rank 0 writes them in order
    for (int64_t k0 = 0; k0 < nb; k0 += N) {
        int64_t k = k0 + me;
        if (k < nb) {
            const float *pix;
            double tw = now_seconds();
            int B = data_prefetch_wait(pf, &pix);
            wait_s += now_seconds() - tw;
            if (B < 0) goto done;
            if (k + N < nb) {   // this rank's next batch decodes while this one runs through the tower
                for (int j = 0; j < BATCH_LEN(k + N); j++) bp[j] = paths[u[(k + N) * batch + j]];
                if (data_prefetch_submit(pf, bp, BATCH_LEN(k + N))) goto done;
            }
            ag_ctx_reset(&ctx);
            if (siglip_features(&ctx, m, pix, B, select_layer, feat)) goto done;
        }
        double stopped = stop && *stop;
        if (dist_sync(0, &stopped, 1)) goto done;
        if (stopped > 0) {
            err_set("%s: interrupted (no file written)", out);
            goto done;
        }
        for (int r = 0; r < N && k0 + r < nb; r++) {
            int Bk = BATCH_LEN(k0 + r);
            dist_to_root_f32(r == me ? feat : recv, (int64_t)Bk * (int64_t)rows, r);
            const float *f = r == 0 ? feat : recv;
            for (int j = 0; me == 0 && j < Bk; j++)
                if (data_fc_writer_add(w, refs[u[(k0 + r) * batch + j]], f + (size_t)j * rows)) goto done;
        }
    }
#undef BATCH_LEN
    data_prefetch_free(pf);
    pf = NULL;
    rc = me == 0 ? data_fc_writer_commit(w) : 0;
    w = NULL;
    rc = dist_sync(rc, NULL, 0);
done:
    if (rc != 0 && !dist_agreed()) dist_sync(-1, NULL, 0);   // the other ranks stop at their next round
    data_prefetch_free(pf);
    data_fc_writer_abort(w);
    if (have_ctx) ag_ctx_free(&ctx);
    free(feat);
    free(recv);
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
