/* hvi mem — physical and virtual reads/writes across frame and page boundaries, and the
 * multi-page virtual mapping (copy-through view). */
#include <stdlib.h>
#include <string.h>

#include "mem/mem_internal.h"

static hvi_status gpa_rw(hvi_engine *e, hvi_gpa gpa, uint8_t *buf, size_t len, bool write)
{
    if (!e || (!buf && len))
        return HVI_E_INVAL;
    if (len > MEM_MAX_ACCESS || gpa > UINT64_MAX - len)
        return HVI_E_RANGE;
    while (len) {
        hvi_gpa page = gpa & HVI_PAGE_MASK;
        size_t off = (size_t)(gpa - page), n = HVI_PAGE_SIZE - off;
        if (n > len)
            n = len;
        uint8_t *p = NULL;
        bool transient = false;
        hvi_status st = mem_frame_get(e, page, &p, &transient);
        if (st != HVI_OK)
            return st;
        if (write) {
            memcpy(p + off, buf, n);
            e->mem->gen++; /* the engine may have edited a paging structure */
        } else {
            memcpy(buf, p + off, n);
        }
        mem_frame_put(e, page, p, transient);
        buf += n, gpa += n, len -= n;
    }
    return HVI_OK;
}

hvi_status hvi_gpa_read(hvi_engine *e, hvi_gpa gpa, void *buf, size_t len)
{
    return gpa_rw(e, gpa, buf, len, false);
}

hvi_status hvi_gpa_write(hvi_engine *e, hvi_gpa gpa, const void *buf, size_t len)
{
    return gpa_rw(e, gpa, (uint8_t *)(uintptr_t)buf, len, true);
}

enum gva_op { OP_READ, OP_WRITE, OP_FETCH };

/* Translate every page first so a failure leaves the guest (and buf for writes) untouched. */
static hvi_status gva_check(hvi_engine *e, uint64_t cr3, hvi_gva gva, size_t len, enum gva_op op)
{
    /* count pages rather than compare addresses: the last page may end at 2^64 */
    uint64_t pages = ((gva & 0xfff) + (uint64_t)len + 0xfff) >> 12;
    for (uint64_t i = 0; i < pages; i++) {
        hvi_gva va = i ? (gva & HVI_PAGE_MASK) + (i << 12) : gva;
        hvi_gpa pa;
        uint8_t flags;
        hvi_status st = mem_xlate(e, cr3, va, false, &pa, &flags);
        if (st != HVI_OK)
            return st;
        if (op == OP_FETCH && (flags & MEM_TC_NX))
            return hvi_fail(e, HVI_E_DENIED, "mem: fetch from NX page 0x%llx",
                            (unsigned long long)va);
    }
    return HVI_OK;
}

static hvi_status gva_rw(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint8_t *buf, size_t len,
                         enum gva_op op)
{
    if (!e || (!buf && len))
        return HVI_E_INVAL;
    if (len > MEM_MAX_ACCESS || gva > UINT64_MAX - len)
        return HVI_E_RANGE;
    if (len > HVI_PAGE_SIZE - (gva & 0xfff)) { /* multi-page: all or nothing */
        hvi_status st = gva_check(e, cr3, gva, len, op);
        if (st != HVI_OK)
            return st;
    }
    while (len) {
        size_t off = (size_t)(gva & 0xfff), n = HVI_PAGE_SIZE - off;
        if (n > len)
            n = len;
        hvi_gpa pa;
        uint8_t flags;
        hvi_status st = mem_xlate(e, cr3, gva, false, &pa, &flags);
        if (st != HVI_OK)
            return st;
        if (op == OP_FETCH && (flags & MEM_TC_NX))
            return hvi_fail(e, HVI_E_DENIED, "mem: fetch from NX page 0x%llx",
                            (unsigned long long)gva);
        st = gpa_rw(e, pa, buf, n, op == OP_WRITE);
        if (st != HVI_OK)
            return st;
        buf += n, gva += n, len -= n;
    }
    return HVI_OK;
}

hvi_status hvi_gva_read(hvi_engine *e, uint64_t cr3, hvi_gva gva, void *buf, size_t len)
{
    return gva_rw(e, cr3, gva, buf, len, OP_READ);
}

hvi_status hvi_gva_write(hvi_engine *e, uint64_t cr3, hvi_gva gva, const void *buf, size_t len)
{
    return gva_rw(e, cr3, gva, (uint8_t *)(uintptr_t)buf, len, OP_WRITE);
}

/* Every page of the range must be writable at `cpl` in the guest's tables (and, with EPT, in
 * the EPT); checked on a fresh walk of each page before the first byte is written. */
