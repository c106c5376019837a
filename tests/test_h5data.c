// test_h5data.c — prepared HDF5 text datasets (data/h5data.h): JSONL -> h5 -> data_set equals
// data_load of the same JSONL (ids, masks, lines, image fields, length policy), the file layout
// through the plain HDF5 API (names, dtypes, attributes, image datasets created after records were flushed),
// refusals (another tokenizer hash, template, train_on_prompt, format), structural errors
// (missing datasets, dtypes, offsets, vocabulary, masks, counters), corrupt/truncated files
// with one error and no HDF5 stack printed, a file written by h5py (tests/gen_h5data.py), atomic
// output, and data_load_any's dispatch.
// Uses the real Llama 3 tokenizer (TOKENIZER_DIR) and data/demo/train.jsonl.
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5data.h"
#include "records.h"
#include "test.h"
#include "tokenizer.h"
#include "util.h"

static tok_tokenizer *tok;
static const char *tmp;
static const char *DEMO = "data/demo/train.jsonl";

// tmp/name, valid until the end of the test binary (freed by tpath_free_all)
static char *t_paths[512];
static int t_npaths;
static char *tpath(const char *name) {
    char *b = path_join(tmp, name);
    if (t_npaths == 512) {
        test_fail("too many paths");
        exit(test_summary());
    }
    t_paths[t_npaths++] = b;
    return b;
}
static void tpath_free_all(void) {
    for (int i = 0; i < t_npaths; i++) free(t_paths[i]);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        test_fail("cannot write %s", path);
        exit(test_summary());
    }
}

static int streq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return !strcmp(a, b);
}

// data sets equal record by record; returns the number of differing records
static int ds_diff(const data_set *a, const data_set *b, const char *what) {
    CHECK(a->n == b->n, "%s: %lld vs %lld records", what, (long long)a->n, (long long)b->n);
    CHECK(a->n_tokens == b->n_tokens, "%s: %lld vs %lld tokens", what, (long long)a->n_tokens, (long long)b->n_tokens);
    int bad = 0;
    for (int64_t i = 0; i < a->n && i < b->n; i++) {
        const data_record *x = &a->r[i], *y = &b->r[i];
        int ok = x->n == y->n && !memcmp(x->ids, y->ids, sizeof(int32_t) * (size_t)x->n) &&
                 !memcmp(x->mask, y->mask, (size_t)x->n) && x->image_pos == y->image_pos &&
                 streq(x->image, y->image) && streq(x->image_ref, y->image_ref) && x->line == y->line;
        if (!ok && bad++ < 3)
            CHECK(0, "%s: record %lld differs (n %lld/%lld, image_pos %lld/%lld, image %s/%s, line %lld/%lld)", what,
                  (long long)i, (long long)x->n, (long long)y->n, (long long)x->image_pos, (long long)y->image_pos,
                  x->image ? x->image : "-", y->image ? y->image : "-", (long long)x->line, (long long)y->line);
    }
    return bad;
}

static int prepare(const char *out, const char *src, const data_opts *o) {
    data_h5_stats st;
    int rc = data_h5_prepare(out, src, tok, o, 1, NULL, &st);
    if (rc) printf("  (prepare %s: %s)\n", out, err_get());
    return rc;
}

