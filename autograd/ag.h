// ag.h — tensors, the activation arena, the tape, and every differentiable op.
//
// Dimension legend used in shape comments throughout lorac:
//   N  rows (tokens of all sequences of a batch, concatenated: no padding)
//   C  model width (hidden size)      I  MLP width (intermediate size)
//   H  query heads   K  key/value heads (GQA: H % K == 0)   D  head dim
//   V  vocabulary    r  LoRA rank     P  patches per image
//
// Model:
//   - ag_tensor: fp32, row-major, up to 4 dims. Frozen weights are plain tensors wrapped
//     around weight memory (grad == NULL, requires_grad == 0): they never get a gradient.
//     A frozen weight may instead be stored in BF16 (dtype AG_BF16: w16 set, data NULL;
//     precision: bf16). The ops that read frozen weights accept it: linear and LoRA linear
//     (BF16 matmuls, mm16.h), embedding (rows widened exactly) and the lm-head loss. In fp32
//     precision a BF16 weight may stay BF16 too (dtype AG_BF16X, weights: auto): the same
//     ops widen it exactly a block at a time and run the fp32 math (wide16.h), so results
//     are bit-identical to an fp32 copy of the weight.
//   - ag_params: the trainable parameters (LoRA factors, projector), carved from one
//     block for data and one for gradients (zeroing is one memset, a checkpoint one write).
//   - ag_ctx: the per-step arena (activations, saved tensors, intermediate gradients) and
//     the tape. Ops append a node when grad mode is on and any input requires a gradient;
//     ag_backward walks the tape in reverse and runs each node's backward, which
//     ACCUMULATES (+=) into its inputs' gradients. ag_ctx_reset frees everything per step.
//   - No-grad mode (ag_set_grad(ctx, 0)): nothing is recorded and nothing is saved.
//
// Errors: ops return NULL after err_set("op: ...shapes...") on bad shapes or a full arena;
// an op given a NULL input returns NULL at once, so model code can chain ops and check the
// final result only.
#ifndef LORAC_AG_H
#define LORAC_AG_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define AG_MAXDIM 4
// Work (elements, or multiply-adds) below which an op's own OpenMP loop stays on one thread.
// Measured on 2 cores (issue 17, an elementwise z = x*y + z): quiet, two threads win from ~8K
// elements, saving ~2 us at 64K and ~15 us at 256K; with another process on the machine any
// region can stall for a scheduler time slice (~1 ms) waiting for its parked second thread.
// 256K keeps the quiet cost of running serially below ~15 us per op while taking the small
// model's per-layer elementwise ops (N x hidden) out of the region count; the Llama-3.2-1B
// shapes (512 x 2048 and up) stay parallel. Only loops whose iterations write their own
// outputs (or fixed-order partials) get such a clause, so results do not depend on it.
#define AG_PAR_MIN (1 << 18)
#define AG_MAXIN 6

// --- tensors

// Storage of a tensor's values: fp32 (data), or BF16 for frozen weights (w16): AG_BF16 is
// multiplied by BF16 matmuls (precision bf16), AG_BF16X widened exactly to fp32 (precision fp32).
typedef enum ag_dtype { AG_F32 = 0, AG_BF16, AG_BF16X } ag_dtype;

// How frozen weights are held and multiplied: fp32, or BF16 with fp32 accumulation.
typedef enum ag_precision { AG_PREC_FP32 = 0, AG_PREC_BF16 } ag_precision;
const char *ag_precision_name(ag_precision p);             // "fp32" / "bf16"
int ag_precision_parse(const char *s, ag_precision *out);  // -1 (no err_set) when unknown

// How frozen weights are stored (config `weights:`, --weights): auto keeps them as the file
// has them (16-bit stays 16-bit, served from the mapped file when possible); f32 widens them
// to fp32 copies at load (precision fp32; in bf16 precision matmul weights are BF16 either
// way, and f32 means heap copies instead of the mapping).
typedef enum ag_weights { AG_WEIGHTS_AUTO = 0, AG_WEIGHTS_F32 } ag_weights;
const char *ag_weights_name(ag_weights w);             // "auto" / "f32"
int ag_weights_parse(const char *s, ag_weights *out);  // -1 (no err_set) when unknown

