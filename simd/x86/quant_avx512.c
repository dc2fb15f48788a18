/* AVX-512 bodies of the quantized formats (q8, q4, q2).
 *
 * Packing is bit-exact with scalar.c: the same float operations in the same
 * order, 16 lanes at a time.
 *
 * Scores and V accumulation run on VNNI (vpdpbusd: 4 unsigned codes x 4
 * signed int8 summed into a 32-bit lane), on the byte layouts of kernels.h:
 *   K: a lane is 4 channels of one token, so a register of codes is 16
 *      tokens and a broadcast int8 query quad scores all of them at once;
 *   V: a lane is one channel of 4 tokens, so a register is 16 channels and a
 *      broadcast int8 quad of weights accumulates 4 tokens into each.
 * The folded query q_c*scale_c (K, per group and query) and the folded
 * weights w_t*scale_t (V, per block, query and channel group) are quantized
 * to int8 with a step of max|folded|/127: half a step per term, the error
 * kernels.h and the kernel test allow. The min parts are summed in float
 * once per group: sum_c q_c*min_c, sum_t w_t*min_t. */
#include <immintrin.h>

#include "x86_common.h"

#define ROUND_NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* Mask of the first n of 16 (or 32) lanes, n clamped to [0, 16 or 32]. */
X86_INLINE __mmask16 lanes16(int n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

X86_INLINE __mmask32 lanes32(int n)
{
    return n >= 32 ? (__mmask32)0xffffffffu : n <= 0 ? (__mmask32)0 : (__mmask32)((1u << n) - 1);
}

/* Field `sub` of the bytes of a plane (8/bits fields per byte), as unsigned
 * bytes ready for vpdpbusd. */
X86_INLINE __m512i code_field(__m512i bytes, int bits, int sub)
{
    if (bits == 8)
        return bytes;
    const __m512i field = _mm512_set1_epi8((char)((1 << bits) - 1));
    return _mm512_and_si512(sub ? _mm512_srli_epi16(bytes, (unsigned)(bits * sub)) : bytes, field);
}

/* code = clamp(rint((x - min) * inv), 0, top), as scalar.c's quant_code. */
X86_INLINE __m512i quantize_codes(__m512 x, __m512 mn, __m512 inv, __m512 top)
{
    __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_sub_ps(x, mn), inv), ROUND_NEAREST);
    return _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(r, _mm512_setzero_ps()), top));
}

/* Folded values to int8 with the given inverse step (|result| <= 127). */
X86_INLINE __m128i folded_to_int8(__m512 folded, __m512 inv_step)
{
    return _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(folded, inv_step)));
}

/* ---- packing ---- */

/* Channels whose parameters are computed before their codes are written:
 * 16 quads, whole planes for every bit width. */
#define PACK_K_CHANNELS 64

/* Channels c..c+3 of tokens t..t+3, in the K layout's order [t][c%4]. */
X86_INLINE __m512 load_quad_4_tokens(const float *p, size_t stride)
{
    __m512 x = _mm512_castps128_ps512(_mm_loadu_ps(p));
    x = _mm512_insertf32x4(x, _mm_loadu_ps(p + stride), 1);
    x = _mm512_insertf32x4(x, _mm_loadu_ps(p + 2 * stride), 2);
    return _mm512_insertf32x4(x, _mm_loadu_ps(p + 3 * stride), 3);
}

