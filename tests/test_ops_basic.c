// test_ops_basic.c — autograd/ops_basic.c: central-difference gradient checks of every op
// (every subset of differentiable inputs), PyTorch golden fixtures (tests/gen_ops_basic.py),
// LoRA dropout (mask = the c->rng stream, statistics, scaling, off in eval, multi-block path
// against a naive reference), error paths (shapes, ids, rows, a full arena), frozen inputs,
// no-grad mode and run-to-run / thread-count determinism of the reductions.
//
// GC_PROBE=1 also prints, per op, the smallest tolerance of a ladder that gradcheck passes.
#include <cJSON.h>
#include <omp.h>

#include "ag.h"
#include "fixture.h"
#include "gradcheck.h"
#include "test.h"

// --- helpers

static float *rnd(int64_t n, float lo, float hi, uint64_t seed) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    gc_fill(p, n, lo, hi, seed);
    return p;
}

static gc_input gin(float *data, int ndim, int64_t d0, int64_t d1, int64_t d2, int diff) {
    gc_input g = {data, ndim, {d0, d1, d2, 0}, diff};
    return g;
}

// gradcheck at (eps, tol); with GC_PROBE set, also the smallest passing tolerance
static void gc(const char *name, gc_fn f, void *user, const gc_input *in, int nin, double eps, double tol) {
    int bad = gradcheck(name, f, user, in, nin, eps, tol);
    CHECK(bad == 0, "%s: %d gradient elements off (eps %g, tol %g)", name, bad, eps, tol);
    if (getenv("GC_PROBE")) {
        static const double ladder[] = {1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2};
        for (size_t k = 0; k < sizeof ladder / sizeof *ladder; k++)
            if (gradcheck(name, f, user, in, nin, eps, ladder[k]) == 0) {
                printf("probe %-28s eps %g: passes at tol %g\n", name, eps, ladder[k]);
                break;
            }
    }
}

static void free_inputs(gc_input *in, int nin) {
    for (int i = 0; i < nin; i++) free(in[i].data);
}

// a leaf that requires a gradient (its buffer comes from the arena on first use)
static ag_tensor leaf(float *data, int ndim, const int64_t *shape) {
    ag_tensor t = ag_wrap(data, ndim, shape, NULL);
    t.requires_grad = 1;
    return t;
}

// --- gradient checks

typedef struct opts {
    float a, b;       // op scalars (scale/dropout, eps, s)
    int flag;         // op variant
    const int32_t *ids;
    int64_t n;
} opts;

static ag_tensor *f_linear(ag_ctx *c, ag_tensor **in, void *u) {
    return ag_linear(c, in[0], in[1], ((opts *)u)->flag ? in[2] : NULL);
}
static ag_tensor *f_lora(ag_ctx *c, ag_tensor **in, void *u) {
    opts *o = u;
    return ag_lora_linear(c, in[0], in[1], in[2], in[3], o->a, o->b);
}
static ag_tensor *f_add(ag_ctx *c, ag_tensor **in, void *u) { (void)u; return ag_add(c, in[0], in[1]); }
static ag_tensor *f_mul(ag_ctx *c, ag_tensor **in, void *u) { (void)u; return ag_mul(c, in[0], in[1]); }
static ag_tensor *f_scale(ag_ctx *c, ag_tensor **in, void *u) { return ag_scale(c, in[0], ((opts *)u)->a); }
static ag_tensor *f_rmsnorm(ag_ctx *c, ag_tensor **in, void *u) { return ag_rmsnorm(c, in[0], in[1], ((opts *)u)->a); }
static ag_tensor *f_layernorm(ag_ctx *c, ag_tensor **in, void *u) {
    opts *o = u;
    return ag_layernorm(c, in[0], in[1], o->flag ? in[2] : NULL, o->a);
}
static ag_tensor *f_swiglu(ag_ctx *c, ag_tensor **in, void *u) { (void)u; return ag_swiglu(c, in[0], in[1]); }
static ag_tensor *f_gelu(ag_ctx *c, ag_tensor **in, void *u) { (void)u; return ag_gelu(c, in[0]); }
static ag_tensor *f_gelu_tanh(ag_ctx *c, ag_tensor **in, void *u) { (void)u; return ag_gelu_tanh(c, in[0]); }
static ag_tensor *f_embedding(ag_ctx *c, ag_tensor **in, void *u) {
    opts *o = u;
    return ag_embedding(c, in[0], o->ids, o->n);
}
static ag_tensor *f_concat(ag_ctx *c, ag_tensor **in, void *u) { return ag_concat_rows(c, in, ((opts *)u)->flag); }
static ag_tensor *f_scatter(ag_ctx *c, ag_tensor **in, void *u) { return ag_scatter_rows(c, in[0], in[1], ((opts *)u)->ids); }
// a composition: rmsnorm -> lora_linear (dropout) -> swiglu with itself split... exercises
// gradient accumulation into a shared input
static ag_tensor *f_chain(ag_ctx *c, ag_tensor **in, void *u) {
    (void)u;
    ag_tensor *h = ag_rmsnorm(c, in[0], in[1], 1e-5f);
    ag_tensor *g = ag_lora_linear(c, h, in[2], in[3], in[4], 0.5f, 0.2f);
    ag_tensor *v = ag_lora_linear(c, h, in[2], in[3], in[4], 0.5f, 0.0f);
    return ag_add(c, ag_swiglu(c, g, v), ag_mul(c, h, h));
}

static void test_gradcheck_linear(void) {
    gc_input in[3] = {gin(rnd(30, -1, 1, 1), 3, 2, 3, 5, 1), gin(rnd(20, -1, 1, 2), 2, 4, 5, 0, 1),
                      gin(rnd(4, -1, 1, 3), 1, 4, 0, 0, 1)};
    opts o = {.flag = 1};
    gc("linear", f_linear, &o, in, 3, 1e-2, 1e-3);
    o.flag = 0;
    gc("linear (no bias)", f_linear, &o, in, 2, 1e-2, 1e-3);
    free_inputs(in, 3);
}

