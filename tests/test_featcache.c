// test_featcache.c — the vision feature cache (data/featcache.h) and the image prefetcher
// (data/prefetch.h): write -> read round trip against siglip_features computed directly,
// refusals (other select_layer, other vision weights, other preprocessing, missing image,
// corrupt or foreign files), atomic writes, and prefetch == synchronous preprocessing.
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "featcache.h"
#include "make_captions.h"
#include "prefetch.h"
#include "siglip.h"
#include "test.h"
#include "util.h"

static const char *tmp;
static char vis[600], vis2[600], data[600], cache[600];
static siglip_model m;
static int ready;
#define NIMG 11

static void path_of(char *dst, size_t n, const char *name) { snprintf(dst, n, "%s/%s", tmp, name); }

static void setup(void) {
    path_of(vis, sizeof vis, "siglip");
    path_of(vis2, sizeof vis2, "siglip-seed4");
    path_of(data, sizeof data, "captions");
    path_of(cache, sizeof cache, "feat.h5");
    char *a1[] = {"make-tiny", "--out", vis, "--kind", "siglip", NULL};
    char *a2[] = {"make-tiny", "--out", vis2, "--kind", "siglip", "--seed", "4", NULL};
    int rc = cmd_make_tiny(5, a1) || cmd_make_tiny(7, a2) || make_captions(data, NIMG, 3, 48, CAPTIONS_FULL, 7, 0);
    CHECK(rc == 0, "setup: %s", err_get());
    if (rc) return;
    rc = siglip_load(vis, &m);
    CHECK(rc == 0, "load: %s", err_get());
    ready = rc == 0;
}

// refs with duplicates: every image twice (the second time from another "record")
static void make_refs(char **refs, char **paths, int *n) {
    *n = 0;
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < NIMG; i++) {
            char r[64], p[800];
            snprintf(r, sizeof r, "images/train_%05d.png", i);
            snprintf(p, sizeof p, "%s/%s", data, r);
            refs[*n] = strdup(r);
            paths[*n] = strdup(p);
            (*n)++;
        }
}

