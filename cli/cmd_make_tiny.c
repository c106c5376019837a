// cmd_make_tiny.c — `lorac make-tiny`: writes a random model in the Hugging Face folder
// format (LlamaForCausalLM or SiglipVisionModel), small by default or with the real shapes
// of Llama-3.2-1B, Llama-3.2-3B, Llama-3.1-8B or siglip-base-patch16-224 (--preset). Used by
// tests, demos and benchmarks.
//
// Weights are a pure function of (seed, tensor name, element index): element i of a tensor
// is a normal drawn from the splitmix64 stream seeded by hash(name, seed), at position i, so
// values are generated in parallel, chunk by chunk, while the file is written (no tensor is
// ever held in memory). Linear/embedding weights ~ N(0, 0.02²) as HF's init; norm weights
// 1 + N(0, 0.05²) and biases N(0, 0.02²) so that every parameter is exercised.
// The folder is assembled under "<out>.tmp.<pid>" and renamed into place.
#define _GNU_SOURCE
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ag.h"
#include "cli.h"
#include "opts.h"
#include "hfconfig.h"
#include "make_captions.h"
#include "safetensors.h"
#include "util.h"

#define TRANSFORMERS_VERSION "4.46.0"

// --- deterministic weights

typedef struct fill_spec {
    uint64_t seed;
    float mean, std;
} fill_spec;

static void fill_normal(void *ctx, const char *name, float *dst, int64_t start, int64_t count) {
    const fill_spec *f = ctx;
    uint64_t base = hash64(name, strlen(name), f->seed);
#pragma omp parallel for schedule(static) if (count > 65536)
    for (int64_t i = 0; i < count; i++) {
        // splitmix64 is a counter: the state before element k's two draws is base + 2k·γ
        uint64_t s = base + (uint64_t)(start + i) * 2u * 0x9E3779B97F4A7C15ULL;
        volatile float z = f->std * ag_rng_normal(&s);   // no FMA: same bytes in every build
        dst[i] = f->mean + z;
    }
}

typedef struct tiny_ctx {
    st_writer *w;
    st_dtype dtype;
    fill_spec weight, norm, bias, embed;
} tiny_ctx;

static void add(tiny_ctx *t, fill_spec *spec, const char *name, int64_t a, int64_t b) {
    int64_t shape[2] = {a, b};
    st_writer_add_fill(t->w, name, t->dtype, b ? 2 : 1, shape, fill_normal, spec);
}

// --- Llama

static void llama_weights(tiny_ctx *t, const hf_llama_config *c) {
    int64_t V = c->vocab_size, C = c->hidden_size, I = c->intermediate_size;
    int64_t HD = (int64_t)c->num_heads * c->head_dim, KD = (int64_t)c->num_kv_heads * c->head_dim;
    char n[256];
    add(t, &t->embed, "model.embed_tokens.weight", V, C);
    add(t, &t->norm, "model.norm.weight", C, 0);
    if (!c->tie_word_embeddings) add(t, &t->embed, "lm_head.weight", V, C);
    for (int l = 0; l < c->num_layers; l++) {
#define L(suffix, spec, a, b)                                                   \
    do {                                                                        \
        snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix);                 \
        add(t, spec, n, a, b);                                                  \
    } while (0)
        L("self_attn.q_proj.weight", &t->weight, HD, C);
        L("self_attn.k_proj.weight", &t->weight, KD, C);
        L("self_attn.v_proj.weight", &t->weight, KD, C);
        L("self_attn.o_proj.weight", &t->weight, C, HD);
        L("mlp.gate_proj.weight", &t->weight, I, C);
        L("mlp.up_proj.weight", &t->weight, I, C);
        L("mlp.down_proj.weight", &t->weight, C, I);
        L("input_layernorm.weight", &t->norm, C, 0);
        L("post_attention_layernorm.weight", &t->norm, C, 0);
#undef L
    }
}

