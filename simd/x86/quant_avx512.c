/* AVX-512 bodies of the quantized formats (q8, q4, q3, q2).
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
 * once per group: sum_c q_c*min_c, sum_t w_t*min_t.
 * q8 K keeps a second int8 level, the residual in 1/254 steps (about 15
 * bits): one outlier channel sets the step for all, and with q8's fine
 * codes a 7-bit query would dominate the attention error. */
#include <immintrin.h>

#include "x86_common.h"
#include "tile_loop.h"

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

/* Bit k of every byte of a q3 high plane moved to bit 2 (the others 0):
 * what that byte's code gains over its low 2 bits. */
X86_INLINE __m512i high_field(__m512i bytes, int k)
{
    const __m512i bit2 = _mm512_set1_epi8(4);
    return _mm512_and_si512(k >= 2 ? _mm512_srli_epi16(bytes, (unsigned)(k - 2)) : _mm512_slli_epi16(bytes, (unsigned)(2 - k)),
                            bit2);
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

/* acc += dot of 4 unsigned codes with 4 signed int8, per 32-bit lane
 * (vpdpbusd). GCC 12 copies the accumulator around the intrinsic inside
 * loops (two register moves per instruction); the asm form accumulates in
 * place. (Broadcasting the weights from memory inside the instruction
 * measured slower on Zen 5 than one register broadcast per word.) */
X86_INLINE __m512i dot_accumulate(__m512i acc, __m512i codes, __m512i weights)
{
#if defined(__GNUC__) && !defined(__clang__)
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(codes), "v"(weights));
    return acc;
#else
    return _mm512_dpbusd_epi32(acc, codes, weights);
#endif
}

/* code = clamp(rint((x - min) * inv), 0, top), as scalar.c's quant_code. */
X86_INLINE __m512i quantize_codes(__m512 x, __m512 mn, __m512 inv, __m512 top)
{
    __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_sub_ps(x, mn), inv), ROUND_NEAREST);
    return _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(r, _mm512_setzero_ps()), top));
}

X86_INLINE __m512 combine(__m512 a, __m512 b, int is_max)
{
    return is_max ? _mm512_max_ps(a, b) : _mm512_add_ps(a, b);
}

/* Max (or sum) over the lanes of four registers at once: 128-bit block i of
 * the result holds the result for x[i] in all 4 lanes. One shuffle tree
 * instead of four horizontal reductions. */
