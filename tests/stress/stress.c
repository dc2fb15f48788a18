/* `make stress`: the hostile-input campaign, longer than the test suite.
 *
 * - Files: every truncation length of snapshots (every format and policy),
 *   masks and plans, and every single-byte change of the masks and plans:
 *   each is refused with SLIMKV_ERR_FORMAT or loads exactly what was saved
 *   (snapshot flips are in tests/test_snapshot_hostile.c, run by make test).
 * - Random API call sequences against a reference model of the cache (the
 *   fp32 history of every token stored, checked with the dense oracle):
 *   append, prefill, attend, save + restore, and calls that must fail
 *   (non-finite values, capacity, NULLs, zero counts, overlapping buffers),
 *   with the cache's digest compared before and after every failing call.
 * - Concurrent attend on one cache from many threads, bitwise equal to the
 *   serial results (also run under ThreadSanitizer by make stress).
 *
 * STRESS_SEQUENCES sets the number of call sequences (default 60). */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "oracle.h"
#include "small_snapshot.h"
#include "tmpdir.h"

static tmpdir dir;

static int make_dir(void **state)
{
    (void)state;
    return tmpdir_make(&dir);
}

static int remove_dir(void **state)
{
    (void)state;
    tmpdir_remove(&dir);
    return 0;
}

/* ---- files ---- */

static void test_snapshot_truncations(void **state)
{
    (void)state;
    const slimkv_policy policies[] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_STATIC, SLIMKV_POLICY_THINK,
                                      SLIMKV_POLICY_SPARK};
    char good[512], bad[512];
    tmpdir_file(&dir, "snap.safetensors", good, sizeof good);
    tmpdir_file(&dir, "cut.safetensors", bad, sizeof bad);
    long cuts = 0;
    for (int p = 0; p < 4; p++)
        for (int f = 0; f < SLIMKV_FORMAT_COUNT; f++) {
            if (!test_policy_takes(policies[p], (slimkv_format)f))
                continue;
            slimkv_config cfg =
                small_snapshot_config(policies[p], (slimkv_format)f, (slimkv_format)((f + 1) % SLIMKV_FORMAT_COUNT));
            slimkv_cache *src = small_snapshot_cache(&cfg, 3), *target = small_snapshot_cache(&cfg, 4);
            assert_int_equal(slimkv_cache_save(src, good), SLIMKV_OK);
            uint64_t before = cache_digest(target);
            size_t n;
            uint8_t *bytes = small_read_file(good, &n);
            small_write_file(bad, bytes, n);
            for (size_t len = n; len-- > 0;) { /* shorter and shorter: one file, truncated in place */
                assert_int_equal(truncate(bad, (off_t)len), 0);
                slimkv_status st = slimkv_cache_restore(target, bad);
                if (st != SLIMKV_ERR_FORMAT || cache_digest(target) != before)
                    fail_msg("policy %d format %d: snapshot cut to %zu of %zu bytes gave %s", p, f, len, n,
                             slimkv_status_str(st));
                cuts++;
            }
            free(bytes);
            slimkv_cache_destroy(src);
            slimkv_cache_destroy(target);
        }
    print_message("  %ld snapshot truncations refused\n", cuts);
}

/* Masks and plans: every flip and every cut refused, or the same content. */
static int masks_equal(const slimkv_masks *a, const slimkv_masks *b)
{
    int la, ha, da, lb, hb, db;
    slimkv_masks_shape(a, &la, &ha, &da);
    slimkv_masks_shape(b, &lb, &hb, &db);
    if (la != lb || ha != hb || da != db)
        return 0;
    for (int layer = 0; layer < la; layer++) {
        slimkv_config ca, cb;
        slimkv_config_init(&ca);
        slimkv_config_init(&cb);
        ca.n_kv_heads = cb.n_kv_heads = ha;
        ca.head_dim = cb.head_dim = da;
        if (slimkv_masks_apply(a, layer, &ca) != SLIMKV_OK || slimkv_masks_apply(b, layer, &cb) != SLIMKV_OK)
            return 0;
        size_t n = (size_t)ha * da;
        if (memcmp(ca.k_mask, cb.k_mask, n) != 0 || !ca.v_mask != !cb.v_mask ||
            (ca.v_mask && memcmp(ca.v_mask, cb.v_mask, n) != 0))
            return 0;
    }
    return 1;
}

