/* Every kernel family on every ISA this machine supports, against the scalar
 * oracle: packing and conversions bit-exact, float results within the
 * tolerances stated below. One test body, run once per ISA. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#if defined(__arm__) && !defined(__aarch64__)
#include <sys/auxv.h> /* AT_HWCAP: which tables test_isa_selection expects */
#endif

#include "internal.h"
#include "oracle.h"

static const char *const isa_names[] = {"scalar", "avx2", "avx512", "neon", "neon-dotprod"};
static const slimkv_format all_formats[] = {SLIMKV_F32, SLIMKV_F16, SLIMKV_BF16, SLIMKV_Q8,
                                           SLIMKV_Q4,  SLIMKV_Q2,  SLIMKV_Q3};
static const int group_sizes[] = {16, 32, 64};
static const int k_dims[] = {4, 8, 12, 20, 64, 100, 128};
static const int v_dims[] = {1, 3, 17, 64, 96, 128, 130};
static const int query_counts[] = {1, 3, 4, 8, 9};

static const slimkv_kernels *scalar_table(void)
{
    const slimkv_kernels *k = NULL;
    assert_int_equal(slimkv_select_kernels("scalar", &k), SLIMKV_OK);
    return k;
}

/* Buffers at an odd offset from malloc's alignment: kernels must not assume
 * more alignment than the element type's. */
typedef struct buf {
    void *raw;
    uint8_t *p;
} buf;

static buf buf_alloc(size_t bytes, size_t misalign)
{
    buf b;
    b.raw = calloc(bytes + 128, 1);
    assert_non_null(b.raw);
    b.p = (uint8_t *)b.raw + 64 + misalign;
    return b;
}

/* Values with an outlier channel and a spread of magnitudes. */
static void fill_values(test_rng *r, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = rng_normal(r) * (i % 7 == 0 ? 8.0f : 1.0f) + (i % 5 == 0 ? 3.0f : 0.0f);
}

static void fill_constant_runs(float *x, size_t n)
{
    /* equal values give scale 0: the quantizer must cope */
    for (size_t i = 0; i < n; i++)
        x[i] = 1.25f;
}

/* ---- value of one stored element, computed from the scalar layout ---- */

/* Field `index` of `bits` bits of a K-layout plane (a lane of 4 channels
 * per token, 8/bits quads per byte); V planes alike with tokens and channels
 * swapped (lane = one channel, 4 tokens). */
static int plane_field(const uint8_t *plane, int bits, size_t rows, int quad, int row, int lane)
{
    int per = 8 / bits;
    size_t byte = ((size_t)(quad / per) * rows + row) * 4 + lane;
    return (plane[byte] >> (bits * (quad % per))) & ((1 << bits) - 1);
}

/* q3 is a 2-bit plane of low bits, then a 1-bit plane of high bits. */
static int k_code(slimkv_format fmt, const uint8_t *group, int dk, int g, int c, int t)
{
    if (fmt != SLIMKV_Q3)
        return plane_field(group, slimkv_format_bits(fmt), (size_t)g, c / 4, t, c % 4);
    size_t hi = ((size_t)dk / 4 + 3) / 4 * g * 4;
    return plane_field(group, 2, (size_t)g, c / 4, t, c % 4) | plane_field(group + hi, 1, (size_t)g, c / 4, t, c % 4) << 2;
}

static int v_code(slimkv_format fmt, const uint8_t *block, int dv, int g, int t, int c)
{
    if (fmt != SLIMKV_Q3)
        return plane_field(block, slimkv_format_bits(fmt), (size_t)dv, t / 4, c, t % 4);
    size_t hi = (size_t)g * dv / 4;
    return plane_field(block, 2, (size_t)dv, t / 4, c, t % 4) | plane_field(block + hi, 1, (size_t)dv, t / 4, c, t % 4) << 2;
}

static float k_value(slimkv_format fmt, const uint8_t *group, int dk, int g, int c, int t)
{
    switch (fmt) {
    case SLIMKV_F32: return ((const float *)group)[(size_t)t * dk + c];
    case SLIMKV_F16: return slimkv_f16_to_f32(((const uint16_t *)group)[(size_t)t * dk + c]);
    case SLIMKV_BF16: return slimkv_bf16_to_f32(((const uint16_t *)group)[(size_t)t * dk + c]);
    default: break;
    }
    const uint16_t *p = (const uint16_t *)(group + slimkv_k_params_offset(fmt, dk, g));
    return (float)k_code(fmt, group, dk, g, c, t) * slimkv_f16_to_f32(p[c]) + slimkv_f16_to_f32(p[dk + c]);
}

static float v_value(slimkv_format fmt, const uint8_t *block, int dv, int g, int t, int c)
{
    switch (fmt) {
    case SLIMKV_F32: return ((const float *)block)[(size_t)t * dv + c];
    case SLIMKV_F16: return slimkv_f16_to_f32(((const uint16_t *)block)[(size_t)t * dv + c]);
    case SLIMKV_BF16: return slimkv_bf16_to_f32(((const uint16_t *)block)[(size_t)t * dv + c]);
    default: break;
    }
    int nvg = (dv + g - 1) / g;
    const uint16_t *p = (const uint16_t *)(block + slimkv_v_params_offset(fmt, dv, g));
    size_t j = (size_t)t * nvg + c / g;
    return (float)v_code(fmt, block, dv, g, t, c) * slimkv_f16_to_f32(p[j]) +
           slimkv_f16_to_f32(p[(size_t)g * nvg + j]);
}

static const slimkv_kernels *isa_table_or_skip(const char *name)
{
    const slimkv_kernels *k = NULL;
    if (!slimkv_isa_supported(name))
        return NULL;
    assert_int_equal(slimkv_select_kernels(name, &k), SLIMKV_OK);
    assert_string_equal(k->name, name);
    return k;
}

/* ---- packing: bit-exact ---- */