X86_INLINE __m512 reduce_four(const __m512 x[4], int is_max)
{
    __m512 x01 = combine(_mm512_shuffle_f32x4(x[0], x[1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(x[0], x[1], _MM_SHUFFLE(3, 2, 3, 2)), is_max);
    __m512 x23 = combine(_mm512_shuffle_f32x4(x[2], x[3], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(x[2], x[3], _MM_SHUFFLE(3, 2, 3, 2)), is_max);
    __m512 y = combine(_mm512_shuffle_f32x4(x01, x23, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(x01, x23, _MM_SHUFFLE(3, 1, 3, 1)), is_max);
    y = combine(y, _mm512_permute_ps(y, _MM_SHUFFLE(1, 0, 3, 2)), is_max);
    return combine(y, _mm512_permute_ps(y, _MM_SHUFFLE(2, 3, 0, 1)), is_max);
}

/* |a| max |b|, sign cleared (vrangeps) */
X86_INLINE __m512 max_abs(__m512 a, __m512 b)
{
    return _mm512_range_ps(a, b, 0x0b);
}

/* The steps (max |folded| / 127) and min sums of up to four folded rows
 * (row i in lane 4i), and the inverse steps of the rows (0 for a row of
 * zeros), each broadcast to a register. */
X86_INLINE void finish_fold(const int QN, const __m512 amax[4], const __m512 bias[4], float *step_lanes,
                            float *bias_lanes, __m512 inv_step[4])
{
    const __m512 a = reduce_four(amax, 1), limit = _mm512_set1_ps(X86_INT8_LIMIT);
    _mm512_storeu_ps(step_lanes, _mm512_div_ps(a, limit));
    _mm512_storeu_ps(bias_lanes, reduce_four(bias, 0));
    const __m512 inv = _mm512_maskz_div_ps(_mm512_cmpneq_ps_mask(a, _mm512_setzero_ps()), limit, a);
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        inv_step[i] = _mm512_permutexvar_ps(_mm512_set1_epi32(4 * i), inv);
}

/* 16 values of QN rows (already in steps, |x| <= 127) to int8, stored as
 * words [quad][row]: the 4 int8 of row i for quad k at dst[k * QN + i]. */
X86_INLINE void store_int8_words(const int QN, int32_t *dst, const __m512 x[4])
{
    if (QN == 4) { /* per 128-bit lane k: quad k of rows 0, 1, 2, 3 */
        __m512i r01 = _mm512_packs_epi32(_mm512_cvtps_epi32(x[0]), _mm512_cvtps_epi32(x[1]));
        __m512i r23 = _mm512_packs_epi32(_mm512_cvtps_epi32(x[2]), _mm512_cvtps_epi32(x[3]));
        _mm512_storeu_si512(dst, _mm512_packs_epi16(r01, r23));
    } else if (QN == 1) {
        _mm_storeu_si128((__m128i *)dst, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(x[0])));
    } else { /* 2 or 3 rows: each row's 4 words to their places */
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            int32_t words[4];
            _mm_storeu_si128((__m128i *)words, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(x[i])));
            for (int k = 0; k < 4; k++)
                dst[k * QN + i] = words[k];
        }
    }
}

/* The residual of the values rounded by store_int8_words (x - rint(x),
 * exact, in [-0.5, 0.5]) in 1/FINE_LEVELS steps, as int8 words alike. */
#define FINE_LEVELS 254.0f
X86_INLINE void store_fine_words(const int QN, int32_t *dst, const __m512 x[4])
{
    __m512 fine[4];
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        fine[i] = _mm512_mul_ps(_mm512_sub_ps(x[i], _mm512_roundscale_ps(x[i], ROUND_NEAREST)),
                                _mm512_set1_ps(FINE_LEVELS));
    store_int8_words(QN, dst, fine);
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
    const int per = 8 / slimkv_plane_bits(bits);
    const __m512 top = _mm512_set1_ps((float)((1 << bits) - 1)), zero = _mm512_setzero_ps();
    uint8_t *scale_h = group + slimkv_k_params_offset(fmt, dk, g), *min_h = scale_h + 2 * (size_t)dk;
    /* q3: the high bits are ORed into their plane, which starts zeroed */
    uint8_t *high = group + slimkv_k_hi_plane_offset(dk, g);
    if (bits == 3)
        memset(high, 0, (size_t)(dk / 4 + 7) / 8 * g * 4);
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
            const int plane_index = c0 / 4 / per + p;
            uint8_t *plane = group + (size_t)plane_index * g * 4;
            /* q3: this low plane's high bits, bits 4*(index%2).. of high row index/2 */
            uint8_t *high_row = high + (size_t)(plane_index / 2) * g * 4;
            const int high_base = 4 * (plane_index % 2);
            const int subs = x86_min(per, quads - p * per);
            __m512 mn[4], inv[4];
            for (int sub = 0; sub < subs; sub++) {
                mn[sub] = _mm512_broadcast_f32x4(_mm_loadu_ps(mins + 4 * (p * per + sub)));
                inv[sub] = _mm512_broadcast_f32x4(_mm_loadu_ps(invs + 4 * (p * per + sub)));
            }
            for (int t = 0; t < g; t += 4) {
                const float *x = src + (size_t)t * dk + c0 + 4 * p * per;
                __m512i word = _mm512_setzero_si512(), high_word = _mm512_setzero_si512();
                for (int sub = 0; sub < subs; sub++) {
                    __m512i code = quantize_codes(load_quad_4_tokens(x + 4 * sub, (size_t)dk), mn[sub], inv[sub], top);
                    if (bits == 3) {
                        high_word = _mm512_or_si512(high_word,
                                                    _mm512_slli_epi32(_mm512_srli_epi32(code, 2), (unsigned)(high_base + sub)));
                        code = _mm512_and_si512(code, _mm512_set1_epi32(3));
                    }
                    word = _mm512_or_si512(word, _mm512_slli_epi32(code, (unsigned)(slimkv_plane_bits(bits) * sub)));
                }
                _mm_storeu_si128((__m128i *)(plane + 4 * (size_t)t), _mm512_cvtepi32_epi8(word));
                if (bits == 3) {
                    __m128i *h = (__m128i *)(high_row + 4 * (size_t)t);
                    _mm_storeu_si128(h, _mm_or_si128(_mm_loadu_si128(h), _mm512_cvtepi32_epi8(high_word)));
                }
            }
        }
    }
}

X86_INLINE void pack_v_quant(const int bits, slimkv_format fmt, const float *src, int dv, int g, uint8_t *block,
                             int slot)
{
    const int per = 8 / slimkv_plane_bits(bits), nvg = (dv + g - 1) / g, u = slot / 4;
    const int low_bits = slimkv_plane_bits(bits); /* q3: 2 bits here, the third in the high plane */
    const float top = (float)((1 << bits) - 1);
    uint8_t *scale_h = block + slimkv_v_params_offset(fmt, dv, g), *min_h = scale_h + 2 * (size_t)g * nvg;
    uint8_t *plane = block + (size_t)(u / per) * dv * 4;
    uint8_t *high_plane = block + slimkv_v_hi_plane_offset(dv, g) + (size_t)(u / 8) * dv * 4;
    /* the slot's field inside each channel's word: byte t%4, bits of u%per */
    const int shift = 8 * (slot % 4) + low_bits * (u % per), high_shift = 8 * (slot % 4) + u % 8;
    const __m512i keep = _mm512_set1_epi32((int)~((uint32_t)((1 << low_bits) - 1) << shift));
    const __m512i keep_high = _mm512_set1_epi32((int)~(1u << high_shift));
    const __m128i shift_count = _mm_cvtsi32_si128(shift), high_count = _mm_cvtsi32_si128(high_shift);
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
            if (bits == 3) {
                uint8_t *high_words = high_plane + 4 * (size_t)(c0 + c);
                __m512i old = _mm512_maskz_loadu_epi32(m, high_words);
                _mm512_mask_storeu_epi32(high_words, m,
                                         _mm512_or_si512(_mm512_and_si512(old, keep_high),
                                                         _mm512_sll_epi32(_mm512_srli_epi32(code, 2), high_count)));
                code = _mm512_and_si512(code, _mm512_set1_epi32(3));
            }
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
    int32_t words[K_FOLD_QUADS * X86_QUERY_CHUNK]; /* [quad][query]: 4 int8, 0 past the channels */
    int32_t fine[K_FOLD_QUADS * X86_QUERY_CHUNK];  /* two-level query: the residual, in step/254 */
    float step[16], bias[16];                      /* query i in lane 4i */
} k_fold;

