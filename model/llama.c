// llama.c — Llama 3 decoder: loading a HF folder (fp32, or BF16 matmul weights in bf16
// precision), the packed forward on the tape with LoRA hooks, and the KV-cached forward used
// by generation (see llama.h).
#include "llama.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemv16.h"
#include "mm16.h"
#include "safetensors.h"
#include "wide16.h"

const char *const llama_proj_names[LLAMA_NPROJ] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};
const char *const llama_proj_modules[LLAMA_NPROJ] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

// --- loading

typedef struct loader {
    st_model *st;
    const char *src;     // the weights file (or shard index), for messages
    int bf16;            // matmul weights held in BF16 (precision bf16)
    int map;             // weights: auto: serve tensors from the mapped file where possible
    int n16, rounded;    // BF16 weights loaded; how many of them were rounded from F32/F16
    double bytes16;
    llama_mem *mem;      // what the weights take, for the memory log line
    int dry;             // only plan: add the bytes that would be copied to the heap to `plan`
    double plan;
} loader;

static void count(loader *L, const ag_tensor *t, int mapped) {
    double b = (ag_is16(t) ? 2.0 : 4.0) * (double)t->numel;
    if (ag_is16(t)) L->mem->bytes16 += b;
    else L->mem->bytes32 += b;
    if (mapped) L->mem->mapped += b;
    else L->mem->copied += b;
}

// Loads one weight after checking it exists and has the config's shape. `matmul` weights (the
// ones multiplied by the BF16 matmuls in bf16 precision) are held in BF16 in bf16 precision,
// and in fp32 precision with weights: auto when the file has them in BF16 (AG_BF16X, widened
// exactly inside each op); everything else in fp32. With weights: auto a tensor whose file
// dtype already is the held dtype is served from the mapping (no copy).
static int load_weight(loader *L, ag_tensor *t, const char *name, int matmul, int ndim, int64_t d0, int64_t d1) {
    st_model *st = L->st;
    const char *src = L->src;
    int64_t shape[2] = {d0, d1};
    const st_tensor *ft = st_find(st, name);
    if (!ft) {
        if (ndim == 1)
            return err_set("%s: missing tensor '%s' (expected shape [%lld] from config.json)", src,
                           name, (long long)d0);
        return err_set("%s: missing tensor '%s' (expected shape [%lld, %lld] from config.json)", src,
                       name, (long long)d0, (long long)d1);
    }
    int keep16 = matmul && (L->bf16 || (L->map && ft->dtype == ST_BF16));
    if (L->dry) {
        int in_place = L->map && st_map_as(st, name, keep16 ? ST_BF16 : ST_F32, ndim, shape);
        if (!in_place) L->plan += (keep16 ? 2.0 : 4.0) * (double)d0 * (double)(ndim == 2 ? d1 : 1);
        return 0;
    }
    if (keep16) {
        int rounded = 0;
        uint16_t *w16 = L->map ? (uint16_t *)st_map_as(st, name, ST_BF16, ndim, shape) : NULL;
        int mapped = w16 != NULL;
        if (!w16 && !(w16 = st_load_bf16(st, name, ndim, shape, &rounded))) return -1;
        *t = L->bf16 ? ag_wrap_bf16(w16, ndim, shape, NULL) : ag_wrap_bf16x(w16, ndim, shape, NULL);
        L->n16++;
        L->rounded += rounded;
        L->bytes16 += 2.0 * (double)t->numel;
        count(L, t, mapped);
        return 0;
    }
    float *data = L->map ? (float *)st_map_as(st, name, ST_F32, ndim, shape) : NULL;
    int mapped = data != NULL;
    if (!data && !(data = st_load_f32(st, name, ndim, shape))) return -1;
    *t = ag_wrap(data, ndim, shape, NULL);
    count(L, t, mapped);
    return 0;
}

