/* The tools' logic, through their libraries (tools/plan: libslimkv_plan.a,
 * tools/prune: libslimkv_prune.a; tests/tools_cli.sh runs the programs
 * themselves): the per-layer budget search beats a uniform keep ratio at the
 * same bytes on the synthetic workload, and its plan loads into caches
 * holding exactly the bytes it reported; weight-side pruning gives the same
 * attention as masking at run time; the SDS refit lowers the calibration
 * score error. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "budget.h"
#include "calib.h"
#include "oracle.h"
#include "safetensors.h"
#include "tmpdir.h"
#include "weights.h"

/* ---- budget search ---- */

static void run_budget(int per_head)
{
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char calib_path[300], plan_path[300];
    tmpdir_file(&d, "calib.safetensors", calib_path, sizeof calib_path);
    tmpdir_file(&d, "plan.safetensors", plan_path, sizeof plan_path);
    synth_params sp;
    synth_defaults(&sp);
    sp.n_layers = 6;
    sp.n_tokens = 256;
    sp.n_q_heads = 4;
    sp.n_kv_heads = 2;
    sp.head_dim = 64;
    sp.dtype = ST_F16; /* exercises the f16 calibration path */
    assert_int_equal(calib_write_synthetic(calib_path, &sp), 0);

    calib_file calib;
    assert_int_equal(calib_open(calib_path, &calib), 0);
    assert_int_equal(calib.n_layers, 6);
    budget_params p;
    budget_defaults(&p);
    p.residual = 32;
    p.context = 2048;
    p.n_queries = 16;
    p.budget = 0.5;
    p.per_head = per_head;
    budget_result r;
    assert_int_equal(budget_search(&calib, &p, &r), 0);
    budget_print(stdout, &calib, &p, &r);

    /* within budget; a uniform baseline exists; at the uniform's own bytes
     * the searched plan has clearly less error */
    assert_true(r.plan.bytes <= r.budget_bytes);
    assert_non_null(r.uniform.k_count);
    assert_true(r.uniform.bytes <= r.budget_bytes);
    assert_true(r.plan_at_uniform.bytes <= r.uniform.bytes);
    assert_true(r.plan_at_uniform.total_err < 0.8 * r.uniform.total_err);
    assert_true(r.plan.total_err < 0.8 * r.uniform.total_err);
    /* sensitivity drives it: outlier layers (0, 3) keep fewer K channels than spread ones (1, 4) */
    int outlier = 0, spread = 0;
    for (int h = 0; h < 2; h++) {
        outlier += r.plan.k_count[0 * 2 + h] + r.plan.k_count[3 * 2 + h];
        spread += r.plan.k_count[1 * 2 + h] + r.plan.k_count[4 * 2 + h];
    }
    assert_true(outlier < spread);

    /* the plan file gives caches holding exactly the bytes the search counted */
    slimkv_plan *plan;
    assert_int_equal(budget_make_plan(&p, &r, &plan), SLIMKV_OK);
    assert_int_equal(slimkv_plan_save(plan_path, plan), SLIMKV_OK);
    slimkv_plan_destroy(plan);
    assert_int_equal(slimkv_plan_load(plan_path, &plan), SLIMKV_OK);
    float *zeros = calloc((size_t)p.context * 2 * 64, sizeof *zeros);
    size_t total = 0;
    for (int l = 0; l < 6; l++) {
        slimkv_config c;
        slimkv_config_init(&c);
        c.n_q_heads = 4;
        c.capacity = p.context;
        assert_int_equal(slimkv_plan_layer_config(plan, l, &c), SLIMKV_OK);
        slimkv_cache *cache;
        assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_OK);
        assert_int_equal(slimkv_cache_append(cache, zeros, zeros, p.context), SLIMKV_OK);
        size_t bytes;
        assert_int_equal(slimkv_cache_bytes(cache, &bytes), SLIMKV_OK);
        total += bytes;
        for (int h = 0; h < 2; h++) {
            int count;
            assert_int_equal(slimkv_cache_kept_channels(cache, h, 0, NULL, &count), SLIMKV_OK);
            assert_int_equal(count, r.plan.k_count[l * 2 + h]);
        }
        slimkv_cache_destroy(cache);
    }
    assert_int_equal(total, r.plan.bytes);
    free(zeros);
    slimkv_plan_destroy(plan);
    budget_result_free(&r);
    calib_close(&calib);
    tmpdir_remove(&d);
}

