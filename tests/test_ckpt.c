// test_ckpt.c — activation checkpointing (ag_checkpoint; train.activation_checkpointing):
// the gradients of a micro-step are bit-identical with it on and off, and the arena peak
// falls. Checked for text LoRA in fp32 and bf16 precision with LoRA dropout (the masks are
// regenerated in backward from the saved RNG state), two micro-steps accumulating into the
// same gradients, and the projector modes (a projector feeding the decoder's input rows,
// alone and with LoRA). tests/test_ckpt.sh checks whole training runs (adapter bytes) and
// the config key.
//
// Exact comparison (memcmp), no tolerance: the recomputation runs the same ops, in the same
// order, on the same values with the same thread count, so any difference is a bug.
#include <string.h>

#include "ag.h"
#include "batch.h"
#include "fixture.h"
#include "llama.h"
#include "lora.h"
#include "projector.h"
#include "test.h"
#include "train_fixture.h"
#include "trainer.h"
#include "vision.h"

#define TINY "tests/fixtures/train-tiny"
#define VFX "tests/fixtures/vision_train_ref.safetensors"

// A packed batch of three documents (lengths 23, 31, 10) of random ids, every row supervised
// but each document's last.
static data_batch text_batch(int V) {
    static const int len[3] = {23, 31, 10};
    data_batch b = {0};
    b.n = 64;
    b.ids = xmalloc(64 * sizeof(int32_t)), b.pos = xmalloc(64 * sizeof(int32_t));
    b.kv_begin = xmalloc(64 * sizeof(int32_t)), b.targets = xmalloc(64 * sizeof(int32_t));
    uint64_t rng = 11;
    int i = 0;
    for (int d = 0; d < 3; d++)
        for (int j = 0; j < len[d]; j++, i++) {
            b.ids[i] = (int32_t)(ag_rng_next(&rng) % (uint64_t)V);
            b.pos[i] = j;
            b.kv_begin[i] = i - j;
        }
    for (i = 0; i < 64; i++) {
        b.targets[i] = i + 1 < 64 && b.kv_begin[i + 1] == b.kv_begin[i] ? b.ids[i + 1] : -1;
        b.n_supervised += b.targets[i] >= 0;
    }
    return b;
}

static void batch_free(data_batch *b) {
    free(b->ids), free(b->pos), free(b->kv_begin), free(b->targets);
}

typedef struct step_out {
    float *grad;      // every trainable block's gradients, concatenated
    int64_t n;
    double loss;
    uint64_t rng;     // the dropout RNG after the step
    size_t high;      // arena high-water mark
} step_out;

// Two micro-steps (the second accumulating into the first's gradients) of the text model or
// (proj set) of projector mode, with checkpointing on or off.
static step_out run_step(const llama_model *m, lora_adapter *a, projector *p, const data_batch *b, const float *feats,
                         int ckpt) {
    step_out o = {0};
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 28);
    c.training = 1;
    c.checkpoint = ckpt;
    c.rng = 0x1234567ULL;
    if (a) ag_params_zero_grad(&a->params);
    if (p) ag_params_zero_grad(&p->params);
    for (int k = 0; k < 2; k++) {
        int rc = p ? vision_micro_step(&c, m, a ? &a->view : NULL, p, b, feats, NULL, (float)b->n_supervised, &o.loss)
                   : train_micro_step(&c, m, &a->view, b, (float)b->n_supervised, &o.loss);
        CHECK(rc == 0, "micro-step %d (checkpointing %d): %s", k, ckpt, err_get());
    }
    o.n = (a ? a->params.total : 0) + (p ? p->params.total : 0);
    o.grad = xmalloc((size_t)o.n * sizeof(float));
    int64_t off = 0;
    if (p) memcpy(o.grad, p->params.grad, (size_t)p->params.total * sizeof(float)), off = p->params.total;
    if (a) memcpy(o.grad + off, a->params.grad, (size_t)a->params.total * sizeof(float));
    o.rng = c.rng;
    o.high = c.arena.high;
    ag_ctx_free(&c);
    return o;
}

