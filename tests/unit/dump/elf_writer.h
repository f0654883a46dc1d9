/* Tests: build a QEMU-style ELF core dump in memory (ELF header, PT_NOTE with NT_PRSTATUS and
 * "QEMU" notes, PT_LOADs of guest physical memory placed straight after the notes, unaligned
 * like QEMU's), plus offsets of its parts so hostile variants can be made by patching. */
#ifndef TEST_DUMP_ELF_WRITER_H
#define TEST_DUMP_ELF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi/glue.h"

struct ew_seg {
    uint64_t gpa;
    const void *data;
    uint64_t len;
};

struct ew_opts {
    bool no_prstatus;   /* leave out the NT_PRSTATUS notes */
    bool no_qemu;       /* leave out the QEMU notes */
    uint32_t qemu_size; /* QEMUCPUState size field: 0 = 440 (with kernel_gs_base), or 432 */
};

struct ew_layout {
    size_t phoff; /* program headers (PT_NOTE first, then the PT_LOADs in order) */
    size_t notes_off, notes_len;
    size_t data_off; /* first segment's bytes */
};

#define EW_EHDR 64u
#define EW_PHDR 56u

/* malloc'd ELF image, its length in *len; NULL on allocation failure. */
uint8_t *ew_build(const struct ew_seg *segs, size_t nseg, const hvi_regs *cpus, size_t ncpu,
                  const struct ew_opts *opts, size_t *len, struct ew_layout *lay);
void ew_put16(uint8_t *p, uint16_t v);
void ew_put32(uint8_t *p, uint32_t v);
void ew_put64(uint8_t *p, uint64_t v);

#endif
