/* safetensors reading and writing: the one checked reader and the one atomic
 * writer behind every SlimKV file (masks, plans, calibration tensors, model
 * weights). Internal: not part of the public API. Compiled into libslimkv
 * (its masks, plans and snapshots) and also archived alone as
 * $(BUILD)/libslimkv_safetensors.a for the programs and tests that read and
 * write safetensors files themselves: they build with -Isrc/safetensors and
 * link -lslimkv_safetensors before libslimkv.a (which it calls for its
 * allocator).
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of
 * JSON header ({"name": {"dtype", "shape", "data_offsets": [begin, end]},
 * optional "__metadata__": {string: string}}), then the data section with
 * every tensor's raw little-endian bytes at data_offsets.
 *
 * The reader treats the file as hostile. st_open checks, before any tensor
 * byte is touched: header length <= ST_MAX_HEADER_BYTES and inside the file,
 * the header parses as a JSON object (trailing spaces allowed), every dtype is
 * known, every shape dimension is a non-negative integer and the element and
 * byte counts do not overflow, each tensor's byte range equals dtype size x
 * element count, the ranges tile the data section exactly (no gap, overlap or
 * trailing bytes, as the reference implementation requires), names are
 * unique, and __metadata__ maps strings to strings. Anything else is
 * SLIMKV_ERR_FORMAT; failing OS calls are SLIMKV_ERR_IO.
 *
 * Tensor bytes are read on demand with pread, so a reader holds only the
 * header in memory and a large model file can be processed tensor by tensor.
 */
#ifndef SLIMKV_SAFETENSORS_H
#define SLIMKV_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "slimkv.h"

#define ST_MAX_HEADER_BYTES ((uint64_t)100 << 20)
#define ST_MAX_DIMS 8

typedef enum st_dtype {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_I64, ST_U64, ST_F64,
    ST_DTYPE_COUNT
} st_dtype;

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    size_t n_elems;
    uint64_t offset;  /* from the start of the data section */
    uint64_t n_bytes;
} st_tensor;

typedef struct st_meta {
    char *key, *value;
} st_meta;

typedef struct st_file {
    int fd;
    uint64_t data_start; /* 8 + header length */
    uint64_t data_size;
    st_tensor *tensors;  /* sorted by name */
    size_t n_tensors;
    st_meta *meta;
    size_t n_meta;
} st_file;

/* Dtype names as safetensors spells them ("F32", "BF16", ...) and sizes. */
const char *st_dtype_name(st_dtype dtype);
size_t st_dtype_size(st_dtype dtype);
/* 1 for F16, BF16, F32, F64. */
int st_dtype_is_float(st_dtype dtype);

slimkv_status st_open(const char *path, st_file **out);
void st_close(st_file *file);

/* NULL when absent. */
const st_tensor *st_find(const st_file *file, const char *name);
const char *st_meta_get(const st_file *file, const char *key);

/* 1 when the tensor has exactly these dimensions. */
int st_shape_is(const st_tensor *t, int n_dims, const int64_t *shape);

/* Raw bytes [offset, offset + n) of a tensor. A file that shrank after
 * st_open gives SLIMKV_ERR_FORMAT. */
slimkv_status st_read_bytes(const st_file *file, const st_tensor *t, uint64_t offset, size_t n, void *dst);

/* All elements of a numeric tensor converted to float (t->n_elems values).
 * F8 dtypes are refused with SLIMKV_ERR_FORMAT. Integers convert exactly up
 * to 2^24; callers that need exact values check them after conversion. */
slimkv_status st_read_f32(const st_file *file, const st_tensor *t, float *dst);

/* Encodes n floats as F32, F16 or BF16 little-endian bytes (n * size). */
void st_encode_f32(st_dtype dtype, const float *src, size_t n, void *dst);
void st_encode_i32(const int32_t *src, size_t n, void *dst);

/* One tensor to write. Its bytes come from exactly one of: data (raw
 * little-endian bytes of dtype), produce (called once with a buffer of the
 * tensor's size to fill; lets a writer hold one tensor at a time), or a
 * tensor of an open file (copied in chunks). */
typedef struct st_out {
    const char *name;
    st_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    slimkv_status (*produce)(void *ctx, const struct st_out *self, void *dst);
    void *ctx;
    const st_file *src;
    const st_tensor *src_tensor;
} st_out;

/* Writes a complete file atomically: a temporary file in the target's
 * directory, fsync, then rename over path. On any failure path is left as it
 * was and the temporary file is removed. Names must be unique and not
 * "__metadata__" (else SLIMKV_ERR_INVALID_ARG). */
slimkv_status st_write(const char *path, const st_out *tensors, size_t n_tensors, const st_meta *meta,
                       size_t n_meta);

#endif /* SLIMKV_SAFETENSORS_H */