/* Every layer of the plan gives a config that creates a cache. */
static int plan_usable(const slimkv_plan *p)
{
    int layers;
    if (slimkv_plan_layers(p, &layers) != SLIMKV_OK || layers < 1)
        return 0;
    for (int layer = 0; layer < layers; layer++) {
        slimkv_config cfg;
        slimkv_cache *c;
        slimkv_config_init(&cfg);
        if (slimkv_plan_layer_config(p, layer, &cfg) != SLIMKV_OK)
            return 0;
        cfg.n_q_heads = cfg.n_kv_heads;
        cfg.capacity = 64;
        if (slimkv_cache_create(&cfg, &c) != SLIMKV_OK)
            return 0;
        slimkv_cache_destroy(c);
    }
    return 1;
}

typedef struct file_kind {
    const char *what;
    int plan; /* 0: slimkv_masks_load, 1: slimkv_plan_load */
} file_kind;

/* 0: refused with FORMAT; 1: loaded the same as want_masks / want_plan;
 * 2: (plans) another valid, usable plan; -1: anything else. */
static int load_outcome(const file_kind *kind, const char *path, const slimkv_masks *want_masks,
                        const slimkv_plan *want_plan)
{
    if (!kind->plan) {
        slimkv_masks *m = NULL;
        slimkv_status st = slimkv_masks_load(path, &m);
        if (st != SLIMKV_OK)
            return st == SLIMKV_ERR_FORMAT && !m ? 0 : -1;
        int same = masks_equal(m, want_masks);
        slimkv_masks_destroy(m);
        return same ? 1 : -1;
    }
    slimkv_plan *p = NULL;
    slimkv_status st = slimkv_plan_load(path, &p);
    if (st != SLIMKV_OK)
        return st == SLIMKV_ERR_FORMAT && !p ? 0 : -1;
    int usable = plan_usable(p), same = 0;
    if (usable) { /* the same plan: saving it gives the same bytes as saving the original */
        char a[512], b[512];
        tmpdir_file(&dir, "plan-a.safetensors", a, sizeof a);
        tmpdir_file(&dir, "plan-b.safetensors", b, sizeof b);
        if (slimkv_plan_save(a, p) == SLIMKV_OK && slimkv_plan_save(b, want_plan) == SLIMKV_OK) {
            size_t na, nb;
            uint8_t *x = small_read_file(a, &na), *y = small_read_file(b, &nb);
            same = na == nb && memcmp(x, y, na) == 0;
            free(x);
            free(y);
        }
    }
    slimkv_plan_destroy(p);
    /* A plan has no checksum: a setting changed to another valid value
     * ("n_sink":"0" -> "1") is another valid plan. What loads must then be
     * usable: every layer's config creates a cache. */
    return !usable ? -1 : same ? 1 : 2;
}

