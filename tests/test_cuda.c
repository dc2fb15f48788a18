/* The CUDA backend against the CPU: every scenario runs the same calls on a
 * CPU cache (scalar kernels: the float oracle of the stored formats) and on
 * a CUDA cache, and compares what they answer and hold.
 *
 * Which plugin runs is the environment's choice (SLIMKV_CUDA_PLUGIN):
 * `make test` runs this program on the host emulator build of the plugin
 * (libslimkv_cuda_emu.so: the same .cu sources, kernels run on the CPU), and
 * on the real plugin when nvcc built it, where it skips without a GPU. */
#include <dlfcn.h>
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
#include "slimkv.h"

/* Both caches compute on the same stored bytes; only float summation order
 * differs. Relative to max |v|, like the other attention tests. */
#define AGREEMENT 2e-4

static void *plugin_handle(void)
{
    const char *path = getenv("SLIMKV_CUDA_PLUGIN");
    return path && *path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
}

/* Skips the test (saying why) unless CUDA caches can be made here. */
#define NEED_CUDA()                                                                 \
    do {                                                                            \
        const char *why_;                                                           \
        if (slimkv_cuda_available(&why_) != SLIMKV_OK) {                             \
            print_message("skipped: %s\n", why_);                                   \
            skip();                                                                 \
        }                                                                           \
    } while (0)

typedef struct pair {
    slimkv_config cfg;
    slimkv_cache *cpu, *gpu;
} pair;

static void pair_create(pair *p, const slimkv_config *cfg)
{
    p->cfg = *cfg;
    slimkv_config c = *cfg;
    c.backend = SLIMKV_BACKEND_CPU;
    c.isa = "scalar";
    c.device_pointers = 0;
    assert_int_equal(slimkv_cache_create(&c, &p->cpu), SLIMKV_OK);
    c = *cfg;
    c.backend = SLIMKV_BACKEND_CUDA;
    assert_int_equal(slimkv_cache_create(&c, &p->gpu), SLIMKV_OK);
    slimkv_backend b;
    assert_int_equal(slimkv_cache_backend(p->gpu, &b), SLIMKV_OK);
    assert_int_equal(b, SLIMKV_BACKEND_CUDA);
    const char *isa;
    assert_int_equal(slimkv_cache_isa(p->gpu, &isa), SLIMKV_OK);
    assert_string_equal(isa, "cuda");
}

static void pair_destroy(pair *p)
{
    slimkv_cache_destroy(p->cpu);
    slimkv_cache_destroy(p->gpu);
}

/* Same token count, same bytes held, same kept channels. */
static void assert_same_state(const pair *p)
{
    int a, b;
    size_t x, y;
    assert_int_equal(slimkv_cache_tokens(p->cpu, &a), SLIMKV_OK);
    assert_int_equal(slimkv_cache_tokens(p->gpu, &b), SLIMKV_OK);
    assert_int_equal(a, b);
    assert_int_equal(slimkv_cache_bytes(p->cpu, &x), SLIMKV_OK);
    assert_int_equal(slimkv_cache_bytes(p->gpu, &y), SLIMKV_OK);
    assert_int_equal(x, y);
    for (int h = 0; h < p->cfg.n_kv_heads; h++)
        for (int which = 0; which < 2; which++) {
            int ca[1024], cb[1024], na, nb;
            assert_int_equal(slimkv_cache_kept_channels(p->cpu, h, which, ca, &na), SLIMKV_OK);
            assert_int_equal(slimkv_cache_kept_channels(p->gpu, h, which, cb, &nb), SLIMKV_OK);
            assert_int_equal(na, nb);
            assert_memory_equal(ca, cb, (size_t)na * sizeof *ca);
        }
}

static void assert_agree(const float *cpu, const float *gpu, size_t n, double scale, const char *what)
{
    double err = scaled_max_error(cpu, gpu, n, scale > 0 ? scale : 1.0);
    if (!(err <= AGREEMENT))
        fail_msg("%s: CUDA vs CPU differ by %.3g of max |v| (bound %.1g)", what, err, AGREEMENT);
}