// stderr captured into a file while fn runs (HDF5 must print nothing)
static int stderr_fd = -1;
static void capture_begin(void) {
    fflush(stderr);
    stderr_fd = dup(2);
    int fd = open(tpath("stderr.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
}
static long capture_end(void) {
    fflush(stderr);
    dup2(stderr_fd, 2);
    close(stderr_fd);
    struct stat sb;
    return stat(tpath("stderr.txt"), &sb) == 0 ? (long)sb.st_size : -1;
}

// loading must fail with a message containing every needle (NULL-terminated), printing nothing
static void expect_load_error(const char *path, const data_opts *o, const char *what, ...) {
    data_set ds;
    err_clear();
    capture_begin();
    int rc = data_load_any(&ds, path, tok, o);
    long printed = capture_end();
    CHECK(rc == -1, "%s: load should fail", what);
    CHECK(ds.n == 0 && ds.r == NULL, "%s: data set left empty", what);
    CHECK(printed == 0, "%s: %ld bytes printed on stderr (HDF5 error stack?)", what, printed);
    const char *msg = err_get();
    CHECK(!strchr(msg, '\n'), "%s: one line: %s", what, msg);
    va_list ap;
    va_start(ap, what);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        CHECK(strstr(msg, needle), "%s: message lacks '%s': %s", what, needle, msg);
    va_end(ap);
    if (getenv("TEST_VERBOSE")) printf("  %s: %s\n", what, msg);
}

static int copy_file(const char *from, const char *to) {
    size_t n;
    char *b = file_read_all(from, &n);
    if (!b) return -1;
    FILE *f = fopen(to, "wb");
    int rc = f && fwrite(b, 1, n, f) == n ? 0 : -1;
    if (f && fclose(f)) rc = -1;
    free(b);
    return rc;
}

// --- round trips

static void test_demo_roundtrip(void) {
    data_opts o = data_opts_default();
    data_set a, b;
    CHECK(data_load(&a, DEMO, tok, &o) == 0, "data_load: %s", err_get());
    const char *h5 = tpath("demo.h5");
    data_h5_stats st;
    CHECK(data_h5_prepare(h5, DEMO, tok, &o, 1, NULL, &st) == 0, "prepare: %s", err_get());
    CHECK(st.records == 1000 && st.tokens == a.n_tokens && st.source_bytes > 100000, "stats: %lld records %lld tokens %lld bytes",
          (long long)st.records, (long long)st.tokens, (long long)st.source_bytes);
    CHECK(data_h5_load(&b, h5, tok, &o) == 0, "h5 load: %s", err_get());
    CHECK(a.n == 1000, "demo has 1000 records, found %lld", (long long)a.n);
    ds_diff(&a, &b, "demo llama3");
    CHECK(b.path && !strcmp(b.path, h5), "ds.path");
    data_set_free(&b);
    // uncompressed gives the same records
    CHECK(data_h5_prepare(tpath("demo_raw.h5"), DEMO, tok, &o, 0, NULL, NULL) == 0, "prepare raw: %s", err_get());
    CHECK(data_load_any(&b, tpath("demo_raw.h5"), tok, &o) == 0, "raw load: %s", err_get());
    ds_diff(&a, &b, "demo uncompressed");
    data_set_free(&b);
    data_set_free(&a);

    // alpaca_classic + train_on_prompt
    o.template_ = "alpaca_classic";
    o.train_on_prompt = 1;
    CHECK(data_load(&a, DEMO, tok, &o) == 0, "data_load classic: %s", err_get());
    CHECK(prepare(tpath("classic.h5"), DEMO, &o) == 0, "prepare classic");
    CHECK(data_load_any(&b, tpath("classic.h5"), tok, &o) == 0, "load classic: %s", err_get());
    ds_diff(&a, &b, "demo alpaca_classic train_on_prompt");
    data_set_free(&a);
    data_set_free(&b);
}

// length policy at prepare time (counted in attributes) and at load time (as data_reader)
static void test_length_policy(void) {
    data_opts o = data_opts_default();
    o.max_seq_len = 40;
    for (int trunc = 0; trunc <= 1; trunc++) {
        o.truncate = trunc;
        data_set a, b, c;
        CHECK(data_load(&a, DEMO, tok, &o) == 0, "data_load: %s", err_get());
        CHECK(a.n_dropped_long + a.n_truncated > 100, "the limit bites: %lld dropped %lld truncated",
              (long long)a.n_dropped_long, (long long)a.n_truncated);
        // prepared with the limit
        CHECK(prepare(tpath("len.h5"), DEMO, &o) == 0, "prepare");
        CHECK(data_h5_load(&b, tpath("len.h5"), tok, &o) == 0, "load: %s", err_get());
        ds_diff(&a, &b, trunc ? "prepared truncated" : "prepared dropped");
        // prepared without a limit, limit applied when loading
        data_opts full = o;
        full.max_seq_len = 0;
        CHECK(prepare(tpath("full.h5"), DEMO, &full) == 0, "prepare full");
        CHECK(data_h5_load(&c, tpath("full.h5"), tok, &o) == 0, "load full: %s", err_get());
        ds_diff(&a, &c, trunc ? "load-time truncate" : "load-time drop");
        CHECK(c.n_dropped_long == a.n_dropped_long && c.n_truncated == a.n_truncated,
              "load-time counters %lld/%lld vs %lld/%lld", (long long)c.n_dropped_long, (long long)c.n_truncated,
              (long long)a.n_dropped_long, (long long)a.n_truncated);
        // the counters are in the prepared file
        hid_t f = H5Fopen(tpath("len.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
        int64_t v[3] = {-1, -1, -1};
        hid_t at = H5Aopen(f, "dropped_long", H5P_DEFAULT);
        H5Aread(at, H5T_NATIVE_INT64, &v[0]);
        H5Aclose(at);
        at = H5Aopen(f, "truncated", H5P_DEFAULT);
        H5Aread(at, H5T_NATIVE_INT64, &v[1]);
        H5Aclose(at);
        at = H5Aopen(f, "max_seq_len", H5P_DEFAULT);
        H5Aread(at, H5T_NATIVE_INT64, &v[2]);
        H5Aclose(at);
        H5Fclose(f);
        CHECK(v[0] == a.n_dropped_long && v[1] == a.n_truncated && v[2] == 40, "attrs dropped %lld truncated %lld max %lld",
              (long long)v[0], (long long)v[1], (long long)v[2]);
        data_set_free(&a);
        data_set_free(&b);
        data_set_free(&c);
    }
}

static const char *IMG_JSONL =
    "{\"text\": \"Plain text first.\"}\n"
    "\n"
    "{\"instruction\": \"Add.\", \"input\": \"2+2\", \"output\": \"4\"}\n"
    "{\"image\": \"img/a.jpg\", \"caption\": \"A cat on a mat.\"}\n"
    "{\"image\": \"img/b.png\", \"messages\": [{\"role\": \"user\", \"content\": \"What is in <image> this picture?\"},"
    " {\"role\": \"assistant\", \"content\": \"A dog.\"}]}\n"
    "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}]}\n";

static void test_image_roundtrip(void) {
    char cmd[800];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/vis/img'", tmp);
    CHECK(system(cmd) == 0, "mkdir");
    write_text(tpath("vis/img/a.jpg"), "not decoded here");
    write_text(tpath("vis/img/b.png"), "not decoded here");
    const char *jl = tpath("vis/mixed.jsonl");
    write_text(jl, IMG_JSONL);
    data_opts o = data_opts_default();
    o.num_patches = 16;
    data_set a, b;
    CHECK(data_load(&a, jl, tok, &o) == 0, "data_load: %s", err_get());
    CHECK(a.n == 5 && a.r[2].image_pos == 1 && a.r[3].image_pos > 1 && a.r[0].image_pos == -1, "JSONL records as expected");
    const char *h5 = tpath("vis/mixed.h5");
    CHECK(prepare(h5, jl, &o) == 0, "prepare");
    CHECK(data_h5_load(&b, h5, tok, &o) == 0, "load: %s", err_get());
    ds_diff(&a, &b, "image records");
    data_set_free(&b);

    // plain HDF5 view: image_pos and images per record
    hid_t f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    int64_t pos[5] = {0};
    char *img[5] = {0};
    hid_t d = H5Dopen2(f, "image_pos", H5P_DEFAULT);
    CHECK(d >= 0 && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, pos) >= 0, "read image_pos");
    H5Dclose(d);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    d = H5Dopen2(f, "images", H5P_DEFAULT);
    hid_t ft = H5Dget_type(d);
    CHECK(H5Tis_variable_str(ft) > 0 && H5Tget_cset(ft) == H5T_CSET_UTF8, "images: variable-length UTF-8");
    H5Tclose(ft);
    CHECK(H5Dread(d, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, img) >= 0, "read images");
    for (int i = 0; i < 5; i++) {
        CHECK(pos[i] == a.r[i].image_pos, "image_pos[%d] %lld vs %lld", i, (long long)pos[i], (long long)a.r[i].image_pos);
        const char *want = a.r[i].image_ref ? a.r[i].image_ref : "";
        CHECK(img[i] && !strcmp(img[i], want), "images[%d] '%s' vs '%s'", i, img[i] ? img[i] : "(null)", want);
        H5free_memory(img[i]);
    }
    H5Tclose(st);
    H5Dclose(d);
    H5Fclose(f);

    // no vision model when loading: the configuration error of data_load
    o.num_patches = 0;
    expect_load_error(h5, &o, "image without num_patches", "mixed.h5", "has an image", "num_patches", NULL);
    data_set_free(&a);
}

// image datasets created late (after records were already flushed): fill values -1 / ""
static void test_late_images(void) {
    data_opts o = data_opts_default();
    o.num_patches = 4;
    const char *h5 = tpath("late.h5");
    data_h5_writer *w = data_h5_writer_open(h5, "src/late.jsonl", tok, &o, 1);
    CHECK(w != NULL, "open: %s", err_get());
    if (!w) return;
    CHECK(strstr(data_h5_writer_tmp_path(w), "late.h5.tmp.") != NULL, "tmp name %s", data_h5_writer_tmp_path(w));
    const int64_t N = 70000;   // past the writer's record buffer: earlier records are in the file already
    int32_t ids[3] = {128000, 9906, 1917};
    uint8_t mask[3] = {0, 1, 1};
    int bad = 0;
    for (int64_t i = 0; i < N; i++) {
        data_record r = {ids, mask, 1 + i % 3, -1, NULL, NULL, i + 1};
        if (i == N - 2) {
            r.image_pos = 1;
            r.image = "src/x.jpg";
            r.image_ref = "x.jpg";
        }
        bad += data_h5_writer_add(w, &r) != 0;
    }
    CHECK(bad == 0, "adds failed: %s", err_get());
    data_record noimg = {ids, mask, 3, 1, NULL, NULL, 99};
    CHECK(data_h5_writer_add(w, &noimg) == -1 && strstr(err_get(), "line 99") && strstr(err_get(), "image path"),
          "image_pos without a path refused: %s", err_get());
    data_record past = {ids, mask, 2, 3, "a.jpg", "a.jpg", 98};
    CHECK(data_h5_writer_add(w, &past) == -1 && strstr(err_get(), "line 98"), "image_pos past the end refused: %s", err_get());
    CHECK(file_exists(data_h5_writer_tmp_path(w)) && !file_exists(h5), "only the temporary file exists while writing");
    CHECK(data_h5_writer_commit(w, 1, 2, 3) == 0, "commit: %s", err_get());
    data_set b;
    CHECK(data_h5_load(&b, h5, tok, &o) == 0, "load: %s", err_get());
    CHECK(b.n == N, "%lld records", (long long)b.n);
    if (b.n == N) {
        int wrong = 0;
        for (int64_t i = 0; i < N; i++) {
            const data_record *r = &b.r[i];
            int img = i == N - 2;
            wrong += r->n != 1 + i % 3 || memcmp(r->ids, ids, 4 * (size_t)r->n) || memcmp(r->mask, mask, (size_t)r->n) ||
                     r->line != i + 1 || r->image_pos != (img ? 1 : -1) ||
                     (img ? !streq(r->image, "src/x.jpg") || !streq(r->image_ref, "x.jpg") : r->image || r->image_ref);
        }
        CHECK(wrong == 0, "%d records differ", wrong);
    }
    CHECK(b.n_tokens == N / 3 * 6 + 1, "tokens %lld", (long long)b.n_tokens);
    data_set_free(&b);
}

// --- the file through the plain HDF5 API (what h5py users see)

static int attr_s(hid_t f, const char *name, char *out, size_t cap) {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    int ok = H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0 && H5Tget_cset(t) == H5T_CSET_UTF8;
    H5Tclose(t);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    char *s = NULL;
    if (H5Aread(a, mt, &s) < 0) ok = 0;
    snprintf(out, cap, "%s", s ? s : "");
    H5free_memory(s);
    H5Tclose(mt);
    H5Aclose(a);
    return ok ? 0 : -1;
}

static int attr_i(hid_t f, const char *name, int64_t *v) {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    int ok = H5Tequal(t, H5T_STD_I64LE) > 0 && H5Aread(a, H5T_NATIVE_INT64, v) >= 0;
    H5Tclose(t);
    H5Aclose(a);
    return ok ? 0 : -1;
}

static void test_layout(void) {
    data_opts o = data_opts_default();
    o.format = "alpaca";
    o.max_seq_len = 512;
    o.truncate = 1;
    const char *h5 = tpath("layout.h5");
    CHECK(prepare(h5, DEMO, &o) == 0, "prepare");
    data_set a;
    CHECK(data_load(&a, DEMO, tok, &o) == 0, "data_load");
    hid_t f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0, "H5Fopen");
    if (f < 0) return;
    struct {
        const char *name;
        hid_t type;
        int64_t n;
    } sets[] = {{"tokens", H5T_STD_I32LE, a.n_tokens}, {"loss_mask", H5T_STD_U8LE, a.n_tokens},
                {"doc_offsets", H5T_STD_I64LE, a.n + 1}, {"doc_lines", H5T_STD_I64LE, a.n}};
    for (int i = 0; i < 4; i++) {
        hid_t d = H5Dopen2(f, sets[i].name, H5P_DEFAULT);
        CHECK(d >= 0, "dataset %s", sets[i].name);
        if (d < 0) continue;
        hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
        hsize_t dim = 0, maxd = 0;
        CHECK(H5Tequal(t, sets[i].type) > 0, "%s dtype", sets[i].name);
        CHECK(H5Sget_simple_extent_ndims(sp) == 1 && H5Sget_simple_extent_dims(sp, &dim, &maxd) == 1 &&
                  (int64_t)dim == sets[i].n && maxd == H5S_UNLIMITED,
              "%s: shape %llu (want %lld), extendible", sets[i].name, (unsigned long long)dim, (long long)sets[i].n);
        hid_t dcpl = H5Dget_create_plist(d);
        CHECK(H5Pget_layout(dcpl) == H5D_CHUNKED, "%s chunked", sets[i].name);
        H5Pclose(dcpl);
        H5Tclose(t);
        H5Sclose(sp);
        H5Dclose(d);
    }
    CHECK(H5Lexists(f, "image_pos", H5P_DEFAULT) == 0 && H5Lexists(f, "images", H5P_DEFAULT) == 0,
          "no image datasets for text-only data");
    // contents: concatenation and offsets
    int32_t *tk = xmalloc(4 * (size_t)a.n_tokens);
    uint8_t *mk = xmalloc((size_t)a.n_tokens);
    int64_t *off = xmalloc(8 * (size_t)(a.n + 1));
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tk);
    H5Dclose(d);
    d = H5Dopen2(f, "loss_mask", H5P_DEFAULT);
    H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, mk);
    H5Dclose(d);
    d = H5Dopen2(f, "doc_offsets", H5P_DEFAULT);
    H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off);
    H5Dclose(d);
    int bad = 0;
    for (int64_t i = 0; i < a.n; i++) {
        const data_record *r = &a.r[i];
        bad += off[i + 1] - off[i] != r->n || memcmp(tk + off[i], r->ids, 4 * (size_t)r->n) ||
               memcmp(mk + off[i], r->mask, (size_t)r->n);
    }
    CHECK(off[0] == 0 && bad == 0, "%d records differ from data_load in the raw arrays", bad);
    free(tk);
    free(mk);
    free(off);

    char s[256], want[32];
    int64_t v = -1;
    snprintf(want, sizeof want, "%016" PRIx64, tok_hash(tok));
    CHECK(attr_s(f, "tokenizer_hash", s, sizeof s) == 0 && !strcmp(s, want), "tokenizer_hash '%s' want '%s'", s, want);
    CHECK(attr_s(f, "format", s, sizeof s) == 0 && !strcmp(s, "alpaca"), "format '%s'", s);
    CHECK(attr_s(f, "template", s, sizeof s) == 0 && !strcmp(s, "llama3"), "template '%s'", s);
    CHECK(attr_s(f, "truncation", s, sizeof s) == 0 && !strcmp(s, "truncate"), "truncation '%s'", s);
    CHECK(attr_s(f, "source", s, sizeof s) == 0 && !strcmp(s, DEMO), "source '%s'", s);
    CHECK(attr_s(f, "lorac_version", s, sizeof s) == 0 && !strcmp(s, "0.1"), "lorac_version '%s'", s);
    CHECK(attr_s(f, "kind", s, sizeof s) == 0 && !strcmp(s, "text"), "kind '%s'", s);
    struct stat sb;
    stat(DEMO, &sb);
    CHECK(attr_i(f, "source_size", &v) == 0 && v == (int64_t)sb.st_size, "source_size %lld", (long long)v);
    CHECK(attr_i(f, "records", &v) == 0 && v == a.n, "records %lld", (long long)v);
    CHECK(attr_i(f, "tokens", &v) == 0 && v == a.n_tokens, "tokens %lld", (long long)v);
    CHECK(attr_i(f, "train_on_prompt", &v) == 0 && v == 0, "train_on_prompt %lld", (long long)v);
    CHECK(attr_i(f, "max_seq_len", &v) == 0 && v == 512, "max_seq_len %lld", (long long)v);
    CHECK(attr_i(f, "skipped_bad", &v) == 0 && v == 0, "skipped_bad %lld", (long long)v);
    CHECK(attr_i(f, "dropped_long", &v) == 0 && v == a.n_dropped_long, "dropped_long %lld", (long long)v);
    CHECK(attr_i(f, "truncated", &v) == 0 && v == a.n_truncated, "truncated %lld", (long long)v);
    H5Fclose(f);
    data_set_free(&a);
}

