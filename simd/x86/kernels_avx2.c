/* AVX2 bodies of the dense formats (f32, f16, bf16), the residual rows,
 * exp_sum and the fp16 conversions; the quantized formats are in
 * quant_avx2.c. Partial vectors use masked 32-bit loads and stores, or a
 * small copy for 16-bit elements; nothing reads past the data.
 *
 * Dense scores fold the 8-lane partial sums of 8 tokens pairwise into one
 * register of 8 scores instead of one horizontal sum per token (see
 * kernels_avx512.c). */
#include <immintrin.h>
#include <sleef.h>

#include "hadamard.h"
#include "x86_common.h"
#include "tile_loop.h"

/* lanes8(n) = &lane_mask_table[8 - n]: n all-ones lanes, then zeros. */
static const int32_t lane_mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

X86_INLINE __m256i lanes8(int n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(lane_mask_table + 8 - n));
}

/* ---- element conversions ---- */

X86_INLINE __m256 halves_to_float(slimkv_format fmt, __m128i h)
{
    if (fmt == SLIMKV_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* Elements i .. i+count-1 (count <= 8, the other lanes 0) as float. */
X86_INLINE __m256 load_elems(slimkv_format fmt, const void *base, size_t i, int count)
{
    if (fmt == SLIMKV_F32)
        return count >= 8 ? _mm256_loadu_ps((const float *)base + i)
                          : _mm256_maskload_ps((const float *)base + i, lanes8(count));
    const uint16_t *h = (const uint16_t *)base + i;
    if (count >= 8)
        return halves_to_float(fmt, _mm_loadu_si128((const __m128i *)h));
    uint16_t tmp[8] = {0};
    memcpy(tmp, h, 2 * (size_t)count);
    return halves_to_float(fmt, _mm_loadu_si128((const __m128i *)tmp));
}

/* Round to nearest even, NaN kept and made quiet: slimkv_f32_to_bf16. */
X86_INLINE __m128i f32_to_bf16_8(__m256 x)
{
    const __m256i u = _mm256_castps_si256(x), high = _mm256_srli_epi32(u, 16);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                     _mm256_set1_epi32(0x7f800000));
    __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff), _mm256_and_si256(high, _mm256_set1_epi32(1)));
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
    __m256i quiet = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
    __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* dst[i] = fmt(src[i]) for i < n; the scalar conversions finish the tail. */
X86_INLINE void store_elems(slimkv_format fmt, void *dst, const float *src, size_t n)
{
    if (fmt == SLIMKV_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    uint16_t *h = dst;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(src + i);
        __m128i y = fmt == SLIMKV_F16 ? _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT) : f32_to_bf16_8(x);
        _mm_storeu_si128((__m128i *)(h + i), y);
    }
    for (; i < n; i++)
        h[i] = fmt == SLIMKV_F16 ? slimkv_f32_to_f16(src[i]) : slimkv_f32_to_bf16(src[i]);
}

static void f32_to_f16_avx2(const float *src, uint16_t *dst, size_t n)
{
    store_elems(SLIMKV_F16, dst, src, n);
}

static void f16_to_f32_avx2(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++)
        dst[i] = slimkv_f16_to_f32(src[i]);
}

/* ---- scores: 8 tokens per block, partial sums folded pairwise ---- */

/* Each step adds, for every token, half of its lanes to the other half:
 * one blend (any ALU port) and one shuffle per pair of registers. */

/* [a: 8 lanes], [b: 8 lanes] -> [a: 4 | b: 4] */
X86_INLINE __m256 fold_tokens_1(__m256 a, __m256 b)
{
    return _mm256_add_ps(_mm256_blend_ps(a, b, 0xf0), _mm256_permute2f128_ps(a, b, 0x21));
}

/* [A: 4 | B: 4], [C: 4 | D: 4] -> [A: 2, C: 2 | B: 2, D: 2] */
X86_INLINE __m256 fold_tokens_2(__m256 ab, __m256 cd)
{
    return _mm256_add_ps(_mm256_blend_ps(ab, cd, 0xcc), _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 3, 2)));
}

