/* slimkv_cache_truncate and slimkv_cache_fork against oracles written here.
 *
 * Truncation: a model of what the cache must hold (each position's K/V as
 * the cache holds it: the input, or, for a token that truncation brought
 * back to the window from the body, the body's form of it: pruned
 * channels 0, SparK's restored channels) drives the fp32 dense oracle
 * (oracle.c, dense attention over exactly the kept tokens and channels),
 * for every format and policy on every ISA the machine supports, through a
 * sequence of cuts (inside a group, at group / block / page boundaries, into
 * the sinks, to 0, no-op) with appends after each. After every cut the
 * cache is also compared with a new cache that got the same tokens: the
 * same bytes held, attention within the format's bound, and for f32 the
 * very same stored bytes.
 * Fork: bytes shared once, forks that diverge match caches built without
 * forking (the same stored bytes), destroy in every order, forks used from
 * two threads, fork of a fork, truncate and snapshot of a fork.
 * Both: bad arguments and the N-th allocation failing leave everything as
 * it was. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "fault_alloc.h"
#include "oracle.h"
#include "tmpdir.h"

enum { NQ = 4, NKV = 2, D = 32, G = 16, R = 32, S = 3, CAP = 640, PROMPT = 100 };

static const slimkv_format all_formats[] = {SLIMKV_F32, SLIMKV_F16, SLIMKV_BF16, SLIMKV_Q8,
                                           SLIMKV_Q4,  SLIMKV_Q2,  SLIMKV_Q3};
static const slimkv_policy all_policies[] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_STATIC, SLIMKV_POLICY_THINK,
                                             SLIMKV_POLICY_SPARK};
static const char *const all_isas[] = {"scalar", "avx2", "avx512", "neon", "neon-dotprod"};

/* Static masks: head 0 keeps the even K channels and V channels below 20
 * (aligned to 24), head 1 K channels below 13 (aligned to 16) and no V
 * channel in the body. With `streaming`, head 1 keeps no K channel. */
static uint8_t k_mask[NKV * D], v_mask[NKV * D], k_mask_streaming[NKV * D];

static void init_masks(void)
{
    for (int c = 0; c < D; c++) {
        k_mask[c] = k_mask_streaming[c] = c % 2 == 0;
        k_mask[D + c] = c < 13;
        k_mask_streaming[D + c] = 0;
        v_mask[c] = c < 20;
        v_mask[D + c] = 0;
    }
}

static slimkv_config make_config(slimkv_policy policy, slimkv_format kf, slimkv_format vf, const char *isa)
{
    slimkv_config c;
    assert_int_equal(slimkv_config_init(&c), SLIMKV_OK);
    c.n_q_heads = NQ;
    c.n_kv_heads = NKV;
    c.head_dim = D;
    c.capacity = CAP;
    c.k_format = kf;
    c.v_format = vf;
    c.group_size = G;
    c.residual = R;
    c.n_sink = S;
    c.policy = policy;
    c.isa = isa;
    if (policy == SLIMKV_POLICY_STATIC) {
        init_masks();
        c.k_mask = k_mask;
        c.v_mask = v_mask;
    }
    return c;
}

/* Inputs for every position: two different streams of K/V (what is
 * appended after a cut differs from what was cut), one of queries. */
typedef struct inputs {
    float *k[2], *v[2], *q;
    double v_scale; /* max |v| over both streams */
} inputs;

static const size_t ROW = (size_t)NKV * D, QROW = (size_t)NQ * D;

static inputs make_inputs(uint64_t seed)
{
    inputs in;
    test_rng r;
    rng_seed(&r, seed);
    for (int s = 0; s < 2; s++) {
        in.k[s] = malloc(CAP * ROW * sizeof(float));
        in.v[s] = malloc(CAP * ROW * sizeof(float));
        fill_keys(&r, in.k[s], CAP, 0, NKV, D);
        fill_normal(&r, in.v[s], CAP * ROW, 1.0f);
    }
    in.q = malloc(CAP * QROW * sizeof(float));
    fill_keys(&r, in.q, CAP, 0, NQ, D);
    for (size_t i = 0; i < CAP * QROW; i++)
        in.q[i] *= 0.5f;
    double a = max_abs(in.v[0], CAP * ROW), b = max_abs(in.v[1], CAP * ROW);
    in.v_scale = a > b ? a : b;
    return in;
}

static void free_inputs(inputs *in)
{
    for (int s = 0; s < 2; s++) {
        free(in->k[s]);
        free(in->v[s]);
    }
    free(in->q);
}

/* What the cache must hold: per position the K/V it serves. */
typedef struct model {
    int n;
    float k[CAP * NKV * D], v[CAP * NKV * D];
} model;

/* Appends positions [m->n, m->n + count) of stream s to the cache and the
 * model; the first call of a ThinK/SparK cache (nothing held, channels
 * pending) is a prefill with the queries of those positions. */
static void feed(slimkv_cache *c, model *m, const inputs *in, int s, int count)
{
    if (count < 0 || m->n + count > CAP)
        fail_msg("feed: %d tokens after %d", count, m->n);
    if (count <= 0)
        return;
    size_t at = (size_t)m->n * ROW;
    memcpy(m->k + at, in->k[s] + at, (size_t)count * ROW * sizeof(float));
    memcpy(m->v + at, in->v[s] + at, (size_t)count * ROW * sizeof(float));
    if (c->channels_pending) {
        float *out = malloc((size_t)count * QROW * sizeof(float));
        assert_int_equal(slimkv_cache_prefill(c, in->q + (size_t)m->n * QROW, m->k + at, m->v + at, count, out),
                         SLIMKV_OK);
        free(out);
    } else {
        for (int done = 0, step = 5; done < count; step = step * 3 % 41 + 1) {
            int part = count - done < step ? count - done : step;
            assert_int_equal(slimkv_cache_append(c, m->k + at + done * ROW, m->v + at + done * ROW, part), SLIMKV_OK);
            done += part;
        }
    }
    m->n += count;
}

/* The head's K/V of one position as its compressed body serves them. */
static void body_form(const slimkv_cache *c, const uint8_t *km, const uint8_t *vm, int h, float *k, float *v)
{
    if (slimkv_k_is_spark(c)) {
        float restored[D];
        oracle_spark_restore(k, c->heads[h].qnorm, D, c->spark_keep, restored);
        memcpy(k, restored, sizeof restored);
    } else {
        for (int i = 0; i < D; i++)
            k[i] = km[h * D + i] ? k[i] : 0.0f;
    }
    for (int i = 0; i < D; i++)
        v[i] = vm[h * D + i] ? v[i] : 0.0f;
}

/* The model of slimkv_cache_truncate (slimkv.h): the window ring held the
 * newest ring_slots tokens; every older position the ring covers again
 * after the cut comes from the body (heads with a body; a streaming head
 * has only its ring). */
