/* Snapshots as hostile input.
 *
 * Every byte of small snapshots of every format and policy, flipped one at
 * a time: each restore either fails with SLIMKV_ERR_FORMAT or gives exactly
 * the saved state (a flip JSON does not see, such as in padding spaces),
 * and a failed one leaves the target untouched. Then forgeries with a valid
 * checksum (recomputed here as io_snapshot.c documents it): values the
 * kernels must never read are refused. Then the fields a policy does not
 * use do not make a snapshot foreign. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "oracle.h"
#include "safetensors.h"
#include "small_snapshot.h"
#include "tmpdir.h"

static tmpdir dir;

static int make_dir(void **state)
{
    (void)state;
    return tmpdir_make(&dir);
}

static int remove_dir(void **state)
{
    (void)state;
    tmpdir_remove(&dir);
    return 0;
}

static void test_every_byte_flipped(void **state)
{
    (void)state;
    const slimkv_policy policies[] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_STATIC, SLIMKV_POLICY_THINK,
                                      SLIMKV_POLICY_SPARK};
    char good[512], bad[512];
    tmpdir_file(&dir, "good.safetensors", good, sizeof good);
    tmpdir_file(&dir, "bad.safetensors", bad, sizeof bad);
    long flips = 0, refused = 0, identical = 0;
    for (int p = 0; p < 4; p++)
        for (int f = 0; f < SLIMKV_FORMAT_COUNT; f++) {
            if (!test_policy_takes(policies[p], (slimkv_format)f))
                continue;
            slimkv_config cfg =
                small_snapshot_config(policies[p], (slimkv_format)f, (slimkv_format)((f + 3) % SLIMKV_FORMAT_COUNT));
            slimkv_cache *src = small_snapshot_cache(&cfg, 7 + (uint64_t)f), *target = small_snapshot_cache(&cfg, 99);
            assert_int_equal(slimkv_cache_save(src, good), SLIMKV_OK);
            uint64_t src_digest = cache_digest(src), target_digest = cache_digest(target);
            size_t n;
            uint8_t *bytes = small_read_file(good, &n);
            small_write_file(bad, bytes, n);
            int fd = open(bad, O_WRONLY);
            assert_true(fd >= 0);
            /* Quick (SLIMKV_TEST_QUICK=1, emulators and valgrind): every byte
             * of the length and the JSON header, every 13th of the tensor
             * data (one checksum covers those bytes alike). */
            uint64_t header = 0;
            for (int b = 0; b < 8 && (size_t)b < n; b++)
                header |= (uint64_t)bytes[b] << (8 * b);
            const size_t data_start = 8 + (size_t)header, data_step = test_quick() ? 13 : 1;
            for (size_t i = 0; i < n; i += i < data_start ? 1 : data_step) {
                uint8_t flipped = bytes[i] ^ 0x20; /* letters change case, digits become other bytes, spaces NULs */
                assert_int_equal(pwrite(fd, &flipped, 1, (off_t)i), 1);
                slimkv_status st = slimkv_cache_restore(target, bad);
                assert_int_equal(pwrite(fd, &bytes[i], 1, (off_t)i), 1);
                flips++;
                if (st == SLIMKV_OK) {
                    if (cache_digest(target) != src_digest)
                        fail_msg("policy %d format %d: byte %zu of %zu flipped restored a different state", p, f, i,
                                 n);
                    identical++;
                    slimkv_cache_destroy(target);
                    target = small_snapshot_cache(&cfg, 99);
                } else {
                    if (st != SLIMKV_ERR_FORMAT)
                        fail_msg("policy %d format %d: byte %zu flipped gave %s", p, f, i, slimkv_status_str(st));
                    if (cache_digest(target) != target_digest)
                        fail_msg("policy %d format %d: a refused restore changed the cache", p, f);
                    refused++;
                }
            }
            close(fd);
            free(bytes);
            slimkv_cache_destroy(src);
            slimkv_cache_destroy(target);
        }
    print_message("  %ld flips: %ld refused, %ld restored the saved state (header bytes JSON ignores)\n", flips,
                  refused, identical);
}

