/*
 * hvi protect layer — named protections on top of hooks: memory and register protections that
 * raise alerts and decide (deny, or log only), and integrity regions hashed on the timer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "core/engine.h"
#include "hvi/protect.h"
#include "protect_priv.h"

#define INTEGRITY_MAX (16u << 20)

static void prot_free(struct hvi_protect *p)
{
    if (p->release)
        p->release(NULL, p);
    free(p->copy);
    free(p->scratch);
    free(p);
}

static void protect_cleanup(hvi_engine *e, void *ctx)
{
    (void)ctx;
    if (!e->protect)
        return;
    for (struct hvi_protect *p = e->protect->list, *n; p; p = n) {
        n = p->next;
        prot_free(p);
    }
    hvi_slack_release(e->protect);
    hvi_swapmem_release(e->protect);
    hvi_memcloak_release_all(NULL, e->protect);
    free(e->protect);
    e->protect = NULL;
}

static void protect_timer(hvi_engine *e, void *ctx)
{
    (void)ctx;
    (void)hvi_protect_integrity_check(e);
}

static hvi_status protect_detach(hvi_engine *e, void *ctx)
{
    (void)ctx;
    hvi_status worst = HVI_OK;
    if (e->protect) {
        (void)hvi_swapmem_cancel_all(e);
        hvi_memcloak_release_all(e, e->protect);
    }
    for (struct hvi_protect *p = e->protect ? e->protect->list : NULL, *n; p; p = n) {
        n = p->next;
        /* a register exit the backend would not disable stays (and its record with it) */
        if (hvi_protect_remove(e, p) != HVI_OK)
            worst = HVI_E_BACKEND;
    }
    return worst;
}

struct hvi_protect_state *hvi_protect_state(hvi_engine *e)
{
    if (e->protect)
        return e->protect;
    e->protect = calloc(1, sizeof(*e->protect));
    if (!e->protect)
        return NULL;
    if (hvi_engine_on_free(e, protect_cleanup, NULL) != HVI_OK ||
        hvi_engine_on_detach(e, protect_detach, NULL) != HVI_OK ||
        hvi_engine_add_timer(e, protect_timer, NULL) != HVI_OK) {
        hvi_fail(e, HVI_E_LIMIT, "protect: engine callback tables full");
        return NULL;
    }
    return e->protect;
}

struct hvi_protect *hvi_protect_new(hvi_engine *e, const hvi_protect_desc *desc, uint32_t kind)
{
    if (!hvi_protect_state(e))
        return NULL;
    struct hvi_protect *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->kind = kind;
    p->desc = *desc;
    hvi_strlcpy(p->object, desc->object ? desc->object : "", sizeof(p->object));
    p->desc.object = p->object;
    (void)e;
    return p;
}

void hvi_protect_link(hvi_engine *e, struct hvi_protect *p)
{
    p->next = e->protect->list;
    e->protect->list = p;
}

/* Raise the alert and pick the action: DENY, or ALLOW (logged) in log-only mode. */
static uint32_t violation(hvi_engine *e, struct hvi_protect *p, hvi_alert *a)
{
    bool log_only = (e->options & HVI_OPT_LOG_ONLY) != 0;
    a->action = log_only ? HVI_ALERT_LOGGED : HVI_ALERT_DENIED;
    hvi_strlcpy(a->object, p->object, sizeof(a->object));
    if (p->desc.owner)
        p->desc.owner(e, a, p->desc.ctx);
    e->protect->violations++;
    hvi_alert_emit(e, a);
    return log_only ? HVI_ACTION_ALLOW : HVI_ACTION_DENY;
}

static uint64_t le_value(const uint8_t *b, uint32_t n)
{
    uint64_t v = 0;
    memcpy(&v, b, n < 8 ? n : 8);
    if (n < 8)
        v &= (1ull << (n * 8)) - 1;
    return v;
}

