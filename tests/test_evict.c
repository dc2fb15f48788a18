/* Token eviction (SnapKV, H2O) against oracles written here:
 *  - attention after eviction against dense double-precision attention
 *    over exactly the tokens each head holds (slimkv_cache_token_positions)
 *    and the channels each keeps, for every format, channel policy and
 *    eviction policy, on every ISA the machine has;
 *  - SnapKV's choice against the expected kept set from full-precision
 *    scores (f32 storage), H2O's accumulated scores and eviction order;
 *  - budgets above and below the prompt, bytes, bad configs, snapshots,
 *    and every allocation failing in turn (SLIMKV_ERR_NOMEM, nothing
 *    changed, nothing leaked). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <omp.h>

#include "fault_alloc.h"
#include "oracle.h"
#include "safetensors.h"
#include "tmpdir.h"

static const slimkv_format all_formats[] = {SLIMKV_F32, SLIMKV_F16, SLIMKV_BF16, SLIMKV_Q8,
                                           SLIMKV_Q4,  SLIMKV_Q2,  SLIMKV_Q3};
static const char *const all_isas[] = {"scalar", "avx2", "avx512", "neon", "neon-dotprod"};
#define N_FORMATS (sizeof all_formats / sizeof *all_formats)
#define N_ISAS (sizeof all_isas / sizeof *all_isas)

/* ---- inputs ---- */

typedef struct workload {
    int n_q, n_kv, dim, n; /* n tokens in all: prompt chunks, then decode tokens */
    float *q, *k, *v;
} workload;

static workload make_workload(int n_q, int n_kv, int dim, int n, uint64_t seed)
{
    workload w = {n_q, n_kv, dim, n, NULL, NULL, NULL};
    test_rng r;
    rng_seed(&r, seed);
    w.q = malloc((size_t)n * n_q * dim * sizeof(float));
    w.k = malloc((size_t)n * n_kv * dim * sizeof(float));
    w.v = malloc((size_t)n * n_kv * dim * sizeof(float));
    fill_keys(&r, w.k, n, 0, n_kv, dim);
    fill_keys(&r, w.q, n, 0, n_q, dim);
    /* queries that look for some keys: attention far from uniform */
    for (size_t i = 0; i < (size_t)n * n_q * dim; i++)
        w.q[i] *= 0.35f;
    fill_normal(&r, w.v, (size_t)n * n_kv * dim, 1.0f);
    return w;
}

static void free_workload(workload *w)
{
    free(w->q);
    free(w->k);
    free(w->v);
}

static const float *q_at(const workload *w, int t) { return w->q + (size_t)t * w->n_q * w->dim; }
static const float *k_at(const workload *w, int t) { return w->k + (size_t)t * w->n_kv * w->dim; }
static const float *v_at(const workload *w, int t) { return w->v + (size_t)t * w->n_kv * w->dim; }

static slimkv_config base_config(const workload *w, slimkv_format kf, slimkv_format vf)
{
    slimkv_config c;
    slimkv_config_init(&c);
    c.n_q_heads = w->n_q;
    c.n_kv_heads = w->n_kv;
    c.head_dim = w->dim;
    c.capacity = w->n;
    c.k_format = kf;
    c.v_format = vf;
    c.group_size = 16;
    c.residual = 32;
    c.window = 8;
    return c;
}

/* ---- what the test knows about a cache from its public calls ---- */

static int body_k_end(const slimkv_config *c, int n) /* format.c's rule, written again */
{
    int x = n - c->n_sink, g = c->group_size;
    if (x <= 0)
        return c->n_sink;
    int over = x - c->residual, need = over > 0 ? (over + g - 1) / g * g : 0, whole = x / g * g;
    return c->n_sink + (need < whole ? need : whole);
}

static int body_v_end(const slimkv_config *c, int n)
{
    int x = n - c->n_sink - c->residual;
    return c->n_sink + (x > 0 ? x : 0);
}

/* Per KV head: which positions the head holds, and which ever were in
 * the compressed body (K, V apart): once compressed, a token is scored
 * as compressed wherever eviction moves it. */
typedef struct tracker {
    int n_kv, dim, cap_seen;
    int n;             /* tokens held */
    int32_t *pos;      /* [n_kv][cap_seen] */
    uint8_t *k_comp;   /* [n_kv][cap_seen] by position */
    uint8_t *v_comp;
    uint8_t *k_keep, *v_keep; /* [n_kv][dim]: the cache's kept channels */
    int *streaming;    /* [n_kv] */
} tracker;

