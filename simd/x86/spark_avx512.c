/* AVX-512 bodies of the SparK scores (every format); packing stays scalar
 * (see slimkv_x86_spark_init_avx512).
 *
 * A token record keeps its own T of D channels: a D-bit mask, the sign bits
 * of the pruned channels, a_t and the T kept values in channel order. Its
 * score for query i is
 *   sum_{kept c} q_ic * k_c  +  sqrt(a_t) * sum_{pruned c} sign_c * u_ic,
 * one dot product over all D channels of
 *   x_ic = kept ? q_ic : u_ic   (per query: one masked blend)
 *   y_c  = kept ? k_c : sign_c * sqrt(a_t)   (per token: one masked expand)
 * The 16 mask bits of a channel block are the __mmask16 of both: vexpandps
 * moves the token's next popcount(mask) compact values to the kept lanes
 * of a register already holding +-sqrt(a_t), so y is built once per token
 * and serves every query. Quantized and 16-bit values are first decoded to
 * a float row per token (T/16 vectors, in value order, so a block of 16
 * values never straddles a parameter group: G is a multiple of 16); f32
 * values are expanded straight from the record (vexpandps from memory reads
 * only the popcount(mask) elements it uses).
 *
 * Tokens are scored 4 at a time, channel block outer: each query register
 * is loaded once for the 4 tokens, every token is decoded once for all
 * queries. The 16-lane partial sums of the 4 tokens x 4 queries are folded
 * pairwise (as in kernels_avx512.c) into one register holding the 16
 * scores, query-major, stored as 4 blocks of 4 tokens.
 *
 * The loop is bound by instruction throughput, not by the FMAs (about 20
 * instructions per token and block, 4 of them FMAs): with q and u read
 * through 8 streams the address registers spill. When they are small
 * (the decode shape), q and u are first copied to one packed array, one
 * stream: 10-15% faster on Zen 5. */
#include <immintrin.h>

#include "x86_common.h"

/* Tokens per step. */
#define SPARK_STEP 4

/* Floats of the packed copy of q and u (16 KiB): used when 2 * nq * D fits. */
#define SPARK_PACKED 4096

X86_INLINE __mmask16 lanes16(int n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* ---- folding partial sums (the steps of kernels_avx512.c) ---- */

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

/* two registers of 4 items, one per 128-bit block -> block k: [lo's k-th
 * item: 2 | hi's k-th item: 2] */
X86_INLINE __m512 fold_tokens_4(__m512 lo, __m512 hi)
{
    return _mm512_add_ps(_mm512_mask_blend_ps(0xcccc, lo, hi), _mm512_shuffle_ps(lo, hi, _MM_SHUFFLE(1, 0, 3, 2)));
}

/* two registers of 8 items, 2 lanes each -> lane k = item k */
X86_INLINE __m512 fold_tokens_8(__m512 lo, __m512 hi)
{
    __m512 x = _mm512_add_ps(_mm512_mask_blend_ps(0xaaaa, lo, hi),
                             _mm512_permute_ps(_mm512_mask_blend_ps(0x5555, lo, hi), _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512i order = _mm512_setr_epi32(0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15);
    return _mm512_permutexvar_ps(order, x);
}

/* 128-bit block i (a constant after unrolling) of x. */
X86_INLINE __m128 block128(__m512 x, int i)
{
    switch (i) {
    case 0: return _mm512_castps512_ps128(x);
    case 1: return _mm512_extractf32x4_ps(x, 1);
    case 2: return _mm512_extractf32x4_ps(x, 2);
    default: return _mm512_extractf32x4_ps(x, 3);
    }
}

/* ---- record geometry and value decoding ---- */

/* One fp16 parameter, broadcast as float. */
X86_INLINE __m512 broadcast_half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _mm512_cvtph_ps(_mm256_set1_epi16((short)h));
}

/* The b-bit codes of values j .. j+15 of a record (the packed bytes
 * starting at value j, j a multiple of 16) in the 32-bit lanes. */
X86_INLINE __m512i spread_codes(const int bits, __m128i bytes)
{
    if (bits == 8)
        return _mm512_cvtepu8_epi32(bytes);
    __m512i x;
    if (bits == 4) { /* value l: byte l/2, bits 4*(l%2) */
        x = _mm512_cvtepu8_epi32(
            _mm_shuffle_epi8(bytes, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)));
        x = _mm512_srlv_epi32(x, _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4));
    } else { /* value l: byte l/4, bits 2*(l%4) */
        x = _mm512_cvtepu8_epi32(
            _mm_shuffle_epi8(bytes, _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)));
        x = _mm512_srlv_epi32(x, _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6));
    }
    return _mm512_and_si512(x, _mm512_set1_epi32((1 << bits) - 1));
}

