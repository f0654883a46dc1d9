/*
 * hvi — generic protection: named protected regions that raise alerts and decide (deny, or log
 * only with HVI_OPT_LOG_ONLY), register protection, and integrity regions hashed on the timer.
 *
 * Built on hook.h. The OS layers decide what to protect (kernel text, IDT, sys_call_table,
 * LSTAR...); this layer fills the alert record (type, vCPU, GPA/GVA, RIP, instruction text,
 * old/new value, width, action, object name) and emits it through the engine's alert queue.
 *
 * Decision for a violation: the optional exception callback may allow it (legitimate writer,
 * e.g. the kernel patching its own text); otherwise an alert is raised and the access is denied,
 * unless HVI_OPT_LOG_ONLY is set (alert action "logged", access allowed).
 */
#ifndef HVI_PROTECT_H
#define HVI_PROTECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hook.h"
#include "hvi.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hvi_protect hvi_protect;

/* Return true to allow the access without an alert (a known-good writer). `acc` is NULL for
 * register protections (then `ev` carries the values). */
typedef bool (*hvi_protect_exception_cb)(hvi_engine *e, const hvi_hook_access *acc,
                                         const hvi_event *ev, void *ctx);

/* Optional owner context for alerts (pid/comm/symbol/module); called when an alert is raised. */
typedef void (*hvi_protect_owner_cb)(hvi_engine *e, hvi_alert *alert, void *ctx);

typedef struct hvi_protect_desc {
    const char *object;            /* name in the alert ("kernel-text", "idt", ...) */
    uint32_t alert_type;           /* hvi_alert_type for violations */
    hvi_protect_exception_cb exception; /* optional */
    hvi_protect_owner_cb owner;    /* optional */
    void *ctx;
} hvi_protect_desc;

/*
 * hvi_protect_memory - protect [gpa, gpa+len) (gva: its linear address, 0 if unknown; the
 * watchpoint strategy needs it) against `access` (HVI_EPT_W and/or R/X). Errors as
 * hvi_hook_gpa_add/_gva.
 */
hvi_status hvi_protect_memory(hvi_engine *e, const hvi_protect_desc *desc, hvi_gpa gpa,
                              hvi_gva gva, uint32_t len, uint32_t access, hvi_protect **out);

/*
 * hvi_protect_register - protect a register (kind/index as hvi_hook_reg_add). An alert is raised
 * when a write changes any bit of `mask` (all ones: any change); DENY keeps the old value.
 */
hvi_status hvi_protect_register(hvi_engine *e, const hvi_protect_desc *desc, uint32_t kind,
                                uint32_t index, uint64_t mask, hvi_protect **out);

/*
 * hvi_protect_integrity - hash [gva, gva+len) through `cr3` (0 = kernel) now (XXH3-64) and again
 * on every timer tick; a changed hash raises HVI_ALERT_INTEGRITY whose detail names the region,
 * the old and the new hash. Deny mode writes the reference bytes back and keeps the reference;
 * log-only mode (or a failed write-back) makes the new contents the reference. len <= 16 MiB. Fails with the
 * read's status when the region cannot be read now.
 */
hvi_status hvi_protect_integrity(hvi_engine *e, const hvi_protect_desc *desc, uint64_t cr3,
                                 hvi_gva gva, uint32_t len, hvi_protect **out);
/* Run the integrity checks now (the timer calls this); returns the number of changed regions. */
size_t hvi_protect_integrity_check(hvi_engine *e);

/* Remove one protection (hooks, exits and hashes go with it). */
hvi_status hvi_protect_remove(hvi_engine *e, hvi_protect *p);

/* ---- unpacker: execute-after-write detection on watched pages ---- */

typedef struct hvi_unpack_info {
    hvi_gpa page;          /* frame of the watched page */
    hvi_gva page_gva;
    uint64_t writer_rip;   /* RIP of the last write to the page */
    uint32_t writer_vcpu;
    uint64_t exec_rip;     /* where execution entered the page */
    uint32_t exec_vcpu;
    uint32_t writes;       /* writes seen since the page was last executed */
} hvi_unpack_info;

/* Called when a written page is executed; returns an hvi_action for the execution (ALLOW or
 * DENY). An HVI_ALERT_UNPACK alert (object = desc->object) is raised with that decision. */
typedef uint32_t (*hvi_unpack_cb)(hvi_engine *e, const hvi_unpack_info *info, void *ctx);

/* Watch the 4 KiB page holding gpa (gva: its linear address, for the alert). Writes are allowed
 * and remembered; the first execution after a write calls cb, then the page is "clean" again.
 * Needs HVI_CAP_EPT (execute hooks): HVI_E_UNSUPPORTED otherwise. Remove with
 * hvi_protect_remove(). */
