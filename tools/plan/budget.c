/* Budget search (KVPruner's per-layer allocation, Tyr-the-Pruner's
 * coarse-to-fine search over it):
 *
 * 1. Rank channels per (layer, KV head) on the calibration data: K by ThinK's
 *    score mean(q_c^2) * mean(k_c^2) over the group's queries and all tokens
 *    (by pairs (c, c + D/2) with rope_pairs), V by mean(v_c^2). A keep count n
 *    keeps the n best.
 * 2. Measure: a "point" is a (K, V) keep count pair. Running one layer's
 *    calibration through a SlimKV cache whose heads keep given points gives
 *    each head's squared decode-output error against the f32 dense result
 *    (normalized by the layer's output energy). Heads are independent in the
 *    cache (own quantization groups, own queries), so one run measures a
 *    different point for every head, and the squared errors of a layer's
 *    heads add up exactly to the layer's.
 *    Bytes of a point: slimkv_cache_bytes of a one-head cache filled to
 *    `context` tokens; a layer's bytes are the sum over its heads.
 * 3. Choose: one point per unit (layer, or layer and head) minimizing the sum
 *    of squared layer errors within the byte budget, a multiple-choice
 *    knapsack solved by dynamic programming over bytes.
 * 4. Coarse to fine: first over a grid in steps of ~D/4, then again over the
 *    coarse grid plus every aligned count within one coarse step of each
 *    unit's coarse choice; the fine solution can only be better.
 */
#include "budget.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DP_BUCKETS 16384

typedef struct search {
    const calib_file *calib;
    const budget_params *p;
    int layers, heads, dim, q_heads, tokens, queries;
    int steps;            /* dim / align: counts are multiples of align */
    int n_points;         /* (steps + 1)^2 */
    double *err;          /* [layers][heads][n_points]; NAN: not measured yet */
    size_t *point_bytes;  /* [n_points]; 0: not measured yet */
    int *k_order, *v_order; /* [layers][heads][dim]: channels, best first */
    float *ref;           /* [layers][queries][q_heads][dim]: f32 dense decode outputs */
    double *ref_energy;   /* [layers] */
    long runs;
} search;

typedef struct point_list {
    int n;
    int *point; /* capacity n_points */
} point_list;

void budget_defaults(budget_params *p)
{
    memset(p, 0, sizeof *p);
    p->k_format = SLIMKV_Q4;
    p->v_format = SLIMKV_Q4;
    p->group_size = 32;
    p->residual = 128;
    p->n_sink = 0;
    p->channel_align = 8;
    p->budget = 0.5;
    p->n_queries = 32;
    p->context = 8192;
    p->prune_v = 1;
}

static int point_of(const search *s, int k, int v)
{
    int a = s->p->channel_align;
    return k / a * (s->steps + 1) + (k == 0 ? 0 : v / a);
}

static int point_k(const search *s, int point)
{
    return point / (s->steps + 1) * s->p->channel_align;
}

static int point_v(const search *s, int point)
{
    return point % (s->steps + 1) * s->p->channel_align;
}

/* The point of K/V counts as the search stores them: a streaming head (K 0)
 * stores no V either, and V keeps everything unless V is pruned. */
static int make_point(const search *s, int k, int v)
{
    return point_of(s, k, k == 0 ? 0 : s->p->prune_v ? v : s->dim);
}

static void list_add(const search *s, point_list *list, int k, int v)
{
    int pt = make_point(s, k, v);
    for (int i = 0; i < list->n; i++)
        if (list->point[i] == pt)
            return;
    list->point[list->n++] = pt;
}

static void base_config(const search *s, slimkv_config *c, int q_heads, int kv_heads, int capacity)
{
    slimkv_config_init(c);
    c->n_q_heads = q_heads;
    c->n_kv_heads = kv_heads;
    c->head_dim = s->dim;
    c->capacity = capacity;
    c->k_format = s->p->k_format;
    c->v_format = s->p->v_format;
    c->group_size = s->p->group_size;
    c->residual = s->p->residual;
    c->n_sink = s->p->n_sink;
    c->channel_align = s->p->channel_align;
}

static int check(slimkv_status st, const char *what)
{
    if (st == SLIMKV_OK)
        return 0;
    fprintf(stderr, "%s: %s\n", what, slimkv_status_str(st));
    return -1;
}

