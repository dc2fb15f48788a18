/* config.k_outliers: per KV head, the kept K channels of widest range at
 * the first K group's flush are stored at 8 bits, the others in k_format.
 * Checked against an oracle written here from the layout's definition
 * (fp16 window, KIVI fake quantization per channel and group, the choice
 * by range), on every ISA the machine runs; the error it removes on keys
 * with outlier channels; the bytes it costs; what it refuses; and that
 * forks, truncations and snapshots carry the choice. */
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

enum { N_Q = 4, N_KV = 2, DIM = 64, N_TOKENS = 300, PREFILL = 200, N_ATTEND = 3 };

static const char *const isas[] = {"scalar", "avx2", "avx512", "neon", "neon-dotprod"};

typedef struct inputs {
    float *q, *k, *v;
} inputs;

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
    fill_keys(&r, in.k, N_TOKENS, 0, N_KV, DIM); /* a few large, biased channels per head */
    fill_normal(&r, in.v, kv, 1.0f);
    fill_normal(&r, in.q, (size_t)N_TOKENS * N_Q * DIM, 0.5f);
    return in;
}

static void free_inputs(inputs *in)
{
    free(in->q);
    free(in->k);
    free(in->v);
}

typedef struct outlier_case {
    slimkv_format k_format, v_format;
    int k_outliers, group, residual, sinks;
    int masked; /* static K mask keeping 40 of the 64 channels; 2: ThinK 0.4 (40 kept) */
} outlier_case;

static uint8_t k_mask[N_KV * DIM];

static void fill_mask(void)
{
    for (int h = 0; h < N_KV; h++)
        for (int ch = 0; ch < DIM; ch++)
            k_mask[h * DIM + ch] = (ch * 7 + h) % 8 < 5; /* 40 per head */
}

static slimkv_config config_of(const outlier_case *oc, const char *isa)
{
    slimkv_config c;
    slimkv_config_init(&c);
    c.n_q_heads = N_Q;
    c.n_kv_heads = N_KV;
    c.head_dim = DIM;
    c.capacity = N_TOKENS;
    c.k_format = oc->k_format;
    c.v_format = oc->v_format;
    c.group_size = oc->group;
    c.residual = oc->residual;
    c.n_sink = oc->sinks;
    c.k_outliers = oc->k_outliers;
    c.isa = isa;
    if (oc->masked == 1) {
        fill_mask();
        c.policy = SLIMKV_POLICY_STATIC;
        c.k_mask = k_mask;
    } else if (oc->masked == 2) {
        c.policy = SLIMKV_POLICY_THINK;
        c.prune_ratio = 0.4f;
    }
    return c;
}

/* ---- the oracle ---- */

/* x rounded to the nearest binary16 (ties to even), for the values here
 * (finite, far inside the fp16 range). */
static float f16_round(float x)
{
    if (x == 0.0f)
        return x;
    int e;
    frexpf(fabsf(x), &e);                        /* |x| in [2^(e-1), 2^e) */
    int bits = e - 1 >= -14 ? 11 : 24 + e;       /* significant bits kept, fewer below the normals */
    float scale = ldexpf(1.0f, bits - e);
    return copysignf(rintf(fabsf(x) * scale) / scale, x);
}

static int bits_of(slimkv_format f)
{
    return f == SLIMKV_Q8 ? 8 : f == SLIMKV_Q4 ? 4 : f == SLIMKV_Q3 ? 3 : 2;
}

/* KIVI: n values x[i * stride] replaced by their b-bit reconstruction. */
static void fake_quant(float *x, int n, size_t stride, int bits)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, x[i * stride]);
        hi = fmaxf(hi, x[i * stride]);
    }
    float levels = (float)((1 << bits) - 1);
    float s = f16_round((hi - lo) / levels), m = f16_round(lo), inv = s == 0.0f ? 0.0f : 1.0f / s;
    for (int i = 0; i < n; i++) {
        float code = rintf((x[i * stride] - m) * inv);
        code = code < 0.0f ? 0.0f : code > levels ? levels : code;
        x[i * stride] = code * s + m;
    }
}

