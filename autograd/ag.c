// ag.c — tensors, the arena, the tape, parameters and the RNG (see ag.h).
#define _GNU_SOURCE
#include "ag.h"

#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

const char *const ag_op_names[AG_OP_COUNT] = {
    [AG_OP_NONE] = "none",           [AG_OP_LINEAR] = "linear",
    [AG_OP_LORA_LINEAR] = "lora_linear", [AG_OP_ADD] = "add",
    [AG_OP_MUL] = "mul",             [AG_OP_SCALE] = "scale",
    [AG_OP_RMSNORM] = "rmsnorm",     [AG_OP_LAYERNORM] = "layernorm",
    [AG_OP_ROPE] = "rope",           [AG_OP_ATTENTION] = "attention",
    [AG_OP_SWIGLU] = "swiglu",       [AG_OP_GELU] = "gelu",
    [AG_OP_GELU_TANH] = "gelu_tanh", [AG_OP_EMBEDDING] = "embedding",
    [AG_OP_CONCAT_ROWS] = "concat_rows", [AG_OP_SCATTER_ROWS] = "scatter_rows",
    [AG_OP_CROSS_ENTROPY] = "cross_entropy",
    [AG_OP_POOL] = "pool",           [AG_OP_AVGPOOL] = "avgpool",
    [AG_OP_GATED_ADD] = "gated_add", [AG_OP_CHECKPOINT] = "checkpoint",
};

// --- tensors

int64_t ag_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

ag_tensor ag_wrap(float *data, int ndim, const int64_t *shape, const char *name) {
    AG_ASSERT(ndim >= 0 && ndim <= AG_MAXDIM, "ndim %d", ndim);
    ag_tensor t = {0};
    t.data = data;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    t.numel = ag_numel(ndim, shape);
    t.name = name;
    return t;
}

ag_tensor ag_wrap2(float *data, int64_t d0, int64_t d1, const char *name) {
    int64_t s[2] = {d0, d1};
    return ag_wrap(data, 2, s, name);
}

ag_tensor ag_wrap1(float *data, int64_t d0, const char *name) { return ag_wrap(data, 1, &d0, name); }

ag_tensor ag_wrap_bf16(uint16_t *w16, int ndim, const int64_t *shape, const char *name) {
    ag_tensor t = ag_wrap(NULL, ndim, shape, name);
    t.w16 = w16;
    t.dtype = AG_BF16;
    return t;
}

ag_tensor ag_wrap_bf16x(uint16_t *w16, int ndim, const int64_t *shape, const char *name) {
    ag_tensor t = ag_wrap_bf16(w16, ndim, shape, name);
    t.dtype = AG_BF16X;
    return t;
}

const char *ag_weights_name(ag_weights w) { return w == AG_WEIGHTS_F32 ? "f32" : "auto"; }

int ag_weights_parse(const char *s, ag_weights *out) {
    if (!strcmp(s, "auto")) *out = AG_WEIGHTS_AUTO;
    else if (!strcmp(s, "f32")) *out = AG_WEIGHTS_F32;
    else return -1;
    return 0;
}

const char *ag_precision_name(ag_precision p) { return p == AG_PREC_BF16 ? "bf16" : "fp32"; }

int ag_precision_parse(const char *s, ag_precision *out) {
    if (!strcmp(s, "fp32")) *out = AG_PREC_FP32;
    else if (!strcmp(s, "bf16")) *out = AG_PREC_BF16;
    else return -1;
    return 0;
}

