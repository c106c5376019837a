// test_vision_train.c — projector training against PyTorch (tests/gen_vision_train.py): a
// full step on tiny SigLIP + mlp2x_gelu projector + tiny Llama with image rows spliced into
// a padding-free batch; the loss and the projector gradients (mode projector), and the same
// with LoRA trained together (mode projector+lora); plus a perplexity-with-images check
// against the same loss (every target scored when windows cover whole records).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ag.h"
#include "batch.h"
#include "fixture.h"
#include "generate.h"
#include "llama.h"
#include "lora.h"
#include "projector.h"
#include "siglip.h"
#include "test.h"
#include "train_fixture.h"
#include "vision_ppl.h"

#define FX "tests/fixtures/vision_train_ref.safetensors"

static fixture *fx;
static llama_model model;
static siglip_model sig;

static data_batch fx_batch(void) { return trainfx_vision_batch(fx); }

static int load_params(ag_params *p, const char *prefix) {
    for (int i = 0; i < p->n; i++) {
        char k[256];
        snprintf(k, sizeof k, "%s%s", prefix, p->t[i]->name);
        long n = 0;
        const float *d = fixture_f32(fx, k, &n);
        if (!d || n != p->t[i]->numel) return -1;
        memcpy(p->t[i]->data, d, (size_t)n * sizeof(float));
    }
    return 0;
}

static double check_grads(const ag_params *p, const char *prefix) {
    double worst = 0;
    for (int i = 0; i < p->n; i++) {
        ag_tensor *t = p->t[i];
        char k[256];
        snprintf(k, sizeof k, "%s%s", prefix, t->name);
        const float *g = fixture_f32(fx, k, NULL);
        if (!g) continue;
        double e = max_rel_err(t->grad, g, t->numel, 1e-6);
        if (e > worst) worst = e;
        CHECK(e <= 1e-4, "%s: gradient rel err %.2e", t->name, e);
    }
    return worst;
}

// features from the tower (select_layer -2) vs torch
static float *features(int *rows) {
    int P = sig.cfg.num_patches, C = sig.cfg.hidden_size;
    float *f = xmalloc((size_t)2 * P * C * sizeof(float));
    ag_ctx c;
    ag_ctx_init(&c, siglip_arena_bytes(&sig, 2));
    CHECK(siglip_features(&c, &sig, fixture_f32(fx, "pixels", NULL), 2, -2, f) == 0, "siglip: %s", err_get());
    ag_ctx_free(&c);
    const float *ref = fixture_f32(fx, "features", NULL);
    double e = max_rel_err(f, ref, 2L * P * C, 1e-3);
    CHECK(e <= 1e-4, "features rel err %.2e", e);
    *rows = 2 * P;
    return f;
}

// a feature source over the fixture's two images (record image "0" / "1")
static int fx_features(void *user, const data_record *r, float *out) {
    int P = sig.cfg.num_patches, C = sig.cfg.hidden_size;
    memcpy(out, (const float *)user + (size_t)atoi(r->image) * P * C, (size_t)P * C * sizeof(float));
    return 0;
}

