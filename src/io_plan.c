/* Per-layer plans (KVPruner / Tyr-the-Pruner budgets) in safetensors files:
 * the masks of io_masks.c, kept counts "k_kept" / "v_kept" (I32
 * [layers][kv_heads], the ones of each mask head, checked against the masks
 * on load) and the storage settings in __metadata__. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "io_masks.h"

#define PLAN_FORMAT "slimkv-plan"
#define PLAN_VERSION "1"

struct slimkv_plan {
    struct slimkv_masks masks;
    slimkv_format k_format, v_format;
    int group_size, residual, n_sink, channel_align;
};

static void fill_layer(const slimkv_plan *p, int layer, slimkv_config *c)
{
    size_t at = (size_t)layer * p->masks.kv_heads * p->masks.head_dim;
    c->n_kv_heads = p->masks.kv_heads;
    c->head_dim = p->masks.head_dim;
    c->k_format = p->k_format;
    c->v_format = p->v_format;
    c->group_size = p->group_size;
    c->residual = p->residual;
    c->n_sink = p->n_sink;
    c->channel_align = p->channel_align;
    c->policy = SLIMKV_POLICY_STATIC;
    c->k_mask = p->masks.k + at;
    c->v_mask = p->masks.v ? p->masks.v + at : NULL;
}

/* Every layer must make a valid cache config; the core's validation is the
 * one definition of valid. */
static int layers_valid(const slimkv_plan *p)
{
    for (int l = 0; l < p->masks.layers; l++) {
        slimkv_config c;
        slimkv_config_init(&c);
        fill_layer(p, l, &c);
        c.n_q_heads = c.n_kv_heads;
        c.capacity = 1;
        if (slimkv_config_validate(&c) != SLIMKV_OK)
            return 0;
    }
    return 1;
}

void slimkv_plan_destroy(slimkv_plan *p)
{
    if (!p)
        return;
    masks_clear(&p->masks);
    slimkv_free(p);
}

static slimkv_plan *plan_with_settings(const slimkv_config *s)
{
    slimkv_plan *p = slimkv_calloc(1, sizeof *p);
    if (p) {
        p->k_format = s->k_format;
        p->v_format = s->v_format;
        p->group_size = s->group_size;
        p->residual = s->residual;
        p->n_sink = s->n_sink;
        p->channel_align = s->channel_align;
    }
    return p;
}

slimkv_status slimkv_plan_create(const slimkv_config *settings, int layers, const uint8_t *k_mask,
                                 const uint8_t *v_mask, slimkv_plan **out)
{
    if (!settings || !k_mask || !out)
        return SLIMKV_ERR_NULL_ARG;
    int heads = settings->n_kv_heads, dim = settings->head_dim;
    size_t cells; /* layers x heads x dim must fit a size_t (heads x dim alone may not on 32-bit) */
    if (layers < 1 || heads < 1 || dim < 1 || __builtin_mul_overflow((size_t)layers, (size_t)heads, &cells) ||
        __builtin_mul_overflow(cells, (size_t)dim, &cells))
        return SLIMKV_ERR_INVALID_CONFIG;
    slimkv_plan *p = plan_with_settings(settings);
    if (!p)
        return SLIMKV_ERR_NOMEM;
    slimkv_status st = masks_copy(layers, heads, dim, k_mask, v_mask, &p->masks);
    if (st == SLIMKV_OK && !layers_valid(p))
        st = SLIMKV_ERR_INVALID_CONFIG;
    if (st != SLIMKV_OK) {
        slimkv_plan_destroy(p);
        return st;
    }
    *out = p;
    return SLIMKV_OK;
}

/* Strict non-negative decimal: digits only, at most 9 of them. */
static int parse_count(const char *text, int *value)
{
    size_t n = text ? strlen(text) : 0;
    if (n == 0 || n > 9 || strspn(text, "0123456789") != n || (n > 1 && text[0] == '0')) /* "032": no */
        return 0;
    *value = atoi(text);
    return 1;
}

static int parse_format(const char *text, slimkv_format *fmt)
{
    return text && slimkv_format_from_name(text, strlen(text), fmt) == SLIMKV_OK;
}

/* Kept counts per head: the ones of each head's mask. */
static void count_kept(const struct slimkv_masks *m, const uint8_t *mask, int32_t *counts)
{
    size_t heads = (size_t)m->layers * m->kv_heads;
    for (size_t h = 0; h < heads; h++) {
        counts[h] = 0;
        for (int c = 0; c < m->head_dim; c++)
            counts[h] += mask[h * m->head_dim + c];
    }
}

/* An optional count tensor must match the masks it summarizes. */
static slimkv_status check_counts(const st_file *file, const char *name, const struct slimkv_masks *m,
                                  const uint8_t *mask)
{
    const st_tensor *t = st_find(file, name);
    if (!t)
        return SLIMKV_OK;
    int64_t shape[2] = {m->layers, m->kv_heads};
    if (!mask || !st_shape_is(t, 2, shape))
        return SLIMKV_ERR_FORMAT;
    size_t n = t->n_elems;
    float *stored = slimkv_malloc(n * sizeof *stored);
    int32_t *counts = slimkv_malloc(n * sizeof *counts);
    slimkv_status st = stored && counts ? st_read_f32(file, t, stored) : SLIMKV_ERR_NOMEM;
    if (st == SLIMKV_OK)
        count_kept(m, mask, counts);
    for (size_t i = 0; st == SLIMKV_OK && i < n; i++)
        if (stored[i] != (float)counts[i])
            st = SLIMKV_ERR_FORMAT;
    slimkv_free(stored);
    slimkv_free(counts);
    return st;
}

