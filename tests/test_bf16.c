// test_bf16.c — precision: bf16 (frozen weights in BF16, BF16 matmuls with fp32 accumulation).
//
// 1. The kernels, exactly: every product against a BF16 weight (linear and LoRA linear forward
//    and dx, the lm-head loss's logits and dh, the decode matrix-vector product) equals the
//    double-precision product of the BF16-rounded operands up to fp32 accumulation error;
//    LoRA factors and their gradients stay fp32 (fp32 products, within fp32 accumulation error
//    of the double reference, dropout mask included); embedding rows are widened exactly.
// 2. Loading: a BF16 checkpoint is held as stored, an F32 one rounded to nearest-even once;
//    no fp32 copy of a BF16-held weight remains; norms stay fp32.
// 3. The tiny model against PyTorch autocast (tests/gen_bf16.py: torch.autocast("cpu",
//    dtype=torch.bfloat16) on tests/torch_ref.py) and against fp32: logits, the LoRA
//    gradients of one step, the 30-step trajectory of tests/gen_train.py; lorac bf16 against
//    lorac fp32 within 1% at every step; run-to-run bit-identical.
//
// Tolerances. BF16 keeps 8 significant bits: rounding to nearest gives a relative error of at
// most u = 2⁻⁹ ≈ 0.195% per value (uniform in [-u, u]: standard deviation u/√3), fp32 2⁻²⁴.
//  - Kernel checks (1): the operands are known exactly (the BF16 values), so the only error is
//    fp32 accumulation: |ŷ − y| ≤ K·2⁻²⁴·Σ|aᵢbᵢ| (any summation order, K products).
//  - A dot product with both operands rounded: Σ aᵢbᵢ(1+δᵢ+εᵢ), so its error has standard
//    deviation u·√(2/3)·‖a∘b‖₂ ≈ 0.16%·‖a∘b‖₂; over a vector of outputs with random signs the
//    relative norm error ‖ŷ − y‖/‖y‖ is ≈ 0.16% per matmul (‖a∘b‖ and |y| are of the same order
//    for random weights). Errors of successive matmuls add in quadrature through the residual
//    stream (RMSNorm rescales, it does not amplify relative errors). The tiny model's logits
//    pass k = 2 layers × 7 projections + the lm-head = 15 rounded matmuls, plus the rounded
//    embedding rows (the fixture model is F32): expected ‖δ‖/‖L‖ ≈ 0.16%·√16 ≈ 0.64%. The
//    attention softmax (scores/√D of O(1)) and SwiGLU amplify by a small factor, so the bound
//    is 3× that: 2%. PyTorch autocast rounds more (q·kᵀ, attention·v and every matmul OUTPUT:
//    one more u/√3 per output; its measured error is printed next to lorac's); lorac is
//    required to be no farther from the fp32 logits than autocast is, and the two bf16
//    results to differ by at most the sum of their bounds.
//  - LoRA gradients: backward adds the dx matmuls (k ≈ 2·15 rounded products on the deepest
//    path): 0.16%·√31 ≈ 0.9%, ×3 for the nonlinearities (softmax, SwiGLU and RMSNorm
//    derivatives) = 3% of each gradient tensor's norm.
//  - Trajectory: a relative error ε of the gradient moves AdamW's update by O(ε) of lr per
//    step; 30 steps of lr 1e-2 on a loss that falls from 10.9 to 0.2 compound it. The issue
//    fixes 1% of the fp32 run's loss at every step; against autocast (which also rounds
//    LoRA's matmuls and every output) the loss differences add, hence 2%.
#include <omp.h>

#include "ag.h"
#include "batch.h"
#include "config.h"
#include "fixture.h"
#include "llama.h"
#include "lora.h"
#include "loramm.h"
#include "mm16.h"
#include "safetensors.h"
#include "siglip.h"
#include "test.h"
#include "train_fixture.h"
#include "trainer.h"

#define U_BF16 (1.0 / 512.0)            // 2⁻⁹: BF16 unit roundoff
#define U_F32 (1.0 / 16777216.0)        // 2⁻²⁴: fp32 unit roundoff

// --- helpers

