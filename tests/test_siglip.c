// test_siglip.c — the SigLIP vision tower and the projector against PyTorch fixtures
// (tests/gen_siglip.py): every hidden state, batching, folder variants and errors; the
// projector's forward/backward, init, save/load round trip and load errors.
#include <omp.h>
#include <unistd.h>

#include "ag.h"
#include "cli.h"
#include "fixture.h"
#include "projector.h"
#include "safetensors.h"
#include "siglip.h"
#include "test.h"

#define TINY "tests/fixtures/tiny-siglip"
#define REF "tests/fixtures/siglip_ref.safetensors"
#define PREF "tests/fixtures/projector_ref.safetensors"
#define TOL 1e-4

static void write_text(const char *dir, const char *name, const char *text) {
    char *p = path_join(dir, name);
    if (file_write_atomic(p, text, strlen(text)) != 0) test_fail("cannot write %s", p);
    free(p);
}

// --- SigLIP

static void test_hidden_states(void) {
    siglip_model m;
    int rc = siglip_load(TINY, &m);
    CHECK(rc == 0, "load: %s", err_get());
    if (rc) return;
    fixture *fx = fixture_load(REF);
    if (!fx) { CHECK(0, "fixture"); siglip_free(&m); return; }
    int L = m.cfg.num_layers, P = m.cfg.num_patches, C = m.cfg.hidden_size;
    CHECK(L == 3 && P == 16 && C == 32, "config L %d P %d C %d", L, P, C);
    CHECK(fabsf(m.cfg.layer_norm_eps - 1e-5f) < 1e-9f, "eps %g", m.cfg.layer_norm_eps);
    long n;
    const float *pix = fixture_f32(fx, "pixels", &n);
    ag_ctx c;
    ag_ctx_init(&c, siglip_arena_bytes(&m, 2));
    float *out = malloc(sizeof(float) * 2 * P * C);
    // select_layer -> reference tensor name
    struct { int sel; char ref[32]; } cases[16];
    int nc = 0;
    for (int i = 0; i <= L; i++) {
        cases[nc].sel = i;
        snprintf(cases[nc++].ref, 32, "hidden_%d", i);
    }
    cases[nc].sel = -1, snprintf(cases[nc++].ref, 32, "last_hidden_state");
    for (int s = -2; s >= -(L + 1); s--) cases[nc].sel = s, snprintf(cases[nc++].ref, 32, "hidden_%d", L + 1 + s);
    double worst = 0;
    for (int k = 0; k < nc; k++) {
        const float *ref = fixture_f32(fx, cases[k].ref, &n);
        if (!ref) continue;
        CHECK(n == 2L * P * C, "%s numel %ld", cases[k].ref, n);
        for (long i = 0; i < n; i++) out[i] = NAN;
        rc = siglip_features(&c, &m, pix, 2, cases[k].sel, out);
        CHECK(rc == 0, "select_layer %d: %s", cases[k].sel, err_get());
        double e = max_rel_err(out, ref, n, 1e-6);
        if (e > worst) worst = e;
        CHECK(e <= TOL, "select_layer %d vs %s: rel err %.3g", cases[k].sel, cases[k].ref, e);
        CHECK(c.arena.used == 0, "arena left at %zu bytes", c.arena.used);
        CHECK(c.nnodes == 0 && c.grad_enabled == 1, "tape %d nodes, grad %d", c.nnodes, c.grad_enabled);
    }
    if (getenv("TEST_VERBOSE")) printf("siglip hidden states: worst rel err %.3g\n", worst);
    // the arena estimate is an upper bound of what the forward used
    CHECK(c.arena.high <= siglip_arena_bytes(&m, 2), "arena high %zu > estimate %zu", c.arena.high,
          siglip_arena_bytes(&m, 2));
    // out-of-range select_layer
    CHECK(siglip_features(&c, &m, pix, 2, L + 1, out) != 0 && strstr(err_get(), "select_layer"), "L+1: %s",
          err_get());
    CHECK(siglip_features(&c, &m, pix, 2, -(L + 2), out) != 0 && strstr(err_get(), "out of range"), "-(L+2): %s",
          err_get());
    free(out);
    ag_ctx_free(&c);
    fixture_free(fx);
    siglip_free(&m);
}

