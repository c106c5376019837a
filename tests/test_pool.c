// test_pool.c — visual-token pooling (projector.pool) against PyTorch (tests/gen_pool.py):
// avg equals torch.nn.AdaptiveAvgPool1d bit for bit (forward and dx), the linear pool +
// mlp2x_gelu projector gradients match to 1e-5, bins, the avg init of the linear pool, and
// the projector folder recording / checking the pool.
#include <sys/stat.h>

#include "ag.h"
#include "fixture.h"
#include "projector.h"
#include "test.h"
#include "util.h"

static fixture *fx;

// A parameter block holding one copy of a fixture tensor (so it gets a gradient).
static ag_tensor *leaf(ag_params *blk, const char *name, int64_t d0, int64_t d1) {
    int64_t shape[2] = {d0, d1};
    ag_tensor *t = ag_params_add(blk, name, 2, shape);
    return t;
}

static void test_bins(void) {
    int64_t s, e;
    ag_pool_bin(7, 3, 0, &s, &e);
    CHECK(s == 0 && e == 3, "P=7 N=3 bin 0 = [%lld, %lld), want [0, 3)", (long long)s, (long long)e);
    ag_pool_bin(7, 3, 1, &s, &e);
    CHECK(s == 2 && e == 5, "P=7 N=3 bin 1 = [%lld, %lld), want [2, 5) (overlapping)", (long long)s, (long long)e);
    ag_pool_bin(7, 3, 2, &s, &e);
    CHECK(s == 4 && e == 7, "P=7 N=3 bin 2 = [%lld, %lld), want [4, 7)", (long long)s, (long long)e);
    ag_pool_bin(196, 196, 195, &s, &e);
    CHECK(s == 195 && e == 196, "N=P is the identity");
    ag_pool_bin(729, 1, 0, &s, &e);
    CHECK(s == 0 && e == 729, "N=1 averages everything");
}

// AdaptiveAvgPool1d: torch sums the bin in fp32 in patch order and divides once; so does
// ag_avgpool_rows, so y and dx (grad / |bin|, accumulated in bin order) are compared exactly.
static void test_avg_torch(void) {
    static const int cases[][2] = {{196, 16}, {196, 49}, {729, 64}, {729, 81}, {7, 3}, {7, 5}, {7, 7}};
    const int B = 2, C = 3;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int P = cases[k][0], N = cases[k][1];
        char key[64];
#define FX(name) (snprintf(key, sizeof key, "avg.%d.%d.%s", P, N, name), fixture_f32(fx, key, NULL))
        const float *x = FX("x"), *y = FX("y"), *dout = FX("dout"), *dx = FX("dx");
        if (!x || !y || !dout || !dx) return;
        ag_params blk = {0};
        ag_tensor *xt = leaf(&blk, "x", (int64_t)B * P, C);
        ag_params_alloc(&blk);
        memcpy(xt->data, x, sizeof(float) * B * P * C);
        ag_params_zero_grad(&blk);
        ag_ctx c;
        ag_ctx_init(&c, (size_t)1 << 24);
        ag_tensor *yt = ag_avgpool_rows(&c, xt, P, N);
        CHECK(yt && yt->shape[0] == (int64_t)B * N && yt->shape[1] == C, "P=%d N=%d: %s", P, N, err_get());
        if (yt) {
            CHECK(!memcmp(yt->data, y, sizeof(float) * B * N * C), "P=%d N=%d: y differs from torch (max rel %.2e)", P,
                  N, max_rel_err(yt->data, y, (long)B * N * C, 1e-6));
            CHECK(ag_backward_from(&c, yt, dout) == 0, "backward: %s", err_get());
            CHECK(!memcmp(xt->grad, dx, sizeof(float) * B * P * C), "P=%d N=%d: dx differs from torch (max rel %.2e)",
                  P, N, max_rel_err(xt->grad, dx, (long)B * P * C, 1e-6));
        }
        // the no-tape forward is the same arithmetic
        float *y2 = xmalloc(sizeof(float) * B * N * C);
        ag_avgpool_rows_fwd(y2, x, B, P, N, C);
        CHECK(!memcmp(y2, y, sizeof(float) * B * N * C), "P=%d N=%d: ag_avgpool_rows_fwd differs", P, N);
        free(y2);
        ag_ctx_free(&c);
        ag_params_free(&blk);
#undef FX
    }
    ag_ctx c;
    ag_ctx_init(&c, 1 << 20);
    ag_tensor *x = ag_zeros2(&c, 10, 3);
    CHECK(!ag_avgpool_rows(&c, x, 7, 3) && strstr(err_get(), "avgpool"), "10 rows are not whole images of 7: %s",
          err_get());
    CHECK(!ag_avgpool_rows(&c, x, 5, 6), "N > P is refused");
    ag_ctx_free(&c);
}