static void test_budget_per_layer(void **state)
{
    (void)state;
    run_budget(0);
}

static void test_budget_per_head(void **state)
{
    (void)state;
    run_budget(1);
}

/* ---- weight-side pruning ---- */

enum { LAYERS = 2, HIDDEN = 48, NQ = 4, NKV = 2, D = 16, T = 64, QUERIES = 4 };

typedef struct model {
    float wq[LAYERS][NQ * D * HIDDEN], wk[LAYERS][NKV * D * HIDDEN], wv[LAYERS][NKV * D * HIDDEN];
    float embed[10 * HIDDEN];
    float x[T * HIDDEN];
} model;

static void make_model(model *m, uint64_t seed)
{
    test_rng r;
    rng_seed(&r, seed);
    fill_normal(&r, &m->wq[0][0], sizeof m->wq / sizeof(float), 0.3f);
    fill_normal(&r, &m->wk[0][0], sizeof m->wk / sizeof(float), 0.3f);
    fill_normal(&r, &m->wv[0][0], sizeof m->wv / sizeof(float), 0.3f);
    fill_normal(&r, m->embed, sizeof m->embed / sizeof(float), 1.0f);
    fill_normal(&r, m->x, sizeof m->x / sizeof(float), 1.0f);
}

static void save_model(const model *m, const char *path)
{
    static char names[LAYERS * 3][64];
    st_out out[1 + LAYERS * 3];
    out[0] = (st_out){.name = "model.embed_tokens.weight", .dtype = ST_F32, .n_dims = 2, .shape = {10, HIDDEN},
                      .data = m->embed};
    const char *what[3] = {"q_proj", "k_proj", "v_proj"};
    for (int l = 0; l < LAYERS; l++)
        for (int i = 0; i < 3; i++) {
            char *name = names[l * 3 + i];
            snprintf(name, 64, "model.layers.%d.self_attn.%s.weight", l, what[i]);
            const float *w = i == 0 ? m->wq[l] : i == 1 ? m->wk[l] : m->wv[l];
            out[1 + l * 3 + i] = (st_out){.name = name, .dtype = ST_F32, .n_dims = 2,
                                          .shape = {(i == 0 ? NQ : NKV) * D, HIDDEN}, .data = w};
        }
    st_meta meta[] = {{"format", "pt"}};
    assert_int_equal(st_write(path, out, 1 + LAYERS * 3, meta, 1), SLIMKV_OK);
}

static float *read_tensor(const char *path, const char *name, int64_t rows)
{
    st_file *f;
    assert_int_equal(st_open(path, &f), SLIMKV_OK);
    const st_tensor *t = st_find(f, name);
    assert_non_null(t);
    assert_int_equal(t->shape[0], rows);
    float *x = malloc(t->n_elems * sizeof *x);
    assert_int_equal(st_read_f32(f, t, x), SLIMKV_OK);
    st_close(f);
    return x;
}

/* Rotate-half RoPE of one head row of `dim` channels at position pos;
 * channel j's frequency is that of original channel index[j] (identity when
 * index is NULL) in a head of orig_dim channels. */
static void rope(float *x, int dim, const int32_t *index, int orig_dim, int pos)
{
    int half = dim / 2;
    for (int j = 0; j < half; j++) {
        int c = index ? index[j] : j;
        float theta = (float)pos * powf(10000.0f, -2.0f * (float)c / (float)orig_dim);
        float a = x[j], b = x[j + half], cs = cosf(theta), sn = sinf(theta);
        x[j] = a * cs - b * sn;
        x[j + half] = a * sn + b * cs;
    }
}

