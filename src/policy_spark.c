/* SparK (per-token unstructured K channel pruning): the query statistics it
 * needs, taken at the first prefill. Selection and restoration themselves
 * are kernels (pack_spark / score_spark in simd/). */
#include <math.h>

#include "internal.h"

int slimkv_spark_keep(const slimkv_config *cfg)
{
    return cfg->head_dim - (int)floorf(cfg->prune_ratio * (float)cfg->head_dim);
}

/* ||qbar_c||: qbar is the mean over the group's q heads of each of the last
 * W queries; the norm runs over those W positions. Floored at 1e-6 of the
 * largest so that restoring a pruned channel (divides by it) stays finite. */
void slimkv_spark_qnorm(const slimkv_config *cfg, const float *q, int n_tokens, int head, float *qnorm)
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
