// test_wide16.c — weights: auto (16-bit storage in fp32 precision, weights served from the
// mapped file) gives the same bytes as weights: f32 (fp32 heap copies), as issue 10 requires.
//
// 1. The widened products (wide16.h) against one cblas call over the widened weight, and the
//    row-blocked decoding product of a BF16 weight against the fp32 one on shapes that take
//    several blocks with a ragged last one: memcmp, no tolerance (BF16 → fp32 is exact).
// 2. The tiny BF16 model loaded both ways: storage (AG_BF16X and mapped vs AG_F32 copies),
//    logits, per-row NLL of the chunked lm-head loss, the LoRA gradients and loss of a training
//    step (dropout on), decoding logits token by token: all memcmp. In bf16 precision the
//    mapped and copied BF16 weights give the same logits too.
// 3. SigLIP: a BF16 copy of the tiny tower, features with weights auto vs f32: memcmp.
// A short training run's adapter bytes are compared by tests/test_weights.sh (the CLI).
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ag.h"
#include "batch.h"
#include "llama.h"
#include "lora.h"
#include "mm16.h"
#include "safetensors.h"
#include "siglip.h"
#include "test.h"
#include "trainer.h"
#include "wide16.h"

#define TINY "tests/fixtures/tiny-llama-bf16"   // a BF16 checkpoint (V 512, C 64, 2 layers)

static uint16_t *random_bf16(int64_t n, uint64_t seed) {
    uint16_t *w = malloc((size_t)n * sizeof *w);
    for (int64_t i = 0; i < n; i++) w[i] = f32_to_bf16(0.05f * ag_rng_normal(&seed));
    return w;
}

static float *random_f32(int64_t n, uint64_t seed) {
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = ag_rng_normal(&seed);
    return x;
}

// --- 1. the kernels

static void test_products(void) {
    // Llama-3.2-1B-like shapes, odd sizes: N = 37 rows, W [2500, 2048]
    const int64_t N = 37, O = 2500, In = 2048;
    uint16_t *W = random_bf16(O * In, 1);
    float *Wf = malloc(sizeof(float) * O * In), *x = random_f32(N * In, 2), *dy = random_f32(N * O, 3);
    bf16_widen(Wf, W, O * In);
    float *y1 = random_f32(N * O, 4), *y2 = malloc(sizeof(float) * N * O);
    memcpy(y2, y1, sizeof(float) * N * O);
    for (int acc = 0; acc < 2; acc++) {   // y = x·Wᵀ, then y += x·Wᵀ
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)O, (int)In, 1.0f, x, (int)In, Wf, (int)In,
                    acc ? 1.0f : 0.0f, y1, (int)O);
        w16_xwt(y2, x, W, N, O, In, acc);
        CHECK(!memcmp(y1, y2, sizeof(float) * N * O), "x·Wᵀ (accumulate %d) differs from sgemm on the fp32 weight", acc);
    }
    float *d1 = random_f32(N * In, 5), *d2 = malloc(sizeof(float) * N * In);
    memcpy(d2, d1, sizeof(float) * N * In);
    for (int acc = 0; acc < 2; acc++) {   // dx (+)= dy·W
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)In, (int)O, 1.0f, dy, (int)O, Wf, (int)In,
                    acc ? 1.0f : 0.0f, d1, (int)In);
        w16_xw(d2, dy, W, N, O, In, acc);
        CHECK(!memcmp(d1, d2, sizeof(float) * N * In), "dy·W (accumulate %d) differs from sgemm on the fp32 weight", acc);
    }
    // one row (decoding): BF16 widened per block vs the fp32 weight in the same blocks; with
    // 2048 columns the 8 MB blocks hold 1024 rows (1024 + 1024 + 452), and a tall thin
    // lm-head-like weight (64 columns, 70001 rows) takes 32768-row blocks
    w16_gemv(y1, NULL, Wf, x, O, In);
    w16_gemv(y2, W, NULL, x, O, In);
    CHECK(!memcmp(y1, y2, sizeof(float) * O), "W·x: BF16 and fp32 storage differ");
    double e = 0;   // and it is the product (against double)
    for (int64_t o = 0; o < O; o++) {
        double r = 0, s = 0;
        for (int64_t i = 0; i < In; i++) r += (double)Wf[o * In + i] * x[i], s += fabs((double)Wf[o * In + i] * x[i]);
        e = fmax(e, fabs(y1[o] - r) / s);
    }
    CHECK(e <= In * 0x1p-24, "W·x off by %.3g of Σ|w·x| (fp32 accumulation bound K·2⁻²⁴)", e);
    const int64_t V = 70001, C = 64;
    uint16_t *H = random_bf16(V * C, 6);
    float *Hf = malloc(sizeof(float) * V * C), *g1 = malloc(sizeof(float) * V), *g2 = malloc(sizeof(float) * V);
    bf16_widen(Hf, H, V * C);
    w16_gemv(g1, NULL, Hf, x, V, C);
    w16_gemv(g2, H, NULL, x, V, C);
    CHECK(!memcmp(g1, g2, sizeof(float) * V), "lm-head-shaped W·x: BF16 and fp32 storage differ");
    free(W), free(Wf), free(x), free(dy), free(y1), free(y2), free(d1), free(d2), free(H), free(Hf), free(g1), free(g2);
}

