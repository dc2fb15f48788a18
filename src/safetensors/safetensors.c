/* safetensors: the checked reader and the atomic writer (see safetensors.h). */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "internal.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_I64] = {"I64", 8},   [ST_U64] = {"U64", 8},
    [ST_F64] = {"F64", 8},
};

/* JSON numbers are doubles: integers are exact only up to 2^53. */
#define MAX_JSON_INT 9007199254740992.0

const char *st_dtype_name(st_dtype dtype)
{
    return (unsigned)dtype < ST_DTYPE_COUNT ? dtype_info[dtype].name : "?";
}

size_t st_dtype_size(st_dtype dtype)
{
    return (unsigned)dtype < ST_DTYPE_COUNT ? dtype_info[dtype].size : 0;
}

int st_dtype_is_float(st_dtype dtype)
{
    return dtype == ST_F16 || dtype == ST_BF16 || dtype == ST_F32 || dtype == ST_F64;
}

/* n bytes of text (n <= strlen) as a string, through the library's allocator. */
static char *copy_string(const char *text, size_t n)
{
    char *s = slimkv_malloc(n + 1);
    if (s) {
        memcpy(s, text, n);
        s[n] = 0;
    }
    return s;
}

static uint64_t load_le(const uint8_t *p, int bytes)
{
    uint64_t x = 0;
    for (int i = bytes - 1; i >= 0; i--)
        x = x << 8 | p[i];
    return x;
}

static void store_le(uint8_t *p, uint64_t x, int bytes)
{
    for (int i = 0; i < bytes; i++, x >>= 8)
        p[i] = (uint8_t)x;
}

/* pread until n bytes arrive: a short file is malformed, a failing call is I/O. */
static slimkv_status read_at(int fd, uint64_t offset, void *dst, size_t n)
{
    uint8_t *p = dst;
    while (n > 0) {
        ssize_t got = pread(fd, p, n, (off_t)offset);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return SLIMKV_ERR_IO;
        }
        if (got == 0)
            return SLIMKV_ERR_FORMAT;
        p += got;
        n -= (size_t)got;
        offset += (uint64_t)got;
    }
    return SLIMKV_OK;
}

static slimkv_status write_all(int fd, const void *src, size_t n)
{
    const uint8_t *p = src;
    while (n > 0) {
        ssize_t put = write(fd, p, n);
        if (put < 0) {
            if (errno == EINTR)
                continue;
            return SLIMKV_ERR_IO;
        }
        p += put;
        n -= (size_t)put;
    }
    return SLIMKV_OK;
}

void st_close(st_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_tensors; i++)
        slimkv_free(f->tensors[i].name);
    for (size_t i = 0; i < f->n_meta; i++) {
        slimkv_free(f->meta[i].key);
        slimkv_free(f->meta[i].value);
    }
    slimkv_free(f->tensors);
    slimkv_free(f->meta);
    if (f->fd >= 0)
        close(f->fd);
    slimkv_free(f);
}

/* A JSON number that is a non-negative integer a double holds exactly. */
static int json_uint(const cJSON *item, uint64_t *value)
{
    if (!cJSON_IsNumber(item))
        return 0;
    double d = item->valuedouble;
    if (!isfinite(d) || d < 0 || d > MAX_JSON_INT || d != floor(d))
        return 0;
    *value = (uint64_t)d;
    return 1;
}

static int parse_dtype(const cJSON *item, st_dtype *dtype)
{
    if (!cJSON_IsString(item))
        return 0;
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(item->valuestring, dtype_info[i].name) == 0) {
            *dtype = (st_dtype)i;
            return 1;
        }
    return 0;
}

static slimkv_status parse_tensor(const cJSON *entry, st_tensor *t)
{
    if (!cJSON_IsObject(entry) || !parse_dtype(cJSON_GetObjectItemCaseSensitive(entry, "dtype"), &t->dtype))
        return SLIMKV_ERR_FORMAT;
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsArray(shape) || !cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
        return SLIMKV_ERR_FORMAT;
    int n_dims = cJSON_GetArraySize(shape);
    if (n_dims > ST_MAX_DIMS)
        return SLIMKV_ERR_FORMAT;
    uint64_t elems = 1, dim, begin, end, bytes;
    t->n_dims = 0;
    for (const cJSON *d = shape->child; d; d = d->next) {
        if (!json_uint(d, &dim) || __builtin_mul_overflow(elems, dim, &elems))
            return SLIMKV_ERR_FORMAT;
        t->shape[t->n_dims++] = (int64_t)dim;
    }
    if (!json_uint(offsets->child, &begin) || !json_uint(offsets->child->next, &end) || begin > end)
        return SLIMKV_ERR_FORMAT;
    if (__builtin_mul_overflow(elems, (uint64_t)dtype_info[t->dtype].size, &bytes) || bytes != end - begin ||
        elems > SIZE_MAX / 8)
        return SLIMKV_ERR_FORMAT;
    t->n_elems = (size_t)elems;
    t->offset = begin;
    t->n_bytes = bytes;
    return SLIMKV_OK;
}