static tracker tracker_new(const workload *w)
{
    tracker t = {w->n_kv, w->dim, w->n, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    t.pos = calloc((size_t)w->n_kv * w->n, sizeof *t.pos);
    t.k_comp = calloc((size_t)w->n_kv * w->n, 1);
    t.v_comp = calloc((size_t)w->n_kv * w->n, 1);
    t.k_keep = calloc((size_t)w->n_kv * w->dim, 1);
    t.v_keep = calloc((size_t)w->n_kv * w->dim, 1);
    t.streaming = calloc((size_t)w->n_kv, sizeof *t.streaming);
    return t;
}

static void tracker_free(tracker *t)
{
    free(t->pos);
    free(t->k_comp);
    free(t->v_comp);
    free(t->k_keep);
    free(t->v_keep);
    free(t->streaming);
}

/* Reads positions and kept channels after a call, marks what is body now. */
static void tracker_update(tracker *t, const slimkv_config *cfg, const slimkv_cache *c)
{
    assert_int_equal(slimkv_cache_tokens(c, &t->n), SLIMKV_OK);
    int chan[1024], count;
    for (int h = 0; h < t->n_kv; h++) {
        int32_t *p = t->pos + (size_t)h * t->cap_seen;
        assert_int_equal(slimkv_cache_token_positions(c, h, p, &count), SLIMKV_OK);
        assert_int_equal(count, t->n);
        for (int j = 1; j < t->n; j++)
            assert_true(p[j] > p[j - 1]);
        memset(t->k_keep + (size_t)h * t->dim, 0, (size_t)t->dim);
        memset(t->v_keep + (size_t)h * t->dim, 0, (size_t)t->dim);
        assert_int_equal(slimkv_cache_kept_channels(c, h, 0, chan, &count), SLIMKV_OK);
        t->streaming[h] = count == 0;
        for (int i = 0; i < count; i++)
            t->k_keep[(size_t)h * t->dim + chan[i]] = 1;
        assert_int_equal(slimkv_cache_kept_channels(c, h, 1, chan, &count), SLIMKV_OK);
        for (int i = 0; i < count; i++)
            t->v_keep[(size_t)h * t->dim + chan[i]] = 1;
        if (t->streaming[h])
            continue;
        int kb = body_k_end(cfg, t->n), vb = body_v_end(cfg, t->n);
        for (int j = cfg->n_sink; j < t->n; j++) {
            if (j < kb)
                t->k_comp[(size_t)h * t->cap_seen + p[j]] = 1;
            if (j < vb)
                t->v_comp[(size_t)h * t->cap_seen + p[j]] = 1;
        }
    }
}

/* SparK's ||qbar|| from the first prefill chunk [0, chunk) (policy.c's
 * rule: mean over the group's heads, norm over the last W, floored). */
static void spark_qnorm_of(const workload *w, const slimkv_config *cfg, int chunk, float *qnorm)
{
    int d = w->dim, gs = w->n_q / w->n_kv, win = chunk < cfg->window ? chunk : cfg->window;
    for (int h = 0; h < w->n_kv; h++) {
        double largest = 0, sq[1024];
        for (int c = 0; c < d; c++) {
            sq[c] = 0;
            for (int t = chunk - win; t < chunk; t++) {
                double mean = 0;
                for (int g = 0; g < gs; g++)
                    mean += w->q[((size_t)t * w->n_q + h * gs + g) * d + c];
                sq[c] += (mean / gs) * (mean / gs);
            }
            largest = sq[c] > largest ? sq[c] : largest;
        }
        double floor_sq = largest > 0 ? largest * 1e-12 : 1.0;
        for (int c = 0; c < d; c++)
            qnorm[(size_t)h * d + c] = (float)sqrt(sq[c] > floor_sq ? sq[c] : floor_sq);
    }
}

/* Dense attention in double over exactly what each head holds: nq queries
 * q [nq][n_q][D], the i-th seeing all held tokens but the newest
 * nq - 1 - i; K of a token ever compressed on its kept channels (SparK:
 * restored), V of a token ever in the V body on its kept V channels; a
 * streaming head sees only the sinks and the last R held tokens. */
static void oracle_evicted(const workload *w, const slimkv_config *cfg, const tracker *t, const float *qnorm,
                           int spark_keep, const float *q, int nq, float *out)
{
    int d = w->dim, gs = w->n_q / w->n_kv, n = t->n;
    double *wt = malloc((size_t)n * sizeof *wt);
    /* SparK: each held key restored once, not once per query */
    float *restored = NULL;
    if (spark_keep > 0) {
        restored = malloc((size_t)n * w->n_kv * d * sizeof *restored);
        for (int h = 0; h < w->n_kv; h++)
            for (int j = 0; j < n; j++) {
                const int32_t *p = t->pos + (size_t)h * t->cap_seen;
                if (t->k_comp[(size_t)h * t->cap_seen + p[j]])
                    oracle_spark_restore(w->k + ((size_t)p[j] * w->n_kv + h) * d, qnorm + (size_t)h * d, d,
                                         spark_keep, restored + ((size_t)j * w->n_kv + h) * d);
            }
    }
    for (int i = 0; i < nq; i++)
        for (int hq = 0; hq < w->n_q; hq++) {
            int h = hq / gs, last = n - nq + i;
            const int32_t *p = t->pos + (size_t)h * t->cap_seen;
            const float *qi = q + ((size_t)i * w->n_q + hq) * d;
            const uint8_t *kk = t->k_keep + (size_t)h * d, *vk = t->v_keep + (size_t)h * d;
            int vb = body_v_end(cfg, n);
            double mx = -INFINITY;
            for (int j = 0; j <= last; j++) {
                if (t->streaming[h] && j >= cfg->n_sink && j < vb) {
                    wt[j] = -INFINITY;
                    continue;
                }
                const float *kt = w->k + ((size_t)p[j] * w->n_kv + h) * d;
                int comp = t->k_comp[(size_t)h * t->cap_seen + p[j]];
                if (comp && restored)
                    kt = restored + ((size_t)j * w->n_kv + h) * d;
                double s = 0;
                for (int c = 0; c < d; c++)
                    if (!comp || spark_keep > 0 || kk[c])
                        s += (double)qi[c] * kt[c];
                wt[j] = s / sqrt((double)d);
                mx = wt[j] > mx ? wt[j] : mx;
            }
            double l = 0;
            for (int j = 0; j <= last; j++) {
                wt[j] = wt[j] == -INFINITY ? 0 : exp(wt[j] - mx);
                l += wt[j];
            }
            float *o = out + ((size_t)i * w->n_q + hq) * d;
            for (int c = 0; c < d; c++) {
                double acc = 0;
                for (int j = 0; j <= last; j++) {
                    int vcomp = t->v_comp[(size_t)h * t->cap_seen + p[j]];
                    if (wt[j] != 0 && (!vcomp || vk[c]))
                        acc += wt[j] * w->v[((size_t)p[j] * w->n_kv + h) * d + c];
                }
                o[c] = (float)(acc / l);
            }
        }
    free(wt);
    free(restored);
}

static double bound_for(const slimkv_config *cfg)
{
    double a = format_error_bound(cfg->k_format), b = format_error_bound(cfg->v_format);
    return a > b ? a : b;
}

/* ---- attention after eviction, every format, policy and ISA ---- */

typedef struct scenario {
    slimkv_policy policy;
    slimkv_eviction eviction;
    int budget, n_sink, residual, prompt, second_chunk, decode, observe_every;
} scenario;

/* The static masks: head 0 keeps the even K channels and V channels but
 * one in four, head 1 nothing (a streaming head). */
static uint8_t static_k_mask[2 * 64], static_v_mask[2 * 64];

static void make_static_masks(int dim)
{
    for (int c = 0; c < dim; c++) {
        static_k_mask[c] = c % 2 == 0;
        static_v_mask[c] = c % 4 != 3;
        static_k_mask[dim + c] = 0;
        static_v_mask[dim + c] = 1;
    }
}

/* Runs a scenario and checks every attention along the way against the
 * oracle; returns the worst error seen (scaled by max |v|). */
static double run_scenario(const workload *w, slimkv_config cfg, const scenario *s, const char *isa)
{
    cfg.policy = s->policy;
    cfg.eviction = s->eviction;
    cfg.evict_budget = s->budget;
    cfg.n_sink = s->n_sink;
    cfg.residual = s->residual;
    cfg.isa = isa;
    cfg.prune_ratio = 0.5f;
    if (s->policy == SLIMKV_POLICY_STATIC) {
        make_static_masks(w->dim);
        cfg.k_mask = static_k_mask;
        cfg.v_mask = static_v_mask;
    }
    slimkv_cache *c;
    assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
    tracker t = tracker_new(w);
    size_t rq = (size_t)w->n_q * w->dim;
    float *out = malloc((size_t)w->n * rq * sizeof(float)), *want = malloc((size_t)w->n * rq * sizeof(float));
    float qnorm[2 * 64];
    int spark_keep = s->policy == SLIMKV_POLICY_SPARK ? w->dim - (int)floorf(cfg.prune_ratio * w->dim) : 0;
    int first = s->second_chunk ? s->prompt / 2 : s->prompt;
    if (spark_keep)
        spark_qnorm_of(w, &cfg, first, qnorm);
    double vmax = max_abs(w->v, (size_t)w->n * w->n_kv * w->dim), worst = 0;
    assert_int_equal(slimkv_cache_prefill(c, w->q, w->k, w->v, first, out), SLIMKV_OK);
    tracker_update(&t, &cfg, c);
    if (first < s->prompt) {
        assert_int_equal(slimkv_cache_prefill(c, q_at(w, first), k_at(w, first), v_at(w, first), s->prompt - first, out),
                         SLIMKV_OK);
        tracker_update(&t, &cfg, c);
    }
    int seen = s->prompt;
    for (int step = 0; step < s->decode; step++) {
        int nq = s->observe_every;
        if (seen + nq > w->n)
            break;
        assert_int_equal(slimkv_cache_append(c, k_at(w, seen), v_at(w, seen), nq), SLIMKV_OK);
        tracker_update(&t, &cfg, c);
        oracle_evicted(w, &cfg, &t, qnorm, spark_keep, q_at(w, seen), nq, want);
        assert_int_equal(slimkv_attend_observe(c, q_at(w, seen), nq, out), SLIMKV_OK);
        double err = scaled_max_error(out, want, (size_t)nq * rq, vmax);
        worst = err > worst ? err : worst;
        if (!(err <= bound_for(&cfg)))
            fail_msg("%s %s/%s policy %d evict %d step %d: error %.3g over %.3g", isa,
                     slimkv_format_name(cfg.k_format), slimkv_format_name(cfg.v_format), (int)s->policy,
                     (int)s->eviction, step, err, bound_for(&cfg));
        tracker_update(&t, &cfg, c);
        /* and plain attend over the state after the observe's eviction */
        oracle_evicted(w, &cfg, &t, qnorm, spark_keep, q_at(w, seen + nq - 1), 1, want);
        assert_int_equal(slimkv_attend(c, q_at(w, seen + nq - 1), 1, out), SLIMKV_OK);
        err = scaled_max_error(out, want, rq, vmax);
        worst = err > worst ? err : worst;
        if (!(err <= bound_for(&cfg)))
            fail_msg("%s %s/%s policy %d evict %d step %d after eviction: error %.3g", isa,
                     slimkv_format_name(cfg.k_format), slimkv_format_name(cfg.v_format), (int)s->policy,
                     (int)s->eviction, step, err);
        seen += nq;
    }
    int n_seen;
    assert_int_equal(slimkv_cache_tokens_seen(c, &n_seen), SLIMKV_OK);
    assert_int_equal(n_seen, seen);
    /* the budget holds (SnapKV: after the prompt; H2O: always) */
    if (s->eviction == SLIMKV_EVICT_H2O) {
        int protect = cfg.residual < seen - cfg.n_sink ? cfg.residual : seen - cfg.n_sink;
        assert_true(t.n <= cfg.n_sink + protect + s->budget + cfg.group_size - 1);
    }
    free(out);
    free(want);
    tracker_free(&t);
    slimkv_cache_destroy(c);
    return worst;
}

static void test_attention_matches_oracle(void **state)
{
    (void)state;
    workload w = make_workload(4, 2, 32, 420, 11);
    const slimkv_policy policies[] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_STATIC, SLIMKV_POLICY_THINK,
                                      SLIMKV_POLICY_SPARK};
    /* SnapKV: a prompt in two chunks (the second evicts among stored and new
     * tokens), decode growing again; H2O: sinks, evictions at the prefill
     * and along the decode, one token or a few per observe. */
    const scenario scenarios[] = {
        {0, SLIMKV_EVICT_SNAPKV, 40, 0, 32, 260, 1, 12, 3},
        {0, SLIMKV_EVICT_SNAPKV, 70, 3, 16, 200, 0, 10, 2},
        {0, SLIMKV_EVICT_H2O, 48, 2, 32, 200, 0, 110, 1},
        {0, SLIMKV_EVICT_H2O, 40, 0, 16, 150, 1, 40, 5},
    };
    double worst[N_FORMATS][2] = {{0}}; /* [K format][V: the same, f16] */
    int runs = 0, isa = 0, n_isas = 0;
    for (size_t ii = 0; ii < N_ISAS; ii++)
        n_isas += slimkv_isa_supported(all_isas[ii]);
    /* Quick (SLIMKV_TEST_QUICK=1): each format x policy pair runs once, on
     * ISA (f + p) mod n, with scenario (f + 3p) mod 4: each ISA still runs
     * every format and every policy, and each scenario meets every format
     * and every policy (and both V pairings); the full product is native. */
    const int quick = test_quick();
    for (size_t ii = 0; ii < N_ISAS; ii++) {
        if (!slimkv_isa_supported(all_isas[ii]))
            continue;
        for (size_t f = 0; f < N_FORMATS; f++)
            for (size_t p = 0; p < sizeof policies / sizeof *policies; p++)
                for (size_t s = 0; s < sizeof scenarios / sizeof *scenarios; s++) {
                    if (quick && ((int)((f + p) % (size_t)n_isas) != isa ||
                                  s != (f + 3 * p) % (sizeof scenarios / sizeof *scenarios)))
                        continue;
                    scenario sc = scenarios[s];
                    sc.policy = policies[p];
                    if (!test_policy_takes(sc.policy, all_formats[f]))
                        continue;
                    /* pairs: the format for both, and with f16 on the other side */
                    slimkv_format vf = s % 2 ? SLIMKV_F16 : all_formats[f];
                    double e = run_scenario(&w, base_config(&w, all_formats[f], vf), &sc, all_isas[ii]);
                    worst[f][s % 2] = e > worst[f][s % 2] ? e : worst[f][s % 2];
                    runs++;
                }
        isa++;
    }
    for (size_t f = 0; f < N_FORMATS; f++)
        print_message("  %s/%s: largest error vs the oracle over the kept tokens %.3g (bound %.3g); %s/f16: %.3g\n",
                      slimkv_format_name(all_formats[f]), slimkv_format_name(all_formats[f]), worst[f][0],
                      format_error_bound(all_formats[f]), slimkv_format_name(all_formats[f]), worst[f][1]);
    print_message("  %d runs on %d ISAs%s\n", runs, isa,
                  quick ? " (quick: each format x policy once, on one ISA, in one scenario)" : "");
    free_workload(&w);
}

