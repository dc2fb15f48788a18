/* Quantized score_k / accum_v with the ARMv8.2 dot product (SDOT), chosen by
 * kernels_neon.c only when the CPU reports HWCAP_ASIMDDP. With GCC the file
 * is compiled for ARMv8.2-A + dotprod by the pragma below (any CPU with the
 * dot product implements v8.2), so the Makefile needs no flags; clang needs
 * one (see below).
 *
 * The storage layout was made for this: in a K group a 32-bit lane holds 4
 * channels of one token, in a V block 4 tokens of one channel, so one SDOT
 * by element sums 4 code*int8 products per lane, 16 per instruction. The
 * float side (query folded with the channel scales for K, weights folded
 * with the token scales for V) is quantized to int8 per block with a
 * symmetric step amax/127. SDOT is signed x signed and there is no
 * mixed-sign form in v8.2, so 8-bit codes are flipped to code-128 (EOR 0x80)
 * and 128*sum(int8) is added back once per block; 4-, 3- and 2-bit codes
 * fit (q3 codes are put together from its two planes as they are loaded:
 * the q2-layout low field, the high bit inserted as bit 2).
 *
 * Precision: one int8 term is off by up to half a step per code. Against
 * 4-bit (0..15), 3-bit and 2-bit codes that stays below the storage's own rounding
 * (end to end, tests/test_cache.c: q4 0.21 vs 0.19 with float, bound 0.3),
 * but against 8-bit codes (0..255) it is as large as the q8 rounding
 * itself: q8 then misses its 0.04 bound (measured 0.055). So for q8 the
 * float side is two int8 terms, the value and its rounding residual in
 * 1/254 steps (~15 bits), at twice the SDOTs; the accumulators are split
 * over the two terms, so q8 blocks are 8 tokens (K) or 8 channels (V) wide
 * instead of 16. */
#include "neon_common.h"
#include "tile_loop.h"

#if defined(__clang__) && !defined(__ARM_FEATURE_DOTPROD)
/* clang (14 here) declares the dot-product intrinsics only when the whole
 * file is built with +dotprod, e.g. in the Makefile
 *   $(BUILD)/simd/arm/kernels_dotprod_neon.o: ISA_FLAGS := -march=armv8.2-a+dotprod
 * Without that flag the baseline NEON kernels stay in place. */
void slimkv_kernels_use_dotprod_neon(slimkv_kernels *k)
{
    (void)k;
}
#else

#if !defined(__clang__)
/* GCC's arm_neon.h gives its dot-product intrinsics this exact target */
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif

/* K channels whose int8 query is prepared at once (stack buffer per query). */
#define K_CHUNK 128

/* acc + dot(x, the 4 bytes of v at lane): the lane must be an immediate, so
 * switch on it (the switch folds away when the caller's loop is unrolled). */
NEON_INLINE int32x4_t dot_lane(int32x4_t acc, int8x16_t x, int8x16_t v, int lane)
{
    switch (lane) {
    case 0: return vdotq_laneq_s32(acc, x, v, 0);
    case 1: return vdotq_laneq_s32(acc, x, v, 1);
    case 2: return vdotq_laneq_s32(acc, x, v, 2);
    default: return vdotq_laneq_s32(acc, x, v, 3);
    }
}

/* A compiler barrier: GCC's scheduler would hoist the next plane's code
 * loads above this point, and with 16 accumulators live they would spill
 * (measured in accum_v q4: 139 instructions and 32 stack accesses per inner
 * iteration without it, 121 and 3 with it). */
NEON_INLINE void keep_loads_below(void)
{
    __asm__ volatile("" ::: "memory");
}

/* Field j of raw code bytes as signed int8 for SDOT (8-bit codes shifted by
 * -128); q3: the 2-bit field j of its low plane with bit hj of the high-plane
 * bytes `high` as bit 2 (other formats ignore high and hj). */
