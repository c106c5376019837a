// trainer.h — LoRA fine-tuning: the optimizer step and the whole run (`lorac train`).
//
// One optimizer step = grad_accum micro-batches. Each micro-batch runs the Llama forward on
// the tape (LoRA slots active, dropout on), the fused lm-head cross-entropy over its
// supervised rows divided by the step's total supervised tokens (so the step loss is the mean
// over all its supervised tokens, as docs/numerics.md "The loss" fixes), and the tape backward, which
// accumulates into the adapter's gradient block. Then: global-norm clipping, the scheduled
// learning rate, AdamW. Non-finite loss or gradients stop the run before the update.
//
// Projector modes (data/vision.h): `mode: projector` trains only the LLaVA projector (Llama
// and SigLIP frozen); `mode: projector+lora` trains the projector and a LoRA adapter with one
// AdamW over both blocks (gathered as [projector, lora] for the step, so the optimizer state
// and the global-norm clipping span both). Per micro-batch the visual features of its images
// come from the SigLIP tower (vision.model, vision.select_layer, the folder's preprocessing)
// or from the prepared feature cache (vision.features), go through the projector on the tape
// and replace the image rows of the token embeddings. Outputs: projector.safetensors +
// projector_config.json (+ the adapter files), checkpoints holding the same, dump_grads under
// the projector's (and adapter's) key names. Undecodable images: see vision.h.
#ifndef LORAC_TRAINER_H
#define LORAC_TRAINER_H

#include "ag.h"
#include "batch.h"
#include "config.h"
#include "llama.h"

// Forward + backward of one micro-batch; gradients accumulate into the trainable tensors.
// *loss += Σ nll / norm. Resets c first.
int train_micro_step(ag_ctx *c, const llama_model *m, const llama_lora *lora, const data_batch *b,
                     float norm, double *loss);
// Clipping (max_norm <= 0: none) and one AdamW step over the parameter block. *grad_norm is
// the norm before clipping. Refuses (-1 + err_set) a non-finite norm without updating.
int train_opt_step(ag_adamw *opt, ag_params *p, float lr, float max_norm, double *grad_norm);

// The whole `lorac train` run for a validated config. Returns the exit status (0, 1, 130).
int train_run(cfg_train *cfg);

#endif
