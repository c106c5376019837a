// tokenizer.h — the Llama 3 tokenizer: byte-level BPE over the Llama 3 pre-tokenizer regex,
// read from a model folder's tokenizer.json (HF) or original/tokenizer.model (tiktoken),
// with the 256 special tokens (ids 128000..128255); the chat rendering is in model/chat.h.
// Encoding equals tiktoken / HF tokenizers, including invalid UTF-8 input: that is first repaired
// the standard way (each maximal invalid subpart -> U+FFFD, as Python's decode(errors="replace"),
// Rust's from_utf8_lossy and WHATWG's TextDecoder do), then encoded as HF does the decoded text.
// tok_encode is thread-safe (the tokenizer is read-only after tok_load).
#ifndef LORAC_TOKENIZER_H
#define LORAC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tok_tokenizer tok_tokenizer;

// A growable id buffer. tok_ids_free releases it.
typedef struct tok_ids {
    int32_t *ids;
    size_t n, cap;
} tok_ids;
void tok_ids_push(tok_ids *v, int32_t id);
void tok_ids_free(tok_ids *v);

// Loads from DIR/tokenizer.json, else DIR/original/tokenizer.model (tiktoken; special tokens
// then come from DIR/tokenizer_config.json if present, else the Llama 3 defaults), else
// DIR/tokenizer.model. NULL + err_set naming the file on failure.
tok_tokenizer *tok_load(const char *model_dir);
void tok_free(tok_tokenizer *t);

int tok_vocab_size(const tok_tokenizer *t);          // including special tokens
// Appends the ids of text[0..len) to out. allow_special: special-token text such as
// "<|eot_id|>" becomes its id (as HF tokenizers do); otherwise it is ordinary text.
int tok_encode(const tok_tokenizer *t, const char *text, size_t len, int allow_special, tok_ids *out);
// Id of a special token by its text ("<|begin_of_text|>"), or -1.
int32_t tok_special(const tok_tokenizer *t, const char *text);
int tok_is_special(const tok_tokenizer *t, int32_t id);
// Bytes of one token (special tokens give their text). *len set; NULL for an unknown id.
const char *tok_piece(const tok_tokenizer *t, int32_t id, size_t *len);

// Streaming decode to UTF-8: feed ids one by one; complete UTF-8 characters are emitted,
// partial ones held until complete (invalid sequences become U+FFFD as HF does).
typedef struct tok_decoder {
    unsigned char pending[8];
    int npending;
} tok_decoder;
// Writes the text that became complete with `id` into buf (at most cap-1 bytes, NUL
// terminated); returns its length.
size_t tok_decode_step(const tok_tokenizer *t, tok_decoder *d, int32_t id, char *buf, size_t cap);
// Whole-sequence decode into a malloc'd NUL-terminated string: the ids' bytes (special tokens as
// their text, unknown ids skipped) with invalid UTF-8 repaired, as HF tokenizers' decode; no
// transformers-style clean_up_tokenization_spaces (it would change the text).
char *tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n);
// The same, also giving the length (the text may hold NUL bytes).
char *tok_decode_n(const tok_tokenizer *t, const int32_t *ids, size_t n, size_t *out_len);
// A buffer of this many bytes always holds one tok_decode_step output (3 * (longest piece + 8) + 1).
size_t tok_decode_cap(const tok_tokenizer *t);
// End of stream: a character still incomplete becomes U+FFFD (as tok_decode ends); resets d.
// Streaming steps + flush give exactly tok_decode of the same ids.
size_t tok_decode_flush(tok_decoder *d, char *buf, size_t cap);

// UTF-8 helpers. tok_encode repairs invalid input itself: each maximal invalid subpart becomes
// U+FFFD (Python's bytes.decode("utf-8", "replace"), Rust's from_utf8_lossy), then encodes that
// text exactly as HF tokenizers / tiktoken do. So the bytes of the ids equal the *repaired* text:
// callers that map token bytes back onto their input should repair it first.
int tok_utf8_valid(const char *s, size_t len);
// malloc'd NUL-terminated repaired copy of s[0..len); *out_len its length.
char *tok_utf8_repair(const char *s, size_t len, size_t *out_len);

// Hash identifying the tokenizer's vocabulary, merges and special tokens (for HDF5 caches).
uint64_t tok_hash(const tok_tokenizer *t);

#endif
