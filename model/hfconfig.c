// hfconfig.c — config.json / preprocessor_config.json parsing for LLaMA and SigLIP, RoPE
// inverse frequencies, and weight-shape checks against the config (see hfconfig.h).
#include "hfconfig.h"

#include <cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// --- JSON field access with messages naming the file and the key

typedef struct jctx {
    const cJSON *obj;
    const char *path;     // for messages
    const char *prefix;   // "" or "vision_config."
} jctx;

static const cJSON *jget(const jctx *j, const char *key) {
    const cJSON *v = j->obj ? cJSON_GetObjectItemCaseSensitive(j->obj, key) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;   // null counts as absent (e.g. "head_dim": null)
}

static void brief(const cJSON *v, char *buf, size_t cap) {
    char *s = cJSON_PrintUnformatted(v);
    snprintf(buf, cap, "%s", s ? s : "?");
    free(s);
}

// An integer in [lo, INT_MAX]; def when absent and !required.
static int jint(const jctx *j, const char *key, int required, int def, int lo, int *out) {
    const cJSON *v = jget(j, key);
    if (!v) {
        if (required)
            return err_set("%s: missing key '%s%s' (expected an integer >= %d)", j->path, j->prefix, key,
                           lo);
        *out = def;
        return 0;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d == floor(d)) || d < lo || d > 2147483647.0) {
        char buf[128];
        brief(v, buf, sizeof buf);
        return err_set("%s: key '%s%s': expected an integer >= %d, found %s", j->path, j->prefix, key, lo,
                       buf);
    }
    *out = (int)d;
    return 0;
}

// A model size (layers, widths, heads, vocabulary, image size): an integer in [lo, HF_MAX_DIM].
// Real checkpoints stay far below the limit; a larger value is a corrupt or hostile file that
// would otherwise size allocations before the weights are checked.
#define HF_MAX_DIM (1 << 24)
static int jdim(const jctx *j, const char *key, int required, int def, int *out) {
    if (jint(j, key, required, def, 1, out)) return -1;
    if (*out > HF_MAX_DIM)
        return err_set("%s: key '%s%s': expected at most %d (the limit on model sizes), found %d", j->path,
                       j->prefix, key, HF_MAX_DIM, *out);
    return 0;
}

// A finite number > 0 (or >= 0 when allow_zero) that fits a float (a larger one would become inf).
static int jfloat(const jctx *j, const char *key, int required, float def, int allow_zero, float *out) {
    const cJSON *v = jget(j, key);
    if (!v) {
        if (required)
            return err_set("%s: missing key '%s%s' (expected a positive number)", j->path, j->prefix, key);
        *out = def;
        return 0;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d < 0 || (d == 0 && !allow_zero) || d > FLT_MAX) {
        char buf[128];
        brief(v, buf, sizeof buf);
        return err_set("%s: key '%s%s': expected a positive number%s, found %s", j->path, j->prefix, key,
                       d > FLT_MAX ? " within the float range (at most 3.4e38)" : "", buf);
    }
    *out = (float)d;
    return 0;
}

static int jbool(const jctx *j, const char *key, int def, int *out) {
    const cJSON *v = jget(j, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v)) {
        char buf[128];
        brief(v, buf, sizeof buf);
        return err_set("%s: key '%s%s': expected true or false, found %s", j->path, j->prefix, key, buf);
    }
    *out = cJSON_IsTrue(v);
    return 0;
}

// A string copied into out[cap]; def when absent.
static int jstr(const jctx *j, const char *key, const char *def, char *out, size_t cap) {
    const cJSON *v = jget(j, key);
    if (!v) {
        snprintf(out, cap, "%s", def);
        return 0;
    }
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) {
        char buf[128];
        brief(v, buf, sizeof buf);
        return err_set("%s: key '%s%s': expected a string of at most %zu characters, found %s", j->path,
                       j->prefix, key, cap - 1, buf);
    }
    snprintf(out, cap, "%s", v->valuestring);
    return 0;
}

