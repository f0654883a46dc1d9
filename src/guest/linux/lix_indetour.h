/*
 * hvi guest/linux — in-guest detours: the pure parts (stub generation, ring parsing), private to
 * the layer and its unit tests. The engine side is lix_indetour.c.
 *
 * Ring layout in guest memory (all little-endian):
 *   +0                head: u64, the next slot index to claim (the stubs `lock xadd` it)
 *   +64 + 64 * i      record i (i = index & (nrec - 1)):
 *       +0  seq   u64  index + 1 once committed; 0 while being written
 *       +8  id    u64  event id (hvi_lixd_event)
 *       +16 task  u64  gs:current_task at the call
 *       +24 rdi, +32 rsi, +40 rdx, +48 rcx,
 *       +56 r8, or the qword at [rdi + arg0_load], or the qword at [task + task_load]
 *       +64 str  char[64]  record format 2: a NUL-terminated copy (at most 63 bytes, read byte
 *                          by byte up to the NUL, never past it) of the string at [rdi + str_off]
 *                          (inline, e.g. module->name) or at *[rdi + str_off] (str_deref, e.g.
 *                          bprm->filename), taken at the call; "" when the stub copies none
 * Format 1 (64-byte records, no str) was the first version; LIXD_REC_FORMAT names the current.
 */
#ifndef HVI_GUEST_LIX_INDETOUR_H
#define HVI_GUEST_LIX_INDETOUR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi/hvi.h"
#include "hvi/status.h"

#define LIXD_HDR_SIZE 64u
#define LIXD_REC_FORMAT 2u
#define LIXD_REC_SIZE 128u
#define LIXD_REC_SHIFT 7u
#define LIXD_STR_OFF 64u /* the string capture inside a record */
#define LIXD_STR_LEN 64u /* including the terminating NUL */
#define LIXD_STUB_MAX 256u
#define LIXD_MAX_STALL 32u /* drains a claimed-but-uncommitted record may block the ring */

struct lixd_stub_params {
    uint64_t stub_va;    /* where the stub will sit */
    uint64_t head_va;    /* the ring head (u64) */
    uint64_t records_va; /* record 0 */
    uint32_t mask;       /* records - 1, records a power of two */
    uint32_t event_id;
    uint32_t current_task; /* per-CPU offset of current_task (gs-relative), < 2^31 */
    uint32_t arg0_load;    /* non-zero: the r8 slot gets the qword at [rdi + arg0_load] instead
                              (read at the call: e.g. a new task's pid/tgid), < 2^31 */
    uint32_t task_load;    /* non-zero (and no arg0_load): the r8 slot gets the qword at
                              [current task + task_load] (e.g. its pid/tgid), < 2^31 */
    bool str;              /* copy a string into the record's str area (see the layout) */
    bool str_deref;        /* the string is at *[rdi + str_off] rather than at rdi + str_off */
    uint32_t str_off;      /* < 2^31 */
    /* Ask the engine (exec blocking without a breakpoint): once the record is written, the stub
     * sets its rcx slot (+48) to LIXD_VERDICT_ASK, stores the record's address into the doorbell
     * (a write the engine watches: the vCPU stops there), commits the record, and returns
     * -EACCES to the detoured function's caller when the engine has put LIXD_VERDICT_DENY into
     * that slot meanwhile; anything else returns into the function as usual. */
    bool ask;
    uint64_t doorbell_va; /* with ask: the watched qword */
};

#define LIXD_DOORBELL_OFF 8u   /* the doorbell qword in the ring header */
#define LIXD_VERDICT_SLOT 3u   /* args[] index of the verdict (the rcx slot, record +48) */
#define LIXD_VERDICT_ASK 1u    /* written by the stub before it rings */
#define LIXD_VERDICT_ALLOW 2u  /* written by the engine */
#define LIXD_VERDICT_DENY 3u   /* written by the engine: the function returns -EACCES */
#define LIXD_EACCES 13

