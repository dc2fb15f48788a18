/* Scratch directories for the file tests: made under $TMPDIR (or /tmp),
 * emptied and removed at the end. Header-only: test programs share no
 * objects besides oracle.o. */
#ifndef SLIMKV_TEST_TMPDIR_H
#define SLIMKV_TEST_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct tmpdir {
    char path[256];
} tmpdir;

static inline int tmpdir_make(tmpdir *d)
{
    const char *base = getenv("TMPDIR");
    snprintf(d->path, sizeof d->path, "%s/slimkv-test-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(d->path) ? 0 : -1;
}

/* dir/name into buf. */
static inline const char *tmpdir_file(const tmpdir *d, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", d->path, name);
    return buf;
}

/* Entries other than . and .. (leftover temporary files show up here). */
static inline int tmpdir_count(const tmpdir *d)
{
    DIR *dir = opendir(d->path);
    int n = 0;
    for (struct dirent *e; dir && (e = readdir(dir));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (dir)
        closedir(dir);
    return n;
}

/* Removes files and empty subdirectories one level deep, then the directory. */
static inline void tmpdir_remove(tmpdir *d)
{
    DIR *dir = opendir(d->path);
    for (struct dirent *e; dir && (e = readdir(dir));) {
        char p[512];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", d->path, e->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    if (dir)
        closedir(dir);
    rmdir(d->path);
}

#endif /* SLIMKV_TEST_TMPDIR_H */
