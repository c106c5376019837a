// safetensors.c — mmap reader with full header validation, sharded folders, fp32
// conversion, and an atomic streaming writer (see safetensors.h).
#define _GNU_SOURCE
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

// --- dtypes

static const struct {
    const char *name;
    int size;
} dtype_info[ST_NDTYPES] = {
    [ST_F32] = {"F32", 4},   [ST_F16] = {"F16", 2},   [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},   [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},   [ST_I8] = {"I8", 1},     [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1}, [ST_U16] = {"U16", 2},   [ST_U32] = {"U32", 4},
    [ST_U64] = {"U64", 8},   [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1},
};

const char *st_dtype_name(st_dtype d) {
    return (unsigned)d < ST_NDTYPES ? dtype_info[d].name : "?";
}
int st_dtype_size(st_dtype d) { return (unsigned)d < ST_NDTYPES ? dtype_info[d].size : 0; }

int st_dtype_parse(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(s, dtype_info[i].name)) {
            *out = (st_dtype)i;
            return 0;
        }
    return -1;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float st_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t st_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;   // torch: any NaN -> canonical quiet NaN
    u += 0x7FFFu + ((u >> 16) & 1u);                     // round to nearest, ties to even
    return (uint16_t)(u >> 16);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0) {   // zero or subnormal: m · 2^-24, exact in fp32
        float v = (float)m * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (e == 31) return bits_f32(sign | 0x7F800000u | (m << 13));
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t st_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return sign | 0x7E00u;            // NaN
    if (a >= 0x477FF000u) return sign | 0x7C00u;           // >= 65520 rounds to inf
    if (a >= 0x38800000u) {                                // normal half (>= 2^-14)
        uint32_t r = a - 0x38000000u;                      // rebias 127 -> 15
        r += 0xFFFu + ((r >> 13) & 1u);
        return sign | (uint16_t)(r >> 13);
    }
    if (a < 0x33000000u) return sign;                      // <= 2^-25: rounds to zero
    uint32_t e = a >> 23, m = (a & 0x7FFFFFu) | 0x800000u;
    int shift = 126 - (int)e;                              // 14..24: value / 2^-24 = m >> shift
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q;
}

// --- reader

typedef struct st_file {
    char *path;
    unsigned char *map;   // whole file (PROT_READ)
    size_t size;
} st_file;

struct st_model {
    char *path;
    st_file *files;
    int nfiles;
    st_tensor *t;   // sorted by name
    int n, cap;
    char **meta_k, **meta_v;
    int nmeta;
};

int64_t st_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

// A JSON number that is a non-negative integer exactly representable (<= 2^53).
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

// A short rendering of a JSON value for messages.
static void json_brief(const cJSON *v, char *buf, size_t cap) {
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    snprintf(buf, cap, "%s", s ? s : "nothing");
    if (strlen(buf) >= cap - 1 && cap > 4) strcpy(buf + cap - 4, "...");
    free(s);
}

static int utf8_valid(const unsigned char *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + (size_t)len > n) goto fail;
        for (int k = 1; k < len; k++)
            if ((s[i + (size_t)k] & 0xC0) != 0x80) goto fail;
        if (len == 2 && c < 0xC2) goto fail;                                   // overlong
        if (len == 3) {
            unsigned c1 = s[i + 1];
            if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)) goto fail;   // overlong, surrogate
        }
        if (len == 4) {
            unsigned c1 = s[i + 1];
            if ((c == 0xF0 && c1 < 0x90) || c > 0xF4 || (c == 0xF4 && c1 >= 0x90)) goto fail;
        }
        i += (size_t)len;
        continue;
    fail:
        *bad = i;
        return 0;
    }
    return 1;
}

static void model_add_meta(st_model *m, const char *k, const char *v) {
    for (int i = 0; i < m->nmeta; i++)
        if (!strcmp(m->meta_k[i], k)) return;   // first one wins
    m->meta_k = xrealloc(m->meta_k, sizeof(char *) * (size_t)(m->nmeta + 1));
    m->meta_v = xrealloc(m->meta_v, sizeof(char *) * (size_t)(m->nmeta + 1));
    m->meta_k[m->nmeta] = xstrdup(k);
    m->meta_v[m->nmeta] = xstrdup(v);
    m->nmeta++;
}

