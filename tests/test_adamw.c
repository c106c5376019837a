// test_adamw.c — AdamW and gradient clipping against torch.optim.AdamW and
// torch.nn.utils.clip_grad_norm_ over 20 steps of a stored gradient sequence
// (tests/gen_ops_attn.py -> tests/fixtures/ops_attn_adamw.safetensors).
#include <omp.h>

#include "ag.h"
#include "fixture.h"
#include "test.h"

static void test_adamw_fixture(void) {
    fixture *f = fixture_load("tests/fixtures/ops_attn_adamw.safetensors");
    if (!f) { CHECK(0, "fixture"); return; }
    int steps = (int)fixture_meta(f, "steps", 0), n = (int)fixture_meta(f, "n", 0);
    const float *p0 = fixture_f32(f, "p0", NULL), *grads = fixture_f32(f, "grads", NULL);
    const float *lrs = fixture_f32(f, "lrs", NULL);
    if (!p0 || !grads || !lrs || steps <= 0 || n <= 0) { CHECK(0, "fixture tensors"); fixture_free(f); return; }
    float *p = malloc((size_t)n * 4), *g = malloc((size_t)n * 4);
    for (int ci = 0; ci < (int)fixture_meta(f, "ncases", 0); ci++) {
        char key[64];
#define META(name) (snprintf(key, sizeof key, "c%d." name, ci), fixture_meta(f, key, -1))
        float wd = (float)META("wd"), b1 = (float)META("beta1"), b2 = (float)META("beta2"), eps = (float)META("eps");
        double clip = META("clip");
#undef META
        snprintf(key, sizeof key, "c%d.traj", ci);
        const float *traj = fixture_f32(f, key, NULL);
        const float *norms = NULL;
        if (clip > 0) snprintf(key, sizeof key, "c%d.norms", ci), norms = fixture_f32(f, key, NULL);
        if (!traj || (clip > 0 && !norms)) { CHECK(0, "case %d tensors", ci); continue; }
        ag_adamw o;
        CHECK(ag_adamw_init(&o, n, b1, b2, eps, wd) == 0, "init: %s", err_get());
        memcpy(p, p0, (size_t)n * 4);
        double worst = 0, worst_norm = 0;
        for (int t = 0; t < steps; t++) {
            memcpy(g, grads + (size_t)t * n, (size_t)n * 4);
            if (clip > 0) {
                double norm = ag_clip_grad_norm(g, n, clip);
                double e = fabs(norm - norms[t]) / norms[t];
                CHECK(e <= 1e-6, "case %d step %d: grad norm %.9g want %.9g", ci, t, norm, norms[t]);
                worst_norm = fmax(worst_norm, e);
            }
            ag_adamw_step(&o, p, g, lrs[t]);
            double e = max_rel_err(p, traj + (size_t)t * n, n, 1e-6);
            CHECK(e <= 1e-6, "case %d step %d: params rel err %.3g", ci, t, e);
            worst = fmax(worst, e);
        }
        CHECK(o.t == steps, "step count %lld", (long long)o.t);
        printf("adamw case %d (wd %g, betas %g/%g, clip %g): worst param rel err %.2e over %d steps, "
               "grad norm rel err %.2e\n", ci, (double)wd, (double)b1, (double)b2, clip, worst, steps, worst_norm);
        ag_adamw_free(&o);
    }
    free(p), free(g);
    fixture_free(f);
}

static void test_clip_and_norm(void) {
    int64_t n = 100003;
    float *g = malloc((size_t)n * 4);
    double ref = 0;
    for (int64_t i = 0; i < n; i++) g[i] = (float)((i % 7) - 3) * 0.01f, ref += (double)g[i] * g[i];
    ref = sqrt(ref);
    int nth = omp_get_max_threads();
    omp_set_num_threads(1);
    double a = ag_grad_norm(g, n);
    omp_set_num_threads(nth > 1 ? nth : 2);
    double b = ag_grad_norm(g, n);
    omp_set_num_threads(nth);
    CHECK(a == b, "grad norm differs across thread counts: %.17g vs %.17g", a, b);
    CHECK(fabs(a - ref) <= 1e-12 * ref, "grad norm %.17g want %.17g", a, ref);
    // under the limit: untouched; over: scaled to max_norm / (norm + 1e-6)
    float keep = g[5];
    CHECK(ag_clip_grad_norm(g, n, ref * 2) == a && g[5] == keep, "no clipping below max_norm");
    double before = ag_clip_grad_norm(g, n, 1.0);
    CHECK(fabs(ag_grad_norm(g, n) - 1.0 / (1 + 1e-6 / before)) < 1e-6, "clipped norm %.9g", ag_grad_norm(g, n));
    free(g);
    ag_adamw o;
    CHECK(ag_adamw_init(&o, 4, 1.5f, 0.9f, 1e-8f, 0) != 0 && strstr(err_get(), "adamw"), "bad beta1: %s",
          err_get());
}

int main(void) {
    RUN(test_adamw_fixture);
    RUN(test_clip_and_norm);
    return test_summary();
}