static int k_body_tokens(const outlier_case *oc, int n)
{
    int x = n - oc->sinks, g = oc->group, over = x - oc->residual;
    if (x <= 0)
        return 0;
    int needed = over > 0 ? (over + g - 1) / g * g : 0, whole = x / g * g;
    return needed < whole ? needed : whole;
}

/* What the cache holds after n tokens, as fp32 rows: everything through
 * the fp16 window; the K body per channel and group (the k_outliers
 * channels of widest range over the first flush's rows at q8, pruned
 * channels 0), the V body per token and group of G channels. */
static void expected_rows(const outlier_case *oc, const float *k, const float *v, int n, float *kh, float *vh)
{
    size_t total = (size_t)n * N_KV * DIM;
    if (oc->masked == 1)
        fill_mask(); /* ThinK: k_mask holds the channels the cache chose */
    for (size_t i = 0; i < total; i++) {
        kh[i] = f16_round(k[i]);
        vh[i] = f16_round(v[i]);
    }
    int s = oc->sinks, g = oc->group, kb = k_body_tokens(oc, n);
    int vb = n - s - oc->residual > 0 ? n - s - oc->residual : 0;
    size_t stride = (size_t)N_KV * DIM;
    for (int h = 0; h < N_KV; h++) {
        int kept[DIM], dk = 0;
        for (int ch = 0; ch < DIM; ch++)
            if (!oc->masked || k_mask[h * DIM + ch])
                kept[dk++] = ch;
        int n_out = oc->k_outliers < dk - 4 ? oc->k_outliers : dk - 4;
        /* first flush: at R + 1 body tokens (G with R = 0) */
        int chooser = oc->residual > 0 ? oc->residual + 1 : g;
        float range[DIM];
        for (int j = 0; j < dk; j++) {
            float lo = INFINITY, hi = -INFINITY;
            for (int t = s; t < s + chooser; t++) {
                float x = kh[(size_t)t * stride + (size_t)h * DIM + kept[j]];
                lo = fminf(lo, x);
                hi = fmaxf(hi, x);
            }
            range[j] = hi - lo;
        }
        for (int j = 0; j < dk; j++) {
            int above = 0;
            for (int i = 0; i < dk; i++)
                above += range[i] > range[j] || (range[i] == range[j] && i < j);
            int bits = above < n_out ? 8 : bits_of(oc->k_format);
            for (int t0 = 0; t0 < kb; t0 += g)
                fake_quant(kh + (size_t)(s + t0) * stride + (size_t)h * DIM + kept[j], g, stride, bits);
        }
        for (int t = s; t < s + kb; t++)
            for (int ch = 0; ch < DIM; ch++)
                if (oc->masked && !k_mask[h * DIM + ch])
                    kh[(size_t)t * stride + (size_t)h * DIM + ch] = 0.0f;
        if (oc->v_format >= SLIMKV_Q8)
            for (int t = s; t < s + vb; t++)
                for (int c0 = 0; c0 < DIM; c0 += g)
                    fake_quant(vh + (size_t)t * stride + (size_t)h * DIM + c0, DIM - c0 < g ? DIM - c0 : g, 1,
                               bits_of(oc->v_format));
    }
}

/* Prefill, then appends in uneven steps, then the last queries attend;
 * with ThinK, k_mask becomes the channels its prefill chose. */
