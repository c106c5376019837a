// test_ops_attn.c — rope, attention and the fused cross-entropy: central-difference gradient
// checks, PyTorch golden fixtures (tests/gen_ops_attn.py), determinism, the O(T) memory of
// the attention backward, shape/range errors.
#include <omp.h>

#include "ag.h"
#include "fixture.h"
#include "gradcheck.h"
#include "test.h"

#define FIX_DIR "tests/fixtures/"

// a leaf that receives a gradient in a caller buffer (as gradcheck's trainable inputs)
static ag_tensor leaf(float *data, int64_t d0, int64_t d1, float *grad) {
    ag_tensor t = ag_wrap2(data, d0, d1, NULL);
    if (grad) {
        memset(grad, 0, (size_t)(d0 * d1) * sizeof(float));
        t.grad = grad, t.requires_grad = 1, t.is_param = 1;
    }
    return t;
}

static float *fill(int64_t n, uint64_t seed) {
    float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    gc_fill(x, n, -1, 1, seed);
    return x;
}

// --- rope

typedef struct rope_args { int nheads; const int32_t *pos; const float *inv_freq; } rope_args;

static ag_tensor *rope_fn(ag_ctx *c, ag_tensor **in, void *u) {
    rope_args *a = u;
    return ag_rope(c, in[0], a->nheads, a->pos, a->inv_freq);
}

static void test_rope_gradcheck(void) {
    int N = 7, nh = 2, D = 8;
    int32_t pos[7] = {0, 1, 2, 3, 0, 1, 1000};
    float inv_freq[4] = {1.0f, 0.1f, 0.01f, 0.001f};
    float *x = fill(N * nh * D, 5);
    rope_args a = {nh, pos, inv_freq};
    gc_input in[] = {{x, 2, {N, nh * D}, 1}};
    CHECK(gradcheck("rope", rope_fn, &a, in, 1, 1e-3, 1e-3) == 0, "rope gradients");
    free(x);
}

static void test_rope_fixture(void) {
    fixture *f = fixture_load(FIX_DIR "ops_attn_rope.safetensors");
    if (!f) { CHECK(0, "fixture"); return; }
    long shape[4], n;
    int nd;
    const float *x = fixture_raw(f, "x", "F32", &n, shape, &nd);
    const int32_t *pos = fixture_i32(f, "pos", NULL);
    const float *inv = fixture_f32(f, "inv_freq", NULL), *dout = fixture_f32(f, "dout", NULL);
    const float *ref = fixture_f32(f, "out", NULL), *dref = fixture_f32(f, "dx", NULL);
    int nh = (int)fixture_meta(f, "nheads", 0);
    CHECK(x && pos && inv && dout && ref && dref && nd == 2, "fixture tensors");
    if (!x || !pos || !inv || !dout || !ref || !dref) { fixture_free(f); return; }
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 26);
    float *xd = malloc((size_t)n * sizeof *xd), *dx = malloc((size_t)n * sizeof *dx);
    memcpy(xd, x, (size_t)n * sizeof *xd);
    ag_tensor tx = leaf(xd, shape[0], shape[1], dx);
    ag_tensor *out = ag_rope(&c, &tx, nh, pos, inv);
    CHECK(out && ag_backward_from(&c, out, dout) == 0, "rope: %s", err_get());
    if (out) {
        double e1 = max_rel_err(out->data, ref, n, 1e-6), e2 = max_rel_err(dx, dref, n, 1e-6);
        printf("rope fixture: out rel err %.2e, dx rel err %.2e\n", e1, e2);
        CHECK(e1 <= 1e-5, "rope out rel err %.3g", e1);
        CHECK(e2 <= 1e-4, "rope dx rel err %.3g", e2);
    }
    free(xd);
    free(dx);
    ag_ctx_free(&c);
    fixture_free(f);
}

// --- attention

typedef struct attn_args { int H, K; const int32_t *beg, *end; float scale; } attn_args;