/* ---- SnapKV's choice against the expected kept set ---- */

typedef struct ranked {
    double value;
    int index;
} ranked;

static int by_value_desc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    return x->value > y->value ? -1 : x->value < y->value ? 1 : x->index - y->index;
}

/* The pooled SnapKV score of every token of [0, total) for KV head h: the
 * chunk's last W queries (chunk [chunk0, total)) over every token each sees,
 * f32 inputs as they are (the cache stores f32 exactly). */
static void snapkv_expected(const workload *w, const slimkv_config *cfg, int chunk0, int total, int h, double *pooled,
                            double *acc)
{
    int d = w->dim, gs = w->n_q / w->n_kv, nq = total - chunk0 < cfg->window ? total - chunk0 : cfg->window;
    double *s = malloc((size_t)total * sizeof *s);
    memset(acc, 0, (size_t)total * sizeof *acc);
    for (int i = total - nq; i < total; i++)
        for (int g = 0; g < gs; g++) {
            const float *qi = w->q + ((size_t)i * w->n_q + h * gs + g) * d;
            double mx = -INFINITY, l = 0;
            for (int t = 0; t <= i; t++) {
                double dot = 0;
                for (int c = 0; c < d; c++)
                    dot += (double)qi[c] * w->k[((size_t)t * w->n_kv + h) * d + c];
                s[t] = dot / sqrt((double)d);
                mx = s[t] > mx ? s[t] : mx;
            }
            for (int t = 0; t <= i; t++)
                l += (s[t] = exp(s[t] - mx));
            for (int t = 0; t <= i; t++)
                acc[t] += s[t] / l;
        }
    int lo = cfg->n_sink, hi = total - cfg->window, r = cfg->evict_pool / 2;
    for (int t = lo; t < hi; t++) {
        double m = -INFINITY;
        for (int u = t - r; u <= t + r; u++)
            if (u >= lo && u < hi && acc[u] > m)
                m = acc[u];
        pooled[t] = m;
    }
    free(s);
}

/* The kept set must be the sinks, the window and the top budget by pooled
 * score; a difference is only allowed between scores closer than float
 * rounding could separate. */
static void check_snapkv_choice(const workload *w, const slimkv_config *cfg, const slimkv_cache *c, int chunk0,
                                int total)
{
    int lo = cfg->n_sink, hi = total - cfg->window, n_cand = hi - lo, budget = cfg->evict_budget;
    double *pooled = malloc((size_t)total * sizeof *pooled), *acc = malloc((size_t)total * sizeof *acc);
    ranked *rank = malloc((size_t)total * sizeof *rank);
    int32_t *pos = malloc((size_t)total * sizeof *pos);
    uint8_t *kept = malloc((size_t)total);
    for (int h = 0; h < w->n_kv; h++) {
        snapkv_expected(w, cfg, chunk0, total, h, pooled, acc);
        int n;
        assert_int_equal(slimkv_cache_token_positions(c, h, pos, &n), SLIMKV_OK);
        assert_int_equal(n, lo + budget + cfg->window);
        memset(kept, 0, (size_t)total);
        for (int j = 0; j < n; j++)
            kept[pos[j]] = 1;
        for (int t = 0; t < lo; t++)
            assert_true(kept[t]);
        for (int t = hi; t < total; t++)
            assert_true(kept[t]);
        for (int t = lo; t < hi; t++)
            rank[t - lo] = (ranked){pooled[t], t};
        qsort(rank, (size_t)n_cand, sizeof *rank, by_value_desc);
        double cut = rank[budget - 1].value, tol = 1e-5 * rank[0].value;
        int differ = 0;
        for (int i = 0; i < n_cand; i++) {
            int want = i < budget;
            if (kept[rank[i].index] != want) {
                differ++;
                if (fabs(rank[i].value - cut) > tol)
                    fail_msg("head %d: token %d (pooled %.9g, cut %.9g) %s", h, rank[i].index, rank[i].value, cut,
                             want ? "should be kept" : "should be evicted");
            }
        }
        if (differ)
            print_message("  head %d: %d tokens differ at a tie (within %.3g)\n", h, differ, tol);
    }
    free(pooled);
    free(acc);
    free(rank);
    free(pos);
    free(kept);
}

static void test_snapkv_choice(void **state)
{
    (void)state;
    workload w = make_workload(6, 2, 32, 400, 23);
    size_t rq = (size_t)w.n_q * w.dim;
    float *out = malloc((size_t)w.n * rq * sizeof(float));
    for (size_t ii = 0; ii < N_ISAS; ii++) {
        if (!slimkv_isa_supported(all_isas[ii]))
            continue;
        const struct { int budget, sinks, pool, window, chunk0, total; } cases[] = {
            {50, 0, 7, 8, 0, 300},   /* one prompt */
            {1, 4, 7, 8, 0, 120},    /* budget 1, sinks */
            {64, 2, 1, 16, 0, 333},  /* no pooling */
            {90, 0, 5, 8, 96, 380},  /* a second chunk: stored tokens compete with new ones */
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            slimkv_config cfg = base_config(&w, SLIMKV_F32, SLIMKV_F32);
            cfg.eviction = SLIMKV_EVICT_SNAPKV;
            cfg.evict_budget = cases[i].budget;
            cfg.n_sink = cases[i].sinks;
            cfg.evict_pool = cases[i].pool;
            cfg.window = cases[i].window;
            cfg.isa = all_isas[ii];
            slimkv_cache *c;
            assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
            int c0 = cases[i].chunk0, total = cases[i].total;
            if (c0 > 0) { /* the first chunk under budget: nothing evicted before the second */
                slimkv_config big = cfg;
                assert_true(c0 <= big.n_sink + big.evict_budget + big.window);
                assert_int_equal(slimkv_cache_prefill(c, w.q, w.k, w.v, c0, out), SLIMKV_OK);
            }
            assert_int_equal(slimkv_cache_prefill(c, q_at(&w, c0), k_at(&w, c0), v_at(&w, c0), total - c0, out),
                             SLIMKV_OK);
            check_snapkv_choice(&w, &cfg, c, c0, total);
            int seen;
            assert_int_equal(slimkv_cache_tokens_seen(c, &seen), SLIMKV_OK);
            assert_int_equal(seen, total);
            slimkv_cache_destroy(c);
        }
    }
    free(out);
    free_workload(&w);
}

/* ---- H2O: accumulated scores and the eviction order ---- */

/* Probabilities of query i's group heads over the held tokens (positions
 * pos[0 .. last]) added to score[j], in double from the f32 inputs. */
static void h2o_add(const workload *w, int h, const float *q, const int32_t *pos, int last, double *score)
{
    int d = w->dim, gs = w->n_q / w->n_kv;
    double *s = malloc((size_t)(last + 1) * sizeof *s);
    for (int g = 0; g < gs; g++) {
        const float *qi = q + ((size_t)h * gs + g) * d;
        double mx = -INFINITY, l = 0;
        for (int j = 0; j <= last; j++) {
            double dot = 0;
            for (int c = 0; c < d; c++)
                dot += (double)qi[c] * w->k[((size_t)pos[j] * w->n_kv + h) * d + c];
            s[j] = dot / sqrt((double)d);
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int j = 0; j <= last; j++)
            l += (s[j] = exp(s[j] - mx));
        for (int j = 0; j <= last; j++)
            score[j] += s[j] / l;
    }
    free(s);
}

static int by_value_asc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    return x->value < y->value ? -1 : x->value > y->value ? 1 : x->index - y->index;
}

/* The reference's eviction: n_evict of [lo, hi) with the lowest scores go;
 * pos/score compacted in place; returns the new count. */
static int h2o_evict(int32_t *pos, double *score, int n, int lo, int hi, int n_evict, ranked *rank)
{
    uint8_t gone[4096] = {0};
    for (int j = lo; j < hi; j++)
        rank[j - lo] = (ranked){score[j], j};
    qsort(rank, (size_t)(hi - lo), sizeof *rank, by_value_asc);
    for (int i = 0; i < n_evict; i++)
        gone[rank[i].index] = 1;
    int m = 0;
    for (int j = 0; j < n; j++)
        if (!gone[j]) {
            pos[m] = pos[j];
            score[m++] = score[j];
        }
    return m;
}

