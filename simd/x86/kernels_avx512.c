/* AVX-512 bodies of the dense formats (f32, f16, bf16), the residual rows,
 * exp_sum and the fp16 conversions; the quantized formats are in
 * quant_avx512.c. Tails are masked loads and stores, never reads past the
 * data.
 *
 * Dense K is token-major, so a token's score is a dot product along the
 * row. Instead of one horizontal sum per token, the 16-lane partial sums of
 * 16 tokens are folded pairwise (each step adds the two halves of every
 * token's lanes) until one register holds the 16 scores. */
#include <immintrin.h>
#include <sleef.h>

#include "hadamard.h"
#include "x86_common.h"
#include "tile_loop.h"

X86_INLINE __mmask16 lanes16(int n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* ---- element conversions ---- */

/* Elements i .. i+15 (lanes m, the others 0) of a dense array as float. */
X86_INLINE __m512 load_elems(slimkv_format fmt, const void *base, size_t i, __mmask16 m)
{
    if (fmt == SLIMKV_F32)
        return _mm512_maskz_loadu_ps(m, (const float *)base + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)base + i);
    if (fmt == SLIMKV_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Round to nearest even, NaN kept and made quiet: slimkv_f32_to_bf16. */
X86_INLINE __m256i f32_to_bf16_16(__m512 x)
{
    const __m512i u = _mm512_castps_si512(x), high = _mm512_srli_epi32(u, 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(high, _mm512_set1_epi32(1)));
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
    __m512i quiet = _mm512_or_si512(high, _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, quiet));
}

/* dst[i] = fmt(src[i]) for i < n. */
X86_INLINE void store_elems(slimkv_format fmt, void *dst, const float *src, size_t n)
{
    if (fmt == SLIMKV_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    uint16_t *h = dst;
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = lanes16(n - i > 16 ? 16 : (int)(n - i));
        __m512 x = _mm512_maskz_loadu_ps(m, src + i);
        __m256i y = fmt == SLIMKV_F16 ? _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT) : f32_to_bf16_16(x);
        _mm256_mask_storeu_epi16(h + i, m, y);
    }
}

static void f32_to_f16_avx512(const float *src, uint16_t *dst, size_t n)
{
    store_elems(SLIMKV_F16, dst, src, n);
}

static void f16_to_f32_avx512(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = lanes16(n - i > 16 ? 16 : (int)(n - i));
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}

/* ---- scores: 16 tokens per block, partial sums folded pairwise ---- */

/* Each step adds, for every token, half of its lanes to the other half:
 * one blend (any ALU port) and one shuffle per pair of registers. */

/* [a: 16 lanes], [b: 16 lanes] -> [a: 8 | b: 8] */
X86_INLINE __m512 fold_tokens_1(__m512 a, __m512 b)
{
    return _mm512_add_ps(_mm512_mask_blend_ps(0xff00, a, b), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 3, 2)));
}

/* [A: 8 | B: 8], [C: 8 | D: 8] -> 128-bit blocks [A | C | B | D] */
X86_INLINE __m512 fold_tokens_2(__m512 ab, __m512 cd)
{
    const __m512i other = _mm512_setr_epi32(4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 24, 25, 26, 27);
    return _mm512_add_ps(_mm512_mask_blend_ps(0xf0f0, ab, cd), _mm512_permutex2var_ps(ab, other, cd));
}

/* two registers of 4 tokens, one per 128-bit block -> block k: [lo's k-th
 * token: 2 | hi's k-th token: 2] */
X86_INLINE __m512 fold_tokens_4(__m512 lo, __m512 hi)
{
    return _mm512_add_ps(_mm512_mask_blend_ps(0xcccc, lo, hi), _mm512_shuffle_ps(lo, hi, _MM_SHUFFLE(1, 0, 3, 2)));
}