NEON_INLINE int8x16_t signed_codes(uint8x16_t raw, uint8x16_t high, int bits, int j, int hj)
{
    if (bits == 3)
        return vreinterpretq_s8_u8(add_high_bit(code_field(raw, 2, j), high, hj));
    uint8x16_t c = code_field(raw, bits, j);
    if (bits == 8)
        c = veorq_u8(c, vdupq_n_u8(0x80));
    return vreinterpretq_s8_u8(c);
}

/* int8 terms per folded value (see the top of the file). */
NEON_INLINE int dot_terms(int bits)
{
    return bits == 8 ? 2 : 1;
}

/* Resolution of the second term, in units of the first one. */
#define RESIDUAL_STEPS 254.0f

NEON_INLINE int8x16_t narrow_s32_to_s8(const int32x4_t v[4]) /* |v| <= 127 */
{
    int16x8_t v01 = vuzp1q_s16(vreinterpretq_s16_s32(v[0]), vreinterpretq_s16_s32(v[1]));
    int16x8_t v23 = vuzp1q_s16(vreinterpretq_s16_s32(v[2]), vreinterpretq_s16_s32(v[3]));
    return vuzp1q_s8(vreinterpretq_s8_s16(v01), vreinterpretq_s8_s16(v23));
}

/* f[0 .. count) (count a multiple of 16) as int8 terms of step amax/127:
 * f ~= step * (out[0] + out[1] / RESIDUAL_STEPS), out[1] only when terms is 2.
 * Returns the step (0 when all are 0); sums[k] = sum of out[k]. */
NEON_INLINE float quantize_int8(const float *f, int count, int terms, int8_t *out[2], int32_t sums[2])
{
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int i = 0; i < count; i += 4)
        m = vmaxq_f32(m, vabsq_f32(vld1q_f32(f + i)));
    float amax = vmaxvq_f32(m);
    if (amax < 1e-36f) /* 127/amax would overflow: drop terms this small */
        amax = 0.0f;
    float32x4_t inv = vdupq_n_f32(amax == 0.0f ? 0.0f : 127.0f / amax);
    int32x4_t total[2] = {vdupq_n_s32(0), vdupq_n_s32(0)};
    for (int i = 0; i < count; i += 16) {
        int32x4_t first[4], second[4];
        for (int k = 0; k < 4; k++) {
            float32x4_t y = vmulq_f32(vld1q_f32(f + i + 4 * k), inv); /* |y| <= 127 */
            first[k] = vcvtnq_s32_f32(y);
            total[0] = vaddq_s32(total[0], first[k]);
            if (terms == 2) { /* y - first is exact and within +-0.5 */
                float32x4_t residual = vsubq_f32(y, vcvtq_f32_s32(first[k]));
                second[k] = vcvtnq_s32_f32(vmulq_n_f32(residual, RESIDUAL_STEPS));
                total[1] = vaddq_s32(total[1], second[k]);
            }
        }
        vst1q_s8(out[0] + i, narrow_s32_to_s8(first));
        if (terms == 2)
            vst1q_s8(out[1] + i, narrow_s32_to_s8(second));
    }
    sums[0] = vaddvq_s32(total[0]);
    sums[1] = vaddvq_s32(total[1]);
    return amax / 127.0f;
}

/* The float value of one int8 side's dot products: step * (first + second
 * / RESIDUAL_STEPS), each with the 8-bit codes' offset 128 * sum added back. */
NEON_INLINE float32x4_t dequantize_sums(const int32x4_t *acc, int terms, const int32_t corr[2], float step)
{
    float32x4_t x = vcvtq_f32_s32(vaddq_s32(acc[0], vdupq_n_s32(corr[0])));
    if (terms == 2)
        x = vfmaq_n_f32(x, vcvtq_f32_s32(vaddq_s32(acc[1], vdupq_n_s32(corr[1]))), 1.0f / RESIDUAL_STEPS);
    return vmulq_n_f32(x, step);
}

/* Offsets added back for 8-bit codes stored as code - 128. */
NEON_INLINE void code_offsets(int bits, const int32_t sums[2], int32_t corr[2])
{
    for (int k = 0; k < 2; k++)
        corr[k] = bits == 8 ? 128 * sums[k] : 0;
}

