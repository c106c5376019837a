// test_xattn.c — gated cross-attention fusion (model/xattn.h): one block's output and the
// gradients of x, the visual rows and every block tensor against a plain-PyTorch reference
// (tests/gen_xattn.py); fresh blocks (gates 0) leave the tiny Llama's hidden states exactly
// equal to the base model's, on the tape and in the KV-cached path; the folder format.
#include "ag.h"
#include "fixture.h"
#include "llama.h"
#include "test.h"
#include "util.h"
#include "xattn.h"

static fixture *fx;

static hf_llama_config block_cfg(void) {
    hf_llama_config g = {0};
    g.hidden_size = 16, g.num_heads = 4, g.num_kv_heads = 2, g.head_dim = 4, g.intermediate_size = 24;
    g.num_layers = 1, g.rms_norm_eps = 1e-5f;
    return g;
}

// 1e-5 relative (fp32 on both sides): the deepest chain is two RMSNorms, attention over at
// most 3 keys and the SwiGLU MLP, sums of at most 24 terms; observed ~1e-7.
static void test_block_torch(void) {
    hf_llama_config g = block_cfg();
    xattn xa;
    CHECK(xattn_create(&xa, &g, 1, 5) == 0, "%s", err_get());
    CHECK(xa.nblocks == 1 && xa.params.n == XA_NT, "one block of %d tensors", XA_NT);
    for (int i = 0; i < xa.params.n; i++) {
        ag_tensor *t = xa.params.t[i];
        long n = 0;
        const float *d = fixture_f32(fx, t->name, &n);
        CHECK(d && n == t->numel, "fixture tensor %s", t->name);
        if (!d || n != t->numel) return;
        memcpy(t->data, d, sizeof(float) * n);
    }
    ag_params io = {0};
    int64_t xs[2] = {9, 16}, vs[2] = {6, 16};
    ag_tensor *x = ag_params_add(&io, "x", 2, xs), *vis = ag_params_add(&io, "vis", 2, vs);
    ag_params_alloc(&io);
    memcpy(x->data, fixture_f32(fx, "x", NULL), sizeof(float) * 9 * 16);
    memcpy(vis->data, fixture_f32(fx, "vis", NULL), sizeof(float) * 6 * 16);
    ag_params_zero_grad(&io);
    ag_params_zero_grad(&xa.params);
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 24);
    ag_tensor *y = xattn_block_forward(&c, &xa, 0, x, vis, fixture_i32(fx, "kv_begin", NULL),
                                       fixture_i32(fx, "kv_end", NULL));
    CHECK(y != NULL, "forward: %s", err_get());
    if (!y) return;
    double ey = max_rel_err(y->data, fixture_f32(fx, "y", NULL), 9 * 16, 1e-6);
    CHECK(ey <= 1e-5, "y rel err %.2e", ey);
    CHECK(ag_backward_from(&c, y, fixture_f32(fx, "dout", NULL)) == 0, "backward: %s", err_get());
    double worst = 0;
    for (int i = 0; i < xa.params.n; i++) {
        ag_tensor *t = xa.params.t[i];
        char key[160];
        snprintf(key, sizeof key, "grad.%s", t->name);
        double r = max_rel_err(t->grad, fixture_f32(fx, key, NULL), (long)t->numel, 1e-6);
        CHECK(r <= 1e-5, "gradient of %s rel err %.2e", t->name, r);
        if (r > worst) worst = r;
    }
    double ex = max_rel_err(x->grad, fixture_f32(fx, "dx", NULL), 9 * 16, 1e-6);
    double ev = max_rel_err(vis->grad, fixture_f32(fx, "dvis", NULL), 6 * 16, 1e-6);
    CHECK(ex <= 1e-5 && ev <= 1e-5, "dx rel err %.2e, dvis %.2e", ex, ev);
    printf("# xattn block vs torch: y %.2e, worst block-tensor gradient %.2e, dx %.2e, dvis %.2e\n", ey, worst, ex, ev);
    ag_ctx_free(&c);
    ag_params_free(&io);
    xattn_free(&xa);
}

static llama_model model;