static void check_pack_k(const slimkv_kernels *k, const slimkv_kernels *ref)
{
    test_rng r;
    rng_seed(&r, 11);
    for (size_t fi = 0; fi < SLIMKV_FORMAT_COUNT; fi++)
        for (size_t gi = 0; gi < 3; gi++)
            for (size_t di = 0; di < sizeof k_dims / sizeof *k_dims; di++)
                for (int constant = 0; constant < 2; constant++) {
                    slimkv_format fmt = all_formats[fi];
                    int g = group_sizes[gi], dk = k_dims[di];
                    size_t bytes = slimkv_k_group_bytes(fmt, dk, g), n = (size_t)g * dk;
                    buf src = buf_alloc(n * sizeof(float), 4), a = buf_alloc(bytes, 4), b = buf_alloc(bytes, 8);
                    float *x = (float *)src.p;
                    if (constant)
                        fill_constant_runs(x, n);
                    else
                        fill_values(&r, x, n);
                    k->pack_k[fmt](x, dk, g, a.p);
                    ref->pack_k[fmt](x, dk, g, b.p);
                    if (memcmp(a.p, b.p, bytes) != 0)
                        fail_msg("%s pack_k %s dk=%d g=%d differs from scalar", k->name, slimkv_format_name(fmt),
                                 dk, g);
                    /* and the stored values reconstruct the input within half a step */
                    for (int c = 0; c < dk; c++)
                        for (int t = 0; t < g; t++) {
                            float got = k_value(fmt, b.p, dk, g, c, t), want = x[(size_t)t * dk + c];
                            float tol = fabsf(want) * 1e-2f + 1e-6f;
                            if (slimkv_is_quantized(fmt)) {
                                const uint16_t *p = (const uint16_t *)(b.p + slimkv_k_params_offset(fmt, dk, g));
                                tol = slimkv_f16_to_f32(p[c]) * 0.5f + fabsf(want) * 2e-3f + 1e-3f;
                            }
                            if (fabsf(got - want) > tol)
                                fail_msg("pack_k %s dk=%d reconstructs %g for %g", slimkv_format_name(fmt), dk,
                                         got, want);
                        }
                    free(src.raw);
                    free(a.raw);
                    free(b.raw);
                }
}

static void check_pack_v(const slimkv_kernels *k, const slimkv_kernels *ref)
{
    test_rng r;
    rng_seed(&r, 12);
    for (size_t fi = 0; fi < SLIMKV_FORMAT_COUNT; fi++)
        for (size_t gi = 0; gi < 3; gi++)
            for (size_t di = 0; di < sizeof v_dims / sizeof *v_dims; di++) {
                slimkv_format fmt = all_formats[fi];
                int g = group_sizes[gi], dv = v_dims[di];
                size_t bytes = slimkv_v_block_bytes(fmt, dv, g);
                buf src = buf_alloc((size_t)dv * sizeof(float), 4), a = buf_alloc(bytes, 4),
                    b = buf_alloc(bytes, 0);
                float *x = (float *)src.p;
                /* slots in a scattered order, some left empty */
                for (int i = 0; i < g; i++) {
                    int slot = (i * 7) % g;
                    if (slot % 5 == 3)
                        continue;
                    if (slot == 1)
                        fill_constant_runs(x, (size_t)dv);
                    else
                        fill_values(&r, x, (size_t)dv);
                    k->pack_v[fmt](x, dv, g, a.p, slot);
                    ref->pack_v[fmt](x, dv, g, b.p, slot);
                    for (int c = 0; c < dv; c++) {
                        float got = v_value(fmt, b.p, dv, g, slot, c), want = x[c];
                        float tol = fabsf(want) * 1e-2f + 1e-6f;
                        if (slimkv_is_quantized(fmt)) {
                            int nvg = (dv + g - 1) / g;
                            const uint16_t *p = (const uint16_t *)(b.p + slimkv_v_params_offset(fmt, dv, g));
                            tol = slimkv_f16_to_f32(p[(size_t)slot * nvg + c / g]) * 0.5f + fabsf(want) * 2e-3f +
                                  1e-3f;
                        }
                        if (fabsf(got - want) > tol)
                            fail_msg("pack_v %s dv=%d reconstructs %g for %g", slimkv_format_name(fmt), dv, got,
                                     want);
                    }
                }
                if (memcmp(a.p, b.p, bytes) != 0)
                    fail_msg("%s pack_v %s dv=%d g=%d differs from scalar", k->name, slimkv_format_name(fmt), dv, g);
                free(src.raw);
                free(a.raw);
                free(b.raw);
            }
}

/* ---- scores and accumulation: within tolerance ----
 * Float paths: |got - ref| <= 1e-4 * sum of |terms| + 1e-6.
 * Quantized formats may also quantize the folded query q_c*scale_c (K) or
 * the folded weight w_t*scale_t (V) to int8 per group: on top of the float
 * bound they may be off by max|folded| / 254 * sum of codes (half an int8
 * step on every term), which the DESIGN allows. */

static void check_score_k(const slimkv_kernels *k, const slimkv_kernels *ref)
{
    test_rng r;
    rng_seed(&r, 13);
    for (size_t fi = 0; fi < SLIMKV_FORMAT_COUNT; fi++)
        for (size_t gi = 0; gi < 3; gi++)
            for (size_t di = 0; di < sizeof k_dims / sizeof *k_dims; di++)
                for (size_t qi = 0; qi < sizeof query_counts / sizeof *query_counts; qi++) {
                    slimkv_format fmt = all_formats[fi];
                    int g = group_sizes[gi], dk = k_dims[di], nq = query_counts[qi];
                    int n = (int)(qi % 3 == 0 ? g : qi % 3 == 1 ? g - 1 : 1 + (int)qi);
                    size_t bytes = slimkv_k_group_bytes(fmt, dk, g);
                    float *x = malloc((size_t)g * dk * sizeof(float));
                    buf grp = buf_alloc(bytes, 4), qb = buf_alloc((size_t)nq * dk * sizeof(float), 4);
                    float *q = (float *)qb.p;
                    int lds = g + 3;
                    float *s = malloc((size_t)nq * lds * sizeof(float)), *s_ref = malloc((size_t)nq * lds * sizeof(float));
                    fill_values(&r, x, (size_t)g * dk);
                    fill_normal(&r, q, (size_t)nq * dk, 0.3f);
                    ref->pack_k[fmt](x, dk, g, grp.p);
                    for (int i = 0; i < nq * lds; i++)
                        s[i] = s_ref[i] = 12345.0f;
                    k->score_k[fmt](grp.p, dk, g, n, q, nq, s, lds);
                    ref->score_k[fmt](grp.p, dk, g, n, q, nq, s_ref, lds);
                    const uint16_t *scale = (const uint16_t *)(grp.p + slimkv_k_params_offset(fmt, dk, g));
                    for (int i = 0; i < nq; i++)
                        for (int t = 0; t < lds; t++) {
                            float got = s[(size_t)i * lds + t], want = s_ref[(size_t)i * lds + t];
                            if (t >= n) {
                                if (got != 12345.0f)
                                    fail_msg("%s score_k wrote past n", k->name);
                                continue;
                            }
                            double l1 = 0, folded_max = 0, codes = 0;
                            for (int c = 0; c < dk; c++) {
                                float qc = q[(size_t)i * dk + c];
                                l1 += fabs((double)qc * k_value(fmt, grp.p, dk, g, c, t));
                                if (slimkv_is_quantized(fmt)) {
                                    double f = fabs((double)qc * slimkv_f16_to_f32(scale[c]));
                                    folded_max = f > folded_max ? f : folded_max;
                                    codes += k_code(fmt, grp.p, dk, g, c, t);
                                }
                            }
                            double tol = 1e-4 * l1 + 1e-6 + folded_max / 254.0 * codes;
                            if (fabs((double)got - want) > tol)
                                fail_msg("%s score_k %s dk=%d g=%d nq=%d n=%d: %g vs %g (tol %g)", k->name,
                                         slimkv_format_name(fmt), dk, g, nq, n, got, want, tol);
                        }
                    free(x);
                    free(grp.raw);
                    free(qb.raw);
                    free(s);
                    free(s_ref);
                }
}

