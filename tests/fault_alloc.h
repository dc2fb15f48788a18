/* A slimkv_allocator that fails its fail_at-th call (1-based; 0 = never)
 * and counts the blocks live, for the tests that fail every allocation of
 * a call in turn. Header-only: test programs share no objects besides
 * oracle.o. Include after <cmocka.h>. */
#ifndef SLIMKV_TEST_FAULT_ALLOC_H
#define SLIMKV_TEST_FAULT_ALLOC_H

#include <stdlib.h>

#include "slimkv.h"

typedef struct fault_state {
    long calls, fail_at, live;
} fault_state;

static fault_state faults;

static void *fault_malloc(size_t size, void *user)
{
    fault_state *s = user;
    if (++s->calls == s->fail_at)
        return NULL;
    void *p = malloc(size);
    s->live += p != NULL;
    return p;
}

static void *fault_calloc(size_t count, size_t size, void *user)
{
    fault_state *s = user;
    if (++s->calls == s->fail_at)
        return NULL;
    void *p = calloc(count, size);
    s->live += p != NULL;
    return p;
}

static void fault_free(void *ptr, void *user)
{
    fault_state *s = user;
    s->live -= ptr != NULL;
    free(ptr);
}

/* From now on the fail_at-th allocation fails (the count starts again). */
static void install_faults(long fail_at)
{
    faults.calls = 0;
    faults.fail_at = fail_at;
    slimkv_allocator a = {fault_malloc, fault_calloc, fault_free, &faults};
    assert_int_equal(slimkv_set_allocator(&a), SLIMKV_OK);
}

static int teardown_allocator(void **state)
{
    (void)state;
    return slimkv_set_allocator(NULL) == SLIMKV_OK ? 0 : -1;
}

#endif /* SLIMKV_TEST_FAULT_ALLOC_H */
