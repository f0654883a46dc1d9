/*
 * Helpers for the QEMU e2e tests: boot-or-skip and an independent 4/5-level page walk over the
 * glue (a test oracle, deliberately separate from the engine's walker in src/mem).
 */
#ifndef HVI_TEST_QEMU_UTIL_H
#define HVI_TEST_QEMU_UTIL_H

#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "hvi_qemu.h"

/* Why the real guest cannot run here, or NULL. */
static inline const char *qt_missing(void)
{
    glob_t g;
    bool kernel = glob("/boot/vmlinuz-*-amd64", 0, NULL, &g) == 0 && g.gl_pathc > 0;
    globfree(&g);
    if (!kernel && !getenv("HVI_GUEST_KERNEL"))
        return "no /boot/vmlinuz-*-amd64 kernel (apt-get install linux-image-amd64)";
    if (access("/usr/bin/qemu-system-x86_64", X_OK) != 0)
        return "qemu-system-x86_64 missing (apt-get install qemu-system-x86)";
    if (access("/bin/busybox", X_OK) != 0)
        return "busybox missing (apt-get install busybox-static)";
    return NULL;
}

/* Read len bytes at a GPA through the glue (crossing frames). */
static inline hvi_status qt_gpa_read(const hvi_glue *g, uint64_t gpa, void *buf, size_t len)
{
    uint8_t *o = buf;
    while (len) {
        void *p;
        size_t chunk = HVI_PAGE_SIZE - (gpa & (HVI_PAGE_SIZE - 1));
        if (chunk > len)
            chunk = len;
        hvi_status st = g->map_gpa(g->ctx, gpa & HVI_PAGE_MASK, &p);
        if (st != HVI_OK)
            return st;
        memcpy(o, (uint8_t *)p + (gpa & (HVI_PAGE_SIZE - 1)), chunk);
        g->unmap_gpa(g->ctx, gpa & HVI_PAGE_MASK, p);
        o += chunk, gpa += chunk, len -= chunk;
    }
    return HVI_OK;
}

/* Long-mode walk (4 levels, or 5 when la57). */
static inline hvi_status qt_translate(const hvi_glue *g, uint64_t cr3, bool la57, uint64_t gva,
                                      uint64_t *gpa)
{
    uint64_t table = cr3 & 0x000ffffffffff000ull;
    for (int level = la57 ? 5 : 4; level >= 1; level--) {
        uint64_t idx = (gva >> (12 + 9 * (level - 1))) & 0x1ff, e = 0;
        hvi_status st = qt_gpa_read(g, table + idx * 8, &e, 8);
        if (st != HVI_OK)
            return st;
        if (!(e & 1))
            return HVI_E_NOT_PRESENT;
        uint64_t addr = e & 0x000ffffffffff000ull;
        if ((level == 2 || level == 3) && (e & 0x80)) {
            uint64_t size = 1ull << (12 + 9 * (level - 1));
            *gpa = (addr & ~(size - 1)) + (gva & (size - 1));
            return HVI_OK;
        }
        table = addr;
    }
    *gpa = table + (gva & 0xfff);
    return HVI_OK;
}

static inline hvi_status qt_gva_read(const hvi_glue *g, const hvi_regs *r, uint64_t gva, void *buf,
                                     size_t len)
{
    uint8_t *o = buf;
    while (len) {
        uint64_t gpa;
        size_t chunk = HVI_PAGE_SIZE - (gva & 0xfff);
        if (chunk > len)
            chunk = len;
        hvi_status st = qt_translate(g, r->cr3, (r->cr4 >> 12) & 1, gva, &gpa);
        if (st == HVI_OK)
            st = qt_gpa_read(g, gpa, o, chunk);
        if (st != HVI_OK)
            return st;
        o += chunk, gva += chunk, len -= chunk;
    }
    return HVI_OK;
}

#endif
