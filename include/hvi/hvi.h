/*
 * hvi — public API: the only way from an integrator (the hvi CLI, a
 * hypervisor's management daemon) up into the engine.
 *
 * Life cycle:
 *   hvi_engine_new(glue)          -> engine bound to one guest's backend
 *   hvi_new_guest(engine, params) -> load CAMI support data, find the OS, place hooks
 *   hvi_handle_event(...)         -> called by the backend for every exit (EPT, CR, MSR,
 *                                    breakpoint, watchpoint, step, VMCALL)
 *   hvi_timer_tick(...)           -> about once a second
 *   hvi_detach(...)               -> remove everything; may be deferred (HVI_E_BUSY)
 *   hvi_engine_free(...)
 *
 * Threading: one engine is driven by one thread at a time; the backend
 * serializes events (the seed's "one event at a time" model).
 */
#ifndef HVI_HVI_H
#define HVI_HVI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "glue.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HVI_VERSION_MAJOR 0
#define HVI_VERSION_MINOR 1
#define HVI_VERSION_PATCH 0
#define HVI_VERSION_STRING "0.1.0"

typedef struct hvi_engine hvi_engine;

/* Protection and event options; each can be switched at run time with hvi_options_set(). */
enum hvi_option {
    HVI_OPT_KM_TEXT = 1ull << 0,          /* kernel text and read-only data */
    HVI_OPT_KM_IDT = 1ull << 1,           /* interrupt descriptor table (and IDTR) */
    HVI_OPT_KM_SYSCALL_TABLE = 1ull << 2, /* sys_call_table */
    HVI_OPT_KM_VDSO = 1ull << 3,          /* vDSO image */
    HVI_OPT_KM_MODULES = 1ull << 4,       /* loaded modules' text */
    HVI_OPT_KM_MSR = 1ull << 5,           /* syscall-entry MSRs: LSTAR (+ SYSENTER_EIP, Linux) */
    HVI_OPT_KM_CR = 1ull << 6,            /* CR0.WP, CR4.SMEP/SMAP */
    HVI_OPT_CREDS = 1ull << 7,            /* process credentials */
    HVI_OPT_KM_UNPACK = 1ull << 8,        /* execution of kernel memory written after start */
    HVI_OPT_INTEGRITY = 1ull << 9,        /* hash-checked regions on the timer */
    HVI_OPT_PROC_EXPLOIT = 1ull << 10,    /* user-mode exploit protection of the processes on
                                             the policy (include/hvi/linux_exploit.h) */
    HVI_OPT_EVENT_PROCESS = 1ull << 16,   /* process create/exec/exit events */
    HVI_OPT_EVENT_MODULE = 1ull << 17,    /* module load/unload events */
    HVI_OPT_EVENT_VMA = 1ull << 18,       /* memory map events */
    HVI_OPT_BLOCK_EXEC = 1ull << 19,      /* deny exec of binaries matched by policy */
    HVI_OPT_LOG_ONLY = 1ull << 32,        /* violations are reported but allowed (beta mode) */
};

/* Every protection option above, for "protect everything". */
#define HVI_OPT_ALL_PROTECTION                                                                     \
    (HVI_OPT_KM_TEXT | HVI_OPT_KM_IDT | HVI_OPT_KM_SYSCALL_TABLE | HVI_OPT_KM_VDSO |             \
     HVI_OPT_KM_MODULES | HVI_OPT_KM_MSR | HVI_OPT_KM_CR | HVI_OPT_CREDS | HVI_OPT_KM_UNPACK |    \
     HVI_OPT_INTEGRITY)

/* ---- events from the backend ------------------------------------------------------------- */

enum hvi_event_type {
    HVI_EV_EPT_VIOLATION = 1, /* gpa, gva, access (one hvi_ept_rights bit), len if known */
    HVI_EV_BREAKPOINT = 2,    /* gva = linear address of the breakpoint */
    HVI_EV_WATCHPOINT = 3,    /* gva, len; after_access is true (write is already in memory) */
    HVI_EV_SINGLE_STEP = 4,
    HVI_EV_CR_WRITE = 5,      /* index = CR number, old_value, new_value */
    HVI_EV_MSR_WRITE = 6,     /* index = MSR, old_value, new_value */
    HVI_EV_DTR_LOAD = 7,      /* index 0 IDTR / 1 GDTR, new_value = base, len = limit */
    HVI_EV_XCR_WRITE = 8,     /* index = XCR number, old_value, new_value */
    HVI_EV_VMCALL = 9,        /* registers carry the call */
    HVI_EV_TYPE_MAX = 10,
};

typedef struct hvi_event {
    uint32_t size;     /* sizeof(hvi_event) */
    uint32_t type;     /* hvi_event_type */
    uint32_t vcpu;
    uint32_t access;   /* EPT: the attempted access (HVI_EPT_R/W/X) */
    hvi_gpa gpa;
    hvi_gva gva;
    uint32_t len;      /* access or watch length, 0 if unknown */
    uint32_t index;    /* CR / MSR / DTR / XCR number */
    uint64_t old_value;
    uint64_t new_value;
    bool after_access; /* the access already happened (watchpoints) */
    /* Optional instruction bytes at RIP as the backend saw them (the simulator supplies them);
     * NULL means the engine fetches them from guest memory itself. Borrowed for the call. */
    const uint8_t *insn;
    uint32_t insn_len;
} hvi_event;

