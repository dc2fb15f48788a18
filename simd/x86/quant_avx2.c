/* AVX2 bodies of the quantized formats (q8, q4, q3, q2).
 *
 * Packing is bit-exact with scalar.c: the same float operations in the same
 * order, 8 lanes at a time.
 *
 * Scores and V accumulation follow quant_avx512.c (same layouts, same int8
 * folding of the query / weights, same error bound) without VNNI: vpmaddubsw
 * multiplies unsigned codes by signed int8 and adds pairs into int16, and
 * vpmaddwd widens pairs of those into the 32-bit lane of 4 codes. The int16
 * sums are kept over several planes while they cannot saturate (a term is
 * at most 2 * 15 * 127 = 3810 for 4-bit fields, 2 * 7 * 127 = 1778 for q3,
 * 2 * 3 * 127 = 762 for 2-bit ones). q3 reads its low plane as q2 and ORs
 * each field's high bit (one register of the 1-bit plane per two low
 * planes) into bit 2 before the multiply: no separate pass over the high
 * plane. q8 codes would saturate vpmaddubsw (2 * 255 * 127 > 32767):
 * V splits them into nibbles (code = lo + 16 * hi); K widens them to 16
 * bits for vpmaddwd with an int16 query, since with q8's fine codes an int8
 * query (its step set by the outlier channel) would dominate the attention
 * error. */
#include <immintrin.h>

#include "x86_common.h"
#include "tile_loop.h"

#define ROUND_NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* lanes8(n) = &lane_mask_table[8 - n]: n all-ones lanes, then zeros. */
static const int32_t lane_mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

X86_INLINE __m256i lanes8(int n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(lane_mask_table + 8 - n));
}

X86_INLINE float hmax8(__m256 x)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

X86_INLINE float hmin8(__m256 x)
{
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)));
}

X86_INLINE float hsum8(__m256 x)
{
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}

X86_INLINE __m256 abs8(__m256 x)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
}

/* Field `sub` of the bytes of a plane (8/bits fields per byte). q8 is not
 * split here: see its nibbles in the blocks below. */
X86_INLINE __m256i code_field(__m256i bytes, int bits, int sub)
{
    const __m256i field = _mm256_set1_epi8((char)((1 << bits) - 1));
    return _mm256_and_si256(sub ? _mm256_srli_epi16(bytes, bits * sub) : bytes, field);
}

/* q3 code of field `sub`: the low plane's 2 bits, and bit `sub` of `hi` (the
 * high plane's byte, already shifted to this low plane's 4 bits) moved to
 * bit 2. 16-bit shifts are safe: the bit that lands on bit 2 of a byte
 * comes from that same byte. */
X86_INLINE __m256i q3_code(__m256i low, __m256i hi, int sub)
{
    const __m256i h = sub < 2 ? _mm256_slli_epi16(hi, 2 - sub) : sub > 2 ? _mm256_srli_epi16(hi, sub - 2) : hi;
    return _mm256_or_si256(code_field(low, 2, sub), _mm256_and_si256(h, _mm256_set1_epi8(4)));
}

/* code = clamp(rint((x - min) * inv), 0, top), as scalar.c's quant_code. */
X86_INLINE __m256i quantize_codes(__m256 x, __m256 mn, __m256 inv, __m256 top)
{
    __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_sub_ps(x, mn), inv), ROUND_NEAREST);
    return _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, _mm256_setzero_ps()), top));
}

/* 8 values already in steps (|x| <= 127) to int8: the words of lanes 0-3
 * and 4-7. */
X86_INLINE void steps_to_int8_words(__m256 x, int32_t *words)
{
    __m256i q = _mm256_packs_epi32(_mm256_cvtps_epi32(x), _mm256_setzero_si256());
    q = _mm256_packs_epi16(q, q); /* 128-bit lane k: its 4 values in bytes 0-3 */
    words[0] = _mm_cvtsi128_si32(_mm256_castsi256_si128(q));
    words[1] = _mm_cvtsi128_si32(_mm256_extracti128_si256(q, 1));
}

/* Maddubs terms an int16 sum may take before it can saturate; then the
 * block widens it to 32 bits. */
X86_INLINE int int16_terms(int bits)
{
    const int top = bits == 8 ? 15 : (1 << bits) - 1; /* q8: nibbles */
    return 32767 / (2 * top * 127);
}

/* ---- packing ---- */

#define PACK_K_CHANNELS 64 /* as in quant_avx512.c: whole planes for every width */

/* Channels c..c+3 of tokens t and t+1, in the K layout's order [t][c%4]. */
X86_INLINE __m256 load_quad_2_tokens(const float *p, size_t stride)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p)), _mm_loadu_ps(p + stride), 1);
}

/* The first n (<= 8) of 8 halves, byte-aligned destination. */
X86_INLINE void store_halves(uint8_t *dst, __m128i h, int n)
{
    if (n >= 8) {
        _mm_storeu_si128((__m128i *)dst, h);
    } else {
        uint16_t tmp[8];
        _mm_storeu_si128((__m128i *)tmp, h);
        memcpy(dst, tmp, 2 * (size_t)n);
    }
}

/* Lanes holding bytes < 256, [t, t+1] and [t+2, t+3] of a quad each, as
 * the 16 bytes of 4 tokens: 32-bit words [t, t+1, t+2, t+3]. */
X86_INLINE __m128i words_to_bytes(__m256i w01, __m256i w23)
{
    const __m256i token_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i b = _mm256_packus_epi32(w01, w23); /* words [t, t+2 | t+1, t+3] */
    b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(b, b), token_order);
    return _mm256_castsi256_si128(b);
}

