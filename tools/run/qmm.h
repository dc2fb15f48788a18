/* Quantized matrix products for the model runner: y = W x with W in the
 * GGUF file's own blocks (Q4_0, Q4_1, Q8_0: 32 weights and an f16 scale per
 * block, read where the file holds them) and x quantized per 32 values to
 * int8, so each block's dot product is an integer sum times two scales.
 * One contract, one body per ISA (qmm_<isa>.c), the scalar body the test
 * oracle, the table chosen once at start-up (qmm_select.c).
 *
 * These belong to the program, not to libslimkv: the library stores and
 * attends over the KV cache; weights are the runner's business. */
#ifndef SLIMKV_RUN_QMM_H
#define SLIMKV_RUN_QMM_H

#include <stddef.h>
#include <stdint.h>

#include "slimkv.h"

#define QMM_BLOCK 32

typedef enum qmm_type {
    QMM_Q4_0, /* f16 d, 16 bytes of nibbles (low: elements 0..15, high: 16..31); w = (q - 8) d */
    QMM_Q4_1, /* f16 d, f16 m, nibbles as Q4_0; w = q d + m */
    QMM_Q8_0, /* f16 d, 32 int8; w = q d */
    QMM_TYPE_COUNT
} qmm_type;

/* Bytes of one block of the type (18, 20, 34; 0 for another value). In
 * the header: every body sizes its rows with it. */
static inline size_t qmm_block_bytes(qmm_type type)
{
    return type == QMM_Q4_0 ? 18 : type == QMM_Q4_1 ? 20 : type == QMM_Q8_0 ? 34 : 0;
}

/* IEEE half at p (little-endian) as float, in portable C: the scalar and
 * NEON bodies read block scales with it. */
static inline float qmm_f16(const uint8_t *p)
{
    uint32_t h = (uint32_t)p[0] | (uint32_t)p[1] << 8;
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    union {
        uint32_t u;
        float f;
    } v;
    if (exp == 0x1f) {
        v.u = sign | 0x7f800000u | man << 13; /* Inf, NaN */
    } else if (exp != 0) {
        v.u = sign | (exp + 112) << 23 | man << 13;
    } else {
        v.f = (float)man * 5.9604644775390625e-8f; /* subnormal: man * 2^-24 */
        v.u |= sign;
    }
    return v.f;
}

/* One row of n_blocks blocks as floats (the embedding lookup). */
void qmm_dequantize_row(qmm_type type, const uint8_t *blocks, int n_blocks, float *out);

/* Activations of n_tok tokens of n_blocks blocks each, quantized:
 * x[t][i] ~= d[t][i / 32] * q[t][i], with q in [-127, 127], and
 * sum[t][b] = d[t][b] * (sum of the block's q) for the weights' offsets. */
typedef struct qmm_acts {
    int n_tok, n_blocks;
    size_t capacity; /* blocks allocated */
    int8_t *q;  /* [n_tok][n_blocks * 32] */
    float *d;   /* [n_tok][n_blocks] */
    float *sum; /* [n_tok][n_blocks] */
} qmm_acts;

/* Room for max_blocks blocks (tokens x blocks per token); SLIMKV_ERR_NOMEM. */
slimkv_status qmm_acts_alloc(qmm_acts *a, size_t max_blocks);
void qmm_acts_free(qmm_acts *a);
/* Quantizes x [n_tok][n_blocks * 32] into a, which must have room for
 * n_tok * n_blocks blocks (one body for every ISA: it is O(n_in) per token
 * against the product's O(n_in * n_out)). */
void qmm_quantize(const float *x, int n_tok, int n_blocks, qmm_acts *a);

/* y[t * y_stride + r] = sum over blocks b of row r . x[t] for r < n_rows,
 * t < x->n_tok. w: n_rows rows of x->n_blocks blocks each, contiguous. */
typedef void (*qmm_rows_fn)(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride);

typedef struct qmm_kernels {
    const char *name; /* the library's ISA name: "scalar", "avx2", ... */
    qmm_rows_fn rows[QMM_TYPE_COUNT];
} qmm_kernels;

void qmm_init_scalar(qmm_kernels *k);
void qmm_init_avx2(qmm_kernels *k);
void qmm_init_avx512(qmm_kernels *k);
void qmm_init_neon(qmm_kernels *k);
void qmm_init_neon_dotprod(qmm_kernels *k);

/* The table for an ISA name, with the library's names and rules: NULL or
 * "auto" takes SLIMKV_ISA when set, else the best this CPU supports
 * (slimkv_isa_supported); a name not supported here is
 * SLIMKV_ERR_UNSUPPORTED, never a silent fallback. */
slimkv_status qmm_select(const char *isa, const qmm_kernels **out);

#endif /* SLIMKV_RUN_QMM_H */