static cJSON *load_json(const char *path) {
    char *txt = file_read_all(path, NULL);
    if (!txt) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(txt, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        size_t at = root ? 0 : (size_t)((end ? end : cJSON_GetErrorPtr()) - txt);
        if (root) err_set("%s: expected a JSON object at the top level", path);
        else if (json_max_depth(txt, strlen(txt)) >= CJSON_NESTING_LIMIT)
            err_set("%s: the JSON nests deeper than %d levels (the limit)", path, CJSON_NESTING_LIMIT);
        else err_set("%s: not valid JSON (error near byte %zu)", path, at);
        cJSON_Delete(root);
        free(txt);
        return NULL;
    }
    free(txt);
    return root;
}

// --- Llama

static int parse_rope(const jctx *j, const cJSON *rs, hf_llama_config *c) {
    // rs: rope_scaling (or rope_parameters) object
    jctx r = {rs, j->path, cJSON_GetObjectItemCaseSensitive(j->obj, "rope_parameters") == rs
                               ? "rope_parameters."
                               : "rope_scaling."};
    const cJSON *ty = jget(&r, "rope_type");
    const char *tkey = "rope_type";
    if (!ty) {
        ty = jget(&r, "type");
        tkey = "type";
    }
    if (ty && !cJSON_IsString(ty)) return err_set("%s: key '%s%s': expected a string", j->path, r.prefix, tkey);
    const char *t = ty ? ty->valuestring : "default";
    if (!strcmp(t, "default")) return 0;
    if (strcmp(t, "llama3"))
        return err_set("%s: key '%s%s' is '%s', which is not supported (supported: llama3, default)",
                       j->path, r.prefix, tkey, t);
    c->rope_llama3 = 1;
    if (jfloat(&r, "factor", 1, 0, 0, &c->rope_factor) || jfloat(&r, "low_freq_factor", 1, 0, 0, &c->rope_low_freq_factor) ||
        jfloat(&r, "high_freq_factor", 1, 0, 0, &c->rope_high_freq_factor) ||
        jint(&r, "original_max_position_embeddings", 1, 0, 1, &c->rope_original_max_pos))
        return -1;
    if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
        return err_set("%s: key '%shigh_freq_factor' (%g) must be greater than low_freq_factor (%g)", j->path,
                       r.prefix, c->rope_high_freq_factor, c->rope_low_freq_factor);
    return 0;
}

