/* Shared code of the demo and the benchmark; see workload.h. */
#include "workload.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROPE_BASE 500000.0         /* Llama-3 */
#define OUTLIER_PAIRS 2            /* RoPE pairs per KV head with high-magnitude channels */
#define PAIR_MAGNITUDE_SPREAD 0.6f /* log-normal sigma of the other channels' magnitudes */
#define QUERY_FOCUS 4              /* keys each q head looks for */
#define QUERY_RECENT 64            /* the first focus key is among this many newest tokens */
/* Score lift of each focus key over an average key, drawn uniformly from
 * [MIN, MIN + SPAN]: attention ends up peaked (top weight ~0.15, ~90
 * effective tokens at 4k context) without being one-hot. */
#define QUERY_LIFT_MIN 4.0f
#define QUERY_LIFT_SPAN 4.0f
#define FILL_CHUNK 512 /* tokens per slimkv_cache_append when filling a cache */
/* Key statistics (query construction, static masks) come from this many
 * first positions, however long the workload: queries and masks then do
 * not change with the lengths a run asks for. */
#define CALIBRATION_TOKENS 4096
/* A 1-minute load average from this on means other work is competing. */
#define BUSY_LOAD 0.5

/* ---- deterministic random numbers ---- */

/* xorshift64 streams. Every token and every query gets its own stream,
 * derived from the workload seed, so the workload is the same whatever the
 * thread count, and a shorter workload is a prefix of a longer one. */
typedef struct rng {
    uint64_t state;
} rng;

static uint64_t mix64(uint64_t x) /* splitmix64 finalizer: decorrelates nearby seeds */
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static rng rng_stream(uint64_t seed, uint64_t stream, uint64_t index)
{
    rng r = {mix64(seed ^ mix64(stream ^ mix64(index)))};
    if (r.state == 0)
        r.state = 1;
    return r;
}

static uint64_t rng_next(rng *r)
{
    r->state ^= r->state << 13;
    r->state ^= r->state >> 7;
    r->state ^= r->state << 17;
    return r->state;
}

/* Uniform in [0, 1). */
static double rng_uniform(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1p-53;
}

/* Standard normal (Box-Muller): real gaussian tails, since min/max
 * quantization is sensitive to the extremes of each group. */
static float rng_normal(rng *r)
{
    double u = 1.0 - rng_uniform(r), t = rng_uniform(r);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * t));
}

enum { STREAM_STRUCTURE = 1, STREAM_TOKEN, STREAM_QUERY };

/* ---- the workload ---- */

size_t workload_row_floats(const workload *w)
{
    return (size_t)w->n_kv_heads * w->head_dim;
}

void workload_free(workload *w)
{
    free(w->k);
    free(w->v);
    free(w->k_center);
    free(w->k_mean_abs);
    free(w->k_std);
    memset(w, 0, sizeof *w);
}

/* Per-head statistics of the keys, which do not depend on the position:
 * the pre-RoPE mean (bias) and spread of each channel, and V's spread. */
typedef struct head_structure {
    float *k_bias, *k_scale, *v_scale; /* [kv_head][head_dim] */
} head_structure;

static void make_structure(const workload *w, head_structure *s)
{
    int dim = w->head_dim, half = dim / 2;
    rng r = rng_stream(w->seed, STREAM_STRUCTURE, 0);
    for (int h = 0; h < w->n_kv_heads; h++) {
        float *bias = s->k_bias + (size_t)h * dim, *scale = s->k_scale + (size_t)h * dim;
        /* Channel magnitudes spread log-normally, shared by the two channels
         * of a RoPE pair (the rotation mixes them). */
        for (int i = 0; i < half; i++) {
            float magnitude = expf(PAIR_MAGNITUDE_SPREAD * rng_normal(&r));
            for (int side = 0; side < 2; side++) {
                int c = i + side * half;
                bias[c] = 0.5f * magnitude * rng_normal(&r);
                scale[c] = magnitude * (0.8f + 0.4f * (float)rng_uniform(&r));
                s->v_scale[(size_t)h * dim + c] = 0.5f + (float)rng_uniform(&r);
            }
        }
        /* Outliers sit in low-frequency RoPE pairs (the upper half of the
         * pair indices), as in Llama: there the rotation is slow, so a
         * channel keeps its large bias across many positions. */
        for (int o = 0; o < OUTLIER_PAIRS; o++) {
            int pair = half / 2 + (int)(rng_uniform(&r) * (half / 2));
            for (int side = 0; side < 2; side++) {
                int c = pair + side * half;
                float sign = rng_uniform(&r) < 0.5 ? -1.0f : 1.0f;
                bias[c] = sign * (5.0f + 4.0f * (float)rng_uniform(&r));
                scale[c] = 2.0f + 2.0f * (float)rng_uniform(&r);
            }
        }
    }
}

