/* slimkv-bench: decode attention speed against the machine's read bandwidth.
 *
 * Per format config x context length x thread count: the time of one decode
 * step (slimkv_attend of one query at the last position), the effective
 * GB/s of compressed bytes read (slimkv_cache_bytes per step), and that as a
 * percentage of the read bandwidth this binary measures in the same run,
 * which is the physical limit of decode attention.
 *
 * A real decode step walks every layer, so each layer's cache comes from
 * DRAM. The main figures therefore cycle through a set of distinct layer
 * caches (same config) that together exceed the last-level cache several
 * times, attending one query on each in turn, and report the time per
 * layer. Attending one cache over and over ("resident") is reported apart:
 * when that cache fits in the LLC it flatters the kernel.
 *
 * ThinK and SparK caches (configs "+think", "+spark") must start with a
 * prefill, whose causal attention costs O(n^2): each gets its first
 * --prefill tokens (default 512) through slimkv_cache_prefill with the
 * workload's real queries, so the policy chooses channels from realistic
 * queries, and the rest of the context by append (workload_fill_cache). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <omp.h>

#include "workload.h"

#define WORKLOAD_SEED 20240607u
#define DEFAULT_FORMATS "f16,q8,q4,q2,q4@0.5,q2@0.5,q4+think0.4,q4+spark0.5"
#define DEFAULT_CONTEXTS "1k,2k,4k,8k,16k,32k"
#define DEFAULT_THREADS "1,2"
#define DEFAULT_REPS 5
#define DEFAULT_PREFILL 512 /* ThinK/SparK: tokens given to the first (and only) prefill */
#define DEFAULT_LLC_MULTIPLE 4  /* the layer set is this many times the LLC */
#define QUICK_CONTEXTS "256,512"
#define QUICK_REPS 1
#define QUICK_LLC_MULTIPLE 1
#define FALLBACK_LLC_BYTES ((size_t)32 << 20)
#define MIB (1024.0 * 1024.0)
/* Memory the layer caches of one config may take, and the most the
 * workload (fp32 K and V) may take; the machine has 24 GiB. */
#define LAYER_SET_BUDGET ((size_t)4 << 30)
#define WORKLOAD_BUDGET ((size_t)2 << 30)
#define BANDWIDTH_PASSES 5
#define BANDWIDTH_MIN_BYTES ((size_t)256 << 20)

typedef struct bench_options {
    kv_spec *specs;
    int n_specs;
    int *contexts, n_contexts;
    int *threads, n_threads;
    int reps;
    int llc_multiple;
    int prefill_tokens;
    int busy;             /* CPU-bound processes run beside the bench */
    int prefill_chunk;    /* > 0: --prefill-speed, chunks of this many tokens */
    const char *csv_path, *json_path;
} bench_options;

/* One line of the report. */
typedef struct bench_row {
    const kv_spec *spec;
    int context, threads, layers;
    size_t cache_bytes;
    double dram_seconds, resident_seconds; /* per attend, median over reps */
    double read_gbps;                      /* the machine's, at this thread count */
    double cos;                            /* output vs fp32 dense reference, mean over heads */
    double speedup;                        /* f16's DRAM time / this one's, same context and threads; 0: no f16 row */
} bench_row;

typedef struct bench_report {
    const char *isa;
    size_t llc_bytes;
    int llc_multiple;
    int reps;
    int prefill_tokens;
    int busy;
    int any_prefill; /* some config is ThinK or SparK */
    int name_width; /* of the config column: the longest spec name */
    double load_at_start;
    int n_threads;
    const int *threads;
    const double *read_gbps; /* [n_threads] */
    bench_row *rows;
    int n_rows, cap_rows;
} bench_report;

