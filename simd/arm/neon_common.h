/* Helpers shared by the NEON kernel files (baseline ARMv8.0 AdvSIMD and the
 * ARMv8.2 dot-product variant). Everything here is static inline and forced
 * inline, so each file compiles it for its own target and the constant
 * arguments (bit widths, block sizes, lane numbers) fold away. */
#ifndef SLIMKV_NEON_COMMON_H
#define SLIMKV_NEON_COMMON_H

#include <arm_neon.h>
#include <string.h>

#include "kernels.h"

#define NEON_INLINE static inline __attribute__((always_inline))

/* Queries (or weight rows) served together from one pass over a block: the
 * usual GQA group, and 16 accumulators that leave room in 32 registers. */
#define NEON_QUERY_BLOCK 4
/* Tokens of a V block whose folded weights are prepared at once. */
#define NEON_V_CHUNK 64

/* The dot-product table ("neon-dotprod"): the NEON table with the quantized
 * score_k / accum_v and their fused decode replaced. */
SLIMKV_HIDDEN void slimkv_kernels_use_dotprod_neon(slimkv_kernels *k);

/* Softmax helpers of the fused decode loop (simd/tile_loop.h), shared by
 * both NEON files. */
SLIMKV_HIDDEN float slimkv_exp_sum_neon(float *x, int n, float max);
SLIMKV_HIDDEN float slimkv_max_f32_neon(const float *x, int n);
SLIMKV_HIDDEN void slimkv_scale_f32_neon(float *x, int n, float a);

/* Splits nq into blocks of 4 and instantiates the body for 4, 3, 2 and 1 rows
 * (compile-time counts keep every accumulator in a register). */
#define FOR_QUERY_BLOCKS(NQ, I0, BODY)                                                                   \
    for (int I0 = 0; I0 < (NQ); I0 += NEON_QUERY_BLOCK) {                                                \
        switch ((NQ) - I0 < NEON_QUERY_BLOCK ? (NQ) - I0 : NEON_QUERY_BLOCK) {                           \
        case 4: BODY(4); break;                                                                          \
        case 3: BODY(3); break;                                                                          \
        case 2: BODY(2); break;                                                                          \
        default: BODY(1); break;                                                                         \
        }                                                                                                \
    }

/* ---- loads and stores that assume no alignment ----
 * Loops over the vectors of a block carry `#pragma GCC unroll`: unrolled,
 * they stay in registers; otherwise GCC may turn them into memcpy calls
 * through the stack (loop distribution).
 * fp16 parameters can sit at any byte address (a group's code section has
 * any length), so they are read through byte pointers. */

NEON_INLINE float32x4_t load_f16x4(const uint8_t *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p)));
}

NEON_INLINE uint16_t load_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

NEON_INLINE void store_u16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, sizeof v);
}

/* count (1 .. 4*nvec) floats into nvec vectors, zeros past count. */
NEON_INLINE void load_f32_vecs(const float *src, int count, int nvec, float32x4_t *v)
{
    if (count == 4 * nvec) {
#pragma GCC unroll 4
        for (int k = 0; k < nvec; k++)
            v[k] = vld1q_f32(src + 4 * k);
        return;
    }
    float tmp[16] = {0};
    memcpy(tmp, src, (size_t)count * sizeof(float));
#pragma GCC unroll 4
    for (int k = 0; k < nvec; k++)
        v[k] = vld1q_f32(tmp + 4 * k);
}

/* The first count (1 .. 4*nvec) lanes of nvec vectors; the rest of dst is untouched. */
NEON_INLINE void store_f32_vecs(float *dst, int count, int nvec, const float32x4_t *v)
{
    if (count == 4 * nvec) {
#pragma GCC unroll 4
        for (int k = 0; k < nvec; k++)
            vst1q_f32(dst + 4 * k, v[k]);
        return;
    }
    float tmp[16];
#pragma GCC unroll 4
    for (int k = 0; k < nvec; k++)
        vst1q_f32(tmp + 4 * k, v[k]);
    memcpy(dst, tmp, (size_t)count * sizeof(float));
}

/* Code bytes of `lanes` 32-bit lanes (1 .. 4*nvec) into nvec vectors, zeros
 * past them: partial channel blocks of a V block must not read past dv. */
