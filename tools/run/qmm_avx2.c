/* AVX2 bodies: u8 x s8 products in pairs (vpmaddubsw; 2 * 128 * 127 fits
 * int16), then pairs of pairs into int32 (vpmaddwd). Shape in qmm_x86.h. */
#include "qmm_x86.h"

static inline __m256 dot_u8s8_avx2(__m256i w, __m256i x)
{
    __m256i pairs = _mm256_maddubs_epi16(w, x);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

static void qmm_q4_0_rows__avx2(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    qmm_rows_x86(QMM_Q4_0, w, n_rows, x, y, y_stride, dot_u8s8_avx2);
}

static void qmm_q4_1_rows__avx2(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    qmm_rows_x86(QMM_Q4_1, w, n_rows, x, y, y_stride, dot_u8s8_avx2);
}

static void qmm_q8_0_rows__avx2(const uint8_t *w, int n_rows, const qmm_acts *x, float *y, size_t y_stride)
{
    qmm_rows_x86(QMM_Q8_0, w, n_rows, x, y, y_stride, dot_u8s8_avx2);
}

void qmm_init_avx2(qmm_kernels *k)
{
    k->rows[QMM_Q4_0] = qmm_q4_0_rows__avx2;
    k->rows[QMM_Q4_1] = qmm_q4_1_rows__avx2;
    k->rows[QMM_Q8_0] = qmm_q8_0_rows__avx2;
}
