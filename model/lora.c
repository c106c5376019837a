// lora.c — LoRA adapters: creation, PEFT save/load (see lora.h).
#include "lora.h"

#include <cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int lora_parse_target(const char *name, unsigned *mask, const char *what) {
    if (!strcmp(name, "all-linear") || !strcmp(name, "all_linear")) {
        *mask |= (1u << LLAMA_NPROJ) - 1;
        return 0;
    }
    for (int t = 0; t < LLAMA_NPROJ; t++)
        if (!strcmp(name, llama_proj_names[t])) {
            *mask |= 1u << t;
            return 0;
        }
    return err_set("%s: unknown LoRA target '%s' (expected q_proj, k_proj, v_proj, o_proj, gate_proj, "
                   "up_proj, down_proj or all-linear)",
                   what, name);
}

void lora_proj_shape(const hf_llama_config *mc, int t, int64_t *out, int64_t *in) {
    int64_t C = mc->hidden_size, I = mc->intermediate_size;
    int64_t q = (int64_t)mc->num_heads * mc->head_dim, kv = (int64_t)mc->num_kv_heads * mc->head_dim;
    switch (t) {
    case LLAMA_Q: *out = q, *in = C; break;
    case LLAMA_K:
    case LLAMA_V: *out = kv, *in = C; break;
    case LLAMA_O: *out = C, *in = q; break;
    case LLAMA_GATE:
    case LLAMA_UP: *out = I, *in = C; break;
    default: *out = C, *in = I; break;
    }
}

void lora_key(char *buf, size_t n, int layer, int t, char AB) {
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer,
             t <= LLAMA_O ? "self_attn" : "mlp", llama_proj_names[t], AB);
}

static int lora_setup(lora_adapter *a, const hf_llama_config *mc, const lora_config *lc) {
    memset(a, 0, sizeof *a);
    a->cfg = *lc;
    if (lc->r <= 0) return err_set("lora: rank r must be positive, got %d", lc->r);
    if (!lc->targets) return err_set("lora: no target projections");
    a->num_layers = mc->num_layers;
    a->scale = lc->use_rslora ? lc->alpha / sqrtf((float)lc->r) : lc->alpha / (float)lc->r;
    a->slots = xcalloc((size_t)mc->num_layers * LLAMA_NPROJ, sizeof *a->slots);
    char key[256];
    for (int l = 0; l < mc->num_layers; l++)
        for (int t = 0; t < LLAMA_NPROJ; t++) {
            if (!(lc->targets & (1u << t))) continue;
            int64_t out, in;
            lora_proj_shape(mc, t, &out, &in);
            llama_lora_slot *s = &a->slots[l * LLAMA_NPROJ + t];
            int64_t sa[2] = {lc->r, in}, sb[2] = {out, lc->r};
            lora_key(key, sizeof key, l, t, 'A');
            s->A = ag_params_add(&a->params, key, 2, sa);
            lora_key(key, sizeof key, l, t, 'B');
            s->B = ag_params_add(&a->params, key, 2, sb);
            s->scale = a->scale;
            s->dropout = lc->dropout;
        }
    a->view.slots = a->slots;
    return ag_params_alloc(&a->params);
}

int lora_create(lora_adapter *a, const hf_llama_config *mc, const lora_config *lc, uint64_t seed) {
    if (lora_setup(a, mc, lc) != 0) return -1;
    uint64_t rng = seed ^ 0x4C6F5241ULL;   // "LoRA"
    for (int i = 0; i < a->num_layers * LLAMA_NPROJ; i++) {
        llama_lora_slot *s = &a->slots[i];
        if (!s->A) continue;
        // kaiming_uniform_(a=sqrt(5)): gain = sqrt(2/(1+5)), bound = gain*sqrt(3/fan_in) = 1/sqrt(fan_in)
        float bound = 1.0f / sqrtf((float)s->A->shape[1]);
        for (int64_t j = 0; j < s->A->numel; j++) s->A->data[j] = (2.0f * ag_rng_uniform(&rng) - 1.0f) * bound;
        // B stays zero (ag_params_alloc zero-fills)
    }
    return 0;
}

void lora_set_dropout(lora_adapter *a, float p) {
    for (int i = 0; i < a->num_layers * LLAMA_NPROJ; i++) a->slots[i].dropout = p;
}

void lora_free(lora_adapter *a) {
    ag_params_free(&a->params);
    free(a->slots);
    memset(a, 0, sizeof *a);
}

// --- PEFT files

// cJSON_Print with two-space indents and "key": value, as Python's json.dump(indent=2) writes
static char *json_pretty(const cJSON *j) {
    char *raw = cJSON_Print(j);
    size_t n = strlen(raw);
    char *out = xmalloc(2 * n + 2), *o = out;
    int in_str = 0;
    for (const char *p = raw; *p; p++) {
        if (*p == '"' && (p == raw || p[-1] != '\\')) in_str = !in_str;
        if (!in_str && *p == '\t') {
            if (p > raw && p[-1] == ':') *o++ = ' ';
            else *o++ = ' ', *o++ = ' ';
            continue;
        }
        *o++ = *p;
    }
    *o++ = '\n';
    *o = 0;
    free(raw);
    return out;
}

