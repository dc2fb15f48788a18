/* The x86 bodies' shared shape (qmm_avx2.c, qmm_avx512.c): per row, a tile
 * of TILE tokens shares each weight block's unpacking; each block's integer
 * products become floats and meet the two scales in one FMA per token.
 * The including file defines qmm_dot_u8s8(w, x) (8 int32 lane sums of
 * 32 u8 x s8 products) and the suffix of its kernel names, QMM_ISA. */
#ifndef SLIMKV_RUN_QMM_X86_H
#define SLIMKV_RUN_QMM_X86_H

#include <immintrin.h>

#include "qmm.h"

#define QMM_TILE 4

static inline float qmm_f16_x86(const uint8_t *p)
{
    uint16_t h;
    __builtin_memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline float qmm_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* 16 bytes of nibbles as 32 codes in element order: low nibbles, then high. */
static inline __m256i qmm_unpack_nibbles(const uint8_t *qs)
{
    __m128i b = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m4), _mm_and_si128(b, m4));
}

/* The 32 codes of one block in element order (Q8_0: signed; the tiles put
 * |w| on the unsigned side and w's sign onto x). */
static inline __attribute__((always_inline)) __m256i qmm_block_codes(qmm_type type, const uint8_t *blk)
{
    if (type == QMM_Q4_0)
        return qmm_unpack_nibbles(blk + 2);
    if (type == QMM_Q4_1)
        return qmm_unpack_nibbles(blk + 4);
    return _mm256_loadu_si256((const __m256i *)(blk + 2));
}

/* Weight per unit of the block's activation sum (Q4_0: -8 d, Q4_1: m, Q8_0: 0). */
static inline __attribute__((always_inline)) float qmm_block_offset(qmm_type type, const uint8_t *blk, float dw)
{
    return type == QMM_Q4_0 ? -8.0f * dw : type == QMM_Q4_1 ? qmm_f16_x86(blk + 2) : 0.0f;
}

/* Rows r of w against tokens t0 .. t0 + nt - 1 (nt <= TILE, a constant
 * where this is inlined). Q8_0 codes are signed: |w| goes to the unsigned
 * side and w's sign onto x. */
static inline __attribute__((always_inline)) void qmm_tile_x86(qmm_type type, const uint8_t *w, int n_rows,
                                                                const qmm_acts *x, int t0, int nt, float *y,
                                                                size_t y_stride, __m256 (*dot)(__m256i, __m256i))
{
    size_t bb = qmm_block_bytes(type), nb = (size_t)x->n_blocks;
    const int8_t *xq = x->q + (size_t)t0 * nb * QMM_BLOCK;
    const float *xd = x->d + (size_t)t0 * nb, *xs = x->sum + (size_t)t0 * nb;
    for (int r = 0; r < n_rows; r++) {
        const uint8_t *row = w + (size_t)r * nb * bb;
        __m256 acc[QMM_TILE];
        float offset[QMM_TILE];
        #pragma GCC unroll 8
        for (int j = 0; j < nt; j++) {
            acc[j] = _mm256_setzero_ps();
            offset[j] = 0.0f;
        }
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + b * bb;
            float dw = qmm_f16_x86(blk), off = qmm_block_offset(type, blk, dw);
            __m256i wv = qmm_block_codes(type, blk);
            __m256i wu = type == QMM_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
            #pragma GCC unroll 8
            for (int j = 0; j < nt; j++) {
                size_t xb = (size_t)j * nb + b;
                __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + xb * QMM_BLOCK));
                if (type == QMM_Q8_0)
                    xv = _mm256_sign_epi8(xv, wv);
                acc[j] = _mm256_fmadd_ps(dot(wu, xv), _mm256_set1_ps(dw * xd[xb]), acc[j]);
                offset[j] += off * xs[xb];
            }
        }
        #pragma GCC unroll 8
        for (int j = 0; j < nt; j++)
            y[(size_t)(t0 + j) * y_stride + r] = qmm_hsum8(acc[j]) + offset[j];
    }
}

/* Whole tiles of TILE tokens, then the rest one by one (decode: one). */
static inline __attribute__((always_inline)) void qmm_rows_x86(qmm_type type, const uint8_t *w, int n_rows,
                                                                const qmm_acts *x, float *y, size_t y_stride,
                                                                __m256 (*dot)(__m256i, __m256i))
{
    int t = 0;
    for (; t + QMM_TILE <= x->n_tok; t += QMM_TILE)
        qmm_tile_x86(type, w, n_rows, x, t, QMM_TILE, y, y_stride, dot);
    for (; t < x->n_tok; t++)
        qmm_tile_x86(type, w, n_rows, x, t, 1, y, y_stride, dot);
}

#endif /* SLIMKV_RUN_QMM_X86_H */