/* q_c * scale_c ~ step * (int8 [+ fine int8 / 254]), bias = sum_c q_c *
 * min_c, over channels [c0, c0 + cn) of QN queries (rows of dk floats). */
X86_INLINE void fold_k_queries(const int QN, const int two_level, const uint8_t *params, int dk, int c0, int cn,
                               const float *q, k_fold *f)
{
    const uint8_t *scale_h = params + 2 * (size_t)c0, *min_h = params + 2 * ((size_t)dk + c0);
    float folded[X86_QUERY_CHUNK][4 * K_FOLD_QUADS];
    __m512 amax[X86_QUERY_CHUNK], bias[X86_QUERY_CHUNK], inv_step[X86_QUERY_CHUNK];
    X86_UNROLL
    for (int i = 0; i < X86_QUERY_CHUNK; i++)
        amax[i] = bias[i] = _mm512_setzero_ps();
    for (int c = 0; c < cn; c += 16) {
        const __mmask16 m = lanes16(cn - c);
        const __m512 sc = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, scale_h + 2 * c));
        const __m512 mn = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, min_h + 2 * c));
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            __m512 qv = _mm512_maskz_loadu_ps(m, q + (size_t)i * dk + c0 + c);
            __m512 fv = _mm512_mul_ps(qv, sc);
            _mm512_storeu_ps(&folded[i][c], fv);
            amax[i] = max_abs(amax[i], fv);
            bias[i] = _mm512_fmadd_ps(qv, mn, bias[i]);
        }
    }
    finish_fold(QN, amax, bias, f->step, f->bias, inv_step);
    /* lanes past cn hold 0: the words of padding quads are 0 */
    for (int c = 0; c < cn; c += 16) {
        __m512 coarse[X86_QUERY_CHUNK], fine[X86_QUERY_CHUNK];
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            __m512 x = _mm512_mul_ps(_mm512_loadu_ps(&folded[i][c]), inv_step[i]);
            coarse[i] = _mm512_roundscale_ps(x, ROUND_NEAREST);
            /* x - coarse is exact and within [-0.5, 0.5] */
            fine[i] = _mm512_mul_ps(_mm512_sub_ps(x, coarse[i]), _mm512_set1_ps(FINE_LEVELS));
        }
        store_int8_words(QN, &f->words[c / 4 * QN], coarse);
        if (two_level)
            store_int8_words(QN, &f->fine[c / 4 * QN], fine);
    }
}

/* Scores of the tokens t0 .. t0+16*NV-1 (stored for t < n) for QN queries
 * from the planes of `quads` quads starting at plane `plane0`. Every field
 * of a plane is used: padding quads have zero words. q8 adds the fine level
 * of the query. */
X86_INLINE void score_k_block(const int bits, const int QN, const int NV, const uint8_t *group, const uint8_t *high,
                              int g, int plane0, int quads, int t0, int n, const k_fold *f, float *s, int lds,
                              int accumulate)
{
    const int per = 8 / slimkv_plane_bits(bits), planes = (quads + per - 1) / per, two_level = bits == 8;
    __m512i acc[X86_QUERY_CHUNK][2], acc_fine[X86_QUERY_CHUNK][2];
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        X86_UNROLL
        for (int v = 0; v < NV; v++)
            acc[i][v] = acc_fine[i][v] = _mm512_setzero_si512();
    for (int p = 0; p < planes; p++) {
        const uint8_t *row = group + ((size_t)(plane0 + p) * g + t0) * 4;
        /* q3: the high bits of this low plane, bits 4*(index%2).. of high row index/2 */
        const uint8_t *high_row = high + ((size_t)((plane0 + p) / 2) * g + t0) * 4;
        const int high_base = 4 * ((plane0 + p) % 2);
        __m512i bytes[2], high_bytes[2];
        X86_UNROLL
        for (int v = 0; v < NV; v++) {
            bytes[v] = _mm512_loadu_si512(row + 64 * v);
            if (bits == 3)
                high_bytes[v] = _mm512_loadu_si512(high_row + 64 * v);
        }
        X86_UNROLL
        for (int sub = 0; sub < per; sub++) {
            const int32_t *words = &f->words[(p * per + sub) * QN], *fine = &f->fine[(p * per + sub) * QN];
            __m512i codes[2];
            X86_UNROLL
            for (int v = 0; v < NV; v++)
                codes[v] = bits == 3 ? _mm512_or_si512(code_field(bytes[v], 2, sub), high_field(high_bytes[v], high_base + sub))
                                     : code_field(bytes[v], bits, sub);
            X86_UNROLL
            for (int i = 0; i < QN; i++) {
                const __m512i w = _mm512_set1_epi32(words[i]);
                X86_UNROLL
                for (int v = 0; v < NV; v++)
                    acc[i][v] = dot_accumulate(acc[i][v], codes[v], w);
                if (two_level) {
                    const __m512i w_fine = _mm512_set1_epi32(fine[i]);
                    X86_UNROLL
                    for (int v = 0; v < NV; v++)
                        acc_fine[i][v] = dot_accumulate(acc_fine[i][v], codes[v], w_fine);
                }
            }
        }
    }
    X86_UNROLL
    for (int i = 0; i < QN; i++) {
        const __m512 step = _mm512_set1_ps(f->step[4 * i]), bias = _mm512_set1_ps(f->bias[4 * i]);
        const __m512 fine_step = _mm512_set1_ps(f->step[4 * i] / FINE_LEVELS);
        X86_UNROLL
        for (int v = 0; v < NV; v++) {
            float *dst = s + (size_t)i * lds + t0 + 16 * v;
            const __mmask16 m = lanes16(n - t0 - 16 * v);
            __m512 r = bias;
            if (two_level)
                r = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc_fine[i][v]), fine_step, r);
            r = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][v]), step, r);
            if (accumulate)
                r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, dst));
            _mm512_mask_storeu_ps(dst, m, r);
        }
    }
}