static void test_round_trip(void) {
    if (!ready) return;
    char *refs[2 * NIMG], *paths[2 * NIMG];
    int n;
    make_refs(refs, paths, &n);
    data_fc_build_stats st;
    int rc = data_fc_build(cache, vis, &m, -2, (const char *const *)refs, (const char *const *)paths, n, 4, 0,
                           "train.jsonl", NULL, &st);
    CHECK(rc == 0, "build: %s", err_get());
    CHECK(st.images == NIMG && st.refs == 2 * NIMG, "stats: %lld images of %lld refs", (long long)st.images,
          (long long)st.refs);
    data_fc_ident id;
    CHECK(data_fc_ident_init(&id, vis, &m.cfg, -2, AG_PREC_FP32) == 0, "%s", err_get());
    data_fc *fc = data_fc_open(cache, &id);
    CHECK(fc != NULL, "open: %s", err_get());
    if (!fc) goto out;
    int P = m.cfg.num_patches, C = m.cfg.hidden_size, S = m.cfg.image_size;
    CHECK(data_fc_count(fc) == NIMG && data_fc_patches(fc) == P && data_fc_hidden(fc) == C, "shape %lld %d %d",
          (long long)data_fc_count(fc), data_fc_patches(fc), data_fc_hidden(fc));
    // reference: each image alone through img_preprocess + siglip_features
    img_norm norm = data_fc_norm(&m.cfg);
    float *pix = malloc(sizeof(float) * 3 * S * S), *ref = malloc(sizeof(float) * P * C),
          *got = malloc(sizeof(float) * P * C);
    ag_ctx c;
    ag_ctx_init(&c, siglip_arena_bytes(&m, 1));
    double worst = 0;
    for (int i = 0; i < NIMG; i++) {
        CHECK(data_fc_find(fc, refs[i]) == i, "row of %s: %lld", refs[i], (long long)data_fc_find(fc, refs[i]));
        CHECK(!strcmp(data_fc_image(fc, i), refs[i]), "image %d: %s", i, data_fc_image(fc, i));
        CHECK(img_preprocess(paths[i], S, &norm, 0, pix) == 0, "%s", err_get());
        ag_ctx_reset(&c);
        CHECK(siglip_features(&c, &m, pix, 1, -2, ref) == 0, "%s", err_get());
        memset(got, 0, sizeof(float) * P * C);
        CHECK(data_fc_read(fc, refs[i], got) == 0, "read: %s", err_get());
        double e = max_rel_err(got, ref, (long)P * C, 1e-6);
        if (e > worst) worst = e;
    }
    // batch of 4 vs batch of 1: BLAS may block differently, so not bit-exact
    CHECK(worst <= 1e-5, "cache vs direct features: rel err %.3g", worst);
    // reading out of order, twice
    CHECK(data_fc_read(fc, refs[5], got) == 0 && data_fc_read(fc, refs[0], got) == 0, "%s", err_get());
    // the image that is not there
    CHECK(data_fc_read(fc, "images/nope.png", got) != 0 && strstr(err_get(), "images/nope.png") &&
              strstr(err_get(), "not in the feature cache") && strstr(err_get(), cache) &&
              strstr(err_get(), "lorac prepare"),
          "missing image: %s", err_get());
    CHECK(data_fc_find(fc, "images/nope.png") == -1, "find of a missing image");
    const data_fc_ident *fid = data_fc_get_ident(fc);
    CHECK(fid->select_layer == -2 && !strcmp(fid->resize, "bicubic") && !strcmp(fid->model_hash, id.model_hash) &&
              !strcmp(fid->precision, "fp32"),
          "stored ident");
    data_fc_close(fc);
    // no temporary file left behind
    char tmpname[800];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%d", cache, (int)getpid());
    CHECK(!file_exists(tmpname), "temp file left: %s", tmpname);
    ag_ctx_free(&c);
    free(pix);
    free(ref);
    free(got);
out:
    for (int i = 0; i < n; i++) free(refs[i]), free(paths[i]);
}

