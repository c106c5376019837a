// mm16.c — oneDNN matmuls (see mm16.h): one CPU engine and stream, a cache of matmul
// primitives keyed by shape, per-thread caches of one-thread primitives (the pieces), and the
// activation operand rounded to BF16 into a per-thread buffer that grows to the largest
// operand seen.
//
// Weights are used in the plain row-major layout they are stored in: W [O, In] is the
// weights operand [In, O] with strides (1, In) for y = x·Wᵀ and [O, In] with strides (In, 1)
// for y = x·W, so one copy serves forward and backward. Accumulation (y += ...) is oneDNN's
// sum post-op. Where oneDNN has no BF16 matmul at all (CPUs without AVX-512: it reports
// "unimplemented"), the same numbers come from cblas_sgemm on the BF16 operands widened to
// fp32 (exact), a block of weight rows at a time. Other oneDNN failures are out-of-memory or
// bugs (shapes are checked by the ops), so they abort with the status and the shape.
#include "mm16.h"
#include "blas.h"

#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ag.h"
#include "util.h"

#define PAR_MIN AG_PAR_MIN   // elements below which a conversion loop stays serial (ag.h)

void bf16_round(uint16_t *dst, const float *src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

void bf16_widen(float *dst, const uint16_t *src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}

// --- engine, stream, primitive cache

#define CK(call, what)                                                                              \
    do {                                                                                            \
        dnnl_status_t s_ = (call);                                                                  \
        AG_ASSERT(s_ == dnnl_success, "oneDNN %s failed with status %d (%s)", #call, (int)s_, what); \
    } while (0)

typedef struct mm_key {
    int64_t M, K, N;
    int64_t lda, ldb, ldc;  // row strides of a [M, K], B's row-major storage, y [M, N]; 0: dense
    int wt;                 // weights operand is Wᵀ of a row-major W[N, K] (strides 1, ldb)
    int acc;                // sum post-op
    int f32;                // fp32 operands (an fp32 W) instead of BF16
    int bias;               // a bias row [N] added to every output row (mm_linear)
    mm_act act;             // eltwise post-op after the bias, before the sum (mm_linear)
    int one;                // made for one thread (the per-thread pieces); see cache_get
} mm_key;

typedef struct mm_entry {
    mm_key k;
    dnnl_primitive_t prim;  // NULL: oneDNN has no such matmul here (BF16 without AVX-512: the widened
                            // sgemm; a one-thread fp32 one with only the reference kernel: ag_sgemm_1)
    dnnl_memory_t src, wei, dst, bia;   // memory objects reused with new data handles (bia: with a bias)
} mm_entry;

#define MM_CACHE 256

typedef struct mm_cache {
    mm_entry e[MM_CACHE];
    int n, next;            // entries in use; the next slot to evict when full
} mm_cache;

static struct {
    pthread_once_t once;
    pthread_mutex_t lock;   // guards cache and stream
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    mm_cache cache;
} mm = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER};

static void mm_init(void) {
    CK(dnnl_engine_create(&mm.eng, dnnl_cpu, 0), "cpu engine");
    CK(dnnl_stream_create(&mm.stream, mm.eng, dnnl_stream_default_flags), "stream");
}

static void entry_free(mm_entry *e) {
    if (!e->prim) return;
    dnnl_primitive_destroy(e->prim);
    dnnl_memory_destroy(e->src);
    dnnl_memory_destroy(e->wei);
    dnnl_memory_destroy(e->dst);
    if (e->bia) dnnl_memory_destroy(e->bia);
}

// A one-thread primitive is made while this thread's OpenMP count is 1 (what oneDNN reads), so
// its result depends on the shape alone; one that gets only oneDNN's reference kernel is not
// made (the caller uses ag_sgemm_1).
static void entry_create(mm_entry *e, const mm_key *k) {
    int64_t M = k->M, K = k->K, N = k->N;
    int64_t lda = k->lda ? k->lda : K, ldb = k->ldb ? k->ldb : k->wt ? K : N, ldc = k->ldc ? k->ldc : N;
    char what[128];
    snprintf(what, sizeof what, "%s%s matmul [%lld, %lld] x [%lld, %lld]%s%s%s%s", k->f32 ? "fp32" : "bf16",
             k->one ? " one-thread" : "", (long long)M, (long long)K, (long long)K, (long long)N,
             k->wt ? " (transposed weight)" : "", k->bias ? " + bias" : "",
             k->act == MM_GELU_TANH ? " gelu_tanh" : k->act == MM_GELU_ERF ? " gelu" : "", k->acc ? " accumulating" : "");
    dnnl_data_type_t dt = k->f32 ? dnnl_f32 : dnnl_bf16;
    dnnl_memory_desc_t a, b, c, bias;
    dnnl_dims_t da = {M, K}, db = {K, N}, dc = {M, N}, dbias = {1, N};
    dnnl_dims_t sa = {lda, 1}, sb_t = {1, ldb}, sb = {ldb, 1}, sc = {ldc, 1};
    CK(dnnl_memory_desc_init_by_strides(&a, 2, da, dt, sa), what);
    CK(dnnl_memory_desc_init_by_strides(&b, 2, db, dt, k->wt ? sb_t : sb), what);
    CK(dnnl_memory_desc_init_by_strides(&c, 2, dc, dnnl_f32, sc), what);
    if (k->bias) CK(dnnl_memory_desc_init_by_tag(&bias, 2, dbias, dnnl_f32, dnnl_ab), what);
    dnnl_matmul_desc_t md;
    CK(dnnl_matmul_desc_init(&md, &a, &b, k->bias ? &bias : NULL, &c), what);
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t po = NULL;
    CK(dnnl_primitive_attr_create(&attr), what);
    if (k->acc || k->act) {   // act(x·W + b), then + the output's old value
        CK(dnnl_post_ops_create(&po), what);
        if (k->act)
            CK(dnnl_post_ops_append_eltwise(po, 1.0f, k->act == MM_GELU_TANH ? dnnl_eltwise_gelu_tanh : dnnl_eltwise_gelu_erf,
                                            0.0f, 0.0f), what);
        if (k->acc) CK(dnnl_post_ops_append_sum(po, 1.0f), what);
        CK(dnnl_primitive_attr_set_post_ops(attr, po), what);
    }
    int nt = omp_get_max_threads();
    if (k->one && nt > 1) omp_set_num_threads(1);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &md, attr, mm.eng, NULL);
    AG_ASSERT(st == dnnl_success || st == dnnl_unimplemented, "oneDNN primitive_desc_create failed with status %d (%s)",
              (int)st, what);
    const char *impl = "";
    if (pd && k->one) CK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl), what);
    memset(e, 0, sizeof *e);
    e->k = *k;
    if (pd && strncmp(impl, "ref", 3) != 0) {
        CK(dnnl_primitive_create(&e->prim, pd), what);
        CK(dnnl_memory_create(&e->src, &a, mm.eng, DNNL_MEMORY_NONE), what);
        CK(dnnl_memory_create(&e->wei, &b, mm.eng, DNNL_MEMORY_NONE), what);
        CK(dnnl_memory_create(&e->dst, &c, mm.eng, DNNL_MEMORY_NONE), what);
        if (k->bias) CK(dnnl_memory_create(&e->bia, &bias, mm.eng, DNNL_MEMORY_NONE), what);
    }
    if (k->one && nt > 1) omp_set_num_threads(nt);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
}