// Linear pool + mlp2x_gelu projector, forward and every gradient against torch. 1e-5: both
// sides accumulate in fp32 (sgemm vs torch's kernels) over at most 7 terms per dot product;
// observed ~1e-7.
static void test_linear_torch(void) {
    const int B = 2, P = 7, N = 3, Cv = 6, Ct = 5;
    projector p;
    CHECK(projector_create_pooled(&p, "mlp2x_gelu", Cv, Ct, "linear", P, N, 3) == 0, "%s", err_get());
    CHECK(p.pw && p.pb && projector_rows(&p) == N, "a linear pool has W, b and N rows");
    const float *avg = fixture_f32(fx, "lin.avg", NULL);
    if (!avg || !p.pw) return;
    CHECK(!memcmp(p.pw->data, avg, sizeof(float) * N * P), "the linear pool starts as the avg matrix");
    for (int i = 0; i < N; i++) CHECK(p.pb->data[i] == 0.0f, "bias starts at 0");
    const char *names[][2] = {{"model.mm_projector.0.weight", "w1"}, {"model.mm_projector.0.bias", "b1"},
                              {"model.mm_projector.2.weight", "w2"}, {"model.mm_projector.2.bias", "b2"},
                              {"model.mm_pool.weight", "W"}, {"model.mm_pool.bias", "b"}};
    char key[64];
    for (int i = 0; i < 6; i++) {
        ag_tensor *t = ag_params_find(&p.params, names[i][0]);
        snprintf(key, sizeof key, "lin.%s", names[i][1]);
        long n = 0;
        const float *d = fixture_f32(fx, key, &n);
        CHECK(t && d && n == t->numel, "%s", names[i][0]);
        if (t && d && n == t->numel) memcpy(t->data, d, sizeof(float) * n);
    }
    ag_params xb = {0};
    ag_tensor *x = leaf(&xb, "x", (int64_t)B * P, Cv);
    ag_params_alloc(&xb);
    memcpy(x->data, fixture_f32(fx, "lin.x", NULL), sizeof(float) * B * P * Cv);
    ag_params_zero_grad(&xb);
    ag_params_zero_grad(&p.params);
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 24);
    ag_tensor *y = projector_forward(&c, &p, projector_pool(&c, &p, x));
    CHECK(y && y->shape[0] == B * N && y->shape[1] == Ct, "forward: %s", err_get());
    if (!y) return;
    double e = max_rel_err(y->data, fixture_f32(fx, "lin.y", NULL), (long)B * N * Ct, 1e-6);
    CHECK(e <= 1e-5, "y rel err %.2e", e);
    CHECK(ag_backward_from(&c, y, fixture_f32(fx, "lin.dout", NULL)) == 0, "%s", err_get());
    double worst = 0;
    for (int i = 0; i < 6; i++) {
        ag_tensor *t = ag_params_find(&p.params, names[i][0]);
        snprintf(key, sizeof key, "lin.d%s", names[i][1]);
        double r = max_rel_err(t->grad, fixture_f32(fx, key, NULL), (long)t->numel, 1e-6);
        CHECK(r <= 1e-5, "gradient of %s rel err %.2e", names[i][0], r);
        if (r > worst) worst = r;
    }
    double rx = max_rel_err(x->grad, fixture_f32(fx, "lin.dx", NULL), (long)B * P * Cv, 1e-6);
    CHECK(rx <= 1e-5, "dx rel err %.2e", rx);
    printf("# linear pool + projector: y rel err %.2e, worst parameter gradient %.2e, dx %.2e\n", e, worst, rx);
    // no-tape pooling equals the tape's
    float *pooled = xmalloc(sizeof(float) * B * N * Cv);
    projector_pool_plain(&p, x->data, B, pooled);
    ag_ctx_reset(&c);
    ag_tensor *pt = projector_pool(&c, &p, x);
    CHECK(pt && !memcmp(pooled, pt->data, sizeof(float) * B * N * Cv), "projector_pool_plain == projector_pool");
    free(pooled);
    ag_ctx_free(&c);
    ag_params_free(&xb);
    projector_free(&p);
}

static int write_text(const char *path, const char *txt) { return file_write_atomic(path, txt, strlen(txt)); }

