/* The dense (f32 / f16 / bf16) group kernels, written once for every ISA
 * body. Dense K groups and V blocks are token-major rows of the kept
 * channels, so they are the body's row kernels on a group: a file includes
 * this after defining
 *   store_elems(fmt, dst, src, n)
 *   score_dense(fmt, rows, stride, n, d, q, nq, s, lds)
 *   accum_dense(fmt, rows, stride, n, d, w, ldw, nq, acc)
 * and wraps pack_k_dense ... accum_v_dense in its named entry points. */
#ifndef SLIMKV_SIMD_DENSE_GROUPS_H
#define SLIMKV_SIMD_DENSE_GROUPS_H

static inline void pack_k_dense(slimkv_format fmt, const float *src, int dk, int g, uint8_t *group)
{
    store_elems(fmt, group, src, (size_t)dk * g);
}

static inline void pack_v_dense(slimkv_format fmt, const float *src, int dv, int g, uint8_t *block, int slot)
{
    (void)g;
    store_elems(fmt, block + (size_t)slot * dv * (fmt == SLIMKV_F32 ? 4 : 2), src, (size_t)dv);
}

static inline void score_k_dense(slimkv_format fmt, const uint8_t *group, int dk, int g, int n, const float *q, int nq,
                                 float *s, int lds)
{
    (void)g;
    score_dense(fmt, group, (size_t)dk, n, dk, q, nq, s, lds);
}

static inline void accum_v_dense(slimkv_format fmt, const uint8_t *block, int dv, int g, int n, const float *w,
                                 int ldw, int nq, float *acc)
{
    (void)g;
    accum_dense(fmt, block, (size_t)dv, n, dv, w, ldw, nq, acc);
}

#endif /* SLIMKV_SIMD_DENSE_GROUPS_H */