/* Masks of every head from its points: the best k (v) channels of its order. */
static void masks_for(const search *s, int layer, const int *points, uint8_t *k_mask, uint8_t *v_mask)
{
    int d = s->dim;
    memset(k_mask, 0, (size_t)s->heads * d);
    memset(v_mask, 0, (size_t)s->heads * d);
    for (int h = 0; h < s->heads; h++) {
        const int *ko = s->k_order + ((size_t)layer * s->heads + h) * d;
        const int *vo = s->v_order + ((size_t)layer * s->heads + h) * d;
        for (int i = 0; i < point_k(s, points[h]); i++)
            k_mask[h * d + ko[i]] = 1;
        for (int i = 0; i < point_v(s, points[h]); i++)
            v_mask[h * d + vo[i]] = 1;
    }
}

/* K+V bytes of one head keeping a point's counts, at `context` tokens. */
static int point_bytes(search *s, int point, size_t *bytes)
{
    if (s->point_bytes[point]) {
        *bytes = s->point_bytes[point];
        return 0;
    }
    int d = s->dim, context = s->p->context > 0 ? s->p->context : s->tokens, chunk = 1024;
    uint8_t *mask = calloc(2 * (size_t)d, 1);
    float *zeros = calloc((size_t)chunk * d, sizeof *zeros);
    int rc = -1;
    if (!mask || !zeros) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    for (int i = 0; i < point_k(s, point); i++)
        mask[i] = 1;
    for (int i = 0; i < point_v(s, point); i++)
        mask[d + i] = 1;
    slimkv_config c;
    base_config(s, &c, 1, 1, context);
    c.policy = SLIMKV_POLICY_STATIC;
    c.k_mask = mask;
    c.v_mask = s->p->prune_v ? mask + d : NULL;
    slimkv_cache *cache;
    if (check(slimkv_cache_create(&c, &cache), "byte accounting cache"))
        goto done;
    rc = 0;
    for (int t = 0; t < context && rc == 0; t += chunk)
        rc = check(slimkv_cache_append(cache, zeros, zeros, context - t < chunk ? context - t : chunk), "append");
    if (rc == 0)
        rc = check(slimkv_cache_bytes(cache, bytes), "bytes");
    slimkv_cache_destroy(cache);
    if (rc == 0)
        s->point_bytes[point] = *bytes;
done:
    free(mask);
    free(zeros);
    return rc;
}

/* Decode outputs of the layer's last `queries` queries through one cache. */
static int run_cache(const search *s, const calib_layer *cl, const slimkv_config *c, float *out)
{
    slimkv_cache *cache;
    if (check(slimkv_cache_create(c, &cache), "calibration cache"))
        return -1;
    const float *q_last = cl->q + (size_t)(s->tokens - s->queries) * s->q_heads * s->dim;
    int rc = check(slimkv_cache_append(cache, cl->k, cl->v, s->tokens), "calibration append");
    if (rc == 0)
        rc = check(slimkv_attend(cache, q_last, s->queries, out), "calibration attend");
    slimkv_cache_destroy(cache);
    return rc;
}

/* Runs the layer with head h keeping points[h]; head_err[h] gets the squared
 * error of the head's query outputs over the layer's reference energy. */
static int run_points(search *s, int layer, const calib_layer *cl, const int *points, double *head_err)
{
    int d = s->dim, group = s->q_heads / s->heads;
    size_t n_out = (size_t)s->queries * s->q_heads * d;
    uint8_t *masks = malloc(2 * (size_t)s->heads * d);
    float *out = malloc(n_out * sizeof *out);
    int rc = -1;
    if (!masks || !out) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    masks_for(s, layer, points, masks, masks + (size_t)s->heads * d);
    slimkv_config c;
    base_config(s, &c, s->q_heads, s->heads, s->tokens);
    c.policy = SLIMKV_POLICY_STATIC;
    c.k_mask = masks;
    c.v_mask = s->p->prune_v ? masks + (size_t)s->heads * d : NULL;
    if (run_cache(s, cl, &c, out))
        goto done;
    s->runs++;
    const float *ref = s->ref + (size_t)layer * n_out;
    for (int h = 0; h < s->heads; h++)
        head_err[h] = 0;
    for (size_t i = 0; i < n_out; i++) {
        double e = (double)out[i] - ref[i];
        head_err[i / d % s->q_heads / group] += e * e;
    }
    for (int h = 0; h < s->heads; h++)
        head_err[h] /= s->ref_energy[layer];
    rc = 0;
done:
    free(masks);
    free(out);
    return rc;
}

