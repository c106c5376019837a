// ckpt.h — training checkpoints: output_dir/checkpoints/step_NNNNNNN/, written complete or
// not at all (a temporary folder, every file fsynced, then one rename).
//
// A checkpoint holds the trainable weights (written by the caller's callback: the PEFT
// adapter and/or the projector), optimizer.safetensors (AdamW moments `exp_avg`,
// `exp_avg_sq` as flat F32 [n], step count in the metadata) and trainer_state.json (step,
// data position, RNG state, resolved config — whatever JSON the trainer gives).
#ifndef LORAC_CKPT_H
#define LORAC_CKPT_H

#include <stdint.h>

#include "ag.h"

typedef int (*ckpt_write_fn)(void *user, const char *dir);

// Writes checkpoint `step`; then removes all but the newest keep_last (keep_last <= 0: keep all).
int ckpt_save(const char *output_dir, int64_t step, ckpt_write_fn write_weights, void *user,
              const ag_adamw *opt, const char *state_json, int keep_last);
// Path of the newest complete checkpoint folder (malloc'd), or NULL when there is none.
char *ckpt_find_latest(const char *output_dir);
// Restores the AdamW moments and step from DIR/optimizer.safetensors (sizes must match).
int ckpt_load_optimizer(const char *dir, ag_adamw *opt);
// DIR/trainer_state.json as a malloc'd string (NULL + err_set on failure).
char *ckpt_read_state(const char *dir);

#endif
