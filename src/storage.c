/* CPU storage of a cache: the full-precision sink rows and residual window
 * of each head, and its compressed body in pages (simd/kernels.h layouts),
 * with append flushing tokens from the window to the body as they age and
 * truncate moving them back. Pages may be shared with forks
 * (storage_share.c). */
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

/* The part of slimkv_storage_bytes in pages other caches hold too (forks). */
void slimkv_storage_bytes_shared(const slimkv_cache *c, size_t *owned, size_t *shared)
{
    size_t total = slimkv_storage_bytes(c), in_shared = 0;
    for (int i = 0; i < c->cfg.n_kv_heads; i++) {
        const slimkv_head *h = &c->heads[i];
        for (int p = 0; p < h->n_k_pages; p++)
            in_shared += slimkv_page_shared(h->k_pages[p]) ? h->k_group_bytes * SLIMKV_PAGE_GROUPS : 0;
        for (int p = 0; p < h->n_v_pages; p++)
            in_shared += slimkv_page_shared(h->v_pages[p]) ? h->v_block_bytes * SLIMKV_PAGE_GROUPS : 0;
    }
    *shared = in_shared;
    *owned = total - in_shared;
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

/* Channels chan[0..n) of the G window rows of K body tokens t0.. into
 * scratch [G][n] (G*D + D floats: the last D hold one decoded row). */
static void gather_k_group(const slimkv_cache *c, const slimkv_head *h, int t0, const int32_t *chan, int n,
                           float *scratch)
{
    int g = c->cfg.group_size;
    float *row_f32 = scratch + (size_t)g * c->cfg.head_dim;
    for (int t = 0; t < g; t++) {
        const uint8_t *row = slimkv_ring_row(c, h->ring_k, c->k_row_fmt, c->cfg.n_sink + t0 + t);
        gather_row(c, c->k_row_fmt, row, chan, n, row_f32, scratch + (size_t)t * n);
    }
}

/* K outliers of head `index` at its first K group's flush, from the
 * window rows of body tokens 0 .. pos: all still in the ring (the first
 * flush comes at R + 1 body tokens, or G with R = 0) and the same whenever
 * that flush happens, so the choice is too. row_f32: D floats. */
static void choose_outliers(const slimkv_cache *c, int index, int pos, float *row_f32)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_head *h = &c->heads[index];
    int dim = cfg->head_dim;
    float lo[SLIMKV_MAX_HEAD_DIM], hi[SLIMKV_MAX_HEAD_DIM];
    for (int p = cfg->n_sink; p <= pos; p++) {
        const uint8_t *row = slimkv_ring_row(c, h->ring_k, c->k_row_fmt, p);
        if (c->k_row_fmt == SLIMKV_F32)
            memcpy(row_f32, row, (size_t)dim * sizeof(float));
        else
            c->kern->f16_to_f32((const uint16_t *)row, row_f32, (size_t)dim);
        for (int ch = 0; ch < dim; ch++) {
            float x = row_f32[ch];
            lo[ch] = p == cfg->n_sink || x < lo[ch] ? x : lo[ch];
            hi[ch] = p == cfg->n_sink || x > hi[ch] ? x : hi[ch];
        }
    }
    for (int ch = 0; ch < dim; ch++)
        hi[ch] -= lo[ch];
    slimkv_policy_choose_outliers(h, hi);
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
            if (t0 == 0 && h->k_out > 0)
                choose_outliers(c, index, pos, scratch + (size_t)g * dim);
            uint8_t *group = slimkv_k_group_ptr(h, t0 / g);
            if (slimkv_k_is_spark(c)) {
                gather_k_group(c, h, t0, h->k_chan, h->dk, scratch);
                c->kern->pack_spark[cfg->k_format](scratch, h->qnorm, h->dk, c->spark_keep, g, group);
                continue;
            }
            /* the K format's group over the other channels, then the outliers' q8 group */
            const int32_t *chan = slimkv_k_stored_channels(h);
            int others = h->dk - h->k_out;
            gather_k_group(c, h, t0, chan, others, scratch);
            c->kern->pack_k[cfg->k_format](scratch, others, g, group);
            if (h->k_out > 0) {
                gather_k_group(c, h, t0, chan + others, h->k_out, scratch);
                c->kern->pack_k[SLIMKV_Q8](scratch, h->k_out, g, group + h->k_out_offset);
            }
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
    /* Nothing can fail from here on. Heads are independent; a team is woken
     * only for enough work (a prompt chunk, not a decode step or a few
     * tokens): on a busy machine the end-of-region barrier waits for a
     * descheduled thread, which costs more than a small append. */
    size_t elements = (size_t)n_tokens * cfg->n_kv_heads * cfg->head_dim;
#pragma omp parallel for schedule(static) if (cfg->n_kv_heads > 1 && elements >= 65536)
    for (int h = 0; h < cfg->n_kv_heads; h++)
        append_head(c, h, k, v, c->n_tokens, n_tokens, scratch + (size_t)h * per_head);
    c->n_tokens = n1;
    slimkv_free(scratch);
    return SLIMKV_OK;
}

