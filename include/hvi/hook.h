/*
 * hvi — hooks: memory (GPA), register (CR/MSR/DTR/XCR) and detours (hypervisor breakpoints).
 *
 * GPA hooks
 *   A hook covers any byte range [gpa, gpa+len) (it may span frames) for any of HVI_EPT_R/W/X.
 *   Hooks are kept per 4 KiB frame; the rights of a frame are RWX minus the union of the hooked
 *   accesses on it, written with the glue's set_ept_rights. On a violation only the hooks whose
 *   range intersects the accessed bytes (from the decoder, else the event's len, else 1 byte) and
 *   whose access matches are called. Removing a hook (also from inside its own callback, or
 *   another hook's) restores the frame's rights exactly; the frame's original rights are read with
 *   get_ept_rights when the first hook arrives and written back when the last leaves.
 *
 *   Two strategies, chosen by capability, one API:
 *     - HVI_CAP_EPT: rights as above; the violation arrives before the access. DENY: the engine
 *       moves RIP past the instruction (set_regs) so the write never happens. ALLOW: the backend
 *       must let the faulting instruction complete once despite the frame's rights (relax them,
 *       single-step, restore — or emulate), since other bytes of a hooked frame are not hooked.
 *     - no EPT but HVI_CAP_WATCHPOINT (QEMU): write hooks become write watchpoints at the GVA
 *       given to hvi_hook_gpa_add_gva and the engine keeps a shadow copy of the hooked bytes.
 *       HVI_EV_WATCHPOINT arrives after the write; the hooked bytes are compared with the shadow
 *       and the callback is called once per changed run (changed bytes with gaps of fewer than 8
 *       equal ones): DENY writes that run's shadow bytes back, ALLOW takes them into the shadow.
 *       Read/execute hooks need EPT: HVI_E_UNSUPPORTED. Page-table/GVA hooks need EPT.
 *       With debug-register watchpoints (KVM: 4 of 1/2/4/8 bytes) a hook is one naturally
 *       aligned 8-byte piece per 8 bytes, so only small critical fields can be watched. With
 *       HVI_CAP_WATCH_RANGE (QEMU/TCG: software watchpoints, any number and length) a hook is
 *       exactly one watchpoint, and hvi_hook_watch_range_add hooks a multi-page linear range
 *       (kernel text, tens of MiB) as one hook.
 *
 * Detours and breakpoint step-over contract (for backends)
 *   hvi_detour_add places set_breakpoint(gva). On HVI_EV_BREAKPOINT the engine calls the detour
 *   callback with the vCPU registers; the callback may change them (see hvi_detour_return).
 *   The reply tells the backend what to do:
 *     - regs_changed = true: the engine already wrote registers (set_regs); RIP no longer points
 *       at the breakpoint, the backend simply resumes the vCPU.
 *     - otherwise (action ALLOW): the backend must execute the original instruction under the
 *       breakpoint exactly once without reporting it again: remove the breakpoint (or use its
 *       own step-over), single-step the vCPU, put the breakpoint back, resume. The engine does not
 *       ask for a single-step itself; HVI_EV_SINGLE_STEP events it did not request are ALLOWed.
 *     - an HVI_EV_BREAKPOINT at an address without a detour is not the engine's (reply ALLOW;
 *       the backend should deliver it to the guest if it was a guest INT3).
 */
#ifndef HVI_HOOK_H
#define HVI_HOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decode.h"
#include "glue.h"
#include "hvi.h"
#include "mem.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hvi_hook hvi_hook;