static cJSON *int_list(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *llama_config_json(const hf_llama_config *c, double eps) {
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddBoolToObject(j, "attention_bias", 0);
    cJSON_AddNumberToObject(j, "attention_dropout", 0.0);
    cJSON_AddNumberToObject(j, "bos_token_id", c->bos_id);
    cJSON_AddItemToObject(j, "eos_token_id", int_list(c->eos_ids, c->n_eos));
    cJSON_AddNumberToObject(j, "head_dim", c->head_dim);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddNumberToObject(j, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(j, "initializer_range", 0.02);
    cJSON_AddNumberToObject(j, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_position_embeddings);
    cJSON_AddBoolToObject(j, "mlp_bias", 0);
    cJSON_AddStringToObject(j, "model_type", "llama");
    cJSON_AddNumberToObject(j, "num_attention_heads", c->num_heads);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->num_layers);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->num_kv_heads);
    cJSON_AddNumberToObject(j, "pretraining_tp", 1);
    cJSON_AddNumberToObject(j, "rms_norm_eps", eps);   // the double, not its fp32 rounding
    cJSON *rs = cJSON_AddObjectToObject(j, "rope_scaling");
    cJSON_AddNumberToObject(rs, "factor", c->rope_factor);
    cJSON_AddNumberToObject(rs, "high_freq_factor", c->rope_high_freq_factor);
    cJSON_AddNumberToObject(rs, "low_freq_factor", c->rope_low_freq_factor);
    cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_original_max_pos);
    cJSON_AddStringToObject(rs, "rope_type", "llama3");
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddStringToObject(j, "torch_dtype", c->torch_dtype);
    cJSON_AddStringToObject(j, "transformers_version", TRANSFORMERS_VERSION);
    cJSON_AddBoolToObject(j, "use_cache", 1);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    return j;
}

static cJSON *generation_config_json(const hf_llama_config *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "bos_token_id", c->bos_id);
    cJSON_AddBoolToObject(j, "do_sample", 1);
    cJSON_AddItemToObject(j, "eos_token_id", int_list(c->eos_ids, c->n_eos));
    cJSON_AddNumberToObject(j, "temperature", 0.6);
    cJSON_AddNumberToObject(j, "top_p", 0.9);
    cJSON_AddStringToObject(j, "transformers_version", TRANSFORMERS_VERSION);
    return j;
}

// --- SigLIP

static void siglip_weights(tiny_ctx *t, const hf_siglip_config *c) {
    int64_t C = c->hidden_size, I = c->intermediate_size, p = c->patch_size;
    int64_t pw[4] = {C, c->num_channels, p, p};
    char n[256];
    st_writer_add_fill(t->w, "vision_model.embeddings.patch_embedding.weight", t->dtype, 4, pw, fill_normal,
                       &t->weight);
    add(t, &t->bias, "vision_model.embeddings.patch_embedding.bias", C, 0);
    add(t, &t->weight, "vision_model.embeddings.position_embedding.weight", c->num_patches, C);
    add(t, &t->norm, "vision_model.post_layernorm.weight", C, 0);
    add(t, &t->bias, "vision_model.post_layernorm.bias", C, 0);
    for (int l = 0; l < c->num_layers; l++) {
#define L(suffix, spec, a, b)                                                   \
    do {                                                                        \
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.%s", l, suffix);  \
        add(t, spec, n, a, b);                                                  \
    } while (0)
        L("layer_norm1.weight", &t->norm, C, 0);
        L("layer_norm1.bias", &t->bias, C, 0);
        L("layer_norm2.weight", &t->norm, C, 0);
        L("layer_norm2.bias", &t->bias, C, 0);
        const char *proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int k = 0; k < 4; k++) {
            char s[64];
            snprintf(s, sizeof s, "self_attn.%s.weight", proj[k]);
            L(s, &t->weight, C, C);
            snprintf(s, sizeof s, "self_attn.%s.bias", proj[k]);
            L(s, &t->bias, C, 0);
        }
        L("mlp.fc1.weight", &t->weight, I, C);
        L("mlp.fc1.bias", &t->bias, I, 0);
        L("mlp.fc2.weight", &t->weight, C, I);
        L("mlp.fc2.bias", &t->bias, C, 0);
#undef L
    }
}

static cJSON *siglip_config_json(const hf_siglip_config *c, double eps, const char *torch_dtype) {
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("SiglipVisionModel"));
    cJSON_AddNumberToObject(j, "attention_dropout", 0.0);
    cJSON_AddStringToObject(j, "hidden_act", c->hidden_act);
    cJSON_AddNumberToObject(j, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(j, "image_size", c->image_size);
    cJSON_AddNumberToObject(j, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(j, "layer_norm_eps", eps);
    cJSON_AddStringToObject(j, "model_type", "siglip_vision_model");
    cJSON_AddNumberToObject(j, "num_attention_heads", c->num_heads);
    cJSON_AddNumberToObject(j, "num_channels", c->num_channels);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->num_layers);
    cJSON_AddNumberToObject(j, "patch_size", c->patch_size);
    cJSON_AddStringToObject(j, "torch_dtype", torch_dtype);
    cJSON_AddStringToObject(j, "transformers_version", TRANSFORMERS_VERSION);
    cJSON_AddBoolToObject(j, "vision_use_head", 0);   // no attention-pooling head in the file
    return j;
}

