/* Walsh-Hadamard rotation of a cache (config.rotate): every KV head h has a
 * fixed random sign vector s_h, and R_h x = H (s_h * x) / sqrt(D). With
 * SLIMKV_ROTATE_K keys and the queries of h's query heads are rotated
 * alike, so q.k is unchanged; with SLIMKV_ROTATE_V values are rotated
 * before they are stored and the attention output of each query head is
 * rotated back (R_h is orthogonal: sum p_t R v_t = R sum p_t v_t).
 * Rotating spreads a few large channels over all D, which is what low-bit
 * per-token groups (V) need; the stored bytes are the same. */
#include <stdint.h>
#include <string.h>

#include "internal.h"

/* splitmix64: the signs are a fixed function of (head, channel), the same
 * in every process, so a snapshot restores into any cache rotating alike. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

slimkv_status slimkv_rotation_init(slimkv_cache *c)
{
    if (!c->cfg.rotate)
        return SLIMKV_OK;
    size_t dim = (size_t)c->cfg.head_dim, n = (size_t)c->cfg.n_kv_heads * dim;
    c->rotation_signs = slimkv_malloc(n * sizeof(float));
    if (!c->rotation_signs)
        return SLIMKV_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        c->rotation_signs[i] = mix(0x5eed0000ull + i) >> 63 ? -1.0f : 1.0f;
    return SLIMKV_OK;
}

/* x [n][heads][D] in place; head j belongs to KV head j / (heads / n_kv_heads). */
static void rotate_rows(const slimkv_cache *c, float *x, int n, int heads, int inverse)
{
    int dim = c->cfg.head_dim, per_kv = heads / c->cfg.n_kv_heads;
    for (size_t t = 0; t < (size_t)n; t++)
        for (int j = 0; j < heads; j++)
            c->kern->rotate(x + (t * (size_t)heads + (size_t)j) * dim, dim,
                            c->rotation_signs + (size_t)(j / per_kv) * dim, inverse);
}

float *slimkv_rotated_copy(const slimkv_cache *c, const float *x, int n, int heads)
{
    size_t floats = (size_t)n * heads * c->cfg.head_dim;
    float *copy = slimkv_malloc(floats * sizeof(float));
    if (copy) {
        memcpy(copy, x, floats * sizeof(float));
        rotate_rows(c, copy, n, heads, 0);
    }
    return copy;
}

void slimkv_rotate_output_back(const slimkv_cache *c, float *out, int n)
{
    rotate_rows(c, out, n, c->cfg.n_q_heads, 1);
}
