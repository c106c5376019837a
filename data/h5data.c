// h5data.c — prepared text datasets in HDF5: the streaming writer (`lorac prepare`) and the
// validating reader behind data_load_any. Layout and attributes: see h5data.h.
// HDF5's own error stack printing is turned off at every entry point; failures become one
// err_set message naming the file and dataset/attribute, with HDF5's innermost message added
// (helpers shared with the feature cache: h5util.h).
#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5data.h"
#include "h5util.h"
#include "util.h"

#define TOK_CHUNK (1 << 16)      // elements per chunk of tokens / loss_mask
#define REC_CHUNK 4096           // elements per chunk of the per-record datasets
#define TOK_FLUSH (1 << 20)      // tokens buffered before a write
#define REC_FLUSH (1 << 15)      // records buffered before a write

#define HINT "re-run `lorac prepare`"   // ends the messages about a stale/foreign file

static const char H5_SIGNATURE[8] = "\211HDF\r\n\032\n";

// --- attributes

// Integer attribute (any integer type, or a boolean-like enum h5py writes). 1 found, 0 missing,
// -1 + err_set.
static int attr_read_i64(hid_t loc, const char *path, const char *name, int64_t *out) {
    return h5u_attr_read_num(loc, path, name, 1, H5T_NATIVE_INT64, "an integer", HINT, out);
}

// --- writer

struct data_h5_writer {
    hid_t file, d_tokens, d_mask, d_offsets, d_lines, d_imgpos, d_images;
    char *path, *tmp, *source, *format, *template_;
    int64_t source_size;
    data_opts o;
    uint64_t hash;
    int compress;
    // pending tokens (not yet in the file)
    int32_t *tb;
    uint8_t *mb;
    int64_t tn, tcap;
    // pending records
    int64_t *ob, *lb, *pb;   // end offsets, lines, image positions
    char **ib;               // image refs (owned; NULL: none)
    int64_t rn, rcap;
    int64_t t_file, r_file;  // tokens / records already in the file
    int64_t t_total, r_total;
    int has_images;
};

static int create_image_sets(data_h5_writer *w) {
    hid_t st = h5u_vlen_utf8();
    w->d_imgpos = h5u_create_1d(w->file, "image_pos", H5T_STD_I64LE, REC_CHUNK, w->compress);
    w->d_images = h5u_create_1d(w->file, "images", st, REC_CHUNK, w->compress);
    if (w->d_imgpos < 0 || w->d_images < 0) {
        H5Tclose(st);
        return -1;
    }
    // records already in the file had no image: -1 and "" written for them, a block at a time
    // (written, not left to fill values: HDF5 1.10 cannot read vlen fill values read-only)
    int64_t blk = w->r_file < REC_FLUSH ? w->r_file : REC_FLUSH;
    int64_t *none = xmalloc(sizeof(int64_t) * (size_t)(blk ? blk : 1));
    const char **empty = xmalloc(sizeof(char *) * (size_t)(blk ? blk : 1));
    for (int64_t i = 0; i < blk; i++) {
        none[i] = -1;
        empty[i] = "";
    }
    int rc = 0;
    for (int64_t at = 0; at < w->r_file && !rc; at += blk) {
        int64_t k = w->r_file - at < blk ? w->r_file - at : blk;
        rc = h5u_append_1d(w->d_imgpos, H5T_NATIVE_INT64, at, k, none) ||
                     h5u_append_1d(w->d_images, st, at, k, empty)
                 ? -1
                 : 0;
    }
    free(none);
    free(empty);
    H5Tclose(st);
    w->has_images = 1;
    return rc;
}

