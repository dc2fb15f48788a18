/* NEON bodies (AArch64 and AArch32): s8 x s8 products widened to int16
 * (vmull_s8, at most 128 * 127) and added in pairs into int32 (vpadalq_s16).
 * Shape in qmm_arm.h. */
#include "qmm_arm.h"

static inline int32x4_t dot_s8_neon(int32x4_t acc, int8x16_t w, int8x16_t x)
{
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w), vget_low_s8(x)));
    return vpadalq_s16(acc, vmull_s8(vget_high_s8(w), vget_high_s8(x)));
}

static void qmm_q4_0_rows__neon(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    qmm_rows_arm(QMM_Q4_0, w, n_rows, x, y, y_stride, dot_s8_neon);
}

static void qmm_q4_1_rows__neon(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    qmm_rows_arm(QMM_Q4_1, w, n_rows, x, y, y_stride, dot_s8_neon);
}

static void qmm_q8_0_rows__neon(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    qmm_rows_arm(QMM_Q8_0, w, n_rows, x, y, y_stride, dot_s8_neon);
}

void qmm_init_neon(qmm_kernels *k)
{
    k->rows[QMM_Q4_0] = qmm_q4_0_rows__neon;
    k->rows[QMM_Q4_1] = qmm_q4_1_rows__neon;
    k->rows[QMM_Q8_0] = qmm_q8_0_rows__neon;
}