char *ag_shape_str(const ag_tensor *t, char *buf, size_t n) {
    if (!t) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

int ag_same_shape(const ag_tensor *a, const ag_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

// --- arena

int ag_arena_init(ag_arena *a, size_t cap) {
    memset(a, 0, sizeof *a);
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return err_set("arena: cannot reserve %zu MiB: %s", cap >> 20, strerror(errno));
    a->base = p;
    a->cap = cap;
    return 0;
}

void *ag_arena_alloc(ag_arena *a, size_t bytes, const char *what) {
    size_t start = (a->used + 63) & ~(size_t)63;
    if (start + bytes > a->cap || start + bytes < start) {
        err_set("arena exhausted: %s needs %zu bytes, %zu of %zu MiB in use (high-water %zu MiB): the "
                "activations of this batch do not fit; use fewer tokens per step (data.max_seq_len, "
                "train.batch_size; eval: --max-length), train.activation_checkpointing: true or "
                "precision: bf16, or raise train.arena_mb",
                what ? what : "allocation", bytes, a->used >> 20, a->cap >> 20, a->high >> 20);
        return NULL;
    }
    a->used = start + bytes;
    if (a->used > a->high) a->high = a->used;
    return a->base + start;
}

void ag_arena_reset(ag_arena *a) { a->used = 0; }

void ag_arena_free(ag_arena *a) {
    if (a->base) munmap(a->base, a->cap);
    memset(a, 0, sizeof *a);
}

// --- context and tape

int ag_ctx_init(ag_ctx *c, size_t arena_bytes) {
    memset(c, 0, sizeof *c);
    if (ag_arena_init(&c->arena, arena_bytes) != 0) return -1;
    c->grad_enabled = 1;
    c->rng = 0x9E3779B97F4A7C15ULL;
    return 0;
}

void ag_ctx_free(ag_ctx *c) {
    ag_arena_free(&c->arena);
    free(c->nodes);
    free(c->free_bufs);
    memset(c, 0, sizeof *c);
}

void ag_ctx_reset(ag_ctx *c) {
    c->nnodes = 0;
    c->nfree = 0;
    ag_arena_reset(&c->arena);
    if (ag_prof_enabled()) c->prof_mark = now_seconds();
}

// --- profiling (process-wide table: a diagnostic, not model state)

static struct {
    int on;   // -1: not yet read from the environment
    double fwd[AG_OP_COUNT], bwd[AG_OP_COUNT];
    long nfwd[AG_OP_COUNT], nbwd[AG_OP_COUNT];
} prof = {.on = -1};

static void prof_print(void) {
    double tot = 0;
    for (int i = 0; i < AG_OP_COUNT; i++) tot += prof.fwd[i] + prof.bwd[i];
    fprintf(stderr, "LORAC_PROFILE: wall time per op, all steps (forward: since the previous op)\n"
                    "%-14s %10s %8s %10s %6s\n", "op", "fwd s", "bwd n", "bwd s", "%");
    for (int i = 0; i < AG_OP_COUNT; i++)
        if (prof.nfwd[i] || prof.nbwd[i])
            fprintf(stderr, "%-14s %10.3f %8ld %10.3f %5.1f%%\n", ag_op_names[i], prof.fwd[i], prof.nbwd[i],
                    prof.bwd[i], tot > 0 ? 100 * (prof.fwd[i] + prof.bwd[i]) / tot : 0);
    fprintf(stderr, "%-14s %10.3f %8s %10.3f\n", "total", tot, "", 0.0);
}

int ag_prof_enabled(void) {
    if (prof.on < 0) {
        const char *e = getenv("LORAC_PROFILE");
        prof.on = e && *e && strcmp(e, "0") != 0;
        if (prof.on) atexit(prof_print);
    }
    return prof.on;
}

void ag_prof_mark(ag_ctx *c, ag_op op) {
    if (!ag_prof_enabled()) return;
    double t = now_seconds();
    if (c->prof_mark > 0) {
        prof.fwd[op] += t - c->prof_mark;
        prof.nfwd[op]++;
    }
    c->prof_mark = t;
}

int ag_set_grad(ag_ctx *c, int on) {
    int old = c->grad_enabled;
    c->grad_enabled = on;
    return old;
}

void *ag_alloc(ag_ctx *c, size_t bytes, const char *what) { return ag_arena_alloc(&c->arena, bytes, what); }

ag_tensor *ag_new(ag_ctx *c, int ndim, const int64_t *shape) {
    AG_ASSERT(ndim >= 0 && ndim <= AG_MAXDIM, "ndim %d", ndim);
    int64_t n = ag_numel(ndim, shape);
    ag_tensor *t = ag_alloc(c, sizeof *t, "tensor header");
    if (!t) return NULL;
    float *d = ag_alloc(c, (size_t)n * sizeof(float), "tensor data");
    if (!d) return NULL;
    *t = ag_wrap(d, ndim, shape, NULL);
    return t;
}

ag_tensor *ag_new2(ag_ctx *c, int64_t d0, int64_t d1) {
    int64_t s[2] = {d0, d1};
    return ag_new(c, 2, s);
}

ag_tensor *ag_new1(ag_ctx *c, int64_t d0) { return ag_new(c, 1, &d0); }

ag_tensor *ag_zeros2(ag_ctx *c, int64_t d0, int64_t d1) {
    ag_tensor *t = ag_new2(c, d0, d1);
    if (t) memset(t->data, 0, (size_t)t->numel * sizeof(float));
    return t;
}

int ag_needs_grad(const ag_ctx *c, ag_tensor *const *in, int nin) {
    if (!c->grad_enabled) return 0;
    for (int i = 0; i < nin; i++)
        if (in[i] && in[i]->requires_grad) return 1;
    return 0;
}

// A new zeroed node at the end of the tape (the tape grows as needed: node pointers move).
static ag_node *tape_push(ag_ctx *c, ag_op op) {
    if (c->nnodes == c->cap_nodes) {
        c->cap_nodes = c->cap_nodes ? 2 * c->cap_nodes : 256;
        c->nodes = xrealloc(c->nodes, (size_t)c->cap_nodes * sizeof *c->nodes);
    }
    ag_node *n = &c->nodes[c->nnodes++];
    memset(n, 0, sizeof *n);
    n->op = op;
    return n;
}

ag_node *ag_record(ag_ctx *c, ag_op op, ag_tensor *out, ag_tensor *const *in, int nin,
                   ag_backward_fn backward) {
    AG_ASSERT(nin <= AG_MAXIN, "op %s: %d inputs", ag_op_names[op], nin);
    ag_prof_mark(c, op);
    out->requires_grad = 0;
    if (!ag_needs_grad(c, in, nin)) return NULL;
    ag_node *n = tape_push(c, op);
    n->out = out;
    n->nin = nin;
    for (int i = 0; i < nin; i++) n->in[i] = in[i];
    n->backward = backward;
    out->requires_grad = 1;
    return n;
}

float *ag_grad(ag_ctx *c, ag_tensor *t) {
    if (!t || !t->requires_grad) return NULL;
    if (!t->grad) {
        AG_ASSERT(!t->is_param, "parameter %s has no gradient buffer", t->name ? t->name : "?");
        size_t bytes = (size_t)t->numel * sizeof(float);
        for (int i = c->nfree - 1; i >= 0 && !t->grad; i--)
            if (c->free_bufs[i].bytes == bytes) {   // a given-back buffer of the same size
                t->grad = c->free_bufs[i].p;
                c->free_bufs[i] = c->free_bufs[--c->nfree];
            }
        if (!t->grad && !(t->grad = ag_alloc(c, bytes, "gradient"))) return NULL;
        memset(t->grad, 0, bytes);
    }
    return t->grad;
}

int ag_backward(ag_ctx *c, ag_tensor *loss) {
    if (!loss) return -1;
    if (loss->numel != 1) {
        char s[64];
        return err_set("backward: the loss must be a scalar, got shape %s", ag_shape_str(loss, s, sizeof s));
    }
    float one = 1.0f;
    return ag_backward_from(c, loss, &one);
}

// A checkpoint node's saved state (ag_checkpoint). A kept one (ag_checkpoint_tail during a
// recomputation) has fn's nodes [n0, node) right below it and their arena above `mark`.
typedef struct ckpt_saved {
    ag_ckpt_fn fn;
    const ag_tensor *x;   // the kept input (it may not require a gradient)
    uint64_t rng;         // c->rng when fn first ran
    void *user;           // [user_bytes] copy of the caller's closure
    int kept, n0, node;   // kept: fn's nodes stayed on the tape, [n0, node)
    size_t mark;          // kept: the arena use before fn ran
    ag_tensor *r;         // kept: fn's result (the node's output shares its data)
} ckpt_saved;

static int is_kept(const ag_node *n) { return n->op == AG_OP_CHECKPOINT && ((const ckpt_saved *)n->saved)->kept; }

static int checkpoint_backward(ag_ctx *c, ag_node *n);

// Ops whose backward reads their inputs, saved state and output gradient but not their output's
// values: such an output's data is dead once every node reading it has run backward. Any other
// op (attention reads its output) keeps its output's data until its own backward has run.
static int reads_own_output(ag_op op) {
    switch (op) {
    case AG_OP_LINEAR: case AG_OP_LORA_LINEAR: case AG_OP_ADD: case AG_OP_MUL: case AG_OP_SCALE:
    case AG_OP_RMSNORM: case AG_OP_LAYERNORM: case AG_OP_ROPE: case AG_OP_SWIGLU: case AG_OP_GELU:
    case AG_OP_GELU_TANH: case AG_OP_EMBEDDING: case AG_OP_CONCAT_ROWS: case AG_OP_SCATTER_ROWS:
    case AG_OP_GATED_ADD: case AG_OP_CHECKPOINT:
        return 0;
    default:
        return 1;
    }
}

static void give_back(ag_ctx *c, float *p, size_t bytes) {
    if (c->nfree == c->cap_free) {
        c->cap_free = c->cap_free ? 2 * c->cap_free : 64;
        c->free_bufs = xrealloc(c->free_bufs, (size_t)c->cap_free * sizeof *c->free_bufs);
    }
    c->free_bufs[c->nfree++] = (struct ag_free_buf){p, bytes};
}

// For the outputs of nodes [first, nnodes): the node after whose backward the output's data
// is dead (its lowest reader, or its producer when it has none or reads its output). A kept
// checkpoint's own nodes belong to its backward's pass: its input counts as read by it.
static void plan_frees(ag_ctx *c, int first, int pass) {
    for (int i = first; i < c->nnodes; i++) {
        c->nodes[i].out->free_pass = pass;
        c->nodes[i].out->free_after = -1;
    }
    for (int i = c->nnodes - 1; i >= first; i--) {
        ag_node *n = &c->nodes[i];
        ag_tensor *o = n->out;
        if (o->free_pass == pass && (o->free_after < 0 || reads_own_output(n->op))) o->free_after = i;
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] && n->in[j]->free_pass == pass) n->in[j]->free_after = i;   // the lowest reader wins
        if (is_kept(n)) i = ((ckpt_saved *)n->saved)->n0;
    }
}