/* two registers of 8 tokens, 2 lanes each -> lane t = score of token t */
X86_INLINE __m512 fold_tokens_8(__m512 lo, __m512 hi)
{
    __m512 x = _mm512_add_ps(_mm512_mask_blend_ps(0xaaaa, lo, hi),
                             _mm512_permute_ps(_mm512_mask_blend_ps(0x5555, lo, hi), _MM_SHUFFLE(2, 3, 0, 1)));
    /* the steps above leave token t in lane bitreverse4(t) */
    const __m512i order = _mm512_setr_epi32(0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15);
    return _mm512_permutexvar_ps(order, x);
}

/* 16-lane partial dot products of the 4 rows t .. t+3 with QN queries (0
 * for rows past n): 4 x QN independent sums, each query register loaded
 * once for the 4 rows. */
X86_INLINE void four_row_partials(const slimkv_format fmt, const int QN, const void *rows, size_t stride, int t,
                                  int n, int d, const float *q, __m512 out[4][X86_QUERY_CHUNK])
{
    X86_UNROLL
    for (int r = 0; r < 4; r++)
        X86_UNROLL
        for (int i = 0; i < QN; i++)
            out[r][i] = _mm512_setzero_ps();
    if (t >= n)
        return;
    size_t row[4];
    X86_UNROLL
    for (int r = 0; r < 4; r++) /* rows past n read row t, then give 0 */
        row[r] = (size_t)(t + r < n ? t + r : t) * stride;
    for (int c = 0; c < d; c += 16) {
        const __mmask16 m = lanes16(d - c);
        __m512 k[4];
        X86_UNROLL
        for (int r = 0; r < 4; r++)
            k[r] = load_elems(fmt, rows, row[r] + c, m);
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            const __m512 qv = _mm512_maskz_loadu_ps(m, q + (size_t)i * d + c);
            X86_UNROLL
            for (int r = 0; r < 4; r++)
                out[r][i] = _mm512_fmadd_ps(qv, k[r], out[r][i]);
        }
    }
    X86_UNROLL
    for (int r = 1; r < 4; r++)
        if (t + r >= n)
            X86_UNROLL
            for (int i = 0; i < QN; i++)
                out[r][i] = _mm512_setzero_ps();
}

/* 4 tokens t .. t+3 -> 128-bit blocks [t | t+2 | t+1 | t+3] per query */
X86_INLINE void four_tokens(const slimkv_format fmt, const int QN, const void *rows, size_t stride, int t, int n,
                            int d, const float *q, __m512 out[])
{
    __m512 p[4][X86_QUERY_CHUNK];
    four_row_partials(fmt, QN, rows, stride, t, n, d, q, p);
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        out[i] = fold_tokens_2(fold_tokens_1(p[0][i], p[1][i]), fold_tokens_1(p[2][i], p[3][i]));
}

/* 8 tokens t .. t+7 -> 2 lanes each, per query (see fold_tokens_4) */
X86_INLINE void eight_tokens(const slimkv_format fmt, const int QN, const void *rows, size_t stride, int t, int n,
                             int d, const float *q, __m512 out[])
{
    __m512 lo[X86_QUERY_CHUNK], hi[X86_QUERY_CHUNK];
    four_tokens(fmt, QN, rows, stride, t, n, d, q, lo);
    four_tokens(fmt, QN, rows, stride, t + 4, n, d, q, hi);
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        out[i] = fold_tokens_4(lo[i], hi[i]);
}

X86_INLINE void score_dense_block(const slimkv_format fmt, const int QN, const void *rows, size_t stride, int t0,
                                  int n, int d, const float *q, float *s, int lds)
{
    __m512 lo[X86_QUERY_CHUNK], hi[X86_QUERY_CHUNK];
    eight_tokens(fmt, QN, rows, stride, t0, n, d, q, lo);
    eight_tokens(fmt, QN, rows, stride, t0 + 8, n, d, q, hi);
    const __mmask16 m = lanes16(n - t0);
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        _mm512_mask_storeu_ps(s + (size_t)i * lds + t0, m, fold_tokens_8(lo[i], hi[i]));
}