typedef struct {   // a tensor entry during validation
    const char *name;
    uint64_t begin, end;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}
static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Parses and validates one tensor entry of the header into *t (data pointer not yet set).
static int parse_entry(const char *path, const cJSON *e, st_tensor *t, span *sp) {
    const char *name = e->string;
    char buf[256];
    if (!cJSON_IsObject(e))
        return err_set("%s: tensor '%s': expected an object with dtype, shape and data_offsets", path,
                       name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) {
        json_brief(dt, buf, sizeof buf);
        return err_set("%s: tensor '%s': 'dtype' must be a string such as \"BF16\", found %s", path,
                       name, buf);
    }
    if (st_dtype_parse(dt->valuestring, &t->dtype) != 0)
        return err_set("%s: tensor '%s': unknown dtype '%s' (expected one of F32, F16, BF16, F64, I64, "
                       "I32, I16, I8, U8, BOOL, U16, U32, U64, F8_E5M2, F8_E4M3)",
                       path, name, dt->valuestring);
    if (!cJSON_IsArray(sh)) {
        json_brief(sh, buf, sizeof buf);
        return err_set("%s: tensor '%s': 'shape' must be a list of non-negative integers, found %s",
                       path, name, buf);
    }
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAXDIM)
        return err_set("%s: tensor '%s': shape has %d dimensions, at most %d are supported", path, name,
                       nd, ST_MAXDIM);
    t->ndim = nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < nd; i++) {
        const cJSON *d = cJSON_GetArrayItem(sh, i);
        uint64_t v;
        if (json_u64(d, &v) != 0) {
            json_brief(d, buf, sizeof buf);
            return err_set("%s: tensor '%s': shape[%d] is %s, expected a non-negative integer", path,
                           name, i, buf);
        }
        t->shape[i] = (int64_t)v;
        if (__builtin_mul_overflow(numel, v, &numel)) overflow = 1;
    }
    uint64_t nbytes = 0;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)st_dtype_size(t->dtype), &nbytes) ||
        nbytes > (uint64_t)INT64_MAX)
        return err_set("%s: tensor '%s': shape %s of %s overflows 64-bit sizes (corrupt header?)", path,
                       name, shape_str(buf, sizeof buf, t->ndim, t->shape), dt->valuestring);
    uint64_t b = 0, en = 0;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        json_u64(cJSON_GetArrayItem(off, 0), &b) != 0 || json_u64(cJSON_GetArrayItem(off, 1), &en) != 0) {
        json_brief(off, buf, sizeof buf);
        return err_set("%s: tensor '%s': 'data_offsets' must be [begin, end] (non-negative integers), "
                       "found %s",
                       path, name, buf);
    }
    if (en < b)
        return err_set("%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, name,
                       (unsigned long long)b, (unsigned long long)en);
    if (en - b != nbytes)
        return err_set("%s: tensor '%s': shape %s of %s needs %llu bytes but data_offsets [%llu, %llu] "
                       "hold %llu",
                       path, name, shape_str(buf, sizeof buf, t->ndim, t->shape), dt->valuestring,
                       (unsigned long long)nbytes, (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)(en - b));
    t->nbytes = (size_t)nbytes;
    sp->name = name;
    sp->begin = b;
    sp->end = en;
    return 0;
}

// Offsets sorted by (begin, end) must tile [0, data_size) exactly.
static int check_tiling(const char *path, span *sp, int n, size_t data_size) {
    qsort(sp, (size_t)n, sizeof *sp, span_cmp);
    uint64_t at = 0;
    const char *prev = NULL;
    for (int i = 0; i < n; i++) {
        if (sp[i].begin > at) {
            if (!prev)
                return err_set("%s: tensor '%s' starts at byte %llu but the first tensor must start at "
                               "0 (a gap of %llu bytes; offsets must be contiguous)",
                               path, sp[i].name, (unsigned long long)sp[i].begin,
                               (unsigned long long)sp[i].begin);
            return err_set("%s: tensor '%s' starts at byte %llu but the previous tensor '%s' ends at "
                           "byte %llu (a gap of %llu bytes; offsets must be contiguous)",
                           path, sp[i].name, (unsigned long long)sp[i].begin, prev,
                           (unsigned long long)at, (unsigned long long)(sp[i].begin - at));
        }
        if (sp[i].begin < at)
            return err_set("%s: tensor '%s' starts at byte %llu, inside the previous tensor '%s' which "
                           "ends at byte %llu (overlapping data_offsets)",
                           path, sp[i].name, (unsigned long long)sp[i].begin, prev,
                           (unsigned long long)at);
        if (sp[i].end > data_size)
            return err_set("%s: tensor '%s' ends at byte %llu but the data section has %zu bytes "
                           "(truncated download?)",
                           path, sp[i].name, (unsigned long long)sp[i].end, data_size);
        at = sp[i].end;
        prev = sp[i].name;
    }
    if (at != data_size)
        return err_set("%s: the data section has %zu bytes but the tensors end at byte %llu%s%s%s (%llu "
                       "trailing bytes; corrupt file?)",
                       path, data_size, (unsigned long long)at, prev ? " (last tensor '" : "",
                       prev ? prev : "", prev ? "')" : "", (unsigned long long)(data_size - at));
    return 0;
}