/* K and V rows of one token. inv_freq: [head_dim / 2] RoPE frequencies. */
static void make_token(const workload *w, const head_structure *s, const double *inv_freq, int pos)
{
    int dim = w->head_dim, half = dim / 2;
    size_t row = workload_row_floats(w);
    float *k = w->k + (size_t)pos * row, *v = w->v + (size_t)pos * row;
    rng r = rng_stream(w->seed, STREAM_TOKEN, (uint64_t)pos);
    for (size_t i = 0; i < row; i++) {
        k[i] = s->k_bias[i] + s->k_scale[i] * rng_normal(&r);
        v[i] = s->v_scale[i] * rng_normal(&r);
    }
    /* RoPE, rotate-half pairing (channel i with i + D/2), as Llama applies it. */
    for (int i = 0; i < half; i++) {
        double theta = (double)pos * inv_freq[i];
        float cs = (float)cos(theta), sn = (float)sin(theta);
        for (int h = 0; h < w->n_kv_heads; h++) {
            float *kh = k + (size_t)h * dim;
            float a = kh[i], b = kh[i + half];
            kh[i] = a * cs - b * sn;
            kh[i + half] = a * sn + b * cs;
        }
    }
}

/* Mean, mean |k| and standard deviation per (KV head, channel) over the
 * first n_tokens positions, in double. */
static void key_statistics(workload *w, int n_tokens)
{
    size_t row = workload_row_floats(w);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < row; i++) {
        double sum = 0.0, sum_abs = 0.0, sum_sq = 0.0;
        for (int t = 0; t < n_tokens; t++) {
            double x = w->k[(size_t)t * row + i];
            sum += x;
            sum_abs += fabs(x);
            sum_sq += x * x;
        }
        double mean = sum / n_tokens;
        w->k_center[i] = (float)mean;
        w->k_mean_abs[i] = (float)(sum_abs / n_tokens);
        w->k_std[i] = (float)sqrt(fmax(sum_sq / n_tokens - mean * mean, 0.0));
    }
}

int workload_init(workload *w, int n_tokens, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->n_q_heads = WORKLOAD_Q_HEADS;
    w->n_kv_heads = WORKLOAD_KV_HEADS;
    w->head_dim = WORKLOAD_HEAD_DIM;
    w->n_tokens = n_tokens;
    w->seed = seed;
    /* Short workloads still generate the calibration positions. */
    int generated = n_tokens > CALIBRATION_TOKENS ? n_tokens : CALIBRATION_TOKENS;
    size_t row = workload_row_floats(w), total = (size_t)generated * row;
    int half = w->head_dim / 2;
    w->k = malloc(total * sizeof *w->k);
    w->v = malloc(total * sizeof *w->v);
    w->k_center = malloc(row * sizeof *w->k_center);
    w->k_mean_abs = malloc(row * sizeof *w->k_mean_abs);
    w->k_std = malloc(row * sizeof *w->k_std);
    head_structure s = {malloc(row * sizeof(float)), malloc(row * sizeof(float)), malloc(row * sizeof(float))};
    double *inv_freq = malloc((size_t)half * sizeof *inv_freq);
    int ok = w->k && w->v && w->k_center && w->k_mean_abs && w->k_std && s.k_bias && s.k_scale && s.v_scale &&
             inv_freq;
    if (ok) {
        for (int i = 0; i < half; i++)
            inv_freq[i] = pow(ROPE_BASE, -2.0 * i / w->head_dim);
        make_structure(w, &s);
#pragma omp parallel for schedule(static)
        for (int t = 0; t < generated; t++)
            make_token(w, &s, inv_freq, t);
        key_statistics(w, CALIBRATION_TOKENS);
    }
    free(s.k_bias);
    free(s.k_scale);
    free(s.v_scale);
    free(inv_freq);
    if (!ok) {
        workload_free(w);
        return -1;
    }
    return 0;
}