static void usage(FILE *to)
{
    fprintf(to,
            "usage: slimkv-bench [options]\n"
            "  --formats LIST    cache configs (default %s):\n"
            "                    K[/V]              formats f32 f16 bf16 q8 q4 q3 q2, V defaults to K\n"
            "                    K[/V]@keep         static mask keeping that fraction of K channels\n"
            "                                       (largest mean |k|), e.g. q4@0.5\n"
            "                    K[/V]+think[ratio] ThinK: query-aware K channel pruning at prefill,\n"
            "                                       prune_ratio default 0.4, e.g. q4+think0.4\n"
            "                    K[/V]+spark[ratio] SparK: per-token top-T K channels, pruned ones\n"
            "                                       restored in the score, e.g. q4+spark0.5\n"
            "                    ...:oN             N K outlier channels per head at q8, the rest\n"
            "                                       in K's format, e.g. q2:o8\n"
            "  --prefill N       ThinK/SparK: the first N tokens of each cache go through\n"
            "                    slimkv_cache_prefill (O(N^2)), the rest is appended (default %d)\n"
            "  --contexts LIST   context lengths, k = x1024 (default %s)\n"
            "  --threads LIST    OpenMP thread counts (default %s)\n"
            "  --reps N          timed passes per measurement, median reported (default %d)\n"
            "  --llc-multiple N  layer caches cycled add up to N x the last-level cache (default %d)\n"
            "  --prefill-speed C instead of decode: prefill tokens/s of a prompt of each context\n"
            "                    length, given to slimkv_cache_prefill in chunks of C tokens\n"
            "  --busy N          run N CPU-bound processes beside the bench (a laptop with other\n"
            "                    programs running); default 0\n"
            "  --csv FILE        also write the results as CSV\n"
            "  --json FILE       also write the results as JSON\n"
            "  --quick           smoke run: contexts %s, %d reps, layer set %dx LLC\n",
            DEFAULT_FORMATS, DEFAULT_PREFILL, DEFAULT_CONTEXTS, DEFAULT_THREADS, DEFAULT_REPS, DEFAULT_LLC_MULTIPLE,
            QUICK_CONTEXTS, QUICK_REPS, QUICK_LLC_MULTIPLE);
}

static void free_options(bench_options *opt)
{
    free(opt->specs);
    free(opt->contexts);
    free(opt->threads);
}

static int parse_specs(const char *text, bench_options *opt)
{
    char **words;
    int n;
    if (parse_word_list(text, &words, &n) != 0)
        return -1;
    free(opt->specs);
    opt->specs = calloc((size_t)n, sizeof *opt->specs);
    int ok = opt->specs != NULL;
    for (int i = 0; ok && i < n; i++)
        ok = kv_spec_parse(words[i], &opt->specs[i]) == 0;
    free_word_list(words, n);
    opt->n_specs = n;
    return ok ? 0 : -1;
}

/* Replaces *list with the parsed text. */
static int parse_list_option(const char *text, const char *option, int **list, int *count)
{
    int *parsed, n;
    if (parse_int_list(text, option, &parsed, &n) != 0)
        return -1;
    free(*list);
    *list = parsed;
    *count = n;
    return 0;
}

/* 0: run; 1: exit successfully (--help); -1: bad arguments. */
static int parse_options(int argc, char **argv, bench_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->reps = DEFAULT_REPS;
    opt->llc_multiple = DEFAULT_LLC_MULTIPLE;
    opt->prefill_tokens = DEFAULT_PREFILL;
    const char *formats = DEFAULT_FORMATS, *contexts = DEFAULT_CONTEXTS, *threads = DEFAULT_THREADS;
    int quick = 0, reps_given = 0, contexts_given = 0, multiple_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(arg, "--quick") == 0) {
            quick = 1;
            continue;
        }
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        int known = strcmp(arg, "--formats") == 0 || strcmp(arg, "--contexts") == 0 ||
                    strcmp(arg, "--threads") == 0 || strcmp(arg, "--reps") == 0 ||
                    strcmp(arg, "--llc-multiple") == 0 || strcmp(arg, "--prefill") == 0 ||
                    strcmp(arg, "--busy") == 0 || strcmp(arg, "--prefill-speed") == 0 ||
                    strcmp(arg, "--csv") == 0 || strcmp(arg, "--json") == 0;
        if (!known) {
            fprintf(stderr, "unknown option: %s\n", arg);
            usage(stderr);
            return -1;
        }
        if (!value) {
            fprintf(stderr, "%s needs a value\n", arg);
            return -1;
        }
        i++;
        if (strcmp(arg, "--formats") == 0) {
            formats = value;
        } else if (strcmp(arg, "--contexts") == 0) {
            contexts = value;
            contexts_given = 1;
        } else if (strcmp(arg, "--threads") == 0) {
            threads = value;
        } else if (strcmp(arg, "--reps") == 0) {
            if (parse_positive_int(value, arg, &opt->reps) != 0)
                return -1;
            reps_given = 1;
        } else if (strcmp(arg, "--llc-multiple") == 0) {
            if (parse_positive_int(value, arg, &opt->llc_multiple) != 0)
                return -1;
            multiple_given = 1;
        } else if (strcmp(arg, "--prefill") == 0) {
            if (parse_positive_int(value, arg, &opt->prefill_tokens) != 0)
                return -1;
        } else if (strcmp(arg, "--prefill-speed") == 0) {
            if (parse_positive_int(value, arg, &opt->prefill_chunk) != 0)
                return -1;
        } else if (strcmp(arg, "--busy") == 0) {
            if (strcmp(value, "0") != 0 && parse_positive_int(value, arg, &opt->busy) != 0)
                return -1;
            if (opt->busy > 64) {
                fprintf(stderr, "--busy: at most 64 processes\n");
                return -1;
            }
        } else if (strcmp(arg, "--csv") == 0) {
            opt->csv_path = value;
        } else {
            opt->json_path = value;
        }
    }
    if (quick) { /* explicit options still win */
        contexts = contexts_given ? contexts : QUICK_CONTEXTS;
        opt->reps = reps_given ? opt->reps : QUICK_REPS;
        opt->llc_multiple = multiple_given ? opt->llc_multiple : QUICK_LLC_MULTIPLE;
    }
    if (parse_specs(formats, opt) != 0 || parse_list_option(contexts, "--contexts", &opt->contexts, &opt->n_contexts) ||
        parse_list_option(threads, "--threads", &opt->threads, &opt->n_threads))
        return -1;
    return 0;
}

