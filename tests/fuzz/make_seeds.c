/* Writes the fuzzers' seed corpus (checked in under tests/fuzz/corpus/):
 * small valid files of each kind, so fuzzing starts from deep inside the
 * readers. Usage: make_seeds DIR */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "slimkv.h"

static void check(slimkv_status st, const char *what)
{
    if (st != SLIMKV_OK) {
        fprintf(stderr, "make_seeds: %s: %s\n", what, slimkv_status_str(st));
        exit(1);
    }
}

static void path_in(char *buf, size_t n, const char *dir, const char *target, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, target);
    mkdir(buf, 0755);
    snprintf(buf, n, "%s/%s/%s", dir, target, name);
}

/* The same cache shape as fuzz_snapshot.c's target. */
static void snapshot_seeds(const char *dir)
{
    slimkv_config cfg;
    slimkv_config_init(&cfg);
    cfg.n_q_heads = 2;
    cfg.n_kv_heads = 1;
    cfg.head_dim = 16;
    cfg.capacity = 300;
    cfg.k_format = SLIMKV_Q4;
    cfg.v_format = SLIMKV_Q2;
    cfg.group_size = 16;
    cfg.residual = 16;
    cfg.n_sink = 1;
    cfg.isa = "scalar";
    const int counts[] = {0, 5, 100};
    float k[100 * 16], q[100 * 32], out[100 * 32];
    for (int i = 0; i < 100 * 16; i++)
        k[i] = (float)((i * 37) % 23) * 0.25f - 2.0f;
    for (int i = 0; i < 100 * 32; i++)
        q[i] = (float)((i * 11) % 7) * 0.1f;
    for (int i = 0; i < 3; i++) {
        slimkv_cache *c;
        check(slimkv_cache_create(&cfg, &c), "create");
        if (counts[i])
            check(slimkv_cache_prefill(c, q, k, k, counts[i], out), "prefill");
        char path[256], name[32];
        snprintf(name, sizeof name, "tokens-%d", counts[i]);
        path_in(path, sizeof path, dir, "fuzz_snapshot", name);
        check(slimkv_cache_save(c, path), "save");
        slimkv_cache_destroy(c);
    }
}

static void file_seeds(const char *dir)
{
    enum { LAYERS = 2, HEADS = 2, DIM = 8 };
    uint8_t k[LAYERS * HEADS * DIM], v[LAYERS * HEADS * DIM];
    for (int i = 0; i < LAYERS * HEADS * DIM; i++) {
        k[i] = i % 3 == 0;
        v[i] = i % 2;
    }
    char path[256];
    path_in(path, sizeof path, dir, "fuzz_files", "masks");
    check(slimkv_masks_save(path, LAYERS, HEADS, DIM, k, v), "masks");
    path_in(path, sizeof path, dir, "fuzz_files", "masks-k-only");
    check(slimkv_masks_save(path, LAYERS, HEADS, DIM, k, NULL), "masks");
    slimkv_config settings;
    slimkv_config_init(&settings);
    settings.n_q_heads = settings.n_kv_heads = HEADS;
    settings.head_dim = DIM;
    settings.capacity = 64;
    settings.channel_align = 4;
    slimkv_plan *plan;
    check(slimkv_plan_create(&settings, LAYERS, k, v, &plan), "plan");
    path_in(path, sizeof path, dir, "fuzz_files", "plan");
    check(slimkv_plan_save(path, plan), "plan save");
    slimkv_plan_destroy(plan);
}

/* ---- a small GGUF model file for fuzz_gguf --------------------------- */

typedef struct byte_buffer {
    uint8_t bytes[4096];
    size_t size;
} byte_buffer;

static void put_le(byte_buffer *b, uint64_t v, int n)
{
    if (b->size + (size_t)n > sizeof b->bytes)
        exit(1);
    for (int i = 0; i < n; i++)
        b->bytes[b->size++] = (uint8_t)(v >> (8 * i));
}

static void put_string(byte_buffer *b, const char *s)
{
    put_le(b, strlen(s), 8);
    for (const char *p = s; *p; p++)
        put_le(b, (uint8_t)*p, 1);
}

static void put_kv_string(byte_buffer *b, const char *key, const char *value)
{
    put_string(b, key);
    put_le(b, 8, 4); /* GGUF string */
    put_string(b, value);
}

static void put_kv_string_array(byte_buffer *b, const char *key, const char *const *values, int n)
{
    put_string(b, key);
    put_le(b, 9, 4); /* array */
    put_le(b, 8, 4); /* of strings */
    put_le(b, (uint64_t)n, 8);
    for (int i = 0; i < n; i++)
        put_string(b, values[i]);
}

static void pad_to(byte_buffer *b, size_t alignment)
{
    while (b->size % alignment)
        put_le(b, 0, 1);
}

