/* config.rotate: the Walsh-Hadamard rotation of keys and queries (K) and
 * of values and outputs (V). It changes no score, so an f32 cache gives the
 * unrotated result; on values with a few large channels it lowers the
 * error of low-bit V; what does not compose is refused; snapshots say how
 * they were rotated. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "oracle.h"
#include "slimkv.h"
#include "tmpdir.h"

enum { N_Q = 8, N_KV = 2, DIM = 64, N_TOKENS = 600 };

static const char *const isas[] = {"scalar", "avx2", "avx512", "neon", "neon-dotprod"};

typedef struct inputs {
    float *q, *k, *v;
} inputs;

/* Keys with LLM-like outlier channels; values with three channels per head
 * 12x larger than the rest, the case per-token V groups handle worst. */
static inputs make_inputs(uint64_t seed)
{
    inputs in;
    test_rng r;
    rng_seed(&r, seed);
    size_t kv = (size_t)N_TOKENS * N_KV * DIM;
    in.q = malloc((size_t)N_TOKENS * N_Q * DIM * sizeof(float));
    in.k = malloc(kv * sizeof(float));
    in.v = malloc(kv * sizeof(float));
    assert_true(in.q && in.k && in.v);
    fill_keys(&r, in.k, N_TOKENS, 0, N_KV, DIM);
    fill_normal(&r, in.v, kv, 1.0f);
    for (size_t i = 0; i < kv; i++)
        if (i % DIM == 5 || i % DIM == 21 || i % DIM == 40)
            in.v[i] *= 12.0f;
    fill_normal(&r, in.q, (size_t)N_TOKENS * N_Q * DIM, 0.3f);
    return in;
}

static void free_inputs(inputs *in)
{
    free(in->q);
    free(in->k);
    free(in->v);
}

static slimkv_config config_of(slimkv_format fmt, int rotate, const char *isa)
{
    slimkv_config c;
    slimkv_config_init(&c);
    c.n_q_heads = N_Q;
    c.n_kv_heads = N_KV;
    c.head_dim = DIM;
    c.capacity = N_TOKENS;
    c.k_format = c.v_format = fmt;
    c.residual = 64;
    c.rotate = rotate;
    c.isa = isa;
    return c;
}

/* Prefill 300 tokens, append the rest in steps, attend the last 4 queries. */
static void run_cache(const slimkv_config *cfg, const inputs *in, float *out)
{
    slimkv_cache *c;
    assert_int_equal(slimkv_cache_create(cfg, &c), SLIMKV_OK);
    float *prefill_out = malloc((size_t)300 * N_Q * DIM * sizeof(float));
    assert_non_null(prefill_out);
    assert_int_equal(slimkv_cache_prefill(c, in->q, in->k, in->v, 300, prefill_out), SLIMKV_OK);
    for (int t = 300; t < N_TOKENS; t += 100)
        assert_int_equal(slimkv_cache_append(c, in->k + (size_t)t * N_KV * DIM, in->v + (size_t)t * N_KV * DIM, 100),
                         SLIMKV_OK);
    assert_int_equal(slimkv_attend(c, in->q + (size_t)(N_TOKENS - 4) * N_Q * DIM, 4, out), SLIMKV_OK);
    /* the prefill's output is rotated back too: its last row against the
     * oracle over the first 300 tokens */
    float *want = malloc((size_t)N_Q * DIM * sizeof(float));
    assert_non_null(want);
    oracle_cfg o = {N_Q, N_KV, DIM, cfg->group_size, cfg->residual, cfg->n_sink, NULL, NULL, 0, NULL};
    oracle_attend(&o, in->k, in->v, 300, in->q + (size_t)299 * N_Q * DIM, 1, want);
    double err = scaled_max_error(prefill_out + (size_t)299 * N_Q * DIM, want, (size_t)N_Q * DIM,
                                  max_abs(in->v, (size_t)300 * N_KV * DIM));
    if (err > format_error_bound(cfg->v_format))
        fail_msg("%s rotate=%d prefill output error %g", slimkv_format_name(cfg->k_format), cfg->rotate, err);
    free(want);
    free(prefill_out);
    slimkv_cache_destroy(c);
}

