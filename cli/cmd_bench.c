// cmd_bench.c — `lorac bench WHAT ...`: the measurements behind `make bench`, printed as JSON
// lines so scripts/bench.sh can put them beside PyTorch's (scripts/bench_torch.py).
//   gemm    plain GEMM ceilings on the Llama-3.2-1B projection shapes (T x C x C, T x F x C,
//           T x C x F): cblas_sgemm (fp32) and a oneDNN BF16 matmul (bf16 operands, fp32 out)
//   lora    one LoRA training step (forward, fused loss, backward, AdamW), rank R on all seven
//           projections, batch 1 x T tokens; --supervised all|half (half: the first half is an
//           unsupervised prompt)
//   eval    no-grad forward + per-token NLL over one window of T tokens
//   siglip  no-grad SigLIP vision forward (last hidden state) of a batch of random images
// Every model benchmark times its step, then runs both plain GEMM ceilings on the model's own
// projection shapes in the same process and time window (the machine's load drifts; "% of
// plain GEMM" compares like with like). The ceiling buffers count in peak_rss_mb and are
// reported as ceiling_mb.
// --no-ceilings (lora, eval): skip the ceilings, so peak_rss_mb is the step's alone (the memory
// rows of scripts/bench_mem.sh); --checkpointing (lora): train.activation_checkpointing on.
// --interleave: before each iteration (warm-up included) wait for one line on stdin, after it
// print {"iter": ...}; scripts/bench.sh uses it to make lorac and PyTorch take turns step by
// step. The last line is always the summary object.
#include <cblas.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "blas.h"
#include "cli.h"
#include "opts.h"
#include "lora.h"
#include "mm16.h"
#include "safetensors.h"
#include "siglip.h"
#include "trainer.h"

// --- statistics and process facts

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
// median, min and max of v[n] (sorts v)
static void spread(double *v, int n, double *med, double *lo, double *hi) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    *lo = v[0], *hi = v[n - 1];
}
static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}
// The file of the first mapping whose path contains `lib` (e.g. which libopenblas was loaded),
// or "none"; quotes and backslashes become '?' so the result is a valid JSON string body.
static void mapped_lib(const char *lib, char *out, size_t cap) {
    snprintf(out, cap, "none");
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char *p = strchr(line, '/');
        if (!p || !strstr(p, lib)) continue;
        p[strcspn(p, "\n")] = 0;
        snprintf(out, cap, "%s", p);
        for (char *q = out; *q; q++)
            if (*q == '"' || *q == '\\') *q = '?';
        break;
    }
    fclose(f);
}

// --- plain GEMM ceilings: the three projection shapes with x[T,K], W, y[T,N]
//   q/o-like   y[T,C] = x[T,C] W[C,C]^T      gate/up-like  y[T,F] = x[T,C] W[F,C]^T
//   dx-like    y[T,C] = x[T,F] W[F,C]

typedef struct gemm_ceiling {
    int T, C, F;
    int off;                     // --no-ceilings: nothing allocated, every pass reports 0
    float *x, *w, *y;            // fp32 operands: x [T,F], w [F,C], y [T,F]
    uint16_t *xb, *wb;           // the same operands in BF16
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    dnnl_primitive_t mm[3];      // the three shapes above, bf16 x bf16 -> f32
    dnnl_memory_t mem[3][3];     // [shape][src, weights, dst]
} gemm_ceiling;

static double gemm_flops(const gemm_ceiling *g) { return 2.0 * g->T * ((double)g->C * g->C + 2.0 * g->F * g->C); }
static double gemm_mb(const gemm_ceiling *g) { return g->off ? 0 :  ((double)g->T * g->F * 10 + (double)g->F * g->C * 6) / 1048576.0; }

static int dnnl_ok(dnnl_status_t s, const char *what) {
    if (s == dnnl_success) return 0;
    err_set("bench: oneDNN %s failed (status %d)", what, (int)s);
    return -1;
}

