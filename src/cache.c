/* The cache object: lifetime, storage, append with residual flush (config
 * defaults and validation are in config.c). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Kept channels of one head: the mask's ones, plus the lowest-index pruned
 * channels until the count reaches a multiple of the alignment (or D).
 * A mask that keeps nothing stays empty when allow_empty (streaming head). */
static int kept_channels(const uint8_t *mask, int dim, int align, int32_t *chan)
{
    int count = 0;
    for (int c = 0; c < dim; c++)
        count += mask[c];
    if (count == 0)
        return 0;
    int target = (count + align - 1) / align * align;
    target = target < dim ? target : dim;
    int extra = target - count, n = 0;
    for (int c = 0; c < dim; c++) {
        if (mask[c]) {
            chan[n++] = c;
        } else if (extra > 0) {
            chan[n++] = c;
            extra--;
        }
    }
    return n;
}

static void free_head(slimkv_head *h)
{
    slimkv_free(h->qnorm);
    slimkv_free(h->qnorm_rsqrt);
    slimkv_free(h->k_chan);
    slimkv_free(h->v_chan);
    slimkv_free(h->sink_k);
    slimkv_free(h->sink_v);
    slimkv_free(h->ring_k);
    slimkv_free(h->ring_v);
    if (h->k_pages)
        for (int p = 0; p < h->n_k_pages; p++)
            slimkv_free(h->k_pages[p]);
    if (h->v_pages)
        for (int p = 0; p < h->n_v_pages; p++)
            slimkv_free(h->v_pages[p]);
    slimkv_free(h->k_pages);
    slimkv_free(h->v_pages);
}

void slimkv_cache_destroy(slimkv_cache *c)
{
    if (!c)
        return;
    if (c->dev)
        c->dev_api->destroy(c->dev);
    if (c->heads)
        for (int h = 0; h < c->cfg.n_kv_heads; h++)
            free_head(&c->heads[h]);
    slimkv_free(c->heads);
    slimkv_free(c);
}

/* Sizes of one K group and V block of a head, once its channels are known. */
void slimkv_head_set_group_bytes(const slimkv_cache *c, slimkv_head *h)
{
    const slimkv_config *cfg = &c->cfg;
    if (cfg->policy == SLIMKV_POLICY_SPARK)
        h->k_group_bytes = slimkv_spark_group_bytes(cfg->k_format, cfg->head_dim, c->spark_keep, cfg->group_size);
    else
        h->k_group_bytes = slimkv_k_group_bytes(cfg->k_format, h->dk, cfg->group_size);
    h->v_block_bytes = slimkv_v_block_bytes(cfg->v_format, h->dv, cfg->group_size);
}

static slimkv_status init_head(slimkv_cache *c, int index, const uint8_t *k_mask, const uint8_t *v_mask)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_head *h = &c->heads[index];
    int dim = cfg->head_dim;
    size_t krow = (size_t)dim * slimkv_row_elem_bytes(c->k_row_fmt);
    size_t vrow = (size_t)dim * slimkv_row_elem_bytes(c->v_row_fmt);
    h->k_chan = slimkv_malloc((size_t)dim * sizeof *h->k_chan);
    h->v_chan = slimkv_malloc((size_t)dim * sizeof *h->v_chan);
    if (!h->k_chan || !h->v_chan)
        return SLIMKV_ERR_NOMEM;
    if (!c->dev_api) { /* a CUDA cache keeps its storage on the device */
        h->k_pages = slimkv_calloc((size_t)c->max_pages, sizeof *h->k_pages);
        h->v_pages = slimkv_calloc((size_t)c->max_pages, sizeof *h->v_pages);
        /* zeroed: a snapshot then saves only bytes that were written */
        h->ring_k = slimkv_calloc((size_t)c->ring_slots, krow);
        h->ring_v = slimkv_calloc((size_t)c->ring_slots, vrow);
        if (c->sink_rows > 0) {
            h->sink_k = slimkv_calloc((size_t)c->sink_rows, krow);
            h->sink_v = slimkv_calloc((size_t)c->sink_rows, vrow);
        }
        if (!h->k_pages || !h->v_pages || !h->ring_k || !h->ring_v ||
            (c->sink_rows > 0 && (!h->sink_k || !h->sink_v)))
            return SLIMKV_ERR_NOMEM;
    }
    if (k_mask) {
        h->dk = kept_channels(k_mask + (size_t)index * dim, dim, cfg->channel_align, h->k_chan);
    } else {
        h->dk = dim;
        for (int i = 0; i < dim; i++)
            h->k_chan[i] = i;
    }
    if (v_mask) {
        h->dv = kept_channels(v_mask + (size_t)index * dim, dim, cfg->channel_align, h->v_chan);
    } else {
        h->dv = dim;
        for (int i = 0; i < dim; i++)
            h->v_chan[i] = i;
    }
    if (h->dk == 0) /* streaming head: no compressed body at all */
        h->dv = 0;
    if (cfg->policy == SLIMKV_POLICY_SPARK) {
        h->qnorm = slimkv_calloc((size_t)dim, sizeof *h->qnorm);
        h->qnorm_rsqrt = slimkv_calloc((size_t)dim, sizeof *h->qnorm_rsqrt);
        if (!h->qnorm || !h->qnorm_rsqrt)
            return SLIMKV_ERR_NOMEM;
    }
    slimkv_head_set_group_bytes(c, h);
    return SLIMKV_OK;
}