typedef struct ag_tensor {
    float *data;                // [numel] (NULL when dtype is AG_BF16)
    uint16_t *w16;              // [numel] BF16 values of a frozen weight (dtype AG_BF16), else NULL
    ag_dtype dtype;
    float *grad;                // [numel], or NULL: allocated lazily (arena) or by ag_params
    int64_t shape[AG_MAXDIM];   // shape[0..ndim-1], row-major
    int ndim;
    int64_t numel;
    int requires_grad;          // a gradient flows into this tensor
    int is_param;               // trainable leaf (its grad lives in an ag_params block)
    int grad_transient;         // model-internal intermediate: once backward has consumed its
                                // grad (after its producer's backward), the buffer is recycled
    int data_transient;         // model-internal, values read by nothing but the tape: its data
                                // buffer is recycled (and data set to NULL) once the last node
                                // reading it has run backward
    int free_pass, free_after;  // (ag_backward bookkeeping: after which node the data is dead)
    const char *name;           // optional, for error messages
} ag_tensor;

// A frozen weight held in 16 bits (w16 set, data NULL): AG_BF16 or AG_BF16X.
static inline int ag_is16(const ag_tensor *t) { return t->dtype != AG_F32; }

// A tensor header around existing memory (frozen weights, caller buffers). No grad.
ag_tensor ag_wrap(float *data, int ndim, const int64_t *shape, const char *name);
ag_tensor ag_wrap2(float *data, int64_t d0, int64_t d1, const char *name);
ag_tensor ag_wrap1(float *data, int64_t d0, const char *name);
// A frozen BF16 weight header around w16[numel].
ag_tensor ag_wrap_bf16(uint16_t *w16, int ndim, const int64_t *shape, const char *name);
// The same for fp32 precision (AG_BF16X: widened exactly inside each op).
ag_tensor ag_wrap_bf16x(uint16_t *w16, int ndim, const int64_t *shape, const char *name);
int64_t ag_numel(int ndim, const int64_t *shape);
// "[3, 4]" into buf (returns buf), for error messages
char *ag_shape_str(const ag_tensor *t, char *buf, size_t n);
int ag_same_shape(const ag_tensor *a, const ag_tensor *b);

// --- arena: one reserved region, bump-allocated, reset per step

typedef struct ag_arena {
    char *base;
    size_t cap;      // bytes reserved (pages are committed only when touched)
    size_t used;     // bytes handed out since the last reset
    size_t high;     // high-water mark over the arena's life
} ag_arena;

int ag_arena_init(ag_arena *a, size_t cap_bytes);                // -1 + err_set on failure
void *ag_arena_alloc(ag_arena *a, size_t bytes, const char *what); // 64-byte aligned; NULL + err_set when full
void ag_arena_reset(ag_arena *a);
void ag_arena_free(ag_arena *a);

// --- the tape

typedef enum ag_op {
    AG_OP_NONE = 0,
    AG_OP_LINEAR,        // y = x Wᵀ (+ b)
    AG_OP_LORA_LINEAR,   // y = x Wᵀ + s·B(A·drop(x))
    AG_OP_ADD,           // a + b (b broadcast when its numel divides a's)
    AG_OP_MUL,           // a ∘ b
    AG_OP_SCALE,         // s·a
    AG_OP_RMSNORM,       // x / rms(x) ∘ w
    AG_OP_LAYERNORM,     // (x - μ)/σ ∘ w + b
    AG_OP_ROPE,          // rotate-half RoPE at given positions
    AG_OP_ATTENTION,     // fused grouped-query attention (O(N) saved state)
    AG_OP_SWIGLU,        // silu(gate) ∘ up
    AG_OP_GELU,          // exact (erf) GELU
    AG_OP_GELU_TANH,     // tanh-approximated GELU
    AG_OP_EMBEDDING,     // rows of a table gathered by ids
    AG_OP_CONCAT_ROWS,   // [N1,C] ++ [N2,C] ++ ...
    AG_OP_SCATTER_ROWS,  // copy of base with some rows replaced by src rows
    AG_OP_CROSS_ENTROPY, // fused lm-head + masked cross-entropy, chunked over V
    AG_OP_POOL,          // learned pooling over the patch axis, per image (ops_vision.c)
    AG_OP_AVGPOOL,       // AdaptiveAvgPool1d over the patch axis, per image
    AG_OP_GATED_ADD,     // x + tanh(g)·z
    AG_OP_CHECKPOINT,    // a function of x re-run in backward (activation checkpointing)
    AG_OP_COUNT
} ag_op;
extern const char *const ag_op_names[AG_OP_COUNT];

typedef struct ag_ctx ag_ctx;
typedef struct ag_node ag_node;
typedef void (*ag_backward_fn)(ag_ctx *c, ag_node *n);