hvi_status hvi_unpack_watch(hvi_engine *e, const hvi_protect_desc *desc, hvi_gpa gpa, hvi_gva gva,
                            hvi_unpack_cb cb, hvi_protect **out);

/* ---- slack allocator over caller-given free guest ranges ---- */

/* Give the allocator a free range of guest memory (the OS layer decides where slack lives, e.g.
 * padding between kernel functions). Ranges must not overlap (HVI_E_EXISTS). */
hvi_status hvi_slack_add_range(hvi_engine *e, hvi_gva gva, uint32_t len);
/* First fit of `size` bytes aligned to `align` (power of two, <= 4096). HVI_E_LIMIT when no free
 * range fits. */
hvi_status hvi_slack_alloc(hvi_engine *e, uint32_t size, uint32_t align, hvi_gva *out);
/* Free an allocation by its address (HVI_E_NOT_FOUND if it is not one). */
hvi_status hvi_slack_free(hvi_engine *e, hvi_gva gva);
/* Free bytes left over all ranges. */
uint64_t hvi_slack_free_bytes(const hvi_engine *e);

/* ---- swapmem: read guest memory that may be paged out ---- */

typedef struct hvi_swapmem hvi_swapmem;

/* Called once with the whole region when every page of it is present. */
typedef void (*hvi_swapmem_cb)(hvi_engine *e, uint64_t cr3, hvi_gva gva, const void *data,
                               uint32_t len, void *ctx);

enum hvi_swapmem_flags {
    HVI_SWAPMEM_NO_INJECT = 1u << 0, /* never inject #PF: wait for the guest to swap in */
};
#define HVI_SWAPMEM_MAX_LEN (64u * 1024u)

/*
 * hvi_swapmem_read - read [gva, gva+len) through cr3 (0 = kernel) once it is all present.
 * Pages present now are read at once; missing ones get a page-table hook (needs HVI_CAP_EPT) and
 * are read when the guest maps them. Unless NO_INJECT, the engine injects a #PF (error code:
 * user, not-present read; CR2 = the page) for one missing page at a safe point: an event on a
 * vCPU running in that address space (CR3 match), at CPL 3 with RFLAGS.IF = 1, for a user-half
 * address only (kernel memory is never faulted in), each page at most once, and only with
 * HVI_CAP_INJECT. When everything is present at the call, cb runs before the return and
 * *handle (optional) is NULL; otherwise *handle identifies the request until cb has run.
 */
hvi_status hvi_swapmem_read(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint32_t len, uint32_t flags,
                            hvi_swapmem_cb cb, void *ctx, hvi_swapmem **handle);
/* Cancel one pending request (its callback never runs). */
hvi_status hvi_swapmem_cancel(hvi_engine *e, hvi_swapmem *h);
/* Cancel every request of an address space (e.g. the process exited); returns how many. */
size_t hvi_swapmem_cancel_cr3(hvi_engine *e, uint64_t cr3);
size_t hvi_swapmem_pending(const hvi_engine *e);

/* ---- memcloak: hide engine patches from the guest ---- */

typedef struct hvi_memcloak hvi_memcloak;

enum hvi_memcloak_flags {
    HVI_MEMCLOAK_APPLY_PATCH = 1u << 0, /* add: write `patch` into the guest; remove: write the
                                           original bytes back */
};

/* Informational: a guest write hit cloaked bytes. Writes are always blocked (also in log-only
 * mode), whatever this returns. */
typedef void (*hvi_memcloak_write_cb)(hvi_engine *e, hvi_memcloak *c, const hvi_hook_access *acc,
                                      void *ctx);

/*
 * hvi_memcloak_add - cloak [gva, gva+len) through cr3 (0 = kernel); the range may span at most
 * two pages, which must be present. `original` (len bytes) is what the guest must keep seeing;
 * NULL = the current contents. `patch` (optional, len bytes) is written with APPLY_PATCH.
 * Read and write hooks (EPT, HVI_E_UNSUPPORTED without) cover the range: a guest read is
 * completed by the engine with the original bytes at the cloaked offsets and the real memory
 * elsewhere (loads into general purpose registers: MOV/MOVZX/MOVSX/MOVSXD; other reading
 * instructions are let through and see the patch, with a warning); a guest write is denied.
 */
hvi_status hvi_memcloak_add(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint32_t len,
                            const void *original, const void *patch, uint32_t flags,
                            hvi_memcloak_write_cb on_write, void *ctx, hvi_memcloak **out);
/* Uncloak; with APPLY_PATCH the original bytes are written back. */
hvi_status hvi_memcloak_remove(hvi_engine *e, hvi_memcloak *c, uint32_t flags);

/* Violations seen so far (tests). */
uint64_t hvi_protect_violations(const hvi_engine *e);

#ifdef __cplusplus
}
#endif

#endif /* HVI_PROTECT_H */
