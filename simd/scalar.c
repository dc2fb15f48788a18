/* Reference kernel bodies: portable C, the oracle every ISA is tested against.
 * Written for clarity, not speed. */
#include <math.h>
#include <string.h>

#include "format_math.h"
#include "hadamard.h"
#include "kernels.h"
#include "tile_loop.h"

/* ---- fp16 / bf16 conversions (round to nearest even, NaN kept quiet) ---- */

uint16_t slimkv_f32_to_f16(float f)
{
    return slimkv_half_from_float(f);
}

float slimkv_f16_to_f32(uint16_t h)
{
    return slimkv_half_to_float(h);
}

uint16_t slimkv_f32_to_bf16(float f)
{
    return slimkv_bfloat_from_float(f);
}

float slimkv_bf16_to_f32(uint16_t h)
{
    return slimkv_bfloat_to_float(h);
}

static void f32_to_f16_scalar(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = slimkv_f32_to_f16(src[i]);
}

static void f16_to_f32_scalar(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = slimkv_f16_to_f32(src[i]);
}

/* ---- element access shared by the dense bodies ---- */

/* Elements are read and written through memcpy: SparK records place their
 * values at any 2-byte offset (the mask and sign bytes come first). */
static float load_elem(slimkv_format fmt, const void *base, size_t i)
{
    float f;
    uint16_t h;
    if (fmt == SLIMKV_F32) {
        memcpy(&f, (const uint8_t *)base + i * 4, sizeof f);
        return f;
    }
    memcpy(&h, (const uint8_t *)base + i * 2, sizeof h);
    return fmt == SLIMKV_F16 ? slimkv_f16_to_f32(h) : slimkv_bf16_to_f32(h);
}

static void store_elem(slimkv_format fmt, void *base, size_t i, float x)
{
    if (fmt == SLIMKV_F32) {
        memcpy((uint8_t *)base + i * 4, &x, sizeof x);
        return;
    }
    uint16_t h = fmt == SLIMKV_F16 ? slimkv_f32_to_f16(x) : slimkv_f32_to_bf16(x);
    memcpy((uint8_t *)base + i * 2, &h, sizeof h);
}

static void store_elems(slimkv_format fmt, void *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_elem(fmt, dst, i, src[i]);
}

static void score_dense(slimkv_format fmt, const void *rows, size_t stride, int n, int d, const float *q,
                        int nq, float *s, int lds)
{
    for (int i = 0; i < nq; i++)
        for (int t = 0; t < n; t++) {
            float acc = 0.0f;
            for (int c = 0; c < d; c++)
                acc += q[(size_t)i * d + c] * load_elem(fmt, rows, (size_t)t * stride + c);
            s[(size_t)i * lds + t] = acc;
        }
}

static void accum_dense(slimkv_format fmt, const void *rows, size_t stride, int n, int d, const float *w,
                        int ldw, int nq, float *acc)
{
    for (int i = 0; i < nq; i++)
        for (int t = 0; t < n; t++) {
            float wt = w[(size_t)i * ldw + t];
            for (int c = 0; c < d; c++)
                acc[(size_t)i * d + c] += wt * load_elem(fmt, rows, (size_t)t * stride + c);
        }
}

static void slimkv_score_rows_f32_scalar(const void *rows, size_t stride, int n, int d, const float *q, int nq,
                                         float *s, int lds)
{
    score_dense(SLIMKV_F32, rows, stride, n, d, q, nq, s, lds);
}

static void slimkv_score_rows_f16_scalar(const void *rows, size_t stride, int n, int d, const float *q, int nq,
                                         float *s, int lds)
{
    score_dense(SLIMKV_F16, rows, stride, n, d, q, nq, s, lds);
}

static void slimkv_accum_rows_f32_scalar(const void *rows, size_t stride, int n, int d, const float *w, int ldw,
                                         int nq, float *acc)
{
    accum_dense(SLIMKV_F32, rows, stride, n, d, w, ldw, nq, acc);
}

static void slimkv_accum_rows_f16_scalar(const void *rows, size_t stride, int n, int d, const float *w, int ldw,
                                         int nq, float *acc)
{
    accum_dense(SLIMKV_F16, rows, stride, n, d, w, ldw, nq, acc);
}