static int flush(data_h5_writer *w) {
    if (h5u_append_1d(w->d_tokens, H5T_NATIVE_INT32, w->t_file, w->tn, w->tb) ||
        h5u_append_1d(w->d_mask, H5T_NATIVE_UINT8, w->t_file, w->tn, w->mb) ||
        h5u_append_1d(w->d_offsets, H5T_NATIVE_INT64, w->r_file + 1, w->rn, w->ob) ||
        h5u_append_1d(w->d_lines, H5T_NATIVE_INT64, w->r_file, w->rn, w->lb))
        return h5u_fail("%s: write failed (disk full?)", w->path);
    if (w->has_images) {
        const char **refs = xmalloc(sizeof(char *) * (size_t)(w->rn ? w->rn : 1));
        for (int64_t i = 0; i < w->rn; i++) refs[i] = w->ib[i] ? w->ib[i] : "";
        hid_t st = h5u_vlen_utf8();
        int bad = h5u_append_1d(w->d_imgpos, H5T_NATIVE_INT64, w->r_file, w->rn, w->pb) ||
                  h5u_append_1d(w->d_images, st, w->r_file, w->rn, refs);
        H5Tclose(st);
        free(refs);
        if (bad) return h5u_fail("%s: write failed (disk full?)", w->path);
    }
    for (int64_t i = 0; i < w->rn; i++) free(w->ib[i]);
    w->t_file += w->tn;
    w->r_file += w->rn;
    w->tn = w->rn = 0;
    return 0;
}

static void writer_free(data_h5_writer *w) {
    hid_t ds[] = {w->d_tokens, w->d_mask, w->d_offsets, w->d_lines, w->d_imgpos, w->d_images};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++)
        if (ds[i] >= 0) H5Dclose(ds[i]);
    if (w->file >= 0) H5Fclose(w->file);
    for (int64_t i = 0; i < w->rn; i++) free(w->ib[i]);
    free(w->tb);
    free(w->mb);
    free(w->ob);
    free(w->lb);
    free(w->pb);
    free(w->ib);
    free(w->path);
    free(w->tmp);
    free(w->source);
    free(w->format);
    free(w->template_);
    free(w);
}

data_h5_writer *data_h5_writer_open(const char *path, const char *source, const tok_tokenizer *tok,
                                    const data_opts *o, int compress) {
    h5u_quiet();
    data_opts def = data_opts_default();
    if (!o) o = &def;
    if (data_opts_check(o)) return NULL;
    data_h5_writer *w = xcalloc(1, sizeof *w);
    w->file = w->d_tokens = w->d_mask = w->d_offsets = w->d_lines = w->d_imgpos = w->d_images = -1;
    w->path = xstrdup(path);
    w->tmp = h5u_tmp_name(path);
    w->source = xstrdup(source ? source : "");
    struct stat sb;
    w->source_size = source && stat(source, &sb) == 0 ? (int64_t)sb.st_size : -1;
    w->o = *o;
    w->format = xstrdup(o->format ? o->format : "auto");
    w->template_ = xstrdup(o->template_ ? o->template_ : "llama3");
    w->o.format = w->format;
    w->o.template_ = w->template_;
    w->hash = tok_hash(tok);
    w->compress = compress;
    w->tcap = TOK_FLUSH;
    w->tb = xmalloc(sizeof(int32_t) * (size_t)w->tcap);
    w->mb = xmalloc((size_t)w->tcap);
    w->rcap = REC_FLUSH;
    w->ob = xmalloc(sizeof(int64_t) * (size_t)w->rcap);
    w->lb = xmalloc(sizeof(int64_t) * (size_t)w->rcap);
    w->pb = xmalloc(sizeof(int64_t) * (size_t)w->rcap);
    w->ib = xcalloc((size_t)w->rcap, sizeof(char *));

    hid_t fapl = h5u_file_access();
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (w->file < 0) {
        h5u_fail("%s: cannot create", w->tmp);
        writer_free(w);
        return NULL;
    }
    w->d_tokens = h5u_create_1d(w->file, "tokens", H5T_STD_I32LE, TOK_CHUNK, compress);
    w->d_mask = h5u_create_1d(w->file, "loss_mask", H5T_STD_U8LE, TOK_CHUNK, compress);
    w->d_offsets = h5u_create_1d(w->file, "doc_offsets", H5T_STD_I64LE, REC_CHUNK, compress);
    w->d_lines = h5u_create_1d(w->file, "doc_lines", H5T_STD_I64LE, REC_CHUNK, compress);
    int64_t zero = 0;
    if (w->d_tokens < 0 || w->d_mask < 0 || w->d_offsets < 0 || w->d_lines < 0 ||
        h5u_append_1d(w->d_offsets, H5T_NATIVE_INT64, 0, 1, &zero)) {
        h5u_fail("%s: cannot create the datasets", w->tmp);
        data_h5_writer_abort(w);
        return NULL;
    }
    return w;
}

