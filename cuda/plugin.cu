/* libslimkv_cuda.so: the CUDA backend behind src/plugin_abi.h.
 *
 * A device cache holds, in device memory, what a CPU cache holds in host
 * memory, in the same layouts: per KV head the sink rows, the residual
 * window ring and pages of K groups / V blocks that grow with the tokens.
 * The core decides what is body and what is window; this file allocates,
 * copies and launches. Every call ends with a stream synchronize, so
 * errors surface in the call that caused them and host buffers are done
 * with when it returns. */
#include <math.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "../simd/kernels.h"
#include "../src/plugin_abi.h"
#include "kernels.cuh"

#define EXPORT extern "C" __attribute__((visibility("default")))
#define TARGET_BLOCKS 1024 /* attention blocks to aim for: about 8 per SM of an H100 (132 SMs), so
                           * that enough loads are in flight to reach DRAM bandwidth */

namespace {

struct device_cache {
    slimkv_dev_layout layout;
    cudaStream_t stream;
    int max_pages;
    /* host bookkeeping */
    dev_head_info *heads;         /* [n_kv] */
    uint8_t **k_pages, **v_pages; /* [n_kv][max_pages] device pointers */
    int *n_k_pages, *n_v_pages;   /* [n_kv] */
    /* device memory */
    dev_head_info *d_heads;
    int32_t *d_k_chan, *d_v_chan, *d_v_index;
    uint8_t **d_k_pages, **d_v_pages;
    uint8_t *d_sink_k, *d_sink_v, *d_ring_k, *d_ring_v;
    int *d_flag;
    void *scratch;                /* inputs copied from the host, outputs, partials */
    size_t scratch_bytes;
};

slimkv_status status_of(cudaError_t e)
{
    return e == cudaSuccess ? SLIMKV_OK : e == cudaErrorMemoryAllocation ? SLIMKV_ERR_NOMEM : SLIMKV_ERR_DEVICE;
}

/* The first error of a sequence of calls, then a synchronize that reports
 * what the queued kernels ran into. */
slimkv_status finish(device_cache *c, cudaError_t e)
{
    cudaError_t sync = cudaStreamSynchronize(c->stream);
    return status_of(e != cudaSuccess ? e : sync);
}

/* cudaMalloc that leaves no error behind for a later cudaGetLastError
 * (which the kernel launchers use to see launch failures). */
cudaError_t device_alloc(void **p, size_t bytes)
{
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        cudaGetLastError();
    }
    return e;
}

size_t row_bytes(slimkv_format row_format, int dim)
{
    return (size_t)dim * (row_format == SLIMKV_F32 ? 4 : 2);
}

cache_view view_of(const device_cache *c)
{
    const slimkv_dev_layout &l = c->layout;
    cache_view v;
    v.n_q_heads = l.n_q_heads;
    v.n_kv_heads = l.n_kv_heads;
    v.dim = l.head_dim;
    v.group = l.group_size;
    v.n_sink = l.n_sink;
    v.ring_slots = l.ring_slots;
    v.sink_rows = l.sink_rows;
    v.page_groups = l.page_groups;
    v.max_pages = c->max_pages;
    v.k_format = l.k_format;
    v.v_format = l.v_format;
    v.k_row_f32 = l.k_row_format == SLIMKV_F32;
    v.v_row_f32 = l.v_row_format == SLIMKV_F32;
    v.heads = c->d_heads;
    v.k_chan = c->d_k_chan;
    v.v_chan = c->d_v_chan;
    v.v_index = c->d_v_index;
    v.k_pages = c->d_k_pages;
    v.v_pages = c->d_v_pages;
    v.sink_k = c->d_sink_k;
    v.sink_v = c->d_sink_v;
    v.ring_k = c->d_ring_k;
    v.ring_v = c->d_ring_v;
    return v;
}

