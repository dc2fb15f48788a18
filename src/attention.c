/* Attention driver: walks a KV head's tokens in tiles straight from the
 * compressed storage (no dense copy), with an online softmax; splits long
 * contexts into token ranges merged by log-sum-exp; OpenMP over work items.
 *
 * Work items are (KV head, block of queries, token split). Their number and
 * shape depend only on the cache and the call, never on the thread count,
 * so results are bitwise the same for any number of threads. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"

#define QUERY_BLOCK 8     /* queries served together from one pass over K/V */
#define TARGET_ITEMS 64   /* split tokens until there are about this many items */
/* ... but no split shorter than this: each item has a fixed cost (queries
 * loaded, state cleared, partial written and merged) that a short split
 * does not amortise, and a long split is one stream the prefetcher
 * follows. */
#ifndef MIN_SPLIT_TOKENS
#define MIN_SPLIT_TOKENS 1024
#endif

typedef struct run {
    const slimkv_cache *c;
    const float *q;
    int n_queries, qpos0;
    const float *chunk_k, *chunk_v;
    int n_chunk;
    float *out;
    int n_qblocks, n_split;
    float scale;          /* 1 / sqrt(original head_dim) */
    float *partials;      /* [item][rows][head_dim + 2] when n_split > 1 */
    atomic_int *splits_done; /* [head][query block]: splits finished, when n_split > 1 */
} run;

typedef slimkv_tile_plan tile_plan;

typedef struct scratch {
    float *scores;        /* [rows][G] */
    float *q_full;        /* [rows][D] scaled query */
    /* [rows][dk] scaled query, kept K channels only, in storage order; with
     * K outliers [rows][dk - k_out] then [rows][k_out] (q_outliers) */
    float *q_kept;
    float *q_outliers;
    float *scores_out;    /* [rows][G] the outliers' scores of a tile outside the fused span */
    float *q_spark;       /* [rows][D] SparK: scaled query / sqrt(qnorm), for restored channels */
    float *acc_body;      /* [rows][dv] V accumulated from the body, kept V channels */
    float *acc;           /* [rows][D] */
    float *m, *l;         /* [rows] running max and sum of exp */
    /* The fused kernel's own softmax state (merged into the above after the
     * item): it rescales only what it accumulated itself. */
    float *acc_fused;     /* [rows][dv] */
    float *m_fused, *l_fused;
} scratch;

/* Rows of the largest query block of the call: scratch is sized for the
 * call (a decode step has one query), not for the largest block. */
static int max_rows(const run *r)
{
    return (r->n_queries < QUERY_BLOCK ? r->n_queries : QUERY_BLOCK) * r->c->q_per_kv;
}

static tile_plan plan_tiles(const run *r, const slimkv_head *h)
{
    const slimkv_config *cfg = &r->c->cfg;
    return slimkv_plan_tiles(r->c->n_tokens, cfg->n_sink, cfg->group_size, slimkv_v_body_tokens(cfg, r->c->n_tokens),
                             h->dk, r->n_chunk);
}

static int plan_total(const tile_plan *p)
{
    return p->n_sink_tiles + p->n_window_tiles + p->n_chunk_tiles;
}

/* Where one tile's K and V come from. */
typedef struct tile_src {
    int p0, n;                    /* positions p0 .. p0+n-1 */
    const uint8_t *k_group;       /* compressed K group, or NULL for rows */
    const void *k_rows;
    size_t k_stride;
    slimkv_format k_rows_fmt;
    const uint8_t *v_block;       /* compressed V block for the first n_v_body tokens */
    int n_v_body;
    const void *v_rows;           /* rows for the remaining tokens */
    size_t v_stride;
    slimkv_format v_rows_fmt;
} tile_src;

