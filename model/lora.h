// lora.h — LoRA adapters for the Llama projections, in the Hugging Face PEFT layout.
//
// For a target projection W [out, in]:  y = W x + s · B (A drop(x)),  A [r, in], B [out, r],
// s = alpha / r (alpha / sqrt(r) with rsLoRA). New adapters: A kaiming-uniform (a = sqrt(5),
// i.e. U(-1/sqrt(in), 1/sqrt(in))), B zeros. Parameters live in one ag_params block whose
// tensor names are the PEFT keys, e.g.
//   base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight
// so saving is one safetensors write and the file loads in PEFT / llama.cpp unchanged.
#ifndef LORAC_LORA_H
#define LORAC_LORA_H

#include <stdint.h>

#include "ag.h"
#include "hfconfig.h"
#include "llama.h"

// Targets are the Llama projections (llama_proj: LLAMA_Q .. LLAMA_DOWN, llama_proj_names).

typedef struct lora_config {
    int r;
    float alpha;
    float dropout;
    int use_rslora;
    unsigned targets;            // bit LLAMA_Q.. set for each adapted projection
    char base_model[1024];       // base_model_name_or_path
} lora_config;

typedef struct lora_adapter {
    lora_config cfg;
    int num_layers;
    float scale;                 // s
    ag_params params;            // all A and B factors, PEFT key names
    llama_lora_slot *slots;      // [num_layers * LLAMA_NPROJ] (A NULL where not adapted)
    llama_lora view;             // what llama_forward takes
} lora_adapter;

// Parses a target list ("q_proj", "all-linear", ...) into a bitmask; -1 + err_set on an
// unknown name (what names the source, e.g. "lora.targets").
int lora_parse_target(const char *name, unsigned *mask, const char *what);
// Shape [out, in] of projection `t` for the model.
void lora_proj_shape(const hf_llama_config *mc, int t, int64_t *out, int64_t *in);

// A fresh adapter (A kaiming-uniform from `seed`, B zero).
int lora_create(lora_adapter *a, const hf_llama_config *mc, const lora_config *lc, uint64_t seed);
// Loads DIR/adapter_config.json + DIR/adapter_model.safetensors, validating every shape
// against the model and rejecting what lorac cannot apply (DoRA, rank/alpha patterns,
// bias, modules_to_save, non-LoRA tensors). Errors name the file and tensor.
int lora_load(lora_adapter *a, const hf_llama_config *mc, const char *dir);
// Writes adapter_model.safetensors and adapter_config.json into DIR (each atomically).
int lora_save(const lora_adapter *a, const char *dir);
// The adapter's A/B tensor names for (layer, target).
void lora_key(char *buf, size_t n, int layer, int target, char AB);
// Sets the dropout used by the slots (0 for eval).
void lora_set_dropout(lora_adapter *a, float p);
void lora_free(lora_adapter *a);

#endif