X86_INLINE void pack_k_quant(const int bits, slimkv_format fmt, const float *src, int dk, int g, uint8_t *group)
{
    const int lo_bits = slimkv_plane_bits(bits), per = 8 / lo_bits;
    const __m256 top = _mm256_set1_ps((float)((1 << bits) - 1)), zero = _mm256_setzero_ps();
    uint8_t *scale_h = group + slimkv_k_params_offset(fmt, dk, g), *min_h = scale_h + 2 * (size_t)dk;
    uint8_t *hi_codes = group + slimkv_k_hi_plane_offset(dk, g); /* q3 */
    for (int c0 = 0; c0 < dk; c0 += PACK_K_CHANNELS) {
        const int cn = x86_min(PACK_K_CHANNELS, dk - c0);
        float mins[PACK_K_CHANNELS], invs[PACK_K_CHANNELS];
        for (int v = 0; v < cn; v += 8) {
            const __m256i m = lanes8(cn - v);
            const float *col = src + c0 + v;
            __m256 lo = _mm256_maskload_ps(col, m), hi = lo;
            for (int t = 1; t < g; t++) {
                __m256 x = _mm256_maskload_ps(col + (size_t)t * dk, m);
                lo = _mm256_min_ps(x, lo); /* x < lo ? x : lo: keeps the first of equals, as scalar.c */
                hi = _mm256_max_ps(x, hi);
            }
            __m128i s16 = _mm256_cvtps_ph(_mm256_div_ps(_mm256_sub_ps(hi, lo), top), _MM_FROUND_TO_NEAREST_INT);
            __m128i m16 = _mm256_cvtps_ph(lo, _MM_FROUND_TO_NEAREST_INT);
            store_halves(scale_h + 2 * (size_t)(c0 + v), s16, cn - v);
            store_halves(min_h + 2 * (size_t)(c0 + v), m16, cn - v);
            __m256 s = _mm256_cvtph_ps(s16);
            __m256 inv = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), s), _mm256_cmp_ps(s, zero, _CMP_NEQ_OQ));
            _mm256_storeu_ps(mins + v, _mm256_cvtph_ps(m16));
            _mm256_storeu_ps(invs + v, inv);
        }
        /* codes: 2 tokens x one quad per register, 4 tokens per store */
        const int quads = cn / 4, planes = (quads + per - 1) / per;
        for (int p = 0; p < planes; p++) {
            uint8_t *plane = group + (size_t)(c0 / 4 / per + p) * g * 4;
            /* q3: low planes 2r and 2r+1 share high row r (c0 / 4 / per is even) */
            uint8_t *hi_plane = hi_codes + (size_t)((c0 / 4 / per + p) / 2) * g * 4;
            const int subs = x86_min(per, quads - p * per);
            __m256 mn[4], inv[4];
            for (int sub = 0; sub < subs; sub++) {
                mn[sub] = _mm256_broadcast_ps((const __m128 *)(mins + 4 * (p * per + sub)));
                inv[sub] = _mm256_broadcast_ps((const __m128 *)(invs + 4 * (p * per + sub)));
            }
            for (int t = 0; t < g; t += 4) {
                const float *x = src + (size_t)t * dk + c0 + 4 * p * per;
                __m256i w01 = _mm256_setzero_si256(), w23 = _mm256_setzero_si256();
                __m256i h01 = _mm256_setzero_si256(), h23 = _mm256_setzero_si256();
                for (int sub = 0; sub < subs; sub++) {
                    const float *xs = x + 4 * sub;
                    __m256i c01 = quantize_codes(load_quad_2_tokens(xs, (size_t)dk), mn[sub], inv[sub], top);
                    __m256i c23 = quantize_codes(load_quad_2_tokens(xs + 2 * (size_t)dk, (size_t)dk), mn[sub],
                                                 inv[sub], top);
                    if (bits == 3) {
                        const int hs = 4 * (p % 2) + sub;
                        h01 = _mm256_or_si256(h01, _mm256_slli_epi32(_mm256_srli_epi32(c01, 2), hs));
                        h23 = _mm256_or_si256(h23, _mm256_slli_epi32(_mm256_srli_epi32(c23, 2), hs));
                        c01 = _mm256_and_si256(c01, _mm256_set1_epi32(3));
                        c23 = _mm256_and_si256(c23, _mm256_set1_epi32(3));
                    }
                    w01 = _mm256_or_si256(w01, _mm256_slli_epi32(c01, lo_bits * sub));
                    w23 = _mm256_or_si256(w23, _mm256_slli_epi32(c23, lo_bits * sub));
                }
                _mm_storeu_si128((__m128i *)(plane + 4 * (size_t)t), words_to_bytes(w01, w23));
                if (bits == 3) { /* the odd plane adds its half to the even one's bytes */
                    __m128i h = words_to_bytes(h01, h23);
                    __m128i *dst = (__m128i *)(hi_plane + 4 * (size_t)t);
                    _mm_storeu_si128(dst, p % 2 ? _mm_or_si128(_mm_loadu_si128(dst), h) : h);
                }
            }
        }
    }
}