static void check_accum_v(const slimkv_kernels *k, const slimkv_kernels *ref)
{
    test_rng r;
    rng_seed(&r, 14);
    for (size_t fi = 0; fi < SLIMKV_FORMAT_COUNT; fi++)
        for (size_t gi = 0; gi < 3; gi++)
            for (size_t di = 0; di < sizeof v_dims / sizeof *v_dims; di++)
                for (size_t qi = 0; qi < sizeof query_counts / sizeof *query_counts; qi++) {
                    slimkv_format fmt = all_formats[fi];
                    int g = group_sizes[gi], dv = v_dims[di], nq = query_counts[qi];
                    int n = (int)(qi % 3 == 0 ? g : qi % 3 == 1 ? g - 1 : 1 + (int)qi);
                    int ldw = g + 1;
                    size_t bytes = slimkv_v_block_bytes(fmt, dv, g);
                    buf blk = buf_alloc(bytes, 0), wb = buf_alloc((size_t)nq * ldw * sizeof(float), 4);
                    float *x = malloc((size_t)dv * sizeof(float)), *w = (float *)wb.p;
                    float *acc = malloc((size_t)nq * dv * sizeof(float)), *acc_ref = malloc((size_t)nq * dv * sizeof(float));
                    for (int t = 0; t < n; t++) { /* slots >= n stay empty (zero), as in the cache */
                        fill_values(&r, x, (size_t)dv);
                        ref->pack_v[fmt](x, dv, g, blk.p, t);
                    }
                    for (int i = 0; i < nq * ldw; i++)
                        w[i] = fabsf(rng_uniform(&r)) * 0.2f;
                    for (int i = 0; i < nq * dv; i++)
                        acc[i] = acc_ref[i] = (float)(i % 5) * 0.5f;
                    k->accum_v[fmt](blk.p, dv, g, n, w, ldw, nq, acc);
                    ref->accum_v[fmt](blk.p, dv, g, n, w, ldw, nq, acc_ref);
                    int nvg = (dv + g - 1) / g;
                    const uint16_t *scale = (const uint16_t *)(blk.p + slimkv_v_params_offset(fmt, dv, g));
                    for (int i = 0; i < nq; i++)
                        for (int c = 0; c < dv; c++) {
                            double l1 = (double)((i * dv + c) % 5) * 0.5; /* the initial accumulator */
                            double folded_max = 0, codes = 0;
                            for (int t = 0; t < n; t++) {
                                double wt = w[(size_t)i * ldw + t];
                                l1 += fabs(wt * v_value(fmt, blk.p, dv, g, t, c));
                                if (slimkv_is_quantized(fmt)) {
                                    double f = fabs(wt * slimkv_f16_to_f32(scale[(size_t)t * nvg + c / g]));
                                    folded_max = f > folded_max ? f : folded_max;
                                    codes += v_code(fmt, blk.p, dv, g, t, c);
                                }
                            }
                            double tol = 1e-4 * l1 + 1e-6 + folded_max / 254.0 * codes;
                            float got = acc[(size_t)i * dv + c], want = acc_ref[(size_t)i * dv + c];
                            if (fabs((double)got - want) > tol)
                                fail_msg("%s accum_v %s dv=%d g=%d nq=%d n=%d: %g vs %g (tol %g)", k->name,
                                         slimkv_format_name(fmt), dv, g, nq, n, got, want, tol);
                        }
                    free(blk.raw);
                    free(wb.raw);
                    free(x);
                    free(acc);
                    free(acc_ref);
                }
}

/* SparK: packing bit-exact, scores within the float bound (no int8 path:
 * the restored channels are not codes). */
