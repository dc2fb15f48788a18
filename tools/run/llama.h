/* A Llama-architecture transformer (RMSNorm, RoPE, GQA attention, SwiGLU
 * MLP, tied or separate output head) whose KV cache is SlimKV: one
 * slimkv_cache per layer. Weights come from a GGUF file: Q4_0, Q4_1 and
 * Q8_0 matrices stay in the file's blocks and multiply int8-quantized
 * activations (qmm.h); other types, and every matrix when f32 weights are
 * asked for, are dequantized to float32 at load. */
#ifndef SLIMKV_MODEL_LLAMA_H
#define SLIMKV_MODEL_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "slimkv.h"

typedef struct llama_hparams {
    int n_layer, n_embd, n_head, n_kv_head, head_dim, n_ff, n_vocab, n_ctx_train;
    float rope_base, rms_eps;
} llama_hparams;

typedef struct llama_model llama_model;

typedef struct llama_load_options {
    int f32_weights; /* 1: every matrix dequantized to float32 (the exact reference path) */
    const char *isa; /* weight kernels: NULL or "auto" (SLIMKV_ISA, else the best here), or a name */
} llama_load_options;
void llama_load_options_init(llama_load_options *opts);

/* Reads llama.* hyperparameters and the tensors (token_embd, output_norm,
 * optional output, blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,
 * ffn_norm,ffn_gate,ffn_up,ffn_down}); shapes are checked against the
 * hyperparameters (SLIMKV_ERR_FORMAT when they disagree). opts NULL: the
 * defaults. Quantized matrices point into the file's bytes: the file must
 * stay open until llama_free. SLIMKV_ERR_UNSUPPORTED for a weight ISA not
 * supported here. */
slimkv_status llama_load(const gguf_file *file, const llama_load_options *opts, llama_model **out);
void llama_free(llama_model *model);
const llama_hparams *llama_get_hparams(const llama_model *model);
/* 1 when the output head shares the token embedding. */
int llama_output_tied(const llama_model *model);
/* The weight kernels' ISA ("f32" when no matrix is quantized). */
const char *llama_weights_isa(const llama_model *model);
/* Bytes of the weight matrices as used (blocks, or float copies). */
size_t llama_weight_bytes(const llama_model *model);

/* How each layer's cache is configured. */
typedef struct llama_cache_options {
    slimkv_format k_format, v_format;
    int group_size, residual, n_sink, channel_align;
    /* NULL: keep every channel. Else n_layer masks, each [n_kv_head][head_dim]
     * (SLIMKV_POLICY_STATIC); a NULL entry keeps every channel of that layer. */
    const uint8_t *const *k_masks;
    /* SLIMKV_POLICY_THINK or SLIMKV_POLICY_SPARK (without k_masks): channels
     * chosen by the first prefill, with prune_ratio and window. */
    slimkv_policy policy;
    float prune_ratio;
    int window;
    int rotate; /* slimkv_config.rotate */
    int k_outliers; /* slimkv_config.k_outliers */
    /* A per-layer plan (slimkv-plan): when set, it gives every layer's
     * storage settings and masks, and the fields above are not used. */
    const slimkv_plan *plan;
    /* Token eviction (with or without a plan): SnapKV at each prefill
     * call, H2O at prefill and at every decode batch (slimkv_attend_observe);
     * window above is SnapKV's observation window. */
    slimkv_eviction eviction;
    int evict_budget, evict_pool;
    /* A measurement, not a storage format: when k_token_bits is 2..8, every
     * K row is quantized per token over groups of k_token_group channels
     * (KIVI min/max, float scale and min) and decoded again before the
     * cache sees it, after a Walsh-Hadamard rotation with fixed signs when
     * k_token_rotate (rotated back after decoding; the scores are those of
     * rotated, quantized keys). Every token is quantized, the newest ones
     * included: compare with per-channel caches at residual 0. */
    int k_token_bits, k_token_group, k_token_rotate;
} llama_cache_options;

/* Fills with dense f16 and the library's defaults (G=32, R=128, S=0, no
 * policy, no eviction; prune ratio, window, eviction budget and pool as
 * slimkv_config_init sets them). */
void llama_cache_options_init(llama_cache_options *opts);