int lora_save(const lora_adapter *a, const char *dir) {
    if (mkdir_p(dir) != 0) return -1;
    st_writer *w = st_writer_new();
    for (int i = 0; i < a->params.n; i++) {
        const ag_tensor *t = a->params.t[i];
        st_writer_add(w, t->name, ST_F32, t->ndim, t->shape, t->data);
    }
    char *path = path_join(dir, "adapter_model.safetensors");
    int rc = st_writer_write(w, path);
    st_writer_free(w);
    free(path);
    if (rc) return -1;

    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "alpha_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(j, "auto_mapping");
    cJSON_AddStringToObject(j, "base_model_name_or_path", a->cfg.base_model);
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "init_lora_weights", 1);
    cJSON_AddNullToObject(j, "layers_pattern");
    cJSON_AddNullToObject(j, "layers_to_transform");
    cJSON_AddNumberToObject(j, "lora_alpha", a->cfg.alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", a->cfg.dropout);
    cJSON_AddNullToObject(j, "modules_to_save");
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddNumberToObject(j, "r", a->cfg.r);
    cJSON_AddItemToObject(j, "rank_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(j, "revision");
    cJSON *tm = cJSON_AddArrayToObject(j, "target_modules");
    for (int t = 0; t < LLAMA_NPROJ; t++)
        if (a->cfg.targets & (1u << t)) cJSON_AddItemToArray(tm, cJSON_CreateString(llama_proj_names[t]));
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    cJSON_AddBoolToObject(j, "use_dora", 0);
    cJSON_AddBoolToObject(j, "use_rslora", a->cfg.use_rslora);
    char *txt = json_pretty(j);
    cJSON_Delete(j);
    path = path_join(dir, "adapter_config.json");
    rc = file_write_atomic(path, txt, strlen(txt));
    free(path);
    free(txt);
    return rc;
}

static int json_bad_if_set(cJSON *j, const char *key, const char *path) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return 0;
    if (cJSON_IsObject(v) && !v->child) return 0;
    if (cJSON_IsString(v) && !strcmp(key, "bias") && !strcmp(v->valuestring, "none")) return 0;
    return err_set("%s: '%s' is set, but lorac only applies plain LoRA adapters (expected it absent, "
                   "null, false or empty)",
                   path, key);
}

// An optional number that must fit a float: absent/null -> def. -1 for another type or range.
static int json_opt_float(const cJSON *v, float def, float *out) {
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= FLT_MAX)) return -1;
    *out = (float)v->valuedouble;
    return 0;
}

// What a JSON value is, for messages: its short text ("\"16\"", "true", "1e+39").
static const char *json_kind(const cJSON *v) {
    static _Thread_local char buf[64];
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    snprintf(buf, sizeof buf, "%s", t ? t : "nothing");
    free(t);
    return buf;
}

// Every A/B factor the config asks for exists in the file with the config's rank, checked
// before the adapter is allocated (a hostile r or layer count must not size an allocation).
static int check_factors(const st_model *st, const hf_llama_config *mc, const lora_config *lc, const char *dir) {
    char key[256];
    for (int l = 0; l < mc->num_layers; l++)
        for (int t = 0; t < LLAMA_NPROJ; t++) {
            if (!(lc->targets & (1u << t))) continue;
            int64_t out, in;
            lora_proj_shape(mc, t, &out, &in);
            int64_t sa[2] = {lc->r, in}, sb[2] = {out, lc->r};
            for (int k = 0; k < 2; k++) {
                lora_key(key, sizeof key, l, t, "AB"[k]);
                if (!st_find(st, key))
                    return err_set("%s/adapter_model.safetensors: tensor '%s' is missing (adapter_config.json "
                                   "targets it)", dir, key);
                if (st_check_shape(st, key, 2, k ? sb : sa) != 0) return -1;   // names file, tensor, shapes
            }
        }
    return 0;
}