static int key_eq(const mm_key *a, const mm_key *b) {
    return a->M == b->M && a->K == b->K && a->N == b->N && a->lda == b->lda && a->ldb == b->ldb &&
           a->ldc == b->ldc && a->wt == b->wt && a->acc == b->acc && a->f32 == b->f32 && a->bias == b->bias &&
           a->act == b->act && a->one == b->one;
}

// The entry for k in cache c (created on first use; when full, one is replaced round-robin).
// Two kinds of cache: the shared one (mm.cache, under mm.lock, primitives for all threads) and
// each thread's own (one-thread primitives: oneDNN's library scratchpad lets a primitive run on
// the thread that created it concurrently with other threads' primitives).
static mm_entry *cache_get(mm_cache *c, const mm_key *k) {
    pthread_once(&mm.once, mm_init);
    for (int i = 0; i < c->n; i++)
        if (key_eq(&c->e[i].k, k)) return &c->e[i];
    mm_entry *e;
    if (c->n < MM_CACHE) {
        e = &c->e[c->n++];
    } else {
        e = &c->e[c->next];
        c->next = (c->next + 1) % MM_CACHE;
        entry_free(e);
    }
    entry_create(e, k);
    return e;
}

// Every oneDNN execute runs with the asynchronous signals blocked on its thread. oneDNN 2.6's
// JIT kernels keep data below the stack pointer beyond the 128-byte red zone the ABI reserves
// (seen: the fp32 product y = x·W with a 64-wide output, the cross-entropy's acc piece of the
// tiny model), so a signal handler's frame pushed onto the thread's stack mid-kernel overwrites
// it and the kernel goes on with garbage: heap corruption after a Ctrl-C (trainer.c handles
// SIGINT/SIGTERM). Reproduced with a timer signal every 30 µs (tests/test_mm_linear.c); none
// with the handler on an alternate stack, none with the signals blocked. A signal meanwhile
// waits for the end of the product (milliseconds) or goes to a thread that is not in one.
// Faults (SIGSEGV, ...) stay unblocked.
static sigset_t exec_mask;
static pthread_once_t exec_mask_once = PTHREAD_ONCE_INIT;
static void exec_mask_init(void) {
    sigfillset(&exec_mask);
    int sync[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
    for (size_t i = 0; i < sizeof sync / sizeof *sync; i++) sigdelset(&exec_mask, sync[i]);
}

// Runs e's primitive on the given buffers and waits for it (stream: mm.stream under mm.lock,
// or the calling thread's own)
static void entry_exec(mm_entry *e, dnnl_stream_t stream, const void *a, const void *b, const float *bias, float *y) {
    CK(dnnl_memory_set_data_handle(e->src, (void *)a), "src");
    CK(dnnl_memory_set_data_handle(e->wei, (void *)b), "weights");
    CK(dnnl_memory_set_data_handle(e->dst, y), "dst");
    if (e->bia) CK(dnnl_memory_set_data_handle(e->bia, (void *)bias), "bias");
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->wei}, {DNNL_ARG_DST, e->dst},
                               {DNNL_ARG_BIAS, e->bia}};
    sigset_t old;
    pthread_once(&exec_mask_once, exec_mask_init);
    pthread_sigmask(SIG_BLOCK, &exec_mask, &old);
    dnnl_status_t s1 = dnnl_primitive_execute(e->prim, stream, e->bia ? 4 : 3, args);
    dnnl_status_t s2 = s1 == dnnl_success ? dnnl_stream_wait(stream) : dnnl_success;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    AG_ASSERT(s1 == dnnl_success && s2 == dnnl_success, "oneDNN execute failed with status %d", (int)(s1 ? s1 : s2));
}