static int check_config(const char *dir, const hf_llama_config *g) {
    if (g->vocab_size <= 0 || g->hidden_size <= 0 || g->intermediate_size <= 0 ||
        g->num_layers <= 0 || g->num_heads <= 0 || g->num_kv_heads <= 0 || g->head_dim <= 0)
        return err_set("%s/config.json: sizes must be positive (vocab_size %d, hidden_size %d, "
                       "intermediate_size %d, num_hidden_layers %d, num_attention_heads %d, "
                       "num_key_value_heads %d, head_dim %d)",
                       dir, g->vocab_size, g->hidden_size, g->intermediate_size, g->num_layers,
                       g->num_heads, g->num_kv_heads, g->head_dim);
    if (g->num_heads % g->num_kv_heads)
        return err_set("%s/config.json: num_attention_heads %d is not a multiple of "
                       "num_key_value_heads %d",
                       dir, g->num_heads, g->num_kv_heads);
    if (g->head_dim % 2)
        return err_set("%s/config.json: head_dim %d must be even (rotate-half RoPE)", dir, g->head_dim);
    if (!(g->rms_norm_eps > 0) || !(g->rope_theta > 0))
        return err_set("%s/config.json: rms_norm_eps (%g) and rope_theta (%g) must be positive", dir,
                       g->rms_norm_eps, g->rope_theta);
    return 0;
}

// A tensor of a layer the config does not have means the config and weights disagree.
static int check_extra_layers(st_model *st, const char *dir, int nlayers) {
    for (int i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_get(st, i);
        int l;
        if (sscanf(t->name, "model.layers.%d.", &l) == 1 && (l < 0 || l >= nlayers))
            return err_set("%s: tensor '%s' belongs to layer %d but config.json has "
                           "num_hidden_layers %d (config and weights disagree)",
                           t->file ? t->file : dir, t->name, l, nlayers);
    }
    return 0;
}

static int load_weights(loader *L, llama_model *m) {
    st_model *st = L->st;
    const char *dir = L->src;
    const hf_llama_config *g = &m->cfg;
    int64_t C = g->hidden_size, FF = g->intermediate_size, V = g->vocab_size;   // FF: I (cblas.h defines I)
    int64_t QD = (int64_t)g->num_heads * g->head_dim, KD = (int64_t)g->num_kv_heads * g->head_dim;
    if (check_extra_layers(st, dir, g->num_layers)) return -1;
    llama_weights *w = &m->w;
    if (load_weight(L, &w->embed, "model.embed_tokens.weight", 1, 2, V, C)) return -1;
    if (load_weight(L, &w->norm, "model.norm.weight", 0, 1, C, 0)) return -1;
    m->tied = g->tie_word_embeddings || !st_find(st, "lm_head.weight");
    if (m->tied) w->lm_head = w->embed;
    else if (load_weight(L, &w->lm_head, "lm_head.weight", 1, 2, V, C)) return -1;
    const int64_t pshape[LLAMA_NPROJ][2] = {{QD, C}, {KD, C}, {KD, C}, {C, QD},
                                            {FF, C}, {FF, C}, {C, FF}};
    char name[256];
    for (int l = 0; l < g->num_layers; l++) {
        llama_layer *ly = &w->layers[l];
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if (load_weight(L, &ly->attn_norm, name, 0, 1, C, 0)) return -1;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if (load_weight(L, &ly->mlp_norm, name, 0, 1, C, 0)) return -1;
        for (int p = 0; p < LLAMA_NPROJ; p++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, llama_proj_modules[p]);
            if (load_weight(L, &ly->proj[p], name, 1, 2, pshape[p][0], pshape[p][1])) return -1;
        }
    }
    return 0;
}

int llama_load(const char *dir, llama_model *m) { return llama_load_precision(dir, m, AG_PREC_FP32); }

int llama_load_precision(const char *dir, llama_model *m, ag_precision precision) {
    return llama_load_opts(dir, m, precision, AG_WEIGHTS_F32);
}

