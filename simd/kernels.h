/* The one contract between the core (src/) and the kernels (simd/).
 *
 * Kernels are pure and single-threaded: no malloc, no getenv, no globals
 * besides their own tables. Arguments were validated by the core; kernels
 * only assume what is written here.
 *
 * Storage layouts (one layout for every ISA, so stored bytes are portable)
 * -----------------------------------------------------------------------
 * Shapes: G = group size (multiple of 16), dk = kept K channels (multiple
 * of 4), dv = kept V channels (>= 1), nvg = ceil(dv / G).
 *
 * K group (G tokens of one KV head):
 *   dense f32/f16/bf16: elements [t][dk], token-major.
 *   quantized, codes of "quad" q = c/4 are bytes [t][c%4] (a 32-bit lane
 *   holds 4 channels of one token, ready for dot-product instructions):
 *     q8: byte (q*G + t)*4 + c%4
 *     q4: byte ((q/2)*G + t)*4 + c%4, low nibble for even q, high for odd q
 *     q2: byte ((q/4)*G + t)*4 + c%4, bits 2*(q%4)..+1
 *     q3: the low 2 bits as q2 (bytes [0, H)), then the high bit at byte
 *         H + ((q/8)*G + t)*4 + c%4, bit q%8 (H = slimkv_k_hi_plane_offset)
 *   then fp16 scale[dk], fp16 min[dk] at slimkv_k_params_offset().
 *   With K outlier channels (config k_outliers; n of a head's dk kept
 *   channels): a group of the K format over the dk - n other channels,
 *   then at the next 64-byte boundary a q8 group over the n outliers (the
 *   query rows split alike; the core passes the offset and both halves).
 * V block (G tokens of one KV head):
 *   dense: elements [t][dv], token-major.
 *   quantized, codes of token quad u = t/4 are bytes [c][t%4] (a lane holds
 *   one channel of 4 tokens):
 *     q8: byte (u*dv + c)*4 + t%4
 *     q4: byte ((u/2)*dv + c)*4 + t%4, low nibble for even u, high for odd u
 *     q2: byte ((u/4)*dv + c)*4 + t%4, bits 2*(u%4)..+1
 *     q3: the low 2 bits as q2 (bytes [0, G*dv/4)), then the high bit at
 *         byte G*dv/4 + ((u/8)*dv + c)*4 + t%4, bit u%8 (a lane holds 32
 *         tokens: with G not a multiple of 32 the last lanes are half used)
 *   then fp16 scale[G][nvg], fp16 min[G][nvg] at slimkv_v_params_offset().
 * Quantization (KIVI, asymmetric): over the values x of one K channel in a
 * group, or of one V channel group of a token: s = fp16((max-min)/(2^b-1)),
 * m = fp16(min), inv = (s == 0 ? 0 : 1.0f / s),
 * code = clamp(rint((x - m) * inv), 0, 2^b-1) computed in float exactly in
 * that order (bit-exact across ISAs); x^ = code * s + m.
 * SparK K group (G tokens, each keeping its own top-T of D channels): G
 * token records of slimkv_spark_record_bytes() each:
 *   mask[ceil(D/8)]   bit c (byte c/8, bit c%8) set when channel c is kept
 *   sign[ceil(D/8)]   bit c set when k_c < 0 (meaningful for pruned c)
 *   a_t               f32: mean saliency of the pruned channels
 *   dense values:     T elements, kept channels in ascending order
 *   quantized values: fp16 scale[nvg], fp16 min[nvg] (nvg = ceil(T/G), one
 *                     pair per G consecutive values), then codes, value j at
 *                     byte j*b/8, bits (j % (8/b))*b (plain little-endian packing)
 * A pruned channel c is restored in the score as sign * sqrt(a_t / qnorm_c),
 * so its term is q_c * sign * sqrt(a_t) / sqrt(qnorm_c); the driver passes
 * u_c = q_c / sqrt(qnorm_c).
 * Code bits of padding quads (q4/q3/q2 with dk/4 not a multiple of 2/8/4)
 * are 0. SparK records hold q8, q4, q2 or dense values, never q3.
 * V blocks start zeroed (the core allocates them so); pack_v sets only the
 * bits and parameters of its own token slot, so slots not yet written read
 * as code 0, scale 0, min 0.
 */
