// test_hostile_sample.c — gen_sample on hostile logits (issue 16, item 3): NaN / +Inf / all
// -Inf are one error (never a token read from outside the candidate list), and tied maxima
// under a small top_p still give a valid token (the nucleus pre-filter once cut them all).
#include "generate.h"
#include "test.h"

static int32_t sample_once(float *logits, int V, float T, int top_k, float top_p) {
    gen_opts o = {.max_new_tokens = 1, .temperature = T, .top_k = top_k, .top_p = top_p, .seed = 7};
    gen_sampler s;
    gen_sampler_init(&s, V, &o);
    err_clear();
    int32_t id = gen_sample(&s, logits);
    gen_sampler_free(&s);
    return id;
}

static void test_non_finite_is_an_error(void) {
    const float T[3] = {0.0f, 0.7f, 1.0f};
    const float P[3] = {1.0f, 0.9f, 0.1f};
    for (int k = 0; k < 3; k++) {
        float nan_l[5] = {0.1f, NAN, 0.3f, 0.2f, 0.0f};
        CHECK(sample_once(nan_l, 5, T[k], 0, P[k]) == -1, "NaN logits sampled (T %g)", T[k]);
        CHECK(strstr(err_get(), "not finite") != NULL, "message: %s", err_get());
        float all_nan[4] = {NAN, NAN, NAN, NAN};
        CHECK(sample_once(all_nan, 4, T[k], 2, P[k]) == -1, "all-NaN logits sampled (T %g)", T[k]);
        float inf_l[4] = {0.0f, INFINITY, 1.0f, 2.0f};
        CHECK(sample_once(inf_l, 4, T[k], 0, P[k]) == -1, "+Inf logits sampled (T %g)", T[k]);
        float ninf[3] = {-INFINITY, -INFINITY, -INFINITY};
        CHECK(sample_once(ninf, 3, T[k], 0, P[k]) == -1, "all -Inf logits sampled (T %g)", T[k]);
        CHECK(strstr(err_get(), "-inf") != NULL, "message: %s", err_get());
    }
    float some_ninf[3] = {-INFINITY, 1.0f, -INFINITY};   // a token that cannot come is fine
    CHECK(sample_once(some_ninf, 3, 1.0f, 0, 0.9f) == 1, "-Inf logits elsewhere");
}

static void test_tied_maxima_small_top_p(void) {
    for (int V = 2; V <= 64; V *= 2) {
        float *l = malloc((size_t)V * sizeof *l);
        for (int ties = 2; ties <= V; ties++) {
            for (int i = 0; i < V; i++) l[i] = i < ties ? 3.0f : -2.0f;
            int32_t id = sample_once(l, V, 1.0f, 0, 0.05f);
            CHECK(id >= 0 && id < ties, "V %d, %d tied maxima, top_p 0.05: token %d", V, ties, id);
            for (int i = 0; i < V; i++) l[i] = i < ties ? 3.0f : -2.0f;
            id = sample_once(l, V, 1.0f, ties, 0.5f);
            CHECK(id >= 0 && id < ties, "V %d, %d tied maxima, top_k %d, top_p 0.5: token %d", V, ties, ties, id);
        }
        free(l);
    }
}

int main(void) {
    RUN(test_non_finite_is_an_error);
    RUN(test_tied_maxima_small_top_p);
    return test_summary();
}
