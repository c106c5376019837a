// cmd_prepare.c — `lorac prepare CONFIG.yaml [key=value ...] --out FILE.h5 [--no-compress]`:
// tokenizes the config's data.train once into a prepared HDF5 text dataset (data/h5data.h) with
// the config's data options, streaming (memory stays flat for any file size), written to a
// temporary name and renamed. `train` reads it when data.train names it. Projector modes (the
// vision feature cache) are not built yet. Statistics go to stderr.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "config.h"
#include "h5data.h"
#include "tokenizer.h"
#include "util.h"

static volatile sig_atomic_t prep_stop;
static void on_signal(int sig) {
    prep_stop = 1;
    signal(sig, SIG_DFL);   // a second Ctrl-C ends the process at once
}

typedef struct warn_ctx {
    int64_t n;
} warn_ctx;

#define MAX_WARNINGS 20

static void on_warn(void *ctx, const char *msg) {
    warn_ctx *w = ctx;
    if (w->n < MAX_WARNINGS) fprintf(stderr, "warning: skipped %s\n", msg);
    else if (w->n == MAX_WARNINGS) fprintf(stderr, "warning: more bad lines skipped (counted, not shown)\n");
    w->n++;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: lorac prepare CONFIG.yaml [key=value ...] --out FILE.h5 [--no-compress]\n"
            "  Tokenizes data.train with the config's data options (format, template, train_on_prompt,\n"
            "  skip_bad_lines, max_seq_len, truncation) and the tokenizer of `model` into an HDF5 file\n"
            "  that `lorac train` reads when data.train names it.\n"
            "  --no-compress   store the datasets without deflate compression\n");
}

int cmd_prepare(int argc, char **argv) {
    const char *config = NULL, *out = NULL;
    int compress = 1;
    char **overrides = xcalloc((size_t)argc + 1, sizeof(char *));
    int n_over = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(overrides);
            return 0;
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc || !argv[i + 1][0]) {
                free(overrides);
                return cli_usage("prepare", "--out needs a file name");
            }
            out = argv[++i];
        } else if (!strncmp(a, "--out=", 6)) {
            out = a + 6;
        } else if (!strcmp(a, "--no-compress")) {
            compress = 0;
        } else if (a[0] == '-' && a[1] == '-') {
            free(overrides);
            return cli_usage("prepare", "unknown option '%s'", a);
        } else if (!config && !strchr(a, '=')) {
            config = a;
        } else if (strchr(a, '=')) {
            overrides[n_over++] = argv[i];
        } else {
            free(overrides);
            return cli_usage("prepare", "unexpected argument '%s' (overrides are dotted key=value)", a);
        }
    }
    if (!config) {
        free(overrides);
        return cli_usage("prepare", "missing CONFIG.yaml");
    }
    if (!out || !out[0]) {
        free(overrides);
        return cli_usage("prepare", "missing --out FILE.h5");
    }

    cfg_train c;
    int rc = cfg_load(&c, config, n_over, overrides);
    free(overrides);
    if (rc || cfg_validate(&c)) {
        cfg_free(&c);
        return cli_fail();
    }
    if (!strncmp(c.mode, "projector", 9)) {
        cfg_free(&c);
        err_set("prepare: vision feature caches are not built yet");
        return cli_fail();
    }
    if (data_is_h5(c.data.train)) {
        err_set("%s: data.train: expected a JSONL file, found an HDF5 file (already prepared)", c.data.train);
        cfg_free(&c);
        return cli_fail();
    }
    struct stat si, so;
    if (stat(c.data.train, &si) == 0 && stat(out, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
        err_set("%s: --out names the training data itself (data.train); choose another output file", out);
        cfg_free(&c);
        return cli_fail();
    }
    tok_tokenizer *tok = tok_load(c.model);
    if (!tok) {
        cfg_free(&c);
        return cli_fail();
    }
    warn_ctx wc = {0};
    data_opts o = data_opts_default();
    o.format = c.data.format;
    o.template_ = c.data.template_;
    o.train_on_prompt = c.data.train_on_prompt;
    o.skip_bad_lines = c.data.skip_bad_lines;
    o.max_seq_len = c.data.max_seq_len;
    o.truncate = c.data.truncation && !strcmp(c.data.truncation, "truncate");
    o.warn = on_warn;
    o.warn_ctx = &wc;

    prep_stop = 0;
    void (*old_int)(int) = signal(SIGINT, on_signal);
    void (*old_term)(int) = signal(SIGTERM, on_signal);
    data_h5_stats st;
    rc = data_h5_prepare(out, c.data.train, tok, &o, compress, &prep_stop, &st);
    signal(SIGINT, old_int);
    signal(SIGTERM, old_term);
    if (rc) {
        tok_free(tok);
        cfg_free(&c);
        return cli_fail();
    }
    double s = st.seconds > 0 ? st.seconds : 1e-9;
    fprintf(stderr,
            "prepare: %s -> %s: %lld records, %lld tokens (skipped %lld bad lines, dropped %lld over "
            "max_seq_len, truncated %lld)\n"
            "prepare: %.2f s, %.0f examples/s, %.2f MB/s of JSONL (%.2f MB)\n",
            c.data.train, out, (long long)st.records, (long long)st.tokens, (long long)st.skipped_bad,
            (long long)st.dropped_long, (long long)st.truncated, st.seconds, st.records / s,
            st.source_bytes / 1e6 / s, st.source_bytes / 1e6);
    if (st.records == 0) fprintf(stderr, "warning: %s holds no records: nothing to train on\n", out);
    tok_free(tok);
    cfg_free(&c);
    return 0;
}