// One oneDNN matmul y[M,N] = x[M,K] w[K,N], bf16 operands, f32 result, on caller buffers; the
// weights are read transposed (`wtag` dnnl_ba) for the W^T shapes, as lorac holds W [N,K].
static int dnnl_matmul_make(gemm_ceiling *g, int i, int M, int K, int N, dnnl_format_tag_t wtag) {
    dnnl_memory_desc_t md[3];
    dnnl_dims_t ds = {M, K}, dw = {K, N}, dd = {M, N};
    if (dnnl_ok(dnnl_memory_desc_init_by_tag(&md[0], 2, ds, dnnl_bf16, dnnl_ab), "memory desc") ||
        dnnl_ok(dnnl_memory_desc_init_by_tag(&md[1], 2, dw, dnnl_bf16, wtag), "memory desc") ||
        dnnl_ok(dnnl_memory_desc_init_by_tag(&md[2], 2, dd, dnnl_f32, dnnl_ab), "memory desc"))
        return -1;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd;
    if (dnnl_ok(dnnl_matmul_desc_init(&desc, &md[0], &md[1], NULL, &md[2]), "matmul desc") ||
        dnnl_ok(dnnl_primitive_desc_create(&pd, &desc, NULL, g->eng, NULL), "matmul primitive desc"))
        return -1;
    dnnl_status_t s = dnnl_primitive_create(&g->mm[i], pd);
    dnnl_primitive_desc_destroy(pd);
    if (dnnl_ok(s, "matmul primitive")) return -1;
    void *buf[3] = {g->xb, g->wb, g->y};
    for (int j = 0; j < 3; j++)
        if (dnnl_ok(dnnl_memory_create(&g->mem[i][j], &md[j], g->eng, buf[j]), "memory")) return -1;
    return 0;
}

static int gemm_init(gemm_ceiling *g, int T, int C, int F, int off) {
    memset(g, 0, sizeof *g);
    g->T = T, g->C = C, g->F = F, g->off = off;
    if (off) return 0;
    size_t nx = (size_t)T * F, nw = (size_t)F * C;
    g->x = xmalloc(nx * 4), g->y = xcalloc(nx, 4), g->w = xmalloc(nw * 4);
    g->xb = xmalloc(nx * 2), g->wb = xmalloc(nw * 2);
    for (size_t i = 0; i < nw; i++) g->wb[i] = st_f32_to_bf16(g->w[i] = 0.01f * (float)(i % 7) - 0.03f);
    for (size_t i = 0; i < nx; i++) g->xb[i] = st_f32_to_bf16(g->x[i] = 0.01f * (float)(i % 5) - 0.02f);
    if (dnnl_ok(dnnl_engine_create(&g->eng, dnnl_cpu, 0), "engine") ||
        dnnl_ok(dnnl_stream_create(&g->stream, g->eng, dnnl_stream_default_flags), "stream") ||
        dnnl_matmul_make(g, 0, T, C, C, dnnl_ba) || dnnl_matmul_make(g, 1, T, C, F, dnnl_ba) ||
        dnnl_matmul_make(g, 2, T, F, C, dnnl_ab))
        return -1;
    return 0;
}

static void gemm_free(gemm_ceiling *g) {
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++)
            if (g->mem[i][j]) dnnl_memory_destroy(g->mem[i][j]);
        if (g->mm[i]) dnnl_primitive_destroy(g->mm[i]);
    }
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->eng) dnnl_engine_destroy(g->eng);
    free(g->x), free(g->y), free(g->w), free(g->xb), free(g->wb);
}

// One pass over the three shapes with cblas_sgemm; GFLOP/s.
static double sgemm_pass(const gemm_ceiling *g) {
    if (g->off) return 0;
    int T = g->T, C = g->C, F = g->F;
    double t0 = now_seconds();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, C, C, 1, g->x, C, g->w, C, 0, g->y, C);    // q/o-like
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, F, C, 1, g->x, C, g->w, C, 0, g->y, F);    // gate/up-like
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, C, F, 1, g->x, F, g->w, C, 0, g->y, C);  // dx-like
    return gemm_flops(g) / (now_seconds() - t0) / 1e9;
}

