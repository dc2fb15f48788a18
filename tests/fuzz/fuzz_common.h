/* libFuzzer harness helpers: the readers take paths, so each input is
 * written to a private temporary file first. */
#ifndef SLIMKV_FUZZ_COMMON_H
#define SLIMKV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "slimkv.h"

/* Path of a file holding exactly data[0..size); reused across inputs. */
static inline const char *fuzz_input_file(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/slimkv-fuzz-%d.bin", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    return path;
}

/* Every status the library may return. */
static inline void fuzz_check_status(slimkv_status st)
{
    if ((unsigned)st > SLIMKV_ERR_DEVICE)
        abort();
}

#endif
