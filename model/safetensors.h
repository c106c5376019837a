// safetensors.h — reading (mmap) and writing Hugging Face safetensors files.
//
// Format (huggingface/safetensors): u64 little-endian header length n, n bytes of JSON
// {"__metadata__": {str: str}, "<name>": {"dtype": "BF16", "shape": [..], "data_offsets":
// [begin, end]}, ...}, then the data section; offsets are relative to the data section and,
// sorted, tile it exactly from 0 to its end.
//
// Reader: st_open maps one file, or every shard of a model folder, and validates the whole
// header before anything is used (the same rejections as the reference reader, plus
// duplicate names). Tensors stay in the mapping; st_read_f32 / st_load_f32 convert
// F32/F16/BF16/F64 to fp32. Every error names the file and the tensor.
//
// Writer: collects tensors (borrowed bytes, fp32 data converted on write, or a fill
// callback that produces fp32 chunks so huge tensors never exist in memory at once) and
// writes them atomically, in sorted name order with contiguous offsets, with
// __metadata__ {"format": "pt"} (transformers refuses files without it).
#ifndef LORAC_SAFETENSORS_H
#define LORAC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAXDIM 8
#define ST_MAX_HEADER 100000000ULL   // the reference reader's limit on the JSON header

typedef enum {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    // also accepted by the reference reader (readable as raw bytes only)
    ST_U16, ST_U32, ST_U64, ST_F8_E5M2, ST_F8_E4M3,
    ST_NDTYPES
} st_dtype;

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAXDIM];   // shape[0..ndim)
    const void *data;           // mmapped bytes (may be unaligned when the header is unpadded)
    size_t nbytes;
    const char *file;           // the shard's path (for messages)
} st_tensor;

// --- reader

typedef struct st_model st_model;   // one file or all shards of a folder

// A .safetensors file, or a folder holding model.safetensors or
// model.safetensors.index.json (+ its shards). NULL + err_set on any problem.
st_model *st_open(const char *path);
void st_close(st_model *m);
int st_count(const st_model *m);                                  // tensors, all shards
const st_tensor *st_get(const st_model *m, int i);                // sorted by name
const st_tensor *st_find(const st_model *m, const char *name);    // NULL if absent (no error)
const char *st_meta(const st_model *m, const char *key);          // __metadata__ value or NULL
const char *st_path(const st_model *m);                           // what st_open was given
int64_t st_numel(const st_tensor *t);

// dst[numel] = t as fp32 (F32/F16/BF16/F64). -1 + err_set for other dtypes.
int st_read_f32(const st_tensor *t, float *dst);
// Loads tensor `name` as fp32 into a fresh 64-byte aligned buffer (release with free())
// after checking its shape equals expect[0..ndim). NULL + err_set naming the file, the
// tensor, the expected and the found shapes.
float *st_load_f32(const st_model *m, const char *name, int ndim, const int64_t *expect);
// The same as BF16 (64-byte aligned, release with free()): BF16 tensors copied as they are,
// F32/F16 rounded to nearest-even (F64 via fp32) (as torch's .to(torch.bfloat16)); *rounded is set to 1
// when the file's dtype was not BF16.
uint16_t *st_load_bf16(const st_model *m, const char *name, int ndim, const int64_t *expect, int *rounded);
// Tensor `name`'s bytes in place in the read-only mapping (no copy: pages are read on first
// use and shared through the page cache) when the file holds it as `dtype`, with shape
// expect[0..ndim), at an address aligned to the element size; NULL otherwise, without an
// error (the caller then loads a copy, which reports any real problem). Valid until st_close.
const void *st_map_as(const st_model *m, const char *name, st_dtype dtype, int ndim, const int64_t *expect);
// 1 when p points into one of m's mapped files (memory the caller must not free).
int st_owns(const st_model *m, const void *p);
// The same check without loading: 0, or -1 + err_set.
int st_check_shape(const st_model *m, const char *name, int ndim, const int64_t *expect);

// --- writer

typedef struct st_writer st_writer;
// Produces fp32 values [start, start + count) of tensor `name` (row-major) into dst[count].
typedef void (*st_fill_fn)(void *ctx, const char *name, float *dst, int64_t start, int64_t count);

st_writer *st_writer_new(void);
// data (nbytes = numel × dtype size, in `dtype`) must stay valid until st_writer_write.
void st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                   const void *data);
// fp32 data written as dtype F32/F16/BF16/F64 (round-to-nearest-even, as torch's .to()).
void st_writer_add_f32(st_writer *w, const char *name, st_dtype dtype, int ndim,
                       const int64_t *shape, const float *data);
// Values generated at write time, in chunks (memory stays small for any tensor size).
void st_writer_add_fill(st_writer *w, const char *name, st_dtype dtype, int ndim,
                        const int64_t *shape, st_fill_fn fill, void *ctx);
void st_writer_meta(st_writer *w, const char *key, const char *value);   // "format" is "pt" unless set
// Atomic (temp + fsync + rename). Tensors in sorted name order, contiguous offsets; header
// padded with spaces to a multiple of 8. -1 + err_set (bad names/shapes, I/O errors).
int st_writer_write(st_writer *w, const char *path);
void st_writer_free(st_writer *w);

// --- dtypes and conversions

const char *st_dtype_name(st_dtype d);   // "BF16"
int st_dtype_size(st_dtype d);           // bytes per element
int st_dtype_parse(const char *s, st_dtype *out);   // -1 (no err_set) when unknown
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);        // round-to-nearest-even; NaN -> quiet NaN (as torch)
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);         // round-to-nearest-even, subnormals, overflow -> inf

#endif