static uint32_t mem_cb(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc, void *ctx)
{
    (void)hook;
    struct hvi_protect *p = ctx;
    if (p->desc.exception && p->desc.exception(e, acc, acc->event, p->desc.ctx))
        return HVI_ACTION_ALLOW;
    hvi_alert a;
    uint32_t type = p->desc.alert_type;
    if (!type)
        type = acc->access == HVI_EPT_W   ? HVI_ALERT_EPT_WRITE
               : acc->access == HVI_EPT_R ? HVI_ALERT_EPT_READ
                                          : HVI_ALERT_EPT_EXEC;
    hvi_alert_init(&a, type, acc->vcpu);
    a.gpa = acc->gpa;
    a.gva = acc->gva;
    a.rip = acc->rip;
    a.width = acc->size;
    if (acc->insn)
        hvi_strlcpy(a.insn, acc->insn->text, sizeof(a.insn));
    if (acc->values_known) {
        a.old_value = le_value(acc->old_bytes, acc->size);
        a.new_value = le_value(acc->new_bytes, acc->size);
    }
    if (acc->after_access)
        snprintf(a.detail, sizeof(a.detail), "write seen after the fact (watchpoint)%s",
                 (e->options & HVI_OPT_LOG_ONLY) ? "" : "; bytes restored");
    return violation(e, p, &a);
}

hvi_status hvi_protect_memory(hvi_engine *e, const hvi_protect_desc *desc, hvi_gpa gpa,
                              hvi_gva gva, uint32_t len, uint32_t access, hvi_protect **out)
{
    if (!e || !desc || !out)
        return HVI_E_INVAL;
    struct hvi_protect *p = hvi_protect_new(e, desc, PROT_MEM);
    if (!p)
        return HVI_E_NOMEM;
    hvi_status st = hvi_hook_gpa_add_gva(e, gpa, gva, len, access, mem_cb, p, &p->hook);
    if (st != HVI_OK) {
        prot_free(p);
        return st;
    }
    hvi_hook_set_owned(p->hook, true);
    hvi_protect_link(e, p);
    *out = p;
    return HVI_OK;
}

static uint32_t alert_type_of_reg(uint32_t ev_type)
{
    switch (ev_type) {
    case HVI_EV_CR_WRITE: return HVI_ALERT_CR;
    case HVI_EV_MSR_WRITE: return HVI_ALERT_MSR;
    case HVI_EV_DTR_LOAD: return HVI_ALERT_DTR;
    default: return HVI_ALERT_XCR;
    }
}

static uint32_t reg_cb(hvi_engine *e, hvi_hook *hook, const hvi_event *ev, void *ctx)
{
    (void)hook;
    struct hvi_protect *p = ctx;
    uint64_t changed = ev->old_value ^ ev->new_value;
    if (ev->type != HVI_EV_DTR_LOAD && !(changed & p->mask))
        return HVI_ACTION_ALLOW;
    if (ev->type == HVI_EV_DTR_LOAD && ev->new_value == ev->old_value)
        return HVI_ACTION_ALLOW;
    if (p->desc.exception && p->desc.exception(e, NULL, ev, p->desc.ctx))
        return HVI_ACTION_ALLOW;
    hvi_alert a;
    hvi_alert_init(&a, p->desc.alert_type ? p->desc.alert_type : alert_type_of_reg(ev->type),
                   ev->vcpu);
    a.old_value = ev->old_value;
    a.new_value = ev->new_value;
    a.width = 8;
    hvi_regs r;
    memset(&r, 0, sizeof(r));
    if (e->glue.get_regs(e->glue.ctx, ev->vcpu, HVI_REGS_GPR, &r) == HVI_OK)
        a.rip = r.rip;
    snprintf(a.detail, sizeof(a.detail), "index=0x%x changed-bits=0x%llx", ev->index,
             (unsigned long long)(changed & p->mask));
    return violation(e, p, &a);
}

hvi_status hvi_protect_register(hvi_engine *e, const hvi_protect_desc *desc, uint32_t kind,
                                uint32_t index, uint64_t mask, hvi_protect **out)
{
    if (!e || !desc || !out)
        return HVI_E_INVAL;
    struct hvi_protect *p = hvi_protect_new(e, desc, PROT_REG);
    if (!p)
        return HVI_E_NOMEM;
    p->mask = mask;
    hvi_status st = hvi_hook_reg_add(e, kind, index, reg_cb, p, &p->hook);
    if (st != HVI_OK) {
        prot_free(p);
        return st;
    }
    hvi_hook_set_owned(p->hook, true);
    hvi_protect_link(e, p);
    *out = p;
    return HVI_OK;
}