static void model_truncate(model *m, const slimkv_cache *c, const slimkv_config *cfg, int n)
{
    oracle_cfg o;
    uint8_t *km, *vm;
    oracle_from_cache(cfg, c, &o, &km, &vm);
    int first = n - c->ring_slots > S ? n - c->ring_slots : S;
    for (int p = first; p < n && p < m->n - c->ring_slots; p++)
        for (int h = 0; h < NKV; h++)
            if (c->heads[h].dk > 0)
                body_form(c, km, vm, h, m->k + (size_t)p * ROW + h * D, m->v + (size_t)p * ROW + h * D);
    free(km);
    free(vm);
    m->n = n;
}

/* A new cache with c's channels (copied: ThinK would choose others from
 * the model's rows) that got the model's tokens by plain appends. */
static slimkv_cache *fresh_like(const slimkv_config *cfg, const slimkv_cache *c, const model *m)
{
    slimkv_cache *f;
    assert_int_equal(slimkv_cache_create(cfg, &f), SLIMKV_OK);
    if (!c->channels_pending)
        slimkv_policy_copy_choice(f, c);
    if (m->n > 0)
        assert_int_equal(slimkv_cache_append(f, m->k, m->v, m->n), SLIMKV_OK);
    return f;
}

static double bound_of(const slimkv_config *cfg)
{
    double a = format_error_bound(cfg->k_format), b = format_error_bound(cfg->v_format);
    return a > b ? a : b;
}

static int has_streaming_head(const slimkv_cache *c)
{
    for (int h = 0; h < NKV; h++)
        if (c->heads[h].dk == 0)
            return 1;
    return 0;
}

/* The cache against the oracle on the model and against a new cache with
 * the same tokens. */
static void check_cache(const char *what, const slimkv_config *cfg, const slimkv_cache *c, const model *m,
                        const inputs *in)
{
    int n;
    assert_int_equal(slimkv_cache_tokens(c, &n), SLIMKV_OK);
    assert_int_equal(n, m->n);
    slimkv_cache *f = fresh_like(cfg, c, m);
    size_t bytes, fresh_bytes;
    assert_int_equal(slimkv_cache_bytes(c, &bytes), SLIMKV_OK);
    assert_int_equal(slimkv_cache_bytes(f, &fresh_bytes), SLIMKV_OK);
    if (bytes != fresh_bytes)
        fail_msg("%s: %zu bytes held, a new cache with the same %d tokens holds %zu", what, bytes, n, fresh_bytes);
    /* f32 decodes exactly, so every stored byte is a new cache's (but for
     * SparK's restored channels, which the oracle restores in double, and
     * the rows a streaming head lost, zero here); and a cache cut to 0 is a
     * new cache whatever the format */
    int exact = cfg->k_format == SLIMKV_F32 && cfg->v_format == SLIMKV_F32 && cfg->policy != SLIMKV_POLICY_SPARK &&
                !has_streaming_head(c);
    if ((exact || n == 0) && cache_digest(c) != cache_digest(f))
        fail_msg("%s: stored bytes differ from a new cache's with the same %d tokens", what, n);
    if (n > 0) {
        int nq = n < 3 ? n : 3;
        size_t out_n = (size_t)nq * QROW;
        float *out = malloc(out_n * sizeof(float)), *ref = malloc(out_n * sizeof(float));
        float *want = malloc(out_n * sizeof(float));
        const float *q = in->q + (size_t)(n - nq) * QROW;
        assert_int_equal(slimkv_attend(c, q, nq, out), SLIMKV_OK);
        assert_int_equal(slimkv_attend(f, q, nq, ref), SLIMKV_OK);
        oracle_cfg o;
        uint8_t *km, *vm;
        float qnorm[NKV * D];
        oracle_from_cache(cfg, c, &o, &km, &vm);
        if (slimkv_k_is_spark(c)) {
            for (int h = 0; h < NKV; h++)
                memcpy(qnorm + h * D, c->heads[h].qnorm, D * sizeof(float));
            o.spark_keep = c->spark_keep;
            o.qnorm = qnorm;
        }
        oracle_attend(&o, m->k, m->v, n, q, nq, want);
        double bound = bound_of(cfg);
        double err = scaled_max_error(out, want, out_n, in->v_scale);
        double err_fresh = scaled_max_error(out, ref, out_n, in->v_scale);
        if (!(err <= bound))
            fail_msg("%s: %d tokens, error %.3g vs the oracle > bound %.3g", what, n, err, bound);
        if (!(err_fresh <= bound))
            fail_msg("%s: %d tokens, %.3g from a new cache with the same tokens > bound %.3g", what, n, err_fresh,
                     bound);
        free(km);
        free(vm);
        free(out);
        free(ref);
        free(want);
    }
    slimkv_cache_destroy(f);
}

static void truncate_both(slimkv_cache *c, model *m, const slimkv_config *cfg, int n)
{
    model_truncate(m, c, cfg, n);
    assert_int_equal(slimkv_cache_truncate(c, n), SLIMKV_OK);
}

/* Cuts, each followed by appends (G = 16, R = 32, S = 3; pages of 8 groups,
 * 128 tokens): from 300 tokens (body: 17 K groups, 265 V tokens). */
static const struct step {
    int cut, then_append;
    const char *why;
} steps[] = {
    {299, 1, "one token (all in the ring)"},
    {295, 9, "five tokens"},
    {288, 0, "G tokens"},
    {250, 30, "rows decoded from the body"},
    {200, 57, "inside a K group and a V block"},
    {179, 40, "at a K group and V block boundary"},
    {163, 100, "at a page boundary (128 body tokens)"},
    {35, 12, "to the sinks and the window, no body"},
    {3, 60, "to exactly the sinks"},
    {2, 150, "into the sinks"},
    {152, 0, "to the tokens held (no-op)"},
    {0, 230, "to 0"},
};

static void run_scenario(const char *isa, slimkv_policy policy, slimkv_format kf, slimkv_format vf,
                         const inputs *in, model *m)
{
    slimkv_config cfg = make_config(policy, kf, vf, isa);
    slimkv_cache *c;
    assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
    m->n = 0;
    feed(c, m, in, 0, PROMPT);
    feed(c, m, in, 0, 300 - PROMPT);
    char what[160];
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        snprintf(what, sizeof what, "%s %s K %s V %s, cut to %d (%s)", isa, slimkv_policy_name(policy),
                 slimkv_format_name(kf), slimkv_format_name(vf), steps[i].cut, steps[i].why);
        truncate_both(c, m, &cfg, steps[i].cut);
        check_cache(what, &cfg, c, m, in);
        if (steps[i].cut == 0 && slimkv_policy_chooses_at_prefill(policy)) {
            /* a new cache again: channels to choose at the next prefill */
            assert_int_equal(c->channels_pending, 1);
            assert_int_equal(slimkv_cache_append(c, in->k[0], in->v[0], 1), SLIMKV_ERR_STATE);
            feed(c, m, in, 1, PROMPT);
        }
        feed(c, m, in, (int)(i % 2), steps[i].then_append - (m->n - steps[i].cut));
        snprintf(what, sizeof what, "%s %s K %s V %s, appends after the cut to %d", isa, slimkv_policy_name(policy),
                 slimkv_format_name(kf), slimkv_format_name(vf), steps[i].cut);
        check_cache(what, &cfg, c, m, in);
    }
    slimkv_cache_destroy(c);
}