/* Measures every point of wanted[h] not measured yet for head h, one point
 * per head per run. */
static int measure_layer(search *s, int layer, const calib_layer *cl, const point_list *wanted)
{
    int H = s->heads, rc = 0;
    double *err = s->err + (size_t)layer * H * s->n_points;
    int *todo = malloc((size_t)H * s->n_points * sizeof *todo), *n_todo = calloc((size_t)H, sizeof *n_todo);
    int *points = malloc((size_t)H * sizeof *points);
    double *head_err = malloc((size_t)H * sizeof *head_err);
    if (!todo || !n_todo || !points || !head_err) {
        fprintf(stderr, "out of memory\n");
        rc = -1;
    }
    int runs = 0;
    for (int h = 0; rc == 0 && h < H; h++) {
        for (int i = 0; i < wanted[h].n; i++)
            if (isnan(err[(size_t)h * s->n_points + wanted[h].point[i]]))
                todo[(size_t)h * s->n_points + n_todo[h]++] = wanted[h].point[i];
        runs = n_todo[h] > runs ? n_todo[h] : runs;
    }
    for (int r = 0; rc == 0 && r < runs; r++) {
        for (int h = 0; h < H; h++) /* a head with nothing left re-runs its first point */
            points[h] = n_todo[h] ? todo[(size_t)h * s->n_points + (r < n_todo[h] ? r : 0)]
                                  : make_point(s, s->dim, s->dim);
        rc = run_points(s, layer, cl, points, head_err);
        for (int h = 0; rc == 0 && h < H; h++)
            if (r < n_todo[h])
                err[(size_t)h * s->n_points + points[h]] = head_err[h];
    }
    free(todo);
    free(n_todo);
    free(points);
    free(head_err);
    return rc;
}

/* Channels by score, best first (ties: lower index first). */
static void order_by_score(const double *score, int n, int *order)
{
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = 1; i < n; i++) { /* insertion sort: n <= 1024, run once per head */
        int x = order[i], j = i;
        while (j > 0 && score[order[j - 1]] < score[x])
            order[j] = order[j - 1], j--;
        order[j] = x;
    }
}

