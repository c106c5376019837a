// ops_vision.c — the differentiable ops of the vision fusions: pooling of visual tokens over
// the patch axis (a learned linear map, and AdaptiveAvgPool1d's exact average) and the tanh
// gate of the cross-attention blocks. Each forward is followed by its backward, which
// accumulates (+=) into the gradient of every input that requires one (see ag.h).
//
// Shapes (legend in ag.h): B images, P patches per image, N pooled tokens per image,
// C feature width. x [B·P, C] holds the images one after the other; outputs [B·N, C].
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ag.h"
#include "blas.h"

#define SHP(t) ag_shape_str((t), (char[64]){0}, 64)

// --- adaptive-average bins: output i averages inputs [floor(i·P/N), ceil((i+1)·P/N))

void ag_pool_bin(int64_t P, int64_t N, int64_t i, int64_t *start, int64_t *end) {
    *start = (i * P) / N;
    *end = ((i + 1) * P + N - 1) / N;
}

// --- linear pool: y_b[N,C] = W[N,P] · x_b[P,C] + b[N] (b broadcast over C), per image b

static void pool_backward(ag_ctx *c, ag_node *n) {
    ag_tensor *x = n->in[0], *W = n->in[1], *bias = n->in[2];
    const float *dy = n->out->grad;   // [B·N, C]
    int64_t B = n->i[0], P = n->i[1], N = n->i[2], C = n->i[3];
    float *dx = ag_grad(c, x), *dW = ag_grad(c, W), *db = ag_grad(c, bias);
    for (int64_t b = 0; b < B; b++) {
        const float *dyb = dy + b * N * C, *xb = x->data + b * P * C;
        if (dx)   // dx_b[P,C] += Wᵀ[P,N] · dy_b[N,C]
            ag_sgemm(1, 0, P, C, N, 1.0f, W->data, P, dyb, C, 1.0f, dx + b * P * C, C);
        if (dW)   // dW[N,P] += dy_b[N,C] · x_bᵀ[C,P]
            ag_sgemm(0, 1, N, P, C, 1.0f, dyb, C, xb, C, 1.0f, dW, P);
    }
    if (db)   // db[n] += Σ_b Σ_c dy_b[n,c], summed in double, images then columns in order
        for (int64_t r = 0; r < N; r++) {
            double s = 0;
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < C; j++) s += dy[(b * N + r) * C + j];
            db[r] += (float)s;
        }
}

void ag_pool_rows_fwd(float *y, const float *x, const float *W, const float *bias, int64_t B, int64_t P, int64_t N,
                      int64_t C) {
    for (int64_t b = 0; b < B; b++) {
        float *yb = y + b * N * C;
        for (int64_t r = 0; r < N; r++)
            for (int64_t j = 0; j < C; j++) yb[r * C + j] = bias ? bias[r] : 0.0f;
        ag_sgemm(0, 0, N, C, P, 1.0f, W, P, x + b * P * C, C, 1.0f, yb, C);
    }
}

ag_tensor *ag_pool_rows(ag_ctx *c, ag_tensor *x, ag_tensor *W, ag_tensor *bias) {
    if (!x || !W) return NULL;
    if (W->ndim != 2 || x->ndim != 2 || W->shape[1] <= 0 || x->shape[0] % W->shape[1] != 0) {
        err_set("pool: x [B·P, C] %s does not split into images of W [N, P] %s's P rows", SHP(x), SHP(W));
        return NULL;
    }
    int64_t N = W->shape[0], P = W->shape[1], C = x->shape[1], B = x->shape[0] / P;
    if (bias && bias->numel != N) {
        err_set("pool: bias %s does not match W [N, P] %s (needs N = %lld values)", SHP(bias), SHP(W), (long long)N);
        return NULL;
    }
    ag_tensor *y = ag_new2(c, B * N, C);
    if (!y) return NULL;
    ag_pool_rows_fwd(y->data, x->data, W->data, bias ? bias->data : NULL, B, P, N, C);
    ag_tensor *in[3] = {x, W, bias};
    ag_node *nd = ag_record(c, AG_OP_POOL, y, in, 3, pool_backward);
    if (nd) nd->i[0] = B, nd->i[1] = P, nd->i[2] = N, nd->i[3] = C;
    return y;
}

