// siglip.h — the SigLIP vision tower (HF SiglipVisionTransformer without the pooling head),
// loaded frozen (fp32, or BF16 matmul weights in bf16 precision) from a Hugging Face folder
// and run without gradients.
//
// Shapes (legend in ag.h): B images of S×S pixels (S = image_size), patch size p,
// P = (S/p)² patches per image, N = B·P rows, C = hidden_size, I = intermediate_size,
// H heads of D = C/H.
//
// Forward, as transformers' modeling_siglip.py:
//   x = Conv2d(pixels; kernel = stride = p) flattened to [N, C] + position_embedding [P, C]
//   per layer: x = x + out_proj(attn(LN1(x)))   (full attention within each image, scale D^-0.5)
//              x = x + fc2(act(fc1(LN2(x))))     (act: tanh GELU, or exact GELU for "gelu")
//   last_hidden_state = post_layernorm(x)
// Linears run as one fused oneDNN matmul each (bias, GELU and the residual add on the fp32
// accumulator), in fp32 or, in bf16 precision, with BF16 operands; the features are the same
// bits at any thread count.
// The folder may be a SiglipVisionModel (`vision_model.*` keys) or a full SiglipModel whose
// `text_model.*` keys (and the pooling head `vision_model.head.*`) are never read.
#ifndef LORAC_SIGLIP_H
#define LORAC_SIGLIP_H

#include <stddef.h>

#include "ag.h"
#include "hfconfig.h"

typedef struct siglip_layer {
    ag_tensor ln1_w, ln1_b;          // [C]
    ag_tensor q_w, k_w, v_w, o_w;    // [C, C]
    ag_tensor q_b, k_b, v_b, o_b;    // [C]
    ag_tensor ln2_w, ln2_b;          // [C]
    ag_tensor fc1_w;                 // [I, C]
    ag_tensor fc1_b;                 // [I]
    ag_tensor fc2_w;                 // [C, I]
    ag_tensor fc2_b;                 // [C]
} siglip_layer;

typedef struct siglip_model {
    hf_siglip_config cfg;
    ag_tensor patch_w;      // [C, 3·p·p]: the conv weight [C, 3, p, p] flattened (c, kh, kw)
    ag_tensor patch_b;      // [C]
    ag_tensor pos;          // [P, C]
    ag_tensor post_ln_w, post_ln_b;   // [C]
    siglip_layer *layers;   // [num_layers]
    void **bufs;            // every weight buffer (freed by siglip_free)
    ag_precision precision; // bf16: the patch embedding and the layers' linear weights in BF16
    int nbufs;
} siglip_model;

// Reads DIR/config.json (+ preprocessor_config.json) and the vision_model.* weights (any of
// F32/BF16/F16/F64, held as fp32). Every shape is checked against the config first. -1 +
// err_set naming the file and tensor.
int siglip_load(const char *dir, siglip_model *m);
// The same in a given precision (AG_PREC_BF16: the patch embedding and every layer's linear
// weights held in BF16 and multiplied by BF16 matmuls; biases, norms, positions fp32).
int siglip_load_precision(const char *dir, siglip_model *m, ag_precision precision);
// The same with a weight storage: AG_WEIGHTS_AUTO keeps a BF16 file's linear weights in BF16
// in fp32 precision too (AG_BF16X: widened exactly inside each op, bit-identical results);
// siglip_load/_precision use AG_WEIGHTS_F32 (fp32 copies, as before).
int siglip_load_opts(const char *dir, siglip_model *m, ag_precision precision, ag_weights weights);
void siglip_free(siglip_model *m);

// Which hidden state `select_layer` names, as an index into HF's hidden_states (0 =
// embeddings, i = output of encoder layer i, before post_layernorm), or num_layers + 1 for
// -1 (last_hidden_state, after post_layernorm). Negative s < -1 counts from the end as
// Python does: -2 = hidden_states[L-1] (the second-to-last layer's output). -1 + err_set
// when out of range.
int siglip_resolve_layer(const hf_siglip_config *cfg, int select_layer);

// Arena bytes siglip_features needs for a batch of B images (peak, with slack).
size_t siglip_arena_bytes(const siglip_model *m, int B);

// Features of B images: pixels [B, 3, S, S] (preprocessed, CHW) -> out [B·P, C] (caller's
// buffer), the hidden state named by select_layer (see siglip_resolve_layer). Runs only the
// layers needed, in no-grad mode (the context's grad setting is restored). The residual
// stream lives in `out`; each layer's intermediates are released from the arena as soon as
// the layer is done, so the arena needs siglip_arena_bytes(m, B); the caller resets the
// context between batches (nothing is left on it). -1 + err_set on bad arguments or a
// full arena.
int siglip_features(ag_ctx *c, const siglip_model *m, const float *pixels, int B, int select_layer,
                    float *out);

#endif