/* Device buffers for device_pointers caches, through the public
 * device-memory calls. */
static float *device_floats(size_t n)
{
    void *d = NULL;
    assert_int_equal(slimkv_cuda_alloc(n * sizeof(float) + 4, &d), SLIMKV_OK);
    return d;
}

static float *to_device(const float *x, size_t n)
{
    float *d = device_floats(n);
    assert_int_equal(slimkv_cuda_copy(d, x, n * sizeof *d, SLIMKV_COPY_TO_DEVICE), SLIMKV_OK);
    return d;
}

/* One scenario: a prefill (maybe in two chunks), then appends of the given
 * sizes, each followed by an attend of n_queries queries; outputs compared
 * at every step. on_device: the CUDA cache gets device pointers. */
static void run_scenario(const slimkv_config *cfg, int prefill, int split_prefill, const int *appends,
                         int n_appends, int n_queries, int on_device, uint64_t seed)
{
    pair p;
    slimkv_config c = *cfg;
    c.device_pointers = on_device;
    if (on_device)
        c.backend = SLIMKV_BACKEND_CUDA;
    pair_create(&p, &c);
    int total = prefill;
    for (int i = 0; i < n_appends; i++)
        total += appends[i];
    int nq = cfg->n_q_heads, nkv = cfg->n_kv_heads, dim = cfg->head_dim;
    size_t krow = (size_t)nkv * dim, qrow = (size_t)nq * dim;
    float *k = malloc((size_t)total * krow * sizeof *k), *v = malloc((size_t)total * krow * sizeof *v);
    float *q = malloc((size_t)(total + n_queries) * qrow * sizeof *q);
    float *out_cpu = malloc((size_t)(total + n_queries) * qrow * sizeof *out_cpu);
    float *out_gpu = malloc((size_t)(total + n_queries) * qrow * sizeof *out_gpu);
    assert_true(k && v && q && out_cpu && out_gpu);
    test_rng rng;
    rng_seed(&rng, seed);
    fill_keys(&rng, k, total, 0, nkv, dim);
    fill_normal(&rng, v, (size_t)total * krow, 1.0f);
    fill_normal(&rng, q, (size_t)(total + n_queries) * qrow, 1.0f);
    double vscale = max_abs(v, (size_t)total * krow);

    int at = 0;
    int chunks[2] = {split_prefill ? prefill / 2 : prefill, split_prefill ? prefill - prefill / 2 : 0};
    for (int i = 0; i < 2 && prefill > 0; i++) {
        int n = chunks[i];
        if (n == 0)
            continue;
        const float *qi = q + (size_t)at * qrow, *ki = k + (size_t)at * krow, *vi = v + (size_t)at * krow;
        assert_int_equal(slimkv_cache_prefill(p.cpu, qi, ki, vi, n, out_cpu), SLIMKV_OK);
        if (on_device) {
            float *dq = to_device(qi, (size_t)n * qrow), *dk = to_device(ki, (size_t)n * krow);
            float *dv = to_device(vi, (size_t)n * krow), *dout = device_floats((size_t)n * qrow);
            assert_int_equal(slimkv_cache_prefill(p.gpu, dq, dk, dv, n, dout), SLIMKV_OK);
            assert_int_equal(slimkv_cuda_copy(out_gpu, dout, (size_t)n * qrow * sizeof(float), SLIMKV_COPY_TO_HOST), SLIMKV_OK);
            slimkv_cuda_free(dq), slimkv_cuda_free(dk), slimkv_cuda_free(dv), slimkv_cuda_free(dout);
        } else {
            assert_int_equal(slimkv_cache_prefill(p.gpu, qi, ki, vi, n, out_gpu), SLIMKV_OK);
        }
        assert_agree(out_cpu, out_gpu, (size_t)n * qrow, vscale, "prefill");
        assert_same_state(&p);
        at += n;
    }
    for (int i = 0; i < n_appends; i++) {
        int n = appends[i];
        const float *ki = k + (size_t)at * krow, *vi = v + (size_t)at * krow;
        assert_int_equal(slimkv_cache_append(p.cpu, ki, vi, n), SLIMKV_OK);
        if (on_device) {
            float *dk = to_device(ki, (size_t)n * krow), *dv = to_device(vi, (size_t)n * krow);
            assert_int_equal(slimkv_cache_append(p.gpu, dk, dv, n), SLIMKV_OK);
            slimkv_cuda_free(dk), slimkv_cuda_free(dv);
        } else {
            assert_int_equal(slimkv_cache_append(p.gpu, ki, vi, n), SLIMKV_OK);
        }
        at += n;
        assert_same_state(&p);
        int m = n_queries < at ? n_queries : at;
        const float *qi = q + (size_t)at * qrow;
        assert_int_equal(slimkv_attend(p.cpu, qi, m, out_cpu), SLIMKV_OK);
        if (on_device) {
            float *dq = to_device(qi, (size_t)m * qrow), *dout = device_floats((size_t)m * qrow);
            assert_int_equal(slimkv_attend(p.gpu, dq, m, dout), SLIMKV_OK);
            assert_int_equal(slimkv_cuda_copy(out_gpu, dout, (size_t)m * qrow * sizeof(float), SLIMKV_COPY_TO_HOST), SLIMKV_OK);
            slimkv_cuda_free(dq), slimkv_cuda_free(dout);
        } else {
            assert_int_equal(slimkv_attend(p.gpu, qi, m, out_gpu), SLIMKV_OK);
        }
        assert_agree(out_cpu, out_gpu, (size_t)m * qrow, vscale, "attend");
    }
    free(k), free(v), free(q), free(out_cpu), free(out_gpu);
    pair_destroy(&p);
}