// --- refusals

static void set_str_attr(const char *path, const char *name, const char *value) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(f, name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(a >= 0 && H5Awrite(a, t, &value) >= 0, "rewrite attribute %s", name);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Fclose(f);
}

static void test_refusals(void) {
    data_opts o = data_opts_default();
    const char *good = tpath("good.h5");
    CHECK(prepare(good, DEMO, &o) == 0, "prepare");
    char want[32];
    snprintf(want, sizeof want, "%016" PRIx64, tok_hash(tok));

    const char *other = tpath("othertok.h5");
    CHECK(copy_file(good, other) == 0, "copy");
    set_str_attr(other, "tokenizer_hash", "0123456789abcdef");
    expect_load_error(other, &o, "other tokenizer", "othertok.h5", "tokenizer_hash", want, "0123456789abcdef",
                      "another tokenizer", "lorac prepare", NULL);

    data_opts t = o;
    t.template_ = "alpaca_classic";
    expect_load_error(good, &t, "other template", "good.h5", "'template'", "expected 'alpaca_classic'",
                      "found 'llama3'", "lorac prepare", NULL);
    t = o;
    t.train_on_prompt = 1;
    expect_load_error(good, &t, "other train_on_prompt", "good.h5", "train_on_prompt", "expected true",
                      "found false", "lorac prepare", NULL);
    t = o;
    t.format = "chat";
    expect_load_error(good, &t, "other format", "good.h5", "'format'", "expected 'chat'", "found 'auto'", NULL);
    // an explicit format prepared is accepted by `auto`
    data_set ds;
    CHECK(data_h5_load(&ds, tpath("layout.h5"), tok, &o) == 0 && ds.n == 1000, "alpaca file loads with auto: %s", err_get());
    data_set_free(&ds);

    const char *feat = tpath("features.h5");
    CHECK(copy_file(good, feat) == 0, "copy");
    set_str_attr(feat, "kind", "features");
    expect_load_error(feat, &o, "feature cache", "features.h5", "'kind'", "vision.features", NULL);
}

