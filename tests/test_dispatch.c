/* Kernel-table selection and the SLIMKV_ISA override. The library reads
 * SLIMKV_ISA once per process, so each value is checked through the same
 * decision function the start-up uses; `make test` also runs this program
 * under SLIMKV_ISA=scalar and SLIMKV_ISA=bogus to check the real variable
 * (test_real_environment). No fork: qemu-user here hangs in forked children. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

static const char *best_supported(void)
{
    return slimkv_isa_supported("avx512") ? "avx512"
           : slimkv_isa_supported("avx2") ? "avx2"
           : slimkv_isa_supported("neon-dotprod") ? "neon-dotprod"
           : slimkv_isa_supported("neon")       ? "neon"
                                          : "scalar";
}

static void expect_override(const char *value, const char *want_name)
{
    const slimkv_kernels *k = NULL;
    slimkv_status st = slimkv_select_for_override(value, &k);
    if (!want_name) {
        assert_int_equal(st, SLIMKV_ERR_UNSUPPORTED);
        return;
    }
    assert_int_equal(st, SLIMKV_OK);
    assert_string_equal(k->name, want_name);
}

static void test_forced_isa(void **state)
{
    (void)state;
    const char *names[] = {"scalar", "avx2", "avx512", "neon", "neon-dotprod"};
    for (int i = 0; i < 5; i++)
        expect_override(names[i], slimkv_isa_supported(names[i]) ? names[i] : NULL);
}

static void test_unknown_isa_fails_loudly(void **state)
{
    (void)state;
    expect_override("avx1024", NULL);
    expect_override("SCALAR", NULL);
    expect_override(" scalar", NULL);
}

/* SLIMKV_TEST_EXPECT_ISA names the table "auto" must be on this CPU
 * (make cross-test-armhf runs qemu-arm CPU models with and without NEON). */
static void test_auto_picks_best(void **state)
{
    (void)state;
    expect_override(NULL, best_supported());
    expect_override("", best_supported());
    expect_override("auto", best_supported());
    const char *expect = getenv("SLIMKV_TEST_EXPECT_ISA");
    if (expect && *expect) {
        print_message("  auto on this CPU: %s (expected %s)\n", best_supported(), expect);
        assert_string_equal(best_supported(), expect);
        expect_override(NULL, expect);
    }
}

/* The process's own SLIMKV_ISA, as `make test` sets it for extra runs. */
static void test_real_environment(void **state)
{
    (void)state;
    const char *value = getenv("SLIMKV_ISA");
    const slimkv_kernels *want = NULL;
    slimkv_status want_st = slimkv_select_for_override(value, &want);
    const char *name = NULL;
    assert_int_equal(slimkv_isa_auto(&name), want_st);
    slimkv_config cfg;
    slimkv_config_init(&cfg);
    cfg.n_q_heads = cfg.n_kv_heads = 1;
    cfg.head_dim = 16;
    cfg.capacity = 8;
    slimkv_cache *c = NULL;
    assert_int_equal(slimkv_cache_create(&cfg, &c), want_st);
    if (want_st == SLIMKV_OK) {
        assert_string_equal(name, want->name);
        const char *cache_isa;
        assert_int_equal(slimkv_cache_isa(c, &cache_isa), SLIMKV_OK);
        assert_string_equal(cache_isa, want->name);
        /* an explicit config ISA still works under any override */
        slimkv_cache_destroy(c);
        cfg.isa = "scalar";
        assert_int_equal(slimkv_cache_create(&cfg, &c), SLIMKV_OK);
    }
    slimkv_cache_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forced_isa),
        cmocka_unit_test(test_unknown_isa_fails_loudly),
        cmocka_unit_test(test_auto_picks_best),
        cmocka_unit_test(test_real_environment),
    };
    return cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
}
