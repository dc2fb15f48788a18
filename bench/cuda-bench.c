/* slimkv-cuda-bench: decode attention on the CUDA backend.
 *
 * A Llama-3-8B layer (32 query heads, 8 KV heads, head_dim 128, G = 32,
 * R = 128) at each context and batch size: one cache per sequence, filled
 * by appends from device memory, then decode steps (one query per
 * sequence, q and out in device memory) timed over the whole batch. Reports
 * time per step, effective GB/s of the K/V bytes held (the bytes a decode
 * step must read) and that as a percentage of the device's read bandwidth,
 * measured by the same binary in the same run, plus the speedup over the
 * dense f16 cache of the same context and batch.
 *
 * The plugin comes from SLIMKV_CUDA_PLUGIN (or beside libslimkv); its
 * emulator build runs the same code on a CPU (use --quick there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slimkv.h"

enum { N_Q = 32, N_KV = 8, DIM = 128, FILL_CHUNK = 4096 };

typedef struct bench_config {
    const char *name;
    slimkv_format k, v;
    int k_keep_percent;
} bench_config;

static const bench_config configs[] = {
    {"f16 (dense)", SLIMKV_F16, SLIMKV_F16, 100},
    {"q4/q4, 50% K", SLIMKV_Q4, SLIMKV_Q4, 50},
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *device_copy_of(const float *x, size_t n)
{
    void *d = NULL;
    if (slimkv_cuda_alloc(n * sizeof(float), &d) != SLIMKV_OK)
        return NULL;
    if (slimkv_cuda_copy(d, x, n * sizeof(float), SLIMKV_COPY_TO_DEVICE) != SLIMKV_OK) {
        slimkv_cuda_free(d);
        return NULL;
    }
    return d;
}

static void fill_random(float *x, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((int64_t)(seed >> 40) - (1 << 23)) / (float)(1 << 23);
    }
}

/* One cache of `context` tokens, filled from the device chunk dk/dv. */
static slimkv_status make_cache(const bench_config *bc, int context, const uint8_t *k_mask, const float *dk,
                                const float *dv, slimkv_cache **out)
{
    slimkv_config c;
    slimkv_config_init(&c);
    c.n_q_heads = N_Q;
    c.n_kv_heads = N_KV;
    c.head_dim = DIM;
    c.capacity = context;
    c.k_format = bc->k;
    c.v_format = bc->v;
    c.backend = SLIMKV_BACKEND_CUDA;
    c.device_pointers = 1;
    if (bc->k_keep_percent < 100) {
        c.policy = SLIMKV_POLICY_STATIC;
        c.k_mask = k_mask;
    }
    slimkv_status st = slimkv_cache_create(&c, out);
    for (int at = 0; st == SLIMKV_OK && at < context; at += FILL_CHUNK)
        st = slimkv_cache_append(*out, dk, dv, context - at < FILL_CHUNK ? context - at : FILL_CHUNK);
    if (st != SLIMKV_OK) {
        slimkv_cache_destroy(*out);
        *out = NULL;
    }
    return st;
}

static int parse_list(const char *text, int *values, int max)
{
    int n = 0;
    char *copy = strdup(text), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end == 'k')
            v *= 1024, end++;
        if (*end || v < 1 || v > (1 << 24)) {
            free(copy);
            return -1;
        }
        values[n++] = (int)v;
    }
    free(copy);
    return n;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: slimkv-cuda-bench [--contexts LIST] [--batch LIST] [--reps N] [--quick]\n"
                "  --contexts LIST  context lengths, k = x1024 (default 16k,32k,64k,128k)\n"
                "  --batch LIST     sequences decoded per step (default 1,8)\n"
                "  --reps N         timed decode steps, median reported (default 20)\n"
                "  --quick          smoke run (contexts 256,1k; batch 1,2; 2 reps; small bandwidth buffer)\n");
}