static cJSON *preprocessor_json(const hf_siglip_config *c) {
    cJSON *j = cJSON_CreateObject();
    float half[3] = {0.5f, 0.5f, 0.5f};
    cJSON_AddBoolToObject(j, "do_normalize", 1);
    cJSON_AddBoolToObject(j, "do_rescale", 1);
    cJSON_AddBoolToObject(j, "do_resize", 1);
    cJSON_AddItemToObject(j, "image_mean", cJSON_CreateFloatArray(half, 3));
    cJSON_AddStringToObject(j, "image_processor_type", "SiglipImageProcessor");
    cJSON_AddItemToObject(j, "image_std", cJSON_CreateFloatArray(half, 3));
    cJSON_AddStringToObject(j, "processor_class", "SiglipProcessor");
    cJSON_AddNumberToObject(j, "resample", 3);
    cJSON_AddNumberToObject(j, "rescale_factor", 1.0 / 255.0);
    cJSON *s = cJSON_AddObjectToObject(j, "size");
    cJSON_AddNumberToObject(s, "height", c->image_size);
    cJSON_AddNumberToObject(s, "width", c->image_size);
    return j;
}

// --- folder assembly

static int write_json(const char *dir, const char *name, cJSON *j) {
    char *raw = cJSON_Print(j);   // tab-indented; raw tabs only occur as layout
    cJSON_Delete(j);
    char *p = path_join(dir, name);
    size_t n = 0, len = strlen(raw);
    char *text = xmalloc(2 * len + 2);
    for (size_t i = 0; i < len; i++) {   // HF's layout: 2-space indent, "key": value
        if (raw[i] != '\t') text[n++] = raw[i];
        else if (i && raw[i - 1] == ':') text[n++] = ' ';
        else text[n++] = ' ', text[n++] = ' ';
    }
    free(raw);
    text[n++] = '\n';
    int rc = file_write_atomic(p, text, n);
    free(text);
    free(p);
    return rc;
}

static int copy_file(const char *src_dir, const char *dst_dir, const char *name, int required) {
    char *src = path_join(src_dir, name), *dst = path_join(dst_dir, name);
    int rc = 0;
    if (!file_exists(src)) {
        if (required)
            rc = err_set("%s: not found (make-tiny copies the tokenizer from --tokenizer DIR, "
                         "$LORAC_TOKENIZER_DIR or <lorac>/../.cache/tokenizer; `make tokenizer` fetches "
                         "it)",
                         src);
    } else {
        size_t n;
        char *data = file_read_all(src, &n);
        rc = data ? file_write_atomic(dst, data, n) : -1;
        free(data);
    }
    free(src);
    free(dst);
    return rc;
}

// <dir of /proc/self/exe>/../.cache/tokenizer
static char *default_tokenizer_dir(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return xstrdup(".cache/tokenizer");
    exe[n] = 0;
    char *d = path_dirname(exe);
    char *p = path_join(d, "../.cache/tokenizer");
    free(d);
    return p;
}

// Moves the finished temp folder to `out` (replacing an existing folder only with --force).
static int install_dir(const char *tmp, const char *out, int force) {
    if (dir_exists(out)) {
        if (rmdir(out) != 0) {   // succeeds only for an empty folder
            if (!force)
                return err_set("%s: the folder exists and is not empty (remove it, choose another --out, "
                               "or pass --force to replace it)",
                               out);
            size_t n = strlen(out) + 32;
            char *old = xmalloc(n);
            snprintf(old, n, "%s.old.%d", out, (int)getpid());
            if (rename(out, old) != 0) {
                free(old);
                return err_set("%s: cannot move the old folder aside: %s", out, strerror(errno));
            }
            if (rename(tmp, out) != 0) {
                int en = errno;
                if (rename(old, out) != 0) { /* leave it as .old; the message says where */ }
                free(old);
                return err_set("%s: cannot rename %s into place: %s", out, tmp, strerror(en));
            }
            int rc = rm_rf(old);
            free(old);
            return rc;
        }
    } else if (file_exists(out)) {
        return err_set("%s: exists and is not a folder", out);
    }
    if (rename(tmp, out) != 0) return err_set("%s: cannot rename %s into place: %s", out, tmp, strerror(errno));
    char *parent = path_dirname(out);
    int rc = fsync_dir(parent);
    free(parent);
    return rc;
}

