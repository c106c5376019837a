// config.h — the training config: a YAML file (configs/*.yaml) plus dotted `key=value`
// overrides, parsed into a typed struct with defaults, validated, serialized to JSON for the
// trainer state and reloaded from that JSON on resume. Every key and default is documented
// in configs/README.md; the numerics are in docs/numerics.md.
//
//   cfg_train c;
//   if (cfg_load(&c, "configs/tiny-lora.yaml", n, overrides) || cfg_validate(&c)) fail;
//   char *json = cfg_to_json(&c);   ...   cfg_free(&c);
//
// Paths in the config (model, output_dir, data.*, vision.*, lora.init, projector.init,
// train.dump_grads) are used as written: relative paths are relative to the current working
// directory (as in Hugging Face / axolotl), not to the YAML file's folder.
#ifndef LORAC_CONFIG_H
#define LORAC_CONFIG_H

#include <stdint.h>

#include "schedule.h"

// the seven Llama projections LoRA may target, in PEFT's usual order ("all-linear" = all)
#define CFG_N_LORA_TARGETS 7
extern const char *const cfg_lora_target_names[CFG_N_LORA_TARGETS];

#define CFG_MAX_ARENA_MB (1LL << 24)
#define CFG_MAX_BATCH (1 << 20)          // train.batch_size and train.grad_accum at most (per-micro-batch arrays)   // train.arena_mb at most 16 TiB (arena_mb << 20 stays far from overflow)

typedef struct cfg_train {
    char mode[24];            // lora | projector | projector+lora | xattn | xattn+lora
    char *model;              // text model folder (HF layout); required
    char *precision;          // fp32 | bf16: frozen weights and their matmuls (ag_precision_parse)
    char *weights;            // auto | f32: how frozen weights are stored (ag_weights_parse)
    char *output_dir;         // required
    int resume;               // continue from the newest complete checkpoint in output_dir
    struct {
        char *train, *eval;   // JSONL (or prepared .h5 / .txt for eval); eval may be NULL
        char *format;         // auto | chat | alpaca | text | caption
        char *template_;      // llama3 | alpaca_classic   (YAML key: template)
        int max_seq_len;
        int packing, shuffle, train_on_prompt, skip_bad_lines;
        char *truncation;     // drop | truncate: what to do with a record over max_seq_len
    } data;
    struct {
        int r;
        float alpha, dropout;
        char **targets;       // names from cfg_lora_target_names, no duplicates
        int n_targets;
        int use_rslora;
        char *init;           // existing PEFT adapter folder, or NULL for a fresh adapter
    } lora;
    struct {
        char *model;          // SigLIP folder (projector modes)
        int select_layer;     // -2: output of the second-to-last layer; -1: after post_layernorm
        char *features;       // prepared HDF5 feature cache, or NULL
        int64_t max_pixels;   // images with more decoded pixels are rejected
    } vision;
    struct {
        char *type;           // linear | mlp2x_gelu
        char *init;           // existing projector output folder, or NULL
        char *pool_type;      // none | avg | linear   (YAML: pool: {type, tokens})
        int pool_tokens;      // N visual tokens per image when pooled
    } projector;
    struct {
        int every;            // xattn modes: a cross-attention block after every k-th decoder layer
    } xattn;
    struct {
        float lr, beta1, beta2, eps, weight_decay;   // YAML: betas: [beta1, beta2]
        float grad_clip;      // max global grad norm; 0 disables clipping
    } optim;
    struct {
        char *kind;           // cosine | linear | constant
        int warmup_steps;     // when > 0 it wins over warmup_ratio
        float warmup_ratio;   // warmup = ceil(warmup_ratio * N) when warmup_steps == 0
        float min_lr_ratio;   // m in the schedule formula
    } schedule;
    struct {
        int batch_size, grad_accum, epochs;
        int64_t max_steps;    // -1: epochs decide; > 0 overrides epochs
        uint64_t seed;
        int save_every;       // checkpoint every N optimizer steps (0: only at the end)
        int eval_every;       // evaluate every N optimizer steps (0: only at the end)
        int keep_last;        // checkpoints kept (0: keep all)
        char *dump_grads;     // safetensors file for the first step's gradients, or NULL
        int log_every;        // progress line on stderr every N steps (metrics.jsonl: every step)
        int64_t arena_mb;     // activation arena size in MiB (0: automatic)
        int threads;          // OpenMP threads (0: OpenMP's default)
        int activation_checkpointing;   // keep only each decoder layer's input; recompute it in backward
        int tensorboard;      // write output_dir/tb/ event files (train/tboard.h)
        char **sample_prompts;   // greedy samples during training: prompts given in the YAML,
        int n_sample_prompts;    //   or (YAML string) sample_file: .txt (a prompt per line) or
        char *sample_file;       //   .jsonl records (prompt + expected answer); see train/samples.h
        int sample_every;     // samples every N optimizer steps (0: only before training and at the end)
        int sample_max_tokens;   // new tokens per sample
    } train;
    char *config_path;        // the YAML file (or JSON source) the config came from, for messages
} cfg_train;

// --- building a config

// Fills *c with the defaults (overwrites without freeing: call on uninitialized memory).
void cfg_defaults(cfg_train *c);
// Initializes *c (cfg_defaults), reads the YAML file (NULL: none) and applies the overrides
// ("optim.lr=1e-4", "lora.targets=[q_proj,v_proj]", "lora.targets=all-linear", "lora.init=").
// Does not validate: call cfg_validate. On failure returns -1 with err_set, e.g.
//   configs/x.yaml:12: optim.lr: expected a number, found 'abc'
//   override 'optim.lrr=1': unknown key optim.lrr (valid keys of optim: lr, betas, ...)
// and leaves *c freed (cfg_free may still be called).
int cfg_load(cfg_train *c, const char *yaml_path, int n_overrides, char **overrides);
// Applies one `dotted.key=value` override to an initialized config (value parsed as YAML).
int cfg_override(cfg_train *c, const char *kv);
// Range and consistency checks (required keys for the mode, known names, value ranges).
// -1 + err_set naming the key, e.g. "configs/x.yaml: lora.dropout: expected 0 <= dropout < 1, found 1.5".
int cfg_validate(const cfg_train *c);
void cfg_free(cfg_train *c);

// --- JSON (trainer state)

// The resolved config as a JSON object with the YAML's keys (malloc'd, free()).
char *cfg_to_json(const cfg_train *c);
// Initializes *c from cfg_to_json's output (or any JSON object with config keys; missing
// keys keep their defaults). `what` names the source in messages. -1 + err_set on failure.
int cfg_from_json(cfg_train *c, const char *json, const char *what);
// The dotted name of the first key whose value differs between a and b, or NULL when equal
// (config_path is not compared). For "config changed since the checkpoint" messages.
const char *cfg_first_diff(const cfg_train *a, const cfg_train *b);

// --- learning-rate schedule: the optimizer's (autograd/schedule.h), from the optim/schedule keys

ag_schedule cfg_schedule(const cfg_train *c);
// ag_warmup_steps / ag_lr_at of cfg_schedule(c).
int64_t cfg_warmup_steps(const cfg_train *c, int64_t N);
float cfg_lr_at(const cfg_train *c, int64_t n, int64_t N);

#endif
