/* The NEON bodies' shared shape (qmm_neon.c, qmm_dotprod_neon.c), in
 * intrinsics that AArch32 NEON has too: per row, a tile of TILE tokens
 * shares each weight block's unpacking; each block's int32 lane sums
 * become floats and meet the two scales in one multiply-add per token. The
 * including file passes dot(acc, w, x): acc plus the four lane sums of 16
 * s8 x s8 products. */
#ifndef SLIMKV_RUN_QMM_ARM_H
#define SLIMKV_RUN_QMM_ARM_H

#include <arm_neon.h>

#include "qmm.h"

#define QMM_TILE 4

static inline float qmm_hsum4(float32x4_t v)
{
    float32x2_t s = vadd_f32(vget_low_f32(v), vget_high_f32(v));
    return vget_lane_f32(vpadd_f32(s, s), 0);
}

static inline __attribute__((always_inline)) void qmm_tile_arm(qmm_type type, const uint8_t *w, int n_rows,
                                                                const qmm_acts *x, int t0, int nt, float *y,
                                                                size_t y_stride,
                                                                int32x4_t (*dot)(int32x4_t, int8x16_t, int8x16_t))
{
    size_t bb = qmm_block_bytes(type), nb = (size_t)x->n_blocks;
    const int8_t *xq = x->q + (size_t)t0 * nb * QMM_BLOCK;
    const float *xd = x->d + (size_t)t0 * nb, *xs = x->sum + (size_t)t0 * nb;
    for (int r = 0; r < n_rows; r++) {
        const uint8_t *row = w + (size_t)r * nb * bb;
        float32x4_t acc[QMM_TILE];
        float offset[QMM_TILE];
        #pragma GCC unroll 8
        for (int j = 0; j < nt; j++) {
            acc[j] = vdupq_n_f32(0.0f);
            offset[j] = 0.0f;
        }
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + b * bb;
            float dw = qmm_f16(blk), off = 0.0f; /* weight per unit of the block's activation sum */
            int8x16_t lo, hi;
            if (type == QMM_Q8_0) {
                lo = vld1q_s8((const int8_t *)(blk + 2));
                hi = vld1q_s8((const int8_t *)(blk + 18));
            } else {
                uint8x16_t codes = vld1q_u8(blk + (type == QMM_Q4_0 ? 2 : 4));
                lo = vreinterpretq_s8_u8(vandq_u8(codes, vdupq_n_u8(0x0f)));
                hi = vreinterpretq_s8_u8(vshrq_n_u8(codes, 4));
                off = type == QMM_Q4_0 ? -8.0f * dw : qmm_f16(blk + 2);
            }
            #pragma GCC unroll 8
            for (int j = 0; j < nt; j++) {
                size_t xb = (size_t)j * nb + b;
                const int8_t *xc = xq + xb * QMM_BLOCK;
                int32x4_t s = dot(dot(vdupq_n_s32(0), lo, vld1q_s8(xc)), hi, vld1q_s8(xc + 16));
                acc[j] = vmlaq_n_f32(acc[j], vcvtq_f32_s32(s), dw * xd[xb]);
                offset[j] += off * xs[xb];
            }
        }
        #pragma GCC unroll 8
        for (int j = 0; j < nt; j++)
            y[(size_t)(t0 + j) * y_stride + r] = qmm_hsum4(acc[j]) + offset[j];
    }
}

/* Whole tiles of TILE tokens, then the rest one by one (decode: one). */
static inline __attribute__((always_inline)) void qmm_rows_arm(qmm_type type, const uint8_t *w, int n_rows,
                                                                const qmm_acts *x, float *y, size_t y_stride,
                                                                int32x4_t (*dot)(int32x4_t, int8x16_t, int8x16_t))
{
    int t = 0;
    for (; t + QMM_TILE <= x->n_tok; t += QMM_TILE)
        qmm_tile_arm(type, w, n_rows, x, t, QMM_TILE, y, y_stride, dot);
    for (; t < x->n_tok; t++)
        qmm_tile_arm(type, w, n_rows, x, t, 1, y, y_stride, dot);
}

#endif /* SLIMKV_RUN_QMM_ARM_H */
