// cmd_prepare.c — `lorac prepare CONFIG.yaml [key=value ...] --out FILE.h5 [--no-compress]`:
// tokenizes the config's data.train once into a prepared HDF5 text dataset (data/h5data.h) with
// the config's data options, streaming (memory stays flat for any file size), written to a
// temporary name and renamed. `train` reads it when data.train names it.
// In projector modes (mode: projector | projector+lora) it instead computes the SigLIP features
// of every unique image of data.train (and data.eval, when set) once into a vision feature cache
// (data/featcache.h) that `train` reads when vision.features names it. Statistics go to stderr.
// Under mpirun (autograd/dist.h) the ranks split the images (data_fc_build); rank 0 writes.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "opts.h"
#include "config.h"
#include "dist.h"
#include "featcache.h"
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

// --- projector modes: the vision feature cache

typedef struct image_list {
    char **refs, **paths;   // [n] owned
    int64_t n, cap;
} image_list;

static void image_list_free(image_list *l) {
    for (int64_t i = 0; i < l->n; i++) free(l->refs[i]), free(l->paths[i]);
    free(l->refs);
    free(l->paths);
}

// the image references of every record of one data file (JSONL, .txt or prepared .h5)
static int collect_images(const cfg_train *c, const char *path, const tok_tokenizer *tok, int P, image_list *l,
                          warn_ctx *wc) {
    data_opts o = data_opts_default();
    o.format = c->data.format;
    o.template_ = c->data.template_;
    o.train_on_prompt = c->data.train_on_prompt;
    o.skip_bad_lines = c->data.skip_bad_lines;
    o.max_seq_len = 0;   // every image, also of records training would drop for length
    o.num_patches = P;
    o.warn = on_warn;
    o.warn_ctx = wc;
    data_set ds;
    if (data_load_any(&ds, path, tok, &o)) return -1;
    for (int64_t i = 0; i < ds.n; i++) {
        const data_record *r = &ds.r[i];
        if (!r->image || !r->image_ref) continue;
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 256;
            l->refs = xrealloc(l->refs, (size_t)l->cap * sizeof *l->refs);
            l->paths = xrealloc(l->paths, (size_t)l->cap * sizeof *l->paths);
        }
        l->refs[l->n] = xstrdup(r->image_ref);
        l->paths[l->n] = xstrdup(r->image);
        l->n++;
    }
    data_set_free(&ds);
    return 0;
}