static slimkv_status read_plan(const st_file *file, slimkv_plan **out)
{
    const char *kind = st_meta_get(file, "format"), *version = st_meta_get(file, "version");
    slimkv_config s;
    slimkv_config_init(&s);
    if (!kind || strcmp(kind, PLAN_FORMAT) != 0 || !version || strcmp(version, PLAN_VERSION) != 0 ||
        !parse_format(st_meta_get(file, "k_format"), &s.k_format) ||
        !parse_format(st_meta_get(file, "v_format"), &s.v_format) ||
        !parse_count(st_meta_get(file, "group_size"), &s.group_size) ||
        !parse_count(st_meta_get(file, "residual"), &s.residual) ||
        !parse_count(st_meta_get(file, "n_sink"), &s.n_sink) ||
        !parse_count(st_meta_get(file, "channel_align"), &s.channel_align))
        return SLIMKV_ERR_FORMAT;
    slimkv_plan *p = plan_with_settings(&s);
    if (!p)
        return SLIMKV_ERR_NOMEM;
    slimkv_status st = masks_read(file, &p->masks);
    if (st == SLIMKV_OK)
        st = check_counts(file, "k_kept", &p->masks, p->masks.k);
    if (st == SLIMKV_OK)
        st = check_counts(file, "v_kept", &p->masks, p->masks.v);
    if (st == SLIMKV_OK && !layers_valid(p))
        st = SLIMKV_ERR_FORMAT;
    if (st != SLIMKV_OK) {
        slimkv_plan_destroy(p);
        return st;
    }
    *out = p;
    return SLIMKV_OK;
}

slimkv_status slimkv_plan_load(const char *path, slimkv_plan **out)
{
    if (!path || !out)
        return SLIMKV_ERR_NULL_ARG;
    st_file *file;
    slimkv_status st = st_open(path, &file);
    if (st != SLIMKV_OK)
        return st;
    st = read_plan(file, out);
    st_close(file);
    return st;
}

slimkv_status slimkv_plan_save(const char *path, const slimkv_plan *p)
{
    if (!path || !p)
        return SLIMKV_ERR_NULL_ARG;
    const struct slimkv_masks *m = &p->masks;
    size_t heads = (size_t)m->layers * m->kv_heads, n_out;
    int32_t *counts = slimkv_malloc(2 * heads * sizeof *counts);
    uint8_t *encoded = slimkv_malloc(2 * heads * sizeof(int32_t));
    if (!counts || !encoded) {
        slimkv_free(counts);
        slimkv_free(encoded);
        return SLIMKV_ERR_NOMEM;
    }
    st_out out[4];
    masks_outputs(m, out, &n_out);
    const char *names[2] = {"k_kept", "v_kept"};
    const uint8_t *masks[2] = {m->k, m->v};
    for (int i = 0; i < 2; i++) {
        if (!masks[i])
            continue;
        count_kept(m, masks[i], counts + i * heads);
        st_encode_i32(counts + i * heads, heads, encoded + i * heads * sizeof(int32_t));
        st_out o = {.name = names[i], .dtype = ST_I32, .n_dims = 2, .shape = {m->layers, m->kv_heads},
                    .data = encoded + i * heads * sizeof(int32_t)};
        out[n_out++] = o;
    }
    char numbers[4][16];
    snprintf(numbers[0], sizeof numbers[0], "%d", p->group_size);
    snprintf(numbers[1], sizeof numbers[1], "%d", p->residual);
    snprintf(numbers[2], sizeof numbers[2], "%d", p->n_sink);
    snprintf(numbers[3], sizeof numbers[3], "%d", p->channel_align);
    st_meta meta[] = {
        {"format", PLAN_FORMAT},
        {"version", PLAN_VERSION},
        {"k_format", (char *)slimkv_format_name(p->k_format)},
        {"v_format", (char *)slimkv_format_name(p->v_format)},
        {"group_size", numbers[0]},
        {"residual", numbers[1]},
        {"n_sink", numbers[2]},
        {"channel_align", numbers[3]},
    };
    slimkv_status st = st_write(path, out, n_out, meta, sizeof meta / sizeof *meta);
    slimkv_free(counts);
    slimkv_free(encoded);
    return st;
}

slimkv_status slimkv_plan_layers(const slimkv_plan *p, int *layers)
{
    if (!p || !layers)
        return SLIMKV_ERR_NULL_ARG;
    *layers = p->masks.layers;
    return SLIMKV_OK;
}

slimkv_status slimkv_plan_layer_config(const slimkv_plan *p, int layer, slimkv_config *config)
{
    if (!p || !config)
        return SLIMKV_ERR_NULL_ARG;
    if (layer < 0 || layer >= p->masks.layers)
        return SLIMKV_ERR_INVALID_ARG;
    fill_layer(p, layer, config);
    return SLIMKV_OK;
}
