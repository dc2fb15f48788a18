/* AVX2 bodies of the SparK scores (every format); packing stays scalar
 * (see slimkv_x86_spark_init_avx2).
 *
 * Same decomposition as spark_avx512.c: the score of a token for query i is
 * one dot product over all D channels of
 *   x_ic = kept ? q_ic : u_ic   (per query: one blend)
 *   y_c  = kept ? k_c : sign_c * sqrt(a_t)   (per token, for every query)
 * AVX2 has no expand instruction: a block of 8 channels takes the next 8
 * compact values of the token (decoded to a float row with 8 lanes of
 * slack, so the load never needs a mask) and permutes them to the kept
 * lanes with vpermps and an index row of expand_table (8-bit mask ->
 * indices). The mask and sign bits reach bit 31 of their lanes by one
 * variable shift each, which is all vblendvps reads, so no compare is
 * needed to turn bits into lane masks.
 *
 * Tokens are scored 2 at a time (16 registers: 8 accumulators for 4
 * queries), channel block outer; the 8-lane partial sums of 2 tokens x 4
 * queries fold pairwise (as in kernels_avx2.c) into one register of 8
 * scores, query-major. */
#include <immintrin.h>

#include "x86_common.h"

/* Tokens per step. */
#define SPARK_STEP 2

/* Floats of a decoded value row: the largest T, then one register of slack. */
#define SPARK_ROW (1024 + 8)

/* lanes8(n) = &lane_mask_table[8 - n]: n all-ones lanes, then zeros. */
static const int32_t lane_mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

X86_INLINE __m256i lanes8(int n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(lane_mask_table + 8 - n));
}

/* expand_table[m][l] = number of set bits of m below bit l: for a kept
 * lane l, the index of its value among the block's compact values. */
#define POP8(x)                                                                                              \
    (((x) & 1) + ((x) >> 1 & 1) + ((x) >> 2 & 1) + ((x) >> 3 & 1) + ((x) >> 4 & 1) + ((x) >> 5 & 1) +         \
     ((x) >> 6 & 1) + ((x) >> 7 & 1))
#define EXPAND_ROW(m)                                                                                        \
    {POP8((m) & 0),  POP8((m) & 1),  POP8((m) & 3),  POP8((m) & 7),                                          \
     POP8((m) & 15), POP8((m) & 31), POP8((m) & 63), POP8((m) & 127)}
#define EXPAND_ROWS4(m) EXPAND_ROW(m), EXPAND_ROW((m) + 1), EXPAND_ROW((m) + 2), EXPAND_ROW((m) + 3)
#define EXPAND_ROWS16(m) EXPAND_ROWS4(m), EXPAND_ROWS4((m) + 4), EXPAND_ROWS4((m) + 8), EXPAND_ROWS4((m) + 12)
#define EXPAND_ROWS64(m) EXPAND_ROWS16(m), EXPAND_ROWS16((m) + 16), EXPAND_ROWS16((m) + 32), EXPAND_ROWS16((m) + 48)
static const uint8_t expand_table[256][8] = {EXPAND_ROWS64(0), EXPAND_ROWS64(64), EXPAND_ROWS64(128),
                                             EXPAND_ROWS64(192)};
#undef EXPAND_ROWS64
#undef EXPAND_ROWS16
#undef EXPAND_ROWS4
#undef EXPAND_ROW
#undef POP8

/* ---- folding partial sums (the steps of kernels_avx2.c) ---- */

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

