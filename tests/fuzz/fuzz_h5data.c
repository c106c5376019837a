// fuzz_h5data.c — prepared text datasets (data/h5data.c): an HDF5 file's attributes, datasets,
// dtypes, extents, offsets, masks and token ids, read by data_h5_load.
// Input: the .h5 file. It is read with a tiny byte-level tokenizer (seeds are made with it:
// tests/fuzz/gen_seeds.c), format auto, template llama3, num_patches 4.
#include "fuzz_common.h"
#include "h5data.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    tok_tokenizer *tok = fz_tiny_tokenizer();
    char *path = fz_write("h5/train.h5", data, size);
    data_opts o = data_opts_default();
    o.num_patches = 4;
    data_set ds;
    memset(&ds, 0, sizeof ds);
    if (data_h5_load(&ds, path, tok, &o) == 0) {
        for (int64_t i = 0; i < ds.n; i++)
            for (int64_t k = 0; k < ds.r[i].n; k++)
                if (ds.r[i].ids[k] < 0 || ds.r[i].ids[k] >= tok_vocab_size(tok)) abort();
        data_set_free(&ds);
    }
    free(path);
    return 0;
}