/* ---- forgeries with a valid checksum ---- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

typedef struct forged {
    size_t n;
    st_out out[64];
    uint8_t *data[64];
    char names[64][32];
    char meta_values[5][512];
    st_meta meta[5];
} forged;

/* Everything in `path`, in memory, to be changed and written again. */
static void forge_load(const char *path, forged *fg)
{
    st_file *f;
    assert_int_equal(st_open(path, &f), SLIMKV_OK);
    assert_true(f->n_tensors <= 64);
    fg->n = f->n_tensors;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        fg->data[i] = malloc(t->n_bytes + 1);
        assert_int_equal(st_read_bytes(f, t, 0, t->n_bytes, fg->data[i]), SLIMKV_OK);
        snprintf(fg->names[i], sizeof fg->names[i], "%s", t->name);
        fg->out[i] = (st_out){.name = fg->names[i], .dtype = t->dtype, .n_dims = 1,
                              .shape = {(int64_t)(t->n_bytes / st_dtype_size(t->dtype))}, .data = fg->data[i]};
    }
    const char *keys[5] = {"slimkv.snapshot", "slimkv.config", "slimkv.tokens", "slimkv.pending",
                           "slimkv.checksum"};
    for (int i = 0; i < 5; i++) {
        const char *v = st_meta_get(f, keys[i]);
        assert_non_null(v);
        snprintf(fg->meta_values[i], sizeof fg->meta_values[i], "%s", v);
        fg->meta[i] = (st_meta){(char *)keys[i], fg->meta_values[i]};
    }
    st_close(f);
}

static uint8_t *forge_tensor(forged *fg, const char *name, size_t *n_bytes)
{
    for (size_t i = 0; i < fg->n; i++)
        if (strcmp(fg->names[i], name) == 0) {
            *n_bytes = (size_t)fg->out[i].shape[0] * st_dtype_size(fg->out[i].dtype);
            return fg->data[i];
        }
    fail_msg("no tensor %s", name);
    return NULL;
}

/* The checksum as io_snapshot.c defines it, then the file. */
static void forge_write(forged *fg, const char *path)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 4; i++)
        h = fnv1a(h, fg->meta_values[i], strlen(fg->meta_values[i]) + 1);
    for (size_t i = 0; i < fg->n; i++) { /* the reader's table is sorted by name */
        size_t n_bytes = (size_t)fg->out[i].shape[0] * st_dtype_size(fg->out[i].dtype);
        uint8_t fields[9];
        fields[0] = (uint8_t)fg->out[i].dtype;
        for (int b = 0; b < 8; b++)
            fields[1 + b] = (uint8_t)((uint64_t)n_bytes >> (8 * b));
        h = fnv1a(h, fg->names[i], strlen(fg->names[i]) + 1);
        h = fnv1a(h, fields, sizeof fields);
        h = fnv1a(h, fg->data[i], n_bytes);
    }
    snprintf(fg->meta_values[4], sizeof fg->meta_values[4], "%016llx", (unsigned long long)h);
    assert_int_equal(st_write(path, fg->out, fg->n, fg->meta, 5), SLIMKV_OK);
}

static void forge_free(forged *fg)
{
    for (size_t i = 0; i < fg->n; i++)
        free(fg->data[i]);
}

static void put_f32(uint8_t *p, float x)
{
    memcpy(p, &x, sizeof x);
}

static void put_u16(uint8_t *p, uint16_t x)
{
    memcpy(p, &x, sizeof x);
}

typedef enum forgery {
    FORGE_NOTHING,          /* control: the forger itself is right */
    FORGE_SPARK_ALL_KEPT,   /* every mask bit of a token record set */
    FORGE_SPARK_NEGATIVE_A, /* a_t < 0 */
    FORGE_SPARK_NAN_A,
    FORGE_WINDOW_NAN,       /* fp16 NaN in a residual row in use */
    FORGE_SINK_INF,
    FORGE_K_SCALE_INF,      /* fp16 Inf as a K group's scale */
    FORGE_K_MIN_NAN,
    FORGE_V_SCALE_NEGATIVE,
    FORGE_TOKENS_OVER_CAPACITY,
    FORGE_K_STORE_REPEATED,  /* K outliers: a channel twice in the storage order */
    FORGE_K_STORE_UNSORTED,  /* the non-outliers out of ascending order */
    FORGE_OUTLIER_SCALE_INF, /* fp16 Inf as the outliers' q8 scale */
    FORGE_COUNT
} forgery;