static double error_vs_oracle(const inputs *in, const float *got)
{
    float *want = malloc((size_t)4 * N_Q * DIM * sizeof(float));
    assert_non_null(want);
    oracle_cfg o = {N_Q, N_KV, DIM, 32, 64, 0, NULL, NULL, 0, NULL};
    oracle_attend(&o, in->k, in->v, N_TOKENS, in->q + (size_t)(N_TOKENS - 4) * N_Q * DIM, 4, want);
    double err = scaled_max_error(got, want, (size_t)4 * N_Q * DIM, max_abs(in->v, (size_t)N_TOKENS * N_KV * DIM));
    free(want);
    return err;
}

/* f32 storage: rotating changes nothing but rounding, on every ISA. */
static void test_f32_unchanged(void **state)
{
    (void)state;
    inputs in = make_inputs(3);
    float plain[4 * N_Q * DIM], rotated[4 * N_Q * DIM];
    int ran = 0;
    for (size_t i = 0; i < sizeof isas / sizeof *isas; i++) {
        if (!slimkv_isa_supported(isas[i]))
            continue;
        slimkv_config a = config_of(SLIMKV_F32, 0, isas[i]);
        slimkv_config b = config_of(SLIMKV_F32, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V, isas[i]);
        run_cache(&a, &in, plain);
        run_cache(&b, &in, rotated);
        double err = scaled_max_error(rotated, plain, sizeof plain / sizeof *plain,
                                      max_abs(in.v, (size_t)N_TOKENS * N_KV * DIM));
        if (err > 1e-5)
            fail_msg("%s: rotated f32 cache differs from the plain one by %g", isas[i], err);
        ran++;
    }
    assert_true(ran >= 1);
    free_inputs(&in);
}

/* q4 and q2 values with large channels (f16 keys): rotating V lowers the
 * error against the fp32 oracle, and stays within the format's bound. */
static void test_low_bit_error_drops(void **state)
{
    (void)state;
    inputs in = make_inputs(4);
    const slimkv_format formats[] = {SLIMKV_Q4, SLIMKV_Q2};
    float plain[4 * N_Q * DIM], rotated[4 * N_Q * DIM];
    for (size_t i = 0; i < sizeof isas / sizeof *isas; i++) {
        if (!slimkv_isa_supported(isas[i]))
            continue;
        for (size_t f = 0; f < 2; f++) {
            /* K in f16: the V error alone */
            slimkv_config a = config_of(formats[f], 0, isas[i]);
            slimkv_config b = config_of(formats[f], SLIMKV_ROTATE_V, isas[i]);
            a.k_format = b.k_format = SLIMKV_F16;
            run_cache(&a, &in, plain);
            run_cache(&b, &in, rotated);
            double e_plain = error_vs_oracle(&in, plain), e_rot = error_vs_oracle(&in, rotated);
            print_message("  [%s] %s: error %.4g plain, %.4g rotated\n", isas[i], slimkv_format_name(formats[f]),
                          e_plain, e_rot);
            assert_true(e_rot < e_plain);
            assert_true(e_rot <= format_error_bound(formats[f]));
        }
    }
    free_inputs(&in);
}

static void test_refused_configs(void **state)
{
    (void)state;
    const char *why;
    slimkv_config c = config_of(SLIMKV_Q4, 4, NULL);
    assert_int_equal(slimkv_config_reason(&c, &why), SLIMKV_ERR_INVALID_CONFIG);
    assert_non_null(strstr(why, "rotate"));
    c = config_of(SLIMKV_Q4, SLIMKV_ROTATE_V, NULL);
    c.head_dim = 96; /* not a power of 2 */
    assert_int_equal(slimkv_config_reason(&c, &why), SLIMKV_ERR_INVALID_CONFIG);
    assert_non_null(strstr(why, "power of 2"));
    const slimkv_policy pruning[] = {SLIMKV_POLICY_THINK, SLIMKV_POLICY_SPARK};
    for (int p = 0; p < 2; p++) {
        c = config_of(SLIMKV_Q4, SLIMKV_ROTATE_K, NULL);
        c.policy = pruning[p];
        assert_int_equal(slimkv_config_reason(&c, &why), SLIMKV_ERR_UNSUPPORTED);
        assert_non_null(strstr(why, "channel pruning"));
        slimkv_cache *cache = NULL;
        assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_ERR_UNSUPPORTED);
        assert_null(cache);
    }
    uint8_t mask[N_KV * DIM];
    memset(mask, 1, sizeof mask);
    c = config_of(SLIMKV_Q4, SLIMKV_ROTATE_V, NULL);
    c.policy = SLIMKV_POLICY_STATIC;
    c.k_mask = mask;
    assert_int_equal(slimkv_config_reason(&c, &why), SLIMKV_ERR_UNSUPPORTED);
}

