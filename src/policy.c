/* The channel policies: which K/V channels of each head are stored, how many
 * bytes a group then takes, and when the choice is made.
 *   none    every channel.
 *   static  the config's masks (LeanK, KVPruner), aligned at create.
 *   think   query-aware K channels chosen at the first prefill (ThinK).
 *   spark   every channel of the head, T per token kept inside each K record,
 *           with the query norms taken at the first prefill (SparK; the
 *           per-token selection and restoration are kernels in simd/).
 * Everything here is host bookkeeping, the same for every backend. */
#include <math.h>
#include <string.h>

#include "internal.h"

int slimkv_policy_chooses_at_prefill(slimkv_policy policy)
{
    return policy == SLIMKV_POLICY_THINK || policy == SLIMKV_POLICY_SPARK;
}

int slimkv_policy_spark_keep(const slimkv_config *cfg)
{
    if (cfg->policy != SLIMKV_POLICY_SPARK)
        return 0;
    return cfg->head_dim - (int)floorf(cfg->prune_ratio * (float)cfg->head_dim);
}

/* Kept channels of one head: the mask's ones, plus the lowest-index pruned
 * channels until the count reaches a multiple of the alignment (or D).
 * A mask that keeps nothing stays empty (streaming head). */
static int kept_channels(const uint8_t *mask, int dim, int align, int32_t *chan)
{
    int count = 0;
    for (int c = 0; c < dim; c++)
        count += mask[c];
    if (count == 0)
        return 0;
    int target = (count + align - 1) / align * align;
    target = target < dim ? target : dim;
    int extra = target - count, n = 0;
    for (int c = 0; c < dim; c++) {
        if (mask[c]) {
            chan[n++] = c;
        } else if (extra > 0) {
            chan[n++] = c;
            extra--;
        }
    }
    return n;
}

static int all_channels(int dim, int32_t *chan)
{
    for (int c = 0; c < dim; c++)
        chan[c] = c;
    return dim;
}

void slimkv_policy_group_bytes(const slimkv_cache *c, slimkv_head *h)
{
    const slimkv_config *cfg = &c->cfg;
    int g = cfg->group_size;
    if (h->k_store) { /* K outliers: at most dk - 4, so that the K format's group keeps a channel quad */
        int most = h->dk > 4 ? h->dk - 4 : 0;
        h->k_out = cfg->k_outliers < most ? cfg->k_outliers : most;
        memcpy(h->k_store, h->k_chan, (size_t)h->dk * sizeof *h->k_store); /* the default order */
    }
    if (slimkv_k_is_spark(c)) {
        h->k_group_bytes = slimkv_spark_group_bytes(cfg->k_format, cfg->head_dim, c->spark_keep, g);
    } else if (h->k_out > 0) {
        h->k_out_offset = slimkv_k_group_bytes(cfg->k_format, h->dk - h->k_out, g);
        h->k_group_bytes = h->k_out_offset + slimkv_k_group_bytes(SLIMKV_Q8, h->k_out, g);
    } else {
        h->k_out_offset = 0;
        h->k_group_bytes = slimkv_k_group_bytes(cfg->k_format, h->dk, g);
    }
    h->v_block_bytes = slimkv_v_block_bytes(cfg->v_format, h->dv, g);
}

void slimkv_policy_choose_outliers(slimkv_head *h, const float *range)
{
    /* Kept channel j is an outlier when fewer than k_out channels rank
     * above it (wider range, or equal range and lower index). */
    int n_other = 0, n_out = 0, first_out = h->dk - h->k_out;
    for (int j = 0; j < h->dk; j++) {
        int above = 0;
        for (int i = 0; i < h->dk && above < h->k_out; i++)
            above += range[h->k_chan[i]] > range[h->k_chan[j]] ||
                     (range[h->k_chan[i]] == range[h->k_chan[j]] && i < j);
        if (above < h->k_out)
            h->k_store[first_out + n_out++] = h->k_chan[j];
        else
            h->k_store[n_other++] = h->k_chan[j];
    }
}