/* Applies one forgery to a snapshot of `cfg`; 0 when it does not apply. */
static int forge_apply(forged *fg, const slimkv_config *cfg, const slimkv_cache *src, forgery what)
{
    size_t n;
    uint8_t *p;
    const slimkv_head *h = &src->heads[0];
    switch (what) {
    case FORGE_NOTHING: return 1;
    case FORGE_SPARK_ALL_KEPT:
    case FORGE_SPARK_NEGATIVE_A:
    case FORGE_SPARK_NAN_A: {
        if (cfg->policy != SLIMKV_POLICY_SPARK)
            return 0;
        p = forge_tensor(fg, "h0.k_body", &n);
        slimkv_spark_geometry geo = slimkv_spark_geometry_of(cfg->k_format, SMALL_DIM, src->spark_keep, SMALL_G);
        uint8_t *rec = p + 3 * geo.record; /* token 3 of group 0 */
        if (what == FORGE_SPARK_ALL_KEPT)
            memset(rec, 0xff, geo.bits);
        else
            put_f32(rec + 2 * geo.bits, what == FORGE_SPARK_NAN_A ? NAN : -1.0f);
        return 1;
    }
    case FORGE_WINDOW_NAN:
    case FORGE_SINK_INF: {
        if (src->k_row_fmt != SLIMKV_F16)
            return 0;
        int pos = what == FORGE_SINK_INF ? 0 : SMALL_TOKENS - 1;
        p = forge_tensor(fg, what == FORGE_SINK_INF ? "h0.sink_k" : "h0.window_k", &n);
        uint8_t *row = what == FORGE_SINK_INF ? p : p + (size_t)((pos - cfg->n_sink) % src->ring_slots) * SMALL_DIM * 2;
        put_u16(row + 6, what == FORGE_SINK_INF ? 0x7c00 : 0x7e00);
        return 1;
    }
    case FORGE_K_SCALE_INF:
    case FORGE_K_MIN_NAN:
        if (!slimkv_is_quantized(cfg->k_format) || cfg->policy == SLIMKV_POLICY_SPARK)
            return 0;
        p = forge_tensor(fg, "h0.k_body", &n);
        p += slimkv_k_params_offset(cfg->k_format, h->dk - h->k_out, SMALL_G) +
             (what == FORGE_K_MIN_NAN ? 2 * (size_t)(h->dk - h->k_out) : 0);
        put_u16(p + 2, what == FORGE_K_SCALE_INF ? 0x7c00 : 0x7e01);
        return 1;
    case FORGE_V_SCALE_NEGATIVE:
        if (!slimkv_is_quantized(cfg->v_format))
            return 0;
        p = forge_tensor(fg, "h0.v_body", &n);
        put_u16(p + slimkv_v_params_offset(cfg->v_format, h->dv, SMALL_G), 0xbc00); /* -1.0 */
        return 1;
    case FORGE_TOKENS_OVER_CAPACITY:
        snprintf(fg->meta_values[2], sizeof fg->meta_values[2], "%d", SMALL_CAP + 1);
        return 1;
    case FORGE_K_STORE_REPEATED:
    case FORGE_K_STORE_UNSORTED: {
        if (h->k_out == 0)
            return 0;
        int32_t *order = (int32_t *)forge_tensor(fg, "h0.k_store", &n);
        int32_t first = order[0];
        order[0] = order[1];
        if (what == FORGE_K_STORE_UNSORTED)
            order[1] = first;
        return 1;
    }
    case FORGE_OUTLIER_SCALE_INF:
        if (h->k_out == 0)
            return 0;
        p = forge_tensor(fg, "h0.k_body", &n);
        put_u16(p + h->k_out_offset + slimkv_k_params_offset(SLIMKV_Q8, h->k_out, SMALL_G) + 2, 0x7c00);
        return 1;
    default: return 0;
    }
}