// One pass over the three shapes with the oneDNN BF16 matmuls; GFLOP/s, or -1 on failure.
static double bf16_pass(const gemm_ceiling *g) {
    if (g->off) return 0;
    double t0 = now_seconds();
    for (int i = 0; i < 3; i++) {
        dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, g->mem[i][0]}, {DNNL_ARG_WEIGHTS, g->mem[i][1]}, {DNNL_ARG_DST, g->mem[i][2]}};
        if (dnnl_ok(dnnl_primitive_execute(g->mm[i], g->stream, 3, a), "matmul")) return -1;
    }
    if (dnnl_ok(dnnl_stream_wait(g->stream), "stream wait")) return -1;
    return gemm_flops(g) / (now_seconds() - t0) / 1e9;
}

// --- options

enum { B_GEMM = 1, B_LORA = 2, B_EVAL = 4, B_SIGLIP = 8, B_THREADS = 16, B_MODEL = B_LORA | B_EVAL, B_ALL = 31 };

typedef struct bench_opts {
    const char *what, *model, *vision, *sup, *precision, *weights;
    ag_precision prec;        // --precision: fp32, or bf16 (frozen weights and their matmuls in BF16)
    ag_weights wts;           // --weights: auto (as the file holds them, mapped) or f32 (fp32 copies)
    int kind;                 // B_GEMM .. B_SIGLIP
    int T, iters, warmup, r, batch, interleave, checkpointing, no_ceilings;
} bench_opts;

