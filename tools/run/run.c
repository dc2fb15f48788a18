/* slimkv-run: a real pretrained model (Llama architecture, GGUF) running on
 * SlimKV caches, one per layer.
 *
 *   --prompt TEXT --n N   greedy generation with a progress line and tokens/s
 *   --ppl FILE            perplexity of a text slice (context length, stride)
 *   --eval FILE           the table: KV formats and channel policies ->
 *                         bytes held per token, decode tokens/s, held-out
 *                         perplexity, KL divergence from dense, agreement of
 *                         greedy tokens with dense f16
 *   --depth-bench FILE    as llama-bench -d: per KV config and depth, prompt and
 *                         decode tokens/s, KV bytes and peak RSS
 *   --write-calib FILE    q/k/v of a calibration text, for slimkv-plan
 *
 * Policies: static masks (--keep-k, --streaming), ThinK / SparK (--policy,
 * chosen by each sequence's first prefill) or a slimkv-plan plan (--plan);
 * token eviction (--evict snapkv|h2o, --evict-budget): SnapKV at each
 * prefill call, H2O at prefill and at every decode batch.
 *
 * Perplexity windows: each window of --ctx tokens is a fresh sequence. Its
 * first ctx - stride tokens are a prompt (slimkv_cache_prefill: compressed
 * once stored); the last `stride` tokens are scored, and they are fed in
 * decode mode (slimkv_cache_append + slimkv_attend, --chunk tokens at a
 * time), so every scored prediction attends to compressed storage, as in
 * generation. Every scored token sees at least ctx - stride tokens.
 *
 * Static channel masks (--keep-k, --streaming) come from a calibration pass
 * of the dense model over --calib-tokens tokens of --calib FILE (default:
 * the start of the evaluated file, before --offset, so the scored slice is
 * held out). See build_masks() for the rules. */
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gguf.h"
#include "llama.h"
#include "safetensors.h"
#include "tokenizer.h"

#define DEFAULT_MODEL "build/models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define STREAMING_MIN_SINKS 16

typedef struct run_options {
    const char *model_path;
    slimkv_format k_format, v_format;
    double keep_k;    /* fraction of K channels kept per KV head */
    int score_with_q; /* rank K channels by mean|q| * mean|k| instead of mean|k| */
    slimkv_policy policy; /* NONE, THINK or SPARK (static masks come from the options above) */
    double prune_ratio;
    int window;
    slimkv_eviction eviction; /* --evict */
    int evict_budget, evict_pool;
    const char *plan_file, *write_calib;
    double streaming; /* fraction of KV heads made streaming heads */
    int residual, group, sinks, align;
    int rotate;       /* SLIMKV_ROTATE_* bits */
    int threads;
    int f32_weights;           /* every weight matrix dequantized to float32 */
    const char *weights_isa;   /* weight kernels (NULL: as the library chooses) */
    int batch;                 /* prompt tokens per forward call */
    const char *prompt;
    int n_gen, chat, ignore_eos;
    const char *ppl_file, *eval_file, *calib_file, *depth_file;
    int depths[16], n_depths; /* --depth-bench: prompt depths */
    const char *configs;      /* --configs: "default", "all" or "options" (NULL: the mode's own choice) */
    const char *json_file;
    int ctx, stride, max_tokens, offset, chunk, calib_tokens;
} run_options;

/* Everything loaded once. */
typedef struct runtime {
    const run_options *opt;
    llama_model *model;
    bpe_tokenizer *tok;
    const llama_hparams *hp;
    slimkv_plan *plan; /* --plan, or NULL */
} runtime;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The process's peak resident set so far (Linux VmHWM; else getrusage). */
static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    if (kib < 0) {
        struct rusage ru;
        kib = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
    }
    return (double)kib / 1024.0;
}

/* Starts a new peak for peak_rss_mib (Linux: "5" to clear_refs resets
 * VmHWM to the resident set now, so freed heap goes back to the system
 * first); 0 when the kernel does not allow it. */
static int reset_peak_rss(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return 0;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

/* Prints the failing call and its status; returns 0 so callers can chain. */
static int report(const char *what, slimkv_status st)
{
    fprintf(stderr, "slimkv-run: %s: %s\n", what, slimkv_status_str(st));
    return 0;
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: slimkv-run [options] (--prompt TEXT | --ppl FILE | --eval FILE | --depth-bench FILE |\n"
            "                  --write-calib FILE)\n"
            "  --model PATH        GGUF model (default %s)\n"
            "  --k-format F        K storage: f32, f16, bf16, q8, q4, q3, q2 (default f16)\n"
            "  --v-format F        V storage (default f16)\n"
            "  --keep-k FRACTION   static mask keeping that fraction of K channels per KV head,\n"
            "                      those of largest mean |k| on the calibration text (default 1)\n"
            "  --mask-score S      k: rank K channels by mean |k| (default); qk: by mean |q| * mean |k|\n"
            "                      (|q| averaged over the query heads of the KV head)\n"
            "  --policy P          none, think or spark: K channels chosen by the first prefill\n"
            "  --prune-ratio F     ThinK/SparK fraction of K channels pruned (default 0.4)\n"
            "  --window N          ThinK/SparK/SnapKV: last prefill queries that choose (default 32)\n"
            "  --evict P           none, snapkv (at each prefill call: the --evict-budget tokens the\n"
            "                      last --window queries attend to most, pooled) or h2o (accumulated\n"
            "                      attention, recent --residual tokens kept; prefill and every decode batch)\n"
            "  --evict-budget N    tokens per KV head kept by score, besides sinks and window (default 1024)\n"
            "  --evict-pool N      SnapKV's max-pool kernel, odd (default 7)\n"
            "  --plan FILE         per-layer plan from slimkv-plan (its formats, G, R, S and masks)\n"
            "  --write-calib FILE  write the calibration pass's q/k/v (layers.{i}.q/k/v, f32\n"
            "                      safetensors, the input of slimkv-plan) and exit\n"
            "  --streaming FRAC    that fraction of KV heads (most local attention on the\n"
            "                      calibration text) keep no K channel: LeanK-style streaming heads\n"
            "  --residual N        recent tokens kept in f16 (multiple of --group, default 128)\n"
            "  --group N           K/V quantization group (default 32)\n"
            "  --rotate WHAT       Walsh-Hadamard rotation of none (default), k (keys and queries),\n"
            "                      v (values and outputs) or kv\n"
            "  --sinks N           first tokens kept in f16 (default 0)\n"
            "  --align N           kept-channel alignment (default 8)\n"
            "  --threads N         OpenMP threads (default: all)\n"
            "  --f32-weights       dequantize every weight matrix to float32 (the exact reference;\n"
            "                      default: Q4_0/Q4_1/Q8_0 matrices stay in the file's blocks)\n"
            "  --weights-isa NAME  weight kernels: auto (default, SLIMKV_ISA or the best here), scalar,\n"
            "                      avx2, avx512, neon, neon-dotprod\n"
            "  --batch N           prompt tokens per prefill call (default 512; ThinK/SparK choose\n"
            "                      their channels from the first call's last --window queries)\n"
            "generation:\n"
            "  --prompt TEXT       greedy generation from TEXT\n"
            "  --n N               tokens to generate (default 64; --eval: steps compared)\n"
            "  --chat              wrap the prompt in the model's chat template\n"
            "  --ignore-eos        keep generating after the end-of-sequence token\n"
            "depth benchmark (--depth-bench FILE), as llama-bench -d: per KV config and depth D,\n"
            "prefill D tokens of FILE (from --offset), then time --n decode steps:\n"
            "  --depths LIST       comma-separated depths (default 0,2048,4096,8192)\n"
            "  --configs SET       default (f16, q8, q4, q4 with K pruning), all (the eval's rows),\n"
            "                      evict (f16, q4, q4 + ThinK and the token eviction rows),\n"
            "                      options (the one that --k-format, --policy, ... describe), or\n"
            "                      row names separated by ';' (\"q2;q2, V rotated\"; dense comes first);\n"
            "                      --eval takes all unless told otherwise\n"
            "  --json FILE         also write the rows as JSON\n"
            "perplexity (--ppl FILE) and evaluation (--eval FILE):\n"
            "  --ctx N             tokens per window (default 512)\n"
            "  --stride N          scored tokens per window (default ctx/2)\n"
            "  --max-tokens N      tokens of the file evaluated, from --offset (default 3072)\n"
            "  --offset N          first evaluated token (default 1024)\n"
            "  --chunk N           scored tokens fed per decode call (default 32)\n"
            "  --calib FILE        calibration text for masks (default: the evaluated file)\n"
            "  --calib-tokens N    calibration tokens, from the start of the file (default 512)\n",
            DEFAULT_MODEL);
}

static int parse_format(const char *s, slimkv_format *f)
{
    return slimkv_format_from_name(s, strlen(s), f) == SLIMKV_OK;
}

static int parse_int(const char *s, int lo, int hi, int *out);

/* "0,2048,4096": at most 16 depths, each in [0, 2^20]. */
static int parse_depths(const char *s, run_options *o)
{
    char buf[256];
    if (strlen(s) >= sizeof buf)
        return 0;
    strcpy(buf, s);
    o->n_depths = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_depths == (int)(sizeof o->depths / sizeof o->depths[0]) ||
            !parse_int(tok, 0, 1 << 20, &o->depths[o->n_depths]))
            return 0;
        o->n_depths++;
    }
    return o->n_depths > 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return 0;
    *out = (int)v;
    return 1;
}

static int parse_fraction(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || !(v >= 0.0 && v <= 1.0))
        return 0;
    *out = v;
    return 1;
}

