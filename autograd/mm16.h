// mm16.h — lorac's oneDNN matmuls: BF16 ones against frozen BF16 weights (precision: bf16),
// the BF16 <-> fp32 conversions, the fused linear (SigLIP), and one-thread fp32 products
// (the lm-head loss's pieces, mm32_1 / mm32_pieces).
//
// Numerics: both operands BF16 (the weight as stored; the activation operand rounded to
// nearest-even, as torch's .to(torch.bfloat16)), products accumulated in fp32, output fp32
// (written, or added to what the output holds). Everything else of a bf16 step stays fp32.
//
// Shapes: W [O, In] row-major (out × in, as every frozen Llama/SigLIP weight), M rows.
//   mm16_xwt:  y[M, O]  (+)=  bf16(x)[M, In] · Wᵀ     (forward of a linear, lm-head logits)
//   mm16_xw:   y[M, In] (+)=  bf16(x)[M, O]  · W      (dx of a linear, the lm-head's dh)
// The *_b16 variants take the activation operand already in BF16 (when one operand feeds
// several products). Primitives are created once per (M, O, In, orientation, accumulate)
// and cached; a large product (the 1B shapes) runs as fixed pieces of 512 output columns, each
// a primitive made for one thread, handed out in one parallel region (oneDNN's own split of
// x·W left 10-40% of the machine idle here), so its bits do not depend on the thread count.
// oneDNN runs on the OpenMP (libgomp) pool shared with OpenBLAS and lorac's loops; call these
// outside OpenMP parallel regions. Every execute runs with asynchronous signals blocked on its
// thread (see entry_exec in mm16.c).
#ifndef LORAC_MM16_H
#define LORAC_MM16_H

#include <stdint.h>

#include "gemv16.h"

// --- conversions: f32_to_bf16 / bf16_to_f32 (gemv16.h); the same over arrays, in parallel

void bf16_round(uint16_t *dst, const float *src, int64_t n);   // dst[n] = bf16(src[n]), nearest even
void bf16_widen(float *dst, const uint16_t *src, int64_t n);    // dst[n] = src[n] exactly

// --- matmuls (accumulate: 0 writes y, 1 adds to y)

// The calling thread's buffer for an activation operand in BF16 (room for n values; grown,
// never shrunk): fill it (e.g. loramm_rows rounds x while it reads it) and pass it to a *_b16
// call. The float-operand calls below round into it too.
uint16_t *mm16_operand(int64_t n);

void mm16_xwt(float *y, const float *x, const uint16_t *W, int64_t M, int64_t O, int64_t In, int accumulate);
void mm16_xw(float *y, const float *x, const uint16_t *W, int64_t M, int64_t O, int64_t In, int accumulate);
void mm16_xwt_b16(float *y, const uint16_t *xb, const uint16_t *W, int64_t M, int64_t O, int64_t In,
                  int accumulate);
void mm16_xw_b16(float *y, const uint16_t *xb, const uint16_t *W, int64_t M, int64_t O, int64_t In,
                 int accumulate);

// --- fused linear: y[M, O] (+)= act(x[M, In] · Wᵀ + b[O]), W [O, In] row-major
// fp32 (W32; every operand fp32, oneDNN's AVX-512 fp32 kernels) or BF16 (W16; x rounded to
// BF16 as in mm16_xwt); b may be NULL. The bias is added to the fp32 accumulator, then the
// activation (oneDNN eltwise post-op), then, with `accumulate`, the output's old value (sum
// post-op): y_old + act(x·Wᵀ + b), the order PyTorch's `y + act(F.linear(x, W, b))` computes.
// Results are deterministic and the same at any thread count (oneDNN splits the output, never
// the reduction, on these shapes). One call replaces ag_linear + activation + ag_add in
// no-grad forwards (the SigLIP tower).
typedef enum mm_act { MM_ACT_NONE = 0, MM_GELU_TANH, MM_GELU_ERF } mm_act;
void mm_linear(float *y, const float *x, const float *W32, const uint16_t *W16, const float *b, int64_t M, int64_t O,
               int64_t In, mm_act act, int accumulate);

// --- fp32 product on the calling thread alone, safe inside an OpenMP parallel region
// C[M, N] (+)= A[M, K] · op(B) (acc: +=): op(B) = Bᵀ of a row-major B[N, K] (bt) or B[K, N]; row strides
// lda, ldb, ldc. oneDNN's fp32 kernels (AVX-512 where it has them; 1.3-1.5x OpenBLAS's sgemm
// on the cross-entropy pieces of a small model), through primitives each thread creates for
// itself and for ONE thread, so the result depends on the shape alone (not on which thread ran
// it or how many there are). Where oneDNN has only its reference matmul, ag_sgemm_1.
void mm32_1(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int64_t M, int64_t N,
            int64_t K, int bt, int acc);
void mm32_pieces(float *y, const float *x, const float *W, int64_t M, int64_t K, int64_t N, int wt, int acc);

// --- CPU capability

// 1 when the CPU multiplies BF16 natively (AVX512-BF16 or AMX, as oneDNN detects it), 0 when
// oneDNN emulates BF16 with fp32 instructions (correct, but slower than fp32 mode).
int mm16_native(void);
// oneDNN's ISA name for log lines ("avx512_core_bf16", ...).
const char *mm16_isa_name(void);
// The load log line of a model in bf16 mode (stderr): `what` (e.g. the model folder), how
// many frozen weights are held in BF16 and their size, how many of them were rounded from
// the file's F32/F16; and, once per process, that BF16 is emulated when mm16_native() is 0.
void mm16_log_load(const char *what, int tensors, int rounded, double bytes);

#endif