static void test_gradcheck_lora_linear(void) {
    gc_input in[4] = {gin(rnd(30, -1, 1, 4), 2, 5, 6, 0, 1), gin(rnd(24, -1, 1, 5), 2, 4, 6, 0, 0),
                      gin(rnd(18, -1, 1, 6), 2, 3, 6, 0, 1), gin(rnd(12, -1, 1, 7), 2, 4, 3, 0, 1)};
    opts o = {.a = 1.5f, .b = 0.0f};
    gc("lora_linear", f_lora, &o, in, 4, 1e-2, 1e-3);
    o.b = 0.3f;   // dropout: gradcheck resets c->rng before every forward, so the mask is fixed
    gc("lora_linear (dropout 0.3)", f_lora, &o, in, 4, 1e-2, 1e-3);
    free_inputs(in, 4);
}

static void test_gradcheck_elementwise(void) {
    gc_input in[2] = {gin(rnd(12, -2, 2, 8), 2, 3, 4, 0, 1), gin(rnd(12, -2, 2, 9), 2, 3, 4, 0, 1)};
    gc("add", f_add, NULL, in, 2, 1e-2, 1e-3);
    gc("mul", f_mul, NULL, in, 2, 1e-2, 1e-3);
    gc("swiglu", f_swiglu, NULL, in, 2, 1e-2, 1e-3);
    opts o = {.a = -0.7f};
    gc("scale", f_scale, &o, in, 1, 1e-2, 1e-3);
    gc("gelu", f_gelu, NULL, in, 1, 1e-2, 1e-3);
    gc("gelu_tanh", f_gelu_tanh, NULL, in, 1, 1e-2, 1e-3);
    free_inputs(in, 2);
    // broadcast: b[4] over a[6,4], and b[2,4] over a[6,4]
    gc_input bc[2] = {gin(rnd(24, -2, 2, 10), 2, 6, 4, 0, 1), gin(rnd(4, -2, 2, 11), 1, 4, 0, 0, 1)};
    gc("add (b[C] broadcast)", f_add, NULL, bc, 2, 1e-2, 1e-3);
    free(bc[1].data);
    bc[1] = gin(rnd(8, -2, 2, 12), 2, 2, 4, 0, 1);
    gc("add (b[P,C] broadcast)", f_add, NULL, bc, 2, 1e-2, 1e-3);
    free_inputs(bc, 2);
}

static void test_gradcheck_norms(void) {
    gc_input in[3] = {gin(rnd(32, -2, 2, 13), 2, 4, 8, 0, 1), gin(rnd(8, 0.5f, 1.5f, 14), 1, 8, 0, 0, 1),
                      gin(rnd(8, -1, 1, 15), 1, 8, 0, 0, 1)};
    opts o = {.a = 1e-5f};
    gc("rmsnorm", f_rmsnorm, &o, in, 2, 1e-2, 1e-3);
    o.flag = 1;
    gc("layernorm", f_layernorm, &o, in, 3, 1e-2, 1e-3);
    o.flag = 0;
    gc("layernorm (no bias)", f_layernorm, &o, in, 2, 1e-2, 1e-3);
    free_inputs(in, 3);
}

static void test_gradcheck_rows(void) {
    static const int32_t ids[] = {1, 6, 1, 0, 3, 1};
    gc_input t[1] = {gin(rnd(35, -1, 1, 16), 2, 7, 5, 0, 1)};
    opts o = {.ids = ids, .n = 6};
    gc("embedding", f_embedding, &o, t, 1, 1e-2, 1e-3);
    free_inputs(t, 1);

    gc_input p[3] = {gin(rnd(8, -1, 1, 17), 2, 2, 4, 0, 1), gin(rnd(4, -1, 1, 18), 2, 1, 4, 0, 1),
                     gin(rnd(12, -1, 1, 19), 2, 3, 4, 0, 1)};
    o.flag = 3;
    gc("concat_rows", f_concat, &o, p, 3, 1e-2, 1e-3);
    free_inputs(p, 3);

    static const int32_t rows[] = {4, 1};
    gc_input s[2] = {gin(rnd(18, -1, 1, 20), 2, 6, 3, 0, 1), gin(rnd(6, -1, 1, 21), 2, 2, 3, 0, 1)};
    o.ids = rows;
    gc("scatter_rows", f_scatter, &o, s, 2, 1e-2, 1e-3);
    free_inputs(s, 2);
}

static void test_gradcheck_chain(void) {
    gc_input in[5] = {gin(rnd(24, -2, 2, 22), 2, 4, 6, 0, 1), gin(rnd(6, 0.5f, 1.5f, 23), 1, 6, 0, 0, 1),
                      gin(rnd(36, -1, 1, 24), 2, 6, 6, 0, 0), gin(rnd(12, -1, 1, 25), 2, 2, 6, 0, 1),
                      gin(rnd(12, -1, 1, 26), 2, 6, 2, 0, 1)};
    gc("chain rmsnorm->lora x2->swiglu+mul", f_chain, NULL, in, 5, 1e-2, 1e-3);
    free_inputs(in, 5);
}

// concatenating more parts than a node holds (groups of AG_MAXIN): values and gradients exact
static void test_concat_many(void) {
    enum { P = 14, C = 3 };
    ag_ctx c;
    ag_ctx_init(&c, 1 << 20);
    ag_tensor parts[P], *pp[P];
    float *data[P];
    int64_t total = 0;
    for (int k = 0; k < P; k++) {
        int64_t sh[2] = {1 + k % 3, C};
        data[k] = rnd(sh[0] * C, -1, 1, 100 + (uint64_t)k);
        parts[k] = leaf(data[k], 2, sh);
        parts[k].requires_grad = k % 4 != 1;   // some frozen
        pp[k] = &parts[k];
        total += sh[0];
    }
    ag_tensor *y = ag_concat_rows(&c, pp, P);
    CHECK(y && y->shape[0] == total && y->shape[1] == C, "concat of %d parts: %s", P, err_get());
    if (!y) return;
    float *dout = rnd(total * C, -1, 1, 7);
    CHECK(ag_backward_from(&c, y, dout) == 0, "backward: %s", err_get());
    int64_t off = 0, bad = 0;
    for (int k = 0; k < P; k++) {
        for (int64_t i = 0; i < parts[k].numel; i++) {
            bad += y->data[off + i] != data[k][i];
            if (parts[k].requires_grad) bad += parts[k].grad[i] != dout[off + i];
        }
        if (!parts[k].requires_grad) bad += parts[k].grad != NULL;
        off += parts[k].numel;
        free(data[k]);
    }
    CHECK(bad == 0, "%lld values/gradients differ", (long long)bad);
    free(dout);
    ag_ctx_free(&c);
}

