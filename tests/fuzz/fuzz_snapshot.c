/* Snapshot restore on hostile files: any input gives a status; on success
 * the restored cache works; on failure it is unchanged. */
#include "fuzz_common.h"

static slimkv_cache *target;

static slimkv_cache *make_target(void)
{
    slimkv_config cfg;
    slimkv_config_init(&cfg);
    cfg.n_q_heads = 2;
    cfg.n_kv_heads = 1;
    cfg.head_dim = 16;
    cfg.capacity = 300;
    cfg.k_format = SLIMKV_Q4;
    cfg.v_format = SLIMKV_Q2;
    cfg.group_size = 16;
    cfg.residual = 16;
    cfg.n_sink = 1;
    cfg.isa = "scalar";
    slimkv_cache *c;
    if (slimkv_cache_create(&cfg, &c) != SLIMKV_OK)
        abort();
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!target)
        target = make_target();
    const char *path = fuzz_input_file(data, size);
    int before, after;
    slimkv_cache_tokens(target, &before);
    slimkv_status st = slimkv_cache_restore(target, path);
    fuzz_check_status(st);
    slimkv_cache_tokens(target, &after);
    if (st != SLIMKV_OK && after != before)
        abort();
    if (st == SLIMKV_OK && after > 0) {
        float q[32] = {0.5f}, out[32];
        if (slimkv_attend(target, q, 1, out) != SLIMKV_OK)
            abort();
    }
    return 0;
}
