/* The choice of the weight kernels' table, once at start-up, by the
 * library's names and verdicts (qmm.h). */
#include <stdlib.h>
#include <string.h>

#include "qmm.h"

typedef struct qmm_isa {
    const char *name;
    void (*init)(qmm_kernels *k);
} qmm_isa;

/* Best first; an entry is there only where its body is compiled in. */
static const qmm_isa isas[] = {
#if defined(__x86_64__) && !defined(SLIMKV_SCALAR_ONLY)
    {"avx512", qmm_init_avx512},
    {"avx2", qmm_init_avx2},
#endif
#if defined(__aarch64__) && !defined(SLIMKV_SCALAR_ONLY)
    {"neon-dotprod", qmm_init_neon_dotprod},
#endif
#if (defined(__aarch64__) || defined(__arm__)) && !defined(SLIMKV_SCALAR_ONLY)
    {"neon", qmm_init_neon},
#endif
    {"scalar", qmm_init_scalar},
};
#define N_ISAS (int)(sizeof isas / sizeof isas[0])

slimkv_status qmm_select(const char *isa, const qmm_kernels **out)
{
    static qmm_kernels tables[N_ISAS];
    static int ready[N_ISAS];
    if (!isa || !strcmp(isa, "auto")) {
        const char *env = getenv("SLIMKV_ISA");
        isa = env && *env ? env : "auto";
    }
    int automatic = !strcmp(isa, "auto");
    for (int i = 0; i < N_ISAS; i++) {
        /* the library's verdict on name and CPU, so both agree */
        if (!(automatic || !strcmp(isa, isas[i].name)) || !slimkv_isa_supported(isas[i].name))
            continue;
        if (!ready[i]) {
            qmm_init_scalar(&tables[i]); /* an ISA without a body for a type keeps the scalar one */
            isas[i].init(&tables[i]);
            tables[i].name = isas[i].name;
            ready[i] = 1;
        }
        *out = &tables[i];
        return SLIMKV_OK;
    }
    return SLIMKV_ERR_UNSUPPORTED;
}