/* Ranks the layer's channels and computes its f32 dense reference outputs. */
static int prepare_layer(search *s, int layer, const calib_layer *cl)
{
    int d = s->dim, T = s->tokens, group = s->q_heads / s->heads, half = d / 2;
    double *score = malloc(3 * (size_t)d * sizeof *score), *q2 = score + d, *k2 = score + 2 * d;
    int *pair_order = malloc((size_t)half * sizeof *pair_order);
    if (!score || !pair_order) {
        free(score);
        free(pair_order);
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    for (int h = 0; h < s->heads; h++) {
        int *ko = s->k_order + ((size_t)layer * s->heads + h) * d;
        int *vo = s->v_order + ((size_t)layer * s->heads + h) * d;
        memset(q2, 0, 2 * (size_t)d * sizeof *q2);
        for (int t = 0; t < T; t++) {
            for (int j = 0; j < group; j++) {
                const float *q = cl->q + ((size_t)t * s->q_heads + h * group + j) * d;
                for (int c = 0; c < d; c++)
                    q2[c] += (double)q[c] * q[c];
            }
            const float *k = cl->k + ((size_t)t * s->heads + h) * d;
            for (int c = 0; c < d; c++)
                k2[c] += (double)k[c] * k[c];
        }
        for (int c = 0; c < d; c++) /* ThinK: mean(q^2) * mean(k^2); constant factors do not reorder */
            score[c] = q2[c] * k2[c];
        if (s->p->rope_pairs) {
            for (int c = 0; c < half; c++)
                score[c] += score[c + half];
            order_by_score(score, half, pair_order);
            for (int i = 0; i < half; i++) {
                ko[2 * i] = pair_order[i];
                ko[2 * i + 1] = pair_order[i] + half;
            }
        } else {
            order_by_score(score, d, ko);
        }
        memset(score, 0, (size_t)d * sizeof *score);
        for (int t = 0; t < T; t++) {
            const float *v = cl->v + ((size_t)t * s->heads + h) * d;
            for (int c = 0; c < d; c++)
                score[c] += (double)v[c] * v[c];
        }
        order_by_score(score, d, vo);
    }
    free(score);
    free(pair_order);

    slimkv_config c;
    base_config(s, &c, s->q_heads, s->heads, T);
    c.k_format = c.v_format = SLIMKV_F32;
    size_t n_out = (size_t)s->queries * s->q_heads * d;
    float *ref = s->ref + (size_t)layer * n_out;
    if (run_cache(s, cl, &c, ref))
        return -1;
    double energy = 0;
    for (size_t i = 0; i < n_out; i++)
        energy += (double)ref[i] * ref[i];
    s->ref_energy[layer] = energy > 0 ? energy : 1;
    return 0;
}

/* A unit is a layer (per_head 0) or a (layer, head) pair. */
static int n_units(const search *s)
{
    return s->p->per_head ? s->layers * s->heads : s->layers;
}

static double unit_err(const search *s, int unit, int point)
{
    if (s->p->per_head)
        return s->err[(size_t)unit * s->n_points + point];
    double e = 0;
    for (int h = 0; h < s->heads; h++)
        e += s->err[((size_t)unit * s->heads + h) * s->n_points + point];
    return e;
}

static size_t unit_bytes(const search *s, int point)
{
    return s->point_bytes[point] * (size_t)(s->p->per_head ? 1 : s->heads);
}

/* Multiple-choice knapsack: one option per unit, least total error with
 * total bytes <= budget. Bytes above each unit's cheapest option are rounded
 * up to buckets, so a solution found always fits. -1: nothing fits. */
static int choose(int units, const int *n_opt, const size_t *bytes, const double *err, size_t budget, int *choice)
{
    size_t base = 0, at = 0;
    size_t *min_bytes = malloc((size_t)units * sizeof *min_bytes);
    if (!min_bytes)
        return -1;
    for (int u = 0; u < units; u++) {
        min_bytes[u] = SIZE_MAX;
        for (int o = 0; o < n_opt[u]; o++, at++)
            min_bytes[u] = bytes[at] < min_bytes[u] ? bytes[at] : min_bytes[u];
        base += min_bytes[u];
    }
    if (base > budget) {
        free(min_bytes);
        return -1;
    }
    size_t spare = budget - base, bucket = spare / DP_BUCKETS + 1;
    int cap = (int)(spare / bucket);
    double *dp = malloc(2 * (size_t)(cap + 1) * sizeof *dp), *prev = dp, *cur = dp + cap + 1;
    int16_t *pick = malloc((size_t)units * (cap + 1) * sizeof *pick);
    int rc = dp && pick ? 0 : -1;
    for (int b = 0; rc == 0 && b <= cap; b++)
        prev[b] = 0;
    at = 0;
    for (int u = 0; rc == 0 && u < units; u++) {
        for (int b = 0; b <= cap; b++) {
            cur[b] = INFINITY;
            pick[(size_t)u * (cap + 1) + b] = -1;
        }
        for (int o = 0; o < n_opt[u]; o++) {
            size_t cost = (bytes[at + o] - min_bytes[u] + bucket - 1) / bucket;
            if (cost > (size_t)cap)
                continue;
            for (int b = (int)cost; b <= cap; b++) {
                double e = prev[b - cost] + err[at + o];
                if (e < cur[b]) {
                    cur[b] = e;
                    pick[(size_t)u * (cap + 1) + b] = (int16_t)o;
                }
            }
        }
        at += n_opt[u];
        double *t = prev;
        prev = cur;
        cur = t;
    }
    if (rc == 0 && isinf(prev[cap]))
        rc = -1;
    for (int u = units - 1, b = cap; rc == 0 && u >= 0; u--) {
        at -= n_opt[u];
        int o = pick[(size_t)u * (cap + 1) + b];
        choice[u] = o;
        b -= (int)((bytes[at + o] - min_bytes[u] + bucket - 1) / bucket);
    }
    free(min_bytes);
    free(dp);
    free(pick);
    return rc;
}

/* Runs the knapsack over each unit's candidate points; chosen[u] = point. */
static int choose_points(search *s, const point_list *cand, size_t budget, int *chosen)
{
    int U = n_units(s), total = 0, rc = 0;
    for (int u = 0; u < U; u++)
        total += cand[u].n;
    int *n_opt = malloc((size_t)U * sizeof *n_opt), *choice = malloc((size_t)U * sizeof *choice);
    size_t *bytes = malloc((size_t)total * sizeof *bytes);
    double *err = malloc((size_t)total * sizeof *err);
    if (!n_opt || !choice || !bytes || !err)
        rc = -1;
    for (int u = 0, at = 0; rc == 0 && u < U; u++) {
        n_opt[u] = cand[u].n;
        for (int o = 0; o < cand[u].n; o++, at++) {
            bytes[at] = unit_bytes(s, cand[u].point[o]);
            err[at] = unit_err(s, u, cand[u].point[o]);
        }
    }
    if (rc == 0 && choose(U, n_opt, bytes, err, budget, choice) != 0) {
        fprintf(stderr, "budget of %zu bytes is below the smallest possible (every head streaming)\n", budget);
        rc = -1;
    }
    for (int u = 0; rc == 0 && u < U; u++)
        chosen[u] = cand[u].point[choice[u]];
    free(n_opt);
    free(choice);
    free(bytes);
    free(err);
    return rc;
}

/* Makes sure every candidate point of every unit has its bytes and errors. */
static int measure_candidates(search *s, const point_list *cand)
{
    for (int u = 0; u < n_units(s); u++)
        for (int i = 0; i < cand[u].n; i++) {
            size_t b;
            if (point_bytes(s, cand[u].point[i], &b))
                return -1;
        }
    point_list *wanted = malloc((size_t)s->heads * sizeof *wanted);
    if (!wanted)
        return -1;
    int rc = 0;
    for (int l = 0; l < s->layers && rc == 0; l++) {
        for (int h = 0; h < s->heads; h++)
            wanted[h] = cand[s->p->per_head ? l * s->heads + h : l];
        int missing = 0;
        for (int h = 0; h < s->heads; h++)
            for (int i = 0; i < wanted[h].n; i++)
                missing |= isnan(s->err[((size_t)l * s->heads + h) * s->n_points + wanted[h].point[i]]);
        if (!missing)
            continue;
        calib_layer cl;
        rc = calib_load_layer(s->calib, l, &cl);
        if (rc == 0)
            rc = measure_layer(s, l, &cl, wanted);
        calib_layer_free(&cl);
    }
    free(wanted);
    return rc;
}

static int alloc_choice(budget_choice *c, int layers, int heads)
{
    c->k_count = calloc((size_t)layers * heads, sizeof *c->k_count);
    c->v_count = calloc((size_t)layers * heads, sizeof *c->v_count);
    c->layer_err = calloc((size_t)layers, sizeof *c->layer_err);
    return c->k_count && c->v_count && c->layer_err ? 0 : -1;
}

static void free_choice(budget_choice *c)
{
    free(c->k_count);
    free(c->v_count);
    free(c->layer_err);
    memset(c, 0, sizeof *c);
}

/* Runs every layer with the choice's points (one per head) to report
 * measured errors and bytes of the whole allocation. */
static int evaluate(search *s, const int *head_points, budget_choice *out)
{
    double *head_err = malloc((size_t)s->heads * sizeof *head_err);
    int rc = head_err ? 0 : -1;
    out->total_err = 0;
    out->bytes = 0;
    for (int l = 0; l < s->layers && rc == 0; l++) {
        const int *pts = head_points + (size_t)l * s->heads;
        calib_layer cl;
        rc = calib_load_layer(s->calib, l, &cl);
        if (rc == 0)
            rc = run_points(s, l, &cl, pts, head_err);
        calib_layer_free(&cl);
        double e2 = 0;
        for (int h = 0; rc == 0 && h < s->heads; h++) {
            size_t b;
            rc = point_bytes(s, pts[h], &b);
            out->bytes += b;
            out->k_count[l * s->heads + h] = point_k(s, pts[h]);
            out->v_count[l * s->heads + h] = point_v(s, pts[h]);
            e2 += head_err[h];
        }
        out->layer_err[l] = sqrt(e2);
        out->total_err += e2;
    }
    free(head_err);
    return rc;
}

static void free_search(search *s)
{
    free(s->err);
    free(s->point_bytes);
    free(s->k_order);
    free(s->v_order);
    free(s->ref);
    free(s->ref_energy);
}

static int init_search(search *s, const calib_file *calib, const budget_params *p)
{
    memset(s, 0, sizeof *s);
    s->calib = calib;
    s->p = p;
    s->layers = calib->n_layers;
    s->heads = calib->n_kv_heads;
    s->dim = calib->head_dim;
    s->q_heads = calib->n_q_heads;
    s->tokens = calib->n_tokens;
    s->queries = p->n_queries;
    int a = p->channel_align;
    if (a < 4 || a % 4 || s->dim % a || s->queries < 1 || s->queries > s->tokens || !(p->budget > 0) ||
        p->budget > 1 || p->context < 0 || (p->rope_pairs && s->dim % 2)) {
        fprintf(stderr, "bad search parameters: need align a multiple of 4 dividing head_dim %d, 1 <= queries <= "
                        "%d tokens, 0 < budget <= 1\n", s->dim, s->tokens);
        return -1;
    }
    s->steps = s->dim / a;
    s->n_points = (s->steps + 1) * (s->steps + 1);
    size_t cells = (size_t)s->layers * s->heads * s->n_points, orders = (size_t)s->layers * s->heads * s->dim;
    s->err = malloc(cells * sizeof *s->err);
    s->point_bytes = calloc((size_t)s->n_points, sizeof *s->point_bytes);
    s->k_order = malloc(orders * sizeof *s->k_order);
    s->v_order = malloc(orders * sizeof *s->v_order);
    s->ref = malloc((size_t)s->layers * s->queries * s->q_heads * s->dim * sizeof *s->ref);
    s->ref_energy = malloc((size_t)s->layers * sizeof *s->ref_energy);
    if (!s->err || !s->point_bytes || !s->k_order || !s->v_order || !s->ref || !s->ref_energy) {
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < cells; i++)
        s->err[i] = NAN;
    return 0;
}

void budget_result_free(budget_result *r)
{
    free_choice(&r->plan);
    free_choice(&r->uniform);
    free_choice(&r->plan_at_uniform);
    free(r->k_mask);
    free(r->v_mask);
    memset(r, 0, sizeof *r);
}

/* The coarse grid: K in {0, step, 2 step, ..., D}, V in {step, ..., D}. */
static void coarse_points(const search *s, point_list *list)
{
    int a = s->p->channel_align, step = s->dim / 4 / a * a;
    step = step < a ? a : step;
    list->n = 0;
    for (int k = 0; k <= s->dim; k = k + step > s->dim && k < s->dim ? s->dim : k + step)
        for (int v = step; v <= s->dim; v = v + step > s->dim && v < s->dim ? s->dim : v + step)
            list_add(s, list, k, v);
}

/* Every aligned count within one coarse step of a coarse choice. */
static void fine_points(const search *s, int center, point_list *list)
{
    int a = s->p->channel_align, step = s->dim / 4 / a * a;
    step = step < a ? a : step;
    int kc = point_k(s, center), vc = point_v(s, center);
    for (int k = kc - step < 0 ? 0 : kc - step; k <= kc + step && k <= s->dim; k += a)
        for (int v = vc - step < a ? a : vc - step; v <= vc + step && v <= s->dim; v += a)
            list_add(s, list, k, v);
}

/* Coarse to fine for one byte budget; the uniform allocation (keep count
 * `uniform`, 0 for none) is among the coarse candidates, so the result can
 * only be as good or better. Fills the choice with measured errors and, when
 * masks is not NULL, the K and V masks. */
static int search_budget(search *s, size_t budget, int uniform, budget_choice *out, uint8_t *k_mask,
                         uint8_t *v_mask)
{
    int U = n_units(s), L = s->layers, H = s->heads, rc = -1;
    point_list *cand = calloc((size_t)U, sizeof *cand);
    int *chosen = malloc((size_t)U * sizeof *chosen), *head_points = calloc((size_t)L * H, sizeof *head_points);
    if (!cand || !chosen || !head_points || alloc_choice(out, L, H))
        goto done;
    for (int u = 0; u < U; u++)
        if (!(cand[u].point = malloc((size_t)s->n_points * sizeof *cand[u].point)))
            goto done;
    for (int u = 0; u < U; u++) {
        coarse_points(s, &cand[u]);
        if (uniform)
            list_add(s, &cand[u], uniform, uniform);
    }
    if (measure_candidates(s, cand) || choose_points(s, cand, budget, chosen))
        goto done;
    for (int u = 0; u < U; u++)
        fine_points(s, chosen[u], &cand[u]);
    if (measure_candidates(s, cand) || choose_points(s, cand, budget, chosen))
        goto done;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++)
            head_points[l * H + h] = chosen[s->p->per_head ? l * H + h : l];
    if (evaluate(s, head_points, out))
        goto done;
    for (int l = 0; k_mask && l < L; l++)
        masks_for(s, l, head_points + (size_t)l * H, k_mask + (size_t)l * H * s->dim,
                  v_mask + (size_t)l * H * s->dim);
    rc = 0;
done:
    for (int u = 0; cand && u < U; u++)
        free(cand[u].point);
    free(cand);
    free(chosen);
    free(head_points);
    return rc;
}

