// h5data.h — prepared text datasets in HDF5 (`lorac prepare`): the records of a JSONL file,
// tokenized once, stored so `train`/`eval` load them without the tokenizer's work. Readable with
// h5py (docs/formats.md "Prepared HDF5 files"). Legend: N = records, T = tokens of all records together.
//
// File layout (all datasets 1-D, chunked and extendible, optionally deflate-compressed):
//   tokens       int32  [T]    the ids of every record, concatenated in file order
//   loss_mask    uint8  [T]    1: the token is supervised (data_record.mask)
//   doc_offsets  int64  [N+1]  record i is tokens[doc_offsets[i] : doc_offsets[i+1]]
//   doc_lines    int64  [N]    1-based line of the record in the source file
//   image_pos    int64  [N]    only when some record has an image: data_record.image_pos (-1 none)
//   images       vlen UTF-8 string [N]   with image_pos: the image path as written in the JSONL
//                              (data_record.image_ref), "" for none
// Attributes of the root group (strings are variable-length UTF-8, numbers int64):
//   kind ("text"), lorac_version ("0.1"), tokenizer_hash (tok_hash as 16 hex digits), format,
//   template, train_on_prompt, max_seq_len, truncation ("drop" | "truncate"), num_patches,
//   source (the JSONL path as given), source_size (bytes), records, tokens, skipped_bad,
//   dropped_long, truncated.
// A record's resolved image path (data_record.image) is the image path joined to the folder of
// `source`, as data_load resolves it against the JSONL's folder (run from the same directory).
//
//   data_h5_stats st;
//   if (data_h5_prepare("x.h5", "train.jsonl", tok, &opts, 1, NULL, &st)) fail;
//   data_set ds;
//   if (data_load_any(&ds, "x.h5", tok, &opts)) fail;   // or a .jsonl / .txt file
#ifndef LORAC_H5DATA_H
#define LORAC_H5DATA_H

#include <signal.h>
#include <stdint.h>

#include "records.h"
#include "tokenizer.h"

#define DATA_H5_VERSION "0.1"

// --- streaming writer: records appended one by one, memory stays a bounded buffer

typedef struct data_h5_writer data_h5_writer;

// Creates "<path>.tmp.<pid>" (renamed over path by data_h5_writer_commit). `source` is the JSONL
// the records come from (recorded with its size); o gives the recorded format, template,
// train_on_prompt, max_seq_len, truncation and num_patches. compress: deflate level 1.
// NULL + err_set on failure.
data_h5_writer *data_h5_writer_open(const char *path, const char *source, const tok_tokenizer *tok,
                                    const data_opts *o, int compress);
// Appends one record (copied; the caller keeps rec). 0, or -1 + err_set.
int data_h5_writer_add(data_h5_writer *w, const data_record *rec);
// Flushes, writes the counters and the other attributes, closes, fsyncs and renames the file
// into place. Frees w (also on failure, when the temporary file is removed). 0, or -1 + err_set.
int data_h5_writer_commit(data_h5_writer *w, int64_t skipped_bad, int64_t dropped_long,
                          int64_t truncated);
// Closes and removes the temporary file; frees w. NULL is fine.
void data_h5_writer_abort(data_h5_writer *w);
// The temporary file being written (for a signal handler that must unlink it).
const char *data_h5_writer_tmp_path(const data_h5_writer *w);

typedef struct data_h5_stats {
    int64_t records, tokens, skipped_bad, dropped_long, truncated;
    int64_t source_bytes;   // size of the JSONL read
    double seconds;         // wall time of the whole preparation
} data_h5_stats;

// Whole pipeline: data_reader over `source` with o, every record appended, committed to `out`.
// stop (may be NULL): checked after each record; when it becomes non-zero the temporary file is
// removed and -1 returned with err_set "interrupted". st (may be NULL) receives the counters.
int data_h5_prepare(const char *out, const char *source, const tok_tokenizer *tok, const data_opts *o,
                    int compress, const volatile sig_atomic_t *stop, data_h5_stats *st);

// --- reading

// Loads a prepared file into ds (data_set_push per record; ds->path = path). The file must have
// been made with this tokenizer (tokenizer_hash), o->template_ and o->train_on_prompt, and with
// o->format unless that is "auto"/NULL; a mismatch is an error naming the file, the attribute,
// expected vs found, with the hint to re-run `lorac prepare`. o->max_seq_len, o->truncate and
// o->num_patches are applied as data_reader does (records over the limit dropped or truncated,
// counted in ds; a record with an image needs num_patches > 0). Structure is validated (missing
// datasets, dtypes, offsets, mask values, ids outside the vocabulary). o NULL: defaults.
// 0, or -1 + err_set (ds left empty).
int data_h5_load(data_set *ds, const char *path, const tok_tokenizer *tok, const data_opts *o);

// 1 when path is an HDF5 file: the signature "\211HDF\r\n\032\n" at its start, or (for a file
// that cannot be read) a .h5/.hdf5 name. 0 otherwise.
int data_is_h5(const char *path);
// data_h5_load for HDF5 files (data_is_h5), else data_load (JSONL, or .txt as one document).
int data_load_any(data_set *ds, const char *path, const tok_tokenizer *tok, const data_opts *o);

#endif
