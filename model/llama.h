// llama.h — the Llama 3 decoder (Hugging Face LlamaForCausalLM) on the autograd tape:
// config + frozen fp32 weights loaded from a HF model folder, the forward for a
// padding-free packed batch (with optional LoRA on every projection), and a KV-cached
// no-grad forward for generation.
//
// Shapes (legend in autograd/ag.h): N rows, C hidden, I intermediate, H query heads,
// K kv heads, D head dim, V vocabulary, L layers.
//
// The forward returns the final normed hidden states h [N,C]; the caller applies the
// lm-head: ag_cross_entropy(c, h, &m->w.lm_head, targets, norm) for training,
// ag_nll_rows for evaluation, llama_logits for one row when generating.
#ifndef LORAC_LLAMA_H
#define LORAC_LLAMA_H

#include <stdint.h>

#include "ag.h"
#include "hfconfig.h"

// --- weights

// The seven projections of a layer, in the order used by llama_lora slots.
typedef enum llama_proj {
    LLAMA_Q, LLAMA_K, LLAMA_V, LLAMA_O, LLAMA_GATE, LLAMA_UP, LLAMA_DOWN, LLAMA_NPROJ
} llama_proj;
extern const char *const llama_proj_names[LLAMA_NPROJ];    // "q_proj", ..., "down_proj"
extern const char *const llama_proj_modules[LLAMA_NPROJ];  // "self_attn.q_proj", ..., "mlp.down_proj"

typedef struct llama_layer {
    ag_tensor attn_norm;           // [C]   input_layernorm
    ag_tensor proj[LLAMA_NPROJ];   // q [H*D,C], k [K*D,C], v [K*D,C], o [C,H*D],
                                   // gate [I,C], up [I,C], down [C,I]   (out × in)
    ag_tensor mlp_norm;            // [C]   post_attention_layernorm
} llama_layer;

typedef struct llama_weights {
    ag_tensor embed;       // [V,C]  model.embed_tokens.weight
    ag_tensor norm;        // [C]    model.norm.weight
    ag_tensor lm_head;     // [V,C]  lm_head.weight, or the embedding's memory when tied
    llama_layer *layers;   // [L]
} llama_weights;

// Where the frozen weights live (the memory log line).
typedef struct llama_mem {
    double bytes16, bytes32;   // bytes held in BF16 / fp32
    double mapped, copied;     // bytes served from the mapped file / copied to the heap
    double load_seconds;
} llama_mem;

typedef struct llama_model {
    hf_llama_config cfg;
    llama_weights w;       // frozen (requires_grad 0): fp32, or the embedding, lm-head and
                           // projections in BF16 (bf16 precision; fp32 precision with
                           // weights: auto and a BF16 file); each tensor its own heap copy, or
                           // served from the mapped file (weights: auto)
    ag_precision precision;
    ag_weights weights;
    llama_mem mem;
    struct st_model *st;   // the open weights file(s) (mapped weights point into them)
    float *inv_freq;       // [D/2] RoPE frequencies (llama3 rule applied)
    int tied;              // lm_head shares the embedding
    char *dir;             // the model folder (for messages)
} llama_model;

// Reads DIR/config.json and the weights (model.safetensors or a sharded index; BF16/F16/F32
// converted to fp32). Every tensor's shape is checked against the config; missing tensors
// and layers beyond num_hidden_layers are errors naming the file and the tensor. The
// lm_head is tied to the embedding when tie_word_embeddings is true or the file has no
// lm_head.weight. 0, or -1 + err_set (m is then empty).
int llama_load(const char *dir, llama_model *m);
// The same in a given precision. AG_PREC_BF16: the embedding, the lm-head and the seven
// projections of every layer are held in BF16 (BF16 tensors as stored, F32/F16 rounded once
// to nearest-even; one log line on stderr says which), the norms in fp32; every matmul
// against them is a BF16 matmul with fp32 accumulation (mm16.h).
int llama_load_precision(const char *dir, llama_model *m, ag_precision precision);
// The same with a weight storage (config `weights:`; llama_load/_precision use AG_WEIGHTS_F32,
// heap copies as before). AG_WEIGHTS_AUTO: BF16 matmul weights stay BF16 in fp32 precision
// too (AG_BF16X, bit-identical results), and tensors whose file dtype is the held dtype
// (BF16 matmul weights; F32 weights in fp32 precision) are served from the mapped file when
// aligned, with no heap copy.
int llama_load_opts(const char *dir, llama_model *m, ag_precision precision, ag_weights weights);
// One line on stderr: weights size by dtype, mapped or copied, precision, load time.
void llama_log_memory(const llama_model *m);
void llama_free(llama_model *m);
// Weight of projection p of layer l (out × in).
ag_tensor *llama_proj_weight(const llama_model *m, int layer, llama_proj p);
// The lm-head [V,C] (for ag_cross_entropy / ag_nll_rows), and the embedding table [V,C].
ag_tensor *llama_lm_head(const llama_model *m);
ag_tensor *llama_embed(const llama_model *m);

