/* Names of statuses, formats and policies (and their parsers), and the
 * version string. */
#include <string.h>

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

/* A name of `length` bytes, against a table of NUL-terminated names. */
static int name_index(const char *name, size_t length, const char *const *names, int count)
{
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == length && memcmp(names[i], name, length) == 0)
            return i;
    return -1;
}

static const char *const format_names[SLIMKV_FORMAT_COUNT] = {"f32", "f16", "bf16", "q8", "q4", "q2", "q3"};
static const char *const policy_names[] = {"none", "static", "think", "spark"};
#define POLICY_COUNT (int)(sizeof policy_names / sizeof policy_names[0])

const char *slimkv_format_name(slimkv_format format)
{
    return (unsigned)format < SLIMKV_FORMAT_COUNT ? format_names[format] : "unknown";
}

slimkv_status slimkv_format_from_name(const char *name, size_t length, slimkv_format *out)
{
    if (!name || !out)
        return SLIMKV_ERR_NULL_ARG;
    int i = name_index(name, length, format_names, SLIMKV_FORMAT_COUNT);
    if (i < 0)
        return SLIMKV_ERR_INVALID_ARG;
    *out = (slimkv_format)i;
    return SLIMKV_OK;
}

const char *slimkv_policy_name(slimkv_policy policy)
{
    return (unsigned)policy < (unsigned)POLICY_COUNT ? policy_names[policy] : "unknown";
}

slimkv_status slimkv_policy_from_name(const char *name, size_t length, slimkv_policy *out)
{
    if (!name || !out)
        return SLIMKV_ERR_NULL_ARG;
    int i = name_index(name, length, policy_names, POLICY_COUNT);
    if (i < 0)
        return SLIMKV_ERR_INVALID_ARG;
    *out = (slimkv_policy)i;
    return SLIMKV_OK;
}

const char *slimkv_version(void)
{
    return STR(SLIMKV_VERSION_MAJOR) "." STR(SLIMKV_VERSION_MINOR) "." STR(SLIMKV_VERSION_PATCH);
}