X86_INLINE void pack_v_quant(const int bits, slimkv_format fmt, const float *src, int dv, int g, uint8_t *block,
                             int slot)
{
    const int lo_bits = slimkv_plane_bits(bits), per = 8 / lo_bits, nvg = (dv + g - 1) / g, u = slot / 4;
    const float top = (float)((1 << bits) - 1);
    uint8_t *scale_h = block + slimkv_v_params_offset(fmt, dv, g), *min_h = scale_h + 2 * (size_t)g * nvg;
    uint8_t *plane = block + (size_t)(u / per) * dv * 4;
    const int shift = 8 * (slot % 4) + lo_bits * (u % per);
    const __m256i keep = _mm256_set1_epi32((int)~((uint32_t)((1 << lo_bits) - 1) << shift));
    const __m128i shift_count = _mm_cvtsi32_si128(shift);
    /* q3: the high bit, 8 token quads per byte */
    uint8_t *hi_plane = block + slimkv_v_hi_plane_offset(dv, g) + (size_t)(u / 8) * dv * 4;
    const int hi_shift = 8 * (slot % 4) + u % 8;
    const __m256i hi_keep = _mm256_set1_epi32((int)~(1u << hi_shift));
    const __m128i hi_shift_count = _mm_cvtsi32_si128(hi_shift);
    for (int j = 0; j < nvg; j++) {
        const int c0 = j * g, cn = x86_min(g, dv - c0);
        const float *x = src + c0;
        __m256 lo = _mm256_set1_ps(x[0]), hi = lo;
        for (int c = 0; c < cn; c += 8) {
            const __m256i m = lanes8(cn - c);
            __m256 v = _mm256_maskload_ps(x + c, m);
            lo = _mm256_blendv_ps(lo, _mm256_min_ps(v, lo), _mm256_castsi256_ps(m));
            hi = _mm256_blendv_ps(hi, _mm256_max_ps(v, hi), _mm256_castsi256_ps(m));
        }
        float lo_s = hmin8(lo), hi_s = hmax8(hi);
        if (lo_s == 0.0f)
            lo_s = x86_first_equal(x, cn, lo_s);
        if (hi_s == 0.0f)
            hi_s = x86_first_equal(x, cn, hi_s);
        uint16_t s16 = _cvtss_sh((hi_s - lo_s) / top, _MM_FROUND_TO_NEAREST_INT);
        uint16_t m16 = _cvtss_sh(lo_s, _MM_FROUND_TO_NEAREST_INT);
        x86_store_u16(scale_h + 2 * ((size_t)slot * nvg + j), s16);
        x86_store_u16(min_h + 2 * ((size_t)slot * nvg + j), m16);
        float s = _cvtsh_ss(s16);
        const __m256 mn = _mm256_set1_ps(_cvtsh_ss(m16)), inv = _mm256_set1_ps(s == 0.0f ? 0.0f : 1.0f / s);
        /* read-modify-write of the channel words: only this slot's bits change */
        for (int c = 0; c < cn; c += 8) {
            const __m256i m = lanes8(cn - c);
            __m256i code = quantize_codes(_mm256_maskload_ps(x + c, m), mn, inv, _mm256_set1_ps(top));
            if (bits == 3) {
                int *hi_words = (int *)(hi_plane + 4 * (size_t)(c0 + c));
                __m256i old = _mm256_maskload_epi32(hi_words, m);
                _mm256_maskstore_epi32(hi_words, m,
                                       _mm256_or_si256(_mm256_and_si256(old, hi_keep),
                                                       _mm256_sll_epi32(_mm256_srli_epi32(code, 2), hi_shift_count)));
                code = _mm256_and_si256(code, _mm256_set1_epi32(3));
            }
            int *words = (int *)(plane + 4 * (size_t)(c0 + c));
            __m256i old = _mm256_maskload_epi32(words, m);
            _mm256_maskstore_epi32(words, m,
                                   _mm256_or_si256(_mm256_and_si256(old, keep), _mm256_sll_epi32(code, shift_count)));
        }
    }
}

/* ---- integer dot products shared by K and V ----
 * One int16 sum per query (two for q8: low and high nibbles), widened into
 * the int32 sum every int16_terms() terms. */

typedef struct dot_sums {
    __m256i wide[X86_QUERY_CHUNK], lo[X86_QUERY_CHUNK], hi[X86_QUERY_CHUNK];
} dot_sums;

X86_INLINE void dot_clear(const int QN, dot_sums *d)
{
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        d->wide[i] = d->lo[i] = d->hi[i] = _mm256_setzero_si256();
}

X86_INLINE void dot_widen(const int bits, const int QN, dot_sums *d)
{
    const __m256i one = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
    X86_UNROLL
    for (int i = 0; i < QN; i++) {
        d->wide[i] = _mm256_add_epi32(d->wide[i], _mm256_madd_epi16(d->lo[i], one));
        d->lo[i] = _mm256_setzero_si256();
        if (bits == 8) {
            d->wide[i] = _mm256_add_epi32(d->wide[i], _mm256_madd_epi16(d->hi[i], sixteen));
            d->hi[i] = _mm256_setzero_si256();
        }
    }
}

/* Adds the dot products of the fields of one plane register with each
 * query's int8 words: those of query i and quad k at words[i * query_stride
 * + k * quad_stride], from quad k0 on. Every field is used: the words of
 * padding quads are 0. q3: `hi` holds the high bits of field sub at bit
 * sub of each byte. */
X86_INLINE void dot_plane(const int bits, const int QN, __m256i bytes, __m256i hi, const int32_t *words,
                          int query_stride, int quad_stride, int k0, dot_sums *d)
{
    if (bits == 8) {
        const __m256i nibble = _mm256_set1_epi8(0x0f);
        __m256i lo = _mm256_and_si256(bytes, nibble), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), nibble);
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            const __m256i w = _mm256_set1_epi32(words[i * query_stride + k0 * quad_stride]);
            d->lo[i] = _mm256_add_epi16(d->lo[i], _mm256_maddubs_epi16(lo, w));
            d->hi[i] = _mm256_add_epi16(d->hi[i], _mm256_maddubs_epi16(hi, w));
        }
        return;
    }
    X86_UNROLL
    for (int sub = 0; sub < 8 / slimkv_plane_bits(bits); sub++) {
        __m256i codes = bits == 3 ? q3_code(bytes, hi, sub) : code_field(bytes, bits, sub);
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            const __m256i w = _mm256_set1_epi32(words[i * query_stride + (k0 + sub) * quad_stride]);
            d->lo[i] = _mm256_add_epi16(d->lo[i], _mm256_maddubs_epi16(codes, w));
        }
    }
}

