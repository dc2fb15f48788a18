/* Config defaults and validation: every field bounded so that every size
 * the library derives from a config fits its type, and a failing check
 * says which field and why (slimkv_config_reason). */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

slimkv_status slimkv_config_init(slimkv_config *cfg)
{
    if (!cfg)
        return SLIMKV_ERR_NULL_ARG;
    memset(cfg, 0, sizeof *cfg);
    cfg->k_format = SLIMKV_F16;
    cfg->v_format = SLIMKV_F16;
    cfg->group_size = 32;
    cfg->residual = 128;
    cfg->n_sink = 0;
    cfg->policy = SLIMKV_POLICY_NONE;
    cfg->channel_align = 8;
    cfg->prune_ratio = 0.4f;
    cfg->window = 32;
    cfg->backend = SLIMKV_BACKEND_AUTO;
    cfg->eviction = SLIMKV_EVICT_NONE;
    cfg->evict_budget = 1024;
    cfg->evict_pool = 7; /* SnapKV's kernel size */
    return SLIMKV_OK;
}

static int valid_mask(const uint8_t *mask, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (mask[i] > 1)
            return 0;
    return 1;
}

/* Bytes of the largest storage this config could ever hold (every format
 * at its widest), computed with overflow checks: a capacity that cannot be
 * addressed is refused at create, not discovered at append. Sinks and the
 * window never hold more than the capacity (cache.c sizes them so): a huge
 * n_sink or residual costs nothing more, and must not be refused where
 * size_t is 32 bits. The sum fits a size_t: capacity + n_sink <= INT_MAX
 * and residual <= INT_MAX / 4 (check()). */
static int worst_case_bytes_fit(const slimkv_config *cfg)
{
    size_t per_token, total;
    size_t heads = (size_t)cfg->n_kv_heads, dim = (size_t)cfg->head_dim;
    size_t capacity = (size_t)cfg->capacity, g = (size_t)cfg->group_size;
    size_t window = (size_t)cfg->residual + g, sinks = (size_t)cfg->n_sink;
    size_t tokens = capacity + g * (SLIMKV_PAGE_GROUPS + 1) + (window < capacity + g ? window : capacity + g) +
                    (sinks < capacity ? sinks : capacity);
    if (__builtin_mul_overflow(heads, dim, &per_token) || __builtin_mul_overflow(per_token, (size_t)8, &per_token) ||
        __builtin_mul_overflow(per_token, tokens, &total))
        return 0;
    return total < (size_t)PTRDIFF_MAX / 2;
}

