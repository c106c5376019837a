// adamw.c — AdamW over one contiguous parameter block, as torch.optim.AdamW (decoupled weight
// decay, bias-corrected moments), and global gradient-norm clipping as
// torch.nn.utils.clip_grad_norm_. Elementwise loops run under OpenMP; the norm is summed in
// fixed blocks in a fixed order, so it is bit-identical for any thread count.
#include "ag.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NORM_BLOCK 16384   // floats per partial sum of the gradient norm

int ag_adamw_init(ag_adamw *o, int64_t n, float beta1, float beta2, float eps, float wd) {
    memset(o, 0, sizeof *o);
    if (n < 0 || !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps >= 0) || !(wd >= 0))
        return err_set("adamw: invalid settings n = %lld, beta1 = %g, beta2 = %g, eps = %g, weight_decay = %g "
                       "(betas must be in [0, 1), eps and weight_decay >= 0)",
                       (long long)n, (double)beta1, (double)beta2, (double)eps, (double)wd);
    o->beta1 = beta1, o->beta2 = beta2, o->eps = eps, o->weight_decay = wd;
    o->n = n;
    o->m = xcalloc((size_t)(n ? n : 1), sizeof *o->m);
    o->v = xcalloc((size_t)(n ? n : 1), sizeof *o->v);
    return 0;
}

void ag_adamw_free(ag_adamw *o) {
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

double ag_grad_norm(const float *g, int64_t n) {
    int64_t nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
    double *part = xmalloc((size_t)(nb ? nb : 1) * sizeof *part);
#pragma omp parallel for schedule(static) if (n >= AG_PAR_MIN)   // fixed blocks: same sum either way
    for (int64_t b = 0; b < nb; b++) {
        int64_t lo = b * NORM_BLOCK, hi = lo + NORM_BLOCK < n ? lo + NORM_BLOCK : n;
        double s = 0;
        for (int64_t i = lo; i < hi; i++) s += (double)g[i] * g[i];
        part[b] = s;
    }
    double s = 0;
    for (int64_t b = 0; b < nb; b++) s += part[b];
    free(part);
    return sqrt(s);
}

double ag_clip_grad_norm(float *g, int64_t n, double max_norm) {
    double norm = ag_grad_norm(g, n);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1) {
        float f = (float)coef;
#pragma omp parallel for schedule(static) if (n >= AG_PAR_MIN)
        for (int64_t i = 0; i < n; i++) g[i] *= f;
    }
    return norm;
}

// The rounding steps follow torch's fp32 kernels (p·decay rounded first, fused multiply-adds
// where ATen uses them, m·step divided last), so trajectories match it to an ulp or so; the
// compiler must not contract the other operations.
__attribute__((optimize("fp-contract=off")))
void ag_adamw_step(ag_adamw *o, float *p, const float *g, float lr) {
    o->t++;
    double b1 = o->beta1, b2 = o->beta2;
    double bc1 = 1 - pow(b1, (double)o->t), bc2 = 1 - pow(b2, (double)o->t);
    float decay = (float)(1 - (double)lr * o->weight_decay);
    float c1 = (float)(1 - b1), c2 = (float)(1 - b2), fb1 = o->beta1, fb2 = o->beta2;
    float nstep = (float)(-(double)lr / bc1), bc2s = (float)sqrt(bc2), eps = o->eps;
    float *m = o->m, *v = o->v;
#pragma omp parallel for schedule(static) if (o->n >= AG_PAR_MIN)
    for (int64_t i = 0; i < o->n; i++) {
        float gi = g[i];
        float pi = p[i] * decay;                      // decoupled weight decay
        float mi = fmaf(gi, c1, fb1 * m[i]);          // m = β1 m + (1−β1) g
        float vi = fmaf(c2 * gi, gi, fb2 * v[i]);     // v = β2 v + (1−β2) g²
        m[i] = mi, v[i] = vi;
        float denom = sqrtf(vi) / bc2s + eps;         // √v / √(1−β2ᵗ) + ε
        p[i] = pi + (nstep * mi) / denom;             // p −= lr/(1−β1ᵗ) · m / denom
    }
}
