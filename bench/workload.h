/* Shared code of the demo and the benchmark: a synthetic workload shaped
 * like one Llama-3-8B attention layer, the fp32 dense attention that is the
 * ground truth, cache configurations from short spec strings, and small
 * helpers (timing, option parsing, status checks). Not part of the library. */
#ifndef SLIMKV_BENCH_WORKLOAD_H
#define SLIMKV_BENCH_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "slimkv.h"

/* One Llama-3-8B layer: 32 query heads sharing 8 KV heads, head_dim 128. */
#define WORKLOAD_Q_HEADS 32
#define WORKLOAD_KV_HEADS 8
#define WORKLOAD_HEAD_DIM 128

/* K and V of n_tokens positions, [token][kv_head][head_dim] float32.
 * K has per-channel biases, a few high-magnitude outlier channels per head
 * and a RoPE rotation by position (Llama-3 base 500000), so per-channel
 * quantization and channel pruning see the structure they see in a model.
 * V is gaussian with a per-channel scale. Key statistics are taken over
 * the first 4096 positions whatever n_tokens is (shorter workloads still
 * generate them), so queries and masks do not depend on the length. */
typedef struct workload {
    int n_q_heads, n_kv_heads, head_dim;
    int n_tokens;
    uint64_t seed;
    float *k, *v;
    float *k_center;   /* [kv_head][head_dim] mean key, so queries can pick out single keys */
    float *k_mean_abs; /* [kv_head][head_dim] mean |k| per channel: the static mask's criterion */
    float *k_std;      /* [kv_head][head_dim] spread of k per channel, which queries follow */
} workload;

/* 0 on success, -1 when memory runs out (w is then left freed). */
int workload_init(workload *w, int n_tokens, uint64_t seed);
void workload_free(workload *w);

/* Floats in one token's K (or V) row: n_kv_heads * head_dim. */
size_t workload_row_floats(const workload *w);

/* The query of all q heads ([n_q_heads][head_dim]) for the token at
 * position pos (< n_tokens). Each q head looks for a few earlier keys of its
 * KV head (one recent, the others anywhere in 0..pos), plus noise, so that
 * attention is peaked on a handful of tokens the way it is in a real model,
 * and an error in any part of the compressed history is visible. */
void workload_query(const workload *w, int pos, float *q);

/* Ground truth: fp32 inputs, no compression, sums in double. The single
 * query q ([n_q_heads][head_dim]) sits at position n_tokens - 1 and attends
 * to tokens 0 .. n_tokens - 1 of its KV head (GQA), scores scaled by
 * 1/sqrt(head_dim). out: [n_q_heads][head_dim]. OpenMP over q heads.
 * 0 on success, -1 when memory runs out. */
int reference_attend(const workload *w, int n_tokens, const float *q, float *out);

/* Error of out against ref, both [n_heads][head_dim]. */
typedef struct attend_error {
    double rel_max;  /* max |out - ref| / max |ref| over every element */
    double mean_cos; /* cosine similarity of out and ref, averaged over heads */
} attend_error;

attend_error compare_outputs(const float *out, const float *ref, int n_heads, int head_dim);

/* A cache configuration given as "K[/V][@keep]" or "K[/V]+POLICY[ratio]":
 * formats f32, f16, bf16, q8, q4, q2 (V defaults to K's format), then
 * optionally one channel policy:
 *   @keep          fraction of K channels kept per KV head, e.g. "q4@0.5": a
 *                  static mask (SLIMKV_POLICY_STATIC) of the channels with
 *                  the largest mean |k| over the workload's keys;
 *   +think[ratio]  ThinK (SLIMKV_POLICY_THINK), e.g. "q4+think0.4";
 *   +spark[ratio]  SparK (SLIMKV_POLICY_SPARK), e.g. "f16+spark0.5".
 * ratio is the config's prune_ratio, in [0, 1); without it the library's
 * default (slimkv_config_init, 0.4). Examples: "f16", "q4/q2", "q4@0.5",
 * "q4+think0.4", "q4/q4+spark0.8". A spec may end in ":oN": N K outlier
 * channels per head at q8 (slimkv_config.k_outliers), e.g. "q2:o8". */