X86_INLINE void score_k_queries(const int bits, const int QN, const uint8_t *group, const uint8_t *params, int dk,
                                int g, int n, const float *q, float *s, int lds)
{
    const int per = 8 / slimkv_plane_bits(bits), nquad = dk / 4;
    const uint8_t *high = group + slimkv_k_hi_plane_offset(dk, g); /* read by q3 only */
    k_fold f;
    int k0 = 0;
    do { /* at least once: dk == 0 scores 0, as the oracle */
        const int kn = x86_min(K_FOLD_QUADS, nquad - k0);
        fold_k_queries(QN, bits == 8, params, dk, 4 * k0, 4 * kn, q, &f);
        for (int t0 = 0; t0 < n; t0 += 32) {
            if (n - t0 > 16)
                score_k_block(bits, QN, 2, group, high, g, k0 / per, kn, t0, n, &f, s, lds, k0 > 0);
            else
                score_k_block(bits, QN, 1, group, high, g, k0 / per, kn, t0, n, &f, s, lds, k0 > 0);
        }
        k0 += K_FOLD_QUADS;
    } while (k0 < nquad);
}

X86_INLINE void score_k_quant(const int bits, slimkv_format fmt, const uint8_t *group, int dk, int g, int n,
                              const float *q, int nq, float *s, int lds)
{
    const uint8_t *params = group + slimkv_k_params_offset(fmt, dk, g);
    int i = 0;
    for (; i + X86_QUERY_CHUNK <= nq; i += X86_QUERY_CHUNK)
        score_k_queries(bits, X86_QUERY_CHUNK, group, params, dk, g, n, q + (size_t)i * dk, s + (size_t)i * lds, lds);
    /* the last 1-3 queries in one pass over the codes (GQA groups of 3, 6, 7 ...) */
    const float *qi = q + (size_t)i * dk;
    float *si = s + (size_t)i * lds;
    if (nq - i == 3)
        score_k_queries(bits, 3, group, params, dk, g, n, qi, si, lds);
    else if (nq - i == 2)
        score_k_queries(bits, 2, group, params, dk, g, n, qi, si, lds);
    else if (nq - i == 1)
        score_k_queries(bits, 1, group, params, dk, g, n, qi, si, lds);
}

/* ---- V accumulation ---- */

/* Tokens folded at once: 16 quads, whole planes for every bit width. */
#define V_FOLD_TOKENS 64
/* Channel groups folded together: all of them when there are 1 or 2,
 * else windows of 4. */
#define V_FOLD_GROUPS 4

typedef struct v_fold {
    /* int8 weights of row i, token quad u, group j of the fold:
     * words[(u * groups + j) * QN + i] */
    int32_t words[V_FOLD_TOKENS / 4 * V_FOLD_GROUPS * X86_QUERY_CHUNK];
    /* q8: the residual of each weight in 1/254 steps, as K's query (the
     * one int8 level costs q8 about 0.8% of the output against the scalar
     * oracle; with two it is within the format's own rounding) */
    int32_t fine[V_FOLD_TOKENS / 4 * V_FOLD_GROUPS * X86_QUERY_CHUNK];
    float step[X86_QUERY_CHUNK][16], bias[X86_QUERY_CHUNK][16]; /* row i, group j */
} v_fold;

/* Parameters of tokens t .. t+3, groups j0 .. j0+3 (lanes m; the others
 * 0), as 16 floats [group][token]. They are stored [token][nvg groups]:
 * one two-register permute picks them while the 4 tokens' rows fit 64
 * halves, else a gather of the 32-bit words ending at each half (2 bytes
 * before the first is still in the block: codes precede scales, scales
 * mins). Reads stay inside the parameter array. */
X86_INLINE __m512 param_window(const uint8_t *halves, int nvg, int t, int j0, __mmask16 m)
{
    const __m512i token = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
    const __m512i group = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const uint8_t *base = halves + 2 * ((size_t)t * nvg + j0);
    const __m512i idx = _mm512_add_epi32(_mm512_mullo_epi32(token, _mm512_set1_epi32(nvg)), group);
    __m256i h;
    if (nvg <= 20) {
        const int len = 3 * nvg + x86_min(4, nvg - j0); /* to the last wanted half */
        __m512i lo = _mm512_maskz_loadu_epi16(lanes32(len), base);
        __m512i hi = _mm512_maskz_loadu_epi16(lanes32(len - 32), base + 64);
        __m512i idx16 = _mm512_castsi256_si512(_mm512_cvtepi32_epi16(idx));
        h = _mm512_castsi512_si256(_mm512_permutex2var_epi16(lo, idx16, hi));
    } else {
        __m512i raw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, _mm512_sub_epi32(idx, _mm512_set1_epi32(1)),
                                                  base, 2);
        h = _mm512_cvtepi32_epi16(_mm512_srli_epi32(raw, 16));
    }
    return _mm512_maskz_mov_ps(m, _mm512_cvtph_ps(h));
}