static void test_truncate_every_format_policy_isa(void **state)
{
    (void)state;
    inputs in = make_inputs(1);
    model *m = malloc(sizeof *m);
    int isas = 0, n_isas = 0, runs = 0;
    for (size_t ii = 0; ii < sizeof all_isas / sizeof *all_isas; ii++)
        n_isas += slimkv_isa_supported(all_isas[ii]);
    /* Quick (SLIMKV_TEST_QUICK=1): the policy x format matrix split across
     * the ISAs, pair (p, f) on ISA (p + f) mod n: each pair still runs
     * every cut once, each ISA every format and every policy; the full
     * product runs natively. */
    const int quick = test_quick();
    for (size_t ii = 0; ii < sizeof all_isas / sizeof *all_isas; ii++) {
        if (!slimkv_isa_supported(all_isas[ii]))
            continue;
        for (size_t p = 0; p < sizeof all_policies / sizeof *all_policies; p++)
            for (int f = 0; f < SLIMKV_FORMAT_COUNT; f++) {
                if (!test_policy_takes(all_policies[p], all_formats[f]) ||
                    (quick && (int)((p + (size_t)f) % (size_t)n_isas) != isas))
                    continue;
                run_scenario(all_isas[ii], all_policies[p], all_formats[f], all_formats[f], &in, m);
                runs++;
            }
        isas++;
        /* K and V formats chosen apart */
        run_scenario(all_isas[ii], SLIMKV_POLICY_STATIC, SLIMKV_Q2, SLIMKV_Q8, &in, m);
        run_scenario(all_isas[ii], SLIMKV_POLICY_NONE, SLIMKV_F16, SLIMKV_Q4, &in, m);
        runs += 2;
    }
    print_message("  %d ISAs, %zu policies x %d formats%s: %d runs, %zu cuts each\n", isas,
                  sizeof all_policies / sizeof *all_policies, SLIMKV_FORMAT_COUNT,
                  quick ? " split across the ISAs (quick)" : " on each", runs, sizeof steps / sizeof *steps);
    free(m);
    free_inputs(&in);
}

/* R = 0 (the window is only the last partial K group; V all body) and a
 * capacity so small that the window ring covers it all. */
static void test_truncate_other_windows(void **state)
{
    (void)state;
    inputs in = make_inputs(2);
    model *m = malloc(sizeof *m);
    /* quick: one variant per policy x format, in turn ((p + f) mod 2:
     * each policy and each format still meets both) */
    const int quick = test_quick();
    for (size_t p = 0; p < sizeof all_policies / sizeof *all_policies; p++)
    for (int f = 0; f < SLIMKV_FORMAT_COUNT; f++)
        for (int variant = 0; variant < 2 && test_policy_takes(all_policies[p], all_formats[f]); variant++) {
            if (quick && (int)((p + (size_t)f) % 2) != variant)
                continue;
            slimkv_config cfg = make_config(all_policies[p], all_formats[f], all_formats[f], NULL);
            if (variant == 0)
                cfg.residual = 0;
            else
                cfg.capacity = 40; /* ring of min(R + G, 48) slots: every token stays in it */
            slimkv_cache *c;
            assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
            m->n = 0;
            const int total = variant == 0 ? 300 : 40, cuts[] = {total - 1, total - 20, 21, 19, 3, 1};
            const int appends[] = {25, 7};
            feed(c, m, &in, 0, total);
            for (int i = 0; i < 6; i++) {
                char what[96];
                snprintf(what, sizeof what, "%s %s %s, cut to %d", variant == 0 ? "R = 0" : "capacity 40",
                         slimkv_policy_name(all_policies[p]), slimkv_format_name(all_formats[f]), cuts[i]);
                truncate_both(c, m, &cfg, cuts[i]);
                check_cache(what, &cfg, c, m, &in);
                int to = cuts[i] + appends[i % 2] < total ? cuts[i] + appends[i % 2] : total;
                feed(c, m, &in, 1, to - m->n);
                check_cache(what, &cfg, c, m, &in);
            }
            slimkv_cache_destroy(c);
        }
    free(m);
    free_inputs(&in);
}

/* A streaming head holds only the sinks and its ring: a cut may give back
 * only rows it still holds, whatever earlier cuts dropped. */
static void test_truncate_streaming_heads(void **state)
{
    (void)state;
    inputs in = make_inputs(3);
    model *m = malloc(sizeof *m);
    const slimkv_format formats[] = {SLIMKV_F32, SLIMKV_Q4};
    /* ring of R + G = 48 rows; the streaming head sees the sinks and the last 32 */
    static const struct {
        int cut, append_to;
        slimkv_status want;
    } seq[] = {
        {290, 290, SLIMKV_OK},            /* needs [258, 290): the ring holds [252, 300) */
        {280, 310, SLIMKV_ERR_STATE},     /* needs 248..251: the last cut dropped them */
        {300, 300, SLIMKV_OK},            /* needs [268, 300): held from max(252, 310 - 48) */
        {2, 102, SLIMKV_OK},              /* into the sinks: needs nothing */
        {90, 90, SLIMKV_OK},              /* needs [58, 90): held [54, 102) */
        {30, 90, SLIMKV_ERR_STATE},       /* needs [3, 30): the ring reached back to 42, the cut dropped [42, 54) */
        {0, 40, SLIMKV_OK},
        {10, 10, SLIMKV_OK},              /* 40 tokens: nothing ever left the ring */
    };
    for (int f = 0; f < 2; f++) {
        slimkv_config cfg = make_config(SLIMKV_POLICY_STATIC, formats[f], formats[f], NULL);
        cfg.k_mask = k_mask_streaming;
        slimkv_cache *c;
        assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
        assert_true(has_streaming_head(c));
        m->n = 0;
        feed(c, m, &in, 0, 300);
        for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
            char what[96];
            snprintf(what, sizeof what, "streaming head, %s, cut from %d to %d", slimkv_format_name(formats[f]), m->n,
                     seq[i].cut);
            if (seq[i].want == SLIMKV_OK) {
                truncate_both(c, m, &cfg, seq[i].cut);
            } else {
                uint64_t before = cache_digest(c);
                if (slimkv_cache_truncate(c, seq[i].cut) != seq[i].want)
                    fail_msg("%s: want %s", what, slimkv_status_str(seq[i].want));
                assert_true(cache_digest(c) == before);
            }
            check_cache(what, &cfg, c, m, &in);
            feed(c, m, &in, (int)(i % 2), seq[i].append_to - m->n);
            check_cache(what, &cfg, c, m, &in);
        }
        slimkv_cache_destroy(c);
    }
    free(m);
    free_inputs(&in);
}