// --- golden fixtures from PyTorch

typedef ag_tensor *(*fx_op)(ag_ctx *c, ag_tensor **in, fixture *f);

static ag_tensor *x_linear(ag_ctx *c, ag_tensor **in, fixture *f) { (void)f; return ag_linear(c, in[0], in[1], in[2]); }
static ag_tensor *x_lora(ag_ctx *c, ag_tensor **in, fixture *f) {
    return ag_lora_linear(c, in[0], in[1], in[2], in[3], (float)fixture_meta(f, "scale", NAN), 0.0f);
}
static ag_tensor *x_add(ag_ctx *c, ag_tensor **in, fixture *f) { (void)f; return ag_add(c, in[0], in[1]); }
static ag_tensor *x_mul(ag_ctx *c, ag_tensor **in, fixture *f) { (void)f; return ag_mul(c, in[0], in[1]); }
static ag_tensor *x_scale(ag_ctx *c, ag_tensor **in, fixture *f) { return ag_scale(c, in[0], (float)fixture_meta(f, "s", NAN)); }
static ag_tensor *x_rmsnorm(ag_ctx *c, ag_tensor **in, fixture *f) {
    return ag_rmsnorm(c, in[0], in[1], (float)fixture_meta(f, "eps", NAN));
}
static ag_tensor *x_layernorm(ag_ctx *c, ag_tensor **in, fixture *f) {
    return ag_layernorm(c, in[0], in[1], in[2], (float)fixture_meta(f, "eps", NAN));
}
static ag_tensor *x_swiglu(ag_ctx *c, ag_tensor **in, fixture *f) { (void)f; return ag_swiglu(c, in[0], in[1]); }
static ag_tensor *x_gelu(ag_ctx *c, ag_tensor **in, fixture *f) { (void)f; return ag_gelu(c, in[0]); }
static ag_tensor *x_gelu_tanh(ag_ctx *c, ag_tensor **in, fixture *f) { (void)f; return ag_gelu_tanh(c, in[0]); }
static ag_tensor *x_embedding(ag_ctx *c, ag_tensor **in, fixture *f) {
    long n = 0;
    const int32_t *ids = fixture_i32(f, "ids", &n);
    return ids ? ag_embedding(c, in[0], ids, n) : NULL;
}
static ag_tensor *x_concat(ag_ctx *c, ag_tensor **in, fixture *f) { (void)f; return ag_concat_rows(c, in, 3); }
static ag_tensor *x_scatter(ag_ctx *c, ag_tensor **in, fixture *f) {
    const int32_t *rows = fixture_i32(f, "rows", NULL);
    return rows ? ag_scatter_rows(c, in[0], in[1], rows) : NULL;
}

static double fx_worst_out, fx_worst_grad;

// Loads tests/fixtures/ops_basic_<op>.safetensors; inputs `names` (a name absent from the
// file is passed as NULL); an input with a d<name> entry requires a gradient.
static void fixture_case(const char *op, const char *const *names, int nin, fx_op fn) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/ops_basic_%s.safetensors", op);
    fixture *f = fixture_load(path);
    CHECK(f, "%s: cannot load %s", op, path);
    if (!f) return;
    ag_ctx c;
    ag_ctx_init(&c, 64 << 20);
    ag_tensor t[AG_MAXIN], *p[AG_MAXIN];
    float *buf[AG_MAXIN] = {0};
    for (int k = 0; k < nin; k++) {
        p[k] = NULL;
        if (!cJSON_GetObjectItem(f->header, names[k])) continue;
        long shape[AG_MAXDIM], n = 0;
        int ndim = 0;
        const float *d = fixture_raw(f, names[k], "F32", &n, shape, &ndim);
        CHECK(d, "%s: input %s", op, names[k]);
        if (!d) continue;
        buf[k] = malloc((size_t)n * sizeof(float));
        memcpy(buf[k], d, (size_t)n * sizeof(float));
        int64_t sh[AG_MAXDIM];
        for (int i = 0; i < ndim; i++) sh[i] = shape[i];
        t[k] = ag_wrap(buf[k], ndim, sh, names[k]);
        char dn[64];
        snprintf(dn, sizeof dn, "d%s", names[k]);
        t[k].requires_grad = cJSON_GetObjectItem(f->header, dn) != NULL;
        p[k] = &t[k];
    }
    ag_tensor *out = fn(&c, p, f);
    CHECK(out, "%s: forward failed: %s", op, err_get());
    long nout = 0, nd = 0;
    const float *ref = fixture_f32(f, "out", &nout), *dout = fixture_f32(f, "dout", &nd);
    if (out && ref && dout && out->numel == nout && nd == nout) {
        double e = max_rel_err(out->data, ref, nout, 1e-6);
        if (e > fx_worst_out) fx_worst_out = e;
        CHECK(e <= 1e-5, "%s: output max rel err %.3g > 1e-5", op, e);
        printf("  fixture %-18s out %.2e", op, e);
        CHECK(ag_backward_from(&c, out, dout) == 0, "%s: backward: %s", op, err_get());
        for (int k = 0; k < nin; k++) {
            if (!p[k] || !t[k].requires_grad) continue;
            char dn[64];
            snprintf(dn, sizeof dn, "d%s", names[k]);
            long ng = 0;
            const float *g = fixture_f32(f, dn, &ng);
            CHECK(g && t[k].grad && ng == t[k].numel, "%s: gradient %s missing", op, dn);
            if (!g || !t[k].grad || ng != t[k].numel) continue;
            double eg = max_rel_err(t[k].grad, g, ng, 1e-6);
            if (eg > fx_worst_grad) fx_worst_grad = eg;
            CHECK(eg <= 1e-4, "%s: %s max rel err %.3g > 1e-4", op, dn, eg);
            printf("  %s %.2e", dn, eg);
        }
        printf("\n");
    } else if (out) {
        CHECK(0, "%s: output has %lld values, fixture %ld (dout %ld)", op, (long long)out->numel, nout, nd);
    }
    for (int k = 0; k < nin; k++) free(buf[k]);
    ag_ctx_free(&c);
    fixture_free(f);
}