/* Max (or sum) over the tokens of a register of 16/NVG tokens x NVG groups:
 * lane l then holds the result for group l % NVG. */
X86_INLINE __m512 reduce_tokens(const int NVG, __m512 x, int is_max)
{
    x = combine(x, _mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(1, 0, 3, 2)), is_max);
    x = combine(x, _mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(2, 3, 0, 1)), is_max);
    if (NVG <= 2)
        x = combine(x, _mm512_permute_ps(x, _MM_SHUFFLE(1, 0, 3, 2)), is_max);
    if (NVG == 1)
        x = combine(x, _mm512_permute_ps(x, _MM_SHUFFLE(2, 3, 0, 1)), is_max);
    return x;
}

/* w_t * scale_tj ~ step_j * int8, bias_j = sum_t w_t * min_tj over tokens
 * [t0, t0 + tn), for QN weight rows and all NVG (1 or 2) channel groups
 * together. A register holds 16/NVG tokens x NVG groups in the parameters'
 * stored order [token][group], so the maxima and sums per group need no
 * column extraction and come out in the lane pattern the folded registers
 * need. Words of 4 tokens come from reordering each 4 tokens x NVG groups
 * to [group][token]. Step and bias of group j: f->step[i][j]. */
X86_INLINE void fold_v_weights(const int QN, const int NVG, const int two_level, const uint8_t *scale_h,
                               const uint8_t *min_h, int t0,
                               int tn, const float *w, int ldw, v_fold *f)
{
    /* token of each lane relative to the register's first */
    const __m512i spread = NVG == 2 ? _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)
                                    : _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i word_order = _mm512_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
    const int nvec = (tn + 15) / 16 * NVG; /* whole 4-quad words, 0 past tn */
    float folded[X86_QUERY_CHUNK][V_FOLD_TOKENS * 2];
    __m512 amax[X86_QUERY_CHUNK], bias[X86_QUERY_CHUNK], inv_step[X86_QUERY_CHUNK];
    X86_UNROLL
    for (int i = 0; i < X86_QUERY_CHUNK; i++)
        amax[i] = bias[i] = _mm512_setzero_ps();
    for (int k = 0; k < nvec; k++) {
        const int tok = 16 * k / NVG, tok16 = tok & ~15; /* first token; its 16-token weight register */
        const __mmask16 m = lanes16((tn - tok) * NVG);
        const size_t first = (size_t)(t0 + tok) * NVG; /* t0 + tok + 16/NVG <= g: inside the block */
        const __m512 sc = _mm512_maskz_mov_ps(m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, scale_h + 2 * first)));
        const __m512 mn = _mm512_maskz_mov_ps(m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, min_h + 2 * first)));
        const __m512i idx = _mm512_add_epi32(spread, _mm512_set1_epi32(tok - tok16));
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            __m512 wv = _mm512_maskz_loadu_ps(lanes16(tn - tok16), w + (size_t)i * ldw + t0 + tok16);
            if (NVG > 1)
                wv = _mm512_permutexvar_ps(idx, wv);
            __m512 fv = _mm512_mul_ps(wv, sc);
            _mm512_storeu_ps(&folded[i][16 * k], fv);
            amax[i] = max_abs(amax[i], fv);
            bias[i] = _mm512_fmadd_ps(wv, mn, bias[i]);
        }
    }
    const __m512 limit = _mm512_set1_ps(X86_INT8_LIMIT);
    X86_UNROLL
    for (int i = 0; i < QN; i++) {
        const __m512 a = reduce_tokens(NVG, amax[i], 1);
        _mm512_storeu_ps(f->step[i], _mm512_div_ps(a, limit));
        _mm512_storeu_ps(f->bias[i], reduce_tokens(NVG, bias[i], 0));
        inv_step[i] = _mm512_maskz_div_ps(_mm512_cmpneq_ps_mask(a, _mm512_setzero_ps()), limit, a);
    }
    for (int k = 0; k < nvec; k++) {
        __m512 x[X86_QUERY_CHUNK];
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            x[i] = _mm512_mul_ps(_mm512_loadu_ps(&folded[i][16 * k]), inv_step[i]);
            if (NVG > 1)
                x[i] = _mm512_permutexvar_ps(word_order, x[i]);
        }
        store_int8_words(QN, &f->words[4 * k * QN], x);
        if (two_level)
            store_fine_words(QN, &f->fine[4 * k * QN], x);
    }
}

/* The same for the channel groups j0 .. j0+3 (those past nvg left 0), a
 * register per token quad in [group][token] order: the weights are 4
 * consecutive ones broadcast, the maxima and sums over the quads are
 * vertical, and a register converts straight to the words of its quad.
 * Step and bias of group j0 + j: f->step[i][4 * j]. */
