/* The Walsh-Hadamard rotation of kernels.h (rotate), the plain C body: the
 * scalar table's kernel, and the SIMD bodies' path for vectors shorter
 * than one register. */
#ifndef SLIMKV_SIMD_HADAMARD_H
#define SLIMKV_SIMD_HADAMARD_H

#include <math.h>

/* Butterflies of strides from..dim/2 of the unnormalised transform (from
 * 1: the whole transform; a SIMD body starts past its in-register ones). */
static inline void slimkv_hadamard_strides(float *x, int dim, int from)
{
    for (int h = from; h < dim; h *= 2)
        for (int i = 0; i < dim; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}

static inline void slimkv_rotate_generic(float *x, int dim, const float *signs, int inverse)
{
    const float norm = 1.0f / sqrtf((float)dim);
    if (!inverse)
        for (int c = 0; c < dim; c++)
            x[c] *= signs[c];
    slimkv_hadamard_strides(x, dim, 1);
    for (int c = 0; c < dim; c++)
        x[c] *= inverse ? signs[c] * norm : norm;
}

#endif /* SLIMKV_SIMD_HADAMARD_H */