static void model_push(st_model *m, const st_tensor *t) {
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->t = xrealloc(m->t, sizeof *m->t * (size_t)m->cap);
    }
    m->t[m->n++] = *t;
}

// Maps and validates one file, appending its tensors to m. Every check runs before any
// tensor is appended, so m never holds a half-validated file.
// long: the header's checks run in one pass (size, JSON, each tensor's dtype, shape, offsets,
// overlap, coverage) so that nothing is appended before all of them hold; one function keeps that
// all-or-nothing order visible.
static int open_file(st_model *m, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set("%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return err_set("%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set("%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return err_set("%s: the file has %zu bytes, fewer than the 8-byte header length (empty or "
                       "truncated file?)",
                       path, size);
    }
    unsigned char *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return err_set("%s: cannot map: %s", path, strerror(errno));

    int rc = -1;
    cJSON *root = NULL;
    char *hdr = NULL;
    st_tensor *ts = NULL;
    span *sp = NULL;
    int nt = 0;
    uint64_t hlen;
    memcpy(&hlen, map, 8);   // little-endian hosts only (x86-64, aarch64)
    if (hlen > ST_MAX_HEADER) {
        err_set("%s: header length %llu exceeds the %llu-byte limit (not a safetensors file?)", path,
                (unsigned long long)hlen, ST_MAX_HEADER);
        goto done;
    }
    if (hlen > size - 8) {
        err_set("%s: header length %llu runs past the end of the file (%zu bytes; truncated download?)",
                path, (unsigned long long)hlen, size);
        goto done;
    }
    size_t bad;
    if (!utf8_valid(map + 8, (size_t)hlen, &bad)) {
        err_set("%s: header is not valid UTF-8 (byte %zu of the header)", path, bad);
        goto done;
    }
    hdr = xmalloc((size_t)hlen + 1);   // cJSON wants a terminated copy
    memcpy(hdr, map + 8, (size_t)hlen);
    hdr[hlen] = 0;
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (root) {   // only whitespace (the padding) may follow the JSON value
        for (const char *p = end; p < hdr + hlen; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                cJSON_Delete(root);
                root = NULL;
                end = p;
                break;
            }
    }
    if (!root) {
        const char *ep = end ? end : cJSON_GetErrorPtr();
        size_t at = ep && ep >= hdr && ep <= hdr + hlen ? (size_t)(ep - hdr) : 0;
        if (json_max_depth(hdr, (size_t)hlen) >= CJSON_NESTING_LIMIT)
            err_set("%s: header JSON nests deeper than %d levels (the limit; not a safetensors file?)", path,
                    CJSON_NESTING_LIMIT);
        else
            err_set("%s: header is not valid JSON (error near byte %zu of the header; not a safetensors "
                    "file?)",
                    path, at);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        err_set("%s: header is not a JSON object", path);
        goto done;
    }
    int nent = cJSON_GetArraySize(root);
    ts = xcalloc((size_t)nent + 1, sizeof *ts);
    sp = xcalloc((size_t)nent + 1, sizeof *sp);
    const cJSON *meta = NULL;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (meta) {
                err_set("%s: '__metadata__' appears twice in the header", path);
                goto done;
            }
            meta = e;
            if (!cJSON_IsObject(e)) {
                err_set("%s: '__metadata__' must be an object of strings", path);
                goto done;
            }
            for (const cJSON *k = e->child; k; k = k->next)
                if (!cJSON_IsString(k)) {
                    err_set("%s: __metadata__ key '%s': expected a string value", path, k->string);
                    goto done;
                }
            continue;
        }
        if (parse_entry(path, e, &ts[nt], &sp[nt]) != 0) goto done;
        ts[nt].name = e->string;   // borrowed until copied below
        nt++;
    }
    // duplicate names (JSON objects may repeat keys; cJSON keeps them all)
    {
        const char **names = xmalloc(sizeof(char *) * ((size_t)nt + 1));
        for (int i = 0; i < nt; i++) names[i] = ts[i].name;
        qsort(names, (size_t)nt, sizeof *names, name_cmp);
        for (int i = 1; i < nt; i++)
            if (!strcmp(names[i], names[i - 1])) {
                err_set("%s: tensor '%s' appears twice in the header (corrupt file?)", path, names[i]);
                free(names);
                goto done;
            }
        free(names);
    }
    size_t data_off = 8 + (size_t)hlen;
    // spans hold the names in file order; keep begin offsets per tensor before sorting
    for (int i = 0; i < nt; i++) ts[i].data = map + data_off + sp[i].begin;
    if (check_tiling(path, sp, nt, size - data_off) != 0) goto done;

    // all checks passed: adopt the file
    m->files = xrealloc(m->files, sizeof *m->files * (size_t)(m->nfiles + 1));
    st_file *f = &m->files[m->nfiles++];
    f->path = xstrdup(path);
    f->map = map;
    f->size = size;
    map = NULL;
    for (int i = 0; i < nt; i++) {
        ts[i].name = xstrdup(ts[i].name);
        ts[i].file = f->path;
        model_push(m, &ts[i]);
    }
    if (meta)
        for (const cJSON *k = meta->child; k; k = k->next) model_add_meta(m, k->string, k->valuestring);
    rc = 0;