static void test_refusals(void) {
    if (!ready || !file_exists(cache)) return;
    data_fc_ident id;
    CHECK(data_fc_ident_init(&id, vis, &m.cfg, -1, AG_PREC_FP32) == 0, "%s", err_get());
    data_fc *fc = data_fc_open(cache, &id);
    CHECK(!fc && strstr(err_get(), cache) && strstr(err_get(), "'select_layer'") &&
              strstr(err_get(), "expected -1, found -2") && strstr(err_get(), "re-run `lorac prepare`"),
          "other select_layer: %s", err_get());
    data_fc_close(fc);

    // other vision weights (same config and header, another seed): the sampled data blocks differ
    data_fc_ident id2;
    CHECK(data_fc_ident_init(&id2, vis2, &m.cfg, -2, AG_PREC_FP32) == 0, "%s", err_get());
    data_fc_ident id1;
    CHECK(data_fc_ident_init(&id1, vis, &m.cfg, -2, AG_PREC_FP32) == 0, "%s", err_get());
    CHECK(strcmp(id1.model_hash, id2.model_hash) != 0, "seed 0 and seed 4 weights hash alike: %s", id1.model_hash);
    fc = data_fc_open(cache, &id2);
    CHECK(!fc && strstr(err_get(), "'vision_model_hash'") && strstr(err_get(), id2.model_hash) &&
              strstr(err_get(), id1.model_hash) && strstr(err_get(), "lorac prepare"),
          "other model: %s", err_get());
    data_fc_close(fc);

    // other preprocessing
    data_fc_ident id3 = id1;
    id3.image_mean[1] = 0.45f;
    fc = data_fc_open(cache, &id3);
    CHECK(!fc && strstr(err_get(), "'image_mean'") && strstr(err_get(), "lorac prepare"), "other mean: %s", err_get());
    data_fc_close(fc);

    // the one-call form
    fc = data_fc_open_for(cache, vis, -1, AG_PREC_FP32);
    CHECK(!fc && strstr(err_get(), "expected -1, found -2"), "open_for other layer: %s", err_get());
    fc = data_fc_open_for(cache, vis2, -2, AG_PREC_FP32);
    CHECK(!fc && strstr(err_get(), "'vision_model_hash'"), "open_for other model: %s", err_get());
    fc = data_fc_open_for(cache, vis, -2, AG_PREC_FP32);
    CHECK(fc != NULL, "open_for: %s", err_get());
    if (fc) {
        const char *two[] = {"images/train_00003.png", "images/train_00009.png", "images/gone.png"};
        size_t rows = (size_t)m.cfg.num_patches * m.cfg.hidden_size;
        float *o = malloc(sizeof(float) * rows * 3), *r = malloc(sizeof(float) * rows);
        int failed = 7;
        CHECK(data_fc_read_many(fc, two, 2, o, &failed) == 0 && failed == -1, "read_many: %s", err_get());
        CHECK(data_fc_read_row(fc, 9, r) == 0 && !memcmp(r, o + rows, rows * sizeof(float)), "read_many row 2");
        CHECK(data_fc_read_many(fc, two, 3, o, &failed) != 0 && failed == 2 && strstr(err_get(), "gone.png"),
              "read_many missing: %d %s", failed, err_get());
        free(o);
        free(r);
    }
    data_fc_close(fc);

    // no expectations: opens
    fc = data_fc_open(cache, NULL);
    CHECK(fc != NULL, "open without ident: %s", err_get());
    data_fc_close(fc);

    // missing file
    char p[800];
    path_of(p, sizeof p, "absent.h5");
    fc = data_fc_open(p, &id1);
    CHECK(!fc && strstr(err_get(), p) && strstr(err_get(), "not found"), "absent: %s", err_get());
}

static int copy_prefix(const char *src, const char *dst, long keep) {
    size_t n;
    char *b = file_read_all(src, &n);
    if (!b) return -1;
    if (keep >= 0 && (size_t)keep < n) n = (size_t)keep;
    int rc = file_write_atomic(dst, b, n);
    free(b);
    return rc;
}

static void test_corrupt(void) {
    if (!ready || !file_exists(cache)) return;
    data_fc_ident id;
    CHECK(data_fc_ident_init(&id, vis, &m.cfg, -2, AG_PREC_FP32) == 0, "%s", err_get());
    char p[800];
    path_of(p, sizeof p, "garbage.h5");
    CHECK(file_write_atomic(p, "this is not hdf5 at all, just text\n", 35) == 0, "%s", err_get());
    data_fc *fc = data_fc_open(p, &id);
    CHECK(!fc && strstr(err_get(), p) && strstr(err_get(), "not an HDF5 file"), "garbage: %s", err_get());
    data_fc_close(fc);

    // truncated: the superblock survives, the rest is gone
    size_t full;
    char *b = file_read_all(cache, &full);
    free(b);
    long cuts[] = {100, 2000, (long)full / 2, (long)full - 64};
    for (int k = 0; k < 4; k++) {
        CHECK(copy_prefix(cache, p, cuts[k]) == 0, "%s", err_get());
        fc = data_fc_open(p, &id);
        if (fc) {   // structure readable: reading every row must fail cleanly or succeed
            float *out = malloc(sizeof(float) * data_fc_patches(fc) * data_fc_hidden(fc));
            int bad = 0;
            for (int64_t i = 0; i < data_fc_count(fc); i++) bad |= data_fc_read_row(fc, i, out) != 0;
            CHECK(bad && strstr(err_get(), p), "truncated at %ld: every read succeeded (%s)", cuts[k], err_get());
            free(out);
            data_fc_close(fc);
        } else {
            CHECK(strstr(err_get(), p) != NULL, "truncated at %ld: %s", cuts[k], err_get());
        }
    }
    // a valid HDF5 file of another kind (features missing)
    data_fc_writer *w = data_fc_writer_open(p, &id, NULL);
    CHECK(w != NULL, "%s", err_get());
    CHECK(data_fc_writer_commit(w) == 0, "%s", err_get());   // empty cache: valid
    fc = data_fc_open(p, &id);
    CHECK(fc && data_fc_count(fc) == 0, "empty cache: %s", err_get());
    data_fc_close(fc);
}