X86_INLINE void pack_k_quant(const int bits, slimkv_format fmt, const float *src, int dk, int g, uint8_t *group)
{
    const int per = 8 / bits;
    const __m512 top = _mm512_set1_ps((float)((1 << bits) - 1)), zero = _mm512_setzero_ps();
    uint8_t *scale_h = group + slimkv_k_params_offset(fmt, dk, g), *min_h = scale_h + 2 * (size_t)dk;
    for (int c0 = 0; c0 < dk; c0 += PACK_K_CHANNELS) {
        const int cn = x86_min(PACK_K_CHANNELS, dk - c0);
        float mins[PACK_K_CHANNELS], invs[PACK_K_CHANNELS];
        /* parameters: a running min/max over the tokens, 16 channels per register */
        for (int v = 0; v < cn; v += 16) {
            const __mmask16 m = lanes16(cn - v);
            const float *col = src + c0 + v;
            __m512 lo = _mm512_maskz_loadu_ps(m, col), hi = lo;
            for (int t = 1; t < g; t++) {
                __m512 x = _mm512_maskz_loadu_ps(m, col + (size_t)t * dk);
                lo = _mm512_min_ps(x, lo); /* x < lo ? x : lo: keeps the first of equals, as scalar.c */
                hi = _mm512_max_ps(x, hi);
            }
            __m256i s16 = _mm512_cvtps_ph(_mm512_div_ps(_mm512_sub_ps(hi, lo), top), _MM_FROUND_TO_NEAREST_INT);
            __m256i m16 = _mm512_cvtps_ph(lo, _MM_FROUND_TO_NEAREST_INT);
            _mm256_mask_storeu_epi16(scale_h + 2 * (size_t)(c0 + v), m, s16);
            _mm256_mask_storeu_epi16(min_h + 2 * (size_t)(c0 + v), m, m16);
            __m512 s = _mm512_cvtph_ps(s16);
            _mm512_storeu_ps(mins + v, _mm512_cvtph_ps(m16));
            _mm512_storeu_ps(invs + v, _mm512_maskz_div_ps(_mm512_cmpneq_ps_mask(s, zero), _mm512_set1_ps(1.0f), s));
        }
        /* codes: 4 tokens x one quad per register; the quads of a plane are
         * shifted into place and written as 4 words. Every byte of the code
         * section is written once, padding quads as 0. */
        const int quads = cn / 4, planes = (quads + per - 1) / per;
        for (int p = 0; p < planes; p++) {
            uint8_t *plane = group + (size_t)(c0 / 4 / per + p) * g * 4;
            const int subs = x86_min(per, quads - p * per);
            __m512 mn[4], inv[4];
            for (int sub = 0; sub < subs; sub++) {
                mn[sub] = _mm512_broadcast_f32x4(_mm_loadu_ps(mins + 4 * (p * per + sub)));
                inv[sub] = _mm512_broadcast_f32x4(_mm_loadu_ps(invs + 4 * (p * per + sub)));
            }
            for (int t = 0; t < g; t += 4) {
                const float *x = src + (size_t)t * dk + c0 + 4 * p * per;
                __m512i word = _mm512_setzero_si512();
                for (int sub = 0; sub < subs; sub++) {
                    __m512i code = quantize_codes(load_quad_4_tokens(x + 4 * sub, (size_t)dk), mn[sub], inv[sub], top);
                    word = _mm512_or_si512(word, _mm512_slli_epi32(code, (unsigned)(bits * sub)));
                }
                _mm_storeu_si128((__m128i *)(plane + 4 * (size_t)t), _mm512_cvtepi32_epi8(word));
            }
        }
    }
}

X86_INLINE void pack_v_quant(const int bits, slimkv_format fmt, const float *src, int dv, int g, uint8_t *block,
                             int slot)
{
    const int per = 8 / bits, nvg = (dv + g - 1) / g, u = slot / 4;
    const float top = (float)((1 << bits) - 1);
    uint8_t *scale_h = block + slimkv_v_params_offset(fmt, dv, g), *min_h = scale_h + 2 * (size_t)g * nvg;
    uint8_t *plane = block + (size_t)(u / per) * dv * 4;
    /* the slot's field inside each channel's word: byte t%4, bits of u%per */
    const int shift = 8 * (slot % 4) + bits * (u % per);
    const __m512i keep = _mm512_set1_epi32((int)~((uint32_t)((1 << bits) - 1) << shift));
    const __m128i shift_count = _mm_cvtsi32_si128(shift);
    for (int j = 0; j < nvg; j++) {
        const int c0 = j * g, cn = x86_min(g, dv - c0);
        const float *x = src + c0;
        __m512 lo = _mm512_set1_ps(x[0]), hi = lo;
        for (int c = 0; c < cn; c += 16) {
            const __mmask16 m = lanes16(cn - c);
            __m512 v = _mm512_maskz_loadu_ps(m, x + c);
            lo = _mm512_mask_min_ps(lo, m, v, lo);
            hi = _mm512_mask_max_ps(hi, m, v, hi);
        }
        float lo_s = _mm512_reduce_min_ps(lo), hi_s = _mm512_reduce_max_ps(hi);
        if (lo_s == 0.0f)
            lo_s = x86_first_equal(x, cn, lo_s);
        if (hi_s == 0.0f)
            hi_s = x86_first_equal(x, cn, hi_s);
        uint16_t s16 = _cvtss_sh((hi_s - lo_s) / top, _MM_FROUND_TO_NEAREST_INT);
        uint16_t m16 = _cvtss_sh(lo_s, _MM_FROUND_TO_NEAREST_INT);
        x86_store_u16(scale_h + 2 * ((size_t)slot * nvg + j), s16);
        x86_store_u16(min_h + 2 * ((size_t)slot * nvg + j), m16);
        float s = _cvtsh_ss(s16);
        const __m512 mn = _mm512_set1_ps(_cvtsh_ss(m16)), inv = _mm512_set1_ps(s == 0.0f ? 0.0f : 1.0f / s);
        /* read-modify-write of the channel words: only this slot's bits change */
        for (int c = 0; c < cn; c += 16) {
            const __mmask16 m = lanes16(cn - c);
            __m512i code = quantize_codes(_mm512_maskz_loadu_ps(m, x + c), mn, inv, _mm512_set1_ps(top));
            uint8_t *words = plane + 4 * (size_t)(c0 + c);
            __m512i old = _mm512_maskz_loadu_epi32(m, words);
            _mm512_mask_storeu_epi32(words, m,
                                     _mm512_or_si512(_mm512_and_si512(old, keep), _mm512_sll_epi32(code, shift_count)));
        }
    }
}

