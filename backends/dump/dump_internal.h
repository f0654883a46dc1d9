/* hvi dump backend — private state shared by the parser (elf.c) and the glue (dump.c). */
#ifndef HVI_DUMP_INTERNAL_H
#define HVI_DUMP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi_dump.h"

/* One range of guest physical memory held in the file: [gpa, gpa + len) at file offset off.
 * The table is sorted by gpa, ranges never overlap, every byte lies inside the file. */
struct dump_seg {
    uint64_t gpa, len, off;
};

struct dump_cpu {
    hvi_regs regs; /* regs.valid: the parts the dump (or hvi_dump_set_regs) gives */
};

struct hvi_dump {
    hvi_dump_format format;
    uint8_t *base; /* the whole file */
    size_t size;
    bool mapped; /* base is an mmap (else malloc'd by hvi_dump_open_buffer) */
    struct dump_seg *seg;
    uint32_t nseg;
    struct dump_cpu *cpu;
    uint32_t ncpu, nqemu;
    uint64_t mem_bytes, max_gpa;
    void **bounce; /* pages assembled from several ranges, handed out by map_gpa */
    size_t nbounce, cap_bounce;
    char err[256];
};

/* Parse an ELF core held in d->base/d->size: fills seg/nseg and cpu/ncpu/nqemu.
 * HVI_E_FORMAT (with d->err set) for anything malformed, HVI_E_NOMEM. */
hvi_status hvi_dump_parse_elf(struct hvi_dump *d);
/* Sort d->seg by GPA, refuse overlaps, compute mem_bytes and max_gpa. */
hvi_status hvi_dump_finish_segments(struct hvi_dump *d);
/* Record a failure message on d; returns st. */
hvi_status hvi_dump_fail(struct hvi_dump *d, hvi_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
