// gradcheck.h — central-difference gradient checks for ops (and small compositions).
//
//   static ag_tensor *f(ag_ctx *c, ag_tensor **in, void *user) { return ag_gelu(c, in[0]); }
//   float *x = ...;                       // input data (owned by the caller)
//   gc_input ins[] = {{x, 2, {4, 8}, 1}}; // data, ndim, shape, differentiable?
//   CHECK(gradcheck("gelu", f, NULL, ins, 1, 1e-3, 1e-2) == 0, "gelu gradients");
//
// For every non-empty subset of the differentiable inputs, the inputs in the subset get a
// gradient (as trainable leaves), the others are frozen; the op runs with grad on, the tape
// is seeded with a random dout, and each checked element's analytic gradient is compared
// with (L(x+eps) - L(x-eps)) / 2eps, L = Σ out·dout accumulated in double. Frozen inputs
// must end with no gradient buffer. Up to `GC_MAX_ELEMS` elements per input are checked
// (chosen at random for large inputs). The dropout RNG is reset before each forward.
#ifndef LORAC_GRADCHECK_H
#define LORAC_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ag.h"

#define GC_MAX_ELEMS 48

typedef ag_tensor *(*gc_fn)(ag_ctx *c, ag_tensor **in, void *user);

typedef struct gc_input {
    float *data;
    int ndim;
    int64_t shape[AG_MAXDIM];
    int diff;   // differentiable
} gc_input;

// fills x[n] with uniform values in [lo, hi) from a seeded RNG
static inline void gc_fill(float *x, int64_t n, float lo, float hi, uint64_t seed) {
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * ag_rng_uniform(&s);
}

static inline double gc_eval(ag_ctx *c, gc_fn f, void *user, ag_tensor *ts, int nin, const float *dout,
                             int64_t *nout) {
    ag_ctx_reset(c);
    c->rng = 12345;
    int old = ag_set_grad(c, 0);
    ag_tensor *ptr[AG_MAXIN];
    for (int i = 0; i < nin; i++) ptr[i] = &ts[i];
    ag_tensor *out = f(c, ptr, user);
    ag_set_grad(c, old);
    if (!out) {
        printf("FAIL gradcheck forward failed: %s\n", err_get());
        return NAN;
    }
    if (nout) *nout = out->numel;
    double L = 0;
    if (dout)
        for (int64_t i = 0; i < out->numel; i++) L += (double)out->data[i] * dout[i];
    return L;
}

static inline int gradcheck(const char *name, gc_fn f, void *user, const gc_input *in, int nin,
                            double eps, double tol) {
    ag_ctx c;
    if (ag_ctx_init(&c, (size_t)1 << 32) != 0) { printf("FAIL %s: %s\n", name, err_get()); return 1; }
    c.training = 1;
    ag_tensor ts[AG_MAXIN];
    for (int i = 0; i < nin; i++) ts[i] = ag_wrap(in[i].data, in[i].ndim, in[i].shape, NULL);
    int64_t nout = 0;
    gc_eval(&c, f, user, ts, nin, NULL, &nout);
    float *dout = malloc((size_t)nout * sizeof(float));
    gc_fill(dout, nout, -1, 1, 777);
    int bad = 0;
    unsigned diffmask = 0;
    for (int i = 0; i < nin; i++) if (in[i].diff) diffmask |= 1u << i;
    for (unsigned sub = 1; sub <= diffmask; sub++) {
        if ((sub & ~diffmask) != 0) continue;
        float *grads[AG_MAXIN] = {0};
        for (int i = 0; i < nin; i++) {
            ts[i] = ag_wrap(in[i].data, in[i].ndim, in[i].shape, NULL);
            if (sub & (1u << i)) {
                grads[i] = calloc((size_t)ts[i].numel, sizeof(float));
                ts[i].grad = grads[i];
                ts[i].requires_grad = 1;
                ts[i].is_param = 1;
            }
        }
        ag_ctx_reset(&c);
        c.rng = 12345;
        ag_tensor *ptr[AG_MAXIN];
        for (int i = 0; i < nin; i++) ptr[i] = &ts[i];
        ag_tensor *out = f(&c, ptr, user);
        if (!out || ag_backward_from(&c, out, dout) != 0) {
            printf("FAIL %s subset %u: forward/backward failed: %s\n", name, sub, err_get());
            bad++;
            goto next;
        }
        for (int i = 0; i < nin; i++) {
            if (!(sub & (1u << i))) {
                if (ts[i].grad) { printf("FAIL %s: frozen input %d got a gradient buffer\n", name, i); bad++; }
                continue;
            }
            uint64_t s = 99 + (uint64_t)i;
            int64_t n = ts[i].numel, m = n < GC_MAX_ELEMS ? n : GC_MAX_ELEMS;
            for (int64_t e = 0; e < m; e++) {
                int64_t j = n <= GC_MAX_ELEMS ? e : (int64_t)(ag_rng_next(&s) % (uint64_t)n);
                float x0 = in[i].data[j];
                in[i].data[j] = x0 + (float)eps;
                double lp = gc_eval(&c, f, user, ts, nin, dout, NULL);
                in[i].data[j] = x0 - (float)eps;
                double lm = gc_eval(&c, f, user, ts, nin, dout, NULL);
                in[i].data[j] = x0;
                double num = (lp - lm) / (2 * eps), ana = grads[i][j];
                if (!(fabs(num - ana) <= tol * fmax(1.0, fmax(fabs(num), fabs(ana))))) {
                    if (bad < 10)
                        printf("FAIL %s subset %u: input %d elem %lld: analytic %.6g numeric %.6g\n", name,
                               sub, i, (long long)j, ana, num);
                    bad++;
                }
            }
        }
    next:
        for (int i = 0; i < nin; i++) free(grads[i]);
    }
    free(dout);
    ag_ctx_free(&c);
    return bad;
}

#endif
