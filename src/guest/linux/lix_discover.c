/* hvi guest/linux — finding the kernel with no prior knowledge: a kernel code address (LSTAR or
 * an IDT handler) -> 2 MiB-aligned image start (the kernel high mapping has nothing mapped
 * below _text) -> a host copy of the mapped image -> the "Linux version" banner -> kallsyms. */
#include <stdlib.h>
#include <string.h>

#include "guest/linux/lix.h"

#define LIX_ALIGN (2ull << 20)
#define LIX_MAX_BACK 512u          /* 2 MiB steps walked back: 1 GiB, the kernel image limit */
#define LIX_HOLE_PAGES 1024u       /* unmapped pages in a row that end the image (4 MiB) */
#define LIX_TEXT_BASE 0xffffffff81000000ull
#define LIX_CHUNK (2u << 20)
#define LIX_AFTER_TOKENS (4u << 20)

/* The kernel half of a 57-bit (LA57) address space; with 4-level paging the part below
 * 0xffff800000000000 is non-canonical and fails to translate anyway. */
bool lix_is_kptr(uint64_t p) { return p >= 0xff00000000000000ull; }

hvi_status lix_read(const struct lix_kernel *k, uint64_t gva, void *buf, size_t len)
{
    if (!k || !k->mem.read || !buf)
        return HVI_E_INVAL;
    if (!lix_is_kptr(gva) || gva + len < gva)
        return HVI_E_RANGE;
    return k->mem.read(k->mem.ctx, gva, buf, len);
}

hvi_status lix_read_u64(const struct lix_kernel *k, uint64_t gva, uint64_t *out)
{
    return lix_read(k, gva, out, sizeof(*out));
}

hvi_status lix_read_u32(const struct lix_kernel *k, uint64_t gva, uint32_t *out)
{
    return lix_read(k, gva, out, sizeof(*out));
}

hvi_status lix_read_str(const struct lix_kernel *k, uint64_t gva, char *out, size_t len)
{
    if (!out || len == 0)
        return HVI_E_INVAL;
    size_t got = 0;
    out[0] = 0;
    while (got + 1 < len) {
        size_t in_page = HVI_PAGE_SIZE - ((gva + got) & (HVI_PAGE_SIZE - 1));
        size_t n = len - 1 - got < in_page ? len - 1 - got : in_page;
        hvi_status st = lix_read(k, gva + got, out + got, n);
        if (st != HVI_OK) {
            out[got] = 0;
            return got ? HVI_OK : st;
        }
        void *z = memchr(out + got, 0, n);
        if (z)
            return HVI_OK;
        got += n;
    }
    out[len - 1] = 0;
    return HVI_OK;
}

hvi_status lix_idt_handler(const struct lix_mem *mem, uint64_t idt_base, uint32_t vec,
                           uint64_t *out)
{
    uint8_t g[16];
    if (!mem || !mem->read || !out || vec > 255)
        return HVI_E_INVAL;
    hvi_status st = mem->read(mem->ctx, idt_base + 16ull * vec, g, sizeof(g));
    if (st != HVI_OK)
        return st;
    uint8_t type = g[5] & 0x1f;
    if (!(g[5] & 0x80) || (type != 0x0e && type != 0x0f))
        return HVI_E_FORMAT;
    uint64_t h = (uint64_t)g[0] | ((uint64_t)g[1] << 8) | ((uint64_t)g[6] << 16) |
                 ((uint64_t)g[7] << 24);
    for (int i = 0; i < 4; i++)
        h |= (uint64_t)g[8 + i] << (32 + 8 * i);
    if (!lix_is_kptr(h))
        return HVI_E_FORMAT;
    *out = h;
    return HVI_OK;
}