/* out [T][heads][dim] = RoPE(X W^T) (no RoPE when rotate is 0). */
static void project_heads(const float *x, const float *w, int heads, int dim, const int32_t *index, int orig_dim,
                          int rotate, float *out)
{
    for (int t = 0; t < T; t++)
        for (int h = 0; h < heads; h++) {
            float *o = out + ((size_t)t * heads + h) * dim;
            for (int c = 0; c < dim; c++) {
                double s = 0;
                for (int i = 0; i < HIDDEN; i++)
                    s += (double)x[t * HIDDEN + i] * w[((size_t)h * dim + c) * HIDDEN + i];
                o[c] = (float)s;
            }
            if (rotate)
                rope(o, dim, index ? index + (size_t)(h * NKV / heads) * dim : NULL, orig_dim, t);
        }
}

/* Decode attention of the last QUERIES queries through an f32 cache with
 * every token in the compressed body (R = 0, no sinks). */
static void cache_attend(const float *q, const float *k, const float *v, const uint8_t *k_mask, float *out)
{
    slimkv_config c;
    slimkv_config_init(&c);
    c.n_q_heads = NQ;
    c.n_kv_heads = NKV;
    c.head_dim = D;
    c.capacity = T;
    c.k_format = c.v_format = SLIMKV_F32;
    c.group_size = 16;
    c.residual = 0;
    c.channel_align = 4;
    if (k_mask) {
        c.policy = SLIMKV_POLICY_STATIC;
        c.k_mask = k_mask;
    }
    slimkv_cache *cache;
    assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(cache, k, v, T), SLIMKV_OK);
    assert_int_equal(slimkv_attend(cache, q + (size_t)(T - QUERIES) * NQ * D, QUERIES, out), SLIMKV_OK);
    slimkv_cache_destroy(cache);
}

/* A plan with align 4 and f32 storage. */
static void save_plan(const uint8_t *k_mask, const char *path)
{
    slimkv_config s;
    slimkv_config_init(&s);
    s.n_kv_heads = NKV;
    s.head_dim = D;
    s.k_format = s.v_format = SLIMKV_F32;
    s.group_size = 16;
    s.residual = 0;
    s.channel_align = 4;
    slimkv_plan *plan;
    assert_int_equal(slimkv_plan_create(&s, LAYERS, k_mask, NULL, &plan), SLIMKV_OK);
    assert_int_equal(slimkv_plan_save(path, plan), SLIMKV_OK);
    slimkv_plan_destroy(plan);
}

/* Keeps pairs (p, p + D/2) for the listed p of one head. */
static void keep_pairs(uint8_t *mask, const int *pairs, int n)
{
    memset(mask, 0, D);
    for (int i = 0; i < n; i++)
        mask[pairs[i]] = mask[pairs[i] + D / 2] = 1;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (e > m)
            m = e;
    }
    return m;
}

/* Causal decode attention of the last QUERIES queries with q/k of head_dim
 * dk and v of head_dim D, scores scaled by 1/sqrt(dk). */
static void attend_by_hand(const float *q, const float *k, int dk, const float *v, float *out)
{
    for (int i = 0; i < QUERIES; i++)
        for (int hq = 0; hq < NQ; hq++) {
            int pos = T - QUERIES + i, h = hq / (NQ / NKV);
            double w[T], mx = -INFINITY, sum = 0;
            for (int t = 0; t <= pos; t++) {
                double s = 0;
                for (int c = 0; c < dk; c++)
                    s += (double)q[((size_t)pos * NQ + hq) * dk + c] * k[((size_t)t * NKV + h) * dk + c];
                w[t] = s / sqrt((double)dk);
                if (w[t] > mx)
                    mx = w[t];
            }
            for (int t = 0; t <= pos; t++) {
                w[t] = exp(w[t] - mx);
                sum += w[t];
            }
            for (int c = 0; c < D; c++) {
                double acc = 0;
                for (int t = 0; t <= pos; t++)
                    acc += w[t] * v[((size_t)t * NKV + h) * D + c];
                out[((size_t)i * NQ + hq) * D + c] = (float)(acc / sum);
            }
        }
}