/* tokens 0-3 and 4-7 (2 lanes each) -> lane t = score of token t */
X86_INLINE __m256 fold_tokens_4(__m256 lo, __m256 hi)
{
    __m256 x = _mm256_add_ps(_mm256_blend_ps(lo, hi, 0xaa),
                             _mm256_permute_ps(_mm256_blend_ps(lo, hi, 0x55), _MM_SHUFFLE(2, 3, 0, 1)));
    /* lanes now hold tokens [0 4 2 6 | 1 5 3 7] */
    return _mm256_permutevar8x32_ps(x, _mm256_setr_epi32(0, 4, 2, 6, 1, 5, 3, 7));
}

/* 8-lane partial dot products of the 2 rows t, t+1 with QN queries (0 for
 * rows past n), each query register loaded once for both rows. */
X86_INLINE void two_row_partials(const slimkv_format fmt, const int QN, const void *rows, size_t stride, int t,
                                 int n, int d, const float *q, __m256 out[2][X86_QUERY_CHUNK])
{
    X86_UNROLL
    for (int r = 0; r < 2; r++)
        X86_UNROLL
        for (int i = 0; i < QN; i++)
            out[r][i] = _mm256_setzero_ps();
    if (t >= n)
        return;
    const size_t row0 = (size_t)t * stride, row1 = (size_t)(t + 1 < n ? t + 1 : t) * stride;
    int c = 0;
    for (; c + 8 <= d; c += 8) {
        const __m256 k0 = load_elems(fmt, rows, row0 + c, 8), k1 = load_elems(fmt, rows, row1 + c, 8);
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            const __m256 qv = _mm256_loadu_ps(q + (size_t)i * d + c);
            out[0][i] = _mm256_fmadd_ps(qv, k0, out[0][i]);
            out[1][i] = _mm256_fmadd_ps(qv, k1, out[1][i]);
        }
    }
    if (c < d) {
        const __m256 k0 = load_elems(fmt, rows, row0 + c, d - c), k1 = load_elems(fmt, rows, row1 + c, d - c);
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            const __m256 qv = _mm256_maskload_ps(q + (size_t)i * d + c, lanes8(d - c));
            out[0][i] = _mm256_fmadd_ps(qv, k0, out[0][i]);
            out[1][i] = _mm256_fmadd_ps(qv, k1, out[1][i]);
        }
    }
    if (t + 1 >= n)
        X86_UNROLL
        for (int i = 0; i < QN; i++)
            out[1][i] = _mm256_setzero_ps();
}

/* 4 tokens t .. t+3 -> [t: 2, t+2: 2 | t+1: 2, t+3: 2] per query */
X86_INLINE void four_tokens(const slimkv_format fmt, const int QN, const void *rows, size_t stride, int t, int n,
                            int d, const float *q, __m256 out[])
{
    __m256 p[2][X86_QUERY_CHUNK], ab[X86_QUERY_CHUNK];
    two_row_partials(fmt, QN, rows, stride, t, n, d, q, p);
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        ab[i] = fold_tokens_1(p[0][i], p[1][i]);
    two_row_partials(fmt, QN, rows, stride, t + 2, n, d, q, p);
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        out[i] = fold_tokens_2(ab[i], fold_tokens_1(p[0][i], p[1][i]));
}

X86_INLINE void score_dense_block(const slimkv_format fmt, const int QN, const void *rows, size_t stride, int t0,
                                  int n, int d, const float *q, float *s, int lds)
{
    __m256 lo[X86_QUERY_CHUNK], hi[X86_QUERY_CHUNK];
    four_tokens(fmt, QN, rows, stride, t0, n, d, q, lo);
    four_tokens(fmt, QN, rows, stride, t0 + 4, n, d, q, hi);
    const __m256i m = lanes8(n - t0);
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        _mm256_maskstore_ps(s + (size_t)i * lds + t0, m, fold_tokens_4(lo[i], hi[i]));
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
            for (int t0 = 0; t0 < n; t0 += 8)
                score_dense_block(fmt, X86_QUERY_CHUNK, rows, stride, t0, n, d, qi, si, lds);
            i0 += X86_QUERY_CHUNK;
        } else {
            for (int t0 = 0; t0 < n; t0 += 8)
                score_dense_block(fmt, 1, rows, stride, t0, n, d, qi, si, lds);
            i0++;
        }
    }
}

/* ---- accumulation: channels in registers, weights broadcast ---- */

/* acc[i][c ..] += sum_t w[i][t] * row_t[c ..] for NV registers of channels
 * starting at c (the last one ending at d). */
