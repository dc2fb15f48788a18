/* The CUDA plugin's kernels: what they are given and how they are launched.
 * Layouts are those of simd/kernels.h; the arithmetic that must match the
 * CPU bit for bit comes from simd/format_math.h. */
#ifndef SLIMKV_CUDA_KERNELS_CUH
#define SLIMKV_CUDA_KERNELS_CUH

#include <stddef.h>
#include <stdint.h>

#include "cuda_compat.h"

/* One KV head as the kernels see it. */
struct dev_head_info {
    int dk, dv;
    size_t k_group_bytes, v_block_bytes;
};

/* A cache as the kernels see it: every pointer is device memory. */
struct cache_view {
    int n_q_heads, n_kv_heads, dim, group, n_sink, ring_slots, sink_rows, page_groups, max_pages;
    int k_format, v_format;       /* slimkv_format of the body */
    int k_row_f32, v_row_f32;     /* sinks and window rows: 1 f32, 0 f16 */
    const dev_head_info *heads;   /* [n_kv_heads] */
    const int32_t *k_chan;        /* [n_kv_heads][dim]: kept K channels, first dk valid */
    const int32_t *v_chan;        /* [n_kv_heads][dim] */
    const int32_t *v_index;       /* [n_kv_heads][dim]: j with v_chan[j] == c, or -1 */
    uint8_t *const *k_pages;      /* [n_kv_heads][max_pages] */
    uint8_t *const *v_pages;
    uint8_t *sink_k, *sink_v;     /* [n_kv_heads][sink_rows][dim] row elements */
    uint8_t *ring_k, *ring_v;     /* [n_kv_heads][ring_slots][dim] */
};

/* Tokens [n0, n1) arriving as f32 rows [n1 - n0][n_kv_heads][dim]. */
struct append_args {
    const float *k, *v;
    int n0, n1;
    int k_body0, k_body1, v_body0, v_body1;
};

struct attend_args {
    const float *q;               /* [n_queries][n_q_heads][dim] */
    int n_queries, qpos0;
    int n_tokens, k_body, v_body;
    const float *chunk_k, *chunk_v; /* [n_chunk][n_kv_heads][dim] or NULL */
    int n_chunk;
    float *out;                   /* [n_queries][n_q_heads][dim] */
    float *partials;              /* [n_kv_heads][n_row_blocks][n_split][rows_per_block][dim + 2]: m, l, acc */
    int rows_per_block, n_row_blocks, n_split;
    float scale;                  /* 1 / sqrt(dim) */
};

/* Each launcher queues its kernels on stream and returns the launch status. */
cudaError_t launch_check_values(const float *x, size_t n, int f16_range, int *bad, cudaStream_t stream);
/* Reads bytes (a multiple of 16) of words; sink holds one word per block. */
cudaError_t launch_read_words(const void *words, size_t bytes, unsigned *sink, int blocks, cudaStream_t stream);
cudaError_t launch_append(const cache_view &view, const append_args &args, cudaStream_t stream);
/* Query rows per attention block that fit the shared-memory budget. */
int attention_rows_per_block(int dim, int group);
cudaError_t launch_attention(const cache_view &view, const attend_args &args, cudaStream_t stream);

#endif /* SLIMKV_CUDA_KERNELS_CUH */