#ifndef SLIMKV_SIMD_KERNELS_H
#define SLIMKV_SIMD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "format_math.h"
#include "slimkv.h"

#define SLIMKV_HIDDEN __attribute__((visibility("hidden")))

/* Bounds of a config (src/config.c checks them; kernels size stack arrays
 * by them): head_dim, group size, head counts. */
#define SLIMKV_MAX_HEAD_DIM 1024
#define SLIMKV_MAX_GROUP 1024
/* Far above any model's head count, low enough that every size derived
 * from it (query blocks x heads x head_dim floats of scratch per thread,
 * per-head tables) fits an int and a size_t with room to spare. */
#define SLIMKV_MAX_HEADS 4096

/* Bytes of the code section; the parameters follow it. */
/* SLIMKV_HD: the CUDA plugin addresses groups with these too. */
SLIMKV_HD size_t slimkv_k_params_offset(slimkv_format fmt, int dk, int g)
{
    size_t nquad = (size_t)dk / 4, lanes = (size_t)g * 4;
    switch (fmt) {
    case SLIMKV_Q8: return nquad * lanes;
    case SLIMKV_Q4: return (nquad + 1) / 2 * lanes;
    case SLIMKV_Q2: return (nquad + 3) / 4 * lanes;
    case SLIMKV_Q3: return slimkv_k_hi_plane_offset(dk, g) + (nquad + 7) / 8 * lanes;
    case SLIMKV_F32: return (size_t)dk * g * 4;
    default: return (size_t)dk * g * 2;
    }
}

SLIMKV_HD size_t slimkv_v_params_offset(slimkv_format fmt, int dv, int g)
{
    switch (fmt) {
    case SLIMKV_Q8: return (size_t)g * dv;
    case SLIMKV_Q4: return (size_t)g * dv / 2;
    case SLIMKV_Q2: return (size_t)g * dv / 4;
    case SLIMKV_Q3: return slimkv_v_hi_plane_offset(dv, g) + ((size_t)g + 31) / 32 * dv * 4;
    case SLIMKV_F32: return (size_t)dv * g * 4;
    default: return (size_t)dv * g * 2;
    }
}

static inline size_t slimkv_spark_record_bytes(slimkv_format fmt, int dim, int t_keep, int g)
{
    size_t bits = (size_t)(dim + 7) / 8, bytes = 2 * bits + 4;
    if (fmt == SLIMKV_Q8 || fmt == SLIMKV_Q4 || fmt == SLIMKV_Q2) {
        size_t b = fmt == SLIMKV_Q8 ? 8 : fmt == SLIMKV_Q4 ? 4 : 2;
        bytes += (size_t)((t_keep + g - 1) / g) * 4 + ((size_t)t_keep * b + 7) / 8;
    } else {
        bytes += (size_t)t_keep * (fmt == SLIMKV_F32 ? 4 : 2);
    }
    return (bytes + 3) & ~(size_t)3;
}

/* Where things sit in a SparK token record (shared by every ISA's body). */
typedef struct slimkv_spark_geometry {
    size_t record;  /* bytes per token record */
    size_t bits;    /* bytes of the mask (= of the signs) */
    size_t values;  /* offset of the values (codes) in a record */
    int t_keep, g, nvg;
} slimkv_spark_geometry;

SLIMKV_HD int slimkv_is_quantized(slimkv_format fmt);

