// params_io.c — parameter blocks and JSON configs to files (see params_io.h).
#include "params_io.h"

#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "util.h"

int params_save(const ag_params *p, const char *path, int grads) {
    st_writer *w = st_writer_new();
    for (int i = 0; i < p->n; i++) {
        const ag_tensor *t = p->t[i];
        st_writer_add_f32(w, t->name, ST_F32, t->ndim, t->shape, grads ? t->grad : t->data);
    }
    int rc = st_writer_write(w, path);
    st_writer_free(w);
    return rc;
}

int json_save(cJSON *j, const char *dir, const char *name) {
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    size_t n = strlen(txt);
    char *buf = xmalloc(n + 2);
    memcpy(buf, txt, n);
    buf[n++] = '\n';
    free(txt);
    char *path = path_join(dir, name);
    int rc = file_write_atomic(path, buf, n);
    free(path);
    free(buf);
    return rc;
}