// The options of bench KIND (kind 0: every option, for --help); each applies where .kinds says.
static int parse_opts(int argc, char **argv, bench_opts *o, int kind, const char *what) {
    *o = (bench_opts){.sup = "all", .precision = "fp32", .weights = "auto", .what = what, .kind = kind};
    int64_t T = 512, iters = 3, warmup = 1, r = 16, batch = 8;
    const cli_opt opts[] = {
        {.name = "model", .type = OPT_DIR, .dst = &o->model, .arg = "DIR", .kinds = B_MODEL,
         .help = "Llama model folder (lora, eval; required)"},
        {.name = "vision", .type = OPT_DIR, .dst = &o->vision, .arg = "DIR", .kinds = B_SIGLIP,
         .help = "SigLIP model folder (siglip; required)"},
        {.name = "tokens", .type = OPT_INT, .dst = &T, .arg = "T", .lo = 2, .hi = 65536, .kinds = B_GEMM | B_MODEL,
         .help = "tokens per step, 2..65536 (gemm, lora, eval; default 512)"},
        {.name = "batch", .type = OPT_INT, .dst = &batch, .arg = "B", .lo = 1, .hi = 1024, .kinds = B_SIGLIP,
         .help = "images per step, 1..1024 (siglip; default 8)"},
        {.name = "rank", .type = OPT_INT, .dst = &r, .arg = "R", .lo = 1, .hi = 1024, .kinds = B_LORA,
         .help = "LoRA rank, 1..1024 (lora; default 16)"},
        {.name = "supervised", .type = OPT_WORD, .dst = &o->sup, .arg = "all|half", .words = "all half", .kinds = B_LORA,
         .help = "half: the first half of the tokens is an unsupervised prompt (lora; default all)"},
        {.name = "precision", .type = OPT_WORD, .dst = &o->precision, .arg = "fp32|bf16", .words = "fp32 bf16",
         .kinds = B_MODEL | B_SIGLIP, .help = "(lora, eval, siglip; default fp32)"},
        {.name = "weights", .type = OPT_WORD, .dst = &o->weights, .arg = "auto|f32", .words = "auto f32",
         .kinds = B_MODEL | B_SIGLIP, .help = "frozen weight storage (lora, eval, siglip; default auto)"},
        {.name = "iters", .type = OPT_INT, .dst = &iters, .arg = "N", .lo = 1, .hi = 10000,
         .help = "measured iterations, 1..10000 (default 3)"},
        {.name = "warmup", .type = OPT_INT, .dst = &warmup, .arg = "N", .lo = 0, .hi = 100,
         .help = "unmeasured iterations first, 0..100 (default 1)"},
        CLI_FLAG("interleave", &o->interleave, "wait for a line on stdin before each iteration, print one line after it"),
        {.name = "checkpointing", .type = OPT_FLAG, .dst = &o->checkpointing, .kinds = B_LORA,
         .help = "activation checkpointing (lora)"},
        {.name = "no-ceilings", .type = OPT_FLAG, .dst = &o->no_ceilings, .kinds = B_MODEL,
         .help = "skip the plain GEMM ceilings: peak_rss_mb is the step's alone (lora, eval)"},
    };
    const cli_spec spec = {
        "bench", "gemm|lora|eval|siglip|threads [options]",
        "  gemm     plain cblas_sgemm and oneDNN BF16 matmul GFLOP/s on the Llama-3.2-1B projection shapes\n"
        "  lora     one LoRA training step (forward, loss, backward, AdamW) of batch 1 x T tokens\n"
        "  eval     no-grad forward + per-token NLL over one window of T tokens\n"
        "  siglip   no-grad SigLIP vision forward of a batch of random images\n"
        "  threads  one fp32 product on one thread vs on all threads, by size (the rule of autograd/blas.h)\n"
        "(each option only where it applies)\n",
        opts, CLI_NOPTS(opts),
        "output: JSON lines on stdout; the last is the summary (median, min and max over the iterations)\n", 1};
    if (!kind) {   // --help (or a usage error before the benchmark's name)
        int npos;
        return cli_parse(&spec, argc, argv, NULL, 0, &npos, 0, NULL);
    }
    int npos, rc = cli_parse(&spec, argc, argv, NULL, 0, &npos, (unsigned)kind, what);
    if (rc) return rc;
    o->T = (int)T, o->iters = (int)iters, o->warmup = (int)warmup, o->r = (int)r, o->batch = (int)batch;
    if ((o->kind & B_MODEL) && !o->model) return cli_usage("bench", "bench %s: --model DIR is required", o->what);
    if (o->kind == B_SIGLIP && !o->vision) return cli_usage("bench", "bench siglip: --vision DIR is required");
    ag_weights_parse(o->weights, &o->wts);   // one of the table's words
    ag_precision_parse(o->precision, &o->prec);
    return 0;
}

// --- the timing loop shared by every benchmark

typedef int (*step_fn)(void *ctx);

typedef struct bench_run {
    double *sec, *sg, *bf;   // [iters] step seconds, sgemm and bf16 GFLOP/s after each step
} bench_run;

// waits for the driver's turn (--interleave): one line on stdin
static int wait_turn(int it) {
    char line[64];
    if (fgets(line, sizeof line, stdin)) return 0;
    err_set("bench --interleave: stdin closed before iteration %d", it);
    return -1;
}

// warm-up + iters iterations of `step`, each followed by both ceilings (g may be NULL: no step)
static int run_iters(const bench_opts *o, step_fn step, void *ctx, gemm_ceiling *g, bench_run *r) {
    r->sec = xmalloc((size_t)o->iters * sizeof(double));
    r->sg = xmalloc((size_t)o->iters * sizeof(double));
    r->bf = xmalloc((size_t)o->iters * sizeof(double));
    if (o->interleave) {
        printf("{\"ready\": true}\n");
        fflush(stdout);
    }
    for (int it = 0; it < o->warmup + o->iters; it++) {
        if (o->interleave && wait_turn(it) != 0) return -1;
        double t0 = now_seconds();
        if (step && step(ctx) != 0) return -1;
        double dt = now_seconds() - t0, sg = sgemm_pass(g), bf = bf16_pass(g);
        if (bf < 0) return -1;
        int m = it - o->warmup;
        if (m >= 0) r->sec[m] = dt, r->sg[m] = sg, r->bf[m] = bf;
        if (o->interleave) {
            printf("{\"iter\": %d, \"warmup\": %s, \"sec\": %.6g}\n", it, m < 0 ? "true" : "false", dt);
            fflush(stdout);
        }
    }
    return 0;
}