static inline slimkv_spark_geometry slimkv_spark_geometry_of(slimkv_format fmt, int dim, int t_keep, int g)
{
    slimkv_spark_geometry r;
    r.record = slimkv_spark_record_bytes(fmt, dim, t_keep, g);
    r.bits = (size_t)(dim + 7) / 8;
    r.t_keep = t_keep;
    r.g = g;
    r.nvg = (t_keep + g - 1) / g;
    r.values = 2 * r.bits + 4 + (slimkv_is_quantized(fmt) ? (size_t)r.nvg * 4 : 0);
    return r;
}

SLIMKV_HD int slimkv_is_quantized(slimkv_format fmt)
{
    return fmt == SLIMKV_Q8 || fmt == SLIMKV_Q4 || fmt == SLIMKV_Q3 || fmt == SLIMKV_Q2;
}

SLIMKV_HD int slimkv_format_bits(slimkv_format fmt)
{
    return fmt == SLIMKV_F32  ? 32
           : fmt == SLIMKV_Q8 ? 8
           : fmt == SLIMKV_Q4 ? 4
           : fmt == SLIMKV_Q3 ? 3
           : fmt == SLIMKV_Q2 ? 2
                              : 16;
}

/* The tiles attention walks for one KV head, in position order (the CPU
 * driver and the CUDA kernels walk the same ones): the sinks in tiles of G,
 * then the G-aligned spans after the sinks that the head sees, then a
 * prefill chunk in tiles of G. */
typedef struct slimkv_tile_plan {
    int n_sink_tiles, first_window_tile, n_window_tiles, n_chunk_tiles;
    int window_start;     /* first visible position after the sinks */
} slimkv_tile_plan;

/* n tokens held (v_body of them in the V body), S sinks, a head keeping dk
 * K channels, n_chunk tokens of a prefill chunk. */
SLIMKV_HD slimkv_tile_plan slimkv_plan_tiles(int n, int n_sink, int g, int v_body, int dk, int n_chunk)
{
    slimkv_tile_plan p;
    int sinks = n < n_sink ? n : n_sink;
    p.n_sink_tiles = (sinks + g - 1) / g;
    /* Non-streaming heads see every token; streaming heads (dk == 0) only
     * the V window, which is the last R tokens. */
    p.window_start = dk > 0 ? n_sink : n_sink + v_body;
    if (n > p.window_start) {
        p.first_window_tile = (p.window_start - n_sink) / g;
        p.n_window_tiles = (n - n_sink + g - 1) / g - p.first_window_tile;
    } else {
        p.first_window_tile = 0;
        p.n_window_tiles = 0;
    }
    p.n_chunk_tiles = (n_chunk + g - 1) / g;
    return p;
}

/* Scores of one K group / row block for nq queries:
 *   s[i*lds + t] = sum_c q[i*d + c] * k(c, t)   for t < n (n <= G), i < nq.
 * Entries t >= n are left untouched. */
typedef void (*slimkv_score_k_fn)(const uint8_t *group, int dk, int g, int n, const float *q, int nq,
                                  float *s, int lds);
/* V accumulation of one block for nq weight rows:
 *   acc[i*dv + c] += sum_{t<n} w[i*ldw + t] * v(t, c). */
typedef void (*slimkv_accum_v_fn)(const uint8_t *block, int dv, int g, int n, const float *w, int ldw,
                                  int nq, float *acc);
/* Packs (quantizes) a whole K group from src[t*dk + c], t < g. */
typedef void (*slimkv_pack_k_fn)(const float *src, int dk, int g, uint8_t *group);
/* Packs one V token src[c], c < dv, into token slot `slot` of a block. */
typedef void (*slimkv_pack_v_fn)(const float *src, int dv, int g, uint8_t *block, int slot);

/* SparK: scores of one group, q and u [nq][dim]; s as for score_k. */
typedef void (*slimkv_score_spark_fn)(const uint8_t *group, int dim, int t_keep, int g, int n, const float *q,
                                      const float *u, int nq, float *s, int lds);