static int search_run(search *s, budget_result *r)
{
    int L = s->layers, H = s->heads;
    /* the budget: bytes of every head keeping everything */
    size_t full;
    if (point_bytes(s, make_point(s, s->dim, s->dim), &full))
        return -1;
    r->full_bytes = full * (size_t)L * H;
    r->budget_bytes = (size_t)(s->p->budget * (double)r->full_bytes);

    /* the uniform baseline: the largest single keep count within budget */
    r->uniform_keep = 0;
    for (int k = s->dim; k > 0 && !r->uniform_keep; k -= s->p->channel_align) {
        size_t b;
        if (point_bytes(s, make_point(s, k, k), &b))
            return -1;
        if (b * (size_t)L * H <= r->budget_bytes)
            r->uniform_keep = k;
    }

    for (int l = 0; l < L; l++) {
        calib_layer cl;
        int bad = calib_load_layer(s->calib, l, &cl) || prepare_layer(s, l, &cl);
        calib_layer_free(&cl);
        if (bad)
            return -1;
    }

    r->k_mask = malloc((size_t)L * H * s->dim);
    r->v_mask = malloc((size_t)L * H * s->dim);
    if (!r->k_mask || !r->v_mask || search_budget(s, r->budget_bytes, r->uniform_keep, &r->plan, r->k_mask, r->v_mask))
        return -1;
    if (r->uniform_keep) {
        int *points = malloc((size_t)L * H * sizeof *points);
        int bad = !points || alloc_choice(&r->uniform, L, H);
        for (int i = 0; !bad && i < L * H; i++)
            points[i] = make_point(s, r->uniform_keep, r->uniform_keep);
        bad = bad || evaluate(s, points, &r->uniform);
        free(points);
        /* the strict comparison: a plan searched within exactly the uniform's bytes */
        if (bad || search_budget(s, r->uniform.bytes, r->uniform_keep, &r->plan_at_uniform, NULL, NULL))
            return -1;
    }
    r->cache_runs = s->runs;
    return 0;
}

