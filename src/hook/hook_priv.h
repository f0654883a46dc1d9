/*
 * hvi hook layer — private state shared by the files of src/hook.
 */
#ifndef HVI_HOOK_PRIV_H
#define HVI_HOOK_PRIV_H

#include "core/engine.h"
#include "hvi/hook.h"

enum hook_kind { HOOK_GPA = 1, HOOK_REG = 2, HOOK_DETOUR = 3, HOOK_PT = 4, HOOK_GVA = 5, HOOK_VAS = 6 };

struct pt_state;
struct vas_state;

#define HOOK_BUCKETS 1024u
#define HOOK_WATCH_PIECE 8u
#define HOOK_MAX_LEN (1u << 20)
#define HOOK_MAX_WATCH_LEN 4096u

struct hvi_hook {
    uint32_t kind;
    bool removed;        /* unlinked; freed when the current dispatch ends */
    bool watch;          /* GPA hook placed as write watchpoints (no EPT) */
    bool internal;       /* owned by another hook (page-table levels, GVA hook's GPA hook) */
    struct hvi_hook *next;     /* all live hooks / pending-free list */
    /* GPA */
    hvi_gpa gpa;
    hvi_gva gva;
    uint32_t len;
    uint32_t access;
    hvi_gpa_hook_cb cb;
    uint8_t *shadow;     /* watch strategy: last accepted content of the range */
    bool whole;          /* watch strategy: one watchpoint over the range (HVI_CAP_WATCH_RANGE) */
    uint64_t hits;       /* watch strategy: events that matched this hook */
    hvi_gpa *pages;      /* multi-page watch range (hvi_hook_watch_range_add): frame of each page */
    /* register */
    uint32_t rkind, rindex;
    hvi_reg_hook_cb rcb;
    /* detour */
    hvi_detour_cb dcb;
    /* page-table / GVA hooks */
    struct pt_state *pt;
    struct vas_state *vas;
    void *ctx;
};

struct hook_frame {
    uint64_t gfn;
    uint32_t orig_rights;  /* rights before the first hook */
    uint32_t rights;       /* rights currently written */
    bool stale;            /* the glue refused the last rights update */
    struct hvi_hook **hooks;
    size_t count, cap;
    struct hook_frame *next;
};

struct watch_piece {
    hvi_gva gva;          /* 8-byte aligned piece, or a whole hooked range */
    uint32_t len;
    uint32_t refs;
    struct watch_piece *next;
};

struct hvi_hook_state {
    struct hook_frame *buckets[HOOK_BUCKETS];
    struct watch_piece *watch[HOOK_BUCKETS];
    struct hvi_hook *live;      /* every live hook */
    struct hvi_hook *dead;      /* removed during a dispatch, freed after it */
    size_t hooks, frames;
    size_t stale;               /* frames / watch pieces whose glue update failed */
    uint32_t depth;             /* dispatch nesting */
    struct hvi_hook_object *objects;
};

struct hvi_hook_state *hvi_hook_state_get(hvi_engine *e);
struct hook_frame *hvi_hook_frame_find(struct hvi_hook_state *s, uint64_t gfn);
void hvi_hook_unlink_live(struct hvi_hook_state *s, struct hvi_hook *h);
/* Free or defer-free a removed hook. */
void hvi_hook_retire(struct hvi_hook_state *s, struct hvi_hook *h);
/* Free deferred hooks once no dispatch runs. */
void hvi_hook_reap(struct hvi_hook_state *s);

/* Event handlers (dispatch.c, reg.c). */
hvi_status hvi_hook_on_ept(hvi_engine *e, const hvi_event *ev, hvi_event_reply *r, void *ctx);
hvi_status hvi_hook_on_watch(hvi_engine *e, const hvi_event *ev, hvi_event_reply *r, void *ctx);
hvi_status hvi_hook_on_reg(hvi_engine *e, const hvi_event *ev, hvi_event_reply *r, void *ctx);
hvi_status hvi_hook_on_bp(hvi_engine *e, const hvi_event *ev, hvi_event_reply *r, void *ctx);

/* Watchpoint strategy (watch.c): place a one-page write hook's watchpoints and shadow; place or
 * remove the watchpoints of a watch hook (all or nothing when adding); retry stale watchpoints of
 * one bucket. */
hvi_status hvi_hook_add_watch(hvi_engine *e, struct hvi_hook_state *s, struct hvi_hook *h);
hvi_status hvi_hook_watch_apply(hvi_engine *e, struct hvi_hook_state *s, struct hvi_hook *h,
                                bool add);
hvi_status hvi_hook_watch_sync(hvi_engine *e, struct hvi_hook_state *s, uint32_t bucket);

/* Hook objects (object.c): detach empties them (hooks removed), engine free frees them. */
void hvi_hook_objects_release(hvi_engine *e, struct hvi_hook_state *s, bool free_them);

/* Removal of page-table / GVA hooks (pt.c). */
hvi_status hvi_hook_pt_remove(hvi_engine *e, struct hvi_hook *h);
void hvi_vasmon_remove(hvi_engine *e, struct hvi_hook *h);
void hvi_vasmon_free(struct vas_state *v);
hvi_status hvi_hook_on_step(hvi_engine *e, const hvi_event *ev, hvi_event_reply *r, void *ctx);

/* Removal of register hooks / detours (reg.c). */
hvi_status hvi_hook_reg_remove(hvi_engine *e, struct hvi_hook *h);

/* Strictest of two actions: DENY > RETRY > ALLOW. */
static inline uint32_t hvi_hook_strictest(uint32_t a, uint32_t b)
{
    if (a == HVI_ACTION_DENY || b == HVI_ACTION_DENY)
        return HVI_ACTION_DENY;
    if (a == HVI_ACTION_RETRY || b == HVI_ACTION_RETRY)
        return HVI_ACTION_RETRY;
    return HVI_ACTION_ALLOW;
}

#endif