// long: one config.json key after another, each read and checked with its own message in the
// order of the file; split up, the list of keys would be spread over helpers that do nothing else.
int hf_llama_config_parse(const char *json, const char *path, hf_llama_config *c) {
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        if (!root && json_max_depth(json, strlen(json)) >= CJSON_NESTING_LIMIT)
            return err_set("%s: the JSON nests deeper than %d levels (the limit)", path, CJSON_NESTING_LIMIT);
        return err_set("%s: not a valid JSON object", path);
    }
    jctx j = {root, path, ""};
    int rc = -1;
    char mt[64], act[32];
    if (jstr(&j, "model_type", "llama", mt, sizeof mt)) goto done;
    if (strcmp(mt, "llama")) {
        err_set("%s: key 'model_type' is '%s', expected 'llama' (is this a Llama text model folder?)", path,
                mt);
        goto done;
    }
    if (jdim(&j, "vocab_size", 1, 0, &c->vocab_size) || jdim(&j, "hidden_size", 1, 0, &c->hidden_size) ||
        jdim(&j, "intermediate_size", 1, 0, &c->intermediate_size) ||
        jdim(&j, "num_hidden_layers", 1, 0, &c->num_layers) ||
        jdim(&j, "num_attention_heads", 1, 0, &c->num_heads) ||
        jdim(&j, "num_key_value_heads", 0, c->num_heads, &c->num_kv_heads))
        goto done;
    if (c->hidden_size % c->num_heads) {
        err_set("%s: key 'hidden_size' (%d) is not divisible by 'num_attention_heads' (%d)", path,
                c->hidden_size, c->num_heads);
        goto done;
    }
    if (jdim(&j, "head_dim", 0, c->hidden_size / c->num_heads, &c->head_dim)) goto done;
    if (c->head_dim % 2) {
        err_set("%s: key 'head_dim' is %d, expected an even number (RoPE rotates pairs)", path, c->head_dim);
        goto done;
    }
    if (c->num_heads % c->num_kv_heads) {
        err_set("%s: key 'num_attention_heads' (%d) is not a multiple of 'num_key_value_heads' (%d)", path,
                c->num_heads, c->num_kv_heads);
        goto done;
    }
    if (jfloat(&j, "rms_norm_eps", 0, 1e-6f, 0, &c->rms_norm_eps) ||
        jint(&j, "max_position_embeddings", 0, 2048, 1, &c->max_position_embeddings) ||
        jbool(&j, "tie_word_embeddings", 0, &c->tie_word_embeddings))
        goto done;
    if (jstr(&j, "hidden_act", "silu", act, sizeof act)) goto done;
    if (strcmp(act, "silu")) {
        err_set("%s: key 'hidden_act' is '%s', expected 'silu' (Llama's SwiGLU MLP)", path, act);
        goto done;
    }
    const char *bias_keys[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        int b;
        if (jbool(&j, bias_keys[i], 0, &b)) goto done;
        if (b) {
            err_set("%s: key '%s' is true, but Llama projections with bias are not supported", path,
                    bias_keys[i]);
            goto done;
        }
    }
    // rope: classic keys (rope_theta, rope_scaling) or the newer rope_parameters object
    const cJSON *rp = jget(&j, "rope_parameters");
    const cJSON *rs = jget(&j, "rope_scaling");
    if (rp && !cJSON_IsObject(rp)) {
        err_set("%s: key 'rope_parameters': expected an object", path);
        goto done;
    }
    if (rs && !cJSON_IsObject(rs)) {
        err_set("%s: key 'rope_scaling': expected an object or null", path);
        goto done;
    }
    if (jfloat(&j, "rope_theta", 0, 10000.0f, 0, &c->rope_theta)) goto done;
    if (rp && !jget(&j, "rope_theta")) {
        jctx r = {rp, path, "rope_parameters."};
        if (jfloat(&r, "rope_theta", 0, 10000.0f, 0, &c->rope_theta)) goto done;
    }
    if (rs ? parse_rope(&j, rs, c) : rp ? parse_rope(&j, rp, c) : 0) goto done;
    // special tokens
    c->bos_id = -1;
    const cJSON *bos = jget(&j, "bos_token_id");
    if (bos && cJSON_IsArray(bos)) {   // some configs list it, like eos_token_id: the first one is used
        const cJSON *e = cJSON_GetArrayItem(bos, 0);
        if (e && (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble != floor(e->valuedouble) ||
                  e->valuedouble > 2147483647.0)) {
            err_set("%s: key 'bos_token_id[0]': expected a token id", path);
            goto done;
        }
        if (e) c->bos_id = (int)e->valuedouble;
    } else if (bos && jint(&j, "bos_token_id", 1, -1, 0, &c->bos_id)) {
        goto done;
    }
    const cJSON *eos = jget(&j, "eos_token_id");
    if (eos && cJSON_IsArray(eos)) {
        int n = cJSON_GetArraySize(eos);
        if (n > 8) {
            err_set("%s: key 'eos_token_id' lists %d ids, at most 8 are supported", path, n);
            goto done;
        }
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(eos, i);
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble != floor(e->valuedouble) ||
                e->valuedouble > 2147483647.0) {
                err_set("%s: key 'eos_token_id[%d]': expected a token id", path, i);
                goto done;
            }
            c->eos_ids[c->n_eos++] = (int)e->valuedouble;
        }
    } else if (eos) {
        if (jint(&j, "eos_token_id", 1, 0, 0, &c->eos_ids[0])) goto done;
        c->n_eos = 1;
    }
    if (c->bos_id >= c->vocab_size) {
        err_set("%s: key 'bos_token_id' is %d, outside the vocabulary (vocab_size %d)", path, c->bos_id,
                c->vocab_size);
        goto done;
    }
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] >= c->vocab_size) {
            err_set("%s: key 'eos_token_id' holds %d, outside the vocabulary (vocab_size %d)", path,
                    c->eos_ids[i], c->vocab_size);
            goto done;
        }
    if (jget(&j, "torch_dtype")) {
        if (jstr(&j, "torch_dtype", "", c->torch_dtype, sizeof c->torch_dtype)) goto done;
    } else if (jstr(&j, "dtype", "", c->torch_dtype, sizeof c->torch_dtype)) {
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int hf_llama_config_load(const char *dir, hf_llama_config *cfg) {
    char *path = path_join(dir, "config.json");
    size_t n;
    char *txt = file_read_all(path, &n);
    int rc = txt ? hf_llama_config_parse(txt, path, cfg) : -1;
    free(txt);
    free(path);
    return rc;
}

// Plain fp32 steps in torch's order; volatile keeps the compiler from fusing a·b + c
// into an FMA, which would round differently from torch's separate ops.
void hf_llama_inv_freq(const hf_llama_config *cfg, float *inv_freq) {
    int D = cfg->head_dim;
    for (int i = 0; i < D / 2; i++) {
        volatile float ex = (float)(2 * i) / (float)D;
        volatile float p = powf(cfg->rope_theta, ex);
        inv_freq[i] = 1.0f / p;
    }
    if (!cfg->rope_llama3) return;
    const float factor = cfg->rope_factor, lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
    const float old_ctx = (float)cfg->rope_original_max_pos;
    const float low_wavelen = (float)((double)cfg->rope_original_max_pos / lo);
    const float high_wavelen = (float)((double)cfg->rope_original_max_pos / hi);
    const float two_pi = (float)(2.0 * M_PI);
    const float span = (float)((double)hi - (double)lo);
    for (int i = 0; i < D / 2; i++) {
        float f = inv_freq[i];
        volatile float wavelen = two_pi / f;
        float scaled = wavelen > low_wavelen ? f / factor : f;
        if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
            volatile float smooth = (old_ctx / wavelen - lo) / span;
            volatile float a = (1.0f - smooth) * scaled;
            volatile float b = a / factor;
            volatile float c = smooth * scaled;
            scaled = b + c;
        }
        inv_freq[i] = scaled;
    }
}