static ag_tensor *attn_fn(ag_ctx *c, ag_tensor **in, void *u) {
    attn_args *a = u;
    return ag_attention(c, in[0], in[1], in[2], a->H, a->K, a->beg, a->end, a->scale);
}

static int attn_gc(const char *name, int Nq, int Nk, int H, int K, int D, const int32_t *beg, const int32_t *end) {
    float *q = fill(Nq * H * D, 11), *k = fill(Nk * K * D, 12), *v = fill(Nk * K * D, 13);
    attn_args a = {H, K, beg, end, 0.8f};
    gc_input in[] = {{q, 2, {Nq, H * D}, 1}, {k, 2, {Nk, K * D}, 1}, {v, 2, {Nk, K * D}, 1}};
    int bad = gradcheck(name, attn_fn, &a, in, 3, 1e-3, 2e-3);
    free(q), free(k), free(v);
    return bad;
}

static void test_attention_gradcheck(void) {
    // causal, GQA ratios 1, 2, 4
    CHECK(attn_gc("attn causal r1", 5, 5, 2, 2, 4, NULL, NULL) == 0, "causal ratio 1");
    CHECK(attn_gc("attn causal r2", 6, 6, 4, 2, 4, NULL, NULL) == 0, "causal ratio 2");
    CHECK(attn_gc("attn causal r4", 4, 4, 4, 1, 8, NULL, NULL) == 0, "causal ratio 4");
    // more rows than one tile (32 queries) and one key block (64 keys)
    CHECK(attn_gc("attn causal tiles", 70, 70, 2, 1, 4, NULL, NULL) == 0, "causal, several tiles");
    // Nq < Nk: decoding rows against cached keys
    CHECK(attn_gc("attn kv cache", 3, 9, 4, 2, 4, NULL, NULL) == 0, "Nq < Nk causal");
    // custom ranges: two packed documents (causal within each) and a non-causal block
    int32_t b1[8] = {0, 0, 0, 3, 3, 3, 3, 3}, e1[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(attn_gc("attn packed", 8, 8, 2, 1, 4, b1, e1) == 0, "packed documents");
    int32_t b2[6] = {0, 0, 0, 3, 3, 3}, e2[6] = {3, 3, 3, 6, 6, 6};
    CHECK(attn_gc("attn blocks", 6, 6, 4, 4, 4, b2, e2) == 0, "non-causal image blocks");
    int32_t b3[4] = {2, 0, 5, 1}, e3[4] = {7, 1, 10, 10};
    CHECK(attn_gc("attn ranges Nq<Nk", 4, 10, 4, 1, 4, b3, e3) == 0, "arbitrary ranges, Nq < Nk");
}

static void test_attention_fixture(void) {
    fixture *f = fixture_load(FIX_DIR "ops_attn_attention.safetensors");
    if (!f) { CHECK(0, "fixture"); return; }
    int ncases = (int)fixture_meta(f, "ncases", 0);
    CHECK(ncases > 0, "no cases");
    double worst_out = 0, worst_grad = 0;
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 28);
    for (int ci = 0; ci < ncases; ci++) {
        char key[64];
#define META(name) (snprintf(key, sizeof key, "c%d." name, ci), fixture_meta(f, key, -1))
        int Nq = (int)META("Nq"), Nk = (int)META("Nk"), H = (int)META("H"), K = (int)META("K"), D = (int)META("D");
        int ranges = (int)META("ranges");
        float scale = (float)META("scale");
        uint64_t seed = (uint64_t)META("seed");
#undef META
        const int32_t *beg = NULL, *end = NULL;
        if (ranges & 1) snprintf(key, sizeof key, "c%d.beg", ci), beg = fixture_i32(f, key, NULL);
        if (ranges & 2) snprintf(key, sizeof key, "c%d.end", ci), end = fixture_i32(f, key, NULL);
        const float *ref[4];
        const char *names[4] = {"out", "dq", "dk", "dv"};
        for (int j = 0; j < 4; j++) snprintf(key, sizeof key, "c%d.%s", ci, names[j]), ref[j] = fixture_f32(f, key, NULL);
        if (!ref[0] || !ref[1] || !ref[2] || !ref[3]) { CHECK(0, "case %d tensors", ci); continue; }
        int64_t nq = (int64_t)Nq * H * D, nk = (int64_t)Nk * K * D;
        float *q = fill(nq, seed + 1), *k = fill(nk, seed + 2), *v = fill(nk, seed + 3), *dout = fill(nq, seed + 4);
        float *g[3] = {malloc((size_t)nq * 4), malloc((size_t)nk * 4), malloc((size_t)nk * 4)};
        ag_ctx_reset(&c);
        ag_tensor tq = leaf(q, Nq, H * D, g[0]), tk = leaf(k, Nk, K * D, g[1]), tv = leaf(v, Nk, K * D, g[2]);
        ag_tensor *out = ag_attention(&c, &tq, &tk, &tv, H, K, beg, end, scale);
        CHECK(out && ag_backward_from(&c, out, dout) == 0, "case %d: %s", ci, err_get());
        if (out) {
            double e[4] = {max_rel_err(out->data, ref[0], nq, 1e-6), max_rel_err(g[0], ref[1], nq, 1e-6),
                           max_rel_err(g[1], ref[2], nk, 1e-6), max_rel_err(g[2], ref[3], nk, 1e-6)};
            CHECK(e[0] <= 1e-5, "case %d (Nq %d Nk %d H %d K %d): out rel err %.3g", ci, Nq, Nk, H, K, e[0]);
            for (int j = 1; j < 4; j++)
                CHECK(e[j] <= 1e-4, "case %d (Nq %d Nk %d H %d K %d): %s rel err %.3g", ci, Nq, Nk, H, K,
                      names[j], e[j]);
            if (e[0] > worst_out) worst_out = e[0];
            for (int j = 1; j < 4; j++) if (e[j] > worst_grad) worst_grad = e[j];
        }
        free(q), free(k), free(v), free(dout), free(g[0]), free(g[1]), free(g[2]);
    }
    printf("attention fixtures (%d cases): worst out rel err %.2e, worst grad rel err %.2e\n", ncases,
           worst_out, worst_grad);
    ag_ctx_free(&c);
    fixture_free(f);
}

