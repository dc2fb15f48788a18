/* NEON kernel bodies, ARMv8.0-A AdvSIMD baseline (every aarch64 CPU); the
 * same source builds for 32-bit ARM (ARMv7-A NEON + VFPv4) through the
 * neon_* helpers of neon_common.h.
 *
 * Packing and conversions repeat the oracle's operations in the oracle's
 * order, so their bytes match simd/scalar.c exactly. Scores and V sums are
 * float: dense rows are FMA'd directly, quantized codes are widened to float
 * and FMA'd with the query (weights) folded with the group's scales. On CPUs
 * with the ARMv8.2 dot product, the "neon-dotprod" table takes the quantized
 * score_k / accum_v (and their fused decode) from kernels_dotprod_neon.c. */
#include <math.h>

#include <sleef.h>

#include "neon_common.h"
#include "tile_loop.h"
#include "spark_neon.h"

/* ---- fp16 / bf16 conversions ---- */

/* The oracle's rules (round to nearest even, subnormals kept, NaNs quiet
 * with their payload): see neon_f32_to_f16x4. */
static void f32_to_f16_neon(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        vst1q_u16(dst + i, neon_f32x8_to_f16(vld1q_f32(src + i), vld1q_f32(src + i + 4)));
    for (; i < n; i++)
        dst[i] = slimkv_f32_to_f16(src[i]);
}

static void f16_to_f32_neon(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t h = vld1q_u16(src + i);
        vst1q_f32(dst + i, neon_f16x8_to_f32_lo(h));
        vst1q_f32(dst + i + 4, neon_f16x8_to_f32_hi(h));
    }
    for (; i < n; i++)
        dst[i] = slimkv_f16_to_f32(src[i]);
}

/* bf16 has no ARMv8.0 instruction: the oracle's integer rounding, 4 lanes. */
NEON_INLINE uint16x4_t f32_to_bf16x4(float32x4_t f)
{
    uint32x4_t x = vreinterpretq_u32_f32(f);
    uint32x4_t bias = vaddq_u32(vandq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(1)), vdupq_n_u32(0x7fff));
    uint16x4_t rounded = vaddhn_u32(x, bias); /* (x + bias) >> 16, wrapping as uint32 does */
    uint16x4_t quiet_nan = vorr_u16(vshrn_n_u32(x, 16), vdup_n_u16(0x40));
    uint32x4_t is_nan = vcgtq_u32(vandq_u32(x, vdupq_n_u32(0x7fffffffu)), vdupq_n_u32(0x7f800000u));
    return vbsl_u16(vmovn_u32(is_nan), quiet_nan, rounded);
}

static void f32_to_bf16_neon(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1_u16(dst + i, f32_to_bf16x4(vld1q_f32(src + i)));
    for (; i < n; i++)
        dst[i] = slimkv_f32_to_bf16(src[i]);
}

/* ---- dense rows: f32, f16, bf16 elements ---- */

NEON_INLINE float32x4_t load_elems4(slimkv_format fmt, const void *base, size_t i)
{
    if (fmt == SLIMKV_F32)
        return vld1q_f32((const float *)base + i);
    uint16x4_t h = vld1_u16((const uint16_t *)base + i);
    if (fmt == SLIMKV_F16)
        return neon_f16x4_to_f32(h);
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16)); /* bf16: the high half of a float */
}

/* count (0..4) elements, zero-filled: channel tails never read past a row. */
NEON_INLINE float32x4_t load_elems_partial(slimkv_format fmt, const void *base, size_t i, int count)
{
    if (count >= 4)
        return load_elems4(fmt, base, i);
    float tmp[4] = {0};
    for (int k = 0; k < count; k++) {
        if (fmt == SLIMKV_F32)
            tmp[k] = ((const float *)base)[i + k];
        else if (fmt == SLIMKV_F16)
            tmp[k] = slimkv_f16_to_f32(((const uint16_t *)base)[i + k]);
        else
            tmp[k] = slimkv_bf16_to_f32(((const uint16_t *)base)[i + k]);
    }
    return vld1q_f32(tmp);
}

NEON_INLINE float32x4_t load_f32_partial(const float *p, int count)
{
    return load_elems_partial(SLIMKV_F32, p, 0, count);
}

/* acc[i][k] += q_i[c .. c+cnt) * row_k[c .. c+cnt) lane-wise, cnt <= 4. */
NEON_INLINE void score_dense_step(slimkv_format fmt, const void *rows, const size_t row[4], int c, int cnt,
                                  const float *q, int d, const int nq, float32x4_t acc[][4])
{
    float32x4_t kv[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        kv[k] = load_elems_partial(fmt, rows, row[k] + c, cnt);
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        float32x4_t qv = load_f32_partial(q + (size_t)i * d + c, cnt);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            acc[i][k] = vfmaq_f32(acc[i][k], qv, kv[k]);
    }
}

/* Scores of nq (<= 4) queries against n rows, 4 rows at a time: 16 lane-wise
 * accumulators, then one pairwise-add tree per query gives 4 adjacent scores. */
NEON_INLINE void score_dense_block(slimkv_format fmt, const void *rows, size_t stride, int n, int d, const float *q,
                                   const int nq, float *s, int lds)
{
    for (int t0 = 0; t0 < n; t0 += 4) {
        int nt = n - t0 < 4 ? n - t0 : 4;
        size_t row[4];
        for (int k = 0; k < 4; k++) /* a short last block repeats its last row */
            row[k] = (size_t)(t0 + (k < nt ? k : nt - 1)) * stride;
        float32x4_t acc[NEON_QUERY_BLOCK][4];
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++)
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                acc[i][k] = vdupq_n_f32(0.0f);
        int c = 0;
        for (; c + 4 <= d; c += 4)
            score_dense_step(fmt, rows, row, c, 4, q, d, nq, acc);
        if (c < d) /* d % 4 channels, zero-padded */
            score_dense_step(fmt, rows, row, c, d - c, q, d, nq, acc);
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++) {
            float32x4_t sums[1] = {
                neon_paddq_f32(neon_paddq_f32(acc[i][0], acc[i][1]), neon_paddq_f32(acc[i][2], acc[i][3]))};
            store_f32_vecs(s + (size_t)i * lds + t0, nt, 1, sums);
        }
    }
}