/* ---- K scores ---- */

/* Quads folded at once (256 channels): bounds the int8 query buffer. Longer
 * heads take several folds, each with its own (finer) step. */
#define K_FOLD_QUADS 64

typedef struct k_fold {
    int32_t words[X86_QUERY_CHUNK][K_FOLD_QUADS]; /* int8 query of each quad, 0 past the channels */
    float step[X86_QUERY_CHUNK], bias[X86_QUERY_CHUNK];
} k_fold;

/* q_c * scale_c ~ step * int8, bias = sum_c q_c * min_c, over channels
 * [c0, c0 + cn) of qn queries (rows of dk floats). */
static void fold_k_queries(const uint8_t *params, int dk, int c0, int cn, const float *q, int qn, k_fold *f)
{
    const uint8_t *scale_h = params + 2 * (size_t)c0, *min_h = params + 2 * ((size_t)dk + c0);
    for (int i = 0; i < qn; i++) {
        const float *qi = q + (size_t)i * dk + c0;
        float folded[4 * K_FOLD_QUADS];
        __m512 amax = _mm512_setzero_ps(), bias = _mm512_setzero_ps();
        for (int c = 0; c < cn; c += 16) {
            const __mmask16 m = lanes16(cn - c);
            __m512 qv = _mm512_maskz_loadu_ps(m, qi + c);
            __m512 fv = _mm512_mul_ps(qv, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, scale_h + 2 * c)));
            _mm512_storeu_ps(folded + c, fv);
            amax = _mm512_max_ps(amax, _mm512_abs_ps(fv));
            bias = _mm512_fmadd_ps(qv, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, min_h + 2 * c)), bias);
        }
        float a = _mm512_reduce_max_ps(amax);
        f->step[i] = a / X86_INT8_LIMIT;
        f->bias[i] = _mm512_reduce_add_ps(bias);
        const __m512 inv_step = _mm512_set1_ps(a > 0.0f ? X86_INT8_LIMIT / a : 0.0f);
        /* lanes past cn hold 0, so the words of padding quads are 0 */
        for (int c = 0; c < cn; c += 16)
            _mm_storeu_si128((__m128i *)&f->words[i][c / 4], folded_to_int8(_mm512_loadu_ps(folded + c), inv_step));
    }
}

/* Scores of the tokens t0 .. t0+16*NV-1 (stored for t < n) for QN queries
 * from the planes of `quads` quads starting at plane `plane0`. */
X86_INLINE void score_k_block(const int bits, const int QN, const int NV, const uint8_t *group, int g, int plane0,
                              int quads, int t0, int n, const k_fold *f, float *s, int lds, int accumulate)
{
    const int per = 8 / bits, planes = (quads + per - 1) / per;
    __m512i acc[X86_QUERY_CHUNK][2];
    for (int i = 0; i < QN; i++)
        for (int v = 0; v < NV; v++)
            acc[i][v] = _mm512_setzero_si512();
    for (int p = 0; p < planes; p++) {
        const uint8_t *row = group + ((size_t)(plane0 + p) * g + t0) * 4;
        __m512i bytes[2];
        for (int v = 0; v < NV; v++)
            bytes[v] = _mm512_loadu_si512(row + 64 * v);
        for (int sub = 0; sub < per; sub++) {
            const int quad = p * per + sub;
            if (quad >= quads)
                break;
            __m512i codes[2];
            for (int v = 0; v < NV; v++)
                codes[v] = code_field(bytes[v], bits, sub);
            for (int i = 0; i < QN; i++) {
                const __m512i w = _mm512_set1_epi32(f->words[i][quad]);
                for (int v = 0; v < NV; v++)
                    acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], codes[v], w);
            }
        }
    }
    for (int i = 0; i < QN; i++) {
        const __m512 step = _mm512_set1_ps(f->step[i]), bias = _mm512_set1_ps(f->bias[i]);
        for (int v = 0; v < NV; v++) {
            float *dst = s + (size_t)i * lds + t0 + 16 * v;
            const __mmask16 m = lanes16(n - t0 - 16 * v);
            __m512 r = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][v]), step, bias);
            if (accumulate)
                r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, dst));
            _mm512_mask_storeu_ps(dst, m, r);
        }
    }
}

