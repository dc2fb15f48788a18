/* ThinK and SparK against oracles that apply exactly the policy's pruning
 * in float (computed here independently of the library), plus their error
 * against the unpruned result on LLM-like inputs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "oracle.h"

static const slimkv_format all_formats[] = {SLIMKV_F32, SLIMKV_F16, SLIMKV_BF16, SLIMKV_Q8,
                                           SLIMKV_Q4,  SLIMKV_Q2,  SLIMKV_Q3};

typedef struct workload {
    int n_q, n_kv, dim, n;      /* n tokens: a prompt, then decode tokens */
    float *q, *k, *v;
} workload;

static workload make_workload(int n_q, int n_kv, int dim, int n, uint64_t seed)
{
    workload w = {n_q, n_kv, dim, n, NULL, NULL, NULL};
    test_rng r;
    rng_seed(&r, seed);
    w.q = malloc((size_t)n * n_q * dim * sizeof(float));
    w.k = malloc((size_t)n * n_kv * dim * sizeof(float));
    w.v = malloc((size_t)n * n_kv * dim * sizeof(float));
    fill_keys(&r, w.k, n, 0, n_kv, dim);
    fill_keys(&r, w.q, n, 0, n_q, dim);
    for (size_t i = 0; i < (size_t)n * n_q * dim; i++)
        w.q[i] *= 0.5f;
    fill_normal(&r, w.v, (size_t)n * n_kv * dim, 1.0f);
    return w;
}

static void free_workload(workload *w)
{
    free(w->q);
    free(w->k);
    free(w->v);
}

static slimkv_config policy_config(const workload *w, slimkv_policy policy, slimkv_format fmt, float ratio)
{
    slimkv_config c;
    slimkv_config_init(&c);
    c.n_q_heads = w->n_q;
    c.n_kv_heads = w->n_kv;
    c.head_dim = w->dim;
    c.capacity = w->n;
    c.k_format = c.v_format = fmt;
    c.residual = 64;
    c.policy = policy;
    c.prune_ratio = ratio;
    return c;
}

/* Prefill the first `prompt` tokens in one or two chunks, append the rest
 * one by one; returns the cache. */
static slimkv_cache *fill_cache(const slimkv_config *cfg, const workload *w, int prompt, int chunks)
{
    slimkv_cache *c;
    assert_int_equal(slimkv_cache_create(cfg, &c), SLIMKV_OK);
    size_t rq = (size_t)w->n_q * w->dim, rkv = (size_t)w->n_kv * w->dim;
    float *out = malloc((size_t)prompt * rq * sizeof(float));
    int first = chunks == 1 ? prompt : prompt / 2;
    assert_int_equal(slimkv_cache_prefill(c, w->q, w->k, w->v, first, out), SLIMKV_OK);
    if (first < prompt)
        assert_int_equal(slimkv_cache_prefill(c, w->q + first * rq, w->k + first * rkv, w->v + first * rkv,
                                              prompt - first, out),
                         SLIMKV_OK);
    for (int t = prompt; t < w->n; t++)
        assert_int_equal(slimkv_cache_append(c, w->k + t * rkv, w->v + t * rkv, 1), SLIMKV_OK);
    free(out);
    return c;
}

/* ThinK's channel choice, written from the formula: first-chunk keys and
 * its last W queries of the group. */
static void think_mask(const workload *w, const slimkv_config *cfg, int chunk, uint8_t *mask)
{
    int d = w->dim, gs = w->n_q / w->n_kv, win = chunk < cfg->window ? chunk : cfg->window;
    int keep = d - (int)floorf(cfg->prune_ratio * d);
    keep = (keep + cfg->channel_align - 1) / cfg->channel_align * cfg->channel_align;
    keep = keep < d ? keep : d;
    for (int h = 0; h < w->n_kv; h++) {
        double score[1024];
        for (int c = 0; c < d; c++) {
            double qs = 0, ks = 0;
            for (int t = chunk - win; t < chunk; t++)
                for (int g = 0; g < gs; g++) {
                    double x = w->q[((size_t)t * w->n_q + h * gs + g) * d + c];
                    qs += x * x;
                }
            for (int t = 0; t < chunk; t++) {
                double x = w->k[((size_t)t * w->n_kv + h) * d + c];
                ks += x * x;
            }
            score[c] = (qs / (win * gs)) * (ks / chunk);
        }
        for (int c = 0; c < d; c++) {
            int above = 0;
            for (int j = 0; j < d; j++)
                above += score[j] > score[c] || (score[j] == score[c] && j < c);
            mask[(size_t)h * d + c] = above < keep;
        }
    }
}

