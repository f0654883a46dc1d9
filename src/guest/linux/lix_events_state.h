/*
 * hvi guest/linux — events by detours: the state shared by lix_events.c (resolution, detour
 * placement, breakpoint callbacks, the API) and lix_events_ring.c (records from the in-guest
 * ring, exec blocking by the exec stub's doorbell). Private to those two files.
 */
#ifndef HVI_GUEST_LIX_EVENTS_STATE_H
#define HVI_GUEST_LIX_EVENTS_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "guest/linux/lix_events.h"
#include "guest/linux/lix_indetour.h"
#include "hvi/hook.h"
#include "hvi/linux_events.h"

#define LIXE_MAX_BLOCKS 64u
#define LIXE_EACCES 13

enum { EV_CREATE, EV_EXEC, EV_EXIT, EV_MLOAD, EV_MUNLOAD, EV_N };

struct lixe_slot {
    hvi_hook *hook;
    uint64_t addr; /* resolved function, 0 when none */
    char fn[64];
    bool from_cami; /* the name is in the selected CAMI entry's hooks list */
    uint8_t skip;   /* bytes of leading no-op instructions (endbr64, the ftrace nop) */
    uint8_t nops[16];
    int ev;
};

struct lixe_state {
    bool started, registered;
    struct lixe_lists l;
    bool procs_valid, mods_valid;
    struct lixe_binprm bprm;
    bool have_bprm;
    uint64_t pcpu_current;
    bool have_current;
    char blocks[LIXE_MAX_BLOCKS][LIXE_PATH];
    size_t nblocks;
    struct lixe_slot slot[EV_N];
    hvi_linux_events_stats st;
    bool no_ring;      /* hvi_linux_events_use_ring(e, false): breakpoints for everything */
    uint32_t ring;     /* bit (1 << EV_*) per event recorded by an in-guest detour */
    bool own_indetour; /* the in-guest detours were started for the events: stop them too */
    uint64_t doorbell; /* exec blocking by the exec stub's doorbell: the watched qword */
    bool watching;     /* ... and the write watchpoint on it is set */
};

struct lixe_state *lixe_state_of(hvi_engine *e);
/* An event line or alert through the alert path. */
void lixe_emit(hvi_engine *e, uint32_t type, uint32_t action, uint32_t vcpu,
               const struct lixe_slot *sl, uint64_t gva, const char *object, int32_t pid,
               const char *comm, const char *fmt, ...) __attribute__((format(printf, 10, 11)));
/* An undecodable hit: counted and logged. */
void lixe_bad(hvi_engine *e, struct lixe_state *s, int ev, hvi_status st, uint64_t arg);
/* The block-list entry an exec matches, or NULL. */
const char *lixe_block_rule(const struct lixe_state *s, const struct lixe_exec *x);
/* A decoded module load/unload: the module list, the counters and the event line. */
void lixe_module_event(hvi_engine *e, struct lixe_state *s, bool load, uint32_t vcpu,
                       const struct lixe_mod *m, const struct lixe_proc *p);

/* lix_events_ring.c: one ring record of event `ev` (EV_*), its option on. */
void lixe_ring_event(hvi_engine *e, struct lixe_state *s, int ev, const struct lixd_record *r);
/* Watch the exec stub's doorbell (on) or stop watching it; whether it is watched now. */
bool lixe_doorbell_watch(hvi_engine *e, struct lixe_state *s, bool on);
/* HVI_EV_WATCHPOINT handler: the doorbell rang, answer the asking execs. */
hvi_status lixe_on_doorbell(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply, void *ctx);

#endif
