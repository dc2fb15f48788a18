/* Internal helpers shared by the x86 kernel files. Plain C only: every file
 * that includes this compiles it with its own ISA flags, so nothing here may
 * use an intrinsic. */
#ifndef SLIMKV_X86_COMMON_H
#define SLIMKV_X86_COMMON_H

#include <math.h>
#include <string.h>

#include "kernels.h"

/* Bodies are written once with compile-time parameters (bit width, query
 * count, vector count) and instantiated by forced inlining, so that loops
 * over them unroll and accumulators stay in registers. */
#define X86_INLINE static inline __attribute__((always_inline))

/* Queries served together from one pass over a group or block. Four is the
 * GQA decode shape (32 q heads / 8 KV heads); other counts run as chunks of
 * four followed by single queries. */
#define X86_QUERY_CHUNK 4

/* Folded query / weight values are quantized to int8 in [-127, 127]. */
#define X86_INT8_LIMIT 127.0f

X86_INLINE int x86_min(int a, int b)
{
    return a < b ? a : b;
}

/* Parameters and blocks carry no alignment guarantee beyond the byte. */
X86_INLINE uint16_t x86_load_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

X86_INLINE void x86_store_u16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, sizeof v);
}

/* The oracle's running min/max (v < lo ? v : lo) keeps the first of equal
 * values, so a zero extreme carries the sign of the first zero in index
 * order. A vector reduction visits the values in another order; when the
 * extreme it found is zero, this returns the oracle's zero. */
X86_INLINE float x86_first_equal(const float *x, int n, float value)
{
    for (int i = 0; i < n; i++)
        if (x[i] == value)
            return x[i];
    return value;
}

/* One code exactly as scalar.c computes it (for scalar tails). */
X86_INLINE int x86_quant_code(float x, float mn, float inv, float top)
{
    float r = rintf((x - mn) * inv);
    r = r < 0.0f ? 0.0f : r;
    r = r > top ? top : r;
    return (int)r;
}

/* Table fillers of the quantized-format files. */
SLIMKV_HIDDEN void slimkv_x86_quant_init_avx2(slimkv_kernels *k);
SLIMKV_HIDDEN void slimkv_x86_quant_init_avx512(slimkv_kernels *k);

#endif /* SLIMKV_X86_COMMON_H */
