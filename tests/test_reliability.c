/* Faults and concurrency: the N-th allocation fails for every N along each
 * path (SLIMKV_ERR_NOMEM, nothing changed, nothing leaked), and caches used
 * from several threads at once give the serial results. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fault_alloc.h"
#include "oracle.h"


static slimkv_config small_config(slimkv_policy policy)
{
    /* i % 3 == 0 || i >= 56, written out: worker threads call this at once
     * (filling a shared static here was a data race ThreadSanitizer found) */
    static const uint8_t mask[2 * 32] = {
        1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1,
        0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0,
        0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0,
        1, 0, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    slimkv_config c;
    slimkv_config_init(&c);
    c.n_q_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 32;
    c.capacity = 700;
    c.k_format = SLIMKV_Q4;
    c.v_format = SLIMKV_Q2;
    c.residual = 32;
    c.n_sink = 3;
    c.policy = policy;
    if (policy == SLIMKV_POLICY_STATIC)
        c.k_mask = mask;
    return c;
}

typedef struct data {
    float *q, *k, *v;
} data;

static data make_data(int n, uint64_t seed)
{
    data d;
    test_rng r;
    rng_seed(&r, seed);
    d.q = malloc((size_t)n * 4 * 32 * sizeof(float));
    d.k = malloc((size_t)n * 2 * 32 * sizeof(float));
    d.v = malloc((size_t)n * 2 * 32 * sizeof(float));
    fill_keys(&r, d.k, n, 0, 2, 32);
    fill_normal(&r, d.v, (size_t)n * 64, 1.0f);
    fill_normal(&r, d.q, (size_t)n * 128, 0.5f);
    return d;
}

static void free_data(data *d)
{
    free(d->q);
    free(d->k);
    free(d->v);
}

static void test_create_fails_cleanly(void **state)
{
    (void)state;
    const slimkv_policy policies[] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_STATIC, SLIMKV_POLICY_SPARK};
    for (int p = 0; p < 3; p++) {
        slimkv_config cfg = small_config(policies[p]);
        long n;
        for (n = 1;; n++) {
            faults.live = 0;
            install_faults(n);
            slimkv_cache *c = (slimkv_cache *)0x1;
            slimkv_status st = slimkv_cache_create(&cfg, &c);
            if (st == SLIMKV_OK) {
                slimkv_cache_destroy(c);
                assert_int_equal(faults.live, 0);
                break;
            }
            assert_int_equal(st, SLIMKV_ERR_NOMEM);
            assert_ptr_equal(c, (slimkv_cache *)0x1);
            assert_int_equal(faults.live, 0); /* nothing leaked */
        }
        assert_true(n > 3); /* the loop really went through several allocations */
    }
}

/* Append, prefill and attend with the N-th allocation failing, for every N
 * the call makes: each failure returns NOMEM and changes nothing. */
static void test_calls_fail_cleanly(void **state)
{
    (void)state;
    data d = make_data(700, 7);
    /* the third: the rotated copies of rotate = 1 are allocations too */
    const slimkv_policy policies[] = {SLIMKV_POLICY_STATIC, SLIMKV_POLICY_THINK, SLIMKV_POLICY_NONE};
    for (int p = 0; p < 3; p++) {
        slimkv_config cfg = small_config(policies[p]);
        cfg.rotate = policies[p] == SLIMKV_POLICY_NONE ? SLIMKV_ROTATE_K | SLIMKV_ROTATE_V : 0;
        install_faults(0);
        faults.live = 0;
        slimkv_cache *c;
        assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
        float *out = malloc((size_t)700 * 128 * sizeof(float));
        int done = 0;
        /* prefill 100 (ThinK chooses here and the first pages open), then
         * appends; 300 tokens in all cross into a second page (8 groups) */
        const int steps[] = {100, 1, 150, 7, 42};
        for (int s = 0; s < 5; s++) {
            long calls_needed = 0;
            for (long n = 1;; n++) {
                uint64_t before = cache_digest(c);
                install_faults(n);
                slimkv_status st = s == 0 ? slimkv_cache_prefill(c, d.q, d.k, d.v, steps[s], out)
                                          : slimkv_cache_append(c, d.k + (size_t)done * 64, d.v + (size_t)done * 64,
                                                                steps[s]);
                if (st == SLIMKV_OK) {
                    calls_needed = n;
                    break;
                }
                assert_int_equal(st, SLIMKV_ERR_NOMEM);
                assert_true(cache_digest(c) == before);
                if (policies[p] == SLIMKV_POLICY_THINK && s == 0) /* a failed first prefill chose nothing */
                    assert_int_equal(slimkv_cache_append(c, d.k, d.v, 1), SLIMKV_ERR_STATE);
            }
            assert_true(calls_needed >= 1);
            done += steps[s];
            /* attend: its scratch allocations fail cleanly too */
            for (long n = 1;; n++) {
                install_faults(n);
                slimkv_status st = slimkv_attend(c, d.q, 2, out);
                if (st == SLIMKV_OK)
                    break;
                assert_int_equal(st, SLIMKV_ERR_NOMEM);
            }
        }
        install_faults(0);
        int held;
        slimkv_cache_tokens(c, &held);
        assert_int_equal(held, done);
        slimkv_cache_destroy(c);
        assert_int_equal(faults.live, 0);
        free(out);
    }
    free_data(&d);
}

