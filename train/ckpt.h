// ckpt.h — training checkpoints: output_dir/checkpoints/step_NNNNNNN/, written complete or
// not at all (a temporary folder, every file fsynced, then one rename; re-saving a step that
// exists exchanges the two folders in one step, so a complete step folder is never deleted
// before its replacement is in place; pruning renames a folder away before deleting it).
//
// A checkpoint holds the trainable weights (written by the caller's callback: the PEFT
// adapter and/or the projector), optimizer.safetensors (AdamW moments `exp_avg`,
// `exp_avg_sq` as flat F32 [n], step count in the metadata) and trainer_state.json (step,
// data position, RNG state, resolved config, data fingerprint — whatever JSON the trainer
// gives). Readers check everything before using any of it (train/trainer.c restore()).
#ifndef LORAC_CKPT_H
#define LORAC_CKPT_H

#include <stdint.h>

#include "ag.h"

typedef int (*ckpt_write_fn)(void *user, const char *dir);

// Writes checkpoint `step`; then removes all but the newest keep_last (keep_last <= 0: keep all).
int ckpt_save(const char *output_dir, int64_t step, ckpt_write_fn write_weights, void *user,
              const ag_adamw *opt, const char *state_json, int keep_last);
// Steps of the checkpoint folders, newest first (malloc'd, NULL when none); *n their count.
int64_t *ckpt_steps(const char *output_dir, int *n);
// output_dir/checkpoints/step_NNNNNNN (malloc'd)
char *ckpt_path(const char *output_dir, int64_t step);
// Path of the newest checkpoint folder (malloc'd), or NULL when there is none.
char *ckpt_find_latest(const char *output_dir);
// Removes the temporaries of interrupted saves and prunes (step_*.tmp*). Only for a run that
// holds the output_dir's lock.
void ckpt_remove_stale(const char *output_dir);
// Moves a damaged checkpoint folder out of the way: DIR -> DIR.damaged (replacing an older one).
int ckpt_set_aside(const char *dir);
// Reads DIR/optimizer.safetensors: moments m, v [n] and the step count t. Nothing is written
// to the outputs unless every check passes. -1 + err_set naming the file.
int ckpt_load_optimizer(const char *dir, int64_t n, float *m, float *v, int64_t *t);
// DIR/trainer_state.json as a malloc'd string (NULL + err_set on failure).
char *ckpt_read_state(const char *dir);

#endif