static void run_cache(const slimkv_config *cfg, const inputs *in, float *out)
{
    slimkv_cache *c;
    assert_int_equal(slimkv_cache_create(cfg, &c), SLIMKV_OK);
    float *prefill_out = malloc((size_t)PREFILL * N_Q * DIM * sizeof(float));
    assert_non_null(prefill_out);
    assert_int_equal(slimkv_cache_prefill(c, in->q, in->k, in->v, PREFILL, prefill_out), SLIMKV_OK);
    for (int t = PREFILL; t < N_TOKENS;) {
        int step = N_TOKENS - t < 37 ? N_TOKENS - t : 37;
        size_t off = (size_t)t * N_KV * DIM;
        assert_int_equal(slimkv_cache_append(c, in->k + off, in->v + off, step), SLIMKV_OK);
        t += step;
    }
    assert_int_equal(slimkv_attend(c, in->q + (size_t)(N_TOKENS - N_ATTEND) * N_Q * DIM, N_ATTEND, out), SLIMKV_OK);
    if (cfg->policy == SLIMKV_POLICY_THINK) {
        memset(k_mask, 0, sizeof k_mask);
        for (int h = 0; h < N_KV; h++) {
            int chan[DIM], n;
            assert_int_equal(slimkv_cache_kept_channels(c, h, 0, chan, &n), SLIMKV_OK);
            assert_int_equal(n, 40);
            for (int j = 0; j < n; j++)
                k_mask[h * DIM + chan[j]] = 1;
        }
    }
    free(prefill_out);
    slimkv_cache_destroy(c);
}

static const outlier_case oracle_cases[] = {
    {SLIMKV_Q2, SLIMKV_F16, 8, 32, 64, 4, 0},  /* quantized K, dense V (the mixed bodies) */
    {SLIMKV_Q2, SLIMKV_Q2, 8, 32, 64, 0, 0},   /* both quantized */
    {SLIMKV_Q4, SLIMKV_Q8, 4, 16, 0, 0, 0},    /* R = 0: the first flush at G tokens */
    {SLIMKV_Q3, SLIMKV_Q4, 12, 64, 128, 0, 1}, /* among a static mask's 40 channels */
    {SLIMKV_Q2, SLIMKV_Q3, 60, 32, 64, 0, 0},  /* more asked than a head can give: dk - 4 */
    {SLIMKV_Q3, SLIMKV_F16, 12, 32, 64, 0, 1},
    {SLIMKV_Q2, SLIMKV_Q4, 8, 32, 64, 0, 2},   /* among ThinK's 40, chosen at the prefill before */
};

/* Every case on every ISA equals the oracle to float rounding. */
static void test_matches_oracle(void **state)
{
    (void)state;
    inputs in = make_inputs(1);
    size_t kv = (size_t)N_TOKENS * N_KV * DIM, out_n = (size_t)N_ATTEND * N_Q * DIM;
    float *kh = malloc(kv * sizeof(float)), *vh = malloc(kv * sizeof(float));
    float *want = malloc(out_n * sizeof(float)), *got = malloc(out_n * sizeof(float));
    assert_true(kh && vh && want && got);
    double vmax = max_abs(in.v, kv);
    for (size_t ci = 0; ci < sizeof oracle_cases / sizeof *oracle_cases; ci++) {
        const outlier_case *oc = &oracle_cases[ci];
        for (size_t ii = 0; ii < sizeof isas / sizeof *isas; ii++) {
            if (!slimkv_isa_supported(isas[ii]))
                continue;
            slimkv_config cfg = config_of(oc, isas[ii]);
            run_cache(&cfg, &in, got);
            /* after the cache: ThinK's channels are its choice */
            expected_rows(oc, in.k, in.v, N_TOKENS, kh, vh);
            oracle_cfg o = {N_Q, N_KV, DIM, oc->group, oc->residual, oc->sinks, NULL, NULL, 0, NULL};
            oracle_attend(&o, kh, vh, N_TOKENS, in.q + (size_t)(N_TOKENS - N_ATTEND) * N_Q * DIM, N_ATTEND, want);
            double err = scaled_max_error(got, want, out_n, vmax);
            /* the scalar table computes what the oracle does; the SIMD
             * ones score against an int8 query and accumulate int8
             * weights (simd/x86/quant_avx512.c), 1.7e-3 at most here with
             * or without outliers, where a channel stored or scored wrong
             * costs 1e-2 and more */
            if (err > (strcmp(isas[ii], "scalar") == 0 ? 1e-4 : 3e-3))
                fail_msg("case %zu (K %s + %d outliers, V %s, G %d) on %s: error %g against the oracle", ci,
                         slimkv_format_name(oc->k_format), oc->k_outliers, slimkv_format_name(oc->v_format),
                         oc->group, isas[ii], err);
        }
    }
    free(kh);
    free(vh);
    free(want);
    free(got);
    free_inputs(&in);
}

