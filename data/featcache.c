// featcache.c — the vision feature cache in HDF5: model identity hash, streaming writer and
// validating reader with an image_ref -> row lookup. Layout and attributes: see featcache.h.
// HDF5's automatic error printing is turned off at every entry point; failures become one
// err_set message naming the file and dataset/attribute, with HDF5's innermost message added.
#include <cJSON.h>
#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "featcache.h"
#include "h5util.h"
#include "util.h"

#define FC_KIND "vision_features"
#define FC_HINT "re-run `lorac prepare`"

// --- string -> row lookup (open addressing; keys borrowed)

typedef struct fc_map {
    const char **key;   // [cap] NULL: empty
    int64_t *row;       // [cap]
    int64_t n, cap;
} fc_map;

static uint64_t key_hash(const char *s) { return hash64(s, strlen(s), 0x5eed); }

static void map_free(fc_map *m) {
    free(m->key);
    free(m->row);
    *m = (fc_map){0};
}

static int64_t map_get(const fc_map *m, const char *k) {
    if (!m->cap) return -1;
    for (uint64_t i = key_hash(k) & (uint64_t)(m->cap - 1);; i = (i + 1) & (uint64_t)(m->cap - 1)) {
        if (!m->key[i]) return -1;
        if (!strcmp(m->key[i], k)) return m->row[i];
    }
}

static void map_put(fc_map *m, const char *k, int64_t row);

static void map_grow(fc_map *m) {
    fc_map old = *m;
    m->cap = old.cap ? old.cap * 2 : 64;
    m->key = xcalloc((size_t)m->cap, sizeof *m->key);
    m->row = xcalloc((size_t)m->cap, sizeof *m->row);
    m->n = 0;
    for (int64_t i = 0; i < old.cap; i++)
        if (old.key[i]) map_put(m, old.key[i], old.row[i]);
    free(old.key);
    free(old.row);
}

static void map_put(fc_map *m, const char *k, int64_t row) {
    if (2 * (m->n + 1) > m->cap) map_grow(m);
    uint64_t i = key_hash(k) & (uint64_t)(m->cap - 1);
    while (m->key[i]) i = (i + 1) & (uint64_t)(m->cap - 1);
    m->key[i] = k;
    m->row[i] = row;
    m->n++;
}

// --- model identity

#define HASH_SAMPLES 16
#define HASH_BLOCK 4096

