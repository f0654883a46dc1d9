/*
 * hvi guest/linux — in-guest detours: the engine-side state shared by lix_indetour.c (install,
 * removal, the API) and lix_indetour_drain.c (draining the ring, the VMA view of followed
 * processes). Private to those two files.
 */
#ifndef HVI_GUEST_LIX_INDETOUR_STATE_H
#define HVI_GUEST_LIX_INDETOUR_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/linux/lix.h"
#include "guest/linux/lix_indetour.h"
#include "hvi/linux_indetour.h"

#define LIXD_NDET 13u
#define LIXD_MAX_PROCS 16u
#define LIXD_DRAIN_BUDGET (1u << 20)

enum { PH_OFF, PH_ACTIVE, PH_SITES_OFF };

struct lixd_detour {
    uint32_t id;
    const char *func;
    uint64_t site;
    uint8_t orig[5], patch[5];
    uint64_t stub;
    uint32_t stub_len;
    uint8_t stub_bytes[LIXD_STUB_MAX];
    uint8_t stub_orig[LIXD_STUB_MAX];
};

struct lixd_ent {
    uint64_t vma, start, end, flags, pgoff, file;
};

struct lixd_proc {
    int32_t pid;
    uint64_t task, mm;
    struct lixd_ent *v;
    size_t n, cap;
    bool dirty, need_walk;
};

struct lixd_state {
    struct lix_kernel *k;
    uint32_t vma_mm_off;
    uint32_t current_task;
    uint64_t ring_gva;
    uint32_t ring_len;
    uint8_t *ring_orig;
    struct lixd_ring ring;
    struct lixd_detour det[LIXD_NDET];
    uint32_t ndet;
    uint64_t stub_lo, stub_hi;
    int phase;
    uint64_t sites_off_ns;
    hvi_linux_vma_event_cb cb;
    void *cb_ctx;
    struct lixd_proc procs[LIXD_MAX_PROCS];
    uint32_t nprocs;
    hvi_linux_indetour_stats stats;
    bool registered;
    uint32_t bprm_filename; /* linux_binprm.filename (from lix_events), 0 = unknown: no EXEC */
};

/* Pause / resume the guest where the backend can (a no-op on one that stops it for every call). */
hvi_status lixd_pause(hvi_engine *e);
void lixd_resume(hvi_engine *e);
/* Make a code-caching backend drop what it translated from [gva, gva+len), now `bytes`. */
void lixd_code_sync(hvi_engine *e, uint64_t gva, const void *bytes, uint32_t len);
/* Free the followed processes' views (lix_indetour_drain.c). */
void lixd_procs_free(struct lixd_state *s);

#endif