struct ag_node {
    ag_op op;
    ag_tensor *out;
    ag_tensor *in[AG_MAXIN];    // differentiable inputs (NULL allowed for absent ones)
    int nin;
    ag_backward_fn backward;
    void *saved;                // op-specific saved state (arena)
    const void *aux[4];         // op-specific non-differentiable inputs (copied to the arena)
    int64_t i[8];               // op-specific integers
    float f[4];                 // op-specific floats
};

struct ag_ctx {
    ag_arena arena;
    ag_node *nodes;             // the tape, in op order
    int nnodes, cap_nodes;
    int grad_enabled;           // 0: no-grad mode, nothing recorded
    int training;               // dropout active
    uint64_t rng;               // dropout RNG state (saved in checkpoints)
    int checkpoint;             // activation checkpointing: llama_forward runs each decoder
                                // layer through ag_checkpoint (only its input is kept)
    // buffers given back during backward (gradients of grad_transient tensors once consumed,
    // data of data_transient ones once no node's backward reads it), reused by ag_grad for
    // a gradient of the same size (intermediate grads then cost ~one layer, mostly in dead
    // activations' memory)
    struct ag_free_buf { float *p; size_t bytes; } *free_bufs;
    int nfree, cap_free;
    int pass;                   // backward passes run (sub-tapes of checkpoints included)
    int recomputing;            // > 0 while a checkpoint's function is re-run in backward
    double prof_mark;           // LORAC_PROFILE: time of the previous ag_prof_mark
};

int ag_ctx_init(ag_ctx *c, size_t arena_bytes);
void ag_ctx_free(ag_ctx *c);
void ag_ctx_reset(ag_ctx *c);          // drops the tape and every arena allocation
int ag_set_grad(ag_ctx *c, int on);    // returns the previous setting

// New arena tensor (uninitialized / zero-filled). NULL + err_set when the arena is full.
ag_tensor *ag_new(ag_ctx *c, int ndim, const int64_t *shape);
ag_tensor *ag_new2(ag_ctx *c, int64_t d0, int64_t d1);
ag_tensor *ag_new1(ag_ctx *c, int64_t d0);
ag_tensor *ag_zeros2(ag_ctx *c, int64_t d0, int64_t d1);
void *ag_alloc(ag_ctx *c, size_t bytes, const char *what);   // scratch from the arena

// For op implementations: does any of these inputs need a gradient (and is grad on)?
int ag_needs_grad(const ag_ctx *c, ag_tensor *const *in, int nin);
// Appends a node for `out` (marks out->requires_grad). Returns NULL when nothing needs a
// gradient (no node recorded, out->requires_grad = 0) or on a full tape.
ag_node *ag_record(ag_ctx *c, ag_op op, ag_tensor *out, ag_tensor *const *in, int nin,
                   ag_backward_fn backward);
// The gradient buffer of t, zero-filled on first use (arena) unless t is a parameter.
// NULL when t does not require a gradient.
float *ag_grad(ag_ctx *c, ag_tensor *t);
// Runs the tape backwards from a scalar loss (seeded with dloss = 1).
int ag_backward(ag_ctx *c, ag_tensor *loss);
// Runs the tape backwards from any output, seeded with dout (same numel as out).
int ag_backward_from(ag_ctx *c, ag_tensor *out, const float *dout);

// --- activation checkpointing
//
// y = fn(c, user, x), with only x kept for backward: the forward runs fn recording on the tape
// as usual, copies its result into y (allocated first, below fn's tensors), then drops fn's
// nodes and gives its arena space back. One AG_OP_CHECKPOINT node stands for them; its
// backward re-runs fn from x (the dropout RNG state restored, so the same masks) recording
// on the tape above the current arena use, backpropagates y's gradient through that
// sub-tape into x and the parameters fn uses, then releases it. fn's ops run the same code
// on the same values both times, so results (and gradients) are bit-identical to calling fn
// directly; the saved activations shrink to x per call plus one call's worth at a time.
// fn must return a tensor of x's shape, read nothing but x, `user` (user_bytes are copied
// into the arena; pointers in it must stay valid until backward) and tensors that outlive
// the step, and consume c->rng the same way every time. Without grad mode fn is just called.
typedef ag_tensor *(*ag_ckpt_fn)(ag_ctx *c, const void *user, ag_tensor *x);
ag_tensor *ag_checkpoint(ag_ctx *c, ag_ckpt_fn fn, const void *user, size_t user_bytes, ag_tensor *x);
// Nested checkpointing: the same, for the LAST op of a function that is itself run through
// ag_checkpoint (its result is the enclosing function's result). When the enclosing function
// is re-run in backward, the backward of this call comes right next, so it keeps fn's nodes
// and activations instead of dropping and re-running them, and gives them back as soon as its
// backward is done: an enclosing function split into ag_checkpoint(first part) +
// ag_checkpoint_tail(last part) holds one part's activations at a time in backward, for one
// more forward of the first part. Called anywhere else it is ag_checkpoint. Checked: the
// enclosing function must return this call's result.
ag_tensor *ag_checkpoint_tail(ag_ctx *c, ag_ckpt_fn fn, const void *user, size_t user_bytes, ag_tensor *x);