int llama_load_opts(const char *dir, llama_model *m, ag_precision precision, ag_weights weights) {
    memset(m, 0, sizeof *m);
    m->precision = precision;
    m->weights = weights;
    double t0 = now_seconds();
    if (hf_llama_config_load(dir, &m->cfg) != 0) return -1;
    if (check_config(dir, &m->cfg) != 0) return -1;
    st_model *st = st_open(dir);   // sizes from config.json are checked against the weights before allocating
    if (!st || hf_llama_check_weights(st, &m->cfg) != 0) {
        st_close(st);
        return -1;
    }
    m->dir = xstrdup(dir);
    m->w.layers = xcalloc((size_t)m->cfg.num_layers, sizeof *m->w.layers);
    m->inv_freq = xmalloc((size_t)(m->cfg.head_dim / 2) * sizeof(float));
    hf_llama_inv_freq(&m->cfg, m->inv_freq);
    // the weights file named in messages: model.safetensors, or the shard index
    char *src = path_join(dir, "model.safetensors");
    if (!file_exists(src)) {
        free(src);
        src = path_join(dir, "model.safetensors.index.json");
    }
    loader L = {.st = st, .src = src, .bf16 = precision == AG_PREC_BF16, .map = weights == AG_WEIGHTS_AUTO,
                .mem = &m->mem};
    m->st = st;   // open while the model lives: mapped weights point into it
    // refuse before allocating when the heap copies cannot fit (rather than meet the OOM killer)
    L.dry = 1;
    int rc = load_weights(&L, m);
    double avail = mem_available_bytes();
    if (rc == 0 && avail >= 0 && L.plan > avail)
        rc = err_set("%s: out of memory: the weights need %.2f GB of heap copies (%s precision, weights: %s) but "
                     "only %.2f GB is available (MemAvailable); use weights: auto (BF16 weights stay 16-bit and "
                     "are read from the mapped file) or precision: bf16 (half the bytes)",
                     src, L.plan / 1e9, ag_precision_name(precision), ag_weights_name(weights), avail / 1e9);
    L.dry = 0;
    if (rc == 0) rc = load_weights(&L, m);
    if (rc == 0 && L.bf16) mm16_log_load(dir, L.n16, L.rounded, L.bytes16);
    free(src);
    m->mem.load_seconds = now_seconds() - t0;
    if (rc != 0) llama_free(m);
    return rc;
}

// Frees a weight's memory unless it is served from the mapped file.
static void free_weight(const llama_model *m, ag_tensor *t) {
    if (!st_owns(m->st, t->data)) free(t->data);
    if (!st_owns(m->st, t->w16)) free(t->w16);
}