X86_INLINE void fold_v_window(const int QN, const int two_level, const uint8_t *scale_h, const uint8_t *min_h, int nvg,
                              int j0, int t0,
                              int tn, const float *w, int ldw, v_fold *f)
{
    const __mmask16 groups = (__mmask16)((1u << (4 * x86_min(4, nvg - j0))) - 1);
    const int nquad = (tn + 15) / 16 * 4; /* whole 4-quad words, 0 past tn */
    float folded[X86_QUERY_CHUNK][V_FOLD_TOKENS * V_FOLD_GROUPS];
    __m512 amax[X86_QUERY_CHUNK], bias[X86_QUERY_CHUNK], inv_step[X86_QUERY_CHUNK];
    X86_UNROLL
    for (int i = 0; i < X86_QUERY_CHUNK; i++)
        amax[i] = bias[i] = _mm512_setzero_ps();
    for (int u = 0; u < nquad; u++) {
        const int valid = tn - 4 * u; /* tokens of this quad below tn */
        const __mmask16 tokens = (__mmask16)(0x1111 * ((1u << x86_min(4, valid < 0 ? 0 : valid)) - 1));
        const __mmask16 m = tokens & groups;
        const __m512 sc = param_window(scale_h, nvg, t0 + 4 * u, j0, m);
        const __m512 mn = param_window(min_h, nvg, t0 + 4 * u, j0, m);
        const __mmask8 w4 = (__mmask8)((1u << x86_min(4, valid < 0 ? 0 : valid)) - 1);
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            __m512 wv = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(w4, w + (size_t)i * ldw + t0 + 4 * u));
            __m512 fv = _mm512_mul_ps(wv, sc);
            _mm512_storeu_ps(&folded[i][16 * u], fv);
            amax[i] = max_abs(amax[i], fv);
            bias[i] = _mm512_fmadd_ps(wv, mn, bias[i]);
        }
    }
    const __m512 limit = _mm512_set1_ps(X86_INT8_LIMIT);
    X86_UNROLL
    for (int i = 0; i < QN; i++) { /* over the 4 tokens of each group's lanes */
        __m512 a = _mm512_max_ps(amax[i], _mm512_permute_ps(amax[i], _MM_SHUFFLE(1, 0, 3, 2)));
        a = _mm512_max_ps(a, _mm512_permute_ps(a, _MM_SHUFFLE(2, 3, 0, 1)));
        __m512 b = _mm512_add_ps(bias[i], _mm512_permute_ps(bias[i], _MM_SHUFFLE(1, 0, 3, 2)));
        b = _mm512_add_ps(b, _mm512_permute_ps(b, _MM_SHUFFLE(2, 3, 0, 1)));
        _mm512_storeu_ps(f->step[i], _mm512_div_ps(a, limit));
        _mm512_storeu_ps(f->bias[i], b);
        inv_step[i] = _mm512_maskz_div_ps(_mm512_cmpneq_ps_mask(a, _mm512_setzero_ps()), limit, a);
    }
    for (int u = 0; u < nquad; u++) {
        __m512 x[X86_QUERY_CHUNK];
        X86_UNROLL
        for (int i = 0; i < QN; i++)
            x[i] = _mm512_mul_ps(_mm512_loadu_ps(&folded[i][16 * u]), inv_step[i]);
        store_int8_words(QN, &f->words[4 * u * QN], x);
        if (two_level)
            store_fine_words(QN, &f->fine[4 * u * QN], x);
    }
}

/* acc[i][c ..] += step_i * sum_t int8_it * code_tc + bias_i for QN rows and
 * the NV channel registers starting at c (the last one ending at c_end),
 * over the token quads of the fold starting at quad q0. The words of row i
 * and quad u are words[u * stride + i]; its step and bias f->step[i][jf].
 * Every field of a plane is used: quads past the tokens have zero words. */
X86_INLINE void accum_v_block(const int bits, const int QN, const int NV, const int fine_level, const uint8_t *block,
                              const uint8_t *high, int dv, int c, int c_end, int q0, int quads, const int32_t *words,
                              int stride, const v_fold *f, int jf, float *acc)
{
    const int per = 8 / slimkv_plane_bits(bits), planes = (quads + per - 1) / per;
    const __mmask16 last = lanes16(c_end - c - 16 * (NV - 1));
    __m512i sum[X86_QUERY_CHUNK][4];
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        X86_UNROLL
        for (int v = 0; v < NV; v++)
            sum[i][v] = _mm512_setzero_si512();
    for (int p = 0; p < planes; p++) {
        const int index = q0 / per + p;
        const uint8_t *row = block + ((size_t)index * dv + c) * 4;
        /* q3: the high bits of this low plane, bits 4*(index%2).. of high row index/2 */
        const uint8_t *high_row = high + ((size_t)(index / 2) * dv + c) * 4;
        const int high_base = 4 * (index % 2);
        __m512i bytes[4], high_bytes[4];
        X86_UNROLL
        for (int v = 0; v < NV; v++) {
            bytes[v] = v < NV - 1 ? _mm512_loadu_si512(row + 64 * v) : _mm512_maskz_loadu_epi32(last, row + 64 * v);
            if (bits == 3)
                high_bytes[v] = v < NV - 1 ? _mm512_loadu_si512(high_row + 64 * v)
                                           : _mm512_maskz_loadu_epi32(last, high_row + 64 * v);
        }
        X86_UNROLL
        for (int sub = 0; sub < per; sub++) {
            const int32_t *wq = words + (size_t)(p * per + sub) * stride;
            __m512i codes[4];
            X86_UNROLL
            for (int v = 0; v < NV; v++)
                codes[v] = bits == 3 ? _mm512_or_si512(code_field(bytes[v], 2, sub), high_field(high_bytes[v], high_base + sub))
                                     : code_field(bytes[v], bits, sub);
            X86_UNROLL
            for (int i = 0; i < QN; i++) {
                const __m512i w = _mm512_set1_epi32(wq[i]);
                X86_UNROLL
                for (int v = 0; v < NV; v++)
                    sum[i][v] = dot_accumulate(sum[i][v], codes[v], w);
            }
        }
    }
    X86_UNROLL
    for (int i = 0; i < QN; i++) {
        /* the fine level: the same words' residuals, 1/254 of the step, no bias */
        const __m512 step = _mm512_set1_ps(fine_level ? f->step[i][jf] / FINE_LEVELS : f->step[i][jf]);
        const __m512 bias = _mm512_set1_ps(fine_level ? 0.0f : f->bias[i][jf]);
        X86_UNROLL
        for (int v = 0; v < NV; v++) {
            float *dst = acc + (size_t)i * dv + c + 16 * v;
            const __mmask16 m = v < NV - 1 ? (__mmask16)0xffff : last;
            __m512 a = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst), bias);
            _mm512_mask_storeu_ps(dst, m, _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[i][v]), step, a));
        }
    }
}

