// projector.c — LLaVA's vision→text projector (linear / mlp2x_gelu): creation with
// PyTorch's default Linear init, the forward on the tape, and its folder format (see
// projector.h).
#include "projector.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params_io.h"
#include "safetensors.h"
#include "util.h"

#define ST_FILE "projector.safetensors"
#define CFG_FILE "projector_config.json"
#define POOL_W "model.mm_pool.weight"
#define POOL_B "model.mm_pool.bias"

static const char *const kind_names[2] = {"linear", "mlp2x_gelu"};

int projector_type_parse(const char *s, projector_kind *out) {
    for (int k = 0; k < 2; k++)
        if (s && !strcmp(s, kind_names[k])) {
            *out = (projector_kind)k;
            return 0;
        }
    return err_set("projector type '%s' is not supported (expected linear or mlp2x_gelu)", s ? s : "(null)");
}

const char *projector_type_name(projector_kind k) { return k == PROJECTOR_MLP2X_GELU ? kind_names[1] : kind_names[0]; }

static const char *const pool_names[3] = {"none", "avg", "linear"};

int projector_pool_parse(const char *s, pool_kind *out) {
    for (int k = 0; k < 3; k++)
        if (s && !strcmp(s, pool_names[k])) {
            *out = (pool_kind)k;
            return 0;
        }
    return err_set("pool type '%s' is not supported (expected none, avg or linear)", s ? s : "(null)");
}

const char *projector_pool_name(pool_kind k) { return pool_names[k]; }

int projector_rows(const projector *p) { return p->pool == POOL_NONE ? p->num_patches : p->pool_tokens; }

// --- parameters

// The tensor names of a kind, in registration (and init) order: w1, b1[, w2, b2].
static int param_names(projector_kind k, const char *names[4]) {
    if (k == PROJECTOR_LINEAR) {
        names[0] = "model.mm_projector.weight";
        names[1] = "model.mm_projector.bias";
        return 2;
    }
    names[0] = "model.mm_projector.0.weight";
    names[1] = "model.mm_projector.0.bias";
    names[2] = "model.mm_projector.2.weight";
    names[3] = "model.mm_projector.2.bias";
    return 4;
}

// Registers and allocates the parameters (zeroed): the projection's, then the linear pool's.
static int setup(projector *p, projector_kind k, int cv, int ct, pool_kind pool, int np, int tokens) {
    memset(p, 0, sizeof *p);
    if (cv <= 0 || ct <= 0)
        return err_set("projector: sizes must be positive, found vision_hidden_size %d, text_hidden_size %d", cv, ct);
    if (pool != POOL_NONE && !(np > 0 && tokens >= 1 && tokens <= np))
        return err_set("projector: pool %s needs 1 <= tokens <= num_patches, found tokens %d and num_patches %d",
                       pool_names[pool], tokens, np);
    p->type = k;
    p->pool = pool;
    p->pool_tokens = pool == POOL_NONE ? 0 : tokens;
    p->num_patches = np;
    p->vision_hidden = cv;
    p->text_hidden = ct;
    p->select_layer = -2;
    const char *names[4];
    int n = param_names(k, names);
    int64_t shapes[4][2] = {{ct, cv}, {ct, 0}, {ct, ct}, {ct, 0}};
    ag_tensor **slot[4] = {&p->w1, &p->b1, &p->w2, &p->b2};
    for (int i = 0; i < n; i++) *slot[i] = ag_params_add(&p->params, names[i], i % 2 ? 1 : 2, shapes[i]);
    if (pool == POOL_LINEAR) {
        int64_t ws[2] = {tokens, np}, bs[1] = {tokens};
        p->pw = ag_params_add(&p->params, POOL_W, 2, ws);
        p->pb = ag_params_add(&p->params, POOL_B, 1, bs);
    }
    if (ag_params_alloc(&p->params) != 0) {
        ag_params_free(&p->params);
        return -1;
    }
    return 0;
}

int projector_create(projector *p, const char *type, int vision_hidden, int text_hidden, uint64_t seed) {
    return projector_create_pooled(p, type, vision_hidden, text_hidden, "none", 0, 0, seed);
}