static void test_batching(void) {
    siglip_model m;
    if (siglip_load(TINY, &m) != 0) { CHECK(0, "load: %s", err_get()); return; }
    fixture *fx = fixture_load(REF);
    long n;
    const float *pix = fixture_f32(fx, "pixels", &n);
    int P = m.cfg.num_patches, C = m.cfg.hidden_size, S = m.cfg.image_size;
    ag_ctx c;
    ag_ctx_init(&c, siglip_arena_bytes(&m, 2));
    float *two = malloc(sizeof(float) * 2 * P * C), *one = malloc(sizeof(float) * 2 * P * C);
    int sels[2] = {-2, -1};
    for (int k = 0; k < 2; k++) {
        CHECK(siglip_features(&c, &m, pix, 2, sels[k], two) == 0, "%s", err_get());
        CHECK(siglip_features(&c, &m, pix, 1, sels[k], one) == 0, "%s", err_get());
        CHECK(siglip_features(&c, &m, pix + 3 * S * S, 1, sels[k], one + P * C) == 0, "%s", err_get());
        // equal up to rounding (BLAS blocking depends on the row count)
        double e = max_rel_err(one, two, 2L * P * C, 1e-6);
        CHECK(e <= 1e-5, "select %d: batch of 2 vs two batches of 1: rel err %.3g", sels[k], e);
    }
    // a too-small arena is an error naming the need, never a crash
    ag_ctx small;
    ag_ctx_init(&small, 4096);
    CHECK(siglip_features(&small, &m, pix, 2, -1, two) != 0 && strstr(err_get(), "arena"), "small arena: %s",
          err_get());
    CHECK(small.arena.used == 0, "small arena left at %zu", small.arena.used);
    ag_ctx_free(&small);
    free(two);
    free(one);
    ag_ctx_free(&c);
    fixture_free(fx);
    siglip_free(&m);
}

// The features are the same bits at 1 and 2 threads, in fp32 and bf16 (every matmul splits
// its output, never its reduction: tests/test_mm_linear.c checks that on larger products).
static void test_threads(void) {
    for (int bf = 0; bf < 2; bf++) {
        siglip_model m;
        if (siglip_load_precision(TINY, &m, bf ? AG_PREC_BF16 : AG_PREC_FP32) != 0) {
            CHECK(0, "load: %s", err_get());
            return;
        }
        int B = 8, S = m.cfg.image_size;
        int64_t n = (int64_t)B * m.cfg.num_patches * m.cfg.hidden_size;
        float *pix = malloc(sizeof(float) * B * 3 * S * S), *one = malloc(sizeof(float) * n),
              *two = malloc(sizeof(float) * n);
        uint64_t s = 5;
        for (long i = 0; i < (long)B * 3 * S * S; i++) pix[i] = 2 * ag_rng_uniform(&s) - 1;
        ag_ctx c;
        ag_ctx_init(&c, siglip_arena_bytes(&m, B));
        int nt = omp_get_max_threads();
        omp_set_num_threads(1);
        CHECK(siglip_features(&c, &m, pix, B, -1, one) == 0, "%s", err_get());
        omp_set_num_threads(2);
        CHECK(siglip_features(&c, &m, pix, B, -1, two) == 0, "%s", err_get());
        omp_set_num_threads(nt);
        CHECK(!memcmp(one, two, sizeof(float) * n), "%s: features at 1 and 2 threads differ", bf ? "bf16" : "fp32");
        ag_ctx_free(&c);
        free(pix), free(one), free(two);
        siglip_free(&m);
    }
}

