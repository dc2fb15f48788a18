/* Token eviction on the CPU backend's storage: SnapKV at prefill, H2O at
 * decode (slimkv.h, README "Token eviction").
 *
 * Three steps, the same for both policies:
 *   1. scores: the attention probabilities of some queries over the held
 *      tokens (and a prefill chunk's), from a separate pass with the score
 *      kernels (the fused decode path does not expose probabilities and
 *      stays untouched);
 *   2. choice: per KV head, which tokens stay (SnapKV: top budget of the
 *      max-pooled scores; H2O: all but the lowest accumulated scores);
 *      every head keeps the same count, its own tokens, in position order;
 *   3. rebuild: each head's storage is laid out as if exactly the kept
 *      tokens had been appended in order (sinks, compressed body, window),
 *      from the old storage and the chunk's full-precision rows.
 * Every allocation of a call comes first; the cache changes only after all
 * of them succeeded, so SLIMKV_ERR_NOMEM leaves it as it was.
 *
 * What the rebuild copies and what it quantizes again (per head):
 *   - sinks never move (the first S tokens are always kept);
 *   - leading K groups and V slots whose tokens do not change stay as they
 *     are, and whole pages of them are not even copied;
 *   - a K group whose G tokens are one old group, in order, is copied byte
 *     for byte; any other K group is packed again from its tokens' values:
 *     a token from the compressed body is decoded (kept channels as stored,
 *     q8/q4/q2 as code * scale + min) and, for q8/q4/q2, quantized again
 *     with the new group's per-channel min/max (a second quantization);
 *     a token from the window or the chunk is packed from its row, as an
 *     append would. SparK records are per token: a body token's record is
 *     copied as it is;
 *   - a V token of the body is copied slot to slot (its codes and its own
 *     scale/min): V is quantized per token, so nothing is re-quantized;
 *   - a window row (K or V) comes from the old window or the chunk as it
 *     is; a token that was compressed and now falls into the window is
 *     decoded into a row (pruned K channels 0, SparK's pruned channels as
 *     the score restores them, pruned V channels 0), rounded to the
 *     window's format: once compressed, a token keeps its compressed value.
 * Streaming heads (no K channel) keep the sinks and the newest tokens. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend.h"

struct slimkv_evict_state {
    int seen;     /* tokens stored since creation (evicted ones included) */
    int cap;      /* entries allocated per head in pos and score */
    int32_t *pos; /* [heads][cap]: each held token's position, ascending per head */
    float *score; /* [heads][cap]: H2O's accumulated attention; NULL for SnapKV */
};

/* The tracking arrays grow (and shrink at a rebuild) in steps of this many
 * tokens, so that slimkv_cache_bytes follows the tokens held. */
#define TRACK_STEP 256
/* Query rows (query x query head) scored together in one pass over a head. */
#define SCORE_ROWS 16

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

static int is_h2o(const slimkv_cache *c)
{
    return c->cfg.eviction == SLIMKV_EVICT_H2O;
}

/* ---- tracking: positions and scores of the held tokens ---- */

typedef struct tracking {
    int cap;
    int32_t *pos;
    float *score;
} tracking;

static int track_cap_for(const slimkv_cache *c, int n)
{
    if (n <= 0)
        return 0;
    long cap = ((long)n + TRACK_STEP - 1) / TRACK_STEP * TRACK_STEP;
    return cap > c->cfg.capacity ? c->cfg.capacity : (int)cap;
}

static void tracking_free(tracking *t)
{
    slimkv_free(t->pos);
    slimkv_free(t->score);
    t->pos = NULL;
    t->score = NULL;
}

/* Arrays for n tokens per head (none for n = 0), all or nothing. */
static slimkv_status tracking_alloc(const slimkv_cache *c, int n, tracking *t)
{
    t->cap = track_cap_for(c, n);
    t->pos = NULL;
    t->score = NULL;
    if (t->cap == 0)
        return SLIMKV_OK;
    size_t count = (size_t)c->cfg.n_kv_heads * (size_t)t->cap;
    t->pos = slimkv_malloc(count * sizeof *t->pos);
    if (is_h2o(c))
        t->score = slimkv_malloc(count * sizeof *t->score);
    if (!t->pos || (is_h2o(c) && !t->score)) {
        tracking_free(t);
        return SLIMKV_ERR_NOMEM;
    }
    return SLIMKV_OK;
}

static void tracking_install(slimkv_cache *c, tracking *t)
{
    slimkv_evict_state *e = c->evict;
    slimkv_free(e->pos);
    slimkv_free(e->score);
    e->cap = t->cap;
    e->pos = t->pos;
    e->score = t->score;
}

slimkv_status slimkv_evict_create(slimkv_cache *c)
{
    if (c->cfg.eviction == SLIMKV_EVICT_NONE)
        return SLIMKV_OK;
    c->evict = slimkv_calloc(1, sizeof *c->evict);
    return c->evict ? SLIMKV_OK : SLIMKV_ERR_NOMEM;
}

void slimkv_evict_destroy(slimkv_cache *c)
{
    if (!c->evict)
        return;
    slimkv_free(c->evict->pos);
    slimkv_free(c->evict->score);
    slimkv_free(c->evict);
    c->evict = NULL;
}

slimkv_status slimkv_evict_copy(slimkv_cache *dst, const slimkv_cache *src)
{
    const slimkv_evict_state *e = src->evict;
    if (!e || !dst->evict)
        return SLIMKV_OK;
    tracking t = {0, NULL, NULL};
    slimkv_status st = tracking_alloc(src, e->cap, &t);
    if (st != SLIMKV_OK)
        return st;
    size_t count = (size_t)src->cfg.n_kv_heads * (size_t)t.cap;
    if (t.pos)
        memcpy(t.pos, e->pos, count * sizeof *t.pos);
    if (t.score)
        memcpy(t.score, e->score, count * sizeof *t.score);
    tracking_install(dst, &t);
    dst->evict->seen = e->seen;
    return SLIMKV_OK;
}

slimkv_status slimkv_evict_truncate_check(const slimkv_cache *c, int n_tokens)
{
    const slimkv_evict_state *e = c->evict;
    if (!e)
        return SLIMKV_OK;
    int held = c->n_tokens;
    for (int h = 0; h < c->cfg.n_kv_heads; h++)
        for (int j = n_tokens; j < held; j++)
            if (e->pos[(size_t)h * e->cap + j] != e->seen - (held - j))
                return SLIMKV_ERR_STATE;
    return SLIMKV_OK;
}