static tmpdir dir;

static int setup_dir(void **state)
{
    (void)state;
    return tmpdir_make(&dir);
}

static int teardown_dir(void **state)
{
    (void)state;
    tmpdir_remove(&dir);
    return 0;
}

/* The whole file, for comparing two snapshots byte for byte. */
static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    uint8_t *x = read_file(a, &na), *y = read_file(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(x, y, na);
    free(x);
    free(y);
}

/* Bad counts and pointers: a clear status, nothing changed (the same
 * snapshot bytes, the same attention output). */
static void test_truncate_bad_arguments(void **state)
{
    (void)state;
    inputs in = make_inputs(4);
    model *m = malloc(sizeof *m);
    char before[512], after[512];
    tmpdir_file(&dir, "before.st", before, sizeof before);
    tmpdir_file(&dir, "after.st", after, sizeof after);
    for (int p = 0; p < 4; p++) {
        slimkv_config cfg = make_config(all_policies[p], SLIMKV_Q4, SLIMKV_Q2, NULL);
        slimkv_cache *c;
        assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
        /* an empty cache: 0 is the only count */
        assert_int_equal(slimkv_cache_truncate(c, 1), SLIMKV_ERR_INVALID_ARG);
        assert_int_equal(slimkv_cache_truncate(c, 0), SLIMKV_OK);
        m->n = 0;
        feed(c, m, &in, 0, 200);
        float out0[3 * NQ * D], out1[3 * NQ * D];
        assert_int_equal(slimkv_attend(c, in.q, 3, out0), SLIMKV_OK);
        assert_int_equal(slimkv_cache_save(c, before), SLIMKV_OK);
        uint64_t digest = cache_digest(c);
        assert_int_equal(slimkv_cache_truncate(NULL, 0), SLIMKV_ERR_NULL_ARG);
        const int bad[] = {-1, 201, INT32_MIN, INT32_MAX, CAP};
        for (int i = 0; i < 5; i++)
            assert_int_equal(slimkv_cache_truncate(c, bad[i]), SLIMKV_ERR_INVALID_ARG);
        assert_int_equal(slimkv_cache_truncate(c, 200), SLIMKV_OK); /* no-op */
        assert_true(cache_digest(c) == digest);
        assert_int_equal(slimkv_attend(c, in.q, 3, out1), SLIMKV_OK);
        assert_memory_equal(out0, out1, sizeof out0);
        assert_int_equal(slimkv_cache_save(c, after), SLIMKV_OK);
        assert_same_file(before, after);
        slimkv_cache_destroy(c);
    }
    free(m);
    free_inputs(&in);
}


/* The N-th allocation of fork, of a fork's truncation (shared pages
 * copied) and of a fork's append fails, for every N: SLIMKV_ERR_NOMEM,
 * nothing changed in any cache, nothing leaked. */
static void test_failed_allocations_change_nothing(void **state)
{
    (void)state;
    inputs in = make_inputs(5);
    model *m = malloc(sizeof *m), *mf = malloc(sizeof *mf);
    for (int p = 0; p < 4; p++) {
        slimkv_config cfg = make_config(all_policies[p], SLIMKV_Q4, SLIMKV_Q8, NULL);
        install_faults(0);
        faults.live = 0;
        slimkv_cache *src, *fork;
        assert_int_equal(slimkv_cache_create(&cfg, &src), SLIMKV_OK);
        m->n = 0;
        feed(src, m, &in, 0, 400); /* K: 23 groups, pages 0-1 full; V: 365 tokens */
        uint64_t src_digest = cache_digest(src);
        long live = faults.live, n;
        for (n = 1;; n++) {
            install_faults(n);
            fork = (slimkv_cache *)0x1;
            slimkv_status st = slimkv_cache_fork(src, &fork);
            if (st == SLIMKV_OK)
                break;
            assert_int_equal(st, SLIMKV_ERR_NOMEM);
            assert_ptr_equal(fork, (slimkv_cache *)0x1);
            assert_int_equal(faults.live, live);
            assert_true(cache_digest(src) == src_digest);
        }
        assert_true(n > 4);
        *mf = *m;
        uint64_t fork_digest = cache_digest(fork);
        assert_true(fork_digest == src_digest);
        /* 200: the body ends inside page 1 of K and V, which both caches
         * hold: each head's two pages are copied before they are cleared */
        live = faults.live;
        for (n = 1;; n++) {
            install_faults(n);
            slimkv_status st = slimkv_cache_truncate(fork, 200);
            if (st == SLIMKV_OK)
                break;
            assert_int_equal(st, SLIMKV_ERR_NOMEM);
            assert_int_equal(faults.live, live);
            assert_true(cache_digest(fork) == fork_digest);
            assert_true(cache_digest(src) == src_digest);
        }
        int copies = 0; /* each head's K and V page 1, where it has them (V fully pruned: none) */
        for (int h = 0; h < NKV; h++)
            copies += (src->heads[h].n_k_pages > 1) + (src->heads[h].n_v_pages > 1);
        assert_true(copies >= 3);
        assert_int_equal(n, 2 + copies); /* the list of copies, then each page: all needed */
        install_faults(0);
        model_truncate(mf, src, &cfg, 200);
        check_cache("truncated fork", &cfg, fork, mf, &in);
        assert_true(cache_digest(src) == src_digest);
        check_cache("its source", &cfg, src, m, &in);
        /* a fork's appends, page allocations failing */
        fork_digest = cache_digest(fork);
        for (n = 1;; n++) {
            install_faults(n);
            slimkv_status st = slimkv_cache_append(fork, in.k[1] + 200 * ROW, in.v[1] + 200 * ROW, 150);
            if (st == SLIMKV_OK)
                break;
            assert_int_equal(st, SLIMKV_ERR_NOMEM);
            assert_true(cache_digest(fork) == fork_digest);
            assert_true(cache_digest(src) == src_digest);
        }
        install_faults(0);
        memcpy(mf->k + 200 * ROW, in.k[1] + 200 * ROW, 150 * ROW * sizeof(float));
        memcpy(mf->v + 200 * ROW, in.v[1] + 200 * ROW, 150 * ROW * sizeof(float));
        mf->n = 350;
        check_cache("fork appended after its cut", &cfg, fork, mf, &in);
        /* truncating a cache that shares nothing allocates nothing */
        slimkv_cache_destroy(fork);
        install_faults(1);
        model_truncate(m, src, &cfg, 333);
        assert_int_equal(slimkv_cache_truncate(src, 333), SLIMKV_OK);
        assert_int_equal(faults.calls, 0);
        install_faults(0);
        check_cache("unshared cut", &cfg, src, m, &in);
        slimkv_cache_destroy(src);
        assert_int_equal(faults.live, 0);
    }
    free(m);
    free(mf);
    free_inputs(&in);
}