// After node i's backward: t's data goes back to the free buffers when node i was its last
// reader and t is data_transient, in the arena and not the pass's seed `out`.
static void free_if_dead(ag_ctx *c, ag_tensor *t, int i, int pass, const ag_tensor *out) {
    if (!t || t->free_pass != pass || t->free_after != i) return;
    t->free_pass = 0;   // (an input listed twice is given back once)
    if (!t->data_transient || t->is_param || t == out || !t->data) return;
    if ((char *)t->data < c->arena.base || (char *)t->data >= c->arena.base + c->arena.used) return;
    give_back(c, t->data, (size_t)t->numel * sizeof(float));
    t->data = NULL;   // dead: a use after this is a crash, not a silent wrong value
}

// Runs nodes [first, nnodes) of the tape backwards; out->grad holds the seed gradient.
static int run_tape(ag_ctx *c, int first, ag_tensor *out) {
    int prof_on = ag_prof_enabled(), pass = ++c->pass;
    plan_frees(c, first, pass);
    for (int i = c->nnodes - 1; i >= first; i--) {
        ag_node *n = &c->nodes[i];
        if (!n->out->grad) continue;   // nothing flowed into this output
        // Inputs' gradient buffers exist before the kernel runs (so it can accumulate).
        for (int j = 0; j < n->nin; j++)
            if (n->in[j] && n->in[j]->requires_grad && !ag_grad(c, n->in[j])) return -1;
        ag_tensor *o = n->out;
        ag_op op = n->op;
        double t0 = prof_on ? now_seconds() : 0;
        if (op == AG_OP_CHECKPOINT) {   // grows the tape (c->nodes may move); a kept one shrinks it
            if (checkpoint_backward(c, n) != 0) return -1;
            n = &c->nodes[i];   // (still readable when the tape shrank below it)
        } else {
            n->backward(c, n);
        }
        if (prof_on && op != AG_OP_CHECKPOINT) {   // a checkpoint's time is its sub-tape's ops'
            prof.bwd[op] += now_seconds() - t0;
            prof.nbwd[op]++;
        }
        // the output's gradient is complete and consumed: recycle a model-internal one
        if (o->grad_transient && o != out && !o->is_param) {
            give_back(c, o->grad, (size_t)o->numel * sizeof(float));
            o->grad = NULL;
        }
        for (int j = 0; j < n->nin; j++) free_if_dead(c, n->in[j], i, pass, out);
        free_if_dead(c, o, i, pass, out);
        if (i > c->nnodes) i = c->nnodes;   // a kept checkpoint ran (and dropped) the nodes below it
    }
    return 0;
}

