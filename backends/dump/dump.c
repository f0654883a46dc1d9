/* hvi dump backend — opening a dump and the read-only glue table over it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dump_internal.h"

/* q35: from 2.75 GiB of RAM on, only the first 2 GiB sit below 4 GiB (as backends/qemu). */
#define Q35_SPLIT_FROM 0xb0000000ull
#define Q35_LOW 0x80000000ull
#define GPA_4G 0x100000000ull

static _Thread_local char open_err[256];

const char *hvi_dump_last_error(const hvi_dump *d)
{
    return d ? d->err : open_err;
}

void hvi_dump_close(hvi_dump *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nbounce; i++)
        free(d->bounce[i]);
    free(d->bounce);
    if (d->mapped)
        munmap(d->base, d->size);
    else
        free(d->base);
    free(d->seg);
    free(d->cpu);
    free(d);
}

/* Map the whole file copy-on-write: the engine may write to a mapped page (it never does for
 * the read-only view), which must never reach the dump. MAP_NORESERVE: no commit charge for
 * pages nobody writes. */
static hvi_status map_file(struct hvi_dump *d, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return hvi_dump_fail(d, HVI_E_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    hvi_status st = HVI_OK;
    if (fstat(fd, &sb) != 0) {
        st = hvi_dump_fail(d, HVI_E_IO, "%s: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode) || sb.st_size <= 0) {
        st = hvi_dump_fail(d, HVI_E_FORMAT, "%s: not a regular non-empty file", path);
    } else if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = hvi_dump_fail(d, HVI_E_FORMAT, "%s: too large to map", path);
    } else {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_NORESERVE, fd, 0);
        if (p == MAP_FAILED) {
            st = hvi_dump_fail(d, HVI_E_IO, "%s: mmap: %s", path, strerror(errno));
        } else {
            d->base = p;
            d->size = (size_t)sb.st_size;
            d->mapped = true;
        }
    }
    close(fd);
    return st;
}

static hvi_status finish_open(struct hvi_dump *d, hvi_status st, hvi_dump **out)
{
    if (st != HVI_OK) {
        snprintf(open_err, sizeof(open_err), "%s", d->err[0] ? d->err : hvi_strstatus(st));
        hvi_dump_close(d);
        return st;
    }
    d->err[0] = 0;
    *out = d;
    return HVI_OK;
}

hvi_status hvi_dump_open(const char *path, hvi_dump **out)
{
    if (!path || !out)
        return HVI_E_INVAL;
    struct hvi_dump *d = calloc(1, sizeof(*d));
    if (!d)
        return HVI_E_NOMEM;
    d->format = HVI_DUMP_ELF;
    hvi_status st = map_file(d, path);
    if (st == HVI_OK)
        st = hvi_dump_parse_elf(d);
    return finish_open(d, st, out);
}

hvi_status hvi_dump_open_buffer(const void *data, size_t len, hvi_dump **out)
{
    if ((!data && len) || !out)
        return HVI_E_INVAL;
    struct hvi_dump *d = calloc(1, sizeof(*d));
    if (!d)
        return HVI_E_NOMEM;
    d->format = HVI_DUMP_ELF;
    d->base = malloc(len ? len : 1);
    if (!d->base) {
        free(d);
        return HVI_E_NOMEM;
    }
    if (len)
        memcpy(d->base, data, len);
    d->size = len;
    return finish_open(d, hvi_dump_parse_elf(d), out);
}