X86_INLINE void score_k_quant(const int bits, slimkv_format fmt, const uint8_t *group, int dk, int g, int n,
                              const float *q, int nq, float *s, int lds)
{
    const int per = 8 / bits, nquad = dk / 4;
    const uint8_t *params = group + slimkv_k_params_offset(fmt, dk, g);
    k_fold f;
    for (int i0 = 0; i0 < nq;) {
        const int qn = nq - i0 >= X86_QUERY_CHUNK ? X86_QUERY_CHUNK : 1;
        const float *qi = q + (size_t)i0 * dk;
        float *si = s + (size_t)i0 * lds;
        int k0 = 0;
        do { /* at least once: dk == 0 scores 0, as the oracle */
            const int kn = x86_min(K_FOLD_QUADS, nquad - k0);
            fold_k_queries(params, dk, 4 * k0, 4 * kn, qi, qn, &f);
            for (int t0 = 0; t0 < n; t0 += 32) {
                const int two = n - t0 > 16, plane0 = k0 / per;
                if (qn == X86_QUERY_CHUNK && two)
                    score_k_block(bits, X86_QUERY_CHUNK, 2, group, g, plane0, kn, t0, n, &f, si, lds, k0 > 0);
                else if (qn == X86_QUERY_CHUNK)
                    score_k_block(bits, X86_QUERY_CHUNK, 1, group, g, plane0, kn, t0, n, &f, si, lds, k0 > 0);
                else if (two)
                    score_k_block(bits, 1, 2, group, g, plane0, kn, t0, n, &f, si, lds, k0 > 0);
                else
                    score_k_block(bits, 1, 1, group, g, plane0, kn, t0, n, &f, si, lds, k0 > 0);
            }
            k0 += K_FOLD_QUADS;
        } while (k0 < nquad);
        i0 += qn;
    }
}

/* ---- V accumulation ---- */

/* Tokens folded at once: 16 quads, whole planes for every bit width. */
#define V_FOLD_TOKENS 64

typedef struct v_fold {
    int32_t words[X86_QUERY_CHUNK][V_FOLD_TOKENS / 4]; /* int8 weights of each token quad */
    float step[X86_QUERY_CHUNK], bias[X86_QUERY_CHUNK];
} v_fold;

/* Parameter of channel group j for tokens t .. t+15 (lanes m; the others 0).
 * The parameters are stored [token][group]; the column is picked by a plain
 * load (one group), a two-register permute (up to 4 groups: 16 tokens lie
 * within 64 halves), or a gather. t + 16 <= g, so every read is inside the
 * block. */
X86_INLINE __m512 param_column(const uint8_t *halves, int nvg, int j, int t, __mmask16 m)
{
    const uint8_t *base = halves + 2 * (size_t)t * nvg;
    __m256i h;
    if (nvg == 1) {
        h = _mm256_maskz_loadu_epi16(m, base);
    } else if (nvg <= 4) {
        const __m512i iota = _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14,
                                              13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        const int len = 16 * nvg;
        __m512i lo = _mm512_maskz_loadu_epi16(lanes32(len), base);
        __m512i hi = _mm512_maskz_loadu_epi16(lanes32(len - 32), base + 64);
        __m512i idx = _mm512_add_epi16(_mm512_mullo_epi16(iota, _mm512_set1_epi16((short)nvg)),
                                       _mm512_set1_epi16((short)j));
        h = _mm512_castsi512_si256(_mm512_permutex2var_epi16(lo, idx, hi));
    } else {
        /* 32-bit reads ending at each wanted half (2 bytes before the first
         * one is still inside the block: codes precede scales, scales mins) */
        const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        __m512i idx = _mm512_add_epi32(_mm512_mullo_epi32(iota, _mm512_set1_epi32(nvg)), _mm512_set1_epi32(j - 1));
        __m512i raw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base, 2);
        h = _mm512_cvtepi32_epi16(_mm512_srli_epi32(raw, 16));
    }
    return _mm512_maskz_mov_ps(m, _mm512_cvtph_ps(h));
}