static void test_fixtures(void) {
    fixture_case("linear", (const char *[]){"x", "W", "b"}, 3, x_linear);
    fixture_case("lora_linear", (const char *[]){"x", "W", "A", "B"}, 4, x_lora);
    fixture_case("add", (const char *[]){"a", "b"}, 2, x_add);
    fixture_case("mul", (const char *[]){"a", "b"}, 2, x_mul);
    fixture_case("scale", (const char *[]){"a"}, 1, x_scale);
    fixture_case("rmsnorm", (const char *[]){"x", "w"}, 2, x_rmsnorm);
    fixture_case("layernorm", (const char *[]){"x", "w", "b"}, 3, x_layernorm);
    fixture_case("layernorm_nobias", (const char *[]){"x", "w", "b"}, 3, x_layernorm);
    fixture_case("swiglu", (const char *[]){"gate", "up"}, 2, x_swiglu);
    fixture_case("gelu", (const char *[]){"x"}, 1, x_gelu);
    fixture_case("gelu_tanh", (const char *[]){"x"}, 1, x_gelu_tanh);
    fixture_case("embedding", (const char *[]){"table"}, 1, x_embedding);
    fixture_case("concat_rows", (const char *[]){"p0", "p1", "p2"}, 3, x_concat);
    fixture_case("scatter_rows", (const char *[]){"base", "src"}, 2, x_scatter);
    printf("  fixtures: worst output rel err %.2e, worst gradient rel err %.2e\n", fx_worst_out, fx_worst_grad);
}

// --- LoRA dropout

// x = 1, W = 0, A = B = I, s = 1: y = drop(x) = mask / (1 - p) exactly
static void test_lora_dropout_mask(void) {
    enum { N = 64, IN = 64 };
    const float p = 0.25f;
    float *x = malloc(N * IN * sizeof(float)), *W = calloc(IN * IN, sizeof(float));
    float *I = calloc(IN * IN, sizeof(float));
    for (int i = 0; i < N * IN; i++) x[i] = 1.0f;
    for (int i = 0; i < IN; i++) I[i * IN + i] = 1.0f;
    ag_tensor tx = ag_wrap2(x, N, IN, "x"), tW = ag_wrap2(W, IN, IN, "W");
    ag_tensor tA = ag_wrap2(I, IN, IN, "A"), tB = ag_wrap2(I, IN, IN, "B");
    ag_ctx c;
    ag_ctx_init(&c, 16 << 20);
    c.training = 1;
    c.rng = 4242;
    uint64_t s = 4242;
    ag_tensor *y = ag_lora_linear(&c, &tx, &tW, &tA, &tB, 1.0f, p);
    CHECK(y, "forward: %s", err_get());
    if (!y) return;
    int dropped = 0, bad_val = 0, bad_mask = 0;
    double sum = 0;
    for (int i = 0; i < N * IN; i++) {
        int keep = ag_rng_uniform(&s) >= p;   // the documented stream: row-major draws from c->rng
        float v = y->data[i];
        bad_val += !(v == 0.0f || v == 1.0f / (1.0f - p));
        bad_mask += keep != (v != 0.0f);
        dropped += v == 0.0f;
        sum += v;
    }
    double frac = (double)dropped / (N * IN), mean = sum / (N * IN);
    CHECK(bad_val == 0, "%d outputs are neither 0 nor 1/(1-p)", bad_val);
    CHECK(bad_mask == 0, "%d mask entries differ from sequential ag_rng_uniform draws", bad_mask);
    CHECK(fabs(frac - p) < 0.03, "dropped fraction %.4f, p = %.2f", frac, p);
    CHECK(fabs(mean - 1.0) < 0.04, "mean of inverted dropout %.4f, expected ~1", mean);
    CHECK(c.rng == s, "c->rng advanced as if by %d sequential draws", N * IN);
    printf("  dropout p=%.2f: dropped %.4f, mean %.4f over %d elements\n", p, frac, mean, N * IN);

    // eval mode: no dropout even with p > 0, RNG untouched
    c.training = 0;
    uint64_t before = c.rng;
    y = ag_lora_linear(&c, &tx, &tW, &tA, &tB, 1.0f, p);
    int diff = 0;
    for (int i = 0; y && i < N * IN; i++) diff += y->data[i] != 1.0f;
    CHECK(y && diff == 0 && c.rng == before, "training=0: %d elements dropped, rng moved %d", diff, c.rng != before);
    // training with p = 0: no dropout, RNG untouched
    c.training = 1;
    y = ag_lora_linear(&c, &tx, &tW, &tA, &tB, 1.0f, 0.0f);
    diff = 0;
    for (int i = 0; y && i < N * IN; i++) diff += y->data[i] != 1.0f;
    CHECK(y && diff == 0 && c.rng == before, "p=0: %d elements dropped", diff);
    free(x), free(W), free(I);
    ag_ctx_free(&c);
}

