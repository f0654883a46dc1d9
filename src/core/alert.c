/* hvi core — alert queue, delivery and JSON rendering (fields in docs/alerts.md). */
#include "engine.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    uint32_t type;
    const char *name;
} type_names[] = {
    {HVI_ALERT_EPT_WRITE, "ept-write"},
    {HVI_ALERT_EPT_READ, "ept-read"},
    {HVI_ALERT_EPT_EXEC, "ept-exec"},
    {HVI_ALERT_INTEGRITY, "integrity"},
    {HVI_ALERT_MSR, "msr"},
    {HVI_ALERT_CR, "cr"},
    {HVI_ALERT_DTR, "dtr"},
    {HVI_ALERT_UNPACK, "unpack"},
    {HVI_ALERT_CREDS, "creds"},
    {HVI_ALERT_HIDDEN_MODULE, "hidden-module"},
    {HVI_ALERT_HIDDEN_PROCESS, "hidden-process"},
    {HVI_ALERT_XCR, "xcr"},
    {HVI_ALERT_EXPLOIT, "exploit"},
    {HVI_EVENT_PROCESS_CREATE, "process-create"},
    {HVI_EVENT_PROCESS_EXEC, "process-exec"},
    {HVI_EVENT_PROCESS_EXIT, "process-exit"},
    {HVI_EVENT_MODULE_LOAD, "module-load"},
    {HVI_EVENT_MODULE_UNLOAD, "module-unload"},
    {HVI_EVENT_VMA, "vma"},
    {HVI_EVENT_GUEST_DETECTED, "guest-detected"},
    {HVI_EVENT_EXEC_BLOCKED, "exec-blocked"},
};

const char *hvi_alert_type_name(uint32_t type)
{
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (type_names[i].type == type)
            return type_names[i].name;
    return "unknown";
}

bool hvi_alert_is_violation(uint32_t type)
{
    return type > 0 && type < 64;
}

void hvi_alert_init(hvi_alert *a, uint32_t type, uint32_t vcpu)
{
    memset(a, 0, sizeof(*a));
    a->size = sizeof(*a);
    a->type = type;
    a->vcpu = vcpu;
    a->pid = -1;
}

void hvi_alert_emit(hvi_engine *e, const hvi_alert *alert)
{
    if (!e || !alert)
        return;
    if (e->alert_count == e->alert_cap) {
        if (e->alert_cap >= HVI_ALERT_QUEUE_MAX) {
            e->alerts_dropped++;
            return;
        }
        size_t cap = e->alert_cap ? e->alert_cap * 2 : 16;
        hvi_alert *n = realloc(e->alerts, cap * sizeof(*n));
        if (!n) {
            e->alerts_dropped++;
            return;
        }
        e->alerts = n;
        e->alert_cap = cap;
    }
    hvi_alert *a = &e->alerts[e->alert_count++];
    *a = *alert;
    a->size = sizeof(*a);
    if (!a->time_ns)
        a->time_ns = hvi_now_ns();
    if (e->dispatch_depth == 0)
        hvi_alert_flush(e);
}

void hvi_alert_flush(hvi_engine *e)
{
    if (!e)
        return;
    /* A callback may cause new alerts (through the public API); loop until drained, bounded by
     * the queue limit. */
    size_t delivered = 0;
    while (e->alert_count && delivered < HVI_ALERT_QUEUE_MAX) {
        hvi_alert a = e->alerts[0];
        memmove(e->alerts, e->alerts + 1, (e->alert_count - 1) * sizeof(*e->alerts));
        e->alert_count--;
        delivered++;
        if (e->alert_cb)
            e->alert_cb(&a, e->alert_user);
    }
}

/* ---- JSON ---- */

struct jbuf {
    char *p;
    size_t len, used;
};

static void jputc(struct jbuf *b, char c)
{
    if (b->used + 1 < b->len)
        b->p[b->used] = c;
    b->used++;
}

static void jputs(struct jbuf *b, const char *s)
{
    while (*s)
        jputc(b, *s++);
}

static void jprintf(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jprintf(struct jbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    jputs(b, tmp);
}

/* Emit a JSON string from a fixed-size field that may lack its terminator. */
static void jstr(struct jbuf *b, const char *key, const char *s, size_t max)
{
    jprintf(b, ",\"%s\":\"", key);
    for (size_t i = 0; i < max && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            jputc(b, '\\');
            jputc(b, (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            jprintf(b, "\\u%04x", c);
        } else {
            jputc(b, (char)c);
        }
    }
    jputc(b, '"');
}

hvi_status hvi_alert_to_json(const hvi_alert *a, char *buf, size_t len, size_t *needed)
{
    if (!a)
        return HVI_E_INVAL;
    static const char *actions[] = {"allowed", "denied", "logged"};
    struct jbuf b = {buf, len, 0};
    jprintf(&b, "{\"type\":\"%s\"", hvi_alert_type_name(a->type));
    jprintf(&b, ",\"kind\":\"%s\"", hvi_alert_is_violation(a->type) ? "violation" : "event");
    jprintf(&b, ",\"action\":\"%s\"", a->action < 3 ? actions[a->action] : "unknown");
    jprintf(&b, ",\"time_ns\":%" PRIu64, a->time_ns);
    jprintf(&b, ",\"vcpu\":%" PRIu32, a->vcpu);
    jprintf(&b, ",\"gpa\":\"0x%" PRIx64 "\"", a->gpa);
    jprintf(&b, ",\"gva\":\"0x%" PRIx64 "\"", a->gva);
    jprintf(&b, ",\"rip\":\"0x%" PRIx64 "\"", a->rip);
    jprintf(&b, ",\"old_value\":\"0x%" PRIx64 "\"", a->old_value);
    jprintf(&b, ",\"new_value\":\"0x%" PRIx64 "\"", a->new_value);
    jprintf(&b, ",\"width\":%" PRIu32, a->width);
    jstr(&b, "insn", a->insn, sizeof(a->insn));
    jstr(&b, "object", a->object, sizeof(a->object));
    jstr(&b, "symbol", a->symbol, sizeof(a->symbol));
    jstr(&b, "module", a->module, sizeof(a->module));
    jprintf(&b, ",\"pid\":%" PRId32, a->pid);
    jstr(&b, "comm", a->comm, sizeof(a->comm));
    jstr(&b, "detail", a->detail, sizeof(a->detail));
    jputc(&b, '}');
    if (needed)
        *needed = b.used;
    if (len > 0)
        buf[b.used < len ? b.used : len - 1] = '\0';
    return b.used < len ? HVI_OK : HVI_E_LIMIT;
}
