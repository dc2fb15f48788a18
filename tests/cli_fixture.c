/* The command-line tests' helper (tests/tools_cli.sh): writes the small
 * synthetic inputs slimkv-prune takes and checks what slimkv-plan and
 * slimkv-prune write, through the public API (plans) and the safetensors
 * reader (models), against the rules the README states, not against the
 * programs' own code. Prints what it checked; exit 0 when it holds, 1 with
 * a message on stderr when not, 2 on bad usage.
 *
 *   cli_fixture model OUT LAYERS N_Q N_KV HEAD_DIM HIDDEN DTYPE [bias]
 *       a Llama-named model (embeddings, norms, q/k/v/o projections and,
 *       with "bias", q/k biases), DTYPE f32, f16 or bf16, metadata format=pt
 *   cli_fixture hidden OUT TOKENS HIDDEN
 *       calibration hidden states calib.hidden [tokens, hidden], F32
 *   cli_fixture check-plan PLAN LAYERS N_KV HEAD_DIM K_FORMAT V_FORMAT [k-only]
 *       the plan loads (slimkv_plan_load), has these layers, shapes and
 *       formats, every layer makes a cache; k-only: every V channel kept
 *   cli_fixture check-pruned IN OUT PLAN zeroed|refit|removed
 *       OUT holds every tensor of IN, byte for byte except the layers'
 *       q_proj/k_proj weights and biases; those keep the rows of the plan's
 *       K mask closed under RoPE pairs (streaming heads whole) and zero the
 *       others (zeroed: kept rows unchanged; refit: kept k rows unchanged),
 *       or hold only the kept rows with k_kept_channels listing them (removed:
 *       q rows scaled by sqrt(d / head_dim)); metadata says what was done. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "slimkv.h"

static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cli_fixture: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

static int to_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return fail("bad number '%s' (expected %d to %d)", s, lo, hi);
    *out = (int)v;
    return 0;
}

/* ---- inputs ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static float uniform(void)
{
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (float)((rng_state >> 40) & 0xffffff) / (float)(1 << 24) * 2.0f - 1.0f;
}

/* Tensors to write: descriptors, their names and their encoded bytes. */
typedef struct tensor_set {
    st_out *out;
    char (*names)[96];
    void **bytes;
    size_t n;
} tensor_set;

static int set_init(tensor_set *t, size_t cap)
{
    t->out = calloc(cap, sizeof *t->out);
    t->names = calloc(cap, sizeof *t->names);
    t->bytes = calloc(cap, sizeof *t->bytes);
    t->n = 0;
    return t->out && t->names && t->bytes ? 0 : fail("out of memory");
}

static void set_free(tensor_set *t)
{
    for (size_t i = 0; t->bytes && i < t->n; i++)
        free(t->bytes[i]);
    free(t->out);
    free(t->names);
    free(t->bytes);
}

/* A random tensor [rows] (cols 0) or [rows, cols] of dtype. */
static int add_tensor(tensor_set *t, const char *name, st_dtype dtype, int64_t rows, int64_t cols)
{
    size_t count = (size_t)rows * (size_t)(cols ? cols : 1);
    float *x = malloc(count * sizeof *x);
    void *bytes = malloc(count * st_dtype_size(dtype));
    if (!x || !bytes) {
        free(x);
        free(bytes);
        return fail("out of memory");
    }
    for (size_t i = 0; i < count; i++)
        x[i] = 0.5f * uniform();
    st_encode_f32(dtype, x, count, bytes);
    free(x);
    size_t i = t->n++;
    t->bytes[i] = bytes;
    snprintf(t->names[i], sizeof t->names[i], "%s", name);
    t->out[i] = (st_out){.name = t->names[i], .dtype = dtype, .n_dims = cols ? 2 : 1, .shape = {rows, cols},
                         .data = bytes};
    return 0;
}

static int write_tensors(const char *path, const tensor_set *t, const char *format)
{
    st_meta meta = {"format", (char *)format};
    slimkv_status st = st_write(path, t->out, t->n, format ? &meta : NULL, format ? 1 : 0);
    if (st != SLIMKV_OK)
        return fail("%s: %s", path, slimkv_status_str(st));
    printf("wrote %s: %zu tensors\n", path, t->n);
    return 0;
}

