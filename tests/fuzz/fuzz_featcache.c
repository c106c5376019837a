// fuzz_featcache.c — the vision feature cache (data/featcache.c): data_fc_open's structure checks
// (datasets, dtypes, shapes, image names, attributes), then every row read.
// Input: the .h5 file (seeds: tests/fuzz/gen_seeds.c).
#include "featcache.h"
#include "fuzz_common.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    char *path = fz_write("fc/features.h5", data, size);
    data_fc *fc = data_fc_open(path, NULL);
    if (fc) {
        int64_t n = data_fc_count(fc), per = (int64_t)data_fc_patches(fc) * data_fc_hidden(fc);
        if (n < 0 || per < 0) abort();
        float *row = xmalloc((size_t)(per ? per : 1) * sizeof *row);
        for (int64_t i = 0; i < n && i < 64; i++) {
            const char *ref = data_fc_image(fc, i);
            if (!ref || data_fc_find(fc, ref) < 0) abort();
            (void)data_fc_read_row(fc, i, row);
        }
        free(row);
        data_fc_close(fc);
    }
    free(path);
    return 0;
}