/* Sums over the planes holding `quads` quads at `first`, `first +
 * plane_step`, ..., widening before any int16 sum could saturate. q3: the
 * high rows at hi_first with the same step, row p/2 for low plane p. */
X86_INLINE void dot_planes(const int bits, const int QN, const uint8_t *first, const uint8_t *hi_first,
                           size_t plane_step, __m256i mask, int full, const int32_t *words, int query_stride,
                           int quad_stride, int quads, dot_sums *d)
{
    const int per = 8 / slimkv_plane_bits(bits), planes = (quads + per - 1) / per;
    const int planes_per_widen = bits == 8 ? int16_terms(bits) : int16_terms(bits) / per;
    __m256i hi = _mm256_setzero_si256();
    dot_clear(QN, d);
    for (int p = 0, pending = 0; p < planes; p++) {
        const uint8_t *row = first + (size_t)p * plane_step;
        __m256i bytes = full ? _mm256_loadu_si256((const __m256i *)row) : _mm256_maskload_epi32((const int *)row, mask);
        if (bits == 3) { /* even p loads the high row, odd p takes its upper 4 bits */
            const uint8_t *hrow = hi_first + (size_t)(p / 2) * plane_step;
            hi = p % 2 ? _mm256_srli_epi16(hi, 4)
                 : full ? _mm256_loadu_si256((const __m256i *)hrow)
                        : _mm256_maskload_epi32((const int *)hrow, mask);
        }
        dot_plane(bits, QN, bytes, hi, words, query_stride, quad_stride, p * per, d);
        if (++pending == planes_per_widen || p == planes - 1) {
            dot_widen(bits, QN, d);
            pending = 0;
        }
    }
}

/* ---- K scores ---- */

#define K_FOLD_QUADS 64

/* Limit of the int16 query of q8 K: with codes <= 255, a vpmaddwd pair is
 * below 2^24 and K_FOLD_QUADS of them stay below 2^31. */
#define INT16_LIMIT 32767.0f

typedef struct k_fold {
    int32_t words[X86_QUERY_CHUNK][K_FOLD_QUADS + 2]; /* int8 query of each quad (q4, q2), 0 past the channels */
    int64_t words16[X86_QUERY_CHUNK][K_FOLD_QUADS]; /* int16 query of each quad (q8) */
    float step[X86_QUERY_CHUNK], bias[X86_QUERY_CHUNK];
} k_fold;

/* q_c * scale_c ~ step * int8 (or int16 when wide), bias = sum_c q_c *
 * min_c, over channels [c0, c0 + cn) of qn queries (rows of dk floats). */
static void fold_k_queries(const uint8_t *params, int dk, int c0, int cn, const float *q, int qn, int wide, k_fold *f)
{
    const uint8_t *scale_h = params + 2 * (size_t)c0, *min_h = params + 2 * ((size_t)dk + c0);
    for (int i = 0; i < qn; i++) {
        const float *qi = q + (size_t)i * dk + c0;
        float folded[4 * K_FOLD_QUADS];
        __m256 amax = _mm256_setzero_ps(), bias = _mm256_setzero_ps();
        for (int c = 0; c < cn; c += 8) { /* cn is a multiple of 4: a tail is 4 channels */
            const int full = cn - c >= 8;
            __m256 qv = _mm256_maskload_ps(qi + c, lanes8(cn - c));
            __m128i sh = full ? _mm_loadu_si128((const __m128i *)(scale_h + 2 * c))
                              : _mm_loadl_epi64((const __m128i *)(scale_h + 2 * c));
            __m128i mh = full ? _mm_loadu_si128((const __m128i *)(min_h + 2 * c))
                              : _mm_loadl_epi64((const __m128i *)(min_h + 2 * c));
            __m256 fv = _mm256_mul_ps(qv, _mm256_cvtph_ps(sh));
            _mm256_storeu_ps(folded + c, fv);
            amax = _mm256_max_ps(amax, abs8(fv));
            bias = _mm256_fmadd_ps(qv, _mm256_cvtph_ps(mh), bias);
        }
        const float a = hmax8(amax), limit = wide ? INT16_LIMIT : X86_INT8_LIMIT;
        f->step[i] = a / limit;
        f->bias[i] = hsum8(bias);
        const __m256 inv_step = _mm256_set1_ps(a > 0.0f ? limit / a : 0.0f);
        /* words are written 2 quads at a time; a q2 plane holds 4 */
        f->words[i][(cn / 4 + 1) & ~1] = f->words[i][((cn / 4 + 1) & ~1) + 1] = 0;
        for (int c = 0; c < cn; c += 8) {
            if (!wide) {
                steps_to_int8_words(_mm256_mul_ps(_mm256_loadu_ps(folded + c), inv_step), &f->words[i][c / 4]);
                continue;
            }
            __m256i x = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(folded + c), inv_step));
            x = _mm256_packs_epi32(x, x); /* lane k: its 4 values as int16 in bytes 0-7 */
            f->words16[i][c / 4] = _mm_cvtsi128_si64(_mm256_castsi256_si128(x));
            f->words16[i][c / 4 + 1] = _mm_cvtsi128_si64(_mm256_extracti128_si256(x, 1));
        }
    }
}

