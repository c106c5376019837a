// cmd_bench.c — `lorac bench WHAT --model DIR ...`: the measurements behind `make bench`,
// printed as one JSON object so scripts/bench.sh can put them beside PyTorch's.
//   sgemm   plain cblas_sgemm GFLOP/s on the Llama-3.2-1B projection shapes (T x C x C, T x I x C)
//   lora    one LoRA training step (forward, fused loss, backward, AdamW), rank 16 on all seven
//           projections, batch 1 x T tokens; --supervised all|half
//   eval    no-grad forward + per-token NLL over one window of T tokens
//   siglip  no-grad SigLIP vision forward (last hidden state) of a batch of random images
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "lora.h"
#include "siglip.h"
#include "trainer.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

// FLOPs of the model's matmuls for T rows (forward), attention included, lm-head for `sup` rows
static double model_flops(const hf_llama_config *c, double T, double sup) {
    double C = c->hidden_size, F = c->intermediate_size, nh = c->num_heads, nkv = c->num_kv_heads, hd = c->head_dim;
    double lin = C * (nh * hd + 2 * nkv * hd) + nh * hd * C + 3 * C * F;
    double attn = 2.0 * T * T * nh * hd;   // causal: half of 2·(QKᵀ + PV)
    return c->num_layers * (2.0 * T * lin + attn) + 2.0 * sup * c->vocab_size * C;
}

// One pass of plain cblas_sgemm over the projection shapes with x[T,F], w[F,C], y[T,F]:
// q/o-like (T x C x C), gate/up-like (T x F x C), dx-like (T x C x F). Returns GFLOP/s.
static double sgemm_pass(int T, int C, int F, const float *x, const float *w, float *y) {
    double t0 = now_seconds();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, C, C, 1, x, C, w, C, 0, y, C);    // q/o-like
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, F, C, 1, x, C, w, C, 0, y, F);    // gate/up-like
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, C, F, 1, x, F, w, C, 0, y, C);  // dx-like
    return 2.0 * T * ((double)C * C + 2.0 * F * C) / (now_seconds() - t0) / 1e9;
}

static double bench_sgemm(int T, int iters) {
    int C = 2048, F = 8192;
    float *x = xcalloc((size_t)T * F, 4), *w = xcalloc((size_t)F * C, 4), *y = xcalloc((size_t)T * F, 4);
    for (size_t i = 0; i < (size_t)F * C; i++) w[i] = 0.01f * (float)(i % 7);
    for (size_t i = 0; i < (size_t)T * F; i++) x[i] = 0.01f * (float)(i % 5);
    double *g = xmalloc((size_t)iters * sizeof *g);
    for (int it = 0; it <= iters; it++) {
        double gf = sgemm_pass(T, C, F, x, w, y);
        if (it) g[it - 1] = gf;
    }
    double r = median(g, iters);
    free(x), free(w), free(y), free(g);
    return r;
}

// FLOPs of one SigLIP forward over B images: the patch conv, the linears and attention
static double siglip_flops(const hf_siglip_config *c, double B) {
    double C = c->hidden_size, Fi = c->intermediate_size, P = c->num_patches, N = B * P;
    double pin = (double)c->num_channels * c->patch_size * c->patch_size;
    double per_layer = 2.0 * N * (4.0 * C * C + 2.0 * C * Fi) + 4.0 * B * P * P * C;
    return 2.0 * N * pin * C + c->num_layers * per_layer;
}