static uint64_t rng_state = 42;
static float *randn(size_t n, float s) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = s * ag_rng_normal(&rng_state);
    return p;
}
static uint16_t *randn16(size_t n, float s) {
    float *f = randn(n, s);
    uint16_t *h = malloc((n ? n : 1) * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = f32_to_bf16(f[i]);
    free(f);
    return h;
}
static float *widened(const uint16_t *h, int64_t n) {
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    bf16_widen(f, h, n);
    return f;
}
static double rbf(float x) { return (double)bf16_to_f32(f32_to_bf16(x)); }

// ‖a − b‖ / ‖b‖
static double rel_norm_err(const float *a, const float *b, int64_t n) {
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(d / (s > 0 ? s : 1));
}

// --- 1. kernels

// y[M,O] = bf16(x)·Wᵀ (+ b) and dx = bf16(dy)·W against double references (bound: fp32
// accumulation, K·2⁻²⁴·Σ|products|)
static void test_linear_exact(void) {
    const int shapes[][3] = {{1, 7, 5}, {13, 64, 48}, {37, 100, 129}, {64, 256, 96}, {5, 1, 300}};
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 27);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int M = shapes[k][0], O = shapes[k][1], In = shapes[k][2];
        for (int bias = 0; bias < 2; bias++) {
            ag_ctx_reset(&c);
            float *xd = randn((int64_t)M * In, 1), *bd = randn(O, 0.5f), *dy = randn((int64_t)M * O, 1);
            uint16_t *w16 = randn16((int64_t)O * In, 0.2f);
            ag_tensor x = ag_wrap2(xd, M, In, "x"), b = ag_wrap1(bd, O, "b");
            x.requires_grad = 1;
            ag_tensor W = ag_wrap_bf16(w16, 2, (int64_t[2]){O, In}, "W");
            ag_tensor *y = ag_linear(&c, &x, &W, bias ? &b : NULL);
            CHECK(y && ag_backward_from(&c, y, dy) == 0, "linear %dx%dx%d: %s", M, O, In, err_get());
            if (!y || !x.grad) continue;
            int bad = 0;
            for (int i = 0; i < M; i++)
                for (int o = 0; o < O; o++) {
                    double ref = bias ? bd[o] : 0, mag = fabs(ref);
                    for (int j = 0; j < In; j++) {
                        double p = rbf(xd[i * In + j]) * bf16_to_f32(w16[o * In + j]);
                        ref += p, mag += fabs(p);
                    }
                    bad += fabs(y->data[i * O + o] - ref) > (In + 2) * U_F32 * mag + 1e-30;
                }
            CHECK(bad == 0, "linear %dx%dx%d bias %d: %d outputs beyond fp32 accumulation error", M, O, In, bias, bad);
            bad = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < In; j++) {
                    double ref = 0, mag = 0;
                    for (int o = 0; o < O; o++) {
                        double p = rbf(dy[i * O + o]) * bf16_to_f32(w16[o * In + j]);
                        ref += p, mag += fabs(p);
                    }
                    bad += fabs(x.grad[i * In + j] - ref) > (O + 2) * U_F32 * mag + 1e-30;
                }
            CHECK(bad == 0, "linear dx %dx%dx%d: %d values beyond fp32 accumulation error", M, O, In, bad);
            free(xd), free(bd), free(dy), free(w16);
        }
    }
    // a BF16 weight is frozen: asking for its gradient is an error naming the op
    ag_ctx_reset(&c);
    uint16_t w[4] = {0x3f80, 0, 0, 0x3f80};
    float xv[2] = {1, 2};
    ag_tensor W = ag_wrap_bf16(w, 2, (int64_t[2]){2, 2}, "W"), x = ag_wrap2(xv, 1, 2, "x");
    W.requires_grad = 1;
    CHECK(!ag_linear(&c, &x, &W, NULL) && strstr(err_get(), "BF16"), "trainable BF16 W accepted: %s", err_get());
    ag_ctx_free(&c);
}