/* q8: codes widened to int16, one vpmaddwd per 4 tokens and query; a lane
 * holds 2 channels of a token until the end of the block. */
X86_INLINE void dot_q8_wide(const int QN, const uint8_t *first, size_t plane_step, int planes, const k_fold *f,
                            __m256i out[])
{
    __m256i lo[X86_QUERY_CHUNK], hi[X86_QUERY_CHUNK];
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        lo[i] = hi[i] = _mm256_setzero_si256();
    for (int p = 0; p < planes; p++) {
        const uint8_t *row = first + (size_t)p * plane_step;
        __m256i c03 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)row));
        __m256i c47 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(row + 16)));
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            const __m256i w = _mm256_set1_epi64x(f->words16[i][p]);
            lo[i] = _mm256_add_epi32(lo[i], _mm256_madd_epi16(c03, w));
            hi[i] = _mm256_add_epi32(hi[i], _mm256_madd_epi16(c47, w));
        }
    }
    X86_UNROLL
    for (int i = 0; i < QN; i++) /* pair sums: [t0 t1 t4 t5 | t2 t3 t6 t7] -> t0..t7 */
        out[i] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[i], hi[i]), _MM_SHUFFLE(3, 1, 2, 0));
}

/* Scores of tokens t0 .. t0+7 (stored for t < n) for QN queries. */
X86_INLINE void score_k_block(const int bits, const int QN, const uint8_t *group, const uint8_t *hi_codes, int g,
                              int plane0, int quads, int t0, int n, const k_fold *f, float *s, int lds,
                              int accumulate)
{
    const uint8_t *first = group + ((size_t)plane0 * g + t0) * 4;
    const uint8_t *hi_first = hi_codes + ((size_t)(plane0 / 2) * g + t0) * 4; /* q3; plane0 is even */
    dot_sums d;
    if (bits == 8)
        dot_q8_wide(QN, first, (size_t)g * 4, quads, f, d.wide);
    else
        dot_planes(bits, QN, first, hi_first, (size_t)g * 4, _mm256_setzero_si256(), 1, &f->words[0][0],
                   K_FOLD_QUADS + 2, 1, quads, &d);
    const __m256i m = lanes8(n - t0);
    X86_UNROLL
    for (int i = 0; i < QN; i++) {
        float *dst = s + (size_t)i * lds + t0;
        __m256 r = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d.wide[i]), _mm256_set1_ps(f->step[i]),
                                   _mm256_set1_ps(f->bias[i]));
        if (accumulate)
            r = _mm256_add_ps(r, _mm256_maskload_ps(dst, m));
        _mm256_maskstore_ps(dst, m, r);
    }
}

X86_INLINE void score_k_quant(const int bits, slimkv_format fmt, const uint8_t *group, int dk, int g, int n,
                              const float *q, int nq, float *s, int lds)
{
    const int per = 8 / slimkv_plane_bits(bits), nquad = dk / 4;
    const uint8_t *params = group + slimkv_k_params_offset(fmt, dk, g);
    const uint8_t *hi_codes = group + slimkv_k_hi_plane_offset(dk, g); /* q3 */
    k_fold f;
    for (int i0 = 0; i0 < nq;) {
        /* whole chunks, then the last 1-3 queries in one pass (GQA groups of 3, 6, 7 ...) */
        const int qn = x86_min(X86_QUERY_CHUNK, nq - i0);
        int k0 = 0;
        do { /* at least once: dk == 0 scores 0, as the oracle */
            const int kn = x86_min(K_FOLD_QUADS, nquad - k0);
            fold_k_queries(params, dk, 4 * k0, 4 * kn, q + (size_t)i0 * dk, qn, bits == 8, &f);
            for (int t0 = 0; t0 < n; t0 += 8) {
                float *si = s + (size_t)i0 * lds;
                if (qn == X86_QUERY_CHUNK)
                    score_k_block(bits, X86_QUERY_CHUNK, group, hi_codes, g, k0 / per, kn, t0, n, &f, si, lds, k0 > 0);
                else if (qn == 3)
                    score_k_block(bits, 3, group, hi_codes, g, k0 / per, kn, t0, n, &f, si, lds, k0 > 0);
                else if (qn == 2)
                    score_k_block(bits, 2, group, hi_codes, g, k0 / per, kn, t0, n, &f, si, lds, k0 > 0);
                else
                    score_k_block(bits, 1, group, hi_codes, g, k0 / per, kn, t0, n, &f, si, lds, k0 > 0);
            }
            k0 += K_FOLD_QUADS;
        } while (k0 < nquad);
        i0 += qn;
    }
}

/* ---- V accumulation ---- */

/* Tokens folded at once: 16 quads, whole planes for every bit width. */
#define V_FOLD_TOKENS 64
/* Channel groups folded together: all of them when there are 1, 2 or 4,
 * else windows of 4. */
#define V_FOLD_GROUPS 4
#define V_WORDS_PER_ROW (V_FOLD_TOKENS / 4 * V_FOLD_GROUPS)

typedef struct v_fold {
    int32_t words[X86_QUERY_CHUNK][V_WORDS_PER_ROW]; /* row i, token quad u, group j: [i][u * groups + j] */
    /* q8: the residual of each weight in 1/254 steps (a second int8 level,
     * as in quant_avx512.c: with one, q8 is ~0.8% from the scalar oracle) */
    int32_t fine[X86_QUERY_CHUNK][V_WORDS_PER_ROW];
    float step[X86_QUERY_CHUNK][8], bias[X86_QUERY_CHUNK][8]; /* row i, group j */
} v_fold;

