/* GGUF reader: header, metadata key/values, tensor table, data alignment,
 * and dequantization of the common ggml block formats. See gguf.h. */
#include "gguf.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
/* Smallest encodings, used to bound counts by the bytes that remain before
 * anything is allocated for them: a key/value is a key length (8), a type
 * (4) and at least one value byte; a tensor info is a name length (8), a dim
 * count (4), one dim (8), a type (4) and an offset (8). */
#define MIN_KV_BYTES 13u
#define MIN_TENSOR_INFO_BYTES 32u
/* ggml had 40 tensor types when this was written; numbers from here on are
 * taken as corruption rather than as types of a newer ggml. */
#define GGML_TYPE_NUMBER_LIMIT 64u

/* ---- bounded little-endian cursor ---------------------------------- */

typedef struct cursor {
    const uint8_t *base;
    size_t size;
    size_t pos;
} cursor;

static size_t remaining(const cursor *c)
{
    return c->size - c->pos;
}

/* Advances over n bytes; NULL when fewer remain. */
static const uint8_t *take(cursor *c, uint64_t n)
{
    if (n > remaining(c))
        return NULL;
    const uint8_t *p = c->base + c->pos;
    c->pos += (size_t)n;
    return p;
}

static uint64_t load_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int read_u32(cursor *c, uint32_t *v)
{
    const uint8_t *p = take(c, 4);
    if (!p)
        return 0;
    *v = (uint32_t)load_le(p, 4);
    return 1;
}

static int read_u64(cursor *c, uint64_t *v)
{
    const uint8_t *p = take(c, 8);
    if (!p)
        return 0;
    *v = load_le(p, 8);
    return 1;
}

static int read_string(cursor *c, gguf_string *s)
{
    uint64_t len;
    if (!read_u64(c, &len))
        return 0;
    const uint8_t *p = take(c, len);
    if (!p)
        return 0;
    s->data = (const char *)p;
    s->len = len;
    return 1;
}