/* w_t * scale_t ~ step * int8, bias = sum_t w_t * min_t over tokens
 * [t0, t0 + tn) of channel group j, for qn weight rows. */
static void fold_v_weights(const uint8_t *scale_h, const uint8_t *min_h, int nvg, int j, int t0, int tn,
                           const float *w, int ldw, int qn, v_fold *f)
{
    const int nv = (tn + 15) / 16;
    __m512 sc[V_FOLD_TOKENS / 16], mn[V_FOLD_TOKENS / 16];
    for (int v = 0; v < nv; v++) {
        const __mmask16 m = lanes16(tn - 16 * v);
        sc[v] = param_column(scale_h, nvg, j, t0 + 16 * v, m);
        mn[v] = param_column(min_h, nvg, j, t0 + 16 * v, m);
    }
    for (int i = 0; i < qn; i++) {
        __m512 folded[V_FOLD_TOKENS / 16], amax = _mm512_setzero_ps(), bias = _mm512_setzero_ps();
        for (int v = 0; v < nv; v++) {
            __m512 wv = _mm512_maskz_loadu_ps(lanes16(tn - 16 * v), w + (size_t)i * ldw + t0 + 16 * v);
            folded[v] = _mm512_mul_ps(wv, sc[v]);
            amax = _mm512_max_ps(amax, _mm512_abs_ps(folded[v]));
            bias = _mm512_fmadd_ps(wv, mn[v], bias);
        }
        float a = _mm512_reduce_max_ps(amax);
        f->step[i] = a / X86_INT8_LIMIT;
        f->bias[i] = _mm512_reduce_add_ps(bias);
        const __m512 inv_step = _mm512_set1_ps(a > 0.0f ? X86_INT8_LIMIT / a : 0.0f);
        for (int v = 0; v < nv; v++) /* tokens past tn have weight 0 */
            _mm_storeu_si128((__m128i *)&f->words[i][4 * v], folded_to_int8(folded[v], inv_step));
    }
}

/* acc[i][c ..] += step_i * sum_t int8_it * code_tc + bias_i for QN rows and
 * the NV channel registers starting at c (the last one ending at c_end),
 * over the token quads of the fold starting at quad q0. */
X86_INLINE void accum_v_block(const int bits, const int QN, const int NV, const uint8_t *block, int dv, int c,
                              int c_end, int q0, int quads, const v_fold *f, float *acc)
{
    const int per = 8 / bits, planes = (quads + per - 1) / per;
    const __mmask16 last = lanes16(c_end - c - 16 * (NV - 1));
    __m512i sum[X86_QUERY_CHUNK][4];
    for (int i = 0; i < QN; i++)
        for (int v = 0; v < NV; v++)
            sum[i][v] = _mm512_setzero_si512();
    for (int p = 0; p < planes; p++) {
        const uint8_t *row = block + ((size_t)(q0 / per + p) * dv + c) * 4;
        __m512i bytes[4];
        for (int v = 0; v < NV; v++)
            bytes[v] = v < NV - 1 ? _mm512_loadu_si512(row + 64 * v) : _mm512_maskz_loadu_epi32(last, row + 64 * v);
        for (int sub = 0; sub < per; sub++) {
            const int quad = p * per + sub;
            if (quad >= quads)
                break;
            __m512i codes[4];
            for (int v = 0; v < NV; v++)
                codes[v] = code_field(bytes[v], bits, sub);
            for (int i = 0; i < QN; i++) {
                const __m512i w = _mm512_set1_epi32(f->words[i][quad]);
                for (int v = 0; v < NV; v++)
                    sum[i][v] = _mm512_dpbusd_epi32(sum[i][v], codes[v], w);
            }
        }
    }
    for (int i = 0; i < QN; i++) {
        const __m512 step = _mm512_set1_ps(f->step[i]), bias = _mm512_set1_ps(f->bias[i]);
        for (int v = 0; v < NV; v++) {
            float *dst = acc + (size_t)i * dv + c + 16 * v;
            const __mmask16 m = v < NV - 1 ? (__mmask16)0xffff : last;
            __m512 a = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst), bias);
            _mm512_mask_storeu_ps(dst, m, _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[i][v]), step, a));
        }
    }
}