// Wide input (several dropout blocks of rows) against a naive double-precision reference,
// forward and backward.
static void test_lora_dropout_blocks(void) {
    enum { N = 70, IN = 1 << 16, O = 3, R = 2 };   // dropout blocks of 32 rows: 32 + 32 + 6
    const float p = 0.4f, s = 0.75f, inv = 1.0f / (1.0f - p);
    float *x = rnd((int64_t)N * IN, -1, 1, 31), *W = rnd((int64_t)O * IN, -1, 1, 32);
    float *A = rnd((int64_t)R * IN, -1, 1, 33), *B = rnd(O * R, -1, 1, 34), *dy = rnd(N * O, -1, 1, 35);
    unsigned char *mask = malloc((size_t)N * IN);
    uint64_t st = 77;
    for (int64_t i = 0; i < (int64_t)N * IN; i++) mask[i] = ag_rng_uniform(&st) >= p;
    // reference
    double *u = calloc(N * R, sizeof(double)), *yr = calloc(N * O, sizeof(double));
    double *du = calloc(N * R, sizeof(double)), *dB = calloc(O * R, sizeof(double));
    double *dA = calloc((size_t)R * IN, sizeof(double));
    for (int i = 0; i < N; i++)
        for (int64_t j = 0; j < IN; j++) {
            double xv = x[i * IN + j], xd = mask[i * IN + j] ? (double)(x[i * IN + j] * inv) : 0;
            for (int o = 0; o < O; o++) yr[i * O + o] += xv * W[o * IN + j];
            for (int k = 0; k < R; k++) u[i * R + k] += xd * A[k * IN + j];
        }
    for (int i = 0; i < N; i++)
        for (int o = 0; o < O; o++)
            for (int k = 0; k < R; k++) {
                yr[i * O + o] += s * u[i * R + k] * B[o * R + k];
                du[i * R + k] += s * dy[i * O + o] * B[o * R + k];
                dB[o * R + k] += s * dy[i * O + o] * u[i * R + k];
            }
    float *yrf = malloc(N * O * sizeof(float)), *dBf = malloc(O * R * sizeof(float));
    float *dAf = malloc((size_t)R * IN * sizeof(float)), *dxf = malloc((size_t)N * IN * sizeof(float));
    for (int i = 0; i < N; i++)
        for (int64_t j = 0; j < IN; j++) {
            double xd = mask[i * IN + j] ? (double)(x[i * IN + j] * inv) : 0, g = 0, gl = 0;
            for (int k = 0; k < R; k++) {
                dA[k * IN + j] += du[i * R + k] * xd;
                gl += du[i * R + k] * A[k * IN + j];
            }
            for (int o = 0; o < O; o++) g += dy[i * O + o] * W[o * IN + j];
            dxf[i * IN + j] = (float)(g + (mask[i * IN + j] ? gl * inv : 0));
        }
    for (int i = 0; i < N * O; i++) yrf[i] = (float)yr[i];
    for (int i = 0; i < O * R; i++) dBf[i] = (float)dB[i];
    for (int64_t i = 0; i < (int64_t)R * IN; i++) dAf[i] = (float)dA[i];

    ag_ctx c;
    ag_ctx_init(&c, 64 << 20);
    c.training = 1;
    c.rng = 77;
    ag_tensor tx = leaf(x, 2, (int64_t[]){N, IN}), tW = ag_wrap2(W, O, IN, "W");
    ag_tensor tA = leaf(A, 2, (int64_t[]){R, IN}), tB = leaf(B, 2, (int64_t[]){O, R});
    ag_tensor *y = ag_lora_linear(&c, &tx, &tW, &tA, &tB, s, p);
    CHECK(y, "forward: %s", err_get());
    if (y) {
        double ey = max_rel_err(y->data, yrf, N * O, 1e-6);
        CHECK(ey <= 1e-4, "y max rel err %.3g", ey);
        CHECK(ag_backward_from(&c, y, dy) == 0, "backward: %s", err_get());
        double ex = max_rel_err(tx.grad, dxf, (long)N * IN, 1e-6), ea = max_rel_err(tA.grad, dAf, (long)R * IN, 1e-6);
        double eb = max_rel_err(tB.grad, dBf, O * R, 1e-6);
        CHECK(ex <= 1e-4 && ea <= 1e-4 && eb <= 1e-4, "grads max rel err dx %.3g dA %.3g dB %.3g", ex, ea, eb);
        CHECK(tW.grad == NULL, "frozen W got a gradient buffer");
        printf("  lora dropout, %d rows x %d (multi-block): y %.2e dx %.2e dA %.2e dB %.2e\n", N, IN, ey, ex, ea,
               eb);
    }
    ag_ctx_free(&c);
    free(x), free(W), free(A), free(B), free(dy), free(mask), free(u), free(yr), free(du), free(dB), free(dA);
    free(yrf), free(dBf), free(dAf), free(dxf);
}

// Backward's dropout scratch falls back to the heap when the arena is full: same gradients.
static void test_lora_scratch_fallback(void) {
    enum { N = 10, IN = 64, O = 5, R = 3 };
    float *x = rnd(N * IN, -1, 1, 90), *W = rnd(O * IN, -1, 1, 91), *A = rnd(R * IN, -1, 1, 92);
    float *B = rnd(O * R, -1, 1, 93), *dy = rnd(N * O, -1, 1, 94);
    float *g[2][3];
    size_t cap = 1 << 20, used = 0;
    for (int run = 0; run < 2; run++) {
        ag_ctx c;
        ag_ctx_init(&c, cap);
        c.training = 1;
        ag_tensor tx = leaf(x, 2, (int64_t[]){N, IN}), tW = ag_wrap2(W, O, IN, "W");
        ag_tensor tA = leaf(A, 2, (int64_t[]){R, IN}), tB = leaf(B, 2, (int64_t[]){O, R});
        ag_tensor *y = ag_lora_linear(&c, &tx, &tW, &tA, &tB, 0.5f, 0.5f);
        CHECK(y && ag_backward_from(&c, y, dy) == 0, "run %d: %s", run, err_get());
        g[run][0] = tx.grad, g[run][1] = tA.grad, g[run][2] = tB.grad;
        if (run == 0) {
            used = c.arena.used;
            CHECK(c.arena.high > used, "scratch came from the arena (high %zu, used %zu)", c.arena.high, used);
            cap = used + 64;   // the same allocations fit, the scratch does not
            for (int k = 0; k < 3; k++) {
                int64_t n = k == 0 ? N * IN : k == 1 ? R * IN : O * R;
                float *cp = malloc((size_t)n * sizeof(float));
                if (g[0][k]) memcpy(cp, g[0][k], (size_t)n * sizeof(float));
                g[0][k] = cp;
            }
        } else {
            CHECK(c.arena.high <= cap && c.arena.used == used, "run 2 used %zu high %zu", c.arena.used, c.arena.high);
            CHECK(g[1][0] && !memcmp(g[0][0], g[1][0], N * IN * sizeof(float)) &&
                      !memcmp(g[0][1], g[1][1], R * IN * sizeof(float)) &&
                      !memcmp(g[0][2], g[1][2], O * R * sizeof(float)),
                  "heap-scratch gradients differ from arena-scratch ones");
        }
        ag_ctx_free(&c);
    }
    for (int k = 0; k < 3; k++) free(g[0][k]);
    free(x), free(W), free(A), free(B), free(dy);
}