done:
    if (map) munmap(map, size);
    cJSON_Delete(root);
    free(hdr);
    free(ts);
    free(sp);
    return rc;
}

static int tensor_cmp(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

// Sorts by name; a name found twice (across shards) is an error.
static int model_finish(st_model *m) {
    qsort(m->t, (size_t)m->n, sizeof *m->t, tensor_cmp);
    for (int i = 1; i < m->n; i++)
        if (!strcmp(m->t[i].name, m->t[i - 1].name))
            return err_set("%s: tensor '%s' is stored twice: in %s and in %s", m->path, m->t[i].name,
                           m->t[i - 1].file, m->t[i].file);
    return 0;
}

static int shard_name_ok(const char *s) {
    if (!s[0] || s[0] == '/') return 0;
    if (!strcmp(s, "..") || !strncmp(s, "../", 3) || strstr(s, "/../")) return 0;
    size_t n = strlen(s);
    return !(n >= 3 && !strcmp(s + n - 3, "/.."));
}

static int open_index(st_model *m, const char *dir, const char *index_path) {
    char *txt = file_read_all(index_path, NULL);
    if (!txt) return -1;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    int rc = -1;
    const char **shards = NULL;
    int nshards = 0;
    if (!root || !cJSON_IsObject(root)) {
        err_set("%s: not a valid JSON object (corrupt download?)", index_path);
        goto done;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child) {
        err_set("%s: missing or empty object 'weight_map' (expected {tensor name: shard file})",
                index_path);
        goto done;
    }
    int nw = cJSON_GetArraySize(wm);
    shards = xmalloc(sizeof(char *) * (size_t)nw);
    const char **names = xmalloc(sizeof(char *) * (size_t)nw);
    int k = 0;
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            err_set("%s: weight_map tensor '%s': expected the name of a shard file inside the folder",
                    index_path, e->string);
            free(names);
            goto done;
        }
        names[k++] = e->string;
        int seen = 0;
        for (int i = 0; i < nshards && !seen; i++) seen = !strcmp(shards[i], e->valuestring);
        if (!seen) shards[nshards++] = e->valuestring;
    }
    qsort(names, (size_t)nw, sizeof *names, name_cmp);
    for (int i = 1; i < nw; i++)
        if (!strcmp(names[i], names[i - 1])) {
            err_set("%s: weight_map lists tensor '%s' twice", index_path, names[i]);
            free(names);
            goto done;
        }
    free(names);
    for (int i = 0; i < nshards; i++) {
        char *p = path_join(dir, shards[i]);
        if (!file_exists(p)) {
            const char *first = NULL;
            for (const cJSON *e = wm->child; e && !first; e = e->next)
                if (!strcmp(e->valuestring, shards[i])) first = e->string;
            err_set("%s: tensor '%s' is mapped to shard '%s', which does not exist (%s; incomplete "
                    "download?)",
                    index_path, first, shards[i], p);
            free(p);
            goto done;
        }
        int r = open_file(m, p);
        free(p);
        if (r != 0) goto done;
    }
    if (model_finish(m) != 0) goto done;
    for (const cJSON *e = wm->child; e; e = e->next) {
        const st_tensor *t = st_find(m, e->string);
        char *want = path_join(dir, e->valuestring);
        int ok = t && !strcmp(t->file, want);
        if (!ok)
            err_set(t ? "%s: tensor '%s' is mapped to shard '%s' but is stored in %s"
                      : "%s: tensor '%s' is mapped to shard '%s' but that shard has no such tensor%s",
                    index_path, e->string, e->valuestring, t ? t->file : " (incomplete download?)");
        free(want);
        if (!ok) goto done;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (cJSON_IsObject(meta))
        for (const cJSON *e = meta->child; e; e = e->next) {
            char num[64];
            if (cJSON_IsString(e)) model_add_meta(m, e->string, e->valuestring);
            else if (cJSON_IsNumber(e)) {
                snprintf(num, sizeof num, "%.17g", e->valuedouble);
                model_add_meta(m, e->string, num);
            }
        }
    rc = 0;
done:
    free(shards);
    cJSON_Delete(root);
    return rc;
}

