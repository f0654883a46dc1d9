/*
 * e2e helper: the CAMI support data for the kernel the test guest boots.
 *
 * Runs scripts/support-bin (the entries of cami/linux, plus one generated from the installed
 * kernel's BTF when none of them matches it) into the build tree and loads the result. Debian
 * replaces linux-image-amd64 with each security update, so the tests must not depend on
 * cami/linux having caught up; the script says on stderr when it generated an entry.
 */
#ifndef HVI_TEST_SUPPORT_UTIL_H
#define HVI_TEST_SUPPORT_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* NULL on success (*buf malloc'ed, *len its size), else why it failed. */
static inline const char *hvi_test_support_bin(void **buf, size_t *len)
{
    static char why[512];
    char path[256], cmd[1024];
    snprintf(path, sizeof(path), "%s/e2e-support-%ld.bin", HVI_BINARY_DIR, (long)getpid());
    snprintf(cmd, sizeof(cmd), "HVI='%s/tools/hvi/hvi' '%s/scripts/support-bin' '%s'",
             HVI_BINARY_DIR, HVI_SOURCE_DIR, path);
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(why, sizeof(why), "scripts/support-bin failed (status %d)", rc);
        return why;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, sizeof(why), "cannot open %s", path);
        return why;
    }
    const char *err = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (!*buf || fseek(f, 0, SEEK_SET) != 0 || fread(*buf, 1, (size_t)n, f) != (size_t)n) {
        free(*buf);
        *buf = NULL;
        snprintf(why, sizeof(why), "cannot read %s", path);
        err = why;
    } else {
        *len = (size_t)n;
    }
    fclose(f);
    unlink(path);
    return err;
}

#endif