static void test_h2o_order(void **state)
{
    (void)state;
    workload w = make_workload(4, 2, 32, 600, 31);
    size_t rq = (size_t)w.n_q * w.dim;
    float *out = malloc((size_t)w.n * rq * sizeof(float));
    for (size_t ii = 0; ii < N_ISAS; ii++) {
        if (!slimkv_isa_supported(all_isas[ii]))
            continue;
        slimkv_config cfg = base_config(&w, SLIMKV_F32, SLIMKV_F32);
        cfg.eviction = SLIMKV_EVICT_H2O;
        cfg.evict_budget = 60;
        cfg.n_sink = 2;
        cfg.residual = 32;
        cfg.capacity = 200; /* well below the tokens seen: H2O keeps it bounded */
        cfg.isa = all_isas[ii];
        slimkv_cache *c;
        assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
        int prompt = 150;
        assert_int_equal(slimkv_cache_prefill(c, w.q, w.k, w.v, prompt, out), SLIMKV_OK);
        /* the reference: every held token's position and accumulated score */
        int32_t ref_pos[2][600], got_pos[600];
        double ref_score[2][600];
        float got_score[600];
        ranked rank[600];
        int n_ref[2];
        for (int h = 0; h < 2; h++) {
            for (int t = 0; t < prompt; t++)
                ref_pos[h][t] = t, ref_score[h][t] = 0;
            for (int i = prompt - cfg.window; i < prompt; i++)
                h2o_add(&w, h, q_at(&w, i), ref_pos[h], i, ref_score[h]);
            n_ref[h] = h2o_evict(ref_pos[h], ref_score[h], prompt, cfg.n_sink, prompt - cfg.residual,
                                 prompt - cfg.n_sink - cfg.residual - cfg.evict_budget, rank);
        }
        int evictions = 0, differ = 0;
        for (int t = prompt; t < w.n; t++) {
            for (int h = 0; h < 2; h++) {
                int n;
                assert_int_equal(slimkv_cache_token_positions(c, h, got_pos, &n), SLIMKV_OK);
                assert_int_equal(slimkv_cache_token_scores(c, h, got_score, &n), SLIMKV_OK);
                assert_int_equal(n, n_ref[h]);
                double top = 0;
                for (int j = 0; j < n; j++)
                    top = ref_score[h][j] > top ? ref_score[h][j] : top;
                for (int j = 0; j < n; j++) {
                    if (got_pos[j] != ref_pos[h][j])
                        fail_msg("%s token %d head %d: holds position %d, the reference %d", all_isas[ii], t, h,
                                 got_pos[j], ref_pos[h][j]);
                    if (fabs(got_score[j] - ref_score[h][j]) > 1e-4 * top)
                        fail_msg("%s token %d head %d: score %.7g, the reference %.7g", all_isas[ii], t, h,
                                 got_score[j], ref_score[h][j]);
                }
            }
            assert_int_equal(slimkv_cache_append(c, k_at(&w, t), v_at(&w, t), 1), SLIMKV_OK);
            assert_int_equal(slimkv_attend_observe(c, q_at(&w, t), 1, out), SLIMKV_OK);
            for (int h = 0; h < 2; h++) {
                int n = n_ref[h];
                ref_pos[h][n] = t;
                ref_score[h][n] = 0;
                n++;
                h2o_add(&w, h, q_at(&w, t), ref_pos[h], n - 1, ref_score[h]);
                int evictable = n - cfg.n_sink - cfg.residual;
                if (evictable >= cfg.evict_budget + cfg.group_size) {
                    /* near-ties: the reference's order must not depend on rounding */
                    int lo = cfg.n_sink, hi = n - cfg.residual, m = evictable - cfg.evict_budget;
                    for (int j = lo; j < hi; j++)
                        rank[j - lo] = (ranked){ref_score[h][j], j};
                    qsort(rank, (size_t)(hi - lo), sizeof *rank, by_value_asc);
                    if (rank[m].value - rank[m - 1].value < 1e-5 * rank[hi - lo - 1].value)
                        differ++;
                    n = h2o_evict(ref_pos[h], ref_score[h], n, lo, hi, m, rank);
                    evictions += h == 0;
                }
                n_ref[h] = n;
            }
        }
        int seen;
        assert_int_equal(slimkv_cache_tokens_seen(c, &seen), SLIMKV_OK);
        assert_int_equal(seen, w.n);
        assert_true(evictions >= 10);
        assert_int_equal(differ, 0);
        slimkv_cache_destroy(c);
    }
    free(out);
    free_workload(&w);
}

/* ---- budgets, bytes, the protected windows ---- */

static void test_budgets_and_bytes(void **state)
{
    (void)state;
    workload w = make_workload(4, 2, 32, 300, 41);
    size_t rq = (size_t)w.n_q * w.dim;
    float *out = malloc((size_t)w.n * rq * sizeof(float)), *ref = malloc((size_t)w.n * rq * sizeof(float));
    for (size_t f = 0; f < N_FORMATS; f++) {
        slimkv_config plain = base_config(&w, all_formats[f], all_formats[f]);
        for (int e = 1; e <= 2; e++) {
            /* quick: each format with one eviction, in turn (each eviction
             * with three formats) */
            if (test_quick() && e != 1 + (int)(f % 2))
                continue;
            /* a budget above the prompt: nothing evicted, the same storage
             * and results as without eviction */
            slimkv_config cfg = plain;
            cfg.eviction = (slimkv_eviction)e;
            cfg.evict_budget = 1000;
            slimkv_cache *a, *b;
            assert_int_equal(slimkv_cache_create(&cfg, &a), SLIMKV_OK);
            assert_int_equal(slimkv_cache_create(&plain, &b), SLIMKV_OK);
            assert_int_equal(slimkv_cache_prefill(a, w.q, w.k, w.v, 200, out), SLIMKV_OK);
            assert_int_equal(slimkv_cache_prefill(b, w.q, w.k, w.v, 200, ref), SLIMKV_OK);
            assert_memory_equal(out, ref, 200 * rq * sizeof(float));
            assert_true(cache_digest(a) == cache_digest(b));
            assert_int_equal(slimkv_attend_observe(a, q_at(&w, 199), 1, out), SLIMKV_OK);
            assert_int_equal(slimkv_attend(b, q_at(&w, 199), 1, ref), SLIMKV_OK);
            assert_memory_equal(out, ref, rq * sizeof(float));
            int32_t pos[300];
            int n;
            assert_int_equal(slimkv_cache_token_positions(a, 1, pos, &n), SLIMKV_OK);
            assert_int_equal(n, 200);
            for (int j = 0; j < n; j++)
                assert_int_equal(pos[j], j);
            slimkv_cache_destroy(a);
            slimkv_cache_destroy(b);

            /* a budget below the prompt: exactly sinks + budget + window
             * held, and the bytes those tokens take */
            cfg.evict_budget = 20;
            cfg.n_sink = 2;
            assert_int_equal(slimkv_cache_create(&cfg, &a), SLIMKV_OK);
            assert_int_equal(slimkv_cache_prefill(a, w.q, w.k, w.v, 250, out), SLIMKV_OK);
            int protect = e == SLIMKV_EVICT_SNAPKV ? cfg.window : cfg.residual;
            int held;
            assert_int_equal(slimkv_cache_tokens(a, &held), SLIMKV_OK);
            assert_int_equal(held, 2 + 20 + protect);
            slimkv_config same = plain;
            same.n_sink = 2;
            assert_int_equal(slimkv_cache_create(&same, &b), SLIMKV_OK);
            assert_int_equal(slimkv_cache_append(b, w.k, w.v, held), SLIMKV_OK);
            size_t bytes_a, bytes_b, bytes_full;
            assert_int_equal(slimkv_cache_bytes(a, &bytes_a), SLIMKV_OK);
            assert_int_equal(slimkv_cache_bytes(b, &bytes_b), SLIMKV_OK);
            /* tracking: 4 bytes of position (+ 4 of score for H2O) per
             * token and head, allocated in steps of 256 tokens */
            size_t tracking = (size_t)2 * 256 * (e == SLIMKV_EVICT_H2O ? 8 : 4);
            assert_int_equal(bytes_a, bytes_b + tracking);
            slimkv_cache_destroy(b);
            assert_int_equal(slimkv_cache_create(&same, &b), SLIMKV_OK);
            assert_int_equal(slimkv_cache_append(b, w.k, w.v, 250), SLIMKV_OK);
            assert_int_equal(slimkv_cache_bytes(b, &bytes_full), SLIMKV_OK);
            assert_true(bytes_a < bytes_full);
            /* sinks and the protected window are the first and last tokens */
            for (int h = 0; h < 2; h++) {
                assert_int_equal(slimkv_cache_token_positions(a, h, pos, &n), SLIMKV_OK);
                assert_int_equal(pos[0], 0);
                assert_int_equal(pos[1], 1);
                for (int j = 0; j < protect; j++)
                    assert_int_equal(pos[n - 1 - j], 249 - j);
            }
            slimkv_cache_destroy(a);
            slimkv_cache_destroy(b);
        }
    }
    free(out);
    free(ref);
    free_workload(&w);
}

/* ---- configs and arguments ---- */

static void expect_reason(slimkv_config c, const char *field)
{
    const char *why = NULL;
    assert_int_equal(slimkv_config_reason(&c, &why), SLIMKV_ERR_INVALID_CONFIG);
    if (!strstr(why, field))
        fail_msg("reason \"%s\" does not name %s", why, field);
    slimkv_cache *cache = (slimkv_cache *)0x1;
    assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_ERR_INVALID_CONFIG);
    assert_true(cache == (slimkv_cache *)0x1);
}

