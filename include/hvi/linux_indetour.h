/*
 * hvi — in-guest detours for frequent Linux events (VMA insert/remove/protect/adjust/expand,
 * brk, exit_mmap, new tasks), src/guest/linux/lix_indetour.c.
 *
 * A hypervisor breakpoint costs about 2 ms per event on QEMU/TCG: far too slow for memory-map
 * changes. Instead the engine places small stubs in kernel-text slack (int3 padding) and turns
 * the 5-byte ftrace NOP at the entry of each detoured function into a CALL to its stub. The stub
 * claims a slot of a ring buffer in guest memory with `lock xadd` on the ring head, stores the
 * event id, the current task (gs:current_task) and the argument registers, commits the slot by
 * writing its sequence number last, and returns into the function. The engine reads the ring
 * through the RAM mapping (no VM exit) on its timer or when asked (hvi_linux_indetour_drain),
 * and keeps a VMA view of the processes it follows. Lost events (ring overflow, torn or garbage
 * records) make it re-walk the maple tree of every followed process.
 *
 * docs/linux-indetour.md: mechanism, where the ring lives, what is not done.
 */
#ifndef HVI_LINUX_INDETOUR_H
#define HVI_LINUX_INDETOUR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi.h"
#include "linux.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Event ids (the record's id field). */
enum hvi_lixd_event {
    HVI_LIXD_VMA_STORE = 1,   /* vma_mas_store(vma, mas): vma (re)entered the tree */
    HVI_LIXD_VMA_REMOVE = 2,  /* vma_mas_remove(vma, mas) */
    HVI_LIXD_VMA_FREE = 3,    /* vm_area_free(vma) */
    HVI_LIXD_VMA_ADJUST = 4,  /* __vma_adjust(vma, start, end, pgoff, insert, expand) */
    HVI_LIXD_VMA_PROTECT = 5, /* mprotect_fixup(tlb, vma, pprev, start, end, newflags) */
    HVI_LIXD_VMA_EXPAND = 6,  /* expand_downwards(vma, address) */
    HVI_LIXD_BRK = 7,         /* do_brk_flags(mas, vma, addr, len, flags): current's mm */
    HVI_LIXD_EXIT_MMAP = 8,   /* exit_mmap(mm) */
    HVI_LIXD_FORK = 9,        /* wake_up_new_task(p): a new task starts (fork storms) */
    /* Process and module events for hvi_linux_events (include/hvi/linux_events.h), installed
     * only when asked for in opts.events: */
    HVI_LIXD_EXEC = 10,       /* begin_new_exec(bprm): current's pid/tgid, bprm->filename copied */
    HVI_LIXD_EXIT = 11,       /* do_exit(code): current's pid/tgid */
    HVI_LIXD_MOD_LOAD = 12,   /* module_param_sysfs_setup(mod, ...): mod->name copied */
    HVI_LIXD_MOD_UNLOAD = 13, /* module_param_sysfs_remove(mod): mod->name copied */
    HVI_LIXD_EVENT_MAX = 14,
};
/* opts.events == 0 installs these (the VMA events and fork). */
#define HVI_LIXD_DEFAULT_EVENTS 0x3feu
const char *hvi_lixd_event_name(uint32_t id);

typedef struct hvi_linux_indetour_opts {
    uint32_t ring_records; /* power of two, 0 = default (8192); shrunk to fit the region */
    uint64_t ring_gva;     /* 0 = find a region (tail of .bss before .bss..decrypted) */
    uint32_t ring_len;     /* with ring_gva: bytes available there */
    uint32_t events;       /* bit (1 << id) per event to install; 0 = HVI_LIXD_DEFAULT_EVENTS */
} hvi_linux_indetour_opts;

/* One event as the engine decoded it. vma/start/end/flags are read when the ring is drained
 * (the VMA's state then, not at the time of the call); args are the registers at the call. */