/* acc[i][c0 .. c0+nc) += sum_t w[i][t] * row_t[c], nc <= 16 channels held in
 * 4 vectors per query; tokens 4 at a time with the weights as lanes. */
NEON_INLINE void accum_dense_cols(slimkv_format fmt, const void *rows, size_t stride, int n, int d, const float *w,
                                  int ldw, const int nq, float *acc, int c0, int nc)
{
    float32x4_t a[NEON_QUERY_BLOCK][4];
    int cnt[4];
    for (int v = 0; v < 4; v++)
        cnt[v] = nc - 4 * v < 0 ? 0 : nc - 4 * v > 4 ? 4 : nc - 4 * v;
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++)
        load_f32_vecs(acc + (size_t)i * d + c0, nc, 4, a[i]);
    int t = 0;
    for (; t + 4 <= n; t += 4) {
        float32x4_t wv[NEON_QUERY_BLOCK];
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++)
            wv[i] = vld1q_f32(w + (size_t)i * ldw + t);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            float32x4_t x[4];
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                x[v] = load_elems_partial(fmt, rows, (size_t)(t + k) * stride + c0 + 4 * v, cnt[v]);
#pragma GCC unroll 4
            for (int i = 0; i < nq; i++)
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++)
                    a[i][v] = fma_lane(a[i][v], x[v], wv[i], k);
        }
    }
    for (; t < n; t++) {
        float32x4_t x[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            x[v] = load_elems_partial(fmt, rows, (size_t)t * stride + c0 + 4 * v, cnt[v]);
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                a[i][v] = neon_fma_n_f32(a[i][v], x[v], w[(size_t)i * ldw + t]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++)
        store_f32_vecs(acc + (size_t)i * d + c0, nc, 4, a[i]);
}

NEON_INLINE void accum_dense_block(slimkv_format fmt, const void *rows, size_t stride, int n, int d, const float *w,
                                   int ldw, const int nq, float *acc)
{
    int c0 = 0;
    for (; c0 + 16 <= d; c0 += 16)
        accum_dense_cols(fmt, rows, stride, n, d, w, ldw, nq, acc, c0, 16);
    if (c0 < d)
        accum_dense_cols(fmt, rows, stride, n, d, w, ldw, nq, acc, c0, d - c0);
}

NEON_INLINE void score_dense(slimkv_format fmt, const void *rows, size_t stride, int n, int d, const float *q,
                             int nq, float *s, int lds)
{
#define SCORE_DENSE(B) score_dense_block(fmt, rows, stride, n, d, q + (size_t)i0 * d, B, s + (size_t)i0 * lds, lds)
    FOR_QUERY_BLOCKS(nq, i0, SCORE_DENSE)
#undef SCORE_DENSE
}

NEON_INLINE void accum_dense(slimkv_format fmt, const void *rows, size_t stride, int n, int d, const float *w,
                             int ldw, int nq, float *acc)
{
#define ACCUM_DENSE(B) accum_dense_block(fmt, rows, stride, n, d, w + (size_t)i0 * ldw, ldw, B, acc + (size_t)i0 * d)
    FOR_QUERY_BLOCKS(nq, i0, ACCUM_DENSE)
#undef ACCUM_DENSE
}

static void slimkv_score_rows_f32_neon(const void *rows, size_t stride, int n, int d, const float *q, int nq,
                                       float *s, int lds)
{
    score_dense(SLIMKV_F32, rows, stride, n, d, q, nq, s, lds);
}

static void slimkv_score_rows_f16_neon(const void *rows, size_t stride, int n, int d, const float *q, int nq,
                                       float *s, int lds)
{
    score_dense(SLIMKV_F16, rows, stride, n, d, q, nq, s, lds);
}

static void slimkv_accum_rows_f32_neon(const void *rows, size_t stride, int n, int d, const float *w, int ldw,
                                       int nq, float *acc)
{
    accum_dense(SLIMKV_F32, rows, stride, n, d, w, ldw, nq, acc);
}

static void slimkv_accum_rows_f16_neon(const void *rows, size_t stride, int n, int d, const float *w, int ldw,
                                       int nq, float *acc)
{
    accum_dense(SLIMKV_F16, rows, stride, n, d, w, ldw, nq, acc);
}


/* Stores n floats in a dense format. */
NEON_INLINE void store_elems(slimkv_format fmt, uint8_t *dst, const float *src, size_t n)
{
    if (fmt == SLIMKV_F32)
        memcpy(dst, src, n * sizeof(float)); /* bit copy, as the oracle's float stores */
    else if (fmt == SLIMKV_F16)
        f32_to_f16_neon(src, (uint16_t *)dst, n);
    else
        f32_to_bf16_neon(src, (uint16_t *)dst, n);
}

/* The dense group kernels on this file's row kernels (store_elems,
 * score_dense, accum_dense above), then the entry points of each format. */
#include "dense_groups.h"

static void slimkv_pack_k_f32_neon(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_F32, src, dk, g, group);
}

static void slimkv_pack_v_f32_neon(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_F32, src, dv, g, block, slot);
}