// LoRA linear with a BF16 W: y = bf16(x)·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ. The LoRA part and dA, dB are
// fp32 products (loramm's one-pass kernels with a BF16 W, OpenBLAS around a separate dropout
// pass with an fp32 one: the same math, other summation orders); dx's W part is the BF16
// product. Without dropout at rank 4, and with dropout 0.25 (training mode) at rank 20 (more
// than one block of 16 rank rows): the mask is the one of loramm.h's draws, replayed here.
static void lora_linear_case(int r, float p) {
    int M = 29, O = 48, In = 40;   // In, O not multiples of the kernels' 16 / 128 columns
    float s = 2.0f;
    uint64_t s0 = 0x1234567ULL;
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 26);
    c.training = 1;
    float *xd = randn((int64_t)M * In, 1), *Ad = randn((int64_t)r * In, 0.3f), *Bd = randn((int64_t)O * r, 0.3f);
    float *dy = randn((int64_t)M * O, 1);
    uint16_t *w16 = randn16((int64_t)O * In, 0.2f);
    float *wf = widened(w16, (int64_t)O * In);
    // mk[i, j]: the dropout factor of x[i, j] (0 or 1/(1-p); 1 without dropout), as the op draws it
    double *mk = malloc(sizeof(double) * M * In);
    loramm_drop dd = loramm_drop_of(s0, p);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < In; j++)
            mk[i * In + j] = p == 0 ? 1.0
                             : lora_rng_draw24(s0 + (uint64_t)i * In * LORA_RNG_GAMMA, j) >= dd.thr ? (double)dd.inv
                                                                                                      : 0.0;
    float *out[2][4];   // [storage][y, dx, dA, dB]
    for (int st = 0; st < 2; st++) {
        ag_ctx_reset(&c);
        c.rng = s0;
        ag_params prm = {0};
        ag_tensor *A = ag_params_add(&prm, "A", 2, (int64_t[2]){r, In}), *B = ag_params_add(&prm, "B", 2, (int64_t[2]){O, r});
        ag_params_alloc(&prm);
        memcpy(A->data, Ad, sizeof(float) * r * In);
        memcpy(B->data, Bd, sizeof(float) * O * r);
        ag_tensor x = ag_wrap2(xd, M, In, "x");
        x.requires_grad = 1;
        ag_tensor W = st ? ag_wrap_bf16(w16, 2, (int64_t[2]){O, In}, "W") : ag_wrap2(wf, O, In, "W");
        ag_tensor *y = ag_lora_linear(&c, &x, &W, A, B, s, p);
        CHECK(y && ag_backward_from(&c, y, dy) == 0, "lora_linear: %s", err_get());
        if (!y) return;
        int64_t n[4] = {(int64_t)M * O, (int64_t)M * In, (int64_t)r * In, (int64_t)O * r};
        const float *src[4] = {y->data, x.grad, A->grad, B->grad};
        for (int q = 0; q < 4; q++) {
            out[st][q] = malloc(sizeof(float) * n[q]);
            memcpy(out[st][q], src[q], sizeof(float) * n[q]);
        }
        ag_params_free(&prm);
    }
    // dA and dB of both storages against a double reference, within fp32 accumulation bounds: u and
    // du (sums of In and O products) and then dB and dA (sums of M products) each add at most
    // (terms)·2⁻²⁴ of the sum of the magnitudes of their terms (+1 term for the dropout scaling)
    double *u = calloc((size_t)M * r, sizeof *u), *um = calloc((size_t)M * r, sizeof *um);
    double *du = calloc((size_t)M * r, sizeof *du), *dm = calloc((size_t)M * r, sizeof *dm);
    for (int i = 0; i < M; i++)
        for (int k = 0; k < r; k++) {
            for (int j = 0; j < In; j++) {
                double t = mk[i * In + j] * xd[i * In + j] * Ad[k * In + j];
                u[i * r + k] += t, um[i * r + k] += fabs(t);
            }
            for (int o = 0; o < O; o++) {
                double t = (double)s * dy[i * O + o] * Bd[o * r + k];
                du[i * r + k] += t, dm[i * r + k] += fabs(t);
            }
        }
    for (int st = 0; st < 2; st++) {
        int badA = 0, badB = 0;
        for (int k = 0; k < r; k++)
            for (int j = 0; j < In; j++) {
                double ref = 0, mag = 0;
                for (int i = 0; i < M; i++) {
                    double xv = mk[i * In + j] * xd[i * In + j];
                    ref += du[i * r + k] * xv, mag += dm[i * r + k] * fabs(xv);
                }
                badA += fabs(out[st][2][k * In + j] - ref) > (O + M + 4) * U_F32 * mag;
            }
        for (int o = 0; o < O; o++)
            for (int k = 0; k < r; k++) {
                double ref = 0, mag = 0;
                for (int i = 0; i < M; i++)
                    ref += s * dy[i * O + o] * u[i * r + k], mag += fabs(s * dy[i * O + o]) * um[i * r + k];
                badB += fabs(out[st][3][o * r + k] - ref) > (In + M + 4) * U_F32 * mag;
            }
        CHECK(badA == 0 && badB == 0, "lora_linear r %d p %g (%s W): %d dA and %d dB values beyond fp32 accumulation error",
              r, (double)p, st ? "BF16" : "fp32", badA, badB);
    }
    // y and dx: the BF16 result minus the fp32-storage result is the W part's operand rounding
    // only; against a double reference of bf16(x)·W + fp32 LoRA part, fp32 accumulation bounds
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int o = 0; o < O; o++) {
            double ref = 0, mag = 0;
            for (int j = 0; j < In; j++) {
                double pw = rbf(xd[i * In + j]) * wf[o * In + j];
                ref += pw, mag += fabs(pw);
            }
            for (int k = 0; k < r; k++) ref += s * u[i * r + k] * Bd[o * r + k], mag += s * um[i * r + k] * fabs(Bd[o * r + k]);
            bad += fabs(out[1][0][i * O + o] - ref) > (In + r + 4) * U_F32 * mag;
        }
    CHECK(bad == 0, "lora_linear r %d p %g y: %d outputs beyond fp32 accumulation error", r, (double)p, bad);
    bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < In; j++) {
            double ref = 0, mag = 0;
            for (int o = 0; o < O; o++) {
                double pw = rbf(dy[i * O + o]) * wf[o * In + j];
                ref += pw, mag += fabs(pw);
            }
            for (int k = 0; k < r; k++) {
                double t = mk[i * In + j] * du[i * r + k] * Ad[k * In + j];
                ref += t, mag += mk[i * In + j] * dm[i * r + k] * fabs(Ad[k * In + j]);
            }
            bad += fabs(out[1][1][i * In + j] - ref) > (O + r + 4) * U_F32 * mag;
        }
    CHECK(bad == 0, "lora_linear r %d p %g dx: %d values beyond fp32 accumulation error", r, (double)p, bad);
    free(u), free(um), free(du), free(dm), free(mk);
    for (int st = 0; st < 2; st++)
        for (int q = 0; q < 4; q++) free(out[st][q]);
    free(xd), free(Ad), free(Bd), free(dy), free(w16), free(wf);
    ag_ctx_free(&c);
}