static slimkv_config base_config(int n_q, int n_kv, int dim, int capacity)
{
    slimkv_config c;
    slimkv_config_init(&c);
    c.n_q_heads = n_q;
    c.n_kv_heads = n_kv;
    c.head_dim = dim;
    c.capacity = capacity;
    c.group_size = 16;
    c.residual = 32;
    c.backend = SLIMKV_BACKEND_CUDA;
    return c;
}

/* A config without device kernels (q3, K outlier channels): backend CUDA
 * refuses it, auto takes the CPU. */
static void refused_then_cpu(slimkv_config c)
{
    slimkv_cache *cache = NULL;
    assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_ERR_UNSUPPORTED);
    assert_null(cache);
    c.backend = SLIMKV_BACKEND_AUTO;
    assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_OK);
    slimkv_backend b;
    assert_int_equal(slimkv_cache_backend(cache, &b), SLIMKV_OK);
    assert_int_equal(b, SLIMKV_BACKEND_CPU);
    slimkv_cache_destroy(cache);
}

static void test_every_format(void **state)
{
    (void)state;
    NEED_CUDA();
    const int appends[] = {1, 15, 17, 40};
    for (int kf = 0; kf < SLIMKV_FORMAT_COUNT; kf++)
        for (int vf = 0; vf < SLIMKV_FORMAT_COUNT; vf++) {
            if (kf != vf && !(kf == SLIMKV_Q4 || vf == SLIMKV_Q2))
                continue; /* every diagonal, and mixed pairs around q4 K / q2 V */
            slimkv_config c = base_config(4, 2, 64, 256);
            c.k_format = (slimkv_format)kf;
            c.v_format = (slimkv_format)vf;
            if (kf == SLIMKV_Q3 || vf == SLIMKV_Q3) {
                refused_then_cpu(c);
                continue;
            }
            if (kf == SLIMKV_Q2 && vf == SLIMKV_Q2) {
                slimkv_config outliers = c;
                outliers.k_outliers = 8;
                refused_then_cpu(outliers);
            }
            run_scenario(&c, 70, 0, appends, 4, 3, 0, 100 + (uint64_t)kf * 8 + vf);
        }
    /* A Llama-3-8B layer (rows of 4 q heads per KV head, G 32, R 64). */
    slimkv_config c = base_config(32, 8, 128, 400);
    c.group_size = 32;
    c.residual = 64;
    c.k_format = SLIMKV_Q4;
    c.v_format = SLIMKV_Q4;
    const int decode[] = {1, 40};
    run_scenario(&c, 280, 0, decode, 2, 1, 0, 150);
}