static void test_bad_configs_and_calls(void **state)
{
    (void)state;
    workload w = make_workload(4, 2, 32, 64, 5);
    slimkv_config c = base_config(&w, SLIMKV_Q4, SLIMKV_Q4), bad;
    assert_int_equal(c.eviction, SLIMKV_EVICT_NONE);
    assert_int_equal(c.evict_budget, 1024);
    assert_int_equal(c.evict_pool, 7);
    bad = c, bad.eviction = (slimkv_eviction)3;
    expect_reason(bad, "eviction");
    bad = c, bad.eviction = (slimkv_eviction)-1;
    expect_reason(bad, "eviction");
    const int pools[] = {0, 2, -3, 1024, 1025};
    for (size_t i = 0; i < sizeof pools / sizeof *pools; i++) {
        bad = c, bad.eviction = SLIMKV_EVICT_SNAPKV, bad.evict_pool = pools[i];
        expect_reason(bad, "evict_pool");
    }
    const int budgets[] = {0, -1, 1 << 30};
    for (int e = 1; e <= 2; e++) {
        for (size_t i = 0; i < sizeof budgets / sizeof *budgets; i++) {
            bad = c, bad.eviction = (slimkv_eviction)e, bad.evict_budget = budgets[i];
            expect_reason(bad, "evict_budget");
        }
        bad = c, bad.eviction = (slimkv_eviction)e, bad.window = 0;
        expect_reason(bad, "window");
    }
    /* the pool is SnapKV's only; no eviction ignores every eviction field */
    bad = c, bad.eviction = SLIMKV_EVICT_H2O, bad.evict_pool = 2;
    assert_int_equal(slimkv_config_validate(&bad), SLIMKV_OK);
    bad = c, bad.evict_budget = 0, bad.evict_pool = 0;
    assert_int_equal(slimkv_config_validate(&bad), SLIMKV_OK);
    /* eviction runs on host storage: never a CUDA cache */
    bad = c, bad.eviction = SLIMKV_EVICT_SNAPKV, bad.backend = SLIMKV_BACKEND_CUDA;
    slimkv_cache *cache;
    assert_int_equal(slimkv_cache_create(&bad, &cache), SLIMKV_ERR_UNSUPPORTED);

    /* the calls' arguments */
    c.eviction = SLIMKV_EVICT_H2O;
    c.evict_budget = 8;
    assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_OK);
    float out[4 * 32 * 64];
    int n;
    int32_t pos[64];
    float score[64];
    assert_int_equal(slimkv_attend_observe(cache, w.q, 1, out), SLIMKV_ERR_INVALID_ARG); /* nothing held */
    assert_int_equal(slimkv_cache_prefill(cache, w.q, w.k, w.v, 20, out), SLIMKV_OK);
    uint64_t before = cache_digest(cache);
    assert_int_equal(slimkv_attend_observe(NULL, w.q, 1, out), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_attend_observe(cache, NULL, 1, out), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_attend_observe(cache, w.q, 21, out), SLIMKV_ERR_INVALID_ARG);
    assert_int_equal(slimkv_attend_observe(cache, w.q, 0, out), SLIMKV_ERR_INVALID_ARG);
    assert_int_equal(slimkv_attend_observe(cache, w.q, 2, (float *)w.q + 8), SLIMKV_ERR_INVALID_ARG); /* overlap */
    float nan_q[4 * 32];
    memcpy(nan_q, w.q, sizeof nan_q);
    nan_q[5] = NAN;
    assert_int_equal(slimkv_attend_observe(cache, nan_q, 1, out), SLIMKV_ERR_NONFINITE);
    assert_true(cache_digest(cache) == before);
    assert_int_equal(slimkv_cache_tokens_seen(NULL, &n), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cache_tokens_seen(cache, NULL), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cache_token_positions(cache, 0, pos, NULL), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cache_token_positions(cache, 2, pos, &n), SLIMKV_ERR_INVALID_ARG);
    assert_int_equal(slimkv_cache_token_positions(cache, -1, pos, &n), SLIMKV_ERR_INVALID_ARG);
    assert_int_equal(slimkv_cache_token_positions(cache, 1, NULL, &n), SLIMKV_OK);
    assert_int_equal(n, 20);
    assert_int_equal(slimkv_cache_token_scores(cache, 1, NULL, &n), SLIMKV_OK);
    assert_int_equal(slimkv_cache_token_scores(cache, 1, score, &n), SLIMKV_OK);
    for (int j = 0; j < n; j++)
        assert_true(score[j] >= 0.0f);
    assert_int_equal(slimkv_cache_token_scores(cache, 2, score, &n), SLIMKV_ERR_INVALID_ARG);
    slimkv_cache_destroy(cache);
    /* scores only for H2O; without eviction positions are 0..n-1 */
    c.eviction = SLIMKV_EVICT_SNAPKV;
    assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_OK);
    assert_int_equal(slimkv_cache_token_scores(cache, 0, score, &n), SLIMKV_ERR_STATE);
    slimkv_cache_destroy(cache);
    c.eviction = SLIMKV_EVICT_NONE;
    assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(cache, w.k, w.v, 10), SLIMKV_OK);
    assert_int_equal(slimkv_cache_token_scores(cache, 0, score, &n), SLIMKV_ERR_STATE);
    assert_int_equal(slimkv_cache_token_positions(cache, 0, pos, &n), SLIMKV_OK);
    assert_int_equal(n, 10);
    assert_int_equal(pos[9], 9);
    assert_int_equal(slimkv_cache_tokens_seen(cache, &n), SLIMKV_OK);
    assert_int_equal(n, 10);
    /* observe on a cache without H2O is attend */
    float ref[4 * 32];
    assert_int_equal(slimkv_attend_observe(cache, w.q, 1, out), SLIMKV_OK);
    assert_int_equal(slimkv_attend(cache, w.q, 1, ref), SLIMKV_OK);
    assert_memory_equal(out, ref, sizeof ref);
    slimkv_cache_destroy(cache);
    free_workload(&w);
}

/* ---- snapshots ---- */

static tmpdir snap_dir;

static void path_of(char *buf, const char *name)
{
    tmpdir_file(&snap_dir, name, buf, 512);
}

/* The state a snapshot must restore, from public calls. */
static uint64_t evict_digest(const slimkv_cache *c, int n_kv)
{
    uint64_t h = cache_digest(c);
    int n, seen;
    int32_t pos[1024];
    float score[1024];
    slimkv_cache_tokens_seen(c, &seen);
    h = (h ^ (uint64_t)seen) * 0x100000001b3ull;
    for (int i = 0; i < n_kv; i++) {
        slimkv_cache_token_positions(c, i, pos, &n);
        for (int j = 0; j < n; j++)
            h = (h ^ (uint64_t)(uint32_t)pos[j]) * 0x100000001b3ull;
        if (slimkv_cache_token_scores(c, i, score, &n) == SLIMKV_OK)
            for (int j = 0; j < n; j++) {
                uint32_t bits;
                memcpy(&bits, &score[j], sizeof bits);
                h = (h ^ bits) * 0x100000001b3ull;
            }
    }
    return h;
}

