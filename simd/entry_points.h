/* The contract's entry points, written once for every ISA body.
 *
 * Each body writes its kernels once, generic over the format (and the code
 * width), with the format arguments first; these macros give them the fixed
 * signatures of kernels.h, one function per format:
 *
 *   SLIMKV_FORMAT_ENTRIES(q4_neon, quant, 4, SLIMKV_Q4)
 *     -> pack_k_q4_neon(src, dk, g, group) = pack_k_quant(4, SLIMKV_Q4, src, dk, g, group)
 *        and likewise pack_v_, score_k_, accum_v_.
 *
 * Dense K groups and V blocks are token-major rows of the kept channels, so
 * a body that defines score_dense, accum_dense (the row kernels, format
 * first) and store_elems(fmt, dst, src, n) gets its dense group kernels from
 * SLIMKV_DENSE_GROUP_KERNELS and its row entry points from
 * SLIMKV_ROW_ENTRIES. */
#ifndef SLIMKV_SIMD_ENTRY_POINTS_H
#define SLIMKV_SIMD_ENTRY_POINTS_H

#include "kernels.h"

#define SLIMKV_SCORE_K_ENTRY(NAME, IMPL, ...)                                                             \
    static void NAME(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s, int lds) \
    {                                                                                                     \
        IMPL(__VA_ARGS__, group, dk, g, n, q, nq, s, lds);                                                \
    }

#define SLIMKV_ACCUM_V_ENTRY(NAME, IMPL, ...)                                                             \
    static void NAME(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,         \
                     float *acc)                                                                          \
    {                                                                                                     \
        IMPL(__VA_ARGS__, block, dv, g, n, w, ldw, nq, acc);                                              \
    }

#define SLIMKV_PACK_K_ENTRY(NAME, IMPL, ...)                                                              \
    static void NAME(const float *src, int dk, int g, uint8_t *group)                                     \
    {                                                                                                     \
        IMPL(__VA_ARGS__, src, dk, g, group);                                                             \
    }

#define SLIMKV_PACK_V_ENTRY(NAME, IMPL, ...)                                                              \
    static void NAME(const float *src, int dv, int g, uint8_t *block, int slot)                           \
    {                                                                                                     \
        IMPL(__VA_ARGS__, src, dv, g, block, slot);                                                       \
    }

#define SLIMKV_SCORE_SPARK_ENTRY(NAME, IMPL, ...)                                                         \
    static void NAME(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,             \
                     const float *u, int nq, float *s, int lds)                                           \
    {                                                                                                     \
        IMPL(__VA_ARGS__, group, dim, t_keep, g, n, q, u, nq, s, lds);                                    \
    }

#define SLIMKV_PACK_SPARK_ENTRY(NAME, IMPL, ...)                                                          \
    static void NAME(const float *src, const float *qnorm, int dim, int t_keep, int g, uint8_t *group)    \
    {                                                                                                     \
        IMPL(__VA_ARGS__, src, qnorm, dim, t_keep, g, group);                                             \
    }

/* pack_k_NAME, pack_v_NAME, score_k_NAME and accum_v_NAME from the
 * generic pack_k_IMPL, pack_v_IMPL, score_k_IMPL and accum_v_IMPL. */
