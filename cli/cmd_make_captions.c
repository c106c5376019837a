// cmd_make_captions.c — `lorac make-tiny --kind captions`: the synthetic image-caption demo
// data set (see make_captions.h). Every image is one shape drawn with 4x4 supersampling
// (anti-aliased edges), its parameters drawn from a splitmix64 stream of the seed: the same
// seed gives the same bytes. Eval images come from a separate stream and are redrawn until
// their pixels differ from every training image (held-out images, seen-style captions).
// Two styles: `full` ("a large red circle on the left of a white background") and `simple`
// ("a red circle": one large shape in one of the five places on white; what `make
// demo-vision` teaches).
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "ag.h"
#include "cli.h"
#include "opts.h"
#include "make_captions.h"
#include "util.h"

// --- the vocabulary of the scenes

static const char *const SHAPES[] = {"circle", "square", "triangle"};
static const char *const COLOURS[] = {"red", "green", "blue", "yellow", "purple", "orange"};
static const unsigned char RGB[][3] = {{220, 30, 30}, {30, 160, 50}, {30, 60, 220},
                                       {240, 210, 20}, {140, 50, 170}, {245, 140, 20}};
static const char *const SIZES[] = {"small", "large"};
static const char *const PLACES[] = {"on the left", "on the right", "at the top", "at the bottom", "in the center"};
static const float PLACE_XY[][2] = {{0.27f, 0.5f}, {0.73f, 0.5f}, {0.5f, 0.27f}, {0.5f, 0.73f}, {0.5f, 0.5f}};
static const char *const BACKGROUNDS[] = {"white", "black"};
static const unsigned char BG_RGB[][3] = {{255, 255, 255}, {0, 0, 0}};
#define N_OF(a) (int)(sizeof a / sizeof a[0])

typedef struct scene {
    int shape, colour, size, place, bg;
    float cx, cy, r;   // pixels
} scene;

static int pick(uint64_t *s, int n) {
    int k = (int)(ag_rng_uniform(s) * (float)n);
    return k < n ? k : n - 1;
}

// style simple: always large and on white (only shape, colour and place are drawn)
static scene draw_scene(uint64_t *s, int S, int style) {
    int simple = style == CAPTIONS_SIMPLE;
    scene c;
    c.shape = pick(s, N_OF(SHAPES));
    c.colour = pick(s, N_OF(COLOURS));
    c.size = simple ? 1 : pick(s, N_OF(SIZES));
    c.place = pick(s, N_OF(PLACES));
    c.bg = simple ? 0 : pick(s, N_OF(BACKGROUNDS));
    float lo = c.size ? 0.22f : 0.10f, hi = c.size ? 0.27f : 0.14f;
    c.r = (lo + (hi - lo) * ag_rng_uniform(s)) * (float)S;
    float jx = (ag_rng_uniform(s) - 0.5f) * 0.08f * (float)S, jy = (ag_rng_uniform(s) - 0.5f) * 0.08f * (float)S;
    c.cx = PLACE_XY[c.place][0] * (float)S + jx;
    c.cy = PLACE_XY[c.place][1] * (float)S + jy;
    // keep the shape inside the image
    float m = c.r + 1.0f;
    if (c.cx < m) c.cx = m;
    if (c.cx > (float)S - m) c.cx = (float)S - m;
    if (c.cy < m) c.cy = m;
    if (c.cy > (float)S - m) c.cy = (float)S - m;
    return c;
}

static int inside(const scene *c, float x, float y) {
    float dx = x - c->cx, dy = y - c->cy, r = c->r;
    switch (c->shape) {
    case 0: return dx * dx + dy * dy <= r * r;
    case 1: return dx >= -0.85f * r && dx <= 0.85f * r && dy >= -0.85f * r && dy <= 0.85f * r;
    default: {   // upward triangle: apex at cy - r, base at cy + r
        if (dy < -r || dy > r) return 0;
        float half = r * (dy + r) / (2 * r);
        return dx >= -half && dx <= half;
    }
    }
}

// rgb [S][S][3]
static void render(const scene *c, int S, unsigned char *rgb) {
    const unsigned char *fg = RGB[c->colour], *bg = BG_RGB[c->bg];
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int hits = 0;
            for (int sy = 0; sy < 4; sy++)
                for (int sx = 0; sx < 4; sx++)
                    hits += inside(c, (float)x + (sx + 0.5f) / 4, (float)y + (sy + 0.5f) / 4);
            for (int k = 0; k < 3; k++)
                rgb[((size_t)y * S + x) * 3 + k] = (unsigned char)((fg[k] * hits + bg[k] * (16 - hits) + 8) / 16);
        }
}

// --- writing

