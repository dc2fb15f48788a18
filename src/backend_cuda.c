/* The CUDA backend: finds and loads the plugin (libslimkv_cuda.so) with
 * dlopen, checks its ABI and asks it for a device; its caches keep their
 * bytes in device memory through the plugin (plugin_abi.h). The core never
 * links the CUDA runtime; without the plugin or a device, no cache gets
 * this backend. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "plugin_abi.h"

#define PLUGIN_FILE "libslimkv_cuda.so"

/* Read once each; the plugin only when a cache may want it, so programs
 * that ask for the CPU never load the CUDA runtime. */
static pthread_once_t plugin_once = PTHREAD_ONCE_INIT;
static const slimkv_plugin_api *plugin;   /* NULL when CUDA is not usable */
static const char *plugin_problem = "the CUDA plugin was not looked for";

static void *open_plugin(void)
{
    const char *path = getenv("SLIMKV_CUDA_PLUGIN");
    if (path && *path)
        return dlopen(path, RTLD_NOW | RTLD_LOCAL);
    /* Beside the library itself (an installed or a build-tree libslimkv.so;
     * for a static link this is the program's directory). */
    Dl_info self;
    if (dladdr((void *)&slimkv_cuda_available, &self) && self.dli_fname) {
        const char *slash = strrchr(self.dli_fname, '/');
        if (slash) {
            char beside[4096];
            int dir_len = (int)(slash - self.dli_fname);
            if (snprintf(beside, sizeof beside, "%.*s/%s", dir_len, self.dli_fname, PLUGIN_FILE) <
                (int)sizeof beside) {
                void *handle = dlopen(beside, RTLD_NOW | RTLD_LOCAL);
                if (handle)
                    return handle;
            }
        }
    }
    return dlopen(PLUGIN_FILE, RTLD_NOW | RTLD_LOCAL);
}

static void load_plugin(void)
{
    void *handle = open_plugin();
    if (!handle) {
        plugin_problem = "the CUDA plugin " PLUGIN_FILE " was not found (set SLIMKV_CUDA_PLUGIN or build it with make cuda)";
        return;
    }
    slimkv_plugin_entry_fn entry;
    /* dlsym returns an object pointer; POSIX guarantees it converts. */
    *(void **)&entry = dlsym(handle, SLIMKV_PLUGIN_ENTRY);
    const slimkv_plugin_api *api = entry ? entry(SLIMKV_PLUGIN_ABI) : NULL;
    if (!api || api->abi != SLIMKV_PLUGIN_ABI) {
        plugin_problem = "the CUDA plugin was built for another SlimKV plugin ABI";
        dlclose(handle);
        return;
    }
    if (api->device_count() < 1) {
        plugin_problem = "the CUDA plugin loaded, but the CUDA driver reports no device";
        dlclose(handle);
        return;
    }
    /* The handle stays open for the life of the process: caches keep
     * pointers into the plugin. */
    plugin = api;
    plugin_problem = NULL;
}

slimkv_status slimkv_cuda_available(const char **reason)
{
    pthread_once(&plugin_once, load_plugin);
    if (reason)
        *reason = plugin ? "CUDA is available" : plugin_problem;
    return plugin ? SLIMKV_OK : SLIMKV_ERR_UNSUPPORTED;
}

slimkv_status slimkv_cuda_alloc(size_t bytes, void **ptr)
{
    if (!ptr)
        return SLIMKV_ERR_NULL_ARG;
    if (slimkv_cuda_available(NULL) != SLIMKV_OK)
        return SLIMKV_ERR_UNSUPPORTED;
    return plugin->buffer_alloc(bytes, ptr);
}

void slimkv_cuda_free(void *ptr)
{
    if (ptr && slimkv_cuda_available(NULL) == SLIMKV_OK)
        plugin->buffer_free(ptr);
}

slimkv_status slimkv_cuda_copy(void *dst, const void *src, size_t bytes, slimkv_copy_direction to)
{
    if (!dst || !src)
        return SLIMKV_ERR_NULL_ARG;
    if (to != SLIMKV_COPY_TO_HOST && to != SLIMKV_COPY_TO_DEVICE)
        return SLIMKV_ERR_INVALID_ARG;
    if (slimkv_cuda_available(NULL) != SLIMKV_OK)
        return SLIMKV_ERR_UNSUPPORTED;
    return plugin->buffer_copy(dst, src, bytes, to == SLIMKV_COPY_TO_DEVICE);
}