slimkv_status slimkv_policy_init_head(slimkv_cache *c, int index, const uint8_t *k_mask, const uint8_t *v_mask)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_head *h = &c->heads[index];
    int dim = cfg->head_dim;
    h->k_chan = slimkv_malloc((size_t)dim * sizeof *h->k_chan);
    h->v_chan = slimkv_malloc((size_t)dim * sizeof *h->v_chan);
    if (!h->k_chan || !h->v_chan)
        return SLIMKV_ERR_NOMEM;
    if (cfg->k_outliers > 0 && !(h->k_store = slimkv_malloc((size_t)dim * sizeof *h->k_store)))
        return SLIMKV_ERR_NOMEM;
    int masked = cfg->policy == SLIMKV_POLICY_STATIC;
    h->dk = masked && k_mask ? kept_channels(k_mask + (size_t)index * dim, dim, cfg->channel_align, h->k_chan)
                             : all_channels(dim, h->k_chan);
    h->dv = masked && v_mask ? kept_channels(v_mask + (size_t)index * dim, dim, cfg->channel_align, h->v_chan)
                             : all_channels(dim, h->v_chan);
    if (h->dk == 0) /* streaming head: no compressed body at all */
        h->dv = 0;
    if (cfg->policy == SLIMKV_POLICY_SPARK) {
        h->qnorm = slimkv_calloc((size_t)dim, sizeof *h->qnorm);
        h->qnorm_rsqrt = slimkv_calloc((size_t)dim, sizeof *h->qnorm_rsqrt);
        if (!h->qnorm || !h->qnorm_rsqrt)
            return SLIMKV_ERR_NOMEM;
    }
    slimkv_policy_group_bytes(c, h);
    return SLIMKV_OK;
}

void slimkv_policy_free_head(slimkv_head *h)
{
    slimkv_free(h->qnorm);
    slimkv_free(h->qnorm_rsqrt);
    slimkv_free(h->k_chan);
    slimkv_free(h->v_chan);
    slimkv_free(h->k_store);
}

size_t slimkv_policy_state_bytes(const slimkv_cache *c)
{
    /* SparK's norms and their reciprocal roots, per head */
    return c->heads[0].qnorm ? (size_t)c->cfg.n_kv_heads * 2 * c->cfg.head_dim * sizeof(float) : 0;
}

slimkv_status slimkv_policy_config_like(const slimkv_cache *c, slimkv_config *cfg, uint8_t **masks)
{
    *cfg = c->cfg;
    *masks = NULL;
    if (cfg->policy != SLIMKV_POLICY_STATIC)
        return SLIMKV_OK;
    /* the kept channels as masks: already aligned, so they come back unchanged */
    int dim = cfg->head_dim;
    size_t n = (size_t)cfg->n_kv_heads * dim;
    uint8_t *k_mask = slimkv_calloc(2, n), *v_mask = k_mask + n;
    if (!k_mask)
        return SLIMKV_ERR_NOMEM;
    for (int h = 0; h < cfg->n_kv_heads; h++) {
        const slimkv_head *hd = &c->heads[h];
        for (int i = 0; i < hd->dk; i++)
            k_mask[(size_t)h * dim + hd->k_chan[i]] = 1;
        for (int i = 0; i < hd->dv; i++)
            v_mask[(size_t)h * dim + hd->v_chan[i]] = 1;
    }
    cfg->k_mask = k_mask;
    cfg->v_mask = v_mask;
    *masks = k_mask;
    return SLIMKV_OK;
}

/* ThinK: each KV head keeps the channels with the largest
 *   s_c = mean over the last W queries and the group's q heads of q_c^2
 *       * mean over the prompt's tokens of k_c^2,
 * D - floor(ratio * D) of them, rounded up to the channel alignment. */
static int think_select(const slimkv_config *cfg, const float *q, const float *k, int n_tokens, int head,
                        int32_t *chan)
{
    int dim = cfg->head_dim, gs = cfg->n_q_heads / cfg->n_kv_heads;
    int window = n_tokens < cfg->window ? n_tokens : cfg->window;
    double q_energy[SLIMKV_MAX_HEAD_DIM] = {0}, k_energy[SLIMKV_MAX_HEAD_DIM] = {0};
    for (int t = n_tokens - window; t < n_tokens; t++)
        for (int g = 0; g < gs; g++) {
            const float *row = q + ((size_t)t * cfg->n_q_heads + (size_t)head * gs + g) * dim;
            for (int c = 0; c < dim; c++)
                q_energy[c] += (double)row[c] * row[c];
        }
    for (int t = 0; t < n_tokens; t++) {
        const float *row = k + ((size_t)t * cfg->n_kv_heads + head) * dim;
        for (int c = 0; c < dim; c++)
            k_energy[c] += (double)row[c] * row[c];
    }
    /* The means' denominators are the same for every channel: ranking by
     * the products of sums is ranking by the products of means. */
    double score[SLIMKV_MAX_HEAD_DIM];
    for (int c = 0; c < dim; c++)
        score[c] = q_energy[c] * k_energy[c];
    int keep = dim - (int)floorf(cfg->prune_ratio * (float)dim);
    keep = (keep + cfg->channel_align - 1) / cfg->channel_align * cfg->channel_align;
    keep = keep < dim ? keep : dim;
    /* Channel c is kept when fewer than `keep` channels rank above it
     * (higher score, or equal score and lower index). */
    int n = 0;
    for (int c = 0; c < dim; c++) {
        int above = 0;
        for (int j = 0; j < dim && above < keep; j++)
            above += score[j] > score[c] || (score[j] == score[c] && j < c);
        if (above < keep)
            chan[n++] = c;
    }
    return n;
}