/* ---- the machine ---- */

/* Size of the level-3 cache as Linux reports it, else FALLBACK_LLC_BYTES. */
static size_t last_level_cache_bytes(void)
{
    for (int index = 0; index < 16; index++) {
        char path[96];
        int level = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", index);
        FILE *f = fopen(path, "r");
        if (!f)
            break;
        int got = fscanf(f, "%d", &level);
        fclose(f);
        if (got != 1 || level != 3)
            continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
        f = fopen(path, "r");
        if (!f)
            break;
        unsigned long long size = 0;
        char unit = 0;
        got = fscanf(f, "%llu%c", &size, &unit);
        fclose(f);
        if (got >= 1 && size > 0)
            return (size_t)size * (unit == 'K' ? 1024u : unit == 'M' ? 1024u * 1024u : 1u);
    }
    return FALLBACK_LLC_BYTES;
}

/* Sum of the buffer's words. Four words per step leave one loop-carried add
 * per 32 bytes, so the loads, not the adds, are the limit. */
static uint64_t sum_words(const uint64_t *words, size_t n)
{
    uint64_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (size_t i = 0; i < n; i += 4)
        total += words[i] + words[i + 1] + words[i + 2] + words[i + 3];
    return total;
}

/* Read bandwidth in GB/s at each thread count: the best of a few passes of
 * a multi-threaded sum over a buffer much larger than the LLC. */
static int measure_read_bandwidth(size_t llc_bytes, const int *threads, int n_threads, double *gbps)
{
    size_t bytes = 8 * llc_bytes > BANDWIDTH_MIN_BYTES ? 8 * llc_bytes : BANDWIDTH_MIN_BYTES;
    size_t n = bytes / sizeof(uint64_t) / 4 * 4;
    uint64_t *words = malloc(n * sizeof *words);
    if (!words)
        return -1;
    /* Written, not just allocated: untouched pages all map to one zero page,
     * which would be read from the cache. Same schedule as the reads. */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        words[i] = i;
    volatile uint64_t sink = 0; /* keeps the sums from being optimized away */
    for (int i = 0; i < n_threads; i++) {
        omp_set_num_threads(threads[i]);
        double best = INFINITY;
        sink += sum_words(words, n); /* warm-up: starts the thread team */
        for (int pass = 0; pass < BANDWIDTH_PASSES; pass++) {
            double start = now_seconds();
            sink += sum_words(words, n);
            double seconds = now_seconds() - start;
            best = seconds < best ? seconds : best;
        }
        gbps[i] = (double)(n * sizeof *words) / best / 1e9;
    }
    (void)sink;
    free(words);
    return 0;
}

