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
    if (!*p || strlen(p) > 18) return 0;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return 0;
    *step = strtoll(p, NULL, 10);
    return 1;
}

// step numbers of the step folders, ascending (malloc'd); clean_tmp also removes the
// temporaries of interrupted saves and prunes ("step_*.tmp*")
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

char *ckpt_path(const char *output_dir, int64_t step) {
    char nm[48];
    snprintf(nm, sizeof nm, "checkpoints/step_%07lld", (long long)step);
    return path_join(output_dir, nm);
}

// removes all but the newest keep_last: each folder is first renamed to a temporary name, so
// an interrupted removal never leaves a partial folder under a checkpoint's name
static void prune(const char *output_dir, const char *root, int keep_last) {
    int n;
    int64_t *steps = list_steps(root, &n, 0);
    for (int i = 0; i < n - keep_last; i++) {
        char *old = ckpt_path(output_dir, steps[i]);
        size_t len = strlen(old) + 32;
        char *gone = xmalloc(len);
        snprintf(gone, len, "%s.tmp.prune%d", old, (int)getpid());
        if (rename(old, gone) == 0) {
            fault_point2("pruned", old);
            rm_rf(gone);
        }
        free(old);
        free(gone);
    }
    free(steps);
}

int ckpt_save(const char *output_dir, int64_t step, ckpt_write_fn write_weights, void *user,
              const ag_adamw *opt, const char *state_json, int keep_last) {
    char *root = path_join(output_dir, "checkpoints");
    int rc = -1;
    char *final = ckpt_path(output_dir, step), *p = NULL;
    size_t tn = strlen(final) + 32;
    char *tmp = xmalloc(tn);
    snprintf(tmp, tn, "%s.tmp%d", final, (int)getpid());
    if (mkdir_p(root) != 0) goto done;
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
    if (dir_replace(tmp, final) != 0) goto done;   // re-saving a step: exchanged, never deleted first
    fault_point2("checkpoint in place", final);
    if (fsync_dir(root) != 0) goto done;
    if (keep_last > 0) prune(output_dir, root, keep_last);
    rc = 0;
done:
    if (rc) rm_rf(tmp);
    free(p);
    free(root);
    free(final);
    free(tmp);
    return rc;
}

int64_t *ckpt_steps(const char *output_dir, int *n) {
    char *root = path_join(output_dir, "checkpoints");
    int64_t *steps = list_steps(root, n, 0);
    free(root);
    for (int i = 0; i < *n / 2; i++) {   // newest first
        int64_t t = steps[i];
        steps[i] = steps[*n - 1 - i];
        steps[*n - 1 - i] = t;
    }
    return steps;
}

char *ckpt_find_latest(const char *output_dir) {
    int n;
    int64_t *steps = ckpt_steps(output_dir, &n);
    char *res = n > 0 ? ckpt_path(output_dir, steps[0]) : NULL;
    free(steps);
    return res;
}

void ckpt_remove_stale(const char *output_dir) {
    char *root = path_join(output_dir, "checkpoints");
    int n;
    free(list_steps(root, &n, 1));
    free(root);
}

int ckpt_set_aside(const char *dir) {
    size_t n = strlen(dir) + 16;
    char *to = xmalloc(n);
    snprintf(to, n, "%s.damaged", dir);
    int rc = rm_rf(to);
    if (rc == 0 && rename(dir, to) != 0) rc = err_set("%s: cannot rename to %s: %s", dir, to, strerror(errno));
    free(to);
    return rc;
}

int ckpt_load_optimizer(const char *dir, int64_t n, float *m_out, float *v_out, int64_t *t_out) {
    char *p = path_join(dir, "optimizer.safetensors");
    st_model *st = st_open(p);
    int rc = -1;
    float *m = NULL, *v = NULL;
    if (!st) goto done;
    int64_t shape[1] = {n};
    m = st_load_f32(st, "exp_avg", 1, shape);
    v = m ? st_load_f32(st, "exp_avg_sq", 1, shape) : NULL;
    if (!m || !v) goto done;
    const char *t = st_meta(st, "step");
    char *end = NULL;
    long long steps = t ? strtoll(t, &end, 10) : -1;
    if (!t || end == t || *end || steps < 0) {
        err_set("%s: metadata 'step': expected an integer >= 0, found %s", p, t ? t : "none");
        goto done;
    }
    memcpy(m_out, m, (size_t)n * sizeof(float));
    memcpy(v_out, v, (size_t)n * sizeof(float));
    *t_out = steps;
    rc = 0;
done:
    free(m);
    free(v);
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