void workload_query(const workload *w, int pos, float *q)
{
    int dim = w->head_dim, per_kv = w->n_q_heads / w->n_kv_heads;
    size_t row = workload_row_floats(w);
    float sqrt_dim = sqrtf((float)dim);
    for (int hq = 0; hq < w->n_q_heads; hq++) {
        int h = hq / per_kv;
        const float *center = w->k_center + (size_t)h * dim, *std = w->k_std + (size_t)h * dim;
        float *qh = q + (size_t)hq * dim;
        rng r = rng_stream(w->seed, STREAM_QUERY, (uint64_t)pos * (uint64_t)w->n_q_heads + (uint64_t)hq);
        /* Built directly in the rotated space, as a RoPE'd query is. A
         * trained model's q and k are large in the same channels, so the
         * query weighs each channel by the keys' spread there (that is what
         * makes channel pruning by key magnitude work at all). */
        double std_sq = 0.0;
        for (int c = 0; c < dim; c++)
            std_sq += (double)std[c] * std[c];
        float std_rms = (float)sqrt(std_sq / dim);
        /* Noise, weighted the same way: spreads every token's score by about
         * 0.5 (more where outlier channels dominate). */
        for (int c = 0; c < dim; c++)
            qh[c] = 0.5f * rng_normal(&r) * std[c] / (std_rms * std_rms);
        for (int f = 0; f < QUERY_FOCUS; f++) {
            int window = f == 0 ? (pos + 1 < QUERY_RECENT ? pos + 1 : QUERY_RECENT) : pos + 1;
            int target = pos - (int)(rng_uniform(&r) * window);
            /* Raise the target's score by `lift` over an average key: with
             * d = k_target - center, the query gets gain * std * d, where
             * gain makes q . d / sqrt(D) = lift. The other keys' deviations
             * are nearly orthogonal to it. */
            float lift = QUERY_LIFT_MIN + QUERY_LIFT_SPAN * (float)rng_uniform(&r);
            const float *kt = w->k + (size_t)target * row + (size_t)h * dim;
            double energy = 0.0;
            for (int c = 0; c < dim; c++)
                energy += (double)std[c] * (kt[c] - center[c]) * (kt[c] - center[c]);
            float gain = energy > 0.0 ? (float)(lift * sqrt_dim / energy) : 0.0f;
            for (int c = 0; c < dim; c++)
                qh[c] += gain * std[c] * (kt[c] - center[c]);
        }
    }
}

int reference_attend(const workload *w, int n_tokens, const float *q, float *out)
{
    int dim = w->head_dim, per_kv = w->n_q_heads / w->n_kv_heads;
    size_t row = workload_row_floats(w);
    double scale = 1.0 / sqrt((double)dim);
    int failed = 0;
#pragma omp parallel
    {
        double *weight = malloc((size_t)n_tokens * sizeof *weight);
        double *acc = malloc((size_t)dim * sizeof *acc);
        if (!weight || !acc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int hq = 0; hq < w->n_q_heads; hq++) {
            if (!weight || !acc)
                continue;
            const float *qh = q + (size_t)hq * dim;
            size_t head_off = (size_t)(hq / per_kv) * dim;
            double max = -INFINITY, sum = 0.0;
            for (int t = 0; t < n_tokens; t++) {
                const float *kt = w->k + (size_t)t * row + head_off;
                double s = 0.0;
                for (int c = 0; c < dim; c++)
                    s += (double)qh[c] * kt[c];
                weight[t] = s * scale;
                max = weight[t] > max ? weight[t] : max;
            }
            for (int c = 0; c < dim; c++)
                acc[c] = 0.0;
            for (int t = 0; t < n_tokens; t++) {
                double p = exp(weight[t] - max);
                const float *vt = w->v + (size_t)t * row + head_off;
                sum += p;
                for (int c = 0; c < dim; c++)
                    acc[c] += p * vt[c];
            }
            for (int c = 0; c < dim; c++)
                out[(size_t)hq * dim + c] = (float)(acc[c] / sum);
        }
        free(weight);
        free(acc);
    }
    return failed ? -1 : 0;
}