/* ---- fork ---- */

static void attend_last(const slimkv_cache *c, const inputs *in, float *out)
{
    int n;
    assert_int_equal(slimkv_cache_tokens(c, &n), SLIMKV_OK);
    assert_int_equal(slimkv_attend(c, in->q + (size_t)(n - 2) * QROW, 2, out), SLIMKV_OK);
}

/* N forks of a prompt hold its full pages once; each has the same tokens,
 * bit for bit. */
static void test_fork_shares_pages(void **state)
{
    (void)state;
    inputs in = make_inputs(6);
    model *m = malloc(sizeof *m);
    for (int p = 0; p < 4; p++) {
        slimkv_config cfg = make_config(all_policies[p], SLIMKV_Q4, SLIMKV_Q4, NULL);
        slimkv_cache *src, *forks[4];
        assert_int_equal(slimkv_cache_create(&cfg, &src), SLIMKV_OK);
        m->n = 0;
        feed(src, m, &in, 0, 600); /* K 36 groups, V 565 tokens: four full pages each, one partial */
        size_t bytes, owned, shared;
        assert_int_equal(slimkv_cache_bytes(src, &bytes), SLIMKV_OK);
        assert_int_equal(slimkv_cache_bytes_shared(src, &owned, &shared), SLIMKV_OK);
        assert_int_equal(owned, bytes);
        assert_int_equal(shared, 0);
        float want[2 * NQ * D], got[2 * NQ * D];
        attend_last(src, &in, want);
        for (int i = 0; i < 4; i++) /* the last one a fork of a fork */
            assert_int_equal(slimkv_cache_fork(i < 3 ? src : forks[0], &forks[i]), SLIMKV_OK);
        size_t src_owned, src_shared, sum_owned;
        assert_int_equal(slimkv_cache_bytes_shared(src, &src_owned, &src_shared), SLIMKV_OK);
        assert_int_equal(src_owned + src_shared, bytes);
        /* 4 full pages of K and 4 of V per head */
        size_t full_pages = 0;
        for (int h = 0; h < NKV; h++)
            full_pages += 4 * SLIMKV_PAGE_GROUPS * (src->heads[h].k_group_bytes + src->heads[h].v_block_bytes);
        assert_int_equal(src_shared, full_pages);
        sum_owned = src_owned;
        for (int i = 0; i < 4; i++) {
            size_t b, o, s;
            assert_int_equal(slimkv_cache_bytes(forks[i], &b), SLIMKV_OK);
            assert_int_equal(slimkv_cache_bytes_shared(forks[i], &o, &s), SLIMKV_OK);
            assert_int_equal(b, bytes);
            assert_int_equal(o + s, b);
            assert_int_equal(s, src_shared);
            sum_owned += o;
            assert_true(cache_digest(forks[i]) == cache_digest(src));
            attend_last(forks[i], &in, got);
            assert_memory_equal(got, want, sizeof want);
            for (int h = 0; h < NKV; h++) /* the very same full pages */
                for (int pg = 0; pg < 4; pg++)
                    assert_ptr_equal(forks[i]->heads[h].k_pages[pg], src->heads[h].k_pages[pg]);
        }
        size_t together = sum_owned + src_shared;
        print_message("  %s: 5 caches of 600 tokens hold %zu bytes together (%zu each alone, %zu shared)\n",
                      slimkv_policy_name(all_policies[p]), together, bytes, src_shared);
        assert_true(together < 5 * bytes);
        assert_true(together == 5 * bytes - 4 * src_shared);
        for (int i = 0; i < 4; i++)
            slimkv_cache_destroy(forks[i]);
        assert_int_equal(slimkv_cache_bytes_shared(src, &owned, &shared), SLIMKV_OK);
        assert_int_equal(owned, bytes);
        assert_int_equal(shared, 0);
        slimkv_cache_destroy(src);
    }
    free(m);
    free_inputs(&in);
}

/* A source and its fork appended and truncated apart end up exactly like
 * caches that never forked and got the same calls; neither sees the
 * other's changes. Every format and policy. */
static void test_forks_diverge_like_unforked(void **state)
{
    (void)state;
    inputs in = make_inputs(7);
    model *ms = malloc(sizeof *ms), *mf = malloc(sizeof *mf), *mr = malloc(sizeof *mr), *mg = malloc(sizeof *mg);
    /* quick: half the pairs ((p + f) even: each policy with three formats,
     * each format with two policies) */
    const int quick = test_quick();
    for (int p = 0; p < 4; p++)
        for (int f = 0; f < SLIMKV_FORMAT_COUNT; f++) {
            if (!test_policy_takes(all_policies[p], all_formats[f]) || (quick && (p + f) % 2))
                continue;
            slimkv_config cfg = make_config(all_policies[p], all_formats[f], all_formats[f], NULL);
            slimkv_cache *src, *fork, *ref_src, *ref_fork;
            assert_int_equal(slimkv_cache_create(&cfg, &src), SLIMKV_OK);
            assert_int_equal(slimkv_cache_create(&cfg, &ref_src), SLIMKV_OK);
            assert_int_equal(slimkv_cache_create(&cfg, &ref_fork), SLIMKV_OK);
            ms->n = mr->n = mg->n = 0;
            feed(src, ms, &in, 0, PROMPT);
            feed(src, ms, &in, 0, 300 - PROMPT);
            feed(ref_src, mr, &in, 0, PROMPT);
            feed(ref_src, mr, &in, 0, 300 - PROMPT);
            feed(ref_fork, mg, &in, 0, PROMPT);
            feed(ref_fork, mg, &in, 0, 300 - PROMPT);
            assert_int_equal(slimkv_cache_fork(src, &fork), SLIMKV_OK);
            *mf = *ms;
            feed(src, ms, &in, 0, 100);
            feed(ref_src, mr, &in, 0, 100);
            feed(fork, mf, &in, 1, 130);
            feed(ref_fork, mg, &in, 1, 130);
            if (cache_digest(src) != cache_digest(ref_src) || cache_digest(fork) != cache_digest(ref_fork))
                fail_msg("%s %s: after appends, src %d fork %d", slimkv_policy_name(all_policies[p]),
                         slimkv_format_name(all_formats[f]), cache_digest(src) == cache_digest(ref_src),
                         cache_digest(fork) == cache_digest(ref_fork));
            assert_true(cache_digest(src) != cache_digest(fork));
            /* the fork's cut copies the shared page it clears; the source keeps it */
            uint64_t src_digest = cache_digest(src);
            const int cuts[2] = {250, 180};
            for (int i = 0; i < 2; i++) {
                truncate_both(fork, mf, &cfg, cuts[i]);
                truncate_both(ref_fork, mg, &cfg, cuts[i]);
                assert_true(cache_digest(fork) == cache_digest(ref_fork));
                assert_true(cache_digest(src) == src_digest);
            }
            truncate_both(src, ms, &cfg, 220);
            truncate_both(ref_src, mr, &cfg, 220);
            uint64_t fork_digest = cache_digest(fork);
            feed(src, ms, &in, 1, 77);
            feed(ref_src, mr, &in, 1, 77);
            assert_true(cache_digest(src) == cache_digest(ref_src));
            assert_true(cache_digest(fork) == fork_digest);
            feed(fork, mf, &in, 0, 64);
            feed(ref_fork, mg, &in, 0, 64);
            assert_true(cache_digest(fork) == cache_digest(ref_fork));
            char what[96];
            snprintf(what, sizeof what, "%s %s source", slimkv_policy_name(all_policies[p]),
                     slimkv_format_name(all_formats[f]));
            check_cache(what, &cfg, src, ms, &in);
            snprintf(what, sizeof what, "%s %s fork", slimkv_policy_name(all_policies[p]),
                     slimkv_format_name(all_formats[f]));
            check_cache(what, &cfg, fork, mf, &in);
            slimkv_cache_destroy(src);
            slimkv_cache_destroy(fork);
            slimkv_cache_destroy(ref_src);
            slimkv_cache_destroy(ref_fork);
        }
    free(ms);
    free(mf);
    free(mr);
    free(mg);
    free_inputs(&in);
}

