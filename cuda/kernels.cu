/* Device kernels of the CUDA backend: input checks, append (window rows,
 * K group and V token packing in the shared layouts) and attention straight
 * from the compressed bytes (flash-decoding: token splits merged by
 * log-sum-exp, one pass per KV head for its whole GQA group).
 *
 * Written for plain CUDA with shared memory and __syncthreads only (no warp
 * intrinsics), so that the host emulator of cuda_compat.h can run the same
 * code in the tests of machines without a GPU. */
#include <float.h>
#include <math.h>

#include "../simd/kernels.h"
#include "kernels.cuh"

#define THREADS 128
#define MAX_ROWS 32           /* query rows (query x q head of the group) per attention block */
#define ATTENTION_SHARED_BUDGET (46 * 1024) /* under the 48 KiB every device gives without opt-in */

/* ---- element access ---------------------------------------------------- */

__device__ __forceinline__ float row_elem(const uint8_t *rows, int f32, size_t index)
{
    if (f32)
        return reinterpret_cast<const float *>(rows)[index];
    return slimkv_half_to_float(reinterpret_cast<const uint16_t *>(rows)[index]);
}

/* What a row format keeps of x: the f16 window rounds, as the CPU's does. */
__device__ __forceinline__ float as_row_value(float x, int f32)
{
    return f32 ? x : slimkv_half_to_float(slimkv_half_from_float(x));
}

__device__ __forceinline__ void store_row_elem(uint8_t *rows, int f32, size_t index, float x)
{
    if (f32)
        reinterpret_cast<float *>(rows)[index] = x;
    else
        reinterpret_cast<uint16_t *>(rows)[index] = slimkv_half_from_float(x);
}

__device__ __forceinline__ float dense_elem(const uint8_t *p, int format, size_t index)
{
    if (format == SLIMKV_F32)
        return reinterpret_cast<const float *>(p)[index];
    uint16_t h = reinterpret_cast<const uint16_t *>(p)[index];
    return format == SLIMKV_F16 ? slimkv_half_to_float(h) : slimkv_bfloat_to_float(h);
}

__device__ __forceinline__ void store_dense_elem(uint8_t *p, int format, size_t index, float x)
{
    if (format == SLIMKV_F32)
        reinterpret_cast<float *>(p)[index] = x;
    else if (format == SLIMKV_F16)
        reinterpret_cast<uint16_t *>(p)[index] = slimkv_half_from_float(x);
    else
        reinterpret_cast<uint16_t *>(p)[index] = slimkv_bfloat_from_float(x);
}

__device__ __forceinline__ size_t ring_row(const cache_view &v, int head, int pos)
{
    return ((size_t)head * v.ring_slots + (size_t)((pos - v.n_sink) % v.ring_slots)) * v.dim;
}

__device__ __forceinline__ uint8_t *k_group_ptr(const cache_view &v, int head, int group)
{
    return v.k_pages[(size_t)head * v.max_pages + group / v.page_groups] +
           (size_t)(group % v.page_groups) * v.heads[head].k_group_bytes;
}

__device__ __forceinline__ uint8_t *v_block_ptr(const cache_view &v, int head, int block)
{
    return v.v_pages[(size_t)head * v.max_pages + block / v.page_groups] +
           (size_t)(block % v.page_groups) * v.heads[head].v_block_bytes;
}

/* ---- input checks ------------------------------------------------------- */

__global__ void check_values_kernel(const float *x, size_t n, float limit, int *bad)
{
    int found = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        found |= !(fabsf(x[i]) <= limit); /* NaN compares false */
    if (found)
        atomicOr(bad, 1);
}

cudaError_t launch_check_values(const float *x, size_t n, int f16_range, int *bad, cudaStream_t stream)
{
    size_t blocks = (n + THREADS - 1) / THREADS;
    blocks = blocks < 1 ? 1 : blocks > 1024 ? 1024 : blocks;
    SLIMKV_LAUNCH(check_values_kernel, dim3((unsigned)blocks), dim3(THREADS), 0, stream, x, n,
                  f16_range ? 65504.0f : FLT_MAX, bad);
    return cudaGetLastError();
}