/* Byte size of a fixed-size metadata value type; 0 for string/array/unknown. */
static size_t scalar_size(uint32_t type)
{
    switch (type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

/* ---- tensor types -------------------------------------------------- */

typedef struct type_info {
    uint32_t type;
    const char *name;
    int block_elems, block_bytes;
    int dequantizable;
} type_info;

static const type_info type_table[] = {
    {GGML_TYPE_F32, "F32", 1, 4, 1},       {GGML_TYPE_F16, "F16", 1, 2, 1},
    {GGML_TYPE_Q4_0, "Q4_0", 32, 18, 1},   {GGML_TYPE_Q4_1, "Q4_1", 32, 20, 1},
    {GGML_TYPE_Q5_0, "Q5_0", 32, 22, 0},   {GGML_TYPE_Q5_1, "Q5_1", 32, 24, 0},
    {GGML_TYPE_Q8_0, "Q8_0", 32, 34, 1},   {GGML_TYPE_Q8_1, "Q8_1", 32, 36, 0},
    {GGML_TYPE_Q2_K, "Q2_K", 256, 84, 0},  {GGML_TYPE_Q3_K, "Q3_K", 256, 110, 0},
    {GGML_TYPE_Q4_K, "Q4_K", 256, 144, 0}, {GGML_TYPE_Q5_K, "Q5_K", 256, 176, 0},
    {GGML_TYPE_Q6_K, "Q6_K", 256, 210, 0}, {GGML_TYPE_Q8_K, "Q8_K", 256, 292, 0},
    {GGML_TYPE_I8, "I8", 1, 1, 0},         {GGML_TYPE_I16, "I16", 1, 2, 0},
    {GGML_TYPE_I32, "I32", 1, 4, 0},       {GGML_TYPE_I64, "I64", 1, 8, 0},
    {GGML_TYPE_F64, "F64", 1, 8, 0},       {GGML_TYPE_BF16, "BF16", 1, 2, 1},
};

static const type_info *find_type(uint32_t type)
{
    for (size_t i = 0; i < sizeof type_table / sizeof type_table[0]; i++)
        if (type_table[i].type == type)
            return &type_table[i];
    return NULL;
}

int gguf_type_block_elems(uint32_t type)
{
    const type_info *t = find_type(type);
    return t ? t->block_elems : 0;
}

int gguf_type_block_bytes(uint32_t type)
{
    const type_info *t = find_type(type);
    return t ? t->block_bytes : 0;
}

const char *gguf_type_name(uint32_t type)
{
    const type_info *t = find_type(type);
    return t ? t->name : "unknown";
}

int gguf_type_dequantizable(uint32_t type)
{
    const type_info *t = find_type(type);
    return t && t->dequantizable;
}

/* ---- parsing ------------------------------------------------------- */

void gguf_close(gguf_file *file)
{
    if (!file)
        return;
    if (file->kv)
        for (uint64_t i = 0; i < file->n_kv; i++)
            free(file->kv[i].array_strings);
    free(file->kv);
    free(file->tensors);
    free(file->bytes);
    free(file);
}

static slimkv_status parse_kv(cursor *c, gguf_kv *kv)
{
    uint32_t type;
    if (!read_string(c, &kv->key) || !read_u32(c, &type))
        return SLIMKV_ERR_FORMAT;
    if (type >= GGUF_TYPE_COUNT)
        return SLIMKV_ERR_FORMAT;
    kv->type = (gguf_value_type)type;
    kv->value = c->base + c->pos;
    if (type == GGUF_TYPE_STRING) {
        gguf_string s;
        return read_string(c, &s) ? SLIMKV_OK : SLIMKV_ERR_FORMAT;
    }
    if (type != GGUF_TYPE_ARRAY)
        return take(c, scalar_size(type)) ? SLIMKV_OK : SLIMKV_ERR_FORMAT;

    uint32_t elem_type;
    uint64_t count;
    if (!read_u32(c, &elem_type) || !read_u64(c, &count))
        return SLIMKV_ERR_FORMAT;
    if (elem_type == GGUF_TYPE_ARRAY)
        return SLIMKV_ERR_UNSUPPORTED; /* legal in the spec, used by no model we read */
    if (elem_type >= GGUF_TYPE_COUNT)
        return SLIMKV_ERR_FORMAT;
    kv->array_type = (gguf_value_type)elem_type;
    kv->array_count = count;
    kv->value = c->base + c->pos;
    if (elem_type != GGUF_TYPE_STRING) {
        size_t elem = scalar_size(elem_type);
        if (count > remaining(c) / elem)
            return SLIMKV_ERR_FORMAT;
        take(c, count * elem);
        return SLIMKV_OK;
    }
    /* Each string needs at least its 8-byte length: bound the count first. */
    if (count > remaining(c) / 8)
        return SLIMKV_ERR_FORMAT;
    kv->array_strings = malloc((size_t)(count ? count : 1) * sizeof(gguf_string));
    if (!kv->array_strings)
        return SLIMKV_ERR_NOMEM;
    for (uint64_t i = 0; i < count; i++)
        if (!read_string(c, &kv->array_strings[i]))
            return SLIMKV_ERR_FORMAT;
    return SLIMKV_OK;
}

/* offset: relative to the data section, resolved by the caller. */
static slimkv_status parse_tensor_info(cursor *c, gguf_tensor *t, uint64_t *offset)
{
    uint32_t n_dims, type;
    if (!read_string(c, &t->name) || !read_u32(c, &n_dims))
        return SLIMKV_ERR_FORMAT;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return SLIMKV_ERR_FORMAT;
    t->n_dims = (int)n_dims;
    uint64_t n_elements = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t->dims[d] = 1;
        if (d >= t->n_dims)
            continue;
        if (!read_u64(c, &t->dims[d]) || t->dims[d] == 0 || t->dims[d] > (uint64_t)INT64_MAX)
            return SLIMKV_ERR_FORMAT;
        if (n_elements > (uint64_t)INT64_MAX / t->dims[d])
            return SLIMKV_ERR_FORMAT;
        n_elements *= t->dims[d];
    }
    t->n_elements = n_elements;
    if (!read_u32(c, &type))
        return SLIMKV_ERR_FORMAT;
    const type_info *info = find_type(type);
    /* A type number ggml could have assigned (its list grows) is a file this
     * reader cannot size; a wild one is a corrupt file. */
    if (!info)
        return type < GGML_TYPE_NUMBER_LIMIT ? SLIMKV_ERR_UNSUPPORTED : SLIMKV_ERR_FORMAT;
    t->type = (gguf_tensor_type)type;
    /* Rows are quantized in whole blocks along dims[0]. */
    if (t->dims[0] % (uint64_t)info->block_elems != 0)
        return SLIMKV_ERR_FORMAT;
    uint64_t blocks = n_elements / (uint64_t)info->block_elems;
    if (blocks > UINT64_MAX / (uint64_t)info->block_bytes)
        return SLIMKV_ERR_FORMAT;
    t->n_bytes = blocks * (uint64_t)info->block_bytes;
    return read_u64(c, offset) ? SLIMKV_OK : SLIMKV_ERR_FORMAT;
}

static int string_equals(gguf_string s, const char *z)
{
    size_t n = strlen(z);
    return s.len == n && memcmp(s.data, z, n) == 0;
}

/* The tensor-info offsets are relative to the data section, which starts at
 * the first multiple of the alignment after the tensor table. */
static slimkv_status place_tensors(gguf_file *f, size_t table_end, const uint64_t *offsets)
{
    uint64_t align = f->alignment;
    uint64_t data_start = ((uint64_t)table_end + align - 1) / align * align;
    if (f->n_tensors == 0)
        return SLIMKV_OK;
    if (data_start > f->size)
        return SLIMKV_ERR_FORMAT;
    uint64_t data_size = f->size - data_start;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (offsets[i] % align != 0 || offsets[i] > data_size || t->n_bytes > data_size - offsets[i])
            return SLIMKV_ERR_FORMAT;
        t->data = f->bytes + data_start + offsets[i];
    }
    return SLIMKV_OK;
}

