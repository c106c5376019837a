// hfconfig.h — Hugging Face config.json (and preprocessor_config.json) for LLaMA and SigLIP,
// plus the RoPE inverse frequencies (default and llama3 rope_scaling).
//
// Llama: the sizes must be present (real Llama 3.x configs hold them all); optional keys
// take LlamaConfig's defaults. SigLIP: missing keys take SiglipVisionConfig's defaults
// (real SigLIP configs store only what differs from them). Inconsistent or unsupported
// values are errors naming config.json and the key.
#ifndef LORAC_HFCONFIG_H
#define LORAC_HFCONFIG_H

#include <stdint.h>

#include "safetensors.h"

typedef struct hf_llama_config {
    int vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, head_dim;
    float rms_norm_eps, rope_theta;
    int rope_llama3;                         // rope_scaling.rope_type == "llama3"
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    int tie_word_embeddings;
    int bos_id; int eos_ids[8]; int n_eos;   // eos_token_id int or list; bos -1 / n_eos 0 when absent
    int max_position_embeddings;
    char torch_dtype[16];                    // "bfloat16" ... ("" when absent)
} hf_llama_config;

// Reads DIR/config.json. -1 + err_set naming the file and the key.
int hf_llama_config_load(const char *dir, hf_llama_config *cfg);
// Parses config JSON text (`path` is used in messages only).
int hf_llama_config_parse(const char *json, const char *path, hf_llama_config *cfg);

#define SIGLIP_MAX_IMAGE 8192          // image_size (pixels per side) at most
#define SIGLIP_MAX_PATCHES (1 << 16)   // patches per image: (image_size / patch_size)^2 (SigLIP-so400m/384: 729)

typedef struct hf_siglip_config {   // vision part (SiglipVisionModel config, or vision_config of SiglipModel)
    int hidden_size, intermediate_size, num_layers, num_heads, image_size, patch_size, num_channels;
    float layer_norm_eps; char hidden_act[32];
    float image_mean[3], image_std[3];   // from preprocessor_config.json when present, else 0.5
    int resize_size;                     // preprocessor size (default image_size)
    float rescale_factor;                // 1/255 unless the preprocessor says otherwise (1 when do_rescale false)
    int num_patches;                     // (image_size / patch_size)²
} hf_siglip_config;

// Reads DIR/config.json and, when present, DIR/preprocessor_config.json.
int hf_siglip_config_load(const char *dir, hf_siglip_config *cfg);

// inv_freq[head_dim/2]: 1 / theta^(2i/head_dim), then the llama3 rule when rope_llama3
// (transformers modeling_rope_utils._compute_llama3_parameters, in fp32 as torch computes it).
void hf_llama_inv_freq(const hf_llama_config *cfg, float *inv_freq);

// Checks every weight of a Llama checkpoint against the config (shapes and presence;
// lm_head.weight required unless tied). -1 + err_set naming the file and tensor.
int hf_llama_check_weights(const st_model *m, const hf_llama_config *cfg);
// The same for the vision_model.* weights of a SigLIP checkpoint.
int hf_siglip_check_weights(const st_model *m, const hf_siglip_config *cfg);

#endif