/* ---- measurements ---- */

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int n)
{
    qsort(values, (size_t)n, sizeof *values, compare_doubles);
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

/* Median over reps of the time per attend of one pass that attends q on
 * caches[order(0)], ..., caches[order(layers - 1)]; order(i) = i when
 * cycling, 0 when resident. One untimed pass first warms caches and threads. */
static slimkv_status time_passes(slimkv_cache *const *caches, int layers, int cycle, const float *q, float *out,
                                 int reps, double *seconds_per_attend)
{
    double *pass = malloc((size_t)reps * sizeof *pass);
    if (!pass)
        return SLIMKV_ERR_NOMEM;
    slimkv_status st = SLIMKV_OK;
    for (int rep = -1; rep < reps && st == SLIMKV_OK; rep++) {
        double start = now_seconds();
        for (int layer = 0; layer < layers && st == SLIMKV_OK; layer++)
            st = slimkv_attend(caches[cycle ? layer : 0], q, 1, out);
        if (rep >= 0)
            pass[rep] = (now_seconds() - start) / layers;
    }
    if (st == SLIMKV_OK)
        *seconds_per_attend = median(pass, reps);
    free(pass);
    return st;
}

/* Layer caches so that together they exceed the LLC llc_multiple times (at
 * least two, so that no pass reads what the one before left in the cache),
 * within LAYER_SET_BUDGET. */
static int layer_count(size_t cache_bytes, size_t llc_bytes, int llc_multiple)
{
    size_t target = llc_bytes * (size_t)llc_multiple;
    size_t layers = cache_bytes ? (target + cache_bytes - 1) / cache_bytes : 2;
    size_t affordable = cache_bytes ? LAYER_SET_BUDGET / cache_bytes : 2;
    layers = layers > affordable ? affordable : layers;
    return layers < 2 ? 2 : (int)layers;
}

static int add_row(bench_report *report, const bench_row *row)
{
    if (report->n_rows == report->cap_rows) {
        int cap = report->cap_rows ? 2 * report->cap_rows : 64;
        bench_row *grown = realloc(report->rows, (size_t)cap * sizeof *grown);
        if (!grown)
            return -1;
        report->rows = grown;
        report->cap_rows = cap;
    }
    report->rows[report->n_rows++] = *row;
    return 0;
}

static double gbps_of(const bench_row *row, double seconds)
{
    return (double)row->cache_bytes / seconds / 1e9;
}

static void print_table_header(const bench_report *report, const workload *w)
{
    printf("SlimKV %s bench: one Llama-3-8B layer (%d q heads, %d KV heads, head_dim %d), kernels %s\n",
           slimkv_version(), w->n_q_heads, w->n_kv_heads, w->head_dim, report->isa);
    printf("decode step = slimkv_attend of 1 query at the last position; bytes read per step = "
           "slimkv_cache_bytes\n");
    printf("last-level cache %.1f MiB; DRAM figures cycle through layer caches adding up to >= %dx that\n",
           (double)report->llc_bytes / MIB, report->llc_multiple);
    printf("read bandwidth (multi-threaded sum, best of %d):", BANDWIDTH_PASSES);
    for (int i = 0; i < report->n_threads; i++)
        printf("%s %d thread%s %.1f GB/s", i ? "," : "", report->threads[i], report->threads[i] == 1 ? "" : "s",
               report->read_gbps[i]);
    printf("\n");
    if (report->any_prefill) {
        slimkv_config defaults;
        slimkv_config_init(&defaults);
        printf("+think/+spark caches: slimkv_cache_prefill of the first %d tokens (its last %d queries choose the\n"
               "  K channels), then append; the other configs: append only\n",
               report->prefill_tokens, defaults.window);
    }
    if (report->busy)
        printf("%d CPU-bound process%s ran beside the bench, bandwidth measurement included (--busy)\n",
               report->busy, report->busy == 1 ? "" : "es");
    else
        note_if_busy(report->load_at_start);
    printf("x f16: the f16 config's DRAM time over this one's, same context and threads\n\n");
    int width = report->name_width;
    printf("%-*s %7s %3s %6s %9s | %-33s | %-27s | %8s\n", width, "", "", "", "", "", "    DRAM (layers cycled)",
           "  resident (one cache)", "");
    printf("%-*s %7s %3s %6s %9s | %9s %8s %7s %6s | %9s %8s %7s  | %8s\n", width, "config", "context", "thr",
           "layers", "MiB/layer", "ms/layer", "GB/s", "% bw", "x f16", "ms", "GB/s", "% bw", "cos");
}

/* The f16/f16 config without pruning, the baseline of the speedup column. */
static int is_f16_baseline(const kv_spec *spec)
{
    return spec->k_format == SLIMKV_F16 && spec->v_format == SLIMKV_F16 && spec->policy == SLIMKV_POLICY_NONE &&
           spec->k_keep >= 1.0f;
}

/* f16's DRAM time over this row's, from a row already measured in this run. */
static double speedup_of(const bench_report *report, const bench_row *row)
{
    for (int i = 0; i < report->n_rows; i++) {
        const bench_row *b = &report->rows[i];
        if (b->context == row->context && b->threads == row->threads && is_f16_baseline(b->spec))
            return b->dram_seconds / row->dram_seconds;
    }
    return is_f16_baseline(row->spec) ? 1.0 : 0.0;
}

/* Busy processes: each spins on arithmetic until the bench kills it (or
 * exits: the child asks for SIGKILL when its parent dies). */
static int start_busy(int n, pid_t *pids)
{
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return -1;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            volatile double x = 1.0;
            for (;;)
                x = x * 1.0000001 + 1e-9;
        }
        pids[i] = pid;
    }
    return 0;
}

