/* Internal structures of the core; nothing here is exported. */
#ifndef SLIMKV_INTERNAL_H
#define SLIMKV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "../simd/kernels.h"
#include "slimkv.h"

/* Compressed storage grows in pages of this many K groups / V blocks, so a
 * cache holds memory for the tokens it has, not for its whole capacity. */
#define SLIMKV_PAGE_GROUPS 8

typedef struct slimkv_backend_ops slimkv_backend_ops;

/* Per KV head: bookkeeping (channels, sizes, SparK's norms; policy.c) for
 * every backend, storage (rows, pages; storage.c) for the CPU backend. */
typedef struct slimkv_head {
    int dk, dv;            /* kept K / V channels; dk == 0: streaming head */
    size_t k_group_bytes;  /* bytes of one compressed K group / V block */
    size_t v_block_bytes;
    float *qnorm;          /* SparK: [head_dim] ||qbar|| per channel */
    float *qnorm_rsqrt;    /* SparK: 1 / sqrt(qnorm) */
    int32_t *k_chan;       /* [dk] kept K channel indices, ascending */
    /* K outlier channels (config k_outliers): k_out of the kept channels
     * at 8 bits. k_store [dk] holds the kept channels in storage order,
     * the dk - k_out others ascending, then the outliers ascending (until
     * the first K group's flush chooses them: the last k_out of k_chan).
     * NULL and 0 without outliers, where the storage order is k_chan's. */
    int k_out;
    int32_t *k_store;
    size_t k_out_offset;   /* byte of the outliers' q8 group in a K group */
    int32_t *v_chan;       /* [dv] */
    uint8_t *sink_k, *sink_v; /* [S][head_dim] rows, row format */
    uint8_t *ring_k, *ring_v; /* [R+G][head_dim] residual window, slot = (pos - S) % ring */
    /* [max_pages], the first n_k_pages / n_v_pages held; pages come from
     * slimkv_page_alloc and may be shared with forks (storage_share.c) */
    uint8_t **k_pages;
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
    /* Streaming heads (no body) hold window rows from no position older
     * than this (nor than ring_slots back): a truncation dropped the rows
     * before it. 0 for a cache never truncated. */
    int stream_floor;
    int spark_keep;        /* SparK: T channels kept per token */
    slimkv_head *heads;
    const slimkv_backend_ops *backend; /* backend.h: where the bytes live */
    /* CUDA backend: the plugin's device cache. The host heads then keep
     * only the bookkeeping (channels, sizes), no storage. */
    void *device;
    /* config.rotate: [n_kv_heads][head_dim] signs of each head's rotation
     * (rotation.c); NULL without rotation. */
    float *rotation_signs;
    /* Token eviction (evict.c): positions, H2O's scores, tokens seen; NULL
     * for a cache without eviction. */
    struct slimkv_evict_state *evict;
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

/* K groups hold SparK records (per-token masks) instead of kept channels. */
static inline int slimkv_k_is_spark(const slimkv_cache *c)
{
    return c->spark_keep > 0;
}

/* policy.c: the channel policies, host bookkeeping for every backend. */
int slimkv_policy_chooses_at_prefill(slimkv_policy policy); /* ThinK, SparK */
int slimkv_policy_spark_keep(const slimkv_config *cfg);     /* T, 0 unless SparK */
/* Channels and sizes of a new head: the masks' (static), else all. */
slimkv_status slimkv_policy_init_head(slimkv_cache *c, int index, const uint8_t *k_mask, const uint8_t *v_mask);
void slimkv_policy_free_head(slimkv_head *h);
/* Sizes of a head's K group and V block, once its channels are known
 * (with K outliers: their count, the default storage order and offset). */
void slimkv_policy_group_bytes(const slimkv_cache *c, slimkv_head *h);
/* The kept K channels in storage order (k_store, else k_chan). */
static inline const int32_t *slimkv_k_stored_channels(const slimkv_head *h)
{
    return h->k_store ? h->k_store : h->k_chan;
}
/* K outliers: the head's k_out outliers become the kept channels of widest
 * range[channel] (ties: the lower channel), k_store their storage order. */
void slimkv_policy_choose_outliers(slimkv_head *h, const float *range);
/* The config that creates a cache with c's channels before any choice is
 * made: c's own, with masks of its kept channels for static masks. Free
 * *masks (NULL when none) after the create. */
slimkv_status slimkv_policy_config_like(const slimkv_cache *c, slimkv_config *cfg, uint8_t **masks);
/* ThinK/SparK's choice from the first prefill's queries q [n][n_q_heads][D]
 * and keys k [n][n_kv_heads][D], on the host; cannot fail. */
void slimkv_policy_choose(slimkv_cache *c, const float *q, const float *k, int n_tokens);
/* Back to before the choice: every K channel, no norms, choice pending. */
void slimkv_policy_reset(slimkv_cache *c);
/* dst's channels, SparK norms and pending state become src's (dst made
 * like src: same config and arrays); cannot fail. */
void slimkv_policy_copy_choice(slimkv_cache *dst, const slimkv_cache *src);
/* SparK: qnorm_rsqrt from a head's qnorm. */
void slimkv_policy_set_qnorm(slimkv_head *h, int dim);
/* Host bytes of policy state (SparK's norms) counted by slimkv_cache_bytes. */
size_t slimkv_policy_state_bytes(const slimkv_cache *c);

/* storage.c: the CPU backend's storage. */
slimkv_status slimkv_storage_create(slimkv_cache *c);
void slimkv_storage_destroy(slimkv_cache *c);
/* All or nothing; advances c->n_tokens. */
slimkv_status slimkv_storage_append(slimkv_cache *c, const float *k, const float *v, int n_tokens);
/* Grows the page tables for body_k / body_v body tokens, all or nothing. */
slimkv_status slimkv_storage_reserve(slimkv_cache *c, int body_k, int body_v);
size_t slimkv_storage_bytes(const slimkv_cache *c);
/* Keeps the first n tokens (n <= c->n_tokens; storage.c has the rules).
 * All or nothing: SLIMKV_ERR_NOMEM (a shared page to copy) or
 * SLIMKV_ERR_STATE (a streaming head no longer holds a row it would need)
 * leave the cache as it was. */
slimkv_status slimkv_storage_truncate(slimkv_cache *c, int n_tokens);
uint8_t *slimkv_k_group_ptr(const slimkv_head *h, int group);
uint8_t *slimkv_v_block_ptr(const slimkv_head *h, int block);
uint8_t *slimkv_ring_row(const slimkv_cache *c, uint8_t *ring, slimkv_format row_fmt, int pos);

/* storage_share.c: compressed pages with a reference count, shared by a
 * cache and its forks. A page is written only while one cache holds it. */
uint8_t *slimkv_page_alloc(size_t bytes); /* zeroed, held once; NULL when out of memory */
void slimkv_page_retain(uint8_t *page);
void slimkv_page_release(uint8_t *page);  /* NULL: nothing; the last holder frees it */
int slimkv_page_shared(const uint8_t *page);
/* dst (made like src, with src's channels) gets src's tokens: its rows
 * copied, its full pages shared, its partially filled pages copied. On
 * failure dst holds part of them and is only fit for destroy. */
slimkv_status slimkv_storage_fork(const slimkv_cache *src, slimkv_cache *dst);
/* slimkv_storage_bytes split into pages other caches also hold (shared) and the rest. */
void slimkv_storage_bytes_shared(const slimkv_cache *c, size_t *owned, size_t *shared);

/* cache.c */
/* An empty cache with the same config, channels, kernels and backend as target. */
slimkv_status slimkv_cache_create_like(const slimkv_cache *target, slimkv_cache **out);

/* rotation.c: the Walsh-Hadamard rotation of config.rotate. */
slimkv_status slimkv_rotation_init(slimkv_cache *c); /* the signs; nothing without rotate */
/* A rotated copy of rows x [n][heads][head_dim] (heads: n_q_heads or
 * n_kv_heads), to free with slimkv_free; NULL when out of memory. */
float *slimkv_rotated_copy(const slimkv_cache *c, const float *x, int n, int heads);
/* Attention outputs [n][n_q_heads][head_dim] back to the caller's basis, in place. */
void slimkv_rotate_output_back(const slimkv_cache *c, float *out, int n);

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

/* io_snapshot.c: the CPU backend's snapshots (format in slimkv.h). */
slimkv_status slimkv_snapshot_save(const slimkv_cache *c, const char *path);
slimkv_status slimkv_snapshot_restore(slimkv_cache *c, const char *path);
/* io_snapshot_check.c: 1 when a restored cache holds what attention may
 * read (finite rows, values, scales and mins; SparK masks of exactly T
 * bits inside D, a_t >= 0; counts within capacity). */
int slimkv_snapshot_state_valid(const slimkv_cache *c);

/* evict.c: token eviction (SnapKV, H2O) on the CPU backend's storage.
 * Without eviction in the config every call is the plain one. */
typedef struct slimkv_evict_state slimkv_evict_state;
/* The eviction state of a new cache (nothing for a config without eviction). */
slimkv_status slimkv_evict_create(slimkv_cache *c);
void slimkv_evict_destroy(slimkv_cache *c);
/* A fork's copy of src's positions, scores and tokens seen (dst's state is
 * new); NOMEM leaves dst's as it was. */
slimkv_status slimkv_evict_copy(slimkv_cache *dst, const slimkv_cache *src);
/* Truncation of an evicting cache keeps the first n held tokens; it is only
 * defined while the dropped ones are the newest positions on every head
 * (nothing among them was evicted, e.g. within H2O's recent window or
 * after a SnapKV prefill's window): else SLIMKV_ERR_STATE. */
slimkv_status slimkv_evict_truncate_check(const slimkv_cache *c, int n_tokens);
/* After the storage's truncation from n_old: the tokens seen roll back too. */
void slimkv_evict_truncate(slimkv_cache *c, int n_old, int n_tokens);
/* backend->append, and the held tokens' positions; all or nothing. */
slimkv_status slimkv_evict_append(slimkv_cache *c, const float *k, const float *v, int n_tokens);
/* The storing step of a prefill (after its attention and channel choice):
 * backend->append, or with eviction the chunk's and the held tokens'
 * scores, the choice of the kept tokens and the rebuild of the storage
 * holding only them. All or nothing. */
slimkv_status slimkv_evict_prefill_store(slimkv_cache *c, const float *q, const float *k, const float *v,
                                         int n_tokens);
/* Host bytes of the eviction state (positions, scores) for slimkv_cache_bytes. */
size_t slimkv_evict_state_bytes(const slimkv_cache *c);
/* Snapshots: the tracking arrays of one head (score NULL without H2O),
 * tokens seen, room for n tokens in a cache being restored (all or
 * nothing), and the checks of what a snapshot gave. */
void slimkv_evict_tracking(const slimkv_cache *c, int head, int32_t **pos, float **score);
int slimkv_evict_seen(const slimkv_cache *c);
slimkv_status slimkv_evict_prepare_restore(slimkv_cache *c, int n_tokens, int seen);
int slimkv_evict_state_valid(const slimkv_cache *c);

#endif /* SLIMKV_INTERNAL_H */
