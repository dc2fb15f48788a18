/* The file readers on hostile input: masks, plans and the safetensors
 * reader itself (which weights and calibration files go through). Each
 * input is tried with every reader; any input gives a status, never a
 * crash, and whatever loads is usable. */
#include <string.h>

#include "safetensors.h"
#include "fuzz_common.h"

static void try_masks(const char *path)
{
    slimkv_masks *m = NULL;
    slimkv_status st = slimkv_masks_load(path, &m);
    fuzz_check_status(st);
    if (st != SLIMKV_OK)
        return;
    int layers, heads, dim;
    if (slimkv_masks_shape(m, &layers, &heads, &dim) != SLIMKV_OK)
        abort();
    slimkv_config cfg;
    slimkv_config_init(&cfg);
    cfg.n_q_heads = cfg.n_kv_heads = heads;
    cfg.head_dim = dim;
    cfg.capacity = 64;
    cfg.isa = "scalar";
    fuzz_check_status(slimkv_masks_apply(m, layers - 1, &cfg));
    slimkv_cache *c = NULL;
    if ((long)heads * dim <= 4096 && slimkv_cache_create(&cfg, &c) == SLIMKV_OK)
        slimkv_cache_destroy(c);
    slimkv_masks_destroy(m);
}

static void try_plan(const char *path)
{
    slimkv_plan *p = NULL;
    slimkv_status st = slimkv_plan_load(path, &p);
    fuzz_check_status(st);
    if (st != SLIMKV_OK)
        return;
    int layers;
    if (slimkv_plan_layers(p, &layers) != SLIMKV_OK)
        abort();
    for (int i = 0; i < layers && i < 4; i++) {
        slimkv_config cfg;
        slimkv_config_init(&cfg);
        fuzz_check_status(slimkv_plan_layer_config(p, i, &cfg));
    }
    slimkv_plan_destroy(p);
}

static void try_tensors(const char *path)
{
    st_file *f = NULL;
    slimkv_status st = st_open(path, &f);
    fuzz_check_status(st);
    if (st != SLIMKV_OK)
        return;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        if (t->n_elems > (1u << 20))
            continue;
        float *x = malloc(t->n_elems * sizeof(float) + 1);
        fuzz_check_status(st_read_f32(f, t, x));
        free(x);
    }
    st_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_input_file(data, size);
    try_tensors(path);
    try_masks(path);
    try_plan(path);
    return 0;
}