static void stop_busy(int n, const pid_t *pids)
{
    for (int i = 0; i < n; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
        }
}

static void print_row(const bench_row *row, const bench_report *report)
{
    double dram_gbps = gbps_of(row, row->dram_seconds), res_gbps = gbps_of(row, row->resident_seconds);
    char speedup[16] = "     -";
    if (row->speedup > 0.0)
        snprintf(speedup, sizeof speedup, "%5.2fx", row->speedup);
    printf("%-*s %7d %3d %6d %9.2f | %9.3f %8.2f %6.1f%% %s | %9.3f %8.2f %6.1f%%%s | %8.5f\n", report->name_width,
           row->spec->name,
           row->context, row->threads, row->layers, (double)row->cache_bytes / MIB, 1e3 * row->dram_seconds,
           dram_gbps, 100.0 * dram_gbps / row->read_gbps, speedup, 1e3 * row->resident_seconds, res_gbps,
           100.0 * res_gbps / row->read_gbps, row->cache_bytes > report->llc_bytes ? "*" : " ", row->cos);
    fflush(stdout);
}

/* Attends once on the first cache and compares with the reference: the
 * speed of a kernel that computes the wrong thing would mean nothing. */
static int check_output(const workload *w, slimkv_cache *cache, const float *q, const float *ref, float *out,
                        double *cos)
{
    if (report_status(slimkv_attend(cache, q, 1, out), "slimkv_attend"))
        return 1;
    *cos = compare_outputs(out, ref, w->n_q_heads, w->head_dim).mean_cos;
    return 0;
}

static void destroy_caches(slimkv_cache **caches, int layers)
{
    for (int i = 0; caches && i < layers; i++)
        slimkv_cache_destroy(caches[i]);
    free(caches);
}

/* Creates and fills the layer caches; their number follows from the first
 * one's size. Returns 0, or 1 after reporting the failure. */
static int fill_layer_set(const workload *w, const slimkv_config *config, int context, const float *prompt_q,
                          const bench_report *report, slimkv_cache ***out_caches, int *out_layers)
{
    slimkv_cache *first;
    int prefill = report->prefill_tokens;
    if (report_status(workload_fill_cache(w, config, context, prefill, prompt_q, &first), "filling a cache"))
        return 1;
    int layers = layer_count(cache_bytes(first), report->llc_bytes, report->llc_multiple);
    slimkv_cache **caches = calloc((size_t)layers, sizeof *caches);
    if (!caches) {
        fprintf(stderr, "out of memory for %d layer caches\n", layers);
        slimkv_cache_destroy(first);
        return 1;
    }
    caches[0] = first;
    for (int i = 1; i < layers; i++)
        if (report_status(workload_fill_cache(w, config, context, prefill, prompt_q, &caches[i]),
                          "filling a cache")) {
            destroy_caches(caches, layers);
            return 1;
        }
    *out_caches = caches;
    *out_layers = layers;
    return 0;
}

/* Every thread count for one config at one context. The layer caches are
 * filled once (appending quantizes and a prefill computes attention: the
 * slow parts) and reused. prompt_q: the queries of the prefilled tokens. */
static int bench_config(const workload *w, const kv_spec *spec, int context, const float *prompt_q, const float *q,
                        const float *ref, float *out, bench_report *report)
{
    kv_setup setup;
    if (kv_setup_init(&setup, spec, w, context) != 0) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    slimkv_cache **caches = NULL;
    int layers = 0;
    int failed = fill_layer_set(w, &setup.config, context, prompt_q, report, &caches, &layers);
    bench_row row = {.spec = spec, .context = context, .layers = layers};
    if (!failed) {
        row.cache_bytes = cache_bytes(caches[0]);
        if (!report->isa)
            slimkv_cache_isa(caches[0], &report->isa);
        failed = check_output(w, caches[0], q, ref, out, &row.cos);
    }
    for (int i = 0; i < report->n_threads && !failed; i++) {
        omp_set_num_threads(report->threads[i]);
        row.threads = report->threads[i];
        row.read_gbps = report->read_gbps[i];
        failed = report_status(time_passes(caches, layers, 1, q, out, report->reps, &row.dram_seconds),
                               "slimkv_attend") ||
                 report_status(time_passes(caches, layers, 0, q, out, report->reps, &row.resident_seconds),
                               "slimkv_attend");
        if (!failed) {
            row.speedup = speedup_of(report, &row);
            if (report->n_rows == 0)
                print_table_header(report, w);
            print_row(&row, report);
            if (add_row(report, &row) != 0) {
                fprintf(stderr, "out of memory\n");
                failed = 1;
            }
        }
    }
    destroy_caches(caches, layers);
    kv_setup_free(&setup);
    return failed;
}