// The tiny llama's config: the defaults below, reshaped by --hidden-size/--layers/--untied, or a
// real model's shapes (preset, NULL for none).
static hf_llama_config tiny_llama_config(uint64_t hidden, uint64_t layers, int untied, const char *preset) {
    int big = preset != NULL;
    hf_llama_config c = {
        .vocab_size = 128256, .hidden_size = 64, .intermediate_size = 192, .num_layers = 2,
        .num_heads = 4, .num_kv_heads = 2, .head_dim = 16, .rms_norm_eps = 1e-5f,
        .rope_theta = 500000.0f, .rope_llama3 = 1, .rope_factor = 32.0f, .rope_low_freq_factor = 1.0f,
        .rope_high_freq_factor = 4.0f, .rope_original_max_pos = 8192, .tie_word_embeddings = 1,
        .bos_id = 128000, .eos_ids = {128001, 128008, 128009}, .n_eos = 3,
        .max_position_embeddings = 131072};
    if (hidden) c.hidden_size = (int)hidden, c.intermediate_size = 3 * c.hidden_size, c.num_heads = c.hidden_size / 16,
                c.num_kv_heads = c.num_heads / 2;
    if (layers) c.num_layers = (int)layers;
    if (untied) c.tie_word_embeddings = 0;
    // the real models' config.json values (meta-llama/Llama-3.2-1B, -3B, Llama-3.1-8B);
    // the weights file is written tensor by tensor in chunks (memory stays small at 16 GB)
    if (big && !strcmp(preset, "llama-3.2-1b")) {
        c.hidden_size = 2048, c.intermediate_size = 8192, c.num_layers = 16, c.num_heads = 32;
        c.num_kv_heads = 8, c.head_dim = 64;
    } else if (big && !strcmp(preset, "llama-3.2-3b")) {
        c.hidden_size = 3072, c.intermediate_size = 8192, c.num_layers = 28, c.num_heads = 24;
        c.num_kv_heads = 8, c.head_dim = 128;
    } else if (big) {   // llama-3.1-8b: untied lm_head, rope_scaling factor 8
        c.hidden_size = 4096, c.intermediate_size = 14336, c.num_layers = 32, c.num_heads = 32;
        c.num_kv_heads = 8, c.head_dim = 128, c.tie_word_embeddings = 0, c.rope_factor = 8.0f;
    }
    return c;
}

// The tiny SigLIP's config, or siglip-base-patch16-224's shapes (big).
static hf_siglip_config tiny_siglip_config(int big, uint64_t image_size) {
    hf_siglip_config c = {.hidden_size = 32, .intermediate_size = 64, .num_layers = 2, .num_heads = 4,
                          .image_size = 32, .patch_size = 8, .num_channels = 3, .layer_norm_eps = 1e-6f,
                          .hidden_act = "gelu_pytorch_tanh"};
    if (big) {
        c.hidden_size = 768, c.intermediate_size = 3072, c.num_layers = 12, c.num_heads = 12;
        c.image_size = 224, c.patch_size = 16;
    } else if (image_size) {
        c.image_size = (int)image_size;
    }
    c.num_patches = (c.image_size / c.patch_size) * (c.image_size / c.patch_size);
    return c;
}

// --dtype bf16|f16|f32: the stored dtype and config.json's torch_dtype. 0, or -1 for another word.
static int dtype_of(const char *s, st_dtype *d, const char **torch_dtype) {
    if (!strcmp(s, "bf16")) *d = ST_BF16, *torch_dtype = "bfloat16";
    else if (!strcmp(s, "f16")) *d = ST_F16, *torch_dtype = "float16";
    else if (!strcmp(s, "f32")) *d = ST_F32, *torch_dtype = "float32";
    else return -1;
    return 0;
}