/* On keys with a few large channels (fill_keys: about three per head, six
 * after RoPE pairs them), 8 outliers at q8 remove a third of q2 K's error
 * (0.0146 against 0.0228 of max |v| when written); what stays is the
 * other 56 channels' own q2 error. */
static void test_error_drops(void **state)
{
    (void)state;
    inputs in = make_inputs(2);
    size_t kv = (size_t)N_TOKENS * N_KV * DIM, out_n = (size_t)N_ATTEND * N_Q * DIM;
    float *want = malloc(out_n * sizeof(float)), *got = malloc(out_n * sizeof(float));
    assert_true(want && got);
    oracle_cfg o = {N_Q, N_KV, DIM, 32, 64, 0, NULL, NULL, 0, NULL};
    oracle_attend(&o, in.k, in.v, N_TOKENS, in.q + (size_t)(N_TOKENS - N_ATTEND) * N_Q * DIM, N_ATTEND, want);
    double err[2];
    for (int with = 0; with < 2; with++) {
        outlier_case oc = {SLIMKV_Q2, SLIMKV_F16, with ? 8 : 0, 32, 64, 0, 0};
        slimkv_config cfg = config_of(&oc, NULL);
        run_cache(&cfg, &in, got);
        err[with] = scaled_max_error(got, want, out_n, max_abs(in.v, kv));
    }
    if (!(err[1] < 0.75 * err[0]))
        fail_msg("q2 K error %g with 8 outliers, %g without", err[1], err[0]);
    free(want);
    free(got);
    free_inputs(&in);
}

/* The K groups grow by exactly the q8 group of the outliers and no more:
 * G = 32, 64 channels, 8 outliers: the q2 group over 56 channels is 512
 * code bytes + 224 parameter bytes (768 rounded to 64), the q8 group over
 * 8 is 256 + 32 (320); 1088 bytes against the 768 of q2 over all 64. */
static void test_bytes(void **state)
{
    (void)state;
    inputs in = make_inputs(3);
    size_t bytes[2];
    for (int with = 0; with < 2; with++) {
        outlier_case oc = {SLIMKV_Q2, SLIMKV_Q2, with ? 8 : 0, 32, 64, 0, 0};
        slimkv_config cfg = config_of(&oc, NULL);
        slimkv_cache *c;
        assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
        assert_int_equal(slimkv_cache_append(c, in.k, in.v, N_TOKENS), SLIMKV_OK);
        assert_int_equal(slimkv_cache_bytes(c, &bytes[with]), SLIMKV_OK);
        slimkv_cache_destroy(c);
    }
    /* 300 tokens, R = 64: 256 body tokens, 8 groups: one page of 8 per head */
    assert_int_equal(bytes[1] - bytes[0], (size_t)N_KV * 8 * (1088 - 768));
    free_inputs(&in);
}

