// test_safetensors.c — reader/writer round trips, conversions against torch
// (tests/fixtures/st_torch.safetensors from tests/gen_safetensors.py), sharded folders, and
// one crafted file per rejection, each checking the message names the file and the tensor.
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "test.h"
#include "util.h"

static const char *tmp;

static char *tpath(const char *name) { return path_join(tmp, name); }

// Writes u64 header length + header + `data_len` bytes (value i & 0xff) to tmp/name.
static char *write_raw(const char *name, const char *header, size_t data_len) {
    char *p = tpath(name);
    FILE *fp = fopen(p, "wb");
    uint64_t n = strlen(header);
    fwrite(&n, 8, 1, fp);
    fwrite(header, 1, n, fp);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i & 0xff), fp);
    fclose(fp);
    return p;
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

// st_open must fail with a message holding the file name and every string in `want`.
#define EXPECT_REJECT(path, ...)                                                          \
    do {                                                                                   \
        err_clear();                                                                       \
        st_model *m_ = st_open(path);                                                      \
        CHECK(m_ == NULL, "%s: opened but should be rejected", path);                      \
        st_close(m_);                                                                      \
        const char *w_[] = {__VA_ARGS__};                                                  \
        for (size_t k_ = 0; k_ < sizeof w_ / sizeof w_[0]; k_++)                           \
            CHECK(contains(err_get(), w_[k_]), "message lacks '%s': %s", w_[k_], err_get()); \
        if (getenv("TEST_VERBOSE")) printf("  rejected: %s\n", err_get());                 \
    } while (0)

// --- conversions against torch

static int same_bits(float a, float b) {
    if (a != a && b != b) return 1;
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x == y;
}

static void test_torch_fixture_read(void) {
    st_model *m = st_open("tests/fixtures/st_torch.safetensors");
    CHECK(m, "open: %s", err_get());
    if (!m) return;
    CHECK(st_count(m) == 9, "count %d", st_count(m));
    CHECK(st_meta(m, "format") && !strcmp(st_meta(m, "format"), "pt"), "format meta");
    CHECK(st_meta(m, "nope") == NULL, "absent meta");
    CHECK(st_find(m, "nope") == NULL, "absent tensor");
    for (int i = 1; i < st_count(m); i++)
        CHECK(strcmp(st_get(m, i - 1)->name, st_get(m, i)->name) < 0, "st_get sorted by name");
    const char *pairs[3][2] = {{"bf16", "bf16_as_f32"}, {"f16", "f16_as_f32"}, {"f64", "f64_as_f32"}};
    for (int p = 0; p < 3; p++) {
        const st_tensor *t = st_find(m, pairs[p][0]), *r = st_find(m, pairs[p][1]);
        CHECK(t && r && st_numel(t) == st_numel(r), "%s present", pairs[p][0]);
        if (!t || !r) continue;
        int64_t n = st_numel(t);
        float *got = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * n);
        CHECK(st_read_f32(t, got) == 0 && st_read_f32(r, want) == 0, "read %s", err_get());
        int bad = 0;
        for (int64_t i = 0; i < n; i++)
            if (!same_bits(got[i], want[i]) && bad++ < 3)
                CHECK(0, "%s[%lld]: got %a want %a", pairs[p][0], (long long)i, got[i], want[i]);
        CHECK(!bad, "%s: %d of %lld values differ from torch", pairs[p][0], bad, (long long)n);
        free(got);
        free(want);
    }
    const st_tensor *mat = st_find(m, "mat_bf16");
    CHECK(mat && mat->ndim == 3 && mat->shape[0] == 2 && mat->shape[1] == 3 && mat->shape[2] == 4,
          "mat shape");
    int64_t shp[3] = {2, 3, 4};
    float *x = st_load_f32(m, "mat_bf16", 3, shp);
    CHECK(x && ((uintptr_t)x % 64) == 0, "st_load_f32 aligned: %s", err_get());
    if (x) CHECK(fabsf(x[23] - 23.0f / 7) < 0.01f, "mat[23] = %g", x[23]);
    free(x);
    // wrong shape / missing / non-float dtype
    int64_t wrong[3] = {2, 4, 3};
    CHECK(st_load_f32(m, "mat_bf16", 3, wrong) == NULL && contains(err_get(), "st_torch.safetensors") &&
              contains(err_get(), "'mat_bf16'") && contains(err_get(), "[2, 4, 3]") &&
              contains(err_get(), "[2, 3, 4]"),
          "shape mismatch message: %s", err_get());
    CHECK(st_load_f32(m, "missing.weight", 1, shp) == NULL && contains(err_get(), "'missing.weight'") &&
              contains(err_get(), "st_torch.safetensors"),
          "missing tensor message: %s", err_get());
    const st_tensor *ids = st_find(m, "ids");
    float tmpf[4];
    CHECK(ids && st_read_f32(ids, tmpf) == -1 && contains(err_get(), "'ids'") && contains(err_get(), "I64"),
          "I64 not readable as float: %s", err_get());
    if (ids) {
        int64_t v[4];
        memcpy(v, ids->data, sizeof v);
        CHECK(v[0] == 1 && v[1] == -2 && v[3] == (1LL << 40), "I64 raw values");
    }
    st_close(m);
}