/* ---- truncation ----
 *
 * Keeping the first n tokens leaves what appending those n tokens would
 * have left: the same tokens in the sinks, the window and the body
 * (slimkv_k_body_tokens / slimkv_v_body_tokens of n), the same pages, and
 * zeros wherever nothing is written yet. A token that goes back from the
 * body to the window gets its row from the ring while the ring still holds
 * it (the newest ring_slots tokens before the call), else decoded from the
 * body. */

/* The oldest position whose row a streaming head (no body) still holds at n
 * tokens: ring_slots back at most, none that a truncation dropped, and the
 * sinks are always held. */
static int stream_rows_from(const slimkv_cache *c, int n)
{
    int from = n - c->ring_slots;
    from = from > c->stream_floor ? from : c->stream_floor;
    return from > c->cfg.n_sink ? from : c->cfg.n_sink;
}

static int has_streaming_head(const slimkv_cache *c)
{
    for (int i = 0; i < c->cfg.n_kv_heads; i++)
        if (c->heads[i].dk == 0)
            return 1;
    return 0;
}

/* A decoded row into the window, kept inside the f16 range where the
 * window is f16: a decoded value may round past 65504 (bf16, or a code
 * times an fp16 scale), and Inf must not enter a window. */
static void store_decoded_row(const slimkv_cache *c, slimkv_format row_fmt, float *row, uint8_t *dst)
{
    if (row_fmt == SLIMKV_F16)
        for (int i = 0; i < c->cfg.head_dim; i++)
            row[i] = row[i] > 65504.0f ? 65504.0f : row[i] < -65504.0f ? -65504.0f : row[i];
    store_row(c, row_fmt, row, dst);
}

/* The K and V rows of position p (in both bodies of head h) as the body
 * holds them: kept channels decoded, pruned ones 0, and for SparK every
 * pruned channel as its score restores it. */
static void decode_rows(const slimkv_cache *c, const slimkv_head *h, int p, uint8_t *k_row, uint8_t *v_row)
{
    const slimkv_config *cfg = &c->cfg;
    int g = cfg->group_size, dim = cfg->head_dim, rel = p - cfg->n_sink;
    float row[SLIMKV_MAX_HEAD_DIM], kept[SLIMKV_MAX_HEAD_DIM];
    const uint8_t *group = slimkv_k_group_ptr(h, rel / g);
    if (slimkv_k_is_spark(c)) {
        slimkv_unpack_spark_token(cfg->k_format, group, h->qnorm_rsqrt, dim, c->spark_keep, g, rel % g, row);
    } else {
        const int32_t *chan = slimkv_k_stored_channels(h);
        int others = h->dk - h->k_out;
        memset(row, 0, (size_t)dim * sizeof *row);
        slimkv_unpack_k_token(cfg->k_format, group, others, g, rel % g, kept);
        if (h->k_out > 0)
            slimkv_unpack_k_token(SLIMKV_Q8, group + h->k_out_offset, h->k_out, g, rel % g, kept + others);
        for (int j = 0; j < h->dk; j++)
            row[chan[j]] = kept[j];
    }
    store_decoded_row(c, c->k_row_fmt, row, k_row);
    memset(row, 0, (size_t)dim * sizeof *row);
    if (h->dv > 0) { /* dv == 0: V fully pruned in the body */
        slimkv_unpack_v_token(cfg->v_format, slimkv_v_block_ptr(h, rel / g), h->dv, g, rel % g, kept);
        for (int j = 0; j < h->dv; j++)
            row[h->v_chan[j]] = kept[j];
    }
    store_decoded_row(c, c->v_row_fmt, row, v_row);
}