slimkv_status slimkv_cuda_read_bandwidth(size_t bytes, int reps, double *gbps)
{
    if (!gbps)
        return SLIMKV_ERR_NULL_ARG;
    if (bytes < 16 || reps < 1)
        return SLIMKV_ERR_INVALID_ARG;
    if (slimkv_cuda_available(NULL) != SLIMKV_OK)
        return SLIMKV_ERR_UNSUPPORTED;
    return plugin->read_bandwidth(bytes, reps, gbps);
}

/* The CUDA backend cannot serve SparK (no device kernels for its records),
 * token eviction (the rebuild of kept tokens runs on host storage), q3
 * (its two-plane codes have no device kernels yet) nor K outlier channels
 * (two-part K groups, likewise). */
static int cuda_serves(const slimkv_config *cfg)
{
    return cfg->policy != SLIMKV_POLICY_SPARK && cfg->eviction == SLIMKV_EVICT_NONE &&
           cfg->k_format != SLIMKV_Q3 && cfg->v_format != SLIMKV_Q3 && cfg->k_outliers == 0;
}

/* The device's view of a cache's heads (channel arrays stay host memory:
 * the plugin copies them). */
static slimkv_status device_heads(const slimkv_cache *c, slimkv_dev_head **out)
{
    slimkv_dev_head *heads = slimkv_calloc((size_t)c->cfg.n_kv_heads, sizeof *heads);
    if (!heads)
        return SLIMKV_ERR_NOMEM;
    for (int i = 0; i < c->cfg.n_kv_heads; i++) {
        const slimkv_head *h = &c->heads[i];
        heads[i].dk = h->dk;
        heads[i].dv = h->dv;
        heads[i].k_chan = h->k_chan;
        heads[i].v_chan = h->v_chan;
        heads[i].k_group_bytes = h->k_group_bytes;
        heads[i].v_block_bytes = h->v_block_bytes;
    }
    *out = heads;
    return SLIMKV_OK;
}

static slimkv_status cuda_create(slimkv_cache *c)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_dev_layout layout = {
        .n_q_heads = cfg->n_q_heads, .n_kv_heads = cfg->n_kv_heads, .head_dim = cfg->head_dim,
        .capacity = cfg->capacity, .group_size = cfg->group_size, .residual = cfg->residual,
        .n_sink = cfg->n_sink, .k_format = cfg->k_format, .v_format = cfg->v_format,
        .k_row_format = c->k_row_fmt, .v_row_format = c->v_row_fmt, .ring_slots = c->ring_slots,
        .sink_rows = c->sink_rows, .page_groups = SLIMKV_PAGE_GROUPS, .device_pointers = cfg->device_pointers};
    slimkv_dev_head *heads;
    slimkv_status st = device_heads(c, &heads);
    if (st != SLIMKV_OK)
        return st;
    st = plugin->create(&layout, heads, &c->device);
    slimkv_free(heads);
    return st;
}

static void cuda_destroy(slimkv_cache *c)
{
    if (c->device)
        plugin->destroy(c->device);
}

/* Tells the device the heads' channels changed (ThinK's choice). */
static slimkv_status update_device_heads(slimkv_cache *c)
{
    slimkv_dev_head *heads;
    slimkv_status st = device_heads(c, &heads);
    if (st != SLIMKV_OK)
        return st;
    st = plugin->set_heads(c->device, heads);
    slimkv_free(heads);
    return st;
}

static slimkv_status cuda_check_values(const slimkv_cache *c, const float *x, size_t n, int f16_range, int *ok)
{
    if (c->cfg.device_pointers)
        return plugin->check_values(c->device, x, n, f16_range, ok);
    return slimkv_backend_cpu_ops.check_values(c, x, n, f16_range, ok);
}

/* The core says which tokens become body; the device stores them. */
static slimkv_status cuda_append(slimkv_cache *c, const float *k, const float *v, int n_tokens)
{
    const slimkv_config *cfg = &c->cfg;
    int n0 = c->n_tokens, n1 = n0 + n_tokens;
    slimkv_dev_append a = {.k = k, .v = v, .n0 = n0, .n1 = n1,
                           .k_body0 = slimkv_k_body_tokens(cfg, n0), .k_body1 = slimkv_k_body_tokens(cfg, n1),
                           .v_body0 = slimkv_v_body_tokens(cfg, n0), .v_body1 = slimkv_v_body_tokens(cfg, n1)};
    slimkv_status st = plugin->append(c->device, &a);
    if (st == SLIMKV_OK)
        c->n_tokens = n1;
    return st;
}

