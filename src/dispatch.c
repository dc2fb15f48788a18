/* CPU feature detection and kernel-table selection. Tables are built once;
 * SLIMKV_ISA forces one, and a name that is unknown or not supported here is
 * an error (SLIMKV_ERR_UNSUPPORTED), never a silent fallback. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* SLIMKV_SCALAR_ONLY (make SIMD=0): no ISA bodies compiled in. */
#if defined(SLIMKV_SCALAR_ONLY)
#elif defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define SLIMKV_X86 1
#elif defined(__aarch64__)
#include <sys/auxv.h>
#define SLIMKV_ARM64 1
#elif defined(__arm__)
#include <sys/auxv.h>
#define SLIMKV_ARM32 1 /* NEON only: no dot-product table on 32-bit ARM */
#endif

enum isa_id { ISA_AVX512, ISA_AVX2, ISA_NEON_DOTPROD, ISA_NEON, ISA_SCALAR, ISA_COUNT };

typedef struct isa_entry {
    const char *name;
    void (*init)(slimkv_kernels *);
} isa_entry;

/* Preference order: the first supported entry wins under "auto". */
static const isa_entry isa_table[ISA_COUNT] = {
#ifdef SLIMKV_X86
    [ISA_AVX512] = {"avx512", slimkv_kernels_init_avx512},
    [ISA_AVX2] = {"avx2", slimkv_kernels_init_avx2},
#else
    [ISA_AVX512] = {"avx512", NULL},
    [ISA_AVX2] = {"avx2", NULL},
#endif
#ifdef SLIMKV_ARM64
    [ISA_NEON_DOTPROD] = {"neon-dotprod", slimkv_kernels_init_neon_dotprod},
    [ISA_NEON] = {"neon", slimkv_kernels_init_neon},
#elif defined(SLIMKV_ARM32)
    [ISA_NEON_DOTPROD] = {"neon-dotprod", NULL},
    [ISA_NEON] = {"neon", slimkv_kernels_init_neon},
#else
    [ISA_NEON_DOTPROD] = {"neon-dotprod", NULL},
    [ISA_NEON] = {"neon", NULL},
#endif
    [ISA_SCALAR] = {"scalar", slimkv_kernels_init_scalar},
};

static slimkv_kernels tables[ISA_COUNT];
static int supported[ISA_COUNT];
static int auto_choice = -1; /* -1: SLIMKV_ISA names an unknown or unsupported ISA */
static pthread_once_t once = PTHREAD_ONCE_INIT;

#ifdef SLIMKV_X86
static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect_x86(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx)
        return;
    uint64_t xcr0 = read_xcr0();
    int os_avx = (xcr0 & 0x6) == 0x6;              /* XMM and YMM state */
    int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM_Hi256, Hi16_ZMM */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return;
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    int avx512dq = (b >> 17) & 1, vnni = (c >> 11) & 1;
    supported[ISA_AVX2] = os_avx && avx2 && fma && f16c;
    supported[ISA_AVX512] = supported[ISA_AVX2] && os_avx512 && avx512f && avx512bw && avx512vl && avx512dq && vnni;
}
#endif

#ifdef SLIMKV_ARM64
static void detect_arm(void)
{
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
    supported[ISA_NEON] = (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
    supported[ISA_NEON_DOTPROD] = supported[ISA_NEON] && (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
}
#endif

#ifdef SLIMKV_ARM32
/* The NEON kernels are built with -mfpu=neon-vfpv4: they need NEON and the
 * VFPv4 fused multiply-add (Cortex-A7/A15/A17 and ARMv8 cores in AArch32;
 * Cortex-A8/A9 have NEON without VFPv4 and get the scalar kernels). */
#ifndef HWCAP_ARM_NEON
#define HWCAP_ARM_NEON (1 << 12)
#endif
#ifndef HWCAP_ARM_VFPv4
#define HWCAP_ARM_VFPv4 (1 << 16)
#endif
static void detect_arm(void)
{
    unsigned long hwcap = getauxval(AT_HWCAP);
    supported[ISA_NEON] = (hwcap & HWCAP_ARM_NEON) && (hwcap & HWCAP_ARM_VFPv4);
}
#endif

static int find_isa(const char *name)
{
    for (int i = 0; i < ISA_COUNT; i++)
        if (strcmp(isa_table[i].name, name) == 0)
            return i;
    return -1;
}

/* What "auto" means under SLIMKV_ISA=value (NULL: unset): the named table
 * when it is supported here, -1 when the name is unknown or unsupported,
 * the best supported one for unset, empty or "auto". */
static int choice_for_override(const char *value)
{
    if (value && *value && strcmp(value, "auto") != 0) {
        int id = find_isa(value);
        return id >= 0 && supported[id] ? id : -1;
    }
    for (int i = 0; i < ISA_COUNT; i++)
        if (supported[i])
            return i;
    return -1;
}

static void init_tables(void)
{
    supported[ISA_SCALAR] = 1;
#ifdef SLIMKV_X86
    detect_x86();
#endif
#if defined(SLIMKV_ARM64) || defined(SLIMKV_ARM32)
    detect_arm();
#endif
    for (int i = 0; i < ISA_COUNT; i++) {
        supported[i] = supported[i] && isa_table[i].init != NULL;
        if (supported[i])
            isa_table[i].init(&tables[i]);
    }
    auto_choice = choice_for_override(getenv("SLIMKV_ISA"));
}

slimkv_status slimkv_select_for_override(const char *value, const slimkv_kernels **out)
{
    pthread_once(&once, init_tables);
    int id = choice_for_override(value);
    if (id < 0)
        return SLIMKV_ERR_UNSUPPORTED;
    *out = &tables[id];
    return SLIMKV_OK;
}

slimkv_status slimkv_select_kernels(const char *isa, const slimkv_kernels **out)
{
    pthread_once(&once, init_tables);
    int id;
    if (!isa || strcmp(isa, "auto") == 0) {
        id = auto_choice;
    } else {
        id = find_isa(isa);
        if (id >= 0 && !supported[id])
            id = -1;
    }
    if (id < 0)
        return SLIMKV_ERR_UNSUPPORTED;
    *out = &tables[id];
    return SLIMKV_OK;
}

slimkv_status slimkv_isa_auto(const char **name)
{
    if (!name)
        return SLIMKV_ERR_NULL_ARG;
    const slimkv_kernels *k;
    slimkv_status st = slimkv_select_kernels(NULL, &k);
    if (st == SLIMKV_OK)
        *name = k->name;
    return st;
}

int slimkv_isa_supported(const char *name)
{
    if (!name)
        return 0;
    pthread_once(&once, init_tables);
    int id = find_isa(name);
    return id >= 0 && supported[id];
}