// forward + backward of one attention problem; out/grads into caller buffers
static int attn_run(ag_ctx *c, int T, int H, int K, int D, float *out, float *dq, float *dk, float *dv,
                    double *t_fwd, double *t_bwd) {
    float *q = fill(T * H * D, 21), *k = fill(T * K * D, 22), *v = fill(T * K * D, 23), *dout = fill(T * H * D, 24);
    ag_ctx_reset(c);
    ag_tensor tq = leaf(q, T, H * D, dq), tk = leaf(k, T, K * D, dk), tv = leaf(v, T, K * D, dv);
    double t0 = now_seconds();
    ag_tensor *o = ag_attention(c, &tq, &tk, &tv, H, K, NULL, NULL, 1.0f / sqrtf((float)D));
    double t1 = now_seconds();
    int rc = o && ag_backward_from(c, o, dout) == 0 ? 0 : -1;
    double t2 = now_seconds();
    if (o && out) memcpy(out, o->data, (size_t)T * H * D * sizeof *out);
    if (t_fwd) *t_fwd = t1 - t0;
    if (t_bwd) *t_bwd = t2 - t1;
    free(q), free(k), free(v), free(dout);
    return rc;
}

static void test_attention_deterministic(void) {
    int T = 150, H = 4, K = 2, D = 16;
    size_t nq = (size_t)T * H * D, nk = (size_t)T * K * D;
    float *r[2][4];
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 28);
    int nth = omp_get_max_threads();
    for (int run = 0; run < 2; run++) {
        for (int j = 0; j < 4; j++) r[run][j] = malloc((j == 0 || j == 1 ? nq : nk) * sizeof(float));
        omp_set_num_threads(run == 0 ? 1 : (nth > 1 ? nth : 2));   // same bits at any thread count
        CHECK(attn_run(&c, T, H, K, D, r[run][0], r[run][1], r[run][2], r[run][3], NULL, NULL) == 0, "%s", err_get());
    }
    omp_set_num_threads(nth);
    for (int j = 0; j < 4; j++)
        CHECK(!memcmp(r[0][j], r[1][j], (j < 2 ? nq : nk) * sizeof(float)), "output %d differs between runs", j);
    for (int run = 0; run < 2; run++)
        for (int j = 0; j < 4; j++) free(r[run][j]);
    ag_ctx_free(&c);
}

