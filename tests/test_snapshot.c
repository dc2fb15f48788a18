/* Snapshots: bit-for-bit round trips for every format and policy, and
 * refusal of truncated, corrupted, mismatched or foreign files with the
 * target cache untouched. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "oracle.h"
#include "tmpdir.h"

enum { N_Q = 4, N_KV = 2, DIM = 32, CAP = 600 };

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

static void path_of(char *buf, const char *name)
{
    tmpdir_file(&dir, name, buf, 512);
}

static uint8_t k_mask[N_KV * DIM], v_mask[N_KV * DIM];

static slimkv_config config_for(slimkv_policy policy, slimkv_format k, slimkv_format v)
{
    for (int i = 0; i < N_KV * DIM; i++) {
        k_mask[i] = i < DIM ? i % 3 == 0 : 0; /* head 1 streaming */
        v_mask[i] = i % 4 != 1;
    }
    slimkv_config c;
    slimkv_config_init(&c);
    c.n_q_heads = N_Q;
    c.n_kv_heads = N_KV;
    c.head_dim = DIM;
    c.capacity = CAP;
    c.k_format = k;
    c.v_format = v;
    c.residual = 64;
    c.n_sink = 2;
    c.policy = policy;
    if (policy == SLIMKV_POLICY_STATIC) {
        c.k_mask = k_mask;
        c.v_mask = v_mask;
    }
    return c;
}

typedef struct data {
    float q[CAP * N_Q * DIM], k[CAP * N_KV * DIM], v[CAP * N_KV * DIM];
} data;

static data *make_data(void)
{
    data *d = malloc(sizeof *d);
    test_rng r;
    rng_seed(&r, 99);
    fill_keys(&r, d->k, CAP, 0, N_KV, DIM);
    fill_normal(&r, d->v, (size_t)CAP * N_KV * DIM, 1.0f);
    fill_normal(&r, d->q, (size_t)CAP * N_Q * DIM, 0.5f);
    return d;
}

/* A cache with n tokens: a prefill of half, appends for the rest. */
static slimkv_cache *filled(const slimkv_config *cfg, const data *d, int n)
{
    slimkv_cache *c;
    assert_int_equal(slimkv_cache_create(cfg, &c), SLIMKV_OK);
    if (n > 0) {
        float *out = malloc((size_t)n * N_Q * DIM * sizeof(float));
        int first = n / 2 > 0 ? n / 2 : n;
        assert_int_equal(slimkv_cache_prefill(c, d->q, d->k, d->v, first, out), SLIMKV_OK);
        if (n > first)
            assert_int_equal(slimkv_cache_append(c, d->k + first * N_KV * DIM, d->v + first * N_KV * DIM, n - first),
                             SLIMKV_OK);
        free(out);
    }
    return c;
}

static void test_round_trip_every_format_and_policy(void **state)
{
    (void)state;
    data *d = make_data();
    const slimkv_policy policies[] = {SLIMKV_POLICY_NONE, SLIMKV_POLICY_STATIC, SLIMKV_POLICY_THINK,
                                      SLIMKV_POLICY_SPARK};
    const int counts[] = {0, 1, 70, 599};
    char path[512];
    path_of(path, "snap.safetensors");
    for (int p = 0; p < 4; p++)
        for (int f = 0; f < SLIMKV_FORMAT_COUNT; f++)
            for (int ci = 0; ci < 4; ci++) {
                if (!test_policy_takes(policies[p], (slimkv_format)f))
                    continue;
                slimkv_config cfg =
                    config_for(policies[p], (slimkv_format)f, (slimkv_format)((f + 2) % SLIMKV_FORMAT_COUNT));
                slimkv_cache *a = filled(&cfg, d, counts[ci]), *b;
                assert_int_equal(slimkv_cache_save(a, path), SLIMKV_OK);
                assert_int_equal(slimkv_cache_create(&cfg, &b), SLIMKV_OK);
                assert_int_equal(slimkv_cache_restore(b, path), SLIMKV_OK);
                if (cache_digest(a) != cache_digest(b))
                    fail_msg("policy %d format %d tokens %d: restored cache differs", p, f, counts[ci]);
                size_t ba, bb;
                slimkv_cache_bytes(a, &ba);
                slimkv_cache_bytes(b, &bb);
                assert_int_equal(ba, bb);
                if (counts[ci] > 0) { /* same answers, and both go on identically */
                    float oa[N_Q * DIM], ob[N_Q * DIM];
                    assert_int_equal(slimkv_attend(a, d->q, 1, oa), SLIMKV_OK);
                    assert_int_equal(slimkv_attend(b, d->q, 1, ob), SLIMKV_OK);
                    assert_memory_equal(oa, ob, sizeof oa);
                    assert_int_equal(slimkv_cache_append(a, d->k, d->v, 1), SLIMKV_OK);
                    assert_int_equal(slimkv_cache_append(b, d->k, d->v, 1), SLIMKV_OK);
                    assert_true(cache_digest(a) == cache_digest(b));
                }
                slimkv_cache_destroy(a);
                slimkv_cache_destroy(b);
            }
    free(d);
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void copy_prefix(const char *from, const char *to, long n)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    for (long i = 0; i < n; i++) {
        int ch = fgetc(in);
        assert_true(ch != EOF);
        fputc(ch, out);
    }
    fclose(in);
    fclose(out);
}

static void flip_byte(const char *path, long offset)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, offset, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, offset, SEEK_SET);
    fputc(ch ^ 0x5a, f);
    fclose(f);
}