/* The device's view of a cache's heads (channel arrays stay host memory:
 * the plugin copies them). */
static slimkv_status device_heads(const slimkv_cache *c, slimkv_dev_head **out)
{
    slimkv_dev_head *heads = slimkv_calloc((size_t)c->cfg.n_kv_heads, sizeof *heads);
    if (!heads)
        return SLIMKV_ERR_NOMEM;
    for (int i = 0; i < c->cfg.n_kv_heads; i++) {
        const slimkv_head *h = &c->heads[i];
        heads[i].dk = h->dk;
        heads[i].dv = h->dv;
        heads[i].k_chan = h->k_chan;
        heads[i].v_chan = h->v_chan;
        heads[i].k_group_bytes = h->k_group_bytes;
        heads[i].v_block_bytes = h->v_block_bytes;
    }
    *out = heads;
    return SLIMKV_OK;
}

/* The device cache of a CUDA cache whose host bookkeeping is complete. */
static slimkv_status create_device(slimkv_cache *c)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_dev_layout layout = {
        .n_q_heads = cfg->n_q_heads, .n_kv_heads = cfg->n_kv_heads, .head_dim = cfg->head_dim,
        .capacity = cfg->capacity, .group_size = cfg->group_size, .residual = cfg->residual,
        .n_sink = cfg->n_sink, .k_format = cfg->k_format, .v_format = cfg->v_format,
        .k_row_format = c->k_row_fmt, .v_row_format = c->v_row_fmt, .ring_slots = c->ring_slots,
        .sink_rows = c->sink_rows, .page_groups = SLIMKV_PAGE_GROUPS, .device_pointers = cfg->device_pointers};
    slimkv_dev_head *heads;
    slimkv_status st = device_heads(c, &heads);
    if (st != SLIMKV_OK)
        return st;
    st = c->dev_api->create(&layout, heads, &c->dev);
    slimkv_free(heads);
    return st;
}

/* Tells the device the heads' channels changed (ThinK's choice). */
static slimkv_status update_device_heads(slimkv_cache *c)
{
    slimkv_dev_head *heads;
    slimkv_status st = device_heads(c, &heads);
    if (st != SLIMKV_OK)
        return st;
    st = c->dev_api->set_heads(c->dev, heads);
    slimkv_free(heads);
    return st;
}