// Runs both ways and checks bit-identity; returns 1 when the arena peak fell.
static int compare(const char *what, const llama_model *m, lora_adapter *a, projector *p, const data_batch *b,
                   const float *feats) {
    step_out off = run_step(m, a, p, b, feats, 0), on = run_step(m, a, p, b, feats, 1);
    int64_t diff = 0;
    double gsum = 0;
    for (int64_t i = 0; i < off.n; i++) {
        diff += memcmp(&off.grad[i], &on.grad[i], sizeof(float)) != 0;
        gsum += fabs(off.grad[i]);
    }
    CHECK(off.n > 0 && gsum > 0, "%s: no gradient flowed (sum |g| %g)", what, gsum);
    CHECK(diff == 0, "%s: %lld of %lld gradient values differ with checkpointing", what, (long long)diff,
          (long long)off.n);
    CHECK(memcmp(&off.loss, &on.loss, sizeof off.loss) == 0, "%s: loss %.9g vs %.9g", what, off.loss, on.loss);
    CHECK(off.rng == on.rng, "%s: the dropout RNG ends at %llx vs %llx", what, (unsigned long long)off.rng,
          (unsigned long long)on.rng);
    printf("# %s: %lld gradient values bit-identical; arena peak %.1f KiB off, %.1f KiB on\n", what,
           (long long)off.n, off.high / 1024.0, on.high / 1024.0);
    int fell = on.high < off.high;
    free(off.grad), free(on.grad);
    return fell;
}

static llama_model m32, m16;

static void lora_of(lora_adapter *a, const llama_model *m, float dropout) {
    lora_config lc = {.r = 4, .alpha = 8, .dropout = dropout, .targets = (1u << LLAMA_NPROJ) - 1};
    CHECK(lora_create(a, &m->cfg, &lc, 3) == 0, "%s", err_get());
    // B non-zero (a fresh adapter's B is 0): every LoRA path carries gradient to A and x
    uint64_t rng = 5;
    for (int i = 0; i < a->params.n; i++)
        if (strstr(a->params.t[i]->name, "lora_B"))
            for (int64_t j = 0; j < a->params.t[i]->numel; j++) a->params.t[i]->data[j] = 0.05f * ag_rng_normal(&rng);
}

static void test_text(const llama_model *m, const char *what) {
    data_batch b = text_batch(m->cfg.vocab_size);
    lora_adapter a;
    lora_of(&a, m, 0.1f);
    CHECK(compare(what, m, &a, NULL, &b, NULL), "%s: the arena peak did not fall with checkpointing", what);
    lora_free(&a);
    lora_of(&a, m, 0);   // no dropout
    compare(what, m, &a, NULL, &b, NULL);
    lora_free(&a);
    batch_free(&b);
}

static void test_text_fp32(void) { test_text(&m32, "text LoRA fp32"); }
static void test_text_bf16(void) { test_text(&m16, "text LoRA bf16"); }

// the fixture's packed batch with two images spliced in (tests/gen_vision_train.py)
static void test_projector(void) {
    fixture *fx = fixture_load(VFX);
    CHECK(fx != NULL, "%s: %s", VFX, err_get());
    if (!fx) return;
    data_batch b = trainfx_vision_batch(fx);
    long nf = 0;
    const float *feats = fixture_f32(fx, "features", &nf);
    projector p;
    CHECK(projector_create(&p, "mlp2x_gelu", 32, 32, 1) == 0, "%s", err_get());
    p.num_patches = (int)(nf / 2 / 32);   // two images of P patches, 32 features each
    compare("projector fp32", &m32, NULL, &p, &b, feats);
    compare("projector bf16", &m16, NULL, &p, &b, feats);
    lora_adapter a;
    lora_of(&a, &m32, 0.1f);
    compare("projector+lora fp32 (dropout 0.1)", &m32, &a, &p, &b, feats);
    compare("projector+lora bf16 (dropout 0.1)", &m16, &a, &p, &b, feats);
    lora_free(&a);
    projector_free(&p);
    free(b.image_row);
    fixture_free(fx);
}

// ag_checkpoint itself: no-grad mode just calls the function; a function returning another
// shape is an error naming both shapes.
static ag_tensor *half_rows(ag_ctx *c, const void *user, ag_tensor *x) {
    (void)user;
    return ag_new2(c, x->shape[0] / 2, x->shape[1]);
}
static void test_api(void) {
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 20);
    float d[8] = {0};
    ag_tensor x = ag_wrap2(d, 4, 2, "x");
    x.requires_grad = 1;
    ag_tensor *y = ag_checkpoint(&c, half_rows, NULL, 0, &x);
    CHECK(!y && strstr(err_get(), "[2, 2]") && strstr(err_get(), "[4, 2]"), "shape mismatch: %s", err_get());
    ag_set_grad(&c, 0);
    y = ag_checkpoint(&c, half_rows, NULL, 0, &x);
    CHECK(y && y->shape[0] == 2 && c.nnodes == 0, "no-grad: the function's result, no node");
    ag_ctx_free(&c);
}

int main(void) {
    if (llama_load(TINY, &m32) != 0 || llama_load_precision(TINY, &m16, AG_PREC_BF16) != 0) {
        test_fail("setup: %s", err_get());
        return test_summary();
    }
    RUN(test_api);
    RUN(test_text_fp32);
    RUN(test_text_bf16);
    RUN(test_projector);
    llama_free(&m32);
    llama_free(&m16);
    return test_summary();
}