static void check_spark(const slimkv_kernels *k, const slimkv_kernels *ref)
{
    test_rng r;
    rng_seed(&r, 18);
    static const int dims[] = {4, 12, 64, 100, 128};
    for (size_t fi = 0; fi < 6; fi++) /* the SparK record formats: all but q3 */
        for (size_t gi = 0; gi < 3; gi++)
            for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
                for (int ti = 0; ti < 3; ti++) {
                    slimkv_format fmt = all_formats[fi];
                    int g = group_sizes[gi], dim = dims[di], nq = query_counts[(di + ti) % 5];
                    int t_keep = ti == 0 ? dim : ti == 1 ? dim / 2 + 1 : 1;
                    int n = ti == 2 ? g - 3 : g;
                    size_t bytes = slimkv_spark_group_bytes(fmt, dim, t_keep, g);
                    float *x = malloc((size_t)g * dim * sizeof(float)), *qnorm = malloc((size_t)dim * sizeof(float));
                    float *q = malloc((size_t)nq * dim * sizeof(float)), *u = malloc((size_t)nq * dim * sizeof(float));
                    buf a = buf_alloc(bytes, 4), b = buf_alloc(bytes, 8);
                    fill_values(&r, x, (size_t)g * dim);
                    for (int c = 0; c < dim; c++)
                        qnorm[c] = 0.1f + fabsf(rng_uniform(&r));
                    x[3] = x[2]; /* equal saliencies: ties go to the lower channel */
                    fill_normal(&r, q, (size_t)nq * dim, 0.3f);
                    for (int i = 0; i < nq * dim; i++)
                        u[i] = q[i] / sqrtf(qnorm[i % dim]);
                    k->pack_spark[fmt](x, qnorm, dim, t_keep, g, a.p);
                    ref->pack_spark[fmt](x, qnorm, dim, t_keep, g, b.p);
                    if (memcmp(a.p, b.p, (size_t)g * slimkv_spark_record_bytes(fmt, dim, t_keep, g)) != 0)
                        fail_msg("%s pack_spark %s dim=%d T=%d differs from scalar", k->name,
                                 slimkv_format_name(fmt), dim, t_keep);
                    float s[9 * 64], s_ref[9 * 64];
                    for (int i = 0; i < 9 * 64; i++)
                        s[i] = s_ref[i] = 777.0f;
                    k->score_spark[fmt](b.p, dim, t_keep, g, n, q, u, nq, s, 64);
                    ref->score_spark[fmt](b.p, dim, t_keep, g, n, q, u, nq, s_ref, 64);
                    for (int i = 0; i < nq * 64; i++) {
                        double l1 = 0;
                        if (i % 64 < n)
                            for (int c = 0; c < dim; c++)
                                l1 += fabs(q[(i / 64) * dim + c]) * 10.0 + fabs(u[(i / 64) * dim + c]) * 10.0;
                        if (fabs((double)s[i] - s_ref[i]) > 1e-4 * l1 + 1e-6)
                            fail_msg("%s score_spark %s dim=%d T=%d: %g vs %g", k->name, slimkv_format_name(fmt),
                                     dim, t_keep, s[i], s_ref[i]);
                    }
                    free(x);
                    free(qnorm);
                    free(q);
                    free(u);
                    free(a.raw);
                    free(b.raw);
                }
}

/* Residual/sink rows: f32 and f16, strided. */
static void check_rows(const slimkv_kernels *k, const slimkv_kernels *ref)
{
    test_rng r;
    rng_seed(&r, 15);
    static const int dims[] = {4, 12, 64, 96, 128, 132};
    static const int counts[] = {1, 5, 16, 31, 32};
    for (int half = 0; half < 2; half++)
        for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
            for (size_t ni = 0; ni < sizeof counts / sizeof *counts; ni++) {
                int d = dims[di], n = counts[ni], nq = query_counts[ni];
                size_t stride = (size_t)d + (ni % 2 ? 8 : 0), esize = half ? 2 : 4;
                buf rows = buf_alloc((size_t)n * stride * esize, esize == 2 ? 2 : 4);
                float *tmp = malloc((size_t)n * stride * sizeof(float));
                fill_values(&r, tmp, (size_t)n * stride);
                if (half)
                    ref->f32_to_f16(tmp, (uint16_t *)rows.p, (size_t)n * stride);
                else
                    memcpy(rows.p, tmp, (size_t)n * stride * sizeof(float));
                float *q = malloc((size_t)nq * d * sizeof(float));
                fill_normal(&r, q, (size_t)nq * d, 0.3f);
                int ld = n + 2;
                float *s = calloc((size_t)nq * ld, sizeof(float)), *s_ref = calloc((size_t)nq * ld, sizeof(float));
                float *acc = calloc((size_t)nq * d, sizeof(float)), *acc_ref = calloc((size_t)nq * d, sizeof(float));
                (half ? k->score_rows_f16 : k->score_rows_f32)(rows.p, stride, n, d, q, nq, s, ld);
                (half ? ref->score_rows_f16 : ref->score_rows_f32)(rows.p, stride, n, d, q, nq, s_ref, ld);
                int ldw = n + 1; /* weight rows with a stride of their own */
                float *w = malloc((size_t)nq * ldw * sizeof(float));
                for (int i = 0; i < nq * ldw; i++)
                    w[i] = fabsf(rng_uniform(&r)) * 0.2f;
                (half ? k->accum_rows_f16 : k->accum_rows_f32)(rows.p, stride, n, d, w, ldw, nq, acc);
                (half ? ref->accum_rows_f16 : ref->accum_rows_f32)(rows.p, stride, n, d, w, ldw, nq, acc_ref);
                free(w);
                for (int i = 0; i < nq * ld; i++)
                    if (fabsf(s[i] - s_ref[i]) > 1e-4f * (fabsf(s_ref[i]) + 1.0f) * sqrtf((float)d))
                        fail_msg("%s score_rows d=%d n=%d: %g vs %g", k->name, d, n, s[i], s_ref[i]);
                for (int i = 0; i < nq * d; i++)
                    if (fabsf(acc[i] - acc_ref[i]) > 1e-4f * (fabsf(acc_ref[i]) + 1.0f) * sqrtf((float)n))
                        fail_msg("%s accum_rows d=%d n=%d: %g vs %g", k->name, d, n, acc[i], acc_ref[i]);
                free(rows.raw);
                free(tmp);
                free(q);
                free(s);
                free(s_ref);
                free(acc);
                free(acc_ref);
            }
}

static void check_exp_sum(const slimkv_kernels *k, const slimkv_kernels *ref)
{
    test_rng r;
    rng_seed(&r, 16);
    for (int n = 1; n <= 67; n += 3) {
        float x[80], y[80];
        for (int i = 0; i < n; i++)
            x[i] = y[i] = i % 9 == 4 ? -INFINITY : rng_uniform(&r) * 30.0f - 10.0f;
        float sum = k->exp_sum(x, n, 20.0f), sum_ref = ref->exp_sum(y, n, 20.0f);
        assert_true(fabsf(sum - sum_ref) <= 1e-5f * sum_ref + 1e-30f);
        for (int i = 0; i < n; i++)
            if (fabsf(x[i] - y[i]) > 2e-6f * y[i] + 1e-37f)
                fail_msg("%s exp_sum n=%d at %d: %g vs %g", k->name, n, i, x[i], y[i]);
    }
}

