/* What the bodies share at run time: the activations' quantization and a
 * row's dequantization (the choice of a table: qmm_select.c). */
#include "qmm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void qmm_dequantize_row(qmm_type type, const uint8_t *blocks, int n_blocks, float *out)
{
    size_t bb = qmm_block_bytes(type);
    for (int b = 0; b < n_blocks; b++, blocks += bb, out += QMM_BLOCK) {
        float d = qmm_f16(blocks);
        if (type == QMM_Q8_0) {
            for (int j = 0; j < QMM_BLOCK; j++)
                out[j] = (float)(int8_t)blocks[2 + j] * d;
            continue;
        }
        /* the formulas of gguf_dequantize, to the bit */
        int q4_1 = type == QMM_Q4_1, zero = q4_1 ? 0 : 8;
        float m = q4_1 ? qmm_f16(blocks + 2) : 0.0f;
        const uint8_t *qs = blocks + (q4_1 ? 4 : 2);
        for (int j = 0; j < 16; j++) {
            out[j] = (float)((qs[j] & 0x0f) - zero) * d + m;
            out[j + 16] = (float)((qs[j] >> 4) - zero) * d + m;
        }
    }
}

slimkv_status qmm_acts_alloc(qmm_acts *a, size_t blocks)
{
    memset(a, 0, sizeof *a);
    /* 64-byte aligned rows of codes: whole-vector loads never split lines */
    a->q = aligned_alloc(64, (blocks * QMM_BLOCK + 63) / 64 * 64);
    a->d = malloc(blocks * sizeof *a->d);
    a->sum = malloc(blocks * sizeof *a->sum);
    if (!a->q || !a->d || !a->sum) {
        qmm_acts_free(a);
        return SLIMKV_ERR_NOMEM;
    }
    a->capacity = blocks;
    return SLIMKV_OK;
}

void qmm_acts_free(qmm_acts *a)
{
    free(a->q);
    free(a->d);
    free(a->sum);
    memset(a, 0, sizeof *a);
}

/* Per block: d = max |x| / 127, q = x / d rounded half away from zero; an
 * all-zero block has d = 0 and q = 0. */
void qmm_quantize(const float *x, int n_tok, int n_blocks, qmm_acts *a)
{
    a->n_tok = n_tok;
    a->n_blocks = n_blocks;
    long total = (long)n_tok * n_blocks;
#pragma omp parallel for schedule(static) if (total > 4096)
    for (long b = 0; b < total; b++) {
        const float *xb = x + b * QMM_BLOCK;
        int8_t *q = a->q + b * QMM_BLOCK;
        float amax = 0.0f;
        for (int j = 0; j < QMM_BLOCK; j++) {
            float a = fabsf(xb[j]);
            amax = a > amax ? a : amax; /* plain compares: no libm call, and they vectorize */
        }
        float d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < QMM_BLOCK; j++) {
            float v = xb[j] * inv; /* within [-127, 127] */
            int code = (int)(v + (v < 0.0f ? -0.5f : 0.5f)); /* half away from zero */
            q[j] = (int8_t)code;
            sum += code;
        }
        a->d[b] = d;
        a->sum[b] = d * (float)sum;
    }
}