int budget_search(const calib_file *calib, const budget_params *p, budget_result *r)
{
    memset(r, 0, sizeof *r);
    search s;
    int rc = init_search(&s, calib, p);
    r->n_layers = s.layers;
    r->n_kv_heads = s.heads;
    r->head_dim = s.dim;
    r->context = p->context > 0 ? p->context : s.tokens;
    if (rc == 0)
        rc = search_run(&s, r);
    free_search(&s);
    if (rc != 0)
        budget_result_free(r);
    return rc;
}

slimkv_status budget_make_plan(const budget_params *p, const budget_result *r, slimkv_plan **plan)
{
    slimkv_config c;
    slimkv_config_init(&c);
    c.n_kv_heads = r->n_kv_heads;
    c.head_dim = r->head_dim;
    c.k_format = p->k_format;
    c.v_format = p->v_format;
    c.group_size = p->group_size;
    c.residual = p->residual;
    c.n_sink = p->n_sink;
    c.channel_align = p->channel_align;
    return slimkv_plan_create(&c, r->n_layers, r->k_mask, p->prune_v ? r->v_mask : NULL, plan);
}

/* "K/V" counts of a layer's heads, e.g. "16/24 32/32". */
static const char *format_counts(const budget_choice *c, int layer, int heads, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = 0;
    for (int h = 0; h < heads && at < len; h++)
        at += (size_t)snprintf(buf + at, len - at, "%s%d/%d", h ? " " : "", c->k_count[layer * heads + h],
                               c->v_count[layer * heads + h]);
    return buf;
}