/* ---- result files ---- */

/* Writers write a temporary file and rename it, so an interrupted run never
 * leaves a half-written file in place of an old one. */
typedef void (*report_writer)(FILE *f, const bench_report *report);

static int write_file(const char *path, report_writer writer, const bench_report *report)
{
    size_t len = strlen(path) + 5;
    char *tmp = malloc(len);
    if (!tmp)
        return -1;
    snprintf(tmp, len, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f != NULL;
    if (ok) {
        writer(f, report);
        ok = !ferror(f);
        ok = fclose(f) == 0 && ok;
        ok = ok && rename(tmp, path) == 0;
        if (!ok)
            remove(tmp);
    }
    if (!ok)
        perror(path);
    free(tmp);
    return ok ? 0 : -1;
}

static void write_csv(FILE *f, const bench_report *report)
{
    fprintf(f, "config,k_format,v_format,k_keep,policy,prune_ratio,context,threads,layers,cache_bytes,dram_ms,"
               "dram_gbps,dram_pct_bw,resident_ms,resident_gbps,resident_pct_bw,read_gbps,cos,isa,llc_bytes,"
               "speedup_vs_f16,busy\n");
    for (int i = 0; i < report->n_rows; i++) {
        const bench_row *r = &report->rows[i];
        double dram = gbps_of(r, r->dram_seconds), res = gbps_of(r, r->resident_seconds);
        fprintf(f, "%s,%s,%s,%g,%s,%g,%d,%d,%d,%zu,%.6f,%.4f,%.2f,%.6f,%.4f,%.2f,%.4f,%.7f,%s,%zu,%.4f,%d\n",
                r->spec->name, slimkv_format_name(r->spec->k_format), slimkv_format_name(r->spec->v_format),
                r->spec->k_keep, slimkv_policy_name(r->spec->policy), r->spec->prune_ratio, r->context, r->threads,
                r->layers, r->cache_bytes, 1e3 * r->dram_seconds, dram,
                100.0 * dram / r->read_gbps, 1e3 * r->resident_seconds, res, 100.0 * res / r->read_gbps,
                r->read_gbps, r->cos, report->isa, report->llc_bytes, r->speedup, report->busy);
    }
}

static void write_json(FILE *f, const bench_report *report)
{
    /* Config names are K[/V][@keep] or K[/V]+policy[ratio], maybe ending in :oN (letters, digits, '/',
     * '@', '+', '.', ':'): no escaping needed. */
    fprintf(f, "{\n  \"version\": \"%s\",\n  \"isa\": \"%s\",\n  \"llc_bytes\": %zu,\n  \"llc_multiple\": %d,\n",
            slimkv_version(), report->isa ? report->isa : "", report->llc_bytes, report->llc_multiple);
    fprintf(f, "  \"reps\": %d,\n  \"prefill_tokens\": %d,\n  \"busy\": %d,\n  \"read_bandwidth\": [",
            report->reps, report->prefill_tokens, report->busy);
    for (int i = 0; i < report->n_threads; i++)
        fprintf(f, "%s{\"threads\": %d, \"gbps\": %.4f}", i ? ", " : "", report->threads[i], report->read_gbps[i]);
    fprintf(f, "],\n  \"results\": [\n");
    for (int i = 0; i < report->n_rows; i++) {
        const bench_row *r = &report->rows[i];
        double dram = gbps_of(r, r->dram_seconds), res = gbps_of(r, r->resident_seconds);
        fprintf(f,
                "    {\"config\": \"%s\", \"k_format\": \"%s\", \"v_format\": \"%s\", \"k_keep\": %g, "
                "\"policy\": \"%s\", \"prune_ratio\": %g, \"context\": %d, \"threads\": %d, \"layers\": %d, "
                "\"cache_bytes\": %zu, "
                "\"dram_ms\": %.6f, \"dram_gbps\": %.4f, \"dram_pct_bw\": %.2f, "
                "\"resident_ms\": %.6f, \"resident_gbps\": %.4f, \"resident_pct_bw\": %.2f, "
                "\"read_gbps\": %.4f, \"cos\": %.7f, \"speedup_vs_f16\": %.4f}%s\n",
                r->spec->name, slimkv_format_name(r->spec->k_format), slimkv_format_name(r->spec->v_format),
                r->spec->k_keep, slimkv_policy_name(r->spec->policy), r->spec->prune_ratio, r->context, r->threads,
                r->layers, r->cache_bytes, 1e3 * r->dram_seconds, dram,
                100.0 * dram / r->read_gbps, 1e3 * r->resident_seconds, res, 100.0 * res / r->read_gbps,
                r->read_gbps, r->cos, r->speedup, i + 1 < report->n_rows ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
}

/* ---- prefill speed ---- */

static int largest(const int *values, int n)
{
    int max = values[0];
    for (int i = 1; i < n; i++)
        max = values[i] > max ? values[i] : max;
    return max;
}


/* One prompt of `context` tokens through slimkv_cache_prefill in chunks,
 * per config and thread count: the attention of each chunk over the
 * compressed cache so far and the compression of its K/V. Best of reps. */
static int run_prefill_speed(const bench_options *opt)
{
    int max_context = largest(opt->contexts, opt->n_contexts), chunk = opt->prefill_chunk;
    workload w;
    if (workload_init(&w, max_context, WORKLOAD_SEED) != 0) {
        fprintf(stderr, "out of memory for the workload\n");
        return 1;
    }
    size_t row = workload_row_floats(&w), q_row = (size_t)w.n_q_heads * w.head_dim;
    float *q = workload_queries(&w, max_context), *out = malloc((size_t)chunk * q_row * sizeof(float));
    int failed = !q || !out;
    if (failed)
        fprintf(stderr, "out of memory for the prompt queries\n");
    else
        printf("SlimKV %s prefill speed: one Llama-3-8B layer (%d q heads, %d KV heads, head_dim %d), "
               "prompt in chunks of %d tokens, best of %d\n\n%-12s %7s %3s %10s %10s\n",
               slimkv_version(), w.n_q_heads, w.n_kv_heads, w.head_dim, chunk, opt->reps, "config", "prompt",
               "thr", "ms", "tokens/s");
    for (int c = 0; c < opt->n_contexts && !failed; c++)
        for (int s = 0; s < opt->n_specs && !failed; s++)
            for (int ti = 0; ti < opt->n_threads && !failed; ti++) {
                int context = opt->contexts[c];
                kv_setup setup;
                if (kv_setup_init(&setup, &opt->specs[s], &w, context) != 0) {
                    fprintf(stderr, "out of memory\n");
                    failed = 1;
                    break;
                }
                omp_set_num_threads(opt->threads[ti]);
                double best = INFINITY;
                for (int rep = 0; rep < opt->reps && !failed; rep++) {
                    slimkv_cache *cache = NULL;
                    failed = report_status(slimkv_cache_create(&setup.config, &cache), "slimkv_cache_create");
                    double t0 = now_seconds();
                    for (int p = 0; p < context && !failed; p += chunk) {
                        int n = context - p < chunk ? context - p : chunk;
                        failed = report_status(slimkv_cache_prefill(cache, q + (size_t)p * q_row, w.k + (size_t)p * row,
                                                                    w.v + (size_t)p * row, n, out),
                                               "slimkv_cache_prefill");
                    }
                    double dt = now_seconds() - t0;
                    best = dt < best ? dt : best;
                    slimkv_cache_destroy(cache);
                }
                if (!failed)
                    printf("%-12s %7d %3d %10.2f %10.0f\n", opt->specs[s].name, context, opt->threads[ti], 1e3 * best,
                           context / best);
                kv_setup_free(&setup);
            }
    workload_free(&w);
    free(q);
    free(out);
    return failed;
}

/* ---- main ---- */

/* Every context, config and thread count; the workload is generated once
 * for the longest context (a shorter one is its prefix). */
static int run_bench(const bench_options *opt, bench_report *report)
{
    int max_context = largest(opt->contexts, opt->n_contexts);
    size_t workload_bytes = 2 * (size_t)max_context * WORKLOAD_KV_HEADS * WORKLOAD_HEAD_DIM * sizeof(float);
    if (workload_bytes > WORKLOAD_BUDGET) {
        fprintf(stderr, "context %d needs %.1f GiB of fp32 K/V for the workload; the limit is %.1f GiB\n",
                max_context, (double)workload_bytes / (MIB * 1024), (double)WORKLOAD_BUDGET / (MIB * 1024));
        return 1;
    }
    workload w;
    size_t q_floats = (size_t)WORKLOAD_Q_HEADS * WORKLOAD_HEAD_DIM;
    float *q = malloc(q_floats * sizeof *q), *ref = malloc(q_floats * sizeof *ref),
          *out = malloc(q_floats * sizeof *out);
    if (!q || !ref || !out || workload_init(&w, max_context, WORKLOAD_SEED) != 0) {
        fprintf(stderr, "out of memory for the workload\n");
        free(q);
        free(ref);
        free(out);
        return 1;
    }
    /* The queries of the prefilled tokens, made once: every ThinK/SparK
     * cache (every layer copy, every context) prefills a prefix of them. */
    int any_prefill = report->any_prefill;
    int n_prompt_q = opt->prefill_tokens < max_context ? opt->prefill_tokens : max_context;
    float *prompt_q = any_prefill ? workload_queries(&w, n_prompt_q) : NULL;
    int failed = any_prefill && !prompt_q;
    if (failed)
        fprintf(stderr, "out of memory for the prefill queries\n");
    for (int c = 0; c < opt->n_contexts && !failed; c++) {
        int context = opt->contexts[c];
        /* The reference is the same for every config: compute it once. */
        omp_set_num_threads(largest(opt->threads, opt->n_threads));
        workload_query(&w, context - 1, q);
        if (reference_attend(&w, context, q, ref) != 0) {
            fprintf(stderr, "out of memory for the reference\n");
            failed = 1;
        }
        for (int s = 0; s < opt->n_specs && !failed; s++)
            failed = bench_config(&w, &opt->specs[s], context, prompt_q, q, ref, out, report);
    }
    int oversized = 0;
    for (int i = 0; i < report->n_rows; i++)
        oversized |= report->rows[i].cache_bytes > report->llc_bytes;
    if (!failed && report->n_rows > 0)
        printf("\n%scos: attention output vs fp32 dense reference, cosine similarity averaged over q heads\n",
               oversized ? "* the cache alone is larger than the last-level cache: not really resident\n" : "");
    workload_free(&w);
    free(prompt_q);
    free(q);
    free(ref);
    free(out);
    return failed;
}

int main(int argc, char **argv)
{
    double load = load_average();
    bench_options opt;
    int parsed = parse_options(argc, argv, &opt);
    if (parsed != 0) {
        free_options(&opt);
        return parsed > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
    }
    double *read_gbps = malloc((size_t)opt.n_threads * sizeof *read_gbps);
    bench_report report = {.llc_bytes = last_level_cache_bytes(),
                           .llc_multiple = opt.llc_multiple,
                           .reps = opt.reps,
                           .prefill_tokens = opt.prefill_tokens,
                           .busy = opt.busy,
                           .name_width = (int)strlen("config"),
                           .load_at_start = load,
                           .n_threads = opt.n_threads,
                           .threads = opt.threads,
                           .read_gbps = read_gbps};
    for (int i = 0; i < opt.n_specs; i++) {
        report.any_prefill |= policy_needs_prefill(opt.specs[i].policy);
        int len = (int)strlen(opt.specs[i].name);
        report.name_width = len > report.name_width ? len : report.name_width;
    }
    pid_t busy_pids[64] = {0};
    int failed = start_busy(opt.busy, busy_pids) != 0;
    if (!failed && opt.prefill_chunk > 0) {
        failed = run_prefill_speed(&opt);
        stop_busy(opt.busy, busy_pids);
        free(read_gbps);
        free_options(&opt);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
    }
    if (!failed &&
        (!read_gbps || measure_read_bandwidth(report.llc_bytes, opt.threads, opt.n_threads, read_gbps) != 0)) {
        fprintf(stderr, "out of memory for the bandwidth buffer\n");
        failed = 1;
    }
    if (!failed)
        failed = run_bench(&opt, &report);
    stop_busy(opt.busy, busy_pids);
    if (!failed && opt.csv_path)
        failed = write_file(opt.csv_path, write_csv, &report) != 0;
    if (!failed && opt.json_path)
        failed = write_file(opt.json_path, write_json, &report) != 0;
    free(report.rows);
    free(read_gbps);
    free_options(&opt);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