/* ---- K: scores of nq (<= 4) queries ----
 * Per chunk of up to 128 channels: the folded query q_c*scale_c as int8
 * (16 bytes = 4 quads per vector), then per block of 16 tokens (8 for q8),
 * 16 int32 accumulators [term][query][4 tokens]: a quad's code bytes are
 * vectors of 4 tokens x 4 channels, SDOT'd with the quad's 4 query bytes. */
NEON_INLINE void score_k_dot_block(int bits, slimkv_format fmt, const uint8_t *group, int dk, int g, int n,
                                   const float *q, const int nq, float *s, int lds)
{
    const int per = 8 / slimkv_plane_bits(bits), nquad = dk / 4, nplane = (nquad + per - 1) / per;
    const int terms = dot_terms(bits), nvec = 4 / terms, block = 4 * nvec;
    const uint8_t *scale_p = group + slimkv_k_params_offset(fmt, dk, g), *min_p = scale_p + 2 * (size_t)dk;
    const uint8_t *high = group + slimkv_k_hi_plane_offset(dk, g); /* q3 only */
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
        int8_t qint[2][NEON_QUERY_BLOCK][K_CHUNK];
        float step[NEON_QUERY_BLOCK];
        int32_t corr[NEON_QUERY_BLOCK][2];
        for (int i = 0; i < nq; i++) {
            float folded[K_CHUNK] = {0};
            for (int c = 0; c < nc; c += 4)
                vst1q_f32(folded + c, vmulq_f32(vld1q_f32(q + (size_t)i * dk + c0 + c),
                                                load_f16x4(scale_p + 2 * (size_t)(c0 + c))));
            int8_t *out[2] = {qint[0][i], qint[1][i]};
            int32_t sums[2];
            step[i] = quantize_int8(folded, padded, terms, out, sums);
            code_offsets(bits, sums, corr[i]);
        }
        for (int t0 = 0; t0 < n; t0 += block) {
            int32x4_t acc[NEON_QUERY_BLOCK][4][2]; /* [query][token vector][term] */
#pragma GCC unroll 4
            for (int i = 0; i < nq; i++)
#pragma GCC unroll 4
                for (int v = 0; v < nvec; v++)
#pragma GCC unroll 2
                    for (int k = 0; k < terms; k++)
                        acc[i][v][k] = vdupq_n_s32(0);
            for (int qg = 0; qg < nc / 4; qg += 4) { /* 4 quads: one query vector */
                int8x16_t qv[NEON_QUERY_BLOCK][2];
#pragma GCC unroll 4
                for (int i = 0; i < nq; i++)
#pragma GCC unroll 2
                    for (int k = 0; k < terms; k++)
                        qv[i][k] = vld1q_s8(qint[k][i] + 4 * qg);
#pragma GCC unroll 4
                for (int pl = 0; pl < 4 / per; pl++) { /* byte planes holding these quads */
                    int plane = (c0 / 4 + qg) / per + pl;
                    if (plane >= nplane)
                        break;
                    uint8x16_t raw[4], hraw[4]; /* 4 tokens x 4 bytes each; the group has g >= t0 + 16 tokens */
                    int hbit = 0; /* q3: the high bits of quads 4*plane.. at bits hbit.. of the 1-bit plane's row */
#pragma GCC unroll 4
                    for (int v = 0; v < nvec; v++) {
                        raw[v] = vld1q_u8(group + ((size_t)plane * g + t0) * 4 + 16 * v);
                        hraw[v] = raw[v];
                    }
                    if (bits == 3) {
                        hbit = 4 * (plane % 2);
#pragma GCC unroll 4
                        for (int v = 0; v < nvec; v++)
                            hraw[v] = vld1q_u8(high + ((size_t)(plane / 2) * g + t0) * 4 + 16 * v);
                    }
#pragma GCC unroll 4
                    for (int j = 0; j < per; j++) /* padding quads: code bits and query bytes are 0 */
#pragma GCC unroll 4
                        for (int v = 0; v < nvec; v++) {
                            int8x16_t codes = signed_codes(raw[v], hraw[v], bits, j, hbit + j);
#pragma GCC unroll 4
                            for (int i = 0; i < nq; i++)
#pragma GCC unroll 2
                                for (int k = 0; k < terms; k++)
                                    acc[i][v][k] = dot_lane(acc[i][v][k], codes, qv[i][k], pl * per + j);
                        }
                }
            }
            int cnt = n - t0 < block ? n - t0 : block;
#pragma GCC unroll 4
            for (int i = 0; i < nq; i++) {
                float *dst = s + (size_t)i * lds + t0;
                float32x4_t out[4];
                if (c0 == 0) {
                    for (int v = 0; v < nvec; v++)
                        out[v] = vdupq_n_f32(bias[i]);
                } else {
                    load_f32_vecs(dst, cnt, nvec, out); /* later channel chunks add on */
                }
#pragma GCC unroll 4
                for (int v = 0; v < nvec; v++)
                    out[v] = vaddq_f32(out[v], dequantize_sums(acc[i][v], terms, corr[i], step[i]));
                store_f32_vecs(dst, cnt, nvec, out);
            }
        }
    }
}