static void test_windows_sinks_and_shapes(void **state)
{
    (void)state;
    NEED_CUDA();
    /* R = 0 and R = 64, sinks, G = 32, GQA 1/4/8, head_dim 96 and 128 */
    const struct { int nq, nkv, dim, g, r, s; slimkv_format kf, vf; } cases[] = {
        {2, 2, 96, 16, 0, 0, SLIMKV_Q4, SLIMKV_Q4},  {8, 2, 128, 32, 64, 4, SLIMKV_Q2, SLIMKV_Q8},
        {8, 1, 64, 32, 32, 1, SLIMKV_Q8, SLIMKV_Q4}, {4, 4, 64, 16, 16, 20, SLIMKV_F16, SLIMKV_Q2},
        {16, 2, 32, 16, 0, 3, SLIMKV_BF16, SLIMKV_F32},
    };
    const int appends[] = {1, 1, 31, 33, 64, 5};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        slimkv_config c = base_config(cases[i].nq, cases[i].nkv, cases[i].dim, 400);
        c.group_size = cases[i].g;
        c.residual = cases[i].r;
        c.n_sink = cases[i].s;
        c.k_format = cases[i].kf;
        c.v_format = cases[i].vf;
        run_scenario(&c, 90, i % 2, appends, 6, 5, 0, 200 + i);
        run_scenario(&c, 0, 0, appends, 6, 1, 0, 300 + i); /* append-only, from empty */
    }
}

static void test_static_masks_and_think(void **state)
{
    (void)state;
    NEED_CUDA();
    enum { NKV = 3, DIM = 64 };
    uint8_t k_mask[NKV * DIM], v_mask[NKV * DIM];
    for (int h = 0; h < NKV; h++)
        for (int c = 0; c < DIM; c++) {
            k_mask[h * DIM + c] = h == 1 ? 0 : (c * 7 + h) % 3 != 0; /* head 1 streams */
            v_mask[h * DIM + c] = h == 2 ? c % 2 : 1;
        }
    const int appends[] = {3, 40, 16};
    slimkv_config c = base_config(6, NKV, DIM, 300);
    c.k_format = SLIMKV_Q4;
    c.v_format = SLIMKV_Q4;
    c.n_sink = 2;
    c.policy = SLIMKV_POLICY_STATIC;
    c.k_mask = k_mask;
    c.v_mask = v_mask;
    run_scenario(&c, 100, 1, appends, 3, 4, 0, 400);
    c.v_mask = NULL;
    c.k_format = SLIMKV_F16;
    run_scenario(&c, 100, 0, appends, 3, 4, 0, 401);

    slimkv_config t = base_config(6, NKV, DIM, 300);
    t.k_format = SLIMKV_Q8;
    t.v_format = SLIMKV_Q2;
    t.policy = SLIMKV_POLICY_THINK;
    t.prune_ratio = 0.5f;
    run_scenario(&t, 120, 1, appends, 3, 2, 0, 402);
}