/* SparK's ||qbar||: mean over the group's heads, norm over the last W. */
static void spark_qnorm(const workload *w, const slimkv_config *cfg, int chunk, float *qnorm)
{
    int d = w->dim, gs = w->n_q / w->n_kv, win = chunk < cfg->window ? chunk : cfg->window;
    for (int h = 0; h < w->n_kv; h++) {
        double largest = 0, sq[1024];
        for (int c = 0; c < d; c++) {
            sq[c] = 0;
            for (int t = chunk - win; t < chunk; t++) {
                double mean = 0;
                for (int g = 0; g < gs; g++)
                    mean += w->q[((size_t)t * w->n_q + h * gs + g) * d + c];
                sq[c] += (mean / gs) * (mean / gs);
            }
            largest = sq[c] > largest ? sq[c] : largest;
        }
        for (int c = 0; c < d; c++)
            qnorm[(size_t)h * d + c] = (float)sqrt(sq[c] > largest * 1e-12 ? sq[c] : largest * 1e-12);
    }
}

static double attend_error(const slimkv_cache *c, const workload *w, const oracle_cfg *o, int nq)
{
    size_t rq = (size_t)w->n_q * w->dim, out_n = (size_t)nq * rq;
    float *out = malloc(out_n * sizeof(float)), *want = malloc(out_n * sizeof(float));
    const float *q = w->q + (size_t)(w->n - nq) * rq;
    assert_int_equal(slimkv_attend(c, q, nq, out), SLIMKV_OK);
    oracle_attend(o, w->k, w->v, w->n, q, nq, want);
    double err = scaled_max_error(out, want, out_n, max_abs(w->v, (size_t)w->n * w->n_kv * w->dim));
    free(out);
    free(want);
    return err;
}

static oracle_cfg base_oracle(const workload *w, const slimkv_config *cfg)
{
    oracle_cfg o = {w->n_q, w->n_kv, w->dim, cfg->group_size, cfg->residual, cfg->n_sink, NULL, NULL, 0, NULL};
    return o;
}

static void test_think_matches_oracle(void **state)
{
    (void)state;
    workload w = make_workload(8, 2, 64, 420, 1);
    const int prompt = 400;
    for (int chunks = 1; chunks <= 2; chunks++)
        for (int f = 0; f < SLIMKV_FORMAT_COUNT; f++) {
            slimkv_config cfg = policy_config(&w, SLIMKV_POLICY_THINK, all_formats[f], 0.4f);
            slimkv_cache *c = fill_cache(&cfg, &w, prompt, chunks);
            uint8_t mask[2 * 64];
            think_mask(&w, &cfg, chunks == 1 ? prompt : prompt / 2, mask);
            for (int h = 0; h < 2; h++) { /* the cache chose the same channels */
                int chan[64], n;
                assert_int_equal(slimkv_cache_kept_channels(c, h, 0, chan, &n), SLIMKV_OK);
                assert_int_equal(n, 40); /* 64 - floor(0.4 * 64) = 39, aligned to 8 */
                for (int i = 0; i < n; i++)
                    assert_int_equal(mask[h * 64 + chan[i]], 1);
            }
            oracle_cfg o = base_oracle(&w, &cfg);
            o.k_keep = mask;
            double err = attend_error(c, &w, &o, 3);
            if (err > format_error_bound(all_formats[f]))
                fail_msg("ThinK %s: error %.3g vs oracle", slimkv_format_name(all_formats[f]), err);
            slimkv_cache_destroy(c);
        }
    free_workload(&w);
}