static int make_model(int argc, char **argv)
{
    int layers, n_q, n_kv, dim, hidden;
    if (argc < 9 || argc > 10)
        return 2;
    if (to_int(argv[3], 1, 64, &layers) || to_int(argv[4], 1, 64, &n_q) || to_int(argv[5], 1, 64, &n_kv) ||
        to_int(argv[6], 2, 512, &dim) || to_int(argv[7], 1, 4096, &hidden))
        return 1;
    st_dtype dtype = !strcmp(argv[8], "f32") ? ST_F32 : !strcmp(argv[8], "f16") ? ST_F16
                     : !strcmp(argv[8], "bf16")                                  ? ST_BF16 : ST_DTYPE_COUNT;
    int bias = argc == 10 && !strcmp(argv[9], "bias");
    if (dtype == ST_DTYPE_COUNT || (argc == 10 && !bias))
        return 2;
    tensor_set t;
    int rc = set_init(&t, (size_t)layers * 7 + 1) || add_tensor(&t, "model.embed_tokens.weight", dtype, 16, hidden);
    for (int l = 0; l < layers && !rc; l++) {
        char name[96];
#define ADD(what, rows, cols) \
    (snprintf(name, sizeof name, "model.layers.%d.%s", l, what), add_tensor(&t, name, dtype, rows, cols))
        rc = ADD("input_layernorm.weight", hidden, 0) || ADD("self_attn.q_proj.weight", n_q * dim, hidden) ||
             ADD("self_attn.k_proj.weight", n_kv * dim, hidden) || ADD("self_attn.v_proj.weight", n_kv * dim, hidden) ||
             ADD("self_attn.o_proj.weight", hidden, n_q * dim) ||
             (bias && (ADD("self_attn.q_proj.bias", n_q * dim, 0) || ADD("self_attn.k_proj.bias", n_kv * dim, 0)));
#undef ADD
    }
    rc = rc || write_tensors(argv[2], &t, "pt");
    set_free(&t);
    return rc;
}

static int make_hidden(int argc, char **argv)
{
    int tokens, hidden;
    if (argc != 5)
        return 2;
    if (to_int(argv[3], 1, 1 << 16, &tokens) || to_int(argv[4], 1, 4096, &hidden))
        return 1;
    tensor_set t;
    int rc = set_init(&t, 1) || add_tensor(&t, "calib.hidden", ST_F32, tokens, hidden) ||
             write_tensors(argv[2], &t, NULL);
    set_free(&t);
    return rc;
}

/* ---- plans ---- */

static int check_plan(int argc, char **argv)
{
    int layers, n_kv, dim;
    if (argc < 8 || argc > 9 || (argc == 9 && strcmp(argv[8], "k-only")))
        return 2;
    if (to_int(argv[3], 1, 4096, &layers) || to_int(argv[4], 1, 4096, &n_kv) || to_int(argv[5], 1, 4096, &dim))
        return 1;
    slimkv_plan *plan;
    slimkv_status st = slimkv_plan_load(argv[2], &plan);
    if (st != SLIMKV_OK)
        return fail("%s: does not load: %s", argv[2], slimkv_status_str(st));
    int got, rc = 0;
    slimkv_plan_layers(plan, &got);
    if (got != layers)
        rc = fail("%s: %d layers, expected %d", argv[2], got, layers);
    printf("plan %s: %d layers, K %s, V %s; kept K channels per KV head:", argv[2], got, argv[6], argv[7]);
    for (int l = 0; l < got && !rc; l++) {
        slimkv_config cfg;
        slimkv_config_init(&cfg);
        cfg.n_q_heads = 2 * n_kv;
        cfg.capacity = 256;
        if ((st = slimkv_plan_layer_config(plan, l, &cfg)) != SLIMKV_OK)
            rc = fail("layer %d: slimkv_plan_layer_config: %s", l, slimkv_status_str(st));
        else if (cfg.n_kv_heads != n_kv || cfg.head_dim != dim)
            rc = fail("layer %d: %d KV heads x %d channels, expected %d x %d", l, cfg.n_kv_heads, cfg.head_dim, n_kv, dim);
        else if (strcmp(slimkv_format_name(cfg.k_format), argv[6]) || strcmp(slimkv_format_name(cfg.v_format), argv[7]))
            rc = fail("layer %d: formats K %s, V %s", l, slimkv_format_name(cfg.k_format), slimkv_format_name(cfg.v_format));
        else if (cfg.policy != SLIMKV_POLICY_STATIC || !cfg.k_mask)
            rc = fail("layer %d: no static K mask", l);
        for (int h = 0; h < n_kv && !rc; h++) {
            int k = 0, v = 0;
            for (int c = 0; c < dim; c++) {
                k += cfg.k_mask[h * dim + c];
                v += cfg.v_mask ? cfg.v_mask[h * dim + c] : 1;
            }
            printf(" %d", k);
            if (argc == 9 && v != dim)
                rc = fail("layer %d: V channels pruned in a K-only plan", l);
        }
        slimkv_cache *cache = NULL;
        if (!rc && (st = slimkv_cache_create(&cfg, &cache)) != SLIMKV_OK)
            rc = fail("layer %d: no cache from the plan: %s", l, slimkv_status_str(st));
        slimkv_cache_destroy(cache);
    }
    printf("\n");
    slimkv_plan_destroy(plan);
    return rc;
}

