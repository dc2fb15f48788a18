/* Internal helpers shared by the x86 kernel files. Plain C only: every file
 * that includes this compiles it with its own ISA flags, so nothing here may
 * use an intrinsic. */
#ifndef SLIMKV_X86_COMMON_H
#define SLIMKV_X86_COMMON_H

#include <stdint.h>
#include <string.h>

#include "kernels.h"

/* Bodies are written once with compile-time parameters (bit width, query
 * count, vector count) and instantiated by forced inlining, so that loops
 * over them unroll and accumulators stay in registers. */
#define X86_INLINE static inline __attribute__((always_inline))

/* Before a loop whose trip count is one of those compile-time parameters:
 * fully unrolled, its array of accumulators becomes registers. */
#if defined(__clang__)
#define X86_UNROLL _Pragma("unroll")
#else
#define X86_UNROLL _Pragma("GCC unroll 16")
#endif

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

/* Asks for bytes [p, p + n) up front, in address order (prefetcht0). Some
 * kernels read their data in an order of their own (a V block a slice of
 * every plane per channel group, dense rows a block of channels of every
 * row); requesting it all first keeps the misses to memory concurrent and
 * shows the hardware prefetcher a stream. */
X86_INLINE void x86_prefetch_range(const void *p, size_t n)
{
    const uintptr_t first = (uintptr_t)p & ~(uintptr_t)63, end = (uintptr_t)p + n;
    for (uintptr_t line = first; line < end; line += 64)
        __builtin_prefetch((const void *)line, 0, 3);
}

/* The same for bytes [0, row_bytes) of n rows stride_bytes apart. */
X86_INLINE void x86_prefetch_rows(const void *rows, size_t stride_bytes, int n, size_t row_bytes)
{
    if (stride_bytes == row_bytes) {
        x86_prefetch_range(rows, row_bytes * (size_t)n);
        return;
    }
    for (int t = 0; t < n; t++)
        x86_prefetch_range((const char *)rows + (size_t)t * stride_bytes, row_bytes);
}

/* Softmax helpers of the fused decode loop (simd/tile_loop.h), shared by
 * the dense and quantized files of one ISA. */
SLIMKV_HIDDEN float slimkv_exp_sum_avx2(float *x, int n, float max);
SLIMKV_HIDDEN float slimkv_max_f32_avx2(const float *x, int n);
SLIMKV_HIDDEN void slimkv_scale_f32_avx2(float *x, int n, float a);
SLIMKV_HIDDEN float slimkv_exp_sum_avx512(float *x, int n, float max);
SLIMKV_HIDDEN float slimkv_max_f32_avx512(const float *x, int n);
SLIMKV_HIDDEN void slimkv_scale_f32_avx512(float *x, int n, float a);

/* Per-format kernels of the quantized and SparK files, indexed by format -
 * SLIMKV_Q8 (quantized) or by format (SparK), for the fused bodies of the
 * pairs that mix families (kernels_avx2.c, kernels_avx512.c). */
SLIMKV_HIDDEN extern const slimkv_score_k_fn slimkv_quant_score_k_avx2[4];
SLIMKV_HIDDEN extern const slimkv_accum_v_fn slimkv_quant_accum_v_avx2[4];
SLIMKV_HIDDEN extern const slimkv_score_k_fn slimkv_quant_score_k_avx512[4];
SLIMKV_HIDDEN extern const slimkv_accum_v_fn slimkv_quant_accum_v_avx512[4];
SLIMKV_HIDDEN extern const slimkv_score_spark_fn slimkv_spark_score_avx2[SLIMKV_FORMAT_COUNT];
SLIMKV_HIDDEN extern const slimkv_score_spark_fn slimkv_spark_score_avx512[SLIMKV_FORMAT_COUNT];

/* Table fillers of the quantized-format files. */
SLIMKV_HIDDEN void slimkv_x86_quant_init_avx2(slimkv_kernels *k);
SLIMKV_HIDDEN void slimkv_x86_quant_init_avx512(slimkv_kernels *k);
/* SparK scores (spark_avx2.c, spark_avx512.c). */
SLIMKV_HIDDEN void slimkv_x86_spark_init_avx2(slimkv_kernels *k);
SLIMKV_HIDDEN void slimkv_x86_spark_init_avx512(slimkv_kernels *k);

#endif /* SLIMKV_X86_COMMON_H */
