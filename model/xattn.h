// xattn.h — gated cross-attention fusion (Flamingo / Llama 3.2 Vision style): trainable
// blocks inserted after every k-th decoder layer of a frozen Llama, whose queries come from
// the text rows and whose keys/values come from the projected vision features. The image is
// not inserted into the token sequence.
//
// Shapes (legend in ag.h): N text rows, M visual rows (projected features of the batch's
// images, each image R = projector_rows rows), C hidden, H query heads, K kv heads (GQA as the
// host model), D head dim, I intermediate size (the host model's).
//
// Block j (after decoder layer l_j = (j+1)·every − 1), on the residual stream x [N, C]:
//   a = Attn(q = rmsnorm(x, ln1) Wqᵀ, k = vis Wkᵀ, v = vis Wvᵀ)   (no RoPE; softmax(q·kᵀ/√D);
//       text row i attends the visual rows [kv_begin[i], kv_end[i]) of its own image; a row
//       without an image attends nothing and gets 0)
//   x = x + tanh(g_attn) · a Woᵀ
//   x = x + tanh(g_mlp) · down(silu(gate(h)) ∘ up(h)),  h = rmsnorm(x, ln2)
// Gates start at 0, so an untrained model computes exactly the base model (x + 0·y = x).
//
// Parameters (one ag_params block, in this order per block; `model.xattn_layers.{j}.`):
//   input_layernorm.weight [C]              (init 1)
//   cross_attn.q_proj.weight [H·D, C]       (nn.Linear default init: U(±1/√in), splitmix64
//   cross_attn.k_proj.weight [K·D, C]        stream from the seed, in this order)
//   cross_attn.v_proj.weight [K·D, C]
//   cross_attn.o_proj.weight [C, H·D]
//   cross_attn_attn_gate [1]                (init 0)
//   post_attention_layernorm.weight [C]     (init 1)
//   mlp.gate_proj.weight [I, C]
//   mlp.up_proj.weight [I, C]
//   mlp.down_proj.weight [C, I]
//   cross_attn_mlp_gate [1]                 (init 0)
// On disk (a folder): xattn.safetensors (F32, these names) and xattn_config.json
// {every, num_blocks, after_layers, hidden_size, num_attention_heads, num_key_value_heads,
//  head_dim, intermediate_size, rms_norm_eps}.
#ifndef LORAC_XATTN_H
#define LORAC_XATTN_H

#include <stdint.h>

#include "ag.h"
#include "hfconfig.h"
#include "llama.h"

enum { XA_LN1, XA_Q, XA_K, XA_V, XA_O, XA_GATE_ATTN, XA_LN2, XA_GATE, XA_UP, XA_DOWN, XA_GATE_MLP, XA_NT };

typedef struct xattn {
    int every, nblocks;           // block j follows decoder layer (j+1)·every − 1
    int C, H, KV, D, inter;       // hidden, query heads, kv heads, head dim, MLP width
    float eps;
    ag_params params;             // every trainable tensor, one block
    ag_tensor *(*t)[XA_NT];       // [nblocks][XA_NT] into params
} xattn;

// Fresh blocks for the model config: every >= 1 and <= num_layers (num_layers / every blocks).
// -1 + err_set otherwise.
int xattn_create(xattn *xa, const hf_llama_config *cfg, int every, uint64_t seed);
void xattn_free(xattn *xa);
// Writes DIR/xattn.safetensors and DIR/xattn_config.json (atomically; DIR created).
int xattn_save(const xattn *xa, const char *dir);
// Reads a folder written by xattn_save and checks it against the model config (sizes, layer
// count, every tensor's name and shape, no strays). -1 + err_set naming the file and key.
int xattn_load(xattn *xa, const char *dir, const hf_llama_config *cfg);

// One block on the tape: x [N, C], vis [M, C]; kv_begin/kv_end [N] (NULL: every row attends
// all of vis).
ag_tensor *xattn_block_forward(ag_ctx *c, const xattn *xa, int j, ag_tensor *x, ag_tensor *vis,
                               const int32_t *kv_begin, const int32_t *kv_end);

// What the decoder-layer hook needs: the blocks, the batch's visual rows and each text row's
// range of them.
typedef struct xattn_run {
    const xattn *xa;
    ag_tensor *vis;               // [M, C], or NULL: no image in the batch (attention gives 0)
    const int32_t *kv_begin;      // [N] or NULL (all rows attend all of vis)
    const int32_t *kv_end;        // [N] or NULL
} xattn_run;
// A llama_hook running block j after decoder layer (j+1)·every − 1.
llama_hook xattn_hook(xattn_run *r);

#endif