/* Called by a forward pass for every layer with its post-RoPE q
 * [n][n_head][head_dim], k and v [n][n_kv_head][head_dim] of tokens at
 * positions pos0..pos0+n-1, as the cache receives them (calibration hooks
 * in here). */
typedef void (*llama_observer)(void *ctx, int layer, const float *q, const float *k, const float *v, int n_tokens,
                               int pos0);

/* One sequence: its caches, position and scratch buffers. */
typedef struct llama_session llama_session;

/* capacity: most tokens the sequence will hold; max_batch: most tokens one
 * forward call takes. */
slimkv_status llama_session_create(const llama_model *model, const llama_cache_options *opts, int capacity,
                                   int max_batch, llama_session **out);
void llama_session_free(llama_session *session);
int llama_session_tokens(const llama_session *session);
void llama_session_set_observer(llama_session *session, llama_observer observer, void *ctx);
/* Sum of slimkv_cache_bytes over the layers. */
slimkv_status llama_session_bytes(const llama_session *session, size_t *bytes);
/* The first layer's cache (to query kept channels and the ISA). */
const slimkv_cache *llama_session_cache(const llama_session *session, int layer);

typedef enum llama_attention_mode {
    /* slimkv_cache_prefill: the batch attends to what the cache holds and,
     * in full precision, to itself; then its K/V are compressed. */
    LLAMA_PREFILL,
    /* slimkv_cache_append, then slimkv_attend_observe (slimkv_attend, and
     * H2O's scores and eviction): every query of the batch attends only to
     * stored (compressed) K/V, as in token-by-token decode. */
    LLAMA_DECODE
} llama_attention_mode;

/* Runs n_tokens tokens through the model at the next positions. logits:
 * NULL, or room for (n_tokens - logits_from) * n_vocab floats, the logits of
 * the batch's tokens logits_from..n_tokens-1. On error the session must not
 * be used again (layers before the failing one have stored the batch). */
slimkv_status llama_forward(llama_session *session, const int32_t *tokens, int n_tokens,
                            llama_attention_mode mode, float *logits, int logits_from);

/* Perplexity of a token sequence, in windows of `ctx` tokens that start
 * every `stride` tokens (the first at tokens[0]). Each window is a fresh
 * sequence: its first ctx - stride tokens are a prompt (LLAMA_PREFILL),
 * and its last `stride` tokens are scored and fed in LLAMA_DECODE batches
 * of `chunk`, so that every scored prediction attends to stored
 * (compressed) K/V, as in generation, and sees at least ctx - stride
 * tokens. */
typedef struct llama_ppl_params {
    int ctx, stride, chunk;
    /* Called after every window (NULL: quiet). */
    void (*progress)(void *ctx, int window, int n_windows, double nll_sum, long scored);
    void *progress_ctx;
    /* NULL, or room for one id per scored token (see llama_ppl_scored):
     * the argmax of each scored prediction, in order. */
    int32_t *argmax;
    /* NULL, or room for [scored][n_vocab] floats: each scored prediction's
     * log-softmax, in order (a reference run for kl below). */
    float *logprobs;
    /* With kl: the reference run's logprobs; kl[i] gets the KL divergence
     * KL(reference || this run) of scored prediction i, in nats. */
    const float *reference_logprobs;
    double *kl;
} llama_ppl_params;

/* Scored tokens of n tokens in windows of ctx every stride (0 when n < ctx). */
long llama_ppl_scored(int n, int ctx, int stride);

typedef struct llama_ppl_result {
    double nll_sum; /* natural log */
    long scored;
    double perplexity;
    size_t bytes;    /* KV bytes held at the end of the last window */
    int tokens_held; /* tokens of the sequence then (seen: with eviction, more than the caches hold) */
    int cache_tokens_prompt, cache_tokens_end; /* tokens layer 0's cache holds after the prompt, at the end */
} llama_ppl_result;

/* SLIMKV_ERR_INVALID_ARG when n < ctx or the parameters are inconsistent. */
slimkv_status llama_perplexity(const llama_model *model, const llama_cache_options *opts, const int32_t *tokens,
                               int n, const llama_ppl_params *params, llama_ppl_result *result);

#endif /* SLIMKV_MODEL_LLAMA_H */