hvi_status hvi_protect_integrity(hvi_engine *e, const hvi_protect_desc *desc, uint64_t cr3,
                                 hvi_gva gva, uint32_t len, hvi_protect **out)
{
    if (!e || !desc || !out || len == 0 || len > INTEGRITY_MAX || gva + len < gva)
        return e ? hvi_fail(e, HVI_E_INVAL, "integrity: bad region") : HVI_E_INVAL;
    struct hvi_protect *p = hvi_protect_new(e, desc, PROT_INTEGRITY);
    if (!p)
        return HVI_E_NOMEM;
    p->cr3 = cr3;
    p->gva = gva;
    p->len = len;
    p->copy = malloc(len);
    p->scratch = malloc(len);
    if (!p->copy || !p->scratch) {
        prot_free(p);
        return HVI_E_NOMEM;
    }
    hvi_status st = hvi_gva_read(e, cr3, gva, p->copy, len);
    if (st != HVI_OK) {
        hvi_fail(e, st, "integrity: cannot read %s at 0x%llx", p->object, (unsigned long long)gva);
        prot_free(p);
        return st;
    }
    p->hash = XXH3_64bits(p->copy, len);
    hvi_protect_link(e, p);
    *out = p;
    return HVI_OK;
}

/* First differing offset, for the alert. */
static uint32_t first_diff(const uint8_t *a, const uint8_t *b, uint32_t len)
{
    uint32_t i = 0;
    while (i < len && a[i] == b[i])
        i++;
    return i;
}

static bool check_one(hvi_engine *e, struct hvi_protect *p)
{
    if (hvi_gva_read(e, p->cr3, p->gva, p->scratch, p->len) != HVI_OK)
        return false; /* paged out or unmapped now: checked again next tick */
    uint64_t h = XXH3_64bits(p->scratch, p->len);
    if (h == p->hash)
        return false;
    if (p->desc.exception && p->desc.exception(e, NULL, NULL, p->desc.ctx)) {
        memcpy(p->copy, p->scratch, p->len);
        p->hash = h;
        return false;
    }
    uint32_t off = first_diff(p->copy, p->scratch, p->len);
    uint32_t w = p->len - off < 8 ? p->len - off : 8;
    hvi_alert a;
    hvi_alert_init(&a, p->desc.alert_type ? p->desc.alert_type : HVI_ALERT_INTEGRITY, 0);
    a.gva = p->gva + off;
    a.width = w;
    a.old_value = le_value(p->copy + off, w);
    a.new_value = le_value(p->scratch + off, w);
    snprintf(a.detail, sizeof(a.detail), "region=%s old_hash=%016llx new_hash=%016llx offset=%u",
             p->object, (unsigned long long)p->hash, (unsigned long long)h, off);
    if (violation(e, p, &a) == HVI_ACTION_DENY &&
        hvi_gva_write(e, p->cr3, p->gva, p->copy, p->len) == HVI_OK)
        return true; /* restored: the reference stays */
    memcpy(p->copy, p->scratch, p->len);
    p->hash = h;
    return true;
}

size_t hvi_protect_integrity_check(hvi_engine *e)
{
    size_t changed = 0;
    for (struct hvi_protect *p = e && e->protect ? e->protect->list : NULL; p; p = p->next)
        if (p->kind == PROT_INTEGRITY)
            changed += check_one(e, p);
    return changed;
}

hvi_status hvi_protect_remove(hvi_engine *e, hvi_protect *p)
{
    if (!e || !p || !e->protect)
        return HVI_E_INVAL;
    struct hvi_protect **pp = &e->protect->list;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (!*pp)
        return HVI_E_NOT_FOUND;
    if (p->hook) {
        hvi_status st = hvi_hook_remove(e, p->hook);
        if (st != HVI_OK && p->kind == PROT_REG)
            return st; /* register hooks stay in place on failure; memory hooks are gone */
    }
    if (p->release)
        p->release(e, p);
    *pp = p->next;
    prot_free(p);
    return HVI_OK;
}

uint64_t hvi_protect_violations(const hvi_engine *e)
{
    return e && e->protect ? e->protect->violations : 0;
}
