/* Calibration files: per-layer Q/K/V reading, and the synthetic workload. */
#include "calib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tensor_name(char *buf, size_t len, int layer, const char *what)
{
    return snprintf(buf, len, "layers.%d.%s", layer, what) < (int)len;
}

/* A float tensor [tokens][heads][head_dim]; shape[1] == 0 accepts any head count. */
static const st_tensor *find_qkv(const calib_file *c, int layer, const char *what, int64_t shape[3])
{
    char name[64];
    tensor_name(name, sizeof name, layer, what);
    const st_tensor *t = st_find(c->file, name);
    if (!t)
        return NULL;
    int ok = t->n_dims == 3 && st_dtype_is_float(t->dtype) && t->shape[0] >= 1 && t->shape[1] >= 1 &&
             t->shape[2] >= 4 && t->shape[0] <= 1 << 24 && t->shape[1] <= 1 << 12 && t->shape[2] <= 1024;
    if (ok && shape[0] != 0)
        ok = t->shape[0] == shape[0] && t->shape[2] == shape[2] && (shape[1] == 0 || t->shape[1] == shape[1]);
    if (!ok) {
        fprintf(stderr, "calibration: %s must be a float tensor [tokens][heads][head_dim] (4 <= head_dim <= 1024)"
                        " with the shapes of layer 0\n", name);
        return NULL;
    }
    if (shape[0] == 0 || shape[1] == 0)
        memcpy(shape, t->shape, 3 * sizeof *shape);
    return t;
}

int calib_open(const char *path, calib_file *c)
{
    memset(c, 0, sizeof *c);
    slimkv_status st = st_open(path, &c->file);
    if (st != SLIMKV_OK) {
        fprintf(stderr, "%s: %s\n", path, slimkv_status_str(st));
        return -1;
    }
    char name[64];
    while (tensor_name(name, sizeof name, c->n_layers, "q") && st_find(c->file, name))
        c->n_layers++;
    if (c->n_layers == 0) {
        fprintf(stderr, "%s: no tensor layers.0.q\n", path);
        calib_close(c);
        return -1;
    }
    int64_t q_shape[3] = {0, 0, 0}, kv_shape[3] = {0, 0, 0};
    for (int l = 0; l < c->n_layers; l++) {
        if (!find_qkv(c, l, "q", q_shape))
            goto fail;
        if (kv_shape[0] == 0) { /* K/V: same tokens and head_dim as Q, own head count */
            kv_shape[0] = q_shape[0];
            kv_shape[2] = q_shape[2];
        }
        if (!find_qkv(c, l, "k", kv_shape) || !find_qkv(c, l, "v", kv_shape))
            goto fail;
    }
    c->n_tokens = (int)q_shape[0];
    c->n_q_heads = (int)q_shape[1];
    c->n_kv_heads = (int)kv_shape[1];
    c->head_dim = (int)q_shape[2];
    if (c->n_q_heads % c->n_kv_heads != 0) {
        fprintf(stderr, "%s: %d query heads are not a multiple of %d KV heads\n", path, c->n_q_heads,
                c->n_kv_heads);
        goto fail;
    }
    c->layer_labels = st_meta_get(c->file, "slimkv.layer_labels");
    return 0;
fail:
    fprintf(stderr, "%s: missing or malformed calibration tensors\n", path);
    calib_close(c);
    return -1;
}

void calib_close(calib_file *c)
{
    st_close(c->file);
    c->file = NULL;
}

void calib_layer_free(calib_layer *l)
{
    free(l->q);
    free(l->k);
    free(l->v);
    memset(l, 0, sizeof *l);
}

int calib_load_layer(const calib_file *c, int layer, calib_layer *out)
{
    const char *what[3] = {"q", "k", "v"};
    float **dst[3] = {&out->q, &out->k, &out->v};
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 3; i++) {
        char name[64];
        tensor_name(name, sizeof name, layer, what[i]);
        const st_tensor *t = st_find(c->file, name); /* shapes were checked at open */
        slimkv_status st = (*dst[i] = malloc(t->n_elems * sizeof(float))) ? st_read_f32(c->file, t, *dst[i])
                                                                          : SLIMKV_ERR_NOMEM;
        if (st != SLIMKV_OK) {
            fprintf(stderr, "calibration %s: %s\n", name, slimkv_status_str(st));
            calib_layer_free(out);
            return -1;
        }
    }
    return 0;
}

const char *calib_layer_label(const calib_file *c, int layer, char *buf, size_t len)
{
    buf[0] = 0;
    const char *p = c->layer_labels;
    for (int i = 0; p && i < layer; i++)
        p = (p = strchr(p, ',')) ? p + 1 : NULL;
    if (p)
        snprintf(buf, len, "%.*s", (int)strcspn(p, ","), p);
    return buf;
}

/* ---- synthetic calibration ---- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) /* splitmix64 */
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(rng *r) /* [0, 1) */
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static float rng_normal(rng *r)
{
    double u = rng_uniform(r), v = rng_uniform(r);
    return (float)(sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v));
}

enum { KIND_OUTLIER, KIND_SPREAD, KIND_MEDIUM, KIND_COUNT };
static const char *const kind_names[KIND_COUNT] = {"outlier", "spread", "medium"};

/* Per-channel standard deviations: `hot` random channels get `high`, the others `low`. */
static void channel_scales(rng *r, int dim, int hot, float high, float low, float *scale)
{
    for (int c = 0; c < dim; c++)
        scale[c] = low;
    for (int placed = 0; placed < hot;) {
        int c = (int)(rng_uniform(r) * dim);
        if (scale[c] != high) {
            scale[c] = high;
            placed++;
        }
    }
}

