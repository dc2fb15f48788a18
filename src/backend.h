/* The backend contract: where a cache's bytes live and where its attention
 * runs. cache.c orchestrates every public call (argument checks, state,
 * order of steps) and reaches storage only through these operations, so a
 * new backend is one file with one table (backend_cpu.c, backend_cuda.c).
 *
 * The core keeps each cache's bookkeeping on the host for every backend:
 * configuration, kept channels and their sizes (policy.c), token count.
 * A backend keeps the stored tokens and computes on them. */
#ifndef SLIMKV_BACKEND_H
#define SLIMKV_BACKEND_H

#include "internal.h"

struct slimkv_backend_ops {
    slimkv_backend kind; /* what slimkv_cache_backend reports */
    /* Storage for a cache whose heads' bookkeeping is complete; on failure
     * destroy() still runs on the half-built cache. */
    slimkv_status (*create)(slimkv_cache *c);
    /* Frees what create() and append() allocated; the cache may be half built. */
    void (*destroy)(slimkv_cache *c);
    /* *ok = 1 when n caller values at x are finite and, with f16_range,
     * within +-65504 (wherever the caller's pointers point). */
    slimkv_status (*check_values)(const slimkv_cache *c, const float *x, size_t n, int f16_range, int *ok);
    /* Stores tokens c->n_tokens .. + n_tokens - 1 and advances c->n_tokens.
     * All or nothing: on failure the stored tokens are as before. */
    slimkv_status (*append)(slimkv_cache *c, const float *k, const float *v, int n_tokens);
    /* slimkv_attention_run's contract (internal.h) on this backend's storage. */
    slimkv_status (*attend)(const slimkv_cache *c, const float *q, int n_queries, int qpos0,
                            const float *chunk_k, const float *chunk_v, int n_chunk, float *out);
    /* ThinK/SparK's choice from the first prefill (slimkv_policy_choose),
     * made where the backend's q/k can be read, and told to its storage.
     * On failure the channels are as before. */
    slimkv_status (*choose_channels)(slimkv_cache *c, const float *q, const float *k, int n_tokens);
    /* Back to "nothing chosen" (slimkv_policy_reset) after a failed first
     * prefill; only fails when the device does. */
    slimkv_status (*reset_channels)(slimkv_cache *c);
    /* Keeps the first n_tokens (0 <= n_tokens <= c->n_tokens, checked),
     * sets c->n_tokens; see slimkv_cache_truncate in slimkv.h. All or
     * nothing. A backend without it says SLIMKV_ERR_UNSUPPORTED. */
    slimkv_status (*truncate)(slimkv_cache *c, int n_tokens);
    /* Gives dst, a new cache made like src (slimkv_cache_create_like) whose
     * channels were then copied from src (slimkv_policy_copy_choice), src's
     * tokens: see slimkv_cache_fork. On failure dst is destroyed by the
     * caller. A backend without it says SLIMKV_ERR_UNSUPPORTED. */
    slimkv_status (*fork)(const slimkv_cache *src, slimkv_cache *dst);
    /* Bytes held now: see slimkv_cache_bytes in slimkv.h. */
    size_t (*bytes)(const slimkv_cache *c);
    /* bytes() split: *shared the part other caches (forks) also hold. */
    void (*bytes_shared)(const slimkv_cache *c, size_t *owned, size_t *shared);
    /* Snapshots (io_snapshot.c's format); a backend without them says
     * SLIMKV_ERR_UNSUPPORTED. */
    slimkv_status (*save)(const slimkv_cache *c, const char *path);
    slimkv_status (*restore)(slimkv_cache *c, const char *path);
    /* What slimkv_cache_isa reports: the kernel table or the device. */
    const char *(*isa_name)(const slimkv_cache *c);
};

/* backend_cpu.c */
extern const slimkv_backend_ops slimkv_backend_cpu_ops;

/* backend_cuda.c: the CUDA backend when it can serve cfg (plugin loaded, a
 * device, the policy supported there), else NULL. */
const slimkv_backend_ops *slimkv_backend_cuda_for(const slimkv_config *cfg);

/* backend_choose.c: the backend a new cache gets (config's choice, SLIMKV_BACKEND
 * for "auto"). SLIMKV_ERR_UNSUPPORTED when the wanted one cannot serve it. */
slimkv_status slimkv_backend_choose(const slimkv_config *cfg, const slimkv_backend_ops **ops);

#endif /* SLIMKV_BACKEND_H */
