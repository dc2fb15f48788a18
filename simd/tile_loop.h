/* The fused decode loop of kernels.h (attend_groups), written once. Every
 * ISA body includes this file, so the loop compiles with that file's ISA
 * flags, and instantiates it per (K format, V format) pair with its own
 * score / accumulate bodies and softmax helpers, under a name of its own
 * (slimkv_attend_groups_q4_q4_avx512, ...). Plain C: no intrinsics here. */
#ifndef SLIMKV_SIMD_TILE_LOOP_H
#define SLIMKV_SIMD_TILE_LOOP_H

#include <math.h>

#include "kernels.h"

/* A tile holds at least one group, of at most SLIMKV_MAX_GROUP tokens. */
#define SLIMKV_TILE_MAX_TOKENS SLIMKV_MAX_GROUP

/* Bytes a stream (K or V) is prefetched ahead of its use. Decode reads each
 * byte once, so the hardware prefetcher alone leaves the core waiting on
 * DRAM at every new page; asking this far ahead keeps enough misses in
 * flight for one core to approach the DRAM bandwidth, while staying well
 * inside L2. */
#ifndef SLIMKV_PREFETCH_BYTES
#define SLIMKV_PREFETCH_BYTES ((size_t)12 << 10)
#endif

typedef struct slimkv_tile_ops {
    slimkv_score_k_fn score;   /* scores of one K group (all g tokens) */
    slimkv_accum_v_fn accum;   /* V accumulation of one block */
    float (*exp_sum)(float *x, int n, float max);
    float (*max)(const float *x, int n);
    void (*scale)(float *x, int n, float a);
    slimkv_score_spark_fn score_spark; /* instead of score: SparK K groups (span dim, t_keep, u) */
    slimkv_score_k_fn score_outliers;  /* q8 scores of span->k_outliers channels (quantized K only) */
} slimkv_tile_ops;

static inline const uint8_t *slimkv_span_group(uint8_t *const *pages, int page_groups, size_t bytes, int i)
{
    return pages[i / page_groups] + (size_t)(i % page_groups) * bytes;
}

static inline void slimkv_prefetch_bytes(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 64)
        __builtin_prefetch(p + i, 0, 3);
}

/* How many groups ahead a stream of `bytes`-sized groups is prefetched. */
static inline int slimkv_prefetch_distance(size_t bytes)
{
    size_t d = bytes ? SLIMKV_PREFETCH_BYTES / bytes : 1;
    return d < 1 ? 1 : d > 16 ? 16 : (int)d;
}

/* One online-softmax step of one row over a tile of n scores s: the scores
 * become weights exp(s - m), l and acc follow a moving max. */
static inline __attribute__((always_inline)) void slimkv_softmax_step(const slimkv_tile_ops *ops, float *s, int n,
                                                                      float *m, float *l, float *acc, int dv)
{
    float mx = ops->max(s, n);
    if (*m == -INFINITY || mx > *m + SLIMKV_SOFTMAX_SLACK) {
        if (*m != -INFINITY) { /* nothing to rescale before the first token */
            float alpha = expf(*m - mx);
            *l *= alpha;
            ops->scale(acc, dv, alpha);
        }
        *m = mx;
    }
    *l += ops->exp_sum(s, n, *m);
}

static inline __attribute__((always_inline)) void slimkv_tile_loop(const slimkv_tile_ops *ops,
                                                                   const slimkv_group_span *sp, const float *q,
                                                                   int rows, float *m, float *l, float *acc)
{
    const int g = sp->g, per_tile = g >= SLIMKV_TILE_TOKENS ? 1 : SLIMKV_TILE_TOKENS / g;
    const int k_ahead = slimkv_prefetch_distance(sp->k_group_bytes);
    const int v_ahead = slimkv_prefetch_distance(sp->v_block_bytes);
    const int end = sp->first + sp->count;
    const size_t q_stride = ops->score_spark ? (size_t)sp->dim : (size_t)sp->dk; /* floats per query row */
    float s[SLIMKV_TILE_ROWS * SLIMKV_TILE_MAX_TOKENS];
    float s_out[SLIMKV_TILE_ROWS * SLIMKV_TILE_MAX_TOKENS]; /* outlier channels' scores, added to s */
    for (int t0 = sp->first; t0 < end; t0 += per_tile) {
        const int ng = end - t0 < per_tile ? end - t0 : per_tile, n = ng * g;
        for (int r0 = 0; r0 < rows; r0 += SLIMKV_TILE_ROWS) {
            const int nr = rows - r0 < SLIMKV_TILE_ROWS ? rows - r0 : SLIMKV_TILE_ROWS;
            for (int j = 0; j < ng; j++) {
                if (r0 == 0 && t0 + j + k_ahead < end)
                    slimkv_prefetch_bytes(slimkv_span_group(sp->k_pages, sp->page_groups, sp->k_group_bytes,
                                                            t0 + j + k_ahead),
                                          sp->k_group_bytes);
                const uint8_t *group = slimkv_span_group(sp->k_pages, sp->page_groups, sp->k_group_bytes, t0 + j);
                if (ops->score_spark)
                    ops->score_spark(group, sp->dim, sp->t_keep, g, g, q + r0 * q_stride, sp->u + r0 * q_stride, nr,
                                     s + (size_t)j * g, n);
                else
                    ops->score(group, sp->dk, g, g, q + r0 * q_stride, nr, s + (size_t)j * g, n);
                if (sp->k_outliers)
                    ops->score_outliers(group + sp->k_outlier_offset, sp->k_outliers, g, g,
                                        sp->q_outliers + (size_t)r0 * sp->k_outliers, nr, s_out + (size_t)j * g, n);
            }
            if (sp->k_outliers)
                for (int i = 0; i < nr * n; i++)
                    s[i] += s_out[i];
            for (int i = 0; i < nr; i++)
                slimkv_softmax_step(ops, s + (size_t)i * n, n, &m[r0 + i], &l[r0 + i],
                                    acc + (size_t)(r0 + i) * sp->dv, sp->dv);
            for (int j = 0; j < ng; j++) {
                if (r0 == 0 && t0 + j + v_ahead < end)
                    slimkv_prefetch_bytes(slimkv_span_group(sp->v_pages, sp->page_groups, sp->v_block_bytes,
                                                            t0 + j + v_ahead),
                                          sp->v_block_bytes);
                ops->accum(slimkv_span_group(sp->v_pages, sp->page_groups, sp->v_block_bytes, t0 + j), sp->dv, g,
                           g, s + (size_t)j * g, n, nr, acc + (size_t)r0 * sp->dv);
            }
        }
    }
}

#endif /* SLIMKV_SIMD_TILE_LOOP_H */
