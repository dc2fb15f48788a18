/* The cache object: lifetime and the order of every public call's steps.
 * Argument checks live here; the bytes live in the cache's backend
 * (backend.h), which channels are kept in the policy (policy.c), config
 * defaults and validation in config.c. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"

void slimkv_cache_destroy(slimkv_cache *c)
{
    if (!c)
        return;
    slimkv_evict_destroy(c);
    if (c->heads) {
        if (c->backend)
            c->backend->destroy(c);
        for (int h = 0; h < c->cfg.n_kv_heads; h++)
            slimkv_policy_free_head(&c->heads[h]);
    }
    slimkv_free(c->heads);
    slimkv_free(c->rotation_signs);
    slimkv_free(c);
}

/* A validated config, its kernels and backend: the cache, empty. */
static slimkv_status create_with(const slimkv_config *config, const slimkv_kernels *kern,
                                 const slimkv_backend_ops *backend, slimkv_cache **out)
{
    slimkv_cache *c = slimkv_calloc(1, sizeof *c);
    if (!c)
        return SLIMKV_ERR_NOMEM;
    c->cfg = *config;
    c->cfg.k_mask = NULL;
    c->cfg.v_mask = NULL;
    c->cfg.isa = NULL;
    c->kern = kern;
    c->q_per_kv = config->n_q_heads / config->n_kv_heads;
    /* The window never holds more than the capacity: a huge R or S costs
     * nothing beyond what the tokens can fill. */
    int g = config->group_size, capacity_groups = (config->capacity + g - 1) / g * g;
    c->ring_slots = config->residual + g < capacity_groups ? config->residual + g : capacity_groups;
    c->sink_rows = config->n_sink < config->capacity ? config->n_sink : config->capacity;
    c->k_row_fmt = slimkv_row_format(config->k_format);
    c->v_row_fmt = slimkv_row_format(config->v_format);
    c->max_pages = slimkv_pages_for_tokens(config, config->capacity) + 1;
    c->channels_pending = slimkv_policy_chooses_at_prefill(config->policy);
    c->spark_keep = slimkv_policy_spark_keep(config);
    c->heads = slimkv_calloc((size_t)config->n_kv_heads, sizeof *c->heads);
    slimkv_status st = c->heads ? slimkv_rotation_init(c) : SLIMKV_ERR_NOMEM;
    for (int h = 0; h < config->n_kv_heads && st == SLIMKV_OK; h++)
        st = slimkv_policy_init_head(c, h, config->k_mask, config->v_mask);
    if (st == SLIMKV_OK) {
        c->backend = backend; /* from here on destroy() asks it to free its part */
        st = backend->create(c);
    }
    if (st == SLIMKV_OK)
        st = slimkv_evict_create(c);
    if (st != SLIMKV_OK) {
        slimkv_cache_destroy(c);
        return st;
    }
    *out = c;
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_create(const slimkv_config *config, slimkv_cache **out)
{
    if (!config || !out)
        return SLIMKV_ERR_NULL_ARG;
    slimkv_status st = slimkv_config_validate(config);
    if (st != SLIMKV_OK)
        return st;
    const slimkv_backend_ops *backend;
    st = slimkv_backend_choose(config, &backend);
    if (st != SLIMKV_OK)
        return st;
    /* A CUDA cache still gets CPU kernels: the core's own host work uses them. */
    const slimkv_kernels *kern;
    st = slimkv_select_kernels(config->isa, &kern);
    return st != SLIMKV_OK ? st : create_with(config, kern, backend, out);
}

slimkv_status slimkv_cache_create_like(const slimkv_cache *target, slimkv_cache **out)
{
    slimkv_config cfg;
    uint8_t *masks;
    slimkv_status st = slimkv_policy_config_like(target, &cfg, &masks);
    if (st == SLIMKV_OK)
        st = create_with(&cfg, target->kern, target->backend, out);
    slimkv_free(masks);
    return st;
}

int slimkv_all_finite(const float *x, size_t n)
{
    /* One pass with no early exit: isfinite on every element vectorizes. */
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= isfinite(x[i]) != 0;
    return ok;
}

/* The caller's values are finite and, where the full-precision window is
 * f16, within its range: a value that would turn into Inf there is refused
 * like Inf itself. row_fmt F32 checks finiteness only. */
static slimkv_status check_values(const slimkv_cache *c, const float *x, size_t n, slimkv_format row_fmt)
{
    int ok;
    slimkv_status st = c->backend->check_values(c, x, n, row_fmt == SLIMKV_F16, &ok);
    if (st != SLIMKV_OK)
        return st;
    return ok ? SLIMKV_OK : SLIMKV_ERR_NONFINITE;
}

static slimkv_status check_append(const slimkv_cache *c, const float *k, const float *v, int n_tokens)
{
    if (!c || !k || !v)
        return SLIMKV_ERR_NULL_ARG;
    if (n_tokens < 1)
        return SLIMKV_ERR_INVALID_ARG;
    if (n_tokens > c->cfg.capacity - c->n_tokens)
        return SLIMKV_ERR_CAPACITY;
    size_t n = (size_t)n_tokens * c->cfg.n_kv_heads * c->cfg.head_dim;
    slimkv_status st = check_values(c, k, n, c->k_row_fmt);
    return st != SLIMKV_OK ? st : check_values(c, v, n, c->v_row_fmt);
}

static slimkv_status append_rows(slimkv_cache *c, const float *k, const float *v, int n_tokens)
{
    slimkv_status st = check_append(c, k, v, n_tokens);
    if (st == SLIMKV_OK && c->channels_pending)
        st = SLIMKV_ERR_STATE; /* ThinK/SparK choose channels from the first prefill's queries */
    return st != SLIMKV_OK ? st : slimkv_evict_append(c, k, v, n_tokens);
}

/* Rotated copies of a call's rows (config.rotate), checked for size before
 * they are read; *k_rot and *v_rot stay NULL when k or v is. */
static slimkv_status rotate_kv(const slimkv_cache *c, const float *k, const float *v, int n_tokens, float **k_rot,
                               float **v_rot)
{
    *k_rot = *v_rot = NULL;
    if (!k || !v || n_tokens < 1 || n_tokens > c->cfg.capacity - c->n_tokens)
        return SLIMKV_OK; /* the plain path reports these */
    if ((c->cfg.rotate & SLIMKV_ROTATE_K) && !(*k_rot = slimkv_rotated_copy(c, k, n_tokens, c->cfg.n_kv_heads)))
        return SLIMKV_ERR_NOMEM;
    if ((c->cfg.rotate & SLIMKV_ROTATE_V) && !(*v_rot = slimkv_rotated_copy(c, v, n_tokens, c->cfg.n_kv_heads))) {
        slimkv_free(*k_rot);
        *k_rot = NULL;
        return SLIMKV_ERR_NOMEM;
    }
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_append(slimkv_cache *c, const float *k, const float *v, int n_tokens)
{
    if (!c || !c->rotation_signs)
        return append_rows(c, k, v, n_tokens);
    float *k_rot, *v_rot;
    slimkv_status st = rotate_kv(c, k, v, n_tokens, &k_rot, &v_rot);
    if (st == SLIMKV_OK)
        st = append_rows(c, k_rot ? k_rot : k, v_rot ? v_rot : v, n_tokens);
    slimkv_free(k_rot);
    slimkv_free(v_rot);
    return st;
}

/* 1 when [a, a + a_floats) and [b, b + b_floats) share a byte. Compared as
 * integers: the buffers may belong to different objects. */
static int overlaps(const float *a, size_t a_floats, const float *b, size_t b_floats)
{
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a0 < b0 + b_floats * sizeof(float) && b0 < a0 + a_floats * sizeof(float);
}

/* out is written while q, k and v are still read (and ThinK/SparK read q
 * again after the attention): the output may share no byte with them. */
static slimkv_status check_prefill_buffers(const slimkv_cache *c, const float *q, const float *k, const float *v,
                                           int n_tokens, const float *out)
{
    size_t q_floats = (size_t)n_tokens * c->cfg.n_q_heads * c->cfg.head_dim;
    size_t kv_floats = (size_t)n_tokens * c->cfg.n_kv_heads * c->cfg.head_dim;
    if (overlaps(out, q_floats, q, q_floats) || overlaps(out, q_floats, k, kv_floats) ||
        overlaps(out, q_floats, v, kv_floats))
        return SLIMKV_ERR_INVALID_ARG;
    return SLIMKV_OK;
}

static slimkv_status prefill_rows(slimkv_cache *c, const float *q, const float *k, const float *v, int n_tokens,
                                  float *out)
{
    slimkv_status st = check_append(c, k, v, n_tokens);
    if (st != SLIMKV_OK)
        return st;
    if ((st = check_prefill_buffers(c, q, k, v, n_tokens, out)) != SLIMKV_OK)
        return st;
    size_t q_floats = (size_t)n_tokens * c->cfg.n_q_heads * c->cfg.head_dim;
    st = check_values(c, q, q_floats, SLIMKV_F32);
    if (st != SLIMKV_OK)
        return st;
    st = c->backend->attend(c, q, n_tokens, c->n_tokens, k, v, n_tokens, out);
    if (st != SLIMKV_OK)
        return st;
    int first_choice = c->channels_pending;
    if (first_choice && (st = c->backend->choose_channels(c, q, k, n_tokens)) != SLIMKV_OK)
        return st;
    st = slimkv_evict_prefill_store(c, q, k, v, n_tokens); /* the append, and token eviction */
    if (st != SLIMKV_OK && first_choice) {
        /* as before the call: the next prefill chooses again. Undoing fails
         * only when a device does, and then its error is the one to report. */
        slimkv_status undo = c->backend->reset_channels(c);
        st = undo != SLIMKV_OK ? undo : st;
    }
    return st;
}

slimkv_status slimkv_cache_prefill(slimkv_cache *c, const float *q, const float *k, const float *v,
                                   int n_tokens, float *out)
{
    if (!q || !out)
        return SLIMKV_ERR_NULL_ARG;
    if (!c || !c->rotation_signs)
        return prefill_rows(c, q, k, v, n_tokens, out);
    /* the caller's buffers, before the copies hide them */
    slimkv_status st = check_append(c, k, v, n_tokens);
    if (st == SLIMKV_OK)
        st = check_prefill_buffers(c, q, k, v, n_tokens, out);
    if (st != SLIMKV_OK)
        return st;
    float *k_rot, *v_rot, *q_rot = NULL;
    st = rotate_kv(c, k, v, n_tokens, &k_rot, &v_rot);
    if (st == SLIMKV_OK && (c->cfg.rotate & SLIMKV_ROTATE_K) &&
        !(q_rot = slimkv_rotated_copy(c, q, n_tokens, c->cfg.n_q_heads)))
        st = SLIMKV_ERR_NOMEM;
    if (st == SLIMKV_OK)
        st = prefill_rows(c, q_rot ? q_rot : q, k_rot ? k_rot : k, v_rot ? v_rot : v, n_tokens, out);
    if (st == SLIMKV_OK && (c->cfg.rotate & SLIMKV_ROTATE_V))
        slimkv_rotate_output_back(c, out, n_tokens);
    slimkv_free(q_rot);
    slimkv_free(k_rot);
    slimkv_free(v_rot);
    return st;
}

slimkv_status slimkv_attend(const slimkv_cache *c, const float *q, int n_queries, float *out)
{
    if (!c || !q || !out)
        return SLIMKV_ERR_NULL_ARG;
    if (n_queries < 1 || n_queries > c->n_tokens)
        return SLIMKV_ERR_INVALID_ARG;
    size_t q_floats = (size_t)n_queries * c->cfg.n_q_heads * c->cfg.head_dim;
    if (overlaps(out, q_floats, q, q_floats)) /* queries are read while outputs are written */
        return SLIMKV_ERR_INVALID_ARG;
    float *q_rot = NULL;
    if ((c->cfg.rotate & SLIMKV_ROTATE_K) && !(q_rot = slimkv_rotated_copy(c, q, n_queries, c->cfg.n_q_heads)))
        return SLIMKV_ERR_NOMEM;
    const float *query = q_rot ? q_rot : q;
    slimkv_status st = check_values(c, query, q_floats, SLIMKV_F32);
    if (st == SLIMKV_OK)
        st = c->backend->attend(c, query, n_queries, c->n_tokens - n_queries, NULL, NULL, 0, out);
    if (st == SLIMKV_OK && (c->cfg.rotate & SLIMKV_ROTATE_V))
        slimkv_rotate_output_back(c, out, n_queries);
    slimkv_free(q_rot);
    return st;
}

slimkv_status slimkv_cache_save(const slimkv_cache *c, const char *path)
{
    if (!c || !path)
        return SLIMKV_ERR_NULL_ARG;
    return c->backend->save(c, path);
}

slimkv_status slimkv_cache_restore(slimkv_cache *c, const char *path)
{
    if (!c || !path)
        return SLIMKV_ERR_NULL_ARG;
    return c->backend->restore(c, path);
}

slimkv_status slimkv_cache_truncate(slimkv_cache *c, int n_tokens)
{
    if (!c)
        return SLIMKV_ERR_NULL_ARG;
    if (n_tokens < 0 || n_tokens > c->n_tokens)
        return SLIMKV_ERR_INVALID_ARG;
    int n_old = c->n_tokens;
    slimkv_status st = slimkv_evict_truncate_check(c, n_tokens);
    if (st == SLIMKV_OK)
        st = c->backend->truncate(c, n_tokens);
    if (st == SLIMKV_OK)
        slimkv_evict_truncate(c, n_old, n_tokens);
    /* No token left that ThinK/SparK chose from: the next prefill chooses
     * again, as in a new cache. The reset cannot fail on a backend whose
     * truncate succeeded (the CPU's). */
    if (st == SLIMKV_OK && n_tokens == 0 && slimkv_policy_chooses_at_prefill(c->cfg.policy) && !c->channels_pending)
        st = c->backend->reset_channels(c);
    return st;
}

slimkv_status slimkv_cache_fork(const slimkv_cache *src, slimkv_cache **out)
{
    if (!src || !out)
        return SLIMKV_ERR_NULL_ARG;
    /* the same config, kernels and backend, then src's channels, then its tokens */
    slimkv_cache *dst;
    slimkv_status st = slimkv_cache_create_like(src, &dst);
    if (st != SLIMKV_OK)
        return st;
    slimkv_policy_copy_choice(dst, src);
    st = slimkv_evict_copy(dst, src);
    if (st == SLIMKV_OK)
        st = src->backend->fork(src, dst);
    if (st != SLIMKV_OK) {
        slimkv_cache_destroy(dst);
        return st;
    }
    *out = dst;
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_bytes(const slimkv_cache *c, size_t *bytes)
{
    if (!c || !bytes)
        return SLIMKV_ERR_NULL_ARG;
    *bytes = c->backend->bytes(c) + slimkv_policy_state_bytes(c) + slimkv_evict_state_bytes(c);
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_bytes_shared(const slimkv_cache *c, size_t *owned, size_t *shared)
{
    if (!c || !owned || !shared)
        return SLIMKV_ERR_NULL_ARG;
    size_t own, other;
    c->backend->bytes_shared(c, &own, &other);
    /* the policy's and the eviction's state are always the cache's own copies */
    *owned = own + slimkv_policy_state_bytes(c) + slimkv_evict_state_bytes(c);
    *shared = other;
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_tokens(const slimkv_cache *c, int *n_tokens)
{
    if (!c || !n_tokens)
        return SLIMKV_ERR_NULL_ARG;
    *n_tokens = c->n_tokens;
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_isa(const slimkv_cache *c, const char **name)
{
    if (!c || !name)
        return SLIMKV_ERR_NULL_ARG;
    *name = c->backend->isa_name(c);
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_backend(const slimkv_cache *c, slimkv_backend *backend)
{
    if (!c || !backend)
        return SLIMKV_ERR_NULL_ARG;
    *backend = c->backend->kind;
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_kept_channels(const slimkv_cache *c, int kv_head, int which, int *channels,
                                         int *count)
{
    if (!c || !count)
        return SLIMKV_ERR_NULL_ARG;
    if (kv_head < 0 || kv_head >= c->cfg.n_kv_heads || (which != 0 && which != 1))
        return SLIMKV_ERR_INVALID_ARG;
    const slimkv_head *h = &c->heads[kv_head];
    int n = which == 0 ? h->dk : h->dv;
    const int32_t *chan = which == 0 ? h->k_chan : h->v_chan;
    if (channels)
        for (int i = 0; i < n; i++)
            channels[i] = chan[i];
    *count = n;
    return SLIMKV_OK;
}
