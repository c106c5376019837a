// projector.h — the trainable vision→text projector of LLaVA: `linear` (one Linear with
// bias) or `mlp2x_gelu` (Linear, exact-erf GELU, Linear; both with bias), mapping vision
// features [N, Cv] to text embeddings [N, Ct].
//
// Parameters live in one ag_params block under LLaVA's names:
//   linear:     model.mm_projector.weight [Ct, Cv], model.mm_projector.bias [Ct]
//   mlp2x_gelu: model.mm_projector.0.weight [Ct, Cv], model.mm_projector.0.bias [Ct],
//               model.mm_projector.2.weight [Ct, Ct], model.mm_projector.2.bias [Ct]
// A fresh projector takes PyTorch's default nn.Linear init: weight and bias ~ U(-1/√in, 1/√in)
// (kaiming_uniform with a = √5), drawn in the order above from a splitmix64 stream.
//
// Pooling (before the projection): the P patch features of an image are reduced to N visual
// tokens over the patch axis. `none`: all P patches; `avg`: torch.nn.AdaptiveAvgPool1d(N)
// (bin i averages patches [floor(i·P/N), ceil((i+1)·P/N))); `linear`: a trainable map
//   model.mm_pool.weight [N, P], model.mm_pool.bias [N]      (tokens = W · patches + b)
// initialized as the avg pooling matrix and a zero bias (so training starts from `avg`),
// registered after the projection's tensors (their seeded init is unchanged).
//
// On disk (a folder): projector.safetensors (F32, the names above) and projector_config.json
// {projector_type, select_layer, vision_hidden_size, text_hidden_size, num_patches,
//  pool_type, pool_tokens} (num_patches = P; a file without pool_type means `none`).
#ifndef LORAC_PROJECTOR_H
#define LORAC_PROJECTOR_H

#include <stdint.h>

#include "ag.h"

typedef enum { PROJECTOR_LINEAR = 0, PROJECTOR_MLP2X_GELU = 1 } projector_kind;

typedef enum { POOL_NONE = 0, POOL_AVG = 1, POOL_LINEAR = 2 } pool_kind;

typedef struct projector {
    projector_kind type;
    pool_kind pool;                   // POOL_NONE: rows = num_patches
    int pool_tokens;                  // N (0 with POOL_NONE)
    int vision_hidden, text_hidden;   // Cv, Ct
    int select_layer, num_patches;    // from projector_config.json (projector_load); -2, 0 after create
    ag_params params;                 // every trainable tensor, one block
    ag_tensor *w1;                    // [Ct, Cv]
    ag_tensor *b1;                    // [Ct]
    ag_tensor *w2;                    // [Ct, Ct] (mlp2x_gelu only, else NULL)
    ag_tensor *b2;                    // [Ct]     (mlp2x_gelu only, else NULL)
    ag_tensor *pw;                    // [N, P]   (linear pool only, else NULL)
    ag_tensor *pb;                    // [N]      (linear pool only, else NULL)
} projector;

// "linear" / "mlp2x_gelu" -> kind; -1 + err_set naming the accepted values otherwise.
int projector_type_parse(const char *s, projector_kind *out);
const char *projector_type_name(projector_kind k);

// A fresh projector with PyTorch's default Linear init from `seed`. -1 + err_set on an
// unknown type or non-positive sizes.
int projector_create(projector *p, const char *type, int vision_hidden, int text_hidden, uint64_t seed);
// The same with pooling: pool "none" | "avg" | "linear" over P = num_patches patches to
// N = tokens rows (1 <= N <= P; ignored for none). -1 + err_set on a bad pool.
int projector_create_pooled(projector *p, const char *type, int vision_hidden, int text_hidden, const char *pool,
                            int num_patches, int tokens, uint64_t seed);
void projector_free(projector *p);

// "none" / "avg" / "linear" -> kind; -1 + err_set otherwise.
int projector_pool_parse(const char *s, pool_kind *out);
const char *projector_pool_name(pool_kind k);
// Visual rows per image in the token sequence: N when pooled, else num_patches.
int projector_rows(const projector *p);
// features [B·P, Cv] -> [B·N, Cv] on the tape (the input itself when not pooled). NULL +
// err_set when the rows are not whole images of num_patches.
ag_tensor *projector_pool(ag_ctx *c, const projector *p, ag_tensor *features);
// The same without the tape: in [B·P, Cv] -> out [B·N, Cv] (copied when not pooled).
void projector_pool_plain(const projector *p, const float *in, int B, float *out);

// features [N, Cv] -> [N, Ct], recorded on the tape (the parameters require grad; the
// features usually do not). NULL + err_set on a shape mismatch.
ag_tensor *projector_forward(ag_ctx *c, const projector *p, ag_tensor *features);

// Writes DIR/projector.safetensors and DIR/projector_config.json (each atomically; DIR is
// created when missing).
int projector_save(const projector *p, const char *dir, int select_layer, int num_patches);
// Writes the current gradients (params.grad) as F32 safetensors at PATH under the same
// names (train.dump_grads).
int projector_save_grads(const projector *p, const char *path);
// Reads a folder written by projector_save, validating the config and every tensor (names,
// shapes, no strays). -1 + err_set naming the file and key/tensor.
int projector_load(projector *p, const char *dir);

#endif