/* Parameters of the tokens t .. t+8/NVG-1 and groups j0 .. j0+NVG-1 as 8
 * floats [token][group] (lanes m; the others 0). Stored [token][nvg groups]:
 * a plain load when nvg is NVG, else a gather of the 32-bit words ending at
 * each half (2 bytes before the first is still in the block: codes precede
 * scales, scales mins). Only the lanes in m are read; t + 8/NVG <= g. */
X86_INLINE __m256 param_vec(const int NVG, const uint8_t *halves, int nvg, int j0, int t, __m256i m)
{
    const uint8_t *base = halves + 2 * ((size_t)t * nvg + j0);
    __m128i h;
    if (nvg == NVG) {
        h = _mm_loadu_si128((const __m128i *)base);
    } else { /* NVG == 4: 2 tokens x 4 groups */
        const __m256i idx = _mm256_add_epi32(_mm256_setr_epi32(-1, 0, 1, 2, -1, 0, 1, 2),
                                             _mm256_setr_epi32(0, 0, 0, 0, nvg, nvg, nvg, nvg));
        __m256i raw = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)base, idx, m, 2);
        raw = _mm256_srli_epi32(raw, 16);
        h = _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(raw, raw), _MM_SHUFFLE(3, 1, 2, 0)));
    }
    return _mm256_and_ps(_mm256_cvtph_ps(h), _mm256_castsi256_ps(m));
}

/* Max (or sum) over the tokens of a register of 8/NVG tokens x NVG groups:
 * lane l then holds the result for group l % NVG. */
X86_INLINE __m256 reduce_tokens(const int NVG, __m256 x, int is_max)
{
#define COMBINE(a, b) (is_max ? _mm256_max_ps(a, b) : _mm256_add_ps(a, b))
    x = COMBINE(x, _mm256_permute2f128_ps(x, x, 1));
    if (NVG <= 2)
        x = COMBINE(x, _mm256_permute_ps(x, _MM_SHUFFLE(1, 0, 3, 2)));
    if (NVG == 1)
        x = COMBINE(x, _mm256_permute_ps(x, _MM_SHUFFLE(2, 3, 0, 1)));
    return x;
#undef COMBINE
}

/* One token quad's int8 words for NVG groups from its folded values (in
 * steps) in [token][group] order: 1 register for NVG 1 (two quads) or 2,
 * 2 registers for NVG 4. */
X86_INLINE void quad_words(const int NVG, __m256 x0, __m256 x1, int32_t *words)
{
    if (NVG == 1) {
        steps_to_int8_words(x0, words);
    } else if (NVG == 2) { /* [t][j] -> [j][t], then one word per 128-bit lane */
        steps_to_int8_words(_mm256_permutevar8x32_ps(x0, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)), words);
    } else {
        /* bytes [t0 j0-3, t2 j0-3 | t1 j0-3, t3 j0-3] -> interleaved -> [j][t] */
        __m256i p = _mm256_packs_epi32(_mm256_cvtps_epi32(x0), _mm256_cvtps_epi32(x1));
        p = _mm256_packs_epi16(p, p);
        __m128i b = _mm_unpacklo_epi8(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
        b = _mm_shuffle_epi8(b, _mm_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15));
        _mm_storeu_si128((__m128i *)words, b);
    }
}

/* w_t * scale_tj ~ step_j * int8, bias_j = sum_t w_t * min_tj over tokens
 * [t0, t0 + tn), for QN weight rows and the channel groups j0 .. j0+NVG-1
 * together (NVG is nvg when that is 1, 2 or 4, else a window of 4, groups
 * past nvg left 0). A register holds 8/NVG tokens x NVG groups in the
 * parameters' stored order, so the maxima and sums per group come out in
 * the lane pattern the folded registers need. */
#define FINE_LEVELS 254.0f

/* x - rint(x) (exact, in [-0.5, 0.5]) in 1/FINE_LEVELS steps. */
X86_INLINE __m256 fine_part(__m256 x)
{
    return _mm256_mul_ps(_mm256_sub_ps(x, _mm256_round_ps(x, ROUND_NEAREST)), _mm256_set1_ps(FINE_LEVELS));
}