static void test_lora_linear(void) {
    lora_linear_case(4, 0.0f);
    lora_linear_case(20, 0.25f);
}

static void test_cross_entropy(void) {
    int N = 21, C = 48, V = 100;
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 26);
    float *hd = randn((int64_t)N * C, 1);
    uint16_t *w16 = randn16((int64_t)V * C, 0.4f);
    int32_t tg[21];
    int M = 0;
    for (int i = 0; i < N; i++) tg[i] = i % 4 == 3 ? -1 : (int32_t)((i * 37) % V), M += tg[i] >= 0;
    for (int chunk = 16; chunk <= 4096; chunk *= 256) {   // 7 chunks, and the default (one chunk)
        ag_ctx_reset(&c);
        ag_tensor h = ag_wrap2(hd, N, C, "h"), W = ag_wrap_bf16(w16, 2, (int64_t[2]){V, C}, "W");
        h.requires_grad = 1;
        ag_tensor *loss = ag_cross_entropy_chunked(&c, &h, &W, tg, (float)M, chunk);
        float nll[21];
        CHECK(loss && ag_backward(&c, loss) == 0 && ag_nll_rows_chunked(&c, &h, &W, tg, nll, chunk) == 0, "ce: %s",
              err_get());
        if (!loss || !h.grad) continue;
        double tot = 0, tot_tol = 0;
        int bad_nll = 0, bad_dh = 0;
        for (int i = 0; i < N; i++) {
            if (tg[i] < 0) {
                bad_nll += nll[i] != 0;
                for (int k = 0; k < C; k++) bad_dh += h.grad[i * C + k] != 0;
                continue;
            }
            double lg[100], mx = -1e300, dl = 0;
            for (int v = 0; v < V; v++) {
                double a = 0, mag = 0;
                for (int k = 0; k < C; k++) {
                    double p = rbf(hd[i * C + k]) * bf16_to_f32(w16[v * C + k]);
                    a += p, mag += fabs(p);
                }
                lg[v] = a, mx = fmax(mx, a), dl = fmax(dl, (C + 2) * U_F32 * mag);
            }
            double se = 0;
            for (int v = 0; v < V; v++) se += exp(lg[v] - mx);
            double ref = mx + log(se) - lg[tg[i]], tol = 2 * dl + 8 * U_F32 * (fabs(mx) + 1);
            bad_nll += fabs(nll[i] - ref) > tol;
            tot += ref, tot_tol += tol;
            for (int k = 0; k < C; k++) {
                double g = 0, mag = 0;
                for (int v = 0; v < V; v++) {
                    double p = exp(lg[v] - mx) / se, w = bf16_to_f32(w16[v * C + k]);
                    g += p * w, mag += p * fabs(w);
                }
                double wt = bf16_to_f32(w16[tg[i] * C + k]);
                g -= wt;
                double bound = U_BF16 * mag + (V + C + 8) * U_F32 * (mag + fabs(wt)) + 2 * dl * mag;
                bad_dh += fabs(h.grad[i * C + k] * M - g) > bound;
            }
        }
        CHECK(bad_nll == 0, "chunk %d: %d per-row NLLs beyond the bound", chunk, bad_nll);
        CHECK(fabs(loss->data[0] * M - tot) <= tot_tol + 1e-6 * tot, "chunk %d: loss %.8g vs %.8g", chunk,
              loss->data[0] * M, tot);
        CHECK(bad_dh == 0, "chunk %d: %d dh values beyond 2^-9·Σ p|W|", chunk, bad_dh);
    }
    free(hd), free(w16);
    ag_ctx_free(&c);
}

// Embedding rows of a BF16 table are widened exactly; a trainable BF16 table is refused.
static void test_embedding(void) {
    int V = 50, C = 24;
    uint16_t *t16 = randn16((int64_t)V * C, 1);
    int32_t ids[5] = {3, 49, 0, 3, 17};
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 22);
    ag_tensor T = ag_wrap_bf16(t16, 2, (int64_t[2]){V, C}, "table");
    ag_tensor *y = ag_embedding(&c, &T, ids, 5);
    int bad = !y;
    for (int i = 0; y && i < 5; i++)
        for (int j = 0; j < C; j++) bad += y->data[i * C + j] != bf16_to_f32(t16[ids[i] * C + j]);
    CHECK(bad == 0, "%d embedding values differ from the widened BF16 rows", bad);
    T.requires_grad = 1;
    CHECK(!ag_embedding(&c, &T, ids, 5) && strstr(err_get(), "BF16"), "trainable BF16 table accepted");
    free(t16);
    ag_ctx_free(&c);
}

