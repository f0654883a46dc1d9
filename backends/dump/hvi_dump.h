/*
 * hvi dump backend — read-only introspection of a guest memory dump (include "hvi_dump.h";
 * link hvi_backend_dump).
 *
 * Formats:
 *   - ELF core as written by QEMU's `dump-guest-memory` (paging=false): every PT_LOAD segment
 *     holds guest physical memory at p_paddr; the PT_NOTE segment holds one NT_PRSTATUS ("CORE")
 *     and one "QEMU" note (QEMUCPUState: GPRs, RIP, RFLAGS, segments with bases, GDT/IDT,
 *     CR0-CR4, kernel GS base) per vCPU. vCPU i is the i-th note of each kind.
 *   - raw: guest physical memory from GPA 0, laid out like QEMU's q35 RAM file (with 2.75 GiB or
 *     more, the file's first 2 GiB are GPA 0-2 GiB and the rest starts at GPA 4 GiB). A raw file
 *     has no registers: give them with hvi_dump_set_regs() before use (discovery needs at least
 *     CR0, CR3, CR4, EFER or CS.L, and the IDTR).
 *
 * The file is untrusted input: every header, count, note size and segment is bounded and
 * checked; a malformed file is refused with HVI_E_FORMAT and a message (hvi_dump_last_error()).
 *
 * The glue (hvi_dump_glue) has HVI_CAP_PHYS_MAP and HVI_CAP_DTR only: no register or memory
 * writes reach the file (pages are mapped copy-on-write), no EPT, breakpoints, watchpoints,
 * pause or events. The engine's read-only features (the Linux view) work; protection does not.
 * Register parts and EFER: see docs/dump-backend.md.
 *
 * Not thread-safe: one engine drives one dump.
 */
#ifndef HVI_DUMP_H
#define HVI_DUMP_H

#include <stddef.h>
#include <stdint.h>

#include "hvi/glue.h"
#include "hvi/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bounds on what a dump may declare (larger values are refused with HVI_E_FORMAT). */
#define HVI_DUMP_MAX_SEGMENTS (1u << 20) /* program headers */
#define HVI_DUMP_MAX_VCPUS 256u
#define HVI_DUMP_MAX_NOTES_BYTES (16u << 20)

typedef struct hvi_dump hvi_dump;

typedef enum hvi_dump_format { HVI_DUMP_ELF = 1, HVI_DUMP_RAW = 2 } hvi_dump_format;

/*
 * hvi_dump_open - open an ELF core dump (QEMU dump-guest-memory) read-only.
 * The file is mapped (MAP_PRIVATE) and stays mapped until hvi_dump_close().
 * Returns HVI_OK, HVI_E_INVAL (NULL argument), HVI_E_IO (cannot open/stat/map; errno text in
 * hvi_dump_last_error()), HVI_E_FORMAT (not an x86-64 ELF core, or malformed: headers, notes or
 * segments out of the file, overlapping segments, counts over the bounds above), HVI_E_NOMEM.
 */
hvi_status hvi_dump_open(const char *path, hvi_dump **out);
/* A raw physical-memory file (q35 layout above); no vCPU has registers until hvi_dump_set_regs.
 * `vcpus` (1..HVI_DUMP_MAX_VCPUS) is the number of vCPUs the glue reports. */
hvi_status hvi_dump_open_raw(const char *path, uint32_t vcpus, hvi_dump **out);
/* Parse an ELF core held in memory (the bytes are copied; for tests and fuzzing). */
hvi_status hvi_dump_open_buffer(const void *data, size_t len, hvi_dump **out);
/* Unmap and free. Accepts NULL. Engines using the glue must be freed first. */
void hvi_dump_close(hvi_dump *d);

/* The glue table (ctx = d, name "dump"). HVI_E_INVAL for NULL arguments. */
hvi_status hvi_dump_glue(hvi_dump *d, hvi_glue *out);

/* Replace what the dump says about vCPU `vcpu` with `regs` (regs->valid says which parts are
 * given; those parts replace the dump's, the others stay). HVI_E_INVAL for a vCPU out of range. */
hvi_status hvi_dump_set_regs(hvi_dump *d, uint32_t vcpu, const hvi_regs *regs);

/* Facts about an open dump. */
typedef struct hvi_dump_info {
    hvi_dump_format format;
    uint32_t vcpus;      /* vCPUs with state (ELF: number of NT_PRSTATUS/QEMU notes) */
    uint32_t qemu_notes; /* "QEMU" notes found (CR, DTR, segment bases come from them) */
    uint32_t segments;   /* memory ranges (PT_LOAD with file bytes; raw: 1 or 2) */
    uint64_t mem_bytes;  /* bytes of guest memory in the dump */
    uint64_t max_gpa;    /* highest GPA + 1 */
    uint64_t file_bytes;
} hvi_dump_info;
hvi_status hvi_dump_get_info(const hvi_dump *d, hvi_dump_info *out);

/* Why the last open of this thread failed, or the last failure on `d` ("" if none).
 * d may be NULL (then: the last failed open). */
const char *hvi_dump_last_error(const hvi_dump *d);

#ifdef __cplusplus
}
#endif

#endif
