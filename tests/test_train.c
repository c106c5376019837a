// test_train.c — LoRA training against the PyTorch reference (tests/gen_train.py):
// the gradients of a full-model step, and a 30-step trajectory (AdamW, clipping, cosine
// schedule with warmup, gradient accumulation with token-level loss averaging).
#include "ag.h"
#include "batch.h"
#include "config.h"
#include "fixture.h"
#include "llama.h"
#include "lora.h"
#include "test.h"
#include "train_fixture.h"
#include "trainer.h"

#define FX "tests/fixtures/train_ref.safetensors"
#define MODEL "tests/fixtures/train-tiny"

static fixture *fx;
static llama_model model;

static void test_step_gradients(void) {
    lora_adapter a;
    CHECK(trainfx_lora(&a, &model.cfg, fx, "init") == 0, "lora from fixture: %s", err_get());
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 30);
    c.training = 1;
    data_batch b = trainfx_batch(fx, "b1");
    double loss = 0;
    ag_params_zero_grad(&a.params);
    CHECK(train_micro_step(&c, &model, &a.view, &b, (float)b.n_supervised, &loss) == 0, "step: %s", err_get());
    const float *ref = fixture_f32(fx, "b1.loss", NULL);
    CHECK(ref && fabs(loss - ref[0]) <= 1e-4 * fabs(ref[0]), "loss %.7f vs torch %.7f", loss, ref ? ref[0] : 0);
    double worst = 0;
    for (int i = 0; i < a.params.n; i++) {
        ag_tensor *t = a.params.t[i];
        char k[256];
        snprintf(k, sizeof k, "grad.%s", t->name);
        const float *g = fixture_f32(fx, k, NULL);
        if (!g) continue;
        double e = max_rel_err(t->grad, g, t->numel, 1e-6);
        if (e > worst) worst = e;
        CHECK(e <= 1e-4, "%s: gradient rel err %.2e", t->name, e);
    }
    printf("# step gradients: %d LoRA tensors, worst relative error %.2e\n", a.params.n, worst);
    ag_ctx_free(&c);
    lora_free(&a);
}

static void test_trajectory(void) {
    lora_adapter a;
    CHECK(trainfx_lora(&a, &model.cfg, fx, "traj_init") == 0, "lora from fixture: %s", err_get());
    ag_adamw opt;
    ag_adamw_init(&opt, a.params.total, 0.9f, 0.999f, 1e-8f, 0.01f);
    cfg_train cfg;
    cfg_defaults(&cfg);
    cfg.optim.lr = 1e-2f;
    cfg.schedule.warmup_steps = 3;
    cfg.schedule.min_lr_ratio = 0.1f;
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 30);
    c.training = 1;
    data_batch mb[4];
    char p[16];
    for (int j = 0; j < 4; j++) {
        snprintf(p, sizeof p, "mb%d", j);
        mb[j] = trainfx_batch(fx, p);
    }
    const float *ref_loss = fixture_f32(fx, "traj.loss", NULL), *ref_norm = fixture_f32(fx, "traj.grad_norm", NULL);
    double worst_loss = 0;
    for (int n = 0; n < 30 && ref_loss && ref_norm; n++) {
        const data_batch *b0 = &mb[(2 * n) % 4], *b1 = &mb[(2 * n + 1) % 4];
        float norm = (float)(b0->n_supervised + b1->n_supervised);
        double loss = 0, gn = 0;
        ag_params_zero_grad(&a.params);
        CHECK(train_micro_step(&c, &model, &a.view, b0, norm, &loss) == 0, "%s", err_get());
        CHECK(train_micro_step(&c, &model, &a.view, b1, norm, &loss) == 0, "%s", err_get());
        CHECK(train_opt_step(&opt, &a.params, cfg_lr_at(&cfg, n, 30), 1.0f, &gn) == 0, "%s", err_get());
        double e = fabs(loss - ref_loss[n]) / fmax(1e-3, fabs(ref_loss[n]));
        if (e > worst_loss) worst_loss = e;
        CHECK(e <= 1e-3, "step %d: loss %.6f vs torch %.6f", n, loss, ref_loss[n]);
        CHECK(fabs(gn - ref_norm[n]) <= 1e-3 * fmax(1e-3, ref_norm[n]), "step %d: grad norm %.6f vs %.6f", n, gn, ref_norm[n]);
    }
    double worst_w = 0;
    for (int i = 0; i < a.params.n; i++) {
        char k[256];
        snprintf(k, sizeof k, "final.%s", a.params.t[i]->name);
        const float *w = fixture_f32(fx, k, NULL);
        if (w) worst_w = fmax(worst_w, max_rel_err(a.params.t[i]->data, w, a.params.t[i]->numel, 1e-6));
    }
    CHECK(worst_w <= 1e-3, "final weights rel err %.2e", worst_w);
    printf("# 30-step trajectory: loss %.4f -> %.4f, worst loss rel err %.2e, final weights rel err %.2e\n",
           ref_loss ? ref_loss[0] : 0, ref_loss ? ref_loss[29] : 0, worst_loss, worst_w);
    cfg_free(&cfg);
    ag_adamw_free(&opt);
    ag_ctx_free(&c);
    lora_free(&a);
}

static void test_save_load_roundtrip(void) {
    lora_adapter a, b;
    CHECK(trainfx_lora(&a, &model.cfg, fx, "init") == 0, "lora: %s", err_get());
    const char *dir = test_tmpdir("train_adapter");
    snprintf(a.cfg.base_model, sizeof a.cfg.base_model, "%s", MODEL);
    CHECK(lora_save(&a, dir) == 0, "save: %s", err_get());
    CHECK(lora_load(&b, &model.cfg, dir) == 0, "load: %s", err_get());
    CHECK(b.params.total == a.params.total, "reloaded adapter has %lld values, saved %lld", (long long)b.params.total,
          (long long)a.params.total);
    if (b.params.total == a.params.total)
        CHECK(!memcmp(a.params.data, b.params.data, (size_t)a.params.total * 4), "weights differ after reload");
    // reloaded adapter gives the same logits
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 28);
    ag_set_grad(&c, 0);
    data_batch bt = trainfx_batch(fx, "b1");
    ag_tensor *h1 = llama_forward(&c, &model, &a.view, bt.ids, NULL, bt.n, bt.pos, bt.kv_begin);
    ag_tensor *h2 = llama_forward(&c, &model, &b.view, bt.ids, NULL, bt.n, bt.pos, bt.kv_begin);
    CHECK(h1 && h2 && !memcmp(h1->data, h2->data, (size_t)h1->numel * 4), "reloaded adapter changes the output");
    ag_ctx_free(&c);
    lora_free(&a);
    lora_free(&b);
}

int main(void) {
    fx = fixture_load(FX);
    if (!fx || llama_load(MODEL, &model) != 0) {
        test_fail("setup: %s", fx ? err_get() : "no fixture");
        return test_summary();
    }
    RUN(test_step_gradients);
    RUN(test_trajectory);
    RUN(test_save_load_roundtrip);
    llama_free(&model);
    fixture_free(fx);
    return test_summary();
}