void slimkv_evict_truncate(slimkv_cache *c, int n_old, int n_tokens)
{
    if (c->evict)
        c->evict->seen -= n_old - n_tokens;
}

size_t slimkv_evict_state_bytes(const slimkv_cache *c)
{
    const slimkv_evict_state *e = c->evict;
    if (!e)
        return 0;
    size_t per_token = sizeof(int32_t) + (e->score ? sizeof(float) : 0);
    return (size_t)c->cfg.n_kv_heads * (size_t)e->cap * per_token;
}

/* Tokens n_old .. n_new - 1 were just stored: their positions follow the
 * tokens seen, their scores start at 0. */
static void note_new_tokens(slimkv_cache *c, int n_old, int n_new)
{
    slimkv_evict_state *e = c->evict;
    for (int h = 0; h < c->cfg.n_kv_heads; h++)
        for (int j = n_old; j < n_new; j++) {
            e->pos[(size_t)h * e->cap + j] = e->seen + (j - n_old);
            if (e->score)
                e->score[(size_t)h * e->cap + j] = 0.0f;
        }
}

slimkv_status slimkv_evict_append(slimkv_cache *c, const float *k, const float *v, int n_tokens)
{
    slimkv_evict_state *e = c->evict;
    if (!e)
        return c->backend->append(c, k, v, n_tokens);
    if (n_tokens > INT_MAX - e->seen)
        return SLIMKV_ERR_CAPACITY; /* positions are ints */
    int n_old = c->n_tokens, n_new = n_old + n_tokens;
    tracking grown = {0, NULL, NULL};
    if (n_new > e->cap) {
        slimkv_status st = tracking_alloc(c, n_new, &grown);
        if (st != SLIMKV_OK)
            return st;
        for (int h = 0; n_old > 0 && h < c->cfg.n_kv_heads; h++) { /* nothing (and NULL arrays) when empty */
            memcpy(grown.pos + (size_t)h * grown.cap, e->pos + (size_t)h * e->cap, (size_t)n_old * sizeof *e->pos);
            if (e->score)
                memcpy(grown.score + (size_t)h * grown.cap, e->score + (size_t)h * e->cap,
                       (size_t)n_old * sizeof *e->score);
        }
    }
    slimkv_status st = c->backend->append(c, k, v, n_tokens);
    if (st != SLIMKV_OK) {
        tracking_free(&grown);
        return st;
    }
    if (grown.pos)
        tracking_install(c, &grown);
    note_new_tokens(c, n_old, n_new);
    e->seen += n_tokens;
    return SLIMKV_OK;
}

/* ---- decoding what the body stores: simd/scalar.c's slimkv_unpack_*_token ---- */

static void evict_decode_k_token(const slimkv_cache *c, const slimkv_head *h, const uint8_t *group, int t,
                                 float *vals)
{
    slimkv_unpack_k_token(c->cfg.k_format, group, h->dk, c->cfg.group_size, t, vals);
}

static void evict_decode_spark_row(const slimkv_cache *c, const slimkv_head *h, const uint8_t *group, int t,
                                   float *row)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_unpack_spark_token(cfg->k_format, group, h->qnorm_rsqrt, cfg->head_dim, c->spark_keep, cfg->group_size,
                              t, row);
}

static void evict_decode_v_token(const slimkv_cache *c, const slimkv_head *h, const uint8_t *block, int s,
                                 float *vals)
{
    slimkv_unpack_v_token(c->cfg.v_format, block, h->dv, c->cfg.group_size, s, vals);
}

/* Copies one V token from slot `from_slot` of one block to `to_slot` of
 * another, bit for bit (codes and the token's own scales and mins). */
static void evict_copy_v_slot(const slimkv_cache *c, const slimkv_head *h, const uint8_t *from, int from_slot,
                              uint8_t *to, int to_slot)
{
    slimkv_format fmt = c->cfg.v_format;
    int g = c->cfg.group_size, dv = h->dv;
    if (!slimkv_is_quantized(fmt)) {
        size_t elem = fmt == SLIMKV_F32 ? 4 : 2;
        memcpy(to + (size_t)to_slot * dv * elem, from + (size_t)from_slot * dv * elem, (size_t)dv * elem);
        return;
    }
    int bits = slimkv_format_bits(fmt), nvg = (dv + g - 1) / g;
    for (int j = 0; j < dv; j++)
        slimkv_code_put(to, slimkv_v_code_place(bits, dv, g, to_slot, j),
                        slimkv_code_get(from, slimkv_v_code_place(bits, dv, g, from_slot, j)));
    size_t params = slimkv_v_params_offset(fmt, dv, g), pairs = (size_t)nvg * 2; /* bytes of nvg fp16 */
    memcpy(to + params + (size_t)to_slot * pairs, from + params + (size_t)from_slot * pairs, pairs);
    size_t mins = params + 2 * (size_t)g * nvg;
    memcpy(to + mins + (size_t)to_slot * pairs, from + mins + (size_t)from_slot * pairs, pairs);
}

/* ---- where a source token's K and V are ---- */

/* A source index: < n_old a token the cache holds, else chunk token
 * index - n_old (rows of the prefill's k/v, [token][kv head][D]). */
typedef struct sources {
    int n_old;
    const float *chunk_k, *chunk_v;
} sources;

static size_t row_bytes_of(const slimkv_cache *c, slimkv_format row_fmt)
{
    return (size_t)c->cfg.head_dim * slimkv_row_elem_bytes(row_fmt);
}

static void row_to_float(const slimkv_cache *c, slimkv_format row_fmt, const uint8_t *row, float *dst)
{
    if (row_fmt == SLIMKV_F32)
        memcpy(dst, row, (size_t)c->cfg.head_dim * sizeof(float));
    else
        c->kern->f16_to_f32((const uint16_t *)row, dst, (size_t)c->cfg.head_dim);
}

/* Rows written from decoded values are clamped to the f16 range: a
 * dequantized value may round past 65504 (the caller's were checked). */
static void evict_store_row(const slimkv_cache *c, slimkv_format row_fmt, float *src, uint8_t *dst)
{
    int dim = c->cfg.head_dim;
    if (row_fmt == SLIMKV_F32) {
        memcpy(dst, src, (size_t)dim * sizeof(float));
        return;
    }
    for (int i = 0; i < dim; i++)
        src[i] = src[i] > 65504.0f ? 65504.0f : src[i] < -65504.0f ? -65504.0f : src[i];
    c->kern->f32_to_f16(src, (uint16_t *)dst, (size_t)dim);
}