/* ---- pruned models ---- */

static const char *const qk_names[4] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                        "self_attn.q_proj.bias", "self_attn.k_proj.bias"};

/* The layer and kind (0..3) of a q/k projection tensor name; -1 otherwise. */
static int qk_kind(const char *name, int *layer)
{
    int l, used = 0;
    if (sscanf(name, "model.layers.%d.%n", &l, &used) != 1 || used == 0)
        return -1;
    for (int k = 0; k < 4; k++)
        if (!strcmp(name + used, qk_names[k])) {
            *layer = l;
            return k;
        }
    return -1;
}

static float *read_all(const st_file *f, const st_tensor *t)
{
    float *x = malloc((t->n_elems ? t->n_elems : 1) * sizeof *x);
    if (x && st_read_f32(f, t, x) != SLIMKV_OK) {
        free(x);
        return NULL;
    }
    return x;
}

static const st_tensor *layer_tensor(const st_file *f, int layer, const char *what)
{
    char name[128];
    snprintf(name, sizeof name, "model.layers.%d.%s", layer, what);
    return st_find(f, name);
}

/* One layer's q/k weight or bias (kind 0..3) in the output against the input
 * and the weight-side keep mask [n_kv][dim]. */
static int check_rows(const char *what, int l, const st_file *in, const st_file *out, int kind, int n_kv, int dim,
                      const uint8_t *keep, const char *mode)
{
    const st_tensor *ti = layer_tensor(in, l, qk_names[kind]), *to = layer_tensor(out, l, qk_names[kind]);
    if (!ti)
        return 0;
    if (!to || to->dtype != ti->dtype)
        return fail("layer %d %s: missing or retyped in the output", l, qk_names[kind]);
    int is_q = kind == 0 || kind == 2, removed = !strcmp(mode, "removed");
    int64_t cols = ti->n_dims == 2 ? ti->shape[1] : 1, heads = ti->shape[0] / dim;
    int group = (int)(heads / n_kv), d = dim;
    int32_t *index = NULL;
    if (removed) { /* the kept channels of every head, ascending: one count d */
        d = 0;
        for (int c = 0; c < dim; c++)
            d += keep[c];
        const st_tensor *ix = layer_tensor(out, l, "self_attn.k_kept_channels");
        int64_t want[2] = {n_kv, d};
        if (!ix || ix->dtype != ST_I32 || !st_shape_is(ix, 2, want))
            return fail("layer %d: no k_kept_channels I32 [%d, %d]", l, n_kv, d);
        index = malloc((size_t)n_kv * d * sizeof *index);
        if (!index || st_read_bytes(out, ix, 0, (size_t)n_kv * d * 4, index) != SLIMKV_OK) {
            free(index);
            return fail("layer %d: k_kept_channels unreadable", l);
        }
        for (int h = 0, at = 0; h < n_kv; h++)
            for (int c = 0; c < dim; c++)
                if (keep[h * dim + c] && index[at++] != c) {
                    free(index);
                    return fail("layer %d: k_kept_channels are not the kept channels in order", l);
                }
    }
    int64_t want_shape[2] = {heads * d, cols};
    if (!st_shape_is(to, ti->n_dims, want_shape)) {
        free(index);
        return fail("layer %d %s: wrong shape", l, qk_names[kind]);
    }
    float *xi = read_all(in, ti), *xo = read_all(out, to);
    int rc = !xi || !xo ? fail("layer %d %s: unreadable", l, qk_names[kind]) : 0;
    /* removed q rows are rescaled, then encoded in the model's dtype again */
    double scale = removed && is_q ? sqrt((double)d / dim) : 1.0, tol = ti->dtype == ST_F32 ? 1e-6 : 1e-2;
    for (int64_t r = 0; r < heads * d && !rc; r++) {
        int head = (int)(r / d), kv = is_q ? head / group : head;
        int c = removed ? index[kv * d + r % d] : (int)(r % d);
        const float *src = xi + ((int64_t)head * dim + c) * cols, *dst = xo + r * cols;
        if (keep[kv * dim + c] && is_q && !strcmp(mode, "refit"))
            continue; /* refit q rows are new values; their pruned rows must still be zero */
        for (int64_t j = 0; j < cols && !rc; j++) {
            double want = keep[kv * dim + c] ? scale * src[j] : 0.0;
            if (scale == 1.0 ? dst[j] != (float)want : fabs(dst[j] - want) > tol * (fabs(want) + 1e-3))
                rc = fail("layer %d %s: row %lld is not what the plan's mask makes of it", l, qk_names[kind],
                          (long long)r);
        }
    }
    if (!rc)
        printf("  layer %d %s: %s, %s\n", l, qk_names[kind], what, removed ? "only the kept rows" : "pruned rows zero");
    free(xi);
    free(xo);
    free(index);
    return rc;
}