static void test_projector_step(void) {
    int nf;
    float *f = features(&nf);
    projector p;
    CHECK(projector_create(&p, "mlp2x_gelu", 32, 32, 1) == 0, "%s", err_get());
    CHECK(load_params(&p.params, "proj.") == 0, "projector weights from fixture");
    p.num_patches = sig.cfg.num_patches;
    data_batch b = fx_batch();
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 28);
    c.training = 1;
    double loss = 0;
    ag_params_zero_grad(&p.params);
    CHECK(vision_micro_step(&c, &model, NULL, &p, &b, f, NULL, (float)b.n_supervised, &loss) == 0, "step: %s", err_get());
    const float *ref = fixture_f32(fx, "p.loss", NULL);
    CHECK(fabs(loss - ref[0]) <= 1e-4 * fabs(ref[0]), "loss %.7f vs torch %.7f", loss, ref[0]);
    double w = check_grads(&p.params, "p.grad.");
    printf("# projector step: loss %.6f (torch %.6f), worst projector gradient rel err %.2e\n", loss, ref[0], w);

    // perplexity with images: one window per record scores every supervised token once
    data_set ds = {0};
    ds.path = xstrdup("fixture");
    int64_t s0 = 0;
    for (int s = 0; s < b.nseq; s++) {   // rebuild records from the batch rows
        int64_t e = s + 1 < b.nseq ? 0 : b.n;
        for (int64_t i = s0 + 1; !e && i < b.n; i++)
            if (b.kv_begin[i] != b.kv_begin[s0]) e = i;
        data_record r = {0};
        r.image_pos = -1;
        r.ids = xmalloc((size_t)(e - s0) * sizeof(int32_t));
        r.mask = xcalloc((size_t)(e - s0), 1);
        for (int64_t i = s0; i < e; i++) {
            if (b.ids[i] < 0) {
                if (r.image_pos < 0) r.image_pos = r.n;
                continue;
            }
            r.mask[r.n] = i > s0 && b.targets[i - 1] >= 0;
            r.ids[r.n++] = b.ids[i];
        }
        if (r.image_pos >= 0) r.image = xstrdup(s == 0 ? "0" : "1");   // fixture image index
        data_set_push(&ds, &r);
        s0 = e;
    }
    // windows covering whole records score exactly the step's targets: nll / tokens == loss
    vision_source src = {fx_features, f, p.num_patches, 32};
    eval_result res;
    CHECK(vision_perplexity(&c, &model, NULL, &src, &p, &ds, 1024, 512, 4096, &res, NULL, NULL) == 0, "ppl: %s", err_get());
    double mean = res.tokens ? res.nll / (double)res.tokens : 0;
    CHECK(res.tokens == b.n_supervised, "scored %lld tokens, expected %lld", (long long)res.tokens, (long long)b.n_supervised);
    CHECK(fabs(mean - ref[0]) <= 1e-4 * fabs(ref[0]), "eval nll %.7f vs torch loss %.7f", mean, ref[0]);
    // short windows (M 12, stride 5) still score each supervised token once
    eval_result r2;
    CHECK(vision_perplexity(&c, &model, NULL, &src, &p, &ds, 12, 5, 4096, &r2, NULL, NULL) == 0, "ppl: %s", err_get());
    CHECK(r2.tokens == b.n_supervised, "windowed: scored %lld tokens, expected %lld", (long long)r2.tokens,
          (long long)b.n_supervised);
    CHECK(vision_perplexity(&c, &model, NULL, NULL, &p, &ds, 1024, 512, 4096, &r2, NULL, NULL) != 0 &&
              strstr(err_get(), "need --vision"),
          "records with images and no features: an error (%s)", err_get());
    printf("# perplexity with image rows: nll %.6f over %lld tokens (torch loss %.6f)\n", mean, (long long)res.tokens, ref[0]);
    data_set_free(&ds);
    free(b.image_row);
    ag_ctx_free(&c);
    projector_free(&p);
    free(f);
}

static void test_projector_lora_step(void) {
    int nf;
    float *f = features(&nf);
    projector p;
    CHECK(projector_create(&p, "mlp2x_gelu", 32, 32, 1) == 0, "%s", err_get());
    CHECK(load_params(&p.params, "proj.") == 0, "projector weights from fixture");
    p.num_patches = sig.cfg.num_patches;
    lora_adapter a;
    lora_config lc = {.r = 4, .alpha = 8, .dropout = 0, .targets = (1u << LLAMA_NPROJ) - 1};
    CHECK(lora_create(&a, &model.cfg, &lc, 1) == 0, "%s", err_get());
    CHECK(load_params(&a.params, "lora.") == 0, "lora weights from fixture");
    data_batch b = fx_batch();
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 28);
    c.training = 1;
    double loss = 0;
    ag_params_zero_grad(&p.params);
    ag_params_zero_grad(&a.params);
    CHECK(vision_micro_step(&c, &model, &a.view, &p, &b, f, NULL, (float)b.n_supervised, &loss) == 0, "step: %s", err_get());
    const float *ref = fixture_f32(fx, "pl.loss", NULL);
    CHECK(fabs(loss - ref[0]) <= 1e-4 * fabs(ref[0]), "loss %.7f vs torch %.7f", loss, ref[0]);
    double wp = check_grads(&p.params, "pl.grad."), wl = check_grads(&a.params, "pl.grad.");
    printf("# projector+lora step: loss %.6f (torch %.6f), worst rel err projector %.2e, LoRA %.2e\n", loss, ref[0], wp, wl);

    // dropping a record's targets (a bad image under skip_bad_lines) removes exactly its loss
    int32_t *t = xmalloc((size_t)b.n * sizeof(int32_t));
    memcpy(t, b.targets, (size_t)b.n * sizeof(int32_t));
    for (int64_t i = 0; i < b.n; i++) t[i] = -1;
    double l0 = 0;
    CHECK(vision_micro_step(&c, &model, &a.view, &p, &b, f, t, 1.0f, &l0) == 0 && l0 == 0, "no targets: loss %g", l0);
    free(t);
    free(b.image_row);
    ag_ctx_free(&c);
    lora_free(&a);
    projector_free(&p);
    free(f);
}