/* 0: run; 1: --help; -1: bad arguments (reported). */
static int parse_options(int argc, char **argv, run_options *o)
{
    slimkv_config defaults;
    slimkv_config_init(&defaults);
    *o = (run_options){.model_path = DEFAULT_MODEL, .k_format = SLIMKV_F16, .v_format = SLIMKV_F16,
                       .keep_k = 1.0, .residual = defaults.residual, .group = defaults.group_size,
                       .sinks = defaults.n_sink, .align = defaults.channel_align, .n_gen = 64, .ctx = 512,
                       .stride = 0, .max_tokens = 3072, .offset = 1024, .chunk = 32, .calib_tokens = 512,
                       .batch = 512, .prune_ratio = defaults.prune_ratio, .window = defaults.window,
                       .eviction = defaults.eviction, .evict_budget = defaults.evict_budget,
                       .evict_pool = defaults.evict_pool,
                       .depths = {0, 2048, 4096, 8192}, .n_depths = 4};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, takes_value = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--chat")) {
            o->chat = 1, takes_value = 0;
        } else if (!strcmp(a, "--ignore-eos")) {
            o->ignore_eos = 1, takes_value = 0;
        } else if (!strcmp(a, "--f32-weights")) {
            o->f32_weights = 1, takes_value = 0;
        } else if (!v) {
            ok = 0;
        } else if (!strcmp(a, "--model")) {
            o->model_path = v;
        } else if (!strcmp(a, "--k-format")) {
            ok = parse_format(v, &o->k_format);
        } else if (!strcmp(a, "--v-format")) {
            ok = parse_format(v, &o->v_format);
        } else if (!strcmp(a, "--keep-k")) {
            ok = parse_fraction(v, &o->keep_k);
        } else if (!strcmp(a, "--mask-score")) {
            ok = !strcmp(v, "k") || !strcmp(v, "qk");
            o->score_with_q = !strcmp(v, "qk");
        } else if (!strcmp(a, "--policy")) {
            /* none, think or spark: static masks come from --keep-k and --streaming */
            ok = slimkv_policy_from_name(v, strlen(v), &o->policy) == SLIMKV_OK &&
                 o->policy != SLIMKV_POLICY_STATIC;
        } else if (!strcmp(a, "--prune-ratio")) {
            ok = parse_fraction(v, &o->prune_ratio) && o->prune_ratio < 1.0;
        } else if (!strcmp(a, "--window")) {
            ok = parse_int(v, 1, 1 << 20, &o->window);
        } else if (!strcmp(a, "--evict")) {
            ok = !strcmp(v, "none") || !strcmp(v, "snapkv") || !strcmp(v, "h2o");
            o->eviction = !strcmp(v, "snapkv") ? SLIMKV_EVICT_SNAPKV
                          : !strcmp(v, "h2o")  ? SLIMKV_EVICT_H2O
                                               : SLIMKV_EVICT_NONE;
        } else if (!strcmp(a, "--evict-budget")) {
            ok = parse_int(v, 1, 1 << 28, &o->evict_budget);
        } else if (!strcmp(a, "--evict-pool")) {
            ok = parse_int(v, 1, 1023, &o->evict_pool) && o->evict_pool % 2 == 1;
        } else if (!strcmp(a, "--plan")) {
            o->plan_file = v;
        } else if (!strcmp(a, "--write-calib")) {
            o->write_calib = v;
        } else if (!strcmp(a, "--streaming")) {
            ok = parse_fraction(v, &o->streaming);
        } else if (!strcmp(a, "--residual")) {
            ok = parse_int(v, 0, 1 << 20, &o->residual);
        } else if (!strcmp(a, "--group")) {
            ok = parse_int(v, 1, 1 << 20, &o->group);
        } else if (!strcmp(a, "--rotate")) {
            ok = !strcmp(v, "none") || !strcmp(v, "k") || !strcmp(v, "v") || !strcmp(v, "kv");
            o->rotate = (strchr(v, 'k') ? SLIMKV_ROTATE_K : 0) | (strchr(v, 'v') ? SLIMKV_ROTATE_V : 0);
        } else if (!strcmp(a, "--sinks")) {
            ok = parse_int(v, 0, 1 << 20, &o->sinks);
        } else if (!strcmp(a, "--align")) {
            ok = parse_int(v, 1, 1 << 10, &o->align);
        } else if (!strcmp(a, "--threads")) {
            ok = parse_int(v, 1, 4096, &o->threads);
        } else if (!strcmp(a, "--weights-isa")) {
            o->weights_isa = v;
        } else if (!strcmp(a, "--batch")) {
            ok = parse_int(v, 1, 1 << 20, &o->batch);
        } else if (!strcmp(a, "--prompt")) {
            o->prompt = v;
        } else if (!strcmp(a, "--n")) {
            ok = parse_int(v, 1, 1 << 20, &o->n_gen);
        } else if (!strcmp(a, "--ppl")) {
            o->ppl_file = v;
        } else if (!strcmp(a, "--eval")) {
            o->eval_file = v;
        } else if (!strcmp(a, "--depth-bench")) {
            o->depth_file = v;
        } else if (!strcmp(a, "--depths")) {
            ok = parse_depths(v, o);
        } else if (!strcmp(a, "--configs")) {
            ok = *v != '\0'; /* default, all, options or row names (checked once the rows exist) */
            o->configs = v;
        } else if (!strcmp(a, "--json")) {
            o->json_file = v;
        } else if (!strcmp(a, "--calib")) {
            o->calib_file = v;
        } else if (!strcmp(a, "--ctx")) {
            ok = parse_int(v, 2, 1 << 20, &o->ctx);
        } else if (!strcmp(a, "--stride")) {
            ok = parse_int(v, 1, 1 << 20, &o->stride);
        } else if (!strcmp(a, "--max-tokens")) {
            ok = parse_int(v, 2, 1 << 28, &o->max_tokens);
        } else if (!strcmp(a, "--offset")) {
            ok = parse_int(v, 0, 1 << 28, &o->offset);
        } else if (!strcmp(a, "--chunk")) {
            ok = parse_int(v, 1, 1 << 20, &o->chunk);
        } else if (!strcmp(a, "--calib-tokens")) {
            ok = parse_int(v, 1, 1 << 20, &o->calib_tokens);
        } else {
            fprintf(stderr, "slimkv-run: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "slimkv-run: bad or missing value for %s\n", a);
            return -1;
        }
        i += takes_value;
    }
    /* every file it reads: checked before any work, so a directory or a
     * device is a clear message and not a size taken from it */
    const char *inputs[][2] = {{"--model", o->model_path}, {"--ppl", o->ppl_file}, {"--eval", o->eval_file},
                               {"--calib", o->calib_file}, {"--plan", o->plan_file}, {"--depth-bench", o->depth_file}};
    for (size_t f = 0; f < sizeof inputs / sizeof *inputs; f++) {
        struct stat sb;
        if (!inputs[f][1])
            continue;
        if (f == 0 && stat(inputs[f][1], &sb) != 0 && errno == ENOENT)
            continue; /* a missing model: opening it says how to fetch it */
        if (stat(inputs[f][1], &sb) != 0 || !S_ISREG(sb.st_mode) || access(inputs[f][1], R_OK) != 0) {
            fprintf(stderr, "slimkv-run: %s %s: not a readable regular file\n", inputs[f][0], inputs[f][1]);
            return -1;
        }
    }
    if (!!o->prompt + !!o->ppl_file + !!o->eval_file + !!o->depth_file +
            (o->write_calib && !o->ppl_file && !o->eval_file) != 1) {
        fprintf(stderr, "slimkv-run: give exactly one of --prompt, --ppl, --eval, --depth-bench, --write-calib\n");
        usage(stderr);
        return -1;
    }
    if (o->stride == 0)
        o->stride = o->ctx / 2;
    if (o->stride >= o->ctx) {
        fprintf(stderr, "slimkv-run: --stride must be below --ctx\n");
        return -1;
    }
    return 0;
}

/* ---- text ---------------------------------------------------------- */

/* Text files larger than this are refused (the longest eval text is a few MB). */
#define MAX_TEXT_BYTES ((long)1 << 30)

static slimkv_status read_text(const char *path, char **text, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "slimkv-run: cannot open %s: %s\n", path, strerror(errno));
        return SLIMKV_ERR_IO;
    }
    /* a directory opens, and its "size" is meaningless: regular files only */
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > MAX_TEXT_BYTES) {
        fprintf(stderr, "slimkv-run: %s is not a regular file of at most %ld bytes\n", path, MAX_TEXT_BYTES);
        fclose(fp);
        return SLIMKV_ERR_IO;
    }
    slimkv_status st = SLIMKV_ERR_IO;
    long size = -1;
    char *buf = NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (size = ftell(fp)) >= 0 && size <= MAX_TEXT_BYTES &&
        fseek(fp, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)size + 1);
        if (!buf)
            st = SLIMKV_ERR_NOMEM;
        else if (fread(buf, 1, (size_t)size, fp) == (size_t)size)
            st = SLIMKV_OK;
    }
    fclose(fp);
    if (st != SLIMKV_OK) {
        free(buf);
        return st;
    }
    buf[size] = '\0';
    *text = buf;
    *len = (size_t)size;
    return SLIMKV_OK;
}

static slimkv_status tokenize_file(const runtime *rt, const char *path, int32_t **ids, size_t *n)
{
    char *text;
    size_t len;
    slimkv_status st = read_text(path, &text, &len);
    if (st != SLIMKV_OK)
        return st;
    /* A text file is data: control-token look-alikes in it stay text. */
    st = tokenizer_encode(rt->tok, text, len, 0, ids, n);
    free(text);
    return st;
}

/* ---- calibration and masks ----------------------------------------- */

typedef struct calibration {
    int n_layer, n_kv, n_head, head_dim, residual, sinks;
    double *abs_k;      /* [layer][kv][channel]: sum of |k| */
    double *abs_q;      /* [layer][kv][channel]: sum of |q| over the KV head's query heads */
    double *local_mass; /* [layer][kv]: sum of attention mass on sinks + recent window */
    double *mass_count; /* [layer][kv]: queries summed */
    long tokens;
} calibration;

/* Observer: the calibration prompt runs as one prefill batch from position
 * 0, so q and k hold every token and the dense attention pattern can be
 * computed here: for queries past the recent window, the share of each
 * head's attention that falls on what a streaming head keeps (the first
 * `sinks` tokens and the last `residual` ones). */
