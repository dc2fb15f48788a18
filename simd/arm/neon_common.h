/* Helpers shared by the NEON kernel files (baseline ARMv8.0 AdvSIMD and the
 * ARMv8.2 dot-product variant on aarch64; ARMv7-A NEON + VFPv4 on 32-bit
 * ARM). Everything here is static inline and forced inline, so each file
 * compiles it for its own target and the constant arguments (bit widths,
 * block sizes, lane numbers) fold away. */
#ifndef SLIMKV_NEON_COMMON_H
#define SLIMKV_NEON_COMMON_H

#include <arm_neon.h>
#include <string.h>

#include "kernels.h"

#define NEON_INLINE static inline __attribute__((always_inline))

/* ---- one kernel source for AArch64 and AArch32 ----
 * The kernels call the neon_* helpers below where AArch64 has an
 * instruction that AArch32 NEON lacks; on aarch64 each helper is the
 * AArch64 intrinsic itself (the same code as before), on AArch32 a short
 * portable sequence. What AArch32 lacks:
 *   - across-vector and pairwise-quad operations (ADDV, MAXV, FADDP q),
 *     ZIP1/ZIP2/UZP1 (AArch32 has the two-result VZIP/VUZP), TBL on a
 *     q register, FMLA by lane of a q register, vector FDIV and FSQRT,
 *     FCVTNU (round-to-nearest conversion);
 *   - IEEE behaviour: AArch32 NEON arithmetic always runs with the
 *     "standard FPSCR value", flush-to-zero and default NaN (ARM ARM,
 *     A2.7.3). The fp16 conversions and the min/max of packing must be
 *     bit-exact with the oracle (subnormal halves, NaN payloads, the sign
 *     of zero), so on AArch32 they are integer operations (the oracle's
 *     arithmetic, simd/format_math.h) and exact divisions are VFP scalar
 *     ones (VFP follows the real FPSCR: no flush on Linux). Scores and V
 *     sums stay NEON float: a flushed subnormal term is below any
 *     tolerance of theirs. */
#if defined(__aarch64__)
#define NEON_A64 1
#elif !defined(__ARM_FEATURE_FMA)
#error "32-bit ARM NEON kernels need VFPv4 (FMA): build them with -mfpu=neon-vfpv4 (the Makefile does)"
#endif

/* SLEEF's 1-ulp expf on 4 lanes. */
#ifdef NEON_A64
#define neon_sleef_expf4 Sleef_expf4_u10advsimd
#else
#define neon_sleef_expf4 Sleef_expf4_u10neonvfpv4
#endif

/* v0 + v1 + v2 + v3 as (v0 + v1) + (v2 + v3), FADDP's order. */
NEON_INLINE float neon_addv_f32(float32x4_t v)
{
#ifdef NEON_A64
    return vaddvq_f32(v);
#else
    float32x2_t p = vpadd_f32(vget_low_f32(v), vget_high_f32(v));
    return vget_lane_f32(vpadd_f32(p, p), 0);
#endif
}

/* {a0 + a1, a2 + a3, b0 + b1, b2 + b3} */
NEON_INLINE float32x4_t neon_paddq_f32(float32x4_t a, float32x4_t b)
{
#ifdef NEON_A64
    return vpaddq_f32(a, b);
#else
    return vcombine_f32(vpadd_f32(vget_low_f32(a), vget_high_f32(a)), vpadd_f32(vget_low_f32(b), vget_high_f32(b)));
#endif
}

/* Largest and smallest lane. On AArch32 by VFP compares (exact, no flush);
 * a NaN lane is skipped there (inputs are finite). */
NEON_INLINE float neon_maxv_f32(float32x4_t v)
{
#ifdef NEON_A64
    return vmaxvq_f32(v);
#else
    float x[4];
    vst1q_f32(x, v);
    float r = x[0];
    for (int i = 1; i < 4; i++)
        r = x[i] > r ? x[i] : r;
    return r;
#endif
}

NEON_INLINE float neon_minv_f32(float32x4_t v)
{
#ifdef NEON_A64
    return vminvq_f32(v);
#else
    float x[4];
    vst1q_f32(x, v);
    float r = x[0];
    for (int i = 1; i < 4; i++)
        r = x[i] < r ? x[i] : r;
    return r;
#endif
}