// size, safetensors header and sampled data blocks of one weight file
static int hash_weights(const char *path, uint64_t *h) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return err_set("%s: cannot open: %s (vision model weights)", path, strerror(errno));
    int rc = -1;
    unsigned char *buf = NULL;
    struct stat sb;
    unsigned char len8[8];
    if (fstat(fileno(fp), &sb) != 0 || fread(len8, 1, 8, fp) != 8) {
        err_set("%s: cannot read the safetensors header length (truncated file?)", path);
        goto done;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    uint64_t size = (uint64_t)sb.st_size;
    if (n > 100000000ULL || 8 + n > size) {
        err_set("%s: safetensors header of %" PRIu64 " bytes does not fit the file's %" PRIu64 " bytes",
                path, n, size);
        goto done;
    }
    *h = hash64(&size, sizeof size, *h);
    buf = xmalloc(n > HASH_BLOCK ? n : HASH_BLOCK);
    if (fread(buf, 1, n, fp) != n) {
        err_set("%s: cannot read the safetensors header", path);
        goto done;
    }
    *h = hash64(buf, n, *h);
    uint64_t data0 = 8 + n, dlen = size - data0;
    for (int k = 0; k < HASH_SAMPLES && dlen > 0; k++) {
        uint64_t at = dlen <= HASH_BLOCK ? 0 : (dlen - HASH_BLOCK) / (HASH_SAMPLES - 1) * (uint64_t)k;
        size_t want = dlen < HASH_BLOCK ? (size_t)dlen : HASH_BLOCK;
        if (fseeko(fp, (off_t)(data0 + at), SEEK_SET) != 0 || fread(buf, 1, want, fp) != want) {
            err_set("%s: read error at byte %" PRIu64, path, data0 + at);
            goto done;
        }
        *h = hash64(buf, want, *h);
        if (dlen <= HASH_BLOCK) break;
    }
    rc = 0;
done:
    free(buf);
    fclose(fp);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int data_fc_model_hash(const char *dir, uint64_t *out) {
    uint64_t h = 0;
    char *cfg = path_join(dir, "config.json");
    size_t len;
    char *text = file_read_all(cfg, &len);
    free(cfg);
    if (!text) return -1;
    h = hash64(text, len, h);
    free(text);
    char *single = path_join(dir, "model.safetensors");
    if (file_exists(single)) {
        int rc = hash_weights(single, &h);
        free(single);
        if (rc) return -1;
        *out = h;
        return 0;
    }
    free(single);
    char *index = path_join(dir, "model.safetensors.index.json");
    text = file_read_all(index, &len);
    if (!text) {
        err_set("%s: no model.safetensors or model.safetensors.index.json (expected a Hugging Face "
                "SigLIP folder)", dir);
        free(index);
        return -1;
    }
    h = hash64(text, len, h);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cJSON *wm = j ? cJSON_GetObjectItem(j, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        err_set("%s: expected a JSON object with 'weight_map'", index);
        cJSON_Delete(j);
        free(index);
        return -1;
    }
    free(index);
    int n = cJSON_GetArraySize(wm), m = 0;
    char **files = xcalloc((size_t)n + 1, sizeof *files);
    cJSON *e;
    cJSON_ArrayForEach(e, wm) if (cJSON_IsString(e)) files[m++] = e->valuestring;
    qsort(files, (size_t)m, sizeof *files, cmp_str);
    int rc = 0;
    for (int i = 0; i < m && rc == 0; i++) {
        if (i > 0 && !strcmp(files[i], files[i - 1])) continue;
        char *p = path_join(dir, files[i]);
        rc = hash_weights(p, &h);
        free(p);
    }
    free(files);
    cJSON_Delete(j);
    if (rc) return -1;
    *out = h;
    return 0;
}

int data_fc_ident_init(data_fc_ident *id, const char *vision_dir, const hf_siglip_config *cfg,
                       int select_layer, ag_precision precision) {
    memset(id, 0, sizeof *id);
    uint64_t h;
    if (data_fc_model_hash(vision_dir, &h)) return -1;
    snprintf(id->model_hash, sizeof id->model_hash, "%016" PRIx64, h);
    id->select_layer = select_layer;
    id->image_size = cfg->image_size;
    id->patch_size = cfg->patch_size;
    id->num_patches = cfg->num_patches;
    id->hidden_size = cfg->hidden_size;
    memcpy(id->image_mean, cfg->image_mean, sizeof id->image_mean);
    memcpy(id->image_std, cfg->image_std, sizeof id->image_std);
    id->rescale_factor = cfg->rescale_factor;
    snprintf(id->resize, sizeof id->resize, "bicubic");
    snprintf(id->precision, sizeof id->precision, "%s", ag_precision_name(precision));
    return 0;
}

// --- attributes

static int attr_f32x3(hid_t loc, const char *name, const float *v) {
    return h5u_attr_write(loc, name, H5T_IEEE_F32LE, 3, v);
}

// Reads a string attribute (vlen or fixed). 0 ok (*out malloc'd), -1 + err_set (missing too).
static int attr_read_str(hid_t loc, const char *path, const char *name, char **out) {
    int rc = h5u_attr_read_str(loc, path, name, FC_HINT, out);
    if (rc == 0)
        return err_set("%s: attribute '%s' is missing (not a lorac vision feature cache? %s)", path, name, FC_HINT);
    return rc < 0 ? -1 : 0;
}

// Reads a numeric attribute of n elements (n = 1: scalar or [1]) converted to double.
// 0 ok, -1 + err_set (missing too).
static int attr_read_num(hid_t loc, const char *path, const char *name, int n, double *out) {
    char want[32];
    snprintf(want, sizeof want, "%d number%s", n, n == 1 ? "" : "s");
    int rc = h5u_attr_read_num(loc, path, name, n, H5T_NATIVE_DOUBLE, want, FC_HINT, out);
    if (rc == 0)
        return err_set("%s: attribute '%s' is missing (not a lorac vision feature cache? %s)", path, name, FC_HINT);
    return rc < 0 ? -1 : 0;
}

// --- writer

struct data_fc_writer {
    hid_t file, d_feat, d_images, str_t;
    char *path, *tmp, *source;
    data_fc_ident id;
    int64_t n;
    char **refs;    // [n] owned (the map's keys)
    int64_t rcap;
    fc_map map;
};

static void writer_free(data_fc_writer *w) {
    if (w->d_feat >= 0) H5Dclose(w->d_feat);
    if (w->d_images >= 0) H5Dclose(w->d_images);
    if (w->str_t >= 0) H5Tclose(w->str_t);
    if (w->file >= 0) H5Fclose(w->file);
    for (int64_t i = 0; i < w->n; i++) free(w->refs[i]);
    free(w->refs);
    map_free(&w->map);
    free(w->path);
    free(w->tmp);
    free(w->source);
    free(w);
}

data_fc_writer *data_fc_writer_open(const char *path, const data_fc_ident *id, const char *source) {
    h5u_quiet();
    if (id->num_patches <= 0 || id->hidden_size <= 0) {
        err_set("%s: feature cache needs num_patches > 0 and hidden_size > 0, found %d and %d", path,
                id->num_patches, id->hidden_size);
        return NULL;
    }
    data_fc_writer *w = xcalloc(1, sizeof *w);
    w->file = w->d_feat = w->d_images = w->str_t = -1;
    w->path = xstrdup(path);
    w->tmp = h5u_tmp_name(path);
    w->source = source ? xstrdup(source) : NULL;
    w->id = *id;
    char *dir = path_dirname(path);
    int ok = dir_exists(dir);
    if (!ok) err_set("%s: the output folder %s does not exist", path, dir);
    free(dir);
    if (!ok) {
        writer_free(w);
        return NULL;
    }
    hid_t fapl = h5u_file_access();
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (w->file < 0) {
        h5u_fail("%s: cannot create the feature cache", w->tmp);
        writer_free(w);
        return NULL;
    }
    hsize_t P = (hsize_t)id->num_patches, C = (hsize_t)id->hidden_size;
    hsize_t dims[3] = {0, P, C}, maxd[3] = {H5S_UNLIMITED, P, C}, chunk[3] = {1, P, C};
    hid_t sp = H5Screate_simple(3, dims, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 3, chunk);
    H5Pset_fletcher32(dcpl);           // a checksum per image: corrupt bytes fail the read
    H5Pset_obj_track_times(dcpl, 0);   // no timestamps: the same input gives the same bytes
    w->d_feat = H5Dcreate2(w->file, "features", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    w->str_t = h5u_vlen_utf8();
    w->d_images = h5u_create_1d(w->file, "images", w->str_t, 1024, 0);
    if (w->d_feat < 0 || w->d_images < 0) {
        h5u_fail("%s: cannot create the datasets", w->tmp);
        data_fc_writer_abort(w);
        return NULL;
    }
    return w;
}

int data_fc_writer_has(const data_fc_writer *w, const char *image_ref) { return map_get(&w->map, image_ref) >= 0; }
int64_t data_fc_writer_count(const data_fc_writer *w) { return w->n; }
const char *data_fc_writer_tmp_path(const data_fc_writer *w) { return w->tmp; }

int data_fc_writer_add(data_fc_writer *w, const char *image_ref, const float *feat) {
    h5u_quiet();
    if (!image_ref) return err_set("%s: feature cache: image without a name", w->tmp);
    if (map_get(&w->map, image_ref) >= 0)
        return err_set("%s: image '%s' added twice (each unique image is stored once)", w->tmp, image_ref);
    hsize_t P = (hsize_t)w->id.num_patches, C = (hsize_t)w->id.hidden_size;
    hsize_t size[3] = {(hsize_t)w->n + 1, P, C}, start[3] = {(hsize_t)w->n, 0, 0}, count[3] = {1, P, C};
    if (H5Dset_extent(w->d_feat, size) < 0) return h5u_fail("%s: dataset 'features': cannot extend", w->tmp);
    hid_t fs = H5Dget_space(w->d_feat), ms = H5Screate_simple(3, count, NULL);
    int bad = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
              H5Dwrite(w->d_feat, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, feat) < 0;
    H5Sclose(ms);
    H5Sclose(fs);
    if (bad)
        return h5u_fail("%s: dataset 'features': write of image %lld failed (disk full?)", w->tmp, (long long)w->n);
    if (h5u_append_1d(w->d_images, w->str_t, w->n, 1, &image_ref))
        return h5u_fail("%s: dataset 'images': write failed", w->tmp);
    if (w->n == w->rcap) {
        w->rcap = w->rcap ? 2 * w->rcap : 256;
        w->refs = xrealloc(w->refs, (size_t)w->rcap * sizeof *w->refs);
    }
    w->refs[w->n] = xstrdup(image_ref);
    map_put(&w->map, w->refs[w->n], w->n);
    w->n++;
    return 0;
}

void data_fc_writer_abort(data_fc_writer *w) {
    if (!w) return;
    char *tmp = w->tmp;   // outlives the writer
    w->tmp = NULL;
    writer_free(w);
    h5u_discard_tmp(tmp);
}

int data_fc_writer_commit(data_fc_writer *w) {
    h5u_quiet();
    const data_fc_ident *id = &w->id;
    hid_t f = w->file;
    int bad = h5u_attr_str(f, "kind", FC_KIND) || h5u_attr_str(f, "lorac_version", DATA_FC_VERSION) ||
              h5u_attr_str(f, "vision_model_hash", id->model_hash) ||
              h5u_attr_i64(f, "select_layer", id->select_layer) || h5u_attr_i64(f, "image_size", id->image_size) ||
              h5u_attr_i64(f, "patch_size", id->patch_size) || h5u_attr_i64(f, "num_patches", id->num_patches) ||
              h5u_attr_i64(f, "hidden_size", id->hidden_size) || attr_f32x3(f, "image_mean", id->image_mean) ||
              attr_f32x3(f, "image_std", id->image_std) || h5u_attr_f64(f, "rescale_factor", id->rescale_factor) ||
              h5u_attr_str(f, "resize", id->resize) || h5u_attr_str(f, "precision", id->precision) ||
              h5u_attr_str(f, "source", w->source ? w->source : "") ||
              h5u_attr_i64(f, "images", w->n);
    if (bad) {
        h5u_fail("%s: cannot write the attributes", w->tmp);
        data_fc_writer_abort(w);
        return -1;
    }
    hid_t *ds[] = {&w->d_feat, &w->d_images};
    if (h5u_close_publish(&w->file, ds, 2, w->tmp, w->path)) {
        data_fc_writer_abort(w);
        return -1;
    }
    writer_free(w);
    return 0;
}

// --- reader

struct data_fc {
    hid_t file, d_feat, fspace, mspace;
    char *path;
    data_fc_ident id;   // as stored
    int64_t n;
    char **refs;        // [n]
    fc_map map;
};

void data_fc_close(data_fc *fc) {
    if (!fc) return;
    if (fc->mspace >= 0) H5Sclose(fc->mspace);
    if (fc->fspace >= 0) H5Sclose(fc->fspace);
    if (fc->d_feat >= 0) H5Dclose(fc->d_feat);
    if (fc->file >= 0) H5Fclose(fc->file);
    for (int64_t i = 0; i < fc->n && fc->refs; i++) free(fc->refs[i]);
    free(fc->refs);
    map_free(&fc->map);
    free(fc->path);
    free(fc);
    H5Eclear2(H5E_DEFAULT);
}

static int mismatch_i(const char *path, const char *name, long long want, long long found) {
    return err_set("%s: attribute '%s': expected %lld, found %lld (the cache was made for another vision "
                   "setup; %s)", path, name, want, found, FC_HINT);
}

static int read_ident(data_fc *fc, const data_fc_ident *expect) {
    const char *p = fc->path;
    hid_t f = fc->file;
    data_fc_ident *id = &fc->id;
    char *s = NULL;
    if (attr_read_str(f, p, "kind", &s)) return -1;
    if (strcmp(s, FC_KIND)) {
        err_set("%s: attribute 'kind': expected '%s', found '%s' (a prepared text dataset? vision.features "
                "needs a cache written by `lorac prepare` in projector mode)", p, FC_KIND, s);
        free(s);
        return -1;
    }
    free(s);
    const char *ints[] = {"select_layer", "image_size", "patch_size", "num_patches", "hidden_size"};
    int *dst[] = {&id->select_layer, &id->image_size, &id->patch_size, &id->num_patches, &id->hidden_size};
    for (int i = 0; i < 5; i++) {   // select_layer may be negative; sizes are positive (limit: 1<<20)
        double v;
        if (attr_read_num(f, p, ints[i], 1, &v)) return -1;
        if (!(v == floor(v) && v >= (i ? 1 : -(1 << 20)) && v <= (1 << 20)))
            return err_set("%s: attribute '%s': expected an integer in [%d, %d], found %g (%s)", p, ints[i],
                           i ? 1 : -(1 << 20), 1 << 20, v, FC_HINT);
        *dst[i] = (int)v;
    }
    double v3[3], r;
    if (attr_read_num(f, p, "image_mean", 3, v3)) return -1;
    for (int i = 0; i < 3; i++) id->image_mean[i] = (float)v3[i];
    if (attr_read_num(f, p, "image_std", 3, v3)) return -1;
    for (int i = 0; i < 3; i++) id->image_std[i] = (float)v3[i];
    if (attr_read_num(f, p, "rescale_factor", 1, &r)) return -1;
    id->rescale_factor = (float)r;
    if (attr_read_str(f, p, "resize", &s)) return -1;
    snprintf(id->resize, sizeof id->resize, "%s", s);
    free(s);
    if (attr_read_str(f, p, "vision_model_hash", &s)) return -1;
    snprintf(id->model_hash, sizeof id->model_hash, "%s", s);
    free(s);
    int rc = h5u_attr_read_str(f, p, "precision", FC_HINT, &s);
    if (rc == 0)
        return err_set("%s: attribute 'precision' is missing (a cache written before lorac recorded the vision "
                       "tower's precision; %s)", p, FC_HINT);
    if (rc < 0) return -1;
    ag_precision prec;
    if (ag_precision_parse(s, &prec)) {
        err_set("%s: attribute 'precision': expected 'fp32' or 'bf16', found '%s' (%s)", p, s, FC_HINT);
        free(s);
        return -1;
    }
    free(s);
    snprintf(id->precision, sizeof id->precision, "%s", ag_precision_name(prec));
    if (!expect) return 0;

    const int *want[] = {&expect->select_layer, &expect->image_size, &expect->patch_size, &expect->num_patches,
                         &expect->hidden_size};
    for (int i = 0; i < 5; i++)
        if (*want[i] != *dst[i]) return mismatch_i(p, ints[i], *want[i], *dst[i]);
    const char *fn[] = {"image_mean", "image_std"};
    const float *fw[] = {expect->image_mean, expect->image_std}, *ff[] = {id->image_mean, id->image_std};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++)
            if (fw[k][i] != ff[k][i])
                return err_set("%s: attribute '%s': expected [%g, %g, %g], found [%g, %g, %g] (the cache was made "
                               "with other preprocessing; %s)", p, fn[k], fw[k][0], fw[k][1], fw[k][2], ff[k][0],
                               ff[k][1], ff[k][2], FC_HINT);
    if (expect->rescale_factor != id->rescale_factor)
        return err_set("%s: attribute 'rescale_factor': expected %.9g, found %.9g (the cache was made with other "
                       "preprocessing; %s)", p, expect->rescale_factor, id->rescale_factor, FC_HINT);
    if (strcmp(expect->resize, id->resize))
        return err_set("%s: attribute 'resize': expected '%s', found '%s' (%s)", p, expect->resize, id->resize, FC_HINT);
    ag_precision want_prec;
    if (ag_precision_parse(expect->precision, &want_prec) == 0 && data_fc_check_precision(fc, want_prec)) return -1;
    if (strcmp(expect->model_hash, id->model_hash))
        return err_set("%s: attribute 'vision_model_hash': expected %s, found %s (the cache was made with other "
                       "vision weights; %s)", p, expect->model_hash, id->model_hash, FC_HINT);
    return 0;
}

static int read_images(data_fc *fc) {
    const char *p = fc->path;
    hid_t d = H5Dopen2(fc->file, "images", H5P_DEFAULT);
    if (d < 0) return h5u_fail("%s: dataset 'images' is missing (%s)", p, FC_HINT);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    int rc = -1;
    hsize_t n = 0;
    if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) <= 0 || H5Sget_simple_extent_ndims(sp) != 1) {
        err_set("%s: dataset 'images': expected a 1-D variable-length string dataset (%s)", p, FC_HINT);
        goto done;
    }
    H5Sget_simple_extent_dims(sp, &n, NULL);
    if ((int64_t)n != fc->n) {
        err_set("%s: dataset 'images': expected %lld entries (the rows of 'features'), found %lld (%s)", p,
                (long long)fc->n, (long long)n, FC_HINT);
        goto done;
    }
    if (h5u_check_extent(d, p, "images", n, sizeof(char *), FC_HINT)) goto done;
    fc->refs = xcalloc(n ? n : 1, sizeof *fc->refs);
    char **tmp = xcalloc(n ? n : 1, sizeof *tmp);
    hid_t mt = h5u_vlen_utf8();
    if (n > 0 && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0) {
        h5u_fail("%s: dataset 'images': read failed", p);
        H5Tclose(mt);
        free(tmp);
        goto done;
    }
    int dup = -1;
    for (hsize_t i = 0; i < n; i++) {
        fc->refs[i] = xstrdup(tmp[i] ? tmp[i] : "");
        if (dup < 0 && map_get(&fc->map, fc->refs[i]) >= 0) dup = (int)i;
        else map_put(&fc->map, fc->refs[i], (int64_t)i);
    }
    if (n > 0) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, tmp);
    H5Tclose(mt);
    free(tmp);
    if (dup >= 0) {
        err_set("%s: dataset 'images': image '%s' appears twice (rows %lld and %d) (%s)", p, fc->refs[dup],
                (long long)map_get(&fc->map, fc->refs[dup]), dup, FC_HINT);
        goto done;
    }
    rc = 0;
