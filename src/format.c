/* Byte accounting of the stored formats. The byte order inside groups and
 * blocks is fixed in simd/kernels.h; this file decides how groups, blocks
 * and pages are sized and which tokens are body (storage.c finds them). */
#include "internal.h"

/* Groups and blocks start on cache-line boundaries. */
static size_t round_up_64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

slimkv_format slimkv_row_format(slimkv_format fmt)
{
    /* The full-precision window is f16 (KIVI), except that an f32 cache
     * stays f32 so that its results are exact. */
    return fmt == SLIMKV_F32 ? SLIMKV_F32 : SLIMKV_F16;
}

size_t slimkv_row_elem_bytes(slimkv_format row_fmt)
{
    return row_fmt == SLIMKV_F32 ? 4 : 2;
}

size_t slimkv_k_group_bytes(slimkv_format fmt, int dk, int g)
{
    if (dk == 0)
        return 0;
    size_t bytes = slimkv_k_params_offset(fmt, dk, g);
    if (slimkv_is_quantized(fmt))
        bytes += (size_t)dk * 2 * sizeof(uint16_t);
    return round_up_64(bytes);
}

size_t slimkv_v_block_bytes(slimkv_format fmt, int dv, int g)
{
    if (dv == 0)
        return 0;
    size_t bytes = slimkv_v_params_offset(fmt, dv, g);
    if (slimkv_is_quantized(fmt))
        bytes += (size_t)g * ((dv + g - 1) / g) * 2 * sizeof(uint16_t);
    return round_up_64(bytes);
}

int slimkv_k_body_tokens(const slimkv_config *cfg, int n)
{
    int g = cfg->group_size, x = n - cfg->n_sink;
    if (x <= 0)
        return 0;
    /* Flush the oldest whole groups so that at most R tokens stay in the
     * window; with R = 0 only the last partial group stays. */
    int over = x - cfg->residual;
    int needed = over > 0 ? (over + g - 1) / g * g : 0;
    int whole = x / g * g;
    return needed < whole ? needed : whole;
}

int slimkv_v_body_tokens(const slimkv_config *cfg, int n)
{
    int x = n - cfg->n_sink - cfg->residual;
    return x > 0 ? x : 0;
}

int slimkv_pages_for_tokens(const slimkv_config *cfg, int body_tokens)
{
    int blocks = (body_tokens + cfg->group_size - 1) / cfg->group_size;
    return (blocks + SLIMKV_PAGE_GROUPS - 1) / SLIMKV_PAGE_GROUPS;
}

size_t slimkv_spark_group_bytes(slimkv_format fmt, int dim, int t_keep, int g)
{
    return round_up_64((size_t)g * slimkv_spark_record_bytes(fmt, dim, t_keep, g));
}