static void test_device_pointers(void **state)
{
    (void)state;
    NEED_CUDA();
    const int appends[] = {1, 33, 7};
    slimkv_config c = base_config(4, 2, 64, 256);
    c.k_format = SLIMKV_Q4;
    c.v_format = SLIMKV_Q4;
    run_scenario(&c, 60, 1, appends, 3, 2, 1, 500);
    c.policy = SLIMKV_POLICY_THINK;
    run_scenario(&c, 60, 0, appends, 3, 2, 1, 501);

    /* NaN behind a device pointer is found on the device: nothing stored. */
    c.policy = SLIMKV_POLICY_NONE;
    c.device_pointers = 1;
    slimkv_cache *cache;
    assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_OK);
    float rows[2 * 64];
    for (int i = 0; i < 2 * 64; i++)
        rows[i] = (float)i * 0.01f;
    rows[77] = NAN;
    float *d = to_device(rows, 2 * 64);
    assert_int_equal(slimkv_cache_append(cache, d, d, 1), SLIMKV_ERR_NONFINITE);
    int n;
    assert_int_equal(slimkv_cache_tokens(cache, &n), SLIMKV_OK);
    assert_int_equal(n, 0);
    rows[77] = 1e6f; /* finite, but not in the f16 window */
    assert_int_equal(slimkv_cuda_copy(d, rows, sizeof rows, SLIMKV_COPY_TO_DEVICE), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(cache, d, d, 1), SLIMKV_ERR_NONFINITE);
    rows[77] = 0.5f;
    assert_int_equal(slimkv_cuda_copy(d, rows, sizeof rows, SLIMKV_COPY_TO_DEVICE), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(cache, d, d, 1), SLIMKV_OK);
    slimkv_cuda_free(d);
    slimkv_cache_destroy(cache);
}

/* Bad calls leave a CUDA cache as it was: same tokens, bytes and answers. */
static void test_bad_calls(void **state)
{
    (void)state;
    NEED_CUDA();
    slimkv_config c = base_config(4, 2, 64, 100);
    c.k_format = SLIMKV_Q4;
    c.v_format = SLIMKV_Q2;
    slimkv_cache *cache;
    assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_OK);
    enum { N = 50 };
    static float k[N * 2 * 64], v[N * 2 * 64], q[N * 4 * 64], before[4 * 64], after[4 * 64];
    test_rng rng;
    rng_seed(&rng, 600);
    fill_normal(&rng, k, sizeof k / sizeof *k, 1.0f);
    fill_normal(&rng, v, sizeof v / sizeof *v, 1.0f);
    fill_normal(&rng, q, sizeof q / sizeof *q, 1.0f);
    assert_int_equal(slimkv_cache_append(cache, k, v, N), SLIMKV_OK);
    assert_int_equal(slimkv_attend(cache, q, 1, before), SLIMKV_OK);
    size_t bytes0, bytes1;
    assert_int_equal(slimkv_cache_bytes(cache, &bytes0), SLIMKV_OK);

    k[5] = INFINITY;
    assert_int_equal(slimkv_cache_append(cache, k, v, 2), SLIMKV_ERR_NONFINITE);
    k[5] = 0.0f;
    assert_int_equal(slimkv_cache_append(cache, k, v, 51), SLIMKV_ERR_CAPACITY);
    assert_int_equal(slimkv_cache_append(cache, k, 0, 1), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_attend(cache, q, N + 1, after), SLIMKV_ERR_INVALID_ARG);
    q[3] = NAN;
    assert_int_equal(slimkv_attend(cache, q, 1, after), SLIMKV_ERR_NONFINITE);
    q[3] = 0.25f;
    assert_int_equal(slimkv_cache_save(cache, "/nonexistent-dir/x"), SLIMKV_ERR_UNSUPPORTED);
    assert_int_equal(slimkv_cache_restore(cache, "/nonexistent-dir/x"), SLIMKV_ERR_UNSUPPORTED);
    /* truncate and fork are CPU-only for now; a bad count is still refused first */
    assert_int_equal(slimkv_cache_truncate(cache, N - 1), SLIMKV_ERR_UNSUPPORTED);
    assert_int_equal(slimkv_cache_truncate(cache, N + 1), SLIMKV_ERR_INVALID_ARG);
    slimkv_cache *fork = (slimkv_cache *)0x1;
    assert_int_equal(slimkv_cache_fork(cache, &fork), SLIMKV_ERR_UNSUPPORTED);
    assert_ptr_equal(fork, (slimkv_cache *)0x1);
    size_t owned, shared;
    assert_int_equal(slimkv_cache_bytes_shared(cache, &owned, &shared), SLIMKV_OK);
    assert_int_equal(owned, bytes0);
    assert_int_equal(shared, 0);

    int n;
    assert_int_equal(slimkv_cache_tokens(cache, &n), SLIMKV_OK);
    assert_int_equal(n, N);
    assert_int_equal(slimkv_cache_bytes(cache, &bytes1), SLIMKV_OK);
    assert_int_equal(bytes0, bytes1);
    rng_seed(&rng, 600); /* the same inputs again: the answer must be too */
    fill_normal(&rng, k, sizeof k / sizeof *k, 1.0f);
    fill_normal(&rng, v, sizeof v / sizeof *v, 1.0f);
    fill_normal(&rng, q, sizeof q / sizeof *q, 1.0f);
    assert_int_equal(slimkv_attend(cache, q, 1, after), SLIMKV_OK);
    assert_memory_equal(before, after, sizeof before);
    slimkv_cache_destroy(cache);

    /* What the CUDA backend does not serve. */
    slimkv_config s = base_config(4, 2, 64, 100);
    s.policy = SLIMKV_POLICY_SPARK;
    assert_int_equal(slimkv_cache_create(&s, &cache), SLIMKV_ERR_UNSUPPORTED);
    s.backend = SLIMKV_BACKEND_AUTO; /* auto: SparK runs on the CPU instead */
    assert_int_equal(slimkv_cache_create(&s, &cache), SLIMKV_OK);
    slimkv_backend b;
    assert_int_equal(slimkv_cache_backend(cache, &b), SLIMKV_OK);
    assert_int_equal(b, SLIMKV_BACKEND_CPU);
    slimkv_cache_destroy(cache);
}

