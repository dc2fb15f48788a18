/* The model runner's quantized weight products (tools/run/qmm*.c): every ISA
 * this machine runs against the weights dequantized to float and multiplied
 * in double, within the bound the activations' int8 rounding allows, and
 * against the scalar body within float summation order. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "oracle.h"
#include "qmm.h"

static const char *const isa_names[] = {"scalar", "avx2", "avx512", "neon", "neon-dotprod"};
#define N_ISAS (int)(sizeof isa_names / sizeof isa_names[0])

/* A random f16 scale in about [lo, 2 lo), as its bits. */
static uint16_t f16_bits_near(test_rng *r, int exponent, int negative)
{
    uint16_t man = (uint16_t)((rng_uniform(r) + 1.0f) * 511.0f) & 0x3ff;
    return (uint16_t)((negative ? 0x8000 : 0) | (exponent + 15) << 10 | man);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* n_rows x n_blocks random blocks of the type, with the float weights they stand for. */
static void make_weights(test_rng *r, qmm_type type, int n_rows, int n_blocks, uint8_t *w, float *wf)
{
    size_t bb = qmm_block_bytes(type);
    for (int i = 0; i < n_rows * n_blocks; i++) {
        uint8_t *blk = w + (size_t)i * bb;
        float *f = wf + (size_t)i * QMM_BLOCK;
        put16(blk, f16_bits_near(r, -6 + (int)(3 * (rng_uniform(r) + 1.0f)), 0));
        float d = qmm_f16(blk);
        if (type == QMM_Q8_0) {
            for (int j = 0; j < QMM_BLOCK; j++) {
                /* -128 too: a file may hold it, though ggml writes -127..127 */
                int v = (int)floorf((rng_uniform(r) + 1.0f) * 128.0f) - 128;
                blk[2 + j] = (uint8_t)(int8_t)(v > 127 ? 127 : v);
                f[j] = (float)(int8_t)blk[2 + j] * d;
            }
            continue;
        }
        float m = 0.0f;
        int codes = 2;
        if (type == QMM_Q4_1) {
            put16(blk + 2, f16_bits_near(r, -4, rng_uniform(r) < 0));
            m = qmm_f16(blk + 2);
            codes = 4;
        }
        for (int j = 0; j < 16; j++) {
            int lo = (int)((rng_uniform(r) + 1.0f) * 8.0f) & 15, hi = (int)((rng_uniform(r) + 1.0f) * 8.0f) & 15;
            blk[codes + j] = (uint8_t)(lo | hi << 4);
            f[j] = type == QMM_Q4_0 ? (float)(lo - 8) * d : (float)lo * d + m;
            f[j + 16] = type == QMM_Q4_0 ? (float)(hi - 8) * d : (float)hi * d + m;
        }
    }
}

typedef struct shape {
    int n_rows, n_blocks, n_tok;
} shape;

static void check_isa(const qmm_kernels *k, const qmm_kernels *scalar, qmm_type type, shape s, uint64_t seed,
                      double *worst_ratio)
{
    test_rng r;
    rng_seed(&r, seed);
    int n_in = s.n_blocks * QMM_BLOCK;
    uint8_t *w = malloc((size_t)s.n_rows * s.n_blocks * qmm_block_bytes(type));
    float *wf = malloc((size_t)s.n_rows * n_in * sizeof *wf), *x = malloc((size_t)s.n_tok * n_in * sizeof *x);
    size_t ys = (size_t)s.n_rows + 3; /* a stride wider than the rows: nothing past them is written */
    float *y = malloc((size_t)s.n_tok * ys * sizeof *y), *y_ref = malloc((size_t)s.n_tok * ys * sizeof *y_ref);
    make_weights(&r, type, s.n_rows, s.n_blocks, w, wf);
    fill_normal(&r, x, (size_t)s.n_tok * n_in, 1.0f);
    for (int i = 0; i < n_in; i += 37)
        x[i] *= 20.0f; /* outliers: some blocks' scales are set by one value */
    if (s.n_blocks > 2)
        memset(x + QMM_BLOCK, 0, QMM_BLOCK * sizeof *x); /* an all-zero block of the first token */
    qmm_acts a;
    assert_int_equal(qmm_acts_alloc(&a, (size_t)s.n_tok * s.n_blocks), SLIMKV_OK);
    qmm_quantize(x, s.n_tok, s.n_blocks, &a);
    for (size_t i = 0; i < (size_t)s.n_tok * ys; i++)
        y[i] = y_ref[i] = -12345.0f;
    k->rows[type](w, s.n_rows, &a, y, ys);
    scalar->rows[type](w, s.n_rows, &a, y_ref, ys);
    for (int t = 0; t < s.n_tok; t++) {
        for (int o = 0; o < s.n_rows; o++) {
            /* exact product in double; the bound: each activation is off by
             * at most half its block's step d, so the sum by sum |w| d / 2 */
            double exact = 0.0, bound = 0.0, magnitude = 0.0;
            for (int b = 0; b < s.n_blocks; b++) {
                double d = a.d[(size_t)t * s.n_blocks + b];
                for (int j = 0; j < QMM_BLOCK; j++) {
                    size_t i = (size_t)b * QMM_BLOCK + j;
                    double wi = wf[(size_t)o * n_in + i], xi = x[(size_t)t * n_in + i];
                    exact += wi * xi;
                    bound += fabs(wi) * d * 0.5;
                    magnitude += fabs(wi * xi);
                }
            }
            double got = y[(size_t)t * ys + o], ref = y_ref[(size_t)t * ys + o];
            double err = fabs(got - exact), slack = 1e-5 * magnitude + 1e-30;
            if (err > bound + slack)
                fail_msg("%s type %d rows %d blocks %d tok %d: y[%d][%d] = %.7g, exact %.7g, bound %.3g", k->name,
                         type, s.n_rows, s.n_blocks, s.n_tok, t, o, got, exact, bound);
            if (fabs(got - ref) > slack)
                fail_msg("%s type %d: y[%d][%d] = %.9g, scalar %.9g", k->name, type, t, o, got, ref);
            if (bound > 0 && err / bound > *worst_ratio)
                *worst_ratio = err / bound;
        }
        for (size_t o = (size_t)s.n_rows; o < ys; o++)
            assert_true(y[(size_t)t * ys + o] == -12345.0f);
    }
    qmm_acts_free(&a);
    free(w), free(wf), free(x), free(y), free(y_ref);
}

static void test_every_isa_against_float(void **state)
{
    (void)state;
    const qmm_kernels *scalar;
    assert_int_equal(qmm_select("scalar", &scalar), SLIMKV_OK);
    const shape shapes[] = {{1, 1, 1}, {7, 3, 1}, {16, 18, 1}, {5, 48, 4}, {9, 18, 5}, {3, 2, 9}, {17, 48, 13}};
    for (int i = 0; i < N_ISAS; i++) {
        const qmm_kernels *k;
        if (qmm_select(isa_names[i], &k) != SLIMKV_OK) {
            print_message("  %s: not supported here\n", isa_names[i]);
            continue;
        }
        assert_string_equal(k->name, isa_names[i]);
        double worst = 0.0;
        for (int type = 0; type < QMM_TYPE_COUNT; type++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                check_isa(k, scalar, (qmm_type)type, shapes[s], 1000 + (uint64_t)type * 100 + s, &worst);
        print_message("  %s: largest error %.3f of the rounding bound\n", isa_names[i], worst);
    }
}

/* The quantization itself: codes within [-127, 127], d * q within d / 2 of
 * x, and sum = d * (sum of codes). */
static void test_quantize(void **state)
{
    (void)state;
    test_rng r;
    rng_seed(&r, 7);
    enum { NB = 6 };
    float x[NB * QMM_BLOCK];
    fill_normal(&r, x, NB * QMM_BLOCK, 3.0f);
    memset(x, 0, QMM_BLOCK * sizeof *x);
    x[QMM_BLOCK + 5] = -1e30f;
    qmm_acts a;
    assert_int_equal(qmm_acts_alloc(&a, NB), SLIMKV_OK);
    qmm_quantize(x, 1, NB, &a);
    assert_true(a.d[0] == 0.0f && a.sum[0] == 0.0f);
    for (int b = 0; b < NB; b++) {
        int sum = 0;
        for (int j = 0; j < QMM_BLOCK; j++) {
            int q = a.q[b * QMM_BLOCK + j];
            assert_true(q >= -127 && q <= 127);
            assert_true(fabsf(a.d[b] * (float)q - x[b * QMM_BLOCK + j]) <= a.d[b] * 0.5f * 1.0001f + 1e-30f);
            sum += q;
        }
        assert_true(fabsf(a.sum[b] - a.d[b] * (float)sum) <= 1e-6f * fabsf(a.sum[b]));
    }
    qmm_acts_free(&a);
}

static void test_selection(void **state)
{
    (void)state;
    const qmm_kernels *k = NULL;
    assert_int_equal(qmm_select("bogus", &k), SLIMKV_ERR_UNSUPPORTED);
    assert_null(k);
    assert_int_equal(qmm_select("auto", &k), SLIMKV_OK);
    /* the library's verdict: auto is an ISA it supports here */
    assert_true(slimkv_isa_supported(k->name));
    for (int i = 0; i < N_ISAS; i++) {
        const qmm_kernels *t;
        slimkv_status st = qmm_select(isa_names[i], &t);
        if (!slimkv_isa_supported(isa_names[i]))
            assert_int_equal(st, SLIMKV_ERR_UNSUPPORTED);
    }
    assert_int_equal(qmm_block_bytes(QMM_Q4_0), 18);
    assert_int_equal(qmm_block_bytes(QMM_Q4_1), 20);
    assert_int_equal(qmm_block_bytes(QMM_Q8_0), 34);
    assert_int_equal(qmm_block_bytes((qmm_type)9), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize),
        cmocka_unit_test(test_selection),
        cmocka_unit_test(test_every_isa_against_float),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