static void test_pruned_weights_equal_runtime_mask(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char model_path[300], plan_path[300], out_path[300], compact_path[300];
    tmpdir_file(&d, "model.safetensors", model_path, sizeof model_path);
    tmpdir_file(&d, "plan.safetensors", plan_path, sizeof plan_path);
    tmpdir_file(&d, "pruned.safetensors", out_path, sizeof out_path);
    tmpdir_file(&d, "compact.safetensors", compact_path, sizeof compact_path);
    static model m;
    make_model(&m, 21);
    save_model(&m, model_path);

    /* plan A: pair-consistent, 8 of 16 channels per head, different per head */
    uint8_t mask_a[LAYERS * NKV * D];
    const int pairs[4][4] = {{0, 3, 5, 6}, {1, 2, 4, 7}, {0, 1, 2, 3}, {2, 4, 6, 7}};
    for (int i = 0; i < LAYERS * NKV; i++)
        keep_pairs(mask_a + i * D, pairs[i], 4);
    save_plan(mask_a, plan_path);
    prune_options o = {.model_in = model_path, .model_out = out_path, .plan_path = plan_path};
    assert_int_equal(prune_model(&o, NULL), 0);
    o.model_out = compact_path;
    o.remove = 1;
    assert_int_equal(prune_model(&o, NULL), 0);

    size_t nq = (size_t)T * NQ * D, nkv = (size_t)T * NKV * D, n_out = (size_t)QUERIES * NQ * D;
    float *q = malloc(nq * sizeof *q), *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v);
    float *q2 = malloc(nq * sizeof *q2), *k2 = malloc(nkv * sizeof *k2);
    float *runtime = malloc(n_out * sizeof *runtime), *pruned = malloc(n_out * sizeof *pruned);
    for (int l = 0; l < LAYERS; l++) {
        char qn[64], kn[64], in[64];
        snprintf(qn, sizeof qn, "model.layers.%d.self_attn.q_proj.weight", l);
        snprintf(kn, sizeof kn, "model.layers.%d.self_attn.k_proj.weight", l);
        snprintf(in, sizeof in, "model.layers.%d.self_attn.k_kept_channels", l);
        project_heads(m.x, m.wq[l], NQ, D, NULL, D, 1, q);
        project_heads(m.x, m.wk[l], NKV, D, NULL, D, 1, k);
        project_heads(m.x, m.wv[l], NKV, D, NULL, D, 0, v);
        cache_attend(q, k, v, mask_a + l * NKV * D, runtime);
        double scale = max_abs(v, nkv);

        /* zeroed rows: the pruned model needs no run-time mask */
        float *wq = read_tensor(out_path, qn, NQ * D), *wk = read_tensor(out_path, kn, NKV * D);
        for (int h = 0; h < NKV; h++)
            for (int c = 0; c < D; c++)
                if (!mask_a[(l * NKV + h) * D + c]) {
                    assert_true(max_abs(wk + (size_t)(h * D + c) * HIDDEN, HIDDEN) == 0);
                    for (int j = 0; j < NQ / NKV; j++)
                        assert_true(max_abs(wq + (size_t)((h * NQ / NKV + j) * D + c) * HIDDEN, HIDDEN) == 0);
                }
        project_heads(m.x, wq, NQ, D, NULL, D, 1, q2);
        project_heads(m.x, wk, NKV, D, NULL, D, 1, k2);
        cache_attend(q2, k2, v, NULL, pruned);
        assert_true(max_diff(runtime, pruned, n_out) <= 1e-5 * scale);
        free(wq);
        free(wk);

        /* removed rows: compact heads of 8 channels, RoPE by the index list,
         * q pre-scaled so 1/sqrt(8) scores equal the original 1/sqrt(16) ones */
        enum { DC = 8 };
        wq = read_tensor(compact_path, qn, NQ * DC);
        wk = read_tensor(compact_path, kn, NKV * DC);
        st_file *f;
        assert_int_equal(st_open(compact_path, &f), SLIMKV_OK);
        const st_tensor *ti = st_find(f, in);
        assert_non_null(ti);
        assert_true(ti->dtype == ST_I32 && ti->n_dims == 2 && ti->shape[0] == NKV && ti->shape[1] == DC);
        float idx_f[NKV * DC];
        int32_t index[NKV * DC];
        assert_int_equal(st_read_f32(f, ti, idx_f), SLIMKV_OK);
        st_close(f);
        for (int i = 0; i < NKV * DC; i++) {
            index[i] = (int32_t)idx_f[i];
            assert_true(mask_a[(l * NKV + i / DC) * D + index[i]]);
        }
        for (int h = 0; h < NKV; h++) /* rotate-half layout over the compact head */
            for (int j = 0; j < DC / 2; j++)
                assert_int_equal(index[h * DC + j + DC / 2], index[h * DC + j] + D / 2);
        float *qc = malloc((size_t)T * NQ * DC * sizeof *qc), *kc = malloc((size_t)T * NKV * DC * sizeof *kc);
        project_heads(m.x, wq, NQ, DC, index, D, 1, qc);
        project_heads(m.x, wk, NKV, DC, index, D, 1, kc);
        attend_by_hand(qc, kc, DC, v, pruned); /* V keeps head_dim D: no cache fits */
        assert_true(max_diff(runtime, pruned, n_out) <= 1e-5 * scale);
        free(qc);
        free(kc);
        free(wq);
        free(wk);
    }

    /* the other tensors are copied byte for byte */
    float *embed = read_tensor(out_path, "model.embed_tokens.weight", 10);
    assert_memory_equal(embed, m.embed, sizeof m.embed);
    free(embed);
    float *wv = read_tensor(compact_path, "model.layers.1.self_attn.v_proj.weight", NKV * D);
    assert_memory_equal(wv, m.wv[1], sizeof m.wv[1]);
    free(wv);

    /* plan B: not pair-consistent, with a streaming head. The weights keep the
     * pair closure (and the streaming head whole); the plan at run time then
     * computes on the pruned model exactly what it computes on the original */
    uint8_t mask_b[LAYERS * NKV * D];
    memset(mask_b, 0, sizeof mask_b);
    const int keep0[8] = {0, 1, 2, 3, 9, 10, 11, 12}, keep1[4] = {4, 5, 6, 15};
    for (int i = 0; i < 8; i++)
        mask_b[keep0[i]] = 1; /* layer 0 head 0; head 1 streams */
    for (int i = 0; i < 4; i++)
        mask_b[2 * D + keep1[i]] = mask_b[3 * D + keep1[i]] = 1; /* layer 1, both heads */
    save_plan(mask_b, plan_path);
    o.model_out = out_path;
    o.remove = 1;
    assert_int_not_equal(prune_model(&o, NULL), 0); /* unequal counts: no compact layout */
    o.remove = 0;
    assert_int_equal(prune_model(&o, NULL), 0);
    for (int l = 0; l < LAYERS; l++) {
        char qn[64], kn[64];
        snprintf(qn, sizeof qn, "model.layers.%d.self_attn.q_proj.weight", l);
        snprintf(kn, sizeof kn, "model.layers.%d.self_attn.k_proj.weight", l);
        project_heads(m.x, m.wq[l], NQ, D, NULL, D, 1, q);
        project_heads(m.x, m.wk[l], NKV, D, NULL, D, 1, k);
        project_heads(m.x, m.wv[l], NKV, D, NULL, D, 0, v);
        cache_attend(q, k, v, mask_b + l * NKV * D, runtime);
        float *wq = read_tensor(out_path, qn, NQ * D), *wk = read_tensor(out_path, kn, NKV * D);
        project_heads(m.x, wq, NQ, D, NULL, D, 1, q2);
        project_heads(m.x, wk, NKV, D, NULL, D, 1, k2);
        cache_attend(q2, k2, v, mask_b + l * NKV * D, pruned);
        assert_true(max_diff(runtime, pruned, n_out) <= 1e-5 * max_abs(v, nkv));
        if (l == 0) /* the streaming head's rows are untouched */
            assert_memory_equal(wk + (size_t)D * HIDDEN, m.wk[0] + (size_t)D * HIDDEN, sizeof(float) * D * HIDDEN);
        free(wq);
        free(wk);
    }
    free(q);
    free(k);
    free(v);
    free(q2);
    free(k2);
    free(runtime);
    free(pruned);
    tmpdir_remove(&d);
}