// Our fp32 -> BF16/F16 conversion must produce torch's bytes for every fixture value.
static void test_torch_fixture_write(void) {
    st_model *m = st_open("tests/fixtures/st_torch.safetensors");
    if (!m) {
        CHECK(0, "open: %s", err_get());
        return;
    }
    const st_tensor *src = st_find(m, "src");
    int64_t n = st_numel(src);
    float *x = malloc(sizeof(float) * n);
    st_read_f32(src, x);
    const char *names[2] = {"bf16", "f16"};
    for (int k = 0; k < 2; k++) {
        const st_tensor *t = st_find(m, names[k]);
        const uint16_t *want = t->data;
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            uint16_t got = k == 0 ? st_f32_to_bf16(x[i]) : st_f32_to_f16(x[i]);
            uint16_t w;
            memcpy(&w, &want[i], 2);
            // NaN: torch's scalar path gives 0x7FC0, its AVX path 0xFFFF; any NaN is fine
            if (x[i] != x[i] && (k == 0 ? (w & 0x7F80) == 0x7F80 && (w & 0x7F) && (got & 0x7F80) == 0x7F80 && (got & 0x7F)
                                        : (w & 0x7C00) == 0x7C00 && (w & 0x3FF) && (got & 0x7C00) == 0x7C00 && (got & 0x3FF)))
                continue;
            if (got != w && bad++ < 3) CHECK(0, "%s(%a): got %04x torch %04x", names[k], x[i], got, w);
        }
        CHECK(!bad, "%s: %d of %lld conversions differ from torch", names[k], bad, (long long)n);
    }
    // through the writer: the file's bytes equal torch's
    char *p = tpath("torch_rt.safetensors");
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "bf16", ST_BF16, 1, &n, x);
    st_writer_add_f32(w, "f16", ST_F16, 1, &n, x);
    CHECK(st_writer_write(w, p) == 0, "write: %s", err_get());
    st_writer_free(w);
    st_model *r = st_open(p);
    CHECK(r, "reopen: %s", err_get());
    for (int k = 0; r && k < 2; k++) {
        const st_tensor *a = st_find(r, names[k]), *b = st_find(m, names[k]);
        CHECK(a && a->dtype == b->dtype && a->nbytes == b->nbytes, "%s written", names[k]);
        if (!a || a->nbytes != b->nbytes) continue;
        int diff = 0;   // bytes equal torch's except for NaN encodings (checked above)
        for (int64_t i = 0; i < n; i++)
            if (x[i] == x[i] && memcmp((const char *)a->data + 2 * i, (const char *)b->data + 2 * i, 2)) diff++;
        CHECK(!diff, "%s: %d written values differ from torch's bytes", names[k], diff);
    }
    st_close(r);
    free(p);
    free(x);
    st_close(m);
}

// --- writer round trip and layout

static float fill_scale = 0.5f;
static void fill_ramp(void *ctx, const char *name, float *dst, int64_t start, int64_t count) {
    (void)name;
    float s = *(const float *)ctx;
    for (int64_t i = 0; i < count; i++) dst[i] = s * (float)(start + i);
}

