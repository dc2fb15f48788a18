/* Files: the safetensors reader/writer, mask files and plan files.
 * Round trips; hostile files (truncated, wrong dtype or shape, huge header,
 * offsets out of range, invalid JSON, non-0/1 masks) give SLIMKV_ERR_FORMAT
 * and leave outputs untouched; writes are atomic; a plan loads into configs
 * that create working caches. */
#include <fcntl.h>
#include <math.h>
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
#include "safetensors.h"
#include "tmpdir.h"

#define SENTINEL ((void *)0x5a5a)

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static size_t read_bytes(const char *path, void *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* A safetensors file by hand: declared header length, header text, then
 * data_len zero bytes. */
static void write_raw(const char *path, uint64_t declared, const char *header, size_t data_len)
{
    size_t hl = strlen(header), n = 8 + hl + data_len;
    uint8_t *buf = calloc(1, n);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(declared >> (8 * i));
    memcpy(buf + 8, header, hl);
    write_bytes(path, buf, n);
    free(buf);
}

/* The mask and plan readers refuse the file with `expect`, writing no output. */
static void expect_masks_refused(const char *path, slimkv_status expect)
{
    slimkv_masks *m = SENTINEL;
    assert_int_equal(slimkv_masks_load(path, &m), expect);
    assert_ptr_equal(m, SENTINEL);
    slimkv_plan *p = SENTINEL;
    assert_int_equal(slimkv_plan_load(path, &p), expect);
    assert_ptr_equal(p, SENTINEL);
}

/* Every reader refuses the file with `expect`, writing no output. */
static void expect_refused(const char *path, slimkv_status expect)
{
    st_file *f = SENTINEL;
    assert_int_equal(st_open(path, &f), expect);
    assert_ptr_equal(f, SENTINEL);
    expect_masks_refused(path, expect);
}

static void test_round_trip(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char path[300];
    tmpdir_file(&d, "t.safetensors", path, sizeof path);

    float f[6] = {1.5f, -2.0f, 0.0f, 3.25f, -1e-3f, 65504.0f};
    uint8_t f16[12], bf16[12], f32[24], u8[3] = {0, 1, 255}, i32[8];
    int32_t ints[2] = {-7, 123456};
    st_encode_f32(ST_F16, f, 6, f16);
    st_encode_f32(ST_BF16, f, 6, bf16);
    st_encode_f32(ST_F32, f, 6, f32);
    st_encode_i32(ints, 2, i32);
    st_out out[] = {
        {.name = "w.f32", .dtype = ST_F32, .n_dims = 2, .shape = {2, 3}, .data = f32},
        {.name = "w.f16", .dtype = ST_F16, .n_dims = 2, .shape = {3, 2}, .data = f16},
        {.name = "w.bf16", .dtype = ST_BF16, .n_dims = 1, .shape = {6}, .data = bf16},
        {.name = "bytes", .dtype = ST_U8, .n_dims = 1, .shape = {3}, .data = u8},
        {.name = "ints", .dtype = ST_I32, .n_dims = 1, .shape = {2}, .data = i32},
        {.name = "empty", .dtype = ST_F32, .n_dims = 2, .shape = {0, 5}, .data = f32},
        {.name = "scalar", .dtype = ST_F32, .n_dims = 0, .data = f32},
    };
    st_meta meta[] = {{"who", "test"}, {"quote\"d", "a\nb"}};
    assert_int_equal(st_write(path, out, 7, meta, 2), SLIMKV_OK);
    assert_int_equal(tmpdir_count(&d), 1); /* no temporary left */

    uint8_t head[8];
    assert_int_equal(read_bytes(path, head, 8), 8);
    assert_int_equal(head[0] % 8, 0); /* header padded: data 8-aligned */

    st_file *file;
    assert_int_equal(st_open(path, &file), SLIMKV_OK);
    assert_int_equal(file->n_tensors, 7);
    assert_string_equal(st_meta_get(file, "who"), "test");
    assert_string_equal(st_meta_get(file, "quote\"d"), "a\nb");
    assert_null(st_meta_get(file, "nope"));
    assert_null(st_find(file, "nope"));
    float back[6];
    const char *names[3] = {"w.f32", "w.f16", "w.bf16"};
    double tol[3] = {0, 1e-3, 1e-2};
    for (int i = 0; i < 3; i++) {
        const st_tensor *t = st_find(file, names[i]);
        assert_non_null(t);
        assert_int_equal(t->n_elems, 6);
        assert_int_equal(st_read_f32(file, t, back), SLIMKV_OK);
        for (int j = 0; j < 6; j++)
            assert_true(fabsf(back[j] - f[j]) <= tol[i] * fabsf(f[j]) + 1e-6);
    }
    int64_t shape[2] = {3, 2};
    assert_true(st_shape_is(st_find(file, "w.f16"), 2, shape));
    assert_int_equal(st_read_f32(file, st_find(file, "bytes"), back), SLIMKV_OK);
    assert_true(back[0] == 0 && back[1] == 1 && back[2] == 255);
    assert_int_equal(st_read_f32(file, st_find(file, "ints"), back), SLIMKV_OK);
    assert_true(back[0] == -7 && back[1] == 123456);
    assert_int_equal(st_find(file, "empty")->n_elems, 0);
    assert_int_equal(st_find(file, "scalar")->n_elems, 1);
    assert_int_equal(st_find(file, "scalar")->n_dims, 0);
    uint8_t raw[24];
    assert_int_equal(st_read_bytes(file, st_find(file, "w.f32"), 0, 24, raw), SLIMKV_OK);
    assert_memory_equal(raw, f32, 24);
    assert_int_equal(st_read_bytes(file, st_find(file, "w.f32"), 4, 24, raw), SLIMKV_ERR_INVALID_ARG);
    st_close(file);

    /* the writer refuses duplicate names, __metadata__ and ambiguous sources */
    st_out dup[2] = {out[3], out[3]};
    assert_int_equal(st_write(path, dup, 2, NULL, 0), SLIMKV_ERR_INVALID_ARG);
    st_out bad = out[3];
    bad.name = "__metadata__";
    assert_int_equal(st_write(path, &bad, 1, NULL, 0), SLIMKV_ERR_INVALID_ARG);
    bad = out[3];
    bad.data = NULL;
    assert_int_equal(st_write(path, &bad, 1, NULL, 0), SLIMKV_ERR_INVALID_ARG);
    bad = out[3];
    bad.shape[0] = -1;
    assert_int_equal(st_write(path, &bad, 1, NULL, 0), SLIMKV_ERR_INVALID_ARG);
    tmpdir_remove(&d);
}

/* Each header below is malformed in one way. */
static const struct bad_case {
    const char *what, *header;
    size_t data_len;
} bad_cases[] = {
    {"invalid JSON", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4},
    {"not an object", "[1,2]", 0},
    {"not JSON at all", "hello", 0},
    {"trailing garbage", "{} x", 0},
    {"unknown dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4},
    {"dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4},
    {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4},
    {"negative dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4},
    {"fractional dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4},
    {"string dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4},
    {"too many dimensions",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4},
    {"element count overflow",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4},
    {"wrong shape for its bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4},
    {"wrong dtype for its bytes", "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4},
    {"offsets beyond the data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4},
    {"begin after end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4},
    {"huge offset", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1e300,1e300]}}", 4},
    {"three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4},
    {"overlapping tensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4},
    {"gap before data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8},
    {"trailing data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8},
    {"duplicate names",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8},
    {"metadata value not a string", "{\"__metadata__\":{\"k\":1}}", 0},
    {"metadata not an object", "{\"__metadata__\":\"k\"}", 0},
    /* strict text: the documented shape, not all of JSON */
    {"dimension written as a float", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4},
    {"dimension with an exponent", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4},
    {"dimension with a leading zero", "{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4},
    {"offset written as a float", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4},
    {"a literal", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":null}}", 4},
    {"metadata not UTF-8", "{\"__metadata__\":{\"k\":\"\xff\"}}", 0},
    {"overlong UTF-8", "{\"__metadata__\":{\"k\":\"\xc0\xaf\"}}", 0},
    {"UTF-8 surrogate", "{\"__metadata__\":{\"k\":\"\xed\xa0\x80\"}}", 0},
    {"escaped NUL in a key", "{\"__metadata__\":{\"k\\u0000x\":\"v\"}}", 0},
    {"unpaired surrogate escape", "{\"__metadata__\":{\"k\":\"\\ud800\"}}", 0},
    {"raw control byte in a string", "{\"__metadata__\":{\"k\":\"a\tb\"}}", 0},
};

static void test_bad_headers(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char path[300];
    tmpdir_file(&d, "bad.safetensors", path, sizeof path);
    for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
        write_raw(path, strlen(bad_cases[i].header), bad_cases[i].header, bad_cases[i].data_len);
        st_file *f = SENTINEL;
        if (st_open(path, &f) != SLIMKV_ERR_FORMAT)
            fail_msg("accepted: %s", bad_cases[i].what);
        expect_refused(path, SLIMKV_ERR_FORMAT);
    }
    /* a NUL byte inside the header (cJSON would stop reading there) */
    const char nul_header[] = "{\"__metadata__\":{\"k\":\"a\0b\"}}";
    uint8_t raw[8 + sizeof nul_header - 1] = {(uint8_t)(sizeof nul_header - 1)};
    memcpy(raw + 8, nul_header, sizeof nul_header - 1);
    write_bytes(path, raw, sizeof raw);
    expect_refused(path, SLIMKV_ERR_FORMAT);
    /* a well-formed header with padding is fine (the control case), and so
     * are escapes, UTF-8 and a surrogate pair */
    const char *padded = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"__metadata__\":{\"k\\n\":\"\xc3\xa9\\ud83d\\ude00\\\"\"}}         ";
    write_raw(path, strlen(padded), padded, 4);
    st_file *f;
    assert_int_equal(st_open(path, &f), SLIMKV_OK);
    assert_string_equal(st_meta_get(f, "k\n"), "\xc3\xa9\xf0\x9f\x98\x80\"");
    st_close(f);
    tmpdir_remove(&d);
}

static void test_bad_sizes(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char path[300];
    tmpdir_file(&d, "bad.safetensors", path, sizeof path);

    write_bytes(path, "", 0); /* empty */
    expect_refused(path, SLIMKV_ERR_FORMAT);
    write_bytes(path, "\x02\0\0\0", 4); /* shorter than the length field */
    expect_refused(path, SLIMKV_ERR_FORMAT);
    write_raw(path, 1000, "{}", 0); /* header longer than the file */
    expect_refused(path, SLIMKV_ERR_FORMAT);
    write_raw(path, (uint64_t)1 << 62, "{}", 0); /* huge header length */
    expect_refused(path, SLIMKV_ERR_FORMAT);
    write_raw(path, 0, "", 0); /* zero-length header */
    expect_refused(path, SLIMKV_ERR_FORMAT);

    /* a 150 MiB header inside a 200 MiB (sparse) file: over the 100 MiB bound */
    write_raw(path, (uint64_t)150 << 20, "{", 0);
    assert_int_equal(truncate(path, (off_t)200 << 20), 0);
    expect_refused(path, SLIMKV_ERR_FORMAT);

    /* a valid masks file truncated by one byte */
    uint8_t mask[2 * 2 * 8];
    for (int i = 0; i < 32; i++)
        mask[i] = (uint8_t)(i % 3 == 0);
    assert_int_equal(slimkv_masks_save(path, 2, 2, 8, mask, NULL), SLIMKV_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size - 1), 0);
    expect_refused(path, SLIMKV_ERR_FORMAT);

    /* OS errors: no file, a directory */
    char missing[300];
    expect_refused(tmpdir_file(&d, "missing", missing, sizeof missing), SLIMKV_ERR_IO);
    expect_refused(d.path, SLIMKV_ERR_IO);
    tmpdir_remove(&d);
}

/* A shrink after st_open is seen when the tensor is read, not a crash. */
static void test_file_shrinks_after_open(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char path[300];
    tmpdir_file(&d, "m.safetensors", path, sizeof path);
    uint8_t mask[4 * 16] = {1};
    assert_int_equal(slimkv_masks_save(path, 1, 4, 16, mask, NULL), SLIMKV_OK);
    st_file *f;
    assert_int_equal(st_open(path, &f), SLIMKV_OK);
    assert_int_equal(truncate(path, (off_t)(f->data_start + 10)), 0);
    float values[64];
    assert_int_equal(st_read_f32(f, st_find(f, "k_mask"), values), SLIMKV_ERR_FORMAT);
    st_close(f);
    tmpdir_remove(&d);
}

static void fill_mask(uint8_t *m, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        m[i] = (uint8_t)((i * 7 + (size_t)seed) % 5 < 3);
}

static void test_masks_round_trip(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char path[300];
    tmpdir_file(&d, "masks.safetensors", path, sizeof path);
    enum { L = 3, H = 2, D = 32 };
    uint8_t k[L * H * D], v[L * H * D];
    fill_mask(k, sizeof k, 1);
    fill_mask(v, sizeof v, 2);
    memset(k + 1 * H * D, 0, D); /* layer 1, head 0: streaming */
    assert_int_equal(slimkv_masks_save(path, L, H, D, k, v), SLIMKV_OK);

    slimkv_masks *m;
    assert_int_equal(slimkv_masks_load(path, &m), SLIMKV_OK);
    int layers, heads, dim;
    assert_int_equal(slimkv_masks_shape(m, &layers, &heads, &dim), SLIMKV_OK);
    assert_true(layers == L && heads == H && dim == D);
    for (int l = 0; l < L; l++) {
        slimkv_config c;
        slimkv_config_init(&c);
        c.n_q_heads = 4;
        c.n_kv_heads = H;
        c.head_dim = D;
        c.capacity = 64;
        assert_int_equal(slimkv_masks_apply(m, l, &c), SLIMKV_OK);
        assert_int_equal(c.policy, SLIMKV_POLICY_STATIC);
        assert_memory_equal(c.k_mask, k + l * H * D, H * D);
        assert_memory_equal(c.v_mask, v + l * H * D, H * D);
        slimkv_cache *cache;
        assert_int_equal(slimkv_cache_create(&c, &cache), SLIMKV_OK);
        int count;
        assert_int_equal(slimkv_cache_kept_channels(cache, 0, 0, NULL, &count), SLIMKV_OK);
        assert_int_equal(count, l == 1 ? 0 : 24); /* 20 ones rounded up to align 8; streaming head */
        slimkv_cache_destroy(cache);
    }

    /* mismatched config or layer: error, config untouched */
    slimkv_config c, before;
    slimkv_config_init(&c);
    c.n_kv_heads = H + 1;
    c.head_dim = D;
    before = c;
    assert_int_equal(slimkv_masks_apply(m, 0, &c), SLIMKV_ERR_INVALID_CONFIG);
    assert_memory_equal(&c, &before, sizeof c);
    c.n_kv_heads = H;
    before = c;
    assert_int_equal(slimkv_masks_apply(m, L, &c), SLIMKV_ERR_INVALID_ARG);
    assert_int_equal(slimkv_masks_apply(m, -1, &c), SLIMKV_ERR_INVALID_ARG);
    assert_memory_equal(&c, &before, sizeof c);
    assert_int_equal(slimkv_masks_apply(NULL, 0, &c), SLIMKV_ERR_NULL_ARG);
    slimkv_masks_destroy(m);
    slimkv_masks_destroy(NULL);

    /* without V masks */
    assert_int_equal(slimkv_masks_save(path, L, H, D, k, NULL), SLIMKV_OK);
    assert_int_equal(slimkv_masks_load(path, &m), SLIMKV_OK);
    assert_int_equal(slimkv_masks_apply(m, 2, &c), SLIMKV_OK);
    assert_null(c.v_mask);
    slimkv_masks_destroy(m);

    /* bad arguments write nothing */
    k[5] = 2;
    assert_int_equal(slimkv_masks_save(path, L, H, D, k, NULL), SLIMKV_ERR_INVALID_ARG);
    assert_int_equal(slimkv_masks_save(path, 0, H, D, v, NULL), SLIMKV_ERR_INVALID_ARG);
    assert_int_equal(slimkv_masks_save(NULL, L, H, D, v, NULL), SLIMKV_ERR_NULL_ARG);
    assert_int_equal(slimkv_masks_load(path, &m), SLIMKV_OK); /* still the last good file */
    slimkv_masks_destroy(m);
    tmpdir_remove(&d);
}

/* Masks written by other tools: any numeric dtype with exact 0/1 values. */
static void test_mask_dtypes(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char path[300];
    tmpdir_file(&d, "m.safetensors", path, sizeof path);
    enum { N = 2 * 2 * 8 };
    float ones[N];
    for (int i = 0; i < N; i++)
        ones[i] = (float)(i % 2);
    uint8_t f32[N * 4], f16[N * 2], b[N];
    st_encode_f32(ST_F32, ones, N, f32);
    st_encode_f32(ST_F16, ones, N, f16);
    for (int i = 0; i < N; i++)
        b[i] = (uint8_t)(i % 2);
    const st_out good[] = {
        {.name = "k_mask", .dtype = ST_F32, .n_dims = 3, .shape = {2, 2, 8}, .data = f32},
        {.name = "k_mask", .dtype = ST_F16, .n_dims = 3, .shape = {2, 2, 8}, .data = f16},
        {.name = "k_mask", .dtype = ST_BOOL, .n_dims = 3, .shape = {2, 2, 8}, .data = b},
    };
    for (int i = 0; i < 3; i++) {
        assert_int_equal(st_write(path, &good[i], 1, NULL, 0), SLIMKV_OK);
        slimkv_masks *m;
        assert_int_equal(slimkv_masks_load(path, &m), SLIMKV_OK);
        slimkv_config c;
        slimkv_config_init(&c);
        c.n_kv_heads = 2;
        c.head_dim = 8;
        assert_int_equal(slimkv_masks_apply(m, 1, &c), SLIMKV_OK);
        assert_memory_equal(c.k_mask, b + 16, 16);
        slimkv_masks_destroy(m);
    }

    /* bad: a value 0.5, a NaN, a 2, an F8 dtype, a 2-D mask, a v_mask of another
     * shape, no k_mask */
    float half[N], nan_[N];
    memcpy(half, ones, sizeof half);
    memcpy(nan_, ones, sizeof nan_);
    half[3] = 0.5f;
    nan_[7] = NAN;
    uint8_t half_b[N * 4], nan_b[N * 4], two[N];
    st_encode_f32(ST_F32, half, N, half_b);
    st_encode_f32(ST_F32, nan_, N, nan_b);
    memcpy(two, b, N);
    two[9] = 2;
    /* values a float conversion would round to 0 or 1: F64 1 + 1 ulp, a
     * tiny F64, the smallest F32 subnormal */
    uint8_t ulp_b[N * 8], tiny_b[N * 8], sub_b[N * 4];
    for (int i = 0; i < N; i++) {
        double x = (double)(i % 2);
        memcpy(ulp_b + 8 * i, &x, 8);
        memcpy(tiny_b + 8 * i, &x, 8);
    }
    double one_ulp = nextafter(1.0, 2.0), tiny = 1e-300;
    memcpy(ulp_b + 8 * 5, &one_ulp, 8);
    memcpy(tiny_b + 8 * 4, &tiny, 8);
    memcpy(sub_b, f32, sizeof sub_b);
    uint32_t smallest = 1;
    memcpy(sub_b + 4 * 6, &smallest, 4);
    const st_out bad[][2] = {
        {{.name = "k_mask", .dtype = ST_F64, .n_dims = 3, .shape = {2, 2, 8}, .data = ulp_b}},
        {{.name = "k_mask", .dtype = ST_F64, .n_dims = 3, .shape = {2, 2, 8}, .data = tiny_b}},
        {{.name = "k_mask", .dtype = ST_F32, .n_dims = 3, .shape = {2, 2, 8}, .data = sub_b}},
        {{.name = "k_mask", .dtype = ST_F32, .n_dims = 3, .shape = {2, 2, 8}, .data = half_b}},
        {{.name = "k_mask", .dtype = ST_F32, .n_dims = 3, .shape = {2, 2, 8}, .data = nan_b}},
        {{.name = "k_mask", .dtype = ST_U8, .n_dims = 3, .shape = {2, 2, 8}, .data = two}},
        {{.name = "k_mask", .dtype = ST_F8_E4M3, .n_dims = 3, .shape = {2, 2, 8}, .data = b}},
        {{.name = "k_mask", .dtype = ST_U8, .n_dims = 2, .shape = {4, 8}, .data = b}},
        {{.name = "k_mask", .dtype = ST_U8, .n_dims = 3, .shape = {2, 2, 8}, .data = b},
         {.name = "v_mask", .dtype = ST_U8, .n_dims = 3, .shape = {2, 4, 4}, .data = b}},
        {{.name = "v_mask", .dtype = ST_U8, .n_dims = 3, .shape = {2, 2, 8}, .data = b}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(st_write(path, bad[i], bad[i][1].name ? 2 : 1, NULL, 0), SLIMKV_OK);
        expect_masks_refused(path, SLIMKV_ERR_FORMAT);
    }
    tmpdir_remove(&d);
}

/* Settings every plan test uses: q4 K / q2 V, G 32, R 64, 4 sinks, align 8. */
static slimkv_config plan_settings(int heads, int dim)
{
    slimkv_config s;
    slimkv_config_init(&s);
    s.n_kv_heads = heads;
    s.head_dim = dim;
    s.k_format = SLIMKV_Q4;
    s.v_format = SLIMKV_Q2;
    s.group_size = 32;
    s.residual = 64;
    s.n_sink = 4;
    s.channel_align = 8;
    return s;
}

static void test_plan_round_trip(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char path[300];
    tmpdir_file(&d, "plan.safetensors", path, sizeof path);
    enum { L = 3, H = 2, D = 32, NQ = 4, T = 300 };
    uint8_t k[L * H * D], v[L * H * D];
    fill_mask(k, sizeof k, 3);
    fill_mask(v, sizeof v, 4);
    memset(k + (2 * H + 1) * D, 0, D); /* layer 2, head 1 streams */
    slimkv_config s = plan_settings(H, D);
    slimkv_plan *plan;
    assert_int_equal(slimkv_plan_create(&s, L, k, v, &plan), SLIMKV_OK);
    assert_int_equal(slimkv_plan_save(path, plan), SLIMKV_OK);
    slimkv_plan_destroy(plan);
    slimkv_plan_destroy(NULL);

    assert_int_equal(slimkv_plan_load(path, &plan), SLIMKV_OK);
    int layers;
    assert_int_equal(slimkv_plan_layers(plan, &layers), SLIMKV_OK);
    assert_int_equal(layers, L);

    test_rng r;
    rng_seed(&r, 11);
    float *kk = malloc(sizeof(float) * T * H * D), *vv = malloc(sizeof(float) * T * H * D);
    float *q = malloc(sizeof(float) * 4 * NQ * D), *o1 = malloc(sizeof(float) * 4 * NQ * D);
    float *o2 = malloc(sizeof(float) * 4 * NQ * D);
    fill_keys(&r, kk, T, 0, H, D);
    fill_normal(&r, vv, (size_t)T * H * D, 1.0f);
    fill_normal(&r, q, (size_t)4 * NQ * D, 0.5f);
    for (int l = 0; l < L; l++) {
        slimkv_config c;
        slimkv_config_init(&c);
        c.n_q_heads = NQ;
        c.capacity = T;
        assert_int_equal(slimkv_plan_layer_config(plan, l, &c), SLIMKV_OK);
        assert_true(c.n_kv_heads == H && c.head_dim == D && c.k_format == SLIMKV_Q4 && c.v_format == SLIMKV_Q2);
        assert_true(c.group_size == 32 && c.residual == 64 && c.n_sink == 4 && c.channel_align == 8);
        assert_int_equal(c.policy, SLIMKV_POLICY_STATIC);
        assert_memory_equal(c.k_mask, k + l * H * D, H * D);
        assert_memory_equal(c.v_mask, v + l * H * D, H * D);
        /* the cache from the plan computes what the same masks given directly compute */
        slimkv_config direct = s;
        direct.n_q_heads = NQ;
        direct.capacity = T;
        direct.policy = SLIMKV_POLICY_STATIC;
        direct.k_mask = k + l * H * D;
        direct.v_mask = v + l * H * D;
        slimkv_cache *a, *b;
        assert_int_equal(slimkv_cache_create(&c, &a), SLIMKV_OK);
        assert_int_equal(slimkv_cache_create(&direct, &b), SLIMKV_OK);
        assert_int_equal(slimkv_cache_append(a, kk, vv, T), SLIMKV_OK);
        assert_int_equal(slimkv_cache_append(b, kk, vv, T), SLIMKV_OK);
        assert_int_equal(slimkv_attend(a, q, 4, o1), SLIMKV_OK);
        assert_int_equal(slimkv_attend(b, q, 4, o2), SLIMKV_OK);
        assert_memory_equal(o1, o2, sizeof(float) * 4 * NQ * D);
        int count;
        assert_int_equal(slimkv_cache_kept_channels(a, 1, 0, NULL, &count), SLIMKV_OK);
        assert_int_equal(count, l == 2 ? 0 : 24);
        slimkv_cache_destroy(a);
        slimkv_cache_destroy(b);
    }
    slimkv_config c, before;
    slimkv_config_init(&c);
    before = c;
    assert_int_equal(slimkv_plan_layer_config(plan, L, &c), SLIMKV_ERR_INVALID_ARG);
    assert_memory_equal(&c, &before, sizeof c);
    slimkv_plan_destroy(plan);

    /* a plan file is a masks file too */
    slimkv_masks *m;
    assert_int_equal(slimkv_masks_load(path, &m), SLIMKV_OK);
    slimkv_masks_destroy(m);

    /* V unpruned */
    assert_int_equal(slimkv_plan_create(&s, L, k, NULL, &plan), SLIMKV_OK);
    assert_int_equal(slimkv_plan_save(path, plan), SLIMKV_OK);
    slimkv_plan_destroy(plan);
    assert_int_equal(slimkv_plan_load(path, &plan), SLIMKV_OK);
    assert_int_equal(slimkv_plan_layer_config(plan, 0, &c), SLIMKV_OK);
    assert_null(c.v_mask);
    slimkv_plan_destroy(plan);

    /* settings that make no valid cache are refused at create */
    slimkv_plan *none = SENTINEL;
    s.group_size = 24;
    assert_int_equal(slimkv_plan_create(&s, L, k, v, &none), SLIMKV_ERR_INVALID_CONFIG);
    s = plan_settings(H, D);
    k[3] = 7;
    assert_int_equal(slimkv_plan_create(&s, L, k, v, &none), SLIMKV_ERR_INVALID_CONFIG);
    assert_int_equal(slimkv_plan_create(&s, 0, k, v, &none), SLIMKV_ERR_INVALID_CONFIG);
    /* layers x heads x head_dim past any size_t, refused before the masks
     * are read (with a 32-bit size_t, heads x head_dim = 2^60 wrapped to 0,
     * and the old check divided by it) */
    s.n_q_heads = s.n_kv_heads = 1 << 30;
    s.head_dim = 1 << 30;
    assert_int_equal(slimkv_plan_create(&s, 16, k, v, &none), SLIMKV_ERR_INVALID_CONFIG);
    assert_ptr_equal(none, SENTINEL);
    free(kk);
    free(vv);
    free(q);
    free(o1);
    free(o2);
    tmpdir_remove(&d);
}

/* Plans with one thing wrong in the metadata or tensors. */
static void test_plan_bad(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char path[300];
    tmpdir_file(&d, "plan.safetensors", path, sizeof path);
    uint8_t k[2 * 8];
    memset(k, 1, sizeof k);
    int32_t counts[2] = {8, 8}, wrong[2] = {8, 7};
    uint8_t c_ok[8], c_wrong[8];
    st_encode_i32(counts, 2, c_ok);
    st_encode_i32(wrong, 2, c_wrong);
    st_out t[2] = {
        {.name = "k_mask", .dtype = ST_U8, .n_dims = 3, .shape = {1, 2, 8}, .data = k},
        {.name = "k_kept", .dtype = ST_I32, .n_dims = 2, .shape = {1, 2}, .data = c_ok},
    };
    const char *keys[8] = {"format", "version", "k_format", "v_format", "group_size", "residual", "n_sink",
                           "channel_align"};
    const char *good[8] = {"slimkv-plan", "1", "q4", "f16", "32", "64", "0", "8"};
    st_meta meta[8];
    for (int i = 0; i < 8; i++)
        meta[i] = (st_meta){(char *)keys[i], (char *)good[i]};
    assert_int_equal(st_write(path, t, 2, meta, 8), SLIMKV_OK);
    slimkv_plan *p;
    assert_int_equal(slimkv_plan_load(path, &p), SLIMKV_OK); /* the control */
    slimkv_plan_destroy(p);

    const char *bad_values[8] = {"slimkv-masks", "2", "q5", "F16", "32x", "-64", "", "6"};
    for (int i = 0; i < 8; i++) { /* one bad value at a time, then the key missing */
        meta[i].value = (char *)bad_values[i];
        assert_int_equal(st_write(path, t, 2, meta, 8), SLIMKV_OK);
        p = SENTINEL;
        assert_int_equal(slimkv_plan_load(path, &p), SLIMKV_ERR_FORMAT);
        assert_ptr_equal(p, SENTINEL);
        meta[i].value = (char *)good[i];
        st_meta fewer[8];
        int n = 0;
        for (int j = 0; j < 8; j++)
            if (j != i)
                fewer[n++] = meta[j];
        assert_int_equal(st_write(path, t, 2, fewer, (size_t)n), SLIMKV_OK);
        assert_int_equal(slimkv_plan_load(path, &p), SLIMKV_ERR_FORMAT);
        assert_ptr_equal(p, SENTINEL);
    }
    /* an integer written with a leading zero */
    meta[4].value = "032";
    assert_int_equal(st_write(path, t, 2, meta, 8), SLIMKV_OK);
    p = SENTINEL;
    assert_int_equal(slimkv_plan_load(path, &p), SLIMKV_ERR_FORMAT);
    assert_ptr_equal(p, SENTINEL);
    meta[4].value = (char *)good[4];
    /* counts that disagree with the masks */
    t[1].data = c_wrong;
    assert_int_equal(st_write(path, t, 2, meta, 8), SLIMKV_OK);
    p = SENTINEL;
    assert_int_equal(slimkv_plan_load(path, &p), SLIMKV_ERR_FORMAT);
    assert_ptr_equal(p, SENTINEL);
    tmpdir_remove(&d);
}

static void test_atomic_write(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char target[300], src_path[300];
    tmpdir_file(&d, "target.safetensors", target, sizeof target);
    tmpdir_file(&d, "source.safetensors", src_path, sizeof src_path);
    uint8_t mask[2 * 64];
    fill_mask(mask, sizeof mask, 5);
    assert_int_equal(slimkv_masks_save(target, 1, 2, 64, mask, NULL), SLIMKV_OK);
    assert_int_equal(chmod(target, 0640), 0);
    uint8_t before[4096], after[4096];
    size_t n_before = read_bytes(target, before, sizeof before);

    /* 1. the data source fails half way (its file shrank after opening):
     * the target keeps its old bytes and no temporary file stays */
    static uint8_t big[1 << 21];
    st_out src_out = {.name = "big", .dtype = ST_U8, .n_dims = 1, .shape = {sizeof big}, .data = big};
    assert_int_equal(st_write(src_path, &src_out, 1, NULL, 0), SLIMKV_OK);
    st_file *src;
    assert_int_equal(st_open(src_path, &src), SLIMKV_OK);
    assert_int_equal(truncate(src_path, (off_t)(src->data_start + (1 << 20) + 100)), 0);
    st_out copy = {.name = "big", .dtype = ST_U8, .n_dims = 1, .shape = {sizeof big}, .src = src,
                   .src_tensor = st_find(src, "big")};
    assert_int_equal(st_write(target, &copy, 1, NULL, 0), SLIMKV_ERR_FORMAT);
    st_close(src);
    assert_int_equal(read_bytes(target, after, sizeof after), n_before);
    assert_memory_equal(before, after, n_before);
    assert_int_equal(tmpdir_count(&d), 2);

    /* 2. rename cannot replace a directory: IO error, directory intact */
    char dir_target[300];
    tmpdir_file(&d, "dir", dir_target, sizeof dir_target);
    assert_int_equal(mkdir(dir_target, 0755), 0);
    assert_int_equal(slimkv_masks_save(dir_target, 1, 2, 64, mask, NULL), SLIMKV_ERR_IO);
    struct stat sb;
    assert_int_equal(stat(dir_target, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(tmpdir_count(&d), 3);

    /* 3. no such directory: IO error */
    char nowhere[300];
    tmpdir_file(&d, "no/such/dir.safetensors", nowhere, sizeof nowhere);
    assert_int_equal(slimkv_masks_save(nowhere, 1, 2, 64, mask, NULL), SLIMKV_ERR_IO);
    assert_int_equal(tmpdir_count(&d), 3);

    /* 4. a successful replacement keeps the file's mode */
    mask[0] ^= 1;
    assert_int_equal(slimkv_masks_save(target, 1, 2, 64, mask, NULL), SLIMKV_OK);
    assert_int_equal(stat(target, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640);
    assert_int_equal(tmpdir_count(&d), 3);
    tmpdir_remove(&d);
}

/* An allocator that fails once `budget` allocations have succeeded and
 * counts what is live, to check that every failure frees what it took. */
typedef struct counting {
    int budget, live;
} counting;

static void *counting_malloc(size_t size, void *user)
{
    counting *c = user;
    if (c->budget-- <= 0)
        return NULL;
    c->live++;
    return malloc(size);
}

static void *counting_calloc(size_t count, size_t size, void *user)
{
    counting *c = user;
    if (c->budget-- <= 0)
        return NULL;
    c->live++;
    return calloc(count, size);
}

static void counting_free(void *ptr, void *user)
{
    ((counting *)user)->live--;
    free(ptr);
}

/* Loading and saving under every possible allocation failure: NOMEM, no
 * output, no leak, the target file intact; then success. */
static void test_allocation_failures(void **state)
{
    (void)state;
    tmpdir d;
    assert_int_equal(tmpdir_make(&d), 0);
    char path[300], copy[300];
    tmpdir_file(&d, "plan.safetensors", path, sizeof path);
    tmpdir_file(&d, "copy.safetensors", copy, sizeof copy);
    enum { L = 2, H = 2, D = 16 };
    uint8_t k[L * H * D], v[L * H * D];
    fill_mask(k, sizeof k, 6);
    fill_mask(v, sizeof v, 7);
    slimkv_config s = plan_settings(H, D);
    slimkv_plan *plan;
    assert_int_equal(slimkv_plan_create(&s, L, k, v, &plan), SLIMKV_OK);
    assert_int_equal(slimkv_plan_save(path, plan), SLIMKV_OK);
    assert_int_equal(slimkv_plan_save(copy, plan), SLIMKV_OK);
    uint8_t before[4096], after[4096];
    size_t n_before = read_bytes(copy, before, sizeof before);

    counting c;
    slimkv_allocator a = {counting_malloc, counting_calloc, counting_free, &c};
    int done_load = 0, done_save = 0;
    for (int budget = 0; budget < 200 && !(done_load && done_save); budget++) {
        assert_int_equal(slimkv_set_allocator(&a), SLIMKV_OK);
        c = (counting){budget, 0};
        slimkv_plan *loaded = SENTINEL;
        slimkv_status st = slimkv_plan_load(path, &loaded);
        if (st == SLIMKV_OK) {
            slimkv_plan_destroy(loaded);
            done_load = 1;
        } else {
            assert_int_equal(st, SLIMKV_ERR_NOMEM);
            assert_ptr_equal(loaded, SENTINEL);
        }
        assert_int_equal(c.live, 0);
        c = (counting){budget, 0};
        st = slimkv_plan_save(copy, plan);
        if (st == SLIMKV_OK) {
            done_save = 1;
        } else {
            assert_int_equal(st, SLIMKV_ERR_NOMEM);
            assert_int_equal(read_bytes(copy, after, sizeof after), n_before);
            assert_memory_equal(before, after, n_before);
            assert_int_equal(tmpdir_count(&d), 2);
        }
        assert_int_equal(c.live, 0);
        assert_int_equal(slimkv_set_allocator(NULL), SLIMKV_OK);
    }
    assert_true(done_load && done_save);
    slimkv_plan_destroy(plan);
    tmpdir_remove(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_file_shrinks_after_open),
        cmocka_unit_test(test_masks_round_trip),
        cmocka_unit_test(test_mask_dtypes),
        cmocka_unit_test(test_plan_round_trip),
        cmocka_unit_test(test_plan_bad),
        cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