/* A cache, its fork and the fork's fork, destroyed in each of the six
 * orders: the others keep their tokens and stay usable; nothing leaks. */
static void test_fork_destroy_orders(void **state)
{
    (void)state;
    inputs in = make_inputs(8);
    model *m[3];
    for (int i = 0; i < 3; i++)
        m[i] = malloc(sizeof *m[i]);
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    slimkv_config cfg = make_config(SLIMKV_POLICY_THINK, SLIMKV_Q4, SLIMKV_Q2, NULL);
    for (int o = 0; o < 6; o++) {
        install_faults(0);
        faults.live = 0;
        slimkv_cache *c[3];
        assert_int_equal(slimkv_cache_create(&cfg, &c[0]), SLIMKV_OK);
        m[0]->n = 0;
        feed(c[0], m[0], &in, 0, 400);
        assert_int_equal(slimkv_cache_fork(c[0], &c[1]), SLIMKV_OK);
        *m[1] = *m[0];
        feed(c[1], m[1], &in, 1, 10);
        assert_int_equal(slimkv_cache_fork(c[1], &c[2]), SLIMKV_OK);
        *m[2] = *m[1];
        feed(c[2], m[2], &in, 0, 20);
        uint64_t digest[3];
        float out[3][2 * NQ * D], got[2 * NQ * D];
        for (int i = 0; i < 3; i++) {
            digest[i] = cache_digest(c[i]);
            attend_last(c[i], &in, out[i]);
        }
        int alive[3] = {1, 1, 1};
        for (int d = 0; d < 3; d++) {
            slimkv_cache_destroy(c[orders[o][d]]);
            alive[orders[o][d]] = 0;
            for (int i = 0; i < 3; i++) {
                if (!alive[i])
                    continue;
                assert_true(cache_digest(c[i]) == digest[i]);
                attend_last(c[i], &in, got);
                assert_memory_equal(got, out[i], sizeof got);
            }
            if (d == 1) { /* the last one left: still a working cache */
                int last = orders[o][2];
                model_truncate(m[last], c[last], &cfg, 150);
                assert_int_equal(slimkv_cache_truncate(c[last], 150), SLIMKV_OK);
                feed(c[last], m[last], &in, 1, 200);
                check_cache("the last cache left", &cfg, c[last], m[last], &in);
                digest[last] = cache_digest(c[last]);
                attend_last(c[last], &in, out[last]);
            }
        }
        assert_int_equal(faults.live, 0);
        assert_int_equal(slimkv_set_allocator(NULL), SLIMKV_OK);
    }
    for (int i = 0; i < 3; i++)
        free(m[i]);
    free_inputs(&in);
}

/* Two forks used on two threads at once, each cutting into the pages they
 * share, appending and attending, then destroyed there, while the main
 * thread destroys their source: the results of running them one by one. */
typedef struct fork_job {
    pthread_t thread;
    slimkv_cache *cache;
    const inputs *in;
    int stream;
    float out[2 * NQ * D];
    double checksum;
    uint64_t digest;
    slimkv_status status;
} fork_job;

static void *fork_job_main(void *arg)
{
    fork_job *j = arg;
    slimkv_cache *c = j->cache;
    j->checksum = 0;
    j->status = slimkv_cache_truncate(c, 250); /* K and V page 1 shared with the other fork */
    for (int step = 0; step < 40 && j->status == SLIMKV_OK; step++) {
        int n = 250 + 5 * step;
        const float *k = j->in->k[j->stream] + (size_t)n * ROW, *v = j->in->v[j->stream] + (size_t)n * ROW;
        j->status = slimkv_cache_append(c, k, v, 5);
        if (j->status == SLIMKV_OK)
            j->status = slimkv_attend(c, j->in->q + (size_t)(n + 3) * QROW, 2, j->out);
        for (size_t i = 0; i < sizeof j->out / sizeof *j->out; i++)
            j->checksum += j->out[i] * (double)(i + 1);
        if (step == 20 && j->status == SLIMKV_OK) { /* and a cut into its own pages */
            j->status = slimkv_cache_truncate(c, n + 5 - 3);
            if (j->status == SLIMKV_OK)
                j->status = slimkv_cache_append(c, j->in->k[j->stream] + (size_t)(n + 2) * ROW,
                                                j->in->v[j->stream] + (size_t)(n + 2) * ROW, 3);
        }
    }
    j->digest = cache_digest(c);
    slimkv_cache_destroy(c);
    return NULL;
}