/*
 * Emit the stub for one detoured function into buf (cap >= LIXD_STUB_MAX). The function's entry
 * NOP5 becomes `call stub`, so the stub ends with `ret` back into the function (the NOP it
 * replaced needs no re-execution). Saves and restores rax, rcx, rdx (and rsi, rdi with a string
 * copy); writes the record as in the layout above. Returns the length, 0 when an address is out of
 * rel32 reach or a parameter is invalid.
 */
size_t lixd_stub_emit(const struct lixd_stub_params *p, uint8_t *buf, size_t cap);

/* `call rel32` from `site` to `target` (5 bytes); false when out of reach. */
bool lixd_call_emit(uint64_t site, uint64_t target, uint8_t out[5]);

/* ---- ring parser (hostile input: anything may be in the guest's ring) ---- */

struct lixd_record {
    uint64_t seq;
    uint64_t id;
    uint64_t task;
    uint64_t args[5];
    char str[LIXD_STR_LEN]; /* as read from the guest: not necessarily terminated */
};

/* Reads [off, off+len) of the ring region (offset from the head); fails whole. */
typedef hvi_status (*lixd_read_fn)(void *ctx, uint64_t off, void *buf, size_t len);
typedef void (*lixd_rec_fn)(const struct lixd_record *r, void *ctx);

struct lixd_ring {
    uint32_t nrec; /* power of two */
    uint64_t tail; /* next index to consume */
    uint64_t lost, garbage, resyncs, consumed;
    uint32_t stall;  /* consecutive drains blocked on the same uncommitted record */
    bool lost_since; /* set when anything was lost; the caller clears it after a rewalk */
};

/*
 * Consume committed records from r->tail up to the head, at most `budget`, in order. A record
 * whose seq is not index + 1 yet blocks (a writer is between its claim and its commit) for up to
 * LIXD_MAX_STALL drains, then counts as lost; a seq from a later lap means it was overwritten
 * (lost); a seq that changed while being read is torn (lost); an id >= id_max is garbage. A head
 * behind the tail or more than nrec ahead resynchronises (lost). Returns the number of records
 * passed to cb; a read failure stops the drain with *st set.
 */
size_t lixd_ring_drain(struct lixd_ring *r, lixd_read_fn rd, void *rctx, uint32_t id_max,
                       size_t budget, lixd_rec_fn cb, void *cctx, hvi_status *st);

/* ---- for lix_events.c (process and module events through the ring) ---- */

/* Start the in-guest detours with `events` (bits 1 << hvi_lixd_event); when they already run,
 * the missing ones are added; bprm_filename = linux_binprm.filename offset for EXEC. */
hvi_status lixd_events_start(hvi_engine *e, uint32_t events, uint32_t bprm_filename);
/* Bits of the events whose detour is in place now (0 when not active). */
uint32_t lixd_events_installed(hvi_engine *e);
/* The call site (the former NOP5) and the stub of event `id`'s detour; false when none. */
bool lixd_site_stub(hvi_engine *e, uint32_t id, uint64_t *site, uint64_t *stub);
/* The doorbell of the exec stub (it asks before returning, see lixd_stub_params.ask); false
 * when no such stub is in place. */
bool lixd_doorbell(hvi_engine *e, uint64_t *gva);
/* The doorbell rang (the ringing vCPUs are stopped after their store): every exec record among
 * the last LIXD_ASK_SCAN claimed slots that is still asking (uncommitted, verdict ASK) gets
 * LIXD_VERDICT_DENY when `deny` says so, else LIXD_VERDICT_ALLOW. Several vCPUs may have rung
 * at once and QEMU names one: all are answered. Returns how many were answered. */
#define LIXD_ASK_SCAN 64u
typedef bool (*lixd_deny_fn)(hvi_engine *e, const struct lixd_record *r, void *ctx);
uint32_t lixd_answer(hvi_engine *e, lixd_deny_fn deny, void *ctx);
/* Before the doorbell is watched, with the guest paused: committed exec records still saying
 * ASK (execs that ran while nobody watched) get ALLOW, so that a slot being claimed again (seq
 * 0, its other fields not yet rewritten) never shows lixd_answer a stale ASK with a stale bprm.
 * Returns how many. */
uint32_t lixd_settle_asks(hvi_engine *e);

#endif