hvi_status hvi_dump_open_raw(const char *path, uint32_t vcpus, hvi_dump **out)
{
    if (!path || !out || vcpus == 0 || vcpus > HVI_DUMP_MAX_VCPUS)
        return HVI_E_INVAL;
    struct hvi_dump *d = calloc(1, sizeof(*d));
    if (!d)
        return HVI_E_NOMEM;
    d->format = HVI_DUMP_RAW;
    hvi_status st = map_file(d, path);
    if (st == HVI_OK &&
        (!(d->seg = calloc(2, sizeof(*d->seg))) || !(d->cpu = calloc(vcpus, sizeof(*d->cpu)))))
        st = HVI_E_NOMEM;
    if (st == HVI_OK) {
        d->ncpu = vcpus;
        uint64_t n = d->size;
        if (n >= Q35_SPLIT_FROM) {
            d->seg[0] = (struct dump_seg){.gpa = 0, .len = Q35_LOW, .off = 0};
            d->seg[1] = (struct dump_seg){.gpa = GPA_4G, .len = n - Q35_LOW, .off = Q35_LOW};
            d->nseg = 2;
        } else {
            d->seg[0] = (struct dump_seg){.gpa = 0, .len = n, .off = 0};
            d->nseg = 1;
        }
        st = hvi_dump_finish_segments(d);
    }
    return finish_open(d, st, out);
}

hvi_status hvi_dump_set_regs(hvi_dump *d, uint32_t vcpu, const hvi_regs *regs)
{
    if (!d || !regs || vcpu >= d->ncpu)
        return HVI_E_INVAL;
    hvi_regs *r = &d->cpu[vcpu].regs;
    uint32_t v = regs->valid;
    if (v & HVI_REGS_GPR) {
        memcpy(r->gpr, regs->gpr, sizeof(r->gpr));
        r->rip = regs->rip, r->rflags = regs->rflags;
    }
    if (v & HVI_REGS_CR)
        r->cr0 = regs->cr0, r->cr2 = regs->cr2, r->cr3 = regs->cr3, r->cr4 = regs->cr4,
        r->cr8 = regs->cr8;
    if (v & HVI_REGS_EFER)
        r->efer = regs->efer;
    for (int i = 0; i < HVI_SEG_COUNT; i++) {
        if (v & HVI_REGS_SEGBASE)
            r->seg[i] = regs->seg[i];
        else if (v & HVI_REGS_SEG)
            r->seg[i].selector = regs->seg[i].selector;
    }
    if (v & HVI_REGS_FSGS)
        r->fs_base = regs->fs_base, r->gs_base = regs->gs_base,
        r->kernel_gs_base = regs->kernel_gs_base;
    if (v & HVI_REGS_DTR)
        r->idtr_base = regs->idtr_base, r->idtr_limit = regs->idtr_limit,
        r->gdtr_base = regs->gdtr_base, r->gdtr_limit = regs->gdtr_limit;
    r->valid |= v;
    return HVI_OK;
}

hvi_status hvi_dump_get_info(const hvi_dump *d, hvi_dump_info *out)
{
    if (!d || !out)
        return HVI_E_INVAL;
    *out = (hvi_dump_info){.format = d->format,
                           .vcpus = d->ncpu,
                           .qemu_notes = d->nqemu,
                           .segments = d->nseg,
                           .mem_bytes = d->mem_bytes,
                           .max_gpa = d->max_gpa,
                           .file_bytes = d->size};
    return HVI_OK;
}

/* ---- glue ------------------------------------------------------------------------------ */

static hvi_status g_vcpu_count(void *ctx, uint32_t *out)
{
    struct hvi_dump *d = ctx;
    if (!out)
        return HVI_E_INVAL;
    *out = d->ncpu;
    return HVI_OK;
}

/* Every part asked for must be in the dump: a caller that reads CR3 from a dump without a
 * QEMU note gets HVI_E_UNSUPPORTED, not a zero. */
static hvi_status g_get_regs(void *ctx, uint32_t vcpu, uint32_t want, hvi_regs *out)
{
    struct hvi_dump *d = ctx;
    if (!out || vcpu >= d->ncpu)
        return HVI_E_INVAL;
    const hvi_regs *r = &d->cpu[vcpu].regs;
    if (want & ~r->valid)
        return hvi_dump_fail(d, HVI_E_UNSUPPORTED, "vCPU %u: the dump has no register parts 0x%x",
                             vcpu, want & ~r->valid);
    *out = *r;
    return HVI_OK;
}