attend_error compare_outputs(const float *out, const float *ref, int n_heads, int head_dim)
{
    double max_err = 0.0, max_ref = 0.0, cos_sum = 0.0;
    for (int h = 0; h < n_heads; h++) {
        double dot = 0.0, norm_out = 0.0, norm_ref = 0.0;
        for (int c = 0; c < head_dim; c++) {
            double a = out[(size_t)h * head_dim + c], b = ref[(size_t)h * head_dim + c];
            max_err = fmax(max_err, fabs(a - b));
            max_ref = fmax(max_ref, fabs(b));
            dot += a * b;
            norm_out += a * a;
            norm_ref += b * b;
        }
        cos_sum += norm_out > 0.0 && norm_ref > 0.0 ? dot / sqrt(norm_out * norm_ref) : 0.0;
    }
    attend_error e = {max_ref > 0.0 ? max_err / max_ref : max_err, cos_sum / n_heads};
    return e;
}

/* ---- cache configurations ---- */

static const char *const SPEC_SYNTAX =
    "expected K[/V], K[/V]@keep or K[/V]+think|spark[ratio] with formats f32 f16 bf16 q8 q4 q3 q2, "
    "optionally ending in :oN (N K outlier channels at q8) (e.g. q4, q4/q2, q4@0.5, q4+think0.4, "
    "f16+spark0.5, q2:o8)";

/* A number in [lo, hi] (hi_open: [lo, hi)) that fills all of text. */
static int parse_fraction(const char *text, double lo, double hi, int hi_open, double *value)
{
    char *end;
    errno = 0;
    if (*text == '\0' || *text == ' ' || *text == '+' || *text == '-') /* strtod would accept signs and spaces */
        return -1;
    double x = strtod(text, &end);
    if (errno || *end || !(x >= lo) || (hi_open ? !(x < hi) : !(x <= hi)))
        return -1;
    *value = x;
    return 0;
}

int kv_spec_parse(const char *full, kv_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    if (strlen(full) >= sizeof spec->name) {
        fprintf(stderr, "format spec too long: %s\n", full);
        return -1;
    }
    strcpy(spec->name, full);
    /* ":oN" at the end: N K outlier channels per head at q8 */
    char text[sizeof spec->name];
    strcpy(text, full);
    char *outliers = strchr(text, ':');
    if (outliers) {
        char *end;
        long n = outliers[1] == 'o' && outliers[2] >= '0' && outliers[2] <= '9' ? strtol(outliers + 2, &end, 10) : -1;
        if (n < 1 || n > 1024 || *end) {
            fprintf(stderr, "bad outlier count in '%s': expected :oN at the end (N K channels at q8)\n", full);
            return -1;
        }
        spec->k_outliers = (int)n;
        *outliers = '\0';
    }
    spec->policy = SLIMKV_POLICY_NONE;
    spec->k_keep = 1.0;
    /* The formats end at the first '@' (static mask) or '+' (ThinK/SparK). */
    size_t formats_len = strcspn(text, "@+");
    const char *suffix = text + formats_len;
    const char *slash = memchr(text, '/', formats_len);
    size_t k_len = slash ? (size_t)(slash - text) : formats_len;
    if (slimkv_format_from_name(text, k_len, &spec->k_format) != SLIMKV_OK ||
        (slash ? slimkv_format_from_name(slash + 1, formats_len - k_len - 1, &spec->v_format)
               : (spec->v_format = spec->k_format, SLIMKV_OK)) != SLIMKV_OK) {
        fprintf(stderr, "bad format spec '%s': %s\n", text, SPEC_SYNTAX);
        return -1;
    }
    if (*suffix && strpbrk(suffix + 1, "@+")) {
        fprintf(stderr, "bad format spec '%s': one channel policy at most (@keep, +think or +spark)\n", text);
        return -1;
    }
    if (*suffix == '@') {
        spec->policy = SLIMKV_POLICY_STATIC;
        /* "@1" keeps every channel: no mask at all, as "q4" */
        if (parse_fraction(suffix + 1, 0.0, 1.0, 0, &spec->k_keep) != 0 || !(spec->k_keep > 0.0)) {
            fprintf(stderr, "bad keep fraction in '%s': expected a number in (0, 1]\n", text);
            return -1;
        }
        if (spec->k_keep == 1.0)
            spec->policy = SLIMKV_POLICY_NONE;
    } else if (*suffix == '+') {
        const char *name = suffix + 1, *ratio;
        if (strncmp(name, "think", 5) == 0) {
            spec->policy = SLIMKV_POLICY_THINK;
            ratio = name + 5;
        } else if (strncmp(name, "spark", 5) == 0) {
            spec->policy = SLIMKV_POLICY_SPARK;
            ratio = name + 5;
        } else {
            fprintf(stderr, "bad policy in '%s': expected +think or +spark, optionally followed by the prune ratio\n",
                    text);
            return -1;
        }
        slimkv_config defaults;
        slimkv_config_init(&defaults);
        spec->prune_ratio = defaults.prune_ratio;
        if (*ratio && parse_fraction(ratio, 0.0, 1.0, 1, &spec->prune_ratio) != 0) {
            fprintf(stderr, "bad prune ratio in '%s': expected a number in [0, 1)\n", text);
            return -1;
        }
    }
    return 0;
}

