// siglip.c — the SigLIP vision tower: loading from a HF folder and the no-grad forward to
// any hidden state (see siglip.h). Every linear is one fused oneDNN matmul (mm_linear: bias,
// GELU and the residual add applied to the fp32 accumulator): fp32 operands in fp32
// precision (oneDNN's AVX-512 fp32 kernels run these shapes ~1.8× faster than OpenBLAS's
// AVX2 sgemm here, and give the same bits at any thread count), BF16 ones in bf16 precision.
// LayerNorm and attention are the autograd ops (no tape: grad is off).
#include "siglip.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm16.h"
#include "safetensors.h"
#include "util.h"
#include "wide16.h"

// --- loading

typedef struct loader {
    const st_model *st;
    siglip_model *m;
    int bf16;            // matmul weights in BF16 (precision bf16)
    int keep16;          // weights: auto in fp32 precision: BF16 matmul weights stay BF16 (AG_BF16X)
    int n16, rounded;    // BF16 weights loaded; how many were rounded from F32/F16
    double bytes16;
} loader;

// Loads `name` (shape [a] or [a, b]; b = 0 for 1-D) into *t, owned by the model; in BF16 when
// `matmul` in bf16 precision. `fndim`/`fshape` give the file's shape (the patch conv: 4-D) when
// it differs from the tensor's.
static int load_as(loader *L, ag_tensor *t, const char *name, int matmul, int fndim, const int64_t *fshape,
                   int64_t a, int64_t b) {
    int64_t shape[2] = {a, b};
    int ndim = b ? 2 : 1;
    const st_tensor *ft = st_find(L->st, name);
    int x16 = matmul && !L->bf16 && L->keep16 && ft && ft->dtype == ST_BF16;
    if (matmul && (L->bf16 || x16)) {
        int rounded;
        uint16_t *d = st_load_bf16(L->st, name, fndim, fshape, &rounded);
        if (!d) return -1;
        L->m->bufs[L->m->nbufs++] = d;
        *t = x16 ? ag_wrap_bf16x(d, ndim, shape, NULL) : ag_wrap_bf16(d, ndim, shape, NULL);
        L->n16++;
        L->rounded += rounded;
        L->bytes16 += 2.0 * (double)t->numel;
        return 0;
    }
    float *d = st_load_f32(L->st, name, fndim, fshape);
    if (!d) return -1;
    L->m->bufs[L->m->nbufs++] = d;
    *t = ag_wrap(d, ndim, shape, NULL);
    return 0;
}

static int load_t(loader *L, ag_tensor *t, const char *name, int matmul, int64_t a, int64_t b) {
    int64_t shape[2] = {a, b};
    return load_as(L, t, name, matmul, b ? 2 : 1, shape, a, b);
}

int siglip_load(const char *dir, siglip_model *m) { return siglip_load_precision(dir, m, AG_PREC_FP32); }

int siglip_load_precision(const char *dir, siglip_model *m, ag_precision precision) {
    return siglip_load_opts(dir, m, precision, AG_WEIGHTS_F32);
}

int siglip_load_opts(const char *dir, siglip_model *m, ag_precision precision, ag_weights weights) {
    memset(m, 0, sizeof *m);
    m->precision = precision;
    if (hf_siglip_config_load(dir, &m->cfg) != 0) return -1;
    st_model *st = st_open(dir);
    if (!st) return -1;
    const hf_siglip_config *c = &m->cfg;
    int rc = -1;
    if (hf_siglip_check_weights(st, c) != 0) goto done;

    int64_t C = c->hidden_size, I = c->intermediate_size, p = c->patch_size, P = c->num_patches;
    int64_t pin = (int64_t)c->num_channels * p * p;
    m->layers = xcalloc((size_t)c->num_layers, sizeof *m->layers);
    m->bufs = xcalloc((size_t)(5 + 16 * c->num_layers), sizeof *m->bufs);
    loader L = {.st = st, .m = m, .bf16 = precision == AG_PREC_BF16, .keep16 = weights == AG_WEIGHTS_AUTO};
    {   // the conv weight [C, 3, p, p] is read as the linear weight [C, 3·p·p] (same order)
        int64_t pw[4] = {C, c->num_channels, p, p};
        if (load_as(&L, &m->patch_w, "vision_model.embeddings.patch_embedding.weight", 1, 4, pw, C, pin)) goto done;
        m->patch_w.name = "vision_model.embeddings.patch_embedding.weight";
    }
    if (load_t(&L, &m->patch_b, "vision_model.embeddings.patch_embedding.bias", 0, C, 0) ||
        load_t(&L, &m->pos, "vision_model.embeddings.position_embedding.weight", 0, P, C) ||
        load_t(&L, &m->post_ln_w, "vision_model.post_layernorm.weight", 0, C, 0) ||
        load_t(&L, &m->post_ln_b, "vision_model.post_layernorm.bias", 0, C, 0))
        goto done;
    for (int l = 0; l < c->num_layers; l++) {
        siglip_layer *y = &m->layers[l];
        struct {
            ag_tensor *t;
            const char *k;
            int64_t a, b;
        } w[] = {{&y->ln1_w, "layer_norm1.weight", C, 0},    {&y->ln1_b, "layer_norm1.bias", C, 0},
                 {&y->ln2_w, "layer_norm2.weight", C, 0},    {&y->ln2_b, "layer_norm2.bias", C, 0},
                 {&y->q_w, "self_attn.q_proj.weight", C, C}, {&y->q_b, "self_attn.q_proj.bias", C, 0},
                 {&y->k_w, "self_attn.k_proj.weight", C, C}, {&y->k_b, "self_attn.k_proj.bias", C, 0},
                 {&y->v_w, "self_attn.v_proj.weight", C, C}, {&y->v_b, "self_attn.v_proj.bias", C, 0},
                 {&y->o_w, "self_attn.out_proj.weight", C, C}, {&y->o_b, "self_attn.out_proj.bias", C, 0},
                 {&y->fc1_w, "mlp.fc1.weight", I, C},        {&y->fc1_b, "mlp.fc1.bias", I, 0},
                 {&y->fc2_w, "mlp.fc2.weight", C, I},        {&y->fc2_b, "mlp.fc2.bias", C, 0}};
        for (size_t k = 0; k < sizeof w / sizeof w[0]; k++) {
            char n[256];
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.%s", l, w[k].k);
            if (load_t(&L, w[k].t, n, w[k].b != 0, w[k].a, w[k].b) != 0) goto done;   // 2-D: a matmul weight
        }
    }
    if (L.bf16) mm16_log_load(dir, L.n16, L.rounded, L.bytes16);
    rc = 0;
done:
    st_close(st);
    if (rc != 0) siglip_free(m);   // the message already names the file and tensor
    return rc;
}