X86_INLINE void fold_v_weights(const int QN, const int NVG, const int two_level, const uint8_t *scale_h,
                               const uint8_t *min_h, int nvg, int j0, int t0, int tn, const float *w, int ldw,
                               v_fold *f)
{
    const int tokens = 8 / NVG, nvec = (tn + 15) / 16 * 16 / tokens; /* whole 4-quad words, 0 past tn */
    const __m256i spread = NVG == 4   ? _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1)
                           : NVG == 2 ? _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3)
                                      : _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lane_group = NVG == 4   ? _mm256_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3)
                               : NVG == 2 ? _mm256_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1)
                                          : _mm256_setzero_si256();
    const __m256i groups = _mm256_cmpgt_epi32(_mm256_set1_epi32(nvg - j0), lane_group);
    float folded[X86_QUERY_CHUNK][V_FOLD_TOKENS * V_FOLD_GROUPS];
    __m256 amax[X86_QUERY_CHUNK], bias[X86_QUERY_CHUNK], inv_step[X86_QUERY_CHUNK];
    X86_UNROLL
    for (int i = 0; i < X86_QUERY_CHUNK; i++)
        amax[i] = bias[i] = _mm256_setzero_ps();
    for (int k = 0; k < nvec; k++) {
        const int tok = k * tokens;
        const __m256i m = _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(tn - tok), spread), groups);
        const __m256 sc = param_vec(NVG, scale_h, nvg, j0, t0 + tok, m);
        const __m256 mn = param_vec(NVG, min_h, nvg, j0, t0 + tok, m);
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            __m256 wv = _mm256_maskload_ps(w + (size_t)i * ldw + t0 + tok, lanes8(tn - tok));
            if (NVG > 1)
                wv = _mm256_permutevar8x32_ps(wv, spread);
            __m256 fv = _mm256_mul_ps(wv, sc);
            _mm256_storeu_ps(&folded[i][8 * k], fv);
            amax[i] = _mm256_max_ps(amax[i], abs8(fv));
            bias[i] = _mm256_fmadd_ps(wv, mn, bias[i]);
        }
    }
    const __m256 limit = _mm256_set1_ps(X86_INT8_LIMIT);
    X86_UNROLL
    for (int i = 0; i < QN; i++) {
        const __m256 a = reduce_tokens(NVG, amax[i], 1);
        _mm256_storeu_ps(f->step[i], _mm256_div_ps(a, limit));
        _mm256_storeu_ps(f->bias[i], reduce_tokens(NVG, bias[i], 0));
        inv_step[i] = _mm256_and_ps(_mm256_div_ps(limit, a), _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_NEQ_OQ));
    }
    X86_UNROLL
    for (int i = 0; i < QN; i++) {
        const int regs = NVG == 4 ? 2 : 1, words = NVG == 1 ? 2 : NVG; /* per call of quad_words */
        for (int k = 0; k < nvec; k += regs) {
            __m256 x0 = _mm256_mul_ps(_mm256_loadu_ps(&folded[i][8 * k]), inv_step[i]);
            __m256 x1 = NVG == 4 ? _mm256_mul_ps(_mm256_loadu_ps(&folded[i][8 * k + 8]), inv_step[i]) : x0;
            quad_words(NVG, x0, x1, &f->words[i][k / regs * words]);
            if (two_level)
                quad_words(NVG, fine_part(x0), fine_part(x1), &f->fine[i][k / regs * words]);
        }
    }
}

/* acc[i][c .. c+7] (up to c_end) += step_i * sum + bias_i over the fold,
 * the words of row i and quad u at words[i * V_WORDS_PER_ROW + u *
 * quad_stride], its step and bias f->step[i][jf]. */
X86_INLINE void accum_v_block(const int bits, const int QN, const int fine_level, const uint8_t *block,
                              const uint8_t *hi_codes, int dv, int c, int c_end, int q0, int quads,
                              const int32_t *words, int quad_stride, const v_fold *f, int jf, float *acc)
{
    const int per = 8 / slimkv_plane_bits(bits), count = x86_min(8, c_end - c);
    const __m256i m = lanes8(count);
    dot_sums d;
    /* q3: q0 is a multiple of 16, so low plane q0 / 4 is even and its high row q0 / 8 */
    dot_planes(bits, QN, block + ((size_t)(q0 / per) * dv + c) * 4, hi_codes + ((size_t)(q0 / 8) * dv + c) * 4,
               (size_t)dv * 4, m, count == 8, words, V_WORDS_PER_ROW, quad_stride, quads, &d);
    X86_UNROLL
    for (int i = 0; i < QN; i++) {
        float *dst = acc + (size_t)i * dv + c;
        /* the fine level: the residual words, 1/254 of the step, no bias */
        const float step = fine_level ? f->step[i][jf] / FINE_LEVELS : f->step[i][jf];
        __m256 a = _mm256_add_ps(_mm256_maskload_ps(dst, m), _mm256_set1_ps(fine_level ? 0.0f : f->bias[i][jf]));
        _mm256_maskstore_ps(dst, m, _mm256_fmadd_ps(_mm256_cvtepi32_ps(d.wide[i]), _mm256_set1_ps(step), a));
    }
}

/* Folds NVG groups starting at j0 and accumulates their channels. */
X86_INLINE void accum_v_groups(const int bits, const int QN, const int NVG, const uint8_t *block, const uint8_t *scale_h,
                               const uint8_t *min_h, int dv, int g, int j0, int t0, int tn, const float *w, int ldw,
                               float *acc)
{
    const int nvg = (dv + g - 1) / g, quads = (tn + 3) / 4, two_level = bits == 8;
    const uint8_t *hi_codes = block + slimkv_v_hi_plane_offset(dv, g); /* q3 */
    v_fold f;
    fold_v_weights(QN, NVG, two_level, scale_h, min_h, nvg, j0, t0, tn, w, ldw, &f);
    for (int j = 0; j < x86_min(NVG, nvg - j0); j++) {
        const int c_end = x86_min(dv, (j0 + j + 1) * g);
        for (int c = (j0 + j) * g; c < c_end; c += 8) {
            accum_v_block(bits, QN, 0, block, hi_codes, dv, c, c_end, t0 / 4, quads, &f.words[0][j], NVG, &f, j, acc);
            if (two_level) /* a second pass over the same codes, from L1 */
                accum_v_block(bits, QN, 1, block, hi_codes, dv, c, c_end, t0 / 4, quads, &f.fine[0][j], NVG, &f, j,
                              acc);
        }
    }
}