X86_INLINE void score_dense(const slimkv_format fmt, const void *rows, size_t stride, int n, int d, const float *q,
                            int nq, float *s, int lds)
{
    const size_t esize = fmt == SLIMKV_F32 ? 4 : 2;
    x86_prefetch_rows(rows, stride * esize, n, (size_t)d * esize);
    for (int i0 = 0; i0 < nq;) {
        const float *qi = q + (size_t)i0 * d;
        float *si = s + (size_t)i0 * lds;
        if (nq - i0 >= X86_QUERY_CHUNK) {
            for (int t0 = 0; t0 < n; t0 += 16)
                score_dense_block(fmt, X86_QUERY_CHUNK, rows, stride, t0, n, d, qi, si, lds);
            i0 += X86_QUERY_CHUNK;
        } else {
            for (int t0 = 0; t0 < n; t0 += 16)
                score_dense_block(fmt, 1, rows, stride, t0, n, d, qi, si, lds);
            i0++;
        }
    }
}

/* ---- accumulation: channels in registers, weights broadcast ---- */

/* acc[i][c ..] += sum_t w[i][t] * row_t[c ..] for the NV channel registers
 * starting at c (the last one ending at d). */
X86_INLINE void accum_dense_block(const slimkv_format fmt, const int QN, const int NV, const void *rows,
                                  size_t stride, int n, int c, int d, const float *w, int ldw, float *acc)
{
    const __mmask16 last = lanes16(d - c - 16 * (NV - 1));
    __m512 a[X86_QUERY_CHUNK][4];
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        X86_UNROLL
        for (int v = 0; v < NV; v++)
            a[i][v] = _mm512_maskz_loadu_ps(v < NV - 1 ? (__mmask16)0xffff : last, acc + (size_t)i * d + c + 16 * v);
    for (int t = 0; t < n; t++) {
        __m512 x[4];
        X86_UNROLL
        for (int v = 0; v < NV; v++)
            x[v] = load_elems(fmt, rows, (size_t)t * stride + c + 16 * v, v < NV - 1 ? (__mmask16)0xffff : last);
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            const __m512 wt = _mm512_set1_ps(w[(size_t)i * ldw + t]);
            X86_UNROLL
            for (int v = 0; v < NV; v++)
                a[i][v] = _mm512_fmadd_ps(wt, x[v], a[i][v]);
        }
    }
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        X86_UNROLL
        for (int v = 0; v < NV; v++)
            _mm512_mask_storeu_ps(acc + (size_t)i * d + c + 16 * v, v < NV - 1 ? (__mmask16)0xffff : last, a[i][v]);
}

X86_INLINE void accum_dense_queries(const slimkv_format fmt, const int QN, const void *rows, size_t stride, int n,
                                    int d, const float *w, int ldw, float *acc)
{
    for (int c = 0; c < d; c += 64) {
        switch (x86_min(4, (d - c + 15) / 16)) {
        case 4: accum_dense_block(fmt, QN, 4, rows, stride, n, c, d, w, ldw, acc); break;
        case 3: accum_dense_block(fmt, QN, 3, rows, stride, n, c, d, w, ldw, acc); break;
        case 2: accum_dense_block(fmt, QN, 2, rows, stride, n, c, d, w, ldw, acc); break;
        default: accum_dense_block(fmt, QN, 1, rows, stride, n, c, d, w, ldw, acc); break;
        }
    }
}

