/* Static channel masks (LeanK) in safetensors files: "k_mask" and optional
 * "v_mask", [layers][kv_heads][head_dim], values exactly 0 or 1. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "io_masks.h"

void masks_clear(struct slimkv_masks *m)
{
    slimkv_free(m->k);
    slimkv_free(m->v);
    memset(m, 0, sizeof *m);
}

/* Element p of a mask tensor as 0 or 1, from its raw little-endian bytes;
 * -1 for anything else. Exact: a float one ulp from 1, or a tiny non-zero
 * value, is not a mask value (a conversion to float first would round it
 * there). -0.0 is 0. */
static int mask_value(st_dtype dtype, const uint8_t *p)
{
    size_t size = st_dtype_size(dtype);
    uint64_t bits = 0;
    for (size_t i = 0; i < size; i++)
        bits |= (uint64_t)p[i] << (8 * i);
    switch (dtype) {
    case ST_BOOL: case ST_U8: case ST_I8: case ST_I16: case ST_U16: case ST_I32: case ST_U32: case ST_I64:
    case ST_U64:
        return bits <= 1 ? (int)bits : -1;
    case ST_F16: return bits == 0x3c00 ? 1 : (bits & 0x7fff) == 0 ? 0 : -1;
    case ST_BF16: return bits == 0x3f80 ? 1 : (bits & 0x7fff) == 0 ? 0 : -1;
    case ST_F32: return bits == 0x3f800000u ? 1 : (bits & 0x7fffffffu) == 0 ? 0 : -1;
    case ST_F64: return bits == 0x3ff0000000000000ull ? 1 : (bits & 0x7fffffffffffffffull) == 0 ? 0 : -1;
    default: return -1; /* F8: no exact 1 to speak of */
    }
}

/* One mask tensor: 3-D of the expected shape (or any positive shape when
 * shape[0] == 0), numeric, every value exactly 0 or 1. */
static slimkv_status read_mask(const st_file *file, const st_tensor *t, int64_t shape[3], uint8_t **out)
{
    if (t->n_dims != 3)
        return SLIMKV_ERR_FORMAT;
    if (shape[0] == 0) {
        for (int i = 0; i < 3; i++)
            if (t->shape[i] < 1 || t->shape[i] > INT_MAX)
                return SLIMKV_ERR_FORMAT;
        memcpy(shape, t->shape, 3 * sizeof *shape);
    } else if (!st_shape_is(t, 3, shape)) {
        return SLIMKV_ERR_FORMAT;
    }
    uint8_t *raw = slimkv_malloc(t->n_bytes ? (size_t)t->n_bytes : 1);
    uint8_t *mask = slimkv_malloc(t->n_elems);
    slimkv_status st = raw && mask ? st_read_bytes(file, t, 0, (size_t)t->n_bytes, raw) : SLIMKV_ERR_NOMEM;
    size_t size = st_dtype_size(t->dtype);
    for (size_t i = 0; st == SLIMKV_OK && i < t->n_elems; i++) {
        int value = mask_value(t->dtype, raw + i * size);
        if (value < 0)
            st = SLIMKV_ERR_FORMAT;
        mask[i] = (uint8_t)(value == 1);
    }
    slimkv_free(raw);
    if (st != SLIMKV_OK) {
        slimkv_free(mask);
        return st;
    }
    *out = mask;
    return SLIMKV_OK;
}

slimkv_status masks_read(const st_file *file, struct slimkv_masks *m)
{
    const st_tensor *k = st_find(file, "k_mask"), *v = st_find(file, "v_mask");
    if (!k)
        return SLIMKV_ERR_FORMAT;
    /* masks, and a plan's kept counts (a plan file loads as masks too);
     * anything else is not a file of ours, or a damaged name */
    for (size_t i = 0; i < file->n_tensors; i++) {
        const char *name = file->tensors[i].name;
        if (strcmp(name, "k_mask") && strcmp(name, "v_mask") && strcmp(name, "k_kept") && strcmp(name, "v_kept"))
            return SLIMKV_ERR_FORMAT;
    }
    struct slimkv_masks r = {0};
    int64_t shape[3] = {0, 0, 0};
    slimkv_status st = read_mask(file, k, shape, &r.k);
    if (st == SLIMKV_OK && v)
        st = read_mask(file, v, shape, &r.v);
    if (st != SLIMKV_OK) {
        masks_clear(&r);
        return st;
    }
    r.layers = (int)shape[0];
    r.kv_heads = (int)shape[1];
    r.head_dim = (int)shape[2];
    *m = r;
    return SLIMKV_OK;
}

