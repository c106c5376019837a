// test_eval.c — sliding-window perplexity against the PyTorch reference (tests/gen_eval.py),
// with and without an adapter, for several (max_length, stride) settings, and batching
// independence (any batch size gives the same result).
#include "ag.h"
#include "fixture.h"
#include "llama.h"
#include "lora.h"
#include "ppl.h"
#include "test.h"

static fixture *fx;
static llama_model model;
static data_set ds;
static lora_adapter lora;

static int setup(void) {
    fx = fixture_load("tests/fixtures/eval_ref.safetensors");
    if (!fx || llama_load("tests/fixtures/train-tiny", &model) != 0) return -1;
    long n = 0, nd = 0;
    const int32_t *ids = fixture_i32(fx, "ids", &n);
    const uint8_t *mask = fixture_raw(fx, "mask", "U8", NULL, NULL, NULL);
    const void *off_raw = fixture_raw(fx, "offsets", "I64", &nd, NULL, NULL);
    if (!ids || !mask || !off_raw) return -1;
    int64_t *off = xmalloc((size_t)nd * sizeof *off);   // the fixture's bytes need not be aligned
    memcpy(off, off_raw, (size_t)nd * sizeof *off);
    for (long d = 0; d + 1 < nd; d++) {
        data_record r = {0};
        r.n = off[d + 1] - off[d];
        r.ids = xmalloc((size_t)(r.n ? r.n : 1) * sizeof(int32_t));
        r.mask = xmalloc((size_t)(r.n ? r.n : 1));
        memcpy(r.ids, ids + off[d], (size_t)r.n * sizeof(int32_t));
        memcpy(r.mask, mask + off[d], (size_t)r.n);
        r.image_pos = -1;
        r.line = d + 1;
        data_set_push(&ds, &r);
    }
    free(off);
    ds.path = xstrdup("eval_ref");
    lora_config lc = {.r = 4, .alpha = 8, .targets = (1u << LLAMA_Q) | (1u << LLAMA_V) | (1u << LLAMA_DOWN)};
    if (lora_create(&lora, &model.cfg, &lc, 1) != 0) return -1;
    for (int i = 0; i < lora.params.n; i++) {
        char k[256];
        snprintf(k, sizeof k, "lora.%s", lora.params.t[i]->name);
        long m = 0;
        const float *d = fixture_f32(fx, k, &m);
        if (!d || m != lora.params.t[i]->numel) return err_set("fixture: %s", k);
        memcpy(lora.params.t[i]->data, d, (size_t)m * sizeof(float));
    }
    return 0;
}

static void test_against_torch(void) {
    long n = 0;
    const float *res = fixture_f32(fx, "results", &n);
    CHECK(n >= 5 && n % 5 == 0, "results holds %ld values, want rows of 5", n);
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 30);
    double worst = 0;
    for (long i = 0; res && i < n / 5; i++) {
        const float *r = res + 5 * i;
        int64_t M = (int64_t)r[0], S = (int64_t)r[1];
        for (int64_t batch = M; batch <= 4 * M; batch *= 4) {
            eval_result er;
            int rc = eval_perplexity(&c, &model, r[2] ? &lora.view : NULL, &ds, M, S, batch, &er, NULL, NULL);
            CHECK(rc == 0, "eval: %s", err_get());
            CHECK(er.tokens == (int64_t)r[4], "M=%lld S=%lld lora=%d: %lld scored tokens, torch %lld", (long long)M,
                  (long long)S, (int)r[2], (long long)er.tokens, (long long)r[4]);
            double rel = fabs(er.nll - r[3]) / r[3];
            if (rel > worst) worst = rel;
            CHECK(rel <= 1e-4, "M=%lld S=%lld lora=%d: nll %.6f vs torch %.6f (rel %.2e)", (long long)M, (long long)S,
                  (int)r[2], er.nll, (double)r[3], rel);
            CHECK(er.empty == 1 && er.documents == 6, "documents %lld, empty %lld", (long long)er.documents, (long long)er.empty);
        }
    }
    printf("# perplexity vs torch: worst relative error of total NLL %.2e\n", worst);
    ag_ctx_free(&c);
}

static void test_bad_window(void) {
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 26);
    eval_result er;
    CHECK(eval_perplexity(&c, &model, NULL, &ds, 8, 9, 64, &er, NULL, NULL) != 0 && strstr(err_get(), "stride"),
          "stride > max_length must be refused: %s", err_get());
    ag_ctx_free(&c);
}

int main(void) {
    if (setup() != 0) {
        test_fail("setup: %s", err_get());
        return test_summary();
    }
    RUN(test_against_torch);
    RUN(test_bad_window);
    lora_free(&lora);
    data_set_free(&ds);
    llama_free(&model);
    fixture_free(fx);
    return test_summary();
}