static int k_body_end(const slimkv_cache *c, const slimkv_head *h, int n)
{
    return h->dk > 0 ? c->cfg.n_sink + slimkv_k_body_tokens(&c->cfg, n) : c->cfg.n_sink;
}

static int v_body_end(const slimkv_cache *c, const slimkv_head *h, int n)
{
    return h->dk > 0 ? c->cfg.n_sink + slimkv_v_body_tokens(&c->cfg, n) : c->cfg.n_sink;
}

/* K of source o as a full row: what attention scores for it. */
static void source_k_row(const slimkv_cache *c, int head, const sources *src, int o, float *row)
{
    const slimkv_config *cfg = &c->cfg;
    const slimkv_head *h = &c->heads[head];
    int s = cfg->n_sink, g = cfg->group_size, dim = cfg->head_dim;
    if (o >= src->n_old) {
        memcpy(row, src->chunk_k + ((size_t)(o - src->n_old) * cfg->n_kv_heads + head) * dim, (size_t)dim * sizeof *row);
    } else if (o < s) {
        row_to_float(c, c->k_row_fmt, h->sink_k + (size_t)o * row_bytes_of(c, c->k_row_fmt), row);
    } else if (o < k_body_end(c, h, src->n_old)) {
        const uint8_t *group = slimkv_k_group_ptr(h, (o - s) / g);
        if (slimkv_k_is_spark(c)) {
            evict_decode_spark_row(c, h, group, (o - s) % g, row);
            return;
        }
        float vals[SLIMKV_MAX_HEAD_DIM];
        evict_decode_k_token(c, h, group, (o - s) % g, vals);
        memset(row, 0, (size_t)dim * sizeof *row);
        for (int j = 0; j < h->dk; j++)
            row[h->k_chan[j]] = vals[j];
    } else {
        row_to_float(c, c->k_row_fmt, slimkv_ring_row(c, h->ring_k, c->k_row_fmt, o), row);
    }
}

/* K of source o on the head's kept channels, for packing into a group. */
static void source_k_kept(const slimkv_cache *c, int head, const sources *src, int o, float *vals)
{
    const slimkv_head *h = &c->heads[head];
    int s = c->cfg.n_sink, g = c->cfg.group_size;
    if (o >= s && o < src->n_old && o < k_body_end(c, h, src->n_old)) {
        evict_decode_k_token(c, h, slimkv_k_group_ptr(h, (o - s) / g), (o - s) % g, vals);
        return;
    }
    float row[SLIMKV_MAX_HEAD_DIM];
    source_k_row(c, head, src, o, row);
    for (int j = 0; j < h->dk; j++)
        vals[j] = row[h->k_chan[j]];
}

/* V of source o as a full row (pruned V channels of a body token 0). */
static void source_v_row(const slimkv_cache *c, int head, const sources *src, int o, float *row)
{
    const slimkv_config *cfg = &c->cfg;
    const slimkv_head *h = &c->heads[head];
    int s = cfg->n_sink, g = cfg->group_size, dim = cfg->head_dim;
    if (o >= src->n_old) {
        memcpy(row, src->chunk_v + ((size_t)(o - src->n_old) * cfg->n_kv_heads + head) * dim, (size_t)dim * sizeof *row);
    } else if (o < s) {
        row_to_float(c, c->v_row_fmt, h->sink_v + (size_t)o * row_bytes_of(c, c->v_row_fmt), row);
    } else if (o < v_body_end(c, h, src->n_old)) {
        float vals[SLIMKV_MAX_HEAD_DIM];
        memset(row, 0, (size_t)dim * sizeof *row);
        if (h->dv == 0)
            return; /* no V channel kept: the body's V is 0 */
        evict_decode_v_token(c, h, slimkv_v_block_ptr(h, (o - s) / g), (o - s) % g, vals);
        for (int j = 0; j < h->dv; j++)
            row[h->v_chan[j]] = vals[j];
    } else {
        row_to_float(c, c->v_row_fmt, slimkv_ring_row(c, h->ring_v, c->v_row_fmt, o), row);
    }
}

/* ---- step 1: attention probabilities ---- */

typedef struct score_work {
    float *s;                         /* [SCORE_ROWS][lds] scores, then probabilities */
    float *q_full, *q_kept, *q_spark; /* [SCORE_ROWS][D] */
} score_work;

static size_t score_work_floats(const slimkv_cache *c, int lds)
{
    return (size_t)SCORE_ROWS * ((size_t)lds + 3 * (size_t)c->cfg.head_dim);
}

/* Scores of `rows` loaded query rows against every held token of a
 * (non-streaming) head and the chunk's tokens n_held .. n_tok - 1, with the
 * kernels attention uses: s[r * lds + t]. */
static void score_tokens(const slimkv_cache *c, int head, const float *chunk_k, int n_held, int n_tok,
                         const score_work *w, int rows, int lds)
{
    const slimkv_config *cfg = &c->cfg;
    const slimkv_head *h = &c->heads[head];
    const slimkv_kernels *k = c->kern;
    int g = cfg->group_size, s = cfg->n_sink, dim = cfg->head_dim;
    slimkv_score_rows_fn rows_fn = c->k_row_fmt == SLIMKV_F32 ? k->score_rows_f32 : k->score_rows_f16;
    size_t krow = row_bytes_of(c, c->k_row_fmt);
    int sinks = min_int(n_held, s);
    for (int t0 = 0; t0 < sinks; t0 += g)
        rows_fn(h->sink_k + (size_t)t0 * krow, (size_t)dim, min_int(g, sinks - t0), dim, w->q_full, rows, w->s + t0,
                lds);
    int body = slimkv_k_body_tokens(cfg, n_held);
    for (int gi = 0; gi < body / g; gi++) {
        const uint8_t *group = slimkv_k_group_ptr(h, gi);
        float *dst = w->s + s + gi * g;
        if (slimkv_k_is_spark(c))
            k->score_spark[cfg->k_format](group, dim, c->spark_keep, g, g, w->q_full, w->q_spark, rows, dst, lds);
        else
            k->score_k[cfg->k_format](group, h->dk, g, g, w->q_kept, rows, dst, lds);
    }
    for (int t = s + body; t < n_held;) { /* window rows, in runs that do not wrap the ring */
        int slot = (t - s) % c->ring_slots, run = min_int(min_int(g, n_held - t), c->ring_slots - slot);
        rows_fn(slimkv_ring_row(c, h->ring_k, c->k_row_fmt, t), (size_t)dim, run, dim, w->q_full, rows, w->s + t, lds);
        t += run;
    }
    size_t stride = (size_t)cfg->n_kv_heads * dim;
    for (int t = n_held; t < n_tok; t += g)
        k->score_rows_f32(chunk_k + (size_t)(t - n_held) * stride + (size_t)head * dim, stride, min_int(g, n_tok - t),
                          dim, w->q_full, rows, w->s + t, lds);
}