static void test_refused(void **state)
{
    (void)state;
    const struct {
        slimkv_format k_format;
        int k_outliers;
        slimkv_policy policy;
        slimkv_eviction eviction;
        slimkv_backend backend;
        slimkv_status want;
    } cases[] = {
        {SLIMKV_Q2, 6, SLIMKV_POLICY_NONE, SLIMKV_EVICT_NONE, SLIMKV_BACKEND_AUTO, SLIMKV_ERR_INVALID_CONFIG},
        {SLIMKV_Q2, -4, SLIMKV_POLICY_NONE, SLIMKV_EVICT_NONE, SLIMKV_BACKEND_AUTO, SLIMKV_ERR_INVALID_CONFIG},
        {SLIMKV_F16, 8, SLIMKV_POLICY_NONE, SLIMKV_EVICT_NONE, SLIMKV_BACKEND_AUTO, SLIMKV_ERR_INVALID_CONFIG},
        {SLIMKV_Q8, 8, SLIMKV_POLICY_NONE, SLIMKV_EVICT_NONE, SLIMKV_BACKEND_AUTO, SLIMKV_ERR_INVALID_CONFIG},
        {SLIMKV_Q2, 8, SLIMKV_POLICY_SPARK, SLIMKV_EVICT_NONE, SLIMKV_BACKEND_AUTO, SLIMKV_ERR_UNSUPPORTED},
        {SLIMKV_Q2, 8, SLIMKV_POLICY_NONE, SLIMKV_EVICT_H2O, SLIMKV_BACKEND_AUTO, SLIMKV_ERR_UNSUPPORTED},
        {SLIMKV_Q2, 8, SLIMKV_POLICY_NONE, SLIMKV_EVICT_SNAPKV, SLIMKV_BACKEND_AUTO, SLIMKV_ERR_UNSUPPORTED},
        {SLIMKV_Q4, 8, SLIMKV_POLICY_NONE, SLIMKV_EVICT_NONE, SLIMKV_BACKEND_CUDA, SLIMKV_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        outlier_case oc = {cases[i].k_format, SLIMKV_Q2, cases[i].k_outliers, 32, 64, 0, 0};
        slimkv_config cfg = config_of(&oc, NULL);
        cfg.policy = cases[i].policy;
        cfg.eviction = cases[i].eviction;
        cfg.backend = cases[i].backend;
        slimkv_cache *c = (slimkv_cache *)&cfg; /* must stay untouched */
        slimkv_status st = slimkv_cache_create(&cfg, &c);
        if (st != cases[i].want)
            fail_msg("case %zu: %s, want %s", i, slimkv_status_str(st), slimkv_status_str(cases[i].want));
        assert_ptr_equal(c, (slimkv_cache *)&cfg);
    }
    /* auto lands on the CPU */
    outlier_case oc = {SLIMKV_Q2, SLIMKV_Q2, 8, 32, 64, 0, 0};
    slimkv_config cfg = config_of(&oc, NULL);
    slimkv_cache *c;
    slimkv_backend b;
    assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
    assert_int_equal(slimkv_cache_backend(c, &b), SLIMKV_OK);
    assert_int_equal(b, SLIMKV_BACKEND_CPU);
    slimkv_cache_destroy(c);
}

static void attend_last(const slimkv_cache *c, const inputs *in, int n, float *out)
{
    assert_int_equal(slimkv_attend(c, in->q + (size_t)(n - 1) * N_Q * DIM, 1, out), SLIMKV_OK);
}

static slimkv_cache *filled(const slimkv_config *cfg, const float *k, const float *v, int n)
{
    slimkv_cache *c;
    assert_int_equal(slimkv_cache_create(cfg, &c), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(c, k, v, n), SLIMKV_OK);
    return c;
}

/* A fork and a snapshot carry the choice; a truncation leaves what
 * appending the kept tokens would have, and one back to before the first
 * flush lets the next flush choose afresh. */
static void test_fork_truncate_snapshot(void **state)
{
    (void)state;
    inputs in = make_inputs(4), other = make_inputs(5);
    outlier_case oc = {SLIMKV_Q2, SLIMKV_Q2, 8, 32, 64, 0, 0};
    slimkv_config cfg = config_of(&oc, NULL);
    float out_a[N_Q * DIM], out_b[N_Q * DIM];
    slimkv_cache *a = filled(&cfg, in.k, in.v, N_TOKENS), *fork, *fresh;

    assert_int_equal(slimkv_cache_fork(a, &fork), SLIMKV_OK);
    assert_int_equal(cache_digest(fork), cache_digest(a));
    attend_last(a, &in, N_TOKENS, out_a);
    attend_last(fork, &in, N_TOKENS, out_b);
    assert_memory_equal(out_a, out_b, sizeof out_a);

    /* within the body the choice stays: as close to a new cache as q2 allows */
    assert_int_equal(slimkv_cache_truncate(fork, 170), SLIMKV_OK);
    fresh = filled(&cfg, in.k, in.v, 170);
    attend_last(fork, &in, 170, out_a);
    attend_last(fresh, &in, 170, out_b);
    double err = scaled_max_error(out_a, out_b, (size_t)N_Q * DIM, max_abs(in.v, (size_t)170 * N_KV * DIM));
    if (err > format_error_bound(SLIMKV_Q2))
        fail_msg("truncated to 170: error %g against a new cache", err);
    slimkv_cache_destroy(fresh);
    attend_last(a, &in, N_TOKENS, out_a);

    /* 80 tokens (one K group flushed, every row still in the window), back
     * to 40 (no K body), then other keys: the next flush chooses from them,
     * byte for byte as a new cache does */
    size_t off = (size_t)40 * N_KV * DIM, all = (size_t)N_TOKENS * N_KV * DIM;
    float *k2 = malloc(all * sizeof(float));
    assert_non_null(k2);
    memcpy(k2, in.k, off * sizeof(float));
    memcpy(k2 + off, other.k + off, (all - off) * sizeof(float));
    for (int ch = 0; ch < DIM; ch += 3) /* new widest channels on head 0 */
        for (int t = 40; t < N_TOKENS; t++)
            k2[(size_t)t * N_KV * DIM + ch] *= 9.0f;
    slimkv_cache *b = filled(&cfg, in.k, in.v, 80);
    assert_int_equal(slimkv_cache_truncate(b, 40), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(b, k2 + off, in.v + off, N_TOKENS - 40), SLIMKV_OK);
    fresh = filled(&cfg, k2, in.v, N_TOKENS);
    assert_int_equal(cache_digest(b), cache_digest(fresh));
    slimkv_cache_destroy(fresh);
    slimkv_cache_destroy(b);

    /* snapshots: the same cache back, and a cache without outliers refuses it */
    tmpdir dir;
    char path[300];
    assert_int_equal(tmpdir_make(&dir), 0);
    tmpdir_file(&dir, "outliers.safetensors", path, sizeof path);
    assert_int_equal(slimkv_cache_save(a, path), SLIMKV_OK);
    slimkv_cache *back;
    assert_int_equal(slimkv_cache_create(&cfg, &back), SLIMKV_OK);
    assert_int_equal(slimkv_cache_restore(back, path), SLIMKV_OK);
    assert_int_equal(cache_digest(back), cache_digest(a));
    attend_last(back, &in, N_TOKENS, out_b);
    assert_memory_equal(out_a, out_b, sizeof out_a);
    slimkv_config plain = cfg;
    plain.k_outliers = 0;
    slimkv_cache *p;
    assert_int_equal(slimkv_cache_create(&plain, &p), SLIMKV_OK);
    uint64_t before = cache_digest(p);
    assert_int_equal(slimkv_cache_restore(p, path), SLIMKV_ERR_MISMATCH);
    assert_int_equal(cache_digest(p), before);
    slimkv_cache_destroy(p);
    slimkv_cache_destroy(back);
    tmpdir_remove(&dir);

    free(k2);
    slimkv_cache_destroy(a);
    slimkv_cache_destroy(fork);
    free_inputs(&in);
    free_inputs(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_oracle),
        cmocka_unit_test(test_error_drops),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_fork_truncate_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