// The folder records the pool; loading reads it back and refuses files that disagree.
static void test_folder(void) {
    const char *dir = test_tmpdir("test_pool");
    char pdir[600], cfg[700], buf[1024];
    snprintf(pdir, sizeof pdir, "%s/lin", dir);
    projector p, q;
    CHECK(projector_create_pooled(&p, "linear", 6, 5, "linear", 7, 3, 1) == 0, "%s", err_get());
    p.pw->data[4] = 0.25f;
    CHECK(projector_save(&p, pdir, -2, 7) == 0, "save: %s", err_get());
    CHECK(projector_load(&q, pdir) == 0, "load: %s", err_get());
    CHECK(q.pool == POOL_LINEAR && q.pool_tokens == 3 && q.num_patches == 7 && projector_rows(&q) == 3,
          "pool read back: %s %d of %d", projector_pool_name(q.pool), q.pool_tokens, q.num_patches);
    CHECK(q.pw && q.pw->data[4] == 0.25f, "pool weights read back");
    projector_free(&q);
    snprintf(cfg, sizeof cfg, "%s/projector_config.json", pdir);
    char *txt = file_read_all(cfg, NULL);
    CHECK(txt && strstr(txt, "\"pool_type\":\t\"linear\"") && strstr(txt, "\"pool_tokens\":\t3"), "config: %s", txt);
    // a config that says avg while the file holds the linear pool's tensors
    snprintf(buf, sizeof buf, "{\"projector_type\": \"linear\", \"select_layer\": -2, \"vision_hidden_size\": 6, "
                              "\"text_hidden_size\": 5, \"num_patches\": 7, \"pool_type\": \"avg\", \"pool_tokens\": 3}");
    write_text(cfg, buf);
    CHECK(projector_load(&q, pdir) != 0 && strstr(err_get(), "unexpected tensor 'model.mm_pool.") && strstr(err_get(), "pool_type"),
          "avg config + linear tensors: %s", err_get());
    // tokens that disagree with the tensor's shape
    snprintf(buf, sizeof buf, "{\"projector_type\": \"linear\", \"select_layer\": -2, \"vision_hidden_size\": 6, "
                              "\"text_hidden_size\": 5, \"num_patches\": 7, \"pool_type\": \"linear\", \"pool_tokens\": 4}");
    write_text(cfg, buf);
    CHECK(projector_load(&q, pdir) != 0 && strstr(err_get(), "model.mm_pool.weight") && strstr(err_get(), "[4, 7]"),
          "tokens 4 vs a [3, 7] tensor: %s", err_get());
    snprintf(buf, sizeof buf, "{\"projector_type\": \"linear\", \"select_layer\": -2, \"vision_hidden_size\": 6, "
                              "\"text_hidden_size\": 5, \"num_patches\": 7, \"pool_type\": \"max\", \"pool_tokens\": 3}");
    write_text(cfg, buf);
    CHECK(projector_load(&q, pdir) != 0 && strstr(err_get(), "pool_type"), "unknown pool: %s", err_get());
    snprintf(buf, sizeof buf, "{\"projector_type\": \"linear\", \"select_layer\": -2, \"vision_hidden_size\": 6, "
                              "\"text_hidden_size\": 5, \"num_patches\": 7, \"pool_type\": \"linear\", \"pool_tokens\": 9}");
    write_text(cfg, buf);
    CHECK(projector_load(&q, pdir) != 0 && strstr(err_get(), "pool_tokens"), "tokens > patches: %s", err_get());
    free(txt);
    projector_free(&p);
    // an avg pool has no tensors of its own; a folder without pool_type is `none`
    snprintf(pdir, sizeof pdir, "%s/avg", dir);
    CHECK(projector_create_pooled(&p, "linear", 6, 5, "avg", 196, 16, 1) == 0, "%s", err_get());
    CHECK(p.params.n == 2 && projector_rows(&p) == 16, "avg: 2 tensors, 16 rows");
    CHECK(projector_save(&p, pdir, -2, 196) == 0 && projector_load(&q, pdir) == 0, "%s", err_get());
    CHECK(q.pool == POOL_AVG && q.pool_tokens == 16, "avg read back");
    projector_free(&q);
    projector_free(&p);
    CHECK(projector_create_pooled(&p, "linear", 6, 5, "avg", 7, 8, 1) != 0 && strstr(err_get(), "tokens"),
          "8 tokens from 7 patches: %s", err_get());
}

int main(void) {
    fx = fixture_load("tests/fixtures/pool_ref.safetensors");
    RUN(test_bins);
    RUN(test_avg_torch);
    RUN(test_linear_torch);
    RUN(test_folder);
    fixture_free(fx);
    return test_summary();
}
