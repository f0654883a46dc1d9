/* hvi guest/linux — finding the kernel with no prior knowledge: a kernel code address (LSTAR or
 * an IDT handler) -> 2 MiB-aligned image start (the kernel high mapping has nothing mapped
 * below _text) -> the kallsyms token index, scanned for in place -> kallsyms parsed from a copy
 * of the window around it -> the banner, init_task, modules, _end by name.
 *
 * The image is never copied whole: the scan reads 32 bytes every 480 (a token index is 512
 * bytes long, so one of those probes always falls inside it) through the reader's view of guest
 * RAM, and only a candidate that passes is confirmed on a small copy. The tables are read-only
 * data: executable pages (kernel text, two thirds of what lies before them) are scanned last,
 * only when the others hold no token index. */
#include <stdlib.h>
#include <string.h>

#include "guest/linux/lix.h"

#define LIX_ALIGN (2ull << 20)
#define LIX_MAX_BACK 512u    /* 2 MiB steps walked back: 1 GiB, the kernel image limit */
#define LIX_HOLE_PAGES 1024u /* unmapped pages in a row that end the image (4 MiB) */
#define LIX_TEXT_BASE 0xffffffff81000000ull
#define LIX_PROBE_STEP 480u /* index length 512 - probe length 32; also < 4096 - last probe */
#define LIX_PROBE_LAST (HVI_PAGE_SIZE - 32u)
#define LIX_TOKENS_BEFORE (18u << 10) /* a token table (256 tokens of <= 64 bytes) + padding */
#define LIX_CANDIDATES 4u             /* token indexes tried before giving up */
/* Windows around the token index parsed for the other tables: small ones first (94 000 symbols
 * need 1.9 MB below the index on 6.1; kernels that place kallsyms_offsets after the index need
 * 4 bytes per symbol above it), then the reach of the scan rules (markers within 8 MiB below
 * the token table, num_syms within 16 MiB below the markers, offsets 4 bytes per symbol). */
#define LIX_WINDOWS 3
static const size_t win_below[LIX_WINDOWS] = {2u << 20, 2u << 20, (28u << 20) + (512u << 10)};
static const size_t win_above[LIX_WINDOWS] = {0, 1u << 20, 4u << 20};

/* The kernel half of a 57-bit (LA57) address space; with 4-level paging the part below
 * 0xffff800000000000 is non-canonical and fails to translate anyway. */
bool lix_is_kptr(uint64_t p)
{
    return p >= 0xff00000000000000ull;
}

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
    uint64_t h =
        (uint64_t)g[0] | ((uint64_t)g[1] << 8) | ((uint64_t)g[6] << 16) | ((uint64_t)g[7] << 24);
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

/* Pages of the image through the reader: in place with a view, else copied into buf. */
struct pager {
    const struct lix_mem *mem;
    uint64_t start;    /* image start (2 MiB aligned) */
    size_t mapped_end; /* end (image offset) of the last mapped page seen */
    uint32_t flags;    /* LIX_VIEW_* of the last page returned (0 without a view) */
    uint8_t buf[HVI_PAGE_SIZE];
};

/* The page at image offset `off` (page-aligned), or NULL when it is not mapped. With a view, the
 * pointer is valid until the next call. */
static const uint8_t *page_at(struct pager *pg, size_t off)
{
    const struct lix_mem *m = pg->mem;
    const uint8_t *p = NULL;
    hvi_status st = HVI_E_UNSUPPORTED;
    pg->flags = 0;
    if (m->view && (st = m->view(m->ctx, pg->start + off, &p, &pg->flags)) == HVI_OK && p)
        goto mapped;
    pg->flags = 0;
    if ((st == HVI_E_NOT_PRESENT || st == HVI_E_RANGE) ||
        m->read(m->ctx, pg->start + off, pg->buf, HVI_PAGE_SIZE) != HVI_OK)
        return NULL;
    p = pg->buf;
mapped:
    if (off + HVI_PAGE_SIZE > pg->mapped_end)
        pg->mapped_end = off + HVI_PAGE_SIZE;
    return p;
}

/* Copy image bytes [off, off + len) (page-aligned) into dst, unmapped pages as zeros. */
static void copy_pages(struct pager *pg, size_t off, uint8_t *dst, size_t len)
{
    for (size_t i = 0; i < len; i += HVI_PAGE_SIZE) {
        const uint8_t *p = page_at(pg, off + i);
        if (p)
            memcpy(dst + i, p, HVI_PAGE_SIZE);
        else
            memset(dst + i, 0, HVI_PAGE_SIZE);
    }
}