/* ---- V: sums of nq (<= 4) weight rows ----
 * Per chunk of up to 64 tokens and channel group: the folded weights
 * w_t*scale_t as int8 (16 bytes = 4 token quads per vector), then per block
 * of 16 channels (8 for q8), 16 int32 accumulators [term][row][4 channels]:
 * a token quad's code bytes are vectors of 4 channels x 4 tokens, SDOT'd
 * with the quad's 4 weight bytes. */
NEON_INLINE void accum_v_dot_cols(int bits, const uint8_t *block, int dv, int g, int t0, int nt, const int nq,
                                  int8_t wint[2][NEON_QUERY_BLOCK][NEON_V_CHUNK], const float *step,
                                  int32_t corr[][2], const float *bias, float *acc, int c0, int nc)
{
    const int per = 8 / slimkv_plane_bits(bits), terms = dot_terms(bits), nvec = 4 / terms;
    const uint8_t *high = block + slimkv_v_hi_plane_offset(dv, g); /* q3 only */
    int32x4_t ia[NEON_QUERY_BLOCK][4][2]; /* [row][channel vector][term] */
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nvec; v++)
#pragma GCC unroll 2
            for (int k = 0; k < terms; k++)
                ia[i][v][k] = vdupq_n_s32(0);
    for (int u0 = 0; u0 < (nt + 15) / 16 * 4; u0 += 4) { /* 4 token quads: one weight vector */
        int8x16_t wv[NEON_QUERY_BLOCK][2];
#pragma GCC unroll 4
        for (int i = 0; i < nq; i++)
#pragma GCC unroll 2
            for (int k = 0; k < terms; k++)
                wv[i][k] = vld1q_s8(wint[k][i] + 4 * u0);
#pragma GCC unroll 4
        for (int pl = 0; pl < 4 / per; pl++) { /* byte planes holding these quads, inside the block's g tokens */
            int plane = (t0 / 4 + u0) / per + pl;
            uint8x16_t raw[4], hraw[4];
            int hbit = 0; /* q3: the high bits of quads 4*plane.. at bits hbit.. of the 1-bit plane's lanes */
            load_code_lanes(block + ((size_t)plane * dv + c0) * 4, nc, nvec, raw);
            if (bits == 3) {
                hbit = 4 * (plane % 2);
                load_code_lanes(high + ((size_t)(plane / 2) * dv + c0) * 4, nc, nvec, hraw);
            } else {
#pragma GCC unroll 4
                for (int v = 0; v < nvec; v++)
                    hraw[v] = raw[v];
            }
#pragma GCC unroll 4
            for (int j = 0; j < per; j++) /* quads past n: weights are 0 */
#pragma GCC unroll 4
                for (int v = 0; v < nvec; v++) {
                    int8x16_t codes = signed_codes(raw[v], hraw[v], bits, j, hbit + j);
#pragma GCC unroll 4
                    for (int i = 0; i < nq; i++)
#pragma GCC unroll 2
                        for (int k = 0; k < terms; k++)
                            ia[i][v][k] = dot_lane(ia[i][v][k], codes, wv[i][k], pl * per + j);
                }
            if (per > 1 && pl + 1 < 4 / per) /* q4: two planes per step */
                keep_loads_below();
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < nq; i++) {
        float32x4_t a[4];
        load_f32_vecs(acc + (size_t)i * dv + c0, nc, nvec, a);
#pragma GCC unroll 4
        for (int v = 0; v < nvec; v++)
            a[v] = vaddq_f32(vaddq_f32(a[v], vdupq_n_f32(bias[i])), dequantize_sums(ia[i][v], terms, corr[i], step[i]));
        store_f32_vecs(acc + (size_t)i * dv + c0, nc, nvec, a);
    }
}