/* ---- SDS refit ---- */

/* ||S' - S||^2 and ||S||^2 summed over q heads, pre-RoPE, by brute force:
 * S = (X Wq^T)(X Wk^T)^T per head, S' with the refit/pruned q and pruned k. */
static void brute_score_error(const float *x, int n, const float *wq0, const float *wk0, const float *wq1,
                              const float *wk1, double *err, double *ref)
{
    float *q0 = malloc((size_t)n * NQ * D * sizeof *q0), *k0 = malloc((size_t)n * NKV * D * sizeof *k0);
    float *q1 = malloc((size_t)n * NQ * D * sizeof *q1), *k1 = malloc((size_t)n * NKV * D * sizeof *k1);
    assert_int_equal(n, T);
    project_heads(x, wq0, NQ, D, NULL, D, 0, q0);
    project_heads(x, wk0, NKV, D, NULL, D, 0, k0);
    project_heads(x, wq1, NQ, D, NULL, D, 0, q1);
    project_heads(x, wk1, NKV, D, NULL, D, 0, k1);
    *err = *ref = 0;
    for (int hq = 0; hq < NQ; hq++)
        for (int t = 0; t < n; t++)
            for (int u = 0; u < n; u++) {
                double s0 = 0, s1 = 0;
                int h = hq / (NQ / NKV);
                for (int c = 0; c < D; c++) {
                    s0 += (double)q0[((size_t)t * NQ + hq) * D + c] * k0[((size_t)u * NKV + h) * D + c];
                    s1 += (double)q1[((size_t)t * NQ + hq) * D + c] * k1[((size_t)u * NKV + h) * D + c];
                }
                *err += (s1 - s0) * (s1 - s0);
                *ref += s0 * s0;
            }
    free(q0);
    free(k0);
    free(q1);
    free(k1);
}

