/*
 * hvi — alerts (violations) and events (informative guest activity).
 *
 * One record type for both. The engine fills it, queues it, and delivers it
 * to the integrator's callback after the event that produced it returns.
 * hvi_alert_to_json() renders the JSON line the CLI prints; the fields are
 * documented in docs/alerts.md.
 */
#ifndef HVI_ALERT_H
#define HVI_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum hvi_alert_type {
    /* violations */
    HVI_ALERT_EPT_WRITE = 1,     /* write to protected memory */
    HVI_ALERT_EPT_READ = 2,
    HVI_ALERT_EPT_EXEC = 3,      /* execution of protected / non-executable memory */
    HVI_ALERT_INTEGRITY = 4,     /* hash of a region changed (timer check) */
    HVI_ALERT_MSR = 5,           /* write to a protected MSR */
    HVI_ALERT_CR = 6,            /* protected CR bit cleared/changed */
    HVI_ALERT_DTR = 7,           /* IDTR/GDTR load */
    HVI_ALERT_UNPACK = 8,        /* a page written then executed */
    HVI_ALERT_CREDS = 9,         /* process credentials changed outside legitimate paths */
    HVI_ALERT_HIDDEN_MODULE = 10,
    HVI_ALERT_HIDDEN_PROCESS = 11,
    HVI_ALERT_XCR = 12,
    HVI_ALERT_EXPLOIT = 13,      /* user memory made executable in a protected process */
    /* events */
    HVI_EVENT_PROCESS_CREATE = 64,
    HVI_EVENT_PROCESS_EXEC = 65,
    HVI_EVENT_PROCESS_EXIT = 66,
    HVI_EVENT_MODULE_LOAD = 67,
    HVI_EVENT_MODULE_UNLOAD = 68,
    HVI_EVENT_VMA = 69,
    HVI_EVENT_GUEST_DETECTED = 70,
    HVI_EVENT_EXEC_BLOCKED = 71,
};

/* What the engine did about a violation. */
enum hvi_alert_action { HVI_ALERT_ALLOWED = 0, HVI_ALERT_DENIED = 1, HVI_ALERT_LOGGED = 2 };

typedef struct hvi_alert {
    uint32_t size;       /* sizeof(hvi_alert) */
    uint32_t type;       /* hvi_alert_type */
    uint32_t action;     /* hvi_alert_action */
    uint32_t vcpu;
    uint64_t time_ns;    /* host monotonic time when raised */
    uint64_t gpa;
    uint64_t gva;
    uint64_t rip;
    uint64_t old_value;  /* for memory: the first up-to-8 bytes, little-endian */
    uint64_t new_value;
    uint32_t width;      /* access width in bytes, 0 if not applicable */
    char insn[64];       /* instruction text at RIP, "" if unknown */
    char object[64];     /* what was protected: "kernel-text", "idt", "sys_call_table", "lstar", ... */
    char symbol[96];     /* writer: symbol+offset of RIP, "" if unknown */
    char module[64];     /* writer: kernel module owning RIP, "kernel", or "" */
    int32_t pid;         /* owner context: current process, -1 if unknown */
    char comm[24];
    char detail[256];    /* type-specific detail (hash values, path, region name) */
} hvi_alert;

typedef void (*hvi_alert_cb)(const hvi_alert *alert, void *user);

/* Short stable name of an alert type ("ept-write", "process-create", ...); never NULL. */
const char *hvi_alert_type_name(uint32_t type);

/* True for the violation types (< 64), false for events. */
bool hvi_alert_is_violation(uint32_t type);

/*
 * hvi_alert_to_json - render one JSON object (no trailing newline) into buf.
 * Always NUL-terminates when len > 0; *needed (optional) receives the full length.
 * Returns HVI_E_LIMIT when buf is too small (output truncated), HVI_E_INVAL for NULL alert.
 */
hvi_status hvi_alert_to_json(const hvi_alert *alert, char *buf, size_t len, size_t *needed);

#ifdef __cplusplus
}
#endif

#endif /* HVI_ALERT_H */