slimkv_status masks_copy(int layers, int kv_heads, int head_dim, const uint8_t *k_mask, const uint8_t *v_mask,
                         struct slimkv_masks *m)
{
    size_t n = (size_t)layers * (size_t)kv_heads * (size_t)head_dim;
    struct slimkv_masks r = {layers, kv_heads, head_dim, slimkv_malloc(n), v_mask ? slimkv_malloc(n) : NULL};
    if (!r.k || (v_mask && !r.v)) {
        masks_clear(&r);
        return SLIMKV_ERR_NOMEM;
    }
    memcpy(r.k, k_mask, n);
    if (v_mask)
        memcpy(r.v, v_mask, n);
    *m = r;
    return SLIMKV_OK;
}

void masks_outputs(const struct slimkv_masks *m, st_out *out, size_t *n)
{
    *n = 0;
    const char *names[2] = {"k_mask", "v_mask"};
    const uint8_t *data[2] = {m->k, m->v};
    for (int i = 0; i < 2; i++) {
        if (!data[i])
            continue;
        st_out o = {.name = names[i], .dtype = ST_U8, .n_dims = 3,
                    .shape = {m->layers, m->kv_heads, m->head_dim}, .data = data[i]};
        out[(*n)++] = o;
    }
}

slimkv_status slimkv_masks_load(const char *path, slimkv_masks **out)
{
    if (!path || !out)
        return SLIMKV_ERR_NULL_ARG;
    st_file *file;
    slimkv_status st = st_open(path, &file);
    if (st != SLIMKV_OK)
        return st;
    slimkv_masks *m = slimkv_calloc(1, sizeof *m);
    st = m ? masks_read(file, m) : SLIMKV_ERR_NOMEM;
    st_close(file);
    if (st != SLIMKV_OK) {
        slimkv_free(m);
        return st;
    }
    *out = m;
    return SLIMKV_OK;
}

void slimkv_masks_destroy(slimkv_masks *m)
{
    if (!m)
        return;
    masks_clear(m);
    slimkv_free(m);
}

slimkv_status slimkv_masks_shape(const slimkv_masks *m, int *layers, int *kv_heads, int *head_dim)
{
    if (!m || !layers || !kv_heads || !head_dim)
        return SLIMKV_ERR_NULL_ARG;
    *layers = m->layers;
    *kv_heads = m->kv_heads;
    *head_dim = m->head_dim;
    return SLIMKV_OK;
}

slimkv_status slimkv_masks_apply(const slimkv_masks *m, int layer, slimkv_config *config)
{
    if (!m || !config)
        return SLIMKV_ERR_NULL_ARG;
    if (layer < 0 || layer >= m->layers)
        return SLIMKV_ERR_INVALID_ARG;
    if (config->n_kv_heads != m->kv_heads || config->head_dim != m->head_dim)
        return SLIMKV_ERR_INVALID_CONFIG;
    size_t at = (size_t)layer * m->kv_heads * m->head_dim;
    config->policy = SLIMKV_POLICY_STATIC;
    config->k_mask = m->k + at;
    config->v_mask = m->v ? m->v + at : NULL;
    return SLIMKV_OK;
}

static int zero_one(const uint8_t *mask, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (mask[i] > 1)
            return 0;
    return 1;
}

slimkv_status slimkv_masks_save(const char *path, int layers, int kv_heads, int head_dim, const uint8_t *k_mask,
                                const uint8_t *v_mask)
{
    if (!path || !k_mask)
        return SLIMKV_ERR_NULL_ARG;
    if (layers < 1 || kv_heads < 1 || head_dim < 1)
        return SLIMKV_ERR_INVALID_ARG;
    size_t n;
    if (__builtin_mul_overflow((size_t)layers, (size_t)kv_heads, &n) ||
        __builtin_mul_overflow(n, (size_t)head_dim, &n))
        return SLIMKV_ERR_INVALID_ARG;
    if (!zero_one(k_mask, n) || (v_mask && !zero_one(v_mask, n)))
        return SLIMKV_ERR_INVALID_ARG;
    /* No copy needed: the descriptors point at the caller's arrays. */
    struct slimkv_masks view = {layers, kv_heads, head_dim, (uint8_t *)k_mask, (uint8_t *)v_mask};
    st_out out[2];
    size_t n_out;
    masks_outputs(&view, out, &n_out);
    st_meta meta[] = {{"format", "slimkv-masks"}, {"version", "1"}};
    return st_write(path, out, n_out, meta, 2);
}