static void test_writer(void) {
    if (!ready) return;
    data_fc_ident id;
    CHECK(data_fc_ident_init(&id, vis, &m.cfg, -2, AG_PREC_FP32) == 0, "%s", err_get());
    char p[800];
    path_of(p, sizeof p, "w.h5");
    data_fc_writer *w = data_fc_writer_open(p, &id, "x.jsonl");
    CHECK(w != NULL, "%s", err_get());
    if (!w) return;
    size_t rows = (size_t)id.num_patches * id.hidden_size;
    float *f = calloc(rows, sizeof(float));
    for (size_t i = 0; i < rows; i++) f[i] = (float)i * 0.5f - 3;
    CHECK(data_fc_writer_add(w, "a.png", f) == 0, "%s", err_get());
    CHECK(data_fc_writer_has(w, "a.png") && !data_fc_writer_has(w, "b.png"), "has");
    CHECK(data_fc_writer_add(w, "a.png", f) != 0 && strstr(err_get(), "twice"), "duplicate: %s", err_get());
    CHECK(!file_exists(p), "the output exists before commit");
    char tmpp[900];
    snprintf(tmpp, sizeof tmpp, "%s", data_fc_writer_tmp_path(w));
    data_fc_writer_abort(w);
    CHECK(!file_exists(p) && !file_exists(tmpp), "abort left a file");
    // UTF-8 names, exact values
    w = data_fc_writer_open(p, &id, NULL);
    CHECK(w && data_fc_writer_add(w, "bilder/schöne ö.png", f) == 0 && data_fc_writer_commit(w) == 0, "%s", err_get());
    data_fc *fc = data_fc_open(p, &id);
    CHECK(fc != NULL, "%s", err_get());
    if (fc) {
        float *g = calloc(rows, sizeof(float));
        CHECK(data_fc_read(fc, "bilder/schöne ö.png", g) == 0 && !memcmp(f, g, rows * sizeof(float)), "values: %s",
              err_get());
        free(g);
        data_fc_close(fc);
    }
    // a flipped byte inside the stored features fails the read (Fletcher-32), naming the file
    {
        size_t n;
        char *b = file_read_all(p, &n);
        size_t at = 0;
        for (size_t i = 0; b && i + 16 <= n && !at; i++) if (!memcmp(b + i, f + 4, 16)) at = i;
        CHECK(at > 0, "feature bytes not found in the file");
        if (at) {
            b[at + 1] ^= 0x40;
            char q[800];
            path_of(q, sizeof q, "flipped.h5");
            CHECK(file_write_atomic(q, b, n) == 0, "%s", err_get());
            fc = data_fc_open(q, &id);
            CHECK(fc != NULL, "%s", err_get());
            float *g = calloc(rows, sizeof(float));
            CHECK(fc && data_fc_read(fc, "bilder/schöne ö.png", g) != 0 && strstr(err_get(), q), "flipped byte read: %s",
                  fc ? err_get() : "");
            free(g);
            data_fc_close(fc);
        }
        free(b);
    }
    // output folder missing
    path_of(p, sizeof p, "no/such/dir/x.h5");
    w = data_fc_writer_open(p, &id, NULL);
    CHECK(!w && strstr(err_get(), "does not exist"), "missing folder: %s", err_get());
    free(f);
}