/* Every ring slot of head h as appending the first n tokens leaves it: the
 * row of the newest position below n that maps to the slot, zero where no
 * position does. Rows the ring still holds stay. A head with a body gets
 * older ones decoded from it (the ring held each position until ring_slots
 * newer ones came, and every such position is in both bodies); a streaming
 * head has them no more, and they are zeroed (the caller checked that it
 * needs none of them). */
static void rebuild_window(const slimkv_cache *c, const slimkv_head *h, int n_old, int n)
{
    int s = c->cfg.n_sink, ring = c->ring_slots, last = n - 1 - s;
    int held_from = h->dk > 0 ? n_old - ring : stream_rows_from(c, n_old);
    size_t krow = row_bytes(c, c->k_row_fmt), vrow = row_bytes(c, c->v_row_fmt);
    for (int slot = 0; slot < ring; slot++) {
        /* the newest rel <= last with rel % ring == slot; negative: none */
        int rel = last < 0 ? -1 : last - ((last - slot) % ring + ring) % ring;
        uint8_t *k_row = h->ring_k + (size_t)slot * krow, *v_row = h->ring_v + (size_t)slot * vrow;
        if (rel >= 0 && s + rel >= held_from)
            continue;
        if (rel >= 0 && h->dk > 0) {
            decode_rows(c, h, s + rel, k_row, v_row);
        } else {
            memset(k_row, 0, krow);
            memset(v_row, 0, vrow);
        }
    }
}

/* The page holding the end of a body shrunk from old_body to body tokens,
 * when written data follows that end inside it; else -1. */
static int tail_page(int body, int old_body, int page_tokens)
{
    return body < old_body && body % page_tokens != 0 ? body / page_tokens : -1;
}

static int tail_is_shared(uint8_t *const *table, int n_pages, int tail)
{
    return tail >= 0 && tail < n_pages && slimkv_page_shared(table[tail]);
}

/* Page `index` of a table, this cache's own: a shared page is replaced by
 * `copy` (allocated beforehand, NULL when the page is not shared). */
static uint8_t *own_page(uint8_t **table, int index, uint8_t *copy, size_t page_bytes)
{
    if (copy) {
        memcpy(copy, table[index], page_bytes);
        slimkv_page_release(table[index]);
        table[index] = copy;
    }
    return table[index];
}

static void release_pages_from(uint8_t **table, int *n_pages, int keep)
{
    while (*n_pages > keep) {
        --*n_pages;
        slimkv_page_release(table[*n_pages]);
        table[*n_pages] = NULL;
    }
}