// --- errors

static int msg_has(const char *a, const char *b, const char *d) {
    const char *m = err_get();
    return strstr(m, a) && (!b || strstr(m, b)) && (!d || strstr(m, d));
}

static void test_errors(void) {
    ag_ctx c;
    ag_ctx_init(&c, 1 << 20);
    float buf[256] = {0};
    ag_tensor x43 = ag_wrap2(buf, 4, 3, "x"), w57 = ag_wrap2(buf, 5, 7, "W"), w53 = ag_wrap2(buf, 5, 3, "W");
    ag_tensor v5 = ag_wrap1(buf, 5, "v"), v3 = ag_wrap1(buf, 3, "v"), v7 = ag_wrap1(buf, 7, "v");
    ag_tensor a64 = ag_wrap2(buf, 6, 4, "a"), a23 = ag_wrap2(buf, 2, 3, "a"), r24 = ag_wrap2(buf, 2, 4, "r");

    CHECK(!ag_linear(&c, &x43, &w57, NULL) && msg_has("linear", "[4, 3]", "[5, 7]"), "linear: %s", err_get());
    CHECK(!ag_linear(&c, &x43, &w53, &v7) && msg_has("linear", "[7]", "[5, 3]"), "linear bias: %s", err_get());
    CHECK(!ag_lora_linear(&c, &x43, &w57, &a23, &r24, 1, 0) && msg_has("lora_linear", "[4, 3]", "[5, 7]"),
          "lora x/W: %s", err_get());
    ag_tensor a24 = ag_wrap2(buf, 2, 4, "A"), b52 = ag_wrap2(buf, 5, 2, "B"), b53 = ag_wrap2(buf, 5, 3, "B");
    CHECK(!ag_lora_linear(&c, &x43, &w53, &a24, &b52, 1, 0) && msg_has("lora_linear", "[2, 4]", "[5, 3]"),
          "lora A: %s", err_get());
    CHECK(!ag_lora_linear(&c, &x43, &w53, &a23, &b53, 1, 0) && msg_has("lora_linear", "[5, 3]", "[2, 3]"),
          "lora B: %s", err_get());
    ag_tensor wg = w53;
    wg.requires_grad = 1;
    CHECK(!ag_lora_linear(&c, &x43, &wg, &a23, &b52, 1, 0) && msg_has("lora_linear", "frozen", NULL),
          "lora trainable W: %s", err_get());
    CHECK(!ag_lora_linear(&c, &x43, &w53, &a23, &b52, 1, 1.0f) && msg_has("lora_linear", "dropout", NULL),
          "lora dropout 1: %s", err_get());
    CHECK(!ag_add(&c, &a64, &v5) && msg_has("add", "[5]", "[6, 4]"), "add: %s", err_get());
    CHECK(!ag_mul(&c, &a64, &r24) && msg_has("mul", "[6, 4]", "[2, 4]"), "mul: %s", err_get());
    CHECK(!ag_swiglu(&c, &a64, &r24) && msg_has("swiglu", "[6, 4]", "[2, 4]"), "swiglu: %s", err_get());
    CHECK(!ag_rmsnorm(&c, &a64, &v5, 1e-5f) && msg_has("rmsnorm", "[6, 4]", "[5]"), "rmsnorm: %s", err_get());
    ag_tensor v4 = ag_wrap1(buf, 4, "w");
    CHECK(!ag_layernorm(&c, &a64, &v3, NULL, 1e-5f) && msg_has("layernorm", "[6, 4]", "[3]"), "ln w: %s", err_get());
    CHECK(!ag_layernorm(&c, &a64, &v4, &v5, 1e-5f) && msg_has("layernorm", "[6, 4]", "[5]"), "ln b: %s", err_get());

    // embedding ids checked against V: message names the row, the id and V
    ag_tensor tab = ag_wrap2(buf, 7, 3, "table");
    int32_t ids[] = {1, 6, 9, 0}, neg[] = {0, -2};
    CHECK(!ag_embedding(&c, &tab, ids, 4) && msg_has("ids[2] = 9", "V = 7", "embedding"), "embedding: %s", err_get());
    CHECK(!ag_embedding(&c, &tab, neg, 2) && msg_has("ids[1] = -2", "V = 7", NULL), "embedding neg: %s", err_get());
    CHECK(ag_embedding(&c, &tab, ids, 2) != NULL, "embedding in range: %s", err_get());

    ag_tensor *parts[2] = {&a64, &a23};
    CHECK(!ag_concat_rows(&c, parts, 2) && msg_has("concat_rows", "[2, 3]", "[6, 4]"), "concat: %s", err_get());
    CHECK(!ag_concat_rows(&c, parts, 0) && msg_has("concat_rows", NULL, NULL), "concat 0: %s", err_get());
    int32_t rows_bad[] = {1, 6}, rows_dup[] = {3, 3};
    CHECK(!ag_scatter_rows(&c, &a64, &r24, rows_bad) && msg_has("scatter_rows", "rows[1] = 6", "[6, 4]"),
          "scatter range: %s", err_get());
    CHECK(!ag_scatter_rows(&c, &a64, &r24, rows_dup) && msg_has("scatter_rows", "rows[1] = 3", "distinct"),
          "scatter dup: %s", err_get());
    CHECK(!ag_scatter_rows(&c, &a64, &a23, rows_dup) && msg_has("scatter_rows", "[2, 3]", "[6, 4]"),
          "scatter shape: %s", err_get());

    // NULL inputs propagate
    ag_tensor *np[2] = {&a64, NULL};
    CHECK(!ag_linear(&c, NULL, &w53, NULL) && !ag_linear(&c, &x43, NULL, NULL) &&
          !ag_lora_linear(&c, &x43, &w53, NULL, &b52, 1, 0) && !ag_add(&c, NULL, &a64) && !ag_mul(&c, &a64, NULL) &&
          !ag_scale(&c, NULL, 2) && !ag_rmsnorm(&c, NULL, &v4, 1e-5f) && !ag_layernorm(&c, &a64, NULL, NULL, 1e-5f) &&
          !ag_swiglu(&c, NULL, &a64) && !ag_gelu(&c, NULL) && !ag_gelu_tanh(&c, NULL) &&
          !ag_embedding(&c, NULL, ids, 1) && !ag_concat_rows(&c, np, 2) && !ag_scatter_rows(&c, NULL, &r24, rows_dup),
          "a NULL input gives NULL");
    CHECK(c.nnodes == 0, "failed ops recorded %d nodes", c.nnodes);
    ag_ctx_free(&c);
}