/* Emulator only: the N-th device allocation fails, for every N, in create
 * and in an append that opens pages: SLIMKV_ERR_NOMEM, nothing changed,
 * nothing leaked. */
static void test_device_allocation_failures(void **state)
{
    (void)state;
    NEED_CUDA();
    void *h = plugin_handle();
    void (*fail_alloc)(int) = NULL;
    long (*live)(void) = NULL;
    if (h) {
        *(void **)&fail_alloc = dlsym(h, "slimkv_cuda_emu_fail_alloc");
        *(void **)&live = dlsym(h, "slimkv_cuda_emu_live_allocs");
    }
    if (!fail_alloc || !live) {
        print_message("skipped: allocation failures are injected only in the emulator build\n");
        skip();
    }
    slimkv_config c = base_config(4, 2, 64, 300);
    c.k_format = SLIMKV_Q4;
    c.v_format = SLIMKV_Q4;
    long base = live();
    int failures = 0;
    slimkv_cache *cache = NULL;
    for (int nth = 0;; nth++) {
        fail_alloc(nth);
        slimkv_status st = slimkv_cache_create(&c, &cache);
        fail_alloc(-1);
        if (st == SLIMKV_OK)
            break;
        assert_int_equal(st, SLIMKV_ERR_NOMEM);
        assert_int_equal(live(), base);
        failures++;
    }
    assert_true(failures > 0);

    enum { N = 200 };
    static float k[N * 2 * 64], v[N * 2 * 64], q[4 * 64], before[4 * 64], after[4 * 64];
    test_rng rng;
    rng_seed(&rng, 700);
    fill_normal(&rng, k, sizeof k / sizeof *k, 1.0f);
    fill_normal(&rng, v, sizeof v / sizeof *v, 1.0f);
    fill_normal(&rng, q, sizeof q / sizeof *q, 1.0f);
    assert_int_equal(slimkv_cache_append(cache, k, v, 40), SLIMKV_OK);
    assert_int_equal(slimkv_attend(cache, q, 1, before), SLIMKV_OK);
    size_t bytes0, bytes1;
    assert_int_equal(slimkv_cache_bytes(cache, &bytes0), SLIMKV_OK);
    long held = live();
    failures = 0;
    for (int nth = 0;; nth++) {
        fail_alloc(nth);
        slimkv_status st = slimkv_cache_append(cache, k + 40 * 2 * 64, v + 40 * 2 * 64, N - 40);
        fail_alloc(-1);
        if (st == SLIMKV_OK)
            break;
        assert_int_equal(st, SLIMKV_ERR_NOMEM);
        int n;
        assert_int_equal(slimkv_cache_tokens(cache, &n), SLIMKV_OK);
        assert_int_equal(n, 40);
        assert_int_equal(slimkv_cache_bytes(cache, &bytes1), SLIMKV_OK);
        assert_int_equal(bytes0, bytes1);
        assert_int_equal(slimkv_attend(cache, q, 1, after), SLIMKV_OK);
        assert_memory_equal(before, after, sizeof before);
        assert_true(live() <= held + 1); /* at most the grown scratch buffer */
        failures++;
    }
    assert_true(failures > 0);
    slimkv_cache_destroy(cache);
    assert_int_equal(live(), base);
}

