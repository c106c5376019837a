// featcache.h — the vision feature cache (`lorac prepare` in projector modes): SigLIP features
// of every unique image of a caption dataset, computed once and stored in HDF5 (readable with
// h5py), so projector training skips the vision tower (config `vision.features: FILE.h5`).
// Legend: N = unique images, P = patches per image (num_patches), C = vision hidden size.
//
// File layout:
//   features  float32 [N, P, C]   chunked one image per chunk (Fletcher-32 checksum), extendible
//   images    vlen UTF-8 string [N]  the image path as written in the JSONL
//                                    (data_record.image_ref): the lookup key of row i
// Attributes of the root group (strings vlen UTF-8, integers int64, floats float64 / float32[3]):
//   kind ("vision_features"), lorac_version, vision_model_hash (16 hex digits, see
//   data_fc_model_hash), select_layer, image_size, patch_size, num_patches, hidden_size,
//   image_mean float32[3], image_std float32[3], rescale_factor, resize ("bicubic"),
//   precision ("fp32" or "bf16": the tower's precision when the features were computed),
//   source (the JSONL path(s) the images came from), images (N).
//
// Reading validates every attribute that changes the features against the current vision
// folder, select_layer and precision; a mismatch is refused with
//   FILE: attribute 'select_layer': expected -2, found -1 (the cache was made for another vision
//   setup; re-run `lorac prepare`)
//
//   data_fc *fc = data_fc_open_for("feat.h5", vision_dir, select_layer);   // NULL + err_set
//   data_fc_read(fc, rec.image_ref, out);                  // out [P*C], one image on demand
//   data_fc_close(fc);
//
// HDF5 is not thread-safe here (serial build): use a data_fc from one thread at a time.
#ifndef LORAC_FEATCACHE_H
#define LORAC_FEATCACHE_H

#include <signal.h>
#include <stdint.h>

#include "hfconfig.h"
#include "image.h"
#include "siglip.h"

#define DATA_FC_VERSION "0.1"

// What the features depend on: the vision weights, the layer and the preprocessing.
typedef struct data_fc_ident {
    char model_hash[17];          // 16 hex digits of data_fc_model_hash
    int select_layer;             // as in the config (-2, -1, or a layer index)
    int image_size, patch_size, num_patches, hidden_size;
    float image_mean[3], image_std[3];
    float rescale_factor;
    char resize[16];              // "bicubic"
    char precision[8];            // "fp32" or "bf16" (ag_precision_name): the tower's precision
} data_fc_ident;

// Identity hash of a vision folder, cheap for multi-GB checkpoints: FNV-1a 64 over config.json,
// and per weight file (model.safetensors, or model.safetensors.index.json and its shards in
// sorted order) its size, its safetensors header and 16 sampled 4 KiB blocks of its data.
// -1 + err_set naming the missing/unreadable file.
int data_fc_model_hash(const char *vision_dir, uint64_t *out);

// Fills id for the folder (data_fc_model_hash), its loaded config, select_layer and the
// precision the tower runs in. -1 + err_set.
int data_fc_ident_init(data_fc_ident *id, const char *vision_dir, const hf_siglip_config *cfg,
                       int select_layer, ag_precision precision);

// --- streaming writer: one image's features at a time (memory: one image)

typedef struct data_fc_writer data_fc_writer;

// Creates "<path>.tmp.<pid>" (renamed over path by data_fc_writer_commit). source: recorded as
// the `source` attribute (may be NULL). NULL + err_set on failure.
data_fc_writer *data_fc_writer_open(const char *path, const data_fc_ident *id, const char *source);
// 1 when image_ref was already added (each unique image is stored once), else 0.
int data_fc_writer_has(const data_fc_writer *w, const char *image_ref);
// Appends one image: feat [P*C] (row-major [P, C]). Adding a ref twice is an error.
// 0, or -1 + err_set.
int data_fc_writer_add(data_fc_writer *w, const char *image_ref, const float *feat);
int64_t data_fc_writer_count(const data_fc_writer *w);
// Writes the attributes, closes, fsyncs and renames into place. Frees w (also on failure,
// when the temporary file is removed). 0, or -1 + err_set.
int data_fc_writer_commit(data_fc_writer *w);
// Closes and removes the temporary file; frees w. NULL is fine.
void data_fc_writer_abort(data_fc_writer *w);
// The temporary file being written (for messages / signal handlers).
const char *data_fc_writer_tmp_path(const data_fc_writer *w);