st_model *st_open(const char *path) {
    st_model *m = xcalloc(1, sizeof *m);
    m->path = xstrdup(path);
    int rc;
    if (dir_exists(path)) {
        char *single = path_join(path, "model.safetensors");
        char *index = path_join(path, "model.safetensors.index.json");
        if (file_exists(single)) rc = open_file(m, single) != 0 ? -1 : model_finish(m);
        else if (file_exists(index)) rc = open_index(m, path, index);
        else
            rc = err_set("%s: no model.safetensors or model.safetensors.index.json in this folder (is "
                         "it a Hugging Face model folder?)",
                         path);
        free(single);
        free(index);
    } else {
        rc = open_file(m, path) != 0 ? -1 : model_finish(m);
    }
    if (rc != 0) {
        st_close(m);
        return NULL;
    }
    return m;
}

void st_close(st_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->t[i].name);
    for (int i = 0; i < m->nfiles; i++) {
        munmap(m->files[i].map, m->files[i].size);
        free(m->files[i].path);
    }
    for (int i = 0; i < m->nmeta; i++) {
        free(m->meta_k[i]);
        free(m->meta_v[i]);
    }
    free(m->meta_k);
    free(m->meta_v);
    free(m->files);
    free(m->t);
    free(m->path);
    free(m);
}

int st_count(const st_model *m) { return m->n; }
const char *st_path(const st_model *m) { return m->path; }

const st_tensor *st_get(const st_model *m, int i) {
    AG_ASSERT(i >= 0 && i < m->n, "st_get(%d) of %d tensors", i, m->n);
    return &m->t[i];
}

const st_tensor *st_find(const st_model *m, const char *name) {
    int lo = 0, hi = m->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(m->t[mid].name, name);
        if (!c) return &m->t[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const char *st_meta(const st_model *m, const char *key) {
    for (int i = 0; i < m->nmeta; i++)
        if (!strcmp(m->meta_k[i], key)) return m->meta_v[i];
    return NULL;
}

int st_read_f32(const st_tensor *t, float *dst) {
    int64_t n = st_numel(t);
    const unsigned char *src = t->data;
    switch (t->dtype) {
    case ST_F32:
        memcpy(dst, src, (size_t)n * 4);
        return 0;
    case ST_BF16:
#pragma omp parallel for schedule(static) if (n > (1 << 18))
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = st_bf16_to_f32(h);
        }
        return 0;
    case ST_F16:
#pragma omp parallel for schedule(static) if (n > (1 << 18))
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = st_f16_to_f32(h);
        }
        return 0;
    case ST_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default:
        return err_set("%s: tensor '%s' has dtype %s, which cannot be read as floating point (expected "
                       "F32, F16, BF16 or F64)",
                       t->file, t->name, st_dtype_name(t->dtype));
    }
}