#ifndef NEON_A64
/* A signed integer that orders finite floats as IEEE does, except that
 * -0 sorts below +0: negative floats get their magnitude bits flipped. */
NEON_INLINE int32x4_t neon_order_key(float32x4_t x)
{
    int32x4_t i = vreinterpretq_s32_f32(x);
    return veorq_s32(i, vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_s32(vshrq_n_s32(i, 31)), 1)));
}
#endif

/* Lane masks of a < b and a > b, exact IEEE for finite values (subnormals
 * included, -0 == +0); on AArch32 integer compares of neon_order_key. */
NEON_INLINE uint32x4_t neon_clt_f32(float32x4_t a, float32x4_t b)
{
#ifdef NEON_A64
    return vcltq_f32(a, b);
#else
    uint32x4_t zeros = vceqq_u32(vandq_u32(vorrq_u32(vreinterpretq_u32_f32(a), vreinterpretq_u32_f32(b)),
                                           vdupq_n_u32(0x7fffffffu)),
                                 vdupq_n_u32(0));
    return vbicq_u32(vcltq_s32(neon_order_key(a), neon_order_key(b)), zeros);
#endif
}

NEON_INLINE uint32x4_t neon_cgt_f32(float32x4_t a, float32x4_t b)
{
    return neon_clt_f32(b, a);
}

/* Lane-wise min / max whose nonzero results are exact (FMIN/FMAX; on
 * AArch32 the integer order, so subnormals are not flushed). The sign of a
 * zero result may differ from a sequential scan: callers fix zeros. */
NEON_INLINE float32x4_t neon_min_f32(float32x4_t a, float32x4_t b)
{
#ifdef NEON_A64
    return vminq_f32(a, b);
#else
    return vbslq_f32(vcltq_s32(neon_order_key(a), neon_order_key(b)), a, b);
#endif
}

NEON_INLINE float32x4_t neon_max_f32(float32x4_t a, float32x4_t b)
{
#ifdef NEON_A64
    return vmaxq_f32(a, b);
#else
    return vbslq_f32(vcgtq_s32(neon_order_key(a), neon_order_key(b)), a, b);
#endif
}

/* a / b lane-wise, IEEE-rounded (AArch32: four VFP divisions). */
NEON_INLINE float32x4_t neon_div_f32(float32x4_t a, float32x4_t b)
{
#ifdef NEON_A64
    return vdivq_f32(a, b);
#else
    float x[4], y[4];
    vst1q_f32(x, a);
    vst1q_f32(y, b);
    for (int i = 0; i < 4; i++)
        x[i] /= y[i];
    return vld1q_f32(x);
#endif
}

/* IEEE square root of one float, without sqrtf's errno path (AArch32:
 * VFP VSQRT, which follows the real FPSCR). */
NEON_INLINE float neon_sqrt1_f32(float x)
{
#ifdef NEON_A64
    return vget_lane_f32(vsqrt_f32(vdup_n_f32(x)), 0);
#else
    float r;
    __asm__("vsqrt.f32 %0, %1" : "=t"(r) : "t"(x));
    return r;
#endif
}

/* Lanes equal to zero. Callers pass normal floats or zeros (a subnormal
 * would compare equal to zero on AArch32). */
NEON_INLINE uint32x4_t neon_ceqz_f32(float32x4_t x)
{
#ifdef NEON_A64
    return vceqzq_f32(x);
#else
    return vceqq_f32(x, vdupq_n_f32(0.0f));
#endif
}

/* clamp(rint(x), 0, top) as uint32 (round to nearest even, NaN -> 0):
 * FCVTNU saturates negatives to 0. AArch32 has no rounding conversion:
 * clamp first, then 2^23 added and taken away rounds to an integer in the
 * NEON rounding mode (nearest even, always). */
NEON_INLINE uint32x4_t neon_round_clamp_u32(float32x4_t x, uint32x4_t top)
{
#ifdef NEON_A64
    return vminq_u32(vcvtnq_u32_f32(x), top);
#else
    const float32x4_t magic = vdupq_n_f32(0x1p23f);
    float32x4_t c = vminq_f32(vmaxq_f32(x, vdupq_n_f32(0.0f)), vcvtq_f32_u32(top));
    return vcvtq_u32_f32(vsubq_f32(vaddq_f32(c, magic), magic));
#endif
}