/* The dense group kernels on this file's row kernels (store_elems,
 * score_dense, accum_dense above), then the entry points of each format. */
#include "dense_groups.h"

static void slimkv_pack_k_f32_scalar(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_F32, src, dk, g, group);
}

static void slimkv_pack_v_f32_scalar(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_F32, src, dv, g, block, slot);
}

static void slimkv_score_k_f32_scalar(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                      int lds)
{
    score_k_dense(SLIMKV_F32, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_f32_scalar(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                      float *acc)
{
    accum_v_dense(SLIMKV_F32, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_f16_scalar(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_F16, src, dk, g, group);
}

static void slimkv_pack_v_f16_scalar(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_F16, src, dv, g, block, slot);
}

static void slimkv_score_k_f16_scalar(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                      int lds)
{
    score_k_dense(SLIMKV_F16, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_f16_scalar(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                      float *acc)
{
    accum_v_dense(SLIMKV_F16, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_bf16_scalar(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_dense(SLIMKV_BF16, src, dk, g, group);
}

static void slimkv_pack_v_bf16_scalar(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_dense(SLIMKV_BF16, src, dv, g, block, slot);
}

static void slimkv_score_k_bf16_scalar(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                       int lds)
{
    score_k_dense(SLIMKV_BF16, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_bf16_scalar(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                       float *acc)
{
    accum_v_dense(SLIMKV_BF16, block, dv, g, n, w, ldw, nq, acc);
}


/* ---- quantized codes: position of one code inside a K group / V block ---- */

/* KIVI min/max parameters of n values with stride; returns fp16 scale and min. */
static void quant_params(const float *x, size_t stride, int n, int bits, uint16_t *scale_h, uint16_t *min_h)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        float v = x[(size_t)i * stride];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    slimkv_quant_params_of(lo, hi, bits, scale_h, min_h);
}

static void pack_k_quant(int bits, slimkv_format fmt, const float *src, int dk, int g, uint8_t *group)
{
    size_t off = slimkv_k_params_offset(fmt, dk, g);
    uint16_t *scale = (uint16_t *)(group + off), *mins = scale + dk;
    memset(group, 0, off);
    for (int c = 0; c < dk; c++) {
        quant_params(src + c, (size_t)dk, g, bits, &scale[c], &mins[c]);
        float mn = slimkv_f16_to_f32(mins[c]), inv = slimkv_inverse_scale(slimkv_f16_to_f32(scale[c]));
        for (int t = 0; t < g; t++)
            slimkv_code_put(group, slimkv_k_code_place(bits, dk, g, c, t),
                            slimkv_quant_code(src[(size_t)t * dk + c], mn, inv, bits));
    }
}

static void pack_v_quant(int bits, slimkv_format fmt, const float *src, int dv, int g, uint8_t *block, int slot)
{
    int nvg = (dv + g - 1) / g;
    uint16_t *scale = (uint16_t *)(block + slimkv_v_params_offset(fmt, dv, g)), *mins = scale + (size_t)g * nvg;
    for (int j = 0; j < nvg; j++) {
        int c0 = j * g, cn = dv - c0 < g ? dv - c0 : g;
        uint16_t *sh = &scale[(size_t)slot * nvg + j], *mh = &mins[(size_t)slot * nvg + j];
        quant_params(src + c0, 1, cn, bits, sh, mh);
        float mn = slimkv_f16_to_f32(*mh), inv = slimkv_inverse_scale(slimkv_f16_to_f32(*sh));
        for (int c = c0; c < c0 + cn; c++)
            slimkv_code_put(block, slimkv_v_code_place(bits, dv, g, slot, c), slimkv_quant_code(src[c], mn, inv, bits));
    }
}

/* Score = sum_c (q_c * scale_c) * code_ct + sum_c q_c * min_c: the query is
 * folded with the group's parameters once, then reused for every token. */
static void score_k_quant(int bits, slimkv_format fmt, const uint8_t *group, int dk, int g, int n,
                          const float *q, int nq, float *s, int lds)
{
    const uint16_t *scale = (const uint16_t *)(group + slimkv_k_params_offset(fmt, dk, g)), *mins = scale + dk;
    for (int i = 0; i < nq; i++) {
        const float *qi = q + (size_t)i * dk;
        float bias = 0.0f;
        for (int c = 0; c < dk; c++)
            bias += qi[c] * slimkv_f16_to_f32(mins[c]);
        for (int t = 0; t < n; t++) {
            float acc = 0.0f;
            for (int c = 0; c < dk; c++)
                acc += qi[c] * slimkv_f16_to_f32(scale[c]) *
                       (float)slimkv_code_get(group, slimkv_k_code_place(bits, dk, g, c, t));
            s[(size_t)i * lds + t] = acc + bias;
        }
    }
}

/* acc_c += sum_t (w_t * scale_t) * code_tc + sum_t w_t * min_t: the per-token
 * parameters are folded into the weights. */
static void accum_v_quant(int bits, slimkv_format fmt, const uint8_t *block, int dv, int g, int n,
                          const float *w, int ldw, int nq, float *acc)
{
    int nvg = (dv + g - 1) / g;
    const uint16_t *scale = (const uint16_t *)(block + slimkv_v_params_offset(fmt, dv, g));
    const uint16_t *mins = scale + (size_t)g * nvg;
    for (int i = 0; i < nq; i++) {
        const float *wi = w + (size_t)i * ldw;
        float *ai = acc + (size_t)i * dv;
        for (int t = 0; t < n; t++)
            for (int c = 0; c < dv; c++) {
                size_t p = (size_t)t * nvg + c / g;
                float code = (float)slimkv_code_get(block, slimkv_v_code_place(bits, dv, g, t, c));
                ai[c] += wi[t] * slimkv_f16_to_f32(scale[p]) * code + wi[t] * slimkv_f16_to_f32(mins[p]);
            }
    }
}

static void slimkv_pack_k_q8_scalar(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(8, SLIMKV_Q8, src, dk, g, group);
}

static void slimkv_pack_v_q8_scalar(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(8, SLIMKV_Q8, src, dv, g, block, slot);
}

static void slimkv_score_k_q8_scalar(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                     int lds)
{
    score_k_quant(8, SLIMKV_Q8, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q8_scalar(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                     float *acc)
{
    accum_v_quant(8, SLIMKV_Q8, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q4_scalar(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(4, SLIMKV_Q4, src, dk, g, group);
}

static void slimkv_pack_v_q4_scalar(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(4, SLIMKV_Q4, src, dv, g, block, slot);
}

static void slimkv_score_k_q4_scalar(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                     int lds)
{
    score_k_quant(4, SLIMKV_Q4, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q4_scalar(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                     float *acc)
{
    accum_v_quant(4, SLIMKV_Q4, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q2_scalar(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(2, SLIMKV_Q2, src, dk, g, group);
}

static void slimkv_pack_v_q2_scalar(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(2, SLIMKV_Q2, src, dv, g, block, slot);
}

static void slimkv_score_k_q2_scalar(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                     int lds)
{
    score_k_quant(2, SLIMKV_Q2, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q2_scalar(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                     float *acc)
{
    accum_v_quant(2, SLIMKV_Q2, block, dv, g, n, w, ldw, nq, acc);
}

static void slimkv_pack_k_q3_scalar(const float *src, int dk, int g, uint8_t *group)
{
    pack_k_quant(3, SLIMKV_Q3, src, dk, g, group);
}

static void slimkv_pack_v_q3_scalar(const float *src, int dv, int g, uint8_t *block, int slot)
{
    pack_v_quant(3, SLIMKV_Q3, src, dv, g, block, slot);
}

static void slimkv_score_k_q3_scalar(const uint8_t *group, int dk, int g, int n, const float *q, int nq, float *s,
                                     int lds)
{
    score_k_quant(3, SLIMKV_Q3, group, dk, g, n, q, nq, s, lds);
}

static void slimkv_accum_v_q3_scalar(const uint8_t *block, int dv, int g, int n, const float *w, int ldw, int nq,
                                     float *acc)
{
    accum_v_quant(3, SLIMKV_Q3, block, dv, g, n, w, ldw, nq, acc);
}


/* ---- SparK: per-token top-T channels, pruned ones restored in the score ---- */

typedef struct spark_record {
    uint8_t *mask, *sign;
    uint8_t *a_t;      /* f32, possibly unaligned */
    uint16_t *params;  /* quantized: scale[nvg], min[nvg] */
    uint8_t *values;
} spark_record;

static spark_record spark_locate(slimkv_format fmt, const uint8_t *group, int dim, int t_keep, int g, int t)
{
    slimkv_spark_geometry geo = slimkv_spark_geometry_of(fmt, dim, t_keep, g);
    spark_record r;
    r.mask = (uint8_t *)group + (size_t)t * geo.record;
    r.sign = r.mask + geo.bits;
    r.a_t = r.sign + geo.bits;
    r.params = (uint16_t *)(r.a_t + 4);
    r.values = r.mask + geo.values;
    return r;
}

/* The k-th largest of x[0..n) (k counted from 0), by quickselect on a copy. */
static float kth_largest(const float *x, int n, int k)
{
    float buf[SLIMKV_MAX_HEAD_DIM];
    memcpy(buf, x, (size_t)n * sizeof *buf);
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = buf[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (buf[i] > pivot)
                i++;
            while (buf[j] < pivot)
                j--;
            if (i <= j) {
                float tmp = buf[i];
                buf[i++] = buf[j];
                buf[j--] = tmp;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return buf[k];
}

static void pack_spark_body(slimkv_format fmt, const float *src, const float *qnorm, int dim, int t_keep, int g,
                            uint8_t *group)
{
    float sal[SLIMKV_MAX_HEAD_DIM], kept[SLIMKV_MAX_HEAD_DIM];
    memset(group, 0, (size_t)g * slimkv_spark_record_bytes(fmt, dim, t_keep, g));
    for (int t = 0; t < g; t++) {
        const float *k = src + (size_t)t * dim;
        spark_record r = spark_locate(fmt, group, dim, t_keep, g, t);
        for (int c = 0; c < dim; c++)
            sal[c] = k[c] * k[c] * qnorm[c];
        float thr = kth_largest(sal, dim, t_keep - 1);
        int above = 0;
        for (int c = 0; c < dim; c++)
            above += sal[c] > thr;
        int ties_left = t_keep - above, n_kept = 0;
        float pruned_sum = 0.0f;
        for (int c = 0; c < dim; c++) {
            int keep = sal[c] > thr || (sal[c] == thr && ties_left-- > 0);
            if (keep) {
                r.mask[c / 8] |= (uint8_t)(1u << (c % 8));
                kept[n_kept++] = k[c];
            } else {
                pruned_sum += sal[c];
            }
            if (k[c] < 0.0f)
                r.sign[c / 8] |= (uint8_t)(1u << (c % 8));
        }
        float a_t = dim > t_keep ? pruned_sum / (float)(dim - t_keep) : 0.0f;
        memcpy(r.a_t, &a_t, sizeof a_t);
        if (!slimkv_is_quantized(fmt)) {
            for (int j = 0; j < t_keep; j++)
                store_elem(fmt, r.values, (size_t)j, kept[j]);
            continue;
        }
        int b = slimkv_format_bits(fmt), nvg = (t_keep + g - 1) / g;
        for (int vg = 0; vg < nvg; vg++) {
            int j0 = vg * g, jn = t_keep - j0 < g ? t_keep - j0 : g;
            uint16_t sh, mh;
            quant_params(kept + j0, 1, jn, b, &sh, &mh);
            memcpy(&r.params[vg], &sh, sizeof sh);
            memcpy(&r.params[nvg + vg], &mh, sizeof mh);
            float mn = slimkv_f16_to_f32(mh), inv = slimkv_inverse_scale(slimkv_f16_to_f32(sh));
            for (int j = j0; j < j0 + jn; j++)
                r.values[(size_t)j * b / 8] |= (uint8_t)(slimkv_quant_code(kept[j], mn, inv, b) << ((j * b) % 8));
        }
    }
}

/* Value j of a record, dequantized. */
static float spark_value(slimkv_format fmt, const spark_record *r, int t_keep, int g, int j)
{
    if (!slimkv_is_quantized(fmt))
        return load_elem(fmt, r->values, (size_t)j);
    int b = slimkv_format_bits(fmt), nvg = (t_keep + g - 1) / g;
    uint16_t sh, mh;
    memcpy(&sh, &r->params[j / g], sizeof sh);
    memcpy(&mh, &r->params[nvg + j / g], sizeof mh);
    int code = (r->values[(size_t)j * b / 8] >> ((j * b) % 8)) & ((1 << b) - 1);
    return (float)code * slimkv_f16_to_f32(sh) + slimkv_f16_to_f32(mh);
}

/* Each token's record is decoded once into two dense vectors, the kept
 * values and the restored pruned terms, then dotted with every query:
 * score = sum_c q_c * kept_c + sum_c u_c * restored_c. */
static void score_spark_body(slimkv_format fmt, const uint8_t *group, int dim, int t_keep, int g, int n,
                             const float *q, const float *u, int nq, float *s, int lds)
{
    float kept[SLIMKV_MAX_HEAD_DIM], restored[SLIMKV_MAX_HEAD_DIM];
    for (int t = 0; t < n; t++) {
        spark_record r = spark_locate(fmt, group, dim, t_keep, g, t);
        float a_t;
        memcpy(&a_t, r.a_t, sizeof a_t);
        float root = sqrtf(a_t);
        for (int c = 0, j = 0; c < dim; c++) {
            int is_kept = r.mask[c / 8] >> (c % 8) & 1;
            float sign = (r.sign[c / 8] >> (c % 8) & 1) ? -1.0f : 1.0f;
            kept[c] = is_kept ? spark_value(fmt, &r, t_keep, g, j++) : 0.0f;
            restored[c] = is_kept ? 0.0f : sign * root;
        }
        for (int i = 0; i < nq; i++) {
            const float *qi = q + (size_t)i * dim, *ui = u + (size_t)i * dim;
            float acc = 0.0f;
            for (int c = 0; c < dim; c++)
                acc += qi[c] * kept[c] + ui[c] * restored[c];
            s[(size_t)i * lds + t] = acc;
        }
    }
}

static void slimkv_score_spark_f32_scalar(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                          const float *u, int nq, float *s, int lds)
{
    score_spark_body(SLIMKV_F32, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_f16_scalar(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                          const float *u, int nq, float *s, int lds)
{
    score_spark_body(SLIMKV_F16, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_bf16_scalar(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                           const float *u, int nq, float *s, int lds)
{
    score_spark_body(SLIMKV_BF16, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q8_scalar(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                         const float *u, int nq, float *s, int lds)
{
    score_spark_body(SLIMKV_Q8, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q4_scalar(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                         const float *u, int nq, float *s, int lds)
{
    score_spark_body(SLIMKV_Q4, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_score_spark_q2_scalar(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                         const float *u, int nq, float *s, int lds)
{
    score_spark_body(SLIMKV_Q2, group, dim, t_keep, g, n, q, u, nq, s, lds);
}

static void slimkv_pack_spark_f32_scalar(const float *src, const float *qnorm, int dim, int t_keep, int g,
                                         uint8_t *group)
{
    pack_spark_body(SLIMKV_F32, src, qnorm, dim, t_keep, g, group);
}

static void slimkv_pack_spark_f16_scalar(const float *src, const float *qnorm, int dim, int t_keep, int g,
                                         uint8_t *group)
{
    pack_spark_body(SLIMKV_F16, src, qnorm, dim, t_keep, g, group);
}

static void slimkv_pack_spark_bf16_scalar(const float *src, const float *qnorm, int dim, int t_keep, int g,
                                          uint8_t *group)
{
    pack_spark_body(SLIMKV_BF16, src, qnorm, dim, t_keep, g, group);
}

static void slimkv_pack_spark_q8_scalar(const float *src, const float *qnorm, int dim, int t_keep, int g,
                                        uint8_t *group)
{
    pack_spark_body(SLIMKV_Q8, src, qnorm, dim, t_keep, g, group);
}

static void slimkv_pack_spark_q4_scalar(const float *src, const float *qnorm, int dim, int t_keep, int g,
                                        uint8_t *group)
{
    pack_spark_body(SLIMKV_Q4, src, qnorm, dim, t_keep, g, group);
}

static void slimkv_pack_spark_q2_scalar(const float *src, const float *qnorm, int dim, int t_keep, int g,
                                        uint8_t *group)
{
    pack_spark_body(SLIMKV_Q2, src, qnorm, dim, t_keep, g, group);
}


/* ---- decoding stored tokens back to floats ----
 * What truncation needs to put a compressed token back in the window. One
 * scalar definition serves every ISA (no table entry): truncation is rare,
 * and these read the layouts exactly as the pack bodies above write them. */

void slimkv_unpack_k_token(slimkv_format fmt, const uint8_t *group, int dk, int g, int t, float *dst)
{
    if (!slimkv_is_quantized(fmt)) {
        for (int c = 0; c < dk; c++)
            dst[c] = load_elem(fmt, group, (size_t)t * dk + c);
        return;
    }
    int bits = slimkv_format_bits(fmt);
    const uint16_t *scale = (const uint16_t *)(group + slimkv_k_params_offset(fmt, dk, g)), *mins = scale + dk;
    for (int c = 0; c < dk; c++) {
        float code = (float)slimkv_code_get(group, slimkv_k_code_place(bits, dk, g, c, t));
        dst[c] = code * slimkv_f16_to_f32(scale[c]) + slimkv_f16_to_f32(mins[c]);
    }
}

void slimkv_unpack_spark_token(slimkv_format fmt, const uint8_t *group, const float *qnorm_rsqrt, int dim,
                               int t_keep, int g, int t, float *dst)
{
    spark_record r = spark_locate(fmt, group, dim, t_keep, g, t);
    float a_t;
    memcpy(&a_t, r.a_t, sizeof a_t);
    float root = sqrtf(a_t);
    for (int c = 0, j = 0; c < dim; c++) {
        int is_kept = r.mask[c / 8] >> (c % 8) & 1;
        float sign = (r.sign[c / 8] >> (c % 8) & 1) ? -1.0f : 1.0f;
        /* the pruned term as score_spark_body forms it: u_c = q_c * qnorm_rsqrt[c] times sign * sqrt(a_t) */
        dst[c] = is_kept ? spark_value(fmt, &r, t_keep, g, j++) : sign * root * qnorm_rsqrt[c];
    }
}

void slimkv_unpack_v_token(slimkv_format fmt, const uint8_t *block, int dv, int g, int slot, float *dst)
{
    if (!slimkv_is_quantized(fmt)) {
        for (int c = 0; c < dv; c++)
            dst[c] = load_elem(fmt, block, (size_t)slot * dv + c);
        return;
    }
    int bits = slimkv_format_bits(fmt), nvg = (dv + g - 1) / g;
    const uint16_t *scale = (const uint16_t *)(block + slimkv_v_params_offset(fmt, dv, g));
    const uint16_t *mins = scale + (size_t)g * nvg;
    for (int c = 0; c < dv; c++) {
        size_t p = (size_t)slot * nvg + c / g;
        float code = (float)slimkv_code_get(block, slimkv_v_code_place(bits, dv, g, slot, c));
        dst[c] = code * slimkv_f16_to_f32(scale[p]) + slimkv_f16_to_f32(mins[p]);
    }
}

void slimkv_clear_v_slots(slimkv_format fmt, uint8_t *block, int dv, int g, int first_slot)
{
    if (first_slot >= g)
        return;
    if (!slimkv_is_quantized(fmt)) {
        size_t elem = fmt == SLIMKV_F32 ? 4 : 2;
        memset(block + (size_t)first_slot * dv * elem, 0, (size_t)(g - first_slot) * dv * elem);
        return;
    }
    /* codes of several token slots share a byte (token quads, q4/q3/q2 fields): code by code */
    int bits = slimkv_format_bits(fmt), nvg = (dv + g - 1) / g;
    for (int t = first_slot; t < g; t++)
        for (int c = 0; c < dv; c++)
            slimkv_code_put(block, slimkv_v_code_place(bits, dv, g, t, c), 0);
    uint16_t *scale = (uint16_t *)(block + slimkv_v_params_offset(fmt, dv, g)), *mins = scale + (size_t)g * nvg;
    memset(scale + (size_t)first_slot * nvg, 0, (size_t)(g - first_slot) * nvg * sizeof *scale);
    memset(mins + (size_t)first_slot * nvg, 0, (size_t)(g - first_slot) * nvg * sizeof *mins);
}


static float exp_sum_scalar(float *x, int n, float max)
{
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    return sum;
}

static float max_scalar(const float *x, int n)
{
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

static void scale_scalar(float *x, int n, float a)
{
    for (int i = 0; i < n; i++)
        x[i] *= a;
}

/* ---- Walsh-Hadamard rotation ---- */

static void slimkv_rotate_scalar(float *x, int dim, const float *signs, int inverse)
{
    slimkv_rotate_generic(x, dim, signs, inverse);
}

/* ---- fused decode over whole groups: the oracle of every pair ---- */

static const slimkv_score_k_fn score_k_scalar[SLIMKV_FORMAT_COUNT] = {
    [SLIMKV_F32] = slimkv_score_k_f32_scalar, [SLIMKV_F16] = slimkv_score_k_f16_scalar,
    [SLIMKV_BF16] = slimkv_score_k_bf16_scalar, [SLIMKV_Q8] = slimkv_score_k_q8_scalar,
    [SLIMKV_Q4] = slimkv_score_k_q4_scalar,     [SLIMKV_Q2] = slimkv_score_k_q2_scalar,
    [SLIMKV_Q3] = slimkv_score_k_q3_scalar};
static const slimkv_accum_v_fn accum_v_scalar[SLIMKV_FORMAT_COUNT] = {
    [SLIMKV_F32] = slimkv_accum_v_f32_scalar, [SLIMKV_F16] = slimkv_accum_v_f16_scalar,
    [SLIMKV_BF16] = slimkv_accum_v_bf16_scalar, [SLIMKV_Q8] = slimkv_accum_v_q8_scalar,
    [SLIMKV_Q4] = slimkv_accum_v_q4_scalar,     [SLIMKV_Q2] = slimkv_accum_v_q2_scalar,
    [SLIMKV_Q3] = slimkv_accum_v_q3_scalar};

static void slimkv_attend_groups_scalar(const slimkv_group_span *span, const float *q, int rows, float *m, float *l,
                                        float *acc)
{
    const slimkv_tile_ops ops = {score_k_scalar[span->k_format], accum_v_scalar[span->v_format], exp_sum_scalar,
                                 max_scalar, scale_scalar, NULL, score_k_scalar[SLIMKV_Q8]};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

static const slimkv_score_spark_fn score_spark_scalar[SLIMKV_FORMAT_COUNT] = {
    [SLIMKV_F32] = slimkv_score_spark_f32_scalar, [SLIMKV_F16] = slimkv_score_spark_f16_scalar,
    [SLIMKV_BF16] = slimkv_score_spark_bf16_scalar, [SLIMKV_Q8] = slimkv_score_spark_q8_scalar,
    [SLIMKV_Q4] = slimkv_score_spark_q4_scalar,     [SLIMKV_Q2] = slimkv_score_spark_q2_scalar};

static void slimkv_attend_spark_groups_scalar(const slimkv_group_span *span, const float *q, int rows, float *m,
                                              float *l, float *acc)
{
    const slimkv_tile_ops ops = {NULL, accum_v_scalar[span->v_format], exp_sum_scalar, max_scalar, scale_scalar,
                                 score_spark_scalar[span->k_format], NULL};
    slimkv_tile_loop(&ops, span, q, rows, m, l, acc);
}

void slimkv_kernels_init_scalar(slimkv_kernels *k)
{
    k->name = "scalar";
    k->pack_k[SLIMKV_F32] = slimkv_pack_k_f32_scalar;
    k->pack_v[SLIMKV_F32] = slimkv_pack_v_f32_scalar;
    k->score_k[SLIMKV_F32] = slimkv_score_k_f32_scalar;
    k->accum_v[SLIMKV_F32] = slimkv_accum_v_f32_scalar;
    k->pack_spark[SLIMKV_F32] = slimkv_pack_spark_f32_scalar;
    k->pack_k[SLIMKV_F16] = slimkv_pack_k_f16_scalar;
    k->pack_v[SLIMKV_F16] = slimkv_pack_v_f16_scalar;
    k->score_k[SLIMKV_F16] = slimkv_score_k_f16_scalar;
    k->accum_v[SLIMKV_F16] = slimkv_accum_v_f16_scalar;
    k->pack_spark[SLIMKV_F16] = slimkv_pack_spark_f16_scalar;
    k->pack_k[SLIMKV_BF16] = slimkv_pack_k_bf16_scalar;
    k->pack_v[SLIMKV_BF16] = slimkv_pack_v_bf16_scalar;
    k->score_k[SLIMKV_BF16] = slimkv_score_k_bf16_scalar;
    k->accum_v[SLIMKV_BF16] = slimkv_accum_v_bf16_scalar;
    k->pack_spark[SLIMKV_BF16] = slimkv_pack_spark_bf16_scalar;
    k->pack_k[SLIMKV_Q8] = slimkv_pack_k_q8_scalar;
    k->pack_v[SLIMKV_Q8] = slimkv_pack_v_q8_scalar;
    k->score_k[SLIMKV_Q8] = slimkv_score_k_q8_scalar;
    k->accum_v[SLIMKV_Q8] = slimkv_accum_v_q8_scalar;
    k->pack_spark[SLIMKV_Q8] = slimkv_pack_spark_q8_scalar;
    k->pack_k[SLIMKV_Q4] = slimkv_pack_k_q4_scalar;
    k->pack_v[SLIMKV_Q4] = slimkv_pack_v_q4_scalar;
    k->score_k[SLIMKV_Q4] = slimkv_score_k_q4_scalar;
    k->accum_v[SLIMKV_Q4] = slimkv_accum_v_q4_scalar;
    k->pack_spark[SLIMKV_Q4] = slimkv_pack_spark_q4_scalar;
    k->pack_k[SLIMKV_Q2] = slimkv_pack_k_q2_scalar;
    k->pack_v[SLIMKV_Q2] = slimkv_pack_v_q2_scalar;
    k->score_k[SLIMKV_Q2] = slimkv_score_k_q2_scalar;
    k->accum_v[SLIMKV_Q2] = slimkv_accum_v_q2_scalar;
    k->pack_spark[SLIMKV_Q2] = slimkv_pack_spark_q2_scalar;
    k->pack_k[SLIMKV_Q3] = slimkv_pack_k_q3_scalar;
    k->pack_v[SLIMKV_Q3] = slimkv_pack_v_q3_scalar;
    k->score_k[SLIMKV_Q3] = slimkv_score_k_q3_scalar;
    k->accum_v[SLIMKV_Q3] = slimkv_accum_v_q3_scalar;
    k->score_spark[SLIMKV_F32] = slimkv_score_spark_f32_scalar;
    k->score_spark[SLIMKV_F16] = slimkv_score_spark_f16_scalar;
    k->score_spark[SLIMKV_BF16] = slimkv_score_spark_bf16_scalar;
    k->score_spark[SLIMKV_Q8] = slimkv_score_spark_q8_scalar;
    k->score_spark[SLIMKV_Q4] = slimkv_score_spark_q4_scalar;
    k->score_spark[SLIMKV_Q2] = slimkv_score_spark_q2_scalar;
    k->score_rows_f32 = slimkv_score_rows_f32_scalar;
    k->score_rows_f16 = slimkv_score_rows_f16_scalar;
    k->accum_rows_f32 = slimkv_accum_rows_f32_scalar;
    k->accum_rows_f16 = slimkv_accum_rows_f16_scalar;
    k->exp_sum = exp_sum_scalar;
    for (int kf = 0; kf < SLIMKV_FORMAT_COUNT; kf++)
        for (int vf = 0; vf < SLIMKV_FORMAT_COUNT; vf++)
            k->attend_groups[kf][vf] = slimkv_attend_groups_scalar;
    for (int kf = 0; kf < SLIMKV_FORMAT_COUNT; kf++)
        for (int vf = 0; vf < SLIMKV_FORMAT_COUNT; vf++)
            if (kf != SLIMKV_Q3) /* not a SparK record format */
                k->attend_spark_groups[kf][vf] = slimkv_attend_spark_groups_scalar;
    k->rotate = slimkv_rotate_scalar;
    k->f32_to_f16 = f32_to_f16_scalar;
    k->f16_to_f32 = f16_to_f32_scalar;
}