const char *data_h5_writer_tmp_path(const data_h5_writer *w) { return w->tmp; }

int data_h5_writer_add(data_h5_writer *w, const data_record *rec) {
    h5u_quiet();
    const char *ref = rec->image_ref ? rec->image_ref : rec->image;
    if (rec->n < 0 || (rec->n > 0 && (!rec->ids || !rec->mask)))
        return err_set("%s: record of line %lld has no tokens", w->path, (long long)rec->line);
    if (rec->image_pos > rec->n || (rec->image_pos >= 0 && (!ref || !ref[0])))
        return err_set("%s: record of line %lld: expected an image path and image_pos in [0, %lld], found %s "
                       "and %lld", w->path, (long long)rec->line, (long long)rec->n, ref && ref[0] ? "a path" : "none",
                       (long long)rec->image_pos);
    if (rec->image_pos >= 0 && !w->has_images && create_image_sets(w))
        return h5u_fail("%s: cannot create the image datasets", w->tmp);
    if (w->tn + rec->n > w->tcap || w->rn == w->rcap) {
        if (flush(w)) return -1;
        if (rec->n > w->tcap) {   // one record longer than the buffer: grow it
            w->tcap = rec->n;
            w->tb = xrealloc(w->tb, sizeof(int32_t) * (size_t)w->tcap);
            w->mb = xrealloc(w->mb, (size_t)w->tcap);
        }
    }
    if (rec->n) {
        memcpy(w->tb + w->tn, rec->ids, sizeof(int32_t) * (size_t)rec->n);
        memcpy(w->mb + w->tn, rec->mask, (size_t)rec->n);
    }
    w->tn += rec->n;
    w->t_total += rec->n;
    w->ob[w->rn] = w->t_total;
    w->lb[w->rn] = rec->line;
    w->pb[w->rn] = rec->image_pos >= 0 ? rec->image_pos : -1;
    w->ib[w->rn] = rec->image_pos >= 0 ? xstrdup(ref) : NULL;
    w->rn++;
    w->r_total++;
    return 0;
}

void data_h5_writer_abort(data_h5_writer *w) {
    if (!w) return;
    char *tmp = w->tmp;   // outlives the writer
    w->tmp = NULL;
    writer_free(w);
    h5u_discard_tmp(tmp);
}

int data_h5_writer_commit(data_h5_writer *w, int64_t skipped_bad, int64_t dropped_long,
                          int64_t truncated) {
    h5u_quiet();
    if (flush(w)) {
        data_h5_writer_abort(w);
        return -1;
    }
    char hash[17];
    snprintf(hash, sizeof hash, "%016" PRIx64, w->hash);
    hid_t f = w->file;
    int bad = h5u_attr_str(f, "kind", "text") || h5u_attr_str(f, "lorac_version", DATA_H5_VERSION) ||
              h5u_attr_str(f, "tokenizer_hash", hash) || h5u_attr_str(f, "format", w->format) ||
              h5u_attr_str(f, "template", w->template_) ||
              h5u_attr_i64(f, "train_on_prompt", w->o.train_on_prompt != 0) ||
              h5u_attr_i64(f, "max_seq_len", w->o.max_seq_len > 0 ? w->o.max_seq_len : 0) ||
              h5u_attr_str(f, "truncation", w->o.truncate ? "truncate" : "drop") ||
              h5u_attr_i64(f, "num_patches", w->o.num_patches) || h5u_attr_str(f, "source", w->source) ||
              h5u_attr_i64(f, "source_size", w->source_size) || h5u_attr_i64(f, "records", w->r_total) ||
              h5u_attr_i64(f, "tokens", w->t_total) || h5u_attr_i64(f, "skipped_bad", skipped_bad) ||
              h5u_attr_i64(f, "dropped_long", dropped_long) || h5u_attr_i64(f, "truncated", truncated);
    if (bad) {
        h5u_fail("%s: cannot write the attributes", w->tmp);
        data_h5_writer_abort(w);
        return -1;
    }
    hid_t *ds[] = {&w->d_tokens, &w->d_mask, &w->d_offsets, &w->d_lines, &w->d_imgpos, &w->d_images};
    if (h5u_close_publish(&w->file, ds, (int)(sizeof ds / sizeof *ds), w->tmp, w->path)) {
        data_h5_writer_abort(w);
        return -1;
    }
    writer_free(w);
    return 0;
}