/* ZIP1/ZIP2 of a and b as one pair, and UZP1 (AArch32: VZIP, VUZP). */
NEON_INLINE uint8x16x2_t neon_zip_u8(uint8x16_t a, uint8x16_t b)
{
#ifdef NEON_A64
    uint8x16x2_t r = {{vzip1q_u8(a, b), vzip2q_u8(a, b)}};
    return r;
#else
    return vzipq_u8(a, b);
#endif
}

NEON_INLINE uint8x8x2_t neon_zip_u8x8(uint8x8_t a, uint8x8_t b)
{
#ifdef NEON_A64
    uint8x8x2_t r = {{vzip1_u8(a, b), vzip2_u8(a, b)}};
    return r;
#else
    return vzip_u8(a, b);
#endif
}

NEON_INLINE uint16x8x2_t neon_zip_u16(uint16x8_t a, uint16x8_t b)
{
#ifdef NEON_A64
    uint16x8x2_t r = {{vzip1q_u16(a, b), vzip2q_u16(a, b)}};
    return r;
#else
    return vzipq_u16(a, b);
#endif
}

NEON_INLINE uint16x8_t neon_uzp1_u16(uint16x8_t a, uint16x8_t b)
{
#ifdef NEON_A64
    return vuzp1q_u16(a, b);
#else
    return vuzpq_u16(a, b).val[0];
#endif
}

NEON_INLINE uint8x16_t neon_uzp1_u8(uint8x16_t a, uint8x16_t b)
{
#ifdef NEON_A64
    return vuzp1q_u8(a, b);
#else
    return vuzpq_u8(a, b).val[0];
#endif
}

/* table[idx[i]] per byte, 0 where idx[i] > 15 (TBL; AArch32: VTBL on the halves). */
NEON_INLINE uint8x16_t neon_tbl_u8(uint8x16_t table, uint8x16_t idx)
{
#ifdef NEON_A64
    return vqtbl1q_u8(table, idx);
#else
    uint8x8x2_t t = {{vget_low_u8(table), vget_high_u8(table)}};
    return vcombine_u8(vtbl2_u8(t, vget_low_u8(idx)), vtbl2_u8(t, vget_high_u8(idx)));
#endif
}

/* acc + x * v[lane], lane an immediate 0..3 (AArch32: VFMA with the lane duplicated). */
#ifdef NEON_A64
#define neon_fma_laneq_f32(acc, x, v, lane) vfmaq_laneq_f32(acc, x, v, lane)
#else
#define neon_fma_laneq_f32(acc, x, v, lane)                                                              \
    vfmaq_f32(acc, x, vdupq_lane_f32((lane) < 2 ? vget_low_f32(v) : vget_high_f32(v), (lane) & 1))
#endif

/* acc + x * w */
NEON_INLINE float32x4_t neon_fma_n_f32(float32x4_t acc, float32x4_t x, float w)
{
#ifdef NEON_A64
    return vfmaq_n_f32(acc, x, w);
#else
    return vfmaq_f32(acc, x, vdupq_n_f32(w));
#endif
}

/* ---- fp16 <-> f32, bit-exact with the oracle (simd/format_math.h) ----
 * AArch64: FCVTL/FCVTN (round to nearest even, subnormals kept: FPCR.FZ is
 * clear on Linux, NaNs quietened with their payload). AArch32 NEON's VCVT
 * would flush subnormal halves and replace NaNs by the default NaN, so
 * there the oracle's integer arithmetic, 4 lanes at a time. */