X86_INLINE void accum_dense_block(const slimkv_format fmt, const int QN, const int NV, const void *rows,
                                  size_t stride, int n, int c, int d, const float *w, int ldw, float *acc)
{
    const int last = d - c - 8 * (NV - 1);
    const __m256i last_mask = lanes8(last);
    __m256 a[X86_QUERY_CHUNK][2];
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        X86_UNROLL
        for (int v = 0; v < NV; v++)
            a[i][v] = _mm256_maskload_ps(acc + (size_t)i * d + c + 8 * v, v < NV - 1 ? lanes8(8) : last_mask);
    for (int t = 0; t < n; t++) {
        __m256 x[2];
        X86_UNROLL
        for (int v = 0; v < NV; v++)
            x[v] = load_elems(fmt, rows, (size_t)t * stride + c + 8 * v, v < NV - 1 ? 8 : last);
        X86_UNROLL
        for (int i = 0; i < QN; i++) {
            const __m256 wt = _mm256_broadcast_ss(w + (size_t)i * ldw + t);
            X86_UNROLL
            for (int v = 0; v < NV; v++)
                a[i][v] = _mm256_fmadd_ps(wt, x[v], a[i][v]);
        }
    }
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        X86_UNROLL
        for (int v = 0; v < NV; v++)
            _mm256_maskstore_ps(acc + (size_t)i * d + c + 8 * v, v < NV - 1 ? lanes8(8) : last_mask, a[i][v]);
}

X86_INLINE void accum_dense_queries(const slimkv_format fmt, const int QN, const void *rows, size_t stride, int n,
                                    int d, const float *w, int ldw, float *acc)
{
    for (int c = 0; c < d; c += 16) {
        if (d - c > 8)
            accum_dense_block(fmt, QN, 2, rows, stride, n, c, d, w, ldw, acc);
        else
            accum_dense_block(fmt, QN, 1, rows, stride, n, c, d, w, ldw, acc);
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

static void slimkv_score_rows_f32_avx2(const void *rows, size_t stride, int n, int d, const float *q, int nq,
                                       float *s, int lds)
{
    score_dense(SLIMKV_F32, rows, stride, n, d, q, nq, s, lds);
}

static void slimkv_score_rows_f16_avx2(const void *rows, size_t stride, int n, int d, const float *q, int nq,
                                       float *s, int lds)
{
    score_dense(SLIMKV_F16, rows, stride, n, d, q, nq, s, lds);
}

static void slimkv_accum_rows_f32_avx2(const void *rows, size_t stride, int n, int d, const float *w, int ldw,
                                       int nq, float *acc)
{
    accum_dense(SLIMKV_F32, rows, stride, n, d, w, ldw, nq, acc);
}

static void slimkv_accum_rows_f16_avx2(const void *rows, size_t stride, int n, int d, const float *w, int ldw,
                                       int nq, float *acc)
{
    accum_dense(SLIMKV_F16, rows, stride, n, d, w, ldw, nq, acc);
}

/* The dense group kernels on this file's row kernels (store_elems,
 * score_dense, accum_dense above), then the entry points of each format. */
#include "dense_groups.h"

static void slimkv_pack_k_f32_avx2(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_F32, src, dk, g, group);
}

static void slimkv_pack_v_f32_avx2(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_F32, src, dv, g, block, slot);
}