static slimkv_status parse_metadata(const cJSON *obj, st_file *f)
{
    if (!cJSON_IsObject(obj) || f->meta)
        return SLIMKV_ERR_FORMAT; /* not an object, or a second __metadata__ */
    size_t n = (size_t)cJSON_GetArraySize(obj);
    f->meta = slimkv_calloc(n ? n : 1, sizeof *f->meta);
    if (!f->meta)
        return SLIMKV_ERR_NOMEM;
    for (const cJSON *item = obj->child; item; item = item->next) {
        if (!cJSON_IsString(item))
            return SLIMKV_ERR_FORMAT;
        st_meta *m = &f->meta[f->n_meta++];
        m->key = copy_string(item->string, strlen(item->string));
        m->value = copy_string(item->valuestring, strlen(item->valuestring));
        if (!m->key || !m->value)
            return SLIMKV_ERR_NOMEM;
    }
    return SLIMKV_OK;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_range(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

/* Names unique; byte ranges tile [0, data_size) exactly. */
static slimkv_status check_layout(st_file *f)
{
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_name);
    for (size_t i = 1; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
            return SLIMKV_ERR_FORMAT;
    const st_tensor **by_range = slimkv_malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *by_range);
    if (!by_range)
        return SLIMKV_ERR_NOMEM;
    for (size_t i = 0; i < f->n_tensors; i++)
        by_range[i] = &f->tensors[i];
    qsort(by_range, f->n_tensors, sizeof *by_range, cmp_range);
    uint64_t next = 0;
    slimkv_status st = SLIMKV_OK;
    for (size_t i = 0; i < f->n_tensors && st == SLIMKV_OK; i++) {
        if (by_range[i]->offset != next)
            st = SLIMKV_ERR_FORMAT;
        next = by_range[i]->offset + by_range[i]->n_bytes;
    }
    if (next != f->data_size)
        st = SLIMKV_ERR_FORMAT;
    slimkv_free(by_range);
    return st;
}

/* Length of the UTF-8 sequence at p (at most n bytes), 0 when it is not
 * well-formed: no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_length(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    static const uint32_t smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < smallest[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static int hex4(const unsigned char *p, unsigned *value)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return 0;
        v = v * 16 + (unsigned)d;
    }
    *value = v;
    return 1;
}

/* The header's text is stricter than JSON allows, as the documented shape
 * needs: numbers are plain non-negative integers (no sign, fraction,
 * exponent or leading zero: "2.0" and "032" are refused), no literals,
 * strings are well-formed UTF-8 with no NUL (raw or \u0000) and no unpaired
 * surrogate escape, and the padding after the object is spaces. cJSON then
 * parses what passed. */
static int header_text_strict(const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        if (c == '"') {
            for (p++;; ) {
                if (p >= end)
                    return 0;
                c = *p;
                if (c == '"') {
                    p++;
                    break;
                }
                if (c < 0x20) /* control bytes, NUL among them */
                    return 0;
                if (c == '\\') {
                    if (p + 1 >= end)
                        return 0;
                    unsigned e = p[1], u, lo;
                    if (e == 'u') {
                        if (end - p < 6 || !hex4(p + 2, &u) || u == 0 || (u >= 0xdc00 && u <= 0xdfff))
                            return 0;
                        p += 6;
                        if (u >= 0xd800 && u <= 0xdbff) { /* a high surrogate needs its low half */
                            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &lo) || lo < 0xdc00 ||
                                lo > 0xdfff)
                                return 0;
                            p += 6;
                        }
                        continue;
                    }
                    if (!strchr("\"\\/bfnrt", (int)e) || e == 0)
                        return 0;
                    p += 2;
                    continue;
                }
                size_t n = utf8_length(p, (size_t)(end - p));
                if (n == 0)
                    return 0;
                p += n;
            }
            continue;
        }
        if (c >= '0' && c <= '9') {
            if (c == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9')
                return 0; /* leading zero */
            while (p < end && *p >= '0' && *p <= '9')
                p++;
            continue;
        }
        if (!strchr("{}[]:, \t\r\n", (int)c) || c == 0)
            return 0;
        p++;
    }
    return 1;
}