// --- structural errors

typedef void (*edit_fn)(hid_t f);

static void rewrite_i64(hid_t f, const char *name, hsize_t at, int64_t v) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t fs = H5Dget_space(d);
    hsize_t one = 1;
    hid_t ms = H5Screate_simple(1, &one, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, NULL, &one, NULL);
    CHECK(H5Dwrite(d, H5T_NATIVE_INT64, ms, fs, H5P_DEFAULT, &v) >= 0, "rewrite %s", name);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
}

static void ed_no_mask(hid_t f) { H5Ldelete(f, "loss_mask", H5P_DEFAULT); }
static void ed_no_offsets(hid_t f) { H5Ldelete(f, "doc_offsets", H5P_DEFAULT); }
static void ed_float_tokens(hid_t f) {
    H5Ldelete(f, "tokens", H5P_DEFAULT);
    hsize_t n = 35145;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "tokens", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
}
static void ed_not_monotonic(hid_t f) { rewrite_i64(f, "doc_offsets", 5, 3); }
static void ed_past_end(hid_t f) { rewrite_i64(f, "doc_offsets", 1000, 99999999); }
static void ed_bad_id(hid_t f) {
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t fs = H5Dget_space(d);
    hsize_t one = 1, at = 7;
    hid_t ms = H5Screate_simple(1, &one, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, NULL, &one, NULL);
    int32_t v = 300000;
    H5Dwrite(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, &v);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
}
static void ed_bad_mask(hid_t f) {
    hid_t d = H5Dopen2(f, "loss_mask", H5P_DEFAULT);
    hid_t fs = H5Dget_space(d);
    hsize_t one = 1, at = 11;
    hid_t ms = H5Screate_simple(1, &one, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, NULL, &one, NULL);
    uint8_t v = 7;
    H5Dwrite(d, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, &v);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
}
static void ed_records_attr(hid_t f) {
    hid_t a = H5Aopen(f, "records", H5P_DEFAULT);
    int64_t v = 1234;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
}
static void ed_no_hash(hid_t f) { H5Adelete(f, "tokenizer_hash"); }
static void ed_short_mask(hid_t f) {
    hid_t d = H5Dopen2(f, "loss_mask", H5P_DEFAULT);
    hsize_t n = 100;
    H5Dset_extent(d, &n);
    H5Dclose(d);
}

