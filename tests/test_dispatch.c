/* SLIMKV_ISA is read once per process, so each case runs in a child. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "slimkv.h"

typedef enum expect { EXPECT_NAMED_IF_SUPPORTED, EXPECT_UNSUPPORTED, EXPECT_BEST } expect;

static const char *best_supported(void)
{
    return slimkv_isa_supported("avx512") ? "avx512"
           : slimkv_isa_supported("avx2") ? "avx2"
           : slimkv_isa_supported("neon") ? "neon"
                                          : "scalar";
}

/* Child: set SLIMKV_ISA before the library's first call, create a cache and
 * check the outcome; the parent makes no library call so its state is never
 * inherited. Returns 0 when the child saw what it expected. */
static int create_under_env(const char *value, expect what)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("SLIMKV_ISA", value, 1);
        slimkv_config cfg;
        slimkv_config_init(&cfg);
        cfg.n_q_heads = cfg.n_kv_heads = 1;
        cfg.head_dim = 16;
        cfg.capacity = 8;
        slimkv_cache *c = NULL;
        slimkv_status st = slimkv_cache_create(&cfg, &c);
        const char *want_name = what == EXPECT_BEST ? best_supported() : value;
        int supported = what == EXPECT_BEST || (what == EXPECT_NAMED_IF_SUPPORTED && slimkv_isa_supported(value));
        const char *name = NULL, *auto_name = NULL;
        slimkv_status auto_st = slimkv_isa_auto(&auto_name);
        int ok = supported ? st == SLIMKV_OK && auto_st == SLIMKV_OK
                           : st == SLIMKV_ERR_UNSUPPORTED && auto_st == SLIMKV_ERR_UNSUPPORTED;
        if (ok && supported) {
            slimkv_cache_isa(c, &name);
            ok = strcmp(name, want_name) == 0 && strcmp(auto_name, want_name) == 0;
        }
        slimkv_cache_destroy(c);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}

static void test_forced_isa(void **state)
{
    (void)state;
    const char *names[] = {"scalar", "avx2", "avx512", "neon"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(create_under_env(names[i], EXPECT_NAMED_IF_SUPPORTED), 0);
}

static void test_unknown_isa_fails_loudly(void **state)
{
    (void)state;
    assert_int_equal(create_under_env("avx1024", EXPECT_UNSUPPORTED), 0);
    assert_int_equal(create_under_env("SCALAR", EXPECT_UNSUPPORTED), 0);
}

static void test_auto_picks_best(void **state)
{
    (void)state;
    assert_int_equal(create_under_env("auto", EXPECT_BEST), 0);
    assert_int_equal(create_under_env("", EXPECT_BEST), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forced_isa),
        cmocka_unit_test(test_unknown_isa_fails_loudly),
        cmocka_unit_test(test_auto_picks_best),
    };
    return cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
}
