/*
 * Fuzz target: the Windows layer's PE parser (src/guest/windows/win_pe.c) on a hostile image.
 * The input is the image as mapped (RVA == offset; reads past the input fail like absent
 * pages). Headers are parsed from the first page (zero-padded when the input is shorter), then
 * the export directory is searched for a few names and sections are looked up. Any crash,
 * sanitizer report or out-of-bounds read is a bug.
 */
#include <string.h>

#include "guest/windows/win_pe.h"

struct flat {
    const uint8_t *data;
    size_t size;
};

static hvi_status flat_read(void *ctx, uint32_t rva, void *buf, size_t len)
{
    const struct flat *f = ctx;
    if (rva > f->size || len > f->size - rva)
        return HVI_E_NOT_PRESENT;
    memcpy(buf, f->data + rva, len);
    return HVI_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {
        "NtBuildNumber", "PsLoadedModuleList", "Alpha", "Beta", "Gamma", "", "ZwClose"};
    uint8_t hdr[WIN_PE_HDR_PAGE];
    memset(hdr, 0, sizeof(hdr));
    memcpy(hdr, data, size < sizeof(hdr) ? size : sizeof(hdr));
    struct flat f = {data, size};
    struct win_pe pe;
    char msg[128];
    if (win_pe_parse(hdr, flat_read, &f, &pe, msg, sizeof(msg)) != HVI_OK)
        return 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        uint32_t rva = 0;
        (void)win_pe_export(&pe, flat_read, &f, names[i], &rva);
    }
    for (uint32_t i = 0; i < pe.nsec; i++) {
        (void)win_pe_section_named(&pe, pe.sec[i].name);
        (void)win_pe_section_at(&pe, pe.sec[i].rva + pe.sec[i].vsize - 1);
    }
    (void)win_pe_section_at(&pe, pe.entry_rva);
    return 0;
}