/* Rewrites the first occurrence of `what` in the file with `with` (same length). */
static void patch_text(const char *path, const char *what, const char *with)
{
    long n = file_size(path);
    char *buf = malloc((size_t)n);
    FILE *f = fopen(path, "r+b");
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    char *hit = memmem(buf, (size_t)n, what, strlen(what));
    assert_non_null(hit);
    fseek(f, hit - buf, SEEK_SET);
    fwrite(with, 1, strlen(with), f);
    fclose(f);
    free(buf);
}

static void test_bad_snapshots_leave_cache_untouched(void **state)
{
    (void)state;
    data *d = make_data();
    slimkv_config cfg = config_for(SLIMKV_POLICY_STATIC, SLIMKV_Q4, SLIMKV_Q8);
    slimkv_cache *src = filled(&cfg, d, 300), *target = filled(&cfg, d, 100);
    char good[512], bad[512];
    path_of(good, "good.safetensors");
    path_of(bad, "bad.safetensors");
    assert_int_equal(slimkv_cache_save(src, good), SLIMKV_OK);
    uint64_t before = cache_digest(target);
    long size = file_size(good);

    /* truncated anywhere: in the length, the header, the data */
    const long cuts[] = {0, 4, 8, 40, size / 2, size - 1};
    for (int i = 0; i < 6; i++) {
        copy_prefix(good, bad, cuts[i]);
        assert_int_equal(slimkv_cache_restore(target, bad), SLIMKV_ERR_FORMAT);
    }
    /* a flipped payload byte: the checksum catches it */
    copy_prefix(good, bad, size);
    flip_byte(bad, size - 10);
    assert_int_equal(slimkv_cache_restore(target, bad), SLIMKV_ERR_FORMAT);
    /* another version */
    copy_prefix(good, bad, size);
    patch_text(bad, "\"slimkv.snapshot\":\"2\"", "\"slimkv.snapshot\":\"7\"");
    assert_int_equal(slimkv_cache_restore(target, bad), SLIMKV_ERR_FORMAT);
    /* a wrong checksum value */
    copy_prefix(good, bad, size);
    patch_text(bad, "\"slimkv.checksum\":\"", "\"slimkv.checksum\":\"f");
    assert_int_equal(slimkv_cache_restore(target, bad), SLIMKV_ERR_FORMAT);
    /* missing file, NULLs */
    path_of(bad, "missing.safetensors");
    assert_int_equal(slimkv_cache_restore(target, bad), SLIMKV_ERR_IO);
    assert_int_equal(slimkv_cache_restore(NULL, good), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cache_restore(target, NULL), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_cache_save(NULL, good), SLIMKV_ERR_NULL_ARG);
    /* a snapshot of a differently configured cache */
    const slimkv_format formats[] = {SLIMKV_Q2, SLIMKV_Q8};
    slimkv_config other = config_for(SLIMKV_POLICY_STATIC, formats[0], formats[1]);
    slimkv_cache *o = filled(&other, d, 50);
    path_of(bad, "other.safetensors");
    assert_int_equal(slimkv_cache_save(o, bad), SLIMKV_OK);
    assert_int_equal(slimkv_cache_restore(target, bad), SLIMKV_ERR_MISMATCH);
    slimkv_cache_destroy(o);
    /* same fields, other masks */
    other = config_for(SLIMKV_POLICY_STATIC, SLIMKV_Q4, SLIMKV_Q8);
    k_mask[31] ^= 1; /* one more kept channel changes the aligned set */
    o = filled(&other, d, 50);
    assert_int_equal(slimkv_cache_save(o, bad), SLIMKV_OK);
    assert_int_equal(slimkv_cache_restore(target, bad), SLIMKV_ERR_MISMATCH);
    slimkv_cache_destroy(o);

    assert_true(cache_digest(target) == before);
    /* and the good file still restores */
    assert_int_equal(slimkv_cache_restore(target, good), SLIMKV_OK);
    assert_true(cache_digest(target) == cache_digest(src));
    slimkv_cache_destroy(src);
    slimkv_cache_destroy(target);
    free(d);
}

/* A save that cannot complete leaves the old file in place, and no temporary. */
static void test_failed_save_keeps_old_file(void **state)
{
    (void)state;
    data *d = make_data();
    slimkv_config cfg = config_for(SLIMKV_POLICY_NONE, SLIMKV_Q4, SLIMKV_Q4);
    slimkv_cache *c = filled(&cfg, d, 200);
    char path[512];
    path_of(path, "no-such-dir/snap.safetensors"); /* (root ignores directory permissions) */
    assert_int_equal(slimkv_cache_save(c, path), SLIMKV_ERR_IO);
    /* overwrite an existing snapshot: the new one replaces it whole */
    path_of(path, "keep.safetensors");
    assert_int_equal(slimkv_cache_save(c, path), SLIMKV_OK);
    long first = file_size(path);
    assert_int_equal(slimkv_cache_append(c, d->k, d->v, 300), SLIMKV_OK); /* more pages */
    assert_int_equal(slimkv_cache_save(c, path), SLIMKV_OK);
    assert_true(file_size(path) > first);
    int leftovers = 0; /* temporary files of the writer */
    DIR *listing = opendir(dir.path);
    for (struct dirent *e; listing && (e = readdir(listing));)
        leftovers += strstr(e->d_name, ".tmp-") != NULL;
    closedir(listing);
    assert_int_equal(leftovers, 0);
    slimkv_cache_destroy(c);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_format_and_policy),
        cmocka_unit_test(test_bad_snapshots_leave_cache_untouched),
        cmocka_unit_test(test_failed_save_keeps_old_file),
    };
    return cmocka_run_group_tests_name("snapshot", tests, make_dir, remove_dir);
}