/* SparK: packs a whole group from src[t*dim + c] with the head's query
 * norms qnorm[dim] (all > 0): each token keeps its t_keep channels of
 * largest k^2 * qnorm (ties: lower channel first). */
typedef void (*slimkv_pack_spark_fn)(const float *src, const float *qnorm, int dim, int t_keep, int g,
                                     uint8_t *group);

/* Residual/sink rows: element type f32 or f16, row stride in elements. */
typedef void (*slimkv_score_rows_fn)(const void *rows, size_t stride, int n, int d, const float *q, int nq,
                                     float *s, int lds);
typedef void (*slimkv_accum_rows_fn)(const void *rows, size_t stride, int n, int d, const float *w, int ldw,
                                     int nq, float *acc);

/* ---- Fused decode over whole compressed groups ----
 *
 * The bulk of a decode step is the compressed body of each KV head: whole
 * groups that every query row sees. One kernel per ISA and (K format,
 * V format) pair walks such a span in tiles of SLIMKV_TILE_TOKENS tokens:
 * scores of the tile for up to SLIMKV_TILE_ROWS rows into an L1-resident
 * tile, one online-softmax step per row and tile, V accumulated from the
 * weights, the next tile's bytes prefetched while this one is computed.
 *
 * Online softmax state of `rows` rows, carried from call to call: m[i] the
 * running max, l[i] the sum of exp(s - m[i]), acc[i*dv + c] the V sum with
 * weights exp(s - m[i]); m = -inf, l = 0, acc = 0 before any token. The max
 * only moves when a tile's max exceeds it by SLIMKV_SOFTMAX_SLACK (weights
 * stay below e^SLACK, acc is rescaled rarely); the normalised output
 * acc / l does not depend on when it moves. */
#define SLIMKV_TILE_TOKENS 256
#define SLIMKV_TILE_ROWS 4
#define SLIMKV_SOFTMAX_SLACK 8.0f

/* Groups first .. first+count-1 of one head; group i's K is at
 * k_pages[i / page_groups] + (i % page_groups) * k_group_bytes, V alike. */
typedef struct slimkv_group_span {
    uint8_t *const *k_pages;
    uint8_t *const *v_pages;
    size_t k_group_bytes, v_block_bytes;
    int page_groups;
    int first, count;
    int dk, dv, g;
    slimkv_format k_format, v_format; /* the pair (read by the scalar body, which serves all) */
    /* SparK K groups only (attend_spark_groups): D channels per record, T
     * kept per token, u [rows][D] the query over sqrt(qnorm) for the
     * restored channels (see score_spark). */
    int dim, t_keep;
    const float *u;
    /* K outlier channels (0: none): each K group holds a q8 group over
     * k_outliers channels at byte k_outlier_offset, after the K format's
     * group over the dk others; q_outliers [rows][k_outliers] is the query
     * on them, and a token's score is the sum of both groups' scores. */
    int k_outliers;
    size_t k_outlier_offset;
    const float *q_outliers;
} slimkv_group_span;

/* q [rows][dk]: the scaled query on the kept K channels (without the
 * outliers, which come in span->q_outliers); for SparK groups [rows][D],
 * the scaled query on all channels. */
typedef void (*slimkv_attend_groups_fn)(const slimkv_group_span *span, const float *q, int rows, float *m,
                                        float *l, float *acc);

