/* Fuzz target: the gen-linux input path. Any bytes are classified (raw BTF, ELF, bzImage),
 * extracted/decompressed and parsed; when type information opens, the generator runs over it
 * (output discarded) and the release string is read. Nothing may crash, leak or hang. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "typeinfo/typeinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[HVI_TI_ERR_LEN];
    char rel[128];
    struct hvi_typeinfo *ti = NULL;
    (void)hvi_typeinfo_release_from_buffer(data, size, rel, sizeof(rel));
    if (hvi_typeinfo_open_btf_mem(data, size, &ti, err, sizeof(err)) != HVI_OK)
        return 0;
    FILE *null = fopen("/dev/null", "w");
    if (null) {
        struct hvi_genlinux_opts o = {"fuzz*", NULL, true};
        (void)hvi_genlinux_write(ti, &o, null, NULL, err, sizeof(err));
        fclose(null);
    }
    hvi_typeinfo_free(ti);
    return 0;
}