/* A GGUF v3 file with a GPT-2 byte-level tokenizer (a few byte tokens in the
 * GPT-2 alphabet, where U+0120 is a space, merges, a control token) and one
 * tensor of each type slimkv-run's model code dequantizes. */
static void gguf_seed(const char *dir)
{
    static const char *const tokens[] = {
        "H", "e", "l", "o", ",", "\xc4\xa0", "w", "r", "d", "!", "1", "2", "3", "c", "a", "f",
        "\xc3\x83", "\xc2\xa9", "<|im_start|>", "ll", "He", "Hell", "Hello", "\xc4\xa0w", "12"};
    enum { N_TOKENS = sizeof tokens / sizeof *tokens, CONTROL_ID = 18 };
    static const char *const merges[] = {"l l", "H e", "He ll", "Hell o", "\xc4\xa0 w", "1 2"};
    /* name, ggml type, elements (one row), bytes */
    static const struct { const char *name; int type, elems, bytes; } tensors[] = {
        {"t.f32", 0, 4, 16}, {"t.f16", 1, 4, 8}, {"t.bf16", 30, 4, 8},
        {"t.q4_0", 2, 32, 18}, {"t.q4_1", 3, 32, 20}, {"t.q8_0", 8, 32, 34}};
    enum { N_TENSORS = sizeof tensors / sizeof *tensors };

    byte_buffer b = {.size = 0};
    put_le(&b, 0x46554747, 4); /* "GGUF" */
    put_le(&b, 3, 4);
    put_le(&b, N_TENSORS, 8);
    put_le(&b, 7, 8);
    put_kv_string(&b, "general.architecture", "llama");
    put_kv_string(&b, "tokenizer.ggml.model", "gpt2");
    put_kv_string(&b, "tokenizer.ggml.pre", "smollm");
    put_kv_string_array(&b, "tokenizer.ggml.tokens", tokens, N_TOKENS);
    put_kv_string_array(&b, "tokenizer.ggml.merges", merges, sizeof merges / sizeof *merges);
    put_string(&b, "tokenizer.ggml.token_type");
    put_le(&b, 9, 4);
    put_le(&b, 5, 4); /* array of int32 */
    put_le(&b, N_TOKENS, 8);
    for (int i = 0; i < N_TOKENS; i++)
        put_le(&b, i == CONTROL_ID ? 3 : 1, 4);
    put_string(&b, "tokenizer.ggml.bos_token_id");
    put_le(&b, 4, 4); /* uint32 */
    put_le(&b, CONTROL_ID, 4);

    uint64_t offset = 0;
    for (int i = 0; i < N_TENSORS; i++) {
        put_string(&b, tensors[i].name);
        put_le(&b, 1, 4);
        put_le(&b, (uint64_t)tensors[i].elems, 8);
        put_le(&b, (uint64_t)tensors[i].type, 4);
        put_le(&b, offset, 8);
        offset += ((uint64_t)tensors[i].bytes + 31) / 32 * 32;
    }
    pad_to(&b, 32);
    for (int i = 0; i < N_TENSORS; i++) {
        /* Small scales (f16 0x3000 = 0.125 in the block headers), varied codes. */
        for (int j = 0; j < tensors[i].bytes; j++)
            put_le(&b, j < 4 && tensors[i].type != 0 ? (j % 2 ? 0x30 : 0x00) : (uint8_t)(j * 29 + i), 1);
        pad_to(&b, 32);
    }
    char path[256];
    path_in(path, sizeof path, dir, "fuzz_gguf", "model");
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b.bytes, 1, b.size, f) != b.size)
        exit(1);
    fclose(f);
}

static void config_seeds(const char *dir)
{
    /* n_q, n_kv, dim, capacity, G, R, S, align, window, k, v, policy, ratio bits */
    const int32_t seeds[3][13] = {
        {8, 2, 64, 100, 32, 64, 0, 8, 32, 4, 4, 0, 0x3ecccccd},
        {4, 4, 16, 40, 16, 16, 2, 4, 8, 5, 3, 1, 0},
        {2, 1, 32, 90, 16, 32, 1, 8, 4, 3, 5, 3, 0x3f000000},
    };
    for (int i = 0; i < 3; i++) {
        char path[256], name[16];
        snprintf(name, sizeof name, "config-%d", i);
        path_in(path, sizeof path, dir, "fuzz_config", name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(seeds[i], sizeof seeds[i], 1, f) != 1)
            exit(1);
        fclose(f);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    mkdir(argv[1], 0755);
    snapshot_seeds(argv[1]);
    file_seeds(argv[1]);
    config_seeds(argv[1]);
    gguf_seed(argv[1]);
    return 0;
}