static void slimkv_score_k_f32_neon(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                    int lds)
{
    score_k_dense(SLIMKV_F32, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_f32_neon(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                    float *acc)
{
    accum_v_dense(SLIMKV_F32, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_f16_neon(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_F16, src, dk, g, group);
}

static void slimkv_pack_v_f16_neon(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_F16, src, dv, g, block, slot);
}

static void slimkv_score_k_f16_neon(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                    int lds)
{
    score_k_dense(SLIMKV_F16, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_f16_neon(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                    float *acc)
{
    accum_v_dense(SLIMKV_F16, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_bf16_neon(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_BF16, src, dk, g, group);
}

static void slimkv_pack_v_bf16_neon(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_BF16, src, dv, g, block, slot);
}

static void slimkv_score_k_bf16_neon(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                     int lds)
{
    score_k_dense(SLIMKV_BF16, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_bf16_neon(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                     float *acc)
{
    accum_v_dense(SLIMKV_BF16, block, dv, g, n, w, ldw, nq, acc);
}


/* ---- quantization (bit-exact with the oracle) ---- */

/* clamp(rint((x - m) * inv), 0, top) (neon_round_clamp_u32). Subtract,
 * then multiply: never fused. */
NEON_INLINE uint32x4_t quant_codes(float32x4_t x, float32x4_t m, float32x4_t inv, uint32x4_t top)
{
    return neon_round_clamp_u32(vmulq_f32(vsubq_f32(x, m), inv), top);
}

/* The same for one value (tails). */
NEON_INLINE uint32_t quant_code1(float x, float m, float inv, int bits)
{
    float r = rintf((x - m) * inv), top = (float)((1 << bits) - 1);
    r = r < 0.0f ? 0.0f : r;
    r = r > top ? top : r;
    return (uint32_t)r;
}

/* Per-channel KIVI parameters of one K quad (4 channels) over g tokens.
 * Min/max as compare-and-select in token order, exactly the oracle's
 * `v < lo ? v : lo` (FMIN could pick the other sign of zero). */
NEON_INLINE void k_quad_params(const float *src, int dk, int g, int bits, uint8_t *scale_out, uint8_t *min_out,
                               float32x4_t *m, float32x4_t *inv)
{
    float32x4_t lo = vld1q_f32(src), hi = lo;
    for (int t = 1; t < g; t++) {
        float32x4_t v = vld1q_f32(src + (size_t)t * dk);
        lo = vbslq_f32(neon_clt_f32(v, lo), v, lo);
        hi = vbslq_f32(neon_cgt_f32(v, hi), v, hi);
    }
    uint16x4_t sh = neon_f32_to_f16x4(neon_div_f32(vsubq_f32(hi, lo), vdupq_n_f32((float)((1 << bits) - 1))));
    uint16x4_t mh = neon_f32_to_f16x4(lo);
    vst1_u8(scale_out, vreinterpret_u8_u16(sh));
    vst1_u8(min_out, vreinterpret_u8_u16(mh));
    float32x4_t s = neon_f16x4_to_f32(sh);
    *m = neon_f16x4_to_f32(mh);
    *inv = vbslq_f32(neon_ceqz_f32(s), vdupq_n_f32(0.0f), neon_div_f32(vdupq_n_f32(1.0f), s));
}

/* Codes of one quad for 4 tokens as 16 bytes [t][c%4], the K lane order. */
NEON_INLINE uint8x16_t k_quad_codes4(const float *src, int dk, float32x4_t m, float32x4_t inv, uint32x4_t top)
{
    uint32x4_t c[4];
    for (int k = 0; k < 4; k++)
        c[k] = quant_codes(vld1q_f32(src + (size_t)k * dk), m, inv, top);
    uint16x8_t c01 = neon_uzp1_u16(vreinterpretq_u16_u32(c[0]), vreinterpretq_u16_u32(c[1]));
    uint16x8_t c23 = neon_uzp1_u16(vreinterpretq_u16_u32(c[2]), vreinterpretq_u16_u32(c[3]));
    return neon_uzp1_u8(vreinterpretq_u8_u16(c01), vreinterpretq_u8_u16(c23));
}

/* One byte plane at a time: the parameters of its 8/bits quads, then each
 * 4-token row of the plane ORed together from the quads' fields and stored
 * once. Every code byte is written, padding quads' bits as 0. q3: the planes
 * of its low 2 bits as q2's; a row of the high-bit plane holds 8 quads, the
 * 4 of an even low plane (stored with it) then those of the odd one (ORed in). */
NEON_INLINE void pack_k_quant(int bits, slimkv_format fmt, const float *src, int dk, int g, uint8_t *group)
{
    const int lbits = slimkv_plane_bits(bits), per = 8 / lbits, nquad = dk / 4, nplane = (nquad + per - 1) / per;
    uint8_t *scale_p = group + slimkv_k_params_offset(fmt, dk, g), *min_p = scale_p + 2 * (size_t)dk;
    uint8_t *high = group + slimkv_k_hi_plane_offset(dk, g); /* q3 only */
    uint32x4_t top = vdupq_n_u32((1u << bits) - 1);
    for (int p = 0; p < nplane; p++) {
        int in_plane = nquad - p * per < per ? nquad - p * per : per;
        float32x4_t m[4], inv[4];
#pragma GCC unroll 4
        for (int j = 0; j < per; j++)
            if (j < in_plane) {
                int quad = p * per + j;
                k_quad_params(src + 4 * quad, dk, g, bits, scale_p + 8 * (size_t)quad, min_p + 8 * (size_t)quad,
                              &m[j], &inv[j]);
            }
        for (int t = 0; t < g; t += 4) {
            uint8x16_t word = vdupq_n_u8(0), hword = vdupq_n_u8(0);
#pragma GCC unroll 4
            for (int j = 0; j < per; j++)
                if (j < in_plane) {
                    const float *x = src + (size_t)t * dk + 4 * (p * per + j);
                    uint8x16_t codes = k_quad_codes4(x, dk, m[j], inv[j], top);
                    if (bits == 3) { /* quad 4p + j: high bit at bit 4*(p%2) + j */
                        hword = vorrq_u8(hword, vshlq_u8(vshrq_n_u8(codes, 2), vdupq_n_s8((int8_t)(4 * (p % 2) + j))));
                        codes = vandq_u8(codes, vdupq_n_u8(3));
                    }
                    word = vorrq_u8(word, j == 0 ? codes : vshlq_u8(codes, vdupq_n_s8((int8_t)(lbits * j))));
                }
            vst1q_u8(group + ((size_t)p * g + t) * 4, word);
            if (bits == 3) {
                uint8_t *h = high + ((size_t)(p / 2) * g + t) * 4;
                vst1q_u8(h, p % 2 ? vorrq_u8(vld1q_u8(h), hword) : hword);
            }
        }
    }
}

/* The first element equal to v: the oracle keeps the first extreme it meets,
 * which matters only for the sign of a zero. */
static float first_equal(const float *x, int n, float v)
{
    for (int i = 0; i < n; i++)
        if (x[i] == v)
            return x[i];
    return v;
}

/* Min and max of n values, bit-identical to the oracle's sequential scan:
 * the values agree whatever the order; zeros get the oracle's sign. */
static void min_max_exact(const float *x, int n, float *lo_out, float *hi_out)
{
    float32x4_t lo4 = vdupq_n_f32(x[0]), hi4 = lo4;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        lo4 = neon_min_f32(lo4, v);
        hi4 = neon_max_f32(hi4, v);
    }
    float lo = neon_minv_f32(lo4), hi = neon_maxv_f32(hi4);
    for (; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    *lo_out = lo == 0.0f ? first_equal(x, n, lo) : lo;
    *hi_out = hi == 0.0f ? first_equal(x, n, hi) : hi;
}

/* One token into slot `slot`: its code field sits at bit 8*(slot%4) +
 * bits*((slot/4) % per) of the 32-bit lane of each channel, so 4 channels
 * are one load, bit-select, store; other slots' bits are kept. */
NEON_INLINE void pack_v_quant(int bits, slimkv_format fmt, const float *src, int dv, int g, uint8_t *block, int slot)
{
    const int lbits = slimkv_plane_bits(bits), per = 8 / lbits, nvg = (dv + g - 1) / g, quad = slot / 4;
    uint8_t *scale_p = block + slimkv_v_params_offset(fmt, dv, g), *min_p = scale_p + 2 * (size_t)g * nvg;
    uint8_t *codes = block + (size_t)(quad / per) * dv * 4;
    int pos = 8 * (slot % 4) + lbits * (quad % per);
    uint32_t mask = (1u << lbits) - 1;
    uint32x4_t field = vdupq_n_u32(mask << pos), top = vdupq_n_u32((1u << bits) - 1);
    int32x4_t shift = vdupq_n_s32(pos);
    /* q3: the high bit in the 1-bit plane, at bit 8*(slot%4) + quad%8 of the lane
     * (the low field's copy of code bit 2 falls outside `field`) */
    uint8_t *hcodes = block + slimkv_v_hi_plane_offset(dv, g) + (size_t)(quad / 8) * dv * 4;
    int hpos = 8 * (slot % 4) + quad % 8;
    uint32x4_t hfield = vdupq_n_u32(1u << hpos);
    int32x4_t hshift = vdupq_n_s32(hpos - 2);
    for (int j = 0; j < nvg; j++) {
        int c0 = j * g, cn = dv - c0 < g ? dv - c0 : g;
        float lo, hi;
        min_max_exact(src + c0, cn, &lo, &hi);
        uint16_t sh = slimkv_f32_to_f16((hi - lo) / (float)((1 << bits) - 1)), mh = slimkv_f32_to_f16(lo);
        store_u16(scale_p + 2 * ((size_t)slot * nvg + j), sh);
        store_u16(min_p + 2 * ((size_t)slot * nvg + j), mh);
        float m = slimkv_f16_to_f32(mh), s = slimkv_f16_to_f32(sh), inv = s == 0.0f ? 0.0f : 1.0f / s;
        float32x4_t m4 = vdupq_n_f32(m), inv4 = vdupq_n_f32(inv);
        int c = c0;
        for (; c + 4 <= c0 + cn; c += 4) {
            uint32x4_t code = quant_codes(vld1q_f32(src + c), m4, inv4, top);
            uint8_t *lane = codes + (size_t)c * 4;
            uint32x4_t words = vreinterpretq_u32_u8(vld1q_u8(lane));
            words = vbslq_u32(field, vshlq_u32(code, shift), words);
            vst1q_u8(lane, vreinterpretq_u8_u32(words));
            if (bits == 3) {
                uint8_t *hlane = hcodes + (size_t)c * 4;
                uint32x4_t hwords = vreinterpretq_u32_u8(vld1q_u8(hlane));
                hwords = vbslq_u32(hfield, vshlq_u32(code, hshift), hwords);
                vst1q_u8(hlane, vreinterpretq_u8_u32(hwords));
            }
        }
        for (; c < c0 + cn; c++) {
            uint8_t *b = codes + (size_t)c * 4 + slot % 4;
            int bit = lbits * (quad % per);
            uint32_t code = quant_code1(src[c], m, inv, bits);
            *b = (uint8_t)((*b & ~(mask << bit)) | ((code & mask) << bit));
            if (bits == 3) {
                uint8_t *hb = hcodes + (size_t)c * 4 + slot % 4;
                int hbit = quad % 8;
                *hb = (uint8_t)((*hb & ~(1u << hbit)) | ((code >> 2) << hbit));
            }
        }
    }
}

/* ---- quantized scores and V sums, float arithmetic ---- */

/* Scores of nq (<= 4) queries, 16 tokens at a time with tokens as lanes: a
 * 4-way de-interleaving load splits a plane row into the 4 channels of the
 * quad(s), whose codes are widened to float and FMA'd with the query folded
 * with the channel's scale (one lane of the folded quad). */
NEON_INLINE void score_k_quant_block(int bits, slimkv_format fmt, const uint8_t *group, int dk, int g, int n,
                                     const float *q, const int nq, float *s, int lds)
{
    const int lbits = slimkv_plane_bits(bits), per = 8 / lbits, nquad = dk / 4;
    const uint8_t *scale_p = group + slimkv_k_params_offset(fmt, dk, g), *min_p = scale_p + 2 * (size_t)dk;
    const uint8_t *high = group + slimkv_k_hi_plane_offset(dk, g); /* q3 only */
    float bias[NEON_QUERY_BLOCK]; /* sum_c q_c * min_c, the same for every token */
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        float32x4_t b = vdupq_n_f32(0.0f);
        for (int c = 0; c < dk; c += 4)
            b = vfmaq_f32(b, vld1q_f32(q + (size_t)i * dk + c), load_f16x4(min_p + 2 * (size_t)c));
        bias[i] = neon_addv_f32(b);
    }
    for (int t0 = 0; t0 < n; t0 += 16) {
        float32x4_t acc[NEON_QUERY_BLOCK][4];
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                acc[i][v] = vdupq_n_f32(0.0f);
        for (int quad = 0; quad < nquad; quad++) {
            /* one quad per pass: a q4/q2 plane is reloaded (from L1) for each of
             * its quads rather than kept live, which would spill accumulators */
            uint8x16x4_t raw = vld4q_u8(group + ((size_t)(quad / per) * g + t0) * 4); /* the group has g tokens */
            uint8x16_t code[4];
            if (bits == 3) { /* its high bits (the same rows of the 1-bit plane), then the high plane is dead */
                uint8x16x4_t hraw = vld4q_u8(high + ((size_t)(quad / 8) * g + t0) * 4);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++)
                    code[k] = add_high_bit(code_field(raw.val[k], 2, quad % per), hraw.val[k], quad % 8);
            } else {
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++)
                    code[k] = code_field(raw.val[k], bits, quad % per);
            }
            float32x4_t sc = load_f16x4(scale_p + 8 * (size_t)quad), fq[NEON_QUERY_BLOCK];
#pragma GCC unroll 4
            for (int i = 0; i < nq; i++)
                fq[i] = vmulq_f32(vld1q_f32(q + (size_t)i * dk + 4 * quad), sc);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                float32x4_t f[4];
                widen_codes_f32(code[k], f);
#pragma GCC unroll 4
                for (int i = 0; i < nq; i++)
#pragma GCC unroll 4
                    for (int v = 0; v < 4; v++)
                        acc[i][v] = fma_lane(acc[i][v], f[v], fq[i], k);
            }
        }
        int cnt = n - t0 < 16 ? n - t0 : 16;
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++) {
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                acc[i][v] = vaddq_f32(acc[i][v], vdupq_n_f32(bias[i]));
            store_f32_vecs(s + (size_t)i * lds + t0, cnt, 4, acc[i]);
        }
    }
}

/* V sums of nq (<= 4) weight rows for the channels [c0, c0 + nc) (nc <= 16)
 * of one channel group, tokens [t0, t0 + nt): a de-interleaving load splits
 * a token quad's row into its 4 tokens, whose codes are widened and FMA'd
 * with the folded weight of that token (one lane). */
NEON_INLINE void accum_v_quant_cols(int bits, const uint8_t *block, int dv, int g, int t0, int nt, const int nq,
                                    float fw[][NEON_V_CHUNK], const float *bias, float *acc, int c0, int nc)
{
    const int lbits = slimkv_plane_bits(bits), per = 8 / lbits;
    const uint8_t *high = block + slimkv_v_hi_plane_offset(dv, g); /* q3 only */
    float32x4_t a[NEON_QUERY_BLOCK][4];
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        load_f32_vecs(acc + (size_t)i * dv + c0, nc, 4, a[i]);
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            a[i][v] = vaddq_f32(a[i][v], vdupq_n_f32(bias[i]));
    }
    for (int u = 0; u < (nt + 3) / 4; u++) { /* token quads; weights past nt are 0 */
        int quad = t0 / 4 + u, j = quad % per;
        const uint8_t *row = block + ((size_t)(quad / per) * dv + c0) * 4;
        uint8x16x4_t raw;
        if (nc == 16) {
            raw = vld4q_u8(row);
        } else {
            uint8_t tmp[64] = {0};
            memcpy(tmp, row, (size_t)nc * 4);
            raw = vld4q_u8(tmp);
        }
        uint8x16_t code[4];
        if (bits == 3) { /* the high bits: the same channels' lanes of the 1-bit plane */
            const uint8_t *hrow = high + ((size_t)(quad / 8) * dv + c0) * 4;
            uint8x16x4_t hraw;
            if (nc == 16) {
                hraw = vld4q_u8(hrow);
            } else {
                uint8_t tmp[64] = {0};
                memcpy(tmp, hrow, (size_t)nc * 4);
                hraw = vld4q_u8(tmp);
            }
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                code[k] = add_high_bit(code_field(raw.val[k], 2, j), hraw.val[k], quad % 8);
        } else {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                code[k] = code_field(raw.val[k], bits, j);
        }
        float32x4_t wv[NEON_QUERY_BLOCK];
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++)
            wv[i] = vld1q_f32(fw[i] + 4 * u);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            float32x4_t f[4];
            widen_codes_f32(code[k], f);
#pragma GCC unroll 4
            for (int i = 0; i < nq; i++)
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++)
                    a[i][v] = fma_lane(a[i][v], f[v], wv[i], k);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++)
        store_f32_vecs(acc + (size_t)i * dv + c0, nc, 4, a[i]);
}

