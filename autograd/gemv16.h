// gemv16.h — matrix-vector products against BF16 weights (token-by-token decoding).
//
// Decoding one token streams every frozen weight once: it is bound by memory bandwidth, not
// arithmetic, so a BF16 weight read directly (half the bytes of fp32) is what makes bf16
// decoding fast. W[O, In] is row-major BF16 (the raw 16-bit patterns of a safetensors file).
#ifndef LORAC_GEMV16_H
#define LORAC_GEMV16_H

#include <stdint.h>

// 1 when this CPU executes AVX512-BF16 dot products natively (VDPBF16PS); 0 means
// gemv_bf16 runs a slower emulation with the same rounding of x.
int cpu_has_avx512bf16(void);

// y[O] = W[O, In] · bf16(x[In]): x is rounded to BF16 (nearest even, as torch), the products
// are exact in fp32 and accumulate in fp32. Each y[o] is computed by one thread in a fixed
// order, so results do not depend on the thread count. Rows are split over OpenMP threads
// only when the product is large enough to pay for the fork.
void gemv_bf16(int64_t O, int64_t In, const uint16_t *W, const float *x, float *y);

// The portable path (used when the CPU lacks AVX512-BF16; exposed for tests).
void gemv_bf16_ref(int64_t O, int64_t In, const uint16_t *W, const float *x, float *y);

// fp32 -> BF16, round to nearest even, as torch (c10::BFloat16's round_to_nearest_even, used by
// autocast): every NaN, whatever its sign and payload, becomes the canonical quiet NaN 0x7FC0,
// as st_f32_to_bf16 does. (torch 1.13's vectorized tensor cast `.bfloat16()` writes 0xFFFF for
// a NaN instead: also a NaN, only the bits differ.)
static inline uint16_t f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;   // canonical quiet NaN
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
static inline float bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

#endif