// bf16_round is round-to-nearest-even as torch and the safetensors writer (ties, NaN,
// infinities, subnormals).
static void test_rounding(void) {
    const struct { uint32_t in; uint16_t out; } cases[] = {
        {0x3F800000u, 0x3F80}, {0x3F808000u, 0x3F80},   // tie -> even (down)
        {0x3F818000u, 0x3F82}, {0x3F808001u, 0x3F81},   // tie -> even (up); above the tie
        {0x7F7FFFFFu, 0x7F80}, {0xFF800000u, 0xFF80},   // overflow to inf; -inf
        {0x7FC00001u, 0x7FC0}, {0x7F800001u, 0x7FC0},   // NaNs -> the canonical quiet NaN
        {0xFFC00000u, 0x7FC0}, {0xFFFFFFFFu, 0x7FC0},   //   whatever the sign and payload, as
        {0xFF800001u, 0x7FC0}, {0x7FA5A5A5u, 0x7FC0},   //   torch's c10::BFloat16 (-nan -> 0x7FC0)
        {0x00000001u, 0x0000}, {0x00018000u, 0x0002},   // subnormals round too
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float f;
        memcpy(&f, &cases[i].in, 4);
        uint16_t h;
        bf16_round(&h, &f, 1);
        bad += h != cases[i].out || f32_to_bf16(f) != st_f32_to_bf16(f) || h != f32_to_bf16(f);
        if (h != cases[i].out) printf("# 0x%08x -> 0x%04x, want 0x%04x\n", cases[i].in, h, cases[i].out);
    }
    CHECK(bad == 0, "%d rounding cases wrong", bad);
}

// --- 2. loading

// BF16-held weights: as stored (BF16 file) or rounded to nearest-even (F32 file); no fp32 copy.
static void test_load(void) {
    const char *dirs[2] = {"tests/fixtures/tiny-llama-bf16", "tests/fixtures/train-tiny"};
    for (int k = 0; k < 2; k++) {
        llama_model m32, m16;
        if (llama_load(dirs[k], &m32) != 0 || llama_load_precision(dirs[k], &m16, AG_PREC_BF16) != 0) {
            CHECK(0, "%s: %s", dirs[k], err_get());
            return;
        }
        CHECK(m16.precision == AG_PREC_BF16 && m32.precision == AG_PREC_FP32, "precision field");
        st_model *st = st_open(dirs[k]);
        int bad = 0, n16 = 0;
        for (int l = 0; l <= m16.cfg.num_layers; l++)
            for (int p = 0; p < (l < m16.cfg.num_layers ? LLAMA_NPROJ : 1); p++) {
                const ag_tensor *t16 = l < m16.cfg.num_layers ? llama_proj_weight(&m16, l, p) : llama_embed(&m16);
                const ag_tensor *t32 = l < m16.cfg.num_layers ? llama_proj_weight(&m32, l, p) : llama_embed(&m32);
                bad += t16->dtype != AG_BF16 || t16->data || !t16->w16 || t32->dtype != AG_F32;
                if (t16->dtype != AG_BF16 || !t16->w16) continue;
                n16++;
                for (int64_t i = 0; i < t16->numel; i++) bad += t16->w16[i] != f32_to_bf16(t32->data[i]);
            }
        CHECK(bad == 0 && n16 == m16.cfg.num_layers * LLAMA_NPROJ + 1, "%s: %d BF16 weights, %d mismatches", dirs[k],
              n16, bad);
        // a BF16 file's bytes are kept as they are
        const st_tensor *t = st ? st_find(st, "model.layers.0.mlp.down_proj.weight") : NULL;
        if (t && t->dtype == ST_BF16)
            CHECK(!memcmp(t->data, llama_proj_weight(&m16, 0, LLAMA_DOWN)->w16, t->nbytes), "BF16 bytes changed");
        CHECK(k == 0 ? t && t->dtype == ST_BF16 : t && t->dtype == ST_F32, "%s: fixture dtype", dirs[k]);
        CHECK(llama_lm_head(&m16)->w16 == llama_embed(&m16)->w16, "tied lm-head shares the BF16 embedding");
        CHECK(m16.w.norm.dtype == AG_F32 && m16.w.layers[0].attn_norm.dtype == AG_F32 &&
                  !memcmp(m16.w.norm.data, m32.w.norm.data, sizeof(float) * m16.cfg.hidden_size),
              "norms stay fp32");
        if (st) st_close(st);
        llama_free(&m32);
        llama_free(&m16);
    }
}