static void test_spark_matches_oracle(void **state)
{
    (void)state;
    workload w = make_workload(8, 2, 64, 420, 2);
    const int prompt = 400;
    const float ratios[] = {0.5f, 0.8f};
    for (int ri = 0; ri < 2; ri++)
        for (int f = 0; f < 6; f++) { /* every format SparK records hold (not q3) */
            slimkv_config cfg = policy_config(&w, SLIMKV_POLICY_SPARK, all_formats[f], ratios[ri]);
            slimkv_cache *c = fill_cache(&cfg, &w, prompt, ri + 1);
            float qnorm[2 * 64];
            spark_qnorm(&w, &cfg, ri == 0 ? prompt : prompt / 2, qnorm);
            oracle_cfg o = base_oracle(&w, &cfg);
            o.spark_keep = 64 - (int)floorf(ratios[ri] * 64);
            o.qnorm = qnorm;
            double err = attend_error(c, &w, &o, 2);
            if (err > format_error_bound(all_formats[f]))
                fail_msg("SparK %.1f %s: error %.3g vs oracle", ratios[ri], slimkv_format_name(all_formats[f]), err);
            slimkv_cache_destroy(c);
        }
    free_workload(&w);
}

/* What pruning costs in accuracy on LLM-like inputs (Llama-3-8B head shape,
 * one KV group), against the unpruned fp32 result: stated bounds. These
 * synthetic keys spread their energy over most channels (real models'
 * keys are far more concentrated), so channel-level pruning (ThinK) pays
 * more here than it does on a real model; SparK adapts per token. */
static void test_error_vs_unpruned(void **state)
{
    (void)state;
    /* A property of the policies, not of an ISA (the two tests above check
     * each table against the oracle): its 2048-token prefills run natively
     * only, not under the emulators' and valgrind's quick stages. */
    if (test_quick())
        skip();
    workload w = make_workload(4, 1, 128, 2100, 3);
    const int prompt = 2048;
    struct {
        slimkv_policy policy;
        float ratio;
        double bound;
    } cases[] = {
        {SLIMKV_POLICY_THINK, 0.4f, 0.25},
        {SLIMKV_POLICY_SPARK, 0.5f, 0.03},
        {SLIMKV_POLICY_SPARK, 0.8f, 0.15},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        slimkv_config cfg = policy_config(&w, cases[i].policy, SLIMKV_F32, cases[i].ratio);
        slimkv_cache *c = fill_cache(&cfg, &w, prompt, 1);
        oracle_cfg unpruned = base_oracle(&w, &cfg);
        double err = attend_error(c, &w, &unpruned, 4);
        print_message("  %s %.1f: error vs unpruned %.4f (bound %.3f)\n",
                      cases[i].policy == SLIMKV_POLICY_THINK ? "ThinK" : "SparK", cases[i].ratio, err,
                      cases[i].bound);
        if (err > cases[i].bound)
            fail_msg("policy %zu: error %.3g > %.3g", i, err, cases[i].bound);
        slimkv_cache_destroy(c);
    }
    free_workload(&w);
}

/* Query-aware policies need the prefill's queries first. */
static void test_append_before_prefill(void **state)
{
    (void)state;
    workload w = make_workload(4, 2, 32, 80, 4);
    for (int p = SLIMKV_POLICY_THINK; p <= SLIMKV_POLICY_SPARK; p++) {
        slimkv_config cfg = policy_config(&w, (slimkv_policy)p, SLIMKV_Q4, 0.4f);
        slimkv_cache *c;
        assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
        size_t bytes_before, bytes_after;
        int n;
        slimkv_cache_bytes(c, &bytes_before);
        assert_int_equal(slimkv_cache_append(c, w.k, w.v, 3), SLIMKV_ERR_STATE);
        slimkv_cache_bytes(c, &bytes_after);
        slimkv_cache_tokens(c, &n);
        assert_int_equal(n, 0);
        assert_int_equal(bytes_after, bytes_before);
        float *out = malloc((size_t)80 * 4 * 32 * sizeof(float));
        assert_int_equal(slimkv_cache_prefill(c, w.q, w.k, w.v, 80, out), SLIMKV_OK);
        assert_int_equal(slimkv_cache_append(c, w.k, w.v, 0), SLIMKV_ERR_INVALID_ARG);
        free(out);
        slimkv_cache_destroy(c);
    }
    free_workload(&w);
}