/* items 0-3 and 4-7 (2 lanes each) -> lane k = item k */
X86_INLINE __m256 fold_tokens_4(__m256 lo, __m256 hi)
{
    __m256 x = _mm256_add_ps(_mm256_blend_ps(lo, hi, 0xaa),
                             _mm256_permute_ps(_mm256_blend_ps(lo, hi, 0x55), _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm256_permutevar8x32_ps(x, _mm256_setr_epi32(0, 4, 2, 6, 1, 5, 3, 7));
}

/* ---- record geometry and value decoding ---- */

/* One fp16 parameter, broadcast as float. */
X86_INLINE __m256 broadcast_half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _mm256_cvtph_ps(_mm_set1_epi16((short)h));
}

/* The b-bit codes of values j .. j+7 of a record (the packed bytes starting
 * at value j, j a multiple of 8) in the 32-bit lanes. */
X86_INLINE __m256i spread_codes(const int bits, __m128i bytes)
{
    if (bits == 8)
        return _mm256_cvtepu8_epi32(bytes);
    __m256i x;
    if (bits == 4) { /* value l: byte l/2, bits 4*(l%2) */
        x = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(bytes, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0)));
        x = _mm256_srlv_epi32(x, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
    } else { /* value l: byte l/4, bits 2*(l%4) */
        x = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(bytes, _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)));
        x = _mm256_srlv_epi32(x, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    }
    return _mm256_and_si256(x, _mm256_set1_epi32((1 << bits) - 1));
}

/* The bytes of the codes of values j .. j+count-1 (count < 8: a tail, the
 * other bytes 0), j a multiple of 8. */
X86_INLINE __m128i load_codes(const int bits, const uint8_t *codes, int j, int count)
{
    const uint8_t *src = codes + (size_t)j * bits / 8;
    if (count >= 8) { /* one load of the width of the 8 codes */
        if (bits == 8)
            return _mm_loadl_epi64((const __m128i *)src);
        if (bits == 4) {
            uint32_t w;
            memcpy(&w, src, sizeof w);
            return _mm_cvtsi32_si128((int)w);
        }
        uint16_t h;
        memcpy(&h, src, sizeof h);
        return _mm_cvtsi32_si128(h);
    }
    uint8_t tmp[16] = {0};
    memcpy(tmp, src, (size_t)(count * bits + 7) / 8);
    return _mm_loadu_si128((const __m128i *)tmp);
}

/* dst[j] = value j of a record as float for j < T, then 8 zeros (past the
 * values, lanes of dst up to the next multiple of 8 may be overwritten). */
X86_INLINE void decode_values(const slimkv_format fmt, const uint8_t *rec, const slimkv_spark_geometry *geo, float *dst)
{
    const uint8_t *v = rec + geo->values;
    const int t_keep = geo->t_keep;
    if (fmt == SLIMKV_F32) {
        memcpy(dst, v, (size_t)t_keep * sizeof(float));
    } else if (!slimkv_is_quantized(fmt)) {
        for (int j = 0; j < t_keep; j += 8) {
            __m128i h;
            if (t_keep - j >= 8) {
                h = _mm_loadu_si128((const __m128i *)(v + (size_t)j * 2));
            } else {
                uint16_t tmp[8] = {0};
                memcpy(tmp, v + (size_t)j * 2, 2 * (size_t)(t_keep - j));
                h = _mm_loadu_si128((const __m128i *)tmp);
            }
            const __m256 x = fmt == SLIMKV_F16 ? _mm256_cvtph_ps(h)
                                               : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
            _mm256_storeu_ps(dst + j, x);
        }
    } else {
        const int bits = slimkv_format_bits(fmt);
        const uint8_t *scale = rec + 2 * geo->bits + 4, *minimum = scale + (size_t)geo->nvg * 2;
        for (int vg = 0; vg < geo->nvg; vg++) {
            const __m256 s = broadcast_half(scale + 2 * (size_t)vg), m = broadcast_half(minimum + 2 * (size_t)vg);
            const int end = x86_min(t_keep, (vg + 1) * geo->g);
            for (int j = vg * geo->g; j < end; j += 8) {
                const __m256 codes = _mm256_cvtepi32_ps(spread_codes(bits, load_codes(bits, v, j, end - j)));
                _mm256_storeu_ps(dst + j, _mm256_fmadd_ps(codes, s, m));
            }
        }
    }
    _mm256_storeu_ps(dst + t_keep, _mm256_setzero_ps());
}

/* ---- scores ---- */

/* 8-lane partial scores of the channel block at c (lanes `active` of 8)
 * for the SPARK_STEP tokens rec[r] (values at val[r] + j[r], sqrt(a_t) in
 * root[r]) and QN queries. */
