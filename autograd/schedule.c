// schedule.c — the learning-rate schedule (see schedule.h).
#include "schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int ag_sched_kind_parse(const char *s, ag_sched_kind *kind) {
    if (!s || !strcmp(s, "constant")) *kind = AG_SCHED_CONSTANT;
    else if (!strcmp(s, "linear")) *kind = AG_SCHED_LINEAR;
    else if (!strcmp(s, "cosine")) *kind = AG_SCHED_COSINE;
    else return -1;
    return 0;
}

int64_t ag_warmup_steps(const ag_schedule *s, int64_t N) {
    if (s->warmup_steps > 0) return s->warmup_steps;
    if (!(s->warmup_ratio > 0) || N <= 0) return 0;
    char buf[32];
    float_text(s->warmup_ratio, buf, sizeof buf);
    double x = strtod(buf, NULL) * (double)N;
    int64_t w = (int64_t)x;
    if (x - (double)w > 1e-9 * (x > 1 ? x : 1)) w++;
    return w;
}

float ag_lr_at(const ag_schedule *s, int64_t n, int64_t N) {
    double lr = s->lr;
    int64_t W = ag_warmup_steps(s, N);
    if (n < W) return (float)(lr * (double)(n + 1) / (double)W);
    double m = s->min_lr_ratio;
    double p = N > W ? (double)(n - W) / (double)(N - W) : 1.0;
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    double f = 1.0;
    if (s->kind == AG_SCHED_COSINE) f = 0.5 * (1.0 + cos(M_PI * p));
    else if (s->kind == AG_SCHED_LINEAR) f = 1.0 - p;
    return (float)(lr * (m + (1.0 - m) * f));
}