static slimkv_status parse_all(gguf_file *f)
{
    cursor c = {f->bytes, f->size, 0};
    const uint8_t *magic = take(&c, 4);
    if (!magic || memcmp(magic, GGUF_MAGIC, 4) != 0)
        return SLIMKV_ERR_FORMAT;
    /* Version 1 used 32-bit counts and lengths; it is long obsolete. */
    if (!read_u32(&c, &f->version) || (f->version != 2 && f->version != 3))
        return SLIMKV_ERR_FORMAT;
    uint64_t n_tensors, n_kv;
    if (!read_u64(&c, &n_tensors) || !read_u64(&c, &n_kv))
        return SLIMKV_ERR_FORMAT;
    /* Bound both counts by the bytes left before allocating for them. */
    if (n_kv > remaining(&c) / MIN_KV_BYTES || n_tensors > remaining(&c) / MIN_TENSOR_INFO_BYTES)
        return SLIMKV_ERR_FORMAT;
    f->kv = calloc((size_t)(n_kv ? n_kv : 1), sizeof(gguf_kv));
    f->tensors = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof(gguf_tensor));
    if (!f->kv || !f->tensors)
        return SLIMKV_ERR_NOMEM;
    for (uint64_t i = 0; i < n_kv; i++) {
        slimkv_status st = parse_kv(&c, &f->kv[i]);
        f->n_kv = i + 1; /* so that gguf_close frees what this one allocated */
        if (st != SLIMKV_OK)
            return st;
    }
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *align_kv = gguf_find_kv(f, "general.alignment");
    if (align_kv) {
        if (align_kv->type != GGUF_TYPE_UINT32)
            return SLIMKV_ERR_FORMAT;
        f->alignment = (uint32_t)load_le(align_kv->value, 4);
        if (f->alignment == 0 || (f->alignment & (f->alignment - 1)) != 0)
            return SLIMKV_ERR_FORMAT;
    }
    uint64_t *offsets = malloc((size_t)(n_tensors ? n_tensors : 1) * sizeof(uint64_t));
    if (!offsets)
        return SLIMKV_ERR_NOMEM;
    slimkv_status st = SLIMKV_OK;
    for (uint64_t i = 0; i < n_tensors && st == SLIMKV_OK; i++)
        st = parse_tensor_info(&c, &f->tensors[i], &offsets[i]);
    if (st == SLIMKV_OK) {
        f->n_tensors = n_tensors;
        st = place_tensors(f, c.pos, offsets);
    }
    free(offsets);
    return st;
}

slimkv_status gguf_parse(uint8_t *bytes, size_t size, gguf_file **out)
{
    if (!out) {
        free(bytes);
        return SLIMKV_ERR_NULL_ARG;
    }
    *out = NULL;
    if (!bytes)
        return SLIMKV_ERR_NULL_ARG;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        free(bytes);
        return SLIMKV_ERR_NOMEM;
    }
    f->bytes = bytes;
    f->size = size;
    slimkv_status st = parse_all(f);
    if (st != SLIMKV_OK) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return SLIMKV_OK;
}

