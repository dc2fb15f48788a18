/* Internal structures of the core; nothing here is exported. */
#ifndef SLIMKV_INTERNAL_H
#define SLIMKV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "../simd/kernels.h"
#include "plugin_abi.h"
#include "slimkv.h"

/* Compressed storage grows in pages of this many K groups / V blocks, so a
 * cache holds memory for the tokens it has, not for its whole capacity. */
#define SLIMKV_PAGE_GROUPS 8

typedef struct slimkv_head {
    int dk, dv;            /* kept K / V channels; dk == 0: streaming head */
    size_t k_group_bytes;  /* bytes of one compressed K group / V block */
    size_t v_block_bytes;
    float *qnorm;          /* SparK: [head_dim] ||qbar|| per channel */
    float *qnorm_rsqrt;    /* SparK: 1 / sqrt(qnorm) */
    int32_t *k_chan;       /* [dk] kept K channel indices, ascending */
    int32_t *v_chan;       /* [dv] */
    uint8_t *sink_k, *sink_v; /* [S][head_dim] rows, row format */
    uint8_t *ring_k, *ring_v; /* [R+G][head_dim] residual window, slot = (pos - S) % ring */
    uint8_t **k_pages;     /* [max_pages], first n_k_pages allocated */
    uint8_t **v_pages;
    int n_k_pages, n_v_pages;
} slimkv_head;

struct slimkv_cache {
    slimkv_config cfg;     /* copy; mask pointers cleared */
    const slimkv_kernels *kern;
    int q_per_kv;          /* n_q_heads / n_kv_heads */
    int n_tokens;
    int ring_slots;        /* R + G, at most the capacity rounded up to G */
    int sink_rows;         /* S, at most the capacity */
    slimkv_format k_row_fmt, v_row_fmt; /* F32 or F16: sinks and residual window */
    int max_pages;
    int channels_pending;  /* ThinK/SparK: channels not chosen yet (before the first prefill) */
    int spark_keep;        /* SparK: T channels kept per token */
    slimkv_head *heads;
    /* CUDA backend: the plugin and its device cache. The host heads then
     * keep only the bookkeeping (channels, sizes), no storage. */
    const slimkv_plugin_api *dev_api;
    void *dev;
};

/* alloc.c: every allocation of the library goes through these. */
void *slimkv_malloc(size_t size);
void *slimkv_calloc(size_t count, size_t size);
void slimkv_free(void *ptr);

/* format.c: byte accounting, one place for every size the cache uses. */
size_t slimkv_row_elem_bytes(slimkv_format row_fmt);
slimkv_format slimkv_row_format(slimkv_format fmt);
size_t slimkv_k_group_bytes(slimkv_format fmt, int dk, int g);
size_t slimkv_v_block_bytes(slimkv_format fmt, int dv, int g);
size_t slimkv_spark_group_bytes(slimkv_format fmt, int dim, int t_keep, int g);
/* Tokens of the compressed body after n tokens (K: whole groups, V: FIFO). */
int slimkv_k_body_tokens(const slimkv_config *cfg, int n);
int slimkv_v_body_tokens(const slimkv_config *cfg, int n);
int slimkv_pages_for_tokens(const slimkv_config *cfg, int body_tokens);
uint8_t *slimkv_k_group_ptr(const slimkv_head *h, int group);
uint8_t *slimkv_v_block_ptr(const slimkv_head *h, int block);
uint8_t *slimkv_ring_row(const slimkv_cache *c, uint8_t *ring, slimkv_format row_fmt, int pos);

/* policy_think.c / policy_spark.c: choices made at the first prefill from
 * its queries q [n][n_q_heads][D] and keys k [n][n_kv_heads][D]. */
int slimkv_think_select(const slimkv_config *cfg, const float *q, const float *k, int n_tokens, int head,
                        int32_t *chan);
void slimkv_spark_qnorm(const slimkv_config *cfg, const float *q, int n_tokens, int head, float *qnorm);
int slimkv_spark_keep(const slimkv_config *cfg);

/* cache.c */
/* An empty cache with the same config, channels and kernels as target. */
slimkv_status slimkv_cache_create_like(const slimkv_cache *target, slimkv_cache **out);
/* Grows the page tables for body_k / body_v body tokens, all or nothing. */
slimkv_status slimkv_cache_reserve(slimkv_cache *c, int body_k, int body_v);
/* Sizes of a head's K group and V block, once its channels are known. */
void slimkv_head_set_group_bytes(const slimkv_cache *c, slimkv_head *h);

/* backend_cuda.c: the backend a new cache gets; *api is the plugin for a
 * CUDA cache, NULL for a CPU cache. */
slimkv_status slimkv_backend_choose(const slimkv_config *cfg, const slimkv_plugin_api **api);

/* dispatch.c */
slimkv_status slimkv_select_kernels(const char *isa, const slimkv_kernels **out);
/* The table "auto" would pick if SLIMKV_ISA were `value` (read once per
 * process, so tests check each value through this). */
slimkv_status slimkv_select_for_override(const char *value, const slimkv_kernels **out);

/* attention.c: causal attention of n_queries queries at positions
 * qpos0 + i over the cache's tokens, plus (when chunk_k != NULL) n_chunk
 * full-precision tokens at positions n_tokens .. n_tokens + n_chunk - 1. */
slimkv_status slimkv_attention_run(const slimkv_cache *c, const float *q, int n_queries, int qpos0,
                                   const float *chunk_k, const float *chunk_v, int n_chunk, float *out);

int slimkv_all_finite(const float *x, size_t n);

/* io_snapshot_check.c: 1 when a restored cache holds what attention may
 * read (finite rows, values, scales and mins; SparK masks of exactly T
 * bits inside D, a_t >= 0; counts within capacity). */
int slimkv_snapshot_state_valid(const slimkv_cache *c);

#endif /* SLIMKV_INTERNAL_H */