int data_h5_prepare(const char *out, const char *source, const tok_tokenizer *tok, const data_opts *o,
                    int compress, const volatile sig_atomic_t *stop, data_h5_stats *st) {
    double t0 = now_seconds();
    data_opts def = data_opts_default();
    if (!o) o = &def;
    data_reader *rd = data_reader_open(source, tok, o);
    if (!rd) return -1;
    data_h5_writer *w = data_h5_writer_open(out, source, tok, o, compress);
    if (!w) {
        data_reader_close(rd);
        return -1;
    }
    data_record rec;
    int64_t tokens = 0;
    int rc;
    while ((rc = data_reader_next(rd, &rec)) == 1) {
        tokens += rec.n;
        int bad = data_h5_writer_add(w, &rec);
        data_record_free(&rec);
        if (bad) {
            rc = -1;
            break;
        }
        if (stop && *stop) {
            rc = err_set("%s: interrupted; nothing written", out);
            break;
        }
    }
    if (rc == 0) rc = data_h5_writer_commit(w, rd->n_skipped_bad, rd->n_dropped_long, rd->n_truncated);
    else data_h5_writer_abort(w);
    if (st) {
        memset(st, 0, sizeof *st);
        st->records = rd->n_records;
        st->tokens = tokens;
        st->skipped_bad = rd->n_skipped_bad;
        st->dropped_long = rd->n_dropped_long;
        st->truncated = rd->n_truncated;
        long pos = ftell(rd->fp);
        st->source_bytes = pos > 0 ? pos : 0;
        st->seconds = now_seconds() - t0;
    }
    data_reader_close(rd);
    return rc;
}

// --- reader

typedef struct h5_in {
    hid_t file;
    const char *path;
} h5_in;

