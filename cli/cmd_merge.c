// cmd_merge.c — `lorac merge --model DIR --adapter DIR --out DIR`: a new Hugging Face model
// folder with the LoRA adapter merged into the base weights, W' = W + s·B·A, each tensor in
// its input dtype and sharded like the input; every other file of the folder is copied.
// The output folder is built under a temporary name and renamed when complete.
#define _GNU_SOURCE
#include <cJSON.h>
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "opts.h"
#include "hfconfig.h"
#include "lora.h"
#include "safetensors.h"

typedef struct merge_ctx {
    const st_model *st;
    const lora_adapter *lora;
    char *cur;             // tensor whose merged values are in buf
    float *buf;
} merge_ctx;

// (layer, projection) of a base weight name, or -1
static int target_of(const char *name, int *layer) {
    int l, n = 0;
    char mod[32], proj[32];
    if (sscanf(name, "model.layers.%d.%31[a-z_].%31[a-z_].weight%n", &l, mod, proj, &n) != 3 || name[n]) return -1;
    for (int t = 0; t < LLAMA_NPROJ; t++)
        if (!strcmp(proj, llama_proj_names[t]) && !strcmp(mod, t <= LLAMA_O ? "self_attn" : "mlp")) {
            *layer = l;
            return t;
        }
    return -1;
}

static void merged_fill(void *user, const char *name, float *dst, int64_t start, int64_t count) {
    merge_ctx *m = user;
    if (!m->cur || strcmp(m->cur, name)) {   // first chunk of this tensor: W + s·B·A in fp32
        const st_tensor *t = st_find(m->st, name);
        int layer, p = target_of(name, &layer);
        const llama_lora_slot *s = &m->lora->slots[layer * LLAMA_NPROJ + p];
        int64_t out = t->shape[0], in = t->shape[1];
        free(m->buf);
        m->buf = xmalloc((size_t)(out * in) * sizeof(float));
        AG_ASSERT(st_read_f32(t, m->buf) == 0, "%s", err_get());   // dtype checked before
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, (int)in, (int)s->A->shape[0], s->scale,
                    s->B->data, (int)s->A->shape[0], s->A->data, (int)in, 1.0f, m->buf, (int)in);
        free(m->cur);
        m->cur = xstrdup(name);
    }
    memcpy(dst, m->buf + start, (size_t)count * sizeof(float));
}

static int copy_file(const char *src, const char *dst) {
    size_t n;
    char *d = file_read_all(src, &n);
    if (!d) return -1;
    int rc = file_write_atomic(dst, d, n);
    free(d);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

// Weight files the merge does not rewrite: copying them would ship the unmerged base
// (e.g. original/consolidated.00.pth of a hub snapshot, pytorch_model.bin).
static int is_weight_file(const char *n) {
    static const char *const ext[] = {".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".gguf", ".msgpack", ".h5",
                                      ".safetensors.index.json", ".bin.index.json"};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (ends_with(n, ext[i])) return 1;
    return 0;
}

// copies every file of src (and one level of sub-folders, e.g. original/) except weights
static int copy_folder(const char *src, const char *dst, int depth) {
    DIR *d = opendir(src);
    if (!d) return err_set("%s: cannot open folder: %s", src, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] == '.') continue;
        if (is_weight_file(n)) continue;
        char *s = path_join(src, n), *t = path_join(dst, n);
        if (dir_exists(s)) {
            if (depth < 1) rc = mkdir_p(t) || copy_folder(s, t, depth + 1);
        } else if (file_exists(s)) {
            rc = copy_file(s, t);
        }
        free(s);
        free(t);
    }
    closedir(d);
    return rc;
}