slimkv_status slimkv_storage_truncate(slimkv_cache *c, int n)
{
    const slimkv_config *cfg = &c->cfg;
    int n_old = c->n_tokens, g = cfg->group_size, page_tokens = g * SLIMKV_PAGE_GROUPS;
    if (n == n_old)
        return SLIMKV_OK;
    /* A streaming head sees the sinks and the last R tokens, and holds no
     * older row: it cannot give back one that aged out of its ring or that
     * an earlier truncation dropped. */
    int stream_start = cfg->n_sink + slimkv_v_body_tokens(cfg, n);
    if (stream_start < n && stream_start < stream_rows_from(c, n_old) && has_streaming_head(c))
        return SLIMKV_ERR_STATE;
    int kb_old = slimkv_k_body_tokens(cfg, n_old), kb = slimkv_k_body_tokens(cfg, n);
    int vb_old = slimkv_v_body_tokens(cfg, n_old), vb = slimkv_v_body_tokens(cfg, n);
    int k_tail = tail_page(kb, kb_old, page_tokens), v_tail = tail_page(vb, vb_old, page_tokens);
    int heads = cfg->n_kv_heads;

    /* Allocate first: a copy of every shared page whose tail must be
     * cleared ([2i] K, [2i+1] V of head i). Unshared caches allocate nothing. */
    int shared_tails = 0;
    for (int i = 0; i < heads; i++) {
        const slimkv_head *h = &c->heads[i];
        shared_tails += tail_is_shared(h->k_pages, h->n_k_pages, k_tail);
        shared_tails += tail_is_shared(h->v_pages, h->n_v_pages, v_tail);
    }
    uint8_t **copies = NULL;
    if (shared_tails > 0) {
        if (!(copies = slimkv_calloc((size_t)heads * 2, sizeof *copies)))
            return SLIMKV_ERR_NOMEM;
        for (int i = 0; i < heads; i++) {
            const slimkv_head *h = &c->heads[i];
            if ((tail_is_shared(h->k_pages, h->n_k_pages, k_tail) &&
                 !(copies[2 * i] = slimkv_page_alloc(h->k_group_bytes * SLIMKV_PAGE_GROUPS))) ||
                (tail_is_shared(h->v_pages, h->n_v_pages, v_tail) &&
                 !(copies[2 * i + 1] = slimkv_page_alloc(h->v_block_bytes * SLIMKV_PAGE_GROUPS)))) {
                for (int j = 0; j < 2 * heads; j++)
                    slimkv_page_release(copies[j]);
                slimkv_free(copies);
                return SLIMKV_ERR_NOMEM;
            }
        }
    }

    /* Nothing can fail from here on. Each head's window is rebuilt from
     * its pages before they are cleared or released. */
    size_t krow = row_bytes(c, c->k_row_fmt), vrow = row_bytes(c, c->v_row_fmt);
    for (int i = 0; i < heads; i++) {
        slimkv_head *h = &c->heads[i];
        rebuild_window(c, h, n_old, n);
        if (k_tail >= 0 && k_tail < h->n_k_pages) {
            size_t bytes = h->k_group_bytes;
            uint8_t *copy = copies ? copies[2 * i] : NULL;
            uint8_t *page = own_page(h->k_pages, k_tail, copy, bytes * SLIMKV_PAGE_GROUPS);
            int first = kb / g % SLIMKV_PAGE_GROUPS;
            memset(page + (size_t)first * bytes, 0, (size_t)(SLIMKV_PAGE_GROUPS - first) * bytes);
        }
        if (v_tail >= 0 && v_tail < h->n_v_pages) {
            size_t bytes = h->v_block_bytes;
            uint8_t *copy = copies ? copies[2 * i + 1] : NULL;
            uint8_t *page = own_page(h->v_pages, v_tail, copy, bytes * SLIMKV_PAGE_GROUPS);
            int block = vb / g % SLIMKV_PAGE_GROUPS;
            /* the partly kept block: its slots past the new end read as never written again */
            slimkv_clear_v_slots(cfg->v_format, page + (size_t)block * bytes, h->dv, g, vb % g);
            memset(page + (size_t)(block + 1) * bytes, 0, (size_t)(SLIMKV_PAGE_GROUPS - block - 1) * bytes);
        }
        if (kb == 0 && h->k_store) /* the next first flush chooses the outliers afresh */
            slimkv_policy_group_bytes(c, h);
        release_pages_from(h->k_pages, &h->n_k_pages, slimkv_pages_for_tokens(cfg, kb));
        release_pages_from(h->v_pages, &h->n_v_pages, slimkv_pages_for_tokens(cfg, vb));
        if (n < c->sink_rows) {
            memset(h->sink_k + (size_t)n * krow, 0, (size_t)(c->sink_rows - n) * krow);
            memset(h->sink_v + (size_t)n * vrow, 0, (size_t)(c->sink_rows - n) * vrow);
        }
    }
    /* what the streaming heads lost stays lost, up to n: positions from n
     * on are appended afresh */
    int lost_below = stream_rows_from(c, n_old);
    c->stream_floor = lost_below < n ? lost_below : n;
    c->n_tokens = n;
    slimkv_free(copies);
    return SLIMKV_OK;
}