static void patch_file(const char *path, const char *from, const char *to)
{
    FILE *f = fopen(path, "rb+");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    char *at = memmem(buf, n, from, strlen(from));
    assert_non_null(at);
    memcpy(at, to, strlen(to));
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static void test_snapshots(void **state)
{
    (void)state;
    assert_int_equal(tmpdir_make(&snap_dir), 0);
    workload w = make_workload(4, 2, 32, 400, 51);
    size_t rq = (size_t)w.n_q * w.dim;
    float *out = malloc((size_t)w.n * rq * sizeof(float)), *out2 = malloc((size_t)w.n * rq * sizeof(float));
    const slimkv_policy policies[] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_STATIC, SLIMKV_POLICY_THINK,
                                      SLIMKV_POLICY_SPARK};
    char good[512], bad[512];
    path_of(good, "evict.safetensors");
    path_of(bad, "bad.safetensors");
    /* quick: every eviction x policy with one of the three format pairs,
     * in turn ((e + p) mod 3: each pair with both evictions) */
    const int quick = test_quick();
    for (int e = 1; e <= 2; e++)
        for (size_t p = 0; p < 4; p++)
            for (size_t f = 0; f < N_FORMATS; f += 2) {
                if (!test_policy_takes(policies[p], all_formats[f]) || (quick && f != 2 * (((size_t)e + p) % 3)))
                    continue;
                slimkv_config cfg = base_config(&w, all_formats[f], all_formats[(f + 4) % N_FORMATS]);
                cfg.eviction = (slimkv_eviction)e;
                cfg.evict_budget = 40;
                cfg.n_sink = 1;
                cfg.policy = policies[p];
                if (cfg.policy == SLIMKV_POLICY_STATIC) {
                    make_static_masks(w.dim);
                    cfg.k_mask = static_k_mask;
                    cfg.v_mask = static_v_mask;
                }
                slimkv_cache *src, *dst;
                assert_int_equal(slimkv_cache_create(&cfg, &src), SLIMKV_OK);
                assert_int_equal(slimkv_cache_create(&cfg, &dst), SLIMKV_OK);
                assert_int_equal(slimkv_cache_prefill(src, w.q, w.k, w.v, 200, out), SLIMKV_OK);
                for (int t = 200; t < 260; t++) {
                    assert_int_equal(slimkv_cache_append(src, k_at(&w, t), v_at(&w, t), 1), SLIMKV_OK);
                    assert_int_equal(slimkv_attend_observe(src, q_at(&w, t), 1, out), SLIMKV_OK);
                }
                assert_int_equal(slimkv_cache_save(src, good), SLIMKV_OK);
                assert_int_equal(slimkv_cache_restore(dst, good), SLIMKV_OK);
                assert_true(evict_digest(dst, 2) == evict_digest(src, 2));
                /* and both go on the same, bit for bit */
                for (int t = 260; t < 300; t++) {
                    assert_int_equal(slimkv_cache_append(src, k_at(&w, t), v_at(&w, t), 1), SLIMKV_OK);
                    assert_int_equal(slimkv_cache_append(dst, k_at(&w, t), v_at(&w, t), 1), SLIMKV_OK);
                    assert_int_equal(slimkv_attend_observe(src, q_at(&w, t), 1, out), SLIMKV_OK);
                    assert_int_equal(slimkv_attend_observe(dst, q_at(&w, t), 1, out2), SLIMKV_OK);
                    assert_memory_equal(out, out2, rq * sizeof(float));
                }
                assert_true(evict_digest(dst, 2) == evict_digest(src, 2));
                slimkv_cache_destroy(src);
                slimkv_cache_destroy(dst);
            }

    /* refusals: another eviction policy or none, a changed byte, another version */
    slimkv_config cfg = base_config(&w, SLIMKV_Q4, SLIMKV_Q8);
    cfg.eviction = SLIMKV_EVICT_H2O;
    cfg.evict_budget = 30;
    slimkv_cache *h2o, *snap, *plain;
    assert_int_equal(slimkv_cache_create(&cfg, &h2o), SLIMKV_OK);
    assert_int_equal(slimkv_cache_prefill(h2o, w.q, w.k, w.v, 150, out), SLIMKV_OK);
    assert_int_equal(slimkv_cache_save(h2o, good), SLIMKV_OK);
    slimkv_config other = cfg;
    other.eviction = SLIMKV_EVICT_SNAPKV;
    assert_int_equal(slimkv_cache_create(&other, &snap), SLIMKV_OK);
    other.eviction = SLIMKV_EVICT_NONE;
    assert_int_equal(slimkv_cache_create(&other, &plain), SLIMKV_OK);
    uint64_t d_snap = evict_digest(snap, 2), d_plain = evict_digest(plain, 2);
    assert_int_equal(slimkv_cache_restore(snap, good), SLIMKV_ERR_MISMATCH);
    assert_int_equal(slimkv_cache_restore(plain, good), SLIMKV_ERR_MISMATCH);
    /* a budget is not part of the stored state: another budget restores */
    other.eviction = SLIMKV_EVICT_H2O;
    other.evict_budget = 500;
    slimkv_cache *wide;
    assert_int_equal(slimkv_cache_create(&other, &wide), SLIMKV_OK);
    assert_int_equal(slimkv_cache_restore(wide, good), SLIMKV_OK);
    assert_true(evict_digest(wide, 2) == evict_digest(h2o, 2));
    slimkv_cache_destroy(wide);
    /* a cache without eviction still writes version 2, which an eviction cache refuses */
    assert_int_equal(slimkv_cache_append(plain, w.k, w.v, 50), SLIMKV_OK);
    char v2[512];
    path_of(v2, "plain.safetensors");
    assert_int_equal(slimkv_cache_save(plain, v2), SLIMKV_OK);
    FILE *fp = fopen(v2, "rb");
    static char text[1 << 16];
    size_t len = fread(text, 1, sizeof text, fp);
    fclose(fp);
    assert_non_null(memmem(text, len, "\"slimkv.snapshot\":\"2\"", 21));
    assert_null(memmem(text, len, "slimkv.seen", 11));
    assert_int_equal(slimkv_cache_restore(h2o, v2), SLIMKV_ERR_MISMATCH);
    uint64_t d_h2o = evict_digest(h2o, 2);
    /* every changed byte of the eviction snapshot is refused */
    fp = fopen(good, "rb");
    static char bytes[1 << 20];
    long size = (long)fread(bytes, 1, sizeof bytes, fp);
    fclose(fp);
    /* quick: every 7th byte of the size and JSON header, every 97th of the
     * tensor data (whose every byte the one checksum covers alike) */
    long header_end = 8;
    for (int b = 0; b < 8; b++)
        header_end += (long)((uint64_t)(uint8_t)bytes[b] << (8 * b));
    assert_true(header_end <= size);
    for (long i = 0; i < size; i += quick && i >= header_end ? 97 : 7) {
        bytes[i] ^= 0x20;
        fp = fopen(bad, "wb");
        fwrite(bytes, 1, (size_t)size, fp);
        fclose(fp);
        slimkv_status st = slimkv_cache_restore(h2o, bad);
        if (st != SLIMKV_ERR_FORMAT && st != SLIMKV_ERR_MISMATCH)
            fail_msg("byte %ld changed: %s", i, slimkv_status_str(st));
        bytes[i] ^= 0x20;
    }
    fp = fopen(bad, "wb");
    fwrite(bytes, 1, (size_t)size, fp);
    fclose(fp);
    patch_file(bad, "\"slimkv.snapshot\":\"3\"", "\"slimkv.snapshot\":\"2\"");
    assert_int_equal(slimkv_cache_restore(h2o, bad), SLIMKV_ERR_FORMAT);
    assert_true(evict_digest(h2o, 2) == d_h2o);
    assert_true(evict_digest(snap, 2) == d_snap);
    (void)d_plain;
    assert_int_equal(slimkv_cache_restore(h2o, good), SLIMKV_OK);
    slimkv_cache_destroy(h2o);
    slimkv_cache_destroy(snap);
    slimkv_cache_destroy(plain);
    tmpdir_remove(&snap_dir);
    free(out);
    free(out2);
    free_workload(&w);
}

/* ---- version-3 forgeries with a valid checksum ---- */

typedef struct forged {
    size_t n, n_meta;
    st_out out[64];
    uint8_t *data[64];
    char names[64][32];
    char meta_values[6][512];
    st_meta meta[6];
} forged;

static const char *const forged_keys[6] = {"slimkv.snapshot", "slimkv.config", "slimkv.tokens", "slimkv.pending",
                                           "slimkv.seen", "slimkv.checksum"};

static void forge_load(const char *path, forged *fg)
{
    st_file *f;
    assert_int_equal(st_open(path, &f), SLIMKV_OK);
    assert_true(f->n_tensors <= 64);
    fg->n = f->n_tensors;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        fg->data[i] = malloc(t->n_bytes + 1);
        assert_int_equal(st_read_bytes(f, t, 0, t->n_bytes, fg->data[i]), SLIMKV_OK);
        snprintf(fg->names[i], sizeof fg->names[i], "%s", t->name);
        fg->out[i] = (st_out){.name = fg->names[i], .dtype = t->dtype, .n_dims = 1,
                              .shape = {(int64_t)(t->n_bytes / st_dtype_size(t->dtype))}, .data = fg->data[i]};
    }
    fg->n_meta = 0;
    for (int i = 0; i < 6; i++) {
        const char *v = st_meta_get(f, forged_keys[i]);
        snprintf(fg->meta_values[i], sizeof fg->meta_values[i], "%s", v ? v : "");
        fg->meta[i] = (st_meta){(char *)forged_keys[i], fg->meta_values[i]};
        fg->n_meta += v != NULL;
    }
    st_close(f);
}

static uint8_t *forge_tensor(forged *fg, const char *name, size_t *count)
{
    for (size_t i = 0; i < fg->n; i++)
        if (strcmp(fg->names[i], name) == 0) {
            *count = (size_t)fg->out[i].shape[0];
            return fg->data[i];
        }
    fail_msg("no tensor %s", name);
    return NULL;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* io_snapshot.c's checksum (version, config, tokens, pending, seen for
 * version 3, then every tensor by name), then the file with 6 keys. */
static void forge_write(forged *fg, const char *path)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 5; i++)
        h = fnv1a(h, fg->meta_values[i], strlen(fg->meta_values[i]) + 1);
    for (size_t i = 0; i < fg->n; i++) {
        size_t n_bytes = (size_t)fg->out[i].shape[0] * st_dtype_size(fg->out[i].dtype);
        uint8_t fields[9];
        fields[0] = (uint8_t)fg->out[i].dtype;
        for (int b = 0; b < 8; b++)
            fields[1 + b] = (uint8_t)((uint64_t)n_bytes >> (8 * b));
        h = fnv1a(h, fg->names[i], strlen(fg->names[i]) + 1);
        h = fnv1a(h, fields, sizeof fields);
        h = fnv1a(h, fg->data[i], n_bytes);
    }
    snprintf(fg->meta_values[5], sizeof fg->meta_values[5], "%016llx", (unsigned long long)h);
    assert_int_equal(st_write(path, fg->out, fg->n, fg->meta, 6), SLIMKV_OK);
}

static void forge_free(forged *fg)
{
    for (size_t i = 0; i < fg->n; i++)
        free(fg->data[i]);
}

static void put_i32(uint8_t *p, int32_t x) { memcpy(p, &x, sizeof x); }
static void put_f32(uint8_t *p, float x) { memcpy(p, &x, sizeof x); }