/* Reads n words and folds them into one word per block: the read bandwidth
 * the attention kernels are measured against. */
__global__ void read_words_kernel(const uint4 *words, size_t n, unsigned *sink)
{
    unsigned fold = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 w = words[i];
        fold ^= w.x ^ w.y ^ w.z ^ w.w;
    }
    if (fold == 0x9e3779b9u) /* almost never: keeps the loads without a store per thread */
        sink[blockIdx.x] = fold;
}

cudaError_t launch_read_words(const void *words, size_t bytes, unsigned *sink, int blocks, cudaStream_t stream)
{
    SLIMKV_LAUNCH(read_words_kernel, dim3((unsigned)blocks), dim3(256), 0, stream, (const uint4 *)words,
                  bytes / sizeof(uint4), sink);
    return cudaGetLastError();
}

/* ---- append ------------------------------------------------------------- */

/* Token pos's value of channel c as the window holds it: from the window
 * for tokens stored before this append, from the input (rounded as the
 * window would round it) for the new ones. */
__device__ __forceinline__ float window_value(const cache_view &v, const append_args &a, int which, int head, int pos,
                                              int c)
{
    int f32 = which == 0 ? v.k_row_f32 : v.v_row_f32;
    if (pos >= a.n0) {
        const float *in = which == 0 ? a.k : a.v;
        return as_row_value(in[((size_t)(pos - a.n0) * v.n_kv_heads + head) * v.dim + c], f32);
    }
    return row_elem(which == 0 ? v.ring_k : v.ring_v, f32, ring_row(v, head, pos) + c);
}

/* One K group per block: grid (new groups, KV heads). Quantized formats:
 * each thread owns whole code bytes (q4/q2 bytes hold several channels),
 * so no two threads write one byte. */