void budget_print(FILE *out, const calib_file *calib, const budget_params *p, const budget_result *r)
{
    fprintf(out, "calibration: %d layers, %d q heads / %d KV heads, head_dim %d, %d tokens; error: relative "
                 "||out - ref|| of the last %d decode queries vs f32 dense\n",
            r->n_layers, calib->n_q_heads, r->n_kv_heads, r->head_dim, calib->n_tokens, p->n_queries);
    fprintf(out, "storage: K %s, V %s, G %d, R %d, sinks %d, align %d; bytes at %d tokens; search per %s%s%s\n",
            slimkv_format_name(p->k_format), slimkv_format_name(p->v_format), p->group_size, p->residual,
            p->n_sink, p->channel_align, r->context, p->per_head ? "KV head" : "layer",
            p->prune_v ? ", K and V" : ", K only", p->rope_pairs ? ", RoPE pairs" : "");
    fprintf(out, "budget: %.3f x %zu unpruned bytes = %zu bytes\n\n", p->budget, r->full_bytes, r->budget_bytes);
    /* columns: uniform, the plan at the uniform's bytes, the plan at the budget (written) */
    const budget_choice *cols[3] = {r->uniform.k_count ? &r->uniform : NULL,
                                    r->plan_at_uniform.k_count ? &r->plan_at_uniform : NULL, &r->plan};
    const char *titles[3] = {"uniform K/V", "plan @ uniform bytes", "plan @ budget (written)"};
    int width[3];
    for (int i = 0; i < 3; i++) {
        width[i] = 6 * (i == 0 ? 1 : r->n_kv_heads);
        width[i] = width[i] < (int)strlen(titles[i]) - 8 ? (int)strlen(titles[i]) - 8 : width[i];
    }
    fprintf(out, "%5s  %-8s", "layer", "kind");
    for (int i = 0; i < 3; i++)
        fprintf(out, " | %-*s", width[i] + 8, titles[i]);
    fprintf(out, "\n");
    for (int l = 0; l < r->n_layers; l++) {
        char label[32], counts[512];
        fprintf(out, "%5d  %-8s", l, calib_layer_label(calib, l, label, sizeof label));
        for (int i = 0; i < 3; i++) {
            if (!cols[i])
                fprintf(out, " | %-*s %7s", width[i], "-", "-");
            else
                fprintf(out, " | %-*s %7.4f", width[i], format_counts(cols[i], l, i == 0 ? 1 : r->n_kv_heads,
                                                                      counts, sizeof counts),
                        cols[i]->layer_err[l]);
        }
        fprintf(out, "\n");
    }
    fprintf(out, "\n%-32s %16s %22s %25s\n", "", "uniform", "plan @ uniform bytes", "plan @ budget");
    char cells[3][3][32];
    for (int i = 0; i < 3; i++) {
        if (!cols[i]) {
            for (int j = 0; j < 3; j++)
                strcpy(cells[i][j], "-");
            continue;
        }
        snprintf(cells[i][0], 32, "%zu (%.1f%%)", cols[i]->bytes, 100.0 * cols[i]->bytes / (double)r->full_bytes);
        snprintf(cells[i][1], 32, "%.5f", cols[i]->total_err);
        snprintf(cells[i][2], 32, "%.4f", sqrt(cols[i]->total_err / r->n_layers));
    }
    const char *rows[3] = {"K+V bytes (of unpruned)", "total error (sum of layer err^2)", "RMS layer error"};
    for (int j = 0; j < 3; j++)
        fprintf(out, "%-32s %16s %22s %25s\n", rows[j], cells[0][j], cells[1][j], cells[2][j]);
    fprintf(out, "calibration cache runs: %ld\n", r->cache_runs);
}
