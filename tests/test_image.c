// test_image.c — data/image.c against PIL 9.4 (tests/gen_image.py): decoded pixels of every
// format, bicubic resizes, SigLIP-normalized tensors, and one clear error per bad input.
#include "image.h"
#include "util.h"

#include "fixture.h"
#include "test.h"

#define IMG_DIR "tests/fixtures/images/"

static fixture *fx;
static char files[64][64];
static int nfiles;

static const unsigned char *ref_u8(const char *name, long *shape) {
    long n;
    int nd;
    return fixture_raw(fx, name, "U8", &n, shape, &nd);
}

// bytes equal / max |diff| over n values
static long count_exact(const unsigned char *a, const unsigned char *b, long n, int *maxd) {
    long eq = 0;
    *maxd = 0;
    for (long i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (!d) eq++;
        if (d > *maxd) *maxd = d;
    }
    return eq;
}

static void test_decode_matches_pil(void) {
    long tot = 0, tot_eq = 0;
    for (int i = 0; i < nfiles; i++) {
        char key[96], path[128];
        snprintf(key, sizeof key, "dec/%.63s", files[i]);
        snprintf(path, sizeof path, IMG_DIR "%.63s", files[i]);
        long shape[3];
        const unsigned char *ref = ref_u8(key, shape);
        if (!ref) { CHECK(0, "no reference for %s", files[i]); continue; }
        img_u8 im;
        int rc = img_load_rgb(path, 0, &im);
        CHECK(rc == 0, "%s: %s", files[i], err_get());
        if (rc) continue;
        CHECK(im.h == shape[0] && im.w == shape[1], "%s: size %dx%d, PIL %ldx%ld", files[i], im.w,
              im.h, shape[1], shape[0]);
        if (im.h == shape[0] && im.w == shape[1]) {
            long n = (long)im.w * im.h * 3;
            int maxd;
            long eq = count_exact(im.rgb, ref, n, &maxd);
            tot += n;
            tot_eq += eq;
            CHECK(eq == n, "%s: %ld of %ld bytes differ from PIL, max diff %d", files[i], n - eq, n, maxd);
        }
        img_free(&im);
    }
    printf("decode: %d files, %ld/%ld bytes identical to PIL (%.4f%%)\n", nfiles, tot_eq, tot,
           tot ? 100.0 * tot_eq / tot : 0.0);
}

static void test_resize_matches_pil(void) {
    int nrs = (int)fixture_meta(fx, "n_resize", 0);
    CHECK(nrs > 0, "no resize cases");
    long tot = 0, tot_eq = 0;
    int tot_max = 0;
    for (int i = 0; i < nrs; i++) {
        char key[96];
        snprintf(key, sizeof key, "rs%d/src", i);
        const int32_t *src = fixture_i32(fx, key, NULL);
        snprintf(key, sizeof key, "rs%d/out", i);
        long oshape[3], ishape[3];
        const unsigned char *ref = ref_u8(key, oshape);
        if (!src || !ref) { CHECK(0, "case %d missing", i); continue; }
        snprintf(key, sizeof key, "dec/%.63s", files[src[0]]);
        const unsigned char *in = ref_u8(key, ishape);
        if (!in) { CHECK(0, "no input %s", key); continue; }
        img_u8 s = {(int)ishape[1], (int)ishape[0], (unsigned char *)in}, d;
        int rc = img_resize_bicubic(&s, (int)oshape[1], (int)oshape[0], &d);
        CHECK(rc == 0, "%s", err_get());
        if (rc) continue;
        long n = oshape[0] * oshape[1] * 3;
        int maxd;
        long eq = count_exact(d.rgb, ref, n, &maxd);
        printf("resize %s %ldx%ld -> %ldx%ld: %.4f%% exact, max diff %d\n", files[src[0]], ishape[1],
               ishape[0], oshape[1], oshape[0], 100.0 * eq / n, maxd);
        tot += n;
        tot_eq += eq;
        if (maxd > tot_max) tot_max = maxd;
        CHECK(eq == n, "resize case %d: %ld of %ld bytes differ, max diff %d", i, n - eq, n, maxd);
        img_free(&d);
    }
    printf("resize: %ld/%ld bytes identical to PIL (%.4f%%), max diff %d\n", tot_eq, tot,
           tot ? 100.0 * tot_eq / tot : 0.0, tot_max);
}

static void test_resize_same_size_is_copy(void) {
    long shape[3];
    const unsigned char *in = ref_u8("dec/small.jpg", shape);
    if (!in) return;
    img_u8 s = {(int)shape[1], (int)shape[0], (unsigned char *)in}, d;
    CHECK(img_resize_bicubic(&s, s.w, s.h, &d) == 0, "%s", err_get());
    CHECK(d.w == s.w && d.h == s.h && !memcmp(d.rgb, in, (size_t)s.w * s.h * 3), "not a copy");
    img_free(&d);
    CHECK(img_resize_bicubic(&s, 0, 5, &d) == -1 && d.rgb == NULL, "zero width accepted");
}