void llama_free(llama_model *m) {
    if (m->w.layers) {
        for (int l = 0; l < m->cfg.num_layers; l++) {
            llama_layer *ly = &m->w.layers[l];
            free_weight(m, &ly->attn_norm);
            free_weight(m, &ly->mlp_norm);
            for (int p = 0; p < LLAMA_NPROJ; p++) free_weight(m, &ly->proj[p]);
        }
        free(m->w.layers);
    }
    if (!m->tied) free_weight(m, &m->w.lm_head);
    free_weight(m, &m->w.embed);
    free_weight(m, &m->w.norm);
    st_close(m->st);
    free(m->inv_freq);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

ag_tensor *llama_proj_weight(const llama_model *m, int layer, llama_proj p) {
    AG_ASSERT(layer >= 0 && layer < m->cfg.num_layers && p >= 0 && p < LLAMA_NPROJ, "layer %d proj %d",
              layer, (int)p);
    return &m->w.layers[layer].proj[p];
}

// Frozen weights are never written by ops (requires_grad 0); the op API takes non-const
// tensors, so the model's const-ness is dropped here, in one place.
static ag_tensor *frozen(const ag_tensor *t) { return (ag_tensor *)t; }

ag_tensor *llama_lm_head(const llama_model *m) { return frozen(&m->w.lm_head); }
ag_tensor *llama_embed(const llama_model *m) { return frozen(&m->w.embed); }

// --- forward

// y[O] = W[O,In] · x[In] for a frozen W of any storage: cblas_sgemv streams an fp32 W once
// (sgemm with one row packs W first and runs ~3x slower on this memory-bound step), in the
// same row blocks as a BF16X W widened block by block (wide16.h: equal bytes); gemv_bf16
// streams a BF16 W (half the bytes), with the numerics of the BF16 matmuls (x rounded to BF16,
// fp32 accumulation).
static void frozen_gemv(const ag_tensor *W, const float *x, float *y) {
    int O = (int)W->shape[0], In = (int)W->shape[1];
    if (W->dtype == AG_BF16) gemv_bf16(O, In, W->w16, x, y);
    else w16_gemv(y, W->dtype == AG_BF16X ? W->w16 : NULL, W->data, x, O, In);   // same row blocks for both
}

// One row without the tape (token-by-token decoding): y = W x (+ s·B(A x)) as matrix-vector
// products.
static ag_tensor *proj_row(ag_ctx *c, ag_tensor *x, ag_tensor *W, const llama_lora_slot *s) {
    int O = (int)W->shape[0], In = (int)W->shape[1];
    if (x->shape[1] != In) return ag_linear(c, x, W, NULL);   // let the op report the mismatch
    ag_tensor *y = ag_new2(c, 1, O);
    if (!y) return NULL;
    frozen_gemv(W, x->data, y->data);
    if (s && s->A) {
        int r = (int)s->A->shape[0];
        if (s->A->shape[1] != In || s->B->shape[0] != O || s->B->shape[1] != r)
            return ag_lora_linear(c, x, W, s->A, s->B, s->scale, s->dropout);   // reports shapes
        float *u = ag_alloc(c, (size_t)r * sizeof *u, "lora row");
        if (!u) return NULL;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, r, In, 1.0f, s->A->data, In, x->data, 1, 0.0f, u, 1);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, O, r, s->scale, s->B->data, r, u, 1, 1.0f, y->data, 1);
    }
    return y;
}

static ag_tensor *proj(ag_ctx *c, const llama_model *m, const llama_lora *lora, int l, llama_proj p,
                       ag_tensor *x) {
    ag_tensor *W = &m->w.layers[l].proj[p];
    const llama_lora_slot *s = lora && lora->slots ? &lora->slots[l * LLAMA_NPROJ + p] : NULL;
    if (s && !s->A) s = NULL;
    if (x && !c->grad_enabled && x->ndim == 2 && x->shape[0] == 1 &&
        !(s && c->training && s->dropout > 0))
        return proj_row(c, x, W, s);
    if (s) return ag_lora_linear(c, x, W, s->A, s->B, s->scale, s->dropout);
    return ag_linear(c, x, W, NULL);
}

// Marks a layer-internal tensor: its gradient buffer is recycled as soon as backward has
// consumed it, its data once no node's backward reads it (nothing outside llama_forward sees
// these tensors).
static ag_tensor *tr(ag_tensor *t) {
    if (t) t->grad_transient = t->data_transient = 1;
    return t;
}

// The attention half of a decoder layer: x [N,C] -> x + attn(norm(x)). With a KV cache, the
// new rows' K,V are appended at kv->len and attention runs over the whole cache.
static ag_tensor *layer_attn(ag_ctx *c, const llama_model *m, const llama_lora *lora, int l,
                             ag_tensor *x, const int32_t *pos, const int32_t *kv_begin,
                             llama_kv_cache *kv) {
    const hf_llama_config *g = &m->cfg;
    int H = g->num_heads, K = g->num_kv_heads;
    ag_tensor *h = tr(ag_rmsnorm(c, x, &m->w.layers[l].attn_norm, g->rms_norm_eps));
    ag_tensor *q = tr(ag_rope(c, tr(proj(c, m, lora, l, LLAMA_Q, h)), H, pos, m->inv_freq));
    ag_tensor *k = tr(ag_rope(c, tr(proj(c, m, lora, l, LLAMA_K, h)), K, pos, m->inv_freq));
    ag_tensor *v = tr(proj(c, m, lora, l, LLAMA_V, h));
    if (!q || !k || !v) return NULL;
    float scale = 1.0f / sqrtf((float)g->head_dim);
    ag_tensor *a;
    if (kv) {
        int64_t N = x->shape[0], W = kv->width, n = kv->len + N;
        memcpy(kv->k[l] + kv->len * W, k->data, (size_t)(N * W) * sizeof(float));
        memcpy(kv->v[l] + kv->len * W, v->data, (size_t)(N * W) * sizeof(float));
        ag_tensor kc = ag_wrap2(kv->k[l], n, W, "k_cache"), vc = ag_wrap2(kv->v[l], n, W, "v_cache");
        a = ag_attention(c, q, &kc, &vc, H, K, NULL, NULL, scale);
    } else {
        a = ag_attention(c, q, k, v, H, K, kv_begin, NULL, scale);
    }
    return tr(ag_add(c, x, tr(proj(c, m, lora, l, LLAMA_O, tr(a)))));
}