/* Copies the heads' channels and sizes to the device (and the host copy). */
slimkv_status upload_heads(device_cache *c, const slimkv_dev_head *heads)
{
    int n = c->layout.n_kv_heads, dim = c->layout.head_dim;
    size_t per = (size_t)n * dim;
    int32_t *chan = (int32_t *)malloc(3 * per * sizeof(int32_t));
    if (!chan)
        return SLIMKV_ERR_NOMEM;
    int32_t *k_chan = chan, *v_chan = chan + per, *v_index = chan + 2 * per;
    for (int h = 0; h < n; h++) {
        c->heads[h].dk = heads[h].dk;
        c->heads[h].dv = heads[h].dv;
        c->heads[h].k_group_bytes = heads[h].k_group_bytes;
        c->heads[h].v_block_bytes = heads[h].v_block_bytes;
        for (int i = 0; i < dim; i++) {
            k_chan[(size_t)h * dim + i] = i < heads[h].dk ? heads[h].k_chan[i] : 0;
            v_chan[(size_t)h * dim + i] = i < heads[h].dv ? heads[h].v_chan[i] : 0;
            v_index[(size_t)h * dim + i] = -1;
        }
        for (int j = 0; j < heads[h].dv; j++)
            v_index[(size_t)h * dim + heads[h].v_chan[j]] = j;
    }
    cudaError_t e = cudaMemcpyAsync(c->d_k_chan, chan, 3 * per * sizeof(int32_t), cudaMemcpyHostToDevice, c->stream);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(c->d_heads, c->heads, (size_t)n * sizeof(dev_head_info), cudaMemcpyHostToDevice,
                            c->stream);
    slimkv_status st = finish(c, e); /* the host buffer must outlive the copy */
    free(chan);
    return st;
}

void destroy(void *handle)
{
    device_cache *c = (device_cache *)handle;
    if (!c)
        return;
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    int n = c->layout.n_kv_heads;
    for (int h = 0; c->heads && h < n; h++) {
        for (int p = 0; p < c->n_k_pages[h]; p++)
            cudaFree(c->k_pages[(size_t)h * c->max_pages + p]);
        for (int p = 0; p < c->n_v_pages[h]; p++)
            cudaFree(c->v_pages[(size_t)h * c->max_pages + p]);
    }
    cudaFree(c->d_heads);
    cudaFree(c->d_k_chan);
    cudaFree(c->d_k_pages);
    cudaFree(c->d_sink_k);
    cudaFree(c->d_ring_k);
    cudaFree(c->d_flag);
    cudaFree(c->scratch);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c->heads);
    free(c->k_pages);
    free(c->n_k_pages);
    free(c);
}

int device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* no driver: not sticky for later calls */
        return 0;
    }
    return n;
}

slimkv_status create(const slimkv_dev_layout *layout, const slimkv_dev_head *heads, void **out)
{
    *out = NULL;
    device_cache *c = (device_cache *)calloc(1, sizeof *c);
    if (!c)
        return SLIMKV_ERR_NOMEM;
    c->layout = *layout;
    int n = layout->n_kv_heads, dim = layout->head_dim, g = layout->group_size;
    int groups = (layout->capacity + g - 1) / g;
    c->max_pages = (groups + layout->page_groups - 1) / layout->page_groups + 1;
    size_t pages = (size_t)n * c->max_pages;
    c->heads = (dev_head_info *)calloc((size_t)n, sizeof *c->heads);
    c->k_pages = (uint8_t **)calloc(2 * pages, sizeof *c->k_pages);
    c->n_k_pages = (int *)calloc(2 * (size_t)n, sizeof *c->n_k_pages);
    if (!c->heads || !c->k_pages || !c->n_k_pages) {
        destroy(c);
        return SLIMKV_ERR_NOMEM;
    }
    c->v_pages = c->k_pages + pages;
    c->n_v_pages = c->n_k_pages + n;
    size_t krow = row_bytes(layout->k_row_format, dim), vrow = row_bytes(layout->v_row_format, dim);
    size_t sink_k = (size_t)n * layout->sink_rows * krow, sink_v = (size_t)n * layout->sink_rows * vrow;
    size_t ring_k = (size_t)n * layout->ring_slots * krow, ring_v = (size_t)n * layout->ring_slots * vrow;
    size_t per = (size_t)n * dim;
    /* A blocking stream: it waits for work the caller queued on the legacy
     * default stream (e.g. kernels that wrote device-pointer inputs). */
    cudaError_t e = cudaStreamCreate(&c->stream);
    /* One allocation per kind; the V parts follow the K parts. */
    if (e == cudaSuccess)
        e = device_alloc((void **)&c->d_heads, (size_t)n * sizeof(dev_head_info));
    if (e == cudaSuccess)
        e = device_alloc((void **)&c->d_k_chan, 3 * per * sizeof(int32_t));
    if (e == cudaSuccess)
        e = device_alloc((void **)&c->d_k_pages, 2 * pages * sizeof(uint8_t *));
    if (e == cudaSuccess && sink_k + sink_v > 0)
        e = device_alloc((void **)&c->d_sink_k, sink_k + sink_v);
    if (e == cudaSuccess)
        e = device_alloc((void **)&c->d_ring_k, ring_k + ring_v);
    if (e == cudaSuccess)
        e = device_alloc((void **)&c->d_flag, sizeof(int));
    if (e != cudaSuccess) {
        slimkv_status st = status_of(e);
        destroy(c);
        return st;
    }
    c->d_v_chan = c->d_k_chan + per;
    c->d_v_index = c->d_k_chan + 2 * per;
    c->d_v_pages = c->d_k_pages + pages;
    c->d_sink_v = c->d_sink_k ? c->d_sink_k + sink_k : NULL;
    c->d_ring_v = c->d_ring_k + ring_k;
    /* Zeroed like the CPU's: page pointers NULL, windows and sinks 0. */
    e = cudaMemsetAsync(c->d_k_pages, 0, 2 * pages * sizeof(uint8_t *), c->stream);
    if (e == cudaSuccess && c->d_sink_k)
        e = cudaMemsetAsync(c->d_sink_k, 0, sink_k + sink_v, c->stream);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(c->d_ring_k, 0, ring_k + ring_v, c->stream);
    slimkv_status st = finish(c, e);
    if (st == SLIMKV_OK)
        st = upload_heads(c, heads);
    if (st != SLIMKV_OK) {
        destroy(c);
        return st;
    }
    *out = c;
    return SLIMKV_OK;
}

