// schedule.h — the optimizer's learning-rate schedule (docs/numerics.md "Learning-rate
// schedule"): linear warmup, then constant, linear or cosine decay towards min_lr_ratio·lr.
// The config (train/config.h) only fills an ag_schedule from its keys.
#ifndef LORAC_SCHEDULE_H
#define LORAC_SCHEDULE_H

#include <stdint.h>

typedef enum { AG_SCHED_CONSTANT, AG_SCHED_LINEAR, AG_SCHED_COSINE } ag_sched_kind;

typedef struct ag_schedule {
    float lr;             // the peak learning rate
    ag_sched_kind kind;
    int64_t warmup_steps; // when > 0 it wins over warmup_ratio
    float warmup_ratio;   // warmup = ceil(warmup_ratio * N) when warmup_steps == 0
    float min_lr_ratio;   // m in the formula below
} ag_schedule;

// "constant" (also NULL), "linear", "cosine" -> *kind; -1 for another word.
int ag_sched_kind_parse(const char *s, ag_sched_kind *kind);
// Warmup steps for a run of N optimizer steps: warmup_steps when > 0, else
// ceil(warmup_ratio * N) on the ratio as written in decimal (0.03, not float's 0.0299999993).
int64_t ag_warmup_steps(const ag_schedule *s, int64_t N);
// Learning rate at optimizer step n (0-based) of N: lr·(n+1)/W during warmup (n < W), then
// lr·(m + (1-m)·f(p)) with m = min_lr_ratio, p = (n-W)/(N-W) clamped to [0,1] (p = 1 when
// N <= W), f = (1+cos(πp))/2 (cosine), 1-p (linear), 1 (constant).
float ag_lr_at(const ag_schedule *s, int64_t n, int64_t N);

#endif