static void check_conversions(const slimkv_kernels *k, const slimkv_kernels *ref)
{
    enum { N = 4099 };
    static float x[N], back[N], back_ref[N];
    static uint16_t h[N], h_ref[N];
    test_rng r;
    rng_seed(&r, 17);
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, 65504.0f, 65519.0f, 65520.0f, 1e-8f, 5.96e-8f,
                             2.98e-8f, 6.1e-5f, 6.0e-5f, 1.00048828125f, 1.000732421875f, -3.5f};
    for (int i = 0; i < N; i++) {
        int kind = i % 4;
        float v = rng_uniform(&r);
        x[i] = kind == 0 ? v * 70000.0f : kind == 1 ? v * 1e-4f : kind == 2 ? v * 1e-6f : v * 3.0f;
    }
    memcpy(x, special, sizeof special);
    k->f32_to_f16(x + 1, h + 1, N - 1); /* odd start and length: tails */
    ref->f32_to_f16(x + 1, h_ref + 1, N - 1);
    assert_memory_equal(h + 1, h_ref + 1, (N - 1) * sizeof(uint16_t));
    for (int i = 0; i < N; i++)
        h[i] = (uint16_t)(i * 16 + (i & 15)); /* every exponent, subnormals, Inf and NaN patterns */
    k->f16_to_f32(h + 1, back + 1, N - 1);
    ref->f16_to_f32(h + 1, back_ref + 1, N - 1);
    assert_memory_equal(back + 1, back_ref + 1, (N - 1) * sizeof(float));
}

/* ---- fused decode over whole groups (attend_groups) ----
 * The fused loop (tiles, pages, online softmax carried across tiles and
 * calls, prefetch) is checked against the same table's own family kernels
 * composed the plain way: all scores by score_k, one double-precision
 * softmax, the normalised weights through accum_v. That isolates the loop:
 * float pairs agree within 1e-4 of the channel's largest |v|; quantized
 * pairs within 2e-3 (the V fold quantizes weights relative to each block's
 * largest, so a weight may round to the next int8 step on one side only).
 * How far each family kernel may be from the scalar oracle is the business
 * of the family checks above. The scalar body, the oracle of every pair,
 * is also checked against a double-precision softmax over the decoded
 * stored values within 1e-4. Each run is done in one call and in two calls
 * that carry the softmax state, as the driver does. */
#define FUSED_PAGE_GROUPS 3 /* pages smaller than a tile: page crossings inside tiles */

typedef struct fused_case {
    slimkv_format kf, vf;
    int g, dk, dv, count, rows;
    int t_keep;           /* > 0: SparK K groups of dk = D channels keeping T per token */
    float *qnorm, *u;     /* SparK: the head's query norms, u = q / sqrt(qnorm) */
    uint8_t **k_pages, **v_pages;
    int n_pages;
    size_t kb, vb;
    float q_scale;
    float *q;
} fused_case;

static void fused_case_make(test_rng *r, const slimkv_kernels *ref, fused_case *fc)
{
    fc->kb = fc->t_keep ? slimkv_spark_group_bytes(fc->kf, fc->dk, fc->t_keep, fc->g)
                        : slimkv_k_group_bytes(fc->kf, fc->dk, fc->g);
    if (fc->t_keep) {
        fc->qnorm = malloc((size_t)fc->dk * sizeof(float));
        assert_non_null(fc->qnorm);
        for (int c = 0; c < fc->dk; c++)
            fc->qnorm[c] = 0.1f + fabsf(rng_uniform(r));
    }
    fc->vb = slimkv_v_block_bytes(fc->vf, fc->dv, fc->g);
    fc->n_pages = (fc->count + FUSED_PAGE_GROUPS - 1) / FUSED_PAGE_GROUPS;
    fc->k_pages = calloc((size_t)fc->n_pages, sizeof *fc->k_pages);
    fc->v_pages = calloc((size_t)fc->n_pages, sizeof *fc->v_pages);
    assert_non_null(fc->k_pages);
    assert_non_null(fc->v_pages);
    float *x = malloc((size_t)fc->g * (fc->dk > fc->dv ? fc->dk : fc->dv) * sizeof(float));
    assert_non_null(x);
    for (int p = 0; p < fc->n_pages; p++) {
        fc->k_pages[p] = calloc(FUSED_PAGE_GROUPS, fc->kb);
        fc->v_pages[p] = calloc(FUSED_PAGE_GROUPS, fc->vb);
        assert_non_null(fc->k_pages[p]);
        assert_non_null(fc->v_pages[p]);
    }
    for (int i = 0; i < fc->count; i++) {
        uint8_t *kg = fc->k_pages[i / FUSED_PAGE_GROUPS] + (size_t)(i % FUSED_PAGE_GROUPS) * fc->kb;
        uint8_t *vb = fc->v_pages[i / FUSED_PAGE_GROUPS] + (size_t)(i % FUSED_PAGE_GROUPS) * fc->vb;
        fill_values(r, x, (size_t)fc->g * fc->dk);
        if (fc->t_keep)
            ref->pack_spark[fc->kf](x, fc->qnorm, fc->dk, fc->t_keep, fc->g, kg);
        else
            ref->pack_k[fc->kf](x, fc->dk, fc->g, kg);
        for (int t = 0; t < fc->g; t++) {
            fill_values(r, x, (size_t)fc->dv);
            ref->pack_v[fc->vf](x, fc->dv, fc->g, vb, t);
        }
    }
    free(x);
    fc->q = malloc((size_t)fc->rows * fc->dk * sizeof(float));
    assert_non_null(fc->q);
    /* small queries: flat softmax; large ones: the max moves by more than
     * the slack between tiles, so accumulators are rescaled */
    fill_normal(r, fc->q, (size_t)fc->rows * fc->dk, fc->q_scale);
    if (fc->t_keep) {
        fc->u = malloc((size_t)fc->rows * fc->dk * sizeof(float));
        assert_non_null(fc->u);
        for (size_t i = 0; i < (size_t)fc->rows * fc->dk; i++)
            fc->u[i] = fc->q[i] / sqrtf(fc->qnorm[i % (size_t)fc->dk]);
    }
}

static void fused_case_free(fused_case *fc)
{
    for (int p = 0; p < fc->n_pages; p++) {
        free(fc->k_pages[p]);
        free(fc->v_pages[p]);
    }
    free(fc->k_pages);
    free(fc->v_pages);
    free(fc->q);
    free(fc->qnorm);
    free(fc->u);
}

static slimkv_group_span fused_span(const fused_case *fc, int first, int count)
{
    slimkv_group_span sp = {fc->k_pages, fc->v_pages, fc->kb, fc->vb, FUSED_PAGE_GROUPS, first, count,
                            fc->dk,      fc->dv,      fc->g,  fc->kf, fc->vf,       fc->dk, fc->t_keep, fc->u,
                            0,           0,           NULL};
    return sp;
}