/* ---- concurrency: one cache per thread, all at once ---- */

typedef struct worker {
    pthread_t thread;
    int index;
    const data *d;
    float out[2 * 4 * 32];
    slimkv_status status;
} worker;

/* Each worker's own sequence: its cache, appended in its own chunking. */
static slimkv_status run_sequence(int index, const data *d, float *out)
{
    slimkv_config cfg = small_config(index % 2 ? SLIMKV_POLICY_STATIC : SLIMKV_POLICY_NONE);
    cfg.k_format = (slimkv_format)(index % 6);
    slimkv_cache *c;
    slimkv_status st = slimkv_cache_create(&cfg, &c);
    if (st != SLIMKV_OK)
        return st;
    int n = 400 + 37 * index, done = 0;
    while (st == SLIMKV_OK && done < n) {
        int m = n - done < 13 + index ? n - done : 13 + index;
        st = slimkv_cache_append(c, d->k + (size_t)done * 64, d->v + (size_t)done * 64, m);
        done += m;
        if (st == SLIMKV_OK && done % 5 == 0)
            st = slimkv_attend(c, d->q, 2, out);
    }
    if (st == SLIMKV_OK)
        st = slimkv_attend(c, d->q + (size_t)index * 128, 2, out);
    slimkv_cache_destroy(c);
    return st;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    w->status = run_sequence(w->index, w->d, w->out);
    return NULL;
}

static void test_concurrent_caches_match_serial(void **state)
{
    (void)state;
    enum { WORKERS = 6 };
    if (!test_threads_allowed())
        skip();
    data d = make_data(700, 8);
    worker serial[WORKERS], parallel[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        serial[i].index = parallel[i].index = i;
        serial[i].d = parallel[i].d = &d;
        worker_main(&serial[i]);
        assert_int_equal(serial[i].status, SLIMKV_OK);
    }
    for (int i = 0; i < WORKERS; i++)
        assert_int_equal(pthread_create(&parallel[i].thread, NULL, worker_main, &parallel[i]), 0);
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(parallel[i].thread, NULL);
        assert_int_equal(parallel[i].status, SLIMKV_OK);
        assert_memory_equal(parallel[i].out, serial[i].out, sizeof serial[i].out);
    }
    free_data(&d);
}

static void test_allocator_validation(void **state)
{
    (void)state;
    slimkv_allocator a = {fault_malloc, NULL, fault_free, &faults};
    assert_int_equal(slimkv_set_allocator(&a), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_set_allocator(NULL), SLIMKV_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_allocator_validation, teardown_allocator),
        cmocka_unit_test_teardown(test_create_fails_cleanly, teardown_allocator),
        cmocka_unit_test_teardown(test_calls_fail_cleanly, teardown_allocator),
        cmocka_unit_test(test_concurrent_caches_match_serial),
    };
    return cmocka_run_group_tests_name("reliability", tests, NULL, NULL);
}