int projector_create_pooled(projector *p, const char *type, int vision_hidden, int text_hidden, const char *pool,
                            int num_patches, int tokens, uint64_t seed) {
    projector_kind k = PROJECTOR_LINEAR;
    pool_kind pk = POOL_NONE;
    if (projector_type_parse(type, &k) != 0 || projector_pool_parse(pool, &pk) != 0) return -1;
    if (setup(p, k, vision_hidden, text_hidden, pk, num_patches, tokens) != 0) return -1;
    uint64_t rng = seed;
    // nn.Linear.reset_parameters: kaiming_uniform_(a=√5) gives bound gain·√(3/fan_in) with
    // gain = √(2/(1+5)), i.e. 1/√fan_in; the bias takes the same bound.
    for (int i = 0; i < p->params.n; i++) {
        if (p->params.t[i] == p->pw || p->params.t[i] == p->pb) continue;
        ag_tensor *t = p->params.t[i];
        int64_t fan_in = i < 2 ? vision_hidden : text_hidden;
        float bound = (float)(1.0 / sqrt((double)fan_in));
        for (int64_t j = 0; j < t->numel; j++) t->data[j] = (2.0f * ag_rng_uniform(&rng) - 1.0f) * bound;
    }
    if (p->pw)   // the avg pooling matrix: row i is 1/|bin i| over its bin (the bias stays 0)
        for (int64_t i = 0; i < tokens; i++) {
            int64_t s0, e0;
            ag_pool_bin(num_patches, tokens, i, &s0, &e0);
            for (int64_t j = s0; j < e0; j++) p->pw->data[i * num_patches + j] = 1.0f / (float)(e0 - s0);
        }
    return 0;
}

void projector_free(projector *p) {
    ag_params_free(&p->params);
    memset(p, 0, sizeof *p);
}

// --- forward

ag_tensor *projector_pool(ag_ctx *c, const projector *p, ag_tensor *features) {
    if (!features || p->pool == POOL_NONE) return features;
    if (features->ndim != 2 || features->shape[0] % p->num_patches != 0) {
        char buf[64];
        err_set("projector: features %s are not whole images of %d patches (num_patches) for the %s pool",
                ag_shape_str(features, buf, sizeof buf), p->num_patches, pool_names[p->pool]);
        return NULL;
    }
    if (p->pool == POOL_AVG) return ag_avgpool_rows(c, features, p->num_patches, p->pool_tokens);
    return ag_pool_rows(c, features, p->pw, p->pb);
}

void projector_pool_plain(const projector *p, const float *in, int B, float *out) {
    int64_t P = p->num_patches, N = p->pool_tokens, C = p->vision_hidden;
    if (p->pool == POOL_NONE) memcpy(out, in, (size_t)B * P * C * sizeof(float));
    else if (p->pool == POOL_AVG) ag_avgpool_rows_fwd(out, in, B, P, N, C);
    else ag_pool_rows_fwd(out, in, p->pw->data, p->pb->data, B, P, N, C);
}

ag_tensor *projector_forward(ag_ctx *c, const projector *p, ag_tensor *features) {
    if (!features) return NULL;
    if (features->ndim != 2 || features->shape[1] != p->vision_hidden) {
        char buf[64];
        err_set("projector: features %s do not match the projector's input [N, %d] (vision hidden size)",
                ag_shape_str(features, buf, sizeof buf), p->vision_hidden);
        return NULL;
    }
    ag_tensor *y = ag_linear(c, features, p->w1, p->b1);
    if (p->type == PROJECTOR_MLP2X_GELU) y = ag_linear(c, ag_gelu(c, y), p->w2, p->b2);
    return y;
}

// --- folder format

int projector_save(const projector *p, const char *dir, int select_layer, int num_patches) {
    if (mkdir_p(dir) != 0) return -1;
    char *path = path_join(dir, ST_FILE);
    int rc = params_save(&p->params, path, 0);
    free(path);
    if (rc != 0) return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "projector_type", projector_type_name(p->type));
    cJSON_AddNumberToObject(j, "select_layer", select_layer);
    cJSON_AddNumberToObject(j, "vision_hidden_size", p->vision_hidden);
    cJSON_AddNumberToObject(j, "text_hidden_size", p->text_hidden);
    cJSON_AddNumberToObject(j, "num_patches", num_patches);
    cJSON_AddStringToObject(j, "pool_type", pool_names[p->pool]);
    cJSON_AddNumberToObject(j, "pool_tokens", p->pool_tokens);
    return json_save(j, dir, CFG_FILE);
}

int projector_save_grads(const projector *p, const char *path) { return params_save(&p->params, path, 1); }