int st_check_shape(const st_model *m, const char *name, int ndim, const int64_t *expect) {
    const st_tensor *t = st_find(m, name);
    if (!t)
        return err_set("%s: no tensor '%s' (the model has %d tensors; is this the right model folder?)",
                       m->path, name, m->n);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == expect[i];
    if (!same) {
        char a[256], b[256];
        return err_set("%s: tensor '%s': expected shape %s (from config.json), found %s", t->file, name,
                       shape_str(a, sizeof a, ndim, expect), shape_str(b, sizeof b, t->ndim, t->shape));
    }
    return 0;
}

// Drops the tensor's pages of the read-only file mapping from this process (they stay in the
// page cache) once the caller holds a converted copy, so loading a model does not hold the
// file's bytes and the loaded weights resident at once (peak RSS ~ weights, not + file).
static void drop_mapped(const st_tensor *t) {
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)t->data & ~(pg - 1);
    uintptr_t e = ((uintptr_t)t->data + (uintptr_t)(st_numel(t) * st_dtype_size(t->dtype)) + pg - 1) & ~(pg - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

const void *st_map_as(const st_model *m, const char *name, st_dtype dtype, int ndim, const int64_t *expect) {
    const st_tensor *t = st_find(m, name);
    if (!t || t->dtype != dtype || st_check_shape(m, name, ndim, expect) != 0) return NULL;
    if ((uintptr_t)t->data % (uintptr_t)st_dtype_size(dtype)) return NULL;
    return t->data;
}

int st_owns(const st_model *m, const void *p) {
    for (int i = 0; m && p && i < m->nfiles; i++)
        if ((const unsigned char *)p >= m->files[i].map && (const unsigned char *)p < m->files[i].map + m->files[i].size)
            return 1;
    return 0;
}

// A 64-byte aligned buffer for `elem`-byte values of tensor t, after checking its shape.
static void *load_buffer(const st_model *m, const char *name, int ndim, const int64_t *expect, size_t elem,
                         const st_tensor **tp) {
    if (st_check_shape(m, name, ndim, expect) != 0) return NULL;
    const st_tensor *t = *tp = st_find(m, name);
    size_t bytes = (size_t)st_numel(t) * elem;
    bytes = (bytes + 63) & ~(size_t)63;
    void *dst = aligned_alloc(64, bytes ? bytes : 64);
    if (!dst) err_set("%s: tensor '%s': out of memory allocating %zu bytes", t->file, name, bytes);
    return dst;
}

float *st_load_f32(const st_model *m, const char *name, int ndim, const int64_t *expect) {
    const st_tensor *t;
    float *dst = load_buffer(m, name, ndim, expect, sizeof(float), &t);
    if (!dst) return NULL;
    if (st_read_f32(t, dst) != 0) {
        free(dst);
        return NULL;
    }
    drop_mapped(t);
    return dst;
}

uint16_t *st_load_bf16(const st_model *m, const char *name, int ndim, const int64_t *expect, int *rounded) {
    const st_tensor *t;
    uint16_t *dst = load_buffer(m, name, ndim, expect, sizeof(uint16_t), &t);
    if (!dst) return NULL;
    int64_t n = st_numel(t);
    *rounded = t->dtype != ST_BF16;
    if (t->dtype == ST_BF16) {
        memcpy(dst, t->data, (size_t)n * 2);
    } else {   // through fp32 (exact for F16/F32), one block at a time
        enum { BLK = 1 << 16 };
        float *tmp = xmalloc(BLK * sizeof *tmp);
        const unsigned char *src = t->data;
        int esz = st_dtype_size(t->dtype);
        for (int64_t i0 = 0; i0 < n; i0 += BLK) {
            st_tensor part = *t;
            part.ndim = 1;
            part.shape[0] = n - i0 < BLK ? n - i0 : BLK;
            part.data = src + (size_t)i0 * (size_t)esz;
            if (st_read_f32(&part, tmp) != 0) {
                free(tmp);
                free(dst);
                return NULL;
            }
            for (int64_t i = 0; i < part.shape[0]; i++) dst[i0 + i] = st_f32_to_bf16(tmp[i]);
        }
        free(tmp);
    }
    drop_mapped(t);
    return dst;
}

// --- writer

enum { SRC_BYTES, SRC_F32, SRC_FILL };

typedef struct wentry {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAXDIM];
    int src;
    const void *data;
    st_fill_fn fill;
    void *ctx;
} wentry;