NEON_INLINE void accum_v_quant_block(int bits, slimkv_format fmt, const uint8_t *block, int dv, int g, int n,
                                     const float *w, int ldw, const int nq, float *acc)
{
    const int nvg = (dv + g - 1) / g;
    const uint8_t *scale_p = block + slimkv_v_params_offset(fmt, dv, g), *min_p = scale_p + 2 * (size_t)g * nvg;
    for (int t0 = 0; t0 < n; t0 += NEON_V_CHUNK) {
        int nt = n - t0 < NEON_V_CHUNK ? n - t0 : NEON_V_CHUNK;
        for (int j = 0; j < nvg; j++) {
            float fw[NEON_QUERY_BLOCK][NEON_V_CHUNK], bias[NEON_QUERY_BLOCK];
            fold_v_weights(scale_p, min_p, nvg, j, t0, nt, w, ldw, nq, fw, bias);
            int c_end = (j + 1) * g < dv ? (j + 1) * g : dv;
            int c = j * g;
            for (; c + 16 <= c_end; c += 16) /* full blocks, then the tail: separate call sites */
                accum_v_quant_cols(bits, block, dv, g, t0, nt, nq, fw, bias, acc, c, 16);
            if (c < c_end)
                accum_v_quant_cols(bits, block, dv, g, t0, nt, nq, fw, bias, acc, c, c_end - c);
        }
    }
}

