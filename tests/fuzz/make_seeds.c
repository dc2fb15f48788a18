/* Writes the fuzzers' seed corpus (checked in under tests/fuzz/corpus/):
 * small valid files of each kind, so fuzzing starts from deep inside the
 * readers. Usage: make_seeds DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "slimkv.h"

static void check(slimkv_status st, const char *what)
{
    if (st != SLIMKV_OK) {
        fprintf(stderr, "make_seeds: %s: %s\n", what, slimkv_status_str(st));
        exit(1);
    }
}

static void path_in(char *buf, size_t n, const char *dir, const char *target, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, target);
    mkdir(buf, 0755);
    snprintf(buf, n, "%s/%s/%s", dir, target, name);
}

/* The same cache shape as fuzz_snapshot.c's target. */
static void snapshot_seeds(const char *dir)
{
    slimkv_config cfg;
    slimkv_config_init(&cfg);
    cfg.n_q_heads = 2;
    cfg.n_kv_heads = 1;
    cfg.head_dim = 16;
    cfg.capacity = 300;
    cfg.k_format = SLIMKV_Q4;
    cfg.v_format = SLIMKV_Q2;
    cfg.group_size = 16;
    cfg.residual = 16;
    cfg.n_sink = 1;
    cfg.isa = "scalar";
    const int counts[] = {0, 5, 100};
    float k[100 * 16], q[100 * 32], out[100 * 32];
    for (int i = 0; i < 100 * 16; i++)
        k[i] = (float)((i * 37) % 23) * 0.25f - 2.0f;
    for (int i = 0; i < 100 * 32; i++)
        q[i] = (float)((i * 11) % 7) * 0.1f;
    for (int i = 0; i < 3; i++) {
        slimkv_cache *c;
        check(slimkv_cache_create(&cfg, &c), "create");
        if (counts[i])
            check(slimkv_cache_prefill(c, q, k, k, counts[i], out), "prefill");
        char path[256], name[32];
        snprintf(name, sizeof name, "tokens-%d", counts[i]);
        path_in(path, sizeof path, dir, "fuzz_snapshot", name);
        check(slimkv_cache_save(c, path), "save");
        slimkv_cache_destroy(c);
    }
}

static void file_seeds(const char *dir)
{
    enum { LAYERS = 2, HEADS = 2, DIM = 8 };
    uint8_t k[LAYERS * HEADS * DIM], v[LAYERS * HEADS * DIM];
    for (int i = 0; i < LAYERS * HEADS * DIM; i++) {
        k[i] = i % 3 == 0;
        v[i] = i % 2;
    }
    char path[256];
    path_in(path, sizeof path, dir, "fuzz_files", "masks");
    check(slimkv_masks_save(path, LAYERS, HEADS, DIM, k, v), "masks");
    path_in(path, sizeof path, dir, "fuzz_files", "masks-k-only");
    check(slimkv_masks_save(path, LAYERS, HEADS, DIM, k, NULL), "masks");
    slimkv_config settings;
    slimkv_config_init(&settings);
    settings.n_q_heads = settings.n_kv_heads = HEADS;
    settings.head_dim = DIM;
    settings.capacity = 64;
    settings.channel_align = 4;
    slimkv_plan *plan;
    check(slimkv_plan_create(&settings, LAYERS, k, v, &plan), "plan");
    path_in(path, sizeof path, dir, "fuzz_files", "plan");
    check(slimkv_plan_save(path, plan), "plan save");
    slimkv_plan_destroy(plan);
}

static void config_seeds(const char *dir)
{
    /* n_q, n_kv, dim, capacity, G, R, S, align, window, k, v, policy, ratio bits */
    const int32_t seeds[3][13] = {
        {8, 2, 64, 100, 32, 64, 0, 8, 32, 4, 4, 0, 0x3ecccccd},
        {4, 4, 16, 40, 16, 16, 2, 4, 8, 5, 3, 1, 0},
        {2, 1, 32, 90, 16, 32, 1, 8, 4, 3, 5, 3, 0x3f000000},
    };
    for (int i = 0; i < 3; i++) {
        char path[256], name[16];
        snprintf(name, sizeof name, "config-%d", i);
        path_in(path, sizeof path, dir, "fuzz_config", name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(seeds[i], sizeof seeds[i], 1, f) != 1)
            exit(1);
        fclose(f);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    mkdir(argv[1], 0755);
    snapshot_seeds(argv[1]);
    file_seeds(argv[1]);
    config_seeds(argv[1]);
    return 0;
}