static void test_preprocess_matches_hf(void) {
    int nn = (int)fixture_meta(fx, "n_norm", 0);
    CHECK(nn > 0, "no normalize cases");
    for (int i = 0; i < nn; i++) {
        char key[96], path[128];
        snprintf(key, sizeof key, "norm%d/src", i);
        const int32_t *src = fixture_i32(fx, key, NULL);
        snprintf(key, sizeof key, "norm%d/size", i);
        const int32_t *size = fixture_i32(fx, key, NULL);
        snprintf(key, sizeof key, "norm%d/mean", i);
        const float *mean = fixture_f32(fx, key, NULL);
        snprintf(key, sizeof key, "norm%d/std", i);
        const float *std = fixture_f32(fx, key, NULL);
        snprintf(key, sizeof key, "norm%d/chw", i);
        long n;
        const float *ref = fixture_f32(fx, key, &n);
        if (!src || !size || !mean || !std || !ref) { CHECK(0, "case %d missing", i); continue; }
        int S = size[0];
        CHECK(n == 3L * S * S, "ref numel %ld", n);
        img_norm nm = img_norm_siglip();
        for (int c = 0; c < 3; c++) { nm.mean[c] = mean[c]; nm.std[c] = std[c]; }
        float *chw = xmalloc(sizeof(float) * 3 * S * S);
        snprintf(path, sizeof path, IMG_DIR "%.63s", files[src[0]]);
        int rc = img_preprocess(path, S, &nm, 0, chw);
        CHECK(rc == 0, "%s", err_get());
        if (!rc) {
            long eq = 0;
            double maxd = 0;
            for (long j = 0; j < n; j++) {
                double d = fabs((double)chw[j] - ref[j]);
                if (d == 0) eq++;
                if (d > maxd || d != d) maxd = d != d ? INFINITY : d;
            }
            printf("preprocess %s at %d: %.4f%% exact, max |diff| %.3g\n", files[src[0]], S, 100.0 * eq / n, maxd);
            // bit-exact: the same float32 operations in the same order as the HF processor
            // (float64 rescale rounded to float32, then (x - mean) / std in float32) on pixels
            // identical to PIL's, so any difference at all is a bug (one 8-bit pixel level
            // off is 2/255 ~ 0.008 after normalization: a 0.01 tolerance would hide it)
            CHECK(maxd == 0 && eq == n, "%s: %ld of %ld values differ from HF, max |diff| %g", path, n - eq, n, maxd);
        }
        free(chw);
    }
    // NULL norm = SigLIP defaults (case 0 uses mean = std = 0.5)
    float *a = xmalloc(sizeof(float) * 3 * 48 * 48);
    const float *ref = fixture_f32(fx, "norm0/chw", NULL);
    const int32_t *src = fixture_i32(fx, "norm0/src", NULL);
    if (ref && src) {
        char path[128];
        snprintf(path, sizeof path, IMG_DIR "%.63s", files[src[0]]);
        CHECK(img_preprocess(path, 48, NULL, 0, a) == 0, "%s", err_get());
        CHECK(!memcmp(a, ref, sizeof(float) * 3 * 48 * 48), "default norm differs from HF");
    }
    free(a);
}

// one error, naming the file, containing `want`
static void expect_error(const char *file, int64_t max_pixels, const char *want) {
    char path[160];
    snprintf(path, sizeof path, IMG_DIR "%s", file);
    err_clear();
    img_u8 im = {1, 1, (unsigned char *)path};
    int rc = img_load_rgb(path, max_pixels, &im);
    const char *e = err_get();
    CHECK(rc == -1, "%s: accepted (%dx%d)", file, im.w, im.h);
    CHECK(im.rgb == NULL && im.w == 0, "%s: output not cleared", file);
    CHECK(strstr(e, path) == e, "%s: message does not start with the path: '%s'", file, e);
    CHECK(strstr(e, want) != NULL, "%s: message lacks '%s': '%s'", file, want, e);
    CHECK(strchr(e, '\n') == NULL, "%s: multi-line message", file);
    if (getenv("TEST_VERBOSE")) printf("  %s\n", e);
    if (rc == 0) img_free(&im);
}

