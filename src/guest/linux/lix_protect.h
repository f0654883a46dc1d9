/*
 * hvi guest/linux — kernel protection state (private to lix_protect*.c).
 *
 * Memory objects are shadowed when protection starts and compared on every timer tick; the
 * cross-view checks (credentials, hidden modules/processes) keep their own small shadows.
 */
#ifndef HVI_GUEST_LIX_PROTECT_H
#define HVI_GUEST_LIX_PROTECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "guest/linux/lix.h"
#include "hvi/linux_protect.h"

#define LIXP_MAX_REGIONS 256u
#define LIXP_MAX_REGION_LEN (64u << 20)
#define LIXP_MAX_VCPUS 64u
#define LIXP_MAX_DIFFS_PER_TICK 16u
#define LIXP_TICK_SLICE (2u << 20) /* bytes of a big region compared per tick */

struct lixp_region {
    char object[32];        /* alert object name */
    uint64_t opt;           /* HVI_OPT_* bit that enables it */
    uint64_t gva;
    uint32_t len;
    uint32_t cursor;        /* next slice of a big region */
    uint8_t *shadow;
    uint64_t module;        /* struct module for module text, 0 otherwise */
    bool code;              /* executable: legitimate code patching is recognized */
    uint64_t grace;         /* first changed byte a timer check left to a write hook, 0 none */
    bool seen;              /* module still listed (module regions) */
};

struct lixp_cred {
    uint64_t task, cred, real_cred;
    uint32_t uid, gid, euid, egid, suid, sgid, fsuid, fsgid;
    uint64_t cap_permitted, cap_effective;
    uint64_t flagged;       /* cred pointer already reported as swapped */
    int32_t pid, tgid;
    bool user;              /* has an mm */
    bool seen;
};

#define LIXP_MAX_WATCH 8u
#define LIXP_MSR_KINDS 2u /* MSRs the agent checks: LSTAR, SYSENTER_EIP */

struct lixp_state;
/* One write-hooked 8-byte piece of an IDT gate (lix_protect_watch.c). */
struct lixp_watch {
    struct lixp_state *s;
    struct hvi_hook *hook;
    uint64_t gva;           /* gate address through `via` */
    uint32_t vec;
    const char *name, *via;
};

#define LIXP_MAX_RHOOKS 200u

/* One region write hook (lix_protect_hooks.c): the region is found again by (gva, len, module),
 * since regions move in their array when one is dropped. */
struct lixp_rhook {
    struct lixp_state *s;
    struct hvi_hook *hook;
    uint64_t hook_gva;      /* linear address watched: the region's, or an alias of it */
    uint64_t region_gva;
    uint32_t len;
    uint64_t module;        /* struct module for module text, 0 otherwise */
    const char *via;        /* alias name for the alert ("the IDTR alias"), NULL */
    bool used;
};

struct lixp_state {
    struct lix_kernel *k;
    struct lixp_region regions[LIXP_MAX_REGIONS];
    uint32_t nregions;
    uint64_t cr0[LIXP_MAX_VCPUS], cr4[LIXP_MAX_VCPUS];
    bool cr_known[LIXP_MAX_VCPUS];
    bool cr_deferred[LIXP_MAX_VCPUS]; /* a clear bit seen with interrupts off, not yet set */
    struct lixp_cred *creds;
    size_t ncreds, creds_cap;
    uint64_t module_kset;   /* &module_kset variable, 0 if unknown */
    uint64_t init_cred;     /* &init_cred, 0 if unknown */
    bool init_cred_looked;
    uint64_t reported_hidden[64];
    uint32_t nreported_hidden;
    uint64_t suspect_hidden[16]; /* tasks found hidden in the last round: alerted when the next
                                    round finds them hidden again (an exit racing a round is not) */
    uint32_t nsuspect_hidden;
    uint8_t *buf;           /* compare buffer */
    /* LSTAR agent (lix_protect_msr.c) */
    uint64_t msr_stub, msr_reads, msr_writes;
    uint64_t msr_expected[LIXP_MSR_KINDS]; /* the kernel's entry point; 0 = MSR not checked */
    uint64_t msr_last[LIXP_MAX_VCPUS][LIXP_MSR_KINDS]; /* last value read (0: none yet) */
    uint64_t msr_bad;       /* the value being written over (deny in progress) */
    hvi_regs msr_saved;
    uint32_t msr_wait;
    uint32_t msr_vcpu;      /* the vCPU the agent is armed on */
    uint32_t msr_kind;      /* the MSR it reads/writes (index into the agent's table) */
    uint32_t msr_next;      /* the vCPU the next run starts looking at */
    uint8_t msr_next_kind[LIXP_MAX_VCPUS]; /* the MSR the next run on that vCPU reads */
    bool msr_armed, msr_disabled;
    bool msr_writing;       /* armed with wrmsr (deny), not rdmsr */
    struct lixp_unpack *unpack; /* lix_protect_unpack.c */
    bool unpack_failed;
    struct lixp_watch watch[LIXP_MAX_WATCH];
    uint32_t nwatch;
    struct lixp_rhook rhooks[LIXP_MAX_RHOOKS]; /* region write hooks (HVI_CAP_WATCH_RANGE) */
    uint32_t nrhooks;
    bool rhooks_on;
    uint64_t idt_alias;     /* the IDTR's linear address when it is not idt_table's */
    uint64_t hook_stops_gone; /* hits of region hooks already removed */
    hvi_linux_protect_stats stats;
    size_t found;           /* violations in the current round */
};