// The tiny weights under another config.json: features `sel` must match fixture `ref`.
static void check_variant(const char *name, const char *config, int sel, const char *ref_name) {
    const char *dir = test_tmpdir(name);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp " TINY "/model.safetensors '%s'/", dir);
    CHECK(system(cmd) == 0, "cp");
    write_text(dir, "config.json", config);
    siglip_model m;
    int rc = siglip_load(dir, &m);
    CHECK(rc == 0, "%s: load: %s", name, err_get());
    if (rc) return;
    fixture *fx = fixture_load(REF);
    long n;
    const float *pix = fixture_f32(fx, "pixels", &n);
    const float *ref = fixture_f32(fx, ref_name, &n);
    ag_ctx c;
    ag_ctx_init(&c, siglip_arena_bytes(&m, 2));
    float *out = malloc(sizeof(float) * n);
    CHECK(siglip_features(&c, &m, pix, 2, sel, out) == 0, "%s", err_get());
    double e = max_rel_err(out, ref, n, 1e-6);
    // tighter than TOL: tanh vs exact GELU differ by 2.5e-4 here, and we reach ~1e-6
    CHECK(e <= 2e-5, "%s: rel err %.3g", name, e);
    free(out);
    ag_ctx_free(&c);
    fixture_free(fx);
    siglip_free(&m);
}

// A full SiglipModel config (vision_config nested) over the same weights.
static void test_full_siglip_config(void) {
    check_variant("siglip_full",
                  "{\"architectures\": [\"SiglipModel\"], \"model_type\": \"siglip\",\n"
                  " \"text_config\": {\"hidden_size\": 32},\n"
                  " \"vision_config\": {\"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 3,\n"
                  "   \"num_attention_heads\": 4, \"image_size\": 32, \"patch_size\": 8, \"layer_norm_eps\": 1e-5}}\n",
                  -2, "hidden_2");
}

// hidden_act "gelu" is the exact (erf) GELU
static void test_exact_gelu_config(void) {
    check_variant("siglip_gelu",
                  "{\"model_type\": \"siglip_vision_model\", \"hidden_size\": 32, \"intermediate_size\": 64,\n"
                  " \"num_hidden_layers\": 3, \"num_attention_heads\": 4, \"image_size\": 32, \"patch_size\": 8,\n"
                  " \"layer_norm_eps\": 1e-5, \"hidden_act\": \"gelu\"}\n",
                  -1, "gelu.last_hidden_state");
}

// Writes DIR with the tiny config and the tiny weights, minus `drop` and with `reshape`
// given a wrong shape.
static void broken_folder(const char *dir, const char *drop, const char *reshape) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp " TINY "/config.json '%s'/", dir);
    CHECK(system(cmd) == 0, "cp");
    st_model *st = st_open(TINY);
    st_writer *w = st_writer_new();
    for (int i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_get(st, i);
        if (drop && !strcmp(t->name, drop)) continue;
        int64_t shape[ST_MAXDIM];
        memcpy(shape, t->shape, sizeof shape);
        int ndim = t->ndim;
        if (reshape && !strcmp(t->name, reshape)) {   // same bytes, transposed-looking shape
            int64_t a = shape[0];
            shape[0] = shape[1], shape[1] = a;
            if (shape[0] == shape[1]) shape[0] /= 2, shape[1] *= 2;
        }
        st_writer_add(w, t->name, t->dtype, ndim, shape, t->data);
    }
    char *p = path_join(dir, "model.safetensors");
    CHECK(st_writer_write(w, p) == 0, "write: %s", err_get());
    free(p);
    st_writer_free(w);
    st_close(st);
}

static void test_bad_folders(void) {
    siglip_model m;
    const char *dir = test_tmpdir("siglip_missing");
    broken_folder(dir, "vision_model.encoder.layers.1.mlp.fc2.bias", NULL);
    CHECK(siglip_load(dir, &m) != 0, "missing tensor loaded");
    CHECK(strstr(err_get(), "vision_model.encoder.layers.1.mlp.fc2.bias") && strstr(err_get(), dir),
          "message: %s", err_get());
    CHECK(m.layers == NULL && m.nbufs == 0, "not cleaned up");

    dir = test_tmpdir("siglip_shape");
    broken_folder(dir, NULL, "vision_model.encoder.layers.2.mlp.fc1.weight");
    CHECK(siglip_load(dir, &m) != 0, "wrong shape loaded");
    CHECK(strstr(err_get(), "vision_model.encoder.layers.2.mlp.fc1.weight") && strstr(err_get(), "[64, 32]") &&
              strstr(err_get(), "[32, 64]"),
          "message: %s", err_get());

    dir = test_tmpdir("siglip_nocfg");
    CHECK(siglip_load(dir, &m) != 0 && strstr(err_get(), "config.json"), "no config: %s", err_get());
    CHECK(siglip_load("tests/fixtures/no-such-folder", &m) != 0 && strstr(err_get(), "no-such-folder"),
          "no folder: %s", err_get());
}