static slimkv_status cuda_attend(const slimkv_cache *c, const float *q, int n_queries, int qpos0,
                                 const float *chunk_k, const float *chunk_v, int n_chunk, float *out)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_dev_attend a = {.q = q, .n_queries = n_queries, .qpos0 = qpos0, .n_tokens = c->n_tokens,
                           .k_body = slimkv_k_body_tokens(cfg, c->n_tokens),
                           .v_body = slimkv_v_body_tokens(cfg, c->n_tokens),
                           .chunk_k = chunk_k, .chunk_v = chunk_v, .n_chunk = n_chunk, .out = out};
    return plugin->attend(c->device, &a);
}

static slimkv_status cuda_reset_channels(slimkv_cache *c)
{
    slimkv_policy_reset(c);
    return update_device_heads(c);
}

/* The choice is made on the host (from a copy of device q/k), then the
 * device learns the new channels. On failure the cache is as before, or,
 * when the device cannot even be told the old channels again, the device's
 * error says so. */
static slimkv_status cuda_choose_channels(slimkv_cache *c, const float *q, const float *k, int n_tokens)
{
    const slimkv_config *cfg = &c->cfg;
    float *host = NULL;
    if (cfg->device_pointers) {
        size_t nq = (size_t)n_tokens * cfg->n_q_heads * cfg->head_dim;
        size_t nk = (size_t)n_tokens * cfg->n_kv_heads * cfg->head_dim;
        if (!(host = slimkv_malloc((nq + nk) * sizeof *host)))
            return SLIMKV_ERR_NOMEM;
        slimkv_status st = plugin->copy_to_host(c->device, q, nq, host);
        if (st == SLIMKV_OK)
            st = plugin->copy_to_host(c->device, k, nk, host + nq);
        if (st != SLIMKV_OK) {
            slimkv_free(host);
            return st;
        }
        q = host;
        k = host + nq;
    }
    slimkv_policy_choose(c, q, k, n_tokens);
    slimkv_free(host);
    slimkv_status st = update_device_heads(c);
    if (st != SLIMKV_OK) {
        slimkv_status undo = cuda_reset_channels(c);
        return undo != SLIMKV_OK ? undo : st;
    }
    return SLIMKV_OK;
}

static size_t cuda_bytes(const slimkv_cache *c)
{
    return plugin->bytes(c->device);
}

/* Not on the device yet (slimkv.h says so): the plugin has no call that
 * moves tokens back from its body to its window, nor pages two device
 * caches could share. Nothing is shared then. */
static slimkv_status cuda_truncate(slimkv_cache *c, int n_tokens)
{
    (void)c, (void)n_tokens;
    return SLIMKV_ERR_UNSUPPORTED;
}

static slimkv_status cuda_fork(const slimkv_cache *src, slimkv_cache *dst)
{
    (void)src, (void)dst;
    return SLIMKV_ERR_UNSUPPORTED;
}

static void cuda_bytes_shared(const slimkv_cache *c, size_t *owned, size_t *shared)
{
    *owned = cuda_bytes(c);
    *shared = 0;
}

/* The storage is on the device: no snapshots (slimkv.h says so). */
static slimkv_status cuda_save(const slimkv_cache *c, const char *path)
{
    (void)c, (void)path;
    return SLIMKV_ERR_UNSUPPORTED;
}

static slimkv_status cuda_restore(slimkv_cache *c, const char *path)
{
    (void)c, (void)path;
    return SLIMKV_ERR_UNSUPPORTED;
}

static const char *cuda_isa_name(const slimkv_cache *c)
{
    (void)c;
    return plugin->name;
}

static const slimkv_backend_ops cuda_ops = {
    .kind = SLIMKV_BACKEND_CUDA,
    .create = cuda_create,
    .destroy = cuda_destroy,
    .check_values = cuda_check_values,
    .append = cuda_append,
    .attend = cuda_attend,
    .choose_channels = cuda_choose_channels,
    .reset_channels = cuda_reset_channels,
    .truncate = cuda_truncate,
    .fork = cuda_fork,
    .bytes = cuda_bytes,
    .bytes_shared = cuda_bytes_shared,
    .save = cuda_save,
    .restore = cuda_restore,
    .isa_name = cuda_isa_name,
};

const slimkv_backend_ops *slimkv_backend_cuda_for(const slimkv_config *cfg)
{
    pthread_once(&plugin_once, load_plugin);
    return plugin && cuda_serves(cfg) ? &cuda_ops : NULL;
}