/* lix_protect.c */
void lixp_alert_writer(struct lixp_state *s, hvi_alert *a, uint64_t addr);
/* The engine itself legitimately changed [gva, gva+len) (in-guest detours placed or removed,
 * lix_indetour.c): take the current bytes as the new reference of every region covering them,
 * so the change is no alert and a later change by someone else still is. No-op when protection
 * is not running. */
void lixp_accept(hvi_engine *e, uint64_t gva, uint32_t len);

/* Drop region i (its shadow; the last region moves into slot i). */
void lixp_region_drop(struct lixp_state *s, uint32_t i);
/* The changed bytes [first, last] of code region r (now: the region's current bytes, indexed like
 * its shadow) are legitimate kernel code patching (jump labels, ftrace shapes). */
bool lixp_legit_code_patch(const struct lix_kernel *k, const struct lixp_region *r,
                           const uint8_t *now, uint32_t first, uint32_t last);

/* lix_protect_hooks.c: one write hook per protected region when the backend has watchpoints of
 * any length (HVI_CAP_WATCH_RANGE), following the options at run time. start: false when it has
 * not (then the IDT gate hooks of lix_protect_watch.c are used). region: hook a region added
 * later (a module's text).
 * module_gone: unhook a module's text. accept: a change taken into the region shadows by other
 * means becomes the hooks' reference too. */
bool lixp_rhooks_start(hvi_engine *e, struct lixp_state *s);
void lixp_rhook_region(hvi_engine *e, struct lixp_state *s, const struct lixp_region *r);
void lixp_rhooks_module_gone(hvi_engine *e, struct lixp_state *s, uint64_t module);
void lixp_rhooks_accept(hvi_engine *e, struct lixp_state *s, uint64_t gva, uint32_t len);
void lixp_rhooks_stop(hvi_engine *e, struct lixp_state *s);
/* Watchpoint stops on region hooks so far (removed hooks included). */
uint64_t lixp_rhooks_stops(const struct lixp_state *s);
/* The timer check found [off, off+n) of r changed: true when r is write-hooked and this change
 * was not seen by the previous check of that slice (r->grace, cleared when the slice compares
 * equal), i.e. the hook's stop may still be queued (the backend delivers it at its next event
 * loop, after this tick): leave it to the hook for one round. */
bool lixp_rhooks_defer(struct lixp_state *s, struct lixp_region *r, uint32_t off, uint32_t n);

/* lix_protect_watch.c: write hooks (watchpoints) on IDT gates, writer attribution. */
void lixp_watch_start(hvi_engine *e, struct lixp_state *s);
void lixp_watch_stop(hvi_engine *e, struct lixp_state *s);
/* Fill a->rip, symbol, module (the caller's when RIP is in a copy helper such as memcpy; *note
 * then says so) and pid/comm of the task current on the vCPU of `regs`. */
void lixp_writer(struct lixp_state *s, const hvi_regs *regs, uint64_t rip, hvi_alert *a,
                 char *note, size_t nlen);
/* The task running on a vCPU (per-CPU current_task through the GS base); pid -1 if unknown. */
void lixp_current_task(const struct lixp_state *s, const hvi_regs *regs, int32_t *pid, char *comm,
                       size_t clen);

/* lix_protect_unpack.c: executable kernel pages that are no module's text (page tables). */
void lixp_check_unpack(hvi_engine *e, struct lixp_state *s);
void lixp_unpack_free(struct lixp_state *s);

/* lix_protect_msr.c: LSTAR through a one-shot rdmsr agent. */
void lixp_check_msr(hvi_engine *e, struct lixp_state *s);
hvi_status lixp_msr_detach(hvi_engine *e, struct lixp_state *s);

/* lix_protect_views.c: credentials and cross-view checks. */
void lixp_check_creds(hvi_engine *e, struct lixp_state *s);
void lixp_check_hidden_modules(hvi_engine *e, struct lixp_state *s);
void lixp_check_hidden_tasks(hvi_engine *e, struct lixp_state *s);
void lixp_views_free(struct lixp_state *s);

#endif
