#include "cami_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void *ct_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

int ct_have_reference(void)
{
    struct stat sb;
    if (stat(CAMI_REF_DIR "/intro_live_update.bin", &sb) == 0 && stat(CAMI_REF_DIR "/sources", &sb) == 0)
        return 1;
    fprintf(stderr, "FAIL: the reference corpus %s is missing (set -DHVI_SHARED_DIR=...)\n", CAMI_REF_DIR);
    return 0;
}

void *ct_build_corpus(size_t *len)
{
    const char *src[] = {CAMI_REF_DIR "/sources"};
    void *out = NULL;
    char msg[512];
    hvi_status st = hvi_cami_build(src, 1, &out, len, msg, sizeof(msg));
    if (st != HVI_OK) {
        fprintf(stderr, "building the corpus failed: %s (%s)\n", msg, hvi_strstatus(st));
        return NULL;
    }
    return out;
}

const char *ct_tmpfile(int slot, const char *text)
{
    static char paths[4][64];
    snprintf(paths[slot], sizeof(paths[slot]), "/tmp/hvi-cami-test-%d-%d.yaml", (int)getpid(), slot);
    FILE *f = fopen(paths[slot], "wb");
    if (!f)
        return NULL;
    fputs(text, f);
    fclose(f);
    return paths[slot];
}

hvi_status ct_build_text(const char *text, void **out, size_t *len, char *msg, size_t msg_len)
{
    const char *p = ct_tmpfile(0, text);
    if (!p)
        return HVI_E_IO;
    const char *src[] = {p};
    hvi_status st = hvi_cami_build(src, 1, out, len, msg, msg_len);
    unlink(p);
    return st;
}