slimkv_status set_heads(void *handle, const slimkv_dev_head *heads)
{
    return upload_heads((device_cache *)handle, heads);
}

/* Scratch of at least bytes, grown (never shrunk) between calls. */
slimkv_status reserve_scratch(device_cache *c, size_t bytes)
{
    if (bytes <= c->scratch_bytes)
        return SLIMKV_OK;
    void *grown = NULL;
    cudaError_t e = device_alloc(&grown, bytes);
    if (e != cudaSuccess)
        return status_of(e);
    cudaFree(c->scratch);
    c->scratch = grown;
    c->scratch_bytes = bytes;
    return SLIMKV_OK;
}

slimkv_status check_values(void *handle, const float *x, size_t n, int f16_range, int *ok)
{
    device_cache *c = (device_cache *)handle;
    int bad = 0;
    cudaError_t e = cudaMemsetAsync(c->d_flag, 0, sizeof(int), c->stream);
    if (e == cudaSuccess && n > 0)
        e = launch_check_values(x, n, f16_range, c->d_flag, c->stream);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(&bad, c->d_flag, sizeof(int), cudaMemcpyDeviceToHost, c->stream);
    slimkv_status st = finish(c, e);
    *ok = st == SLIMKV_OK && !bad;
    return st;
}

slimkv_status copy_to_host(void *handle, const float *src, size_t n, float *dst)
{
    device_cache *c = (device_cache *)handle;
    return finish(c, cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, c->stream));
}

/* Pages for k_body / v_body body tokens, all or nothing. New pages are
 * zeroed: V slots not yet written must read as code 0, scale 0, min 0. */