NEON_INLINE void score_k_quant(int bits, slimkv_format fmt, const uint8_t *group, int dk, int g, int n,
                               const float *q, int nq, float *s, int lds)
{
#define SCORE_K_QUANT(B) score_k_quant_block(bits, fmt, group, dk, g, n, q + (size_t)i0 * dk, B, s + (size_t)i0 * lds, lds)
    FOR_QUERY_BLOCKS(nq, i0, SCORE_K_QUANT)
#undef SCORE_K_QUANT
}

NEON_INLINE void accum_v_quant(int bits, slimkv_format fmt, const uint8_t *block, int dv, int g, int n,
                               const float *w, int ldw, int nq, float *acc)
{
#define ACCUM_V_QUANT(B) accum_v_quant_block(bits, fmt, block, dv, g, n, w + (size_t)i0 * ldw, ldw, B, acc + (size_t)i0 * dv)
    FOR_QUERY_BLOCKS(nq, i0, ACCUM_V_QUANT)
#undef ACCUM_V_QUANT
}

static void slimkv_pack_k_q8_neon(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(8, SLIMKV_Q8, src, dk, g, group);
}

static void slimkv_pack_v_q8_neon(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(8, SLIMKV_Q8, src, dv, g, block, slot);
}

static void slimkv_score_k_q8_neon(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                   int lds)
{
    score_k_quant(8, SLIMKV_Q8, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q8_neon(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                   float *acc)
{
    accum_v_quant(8, SLIMKV_Q8, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q4_neon(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(4, SLIMKV_Q4, src, dk, g, group);
}

static void slimkv_pack_v_q4_neon(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(4, SLIMKV_Q4, src, dv, g, block, slot);
}

static void slimkv_score_k_q4_neon(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                   int lds)
{
    score_k_quant(4, SLIMKV_Q4, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q4_neon(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                   float *acc)
{
    accum_v_quant(4, SLIMKV_Q4, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q2_neon(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(2, SLIMKV_Q2, src, dk, g, group);
}

static void slimkv_pack_v_q2_neon(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(2, SLIMKV_Q2, src, dv, g, block, slot);
}

static void slimkv_score_k_q2_neon(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                   int lds)
{
    score_k_quant(2, SLIMKV_Q2, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q2_neon(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                   float *acc)
{
    accum_v_quant(2, SLIMKV_Q2, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q3_neon(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(3, SLIMKV_Q3, src, dk, g, group);
}

static void slimkv_pack_v_q3_neon(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(3, SLIMKV_Q3, src, dv, g, block, slot);
}

static void slimkv_score_k_q3_neon(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                   int lds)
{
    score_k_quant(3, SLIMKV_Q3, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q3_neon(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                   float *acc)
{
    accum_v_quant(3, SLIMKV_Q3, block, dv, g, n, w, ldw, nq, acc);
}


/* ---- softmax exponentials ---- */

/* SLEEF's 1-ulp expf, 4 lanes (AArch32: exp results below the smallest
 * normal float are flushed to 0 there, far below the sum); the tail is padded with -inf (exp = 0). */
float slimkv_exp_sum_neon(float *x, int n, float max)
{
    float32x4_t vmax = vdupq_n_f32(max), sum = vdupq_n_f32(0.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = neon_sleef_expf4(vsubq_f32(vld1q_f32(x + i), vmax));
        vst1q_f32(x + i, e);
        sum = vaddq_f32(sum, e);
    }
    if (i < n) {
        float tmp[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        memcpy(tmp, x + i, (size_t)(n - i) * sizeof(float));
        float32x4_t e = neon_sleef_expf4(vsubq_f32(vld1q_f32(tmp), vmax));
        vst1q_f32(tmp, e);
        memcpy(x + i, tmp, (size_t)(n - i) * sizeof(float));
        sum = vaddq_f32(sum, e);
    }
    return neon_addv_f32(sum);
}

float slimkv_max_f32_neon(const float *x, int n)
{
    float32x4_t m = vdupq_n_f32(-INFINITY);
    int i = 0;
    for (; i + 4 <= n; i += 4)
        m = vmaxq_f32(m, vld1q_f32(x + i));
    float r = neon_maxv_f32(m);
    for (; i < n; i++)
        r = x[i] > r ? x[i] : r;
    return r;
}

void slimkv_scale_f32_neon(float *x, int n, float a)
{
    int i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), a));
    for (; i < n; i++)
        x[i] *= a;
}

/* ---- Walsh-Hadamard rotation ---- */

/* Butterflies of strides 1 and 2 inside one register: lane j (bit h clear)
 * becomes x_j + x_{j+h}, lane j + h becomes x_j - x_{j+h}. */
static inline float32x4_t hadamard4(float32x4_t x)
{
    static const uint32_t odd[4] = {0, ~0u, 0, ~0u}, high[4] = {0, 0, ~0u, ~0u};
    float32x4_t p = vrev64q_f32(x);
    x = vbslq_f32(vld1q_u32(odd), vsubq_f32(p, x), vaddq_f32(x, p));
    p = vextq_f32(x, x, 2);
    return vbslq_f32(vld1q_u32(high), vsubq_f32(p, x), vaddq_f32(x, p));
}

static void slimkv_rotate_neon(float *x, int dim, const float *signs, int inverse)
{
    for (int c = 0; c < dim; c += 4) { /* dim >= 4 */
        float32x4_t v = vld1q_f32(x + c);
        vst1q_f32(x + c, hadamard4(inverse ? v : vmulq_f32(v, vld1q_f32(signs + c))));
    }
    for (int h = 4; h < dim; h *= 2)
        for (int i = 0; i < dim; i += 2 * h)
            for (int j = i; j < i + h; j += 4) {
                const float32x4_t a = vld1q_f32(x + j), b = vld1q_f32(x + j + h);
                vst1q_f32(x + j, vaddq_f32(a, b));
                vst1q_f32(x + j + h, vsubq_f32(a, b));
            }
    const float norm = 1.0f / sqrtf((float)dim);
    for (int c = 0; c < dim; c += 4) {
        const float32x4_t scale = inverse ? vmulq_n_f32(vld1q_f32(signs + c), norm) : vdupq_n_f32(norm);
        vst1q_f32(x + c, vmulq_f32(vld1q_f32(x + c), scale));
    }
}

/* ---- fused decode over whole groups ---- */

/* Index: format - SLIMKV_F32 (kernels_dotprod_neon.c pairs them with its
 * quantized kernels). */
const slimkv_score_k_fn slimkv_dense_score_k_neon[3] = {
    slimkv_score_k_f32_neon,
    slimkv_score_k_f16_neon,
    slimkv_score_k_bf16_neon};
const slimkv_accum_v_fn slimkv_dense_accum_v_neon[3] = {
    slimkv_accum_v_f32_neon,
    slimkv_accum_v_f16_neon,
    slimkv_accum_v_bf16_neon};

/* Index: format - SLIMKV_Q8. */
static const slimkv_score_k_fn quant_score_neon[4] = {
    slimkv_score_k_q8_neon,
    slimkv_score_k_q4_neon,
    slimkv_score_k_q2_neon,
    slimkv_score_k_q3_neon};
static const slimkv_accum_v_fn quant_accum_neon[4] = {
    slimkv_accum_v_q8_neon,
    slimkv_accum_v_q4_neon,
    slimkv_accum_v_q2_neon,
    slimkv_accum_v_q3_neon};

/* Every pair of f32 / f16 / bf16 (formats 0..2). */
static void slimkv_attend_groups_dense_neon(const slimkv_group_span *span, const float *q, int rows, float *m,
                                            float *l, float *acc)
{
    const slimkv_tile_ops ops = {slimkv_dense_score_k_neon[span->k_format], slimkv_dense_accum_v_neon[span->v_format],
                                 slimkv_exp_sum_neon, slimkv_max_f32_neon, slimkv_scale_f32_neon, NULL,
                                 NULL};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

/* Every pair of q8 / q4 / q2 / q3 (formats SLIMKV_Q8..SLIMKV_Q3). */
static void slimkv_attend_groups_quant_neon(const slimkv_group_span *span, const float *q, int rows, float *m,
                                            float *l, float *acc)
{
    const slimkv_tile_ops ops = {quant_score_neon[span->k_format - SLIMKV_Q8],
                                 quant_accum_neon[span->v_format - SLIMKV_Q8],
                                 slimkv_exp_sum_neon, slimkv_max_f32_neon, slimkv_scale_f32_neon, NULL,
                                 quant_score_neon[0]};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

/* ---- fused decode: mixed dense / quantized pairs and SparK K groups ---- */

static slimkv_score_k_fn score_k_of_neon(slimkv_format fmt)
{
    return slimkv_is_quantized(fmt) ? quant_score_neon[fmt - SLIMKV_Q8] : slimkv_dense_score_k_neon[fmt];
}

static slimkv_accum_v_fn accum_v_of_neon(slimkv_format fmt)
{
    return slimkv_is_quantized(fmt) ? quant_accum_neon[fmt - SLIMKV_Q8] : slimkv_dense_accum_v_neon[fmt];
}

/* Dense K with quantized V, or quantized K with dense V. */
static void slimkv_attend_groups_mixed_neon(const slimkv_group_span *span, const float *q, int rows, float *m,
                                            float *l, float *acc)
{
    const slimkv_tile_ops ops = {score_k_of_neon(span->k_format), accum_v_of_neon(span->v_format),
                                 slimkv_exp_sum_neon, slimkv_max_f32_neon, slimkv_scale_f32_neon, NULL,
                                 score_k_of_neon(SLIMKV_Q8)};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

/* SparK K groups of any format, V blocks of any format. */
static void slimkv_attend_spark_groups_neon(const slimkv_group_span *span, const float *q, int rows, float *m,
                                            float *l, float *acc)
{
    const slimkv_tile_ops ops = {NULL, accum_v_of_neon(span->v_format), slimkv_exp_sum_neon, slimkv_max_f32_neon,
                                 slimkv_scale_f32_neon, slimkv_spark_score_neon[span->k_format],
                                 NULL};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

void slimkv_kernels_init_neon(slimkv_kernels *k)
{
    slimkv_kernels_init_scalar(k);
    /* no scalar fused body behind SIMD kernels: every entry is set below */
    memset(k->attend_groups, 0, sizeof k->attend_groups);
    memset(k->attend_spark_groups, 0, sizeof k->attend_spark_groups);
    k->name = "neon";
    k->pack_k[SLIMKV_F32] = slimkv_pack_k_f32_neon;
    k->pack_v[SLIMKV_F32] = slimkv_pack_v_f32_neon;
    k->score_k[SLIMKV_F32] = slimkv_score_k_f32_neon;
    k->accum_v[SLIMKV_F32] = slimkv_accum_v_f32_neon;
    k->pack_k[SLIMKV_F16] = slimkv_pack_k_f16_neon;
    k->pack_v[SLIMKV_F16] = slimkv_pack_v_f16_neon;
    k->score_k[SLIMKV_F16] = slimkv_score_k_f16_neon;
    k->accum_v[SLIMKV_F16] = slimkv_accum_v_f16_neon;
    k->pack_k[SLIMKV_BF16] = slimkv_pack_k_bf16_neon;
    k->pack_v[SLIMKV_BF16] = slimkv_pack_v_bf16_neon;
    k->score_k[SLIMKV_BF16] = slimkv_score_k_bf16_neon;
    k->accum_v[SLIMKV_BF16] = slimkv_accum_v_bf16_neon;
    k->pack_k[SLIMKV_Q8] = slimkv_pack_k_q8_neon;
    k->pack_v[SLIMKV_Q8] = slimkv_pack_v_q8_neon;
    k->score_k[SLIMKV_Q8] = slimkv_score_k_q8_neon;
    k->accum_v[SLIMKV_Q8] = slimkv_accum_v_q8_neon;
    k->pack_k[SLIMKV_Q4] = slimkv_pack_k_q4_neon;
    k->pack_v[SLIMKV_Q4] = slimkv_pack_v_q4_neon;
    k->score_k[SLIMKV_Q4] = slimkv_score_k_q4_neon;
    k->accum_v[SLIMKV_Q4] = slimkv_accum_v_q4_neon;
    k->pack_k[SLIMKV_Q2] = slimkv_pack_k_q2_neon;
    k->pack_v[SLIMKV_Q2] = slimkv_pack_v_q2_neon;
    k->score_k[SLIMKV_Q2] = slimkv_score_k_q2_neon;
    k->accum_v[SLIMKV_Q2] = slimkv_accum_v_q2_neon;
    k->pack_k[SLIMKV_Q3] = slimkv_pack_k_q3_neon;
    k->pack_v[SLIMKV_Q3] = slimkv_pack_v_q3_neon;
    k->score_k[SLIMKV_Q3] = slimkv_score_k_q3_neon;
    k->accum_v[SLIMKV_Q3] = slimkv_accum_v_q3_neon;
    k->score_rows_f32 = slimkv_score_rows_f32_neon;
    k->score_rows_f16 = slimkv_score_rows_f16_neon;
    k->accum_rows_f32 = slimkv_accum_rows_f32_neon;
    k->accum_rows_f16 = slimkv_accum_rows_f16_neon;
    k->exp_sum = slimkv_exp_sum_neon;
    for (int kf = SLIMKV_F32; kf <= SLIMKV_BF16; kf++)
        for (int vf = SLIMKV_F32; vf <= SLIMKV_BF16; vf++)
            k->attend_groups[kf][vf] = slimkv_attend_groups_dense_neon;
    for (int kf = SLIMKV_Q8; kf <= SLIMKV_Q3; kf++)
        for (int vf = SLIMKV_Q8; vf <= SLIMKV_Q3; vf++)
            k->attend_groups[kf][vf] = slimkv_attend_groups_quant_neon;
    for (int kf = 0; kf < SLIMKV_FORMAT_COUNT; kf++)
        for (int vf = 0; vf < SLIMKV_FORMAT_COUNT; vf++) {
            if (slimkv_is_quantized(kf) != slimkv_is_quantized(vf))
                k->attend_groups[kf][vf] = slimkv_attend_groups_mixed_neon;
            if (kf != SLIMKV_Q3) /* not a SparK record format */
                k->attend_spark_groups[kf][vf] = slimkv_attend_spark_groups_neon;
        }
    k->rotate = slimkv_rotate_neon;
    k->f32_to_f16 = f32_to_f16_neon;
    k->f16_to_f32 = f16_to_f32_neon;
    slimkv_arm_spark_init_neon(k); /* SparK scores: spark_neon.c */
}

#ifdef NEON_A64
/* A table of its own, so that SLIMKV_ISA can force either and the tests
 * run the plain NEON quantized kernels on CPUs (and qemu) that have the
 * dot product too. dispatch.c offers it where HWCAP_ASIMDDP is set. On
 * 32-bit ARM there is none (kernels_dotprod_neon.c is not built there). */
void slimkv_kernels_init_neon_dotprod(slimkv_kernels *k)
{
    slimkv_kernels_init_neon(k);
    k->name = "neon-dotprod";
    slimkv_kernels_use_dotprod_neon(k);
}
#endif