/* acc[t] += the attention probability of token t under each of nq queries
 * q [nq][n_q_heads][D] and each query head of the KV head: query i sits at
 * index q_index0 + i and its softmax runs over tokens 0 .. q_index0 + i
 * (the n_held held tokens, then the chunk's). */
static void add_attention(const slimkv_cache *c, int head, const float *q, int nq, int q_index0,
                          const float *chunk_k, int n_held, double *acc, const score_work *w, int lds)
{
    const slimkv_config *cfg = &c->cfg;
    const slimkv_head *h = &c->heads[head];
    int gs = c->q_per_kv, dim = cfg->head_dim, total_rows = nq * gs;
    float scale = 1.0f / sqrtf((float)dim);
    for (int r0 = 0; r0 < total_rows; r0 += SCORE_ROWS) {
        int rows = min_int(SCORE_ROWS, total_rows - r0);
        for (int r = 0; r < rows; r++) {
            int i = (r0 + r) / gs, g = (r0 + r) % gs;
            const float *src = q + ((size_t)i * cfg->n_q_heads + (size_t)head * gs + g) * dim;
            float *qf = w->q_full + (size_t)r * dim, *qk = w->q_kept + (size_t)r * h->dk;
            for (int ch = 0; ch < dim; ch++)
                qf[ch] = src[ch] * scale;
            for (int j = 0; j < h->dk; j++)
                qk[j] = qf[h->k_chan[j]];
            if (h->qnorm_rsqrt)
                for (int ch = 0; ch < dim; ch++)
                    w->q_spark[(size_t)r * dim + ch] = qf[ch] * h->qnorm_rsqrt[ch];
        }
        int n_tok = q_index0 + (r0 + rows - 1) / gs + 1;
        score_tokens(c, head, chunk_k, n_held, n_tok, w, rows, lds);
        for (int r = 0; r < rows; r++) {
            float *s = w->s + (size_t)r * lds;
            int visible = q_index0 + (r0 + r) / gs + 1;
            float mx = s[0];
            for (int t = 1; t < visible; t++)
                mx = s[t] > mx ? s[t] : mx;
            double sum = 0.0;
            for (int t = 0; t < visible; t++) {
                s[t] = expf(s[t] - mx);
                sum += s[t];
            }
            double inv = 1.0 / sum;
            for (int t = 0; t < visible; t++)
                acc[t] += s[t] * inv;
        }
    }
}

/* acc [heads][n_held + n_chunk] (zeroed here): add_attention for every
 * non-streaming head, heads in parallel for large calls. */
static slimkv_status attention_probabilities(const slimkv_cache *c, const float *q, int nq, int q_index0,
                                             const float *chunk_k, int n_chunk, double *acc)
{
    int n_held = c->n_tokens, total = n_held + n_chunk, heads = c->cfg.n_kv_heads;
    memset(acc, 0, (size_t)heads * total * sizeof *acc);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    size_t per_thread = score_work_floats(c, total), bytes;
    if (__builtin_mul_overflow(per_thread, (size_t)threads * sizeof(float), &bytes))
        return SLIMKV_ERR_NOMEM;
    float *work = slimkv_malloc(bytes);
    if (!work)
        return SLIMKV_ERR_NOMEM;
    double flops = (double)total * nq * c->cfg.n_q_heads * c->cfg.head_dim;
#pragma omp parallel for schedule(dynamic, 1) if (flops >= 1048576.0)
    for (int h = 0; h < heads; h++) {
        if (c->heads[h].dk == 0)
            continue; /* a streaming head keeps the newest tokens, whatever their scores */
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *base = work + (size_t)tid * per_thread;
        score_work w = {base, base + (size_t)SCORE_ROWS * total, NULL, NULL};
        w.q_kept = w.q_full + (size_t)SCORE_ROWS * c->cfg.head_dim;
        w.q_spark = w.q_kept + (size_t)SCORE_ROWS * c->cfg.head_dim;
        add_attention(c, h, q, nq, q_index0, chunk_k, n_held, acc + (size_t)h * total, &w, total);
    }
    slimkv_free(work);
    return SLIMKV_OK;
}

/* ---- step 2: the choice ---- */

typedef struct ranked {
    double value;
    int index;
} ranked;

/* Higher value first; equal values: the earlier token first. */
static int by_value_desc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    return x->value > y->value ? -1 : x->value < y->value ? 1 : x->index - y->index;
}

/* Lower value first; equal values: the earlier token first (evicted first). */
static int by_value_asc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    return x->value < y->value ? -1 : x->value > y->value ? 1 : x->index - y->index;
}

/* keep[0 .. n_keep) = the indices of [0, total) whose mark is 0, ascending. */
static void unmarked(const uint8_t *dropped, int total, int32_t *keep)
{
    for (int t = 0, n = 0; t < total; t++)
        if (!dropped[t])
            keep[n++] = t;
}

/* SnapKV: keep the sinks, the last `window` tokens and the `budget`
 * candidates in between of highest max-pooled score. */
static void snapkv_choose(const slimkv_cache *c, int head, const double *acc, int total, int window, int budget,
                          int32_t *keep, uint8_t *dropped, ranked *rank)
{
    int lo = min_int(c->cfg.n_sink, total), hi = total - window, n_cand = hi - lo;
    memset(dropped, 0, (size_t)total);
    if (c->heads[head].dk == 0) { /* streaming head: the newest candidates */
        memset(dropped + lo, 1, (size_t)(n_cand - budget));
        unmarked(dropped, total, keep);
        return;
    }
    int radius = c->cfg.evict_pool / 2; /* max_pool1d(kernel, stride 1, padding kernel / 2) over the candidates */
    for (int t = lo; t < hi; t++) {
        double m = acc[t];
        for (int u = max_int(lo, t - radius); u <= min_int(hi - 1, t + radius); u++)
            m = acc[u] > m ? acc[u] : m;
        rank[t - lo] = (ranked){m, t};
    }
    qsort(rank, (size_t)n_cand, sizeof *rank, by_value_desc);
    for (int i = budget; i < n_cand; i++)
        dropped[rank[i].index] = 1;
    unmarked(dropped, total, keep);
}

