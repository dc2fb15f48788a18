/* CPU storage of a cache: the full-precision sink rows and residual window
 * of each head, and its compressed body in pages (simd/kernels.h layouts),
 * with append flushing tokens from the window to the body as they age.
 * Pages may be shared with forks (storage_share.c). */
#include <string.h>

#include "internal.h"

uint8_t *slimkv_k_group_ptr(const slimkv_head *h, int group)
{
    return h->k_pages[group / SLIMKV_PAGE_GROUPS] + (size_t)(group % SLIMKV_PAGE_GROUPS) * h->k_group_bytes;
}

uint8_t *slimkv_v_block_ptr(const slimkv_head *h, int block)
{
    return h->v_pages[block / SLIMKV_PAGE_GROUPS] + (size_t)(block % SLIMKV_PAGE_GROUPS) * h->v_block_bytes;
}

uint8_t *slimkv_ring_row(const slimkv_cache *c, uint8_t *ring, slimkv_format row_fmt, int pos)
{
    size_t slot = (size_t)((pos - c->cfg.n_sink) % c->ring_slots);
    return ring + slot * (size_t)c->cfg.head_dim * slimkv_row_elem_bytes(row_fmt);
}

static size_t row_bytes(const slimkv_cache *c, slimkv_format row_fmt)
{
    return (size_t)c->cfg.head_dim * slimkv_row_elem_bytes(row_fmt);
}

slimkv_status slimkv_storage_create(slimkv_cache *c)
{
    size_t krow = row_bytes(c, c->k_row_fmt), vrow = row_bytes(c, c->v_row_fmt);
    for (int i = 0; i < c->cfg.n_kv_heads; i++) {
        slimkv_head *h = &c->heads[i];
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
    return SLIMKV_OK;
}

void slimkv_storage_destroy(slimkv_cache *c)
{
    for (int i = 0; i < c->cfg.n_kv_heads; i++) {
        slimkv_head *h = &c->heads[i];
        slimkv_free(h->sink_k);
        slimkv_free(h->sink_v);
        slimkv_free(h->ring_k);
        slimkv_free(h->ring_v);
        if (h->k_pages)
            for (int p = 0; p < h->n_k_pages; p++)
                slimkv_page_release(h->k_pages[p]);
        if (h->v_pages)
            for (int p = 0; p < h->n_v_pages; p++)
                slimkv_page_release(h->v_pages[p]);
        slimkv_free(h->k_pages);
        slimkv_free(h->v_pages);
    }
}

size_t slimkv_storage_bytes(const slimkv_cache *c)
{
    size_t rows = (size_t)(c->sink_rows + c->ring_slots) * (row_bytes(c, c->k_row_fmt) + row_bytes(c, c->v_row_fmt));
    size_t total = 0;
    for (int i = 0; i < c->cfg.n_kv_heads; i++) {
        const slimkv_head *h = &c->heads[i];
        total += rows;
        total += (size_t)h->n_k_pages * SLIMKV_PAGE_GROUPS * h->k_group_bytes;
        total += (size_t)h->n_v_pages * SLIMKV_PAGE_GROUPS * h->v_block_bytes;
    }
    return total;
}

/* Grows each head's page tables so that body_k / body_v tokens fit.
 * All-or-nothing: on failure every page allocated here is freed again. */
slimkv_status slimkv_storage_reserve(slimkv_cache *c, int body_k, int body_v)
{
    const slimkv_config *cfg = &c->cfg;
    int need_k = slimkv_pages_for_tokens(cfg, body_k), need_v = slimkv_pages_for_tokens(cfg, body_v);
    int h;
    for (h = 0; h < cfg->n_kv_heads; h++) {
        slimkv_head *hd = &c->heads[h];
        if (hd->dk == 0)
            continue;
        size_t kbytes = hd->k_group_bytes * SLIMKV_PAGE_GROUPS, vbytes = hd->v_block_bytes * SLIMKV_PAGE_GROUPS;
        /* zeroed pages (slimkv_page_alloc): padding is deterministic and V
         * slots not yet written read as code 0, scale 0, min 0 */
        while (hd->n_k_pages < need_k) {
            if (!(hd->k_pages[hd->n_k_pages] = slimkv_page_alloc(kbytes)))
                goto fail;
            hd->n_k_pages++;
        }
        while (vbytes && hd->n_v_pages < need_v) {
            if (!(hd->v_pages[hd->n_v_pages] = slimkv_page_alloc(vbytes)))
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
            slimkv_page_release(hd->k_pages[--hd->n_k_pages]), hd->k_pages[hd->n_k_pages] = NULL;
        while (hd->n_v_pages > had_v)
            slimkv_page_release(hd->v_pages[--hd->n_v_pages]), hd->v_pages[hd->n_v_pages] = NULL;
    }
    return SLIMKV_ERR_NOMEM;
}

/* Gathers the kept channels of a stored row into float: dst[j] = row[chan[j]]. */
static void gather_row(const slimkv_cache *c, slimkv_format row_fmt, const uint8_t *row, const int32_t *chan,
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
static void append_head(const slimkv_cache *c, int index, const float *k, const float *v, int n0, int count,
                        float *scratch)
{
    const slimkv_config *cfg = &c->cfg;
    const slimkv_head *h = &c->heads[index];
    int dim = cfg->head_dim, g = cfg->group_size;
    size_t in_stride = (size_t)cfg->n_kv_heads * dim;
    size_t krow = row_bytes(c, c->k_row_fmt), vrow = row_bytes(c, c->v_row_fmt);
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
                gather_row(c, c->k_row_fmt, row, h->k_chan, h->dk, row_f32, scratch + (size_t)t * h->dk);
            }
            uint8_t *group = slimkv_k_group_ptr(h, t0 / g);
            if (slimkv_k_is_spark(c))
                c->kern->pack_spark[cfg->k_format](scratch, h->qnorm, h->dk, c->spark_keep, g, group);
            else
                c->kern->pack_k[cfg->k_format](scratch, h->dk, g, group);
        }
        int v_before = slimkv_v_body_tokens(cfg, pos), v_after = slimkv_v_body_tokens(cfg, pos + 1);
        for (int t = v_before; t < v_after && h->dv > 0; t++) {
            const uint8_t *row = slimkv_ring_row(c, h->ring_v, c->v_row_fmt, cfg->n_sink + t);
            gather_row(c, c->v_row_fmt, row, h->v_chan, h->dv, row_f32, scratch);
            c->kern->pack_v[cfg->v_format](scratch, h->dv, g, slimkv_v_block_ptr(h, t / g), t % g);
        }
    }
}

slimkv_status slimkv_storage_append(slimkv_cache *c, const float *k, const float *v, int n_tokens)
{
    const slimkv_config *cfg = &c->cfg;
    int n1 = c->n_tokens + n_tokens;
    size_t per_head = (size_t)(cfg->group_size + 1) * cfg->head_dim;
    float *scratch = slimkv_malloc((size_t)cfg->n_kv_heads * per_head * sizeof(float));
    if (!scratch)
        return SLIMKV_ERR_NOMEM;
    slimkv_status st = slimkv_storage_reserve(c, slimkv_k_body_tokens(cfg, n1), slimkv_v_body_tokens(cfg, n1));
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
