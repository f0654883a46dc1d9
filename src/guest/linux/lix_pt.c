/* hvi guest/linux — an interim long-mode page walk over the glue's map_gpa, used by the Linux
 * layer while the mem layer's hvi_gva_read() is not in the tree (one call site:
 * lix_mem_from_engine). 4- and 5-level paging, 1 GiB / 2 MiB pages; bounded by construction. */
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix.h"

#define PTE_P 1ull
#define PTE_PS 0x80ull
#define PTE_ADDR 0x000ffffffffff000ull

static hvi_status phys_read(hvi_engine *e, uint64_t gpa, void *buf, size_t len)
{
    uint8_t *b = buf;
    while (len) {
        uint64_t page = gpa & HVI_PAGE_MASK;
        size_t off = (size_t)(gpa - page), n = HVI_PAGE_SIZE - off;
        if (n > len)
            n = len;
        void *p = NULL;
        hvi_status st = e->glue.map_gpa(e->glue.ctx, page, &p);
        if (st != HVI_OK)
            return st;
        memcpy(b, (uint8_t *)p + off, n);
        e->glue.unmap_gpa(e->glue.ctx, page, p);
        b += n, gpa += n, len -= n;
    }
    return HVI_OK;
}

static hvi_status translate(hvi_engine *e, uint64_t cr3, uint64_t va, uint64_t *pa)
{
    int levels = hvi_mem_paging_mode(e) == HVI_PAGING_5LVL ? 5 : 4;
    if (hvi_mem_paging_mode(e) != HVI_PAGING_4LVL && levels != 5)
        return HVI_E_UNSUPPORTED;
    uint64_t table = cr3 & PTE_ADDR;
    for (int l = levels; l >= 1; l--) {
        uint64_t idx = (va >> (12 + 9 * (l - 1))) & 511, ent = 0;
        hvi_status st = phys_read(e, table + idx * 8, &ent, 8);
        if (st != HVI_OK)
            return st;
        if (!(ent & PTE_P))
            return HVI_E_NOT_PRESENT;
        if ((l == 2 || l == 3) && (ent & PTE_PS)) {
            uint64_t size = 1ull << (12 + 9 * (l - 1));
            *pa = (ent & PTE_ADDR & ~(size - 1)) + (va & (size - 1));
            return HVI_OK;
        }
        table = ent & PTE_ADDR;
    }
    *pa = table + (va & (HVI_PAGE_SIZE - 1));
    return HVI_OK;
}

hvi_status lix_pt_read(hvi_engine *e, uint64_t cr3, uint64_t va, void *buf, size_t len)
{
    if (!e || !buf)
        return HVI_E_INVAL;
    if (!cr3)
        cr3 = hvi_mem_kernel_cr3(e);
    uint8_t *b = buf;
    while (len) {
        size_t n = HVI_PAGE_SIZE - (size_t)(va & (HVI_PAGE_SIZE - 1));
        if (n > len)
            n = len;
        uint64_t pa = 0;
        hvi_status st = translate(e, cr3, va, &pa);
        if (st == HVI_OK)
            st = phys_read(e, pa, b, n);
        if (st != HVI_OK)
            return st;
        b += n, va += n, len -= n;
    }
    return HVI_OK;
}