static tile_src locate_tile(const run *r, const slimkv_head *h, int head, const tile_plan *p, int index)
{
    const slimkv_cache *c = r->c;
    const slimkv_config *cfg = &c->cfg;
    int g = cfg->group_size, s = cfg->n_sink, n = c->n_tokens, dim = cfg->head_dim;
    tile_src t;
    memset(&t, 0, sizeof t);
    if (index < p->n_sink_tiles) {
        int sinks = n < s ? n : s;
        t.p0 = index * g;
        t.n = sinks - t.p0 < g ? sinks - t.p0 : g;
        t.k_rows_fmt = c->k_row_fmt;
        t.v_rows_fmt = c->v_row_fmt;
        t.k_rows = h->sink_k + (size_t)t.p0 * dim * slimkv_row_elem_bytes(c->k_row_fmt);
        t.v_rows = h->sink_v + (size_t)t.p0 * dim * slimkv_row_elem_bytes(c->v_row_fmt);
        t.k_stride = t.v_stride = (size_t)dim;
        return t;
    }
    index -= p->n_sink_tiles;
    if (index < p->n_window_tiles) {
        int span = p->first_window_tile + index; /* G-aligned span after the sinks */
        int start = s + span * g, end = start + g < n ? start + g : n;
        t.p0 = start > p->window_start ? start : p->window_start;
        t.n = end - t.p0;
        t.k_rows_fmt = c->k_row_fmt;
        t.v_rows_fmt = c->v_row_fmt;
        t.k_stride = t.v_stride = (size_t)dim;
        if (h->dk > 0 && t.p0 < s + slimkv_k_body_tokens(cfg, n))
            t.k_group = slimkv_k_group_ptr(h, span);
        else
            t.k_rows = slimkv_ring_row(c, h->ring_k, c->k_row_fmt, t.p0);
        int v_body_end = h->dk > 0 ? s + slimkv_v_body_tokens(cfg, n) : 0;
        t.n_v_body = v_body_end - t.p0;
        t.n_v_body = t.n_v_body < 0 ? 0 : t.n_v_body > t.n ? t.n : t.n_v_body;
        if (t.n_v_body > 0 && h->dv > 0)
            t.v_block = slimkv_v_block_ptr(h, span);
        if (t.n_v_body < t.n)
            t.v_rows = slimkv_ring_row(c, h->ring_v, c->v_row_fmt, t.p0 + t.n_v_body);
        return t;
    }
    index -= p->n_window_tiles;
    size_t stride = (size_t)cfg->n_kv_heads * dim;
    int first = index * g;
    t.p0 = n + first;
    t.n = r->n_chunk - first < g ? r->n_chunk - first : g;
    t.k_rows_fmt = t.v_rows_fmt = SLIMKV_F32;
    t.k_rows = r->chunk_k + (size_t)first * stride + (size_t)head * dim;
    t.v_rows = r->chunk_v + (size_t)first * stride + (size_t)head * dim;
    t.k_stride = t.v_stride = stride;
    return t;
}

static void score_tile(const run *r, const slimkv_head *h, const tile_src *t, const scratch *sc, int rows)
{
    const slimkv_kernels *k = r->c->kern;
    const slimkv_config *cfg = &r->c->cfg;
    int g = cfg->group_size, dim = cfg->head_dim;
    if (t->k_group && slimkv_k_is_spark(r->c))
        k->score_spark[cfg->k_format](t->k_group, dim, r->c->spark_keep, g, t->n, sc->q_full, sc->q_spark, rows,
                                      sc->scores, g);
    else if (t->k_group && h->k_out > 0) {
        k->score_k[cfg->k_format](t->k_group, h->dk - h->k_out, g, t->n, sc->q_kept, rows, sc->scores, g);
        k->score_k[SLIMKV_Q8](t->k_group + h->k_out_offset, h->k_out, g, t->n, sc->q_outliers, rows, sc->scores_out,
                              g);
        for (int row = 0; row < rows; row++)
            for (int i = 0; i < t->n; i++)
                sc->scores[(size_t)row * g + i] += sc->scores_out[(size_t)row * g + i];
    } else if (t->k_group)
        k->score_k[cfg->k_format](t->k_group, h->dk, g, t->n, sc->q_kept, rows, sc->scores, g);
    else if (t->k_rows_fmt == SLIMKV_F32)
        k->score_rows_f32(t->k_rows, t->k_stride, t->n, dim, sc->q_full, rows, sc->scores, g);
    else
        k->score_rows_f16(t->k_rows, t->k_stride, t->n, dim, sc->q_full, rows, sc->scores, g);
}

static void accumulate_tile(const run *r, const slimkv_head *h, const tile_src *t, const scratch *sc, int rows)
{
    const slimkv_kernels *k = r->c->kern;
    const slimkv_config *cfg = &r->c->cfg;
    int g = cfg->group_size, dim = cfg->head_dim, nb = t->n_v_body;
    if (t->v_block)
        k->accum_v[cfg->v_format](t->v_block, h->dv, g, nb, sc->scores, g, rows, sc->acc_body);
    if (nb < t->n) {
        if (t->v_rows_fmt == SLIMKV_F32)
            k->accum_rows_f32(t->v_rows, t->v_stride, t->n - nb, dim, sc->scores + nb, g, rows, sc->acc);
        else
            k->accum_rows_f16(t->v_rows, t->v_stride, t->n - nb, dim, sc->scores + nb, g, rows, sc->acc);
    }
}