// The MLP half: x [N,C] -> x + mlp(norm(x)).
static ag_tensor *layer_mlp(ag_ctx *c, const llama_model *m, const llama_lora *lora, int l, ag_tensor *x) {
    ag_tensor *h = tr(ag_rmsnorm(c, x, &m->w.layers[l].mlp_norm, m->cfg.rms_norm_eps));
    ag_tensor *u = tr(ag_swiglu(c, tr(proj(c, m, lora, l, LLAMA_GATE, h)), tr(proj(c, m, lora, l, LLAMA_UP, h))));
    return tr(ag_add(c, x, tr(proj(c, m, lora, l, LLAMA_DOWN, u))));
}

// One decoder layer: x [N,C] -> x + attn(norm(x)) -> + mlp(norm(.)).
static ag_tensor *layer_forward(ag_ctx *c, const llama_model *m, const llama_lora *lora, int l,
                                ag_tensor *x, const int32_t *pos, const int32_t *kv_begin,
                                llama_kv_cache *kv) {
    return layer_mlp(c, m, lora, l, layer_attn(c, m, lora, l, x, pos, kv_begin, kv));
}

// A decoder layer as an ag_checkpoint function (c->checkpoint: activation checkpointing).
typedef struct layer_call {
    const llama_model *m;
    const llama_lora *lora;
    int l;
    const int32_t *pos, *kv_begin;   // [N] (arena copies: valid until the step's backward)
} layer_call;

static ag_tensor *attn_ckpt(ag_ctx *c, const void *user, ag_tensor *x) {
    const layer_call *a = user;
    return layer_attn(c, a->m, a->lora, a->l, x, a->pos, a->kv_begin, NULL);
}

static ag_tensor *mlp_ckpt(ag_ctx *c, const void *user, ag_tensor *x) {
    const layer_call *a = user;
    return layer_mlp(c, a->m, a->lora, a->l, x);
}

// The layer's two halves as nested checkpoints: when the layer is recomputed in backward, it
// keeps only the attention half's output besides its own input, and the two halves'
// activations (with their gradients) are alive one at a time: the MLP half's while its
// backward runs right after the recomputation (ag_checkpoint_tail: not run a third time),
// then the attention half's, recomputed once more (at 1x4096 on Llama-3.2-1B shapes this
// takes the step's arena peak from 1.9 to ~1.5 GiB).
static ag_tensor *layer_ckpt(ag_ctx *c, const void *user, ag_tensor *x) {
    const layer_call *a = user;
    ag_tensor *h = tr(ag_checkpoint(c, attn_ckpt, a, sizeof *a, x));
    return ag_checkpoint_tail(c, mlp_ckpt, a, sizeof *a, h);
}