static void test_mask_and_plan_files(void **state)
{
    (void)state;
    enum { LAYERS = 2, HEADS = 2, DIM = 8 };
    uint8_t k[LAYERS * HEADS * DIM], v[LAYERS * HEADS * DIM];
    for (int i = 0; i < LAYERS * HEADS * DIM; i++) {
        k[i] = (uint8_t)(i % 3 != 0);
        v[i] = (uint8_t)(i % 5 != 0);
    }
    char good[512], bad[512];
    tmpdir_file(&dir, "good.safetensors", good, sizeof good);
    tmpdir_file(&dir, "bad.safetensors", bad, sizeof bad);
    slimkv_config settings;
    slimkv_config_init(&settings);
    settings.n_kv_heads = HEADS;
    settings.head_dim = DIM;
    settings.k_format = SLIMKV_Q4;
    settings.v_format = SLIMKV_Q8;
    settings.channel_align = 4;
    slimkv_plan *plan;
    assert_int_equal(slimkv_plan_create(&settings, LAYERS, k, v, &plan), SLIMKV_OK);
    const file_kind kinds[] = {{"masks", 0}, {"plan", 1}};
    long flips = 0, cuts = 0, same = 0, other_valid = 0;
    for (int kind = 0; kind < 2; kind++) {
        if (kinds[kind].plan)
            assert_int_equal(slimkv_plan_save(good, plan), SLIMKV_OK);
        else
            assert_int_equal(slimkv_masks_save(good, LAYERS, HEADS, DIM, k, v), SLIMKV_OK);
        slimkv_masks *want = NULL;
        if (!kinds[kind].plan)
            assert_int_equal(slimkv_masks_load(good, &want), SLIMKV_OK);
        assert_int_equal(load_outcome(&kinds[kind], good, want, plan), 1); /* the control */
        size_t n;
        uint8_t *bytes = small_read_file(good, &n);
        size_t data_start = 8;
        for (int b = 0; b < 8; b++)
            data_start += (size_t)bytes[b] << (8 * b);
        for (size_t i = 0; i < n; i++) {
            for (int x = 0; x < 2; x++) { /* two changes per byte: case/space flip and the low bit */
                uint8_t saved = bytes[i];
                bytes[i] ^= x ? 0x01 : 0x20;
                small_write_file(bad, bytes, n);
                bytes[i] = saved;
                /* A masks file has no checksum: a value byte 0 <-> 1 is another
                 * valid mask, and must load as exactly that one. (A plan's
                 * counts then disagree with its masks: refused.) */
                slimkv_masks *toggled = NULL;
                size_t o = i - data_start, n_mask = (size_t)LAYERS * HEADS * DIM;
                if (!kinds[kind].plan && x == 1 && i >= data_start) {
                    uint8_t k2[LAYERS * HEADS * DIM], v2[LAYERS * HEADS * DIM];
                    memcpy(k2, k, sizeof k2);
                    memcpy(v2, v, sizeof v2);
                    if (o < n_mask)
                        k2[o] ^= 1;
                    else
                        v2[o - n_mask] ^= 1;
                    char alt[512];
                    tmpdir_file(&dir, "toggled.safetensors", alt, sizeof alt);
                    assert_int_equal(slimkv_masks_save(alt, LAYERS, HEADS, DIM, k2, v2), SLIMKV_OK);
                    assert_int_equal(slimkv_masks_load(alt, &toggled), SLIMKV_OK);
                }
                int r = load_outcome(&kinds[kind], bad, toggled ? toggled : want, plan);
                slimkv_masks_destroy(toggled);
                if (r < 0)
                    fail_msg("%s: byte %zu of %zu ^ 0x%02x loaded something else or unusable (or another status)",
                             kinds[kind].what, i, n, x ? 1 : 0x20);
                same += r == 1;
                other_valid += r == 2;
                flips++;
            }
        }
        for (size_t len = 0; len < n; len++) {
            small_write_file(bad, bytes, len);
            if (load_outcome(&kinds[kind], bad, want, plan) != 0)
                fail_msg("%s cut to %zu of %zu bytes was not refused", kinds[kind].what, len, n);
            cuts++;
        }
        free(bytes);
        slimkv_masks_destroy(want);
    }
    slimkv_plan_destroy(plan);
    print_message("  masks and plans: %ld byte changes (%ld loaded the same content, %ld another valid plan),"
                  " %ld truncations refused\n",
                  flips, same, other_valid, cuts);
}

/* ---- random call sequences against a reference model ---- */

enum { RQ = 4, RKV = 2, RDIM = 32, RCAP = 400 };

typedef struct model {
    slimkv_config cfg;
    slimkv_cache *c;
    float *k, *v;  /* [RCAP][RKV][RDIM]: every token stored, fp32 */
    int n;
    uint8_t mask[RKV * RDIM];
} model;