// prints the summary fields every benchmark shares (no closing brace)
static void print_common(const bench_opts *o, bench_run *r, const gemm_ceiling *g, double items, const char *unit,
                         double flops) {
    double sec, smin, smax, sg, sg0, sg1, bf, bf0, bf1;
    char blas[512], dnnl[512];
    printf("{\"impl\": \"lorac\", \"bench\": \"%s\", \"precision\": \"%s\", \"iters\": %d, \"sec_all\": [", o->what,
           o->precision, o->iters);
    for (int i = 0; i < o->iters; i++) printf("%s%.6g", i ? ", " : "", r->sec[i]);
    spread(r->sec, o->iters, &sec, &smin, &smax);
    spread(r->sg, o->iters, &sg, &sg0, &sg1);
    spread(r->bf, o->iters, &bf, &bf0, &bf1);
    mapped_lib("libopenblas", blas, sizeof blas);
    mapped_lib("libdnnl", dnnl, sizeof dnnl);
    printf("], \"sec\": %.6g, \"sec_min\": %.6g, \"sec_max\": %.6g, \"unit\": \"%s\", \"per_s\": %.6g, "
           "\"per_s_min\": %.6g, \"per_s_max\": %.6g, \"gflops\": %.4g, \"sgemm_gflops\": %.4g, \"bf16_gemm_gflops\": %.4g, "
           "\"gemm_shape\": [%d, %d, %d], \"ceiling_mb\": %.0f, \"peak_rss_mb\": %.0f, \"blas\": \"%s\", \"dnnl\": \"%s\"",
           sec, smin, smax, unit, items / sec, items / smax, items / smin, flops / sec / 1e9, sg, bf, g->T, g->C, g->F,
           gemm_mb(g), peak_rss_mb(), blas, dnnl);
    free(r->sec), free(r->sg), free(r->bf);
}

// --- siglip

// FLOPs of one SigLIP forward over B images: the patch conv, the linears and attention
static double siglip_flops(const hf_siglip_config *c, double B) {
    double C = c->hidden_size, Fi = c->intermediate_size, P = c->num_patches, N = B * P;
    double pin = (double)c->num_channels * c->patch_size * c->patch_size;
    double per_layer = 2.0 * N * (4.0 * C * C + 2.0 * C * Fi) + 4.0 * B * P * P * C;
    return 2.0 * N * pin * C + c->num_layers * per_layer;
}

typedef struct siglip_step_ctx {
    ag_ctx c;
    const siglip_model *m;
    const float *px;
    float *out;
    int B;
} siglip_step_ctx;

static int siglip_step(void *p) {
    siglip_step_ctx *s = p;
    ag_ctx_reset(&s->c);
    return siglip_features(&s->c, s->m, s->px, s->B, -1, s->out);
}

static int bench_siglip(const bench_opts *o) {
    siglip_model m;
    if (siglip_load_opts(o->vision, &m, o->prec, o->wts) != 0) return cli_fail();
    const hf_siglip_config *cfg = &m.cfg;
    int B = o->batch;
    int64_t S = cfg->image_size, N = (int64_t)B * cfg->num_patches;
    siglip_step_ctx s = {.m = &m, .B = B};
    float *px = xmalloc((size_t)(B * 3 * S * S) * sizeof *px);
    s.px = px, s.out = xmalloc((size_t)(N * cfg->hidden_size) * 4);
    uint64_t rng = 11;
    for (int64_t i = 0; i < B * 3 * S * S; i++) px[i] = 2.0f * ag_rng_uniform(&rng) - 1.0f;
    gemm_ceiling g;
    bench_run r;
    if (ag_ctx_init(&s.c, siglip_arena_bytes(&m, B)) != 0 ||
        gemm_init(&g, (int)N, (int)cfg->hidden_size, (int)cfg->intermediate_size, 0) != 0 ||
        run_iters(o, siglip_step, &s, &g, &r) != 0)
        return cli_fail();
    print_common(o, &r, &g, B, "images/s", siglip_flops(cfg, B));
    printf(", \"batch\": %d, \"arena_high_mb\": %.0f}\n", B, s.c.arena.high / 1048576.0);
    free(px), free(s.out);
    gemm_free(&g);
    ag_ctx_free(&s.c);
    siglip_free(&m);
    return 0;
}