static void test_roundtrip(void) {
    float a[6] = {1.5f, -2.25f, 3.0e-3f, 0.0f, 1e30f, -7.0f};
    int32_t ids[3] = {5, -6, 7};
    uint8_t bytes[5] = {1, 2, 3, 4, 250};
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s5[1] = {5}, s0[2] = {0, 4}, sbig[1] = {600000};
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "z.f32", ST_F32, 2, s23, a);
    st_writer_add_f32(w, "b.bf16", ST_BF16, 2, s23, a);
    st_writer_add_f32(w, "c.f16", ST_F16, 2, s23, a);
    st_writer_add_f32(w, "d.f64", ST_F64, 2, s23, a);
    st_writer_add(w, "a.ids", ST_I32, 1, s3, ids);
    st_writer_add(w, "e.u8", ST_U8, 1, s5, bytes);
    st_writer_add(w, "f.empty", ST_F32, 2, s0, NULL);
    st_writer_add(w, "g.scalar", ST_F32, 0, NULL, &a[1]);
    st_writer_add_fill(w, "h.fill", ST_BF16, 1, sbig, fill_ramp, &fill_scale);   // > one chunk
    st_writer_meta(w, "note", "quote\" and \\ and\nnewline");
    char *p = tpath("rt.safetensors");
    CHECK(st_writer_write(w, p) == 0, "write: %s", err_get());
    st_writer_free(w);
    // layout: header length multiple of 8, padded with spaces, metadata first, sorted names
    size_t len;
    char *raw = file_read_all(p, &len);
    uint64_t hl;
    memcpy(&hl, raw, 8);
    CHECK(hl % 8 == 0 && raw[8] == '{' && raw[8 + hl - 1] != 0, "header padded to 8: %llu",
          (unsigned long long)hl);
    CHECK(!strncmp(raw + 8, "{\"__metadata__\":{\"format\":\"pt\",\"note\":", 38), "metadata first: %.60s",
          raw + 8);
    const char *order[] = {"\"a.ids\"", "\"b.bf16\"", "\"c.f16\"", "\"d.f64\"", "\"e.u8\"", "\"f.empty\"",
                           "\"g.scalar\"", "\"h.fill\"", "\"z.f32\""};
    const char *prev = raw;
    for (int i = 0; i < 9; i++) {
        const char *at = strstr(raw + 8, order[i]);
        CHECK(at && at > prev, "tensor %s in sorted order", order[i]);
        if (at) prev = at;
    }
    CHECK(strstr(raw + 8, "\"a.ids\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[0,12]}") != NULL,
          "first tensor at offset 0");
    free(raw);
    // no temp file left behind
    char *tmpf = tpath("rt.safetensors.tmp");
    CHECK(!file_exists(tmpf), "no temp file");
    free(tmpf);

    st_model *m = st_open(p);
    CHECK(m, "reopen: %s", err_get());
    if (!m) return;
    CHECK(st_count(m) == 9, "count");
    CHECK(st_meta(m, "note") && !strcmp(st_meta(m, "note"), "quote\" and \\ and\nnewline"), "escaped meta");
    float got[6];
    const st_tensor *t = st_find(m, "z.f32");
    CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3, "f32 info");
    st_read_f32(t, got);
    CHECK(!memcmp(got, a, sizeof a), "f32 values exact");
    t = st_find(m, "d.f64");
    st_read_f32(t, got);
    CHECK(t->nbytes == 48 && !memcmp(got, a, sizeof a), "f64 values exact");
    t = st_find(m, "b.bf16");
    st_read_f32(t, got);
    for (int i = 0; i < 6; i++)
        CHECK(got[i] == st_bf16_to_f32(st_f32_to_bf16(a[i])) && fabsf(got[i] - a[i]) <= fabsf(a[i]) / 256,
              "bf16[%d] %g vs %g", i, got[i], a[i]);
    t = st_find(m, "c.f16");
    st_read_f32(t, got);
    CHECK(got[0] == 1.5f && got[1] == -2.25f && fabsf(got[2] - 3e-3f) < 2e-6f && isinf(got[4]),
          "f16 values (1e30 -> inf): %g %g %g %g", got[0], got[1], got[2], got[4]);
    t = st_find(m, "a.ids");
    CHECK(t && t->dtype == ST_I32 && !memcmp(t->data, ids, sizeof ids), "i32 raw");
    t = st_find(m, "e.u8");
    CHECK(t && t->dtype == ST_U8 && !memcmp(t->data, bytes, 5), "u8 raw");
    t = st_find(m, "f.empty");
    CHECK(t && t->nbytes == 0 && t->ndim == 2 && t->shape[0] == 0, "empty tensor");
    t = st_find(m, "g.scalar");
    CHECK(t && t->ndim == 0 && t->nbytes == 4 && st_read_f32(t, got) == 0 && got[0] == a[1], "scalar");
    t = st_find(m, "h.fill");
    float *big = st_load_f32(m, "h.fill", 1, sbig);
    CHECK(big, "load fill: %s", err_get());
    int bad = 0;
    for (int64_t i = 0; big && i < sbig[0]; i++)
        if (big[i] != st_bf16_to_f32(st_f32_to_bf16(0.5f * (float)i))) bad++;
    CHECK(!bad, "fill values across chunks: %d bad", bad);
    free(big);
    st_close(m);
    free(p);
}

