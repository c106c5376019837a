// fuzz_hfconfig.c — Hugging Face config parsing (model/hfconfig.c).
// Input: a selector byte, then the bytes of a JSON file:
//   selector % 3 == 0: a Llama config.json (hf_llama_config_parse, then the RoPE frequencies);
//   selector % 3 == 1: a SigLIP config.json (hf_siglip_config_load);
//   selector % 3 == 2: a SigLIP preprocessor_config.json next to a valid config.json.
#include "fuzz_common.h"
#include "hfconfig.h"

static const char siglip_cfg[] =
    "{\"model_type\": \"siglip_vision_model\", \"hidden_size\": 32, \"intermediate_size\": 64, "
    "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"image_size\": 32, \"patch_size\": 8}";

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int sel = data[0] % 3;
    data++;
    size--;
    if (sel == 0) {
        char *json = fz_str(data, size);
        hf_llama_config c;
        if (hf_llama_config_parse(json, "config.json", &c) == 0) {
            float *inv = xmalloc(sizeof(float) * (size_t)(c.head_dim / 2 + 1));
            hf_llama_inv_freq(&c, inv);
            free(inv);
        }
        free(json);
        return 0;
    }
    char *dir = path_join(fz_dir(), "siglip");
    char *cfg = sel == 1 ? fz_write("siglip/config.json", data, size)
                         : fz_write("siglip/config.json", siglip_cfg, sizeof siglip_cfg - 1);
    char *pre = sel == 2 ? fz_write("siglip/preprocessor_config.json", data, size) : NULL;
    hf_siglip_config c;
    (void)hf_siglip_config_load(dir, &c);
    if (pre) unlink(pre);
    free(pre);
    free(cfg);
    free(dir);
    return 0;
}