static hvi_status g_max_gpfn(void *ctx, uint64_t *out)
{
    struct hvi_dump *d = ctx;
    if (!out)
        return HVI_E_INVAL;
    *out = (d->max_gpa - 1) >> 12;
    return HVI_OK;
}

/* Index of the first range ending above gpa, or d->nseg. */
static uint32_t first_after(const struct hvi_dump *d, uint64_t gpa)
{
    uint32_t lo = 0, hi = d->nseg;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (d->seg[mid].gpa + d->seg[mid].len <= gpa)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A page covered only partly, or by several ranges: a private copy, zero where no range is. */
static hvi_status bounce_page(struct hvi_dump *d, uint32_t i, uint64_t gpa, void **out)
{
    if (d->nbounce == d->cap_bounce) {
        size_t cap = d->cap_bounce ? d->cap_bounce * 2 : 8;
        void **n = realloc(d->bounce, cap * sizeof(*n));
        if (!n)
            return HVI_E_NOMEM;
        d->bounce = n;
        d->cap_bounce = cap;
    }
    uint8_t *page = calloc(1, HVI_PAGE_SIZE);
    if (!page)
        return HVI_E_NOMEM;
    for (; i < d->nseg && d->seg[i].gpa < gpa + HVI_PAGE_SIZE; i++) {
        const struct dump_seg *s = &d->seg[i];
        uint64_t from = s->gpa > gpa ? s->gpa : gpa;
        uint64_t to = s->gpa + s->len < gpa + HVI_PAGE_SIZE ? s->gpa + s->len : gpa + HVI_PAGE_SIZE;
        memcpy(page + (from - gpa), d->base + s->off + (from - s->gpa), to - from);
    }
    d->bounce[d->nbounce++] = page;
    *out = page;
    return HVI_OK;
}

static hvi_status g_map_gpa(void *ctx, hvi_gpa gpa, void **out)
{
    struct hvi_dump *d = ctx;
    if (!out || (gpa & (HVI_PAGE_SIZE - 1)))
        return HVI_E_INVAL;
    if (gpa > UINT64_MAX - HVI_PAGE_SIZE)
        return HVI_E_RANGE;
    uint32_t i = first_after(d, gpa);
    if (i == d->nseg || d->seg[i].gpa >= gpa + HVI_PAGE_SIZE)
        return HVI_E_RANGE;
    const struct dump_seg *s = &d->seg[i];
    if (s->gpa <= gpa && gpa + HVI_PAGE_SIZE <= s->gpa + s->len) {
        *out = d->base + s->off + (gpa - s->gpa);
        return HVI_OK;
    }
    return bounce_page(d, i, gpa, out);
}

static hvi_status g_unmap_gpa(void *ctx, hvi_gpa gpa, void *ptr)
{
    struct hvi_dump *d = ctx;
    (void)gpa;
    uint8_t *p = ptr;
    if (p >= d->base && p < d->base + d->size)
        return HVI_OK;
    for (size_t i = 0; i < d->nbounce; i++) {
        if (d->bounce[i] == ptr) {
            free(ptr);
            d->bounce[i] = d->bounce[--d->nbounce];
            return HVI_OK;
        }
    }
    return HVI_E_INVAL;
}

hvi_status hvi_dump_glue(hvi_dump *d, hvi_glue *out)
{
    if (!d || !out)
        return HVI_E_INVAL;
    memset(out, 0, sizeof(*out));
    out->version = HVI_GLUE_VERSION;
    out->size = sizeof(*out);
    out->caps = HVI_CAP_PHYS_MAP | HVI_CAP_DTR;
    out->ctx = d;
    out->name = "dump";
    out->vcpu_count = g_vcpu_count;
    out->get_regs = g_get_regs;
    out->max_gpfn = g_max_gpfn;
    out->map_gpa = g_map_gpa;
    out->unmap_gpa = g_unmap_gpa;
    return HVI_OK;
}