// --- 2. the model

static llama_model ma, mf;   // TINY with weights: auto and weights: f32 (fp32 precision)

// Two documents of 20 and 17 tokens; every token but each document's first supervised.
enum { NB = 37 };
static int32_t ids[NB], pos[NB], begin[NB], tgt[NB];
static data_batch batch(void) {
    uint64_t s = 11;
    for (int i = 0; i < NB; i++) {
        int d0 = i < 20 ? 0 : 20;
        ids[i] = (int32_t)(ag_rng_next(&s) % 512);
        pos[i] = i - d0, begin[i] = d0;
    }
    data_batch b = {.ids = ids, .pos = pos, .kv_begin = begin, .targets = tgt, .n = NB};
    for (int i = 0; i < NB; i++) {
        tgt[i] = i + 1 < NB && begin[i + 1] == begin[i] ? ids[i + 1] : -1;
        b.n_supervised += tgt[i] >= 0;
    }
    return b;
}

// An adapter on all seven projections with random A and B (so every LoRA path is non-zero).
static int adapter(lora_adapter *a, const llama_model *m, float dropout) {
    lora_config lc = {.r = 4, .alpha = 8, .dropout = dropout, .targets = (1u << LLAMA_NPROJ) - 1};
    if (lora_create(a, &m->cfg, &lc, 1) != 0) return -1;
    uint64_t s = 5;
    for (int64_t i = 0; i < a->params.total; i++) a->params.data[i] = 0.05f * ag_rng_normal(&s);
    return 0;
}

static void test_storage(void) {
    int n16 = 0, n32 = 0, mapped = 0;
    for (int l = 0; l < ma.cfg.num_layers; l++)
        for (int p = 0; p < LLAMA_NPROJ; p++) {
            const ag_tensor *a = llama_proj_weight(&ma, l, p), *f = llama_proj_weight(&mf, l, p);
            n16 += a->dtype == AG_BF16X && a->w16 && !a->data;
            n32 += f->dtype == AG_F32 && f->data && !f->w16;
            mapped += st_owns(ma.st, a->w16) && !st_owns(mf.st, f->data);
        }
    int np = ma.cfg.num_layers * LLAMA_NPROJ;
    CHECK(n16 == np && n32 == np && mapped == np, "projections: %d BF16X, %d fp32, %d mapped of %d", n16, n32, mapped, np);
    CHECK(llama_embed(&ma)->dtype == AG_BF16X && st_owns(ma.st, llama_embed(&ma)->w16), "embedding: BF16X, mapped");
    CHECK(ma.w.norm.dtype == AG_F32 && ma.mem.bytes16 > 0 && ma.mem.mapped > 0 && mf.mem.mapped == 0 &&
              mf.mem.bytes16 == 0,
          "norms fp32; memory accounting (auto: %.0f B BF16, %.0f B mapped; f32: %.0f B mapped)", ma.mem.bytes16,
          ma.mem.mapped, mf.mem.mapped);
}

// logits [NB, V] through ag_linear on the lm-head, and per-row NLL through the chunked loss
// (chunk 100: six vocabulary chunks at V = 512)
static float *logits_of(const llama_model *m, lora_adapter *a, float *nll) {
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 26);
    ag_set_grad(&c, 0);
    data_batch b = batch();
    ag_tensor *h = llama_forward(&c, m, &a->view, b.ids, NULL, b.n, b.pos, b.kv_begin);
    ag_tensor *l = ag_linear(&c, h, llama_lm_head(m), NULL);
    float *out = NULL;
    if (l && ag_nll_rows_chunked(&c, h, llama_lm_head(m), b.targets, nll, 100) == 0) {
        out = malloc(sizeof(float) * l->numel);
        memcpy(out, l->data, sizeof(float) * l->numel);
    } else {
        CHECK(0, "forward: %s", err_get());
    }
    ag_ctx_free(&c);
    return out;
}

