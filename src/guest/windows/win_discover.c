/* guest/windows — finding ntoskrnl: from a kernel code address (the syscall entry in LSTAR, or
 * an IDT handler) scan back page by page for an MZ/PE image that contains that address, then
 * read its build number from the NtBuildNumber export. */
#include <stdio.h>
#include <string.h>

#include "core/engine.h"
#include "guest/windows/win.h"

bool win_is_kptr(uint64_t va)
{
    return va >= 0xFFFF800000000000ull; /* canonical upper half (4-level paging) */
}

hvi_status win_read_u64(hvi_engine *e, uint64_t va, uint64_t *out)
{
    if (!win_is_kptr(va) || va > UINT64_MAX - 8)
        return HVI_E_RANGE;
    return hvi_gva_read(e, 0, va, out, 8);
}

hvi_status win_read_u32(hvi_engine *e, uint64_t va, uint32_t *out)
{
    if (!win_is_kptr(va) || va > UINT64_MAX - 4)
        return HVI_E_RANGE;
    return hvi_gva_read(e, 0, va, out, 4);
}

hvi_status win_pe_reader(void *ctx, uint32_t rva, void *buf, size_t len)
{
    const struct win_rd *r = ctx;
    return hvi_gva_read(r->e, 0, r->base + rva, buf, len);
}

/* Is there a plausible ntoskrnl image at va (a page holding MZ) that contains `entry`? */
static hvi_status try_image(hvi_engine *e, uint64_t va, uint64_t entry, const uint8_t *page,
                            struct win_pe *pe, char *why, size_t why_len)
{
    struct win_rd rd = {e, va};
    hvi_status st = win_pe_parse(page, win_pe_reader, &rd, pe, why, why_len);
    if (st != HVI_OK)
        return st;
    if (!pe->is64)
        return HVI_E_UNSUPPORTED;
    if (entry - va >= pe->size_of_image)
        return HVI_E_NOT_FOUND; /* an image, but not the one holding the entry (a driver) */
    uint32_t rva = 0;
    st = win_pe_export(pe, win_pe_reader, &rd, "NtBuildNumber", &rva);
    return st == HVI_OK ? HVI_OK : HVI_E_NOT_FOUND;
}

hvi_status win_find_ntoskrnl(hvi_engine *e, uint64_t entry, uint64_t *base, struct win_pe *pe,
                             char *why, size_t why_len)
{
    uint8_t local[HVI_PAGE_SIZE];
    uint64_t va = entry & HVI_PAGE_MASK;
    uint32_t absent = 0, images = 0;
    char last[160] = "";
    for (uint32_t i = 0; i < WIN_SCAN_PAGES && win_is_kptr(va); i++, va -= HVI_PAGE_SIZE) {
        if (hvi_gva_read(e, 0, va, local, 2) != HVI_OK) {
            absent++;
            continue;
        }
        if (local[0] != 'M' || local[1] != 'Z')
            continue;
        if (hvi_gva_read(e, 0, va, local, sizeof(local)) != HVI_OK)
            continue;
        images++;
        char msg[160] = "";
        hvi_status st = try_image(e, va, entry, local, pe, msg, sizeof(msg));
        if (st == HVI_OK) {
            *base = va;
            return HVI_OK;
        }
        if (msg[0])
            snprintf(last, sizeof(last), "MZ at 0x%llx rejected: %s", (unsigned long long)va, msg);
    }
    snprintf(why, why_len,
             "no 64-bit PE image holding 0x%llx with an NtBuildNumber export within "
             "%u pages below it (%u MZ candidates, %u absent pages)%s%s",
             (unsigned long long)entry, WIN_SCAN_PAGES, images, absent, last[0] ? "; " : "", last);
    return HVI_E_NOT_FOUND;
}

hvi_status win_export(hvi_engine *e, const char *name, uint64_t *va)
{
    struct win_state *w = win_get(e);
    if (!w)
        return HVI_E_STATE;
    struct win_rd rd = {e, w->base};
    uint32_t rva = 0;
    hvi_status st = win_pe_export(&w->pe, win_pe_reader, &rd, name, &rva);
    if (st == HVI_OK)
        *va = w->base + rva;
    return st;
}

hvi_status win_read_build(hvi_engine *e, uint64_t base, const struct win_pe *pe, uint32_t *build)
{
    struct win_rd rd = {e, base};
    uint32_t rva = 0, v = 0;
    hvi_status st = win_pe_export(pe, win_pe_reader, &rd, "NtBuildNumber", &rva);
    if (st == HVI_OK)
        st = hvi_gva_read(e, 0, base + rva, &v, 4);
    if (st != HVI_OK)
        return st;
    /* the top nibble says free (0xF) or checked (0xC) build; the build is the low word */
    *build = v & 0xFFFFu;
    return *build >= 2600 ? HVI_OK : HVI_E_FORMAT;
}