static int check_pruned(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[5], "zeroed") && strcmp(argv[5], "refit") && strcmp(argv[5], "removed")))
        return 2;
    const char *mode = argv[5];
    st_file *in = NULL, *out = NULL;
    slimkv_plan *plan = NULL;
    slimkv_status st;
    int rc = 0;
    if ((st = st_open(argv[2], &in)) != SLIMKV_OK || (st = st_open(argv[3], &out)) != SLIMKV_OK ||
        (st = slimkv_plan_load(argv[4], &plan)) != SLIMKV_OK) {
        rc = fail("inputs: %s", slimkv_status_str(st));
        goto done;
    }
    /* every other tensor byte for byte; nothing else added */
    size_t extra = 0;
    for (size_t i = 0; i < in->n_tensors && !rc; i++) {
        const st_tensor *ti = &in->tensors[i], *to = st_find(out, ti->name);
        int layer;
        if (qk_kind(ti->name, &layer) >= 0)
            continue;
        if (!to || to->dtype != ti->dtype || !st_shape_is(to, ti->n_dims, ti->shape)) {
            rc = fail("%s: missing or changed in the output", ti->name);
            break;
        }
        uint8_t *a = malloc(ti->n_bytes + 1), *b = malloc(ti->n_bytes + 1);
        if (!a || !b || st_read_bytes(in, ti, 0, ti->n_bytes, a) || st_read_bytes(out, to, 0, to->n_bytes, b) ||
            memcmp(a, b, ti->n_bytes))
            rc = fail("%s: not copied byte for byte", ti->name);
        free(a);
        free(b);
    }
    for (size_t i = 0; i < out->n_tensors; i++)
        extra += strstr(out->tensors[i].name, ".k_kept_channels") != NULL;
    int layers;
    slimkv_plan_layers(plan, &layers);
    if (!rc && (out->n_tensors != in->n_tensors + extra || extra != (size_t)(strcmp(mode, "removed") ? 0 : layers)))
        rc = fail("%s: unexpected tensors in the output", argv[3]);
    const char *pruning = st_meta_get(out, "slimkv.k_pruning"), *refit = st_meta_get(out, "slimkv.q_refit");
    const char *format = st_meta_get(out, "format");
    if (!rc && (!pruning || strcmp(pruning, strcmp(mode, "removed") ? "zeroed" : "removed") || !refit ||
                strcmp(refit, strcmp(mode, "refit") ? "none" : "sds-least-squares") || !format || strcmp(format, "pt")))
        rc = fail("%s: metadata does not say what was done", argv[3]);
    if (!rc)
        printf("pruned %s (%s) from %s and %s: other tensors copied byte for byte, metadata kept\n", argv[3],
               mode, argv[2], argv[4]);
    for (int l = 0; l < layers && !rc; l++) {
        slimkv_config cfg;
        slimkv_config_init(&cfg);
        slimkv_plan_layer_config(plan, l, &cfg);
        int n_kv = cfg.n_kv_heads, dim = cfg.head_dim, half = dim / 2;
        uint8_t *keep = malloc((size_t)n_kv * dim);
        if (!keep) {
            rc = fail("out of memory");
            break;
        }
        /* the rules: pairs (c, c + D/2) kept when either is; streaming heads whole */
        int kept = 0;
        for (int h = 0; h < n_kv; h++) {
            const uint8_t *m = cfg.k_mask + (size_t)h * dim;
            int any = 0;
            for (int c = 0; c < dim; c++)
                any |= m[c];
            for (int c = 0; c < dim; c++)
                kept += keep[h * dim + c] = !any || m[c] || m[(c + half) % dim];
        }
        char what[64];
        snprintf(what, sizeof what, "%d of %d K channels kept", kept, n_kv * dim);
        for (int k = 0; k < 4 && !rc; k++)
            rc = check_rows(what, l, in, out, k, n_kv, dim, keep, mode);
        free(keep);
    }
done:
    slimkv_plan_destroy(plan);
    st_close(out);
    st_close(in);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 2;
    if (argc >= 2 && !strcmp(argv[1], "model"))
        rc = make_model(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "hidden"))
        rc = make_hidden(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "check-plan"))
        rc = check_plan(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "check-pruned"))
        rc = check_pruned(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: cli_fixture model|hidden|check-plan|check-pruned ... (see tests/cli_fixture.c)\n");
    return rc;
}