/* The checks in order; *why names the field of the first that fails. */
static slimkv_status check(const slimkv_config *cfg, const char **why)
{
#define REFUSE(STATUS, REASON)                                                                           \
    do {                                                                                                 \
        *why = REASON;                                                                                   \
        return STATUS;                                                                                   \
    } while (0)
    if (!cfg)
        REFUSE(SLIMKV_ERR_NULL_ARG, "config is NULL");
    if (cfg->n_q_heads < 1 || cfg->n_q_heads > SLIMKV_MAX_HEADS)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "n_q_heads must be between 1 and 4096");
    if (cfg->n_kv_heads < 1 || cfg->n_kv_heads > SLIMKV_MAX_HEADS)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "n_kv_heads must be between 1 and 4096");
    if (cfg->n_q_heads % cfg->n_kv_heads != 0)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "n_q_heads must be a multiple of n_kv_heads");
    if (cfg->head_dim < 4 || cfg->head_dim > SLIMKV_MAX_HEAD_DIM || cfg->head_dim % 4 != 0)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "head_dim must be a multiple of 4 between 4 and 1024");
    if (cfg->capacity < 1)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "capacity must be at least 1");
    if ((unsigned)cfg->k_format >= SLIMKV_FORMAT_COUNT)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "k_format is not a slimkv_format");
    if ((unsigned)cfg->v_format >= SLIMKV_FORMAT_COUNT)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "v_format is not a slimkv_format");
    if (cfg->group_size < 16 || cfg->group_size > SLIMKV_MAX_GROUP || cfg->group_size % 16 != 0)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "group_size must be a multiple of 16 between 16 and 1024");
    if (cfg->residual < 0 || cfg->residual % cfg->group_size != 0 || cfg->residual > INT_MAX / 4)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "residual must be a non-negative multiple of group_size");
    if (cfg->n_sink < 0 || cfg->n_sink > INT_MAX / 4)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "n_sink must be non-negative");
    if (cfg->channel_align < 4 || cfg->channel_align % 4 != 0 || cfg->channel_align > SLIMKV_MAX_HEAD_DIM)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "channel_align must be a multiple of 4 between 4 and 1024");
    if ((unsigned)cfg->backend > SLIMKV_BACKEND_CUDA)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "backend is not a slimkv_backend");
    if (cfg->device_pointers != 0 && (cfg->device_pointers != 1 || cfg->backend != SLIMKV_BACKEND_CUDA))
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "device_pointers must be 0, or 1 with backend SLIMKV_BACKEND_CUDA");
    if (cfg->rotate & ~(SLIMKV_ROTATE_K | SLIMKV_ROTATE_V))
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "rotate must be a set of SLIMKV_ROTATE_K / SLIMKV_ROTATE_V bits");
    if (cfg->rotate && (cfg->head_dim & (cfg->head_dim - 1)) != 0)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "rotate needs head_dim a power of 2");
    if (cfg->rotate && cfg->policy != SLIMKV_POLICY_NONE)
        REFUSE(SLIMKV_ERR_UNSUPPORTED, "rotate does not compose with channel pruning (policy must be "
                                       "SLIMKV_POLICY_NONE): a rotation mixes the channels a policy would select");
    if (cfg->rotate && cfg->eviction != SLIMKV_EVICT_NONE)
        REFUSE(SLIMKV_ERR_UNSUPPORTED, "rotate does not compose with token eviction (its observing calls score "
                                       "the caller's queries)");
    if (cfg->rotate && cfg->device_pointers)
        REFUSE(SLIMKV_ERR_UNSUPPORTED, "rotate needs host pointers (device_pointers 0)");
    size_t mask_len = (size_t)cfg->n_kv_heads * (size_t)cfg->head_dim;
    switch (cfg->policy) {
    case SLIMKV_POLICY_NONE:
        if (cfg->k_mask || cfg->v_mask) /* masks given but not asked for: almost surely a mistake */
            REFUSE(SLIMKV_ERR_INVALID_CONFIG, "k_mask/v_mask are given but policy is not SLIMKV_POLICY_STATIC");
        break;
    case SLIMKV_POLICY_STATIC:
        if (!cfg->k_mask)
            REFUSE(SLIMKV_ERR_NULL_ARG, "policy SLIMKV_POLICY_STATIC needs k_mask");
        if (!valid_mask(cfg->k_mask, mask_len) || (cfg->v_mask && !valid_mask(cfg->v_mask, mask_len)))
            REFUSE(SLIMKV_ERR_INVALID_CONFIG, "k_mask/v_mask values must be 0 or 1");
        break;
    case SLIMKV_POLICY_THINK:
    case SLIMKV_POLICY_SPARK:
        if (cfg->k_mask || cfg->v_mask)
            REFUSE(SLIMKV_ERR_INVALID_CONFIG, "k_mask/v_mask are given but policy is not SLIMKV_POLICY_STATIC");
        if (!(cfg->prune_ratio >= 0.0f && cfg->prune_ratio < 1.0f))
            REFUSE(SLIMKV_ERR_INVALID_CONFIG, "prune_ratio must be in [0, 1)");
        if (cfg->window < 1)
            REFUSE(SLIMKV_ERR_INVALID_CONFIG, "window must be at least 1");
        break;
    default:
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "policy is not a slimkv_policy");
    }
    if (cfg->policy == SLIMKV_POLICY_SPARK && cfg->k_format == SLIMKV_Q3)
        REFUSE(SLIMKV_ERR_UNSUPPORTED, "policy SLIMKV_POLICY_SPARK does not take k_format q3 (SparK records hold "
                                       "q8, q4, q2 or dense K values)");
    if (cfg->k_outliers < 0 || cfg->k_outliers % 4 != 0 || cfg->k_outliers > SLIMKV_MAX_HEAD_DIM)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "k_outliers must be a multiple of 4 between 0 and 1024");
    if (cfg->k_outliers && cfg->k_format != SLIMKV_Q4 && cfg->k_format != SLIMKV_Q3 && cfg->k_format != SLIMKV_Q2)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "k_outliers needs k_format q4, q3 or q2 (the other channels' format)");
    if (cfg->k_outliers && cfg->policy == SLIMKV_POLICY_SPARK)
        REFUSE(SLIMKV_ERR_UNSUPPORTED, "k_outliers does not compose with SparK (its records choose channels per "
                                       "token)");
    if (cfg->k_outliers && cfg->eviction != SLIMKV_EVICT_NONE)
        REFUSE(SLIMKV_ERR_UNSUPPORTED, "k_outliers does not compose with token eviction (its rebuilds score and "
                                       "repack K groups of one format)");
    if ((unsigned)cfg->eviction > SLIMKV_EVICT_H2O)
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "eviction is not a slimkv_eviction");
    if (cfg->eviction != SLIMKV_EVICT_NONE) {
        /* bounded so that budget + group + sinks + window sums stay in an int */
        if (cfg->evict_budget < 1 || cfg->evict_budget > INT_MAX / 4)
            REFUSE(SLIMKV_ERR_INVALID_CONFIG, "evict_budget must be at least 1 with token eviction");
        if (cfg->window < 1)
            REFUSE(SLIMKV_ERR_INVALID_CONFIG, "window must be at least 1 with token eviction");
        if (cfg->eviction == SLIMKV_EVICT_SNAPKV &&
            (cfg->evict_pool < 1 || cfg->evict_pool > 1023 || cfg->evict_pool % 2 == 0))
            REFUSE(SLIMKV_ERR_INVALID_CONFIG, "evict_pool must be an odd number between 1 and 1023");
    }
    if (cfg->capacity > INT_MAX - cfg->n_sink - 2 * cfg->group_size || !worst_case_bytes_fit(cfg))
        REFUSE(SLIMKV_ERR_INVALID_CONFIG, "capacity is too large to address with these heads and head_dim");
    *why = "valid";
    return SLIMKV_OK;
#undef REFUSE
}

slimkv_status slimkv_config_validate(const slimkv_config *cfg)
{
    const char *why;
    return check(cfg, &why);
}

slimkv_status slimkv_config_reason(const slimkv_config *cfg, const char **reason)
{
    const char *why;
    slimkv_status st = check(cfg, &why);
    if (reason)
        *reason = why;
    return st;
}