static void calibration_observe(void *ctx, int layer, const float *q, const float *k, const float *v, int n,
                                int pos0)
{
    (void)v;
    calibration *c = ctx;
    int hd = c->head_dim, nkv = c->n_kv, group = c->n_head / c->n_kv;
    if (pos0 != 0)
        return;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nkv; h++)
            for (int i = 0; i < hd; i++)
                c->abs_k[((size_t)layer * nkv + h) * hd + i] += fabsf(k[((size_t)t * nkv + h) * hd + i]);
    for (int t = 0; t < n; t++)
        for (int qh = 0; qh < c->n_head; qh++)
            for (int i = 0; i < hd; i++)
                c->abs_q[((size_t)layer * nkv + qh / group) * hd + i] += fabsf(q[((size_t)t * c->n_head + qh) * hd + i]);
    if (layer == 0)
        c->tokens += n;
    double scale = 1.0 / sqrt((double)hd);
    double *scores = malloc((size_t)n * sizeof(double));
    if (!scores)
        return;
    for (int t = c->residual + 1; t < n; t++)
        for (int qh = 0; qh < c->n_head; qh++) {
            int h = qh / group;
            const float *qt = q + ((size_t)t * c->n_head + qh) * hd;
            double max = -INFINITY, total = 0.0, local = 0.0;
            for (int s = 0; s <= t; s++) {
                const float *ks = k + ((size_t)s * nkv + h) * hd;
                double dot = 0.0;
                for (int i = 0; i < hd; i++)
                    dot += (double)qt[i] * ks[i];
                scores[s] = dot * scale;
                if (scores[s] > max)
                    max = scores[s];
            }
            for (int s = 0; s <= t; s++) {
                double p = exp(scores[s] - max);
                total += p;
                if (s < c->sinks || s > t - c->residual)
                    local += p;
            }
            c->local_mass[(size_t)layer * nkv + h] += local / total;
            c->mass_count[(size_t)layer * nkv + h] += 1.0;
        }
    free(scores);
}

static void calibration_free(calibration *c)
{
    free(c->abs_k);
    free(c->abs_q);
    free(c->local_mass);
    free(c->mass_count);
}

static slimkv_status calibrate(const runtime *rt, const int32_t *tokens, int n, int residual, int sinks,
                               calibration *c)
{
    const llama_hparams *hp = rt->hp;
    *c = (calibration){.n_layer = hp->n_layer, .n_kv = hp->n_kv_head, .n_head = hp->n_head,
                       .head_dim = hp->head_dim, .residual = residual, .sinks = sinks};
    size_t heads = (size_t)hp->n_layer * hp->n_kv_head;
    c->abs_k = calloc(heads * hp->head_dim, sizeof(double));
    c->abs_q = calloc(heads * hp->head_dim, sizeof(double));
    c->local_mass = calloc(heads, sizeof(double));
    c->mass_count = calloc(heads, sizeof(double));
    if (!c->abs_k || !c->abs_q || !c->local_mass || !c->mass_count) {
        calibration_free(c);
        return SLIMKV_ERR_NOMEM;
    }
    llama_cache_options opts;
    llama_cache_options_init(&opts);
    llama_session *s;
    slimkv_status st = llama_session_create(rt->model, &opts, n, n, &s);
    if (st != SLIMKV_OK) {
        calibration_free(c);
        return report("calibration session", st), st;
    }
    llama_session_set_observer(s, calibration_observe, c);
    st = llama_forward(s, tokens, n, LLAMA_PREFILL, NULL, 0);
    llama_session_free(s);
    if (st != SLIMKV_OK) {
        calibration_free(c);
        report("calibration forward", st);
    }
    return st;
}

typedef struct head_rank {
    double local;
    int index;
} head_rank;

static int by_local_mass_desc(const void *a, const void *b)
{
    double x = ((const head_rank *)a)->local, y = ((const head_rank *)b)->local;
    return x < y ? 1 : x > y ? -1 : ((const head_rank *)a)->index - ((const head_rank *)b)->index;
}

typedef struct channel_rank {
    double mean_abs;
    int channel;
} channel_rank;

static int by_mean_abs_desc(const void *a, const void *b)
{
    double x = ((const channel_rank *)a)->mean_abs, y = ((const channel_rank *)b)->mean_abs;
    return x < y ? 1 : x > y ? -1 : ((const channel_rank *)a)->channel - ((const channel_rank *)b)->channel;
}

/* Masks, [layer] -> [kv][channel], from the calibration statistics:
 *  - keep_k < 1: each KV head keeps its round(keep_k * head_dim) K channels
 *    of largest mean |k| (post-RoPE), or with score_with_q of largest
 *    mean |q| * mean |k| (a channel's typical share of q.k: a large key
 *    channel that queries ignore costs little to drop); the rest are not
 *    stored;
 *  - streaming > 0: the round(streaming * layers * kv_heads) KV heads whose
 *    dense attention put the most mass on the sinks and the recent window
 *    keep no K channel at all (the cache keeps only those tokens for them).
 * Returns NULL masks (keep all) when neither applies. */
static slimkv_status build_masks(const calibration *c, double keep_k, int score_with_q, double streaming,
                                 uint8_t ***out)
{
    *out = NULL;
    if (keep_k >= 1.0 && streaming <= 0.0)
        return SLIMKV_OK;
    int hd = c->head_dim, heads = c->n_layer * c->n_kv;
    uint8_t **masks = calloc((size_t)c->n_layer, sizeof *masks);
    head_rank *ranks = malloc((size_t)heads * sizeof *ranks);
    channel_rank *channels = malloc((size_t)hd * sizeof *channels);
    int ok = masks && ranks && channels;
    for (int l = 0; ok && l < c->n_layer; l++)
        ok = (masks[l] = malloc((size_t)c->n_kv * hd)) != NULL;
    if (!ok) {
        for (int l = 0; masks && l < c->n_layer; l++)
            free(masks[l]);
        free(masks);
        free(ranks);
        free(channels);
        return SLIMKV_ERR_NOMEM;
    }
    int keep = (int)lround(keep_k * hd);
    for (int i = 0; i < heads; i++) {
        uint8_t *m = masks[i / c->n_kv] + (size_t)(i % c->n_kv) * hd;
        for (int ch = 0; ch < hd; ch++)
            channels[ch] = (channel_rank){c->abs_k[(size_t)i * hd + ch] *
                                              (score_with_q ? c->abs_q[(size_t)i * hd + ch] : 1.0),
                                          ch};
        qsort(channels, (size_t)hd, sizeof *channels, by_mean_abs_desc);
        memset(m, 0, (size_t)hd);
        for (int j = 0; j < keep; j++)
            m[channels[j].channel] = 1;
        ranks[i] = (head_rank){c->mass_count[i] > 0 ? c->local_mass[i] / c->mass_count[i] : 0.0, i};
    }
    qsort(ranks, (size_t)heads, sizeof *ranks, by_local_mass_desc);
    int n_streaming = (int)lround(streaming * heads);
    for (int j = 0; j < n_streaming; j++)
        memset(masks[ranks[j].index / c->n_kv] + (size_t)(ranks[j].index % c->n_kv) * hd, 0, (size_t)hd);
    free(ranks);
    free(channels);
    *out = masks;
    return SLIMKV_OK;
}

static void free_masks(uint8_t **masks, int n_layer)
{
    for (int l = 0; masks && l < n_layer; l++)
        free(masks[l]);
    free(masks);
}

/* ---- one configuration ---------------------------------------------- */

typedef struct kv_config {
    char name[64];
    slimkv_format k_format, v_format;
    double keep_k, streaming;
    int score_with_q;
    slimkv_policy policy; /* THINK or SPARK, with prune_ratio */
    double prune_ratio;
    const slimkv_plan *plan;
    int sinks;
    int group;  /* 0: --group */
    int rotate; /* SLIMKV_ROTATE_* bits */
    slimkv_eviction eviction; /* with evict_budget (the pool and window are the options') */
    int evict_budget;
    int k_token_bits; /* the K-per-token measurement (llama_cache_options): K kept f16 after it */
    int k_outliers;   /* K channels per head at 8 bits (slimkv_config.k_outliers) */
} kv_config;

/* Bits per stored element of the compressed body, averaged over K and V:
 * the code bits plus the fp16 scale and min of each group of G (b + 32/G
 * for a quantized format). Pruned channels and evicted tokens are not
 * counted here: they lower the element count, which bytes/token shows. */
static double stored_bits(slimkv_format f, int g)
{
    switch (f) {
    case SLIMKV_F32: return 32;
    case SLIMKV_F16:
    case SLIMKV_BF16: return 16;
    case SLIMKV_Q8: return 8 + 32.0 / g;
    case SLIMKV_Q4: return 4 + 32.0 / g;
    case SLIMKV_Q3: return 3 + 32.0 / g;
    case SLIMKV_Q2: return 2 + 32.0 / g;
    }
    return 0;
}

static double body_bits_per_element(const run_options *o, const kv_config *kc, int head_dim)
{
    int g = kc->group ? kc->group : o->group;
    double k = kc->k_token_bits ? kc->k_token_bits + 32.0 / g : stored_bits(kc->k_format, g);
    if (kc->k_outliers) /* n of the D channels at q8 */
        k += (stored_bits(SLIMKV_Q8, g) - k) * kc->k_outliers / head_dim;
    return (k + stored_bits(kc->v_format, g)) / 2;
}