struct st_writer {
    wentry *e;
    int n, cap;
    char **mk, **mv;
    int nmeta;
    int bad_ndim;   // a tensor was added with ndim outside [0, ST_MAXDIM]
};

st_writer *st_writer_new(void) {
    st_writer *w = xcalloc(1, sizeof *w);
    st_writer_meta(w, "format", "pt");
    return w;
}

static wentry *writer_push(st_writer *w, const char *name, st_dtype dtype, int ndim,
                           const int64_t *shape) {
    AG_ASSERT((unsigned)dtype < ST_NDTYPES, "bad dtype %d", (int)dtype);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 32;
        w->e = xrealloc(w->e, sizeof *w->e * (size_t)w->cap);
    }
    wentry *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = dtype;
    if (ndim < 0 || ndim > ST_MAXDIM) {
        w->bad_ndim = 1;
        ndim = 0;
    }
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    return e;
}

void st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                   const void *data) {
    wentry *e = writer_push(w, name, dtype, ndim, shape);
    e->src = SRC_BYTES;
    e->data = data;
}

static int float_target(st_dtype d) { return d == ST_F32 || d == ST_F16 || d == ST_BF16 || d == ST_F64; }

void st_writer_add_f32(st_writer *w, const char *name, st_dtype dtype, int ndim,
                       const int64_t *shape, const float *data) {
    AG_ASSERT(float_target(dtype), "st_writer_add_f32: '%s' target dtype %s", name, st_dtype_name(dtype));
    wentry *e = writer_push(w, name, dtype, ndim, shape);
    e->src = SRC_F32;
    e->data = data;
}

void st_writer_add_fill(st_writer *w, const char *name, st_dtype dtype, int ndim,
                        const int64_t *shape, st_fill_fn fill, void *ctx) {
    AG_ASSERT(float_target(dtype), "st_writer_add_fill: '%s' target dtype %s", name, st_dtype_name(dtype));
    wentry *e = writer_push(w, name, dtype, ndim, shape);
    e->src = SRC_FILL;
    e->fill = fill;
    e->ctx = ctx;
}

void st_writer_meta(st_writer *w, const char *key, const char *value) {
    for (int i = 0; i < w->nmeta; i++)
        if (!strcmp(w->mk[i], key)) {
            free(w->mv[i]);
            w->mv[i] = xstrdup(value);
            return;
        }
    w->mk = xrealloc(w->mk, sizeof(char *) * (size_t)(w->nmeta + 1));
    w->mv = xrealloc(w->mv, sizeof(char *) * (size_t)(w->nmeta + 1));
    w->mk[w->nmeta] = xstrdup(key);
    w->mv[w->nmeta] = xstrdup(value);
    w->nmeta++;
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    for (int i = 0; i < w->nmeta; i++) {
        free(w->mk[i]);
        free(w->mv[i]);
    }
    free(w->mk);
    free(w->mv);
    free(w->e);
    free(w);
}