static void test_forged_snapshots(void **state)
{
    (void)state;
    assert_int_equal(tmpdir_make(&snap_dir), 0);
    workload w = make_workload(4, 2, 32, 300, 91);
    float *out = malloc((size_t)w.n * w.n_q * w.dim * sizeof(float));
    char good[512], bad[512];
    path_of(good, "good.safetensors");
    path_of(bad, "forged.safetensors");
    slimkv_config cfg = base_config(&w, SLIMKV_Q4, SLIMKV_F16);
    cfg.eviction = SLIMKV_EVICT_H2O;
    cfg.evict_budget = 30;
    cfg.n_sink = 2;
    slimkv_cache *src, *target;
    assert_int_equal(slimkv_cache_create(&cfg, &src), SLIMKV_OK);
    assert_int_equal(slimkv_cache_create(&cfg, &target), SLIMKV_OK);
    assert_int_equal(slimkv_cache_prefill(src, w.q, w.k, w.v, 250, out), SLIMKV_OK);
    assert_int_equal(slimkv_cache_save(src, good), SLIMKV_OK);
    uint64_t before = evict_digest(target, 2);
    enum { CONTROL, UNSORTED, PAST_SEEN, NEGATIVE, SINK_MOVED, SEEN_BELOW, SEEN_TEXT, SCORE_NAN, SCORE_NEG,
           POS_SHORT, FORGERIES };
    for (int f = 0; f < FORGERIES; f++) {
        forged fg;
        forge_load(good, &fg);
        assert_int_equal(fg.n_meta, 6);
        size_t count = 0;
        uint8_t *pos = forge_tensor(&fg, "h1.pos", &count), *score = forge_tensor(&fg, "h1.score", &count);
        int32_t last;
        memcpy(&last, pos + 4 * (count - 1), sizeof last);
        switch (f) {
        case UNSORTED: put_i32(pos + 4 * 5, last); break;
        case PAST_SEEN: put_i32(pos + 4 * (count - 1), 250); break;
        case NEGATIVE: put_i32(pos + 4 * 3, -7); break;
        case SINK_MOVED: put_i32(pos + 4, 3); break;
        case SEEN_BELOW: snprintf(fg.meta_values[4], sizeof fg.meta_values[4], "%zu", count - 1); break;
        case SEEN_TEXT: snprintf(fg.meta_values[4], sizeof fg.meta_values[4], "0250"); break;
        case SCORE_NAN: put_f32(score + 8, NAN); break;
        case SCORE_NEG: put_f32(score + 8, -1.0f); break;
        case POS_SHORT:
            for (size_t i = 0; i < fg.n; i++)
                if (!strcmp(fg.names[i], "h1.pos"))
                    fg.out[i].shape[0]--;
            break;
        default: break;
        }
        forge_write(&fg, bad);
        forge_free(&fg);
        slimkv_status st = slimkv_cache_restore(target, bad);
        if (f == CONTROL) {
            assert_int_equal(st, SLIMKV_OK); /* the forger itself is right */
            assert_true(evict_digest(target, 2) == evict_digest(src, 2));
            slimkv_cache_destroy(target);
            assert_int_equal(slimkv_cache_create(&cfg, &target), SLIMKV_OK);
            continue;
        }
        if (st != SLIMKV_ERR_FORMAT)
            fail_msg("forgery %d: %s", f, slimkv_status_str(st));
        assert_true(evict_digest(target, 2) == before);
    }
    /* a version-3 file of a cache without eviction (its config string has
     * no policy, so only the version says it): refused as inconsistent */
    slimkv_config plain_cfg = cfg;
    plain_cfg.eviction = SLIMKV_EVICT_NONE;
    slimkv_cache *plain, *plain_target;
    assert_int_equal(slimkv_cache_create(&plain_cfg, &plain), SLIMKV_OK);
    assert_int_equal(slimkv_cache_create(&plain_cfg, &plain_target), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(plain, w.k, w.v, 100), SLIMKV_OK);
    assert_int_equal(slimkv_cache_save(plain, good), SLIMKV_OK);
    forged fg;
    forge_load(good, &fg);
    assert_int_equal(fg.n_meta, 5);
    snprintf(fg.meta_values[0], sizeof fg.meta_values[0], "3");
    snprintf(fg.meta_values[4], sizeof fg.meta_values[4], "100");
    forge_write(&fg, bad);
    forge_free(&fg);
    uint64_t plain_before = cache_digest(plain_target);
    assert_int_equal(slimkv_cache_restore(plain_target, bad), SLIMKV_ERR_FORMAT);
    assert_true(cache_digest(plain_target) == plain_before);
    assert_int_equal(slimkv_cache_restore(plain_target, good), SLIMKV_OK);
    slimkv_cache_destroy(plain);
    slimkv_cache_destroy(plain_target);
    slimkv_cache_destroy(src);
    slimkv_cache_destroy(target);
    tmpdir_remove(&snap_dir);
    free(out);
    free_workload(&w);
}

/* ---- every allocation failing in turn ---- */


typedef enum { CALL_PREFILL, CALL_OBSERVE, CALL_APPEND, CALL_RESTORE } call_kind;

/* Calls `kind` on a copy of base's state with the k-th allocation failing,
 * k = 1, 2, ... until it succeeds: NOMEM, nothing changed, nothing leaked.
 * Quick (SLIMKV_TEST_QUICK=1): the next k runs on the same cache, which the
 * failed call was just shown to have left as it was (the same state digest
 * and live blocks), instead of a new cache prefilled again. */
static void fail_every_allocation(const slimkv_config *cfg, const workload *w, int held, call_kind kind,
                                  const char *snapshot)
{
    size_t rq = (size_t)w->n_q * w->dim;
    float *out = malloc((size_t)w->n * rq * sizeof(float));
    const int reuse = test_quick();
    slimkv_cache *c = NULL;
    uint64_t before = 0;
    long live = 0;
    for (long k = 1;; k++) {
        if (!c) {
            install_faults(0);
            assert_int_equal(slimkv_cache_create(cfg, &c), SLIMKV_OK);
            assert_int_equal(slimkv_cache_prefill(c, w->q, w->k, w->v, held, out), SLIMKV_OK);
            before = evict_digest(c, w->n_kv);
            live = faults.live;
        }
        install_faults(k);
        slimkv_status st;
        switch (kind) {
        case CALL_PREFILL:
            st = slimkv_cache_prefill(c, q_at(w, held), k_at(w, held), v_at(w, held), 60, out);
            break;
        case CALL_OBSERVE:
            st = slimkv_attend_observe(c, q_at(w, held - 3), 3, out);
            break;
        case CALL_APPEND:
            st = slimkv_cache_append(c, k_at(w, held), v_at(w, held), 40);
            break;
        default:
            st = slimkv_cache_restore(c, snapshot);
            break;
        }
        long calls = faults.calls;
        if (st == SLIMKV_OK) {
            assert_true(calls < k); /* every allocation of the call was tried */
            slimkv_cache_destroy(c);
            install_faults(0);
            break;
        }
        assert_int_equal(st, SLIMKV_ERR_NOMEM);
        assert_int_equal(faults.live, live);
        assert_true(evict_digest(c, w->n_kv) == before);
        install_faults(0);
        if (!reuse) {
            slimkv_cache_destroy(c);
            c = NULL;
        }
    }
    assert_int_equal(faults.live, 0);
    free(out);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    assert_int_equal(tmpdir_make(&snap_dir), 0);
    workload w = make_workload(4, 2, 32, 400, 61);
    char snapshot[512];
    path_of(snapshot, "mem.safetensors");
    const slimkv_policy policies[] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_SPARK, SLIMKV_POLICY_STATIC};
    for (size_t p = 0; p < 3; p++)
        for (int e = 1; e <= 2; e++) {
            slimkv_config cfg = base_config(&w, SLIMKV_Q4, SLIMKV_Q8);
            cfg.eviction = (slimkv_eviction)e;
            cfg.evict_budget = 40;
            cfg.n_sink = 1;
            cfg.policy = policies[p];
            if (cfg.policy == SLIMKV_POLICY_STATIC) {
                make_static_masks(w.dim);
                cfg.k_mask = static_k_mask;
                cfg.v_mask = static_v_mask;
            }
            /* creation */
            for (long k = 1;; k++) {
                install_faults(k);
                slimkv_cache *c = NULL;
                slimkv_status st = slimkv_cache_create(&cfg, &c);
                if (st == SLIMKV_OK) {
                    slimkv_cache_destroy(c);
                    break;
                }
                assert_int_equal(st, SLIMKV_ERR_NOMEM);
                assert_int_equal(faults.live, 0);
            }
            install_faults(0);
            /* a prefill that evicts among stored and new tokens */
            fail_every_allocation(&cfg, &w, 150, CALL_PREFILL, NULL);
            /* a first prefill that evicts (nothing stored yet) */
            fail_every_allocation(&cfg, &w, 1, CALL_PREFILL, NULL);
            /* append growing the tracking arrays */
            fail_every_allocation(&cfg, &w, 240, CALL_APPEND, NULL);
            /* observe, evicting (H2O) or not (SnapKV: attend only) */
            slimkv_config tight = cfg;
            tight.evict_budget = 20;
            fail_every_allocation(&tight, &w, 100, CALL_OBSERVE, NULL);
            /* restore of an evicted cache */
            slimkv_cache *src;
            float *out = malloc((size_t)200 * w.n_q * w.dim * sizeof(float));
            assert_int_equal(slimkv_cache_create(&cfg, &src), SLIMKV_OK);
            assert_int_equal(slimkv_cache_prefill(src, w.q, w.k, w.v, 200, out), SLIMKV_OK);
            assert_int_equal(slimkv_cache_save(src, snapshot), SLIMKV_OK);
            slimkv_cache_destroy(src);
            free(out);
            fail_every_allocation(&cfg, &w, 30, CALL_RESTORE, snapshot);
        }
    slimkv_set_allocator(NULL);
    tmpdir_remove(&snap_dir);
    free_workload(&w);
}