static slimkv_status parse_header(const char *text, size_t len, st_file *f)
{
    if (!header_text_strict(text, len))
        return SLIMKV_ERR_FORMAT;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root)
        return SLIMKV_ERR_FORMAT; /* invalid JSON (or out of memory, indistinguishable here) */
    slimkv_status st = SLIMKV_OK;
    for (const char *p = end; p < text + len; p++) /* writers pad the header with spaces */
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
            st = SLIMKV_ERR_FORMAT;
    if (st == SLIMKV_OK && !cJSON_IsObject(root))
        st = SLIMKV_ERR_FORMAT;
    size_t n = st == SLIMKV_OK ? (size_t)cJSON_GetArraySize(root) : 0;
    if (st == SLIMKV_OK && !(f->tensors = slimkv_calloc(n ? n : 1, sizeof *f->tensors)))
        st = SLIMKV_ERR_NOMEM;
    for (const cJSON *item = st == SLIMKV_OK ? root->child : NULL; item && st == SLIMKV_OK; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            st = parse_metadata(item, f);
            continue;
        }
        st_tensor *t = &f->tensors[f->n_tensors];
        if (!(t->name = copy_string(item->string, strlen(item->string)))) {
            st = SLIMKV_ERR_NOMEM;
            break;
        }
        f->n_tensors++;
        st = parse_tensor(item, t);
    }
    cJSON_Delete(root);
    return st == SLIMKV_OK ? check_layout(f) : st;
}

slimkv_status st_open(const char *path, st_file **out)
{
    if (!path || !out)
        return SLIMKV_ERR_NULL_ARG;
    st_file *f = slimkv_calloc(1, sizeof *f);
    if (!f)
        return SLIMKV_ERR_NOMEM;
    /* O_NONBLOCK: a FIFO must not block the open; it is refused below. */
    f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat sb;
    if (f->fd < 0 || fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st_close(f);
        return SLIMKV_ERR_IO;
    }
    uint64_t file_size = (uint64_t)sb.st_size;
    uint8_t len_bytes[8];
    char *header = NULL;
    slimkv_status st = file_size < 8 ? SLIMKV_ERR_FORMAT : read_at(f->fd, 0, len_bytes, 8);
    if (st == SLIMKV_OK) {
        uint64_t len = load_le(len_bytes, 8);
        if (len < 2 || len > ST_MAX_HEADER_BYTES || len > file_size - 8)
            st = SLIMKV_ERR_FORMAT;
        else if (!(header = slimkv_malloc((size_t)len)))
            st = SLIMKV_ERR_NOMEM;
        else
            st = read_at(f->fd, 8, header, (size_t)len);
        if (st == SLIMKV_OK) {
            f->data_start = 8 + len;
            f->data_size = file_size - 8 - len;
            st = parse_header(header, (size_t)len, f);
        }
    }
    slimkv_free(header);
    if (st != SLIMKV_OK) {
        st_close(f);
        return st;
    }
    *out = f;
    return SLIMKV_OK;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    st_tensor key = {.name = (char *)name};
    return f->n_tensors ? bsearch(&key, f->tensors, f->n_tensors, sizeof key, cmp_name) : NULL;
}

const char *st_meta_get(const st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    return NULL;
}

int st_shape_is(const st_tensor *t, int n_dims, const int64_t *shape)
{
    if (t->n_dims != n_dims)
        return 0;
    for (int i = 0; i < n_dims; i++)
        if (t->shape[i] != shape[i])
            return 0;
    return 1;
}

slimkv_status st_read_bytes(const st_file *f, const st_tensor *t, uint64_t offset, size_t n, void *dst)
{
    if (offset > t->n_bytes || n > t->n_bytes - offset)
        return SLIMKV_ERR_INVALID_ARG;
    return read_at(f->fd, f->data_start + t->offset + offset, dst, n);
}

static float decode_one(st_dtype dtype, const uint8_t *p)
{
    uint64_t x = load_le(p, (int)dtype_info[dtype].size);
    switch (dtype) {
    case ST_F16: return slimkv_f16_to_f32((uint16_t)x);
    case ST_BF16: return slimkv_bf16_to_f32((uint16_t)x);
    case ST_F32: {
        uint32_t u = (uint32_t)x;
        float v;
        memcpy(&v, &u, sizeof v);
        return v;
    }
    case ST_F64: {
        double v;
        memcpy(&v, &x, sizeof v);
        return (float)v;
    }
    case ST_I8: return (float)(int8_t)x;
    case ST_I16: return (float)(int16_t)x;
    case ST_I32: return (float)(int32_t)x;
    case ST_I64: return (float)(int64_t)x;
    default: return (float)x; /* BOOL, U8, U16, U32, U64 */
    }
}

