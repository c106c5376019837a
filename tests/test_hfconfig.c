// test_hfconfig.c — config.json parsing (Llama 3.2 and SigLIP as published on the hub),
// error messages for missing/inconsistent keys, RoPE inverse frequencies against the
// transformers formula (tests/fixtures/hfconfig_rope.safetensors from tests/gen_hfconfig.py),
// weight checks, and `lorac make-tiny` output loading through these readers.
#include <unistd.h>

#include "fixture.h"
#include "hfconfig.h"
#include "safetensors.h"
#include "test.h"
#include "util.h"

static const char *tmp;

// Llama-3.2-1B-Instruct's config.json as published.
static const char *LLAMA32_1B =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 128000,\n"
    "  \"eos_token_id\": [128001, 128008, 128009],\n"
    "  \"head_dim\": 64,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 2048,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 8192,\n"
    "  \"max_position_embeddings\": 131072,\n"
    "  \"mlp_bias\": false,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 16,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": {\n"
    "    \"factor\": 32.0,\n"
    "    \"high_freq_factor\": 4.0,\n"
    "    \"low_freq_factor\": 1.0,\n"
    "    \"original_max_position_embeddings\": 8192,\n"
    "    \"rope_type\": \"llama3\"\n"
    "  },\n"
    "  \"rope_theta\": 500000.0,\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.45.0.dev0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 128256\n"
    "}\n";

// Writes DIR/config.json (DIR = tmp/name) and returns DIR.
static char *write_config(const char *name, const char *file, const char *json) {
    char *dir = path_join(tmp, name);
    mkdir_p(dir);
    char *p = path_join(dir, file);
    file_write_atomic(p, json, strlen(json));
    free(p);
    return dir;
}

// LLAMA32_1B with `from` replaced by `to` (first occurrence).
static char *variant(const char *from, const char *to) {
    const char *at = strstr(LLAMA32_1B, from);
    AG_ASSERT(at, "variant: '%s' not in the config", from);
    size_t a = (size_t)(at - LLAMA32_1B), n = strlen(LLAMA32_1B) - strlen(from) + strlen(to) + 1;
    char *s = xmalloc(n);
    memcpy(s, LLAMA32_1B, a);
    strcpy(s + a, to);
    strcat(s, at + strlen(from));
    return s;
}

static void test_llama32(void) {
    char *dir = write_config("llama32", "config.json", LLAMA32_1B);
    hf_llama_config c;
    CHECK(hf_llama_config_load(dir, &c) == 0, "load: %s", err_get());
    CHECK(c.vocab_size == 128256 && c.hidden_size == 2048 && c.intermediate_size == 8192 &&
              c.num_layers == 16 && c.num_heads == 32 && c.num_kv_heads == 8 && c.head_dim == 64,
          "sizes");
    CHECK(c.rms_norm_eps == 1e-5f && c.rope_theta == 500000.0f, "eps %g theta %g", c.rms_norm_eps, c.rope_theta);
    CHECK(c.rope_llama3 && c.rope_factor == 32 && c.rope_low_freq_factor == 1 && c.rope_high_freq_factor == 4 &&
              c.rope_original_max_pos == 8192,
          "llama3 rope");
    CHECK(c.tie_word_embeddings == 1 && c.bos_id == 128000 && c.n_eos == 3 && c.eos_ids[0] == 128001 &&
              c.eos_ids[1] == 128008 && c.eos_ids[2] == 128009,
          "tokens");
    CHECK(c.max_position_embeddings == 131072 && !strcmp(c.torch_dtype, "bfloat16"), "misc");
    free(dir);

    // eos as an int, head_dim / kv heads / rope_scaling absent -> defaults
    char *s = variant("\"eos_token_id\": [128001, 128008, 128009]", "\"eos_token_id\": 128001");
    CHECK(hf_llama_config_parse(s, "x/config.json", &c) == 0 && c.n_eos == 1 && c.eos_ids[0] == 128001,
          "eos int: %s", err_get());
    free(s);
    s = variant("\"bos_token_id\": 128000,", "\"bos_token_id\": [128000],");
    CHECK(hf_llama_config_parse(s, "x/config.json", &c) == 0 && c.bos_id == 128000, "bos list: %s", err_get());
    free(s);
    s = variant("\"head_dim\": 64,", "");
    CHECK(hf_llama_config_parse(s, "x/config.json", &c) == 0 && c.head_dim == 64, "head_dim default");
    free(s);
    s = variant("\"head_dim\": 64,", "\"head_dim\": null,");
    CHECK(hf_llama_config_parse(s, "x/config.json", &c) == 0 && c.head_dim == 64, "head_dim null");
    free(s);
    s = variant("\"num_key_value_heads\": 8,", "");
    CHECK(hf_llama_config_parse(s, "x/config.json", &c) == 0 && c.num_kv_heads == 32, "kv default");
    free(s);
    s = variant("\"rope_scaling\": {", "\"rope_scalingX\": {");
    CHECK(hf_llama_config_parse(s, "x/config.json", &c) == 0 && !c.rope_llama3, "no rope scaling");
    free(s);
    s = variant("\"rope_type\": \"llama3\"", "\"rope_type\": \"default\"");
    CHECK(hf_llama_config_parse(s, "x/config.json", &c) == 0 && !c.rope_llama3, "rope_type default");
    free(s);
    s = variant("\"rope_type\": \"llama3\"", "\"type\": \"llama3\"");
    CHECK(hf_llama_config_parse(s, "x/config.json", &c) == 0 && c.rope_llama3, "old 'type' key");
    free(s);
    s = variant("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
    CHECK(hf_llama_config_parse(s, "x/config.json", &c) == 0 && !c.tie_word_embeddings, "untied");
    free(s);
}

// Each variant must fail with a message naming config.json and the key.
static void test_llama_errors(void) {
    const struct {
        const char *from, *to, *key;
    } cases[] = {
        {"\"hidden_size\": 2048,", "", "'hidden_size'"},
        {"\"vocab_size\": 128256", "\"vocab_sizeX\": 1", "'vocab_size'"},
        {"\"num_hidden_layers\": 16,", "\"num_hidden_layers\": 0,", "'num_hidden_layers'"},
        {"\"intermediate_size\": 8192,", "\"intermediate_size\": -5,", "'intermediate_size'"},
        {"\"hidden_size\": 2048,", "\"hidden_size\": \"2048\",", "'hidden_size'"},
        {"\"hidden_size\": 2048,", "\"hidden_size\": 2047.5,", "'hidden_size'"},
        {"\"hidden_size\": 2048,", "\"hidden_size\": 2050,", "'hidden_size'"},                      // 2050 % 32
        {"\"num_key_value_heads\": 8,", "\"num_key_value_heads\": 5,", "'num_key_value_heads'"},    // 32 % 5
        {"\"head_dim\": 64,", "\"head_dim\": 63,", "'head_dim'"},
        {"\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\"", "rope_type"},
        {"\"factor\": 32.0,", "", "rope_scaling.factor"},
        {"\"original_max_position_embeddings\": 8192,", "", "original_max_position_embeddings"},
        {"\"high_freq_factor\": 4.0,", "\"high_freq_factor\": 1.0,", "high_freq_factor"},
        {"\"rms_norm_eps\": 1e-05,", "\"rms_norm_eps\": 0,", "'rms_norm_eps'"},
        {"\"model_type\": \"llama\",", "\"model_type\": \"siglip\",", "'model_type'"},
        {"\"hidden_act\": \"silu\",", "\"hidden_act\": \"gelu\",", "'hidden_act'"},
        {"\"attention_bias\": false,", "\"attention_bias\": true,", "'attention_bias'"},
        {"\"tie_word_embeddings\": true", "\"tie_word_embeddings\": 1", "'tie_word_embeddings'"},
        {"[128001, 128008, 128009]", "[128001, \"x\"]", "eos_token_id"},
        {"[128001, 128008, 128009]", "[1,2,3,4,5,6,7,8,9]", "eos_token_id"},
        {"\"bos_token_id\": 128000,", "\"bos_token_id\": 128256,", "'bos_token_id'"},
        {"\"bos_token_id\": 128000,", "\"bos_token_id\": [\"x\"],", "'bos_token_id[0]'"},
        {"\"rope_theta\": 500000.0,", "\"rope_theta\": -1,", "'rope_theta'"},
        {"\"rope_scaling\": {", "\"rope_scaling\": 7, \"x\": {", "'rope_scaling'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = variant(cases[i].from, cases[i].to);
        hf_llama_config c;
        err_clear();
        int rc = hf_llama_config_parse(s, "models/x/config.json", &c);
        CHECK(rc == -1 && strstr(err_get(), "models/x/config.json") && strstr(err_get(), cases[i].key),
              "case %zu (%s -> %s): rc %d, message: %s", i, cases[i].from, cases[i].to, rc, err_get());
        if (getenv("TEST_VERBOSE")) printf("  rejected: %s\n", err_get());
        free(s);
    }
    hf_llama_config c;
    CHECK(hf_llama_config_parse("{\"vocab_size\": ", "y/config.json", &c) == -1 &&
              strstr(err_get(), "y/config.json"),
          "bad JSON: %s", err_get());
    CHECK(hf_llama_config_load("/nonexistent-model", &c) == -1 &&
              strstr(err_get(), "/nonexistent-model/config.json"),
          "missing file: %s", err_get());
}

// inv_freq against the transformers formula evaluated by torch in fp32
static void test_inv_freq(void) {
    fixture *fx = fixture_load("tests/fixtures/hfconfig_rope.safetensors");
    if (!fx) {
        CHECK(0, "fixture missing");
        return;
    }
    const struct {
        const char *name;
        int dim;
        float theta;
        int l3;
        float factor, lo, hi;
        int orig;
    } cases[] = {
        {"llama32_1b", 64, 500000, 1, 32, 1, 4, 8192}, {"tiny", 16, 500000, 1, 32, 1, 4, 8192},
        {"llama31_8b", 128, 500000, 1, 8, 1, 4, 8192}, {"default", 64, 10000, 0, 0, 0, 0, 0},
        {"odd_factors", 32, 123456, 1, 4, 2, 8, 1024},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char key[64];
        snprintf(key, sizeof key, "inv_freq_%s", cases[k].name);
        long n = 0;
        const float *want = fixture_f32(fx, key, &n);
        CHECK(want && n == cases[k].dim / 2, "%s: fixture size %ld", key, n);
        if (!want) continue;
        hf_llama_config c = {.head_dim = cases[k].dim, .rope_theta = cases[k].theta, .rope_llama3 = cases[k].l3,
                             .rope_factor = cases[k].factor, .rope_low_freq_factor = cases[k].lo,
                             .rope_high_freq_factor = cases[k].hi, .rope_original_max_pos = cases[k].orig};
        float got[64];
        hf_llama_inv_freq(&c, got);
        double worst = 0;
        for (long i = 0; i < n; i++) {
            double rel = fabs((double)got[i] - want[i]) / fabs((double)want[i]);
            if (rel > worst) worst = rel;
        }
        CHECK(worst <= 2.5e-7, "%s: max relative error %.3g", key, worst);
        if (getenv("TEST_VERBOSE")) printf("  %s: max rel err %.3g over %ld values\n", key, worst, n);
    }
    // and through config.json: the 1B config gives the llama32_1b frequencies
    hf_llama_config c;
    hf_llama_config_parse(LLAMA32_1B, "config.json", &c);
    float got[32];
    hf_llama_inv_freq(&c, got);
    long n;
    const float *want = fixture_f32(fx, "inv_freq_llama32_1b", &n);
    CHECK(want && max_rel_err(got, want, 32, 0) <= 2.5e-7 * 1.0, "config path: %g", want ? max_rel_err(got, want, 32, 0) : -1);
    fixture_free(fx);
}

// --- SigLIP

static void test_siglip(void) {
    // google/siglip-base-patch16-224: SiglipModel with a vision_config holding only non-defaults
    char *dir = write_config("siglip_full", "config.json",
                             "{\"architectures\": [\"SiglipModel\"], \"initializer_factor\": 1.0, "
                             "\"model_type\": \"siglip\", \"text_config\": {\"hidden_size\": 768, "
                             "\"model_type\": \"siglip_text_model\"}, \"torch_dtype\": \"float32\", "
                             "\"vision_config\": {\"model_type\": \"siglip_vision_model\", \"patch_size\": 16}}");
    hf_siglip_config s;
    CHECK(hf_siglip_config_load(dir, &s) == 0, "load: %s", err_get());
    CHECK(s.hidden_size == 768 && s.intermediate_size == 3072 && s.num_layers == 12 && s.num_heads == 12 &&
              s.image_size == 224 && s.patch_size == 16 && s.num_channels == 3 && s.num_patches == 196,
          "defaults");
    CHECK(s.layer_norm_eps == 1e-6f && !strcmp(s.hidden_act, "gelu_pytorch_tanh"), "eps/act");
    CHECK(s.image_mean[0] == 0.5f && s.image_std[2] == 0.5f && s.resize_size == 224 &&
              s.rescale_factor == 1.0f / 255.0f,
          "preprocessor defaults");
    // preprocessor_config.json overrides
    char *pp = path_join(dir, "preprocessor_config.json");
    const char *pre = "{\"do_normalize\": true, \"do_rescale\": true, \"do_resize\": true, "
                      "\"image_mean\": [0.48145466, 0.4578275, 0.40821073], \"image_std\": [0.26862954, "
                      "0.26130258, 0.27577711], \"resample\": 3, \"rescale_factor\": 0.00392156862745098, "
                      "\"size\": {\"height\": 224, \"width\": 224}}";
    file_write_atomic(pp, pre, strlen(pre));
    CHECK(hf_siglip_config_load(dir, &s) == 0, "load with preprocessor: %s", err_get());
    CHECK(s.image_mean[0] == 0.48145466f && s.image_std[2] == 0.27577711f && s.resize_size == 224 &&
              s.rescale_factor == (float)0.00392156862745098,
          "preprocessor values");
    const char *pre_bad = "{\"image_mean\": [0.5, 0.5], \"size\": {\"height\": 224, \"width\": 224}}";
    file_write_atomic(pp, pre_bad, strlen(pre_bad));
    CHECK(hf_siglip_config_load(dir, &s) == -1 && strstr(err_get(), "preprocessor_config.json") &&
              strstr(err_get(), "image_mean"),
          "bad mean: %s", err_get());
    const char *pre_rect = "{\"size\": {\"height\": 224, \"width\": 256}}";
    file_write_atomic(pp, pre_rect, strlen(pre_rect));
    CHECK(hf_siglip_config_load(dir, &s) == -1 && strstr(err_get(), "preprocessor_config.json") &&
              strstr(err_get(), "size"),
          "non-square: %s", err_get());
    free(pp);
    free(dir);

    dir = write_config("siglip_vision", "config.json",
                       "{\"model_type\": \"siglip_vision_model\", \"hidden_size\": 32, \"intermediate_size\": 64, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"image_size\": 32, "
                       "\"patch_size\": 8, \"layer_norm_eps\": 1e-6, \"hidden_act\": \"gelu_pytorch_tanh\"}");
    CHECK(hf_siglip_config_load(dir, &s) == 0 && s.hidden_size == 32 && s.num_patches == 16 && s.num_layers == 2,
          "vision model config: %s", err_get());
    free(dir);

    const struct {
        const char *json, *key;
    } bad[] = {
        {"{\"model_type\": \"siglip_vision_model\", \"image_size\": 100, \"patch_size\": 16}", "'image_size'"},
        {"{\"model_type\": \"siglip_vision_model\", \"hidden_size\": 100}", "'hidden_size'"},
        {"{\"model_type\": \"siglip\", \"vision_config\": {\"num_attention_heads\": 0}}",
         "'vision_config.num_attention_heads'"},
        {"{\"model_type\": \"llama\"}", "'model_type'"},
        {"{\"model_type\": \"siglip_vision_model\", \"hidden_act\": \"relu\"}", "'hidden_act'"},
        {"{\"model_type\": \"siglip_vision_model\", \"num_channels\": 1}", "'num_channels'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "siglip_bad%zu", i);
        dir = write_config(name, "config.json", bad[i].json);
        CHECK(hf_siglip_config_load(dir, &s) == -1 && strstr(err_get(), "config.json") &&
                  strstr(err_get(), bad[i].key),
              "case %zu: %s", i, err_get());
        if (getenv("TEST_VERBOSE")) printf("  rejected: %s\n", err_get());
        free(dir);
    }
}

// --- make-tiny output loads through these readers (runs the lorac binary)

static void stats(const float *x, int64_t n, double *mean, double *sd) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += x[i], s2 += (double)x[i] * x[i];
    *mean = s / n;
    *sd = sqrt(s2 / n - *mean * *mean);
}

static const char *lorac_bin(void) {
    const char *l = getenv("LORAC");
    return l ? l : "build/lorac";
}

static void test_make_tiny_llama(void) {
    if (access(lorac_bin(), X_OK) != 0) {
        CHECK(0, "%s not built", lorac_bin());
        return;
    }
    char *dir = path_join(tmp, "tiny_llama");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' make-tiny --out '%s' --seed 7 2>/dev/null", lorac_bin(), dir);
    CHECK(system(cmd) == 0, "make-tiny failed: %s", cmd);
    hf_llama_config c;
    CHECK(hf_llama_config_load(dir, &c) == 0, "config: %s", err_get());
    CHECK(c.vocab_size == 128256 && c.hidden_size == 64 && c.intermediate_size == 192 && c.num_layers == 2 &&
              c.num_heads == 4 && c.num_kv_heads == 2 && c.head_dim == 16 && c.rms_norm_eps == 1e-5f &&
              c.rope_llama3 && c.rope_factor == 32 && c.rope_theta == 500000.0f && c.tie_word_embeddings &&
              c.bos_id == 128000 && c.n_eos == 3 && c.eos_ids[2] == 128009 &&
              c.max_position_embeddings == 131072 && !strcmp(c.torch_dtype, "bfloat16"),
          "tiny llama config");
    st_model *m = st_open(dir);
    CHECK(m, "open: %s", err_get());
    if (!m) return;
    CHECK(hf_llama_check_weights(m, &c) == 0, "weights: %s", err_get());
    CHECK(st_count(m) == 2 + 9 * 2, "tensor count %d (no lm_head with tied embeddings)", st_count(m));
    CHECK(st_find(m, "lm_head.weight") == NULL, "no lm_head");
    CHECK(st_meta(m, "format") && !strcmp(st_meta(m, "format"), "pt"), "format pt");
    for (int i = 0; i < st_count(m); i++) CHECK(st_get(m, i)->dtype == ST_BF16, "bf16 weights");
    int64_t es[2] = {128256, 64}, ns[1] = {64};
    float *e = st_load_f32(m, "model.embed_tokens.weight", 2, es);
    float *nw = st_load_f32(m, "model.layers.1.post_attention_layernorm.weight", 1, ns);
    CHECK(e && nw, "load: %s", err_get());
    double mean, sd;
    if (e) {
        stats(e, es[0] * es[1], &mean, &sd);
        CHECK(fabs(mean) < 1e-3 && fabs(sd - 0.02) < 2e-4, "embedding mean %g sd %g (want 0, 0.02)", mean, sd);
    }
    if (nw) {
        stats(nw, 64, &mean, &sd);
        CHECK(fabs(mean - 1) < 0.03 && sd > 0.02 && sd < 0.09, "norm weight mean %g sd %g (want 1, 0.05)", mean,
              sd);
    }
    free(e);
    free(nw);
    st_close(m);
    // tokenizer files were copied
    char *tj = path_join(dir, "tokenizer.json"), *gc = path_join(dir, "generation_config.json");
    CHECK(file_exists(tj) && file_exists(gc), "tokenizer.json and generation_config.json present");
    free(tj);
    free(gc);
    free(dir);
}

static void test_make_tiny_siglip(void) {
    char *dir = path_join(tmp, "tiny_siglip");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' make-tiny --kind siglip --dtype f32 --out '%s' 2>/dev/null", lorac_bin(), dir);
    CHECK(system(cmd) == 0, "make-tiny failed: %s", cmd);
    hf_siglip_config s;
    CHECK(hf_siglip_config_load(dir, &s) == 0, "config: %s", err_get());
    CHECK(s.hidden_size == 32 && s.intermediate_size == 64 && s.num_layers == 2 && s.num_heads == 4 &&
              s.image_size == 32 && s.patch_size == 8 && s.num_patches == 16 && s.layer_norm_eps == 1e-6f &&
              !strcmp(s.hidden_act, "gelu_pytorch_tanh") && s.resize_size == 32 && s.image_mean[1] == 0.5f &&
              s.image_std[1] == 0.5f,
          "tiny siglip config");
    st_model *m = st_open(dir);
    CHECK(m, "open: %s", err_get());
    if (!m) return;
    CHECK(hf_siglip_check_weights(m, &s) == 0, "weights: %s", err_get());
    CHECK(st_count(m) == 5 + 16 * 2, "tensor count %d", st_count(m));
    const st_tensor *pw = st_find(m, "vision_model.embeddings.patch_embedding.weight");
    CHECK(pw && pw->dtype == ST_F32 && pw->ndim == 4 && pw->shape[1] == 3 && pw->shape[3] == 8, "patch weight");
    st_close(m);
    free(dir);
}

int main(void) {
    tmp = test_tmpdir("hfconfig");
    RUN(test_llama32);
    RUN(test_llama_errors);
    RUN(test_inv_freq);
    RUN(test_siglip);
    RUN(test_make_tiny_llama);
    RUN(test_make_tiny_siglip);
    return test_summary();
}
