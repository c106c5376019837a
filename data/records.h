// records.h — training and evaluation records: each line of a JSONL file (one JSON object per
// line, blank lines skipped) becomes token ids and a loss mask, as docs/formats.md
// fixes them. Formats: chat, alpaca, text, caption, and chat with an image; `auto` decides per
// record from its fields. Templates: llama3 (default) and alpaca_classic (alpaca records only).
//
// Legend: n = tokens of a record, P = visual rows of an image (num_patches).
//
// How ids are made: the record is rendered to one string (special-token text included, chat
// contents trimmed as Python's str.strip() does, which is Jinja's `trim`), and that string is
// encoded at once with special tokens recognized (tok_encode(..., allow_special = 1)). The
// loss mask comes from byte offsets: the bytes of the tokens add up to the rendered string, and
// a token is supervised when it overlaps a supervised byte span (the assistant contents with
// their <|eot_id|>, alpaca_classic's output with <|end_of_text|>, a caption with its
// <|end_of_text|>). Records with an image are rendered, split where the image goes, and the two
// parts encoded separately (the first begins with <|begin_of_text|>): ids then hold no rows for
// the image, image_pos says where the P visual rows go.
//
// Errors name `FILE:LINE: field 'x': expected ..., found ...`. With skip_bad_lines a bad line
// is skipped and counted (n_skipped_bad) and its message passed to opts.warn (if set); records
// longer than max_seq_len rows (ids plus P image rows) are dropped or truncated and counted.
#ifndef LORAC_RECORDS_H
#define LORAC_RECORDS_H

#include <stdint.h>
#include <stdio.h>

#include "tokenizer.h"

// One record. Owned memory: ids, mask, image, image_ref (data_record_free).
typedef struct data_record {
    int32_t *ids;        // [n] token ids (no rows for the image)
    uint8_t *mask;       // [n] 1: ids[i] is supervised (a target predicted from row i-1)
    int64_t n;
    int64_t image_pos;   // the P visual rows go before ids[image_pos]; -1: no image
    char *image;         // image path resolved against the JSONL folder; NULL: no image
    char *image_ref;     // the image path as written in the JSONL (feature cache key); NULL: none
    int64_t line;        // 1-based line of the source file
} data_record;

void data_record_free(data_record *r);
// rows the record occupies in a model sequence: n + P when it has an image
int64_t data_record_rows(const data_record *r, int num_patches);
int64_t data_record_n_supervised(const data_record *r);

typedef void (*data_warn_fn)(void *ctx, const char *msg);

typedef struct data_opts {
    const char *format;     // "auto" (also NULL) | "chat" | "alpaca" | "text" | "caption"
    const char *template_;  // "llama3" (also NULL) | "alpaca_classic"
    int train_on_prompt;    // 1: every token but the first is supervised
    int skip_bad_lines;     // 1: a malformed line is skipped and counted instead of an error
    int max_seq_len;        // rows per record at most (ids + P image rows); <= 0: no limit
    int truncate;           // records over max_seq_len: 1 truncate, 0 drop (both counted)
    int num_patches;        // P visual rows per image; records with an image need P > 0
    int image_outside;      // cross-attention fusion: records keep their image (path, image_pos)
                            // but it takes no rows (num_patches 0 allowed)
    data_warn_fn warn;      // receives each skipped line's message (NULL: silent)
    void *warn_ctx;
} data_opts;

// Default options: format auto, template llama3, no length limit, nothing skipped.
data_opts data_opts_default(void);
// Checks format and template names: -1 + err_set naming the bad value.
int data_opts_check(const data_opts *o);

// --- where the image goes

#define DATA_IMAGE_MARK "<image>"   // the image's place in a user message or a prompt

// The one `<image>` splice (records with an image; generate --image): appends to ids the
// encoding of s[0..at) (special tokens recognized), then nrows ids -1 (the image's visual rows,
// filled in later from the projected features), then the encoding of s[at + skip..n), and sets
// *image_pos to the index of the first visual row. The two parts are encoded separately, so no
// token spans the image. at < 0: s[0..n) encoded at once, *image_pos = -1. 0, or -1 + err_set.
int data_encode_spliced(const tok_tokenizer *tok, const char *s, size_t n, int64_t at, size_t skip, int nrows,
                        tok_ids *ids, int64_t *image_pos);

// --- streaming reader (line by line; memory stays one record)

typedef struct data_reader {
    FILE *fp;
    char *path, *dir;       // the file and its folder (image paths are relative to it)
    const tok_tokenizer *tok;
    data_opts o;
    int is_txt, txt_done;   // a .txt file is one `text` document
    char *line;             // getline buffer
    size_t line_cap;
    int64_t lineno;         // lines read so far
    // counters
    int64_t n_records;      // records returned
    int64_t n_skipped_bad;  // malformed lines skipped (skip_bad_lines)
    int64_t n_dropped_long; // records over max_seq_len dropped
    int64_t n_truncated;    // records over max_seq_len truncated
} data_reader;

// Opens a JSONL (or .txt) file. NULL + err_set on failure.
data_reader *data_reader_open(const char *path, const tok_tokenizer *tok, const data_opts *o);
// Next record into *rec (caller frees it with data_record_free). 1: a record, 0: end of file,
// -1: error (err_set `FILE:LINE: ...`).
int data_reader_next(data_reader *r, data_record *rec);
void data_reader_close(data_reader *r);

// Turns one JSON object (text[0..len)) into a record, as data_reader_next does for a line of
// `path` (used for messages and to resolve image paths). 0, or -1 + err_set.
int data_record_from_json(data_reader *r, const char *text, size_t len, int64_t line,
                          data_record *rec);

// --- whole files in memory (token ids are small)

typedef struct data_set {
    data_record *r;         // [n] records kept (bad and dropped ones are not here)
    int64_t n, cap;
    int64_t n_skipped_bad, n_dropped_long, n_truncated;
    int64_t n_tokens;       // sum of r[i].n
    char *path;
} data_set;

// Reads every record of a JSONL file (or a .txt document). 0, or -1 + err_set (ds left empty).
int data_load(data_set *ds, const char *path, const tok_tokenizer *tok, const data_opts *o);
// Appends a record (takes ownership of rec's memory), e.g. when reading a prepared HDF5 file.
void data_set_push(data_set *ds, data_record *rec);
void data_set_free(data_set *ds);
// Every token id is inside the model's vocabulary (a tokenizer that does not match the model gives
// larger ids). -1 + err_set "FILE:LINE: token id I is outside the model's vocabulary (vocab_size V in
// MODEL/config.json): the tokenizer in MODEL does not match the model".
int data_set_check_vocab(const data_set *ds, int vocab_size, const char *model_dir);

#endif
