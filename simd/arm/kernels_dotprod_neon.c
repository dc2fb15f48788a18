/* Quantized score_k / accum_v with the ARMv8.2 dot product (SDOT), chosen by
 * kernels_neon.c only when the CPU reports HWCAP_ASIMDDP. The whole file is
 * compiled for ARMv8.2-A + dotprod by the pragma below (any CPU with the
 * dot product implements v8.2), so the Makefile needs no flags.
 *
 * The storage layout was made for this: in a K group a 32-bit lane holds 4
 * channels of one token, in a V block 4 tokens of one channel, so one SDOT
 * by element sums 4 code*int8 products per lane, 16 per instruction. The
 * float side (query folded with the channel scales for K, weights folded
 * with the token scales for V) is quantized to int8 per block with a
 * symmetric step amax/127: the error is at most half a step per term, what
 * the tests allow. SDOT is signed x signed and there is no mixed-sign form
 * in v8.2, so 8-bit codes are flipped to code-128 (EOR 0x80) and
 * 128*sum(int8) is added back once per block; 4- and 2-bit codes fit int8. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#else
/* GCC's arm_neon.h gives its dot-product intrinsics this exact target */
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif

#include "neon_common.h"

/* K channels whose int8 query is prepared at once (stack buffer per query). */
#define K_CHUNK 128

/* acc + dot(x, the 4 bytes of v at lane), lanes immediate as for fma_lane. */
NEON_INLINE int32x4_t dot_lane(int32x4_t acc, int8x16_t x, int8x16_t v, int lane)
{
    switch (lane) {
    case 0: return vdotq_laneq_s32(acc, x, v, 0);
    case 1: return vdotq_laneq_s32(acc, x, v, 1);
    case 2: return vdotq_laneq_s32(acc, x, v, 2);
    default: return vdotq_laneq_s32(acc, x, v, 3);
    }
}

/* Field j of raw code bytes as signed int8 for SDOT (8-bit codes shifted by -128). */
NEON_INLINE int8x16_t signed_codes(uint8x16_t raw, int bits, int j)
{
    uint8x16_t c = code_field(raw, bits, j);
    if (bits == 8)
        c = veorq_u8(c, vdupq_n_u8(0x80));
    return vreinterpretq_s8_u8(c);
}

/* int8 of f[0 .. count), count a multiple of 16: rint(f * 127 / amax).
 * Returns the step amax / 127 (0 when all are 0) and the codes' sum. */
NEON_INLINE float quantize_int8(const float *f, int count, int8_t *out, int32_t *sum)
{
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int i = 0; i < count; i += 4)
        m = vmaxq_f32(m, vabsq_f32(vld1q_f32(f + i)));
    float amax = vmaxvq_f32(m);
    if (amax == 0.0f) {
        memset(out, 0, (size_t)count);
        *sum = 0;
        return 0.0f;
    }
    float32x4_t inv = vdupq_n_f32(127.0f / amax);
    int32x4_t total = vdupq_n_s32(0);
    for (int i = 0; i < count; i += 16) {
        int32x4_t v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(f + i + 4 * k), inv)); /* |v| <= 127 */
            total = vaddq_s32(total, v[k]);
        }
        int16x8_t v01 = vuzp1q_s16(vreinterpretq_s16_s32(v[0]), vreinterpretq_s16_s32(v[1]));
        int16x8_t v23 = vuzp1q_s16(vreinterpretq_s16_s32(v[2]), vreinterpretq_s16_s32(v[3]));
        vst1q_s8(out + i, vuzp1q_s8(vreinterpretq_s8_s16(v01), vreinterpretq_s8_s16(v23)));
    }
    *sum = vaddvq_s32(total);
    return amax / 127.0f;
}

/* ---- K: scores of nq (<= 4) queries ----
 * Per chunk of up to 128 channels: the folded query q_c*scale_c as int8
 * (16 bytes = 4 quads per vector), then for each 16 tokens, 16 int32
 * accumulators (4 queries x 4 token lanes x 4): each quad's 64 code bytes
 * are 4 vectors [t][c%4], each SDOT'd with the quad's 4 query bytes. */
