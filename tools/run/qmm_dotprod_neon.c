/* NEON bodies with the ARMv8.2 dot product (AArch64): four s8 x s8
 * products summed into each int32 lane in one instruction (sdot). Shape in
 * qmm_arm.h. */
#pragma GCC target("arch=armv8.2-a+dotprod")
#include "qmm_arm.h"

static inline int32x4_t dot_s8_dotprod(int32x4_t acc, int8x16_t w, int8x16_t x)
{
    return vdotq_s32(acc, w, x);
}

static void qmm_q4_0_rows__neon_dotprod(const uint8_t *w, int n_rows, const qmm_acts *x, float *y,
                                        size_t y_stride)
{
    qmm_rows_arm(QMM_Q4_0, w, n_rows, x, y, y_stride, dot_s8_dotprod);
}

static void qmm_q4_1_rows__neon_dotprod(const uint8_t *w, int n_rows, const qmm_acts *x, float *y,
                                        size_t y_stride)
{
    qmm_rows_arm(QMM_Q4_1, w, n_rows, x, y, y_stride, dot_s8_dotprod);
}

static void qmm_q8_0_rows__neon_dotprod(const uint8_t *w, int n_rows, const qmm_acts *x, float *y,
                                        size_t y_stride)
{
    qmm_rows_arm(QMM_Q8_0, w, n_rows, x, y, y_stride, dot_s8_dotprod);
}

void qmm_init_neon_dotprod(qmm_kernels *k)
{
    k->rows[QMM_Q4_0] = qmm_q4_0_rows__neon_dotprod;
    k->rows[QMM_Q4_1] = qmm_q4_1_rows__neon_dotprod;
    k->rows[QMM_Q8_0] = qmm_q8_0_rows__neon_dotprod;
}