static void test_logits(void) {
    lora_adapter a;
    if (adapter(&a, &ma, 0) != 0) {
        CHECK(0, "adapter: %s", err_get());
        return;
    }
    float n1[NB], n2[NB];
    float *l1 = logits_of(&ma, &a, n1), *l2 = logits_of(&mf, &a, n2);
    int64_t n = (int64_t)NB * ma.cfg.vocab_size;
    CHECK(l1 && l2 && !memcmp(l1, l2, sizeof(float) * n), "logits: weights auto vs f32 differ");
    CHECK(!memcmp(n1, n2, sizeof n1), "per-row NLL (chunked lm-head loss): weights auto vs f32 differ");
    free(l1), free(l2);
    lora_free(&a);
}

// One training micro-step with dropout: loss and every LoRA gradient byte for byte.
static void test_gradients(void) {
    lora_adapter a1, a2;
    if (adapter(&a1, &ma, 0.1f) != 0 || adapter(&a2, &mf, 0.1f) != 0) {
        CHECK(0, "adapter: %s", err_get());
        return;
    }
    data_batch b = batch();
    double loss[2] = {0, 0};
    lora_adapter *ad[2] = {&a1, &a2};
    const llama_model *m[2] = {&ma, &mf};
    for (int k = 0; k < 2; k++) {
        ag_ctx c;
        ag_ctx_init(&c, (size_t)1 << 27);
        c.training = 1;
        c.rng = 99;
        ag_params_zero_grad(&ad[k]->params);
        CHECK(train_micro_step(&c, m[k], &ad[k]->view, &b, (float)b.n_supervised, &loss[k]) == 0, "step: %s", err_get());
        ag_ctx_free(&c);
    }
    CHECK(loss[0] == loss[1], "loss %.9g vs %.9g", loss[0], loss[1]);
    CHECK(!memcmp(a1.params.grad, a2.params.grad, sizeof(float) * a1.params.total),
          "LoRA gradients: weights auto vs f32 differ");
    double g = 0;
    for (int64_t i = 0; i < a1.params.total; i++) g += fabs(a1.params.grad[i]);
    CHECK(g > 0, "all gradients are zero (the check would be empty)");
    lora_free(&a1), lora_free(&a2);
}

// Decoding token by token (sgemv on every projection and the lm-head) for the first document.
static void test_decode(void) {
    lora_adapter a;
    if (adapter(&a, &ma, 0) != 0) return;
    int64_t V = ma.cfg.vocab_size, n = 20;
    float *out[2];
    const llama_model *m[2] = {&ma, &mf};
    for (int k = 0; k < 2; k++) {
        ag_ctx c;
        ag_ctx_init(&c, (size_t)1 << 26);
        llama_kv_cache kv;
        out[k] = calloc((size_t)(n * V), sizeof(float));
        CHECK(llama_kv_cache_init(&kv, m[k], n) == 0, "%s", err_get());
        batch();
        for (int64_t i = 0; i < n; i++) {
            ag_ctx_reset(&c);
            ag_tensor *h = llama_forward_cached(&c, m[k], &a.view, &kv, ids + i, NULL, 1);
            if (!h) {
                CHECK(0, "cached forward: %s", err_get());
                break;
            }
            llama_logits(m[k], h->data, out[k] + i * V);
        }
        llama_kv_cache_free(&kv);
        ag_ctx_free(&c);
    }
    CHECK(!memcmp(out[0], out[1], sizeof(float) * n * V), "decoded logits: weights auto vs f32 differ");
    free(out[0]), free(out[1]);
    lora_free(&a);
}

