/* hvi guest/linux — where the structure offsets come from.
 *
 * The intended source is the CAMI support data: the Linux entry selected by the kernel release
 * (version glob) through the CAMI layer, each field of lix_offsets_fill() asked for by name.
 * The CAMI layer is not in the tree yet, so a kernel is refused by version unless an interim
 * offsets file ("struct.field value" lines, hvi_linux_set_offsets_file) was given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix.h"

#define OFS_MAX_LINES 256

struct ofs_file {
    char name[OFS_MAX_LINES][64];
    uint32_t value[OFS_MAX_LINES];
    size_t n;
};

static hvi_status ofs_lookup(void *ctx, const char *name, uint32_t *out)
{
    const struct ofs_file *f = ctx;
    for (size_t i = 0; i < f->n; i++) {
        if (!strcmp(f->name[i], name)) {
            *out = f->value[i];
            return HVI_OK;
        }
    }
    return HVI_E_NOT_FOUND;
}

static hvi_status ofs_load(const char *path, struct ofs_file *f)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return HVI_E_IO;
    char line[256];
    hvi_status st = HVI_OK;
    while (fgets(line, sizeof(line), fp)) {
        char name[64];
        unsigned long v = 0;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%63s %lu", name, &v) != 2 || v > 0xffff) {
            st = HVI_E_FORMAT;
            break;
        }
        if (f->n == OFS_MAX_LINES) {
            st = HVI_E_LIMIT;
            break;
        }
        hvi_strlcpy(f->name[f->n], name, sizeof(f->name[0]));
        f->value[f->n++] = (uint32_t)v;
    }
    fclose(fp);
    return st;
}

hvi_status lix_select_offsets(hvi_engine *e, struct lix_kernel *k)
{
    if (!e || !k)
        return HVI_E_INVAL;
    const char *path = lix_offsets_path(e);
    if (!path)
        return hvi_fail(e, HVI_E_UNSUPPORTED,
                        "no CAMI entry for Linux %s: this build has no CAMI layer to select one "
                        "(and no offsets file was given)",
                        k->release);
    struct ofs_file *f = calloc(1, sizeof(*f));
    if (!f)
        return HVI_E_NOMEM;
    const char *missing = "";
    hvi_status st = ofs_load(path, f);
    if (st != HVI_OK) {
        free(f);
        return hvi_fail(e, st, "reading offsets file %s: %s", path, hvi_strstatus(st));
    }
    st = lix_offsets_fill(&k->off, ofs_lookup, f, &missing);
    free(f);
    if (st != HVI_OK)
        return hvi_fail(e, st, "offsets file %s for Linux %s: field %s: %s", path, k->release,
                        missing ? missing : "?", hvi_strstatus(st));
    return HVI_OK;
}