NEON_INLINE float32x4_t neon_f16x4_to_f32(uint16x4_t h)
{
#ifdef NEON_A64
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
#else
    uint32x4_t x = vmovl_u16(h);
    uint32x4_t sign = vshlq_n_u32(vandq_u32(x, vdupq_n_u32(0x8000u)), 16);
    uint32x4_t abs = vandq_u32(x, vdupq_n_u32(0x7fffu));
    uint32x4_t exp = vshrq_n_u32(abs, 10);
    uint32x4_t normal = vaddq_u32(vshlq_n_u32(abs, 13), vdupq_n_u32(112u << 23)); /* rebias 15 -> 127 */
    uint32x4_t quiet = vandq_u32(vtstq_u32(abs, vdupq_n_u32(0x3ffu)), vdupq_n_u32(0x400000u));
    uint32x4_t special = vorrq_u32(vorrq_u32(vshlq_n_u32(abs, 13), vdupq_n_u32(0x7f800000u)), quiet);
    /* subnormal: mant * 2^-24, exact and a normal float */
    uint32x4_t sub = vreinterpretq_u32_f32(vmulq_f32(vcvtq_f32_u32(abs), vdupq_n_f32(0x1p-24f)));
    uint32x4_t r = vbslq_u32(vceqq_u32(exp, vdupq_n_u32(0)), sub, normal);
    r = vbslq_u32(vceqq_u32(exp, vdupq_n_u32(0x1f)), special, r);
    return vreinterpretq_f32_u32(vorrq_u32(r, sign));
#endif
}

NEON_INLINE uint16x4_t neon_f32_to_f16x4(float32x4_t f)
{
#ifdef NEON_A64
    return vreinterpret_u16_f16(vcvt_f16_f32(f));
#else
    uint32x4_t x = vreinterpretq_u32_f32(f);
    uint32x4_t sign = vandq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(0x8000u));
    uint32x4_t abs = vandq_u32(x, vdupq_n_u32(0x7fffffffu));
    /* normal: drop 13 bits rounding to nearest even, rebias 127 -> 15 */
    uint32x4_t lsb = vandq_u32(vshrq_n_u32(abs, 13), vdupq_n_u32(1));
    uint32x4_t normal = vsubq_u32(vshrq_n_u32(vaddq_u32(abs, vaddq_u32(lsb, vdupq_n_u32(0xfffu))), 13),
                                  vdupq_n_u32(112u << 10));
    /* subnormal half (2^-25 <= |f| < 2^-14): mant >> shift, shift = 126 - exp in 14 .. 24, nearest even */
    uint32x4_t mant = vorrq_u32(vandq_u32(abs, vdupq_n_u32(0x7fffffu)), vdupq_n_u32(0x800000u));
    int32x4_t shift = vsubq_s32(vdupq_n_s32(126), vreinterpretq_s32_u32(vshrq_n_u32(abs, 23)));
    shift = vminq_s32(vmaxq_s32(shift, vdupq_n_s32(14)), vdupq_n_s32(24)); /* lanes outside use other results */
    int32x4_t right = vnegq_s32(shift);
    uint32x4_t half_lsb = vandq_u32(vshlq_u32(mant, right), vdupq_n_u32(1));
    uint32x4_t mid_less = vsubq_u32(vshlq_u32(vdupq_n_u32(1), vsubq_s32(shift, vdupq_n_s32(1))), vdupq_n_u32(1));
    uint32x4_t sub = vshlq_u32(vaddq_u32(mant, vaddq_u32(mid_less, half_lsb)), right);
    uint32x4_t nan = vorrq_u32(vdupq_n_u32(0x7e00u), vandq_u32(vshrq_n_u32(abs, 13), vdupq_n_u32(0x3ffu)));
    uint32x4_t r = vbslq_u32(vcltq_u32(abs, vdupq_n_u32(0x38800000u)), sub, normal);
    r = vbslq_u32(vcltq_u32(abs, vdupq_n_u32(0x33000000u)), vdupq_n_u32(0), r);
    r = vbslq_u32(vcgeq_u32(abs, vdupq_n_u32(0x477ff000u)), vdupq_n_u32(0x7c00u), r); /* >= 65520: Inf */
    r = vbslq_u32(vcgtq_u32(abs, vdupq_n_u32(0x7f800000u)), nan, r);
    return vmovn_u32(vorrq_u32(r, sign));
#endif
}

/* 8 halves <-> 8 floats (lo: lanes 0..3, hi: 4..7). */
NEON_INLINE uint16x8_t neon_f32x8_to_f16(float32x4_t lo, float32x4_t hi)
{
#ifdef NEON_A64
    return vreinterpretq_u16_f16(vcvt_high_f16_f32(vcvt_f16_f32(lo), hi));
#else
    return vcombine_u16(neon_f32_to_f16x4(lo), neon_f32_to_f16x4(hi));
#endif
}