slimkv_status gguf_open(const char *path, gguf_file **out)
{
    if (!path || !out)
        return SLIMKV_ERR_NULL_ARG;
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return SLIMKV_ERR_IO;
    slimkv_status st = SLIMKV_ERR_IO;
    uint8_t *bytes = NULL;
    long size = -1;
    struct stat info;
    /* Only a regular file has a size to trust (a directory opens fine). */
    if (fstat(fileno(fp), &info) == 0 && S_ISREG(info.st_mode) && fseek(fp, 0, SEEK_END) == 0)
        size = ftell(fp);
    if (size >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
        /* One spare byte so that an empty file still gets a buffer. */
        bytes = malloc((size_t)size + 1);
        if (!bytes)
            st = SLIMKV_ERR_NOMEM;
        else if (fread(bytes, 1, (size_t)size, fp) == (size_t)size)
            st = SLIMKV_OK;
    }
    fclose(fp);
    if (st != SLIMKV_OK) {
        free(bytes);
        return st;
    }
    return gguf_parse(bytes, (size_t)size, out);
}

const gguf_kv *gguf_find_kv(const gguf_file *file, const char *key)
{
    for (uint64_t i = 0; i < file->n_kv; i++)
        if (string_equals(file->kv[i].key, key))
            return &file->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *file, const char *name)
{
    for (uint64_t i = 0; i < file->n_tensors; i++)
        if (string_equals(file->tensors[i].name, name))
            return &file->tensors[i];
    return NULL;
}

/* An integer of any metadata integer type, sign-extended. */
static int load_int(gguf_value_type type, const uint8_t *p, int64_t *v)
{
    switch (type) {
    case GGUF_TYPE_UINT8: *v = p[0]; return 1;
    case GGUF_TYPE_INT8: *v = (int8_t)p[0]; return 1;
    case GGUF_TYPE_UINT16: *v = (uint16_t)load_le(p, 2); return 1;
    case GGUF_TYPE_INT16: *v = (int16_t)(uint16_t)load_le(p, 2); return 1;
    case GGUF_TYPE_UINT32: *v = (uint32_t)load_le(p, 4); return 1;
    case GGUF_TYPE_INT32: *v = (int32_t)(uint32_t)load_le(p, 4); return 1;
    case GGUF_TYPE_INT64: *v = (int64_t)load_le(p, 8); return 1;
    case GGUF_TYPE_UINT64: {
        uint64_t u = load_le(p, 8);
        if (u > (uint64_t)INT64_MAX)
            return 0;
        *v = (int64_t)u;
        return 1;
    }
    default: return 0;
    }
}

slimkv_status gguf_array_int(const gguf_kv *kv, uint64_t i, int64_t *value)
{
    if (!kv || !value)
        return SLIMKV_ERR_NULL_ARG;
    size_t elem = scalar_size(kv->array_type);
    if (kv->type != GGUF_TYPE_ARRAY || i >= kv->array_count || elem == 0)
        return SLIMKV_ERR_FORMAT;
    return load_int(kv->array_type, kv->value + i * elem, value) ? SLIMKV_OK : SLIMKV_ERR_FORMAT;
}

slimkv_status gguf_get_u32(const gguf_file *file, const char *key, uint32_t *value)
{
    const gguf_kv *kv = gguf_find_kv(file, key);
    int64_t v;
    if (!kv || !load_int(kv->type, kv->value, &v) || v < 0 || v > (int64_t)UINT32_MAX)
        return SLIMKV_ERR_FORMAT;
    *value = (uint32_t)v;
    return SLIMKV_OK;
}

slimkv_status gguf_get_f32(const gguf_file *file, const char *key, float *value)
{
    const gguf_kv *kv = gguf_find_kv(file, key);
    if (!kv)
        return SLIMKV_ERR_FORMAT;
    if (kv->type == GGUF_TYPE_FLOAT32) {
        uint32_t bits = (uint32_t)load_le(kv->value, 4);
        memcpy(value, &bits, sizeof *value);
    } else if (kv->type == GGUF_TYPE_FLOAT64) {
        uint64_t bits = load_le(kv->value, 8);
        double d;
        memcpy(&d, &bits, sizeof d);
        *value = (float)d;
    } else {
        return SLIMKV_ERR_FORMAT;
    }
    return SLIMKV_OK;
}

