/* Names of statuses and formats, and the version string. */
#include "internal.h"

#define STR2(x) #x
#define STR(x) STR2(x)

const char *slimkv_status_str(slimkv_status status)
{
    switch (status) {
    case SLIMKV_OK: return "ok";
    case SLIMKV_ERR_NULL_ARG: return "a required pointer argument is NULL";
    case SLIMKV_ERR_INVALID_CONFIG: return "invalid cache configuration";
    case SLIMKV_ERR_INVALID_ARG: return "invalid argument";
    case SLIMKV_ERR_CAPACITY: return "cache capacity exceeded";
    case SLIMKV_ERR_NONFINITE: return "NaN or Inf in input";
    case SLIMKV_ERR_NOMEM: return "out of memory";
    case SLIMKV_ERR_UNSUPPORTED: return "ISA or backend not supported here";
    case SLIMKV_ERR_FORMAT: return "malformed data";
    case SLIMKV_ERR_IO: return "I/O error";
    case SLIMKV_ERR_STATE: return "call not valid in the cache's current state";
    case SLIMKV_ERR_MISMATCH: return "snapshot does not match the cache's configuration";
    case SLIMKV_ERR_DEVICE: return "the GPU runtime reported an error";
    }
    return "unknown status";
}

const char *slimkv_format_name(slimkv_format format)
{
    static const char *names[SLIMKV_FORMAT_COUNT] = {"f32", "f16", "bf16", "q8", "q4", "q2"};
    return (unsigned)format < SLIMKV_FORMAT_COUNT ? names[format] : "unknown";
}

const char *slimkv_version(void)
{
    return STR(SLIMKV_VERSION_MAJOR) "." STR(SLIMKV_VERSION_MINOR) "." STR(SLIMKV_VERSION_PATCH);
}