// --- profiling (LORAC_PROFILE=1 in the environment): per-op wall time, printed as a table
// on stderr at exit. Forward: the time since the previous mark (ag_ctx_reset, the previous
// op) is attributed to the op calling ag_prof_mark (ag_record does it; ops that record no
// node in no-grad mode call it themselves). Backward: each node's backward is timed.
int ag_prof_enabled(void);
void ag_prof_mark(ag_ctx *c, ag_op op);

// --- trainable parameters: one contiguous block

typedef struct ag_params {
    ag_tensor **t;     // registered tensors (owned)
    int n, cap;
    int64_t total;     // floats in all tensors
    float *data;       // [total]
    float *grad;       // [total]
} ag_params;

// Registers a tensor (data/grad are assigned by ag_params_alloc). name is copied.
ag_tensor *ag_params_add(ag_params *p, const char *name, int ndim, const int64_t *shape);
int ag_params_alloc(ag_params *p);     // carves data (zeroed) and grad; -1 on failure
void ag_params_zero_grad(ag_params *p);
ag_tensor *ag_params_find(const ag_params *p, const char *name);
void ag_params_free(ag_params *p);

// --- random numbers (deterministic, serializable)

uint64_t ag_rng_next(uint64_t *state);          // splitmix64
float ag_rng_uniform(uint64_t *state);          // [0, 1)
float ag_rng_normal(uint64_t *state);

// --- ops (forward here, backward next to it in ops_*.c)
// Every op: inputs NULL -> returns NULL; shape mismatch -> NULL + err_set naming op+shapes.

// y[N,O] = x[N,Iₙ] · W[O,Iₙ]ᵀ (+ b[O]). Any of x, W, b may require grad (projector);
// frozen W uses cblas_sgemm for y and for dx = dy · W (a BF16 W: BF16 matmuls, mm16.h).
ag_tensor *ag_linear(ag_ctx *c, ag_tensor *x, ag_tensor *W, ag_tensor *b);
// y[N,O] = x Wᵀ + scale · (drop(x) Aᵀ) Bᵀ, A[r,Iₙ], B[O,r]; W frozen. Dropout probability
// `dropout` on the LoRA input only, and only when c->training (uses c->rng).
ag_tensor *ag_lora_linear(ag_ctx *c, ag_tensor *x, ag_tensor *W, ag_tensor *A, ag_tensor *B,
                          float scale, float dropout);