// --- SigLIP

// long: config.json's vision_config keys, then preprocessor_config.json's, each checked with its
// own message in file order; split up, the two key lists would be spread over single-use helpers.
int hf_siglip_config_load(const char *dir, hf_siglip_config *c) {
    memset(c, 0, sizeof *c);
    char *path = path_join(dir, "config.json");
    cJSON *root = load_json(path);
    if (!root) {
        free(path);
        return -1;
    }
    int rc = -1;
    cJSON *pre = NULL;
    char *ppath = NULL;
    jctx j = {root, path, ""};
    char mt[64];
    if (jstr(&j, "model_type", "", mt, sizeof mt)) goto done;
    const cJSON *vc = jget(&j, "vision_config");
    if (!strcmp(mt, "siglip") || (!mt[0] && vc)) {
        if (vc && !cJSON_IsObject(vc)) {
            err_set("%s: key 'vision_config': expected an object", path);
            goto done;
        }
        j.obj = vc;   // may be NULL: every key then takes its default
        j.prefix = "vision_config.";
    } else if (mt[0] && strcmp(mt, "siglip_vision_model")) {
        err_set("%s: key 'model_type' is '%s', expected 'siglip' or 'siglip_vision_model' (is this a SigLIP "
                "folder?)",
                path, mt);
        goto done;
    }
    if (jdim(&j, "hidden_size", 0, 768, &c->hidden_size) ||
        jdim(&j, "intermediate_size", 0, 3072, &c->intermediate_size) ||
        jdim(&j, "num_hidden_layers", 0, 12, &c->num_layers) ||
        jdim(&j, "num_attention_heads", 0, 12, &c->num_heads) ||
        jdim(&j, "num_channels", 0, 3, &c->num_channels) || jdim(&j, "image_size", 0, 224, &c->image_size) ||
        jdim(&j, "patch_size", 0, 16, &c->patch_size) ||
        jfloat(&j, "layer_norm_eps", 0, 1e-6f, 0, &c->layer_norm_eps) ||
        jstr(&j, "hidden_act", "gelu_pytorch_tanh", c->hidden_act, sizeof c->hidden_act))
        goto done;
    if (c->hidden_size % c->num_heads) {
        err_set("%s: key '%shidden_size' (%d) is not divisible by 'num_attention_heads' (%d)", path, j.prefix,
                c->hidden_size, c->num_heads);
        goto done;
    }
    if (c->image_size % c->patch_size) {
        err_set("%s: key '%simage_size' (%d) is not divisible by 'patch_size' (%d)", path, j.prefix,
                c->image_size, c->patch_size);
        goto done;
    }
    if (c->num_channels != 3) {
        err_set("%s: key '%snum_channels' is %d, expected 3 (RGB images)", path, j.prefix, c->num_channels);
        goto done;
    }
    if (strcmp(c->hidden_act, "gelu_pytorch_tanh") && strcmp(c->hidden_act, "gelu_new") &&
        strcmp(c->hidden_act, "gelu")) {
        err_set("%s: key '%shidden_act' is '%s' (supported: gelu_pytorch_tanh, gelu_new, gelu)", path,
                j.prefix, c->hidden_act);
        goto done;
    }
    // patches per image: (image_size / patch_size)^2 in 64 bits (a huge image_size overflowed int)
    int64_t side = c->image_size / c->patch_size;
    if (c->image_size > SIGLIP_MAX_IMAGE) {
        err_set("%s: key '%simage_size' is %d, over the limit of %d pixels per side", path, j.prefix, c->image_size,
                SIGLIP_MAX_IMAGE);
        goto done;
    }
    if (side * side > SIGLIP_MAX_PATCHES) {
        err_set("%s: key '%simage_size' (%d) / 'patch_size' (%d) gives %lld patches per image, over the limit "
                "of %d", path, j.prefix, c->image_size, c->patch_size, (long long)(side * side), SIGLIP_MAX_PATCHES);
        goto done;
    }
    c->num_patches = (int)(side * side);
    c->resize_size = c->image_size;
    c->rescale_factor = 1.0f / 255.0f;
    for (int k = 0; k < 3; k++) c->image_mean[k] = c->image_std[k] = 0.5f;

    ppath = path_join(dir, "preprocessor_config.json");
    if (file_exists(ppath)) {
        pre = load_json(ppath);
        if (!pre) goto done;
        jctx p = {pre, ppath, ""};
        int do_norm, do_rescale, do_resize;
        if (jbool(&p, "do_normalize", 1, &do_norm) || jbool(&p, "do_rescale", 1, &do_rescale) ||
            jbool(&p, "do_resize", 1, &do_resize) ||
            jfloat(&p, "rescale_factor", 0, 1.0f / 255.0f, 0, &c->rescale_factor))
            goto done;
        if (!do_rescale) c->rescale_factor = 1.0f;
        const char *names[2] = {"image_mean", "image_std"};
        float *dst[2] = {c->image_mean, c->image_std};
        for (int a = 0; a < 2; a++) {
            const cJSON *v = jget(&p, names[a]);
            if (!v) continue;
            if (cJSON_IsNumber(v) && !(fabs(v->valuedouble) <= FLT_MAX)) {
                err_set("%s: key '%s': expected a number within the float range, found %g", ppath, names[a],
                        v->valuedouble);
                goto done;
            }
            if (cJSON_IsNumber(v)) {
                for (int k = 0; k < 3; k++) dst[a][k] = (float)v->valuedouble;
            } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 3) {
                for (int k = 0; k < 3; k++) {
                    const cJSON *e = cJSON_GetArrayItem(v, k);
                    if (!cJSON_IsNumber(e) || !(fabs(e->valuedouble) <= FLT_MAX)) {
                        err_set("%s: key '%s[%d]': expected a number within the float range", ppath, names[a], k);
                        goto done;
                    }
                    dst[a][k] = (float)e->valuedouble;
                }
            } else {
                err_set("%s: key '%s': expected a list of 3 numbers (one per RGB channel)", ppath, names[a]);
                goto done;
            }
        }
        for (int k = 0; k < 3; k++)
            if (!(c->image_std[k] > 0)) {
                err_set("%s: key 'image_std[%d]' is %g, expected a positive number", ppath, k, c->image_std[k]);
                goto done;
            }
        if (!do_norm)
            for (int k = 0; k < 3; k++) {
                c->image_mean[k] = 0.0f;
                c->image_std[k] = 1.0f;
            }
        const cJSON *sz = jget(&p, "size");
        if (do_resize && sz) {
            jctx s = {sz, ppath, "size."};
            int hgt, wid;
            if (!cJSON_IsObject(sz)) {
                err_set("%s: key 'size': expected {\"height\": N, \"width\": N}", ppath);
                goto done;
            }
            if (jdim(&s, "height", 1, 0, &hgt) || jdim(&s, "width", 1, 0, &wid)) goto done;
            if (hgt != wid) {
                err_set("%s: key 'size' is %dx%d; only square sizes are supported", ppath, hgt, wid);
                goto done;
            }
            c->resize_size = hgt;
        }
    }
    rc = 0;