// a tiny arena: every op returns NULL with "arena exhausted" naming the op and the request
static void test_arena_exhausted(void) {
    ag_ctx c;
    CHECK(ag_ctx_init(&c, 4096) == 0, "init: %s", err_get());
    float *d = rnd(64 * 64, -1, 1, 40);
    ag_tensor x = leaf(d, 2, (int64_t[]){64, 64}), W = ag_wrap2(d, 64, 64, "W"), w = leaf(d, 1, (int64_t[]){64});
    ag_tensor A = leaf(d, 2, (int64_t[]){4, 64}), B = leaf(d, 2, (int64_t[]){64, 4});
    int32_t ids[64] = {0}, rows[1] = {3};
    ag_tensor tab = leaf(d, 2, (int64_t[]){64, 64}), src = leaf(d, 2, (int64_t[]){1, 64});
    ag_tensor *parts[2] = {&x, &x};
#define EXHAUSTED(call, name)                                                                          \
    do {                                                                                               \
        ag_ctx_reset(&c);                                                                              \
        ag_tensor *y_ = (call);                                                                        \
        CHECK(!y_ && msg_has(name, "arena exhausted", "bytes"), "%s: %s", name, err_get());             \
    } while (0)
    EXHAUSTED(ag_linear(&c, &x, &W, NULL), "linear");
    EXHAUSTED(ag_lora_linear(&c, &x, &W, &A, &B, 1, 0), "lora_linear");
    EXHAUSTED(ag_add(&c, &x, &x), "add");
    EXHAUSTED(ag_mul(&c, &x, &x), "mul");
    EXHAUSTED(ag_scale(&c, &x, 2), "scale");
    EXHAUSTED(ag_rmsnorm(&c, &x, &w, 1e-5f), "rmsnorm");
    EXHAUSTED(ag_layernorm(&c, &x, &w, &w, 1e-5f), "layernorm");
    EXHAUSTED(ag_swiglu(&c, &x, &x), "swiglu");
    EXHAUSTED(ag_gelu(&c, &x), "gelu");
    EXHAUSTED(ag_gelu_tanh(&c, &x), "gelu_tanh");
    EXHAUSTED(ag_embedding(&c, &tab, ids, 64), "embedding");
    EXHAUSTED(ag_concat_rows(&c, parts, 2), "concat_rows");
    EXHAUSTED(ag_scatter_rows(&c, &x, &src, rows), "scatter_rows");
    CHECK(c.nnodes == 0, "%d nodes recorded", c.nnodes);
    ag_ctx_free(&c);

    // the output fits but the saved state does not: NULL, and no node is left on the tape
    size_t hdr = (sizeof(ag_tensor) + 63) & ~(size_t)63;
    CHECK(ag_ctx_init(&c, hdr + 4 * 16 * sizeof(float)) == 0, "init: %s", err_get());
    ag_tensor x2 = leaf(d, 2, (int64_t[]){4, 16}), w2 = ag_wrap1(d, 16, "w");
    ag_tensor *y = ag_rmsnorm(&c, &x2, &w2, 1e-5f);
    CHECK(!y && msg_has("rmsnorm", "arena exhausted", NULL) && c.nnodes == 0, "saved state: %s (%d nodes)", err_get(),
          c.nnodes);
    ag_set_grad(&c, 0);
    ag_ctx_reset(&c);
    CHECK(ag_rmsnorm(&c, &x2, &w2, 1e-5f) != NULL, "no-grad rmsnorm fits exactly: %s", err_get());
    ag_ctx_free(&c);
    free(d);
}

// --- frozen inputs, no-grad mode

static void test_frozen_and_nograd(void) {
    ag_ctx c;
    ag_ctx_init(&c, 16 << 20);
    float *d = rnd(32 * 32, -1, 1, 50), *dout = rnd(32 * 32, -1, 1, 51);
    ag_tensor x = leaf(d, 2, (int64_t[]){8, 32}), W = ag_wrap2(d, 16, 32, "W"), b = ag_wrap1(d, 16, "b");
    ag_tensor *y = ag_linear(&c, &x, &W, &b);
    CHECK(y && c.nnodes == 1 && ag_backward_from(&c, y, dout) == 0, "linear: %s", err_get());
    CHECK(x.grad && !W.grad && !b.grad, "only x gets a gradient buffer");
    ag_ctx_reset(&c);
    ag_tensor fx = ag_wrap2(d, 8, 32, "x");
    CHECK(ag_gelu(&c, &fx) && ag_linear(&c, &fx, &W, NULL) && c.nnodes == 0, "frozen inputs record no node");

    // no-grad mode: nothing recorded, nothing saved
    x.grad = NULL;
    ag_tensor A = leaf(d, 2, (int64_t[]){4, 32}), B = leaf(d, 2, (int64_t[]){16, 4}), w = leaf(d, 1, (int64_t[]){32});
    ag_tensor tab = leaf(d, 2, (int64_t[]){32, 32}), src = leaf(d, 2, (int64_t[]){1, 32});
    int32_t ids[3] = {0, 5, 5}, rows[1] = {2};
    ag_tensor *parts[2] = {&x, &x};
    ag_ctx_reset(&c);
    ag_set_grad(&c, 0);
    c.training = 1;
    int ok = 1;
    size_t before = c.arena.used;
    y = ag_lora_linear(&c, &x, &W, &A, &B, 2.0f, 0.1f);
    ok &= y && c.arena.used == (size_t)((char *)(y->data + y->numel) - c.arena.base) && before == 0;
    CHECK(ok, "no-grad lora_linear keeps only its output in the arena (used %zu)", c.arena.used);
    ag_tensor *outs[] = {
        ag_linear(&c, &x, &W, NULL), ag_add(&c, &x, &x), ag_mul(&c, &x, &x), ag_scale(&c, &x, 2),
        ag_rmsnorm(&c, &x, &w, 1e-5f), ag_layernorm(&c, &x, &w, &w, 1e-5f), ag_swiglu(&c, &x, &x),
        ag_gelu(&c, &x), ag_gelu_tanh(&c, &x), ag_embedding(&c, &tab, ids, 3), ag_concat_rows(&c, parts, 2),
        ag_scatter_rows(&c, &x, &src, rows)};
    for (size_t k = 0; k < sizeof outs / sizeof *outs; k++) ok &= outs[k] && !outs[k]->requires_grad;
    CHECK(ok && c.nnodes == 0, "no-grad: outputs without requires_grad, %d nodes", c.nnodes);
    CHECK(!x.grad && !A.grad, "no gradient buffers");
    ag_ctx_free(&c);
    free(d), free(dout);
}