NEON_INLINE void score_k_dot_block(int bits, slimkv_format fmt, const uint8_t *group, int dk, int g, int n,
                                   const float *q, const int nq, float *s, int lds)
{
    const int per = 8 / bits, nquad = dk / 4, nplane = (nquad + per - 1) / per;
    const uint8_t *scale_p = group + slimkv_k_params_offset(fmt, dk, g), *min_p = scale_p + 2 * (size_t)dk;
    float bias[NEON_QUERY_BLOCK]; /* sum_c q_c * min_c, the same for every token */
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        float32x4_t b = vdupq_n_f32(0.0f);
        for (int c = 0; c < dk; c += 4)
            b = vfmaq_f32(b, vld1q_f32(q + (size_t)i * dk + c), load_f16x4(min_p + 2 * (size_t)c));
        bias[i] = vaddvq_f32(b);
    }
    for (int c0 = 0; c0 < dk; c0 += K_CHUNK) {
        int nc = dk - c0 < K_CHUNK ? dk - c0 : K_CHUNK, padded = (nc + 15) & ~15;
        int8_t qint[NEON_QUERY_BLOCK][K_CHUNK];
        float step[NEON_QUERY_BLOCK];
        int32_t corr[NEON_QUERY_BLOCK];
        for (int i = 0; i < nq; i++) {
            float folded[K_CHUNK] = {0};
            for (int c = 0; c < nc; c += 4)
                vst1q_f32(folded + c, vmulq_f32(vld1q_f32(q + (size_t)i * dk + c0 + c),
                                                load_f16x4(scale_p + 2 * (size_t)(c0 + c))));
            int32_t sum;
            step[i] = quantize_int8(folded, padded, qint[i], &sum);
            corr[i] = bits == 8 ? 128 * sum : 0;
        }
        for (int t0 = 0; t0 < n; t0 += 16) {
            int32x4_t acc[NEON_QUERY_BLOCK][4];
#pragma GCC unroll 4
            for (int i = 0; i < nq; i++)
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++)
                    acc[i][v] = vdupq_n_s32(0);
            for (int qg = 0; qg < nc / 4; qg += 4) { /* 4 quads: one query vector */
                int8x16_t qv[NEON_QUERY_BLOCK];
#pragma GCC unroll 4
                for (int i = 0; i < nq; i++)
                    qv[i] = vld1q_s8(qint[i] + 4 * qg);
#pragma GCC unroll 4
                for (int pl = 0; pl < 4 / per; pl++) { /* byte planes holding these quads */
                    int plane = (c0 / 4 + qg) / per + pl;
                    if (plane >= nplane)
                        break;
                    uint8x16_t raw[4]; /* 16 tokens x 4 bytes; the group has g >= t0 + 16 tokens */
#pragma GCC unroll 4
                    for (int v = 0; v < 4; v++)
                        raw[v] = vld1q_u8(group + ((size_t)plane * g + t0) * 4 + 16 * v);
#pragma GCC unroll 4
                    for (int j = 0; j < per; j++) /* padding quads: code bits and query bytes are 0 */
#pragma GCC unroll 4
                        for (int v = 0; v < 4; v++) {
                            int8x16_t codes = signed_codes(raw[v], bits, j);
#pragma GCC unroll 4
                            for (int i = 0; i < nq; i++)
                                acc[i][v] = dot_lane(acc[i][v], codes, qv[i], pl * per + j);
                        }
                }
            }
            int cnt = n - t0 < 16 ? n - t0 : 16;
#pragma GCC unroll 4
            for (int i = 0; i < nq; i++) {
                float *dst = s + (size_t)i * lds + t0;
                float32x4_t out[4];
                if (c0 == 0) {
                    for (int v = 0; v < 4; v++)
                        out[v] = vdupq_n_f32(bias[i]);
                } else {
                    load_f32x16(dst, cnt, out); /* later channel chunks add on */
                }
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++)
                    out[v] = vfmaq_n_f32(out[v], vcvtq_f32_s32(vaddq_s32(acc[i][v], vdupq_n_s32(corr[i]))), step[i]);
                store_f32x16(dst, cnt, out);
            }
        }
    }
}

/* ---- V: sums of nq (<= 4) weight rows ----
 * Per chunk of up to 64 tokens and channel group: the folded weights
 * w_t*scale_t as int8 (16 bytes = 4 token quads per vector), then for each
 * 16 channels, 16 int32 accumulators (4 rows x 4 channel lanes x 4): a token
 * quad's 64 code bytes are 4 vectors [c][t%4], SDOT'd with its 4 weights. */
NEON_INLINE void accum_v_dot_cols(int bits, const uint8_t *block, int dv, int t0, int nt, const int nq,
                                  int8_t wint[][NEON_V_CHUNK], const float *step, const int32_t *corr,
                                  const float *bias, float *acc, int c0, int nc)
{
    const int per = 8 / bits;
    int32x4_t ia[NEON_QUERY_BLOCK][4];
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            ia[i][v] = vdupq_n_s32(0);
    for (int u0 = 0; u0 < (nt + 15) / 16 * 4; u0 += 4) { /* 4 token quads: one weight vector */
        int8x16_t wv[NEON_QUERY_BLOCK];
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++)
            wv[i] = vld1q_s8(wint[i] + 4 * u0);
#pragma GCC unroll 4
        for (int pl = 0; pl < 4 / per; pl++) { /* byte planes holding these quads, inside the block's g tokens */
            int plane = (t0 / 4 + u0) / per + pl;
            uint8x16_t raw[4];
            load_code_lanes(block + ((size_t)plane * dv + c0) * 4, nc, raw);
#pragma GCC unroll 4
            for (int j = 0; j < per; j++) /* quads past n: weights are 0 */
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) {
                    int8x16_t codes = signed_codes(raw[v], bits, j);
#pragma GCC unroll 4
                    for (int i = 0; i < nq; i++)
                        ia[i][v] = dot_lane(ia[i][v], codes, wv[i], pl * per + j);
                }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        float32x4_t a[4];
        load_f32x16(acc + (size_t)i * dv + c0, nc, a);
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            float32x4_t sums = vcvtq_f32_s32(vaddq_s32(ia[i][v], vdupq_n_s32(corr[i])));
            a[v] = vfmaq_n_f32(vaddq_f32(a[v], vdupq_n_f32(bias[i])), sums, step[i]);
        }
        store_f32x16(acc + (size_t)i * dv + c0, nc, a);
    }
}