slimkv_status reserve_pages(device_cache *c, int k_body, int v_body)
{
    const slimkv_dev_layout &l = c->layout;
    int per_page = l.group_size * l.page_groups;
    int need_k = (k_body + per_page - 1) / per_page, need_v = (v_body + per_page - 1) / per_page;
    int n = l.n_kv_heads, h;
    int *had = (int *)malloc(2 * (size_t)n * sizeof(int));
    if (!had)
        return SLIMKV_ERR_NOMEM;
    cudaError_t e = cudaSuccess;
    for (h = 0; h < n; h++) {
        had[h] = c->n_k_pages[h];
        had[n + h] = c->n_v_pages[h];
    }
    for (h = 0; h < n && e == cudaSuccess; h++) {
        const dev_head_info &hd = c->heads[h];
        if (hd.dk == 0)
            continue;
        size_t kbytes = hd.k_group_bytes * l.page_groups, vbytes = hd.v_block_bytes * l.page_groups;
        while (e == cudaSuccess && c->n_k_pages[h] < need_k) {
            uint8_t **slot = &c->k_pages[(size_t)h * c->max_pages + c->n_k_pages[h]];
            if ((e = device_alloc((void **)slot, kbytes)) == cudaSuccess &&
                (e = cudaMemsetAsync(*slot, 0, kbytes, c->stream)) == cudaSuccess)
                c->n_k_pages[h]++;
            else if (*slot)
                cudaFree(*slot), *slot = NULL;
        }
        while (e == cudaSuccess && vbytes && c->n_v_pages[h] < need_v) {
            uint8_t **slot = &c->v_pages[(size_t)h * c->max_pages + c->n_v_pages[h]];
            if ((e = device_alloc((void **)slot, vbytes)) == cudaSuccess &&
                (e = cudaMemsetAsync(*slot, 0, vbytes, c->stream)) == cudaSuccess)
                c->n_v_pages[h]++;
            else if (*slot)
                cudaFree(*slot), *slot = NULL;
        }
    }
    if (e == cudaSuccess) /* the device's page tables follow the host's */
        e = cudaMemcpyAsync(c->d_k_pages, c->k_pages, 2 * (size_t)n * c->max_pages * sizeof(uint8_t *),
                            cudaMemcpyHostToDevice, c->stream);
    slimkv_status st = finish(c, e);
    if (st != SLIMKV_OK) {
        for (h = 0; h < n; h++) {
            while (c->n_k_pages[h] > had[h]) {
                uint8_t **slot = &c->k_pages[(size_t)h * c->max_pages + --c->n_k_pages[h]];
                cudaFree(*slot);
                *slot = NULL;
            }
            while (c->n_v_pages[h] > had[n + h]) {
                uint8_t **slot = &c->v_pages[(size_t)h * c->max_pages + --c->n_v_pages[h]];
                cudaFree(*slot);
                *slot = NULL;
            }
        }
    }
    free(had);
    return st;
}

slimkv_status append(void *handle, const slimkv_dev_append *a)
{
    device_cache *c = (device_cache *)handle;
    const slimkv_dev_layout &l = c->layout;
    size_t n = (size_t)(a->n1 - a->n0) * l.n_kv_heads * l.head_dim;
    append_args args = {a->k, a->v, a->n0, a->n1, a->k_body0, a->k_body1, a->v_body0, a->v_body1};
    slimkv_status st = l.device_pointers ? SLIMKV_OK : reserve_scratch(c, 2 * n * sizeof(float));
    if (st == SLIMKV_OK)
        st = reserve_pages(c, a->k_body1, a->v_body1);
    if (st != SLIMKV_OK)
        return st;
    /* Nothing but the device can fail from here on. */
    cudaError_t e = cudaSuccess;
    if (!l.device_pointers) {
        float *k = (float *)c->scratch, *v = k + n;
        e = cudaMemcpyAsync(k, a->k, n * sizeof(float), cudaMemcpyHostToDevice, c->stream);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(v, a->v, n * sizeof(float), cudaMemcpyHostToDevice, c->stream);
        args.k = k;
        args.v = v;
    }
    if (e == cudaSuccess)
        e = launch_append(view_of(c), args, c->stream);
    return finish(c, e);
}

slimkv_status attend(void *handle, const slimkv_dev_attend *a)
{
    device_cache *c = (device_cache *)handle;
    const slimkv_dev_layout &l = c->layout;
    int dim = l.head_dim, g = l.group_size, gs = l.n_q_heads / l.n_kv_heads;
    attend_args args;
    args.q = a->q;
    args.n_queries = a->n_queries;
    args.qpos0 = a->qpos0;
    args.n_tokens = a->n_tokens;
    args.k_body = a->k_body;
    args.v_body = a->v_body;
    args.chunk_k = a->chunk_k;
    args.chunk_v = a->chunk_v;
    args.n_chunk = a->chunk_k ? a->n_chunk : 0;
    args.out = a->out;
    args.scale = 1.0f / sqrtf((float)dim);
    args.rows_per_block = attention_rows_per_block(dim, g);
    args.n_row_blocks = (a->n_queries * gs + args.rows_per_block - 1) / args.rows_per_block;
    /* Split the tokens until the device has about TARGET_BLOCKS blocks;
     * never more splits than tiles. */
    int blocks = l.n_kv_heads * args.n_row_blocks;
    int tiles = (a->n_tokens + args.n_chunk + g - 1) / g + 1;
    args.n_split = blocks >= TARGET_BLOCKS ? 1 : (TARGET_BLOCKS + blocks - 1) / blocks;
    args.n_split = args.n_split < tiles ? args.n_split : tiles;

    size_t nq = (size_t)a->n_queries * l.n_q_heads * dim;
    size_t nchunk = (size_t)args.n_chunk * l.n_kv_heads * dim;
    size_t partials = (size_t)blocks * args.n_split * args.rows_per_block * (dim + 2);
    size_t host_io = l.device_pointers ? 0 : 2 * nq + 2 * nchunk; /* q, out, chunk k and v */
    slimkv_status st = reserve_scratch(c, (partials + host_io) * sizeof(float));
    if (st != SLIMKV_OK)
        return st;
    float *scratch = (float *)c->scratch;
    args.partials = scratch;
    cudaError_t e = cudaSuccess;
    if (!l.device_pointers) {
        float *q = scratch + partials, *out = q + nq, *ck = out + nq, *cv = ck + nchunk;
        e = cudaMemcpyAsync(q, a->q, nq * sizeof(float), cudaMemcpyHostToDevice, c->stream);
        if (e == cudaSuccess && nchunk)
            e = cudaMemcpyAsync(ck, a->chunk_k, nchunk * sizeof(float), cudaMemcpyHostToDevice, c->stream);
        if (e == cudaSuccess && nchunk)
            e = cudaMemcpyAsync(cv, a->chunk_v, nchunk * sizeof(float), cudaMemcpyHostToDevice, c->stream);
        args.q = q;
        args.out = out;
        args.chunk_k = nchunk ? ck : NULL;
        args.chunk_v = nchunk ? cv : NULL;
    }
    if (e == cudaSuccess)
        e = launch_attention(view_of(c), args, c->stream);
    if (e == cudaSuccess && !l.device_pointers)
        e = cudaMemcpyAsync(a->out, args.out, nq * sizeof(float), cudaMemcpyDeviceToHost, c->stream);
    return finish(c, e);
}

