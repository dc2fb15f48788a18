/* The CUDA backend: finds and loads the plugin (libslimkv_cuda.so) with
 * dlopen, checks its ABI, asks it for a device, and decides which backend a
 * new cache gets. The core never links the CUDA runtime; without the plugin
 * or a device, everything runs on the CPU. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PLUGIN_FILE "libslimkv_cuda.so"

/* Read once each; the plugin only when a cache may want it, so programs
 * that ask for the CPU never load the CUDA runtime. */
static pthread_once_t env_once = PTHREAD_ONCE_INIT, plugin_once = PTHREAD_ONCE_INIT;
static int backend_override = -1;         /* SLIMKV_BACKEND: -1 unset, -2 invalid, else a slimkv_backend */
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

static void read_backend_env(void)
{
    const char *env = getenv("SLIMKV_BACKEND");
    if (env && *env) {
        if (!strcmp(env, "auto"))
            backend_override = SLIMKV_BACKEND_AUTO;
        else if (!strcmp(env, "cpu"))
            backend_override = SLIMKV_BACKEND_CPU;
        else if (!strcmp(env, "cuda"))
            backend_override = SLIMKV_BACKEND_CUDA;
        else
            backend_override = -2;
    }
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

/* The CUDA backend cannot serve SparK (no device kernels for its records). */
static int cuda_serves(const slimkv_config *cfg)
{
    return cfg->policy != SLIMKV_POLICY_SPARK;
}

slimkv_status slimkv_backend_choose(const slimkv_config *cfg, const slimkv_plugin_api **api)
{
    pthread_once(&env_once, read_backend_env);
    *api = NULL;
    /* Like SLIMKV_ISA, SLIMKV_BACKEND decides for "auto" only, and a bad
     * value fails loudly instead of falling back. */
    slimkv_backend wanted = cfg->backend;
    if (wanted == SLIMKV_BACKEND_AUTO && backend_override == -2)
        return SLIMKV_ERR_UNSUPPORTED;
    if (wanted == SLIMKV_BACKEND_AUTO && backend_override >= 0)
        wanted = (slimkv_backend)backend_override;
    if (wanted == SLIMKV_BACKEND_CPU)
        return SLIMKV_OK; /* device_pointers needs backend CUDA (slimkv_config_validate) */
    pthread_once(&plugin_once, load_plugin);
    int usable = plugin && cuda_serves(cfg);
    if (wanted == SLIMKV_BACKEND_CUDA && !usable)
        return SLIMKV_ERR_UNSUPPORTED;
    if (usable)
        *api = plugin;
    return SLIMKV_OK;
}