X86_INLINE void accum_v_queries(const int bits, const int QN, const uint8_t *block, const uint8_t *scale_h,
                                const uint8_t *min_h, int dv, int g, int n, const float *w, int ldw, float *acc)
{
    const int nvg = (dv + g - 1) / g;
    for (int t0 = 0; t0 < n; t0 += V_FOLD_TOKENS) {
        const int tn = x86_min(V_FOLD_TOKENS, n - t0);
        if (nvg == 1)
            accum_v_groups(bits, QN, 1, block, scale_h, min_h, dv, g, 0, t0, tn, w, ldw, acc);
        else if (nvg == 2)
            accum_v_groups(bits, QN, 2, block, scale_h, min_h, dv, g, 0, t0, tn, w, ldw, acc);
        else
            for (int j0 = 0; j0 < nvg; j0 += V_FOLD_GROUPS)
                accum_v_groups(bits, QN, V_FOLD_GROUPS, block, scale_h, min_h, dv, g, j0, t0, tn, w, ldw, acc);
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

static void slimkv_pack_k_q8_avx2(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(8, SLIMKV_Q8, src, dk, g, group);
}

static void slimkv_pack_v_q8_avx2(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(8, SLIMKV_Q8, src, dv, g, block, slot);
}

static void slimkv_score_k_q8_avx2(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                   int lds)
{
    score_k_quant(8, SLIMKV_Q8, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q8_avx2(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                   float *acc)
{
    accum_v_quant(8, SLIMKV_Q8, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q4_avx2(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(4, SLIMKV_Q4, src, dk, g, group);
}

static void slimkv_pack_v_q4_avx2(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(4, SLIMKV_Q4, src, dv, g, block, slot);
}

static void slimkv_score_k_q4_avx2(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                   int lds)
{
    score_k_quant(4, SLIMKV_Q4, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q4_avx2(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                   float *acc)
{
    accum_v_quant(4, SLIMKV_Q4, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q2_avx2(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(2, SLIMKV_Q2, src, dk, g, group);
}

static void slimkv_pack_v_q2_avx2(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(2, SLIMKV_Q2, src, dv, g, block, slot);
}

static void slimkv_score_k_q2_avx2(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                   int lds)
{
    score_k_quant(2, SLIMKV_Q2, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q2_avx2(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                   float *acc)
{
    accum_v_quant(2, SLIMKV_Q2, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q3_avx2(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(3, SLIMKV_Q3, src, dk, g, group);
}

static void slimkv_pack_v_q3_avx2(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(3, SLIMKV_Q3, src, dv, g, block, slot);
}

static void slimkv_score_k_q3_avx2(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                   int lds)
{
    score_k_quant(3, SLIMKV_Q3, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q3_avx2(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                   float *acc)
{
    accum_v_quant(3, SLIMKV_Q3, block, dv, g, n, w, ldw, nq, acc);
}

/* ---- fused decode over whole groups, quantized K and V formats ---- */

/* Index: format - SLIMKV_Q8 (kernels_avx2.c composes them with the dense
 * formats and SparK's scores). */
const slimkv_score_k_fn slimkv_quant_score_k_avx2[4] = {
    slimkv_score_k_q8_avx2,
    slimkv_score_k_q4_avx2,
    slimkv_score_k_q2_avx2,
    slimkv_score_k_q3_avx2};
const slimkv_accum_v_fn slimkv_quant_accum_v_avx2[4] = {
    slimkv_accum_v_q8_avx2,
    slimkv_accum_v_q4_avx2,
    slimkv_accum_v_q2_avx2,
    slimkv_accum_v_q3_avx2};

/* Every pair of q8 / q4 / q2 / q3 (formats SLIMKV_Q8..SLIMKV_Q3). */
static void slimkv_attend_groups_quant_avx2(const slimkv_group_span *span, const float *q, int rows, float *m,
                                            float *l, float *acc)
{
    const slimkv_tile_ops ops = {slimkv_quant_score_k_avx2[span->k_format - SLIMKV_Q8],
                                 slimkv_quant_accum_v_avx2[span->v_format - SLIMKV_Q8],
                                 slimkv_exp_sum_avx2, slimkv_max_f32_avx2, slimkv_scale_f32_avx2, NULL,
                                 slimkv_quant_score_k_avx2[0]};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

void slimkv_x86_quant_init_avx2(slimkv_kernels *k)
{
    for (int kf = SLIMKV_Q8; kf <= SLIMKV_Q3; kf++)
        for (int vf = SLIMKV_Q8; vf <= SLIMKV_Q3; vf++)
            k->attend_groups[kf][vf] = slimkv_attend_groups_quant_avx2;
    k->pack_k[SLIMKV_Q8] = slimkv_pack_k_q8_avx2;
    k->pack_v[SLIMKV_Q8] = slimkv_pack_v_q8_avx2;
    k->score_k[SLIMKV_Q8] = slimkv_score_k_q8_avx2;
    k->accum_v[SLIMKV_Q8] = slimkv_accum_v_q8_avx2;
    k->pack_k[SLIMKV_Q4] = slimkv_pack_k_q4_avx2;
    k->pack_v[SLIMKV_Q4] = slimkv_pack_v_q4_avx2;
    k->score_k[SLIMKV_Q4] = slimkv_score_k_q4_avx2;
    k->accum_v[SLIMKV_Q4] = slimkv_accum_v_q4_avx2;
    k->pack_k[SLIMKV_Q2] = slimkv_pack_k_q2_avx2;
    k->pack_v[SLIMKV_Q2] = slimkv_pack_v_q2_avx2;
    k->score_k[SLIMKV_Q2] = slimkv_score_k_q2_avx2;
    k->accum_v[SLIMKV_Q2] = slimkv_accum_v_q2_avx2;
    k->pack_k[SLIMKV_Q3] = slimkv_pack_k_q3_avx2;
    k->pack_v[SLIMKV_Q3] = slimkv_pack_v_q3_avx2;
    k->score_k[SLIMKV_Q3] = slimkv_score_k_q3_avx2;
    k->accum_v[SLIMKV_Q3] = slimkv_accum_v_q3_avx2;
}