/* A validated config, its kernels and backend: the cache, empty. */
static slimkv_status create_with(const slimkv_config *config, const slimkv_kernels *kern,
                                 const slimkv_plugin_api *dev_api, slimkv_cache **out)
{
    slimkv_status st;
    slimkv_cache *c = slimkv_calloc(1, sizeof *c);
    if (!c)
        return SLIMKV_ERR_NOMEM;
    c->cfg = *config;
    c->cfg.k_mask = NULL;
    c->cfg.v_mask = NULL;
    c->cfg.isa = NULL;
    c->kern = kern;
    c->dev_api = dev_api;
    c->q_per_kv = config->n_q_heads / config->n_kv_heads;
    /* The window never holds more than the capacity: a huge R or S costs
     * nothing beyond what the tokens can fill. */
    int g = config->group_size, capacity_groups = (config->capacity + g - 1) / g * g;
    c->ring_slots = config->residual + g < capacity_groups ? config->residual + g : capacity_groups;
    c->sink_rows = config->n_sink < config->capacity ? config->n_sink : config->capacity;
    c->k_row_fmt = slimkv_row_format(config->k_format);
    c->v_row_fmt = slimkv_row_format(config->v_format);
    c->max_pages = slimkv_pages_for_tokens(config, config->capacity) + 1;
    c->channels_pending = config->policy == SLIMKV_POLICY_THINK || config->policy == SLIMKV_POLICY_SPARK;
    c->spark_keep = config->policy == SLIMKV_POLICY_SPARK ? slimkv_spark_keep(config) : 0;
    c->heads = slimkv_calloc((size_t)config->n_kv_heads, sizeof *c->heads);
    if (!c->heads) {
        slimkv_cache_destroy(c);
        return SLIMKV_ERR_NOMEM;
    }
    const uint8_t *k_mask = config->policy == SLIMKV_POLICY_STATIC ? config->k_mask : NULL;
    const uint8_t *v_mask = config->policy == SLIMKV_POLICY_STATIC ? config->v_mask : NULL;
    for (int h = 0; h < config->n_kv_heads; h++) {
        st = init_head(c, h, k_mask, v_mask);
        if (st != SLIMKV_OK) {
            slimkv_cache_destroy(c);
            return st;
        }
    }
    if (dev_api && (st = create_device(c)) != SLIMKV_OK) {
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
    const slimkv_plugin_api *dev_api;
    st = slimkv_backend_choose(config, &dev_api);
    if (st != SLIMKV_OK)
        return st;
    /* A CUDA cache still gets CPU kernels: the core's own host work uses them. */
    const slimkv_kernels *kern;
    st = slimkv_select_kernels(config->isa, &kern);
    return st != SLIMKV_OK ? st : create_with(config, kern, dev_api, out);
}

/* 0/1 masks of a head's kept channels: the config a static cache came from
 * (kept counts are already aligned, so they come back unchanged). */
static void masks_from_heads(const slimkv_cache *c, int which, uint8_t *mask)
{
    int dim = c->cfg.head_dim;
    for (int h = 0; h < c->cfg.n_kv_heads; h++) {
        const slimkv_head *hd = &c->heads[h];
        int n = which == 0 ? hd->dk : hd->dv;
        const int32_t *chan = which == 0 ? hd->k_chan : hd->v_chan;
        for (int i = 0; i < n; i++)
            mask[(size_t)h * dim + chan[i]] = 1;
    }
}

slimkv_status slimkv_cache_create_like(const slimkv_cache *target, slimkv_cache **out)
{
    slimkv_config cfg = target->cfg;
    uint8_t *masks = NULL;
    if (cfg.policy == SLIMKV_POLICY_STATIC) {
        size_t n = (size_t)cfg.n_kv_heads * cfg.head_dim;
        if (!(masks = slimkv_calloc(2, n)))
            return SLIMKV_ERR_NOMEM;
        masks_from_heads(target, 0, masks);
        masks_from_heads(target, 1, masks + n);
        cfg.k_mask = masks;
        cfg.v_mask = masks + n;
    }
    slimkv_status st = create_with(&cfg, target->kern, target->dev_api, out);
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

/* Finite, and within f16 range where the full-precision window is f16:
 * a value that would turn into Inf there is refused like Inf itself. */
static int representable(const float *x, size_t n, slimkv_format row_fmt)
{
    if (row_fmt != SLIMKV_F16)
        return slimkv_all_finite(x, n);
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= fabsf(x[i]) <= 65504.0f; /* false for NaN too */
    return ok;
}

/* Grows each head's page tables so that body_k / body_v tokens fit.
 * All-or-nothing: on failure every page allocated here is freed again. */
slimkv_status slimkv_cache_reserve(slimkv_cache *c, int body_k, int body_v)
{
    const slimkv_config *cfg = &c->cfg;
    int need_k = slimkv_pages_for_tokens(cfg, body_k), need_v = slimkv_pages_for_tokens(cfg, body_v);
    int h;
    for (h = 0; h < cfg->n_kv_heads; h++) {
        slimkv_head *hd = &c->heads[h];
        if (hd->dk == 0)
            continue;
        size_t kbytes = hd->k_group_bytes * SLIMKV_PAGE_GROUPS, vbytes = hd->v_block_bytes * SLIMKV_PAGE_GROUPS;
        while (hd->n_k_pages < need_k) {
            /* zeroed: padding bytes are then deterministic */
            if (!(hd->k_pages[hd->n_k_pages] = slimkv_calloc(1, kbytes)))
                goto fail;
            hd->n_k_pages++;
        }
        while (vbytes && hd->n_v_pages < need_v) {
            /* zeroed: V slots not yet written must read as code 0, scale 0, min 0 */
            if (!(hd->v_pages[hd->n_v_pages] = slimkv_calloc(1, vbytes)))
                goto fail;
            hd->n_v_pages++;
        }
    }
    return SLIMKV_OK;
fail:;
    int had_k = slimkv_pages_for_tokens(cfg, slimkv_k_body_tokens(cfg, c->n_tokens));
    int had_v = slimkv_pages_for_tokens(cfg, slimkv_v_body_tokens(cfg, c->n_tokens));
    for (int j = 0; j <= h && j < cfg->n_kv_heads; j++) {
        slimkv_head *hd = &c->heads[j];
        while (hd->n_k_pages > had_k)
            slimkv_free(hd->k_pages[--hd->n_k_pages]), hd->k_pages[hd->n_k_pages] = NULL;
        while (hd->n_v_pages > had_v)
            slimkv_free(hd->v_pages[--hd->n_v_pages]), hd->v_pages[hd->n_v_pages] = NULL;
    }
    return SLIMKV_ERR_NOMEM;
}

/* Gathers the kept channels of stored rows into float: dst[t*n_chan + j]. */
static void gather_rows(const slimkv_cache *c, slimkv_format row_fmt, const uint8_t *row, const int32_t *chan,
                        int n_chan, float *row_f32, float *dst)
{
    int dim = c->cfg.head_dim;
    if (row_fmt == SLIMKV_F32)
        memcpy(row_f32, row, (size_t)dim * sizeof(float));
    else
        c->kern->f16_to_f32((const uint16_t *)row, row_f32, (size_t)dim);
    for (int j = 0; j < n_chan; j++)
        dst[j] = row_f32[chan[j]];
}

static void store_row(const slimkv_cache *c, slimkv_format row_fmt, const float *src, uint8_t *dst)
{
    if (row_fmt == SLIMKV_F32)
        memcpy(dst, src, (size_t)c->cfg.head_dim * sizeof(float));
    else
        c->kern->f32_to_f16(src, (uint16_t *)dst, (size_t)c->cfg.head_dim);
}

/* Appends tokens [n0, n0 + count) of one head, flushing from the window to
 * the compressed body as tokens age out. scratch: G*D + D floats. */
static void append_head(slimkv_cache *c, int index, const float *k, const float *v, int n0, int count,
                        float *scratch)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_head *h = &c->heads[index];
    int dim = cfg->head_dim, g = cfg->group_size;
    size_t in_stride = (size_t)cfg->n_kv_heads * dim;
    size_t krow = (size_t)dim * slimkv_row_elem_bytes(c->k_row_fmt);
    size_t vrow = (size_t)dim * slimkv_row_elem_bytes(c->v_row_fmt);
    float *row_f32 = scratch + (size_t)g * dim;
    for (int i = 0; i < count; i++) {
        int pos = n0 + i;
        const float *ki = k + (size_t)i * in_stride + (size_t)index * dim;
        const float *vi = v + (size_t)i * in_stride + (size_t)index * dim;
        if (pos < cfg->n_sink) {
            store_row(c, c->k_row_fmt, ki, h->sink_k + (size_t)pos * krow);
            store_row(c, c->v_row_fmt, vi, h->sink_v + (size_t)pos * vrow);
            continue;
        }
        store_row(c, c->k_row_fmt, ki, slimkv_ring_row(c, h->ring_k, c->k_row_fmt, pos));
        store_row(c, c->v_row_fmt, vi, slimkv_ring_row(c, h->ring_v, c->v_row_fmt, pos));
        if (h->dk == 0)
            continue; /* streaming head: the window just slides */
        int k_before = slimkv_k_body_tokens(cfg, pos), k_after = slimkv_k_body_tokens(cfg, pos + 1);
        for (int t0 = k_before; t0 < k_after; t0 += g) {
            for (int t = 0; t < g; t++) {
                const uint8_t *row = slimkv_ring_row(c, h->ring_k, c->k_row_fmt, cfg->n_sink + t0 + t);
                gather_rows(c, c->k_row_fmt, row, h->k_chan, h->dk, row_f32, scratch + (size_t)t * h->dk);
            }
            uint8_t *group = slimkv_k_group_ptr(h, t0 / g);
            if (cfg->policy == SLIMKV_POLICY_SPARK)
                c->kern->pack_spark[cfg->k_format](scratch, h->qnorm, h->dk, c->spark_keep, g, group);
            else
                c->kern->pack_k[cfg->k_format](scratch, h->dk, g, group);
        }
        int v_before = slimkv_v_body_tokens(cfg, pos), v_after = slimkv_v_body_tokens(cfg, pos + 1);
        for (int t = v_before; t < v_after && h->dv > 0; t++) {
            const uint8_t *row = slimkv_ring_row(c, h->ring_v, c->v_row_fmt, cfg->n_sink + t);
            gather_rows(c, c->v_row_fmt, row, h->v_chan, h->dv, row_f32, scratch);
            c->kern->pack_v[cfg->v_format](scratch, h->dv, g, slimkv_v_block_ptr(h, t / g), t % g);
        }
    }
}

/* representable() for the caller's values, wherever they are: device
 * pointers are checked on the device. row_fmt F32 checks finiteness only. */
static slimkv_status check_values(const slimkv_cache *c, const float *x, size_t n, slimkv_format row_fmt)
{
    int ok;
    if (c->dev && c->cfg.device_pointers) {
        slimkv_status st = c->dev_api->check_values(c->dev, x, n, row_fmt == SLIMKV_F16, &ok);
        if (st != SLIMKV_OK)
            return st;
    } else {
        ok = representable(x, n, row_fmt);
    }
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

/* The device's append: the core says which tokens become body. */
static slimkv_status append_on_device(slimkv_cache *c, const float *k, const float *v, int n_tokens)
{
    const slimkv_config *cfg = &c->cfg;
    int n0 = c->n_tokens, n1 = n0 + n_tokens;
    slimkv_dev_append a = {.k = k, .v = v, .n0 = n0, .n1 = n1,
                           .k_body0 = slimkv_k_body_tokens(cfg, n0), .k_body1 = slimkv_k_body_tokens(cfg, n1),
                           .v_body0 = slimkv_v_body_tokens(cfg, n0), .v_body1 = slimkv_v_body_tokens(cfg, n1)};
    slimkv_status st = c->dev_api->append(c->dev, &a);
    if (st == SLIMKV_OK)
        c->n_tokens = n1;
    return st;
}

/* The device's attention over the stored tokens (+ a prefill chunk). */
static slimkv_status attend_on_device(const slimkv_cache *c, const float *q, int n_queries, int qpos0,
                                      const float *chunk_k, const float *chunk_v, int n_chunk, float *out)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_dev_attend a = {.q = q, .n_queries = n_queries, .qpos0 = qpos0, .n_tokens = c->n_tokens,
                           .k_body = slimkv_k_body_tokens(cfg, c->n_tokens),
                           .v_body = slimkv_v_body_tokens(cfg, c->n_tokens),
                           .chunk_k = chunk_k, .chunk_v = chunk_v, .n_chunk = n_chunk, .out = out};
    return c->dev_api->attend(c->dev, &a);
}

static slimkv_status append_checked(slimkv_cache *c, const float *k, const float *v, int n_tokens)
{
    if (c->dev)
        return append_on_device(c, k, v, n_tokens);
    const slimkv_config *cfg = &c->cfg;
    int n1 = c->n_tokens + n_tokens;
    size_t per_head = (size_t)(cfg->group_size + 1) * cfg->head_dim;
    float *scratch = slimkv_malloc((size_t)cfg->n_kv_heads * per_head * sizeof(float));
    if (!scratch)
        return SLIMKV_ERR_NOMEM;
    slimkv_status st = slimkv_cache_reserve(c, slimkv_k_body_tokens(cfg, n1), slimkv_v_body_tokens(cfg, n1));
    if (st != SLIMKV_OK) {
        slimkv_free(scratch);
        return st;
    }
    /* Nothing can fail from here on. Heads are independent. */
#pragma omp parallel for schedule(static) if (n_tokens > 8)
    for (int h = 0; h < cfg->n_kv_heads; h++)
        append_head(c, h, k, v, c->n_tokens, n_tokens, scratch + (size_t)h * per_head);
    c->n_tokens = n1;
    slimkv_free(scratch);
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_append(slimkv_cache *c, const float *k, const float *v, int n_tokens)
{
    slimkv_status st = check_append(c, k, v, n_tokens);
    if (st == SLIMKV_OK && c->channels_pending)
        st = SLIMKV_ERR_STATE; /* ThinK/SparK choose channels from the first prefill's queries */
    return st != SLIMKV_OK ? st : append_checked(c, k, v, n_tokens);
}

/* ThinK / SparK before the first prefill: every K channel, no norms yet. */
static void reset_channels(slimkv_cache *c)
{
    const slimkv_config *cfg = &c->cfg;
    for (int i = 0; i < cfg->n_kv_heads; i++) {
        slimkv_head *h = &c->heads[i];
        h->dk = cfg->head_dim;
        for (int ch = 0; ch < cfg->head_dim; ch++)
            h->k_chan[ch] = ch;
        if (h->qnorm) {
            memset(h->qnorm, 0, (size_t)cfg->head_dim * sizeof *h->qnorm);
            memset(h->qnorm_rsqrt, 0, (size_t)cfg->head_dim * sizeof *h->qnorm_rsqrt);
        }
        slimkv_head_set_group_bytes(c, h);
    }
    c->channels_pending = 1;
}

/* ThinK / SparK: channel choices from the first prefill chunk. Cannot fail. */
static void choose_channels(slimkv_cache *c, const float *q, const float *k, int n_tokens)
{
    const slimkv_config *cfg = &c->cfg;
    for (int i = 0; i < cfg->n_kv_heads; i++) {
        slimkv_head *h = &c->heads[i];
        if (cfg->policy == SLIMKV_POLICY_THINK) {
            h->dk = slimkv_think_select(cfg, q, k, n_tokens, i, h->k_chan);
        } else {
            slimkv_spark_qnorm(cfg, q, n_tokens, i, h->qnorm);
            for (int ch = 0; ch < cfg->head_dim; ch++)
                h->qnorm_rsqrt[ch] = 1.0f / sqrtf(h->qnorm[ch]);
        }
        slimkv_head_set_group_bytes(c, h);
    }
    c->channels_pending = 0;
}

/* choose_channels() for a CUDA cache: the choice is made on the host
 * (from a copy of device q/k), then the device learns the new channels.
 * On failure the cache is as before. */
static slimkv_status choose_channels_on_device(slimkv_cache *c, const float *q, const float *k, int n_tokens)
{
    const slimkv_config *cfg = &c->cfg;
    float *host = NULL;
    if (cfg->device_pointers) {
        size_t nq = (size_t)n_tokens * cfg->n_q_heads * cfg->head_dim;
        size_t nk = (size_t)n_tokens * cfg->n_kv_heads * cfg->head_dim;
        if (!(host = slimkv_malloc((nq + nk) * sizeof *host)))
            return SLIMKV_ERR_NOMEM;
        slimkv_status st = c->dev_api->copy_to_host(c->dev, q, nq, host);
        if (st == SLIMKV_OK)
            st = c->dev_api->copy_to_host(c->dev, k, nk, host + nq);
        if (st != SLIMKV_OK) {
            slimkv_free(host);
            return st;
        }
        q = host;
        k = host + nq;
    }
    choose_channels(c, q, k, n_tokens);
    slimkv_free(host);
    slimkv_status st = update_device_heads(c);
    if (st != SLIMKV_OK) {
        reset_channels(c);
        update_device_heads(c);
    }
    return st;
}

/* 1 when [a, a + a_floats) and [b, b + b_floats) share a byte. Compared as
 * integers: the buffers may belong to different objects. */
static int overlaps(const float *a, size_t a_floats, const float *b, size_t b_floats)
{
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a0 < b0 + b_floats * sizeof(float) && b0 < a0 + a_floats * sizeof(float);
}

slimkv_status slimkv_cache_prefill(slimkv_cache *c, const float *q, const float *k, const float *v,
                                   int n_tokens, float *out)
{
    if (!q || !out)
        return SLIMKV_ERR_NULL_ARG;
    slimkv_status st = check_append(c, k, v, n_tokens);
    if (st != SLIMKV_OK)
        return st;
    /* out is written while q, k and v are still read (and ThinK/SparK read
     * q again after the attention): the output may share no byte with them */
    size_t q_floats = (size_t)n_tokens * c->cfg.n_q_heads * c->cfg.head_dim;
    size_t kv_floats = (size_t)n_tokens * c->cfg.n_kv_heads * c->cfg.head_dim;
    if (overlaps(out, q_floats, q, q_floats) || overlaps(out, q_floats, k, kv_floats) ||
        overlaps(out, q_floats, v, kv_floats))
        return SLIMKV_ERR_INVALID_ARG;
    st = check_values(c, q, (size_t)n_tokens * c->cfg.n_q_heads * c->cfg.head_dim, SLIMKV_F32);
    if (st != SLIMKV_OK)
        return st;
    if (c->dev)
        st = attend_on_device(c, q, n_tokens, c->n_tokens, k, v, n_tokens, out);
    else
        st = slimkv_attention_run(c, q, n_tokens, c->n_tokens, k, v, n_tokens, out);
    if (st != SLIMKV_OK)
        return st;
    int first_choice = c->channels_pending;
    if (first_choice && c->dev) {
        st = choose_channels_on_device(c, q, k, n_tokens);
        if (st != SLIMKV_OK)
            return st;
    } else if (first_choice) {
        choose_channels(c, q, k, n_tokens);
    }
    st = append_checked(c, k, v, n_tokens);
    if (st != SLIMKV_OK && first_choice) {
        reset_channels(c); /* as before the call: the next prefill chooses again */
        if (c->dev)
            update_device_heads(c); /* no allocation: fails only if the device does, and then says so */
    }
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
    slimkv_status st = check_values(c, q, (size_t)n_queries * c->cfg.n_q_heads * c->cfg.head_dim, SLIMKV_F32);
    if (st != SLIMKV_OK)
        return st;
    if (c->dev)
        return attend_on_device(c, q, n_queries, c->n_tokens - n_queries, NULL, NULL, 0, out);
    return slimkv_attention_run(c, q, n_queries, c->n_tokens - n_queries, NULL, NULL, 0, out);
}

slimkv_status slimkv_cache_bytes(const slimkv_cache *c, size_t *bytes)
{
    if (!c || !bytes)
        return SLIMKV_ERR_NULL_ARG;
    if (c->dev) {
        *bytes = c->dev_api->bytes(c->dev);
        return SLIMKV_OK;
    }
    const slimkv_config *cfg = &c->cfg;
    size_t dim = (size_t)cfg->head_dim, total = 0;
    size_t row_k = dim * slimkv_row_elem_bytes(c->k_row_fmt), row_v = dim * slimkv_row_elem_bytes(c->v_row_fmt);
    for (int h = 0; h < cfg->n_kv_heads; h++) {
        const slimkv_head *hd = &c->heads[h];
        total += (size_t)(c->sink_rows + c->ring_slots) * (row_k + row_v);
        total += (size_t)hd->n_k_pages * SLIMKV_PAGE_GROUPS * hd->k_group_bytes;
        total += (size_t)hd->n_v_pages * SLIMKV_PAGE_GROUPS * hd->v_block_bytes;
        if (hd->qnorm)
            total += (size_t)cfg->head_dim * sizeof(float);
    }
    *bytes = total;
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
    *name = c->dev ? c->dev_api->name : c->kern->name;
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_backend(const slimkv_cache *c, slimkv_backend *backend)
{
    if (!c || !backend)
        return SLIMKV_ERR_NULL_ARG;
    *backend = c->dev ? SLIMKV_BACKEND_CUDA : SLIMKV_BACKEND_CPU;
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
