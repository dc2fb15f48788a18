/* Weight-side structural pruning (KVPruner, SDS): apply a plan's K channel
 * masks to a model's q_proj / k_proj weights so the model emits pruned K,
 * with an optional least-squares refit of the kept q_proj rows. Tool code,
 * not library.
 *
 * Channel rules (rotate-half RoPE pairs channel c with c + D/2, D = head_dim):
 * - RoPE mixes a pair, so zeroing a pre-RoPE row c also changes post-RoPE
 *   channel c + D/2 (and vice versa) unless both rows go. The weight-side
 *   keep mask is therefore the plan's mask closed under pairing: a pair is
 *   kept when either member is kept. Running the plan's own mask at run time
 *   on the pruned model then computes exactly what it computes on the
 *   unpruned model, and when the plan is pair-consistent (slimkv-plan
 *   --rope-pairs) the pruned model needs no run-time mask at all.
 * - A head the plan makes a streaming head (no K channel kept) is left whole:
 *   streaming keeps full sinks and a full recent window, a run-time matter.
 * - Pruned K channel c of KV head h zeroes row h*D + c of k_proj and row
 *   j*D + c of q_proj for every query head j of h's group (GQA), and the
 *   matching bias entries when the model has q/k biases.
 *
 * Refit (SDS: prune, refit dense, prune again), per KV head, pre-RoPE, on
 * calibration hidden states X [N][hidden] (the inputs of q_proj/k_proj):
 *   K = X Wk^T (+ bk), C = kept channels, P = pruned channels, and for each
 *   query head with rows W (+ bias b) the score matrix S = (X W^T) K^T.
 *   Minimize over the kept rows W'_C:  || (X W'_C^T) K_C^T - S ||_F^2.
 *   Its minimizer (for any X) is W'_C = W_C + B W_P with
 *   B = (K_C^T K_C)^{-1} K_C^T K_P, the least-squares regression of the
 *   pruned key channels on the kept ones: the pruned channels' share of every
 *   score is folded into the kept query rows. The plain pruned weights
 *   (W'_C = W_C) are one candidate, so the optimum's score error is never
 *   larger; the solve uses a Cholesky factorization with a tiny ridge for
 *   conditioning, and the tool keeps the refit of a KV group only when its
 *   measured calibration error is not above plain pruning, so the guarantee
 *   holds numerically too. Then the pruned rows are zeroed again.
 *   Caveat: the objective is the score at relative position 0 (no rotation);
 *   B mixes channels of different RoPE frequencies, so under RoPE the refit
 *   is exact only for that term and approximate at other distances.
 */
#ifndef SLIMKV_TOOLS_WEIGHTS_H
#define SLIMKV_TOOLS_WEIGHTS_H

#include <stdint.h>

/* One layer's query/key projections, f32, row-major [out][hidden]. */
typedef struct qk_layer {
    int n_q_heads, n_kv_heads, head_dim, hidden;
    float *wq;  /* [n_q_heads * head_dim][hidden] */
    float *wk;  /* [n_kv_heads * head_dim][hidden] */
    float *bq;  /* [n_q_heads * head_dim] or NULL */
    float *bk;  /* [n_kv_heads * head_dim] or NULL */
} qk_layer;

/* The weight-side keep mask [n_kv][dim] from a plan's K mask: closed under
 * RoPE pairs; streaming heads kept whole (see above). */
void qk_weight_mask(const uint8_t *plan_k_mask, int n_kv_heads, int head_dim, uint8_t *keep);

/* Zeroes the rows (and bias entries) of pruned channels in q and k. */
void qk_prune(qk_layer *w, const uint8_t *keep);

/* Squared score errors summed over query heads, pre-RoPE, on calibration X. */
typedef struct score_errors {
    double pruned;    /* plain pruning */
    double refit;     /* after the refit (per KV group: the better of refit and plain) */
    double reference; /* ||S||^2: the scores' own energy */
    int groups_refit; /* KV groups whose refit was kept */
} score_errors;

/* Refits the kept q rows of every KV group (w->wq, w->bq in place; pruned
 * rows end zero; k untouched) on x [n_tokens][hidden]. err is optional.
 * 0, or -1 when memory runs out. */
int qk_refit(qk_layer *w, const float *x, int n_tokens, const uint8_t *keep, score_errors *err);

/* Compact layout for engines that drop pruned channels: every KV head must
 * keep the same count d (else -1). wq_out [n_q*d][hidden], wk_out
 * [n_kv*d][hidden] (and biases if present) take the kept rows in ascending
 * channel order, q rows scaled by sqrt(d / head_dim) so that scores scaled by
 * 1/sqrt(d) equal the original ones scaled by 1/sqrt(head_dim); index
 * [n_kv][d] gets the original channel of each row (its RoPE frequency). With
 * a pair-closed mask the kept channels are p_1 < .. < p_m < D/2 followed by
 * p_1 + D/2 .. p_m + D/2: rotate-half again, over the compact head. */
int qk_compact_dim(const uint8_t *keep, int n_kv_heads, int head_dim);
void qk_compact(const qk_layer *w, const uint8_t *keep, int d, float *wq_out, float *wk_out, float *bq_out,
                float *bk_out, int32_t *index);

/* The whole tool: reads model_in, writes model_out (atomically) with every
 * tensor copied except the layers' q_proj / k_proj (and biases), pruned by
 * the plan's K masks; refit when calib_path is given ("layers.{i}.hidden" or
 * "calib.hidden" [tokens][hidden]); compact layout when remove. err
 * (optional) sums the score errors over layers. 0, or -1 with a message on
 * stderr. */
typedef struct prune_options {
    const char *model_in, *model_out, *plan_path, *calib_path;
    int remove;
} prune_options;

int prune_model(const prune_options *o, score_errors *err);

#endif /* SLIMKV_TOOLS_WEIGHTS_H */