X86_INLINE void step_block(const int QN, const int full, const uint8_t *const rec[SPARK_STEP],
                           const float *const val[SPARK_STEP], const float root[SPARK_STEP], int j[SPARK_STEP],
                           size_t bits, int c, int dim, const float *q, const float *u,
                           __m256 p[SPARK_STEP][X86_QUERY_CHUNK])
{
    const __m256i kept_shift = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24);
    const __m256i sign_shift = _mm256_setr_epi32(23, 22, 21, 20, 19, 18, 17, 16);
    const int valid = full ? 0xff : 0x0f; /* dim is a multiple of 4 */
    __m256 kept[SPARK_STEP], y[SPARK_STEP];
    X86_UNROLL
    for (int r = 0; r < SPARK_STEP; r++) {
        const int kept_bits = rec[r][c / 8] & valid, sign_bits = rec[r][bits + c / 8];
        const __m256i word = _mm256_set1_epi32(kept_bits | sign_bits << 8);
        kept[r] = _mm256_castsi256_ps(_mm256_sllv_epi32(word, kept_shift));
        const __m256 sign = _mm256_castsi256_ps(_mm256_sllv_epi32(word, sign_shift));
        const __m256i index = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)expand_table[kept_bits]));
        const __m256 values = _mm256_permutevar8x32_ps(_mm256_loadu_ps(val[r] + j[r]), index);
        const __m256 root_r = _mm256_set1_ps(root[r]), restored = _mm256_blendv_ps(root_r, -root_r, sign);
        y[r] = _mm256_blendv_ps(restored, values, kept[r]);
        j[r] += __builtin_popcount((unsigned)kept_bits);
    }
    X86_UNROLL
    for (int i = 0; i < QN; i++) {
        const float *qi = q + (size_t)i * dim + c, *ui = u + (size_t)i * dim + c;
        const __m256 qv = full ? _mm256_loadu_ps(qi) : _mm256_maskload_ps(qi, lanes8(4));
        const __m256 uv = full ? _mm256_loadu_ps(ui) : _mm256_maskload_ps(ui, lanes8(4));
        X86_UNROLL
        for (int r = 0; r < SPARK_STEP; r++)
            p[r][i] = _mm256_fmadd_ps(_mm256_blendv_ps(uv, qv, kept[r]), y[r], p[r][i]);
    }
}

/* Scores of the tokens of one step (count of them valid) for QN queries. */
X86_INLINE void score_step(const int QN, const uint8_t *const rec[SPARK_STEP], const float *const val[SPARK_STEP],
                           const float root[SPARK_STEP], size_t bits, int dim, const float *q, const float *u,
                           float *s, int lds, int count)
{
    __m256 p[SPARK_STEP][X86_QUERY_CHUNK], f[4];
    X86_UNROLL
    for (int r = 0; r < SPARK_STEP; r++)
        X86_UNROLL
        for (int i = 0; i < QN; i++)
            p[r][i] = _mm256_setzero_ps();
    int j[SPARK_STEP] = {0};
    int c = 0;
    for (; c + 8 <= dim; c += 8)
        step_block(QN, 1, rec, val, root, j, bits, c, dim, q, u, p);
    if (c < dim)
        step_block(QN, 0, rec, val, root, j, bits, c, dim, q, u, p);
    /* items query-major: lane 2i + r = query i, token r */
    X86_UNROLL
    for (int i = 0; i < 4; i++)
        f[i] = i < QN ? fold_tokens_1(p[0][i], p[1][i]) : _mm256_setzero_ps();
    const __m256 scores = fold_tokens_4(fold_tokens_2(f[0], f[1]), fold_tokens_2(f[2], f[3]));
    X86_UNROLL
    for (int i = 0; i < QN; i++) {
        __m128 x = i < 2 ? _mm256_castps256_ps128(scores) : _mm256_extractf128_ps(scores, 1);
        if (i % 2)
            x = _mm_movehl_ps(x, x);
        if (count == 2)
            _mm_storel_pi((__m64 *)(s + (size_t)i * lds), x);
        else
            _mm_store_ss(s + (size_t)i * lds, x);
    }
}