// The backward at T = 2048 keeps O(T) state: arena high-water far below one T×T fp32 matrix.
static void test_attention_memory(void) {
    int T = 2048, H = 4, K = 1, D = 64;
    size_t nq = (size_t)T * H * D, nk = (size_t)T * K * D;
    float *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 30);
    double tf, tb;
    CHECK(attn_run(&c, T, H, K, D, NULL, dq, dk, dv, &tf, &tb) == 0, "%s", err_get());
    size_t tt = (size_t)T * T * 4, act = 2 * nq * 4;   // out and its gradient
    printf("attention T=%d H=%d K=%d D=%d: arena high-water %.2f MiB (out + dout %.2f MiB, attention's own "
           "%.3f MiB) vs one T*T fp32 matrix %.0f MiB; fwd %.1f ms, bwd %.1f ms (%d threads)\n",
           T, H, K, D, c.arena.high / 1048576.0, act / 1048576.0, (c.arena.high - act) / 1048576.0,
           tt / 1048576.0, tf * 1e3, tb * 1e3, omp_get_max_threads());
    CHECK(c.arena.high < tt / 2, "arena high-water %zu bytes is not far below T*T*4 = %zu", c.arena.high, tt);
    CHECK(c.arena.high - act < (size_t)2 << 20, "attention state %zu bytes beyond out and dout", c.arena.high - act);
    free(dq), free(dk), free(dv);
    ag_ctx_free(&c);
}

// informative: Llama-3.2-1B attention shape at T = 512
static void test_attention_timing(void) {
    int T = 512, H = 32, K = 8, D = 64;
    size_t nq = (size_t)T * H * D, nk = (size_t)T * K * D;
    float *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 30);
    double tf, tb;
    CHECK(attn_run(&c, T, H, K, D, NULL, dq, dk, dv, &tf, &tb) == 0, "%s", err_get());
    printf("attention T=%d H=%d K=%d D=%d causal: fwd %.1f ms, bwd %.1f ms (%d threads)\n", T, H, K, D, tf * 1e3,
           tb * 1e3, omp_get_max_threads());
    free(dq), free(dk), free(dv);
    ag_ctx_free(&c);
}