// `lorac make-tiny --kind siglip` (BF16 weights): loads, runs, batches consistently.
static void test_make_tiny_folder(void) {
    const char *dir = test_tmpdir("siglip_make_tiny");
    char out[600];
    snprintf(out, sizeof out, "%s/m", dir);
    char *argv[] = {"make-tiny", "--out", out, "--kind", "siglip", "--seed", "3", NULL};
    int rc = cmd_make_tiny(7, argv);
    CHECK(rc == 0, "make-tiny: %s", err_get());
    if (rc) return;
    siglip_model m;
    rc = siglip_load(out, &m);
    CHECK(rc == 0, "load: %s", err_get());
    if (rc) return;
    int B = 3, S = m.cfg.image_size;
    int64_t P = m.cfg.num_patches, C = m.cfg.hidden_size;
    float *pix = malloc(sizeof(float) * B * 3 * S * S);
    uint64_t s = 1;
    for (long i = 0; i < (long)B * 3 * S * S; i++) pix[i] = 2 * ag_rng_uniform(&s) - 1;
    float *a = malloc(sizeof(float) * B * P * C), *b = malloc(sizeof(float) * B * P * C);
    ag_ctx c;
    ag_ctx_init(&c, siglip_arena_bytes(&m, B));
    CHECK(siglip_features(&c, &m, pix, B, -2, a) == 0, "%s", err_get());
    for (int i = 0; i < B; i++)
        CHECK(siglip_features(&c, &m, pix + (long)i * 3 * S * S, 1, -2, b + i * P * C) == 0, "%s", err_get());
    int finite = 1;
    for (long i = 0; i < B * P * C; i++) finite &= isfinite(a[i]);
    CHECK(finite, "non-finite features");
    double e = max_rel_err(a, b, B * P * C, 1e-6);
    CHECK(e <= 1e-5, "batch of %d vs batches of 1: rel err %.3g", B, e);
    ag_ctx_free(&c);
    free(pix);
    free(a);
    free(b);
    siglip_free(&m);
}

// --- projector

static void load_ref_weights(projector *p, fixture *fx, const char *kind) {
    for (int i = 0; i < p->params.n; i++) {
        ag_tensor *t = p->params.t[i];
        char n[128];
        snprintf(n, sizeof n, "%s.%s", kind, t->name);
        long cnt;
        const float *d = fixture_f32(fx, n, &cnt);
        CHECK(d && cnt == t->numel, "%s", n);
        if (d && cnt == t->numel) memcpy(t->data, d, sizeof(float) * cnt);
    }
}

