/*
 * hvi — Linux guest events by detours (src/guest/linux/lix_events.c).
 *
 * hvi_linux_events_start() detours the kernel functions that mark process creation, exec, exit,
 * module load and module unload (names from the selected CAMI entry's hooks list, resolved
 * through kallsyms: with a non-empty list an event whose function is not listed is not detoured;
 * without a list, the kallsyms fallback; see docs/linux-guest.md "Events"), seeds the engine's process and module
 * lists with one walk, and from then on keeps them in sync from the events alone. The events are
 * recorded by in-guest detours into a ring the engine drains (include/hvi/linux_indetour.h; no
 * VM exit per event); a hypervisor breakpoint (hvi_detour_add) is used only for exec blocking
 * and for an event the ring cannot carry (hvi_linux_events_use_ring(e, false): for all).
 * Each event becomes an hvi_alert of kind "event" (process-create/-exec/-exit,
 * module-load/-unload, exec-blocked) delivered through the alert callback. Which events are
 * reported and which breakpoint is placed follows the options at run time:
 *   HVI_OPT_EVENT_PROCESS  wake_up_new_task, begin_new_exec, do_exit
 *   HVI_OPT_EVENT_MODULE   module load / unload
 *   HVI_OPT_BLOCK_EXEC     begin_new_exec (also without EVENT_PROCESS): an exec whose path is in
 *                          the block list fails in the guest with -EACCES before the point of no
 *                          return (an exec-blocked alert, action "denied").
 * Turning an option on again re-seeds the list it governs (events were missed meanwhile).
 */
#ifndef HVI_LINUX_EVENTS_H
#define HVI_LINUX_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi.h"
#include "linux.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Start (the Linux kernel must have been found with a CAMI entry or offsets: HVI_E_STATE
 * otherwise; HVI_E_UNSUPPORTED without hypervisor breakpoints). Idempotent. hvi_detach()
 * removes every detour. */
hvi_status hvi_linux_events_start(hvi_engine *e);
/* Record the events with in-guest detours and a ring (default on; docs/linux-indetour.md) or,
 * off, with hypervisor breakpoints only. Before hvi_linux_events_start() (HVI_E_STATE after).
 * With the ring, the only breakpoint is begin_new_exec's, placed while HVI_OPT_BLOCK_EXEC is set
 * and the block list is not empty. */
hvi_status hvi_linux_events_use_ring(hvi_engine *e, bool on);
/* Read the ring now (events are otherwise delivered by the engine timer, hvi_timer_tick());
 * the list functions below drain first. HVI_OK when nothing is recorded in the ring. */
hvi_status hvi_linux_events_drain(hvi_engine *e);
/* Remove every detour and forget the lists. */
hvi_status hvi_linux_events_stop(hvi_engine *e);

/* Exec block list: an exec is refused when the path it was asked for (bprm->filename, e.g.
 * "/bin/uname"), its script interpreter (bprm->interp) or the resolved binary's path equals an
 * entry. Paths are absolute, at most 255 bytes; at most 64 entries (HVI_E_LIMIT). Blocking needs
 * HVI_OPT_BLOCK_EXEC. */
hvi_status hvi_linux_block_exec_add(hvi_engine *e, const char *path);
void hvi_linux_block_exec_clear(hvi_engine *e);

/* The engine's own lists (kept by the events; no walk of the guest's lists). Processes are
 * thread-group leaders in pid order; `comm` is re-read from each task_struct when the list is
 * asked for (prctl/kthread renames), uid/gid/cmdline are not filled. Free with
 * hvi_linux_free(). HVI_E_STATE before hvi_linux_events_start(). */
hvi_status hvi_linux_events_processes(hvi_engine *e, hvi_linux_process **out, size_t *count);
hvi_status hvi_linux_events_modules(hvi_engine *e, hvi_linux_module **out, size_t *count);

typedef struct hvi_linux_events_stats {
    uint64_t events;                         /* ring records + breakpoint events handled */
    uint64_t creates, execs, exits, threads; /* threads: thread creations/exits (no alert) */
    uint64_t module_loads, module_unloads;
    uint64_t blocked;            /* execs refused */
    uint64_t bad;                /* hits whose arguments could not be decoded (hostile/garbage) */
    uint64_t reseeds;            /* list walks (start, option re-enabled) */
    uint64_t stepless;           /* breakpoint hits resumed without a step-over (past the no-op
                                    prefix, or into the in-guest stub) */
    uint32_t detours;            /* breakpoints + in-guest detours of enabled events now */
    uint32_t processes, modules; /* sizes of the lists */
    uint32_t breakpoints;        /* hypervisor breakpoints placed now */
    uint32_t in_guest;           /* events recorded by in-guest detours (ring) now */
    uint64_t breakpoint_hits;    /* breakpoint stops handled */
    uint64_t ring_records;       /* events taken from the in-guest ring */
    uint64_t ring_reseeds;       /* list walks after records were lost in the ring */
    uint32_t watchpoints;        /* 1 while exec blocking uses the exec stub's doorbell (a write
                                    watchpoint) instead of a breakpoint */
    uint64_t doorbell_hits;      /* doorbell watchpoint stops handled (exec decisions) */
} hvi_linux_events_stats;
hvi_status hvi_linux_events_stats_get(hvi_engine *e, hvi_linux_events_stats *out);

/* Name of the kernel function detoured for `what` ("create", "exec", "exit", "module-load",
 * "module-unload"), "" when none was resolved; NULL for an unknown `what`. */
const char *hvi_linux_events_function(hvi_engine *e, const char *what);

#ifdef __cplusplus
}
#endif

#endif