static void test_writer_errors(void) {
    float a[2] = {1, 2};
    int64_t s[1] = {2};
    char *p = tpath("dup.safetensors");
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "x", ST_F32, 1, s, a);
    st_writer_add_f32(w, "x", ST_BF16, 1, s, a);
    CHECK(st_writer_write(w, p) == -1 && contains(err_get(), "'x'") && contains(err_get(), "dup.safetensors"),
          "duplicate rejected: %s", err_get());
    CHECK(!file_exists(p), "nothing written");
    st_writer_free(w);
    w = st_writer_new();
    st_writer_add_f32(w, "x", ST_F32, 1, s, a);
    CHECK(st_writer_write(w, "/nonexistent-dir/a.safetensors") == -1 &&
              contains(err_get(), "/nonexistent-dir/a.safetensors"),
          "unwritable path named: %s", err_get());
    st_writer_free(w);
    free(p);
}

// A header without padding puts F32 data at an odd address: reads must still work.
static void test_unaligned(void) {
    const char *h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"y\":{\"dtype\":\"BF16\","
                    "\"shape\":[1],\"data_offsets\":[8,10]}}";
    char *p = tpath("unaligned.safetensors");
    FILE *fp = fopen(p, "wb");
    uint64_t n = strlen(h);
    float v[2] = {3.5f, -1.25f};
    uint16_t b = st_f32_to_bf16(2.0f);
    fwrite(&n, 8, 1, fp);
    fwrite(h, 1, n, fp);
    fwrite(v, 4, 2, fp);
    fwrite(&b, 2, 1, fp);
    fclose(fp);
    CHECK((8 + n) % 4 != 0, "test setup: data is misaligned");
    st_model *m = st_open(p);
    CHECK(m, "open: %s", err_get());
    if (m) {
        float got[2];
        CHECK(st_read_f32(st_find(m, "x"), got) == 0 && got[0] == 3.5f && got[1] == -1.25f, "unaligned f32");
        CHECK(st_read_f32(st_find(m, "y"), got) == 0 && got[0] == 2.0f, "unaligned bf16");
        CHECK(st_meta(m, "format") == NULL, "no metadata");
    }
    st_close(m);
    free(p);
}

// --- sharded folders

static void write_shards(const char *dir, int variant) {
    mkdir_p(dir);
    static float a[4] = {1, 2, 3, 4}, b[2] = {5, 6}, c[3] = {7, 8, 9};
    int64_t s4[1] = {4}, s2[1] = {2}, s3[1] = {3};
    char *p1 = path_join(dir, "model-00001-of-00002.safetensors");
    char *p2 = path_join(dir, "model-00002-of-00002.safetensors");
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "model.a", ST_BF16, 1, s4, a);
    st_writer_add_f32(w, "model.b", ST_F32, 1, s2, b);
    if (variant == 3) st_writer_add_f32(w, "model.c", ST_F32, 1, s3, c);   // also in shard 2
    st_writer_write(w, p1);
    st_writer_free(w);
    if (variant != 1) {   // variant 1: shard 2 missing
        w = st_writer_new();
        if (variant != 2) st_writer_add_f32(w, "model.c", ST_F16, 1, s3, c);   // variant 2: tensor missing
        else st_writer_add_f32(w, "model.other", ST_F16, 1, s3, c);
        st_writer_meta(w, "shard", "2");
        st_writer_write(w, p2);
        st_writer_free(w);
    }
    const char *index =
        variant == 4
            ? "{\"metadata\":{\"total_size\":30},\"weight_map\":{\"model.a\":\"model-00001-of-00002.safetensors\","
              "\"model.b\":\"model-00001-of-00002.safetensors\",\"model.a\":\"model-00002-of-00002.safetensors\","
              "\"model.c\":\"model-00002-of-00002.safetensors\"}}"
        : variant == 5 ? "{\"metadata\":{},\"weight_map\":{\"model.a\":\"../../etc/passwd\"}}"
                       : "{\"metadata\":{\"total_size\":30},\"weight_map\":{\"model.a\":\"model-00001-of-00002."
                         "safetensors\",\"model.b\":\"model-00001-of-00002.safetensors\",\"model.c\":\"model-"
                         "00002-of-00002.safetensors\"}}";
    char *ip = path_join(dir, "model.safetensors.index.json");
    file_write_atomic(ip, index, strlen(index));
    free(ip);
    free(p1);
    free(p2);
}