done:
    cJSON_Delete(pre);
    cJSON_Delete(root);
    free(ppath);
    free(path);
    return rc;
}

// --- weight checks

static int check_float(const st_model *m, const char *name, int ndim, const int64_t *shape) {
    if (st_check_shape(m, name, ndim, shape)) return -1;
    const st_tensor *t = st_find(m, name);
    if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16 && t->dtype != ST_F64)
        return err_set("%s: tensor '%s' has dtype %s, expected F32, BF16, F16 or F64", t->file, name,
                       st_dtype_name(t->dtype));
    return 0;
}

static int check2(const st_model *m, const char *name, int64_t a, int64_t b) {
    int64_t s[2] = {a, b};
    return check_float(m, name, b ? 2 : 1, s);
}

int hf_llama_check_weights(const st_model *m, const hf_llama_config *c) {
    int64_t V = c->vocab_size, C = c->hidden_size, I = c->intermediate_size;
    int64_t HD = (int64_t)c->num_heads * c->head_dim, KD = (int64_t)c->num_kv_heads * c->head_dim;
    char n[256];
    if (check2(m, "model.embed_tokens.weight", V, C) || check2(m, "model.norm.weight", C, 0)) return -1;
    if (!c->tie_word_embeddings && check2(m, "lm_head.weight", V, C)) return -1;
    for (int l = 0; l < c->num_layers; l++) {
        struct {
            const char *k;
            int64_t a, b;
        } w[] = {{"self_attn.q_proj.weight", HD, C}, {"self_attn.k_proj.weight", KD, C},
                 {"self_attn.v_proj.weight", KD, C}, {"self_attn.o_proj.weight", C, HD},
                 {"mlp.gate_proj.weight", I, C},     {"mlp.up_proj.weight", I, C},
                 {"mlp.down_proj.weight", C, I},     {"input_layernorm.weight", C, 0},
                 {"post_attention_layernorm.weight", C, 0}};
        for (size_t k = 0; k < sizeof w / sizeof w[0]; k++) {
            snprintf(n, sizeof n, "model.layers.%d.%s", l, w[k].k);
            if (k == 0 && l > 0 && !st_find(m, n))   // the layer count is checked here, before any allocation
                return err_set("%s: config.json has num_hidden_layers %d, but the weights hold only %d layers (no "
                               "tensor '%s')", st_path(m), c->num_layers, l, n);
            if (check2(m, n, w[k].a, w[k].b)) return -1;
        }
    }
    return 0;
}

