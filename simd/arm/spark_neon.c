/* NEON bodies of the SparK scores (every format), ARMv8.0-A AdvSIMD baseline
 * (and 32-bit ARM NEON, through neon_common.h's helpers); packing stays
 * scalar (see slimkv_arm_spark_init_neon).
 *
 * Same decomposition as the oracle (score_spark_body in simd/scalar.c): each
 * token record is decoded once into two dense float rows over all D
 * channels,
 *   yk_c = kept ? k_c : 0                    (the stored values, expanded)
 *   yr_c = kept ? 0   : sign_c * sqrt(a_t)    (the restored pruned terms)
 * and every query then costs two FMAs per 4 channels:
 *   score_i = sum_c q_ic * yk_c + u_ic * yr_c.
 * Only the value decoding depends on the format; expansion and dot products
 * are shared by the six entry points.
 *
 * Decoding: the T values of a record become floats in a row `vals` (with
 * zero slack after T), 8 (f16/bf16) or 16 (q8/q4/q2) at a time.
 * Expansion: per block of 4 channels, the 4-bit keep mask (a nibble of a
 * mask byte; D is a multiple of 4) selects a row of expand_table, byte
 * indices for vqtbl1q_u8 that move the next popcount(mask) compact values
 * of `vals` to the kept lanes and zero the pruned lanes (index 0xff;
 * neon_tbl_u8). The
 * mask and sign nibbles become lane masks by one VTST each; a restored lane
 * is sqrt(a_t) with its sign bit flipped when the sign bit is set (the
 * oracle multiplies by -1.0f: the same bits).
 * Dot products: tokens 2 at a time and queries 4 at a time (for the usual
 * GQA group), each (token, query) pair with one accumulator for the kept
 * and one for the restored terms: 16 accumulators + 4 row vectors + q + u
 * fit in the 32 registers, and the q/u loads serve both tokens.
 *
 * Record bytes are read through byte loads or memcpy: values sit at any
 * 2-byte offset, fp16 parameters likewise. No malloc, no globals besides the
 * constant tables; the rows live on the stack (about 20 KiB). */
#include <arm_neon.h>
#include <string.h>

#include "neon_common.h"
#include "spark_neon.h"

#define SPARK_INLINE static inline __attribute__((always_inline))

/* Largest head dimension (the config's bound, simd/kernels.h). */
#define SPARK_MAX_DIM SLIMKV_MAX_HEAD_DIM
/* Floats of the decoded value row: T values, then up to 15 written past T
 * by a partial 16-value step (4 of them zeroed and read by the expansion). */
#define SPARK_VALS (SPARK_MAX_DIM + 16)
/* Tokens decoded and scored together; queries served per pass. */
#define SPARK_TOKENS 2
#define SPARK_QUERIES 4

#define X 0xff /* vqtbl1q_u8 index out of range: the byte becomes 0 */
/* expand_table[m]: bytes of lane l = bytes of compact value
 * popcount(m & ((1 << l) - 1)) when bit l of m is set, else zeros. */
static const uint8_t expand_table[16][16] = {
    {X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X},              /* lanes kept: none */
    {0, 1, 2, 3, X, X, X, X, X, X, X, X, X, X, X, X},              /* 0 */
    {X, X, X, X, 0, 1, 2, 3, X, X, X, X, X, X, X, X},              /* 1 */
    {0, 1, 2, 3, 4, 5, 6, 7, X, X, X, X, X, X, X, X},              /* 0 1 */
    {X, X, X, X, X, X, X, X, 0, 1, 2, 3, X, X, X, X},              /* 2 */
    {0, 1, 2, 3, X, X, X, X, 4, 5, 6, 7, X, X, X, X},              /* 0 2 */
    {X, X, X, X, 0, 1, 2, 3, 4, 5, 6, 7, X, X, X, X},              /* 1 2 */
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, X, X, X, X},            /* 0 1 2 */
    {X, X, X, X, X, X, X, X, X, X, X, X, 0, 1, 2, 3},              /* 3 */
    {0, 1, 2, 3, X, X, X, X, X, X, X, X, 4, 5, 6, 7},              /* 0 3 */
    {X, X, X, X, 0, 1, 2, 3, X, X, X, X, 4, 5, 6, 7},              /* 1 3 */
    {0, 1, 2, 3, 4, 5, 6, 7, X, X, X, X, 8, 9, 10, 11},            /* 0 1 3 */
    {X, X, X, X, X, X, X, X, 0, 1, 2, 3, 4, 5, 6, 7},              /* 2 3 */
    {0, 1, 2, 3, X, X, X, X, 4, 5, 6, 7, 8, 9, 10, 11},            /* 0 2 3 */
    {X, X, X, X, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},            /* 1 2 3 */
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},        /* all */
};
#undef X