static int prepare_features(const cfg_train *c, const char *out, int batch) {
    if (!c->vision.model) return err_set("%s: vision.model: required in mode %s", c->config_path, c->mode);
    struct stat si, so;
    const char *ins[] = {c->data.train, c->data.eval};
    for (int k = 0; k < 2; k++)
        if (ins[k] && stat(ins[k], &si) == 0 && stat(out, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
            return err_set("%s: --out names the data file %s itself; choose another output file", out, ins[k]);
    tok_tokenizer *tok = tok_load(c->model);
    if (!tok) return -1;
    siglip_model m;
    ag_precision precision = AG_PREC_FP32;
    ag_precision_parse(c->precision, &precision);   // validated by cfg_validate
    ag_weights weights = AG_WEIGHTS_AUTO;
    ag_weights_parse(c->weights, &weights);   // validated by cfg_validate
    if (siglip_load_opts(c->vision.model, &m, precision, weights)) {
        tok_free(tok);
        return -1;
    }
    image_list l = {0};
    warn_ctx wc = {0};
    int rc = collect_images(c, c->data.train, tok, m.cfg.num_patches, &l, &wc);
    int64_t n_train = l.n;
    if (rc == 0 && c->data.eval) rc = collect_images(c, c->data.eval, tok, m.cfg.num_patches, &l, &wc);
    tok_free(tok);
    if (rc == 0 && l.n == 0)
        rc = err_set("%s: no record has an image (expected caption records {\"image\": ..., \"caption\": ...})",
                     c->data.train);
    char source[2048];
    snprintf(source, sizeof source, "%s%s%s", c->data.train, c->data.eval ? ", " : "", c->data.eval ? c->data.eval : "");
    data_fc_build_stats st = {0};
    if (rc == 0) {
        prep_stop = 0;
        void (*old_int)(int) = signal(SIGINT, on_signal);
        void (*old_term)(int) = signal(SIGTERM, on_signal);
        rc = data_fc_build(out, c->vision.model, &m, c->vision.select_layer, (const char *const *)l.refs,
                           (const char *const *)l.paths, l.n, batch, c->vision.max_pixels, source, &prep_stop, &st);
        signal(SIGINT, old_int);
        signal(SIGTERM, old_term);
    }
    if (rc == 0) {
        double s = st.seconds > 0 ? st.seconds : 1e-9;
        fprintf(stderr,
                "prepare: %s -> %s: %lld unique images (%lld references: %lld train, %lld eval), features [%lld, %d, %d] "
                "of layer %d\n"
                "prepare: %.2f s, %.1f images/s (waited %.2f s for decoding)\n",
                source, out, (long long)st.images, (long long)st.refs, (long long)n_train, (long long)(l.n - n_train),
                (long long)st.images, m.cfg.num_patches, m.cfg.hidden_size, c->vision.select_layer, st.seconds,
                st.images / s, st.decode_seconds);
    }
    image_list_free(&l);
    siglip_free(&m);
    return rc;
}

int cmd_prepare(int argc, char **argv) {
    const char *out = NULL;
    int no_compress = 0;
    int64_t batch = 8;
    const cli_opt opts[] = {
        CLI_TEXT("out", OPT_FILE, &out, "FILE.h5", "the HDF5 file to write (required)"),
        CLI_FLAG("no-compress", &no_compress, "store the datasets without deflate compression"),
        CLI_INT("batch", &batch, "N", 1, 4096, "images per vision tower call (projector modes; default 8)"),
    };
    const cli_spec spec = {
        "prepare", "CONFIG.yaml [key=value ...] --out FILE.h5 [--no-compress] [--batch N]",
        "  Tokenizes data.train with the config's data options (format, template, train_on_prompt,\n"
        "  skip_bad_lines, max_seq_len, truncation) and the tokenizer of `model` into an HDF5 file\n"
        "  that `lorac train` reads when data.train names it.\n"
        "  In projector modes: computes the vision features (vision.model, vision.select_layer) of\n"
        "  every unique image of data.train and data.eval into a feature cache that `lorac train`\n"
        "  reads when vision.features names it.\n",
        opts, CLI_NOPTS(opts), NULL, 0};
    char *pos[argc];   // CONFIG.yaml, then the overrides
    int npos, prc = cli_parse(&spec, argc, argv, pos, argc, &npos, 0, NULL);
    if (prc) return prc == 1 ? 0 : prc;
    const char *config = NULL;
    char *overrides[argc];
    int n_over = 0, compress = !no_compress;
    for (int i = 0; i < npos; i++) {
        if (strchr(pos[i], '=')) overrides[n_over++] = pos[i];
        else if (!config) config = pos[i];
        else return cli_usage("prepare", "unexpected argument '%s' (overrides are dotted key=value)", pos[i]);
    }
    if (!config) return cli_usage("prepare", "missing CONFIG.yaml");
    if (!out) return cli_usage("prepare", "missing --out FILE.h5");

    cfg_train c;
    int rc = cfg_load(&c, config, n_over, overrides);
    if (rc || cfg_validate(&c)) {
        cfg_free(&c);
        return cli_fail();
    }
    if (strcmp(c.mode, "lora")) {   // projector and xattn modes
        rc = prepare_features(&c, out, (int)batch);
        cfg_free(&c);
        return rc ? cli_fail() : 0;
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
    data_h5_stats st = {0};
    // under mpirun only projector mode splits work (the images); tokenizing is rank 0's alone
    rc = dist_rank() == 0 ? data_h5_prepare(out, c.data.train, tok, &o, compress, &prep_stop, &st) : 0;
    rc = dist_sync(rc, NULL, 0);
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