int policy_needs_prefill(slimkv_policy policy)
{
    return policy == SLIMKV_POLICY_THINK || policy == SLIMKV_POLICY_SPARK;
}

/* Marks the `keep` channels with the largest score (ties: lower index). */
static void mark_top_channels(const float *score, int dim, int keep, uint8_t *mask)
{
    memset(mask, 0, (size_t)dim);
    for (int k = 0; k < keep; k++) {
        int best = -1;
        for (int c = 0; c < dim; c++)
            if (!mask[c] && (best < 0 || score[c] > score[best]))
                best = c;
        mask[best] = 1;
    }
}

int kv_setup_init(kv_setup *setup, const kv_spec *spec, const workload *w, int capacity)
{
    memset(setup, 0, sizeof *setup);
    slimkv_config *cfg = &setup->config;
    slimkv_config_init(cfg);
    cfg->n_q_heads = w->n_q_heads;
    cfg->n_kv_heads = w->n_kv_heads;
    cfg->head_dim = w->head_dim;
    cfg->capacity = capacity;
    cfg->k_format = spec->k_format;
    cfg->v_format = spec->v_format;
    cfg->policy = spec->policy;
    cfg->k_outliers = spec->k_outliers;
    if (spec->policy == SLIMKV_POLICY_STATIC) {
        int keep = (int)lround(spec->k_keep * w->head_dim);
        keep = keep < 1 ? 1 : keep;
        setup->k_mask = malloc(workload_row_floats(w));
        if (!setup->k_mask)
            return -1;
        for (int h = 0; h < w->n_kv_heads; h++)
            mark_top_channels(w->k_mean_abs + (size_t)h * w->head_dim, w->head_dim, keep,
                              setup->k_mask + (size_t)h * w->head_dim);
        cfg->k_mask = setup->k_mask;
    } else if (policy_needs_prefill(spec->policy)) {
        cfg->prune_ratio = (float)spec->prune_ratio; /* window: the library's default W = 32 */
    }
    return 0;
}

void kv_setup_free(kv_setup *setup)
{
    free(setup->k_mask);
    memset(setup, 0, sizeof *setup);
}

float *workload_queries(const workload *w, int n_queries)
{
    size_t q_floats = (size_t)w->n_q_heads * w->head_dim;
    float *q = malloc((size_t)n_queries * q_floats * sizeof *q);
    if (!q)
        return NULL;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n_queries; t++)
        workload_query(w, t, q + (size_t)t * q_floats);
    return q;
}

/* Appends tokens [first, end) in FILL_CHUNK chunks. */
static slimkv_status append_tokens(const workload *w, slimkv_cache *cache, int first, int end)
{
    size_t row = workload_row_floats(w);
    slimkv_status st = SLIMKV_OK;
    for (int t = first; t < end && st == SLIMKV_OK; t += FILL_CHUNK) {
        int n = end - t < FILL_CHUNK ? end - t : FILL_CHUNK;
        st = slimkv_cache_append(cache, w->k + (size_t)t * row, w->v + (size_t)t * row, n);
    }
    return st;
}

/* One prefill of tokens 0 .. n - 1 with their queries; the attention
 * output is needed by the call but not by the programs. */
static slimkv_status prefill_prompt(const workload *w, slimkv_cache *cache, int n, const float *prompt_q)
{
    size_t q_floats = (size_t)w->n_q_heads * w->head_dim;
    float *generated = prompt_q ? NULL : workload_queries(w, n);
    float *out = malloc((size_t)n * q_floats * sizeof *out);
    slimkv_status st = SLIMKV_ERR_NOMEM;
    if (out && (prompt_q || generated))
        st = slimkv_cache_prefill(cache, prompt_q ? prompt_q : generated, w->k, w->v, n, out);
    free(generated);
    free(out);
    return st;
}

