/* What every body shares: block sizes, the activations' quantization, and
 * the choice of a table. */
#include "qmm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t qmm_block_bytes(qmm_type type)
{
    static const size_t bytes[QMM_TYPE_COUNT] = {[QMM_Q4_0] = 18, [QMM_Q4_1] = 20, [QMM_Q8_0] = 34};
    return (unsigned)type < QMM_TYPE_COUNT ? bytes[type] : 0;
}

void qmm_dequantize_row(qmm_type type, const uint8_t *blocks, int n_blocks, float *out)
{
    size_t bb = qmm_block_bytes(type);
    for (int b = 0; b < n_blocks; b++, blocks += bb, out += QMM_BLOCK) {
        float d = qmm_f16(blocks);
        if (type == QMM_Q8_0) {
            for (int j = 0; j < QMM_BLOCK; j++)
                out[j] = (float)(int8_t)blocks[2 + j] * d;
            continue;
        }
        /* the formulas of gguf_dequantize, to the bit */
        int q4_1 = type == QMM_Q4_1, zero = q4_1 ? 0 : 8;
        float m = q4_1 ? qmm_f16(blocks + 2) : 0.0f;
        const uint8_t *qs = blocks + (q4_1 ? 4 : 2);
        for (int j = 0; j < 16; j++) {
            out[j] = (float)((qs[j] & 0x0f) - zero) * d + m;
            out[j + 16] = (float)((qs[j] >> 4) - zero) * d + m;
        }
    }
}

slimkv_status qmm_acts_alloc(qmm_acts *a, size_t blocks)
{
    memset(a, 0, sizeof *a);
    /* 64-byte aligned rows of codes: whole-vector loads never split lines */
    a->q = aligned_alloc(64, (blocks * QMM_BLOCK + 63) / 64 * 64);
    a->d = malloc(blocks * sizeof *a->d);
    a->sum = malloc(blocks * sizeof *a->sum);
    if (!a->q || !a->d || !a->sum) {
        qmm_acts_free(a);
        return SLIMKV_ERR_NOMEM;
    }
    a->capacity = blocks;
    return SLIMKV_OK;
}

void qmm_acts_free(qmm_acts *a)
{
    free(a->q);
    free(a->d);
    free(a->sum);
    memset(a, 0, sizeof *a);
}

/* Per block: d = max |x| / 127, q = x / d rounded half away from zero; an
 * all-zero block has d = 0 and q = 0. */
void qmm_quantize(const float *x, int n_tok, int n_blocks, qmm_acts *a)
{
    a->n_tok = n_tok;
    a->n_blocks = n_blocks;
    long total = (long)n_tok * n_blocks;
#pragma omp parallel for schedule(static) if (total > 4096)
    for (long b = 0; b < total; b++) {
        const float *xb = x + b * QMM_BLOCK;
        int8_t *q = a->q + b * QMM_BLOCK;
        float amax = 0.0f;
        for (int j = 0; j < QMM_BLOCK; j++) {
            float a = fabsf(xb[j]);
            amax = a > amax ? a : amax; /* plain compares: no libm call, and they vectorize */
        }
        float d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < QMM_BLOCK; j++) {
            float v = xb[j] * inv; /* within [-127, 127] */
            int code = (int)(v + (v < 0.0f ? -0.5f : 0.5f)); /* half away from zero */
            q[j] = (int8_t)code;
            sum += code;
        }
        a->d[b] = d;
        a->sum[b] = d * (float)sum;
    }
}

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