static void cache_options(const run_options *o, const kv_config *kc, uint8_t **masks, llama_cache_options *opts)
{
    llama_cache_options_init(opts);
    opts->k_format = kc->k_format;
    opts->v_format = kc->v_format;
    opts->group_size = kc->group ? kc->group : o->group;
    opts->rotate = kc->rotate;
    opts->k_outliers = kc->k_outliers;
    opts->residual = o->residual;
    opts->n_sink = kc->sinks;
    opts->channel_align = o->align;
    opts->k_masks = (const uint8_t *const *)masks;
    opts->policy = kc->policy;
    opts->prune_ratio = (float)kc->prune_ratio;
    opts->window = o->window;
    opts->plan = kc->plan;
    opts->eviction = kc->eviction;
    opts->evict_budget = kc->evict_budget;
    opts->evict_pool = o->evict_pool;
    if (kc->k_token_bits) { /* the rotation flag means the measurement's K rotation */
        opts->k_token_bits = kc->k_token_bits;
        opts->k_token_group = opts->group_size;
        opts->k_token_rotate = (kc->rotate & SLIMKV_ROTATE_K) != 0;
        opts->rotate = kc->rotate & ~SLIMKV_ROTATE_K;
    }
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Perplexity with a progress line on stderr. */
typedef struct ppl_progress {
    double t0;
} ppl_progress;

static void show_ppl_progress(void *ctx, int window, int n_windows, double nll_sum, long scored)
{
    const ppl_progress *pp = ctx;
    /* On a terminal one line that updates; in a log one line per window. */
    int tty = isatty(STDERR_FILENO);
    fprintf(stderr, "%s[ppl] window %d/%d  ppl %.3f  (%.1f s)%s", tty ? "\r" : "", window, n_windows,
            exp(nll_sum / (double)scored), now_seconds() - pp->t0, !tty || window == n_windows ? "\n" : "");
}

typedef struct ppl_run {
    llama_ppl_result r;
    double seconds;
} ppl_run;

/* argmax, logprobs, reference and kl: NULL or as llama_ppl_params says. */
static slimkv_status perplexity(const runtime *rt, const llama_cache_options *opts, const int32_t *tokens, int n,
                                int32_t *argmax, float *logprobs, const float *reference, double *kl, ppl_run *run)
{
    const run_options *o = rt->opt;
    ppl_progress pp = {now_seconds()};
    llama_ppl_params p = {.ctx = o->ctx, .stride = o->stride, .chunk = o->chunk, .progress = show_ppl_progress,
                          .progress_ctx = &pp, .argmax = argmax, .logprobs = logprobs,
                          .reference_logprobs = reference, .kl = kl};
    if (n < o->ctx) {
        fprintf(stderr, "slimkv-run: %d tokens, fewer than one window of --ctx %d\n", n, o->ctx);
        return SLIMKV_ERR_INVALID_ARG;
    }
    slimkv_status st = llama_perplexity(rt->model, opts, tokens, n, &p, &run->r);
    run->seconds = now_seconds() - pp.t0;
    if (st != SLIMKV_OK)
        report("perplexity", st);
    return st;
}

typedef struct gen_result {
    int32_t *tokens; /* n_gen generated ids */
    int n;
    double prefill_seconds, decode_seconds; /* decode: steps after the first token */
    /* The median decode step: a rate that bursts of other load on the
     * machine do not drag down (the mean is decode_seconds / steps). */
    double median_step_seconds;
    size_t kv_bytes; /* the caches' bytes at the end */
} gen_result;

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The prompt in forward calls of at most `batch` tokens; logits: the last
 * token's. */
static slimkv_status prefill_in_batches(llama_session *s, const int32_t *prompt, int n_prompt, int batch,
                                        float *logits)
{
    slimkv_status st = SLIMKV_OK;
    for (int pos = 0; pos < n_prompt && st == SLIMKV_OK; pos += batch) {
        int n = n_prompt - pos < batch ? n_prompt - pos : batch;
        st = llama_forward(s, prompt + pos, n, LLAMA_PREFILL, pos + n == n_prompt ? logits : NULL, n - 1);
    }
    return st;
}

/* Greedy generation: prefill the prompt, then one decode step per token.
 * on_token (may be NULL) sees each new token as it comes. */
static slimkv_status generate(const runtime *rt, const llama_cache_options *opts, const int32_t *prompt,
                              int n_prompt, int n_gen, int stop_at_eos, void (*on_token)(const runtime *, int32_t, int),
                              gen_result *res)
{
    int vocab = rt->hp->n_vocab;
    *res = (gen_result){0};
    res->tokens = malloc((size_t)n_gen * sizeof(int32_t));
    float *logits = malloc((size_t)vocab * sizeof(float));
    double *step_seconds = malloc((size_t)n_gen * sizeof(double));
    int steps = 0;
    llama_session *s = NULL;
    slimkv_status st = res->tokens && logits && step_seconds ? SLIMKV_OK : SLIMKV_ERR_NOMEM;
    int batch = n_prompt < rt->opt->batch ? n_prompt : rt->opt->batch;
    if (st == SLIMKV_OK)
        st = llama_session_create(rt->model, opts, n_prompt + n_gen, batch, &s);
    if (st != SLIMKV_OK) {
        free(logits);
        free(step_seconds);
        return report("session", st), st;
    }
    double t0 = now_seconds();
    st = prefill_in_batches(s, prompt, n_prompt, batch, logits);
    if (st != SLIMKV_OK)
        report("prefill", st);
    double t1 = now_seconds();
    res->prefill_seconds = t1 - t0;
    while (st == SLIMKV_OK && res->n < n_gen) {
        int32_t next = argmax(logits, vocab);
        res->tokens[res->n++] = next;
        if (on_token)
            on_token(rt, next, res->n);
        if (stop_at_eos && next == tokenizer_eos_id(rt->tok))
            break;
        if (res->n == n_gen)
            break;
        double step_start = now_seconds();
        st = llama_forward(s, &next, 1, LLAMA_DECODE, logits, 0);
        step_seconds[steps++] = now_seconds() - step_start;
        if (st != SLIMKV_OK)
            report("decode", st);
    }
    res->decode_seconds = now_seconds() - t1;
    if (st == SLIMKV_OK)
        st = llama_session_bytes(s, &res->kv_bytes);
    if (steps > 0) {
        qsort(step_seconds, (size_t)steps, sizeof *step_seconds, by_value);
        res->median_step_seconds = step_seconds[steps / 2];
    }
    llama_session_free(s);
    free(logits);
    free(step_seconds);
    return st;
}

/* ---- calibration data for slimkv-plan --------------------------------- */

typedef struct calib_recorder {
    int n_layer, n_tokens, q_width, kv_width; /* widths: heads * head_dim */
    float **q, **k, **v;                      /* [layer] -> [tokens][width] */
} calib_recorder;

static void record_calibration(void *ctx, int layer, const float *q, const float *k, const float *v, int n, int pos0)
{
    calib_recorder *c = ctx;
    if (pos0 != 0 || n != c->n_tokens)
        return;
    memcpy(c->q[layer], q, (size_t)n * c->q_width * sizeof(float));
    memcpy(c->k[layer], k, (size_t)n * c->kv_width * sizeof(float));
    memcpy(c->v[layer], v, (size_t)n * c->kv_width * sizeof(float));
}

/* The tensors layers.{i}.q [tokens, n_head, head_dim], layers.{i}.k and
 * layers.{i}.v [tokens, n_kv_head, head_dim], F32, in that order, with
 * metadata source = slimkv-run, through the safetensors library's writer
 * (a temporary file in the target's directory, fsync, rename: a failure
 * leaves no half file and the target as it was). */
static slimkv_status write_calibration(const char *path, const calib_recorder *c, int head_dim)
{
    size_t n = (size_t)c->n_layer * 3;
    st_out *out = calloc(n ? n : 1, sizeof *out);
    char(*names)[32] = calloc(n ? n : 1, sizeof *names);
    slimkv_status st = out && names ? SLIMKV_OK : SLIMKV_ERR_NOMEM;
    for (int l = 0; st == SLIMKV_OK && l < c->n_layer; l++) {
        const char *what[3] = {"q", "k", "v"};
        const float *data[3] = {c->q[l], c->k[l], c->v[l]};
        int widths[3] = {c->q_width, c->kv_width, c->kv_width};
        for (int i = 0; i < 3; i++) {
            size_t t = (size_t)l * 3 + (size_t)i;
            snprintf(names[t], sizeof names[t], "layers.%d.%s", l, what[i]);
            out[t] = (st_out){.name = names[t], .dtype = ST_F32, .n_dims = 3,
                              .shape = {c->n_tokens, widths[i] / head_dim, head_dim}, .data = data[i]};
        }
    }
    st_meta meta = {"source", "slimkv-run"};
    if (st == SLIMKV_OK)
        st = st_write(path, out, n, &meta, 1);
    free(names);
    free(out);
    return st;
}

static int run_write_calibration(const runtime *rt)
{
    const run_options *o = rt->opt;
    const llama_hparams *hp = rt->hp;
    if (!o->calib_file) {
        fprintf(stderr, "slimkv-run: --write-calib needs --calib FILE (the text to run)\n");
        return 1;
    }
    int32_t *ids;
    size_t n;
    if (tokenize_file(rt, o->calib_file, &ids, &n) != SLIMKV_OK)
        return 1;
    if (n < (size_t)o->calib_tokens) {
        fprintf(stderr, "slimkv-run: %s has %zu tokens, fewer than --calib-tokens %d\n", o->calib_file, n,
                o->calib_tokens);
        free(ids);
        return 1;
    }
    calib_recorder c = {.n_layer = hp->n_layer, .n_tokens = o->calib_tokens, .q_width = hp->n_head * hp->head_dim,
                        .kv_width = hp->n_kv_head * hp->head_dim};
    c.q = calloc((size_t)hp->n_layer, sizeof *c.q);
    c.k = calloc((size_t)hp->n_layer, sizeof *c.k);
    c.v = calloc((size_t)hp->n_layer, sizeof *c.v);
    slimkv_status st = c.q && c.k && c.v ? SLIMKV_OK : SLIMKV_ERR_NOMEM;
    for (int l = 0; st == SLIMKV_OK && l < hp->n_layer; l++) {
        c.q[l] = malloc((size_t)c.n_tokens * c.q_width * sizeof(float));
        c.k[l] = malloc((size_t)c.n_tokens * c.kv_width * sizeof(float));
        c.v[l] = malloc((size_t)c.n_tokens * c.kv_width * sizeof(float));
        if (!c.q[l] || !c.k[l] || !c.v[l])
            st = SLIMKV_ERR_NOMEM;
    }
    llama_session *s = NULL;
    llama_cache_options opts;
    llama_cache_options_init(&opts);
    if (st == SLIMKV_OK)
        st = llama_session_create(rt->model, &opts, c.n_tokens, c.n_tokens, &s);
    if (st == SLIMKV_OK) {
        llama_session_set_observer(s, record_calibration, &c);
        st = llama_forward(s, ids, c.n_tokens, LLAMA_PREFILL, NULL, 0);
    }
    if (st == SLIMKV_OK)
        st = write_calibration(o->write_calib, &c, hp->head_dim);
    if (st == SLIMKV_OK)
        fprintf(stderr, "[calib] wrote %s: %d tokens of %s, q/k/v of %d layers\n", o->write_calib, c.n_tokens,
                o->calib_file, hp->n_layer);
    else
        report("calibration data", st);
    llama_session_free(s);
    for (int l = 0; l < hp->n_layer; l++) {
        free(c.q ? c.q[l] : NULL);
        free(c.k ? c.k[l] : NULL);
        free(c.v ? c.v[l] : NULL);
    }
    free(c.q);
    free(c.k);
    free(c.v);
    free(ids);
    return st == SLIMKV_OK ? 0 : 1;
}

/* ---- modes --------------------------------------------------------- */

/* Streams each token's text to stdout; when stdout is redirected and
 * stderr is a terminal, a progress line with the decode rate goes there. */
static int show_progress(void)
{
    return !isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
}

static void print_token(const runtime *rt, int32_t id, int count)
{
    static double first_token_time;
    const char *bytes;
    size_t len;
    if (tokenizer_token_bytes(rt->tok, id, &bytes, &len) == SLIMKV_OK)
        fwrite(bytes, 1, len, stdout);
    fflush(stdout);
    if (count == 1)
        first_token_time = now_seconds();
    else if (show_progress())
        fprintf(stderr, "\r[gen] %d/%d tokens, %.1f tok/s", count, rt->opt->n_gen,
                (count - 1) / (now_seconds() - first_token_time));
}

static kv_config config_from_options(const runtime *rt)
{
    const run_options *o = rt->opt;
    kv_config kc = {.k_format = o->k_format, .v_format = o->v_format, .keep_k = o->keep_k,
                    .score_with_q = o->score_with_q, .policy = o->policy, .prune_ratio = o->prune_ratio,
                    .streaming = o->streaming, .sinks = o->sinks, .plan = rt->plan, .rotate = o->rotate,
                    .eviction = o->eviction, .evict_budget = o->evict_budget};
    snprintf(kc.name, sizeof kc.name, "K %s, V %s", slimkv_format_name(o->k_format), slimkv_format_name(o->v_format));
    return kc;
}

/* Calibrates when the configuration needs masks. calib_ids may be NULL: the
 * calibration file (or `fallback`) is tokenized here. */
static slimkv_status masks_for(const runtime *rt, const kv_config *kc, const int32_t *fallback, size_t n_fallback,
                               uint8_t ***masks)
{
    const run_options *o = rt->opt;
    *masks = NULL;
    if (kc->keep_k >= 1.0 && kc->streaming <= 0.0)
        return SLIMKV_OK;
    int32_t *ids = NULL;
    size_t n = 0;
    slimkv_status st = SLIMKV_OK;
    if (o->calib_file) {
        st = tokenize_file(rt, o->calib_file, &ids, &n);
        if (st != SLIMKV_OK)
            return report("calibration text", st), st;
        fallback = ids;
        n_fallback = n;
    }
    if (!fallback || n_fallback < (size_t)o->calib_tokens) {
        fprintf(stderr, "slimkv-run: masks need %d calibration tokens: give --calib FILE\n", o->calib_tokens);
        free(ids);
        return SLIMKV_ERR_INVALID_ARG;
    }
    calibration c;
    st = calibrate(rt, fallback, o->calib_tokens, o->residual, kc->sinks, &c);
    free(ids);
    if (st != SLIMKV_OK)
        return st;
    st = build_masks(&c, kc->keep_k, kc->score_with_q, kc->streaming, masks);
    calibration_free(&c);
    return st;
}

static int run_generation(const runtime *rt)
{
    const run_options *o = rt->opt;
    size_t cap = strlen(o->prompt) + 128;
    char *text = malloc(cap);
    if (!text)
        return report("prompt", SLIMKV_ERR_NOMEM), 1;
    if (o->chat)
        snprintf(text, cap, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", o->prompt);
    else
        snprintf(text, cap, "%s", o->prompt);
    int32_t *ids;
    size_t n;
    slimkv_status st = tokenizer_encode(rt->tok, text, strlen(text), o->chat, &ids, &n);
    free(text);
    if (st != SLIMKV_OK)
        return report("tokenize", st), 1;
    if (n == 0) {
        free(ids);
        fprintf(stderr, "slimkv-run: the prompt has no tokens\n");
        return 1;
    }
    kv_config kc = config_from_options(rt);
    uint8_t **masks = NULL;
    if (masks_for(rt, &kc, NULL, 0, &masks) != SLIMKV_OK) {
        free(ids);
        return 1;
    }
    llama_cache_options opts;
    cache_options(o, &kc, masks, &opts);
    if (!o->chat)
        fwrite(o->prompt, 1, strlen(o->prompt), stdout);
    gen_result g;
    st = generate(rt, &opts, ids, (int)n, o->n_gen, !o->ignore_eos, print_token, &g);
    printf("\n");
    if (show_progress() && g.n > 1)
        fputc('\n', stderr);
    if (st == SLIMKV_OK)
        fprintf(stderr,
                "[gen] prompt %zu tokens in %.2f s (%.1f tok/s); generated %d tokens, decode %.1f tok/s; "
                "KV cache %.1f MiB; peak RSS %.0f MiB\n",
                n, g.prefill_seconds, (double)n / g.prefill_seconds, g.n, g.n > 1 ? (g.n - 1) / g.decode_seconds : 0.0,
                (double)g.kv_bytes / 1048576.0, peak_rss_mib());
    free(g.tokens);
    free(ids);
    free_masks(masks, rt->hp->n_layer);
    return st == SLIMKV_OK ? 0 : 1;
}

/* The evaluated slice [offset, offset + max_tokens) of a tokenized file. */
static int slice_of(const run_options *o, size_t n, int *begin, int *count)
{
    if ((size_t)o->offset + (size_t)o->ctx > n) {
        fprintf(stderr, "slimkv-run: the file has %zu tokens: too few for --offset %d plus --ctx %d\n", n, o->offset,
                o->ctx);
        return 0;
    }
    *begin = o->offset;
    *count = n - (size_t)o->offset < (size_t)o->max_tokens ? (int)(n - (size_t)o->offset) : o->max_tokens;
    return 1;
}

static int run_perplexity(const runtime *rt)
{
    const run_options *o = rt->opt;
    int32_t *ids;
    size_t n;
    if (tokenize_file(rt, o->ppl_file, &ids, &n) != SLIMKV_OK)
        return 1;
    int begin, count;
    kv_config kc = config_from_options(rt);
    uint8_t **masks = NULL;
    if (!slice_of(o, n, &begin, &count) || masks_for(rt, &kc, ids, (size_t)begin, &masks) != SLIMKV_OK) {
        free(ids);
        return 1;
    }
    llama_cache_options opts;
    cache_options(o, &kc, masks, &opts);
    ppl_run run;
    slimkv_status st = perplexity(rt, &opts, ids + begin, count, NULL, NULL, NULL, NULL, &run);
    if (st == SLIMKV_OK)
        printf("perplexity %.4f over %ld tokens (ctx %d, stride %d, chunk %d, from token %d of %zu); "
               "KV bytes per token %.1f; %.1f s\n",
               run.r.perplexity, run.r.scored, o->ctx, o->stride, o->chunk, begin, n,
               (double)run.r.bytes / run.r.tokens_held, run.seconds);
    free(ids);
    free_masks(masks, rt->hp->n_layer);
    return st == SLIMKV_OK ? 0 : 1;
}

typedef struct eval_row {
    kv_config kc;
    ppl_run ppl;
    double decode_tps;
    double agreement; /* free-running greedy tokens equal to dense, % */
    double top1;      /* teacher-forced: scored predictions whose argmax equals dense's, % */
    double kl_mean, kl_p99; /* KL(dense || this) of the scored predictions, nats */
} eval_row;

/* The mean and the 99th percentile (nearest rank) of n KL values; sorts them. */
static void kl_summary(double *kl, long n, double *mean, double *p99)
{
    double sum = 0.0;
    for (long i = 0; i < n; i++)
        sum += kl[i];
    qsort(kl, (size_t)n, sizeof *kl, by_value);
    long rank = (long)ceil(0.99 * (double)n);
    *mean = n > 0 ? sum / (double)n : 0.0;
    *p99 = n > 0 ? kl[(rank > 0 ? rank : 1) - 1] : 0.0;
}

/* The configurations the eval table and the depth bench compare, dense f16
 * first (the baseline), --plan's last when given; returns how many. */
#define N_STANDARD_CONFIGS 61
static int standard_configs(const runtime *rt, kv_config *rows)
{
    const run_options *o = rt->opt;
    int stream_sinks = o->sinks > STREAMING_MIN_SINKS ? o->sinks : STREAMING_MIN_SINKS;
    /* Dense f16 first: the baseline the others are compared with. */
#define ROW(label, kf, vf, keep, by_q, stream, s, pol, ratio)                                                      \
    {.name = label, .k_format = kf, .v_format = vf, .keep_k = keep, .score_with_q = by_q, .streaming = stream,     \
     .sinks = s, .policy = pol, .prune_ratio = ratio}
    /* every channel kept, the group size and rotation of the row */
#define LOWBIT(label, kf, vf, g, rot)                                                                              \
    {.name = label, .k_format = kf, .v_format = vf, .keep_k = 1.0, .sinks = o->sinks, .group = g, .rotate = rot}
    /* n K outlier channels per head at q8 */
#define OUTLIERS(label, kf, vf, g, rot, n)                                                                         \
    {.name = label, .k_format = kf, .v_format = vf, .keep_k = 1.0, .sinks = o->sinks, .group = g, .rotate = rot,   \
     .k_outliers = n}
    /* K quantized per token (a measurement: K decoded again into f16) */
#define K_PER_TOKEN(label, bits, vf, rot)                                                                          \
    {.name = label, .k_format = SLIMKV_F16, .v_format = vf, .keep_k = 1.0, .sinks = o->sinks, .rotate = rot,       \
     .k_token_bits = bits}
#define EVICT_ROW(label, f, pol, ratio, ev, budget)                                                                \
    {.name = label, .k_format = f, .v_format = f, .keep_k = 1.0, .sinks = o->sinks, .policy = pol,                 \
     .prune_ratio = ratio, .eviction = ev, .evict_budget = budget}
    const slimkv_policy none = SLIMKV_POLICY_NONE, think = SLIMKV_POLICY_THINK, spark = SLIMKV_POLICY_SPARK;
    const kv_config all[] = {
        ROW("f16 (dense)", SLIMKV_F16, SLIMKV_F16, 1.0, 0, 0.0, o->sinks, none, 0),
        ROW("q8", SLIMKV_Q8, SLIMKV_Q8, 1.0, 0, 0.0, o->sinks, none, 0),
        ROW("q4", SLIMKV_Q4, SLIMKV_Q4, 1.0, 0, 0.0, o->sinks, none, 0),
        ROW("q2", SLIMKV_Q2, SLIMKV_Q2, 1.0, 0, 0.0, o->sinks, none, 0),
        LOWBIT("q2, V rotated", SLIMKV_Q2, SLIMKV_Q2, 0, SLIMKV_ROTATE_V),
        LOWBIT("q2, K+V rotated", SLIMKV_Q2, SLIMKV_Q2, 0, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("q2, G=16", SLIMKV_Q2, SLIMKV_Q2, 16, 0),
        LOWBIT("q2, G=16, V rotated", SLIMKV_Q2, SLIMKV_Q2, 16, SLIMKV_ROTATE_V),
        LOWBIT("q2, G=16, K+V rotated", SLIMKV_Q2, SLIMKV_Q2, 16, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("q2, G=64", SLIMKV_Q2, SLIMKV_Q2, 64, 0),
        LOWBIT("q2, G=64, K+V rotated", SLIMKV_Q2, SLIMKV_Q2, 64, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("q2, G=128, K+V rotated", SLIMKV_Q2, SLIMKV_Q2, 128, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("q3", SLIMKV_Q3, SLIMKV_Q3, 0, 0),
        LOWBIT("q3, V rotated", SLIMKV_Q3, SLIMKV_Q3, 0, SLIMKV_ROTATE_V),
        LOWBIT("q3, K+V rotated", SLIMKV_Q3, SLIMKV_Q3, 0, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("q3, G=64, K+V rotated", SLIMKV_Q3, SLIMKV_Q3, 64, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("q3, G=128, K+V rotated", SLIMKV_Q3, SLIMKV_Q3, 128, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("K q3 / V q2, K+V rotated", SLIMKV_Q3, SLIMKV_Q2, 0, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("K q3 / V q2, G=64, K+V rotated", SLIMKV_Q3, SLIMKV_Q2, 64, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("K q2 / V q3, G=64, K+V rotated", SLIMKV_Q2, SLIMKV_Q3, 64, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("K q3 / V q2, G=128, K+V rotated", SLIMKV_Q3, SLIMKV_Q2, 128, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("q4, G=64, K+V rotated", SLIMKV_Q4, SLIMKV_Q4, 64, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("q4, K+V rotated", SLIMKV_Q4, SLIMKV_Q4, 0, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        K_PER_TOKEN("q4, K per token", 4, SLIMKV_Q4, 0),
        K_PER_TOKEN("q4, K per token, K+V rotated", 4, SLIMKV_Q4, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        K_PER_TOKEN("q2, K per token", 2, SLIMKV_Q2, 0),
        K_PER_TOKEN("q2, K per token, K+V rotated", 2, SLIMKV_Q2, SLIMKV_ROTATE_K | SLIMKV_ROTATE_V),
        LOWBIT("q4, V rotated", SLIMKV_Q4, SLIMKV_Q4, 0, SLIMKV_ROTATE_V),
        /* K outliers: K unrotated (a rotation spreads the outliers over every channel) */
        OUTLIERS("q2, K 4 outliers", SLIMKV_Q2, SLIMKV_Q2, 0, 0, 4),
        OUTLIERS("q2, K 8 outliers", SLIMKV_Q2, SLIMKV_Q2, 0, 0, 8),
        OUTLIERS("q2, K 8 outliers, V rotated", SLIMKV_Q2, SLIMKV_Q2, 0, SLIMKV_ROTATE_V, 8),
        OUTLIERS("q2, G=64, K 4 outliers, V rotated", SLIMKV_Q2, SLIMKV_Q2, 64, SLIMKV_ROTATE_V, 4),
        OUTLIERS("q2, G=128, K 4 outliers, V rotated", SLIMKV_Q2, SLIMKV_Q2, 128, SLIMKV_ROTATE_V, 4),
        OUTLIERS("q2, G=128, K 8 outliers, V rotated", SLIMKV_Q2, SLIMKV_Q2, 128, SLIMKV_ROTATE_V, 8),
        OUTLIERS("K q3 / V q2, G=128, K 4 outliers, V rotated", SLIMKV_Q3, SLIMKV_Q2, 128, SLIMKV_ROTATE_V, 4),
        OUTLIERS("q3, K 4 outliers, V rotated", SLIMKV_Q3, SLIMKV_Q3, 0, SLIMKV_ROTATE_V, 4),
        OUTLIERS("q3, G=64, K 4 outliers, V rotated", SLIMKV_Q3, SLIMKV_Q3, 64, SLIMKV_ROTATE_V, 4),
        OUTLIERS("K q3 / V q2, G=64, K 4 outliers, V rotated", SLIMKV_Q3, SLIMKV_Q2, 64, SLIMKV_ROTATE_V, 4),
        OUTLIERS("q3, G=128, K 4 outliers, V rotated", SLIMKV_Q3, SLIMKV_Q3, 128, SLIMKV_ROTATE_V, 4),
        ROW("q4, K 75% kept by k", SLIMKV_Q4, SLIMKV_Q4, 0.75, 0, 0.0, o->sinks, none, 0),
        ROW("q4, K 75% kept by q·k", SLIMKV_Q4, SLIMKV_Q4, 0.75, 1, 0.0, o->sinks, none, 0),
        ROW("q4, K 50% kept by k", SLIMKV_Q4, SLIMKV_Q4, 0.5, 0, 0.0, o->sinks, none, 0),
        ROW("q4, K 50% kept by q·k", SLIMKV_Q4, SLIMKV_Q4, 0.5, 1, 0.0, o->sinks, none, 0),
        ROW("q2, K 50% kept by q·k", SLIMKV_Q2, SLIMKV_Q2, 0.5, 1, 0.0, o->sinks, none, 0),
        ROW("q4, ThinK 0.4", SLIMKV_Q4, SLIMKV_Q4, 1.0, 0, 0.0, o->sinks, think, 0.4),
        ROW("f16, SparK 0.5", SLIMKV_F16, SLIMKV_F16, 1.0, 0, 0.0, o->sinks, spark, 0.5),
        ROW("q4, SparK 0.5", SLIMKV_Q4, SLIMKV_Q4, 1.0, 0, 0.0, o->sinks, spark, 0.5),
        ROW("q4, SparK 0.8", SLIMKV_Q4, SLIMKV_Q4, 1.0, 0, 0.0, o->sinks, spark, 0.8),
        ROW("q4, 25% streaming heads", SLIMKV_Q4, SLIMKV_Q4, 1.0, 0, 0.25, stream_sinks, none, 0),
        ROW("q4, 50% streaming heads", SLIMKV_Q4, SLIMKV_Q4, 1.0, 0, 0.50, stream_sinks, none, 0),
        /* token eviction (--configs evict) */
        EVICT_ROW("f16, SnapKV 512", SLIMKV_F16, none, 0, SLIMKV_EVICT_SNAPKV, 512),
        EVICT_ROW("f16, SnapKV 1024", SLIMKV_F16, none, 0, SLIMKV_EVICT_SNAPKV, 1024),
        EVICT_ROW("f16, SnapKV 2048", SLIMKV_F16, none, 0, SLIMKV_EVICT_SNAPKV, 2048),
        EVICT_ROW("q4, SnapKV 1024", SLIMKV_Q4, none, 0, SLIMKV_EVICT_SNAPKV, 1024),
        EVICT_ROW("q4, SnapKV 2048", SLIMKV_Q4, none, 0, SLIMKV_EVICT_SNAPKV, 2048),
        EVICT_ROW("q4, ThinK 0.4, SnapKV 512", SLIMKV_Q4, think, 0.4, SLIMKV_EVICT_SNAPKV, 512),
        EVICT_ROW("q4, ThinK 0.4, SnapKV 1024", SLIMKV_Q4, think, 0.4, SLIMKV_EVICT_SNAPKV, 1024),
        EVICT_ROW("q4, ThinK 0.4, SnapKV 2048", SLIMKV_Q4, think, 0.4, SLIMKV_EVICT_SNAPKV, 2048),
        EVICT_ROW("f16, H2O 1024", SLIMKV_F16, none, 0, SLIMKV_EVICT_H2O, 1024),
        EVICT_ROW("q4, H2O 1024", SLIMKV_Q4, none, 0, SLIMKV_EVICT_H2O, 1024),
        /* the last row: --plan's, when given */
        ROW("plan", SLIMKV_F16, SLIMKV_F16, 1.0, 0, 0.0, o->sinks, none, 0),
    };
#undef ROW
#undef LOWBIT
#undef K_PER_TOKEN
#undef OUTLIERS
#undef EVICT_ROW
    int n_rows = (int)(sizeof all / sizeof all[0]) - (rt->plan ? 0 : 1);
    memcpy(rows, all, (size_t)n_rows * sizeof *rows);
    if (rt->plan) {
        kv_config *plan_row = &rows[n_rows - 1];
        const char *base = strrchr(o->plan_file, '/');
        snprintf(plan_row->name, sizeof plan_row->name, "plan %s", base ? base + 1 : o->plan_file);
        plan_row->plan = rt->plan;
    }
    return n_rows;
}

/* The standard configs (all: those without token eviction), only the
 * default few (dense, q8, q4, and q4 with each way of pruning K), or the
 * eviction set (dense, q4, q4 + ThinK and the token eviction rows);
 * --plan's always; returns how many. */
static kv_config config_from_options(const runtime *rt);

static int chosen_configs(const runtime *rt, int all, kv_config *out)
{
    if (rt->opt->configs && !strcmp(rt->opt->configs, "options")) {
        out[0] = config_from_options(rt);
        return 1;
    }
    int evict_set = rt->opt->configs && !strcmp(rt->opt->configs, "evict");
    static const char *const defaults[] = {"f16 (dense)", "q8", "q4", "q4, K 75% kept by q·k", "q4, ThinK 0.4",
                                           "q4, SparK 0.5"};
    static const char *const evict_baselines[] = {"f16 (dense)", "q4", "q4, ThinK 0.4"};
    kv_config every[N_STANDARD_CONFIGS];
    int n_every = standard_configs(rt, every), n = 0;
    const char *list = rt->opt->configs;
    if (list && strcmp(list, "default") && strcmp(list, "all") && !evict_set) {
        /* row names separated by ';', in the table's order; the dense row,
         * which every other is compared with, always comes first */
        int named = 1;
        for (const char *p = list; *p; p++)
            named += *p == ';';
        out[n++] = every[0];
        for (int i = 1; i < n_every; i++) {
            size_t len = strlen(every[i].name);
            for (const char *p = list; p; p = strchr(p, ';') ? strchr(p, ';') + 1 : NULL)
                if (!strncmp(p, every[i].name, len) && (p[len] == ';' || p[len] == '\0')) {
                    out[n++] = every[i];
                    break;
                }
        }
        int dense_named = 0;
        for (const char *p = list; p; p = strchr(p, ';') ? strchr(p, ';') + 1 : NULL)
            dense_named |= !strncmp(p, every[0].name, strlen(every[0].name));
        if (n - 1 + dense_named != named) {
            fprintf(stderr, "slimkv-run: --configs: %d of the %d names are rows of the table (see --eval's rows)\n",
                    n - 1 + dense_named, named);
            return 0;
        }
        return n;
    }
    for (int i = 0; i < n_every; i++) {
        if (evict_set) {
            int chosen = every[i].eviction != SLIMKV_EVICT_NONE || every[i].plan;
            for (size_t j = 0; j < sizeof evict_baselines / sizeof evict_baselines[0] && !chosen; j++)
                chosen = !strcmp(every[i].name, evict_baselines[j]);
            if (chosen)
                out[n++] = every[i];
            continue;
        }
        if (every[i].eviction != SLIMKV_EVICT_NONE)
            continue;
        int chosen = all || every[i].plan;
        for (size_t j = 0; j < sizeof defaults / sizeof defaults[0] && !chosen; j++)
            chosen = !strcmp(every[i].name, defaults[j]);
        if (chosen)
            out[n++] = every[i];
    }
    return n;
}

static int run_eval(const runtime *rt)
{
    const run_options *o = rt->opt;
    int32_t *ids;
    size_t n;
    if (tokenize_file(rt, o->eval_file, &ids, &n) != SLIMKV_OK)
        return 1;
    int begin, count;
    if (!slice_of(o, n, &begin, &count)) {
        free(ids);
        return 1;
    }
    kv_config rows_spec[N_STANDARD_CONFIGS];
    int n_rows = chosen_configs(rt, !o->configs || !strcmp(o->configs, "all"), rows_spec);
    if (n_rows == 0) {
        free(ids);
        return 1;
    }
    eval_row rows[N_STANDARD_CONFIGS] = {0}; /* the dense row is the KL reference: its KL stays 0 */
    int n_prompt = o->ctx - o->n_gen;
    if (n_prompt < 1 || n_prompt > count) {
        fprintf(stderr, "slimkv-run: --n %d leaves no prompt in a --ctx %d window\n", o->n_gen, o->ctx);
        free(ids);
        return 1;
    }
    fprintf(stderr, "[eval] %s: tokens %d..%d of %zu, ctx %d, stride %d, chunk %d; R=%d G=%d; calibration: %d tokens\n",
            o->eval_file, begin, begin + count, n, o->ctx, o->stride, o->chunk, o->residual, o->group,
            o->calib_tokens);
    int32_t *reference = NULL;
    long n_scored = llama_ppl_scored(count, o->ctx, o->stride);
    int32_t *dense_argmax = malloc((size_t)(n_scored > 0 ? n_scored : 1) * sizeof(int32_t));
    int32_t *argmax = malloc((size_t)(n_scored > 0 ? n_scored : 1) * sizeof(int32_t));
    /* dense's log-probabilities of every scored prediction, for the KL
     * divergence of the others: n_scored x n_vocab floats */
    size_t logprob_floats = (size_t)(n_scored > 0 ? n_scored : 1) * (size_t)rt->hp->n_vocab;
    float *dense_logprobs = malloc(logprob_floats * sizeof(float));
    double *kl = malloc((size_t)(n_scored > 0 ? n_scored : 1) * sizeof(double));
    fprintf(stderr, "[eval] dense log-probabilities for the KL divergence: %.0f MiB\n",
            (double)logprob_floats * sizeof(float) / 1048576.0);
    int status = dense_argmax && argmax && dense_logprobs && kl ? 0 : 1;
    if (status)
        report("eval", SLIMKV_ERR_NOMEM);
    for (int r = 0; r < n_rows && status == 0; r++) {
        eval_row *row = &rows[r];
        row->kc = rows_spec[r];
        uint8_t **masks = NULL;
        if (masks_for(rt, &row->kc, ids, (size_t)begin, &masks) != SLIMKV_OK) {
            status = 1;
            break;
        }
        llama_cache_options opts;
        cache_options(o, &row->kc, masks, &opts);
        fprintf(stderr, "[eval] %s\n", row->kc.name);
        gen_result g = {0};
        slimkv_status st = perplexity(rt, &opts, ids + begin, count, r == 0 ? dense_argmax : argmax,
                                      r == 0 ? dense_logprobs : NULL, r == 0 ? NULL : dense_logprobs, kl, &row->ppl);
        row->kl_mean = row->kl_p99 = 0.0; /* the dense row is the reference */
        if (st == SLIMKV_OK && r > 0)
            kl_summary(kl, row->ppl.r.scored, &row->kl_mean, &row->kl_p99);
        if (st == SLIMKV_OK) {
            long same = 0;
            for (long i = 0; i < row->ppl.r.scored; i++)
                same += (r == 0 ? dense_argmax : argmax)[i] == dense_argmax[i];
            row->top1 = 100.0 * (double)same / (double)row->ppl.r.scored;
        }
        if (st == SLIMKV_OK)
            st = generate(rt, &opts, ids + begin, n_prompt, o->n_gen, 0, NULL, &g);
        if (st == SLIMKV_OK) {
            row->decode_tps = g.median_step_seconds > 0 ? 1.0 / g.median_step_seconds : 0.0;
            if (!reference) {
                reference = g.tokens;
                g.tokens = NULL;
            }
            int same = 0;
            for (int i = 0; i < g.n; i++)
                same += (g.tokens ? g.tokens[i] : reference[i]) == reference[i];
            row->agreement = 100.0 * same / g.n;
        } else {
            status = 1;
        }
        free(g.tokens);
        free_masks(masks, rt->hp->n_layer);
    }
    if (status == 0) {
        double dense_ppl = rows[0].ppl.r.perplexity;
        double dense_bytes = (double)rows[0].ppl.r.bytes / rows[0].ppl.r.tokens_held;
        printf("\nSmolLM2-135M-Instruct (Q4_1 weights, %s kernels), %s tokens %d..%d, ctx %d, stride %d: %ld scored "
               "tokens; "
               "R=%d, G=%d; top-1: teacher-forced argmax equal to dense over the scored tokens; greedy: "
               "free-running tokens equal to dense over %d steps after a %d-token prompt; decode tok/s: 1 / median "
               "step time of those steps; KL: KL(dense || config) of the scored next-token distributions, nats, mean "
               "and 99th percentile; K kept by k: channels of largest mean |k|, by q·k: of largest mean |q| * mean "
               "|k|\n\n",
               llama_weights_isa(rt->model), o->eval_file, begin, begin + count, o->ctx, o->stride,
               rows[0].ppl.r.scored, o->residual, o->group, o->n_gen, n_prompt);
        int evicting = 0;
        for (int r = 0; r < n_rows; r++)
            evicting |= rows[r].kc.eviction != SLIMKV_EVICT_NONE;
        if (evicting)
            printf("Token eviction: every window's prompt (%d tokens) goes through one prefill call, where "
                   "SnapKV keeps the evict budget + the last %d tokens (pool %d) and H2O the budget + the last %d "
                   "(R); the scored tokens are decode batches of %d (append + slimkv_attend_observe), where only "
                   "H2O evicts. KV bytes/token: bytes held at the end of a window over the tokens seen (%d); "
                   "held: tokens each cache holds after the prompt -> at the end of a window.\n\n",
                   o->ctx - o->stride, o->window, o->evict_pool, o->residual, o->chunk, o->ctx - 1);
        printf("| config | bits/elem | KV bytes/token | vs dense | decode tok/s | perplexity | vs dense | KL mean | "
               "KL p99 | top-1 = dense | greedy = dense |%s\n", evicting ? " held |" : "");
        printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|%s\n", evicting ? "---:|" : "");
        for (int r = 0; r < n_rows; r++) {
            double ppl = rows[r].ppl.r.perplexity;
            double bytes = (double)rows[r].ppl.r.bytes / rows[r].ppl.r.tokens_held;
            char sinks[32] = "";
            if (rows[r].kc.sinks != o->sinks)
                snprintf(sinks, sizeof sinks, " (S=%d)", rows[r].kc.sinks);
            char held[48] = "";
            if (evicting)
                snprintf(held, sizeof held, " %d -> %d |", rows[r].ppl.r.cache_tokens_prompt,
                         rows[r].ppl.r.cache_tokens_end);
            printf("| %s%s | %.4g | %.0f | %.1f%% | %.1f | %.3f | %+.2f%% | %.4f | %.4f | %.1f%% | %.1f%% |%s\n",
                   rows[r].kc.name, sinks, body_bits_per_element(o, &rows[r].kc, llama_get_hparams(rt->model)->head_dim),
                   bytes, 100.0 * bytes / dense_bytes, rows[r].decode_tps, ppl,
                   100.0 * (ppl / dense_ppl - 1.0), rows[r].kl_mean, rows[r].kl_p99, rows[r].top1, rows[r].agreement,
                   held);
        }
    }
    free(reference);
    free(dense_argmax);
    free(argmax);
    free(dense_logprobs);
    free(kl);
    free(ids);
    return status;
}

/* ---- depth benchmark --------------------------------------------------- */

typedef struct depth_row {
    const char *config;
    int depth;
    double prompt_tps, decode_tps; /* decode: 1 / the median step's time */
    size_t kv_bytes;
    double peak_rss_mib;
    int held; /* tokens layer 0's cache holds at the end (fewer than seen with eviction) */
} depth_row;

/* One (config, depth): a fresh session, `depth` prompt tokens in batches
 * (depth 0: one token, the decode's start), then n timed decode steps. */
static slimkv_status depth_run(const runtime *rt, const llama_cache_options *opts, const int32_t *text, int depth,
                               depth_row *row)
{
    const run_options *o = rt->opt;
    int n_prompt = depth > 0 ? depth : 1, batch = n_prompt < o->batch ? n_prompt : o->batch;
    float *logits = malloc((size_t)rt->hp->n_vocab * sizeof(float));
    llama_session *s = NULL;
    slimkv_status st = logits ? SLIMKV_OK : SLIMKV_ERR_NOMEM;
    reset_peak_rss();
    if (st == SLIMKV_OK)
        st = llama_session_create(rt->model, opts, n_prompt + o->n_gen, batch, &s);
    double *steps = malloc((size_t)o->n_gen * sizeof *steps);
    if (!steps)
        st = SLIMKV_ERR_NOMEM;
    double t0 = now_seconds();
    if (st == SLIMKV_OK)
        st = prefill_in_batches(s, text, n_prompt, batch, logits);
    double t1 = now_seconds();
    for (int i = 0; i < o->n_gen && st == SLIMKV_OK; i++) {
        int32_t next = argmax(logits, rt->hp->n_vocab);
        double step_start = now_seconds();
        st = llama_forward(s, &next, 1, LLAMA_DECODE, logits, 0);
        steps[i] = now_seconds() - step_start;
    }
    if (st == SLIMKV_OK)
        st = llama_session_bytes(s, &row->kv_bytes);
    if (st == SLIMKV_OK)
        st = slimkv_cache_tokens(llama_session_cache(s, 0), &row->held);
    row->depth = depth;
    row->prompt_tps = depth > 0 ? depth / (t1 - t0) : 0.0;
    if (st == SLIMKV_OK) { /* the median step: bursts of other load do not drag it down */
        qsort(steps, (size_t)o->n_gen, sizeof *steps, by_value);
        row->decode_tps = 1.0 / steps[o->n_gen / 2];
    }
    row->peak_rss_mib = peak_rss_mib();
    llama_session_free(s);
    free(steps);
    free(logits);
    return st;
}

static int write_depth_json(const char *path, const run_options *o, const runtime *rt, const depth_row *rows, int n)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "slimkv-run: --json %s: cannot write\n", path);
        return 1;
    }
    fprintf(f, "{\n  \"model\": \"%s\",\n  \"threads\": %d,\n  \"weights\": \"%s\",\n  \"decode_steps\": %d,\n",
            o->model_path, omp_get_max_threads(), llama_weights_isa(rt->model), o->n_gen);
    fprintf(f, "  \"batch\": %d,\n  \"rows\": [\n", o->batch);
    for (int i = 0; i < n; i++)
        fprintf(f,
                "    {\"config\": \"%s\", \"depth\": %d, \"prompt_tok_s\": %.2f, \"decode_tok_s\": %.2f, "
                "\"kv_bytes\": %zu, \"peak_rss_mib\": %.1f, \"tokens_held\": %d}%s\n",
                rows[i].config, rows[i].depth, rows[i].prompt_tps, rows[i].decode_tps, rows[i].kv_bytes,
                rows[i].peak_rss_mib, rows[i].held, i + 1 < n ? "," : "");
    fprintf(f, "  ]\n}\n");
    return fclose(f) == 0 ? 0 : 1;
}

static int run_depth_bench(const runtime *rt)
{
    const run_options *o = rt->opt;
    int32_t *ids;
    size_t n;
    if (tokenize_file(rt, o->depth_file, &ids, &n) != SLIMKV_OK)
        return 1;
    int deepest = 1;
    for (int d = 0; d < o->n_depths; d++)
        deepest = o->depths[d] > deepest ? o->depths[d] : deepest;
    if ((size_t)o->offset + (size_t)deepest > n) {
        fprintf(stderr, "slimkv-run: %s has %zu tokens, fewer than --offset %d + depth %d\n", o->depth_file, n,
                o->offset, deepest);
        free(ids);
        return 1;
    }
    kv_config configs[N_STANDARD_CONFIGS];
    int n_configs = chosen_configs(rt, o->configs && !strcmp(o->configs, "all"), configs);
    if (n_configs == 0)
        return 1;
    depth_row *rows = calloc((size_t)n_configs * o->n_depths, sizeof *rows);
    int status = rows ? 0 : 1, n_rows = 0;
    fprintf(stderr, "[depth] %s from token %d; %d decode steps; batch %d; %d threads\n", o->depth_file, o->offset,
            o->n_gen, o->batch, omp_get_max_threads());
    for (int c = 0; c < n_configs && status == 0; c++) {
        uint8_t **masks = NULL;
        if (masks_for(rt, &configs[c], ids, n, &masks) != SLIMKV_OK) {
            status = 1;
            break;
        }
        llama_cache_options opts;
        cache_options(o, &configs[c], masks, &opts);
        for (int d = 0; d < o->n_depths && status == 0; d++) {
            depth_row *row = &rows[n_rows];
            row->config = configs[c].name;
            slimkv_status st = depth_run(rt, &opts, ids + o->offset, o->depths[d], row);
            if (st != SLIMKV_OK) {
                report("depth bench", st);
                status = 1;
                break;
            }
            n_rows++;
            fprintf(stderr, "[depth] %s, depth %d: prompt %.1f tok/s, decode %.1f tok/s\n", row->config, row->depth,
                    row->prompt_tps, row->decode_tps);
        }
        free_masks(masks, rt->hp->n_layer);
    }
    if (status == 0) {
        printf("\nSmolLM2-135M-Instruct, weights %s (%.1f MiB), %d threads: prefill D tokens of %s from token %d "
               "in batches of %d, then %d decode steps (greedy; decode tok/s: 1 / median step time); peak RSS of the "
               "whole process for that run\n\n",
               llama_weights_isa(rt->model), (double)llama_weight_bytes(rt->model) / 1048576.0, omp_get_max_threads(),
               o->depth_file, o->offset, o->batch, o->n_gen);
        int evicting = 0;
        for (int c = 0; c < n_configs; c++)
            evicting |= configs[c].eviction != SLIMKV_EVICT_NONE;
        printf("| config | depth | prompt tok/s | decode tok/s | KV MiB | peak RSS MiB |%s\n",
               evicting ? " tokens held |" : "");
        printf("|---|---:|---:|---:|---:|---:|%s\n", evicting ? "---:|" : "");
        for (int i = 0; i < n_rows; i++) {
            char prompt[32] = "-";
            if (rows[i].depth > 0)
                snprintf(prompt, sizeof prompt, "%.1f", rows[i].prompt_tps);
            char held[32] = "";
            if (evicting)
                snprintf(held, sizeof held, " %d |", rows[i].held);
            printf("| %s | %d | %s | %.1f | %.1f | %.0f |%s\n", rows[i].config, rows[i].depth, prompt,
                   rows[i].decode_tps, (double)rows[i].kv_bytes / 1048576.0, rows[i].peak_rss_mib, held);
        }
        if (o->json_file)
            status = write_depth_json(o->json_file, o, rt, rows, n_rows);
    }
    free(rows);
    free(ids);
    return status;
}

int main(int argc, char **argv)
{
    run_options o;
    int parsed = parse_options(argc, argv, &o);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    if (o.threads > 0)
        omp_set_num_threads(o.threads);
    runtime rt = {.opt = &o};
    double t0 = now_seconds();
    gguf_file *file;
    slimkv_status st = gguf_open(o.model_path, &file);
    if (st != SLIMKV_OK) {
        fprintf(stderr, "slimkv-run: %s: %s%s\n", o.model_path, slimkv_status_str(st),
                st == SLIMKV_ERR_IO ? " (run `make model-data` to fetch the model)" : "");
        return 1;
    }
    st = tokenizer_load(file, &rt.tok);
    if (st != SLIMKV_OK) {
        gguf_close(file);
        return report("tokenizer", st), 1;
    }
    llama_load_options load;
    llama_load_options_init(&load);
    load.f32_weights = o.f32_weights;
    load.isa = o.weights_isa;
    st = llama_load(file, &load, &rt.model); /* quantized weights point into file: closed at the end */
    if (st != SLIMKV_OK) {
        tokenizer_destroy(rt.tok);
        gguf_close(file);
        if (st == SLIMKV_ERR_UNSUPPORTED && o.weights_isa)
            fprintf(stderr, "slimkv-run: --weights-isa %s: not supported here\n", o.weights_isa);
        return report("model", st), 1;
    }
    rt.hp = llama_get_hparams(rt.model);
    const char *isa = "?";
    slimkv_isa_auto(&isa);
    fprintf(stderr,
            "[model] %s: %d layers, d=%d, %d heads / %d KV heads x %d, ff %d, vocab %d, rope base %g, %s output; "
            "loaded in %.2f s; %d threads; SlimKV %s kernels; weights %.1f MiB, %s kernels\n",
            o.model_path, rt.hp->n_layer, rt.hp->n_embd, rt.hp->n_head, rt.hp->n_kv_head, rt.hp->head_dim,
            rt.hp->n_ff, rt.hp->n_vocab, rt.hp->rope_base, llama_output_tied(rt.model) ? "tied" : "separate",
            now_seconds() - t0, omp_get_max_threads(), isa, (double)llama_weight_bytes(rt.model) / 1048576.0,
            llama_weights_isa(rt.model));
    if (o.plan_file) {
        st = slimkv_plan_load(o.plan_file, &rt.plan);
        if (st != SLIMKV_OK) {
            llama_free(rt.model);
            tokenizer_destroy(rt.tok);
            gguf_close(file);
            fprintf(stderr, "slimkv-run: %s: %s\n", o.plan_file, slimkv_status_str(st));
            return 1;
        }
    }
    int rc = o.prompt       ? run_generation(&rt)
             : o.ppl_file   ? run_perplexity(&rt)
             : o.eval_file  ? run_eval(&rt)
             : o.depth_file ? run_depth_bench(&rt)
                            : run_write_calibration(&rt);
    slimkv_plan_destroy(rt.plan);
    llama_free(rt.model);
    tokenizer_destroy(rt.tok);
    gguf_close(file);
    return rc;
}