static void test_forks_on_two_threads(void **state)
{
    (void)state;
    if (!test_threads_allowed())
        skip();
    inputs in = make_inputs(9);
    model *m = malloc(sizeof *m);
    const slimkv_policy policies[] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_SPARK};
    for (int p = 0; p < 2; p++) {
        slimkv_config cfg = make_config(policies[p], SLIMKV_Q4, SLIMKV_Q4, NULL);
        fork_job serial[2], parallel[2];
        slimkv_cache *src;
        assert_int_equal(slimkv_cache_create(&cfg, &src), SLIMKV_OK);
        m->n = 0;
        feed(src, m, &in, 0, 400);
        for (int i = 0; i < 2; i++) {
            serial[i] = (fork_job){.in = &in, .stream = i};
            parallel[i] = serial[i];
            assert_int_equal(slimkv_cache_fork(src, &serial[i].cache), SLIMKV_OK);
            assert_int_equal(slimkv_cache_fork(src, &parallel[i].cache), SLIMKV_OK);
        }
        for (int i = 0; i < 2; i++) {
            fork_job_main(&serial[i]);
            assert_int_equal(serial[i].status, SLIMKV_OK);
        }
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&parallel[i].thread, NULL, fork_job_main, &parallel[i]), 0);
        slimkv_cache_destroy(src); /* while the forks are at work */
        for (int i = 0; i < 2; i++) {
            pthread_join(parallel[i].thread, NULL);
            assert_int_equal(parallel[i].status, SLIMKV_OK);
            assert_memory_equal(parallel[i].out, serial[i].out, sizeof serial[i].out);
            assert_true(parallel[i].checksum == serial[i].checksum);
            assert_true(parallel[i].digest == serial[i].digest);
        }
        assert_true(serial[0].digest != serial[1].digest);
    }
    free(m);
    free_inputs(&in);
}

/* Snapshots of a fork and of a truncated cache restore bit for bit, and
 * the restored cache owns its pages; restoring into a fork leaves its
 * source alone. */
static void test_snapshots_of_forks_and_cuts(void **state)
{
    (void)state;
    inputs in = make_inputs(10);
    model *m = malloc(sizeof *m), *mf = malloc(sizeof *mf);
    char path[512], path2[512];
    tmpdir_file(&dir, "fork.st", path, sizeof path);
    tmpdir_file(&dir, "cut.st", path2, sizeof path2);
    for (int p = 0; p < 4; p++) {
        slimkv_config cfg = make_config(all_policies[p], SLIMKV_Q4, SLIMKV_Q8, NULL);
        slimkv_cache *src, *fork, *other, *restored;
        assert_int_equal(slimkv_cache_create(&cfg, &src), SLIMKV_OK);
        m->n = 0;
        feed(src, m, &in, 0, 300);
        assert_int_equal(slimkv_cache_fork(src, &fork), SLIMKV_OK);
        *mf = *m;
        feed(fork, mf, &in, 1, 40);
        model_truncate(mf, fork, &cfg, 230);
        assert_int_equal(slimkv_cache_truncate(fork, 230), SLIMKV_OK);
        assert_int_equal(slimkv_cache_save(fork, path), SLIMKV_OK);
        assert_int_equal(slimkv_cache_create(&cfg, &restored), SLIMKV_OK);
        assert_int_equal(slimkv_cache_restore(restored, path), SLIMKV_OK);
        assert_true(cache_digest(restored) == cache_digest(fork));
        size_t owned, shared, bytes;
        assert_int_equal(slimkv_cache_bytes_shared(restored, &owned, &shared), SLIMKV_OK);
        assert_int_equal(slimkv_cache_bytes(fork, &bytes), SLIMKV_OK);
        assert_int_equal(shared, 0);
        assert_int_equal(owned, bytes);
        check_cache("restored fork", &cfg, restored, mf, &in);
        /* into a fork that shares pages: its pages are let go, not written */
        uint64_t src_digest = cache_digest(src);
        assert_int_equal(slimkv_cache_fork(src, &other), SLIMKV_OK);
        assert_int_equal(slimkv_cache_restore(other, path), SLIMKV_OK);
        assert_true(cache_digest(other) == cache_digest(fork));
        assert_true(cache_digest(src) == src_digest);
        check_cache("source after a restore into its fork", &cfg, src, m, &in);
        /* a truncated cache that never forked */
        model_truncate(m, src, &cfg, 201);
        assert_int_equal(slimkv_cache_truncate(src, 201), SLIMKV_OK);
        assert_int_equal(slimkv_cache_save(src, path2), SLIMKV_OK);
        assert_int_equal(slimkv_cache_restore(restored, path2), SLIMKV_OK);
        assert_true(cache_digest(restored) == cache_digest(src));
        check_cache("restored cut", &cfg, restored, m, &in);
        feed(restored, m, &in, 1, 99);
        check_cache("restored cut, appended", &cfg, restored, m, &in);
        slimkv_cache_destroy(src);
        slimkv_cache_destroy(fork);
        slimkv_cache_destroy(other);
        slimkv_cache_destroy(restored);
    }
    /* A restored streaming head holds only what it sees: no cut back into
     * its ring until appends have refilled it. */
    slimkv_config cfg = make_config(SLIMKV_POLICY_STATIC, SLIMKV_Q4, SLIMKV_Q4, NULL);
    cfg.k_mask = k_mask_streaming;
    slimkv_cache *c, *restored;
    assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
    assert_int_equal(slimkv_cache_create(&cfg, &restored), SLIMKV_OK);
    m->n = 0;
    feed(c, m, &in, 0, 300);
    assert_int_equal(slimkv_cache_save(c, path), SLIMKV_OK);
    assert_int_equal(slimkv_cache_restore(restored, path), SLIMKV_OK);
    assert_int_equal(slimkv_cache_truncate(restored, 299), SLIMKV_ERR_STATE);
    assert_int_equal(slimkv_cache_truncate(c, 299), SLIMKV_OK);
    assert_int_equal(slimkv_cache_append(restored, in.k[0] + 300 * ROW, in.v[0] + 300 * ROW, 1), SLIMKV_OK);
    assert_int_equal(slimkv_cache_truncate(restored, 300), SLIMKV_OK);
    slimkv_cache_destroy(c);
    slimkv_cache_destroy(restored);
    free(m);
    free(mf);
    free_inputs(&in);
}

/* A fork made before ThinK/SparK chose: each chooses from its own prefill. */
static void test_fork_before_the_choice(void **state)
{
    (void)state;
    inputs in = make_inputs(11);
    model *m = malloc(sizeof *m);
    for (int p = SLIMKV_POLICY_THINK; p <= SLIMKV_POLICY_SPARK; p++) {
        slimkv_config cfg = make_config((slimkv_policy)p, SLIMKV_Q4, SLIMKV_Q4, NULL);
        slimkv_cache *c, *fork, *ref;
        assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
        assert_int_equal(slimkv_cache_fork(c, &fork), SLIMKV_OK);
        assert_int_equal(slimkv_cache_append(fork, in.k[0], in.v[0], 1), SLIMKV_ERR_STATE);
        assert_int_equal(slimkv_cache_create(&cfg, &ref), SLIMKV_OK);
        m->n = 0;
        feed(fork, m, &in, 1, 200);
        m->n = 0;
        feed(ref, m, &in, 1, 200);
        m->n = 0;
        feed(c, m, &in, 0, 200);
        assert_true(cache_digest(fork) == cache_digest(ref));
        assert_true(cache_digest(fork) != cache_digest(c));
        slimkv_cache_destroy(c);
        slimkv_cache_destroy(fork);
        slimkv_cache_destroy(ref);
    }
    free(m);
    free_inputs(&in);
}

