// fuzz_lora.c — PEFT adapter loading (model/lora.c): adapter_config.json (peft_type, r,
// lora_alpha, lora_dropout, target_modules, unsupported options) and the adapter's tensors checked
// against a tiny Llama (2 layers, hidden 32, 4 heads / 2 kv heads, head_dim 8, mlp 64).
// Input: adapter_config.json, then after the first NUL byte adapter_model.safetensors. Without a
// NUL byte the weights are a valid r=2 q_proj+v_proj adapter for that model.
#include "fuzz_common.h"
#include "lora.h"

static const char model_cfg[] =
    "{\"model_type\": \"llama\", \"vocab_size\": 256, \"hidden_size\": 32, \"intermediate_size\": 64, "
    "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 8}";

// A valid adapter's weights for the tiny model (lora_save of a fresh r=2 adapter), once.
static char *default_weights(const hf_llama_config *mc) {
    static char *path;
    if (path) return path;
    lora_config lc = {.r = 2, .alpha = 4, .targets = 1u << LLAMA_Q | 1u << LLAMA_V};
    lora_adapter a;
    char *dir = path_join(fz_dir(), "lora_default");
    if (lora_create(&a, mc, &lc, 1) || mkdir_p(dir) || lora_save(&a, dir)) {
        fprintf(stderr, "fuzz_lora: %s\n", err_get());
        abort();
    }
    lora_free(&a);
    path = path_join(dir, "adapter_model.safetensors");
    free(dir);
    return path;
}

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    static hf_llama_config mc;
    static int have_mc;
    if (!have_mc) {
        if (hf_llama_config_parse(model_cfg, "config.json", &mc)) abort();
        have_mc = 1;
    }
    const uint8_t *a, *b;
    size_t an, bn;
    fz_split(data, size, &a, &an, &b, &bn);
    char *cfg = fz_write("lora/adapter_config.json", a, an);
    char *st;
    if (an < size) {
        st = fz_write("lora/adapter_model.safetensors", b, bn);
    } else {
        size_t n;
        char *w = file_read_all(default_weights(&mc), &n);
        st = fz_write("lora/adapter_model.safetensors", w, n);
        free(w);
    }
    char *dir = path_join(fz_dir(), "lora");
    lora_adapter ad;
    memset(&ad, 0, sizeof ad);
    if (lora_load(&ad, &mc, dir) == 0) lora_free(&ad);
    free(dir);
    free(st);
    free(cfg);
    return 0;
}