// Embeds the inputs and runs every layer and the final norm. In no-grad mode the arena is
// rewound after each layer (only the residual stream is kept); with c->checkpoint (grad mode,
// no KV cache) each layer keeps only its input and is recomputed in backward.
static ag_tensor *run(ag_ctx *c, const llama_model *m, const llama_lora *lora, const int32_t *ids,
                      ag_tensor *embeds, int64_t N, const int32_t *pos, const int32_t *kv_begin,
                      llama_kv_cache *kv, const llama_hook *hook) {
    const hf_llama_config *g = &m->cfg;
    int64_t C = g->hidden_size;
    if ((ids == NULL) == (embeds == NULL))
        return err_set("llama_forward: give exactly one of ids and embeds"), NULL;
    if (N <= 0) return err_set("llama_forward: empty batch (N = %lld)", (long long)N), NULL;
    if (embeds && (embeds->ndim != 2 || embeds->shape[0] != N || embeds->shape[1] != C)) {
        char s[64];
        return err_set("llama_forward: embeds must be [%lld, %lld], got %s", (long long)N,
                       (long long)C, ag_shape_str(embeds, s, sizeof s)),
               NULL;
    }
    ag_tensor *x = embeds ? embeds : ag_embedding(c, frozen(&m->w.embed), ids, N);
    if (!x) return NULL;
    ag_tensor *keep = NULL;
    size_t mark = 0;
    if (!c->grad_enabled) {
        if (!(keep = ag_new2(c, N, C))) return NULL;
        mark = c->arena.used;
    }
    layer_call call = {m, lora, 0, pos, kv_begin};
    if (c->checkpoint && c->grad_enabled && !kv) {
        int32_t *p = ag_alloc(c, (size_t)N * sizeof *p, "positions"), *b = NULL;
        if (!p || (kv_begin && !(b = ag_alloc(c, (size_t)N * sizeof *b, "kv_begin")))) return NULL;
        memcpy(p, pos, (size_t)N * sizeof *p);
        if (b) memcpy(b, kv_begin, (size_t)N * sizeof *b);
        call.pos = p, call.kv_begin = b;
    }
    for (int l = 0; l < g->num_layers; l++) {
        call.l = l;
        if (c->checkpoint && c->grad_enabled && !kv) x = tr(ag_checkpoint(c, layer_ckpt, &call, sizeof call, x));
        else x = layer_forward(c, m, lora, l, x, pos, kv_begin, kv);
        if (x && hook && hook->after_layer) x = hook->after_layer(hook->user, c, l, x);
        if (!x) return NULL;
        if (keep) {
            memcpy(keep->data, x->data, (size_t)(N * C) * sizeof(float));
            c->arena.used = mark;
            x = keep;
        }
    }
    ag_tensor *h = ag_rmsnorm(c, x, frozen(&m->w.norm), g->rms_norm_eps);
    if (h) h->grad_transient = 1;   // the caller keeps its values, not its gradient
    return h;
}

ag_tensor *llama_forward(ag_ctx *c, const llama_model *m, const llama_lora *lora,
                         const int32_t *ids, ag_tensor *embeds, int64_t N,
                         const int32_t *pos, const int32_t *kv_begin) {
    return llama_forward_hooked(c, m, lora, ids, embeds, N, pos, kv_begin, NULL);
}

ag_tensor *llama_forward_hooked(ag_ctx *c, const llama_model *m, const llama_lora *lora,
                                const int32_t *ids, ag_tensor *embeds, int64_t N,
                                const int32_t *pos, const int32_t *kv_begin, const llama_hook *hook) {
    if (!pos) return err_set("llama_forward: positions are required"), NULL;
    for (int64_t i = 0; i < N; i++) {
        if (pos[i] < 0)
            return err_set("llama_forward: row %lld has negative position %d", (long long)i, pos[i]), NULL;
        if (kv_begin && (kv_begin[i] < 0 || kv_begin[i] > i))
            return err_set("llama_forward: row %lld has kv_begin %d (must be in [0, %lld])", (long long)i,
                           kv_begin[i], (long long)i),
                   NULL;
    }
    return run(c, m, lora, ids, embeds, N, pos, kv_begin, NULL, hook);
}

// --- KV cache

