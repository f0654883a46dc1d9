/* guest/windows — PE header and export directory parser for hostile images (see win_pe.h).
 * Structure offsets are those of the PE/COFF specification (IMAGE_DOS_HEADER, IMAGE_NT_HEADERS,
 * IMAGE_SECTION_HEADER, IMAGE_EXPORT_DIRECTORY). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "guest/windows/win_pe.h"

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static hvi_status bad(char *msg, size_t msg_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static hvi_status bad(char *msg, size_t msg_len, const char *fmt, ...)
{
    if (msg && msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_len, fmt, ap);
        va_end(ap);
    }
    return HVI_E_FORMAT;
}

/* [rva, rva+len) inside the image, without overflow. */
static bool in_image(const struct win_pe *pe, uint32_t rva, uint64_t len)
{
    return rva < pe->size_of_image && len <= (uint64_t)pe->size_of_image - rva;
}

static void copy_name(char dst[9], const uint8_t *src)
{
    size_t i = 0;
    for (; i < 8 && src[i]; i++)
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
    dst[i] = 0;
}

static hvi_status parse_sections(const uint8_t *hdr, uint32_t off, struct win_pe *pe, char *msg,
                                 size_t msg_len)
{
    if ((uint64_t)off + (uint64_t)pe->nsec * 40u > WIN_PE_HDR_PAGE)
        return bad(msg, msg_len, "section table (%u entries at 0x%x) leaves the header page",
                   pe->nsec, off);
    for (uint32_t i = 0; i < pe->nsec; i++) {
        const uint8_t *s = hdr + off + i * 40u;
        struct win_pe_section *d = &pe->sec[i];
        copy_name(d->name, s);
        uint32_t vsize = le32(s + 8), rva = le32(s + 12);
        d->characteristics = le32(s + 36);
        if (rva >= pe->size_of_image)
            return bad(msg, msg_len, "section %u (%s) at RVA 0x%x is outside the image (0x%x)", i,
                       d->name, rva, pe->size_of_image);
        if (vsize == 0)
            vsize = le32(s + 16); /* SizeOfRawData */
        if (vsize == 0)
            vsize = 1;
        if (!in_image(pe, rva, vsize))
            vsize = pe->size_of_image - rva;
        d->rva = rva;
        d->vsize = vsize;
    }
    return HVI_OK;
}

static hvi_status parse_exports(win_pe_read_fn rd, void *ctx, struct win_pe *pe, char *msg,
                                size_t msg_len)
{
    uint8_t d[40];
    if (pe->exp_size < sizeof(d) || !in_image(pe, pe->exp_rva, pe->exp_size))
        return bad(msg, msg_len, "export directory 0x%x+0x%x is outside the image", pe->exp_rva,
                   pe->exp_size);
    hvi_status st = rd(ctx, pe->exp_rva, d, sizeof(d));
    if (st != HVI_OK)
        return st;
    pe->exp_ordinal_base = le32(d + 16);
    pe->exp_nfuncs = le32(d + 20);
    pe->exp_nnames = le32(d + 24);
    pe->exp_funcs = le32(d + 28);
    pe->exp_names = le32(d + 32);
    pe->exp_ords = le32(d + 36);
    if (pe->exp_nfuncs > WIN_PE_MAX_NAMES || pe->exp_nnames > WIN_PE_MAX_NAMES)
        return bad(msg, msg_len, "export directory counts too large (%u functions, %u names)",
                   pe->exp_nfuncs, pe->exp_nnames);
    if (!in_image(pe, pe->exp_funcs, (uint64_t)pe->exp_nfuncs * 4) ||
        !in_image(pe, pe->exp_names, (uint64_t)pe->exp_nnames * 4) ||
        !in_image(pe, pe->exp_ords, (uint64_t)pe->exp_nnames * 2))
        return bad(msg, msg_len, "export tables outside the image");
    pe->exp_name[0] = 0;
    uint32_t name_rva = le32(d + 12);
    if (name_rva && in_image(pe, name_rva, 1)) {
        size_t n = sizeof(pe->exp_name) - 1;
        if (!in_image(pe, name_rva, n))
            n = pe->size_of_image - name_rva;
        if (rd(ctx, name_rva, pe->exp_name, n) == HVI_OK) {
            pe->exp_name[n] = 0;
            for (size_t i = 0; pe->exp_name[i]; i++)
                if ((unsigned char)pe->exp_name[i] < 0x20 || (unsigned char)pe->exp_name[i] >= 0x7f)
                    pe->exp_name[i] = '?';
        } else {
            pe->exp_name[0] = 0;
        }
    }
    return HVI_OK;
}

