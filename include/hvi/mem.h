/*
 * hvi — guest memory: paging modes, GVA->GPA translation, physical and
 * virtual reads and writes, bounded string fetch, multi-page mapping, and
 * the GPA cache of mapped frames.
 *
 * Everything here reads attacker-controlled guest memory: every walk is
 * bounded and every result checked. A non-present page is HVI_E_NOT_PRESENT
 * (normal), a GPA outside guest RAM HVI_E_RANGE.
 *
 * `cr3 == 0` in any call means "the guest's kernel CR3" as recorded by
 * hvi_new_guest() / hvi_mem_set_context().
 */
#ifndef HVI_MEM_H
#define HVI_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "glue.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hvi_engine hvi_engine;

typedef enum hvi_paging_mode {
    HVI_PAGING_NONE = 0,  /* paging off: GVA == GPA */
    HVI_PAGING_32 = 1,    /* legacy 2-level, 4 MiB pages with PSE */
    HVI_PAGING_PAE = 2,   /* 3-level PAE */
    HVI_PAGING_4LVL = 3,  /* 4-level long mode */
    HVI_PAGING_5LVL = 4,  /* 5-level (LA57) */
} hvi_paging_mode;

/* Result of one translation. Levels are numbered from the leaf: 1 = PT, 2 = PD, 3 = PDPT,
 * 4 = PML4, 5 = PML5. */
typedef struct hvi_translation {
    hvi_gva gva;
    hvi_gpa gpa;           /* valid when the walk succeeded */
    uint64_t page_size;    /* 4 KiB, 2/4 MiB or 1 GiB */
    bool writable;         /* effective R/W over all levels */
    bool user;             /* effective U/S */
    bool nx;               /* effective execute-disable */
    uint32_t levels;       /* number of levels walked */
    uint32_t fault_level;  /* 0 = success; else the level whose entry was not present/reserved */
    hvi_gpa entry_gpa[5];  /* GPA of the entry used at each level, index = level - 1 */
    uint64_t entry[5];     /* value of that entry */
} hvi_translation;

/* Paging mode from CR0/CR4/EFER as in Intel SDM vol. 3A 4.1.1. */
hvi_paging_mode hvi_paging_mode_from_regs(uint64_t cr0, uint64_t cr4, uint64_t efer);
const char *hvi_paging_mode_name(hvi_paging_mode mode);

/* Record the guest's paging mode and kernel CR3 (and, with KPTI, the user CR3 that pairs with
 * it). hvi_new_guest() does this from vCPU 0; tests and tools may call it directly. */
hvi_status hvi_mem_set_context(hvi_engine *e, hvi_paging_mode mode, uint64_t kernel_cr3);
hvi_paging_mode hvi_mem_paging_mode(const hvi_engine *e);
uint64_t hvi_mem_kernel_cr3(const hvi_engine *e);

/* Full page walk with an arbitrary CR3. HVI_E_NOT_PRESENT (out->fault_level says where),
 * HVI_E_RANGE when a table lies outside guest RAM, HVI_E_FORMAT for reserved bits set. */
hvi_status hvi_gva_translate(hvi_engine *e, uint64_t cr3, hvi_gva gva, hvi_translation *out);
/* Fast path: through the translation cache. */
hvi_status hvi_gva_to_gpa(hvi_engine *e, uint64_t cr3, hvi_gva gva, hvi_gpa *out);
/* Drop cached translations (all, or those for one CR3 when cr3 != 0). */
void hvi_mem_flush_translations(hvi_engine *e, uint64_t cr3);

/* Physical access of any size, crossing frame boundaries. */
hvi_status hvi_gpa_read(hvi_engine *e, hvi_gpa gpa, void *buf, size_t len);
hvi_status hvi_gpa_write(hvi_engine *e, hvi_gpa gpa, const void *buf, size_t len);

/* Virtual access through `cr3` (0 = kernel), crossing pages; fails whole if any page is absent. */
hvi_status hvi_gva_read(hvi_engine *e, uint64_t cr3, hvi_gva gva, void *buf, size_t len);
hvi_status hvi_gva_write(hvi_engine *e, uint64_t cr3, hvi_gva gva, const void *buf, size_t len);
/* Write guest-supplied or guest-allocated memory the way the guest's CPU would be allowed to:
 * every page must be present and writable in the tables of `cr3` at privilege level `cpl`
 * (0..3; CPL 3 also needs user pages; CR0.WP is taken as set, SMAP is not modelled) and, on
 * a backend with HVI_CAP_EPT, writable in the EPT (so memory the engine write-protects is
 * refused too). All pages are checked before anything is written: HVI_E_DENIED (with the
 * reason in hvi_last_error) leaves the guest untouched. The caller keeps the guest paused
 * between the check and the write (as during an event). */
hvi_status hvi_gva_write_safe(hvi_engine *e, uint64_t cr3, hvi_gva gva, const void *buf,
                              size_t len, uint32_t cpl);
/* Instruction fetch: like read but fails with HVI_E_DENIED when a page is NX. */
hvi_status hvi_gva_fetch(hvi_engine *e, uint64_t cr3, hvi_gva gva, void *buf, size_t len);
/* Convenience readers. */
hvi_status hvi_gva_read_u64(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint64_t *out);
hvi_status hvi_gva_read_u32(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint32_t *out);

/*
 * Bounded string fetch: read at most `max_chars` characters starting at gva, stop at the
 * terminator, write UTF-8 NUL-terminated into out[out_len]. HVI_E_LIMIT if no terminator was
 * found within max_chars (out then holds what was read, terminated). *len_out (optional) gets
 * the byte length written without NUL. The UTF-16 variant converts UTF-16LE (with surrogates;
 * invalid units become U+FFFD) to UTF-8.
 */
hvi_status hvi_gva_read_str(hvi_engine *e, uint64_t cr3, hvi_gva gva, size_t max_chars, char *out,
                            size_t out_len, size_t *len_out);
hvi_status hvi_gva_read_wstr(hvi_engine *e, uint64_t cr3, hvi_gva gva, size_t max_chars,
                             char *out, size_t out_len, size_t *len_out);

/* Map `len` bytes of virtual memory into one contiguous host buffer (a copy-through view:
 * writes through the pointer go to the guest on hvi_gva_unmap). Owned by the engine; release
 * with hvi_gva_unmap(). */
hvi_status hvi_gva_map(hvi_engine *e, uint64_t cr3, hvi_gva gva, size_t len, void **out);
void hvi_gva_unmap(hvi_engine *e, void *ptr);

/* ---- GPA cache: mapped frames with reference counts ---- */
/* Map (or find) the frame holding gpa and take a reference; *out points at gpa's byte. */
hvi_status hvi_gpa_cache_find_and_add(hvi_engine *e, hvi_gpa gpa, void **out);
/* Drop the reference taken on the frame holding gpa. */
hvi_status hvi_gpa_cache_release(hvi_engine *e, hvi_gpa gpa);
/* Read/patch len bytes (within one frame) through the cache, keeping the frame cached. */
hvi_status hvi_gpa_cache_fetch_and_add(hvi_engine *e, hvi_gpa gpa, void *buf, size_t len);
hvi_status hvi_gpa_cache_patch_and_add(hvi_engine *e, hvi_gpa gpa, const void *buf, size_t len);
/* Forget a frame (its mapping changed); references held elsewhere become invalid. */
void hvi_gpa_cache_invalidate(hvi_engine *e, hvi_gpa gpa);

#ifdef __cplusplus
}
#endif

#endif /* HVI_MEM_H */
