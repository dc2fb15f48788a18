/* The library's allocations, through an allocator the embedder may replace
 * (and tests use to fail the N-th allocation). */
#include <stdlib.h>

#include "internal.h"

static void *default_malloc(size_t size, void *user)
{
    (void)user;
    return malloc(size);
}

static void *default_calloc(size_t count, size_t size, void *user)
{
    (void)user;
    return calloc(count, size);
}

static void default_free(void *ptr, void *user)
{
    (void)user;
    free(ptr);
}

static const slimkv_allocator default_allocator = {default_malloc, default_calloc, default_free, NULL};
static slimkv_allocator current = {default_malloc, default_calloc, default_free, NULL};

slimkv_status slimkv_set_allocator(const slimkv_allocator *allocator)
{
    if (!allocator) {
        current = default_allocator;
        return SLIMKV_OK;
    }
    if (!allocator->malloc_fn || !allocator->calloc_fn || !allocator->free_fn)
        return SLIMKV_ERR_NULL_ARG;
    current = *allocator;
    return SLIMKV_OK;
}

void *slimkv_malloc(size_t size)
{
    return current.malloc_fn(size ? size : 1, current.user);
}

void *slimkv_calloc(size_t count, size_t size)
{
    return current.calloc_fn(count ? count : 1, size ? size : 1, current.user);
}

void slimkv_free(void *ptr)
{
    if (ptr)
        current.free_fn(ptr, current.user);
}
