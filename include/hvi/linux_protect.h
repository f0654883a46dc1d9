/*
 * hvi — Linux kernel protection on a discovered guest (src/guest/linux/lix_protect*.c).
 *
 * hvi_linux_protect_start() takes shadows of the protected kernel objects and registers a timer
 * check; which checks run is decided at every tick from the engine options (HVI_OPT_KM_TEXT,
 * _IDT, _SYSCALL_TABLE, _VDSO, _MODULES, _CR, _MSR, _UNPACK, HVI_OPT_CREDS, and
 * HVI_OPT_INTEGRITY for the cross-view hidden module/process checks), so each can be switched at
 * run time. With _IDT on at start, a few IDT gates also get write hooks (watchpoints on QEMU)
 * whose alerts name the writer (RIP, symbol, module, process). A violation is
 * an alert; without HVI_OPT_LOG_ONLY the changed memory is restored from the shadow (deny).
 * docs/linux-protection.md says which mechanism catches what and the limits.
 */
#ifndef HVI_LINUX_PROTECT_H
#define HVI_LINUX_PROTECT_H

#include <stddef.h>
#include <stdint.h>

#include "hvi.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Start protecting (the Linux kernel must have been found by hvi_new_guest). HVI_E_STATE when
 * it was not; idempotent. The engine's timer (hvi_timer_tick) runs the checks. */
hvi_status hvi_linux_protect_start(hvi_engine *e);

/* Run every enabled check now; returns the number of violations found (0 when none). */
size_t hvi_linux_protect_check(hvi_engine *e);

/* Counters for tests and benchmarks. */
typedef struct hvi_linux_protect_stats {
    uint64_t checks;          /* completed check rounds */
    uint64_t violations;      /* alerts raised */
    uint64_t restored;        /* denials: writes undone from the shadow */
    uint64_t bytes_compared;  /* in the last round */
    uint32_t regions;         /* shadowed memory regions */
    uint64_t last_check_ns;   /* duration of the last round */
    uint32_t watches;         /* write hooks (watchpoints) placed at start: IDT gates, or with
                                 HVI_CAP_WATCH_RANGE one per protected region (+ IDTR alias) */
    uint64_t watch_hits;      /* writes caught by them (alerts with the writer's RIP) */
    uint32_t unpack_pages;    /* vmalloc/module-area pages tracked by the unpacker check */
    uint32_t unpack_tables;   /* page-table pages it read in its last round */
    uint64_t last_unpack_ns;  /* duration of its last round (part of last_check_ns) */
    uint64_t hook_stops;      /* watchpoint stops on the region write hooks (HVI_CAP_WATCH_RANGE),
                                 alerts or not: any write into a hooked range stops the vCPU */
} hvi_linux_protect_stats;
hvi_status hvi_linux_protect_stats_get(hvi_engine *e, hvi_linux_protect_stats *out);

#ifdef __cplusplus
}
#endif

#endif