static int write_shard(const st_model *st, const lora_adapter *lora, const char *path, const char *shard,
                       cJSON *weight_map) {
    st_writer *w = st_writer_new();
    merge_ctx mc = {st, lora, NULL, NULL};
    for (int i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_get(st, i);
        if (shard) {
            cJSON *f = cJSON_GetObjectItemCaseSensitive(weight_map, t->name);
            if (!cJSON_IsString(f) || strcmp(f->valuestring, shard)) continue;
        }
        int layer, p = target_of(t->name, &layer);
        if (p >= 0 && layer < lora->num_layers && lora->slots[layer * LLAMA_NPROJ + p].A)
            st_writer_add_fill(w, t->name, t->dtype, t->ndim, t->shape, merged_fill, &mc);
        else
            st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    int rc = st_writer_write(w, path);
    st_writer_free(w);
    free(mc.buf);
    free(mc.cur);
    return rc;
}

// Removes OUT.tmp<pid> folders of merges that were killed (their process is gone).
static void remove_stale_merges(const char *out) {
    char *o = xstrdup(out);
    for (size_t n = strlen(o); n > 1 && o[n - 1] == '/'; n--) o[n - 1] = 0;
    char *dir = path_dirname(o);
    const char *base = strrchr(o, '/') ? strrchr(o, '/') + 1 : o;
    size_t bl = strlen(base);
    DIR *d = base[0] ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const char *n = e->d_name;
        if (strncmp(n, base, bl) || strncmp(n + bl, ".tmp", 4) || !n[bl + 4]) continue;
        char *end;
        long pid = strtol(n + bl + 4, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char *p = path_join(dir, n);
        rm_rf(p);
        free(p);
    }
    if (d) closedir(d);
    free(dir);
    free(o);
}

int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL;
    const char *weights = "auto";   // accepted as for eval and generate; one streaming path serves both
    const cli_opt opts[] = {
        CLI_TEXT("model", OPT_STR, &model, "DIR", "Llama model folder (required)"),
        CLI_TEXT("adapter", OPT_STR, &adapter, "DIR", "the LoRA adapter folder to fold into the weights (required)"),
        CLI_TEXT("out", OPT_STR, &out, "DIR", "a new folder: the model with W + scale * B A in place of W (required)"),
        CLI_WEIGHTS(&weights, "auto or f32: the same output and memory (see below)"),
    };
    const cli_spec spec = {"merge", "--model DIR --adapter DIR --out DIR [--weights auto|f32]", NULL, opts, CLI_NOPTS(opts),
                           "  --weights auto|f32: accepted as for eval and generate; merge always streams the model\n"
                           "  from the mapped file one tensor at a time (the merged ones in fp32), so both give the\n"
                           "  same output and memory\n", 0};
    int npos, prc = cli_parse(&spec, argc, argv, NULL, 0, &npos, 0, NULL);
    if (prc) return prc == 1 ? 0 : prc;
    if (!model || !adapter || !out) return cli_usage("merge", "--model, --adapter and --out are required");
    char outb[4096];   // --out DIR/ names DIR (the temporary folder DIR.tmpPID is built beside it)
    if (!*out || strlen(out) >= sizeof outb) return cli_usage("merge", "--out: expected a folder name, found '%s'", out);
    snprintf(outb, sizeof outb, "%s", out);
    for (size_t k = strlen(outb); k > 1 && outb[k - 1] == '/';) outb[--k] = 0;
    out = outb;
    if (dir_exists(out)) {
        err_set("%s: the output folder exists; choose a new one", out);
        return cli_fail();
    }
    hf_llama_config mc;
    lora_adapter lora = {0};
    st_model *st = NULL;
    cJSON *index = NULL;
    char *tmp = NULL;
    int status = 1;
    if (hf_llama_config_load(model, &mc) != 0 || !(st = st_open(model)) || hf_llama_check_weights(st, &mc) != 0) goto done;
    if (lora_load(&lora, &mc, adapter) != 0) goto done;
    size_t n = strlen(out) + 32;
    tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp%d", out, (int)getpid());
    rm_rf(tmp);
    remove_stale_merges(out);
    if (mkdir_p(tmp) != 0 || copy_folder(model, tmp, 0) != 0) goto done;
    char *ipath = path_join(model, "model.safetensors.index.json");
    if (file_exists(ipath)) {   // sharded like the input: same shard files, same index
        char *txt = file_read_all(ipath, NULL);
        index = txt ? cJSON_Parse(txt) : NULL;
        free(txt);
        cJSON *wm = index ? cJSON_GetObjectItemCaseSensitive(index, "weight_map") : NULL;
        if (!cJSON_IsObject(wm)) {
            err_set("%s: expected a weight_map object", ipath);
            free(ipath);
            goto done;
        }
        char **shards = NULL;
        int ns = 0;
        cJSON *e;
        cJSON_ArrayForEach(e, wm) {
            int seen = 0;
            for (int k = 0; k < ns; k++) seen |= !strcmp(shards[k], e->valuestring);
            if (!seen) {
                shards = xrealloc(shards, (size_t)(ns + 1) * sizeof *shards);
                shards[ns++] = e->valuestring;
            }
        }
        int rc = 0;
        for (int k = 0; k < ns && rc == 0; k++) {
            char *p = path_join(tmp, shards[k]);
            rc = write_shard(st, &lora, p, shards[k], wm);
            free(p);
        }
        free(shards);
        char *txt2 = cJSON_Print(index);
        char *op = path_join(tmp, "model.safetensors.index.json");
        if (rc == 0) rc = file_write_atomic(op, txt2, strlen(txt2));
        free(op);
        free(txt2);
        free(ipath);
        if (rc) goto done;
    } else {
        free(ipath);
        char *p = path_join(tmp, "model.safetensors");
        int rc = write_shard(st, &lora, p, NULL, NULL);
        free(p);
        if (rc) goto done;
    }
    if (fsync_dir(tmp) != 0) goto done;
    if (rename(tmp, out) != 0) {
        err_set("%s: cannot rename to %s: %s", tmp, out, strerror(errno));
        goto done;
    }
    fault_point2("merged folder in place", out);
    char *parent = path_dirname(out);
    int frc = fsync_dir(parent);
    free(parent);
    if (frc) goto done;
    fprintf(stderr, "merged %s (r=%d, scale %g) into %s -> %s\n", adapter, lora.cfg.r, lora.scale, model, out);
    status = 0;
done:
    if (status) {
        cli_fail();
        if (tmp) rm_rf(tmp);
    }
    free(tmp);
    cJSON_Delete(index);
    if (lora.slots) lora_free(&lora);
    if (st) st_close(st);
    return status;
}