// --- reader

typedef struct data_fc data_fc;

// Opens a cache and validates it: structure (datasets, dtypes, shapes, unique image names) and,
// when expect is non-NULL, every attribute in data_fc_ident (model hash last, so a changed
// select_layer or preprocessing is named precisely). Builds the image_ref -> row lookup.
// NULL + err_set naming the file, the attribute, expected vs found and "re-run `lorac prepare`".
data_fc *data_fc_open(const char *path, const data_fc_ident *expect);
// The usual call: loads vision_dir's config (no weights), data_fc_ident_init with
// select_layer and precision, then data_fc_open. vision_dir NULL: no validation against a
// model (the structure is checked, and the precision). NULL + err_set.
data_fc *data_fc_open_for(const char *path, const char *vision_dir, int select_layer, ag_precision precision);
// 0 when the cache's features were computed in `precision`, else -1 + err_set naming the file
// and both precisions (features of an fp32 tower are not reused by a bf16 run, nor the reverse).
int data_fc_check_precision(const data_fc *fc, ag_precision precision);
void data_fc_close(data_fc *fc);

int64_t data_fc_count(const data_fc *fc);               // N
int data_fc_patches(const data_fc *fc);                 // P
int data_fc_hidden(const data_fc *fc);                  // C
const char *data_fc_image(const data_fc *fc, int64_t row);   // the image_ref of a row
const data_fc_ident *data_fc_get_ident(const data_fc *fc);   // as stored in the file
// Row of image_ref, or -1 when the cache does not hold it (no err_set).
int64_t data_fc_find(const data_fc *fc, const char *image_ref);
// One image's features into out [P*C] (a hyperslab read of one row). -1 + err_set when the
// image is not in the cache ("FILE: image 'x.png' is not in the feature cache (N images; made
// from another data file? re-run `lorac prepare`)") or on a read failure.
int data_fc_read(data_fc *fc, const char *image_ref, float *out);
int data_fc_read_row(data_fc *fc, int64_t row, float *out);
// n images in order into out [n*P*C] (data_fc_read each). 0, or -1 + err_set naming the first
// missing image; *failed (may be NULL) = its index, or -1.
int data_fc_read_many(data_fc *fc, const char *const *image_refs, int n, float *out, int *failed);

// --- computing a cache (featbuild.c)

// The preprocessing of a SigLIP folder as img_norm: its image_mean/std, and its rescale_factor
// (exactly 1/255 in double when the config holds 1/255, as transformers' Python float).
img_norm data_fc_norm(const hf_siglip_config *cfg);

typedef struct data_fc_build_stats {
    int64_t images;         // unique images written
    int64_t refs;           // image references given (duplicates included)
    double seconds;         // wall time of decoding + features + writing
    double decode_seconds;  // time the feature loop waited for decoded images
} data_fc_build_stats;

// Computes the features of n image references (refs[i] as written in the JSONL, paths[i] the
// resolved file) with siglip_features in batches of `batch` (decoding the next batch on a
// background thread, data/prefetch.h) and writes the cache `out` (atomic). Duplicate refs are
// computed once; one ref naming two different paths is an error. stop (may be NULL): checked
// between batches ("interrupted"). 0, or -1 + err_set (no output file left behind).
int data_fc_build(const char *out, const char *vision_dir, const siglip_model *m, int select_layer,
                  const char *const *refs, const char *const *paths, int64_t n, int batch, int64_t max_pixels,
                  const char *source, const volatile sig_atomic_t *stop, data_fc_build_stats *st);

#endif