static void test_projector_vs_torch(void) {
    fixture *fx = fixture_load(PREF);
    if (!fx) { CHECK(0, "fixture"); return; }
    int Cv = (int)fixture_meta(fx, "vision_hidden", 0), Ct = (int)fixture_meta(fx, "text_hidden", 0);
    long N = (long)fixture_meta(fx, "rows", 0);
    const char *kinds[2] = {"linear", "mlp2x_gelu"};
    for (int k = 0; k < 2; k++) {
        projector p;
        CHECK(projector_create(&p, kinds[k], Cv, Ct, 7) == 0, "%s", err_get());
        load_ref_weights(&p, fx, kinds[k]);
        char n[128];
        long cnt;
        // features as a trainable leaf too, so dx is checked against torch
        ag_params fp = {0};
        int64_t fs[2] = {N, Cv};
        ag_tensor *feats = ag_params_add(&fp, "features", 2, fs);
        ag_params_alloc(&fp);
        snprintf(n, sizeof n, "%s.features", kinds[k]);
        memcpy(feats->data, fixture_f32(fx, n, &cnt), sizeof(float) * N * Cv);
        ag_ctx c;
        ag_ctx_init(&c, 1 << 20);
        ag_tensor *y = projector_forward(&c, &p, feats);
        CHECK(y && y->shape[0] == N && y->shape[1] == Ct, "forward: %s", err_get());
        if (!y) { ag_ctx_free(&c); ag_params_free(&fp); projector_free(&p); continue; }
        snprintf(n, sizeof n, "%s.out", kinds[k]);
        double e = max_rel_err(y->data, fixture_f32(fx, n, &cnt), N * Ct, 1e-6);
        CHECK(e <= TOL, "%s out rel err %.3g", kinds[k], e);
        snprintf(n, sizeof n, "%s.dout", kinds[k]);
        CHECK(ag_backward_from(&c, y, fixture_f32(fx, n, &cnt)) == 0, "backward: %s", err_get());
        for (int i = 0; i < p.params.n; i++) {
            ag_tensor *t = p.params.t[i];
            snprintf(n, sizeof n, "%s.d.%s", kinds[k], t->name);
            const float *ref = fixture_f32(fx, n, &cnt);
            if (!ref) continue;
            e = max_rel_err(t->grad, ref, t->numel, 1e-6);
            CHECK(e <= TOL, "%s d%s rel err %.3g", kinds[k], t->name, e);
            if (getenv("TEST_VERBOSE")) printf("%s d%s rel err %.3g\n", kinds[k], t->name, e);
        }
        {   // the gradients as written for train.dump_grads
            const char *dir = test_tmpdir("projector_grads");
            char *gp = path_join(dir, "grads.safetensors");
            CHECK(projector_save_grads(&p, gp) == 0, "save grads: %s", err_get());
            st_model *st = st_open(gp);
            CHECK(st && st_count(st) == p.params.n, "grads file: %s", err_get());
            for (int i = 0; st && i < p.params.n; i++) {
                ag_tensor *t = p.params.t[i];
                const st_tensor *g = st_find(st, t->name);
                CHECK(g && g->dtype == ST_F32 && st_numel(g) == t->numel &&
                          memcmp(g->data, t->grad, sizeof(float) * t->numel) == 0,
                      "grad %s", t->name);
            }
            st_close(st);
            free(gp);
        }
        snprintf(n, sizeof n, "%s.dfeatures", kinds[k]);
        e = max_rel_err(feats->grad, fixture_f32(fx, n, &cnt), N * Cv, 1e-6);
        CHECK(e <= TOL, "%s dfeatures rel err %.3g", kinds[k], e);
        // wrong feature width
        ag_tensor bad = ag_wrap2(feats->data, N, Cv - 1, "bad");
        CHECK(projector_forward(&c, &p, &bad) == NULL && strstr(err_get(), "projector"), "bad width: %s",
              err_get());
        ag_ctx_free(&c);
        ag_params_free(&fp);
        projector_free(&p);
    }
    fixture_free(fx);
}

static void test_projector_init(void) {
    projector p, q;
    int Cv = 256, Ct = 400;
    CHECK(projector_create(&p, "mlp2x_gelu", Cv, Ct, 42) == 0, "%s", err_get());
    CHECK(p.params.n == 4 && !strcmp(p.params.t[0]->name, "model.mm_projector.0.weight") &&
              !strcmp(p.params.t[3]->name, "model.mm_projector.2.bias"),
          "names");
    CHECK(p.params.total == (int64_t)Ct * Cv + Ct + (int64_t)Ct * Ct + Ct, "total %lld", (long long)p.params.total);
    for (int i = 0; i < 4; i++) {
        ag_tensor *t = p.params.t[i];
        double bound = 1.0 / sqrt(i < 2 ? Cv : Ct), mn = 1e9, mx = -1e9, s = 0, s2 = 0;
        for (int64_t j = 0; j < t->numel; j++) {
            double v = t->data[j];
            mn = v < mn ? v : mn, mx = v > mx ? v : mx, s += v, s2 += v * v;
        }
        double mean = s / t->numel, var = s2 / t->numel - mean * mean, want = bound * bound / 3;
        CHECK(mn >= -bound && mx <= bound, "%s: range [%g, %g] outside ±%g", t->name, mn, mx, bound);
        CHECK(t->numel < 1000 || (mn < -0.99 * bound && mx > 0.99 * bound), "%s: range [%g, %g] does not fill ±%g",
              t->name, mn, mx, bound);
        double tol = 5.0 / sqrt((double)t->numel);   // generous sampling tolerance
        CHECK(fabs(mean) < bound * tol, "%s: mean %g", t->name, mean);
        CHECK(fabs(var / want - 1) < 2 * tol + 0.01, "%s: var %g, want %g", t->name, var, want);
    }
    CHECK(projector_create(&q, "mlp2x_gelu", Cv, Ct, 42) == 0, "%s", err_get());
    CHECK(memcmp(p.params.data, q.params.data, sizeof(float) * p.params.total) == 0, "same seed differs");
    projector_free(&q);
    CHECK(projector_create(&q, "mlp2x_gelu", Cv, Ct, 43) == 0, "%s", err_get());
    CHECK(memcmp(p.params.data, q.params.data, sizeof(float) * p.params.total) != 0, "seeds 42/43 equal");
    projector_free(&q);
    projector_free(&p);
    CHECK(projector_create(&p, "linear", 8, 4, 1) == 0 && p.params.n == 2 && p.w2 == NULL &&
              !strcmp(p.params.t[0]->name, "model.mm_projector.weight"),
          "linear: %s", err_get());
    projector_free(&p);
    CHECK(projector_create(&p, "mlp3x_gelu", 8, 4, 1) != 0 && strstr(err_get(), "mlp3x_gelu"), "type: %s",
          err_get());
    CHECK(projector_create(&p, "linear", 0, 4, 1) != 0, "zero size accepted");
}