typedef struct hvi_linux_vma_event {
    uint64_t seq;      /* ring index + 1 */
    uint32_t id;       /* hvi_lixd_event */
    uint64_t task;     /* current task_struct at the call */
    int32_t pid, tgid; /* of that task (-1 if unreadable) */
    char comm[17];
    uint64_t vma, mm;              /* the VMA the event is about (0 if none) and its mm */
    int32_t child_pid, child_tgid; /* HVI_LIXD_FORK: the new task; EXEC/EXIT: the current task,
                                      loaded at the call (-1 if unavailable) */
    char str[64];                  /* EXEC: filename, MOD_*: module name, copied at the call
                                      (at most 63 bytes; "" otherwise) */
    uint64_t start, end, flags;
    uint64_t args[5]; /* rdi, rsi, rdx, rcx, r8 */
} hvi_linux_vma_event;

typedef void (*hvi_linux_vma_event_cb)(hvi_engine *e, const hvi_linux_vma_event *ev, void *ctx);

typedef struct hvi_linux_indetour_stats {
    uint64_t events;    /* records consumed */
    uint64_t lost;      /* records overwritten before they were read, or torn */
    uint64_t garbage;   /* committed records with an impossible id */
    uint64_t resyncs;   /* the ring head moved backwards or jumped: tail resynchronised */
    uint64_t drains;    /* drain calls */
    uint64_t rewalks;   /* full maple-tree walks of a followed process after lost events,
                           an inconsistent view or an untracked change (brk, exec) */
    uint64_t refreshes; /* incremental view updates (followed process touched) */
    uint64_t last_drain_ns;
    uint64_t tamper;    /* stub or call-site bytes found changed (restored) */
    uint32_t detours;   /* functions patched */
    bool task_verified; /* gs:current_task was checked to be a task on vCPU 0 at start */
    uint32_t ring_records;
    uint64_t ring_gva;           /* where the ring is */
    uint64_t stub_gva, stub_len; /* first stub and the span of all stubs */
} hvi_linux_indetour_stats;

/*
 * Install the detours (guest paused while writing; the translated-code cache is flushed).
 * Needs a discovered Linux kernel with offsets (HVI_E_STATE), the symbols current_task,
 * _stext/_etext, and a writable zeroed region for the ring (HVI_E_NOT_FOUND naming what is
 * missing). A function whose entry is not the 5-byte ftrace NOP is skipped (logged); when
 * none can be patched: HVI_E_UNSUPPORTED.
 */
hvi_status hvi_linux_indetour_start(hvi_engine *e, const hvi_linux_indetour_opts *opts);
/* Remove them: the call sites get their NOPs back at once; the stubs and the ring are restored
 * once no vCPU runs in a stub and no task's stack points into one: HVI_E_BUSY until then (let
 * the guest run a little and call again). hvi_detach() does the same. */
hvi_status hvi_linux_indetour_stop(hvi_engine *e);
bool hvi_linux_indetour_active(hvi_engine *e);
/* Read the ring now; *n (optional) gets the number of events consumed. Also run by the timer. */
hvi_status hvi_linux_indetour_drain(hvi_engine *e, size_t *n);
/* Called for every event while draining (NULL to stop). */
hvi_status hvi_linux_indetour_set_callback(hvi_engine *e, hvi_linux_vma_event_cb cb, void *ctx);
hvi_status hvi_linux_indetour_stats_get(hvi_engine *e, hvi_linux_indetour_stats *out);

/* Keep a VMA view of process `pid` (seeded by one maple-tree walk, then kept by the events). */
hvi_status hvi_linux_vma_follow(hvi_engine *e, int32_t pid);
/* The engine's current view of a followed process (HVI_E_NOT_FOUND if not followed), in the
 * format of hvi_linux_list_vmas (free with hvi_linux_free). Drain first for an up-to-date view. */
hvi_status hvi_linux_vma_view(hvi_engine *e, int32_t pid, hvi_linux_vma **out, size_t *count);

#ifdef __cplusplus
}
#endif

#endif /* HVI_LINUX_INDETOUR_H */
