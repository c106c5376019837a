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

// Nested checkpointing (ag_checkpoint_tail) and the recycling of dead activations, on a small
// function of x made of two parts like a decoder layer: f(x) = B(A(x)), A(x) = x + 0.5x∘x,
// B(x) = x + swiglu(1.5x, -0.7x), every intermediate marked transient (as llama.c's tr()).
static int runs_a, runs_b, transient;
static ag_tensor *mark(ag_tensor *t) {
    if (t) t->grad_transient = t->data_transient = transient;
    return t;
}
static ag_tensor *part_a(ag_ctx *c, const void *user, ag_tensor *x) {
    (void)user;
    runs_a++;
    return mark(ag_add(c, x, mark(ag_mul(c, mark(ag_scale(c, x, 0.5f)), x))));
}
static ag_tensor *part_b(ag_ctx *c, const void *user, ag_tensor *x) {
    (void)user;
    runs_b++;
    return mark(ag_add(c, x, mark(ag_swiglu(c, mark(ag_scale(c, x, 1.5f)), mark(ag_scale(c, x, -0.7f))))));
}
static ag_tensor *whole(ag_ctx *c, const void *user, ag_tensor *x) { return part_b(c, user, part_a(c, user, x)); }
static ag_tensor *nested(ag_ctx *c, const void *user, ag_tensor *x) {
    return ag_checkpoint_tail(c, part_b, user, 0, mark(ag_checkpoint(c, part_a, user, 0, x)));
}

enum { F_DIRECT, F_CKPT, F_NESTED };
// dx of sum(dout ∘ f(f(x))) (two layers), the arena peak, and whether the first layer's
// intermediate was given back (its data NULL after backward)
static float *nested_grads(int how, int marked, size_t *high, int *freed) {
    enum { N = 48, C = 40 };
    static float xd[N * C], dout[N * C];
    uint64_t rng = 3;
    for (int i = 0; i < N * C; i++) xd[i] = 0.5f * ag_rng_normal(&rng), dout[i] = ag_rng_normal(&rng);
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 22);
    ag_tensor *x = ag_new2(&c, N, C);   // a leaf that needs a gradient (not a parameter)
    memcpy(x->data, xd, sizeof xd);
    x->requires_grad = 1;
    ag_tensor *h = x, *mid = NULL;
    runs_a = runs_b = 0;
    transient = marked;
    for (int l = 0; l < 2; l++) {
        h = how == F_DIRECT ? whole(&c, NULL, h) : ag_checkpoint(&c, how == F_CKPT ? whole : nested, NULL, 0, h);
        mark(h);
        if (!mid) mid = h;
    }
    CHECK(h && ag_backward_from(&c, h, dout) == 0, "backward (%d): %s", how, err_get());
    float *g = xmalloc(sizeof xd);
    memcpy(g, x->grad, sizeof xd);
    *high = c.arena.high;
    *freed = mid->data == NULL;
    ag_ctx_free(&c);
    return g;
}

static void test_nested(void) {
    size_t hd, hc, hn, hk;
    int fd, fc, fn, fk;
    float *keep = nested_grads(F_DIRECT, 0, &hk, &fk);
    float *direct = nested_grads(F_DIRECT, 1, &hd, &fd);
    float *ckpt = nested_grads(F_CKPT, 1, &hc, &fc);
    int ra = runs_a, rb = runs_b;
    float *nest = nested_grads(F_NESTED, 1, &hn, &fn);
    size_t bytes = 48 * 40 * sizeof(float);
    CHECK(!memcmp(keep, direct, bytes) && !memcmp(direct, ckpt, bytes) && !memcmp(direct, nest, bytes),
          "the gradients differ (recycling %d, checkpointing %d, nested %d)", !!memcmp(keep, direct, bytes),
          !!memcmp(direct, ckpt, bytes), !!memcmp(direct, nest, bytes));
    CHECK(!fk && fd && fc && fn, "a transient intermediate's data given back after its last reader (%d %d %d %d)", fk,
          fd, fc, fn);
    CHECK(hd < hk, "recycling dead activations lowers the arena peak: %zu vs %zu bytes", hd, hk);
    CHECK(hn < hc, "nested checkpointing lowers the arena peak: %zu vs %zu bytes", hn, hc);
    // two layers: plain checkpointing runs each part twice; nested runs A three times, B twice
    CHECK(ra == 4 && rb == 4 && runs_a == 6 && runs_b == 4, "recomputations: A %d B %d, nested A %d B %d", ra, rb,
          runs_a, runs_b);
    printf("# nested: arena peak %zu bytes direct (%zu without recycling), %zu checkpointed, %zu nested\n", hd, hk,
           hc, hn);
    free(keep), free(direct), free(ckpt), free(nest);
}

int main(void) {
    if (llama_load(TINY, &m32) != 0 || llama_load_precision(TINY, &m16, AG_PREC_BF16) != 0) {
        test_fail("setup: %s", err_get());
        return test_summary();
    }
    RUN(test_api);
    RUN(test_nested);
    RUN(test_text_fp32);
    RUN(test_text_bf16);
    RUN(test_projector);
    llama_free(&m32);
    llama_free(&m16);
    return test_summary();
}
