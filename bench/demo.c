/* slimkv-demo: what SlimKV buys on one Llama-3-8B-shaped layer.
 *
 * For dense f16 and several compressed configurations (quantized formats,
 * a static channel mask, ThinK and SparK): fill a cache with a prompt, run a
 * decode loop (append one token, attend its query), and print the memory
 * held, the time per decode step and the error of the attention output
 * against an fp32 dense reference. Needs no arguments.
 *
 * ThinK and SparK choose their K channels from the queries of the first
 * prefill, so their caches get the prompt through slimkv_cache_prefill (with
 * the workload's queries); the others append it (workload_fill_cache). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "workload.h"

#define DEFAULT_PROMPT_TOKENS 4096
#define DEFAULT_DECODE_STEPS 16
#define WORKLOAD_SEED 20240607u

/* Dense f16 first: it is the baseline the others are compared with. Then
 * quantization (q2:o8: 8 K outlier channels per head at q8), static masks,
 * ThinK (prune 40% of K channels per head) and SparK (prune 50% / 80% of K
 * channels per token). */
static const char *const demo_specs[] = {"f16",          "q8",           "q4",          "q3",
                                         "q2",           "q2:o8",        "q4@0.5",      "q2@0.5",
                                         "f16+think0.4", "q4+think0.4",  "f16+spark0.5", "q4+spark0.5",
                                         "f16+spark0.8", "q4+spark0.8"};
#define DEMO_SPEC_COUNT (int)(sizeof demo_specs / sizeof demo_specs[0])
#define CONFIG_WIDTH 12 /* the longest name above */

typedef struct demo_options {
    int prompt_tokens, decode_steps, threads;
    int prefill_tokens; /* ThinK/SparK: prompt tokens given to the prefill; 0 = all */
    double load_at_start;
} demo_options;

/* The decode loop's inputs and what the reference computes for them. */
typedef struct decode_truth {
    int steps, q_floats;
    float *queries; /* [step][n_q_heads][head_dim] */
    float *outputs; /* [step][n_q_heads][head_dim] */
} decode_truth;

/* One row of the table. */
typedef struct demo_result {
    size_t bytes;
    double ms_per_step;
    double rel_max_mean, rel_max_worst; /* over steps */
    double cos_mean;                    /* over heads and steps */
} demo_result;

static void usage(FILE *to)
{
    fprintf(to, "usage: slimkv-demo [--tokens N] [--steps N] [--threads N] [--prefill N]\n"
                "  --tokens N   prompt tokens stored before decoding (default %d)\n"
                "  --steps N    decode steps: append one token, attend its query (default %d)\n"
                "  --threads N  OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
                "  --prefill N  ThinK/SparK rows: the first N prompt tokens go through\n"
                "               slimkv_cache_prefill (whose last `window` = 32 queries choose the\n"
                "               channels), the rest is appended (default: the whole prompt; the\n"
                "               prefill's causal attention costs O(N^2), so cap N for long prompts)\n",
            DEFAULT_PROMPT_TOKENS, DEFAULT_DECODE_STEPS);
}

/* 0: run; 1: exit successfully (--help); -1: bad arguments. */
static int parse_options(int argc, char **argv, demo_options *opt)
{
    opt->prompt_tokens = DEFAULT_PROMPT_TOKENS;
    opt->decode_steps = DEFAULT_DECODE_STEPS;
    opt->threads = omp_get_max_threads();
    opt->prefill_tokens = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        int *target = strcmp(arg, "--tokens") == 0    ? &opt->prompt_tokens
                      : strcmp(arg, "--steps") == 0   ? &opt->decode_steps
                      : strcmp(arg, "--threads") == 0 ? &opt->threads
                      : strcmp(arg, "--prefill") == 0 ? &opt->prefill_tokens
                                                      : NULL;
        if (!target) {
            fprintf(stderr, "unknown option: %s\n", arg);
            usage(stderr);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s needs a value\n", arg);
            return -1;
        }
        if (parse_positive_int(argv[++i], arg, target) != 0)
            return -1;
    }
    return 0;
}

/* Prompt tokens a ThinK/SparK cache gets through slimkv_cache_prefill. */
static int prefill_count(const demo_options *opt)
{
    return opt->prefill_tokens > 0 && opt->prefill_tokens < opt->prompt_tokens ? opt->prefill_tokens
                                                                               : opt->prompt_tokens;
}