/* out[row][c] = acc / l after the kernel ran over the span in `calls` calls. */
static void fused_run(const slimkv_kernels *k, const fused_case *fc, int calls, float *out)
{
    float *m = malloc((size_t)fc->rows * sizeof(float)), *l = malloc((size_t)fc->rows * sizeof(float));
    float *acc = calloc((size_t)fc->rows * fc->dv, sizeof(float));
    assert_true(m && l && acc);
    for (int i = 0; i < fc->rows; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    int first_count = calls == 1 ? fc->count : fc->count / 3 + 1;
    slimkv_attend_groups_fn fused = fc->t_keep ? k->attend_spark_groups[fc->kf][fc->vf] : k->attend_groups[fc->kf][fc->vf];
    slimkv_group_span a = fused_span(fc, 0, first_count);
    fused(&a, fc->q, fc->rows, m, l, acc);
    if (first_count < fc->count) {
        slimkv_group_span b = fused_span(fc, first_count, fc->count - first_count);
        fused(&b, fc->q, fc->rows, m, l, acc);
    }
    for (int i = 0; i < fc->rows; i++) {
        assert_true(l[i] > 0.0f);
        for (int c = 0; c < fc->dv; c++)
            out[(size_t)i * fc->dv + c] = acc[(size_t)i * fc->dv + c] / l[i];
    }
    free(m);
    free(l);
    free(acc);
}

/* The plain composition of k's family kernels; vmax[c] = the largest |v|
 * of channel c (decoded). */
static void fused_composed(const slimkv_kernels *k, const fused_case *fc, float *out, double *vmax)
{
    int n = fc->count * fc->g;
    float *s = malloc((size_t)fc->rows * n * sizeof(float));
    assert_non_null(s);
    for (int j = 0; j < fc->count; j++) {
        const uint8_t *kg = fc->k_pages[j / FUSED_PAGE_GROUPS] + (size_t)(j % FUSED_PAGE_GROUPS) * fc->kb;
        if (fc->t_keep)
            k->score_spark[fc->kf](kg, fc->dk, fc->t_keep, fc->g, fc->g, fc->q, fc->u, fc->rows, s + (size_t)j * fc->g,
                                   n);
        else
            k->score_k[fc->kf](kg, fc->dk, fc->g, fc->g, fc->q, fc->rows, s + (size_t)j * fc->g, n);
    }
    for (int i = 0; i < fc->rows; i++) {
        float *si = s + (size_t)i * n;
        double mx = -INFINITY, l = 0.0;
        for (int t = 0; t < n; t++)
            mx = si[t] > mx ? si[t] : mx;
        for (int t = 0; t < n; t++)
            l += exp(si[t] - mx);
        for (int t = 0; t < n; t++)
            si[t] = (float)(exp(si[t] - mx) / l);
    }
    memset(out, 0, (size_t)fc->rows * fc->dv * sizeof(float));
    for (int c = 0; c < fc->dv; c++)
        vmax[c] = 0.0;
    for (int j = 0; j < fc->count; j++) {
        const uint8_t *vb = fc->v_pages[j / FUSED_PAGE_GROUPS] + (size_t)(j % FUSED_PAGE_GROUPS) * fc->vb;
        k->accum_v[fc->vf](vb, fc->dv, fc->g, fc->g, s + (size_t)j * fc->g, n, fc->rows, out);
        for (int t = 0; t < fc->g; t++)
            for (int c = 0; c < fc->dv; c++) {
                double v = fabs(v_value(fc->vf, vb, fc->dv, fc->g, t, c));
                vmax[c] = v > vmax[c] ? v : vmax[c];
            }
    }
    free(s);
}

/* The double-precision oracle; vmax[c] = the largest |v| of channel c. */
static void fused_oracle(const fused_case *fc, double *out, double *vmax)
{
    int n = fc->count * fc->g;
    double *s = malloc((size_t)n * sizeof(double));
    assert_non_null(s);
    for (int c = 0; c < fc->dv; c++)
        vmax[c] = 0.0;
    for (int i = 0; i < fc->rows; i++) {
        double mx = -INFINITY, l = 0.0;
        for (int t = 0; t < n; t++) {
            const uint8_t *kg = fc->k_pages[t / fc->g / FUSED_PAGE_GROUPS] +
                                (size_t)(t / fc->g % FUSED_PAGE_GROUPS) * fc->kb;
            double d = 0.0;
            for (int c = 0; c < fc->dk; c++)
                d += (double)fc->q[(size_t)i * fc->dk + c] * k_value(fc->kf, kg, fc->dk, fc->g, c, t % fc->g);
            s[t] = d;
            mx = d > mx ? d : mx;
        }
        for (int c = 0; c < fc->dv; c++)
            out[(size_t)i * fc->dv + c] = 0.0;
        for (int t = 0; t < n; t++) {
            const uint8_t *vb = fc->v_pages[t / fc->g / FUSED_PAGE_GROUPS] +
                                (size_t)(t / fc->g % FUSED_PAGE_GROUPS) * fc->vb;
            double p = exp(s[t] - mx);
            l += p;
            for (int c = 0; c < fc->dv; c++) {
                double v = v_value(fc->vf, vb, fc->dv, fc->g, t % fc->g, c);
                out[(size_t)i * fc->dv + c] += p * v;
                vmax[c] = fabs(v) > vmax[c] ? fabs(v) : vmax[c];
            }
        }
        for (int c = 0; c < fc->dv; c++)
            out[(size_t)i * fc->dv + c] /= l;
    }
    free(s);
}

static void check_attend_groups(const slimkv_kernels *k, const slimkv_kernels *ref)
{
    static const int dims[][2] = {{8, 17}, {64, 64}, {128, 128}, {100, 130}};
    static const int rows_of[] = {1, 4, 5, 9};
    test_rng r;
    rng_seed(&r, 19);
    int ran = 0;
    for (size_t ki = 0; ki < SLIMKV_FORMAT_COUNT; ki++)
        for (size_t vi = 0; vi < SLIMKV_FORMAT_COUNT; vi++) {
            slimkv_format kf = all_formats[ki], vf = all_formats[vi];
            /* every table serves every pair */
            assert_non_null(k->attend_groups[kf][vf]);
            if (kf == SLIMKV_Q3) /* not a SparK record format */
                assert_null(k->attend_spark_groups[kf][vf]);
            else
                assert_non_null(k->attend_spark_groups[kf][vf]);
            for (size_t gi = 0; gi < 2; gi++)
                for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
                    /* quick (valgrind, emulators): half the shapes of each pair, each shape on half the pairs */
                    if (test_quick() && (ki + vi + gi + di) % 2)
                        continue;
                    fused_case fc = {.kf = kf, .vf = vf, .g = group_sizes[gi], .dk = dims[di][0], .dv = dims[di][1],
                                     .count = 19 + (int)di, .rows = rows_of[(ki + vi + di) % 4],
                                     .q_scale = (gi + di) % 2 ? 0.6f : 0.05f};
                    fused_case_make(&r, ref, &fc);
                    size_t n_out = (size_t)fc.rows * fc.dv;
                    float *got = malloc(n_out * sizeof(float)), *split = malloc(n_out * sizeof(float));
                    float *composed = malloc(n_out * sizeof(float));
                    double *want = malloc(n_out * sizeof(double)), *vmax = malloc((size_t)fc.dv * sizeof(double));
                    assert_true(got && split && composed && want && vmax);
                    fused_run(k, &fc, 1, got);
                    fused_run(k, &fc, 2, split);
                    fused_composed(k, &fc, composed, vmax);
                    double frac = slimkv_is_quantized(kf) || slimkv_is_quantized(vf) ? 2e-3 : 1e-4;
                    for (size_t i = 0; i < n_out; i++) {
                        double tol = frac * vmax[i % (size_t)fc.dv] + 1e-6;
                        if (fabs((double)got[i] - composed[i]) > tol || fabs((double)split[i] - composed[i]) > tol)
                            fail_msg("%s attend_groups %s/%s g=%d dk=%d dv=%d rows=%d at %zu: %g (in two calls %g) "
                                     "vs %g composed (tol %g)",
                                     k->name, slimkv_format_name(kf), slimkv_format_name(vf), fc.g, fc.dk, fc.dv,
                                     fc.rows, i, got[i], split[i], composed[i], tol);
                    }
                    if (k == ref) {
                        fused_oracle(&fc, want, vmax);
                        for (size_t i = 0; i < n_out; i++)
                            if (fabs(got[i] - want[i]) > 1e-4 * vmax[i % (size_t)fc.dv] + 1e-6)
                                fail_msg("scalar attend_groups %s/%s g=%d dk=%d dv=%d at %zu: %g vs %g (double)",
                                         slimkv_format_name(kf), slimkv_format_name(vf), fc.g, fc.dk, fc.dv, i,
                                         got[i], want[i]);
                    }
                    free(composed);
                    free(got);
                    free(split);
                    free(want);
                    free(vmax);
                    fused_case_free(&fc);
                    ran++;
                }
        }
    assert_true(ran > 0);
}

