// fuzz_tokenizer.c — tokenizer loading (model/tokenizer.c): tokenizer.json (HF byte-level BPE with
// its pre-tokenizer regex, vocab, merges, added tokens) and tiktoken's tokenizer.model (+ the
// special tokens of tokenizer_config.json).
// Input: a selector byte, then the file:
//   selector % 3 == 0: DIR/tokenizer.json;
//   selector % 3 == 1: DIR/original/tokenizer.model (Llama 3 special tokens added);
//   selector % 3 == 2: DIR/original/tokenizer.model, then after the first NUL byte
//                      DIR/tokenizer_config.json.
// A tokenizer that loads encodes and decodes a fixed text (special tokens allowed).
#include "fuzz_common.h"

static const char text[] = "<|begin_of_text|>Hello, world! 123 4567  \n\n caf\xc3\xa9 \xff\xfe ab<|eot_id|>";

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int sel = data[0] % 3;
    data++;
    size--;
    char *dir = path_join(fz_dir(), "tokdir");
    char *files[2] = {NULL, NULL};
    if (sel == 0) {
        files[0] = fz_write("tokdir/tokenizer.json", data, size);
    } else {
        const uint8_t *a, *b;
        size_t an, bn;
        if (sel == 2) fz_split(data, size, &a, &an, &b, &bn);
        else a = data, an = size, bn = 0, b = NULL;
        files[0] = fz_write("tokdir/original/tokenizer.model", a, an);
        if (sel == 2) files[1] = fz_write("tokdir/tokenizer_config.json", b, bn);
    }
    tok_tokenizer *t = tok_load(dir);
    if (t) {
        tok_ids ids = {0};
        if (tok_encode(t, text, sizeof text - 1, 1, &ids) == 0) {
            char *s = tok_decode(t, ids.ids, ids.n);
            free(s);
            tok_decoder d = {0};
            size_t cap = tok_decode_cap(t);
            char *buf = xmalloc(cap);
            for (size_t i = 0; i < ids.n; i++) tok_decode_step(t, &d, ids.ids[i], buf, cap);
            tok_decode_flush(&d, buf, cap);
            free(buf);
        }
        tok_ids_free(&ids);
        tok_free(t);
    }
    for (int i = 0; i < 2; i++)
        if (files[i]) {
            unlink(files[i]);
            free(files[i]);
        }
    free(dir);
    return 0;
}