slimkv_status st_read_f32(const st_file *f, const st_tensor *t, float *dst)
{
    if (t->dtype == ST_F8_E5M2 || t->dtype == ST_F8_E4M3)
        return SLIMKV_ERR_FORMAT;
    size_t size = dtype_info[t->dtype].size, chunk = 1 << 16; /* bytes, a multiple of every size */
    uint8_t *buf = slimkv_malloc(chunk);
    if (!buf)
        return SLIMKV_ERR_NOMEM;
    slimkv_status st = SLIMKV_OK;
    for (uint64_t done = 0; done < t->n_bytes && st == SLIMKV_OK; done += chunk) {
        size_t n = t->n_bytes - done < chunk ? (size_t)(t->n_bytes - done) : chunk;
        st = st_read_bytes(f, t, done, n, buf);
        for (size_t i = 0; st == SLIMKV_OK && i < n / size; i++)
            dst[done / size + i] = decode_one(t->dtype, buf + i * size);
    }
    slimkv_free(buf);
    return st;
}

void st_encode_f32(st_dtype dtype, const float *src, size_t n, void *dst)
{
    uint8_t *p = dst;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        switch (dtype) {
        case ST_F16: store_le(p + 2 * i, slimkv_f32_to_f16(src[i]), 2); break;
        case ST_BF16: store_le(p + 2 * i, slimkv_f32_to_bf16(src[i]), 2); break;
        default:
            memcpy(&u, &src[i], sizeof u);
            store_le(p + 4 * i, u, 4);
        }
    }
}

void st_encode_i32(const int32_t *src, size_t n, void *dst)
{
    for (size_t i = 0; i < n; i++)
        store_le((uint8_t *)dst + 4 * i, (uint32_t)src[i], 4);
}

/* ---- writer ---- */

static int out_bytes(const st_out *t, uint64_t *bytes)
{
    if ((unsigned)t->dtype >= ST_DTYPE_COUNT || t->n_dims < 0 || t->n_dims > ST_MAX_DIMS)
        return 0;
    uint64_t n = dtype_info[t->dtype].size;
    for (int i = 0; i < t->n_dims; i++)
        if (t->shape[i] < 0 || __builtin_mul_overflow(n, (uint64_t)t->shape[i], &n))
            return 0;
    *bytes = n;
    return 1;
}

static slimkv_status check_outputs(const st_out *tensors, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const st_out *t = &tensors[i];
        uint64_t bytes;
        int sources = (t->data != NULL) + (t->produce != NULL) + (t->src != NULL);
        if (!t->name || strcmp(t->name, "__metadata__") == 0 || sources != 1 || !out_bytes(t, &bytes) ||
            (t->src && (!t->src_tensor || t->src_tensor->n_bytes != bytes)))
            return SLIMKV_ERR_INVALID_ARG;
        for (size_t j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0)
                return SLIMKV_ERR_INVALID_ARG;
    }
    return SLIMKV_OK;
}

/* The JSON header, padded with spaces so the data section starts 8-aligned. */
static slimkv_status build_header(const st_out *tensors, size_t n, const st_meta *meta, size_t n_meta,
                                  char **text, size_t *len)
{
    cJSON *root = cJSON_CreateObject(), *m = NULL;
    int ok = root != NULL;
    if (ok && n_meta > 0) {
        ok = (m = cJSON_AddObjectToObject(root, "__metadata__")) != NULL;
        for (size_t i = 0; ok && i < n_meta; i++)
            ok = meta[i].key && meta[i].value && cJSON_AddStringToObject(m, meta[i].key, meta[i].value);
    }
    uint64_t offset = 0, bytes;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *entry = cJSON_AddObjectToObject(root, tensors[i].name);
        cJSON *shape = entry ? cJSON_AddArrayToObject(entry, "shape") : NULL;
        cJSON *offsets = shape ? cJSON_AddArrayToObject(entry, "data_offsets") : NULL;
        ok = offsets && cJSON_AddStringToObject(entry, "dtype", dtype_info[tensors[i].dtype].name);
        for (int d = 0; ok && d < tensors[i].n_dims; d++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tensors[i].shape[d]));
        out_bytes(&tensors[i], &bytes);
        ok = ok && cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset)) &&
             cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(offset + bytes)));
        offset += bytes;
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    size_t raw = json ? strlen(json) : 0, padded = (raw + 7) / 8 * 8;
    char *out = json ? slimkv_malloc(padded) : NULL;
    if (out) {
        memcpy(out, json, raw);
        memset(out + raw, ' ', padded - raw);
    }
    cJSON_free(json);
    if (!out)
        return SLIMKV_ERR_NOMEM;
    *text = out;
    *len = padded;
    return SLIMKV_OK;
}