hvi_status win_pe_parse(const uint8_t *hdr, win_pe_read_fn rd, void *ctx, struct win_pe *pe,
                        char *msg, size_t msg_len)
{
    if (!hdr || !pe)
        return HVI_E_INVAL;
    memset(pe, 0, sizeof(*pe));
    if (hdr[0] != 'M' || hdr[1] != 'Z')
        return bad(msg, msg_len, "no MZ signature");
    uint32_t nt = le32(hdr + 0x3c);
    if (nt < 0x40 || nt > WIN_PE_HDR_PAGE - 24 - 0x70 || (nt & 3))
        return bad(msg, msg_len, "e_lfanew 0x%x out of the header page", nt);
    if (le32(hdr + nt) != 0x00004550u)
        return bad(msg, msg_len, "no PE signature at 0x%x", nt);
    const uint8_t *fh = hdr + nt + 4, *oh = fh + 20;
    pe->machine = le16(fh);
    pe->nsec = le16(fh + 2);
    pe->timestamp = le32(fh + 4);
    uint32_t opt_size = le16(fh + 16);
    uint16_t magic = le16(oh);
    if (pe->machine == WIN_MACHINE_AMD64 && magic == 0x20b)
        pe->is64 = true;
    else if (!(pe->machine == WIN_MACHINE_I386 && magic == 0x10b))
        return bad(msg, msg_len, "machine 0x%x with optional header magic 0x%x is not supported",
                   pe->machine, magic);
    uint32_t dir_off = pe->is64 ? 112 : 96, nrva_off = pe->is64 ? 108 : 92;
    if (opt_size < dir_off || (uint64_t)(oh - hdr) + opt_size > WIN_PE_HDR_PAGE)
        return bad(msg, msg_len, "optional header size 0x%x invalid", opt_size);
    if (pe->nsec == 0 || pe->nsec > WIN_PE_MAX_SECTIONS)
        return bad(msg, msg_len, "%u sections (1..%u accepted)", pe->nsec, WIN_PE_MAX_SECTIONS);
    pe->entry_rva = le32(oh + 16);
    pe->image_base = pe->is64 ? le64(oh + 24) : le32(oh + 28);
    pe->size_of_image = le32(oh + 56);
    pe->size_of_headers = le32(oh + 60);
    if (pe->size_of_image < WIN_PE_HDR_PAGE || pe->size_of_image > WIN_PE_MAX_IMAGE)
        return bad(msg, msg_len, "SizeOfImage 0x%x out of range", pe->size_of_image);
    hvi_status st = parse_sections(hdr, (uint32_t)(oh - hdr) + opt_size, pe, msg, msg_len);
    if (st != HVI_OK)
        return st;
    uint32_t ndirs = le32(oh + nrva_off);
    if (ndirs >= 1 && opt_size >= dir_off + 8) {
        pe->exp_rva = le32(oh + dir_off);
        pe->exp_size = le32(oh + dir_off + 4);
    }
    if (pe->exp_rva && rd) {
        st = parse_exports(rd, ctx, pe, msg, msg_len);
        if (st != HVI_OK)
            return st;
    } else {
        pe->exp_rva = pe->exp_size = 0;
    }
    return HVI_OK;
}

/* Compare the NUL-terminated name at rva with `name` (at most 128 bytes read). */
static hvi_status cmp_name(const struct win_pe *pe, win_pe_read_fn rd, void *ctx, uint32_t rva,
                           const char *name, int *out)
{
    char buf[129];
    size_t want = strlen(name) + 1;
    if (want > sizeof(buf) - 1)
        return HVI_E_INVAL;
    if (!in_image(pe, rva, 1))
        return HVI_E_FORMAT;
    if (!in_image(pe, rva, want))
        want = pe->size_of_image - rva;
    hvi_status st = rd(ctx, rva, buf, want);
    if (st != HVI_OK)
        return st;
    buf[want] = 0;
    *out = strncmp(name, buf, want);
    return HVI_OK;
}

hvi_status win_pe_export(const struct win_pe *pe, win_pe_read_fn rd, void *ctx, const char *name,
                         uint32_t *rva_out)
{
    if (!pe || !rd || !name || !rva_out)
        return HVI_E_INVAL;
    if (!pe->exp_rva || pe->exp_nnames == 0)
        return HVI_E_NOT_FOUND;
    uint32_t lo = 0, hi = pe->exp_nnames;
    for (int probe = 0; probe < 32 && lo < hi; probe++) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint8_t b[4];
        hvi_status st = rd(ctx, pe->exp_names + mid * 4u, b, 4);
        if (st != HVI_OK)
            return st;
        int c = 0;
        st = cmp_name(pe, rd, ctx, le32(b), name, &c);
        if (st != HVI_OK)
            return st;
        if (c < 0) {
            hi = mid;
        } else if (c > 0) {
            lo = mid + 1;
        } else {
            uint8_t o[2];
            if ((st = rd(ctx, pe->exp_ords + mid * 2u, o, 2)) != HVI_OK)
                return st;
            uint32_t idx = le16(o);
            if (idx >= pe->exp_nfuncs)
                return HVI_E_FORMAT;
            if ((st = rd(ctx, pe->exp_funcs + idx * 4u, b, 4)) != HVI_OK)
                return st;
            uint32_t rva = le32(b);
            if (!in_image(pe, rva, 1))
                return HVI_E_FORMAT;
            /* an RVA inside the export directory is a forwarder string, not code or data */
            if (rva >= pe->exp_rva && rva - pe->exp_rva < pe->exp_size)
                return HVI_E_NOT_FOUND;
            *rva_out = rva;
            return HVI_OK;
        }
    }
    return HVI_E_NOT_FOUND;
}

const struct win_pe_section *win_pe_section_named(const struct win_pe *pe, const char *name)
{
    for (uint32_t i = 0; pe && name && i < pe->nsec; i++)
        if (!strcmp(pe->sec[i].name, name))
            return &pe->sec[i];
    return NULL;
}

const struct win_pe_section *win_pe_section_at(const struct win_pe *pe, uint32_t rva)
{
    for (uint32_t i = 0; pe && i < pe->nsec; i++)
        if (rva >= pe->sec[i].rva && rva - pe->sec[i].rva < pe->sec[i].vsize)
            return &pe->sec[i];
    return NULL;
}