/* ---- a long H2O run: bounded memory, tokens seen past the capacity ---- */

static void test_h2o_long_run(void **state)
{
    (void)state;
    /* quick: 360 tokens, still several times the largest capacity (124) */
    workload w = make_workload(4, 2, 32, test_quick() ? 360 : 900, 71);
    size_t rq = (size_t)w.n_q * w.dim;
    float out[4 * 32 * 8];
    const int residuals[] = {0, 16, 48};
    for (size_t f = 0; f < N_FORMATS; f++)
        for (size_t r = 0; r < 3; r++) {
            slimkv_config cfg = base_config(&w, all_formats[f], all_formats[f]);
            cfg.eviction = SLIMKV_EVICT_H2O;
            cfg.evict_budget = 50;
            cfg.residual = residuals[r];
            cfg.n_sink = (int)r;
            cfg.capacity = 50 + residuals[r] + (int)r + 16 + 8;
            slimkv_cache *c;
            assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
            size_t peak = 0, bytes;
            for (int t = 0; t + 4 <= w.n; t += 4) {
                assert_int_equal(slimkv_cache_append(c, k_at(&w, t), v_at(&w, t), 4), SLIMKV_OK);
                assert_int_equal(slimkv_attend_observe(c, q_at(&w, t), 4, out), SLIMKV_OK);
                for (size_t i = 0; i < 4 * rq; i++)
                    assert_true(isfinite(out[i]));
                assert_int_equal(slimkv_cache_bytes(c, &bytes), SLIMKV_OK);
                peak = bytes > peak ? bytes : peak;
            }
            int held, seen;
            assert_int_equal(slimkv_cache_tokens(c, &held), SLIMKV_OK);
            assert_int_equal(slimkv_cache_tokens_seen(c, &seen), SLIMKV_OK);
            assert_int_equal(seen, w.n);
            assert_true(held <= cfg.capacity);
            assert_true(held >= cfg.n_sink + cfg.evict_budget);
            slimkv_cache_destroy(c);
        }
    free_workload(&w);
}

/* ---- the thread count changes nothing ---- */

static void test_threads_agree(void **state)
{
    (void)state;
    /* OMP_NUM_THREADS=1 is how the qemu runs ask for no threads, too */
    if (!test_threads_allowed() || omp_get_max_threads() < 2) {
        print_message("skipped: threads not allowed here (SLIMKV_TEST_NO_THREADS=1 or OMP_NUM_THREADS=1)\n");
        skip();
    }
    workload w = make_workload(8, 4, 64, 700, 81);
    size_t rq = (size_t)w.n_q * w.dim;
    float *out[2];
    uint64_t digest[2];
    for (int e = 1; e <= 2; e++) {
        for (int run = 0; run < 2; run++) {
            omp_set_num_threads(run == 0 ? 1 : 2);
            slimkv_config cfg = base_config(&w, SLIMKV_Q4, SLIMKV_Q4);
            cfg.eviction = (slimkv_eviction)e;
            cfg.evict_budget = 128;
            cfg.policy = SLIMKV_POLICY_THINK;
            slimkv_cache *c;
            assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
            out[run] = malloc((size_t)w.n * rq * sizeof(float));
            /* large enough calls that scoring, rebuild and attention go parallel */
            assert_int_equal(slimkv_cache_prefill(c, w.q, w.k, w.v, 600, out[run]), SLIMKV_OK);
            for (int t = 600; t + 20 <= w.n; t += 20) {
                assert_int_equal(slimkv_cache_append(c, k_at(&w, t), v_at(&w, t), 20), SLIMKV_OK);
                assert_int_equal(slimkv_attend_observe(c, q_at(&w, t), 20, out[run] + (size_t)t * rq), SLIMKV_OK);
            }
            digest[run] = evict_digest(c, w.n_kv);
            slimkv_cache_destroy(c);
        }
        assert_true(digest[0] == digest[1]);
        assert_memory_equal(out[0], out[1], (size_t)w.n * rq * sizeof(float));
        free(out[0]);
        free(out[1]);
    }
    omp_set_num_threads(omp_get_num_procs());
    free_workload(&w);
}

/* Fork and truncate of evicting caches: a fork holds the same tokens,
 * positions, scores and tokens seen and attends alike; truncation keeps
 * the first held tokens while the dropped ones are the newest positions
 * (the tokens seen roll back), and refuses a cut past an evicted gap. */
static void test_fork_and_truncate(void **state)
{
    (void)state;
    workload w = make_workload(4, 2, 32, 400, 41);
    const slimkv_eviction kinds[] = {SLIMKV_EVICT_SNAPKV, SLIMKV_EVICT_H2O};
    for (int e = 0; e < 2; e++) {
        slimkv_config cfg = base_config(&w, SLIMKV_Q4, SLIMKV_Q4);
        cfg.eviction = kinds[e];
        cfg.evict_budget = 64;
        slimkv_cache *c, *f;
        assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
        float *out = malloc((size_t)300 * 4 * 32 * sizeof(float)), *out_f = malloc((size_t)4 * 32 * sizeof(float));
        assert_true(out && out_f);
        assert_int_equal(slimkv_cache_prefill(c, w.q, w.k, w.v, 300, out), SLIMKV_OK);
        for (int t = 300; t < 340; t++) {
            assert_int_equal(slimkv_cache_append(c, k_at(&w, t), v_at(&w, t), 1), SLIMKV_OK);
            assert_int_equal(slimkv_attend_observe(c, q_at(&w, t), 1, out), SLIMKV_OK);
        }
        int held, seen, held_f, seen_f;
        slimkv_cache_tokens(c, &held);
        slimkv_cache_tokens_seen(c, &seen);
        assert_true(held < seen); /* something was evicted */
        assert_int_equal(slimkv_cache_fork(c, &f), SLIMKV_OK);
        size_t total, owned, shared;
        assert_int_equal(slimkv_cache_bytes(f, &total), SLIMKV_OK);
        assert_int_equal(slimkv_cache_bytes_shared(f, &owned, &shared), SLIMKV_OK);
        assert_true(owned + shared == total); /* the eviction state is the fork's own */
        slimkv_cache_tokens(f, &held_f);
        slimkv_cache_tokens_seen(f, &seen_f);
        assert_int_equal(held_f, held);
        assert_int_equal(seen_f, seen);
        for (int h = 0; h < 2; h++) {
            int32_t pos[400], pos_f[400];
            int n, n_f;
            assert_int_equal(slimkv_cache_token_positions(c, h, pos, &n), SLIMKV_OK);
            assert_int_equal(slimkv_cache_token_positions(f, h, pos_f, &n_f), SLIMKV_OK);
            assert_int_equal(n, n_f);
            assert_memory_equal(pos, pos_f, (size_t)n * sizeof *pos);
            if (kinds[e] == SLIMKV_EVICT_H2O) {
                float sc[400], sc_f[400];
                assert_int_equal(slimkv_cache_token_scores(c, h, sc, &n), SLIMKV_OK);
                assert_int_equal(slimkv_cache_token_scores(f, h, sc_f, &n_f), SLIMKV_OK);
                assert_memory_equal(sc, sc_f, (size_t)n * sizeof *sc);
            }
        }
        assert_int_equal(slimkv_attend(c, q_at(&w, 339), 1, out), SLIMKV_OK);
        assert_int_equal(slimkv_attend(f, q_at(&w, 339), 1, out_f), SLIMKV_OK);
        assert_memory_equal(out, out_f, (size_t)4 * 32 * sizeof(float));
        /* the newest 5 tokens were never evictable: a rollback of 5 */
        assert_int_equal(slimkv_cache_truncate(f, held - 5), SLIMKV_OK);
        slimkv_cache_tokens_seen(f, &seen_f);
        assert_int_equal(seen_f, seen - 5);
        /* a cut into the evicted part is refused, the fork unchanged */
        uint64_t before = evict_digest(f, 2);
        assert_int_equal(slimkv_cache_truncate(f, 20), SLIMKV_ERR_STATE);
        assert_true(evict_digest(f, 2) == before);
        /* the source still holds everything */
        slimkv_cache_tokens(c, &held_f);
        assert_int_equal(held_f, held);
        slimkv_cache_destroy(c);
        slimkv_cache_destroy(f);
        free(out);
        free(out_f);
    }
    free_workload(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_configs_and_calls),
        cmocka_unit_test(test_budgets_and_bytes),
        cmocka_unit_test(test_snapkv_choice),
        cmocka_unit_test(test_h2o_order),
        cmocka_unit_test(test_attention_matches_oracle),
        cmocka_unit_test(test_h2o_long_run),
        cmocka_unit_test(test_snapshots),
        cmocka_unit_test(test_forged_snapshots),
        cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_fork_and_truncate),
        cmocka_unit_test_teardown(test_allocation_failures, teardown_allocator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