static void test_attention_errors(void) {
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 24);
    float buf[4096] = {0};
    ag_tensor q = ag_wrap2(buf, 4, 16, "q"), k = ag_wrap2(buf, 4, 8, "k"), v = ag_wrap2(buf, 4, 8, "v");
    ag_tensor kbad = ag_wrap2(buf, 4, 6, "k"), vbad = ag_wrap2(buf, 5, 8, "v"), kbig = ag_wrap2(buf, 2, 8, "k");
    // H = 4, K = 2, D = 4: k must be [Nk, 8]
    CHECK(ag_attention(&c, &q, &k, &v, 4, 2, NULL, NULL, 1) != NULL, "valid call failed: %s", err_get());
    CHECK(!ag_attention(&c, &q, &kbad, &v, 4, 2, NULL, NULL, 1) && strstr(err_get(), "attention") &&
          strstr(err_get(), "[4, 6]") && strstr(err_get(), "[4, 16]"), "k head dims: %s", err_get());
    CHECK(!ag_attention(&c, &q, &k, &vbad, 4, 2, NULL, NULL, 1) && strstr(err_get(), "[5, 8]") &&
          strstr(err_get(), "[4, 8]"), "k vs v: %s", err_get());
    CHECK(!ag_attention(&c, &q, &k, &v, 4, 3, NULL, NULL, 1) && strstr(err_get(), "attention"), "H %% K: %s",
          err_get());
    int32_t e_big[4] = {1, 2, 3, 5}, b_rev[4] = {0, 0, 3, 0}, e_ok[4] = {1, 2, 2, 4};
    CHECK(!ag_attention(&c, &q, &k, &v, 4, 2, NULL, e_big, 1) && strstr(err_get(), "row 3") &&
          strstr(err_get(), "[0, 5)"), "kv_end > Nk: %s", err_get());
    CHECK(!ag_attention(&c, &q, &k, &v, 4, 2, b_rev, e_ok, 1) && strstr(err_get(), "row 2") &&
          strstr(err_get(), "[3, 2)"), "begin > end: %s", err_get());
    CHECK(!ag_attention(&c, &q, &kbig, &kbig, 4, 2, NULL, NULL, 1) && strstr(err_get(), "causal"),
          "causal with Nq > Nk: %s", err_get());
    CHECK(!ag_attention(&c, NULL, &k, &v, 4, 2, NULL, NULL, 1), "NULL input");
    ag_tensor x = ag_wrap2(buf, 3, 10, "x");
    int32_t pos[3] = {0, 1, 2};
    float inv[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(!ag_rope(&c, &x, 2, pos, inv) && strstr(err_get(), "rope") && strstr(err_get(), "[3, 10]"),
          "rope odd head dim: %s", err_get());
    CHECK(!ag_rope(&c, &x, 3, pos, inv) && strstr(err_get(), "rope"), "rope heads: %s", err_get());
    ag_ctx_free(&c);
}

// --- cross-entropy

typedef struct ce_args { const int32_t *targets; float norm; int chunk; } ce_args;

static ag_tensor *ce_fn(ag_ctx *c, ag_tensor **in, void *u) {
    ce_args *a = u;
    return ag_cross_entropy_chunked(c, in[0], in[1], a->targets, a->norm, a->chunk);
}

static void test_ce_gradcheck(void) {
    int N = 9, C = 6, V = 50;
    float *h = fill(N * C, 31), *W = fill(V * C, 32);
    for (int i = 0; i < N * C; i++) h[i] *= 2;
    int32_t t[9] = {3, -1, 49, 0, -1, 17, 16, 15, 33};
    int chunks[3] = {16, 7, 0};   // several chunks incl. a partial one, and the default
    for (int i = 0; i < 3; i++) {
        ce_args a = {t, 5.0f, chunks[i]};
        gc_input in[] = {{h, 2, {N, C}, 1}, {W, 2, {V, C}, 0}};
        CHECK(gradcheck("cross_entropy", ce_fn, &a, in, 2, 1e-3, 2e-3) == 0, "chunk %d", chunks[i]);
    }
    free(h), free(W);
}