// The SigLIP tower: BF16 linears and patch embedding; features after post_layernorm against
// fp32: 3 layers × 6 linears + the patch embedding = 19 rounded matmuls, 0.16%·√19 ≈ 0.7%, ×3
// for LayerNorm, GELU and softmax (as for the logits, see the top of the file) = 2.1%.
static void test_siglip(void) {
    siglip_model s32, s16;
    const char *dir = "tests/fixtures/tiny-siglip";
    if (siglip_load(dir, &s32) != 0 || siglip_load_precision(dir, &s16, AG_PREC_BF16) != 0) {
        CHECK(0, "%s: %s", dir, err_get());
        return;
    }
    CHECK(s16.patch_w.dtype == AG_BF16 && s16.layers[0].q_w.dtype == AG_BF16 && s16.layers[0].fc2_w.dtype == AG_BF16 &&
              s16.layers[0].q_b.dtype == AG_F32 && s16.layers[0].ln1_w.dtype == AG_F32 && s16.pos.dtype == AG_F32,
          "which SigLIP weights are BF16");
    int S = s16.cfg.image_size, B = 2;
    int64_t n = (int64_t)B * s16.cfg.num_patches * s16.cfg.hidden_size;
    float *px = randn((int64_t)B * 3 * S * S, 0.5f), *f32 = malloc(sizeof(float) * n), *f16 = malloc(sizeof(float) * n);
    ag_ctx c;
    ag_ctx_init(&c, siglip_arena_bytes(&s32, B));
    CHECK(siglip_features(&c, &s32, px, B, -1, f32) == 0 && siglip_features(&c, &s16, px, B, -1, f16) == 0, "%s",
          err_get());
    double e = rel_norm_err(f16, f32, n);
    printf("# siglip features bf16 vs fp32: relative error %.3e (bound 2.1e-2)\n", e);
    CHECK(e <= 2.1e-2 && e > 0, "siglip bf16 features off by %.3e", e);
    free(px), free(f32), free(f16);
    ag_ctx_free(&c);
    siglip_free(&s32);
    siglip_free(&s16);
}

// --- 3. the tiny model against PyTorch autocast and fp32

#define TINY "tests/fixtures/train-tiny"
static fixture *fx, *fx32;       // bf16_ref (autocast) and train_ref (fp32) fixtures
static llama_model m32, m16;

// logits [N, V] of batch b1 with the "init" LoRA (the lm-head through ag_linear: BF16 in m16)
static float *logits_of(const llama_model *m, lora_adapter *a) {
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 26);
    ag_set_grad(&c, 0);
    data_batch b = trainfx_batch(fx32, "b1");
    ag_tensor *h = llama_forward(&c, m, &a->view, b.ids, NULL, b.n, b.pos, b.kv_begin);
    ag_tensor *l = ag_linear(&c, h, llama_lm_head(m), NULL);
    float *out = NULL;
    if (l) {
        out = malloc(sizeof(float) * l->numel);
        memcpy(out, l->data, sizeof(float) * l->numel);
    } else {
        CHECK(0, "forward: %s", err_get());
    }
    ag_ctx_free(&c);
    return out;
}

static void test_logits(void) {
    lora_adapter a;
    if (trainfx_lora(&a, &m16.cfg, fx32, "init") != 0) {
        CHECK(0, "LoRA factors 'init.*' from train_ref.safetensors: %s", err_get());
        return;
    }
    long n = 0;
    const float *L32 = fixture_f32(fx, "logits32", &n), *L16 = fixture_f32(fx, "logits16", NULL);
    float *l16 = logits_of(&m16, &a), *l32 = logits_of(&m32, &a), *again = logits_of(&m16, &a);
    if (!L32 || !L16 || !l16 || !l32 || !again) return;
    double e_lorac = rel_norm_err(l16, L32, n), e_torch = rel_norm_err(L16, L32, n);
    double e_cross = rel_norm_err(l16, L16, n), e_fp32 = rel_norm_err(l32, L32, n);
    printf("# logits vs torch fp32: lorac bf16 %.3e, torch autocast %.3e, lorac fp32 %.3e; lorac bf16 vs autocast %.3e\n",
           e_lorac, e_torch, e_fp32, e_cross);
    CHECK(e_fp32 <= 1e-5, "lorac fp32 logits off by %.3e (fixture mismatch?)", e_fp32);
    CHECK(e_lorac > 1e-4, "bf16 logits equal the fp32 ones (%.3e): is bf16 mode on?", e_lorac);
    CHECK(e_lorac <= 2e-2, "bf16 logits vs fp32: %.3e > 2e-2", e_lorac);
    CHECK(e_lorac <= e_torch, "lorac bf16 (%.3e) is farther from fp32 than torch autocast (%.3e)", e_lorac, e_torch);
    CHECK(e_cross <= 2e-2 + e_torch, "bf16 logits vs autocast: %.3e", e_cross);
    CHECK(!memcmp(l16, again, sizeof(float) * n), "bf16 logits differ run to run");
    free(l16), free(l32), free(again);
    lora_free(&a);
}