/* dst[j] = value j of a record as float, j < T. */
X86_INLINE void decode_values(const slimkv_format fmt, const uint8_t *rec, const slimkv_spark_geometry *geo, float *dst)
{
    const uint8_t *v = rec + geo->values;
    const int t_keep = geo->t_keep;
    if (!slimkv_is_quantized(fmt)) {
        for (int j = 0; j < t_keep; j += 16) {
            const __mmask16 m = lanes16(t_keep - j);
            const __m256i h = _mm256_maskz_loadu_epi16(m, v + (size_t)j * 2);
            const __m512 x = fmt == SLIMKV_F16 ? _mm512_cvtph_ps(h)
                                               : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
            _mm512_mask_storeu_ps(dst + j, m, x);
        }
        return;
    }
    const int bits = slimkv_format_bits(fmt);
    const uint8_t *scale = rec + 2 * geo->bits + 4, *minimum = scale + (size_t)geo->nvg * 2;
    for (int vg = 0; vg < geo->nvg; vg++) {
        const __m512 s = broadcast_half(scale + 2 * (size_t)vg), m = broadcast_half(minimum + 2 * (size_t)vg);
        const int end = x86_min(t_keep, (vg + 1) * geo->g);
        for (int j = vg * geo->g; j < end; j += 16) {
            const int count = x86_min(16, end - j);
            const __m128i bytes = _mm_maskz_loadu_epi8(lanes16((count * bits + 7) / 8), v + (size_t)j * bits / 8);
            const __m512 x = _mm512_fmadd_ps(_mm512_cvtepi32_ps(spread_codes(bits, bytes)), s, m);
            _mm512_mask_storeu_ps(dst + j, lanes16(count), x);
        }
    }
}

/* ---- scores ---- */

/* Where a step reads the query rows: q and u as given ([nq][D], rows
 * `stride` apart), or packed (PACKED): block b of query i at
 * q + b * stride + 32 * i, its u 16 floats further, tail lanes zeroed. */
typedef struct spark_queries {
    const float *q, *u;
    size_t stride;
} spark_queries;

/* Adds the channel block at c (lanes `valid`: all 16 but in the last
 * block) of the SPARK_STEP tokens to their partial scores p[r][i] for QN
 * queries. Token r: record rec[r], its values (floats) at *val[r], advanced
 * past the ones used; sqrt(a_t) in root[r]. */
X86_INLINE void step_block(const int QN, const int PACKED, const int full, const uint8_t *const rec[SPARK_STEP],
                           const uint8_t *val[SPARK_STEP], const float root[SPARK_STEP], size_t bits, int c, int dim,
                           spark_queries qs, __m512 p[SPARK_STEP][X86_QUERY_CHUNK])
{
    const __mmask16 valid = full ? (__mmask16)0xffff : lanes16(dim - c);
    __m512 qv[X86_QUERY_CHUNK], uv[X86_QUERY_CHUNK];
    X86_UNROLL
    for (int i = 0; i < QN; i++) {
        if (PACKED) {
            const float *qu = qs.q + (size_t)c / 16 * qs.stride + 32 * i;
            qv[i] = _mm512_loadu_ps(qu);
            uv[i] = _mm512_loadu_ps(qu + 16);
        } else {
            qv[i] = _mm512_maskz_loadu_ps(valid, qs.q + (size_t)i * qs.stride + c);
            uv[i] = _mm512_maskz_loadu_ps(valid, qs.u + (size_t)i * qs.stride + c);
        }
    }
    X86_UNROLL
    for (int r = 0; r < SPARK_STEP; r++) {
        /* 2 bytes of mask (signs) from byte c/8: in the last block the
         * second may be the first of the signs (of a_t), outside `valid` */
        uint16_t kept_bits, sign_bits;
        memcpy(&kept_bits, rec[r] + c / 8, 2);
        memcpy(&sign_bits, rec[r] + bits + c / 8, 2);
        const unsigned kept = full ? kept_bits : kept_bits & valid;
        const __m512 restored =
            _mm512_mask_blend_ps((__mmask16)sign_bits, _mm512_set1_ps(root[r]), _mm512_set1_ps(-root[r]));
        const __m512 y = _mm512_mask_expandloadu_ps(restored, (__mmask16)kept, val[r]);
        val[r] += 4 * (size_t)__builtin_popcount(kept);
        X86_UNROLL
        for (int i = 0; i < QN; i++)
            p[r][i] = _mm512_fmadd_ps(_mm512_mask_blend_ps((__mmask16)kept, uv[i], qv[i]), y, p[r][i]);
    }
}