// The precision the features were computed in is part of the identity: an fp32 cache is
// refused by a bf16 run and a bf16 cache by an fp32 run, naming the file and both
// precisions; a cache without the attribute (older lorac) is refused too.
static void test_precision(void) {
    if (!ready || !file_exists(cache)) return;   // cache: made by test_round_trip in fp32
    data_fc_ident id;
    CHECK(data_fc_ident_init(&id, vis, &m.cfg, -2, AG_PREC_BF16) == 0, "%s", err_get());
    CHECK(!strcmp(id.precision, "bf16"), "ident precision '%s'", id.precision);
    data_fc *fc = data_fc_open(cache, &id);
#define NAMES_BOTH(file, want, found)                                                                            \
    (strstr(err_get(), file) && strstr(err_get(), "'precision'") &&                                             \
     strstr(err_get(), "expected '" want "'") && strstr(err_get(), "found '" found "'") &&                       \
     strstr(err_get(), "lorac prepare"))
    CHECK(!fc && NAMES_BOTH(cache, "bf16", "fp32"), "fp32 cache in a bf16 run: %s", err_get());
    data_fc_close(fc);
    fc = data_fc_open_for(cache, vis, -2, AG_PREC_BF16);
    CHECK(!fc && NAMES_BOTH(cache, "bf16", "fp32"), "open_for bf16: %s", err_get());
    data_fc_close(fc);
    fc = data_fc_open_for(cache, NULL, -2, AG_PREC_BF16);   // no vision folder: precision still checked
    CHECK(!fc && NAMES_BOTH(cache, "bf16", "fp32"), "open_for bf16 without a vision folder: %s", err_get());
    data_fc_close(fc);
    fc = data_fc_open(cache, NULL);
    CHECK(fc && data_fc_check_precision(fc, AG_PREC_FP32) == 0, "fp32 check of an fp32 cache: %s", err_get());
    CHECK(fc && data_fc_check_precision(fc, AG_PREC_BF16) != 0 && NAMES_BOTH(cache, "bf16", "fp32"), "check: %s",
          err_get());
    data_fc_close(fc);

    // a cache prepared by a bf16 tower: refused by fp32, accepted by bf16
    siglip_model m16;
    CHECK(siglip_load_precision(vis, &m16, AG_PREC_BF16) == 0, "%s", err_get());
    char p16[800], img[800];
    path_of(p16, sizeof p16, "feat16.h5");
    snprintf(img, sizeof img, "%s/images/train_00000.png", data);
    const char *refs[] = {"images/train_00000.png"}, *paths[] = {img};
    CHECK(data_fc_build(p16, vis, &m16, -2, refs, paths, 1, 1, 0, NULL, NULL, NULL) == 0, "bf16 build: %s",
          err_get());
    siglip_free(&m16);
    fc = data_fc_open_for(p16, vis, -2, AG_PREC_FP32);
    CHECK(!fc && NAMES_BOTH(p16, "fp32", "bf16"), "bf16 cache in an fp32 run: %s", err_get());
    data_fc_close(fc);
    fc = data_fc_open_for(p16, vis, -2, AG_PREC_BF16);
    CHECK(fc != NULL && !strcmp(data_fc_get_ident(fc)->precision, "bf16"), "bf16 cache in a bf16 run: %s",
          err_get());
    data_fc_close(fc);
#undef NAMES_BOTH

    // no 'precision' attribute (a cache from before it was recorded): refused, not guessed
    hid_t f = H5Fopen(p16, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0 && H5Adelete(f, "precision") >= 0, "deleting the attribute");
    if (f >= 0) H5Fclose(f);
    fc = data_fc_open(p16, NULL);
    CHECK(!fc && strstr(err_get(), p16) && strstr(err_get(), "'precision' is missing") &&
              strstr(err_get(), "lorac prepare"),
          "no precision attribute: %s", err_get());
    data_fc_close(fc);
}