// Decoding: the KV-cached forward token by token (every projection and the lm-head through
// gemv_bf16, the LoRA through sgemv) against the batched forward (oneDNN matmuls) on the first
// document of b1. Both round the same activations to BF16 and accumulate in fp32; only the
// summation order differs, which can flip the BF16 rounding of an activation that sits on a
// rounding boundary (probability ~2⁻¹⁵ per value), so the bound is 1e-4 of the logits' norm
// where fp32 would give ~1e-6.
static void test_decode(void) {
    lora_adapter a;
    if (trainfx_lora(&a, &m16.cfg, fx32, "init") != 0) {
        CHECK(0, "LoRA factors 'init.*' from train_ref.safetensors: %s", err_get());
        return;
    }
    float *full = logits_of(&m16, &a);
    data_batch b = trainfx_batch(fx32, "b1");
    int64_t n = 0, V = m16.cfg.vocab_size;
    while (n < b.n && b.kv_begin[n] == 0) n++;   // the first document
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 26);
    llama_kv_cache kv;
    float *dec = malloc(sizeof(float) * n * V);
    CHECK(full && llama_kv_cache_init(&kv, &m16, n) == 0, "%s", err_get());
    for (int64_t i = 0; full && i < n; i++) {
        ag_ctx_reset(&c);
        ag_tensor *h = llama_forward_cached(&c, &m16, &a.view, &kv, b.ids + i, NULL, 1);
        CHECK(h != NULL, "cached forward: %s", err_get());
        if (!h) break;
        llama_logits(&m16, h->data, dec + i * V);
    }
    double e = full ? rel_norm_err(dec, full, n * V) : 1;
    printf("# decode (gemv_bf16) vs batched forward (oneDNN), %lld tokens: relative error %.2e\n", (long long)n, e);
    CHECK(e <= 1e-4, "decoded logits vs batched: %.3e", e);
    llama_kv_cache_free(&kv);
    ag_ctx_free(&c);
    free(full), free(dec);
    lora_free(&a);
}

static void test_step_gradients(void) {
    lora_adapter a;
    if (trainfx_lora(&a, &m16.cfg, fx32, "init") != 0) {
        CHECK(0, "LoRA factors 'init.*' from train_ref.safetensors: %s", err_get());
        return;
    }
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 28);
    c.training = 1;
    data_batch b = trainfx_batch(fx32, "b1");
    double loss = 0;
    ag_params_zero_grad(&a.params);
    CHECK(train_micro_step(&c, &m16, &a.view, &b, (float)b.n_supervised, &loss) == 0, "step: %s", err_get());
    const float *ref32 = fixture_f32(fx32, "b1.loss", NULL), *ref16 = fixture_f32(fx, "loss16", NULL);
    if (!ref32 || !ref16) return;
    printf("# step loss: lorac bf16 %.6f, torch autocast %.6f, fp32 %.6f\n", loss, ref16[0], ref32[0]);
    CHECK(fabs(loss - ref32[0]) <= 1e-2 * ref32[0], "loss %.6f vs fp32 %.6f", loss, ref32[0]);
    CHECK(fabs(loss - ref16[0]) <= 2e-2 * ref32[0], "loss %.6f vs autocast %.6f", loss, ref16[0]);
    double worst = 0, worst_t = 0;
    for (int i = 0; i < a.params.n; i++) {
        ag_tensor *t = a.params.t[i];
        char k[256];
        snprintf(k, sizeof k, "grad.%s", t->name);
        const float *g32 = fixture_f32(fx32, k, NULL);
        snprintf(k, sizeof k, "grad16.%s", t->name);
        const float *g16 = fixture_f32(fx, k, NULL);
        if (!g32 || !g16) continue;
        double e = rel_norm_err(t->grad, g32, t->numel), et = rel_norm_err(g16, g32, t->numel);
        double ec = rel_norm_err(t->grad, g16, t->numel);
        worst = fmax(worst, e), worst_t = fmax(worst_t, et);
        CHECK(e <= 3e-2, "%s: gradient vs fp32 %.3e > 3e-2", t->name, e);
        CHECK(ec <= 3e-2 + et, "%s: gradient vs autocast %.3e (autocast vs fp32 %.3e)", t->name, ec, et);
    }
    printf("# LoRA gradients vs torch fp32 (worst of %d tensors): lorac bf16 %.3e, torch autocast %.3e\n", a.params.n,
           worst, worst_t);
    CHECK(worst > 0, "bf16 gradients equal the fp32 ones");
    ag_ctx_free(&c);
    lora_free(&a);
}

// gen_train.py's 30 steps (AdamW, clipping, cosine with warmup, grad_accum 2); losses[30]
static int run_trajectory(const llama_model *m, double *losses, float lr) {
    lora_adapter a;
    if (trainfx_lora(&a, &m->cfg, fx32, "traj_init") != 0) return -1;
    ag_adamw opt;
    ag_adamw_init(&opt, a.params.total, 0.9f, 0.999f, 1e-8f, 0.01f);
    cfg_train cfg;
    cfg_defaults(&cfg);
    cfg.optim.lr = lr;
    cfg.schedule.warmup_steps = 3;
    cfg.schedule.min_lr_ratio = 0.1f;
    ag_ctx c;
    ag_ctx_init(&c, (size_t)1 << 28);
    c.training = 1;
    data_batch mb[4];
    char p[16];
    for (int j = 0; j < 4; j++) {
        snprintf(p, sizeof p, "mb%d", j);
        mb[j] = trainfx_batch(fx32, p);
    }
    int rc = 0;
    for (int n = 0; n < 30 && rc == 0; n++) {
        const data_batch *b0 = &mb[(2 * n) % 4], *b1 = &mb[(2 * n + 1) % 4];
        float norm = (float)(b0->n_supervised + b1->n_supervised);
        double gn = 0;
        losses[n] = 0;
        ag_params_zero_grad(&a.params);
        rc = train_micro_step(&c, m, &a.view, b0, norm, &losses[n]) || train_micro_step(&c, m, &a.view, b1, norm, &losses[n]) ||
             train_opt_step(&opt, &a.params, cfg_lr_at(&cfg, n, 30), 1.0f, &gn);
    }
    cfg_free(&cfg);
    ag_adamw_free(&opt);
    ag_ctx_free(&c);
    lora_free(&a);
    return rc ? -1 : 0;
}