/* Channels [j*g, min(dv, (j+1)*g)) of group j, up to 64 per pass. */
/* Channels [j*g, min(dv, (j+1)*g)) of group j, up to 64 per pass, from the
 * fold's words starting at words[word0] (and, two-level, the residual
 * words at fine[word0]: a second pass over the same codes, from L1). */
X86_INLINE void accum_v_group(const int bits, const int QN, const int two_level, const uint8_t *block, int dv, int g,
                              int j, int q0, int quads, int word0, int stride, const v_fold *f, int jf, float *acc)
{
    const int c_end = x86_min(dv, (j + 1) * g);
    const uint8_t *high = block + slimkv_v_hi_plane_offset(dv, g); /* read by q3 only */
    for (int level = 0; level <= two_level; level++) {
        const int32_t *words = level ? &f->fine[word0] : &f->words[word0];
        for (int c = j * g; c < c_end; c += 64) {
            const int nv = x86_min(4, (c_end - c + 15) / 16);
            if (nv == 4)
                accum_v_block(bits, QN, 4, level, block, high, dv, c, c_end, q0, quads, words, stride, f, jf, acc);
            else if (nv == 3)
                accum_v_block(bits, QN, 3, level, block, high, dv, c, c_end, q0, quads, words, stride, f, jf, acc);
            else if (nv == 2)
                accum_v_block(bits, QN, 2, level, block, high, dv, c, c_end, q0, quads, words, stride, f, jf, acc);
            else
                accum_v_block(bits, QN, 1, level, block, high, dv, c, c_end, q0, quads, words, stride, f, jf, acc);
        }
    }
}

X86_INLINE void accum_v_queries(const int bits, const int QN, const uint8_t *block, const uint8_t *scale_h,
                                const uint8_t *min_h, int dv, int g, int n, const float *w, int ldw, float *acc)
{
    const int nvg = (dv + g - 1) / g, two_level = bits == 8;
    v_fold f;
    for (int t0 = 0; t0 < n; t0 += V_FOLD_TOKENS) {
        const int tn = x86_min(V_FOLD_TOKENS, n - t0), quads = (tn + 3) / 4;
        if (nvg <= 2) {
            if (nvg == 1)
                fold_v_weights(QN, 1, two_level, scale_h, min_h, t0, tn, w, ldw, &f);
            else
                fold_v_weights(QN, 2, two_level, scale_h, min_h, t0, tn, w, ldw, &f);
            for (int j = 0; j < nvg; j++)
                accum_v_group(bits, QN, two_level, block, dv, g, j, t0 / 4, quads, j * QN, nvg * QN, &f, j, acc);
            continue;
        }
        for (int j0 = 0; j0 < nvg; j0 += V_FOLD_GROUPS) {
            fold_v_window(QN, two_level, scale_h, min_h, nvg, j0, t0, tn, w, ldw, &f);
            for (int j = 0; j < x86_min(V_FOLD_GROUPS, nvg - j0); j++)
                accum_v_group(bits, QN, two_level, block, dv, g, j0 + j, t0 / 4, quads, j * QN, V_FOLD_GROUPS * QN,
                              &f, 4 * j, acc);
        }
    }
}

X86_INLINE void accum_v_quant(const int bits, slimkv_format fmt, const uint8_t *block, int dv, int g, int n,
                              const float *w, int ldw, int nq, float *acc)
{
    const int nvg = (dv + g - 1) / g;
    const size_t codes = slimkv_v_params_offset(fmt, dv, g);
    const uint8_t *scale_h = block + codes, *min_h = scale_h + 2 * (size_t)g * nvg;
    x86_prefetch_range(block, codes + 4 * (size_t)g * nvg); /* read group by group */
    int i = 0;
    for (; i + X86_QUERY_CHUNK <= nq; i += X86_QUERY_CHUNK)
        accum_v_queries(bits, X86_QUERY_CHUNK, block, scale_h, min_h, dv, g, n, w + (size_t)i * ldw, ldw,
                        acc + (size_t)i * dv);
    /* the last 1-3 queries in one pass over the codes (GQA groups of 3, 6, 7 ...) */
    const float *wi = w + (size_t)i * ldw;
    float *ai = acc + (size_t)i * dv;
    if (nq - i == 3)
        accum_v_queries(bits, 3, block, scale_h, min_h, dv, g, n, wi, ldw, ai);
    else if (nq - i == 2)
        accum_v_queries(bits, 2, block, scale_h, min_h, dv, g, n, wi, ldw, ai);
    else if (nq - i == 1)
        accum_v_queries(bits, 1, block, scale_h, min_h, dv, g, n, wi, ldw, ai);
}