NEON_INLINE void accum_v_dot_block(int bits, slimkv_format fmt, const uint8_t *block, int dv, int g, int n,
                                   const float *w, int ldw, const int nq, float *acc)
{
    const int nvg = (dv + g - 1) / g;
    const uint8_t *scale_p = block + slimkv_v_params_offset(fmt, dv, g), *min_p = scale_p + 2 * (size_t)g * nvg;
    for (int t0 = 0; t0 < n; t0 += NEON_V_CHUNK) {
        int nt = n - t0 < NEON_V_CHUNK ? n - t0 : NEON_V_CHUNK, padded = (nt + 15) & ~15;
        for (int j = 0; j < nvg; j++) {
            float fw[NEON_QUERY_BLOCK][NEON_V_CHUNK], bias[NEON_QUERY_BLOCK], step[NEON_QUERY_BLOCK];
            int8_t wint[NEON_QUERY_BLOCK][NEON_V_CHUNK];
            int32_t corr[NEON_QUERY_BLOCK];
            fold_v_weights(scale_p, min_p, nvg, j, t0, nt, w, ldw, nq, fw, bias);
            for (int i = 0; i < nq; i++) {
                int32_t sum;
                step[i] = quantize_int8(fw[i], padded, wint[i], &sum);
                corr[i] = bits == 8 ? 128 * sum : 0;
            }
            int c_end = (j + 1) * g < dv ? (j + 1) * g : dv;
            for (int c = j * g; c < c_end; c += 16) {
                int nc = c_end - c < 16 ? c_end - c : 16;
                if (nc == 16)
                    accum_v_dot_cols(bits, block, dv, t0, nt, nq, wint, step, corr, bias, acc, c, 16);
                else
                    accum_v_dot_cols(bits, block, dv, t0, nt, nq, wint, step, corr, bias, acc, c, nc);
            }
        }
    }
}

NEON_INLINE void score_k_dot(int bits, slimkv_format fmt, const uint8_t *group, int dk, int g, int n, const float *q,
                             int nq, float *s, int lds)
{
#define SCORE_K_DOT(B) score_k_dot_block(bits, fmt, group, dk, g, n, q + (size_t)i0 * dk, B, s + (size_t)i0 * lds, lds)
    FOR_QUERY_BLOCKS(nq, i0, SCORE_K_DOT)
#undef SCORE_K_DOT
}

NEON_INLINE void accum_v_dot(int bits, slimkv_format fmt, const uint8_t *block, int dv, int g, int n, const float *w,
                             int ldw, int nq, float *acc)
{
#define ACCUM_V_DOT(B) accum_v_dot_block(bits, fmt, block, dv, g, n, w + (size_t)i0 * ldw, ldw, B, acc + (size_t)i0 * dv)
    FOR_QUERY_BLOCKS(nq, i0, ACCUM_V_DOT)
#undef ACCUM_V_DOT
}

#define DOT_BODIES(NAME, BITS, FMT)                                                                      \
    static void score_k_##NAME##_dot(const uint8_t *group, int dk, int g, int n, const float *q, int nq, \
                                     float *s, int lds)                                                  \
    {                                                                                                    \
        score_k_dot(BITS, FMT, group, dk, g, n, q, nq, s, lds);                                          \
    }                                                                                                    \
    static void accum_v_##NAME##_dot(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, \
                                     int nq, float *acc)                                                 \
    {                                                                                                    \
        accum_v_dot(BITS, FMT, block, dv, g, n, w, ldw, nq, acc);                                        \
    }

DOT_BODIES(q8, 8, SLIMKV_Q8)
DOT_BODIES(q4, 4, SLIMKV_Q4)
DOT_BODIES(q2, 2, SLIMKV_Q2)

void slimkv_kernels_use_dotprod_neon(slimkv_kernels *k)
{
    k->score_k[SLIMKV_Q8] = score_k_q8_dot;
    k->score_k[SLIMKV_Q4] = score_k_q4_dot;
    k->score_k[SLIMKV_Q2] = score_k_q2_dot;
    k->accum_v[SLIMKV_Q8] = accum_v_q8_dot;
    k->accum_v[SLIMKV_Q4] = accum_v_q4_dot;
    k->accum_v[SLIMKV_Q2] = accum_v_q2_dot;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