__global__ void pack_k_kernel(cache_view v, append_args a)
{
    SLIMKV_DYNAMIC_SHARED(float, shared);
    int head = blockIdx.y;
    const dev_head_info h = v.heads[head];
    if (h.dk == 0)
        return;
    int g = v.group, group = a.k_body0 / g + blockIdx.x, first = v.n_sink + group * g;
    const int32_t *chan = v.k_chan + (size_t)head * v.dim;
    uint8_t *dst = k_group_ptr(v, head, group);
    slimkv_format fmt = (slimkv_format)v.k_format;
    if (!slimkv_is_quantized(fmt)) {
        for (int i = threadIdx.x; i < g * h.dk; i += blockDim.x) /* [t][dk] */
            store_dense_elem(dst, fmt, i, window_value(v, a, 0, head, first + i / h.dk, chan[i % h.dk]));
        return;
    }
    int bits = slimkv_format_bits(fmt);
    size_t params = slimkv_k_params_offset(fmt, h.dk, g);
    uint16_t *scale_h = reinterpret_cast<uint16_t *>(dst + params), *min_h = scale_h + h.dk;
    float *mins = shared, *inverse = shared + h.dk;
    for (int c = threadIdx.x; c < h.dk; c += blockDim.x) {
        float lo = window_value(v, a, 0, head, first, chan[c]), hi = lo;
        for (int t = 1; t < g; t++) {
            float x = window_value(v, a, 0, head, first + t, chan[c]);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        slimkv_quant_params_of(lo, hi, bits, &scale_h[c], &min_h[c]);
        mins[c] = slimkv_half_to_float(min_h[c]);
        inverse[c] = slimkv_inverse_scale(slimkv_half_to_float(scale_h[c]));
    }
    __syncthreads();
    int per_byte = 8 / bits;
    for (size_t b = threadIdx.x; b < params; b += blockDim.x) {
        /* byte ((quad / per_byte) * g + t) * 4 + c % 4 */
        int lane = (int)(b % 4), t = (int)((b / 4) % g), quad0 = (int)(b / (4 * (size_t)g)) * per_byte;
        unsigned byte = 0;
        for (int i = 0; i < per_byte; i++) {
            int c = (quad0 + i) * 4 + lane;
            if (c < h.dk) {
                float x = window_value(v, a, 0, head, first + t, chan[c]);
                byte |= (unsigned)slimkv_quant_code(x, mins[c], inverse[c], bits) << (i * bits);
            }
        }
        dst[b] = (uint8_t)byte;
    }
}

/* The new body tokens of one V block per block: grid (touched blocks, KV
 * heads). A code byte holds several tokens (token quads): its owner thread
 * rewrites only the bits of the tokens of this append. */
__global__ void pack_v_kernel(cache_view v, append_args a)
{
    SLIMKV_DYNAMIC_SHARED(float, shared);
    int head = blockIdx.y;
    const dev_head_info h = v.heads[head];
    if (h.dk == 0 || h.dv == 0)
        return;
    int g = v.group, block = a.v_body0 / g + blockIdx.x;
    int slot0 = a.v_body0 - block * g, slot1 = a.v_body1 - block * g;
    slot0 = slot0 < 0 ? 0 : slot0;
    slot1 = slot1 > g ? g : slot1;
    int first = v.n_sink + block * g; /* position of slot 0 */
    const int32_t *chan = v.v_chan + (size_t)head * v.dim;
    uint8_t *dst = v_block_ptr(v, head, block);
    slimkv_format fmt = (slimkv_format)v.v_format;
    if (!slimkv_is_quantized(fmt)) {
        int n = (slot1 - slot0) * h.dv;
        for (int i = threadIdx.x; i < n; i += blockDim.x) { /* [t][dv] */
            int slot = slot0 + i / h.dv, c = i % h.dv;
            store_dense_elem(dst, fmt, (size_t)slot * h.dv + c, window_value(v, a, 1, head, first + slot, chan[c]));
        }
        return;
    }
    int bits = slimkv_format_bits(fmt), nvg = (h.dv + g - 1) / g;
    size_t params = slimkv_v_params_offset(fmt, h.dv, g);
    uint16_t *scale_h = reinterpret_cast<uint16_t *>(dst + params), *min_h = scale_h + (size_t)g * nvg;
    float *mins = shared, *inverse = shared + (size_t)g * nvg; /* [slot][channel group] */
    for (int i = threadIdx.x; i < (slot1 - slot0) * nvg; i += blockDim.x) {
        int slot = slot0 + i / nvg, j = i % nvg, c0 = j * g, c1 = c0 + g < h.dv ? c0 + g : h.dv;
        float lo = window_value(v, a, 1, head, first + slot, chan[c0]), hi = lo;
        for (int c = c0 + 1; c < c1; c++) {
            float x = window_value(v, a, 1, head, first + slot, chan[c]);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        size_t p = (size_t)slot * nvg + j;
        slimkv_quant_params_of(lo, hi, bits, &scale_h[p], &min_h[p]);
        mins[p] = slimkv_half_to_float(min_h[p]);
        inverse[p] = slimkv_inverse_scale(slimkv_half_to_float(scale_h[p]));
    }
    __syncthreads();
    int per_byte = 8 / bits;
    unsigned mask = (1u << bits) - 1;
    for (size_t b = threadIdx.x; b < params; b += blockDim.x) {
        /* byte ((quad / per_byte) * dv + c) * 4 + t % 4 */
        int lane = (int)(b % 4), c = (int)((b / 4) % h.dv), quad0 = (int)(b / (4 * (size_t)h.dv)) * per_byte;
        unsigned byte = dst[b];
        int changed = 0;
        for (int i = 0; i < per_byte; i++) {
            int slot = (quad0 + i) * 4 + lane;
            if (slot < slot0 || slot >= slot1)
                continue;
            size_t p = (size_t)slot * nvg + c / g;
            float x = window_value(v, a, 1, head, first + slot, chan[c]);
            unsigned code = (unsigned)slimkv_quant_code(x, mins[p], inverse[p], bits);
            byte = (byte & ~(mask << (i * bits))) | (code << (i * bits));
            changed = 1;
        }
        if (changed)
            dst[b] = (uint8_t)byte;
    }
}

/* New tokens into the sinks, or into the window when they are among the
 * last ring_slots tokens (older ones were flushed by the kernels before
 * this one, or are overwritten in the ring anyway). grid (new tokens, KV
 * heads). */
__global__ void store_rows_kernel(cache_view v, append_args a)
{
    int pos = a.n0 + blockIdx.x, head = blockIdx.y;
    int in_sinks = pos < v.n_sink, in_window = pos >= v.n_sink && pos >= a.n1 - v.ring_slots;
    if (!in_sinks && !in_window)
        return;
    const float *k = a.k + ((size_t)(pos - a.n0) * v.n_kv_heads + head) * v.dim;
    const float *vv = a.v + ((size_t)(pos - a.n0) * v.n_kv_heads + head) * v.dim;
    size_t row = in_sinks ? ((size_t)head * v.sink_rows + pos) * v.dim : ring_row(v, head, pos);
    uint8_t *kdst = in_sinks ? v.sink_k : v.ring_k, *vdst = in_sinks ? v.sink_v : v.ring_v;
    for (int c = threadIdx.x; c < v.dim; c += blockDim.x) {
        store_row_elem(kdst, v.k_row_f32, row + c, k[c]);
        store_row_elem(vdst, v.v_row_f32, row + c, vv[c]);
    }
}

cudaError_t launch_append(const cache_view &view, const append_args &args, cudaStream_t stream)
{
    int g = view.group;
    unsigned heads = (unsigned)view.n_kv_heads;
    /* Packing reads the window before store_rows overwrites its slots. */
    int new_groups = (args.k_body1 - args.k_body0) / g;
    if (new_groups > 0) {
        size_t shared = 2 * (size_t)view.dim * sizeof(float);
        SLIMKV_LAUNCH(pack_k_kernel, dim3((unsigned)new_groups, heads), dim3(THREADS), shared, stream, view, args);
    }
    if (args.v_body1 > args.v_body0) {
        int blocks = (args.v_body1 - 1) / g - args.v_body0 / g + 1;
        size_t shared = 2 * (size_t)g * ((view.dim + g - 1) / g) * sizeof(float);
        SLIMKV_LAUNCH(pack_v_kernel, dim3((unsigned)blocks, heads), dim3(THREADS), shared, stream, view, args);
    }
    SLIMKV_LAUNCH(store_rows_kernel, dim3((unsigned)(args.n1 - args.n0), heads), dim3(THREADS), 0, stream, view,
                  args);
    return cudaGetLastError();
}

/* ---- attention ---------------------------------------------------------- */

typedef slimkv_tile_plan tile_plan;

enum rows_source { FROM_SINKS, FROM_WINDOW, FROM_CHUNK };

struct tile {
    int p0, n;                    /* positions p0 .. p0 + n - 1 */
    const uint8_t *k_group;       /* compressed K group (token t at t), or NULL: K from rows */
    const uint8_t *v_block;       /* compressed V block for the first n_v_body tokens */
    int n_v_body, v_slot0;        /* slot of the tile's first token in v_block */
    int rows;                     /* rows_source of K (without k_group) and of V past n_v_body */
};

__device__ tile locate_tile(const cache_view &v, const attend_args &a, int head, const tile_plan &p, int index)
{
    int g = v.group, s = v.n_sink, n = a.n_tokens;
    const dev_head_info &h = v.heads[head];
    tile t;
    t.k_group = NULL;
    t.v_block = NULL;
    t.n_v_body = 0;
    t.v_slot0 = 0;
    if (index < p.n_sink_tiles) {
        int sinks = n < s ? n : s;
        t.p0 = index * g;
        t.n = sinks - t.p0 < g ? sinks - t.p0 : g;
        t.rows = FROM_SINKS;
        return t;
    }
    index -= p.n_sink_tiles;
    if (index < p.n_window_tiles) {
        int span = p.first_window_tile + index;
        int start = s + span * g, end = start + g < n ? start + g : n;
        t.p0 = start > p.window_start ? start : p.window_start;
        t.n = end - t.p0;
        t.rows = FROM_WINDOW;
        if (h.dk > 0 && t.p0 < s + a.k_body)
            t.k_group = k_group_ptr(v, head, span);
        int v_body_end = h.dk > 0 ? s + a.v_body : 0;
        int nb = v_body_end - t.p0;
        t.n_v_body = nb < 0 ? 0 : nb > t.n ? t.n : nb;
        if (t.n_v_body > 0 && h.dv > 0) {
            t.v_block = v_block_ptr(v, head, span);
            t.v_slot0 = t.p0 - start;
        }
        return t;
    }
    index -= p.n_window_tiles;
    t.p0 = n + index * g;
    t.n = a.n_chunk - index * g < g ? a.n_chunk - index * g : g;
    t.rows = FROM_CHUNK;
    return t;
}

/* Full-precision value of channel c of token pos from the tile's rows. */
__device__ __forceinline__ float rows_value(const cache_view &v, const attend_args &a, int which, int rows, int head,
                                            int pos, int c)
{
    if (rows == FROM_CHUNK) {
        const float *chunk = which == 0 ? a.chunk_k : a.chunk_v;
        return chunk[((size_t)(pos - a.n_tokens) * v.n_kv_heads + head) * v.dim + c];
    }
    int f32 = which == 0 ? v.k_row_f32 : v.v_row_f32;
    if (rows == FROM_SINKS)
        return row_elem(which == 0 ? v.sink_k : v.sink_v, f32, ((size_t)head * v.sink_rows + pos) * v.dim + c);
    return row_elem(which == 0 ? v.ring_k : v.ring_v, f32, ring_row(v, head, pos) + c);
}

/* Score of token tok of a quantized K group: bias + sum_j fold_j * code_j.
 * One 32-bit load serves 4 channels per code position of the byte (q8: 4,
 * q4: 8, q2: 16 channels), in the layout's channel quads. */
__device__ __forceinline__ float quantized_score(const uint8_t *group, slimkv_format format, int dk, int g, int tok,
                                                 const float *fold, float bias)
{
    int bits = slimkv_format_bits(format), per_byte = 8 / bits, quads = dk / 4;
    unsigned mask = (1u << bits) - 1;
    const uint32_t *words = reinterpret_cast<const uint32_t *>(group); /* groups are 64-byte aligned */
    float s = bias;
    for (int set = 0; set * per_byte < quads; set++) {
        uint32_t word = words[(size_t)set * g + tok]; /* bytes (set * G + tok) * 4 .. + 3 */
        for (int i = 0; i < per_byte && set * per_byte + i < quads; i++) {
            const float *f = fold + (set * per_byte + i) * 4;
            for (int lane = 0; lane < 4; lane++)
                s += f[lane] * (float)((word >> (lane * 8 + i * bits)) & mask);
        }
    }
    return s;
}

/* Score of token tok of a dense-format K group ([t][dk]). */
__device__ __forceinline__ float dense_score(const uint8_t *group, slimkv_format format, int dk, int tok,
                                             const float *q, const int32_t *k_chan)
{
    float s = 0.0f;
    for (int j = 0; j < dk; j++)
        s += q[k_chan[j]] * dense_elem(group, format, (size_t)tok * dk + j);
    return s;
}

__device__ __forceinline__ float rows_score(const cache_view &v, const attend_args &a, int rows, int head, int pos,
                                            const float *q)
{
    float s = 0.0f;
    for (int c = 0; c < v.dim; c++)
        s += q[c] * rows_value(v, a, 0, rows, head, pos, c);
    return s;
}

/* sum over slots [slot0, slot0 + n) of weight * value of kept V channel j in
 * a quantized block. One 32-bit load holds 4 * (8 / bits) tokens of the
 * channel (token quads); the scales and mins are the tile's, in shared
 * memory. */
__device__ __forceinline__ float quantized_values(const uint8_t *block, int format, int dv, int g, int j, int slot0,
                                                  int n, const float *weights, const float *v_scale,
                                                  const float *v_min)
{
    int bits = slimkv_format_bits((slimkv_format)format), per_byte = 8 / bits, per_word = 4 * per_byte;
    int nvg = (dv + g - 1) / g, slot1 = slot0 + n;
    unsigned mask = (1u << bits) - 1;
    const uint32_t *words = reinterpret_cast<const uint32_t *>(block); /* blocks are 64-byte aligned */
    float sum = 0.0f;
    for (int set = slot0 / per_word; set * per_word < slot1; set++) {
        uint32_t word = words[(size_t)set * dv + j]; /* bytes ((u / per_byte) * dv + j) * 4 .. + 3 */
        for (int k = 0; k < per_word; k++) {
            int slot = set * per_word + k;
            if (slot < slot0 || slot >= slot1)
                continue;
            int i = slot / 4 - set * per_byte, lane = slot % 4;
            size_t p = (size_t)slot * nvg + j / g;
            float code = (float)((word >> (lane * 8 + i * bits)) & mask);
            sum += weights[slot - slot0] * (code * v_scale[p] + v_min[p]);
        }
    }
    return sum;
}

/* Shared memory of an attention block: q, K-folded q and acc [rows][dim],
 * weights [rows][G], m/l/alpha/bias [rows], the K group's scale/min [dim],
 * the V block's scale/min [G][ceil(dim/G)]. */
static size_t attention_shared_bytes(int dim, int group, int rows_per_block)
{
    size_t v_params = (size_t)group * ((dim + group - 1) / group);
    return ((size_t)rows_per_block * (3 * (size_t)dim + group + 4) + 2 * (size_t)dim + 2 * v_params) * sizeof(float);
}

int attention_rows_per_block(int dim, int group)
{
    int rows = MAX_ROWS;
    while (rows > 1 && attention_shared_bytes(dim, group, rows) > ATTENTION_SHARED_BUDGET)
        rows--;
    return rows; /* dim <= 1024 and G <= 1024 leave room for at least one row */
}

/* One block per (KV head, block of rows, token split); a row is one query
 * for one q head of the KV head's group (row = query * group_size + q head).
 * Online softmax over tiles; the block's partial (m, l, acc) goes to
 * partials, and the merge kernel writes out (also for a single split: one
 * path, at the cost of a small extra kernel for large prefills). */
__global__ void attention_kernel(cache_view v, attend_args a)
{
    SLIMKV_DYNAMIC_SHARED(float, shared);
    int head = blockIdx.z, row_block = blockIdx.x, split = blockIdx.y; /* row blocks can exceed 65535 */
    int dim = v.dim, g = v.group, gs = v.n_q_heads / v.n_kv_heads;
    int total_rows = a.n_queries * gs, row0 = row_block * a.rows_per_block;
    int rows = total_rows - row0 < a.rows_per_block ? total_rows - row0 : a.rows_per_block;
    const dev_head_info h = v.heads[head];
    const int32_t *k_chan = v.k_chan + (size_t)head * dim;
    const int32_t *v_index = v.v_index + (size_t)head * dim;

    float *q = shared;                                   /* [rows][dim], scaled */
    float *fold = q + (size_t)a.rows_per_block * dim;    /* [rows][dk]: q of kept channel j * K scale j */
    float *acc = fold + (size_t)a.rows_per_block * dim;  /* [rows][dim] */
    float *w = acc + (size_t)a.rows_per_block * dim;     /* [rows][G] scores, then weights */
    float *m = w + (size_t)a.rows_per_block * g;
    float *l = m + a.rows_per_block;
    float *alpha = l + a.rows_per_block;
    float *bias = alpha + a.rows_per_block;              /* [rows]: sum_j q_j * K min j */
    float *k_scale = bias + a.rows_per_block;            /* [dk] of the current K group */
    float *k_min = k_scale + dim;
    float *v_scale = k_min + dim;                        /* [slot][channel group] of the current V block */
    float *v_min = v_scale + (size_t)g * ((dim + g - 1) / g);

    for (int i = threadIdx.x; i < rows * dim; i += blockDim.x) {
        int r = i / dim, c = i % dim, row = row0 + r, query = row / gs, qhead = head * gs + row % gs;
        q[i] = a.q[((size_t)query * v.n_q_heads + qhead) * dim + c] * a.scale;
        acc[i] = 0.0f;
    }
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    __syncthreads();

    tile_plan plan = slimkv_plan_tiles(a.n_tokens, v.n_sink, g, a.v_body, h.dk, a.n_chunk);
    int total = plan.n_sink_tiles + plan.n_window_tiles + plan.n_chunk_tiles;
    int per_split = (total + a.n_split - 1) / a.n_split;
    int t_begin = split * per_split, t_end = t_begin + per_split < total ? t_begin + per_split : total;
    int last_pos = a.qpos0 + (row0 + rows - 1) / gs; /* the block's latest query */
    slimkv_format kf = (slimkv_format)v.k_format;

    for (int ti = t_begin; ti < t_end; ti++) {
        tile t = locate_tile(v, a, head, plan, ti);
        if (t.p0 > last_pos)
            break; /* in every row's future, and so is every later tile */
        int k_quantized = t.k_group && slimkv_is_quantized(kf);
        if (k_quantized) {
            /* Fold the group's scales into the query and its mins into a
             * per-row bias, once per tile: a score is then bias + sum of
             * folded q times codes. */
            const uint16_t *p = reinterpret_cast<const uint16_t *>(t.k_group + slimkv_k_params_offset(kf, h.dk, g));
            for (int j = threadIdx.x; j < h.dk; j += blockDim.x) {
                k_scale[j] = slimkv_half_to_float(p[j]);
                k_min[j] = slimkv_half_to_float(p[h.dk + j]);
            }
            __syncthreads();
            for (int i = threadIdx.x; i < rows * h.dk; i += blockDim.x) {
                int r = i / h.dk, j = i % h.dk;
                fold[(size_t)r * dim + j] = q[(size_t)r * dim + k_chan[j]] * k_scale[j];
            }
            for (int r = threadIdx.x; r < rows; r += blockDim.x) {
                float b = 0.0f;
                for (int j = 0; j < h.dk; j++)
                    b += q[(size_t)r * dim + k_chan[j]] * k_min[j];
                bias[r] = b;
            }
            __syncthreads();
        }
        /* Scores, with future positions masked. */
        for (int i = threadIdx.x; i < rows * t.n; i += blockDim.x) {
            int r = i / t.n, tok = i % t.n, pos = t.p0 + tok;
            int qpos = a.qpos0 + (row0 + r) / gs;
            float s = -INFINITY;
            if (pos <= qpos && k_quantized)
                s = quantized_score(t.k_group, kf, h.dk, g, tok, fold + (size_t)r * dim, bias[r]);
            else if (pos <= qpos && t.k_group)
                s = dense_score(t.k_group, kf, h.dk, tok, q + (size_t)r * dim, k_chan);
            else if (pos <= qpos)
                s = rows_score(v, a, t.rows, head, pos, q + (size_t)r * dim);
            w[(size_t)r * g + tok] = s;
        }
        __syncthreads();
        /* Online softmax, one thread per row. */
        for (int r = threadIdx.x; r < rows; r += blockDim.x) {
            float *wr = w + (size_t)r * g, mx = -INFINITY;
            for (int tok = 0; tok < t.n; tok++)
                mx = wr[tok] > mx ? wr[tok] : mx;
            float m_new = mx > m[r] ? mx : m[r];
            if (m_new == -INFINITY) { /* nothing visible yet */
                alpha[r] = 1.0f;
                for (int tok = 0; tok < t.n; tok++)
                    wr[tok] = 0.0f;
                continue;
            }
            alpha[r] = expf(m[r] - m_new); /* 0 while m is -inf */
            float sum = 0.0f;
            for (int tok = 0; tok < t.n; tok++) {
                wr[tok] = expf(wr[tok] - m_new); /* 0 for masked scores */
                sum += wr[tok];
            }
            l[r] = l[r] * alpha[r] + sum;
            m[r] = m_new;
        }
        __syncthreads();
        int v_quantized = t.v_block && slimkv_is_quantized((slimkv_format)v.v_format);
        if (v_quantized) {
            int nvg = (h.dv + g - 1) / g;
            size_t params = slimkv_v_params_offset((slimkv_format)v.v_format, h.dv, g);
            const uint16_t *p = reinterpret_cast<const uint16_t *>(t.v_block + params);
            for (int i = threadIdx.x; i < t.n_v_body * nvg; i += blockDim.x) {
                size_t at = (size_t)(t.v_slot0 + i / nvg) * nvg + i % nvg;
                v_scale[at] = slimkv_half_to_float(p[at]);
                v_min[at] = slimkv_half_to_float(p[(size_t)g * nvg + at]);
            }
            __syncthreads();
        }
        /* V accumulation: body tokens add to their kept channels only. */
        for (int i = threadIdx.x; i < rows * dim; i += blockDim.x) {
            int r = i / dim, c = i % dim;
            const float *wr = w + (size_t)r * g;
            float sum = acc[i] * alpha[r];
            int j = v_index[c];
            if (j >= 0 && v_quantized)
                sum += quantized_values(t.v_block, v.v_format, h.dv, g, j, t.v_slot0, t.n_v_body, wr, v_scale, v_min);
            else if (j >= 0)
                for (int tok = 0; tok < t.n_v_body; tok++)
                    sum += wr[tok] * dense_elem(t.v_block, v.v_format, (size_t)(t.v_slot0 + tok) * h.dv + j);
            for (int tok = t.n_v_body; tok < t.n; tok++)
                sum += wr[tok] * rows_value(v, a, 1, t.rows, head, t.p0 + tok, c);
            acc[i] = sum;
        }
        __syncthreads();
    }

    size_t item = ((size_t)head * a.n_row_blocks + row_block) * a.n_split + split;
    float *part = a.partials + item * a.rows_per_block * (size_t)(dim + 2);
    for (int i = threadIdx.x; i < rows * (dim + 2); i += blockDim.x) {
        int r = i / (dim + 2), c = i % (dim + 2);
        part[i] = c == 0 ? m[r] : c == 1 ? l[r] : acc[(size_t)r * dim + c - 2];
    }
}

/* Log-sum-exp merge of the splits: one block per (KV head, row block). */
__global__ void merge_kernel(cache_view v, attend_args a)
{
    int head = blockIdx.y, row_block = blockIdx.x;
    int dim = v.dim, gs = v.n_q_heads / v.n_kv_heads;
    int total_rows = a.n_queries * gs, row0 = row_block * a.rows_per_block;
    int rows = total_rows - row0 < a.rows_per_block ? total_rows - row0 : a.rows_per_block;
    size_t stride = (size_t)a.rows_per_block * (dim + 2);
    const float *first = a.partials + ((size_t)head * a.n_row_blocks + row_block) * a.n_split * stride;
    for (int i = threadIdx.x; i < rows * dim; i += blockDim.x) {
        int r = i / dim, c = i % dim, row = row0 + r;
        float mx = -INFINITY;
        for (int s = 0; s < a.n_split; s++) {
            float ms = first[s * stride + (size_t)r * (dim + 2)];
            mx = ms > mx ? ms : mx;
        }
        float sum = 0.0f, l = 0.0f;
        if (mx != -INFINITY)
            for (int s = 0; s < a.n_split; s++) {
                const float *p = first + s * stride + (size_t)r * (dim + 2);
                if (p[0] == -INFINITY)
                    continue;
                float scale = expf(p[0] - mx);
                l += p[1] * scale;
                sum += p[2 + c] * scale;
            }
        a.out[((size_t)(row / gs) * v.n_q_heads + head * gs + row % gs) * dim + c] = l > 0.0f ? sum / l : 0.0f;
    }
}

cudaError_t launch_attention(const cache_view &view, const attend_args &args, cudaStream_t stream)
{
    size_t shared = attention_shared_bytes(view.dim, view.group, args.rows_per_block);
    dim3 grid((unsigned)args.n_row_blocks, (unsigned)args.n_split, (unsigned)view.n_kv_heads);
    SLIMKV_LAUNCH(attention_kernel, grid, dim3(THREADS), shared, stream, view, args);
    SLIMKV_LAUNCH(merge_kernel, dim3((unsigned)args.n_row_blocks, (unsigned)view.n_kv_heads), dim3(THREADS), 0,
                      stream, view, args);
    return cudaGetLastError();
}
