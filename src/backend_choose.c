/* Which backend a new cache gets: the config's choice, or for "auto" the
 * SLIMKV_BACKEND environment variable (read once), else CUDA when it can
 * serve the config and the CPU otherwise. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static int backend_override = -1; /* SLIMKV_BACKEND: -1 unset, -2 invalid, else a slimkv_backend */

static void read_backend_env(void)
{
    const char *env = getenv("SLIMKV_BACKEND");
    if (!env || !*env)
        return;
    if (!strcmp(env, "auto"))
        backend_override = SLIMKV_BACKEND_AUTO;
    else if (!strcmp(env, "cpu"))
        backend_override = SLIMKV_BACKEND_CPU;
    else if (!strcmp(env, "cuda"))
        backend_override = SLIMKV_BACKEND_CUDA;
    else
        backend_override = -2;
}

slimkv_status slimkv_backend_choose(const slimkv_config *cfg, const slimkv_backend_ops **ops)
{
    pthread_once(&env_once, read_backend_env);
    /* Like SLIMKV_ISA, SLIMKV_BACKEND decides for "auto" only, and a bad
     * value fails loudly instead of falling back. */
    slimkv_backend wanted = cfg->backend;
    if (wanted == SLIMKV_BACKEND_AUTO && backend_override == -2)
        return SLIMKV_ERR_UNSUPPORTED;
    if (wanted == SLIMKV_BACKEND_AUTO && backend_override >= 0)
        wanted = (slimkv_backend)backend_override;
    if (wanted == SLIMKV_BACKEND_CPU) { /* device_pointers needs backend CUDA (slimkv_config_validate) */
        *ops = &slimkv_backend_cpu_ops;
        return SLIMKV_OK;
    }
    const slimkv_backend_ops *cuda = slimkv_backend_cuda_for(cfg);
    if (wanted == SLIMKV_BACKEND_CUDA && !cuda)
        return SLIMKV_ERR_UNSUPPORTED;
    *ops = cuda ? cuda : &slimkv_backend_cpu_ops;
    return SLIMKV_OK;
}
