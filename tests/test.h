// test.h — the tiny test harness every tests/test_*.c uses.
//
//   static void test_something(void) { CHECK(x == 1, "x is %d", x); ... }
//   int main(void) { RUN(test_something); ...; return test_summary(); }
//
// A test case passes when none of its CHECKs failed. Each failing CHECK prints one
// `FAIL file:line case: message` line. test_summary() prints `N passed, N failed` (which
// tests/run.sh adds up) and returns the exit status (1 on any failure).
#ifndef LORAC_TEST_H
#define LORAC_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_passed, t_failed, t_case_failed;
static const char *t_case = "";

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            t_case_failed = 1;                                              \
            printf("FAIL %s:%d %s: ", __FILE__, __LINE__, t_case);          \
            printf(__VA_ARGS__);                                            \
            printf("\n");                                                   \
            fflush(stdout);                                                 \
        }                                                                   \
    } while (0)

#define RUN(fn)                                                             \
    do {                                                                    \
        t_case = #fn;                                                       \
        t_case_failed = 0;                                                  \
        fn();                                                               \
        if (t_case_failed) t_failed++;                                      \
        else { t_passed++; if (getenv("TEST_VERBOSE")) printf("ok %s\n", #fn); } \
        fflush(stdout);                                                     \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}

// max |a-b| / max(max|b|, floor) over n values: the relative error against a reference scale
static inline double max_rel_err(const float *a, const float *b, long n, double floor_) {
    double scale = floor_, err = 0;
    for (long i = 0; i < n; i++) if (fabs(b[i]) > scale) scale = fabs(b[i]);
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > err || d != d) err = d != d ? INFINITY : d;
    }
    return err / scale;
}

// a scratch folder for one test binary (created fresh): build/tmp/<name>
static inline const char *test_tmpdir(const char *name) {
    static char path[512];
    const char *b = getenv("BUILD");
    snprintf(path, sizeof path, "%s/tmp/%s", b ? b : "build", name);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", path, path);
    if (system(cmd) != 0) { printf("FAIL cannot create %s\n", path); exit(1); }
    return path;
}

#endif