// Fresh blocks: gates 0, so h equals the base model's bit for bit; gradients reach only the
// gates (d tanh(g)·y / dg = y at g = 0; every other block tensor sits behind a 0 gate).
static void test_gates_zero_exact(void) {
    const hf_llama_config *g = &model.cfg;
    xattn xa;
    CHECK(xattn_create(&xa, g, 1, 9) == 0, "%s", err_get());
    const int N = 12, M = 5;
    int32_t ids[12], pos[12], kb[12], ke[12];
    for (int i = 0; i < N; i++) ids[i] = (i * 37 + 5) % g->vocab_size, pos[i] = i, kb[i] = 0, ke[i] = i < 10 ? M : 0;
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 26);
    ag_tensor *h0 = llama_forward(&c, &model, NULL, ids, NULL, N, pos, NULL);
    float *base = xmalloc(sizeof(float) * N * g->hidden_size);
    memcpy(base, h0->data, sizeof(float) * N * g->hidden_size);
    ag_ctx_reset(&c);
    ag_params vb = {0};
    int64_t vs[2] = {M, g->hidden_size};
    ag_tensor *vis = ag_params_add(&vb, "vis", 2, vs);
    ag_params_alloc(&vb);
    uint64_t rng = 3;
    for (int i = 0; i < M * g->hidden_size; i++) vis->data[i] = ag_rng_normal(&rng);
    ag_params_zero_grad(&vb);
    ag_params_zero_grad(&xa.params);
    xattn_run r = {&xa, vis, kb, ke};
    llama_hook hk = xattn_hook(&r);
    ag_tensor *h = llama_forward_hooked(&c, &model, NULL, ids, NULL, N, pos, NULL, &hk);
    CHECK(h && !memcmp(h->data, base, sizeof(float) * N * g->hidden_size),
          "gates 0: hidden states differ from the base model's");
    int32_t tg[12];
    for (int i = 0; i < N; i++) tg[i] = i + 1 < N ? ids[i + 1] : -1;
    ag_tensor *l = ag_cross_entropy(&c, h, llama_lm_head(&model), tg, (float)(N - 1));
    CHECK(l && ag_backward(&c, l) == 0, "backward: %s", err_get());
    int gates = 0, others = 0;
    for (int j = 0; j < xa.nblocks; j++)
        for (int k = 0; k < XA_NT; k++) {
            ag_tensor *t = xa.t[j][k];
            int nz = 0;
            for (int64_t i = 0; i < t->numel; i++) nz |= t->grad[i] != 0;
            if (k == XA_GATE_ATTN || k == XA_GATE_MLP) gates += nz;
            else others += nz;
        }
    CHECK(gates == 2 * xa.nblocks && others == 0, "gradients at gates 0: %d of %d gates nonzero, %d other tensors",
          gates, 2 * xa.nblocks, others);
    // the KV-cached no-grad path (generation): prefill 7 rows, then 5 one by one
    llama_kv_cache kv;
    CHECK(llama_kv_cache_init(&kv, &model, N) == 0, "%s", err_get());
    xattn_run rc = {&xa, vis, NULL, NULL};
    llama_hook hc = xattn_hook(&rc);
    for (int i = 0; i < N;) {
        int n = i == 0 ? 7 : 1;
        ag_ctx_reset(&c);
        ag_tensor *hh = llama_forward_cached_hooked(&c, &model, NULL, &kv, ids + i, NULL, n, &hc);
        CHECK(hh != NULL, "cached: %s", err_get());
        if (!hh) break;
        // the cached path computes row by row: compare against itself without the hook
        float *got = xmalloc(sizeof(float) * n * g->hidden_size);
        memcpy(got, hh->data, sizeof(float) * n * g->hidden_size);
        kv.len -= n;
        ag_ctx_reset(&c);
        ag_tensor *hb = llama_forward_cached(&c, &model, NULL, &kv, ids + i, NULL, n);
        CHECK(hb && !memcmp(hb->data, got, sizeof(float) * n * g->hidden_size), "cached rows %d..%d differ", i,
              i + n - 1);
        free(got);
        i += n;
    }
    // a nonzero gate changes the output (the test can fail)
    xa.t[0][XA_GATE_ATTN]->data[0] = 0.5f;
    ag_ctx_reset(&c);
    h = llama_forward_hooked(&c, &model, NULL, ids, NULL, N, pos, NULL, &hk);
    CHECK(h && memcmp(h->data, base, sizeof(float) * N * g->hidden_size), "gate 0.5 must change the output");
    llama_kv_cache_free(&kv);
    free(base);
    ag_ctx_free(&c);
    ag_params_free(&vb);
    xattn_free(&xa);
}

static void test_folder(void) {
    const hf_llama_config *g = &model.cfg;
    const char *dir = test_tmpdir("test_xattn");
    xattn xa, xb;
    CHECK(xattn_create(&xa, g, 1, 2) == 0, "%s", err_get());
    xa.t[0][XA_GATE_MLP]->data[0] = 0.125f;
    CHECK(xattn_save(&xa, dir) == 0, "save: %s", err_get());
    CHECK(xattn_load(&xb, dir, g) == 0, "load: %s", err_get());
    CHECK(xb.nblocks == xa.nblocks && xb.params.total == xa.params.total &&
              !memcmp(xb.params.data, xa.params.data, sizeof(float) * xa.params.total),
          "round trip");
    xattn_free(&xb);
    hf_llama_config other = *g;
    other.intermediate_size += 1;
    CHECK(xattn_load(&xb, dir, &other) != 0 && strstr(err_get(), "intermediate_size"), "another model: %s", err_get());
    CHECK(xattn_create(&xb, g, 0, 1) != 0 && strstr(err_get(), "xattn.every"), "every 0: %s", err_get());
    CHECK(xattn_create(&xb, g, g->num_layers + 1, 1) != 0, "every > layers is refused");
    xattn_free(&xa);
}

int main(void) {
    fx = fixture_load("tests/fixtures/xattn_ref.safetensors");
    RUN(test_block_torch);
    if (llama_load("tests/fixtures/tiny-llama-f32", &model) != 0) {
        printf("FAIL tiny-llama-f32: %s\n", err_get());
        return 1;
    }
    RUN(test_gates_zero_exact);
    RUN(test_folder);
    llama_free(&model);
    fixture_free(fx);
    return test_summary();
}
