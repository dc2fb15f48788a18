/* Config validation and cache creation on arbitrary field values: any
 * config must give a status, and a created cache must take a token and
 * attend to it. */
#include <string.h>

#include "fuzz_common.h"

static int32_t take_i32(const uint8_t **p, size_t *left)
{
    int32_t v = 0;
    size_t n = *left < 4 ? *left : 4;
    memcpy(&v, *p, n);
    *p += n;
    *left -= n;
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    slimkv_config cfg;
    slimkv_config_init(&cfg);
    const uint8_t *p = data;
    size_t left = size;
    /* small values are the interesting ones: fold into a bounded range but
     * keep negative and huge values reachable through the top bits */
    int32_t *fields[] = {&cfg.n_q_heads, &cfg.n_kv_heads, &cfg.head_dim, &cfg.capacity, &cfg.group_size,
                         &cfg.residual, &cfg.n_sink, &cfg.channel_align, &cfg.window};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        int32_t v = take_i32(&p, &left);
        *fields[i] = (v & 0x40000000) ? v : v % 300;
    }
    cfg.k_format = (slimkv_format)(take_i32(&p, &left) % 8);
    cfg.v_format = (slimkv_format)(take_i32(&p, &left) % 8);
    cfg.policy = (slimkv_policy)(take_i32(&p, &left) % 5);
    int32_t ratio_bits = take_i32(&p, &left);
    memcpy(&cfg.prune_ratio, &ratio_bits, sizeof ratio_bits);
    cfg.k_outliers = take_i32(&p, &left) % 72; /* a quarter of the non-negative ones are multiples of 4 */
    static uint8_t mask[4096];
    if (cfg.policy == SLIMKV_POLICY_STATIC) {
        for (size_t i = 0; i < sizeof mask; i++)
            mask[i] = left ? p[i % left] % 3 == 0 : 0;
        if ((size_t)cfg.n_kv_heads * (size_t)cfg.head_dim <= sizeof mask)
            cfg.k_mask = mask;
    }
    cfg.isa = "scalar";
    slimkv_status valid = slimkv_config_validate(&cfg);
    fuzz_check_status(valid);
    if (valid == SLIMKV_OK && ((double)cfg.capacity * cfg.n_kv_heads * cfg.head_dim > (double)(1 << 22) ||
                               (double)cfg.n_q_heads * cfg.head_dim > (double)(1 << 22)))
        return 0; /* valid but too big to be worth allocating here */
    slimkv_cache *c = NULL;
    slimkv_status st = slimkv_cache_create(&cfg, &c);
    fuzz_check_status(st);
    if ((st == SLIMKV_OK) != (valid == SLIMKV_OK)) /* create validates exactly as validate does */
        abort();
    if (st != SLIMKV_OK)
        return 0;
    size_t kv = (size_t)cfg.n_kv_heads * cfg.head_dim, q = (size_t)cfg.n_q_heads * cfg.head_dim;
    float *k = calloc(kv, sizeof(float)), *qv = calloc(q, sizeof(float)), *out = calloc(q, sizeof(float));
    if (!k || !qv || !out)
        abort();
    for (size_t i = 0; i < kv; i++)
        k[i] = (float)(i % 7) - 3.0f;
    for (size_t i = 0; i < q; i++)
        qv[i] = 0.25f;
    st = slimkv_cache_prefill(c, qv, k, k, 1, out);
    fuzz_check_status(st);
    if (st == SLIMKV_OK && slimkv_attend(c, qv, 1, out) != SLIMKV_OK)
        abort();
    free(k);
    free(qv);
    free(out);
    slimkv_cache_destroy(c);
    return 0;
}