void siglip_free(siglip_model *m) {
    for (int i = 0; i < m->nbufs; i++) free(m->bufs[i]);
    free(m->bufs);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

// --- forward

int siglip_resolve_layer(const hf_siglip_config *cfg, int s) {
    int L = cfg->num_layers;
    if (s == -1) return L + 1;
    if (s >= 0 && s <= L) return s;
    if (s < -1 && s >= -(L + 1)) return L + 1 + s;
    return err_set("siglip: select_layer %d is out of range for %d encoder layers (expected -1 = after "
                   "post_layernorm, -2 .. -%d counting hidden states from the end, or 0 .. %d; -2 is "
                   "LLaVA's choice)",
                   s, L, L + 1, L);
}

size_t siglip_arena_bytes(const siglip_model *m, int B) {
    const hf_siglip_config *c = &m->cfg;
    size_t N = (size_t)B * c->num_patches, C = c->hidden_size, I = c->intermediate_size;
    size_t pin = (size_t)c->num_channels * c->patch_size * c->patch_size;
    size_t D = C / c->num_heads;
    size_t embed = N * pin + 2 * N * C;
    // attention stage: LN1, q, k, v, attention out, out_proj, residual; ranges, lse, tile scratch
    size_t attn = 7 * N * C + 2 * N + N * c->num_heads +
                  (size_t)omp_get_max_threads() * (4 * 64 * D + 4 * 32 * 64 + 16);
    size_t mlp = 4 * N * C + 2 * N * I;   // LN2, fc1, act, fc2, residual
    size_t peak = embed > attn ? embed : attn;
    peak = peak > mlp ? peak : mlp;
    return peak * sizeof(float) + 64 * 1024;   // + tensor headers and 64-byte alignment
}

// rows[B·P, 3·p·p]: patch (b, py, px) -> row b·P + py·G + px, column (ch, kh, kw) as the conv
// weight [C, 3, p, p] flattens
static void unfold_patches(float *rows, const float *pixels, int B, int S, int p, int ch) {
    int G = S / p;
    int64_t np = (int64_t)B * G * G, pin = (int64_t)ch * p * p;
#pragma omp parallel for schedule(static) if (np * pin >= 16384)
    for (int64_t r = 0; r < np; r++) {
        int64_t b = r / (G * G);
        int py = (int)(r / G % G), px = (int)(r % G);
        float *dst = rows + r * pin;
        for (int k = 0; k < ch; k++)
            for (int kh = 0; kh < p; kh++) {
                const float *src = pixels + ((b * ch + k) * S + (int64_t)py * p + kh) * S + (int64_t)px * p;
                memcpy(dst + ((int64_t)k * p + kh) * p, src, (size_t)p * sizeof(float));
            }
    }
}

// y[N, O] (+)= act(x[N, In] · Wᵀ + b) for a frozen linear of any storage, in one fused oneDNN
// call (mm_linear: bias, activation and residual add applied to the accumulator): fp32
// weights (AG_F32, or AG_BF16X widened exactly, whole, into the per-thread buffer, so both
// storages give the same bits) through the fp32 matmul, BF16 ones (precision bf16) through
// the BF16 matmul. y NULL: a new arena tensor (NULL + err_set when the arena is full);
// otherwise y += (the residual stream).
static ag_tensor *lin(ag_ctx *c, ag_tensor *y, const ag_tensor *x, const ag_tensor *W, const ag_tensor *b, mm_act act) {
    int64_t N = x->shape[0], O = W->shape[0], In = W->shape[1];
    int acc = y != NULL;
    if (!y && !(y = ag_new2(c, N, O))) return NULL;
    const float *W32 = W->data;
    if (W->dtype == AG_BF16X) {
        float *buf = w16_buffer(O * In);
        if (!buf) return NULL;
        bf16_widen(buf, W->w16, O * In);
        W32 = buf;
    }
    mm_linear(y->data, x->data, W->dtype == AG_BF16 ? NULL : W32, W->dtype == AG_BF16 ? W->w16 : NULL, b->data, N, O,
              In, act, acc);
    ag_prof_mark(c, AG_OP_LINEAR);
    return y;
}

int siglip_features(ag_ctx *c, const siglip_model *m, const float *pixels, int B, int select_layer,
                    float *out) {
    const hf_siglip_config *cfg = &m->cfg;
    if (B < 0) return err_set("siglip_features: batch of %d images", B);
    int target = siglip_resolve_layer(cfg, select_layer);
    if (target < 0) return -1;
    if (B == 0) return 0;
    int64_t P = cfg->num_patches, C = cfg->hidden_size, N = (int64_t)B * P;
    int H = cfg->num_heads, p = cfg->patch_size, S = cfg->image_size;
    int64_t pin = (int64_t)cfg->num_channels * p * p;
    float eps = cfg->layer_norm_eps;
    float scale = (float)(1.0 / sqrt((double)(C / H)));   // head_dim ** -0.5 (a double in HF)
    mm_act act = strcmp(cfg->hidden_act, "gelu") != 0 ? MM_GELU_TANH : MM_GELU_ERF;

    int grad = ag_set_grad(c, 0);
    size_t mark0 = c->arena.used;
    int rc = -1;
    ag_tensor x = ag_wrap2(out, N, C, "siglip hidden state");   // the residual stream, in place

    // kv ranges: every row attends the P rows of its image
    int32_t *beg = ag_alloc(c, (size_t)N * 2 * sizeof *beg, "siglip attention ranges");
    if (!beg) goto done;
    int32_t *end = beg + N;
    for (int64_t i = 0; i < N; i++) beg[i] = (int32_t)(i / P * P), end[i] = (int32_t)(i / P * P + P);
    size_t mark = c->arena.used;

    {   // embeddings: x = position embeddings, += the conv as one linear over the unfolded patches
        ag_tensor *rows = ag_new2(c, N, pin);
        if (!rows) goto done;
        unfold_patches(rows->data, pixels, B, S, p, cfg->num_channels);
        for (int b = 0; b < B; b++) memcpy(out + b * P * C, m->pos.data, (size_t)(P * C) * sizeof(float));
        if (!lin(c, &x, rows, &m->patch_w, &m->patch_b, MM_ACT_NONE)) goto done;
        c->arena.used = mark;
    }
    int nrun = target <= cfg->num_layers ? target : cfg->num_layers;
    for (int l = 0; l < nrun; l++, c->arena.used = mark) {
        siglip_layer *w = &m->layers[l];
        ag_tensor *h = ag_layernorm(c, &x, &w->ln1_w, &w->ln1_b, eps), *q, *k, *v, *a;
        if (!h || !(q = lin(c, NULL, h, &w->q_w, &w->q_b, MM_ACT_NONE)) ||
            !(k = lin(c, NULL, h, &w->k_w, &w->k_b, MM_ACT_NONE)) ||
            !(v = lin(c, NULL, h, &w->v_w, &w->v_b, MM_ACT_NONE)) ||
            !(a = ag_attention(c, q, k, v, H, H, beg, end, scale)) || !lin(c, &x, a, &w->o_w, &w->o_b, MM_ACT_NONE))
            goto done;   // x += out_proj(attention(LN1(x)))
        c->arena.used = mark;
        if (!(h = ag_layernorm(c, &x, &w->ln2_w, &w->ln2_b, eps)) ||
            !(h = lin(c, NULL, h, &w->fc1_w, &w->fc1_b, act)) || !lin(c, &x, h, &w->fc2_w, &w->fc2_b, MM_ACT_NONE))
            goto done;   // x += fc2(act(fc1(LN2(x))))
    }
    if (target == cfg->num_layers + 1) {
        ag_tensor *y = ag_layernorm(c, &x, (ag_tensor *)&m->post_ln_w, (ag_tensor *)&m->post_ln_b, eps);
        if (!y) goto done;
        memcpy(out, y->data, (size_t)(N * C) * sizeof(float));
    }
    rc = 0;
done:
    if (rc != 0)
        err_prefix("siglip_features (%d images of %dx%d; the arena needs about %.1f MiB, see siglip_arena_bytes)",
                   B, S, S, siglip_arena_bytes(m, B) / 1048576.0);
    c->arena.used = mark0;
    ag_set_grad(c, grad);
    return rc;
}