enum hvi_action {
    HVI_ACTION_ALLOW = 0, /* let the access / register write happen */
    HVI_ACTION_DENY = 1,  /* the access must not take effect; the engine already moved RIP past the
                             instruction or restored memory where needed */
    HVI_ACTION_RETRY = 2, /* re-execute the instruction: the engine changed state (e.g. removed a hook) */
};

typedef struct hvi_event_reply {
    uint32_t action;    /* hvi_action */
    bool regs_changed;  /* the engine wrote registers with set_regs (e.g. skipped a function) */
} hvi_event_reply;

/* ---- engine -------------------------------------------------------------------------------- */

typedef void (*hvi_log_cb)(int level, const char *msg, void *user);
enum hvi_log_level { HVI_LOG_ERROR = 0, HVI_LOG_WARN = 1, HVI_LOG_INFO = 2, HVI_LOG_DEBUG = 3 };

/*
 * hvi_engine_new - create an engine over a backend's glue table (copied).
 * Returns HVI_E_INVAL / HVI_E_VERSION from hvi_glue_check(), HVI_E_NOMEM.
 * The engine owns nothing of the backend; free it with hvi_engine_free().
 */
hvi_status hvi_engine_new(const hvi_glue *glue, hvi_engine **out);

/* hvi_engine_free - release everything; accepts NULL. Does not touch the guest: call
 * hvi_detach() first to remove hooks. */
void hvi_engine_free(hvi_engine *engine);

/* Log sink (default: warnings and errors to stderr). */
void hvi_set_log(hvi_engine *engine, hvi_log_cb cb, int max_level, void *user);

/* The human-readable message of the last failure on this engine ("" if none). Borrowed until
 * the next call on the engine. */
const char *hvi_last_error(const hvi_engine *engine);

/* Alert and event sink. Alerts are queued while an event is handled and delivered when
 * hvi_handle_event() or hvi_timer_tick() returns (asynchronously to the guest). */
void hvi_set_alert_callback(hvi_engine *engine, hvi_alert_cb cb, void *user);

/* Options (OR of hvi_option). Changing them at run time enables or disables the matching
 * protections at once. */
uint64_t hvi_options_get(const hvi_engine *engine);
hvi_status hvi_options_set(hvi_engine *engine, uint64_t options);

enum hvi_os_hint { HVI_OS_UNKNOWN = 0, HVI_OS_WINDOWS = 1, HVI_OS_LINUX = 2 };

typedef struct hvi_guest_params {
    uint32_t size;          /* sizeof(hvi_guest_params) */
    uint32_t os_hint;       /* hvi_os_hint; UNKNOWN = detect */
    uint64_t options;       /* initial options */
    const void *support;    /* CAMI support buffer (copied); may be NULL for memory-only use */
    size_t support_len;
} hvi_guest_params;

/*
 * hvi_new_guest - the guest may now be introspected: validate and load the support data,
 * read the vCPU state (paging mode, kernel CR3) and, when an OS layer is present, find the
 * guest OS and activate the requested protections.
 * Returns HVI_E_FORMAT/HVI_E_VERSION/HVI_E_INTEGRITY for bad support data (engine unchanged),
 * HVI_E_UNSUPPORTED for a guest with no matching support entry, HVI_E_BACKEND for glue
 * failures, HVI_E_STATE when a guest is already attached.
 */
hvi_status hvi_new_guest(hvi_engine *engine, const hvi_guest_params *params);

/* hvi_update_support - replace the CAMI support data while the guest runs. The OS-specific
 * part selected at hvi_new_guest() stays until restart; options and the rest take effect at
 * once. An invalid buffer leaves the old data in force. */
hvi_status hvi_update_support(hvi_engine *engine, const void *buf, size_t len);

/*
 * hvi_handle_event - the backend reports one exit. `reply` receives the engine's decision.
 * Events the engine did not ask for are allowed. Returns HVI_OK or a failure (the reply is
 * then ALLOW so the guest is never stuck).
 */
hvi_status hvi_handle_event(hvi_engine *engine, const hvi_event *event, hvi_event_reply *reply);

/* hvi_timer_tick - periodic work (integrity checks, deferred detach, alert flush). */
hvi_status hvi_timer_tick(hvi_engine *engine);

/*
 * hvi_detach - remove every hook, breakpoint and patch and restore guest memory. Returns
 * HVI_OK when done, HVI_E_BUSY while a vCPU still runs engine-placed code (call again from
 * the timer or the next event).
 */
hvi_status hvi_detach(hvi_engine *engine);

#ifdef __cplusplus
}
#endif

#endif /* HVI_HVI_H */