int main(int argc, char **argv)
{
    int contexts[16] = {16384, 32768, 65536, 131072}, n_contexts = 4;
    int batches[16] = {1, 8}, n_batches = 2, reps = 20;
    size_t bandwidth_bytes = (size_t)2 << 30;
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--quick")) {
            contexts[0] = 256, contexts[1] = 1024, n_contexts = 2;
            batches[0] = 1, batches[1] = 2, n_batches = 2;
            reps = 2;
            bandwidth_bytes = (size_t)1 << 20;
        } else if (!strcmp(argv[i], "--contexts") && value) {
            n_contexts = parse_list(value, contexts, 16), i++;
        } else if (!strcmp(argv[i], "--batch") && value) {
            n_batches = parse_list(value, batches, 16), i++;
        } else if (!strcmp(argv[i], "--reps") && value) {
            reps = atoi(value), i++;
        } else {
            n_contexts = -1;
        }
        if (n_contexts < 1 || n_batches < 1 || reps < 1 || reps > 10000) {
            usage(stderr);
            return 2;
        }
    }
    const char *why;
    if (slimkv_cuda_available(&why) != SLIMKV_OK) {
        fprintf(stderr, "slimkv-cuda-bench: CUDA is not available here: %s\n", why);
        return 1;
    }
    double device_gbps;
    if (slimkv_cuda_read_bandwidth(bandwidth_bytes, 10, &device_gbps) != SLIMKV_OK) {
        fprintf(stderr, "slimkv-cuda-bench: the bandwidth measurement failed\n");
        return 1;
    }

    size_t chunk = (size_t)FILL_CHUNK * N_KV * DIM;
    float *host = malloc((chunk * 2 + (size_t)N_Q * DIM) * sizeof *host);
    uint8_t k_mask[N_KV * DIM];
    for (int i = 0; i < N_KV * DIM; i++)
        k_mask[i] = i % 2 == 0;
    if (!host)
        return 1;
    fill_random(host, chunk * 2 + (size_t)N_Q * DIM, 42);
    float *dk = device_copy_of(host, chunk), *dv = device_copy_of(host + chunk, chunk);
    float *dq = device_copy_of(host + 2 * chunk, (size_t)N_Q * DIM);
    free(host);
    if (!dk || !dv || !dq) {
        fprintf(stderr, "slimkv-cuda-bench: no device memory for the inputs\n");
        return 1;
    }

    printf("CUDA decode attention, Llama-3-8B layer (%d q heads, %d KV heads, head_dim %d, G 32, R 128)\n", N_Q,
           N_KV, DIM);
    printf("device read bandwidth (same run): %.1f GB/s\n\n", device_gbps);
    printf("%-14s %8s %6s %10s %10s %9s %7s %9s\n", "config", "context", "batch", "MiB held", "us/step", "GB/s",
           "% bw", "vs f16");
    int status = 0;
    for (int ci = 0; ci < n_contexts && !status; ci++)
        for (int bi = 0; bi < n_batches && !status; bi++) {
            int context = contexts[ci], batch = batches[bi];
            double dense_seconds = 0.0;
            for (size_t fi = 0; fi < sizeof configs / sizeof *configs && !status; fi++) {
                slimkv_cache **caches = calloc((size_t)batch, sizeof *caches);
                void *dout_bytes = NULL;
                float *dout = slimkv_cuda_alloc((size_t)batch * N_Q * DIM * sizeof(float), &dout_bytes) == SLIMKV_OK
                                  ? dout_bytes : NULL;
                double *times = malloc((size_t)reps * sizeof *times);
                size_t held = 0;
                slimkv_status st = caches && dout && times ? SLIMKV_OK : SLIMKV_ERR_NOMEM;
                for (int b = 0; b < batch && st == SLIMKV_OK; b++) {
                    st = make_cache(&configs[fi], context, k_mask, dk, dv, &caches[b]);
                    size_t bytes = 0;
                    if (st == SLIMKV_OK)
                        st = slimkv_cache_bytes(caches[b], &bytes);
                    held += bytes;
                }
                /* Two untimed steps first (first-touch, clocks). */
                for (int r = -2; r < reps && st == SLIMKV_OK; r++) {
                    double t0 = now();
                    for (int b = 0; b < batch && st == SLIMKV_OK; b++)
                        st = slimkv_attend(caches[b], dq, 1, dout + (size_t)b * N_Q * DIM);
                    if (r >= 0)
                        times[r] = now() - t0;
                }
                if (st != SLIMKV_OK) {
                    fprintf(stderr, "slimkv-cuda-bench: %s at %d tokens, batch %d: %s\n", configs[fi].name, context,
                            batch, slimkv_status_str(st));
                    status = 1;
                } else {
                    qsort(times, (size_t)reps, sizeof *times, compare_doubles);
                    double seconds = times[reps / 2], gbps = (double)held / seconds / 1e9;
                    if (fi == 0)
                        dense_seconds = seconds;
                    printf("%-14s %8d %6d %10.1f %10.1f %9.1f %6.1f%% %8.2fx\n", configs[fi].name, context, batch,
                           (double)held / (1 << 20), seconds * 1e6, gbps, 100.0 * gbps / device_gbps,
                           dense_seconds / seconds);
                    fflush(stdout);
                }
                for (int b = 0; caches && b < batch; b++)
                    slimkv_cache_destroy(caches[b]);
                free(caches);
                free(times);
                if (dout)
                    slimkv_cuda_free(dout);
            }
        }
    slimkv_cuda_free(dk);
    slimkv_cuda_free(dv);
    slimkv_cuda_free(dq);
    return status;
}