X86_INLINE void score_spark(const slimkv_format fmt, const uint8_t *group, int dim, int t_keep, int g, int n,
                            const float *q, const float *u, int nq, float *s, int lds)
{
    const slimkv_spark_geometry geo = slimkv_spark_geometry_of(fmt, dim, t_keep, g);
    float rows[SPARK_STEP][SPARK_ROW];
    x86_prefetch_range(group, geo.record * (size_t)n);
    for (int t = 0; t < n; t += SPARK_STEP) {
        const int count = x86_min(SPARK_STEP, n - t);
        const uint8_t *rec[SPARK_STEP];
        const float *val[SPARK_STEP];
        float root[SPARK_STEP];
        X86_UNROLL
        for (int r = 0; r < SPARK_STEP; r++) { /* tokens past n repeat the last one; their scores are not stored */
            rec[r] = group + (size_t)(t + x86_min(r, count - 1)) * geo.record;
            float a_t;
            memcpy(&a_t, rec[r] + 2 * geo.bits, sizeof a_t);
            root[r] = _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(a_t)));
            if (r < count)
                decode_values(fmt, rec[r], &geo, rows[r]);
            val[r] = rows[x86_min(r, count - 1)];
        }
        for (int i0 = 0; i0 < nq;) {
            const float *qi = q + (size_t)i0 * dim, *ui = u + (size_t)i0 * dim;
            float *si = s + (size_t)i0 * lds + t;
            switch (x86_min(nq - i0, X86_QUERY_CHUNK)) {
            case 1: score_step(1, rec, val, root, geo.bits, dim, qi, ui, si, lds, count); break;
            case 2: score_step(2, rec, val, root, geo.bits, dim, qi, ui, si, lds, count); break;
            case 3: score_step(3, rec, val, root, geo.bits, dim, qi, ui, si, lds, count); break;
            default: score_step(4, rec, val, root, geo.bits, dim, qi, ui, si, lds, count); break;
            }
            i0 += X86_QUERY_CHUNK;
        }
    }
}

static void slimkv_score_spark_f32_avx2(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                        const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_F32, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_f16_avx2(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                        const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_F16, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_bf16_avx2(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                         const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_BF16, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q8_avx2(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                       const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_Q8, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q4_avx2(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                       const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_Q4, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q2_avx2(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                       const float *u, int nq, float *s, int lds)
{
    score_spark(SLIMKV_Q2, group, dim, t_keep, g, n, q, u, nq, s, lds);
}


/* Indexed by the K format (kernels_avx2.c builds the fused SparK bodies on them). */
const slimkv_score_spark_fn slimkv_spark_score_avx2[SLIMKV_FORMAT_COUNT] = {
    [SLIMKV_F32] = slimkv_score_spark_f32_avx2, [SLIMKV_F16] = slimkv_score_spark_f16_avx2,
    [SLIMKV_BF16] = slimkv_score_spark_bf16_avx2, [SLIMKV_Q8] = slimkv_score_spark_q8_avx2,
    [SLIMKV_Q4] = slimkv_score_spark_q4_avx2, [SLIMKV_Q2] = slimkv_score_spark_q2_avx2};

void slimkv_x86_spark_init_avx2(slimkv_kernels *k)
{
    /* pack_spark stays scalar: it must be bit-exact with scalar.c (a top-T
     * selection with ties, then the KIVI codes) and runs once per group at
     * compression, off the decode path. */
    k->score_spark[SLIMKV_F32] = slimkv_score_spark_f32_avx2;
    k->score_spark[SLIMKV_F16] = slimkv_score_spark_f16_avx2;
    k->score_spark[SLIMKV_BF16] = slimkv_score_spark_bf16_avx2;
    k->score_spark[SLIMKV_Q8] = slimkv_score_spark_q8_avx2;
    k->score_spark[SLIMKV_Q4] = slimkv_score_spark_q4_avx2;
    k->score_spark[SLIMKV_Q2] = slimkv_score_spark_q2_avx2;
}
