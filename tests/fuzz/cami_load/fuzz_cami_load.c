/* Fuzz the CAMI binary loader: any buffer is refused with a status or parsed; a parsed file
 * answers every lookup without reading outside what it parsed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hvi/cami.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const hvi_cami *c)
{
    uint32_t v;
    for (uint32_t i = 0; i < c->lix_count; i++) {
        const hvi_cami_lix_entry *e = &c->lix[i];
        for (unsigned g = 0; g < hvi_cami_group_count(0); g++)
            for (unsigned f = 0; f < hvi_cami_field_count(0, g); f++)
                (void)hvi_cami_lix_field(e, g, f, &v);
        (void)hvi_cami_glob_match(e->version, "4.15.0-112-generic #113-Ubuntu");
    }
    for (uint32_t i = 0; i < c->win_count; i++) {
        const hvi_cami_win_entry *w = &c->win[i], *s;
        (void)hvi_cami_win_select(c, w->build, w->kpti, w->is64, &s);
        for (unsigned g = 0; g < hvi_cami_group_count(1); g++)
            (void)hvi_cami_win_km_field(w, g, 0, &v);
        for (uint32_t f = 0; f < w->function_count; f++)
            (void)hvi_cami_win_function_find(w, w->functions[f].name_hash);
    }
    uint8_t code[256];
    memset(code, 0x90, sizeof(code));
    (void)hvi_cami_syscall_match(c, code, sizeof(code));
    (void)hvi_cami_dist_match(c, code, sizeof(code));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hvi_cami *c = NULL;
    char msg[128];
    if (hvi_cami_open(data, size, &c, msg, sizeof(msg)) == HVI_OK) {
        walk(c);
        hvi_cami_close(c);
    }
    /* 1.4 files carry no checksum: also try the input with its checksum field ignored by
     * claiming minor 4, so mutations reach the table checks */
    if (size >= 28 && size < (1u << 20)) {
        uint8_t *m = malloc(size);
        if (!m)
            return 0;
        memcpy(m, data, size);
        m[4] = 4;
        m[5] = m[6] = m[7] = 0;
        if (hvi_cami_open(m, size, &c, msg, sizeof(msg)) == HVI_OK) {
            walk(c);
            hvi_cami_close(c);
        }
        free(m);
    }
    return 0;
}
