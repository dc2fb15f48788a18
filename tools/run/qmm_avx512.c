/* AVX-512 VNNI bodies: u8 x s8 products summed four at a time straight into
 * int32 (vpdpbusd), one instruction where AVX2 needs two.
 * Prefill (tiles of TILE tokens): two blocks per 512-bit vector, so each
 * pair of blocks costs one load, one vpdpbusd, one conversion and one FMA
 * per token; the pair's two weight scales and two activation scales meet
 * in one multiply. Decode (one token) and an odd last block take the
 * 256-bit shape of qmm_x86.h. */
#include "qmm_x86.h"

static inline __m256 dot_u8s8_avx512(__m256i w, __m256i x)
{
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x));
}

/* Tokens per prefill tile: eight accumulators of 16 floats share each
 * pair of unpacked weight blocks. */
#define ZMM_TILE 8

/* Rows r of w against tokens t0 .. t0 + nt - 1 (nt <= ZMM_TILE, a constant
 * where this is inlined). */
static inline __attribute__((always_inline)) void tile_zmm(qmm_type type, const uint8_t *w, int n_rows,
                                                            const qmm_acts *x, int t0, int nt, float *y,
                                                            size_t y_stride)
{
    size_t bb = qmm_block_bytes(type), nb = (size_t)x->n_blocks, pairs = nb / 2;
    const int8_t *xq = x->q + (size_t)t0 * nb * QMM_BLOCK;
    const float *xd = x->d + (size_t)t0 * nb, *xs = x->sum + (size_t)t0 * nb;
    /* lanes 0-7 take the pair's first scale, lanes 8-15 its second */
    const __m512i pair_lanes = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int r = 0; r < n_rows; r++) {
        const uint8_t *row = w + (size_t)r * nb * bb;
        __m512 acc[ZMM_TILE];
        float offset[ZMM_TILE];
        #pragma GCC unroll 8
        for (int j = 0; j < nt; j++) {
            acc[j] = _mm512_setzero_ps();
            offset[j] = 0.0f;
        }
        for (size_t p = 0; p < pairs; p++) {
            const uint8_t *b0 = row + 2 * p * bb, *b1 = b0 + bb;
            float dw0 = qmm_f16_x86(b0), dw1 = qmm_f16_x86(b1);
            float off0 = qmm_block_offset(type, b0, dw0), off1 = qmm_block_offset(type, b1, dw1);
            __m256i c0 = qmm_block_codes(type, b0), c1 = qmm_block_codes(type, b1);
            __m512i codes = _mm512_inserti64x4(_mm512_castsi256_si512(c0), c1, 1);
            __m512i wu = codes;
            __mmask64 negative = 0;
            if (type == QMM_Q8_0) {
                wu = _mm512_abs_epi8(codes);
                negative = _mm512_movepi8_mask(codes);
            }
            __m512 wscale = _mm512_permutexvar_ps(pair_lanes, _mm512_castps128_ps512(_mm_setr_ps(dw0, dw1, 0, 0)));
            #pragma GCC unroll 8
            for (int j = 0; j < nt; j++) {
                size_t xb = (size_t)j * nb + 2 * p;
                __m512i xv = _mm512_loadu_si512((const void *)(xq + xb * QMM_BLOCK));
                if (type == QMM_Q8_0) /* x * sign(w); w = 0 meets |w| = 0 anyway */
                    xv = _mm512_mask_sub_epi8(xv, negative, _mm512_setzero_si512(), xv);
                __m512 dots = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wu, xv));
                __m128d pair = _mm_load_sd((const double *)(const void *)(xd + xb));
                __m512 xscale = _mm512_permutexvar_ps(pair_lanes, _mm512_castps128_ps512(_mm_castpd_ps(pair)));
                acc[j] = _mm512_fmadd_ps(dots, _mm512_mul_ps(wscale, xscale), acc[j]);
                offset[j] += off0 * xs[xb] + off1 * xs[xb + 1];
            }
        }
        if (nb % 2) { /* the odd last block, 256 bits wide */
            const uint8_t *blk = row + (nb - 1) * bb;
            float dw = qmm_f16_x86(blk), off = qmm_block_offset(type, blk, dw);
            __m256i wv = qmm_block_codes(type, blk);
            __m256i wu = type == QMM_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
            #pragma GCC unroll 8
            for (int j = 0; j < nt; j++) {
                size_t xb = (size_t)j * nb + nb - 1;
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + xb * QMM_BLOCK));
                if (type == QMM_Q8_0)
                    xv = _mm256_sign_epi8(xv, wv);
                __m256 scaled = _mm256_mul_ps(dot_u8s8_avx512(wu, xv), _mm256_set1_ps(dw * xd[xb]));
                acc[j] = _mm512_add_ps(acc[j], _mm512_zextps256_ps512(scaled));
                offset[j] += off * xs[xb];
            }
        }
        #pragma GCC unroll 8
        for (int j = 0; j < nt; j++)
            y[(size_t)(t0 + j) * y_stride + r] = _mm512_reduce_add_ps(acc[j]) + offset[j];
    }
}

static inline __attribute__((always_inline)) void rows_avx512(qmm_type type, const uint8_t *w, int n_rows,
                                                               const qmm_acts *x, float *y, size_t y_stride)
{
    int t = 0;
    for (; t + ZMM_TILE <= x->n_tok; t += ZMM_TILE)
        tile_zmm(type, w, n_rows, x, t, ZMM_TILE, y, y_stride);
    for (; t + 4 <= x->n_tok; t += 4)
        tile_zmm(type, w, n_rows, x, t, 4, y, y_stride);
    for (; t < x->n_tok; t++)
        qmm_tile_x86(type, w, n_rows, x, t, 1, y, y_stride, dot_u8s8_avx512);
}

static void qmm_q4_0_rows__avx512(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    rows_avx512(QMM_Q4_0, w, n_rows, x, y, y_stride);
}

static void qmm_q4_1_rows__avx512(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    rows_avx512(QMM_Q4_1, w, n_rows, x, y, y_stride);
}

static void qmm_q8_0_rows__avx512(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    rows_avx512(QMM_Q8_0, w, n_rows, x, y, y_stride);
}

void qmm_init_avx512(qmm_kernels *k)
{
    k->rows[QMM_Q4_0] = qmm_q4_0_rows__avx512;
    k->rows[QMM_Q4_1] = qmm_q4_1_rows__avx512;
    k->rows[QMM_Q8_0] = qmm_q8_0_rows__avx512;
}