NEON_INLINE void load_code_lanes(const uint8_t *src, int lanes, int nvec, uint8x16_t *v)
{
    if (lanes == 4 * nvec) {
#pragma GCC unroll 4
        for (int k = 0; k < nvec; k++)
            v[k] = vld1q_u8(src + 16 * k);
        return;
    }
    uint8_t tmp[64] = {0};
    memcpy(tmp, src, (size_t)lanes * 4);
#pragma GCC unroll 4
    for (int k = 0; k < nvec; k++)
        v[k] = vld1q_u8(tmp + 16 * k);
}

/* ---- code fields ----
 * A byte holds 8/bits codes; field j is bits [bits*j, bits*(j+1)). */
NEON_INLINE uint8x16_t code_field(uint8x16_t raw, int bits, int j)
{
    if (bits == 8)
        return raw;
    uint8x16_t shifted = j == 0 ? raw : vshlq_u8(raw, vdupq_n_s8((int8_t)(-bits * j)));
    if (bits * (j + 1) == 8) /* the top field needs no mask */
        return shifted;
    return vandq_u8(shifted, vdupq_n_u8((uint8_t)((1 << bits) - 1)));
}

/* 16 codes (0..255) as four float vectors. Zero-extension by zipping with
 * zeros rather than UXTL of vget_low: GCC spills a vld4 result to the stack
 * to take the low half of one of its registers. */
NEON_INLINE void widen_codes_f32(uint8x16_t x, float32x4_t f[4])
{
    uint8x16_t z8 = vdupq_n_u8(0);
    uint16x8_t lo = vreinterpretq_u16_u8(vzip1q_u8(x, z8)), hi = vreinterpretq_u16_u8(vzip2q_u8(x, z8));
    uint16x8_t z16 = vdupq_n_u16(0);
    f[0] = vcvtq_f32_u32(vreinterpretq_u32_u16(vzip1q_u16(lo, z16)));
    f[1] = vcvtq_f32_u32(vreinterpretq_u32_u16(vzip2q_u16(lo, z16)));
    f[2] = vcvtq_f32_u32(vreinterpretq_u32_u16(vzip1q_u16(hi, z16)));
    f[3] = vcvtq_f32_u32(vreinterpretq_u32_u16(vzip2q_u16(hi, z16)));
}

/* acc + x * v[lane]: the lane must be an immediate, so switch on it (the
 * switch folds away when the caller's loop is unrolled). */
NEON_INLINE float32x4_t fma_lane(float32x4_t acc, float32x4_t x, float32x4_t v, int lane)
{
    switch (lane) {
    case 0: return vfmaq_laneq_f32(acc, x, v, 0);
    case 1: return vfmaq_laneq_f32(acc, x, v, 1);
    case 2: return vfmaq_laneq_f32(acc, x, v, 2);
    default: return vfmaq_laneq_f32(acc, x, v, 3);
    }
}

/* ---- V block parameters ----
 * Folded weights of channel group j for nq (<= 4) weight rows over tokens
 * [t0, t0 + nt) of a block, nt <= NEON_V_CHUNK:
 *   fw[i][t] = w[i][t0 + t] * scale(t0 + t, j), zero from nt up to the next
 *   multiple of 16 (a q2 byte plane spans 16 tokens);
 *   bias[i] = sum_t w[i][t0 + t] * min(t0 + t, j), added to every channel. */
NEON_INLINE void fold_v_weights(const uint8_t *scale_p, const uint8_t *min_p, int nvg, int j, int t0, int nt,
                                const float *w, int ldw, int nq, float fw[][NEON_V_CHUNK], float *bias)
{
    uint16_t sh[NEON_V_CHUNK] = {0}, mh[NEON_V_CHUNK] = {0};
    for (int t = 0; t < nt; t++) { /* parameters are [token][group]: a strided gather */
        size_t idx = (size_t)(t0 + t) * nvg + j;
        sh[t] = load_u16(scale_p + 2 * idx);
        mh[t] = load_u16(min_p + 2 * idx);
    }
    int padded = (nt + 15) & ~15;
    for (int i = 0; i < nq; i++) {
        float wt[NEON_V_CHUNK] = {0};
        memcpy(wt, w + (size_t)i * ldw + t0, (size_t)nt * sizeof(float));
        float32x4_t b = vdupq_n_f32(0.0f);
        for (int t = 0; t < padded; t += 4) {
            float32x4_t wv = vld1q_f32(wt + t);
            float32x4_t sc = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(sh + t)));
            float32x4_t mn = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(mh + t)));
            vst1q_f32(fw[i] + t, vmulq_f32(wv, sc));
            b = vfmaq_f32(b, wv, mn);
        }
        bias[i] = vaddvq_f32(b);
    }
}

#endif /* SLIMKV_NEON_COMMON_H */