static void test_sharded(void) {
    char *dir = tpath("sharded");
    write_shards(dir, 0);
    st_model *m = st_open(dir);
    CHECK(m, "open sharded: %s", err_get());
    if (m) {
        CHECK(st_count(m) == 3, "3 tensors, got %d", st_count(m));
        int64_t s3[1] = {3};
        float *c = st_load_f32(m, "model.c", 1, s3);
        CHECK(c && c[0] == 7 && c[2] == 9, "shard 2 tensor");
        free(c);
        const st_tensor *a = st_find(m, "model.a");
        CHECK(a && contains(a->file, "model-00001-of-00002.safetensors"), "file of model.a");
        CHECK(st_meta(m, "format") && !strcmp(st_meta(m, "format"), "pt"), "shard meta");
        CHECK(st_meta(m, "shard") && !strcmp(st_meta(m, "shard"), "2"), "second shard meta");
        CHECK(st_meta(m, "total_size") && !strcmp(st_meta(m, "total_size"), "30"), "index meta");
    }
    st_close(m);
    // a folder with model.safetensors
    char *single = tpath("single");
    mkdir_p(single);
    char *f = path_join(single, "model.safetensors");
    float v = 1;
    int64_t s1[1] = {1};
    st_writer *w = st_writer_new();
    st_writer_add_f32(w, "w", ST_F32, 1, s1, &v);
    st_writer_write(w, f);
    st_writer_free(w);
    m = st_open(single);
    CHECK(m && st_count(m) == 1 && !strcmp(st_get(m, 0)->file, f), "folder with model.safetensors: %s",
          err_get());
    st_close(m);
    free(f);
    free(single);
    free(dir);
}