typedef struct slimkv_kernels {
    const char *name;
    /* [K format][V format]: every table serves every pair (the driver
     * composes score_k / accum_v per group only where an entry is NULL). */
    slimkv_attend_groups_fn attend_groups[SLIMKV_FORMAT_COUNT][SLIMKV_FORMAT_COUNT];
    /* The same over SparK K groups (records of the K format) and V blocks. */
    slimkv_attend_groups_fn attend_spark_groups[SLIMKV_FORMAT_COUNT][SLIMKV_FORMAT_COUNT];
    slimkv_score_k_fn score_k[SLIMKV_FORMAT_COUNT];
    slimkv_accum_v_fn accum_v[SLIMKV_FORMAT_COUNT];
    slimkv_pack_k_fn pack_k[SLIMKV_FORMAT_COUNT];
    slimkv_pack_v_fn pack_v[SLIMKV_FORMAT_COUNT];
    slimkv_score_spark_fn score_spark[SLIMKV_FORMAT_COUNT];
    slimkv_pack_spark_fn pack_spark[SLIMKV_FORMAT_COUNT];
    slimkv_score_rows_fn score_rows_f32, score_rows_f16;
    slimkv_accum_rows_fn accum_rows_f32, accum_rows_f16;
    /* x[i] = exp(x[i] - max) for i < n (exp(-inf) = 0); returns the sum. */
    float (*exp_sum)(float *x, int n, float max);
    /* Walsh-Hadamard rotation of one vector in place, dim a power of 2
     * (>= 4), signs[dim] of +-1: forward x <- H (signs * x) / sqrt(dim),
     * inverse x <- signs * (H x) / sqrt(dim) (H the Sylvester Hadamard
     * matrix, H[i][j] = (-1)^popcount(i & j)); inverse(forward(x)) = x. */
    void (*rotate)(float *x, int dim, const float *signs, int inverse);
    /* Round-to-nearest-even conversions, bit-exact across ISAs. */
    void (*f32_to_f16)(const float *src, uint16_t *dst, size_t n);
    void (*f16_to_f32)(const uint16_t *src, float *dst, size_t n);
} slimkv_kernels;

/* Each init copies the scalar table, then overrides what its ISA provides. */
SLIMKV_HIDDEN void slimkv_kernels_init_scalar(slimkv_kernels *k);
SLIMKV_HIDDEN void slimkv_kernels_init_avx2(slimkv_kernels *k);
SLIMKV_HIDDEN void slimkv_kernels_init_avx512(slimkv_kernels *k);
SLIMKV_HIDDEN void slimkv_kernels_init_neon(slimkv_kernels *k);
SLIMKV_HIDDEN void slimkv_kernels_init_neon_dotprod(slimkv_kernels *k);

/* Stored tokens decoded back to floats (simd/scalar.c; one definition for
 * every ISA, not in the table: truncation, their one user, is rare).
 * K group token t: dst[j] = code * scale + min (or the dense value) of its
 * j-th kept channel, j < dk. SparK group token t: dst[c] for all dim
 * channels as the score sees them: kept values decoded, a pruned channel
 * sign * sqrt(a_t) * qnorm_rsqrt[c]. V block slot: dst[j], j < dv. */
SLIMKV_HIDDEN void slimkv_unpack_k_token(slimkv_format fmt, const uint8_t *group, int dk, int g, int t, float *dst);
SLIMKV_HIDDEN void slimkv_unpack_spark_token(slimkv_format fmt, const uint8_t *group, const float *qnorm_rsqrt,
                                             int dim, int t_keep, int g, int t, float *dst);
SLIMKV_HIDDEN void slimkv_unpack_v_token(slimkv_format fmt, const uint8_t *block, int dv, int g, int slot, float *dst);
/* Slots first_slot .. g-1 of a V block back to what a block never written
 * holds (codes, scales and mins 0; dense values 0), the other slots as they are. */
SLIMKV_HIDDEN void slimkv_clear_v_slots(slimkv_format fmt, uint8_t *block, int dv, int g, int first_slot);

/* Scalar fp16/bf16 conversions (shared by every ISA for tails). */
SLIMKV_HIDDEN uint16_t slimkv_f32_to_f16(float f);
SLIMKV_HIDDEN float slimkv_f16_to_f32(uint16_t h);
SLIMKV_HIDDEN uint16_t slimkv_f32_to_bf16(float f);
SLIMKV_HIDDEN float slimkv_bf16_to_f32(uint16_t h);

#endif /* SLIMKV_SIMD_KERNELS_H */