static void test_projector_roundtrip(void) {
    const char *kinds[2] = {"linear", "mlp2x_gelu"};
    for (int k = 0; k < 2; k++) {
        const char *dir = test_tmpdir("projector_rt");
        projector p, q;
        CHECK(projector_create(&p, kinds[k], 24, 40, 5) == 0, "%s", err_get());
        CHECK(projector_save(&p, dir, -2, 196) == 0, "save: %s", err_get());
        int rc = projector_load(&q, dir);
        CHECK(rc == 0, "load: %s", err_get());
        if (rc == 0) {
            CHECK(q.type == p.type && q.vision_hidden == 24 && q.text_hidden == 40 && q.select_layer == -2 &&
                      q.num_patches == 196,
                  "config fields");
            CHECK(q.params.total == p.params.total &&
                      memcmp(p.params.data, q.params.data, sizeof(float) * p.params.total) == 0,
                  "weights differ");
            for (int i = 0; i < q.params.n; i++)
                CHECK(!strcmp(q.params.t[i]->name, p.params.t[i]->name), "name %d", i);
            projector_free(&q);
        }
        // the safetensors file carries format pt and exactly the LLaVA names, F32
        char *sp = path_join(dir, "projector.safetensors");
        st_model *st = st_open(sp);
        CHECK(st && st_count(st) == p.params.n, "st_open: %s", err_get());
        if (st) {
            CHECK(st_meta(st, "format") && !strcmp(st_meta(st, "format"), "pt"), "format metadata");
            for (int i = 0; i < p.params.n; i++) {
                const st_tensor *t = st_find(st, p.params.t[i]->name);
                CHECK(t && t->dtype == ST_F32, "%s", p.params.t[i]->name);
            }
            st_close(st);
        }
        free(sp);
        char *cp = path_join(dir, "projector_config.json");
        char *txt = file_read_all(cp, NULL);
        CHECK(txt && strstr(txt, kinds[k]) && strstr(txt, "\"num_patches\"") && strstr(txt, "\"select_layer\"") &&
                  strstr(txt, "\"vision_hidden_size\"") && strstr(txt, "\"text_hidden_size\""),
              "config: %s", txt ? txt : "(none)");
        free(txt);
        free(cp);
        projector_free(&p);
    }
}