static void slimkv_pack_k_q8_avx512(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(8, SLIMKV_Q8, src, dk, g, group);
}

static void slimkv_pack_v_q8_avx512(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(8, SLIMKV_Q8, src, dv, g, block, slot);
}

static void slimkv_score_k_q8_avx512(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                     int lds)
{
    score_k_quant(8, SLIMKV_Q8, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q8_avx512(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                     float *acc)
{
    accum_v_quant(8, SLIMKV_Q8, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q4_avx512(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(4, SLIMKV_Q4, src, dk, g, group);
}

static void slimkv_pack_v_q4_avx512(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(4, SLIMKV_Q4, src, dv, g, block, slot);
}

static void slimkv_score_k_q4_avx512(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                     int lds)
{
    score_k_quant(4, SLIMKV_Q4, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q4_avx512(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                     float *acc)
{
    accum_v_quant(4, SLIMKV_Q4, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q2_avx512(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(2, SLIMKV_Q2, src, dk, g, group);
}

static void slimkv_pack_v_q2_avx512(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(2, SLIMKV_Q2, src, dv, g, block, slot);
}

static void slimkv_score_k_q2_avx512(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                     int lds)
{
    score_k_quant(2, SLIMKV_Q2, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q2_avx512(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                     float *acc)
{
    accum_v_quant(2, SLIMKV_Q2, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q3_avx512(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(3, SLIMKV_Q3, src, dk, g, group);
}

static void slimkv_pack_v_q3_avx512(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(3, SLIMKV_Q3, src, dv, g, block, slot);
}

static void slimkv_score_k_q3_avx512(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                     int lds)
{
    score_k_quant(3, SLIMKV_Q3, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q3_avx512(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                     float *acc)
{
    accum_v_quant(3, SLIMKV_Q3, block, dv, g, n, w, ldw, nq, acc);
}

/* ---- fused decode over whole groups, quantized K and V formats ---- */

/* Index: format - SLIMKV_Q8 (kernels_avx512.c composes them with the dense
 * formats and SparK's scores). */
const slimkv_score_k_fn slimkv_quant_score_k_avx512[4] = {
    slimkv_score_k_q8_avx512,
    slimkv_score_k_q4_avx512,
    slimkv_score_k_q2_avx512,
    slimkv_score_k_q3_avx512};
const slimkv_accum_v_fn slimkv_quant_accum_v_avx512[4] = {
    slimkv_accum_v_q8_avx512,
    slimkv_accum_v_q4_avx512,
    slimkv_accum_v_q2_avx512,
    slimkv_accum_v_q3_avx512};

/* Every pair of q8 / q4 / q2 / q3 (formats SLIMKV_Q8..SLIMKV_Q3). */
static void slimkv_attend_groups_quant_avx512(const slimkv_group_span *span, const float *q, int rows, float *m,
                                              float *l, float *acc)
{
    const slimkv_tile_ops ops = {slimkv_quant_score_k_avx512[span->k_format - SLIMKV_Q8],
                                 slimkv_quant_accum_v_avx512[span->v_format - SLIMKV_Q8],
                                 slimkv_exp_sum_avx512, slimkv_max_f32_avx512, slimkv_scale_f32_avx512, NULL,
                                 slimkv_quant_score_k_avx512[0]};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

void slimkv_x86_quant_init_avx512(slimkv_kernels *k)
{
    for (int kf = SLIMKV_Q8; kf <= SLIMKV_Q3; kf++)
        for (int vf = SLIMKV_Q8; vf <= SLIMKV_Q3; vf++)
            k->attend_groups[kf][vf] = slimkv_attend_groups_quant_avx512;
    k->pack_k[SLIMKV_Q8] = slimkv_pack_k_q8_avx512;
    k->pack_v[SLIMKV_Q8] = slimkv_pack_v_q8_avx512;
    k->score_k[SLIMKV_Q8] = slimkv_score_k_q8_avx512;
    k->accum_v[SLIMKV_Q8] = slimkv_accum_v_q8_avx512;
    k->pack_k[SLIMKV_Q4] = slimkv_pack_k_q4_avx512;
    k->pack_v[SLIMKV_Q4] = slimkv_pack_v_q4_avx512;
    k->score_k[SLIMKV_Q4] = slimkv_score_k_q4_avx512;
    k->accum_v[SLIMKV_Q4] = slimkv_accum_v_q4_avx512;
    k->pack_k[SLIMKV_Q2] = slimkv_pack_k_q2_avx512;
    k->pack_v[SLIMKV_Q2] = slimkv_pack_v_q2_avx512;
    k->score_k[SLIMKV_Q2] = slimkv_score_k_q2_avx512;
    k->accum_v[SLIMKV_Q2] = slimkv_accum_v_q2_avx512;
    k->pack_k[SLIMKV_Q3] = slimkv_pack_k_q3_avx512;
    k->pack_v[SLIMKV_Q3] = slimkv_pack_v_q3_avx512;
    k->score_k[SLIMKV_Q3] = slimkv_score_k_q3_avx512;
    k->accum_v[SLIMKV_Q3] = slimkv_accum_v_q3_avx512;
}
