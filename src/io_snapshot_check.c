/* What a restored cache must satisfy before it is used. A snapshot's
 * checksum proves only that the file is intact, not that its author was
 * honest: every invariant that the kernels rely on (and that append
 * guarantees for data it stored itself) is checked here, on exactly the
 * bytes attention will read. */
#include <math.h>
#include <string.h>

#include "internal.h"

static uint16_t load_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* One stored element of a dense format, finite. */
static int elem_finite(slimkv_format fmt, const uint8_t *p)
{
    if (fmt == SLIMKV_F32) {
        float f;
        memcpy(&f, p, sizeof f);
        return isfinite(f);
    }
    uint16_t h = load_u16(p);
    return fmt == SLIMKV_F16 ? (h & 0x7c00u) != 0x7c00u : (h & 0x7f80u) != 0x7f80u;
}

static int elems_finite(slimkv_format fmt, const uint8_t *p, size_t n)
{
    size_t size = fmt == SLIMKV_F32 ? 4 : 2;
    for (size_t i = 0; i < n; i++)
        if (!elem_finite(fmt, p + i * size))
            return 0;
    return 1;
}

/* A KIVI scale or min (fp16): finite; scales also >= 0. */
static int param_ok(const uint8_t *p, int is_scale)
{
    float x = slimkv_half_to_float(load_u16(p));
    return isfinite(x) && (!is_scale || x >= 0.0f);
}

static int params_ok(const uint8_t *scales, const uint8_t *mins, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!param_ok(scales + 2 * i, 1) || !param_ok(mins + 2 * i, 0))
            return 0;
    return 1;
}

static int rows_finite(const slimkv_cache *c, const uint8_t *rows, slimkv_format fmt, int first, int end,
                       int is_ring)
{
    size_t row = (size_t)c->cfg.head_dim * slimkv_row_elem_bytes(fmt);
    for (int p = first; p < end; p++) {
        const uint8_t *r = is_ring ? slimkv_ring_row(c, (uint8_t *)rows, fmt, p) : rows + (size_t)p * row;
        if (!elems_finite(fmt, r, (size_t)c->cfg.head_dim))
            return 0;
    }
    return 1;
}

static int popcount_bytes(const uint8_t *p, size_t n)
{
    int count = 0;
    for (size_t i = 0; i < n; i++)
        count += __builtin_popcount(p[i]);
    return count;
}

/* SparK records: T mask bits, none past D, a_t >= 0 finite, values or
 * their parameters finite. */
static int spark_group_ok(const slimkv_cache *c, const uint8_t *group)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_spark_geometry geo = slimkv_spark_geometry_of(cfg->k_format, cfg->head_dim, c->spark_keep, cfg->group_size);
    int tail_bits = cfg->head_dim % 8;
    uint8_t tail_mask = tail_bits ? (uint8_t)(0xffu << tail_bits) : 0;
    for (int t = 0; t < cfg->group_size; t++) {
        const uint8_t *rec = group + (size_t)t * geo.record;
        const uint8_t *mask = rec, *sign = rec + geo.bits;
        if (popcount_bytes(mask, geo.bits) != c->spark_keep ||
            (tail_mask && ((mask[geo.bits - 1] | sign[geo.bits - 1]) & tail_mask)))
            return 0;
        float a;
        memcpy(&a, rec + 2 * geo.bits, sizeof a);
        if (!(a >= 0.0f) || !isfinite(a))
            return 0;
        const uint8_t *params = rec + 2 * geo.bits + 4;
        if (slimkv_is_quantized(cfg->k_format) ? !params_ok(params, params + 2 * (size_t)geo.nvg, (size_t)geo.nvg)
                                               : !elems_finite(cfg->k_format, rec + geo.values, (size_t)geo.t_keep))
            return 0;
    }
    return 1;
}