/* The fused SparK bodies the same way: against the table's own score_spark
 * and accum_v composed, every K x V format pair, T = D, about half, 4. */
static void check_attend_spark_groups(const slimkv_kernels *k, const slimkv_kernels *ref)
{
    static const int dims[][2] = {{16, 17}, {64, 64}, {128, 128}};
    test_rng r;
    rng_seed(&r, 23);
    for (size_t ki = 0; ki < 6; ki++)
        for (size_t vi = 0; vi < SLIMKV_FORMAT_COUNT; vi++)
            for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
                if (test_quick() && (ki + vi + di) % 3) /* quick: one shape per pair, each shape on a third */
                    continue;
                slimkv_format kf = all_formats[ki], vf = all_formats[vi];
                int dim = dims[di][0], t_keep = (ki + vi + di) % 3 == 0 ? dim : (ki + vi + di) % 3 == 1 ? dim / 2 + 1 : 4;
                fused_case fc = {.kf = kf, .vf = vf, .g = group_sizes[(ki + di) % 2], .dk = dim, .dv = dims[di][1],
                                 .count = 11 + (int)di, .rows = (int)(1 + (ki + vi) % 5), .t_keep = t_keep,
                                 .q_scale = di % 2 ? 0.6f : 0.05f};
                fused_case_make(&r, ref, &fc);
                size_t n_out = (size_t)fc.rows * fc.dv;
                float *got = malloc(n_out * sizeof(float)), *split = malloc(n_out * sizeof(float));
                float *composed = malloc(n_out * sizeof(float));
                double *vmax = malloc((size_t)fc.dv * sizeof(double));
                assert_true(got && split && composed && vmax);
                fused_run(k, &fc, 1, got);
                fused_run(k, &fc, 2, split);
                fused_composed(k, &fc, composed, vmax);
                double frac = slimkv_is_quantized(vf) ? 2e-3 : 1e-4;
                for (size_t i = 0; i < n_out; i++) {
                    double tol = frac * vmax[i % (size_t)fc.dv] + 1e-6;
                    if (fabs((double)got[i] - composed[i]) > tol || fabs((double)split[i] - composed[i]) > tol)
                        fail_msg("%s attend_spark_groups %s/%s g=%d D=%d T=%d dv=%d rows=%d at %zu: %g (in two calls "
                                 "%g) vs %g composed (tol %g)",
                                 k->name, slimkv_format_name(kf), slimkv_format_name(vf), fc.g, dim, t_keep, fc.dv,
                                 fc.rows, i, got[i], split[i], composed[i], tol);
                }
                free(composed);
                free(got);
                free(split);
                free(vmax);
                fused_case_free(&fc);
            }
}

/* ---- Walsh-Hadamard rotation ----
 * Forward against the explicit matrix in double, H[i][j] = (-1)^popcount(i & j),
 * and inverse(forward(x)) = x, for every power of 2 a head_dim can be. */