int llama_kv_cache_init(llama_kv_cache *kv, const llama_model *m, int64_t cap) {
    memset(kv, 0, sizeof *kv);
    if (cap <= 0) return err_set("kv cache: capacity must be positive, got %lld", (long long)cap);
    kv->cap = cap;
    kv->width = (int64_t)m->cfg.num_kv_heads * m->cfg.head_dim;
    kv->nlayers = m->cfg.num_layers;
    kv->k = xcalloc((size_t)kv->nlayers, sizeof *kv->k);
    kv->v = xcalloc((size_t)kv->nlayers, sizeof *kv->v);
    size_t bytes = (size_t)(cap * kv->width) * sizeof(float);
    for (int l = 0; l < kv->nlayers; l++) {
        kv->k[l] = malloc(bytes);
        kv->v[l] = malloc(bytes);
        if (!kv->k[l] || !kv->v[l]) {
            llama_kv_cache_free(kv);
            return err_set("kv cache: out of memory for %lld positions (%.1f GiB)", (long long)cap,
                           2.0 * (double)bytes * kv->nlayers / (1 << 30));
        }
    }
    return 0;
}

void llama_kv_cache_free(llama_kv_cache *kv) {
    for (int l = 0; l < kv->nlayers && kv->k; l++) {
        free(kv->k[l]);
        free(kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

ag_tensor *llama_forward_cached(ag_ctx *c, const llama_model *m, const llama_lora *lora,
                                llama_kv_cache *kv, const int32_t *ids, ag_tensor *embeds,
                                int64_t N) {
    return llama_forward_cached_hooked(c, m, lora, kv, ids, embeds, N, NULL);
}

ag_tensor *llama_forward_cached_hooked(ag_ctx *c, const llama_model *m, const llama_lora *lora,
                                       llama_kv_cache *kv, const int32_t *ids, ag_tensor *embeds,
                                       int64_t N, const llama_hook *hook) {
    if (kv->len + N > kv->cap)
        return err_set("kv cache full: %lld cached + %lld new rows exceed its %lld rows",
                       (long long)kv->len, (long long)N, (long long)kv->cap),
               NULL;
    if (N <= 0) return err_set("llama_forward_cached: empty batch (N = %lld)", (long long)N), NULL;
    int32_t *pos = ag_alloc(c, (size_t)N * sizeof *pos, "positions");
    if (!pos) return NULL;
    for (int64_t i = 0; i < N; i++) pos[i] = (int32_t)(kv->len + i);
    int was = ag_set_grad(c, 0);
    ag_tensor *h = run(c, m, lora, ids, embeds, N, pos, NULL, kv, hook);
    ag_set_grad(c, was);
    if (h) kv->len += N;
    return h;
}

void llama_logits(const llama_model *m, const float *h, float *logits) { frozen_gemv(&m->w.lm_head, h, logits); }

// A size in GB, or in MB / KB when smaller (the norms of a mapped model are a few hundred KB).
static const char *gb(char *buf, size_t n, double bytes) {
    if (bytes >= 1e8 || bytes == 0) snprintf(buf, n, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e5) snprintf(buf, n, "%.1f MB", bytes / 1e6);
    else snprintf(buf, n, "%.1f KB", bytes / 1e3);
    return buf;
}

void llama_log_memory(const llama_model *m) {
    const llama_mem *u = &m->mem;
    char a[32], b[32], c[32], d[32];
    char how[160];
    if (u->mapped > 0 && u->copied > 0)
        snprintf(how, sizeof how, "%s mapped from the file, %s copied to the heap", gb(a, sizeof a, u->mapped),
                 gb(b, sizeof b, u->copied));
    else
        snprintf(how, sizeof how, "%s", u->mapped > 0 ? "mapped from the file (no copy)" : "copied to the heap");
    fprintf(stderr, "memory: weights %.2f GB (%s BF16, %s fp32; %s; %s precision, weights: %s) loaded in %.1fs\n",
            (u->bytes16 + u->bytes32) / 1e9, gb(c, sizeof c, u->bytes16), gb(d, sizeof d, u->bytes32), how,
            ag_precision_name(m->precision), ag_weights_name(m->weights), u->load_seconds);
}