static void free_truth(decode_truth *truth)
{
    free(truth->queries);
    free(truth->outputs);
}

/* Query and reference output of each decode step; step s decodes the token
 * at position prompt_tokens + s. */
static int make_truth(const workload *w, int prompt_tokens, int steps, decode_truth *truth)
{
    truth->steps = steps;
    truth->q_floats = w->n_q_heads * w->head_dim;
    truth->queries = malloc((size_t)steps * truth->q_floats * sizeof(float));
    truth->outputs = malloc((size_t)steps * truth->q_floats * sizeof(float));
    if (!truth->queries || !truth->outputs)
        return -1;
    for (int s = 0; s < steps; s++) {
        float *q = truth->queries + (size_t)s * truth->q_floats;
        int pos = prompt_tokens + s;
        workload_query(w, pos, q);
        if (reference_attend(w, pos + 1, q, truth->outputs + (size_t)s * truth->q_floats) != 0)
            return -1;
    }
    return 0;
}

/* Decode loop on a cache that holds the prompt. Returns 0, or 1 after
 * reporting a failed library call. */
static int run_decode(const workload *w, slimkv_cache *cache, int prompt_tokens, const decode_truth *truth,
                      float *out, demo_result *result)
{
    size_t row = workload_row_floats(w);
    double seconds = 0.0, rel_sum = 0.0, cos_sum = 0.0;
    result->rel_max_worst = 0.0;
    for (int s = 0; s < truth->steps; s++) {
        int pos = prompt_tokens + s;
        const float *q = truth->queries + (size_t)s * truth->q_floats;
        double start = now_seconds();
        if (report_status(slimkv_cache_append(cache, w->k + (size_t)pos * row, w->v + (size_t)pos * row, 1),
                          "slimkv_cache_append") ||
            report_status(slimkv_attend(cache, q, 1, out), "slimkv_attend"))
            return 1;
        seconds += now_seconds() - start;
        attend_error e = compare_outputs(out, truth->outputs + (size_t)s * truth->q_floats, w->n_q_heads,
                                         w->head_dim);
        result->rel_max_worst = e.rel_max > result->rel_max_worst ? e.rel_max : result->rel_max_worst;
        rel_sum += e.rel_max;
        cos_sum += e.mean_cos;
    }
    result->rel_max_mean = rel_sum / truth->steps;
    result->cos_mean = cos_sum / truth->steps;
    result->ms_per_step = 1e3 * seconds / truth->steps;
    result->bytes = cache_bytes(cache);
    return 0;
}

/* What the cache stores, e.g. "q4/q4 K  64/128": K/V formats, then the kept
 * K channels per KV head (averaged over heads; for ThinK those its prefill
 * chose) out of head_dim; for SparK "T  64/128", the K channels each token
 * keeps (T = D - floor(ratio * D), as the library computes it). */
static void describe_cache(const slimkv_config *cfg, const slimkv_cache *cache, char *text, size_t size)
{
    int kept_total = 0;
    for (int h = 0; h < cfg->n_kv_heads; h++) {
        int count = 0;
        if (slimkv_cache_kept_channels(cache, h, 0, NULL, &count) == SLIMKV_OK)
            kept_total += count;
    }
    int per_token = cfg->policy == SLIMKV_POLICY_SPARK;
    int kept = per_token ? cfg->head_dim - (int)floorf(cfg->prune_ratio * (float)cfg->head_dim)
                         : kept_total / cfg->n_kv_heads;
    int n = snprintf(text, size, "%s/%s %c %3d/%d", slimkv_format_name(cfg->k_format),
                     slimkv_format_name(cfg->v_format), per_token ? 'T' : 'K', kept, cfg->head_dim);
    if (cfg->k_outliers && n > 0 && (size_t)n < size)
        snprintf(text + n, size - (size_t)n, ", %d q8", cfg->k_outliers);
}