int hf_siglip_check_weights(const st_model *m, const hf_siglip_config *c) {
    int64_t C = c->hidden_size, I = c->intermediate_size, p = c->patch_size;
    int64_t pw[4] = {C, c->num_channels, p, p};
    char n[256];
    if (check_float(m, "vision_model.embeddings.patch_embedding.weight", 4, pw) ||
        check2(m, "vision_model.embeddings.patch_embedding.bias", C, 0) ||
        check2(m, "vision_model.embeddings.position_embedding.weight", c->num_patches, C) ||
        check2(m, "vision_model.post_layernorm.weight", C, 0) ||
        check2(m, "vision_model.post_layernorm.bias", C, 0))
        return -1;
    for (int l = 0; l < c->num_layers; l++) {
        struct {
            const char *k;
            int64_t a, b;
        } w[] = {{"layer_norm1.weight", C, 0},      {"layer_norm1.bias", C, 0},
                 {"layer_norm2.weight", C, 0},      {"layer_norm2.bias", C, 0},
                 {"self_attn.q_proj.weight", C, C}, {"self_attn.q_proj.bias", C, 0},
                 {"self_attn.k_proj.weight", C, C}, {"self_attn.k_proj.bias", C, 0},
                 {"self_attn.v_proj.weight", C, C}, {"self_attn.v_proj.bias", C, 0},
                 {"self_attn.out_proj.weight", C, C}, {"self_attn.out_proj.bias", C, 0},
                 {"mlp.fc1.weight", I, C},          {"mlp.fc1.bias", I, 0},
                 {"mlp.fc2.weight", C, I},          {"mlp.fc2.bias", C, 0}};
        for (size_t k = 0; k < sizeof w / sizeof w[0]; k++) {
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.%s", l, w[k].k);
            if (check2(m, n, w[k].a, w[k].b)) return -1;
        }
    }
    return 0;
}