int ag_backward_from(ag_ctx *c, ag_tensor *out, const float *dout) {
    if (!out) return -1;
    if (!out->requires_grad) return err_set("backward: the output does not depend on any trainable tensor");
    float *g = ag_grad(c, out);
    if (!g) return -1;
    for (int64_t i = 0; i < out->numel; i++) g[i] += dout[i];
    if (run_tape(c, 0, out) != 0) return -1;
    if (ag_prof_enabled()) c->prof_mark = now_seconds();
    // every gradient has its tensor's shape by construction (allocated from numel);
    // check that the tape did not write past them via the arena bound
    AG_ASSERT(c->arena.used <= c->arena.cap, "arena overrun");
    return 0;
}

// --- activation checkpointing

// Gives back the arena above `mark` and drops the free buffers that lay there.
static void release_above(ag_ctx *c, size_t mark) {
    c->arena.used = mark;
    for (int i = c->nfree - 1; i >= 0; i--)
        if ((char *)c->free_bufs[i].p >= c->arena.base + mark) c->free_bufs[i] = c->free_bufs[--c->nfree];
}

static int same_shape_result(const ag_tensor *r, const ag_tensor *x) {
    if (ag_same_shape(r, x)) return 1;
    char a[64], b[64];
    err_set("checkpoint: the function returned %s for an input of shape %s", ag_shape_str(r, a, sizeof a),
            ag_shape_str(x, b, sizeof b));
    return 0;
}