NEON_INLINE float32x4_t neon_f16x8_to_f32_lo(uint16x8_t h)
{
    return neon_f16x4_to_f32(vget_low_u16(h));
}

NEON_INLINE float32x4_t neon_f16x8_to_f32_hi(uint16x8_t h)
{
#ifdef NEON_A64
    return vcvt_high_f32_f16(vreinterpretq_f16_u16(h));
#else
    return neon_f16x4_to_f32(vget_high_u16(h));
#endif
}

/* Queries (or weight rows) served together from one pass over a block: the
 * usual GQA group, and 16 accumulators that leave room in 32 registers. */
#define NEON_QUERY_BLOCK 4
/* Tokens of a V block whose folded weights are prepared at once. */
#define NEON_V_CHUNK 64

/* The dot-product table ("neon-dotprod"): the NEON table with the quantized
 * score_k / accum_v and their fused decode replaced. */
SLIMKV_HIDDEN void slimkv_kernels_use_dotprod_neon(slimkv_kernels *k);

/* Per-format kernels shared by both NEON tables' fused bodies: the dense
 * formats (index: format - SLIMKV_F32, kernels_neon.c) and SparK's scores
 * (index: format, spark_neon.c). */
SLIMKV_HIDDEN extern const slimkv_score_k_fn slimkv_dense_score_k_neon[3];
SLIMKV_HIDDEN extern const slimkv_accum_v_fn slimkv_dense_accum_v_neon[3];
SLIMKV_HIDDEN extern const slimkv_score_spark_fn slimkv_spark_score_neon[SLIMKV_FORMAT_COUNT];

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
    return neon_f16x4_to_f32(vreinterpret_u16_u8(vld1_u8(p)));
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

/* q3 codes 0..7: the low field `low` (bit 2 clear) with bit `hj` of the
 * high-plane bytes `high` as bit 2 (a shift and a bit insert). */
NEON_INLINE uint8x16_t add_high_bit(uint8x16_t low, uint8x16_t high, int hj)
{
    uint8x16_t h = hj == 2 ? high : vshlq_u8(high, vdupq_n_s8((int8_t)(2 - hj)));
    return vbslq_u8(vdupq_n_u8(4), h, low);
}

/* 16 codes (0..255) as four float vectors. Zero-extension by zipping with
 * zeros rather than UXTL of vget_low: GCC spills a vld4 result to the stack
 * to take the low half of one of its registers. */
NEON_INLINE void widen_codes_f32(uint8x16_t x, float32x4_t f[4])
{
    uint8x16x2_t b = neon_zip_u8(x, vdupq_n_u8(0));
    uint16x8_t z16 = vdupq_n_u16(0);
    uint16x8x2_t lo = neon_zip_u16(vreinterpretq_u16_u8(b.val[0]), z16);
    uint16x8x2_t hi = neon_zip_u16(vreinterpretq_u16_u8(b.val[1]), z16);
    f[0] = vcvtq_f32_u32(vreinterpretq_u32_u16(lo.val[0]));
    f[1] = vcvtq_f32_u32(vreinterpretq_u32_u16(lo.val[1]));
    f[2] = vcvtq_f32_u32(vreinterpretq_u32_u16(hi.val[0]));
    f[3] = vcvtq_f32_u32(vreinterpretq_u32_u16(hi.val[1]));
}

/* acc + x * v[lane]: the lane must be an immediate, so switch on it (the
 * switch folds away when the caller's loop is unrolled). */
NEON_INLINE float32x4_t fma_lane(float32x4_t acc, float32x4_t x, float32x4_t v, int lane)
{
    switch (lane) {
    case 0: return neon_fma_laneq_f32(acc, x, v, 0);
    case 1: return neon_fma_laneq_f32(acc, x, v, 1);
    case 2: return neon_fma_laneq_f32(acc, x, v, 2);
    default: return neon_fma_laneq_f32(acc, x, v, 3);
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
            float32x4_t sc = neon_f16x4_to_f32(vld1_u16(sh + t));
            float32x4_t mn = neon_f16x4_to_f32(vld1_u16(mh + t));
            vst1q_f32(fw[i] + t, vmulq_f32(wv, sc));
            b = vfmaq_f32(b, wv, mn);
        }
        bias[i] = neon_addv_f32(b);
    }
}

#endif /* SLIMKV_NEON_COMMON_H */