static void test_bad_policy_config(void **state)
{
    (void)state;
    workload w = {4, 2, 32, 10, NULL, NULL, NULL};
    slimkv_config cfg = policy_config(&w, SLIMKV_POLICY_THINK, SLIMKV_Q4, 1.0f);
    assert_int_equal(slimkv_config_validate(&cfg), SLIMKV_ERR_INVALID_CONFIG);
    cfg.prune_ratio = -0.1f;
    assert_int_equal(slimkv_config_validate(&cfg), SLIMKV_ERR_INVALID_CONFIG);
    cfg.prune_ratio = NAN;
    assert_int_equal(slimkv_config_validate(&cfg), SLIMKV_ERR_INVALID_CONFIG);
    cfg.prune_ratio = 0.5f;
    cfg.window = 0;
    assert_int_equal(slimkv_config_validate(&cfg), SLIMKV_ERR_INVALID_CONFIG);
    cfg.window = 32;
    uint8_t mask[2 * 32] = {0};
    cfg.k_mask = mask;
    assert_int_equal(slimkv_config_validate(&cfg), SLIMKV_ERR_INVALID_CONFIG);
    cfg.k_mask = NULL;
    cfg.policy = SLIMKV_POLICY_SPARK;
    assert_int_equal(slimkv_config_validate(&cfg), SLIMKV_OK);
}

/* Memory really shrinks, by the amounts the layouts say. */
static void test_policy_bytes(void **state)
{
    (void)state;
    workload w = make_workload(4, 1, 128, 1024 + 128, 5);
    size_t bytes[3];
    slimkv_policy policies[3] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_THINK, SLIMKV_POLICY_SPARK};
    for (int i = 0; i < 3; i++) {
        slimkv_config cfg = policy_config(&w, policies[i], SLIMKV_F16, 0.5f);
        cfg.residual = 128;
        slimkv_cache *c = fill_cache(&cfg, &w, w.n, 1);
        assert_int_equal(slimkv_cache_bytes(c, &bytes[i]), SLIMKV_OK);
        slimkv_cache_destroy(c);
    }
    /* 1024 body tokens = 4 pages of 8 groups; window 128+32 rows of K and V */
    size_t window = (size_t)(128 + 32) * 128 * 2 * 2;
    size_t k_dense = (size_t)1024 * 128 * 2, v_dense = k_dense;
    assert_int_equal(bytes[0], window + k_dense + v_dense);
    assert_int_equal(bytes[1], window + k_dense / 2 + v_dense);
    /* SparK f16, T = 64: mask 16 + signs 16 + a_t 4 + 64 values * 2 bytes per token;
     * the query norms and their reciprocal roots, 2 x 128 floats */
    size_t spark_group = ((size_t)32 * (16 + 16 + 4 + 128) + 63) / 64 * 64;
    assert_int_equal(bytes[2], window + (size_t)32 * spark_group + v_dense + 2 * 128 * 4);
    assert_true(bytes[2] < bytes[0]);
    free_workload(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_policy_config),
        cmocka_unit_test(test_append_before_prefill),
        cmocka_unit_test(test_think_matches_oracle),
        cmocka_unit_test(test_spark_matches_oracle),
        cmocka_unit_test(test_error_vs_unpruned),
        cmocka_unit_test(test_policy_bytes),
    };
    return cmocka_run_group_tests_name("policies", tests, NULL, NULL);
}