/* H2O: evict the n_evict tokens between the sinks and the last `recent`
 * of lowest accumulated score. */
static void h2o_choose(const slimkv_cache *c, int head, const float *score, int total, int recent, int n_evict,
                       int32_t *keep, uint8_t *dropped, ranked *rank)
{
    int lo = min_int(c->cfg.n_sink, total), hi = total - recent;
    memset(dropped, 0, (size_t)total);
    if (c->heads[head].dk == 0) { /* streaming head: the oldest go */
        memset(dropped + lo, 1, (size_t)n_evict);
        unmarked(dropped, total, keep);
        return;
    }
    for (int t = lo; t < hi; t++)
        rank[t - lo] = (ranked){score[t], t};
    qsort(rank, (size_t)(hi - lo), sizeof *rank, by_value_asc);
    for (int i = 0; i < n_evict; i++)
        dropped[rank[i].index] = 1;
    unmarked(dropped, total, keep);
}

/* ---- step 3: the rebuild ---- */

/* What one head's new storage takes, allocated before anything changes. */
typedef struct head_rebuild {
    uint8_t *ring_k, *ring_v;     /* the new window rings */
    uint8_t **k_pages, **v_pages; /* [max_pages] new page tables */
    int n_k_pages, n_v_pages;     /* pages of the new body */
    int k_kept_pages, v_kept_pages; /* leading pages taken over as they are */
    int same_groups, same_slots;  /* leading K groups / V slots whose tokens do not change */
} head_rebuild;

/* Pages come from the shared-page allocator (storage_share.c), zeroed, held
 * once; the pages a rebuild takes over are full and unchanged, so it never
 * writes a page a fork also holds. */
static uint8_t *evict_page_alloc(size_t bytes)
{
    return slimkv_page_alloc(bytes);
}

static void evict_page_free(uint8_t *page)
{
    slimkv_page_release(page);
}

static void free_head_rebuild(head_rebuild *r)
{
    slimkv_free(r->ring_k);
    slimkv_free(r->ring_v);
    if (r->k_pages)
        for (int p = r->k_kept_pages; p < r->n_k_pages; p++)
            evict_page_free(r->k_pages[p]);
    if (r->v_pages)
        for (int p = r->v_kept_pages; p < r->n_v_pages; p++)
            evict_page_free(r->v_pages[p]);
    slimkv_free(r->k_pages);
    slimkv_free(r->v_pages);
    memset(r, 0, sizeof *r);
}

/* The first new index whose source is not the same held token. */
static int first_changed(const int32_t *keep, int n_new, int n_old)
{
    int j = 0;
    while (j < n_new && keep[j] == j && j < n_old)
        j++;
    return j;
}

static slimkv_status prepare_head(const slimkv_cache *c, int head, const int32_t *keep, int n_new, head_rebuild *r)
{
    const slimkv_config *cfg = &c->cfg;
    const slimkv_head *h = &c->heads[head];
    int g = cfg->group_size, s = cfg->n_sink, n_old = c->n_tokens;
    memset(r, 0, sizeof *r);
    r->ring_k = slimkv_calloc((size_t)c->ring_slots, row_bytes_of(c, c->k_row_fmt));
    r->ring_v = slimkv_calloc((size_t)c->ring_slots, row_bytes_of(c, c->v_row_fmt));
    if (!r->ring_k || !r->ring_v)
        return SLIMKV_ERR_NOMEM;
    if (h->dk == 0)
        return SLIMKV_OK; /* streaming head: no body */
    int unchanged = max_int(first_changed(keep, n_new, n_old) - s, 0);
    int kb_old = slimkv_k_body_tokens(cfg, n_old), kb_new = slimkv_k_body_tokens(cfg, n_new);
    int vb_old = slimkv_v_body_tokens(cfg, n_old), vb_new = slimkv_v_body_tokens(cfg, n_new);
    r->same_groups = min_int(min_int(unchanged, kb_old), kb_new) / g;
    r->same_slots = min_int(min_int(unchanged, vb_old), vb_new);
    r->k_kept_pages = r->same_groups / SLIMKV_PAGE_GROUPS;
    r->v_kept_pages = r->same_slots / (g * SLIMKV_PAGE_GROUPS);
    int need_k = slimkv_pages_for_tokens(cfg, kb_new);
    int need_v = h->v_block_bytes ? slimkv_pages_for_tokens(cfg, vb_new) : 0;
    r->v_kept_pages = min_int(r->v_kept_pages, need_v);
    r->k_pages = slimkv_calloc((size_t)c->max_pages, sizeof *r->k_pages);
    r->v_pages = slimkv_calloc((size_t)c->max_pages, sizeof *r->v_pages);
    if (!r->k_pages || !r->v_pages)
        return SLIMKV_ERR_NOMEM;
    memcpy(r->k_pages, h->k_pages, (size_t)r->k_kept_pages * sizeof *r->k_pages);
    memcpy(r->v_pages, h->v_pages, (size_t)r->v_kept_pages * sizeof *r->v_pages);
    /* n_*_pages count the new table's entries; free_head_rebuild owns those
     * from *_kept_pages on, so a failure half way frees exactly the new ones */
    r->n_k_pages = r->k_kept_pages;
    while (r->n_k_pages < need_k) {
        if (!(r->k_pages[r->n_k_pages] = evict_page_alloc(h->k_group_bytes * SLIMKV_PAGE_GROUPS)))
            return SLIMKV_ERR_NOMEM;
        r->n_k_pages++;
    }
    r->n_v_pages = r->v_kept_pages;
    while (r->n_v_pages < need_v) {
        if (!(r->v_pages[r->n_v_pages] = evict_page_alloc(h->v_block_bytes * SLIMKV_PAGE_GROUPS)))
            return SLIMKV_ERR_NOMEM;
        r->n_v_pages++;
    }
    return SLIMKV_OK;
}

static uint8_t *group_in(uint8_t *const *pages, size_t bytes, int index)
{
    return pages[index / SLIMKV_PAGE_GROUPS] + (size_t)(index % SLIMKV_PAGE_GROUPS) * bytes;
}

/* 1 when the G sources of a new group are one old body group in order. */
static int whole_old_group(const slimkv_cache *c, const slimkv_head *h, const int32_t *src, int n_old)
{
    int g = c->cfg.group_size, s = c->cfg.n_sink;
    if (src[0] < s || (src[0] - s) % g != 0 || src[0] + g > k_body_end(c, h, n_old))
        return 0;
    for (int t = 1; t < g; t++)
        if (src[t] != src[0] + t)
            return 0;
    return 1;
}

