/* Fuzz the CAMI YAML compiler: any text is refused with a message or compiled; whatever
 * compiles must load back in the loader (the compiler never writes a file it would refuse). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cami/cami_model.h"
#include "hvi/cami.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cm_model m;
    char msg[256];
    memset(&m, 0, sizeof(m));
    if (size > (1u << 20) || !(m.a = cm_arena_new()))
        return 0;
    hvi_status st = cami_yaml_file(&m, "fuzz.yaml", (const char *)data, size, msg, sizeof(msg));
    if (st == HVI_OK && (m.nlix || m.nwin)) {
        uint8_t *out = NULL;
        size_t len = 0;
        if (cami_write(&m, &out, &len, msg, sizeof(msg)) == HVI_OK) {
            hvi_cami *c = NULL;
            if (hvi_cami_open(out, len, &c, msg, sizeof(msg)) != HVI_OK) {
                fprintf(stderr, "compiled output refused by the loader: %s\n", msg);
                abort();
            }
            hvi_cami_close(c);
            free(out);
        }
    }
    cm_arena_free(m.a);
    return 0;
}