static size_t page_down(size_t v)
{
    return v & ~(size_t)(HVI_PAGE_SIZE - 1);
}
static size_t page_up(size_t v)
{
    return page_down(v + HVI_PAGE_SIZE - 1);
}

/* A probe hit at image offset q: is there a token index (with its table) starting within the
 * 512 bytes up to q? Confirmed on a copy of the bytes around it; *at = its image offset. */
static bool confirm_index(struct pager *pg, size_t q, size_t *at)
{
    static const size_t reach = LIX_TOKENS_BEFORE + 512;
    size_t lo = page_down(q > reach ? q - reach : 0), hi = page_up(q + 512);
    uint8_t buf[LIX_TOKENS_BEFORE + 3 * HVI_PAGE_SIZE];
    if (hi - lo > sizeof(buf))
        return false;
    copy_pages(pg, lo, buf, hi - lo);
    size_t from = q > lo + 504 ? q - 504 - lo : 0, found = 0;
    if (!lix_kallsyms_probe(buf, q + 512 - lo, from, &found))
        return false;
    *at = lo + found;
    return true;
}

/* The first token index at image offset >= from (0 when none), in the pages that are not
 * executable (exec == false) or only in those that are: probes every LIX_PROBE_STEP bytes, up
 * to LIX_MAX_IMAGE or LIX_HOLE_PAGES unmapped pages in a row. */
static size_t scan_index(struct pager *pg, size_t from, bool exec)
{
    uint32_t hole = 0;
    for (size_t off = page_down(from); off < LIX_MAX_IMAGE && hole < LIX_HOLE_PAGES;
         off += HVI_PAGE_SIZE) {
        const uint8_t *p = page_at(pg, off);
        if (!p) {
            hole++;
            continue;
        }
        hole = 0;
        if (!!(pg->flags & LIX_VIEW_EXEC) != exec) {
            if (pg->flags & LIX_VIEW_LARGE) /* the rest of this 2 MiB page alike */
                off = ((off >> 21) + 1) * (2u << 20) - HVI_PAGE_SIZE;
            continue;
        }
        for (size_t q = 0; q <= LIX_PROBE_LAST; q += LIX_PROBE_STEP) {
            size_t at = 0;
            if (off + q < from || !lix_kallsyms_index_hint(p + q))
                continue;
            if (confirm_index(pg, off + q, &at) && at >= from)
                return at;
            if (!(p = page_at(pg, off))) /* the confirmation used the reader */
                break;
        }
    }
    return 0;
}

/* Parse kallsyms from copies of growing windows around the token index at image offset tok. */
static hvi_status parse_near(struct pager *pg, struct lix_kallsyms *ks, size_t tok,
                             const char **why)
{
    hvi_status st = HVI_E_NOT_FOUND;
    size_t plo = SIZE_MAX, phi = 0;
    for (int w = 0; w < LIX_WINDOWS; w++) {
        size_t lo = page_down(tok > win_below[w] ? tok - win_below[w] : 0);
        size_t hi = page_up(tok + 512 + win_above[w]);
        if (hi > LIX_MAX_IMAGE)
            hi = LIX_MAX_IMAGE;
        if (lo == plo && hi == phi) /* no larger here than the last one */
            continue;
        plo = lo, phi = hi;
        uint8_t *buf = malloc(hi - lo);
        if (!buf)
            return HVI_E_NOMEM;
        copy_pages(pg, lo, buf, hi - lo);
        st = lix_kallsyms_parse_window(ks, &buf, hi - lo, pg->start + lo, tok - lo, pg->start,
                                       LIX_MAX_IMAGE, why);
        free(buf); /* NULL when the tables took it over */
        if (st != HVI_E_NOT_FOUND)
            return st;
    }
    return st;
}

static hvi_status find_kallsyms(struct pager *pg, struct lix_kallsyms *ks, const char **why)
{
    hvi_status st = HVI_E_NOT_FOUND;
    *why = "kallsyms_token_table/kallsyms_token_index not found";
    uint32_t tried = 0;
    for (int exec = 0; exec < 2 && tried < LIX_CANDIDATES; exec++) {
        if (exec && !pg->mem->view) /* without a view every page was scanned */
            break;
        for (size_t from = 0; tried < LIX_CANDIDATES; tried++) {
            size_t tok = scan_index(pg, from, exec);
            if (!tok)
                break;
            if ((st = parse_near(pg, ks, tok, why)) != HVI_E_NOT_FOUND)
                return st;
            from = tok + 8;
        }
    }
    return st;
}