#define SLIMKV_FORMAT_ENTRIES(NAME, IMPL, ...)                                                            \
    SLIMKV_PACK_K_ENTRY(pack_k_##NAME, pack_k_##IMPL, __VA_ARGS__)                                        \
    SLIMKV_PACK_V_ENTRY(pack_v_##NAME, pack_v_##IMPL, __VA_ARGS__)                                        \
    SLIMKV_SCORE_K_ENTRY(score_k_##NAME, score_k_##IMPL, __VA_ARGS__)                                     \
    SLIMKV_ACCUM_V_ENTRY(accum_v_##NAME, accum_v_##IMPL, __VA_ARGS__)

/* Puts those four of format FMT into table k. */
#define SLIMKV_SET_FORMAT_ENTRIES(k, FMT, NAME)                                                           \
    do {                                                                                                  \
        (k)->pack_k[FMT] = pack_k_##NAME;                                                                 \
        (k)->pack_v[FMT] = pack_v_##NAME;                                                                 \
        (k)->score_k[FMT] = score_k_##NAME;                                                               \
        (k)->accum_v[FMT] = accum_v_##NAME;                                                               \
    } while (0)

/* The format-generic dense group kernels (pack_k_dense, ...), on the body's
 * row kernels score_dense / accum_dense and its store_elems. */
#define SLIMKV_DENSE_GROUP_KERNELS                                                                        \
    static void pack_k_dense(slimkv_format fmt, const float *src, int dk, int g, uint8_t *group)          \
    {                                                                                                     \
        store_elems(fmt, group, src, (size_t)dk * g);                                                     \
    }                                                                                                     \
    static void pack_v_dense(slimkv_format fmt, const float *src, int dv, int g, uint8_t *block, int slot) \
    {                                                                                                     \
        (void)g;                                                                                          \
        store_elems(fmt, block + (size_t)slot * dv * (fmt == SLIMKV_F32 ? 4 : 2), src, (size_t)dv);       \
    }                                                                                                     \
    static void score_k_dense(slimkv_format fmt, const uint8_t *group, int dk, int g, int n, const float *q, \
                              int nq, float *s, int lds)                                                  \
    {                                                                                                     \
        (void)g;                                                                                          \
        score_dense(fmt, group, (size_t)dk, n, dk, q, nq, s, lds);                                        \
    }                                                                                                     \
    static void accum_v_dense(slimkv_format fmt, const uint8_t *block, int dv, int g, int n, const float *w, \
                              int ldw, int nq, float *acc)                                                \
    {                                                                                                     \
        (void)g;                                                                                          \
        accum_dense(fmt, block, (size_t)dv, n, dv, w, ldw, nq, acc);                                      \
    }

/* score_rows_f32SUFFIX ... accum_rows_f16SUFFIX on score_dense / accum_dense. */
#define SLIMKV_ROW_ENTRIES(SUFFIX)                                                                        \
    static void score_rows_f32##SUFFIX(const void *rows, size_t stride, int n, int d, const float *q, int nq, \
                                       float *s, int lds)                                                 \
    {                                                                                                     \
        score_dense(SLIMKV_F32, rows, stride, n, d, q, nq, s, lds);                                       \
    }                                                                                                     \
    static void score_rows_f16##SUFFIX(const void *rows, size_t stride, int n, int d, const float *q, int nq, \
                                       float *s, int lds)                                                 \
    {                                                                                                     \
        score_dense(SLIMKV_F16, rows, stride, n, d, q, nq, s, lds);                                       \
    }                                                                                                     \
    static void accum_rows_f32##SUFFIX(const void *rows, size_t stride, int n, int d, const float *w, int ldw, \
                                       int nq, float *acc)                                                \
    {                                                                                                     \
        accum_dense(SLIMKV_F32, rows, stride, n, d, w, ldw, nq, acc);                                     \
    }                                                                                                     \
    static void accum_rows_f16##SUFFIX(const void *rows, size_t stride, int n, int d, const float *w, int ldw, \
                                       int nq, float *acc)                                                \
    {                                                                                                     \
        accum_dense(SLIMKV_F16, rows, stride, n, d, w, ldw, nq, acc);                                     \
    }

#define SLIMKV_SET_ROW_ENTRIES(k, SUFFIX)                                                                 \
    do {                                                                                                  \
        (k)->score_rows_f32 = score_rows_f32##SUFFIX;                                                     \
        (k)->score_rows_f16 = score_rows_f16##SUFFIX;                                                     \
        (k)->accum_rows_f32 = accum_rows_f32##SUFFIX;                                                     \
        (k)->accum_rows_f16 = accum_rows_f16##SUFFIX;                                                     \
    } while (0)

/* score_spark_<format>SUFFIX for all six formats, on IMPL(fmt, ...). */
#define SLIMKV_SPARK_SCORE_ENTRIES(SUFFIX, IMPL)                                                          \
    SLIMKV_SCORE_SPARK_ENTRY(score_spark_f32##SUFFIX, IMPL, SLIMKV_F32)                                   \
    SLIMKV_SCORE_SPARK_ENTRY(score_spark_f16##SUFFIX, IMPL, SLIMKV_F16)                                   \
    SLIMKV_SCORE_SPARK_ENTRY(score_spark_bf16##SUFFIX, IMPL, SLIMKV_BF16)                                 \
    SLIMKV_SCORE_SPARK_ENTRY(score_spark_q8##SUFFIX, IMPL, SLIMKV_Q8)                                     \
    SLIMKV_SCORE_SPARK_ENTRY(score_spark_q4##SUFFIX, IMPL, SLIMKV_Q4)                                     \
    SLIMKV_SCORE_SPARK_ENTRY(score_spark_q2##SUFFIX, IMPL, SLIMKV_Q2)

#define SLIMKV_SET_SPARK_SCORE_ENTRIES(k, SUFFIX)                                                         \
    do {                                                                                                  \
        (k)->score_spark[SLIMKV_F32] = score_spark_f32##SUFFIX;                                           \
        (k)->score_spark[SLIMKV_F16] = score_spark_f16##SUFFIX;                                           \
        (k)->score_spark[SLIMKV_BF16] = score_spark_bf16##SUFFIX;                                         \
        (k)->score_spark[SLIMKV_Q8] = score_spark_q8##SUFFIX;                                             \
        (k)->score_spark[SLIMKV_Q4] = score_spark_q4##SUFFIX;                                             \
        (k)->score_spark[SLIMKV_Q2] = score_spark_q2##SUFFIX;                                             \
    } while (0)

#endif /* SLIMKV_SIMD_ENTRY_POINTS_H */