// --- lora and eval

// FLOPs of the model's matmuls for T rows (forward), attention included, lm-head for `sup` rows
static double model_flops(const hf_llama_config *c, double T, double sup) {
    double C = c->hidden_size, F = c->intermediate_size, nh = c->num_heads, nkv = c->num_kv_heads, hd = c->head_dim;
    double lin = C * (nh * hd + 2 * nkv * hd) + nh * hd * C + 3 * C * F;
    double attn = 2.0 * T * T * nh * hd;   // causal: half of 2·(QKᵀ + PV)
    return c->num_layers * (2.0 * T * lin + attn) + 2.0 * sup * c->vocab_size * C;
}

typedef struct llama_step_ctx {
    ag_ctx c;
    llama_model *m;
    lora_adapter *lora;
    ag_adamw *opt;
    data_batch *b;
    float *nll;
    double loss;
} llama_step_ctx;

static int lora_step(void *p) {
    llama_step_ctx *s = p;
    double gn;
    ag_params_zero_grad(&s->lora->params);
    s->loss = 0;
    if (train_micro_step(&s->c, s->m, &s->lora->view, s->b, (float)s->b->n_supervised, &s->loss) != 0) return -1;
    return train_opt_step(s->opt, &s->lora->params, 1e-5f, 1.0f, &gn);
}

static int eval_step(void *p) {
    llama_step_ctx *s = p;
    const data_batch *b = s->b;
    ag_ctx_reset(&s->c);
    ag_tensor *h = llama_forward(&s->c, s->m, NULL, b->ids, NULL, b->n, b->pos, b->kv_begin);
    if (!h || ag_nll_rows(&s->c, h, &s->m->w.lm_head, b->targets, s->nll) != 0) return -1;
    s->loss = 0;   // mean NLL of the supervised tokens (as PyTorch's baseline prints)
    for (int64_t i = 0; i < b->n; i++) s->loss += s->nll[i];
    s->loss /= b->n_supervised > 0 ? (double)b->n_supervised : 1.0;
    return 0;
}