/* A rotated cache's snapshot restores into a rotating cache (same output),
 * and is refused by an unrotated one. */
static void test_snapshot_says_rotated(void **state)
{
    (void)state;
    inputs in = make_inputs(5);
    tmpdir dir;
    char path[300];
    assert_int_equal(tmpdir_make(&dir), 0);
    tmpdir_file(&dir, "rotated.safetensors", path, sizeof path);
    slimkv_config cfg = config_of(SLIMKV_Q4, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V, NULL);
    slimkv_cache *a, *b, *plain;
    assert_int_equal(slimkv_cache_create(&cfg, &a), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(a, in.k, in.v, 400), SLIMKV_OK);
    assert_int_equal(slimkv_cache_save(a, path), SLIMKV_OK);
    assert_int_equal(slimkv_cache_create(&cfg, &b), SLIMKV_OK);
    assert_int_equal(slimkv_cache_restore(b, path), SLIMKV_OK);
    float out_a[N_Q * DIM], out_b[N_Q * DIM];
    const float *q = in.q + (size_t)399 * N_Q * DIM;
    assert_int_equal(slimkv_attend(a, q, 1, out_a), SLIMKV_OK);
    assert_int_equal(slimkv_attend(b, q, 1, out_b), SLIMKV_OK);
    assert_memory_equal(out_a, out_b, sizeof out_a);
    slimkv_config unrotated = config_of(SLIMKV_Q4, 0, NULL);
    assert_int_equal(slimkv_cache_create(&unrotated, &plain), SLIMKV_OK);
    assert_int_equal(slimkv_cache_restore(plain, path), SLIMKV_ERR_MISMATCH);
    slimkv_cache_destroy(a);
    slimkv_cache_destroy(b);
    slimkv_cache_destroy(plain);
    tmpdir_remove(&dir);
    free_inputs(&in);
}

/* A fork of a rotated cache attends like it; a truncated fork like a new
 * rotated cache given the same tokens (within the format's bound: cut
 * tokens the window holds again are decoded from the body). */
static void test_fork_and_truncate(void **state)
{
    (void)state;
    inputs in = make_inputs(6);
    slimkv_config cfg = config_of(SLIMKV_Q4, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V, NULL);
    slimkv_cache *a, *fork, *fresh;
    assert_int_equal(slimkv_cache_create(&cfg, &a), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(a, in.k, in.v, 400), SLIMKV_OK);
    assert_int_equal(slimkv_cache_fork(a, &fork), SLIMKV_OK);
    float out_a[N_Q * DIM], out_b[N_Q * DIM];
    const float *q = in.q + (size_t)399 * N_Q * DIM;
    assert_int_equal(slimkv_attend(a, q, 1, out_a), SLIMKV_OK);
    assert_int_equal(slimkv_attend(fork, q, 1, out_b), SLIMKV_OK);
    assert_memory_equal(out_a, out_b, sizeof out_a);
    assert_int_equal(slimkv_cache_truncate(fork, 250), SLIMKV_OK);
    assert_int_equal(slimkv_cache_create(&cfg, &fresh), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(fresh, in.k, in.v, 250), SLIMKV_OK);
    q = in.q + (size_t)249 * N_Q * DIM;
    assert_int_equal(slimkv_attend(fork, q, 1, out_a), SLIMKV_OK);
    assert_int_equal(slimkv_attend(fresh, q, 1, out_b), SLIMKV_OK);
    double err = scaled_max_error(out_a, out_b, (size_t)N_Q * DIM, max_abs(in.v, (size_t)250 * N_KV * DIM));
    assert_true(err <= format_error_bound(SLIMKV_Q4));
    slimkv_cache_destroy(a);
    slimkv_cache_destroy(fork);
    slimkv_cache_destroy(fresh);
    free_inputs(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_unchanged),
        cmocka_unit_test(test_low_bit_error_drops),
        cmocka_unit_test(test_refused_configs),
        cmocka_unit_test(test_snapshot_says_rotated),
        cmocka_unit_test(test_fork_and_truncate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