static void model_check_attend(model *m, test_rng *r, int nq)
{
    float q[8 * RQ * RDIM], out[8 * RQ * RDIM], want[8 * RQ * RDIM];
    fill_normal(r, q, (size_t)nq * RQ * RDIM, 0.4f);
    assert_int_equal(slimkv_attend(m->c, q, nq, out), SLIMKV_OK);
    oracle_cfg ocfg;
    uint8_t *km, *vm;
    oracle_from_cache(&m->cfg, m->c, &ocfg, &km, &vm);
    oracle_attend(&ocfg, m->k, m->v, m->n, q, nq, want);
    double err = scaled_max_error(out, want, (size_t)nq * RQ * RDIM, max_abs(m->v, (size_t)m->n * RKV * RDIM));
    double bound = format_error_bound(m->cfg.k_format) > format_error_bound(m->cfg.v_format)
                       ? format_error_bound(m->cfg.k_format)
                       : format_error_bound(m->cfg.v_format);
    if (!(err <= bound))
        fail_msg("K %s V %s, %d tokens, %d queries: error %.3g > %.3g", slimkv_format_name(m->cfg.k_format),
                 slimkv_format_name(m->cfg.v_format), m->n, nq, err, bound);
    free(km);
    free(vm);
}

/* A call that must fail with `want` and leave the cache as it was. */
#define EXPECT_FAILS(m, call, want)                                                                      \
    do {                                                                                                 \
        uint64_t before_ = cache_digest((m)->c);                                                         \
        slimkv_status st_ = (call);                                                                      \
        if (st_ != (want) || cache_digest((m)->c) != before_)                                            \
            fail_msg("%s gave %s (wanted %s) or changed the cache", #call, slimkv_status_str(st_),        \
                     slimkv_status_str(want));                                                           \
        failing++;                                                                                       \
    } while (0)

static long failing, calls;