// --- one-thread products (mm32_1 and the pieces of mm_run / mm32_pieces), from the calling
// thread's own cache and stream

// y[M, N] (+)= a[M, K] · op(B) on the calling thread; strides as in mm_key. An fp32 product
// oneDNN has only its reference kernel for runs on ag_sgemm_1 instead.
static void mm_one(float *y, int64_t ldc, const void *a, int64_t lda, const void *B, int64_t ldb, int64_t M,
                   int64_t N, int64_t K, int wt, int acc, int f32) {
    static __thread mm_cache *cache;
    static __thread dnnl_stream_t stream;
    if (M == 0 || N == 0) return;
    if (!cache) cache = xcalloc(1, sizeof *cache);
    mm_key k = {.M = M, .K = K, .N = N, .lda = lda, .ldb = ldb, .ldc = ldc, .wt = wt, .acc = acc, .f32 = f32,
                .one = 1};
    mm_entry *e = cache_get(cache, &k);
    if (e->prim) {
        if (!stream) CK(dnnl_stream_create(&stream, mm.eng, dnnl_stream_default_flags), "stream");
        entry_exec(e, stream, a, B, NULL, y);
    } else {
        AG_ASSERT(f32, "oneDNN has no BF16 matmul [%lld, %lld] x [%lld, %lld] here", (long long)M, (long long)K,
                  (long long)K, (long long)N);
        ag_sgemm_1(0, wt, M, N, K, 1.0f, a, lda, B, ldb, acc ? 1.0f : 0.0f, y, ldc);
    }
}

void mm32_1(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int64_t M, int64_t N,
            int64_t K, int bt, int acc) {
    mm_one(C, ldc, A, lda, B, ldb, M, N, K, bt, acc, 1);
}