static void slimkv_score_k_f32_avx2(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                    int lds)
{
    score_k_dense(SLIMKV_F32, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_f32_avx2(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                    float *acc)
{
    accum_v_dense(SLIMKV_F32, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_f16_avx2(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_F16, src, dk, g, group);
}

static void slimkv_pack_v_f16_avx2(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_F16, src, dv, g, block, slot);
}

static void slimkv_score_k_f16_avx2(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                    int lds)
{
    score_k_dense(SLIMKV_F16, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_f16_avx2(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                    float *acc)
{
    accum_v_dense(SLIMKV_F16, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_bf16_avx2(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_BF16, src, dk, g, group);
}

static void slimkv_pack_v_bf16_avx2(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_BF16, src, dv, g, block, slot);
}

static void slimkv_score_k_bf16_avx2(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                     int lds)
{
    score_k_dense(SLIMKV_BF16, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_bf16_avx2(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                     float *acc)
{
    accum_v_dense(SLIMKV_BF16, block, dv, g, n, w, ldw, nq, acc);
}


/* ---- softmax ---- */

float slimkv_exp_sum_avx2(float *x, int n, float max)
{
    const __m256 mx = _mm256_set1_ps(max);
    __m256 sum = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        const __m256i m = lanes8(n - i);
        __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), mx));
        _mm256_maskstore_ps(x + i, m, e);
        sum = _mm256_add_ps(sum, _mm256_and_ps(e, _mm256_castsi256_ps(m)));
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

float slimkv_max_f32_avx2(const float *x, int n)
{
    __m256 m = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    float r = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
    for (; i < n; i++)
        r = x[i] > r ? x[i] : r;
    return r;
}

void slimkv_scale_f32_avx2(float *x, int n, float a)
{
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), va));
    for (; i < n; i++)
        x[i] *= a;
}

/* ---- Walsh-Hadamard rotation ---- */

/* Butterflies of strides 1, 2 and 4 inside one register: lane j (bit h
 * clear) becomes x_j + x_{j+h}, lane j + h becomes x_j - x_{j+h}. */
X86_INLINE __m256 hadamard8(__m256 x)
{
    __m256 p = _mm256_permute_ps(x, _MM_SHUFFLE(2, 3, 0, 1));
    x = _mm256_blend_ps(_mm256_add_ps(x, p), _mm256_sub_ps(p, x), 0xaa);
    p = _mm256_permute_ps(x, _MM_SHUFFLE(1, 0, 3, 2));
    x = _mm256_blend_ps(_mm256_add_ps(x, p), _mm256_sub_ps(p, x), 0xcc);
    p = _mm256_permute2f128_ps(x, x, 1);
    return _mm256_blend_ps(_mm256_add_ps(x, p), _mm256_sub_ps(p, x), 0xf0);
}

static void slimkv_rotate_avx2(float *x, int dim, const float *signs, int inverse)
{
    if (dim < 8) {
        slimkv_rotate_generic(x, dim, signs, inverse);
        return;
    }
    for (int c = 0; c < dim; c += 8) {
        __m256 v = _mm256_loadu_ps(x + c);
        _mm256_storeu_ps(x + c, hadamard8(inverse ? v : _mm256_mul_ps(v, _mm256_loadu_ps(signs + c))));
    }
    for (int h = 8; h < dim; h *= 2)
        for (int i = 0; i < dim; i += 2 * h)
            for (int j = i; j < i + h; j += 8) {
                const __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);
                _mm256_storeu_ps(x + j, _mm256_add_ps(a, b));
                _mm256_storeu_ps(x + j + h, _mm256_sub_ps(a, b));
            }
    const __m256 norm = _mm256_set1_ps(1.0f / sqrtf((float)dim));
    for (int c = 0; c < dim; c += 8) {
        const __m256 scale = inverse ? _mm256_mul_ps(_mm256_loadu_ps(signs + c), norm) : norm;
        _mm256_storeu_ps(x + c, _mm256_mul_ps(_mm256_loadu_ps(x + c), scale));
    }
}

/* ---- fused decode over whole groups, dense K and V formats ---- */

/* Index: format - SLIMKV_F32. */
static const slimkv_score_k_fn dense_score_avx2[3] = {
    slimkv_score_k_f32_avx2,
    slimkv_score_k_f16_avx2,
    slimkv_score_k_bf16_avx2};
static const slimkv_accum_v_fn dense_accum_avx2[3] = {
    slimkv_accum_v_f32_avx2,
    slimkv_accum_v_f16_avx2,
    slimkv_accum_v_bf16_avx2};