static int bench_siglip(const char *dir, int B, int iters) {
    siglip_model m;
    if (siglip_load(dir, &m) != 0) return cli_fail();
    const hf_siglip_config *cfg = &m.cfg;
    int64_t S = cfg->image_size, N = (int64_t)B * cfg->num_patches;
    float *px = xmalloc((size_t)(B * 3 * S * S) * sizeof *px), *out = xmalloc((size_t)(N * cfg->hidden_size) * 4);
    uint64_t rng = 11;
    for (int64_t i = 0; i < B * 3 * S * S; i++) px[i] = 2.0f * ag_rng_uniform(&rng) - 1.0f;
    ag_ctx c;
    if (ag_ctx_init(&c, siglip_arena_bytes(&m, B)) != 0) return cli_fail();
    double *t = xmalloc((size_t)iters * sizeof *t);
    for (int it = 0; it <= iters; it++) {
        double t0 = now_seconds();
        ag_ctx_reset(&c);
        if (siglip_features(&c, &m, px, B, -1, out) != 0) return cli_fail();
        if (it) t[it - 1] = now_seconds() - t0;
    }
    double sec = median(t, iters);
    printf("{\"impl\": \"lorac\", \"bench\": \"siglip\", \"batch\": %d, \"sec\": %.4f, \"images_per_s\": %.2f, "
           "\"gflops\": %.1f, \"peak_rss_mb\": %.0f, \"arena_high_mb\": %.0f}\n",
           B, sec, B / sec, siglip_flops(cfg, B) / sec / 1e9, peak_rss_mb(), c.arena.high / 1048576.0);
    free(px), free(out), free(t);
    ag_ctx_free(&c);
    siglip_free(&m);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2) return cli_usage("bench", "expected sgemm, lora, eval or siglip");
    const char *what = argv[1], *model = NULL, *sup = "all", *vision = NULL;
    int T = 512, iters = 3, r = 16, batch = 8;
    for (int i = 2; i < argc; i++) {
        int has = i + 1 < argc;
        if (!strcmp(argv[i], "--model") && has) model = argv[++i];
        else if (!strcmp(argv[i], "--tokens") && has) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && has) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rank") && has) r = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--supervised") && has) sup = argv[++i];
        else if (!strcmp(argv[i], "--vision") && has) vision = argv[++i];
        else if (!strcmp(argv[i], "--batch") && has) batch = atoi(argv[++i]);
        else return cli_usage("bench", "unknown or incomplete option '%s'", argv[i]);
    }
    if (T < 2 || iters < 1 || r < 1) return cli_usage("bench", "--tokens >= 2, --iters >= 1 and --rank >= 1 required");
    if (strcmp(sup, "all") && strcmp(sup, "half")) return cli_usage("bench", "--supervised: expected all or half");
    if (!strcmp(what, "sgemm")) {
        printf("{\"impl\": \"lorac\", \"bench\": \"sgemm\", \"tokens\": %d, \"gflops\": %.1f}\n", T, bench_sgemm(T, iters));
        return 0;
    }
    if (!strcmp(what, "siglip")) {
        if (!vision) return cli_usage("bench", "siglip: --vision DIR is required");
        if (batch < 1) return cli_usage("bench", "--batch >= 1 required");
        return bench_siglip(vision, batch, iters);
    }
    if (strcmp(what, "lora") && strcmp(what, "eval")) return cli_usage("bench", "unknown benchmark '%s'", what);
    if (!model) return cli_usage("bench", "--model DIR is required");
    llama_model m;
    if (llama_load(model, &m) != 0) return cli_fail();
    int train = !strcmp(what, "lora");
    lora_adapter lora = {0};
    lora_config lc = {.r = r, .alpha = 2.0f * r, .dropout = 0.05f, .targets = (1u << LLAMA_NPROJ) - 1};
    if (train && lora_create(&lora, &m.cfg, &lc, 1) != 0) return cli_fail();
    // B non-zero so every LoRA product is real work
    for (int i = 0; train && i < lora.params.n; i++)
        if (strstr(lora.params.t[i]->name, "lora_B"))
            for (int64_t j = 0; j < lora.params.t[i]->numel; j++) lora.params.t[i]->data[j] = 1e-3f;
    ag_adamw opt = {0};
    if (train) ag_adamw_init(&opt, lora.params.total, 0.9f, 0.999f, 1e-8f, 0);
    ag_ctx c;
    if (ag_ctx_init(&c, (size_t)16 << 30) != 0) return cli_fail();
    c.training = train;
    ag_set_grad(&c, train);
    data_batch b = {0};
    b.n = T;
    b.ids = xmalloc((size_t)T * 4), b.pos = xmalloc((size_t)T * 4), b.kv_begin = xcalloc((size_t)T, 4),
    b.targets = xmalloc((size_t)T * 4);
    uint64_t rng = 7;
    for (int i = 0; i < T; i++) {
        b.ids[i] = (int32_t)(ag_rng_next(&rng) % (uint64_t)m.cfg.vocab_size);
        b.pos[i] = i;
    }
    for (int i = 0; i < T; i++) {
        b.targets[i] = i + 1 < T && (!strcmp(sup, "all") || i >= T / 2) ? b.ids[i + 1] : -1;
        b.n_supervised += b.targets[i] >= 0;
    }
    double *t = xmalloc((size_t)iters * sizeof *t), loss = 0, gn;
    float *nll = xmalloc((size_t)T * 4);
    // plain sgemm measured after every step, in the same process and time window (the machine's
    // load drifts; the %-of-sgemm figure compares like with like). w: a gate projection [F, C].
    int C = (int)m.cfg.hidden_size, F = (int)m.cfg.intermediate_size;
    float *sx = xcalloc((size_t)T * F, 4), *sy = xcalloc((size_t)T * F, 4);
    for (size_t i = 0; i < (size_t)T * F; i++) sx[i] = 0.01f * (float)(i % 5);
    double *sg = xmalloc((size_t)iters * sizeof *sg);
    for (int it = 0; it <= iters; it++) {
        double t0 = now_seconds();
        if (train) {
            ag_params_zero_grad(&lora.params);
            loss = 0;
            if (train_micro_step(&c, &m, &lora.view, &b, (float)b.n_supervised, &loss) != 0 ||
                train_opt_step(&opt, &lora.params, 1e-5f, 1.0f, &gn) != 0)
                return cli_fail();
        } else {
            ag_ctx_reset(&c);
            ag_tensor *h = llama_forward(&c, &m, NULL, b.ids, NULL, T, b.pos, b.kv_begin);
            if (!h || ag_nll_rows(&c, h, &m.w.lm_head, b.targets, nll) != 0) return cli_fail();
            loss = 0;   // mean NLL of the supervised tokens (as PyTorch's baseline prints)
            for (int i = 0; i < T; i++) loss += nll[i];
            loss /= b.n_supervised > 0 ? b.n_supervised : 1;
        }
        if (it) t[it - 1] = now_seconds() - t0;
        double gf = sgemm_pass(T, C, F, sx, m.w.layers[0].proj[LLAMA_GATE].data, sy);
        if (it) sg[it - 1] = gf;
    }
    double sec = median(t, iters), sgemm = median(sg, iters);
    free(sx), free(sy), free(sg);
    // training: forward + backward (dx of every matmul, no dW of frozen weights)
    double flops = model_flops(&m.cfg, T, (double)b.n_supervised) * (train ? 2.0 : 1.0);
    printf("{\"impl\": \"lorac\", \"bench\": \"%s\", \"supervised\": \"%s\", \"tokens\": %d, \"sec\": %.4f, "
           "\"tokens_per_s\": %.2f, \"gflops\": %.1f, \"sgemm_gflops\": %.1f, \"peak_rss_mb\": %.0f, \"arena_high_mb\": %.0f, "
           "\"loss\": %.4f}\n",
           what, sup, T, sec, T / sec, flops / sec / 1e9, sgemm, peak_rss_mb(), c.arena.high / 1048576.0, loss);
    return 0;
}
