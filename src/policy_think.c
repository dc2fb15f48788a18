/* ThinK (query-aware K channel pruning): at the first prefill each KV head
 * keeps the channels with the largest
 *   s_c = mean over the last W queries and the group's q heads of q_c^2
 *       * mean over the prompt's tokens of k_c^2,
 * D - floor(ratio * D) of them, rounded up to the channel alignment. */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

int slimkv_think_select(const slimkv_config *cfg, const float *q, const float *k, int n_tokens, int head,
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
    uint8_t kept[SLIMKV_MAX_HEAD_DIM] = {0};
    for (int c = 0; c < dim; c++) {
        int above = 0;
        for (int j = 0; j < dim && above < keep; j++)
            above += score[j] > score[c] || (score[j] == score[c] && j < c);
        kept[c] = above < keep;
    }
    int n = 0;
    for (int c = 0; c < dim; c++)
        if (kept[c])
            chan[n++] = c;
    return n;
}