/* Every pair of f32 / f16 / bf16 (formats 0..2). */
static void slimkv_attend_groups_dense_avx2(const slimkv_group_span *span, const float *q, int rows, float *m,
                                            float *l, float *acc)
{
    const slimkv_tile_ops ops = {dense_score_avx2[span->k_format], dense_accum_avx2[span->v_format],
                                 slimkv_exp_sum_avx2, slimkv_max_f32_avx2, slimkv_scale_f32_avx2, NULL, NULL};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

/* ---- fused decode: mixed dense / quantized pairs and SparK K groups ---- */

static slimkv_score_k_fn score_k_of_avx2(slimkv_format fmt)
{
    return slimkv_is_quantized(fmt) ? slimkv_quant_score_k_avx2[fmt - SLIMKV_Q8] : dense_score_avx2[fmt];
}

static slimkv_accum_v_fn accum_v_of_avx2(slimkv_format fmt)
{
    return slimkv_is_quantized(fmt) ? slimkv_quant_accum_v_avx2[fmt - SLIMKV_Q8] : dense_accum_avx2[fmt];
}

/* Dense K with quantized V, or quantized K with dense V. */
static void slimkv_attend_groups_mixed_avx2(const slimkv_group_span *span, const float *q, int rows, float *m,
                                             float *l, float *acc)
{
    const slimkv_tile_ops ops = {score_k_of_avx2(span->k_format), accum_v_of_avx2(span->v_format),
                                 slimkv_exp_sum_avx2, slimkv_max_f32_avx2, slimkv_scale_f32_avx2, NULL,
                                 score_k_of_avx2(SLIMKV_Q8)};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

/* SparK K groups of any format, V blocks of any format. */
static void slimkv_attend_spark_groups_avx2(const slimkv_group_span *span, const float *q, int rows, float *m,
                                             float *l, float *acc)
{
    const slimkv_tile_ops ops = {NULL, accum_v_of_avx2(span->v_format), slimkv_exp_sum_avx2, slimkv_max_f32_avx2,
                                 slimkv_scale_f32_avx2, slimkv_spark_score_avx2[span->k_format], NULL};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

void slimkv_kernels_init_avx2(slimkv_kernels *k)
{
    slimkv_kernels_init_scalar(k);
    /* no scalar fused body behind SIMD kernels: every entry is set below */
    memset(k->attend_groups, 0, sizeof k->attend_groups);
    memset(k->attend_spark_groups, 0, sizeof k->attend_spark_groups);
    k->name = "avx2";
    k->pack_k[SLIMKV_F32] = slimkv_pack_k_f32_avx2;
    k->pack_v[SLIMKV_F32] = slimkv_pack_v_f32_avx2;
    k->score_k[SLIMKV_F32] = slimkv_score_k_f32_avx2;
    k->accum_v[SLIMKV_F32] = slimkv_accum_v_f32_avx2;
    k->pack_k[SLIMKV_F16] = slimkv_pack_k_f16_avx2;
    k->pack_v[SLIMKV_F16] = slimkv_pack_v_f16_avx2;
    k->score_k[SLIMKV_F16] = slimkv_score_k_f16_avx2;
    k->accum_v[SLIMKV_F16] = slimkv_accum_v_f16_avx2;
    k->pack_k[SLIMKV_BF16] = slimkv_pack_k_bf16_avx2;
    k->pack_v[SLIMKV_BF16] = slimkv_pack_v_bf16_avx2;
    k->score_k[SLIMKV_BF16] = slimkv_score_k_bf16_avx2;
    k->accum_v[SLIMKV_BF16] = slimkv_accum_v_bf16_avx2;
    slimkv_x86_quant_init_avx2(k);
    slimkv_x86_spark_init_avx2(k);
    k->score_rows_f32 = slimkv_score_rows_f32_avx2;
    k->score_rows_f16 = slimkv_score_rows_f16_avx2;
    k->accum_rows_f32 = slimkv_accum_rows_f32_avx2;
    k->accum_rows_f16 = slimkv_accum_rows_f16_avx2;
    k->exp_sum = slimkv_exp_sum_avx2;
    for (int kf = SLIMKV_F32; kf <= SLIMKV_BF16; kf++)
        for (int vf = SLIMKV_F32; vf <= SLIMKV_BF16; vf++)
            k->attend_groups[kf][vf] = slimkv_attend_groups_dense_avx2;
    for (int kf = 0; kf < SLIMKV_FORMAT_COUNT; kf++)
        for (int vf = 0; vf < SLIMKV_FORMAT_COUNT; vf++) {
            if (slimkv_is_quantized(kf) != slimkv_is_quantized(vf))
                k->attend_groups[kf][vf] = slimkv_attend_groups_mixed_avx2;
            if (kf != SLIMKV_Q3) /* not a SparK record format */
                k->attend_spark_groups[kf][vf] = slimkv_attend_spark_groups_avx2;
        }
    k->rotate = slimkv_rotate_avx2;
    k->f32_to_f16 = f32_to_f16_avx2;
    k->f16_to_f32 = f16_to_f32_avx2;
}
