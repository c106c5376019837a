// xattn.c — gated cross-attention blocks: creation, the block forward on the tape, the
// decoder-layer hook, and the folder format (see xattn.h).
#include "xattn.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params_io.h"
#include "safetensors.h"
#include "util.h"

#define ST_FILE "xattn.safetensors"
#define CFG_FILE "xattn_config.json"

static const char *const tnames[XA_NT] = {
    "input_layernorm.weight",   "cross_attn.q_proj.weight", "cross_attn.k_proj.weight",
    "cross_attn.v_proj.weight", "cross_attn.o_proj.weight", "cross_attn_attn_gate",
    "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
    "mlp.down_proj.weight",     "cross_attn_mlp_gate"};

// --- parameters

// Registers and allocates every block's tensors (zeroed).
static int setup(xattn *xa, int every, int nblocks, int C, int H, int K, int D, int I, float eps) {
    memset(xa, 0, sizeof *xa);
    xa->every = every, xa->nblocks = nblocks;
    xa->C = C, xa->H = H, xa->KV = K, xa->D = D, xa->inter = I, xa->eps = eps;
    xa->t = xcalloc((size_t)nblocks, sizeof *xa->t);
    int64_t shapes[XA_NT][2] = {{C, 0},     {(int64_t)H * D, C}, {(int64_t)K * D, C}, {(int64_t)K * D, C},
                                {C, (int64_t)H * D}, {1, 0}, {C, 0}, {I, C}, {I, C}, {C, I}, {1, 0}};
    for (int j = 0; j < nblocks; j++)
        for (int k = 0; k < XA_NT; k++) {
            char name[128];
            snprintf(name, sizeof name, "model.xattn_layers.%d.%s", j, tnames[k]);
            xa->t[j][k] = ag_params_add(&xa->params, name, shapes[k][1] ? 2 : 1, shapes[k]);
        }
    if (ag_params_alloc(&xa->params) != 0) {
        xattn_free(xa);
        return -1;
    }
    return 0;
}

static int check_every(const hf_llama_config *cfg, int every) {
    if (every < 1 || every > cfg->num_layers)
        return err_set("xattn.every: expected an integer in [1, %d] (the model's num_hidden_layers), found %d",
                       cfg->num_layers, every);
    return 0;
}

int xattn_create(xattn *xa, const hf_llama_config *cfg, int every, uint64_t seed) {
    memset(xa, 0, sizeof *xa);
    if (check_every(cfg, every) != 0) return -1;
    if (setup(xa, every, cfg->num_layers / every, cfg->hidden_size, cfg->num_heads, cfg->num_kv_heads, cfg->head_dim,
              cfg->intermediate_size, cfg->rms_norm_eps) != 0)
        return -1;
    uint64_t rng = seed;
    for (int j = 0; j < xa->nblocks; j++)
        for (int k = 0; k < XA_NT; k++) {
            ag_tensor *t = xa->t[j][k];
            if (k == XA_LN1 || k == XA_LN2) {
                for (int64_t i = 0; i < t->numel; i++) t->data[i] = 1.0f;
            } else if (t->ndim == 2) {   // nn.Linear's default: U(-1/√in, 1/√in)
                float bound = (float)(1.0 / sqrt((double)t->shape[1]));
                for (int64_t i = 0; i < t->numel; i++) t->data[i] = (2.0f * ag_rng_uniform(&rng) - 1.0f) * bound;
            }   // gates: 0
        }
    return 0;
}

void xattn_free(xattn *xa) {
    ag_params_free(&xa->params);
    free(xa->t);
    memset(xa, 0, sizeof *xa);
}

// --- forward

ag_tensor *xattn_block_forward(ag_ctx *c, const xattn *xa, int j, ag_tensor *x, ag_tensor *vis,
                               const int32_t *kv_begin, const int32_t *kv_end) {
    ag_tensor *const *w = xa->t[j];
    if (!x) return NULL;
    int64_t N = x->shape[0];
    if (vis) {
        if (vis->ndim != 2 || vis->shape[1] != xa->C) {
            char s[64];
            err_set("xattn: the visual rows %s do not match the blocks' width [M, %d]", ag_shape_str(vis, s, sizeof s),
                    xa->C);
            return NULL;
        }
        int32_t *b = (int32_t *)kv_begin, *e = (int32_t *)kv_end;
        if (!b || !e) {   // every row attends all of vis
            b = ag_alloc(c, (size_t)N * sizeof *b, "xattn ranges");
            e = ag_alloc(c, (size_t)N * sizeof *e, "xattn ranges");
            if (!b || !e) return NULL;
            for (int64_t i = 0; i < N; i++) b[i] = 0, e[i] = (int32_t)vis->shape[0];
        }
        ag_tensor *h = ag_rmsnorm(c, x, w[XA_LN1], xa->eps);
        ag_tensor *q = ag_linear(c, h, w[XA_Q], NULL);
        ag_tensor *k = ag_linear(c, vis, w[XA_K], NULL), *v = ag_linear(c, vis, w[XA_V], NULL);
        ag_tensor *a = ag_attention(c, q, k, v, xa->H, xa->KV, b, e, 1.0f / sqrtf((float)xa->D));
        x = ag_gated_add(c, x, ag_linear(c, a, w[XA_O], NULL), w[XA_GATE_ATTN]);
    }
    ag_tensor *h = ag_rmsnorm(c, x, w[XA_LN2], xa->eps);
    ag_tensor *u = ag_swiglu(c, ag_linear(c, h, w[XA_GATE], NULL), ag_linear(c, h, w[XA_UP], NULL));
    return ag_gated_add(c, x, ag_linear(c, u, w[XA_DOWN], NULL), w[XA_GATE_MLP]);
}