static hvi_status safe_check(hvi_engine *e, uint64_t cr3, hvi_gva gva, size_t len, uint32_t cpl)
{
    uint64_t pages = ((gva & 0xfff) + (uint64_t)len + 0xfff) >> 12;
    bool ept = (e->glue.caps & HVI_CAP_EPT) && e->glue.get_ept_rights;
    for (uint64_t i = 0; i < pages; i++) {
        hvi_gva va = i ? (gva & HVI_PAGE_MASK) + (i << 12) : gva;
        hvi_gpa pa;
        uint8_t flags;
        hvi_status st = mem_xlate(e, cr3, va, false, &pa, &flags);
        if (st != HVI_OK)
            return hvi_fail(e, st, "mem: safe write: 0x%llx does not translate",
                            (unsigned long long)va);
        const char *why = !(flags & MEM_TC_W)              ? "read-only in the page tables"
                          : (cpl == 3 && !(flags & MEM_TC_U)) ? "a supervisor page (CPL 3 write)"
                                                              : NULL;
        uint32_t rights = HVI_EPT_RWX;
        if (!why && ept) {
            st = e->glue.get_ept_rights(e->glue.ctx, pa & HVI_PAGE_MASK, &rights);
            if (st != HVI_OK)
                return hvi_fail(e, st, "mem: safe write: EPT rights of GPA 0x%llx",
                                (unsigned long long)(pa & HVI_PAGE_MASK));
            if (!(rights & HVI_EPT_W))
                why = "not writable in the EPT";
        }
        if (why)
            return hvi_fail(e, HVI_E_DENIED, "mem: safe write to 0x%llx refused: %s",
                            (unsigned long long)va, why);
    }
    return HVI_OK;
}

hvi_status hvi_gva_write_safe(hvi_engine *e, uint64_t cr3, hvi_gva gva, const void *buf,
                              size_t len, uint32_t cpl)
{
    if (!e || (!buf && len) || cpl > 3)
        return HVI_E_INVAL;
    if (len > MEM_MAX_ACCESS || gva > UINT64_MAX - len)
        return HVI_E_RANGE;
    hvi_status st = safe_check(e, cr3, gva, len, cpl);
    return st != HVI_OK ? st : hvi_gva_write(e, cr3, gva, buf, len);
}

hvi_status hvi_gva_fetch(hvi_engine *e, uint64_t cr3, hvi_gva gva, void *buf, size_t len)
{
    return gva_rw(e, cr3, gva, buf, len, OP_FETCH);
}

hvi_status hvi_gva_read_u64(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint64_t *out)
{
    if (out)
        *out = 0;
    return hvi_gva_read(e, cr3, gva, out, sizeof(*out));
}

hvi_status hvi_gva_read_u32(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint32_t *out)
{
    if (out)
        *out = 0;
    return hvi_gva_read(e, cr3, gva, out, sizeof(*out));
}

/* ---- multi-page mapping ---- */

hvi_status hvi_gva_map(hvi_engine *e, uint64_t cr3, hvi_gva gva, size_t len, void **out)
{
    if (!e || !out || !len)
        return HVI_E_INVAL;
    *out = NULL;
    if (len > MEM_MAX_ACCESS)
        return HVI_E_RANGE;
    struct hvi_mem_state *m = mem_state(e);
    struct mem_map *mp = m ? calloc(1, sizeof(*mp)) : NULL;
    if (mp) {
        mp->copy = malloc(len);
        mp->orig = malloc(len);
    }
    if (!mp || !mp->copy || !mp->orig) {
        if (mp)
            free(mp->copy), free(mp->orig);
        free(mp);
        return HVI_E_NOMEM;
    }
    hvi_status st = hvi_gva_read(e, cr3, gva, mp->copy, len);
    if (st != HVI_OK) {
        free(mp->copy), free(mp->orig), free(mp);
        return st;
    }
    memcpy(mp->orig, mp->copy, len);
    mp->cr3 = mem_cr3(e, cr3), mp->gva = gva, mp->len = len;
    mp->next = m->maps;
    m->maps = mp;
    *out = mp->copy;
    return HVI_OK;
}

/* Write back only the bytes the caller changed, so concurrent guest writes elsewhere in the
 * range are not overwritten with stale data. */
static void map_write_back(hvi_engine *e, const struct mem_map *mp)
{
    size_t i = 0;
    while (i < mp->len) {
        if (mp->copy[i] == mp->orig[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < mp->len && mp->copy[j] != mp->orig[j])
            j++;
        if (hvi_gva_write(e, mp->cr3, mp->gva + i, mp->copy + i, j - i) != HVI_OK)
            hvi_log(e, HVI_LOG_WARN, "mem: write-back to 0x%llx failed",
                    (unsigned long long)(mp->gva + i));
        i = j;
    }
}

void hvi_gva_unmap(hvi_engine *e, void *ptr)
{
    if (!e || !e->mem || !ptr)
        return;
    for (struct mem_map **pp = &e->mem->maps; *pp; pp = &(*pp)->next) {
        struct mem_map *mp = *pp;
        if (mp->copy != ptr)
            continue;
        map_write_back(e, mp);
        *pp = mp->next;
        free(mp->copy), free(mp->orig), free(mp);
        return;
    }
}

void mem_maps_free(hvi_engine *e, struct hvi_mem_state *m)
{
    (void)e;
    while (m->maps) {
        struct mem_map *mp = m->maps;
        m->maps = mp->next;
        free(mp->copy), free(mp->orig), free(mp);
    }
}