static void test_refit_lowers_score_error(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char model_path[300], plan_path[300], out_path[300], calib_path[300];
    tmpdir_file(&d, "model.safetensors", model_path, sizeof model_path);
    tmpdir_file(&d, "plan.safetensors", plan_path, sizeof plan_path);
    tmpdir_file(&d, "refit.safetensors", out_path, sizeof out_path);
    tmpdir_file(&d, "calib.safetensors", calib_path, sizeof calib_path);
    static model m;
    make_model(&m, 5);
    /* hidden states near a 6-dimensional subspace, as real activations are
     * far from isotropic: kept key channels then predict the pruned ones */
    test_rng r;
    rng_seed(&r, 9);
    float z[T * 6], a[6 * HIDDEN];
    fill_normal(&r, z, T * 6, 1.0f);
    fill_normal(&r, a, 6 * HIDDEN, 1.0f);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < HIDDEN; i++) {
            double s = 0.05 * rng_normal(&r);
            for (int j = 0; j < 6; j++)
                s += (double)z[t * 6 + j] * a[j * HIDDEN + i];
            m.x[t * HIDDEN + i] = (float)s;
        }
    save_model(&m, model_path);
    st_out calib_out = {.name = "calib.hidden", .dtype = ST_F32, .n_dims = 2, .shape = {T, HIDDEN}, .data = m.x};
    assert_int_equal(st_write(calib_path, &calib_out, 1, NULL, 0), SLIMKV_OK);
    uint8_t mask[LAYERS * NKV * D];
    const int pairs[4][4] = {{0, 3, 5, 6}, {1, 2, 4, 7}, {0, 1, 2, 3}, {2, 4, 6, 7}};
    for (int i = 0; i < LAYERS * NKV; i++)
        keep_pairs(mask + i * D, pairs[i], 4);
    save_plan(mask, plan_path);

    prune_options o = {.model_in = model_path, .model_out = out_path, .plan_path = plan_path,
                       .calib_path = calib_path};
    score_errors err = {0};
    assert_int_equal(prune_model(&o, &err), 0);
    printf("score error (relative): plain pruning %.4f, refit %.4f, %d of %d KV groups refit\n",
           sqrt(err.pruned / err.reference), sqrt(err.refit / err.reference), err.groups_refit, LAYERS * NKV);
    assert_true(err.refit < 0.5 * err.pruned);
    assert_int_equal(err.groups_refit, LAYERS * NKV);

    /* the tool's Gram-matrix error equals a brute-force score comparison, and
     * the written weights are pruned again (zero rows) */
    double brute = 0, brute_ref = 0, plain = 0;
    for (int l = 0; l < LAYERS; l++) {
        char qn[64], kn[64];
        snprintf(qn, sizeof qn, "model.layers.%d.self_attn.q_proj.weight", l);
        snprintf(kn, sizeof kn, "model.layers.%d.self_attn.k_proj.weight", l);
        float *wq = read_tensor(out_path, qn, NQ * D), *wk = read_tensor(out_path, kn, NKV * D);
        double e, ref;
        brute_score_error(m.x, T, m.wq[l], m.wk[l], wq, wk, &e, &ref);
        brute += e;
        brute_ref += ref;
        /* plain pruning by hand, for the comparison */
        qk_layer w = {NQ, NKV, D, HIDDEN, malloc(sizeof m.wq[l]), malloc(sizeof m.wk[l]), NULL, NULL};
        memcpy(w.wq, m.wq[l], sizeof m.wq[l]);
        memcpy(w.wk, m.wk[l], sizeof m.wk[l]);
        qk_prune(&w, mask + l * NKV * D);
        brute_score_error(m.x, T, m.wq[l], m.wk[l], w.wq, w.wk, &e, &ref);
        plain += e;
        for (int h = 0; h < NKV; h++)
            for (int c = 0; c < D; c++)
                if (!mask[(l * NKV + h) * D + c])
                    for (int j = 0; j < NQ / NKV; j++)
                        assert_true(max_abs(wq + (size_t)((h * NQ / NKV + j) * D + c) * HIDDEN, HIDDEN) == 0);
        free(w.wq);
        free(w.wk);
        free(wq);
        free(wk);
    }
    assert_true(fabs(brute - err.refit) <= 1e-3 * brute_ref);
    assert_true(fabs(plain - err.pruned) <= 1e-3 * brute_ref);
    assert_true(fabs(brute_ref - err.reference) <= 1e-6 * brute_ref);

    /* isotropic hidden states: little to gain, but never worse than plain */
    qk_layer w = {NQ, NKV, D, HIDDEN, malloc(sizeof m.wq[0]), malloc(sizeof m.wk[0]), NULL, NULL};
    memcpy(w.wq, m.wq[0], sizeof m.wq[0]);
    memcpy(w.wk, m.wk[0], sizeof m.wk[0]);
    fill_normal(&r, m.x, sizeof m.x / sizeof(float), 1.0f);
    score_errors iso = {0};
    assert_int_equal(qk_refit(&w, m.x, T, mask, &iso), 0);
    assert_true(iso.refit <= iso.pruned);
    free(w.wq);
    free(w.wk);
    tmpdir_remove(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_per_layer),
        cmocka_unit_test(test_budget_per_head),
        cmocka_unit_test(test_pruned_weights_equal_runtime_mask),
        cmocka_unit_test(test_refit_lowers_score_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