/* A new SparK group: body tokens' records copied, the others packed from
 * their rows (pack_spark packs G rows; only those records are taken). */
static void build_spark_group(const slimkv_cache *c, int head, const sources *src, const int32_t *gsrc,
                              uint8_t *dst, float *rows, uint8_t *packed)
{
    const slimkv_config *cfg = &c->cfg;
    const slimkv_head *h = &c->heads[head];
    int g = cfg->group_size, s = cfg->n_sink, dim = cfg->head_dim;
    size_t record = slimkv_spark_record_bytes(cfg->k_format, dim, c->spark_keep, g);
    uint8_t from_rows[SLIMKV_MAX_GROUP];
    int any = 0;
    for (int t = 0; t < g; t++) {
        int o = gsrc[t];
        from_rows[t] = !(o >= s && o < src->n_old && o < k_body_end(c, h, src->n_old));
        if (from_rows[t]) {
            source_k_row(c, head, src, o, rows + (size_t)t * dim);
            any = 1;
        } else {
            memset(rows + (size_t)t * dim, 0, (size_t)dim * sizeof *rows);
            memcpy(dst + (size_t)t * record, slimkv_k_group_ptr(h, (o - s) / g) + (size_t)((o - s) % g) * record, record);
        }
    }
    if (!any)
        return;
    c->kern->pack_spark[cfg->k_format](rows, h->qnorm, dim, c->spark_keep, g, packed);
    for (int t = 0; t < g; t++)
        if (from_rows[t])
            memcpy(dst + (size_t)t * record, packed + (size_t)t * record, record);
}

/* Writes head's new storage for the sources keep[0 .. n_new) into r (and
 * the sinks in place); reads the old storage, which it does not change.
 * scratch: G*D + D floats; packed: one K group's bytes (SparK). */
static void build_head(const slimkv_cache *c, int head, const sources *src, const int32_t *keep, int n_new,
                       const head_rebuild *r, float *scratch, uint8_t *packed)
{
    const slimkv_config *cfg = &c->cfg;
    const slimkv_head *h = &c->heads[head];
    int g = cfg->group_size, s = cfg->n_sink, dim = cfg->head_dim, n_old = src->n_old;
    float *row = scratch + (size_t)g * dim;
    /* sinks the chunk brings (the first S tokens are always kept) */
    for (int j = n_old; j < min_int(s, n_new); j++) {
        source_k_row(c, head, src, keep[j], row);
        evict_store_row(c, c->k_row_fmt, row, h->sink_k + (size_t)j * row_bytes_of(c, c->k_row_fmt));
        source_v_row(c, head, src, keep[j], row);
        evict_store_row(c, c->v_row_fmt, row, h->sink_v + (size_t)j * row_bytes_of(c, c->v_row_fmt));
    }
    /* the windows: the rows attention and later flushes read */
    int streaming = h->dk == 0;
    int k_from = streaming ? s + slimkv_v_body_tokens(cfg, n_new) : k_body_end(c, h, n_new);
    int v_from = s + slimkv_v_body_tokens(cfg, n_new);
    for (int j = max_int(s, k_from); j < n_new; j++) {
        source_k_row(c, head, src, keep[j], row);
        evict_store_row(c, c->k_row_fmt, row, slimkv_ring_row(c, r->ring_k, c->k_row_fmt, j));
    }
    for (int j = max_int(s, v_from); j < n_new; j++) {
        source_v_row(c, head, src, keep[j], row);
        evict_store_row(c, c->v_row_fmt, row, slimkv_ring_row(c, r->ring_v, c->v_row_fmt, j));
    }
    if (streaming)
        return;
    /* K body: groups from the first new page on */
    int k_groups = slimkv_k_body_tokens(cfg, n_new) / g;
    for (int gi = r->k_kept_pages * SLIMKV_PAGE_GROUPS; gi < k_groups; gi++) {
        uint8_t *dst = group_in(r->k_pages, h->k_group_bytes, gi);
        const int32_t *gsrc = keep + s + (size_t)gi * g;
        if (gi < r->same_groups || whole_old_group(c, h, gsrc, n_old)) {
            memcpy(dst, slimkv_k_group_ptr(h, (gsrc[0] - s) / g), h->k_group_bytes);
        } else if (slimkv_k_is_spark(c)) {
            build_spark_group(c, head, src, gsrc, dst, scratch, packed);
        } else {
            for (int t = 0; t < g; t++)
                source_k_kept(c, head, src, gsrc[t], scratch + (size_t)t * h->dk);
            c->kern->pack_k[cfg->k_format](scratch, h->dk, g, dst);
        }
    }
    /* V body: token slots from the first new page on */
    if (!h->v_block_bytes)
        return;
    int v_body = slimkv_v_body_tokens(cfg, n_new), vb_end_old = v_body_end(c, h, n_old);
    int first = r->v_kept_pages * SLIMKV_PAGE_GROUPS * g;
    for (int b = first / g; b < r->same_slots / g; b++) /* whole unchanged blocks */
        memcpy(group_in(r->v_pages, h->v_block_bytes, b), slimkv_v_block_ptr(h, b), h->v_block_bytes);
    for (int t = max_int(first, r->same_slots / g * g); t < v_body; t++) {
        int o = keep[s + t];
        uint8_t *dst = group_in(r->v_pages, h->v_block_bytes, t / g);
        if (o >= s && o < n_old && o < vb_end_old) {
            evict_copy_v_slot(c, h, slimkv_v_block_ptr(h, (o - s) / g), (o - s) % g, dst, t % g);
        } else {
            float vals[SLIMKV_MAX_HEAD_DIM];
            source_v_row(c, head, src, o, row);
            for (int j = 0; j < h->dv; j++)
                vals[j] = row[h->v_chan[j]];
            c->kern->pack_v[cfg->v_format](vals, h->dv, g, dst, t % g);
        }
    }
}

