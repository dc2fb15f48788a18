/* The arithmetic of the stored formats that must come out the same
 * everywhere (fp16/bf16 rounding, code positions, KIVI codes), as inline
 * functions that both the C kernels and the CUDA plugin compile: one
 * definition, so the device writes the bytes the CPU would. */
#ifndef SLIMKV_SIMD_FORMAT_MATH_H
#define SLIMKV_SIMD_FORMAT_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define SLIMKV_HD __host__ __device__ __forceinline__
#else
#define SLIMKV_HD static inline
#endif

SLIMKV_HD uint32_t slimkv_float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

SLIMKV_HD float slimkv_bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Round to nearest even; NaN stays a quiet NaN. */
SLIMKV_HD uint16_t slimkv_half_from_float(float f)
{
    uint32_t x = slimkv_float_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t abs = x & 0x7fffffffu;
    if (abs >= 0x7f800000u) /* Inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u | ((abs >> 13) & 0x3ffu) : 0));
    if (abs >= 0x477ff000u) /* rounds to >= 65520: overflow to Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (abs < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (abs < 0x33000000u) /* below half of the smallest subnormal */
            return (uint16_t)sign;
        uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(abs >> 23); /* 14 .. 24 */
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((abs >> 13) - (112u << 10)); /* rebias exponent 127 -> 15 */
    uint32_t rem = abs & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}

SLIMKV_HD float slimkv_half_to_float(uint16_t h)
{
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* Inf, or NaN made quiet as the hardware converters do */
        return slimkv_bits_float(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0));
    if (exp == 0) {
        if (mant == 0)
            return slimkv_bits_float(sign);
        float f = (float)mant * 0x1p-24f;
        return sign ? -f : f;
    }
    return slimkv_bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

SLIMKV_HD uint16_t slimkv_bfloat_from_float(float f)
{
    uint32_t x = slimkv_float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

SLIMKV_HD float slimkv_bfloat_to_float(uint16_t h)
{
    return slimkv_bits_float((uint32_t)h << 16);
}

/* Byte index and bit shift of the code of channel c, token t in a K group. */
SLIMKV_HD void slimkv_k_code_pos(int bits, int g, int c, int t, size_t *byte, int *shift)
{
    int quad = c / 4, per_byte = 8 / bits;
    *byte = ((size_t)(quad / per_byte) * g + t) * 4 + c % 4;
    *shift = bits * (quad % per_byte);
}

/* Byte index and bit shift of the code of token t, channel c in a V block. */
SLIMKV_HD void slimkv_v_code_pos(int bits, int dv, int t, int c, size_t *byte, int *shift)
{
    int quad = t / 4, per_byte = 8 / bits;
    *byte = ((size_t)(quad / per_byte) * dv + c) * 4 + t % 4;
    *shift = bits * (quad % per_byte);
}

/* q3 codes are two planes: the low 2 bits in q2's layout, then the high
 * bit in the same layout with 1-bit fields (8 per byte). A 2-bit plane
 * decodes with q2's shifts and masks, and the high plane adds one bit. */
/* Bits per field of a format's first code plane (q3: its low 2 bits). */
SLIMKV_HD int slimkv_plane_bits(int bits)
{
    return bits == 3 ? 2 : bits;
}

SLIMKV_HD size_t slimkv_k_hi_plane_offset(int dk, int g)
{
    return ((size_t)dk / 4 + 3) / 4 * (size_t)g * 4;
}

SLIMKV_HD size_t slimkv_v_hi_plane_offset(int dv, int g)
{
    return (size_t)g * dv / 4;
}

/* Where one code sits: `width` bits at byte[0] >> shift[0], and when `high`
 * (q3) a third bit at byte[1] >> shift[1]. */
typedef struct slimkv_code_place {
    size_t byte[2];
    int shift[2], width, high;
} slimkv_code_place;

/* The code of channel c, token t in a K group (`bits` 8, 4, 3, 2). */
SLIMKV_HD slimkv_code_place slimkv_k_code_place(int bits, int dk, int g, int c, int t)
{
    slimkv_code_place p;
    p.high = bits == 3;
    p.width = slimkv_plane_bits(bits);
    slimkv_k_code_pos(p.width, g, c, t, &p.byte[0], &p.shift[0]);
    slimkv_k_code_pos(1, g, c, t, &p.byte[1], &p.shift[1]);
    p.byte[1] += slimkv_k_hi_plane_offset(dk, g);
    return p;
}

/* The code of token t, channel c in a V block. */
SLIMKV_HD slimkv_code_place slimkv_v_code_place(int bits, int dv, int g, int t, int c)
{
    slimkv_code_place p;
    p.high = bits == 3;
    p.width = slimkv_plane_bits(bits);
    slimkv_v_code_pos(p.width, dv, t, c, &p.byte[0], &p.shift[0]);
    slimkv_v_code_pos(1, dv, t, c, &p.byte[1], &p.shift[1]);
    p.byte[1] += slimkv_v_hi_plane_offset(dv, g);
    return p;
}

SLIMKV_HD int slimkv_code_get(const uint8_t *codes, slimkv_code_place p)
{
    int code = (codes[p.byte[0]] >> p.shift[0]) & ((1 << p.width) - 1);
    if (p.high)
        code |= ((codes[p.byte[1]] >> p.shift[1]) & 1) << 2;
    return code;
}

/* Sets that code, leaving every other bit as it was. */
SLIMKV_HD void slimkv_code_put(uint8_t *codes, slimkv_code_place p, int code)
{
    int mask = (1 << p.width) - 1;
    codes[p.byte[0]] = (uint8_t)((codes[p.byte[0]] & ~(mask << p.shift[0])) | ((code & mask) << p.shift[0]));
    if (p.high)
        codes[p.byte[1]] = (uint8_t)((codes[p.byte[1]] & ~(1 << p.shift[1])) | ((code >> 2 & 1) << p.shift[1]));
}

/* KIVI parameters of values in [lo, hi] as fp16: scale and min. */
SLIMKV_HD void slimkv_quant_params_of(float lo, float hi, int bits, uint16_t *scale_h, uint16_t *min_h)
{
    *scale_h = slimkv_half_from_float((hi - lo) / (float)((1 << bits) - 1));
    *min_h = slimkv_half_from_float(lo);
}

SLIMKV_HD float slimkv_inverse_scale(float scale)
{
    return scale == 0.0f ? 0.0f : 1.0f / scale;
}

/* code = clamp(rint((x - min) * inv), 0, 2^bits - 1), in this order. */
SLIMKV_HD int slimkv_quant_code(float x, float mn, float inv, int bits)
{
    float r = rintf((x - mn) * inv);
    float top = (float)((1 << bits) - 1);
    r = r < 0.0f ? 0.0f : r;
    r = r > top ? top : r;
    return (int)r;
}

#endif /* SLIMKV_SIMD_FORMAT_MATH_H */