static void run_sequence(uint64_t seed)
{
    test_rng r;
    rng_seed(&r, seed);
    model m;
    memset(&m, 0, sizeof m);
    slimkv_config_init(&m.cfg);
    m.cfg.n_q_heads = RQ;
    m.cfg.n_kv_heads = RKV;
    m.cfg.head_dim = RDIM;
    m.cfg.capacity = RCAP;
    m.cfg.k_format = (slimkv_format)(seed % 6);
    m.cfg.v_format = (slimkv_format)(seed / 6 % 6);
    m.cfg.group_size = seed % 3 == 0 ? 16 : 32;
    m.cfg.residual = m.cfg.group_size * (int)(seed % 3);
    m.cfg.n_sink = (int)(seed % 4);
    if (seed % 2) {
        for (int i = 0; i < RKV * RDIM; i++)
            m.mask[i] = (uint8_t)((i * 7 + (int)seed) % 3 != 0);
        m.cfg.policy = SLIMKV_POLICY_STATIC;
        m.cfg.k_mask = m.mask;
    }
    assert_int_equal(slimkv_cache_create(&m.cfg, &m.c), SLIMKV_OK);
    size_t row = (size_t)RKV * RDIM;
    m.k = malloc((size_t)RCAP * row * sizeof(float));
    m.v = malloc((size_t)RCAP * row * sizeof(float));
    float *kbuf = malloc(64 * row * sizeof(float)), *vbuf = malloc(64 * row * sizeof(float));
    float *qbuf = malloc(64 * RQ * RDIM * sizeof(float)), *out = malloc(64 * RQ * RDIM * sizeof(float));
    char path[512];
    tmpdir_file(&dir, "seq.safetensors", path, sizeof path);
    for (int step = 0; step < 40; step++) {
        int op = (int)((rng_uniform(&r) + 1.0f) * 4.0f) % 8, cnt = 1 + (int)((rng_uniform(&r) + 1.0f) * 16.0f) % 40;
        calls++;
        if (op <= 2 && m.n + cnt <= RCAP) { /* append or prefill */
            fill_keys(&r, kbuf, cnt, m.n, RKV, RDIM);
            fill_normal(&r, vbuf, (size_t)cnt * row, 1.0f);
            slimkv_status st;
            if (op == 2) {
                fill_normal(&r, qbuf, (size_t)cnt * RQ * RDIM, 0.4f);
                st = slimkv_cache_prefill(m.c, qbuf, kbuf, vbuf, cnt, out);
            } else {
                st = slimkv_cache_append(m.c, kbuf, vbuf, cnt);
            }
            assert_int_equal(st, SLIMKV_OK);
            memcpy(m.k + (size_t)m.n * row, kbuf, (size_t)cnt * row * sizeof(float));
            memcpy(m.v + (size_t)m.n * row, vbuf, (size_t)cnt * row * sizeof(float));
            m.n += cnt;
            int held;
            assert_int_equal(slimkv_cache_tokens(m.c, &held), SLIMKV_OK);
            assert_int_equal(held, m.n);
        } else if (op <= 4 && m.n > 0) { /* attend, against the oracle */
            model_check_attend(&m, &r, 1 + cnt % (m.n < 8 ? m.n : 8));
        } else if (op == 5) { /* save and restore into a fresh cache: the same state */
            assert_int_equal(slimkv_cache_save(m.c, path), SLIMKV_OK);
            slimkv_cache *copy;
            assert_int_equal(slimkv_cache_create(&m.cfg, &copy), SLIMKV_OK);
            assert_int_equal(slimkv_cache_restore(copy, path), SLIMKV_OK);
            assert_true(cache_digest(copy) == cache_digest(m.c));
            slimkv_cache_destroy(m.c);
            m.c = copy; /* go on with the restored one */
        } else { /* calls that must fail, cache unchanged */
            cnt = m.n + cnt <= RCAP ? cnt : RCAP - m.n; /* within the capacity: the bad value is what fails */
            if (cnt < 1)
                continue;
            fill_normal(&r, kbuf, (size_t)cnt * row, 1.0f);
            fill_normal(&r, vbuf, (size_t)cnt * row, 1.0f);
            fill_normal(&r, qbuf, (size_t)cnt * RQ * RDIM, 0.4f);
            int which = (int)((rng_uniform(&r) + 1.0f) * 4.0f) % 8;
            size_t at = (size_t)((rng_uniform(&r) + 1.0f) * 0.5f * (float)(cnt * row - 1));
            switch (which) {
            case 0:
                kbuf[at] = NAN;
                EXPECT_FAILS(&m, slimkv_cache_append(m.c, kbuf, vbuf, cnt), SLIMKV_ERR_NONFINITE);
                break;
            case 1:
                vbuf[at] = -INFINITY;
                EXPECT_FAILS(&m, slimkv_cache_prefill(m.c, qbuf, kbuf, vbuf, cnt, out), SLIMKV_ERR_NONFINITE);
                break;
            case 2:
                EXPECT_FAILS(&m, slimkv_cache_append(m.c, kbuf, vbuf, RCAP - m.n + 1), SLIMKV_ERR_CAPACITY);
                break;
            case 3:
                EXPECT_FAILS(&m, slimkv_cache_append(m.c, kbuf, NULL, cnt), SLIMKV_ERR_NULL_ARG);
                break;
            case 4:
                EXPECT_FAILS(&m, slimkv_cache_append(m.c, kbuf, vbuf, 0), SLIMKV_ERR_INVALID_ARG);
                break;
            case 5:
                EXPECT_FAILS(&m, slimkv_cache_prefill(m.c, qbuf, kbuf, vbuf, 1, qbuf), SLIMKV_ERR_INVALID_ARG);
                break;
            case 6:
                EXPECT_FAILS(&m, slimkv_attend(m.c, qbuf, m.n + 1, out), SLIMKV_ERR_INVALID_ARG);
                break;
            default:
                if (m.n > 0) {
                    qbuf[at % (RQ * RDIM)] = NAN;
                    EXPECT_FAILS(&m, slimkv_attend(m.c, qbuf, 1, out), SLIMKV_ERR_NONFINITE);
                }
                break;
            }
        }
    }
    free(kbuf);
    free(vbuf);
    free(qbuf);
    free(out);
    free(m.k);
    free(m.v);
    slimkv_cache_destroy(m.c);
}