ag_tensor *ag_checkpoint(ag_ctx *c, ag_ckpt_fn fn, const void *user, size_t user_bytes, ag_tensor *x) {
    if (!x) return NULL;
    if (!c->grad_enabled) return fn(c, user, x);
    ag_tensor *y = ag_new(c, x->ndim, x->shape);
    ckpt_saved *s = ag_alloc(c, sizeof *s, "checkpoint");
    void *u = ag_alloc(c, user_bytes ? user_bytes : 1, "checkpoint closure");
    if (!y || !s || !u) return NULL;
    if (user_bytes) memcpy(u, user, user_bytes);   // (user may be NULL with no closure)
    *s = (ckpt_saved){.fn = fn, .x = x, .rng = c->rng, .user = u};
    int n0 = c->nnodes;
    size_t mark = c->arena.used;
    ag_tensor *r = fn(c, u, x);
    if (!r || !same_shape_result(r, x)) return NULL;
    memcpy(y->data, r->data, (size_t)y->numel * sizeof(float));
    int needs = r->requires_grad;
    c->nnodes = n0;
    release_above(c, mark);
    if (!needs) return y;   // nothing in fn needed a gradient: no node
    // recorded even when x needs no gradient (LoRA: the parameters inside fn do)
    ag_node *n = tape_push(c, AG_OP_CHECKPOINT);
    n->out = y;
    n->in[0] = x->requires_grad ? x : NULL;
    n->nin = 1;
    n->saved = s;
    y->requires_grad = 1;
    return y;
}

ag_tensor *ag_checkpoint_tail(ag_ctx *c, ag_ckpt_fn fn, const void *user, size_t user_bytes, ag_tensor *x) {
    if (!x) return NULL;
    if (!c->recomputing || !c->grad_enabled) return ag_checkpoint(c, fn, user, user_bytes, x);
    // x's gradient below the kept region (released right after this call's backward)
    if (x->requires_grad && !ag_grad(c, x)) return NULL;
    ckpt_saved *s = ag_alloc(c, sizeof *s, "checkpoint");
    ag_tensor *y = ag_alloc(c, sizeof *y, "checkpoint output");
    if (!s || !y) return NULL;
    int n0 = c->nnodes;
    size_t mark = c->arena.used;
    ag_tensor *r = fn(c, user, x);
    if (!r || !same_shape_result(r, x)) return NULL;
    if (!r->requires_grad) return r;   // nothing in fn needed a gradient: no node, nothing to keep
    *y = *r;   // the result's values, as the node's own output
    y->grad = NULL;
    y->free_pass = 0;
    *s = (ckpt_saved){.fn = fn, .x = x, .rng = c->rng, .kept = 1, .n0 = n0, .node = c->nnodes, .mark = mark, .r = r};
    ag_node *n = tape_push(c, AG_OP_CHECKPOINT);
    n->out = y;
    n->in[0] = x->requires_grad ? x : NULL;
    n->nin = 1;
    n->saved = s;
    return y;
}

// A recomputation's result r (the seed of its backward pass): its values were copied out in
// the forward, so when its producer (the top node) does not read them its data is dead from the
// start. Not for a kept checkpoint's output, which shares its result's data and gives it back
// in its own pass.
static void free_seed(ag_ctx *c, ag_tensor *r) {
    const ag_node *top = c->nnodes > 0 ? &c->nodes[c->nnodes - 1] : NULL;
    if (!top || top->out != r || is_kept(top) || reads_own_output(top->op)) return;
    if (!r->data_transient || !r->data) return;
    give_back(c, r->data, (size_t)r->numel * sizeof(float));
    r->data = NULL;
}