// generation with the image spliced into the prompt embeddings (KV-cache path) vs torch
static void test_generate(void) {
    int nf;
    float *f = features(&nf);
    projector p;
    CHECK(projector_create(&p, "mlp2x_gelu", 32, 32, 1) == 0, "%s", err_get());
    CHECK(load_params(&p.params, "proj.") == 0, "projector weights from fixture");
    int P = sig.cfg.num_patches;
    long n = 0, nout = 0;
    const int32_t *prompt = fixture_i32(fx, "gen.prompt", &n);
    const int32_t *want = fixture_i32(fx, "gen.out", &nout);
    const float *logits0 = fixture_f32(fx, "gen.logits0", NULL);
    int32_t *rows = xmalloc((size_t)P * sizeof(int32_t));
    for (int k = 0; k < P; k++) rows[k] = 1 + k;
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 26);
    ag_set_grad(&c, 0);
    ag_tensor *e = vision_embed(&c, &model, &p, prompt, n, f, rows, P);
    CHECK(e != NULL, "embed: %s", err_get());
    // the prefill's last-row logits
    llama_kv_cache kv;
    ag_ctx c2;
    ag_ctx_init(&c2, (size_t)1 << 26);
    CHECK(llama_kv_cache_init(&kv, &model, n + 8) == 0, "kv: %s", err_get());
    ag_tensor *h = llama_forward_cached(&c2, &model, NULL, &kv, NULL, e, n);
    CHECK(h != NULL, "cached forward: %s", err_get());
    float *lg = xmalloc((size_t)model.cfg.vocab_size * sizeof(float));
    llama_logits(&model, h->data + (n - 1) * model.cfg.hidden_size, lg);
    double el = max_rel_err(lg, logits0, model.cfg.vocab_size, 1e-3);
    CHECK(el <= 1e-4, "prefill logits rel err %.2e", el);
    llama_kv_cache_free(&kv);
    ag_ctx_free(&c2);
    gen_opts o;
    gen_opts_default(&o);
    o.temperature = 0;
    o.max_new_tokens = nout;
    int32_t out[16];
    gen_stats st;
    CHECK(gen_generate(&model, NULL, NULL, prompt, n, e, &o, NULL, 0, NULL, out, &st) == 0, "generate: %s", err_get());
    int same = st.new_tokens == nout;
    for (long i = 0; same && i < nout; i++) same = out[i] == want[i];
    CHECK(same, "greedy tokens differ from torch (%lld generated)", (long long)st.new_tokens);
    printf("# generate with image: prefill logits rel err %.2e, %ld greedy tokens %s\n", el, nout, same ? "equal" : "DIFFER");
    free(lg);
    free(rows);
    ag_ctx_free(&c);
    projector_free(&p);
    free(f);
}

int main(void) {
    fx = fixture_load(FX);
    if (!fx || llama_load("tests/fixtures/train-tiny", &model) != 0 || siglip_load("tests/fixtures/tiny-siglip", &sig) != 0) {
        test_fail("setup: %s", err_get());
        return test_summary();
    }
    RUN(test_projector_step);
    RUN(test_projector_lora_step);
    RUN(test_generate);
    siglip_free(&sig);
    llama_free(&model);
    fixture_free(fx);
    return test_summary();
}