/* Swaps head's new storage in and frees what it no longer holds. */
static void install_head(slimkv_cache *c, int head, head_rebuild *r)
{
    slimkv_head *h = &c->heads[head];
    slimkv_free(h->ring_k);
    slimkv_free(h->ring_v);
    h->ring_k = r->ring_k;
    h->ring_v = r->ring_v;
    if (h->dk > 0) {
        for (int p = r->k_kept_pages; p < h->n_k_pages; p++)
            evict_page_free(h->k_pages[p]);
        for (int p = r->v_kept_pages; p < h->n_v_pages; p++)
            evict_page_free(h->v_pages[p]);
        slimkv_free(h->k_pages);
        slimkv_free(h->v_pages);
        h->k_pages = r->k_pages;
        h->v_pages = r->v_pages;
        h->n_k_pages = r->n_k_pages;
        h->n_v_pages = r->n_v_pages;
    }
    memset(r, 0, sizeof *r);
}

/* The cache holds exactly the sources keep [heads][n_new] afterwards (see
 * the top of the file); scores [heads][total] give H2O's accumulated
 * attention by source (NULL: SnapKV). The chunk's tokens are counted as
 * seen. All or nothing. */
static slimkv_status rebuild(slimkv_cache *c, const int32_t *keep, int n_new, const float *chunk_k,
                             const float *chunk_v, int n_chunk, const float *scores)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_evict_state *e = c->evict;
    int heads = cfg->n_kv_heads, total = c->n_tokens + n_chunk;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    size_t scratch_floats = (size_t)(cfg->group_size + 1) * cfg->head_dim;
    size_t packed_bytes = c->heads[0].k_group_bytes > 0 ? c->heads[0].k_group_bytes : 1;
    for (int h = 1; h < heads; h++)
        packed_bytes = c->heads[h].k_group_bytes > packed_bytes ? c->heads[h].k_group_bytes : packed_bytes;
    head_rebuild *r = slimkv_calloc((size_t)heads, sizeof *r);
    float *scratch = slimkv_malloc((size_t)threads * scratch_floats * sizeof(float));
    uint8_t *packed = slimkv_malloc((size_t)threads * packed_bytes);
    tracking t = {0, NULL, NULL};
    slimkv_status st = r && scratch && packed ? SLIMKV_OK : SLIMKV_ERR_NOMEM;
    for (int h = 0; h < heads && st == SLIMKV_OK; h++)
        st = prepare_head(c, h, keep + (size_t)h * n_new, n_new, &r[h]);
    if (st == SLIMKV_OK)
        st = tracking_alloc(c, n_new, &t);
    if (st != SLIMKV_OK) {
        for (int h = 0; r && h < heads; h++)
            free_head_rebuild(&r[h]);
        slimkv_free(r);
        slimkv_free(scratch);
        slimkv_free(packed);
        return st;
    }
    /* Nothing fails from here on. */
    sources src = {c->n_tokens, chunk_k, chunk_v};
    double work = (double)n_new * heads * cfg->head_dim;
#pragma omp parallel for schedule(dynamic, 1) if (work >= 1048576.0)
    for (int h = 0; h < heads; h++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        build_head(c, h, &src, keep + (size_t)h * n_new, n_new, &r[h], scratch + (size_t)tid * scratch_floats,
                   packed + (size_t)tid * packed_bytes);
    }
    for (int h = 0; h < heads; h++) {
        install_head(c, h, &r[h]);
        const int32_t *kh = keep + (size_t)h * n_new;
        for (int j = 0; j < n_new; j++) {
            int o = kh[j];
            t.pos[(size_t)h * t.cap + j] = o < src.n_old ? e->pos[(size_t)h * e->cap + o] : e->seen + (o - src.n_old);
            if (t.score)
                t.score[(size_t)h * t.cap + j] = scores[(size_t)h * total + o];
        }
    }
    tracking_install(c, &t);
    c->n_tokens = n_new;
    e->seen += n_chunk;
    slimkv_free(r);
    slimkv_free(scratch);
    slimkv_free(packed);
    return SLIMKV_OK;
}

/* ---- the calls ---- */

/* How many tokens the policy evicts from `total` (held + chunk): SnapKV at
 * a prefill when the candidates exceed the budget, H2O when the evictable
 * tokens reach budget + G. *protect: the protected newest tokens. */
static int tokens_to_evict(const slimkv_cache *c, int total, int *protect)
{
    const slimkv_config *cfg = &c->cfg;
    int lo = min_int(cfg->n_sink, total);
    int window = cfg->eviction == SLIMKV_EVICT_SNAPKV ? cfg->window : cfg->residual;
    *protect = min_int(window, total - lo);
    int candidates = total - lo - *protect;
    if (cfg->eviction == SLIMKV_EVICT_SNAPKV)
        return candidates > cfg->evict_budget ? candidates - cfg->evict_budget : 0;
    return candidates >= cfg->evict_budget + cfg->group_size ? candidates - cfg->evict_budget : 0;
}

/* The choice of every head (keep [heads][total - n_evict]) from acc
 * (SnapKV) or scores (H2O), both [heads][total]. */
static slimkv_status choose_all(const slimkv_cache *c, const double *acc, const float *scores, int total,
                                int n_evict, int protect, int32_t *keep)
{
    int n_new = total - n_evict;
    uint8_t *dropped = slimkv_malloc((size_t)total);
    ranked *rank = slimkv_malloc((size_t)total * sizeof *rank);
    if (!dropped || !rank) {
        slimkv_free(dropped);
        slimkv_free(rank);
        return SLIMKV_ERR_NOMEM;
    }
    for (int h = 0; h < c->cfg.n_kv_heads; h++) {
        int32_t *kh = keep + (size_t)h * n_new;
        if (c->cfg.eviction == SLIMKV_EVICT_SNAPKV)
            snapkv_choose(c, h, acc + (size_t)h * total, total, protect, c->cfg.evict_budget, kh, dropped, rank);
        else
            h2o_choose(c, h, scores + (size_t)h * total, total, protect, n_evict, kh, dropped, rank);
    }
    slimkv_free(dropped);
    slimkv_free(rank);
    return SLIMKV_OK;
}

/* H2O's scores [heads][total]: the held tokens' accumulated ones plus acc,
 * the chunk's acc alone. */
static float *h2o_scores_with(const slimkv_cache *c, const double *acc, int total)
{
    const slimkv_evict_state *e = c->evict;
    float *scores = slimkv_malloc((size_t)c->cfg.n_kv_heads * total * sizeof *scores);
    if (!scores)
        return NULL;
    for (int h = 0; h < c->cfg.n_kv_heads; h++)
        for (int t = 0; t < total; t++)
            scores[(size_t)h * total + t] =
                (float)acc[(size_t)h * total + t] + (t < c->n_tokens ? e->score[(size_t)h * e->cap + t] : 0.0f);
    return scores;
}