/* What a memory hook's callback is told. */
typedef struct hvi_hook_access {
    const hvi_event *event;   /* the event being handled */
    uint32_t vcpu;
    uint32_t access;          /* HVI_EPT_R / W / X */
    hvi_gpa gpa;              /* first accessed byte (physical) */
    hvi_gva gva;              /* first accessed byte (linear), 0 if unknown */
    uint32_t size;            /* accessed bytes */
    uint64_t rip;
    const hvi_insn *insn;     /* decoded instruction, NULL when it could not be decoded */
    const hvi_regs *regs;     /* vCPU state, NULL if unavailable */
    /* Writes: the bytes at the location before the write and the value written, when known. */
    bool values_known;
    uint8_t old_bytes[16];
    uint8_t new_bytes[16];
    bool after_access;        /* watchpoint strategy: the write is already in memory */
    /* Watchpoint strategy: `rip` is where the vCPU stopped, after the writing instruction;
     * with HVI_CAP_WATCH_RANGE writer_rip is that instruction, found by decoding backwards
     * from rip through the vCPU's CR3 (the longest
     * instruction ending exactly at rip that writes memory covering `gva`), 0 if none fits
     * (e.g. the write came from another vCPU's earlier change, or a REP string instruction);
     * `insn` then points at that decoded instruction (NULL otherwise on this strategy). */
    uint64_t writer_rip;
    /* EPT strategy only: the engine's working copy of the vCPU registers (NULL otherwise). A
     * callback that completes the instruction itself (emulation, e.g. memcloak reads) writes the
     * resulting state here and returns HVI_ACTION_DENY: the engine then writes these registers
     * instead of skipping the instruction. */
    hvi_regs *emulate;
} hvi_hook_access;

/* Returns an hvi_action: ALLOW, DENY (write not done / undone), RETRY. */
typedef uint32_t (*hvi_gpa_hook_cb)(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc,
                                    void *ctx);

/*
 * hvi_hook_gpa_add - hook [gpa, gpa+len) for `access` (OR of HVI_EPT_R/W/X).
 * HVI_E_INVAL for len 0, len > 1 MiB, access 0 or overflow; HVI_E_UNSUPPORTED when the backend
 * can neither restrict the access (EPT) nor watch it (watchpoints, writes only, needs the GVA:
 * use hvi_hook_gpa_add_gva); HVI_E_BACKEND when the glue fails (nothing changed).
 */
hvi_status hvi_hook_gpa_add(hvi_engine *e, hvi_gpa gpa, uint32_t len, uint32_t access,
                            hvi_gpa_hook_cb cb, void *ctx, hvi_hook **out);

/* Same, also naming the linear address that maps gpa (needed by the watchpoint strategy, and
 * reported in hvi_hook_access.gva). The range must lie in one page. */
hvi_status hvi_hook_gpa_add_gva(hvi_engine *e, hvi_gpa gpa, hvi_gva gva, uint32_t len,
                                uint32_t access, hvi_gpa_hook_cb cb, void *ctx, hvi_hook **out);

/*
 * hvi_hook_watch_range_add - write-hook the linear range [gva, gva+len) (any number of pages, up to
 * HVI_WATCH_RANGE_MAX_LEN) through `cr3` (0 = kernel) as one hook watched by one watchpoint.
 * Needs HVI_CAP_WATCH_RANGE (HVI_E_UNSUPPORTED otherwise: use hook objects); every page must be
 * present now (HVI_E_NOT_PRESENT): the translation of the moment is used and not followed, so a
 * write through another linear alias of the same frames is not seen. The callback's
 * hvi_hook_access is as for any watch hook (gpa of the run's first byte).
 */
hvi_status hvi_hook_watch_range_add(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint64_t len,
                                    hvi_gpa_hook_cb cb, void *ctx, hvi_hook **out);

/* Watch hooks: take the current bytes of [gva, gva+len) (clipped to the hook) as the hook's
 * reference, for a change its owner accepted by other means (e.g. found by a timer check, or
 * made by the engine itself). No-op for EPT hooks; HVI_E_INVAL for a non-memory hook, or one removed during the current
 * event (outside an event a removed hook's handle is freed and must not be used). */
hvi_status hvi_hook_watch_accept(hvi_engine *e, hvi_hook *hook, hvi_gva gva, uint64_t len);

/* Watchpoint-strategy hook: watchpoint events that matched it (with changed bytes or not). */
uint64_t hvi_hook_hits(const hvi_hook *hook);

