// fuzz_records.c — training JSONL records (data/records.c): line splitting, JSON objects, the
// chat / alpaca / text / caption formats, image fields, rendering, token masks.
// Input: a selector byte, then the JSONL file. The selector picks the options:
//   bits 0-2: format (auto, chat, alpaca, text, caption, auto, auto, auto);
//   bit 3: template alpaca_classic; bit 4: train_on_prompt; bit 5: skip_bad_lines;
//   bit 6: max_seq_len 16 (else none); bit 7: truncate (else drop).
// Records are tokenized with a tiny byte-level tokenizer; num_patches is 4; images a.png and
// b.png exist next to the file.
#include "fuzz_common.h"
#include "records.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const char *formats[8] = {"auto", "chat", "alpaca", "text", "caption", "auto", "auto", "auto"};
    tok_tokenizer *tok = fz_tiny_tokenizer();
    unsigned sel = data[0];
    data_opts o = data_opts_default();
    o.format = formats[sel & 7];
    o.template_ = sel & 8 ? "alpaca_classic" : "llama3";
    o.train_on_prompt = !!(sel & 16);
    o.skip_bad_lines = !!(sel & 32);
    o.max_seq_len = sel & 64 ? 16 : 0;
    o.truncate = !!(sel & 128);
    o.num_patches = 4;
    static int images;
    if (!images) {   // image fields are checked for existence: a.png and b.png exist
        free(fz_write("data/a.png", "png", 3));
        free(fz_write("data/b.png", "png", 3));
        images = 1;
    }
    char *path = fz_write("data/train.jsonl", data + 1, size - 1);
    data_reader *r = data_reader_open(path, tok, &o);
    if (r) {
        data_record rec;
        int rc;
        while ((rc = data_reader_next(r, &rec)) == 1) {
            if (rec.n < 0 || (rec.image_pos >= 0 && rec.image_pos > rec.n)) abort();
            for (int64_t i = 0; i < rec.n; i++)
                if (rec.ids[i] < 0 || rec.ids[i] >= tok_vocab_size(tok) || rec.mask[i] > 1) abort();
            (void)data_record_rows(&rec, o.num_patches);
            (void)data_record_n_supervised(&rec);
            data_record_free(&rec);
        }
        data_reader_close(r);
    }
    free(path);
    return 0;
}