static slimkv_status write_tensor(int fd, const st_out *t)
{
    uint64_t bytes;
    out_bytes(t, &bytes);
    if (t->data)
        return write_all(fd, t->data, (size_t)bytes);
    if (bytes > SIZE_MAX)
        return SLIMKV_ERR_NOMEM;
    size_t chunk = t->produce ? (size_t)bytes : (size_t)1 << 20;
    uint8_t *buf = slimkv_malloc(chunk ? chunk : 1);
    if (!buf)
        return SLIMKV_ERR_NOMEM;
    slimkv_status st = SLIMKV_OK;
    if (t->produce) {
        st = t->produce(t->ctx, t, buf);
        if (st == SLIMKV_OK)
            st = write_all(fd, buf, (size_t)bytes);
    } else {
        for (uint64_t done = 0; done < bytes && st == SLIMKV_OK; done += chunk) {
            size_t n = bytes - done < chunk ? (size_t)(bytes - done) : chunk;
            st = st_read_bytes(t->src, t->src_tensor, done, n, buf);
            if (st == SLIMKV_OK)
                st = write_all(fd, buf, n);
        }
    }
    slimkv_free(buf);
    return st;
}

/* "<dir>/.<name>.tmp-XXXXXX": same directory, so rename() cannot cross filesystems. */
static char *temp_template(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path + 1) : 0;
    const char *base = slash ? slash + 1 : path;
    size_t len = strlen(path) + sizeof "/..tmp-XXXXXX";
    char *tmpl = slimkv_malloc(len);
    if (tmpl)
        snprintf(tmpl, len, "%.*s.%s.tmp-XXXXXX", (int)dir_len, path, base);
    return tmpl;
}

/* Makes the rename itself durable; best effort, the file is already in place. */
static void sync_directory(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? copy_string(path, (size_t)(slash - path + 1)) : copy_string(".", 1);
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    slimkv_free(dir);
}

slimkv_status st_write(const char *path, const st_out *tensors, size_t n_tensors, const st_meta *meta,
                       size_t n_meta)
{
    if (!path || (!tensors && n_tensors) || (!meta && n_meta))
        return SLIMKV_ERR_NULL_ARG;
    if (!*path || path[strlen(path) - 1] == '/')
        return SLIMKV_ERR_INVALID_ARG;
    slimkv_status st = check_outputs(tensors, n_tensors);
    if (st != SLIMKV_OK)
        return st;
    char *header = NULL, *tmp = temp_template(path);
    size_t header_len = 0;
    if (!tmp)
        return SLIMKV_ERR_NOMEM;
    st = build_header(tensors, n_tensors, meta, n_meta, &header, &header_len);
    if (st != SLIMKV_OK) {
        slimkv_free(tmp);
        return st;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        slimkv_free(tmp);
        slimkv_free(header);
        return SLIMKV_ERR_IO;
    }
    /* mkostemp creates 0600; a replaced file keeps its mode, a new one gets 0644. */
    struct stat sb;
    mode_t mode = stat(path, &sb) == 0 ? (sb.st_mode & 07777) : 0644;
    st = fchmod(fd, mode) == 0 ? SLIMKV_OK : SLIMKV_ERR_IO;
    uint8_t len_bytes[8];
    store_le(len_bytes, header_len, 8);
    if (st == SLIMKV_OK)
        st = write_all(fd, len_bytes, 8);
    if (st == SLIMKV_OK)
        st = write_all(fd, header, header_len);
    for (size_t i = 0; i < n_tensors && st == SLIMKV_OK; i++)
        st = write_tensor(fd, &tensors[i]);
    if (st == SLIMKV_OK && fsync(fd) != 0)
        st = SLIMKV_ERR_IO;
    if (close(fd) != 0 && st == SLIMKV_OK)
        st = SLIMKV_ERR_IO;
    if (st == SLIMKV_OK && rename(tmp, path) != 0)
        st = SLIMKV_ERR_IO;
    if (st != SLIMKV_OK)
        unlink(tmp);
    else
        sync_directory(path);
    slimkv_free(tmp);
    slimkv_free(header);
    return st;
}