/* Scores (when the policy needs them now), choice and rebuild for a call
 * that adds n_chunk tokens (k/v, queries q of the last observed ones at
 * q_index0) to what the cache holds; with n_chunk = 0 an observe. */
static slimkv_status evict_with(slimkv_cache *c, const float *q, int nq, int q_index0, const float *k, const float *v,
                                int n_chunk)
{
    slimkv_evict_state *e = c->evict;
    int total = c->n_tokens + n_chunk, protect;
    int n_evict = tokens_to_evict(c, total, &protect);
    int h2o = is_h2o(c);
    if (!n_evict && !h2o)
        return n_chunk ? slimkv_evict_append(c, k, v, n_chunk) : SLIMKV_OK;
    size_t heads = (size_t)c->cfg.n_kv_heads;
    double *acc = slimkv_malloc(heads * (size_t)total * sizeof *acc);
    if (!acc)
        return SLIMKV_ERR_NOMEM;
    slimkv_status st = attention_probabilities(c, q, nq, q_index0, k, n_chunk, acc);
    float *scores = NULL;
    if (st == SLIMKV_OK && h2o && !(scores = h2o_scores_with(c, acc, total)))
        st = SLIMKV_ERR_NOMEM;
    if (st == SLIMKV_OK && !n_evict) { /* H2O under budget: store, and keep the scores */
        if (n_chunk)
            st = slimkv_evict_append(c, k, v, n_chunk);
        for (size_t h = 0; st == SLIMKV_OK && h < heads; h++) /* the chunk's tokens start from its window's */
            memcpy(e->score + h * (size_t)e->cap, scores + h * (size_t)total, (size_t)total * sizeof *scores);
    } else if (st == SLIMKV_OK) {
        int32_t *keep = slimkv_malloc(heads * (size_t)(total - n_evict) * sizeof *keep);
        st = keep ? choose_all(c, acc, scores, total, n_evict, protect, keep) : SLIMKV_ERR_NOMEM;
        if (st == SLIMKV_OK)
            st = rebuild(c, keep, total - n_evict, k, v, n_chunk, scores);
        slimkv_free(keep);
    }
    slimkv_free(acc);
    slimkv_free(scores);
    return st;
}

slimkv_status slimkv_evict_prefill_store(slimkv_cache *c, const float *q, const float *k, const float *v,
                                         int n_tokens)
{
    slimkv_evict_state *e = c->evict;
    if (!e)
        return c->backend->append(c, k, v, n_tokens);
    if (n_tokens > INT_MAX - e->seen)
        return SLIMKV_ERR_CAPACITY;
    /* the observation window: the chunk's last `window` queries */
    int nq = min_int(c->cfg.window, n_tokens);
    const float *q_last = q + (size_t)(n_tokens - nq) * c->cfg.n_q_heads * c->cfg.head_dim;
    return evict_with(c, q_last, nq, c->n_tokens + n_tokens - nq, k, v, n_tokens);
}

slimkv_status slimkv_attend_observe(slimkv_cache *c, const float *q, int n_queries, float *out)
{
    slimkv_status st = slimkv_attend(c, q, n_queries, out); /* checks every argument */
    if (st != SLIMKV_OK || !c->evict || !is_h2o(c))
        return st;
    return evict_with(c, q, n_queries, c->n_tokens - n_queries, NULL, NULL, 0);
}

slimkv_status slimkv_cache_tokens_seen(const slimkv_cache *c, int *n_seen)
{
    if (!c || !n_seen)
        return SLIMKV_ERR_NULL_ARG;
    *n_seen = c->evict ? c->evict->seen : c->n_tokens;
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_token_positions(const slimkv_cache *c, int kv_head, int32_t *positions, int *count)
{
    if (!c || !count)
        return SLIMKV_ERR_NULL_ARG;
    if (kv_head < 0 || kv_head >= c->cfg.n_kv_heads)
        return SLIMKV_ERR_INVALID_ARG;
    for (int j = 0; positions && j < c->n_tokens; j++)
        positions[j] = c->evict ? c->evict->pos[(size_t)kv_head * c->evict->cap + j] : j;
    *count = c->n_tokens;
    return SLIMKV_OK;
}

slimkv_status slimkv_cache_token_scores(const slimkv_cache *c, int kv_head, float *scores, int *count)
{
    if (!c || !count)
        return SLIMKV_ERR_NULL_ARG;
    if (kv_head < 0 || kv_head >= c->cfg.n_kv_heads)
        return SLIMKV_ERR_INVALID_ARG;
    if (!c->evict || !is_h2o(c))
        return SLIMKV_ERR_STATE;
    for (int j = 0; scores && j < c->n_tokens; j++)
        scores[j] = c->evict->score[(size_t)kv_head * c->evict->cap + j];
    *count = c->n_tokens;
    return SLIMKV_OK;
}

/* ---- snapshots (io_snapshot.c) ---- */

void slimkv_evict_tracking(const slimkv_cache *c, int head, int32_t **pos, float **score)
{
    const slimkv_evict_state *e = c->evict;
    *pos = e && e->pos ? e->pos + (size_t)head * e->cap : NULL;
    *score = e && e->score ? e->score + (size_t)head * e->cap : NULL;
}

int slimkv_evict_seen(const slimkv_cache *c)
{
    return c->evict ? c->evict->seen : c->n_tokens;
}

slimkv_status slimkv_evict_prepare_restore(slimkv_cache *c, int n_tokens, int seen)
{
    tracking t;
    slimkv_status st = tracking_alloc(c, n_tokens, &t);
    if (st != SLIMKV_OK)
        return st;
    tracking_install(c, &t);
    c->evict->seen = seen;
    return SLIMKV_OK;
}

int slimkv_evict_state_valid(const slimkv_cache *c)
{
    const slimkv_evict_state *e = c->evict;
    if (!e)
        return 1;
    if (e->seen < c->n_tokens)
        return 0;
    for (int h = 0; h < c->cfg.n_kv_heads; h++)
        for (int j = 0; j < c->n_tokens; j++) {
            int32_t p = e->pos[(size_t)h * e->cap + j];
            if (p < 0 || p >= e->seen || (j > 0 && p <= e->pos[(size_t)h * e->cap + j - 1]))
                return 0;
            /* the sinks are the sequence's first tokens */
            if (j < c->cfg.n_sink && p != j)
                return 0;
            if (e->score) {
                float s = e->score[(size_t)h * e->cap + j];
                if (!(s >= 0.0f) || !isfinite(s))
                    return 0;
            }
        }
    return 1;
}
