/* A GGUF (ggml model file, versions 2 and 3) reader for slimkv-run (tools/run).
 *
 * The whole file is read into memory and treated as hostile: every count,
 * string length, offset and tensor size is checked against the file size
 * with overflow-safe arithmetic before it is used. A malformed file gives
 * SLIMKV_ERR_FORMAT, a failing read SLIMKV_ERR_IO; nothing ever reads
 * outside the buffer. Keys, strings and tensor data point into the buffer,
 * so they live as long as the gguf_file. */
#ifndef SLIMKV_MODEL_GGUF_H
#define SLIMKV_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "slimkv.h"

/* Metadata value types (the GGUF spec numbers them this way). */
typedef enum gguf_value_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12
} gguf_value_type;
#define GGUF_TYPE_COUNT 13

/* Tensor element types (ggml numbering) that this reader knows the block
 * sizes of; only some of them can be dequantized (gguf_type_dequantizable). */
typedef enum gguf_tensor_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_BF16 = 30
} gguf_tensor_type;

#define GGUF_MAX_DIMS 4

/* A string inside the file: not NUL-terminated. */
typedef struct gguf_string {
    const char *data;
    uint64_t len;
} gguf_string;

typedef struct gguf_kv {
    gguf_string key;
    gguf_value_type type;
    /* Scalars: the value's bytes. Arrays: the first element's bytes. */
    const uint8_t *value;
    /* Arrays only. */
    gguf_value_type array_type;
    uint64_t array_count;
    /* String arrays only: each element's string (built at load). */
    gguf_string *array_strings;
} gguf_kv;

typedef struct gguf_tensor {
    gguf_string name;
    int n_dims;
    uint64_t dims[GGUF_MAX_DIMS]; /* dims[0] varies fastest (a row) */
    uint64_t n_elements;
    gguf_tensor_type type;
    uint64_t n_bytes;
    const uint8_t *data;
} gguf_tensor;

typedef struct gguf_file {
    uint8_t *bytes;
    size_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor *tensors;
} gguf_file;

/* Parses a GGUF image in memory; the gguf_file takes ownership of `bytes`
 * (malloc'd) on success and on failure. */
slimkv_status gguf_parse(uint8_t *bytes, size_t size, gguf_file **out);
/* Reads and parses a file. */
slimkv_status gguf_open(const char *path, gguf_file **out);
void gguf_close(gguf_file *file);

/* Lookups return NULL when absent. */
const gguf_kv *gguf_find_kv(const gguf_file *file, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *file, const char *name);

/* Typed getters: SLIMKV_ERR_FORMAT when the key is absent or of another type
 * (integers of any width and signedness convert when the value fits). */
slimkv_status gguf_get_u32(const gguf_file *file, const char *key, uint32_t *value);
slimkv_status gguf_get_f32(const gguf_file *file, const char *key, float *value);
slimkv_status gguf_get_bool(const gguf_file *file, const char *key, int *value);
slimkv_status gguf_get_string(const gguf_file *file, const char *key, gguf_string *value);
/* Element i of an integer array (any integer element type). */
slimkv_status gguf_array_int(const gguf_kv *kv, uint64_t i, int64_t *value);

/* Block geometry of a tensor type; 0 for unknown types. */
int gguf_type_block_elems(uint32_t type);
int gguf_type_block_bytes(uint32_t type);
const char *gguf_type_name(uint32_t type);
int gguf_type_dequantizable(uint32_t type);

/* Dequantizes a whole tensor to float32 (dst holds n_elements floats).
 * SLIMKV_ERR_UNSUPPORTED for types without a dequantizer. */
slimkv_status gguf_dequantize(const gguf_tensor *tensor, float *dst);

/* Half and bfloat16 conversion shared by the model code. */
float gguf_f16_to_f32(uint16_t h);
float gguf_bf16_to_f32(uint16_t h);

#endif /* SLIMKV_MODEL_GGUF_H */