static void test_reject_sharded(void) {
    char *d = tpath("sh_missing_shard");
    write_shards(d, 1);
    EXPECT_REJECT(d, "model.safetensors.index.json", "model-00002-of-00002.safetensors", "'model.c'",
                  "does not exist");
    free(d);
    d = tpath("sh_missing_tensor");
    write_shards(d, 2);
    EXPECT_REJECT(d, "model.safetensors.index.json", "model-00002-of-00002.safetensors", "'model.c'",
                  "no such tensor");
    free(d);
    d = tpath("sh_twice");
    write_shards(d, 3);
    EXPECT_REJECT(d, "'model.c'", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
    free(d);
    d = tpath("sh_dup_key");
    write_shards(d, 4);
    EXPECT_REJECT(d, "model.safetensors.index.json", "'model.a'", "twice");
    free(d);
    d = tpath("sh_escape");
    write_shards(d, 5);
    EXPECT_REJECT(d, "model.safetensors.index.json", "'model.a'");
    free(d);
    d = tpath("sh_empty_dir");
    mkdir_p(d);
    EXPECT_REJECT(d, "sh_empty_dir", "model.safetensors");
    free(d);
    d = tpath("sh_bad_index");
    mkdir_p(d);
    char *ip = path_join(d, "model.safetensors.index.json");
    file_write_atomic(ip, "{\"weight_map\": [", 16);
    EXPECT_REJECT(d, "model.safetensors.index.json");
    free(ip);
    free(d);
}

// --- one crafted file per rejection

#define T1(dt, shape, off) "{\"t.w\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}}"

static void test_reject_short_file(void) {
    char *p = tpath("short.safetensors");
    file_write_atomic(p, "\x10\0\0", 3);
    EXPECT_REJECT(p, "short.safetensors", "3 bytes");
    file_write_atomic(p, "", 0);
    EXPECT_REJECT(p, "short.safetensors", "0 bytes");
    free(p);
}

static void test_reject_header_too_large(void) {
    char *p = tpath("huge_header.safetensors");
    uint64_t n = 100000001;
    unsigned char buf[16] = {0};
    memcpy(buf, &n, 8);
    memcpy(buf + 8, "{}      ", 8);
    file_write_atomic(p, buf, 16);
    EXPECT_REJECT(p, "huge_header.safetensors", "100000001", "100000000");
    free(p);
}

static void test_reject_header_past_eof(void) {
    char *p = tpath("header_eof.safetensors");
    uint64_t n = 64;
    unsigned char buf[16] = {0};
    memcpy(buf, &n, 8);
    memcpy(buf + 8, "{\"a\":{\"", 7);
    file_write_atomic(p, buf, 15);
    EXPECT_REJECT(p, "header_eof.safetensors", "header length 64", "15 bytes");
    free(p);
}

static void test_reject_bad_json(void) {
    char *p = write_raw("bad_json.safetensors", "{\"t.w\":{\"dtype\":\"F32\",", 0);
    EXPECT_REJECT(p, "bad_json.safetensors", "not valid JSON");
    free(p);
    p = write_raw("trailing_json.safetensors", "{} x", 0);
    EXPECT_REJECT(p, "trailing_json.safetensors", "not valid JSON");
    free(p);
    p = write_raw("bad_utf8.safetensors", "{\"t\xff\":{}}", 0);
    EXPECT_REJECT(p, "bad_utf8.safetensors", "UTF-8");
    free(p);
}

static void test_reject_not_object(void) {
    char *p = write_raw("array.safetensors", "[1, 2, 3]", 0);
    EXPECT_REJECT(p, "array.safetensors", "not a JSON object");
    free(p);
    p = write_raw("entry_not_object.safetensors", "{\"t.w\": 5}", 0);
    EXPECT_REJECT(p, "entry_not_object.safetensors", "'t.w'");
    free(p);
}

static void test_reject_metadata(void) {
    char *p = write_raw("meta_num.safetensors", "{\"__metadata__\":{\"format\":1}}", 0);
    EXPECT_REJECT(p, "meta_num.safetensors", "'format'", "string");
    free(p);
    p = write_raw("meta_twice.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", 0);
    EXPECT_REJECT(p, "meta_twice.safetensors", "__metadata__", "twice");
    free(p);
}

static void test_reject_unknown_dtype(void) {
    char *p = write_raw("dtype.safetensors", T1("Q4_0", "[2]", "[0,4]"), 4);
    EXPECT_REJECT(p, "dtype.safetensors", "'t.w'", "Q4_0");
    free(p);
    p = write_raw("dtype_missing.safetensors", "{\"t.w\":{\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    EXPECT_REJECT(p, "dtype_missing.safetensors", "'t.w'", "dtype");
    free(p);
}

static void test_reject_bad_shape(void) {
    const char *shapes[] = {"[2,-1]", "[1.5]", "[\"2\"]", "5", "[1,1,1,1,1,1,1,1,1]"};
    for (int i = 0; i < 5; i++) {
        char h[256], name[64];
        snprintf(h, sizeof h, "{\"t.w\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[0,4]}}", shapes[i]);
        snprintf(name, sizeof name, "shape%d.safetensors", i);
        char *p = write_raw(name, h, 4);
        EXPECT_REJECT(p, name, "'t.w'", "shape");
        free(p);
    }
}

static void test_reject_shape_overflow(void) {
    char *p = write_raw("overflow.safetensors", T1("F32", "[4294967296,4294967296,16]", "[0,4]"), 4);
    EXPECT_REJECT(p, "overflow.safetensors", "'t.w'", "overflow");
    free(p);
    // numel fits in 64 bits, numel × 8 bytes does not
    p = write_raw("overflow_bytes.safetensors", T1("F64", "[4294967296,1073741824]", "[0,4]"), 4);
    EXPECT_REJECT(p, "overflow_bytes.safetensors", "'t.w'", "overflow");
    free(p);
}

static void test_reject_bad_offsets(void) {
    char *p = write_raw("offsets_form.safetensors", T1("F32", "[1]", "[0]"), 4);
    EXPECT_REJECT(p, "offsets_form.safetensors", "'t.w'", "data_offsets");
    free(p);
    p = write_raw("offsets_neg.safetensors", T1("F32", "[1]", "[-4,0]"), 4);
    EXPECT_REJECT(p, "offsets_neg.safetensors", "'t.w'", "data_offsets");
    free(p);
    p = write_raw("offsets_reversed.safetensors", T1("F32", "[0]", "[4,0]"), 4);
    EXPECT_REJECT(p, "offsets_reversed.safetensors", "'t.w'", "end before they begin");
    free(p);
}

static void test_reject_size_mismatch(void) {
    char *p = write_raw("size.safetensors", T1("BF16", "[3,4]", "[0,48]"), 48);
    EXPECT_REJECT(p, "size.safetensors", "'t.w'", "needs 24 bytes", "hold 48");
    free(p);
}

static void test_reject_gap(void) {
    char *p = write_raw("gap.safetensors",
                        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
                        16);
    EXPECT_REJECT(p, "gap.safetensors", "'b'", "'a'", "gap of 4 bytes");
    free(p);
    p = write_raw("gap_start.safetensors", T1("F32", "[1]", "[4,8]"), 8);
    EXPECT_REJECT(p, "gap_start.safetensors", "'t.w'", "start at 0");
    free(p);
}

static void test_reject_overlap(void) {
    char *p = write_raw("overlap.safetensors",
                        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                        12);
    EXPECT_REJECT(p, "overlap.safetensors", "'b'", "'a'", "overlapping");
    free(p);
}

static void test_reject_truncated(void) {
    char *p = write_raw("truncated.safetensors",
                        "{\"model.layers.3.self_attn.q_proj.weight\":{\"dtype\":\"F32\",\"shape\":[4,4],"
                        "\"data_offsets\":[0,64]}}",
                        40);
    EXPECT_REJECT(p, "truncated.safetensors", "'model.layers.3.self_attn.q_proj.weight'", "ends at byte 64",
                  "data section has 40 bytes", "truncated");
    free(p);
}

static void test_reject_trailing(void) {
    char *p = write_raw("trailing.safetensors", T1("F32", "[1]", "[0,4]"), 12);
    EXPECT_REJECT(p, "trailing.safetensors", "'t.w'", "12 bytes", "8 trailing bytes");
    free(p);
}

static void test_reject_duplicate(void) {
    char *p = write_raw("dup.safetensors",
                        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                        8);
    EXPECT_REJECT(p, "dup.safetensors", "'w'", "twice");
    free(p);
}

static void test_reject_missing_file(void) {
    EXPECT_REJECT("/nonexistent/model.safetensors", "/nonexistent/model.safetensors", "cannot open");
}

// --- conversions: exhaustive self-consistency (torch agreement is in the fixture tests)

static void test_half_exhaustive(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_f16_to_f32((uint16_t)h);
        uint16_t back = st_f32_to_f16(f);
        int isnan_h = ((h >> 10) & 0x1F) == 31 && (h & 0x3FF);
        if (!isnan_h && back != h) bad++;
        float g = st_bf16_to_f32((uint16_t)h);
        int isnan_b = ((h >> 7) & 0xFF) == 0xFF && (h & 0x7F);
        if (!isnan_b && st_f32_to_bf16(g) != h) bad++;
    }
    CHECK(!bad, "%d half/bf16 values do not round-trip", bad);
}

int main(void) {
    tmp = test_tmpdir("safetensors");
    RUN(test_torch_fixture_read);
    RUN(test_torch_fixture_write);
    RUN(test_roundtrip);
    RUN(test_writer_errors);
    RUN(test_unaligned);
    RUN(test_sharded);
    RUN(test_half_exhaustive);
    RUN(test_reject_short_file);
    RUN(test_reject_header_too_large);
    RUN(test_reject_header_past_eof);
    RUN(test_reject_bad_json);
    RUN(test_reject_not_object);
    RUN(test_reject_metadata);
    RUN(test_reject_unknown_dtype);
    RUN(test_reject_bad_shape);
    RUN(test_reject_shape_overflow);
    RUN(test_reject_bad_offsets);
    RUN(test_reject_size_mismatch);
    RUN(test_reject_gap);
    RUN(test_reject_overlap);
    RUN(test_reject_truncated);
    RUN(test_reject_trailing);
    RUN(test_reject_duplicate);
    RUN(test_reject_missing_file);
    RUN(test_reject_sharded);
    return test_summary();
}
