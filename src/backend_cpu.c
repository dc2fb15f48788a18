/* The CPU backend: storage in host memory (storage.c, pages shared with
 * forks in storage_share.c), attention on the kernel table the cache was
 * created with (attention.c), snapshots (io_snapshot.c). */
#include <math.h>

#include "backend.h"

static slimkv_status cpu_check_values(const slimkv_cache *c, const float *x, size_t n, int f16_range, int *ok)
{
    (void)c;
    if (!f16_range) {
        *ok = slimkv_all_finite(x, n);
        return SLIMKV_OK;
    }
    /* One pass with no early exit vectorizes; NaN fails the comparison. */
    int in_range = 1;
    for (size_t i = 0; i < n; i++)
        in_range &= fabsf(x[i]) <= 65504.0f;
    *ok = in_range;
    return SLIMKV_OK;
}

static slimkv_status cpu_choose_channels(slimkv_cache *c, const float *q, const float *k, int n_tokens)
{
    slimkv_policy_choose(c, q, k, n_tokens);
    return SLIMKV_OK;
}

static slimkv_status cpu_reset_channels(slimkv_cache *c)
{
    slimkv_policy_reset(c);
    return SLIMKV_OK;
}

static const char *cpu_isa_name(const slimkv_cache *c)
{
    return c->kern->name;
}

const slimkv_backend_ops slimkv_backend_cpu_ops = {
    .kind = SLIMKV_BACKEND_CPU,
    .create = slimkv_storage_create,
    .destroy = slimkv_storage_destroy,
    .check_values = cpu_check_values,
    .append = slimkv_storage_append,
    .attend = slimkv_attention_run,
    .choose_channels = cpu_choose_channels,
    .reset_channels = cpu_reset_channels,
    .truncate = slimkv_storage_truncate,
    .fork = slimkv_storage_fork,
    .bytes = slimkv_storage_bytes,
    .bytes_shared = slimkv_storage_bytes_shared,
    .save = slimkv_snapshot_save,
    .restore = slimkv_snapshot_restore,
    .isa_name = cpu_isa_name,
};
