/* Test helpers: deterministic inputs and the fp32 dense attention oracle. */
#ifndef SLIMKV_TEST_ORACLE_H
#define SLIMKV_TEST_ORACLE_H

#include <stddef.h>
#include <stdint.h>

#include "slimkv.h"

/* xorshift-based uniform floats in [-1, 1), reproducible per seed. */
typedef struct test_rng { uint64_t s; } test_rng;
void rng_seed(test_rng *r, uint64_t seed);
float rng_uniform(test_rng *r);
float rng_normal(test_rng *r);
void fill_normal(test_rng *r, float *x, size_t n, float scale);

/* LLM-like keys: a few high-magnitude channels per head and a RoPE rotation
 * by position, so per-channel quantization sees realistic outliers. */
void fill_keys(test_rng *r, float *k, int n_tokens, int pos0, int n_heads, int head_dim);

/* What the cache should compute, in fp32 on the original inputs:
 * k, v: [n_tokens][n_kv][D] (all tokens appended so far), q: [n_queries][n_q][D]
 * with query i at position n_tokens - n_queries + i (causal).
 * Channel pruning applies to tokens in the compressed body (K body /
 * V body as the config defines them); kept channels per head come from the
 * cache (k_keep[h][c], v_keep[h][c] in 0/1). Streaming heads (no kept K)
 * see only the sinks and the last R tokens. */
typedef struct oracle_cfg {
    int n_q_heads, n_kv_heads, head_dim;
    int group_size, residual, n_sink;
    const uint8_t *k_keep, *v_keep; /* NULL: everything kept */
    int spark_keep;                 /* SparK: T > 0 restores body keys from their top T */
    const float *qnorm;             /* SparK: [n_kv][D] ||qbar|| */
} oracle_cfg;

/* SparK's restored key: the top-T channels by k^2 * qnorm kept (ties: lower
 * index), the others replaced by sign(k) * sqrt(a / qnorm) with a the mean
 * saliency of the pruned channels. */
void oracle_spark_restore(const float *k, const float *qnorm, int dim, int t_keep, float *restored);

void oracle_attend(const oracle_cfg *cfg, const float *k, const float *v, int n_tokens, const float *q,
                   int n_queries, float *out);

/* Fills oracle_cfg and kept-channel masks (caller frees *_keep) from a cache. */
void oracle_from_cache(const slimkv_config *config, const slimkv_cache *cache, oracle_cfg *ocfg,
                       uint8_t **k_keep, uint8_t **v_keep);

/* max |a-b| over n values, divided by scale. Attention outputs are convex
 * combinations of V rows, so the scale used is max |v|: the error is then
 * relative to what any output could be, whatever the softmax does. */
double max_abs(const float *x, size_t n);
double scaled_max_error(const float *a, const float *b, size_t n, double scale);

/* 0 when the runner forbids starting threads (SLIMKV_TEST_NO_THREADS=1:
 * `make cross-test`, since qemu-user on this machine hangs in pthread_create
 * and fork); tests that need threads skip then. */
int test_threads_allowed(void);

/* 1 when the runner asks for the quick suite (SLIMKV_TEST_QUICK=1: the
 * Makefile's valgrind and qemu stages, where each instruction costs tens of
 * times its native time). The heavy tests then repeat less: fewer of the
 * same checks, fewer combinations that run the same code, shorter runs,
 * but every code path (format, policy, eviction, edge case) and every
 * assertion still. Native `make test`, ASan and TSan run the full sizes. */
int test_quick(void);

/* A hash of everything a cache stores (windows, sinks, pages, counts): equal
 * before and after a failed call means the call changed nothing. */
uint64_t cache_digest(const slimkv_cache *c);

/* Error bound of attention vs the fp32 oracle for a storage format, as
 * scaled_max_error with scale max |v| (see oracle.c for the reasoning). */
double format_error_bound(slimkv_format fmt);

/* SparK records hold no q3 (slimkv_cache_create refuses the pair with
 * SLIMKV_ERR_UNSUPPORTED): loops over policies and formats skip it. */
static inline int test_policy_takes(slimkv_policy policy, slimkv_format k_format)
{
    return !(policy == SLIMKV_POLICY_SPARK && k_format == SLIMKV_Q3);
}

#endif
