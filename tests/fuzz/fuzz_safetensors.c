// fuzz_safetensors.c — the safetensors reader (model/safetensors.c): header length, JSON header,
// tensor table (dtypes, shapes, data_offsets tiling), and the sharded index.
// Input: the bytes of a .safetensors file; or, when it starts with '{', a
// model.safetensors.index.json next to one valid shard "model-00001-of-00001.safetensors"
// (tensors "a" and "b"). Every float tensor that loads is also converted to fp32.
#include "fuzz_common.h"
#include "safetensors.h"

static void touch_all(st_model *m) {
    for (int i = 0; i < st_count(m); i++) {
        const st_tensor *t = st_get(m, i);
        int64_t n = st_numel(t);
        if (n > (1 << 20)) continue;   // bounded work per input; the data is in the file anyway
        float *dst = xmalloc((size_t)(n ? n : 1) * sizeof *dst);
        if (st_read_f32(t, dst) == 0 && st_find(m, t->name) != t) abort();
        free(dst);
    }
    (void)st_meta(m, "format");
}

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    if (size && data[0] == '{') {
        char *dir = path_join(fz_dir(), "sharded");
        st_writer *w = st_writer_new();
        float v[6] = {1, 2, 3, 4, 5, 6};
        int64_t sa[2] = {2, 3}, sb[1] = {2};
        st_writer_add_f32(w, "a", ST_F32, 2, sa, v);
        st_writer_add_f32(w, "b", ST_BF16, 1, sb, v);
        char *shard = path_join(dir, "model-00001-of-00001.safetensors");
        mkdir_p(dir);
        if (st_writer_write(w, shard) != 0) abort();
        st_writer_free(w);
        free(shard);
        char *idx = fz_write("sharded/model.safetensors.index.json", data, size);
        st_model *m = st_open(dir);
        if (m) {
            touch_all(m);
            st_close(m);
        }
        free(idx);
        free(dir);
        return 0;
    }
    char *path = fz_write("x.safetensors", data, size);
    st_model *m = st_open(path);
    if (m) {
        touch_all(m);
        st_close(m);
    }
    free(path);
    return 0;
}