static void test_forged_snapshots_refused(void **state)
{
    (void)state;
    const slimkv_policy policies[] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_STATIC, SLIMKV_POLICY_THINK,
                                      SLIMKV_POLICY_SPARK};
    char good[512], bad[512];
    tmpdir_file(&dir, "good.safetensors", good, sizeof good);
    tmpdir_file(&dir, "forged.safetensors", bad, sizeof bad);
    int applied[FORGE_COUNT] = {0};
    for (int p = 0; p < 4; p++)
        for (int fo = 0; fo < SLIMKV_FORMAT_COUNT + 3; fo++) {
            /* every format, then q4, q3 and q2 with K outliers (not SparK) */
            int f = fo < SLIMKV_FORMAT_COUNT ? fo : (int)(SLIMKV_Q4 + (fo - SLIMKV_FORMAT_COUNT) % 3);
            int outliers = fo >= SLIMKV_FORMAT_COUNT ? 4 : 0;
            if (!test_policy_takes(policies[p], (slimkv_format)f) || (outliers && policies[p] == SLIMKV_POLICY_SPARK))
                continue;
            slimkv_config cfg =
                small_snapshot_config(policies[p], (slimkv_format)f, (slimkv_format)((f + 4) % SLIMKV_FORMAT_COUNT));
            cfg.k_outliers = outliers;
            slimkv_cache *src = small_snapshot_cache(&cfg, 5), *target = small_snapshot_cache(&cfg, 6);
            assert_int_equal(slimkv_cache_save(src, good), SLIMKV_OK);
            uint64_t before = cache_digest(target);
            for (int w = 0; w < FORGE_COUNT; w++) {
                forged fg;
                forge_load(good, &fg);
                if (forge_apply(&fg, &cfg, src, (forgery)w)) {
                    forge_write(&fg, bad);
                    slimkv_status st = slimkv_cache_restore(target, bad);
                    applied[w]++;
                    if (w == FORGE_NOTHING) {
                        assert_int_equal(st, SLIMKV_OK);
                        assert_true(cache_digest(target) == cache_digest(src));
                        slimkv_cache_destroy(target);
                        target = small_snapshot_cache(&cfg, 6);
                    } else if (st != SLIMKV_ERR_FORMAT || cache_digest(target) != before) {
                        fail_msg("policy %d k %d v %d: forgery %d restored (%s)", p, f, (f + 4) % 6, w,
                                 slimkv_status_str(st));
                    }
                }
                forge_free(&fg);
            }
            slimkv_cache_destroy(src);
            slimkv_cache_destroy(target);
        }
    for (int w = 0; w < FORGE_COUNT; w++)
        if (!applied[w])
            fail_msg("forgery %d never applied", w);
}

/* Only what determines the stored state must match. */
static void test_unused_fields_do_not_matter(void **state)
{
    (void)state;
    char path[512];
    tmpdir_file(&dir, "snap.safetensors", path, sizeof path);
    const slimkv_policy policies[] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_STATIC, SLIMKV_POLICY_THINK,
                                      SLIMKV_POLICY_SPARK};
    for (int p = 0; p < 4; p++) {
        slimkv_config cfg = small_snapshot_config(policies[p], SLIMKV_Q4, SLIMKV_Q8);
        slimkv_cache *src = small_snapshot_cache(&cfg, 3), *target;
        assert_int_equal(slimkv_cache_save(src, path), SLIMKV_OK);
        slimkv_config other = cfg;
        other.window = 7; /* steers a choice already made */
        if (policies[p] != SLIMKV_POLICY_SPARK)
            other.prune_ratio = 0.25f; /* SparK's ratio sets its record size; the others' is unused or stored */
        if (policies[p] != SLIMKV_POLICY_STATIC)
            other.channel_align = 16;
        other.isa = "scalar"; /* bytes are the same on every ISA */
        assert_int_equal(slimkv_cache_create(&other, &target), SLIMKV_OK);
        assert_int_equal(slimkv_cache_restore(target, path), SLIMKV_OK);
        assert_true(cache_digest(target) == cache_digest(src));
        slimkv_cache_destroy(target);
        if (policies[p] == SLIMKV_POLICY_SPARK) { /* another T: foreign */
            other = cfg;
            other.prune_ratio = 0.25f;
            assert_int_equal(slimkv_cache_create(&other, &target), SLIMKV_OK);
            assert_int_equal(slimkv_cache_restore(target, path), SLIMKV_ERR_MISMATCH);
            slimkv_cache_destroy(target);
        }
        slimkv_cache_destroy(src);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_byte_flipped),
        cmocka_unit_test(test_forged_snapshots_refused),
        cmocka_unit_test(test_unused_fields_do_not_matter),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