/* The CPU storage's formula (src/storage.c, slimkv_storage_bytes) on the device's pages. */
size_t bytes(const void *handle)
{
    const device_cache *c = (const device_cache *)handle;
    const slimkv_dev_layout &l = c->layout;
    size_t rows = row_bytes(l.k_row_format, l.head_dim) + row_bytes(l.v_row_format, l.head_dim), total = 0;
    for (int h = 0; h < l.n_kv_heads; h++) {
        total += (size_t)(l.sink_rows + l.ring_slots) * rows;
        total += (size_t)c->n_k_pages[h] * l.page_groups * c->heads[h].k_group_bytes;
        total += (size_t)c->n_v_pages[h] * l.page_groups * c->heads[h].v_block_bytes;
    }
    return total;
}

/* Device memory for programs that pass device pointers (the tests and the
 * bench, through slimkv_cuda_alloc and the rest in slimkv.h), without
 * linking the CUDA runtime themselves. */
slimkv_status buffer_alloc(size_t bytes, void **ptr)
{
    return status_of(device_alloc(ptr, bytes));
}

void buffer_free(void *ptr)
{
    cudaFree(ptr);
}

slimkv_status buffer_copy(void *dst, const void *src, size_t bytes, int to_device)
{
    return status_of(cudaMemcpy(dst, src, bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost));
}

/* The best of reps passes over a buffer of bytes; the bench's attention
 * rows are percentages of this. */
slimkv_status read_bandwidth(size_t bytes, int reps, double *gbps)
{
    bytes &= ~(size_t)15;
    enum { BLOCKS = 4096 };
    void *words = NULL;
    unsigned *sink = NULL;
    cudaError_t e = device_alloc(&words, bytes);
    if (e == cudaSuccess)
        e = device_alloc((void **)&sink, BLOCKS * sizeof(unsigned));
    if (e == cudaSuccess)
        e = cudaMemset(words, 1, bytes);
    if (e == cudaSuccess)
        e = cudaDeviceSynchronize();
    double best = 0.0;
    for (int r = 0; r < reps && e == cudaSuccess; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        e = launch_read_words(words, bytes, sink, BLOCKS, 0);
        if (e == cudaSuccess)
            e = cudaDeviceSynchronize();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (seconds > 0 && (double)bytes / seconds / 1e9 > best)
            best = (double)bytes / seconds / 1e9;
    }
    cudaFree(words);
    cudaFree(sink);
    *gbps = best;
    return status_of(e);
}

const slimkv_plugin_api api = {
    SLIMKV_PLUGIN_ABI, "cuda", device_count, create, destroy, set_heads, check_values,
    copy_to_host, append, attend, bytes, buffer_alloc, buffer_free, buffer_copy, read_bandwidth,
};

} // namespace

EXPORT const slimkv_plugin_api *slimkv_plugin_entry(uint32_t core_abi)
{
    return core_abi == SLIMKV_PLUGIN_ABI ? &api : NULL;
}