ag_tensor *ag_add(ag_ctx *c, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_mul(ag_ctx *c, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_scale(ag_ctx *c, ag_tensor *a, float s);
// x[N,C], w[C]: fp32 RMSNorm as HF Llama: x * rsqrt(mean(x²) + eps) * w
ag_tensor *ag_rmsnorm(ag_ctx *c, ag_tensor *x, ag_tensor *w, float eps);
// x[N,C], w[C], b[C] (b may be NULL)
ag_tensor *ag_layernorm(ag_ctx *c, ag_tensor *x, ag_tensor *w, ag_tensor *b, float eps);
// x[N, nheads*D]; pos[N] (non-differentiable); inv_freq[D/2]. Rotate-half: pairs (i, i+D/2).
ag_tensor *ag_rope(ag_ctx *c, ag_tensor *x, int nheads, const int32_t *pos,
                   const float *inv_freq);
// q[Nq, H*D], k[Nk, K*D], v[Nk, K*D] -> [Nq, H*D]. Query row i attends keys
// [kv_begin[i], kv_end[i]); kv_begin NULL = 0; kv_end NULL = causal (Nk - Nq + i + 1).
// Query head h uses key/value head h / (H/K). softmax(q·kᵀ·scale). Saves only per-row
// log-sum-exp; backward recomputes scores (never an N×N buffer).
ag_tensor *ag_attention(ag_ctx *c, ag_tensor *q, ag_tensor *k, ag_tensor *v, int H, int K,
                        const int32_t *kv_begin, const int32_t *kv_end, float scale);
ag_tensor *ag_swiglu(ag_ctx *c, ag_tensor *gate, ag_tensor *up);
ag_tensor *ag_gelu(ag_ctx *c, ag_tensor *x);
ag_tensor *ag_gelu_tanh(ag_ctx *c, ag_tensor *x);
// table[V,C], ids[n] (checked against V) -> [n,C] (a BF16 table's rows are widened exactly)
ag_tensor *ag_embedding(ag_ctx *c, ag_tensor *table, const int32_t *ids, int64_t n);
// parts[i] [Nᵢ,C] -> [ΣNᵢ, C]
ag_tensor *ag_concat_rows(ag_ctx *c, ag_tensor *const *parts, int nparts);
// base[N,C] with rows rows[j] replaced by src[j] (src[M,C], rows[M] distinct) -> [N,C]
ag_tensor *ag_scatter_rows(ag_ctx *c, ag_tensor *base, ag_tensor *src, const int32_t *rows);
// Fused lm-head + cross-entropy: logits = h[N,C] · W[V,C]ᵀ computed only for rows with
// targets[i] >= 0, a chunk of V at a time. Returns the scalar Σ nll / norm (norm: number of
// supervised tokens of the whole optimizer step). W is frozen; h may require grad.
ag_tensor *ag_cross_entropy(ag_ctx *c, ag_tensor *h, ag_tensor *W, const int32_t *targets,
                            float norm);
// No-grad: per-row NLL (nll[i] for rows with targets[i] >= 0, else 0), same chunking.
int ag_nll_rows(ag_ctx *c, const ag_tensor *h, const ag_tensor *W, const int32_t *targets,
                float *nll);
// The same two with an explicit vocabulary chunk (logits columns per sgemm; 0 = default),
// for tests that need several chunks at a small V.
ag_tensor *ag_cross_entropy_chunked(ag_ctx *c, ag_tensor *h, ag_tensor *W, const int32_t *targets,
                                    float norm, int chunk);
int ag_nll_rows_chunked(ag_ctx *c, const ag_tensor *h, const ag_tensor *W, const int32_t *targets,
                        float *nll, int chunk);

// --- AdamW over one contiguous parameter block (decoupled weight decay, bias correction)

typedef struct ag_adamw {
    float beta1, beta2, eps, weight_decay;
    int64_t n;      // floats
    int64_t t;      // steps taken
    float *m, *v;   // [n] moments
} ag_adamw;

int ag_adamw_init(ag_adamw *o, int64_t n, float beta1, float beta2, float eps, float wd);
void ag_adamw_free(ag_adamw *o);
// Global L2 norm of g[n] (double accumulation).
double ag_grad_norm(const float *g, int64_t n);
// Scales g so its norm is at most max_norm, as torch.nn.utils.clip_grad_norm_
// (coef = max_norm / (norm + 1e-6), applied when < 1). Returns the norm before clipping.
double ag_clip_grad_norm(float *g, int64_t n, double max_norm);
// One step: p -= lr·wd·p; m,v update; p -= lr·m̂/(√v̂ + eps), as torch.optim.AdamW.
void ag_adamw_step(ag_adamw *o, float *p, const float *g, float lr);

// --- vision fusion ops (ops_vision.c). B images, P patches, N pooled tokens, C width.

// Bin i of AdaptiveAvgPool1d(N) over P inputs: [floor(i·P/N), ceil((i+1)·P/N)).
void ag_pool_bin(int64_t P, int64_t N, int64_t i, int64_t *start, int64_t *end);
// x[B·P, C], W[N, P], bias[N] (may be NULL) -> y[B·N, C], y_b = W x_b + bias (over C).
// ag_pool_rows_fwd: the same forward without the tape (bias may be NULL).
ag_tensor *ag_pool_rows(ag_ctx *c, ag_tensor *x, ag_tensor *W, ag_tensor *bias);
void ag_pool_rows_fwd(float *y, const float *x, const float *W, const float *bias, int64_t B, int64_t P, int64_t N,
                      int64_t C);
// x[B·P, C] -> y[B·N, C]: the mean over each AdaptiveAvgPool1d bin, bit-identical to torch
// (fp32 sum in patch order, one division). ag_avgpool_rows_fwd: the same without the tape.
ag_tensor *ag_avgpool_rows(ag_ctx *c, ag_tensor *x, int64_t P, int64_t N);
void ag_avgpool_rows_fwd(float *y, const float *x, int64_t B, int64_t P, int64_t N, int64_t C);
// x, z same shape, g[1] -> x + tanh(g)·z (the gates of the cross-attention blocks).
ag_tensor *ag_gated_add(ag_ctx *c, ag_tensor *x, ag_tensor *z, ag_tensor *g);

#endif