NEON_INLINE void accum_v_dot_block(int bits, slimkv_format fmt, const uint8_t *block, int dv, int g, int n,
                                   const float *w, int ldw, const int nq, float *acc)
{
    const int nvg = (dv + g - 1) / g, lanes = 16 / dot_terms(bits);
    const uint8_t *scale_p = block + slimkv_v_params_offset(fmt, dv, g), *min_p = scale_p + 2 * (size_t)g * nvg;
    for (int t0 = 0; t0 < n; t0 += NEON_V_CHUNK) {
        int nt = n - t0 < NEON_V_CHUNK ? n - t0 : NEON_V_CHUNK, padded = (nt + 15) & ~15;
        for (int j = 0; j < nvg; j++) {
            float fw[NEON_QUERY_BLOCK][NEON_V_CHUNK], bias[NEON_QUERY_BLOCK], step[NEON_QUERY_BLOCK];
            int8_t wint[2][NEON_QUERY_BLOCK][NEON_V_CHUNK];
            int32_t corr[NEON_QUERY_BLOCK][2];
            fold_v_weights(scale_p, min_p, nvg, j, t0, nt, w, ldw, nq, fw, bias);
            for (int i = 0; i < nq; i++) {
                int8_t *out[2] = {wint[0][i], wint[1][i]};
                int32_t sums[2];
                step[i] = quantize_int8(fw[i], padded, dot_terms(bits), out, sums);
                code_offsets(bits, sums, corr[i]);
            }
            int c_end = (j + 1) * g < dv ? (j + 1) * g : dv; /* g is a multiple of 16: blocks stay in the group */
            int c = j * g;
            for (; c + lanes <= c_end; c += lanes) /* full blocks, then the tail: separate call sites */
                accum_v_dot_cols(bits, block, dv, g, t0, nt, nq, wint, step, corr, bias, acc, c, lanes);
            if (c < c_end)
                accum_v_dot_cols(bits, block, dv, g, t0, nt, nq, wint, step, corr, bias, acc, c, c_end - c);
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

static void slimkv_score_k_q8_neondot(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                      int lds)
{
    score_k_dot(8, SLIMKV_Q8, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_score_k_q4_neondot(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                      int lds)
{
    score_k_dot(4, SLIMKV_Q4, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_score_k_q2_neondot(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                      int lds)
{
    score_k_dot(2, SLIMKV_Q2, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_score_k_q3_neondot(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                      int lds)
{
    score_k_dot(3, SLIMKV_Q3, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q8_neondot(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                      float *acc)
{
    accum_v_dot(8, SLIMKV_Q8, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_accum_v_q4_neondot(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                      float *acc)
{
    accum_v_dot(4, SLIMKV_Q4, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_accum_v_q2_neondot(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                      float *acc)
{
    accum_v_dot(2, SLIMKV_Q2, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_accum_v_q3_neondot(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                      float *acc)
{
    accum_v_dot(3, SLIMKV_Q3, block, dv, g, n, w, ldw, nq, acc);
}


/* ---- fused decode over whole groups ---- */

/* Index: format - SLIMKV_Q8. */
static const slimkv_score_k_fn quant_score_neondot[4] = {
    slimkv_score_k_q8_neondot,
    slimkv_score_k_q4_neondot,
    slimkv_score_k_q2_neondot,
    slimkv_score_k_q3_neondot};
static const slimkv_accum_v_fn quant_accum_neondot[4] = {
    slimkv_accum_v_q8_neondot,
    slimkv_accum_v_q4_neondot,
    slimkv_accum_v_q2_neondot,
    slimkv_accum_v_q3_neondot};

/* Every pair of q8 / q4 / q2 / q3 (formats SLIMKV_Q8..SLIMKV_Q3). */
static void slimkv_attend_groups_quant_neondot(const slimkv_group_span *span, const float *q, int rows, float *m,
                                               float *l, float *acc)
{
    const slimkv_tile_ops ops = {quant_score_neondot[span->k_format - SLIMKV_Q8],
                                 quant_accum_neondot[span->v_format - SLIMKV_Q8],
                                 slimkv_exp_sum_neon, slimkv_max_f32_neon, slimkv_scale_f32_neon, NULL,
                                 quant_score_neondot[0]};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

static slimkv_score_k_fn score_k_of_neondot(slimkv_format fmt)
{
    return slimkv_is_quantized(fmt) ? quant_score_neondot[fmt - SLIMKV_Q8] : slimkv_dense_score_k_neon[fmt];
}

static slimkv_accum_v_fn accum_v_of_neondot(slimkv_format fmt)
{
    return slimkv_is_quantized(fmt) ? quant_accum_neondot[fmt - SLIMKV_Q8] : slimkv_dense_accum_v_neon[fmt];
}

/* Dense K with quantized V, or quantized K with dense V. */
static void slimkv_attend_groups_mixed_neondot(const slimkv_group_span *span, const float *q, int rows, float *m,
                                               float *l, float *acc)
{
    const slimkv_tile_ops ops = {score_k_of_neondot(span->k_format), accum_v_of_neondot(span->v_format),
                                 slimkv_exp_sum_neon, slimkv_max_f32_neon, slimkv_scale_f32_neon, NULL,
                                 score_k_of_neondot(SLIMKV_Q8)};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

/* SparK K groups of any format (NEON scores), V blocks of any format. */
static void slimkv_attend_spark_groups_neondot(const slimkv_group_span *span, const float *q, int rows, float *m,
                                               float *l, float *acc)
{
    const slimkv_tile_ops ops = {NULL, accum_v_of_neondot(span->v_format), slimkv_exp_sum_neon,
                                 slimkv_max_f32_neon, slimkv_scale_f32_neon, slimkv_spark_score_neon[span->k_format],
                                 NULL};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

void slimkv_kernels_use_dotprod_neon(slimkv_kernels *k)
{
    for (int kf = SLIMKV_Q8; kf <= SLIMKV_Q3; kf++)
        for (int vf = SLIMKV_Q8; vf <= SLIMKV_Q3; vf++)
            k->attend_groups[kf][vf] = slimkv_attend_groups_quant_neondot;
    for (int kf = 0; kf < SLIMKV_FORMAT_COUNT; kf++)
        for (int vf = 0; vf < SLIMKV_FORMAT_COUNT; vf++) {
            if (slimkv_is_quantized(kf) != slimkv_is_quantized(vf))
                k->attend_groups[kf][vf] = slimkv_attend_groups_mixed_neondot;
            if (kf != SLIMKV_Q3) /* not a SparK record format */
                k->attend_spark_groups[kf][vf] = slimkv_attend_spark_groups_neondot;
        }
    k->score_k[SLIMKV_Q8] = slimkv_score_k_q8_neondot;
    k->score_k[SLIMKV_Q4] = slimkv_score_k_q4_neondot;
    k->score_k[SLIMKV_Q2] = slimkv_score_k_q2_neondot;
    k->score_k[SLIMKV_Q3] = slimkv_score_k_q3_neondot;
    k->accum_v[SLIMKV_Q8] = slimkv_accum_v_q8_neondot;
    k->accum_v[SLIMKV_Q4] = slimkv_accum_v_q4_neondot;
    k->accum_v[SLIMKV_Q2] = slimkv_accum_v_q2_neondot;
    k->accum_v[SLIMKV_Q3] = slimkv_accum_v_q3_neondot;
}

#endif /* dot-product intrinsics available */
