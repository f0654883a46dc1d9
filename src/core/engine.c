/* hvi core — engine object, logging, options, event dispatch, timer, detach. */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t hvi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void hvi_strlcpy(char *dst, const char *src, size_t dst_len)
{
    if (!dst || dst_len == 0)
        return;
    size_t n = src ? strnlen(src, dst_len - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

static void default_log(int level, const char *msg, void *user)
{
    static const char *names[] = {"error", "warning", "info", "debug"};
    (void)user;
    fprintf(stderr, "hvi: %s: %s\n", names[level < 0 ? 0 : (level > 3 ? 3 : level)], msg);
}

hvi_status hvi_engine_new(const hvi_glue *glue, hvi_engine **out)
{
    if (!out)
        return HVI_E_INVAL;
    *out = NULL;
    hvi_status st = hvi_glue_check(glue);
    if (st != HVI_OK)
        return st;
    hvi_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return HVI_E_NOMEM;
    /* Copy only what the backend's table holds; newer members stay NULL. */
    memcpy(&e->glue, glue, glue->size < sizeof(e->glue) ? glue->size : sizeof(e->glue));
    e->glue.size = sizeof(e->glue);
    e->log_cb = default_log;
    e->log_level = HVI_LOG_WARN;
    e->guest.paging = HVI_PAGING_NONE;
    *out = e;
    return HVI_OK;
}

void hvi_engine_free(hvi_engine *e)
{
    if (!e)
        return;
    hvi_alert_flush(e);
    /* Layers are released in reverse order of registration: upper layers registered last. */
    for (int i = HVI_MAX_HOOKS_OF_KIND - 1; i >= 0; i--)
        if (e->cleanups[i].fn)
            e->cleanups[i].fn(e, e->cleanups[i].ctx);
    free(e->alerts);
    free(e->support);
    free(e);
}

void hvi_set_log(hvi_engine *e, hvi_log_cb cb, int max_level, void *user)
{
    if (!e)
        return;
    e->log_cb = cb;
    e->log_user = user;
    e->log_level = max_level;
}

const char *hvi_last_error(const hvi_engine *e)
{
    return e ? e->errmsg : "";
}

void hvi_log(hvi_engine *e, int level, const char *fmt, ...)
{
    if (!e || !e->log_cb || level > e->log_level)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    e->log_cb(level, buf, e->log_user);
}

hvi_status hvi_fail(hvi_engine *e, hvi_status st, const char *fmt, ...)
{
    if (!e)
        return st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->errmsg, sizeof(e->errmsg), fmt, ap);
    va_end(ap);
    return st;
}

void hvi_set_alert_callback(hvi_engine *e, hvi_alert_cb cb, void *user)
{
    if (!e)
        return;
    e->alert_cb = cb;
    e->alert_user = user;
}

uint64_t hvi_options_get(const hvi_engine *e)
{
    return e ? e->options : 0;
}

hvi_status hvi_options_set(hvi_engine *e, uint64_t options)
{
    if (!e)
        return HVI_E_INVAL;
    uint64_t old = e->options;
    e->options = options;
    if (old == options)
        return HVI_OK;
    for (size_t i = 0; i < HVI_MAX_HOOKS_OF_KIND; i++)
        if (e->option_watchers[i].fn)
            e->option_watchers[i].fn(e, old, options, e->option_watchers[i].ctx);
    hvi_alert_flush(e);
    return HVI_OK;
}

/* ---- registration ---- */

hvi_status hvi_engine_add_handler(hvi_engine *e, uint32_t ev_type, hvi_event_handler fn, void *ctx)
{
    if (!e || !fn || ev_type == 0 || ev_type >= HVI_EV_TYPE_MAX)
        return HVI_E_INVAL;
    for (size_t i = 0; i < HVI_MAX_HANDLERS; i++) {
        struct hvi_handler_slot *s = &e->handlers[ev_type][i];
        if (s->fn == fn && s->ctx == ctx)
            return HVI_E_EXISTS;
    }
    for (size_t i = 0; i < HVI_MAX_HANDLERS; i++) {
        struct hvi_handler_slot *s = &e->handlers[ev_type][i];
        if (!s->fn) {
            s->fn = fn;
            s->ctx = ctx;
            return HVI_OK;
        }
    }
    return HVI_E_LIMIT;
}

hvi_status hvi_engine_remove_handler(hvi_engine *e, uint32_t ev_type, hvi_event_handler fn, void *ctx)
{
    if (!e || ev_type == 0 || ev_type >= HVI_EV_TYPE_MAX)
        return HVI_E_INVAL;
    for (size_t i = 0; i < HVI_MAX_HANDLERS; i++) {
        struct hvi_handler_slot *s = &e->handlers[ev_type][i];
        if (s->fn == fn && s->ctx == ctx) {
            s->fn = NULL;
            s->ctx = NULL;
            return HVI_OK;
        }
    }
    return HVI_E_NOT_FOUND;
}

#define ADD_TO_TABLE(table, f, c)                                                                  \
    do {                                                                                           \
        if (!e || !(f))                                                                            \
            return HVI_E_INVAL;                                                                    \
        for (size_t i_ = 0; i_ < HVI_MAX_HOOKS_OF_KIND; i_++) {                                   \
            if (!e->table[i_].fn) {                                                                \
                e->table[i_].fn = (f);                                                             \
                e->table[i_].ctx = (c);                                                            \
                return HVI_OK;                                                                     \
            }                                                                                      \
        }                                                                                          \
        return HVI_E_LIMIT;                                                                        \
    } while (0)

hvi_status hvi_engine_add_timer(hvi_engine *e, hvi_timer_handler fn, void *ctx)
{
    ADD_TO_TABLE(timers, fn, ctx);
}

hvi_status hvi_engine_on_free(hvi_engine *e, hvi_cleanup_fn fn, void *ctx)
{
    ADD_TO_TABLE(cleanups, fn, ctx);
}

hvi_status hvi_engine_on_detach(hvi_engine *e, hvi_detach_fn fn, void *ctx)
{
    ADD_TO_TABLE(detachers, fn, ctx);
}

hvi_status hvi_engine_on_options(hvi_engine *e, hvi_options_fn fn, void *ctx)
{
    ADD_TO_TABLE(option_watchers, fn, ctx);
}

/* ---- dispatch ---- */

static uint32_t stricter(uint32_t a, uint32_t b)
{
    /* DENY beats RETRY beats ALLOW. */
    if (a == HVI_ACTION_DENY || b == HVI_ACTION_DENY)
        return HVI_ACTION_DENY;
    if (a == HVI_ACTION_RETRY || b == HVI_ACTION_RETRY)
        return HVI_ACTION_RETRY;
    return HVI_ACTION_ALLOW;
}

hvi_status hvi_handle_event(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply)
{
    if (reply) {
        reply->action = HVI_ACTION_ALLOW;
        reply->regs_changed = false;
    }
    if (!e || !ev || !reply || ev->size < sizeof(hvi_event))
        return HVI_E_INVAL;
    if (ev->type == 0 || ev->type >= HVI_EV_TYPE_MAX)
        return hvi_fail(e, HVI_E_INVAL, "unknown event type %u", ev->type);

    hvi_status result = HVI_OK;
    uint32_t prev_vcpu = e->current_vcpu;
    e->current_vcpu = ev->vcpu;
    e->dispatch_depth++;
    /* Snapshot the slots: a handler may remove itself (or others) while running. */
    struct hvi_handler_slot slots[HVI_MAX_HANDLERS];
    memcpy(slots, e->handlers[ev->type], sizeof(slots));
    for (size_t i = 0; i < HVI_MAX_HANDLERS; i++) {
        if (!slots[i].fn)
            continue;
        hvi_event_reply r = {HVI_ACTION_ALLOW, false};
        hvi_status st = slots[i].fn(e, ev, &r, slots[i].ctx);
        if (st != HVI_OK) {
            hvi_log(e, HVI_LOG_WARN, "event %u handler failed: %s (%s)", ev->type,
                    hvi_strstatus(st), e->errmsg);
            if (result == HVI_OK)
                result = st;
            continue;
        }
        reply->action = stricter(reply->action, r.action);
        reply->regs_changed = reply->regs_changed || r.regs_changed;
    }
    e->dispatch_depth--;
    e->current_vcpu = prev_vcpu;
    if (e->dispatch_depth == 0)
        hvi_alert_flush(e);
    return result;
}

hvi_status hvi_timer_tick(hvi_engine *e)
{
    if (!e)
        return HVI_E_INVAL;
    e->dispatch_depth++;
    for (size_t i = 0; i < HVI_MAX_HOOKS_OF_KIND; i++)
        if (e->timers[i].fn)
            e->timers[i].fn(e, e->timers[i].ctx);
    e->dispatch_depth--;
    hvi_status st = HVI_OK;
    if (e->detaching)
        st = hvi_detach(e);
    if (e->dispatch_depth == 0)
        hvi_alert_flush(e);
    return st == HVI_E_BUSY ? HVI_OK : st;
}

hvi_status hvi_detach(hvi_engine *e)
{
    if (!e)
        return HVI_E_INVAL;
    e->detaching = true;
    hvi_status result = HVI_OK;
    /* Upper layers registered last; remove them first. */
    for (int i = HVI_MAX_HOOKS_OF_KIND - 1; i >= 0; i--) {
        if (!e->detachers[i].fn || e->detachers[i].done)
            continue;
        hvi_status st = e->detachers[i].fn(e, e->detachers[i].ctx);
        if (st == HVI_OK)
            e->detachers[i].done = true;
        else if (st == HVI_E_BUSY)
            result = HVI_E_BUSY;
        else if (result == HVI_OK)
            result = st;
    }
    if (result == HVI_OK) {
        e->detaching = false;
        e->guest.attached = false;
    }
    hvi_alert_flush(e);
    return result;
}

void hvi_code_written(hvi_engine *e, hvi_gva gva, const void *bytes, uint32_t len)
{
    if (!e || !bytes || !len || !e->glue.code_written)
        return;
    /* the backend takes at most one page per call */
    for (uint32_t done = 0; done < len;) {
        uint32_t n = (uint32_t)(HVI_PAGE_SIZE - ((gva + done) & (HVI_PAGE_SIZE - 1)));
        if (n > len - done)
            n = len - done;
        if (e->glue.code_written(e->glue.ctx, gva + done, (const uint8_t *)bytes + done, n) !=
            HVI_OK) {
            hvi_log(e, HVI_LOG_WARN, "backend could not refresh code at 0x%llx",
                    (unsigned long long)(gva + done));
            return;
        }
        done += n;
    }
}
