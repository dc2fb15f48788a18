/* The contract between the core and a device plugin (libslimkv_cuda.so).
 *
 * The core keeps the bookkeeping of every cache (configuration, kept
 * channels, ThinK's choice, token counts, what is body and what is window,
 * argument checks); the plugin keeps the bytes in device memory and runs
 * the kernels on them. So the plugin never decides *what* to store, only
 * *how* on its device, with the same layouts as simd/kernels.h.
 *
 * The core dlopens the plugin and calls slimkv_plugin_entry(SLIMKV_PLUGIN_ABI);
 * a plugin built for another ABI returns NULL and is not used. Bump
 * SLIMKV_PLUGIN_ABI whenever anything in this file changes.
 *
 * Calls on one device cache are not concurrent (the core's rules for a cache
 * apply). Every call returns a slimkv_status; SLIMKV_ERR_DEVICE means the
 * device runtime reported an error. */
#ifndef SLIMKV_PLUGIN_ABI_H
#define SLIMKV_PLUGIN_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "slimkv.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SLIMKV_PLUGIN_ABI 2
#define SLIMKV_PLUGIN_ENTRY "slimkv_plugin_entry"

/* Everything a plugin needs to size and address a cache's storage. Row
 * formats (sinks, residual window) are F32 or F16; pages hold page_groups
 * K groups / V blocks each, as on the CPU. */
typedef struct slimkv_dev_layout {
    int n_q_heads, n_kv_heads, head_dim, capacity;
    int group_size, residual, n_sink;
    slimkv_format k_format, v_format;     /* body formats */
    slimkv_format k_row_format, v_row_format;
    int ring_slots;                       /* residual window slots per head */
    int sink_rows;
    int page_groups;
    int device_pointers;                  /* q/k/v/out are device pointers */
} slimkv_dev_layout;

/* One KV head: kept channels (host arrays, copied by the plugin) and the
 * bytes of one K group / V block. dk == 0: a streaming head (no body). */
typedef struct slimkv_dev_head {
    int dk, dv;
    const int32_t *k_chan, *v_chan;
    size_t k_group_bytes, v_block_bytes;
} slimkv_dev_head;

/* One append of tokens [n0, n1): rows k/v [n1 - n0][n_kv_heads][head_dim].
 * The body grows from k_body0 / v_body0 to k_body1 / v_body1 tokens
 * (after the sinks); the core computed these with the CPU's formulas. */
typedef struct slimkv_dev_append {
    const float *k, *v;
    int n0, n1;
    int k_body0, k_body1, v_body0, v_body1;
} slimkv_dev_append;

/* Causal attention of n_queries queries q [n_queries][n_q_heads][head_dim]
 * at positions qpos0 + i over the n_tokens stored tokens (k_body / v_body
 * of them in the body) plus n_chunk full-precision rows chunk_k / chunk_v
 * at positions n_tokens.. (prefill; NULL and 0 for decode). */
typedef struct slimkv_dev_attend {
    const float *q;
    int n_queries, qpos0;
    int n_tokens, k_body, v_body;
    const float *chunk_k, *chunk_v;
    int n_chunk;
    float *out;
} slimkv_dev_attend;

typedef struct slimkv_plugin_api {
    uint32_t abi;                 /* SLIMKV_PLUGIN_ABI */
    const char *name;             /* "cuda" */
    /* Usable devices (0 when the driver or a device is missing). */
    int (*device_count)(void);
    slimkv_status (*create)(const slimkv_dev_layout *layout, const slimkv_dev_head *heads, void **dev);
    void (*destroy)(void *dev);
    /* New kept channels (ThinK's choice); only while no body is stored. */
    slimkv_status (*set_heads)(void *dev, const slimkv_dev_head *heads);
    /* *ok = 1 when all n values at x (device memory) are finite and, with
     * f16_range, within +-65504. */
    slimkv_status (*check_values)(void *dev, const float *x, size_t n, int f16_range, int *ok);
    /* Copies n floats of device memory to the host. */
    slimkv_status (*copy_to_host)(void *dev, const float *src, size_t n, float *dst);
    /* All or nothing: on any error but SLIMKV_ERR_DEVICE the storage is as before. */
    slimkv_status (*append)(void *dev, const slimkv_dev_append *a);
    slimkv_status (*attend)(void *dev, const slimkv_dev_attend *a);
    /* Device bytes of K/V storage held now (sinks, windows, pages). */
    size_t (*bytes)(const void *dev);
    /* Device memory for the caller's own buffers (slimkv_cuda_alloc and the
     * rest of slimkv.h's device-memory calls, which check the arguments). */
    slimkv_status (*buffer_alloc)(size_t bytes, void **ptr);
    void (*buffer_free)(void *ptr);
    slimkv_status (*buffer_copy)(void *dst, const void *src, size_t bytes, int to_device);
    slimkv_status (*read_bandwidth)(size_t bytes, int reps, double *gbps);
} slimkv_plugin_api;

typedef const slimkv_plugin_api *(*slimkv_plugin_entry_fn)(uint32_t core_abi);

#ifdef __cplusplus
}
#endif

#endif /* SLIMKV_PLUGIN_ABI_H */