static void test_ce_fixture(void) {
    fixture *f = fixture_load(FIX_DIR "ops_attn_ce.safetensors");
    if (!f) { CHECK(0, "fixture"); return; }
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 26);
    double worst[3] = {0};
    for (int ci = 0; ci < (int)fixture_meta(f, "ncases", 0); ci++) {
        char key[64];
        long hs[4], ws[4];
        snprintf(key, sizeof key, "c%d.h", ci);
        const float *h = fixture_raw(f, key, "F32", NULL, hs, NULL);
        snprintf(key, sizeof key, "c%d.W", ci);
        const float *W = fixture_raw(f, key, "F32", NULL, ws, NULL);
        snprintf(key, sizeof key, "c%d.targets", ci);
        const int32_t *t = fixture_i32(f, key, NULL);
        snprintf(key, sizeof key, "c%d.loss", ci);
        const float *loss = fixture_f32(f, key, NULL);
        snprintf(key, sizeof key, "c%d.dh", ci);
        const float *dh = fixture_f32(f, key, NULL);
        snprintf(key, sizeof key, "c%d.nll", ci);
        const float *nll = fixture_f32(f, key, NULL);
        snprintf(key, sizeof key, "c%d.norm", ci);
        float norm = (float)fixture_meta(f, key, 1);
        snprintf(key, sizeof key, "c%d.dloss", ci);
        float dloss = (float)fixture_meta(f, key, 1);
        if (!h || !W || !t || !loss || !dh || !nll) { CHECK(0, "case %d tensors", ci); continue; }
        long N = hs[0], C = hs[1], V = ws[0];
        float *hd = malloc((size_t)(N * C) * 4), *g = malloc((size_t)(N * C) * 4), *rows = malloc((size_t)N * 4);
        memcpy(hd, h, (size_t)(N * C) * 4);
        int chunks[4] = {0, 64, 7, (int)V};
        for (int k = 0; k < 4; k++) {
            ag_ctx_reset(&c);
            ag_tensor th = leaf(hd, N, C, g), tw = ag_wrap2((float *)W, V, C, "W");
            ag_tensor *L = ag_cross_entropy_chunked(&c, &th, &tw, t, norm, chunks[k]);
            CHECK(L && ag_backward_from(&c, L, &dloss) == 0, "case %d: %s", ci, err_get());
            if (!L) continue;
            double e1 = fabs(L->data[0] - loss[0]) / fabs(loss[0]), e2 = max_rel_err(g, dh, N * C, 1e-6);
            CHECK(e1 <= 1e-5, "case %d chunk %d: loss %.8g want %.8g", ci, chunks[k], L->data[0], loss[0]);
            CHECK(e2 <= 1e-4, "case %d chunk %d: dh rel err %.3g", ci, chunks[k], e2);
            CHECK(ag_nll_rows_chunked(&c, &th, &tw, t, rows, chunks[k]) == 0, "nll_rows: %s", err_get());
            double e3 = max_rel_err(rows, nll, N, 1e-6);
            CHECK(e3 <= 1e-5, "case %d chunk %d: nll rel err %.3g", ci, chunks[k], e3);
            worst[0] = fmax(worst[0], e1), worst[1] = fmax(worst[1], e2), worst[2] = fmax(worst[2], e3);
        }
        free(hd), free(g), free(rows);
    }
    printf("cross_entropy fixtures: loss rel err %.2e, dh rel err %.2e, nll_rows rel err %.2e\n", worst[0],
           worst[1], worst[2]);
    ag_ctx_free(&c);
    fixture_free(f);
}