/* SparK: ||qbar_c||, where qbar is the mean over the group's q heads of
 * each of the last W queries and the norm runs over those W positions.
 * Floored at 1e-6 of the largest so that restoring a pruned channel
 * (divides by it) stays finite. */
static void spark_qnorm(const slimkv_config *cfg, const float *q, int n_tokens, int head, float *qnorm)
{
    int dim = cfg->head_dim, gs = cfg->n_q_heads / cfg->n_kv_heads;
    int window = n_tokens < cfg->window ? n_tokens : cfg->window;
    double sum_sq[SLIMKV_MAX_HEAD_DIM] = {0};
    for (int t = n_tokens - window; t < n_tokens; t++)
        for (int c = 0; c < dim; c++) {
            double mean = 0;
            for (int g = 0; g < gs; g++)
                mean += q[((size_t)t * cfg->n_q_heads + (size_t)head * gs + g) * dim + c];
            mean /= gs;
            sum_sq[c] += mean * mean;
        }
    double largest = 0;
    for (int c = 0; c < dim; c++)
        largest = sum_sq[c] > largest ? sum_sq[c] : largest;
    double floor_sq = largest > 0 ? largest * 1e-12 : 1.0;
    for (int c = 0; c < dim; c++)
        qnorm[c] = (float)sqrt(sum_sq[c] > floor_sq ? sum_sq[c] : floor_sq);
}

void slimkv_policy_set_qnorm(slimkv_head *h, int dim)
{
    for (int c = 0; c < dim; c++)
        h->qnorm_rsqrt[c] = 1.0f / sqrtf(h->qnorm[c]);
}

void slimkv_policy_choose(slimkv_cache *c, const float *q, const float *k, int n_tokens)
{
    const slimkv_config *cfg = &c->cfg;
    for (int i = 0; i < cfg->n_kv_heads; i++) {
        slimkv_head *h = &c->heads[i];
        if (cfg->policy == SLIMKV_POLICY_THINK) {
            h->dk = think_select(cfg, q, k, n_tokens, i, h->k_chan);
        } else {
            spark_qnorm(cfg, q, n_tokens, i, h->qnorm);
            slimkv_policy_set_qnorm(h, cfg->head_dim);
        }
        slimkv_policy_group_bytes(c, h);
    }
    c->channels_pending = 0;
}

void slimkv_policy_reset(slimkv_cache *c)
{
    const slimkv_config *cfg = &c->cfg;
    for (int i = 0; i < cfg->n_kv_heads; i++) {
        slimkv_head *h = &c->heads[i];
        h->dk = all_channels(cfg->head_dim, h->k_chan);
        if (h->qnorm) {
            memset(h->qnorm, 0, (size_t)cfg->head_dim * sizeof *h->qnorm);
            memset(h->qnorm_rsqrt, 0, (size_t)cfg->head_dim * sizeof *h->qnorm_rsqrt);
        }
        slimkv_policy_group_bytes(c, h);
    }
    c->channels_pending = 1;
}

void slimkv_policy_copy_choice(slimkv_cache *dst, const slimkv_cache *src)
{
    const slimkv_config *cfg = &src->cfg;
    for (int i = 0; i < cfg->n_kv_heads; i++) {
        const slimkv_head *s = &src->heads[i];
        slimkv_head *d = &dst->heads[i];
        d->dk = s->dk;
        d->dv = s->dv;
        memcpy(d->k_chan, s->k_chan, (size_t)cfg->head_dim * sizeof *d->k_chan);
        memcpy(d->v_chan, s->v_chan, (size_t)cfg->head_dim * sizeof *d->v_chan);
        if (s->qnorm) {
            memcpy(d->qnorm, s->qnorm, (size_t)cfg->head_dim * sizeof *d->qnorm);
            memcpy(d->qnorm_rsqrt, s->qnorm_rsqrt, (size_t)cfg->head_dim * sizeof *d->qnorm_rsqrt);
        }
        slimkv_policy_group_bytes(dst, d);
        if (s->k_store) /* the outliers chosen at src's first flush */
            memcpy(d->k_store, s->k_store, (size_t)s->dk * sizeof *d->k_store);
    }
    dst->channels_pending = src->channels_pending;
}