// --- LoRA hooks

// One adapted projection: y = W x + scale · B (A drop(x)). A [r, in], B [out, r].
typedef struct llama_lora_slot {
    ag_tensor *A, *B;      // A NULL: no LoRA on this projection
    float scale, dropout;  // dropout applies only when ctx->training
} llama_lora_slot;

typedef struct llama_lora {
    llama_lora_slot *slots;   // [L * LLAMA_NPROJ], slot (l, p) at l * LLAMA_NPROJ + p
} llama_lora;

// --- forward (on the tape)

// A padding-free batch of N rows: token ids [N] (embedded here) or input embeddings
// embeds [N,C] (e.g. visual tokens spliced in by the caller; may require grad); exactly
// one of ids / embeds. pos [N]: RoPE positions. kv_begin [N]: row i attends rows
// [kv_begin[i], i] (the start of its document: causal within documents), NULL = 0 for all.
// lora may be NULL. Records on the tape when grad mode is on and something requires a
// gradient; in no-grad mode, intermediates are dropped layer by layer (the arena is
// rewound), so memory stays O(N·(C+I)). Returns h [N,C] (final RMSNorm applied), or NULL
// + err_set.
ag_tensor *llama_forward(ag_ctx *c, const llama_model *m, const llama_lora *lora,
                         const int32_t *ids, ag_tensor *embeds, int64_t N,
                         const int32_t *pos, const int32_t *kv_begin);

// A hook run on the residual stream after each decoder layer (e.g. the cross-attention
// blocks of model/xattn.h): returns the new x [N,C] (or x itself), NULL + err_set on failure.
typedef struct llama_hook {
    ag_tensor *(*after_layer)(void *user, ag_ctx *c, int layer, ag_tensor *x);
    void *user;
} llama_hook;
// llama_forward with a hook (NULL: none).
ag_tensor *llama_forward_hooked(ag_ctx *c, const llama_model *m, const llama_lora *lora,
                                const int32_t *ids, ag_tensor *embeds, int64_t N,
                                const int32_t *pos, const int32_t *kv_begin, const llama_hook *hook);

// --- generation: KV cache + no-grad cached forward

typedef struct llama_kv_cache {
    int64_t len;      // rows filled (positions 0..len-1)
    int64_t cap;      // rows allocated
    int64_t width;    // K*D
    int nlayers;
    float **k, **v;   // [L] × [cap, K*D], keys after RoPE
} llama_kv_cache;

int llama_kv_cache_init(llama_kv_cache *kv, const llama_model *m, int64_t cap);   // -1 + err_set
void llama_kv_cache_free(llama_kv_cache *kv);

// Appends N rows at positions kv->len .. kv->len+N-1 (ids [N] or embeds [N,C]), each
// attending every earlier row of the cache and itself; runs in no-grad mode (whatever the
// context's setting) and leaves the new rows' K,V in the cache. Returns h [N,C] in the
// arena (valid until the next ag_ctx_reset), or NULL + err_set (cache full, bad ids).
ag_tensor *llama_forward_cached(ag_ctx *c, const llama_model *m, const llama_lora *lora,
                                llama_kv_cache *kv, const int32_t *ids, ag_tensor *embeds,
                                int64_t N);

// llama_forward_cached with a hook (NULL: none).
ag_tensor *llama_forward_cached_hooked(ag_ctx *c, const llama_model *m, const llama_lora *lora,
                                       llama_kv_cache *kv, const int32_t *ids, ag_tensor *embeds,
                                       int64_t N, const llama_hook *hook);

// logits [V] = lm_head · h [C] (one row: cblas_sgemv, or a BF16 matrix-vector product).
void llama_logits(const llama_model *m, const float *h, float *logits);

#endif