static const uint8_t popcount4[16] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

/* ---- record geometry ---- */

/* ---- value decoding ---- */

/* One fp16 parameter at any byte address, as a float vector. */
SPARK_INLINE float32x4_t spark_half_dup(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return neon_f16x4_to_f32(vdup_n_u16(h));
}

/* The 16 b-bit codes of values j .. j+15 (count of them present, the rest
 * read as 0), from the packed bytes starting at value j (j a multiple of
 * 16, so at a byte boundary), one code per byte. */
SPARK_INLINE uint8x16_t spark_codes16(const int b, const uint8_t *src, int count)
{
    uint8_t tmp[16] = {0};
    if (count < 16) { /* a tail: never read past the record's last code byte */
        memcpy(tmp, src, (size_t)(count * b + 7) / 8);
        src = tmp;
    }
    if (b == 8)
        return vld1q_u8(src);
    if (b == 4) { /* value l: byte l/2, low nibble for even l */
        const uint8x8_t x = vld1_u8(src);
        const uint8x8_t lo = vand_u8(x, vdup_n_u8(0x0f)), hi = vshr_n_u8(x, 4);
        const uint8x8x2_t z = neon_zip_u8x8(lo, hi);
        return vcombine_u8(z.val[0], z.val[1]);
    }
    /* b == 2, value l: byte l/4, bits 2*(l%4) */
    static const uint8_t rep[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
    static const int8_t shift[16] = {0, -2, -4, -6, 0, -2, -4, -6, 0, -2, -4, -6, 0, -2, -4, -6};
    uint32_t w;
    memcpy(&w, src, sizeof w);
    const uint8x16_t x = neon_tbl_u8(vreinterpretq_u8_u32(vdupq_n_u32(w)), vld1q_u8(rep));
    return vandq_u8(vshlq_u8(x, vld1q_s8(shift)), vdupq_n_u8(3));
}

/* 16 codes -> 16 floats code * s + m at dst. */
SPARK_INLINE void spark_dequant16(uint8x16_t codes, float32x4_t s, float32x4_t m, float *dst)
{
    const uint16x8_t z16 = vdupq_n_u16(0);
    const uint8x16x2_t b = neon_zip_u8(codes, vdupq_n_u8(0));
    const uint16x8x2_t lo = neon_zip_u16(vreinterpretq_u16_u8(b.val[0]), z16);
    const uint16x8x2_t hi = neon_zip_u16(vreinterpretq_u16_u8(b.val[1]), z16);
    const uint32x4_t c0 = vreinterpretq_u32_u16(lo.val[0]), c1 = vreinterpretq_u32_u16(lo.val[1]);
    const uint32x4_t c2 = vreinterpretq_u32_u16(hi.val[0]), c3 = vreinterpretq_u32_u16(hi.val[1]);
    vst1q_f32(dst, vfmaq_f32(m, vcvtq_f32_u32(c0), s));
    vst1q_f32(dst + 4, vfmaq_f32(m, vcvtq_f32_u32(c1), s));
    vst1q_f32(dst + 8, vfmaq_f32(m, vcvtq_f32_u32(c2), s));
    vst1q_f32(dst + 12, vfmaq_f32(m, vcvtq_f32_u32(c3), s));
}

/* vals[j] = value j of the record as float for j < T, vals[T .. T+3] = 0;
 * up to 15 more floats after T may be written. */
SPARK_INLINE void spark_decode_values(const slimkv_format fmt, const uint8_t *rec, const slimkv_spark_geometry *geo,
                                      float *vals)
{
    const uint8_t *v = rec + geo->values;
    const int t_keep = geo->t_keep;
    if (fmt == SLIMKV_F32) {
        memcpy(vals, v, (size_t)t_keep * sizeof(float)); /* values may be only 2-byte aligned */
    } else if (fmt == SLIMKV_F16 || fmt == SLIMKV_BF16) {
        for (int j = 0; j < t_keep; j += 8) {
            uint16x8_t h;
            if (t_keep - j >= 8) {
                h = vreinterpretq_u16_u8(vld1q_u8(v + (size_t)j * 2));
            } else {
                uint8_t tmp[16] = {0};
                memcpy(tmp, v + (size_t)j * 2, 2 * (size_t)(t_keep - j));
                h = vreinterpretq_u16_u8(vld1q_u8(tmp));
            }
            float32x4_t lo, hi;
            if (fmt == SLIMKV_F16) { /* the oracle's rounding, subnormals and NaNs */
                lo = neon_f16x8_to_f32_lo(h);
                hi = neon_f16x8_to_f32_hi(h);
            } else { /* bf16: the 16 bits on top of a zero low half */
                const uint16x8x2_t z = neon_zip_u16(vdupq_n_u16(0), h);
                lo = vreinterpretq_f32_u16(z.val[0]);
                hi = vreinterpretq_f32_u16(z.val[1]);
            }
            vst1q_f32(vals + j, lo);
            vst1q_f32(vals + j + 4, hi);
        }
    } else {
        const int b = slimkv_format_bits(fmt);
        const uint8_t *scale = rec + 2 * geo->bits + 4, *minimum = scale + (size_t)geo->nvg * 2;
        for (int vg = 0; vg < geo->nvg; vg++) {
            const float32x4_t s = spark_half_dup(scale + 2 * (size_t)vg), m = spark_half_dup(minimum + 2 * (size_t)vg);
            const int end = t_keep < (vg + 1) * geo->g ? t_keep : (vg + 1) * geo->g;
            /* G is a multiple of 16: a value group starts on a 16-value step;
             * a partial step's extra floats are overwritten by the next group
             * or lie past T. */
            for (int j = vg * geo->g; j < end; j += 16)
                spark_dequant16(spark_codes16(b, v + (size_t)j * b / 8, end - j), s, m, vals + j);
        }
    }
    vst1q_f32(vals + t_keep, vdupq_n_f32(0.0f));
}

/* ---- expansion: the two dense rows of a token ---- */

/* yk, yr [dim] from the decoded values and the record's mask, signs, a_t. */
static void spark_expand(const uint8_t *rec, const slimkv_spark_geometry *geo, int dim, const float *vals, float *yk,
                         float *yr)
{
    const uint8_t *mask = rec, *sign = rec + geo->bits;
    float a_t;
    memcpy(&a_t, rec + 2 * geo->bits, sizeof a_t);
    /* IEEE sqrt: sqrtf's result (AArch64 without the errno path) */
    const uint32x4_t root = vreinterpretq_u32_f32(vdupq_n_f32(neon_sqrt1_f32(a_t)));
    const uint32x4_t sign_bit = vdupq_n_u32(0x80000000u);
    static const uint32_t kept_lane_bits[4] = {1, 2, 4, 8}, sign_lane_bits[4] = {16, 32, 64, 128};
    const uint32x4_t kept_bits = vld1q_u32(kept_lane_bits), sgn_bits = vld1q_u32(sign_lane_bits);
    int j = 0;
    for (int c = 0; c < dim; c += 4) { /* dim is a multiple of 4: whole nibbles */
        const int shift = c & 4;
        const unsigned m = (unsigned)(mask[c >> 3] >> shift) & 15u, sg = (unsigned)(sign[c >> 3] >> shift) & 15u;
        const uint8x16_t compact = vreinterpretq_u8_f32(vld1q_f32(vals + j));
        const float32x4_t kept_vals = vreinterpretq_f32_u8(neon_tbl_u8(compact, vld1q_u8(expand_table[m])));
        const uint32x4_t word = vdupq_n_u32(m | sg << 4);
        const uint32x4_t kept = vtstq_u32(word, kept_bits), neg = vtstq_u32(word, sgn_bits);
        const uint32x4_t restored = vbicq_u32(veorq_u32(root, vandq_u32(neg, sign_bit)), kept);
        vst1q_f32(yk + c, kept_vals);
        vst1q_f32(yr + c, vreinterpretq_f32_u32(restored));
        j += popcount4[m];
    }
}

/* ---- dot products ---- */

/* s[i*lds + r] = sum_c q[i*dim + c] * yk[r][c] + u[i*dim + c] * yr[r][c]
 * for r < TN tokens, i < QN queries (both compile-time constants). */
SPARK_INLINE void spark_dot(const int TN, const int QN, const float (*yk)[SPARK_MAX_DIM],
                            const float (*yr)[SPARK_MAX_DIM], int dim, const float *q, const float *u, float *s,
                            int lds)
{
    float32x4_t ak[SPARK_TOKENS][SPARK_QUERIES], ar[SPARK_TOKENS][SPARK_QUERIES];
#pragma GCC unroll 2
    for (int r = 0; r < TN; r++)
#pragma GCC unroll 4
        for (int i = 0; i < QN; i++)
            ak[r][i] = ar[r][i] = vdupq_n_f32(0.0f);
    for (int c = 0; c < dim; c += 4) {
        float32x4_t k[SPARK_TOKENS], rs[SPARK_TOKENS];
#pragma GCC unroll 2
        for (int r = 0; r < TN; r++) {
            k[r] = vld1q_f32(yk[r] + c);
            rs[r] = vld1q_f32(yr[r] + c);
        }
#pragma GCC unroll 4
        for (int i = 0; i < QN; i++) {
            const float32x4_t qv = vld1q_f32(q + (size_t)i * dim + c), uv = vld1q_f32(u + (size_t)i * dim + c);
#pragma GCC unroll 2
            for (int r = 0; r < TN; r++) {
                ak[r][i] = vfmaq_f32(ak[r][i], qv, k[r]);
                ar[r][i] = vfmaq_f32(ar[r][i], uv, rs[r]);
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < QN; i++)
#pragma GCC unroll 2
        for (int r = 0; r < TN; r++)
            s[(size_t)i * lds + r] = neon_addv_f32(vaddq_f32(ak[r][i], ar[r][i]));
}

#define SPARK_DOT_FN(TN, QN)                                                                                 \
    static void spark_dot_##TN##_##QN(const float (*yk)[SPARK_MAX_DIM], const float (*yr)[SPARK_MAX_DIM],    \
                                      int dim, const float *q, const float *u, float *s, int lds)            \
    {                                                                                                        \
        spark_dot(TN, QN, yk, yr, dim, q, u, s, lds);                                                        \
    }
SPARK_DOT_FN(1, 1)
SPARK_DOT_FN(1, 2)
SPARK_DOT_FN(1, 3)
SPARK_DOT_FN(1, 4)
SPARK_DOT_FN(2, 1)
SPARK_DOT_FN(2, 2)
SPARK_DOT_FN(2, 3)
SPARK_DOT_FN(2, 4)
#undef SPARK_DOT_FN

typedef void (*spark_dot_fn)(const float (*)[SPARK_MAX_DIM], const float (*)[SPARK_MAX_DIM], int, const float *,
                             const float *, float *, int);

/* ---- scores ---- */

SPARK_INLINE void score_spark_neon(const slimkv_format fmt, const uint8_t *group, int dim, int t_keep, int g, int n,
                                   const float *q, const float *u, int nq, float *s, int lds)
{
    static const spark_dot_fn dots[SPARK_TOKENS][SPARK_QUERIES] = {
        {spark_dot_1_1, spark_dot_1_2, spark_dot_1_3, spark_dot_1_4},
        {spark_dot_2_1, spark_dot_2_2, spark_dot_2_3, spark_dot_2_4},
    };
    const slimkv_spark_geometry geo = slimkv_spark_geometry_of(fmt, dim, t_keep, g);
    float vals[SPARK_VALS];
    float yk[SPARK_TOKENS][SPARK_MAX_DIM], yr[SPARK_TOKENS][SPARK_MAX_DIM];
    for (int t = 0; t < n; t += SPARK_TOKENS) {
        const int tn = n - t < SPARK_TOKENS ? n - t : SPARK_TOKENS;
        for (int r = 0; r < tn; r++) { /* each record decoded once, for every query */
            const uint8_t *rec = group + (size_t)(t + r) * geo.record;
            spark_decode_values(fmt, rec, &geo, vals);
            spark_expand(rec, &geo, dim, vals, yk[r], yr[r]);
        }
        for (int i0 = 0; i0 < nq; i0 += SPARK_QUERIES) {
            const int qn = nq - i0 < SPARK_QUERIES ? nq - i0 : SPARK_QUERIES;
            dots[tn - 1][qn - 1]((const float (*)[SPARK_MAX_DIM])yk, (const float (*)[SPARK_MAX_DIM])yr, dim,
                                 q + (size_t)i0 * dim, u + (size_t)i0 * dim, s + (size_t)i0 * lds + t, lds);
        }
    }
}

static void slimkv_score_spark_f32_neon(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                        const float *u, int nq, float *s, int lds)
{
    score_spark_neon(SLIMKV_F32, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_f16_neon(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                        const float *u, int nq, float *s, int lds)
{
    score_spark_neon(SLIMKV_F16, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_bf16_neon(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                         const float *u, int nq, float *s, int lds)
{
    score_spark_neon(SLIMKV_BF16, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q8_neon(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                       const float *u, int nq, float *s, int lds)
{
    score_spark_neon(SLIMKV_Q8, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q4_neon(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                       const float *u, int nq, float *s, int lds)
{
    score_spark_neon(SLIMKV_Q4, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q2_neon(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                       const float *u, int nq, float *s, int lds)
{
    score_spark_neon(SLIMKV_Q2, group, dim, t_keep, g, n, q, u, nq, s, lds);
}


/* Indexed by the K format (the fused SparK bodies of both NEON tables). */
const slimkv_score_spark_fn slimkv_spark_score_neon[SLIMKV_FORMAT_COUNT] = {
    [SLIMKV_F32] = slimkv_score_spark_f32_neon, [SLIMKV_F16] = slimkv_score_spark_f16_neon,
    [SLIMKV_BF16] = slimkv_score_spark_bf16_neon, [SLIMKV_Q8] = slimkv_score_spark_q8_neon,
    [SLIMKV_Q4] = slimkv_score_spark_q4_neon, [SLIMKV_Q2] = slimkv_score_spark_q2_neon};

void slimkv_arm_spark_init_neon(slimkv_kernels *k)
{
    /* pack_spark stays scalar: its bytes must be bit-exact with scalar.c (a
     * top-T selection with ties, then the KIVI codes), and it runs once per
     * group at compression, off the decode path. */
    k->score_spark[SLIMKV_F32] = slimkv_score_spark_f32_neon;
    k->score_spark[SLIMKV_F16] = slimkv_score_spark_f16_neon;
    k->score_spark[SLIMKV_BF16] = slimkv_score_spark_bf16_neon;
    k->score_spark[SLIMKV_Q8] = slimkv_score_spark_q8_neon;
    k->score_spark[SLIMKV_Q4] = slimkv_score_spark_q4_neon;
    k->score_spark[SLIMKV_Q2] = slimkv_score_spark_q2_neon;
}