static void test_bad_inputs(void) {
    expect_error("truncated.jpg", 0, "truncated JPEG");
    expect_error("truncated.png", 0, "truncated PNG");
    expect_error("truncated.gif", 0, "truncated GIF");
    expect_error("empty.png", 0, "empty file");
    expect_error("garbage.jpg", 0, "not an image");
    expect_error("corrupt.jpg", 0, "corrupt JPEG");
    expect_error("huge.png", 0, "over the limit of 89478485 pixels");   // default limit
    expect_error("big.jpg", 10000, "61440 pixels, over the limit of 10000");
    expect_error("unsupported.webp", 0, "unsupported image format WebP");
    expect_error("no_such_image.jpg", 0, "cannot open");
    // preprocess passes the error through, naming the file once
    float x[3 * 4 * 4];
    CHECK(img_preprocess(IMG_DIR "truncated.gif", 4, NULL, 0, x) == -1, "truncated GIF preprocessed");
    CHECK(strstr(err_get(), IMG_DIR "truncated.gif: truncated GIF") == err_get(), "'%s'", err_get());
}

// PIL rejects a JPEG cut just before its EOI marker (libjpeg suspends on the last MCU), and a
// progressive one too; a tiny limit of -1 means no limit.
static void test_jpeg_cut_and_limits(void) {
    const char *names[] = {"small.jpg", "progressive.jpg"};
    for (int i = 0; i < 2; i++) {
        char path[128];
        snprintf(path, sizeof path, IMG_DIR "%s", names[i]);
        size_t len;
        char *buf = file_read_all(path, &len);
        if (!buf) { CHECK(0, "%s", err_get()); continue; }
        img_u8 im;
        CHECK(img_decode_rgb(path, (unsigned char *)buf, len - 2, 0, &im) == -1, "%s without EOI accepted", names[i]);
        CHECK(strstr(err_get(), "truncated JPEG") != NULL, "'%s'", err_get());
        CHECK(img_decode_rgb(path, (unsigned char *)buf, len, -1, &im) == 0, "%s", err_get());
        img_free(&im);
        free(buf);
    }
}

// PNG: a file that stops after complete image data without IEND loads in PIL (so here too);
// a bad CRC in a chunk before IDAT is an error in PIL (so here too). RLE BMPs are refused.
static void test_png_bmp_edge_cases(void) {
    const char *path = IMG_DIR "rgb.png";
    size_t len;
    char *buf = file_read_all(path, &len);
    if (!buf) { CHECK(0, "%s", err_get()); return; }
    long shape[3];
    const unsigned char *ref = ref_u8("dec/rgb.png", shape);
    img_u8 im;
    int rc = img_decode_rgb(path, (unsigned char *)buf, len - 12, 0, &im);   // IEND removed
    CHECK(rc == 0, "%s", err_get());
    if (!rc && ref) {
        CHECK(im.w == shape[1] && im.h == shape[0] && !memcmp(im.rgb, ref, (size_t)im.w * im.h * 3),
              "PNG without IEND decoded differently");
        img_free(&im);
    }
    buf[20] ^= 1;   // inside IHDR (width): CRC no longer matches
    CHECK(img_decode_rgb(path, (unsigned char *)buf, len, 0, &im) == -1, "bad IHDR CRC accepted");
    CHECK(strstr(err_get(), "bad CRC in chunk 'IHDR'") != NULL, "'%s'", err_get());
    free(buf);
    // RLE BMP (PIL reads RLE8/RLE4, stb_image does not): refused with a clear message
    path = IMG_DIR "palette8.bmp";
    buf = file_read_all(path, &len);
    if (!buf) { CHECK(0, "%s", err_get()); return; }
    buf[30] = 1;
    CHECK(img_decode_rgb(path, (unsigned char *)buf, len, 0, &im) == -1, "RLE BMP accepted");
    CHECK(strstr(err_get(), "unsupported: RLE-compressed BMP") != NULL, "'%s'", err_get());
    free(buf);
}

int main(void) {
    fx = fixture_load("tests/fixtures/image_ref.safetensors");
    if (!fx) return test_summary();   // fixture_load counted the failure
    cJSON *m = cJSON_GetObjectItem(fx->header, "__metadata__");
    cJSON *fl = m ? cJSON_GetObjectItem(m, "files") : NULL;
    if (fl && cJSON_IsString(fl)) {
        char *s = xstrdup(fl->valuestring), *save = NULL;
        for (char *t = strtok_r(s, ",", &save); t && nfiles < 64; t = strtok_r(NULL, ",", &save))
            snprintf(files[nfiles++], sizeof files[0], "%s", t);
        free(s);
    }
    RUN(test_decode_matches_pil);
    RUN(test_resize_matches_pil);
    RUN(test_resize_same_size_is_copy);
    RUN(test_preprocess_matches_hf);
    RUN(test_bad_inputs);
    RUN(test_jpeg_cut_and_limits);
    RUN(test_png_bmp_edge_cases);
    fixture_free(fx);
    return test_summary();
}
