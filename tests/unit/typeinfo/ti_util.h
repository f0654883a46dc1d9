/* Helpers shared by the typeinfo tests: temp dirs, files, the mock build. */
#ifndef HVI_TEST_TI_UTIL_H
#define HVI_TEST_TI_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "typeinfo/typeinfo.h"

static inline int ti_write(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(buf, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

static inline int ti_run(const char *cmd)
{
    int rc = system(cmd);
    return rc;
}

static inline char *ti_tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/hvi-ti-XXXXXX");
    return mkdtemp(dir);
}

static inline void ti_rmdir(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "  could not remove %s\n", dir);
}

#endif