// --- average pool: y_b[i,c] = (Σ_{p in bin i} x_b[p,c]) / |bin i|, as torch's
// adaptive_avg_pool kernel: an fp32 sum in patch order, then one division (bit-identical)

static void avgpool_backward(ag_ctx *c, ag_node *n) {
    const float *dy = n->out->grad;
    int64_t B = n->i[0], P = n->i[1], N = n->i[2], C = n->i[3];
    float *dx = ag_grad(c, n->in[0]);
    if (!dx) return;
    // as torch: grad_input[p] += grad_output[i] / |bin i|, bins in order (they may overlap)
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < N; i++) {
            int64_t s, e;
            ag_pool_bin(P, N, i, &s, &e);
            float k = (float)(e - s);
            const float *g = dy + (b * N + i) * C;
            for (int64_t p = s; p < e; p++) {
                float *d = dx + (b * P + p) * C;
                for (int64_t j = 0; j < C; j++) d[j] += g[j] / k;
            }
        }
}

void ag_avgpool_rows_fwd(float *y, const float *x, int64_t B, int64_t P, int64_t N, int64_t C) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < N; i++) {
            int64_t s, e;
            ag_pool_bin(P, N, i, &s, &e);
            float *o = y + (b * N + i) * C, k = (float)(e - s);
            for (int64_t j = 0; j < C; j++) {
                float sum = 0.0f;
                for (int64_t p = s; p < e; p++) sum += x[(b * P + p) * C + j];
                o[j] = sum / k;
            }
        }
}

ag_tensor *ag_avgpool_rows(ag_ctx *c, ag_tensor *x, int64_t P, int64_t N) {
    if (!x) return NULL;
    if (x->ndim != 2 || P <= 0 || N <= 0 || N > P || x->shape[0] % P != 0) {
        err_set("avgpool: x [B·P, C] %s with P = %lld patches per image -> N = %lld tokens (need 1 <= N <= P and "
                "whole images)", SHP(x), (long long)P, (long long)N);
        return NULL;
    }
    int64_t C = x->shape[1], B = x->shape[0] / P;
    ag_tensor *y = ag_new2(c, B * N, C);
    if (!y) return NULL;
    ag_avgpool_rows_fwd(y->data, x->data, B, P, N, C);
    ag_tensor *in[1] = {x};
    ag_node *nd = ag_record(c, AG_OP_AVGPOOL, y, in, 1, avgpool_backward);
    if (nd) nd->i[0] = B, nd->i[1] = P, nd->i[2] = N, nd->i[3] = C;
    return y;
}

// --- tanh gate: y = x + tanh(g)·z, g a scalar [1]

static void gated_add_backward(ag_ctx *c, ag_node *n) {
    ag_tensor *x = n->in[0], *z = n->in[1], *g = n->in[2];
    const float *dy = n->out->grad;
    int64_t m = n->out->numel;
    float t = n->f[0];
    float *dx = ag_grad(c, x), *dz = ag_grad(c, z), *dg = ag_grad(c, g);
    if (dx)
        for (int64_t i = 0; i < m; i++) dx[i] += dy[i];
    if (dz)
        for (int64_t i = 0; i < m; i++) dz[i] += t * dy[i];
    if (dg) {   // dg = (1 − tanh²g) Σ dy·z (double accumulation, in order)
        double s = 0;
        for (int64_t i = 0; i < m; i++) s += (double)dy[i] * z->data[i];
        dg[0] += (float)((1.0 - (double)t * t) * s);
    }
}

ag_tensor *ag_gated_add(ag_ctx *c, ag_tensor *x, ag_tensor *z, ag_tensor *g) {
    if (!x || !z || !g) return NULL;
    if (!ag_same_shape(x, z) || g->numel != 1) {
        err_set("gated_add: x %s and z %s must have one shape and the gate %s one value", SHP(x), SHP(z), SHP(g));
        return NULL;
    }
    ag_tensor *y = ag_new(c, x->ndim, x->shape);
    if (!y) return NULL;
    float t = tanhf(g->data[0]);
    for (int64_t i = 0; i < x->numel; i++) y->data[i] = x->data[i] + t * z->data[i];
    ag_tensor *in[3] = {x, z, g};
    ag_node *nd = ag_record(c, AG_OP_GATED_ADD, y, in, 3, gated_add_backward);
    if (nd) nd->f[0] = t;
    return y;
}