typedef struct kv_spec {
    char name[32];          /* as given */
    slimkv_format k_format, v_format;
    slimkv_policy policy;   /* NONE, STATIC (@keep), THINK or SPARK */
    double k_keep;          /* (0, 1]; 1 = no static mask */
    double prune_ratio;     /* THINK/SPARK: [0, 1); else 0 */
    int k_outliers;         /* ":oN" at the end: slimkv_config.k_outliers; else 0 */
} kv_spec;

/* 0 on success; -1 with a message on stderr when the text is malformed. */
int kv_spec_parse(const char *text, kv_spec *spec);

/* A slimkv_config for this workload's shape and the spec, holding
 * `capacity` tokens. Owns the K mask (if any) that config.k_mask points to. */
typedef struct kv_setup {
    slimkv_config config;
    uint8_t *k_mask;
} kv_setup;

/* 0 on success, -1 when memory runs out. */
int kv_setup_init(kv_setup *setup, const kv_spec *spec, const workload *w, int capacity);
void kv_setup_free(kv_setup *setup);

/* 1 for the policies whose first call must be slimkv_cache_prefill
 * (ThinK, SparK: its last `window` queries choose the K channels). */
int policy_needs_prefill(slimkv_policy policy);

/* The workload's queries at positions 0 .. n_queries - 1, [pos][n_q_heads][head_dim]
 * (workload_query of each; OpenMP over positions). malloc'ed: free() it.
 * NULL when memory runs out. */
float *workload_queries(const workload *w, int n_queries);

/* The one way the demo and the bench fill a cache: creates it from the
 * config and stores the workload's tokens 0 .. n_tokens - 1.
 * - No policy or a static mask: every token by slimkv_cache_append, in
 *   chunks (appending quantizes; chunks bound the library's scratch memory).
 * - ThinK and SparK: the first p = min(prefill_tokens, n_tokens) tokens
 *   (all of them when prefill_tokens <= 0) in ONE slimkv_cache_prefill call
 *   with the workload's real queries at those positions, so that the
 *   policy chooses its channels from the last `window` queries of that
 *   prompt; the rest is appended in chunks. The prefill also computes the
 *   prompt's causal attention (discarded here), which costs O(p^2): keep p
 *   to a few thousand tokens.
 * prompt_q: the queries of positions 0 .. p - 1 (workload_queries), or NULL
 * to have them generated here; unused without ThinK/SparK. On error
 * nothing is left allocated. */
slimkv_status workload_fill_cache(const workload *w, const slimkv_config *config, int n_tokens,
                                  int prefill_tokens, const float *prompt_q, slimkv_cache **out);

/* Bytes the cache holds (slimkv_cache_bytes); 0 if the call fails, which
 * with a valid cache it cannot. */
size_t cache_bytes(const slimkv_cache *cache);

/* Monotonic wall clock in seconds. */
double now_seconds(void);

/* The 1-minute load average (Linux /proc/loadavg), -1 if unknown. Read it
 * at start, before the program's own work raises it. */
double load_average(void);
/* Prints a note on stdout when that load says other work competes for the
 * cores, which makes timings unreliable. */
void note_if_busy(double load);

/* Reports a failed library call on stderr ("what: status name") and
 * returns 1; returns 0 for SLIMKV_OK. */
int report_status(slimkv_status status, const char *what);

/* Strict decimal parsing: 0 on success, -1 with a message on stderr. */
int parse_positive_int(const char *text, const char *option, int *value);
/* Comma-separated positive integers with an optional k suffix (x1024),
 * e.g. "1k,2k,4096"; *values is malloc'ed. */
int parse_int_list(const char *text, const char *option, int **values, int *count);
/* Comma-separated words; the copies and *items are malloc'ed: free with free_word_list. */
int parse_word_list(const char *text, char ***items, int *count);
void free_word_list(char **items, int count);

#endif /* SLIMKV_BENCH_WORKLOAD_H */
