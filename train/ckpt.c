// ckpt.c — complete-or-nothing checkpoints (see ckpt.h).
#define _GNU_SOURCE
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"

static int is_step_dir(const char *name, int64_t *step) {
    if (strncmp(name, "step_", 5)) return 0;
    const char *p = name + 5;
    if (!*p) return 0;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return 0;
    *step = strtoll(p, NULL, 10);
    return 1;
}

// step numbers of complete checkpoints, ascending (malloc'd); also removes stale temp dirs
static int64_t *list_steps(const char *root, int *n_out, int clean_tmp) {
    *n_out = 0;
    DIR *d = opendir(root);
    if (!d) return NULL;
    int64_t *steps = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t s;
        if (is_step_dir(e->d_name, &s)) {
            if (n == cap) steps = xrealloc(steps, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *steps);
            steps[n++] = s;
        } else if (clean_tmp && !strncmp(e->d_name, "step_", 5) && strstr(e->d_name, ".tmp")) {
            char *p = path_join(root, e->d_name);
            rm_rf(p);
            free(p);
        }
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            int64_t t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    *n_out = n;
    return steps;
}

int ckpt_save(const char *output_dir, int64_t step, ckpt_write_fn write_weights, void *user,
              const ag_adamw *opt, const char *state_json, int keep_last) {
    char *root = path_join(output_dir, "checkpoints");
    int rc = -1, n;
    char name[64], tmpname[96];
    snprintf(name, sizeof name, "step_%07lld", (long long)step);
    snprintf(tmpname, sizeof tmpname, "%s.tmp%d", name, (int)getpid());
    char *final = path_join(root, name), *tmp = path_join(root, tmpname), *p = NULL;
    if (mkdir_p(root) != 0) goto done;
    free(list_steps(root, &n, 1));
    if (rm_rf(tmp) != 0 || mkdir_p(tmp) != 0) goto done;
    if (write_weights(user, tmp) != 0) goto done;
    if (opt) {
        st_writer *w = st_writer_new();
        int64_t shape[1] = {opt->n};
        st_writer_add(w, "exp_avg", ST_F32, 1, shape, opt->m);
        st_writer_add(w, "exp_avg_sq", ST_F32, 1, shape, opt->v);
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)opt->t);
        st_writer_meta(w, "step", buf);
        p = path_join(tmp, "optimizer.safetensors");
        int wr = st_writer_write(w, p);
        st_writer_free(w);
        free(p);
        p = NULL;
        if (wr) goto done;
    }
    p = path_join(tmp, "trainer_state.json");
    if (file_write_atomic(p, state_json, strlen(state_json)) != 0) goto done;
    if (fsync_dir(tmp) != 0) goto done;
    if (dir_exists(final) && rm_rf(final) != 0) goto done;   // re-saving the same step
    if (rename(tmp, final) != 0) {
        err_set("%s: cannot rename to %s: %s", tmp, final, strerror(errno));
        goto done;
    }
    if (fsync_dir(root) != 0) goto done;
    if (keep_last > 0) {
        int64_t *steps = list_steps(root, &n, 0);
        for (int i = 0; i < n - keep_last; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "step_%07lld", (long long)steps[i]);
            char *old = path_join(root, nm);
            rm_rf(old);
            free(old);
        }
        free(steps);
    }
    rc = 0;
done:
    if (rc) rm_rf(tmp);
    free(p);
    free(root);
    free(final);
    free(tmp);
    return rc;
}

char *ckpt_find_latest(const char *output_dir) {
    char *root = path_join(output_dir, "checkpoints");
    int n;
    int64_t *steps = list_steps(root, &n, 0);
    char *res = NULL;
    if (n > 0) {
        char nm[64];
        snprintf(nm, sizeof nm, "step_%07lld", (long long)steps[n - 1]);
        res = path_join(root, nm);
    }
    free(steps);
    free(root);
    return res;
}

int ckpt_load_optimizer(const char *dir, ag_adamw *opt) {
    char *p = path_join(dir, "optimizer.safetensors");
    st_model *st = st_open(p);
    int rc = -1;
    if (!st) goto done;
    int64_t shape[1] = {opt->n};
    float *m = st_load_f32(st, "exp_avg", 1, shape);
    float *v = m ? st_load_f32(st, "exp_avg_sq", 1, shape) : NULL;
    if (!m || !v) {
        free(m);
        goto done;
    }
    memcpy(opt->m, m, (size_t)opt->n * sizeof(float));
    memcpy(opt->v, v, (size_t)opt->n * sizeof(float));
    free(m);
    free(v);
    const char *t = st_meta(st, "step");
    if (!t) {
        err_set("%s: metadata 'step' is missing", p);
        goto done;
    }
    opt->t = strtoll(t, NULL, 10);
    rc = 0;
done:
    if (st) st_close(st);
    free(p);
    return rc;
}

char *ckpt_read_state(const char *dir) {
    char *p = path_join(dir, "trainer_state.json");
    char *s = file_read_all(p, NULL);
    free(p);
    return s;
}