static void sb_json(strbuf *b, const char *s) {   // a JSON string literal
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_puts(b, esc);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int wentry_cmp(const void *a, const void *b) {
    return strcmp(((const wentry *)a)->name, ((const wentry *)b)->name);
}
static int meta_idx_cmp(const void *a, const void *b, void *keys) {
    char **k = keys;
    return strcmp(k[*(const int *)a], k[*(const int *)b]);
}

// fp32 src[n] -> dst[n] in dtype d
static void convert_out(st_dtype d, const float *src, void *dst, size_t n) {
    unsigned char *o = dst;
    switch (d) {
    case ST_F32: memcpy(o, src, n * 4); break;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double v = src[i];
            memcpy(o + 8 * i, &v, 8);
        }
        break;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = st_f32_to_bf16(src[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        break;
    case ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = st_f32_to_f16(src[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        break;
    default: AG_ASSERT(0, "convert_out: dtype %s", st_dtype_name(d));
    }
}

#define ST_CHUNK ((int64_t)1 << 18)

int st_writer_write(st_writer *w, const char *path) {
    if (w->bad_ndim) return err_set("%s: a tensor has more than %d dimensions", path, ST_MAXDIM);
    qsort(w->e, (size_t)w->n, sizeof *w->e, wentry_cmp);
    for (int i = 0; i < w->n; i++) {
        if (!w->e[i].name[0]) return err_set("%s: empty tensor name", path);
        if (!strcmp(w->e[i].name, "__metadata__")) return err_set("%s: '__metadata__' is not a tensor name", path);
        if (i && !strcmp(w->e[i].name, w->e[i - 1].name))
            return err_set("%s: tensor '%s' added twice", path, w->e[i].name);
        for (int k = 0; k < w->e[i].ndim; k++)
            if (w->e[i].shape[k] < 0)
                return err_set("%s: tensor '%s': negative dimension %lld", path, w->e[i].name,
                               (long long)w->e[i].shape[k]);
    }
    // header: __metadata__ first (keys sorted), then tensors in name order
    strbuf h = {0};
    sb_puts(&h, "{\"__metadata__\":{");
    int *mi = xmalloc(sizeof(int) * (size_t)(w->nmeta + 1));
    for (int i = 0; i < w->nmeta; i++) mi[i] = i;
    qsort_r(mi, (size_t)w->nmeta, sizeof *mi, meta_idx_cmp, w->mk);
    for (int j = 0; j < w->nmeta; j++) {
        if (j) sb_puts(&h, ",");
        sb_json(&h, w->mk[mi[j]]);
        sb_puts(&h, ":");
        sb_json(&h, w->mv[mi[j]]);
    }
    free(mi);
    sb_puts(&h, "}");
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wentry *e = &w->e[i];
        char num[64];
        uint64_t nbytes = (uint64_t)st_dtype_size(e->dtype);
        for (int k = 0; k < e->ndim; k++) nbytes *= (uint64_t)e->shape[k];
        sb_puts(&h, ",");
        sb_json(&h, e->name);
        sb_puts(&h, ":{\"dtype\":\"");
        sb_puts(&h, st_dtype_name(e->dtype));
        sb_puts(&h, "\",\"shape\":[");
        for (int k = 0; k < e->ndim; k++) {
            snprintf(num, sizeof num, "%s%lld", k ? "," : "", (long long)e->shape[k]);
            sb_puts(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + nbytes));
        sb_puts(&h, num);
        off += nbytes;
    }
    sb_puts(&h, "}");
    while (h.n % 8) sb_puts(&h, " ");

    afile *af = afile_open(path);
    if (!af) {
        free(h.s);
        return -1;
    }
    uint64_t hlen = h.n;
    int ok = fwrite(&hlen, 8, 1, af->fp) == 1 && fwrite(h.s, 1, h.n, af->fp) == h.n;
    free(h.s);
    float *fbuf = NULL;
    unsigned char *obuf = NULL;
    for (int i = 0; ok && i < w->n; i++) {
        const wentry *e = &w->e[i];
        int64_t n = 1;
        for (int k = 0; k < e->ndim; k++) n *= e->shape[k];
        size_t es = (size_t)st_dtype_size(e->dtype);
        if (e->src == SRC_BYTES) {
            ok = n == 0 || fwrite(e->data, es, (size_t)n, af->fp) == (size_t)n;
            continue;
        }
        if (!fbuf) {
            fbuf = xmalloc(sizeof(float) * ST_CHUNK);
            obuf = xmalloc(8 * ST_CHUNK);
        }
        for (int64_t s = 0; ok && s < n; s += ST_CHUNK) {
            int64_t c = n - s < ST_CHUNK ? n - s : ST_CHUNK;
            const float *src = (const float *)e->data + s;
            if (e->src == SRC_FILL) {
                e->fill(e->ctx, e->name, fbuf, s, c);
                src = fbuf;
            }
            convert_out(e->dtype, src, obuf, (size_t)c);
            ok = fwrite(obuf, es, (size_t)c, af->fp) == (size_t)c;
        }
    }
    free(fbuf);
    free(obuf);
    if (!ok) {
        int en = errno;
        afile_abort(af);
        return err_set("%s: write failed: %s", path, strerror(en));
    }
    return afile_commit(af);
}
