// test_fuzz_replay.c — replays every committed fuzz input through its harness (plain gcc, no
// libFuzzer): tests/fuzz/corpus/NAME/* (the seeds) and tests/fuzz/regressions/NAME/* (inputs that
// once crashed or hung a parser, kept after the fix). One test case per file: it passes when the
// harness returns normally within 10 seconds; a crash ends the program without a summary line,
// which tests/run.sh counts as a failure. Under `make asan` the same inputs run with the sanitizers.
// The harnesses are tests/fuzz/fuzz_*.c, each compiled with -DFUZZ_REPLAY_NAME=fuzz_one_NAME.
#define _GNU_SOURCE
#include <dirent.h>
#include <glob.h>
#include <stdint.h>
#include <time.h>

#include "test.h"
#include "util.h"

#define HARNESSES X(safetensors) X(hfconfig) X(tokenizer) X(lora) X(records) X(config) X(image) X(h5data) X(featcache)

#define X(name) int fuzz_one_##name(const uint8_t *data, size_t size);
HARNESSES
#undef X

typedef struct harness {
    const char *name;
    int (*one)(const uint8_t *data, size_t size);
} harness;

static const harness harnesses[] = {
#define X(name) {#name, fuzz_one_##name},
    HARNESSES
#undef X
};
#define NH (int)(sizeof harnesses / sizeof *harnesses)

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Runs every file of dir through h; returns the number of files (each one test case).
static int replay_dir(const harness *h, const char *kind) {
    char dir[512];
    snprintf(dir, sizeof dir, "tests/fuzz/%s/%s", kind, h->name);
    DIR *d = opendir(dir);
    if (!d) return 0;
    char **names = NULL;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        names = realloc(names, sizeof *names * (size_t)(n + 1));
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, name_cmp);
    for (int i = 0; i < n; i++) {
        char path[1024], cname[1200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        snprintf(cname, sizeof cname, "%s %s", h->name, path);
        t_case = cname;
        t_case_failed = t_case_skipped = 0;
        t_in_case = 1;
        size_t len;
        char *bytes = file_read_all(path, &len);
        CHECK(bytes, "cannot read: %s", err_get());
        if (bytes) {
            if (getenv("TEST_VERBOSE")) printf("replay %s\n", path), fflush(stdout);
            err_clear();
            double t0 = now();
            int rc = h->one((const uint8_t *)bytes, len);
            double dt = now() - t0;
            // FUZZ_SHOW_ERR=1: what the parser said (seeds should mostly load: an empty line)
            if (getenv("FUZZ_SHOW_ERR")) printf("%-50s %s\n", path, err_get());
            CHECK(rc == 0, "harness returned %d", rc);
            CHECK(dt < 10.0, "took %.1f s (a hang?)", dt);
            free(bytes);
        }
        t_in_case = 0;
        if (t_case_failed) t_failed++;
        else t_passed++;
        free(names[i]);
    }
    free(names);
    return n;
}

int main(void) {
    // every harness source is replayed (a new tests/fuzz/fuzz_*.c must be added to HARNESSES)
    glob_t g;
    t_case = "harness list";
    t_case_failed = 0;
    t_in_case = 1;
    if (glob("tests/fuzz/fuzz_*.c", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            int known = 0;
            for (int k = 0; k < NH; k++) {
                char want[256];
                snprintf(want, sizeof want, "tests/fuzz/fuzz_%s.c", harnesses[k].name);
                known |= !strcmp(want, g.gl_pathv[i]);
            }
            CHECK(known, "%s is not in HARNESSES", g.gl_pathv[i]);
        }
        CHECK((int)g.gl_pathc == NH, "%zu harness sources, %d replayed", g.gl_pathc, NH);
        globfree(&g);
    } else {
        CHECK(0, "no tests/fuzz/fuzz_*.c found (run from the repository root)");
    }
    t_in_case = 0;
    if (t_case_failed) t_failed++;
    else t_passed++;
    for (int k = 0; k < NH; k++) {
        int seeds = replay_dir(&harnesses[k], "corpus");
        int regs = replay_dir(&harnesses[k], "regressions");
        t_case = harnesses[k].name;
        CHECK(seeds > 0, "tests/fuzz/corpus/%s has no seed inputs", harnesses[k].name);   // counts as a failure
        printf("fuzz replay %-12s %4d seeds, %3d regression inputs\n", harnesses[k].name, seeds, regs);
    }
    return test_summary();
}