done:
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

data_fc *data_fc_open(const char *path, const data_fc_ident *expect) {
    h5u_quiet();
    data_fc *fc = xcalloc(1, sizeof *fc);
    fc->file = fc->d_feat = fc->fspace = fc->mspace = -1;
    fc->path = xstrdup(path);
    if (!file_exists(path)) {
        err_set("%s: vision feature cache not found (write it with `lorac prepare CONFIG --out %s`)", path, path);
        goto fail;
    }
    if (H5Fis_hdf5(path) <= 0) {
        h5u_fail("%s: not an HDF5 file (corrupt or truncated? %s)", path, FC_HINT);
        goto fail;
    }
    if (h5u_check_heaps(path, FC_HINT)) goto fail;   // one read of the file: at most one epoch's reading
    hid_t fapl = h5u_file_access();
    fc->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (fc->file < 0) {
        h5u_fail("%s: cannot open the feature cache (corrupt or truncated? %s)", path, FC_HINT);
        goto fail;
    }
    if (read_ident(fc, expect)) goto fail;
    fc->d_feat = H5Dopen2(fc->file, "features", H5P_DEFAULT);
    if (fc->d_feat < 0) {
        h5u_fail("%s: dataset 'features' is missing (%s)", path, FC_HINT);
        goto fail;
    }
    hid_t t = H5Dget_type(fc->d_feat);
    int is_f32 = H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 4;
    H5Tclose(t);
    fc->fspace = H5Dget_space(fc->d_feat);
    hsize_t dims[3] = {0, 0, 0};
    if (!is_f32 || H5Sget_simple_extent_ndims(fc->fspace) != 3) {
        err_set("%s: dataset 'features': expected float32 [images, patches, hidden] (%s)", path, FC_HINT);
        goto fail;
    }
    H5Sget_simple_extent_dims(fc->fspace, dims, NULL);
    if ((int)dims[1] != fc->id.num_patches || (int)dims[2] != fc->id.hidden_size) {
        err_set("%s: dataset 'features': expected [N, %d, %d] (attributes num_patches, hidden_size), found "
                "[%llu, %llu, %llu] (%s)", path, fc->id.num_patches, fc->id.hidden_size,
                (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2], FC_HINT);
        goto fail;
    }
    uint64_t nfeat;   // dims[1], dims[2] <= 1<<20 (checked above); dims[0] comes from the file
    if (__builtin_mul_overflow((uint64_t)dims[0], (uint64_t)dims[1] * dims[2], &nfeat)) nfeat = UINT64_MAX;
    if (h5u_check_extent(fc->d_feat, path, "features", nfeat, sizeof(float), FC_HINT)) goto fail;
    fc->n = (int64_t)dims[0];
    hsize_t count[3] = {1, dims[1], dims[2]};
    fc->mspace = H5Screate_simple(3, count, NULL);
    if (read_images(fc)) goto fail;
    return fc;
fail:
    data_fc_close(fc);
    return NULL;
}