static bool take_banner(struct lix_kernel *k, const char *text)
{
    char banner[sizeof(k->banner)], release[sizeof(k->release)];
    uint32_t version = 0;
    size_t n = 0;
    while (n + 1 < sizeof(banner) && text[n] >= 0x20 && text[n] < 0x7f)
        n++;
    memcpy(banner, text, n);
    banner[n] = 0;
    if (lix_parse_banner(banner, release, sizeof(release), &version) != HVI_OK)
        return false;
    memcpy(k->banner, banner, sizeof(banner));
    memcpy(k->release, release, sizeof(release));
    k->version = version;
    return true;
}

/* Without linux_banner: the first "Linux version <digit>" in the image, two pages at a time
 * (a banner may cross a page boundary). */
static bool scan_banner(struct lix_kernel *k, struct pager *pg)
{
    static const char pfx[] = "Linux version ";
    const size_t pl = sizeof(pfx) - 1, pz = HVI_PAGE_SIZE;
    uint8_t *two = calloc(3, pz); /* two pages and a NUL guard page for take_banner */
    if (!two)
        return false;
    bool found = false;
    uint32_t hole = 0;
    for (size_t off = 0; off <= LIX_MAX_IMAGE && hole <= LIX_HOLE_PAGES && !found; off += pz) {
        memmove(two, two + pz, pz);
        const uint8_t *p = off < LIX_MAX_IMAGE ? page_at(pg, off) : NULL;
        if (p) {
            memcpy(two + pz, p, pz);
            hole = 0;
        } else {
            memset(two + pz, 0, pz);
            hole++;
        }
        for (const uint8_t *c = two; off && !found && c < two + pz;) {
            c = memchr(c, 'L', (size_t)(two + pz - c));
            if (!c)
                break;
            found = !memcmp(c, pfx, pl) && c[pl] >= '0' && c[pl] <= '9' &&
                    take_banner(k, (const char *)c);
            c++;
        }
    }
    free(two);
    return found;
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

enum { N_TEXT, N_INIT_TASK, N_MODULES, N_BANNER, N_END, N_POB, N_COUNT };

/* The symbols discovery needs, resolved in one go (at most one pass over the names). */
static hvi_status resolve(struct lix_kernel *k, struct pager *pg, const char **why)
{
    static const char *const names[N_COUNT] = {"_text",        "init_task", "modules",
                                               "linux_banner", "_end",      "page_offset_base"};
    uint64_t a[N_COUNT];
    bool found[N_COUNT];
    hvi_status st = lix_kallsyms_lookup_many(&k->ks, names, N_COUNT, a, found);
    if (st != HVI_OK) {
        *why = "looking up symbols in kallsyms failed";
        return st;
    }
    if (found[N_TEXT] && a[N_TEXT] != k->image_start) {
        *why = "kallsyms _text does not match the image start";
        return HVI_E_FORMAT;
    }
    if (!found[N_INIT_TASK]) {
        *why = "init_task is not in kallsyms";
        return HVI_E_NOT_FOUND;
    }
    k->init_task = a[N_INIT_TASK];
    k->modules = found[N_MODULES] ? a[N_MODULES] : 0;
    char text[sizeof(k->banner)];
    /* The first banner in the image may be an early copy ("# SMP"): linux_banner first. */
    if (!(found[N_BANNER] && lix_read_str(k, a[N_BANNER], text, sizeof(text)) == HVI_OK &&
          take_banner(k, text)) &&
        !scan_banner(k, pg)) {
        *why = "no \"Linux version\" banner in the kernel image";
        return HVI_E_NOT_FOUND;
    }
    k->image_end = k->image_start + pg->mapped_end;
    if (found[N_END] && a[N_END] > k->image_start && a[N_END] - k->image_start <= (1ull << 30))
        k->image_end = a[N_END];
    if (found[N_POB] && lix_read_u64(k, a[N_POB], &k->page_offset_base) != HVI_OK)
        k->page_offset_base = 0;
    return HVI_OK;
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
    k->image_start = start;
    k->slide = start - LIX_TEXT_BASE;
    struct pager *pg = malloc(sizeof(*pg));
    if (!pg)
        return HVI_E_NOMEM;
    pg->mem = mem, pg->start = start, pg->mapped_end = 0;
    hvi_status st = find_kallsyms(pg, &k->ks, why);
    if (st == HVI_OK)
        st = resolve(k, pg, why);
    free(pg);
    if (st != HVI_OK)
        lix_kernel_free(k);
    return st;
}

void lix_kernel_free(struct lix_kernel *k)
{
    if (!k)
        return;
    lix_kallsyms_free(&k->ks);
    memset(k, 0, sizeof(*k));
}