static int bench_llama(const bench_opts *o) {
    llama_model m;
    if (llama_load_opts(o->model, &m, o->prec, o->wts) != 0) return cli_fail();
    llama_log_memory(&m);
    int train = o->kind == B_LORA, T = o->T;
    lora_adapter lora = {0};
    lora_config lc = {.r = o->r, .alpha = 2.0f * o->r, .dropout = 0.05f, .targets = (1u << LLAMA_NPROJ) - 1};
    if (train && lora_create(&lora, &m.cfg, &lc, 1) != 0) return cli_fail();
    // B non-zero so every LoRA product is real work
    for (int i = 0; train && i < lora.params.n; i++)
        if (strstr(lora.params.t[i]->name, "lora_B"))
            for (int64_t j = 0; j < lora.params.t[i]->numel; j++) lora.params.t[i]->data[j] = 1e-3f;
    ag_adamw opt = {0};
    if (train) ag_adamw_init(&opt, lora.params.total, 0.9f, 0.999f, 1e-8f, 0);
    data_batch b = {0};
    b.n = T;
    b.ids = xmalloc((size_t)T * 4), b.pos = xmalloc((size_t)T * 4), b.kv_begin = xcalloc((size_t)T, 4),
    b.targets = xmalloc((size_t)T * 4);
    uint64_t rng = 7;
    for (int i = 0; i < T; i++) {
        b.ids[i] = (int32_t)(ag_rng_next(&rng) % (uint64_t)m.cfg.vocab_size);
        b.pos[i] = i;
    }
    int all = !strcmp(o->sup, "all");
    for (int i = 0; i < T; i++) {
        b.targets[i] = i + 1 < T && (all || i >= T / 2) ? b.ids[i + 1] : -1;
        b.n_supervised += b.targets[i] >= 0;
    }
    llama_step_ctx s = {.m = &m, .lora = &lora, .opt = &opt, .b = &b, .nll = xmalloc((size_t)T * 4)};
    gemm_ceiling g;
    bench_run r;
    if (ag_ctx_init(&s.c, (size_t)16 << 30) != 0) return cli_fail();
    s.c.training = train;
    s.c.checkpoint = o->checkpointing;
    ag_set_grad(&s.c, train);
    if (gemm_init(&g, T, (int)m.cfg.hidden_size, (int)m.cfg.intermediate_size, o->no_ceilings) != 0 ||
        run_iters(o, train ? lora_step : eval_step, &s, &g, &r) != 0)
        return cli_fail();
    // training: forward + backward (dx of every matmul, no dW of frozen weights)
    print_common(o, &r, &g, T, "tokens/s", model_flops(&m.cfg, T, (double)b.n_supervised) * (train ? 2.0 : 1.0));
    printf(", \"supervised\": \"%s\", \"tokens\": %d, \"n_supervised\": %lld, \"arena_high_mb\": %.0f, \"loss\": %.6f, "
           "\"checkpointing\": %s}\n",
           o->sup, T, (long long)b.n_supervised, s.c.arena.high / 1048576.0, s.loss, o->checkpointing ? "true" : "false");
    gemm_free(&g);
    free(s.nll), free(b.ids), free(b.pos), free(b.kv_begin), free(b.targets);
    ag_ctx_free(&s.c);
    if (train) ag_adamw_free(&opt), lora_free(&lora);
    llama_free(&m);
    return 0;
}

// --- threads: where splitting one fp32 product over the threads starts to pay