// The written folder must load with lorac's own readers. 0, or -1 + err_set.
static int self_check(const char *dir, int is_llama) {
    st_model *m = st_open(dir);
    int ok = m != NULL;
    if (ok && is_llama) {
        hf_llama_config c;
        ok = hf_llama_config_load(dir, &c) == 0 && hf_llama_check_weights(m, &c) == 0;
    } else if (ok) {
        hf_siglip_config c;
        ok = hf_siglip_config_load(dir, &c) == 0 && hf_siglip_check_weights(m, &c) == 0;
    }
    st_close(m);
    if (!ok) return err_prefix("make-tiny: internal error: the written folder does not load");
    return 0;
}

int cmd_make_tiny(int argc, char **argv) {
    // --kind captions: the synthetic image-caption demo data (cli/cmd_make_captions.c)
    for (int i = 1; i + 1 < argc; i++)
        if ((!strcmp(argv[i], "--kind") && !strcmp(argv[i + 1], "captions")) || !strcmp(argv[i], "--kind=captions"))
            return cmd_make_captions(argc, argv);
    const char *out = NULL, *kind = NULL, *preset = NULL, *dtype_s = "bf16", *tok_dir = NULL;
    uint64_t seed = 0, hidden = 0, layers = 0;
    uint64_t image_size = 0;   // --image-size: a tiny SigLIP with (S/8)² patches
    double embed_std = 0.02;
    int force = 0, untied = 0;
    const cli_opt opts[] = {
        CLI_TEXT("out", OPT_STR, &out, "DIR", "the folder to write (required)"),
        CLI_TEXT("kind", OPT_STR, &kind, "K", "llama (default), siglip, or captions (the demo images: --kind captions --help)"),
        CLI_TEXT("preset", OPT_STR, &preset, "NAME", "real shapes: llama-3.2-1b, llama-3.2-3b, llama-3.1-8b or siglip-base-patch16-224"),
        CLI_TEXT("dtype", OPT_STR, &dtype_s, "D", "bf16 (default), f16 or f32"),
        CLI_TEXT("tokenizer", OPT_STR, &tok_dir, "DIR", "tokenizer.json to copy in (llama; default .cache/tokenizer)"),
        {.name = "seed", .type = OPT_U64, .dst = &seed, .arg = "N", .help = "random seed (default 0)"},
        {.name = "hidden-size", .type = OPT_U64, .dst = &hidden, .arg = "N",
         .help = "llama hidden size, a multiple of 32 (default 64; heads of 16 dims, half as many KV heads, MLP 3x)"},
        {.name = "layers", .type = OPT_U64, .dst = &layers, .arg = "N", .help = "llama layers (default 2)"},
        CLI_NUM("embed-std", OPT_F64, &embed_std, "S", 0, 1, 1, "token embeddings ~ N(0, S^2) (default 0.02, as HF's init)"),
        CLI_FLAG("untied", &untied, "a separate random lm_head.weight instead of tied embeddings"),
        {.name = "image-size", .type = OPT_U64, .dst = &image_size, .arg = "S",
         .help = "siglip: SxS images, patch 8: (S/8)^2 patches (default 32)"},
        CLI_FLAG("force", &force, "replace an existing --out folder"),
    };
    const cli_spec spec = {"make-tiny",
                           "--out DIR [--kind llama|siglip] [--seed N]\n"
                           "                       [--preset llama-3.2-1b|llama-3.2-3b|llama-3.1-8b|siglip-base-patch16-224]\n"
                           "                       [--dtype bf16|f16|f32] [--tokenizer DIR] [--force]\n"
                           "       llama size: [--hidden-size N] [--layers N] [--embed-std S] [--untied]\n"
                           "       siglip size: [--image-size S]",
                           NULL, opts, CLI_NOPTS(opts), NULL, 0};
    int npos, prc = cli_parse(&spec, argc, argv, NULL, 0, &npos, 0, NULL);
    if (prc) return prc == 1 ? 0 : prc;
    if (!out || !*out) return cli_usage("make-tiny", "--out DIR is required");
    if (image_size && (image_size < 8 || image_size > 1024 || image_size % 8))
        return cli_usage("make-tiny", "--image-size needs a multiple of 8 in [8, 1024], found %llu",
                         (unsigned long long)image_size);
    const char *preset_kind = NULL;
    if (preset) {
        if (!strcmp(preset, "llama-3.2-1b") || !strcmp(preset, "llama-3.2-3b") || !strcmp(preset, "llama-3.1-8b"))
            preset_kind = "llama";
        else if (!strcmp(preset, "siglip-base-patch16-224")) preset_kind = "siglip";
        else
            return cli_usage("make-tiny", "unknown --preset '%s' (expected llama-3.2-1b, llama-3.2-3b, "
                             "llama-3.1-8b or siglip-base-patch16-224)", preset);
        if (kind && strcmp(kind, preset_kind))
            return cli_usage("make-tiny", "--preset %s is a %s model but --kind is %s", preset, preset_kind, kind);
        kind = preset_kind;
    }
    if (!kind) kind = "llama";
    if ((hidden || layers || embed_std != 0.02 || untied) && (preset || strcmp(kind, "llama")))
        return cli_usage("make-tiny", "--hidden-size/--layers/--embed-std/--untied shape the default tiny llama (not "
                                      "with --preset or --kind siglip)");
    if (hidden && (hidden % 32 || hidden > 8192))
        return cli_usage("make-tiny", "--hidden-size: expected a multiple of 32 up to 8192, found %llu", (unsigned long long)hidden);
    if (layers > 64) return cli_usage("make-tiny", "--layers: expected 1 to 64, found %llu", (unsigned long long)layers);
    if (strcmp(kind, "llama") && strcmp(kind, "siglip"))
        return cli_usage("make-tiny", "unknown --kind '%s' (expected llama or siglip)", kind);
    st_dtype dtype;
    const char *torch_dtype;
    if (dtype_of(dtype_s, &dtype, &torch_dtype))
        return cli_usage("make-tiny", "unknown --dtype '%s' (expected bf16, f16 or f32)", dtype_s);

    int is_llama = !strcmp(kind, "llama"), big = preset != NULL;
    char *tok = NULL;
    if (is_llama) tok = tok_dir ? xstrdup(tok_dir) : getenv("LORAC_TOKENIZER_DIR") ? xstrdup(getenv("LORAC_TOKENIZER_DIR")) : default_tokenizer_dir();

    // the temp folder sits next to the output so the final rename stays on one filesystem
    char *parent = path_dirname(out);
    size_t tn = strlen(out) + 32;
    char *tmp = xmalloc(tn);
    snprintf(tmp, tn, "%s.tmp.%d", out, (int)getpid());
    int rc = -1;
    tiny_ctx t = {.w = st_writer_new(), .dtype = dtype};
    t.weight = (fill_spec){seed, 0.0f, 0.02f};
    t.embed = (fill_spec){seed, 0.0f, (float)embed_std};
    t.norm = (fill_spec){seed, 1.0f, 0.05f};
    t.bias = (fill_spec){seed, 0.0f, 0.02f};
    char *st_path = path_join(tmp, "model.safetensors");
    if (mkdir_p(parent) != 0 || rm_rf(tmp) != 0 || mkdir_p(tmp) != 0) goto done;

    if (is_llama) {
        hf_llama_config c = tiny_llama_config(hidden, layers, untied, preset);
        snprintf(c.torch_dtype, sizeof c.torch_dtype, "%s", torch_dtype);
        if (copy_file(tok, tmp, "tokenizer.json", 1) || copy_file(tok, tmp, "tokenizer_config.json", 0) ||
            copy_file(tok, tmp, "special_tokens_map.json", 0))
            goto done;
        if (write_json(tmp, "config.json", llama_config_json(&c, 1e-5)) ||
            write_json(tmp, "generation_config.json", generation_config_json(&c)))
            goto done;
        llama_weights(&t, &c);
    } else {
        hf_siglip_config c = tiny_siglip_config(big, image_size);
        if (write_json(tmp, "config.json", siglip_config_json(&c, 1e-6, torch_dtype)) ||
            write_json(tmp, "preprocessor_config.json", preprocessor_json(&c)))
            goto done;
        siglip_weights(&t, &c);
    }
    if (st_writer_write(t.w, st_path) != 0 || self_check(tmp, is_llama) != 0) goto done;
    if (fsync_dir(tmp) != 0 || install_dir(tmp, out, force) != 0) goto done;
    rc = 0;
done:
    if (rc != 0) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", err_get());
        rm_rf(tmp);
        err_set("%s", msg);
    }
    st_writer_free(t.w);
    free(st_path);
    free(tmp);
    free(parent);
    free(tok);
    if (rc != 0) return cli_fail();
    fprintf(stderr, "make-tiny: wrote %s (%s%s, %s, seed %llu)\n", out, kind, big ? ", preset" : "",
            dtype_s, (unsigned long long)seed);
    return 0;
}