// Large BF16 products as fixed pieces of MM_PIECE output columns handed out to the threads in
// one parallel region, each piece a one-thread primitive that packs only its own slice of W.
// oneDNN's own split of y = x·W (row-major W: the dx of a linear, the cross-entropy's acc
// product) runs at 520-810 GF/s on the 1B shapes on this 2-core machine, the pieces at
// 870-920 (the ceiling); for y = x·Wᵀ pieces win only for wide outputs (the lm-head's logits
// 745 -> 910, gate/up 885 -> 910; q/o equal, down a little slower: x is re-packed per piece).
// The pieces depend on the shape alone, so the result is the same at any thread count.
#define MM_PIECE 512
static int mm_pieces_pay(int64_t M, int64_t N, int64_t K, int wt) {
    return N >= (wt ? 8 : 2) * MM_PIECE && (double)M * N * K >= (double)(64ll << 20) && mm16_native();
}

// y[M, N] (+)= a[M, K] · op(W) in pieces (a, W: BF16, or fp32 with f32)
static void mm_pieces(float *y, const void *a, const void *W, int64_t M, int64_t K, int64_t N, int wt, int acc,
                      int f32) {
    int64_t np = (N + MM_PIECE - 1) / MM_PIECE;
    size_t es = f32 ? sizeof(float) : sizeof(uint16_t);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < np; i++) {
        int64_t j0 = i * MM_PIECE, n = N - j0 < MM_PIECE ? N - j0 : MM_PIECE;
        mm_one(y + j0, N, a, K, (const char *)W + (size_t)(wt ? j0 * K : j0) * es, wt ? K : N, M, n, K, wt, acc, f32);
    }
}

void mm32_pieces(float *y, const float *x, const float *W, int64_t M, int64_t K, int64_t N, int wt, int acc) {
    if (M > 0 && N > 0) mm_pieces(y, x, W, M, K, N, wt, acc, 1);
}

// The emulation: y (+)= widen(a) · widen(B) with cblas_sgemm, B a block of WBLK weight rows
// at a time (the widened copies are the only extra memory). Same operands, fp32 products.
#define WBLK 256
static void mm_widened(float *y, const uint16_t *a, const uint16_t *W, int64_t M, int64_t K, int64_t N, int wt,
                       int acc) {
    float *af = xmalloc((size_t)(M * K) * sizeof *af);
    int64_t wrows = wt ? N : K, wcols = wt ? K : N;   // W is [wrows, wcols] row-major
    float *wf = xmalloc((size_t)(WBLK * wcols) * sizeof *wf);
    bf16_widen(af, a, M * K);
    for (int64_t r0 = 0; r0 < wrows; r0 += WBLK) {
        int nr = (int)(wrows - r0 < WBLK ? wrows - r0 : WBLK);
        bf16_widen(wf, W + r0 * wcols, nr * wcols);
        if (wt)   // y[:, r0:r0+nr] (+)= a · Wblkᵀ
            ag_sgemm(0, 1, M, nr, K, 1.0f, af, K, wf, K, acc ? 1.0f : 0.0f, y + r0, N);
        else      // y (+)= a[:, r0:r0+nr] · Wblk (the first block writes unless accumulating)
            ag_sgemm(0, 0, M, N, nr, 1.0f, af + r0, K, wf, N, acc || r0 > 0 ? 1.0f : 0.0f, y, N);
    }
    free(wf);
    free(af);
}

uint16_t *mm16_operand(int64_t n) {
    static __thread uint16_t *buf;
    static __thread size_t cap;
    if ((size_t)n > cap) {
        free(buf);
        cap = (size_t)n + ((size_t)n >> 3);
        buf = xmalloc(cap * sizeof *buf);
    }
    return buf;
}

// The activation operand rounded to BF16, in the per-thread buffer
static uint16_t *round_operand(const float *x, int64_t n) {
    uint16_t *buf = mm16_operand(n);
    bf16_round(buf, x, n);
    return buf;
}

