/* slimkv-demo: what SlimKV buys on one Llama-3-8B-shaped layer.
 *
 * For dense f16 and several compressed configurations: append a prompt to
 * a cache, run a decode loop (append one token, attend its query), and
 * print the memory held, the time per decode step and the error of the
 * attention output against an fp32 dense reference. Needs no arguments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "workload.h"

#define DEFAULT_PROMPT_TOKENS 4096
#define DEFAULT_DECODE_STEPS 16
#define WORKLOAD_SEED 20240607u

/* Dense f16 first: it is the baseline the others are compared with. */
static const char *const demo_specs[] = {"f16", "q8", "q4", "q2", "q4@0.5", "q2@0.5"};
#define DEMO_SPEC_COUNT (int)(sizeof demo_specs / sizeof demo_specs[0])

typedef struct demo_options {
    int prompt_tokens, decode_steps, threads;
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
    fprintf(to, "usage: slimkv-demo [--tokens N] [--steps N] [--threads N]\n"
                "  --tokens N   prompt tokens appended before decoding (default %d)\n"
                "  --steps N    decode steps: append one token, attend its query (default %d)\n"
                "  --threads N  OpenMP threads (default: OMP_NUM_THREADS or all cores)\n",
            DEFAULT_PROMPT_TOKENS, DEFAULT_DECODE_STEPS);
}

/* 0: run; 1: exit successfully (--help); -1: bad arguments. */
static int parse_options(int argc, char **argv, demo_options *opt)
{
    opt->prompt_tokens = DEFAULT_PROMPT_TOKENS;
    opt->decode_steps = DEFAULT_DECODE_STEPS;
    opt->threads = omp_get_max_threads();
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        int *target = strcmp(arg, "--tokens") == 0    ? &opt->prompt_tokens
                      : strcmp(arg, "--steps") == 0   ? &opt->decode_steps
                      : strcmp(arg, "--threads") == 0 ? &opt->threads
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
 * K channels per KV head (averaged over heads) out of head_dim. */
static void describe_cache(const slimkv_config *cfg, const slimkv_cache *cache, char *text, size_t size)
{
    int kept_total = 0;
    for (int h = 0; h < cfg->n_kv_heads; h++) {
        int count = 0;
        if (slimkv_cache_kept_channels(cache, h, 0, NULL, &count) == SLIMKV_OK)
            kept_total += count;
    }
    snprintf(text, size, "%s/%s K %3d/%d", slimkv_format_name(cfg->k_format), slimkv_format_name(cfg->v_format),
             kept_total / cfg->n_kv_heads, cfg->head_dim);
}

static void print_header(const demo_options *opt, const workload *w, const slimkv_cache *first)
{
    const char *isa = "?";
    slimkv_cache_isa(first, &isa);
    printf("SlimKV %s demo: one Llama-3-8B layer (%d q heads, %d KV heads, head_dim %d)\n", slimkv_version(),
           w->n_q_heads, w->n_kv_heads, w->head_dim);
    printf("prompt %d tokens, then %d decode steps (append 1 token + attend 1 query)\n", opt->prompt_tokens,
           opt->decode_steps);
    printf("kernels: %s   threads: %d\n", isa, omp_get_max_threads());
    note_if_busy(opt->load_at_start);
    printf("error vs fp32 dense attention: rel max = max|out - ref| / max|ref| per step (mean and worst over "
           "steps),\n  cos = cosine similarity of out and ref per q head (mean over heads and steps)\n\n");
    printf("%-8s %-18s %8s %8s %8s %10s %10s %9s\n", "config", "storage", "MiB", "smaller", "ms/step",
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
        failed = report_status(workload_fill_cache(&w, &setup.config, opt->prompt_tokens, &cache),
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
            printf("%-8s %-18s %8.2f %7.2fx %8.2f %10.2e %10.2e %9.6f\n", spec.name, storage,
                   (double)result.bytes / (1024.0 * 1024.0), (double)baseline_bytes / (double)result.bytes,
                   result.ms_per_step, result.rel_max_mean, result.rel_max_worst, result.cos_mean);
            fflush(stdout);
        }
        slimkv_cache_destroy(cache);
        kv_setup_free(&setup);
    }
    free_truth(&truth);
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