static void test_ce_errors(void) {
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 24);
    float hb[12] = {0}, wb[20] = {0}, nll[3];
    ag_tensor h = ag_wrap2(hb, 3, 4, "h"), W = ag_wrap2(wb, 5, 4, "W"), Wbad = ag_wrap2(wb, 4, 5, "W");
    int32_t ok[3] = {0, -1, 4}, bad[3] = {0, 5, 1};
    ag_tensor *L = ag_cross_entropy(&c, &h, &W, ok, 2);
    CHECK(L && fabsf(L->data[0] - logf(5.0f)) < 1e-6f, "uniform logits: loss %g", L ? L->data[0] : -1);
    CHECK(!ag_cross_entropy(&c, &h, &W, bad, 2) && strstr(err_get(), "targets[1] = 5") &&
          strstr(err_get(), "[0, 5)"), "target out of range: %s", err_get());
    CHECK(ag_nll_rows(&c, &h, &W, bad, nll) != 0 && strstr(err_get(), "nll_rows") && strstr(err_get(), "targets[1]"),
          "nll_rows target out of range: %s", err_get());
    CHECK(!ag_cross_entropy(&c, &h, &Wbad, ok, 2) && strstr(err_get(), "[3, 4]") && strstr(err_get(), "[4, 5]"),
          "shape mismatch: %s", err_get());
    ag_tensor Wg = W;
    Wg.requires_grad = 1;
    CHECK(!ag_cross_entropy(&c, &h, &Wg, ok, 2) && strstr(err_get(), "frozen"), "W with grad: %s", err_get());
    CHECK(!ag_cross_entropy(&c, &h, &W, ok, 0) && strstr(err_get(), "normalizer"), "norm 0: %s", err_get());
    int32_t none[3] = {-1, -1, -1};
    L = ag_cross_entropy(&c, &h, &W, none, 2);
    CHECK(L && L->data[0] == 0, "no supervised rows: loss 0");
    ag_ctx_free(&c);
}

// backward kernels accumulate (+=) into existing gradients: two passes give twice one pass
static void test_accumulates(void) {
    int N = 40, H = 4, K = 2, D = 8, V = 30;
    float *q = fill(N * H * D, 41), *k = fill(N * K * D, 42), *v = fill(N * K * D, 43), *W = fill(V * H * D, 44);
    float *dout = fill(N * H * D, 45), *g[3], *once[3];
    int64_t n[3] = {N * H * D, N * K * D, N * K * D};
    for (int j = 0; j < 3; j++) g[j] = malloc((size_t)n[j] * 4), once[j] = malloc((size_t)n[j] * 4);
    int32_t pos[40], tgt[40];
    float inv[4] = {1, 0.5f, 0.25f, 0.125f};
    for (int i = 0; i < N; i++) pos[i] = i, tgt[i] = i % 3 ? (i * 7) % V : -1;
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 26);
    ag_tensor tq = leaf(q, N, H * D, g[0]), tk = leaf(k, N, K * D, g[1]), tv = leaf(v, N, K * D, g[2]);
    ag_tensor tw = ag_wrap2(W, V, H * D, "W");
    for (int pass = 0; pass < 2; pass++) {
        ag_ctx_reset(&c);
        ag_tensor *qr = ag_rope(&c, &tq, H, pos, inv);
        ag_tensor *o = ag_attention(&c, qr, &tk, &tv, H, K, NULL, NULL, 0.5f);
        ag_tensor *L = ag_cross_entropy_chunked(&c, o, &tw, tgt, 7.0f, 8);
        CHECK(L && ag_backward(&c, L) == 0, "%s", err_get());
        if (pass == 0)
            for (int j = 0; j < 3; j++) memcpy(once[j], g[j], (size_t)n[j] * 4);
    }
    for (int j = 0; j < 3; j++) {
        double e = 0;
        for (int64_t i = 0; i < n[j]; i++) e = fmax(e, fabs(g[j][i] - 2 * once[j][i]));
        CHECK(e <= 1e-6 * fmax(1, fabs(once[j][0])), "input %d: second pass did not accumulate (err %.3g)", j, e);
    }
    for (int j = 0; j < 3; j++) free(g[j]), free(once[j]);
    free(q), free(k), free(v), free(W), free(dout);
    ag_ctx_free(&c);
}

int main(void) {
    RUN(test_rope_gradcheck);
    RUN(test_rope_fixture);
    RUN(test_attention_gradcheck);
    RUN(test_attention_fixture);
    RUN(test_attention_deterministic);
    RUN(test_attention_memory);
    RUN(test_attention_timing);
    RUN(test_attention_errors);
    RUN(test_ce_gradcheck);
    RUN(test_ce_fixture);
    RUN(test_ce_errors);
    RUN(test_accumulates);
    return test_summary();
}
