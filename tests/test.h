// test.h — the tiny test harness every tests/test_*.c uses.
//
//   static void test_something(void) { CHECK(x == 1, "x is %d", x); ... }
//   int main(void) { RUN(test_something); ...; return test_summary(); }
//
// A test case passes when none of its CHECKs failed and nothing in it was skipped. Each
// failing CHECK prints one `FAIL file:line case: message` line; test_fail() does the same for
// helpers (setup code, fixture loaders) and also counts outside a case. A check that cannot
// run calls SKIP(reason), which prints `SKIP file:line case: reason`; the case then counts as
// skipped (unless it failed). test_summary() prints `N passed, N failed, N skipped` (which
// tests/run.sh adds up; under CI=true it fails the run on any skip) and returns the exit
// status (1 on any failure).
#ifndef LORAC_TEST_H
#define LORAC_TEST_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_passed, t_failed, t_skipped, t_in_case, t_case_failed, t_case_skipped;
static const char *t_case = "";

// marks the running case failed; outside a case (setup in main) counts one failure at once
static inline void test_mark_failed(void) {
    if (t_in_case) t_case_failed = 1;
    else t_failed++;
}

// prints `FAIL <where>: message` and marks a failure (for helpers without a CHECK)
__attribute__((format(printf, 2, 3))) static inline void test_fail_at(const char *where, const char *fmt, ...) {
    printf("FAIL %s %s: ", where, t_case);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    test_mark_failed();
}
#define T_STR2(x) #x
#define T_STR(x) T_STR2(x)
#define test_fail(...) test_fail_at(__FILE__ ":" T_STR(__LINE__), __VA_ARGS__)

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) test_fail(__VA_ARGS__);                                \
    } while (0)

// a check that cannot run here: `SKIP file:line case: reason`, counted (never silent)
#define SKIP(...)                                                           \
    do {                                                                    \
        printf("SKIP %s:%d %s: ", __FILE__, __LINE__, t_case);              \
        printf(__VA_ARGS__);                                                \
        printf("\n");                                                       \
        fflush(stdout);                                                     \
        if (t_in_case) t_case_skipped = 1;                                  \
        else t_skipped++;                                                   \
    } while (0)

#define RUN(fn)                                                             \
    do {                                                                    \
        t_case = #fn;                                                       \
        t_case_failed = t_case_skipped = 0;                                 \
        t_in_case = 1;                                                      \
        fn();                                                               \
        t_in_case = 0;                                                      \
        if (t_case_failed) t_failed++;                                      \
        else if (t_case_skipped) t_skipped++;                               \
        else { t_passed++; if (getenv("TEST_VERBOSE")) printf("ok %s\n", #fn); } \
        t_case = "";                                                        \
        fflush(stdout);                                                     \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed, %d skipped\n", t_passed, t_failed, t_skipped);
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
    if (system(cmd) != 0) {
        test_fail("cannot create %s", path);
        exit(test_summary());
    }
    return path;
}

#endif