int lora_load(lora_adapter *a, const hf_llama_config *mc, const char *dir) {
    memset(a, 0, sizeof *a);   // the error path frees only what was set up
    if (publish_recover(dir) != 0) return -1;   // a save of this folder that was interrupted
    char *cpath = path_join(dir, "adapter_config.json");
    char *txt = file_read_all(cpath, NULL);
    if (!txt) {
        free(cpath);
        return -1;
    }
    cJSON *j = cJSON_Parse(txt);
    int deep = !j && json_max_depth(txt, strlen(txt)) >= CJSON_NESTING_LIMIT;
    free(txt);
    int rc = -1;
    st_model *st = NULL;
    lora_config lc = {0};
    if (deep) {
        err_set("%s: the JSON nests deeper than %d levels (the limit)", cpath, CJSON_NESTING_LIMIT);
        goto done;
    }
    if (!j || !cJSON_IsObject(j)) {
        err_set("%s: not a JSON object", cpath);
        goto done;
    }
    cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA")) {
        err_set("%s: peft_type: expected \"LORA\", found %s", cpath, cJSON_IsString(pt) ? pt->valuestring : "none");
        goto done;
    }
    cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r"), *al = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble != (int)r->valuedouble) {
        err_set("%s: r: expected a positive integer", cpath);
        goto done;
    }
    lc.r = r->valueint;
    // optional keys: absent or null take PEFT LoraConfig's defaults; any other type is an error
    cJSON *dp = cJSON_GetObjectItemCaseSensitive(j, "lora_dropout");
    cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "use_rslora");
    cJSON *ff = cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out");
    if (json_opt_float(al, 8.0f, &lc.alpha) != 0) {
        err_set("%s: lora_alpha: expected a number within the float range, found %s", cpath, json_kind(al));
        goto done;
    }
    if (json_opt_float(dp, 0.0f, &lc.dropout) != 0 || !(lc.dropout >= 0 && lc.dropout < 1)) {
        err_set("%s: lora_dropout: expected a number in [0, 1), found %s", cpath, json_kind(dp));
        goto done;
    }
    if ((rs && !cJSON_IsNull(rs) && !cJSON_IsBool(rs)) || (ff && !cJSON_IsNull(ff) && !cJSON_IsBool(ff))) {
        err_set("%s: %s: expected true or false, found %s", cpath,
                rs && !cJSON_IsNull(rs) && !cJSON_IsBool(rs) ? "use_rslora" : "fan_in_fan_out",
                json_kind(rs && !cJSON_IsNull(rs) && !cJSON_IsBool(rs) ? rs : ff));
        goto done;
    }
    lc.use_rslora = cJSON_IsTrue(rs);
    if (cJSON_IsTrue(ff)) {
        err_set("%s: fan_in_fan_out is true: expected false for Llama projections", cpath);
        goto done;
    }
    const char *unsupported[] = {"use_dora", "rank_pattern", "alpha_pattern", "modules_to_save",
                                 "layers_to_transform", "bias"};
    for (size_t k = 0; k < sizeof unsupported / sizeof *unsupported; k++)
        if (json_bad_if_set(j, unsupported[k], cpath) != 0) goto done;
    cJSON *tm = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    if (cJSON_IsString(tm)) {
        if (lora_parse_target(tm->valuestring, &lc.targets, cpath) != 0) goto done;
    } else if (cJSON_IsArray(tm)) {
        cJSON *e;
        cJSON_ArrayForEach(e, tm) {
            if (!cJSON_IsString(e) || lora_parse_target(e->valuestring, &lc.targets, cpath) != 0) {
                if (!cJSON_IsString(e)) err_set("%s: target_modules: expected strings", cpath);
                goto done;
            }
        }
    } else {
        err_set("%s: target_modules: expected a list of projection names", cpath);
        goto done;
    }
    cJSON *bm = cJSON_GetObjectItemCaseSensitive(j, "base_model_name_or_path");
    if (cJSON_IsString(bm)) snprintf(lc.base_model, sizeof lc.base_model, "%s", bm->valuestring);

    char *wpath = path_join(dir, "adapter_model.safetensors");
    st = st_open(wpath);
    free(wpath);
    if (!st) goto done;
    if (lc.targets && check_factors(st, mc, &lc, dir) != 0) goto done;
    if (lora_setup(a, mc, &lc) != 0) goto done;
    // every tensor in the file must be one of ours (PEFT also accepts keys with ".default.")
    for (int i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_get(st, i);
        if (!ag_params_find(&a->params, t->name)) {
            err_set("%s: tensor '%s' is not a LoRA factor of a target projection of this %d-layer model "
                    "(targets in adapter_config.json: r=%d)",
                    t->file, t->name, mc->num_layers, lc.r);
            goto done;
        }
    }
    for (int i = 0; i < a->params.n; i++) {
        ag_tensor *t = a->params.t[i];
        const st_tensor *s = st_find(st, t->name);
        if (!s) {
            err_set("%s/adapter_model.safetensors: tensor '%s' is missing (adapter_config.json targets it)", dir,
                    t->name);
            goto done;
        }
        float *d = st_load_f32(st, t->name, t->ndim, t->shape);
        if (!d) goto done;
        memcpy(t->data, d, (size_t)t->numel * sizeof(float));
        free(d);
    }
    rc = 0;
done:
    if (rc && a->slots) lora_free(a);
    if (st) st_close(st);
    cJSON_Delete(j);
    free(cpath);
    return rc;
}
