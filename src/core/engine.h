/*
 * hvi core — the engine object every layer shares (private header).
 *
 * Layers keep their own state behind an opaque pointer slot below and
 * create it lazily on first use; they register a cleanup with
 * hvi_engine_on_free() so the core never has to know them. Events reach a
 * layer through hvi_engine_add_handler(): the core calls every handler
 * registered for an event type, in registration order, and the strictest
 * decision wins (DENY > RETRY > ALLOW).
 */
#ifndef HVI_CORE_ENGINE_H
#define HVI_CORE_ENGINE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi/alert.h"
#include "hvi/glue.h"
#include "hvi/hvi.h"
#include "hvi/mem.h"

/* Layer state, each owned by its folder. */
struct hvi_mem_state;
struct hvi_decode_state;
struct hvi_hook_state;
struct hvi_protect_state;
struct hvi_cami_state;
struct hvi_lix_state;
struct lixp_state;
struct lixe_state;
struct lixd_state;
struct lixx_state;
struct win_state;

typedef hvi_status (*hvi_event_handler)(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply,
                                        void *ctx);
typedef void (*hvi_timer_handler)(hvi_engine *e, void *ctx);
typedef void (*hvi_cleanup_fn)(hvi_engine *e, void *ctx);
/* Called by hvi_detach(); returns HVI_OK when the layer is fully removed, HVI_E_BUSY to defer. */
typedef hvi_status (*hvi_detach_fn)(hvi_engine *e, void *ctx);
/* Called when options change: old and new option sets. */
typedef void (*hvi_options_fn)(hvi_engine *e, uint64_t old_opts, uint64_t new_opts, void *ctx);

#define HVI_MAX_HANDLERS 8
#define HVI_MAX_HOOKS_OF_KIND 16
#define HVI_ALERT_QUEUE_MAX 4096

struct hvi_handler_slot {
    hvi_event_handler fn;
    void *ctx;
};

struct hvi_guest_facts {
    bool attached;            /* hvi_new_guest() succeeded */
    uint32_t os;              /* hvi_os_hint */
    hvi_paging_mode paging;
    uint64_t kernel_cr3;
    uint32_t vcpus;
    char os_version[128];     /* e.g. the Linux banner's release */
};

struct hvi_engine {
    hvi_glue glue;
    uint64_t options;

    hvi_alert_cb alert_cb;
    void *alert_user;
    hvi_log_cb log_cb;
    void *log_user;
    int log_level;
    char errmsg[512];

    struct hvi_guest_facts guest;

    /* support data as given (owned copy); parsed form lives in `cami` */
    void *support;
    size_t support_len;

    /* layer state */
    struct hvi_mem_state *mem;
    struct hvi_decode_state *decode;
    struct hvi_hook_state *hook;
    struct hvi_protect_state *protect;
    struct hvi_cami_state *cami;
    struct hvi_lix_state *lix;
    struct lixp_state *lixp;      /* guest/linux kernel protection (lix_protect.c) */
    struct lixe_state *lixe;      /* guest/linux events by detours (lix_events.c) */
    struct lixd_state *lixd;      /* guest/linux in-guest detours in slack (lix_indetour.c) */
    struct lixx_state *lixx;      /* guest/linux user-mode exploit protection (lix_exploit.c) */
    struct lixa_state *lixa;      /* guest/linux agents (lix_agent.c) */
    struct win_state *win;        /* guest/windows (src/guest/windows) */

    /* event dispatch */
    struct hvi_handler_slot handlers[HVI_EV_TYPE_MAX][HVI_MAX_HANDLERS];
    struct {
        hvi_timer_handler fn;
        void *ctx;
    } timers[HVI_MAX_HOOKS_OF_KIND];
    struct {
        hvi_cleanup_fn fn;
        void *ctx;
    } cleanups[HVI_MAX_HOOKS_OF_KIND];
    struct {
        hvi_detach_fn fn;
        void *ctx;
        bool done;
    } detachers[HVI_MAX_HOOKS_OF_KIND];
    struct {
        hvi_options_fn fn;
        void *ctx;
    } option_watchers[HVI_MAX_HOOKS_OF_KIND];

    /* alerts queued during an event, delivered when it returns */
    hvi_alert *alerts;
    size_t alert_count, alert_cap;
    uint64_t alerts_dropped;
    uint32_t dispatch_depth;
    uint32_t current_vcpu;    /* the seed's gVcpu: the vCPU of the event being handled */
    bool detaching;
};

/* Register layer callbacks. Return HVI_E_LIMIT when the fixed table is full. */
hvi_status hvi_engine_add_handler(hvi_engine *e, uint32_t ev_type, hvi_event_handler fn, void *ctx);
hvi_status hvi_engine_remove_handler(hvi_engine *e, uint32_t ev_type, hvi_event_handler fn, void *ctx);
hvi_status hvi_engine_add_timer(hvi_engine *e, hvi_timer_handler fn, void *ctx);
hvi_status hvi_engine_on_free(hvi_engine *e, hvi_cleanup_fn fn, void *ctx);
hvi_status hvi_engine_on_detach(hvi_engine *e, hvi_detach_fn fn, void *ctx);
hvi_status hvi_engine_on_options(hvi_engine *e, hvi_options_fn fn, void *ctx);

/* Record a human-readable failure message (kept per engine) and return `st`. */
hvi_status hvi_fail(hvi_engine *e, hvi_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void hvi_log(hvi_engine *e, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The engine changed guest code through the RAM mapping (a patch, a restore, a stub): tell a
 * backend that caches translated code (glue code_written, optional) so it drops what it
 * translated from the old bytes. QEMU/TCG does not see writes to its RAM file: without this a
 * restored kernel text keeps executing the attacker's bytes. A no-op for other backends. */
void hvi_code_written(hvi_engine *e, hvi_gva gva, const void *bytes, uint32_t len);

/* Queue an alert; size and time_ns are filled in when zero. Delivered after the current event. */
void hvi_alert_emit(hvi_engine *e, const hvi_alert *alert);
/* Deliver queued alerts now (the core calls this at the end of every event and tick). */
void hvi_alert_flush(hvi_engine *e);
/* Helper to start an alert record with type, vcpu and zeroed fields. */
void hvi_alert_init(hvi_alert *a, uint32_t type, uint32_t vcpu);

uint64_t hvi_now_ns(void);

/* Bounded string copy that always terminates (dst_len > 0). */
void hvi_strlcpy(char *dst, const char *src, size_t dst_len);

#endif /* HVI_CORE_ENGINE_H */