/* The public device-memory calls: refused with a status where CUDA is not
 * usable, a round trip and a bandwidth figure where it is; bad arguments
 * get their status either way. */
static void test_device_memory_calls(void **state)
{
    (void)state;
    void *d = NULL;
    double gbps = -1.0;
    float x[64], y[64];
    assert_int_equal(slimkv_cuda_alloc(16, NULL), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cuda_copy(NULL, x, sizeof x, SLIMKV_COPY_TO_DEVICE), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cuda_copy(y, x, sizeof x, (slimkv_copy_direction)7), SLIMKV_ERR_INVALID_ARG);
    assert_int_equal(slimkv_cuda_read_bandwidth(1 << 20, 1, NULL), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cuda_read_bandwidth(1 << 20, 0, &gbps), SLIMKV_ERR_INVALID_ARG);
    slimkv_cuda_free(NULL);
    if (slimkv_cuda_available(NULL) != SLIMKV_OK) {
        assert_int_equal(slimkv_cuda_alloc(16, &d), SLIMKV_ERR_UNSUPPORTED);
        assert_int_equal(slimkv_cuda_copy(y, x, sizeof x, SLIMKV_COPY_TO_HOST), SLIMKV_ERR_UNSUPPORTED);
        assert_int_equal(slimkv_cuda_read_bandwidth(1 << 20, 1, &gbps), SLIMKV_ERR_UNSUPPORTED);
        return;
    }
    for (int i = 0; i < 64; i++)
        x[i] = (float)i - 7.5f;
    assert_int_equal(slimkv_cuda_alloc(sizeof x, &d), SLIMKV_OK);
    assert_non_null(d);
    assert_int_equal(slimkv_cuda_copy(d, x, sizeof x, SLIMKV_COPY_TO_DEVICE), SLIMKV_OK);
    memset(y, 0, sizeof y);
    assert_int_equal(slimkv_cuda_copy(y, d, sizeof y, SLIMKV_COPY_TO_HOST), SLIMKV_OK);
    assert_memory_equal(x, y, sizeof x);
    slimkv_cuda_free(d);
    assert_int_equal(slimkv_cuda_read_bandwidth(1 << 20, 2, &gbps), SLIMKV_OK);
    assert_true(gbps > 0.0);
}

/* Which backend a cache gets, under the SLIMKV_BACKEND this run has
 * (`make test` runs this program with none, cpu and a bad value). */