// Products of the shapes lorac runs (the small model's projections at 256 rows, LoRA's rank-16
// factors and the base projections of Llama-3.2-1B at 512 rows), smallest to largest in
// multiply-adds; each timed on the calling thread alone (mm32_1: what ag_sgemm runs below
// AG_SGEMM_PAR_MIN) and split over all threads (cblas_sgemm outside a parallel region), taking turns, ITERS rounds of enough repetitions for
// ~2 ms. Prints per shape the median microseconds of both and their ratio.
static int bench_threads(const bench_opts *o) {
    static const int shapes[][3] = {   // M, N, K
        {64, 64, 64},    {256, 64, 256},  {512, 16, 2048}, {256, 256, 256},  {512, 2048, 16},  {256, 1024, 256},
        {512, 8192, 16}, {256, 256, 1024}, {512, 512, 512}, {512, 1024, 512}, {512, 2048, 512}, {512, 2048, 2048}};
    int ns = (int)(sizeof shapes / sizeof shapes[0]), it = o->iters;
    float *a = xmalloc((size_t)512 * 8192 * sizeof *a), *b = xmalloc((size_t)8192 * 2048 * sizeof *b),
          *c = xmalloc((size_t)512 * 8192 * sizeof *c);
    for (int64_t i = 0; i < (int64_t)512 * 8192; i++) a[i] = (float)((i * 7919) % 1000) * 1e-3f, c[i] = 0;
    for (int64_t i = 0; i < (int64_t)8192 * 2048; i++) b[i] = (float)((i * 104729) % 1000) * 1e-3f;
    double *t1 = xmalloc((size_t)it * 2 * sizeof *t1), *tn = t1 + it;
    for (int s = 0; s < ns; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        double mnk = (double)M * N * K;
        int reps = (int)(2e-3 * 60e9 / mnk) + 1;   // ~2 ms at ~60 G multiply-adds/s
        for (int w = -1; w < it; w++)   // round -1: warm-up
            for (int way = 0; way < 2; way++) {
                double t0 = now_seconds();
                for (int r = 0; r < reps; r++)
                    if (way == 0) mm32_1(c, N, a, K, b, K, M, N, K, 1, 0);
                    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
                double us = (now_seconds() - t0) / reps * 1e6;
                if (w >= 0) (way == 0 ? t1 : tn)[w] = us;
            }
        double m1, lo1, hi1, mn, lon, hin;
        spread(t1, it, &m1, &lo1, &hi1);
        spread(tn, it, &mn, &lon, &hin);
        printf("{\"impl\": \"lorac\", \"bench\": \"threads\", \"shape\": [%d, %d, %d], \"madds\": %.0f, "
               "\"one_thread_us\": %.1f, \"one_thread_us_min\": %.1f, \"one_thread_us_max\": %.1f, \"threads\": %d, "
               "\"all_threads_us\": %.1f, \"all_threads_us_min\": %.1f, \"all_threads_us_max\": %.1f, "
               "\"speedup\": %.2f, \"split_by_rule\": %s}\n",
               M, N, K, mnk, m1, lo1, hi1, omp_get_max_threads(), mn, lon, hin, m1 / mn,
               mnk >= (double)AG_SGEMM_PAR_MIN ? "true" : "false");
    }
    free(t1), free(a), free(b), free(c);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o;
    static const struct { const char *w; int kind; } kinds[] = {
        {"gemm", B_GEMM}, {"lora", B_LORA}, {"eval", B_EVAL}, {"siglip", B_SIGLIP}, {"threads", B_THREADS}};
    int k = 0, nk = (int)(sizeof kinds / sizeof *kinds);
    while (argc >= 2 && k < nk && strcmp(argv[1], kinds[k].w)) k++;
    if (argc < 2 || k == nk) {   // no benchmark named: --help, or a usage error
        if (argc >= 2 && argv[1][0] == '-') {
            int rc = parse_opts(argc, argv, &o, 0, NULL);
            if (rc) return rc == 1 ? 0 : rc;
        }
        if (argc < 2 || argv[1][0] == '-') return cli_usage("bench", "expected gemm, lora, eval, siglip or threads");
        return cli_usage("bench", "unknown benchmark '%s' (expected gemm, lora, eval, siglip or threads)", argv[1]);
    }
    int rc = parse_opts(argc - 1, argv + 1, &o, kinds[k].kind, kinds[k].w);
    if (rc) return rc == 1 ? 0 : rc;
    if (o.kind == B_SIGLIP) return bench_siglip(&o);
    if (o.kind == B_THREADS) return bench_threads(&o);
    if (o.kind & B_MODEL) return bench_llama(&o);
    gemm_ceiling g;   // gemm: the ceilings alone on the Llama-3.2-1B shapes
    bench_run r;
    if (gemm_init(&g, o.T, 2048, 8192, 0) != 0 || run_iters(&o, NULL, NULL, &g, &r) != 0) return cli_fail();
    double sg, sg0, sg1, bf, bf0, bf1;
    spread(r.sg, o.iters, &sg, &sg0, &sg1);
    spread(r.bf, o.iters, &bf, &bf0, &bf1);
    printf("{\"impl\": \"lorac\", \"bench\": \"gemm\", \"iters\": %d, \"tokens\": %d, \"gemm_shape\": [%d, 2048, 8192], "
           "\"sgemm_gflops\": %.1f, \"sgemm_gflops_min\": %.1f, \"sgemm_gflops_max\": %.1f, \"bf16_gemm_gflops\": %.1f, "
           "\"bf16_gemm_gflops_min\": %.1f, \"bf16_gemm_gflops_max\": %.1f}\n",
           o.iters, o.T, o.T, sg, sg0, sg1, bf, bf0, bf1);
    free(r.sec), free(r.sg), free(r.bf);
    gemm_free(&g);
    return 0;
}