X86_INLINE void accum_dense(const slimkv_format fmt, const void *rows, size_t stride, int n, int d, const float *w,
                            int ldw, int nq, float *acc)
{
    const size_t esize = fmt == SLIMKV_F32 ? 4 : 2;
    x86_prefetch_rows(rows, stride * esize, n, (size_t)d * esize);
    for (int i0 = 0; i0 < nq;) {
        const float *wi = w + (size_t)i0 * ldw;
        float *ai = acc + (size_t)i0 * d;
        if (nq - i0 >= X86_QUERY_CHUNK) {
            accum_dense_queries(fmt, X86_QUERY_CHUNK, rows, stride, n, d, wi, ldw, ai);
            i0 += X86_QUERY_CHUNK;
        } else {
            accum_dense_queries(fmt, 1, rows, stride, n, d, wi, ldw, ai);
            i0++;
        }
    }
}

static void slimkv_score_rows_f32_avx512(const void *rows, size_t stride, int n, int d, const float *q, int nq,
                                         float *s, int lds)
{
    score_dense(SLIMKV_F32, rows, stride, n, d, q, nq, s, lds);
}

static void slimkv_score_rows_f16_avx512(const void *rows, size_t stride, int n, int d, const float *q, int nq,
                                         float *s, int lds)
{
    score_dense(SLIMKV_F16, rows, stride, n, d, q, nq, s, lds);
}

static void slimkv_accum_rows_f32_avx512(const void *rows, size_t stride, int n, int d, const float *w, int ldw,
                                         int nq, float *acc)
{
    accum_dense(SLIMKV_F32, rows, stride, n, d, w, ldw, nq, acc);
}

static void slimkv_accum_rows_f16_avx512(const void *rows, size_t stride, int n, int d, const float *w, int ldw,
                                         int nq, float *acc)
{
    accum_dense(SLIMKV_F16, rows, stride, n, d, w, ldw, nq, acc);
}

/* The dense group kernels on this file's row kernels (store_elems,
 * score_dense, accum_dense above), then the entry points of each format. */
#include "dense_groups.h"

static void slimkv_pack_k_f32_avx512(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_F32, src, dk, g, group);
}

static void slimkv_pack_v_f32_avx512(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_F32, src, dv, g, block, slot);
}

static void slimkv_score_k_f32_avx512(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                      int lds)
{
    score_k_dense(SLIMKV_F32, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_f32_avx512(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                      float *acc)
{
    accum_v_dense(SLIMKV_F32, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_f16_avx512(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_F16, src, dk, g, group);
}

static void slimkv_pack_v_f16_avx512(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_F16, src, dv, g, block, slot);
}

static void slimkv_score_k_f16_avx512(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                      int lds)
{
    score_k_dense(SLIMKV_F16, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_f16_avx512(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                      float *acc)
{
    accum_v_dense(SLIMKV_F16, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_bf16_avx512(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_BF16, src, dk, g, group);
}

static void slimkv_pack_v_bf16_avx512(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_BF16, src, dv, g, block, slot);
}

static void slimkv_score_k_bf16_avx512(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                       int lds)
{
    score_k_dense(SLIMKV_BF16, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_bf16_avx512(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                       float *acc)
{
    accum_v_dense(SLIMKV_BF16, block, dv, g, n, w, ldw, nq, acc);
}


/* ---- softmax ---- */

float slimkv_exp_sum_avx512(float *x, int n, float max)
{
    const __m512 mx = _mm512_set1_ps(max);
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = lanes16(n - i);
        __m512 e = Sleef_expf16_u10avx512f(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mx));
        _mm512_mask_storeu_ps(x + i, m, e);
        sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

float slimkv_max_f32_avx512(const float *x, int n)
{
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += 16)
        m = _mm512_max_ps(m, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), lanes16(n - i), x + i));
    return _mm512_reduce_max_ps(m);
}

void slimkv_scale_f32_avx512(float *x, int n, float a)
{
    const __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = lanes16(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), va));
    }
}

/* ---- Walsh-Hadamard rotation ---- */

/* Butterflies of strides 1, 2, 4 and 8 inside one register: lane j (bit h
 * clear) becomes x_j + x_{j+h}, lane j + h becomes x_j - x_{j+h}. */