static void test_fork_bad_arguments(void **state)
{
    (void)state;
    slimkv_config cfg = make_config(SLIMKV_POLICY_NONE, SLIMKV_Q4, SLIMKV_Q4, NULL);
    slimkv_cache *c, *out = (slimkv_cache *)0x1;
    assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
    assert_int_equal(slimkv_cache_fork(NULL, &out), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cache_fork(c, NULL), SLIMKV_ERR_NULL_ARG);
    assert_ptr_equal(out, (slimkv_cache *)0x1);
    size_t owned, shared;
    assert_int_equal(slimkv_cache_bytes_shared(NULL, &owned, &shared), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cache_bytes_shared(c, NULL, &shared), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cache_bytes_shared(c, &owned, NULL), SLIMKV_ERR_NULL_ARG);
    /* an empty cache forks into an empty cache */
    assert_int_equal(slimkv_cache_fork(c, &out), SLIMKV_OK);
    assert_true(cache_digest(out) == cache_digest(c));
    slimkv_cache_destroy(out);
    slimkv_cache_destroy(c);
}

/* ---- the scalar decoders truncation uses, against the kernels that read the same bytes ---- */

static void test_decoders_match_kernels(void **state)
{
    (void)state;
    const slimkv_kernels *k;
    assert_int_equal(slimkv_select_kernels("scalar", &k), SLIMKV_OK);
    test_rng r;
    rng_seed(&r, 12);
    enum { DK = 40, DV = 44, T = 19 };
    float src[G * D * 2], dec[D * 2], q[D * 2], u[D * 2], s[G], acc[DV], w[G];
    static uint8_t group[1 << 16], block[1 << 16], part[1 << 16];
    float qnorm[D], rsqrt[D];
    for (int c = 0; c < D; c++) {
        qnorm[c] = 0.5f + (float)c / D;
        rsqrt[c] = 1.0f / sqrtf(qnorm[c]);
    }
    for (int f = 0; f < SLIMKV_FORMAT_COUNT; f++) {
        slimkv_format fmt = all_formats[f];
        fill_keys(&r, src, G, 0, 1, DK);
        /* K: the score of unit query e_c is token t's decoded channel c */
        memset(group, 0xa5, sizeof group);
        k->pack_k[fmt](src, DK, G, group);
        for (int t = 0; t < G; t++) {
            slimkv_unpack_k_token(fmt, group, DK, G, t, dec);
            for (int c = 0; c < DK; c++) {
                memset(q, 0, sizeof q);
                q[c] = 1.0f;
                k->score_k[fmt](group, DK, G, G, q, 1, s, G);
                if (fabsf(s[t] - dec[c]) > 1e-6f * (1.0f + fabsf(dec[c])))
                    fail_msg("K %s t %d c %d: decoded %g, scored %g", slimkv_format_name(fmt), t, c, dec[c], s[t]);
            }
        }
        /* SparK: kept values, and pruned ones as the score restores them (no q3 records) */
        fill_keys(&r, src, G, 0, 1, D);
        memset(group, 0, sizeof group);
        if (fmt != SLIMKV_Q3)
            k->pack_spark[fmt](src, qnorm, D, T, G, group);
        for (int t = 0; t < G && fmt != SLIMKV_Q3; t++) {
            slimkv_unpack_spark_token(fmt, group, rsqrt, D, T, G, t, dec);
            for (int c = 0; c < D; c++) {
                memset(q, 0, sizeof q);
                memset(u, 0, sizeof u);
                q[c] = 1.0f;
                u[c] = rsqrt[c];
                k->score_spark[fmt](group, D, T, G, G, q, u, 1, s, G);
                if (fabsf(s[t] - dec[c]) > 1e-5f * (1.0f + fabsf(dec[c])))
                    fail_msg("SparK %s t %d c %d: decoded %g, scored %g", slimkv_format_name(fmt), t, c, dec[c], s[t]);
            }
        }
        /* V: accumulating unit weight e_t gives token t's decoded row */
        fill_normal(&r, src, (size_t)G * DV, 1.0f);
        memset(block, 0, sizeof block);
        for (int t = 0; t < G; t++)
            k->pack_v[fmt](src + (size_t)t * DV, DV, G, block, t);
        for (int t = 0; t < G; t++) {
            slimkv_unpack_v_token(fmt, block, DV, G, t, dec);
            memset(w, 0, sizeof w);
            memset(acc, 0, sizeof acc);
            w[t] = 1.0f;
            k->accum_v[fmt](block, DV, G, G, w, G, 1, acc);
            for (int c = 0; c < DV; c++)
                if (fabsf(acc[c] - dec[c]) > 1e-6f * (1.0f + fabsf(dec[c])))
                    fail_msg("V %s t %d c %d: decoded %g, accumulated %g", slimkv_format_name(fmt), t, c, dec[c],
                             acc[c]);
        }
        /* clearing slots from `first` on gives the block that only ever had the slots before it */
        size_t vbytes = slimkv_v_block_bytes(fmt, DV, G);
        for (int first = 0; first <= G; first += 3) {
            memset(part, 0, vbytes);
            for (int t = 0; t < first; t++)
                k->pack_v[fmt](src + (size_t)t * DV, DV, G, part, t);
            uint8_t cleared[1 << 12];
            assert_true(vbytes <= sizeof cleared);
            memcpy(cleared, block, vbytes);
            slimkv_clear_v_slots(fmt, cleared, DV, G, first);
            if (memcmp(cleared, part, vbytes) != 0)
                fail_msg("V %s: slots cleared from %d differ from a block written up to there",
                         slimkv_format_name(fmt), first);
        }
    }
}

int main(void)
{
    init_masks();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoders_match_kernels),
        cmocka_unit_test(test_truncate_every_format_policy_isa),
        cmocka_unit_test(test_truncate_other_windows),
        cmocka_unit_test(test_truncate_streaming_heads),
        cmocka_unit_test_setup_teardown(test_truncate_bad_arguments, setup_dir, teardown_dir),
        cmocka_unit_test_teardown(test_failed_allocations_change_nothing, teardown_allocator),
        cmocka_unit_test(test_fork_bad_arguments),
        cmocka_unit_test(test_fork_shares_pages),
        cmocka_unit_test(test_forks_diverge_like_unforked),
        cmocka_unit_test_teardown(test_fork_destroy_orders, teardown_allocator),
        cmocka_unit_test(test_forks_on_two_threads),
        cmocka_unit_test_setup_teardown(test_snapshots_of_forks_and_cuts, setup_dir, teardown_dir),
        cmocka_unit_test(test_fork_before_the_choice),
    };
    return cmocka_run_group_tests_name("truncate_fork", tests, NULL, NULL);
}