static void scale_row(float *x, int n, float a)
{
    for (int i = 0; i < n; i++)
        x[i] *= a;
}

/* Largest of x[0..n), -inf for n = 0; eight lanes so that it vectorizes. */
static float max_of(const float *x, int n)
{
    float lane[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
    for (; i < n; i++)
        lane[0] = x[i] > lane[0] ? x[i] : lane[0];
    float m = lane[0];
    for (int j = 1; j < 8; j++)
        m = lane[j] > m ? lane[j] : m;
    return m;
}

/* The running max only moves when a score exceeds it by this much (in
 * log space): weights stay below e^8 and the accumulators are rescaled
 * rarely instead of at almost every tile. */
#define MAX_SLACK 8.0f

/* Online softmax over one tile: masks future positions, turns scores into
 * weights relative to the running max, rescales what was accumulated. */
static void softmax_tile(const run *r, const slimkv_head *h, const tile_src *t, const scratch *sc, int qfirst,
                         int rows)
{
    const slimkv_cache *c = r->c;
    int g = c->cfg.group_size, dim = c->cfg.head_dim, gs = c->q_per_kv;
    for (int row = 0; row < rows; row++) {
        float *s = sc->scores + (size_t)row * g;
        int visible = r->qpos0 + qfirst + row / gs - t->p0 + 1; /* causal limit inside the tile */
        visible = visible < 0 ? 0 : visible > t->n ? t->n : visible;
        for (int i = visible; i < t->n; i++)
            s[i] = -INFINITY;
        float mx = max_of(s, visible), m = sc->m[row];
        if (mx > m + MAX_SLACK || (m == -INFINITY && mx > m)) {
            float alpha = expf(m - mx); /* 0 when nothing was accumulated yet */
            sc->l[row] *= alpha;
            scale_row(sc->acc + (size_t)row * dim, dim, alpha);
            scale_row(sc->acc_body + (size_t)row * h->dv, h->dv, alpha);
            sc->m[row] = m = mx;
        }
        if (m == -INFINITY) { /* nothing visible yet: weights are zero */
            memset(s, 0, (size_t)t->n * sizeof *s);
            continue;
        }
        sc->l[row] += c->kern->exp_sum(s, t->n, m);
    }
}

/* Loads the queries of one block, scaled, for all q heads of a KV head;
 * sets sc->q_outliers (after the block's other kept channels). */
static void load_queries(const run *r, const slimkv_head *h, int head, int qfirst, int nqry, scratch *sc)
{
    const slimkv_config *cfg = &r->c->cfg;
    int dim = cfg->head_dim, gs = r->c->q_per_kv, others = h->dk - h->k_out;
    const int32_t *chan = slimkv_k_stored_channels(h);
    sc->q_outliers = sc->q_kept + (size_t)nqry * gs * others;
    for (int j = 0; j < nqry; j++)
        for (int g = 0; g < gs; g++) {
            int row = j * gs + g;
            const float *src = r->q + ((size_t)(qfirst + j) * cfg->n_q_heads + (size_t)head * gs + g) * dim;
            float *qf = sc->q_full + (size_t)row * dim, *qk = sc->q_kept + (size_t)row * others;
            float *qo = sc->q_outliers + (size_t)row * h->k_out;
            for (int c = 0; c < dim; c++)
                qf[c] = src[c] * r->scale;
            for (int c = 0; c < others; c++)
                qk[c] = qf[chan[c]];
            for (int c = 0; c < h->k_out; c++)
                qo[c] = qf[chan[others + c]];
            if (h->qnorm_rsqrt)
                for (int c = 0; c < dim; c++)
                    sc->q_spark[(size_t)row * dim + c] = qf[c] * h->qnorm_rsqrt[c];
        }
}

/* The fused body of the cache's pair, NULL where the table has none. */
static slimkv_attend_groups_fn fused_kernel(const slimkv_cache *c)
{
    const slimkv_config *cfg = &c->cfg;
    return slimkv_k_is_spark(c) ? c->kern->attend_spark_groups[cfg->k_format][cfg->v_format]
                                : c->kern->attend_groups[cfg->k_format][cfg->v_format];
}

/* Tiles [lo, hi) of the plan that are whole compressed groups, K and V,
 * seen by every row of the block (rows from position first_pos on): the
 * fused kernel serves them. Empty when the pair has no fused body. */
static void fused_tiles(const run *r, const slimkv_head *h, const tile_plan *p, int first_pos, int *lo, int *hi)
{
    const slimkv_cache *c = r->c;
    const slimkv_config *cfg = &c->cfg;
    int g = cfg->group_size;
    *lo = *hi = p->n_sink_tiles;
    if (h->dk == 0 || h->dv == 0 || !fused_kernel(c))
        return;
    int k_groups = slimkv_k_body_tokens(cfg, c->n_tokens) / g, v_groups = slimkv_v_body_tokens(cfg, c->n_tokens) / g;
    int visible = first_pos - cfg->n_sink + 1; /* body positions every row sees */
    int end = k_groups < v_groups ? k_groups : v_groups;
    end = visible < 0 ? 0 : end < visible / g ? end : visible / g;
    if (end > p->first_window_tile)
        *hi = *lo + (end - p->first_window_tile);
}

static void run_fused(const run *r, const slimkv_head *h, int first_span, int count, const scratch *sc, int rows)
{
    const slimkv_config *cfg = &r->c->cfg;
    int spark = slimkv_k_is_spark(r->c);
    slimkv_group_span span = {h->k_pages, h->v_pages, h->k_group_bytes, h->v_block_bytes, SLIMKV_PAGE_GROUPS,
                              first_span, count, h->dk - h->k_out, h->dv, cfg->group_size, cfg->k_format,
                              cfg->v_format, cfg->head_dim, r->c->spark_keep, spark ? sc->q_spark : NULL,
                              h->k_out, h->k_out_offset, sc->q_outliers};
    fused_kernel(r->c)(&span, spark ? sc->q_full : sc->q_kept, rows, sc->m_fused, sc->l_fused, sc->acc_fused);
}

/* Log-sum-exp merge of the fused kernel's state into the item's. */
static void merge_fused(const slimkv_head *h, const scratch *sc, int rows, int dim)
{
    for (int row = 0; row < rows; row++) {
        float mf = sc->m_fused[row], m = sc->m[row];
        if (mf == -INFINITY)
            continue;
        float top = m > mf ? m : mf, a = expf(m - top), b = expf(mf - top);
        float *acc = sc->acc + (size_t)row * dim, *body = sc->acc_body + (size_t)row * h->dv;
        const float *fused = sc->acc_fused + (size_t)row * h->dv;
        if (a != 1.0f)
            scale_row(acc, dim, a);
        for (int j = 0; j < h->dv; j++)
            body[j] = body[j] * a + fused[j] * b;
        sc->l[row] = sc->l[row] * a + sc->l_fused[row] * b;
        sc->m[row] = top;
    }
}

static void run_item(const run *r, int item, scratch *sc)
{
    const slimkv_cache *c = r->c;
    int dim = c->cfg.head_dim, gs = c->q_per_kv;
    int split = item % r->n_split, qblock = (item / r->n_split) % r->n_qblocks;
    int head = item / r->n_split / r->n_qblocks;
    const slimkv_head *h = &c->heads[head];
    int qfirst = qblock * QUERY_BLOCK;
    int nqry = r->n_queries - qfirst < QUERY_BLOCK ? r->n_queries - qfirst : QUERY_BLOCK;
    int rows = nqry * gs;
    int last_pos = r->qpos0 + qfirst + nqry - 1;

    load_queries(r, h, head, qfirst, nqry, sc);
    memset(sc->acc, 0, (size_t)rows * dim * sizeof(float));
    memset(sc->acc_body, 0, (size_t)rows * dim * sizeof(float));
    for (int i = 0; i < rows; i++) {
        sc->m[i] = sc->m_fused[i] = -INFINITY;
        sc->l[i] = sc->l_fused[i] = 0.0f;
    }
    tile_plan plan = plan_tiles(r, h);
    int total = plan_total(&plan), per_split = (total + r->n_split - 1) / r->n_split;
    int t_begin = split * per_split, t_end = t_begin + per_split < total ? t_begin + per_split : total;
    int fused_lo, fused_hi, fused = 0;
    fused_tiles(r, h, &plan, r->qpos0 + qfirst, &fused_lo, &fused_hi);
    for (int ti = t_begin; ti < t_end; ti++) {
        if (ti >= fused_lo && ti < fused_hi) {
            int stop = t_end < fused_hi ? t_end : fused_hi;
            if (!fused)
                memset(sc->acc_fused, 0, (size_t)rows * h->dv * sizeof(float));
            run_fused(r, h, plan.first_window_tile + ti - plan.n_sink_tiles, stop - ti, sc, rows);
            fused = 1;
            ti = stop - 1;
            continue;
        }
        tile_src t = locate_tile(r, h, head, &plan, ti);
        if (t.p0 > last_pos)
            break; /* tiles are in position order: the rest is in every query's future */
        score_tile(r, h, &t, sc, rows);
        softmax_tile(r, h, &t, sc, qfirst, rows);
        accumulate_tile(r, h, &t, sc, rows);
    }
    if (fused)
        merge_fused(h, sc, rows, dim);
    for (int row = 0; row < rows; row++)
        for (int j = 0; j < h->dv; j++)
            sc->acc[(size_t)row * dim + h->v_chan[j]] += sc->acc_body[(size_t)row * h->dv + j];
}

static float *item_partial(const run *r, int item)
{
    size_t per_item = (size_t)max_rows(r) * (r->c->cfg.head_dim + 2);
    return r->partials + (size_t)item * per_item;
}

static void store_output(const run *r, int head, int qfirst, int row, const float *acc, float inv_l)
{
    const slimkv_config *cfg = &r->c->cfg;
    int dim = cfg->head_dim, gs = r->c->q_per_kv;
    float *dst = r->out + ((size_t)(qfirst + row / gs) * cfg->n_q_heads + (size_t)head * gs + row % gs) * dim;
    for (int c = 0; c < dim; c++)
        dst[c] = acc[c] * inv_l;
}

static void finish_item(const run *r, int item, const scratch *sc)
{
    int dim = r->c->cfg.head_dim, gs = r->c->q_per_kv;
    int qblock = (item / r->n_split) % r->n_qblocks, head = item / r->n_split / r->n_qblocks;
    int qfirst = qblock * QUERY_BLOCK;
    int nqry = r->n_queries - qfirst < QUERY_BLOCK ? r->n_queries - qfirst : QUERY_BLOCK;
    int rows = nqry * gs;
    if (r->n_split == 1) {
        for (int row = 0; row < rows; row++) /* l == 0: nothing visible, output zeros */
            store_output(r, head, qfirst, row, sc->acc + (size_t)row * dim,
                         sc->l[row] > 0.0f ? 1.0f / sc->l[row] : 0.0f);
        return;
    }
    float *p = item_partial(r, item);
    for (int row = 0; row < rows; row++) {
        float *dst = p + (size_t)row * (dim + 2);
        dst[0] = sc->m[row];
        dst[1] = sc->l[row];
        memcpy(dst + 2, sc->acc + (size_t)row * dim, (size_t)dim * sizeof(float));
    }
}

/* Log-sum-exp merge of the token splits of one (head, query block). */
static void merge_splits(const run *r, int head_qblock, float *acc)
{
    int dim = r->c->cfg.head_dim, gs = r->c->q_per_kv;
    int qblock = head_qblock % r->n_qblocks, head = head_qblock / r->n_qblocks;
    int qfirst = qblock * QUERY_BLOCK;
    int nqry = r->n_queries - qfirst < QUERY_BLOCK ? r->n_queries - qfirst : QUERY_BLOCK;
    int first_item = head_qblock * r->n_split;
    for (int row = 0; row < nqry * gs; row++) {
        float m = -INFINITY, l = 0.0f;
        for (int s = 0; s < r->n_split; s++) {
            float ms = item_partial(r, first_item + s)[(size_t)row * (dim + 2)];
            m = ms > m ? ms : m;
        }
        memset(acc, 0, (size_t)dim * sizeof(float));
        if (m != -INFINITY) {
            for (int s = 0; s < r->n_split; s++) {
                const float *p = item_partial(r, first_item + s) + (size_t)row * (dim + 2);
                if (p[0] == -INFINITY)
                    continue;
                float w = expf(p[0] - m);
                l += p[1] * w;
                for (int c = 0; c < dim; c++)
                    acc[c] += p[2 + c] * w;
            }
        }
        store_output(r, head, qfirst, row, acc, l > 0.0f ? 1.0f / l : 0.0f);
    }
}

/* a * b floats in bytes, or 0 when that does not fit a size_t: with 32-bit
 * size_t the scratch of the widest configs (many query heads per KV head,
 * head_dim 1024) times the thread count, or the split partials, can exceed
 * it, and a wrapped size would be a small buffer overrun. */
static size_t float_bytes(size_t a, size_t b)
{
    size_t n;
    return __builtin_mul_overflow(a, b, &n) || __builtin_mul_overflow(n, sizeof(float), &n) ? 0 : n;
}

slimkv_status slimkv_attention_run(const slimkv_cache *c, const float *q, int n_queries, int qpos0,
                                   const float *chunk_k, const float *chunk_v, int n_chunk, float *out)
{
    const slimkv_config *cfg = &c->cfg;
    run r = {0};
    r.c = c;
    r.q = q;
    r.n_queries = n_queries;
    r.qpos0 = qpos0;
    r.chunk_k = chunk_k;
    r.chunk_v = chunk_v;
    r.n_chunk = chunk_k ? n_chunk : 0;
    r.out = out;
    r.scale = 1.0f / sqrtf((float)cfg->head_dim);
    r.n_qblocks = (n_queries + QUERY_BLOCK - 1) / QUERY_BLOCK;
    int head_qblocks = cfg->n_kv_heads * r.n_qblocks;
    r.n_split = head_qblocks >= TARGET_ITEMS ? 1 : TARGET_ITEMS / head_qblocks;
    int tokens = c->n_tokens + r.n_chunk, max_splits = tokens / MIN_SPLIT_TOKENS;
    max_splits = max_splits < 1 ? 1 : max_splits;
    r.n_split = r.n_split < max_splits ? r.n_split : max_splits;
    int items = head_qblocks * r.n_split;

    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    size_t rows = (size_t)max_rows(&r), dim = (size_t)cfg->head_dim;
    size_t per_thread = 2 * rows * cfg->group_size + 6 * rows * dim + 4 * rows;
    size_t work_bytes = float_bytes((size_t)threads, per_thread);
    float *work = work_bytes ? slimkv_malloc(work_bytes) : NULL;
    if (r.n_split > 1) {
        size_t partial_bytes = float_bytes((size_t)items, rows * (dim + 2));
        r.partials = partial_bytes ? slimkv_malloc(partial_bytes) : NULL;
        r.splits_done = slimkv_malloc((size_t)head_qblocks * sizeof *r.splits_done);
    }
    if (!work || (r.n_split > 1 && (!r.partials || !r.splits_done))) {
        slimkv_free(work);
        slimkv_free(r.partials);
        slimkv_free(r.splits_done);
        return SLIMKV_ERR_NOMEM;
    }
    for (int hq = 0; r.splits_done && hq < head_qblocks; hq++)
        atomic_init(&r.splits_done[hq], 0);

    /* Small calls run on the calling thread: waking a team costs more than
     * it saves, and a busy machine makes the wait for it unbounded. */
    /* double: the product overflows a 32-bit long (and can a 64-bit one) */
    double flops = (double)tokens * cfg->n_kv_heads * n_queries * cfg->head_dim;
#pragma omp parallel if (flops >= 1048576.0)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *base = work + (size_t)tid * per_thread;
        scratch sc;
        sc.scores = base;
        sc.q_full = sc.scores + rows * cfg->group_size;
        sc.q_kept = sc.q_full + rows * dim;
        sc.q_spark = sc.q_kept + rows * dim;
        sc.acc_body = sc.q_spark + rows * dim;
        sc.acc = sc.acc_body + rows * dim;
        sc.m = sc.acc + rows * dim;
        sc.l = sc.m + rows;
        sc.acc_fused = sc.l + rows;
        sc.m_fused = sc.acc_fused + rows * dim;
        sc.l_fused = sc.m_fused + rows;
        sc.scores_out = sc.l_fused + rows;
        sc.q_outliers = NULL;
        /* Items are taken dynamically, and the thread that finishes the last
         * split of a (head, query block) merges it: no barrier between the
         * two phases, so a thread the OS has descheduled (a busy machine)
         * holds up only the item it has, not the others' merges. The merge
         * reads the splits in a fixed order, whoever runs it. */
#pragma omp for schedule(dynamic, 1) nowait
        for (int item = 0; item < items; item++) {
            run_item(&r, item, &sc);
            finish_item(&r, item, &sc);
            /* seq_cst: the merging thread sees every split's partial */
            if (r.n_split > 1 && atomic_fetch_add(&r.splits_done[item / r.n_split], 1) + 1 == r.n_split)
                merge_splits(&r, item / r.n_split, sc.acc);
        }
    }
    slimkv_free(work);
    slimkv_free(r.partials);
    slimkv_free(r.splits_done);
    return SLIMKV_OK;
}