// Backpropagates a kept checkpoint's output gradient through its nodes (right below it), then
// drops them and gives their arena back.
static int kept_backward(ag_ctx *c, ag_node *n) {
    ckpt_saved *s = n->saved;
    AG_ASSERT(c->nnodes == s->node + 1, "checkpoint: a kept sub-tape is not at the top of the tape");
    s->r->grad = n->out->grad;
    c->nnodes = s->node;
    free_seed(c, s->r);
    n->out->data = NULL;   // (it was s->r's)
    int rc = run_tape(c, s->n0, s->r);
    c->nnodes = s->n0;
    release_above(c, s->mark);
    return rc;
}

// Re-runs the function on the tape above the arena's current use, backpropagates the
// output's gradient through those nodes alone, then drops them and their memory.
static int checkpoint_backward(ag_ctx *c, ag_node *n) {
    ckpt_saved *s = n->saved;
    if (s->kept) return kept_backward(c, n);
    ag_tensor *out = n->out;
    int n0 = c->nnodes, grad = c->grad_enabled;
    size_t mark = c->arena.used;
    uint64_t rng = c->rng;
    ag_tensor *x = ag_alloc(c, sizeof *x, "checkpoint input");
    if (!x) return -1;
    *x = *s->x;   // the same values; its gradient (if any) accumulates into the kept input's buffer
    c->grad_enabled = 1;
    c->rng = s->rng;
    c->recomputing++;
    ag_tensor *r = s->fn(c, s->user, x);
    c->recomputing--;
    c->rng = rng;
    c->grad_enabled = grad;
    int rc = -1;
    if (r) {
        AG_ASSERT(r->requires_grad && r->numel == out->numel, "checkpoint: the recomputation differs from the forward");
        for (int i = n0; i < c->nnodes; i++)   // a kept (tail) checkpoint must be fn's last op
            AG_ASSERT(!is_kept(&c->nodes[i]) || (i == c->nnodes - 1 && c->nodes[i].out == r),
                      "ag_checkpoint_tail: not the last op of the function being recomputed");
        r->grad = out->grad;   // the seed: y's complete gradient
        free_seed(c, r);
        rc = run_tape(c, n0, r);
    }
    c->nnodes = n0;
    release_above(c, mark);
    return rc;
}

// --- parameters

ag_tensor *ag_params_add(ag_params *p, const char *name, int ndim, const int64_t *shape) {
    AG_ASSERT(!p->data, "ag_params_add after ag_params_alloc");
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->t = xrealloc(p->t, (size_t)p->cap * sizeof *p->t);
    }
    ag_tensor *t = xcalloc(1, sizeof *t);
    *t = ag_wrap(NULL, ndim, shape, xstrdup(name));
    t->requires_grad = 1;
    t->is_param = 1;
    p->t[p->n++] = t;
    p->total += t->numel;
    return t;
}

int ag_params_alloc(ag_params *p) {
    size_t bytes = (size_t)p->total * sizeof(float);
    p->data = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    p->grad = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p->data || !p->grad) return err_set("parameters: out of memory for %lld floats", (long long)p->total);
    memset(p->data, 0, bytes);
    memset(p->grad, 0, bytes);
    int64_t off = 0;
    for (int i = 0; i < p->n; i++) {
        p->t[i]->data = p->data + off;
        p->t[i]->grad = p->grad + off;
        off += p->t[i]->numel;
    }
    return 0;
}

void ag_params_zero_grad(ag_params *p) {
    if (p->grad) memset(p->grad, 0, (size_t)p->total * sizeof(float));
}

ag_tensor *ag_params_find(const ag_params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->t[i]->name, name)) return p->t[i];
    return NULL;
}

void ag_params_free(ag_params *p) {
    for (int i = 0; i < p->n; i++) {
        free((char *)p->t[i]->name);
        free(p->t[i]);
    }
    free(p->t);
    free(p->data);
    free(p->grad);
    memset(p, 0, sizeof *p);
}

// --- RNG

uint64_t ag_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

float ag_rng_uniform(uint64_t *s) { return (float)(ag_rng_next(s) >> 40) * (1.0f / 16777216.0f); }

float ag_rng_normal(uint64_t *s) {
    double u1 = ((double)(ag_rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(ag_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
