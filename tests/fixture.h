// fixture.h — reads golden fixtures written by tests/fixtures_io.py: a safetensors file of
// F32 / I32 / I64 tensors (header: u64 length + JSON, then raw little-endian bytes). Kept
// independent of model/safetensors so the harness does not depend on the code under test.
//
//   fixture *fx = fixture_load("tests/fixtures/ops_linear.safetensors");
//   const float *x = fixture_f32(fx, "x", &n);   // NULL when missing
//
// Every problem (file missing or unreadable, bad header, tensor missing, wrong dtype) prints a
// FAIL line and counts as a failure of the running test case (tests/test.h test_fail), so a
// caller that then returns early never passes silently.
#ifndef LORAC_FIXTURE_H
#define LORAC_FIXTURE_H

#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

typedef struct fixture {
    char *path;
    unsigned char *buf;   // whole file
    size_t len;
    cJSON *header;
    size_t data_off;
    void **copies;        // aligned copies handed out for misaligned tensors
    int ncopies;
} fixture;

static inline void fixture_free(fixture *f);

static inline fixture *fixture_load(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { test_fail("fixture %s: cannot open (run `make fixtures`)", path); return NULL; }
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    fixture *f = calloc(1, sizeof *f);
    f->buf = malloc((size_t)len + 1);
    f->len = (size_t)len;
    if (len < 8 || fread(f->buf, 1, (size_t)len, fp) != (size_t)len) {
        fclose(fp);
        test_fail("fixture %s: short read", path);
        free(f->buf);
        free(f);
        return NULL;
    }
    fclose(fp);
    uint64_t hl;
    memcpy(&hl, f->buf, 8);
    if (hl > (uint64_t)len - 8) {
        test_fail("fixture %s: header of %llu bytes in a %ld-byte file", path, (unsigned long long)hl, len);
        free(f->buf);
        free(f);
        return NULL;
    }
    char *h = malloc(hl + 1);
    memcpy(h, f->buf + 8, hl);
    h[hl] = 0;
    f->header = cJSON_Parse(h);
    free(h);
    f->data_off = 8 + hl;
    f->path = strdup(path);
    if (!f->header) {
        test_fail("fixture %s: bad header", path);
        fixture_free(f);
        return NULL;
    }
    return f;
}

// Raw pointer to a tensor's bytes; *numel and (optional) shape/ndim filled.
static inline const void *fixture_raw(fixture *f, const char *name, const char *dtype, long *numel,
                                      long *shape, int *ndim) {
    if (!f) { test_fail("fixture not loaded: no tensor '%s'", name); return NULL; }
    cJSON *e = cJSON_GetObjectItemCaseSensitive(f->header, name);
    if (!e) { test_fail("fixture %s: no tensor '%s'", f->path, name); return NULL; }
    const char *dt = cJSON_GetStringValue(cJSON_GetObjectItem(e, "dtype"));
    if (!dt || strcmp(dt, dtype)) {
        test_fail("fixture %s: '%s' is %s, want %s", f->path, name, dt ? dt : "(no dtype)", dtype);
        return NULL;
    }
    cJSON *sh = cJSON_GetObjectItem(e, "shape");
    long n = 1;
    int k = 0;
    cJSON *d;
    cJSON_ArrayForEach(d, sh) {
        if (shape) shape[k] = (long)d->valuedouble;
        k++;
        n *= (long)d->valuedouble;
    }
    if (ndim) *ndim = k;
    if (numel) *numel = n;
    cJSON *off = cJSON_GetObjectItem(e, "data_offsets");
    size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, b = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    const unsigned char *src = f->buf + f->data_off + a;
    if ((uintptr_t)src % 8 == 0) return src;
    // tensors are packed back to back: give an aligned copy (freed by fixture_free)
    void *copy = malloc(b - a + 8);
    memcpy(copy, src, b - a);
    f->copies = realloc(f->copies, (size_t)(f->ncopies + 1) * sizeof *f->copies);
    f->copies[f->ncopies++] = copy;
    return copy;
}

static inline const float *fixture_f32(fixture *f, const char *name, long *numel) {
    return fixture_raw(f, name, "F32", numel, NULL, NULL);
}
static inline const int32_t *fixture_i32(fixture *f, const char *name, long *numel) {
    return fixture_raw(f, name, "I32", numel, NULL, NULL);
}
// a scalar stored in the header's __metadata__ (string) as a double, or def when absent
static inline double fixture_meta(fixture *f, const char *key, double def) {
    if (!f) return def;
    cJSON *m = cJSON_GetObjectItem(f->header, "__metadata__");
    cJSON *v = m ? cJSON_GetObjectItem(m, key) : NULL;
    return v && cJSON_IsString(v) ? atof(v->valuestring) : def;
}
static inline void fixture_free(fixture *f) {
    if (!f) return;
    for (int i = 0; i < f->ncopies; i++) free(f->copies[i]);
    free(f->copies);
    cJSON_Delete(f->header);
    free(f->buf);
    free(f->path);
    free(f);
}

#endif