static void print_header(const demo_options *opt, const workload *w, const slimkv_cache *first)
{
    const char *isa = "?";
    slimkv_cache_isa(first, &isa);
    printf("SlimKV %s demo: one Llama-3-8B layer (%d q heads, %d KV heads, head_dim %d)\n", slimkv_version(),
           w->n_q_heads, w->n_kv_heads, w->head_dim);
    printf("prompt %d tokens, then %d decode steps (append 1 token + attend 1 query)\n", opt->prompt_tokens,
           opt->decode_steps);
    int prefilled = prefill_count(opt);
    slimkv_config defaults;
    slimkv_config_init(&defaults);
    if (prefilled < opt->prompt_tokens)
        printf("prompt stored by append; +think/+spark: slimkv_cache_prefill of the first %d tokens (its last %d\n"
               "  queries choose the K channels), then append\n",
               prefilled, defaults.window);
    else
        printf("prompt stored by append; +think/+spark: by slimkv_cache_prefill (its last %d queries choose the K "
               "channels)\n",
               defaults.window);
    printf("kernels: %s   threads: %d\n", isa, omp_get_max_threads());
    note_if_busy(opt->load_at_start);
    printf("error vs fp32 dense attention: rel max = max|out - ref| / max|ref| per step (mean and worst over "
           "steps),\n  cos = cosine similarity of out and ref per q head (mean over heads and steps)\n"
           "storage: K/V formats, K n/D = K channels kept per KV head (@keep: static mask by mean |k|;\n"
           "  +think: ThinK's choice at prefill), T n/D = K channels SparK keeps per token, n q8 = K outlier\n"
           "  channels per KV head stored at 8 bits (:o)\n\n");
    printf("%-*s %-23s %8s %8s %8s %10s %10s %9s\n", CONFIG_WIDTH, "config", "storage", "MiB", "smaller", "ms/step",
           "rel max", "worst", "cos");
}

static int run_demo(const demo_options *opt)
{
    workload w;
    decode_truth truth = {0};
    int total_tokens = opt->prompt_tokens + opt->decode_steps;
    float *out = malloc((size_t)WORKLOAD_Q_HEADS * WORKLOAD_HEAD_DIM * sizeof *out);
    if (!out || workload_init(&w, total_tokens, WORKLOAD_SEED) != 0) {
        fprintf(stderr, "out of memory for the workload\n");
        free(out);
        return 1;
    }
    int failed = make_truth(&w, opt->prompt_tokens, opt->decode_steps, &truth) != 0;
    if (failed)
        fprintf(stderr, "out of memory for the reference\n");
    /* The prompt's queries, for the ThinK/SparK prefills: made once. */
    int prefilled = prefill_count(opt);
    float *prompt_q = failed ? NULL : workload_queries(&w, prefilled);
    if (!failed && !prompt_q) {
        fprintf(stderr, "out of memory for the prompt's queries\n");
        failed = 1;
    }
    size_t baseline_bytes = 0;
    for (int i = 0; i < DEMO_SPEC_COUNT && !failed; i++) {
        kv_spec spec;
        kv_setup setup;
        slimkv_cache *cache = NULL;
        demo_result result;
        if (kv_spec_parse(demo_specs[i], &spec) != 0 || kv_setup_init(&setup, &spec, &w, total_tokens) != 0) {
            failed = 1;
            break;
        }
        failed = report_status(
            workload_fill_cache(&w, &setup.config, opt->prompt_tokens, prefilled, prompt_q, &cache),
            "filling the prompt");
        if (!failed) {
            if (i == 0)
                print_header(opt, &w, cache);
            failed = run_decode(&w, cache, opt->prompt_tokens, &truth, out, &result);
        }
        if (!failed) {
            char storage[40];
            describe_cache(&setup.config, cache, storage, sizeof storage);
            baseline_bytes = i == 0 ? result.bytes : baseline_bytes;
            printf("%-*s %-23s %8.2f %7.2fx %8.2f %10.2e %10.2e %9.6f\n", CONFIG_WIDTH, spec.name, storage,
                   (double)result.bytes / (1024.0 * 1024.0), (double)baseline_bytes / (double)result.bytes,
                   result.ms_per_step, result.rel_max_mean, result.rel_max_worst, result.cos_mean);
            fflush(stdout);
        }
        slimkv_cache_destroy(cache);
        kv_setup_free(&setup);
    }
    free_truth(&truth);
    free(prompt_q);
    workload_free(&w);
    free(out);
    return failed;
}

int main(int argc, char **argv)
{
    double load = load_average();
    demo_options opt;
    int parsed = parse_options(argc, argv, &opt);
    if (parsed != 0)
        return parsed > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
    opt.load_at_start = load;
    omp_set_num_threads(opt.threads);
    return run_demo(&opt) ? EXIT_FAILURE : EXIT_SUCCESS;
}