static void test_random_call_sequences(void **state)
{
    (void)state;
    const char *env = getenv("STRESS_SEQUENCES");
    int sequences = env && atoi(env) > 0 ? atoi(env) : 60;
    for (int s = 0; s < sequences; s++)
        run_sequence(1000 + (uint64_t)s);
    print_message("  %d sequences, %ld calls, %ld failing calls with the cache unchanged\n", sequences, calls,
                  failing);
}

/* ---- concurrent attend on one cache ---- */

enum { THREADS = 8, ROUNDS = 6 };

typedef struct reader {
    pthread_t thread;
    const slimkv_cache *c;
    const float *q;
    float out[ROUNDS][RQ * RDIM];
    slimkv_status st;
} reader;

static void *reader_main(void *arg)
{
    reader *rd = arg;
    rd->st = SLIMKV_OK;
    for (int i = 0; i < ROUNDS && rd->st == SLIMKV_OK; i++)
        rd->st = slimkv_attend(rd->c, rd->q + (size_t)i * RQ * RDIM, 1, rd->out[i]);
    return NULL;
}

static void test_concurrent_attend(void **state)
{
    (void)state;
    if (!test_threads_allowed())
        skip();
    for (int f = 0; f < SLIMKV_FORMAT_COUNT; f++) {
        slimkv_config cfg;
        slimkv_config_init(&cfg);
        cfg.n_q_heads = RQ;
        cfg.n_kv_heads = RKV;
        cfg.head_dim = RDIM;
        cfg.capacity = RCAP;
        cfg.k_format = cfg.v_format = (slimkv_format)f;
        cfg.residual = 32;
        slimkv_cache *c;
        assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
        size_t row = (size_t)RKV * RDIM;
        float *k = malloc((size_t)RCAP * row * sizeof(float)), *v = malloc((size_t)RCAP * row * sizeof(float));
        float *q = malloc((size_t)THREADS * ROUNDS * RQ * RDIM * sizeof(float));
        test_rng r;
        rng_seed(&r, 50 + (uint64_t)f);
        fill_keys(&r, k, RCAP, 0, RKV, RDIM);
        fill_normal(&r, v, (size_t)RCAP * row, 1.0f);
        fill_normal(&r, q, (size_t)THREADS * ROUNDS * RQ * RDIM, 0.4f);
        assert_int_equal(slimkv_cache_append(c, k, v, RCAP - 3), SLIMKV_OK);
        reader serial[THREADS], parallel[THREADS];
        for (int t = 0; t < THREADS; t++) {
            serial[t].c = parallel[t].c = c;
            serial[t].q = parallel[t].q = q + (size_t)t * ROUNDS * RQ * RDIM;
            reader_main(&serial[t]);
            assert_int_equal(serial[t].st, SLIMKV_OK);
        }
        for (int t = 0; t < THREADS; t++)
            assert_int_equal(pthread_create(&parallel[t].thread, NULL, reader_main, &parallel[t]), 0);
        for (int t = 0; t < THREADS; t++) {
            pthread_join(parallel[t].thread, NULL);
            assert_int_equal(parallel[t].st, SLIMKV_OK);
            assert_memory_equal(parallel[t].out, serial[t].out, sizeof serial[t].out);
        }
        free(k);
        free(v);
        free(q);
        slimkv_cache_destroy(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_attend),
        cmocka_unit_test(test_random_call_sequences),
        cmocka_unit_test(test_mask_and_plan_files),
        cmocka_unit_test(test_snapshot_truncations),
    };
    /* STRESS_THREADS_ONLY=1 (the ThreadSanitizer run): the thread test alone */
    const char *only = getenv("STRESS_THREADS_ONLY");
    size_t n = only && strcmp(only, "1") == 0 ? 1 : sizeof tests / sizeof *tests;
    return _cmocka_run_group_tests("stress", tests, n, make_dir, remove_dir);
}