slimkv_status workload_fill_cache(const workload *w, const slimkv_config *config, int n_tokens,
                                  int prefill_tokens, const float *prompt_q, slimkv_cache **out)
{
    slimkv_cache *cache;
    slimkv_status st = slimkv_cache_create(config, &cache);
    if (st != SLIMKV_OK)
        return st;
    int prefilled = 0;
    if (policy_needs_prefill(config->policy) && n_tokens > 0) {
        prefilled = prefill_tokens <= 0 || prefill_tokens > n_tokens ? n_tokens : prefill_tokens;
        st = prefill_prompt(w, cache, prefilled, prompt_q);
    }
    if (st == SLIMKV_OK)
        st = append_tokens(w, cache, prefilled, n_tokens);
    if (st != SLIMKV_OK) {
        slimkv_cache_destroy(cache);
        return st;
    }
    *out = cache;
    return SLIMKV_OK;
}

size_t cache_bytes(const slimkv_cache *cache)
{
    size_t bytes = 0;
    if (slimkv_cache_bytes(cache, &bytes) != SLIMKV_OK)
        return 0;
    return bytes;
}

/* ---- small helpers ---- */

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double load_average(void)
{
    double load = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return -1.0;
    if (fscanf(f, "%lf", &load) != 1)
        load = -1.0;
    fclose(f);
    return load;
}

void note_if_busy(double load)
{
    if (load >= BUSY_LOAD)
        printf("note: load average %.2f at start: other work shares the cores, timings will be noisy\n", load);
}

int report_status(slimkv_status status, const char *what)
{
    if (status == SLIMKV_OK)
        return 0;
    fprintf(stderr, "%s: %s (status %d)\n", what, slimkv_status_str(status), (int)status);
    return 1;
}

/* One decimal integer in [1, INT_MAX] from text[0 .. len), times 1024 with a k suffix. */
static int parse_count(const char *text, size_t len, int *value)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    long multiplier = 1;
    if (buf[len - 1] == 'k' || buf[len - 1] == 'K') {
        multiplier = 1024;
        buf[--len] = '\0';
    }
    if (len == 0 || buf[0] < '0' || buf[0] > '9') /* strtol would accept signs and spaces */
        return -1;
    char *end;
    errno = 0;
    long x = strtol(buf, &end, 10);
    if (errno || *end || x < 1 || x > INT_MAX / multiplier)
        return -1;
    *value = (int)(x * multiplier);
    return 0;
}

int parse_positive_int(const char *text, const char *option, int *value)
{
    if (parse_count(text, strlen(text), value) != 0) {
        fprintf(stderr, "%s: expected a positive integer, got '%s'\n", option, text);
        return -1;
    }
    return 0;
}

int parse_int_list(const char *text, const char *option, int **values, int *count)
{
    char **words;
    int n;
    if (parse_word_list(text, &words, &n) != 0)
        return -1;
    int *list = malloc((size_t)n * sizeof *list);
    int ok = list != NULL;
    for (int i = 0; ok && i < n; i++)
        ok = parse_count(words[i], strlen(words[i]), &list[i]) == 0;
    free_word_list(words, n);
    if (!ok) {
        if (list)
            fprintf(stderr, "%s: expected comma-separated positive integers (k = x1024), got '%s'\n", option,
                    text);
        free(list);
        return -1;
    }
    *values = list;
    *count = n;
    return 0;
}

int parse_word_list(const char *text, char ***items, int *count)
{
    int n = 1;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    char **list = calloc((size_t)n, sizeof *list);
    if (!list)
        return -1;
    const char *item = text;
    for (int i = 0; i < n; i++) {
        const char *comma = strchr(item, ',');
        size_t len = comma ? (size_t)(comma - item) : strlen(item);
        list[i] = malloc(len + 1);
        if (!list[i]) {
            free_word_list(list, i);
            return -1;
        }
        memcpy(list[i], item, len);
        list[i][len] = '\0';
        item += len + 1;
    }
    *items = list;
    *count = n;
    return 0;
}

void free_word_list(char **items, int count)
{
    if (!items)
        return;
    for (int i = 0; i < count; i++)
        free(items[i]);
    free(items);
}
