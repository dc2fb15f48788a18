/* The small caches whose snapshots the hostile-input tests corrupt
 * (tests/test_snapshot_hostile.c, tests/stress/stress.c): every format and
 * policy, two KV heads (the second streaming under the static policy), a
 * sink, compressed groups, a partial V block and a residual window, in a
 * file of a few KiB. Header-only; include after cmocka.h and oracle.h. */
#ifndef SLIMKV_TEST_SMALL_SNAPSHOT_H
#define SLIMKV_TEST_SMALL_SNAPSHOT_H

#include <stdio.h>
#include <stdlib.h>

enum { SMALL_Q = 2, SMALL_KV = 2, SMALL_DIM = 8, SMALL_G = 16, SMALL_CAP = 48, SMALL_TOKENS = 45 };

static uint8_t small_k_mask[SMALL_KV * SMALL_DIM];

static inline slimkv_config small_snapshot_config(slimkv_policy policy, slimkv_format kf, slimkv_format vf)
{
    for (int i = 0; i < SMALL_KV * SMALL_DIM; i++)
        small_k_mask[i] = i < SMALL_DIM ? i % 2 == 0 : 0; /* head 1 streaming */
    slimkv_config c;
    slimkv_config_init(&c);
    c.n_q_heads = SMALL_Q;
    c.n_kv_heads = SMALL_KV;
    c.head_dim = SMALL_DIM;
    c.capacity = SMALL_CAP;
    c.k_format = kf;
    c.v_format = vf;
    c.group_size = SMALL_G;
    c.residual = SMALL_G;
    c.n_sink = 1;
    c.policy = policy;
    c.channel_align = 4;
    if (policy == SLIMKV_POLICY_STATIC)
        c.k_mask = small_k_mask;
    return c;
}

/* SMALL_TOKENS tokens: a prefill of the first 20, appends after. */
static inline slimkv_cache *small_snapshot_cache(const slimkv_config *cfg, uint64_t seed)
{
    enum { QN = SMALL_TOKENS * SMALL_Q * SMALL_DIM, KN = SMALL_TOKENS * SMALL_KV * SMALL_DIM };
    float q[QN], k[KN], v[KN], out[QN];
    test_rng r;
    rng_seed(&r, seed);
    fill_keys(&r, k, SMALL_TOKENS, 0, SMALL_KV, SMALL_DIM);
    fill_normal(&r, v, KN, 1.0f);
    fill_normal(&r, q, QN, 0.5f);
    slimkv_cache *c;
    assert_int_equal(slimkv_cache_create(cfg, &c), SLIMKV_OK);
    assert_int_equal(slimkv_cache_prefill(c, q, k, v, 20, out), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(c, k + 20 * SMALL_KV * SMALL_DIM, v + 20 * SMALL_KV * SMALL_DIM,
                                         SMALL_TOKENS - 20),
                     SLIMKV_OK);
    return c;
}

static inline uint8_t *small_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*n ? *n : 1);
    assert_int_equal(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

static inline void small_write_file(const char *path, const uint8_t *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

#endif /* SLIMKV_TEST_SMALL_SNAPSHOT_H */