/* Remove a hook (any kind in this header); safe from inside any hook callback (the handle's memory
 * is released when the event returns). HVI_E_INVAL for NULL or a removed hook.
 * Memory hooks: the hook is always gone afterwards; HVI_E_BACKEND means the backend refused to
 * restore some frame's rights or clear a watchpoint: those stay "stale" and are retried by
 * hvi_hook_sync() (called by every later add/remove, on the timer and on detach).
 * Register hooks / detours: on HVI_E_BACKEND the hook stays in place. */
hvi_status hvi_hook_remove(hvi_engine *e, hvi_hook *hook);

/* Mark a hook as owned by another component (a protection, a request): hvi_detach() then leaves
 * it to its owner, which must remove it in its own detach callback. */
void hvi_hook_set_owned(hvi_hook *hook, bool owned);

/* Retry the glue updates that failed earlier. HVI_OK when nothing is stale any more. */
hvi_status hvi_hook_sync(hvi_engine *e);

/* The EPT rights the hook layer wants for the frame of gpa (RWX when unhooked). */
uint32_t hvi_hook_frame_rights(hvi_engine *e, hvi_gpa gpa);
/* Number of live hooks / frames with hook state, stale ones included (tests). */
size_t hvi_hook_count(const hvi_engine *e);
size_t hvi_hook_frame_count(const hvi_engine *e);

/* ---- page-table hooks ---- */

/*
 * Watch every paging-structure entry that translates `gva` through `cr3` (0 = kernel CR3). Each
 * level's table entry is write-hooked before it is read; a write that changes an entry (other
 * than only its Accessed/Dirty bits) re-walks the translation, moves the level hooks and calls
 * cb with the old and the new translation (fault_level != 0: not present). Writes whose value
 * the decoder cannot compute are resolved after the instruction (single-step). 4- and 5-level
 * paging; needs HVI_CAP_EPT (HVI_E_UNSUPPORTED otherwise, or for other paging modes).
 */
typedef void (*hvi_pt_hook_cb)(hvi_engine *e, hvi_hook *hook, const hvi_translation *old_tr,
                               const hvi_translation *new_tr, void *ctx);
hvi_status hvi_hook_pt_add(hvi_engine *e, uint64_t cr3, hvi_gva gva, hvi_pt_hook_cb cb, void *ctx,
                           hvi_hook **out);
/* The translation a page-table or GVA hook currently follows. */
hvi_status hvi_hook_translation(const hvi_hook *hook, hvi_translation *out);

/* ---- GVA hooks: follow the translation ---- */

/* Told when the GPA under a GVA hook changed (remap, swap-out: new_present false, swap-in,
 * large-page split with a new frame); the GPA hook has already moved. */
typedef void (*hvi_gva_moved_cb)(hvi_engine *e, hvi_hook *hook, hvi_gpa old_gpa, bool old_present,
                                 hvi_gpa new_gpa, bool new_present, void *ctx);

/* Hook [gva, gva+len) (within one page) for `access` through `cr3` (0 = kernel). The callback is
 * a GPA hook callback on the frame currently mapped there; the hook is placed even when the page
 * is not present now and appears when it is mapped. `moved` is optional. */
hvi_status hvi_hook_gva_add(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint32_t len, uint32_t access,
                            hvi_gpa_hook_cb cb, hvi_gva_moved_cb moved, void *ctx, hvi_hook **out);

/* ---- VA-space monitor: every page-table write of an address space ---- */

/* One changed paging entry (Accessed/Dirty-only changes are filtered). */
typedef void (*hvi_vasmon_cb)(hvi_engine *e, hvi_hook *mon, hvi_gpa entry_gpa, uint32_t level,
                              uint64_t old_entry, uint64_t new_entry, void *ctx);

/* Hook every paging-structure frame reachable from cr3 (0 = kernel CR3; 4/5-level paging, EPT),
 * each before it is read; tables linked or unlinked later are hooked/unhooked as the entries
 * change. At most 8192 tables (HVI_E_LIMIT). Costly: every page-table write of the space exits. */