// bf16 precision: the BF16 weights mapped (auto) or copied (f32) give the same logits.
static void test_bf16_mode(void) {
    llama_model b1, b2;
    if (llama_load_opts(TINY, &b1, AG_PREC_BF16, AG_WEIGHTS_AUTO) != 0 ||
        llama_load_opts(TINY, &b2, AG_PREC_BF16, AG_WEIGHTS_F32) != 0) {
        CHECK(0, "load: %s", err_get());
        return;
    }
    const ag_tensor *w1 = llama_proj_weight(&b1, 0, LLAMA_Q), *w2 = llama_proj_weight(&b2, 0, LLAMA_Q);
    CHECK(w1->dtype == AG_BF16 && w2->dtype == AG_BF16 && st_owns(b1.st, w1->w16) && !st_owns(b2.st, w2->w16),
          "bf16 precision: auto maps the BF16 weights, f32 copies them");
    lora_adapter a;
    if (adapter(&a, &b1, 0) == 0) {
        float n1[NB], n2[NB];
        float *l1 = logits_of(&b1, &a, n1), *l2 = logits_of(&b2, &a, n2);
        CHECK(l1 && l2 && !memcmp(l1, l2, sizeof(float) * NB * b1.cfg.vocab_size) && !memcmp(n1, n2, sizeof n1),
              "bf16 precision: mapped vs copied weights give different logits");
        free(l1), free(l2);
        lora_free(&a);
    }
    llama_free(&b1), llama_free(&b2);
}

// --- 3. SigLIP: the F32 fixture tower rewritten in BF16 under a temporary folder

static void test_siglip(void) {
    char dir[] = "/tmp/lorac-wide16-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    char path[512];
    st_model *src = st_open("tests/fixtures/tiny-siglip");
    st_writer *w = st_writer_new();
    float **bufs = calloc((size_t)st_count(src), sizeof *bufs);
    for (int i = 0; i < st_count(src); i++) {
        const st_tensor *t = st_get(src, i);
        bufs[i] = malloc(sizeof(float) * (size_t)st_numel(t));
        st_read_f32(t, bufs[i]);
        st_writer_add_f32(w, t->name, ST_BF16, t->ndim, t->shape, bufs[i]);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = st_writer_write(w, path);
    size_t n;
    char *cfg = file_read_all("tests/fixtures/tiny-siglip/config.json", &n);
    snprintf(path, sizeof path, "%s/config.json", dir);
    rc = rc || !cfg || file_write_atomic(path, cfg, n);
    free(cfg);
    st_writer_free(w);
    for (int i = 0; i < st_count(src); i++) free(bufs[i]);
    free(bufs);
    st_close(src);
    siglip_model s1, s2;
    if (rc || siglip_load_opts(dir, &s1, AG_PREC_FP32, AG_WEIGHTS_AUTO) != 0 ||
        siglip_load_opts(dir, &s2, AG_PREC_FP32, AG_WEIGHTS_F32) != 0) {
        CHECK(0, "BF16 SigLIP: %s", err_get());
        rm_rf(dir);
        return;
    }
    CHECK(s1.layers[0].fc1_w.dtype == AG_BF16X && s1.patch_w.dtype == AG_BF16X && s2.layers[0].fc1_w.dtype == AG_F32,
          "SigLIP storage: auto keeps BF16 linears");
    int B = 2, P = s1.cfg.num_patches, C = s1.cfg.hidden_size, S = s1.cfg.image_size;
    float *pix = random_f32((int64_t)B * 3 * S * S, 8), *f1 = malloc(sizeof(float) * B * P * C),
          *f2 = malloc(sizeof(float) * B * P * C);
    ag_ctx c;
    ag_ctx_init(&c, siglip_arena_bytes(&s1, B));
    CHECK(siglip_features(&c, &s1, pix, B, -1, f1) == 0 && siglip_features(&c, &s2, pix, B, -1, f2) == 0, "%s",
          err_get());
    CHECK(!memcmp(f1, f2, sizeof(float) * B * P * C), "SigLIP features: weights auto vs f32 differ");
    ag_ctx_free(&c);
    free(pix), free(f1), free(f2);
    siglip_free(&s1), siglip_free(&s2);
    rm_rf(dir);
}

int main(void) {
    RUN(test_products);
    if (llama_load_opts(TINY, &ma, AG_PREC_FP32, AG_WEIGHTS_AUTO) != 0 ||
        llama_load_opts(TINY, &mf, AG_PREC_FP32, AG_WEIGHTS_F32) != 0) {
        test_fail("load %s: %s", TINY, err_get());
        return test_summary();
    }
    RUN(test_storage);
    RUN(test_logits);
    RUN(test_gradients);
    RUN(test_decode);
    RUN(test_bf16_mode);
    RUN(test_siglip);
    llama_free(&ma), llama_free(&mf);
    return test_summary();
}
