/*
 * Fuzz target for the page walker. Input layout:
 *   byte 0      paging mode (mod 5)
 *   bytes 1..8  GVA (little endian)
 *   bytes 9..   guest RAM contents from GPA 0x1000 on (page tables, data); CR3 = 0x1000
 * The engine translates, reads, fetches and string-reads at the GVA (and a few neighbours).
 * Any crash, sanitizer report or a mapping left outstanding after engine free is a bug.
 */
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "hvi_sim.h"

#define FUZZ_RAM (256u << 10)

static void exercise(hvi_engine *e, hvi_gva gva)
{
    hvi_translation t;
    hvi_gpa g;
    uint8_t buf[64];
    char s[40];
    size_t n;
    (void)hvi_gva_translate(e, 0, gva, &t);
    (void)hvi_gva_to_gpa(e, 0, gva, &g);
    (void)hvi_gva_to_gpa(e, 0x1000, gva ^ 0x1000, &g);
    (void)hvi_gva_read(e, 0, gva, buf, sizeof(buf));
    (void)hvi_gva_fetch(e, 0, gva + 4090, buf, 16);
    (void)hvi_gva_read_str(e, 0, gva, 100, s, sizeof(s), &n);
    (void)hvi_gva_read_wstr(e, 0, gva + 1, 100, s, sizeof(s), &n);
    void *p = NULL;
    if (hvi_gva_map(e, 0, gva, 5000, &p) == HVI_OK)
        hvi_gva_unmap(e, p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    hvi_sim_config cfg = {.ram_size = FUZZ_RAM, .vcpus = 1};
    hvi_sim *sim = NULL;
    hvi_engine *e = NULL;
    hvi_glue g;
    if (hvi_sim_new(&cfg, &sim) != HVI_OK)
        return 0;
    size_t body = size - 9;
    if (body > FUZZ_RAM - 0x1000)
        body = FUZZ_RAM - 0x1000;
    (void)hvi_sim_phys_write(sim, 0x1000, data + 9, body);
    if (hvi_sim_glue(sim, &g) == HVI_OK && hvi_engine_new(&g, &e) == HVI_OK) {
        hvi_set_log(e, NULL, -1, NULL);
        hvi_gva gva;
        memcpy(&gva, data + 1, 8);
        (void)hvi_mem_set_context(e, (hvi_paging_mode)(data[0] % 5), 0x1000);
        exercise(e, gva);
        exercise(e, gva & 0xffffffffull);
        hvi_engine_free(e);
    }
    if (hvi_sim_outstanding_maps(sim) != 0)
        abort(); /* the engine leaked a backend mapping */
    hvi_sim_free(sim);
    return 0;
}