/* Scores of the tokens of one step (count of them valid) for QN queries. */
X86_INLINE void score_step(const int QN, const int PACKED, const uint8_t *const rec[SPARK_STEP],
                           const uint8_t *const val0[SPARK_STEP], const float root[SPARK_STEP], size_t bits, int dim,
                           spark_queries qs, float *s, int lds, int count)
{
    __m512 p[SPARK_STEP][X86_QUERY_CHUNK], f[4];
    const uint8_t *val[SPARK_STEP];
    X86_UNROLL
    for (int r = 0; r < SPARK_STEP; r++) {
        val[r] = val0[r];
        X86_UNROLL
        for (int i = 0; i < QN; i++)
            p[r][i] = _mm512_setzero_ps();
    }
    int c = 0;
    for (; c + 16 <= dim; c += 16)
        step_block(QN, PACKED, 1, rec, val, root, bits, c, dim, qs, p);
    if (c < dim)
        step_block(QN, PACKED, 0, rec, val, root, bits, c, dim, qs, p);
    /* items query-major: lane 4i + r = query i, token r */
    X86_UNROLL
    for (int i = 0; i < 4; i++)
        f[i] = i < QN ? fold_tokens_2(fold_tokens_1(p[0][i], p[1][i]), fold_tokens_1(p[2][i], p[3][i]))
                      : _mm512_setzero_ps();
    const __m512 scores = fold_tokens_8(fold_tokens_4(f[0], f[1]), fold_tokens_4(f[2], f[3]));
    const __mmask8 m = (__mmask8)lanes16(count);
    X86_UNROLL
    for (int i = 0; i < QN; i++)
        _mm_mask_storeu_ps(s + (size_t)i * lds, m, block128(scores, i));
}

X86_INLINE void score_tokens(const slimkv_format fmt, const int PACKED, const uint8_t *group,
                             const slimkv_spark_geometry *geo, int dim, int n, spark_queries qs, int nq, float *s, int lds)
{
    float rows[SPARK_STEP][SLIMKV_MAX_HEAD_DIM];
    for (int t = 0; t < n; t += SPARK_STEP) {
        const int count = x86_min(SPARK_STEP, n - t);
        const uint8_t *rec[SPARK_STEP], *val[SPARK_STEP];
        float root[SPARK_STEP];
        X86_UNROLL
        for (int r = 0; r < SPARK_STEP; r++) { /* tokens past n repeat the last one; their scores are not stored */
            rec[r] = group + (size_t)(t + x86_min(r, count - 1)) * geo->record;
            float a_t;
            memcpy(&a_t, rec[r] + 2 * geo->bits, sizeof a_t);
            root[r] = _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(a_t)));
            if (fmt == SLIMKV_F32) {
                val[r] = rec[r] + geo->values;
            } else {
                if (r < count)
                    decode_values(fmt, rec[r], geo, rows[r]);
                val[r] = (const uint8_t *)rows[x86_min(r, count - 1)];
            }
        }
        for (int i0 = 0; i0 < nq; i0 += X86_QUERY_CHUNK) {
            spark_queries qi = qs;
            if (PACKED) {
                qi.q += 32 * (size_t)i0;
            } else {
                qi.q += (size_t)i0 * qs.stride;
                qi.u += (size_t)i0 * qs.stride;
            }
            float *si = s + (size_t)i0 * lds + t;
            switch (x86_min(nq - i0, X86_QUERY_CHUNK)) {
            case 1: score_step(1, PACKED, rec, val, root, geo->bits, dim, qi, si, lds, count); break;
            case 2: score_step(2, PACKED, rec, val, root, geo->bits, dim, qi, si, lds, count); break;
            case 3: score_step(3, PACKED, rec, val, root, geo->bits, dim, qi, si, lds, count); break;
            default: score_step(4, PACKED, rec, val, root, geo->bits, dim, qi, si, lds, count); break;
            }
        }
    }
}

