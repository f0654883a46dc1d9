/*
 * guest/windows — a PE (MZ/PE32/PE32+) header and export parser for images read from hostile
 * guest memory (private header; the fuzz target and the tests use it directly).
 *
 * The parser never touches memory itself: it asks a reader for `len` bytes at an RVA of the
 * image. Every RVA and size read from the image is checked against SizeOfImage before it is
 * used; counts are bounded (sections, export names, string lengths).
 */
#ifndef HVI_GUEST_WINDOWS_PE_H
#define HVI_GUEST_WINDOWS_PE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi/status.h"

#define WIN_PE_MAX_SECTIONS 96u
#define WIN_PE_MAX_IMAGE (256u << 20)   /* SizeOfImage accepted up to 256 MiB */
#define WIN_PE_MAX_NAMES 65536u         /* export names / functions */
#define WIN_PE_HDR_PAGE 4096u           /* headers must lie in the first page */

#define WIN_SCN_CNT_CODE 0x00000020u
#define WIN_SCN_DISCARDABLE 0x02000000u
#define WIN_SCN_MEM_EXECUTE 0x20000000u
#define WIN_SCN_MEM_READ 0x40000000u
#define WIN_SCN_MEM_WRITE 0x80000000u

#define WIN_MACHINE_I386 0x014cu
#define WIN_MACHINE_AMD64 0x8664u

/* Read `len` bytes at `rva` of the image into buf; HVI_OK or a failure (absent page...). */
typedef hvi_status (*win_pe_read_fn)(void *ctx, uint32_t rva, void *buf, size_t len);

struct win_pe_section {
    char name[9];              /* NUL-terminated, non-printable bytes replaced by '?' */
    uint32_t rva, vsize;       /* vsize: max(VirtualSize, 1), clipped to the image */
    uint32_t characteristics;
};

struct win_pe {
    uint16_t machine;
    bool is64;
    uint32_t size_of_image, size_of_headers, entry_rva, timestamp;
    uint64_t image_base;       /* preferred base from the optional header */
    uint32_t nsec;
    struct win_pe_section sec[WIN_PE_MAX_SECTIONS];
    /* export directory (exp_rva == 0: none) */
    uint32_t exp_rva, exp_size;
    uint32_t exp_nfuncs, exp_nnames, exp_funcs, exp_names, exp_ords, exp_ordinal_base;
    char exp_name[64];         /* the image's own name in the export directory, "" if none */
};

/*
 * Parse the headers from the first page `hdr` (WIN_PE_HDR_PAGE bytes) and, with `rd`, the export
 * directory. HVI_E_FORMAT with a reason in msg for anything malformed: bad magic, e_lfanew out of
 * the page, unknown machine/optional magic, SizeOfImage 0 or > WIN_PE_MAX_IMAGE, more than
 * WIN_PE_MAX_SECTIONS sections, a section or directory outside the image, oversized export
 * counts. A failing read of the export directory gives that read's status.
 */
hvi_status win_pe_parse(const uint8_t *hdr, win_pe_read_fn rd, void *ctx, struct win_pe *out,
                        char *msg, size_t msg_len);

/* RVA of an exported symbol by name (binary search over the sorted name table, at most 32
 * probes). HVI_E_NOT_FOUND when absent or forwarded; read failures are passed through. */
hvi_status win_pe_export(const struct win_pe *pe, win_pe_read_fn rd, void *ctx, const char *name,
                         uint32_t *rva_out);

/* Section by exact name, or the section holding rva; NULL when none. */
const struct win_pe_section *win_pe_section_named(const struct win_pe *pe, const char *name);
const struct win_pe_section *win_pe_section_at(const struct win_pe *pe, uint32_t rva);

#endif