static const char *type_name(hid_t t, char buf[64]) {
    H5T_class_t cl = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    switch (cl) {
    case H5T_INTEGER:
        snprintf(buf, 64, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", 8 * size);
        break;
    case H5T_FLOAT: snprintf(buf, 64, "float%zu", 8 * size); break;
    case H5T_STRING:
        snprintf(buf, 64, "%s", H5Tis_variable_str(t) > 0 ? "variable-length string" : "fixed-length string");
        break;
    case H5T_ENUM: snprintf(buf, 64, "enum (bool?)"); break;
    case H5T_COMPOUND: snprintf(buf, 64, "compound"); break;
    default: snprintf(buf, 64, "HDF5 type class %d", (int)cl); break;
    }
    return buf;
}

// Opens a 1-D dataset and checks its type: an integer of `size` bytes and `sign`, or (size 0)
// a variable-length string. 1 opened (*d, *n set), 0 missing (only when optional), -1 error.
static int open_1d(const h5_in *in, const char *name, size_t size, H5T_sign_t sign, const char *want,
                   int optional, hid_t *d, int64_t *n) {
    *d = -1;
    htri_t ex = H5Lexists(in->file, name, H5P_DEFAULT);
    if (ex <= 0) {
        if (optional) return 0;
        return err_set("%s: dataset '%s' missing (expected %s; not a text dataset from `lorac prepare`?)",
                       in->path, name, want);
    }
    hid_t ds = H5Dopen2(in->file, name, H5P_DEFAULT);
    if (ds < 0) return h5u_fail("%s: dataset '%s': cannot open (is it a dataset?)", in->path, name);
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    char tn[64];
    int ok = size ? H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == size && H5Tget_sign(t) == sign
                  : H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0;
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dim = 0;
    if (rank == 1) H5Sget_simple_extent_dims(sp, &dim, NULL);
    int rc = 1;
    if (!ok) rc = err_set("%s: dataset '%s': expected %s, found %s", in->path, name, want, type_name(t, tn));
    else if (rank != 1) rc = err_set("%s: dataset '%s': expected 1 dimension, found %d", in->path, name, rank);
    else if (h5u_check_extent(ds, in->path, name, dim, size ? size : sizeof(char *), HINT)) rc = -1;
    H5Tclose(t);
    H5Sclose(sp);
    if (rc < 0) {
        H5Dclose(ds);
        return -1;
    }
    *d = ds;
    *n = (int64_t)dim;
    return 1;
}

static int read_all(const h5_in *in, hid_t d, const char *name, hid_t mt, void *buf) {
    if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        return h5u_fail("%s: dataset '%s': read failed (truncated or corrupt file? re-run `lorac prepare`)",
                       in->path, name);
    return 0;
}

// Compares a string attribute with what the caller expects.
static int expect_str(const h5_in *in, const char *name, const char *want, const char *what) {
    char *v;
    int rc = h5u_attr_read_str(in->file, in->path, name, HINT, &v);
    if (rc < 0) return -1;
    if (rc == 0)
        return err_set("%s: attribute '%s' missing (expected '%s'; not written by `lorac prepare`? re-run it)",
                       in->path, name, want);
    rc = 0;
    if (strcmp(v, want))
        rc = err_set("%s: attribute '%s': expected '%s' (%s), found '%s': the file was prepared with other "
                     "settings; re-run `lorac prepare` with this config",
                     in->path, name, want, what, v);
    free(v);
    return rc;
}

// The checks of who made the file: kind, tokenizer, template, train_on_prompt, format.
static int check_identity(const h5_in *in, const tok_tokenizer *tok, const data_opts *o) {
    char *kind;
    int rc = h5u_attr_read_str(in->file, in->path, "kind", HINT, &kind);
    if (rc < 0) return -1;
    if (rc == 1 && strcmp(kind, "text")) {
        err_set("%s: attribute 'kind': expected 'text' (a prepared text dataset), found '%s'%s", in->path, kind,
                !strcmp(kind, "features") ? " (a vision feature cache belongs in vision.features)" : "");
        free(kind);
        return -1;
    }
    free(kind);
    char hash[17];
    snprintf(hash, sizeof hash, "%016" PRIx64, tok_hash(tok));
    char *v;
    rc = h5u_attr_read_str(in->file, in->path, "tokenizer_hash", HINT, &v);
    if (rc < 0) return -1;
    if (rc == 0)
        return err_set("%s: attribute 'tokenizer_hash' missing (expected %s; not written by `lorac prepare`? "
                       "re-run it)", in->path, hash);
    rc = 0;
    if (strcmp(v, hash))
        rc = err_set("%s: attribute 'tokenizer_hash': expected %s (this model's tokenizer), found %s: the file "
                     "was prepared with another tokenizer; re-run `lorac prepare` with this model",
                     in->path, hash, v);
    free(v);
    if (rc) return -1;
    if (expect_str(in, "template", o->template_ ? o->template_ : "llama3", "data.template")) return -1;
    int64_t top = 0;
    rc = attr_read_i64(in->file, in->path, "train_on_prompt", &top);
    if (rc < 0) return -1;
    if (rc == 0)
        return err_set("%s: attribute 'train_on_prompt' missing (not written by `lorac prepare`? re-run it)",
                       in->path);
    if ((top != 0) != (o->train_on_prompt != 0))
        return err_set("%s: attribute 'train_on_prompt': expected %s (data.train_on_prompt), found %s: the "
                       "loss masks differ; re-run `lorac prepare` with this config",
                       in->path, o->train_on_prompt ? "true" : "false", top ? "true" : "false");
    if (o->format && strcmp(o->format, "auto") && expect_str(in, "format", o->format, "data.format")) return -1;
    return 0;
}

// A counter attribute, when present, must agree with the datasets (a cut-short write shows here).
static int check_count(const h5_in *in, const char *name, int64_t found, const char *where) {
    int64_t v;
    int rc = attr_read_i64(in->file, in->path, name, &v);
    if (rc < 0) return -1;
    if (rc == 1 && v != found)
        return err_set("%s: attribute '%s' says %lld but %s holds %lld (incomplete or edited file; re-run "
                       "`lorac prepare`)", in->path, name, (long long)v, where, (long long)found);
    return 0;
}

// as data_reader's length policy: 1 keep (possibly truncated), 0 drop
static int apply_length(data_set *ds, const data_opts *o, data_record *rec) {
    int64_t max = o->max_seq_len, P = rec->image_pos >= 0 ? o->num_patches : 0;
    if (max <= 0 || rec->n + P <= max) return 1;
    if (!o->truncate || (rec->image_pos >= 0 && rec->image_pos + P > max)) {
        ds->n_dropped_long++;
        return 0;
    }
    rec->n = max - P;
    if (data_record_n_supervised(rec) == 0) {
        ds->n_dropped_long++;
        return 0;
    }
    ds->n_truncated++;
    return 1;
}

typedef struct h5_arrays {
    int32_t *tok;
    uint8_t *mask;
    int64_t *off, *lines, *pos;
    char **img;
    int64_t T, N;
} h5_arrays;

static int read_arrays(const h5_in *in, const tok_tokenizer *tok, h5_arrays *a) {
    hid_t dt = -1, dm = -1, doff = -1, dl = -1, dp = -1, di = -1;
    int64_t nt, nm, no, nl = 0, np = 0, ni = 0;
    int rc = -1;
    if (open_1d(in, "tokens", 4, H5T_SGN_2, "int32 [tokens]", 0, &dt, &nt) < 0 ||
        open_1d(in, "loss_mask", 1, H5T_SGN_NONE, "uint8 [tokens]", 0, &dm, &nm) < 0 ||
        open_1d(in, "doc_offsets", 8, H5T_SGN_2, "int64 [records + 1]", 0, &doff, &no) < 0 ||
        open_1d(in, "doc_lines", 8, H5T_SGN_2, "int64 [records]", 1, &dl, &nl) < 0 ||
        open_1d(in, "image_pos", 8, H5T_SGN_2, "int64 [records]", 1, &dp, &np) < 0 ||
        open_1d(in, "images", 0, 0, "variable-length UTF-8 strings [records]", 1, &di, &ni) < 0)
        goto out;
    if (nm != nt) {
        err_set("%s: dataset 'loss_mask': expected %lld values (as 'tokens'), found %lld", in->path,
                (long long)nt, (long long)nm);
        goto out;
    }
    if (no < 1) {
        err_set("%s: dataset 'doc_offsets': expected records + 1 >= 1 values, found 0", in->path);
        goto out;
    }
    a->T = nt;
    a->N = no - 1;
    if (dl >= 0 && nl != a->N) {
        err_set("%s: dataset 'doc_lines': expected %lld values (one per record), found %lld", in->path,
                (long long)a->N, (long long)nl);
        goto out;
    }
    if ((dp >= 0) != (di >= 0)) {
        err_set("%s: dataset '%s' missing (image_pos and images come together)", in->path,
                dp >= 0 ? "images" : "image_pos");
        goto out;
    }
    if (dp >= 0 && (np != a->N || ni != a->N)) {
        err_set("%s: dataset '%s': expected %lld values (one per record), found %lld", in->path,
                np != a->N ? "image_pos" : "images", (long long)a->N, (long long)(np != a->N ? np : ni));
        goto out;
    }
    if (check_count(in, "records", a->N, "'doc_offsets'") || check_count(in, "tokens", a->T, "'tokens'"))
        goto out;
    a->tok = xmalloc(sizeof(int32_t) * (size_t)(a->T ? a->T : 1));
    a->mask = xmalloc((size_t)(a->T ? a->T : 1));
    a->off = xmalloc(sizeof(int64_t) * (size_t)(a->N + 1));
    if ((a->T && (read_all(in, dt, "tokens", H5T_NATIVE_INT32, a->tok) ||
                  read_all(in, dm, "loss_mask", H5T_NATIVE_UINT8, a->mask))) ||
        read_all(in, doff, "doc_offsets", H5T_NATIVE_INT64, a->off))
        goto out;
    if (dl >= 0 && a->N) {
        a->lines = xmalloc(sizeof(int64_t) * (size_t)a->N);
        if (read_all(in, dl, "doc_lines", H5T_NATIVE_INT64, a->lines)) goto out;
    }
    if (dp >= 0 && a->N) {
        a->pos = xmalloc(sizeof(int64_t) * (size_t)a->N);
        a->img = xcalloc((size_t)a->N, sizeof(char *));
        hid_t st = h5u_vlen_utf8();
        int bad = read_all(in, dp, "image_pos", H5T_NATIVE_INT64, a->pos) ||
                  read_all(in, di, "images", st, a->img);
        H5Tclose(st);
        if (bad) goto out;
    }
    // values
    if (a->off[0] != 0) {
        err_set("%s: dataset 'doc_offsets': expected 0 first, found %lld", in->path, (long long)a->off[0]);
        goto out;
    }
    for (int64_t i = 0; i < a->N; i++) {
        if (a->off[i + 1] < a->off[i]) {
            err_set("%s: dataset 'doc_offsets': not monotonic at record %lld (%lld after %lld)", in->path,
                    (long long)i, (long long)a->off[i + 1], (long long)a->off[i]);
            goto out;
        }
        if (a->off[i + 1] > a->T) {
            err_set("%s: dataset 'doc_offsets': record %lld ends at %lld, past the end of 'tokens' (%lld)",
                    in->path, (long long)i, (long long)a->off[i + 1], (long long)a->T);
            goto out;
        }
    }
    if (a->off[a->N] != a->T) {
        err_set("%s: dataset 'doc_offsets': the last record ends at %lld but 'tokens' holds %lld", in->path,
                (long long)a->off[a->N], (long long)a->T);
        goto out;
    }
    int64_t V = tok_vocab_size(tok);
    for (int64_t i = 0; i < a->T; i++) {
        if (a->tok[i] < 0 || a->tok[i] >= V) {
            err_set("%s: dataset 'tokens': id %d at index %lld is outside the tokenizer's vocabulary [0, %lld) "
                    "(prepared with another tokenizer? re-run `lorac prepare`)",
                    in->path, a->tok[i], (long long)i, (long long)V);
            goto out;
        }
        if (a->mask[i] > 1) {
            err_set("%s: dataset 'loss_mask': expected 0 or 1, found %d at index %lld", in->path, a->mask[i],
                    (long long)i);
            goto out;
        }
    }
    for (int64_t i = 0; a->pos && i < a->N; i++) {
        int64_t n = a->off[i + 1] - a->off[i], p = a->pos[i];
        const char *s = a->img[i] ? a->img[i] : "";
        if (p < -1 || p > n) {
            err_set("%s: dataset 'image_pos': record %lld: expected -1 or 0..%lld, found %lld", in->path,
                    (long long)i, (long long)n, (long long)p);
            goto out;
        }
        if ((p >= 0) != (s[0] != 0)) {
            err_set("%s: dataset 'images': record %lld: %s (image_pos %lld)", in->path, (long long)i,
                    p >= 0 ? "expected an image path, found \"\"" : "expected \"\" (no image), found a path",
                    (long long)p);
            goto out;
        }
    }
    rc = 0;
out:;
    hid_t ds[] = {dt, dm, doff, dl, dp, di};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++)
        if (ds[i] >= 0) H5Dclose(ds[i]);
    return rc;
}