// (a) gen_train.py's trajectory (lr 1e-2: the loss falls 50x, from 10.9 to 0.2) against torch
// fp32 and autocast: within 1% of fp32 (2% of autocast) while the loss is above 1 nat; in the
// memorized tail below 1 nat, 3%: Adam's update m/√v is scale-free, so coordinates whose
// gradient has vanished move by ±lr whatever the rounding makes their sign (autocast itself
// deviates 1.9% from fp32 there). (b) The same steps at lr 3e-3 (loss 10.9 -> 4.2), lorac bf16
// against lorac fp32: within 1% at every step (the criterion).
static void test_trajectory(void) {
    double l16[30], l32[30], again[30], m16b[30], m32b[30];
    CHECK(run_trajectory(&m16, l16, 1e-2f) == 0 && run_trajectory(&m32, l32, 1e-2f) == 0 &&
              run_trajectory(&m16, again, 1e-2f) == 0 && run_trajectory(&m16, m16b, 3e-3f) == 0 &&
              run_trajectory(&m32, m32b, 3e-3f) == 0,
          "%s", err_get());
    const float *t16 = fixture_f32(fx, "traj16.loss", NULL), *t32 = fixture_f32(fx32, "traj.loss", NULL);
    if (!t16 || !t32) return;
    double worst32 = 0, worst_t = 0, worst_tt = 0, tail32 = 0, worst_b = 0;
    for (int n = 0; n < 30; n++) {
        double e32 = fabs(l16[n] - l32[n]) / l32[n], et = fabs(l16[n] - t16[n]) / t32[n];
        double ett = fabs(t16[n] - t32[n]) / t32[n], eb = fabs(m16b[n] - m32b[n]) / m32b[n];
        int tail = t32[n] < 1;
        if (tail) tail32 = fmax(tail32, e32);
        else worst32 = fmax(worst32, e32);
        worst_t = fmax(worst_t, et), worst_tt = fmax(worst_tt, ett), worst_b = fmax(worst_b, eb);
        CHECK(e32 <= (tail ? 3e-2 : 1e-2), "step %d: bf16 loss %.6f vs fp32 %.6f (%.2f%%)", n, l16[n], l32[n], 100 * e32);
        CHECK(et <= (tail ? 3e-2 : 2e-2), "step %d: bf16 loss %.6f vs autocast %.6f", n, l16[n], t16[n]);
        CHECK(eb <= 1e-2, "lr 3e-3, step %d: bf16 loss %.6f vs fp32 %.6f (%.2f%%)", n, m16b[n], m32b[n], 100 * eb);
    }
    CHECK(!memcmp(l16, again, sizeof l16), "the bf16 trajectory differs run to run");
    printf("# 30 steps at lr 1e-2, loss %.4f -> %.4f: lorac bf16 vs lorac fp32 worst %.2f%% (%.2f%% below 1 nat), vs "
           "torch autocast %.2f%%; autocast vs torch fp32 %.2f%%\n",
           l16[0], l16[29], 100 * worst32, 100 * tail32, 100 * worst_t, 100 * worst_tt);
    printf("# 30 steps at lr 3e-3, loss %.4f -> %.4f: lorac bf16 vs lorac fp32 worst %.3f%%\n", m16b[0], m16b[29],
           100 * worst_b);
}

int main(void) {
    RUN(test_rounding);
    RUN(test_linear_exact);
    RUN(test_lora_linear);
    RUN(test_cross_entropy);
    RUN(test_embedding);
    RUN(test_load);
    RUN(test_siglip);
    fx = fixture_load("tests/fixtures/bf16_ref.safetensors");
    fx32 = fixture_load("tests/fixtures/train_ref.safetensors");
    if (!fx || !fx32 || llama_load(TINY, &m32) != 0 || llama_load_precision(TINY, &m16, AG_PREC_BF16) != 0) {
        test_fail("setup: %s", err_get());
        return test_summary();
    }
    RUN(test_logits);
    RUN(test_decode);
    RUN(test_step_gradients);
    RUN(test_trajectory);
    llama_free(&m32);
    llama_free(&m16);
    fixture_free(fx);
    fixture_free(fx32);
    return test_summary();
}