hvi_status hvi_vasmon_add(hvi_engine *e, uint64_t cr3, hvi_vasmon_cb cb, void *ctx, hvi_hook **out);
/* Number of tables a monitor currently hooks. */
size_t hvi_vasmon_tables(const hvi_hook *mon);

/* ---- hook objects: regions of linear memory hooked and removed together ---- */

typedef struct hvi_hook_object hvi_hook_object;

/* `name` is copied (for messages). */
hvi_status hvi_hook_object_new(hvi_engine *e, const char *name, hvi_hook_object **out);
/*
 * Hook the linear region [gva, gva+len) through `cr3` (0 = kernel), any number of pages, for
 * `access`. With HVI_CAP_EPT every page gets a GVA hook (follows its translation; `moved` is
 * optional). Without EPT (watchpoints) write hooks are placed on the translation of the moment
 * (pages must be present; the translation is not followed): one hook per page, or with
 * HVI_CAP_WATCH_RANGE one hook (hvi_hook_watch_range_add) for the whole region. All or nothing.
 */
hvi_status hvi_hook_object_add_region(hvi_engine *e, hvi_hook_object *obj, uint64_t cr3,
                                      hvi_gva gva, uint64_t len, uint32_t access,
                                      hvi_gpa_hook_cb cb, hvi_gva_moved_cb moved, void *ctx);
/* Remove the region that starts at gva (HVI_E_NOT_FOUND if none). */
hvi_status hvi_hook_object_remove_region(hvi_engine *e, hvi_hook_object *obj, hvi_gva gva);
/* Remove every region and free the object; accepts NULL. hvi_detach() empties every object
 * (the objects stay valid); hvi_engine_free() frees the objects still alive. */
void hvi_hook_object_free(hvi_engine *e, hvi_hook_object *obj);

/* ---- register hooks ---- */

/* Called with the CR/MSR/DTR/XCR event (old_value/new_value); returns an hvi_action. DENY keeps
 * the old value (the backend must not perform the register write). */
typedef uint32_t (*hvi_reg_hook_cb)(hvi_engine *e, hvi_hook *hook, const hvi_event *ev, void *ctx);

/* kind: HVI_EXIT_CR (index 0/3/4), HVI_EXIT_MSR (index = MSR), HVI_EXIT_DTR (0 IDTR, 1 GDTR),
 * HVI_EXIT_XCR (0). Enables the exit through enable_exit on the first hook of (kind, index) and
 * disables it when the last goes. HVI_E_UNSUPPORTED without HVI_CAP_REG_EXITS. */
hvi_status hvi_hook_reg_add(hvi_engine *e, uint32_t kind, uint32_t index, hvi_reg_hook_cb cb,
                            void *ctx, hvi_hook **out);

/* ---- detours (hypervisor breakpoints) ---- */

/* Called on the breakpoint with the vCPU registers (GPR|CR|EFER|SEG|FSGS). The callback may
 * change *regs and return true to have them written (set_regs). */
typedef bool (*hvi_detour_cb)(hvi_engine *e, hvi_hook *hook, uint32_t vcpu, hvi_regs *regs,
                              void *ctx);

/* HVI_E_UNSUPPORTED without HVI_CAP_BREAKPOINT; HVI_E_EXISTS for a second detour on a gva. */
hvi_status hvi_detour_add(hvi_engine *e, hvi_gva gva, hvi_detour_cb cb, void *ctx, hvi_hook **out);

/* Helper for detour callbacks: return from the detoured function at once with `value`:
 * RIP = [RSP] (read through regs->cr3), RSP += 8, RAX = value. HVI_E_NOT_PRESENT if the stack
 * is not mapped (regs unchanged). */
hvi_status hvi_detour_return(hvi_engine *e, hvi_regs *regs, uint64_t value);

#ifdef __cplusplus
}
#endif

#endif /* HVI_HOOK_H */