// y[M, N] (+)= a[M, K] · B[K, N], B from the row-major weight W (see the file comment)
static void mm_run(float *y, const uint16_t *a, const uint16_t *W, int64_t M, int64_t K, int64_t N, int wt,
                   int acc) {
    if (M == 0 || N == 0) return;
    if (mm_pieces_pay(M, N, K, wt)) {
        mm_pieces(y, a, W, M, K, N, wt, acc, 0);
        return;
    }
    pthread_mutex_lock(&mm.lock);
    mm_key k = {.M = M, .K = K, .N = N, .wt = wt, .acc = acc};
    mm_entry *e = cache_get(&mm.cache, &k);
    if (!e->prim) {
        pthread_mutex_unlock(&mm.lock);
        mm_widened(y, a, W, M, K, N, wt, acc);
        return;
    }
    entry_exec(e, mm.stream, a, W, NULL, y);
    pthread_mutex_unlock(&mm.lock);
}

// The epilogue of mm_linear where oneDNN has no BF16 matmul: y (+)= act(z + b) row by row.
static void linear_epilogue(float *y, const float *z, const float *b, int64_t M, int64_t N, mm_act act, int acc) {
#pragma omp parallel for schedule(static) if (M * N >= PAR_MIN)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float v = z[i * N + j] + (b ? b[j] : 0.0f);
            if (act == MM_GELU_TANH)
                v = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
            else if (act == MM_GELU_ERF)
                v = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
            y[i * N + j] = acc ? y[i * N + j] + v : v;
        }
}

void mm_linear(float *y, const float *x, const float *W32, const uint16_t *W16, const float *b, int64_t M, int64_t O,
               int64_t In, mm_act act, int accumulate) {
    if (M == 0 || O == 0) return;
    const void *a = W16 ? (const void *)round_operand(x, M * In) : (const void *)x;
    pthread_mutex_lock(&mm.lock);
    mm_key k = {.M = M, .K = In, .N = O, .wt = 1, .acc = accumulate, .f32 = !W16, .bias = b != NULL, .act = act};
    mm_entry *e = cache_get(&mm.cache, &k);
    if (!e->prim) {   // BF16 without a oneDNN BF16 matmul: the widened product, then the epilogue
        pthread_mutex_unlock(&mm.lock);
        float *z = xmalloc((size_t)(M * O) * sizeof *z);
        mm_widened(z, a, W16, M, In, O, 1, 0);
        linear_epilogue(y, z, b, M, O, act, accumulate);
        free(z);
        return;
    }
    entry_exec(e, mm.stream, a, W16 ? (const void *)W16 : (const void *)W32, b, y);
    pthread_mutex_unlock(&mm.lock);
}

void mm16_xwt_b16(float *y, const uint16_t *xb, const uint16_t *W, int64_t M, int64_t O, int64_t In,
                  int accumulate) {
    mm_run(y, xb, W, M, In, O, 1, accumulate);
}

void mm16_xw_b16(float *y, const uint16_t *xb, const uint16_t *W, int64_t M, int64_t O, int64_t In,
                 int accumulate) {
    mm_run(y, xb, W, M, O, In, 0, accumulate);
}

void mm16_xwt(float *y, const float *x, const uint16_t *W, int64_t M, int64_t O, int64_t In, int accumulate) {
    if (M == 0) return;
    mm16_xwt_b16(y, round_operand(x, M * In), W, M, O, In, accumulate);
}

void mm16_xw(float *y, const float *x, const uint16_t *W, int64_t M, int64_t O, int64_t In, int accumulate) {
    if (M == 0) return;
    mm16_xw_b16(y, round_operand(x, M * O), W, M, O, In, accumulate);
}

// --- CPU capability

int mm16_native(void) {
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

const char *mm16_isa_name(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "unknown";
    }
}

void mm16_log_load(const char *what, int tensors, int rounded, double bytes) {
    static int told;
    fprintf(stderr, "precision: bf16: %s: %d frozen weights held in BF16 (%.2f GB)%s\n", what, tensors, bytes / 1e9,
            rounded == 0        ? ", as stored"
            : rounded < tensors ? ", some rounded once from F32/F16 at load"
                                : ", rounded once from F32/F16 at load");
    if (!told && !mm16_native())
        fprintf(stderr, "precision: bf16: this CPU has no AVX512-BF16 or AMX (oneDNN runs %s): BF16 matmuls are "
                        "emulated and slower than fp32 here; consider precision: fp32\n", mm16_isa_name());
    told = 1;
}