X86_INLINE __m512 hadamard16(__m512 x)
{
    __m512 p = _mm512_permute_ps(x, _MM_SHUFFLE(2, 3, 0, 1));
    x = _mm512_mask_sub_ps(_mm512_add_ps(x, p), 0xaaaa, p, x);
    p = _mm512_permute_ps(x, _MM_SHUFFLE(1, 0, 3, 2));
    x = _mm512_mask_sub_ps(_mm512_add_ps(x, p), 0xcccc, p, x);
    p = _mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(2, 3, 0, 1));
    x = _mm512_mask_sub_ps(_mm512_add_ps(x, p), 0xf0f0, p, x);
    p = _mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(1, 0, 3, 2));
    return _mm512_mask_sub_ps(_mm512_add_ps(x, p), 0xff00, p, x);
}

static void slimkv_rotate_avx512(float *x, int dim, const float *signs, int inverse)
{
    if (dim < 16) {
        slimkv_rotate_generic(x, dim, signs, inverse);
        return;
    }
    for (int c = 0; c < dim; c += 16) {
        __m512 v = _mm512_loadu_ps(x + c);
        _mm512_storeu_ps(x + c, hadamard16(inverse ? v : _mm512_mul_ps(v, _mm512_loadu_ps(signs + c))));
    }
    for (int h = 16; h < dim; h *= 2)
        for (int i = 0; i < dim; i += 2 * h)
            for (int j = i; j < i + h; j += 16) {
                const __m512 a = _mm512_loadu_ps(x + j), b = _mm512_loadu_ps(x + j + h);
                _mm512_storeu_ps(x + j, _mm512_add_ps(a, b));
                _mm512_storeu_ps(x + j + h, _mm512_sub_ps(a, b));
            }
    const __m512 norm = _mm512_set1_ps(1.0f / sqrtf((float)dim));
    for (int c = 0; c < dim; c += 16) {
        const __m512 scale = inverse ? _mm512_mul_ps(_mm512_loadu_ps(signs + c), norm) : norm;
        _mm512_storeu_ps(x + c, _mm512_mul_ps(_mm512_loadu_ps(x + c), scale));
    }
}

/* ---- fused decode over whole groups, dense K and V formats ---- */

/* Index: format - SLIMKV_F32. */
static const slimkv_score_k_fn dense_score_avx512[3] = {
    slimkv_score_k_f32_avx512,
    slimkv_score_k_f16_avx512,
    slimkv_score_k_bf16_avx512};
static const slimkv_accum_v_fn dense_accum_avx512[3] = {
    slimkv_accum_v_f32_avx512,
    slimkv_accum_v_f16_avx512,
    slimkv_accum_v_bf16_avx512};