slimkv_status gguf_get_bool(const gguf_file *file, const char *key, int *value)
{
    const gguf_kv *kv = gguf_find_kv(file, key);
    if (!kv || kv->type != GGUF_TYPE_BOOL)
        return SLIMKV_ERR_FORMAT;
    *value = kv->value[0] != 0;
    return SLIMKV_OK;
}

slimkv_status gguf_get_string(const gguf_file *file, const char *key, gguf_string *value)
{
    const gguf_kv *kv = gguf_find_kv(file, key);
    if (!kv || kv->type != GGUF_TYPE_STRING)
        return SLIMKV_ERR_FORMAT;
    cursor c = {kv->value, 8 + (size_t)load_le(kv->value, 8), 0};
    return read_string(&c, value) ? SLIMKV_OK : SLIMKV_ERR_FORMAT;
}

/* ---- dequantization ------------------------------------------------ */

float gguf_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    int exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13); /* inf / nan */
    } else if (exponent != 0) {
        bits = sign | ((uint32_t)(exponent + 112) << 23) | (mantissa << 13);
    } else {
        /* zero or subnormal: exact as a float product */
        float f = ldexpf((float)mantissa, -24);
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float gguf_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float load_f16(const uint8_t *p)
{
    return gguf_f16_to_f32((uint16_t)load_le(p, 2));
}

/* Q4_0: f16 scale d, 16 bytes of nibbles; low nibbles are elements 0..15,
 * high nibbles 16..31; x = (q - 8) * d. */
static void dequant_q4_0(const uint8_t *block, float *x)
{
    float d = load_f16(block);
    const uint8_t *qs = block + 2;
    for (int j = 0; j < 16; j++) {
        x[j] = (float)((qs[j] & 0x0f) - 8) * d;
        x[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

/* Q4_1: f16 scale d and minimum m, then nibbles as Q4_0; x = q * d + m. */
static void dequant_q4_1(const uint8_t *block, float *x)
{
    float d = load_f16(block), m = load_f16(block + 2);
    const uint8_t *qs = block + 4;
    for (int j = 0; j < 16; j++) {
        x[j] = (float)(qs[j] & 0x0f) * d + m;
        x[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

/* Q8_0: f16 scale d, 32 signed bytes; x = q * d. */
static void dequant_q8_0(const uint8_t *block, float *x)
{
    float d = load_f16(block);
    for (int j = 0; j < 32; j++)
        x[j] = (float)(int8_t)block[2 + j] * d;
}

slimkv_status gguf_dequantize(const gguf_tensor *tensor, float *dst)
{
    if (!tensor || !dst)
        return SLIMKV_ERR_NULL_ARG;
    const type_info *info = find_type(tensor->type);
    if (!info || !info->dequantizable)
        return SLIMKV_ERR_UNSUPPORTED;
    uint64_t blocks = tensor->n_elements / (uint64_t)info->block_elems;
    const uint8_t *src = tensor->data;
    /* Blocks are independent: split them over threads for large tensors. */
#pragma omp parallel for schedule(static) if (blocks > 65536)
    for (int64_t b = 0; b < (int64_t)blocks; b++) {
        const uint8_t *block = src + (uint64_t)b * (uint64_t)info->block_bytes;
        float *x = dst + (uint64_t)b * (uint64_t)info->block_elems;
        switch (tensor->type) {
        case GGML_TYPE_F32: {
            uint32_t bits = (uint32_t)load_le(block, 4);
            memcpy(x, &bits, sizeof *x);
            break;
        }
        case GGML_TYPE_F16: x[0] = load_f16(block); break;
        case GGML_TYPE_BF16: x[0] = gguf_bf16_to_f32((uint16_t)load_le(block, 2)); break;
        case GGML_TYPE_Q4_0: dequant_q4_0(block, x); break;
        case GGML_TYPE_Q4_1: dequant_q4_1(block, x); break;
        case GGML_TYPE_Q8_0: dequant_q8_0(block, x); break;
        default: break; /* excluded by `dequantizable` above */
        }
    }
    return SLIMKV_OK;
}