static void test_backend_choice(void **state)
{
    (void)state;
    const char *env = getenv("SLIMKV_BACKEND");
    const char *plugin_path = getenv("SLIMKV_CUDA_PLUGIN");
    slimkv_cache *cache;
    slimkv_backend b;
    /* First in the process: a CPU cache must not load the plugin. */
    slimkv_config cpu = base_config(2, 1, 16, 50);
    cpu.backend = SLIMKV_BACKEND_CPU;
    assert_int_equal(slimkv_cache_create(&cpu, &cache), SLIMKV_OK);
    assert_int_equal(slimkv_cache_backend(NULL, &b), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cache_backend(cache, NULL), SLIMKV_ERR_NULL_ARG);
    slimkv_cache_destroy(cache);
    if (plugin_path && *plugin_path)
        assert_null(dlopen(plugin_path, RTLD_NOW | RTLD_NOLOAD));

    const char *why = NULL;
    slimkv_status avail = slimkv_cuda_available(&why);
    assert_non_null(why);
    print_message("CUDA: %s\n", why);
    int env_bad = env && *env && strcmp(env, "auto") && strcmp(env, "cpu") && strcmp(env, "cuda");
    int env_cpu = env && !strcmp(env, "cpu"), env_cuda = env && !strcmp(env, "cuda");
    slimkv_config c = base_config(2, 1, 16, 50);

    /* auto: as the environment says; else CUDA when available, else CPU */
    c.backend = SLIMKV_BACKEND_AUTO;
    slimkv_status st = slimkv_cache_create(&c, &cache);
    if (env_bad || (env_cuda && avail != SLIMKV_OK)) {
        assert_int_equal(st, SLIMKV_ERR_UNSUPPORTED);
    } else {
        assert_int_equal(st, SLIMKV_OK);
        assert_int_equal(slimkv_cache_backend(cache, &b), SLIMKV_OK);
        assert_int_equal(b, avail == SLIMKV_OK && !env_cpu ? SLIMKV_BACKEND_CUDA : SLIMKV_BACKEND_CPU);
        slimkv_cache_destroy(cache);
    }
    /* an explicit backend is not overridden: CPU always works, CUDA only
     * where it is available */
    c.backend = SLIMKV_BACKEND_CPU;
    assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_OK);
    assert_int_equal(slimkv_cache_backend(cache, &b), SLIMKV_OK);
    assert_int_equal(b, SLIMKV_BACKEND_CPU);
    slimkv_cache_destroy(cache);
    c.backend = SLIMKV_BACKEND_CUDA;
    st = slimkv_cache_create(&c, &cache);
    if (avail == SLIMKV_OK) {
        assert_int_equal(st, SLIMKV_OK);
        slimkv_cache_destroy(cache);
    } else {
        assert_int_equal(st, SLIMKV_ERR_UNSUPPORTED);
    }
    /* token eviction rebuilds host storage: never a CUDA cache; auto gives a CPU one */
    slimkv_config evicting = c;
    evicting.eviction = SLIMKV_EVICT_H2O;
    evicting.backend = SLIMKV_BACKEND_CUDA;
    assert_int_equal(slimkv_cache_create(&evicting, &cache), SLIMKV_ERR_UNSUPPORTED);
    evicting.backend = SLIMKV_BACKEND_AUTO;
    st = slimkv_cache_create(&evicting, &cache);
    if (env_bad || env_cuda) {
        assert_int_equal(st, SLIMKV_ERR_UNSUPPORTED);
    } else {
        assert_int_equal(st, SLIMKV_OK);
        assert_int_equal(slimkv_cache_backend(cache, &b), SLIMKV_OK);
        assert_int_equal(b, SLIMKV_BACKEND_CPU);
        slimkv_cache_destroy(cache);
    }
    /* device pointers need the CUDA backend asked for */
    c.device_pointers = 1;
    c.backend = SLIMKV_BACKEND_AUTO;
    assert_int_equal(slimkv_config_validate(&c), SLIMKV_ERR_INVALID_CONFIG);
    c.device_pointers = 2;
    c.backend = SLIMKV_BACKEND_CUDA;
    assert_int_equal(slimkv_config_validate(&c), SLIMKV_ERR_INVALID_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_choice),
        cmocka_unit_test(test_device_memory_calls),
        cmocka_unit_test(test_every_format),
        cmocka_unit_test(test_windows_sinks_and_shapes),
        cmocka_unit_test(test_static_masks_and_think),
        cmocka_unit_test(test_device_pointers),
        cmocka_unit_test(test_bad_calls),
        cmocka_unit_test(test_device_allocation_failures),
    };
    /* With SLIMKV_BACKEND set, only the backend choice is what this run is for. */
    const char *env = getenv("SLIMKV_BACKEND");
    if (env && *env)
        return _cmocka_run_group_tests("backend choice", tests, 1, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