/* Every pair of f32 / f16 / bf16 (formats 0..2). */
static void slimkv_attend_groups_dense_avx512(const slimkv_group_span *span, const float *q, int rows, float *m,
                                              float *l, float *acc)
{
    const slimkv_tile_ops ops = {dense_score_avx512[span->k_format], dense_accum_avx512[span->v_format],
                                 slimkv_exp_sum_avx512, slimkv_max_f32_avx512, slimkv_scale_f32_avx512, NULL, NULL};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

/* ---- fused decode: mixed dense / quantized pairs and SparK K groups ---- */

static slimkv_score_k_fn score_k_of_avx512(slimkv_format fmt)
{
    return slimkv_is_quantized(fmt) ? slimkv_quant_score_k_avx512[fmt - SLIMKV_Q8] : dense_score_avx512[fmt];
}

static slimkv_accum_v_fn accum_v_of_avx512(slimkv_format fmt)
{
    return slimkv_is_quantized(fmt) ? slimkv_quant_accum_v_avx512[fmt - SLIMKV_Q8] : dense_accum_avx512[fmt];
}

/* Dense K with quantized V, or quantized K with dense V. */
static void slimkv_attend_groups_mixed_avx512(const slimkv_group_span *span, const float *q, int rows, float *m,
                                             float *l, float *acc)
{
    const slimkv_tile_ops ops = {score_k_of_avx512(span->k_format), accum_v_of_avx512(span->v_format),
                                 slimkv_exp_sum_avx512, slimkv_max_f32_avx512, slimkv_scale_f32_avx512, NULL,
                                 score_k_of_avx512(SLIMKV_Q8)};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

/* SparK K groups of any format, V blocks of any format. */
static void slimkv_attend_spark_groups_avx512(const slimkv_group_span *span, const float *q, int rows, float *m,
                                             float *l, float *acc)
{
    const slimkv_tile_ops ops = {NULL, accum_v_of_avx512(span->v_format), slimkv_exp_sum_avx512, slimkv_max_f32_avx512,
                                 slimkv_scale_f32_avx512, slimkv_spark_score_avx512[span->k_format], NULL};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

void slimkv_kernels_init_avx512(slimkv_kernels *k)
{
    slimkv_kernels_init_scalar(k);
    /* no scalar fused body behind SIMD kernels: every entry is set below */
    memset(k->attend_groups, 0, sizeof k->attend_groups);
    memset(k->attend_spark_groups, 0, sizeof k->attend_spark_groups);
    k->name = "avx512";
    k->pack_k[SLIMKV_F32] = slimkv_pack_k_f32_avx512;
    k->pack_v[SLIMKV_F32] = slimkv_pack_v_f32_avx512;
    k->score_k[SLIMKV_F32] = slimkv_score_k_f32_avx512;
    k->accum_v[SLIMKV_F32] = slimkv_accum_v_f32_avx512;
    k->pack_k[SLIMKV_F16] = slimkv_pack_k_f16_avx512;
    k->pack_v[SLIMKV_F16] = slimkv_pack_v_f16_avx512;
    k->score_k[SLIMKV_F16] = slimkv_score_k_f16_avx512;
    k->accum_v[SLIMKV_F16] = slimkv_accum_v_f16_avx512;
    k->pack_k[SLIMKV_BF16] = slimkv_pack_k_bf16_avx512;
    k->pack_v[SLIMKV_BF16] = slimkv_pack_v_bf16_avx512;
    k->score_k[SLIMKV_BF16] = slimkv_score_k_bf16_avx512;
    k->accum_v[SLIMKV_BF16] = slimkv_accum_v_bf16_avx512;
    slimkv_x86_quant_init_avx512(k);
    slimkv_x86_spark_init_avx512(k);
    k->score_rows_f32 = slimkv_score_rows_f32_avx512;
    k->score_rows_f16 = slimkv_score_rows_f16_avx512;
    k->accum_rows_f32 = slimkv_accum_rows_f32_avx512;
    k->accum_rows_f16 = slimkv_accum_rows_f16_avx512;
    k->exp_sum = slimkv_exp_sum_avx512;
    for (int kf = SLIMKV_F32; kf <= SLIMKV_BF16; kf++)
        for (int vf = SLIMKV_F32; vf <= SLIMKV_BF16; vf++)
            k->attend_groups[kf][vf] = slimkv_attend_groups_dense_avx512;
    for (int kf = 0; kf < SLIMKV_FORMAT_COUNT; kf++)
        for (int vf = 0; vf < SLIMKV_FORMAT_COUNT; vf++) {
            if (slimkv_is_quantized(kf) != slimkv_is_quantized(vf))
                k->attend_groups[kf][vf] = slimkv_attend_groups_mixed_avx512;
            if (kf != SLIMKV_Q3) /* not a SparK record format */
                k->attend_spark_groups[kf][vf] = slimkv_attend_spark_groups_avx512;
        }
    k->rotate = slimkv_rotate_avx512;
    k->f32_to_f16 = f32_to_f16_avx512;
    k->f16_to_f32 = f16_to_f32_avx512;
}