X86_INLINE void score_spark(const slimkv_format fmt, const uint8_t *group, int dim, int t_keep, int g, int n,
                            const float *q, const float *u, int nq, float *s, int lds)
{
    const slimkv_spark_geometry geo = slimkv_spark_geometry_of(fmt, dim, t_keep, g);
    x86_prefetch_range(group, geo.record * (size_t)n);
    const int blocks = (dim + 15) / 16;
    if ((size_t)blocks * 32 * nq > SPARK_PACKED) {
        const spark_queries qs = {q, u, (size_t)dim};
        score_tokens(fmt, 0, group, &geo, dim, n, qs, nq, s, lds);
        return;
    }
    float packed[SPARK_PACKED];
    const spark_queries qs = {packed, packed + 16, (size_t)nq * 32};
    for (int b = 0; b < blocks; b++) {
        const __mmask16 m = lanes16(dim - 16 * b);
        for (int i = 0; i < nq; i++) {
            float *dst = packed + (size_t)b * qs.stride + 32 * (size_t)i;
            _mm512_storeu_ps(dst, _mm512_maskz_loadu_ps(m, q + (size_t)i * dim + 16 * b));
            _mm512_storeu_ps(dst + 16, _mm512_maskz_loadu_ps(m, u + (size_t)i * dim + 16 * b));
        }
    }
    score_tokens(fmt, 1, group, &geo, dim, n, qs, nq, s, lds);
}

static void slimkv_score_spark_f32_avx512(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                          const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_F32, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_f16_avx512(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                          const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_F16, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_bf16_avx512(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                           const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_BF16, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q8_avx512(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                         const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_Q8, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q4_avx512(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                         const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_Q4, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q2_avx512(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                         const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_Q2, group, dim, t_keep, g, n, q, u, nq, s, lds);
}


/* Indexed by the K format (kernels_avx512.c builds the fused SparK bodies on them). */
const slimkv_score_spark_fn slimkv_spark_score_avx512[SLIMKV_FORMAT_COUNT] = {
    [SLIMKV_F32] = slimkv_score_spark_f32_avx512, [SLIMKV_F16] = slimkv_score_spark_f16_avx512,
    [SLIMKV_BF16] = slimkv_score_spark_bf16_avx512, [SLIMKV_Q8] = slimkv_score_spark_q8_avx512,
    [SLIMKV_Q4] = slimkv_score_spark_q4_avx512, [SLIMKV_Q2] = slimkv_score_spark_q2_avx512};

void slimkv_x86_spark_init_avx512(slimkv_kernels *k)
{
    /* pack_spark stays scalar: it must be bit-exact with scalar.c (a top-T
     * selection with ties, then the KIVI codes) and runs once per group at
     * compression, off the decode path. */
    k->score_spark[SLIMKV_F32] = slimkv_score_spark_f32_avx512;
    k->score_spark[SLIMKV_F16] = slimkv_score_spark_f16_avx512;
    k->score_spark[SLIMKV_BF16] = slimkv_score_spark_bf16_avx512;
    k->score_spark[SLIMKV_Q8] = slimkv_score_spark_q8_avx512;
    k->score_spark[SLIMKV_Q4] = slimkv_score_spark_q4_avx512;
    k->score_spark[SLIMKV_Q2] = slimkv_score_spark_q2_avx512;
}