static void test_structure_errors(void) {
    data_opts o = data_opts_default();
    const char *good = tpath("good.h5");
    struct {
        const char *name;
        edit_fn fn;
        const char *n1, *n2, *n3;
    } cases[] = {
        {"no_mask", ed_no_mask, "dataset 'loss_mask' missing", "uint8", NULL},
        {"no_offsets", ed_no_offsets, "dataset 'doc_offsets' missing", "int64", NULL},
        {"float_tokens", ed_float_tokens, "dataset 'tokens'", "expected int32", "found float32"},
        {"not_monotonic", ed_not_monotonic, "dataset 'doc_offsets'", "not monotonic", "record"},
        {"past_end", ed_past_end, "dataset 'doc_offsets'", "past the end", "99999999"},
        {"bad_id", ed_bad_id, "dataset 'tokens'", "300000", "vocabulary"},
        {"bad_mask", ed_bad_mask, "dataset 'loss_mask'", "expected 0 or 1", "found 7"},
        {"records_attr", ed_records_attr, "attribute 'records'", "1234", "1000"},
        {"no_hash", ed_no_hash, "attribute 'tokenizer_hash' missing", "lorac prepare", NULL},
        {"short_mask", ed_short_mask, "dataset 'loss_mask'", "expected 35145", "found 100"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[64];
        snprintf(name, sizeof name, "bad_%s.h5", cases[i].name);
        const char *p = tpath(name);
        CHECK(copy_file(good, p) == 0, "copy");
        hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
        cases[i].fn(f);
        H5Fclose(f);
        expect_load_error(p, &o, cases[i].name, name, cases[i].n1, cases[i].n2, cases[i].n3, NULL);
    }
}

static void test_corrupt(void) {
    data_opts o = data_opts_default();
    size_t n;
    char *b = file_read_all(tpath("good.h5"), &n);
    CHECK(b && n > 1000, "read good.h5");
    if (!b) return;
    // truncated to half (a download cut short)
    FILE *f = fopen(tpath("cut.h5"), "wb");
    CHECK(f && fwrite(b, 1, n / 2, f) == n / 2 && !fclose(f), "write cut.h5");
    expect_load_error(tpath("cut.h5"), &o, "truncated", "cut.h5", "truncated or corrupt", "lorac prepare", NULL);
    // only the signature survives
    f = fopen(tpath("sig.h5"), "wb");
    CHECK(f && fwrite(b, 1, 64, f) == 64 && !fclose(f), "write sig.h5");
    expect_load_error(tpath("sig.h5"), &o, "header only", "sig.h5", "lorac prepare", NULL);
    // chunk data overwritten (the superblock and B-trees intact, compressed chunks garbage)
    for (size_t i = n / 4; i < n / 4 + 4096 && i < n; i++) b[i] = (char)(i * 37);
    f = fopen(tpath("garbled.h5"), "wb");
    CHECK(f && fwrite(b, 1, n, f) == n && !fclose(f), "write garbled.h5");
    expect_load_error(tpath("garbled.h5"), &o, "garbled", "garbled.h5", NULL);
    free(b);
    // JSONL named .h5
    write_text(tpath("notreally.h5"), "{\"text\": \"hello\"}\n");
    expect_load_error(tpath("notreally.h5"), &o, "jsonl named h5", "notreally.h5", "not an HDF5 file", NULL);
    expect_load_error(tpath("missing.h5"), &o, "missing file", "missing.h5", "cannot open", NULL);
}

// a file made with h5py (tests/gen_h5data.py): contiguous datasets, h5py's attribute types
static void test_h5py_file(void) {
    const char *p = tpath("h5py.h5");
    CHECK(copy_file("tests/fixtures/h5data_h5py.h5", p) == 0, "copy fixture");
    char hash[32];
    snprintf(hash, sizeof hash, "%016" PRIx64, tok_hash(tok));
    set_str_attr(p, "tokenizer_hash", hash);
    data_opts o = data_opts_default();
    o.num_patches = 4;
    data_set ds;
    CHECK(data_load_any(&ds, p, tok, &o) == 0, "load: %s", err_get());
    CHECK(ds.n == 3 && ds.n_tokens == 9, "%lld records %lld tokens", (long long)ds.n, (long long)ds.n_tokens);
    if (ds.n == 3) {
        static const int32_t ids1[3] = {128000, 5, 6};
        static const uint8_t m0[4] = {0, 1, 1, 1}, m1[3] = {0, 0, 1};
        CHECK(ds.r[0].n == 4 && ds.r[0].ids[1] == 9906 && !memcmp(ds.r[0].mask, m0, 4) && ds.r[0].image_pos == -1 &&
                  !ds.r[0].image && ds.r[0].line == 1,
              "record 0");
        CHECK(ds.r[1].n == 3 && !memcmp(ds.r[1].ids, ids1, 12) && !memcmp(ds.r[1].mask, m1, 3) && ds.r[1].image_pos == 1 &&
                  streq(ds.r[1].image_ref, "img/c.jpg") && streq(ds.r[1].image, "data/img/c.jpg") && ds.r[1].line == 2,
              "record 1: image %s ref %s", ds.r[1].image ? ds.r[1].image : "-", ds.r[1].image_ref ? ds.r[1].image_ref : "-");
        CHECK(ds.r[2].n == 2 && ds.r[2].ids[1] == 100 && ds.r[2].image_pos == -1, "record 2");
    }
    data_set_free(&ds);
    o.train_on_prompt = 1;   // h5py's bool attribute (an HDF5 enum) is read
    expect_load_error(p, &o, "h5py bool", "train_on_prompt", "expected true", "found false", NULL);
}

// --- dispatch and atomic output

static void test_dispatch_atomic(void) {
    data_opts o = data_opts_default();
    data_set a, b;
    // an HDF5 file with another name is recognized by its signature
    CHECK(copy_file(tpath("good.h5"), tpath("prepared.bin")) == 0, "copy");
    CHECK(data_is_h5(tpath("prepared.bin")) == 1 && data_is_h5(DEMO) == 0 && data_is_h5("x.HDF5") == 1,
          "data_is_h5");
    CHECK(data_load_any(&a, tpath("prepared.bin"), tok, &o) == 0, "load .bin: %s", err_get());
    CHECK(data_load_any(&b, DEMO, tok, &o) == 0, "load jsonl: %s", err_get());
    ds_diff(&a, &b, "dispatch");
    data_set_free(&a);
    data_set_free(&b);

    // failures leave no output and no temporary file; an existing output stays as it was
    const char *bad = tpath("atomic/bad.jsonl");
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/atomic'", tmp);
    CHECK(system(cmd) == 0, "mkdir");
    write_text(bad, "{\"text\": \"fine\"}\n{\"text\": 5}\n");
    CHECK(data_h5_prepare(tpath("atomic/out.h5"), bad, tok, &o, 1, NULL, NULL) == -1 && strstr(err_get(), "bad.jsonl:2"),
          "bad line fails: %s", err_get());
    write_text(tpath("atomic/keep.h5"), "old");
    CHECK(data_h5_prepare(tpath("atomic/keep.h5"), bad, tok, &o, 1, NULL, NULL) == -1, "fails");
    size_t n = 0;
    char *old = file_read_all(tpath("atomic/keep.h5"), &n);
    CHECK(old && n == 3 && !memcmp(old, "old", 3), "existing output untouched");
    free(old);
    volatile sig_atomic_t stop = 1;
    CHECK(data_h5_prepare(tpath("atomic/stopped.h5"), DEMO, tok, &o, 1, &stop, NULL) == -1 &&
              strstr(err_get(), "interrupted"),
          "stop flag: %s", err_get());
    // skip_bad_lines: counted in the file
    o.skip_bad_lines = 1;
    data_h5_stats st;
    CHECK(data_h5_prepare(tpath("atomic/skip.h5"), bad, tok, &o, 1, NULL, &st) == 0 && st.records == 1 &&
              st.skipped_bad == 1,
          "skip: %s", err_get());
    snprintf(cmd, sizeof cmd, "ls -A '%s/atomic' | sort | tr '\\n' ' '", tmp);
    FILE *p = popen(cmd, "r");
    char line[512] = {0};
    if (p) {
        if (!fgets(line, sizeof line, p)) line[0] = 0;
        pclose(p);
    }
    CHECK(!strcmp(line, "bad.jsonl keep.h5 skip.h5 "), "folder holds: %s", line);
    // an empty JSONL gives an empty, loadable data set
    write_text(tpath("atomic/empty.jsonl"), "\n\n");
    o.skip_bad_lines = 0;
    CHECK(prepare(tpath("atomic/empty.h5"), tpath("atomic/empty.jsonl"), &o) == 0, "prepare empty");
    CHECK(data_load_any(&a, tpath("atomic/empty.h5"), tok, &o) == 0 && a.n == 0 && a.n_tokens == 0,
          "empty loads: %s", err_get());
    data_set_free(&a);
}

int main(void) {
    const char *dir = getenv("TOKENIZER_DIR");
    tok = tok_load(dir ? dir : ".cache/tokenizer");
    if (!tok) {
        test_fail("cannot load the tokenizer: %s", err_get());
        return test_summary();
    }
    tmp = test_tmpdir("h5data");
    RUN(test_demo_roundtrip);
    RUN(test_length_policy);
    RUN(test_image_roundtrip);
    RUN(test_late_images);
    RUN(test_layout);
    RUN(test_refusals);
    RUN(test_structure_errors);
    RUN(test_corrupt);
    RUN(test_h5py_file);
    RUN(test_dispatch_atomic);
    tok_free(tok);
    tpath_free_all();
    return test_summary();
}