/* Channels [c, c_end) of one group, up to 64 per pass. */
X86_INLINE void accum_v_group(const int bits, const int QN, const uint8_t *block, int dv, int c, int c_end, int q0,
                              int quads, const v_fold *f, float *acc)
{
    for (; c < c_end; c += 64) {
        switch (x86_min(4, (c_end - c + 15) / 16)) {
        case 4: accum_v_block(bits, QN, 4, block, dv, c, c_end, q0, quads, f, acc); break;
        case 3: accum_v_block(bits, QN, 3, block, dv, c, c_end, q0, quads, f, acc); break;
        case 2: accum_v_block(bits, QN, 2, block, dv, c, c_end, q0, quads, f, acc); break;
        default: accum_v_block(bits, QN, 1, block, dv, c, c_end, q0, quads, f, acc); break;
        }
    }
}

X86_INLINE void accum_v_quant(const int bits, slimkv_format fmt, const uint8_t *block, int dv, int g, int n,
                              const float *w, int ldw, int nq, float *acc)
{
    const int nvg = (dv + g - 1) / g;
    const uint8_t *scale_h = block + slimkv_v_params_offset(fmt, dv, g), *min_h = scale_h + 2 * (size_t)g * nvg;
    v_fold f;
    for (int i0 = 0; i0 < nq;) {
        const int qn = nq - i0 >= X86_QUERY_CHUNK ? X86_QUERY_CHUNK : 1;
        const float *wi = w + (size_t)i0 * ldw;
        float *ai = acc + (size_t)i0 * dv;
        for (int t0 = 0; t0 < n; t0 += V_FOLD_TOKENS) {
            const int tn = x86_min(V_FOLD_TOKENS, n - t0), quads = (tn + 3) / 4;
            for (int j = 0; j < nvg; j++) {
                const int c = j * g, c_end = x86_min(dv, c + g);
                fold_v_weights(scale_h, min_h, nvg, j, t0, tn, wi, ldw, qn, &f);
                if (qn == X86_QUERY_CHUNK)
                    accum_v_group(bits, X86_QUERY_CHUNK, block, dv, c, c_end, t0 / 4, quads, &f, ai);
                else
                    accum_v_group(bits, 1, block, dv, c, c_end, t0 / 4, quads, &f, ai);
            }
        }
        i0 += qn;
    }
}

#define QUANT_ENTRY_POINTS(NAME, BITS, FMT)                                                                  \
    static void pack_k_##NAME(const float *src, int dk, int g, uint8_t *group)                               \
    {                                                                                                        \
        pack_k_quant(BITS, FMT, src, dk, g, group);                                                          \
    }                                                                                                        \
    static void pack_v_##NAME(const float *src, int dv, int g, uint8_t *block, int slot)                     \
    {                                                                                                        \
        pack_v_quant(BITS, FMT, src, dv, g, block, slot);                                                    \
    }                                                                                                        \
    static void score_k_##NAME(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s, \
                               int lds)                                                                      \
    {                                                                                                        \
        score_k_quant(BITS, FMT, group, dk, g, n, q, nq, s, lds);                                            \
    }                                                                                                        \
    static void accum_v_##NAME(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,  \
                               float *acc)                                                                   \
    {                                                                                                        \
        accum_v_quant(BITS, FMT, block, dv, g, n, w, ldw, nq, acc);                                          \
    }

QUANT_ENTRY_POINTS(q8, 8, SLIMKV_Q8)
QUANT_ENTRY_POINTS(q4, 4, SLIMKV_Q4)
QUANT_ENTRY_POINTS(q2, 2, SLIMKV_Q2)

void slimkv_x86_quant_init_avx512(slimkv_kernels *k)
{
#define SET_FORMAT(FMT, NAME)                                                                                \
    k->pack_k[FMT] = pack_k_##NAME;                                                                          \
    k->pack_v[FMT] = pack_v_##NAME;                                                                          \
    k->score_k[FMT] = score_k_##NAME;                                                                        \
    k->accum_v[FMT] = accum_v_##NAME;
    SET_FORMAT(SLIMKV_Q8, q8)
    SET_FORMAT(SLIMKV_Q4, q4)
    SET_FORMAT(SLIMKV_Q2, q2)
#undef SET_FORMAT
}