static void check_rotate(const slimkv_kernels *k, const slimkv_kernels *ref)
{
    (void)ref;
    test_rng r;
    rng_seed(&r, 29);
    for (int dim = 4; dim <= SLIMKV_MAX_HEAD_DIM; dim *= 2) {
        float *x = malloc((size_t)dim * sizeof(float)), *y = malloc((size_t)dim * sizeof(float));
        float *signs = malloc((size_t)dim * sizeof(float));
        assert_true(x && y && signs);
        fill_normal(&r, x, (size_t)dim, 1.0f);
        for (int c = 0; c < dim; c++)
            signs[c] = rng_uniform(&r) < 0.0f ? -1.0f : 1.0f;
        memcpy(y, x, (size_t)dim * sizeof(float));
        k->rotate(y, dim, signs, 0);
        double norm_x = 0.0, norm_y = 0.0;
        for (int i = 0; i < dim; i++) {
            double want = 0.0;
            for (int j = 0; j < dim; j++)
                want += (__builtin_popcount((unsigned)(i & j)) % 2 ? -1.0 : 1.0) * signs[j] * x[j];
            want /= sqrt((double)dim);
            if (fabs(y[i] - want) > 1e-5 * sqrt((double)dim))
                fail_msg("%s rotate dim=%d at %d: %g vs %g", k->name, dim, i, y[i], want);
            norm_x += (double)x[i] * x[i];
            norm_y += (double)y[i] * y[i];
        }
        assert_true(fabs(norm_y - norm_x) <= 1e-4 * norm_x); /* orthogonal */
        k->rotate(y, dim, signs, 1);
        for (int i = 0; i < dim; i++)
            if (fabs(y[i] - x[i]) > 1e-5)
                fail_msg("%s rotate dim=%d: inverse(forward(x)) at %d is %g, x %g", k->name, dim, i, y[i], x[i]);
        free(x);
        free(y);
        free(signs);
    }
}

/* One body over every ISA. */
typedef void (*family_check)(const slimkv_kernels *, const slimkv_kernels *);

static void run_on_every_isa(family_check check)
{
    const slimkv_kernels *ref = scalar_table();
    int ran = 0;
    for (size_t i = 0; i < sizeof isa_names / sizeof *isa_names; i++) {
        const slimkv_kernels *k = isa_table_or_skip(isa_names[i]);
        if (!k)
            continue;
        print_message("  [%s]\n", k->name);
        check(k, ref);
        ran++;
    }
    assert_true(ran >= 1);
}

static void test_pack_k(void **state) { (void)state; run_on_every_isa(check_pack_k); }
static void test_pack_v(void **state) { (void)state; run_on_every_isa(check_pack_v); }
static void test_score_k(void **state) { (void)state; run_on_every_isa(check_score_k); }
static void test_accum_v(void **state) { (void)state; run_on_every_isa(check_accum_v); }
static void test_rows(void **state) { (void)state; run_on_every_isa(check_rows); }
static void test_spark(void **state) { (void)state; run_on_every_isa(check_spark); }
static void test_exp_sum(void **state) { (void)state; run_on_every_isa(check_exp_sum); }
static void test_attend_groups(void **state) { (void)state; run_on_every_isa(check_attend_groups); }
static void test_attend_spark_groups(void **state) { (void)state; run_on_every_isa(check_attend_spark_groups); }
static void test_rotate(void **state) { (void)state; run_on_every_isa(check_rotate); }
static void test_conversions(void **state) { (void)state; run_on_every_isa(check_conversions); }

/* The scalar fp16 conversion itself against known encodings. */
static void test_f16_reference_values(void **state)
{
    (void)state;
    assert_int_equal(slimkv_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(slimkv_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(slimkv_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(slimkv_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(slimkv_f32_to_f16(5.9604645e-8f), 0x0001);
    assert_int_equal(slimkv_f32_to_f16(2.9802322e-8f), 0x0000); /* tie to even */
    assert_int_equal(slimkv_f32_to_f16(1.00048828125f), 0x3c00); /* tie to even */
    assert_int_equal(slimkv_f32_to_f16(1.000732421875f), 0x3c01); /* 0.75 ulp rounds up */
    assert_int_equal(slimkv_f32_to_f16(1.00146484375f), 0x3c02);  /* 1.5 ulp: tie to even */
    assert_int_equal(slimkv_f32_to_f16(6.097555e-5f), 0x03ff);
    assert_true(slimkv_f16_to_f32(0x0001) == 5.9604645e-8f);
    assert_true(slimkv_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(isinf(slimkv_f16_to_f32(0xfc00)));
    assert_true(isnan(slimkv_f16_to_f32(0x7e00)));
    assert_int_equal(slimkv_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(slimkv_f32_to_bf16(1.00390625f), 0x3f80); /* tie to even */
    assert_int_equal(slimkv_f32_to_bf16(1.01171875f), 0x3f82);
}

/* The ISA override: unknown names are errors, never silent fallbacks. */
static void test_isa_selection(void **state)
{
    (void)state;
    const slimkv_kernels *k;
    assert_int_equal(slimkv_select_kernels("scalar", &k), SLIMKV_OK);
    assert_int_equal(slimkv_select_kernels("sse9", &k), SLIMKV_ERR_UNSUPPORTED);
    assert_int_equal(slimkv_isa_supported("scalar"), 1);
    assert_int_equal(slimkv_isa_supported("bogus"), 0);
    assert_int_equal(slimkv_isa_supported(NULL), 0);
#if defined(__x86_64__)
    assert_int_equal(slimkv_isa_supported("neon"), 0);
    assert_int_equal(slimkv_isa_supported("neon-dotprod"), 0);
#elif defined(__aarch64__)
    assert_int_equal(slimkv_isa_supported("avx2"), 0);
    assert_int_equal(slimkv_isa_supported("neon"), 1);
#elif defined(__arm__)
    assert_int_equal(slimkv_isa_supported("avx2"), 0);
    /* no dot-product table on 32-bit ARM: a known name, never supported */
    assert_int_equal(slimkv_isa_supported("neon-dotprod"), 0);
    assert_int_equal(slimkv_select_kernels("neon-dotprod", &k), SLIMKV_ERR_UNSUPPORTED);
    /* NEON kernels where the kernel reports NEON and VFPv4 (FMA) */
    unsigned long hwcap = getauxval(AT_HWCAP);
    assert_int_equal(slimkv_isa_supported("neon"), (hwcap & (1ul << 12)) && (hwcap & (1ul << 16)));
#endif
    const char *name;
    assert_int_equal(slimkv_isa_auto(&name), SLIMKV_OK);
    assert_true(slimkv_isa_supported(name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_reference_values),
        cmocka_unit_test(test_isa_selection),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_pack_k),
        cmocka_unit_test(test_pack_v),
        cmocka_unit_test(test_score_k),
        cmocka_unit_test(test_accum_v),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_spark),
        cmocka_unit_test(test_exp_sum),
        cmocka_unit_test(test_attend_groups),
        cmocka_unit_test(test_attend_spark_groups),
        cmocka_unit_test(test_rotate),
    };
    return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