hvi_status lix_parse_banner(const char *banner, char *release, size_t len, uint32_t *version)
{
    static const char pfx[] = "Linux version ";
    if (!banner || !release || !len || !version || strncmp(banner, pfx, sizeof(pfx) - 1) != 0)
        return HVI_E_FORMAT;
    const char *r = banner + sizeof(pfx) - 1;
    size_t n = strcspn(r, " \n");
    if (n == 0 || n >= len)
        return HVI_E_FORMAT;
    memcpy(release, r, n);
    release[n] = 0;
    uint32_t part[3] = {0, 0, 0};
    const char *p = r;
    for (int i = 0; i < 3; i++) {
        if (*p < '0' || *p > '9') {
            if (i < 2)
                return HVI_E_FORMAT;
            break;
        }
        while (*p >= '0' && *p <= '9') {
            part[i] = part[i] * 10 + (uint32_t)(*p - '0');
            if (part[i] > 255)
                part[i] = 255;
            p++;
        }
        if (*p != '.')
            break;
        p++;
    }
    *version = part[0] << 16 | part[1] << 8 | part[2];
    return HVI_OK;
}

static bool page_mapped(const struct lix_mem *mem, uint64_t va)
{
    uint8_t b;
    return mem->read(mem->ctx, va, &b, 1) == HVI_OK;
}

/* A host copy of the image, filled page by page (holes read as zero) only as far as needed. */
struct image {
    const struct lix_mem *mem;
    uint64_t start;
    uint8_t *buf;
    size_t next;   /* bytes copied (mapped or not) */
    size_t len;    /* end of the last mapped page */
    size_t hole;   /* unmapped pages in a row */
    bool complete; /* the end of the image was reached */
};

static void copy_upto(struct image *im, size_t upto)
{
    if (upto > LIX_MAX_IMAGE)
        upto = LIX_MAX_IMAGE;
    while (!im->complete && im->next < upto) {
        uint8_t *dst = im->buf + im->next;
        if (im->mem->read(im->mem->ctx, im->start + im->next, dst, HVI_PAGE_SIZE) == HVI_OK) {
            im->len = im->next + HVI_PAGE_SIZE;
            im->hole = 0;
        } else {
            memset(dst, 0, HVI_PAGE_SIZE);
            im->hole++;
        }
        im->next += HVI_PAGE_SIZE;
        if (im->hole >= LIX_HOLE_PAGES || im->next >= LIX_MAX_IMAGE)
            im->complete = true;
    }
}

/* Copy 2 MiB at a time until the kallsyms token index shows up, then enough beyond it for
 * tables placed after it (offsets: 4 bytes per symbol). *tok = its offset, or 0. */
static void copy_for_kallsyms(struct image *im, size_t *tok)
{
    size_t scanned = 0;
    *tok = 0;
    while (!im->complete) {
        copy_upto(im, im->next + LIX_CHUNK);
        size_t from = scanned > 1024 ? scanned - 1024 : 0;
        if (lix_kallsyms_probe(im->buf, im->len, from, tok)) {
            copy_upto(im, *tok + 512 + LIX_AFTER_TOKENS);
            return;
        }
        scanned = im->len;
    }
}

static bool find_banner(struct lix_kernel *k, const uint8_t *img, size_t len)
{
    static const char pfx[] = "Linux version ";
    const size_t pl = sizeof(pfx) - 1;
    for (size_t i = 0; i + pl + 2 < len; i++) {
        const uint8_t *p = memchr(img + i, 'L', len - i - pl - 1);
        if (!p)
            return false;
        i = (size_t)(p - img);
        if (memcmp(p, pfx, pl) != 0 || p[pl] < '0' || p[pl] > '9')
            continue;
        size_t n = 0;
        while (n + 1 < sizeof(k->banner) && i + n < len && p[n] >= 0x20 && p[n] < 0x7f)
            n++;
        memcpy(k->banner, p, n);
        k->banner[n] = 0;
        if (lix_parse_banner(k->banner, k->release, sizeof(k->release), &k->version) == HVI_OK)
            return true;
    }
    return false;
}

/* Step down from the entry's 2 MiB boundary while the page just below is mapped; 0 if no gap
 * shows up within LIX_MAX_BACK steps. */