// An integer key of the config, >= lo.
static int cfg_int(const cJSON *root, const char *path, const char *key, int lo, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) return err_set("%s: missing key '%s' (expected an integer >= %d)", path, key, lo);
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d == floor(d)) || d < lo || d > 2147483647.0) {
        char *s = cJSON_PrintUnformatted(v);
        err_set("%s: key '%s': expected an integer >= %d, found %s", path, key, lo, s ? s : "?");
        free(s);
        return -1;
    }
    *out = (int)d;
    return 0;
}

int projector_load(projector *p, const char *dir) {
    memset(p, 0, sizeof *p);
    if (publish_recover(dir) != 0) return -1;   // a save of this folder that was interrupted
    char *cpath = path_join(dir, CFG_FILE), *spath = path_join(dir, ST_FILE);
    cJSON *root = NULL;
    st_model *st = NULL;
    int rc = -1, cv = 0, ct = 0, sel = 0, np = 0;
    projector_kind k = PROJECTOR_LINEAR;

    char *txt = file_read_all(cpath, NULL);
    if (!txt) goto done;
    root = cJSON_Parse(txt);
    free(txt);
    if (!root || !cJSON_IsObject(root)) {
        err_set("%s: not a JSON object", cpath);
        goto done;
    }
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(root, "projector_type");
    if (!cJSON_IsString(ty)) {
        err_set("%s: key 'projector_type': expected \"linear\" or \"mlp2x_gelu\"%s", cpath, ty ? "" : " (missing)");
        goto done;
    }
    if (projector_type_parse(ty->valuestring, &k) != 0) {
        err_prefix("%s: key 'projector_type'", cpath);
        goto done;
    }
    if (cfg_int(root, cpath, "vision_hidden_size", 1, &cv) || cfg_int(root, cpath, "text_hidden_size", 1, &ct) ||
        cfg_int(root, cpath, "select_layer", -1000000, &sel) || cfg_int(root, cpath, "num_patches", 1, &np))
        goto done;
    pool_kind pk = POOL_NONE;   // written since pooling exists; older folders mean none
    int tokens = 0;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pool_type");
    if (pt && (!cJSON_IsString(pt) || projector_pool_parse(pt->valuestring, &pk) != 0)) {
        err_set("%s: key 'pool_type': expected \"none\", \"avg\" or \"linear\"", cpath);
        goto done;
    }
    if (pk != POOL_NONE && cfg_int(root, cpath, "pool_tokens", 1, &tokens)) goto done;
    if (pk != POOL_NONE && tokens > np) {
        err_set("%s: key 'pool_tokens': expected at most num_patches (%d), found %d", cpath, np, tokens);
        goto done;
    }

    st = st_open(spath);
    if (!st) goto done;
    if (setup(p, k, cv, ct, pk, np, tokens) != 0) goto done;
    p->select_layer = sel;
    p->num_patches = np;
    for (int i = 0; i < p->params.n; i++) {
        ag_tensor *t = p->params.t[i];
        const st_tensor *f = st_find(st, t->name);
        if (!f) {
            err_set("%s: tensor '%s' is missing (expected for a %s projector %d -> %d, as %s says)", spath,
                    t->name, kind_names[k], cv, ct, CFG_FILE);
            goto done;
        }
        int same = f->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = f->shape[d] == t->shape[d];
        if (!same) {
            char want[64], got[128] = "[";
            for (int d = 0; d < f->ndim; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)f->shape[d]);
            strcat(got, "]");
            err_set("%s: tensor '%s': expected shape %s (a %s projector %d -> %d, as %s says), found %s", spath,
                    t->name, ag_shape_str(t, want, sizeof want), kind_names[k], cv, ct, CFG_FILE, got);
            goto done;
        }
        if (st_read_f32(f, t->data) != 0) goto done;
    }
    for (int i = 0; i < st_count(st); i++) {
        const char *name = st_get(st, i)->name;
        if (!ag_params_find(&p->params, name)) {
            err_set("%s: unexpected tensor '%s' for a %s projector (does %s name the right projector_type and pool_type?)",
                    spath, name, kind_names[k], CFG_FILE);
            goto done;
        }
    }
    rc = 0;
done:
    if (rc != 0) projector_free(p);
    st_close(st);
    cJSON_Delete(root);
    free(cpath);
    free(spath);
    return rc;
}