static int write_split(const char *tmp, const char *split, int n, int S, int style, uint64_t *rng, uint64_t *seen,
                       int n_seen_max, int *n_seen, int avoid) {
    char name[64];
    snprintf(name, sizeof name, "%s.jsonl", split);
    char *jpath = path_join(tmp, name);
    FILE *fp = fopen(jpath, "wb");
    if (!fp) {
        err_set("%s: cannot create: %s", jpath, strerror(errno));
        free(jpath);
        return -1;
    }
    unsigned char *rgb = xmalloc((size_t)S * S * 3);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        scene c;
        uint64_t h;
        for (int tries = 0;; tries++) {
            c = draw_scene(rng, S, style);
            render(&c, S, rgb);
            h = hash64(rgb, (size_t)S * S * 3, 0);
            int dup = 0;
            for (int j = 0; avoid && j < *n_seen && !dup; j++) dup = seen[j] == h;
            if (!dup) break;
            if (tries > 1000) {
                rc = err_set("make-tiny captions: cannot draw an eval image different from the training images "
                             "(use a larger --size or fewer images)");
                break;
            }
        }
        if (rc) break;
        if (*n_seen < n_seen_max) seen[(*n_seen)++] = h;
        char rel[64], *ipath;
        snprintf(rel, sizeof rel, "images/%s_%05d.png", split, i);
        ipath = path_join(tmp, rel);
        if (!stbi_write_png(ipath, S, S, 3, rgb, S * 3)) rc = err_set("%s: cannot write the PNG", ipath);
        free(ipath);
        if (rc) break;
        int w = style == CAPTIONS_SIMPLE
                    ? fprintf(fp, "{\"image\": \"%s\", \"caption\": \"%s %s %s\"}\n", rel,
                              COLOURS[c.colour][0] == 'o' ? "an" : "a", COLOURS[c.colour], SHAPES[c.shape])
                    : fprintf(fp, "{\"image\": \"%s\", \"caption\": \"a %s %s %s %s of a %s background\"}\n", rel,
                              SIZES[c.size], COLOURS[c.colour], SHAPES[c.shape], PLACES[c.place], BACKGROUNDS[c.bg]);
        if (w < 0) rc = err_set("%s: write failed", jpath);
    }
    if (fclose(fp) != 0 && rc == 0) rc = err_set("%s: write failed (disk full?)", jpath);
    free(rgb);
    free(jpath);
    return rc;
}

int make_captions(const char *out, int n_train, int n_eval, int size, int style, uint64_t seed, int force) {
    if (n_train < 0 || n_eval < 0 || size < 16 || size > 1024)
        return err_set("make-tiny captions: expected counts >= 0 and 16 <= size <= 1024, found %d, %d, %d", n_train,
                       n_eval, size);
    size_t tn = strlen(out) + 32;
    char *tmp = xmalloc(tn);
    snprintf(tmp, tn, "%s.tmp.%d", out, (int)getpid());
    char *parent = path_dirname(out), *img = path_join(tmp, "images");
    int rc = -1;
    uint64_t *seen = xcalloc((size_t)n_train + 1, sizeof *seen);
    int n_seen = 0;
    if (mkdir_p(parent) || rm_rf(tmp) || mkdir_p(img)) goto done;
    uint64_t train_rng = hash64("captions/train", 14, seed), eval_rng = hash64("captions/eval", 13, seed);
    if (write_split(tmp, "train", n_train, size, style, &train_rng, seen, n_train, &n_seen, 0)) goto done;
    if (write_split(tmp, "eval", n_eval, size, style, &eval_rng, seen, 0, &n_seen, 1)) goto done;
    if (fsync_dir(tmp)) goto done;
    if (dir_exists(out) && rmdir(out) != 0) {   // rmdir succeeds only for an empty folder
        if (!force) {
            err_set("%s: the folder exists and is not empty (remove it, choose another --out, or pass --force)", out);
            goto done;
        }
        if (rm_rf(out)) goto done;
    } else if (!dir_exists(out) && file_exists(out)) {
        err_set("%s: exists and is not a folder", out);
        goto done;
    }
    if (rename(tmp, out) != 0) {
        err_set("%s: cannot rename %s into place: %s", out, tmp, strerror(errno));
        goto done;
    }
    rc = fsync_dir(parent);
done:
    if (rc) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", err_get());
        rm_rf(tmp);
        err_set("%s", msg);
    }
    free(seen);
    free(img);
    free(parent);
    free(tmp);
    return rc;
}

// --- CLI

int cmd_make_captions(int argc, char **argv) {
    const char *out = NULL, *kind = NULL, *style = "full";
    int64_t n = 200, n_eval = -1, size = 64;
    uint64_t seed = 0;
    int force = 0;
    const cli_opt opts[] = {
        CLI_WORD("kind", &kind, "captions", "captions", "this data set (required)"),
        CLI_TEXT("out", OPT_STR, &out, "DIR", "the folder to write (required)"),
        CLI_INT("n", &n, "N", 0, 1000000, "training images (default 200)"),
        CLI_INT("eval", &n_eval, "N", 0, 1000000, "eval images (default N / 5)"),
        CLI_INT("size", &size, "S", 16, 1024, "SxS images (default 64)"),
        CLI_WORD("style", &style, "full|simple", "full simple",
                 "captions naming size, colour, shape, place and background (full, default), or \"a red circle\" "
                 "for one large shape on white (simple)"),
        {.name = "seed", .type = OPT_U64, .dst = &seed, .arg = "N", .help = "random seed (default 0)"},
        CLI_FLAG("force", &force, "replace an existing --out folder"),
    };
    const cli_spec spec = {"make-tiny", "--kind captions --out DIR [--n N] [--eval N] [--size S] [--style full|simple] [--seed N] "
                           "[--force]",
                           NULL, opts, CLI_NOPTS(opts), NULL, 0};
    int npos, prc = cli_parse(&spec, argc, argv, NULL, 0, &npos, 0, NULL);
    if (prc) return prc == 1 ? 0 : prc;
    if (!out || !*out) return cli_usage("make-tiny", "--out DIR is required");
    if (n_eval < 0) n_eval = n / 5;
    double t0 = now_seconds();
    int st = !strcmp(style, "simple") ? CAPTIONS_SIMPLE : CAPTIONS_FULL;
    if (make_captions(out, (int)n, (int)n_eval, (int)size, st, seed, force)) return cli_fail();
    fprintf(stderr, "make-tiny: wrote %s (captions, style %s: %lld train + %lld eval images of %lldx%lld, seed %llu, "
            "%.2f s)\n", out, style, (long long)n, (long long)n_eval, (long long)size, (long long)size,
            (unsigned long long)seed, now_seconds() - t0);
    return 0;
}