static ag_tensor *after_layer(void *user, ag_ctx *c, int layer, ag_tensor *x) {
    const xattn_run *r = user;
    const xattn *xa = r->xa;
    if ((layer + 1) % xa->every != 0 || (layer + 1) / xa->every > xa->nblocks) return x;
    return xattn_block_forward(c, xa, (layer + 1) / xa->every - 1, x, r->vis, r->kv_begin, r->kv_end);
}

llama_hook xattn_hook(xattn_run *r) {
    llama_hook h = {after_layer, r};
    return h;
}

// --- folder format

int xattn_save(const xattn *xa, const char *dir) {
    if (mkdir_p(dir) != 0) return -1;
    char *path = path_join(dir, ST_FILE);
    int rc = params_save(&xa->params, path, 0);
    free(path);
    if (rc != 0) return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "every", xa->every);
    cJSON_AddNumberToObject(j, "num_blocks", xa->nblocks);
    cJSON *al = cJSON_AddArrayToObject(j, "after_layers");
    for (int b = 0; b < xa->nblocks; b++) cJSON_AddItemToArray(al, cJSON_CreateNumber((b + 1) * xa->every - 1));
    cJSON_AddNumberToObject(j, "hidden_size", xa->C);
    cJSON_AddNumberToObject(j, "num_attention_heads", xa->H);
    cJSON_AddNumberToObject(j, "num_key_value_heads", xa->KV);
    cJSON_AddNumberToObject(j, "head_dim", xa->D);
    cJSON_AddNumberToObject(j, "intermediate_size", xa->inter);
    cJSON_AddNumberToObject(j, "rms_norm_eps", xa->eps);
    return json_save(j, dir, CFG_FILE);
}

int xattn_load(xattn *xa, const char *dir, const hf_llama_config *cfg) {
    memset(xa, 0, sizeof *xa);
    char *cpath = path_join(dir, CFG_FILE), *spath = path_join(dir, ST_FILE);
    cJSON *root = NULL;
    st_model *st = NULL;
    int rc = -1;
    char *txt = file_read_all(cpath, NULL);
    if (!txt) goto done;
    root = cJSON_Parse(txt);
    free(txt);
    if (!cJSON_IsObject(root)) {
        err_set("%s: not a JSON object", cpath);
        goto done;
    }
    // every key must equal what the text model (and `every`) implies
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, "every");
    int every = cJSON_IsNumber(ev) ? ev->valueint : 0;
    if (!cJSON_IsNumber(ev) || ev->valuedouble != every || check_every(cfg, every) != 0) {
        err_set("%s: key 'every': expected an integer in [1, %d] (the model's num_hidden_layers)", cpath,
                cfg->num_layers);
        goto done;
    }
    const char *keys[] = {"num_blocks", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                          "intermediate_size"};
    int want[] = {cfg->num_layers / every, cfg->hidden_size, cfg->num_heads, cfg->num_kv_heads, cfg->head_dim,
                  cfg->intermediate_size};
    for (int i = 0; i < 6; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        if (!cJSON_IsNumber(v) || v->valuedouble != want[i]) {
            char *s = v ? cJSON_PrintUnformatted(v) : NULL;
            err_set("%s: key '%s': expected %d (from the text model's config.json and every %d), found %s", cpath,
                    keys[i], want[i], every, s ? s : "nothing");
            free(s);
            goto done;
        }
    }
    if (!(st = st_open(spath))) goto done;
    if (setup(xa, every, cfg->num_layers / every, cfg->hidden_size, cfg->num_heads, cfg->num_kv_heads, cfg->head_dim,
              cfg->intermediate_size, cfg->rms_norm_eps) != 0)
        goto done;
    for (int i = 0; i < xa->params.n; i++) {
        ag_tensor *t = xa->params.t[i];
        if (st_check_shape(st, t->name, t->ndim, t->shape) != 0 || st_read_f32(st_find(st, t->name), t->data) != 0)
            goto done;
    }
    for (int i = 0; i < st_count(st); i++)
        if (!ag_params_find(&xa->params, st_get(st, i)->name)) {
            err_set("%s: unexpected tensor '%s' (%s says %d blocks)", spath, st_get(st, i)->name, CFG_FILE,
                    xa->nblocks);
            goto done;
        }
    rc = 0;
done:
    if (rc != 0) xattn_free(xa);
    st_close(st);
    cJSON_Delete(root);
    free(cpath);
    free(spath);
    return rc;
}