static void arrays_free(h5_arrays *a) {
    if (a->img)
        for (int64_t i = 0; i < a->N; i++) H5free_memory(a->img[i]);
    free(a->img);
    free(a->tok);
    free(a->mask);
    free(a->off);
    free(a->lines);
    free(a->pos);
}

int data_h5_load(data_set *ds, const char *path, const tok_tokenizer *tok, const data_opts *o) {
    h5u_quiet();
    memset(ds, 0, sizeof *ds);
    data_opts def = data_opts_default();
    if (!o) o = &def;
    if (data_opts_check(o)) return -1;
    struct stat sb;
    if (stat(path, &sb) != 0) return err_set("%s: cannot open: %s", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return err_set("%s: not an HDF5 file (no HDF5 signature; JSONL data should not be named .h5/.hdf5)",
                       path);
    }
    if (h5u_check_heaps(path, HINT)) return -1;
    hid_t fapl = h5u_file_access();
    h5_in in = {H5Fopen(path, H5F_ACC_RDONLY, fapl), path};
    H5Pclose(fapl);
    if (in.file < 0)
        return h5u_fail("%s: cannot read the HDF5 file (truncated or corrupt? re-run `lorac prepare`)", path);
    h5_arrays a = {0};
    char *source = NULL, *dir = NULL;
    int rc = -1;
    if (check_identity(&in, tok, o) || read_arrays(&in, tok, &a)) goto out;
    if (h5u_attr_read_str(in.file, path, "source", HINT, &source) < 0) goto out;
    dir = source && source[0] ? path_dirname(source) : path_dirname(path);
    ds->path = xstrdup(path);
    for (int64_t i = 0; i < a.N; i++) {
        data_record rec = {0};
        rec.n = a.off[i + 1] - a.off[i];
        rec.line = a.lines ? a.lines[i] : i + 1;
        rec.image_pos = a.pos ? a.pos[i] : -1;
        if (rec.image_pos >= 0 && o->num_patches <= 0) {
            err_set("%s: record %lld (line %lld of the source) has an image but no vision model is configured "
                    "(num_patches is 0)", path, (long long)i, (long long)rec.line);
            goto out;
        }
        rec.ids = xmalloc(sizeof(int32_t) * (size_t)(rec.n ? rec.n : 1));
        rec.mask = xmalloc((size_t)(rec.n ? rec.n : 1));
        if (rec.n) {
            memcpy(rec.ids, a.tok + a.off[i], sizeof(int32_t) * (size_t)rec.n);
            memcpy(rec.mask, a.mask + a.off[i], (size_t)rec.n);
        }
        if (rec.image_pos >= 0) {
            rec.image_ref = xstrdup(a.img[i]);
            rec.image = path_join(dir, a.img[i]);
        }
        if (!apply_length(ds, o, &rec)) {
            data_record_free(&rec);
            continue;
        }
        data_set_push(ds, &rec);
    }
    rc = 0;
out:
    arrays_free(&a);
    free(source);
    free(dir);
    H5Fclose(in.file);
    H5Eclear2(H5E_DEFAULT);
    if (rc) data_set_free(ds);
    return rc;
}

// --- dispatch

static int has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), k = strlen(ext);
    return n > k && !strcasecmp(path + n - k, ext);
}

int data_is_h5(const char *path) {
    if (has_ext(path, ".h5") || has_ext(path, ".hdf5")) return 1;
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    char sig[8];
    int is = fread(sig, 1, 8, fp) == 8 && !memcmp(sig, H5_SIGNATURE, 8);
    fclose(fp);
    return is;
}

int data_load_any(data_set *ds, const char *path, const tok_tokenizer *tok, const data_opts *o) {
    if (data_is_h5(path)) return data_h5_load(ds, path, tok, o);
    data_opts def = data_opts_default();
    return data_load(ds, path, tok, o ? o : &def);
}