static int k_group_ok(const slimkv_cache *c, const slimkv_head *h, const uint8_t *group)
{
    const slimkv_config *cfg = &c->cfg;
    if (slimkv_k_is_spark(c))
        return spark_group_ok(c, group);
    if (!slimkv_is_quantized(cfg->k_format))
        return elems_finite(cfg->k_format, group, (size_t)h->dk * cfg->group_size);
    int others = h->dk - h->k_out, g = cfg->group_size;
    const uint8_t *scales = group + slimkv_k_params_offset(cfg->k_format, others, g);
    if (!params_ok(scales, scales + 2 * (size_t)others, (size_t)others))
        return 0;
    const uint8_t *outliers = group + h->k_out_offset + slimkv_k_params_offset(SLIMKV_Q8, h->k_out, g);
    return params_ok(outliers, outliers + 2 * (size_t)h->k_out, (size_t)h->k_out);
}

/* K outliers' storage order: a permutation of the kept channels, the
 * others ascending, then the outliers ascending. */
static int k_store_ok(const slimkv_head *h, int dim)
{
    uint8_t seen[SLIMKV_MAX_HEAD_DIM] = {0};
    int others = h->dk - h->k_out;
    for (int j = 0; j < h->dk; j++) {
        int ch = h->k_store[j];
        if (ch < 0 || ch >= dim || (j != others && j > 0 && ch <= h->k_store[j - 1]))
            return 0;
        seen[ch] = 1;
    }
    for (int j = 0; j < h->dk; j++)
        if (!seen[h->k_chan[j]])
            return 0;
    return 1;
}

/* The first `slots` token slots of a V block. */
static int v_block_ok(const slimkv_cache *c, const slimkv_head *h, const uint8_t *block, int slots)
{
    const slimkv_config *cfg = &c->cfg;
    int g = cfg->group_size;
    if (!slimkv_is_quantized(cfg->v_format))
        return elems_finite(cfg->v_format, block, (size_t)slots * h->dv);
    size_t nvg = (size_t)(h->dv + g - 1) / g;
    const uint8_t *scales = block + slimkv_v_params_offset(cfg->v_format, h->dv, g);
    return params_ok(scales, scales + 2 * (size_t)g * nvg, (size_t)slots * nvg);
}

int slimkv_snapshot_state_valid(const slimkv_cache *c)
{
    const slimkv_config *cfg = &c->cfg;
    int n = c->n_tokens, g = cfg->group_size, s = cfg->n_sink;
    if (n < 0 || n > cfg->capacity)
        return 0;
    int sinks = n < c->sink_rows ? n : c->sink_rows;
    int k_body = slimkv_k_body_tokens(cfg, n), v_body = slimkv_v_body_tokens(cfg, n);
    int k_groups = k_body / g, v_blocks = (v_body + g - 1) / g;
    for (int i = 0; i < cfg->n_kv_heads; i++) {
        const slimkv_head *h = &c->heads[i];
        if (h->k_store && !k_store_ok(h, cfg->head_dim))
            return 0;
        if (!rows_finite(c, h->sink_k, c->k_row_fmt, 0, sinks, 0) ||
            !rows_finite(c, h->sink_v, c->v_row_fmt, 0, sinks, 0) ||
            !rows_finite(c, h->ring_k, c->k_row_fmt, s + k_body > n ? n : s + k_body, n, 1) ||
            !rows_finite(c, h->ring_v, c->v_row_fmt, s + v_body > n ? n : s + v_body, n, 1))
            return 0;
        if (h->k_group_bytes)
            for (int j = 0; j < k_groups; j++)
                if (!k_group_ok(c, h, slimkv_k_group_ptr(h, j)))
                    return 0;
        if (h->v_block_bytes)
            for (int b = 0; b < v_blocks; b++) {
                int slots = v_body - b * g < g ? v_body - b * g : g;
                if (!v_block_ok(c, h, slimkv_v_block_ptr(h, b), slots))
                    return 0;
            }
    }
    return 1;
}
