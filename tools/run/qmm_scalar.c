/* The reference bodies (and the test oracle): one block at a time, integer
 * sums, then the block's two scales. */
#include "qmm.h"

/* Sum over the block of nibble codes (0..15) times activation codes. */
static int nibble_dot(const uint8_t *qs, const int8_t *x)
{
    int sum = 0;
    for (int j = 0; j < 16; j++)
        sum += (qs[j] & 0x0f) * x[j] + (qs[j] >> 4) * x[j + 16];
    return sum;
}

/* One block of weights against one of activations (codes x, scale d,
 * d * sum of codes = dsum). */
static float block_dot(qmm_type type, const uint8_t *blk, const int8_t *x, float d, float dsum)
{
    float dw = qmm_f16(blk);
    switch (type) {
    case QMM_Q4_0: /* sum (q - 8) dw * xq d */
        return dw * (d * (float)nibble_dot(blk + 2, x) - 8.0f * dsum);
    case QMM_Q4_1: /* sum (q dw + m) * xq d */
        return dw * d * (float)nibble_dot(blk + 4, x) + qmm_f16(blk + 2) * dsum;
    default: {
        const int8_t *w = (const int8_t *)(blk + 2);
        int sum = 0;
        for (int j = 0; j < QMM_BLOCK; j++)
            sum += w[j] * x[j];
        return dw * d * (float)sum;
    }
    }
}

static void rows_scalar(qmm_type type, const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    size_t bb = qmm_block_bytes(type), nb = (size_t)x->n_blocks;
    for (int t = 0; t < x->n_tok; t++) {
        const int8_t *xq = x->q + (size_t)t * nb * QMM_BLOCK;
        const float *xd = x->d + (size_t)t * nb, *xs = x->sum + (size_t)t * nb;
        for (int r = 0; r < n_rows; r++) {
            const uint8_t *row = w + (size_t)r * nb * bb;
            float acc = 0.0f;
            for (size_t b = 0; b < nb; b++)
                acc += block_dot(type, row + b * bb, xq + b * QMM_BLOCK, xd[b], xs[b]);
            y[(size_t)t * y_stride + r] = acc;
        }
    }
}

static void qmm_q4_0_rows__scalar(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    rows_scalar(QMM_Q4_0, w, n_rows, x, y, y_stride);
}

static void qmm_q4_1_rows__scalar(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    rows_scalar(QMM_Q4_1, w, n_rows, x, y, y_stride);
}

static void qmm_q8_0_rows__scalar(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    rows_scalar(QMM_Q8_0, w, n_rows, x, y, y_stride);
}

void qmm_init_scalar(qmm_kernels *k)
{
    k->name = "scalar";
    k->rows[QMM_Q4_0] = qmm_q4_0_rows__scalar;
    k->rows[QMM_Q4_1] = qmm_q4_1_rows__scalar;
    k->rows[QMM_Q8_0] = qmm_q8_0_rows__scalar;
}