// --- determinism: reductions over rows are bit-identical run to run and across thread counts

// with_blas: end the chain with an ag_linear (cblas_sgemm). OpenBLAS keeps a product
// bit-identical run to run for a fixed thread count, but some of its kernels (e.g. Haswell's,
// which an OpenBLAS core-type override selects on some machines) do not across thread counts, so the
// 1-vs-2-thread check runs without it: it proves lorac's own reductions, not OpenBLAS's.
static void run_reductions(int threads, int with_blas, float *out, int64_t N, int64_t C, const float *xd,
                           const float *wd, const float *dout, const int32_t *ids) {
    omp_set_num_threads(threads);
    ag_ctx c;
    ag_ctx_init(&c, 64 << 20);
    float *x = malloc((size_t)(N * C) * sizeof(float)), *w = malloc((size_t)C * sizeof(float));
    memcpy(x, xd, (size_t)(N * C) * sizeof(float));
    memcpy(w, wd, (size_t)C * sizeof(float));
    ag_tensor tx = leaf(x, 2, (int64_t[]){N, C}), tw = leaf(w, 1, (int64_t[]){C}), tb = leaf(w, 1, (int64_t[]){C});
    ag_tensor tw2 = leaf(w, 1, (int64_t[]){C}), tb2 = leaf(w, 1, (int64_t[]){C}), tab = leaf(x, 2, (int64_t[]){N, C});
    ag_tensor tw3 = leaf(x, 2, (int64_t[]){C, C});
    ag_tensor *h = ag_rmsnorm(&c, &tx, &tw, 1e-5f);
    h = ag_layernorm(&c, h, &tw2, &tb, 1e-5f);
    h = ag_add(&c, h, &tb2);
    h = ag_add(&c, h, ag_embedding(&c, &tab, ids, N));
    if (with_blas) h = ag_linear(&c, h, &tw3, &tw);
    else h = ag_mul(&c, h, &tab);
    if (!h || ag_backward_from(&c, h, dout) != 0) {
        test_fail("reductions: %s", err_get());
        memset(out, 0, (size_t)(6 * C) * sizeof(float));
    } else {
        memcpy(out, tw.grad, (size_t)C * sizeof(float));
        memcpy(out + C, tw2.grad, (size_t)C * sizeof(float));
        memcpy(out + 2 * C, tb.grad, (size_t)C * sizeof(float));
        memcpy(out + 3 * C, tb2.grad, (size_t)C * sizeof(float));
        memcpy(out + 4 * C, tab.grad, (size_t)C * sizeof(float));   // row 0 of the table gradient
        memcpy(out + 5 * C, tx.grad + (N - 1) * C, (size_t)C * sizeof(float));
    }
    free(x), free(w);
    ag_ctx_free(&c);
}

static void test_determinism(void) {
    enum { N = 300, C = 200 };
    float *x = rnd(N * C, -2, 2, 60), *w = rnd(C, 0.5f, 1.5f, 61), *dout = rnd(N * C, -1, 1, 62);
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (i * 7) % 13;   // many repeats of few rows
    float *r1 = calloc(6 * C, sizeof(float)), *r2 = calloc(6 * C, sizeof(float)), *r3 = calloc(6 * C, sizeof(float));
    int maxt = omp_get_max_threads();
    run_reductions(2, 1, r1, N, C, x, w, dout, ids);
    run_reductions(2, 1, r2, N, C, x, w, dout, ids);
    CHECK(!memcmp(r1, r2, 6 * C * sizeof(float)), "two runs differ");
    run_reductions(2, 0, r1, N, C, x, w, dout, ids);
    run_reductions(1, 0, r3, N, C, x, w, dout, ids);
    omp_set_num_threads(maxt);
    CHECK(!memcmp(r1, r3, 6 * C * sizeof(float)), "1 and 2 threads differ");
    double s = 0;
    for (int i = 0; i < 6 * C; i++) s += fabs(r1[i]);
    CHECK(s > 0, "gradients are all zero");
    free(x), free(w), free(dout), free(r1), free(r2), free(r3);
}

int main(void) {
    RUN(test_gradcheck_linear);
    RUN(test_gradcheck_lora_linear);
    RUN(test_gradcheck_elementwise);
    RUN(test_gradcheck_norms);
    RUN(test_gradcheck_rows);
    RUN(test_gradcheck_chain);
    RUN(test_concat_many);
    RUN(test_fixtures);
    RUN(test_lora_dropout_mask);
    RUN(test_lora_dropout_blocks);
    RUN(test_lora_scratch_fallback);
    RUN(test_errors);
    RUN(test_arena_exhausted);
    RUN(test_frozen_and_nograd);
    RUN(test_determinism);
    return test_summary();
}