static void test_projector_load_errors(void) {
    const char *dir = test_tmpdir("projector_err");
    projector p, q;
    CHECK(projector_create(&p, "mlp2x_gelu", 16, 24, 9) == 0, "%s", err_get());
    CHECK(projector_save(&p, dir, -2, 16) == 0, "save: %s", err_get());
    const char *cfg_ok = "{\"projector_type\": \"mlp2x_gelu\", \"select_layer\": -2, \"vision_hidden_size\": 16, "
                         "\"text_hidden_size\": 24, \"num_patches\": 16}";
    struct { const char *cfg, *want1, *want2; } cases[] = {
        // the type disagrees with the tensors
        {"{\"projector_type\": \"linear\", \"select_layer\": -2, \"vision_hidden_size\": 16, "
         "\"text_hidden_size\": 24, \"num_patches\": 16}", "model.mm_projector.weight", "missing"},
        {"{\"projector_type\": \"mlp3x_gelu\", \"select_layer\": -2, \"vision_hidden_size\": 16, "
         "\"text_hidden_size\": 24, \"num_patches\": 16}", "projector_type", "mlp3x_gelu"},
        {"{\"select_layer\": -2, \"vision_hidden_size\": 16, \"text_hidden_size\": 24, \"num_patches\": 16}",
         "projector_type", "missing"},
        // sizes disagree with the tensors' shapes
        {"{\"projector_type\": \"mlp2x_gelu\", \"select_layer\": -2, \"vision_hidden_size\": 32, "
         "\"text_hidden_size\": 24, \"num_patches\": 16}", "model.mm_projector.0.weight", "[24, 16]"},
        {"{\"projector_type\": \"mlp2x_gelu\", \"select_layer\": -2, \"vision_hidden_size\": 16, "
         "\"text_hidden_size\": \"24\", \"num_patches\": 16}", "text_hidden_size", "projector_config.json"},
        {"{\"projector_type\": \"mlp2x_gelu\", \"select_layer\": -2, \"vision_hidden_size\": 16, "
         "\"text_hidden_size\": 24}", "num_patches", "missing"},
        {"not json", "projector_config.json", "JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(dir, "projector_config.json", cases[i].cfg);
        CHECK(projector_load(&q, dir) != 0, "case %zu loaded", i);
        CHECK(strstr(err_get(), cases[i].want1) && strstr(err_get(), cases[i].want2), "case %zu: %s", i, err_get());
        CHECK(q.params.n == 0 && q.params.data == NULL, "case %zu: not cleaned up", i);
    }
    write_text(dir, "projector_config.json", cfg_ok);
    CHECK(projector_load(&q, dir) == 0, "restored config: %s", err_get());
    projector_free(&q);

    // a missing tensor and a stray one, written directly
    char *sp = path_join(dir, "projector.safetensors");
    st_writer *w = st_writer_new();
    for (int i = 0; i < 3; i++) {
        ag_tensor *t = p.params.t[i];
        st_writer_add_f32(w, t->name, ST_F32, t->ndim, t->shape, t->data);
    }
    CHECK(st_writer_write(w, sp) == 0, "%s", err_get());
    st_writer_free(w);
    CHECK(projector_load(&q, dir) != 0 && strstr(err_get(), "model.mm_projector.2.bias") &&
              strstr(err_get(), "projector.safetensors"),
          "missing: %s", err_get());
    w = st_writer_new();
    for (int i = 0; i < 4; i++) {
        ag_tensor *t = p.params.t[i];
        st_writer_add_f32(w, t->name, ST_F32, t->ndim, t->shape, t->data);
    }
    int64_t one = 1;
    st_writer_add_f32(w, "model.mm_projector.4.bias", ST_F32, 1, &one, p.params.data);
    CHECK(st_writer_write(w, sp) == 0, "%s", err_get());
    st_writer_free(w);
    CHECK(projector_load(&q, dir) != 0 && strstr(err_get(), "model.mm_projector.4.bias"), "stray: %s", err_get());
    unlink(sp);
    CHECK(projector_load(&q, dir) != 0 && strstr(err_get(), "projector.safetensors"), "no file: %s", err_get());
    free(sp);
    projector_free(&p);
}

int main(void) {
    RUN(test_hidden_states);
    RUN(test_batching);
    RUN(test_threads);
    RUN(test_full_siglip_config);
    RUN(test_exact_gelu_config);
    RUN(test_bad_folders);
    RUN(test_make_tiny_folder);
    RUN(test_projector_vs_torch);
    RUN(test_projector_init);
    RUN(test_projector_roundtrip);
    RUN(test_projector_load_errors);
    return test_summary();
}
