/*
 * Fuzz target for the dump backend's ELF core parser and glue. The input is the dump file.
 * When it opens: every vCPU's registers are read, pages at the start, end and edges of every
 * memory range are mapped and unmapped, and an engine attaches (memory-only unless the bytes
 * hold a kernel). Any crash, sanitizer report, or a page left mapped after the engine is freed
 * is a bug.
 */
#include <stdlib.h>

#include "dump_internal.h"
#include "hvi/hvi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch(hvi_glue *g, uint64_t gpa)
{
    void *p = NULL;
    gpa &= HVI_PAGE_MASK;
    if (g->map_gpa(g->ctx, gpa, &p) == HVI_OK) {
        volatile uint8_t x = ((uint8_t *)p)[0] ^ ((uint8_t *)p)[HVI_PAGE_SIZE - 1];
        (void)x;
        if (g->unmap_gpa(g->ctx, gpa, p) != HVI_OK)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hvi_dump *d = NULL;
    hvi_glue g;
    if (hvi_dump_open_buffer(data, size, &d) != HVI_OK)
        return 0;
    if (hvi_dump_glue(d, &g) != HVI_OK)
        abort();
    uint32_t n = 0;
    uint64_t gpfn = 0;
    (void)g.vcpu_count(g.ctx, &n);
    (void)g.max_gpfn(g.ctx, &gpfn);
    for (uint32_t v = 0; v < n; v++) {
        hvi_regs r;
        (void)g.get_regs(g.ctx, v, HVI_REGS_GPR, &r);
        (void)g.get_regs(g.ctx, v, HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_DTR | HVI_REGS_SEGBASE,
                         &r);
    }
    for (uint32_t i = 0; i < d->nseg && i < 64; i++) {
        const struct dump_seg *s = &d->seg[i];
        touch(&g, s->gpa);
        touch(&g, s->gpa + s->len - 1);
        touch(&g, s->gpa + s->len);
        touch(&g, s->gpa - HVI_PAGE_SIZE);
    }
    hvi_engine *e = NULL;
    if (hvi_engine_new(&g, &e) == HVI_OK) {
        hvi_set_log(e, NULL, -1, NULL);
        hvi_guest_params gp = {.size = sizeof(gp), .os_hint = HVI_OS_UNKNOWN};
        (void)hvi_new_guest(e, &gp);
        hvi_engine_free(e);
    }
    if (d->nbounce != 0)
        abort(); /* a page assembled for the engine was never given back */
    hvi_dump_close(d);
    return 0;
}