static uint64_t image_start(const struct lix_mem *mem, uint64_t entry)
{
    uint64_t start = entry & ~(LIX_ALIGN - 1);
    for (uint32_t steps = 0; steps < LIX_MAX_BACK; steps++) {
        if (!lix_is_kptr(start - HVI_PAGE_SIZE) || !page_mapped(mem, start - HVI_PAGE_SIZE))
            return start;
        start -= LIX_ALIGN;
    }
    return 0;
}

/* The first banner in the image may be an early copy ("# SMP"): prefer linux_banner. */
static void refresh_banner(struct lix_kernel *k)
{
    uint64_t lb = 0;
    char lbanner[sizeof(k->banner)], lrelease[sizeof(k->release)];
    uint32_t version = 0;
    if (lix_kallsyms_lookup(&k->ks, "linux_banner", &lb) == HVI_OK &&
        lix_read_str(k, lb, lbanner, sizeof(lbanner)) == HVI_OK &&
        lix_parse_banner(lbanner, lrelease, sizeof(lrelease), &version) == HVI_OK) {
        lbanner[strcspn(lbanner, "\n")] = 0;
        memcpy(k->banner, lbanner, sizeof(lbanner));
        memcpy(k->release, lrelease, sizeof(lrelease));
        k->version = version;
    }
}

hvi_status lix_discover(struct lix_kernel *k, const struct lix_mem *mem, uint64_t entry,
                        const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = "";
    if (!k || !mem || !mem->read)
        return HVI_E_INVAL;
    memset(k, 0, sizeof(*k));
    k->mem = *mem;
    if (!lix_is_kptr(entry) || !page_mapped(mem, entry)) {
        *why = "the kernel entry address is not a mapped kernel address";
        return HVI_E_NOT_FOUND;
    }
    uint64_t start = image_start(mem, entry);
    if (!start) {
        *why = "no unmapped gap below the kernel image within 1 GiB";
        return HVI_E_LIMIT;
    }
    struct image im = {.mem = mem, .start = start, .buf = malloc(LIX_MAX_IMAGE)};
    if (!im.buf)
        return HVI_E_NOMEM;
    size_t tok = 0;
    copy_for_kallsyms(&im, &tok);
    k->image_start = start;
    k->slide = start - LIX_TEXT_BASE;
    bool banner = find_banner(k, im.buf, im.len);
    if (!banner && !im.complete) {
        copy_upto(&im, LIX_MAX_IMAGE);
        banner = find_banner(k, im.buf, im.len);
    }
    k->image_end = start + im.len;
    hvi_status st = HVI_E_NOT_FOUND;
    if (!banner)
        *why = "no \"Linux version\" banner in the kernel image";
    else
        st = lix_kallsyms_parse_at(&k->ks, im.buf, im.len, start, tok, why);
    free(im.buf);
    if (st != HVI_OK)
        return st;
    uint64_t text = 0;
    if (lix_kallsyms_lookup(&k->ks, "_text", &text) == HVI_OK && text != start) {
        *why = "kallsyms _text does not match the image start";
        lix_kernel_free(k);
        return HVI_E_FORMAT;
    }
    if (lix_kallsyms_lookup(&k->ks, "init_task", &k->init_task) != HVI_OK) {
        *why = "init_task is not in kallsyms";
        lix_kernel_free(k);
        return HVI_E_NOT_FOUND;
    }
    if (lix_kallsyms_lookup(&k->ks, "modules", &k->modules) != HVI_OK)
        k->modules = 0;
    refresh_banner(k);
    uint64_t end = 0;
    if (lix_kallsyms_lookup(&k->ks, "_end", &end) == HVI_OK && end > start &&
        end - start <= (1ull << 30))
        k->image_end = end;
    return HVI_OK;
}

void lix_kernel_free(struct lix_kernel *k)
{
    if (!k)
        return;
    lix_kallsyms_free(&k->ks);
    memset(k, 0, sizeof(*k));
}