int64_t data_fc_count(const data_fc *fc) { return fc->n; }
int data_fc_patches(const data_fc *fc) { return fc->id.num_patches; }
int data_fc_hidden(const data_fc *fc) { return fc->id.hidden_size; }
const data_fc_ident *data_fc_get_ident(const data_fc *fc) { return &fc->id; }
const char *data_fc_image(const data_fc *fc, int64_t row) {
    return row >= 0 && row < fc->n ? fc->refs[row] : NULL;
}
int64_t data_fc_find(const data_fc *fc, const char *image_ref) { return image_ref ? map_get(&fc->map, image_ref) : -1; }

int data_fc_read_row(data_fc *fc, int64_t row, float *out) {
    h5u_quiet();
    if (row < 0 || row >= fc->n)
        return err_set("%s: row %lld out of range (the cache holds %lld images)", fc->path, (long long)row,
                       (long long)fc->n);
    hsize_t start[3] = {(hsize_t)row, 0, 0};
    hsize_t count[3] = {1, (hsize_t)fc->id.num_patches, (hsize_t)fc->id.hidden_size};
    if (H5Sselect_hyperslab(fc->fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(fc->d_feat, H5T_NATIVE_FLOAT, fc->mspace, fc->fspace, H5P_DEFAULT, out) < 0)
        return h5u_fail("%s: dataset 'features': read of image %lld ('%s') failed (corrupt file? %s)", fc->path,
                       (long long)row, fc->refs[row], FC_HINT);
    return 0;
}

int data_fc_read(data_fc *fc, const char *image_ref, float *out) {
    int64_t row = data_fc_find(fc, image_ref);
    if (row < 0)
        return err_set("%s: image '%s' is not in the feature cache (%lld images; made from another data file? "
                       "%s)", fc->path, image_ref ? image_ref : "(none)", (long long)fc->n, FC_HINT);
    return data_fc_read_row(fc, row, out);
}

int data_fc_read_many(data_fc *fc, const char *const *image_refs, int n, float *out, int *failed) {
    size_t rows = (size_t)fc->id.num_patches * fc->id.hidden_size;
    if (failed) *failed = -1;
    for (int i = 0; i < n; i++)
        if (data_fc_read(fc, image_refs[i], out + (size_t)i * rows)) {
            if (failed) *failed = i;
            return -1;
        }
    return 0;
}

int data_fc_check_precision(const data_fc *fc, ag_precision precision) {
    const char *want = ag_precision_name(precision);
    if (!strcmp(fc->id.precision, want)) return 0;
    return err_set("%s: attribute 'precision': expected '%s' (this run's precision), found '%s' (the features were "
                   "computed by the vision tower in %s; re-run `lorac prepare` with precision: %s)", fc->path, want,
                   fc->id.precision, fc->id.precision, want);
}

data_fc *data_fc_open_for(const char *path, const char *vision_dir, int select_layer, ag_precision precision) {
    data_fc_ident id;
    if (vision_dir) {
        hf_siglip_config cfg;
        if (hf_siglip_config_load(vision_dir, &cfg) ||
            data_fc_ident_init(&id, vision_dir, &cfg, select_layer, precision))
            return NULL;
    }
    data_fc *fc = data_fc_open(path, vision_dir ? &id : NULL);
    if (fc && !vision_dir && data_fc_check_precision(fc, precision)) {
        data_fc_close(fc);
        return NULL;
    }
    return fc;
}