static void synth_layer(rng *r, const synth_params *p, int kind, float *q, float *k, float *v)
{
    int d = p->head_dim, nkv = p->n_kv_heads, nq = p->n_q_heads, group = nq / nkv;
    float *ks = malloc(2 * (size_t)d * sizeof *ks), *vs = ks + d;
    for (int h = 0; h < nkv; h++) {
        switch (kind) {
        case KIND_OUTLIER:
            channel_scales(r, d, d / 16 > 4 ? d / 16 : 4, 3.0f, 0.15f, ks);
            channel_scales(r, d, d / 8, 2.0f, 0.2f, vs);
            break;
        case KIND_MEDIUM:
            channel_scales(r, d, d / 4, 1.6f, 0.5f, ks);
            channel_scales(r, d, d / 4, 1.5f, 0.5f, vs);
            break;
        default:
            channel_scales(r, d, 0, 1.0f, 1.0f, ks);
            channel_scales(r, d, 0, 1.0f, 1.0f, vs);
        }
        double energy = 0;
        for (int c = 0; c < d; c++)
            energy += (double)ks[c] * ks[c];
        /* a query matching its target key scores ~8 above the typical key */
        float beta = (float)(8.0 * sqrt((double)d) / energy);
        for (int t = 0; t < p->n_tokens; t++) {
            float *kr = k + ((size_t)t * nkv + h) * d, *vr = v + ((size_t)t * nkv + h) * d;
            for (int c = 0; c < d; c++) {
                kr[c] = ks[c] * rng_normal(r);
                vr[c] = vs[c] * rng_normal(r);
            }
        }
        for (int t = 0; t < p->n_tokens; t++)
            for (int j = 0; j < group; j++) {
                int target = (int)(rng_uniform(r) * (t + 1));
                const float *kt = k + ((size_t)target * nkv + h) * d;
                float *qr = q + ((size_t)t * nq + h * group + j) * d;
                for (int c = 0; c < d; c++)
                    qr[c] = beta * kt[c] + 0.1f * ks[c] * rng_normal(r);
            }
    }
    free(ks);
}

void synth_defaults(synth_params *p)
{
    p->n_layers = 6;
    p->n_tokens = 512;
    p->n_q_heads = 8;
    p->n_kv_heads = 2;
    p->head_dim = 64;
    p->seed = 1;
    p->dtype = ST_F32;
}

int calib_write_synthetic(const char *path, const synth_params *p)
{
    if (p->n_layers < 1 || p->n_tokens < 1 || p->n_kv_heads < 1 || p->n_q_heads % p->n_kv_heads != 0 ||
        p->head_dim < 16 || p->head_dim % 4 != 0 || (p->dtype != ST_F32 && p->dtype != ST_F16)) {
        fprintf(stderr, "synthetic: bad shape (needs q heads a multiple of kv heads, head_dim >= 16, "
                        "a multiple of 4)\n");
        return -1;
    }
    size_t per_layer[3] = {(size_t)p->n_tokens * p->n_q_heads * p->head_dim,
                           (size_t)p->n_tokens * p->n_kv_heads * p->head_dim,
                           (size_t)p->n_tokens * p->n_kv_heads * p->head_dim};
    size_t floats = per_layer[0] + per_layer[1] + per_layer[2], n_out = (size_t)p->n_layers * 3;
    float *f32 = malloc(floats * sizeof *f32);
    uint8_t *data = malloc((size_t)p->n_layers * floats * st_dtype_size(p->dtype));
    st_out *out = calloc(n_out, sizeof *out);
    char *names = malloc(n_out * 32), *labels = malloc((size_t)p->n_layers * 16 + 1);
    int rc = -1;
    if (!f32 || !data || !out || !names || !labels)
        goto done;
    rng r = {p->seed};
    labels[0] = 0;
    uint8_t *at = data;
    for (int l = 0; l < p->n_layers; l++) {
        int kind = l % KIND_COUNT;
        synth_layer(&r, p, kind, f32, f32 + per_layer[0], f32 + per_layer[0] + per_layer[1]);
        strcat(labels, kind_names[kind]);
        strcat(labels, l + 1 < p->n_layers ? "," : "");
        const char *what[3] = {"q", "k", "v"};
        const float *src = f32;
        for (int i = 0; i < 3; i++) {
            st_out *o = &out[l * 3 + i];
            char *name = names + (size_t)(l * 3 + i) * 32;
            tensor_name(name, 32, l, what[i]);
            o->name = name;
            o->dtype = p->dtype;
            o->n_dims = 3;
            o->shape[0] = p->n_tokens;
            o->shape[1] = i == 0 ? p->n_q_heads : p->n_kv_heads;
            o->shape[2] = p->head_dim;
            o->data = at;
            st_encode_f32(p->dtype, src, per_layer[i], at);
            at += per_layer[i] * st_dtype_size(p->dtype);
            src += per_layer[i];
        }
    }
    st_meta meta[] = {{"format", "slimkv-calibration"}, {"slimkv.layer_labels", labels}};
    slimkv_status st = st_write(path, out, n_out, meta, 2);
    if (st != SLIMKV_OK)
        fprintf(stderr, "%s: %s\n", path, slimkv_status_str(st));
    rc = st == SLIMKV_OK ? 0 : -1;
done:
    if (rc != 0 && (!f32 || !data || !out || !names || !labels))
        fprintf(stderr, "synthetic: out of memory\n");
    free(f32);
    free(data);
    free(out);
    free(names);
    free(labels);
    return rc;
}