// one ref naming two files
static void test_build_conflict(void) {
    if (!ready) return;
    char p1[800], p2[800], out[800];
    snprintf(p1, sizeof p1, "%s/images/train_00000.png", data);
    snprintf(p2, sizeof p2, "%s/images/train_00001.png", data);
    path_of(out, sizeof out, "conflict.h5");
    const char *refs[] = {"x.png", "x.png"}, *paths[] = {p1, p2};
    CHECK(data_fc_build(out, vis, &m, -2, refs, paths, 2, 8, 0, NULL, NULL, NULL) != 0 &&
              strstr(err_get(), "x.png") && strstr(err_get(), "two different files"),
          "conflict: %s", err_get());
    CHECK(!file_exists(out), "conflict wrote a file");
    const char *bad[] = {"missing.png"}, *badp[] = {"/nonexistent/missing.png"};
    CHECK(data_fc_build(out, vis, &m, -2, bad, badp, 1, 8, 0, NULL, NULL, NULL) != 0 &&
              strstr(err_get(), "/nonexistent/missing.png"),
          "bad image: %s", err_get());
    CHECK(!file_exists(out), "bad image wrote a file");
    CHECK(data_fc_build(out, vis, &m, 7, refs, paths, 1, 8, 0, NULL, NULL, NULL) != 0 &&
              strstr(err_get(), "select_layer"),
          "bad layer: %s", err_get());
}

static void test_prefetch(void) {
    if (!ready) return;
    int S = 24, n = NIMG;
    char *paths[NIMG];
    for (int i = 0; i < n; i++) {
        char p[800];
        snprintf(p, sizeof p, "%s/images/train_%05d.png", data, i);
        paths[i] = strdup(p);
    }
    size_t per = (size_t)3 * S * S;
    float *want = malloc(sizeof(float) * per * n);
    for (int i = 0; i < n; i++) CHECK(img_preprocess(paths[i], S, NULL, 0, want + per * i) == 0, "%s", err_get());
    data_prefetch *pf = data_prefetch_new(S, NULL, 0, 3);
    CHECK(pf != NULL, "%s", err_get());
    if (!pf) return;
    int i0 = 0, same = 1;
    CHECK(data_prefetch_submit(pf, (const char *const *)paths, 3) == 0, "%s", err_get());
    CHECK(data_prefetch_submit(pf, (const char *const *)paths, 3) != 0 && strstr(err_get(), "pending"), "double submit");
    while (i0 < n) {
        const float *pix;
        int B = data_prefetch_wait(pf, &pix);
        CHECK(B == (n - i0 < 3 ? n - i0 : 3), "batch at %d: %d (%s)", i0, B, err_get());
        if (B <= 0) break;
        int i1 = i0 + B;
        if (i1 < n) CHECK(data_prefetch_submit(pf, (const char *const *)paths + i1, n - i1 < 3 ? n - i1 : 3) == 0, "%s", err_get());
        same &= !memcmp(pix, want + per * i0, per * B * sizeof(float));
        i0 = i1;
    }
    CHECK(same, "prefetched pixels differ from img_preprocess");
    const float *pix;
    CHECK(data_prefetch_wait(pf, &pix) < 0 && strstr(err_get(), "no batch pending"), "wait with nothing pending");
    const char *bad[] = {paths[0], "/nonexistent/x.png"};
    CHECK(data_prefetch_submit(pf, bad, 2) == 0, "%s", err_get());
    CHECK(data_prefetch_wait(pf, &pix) < 0 && strstr(err_get(), "/nonexistent/x.png"), "bad image: %s", err_get());
    CHECK(data_prefetch_submit(pf, (const char *const *)paths, 4) != 0, "over max_batch accepted");
    // shutdown with a batch in flight
    CHECK(data_prefetch_submit(pf, (const char *const *)paths, 3) == 0, "%s", err_get());
    data_prefetch_free(pf);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(want);
}

int main(void) {
    tmp = test_tmpdir("featcache");
    RUN(setup);
    RUN(test_round_trip);
    RUN(test_refusals);
    RUN(test_corrupt);
    RUN(test_writer);
    RUN(test_precision);
    RUN(test_build_conflict);
    RUN(test_prefetch);
    if (ready) siglip_free(&m);
    return test_summary();
}
