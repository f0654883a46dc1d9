/*
 * hvi hook layer — register hooks (CR/MSR/DTR/XCR exits) and detours (hypervisor breakpoints).
 */
#include <stdlib.h>
#include <string.h>

#include "hook_priv.h"
#include "hvi/mem.h"

static bool same_reg(const struct hvi_hook *h, uint32_t kind, uint32_t index)
{
    return h->kind == HOOK_REG && !h->removed && h->rkind == kind && h->rindex == index;
}

static size_t reg_users(struct hvi_hook_state *s, uint32_t kind, uint32_t index)
{
    size_t n = 0;
    for (struct hvi_hook *h = s->live; h; h = h->next)
        n += same_reg(h, kind, index);
    return n;
}

hvi_status hvi_hook_reg_add(hvi_engine *e, uint32_t kind, uint32_t index, hvi_reg_hook_cb cb,
                            void *ctx, hvi_hook **out)
{
    if (!e || !cb || !out || kind < HVI_EXIT_CR || kind > HVI_EXIT_XCR)
        return e ? hvi_fail(e, HVI_E_INVAL, "hook: bad register hook arguments") : HVI_E_INVAL;
    if (!(e->glue.caps & HVI_CAP_REG_EXITS))
        return hvi_fail(e, HVI_E_UNSUPPORTED, "hook: backend has no register exits");
    struct hvi_hook_state *s = hvi_hook_state_get(e);
    if (!s)
        return HVI_E_NOMEM;
    struct hvi_hook *h = calloc(1, sizeof(*h));
    if (!h)
        return HVI_E_NOMEM;
    *h = (struct hvi_hook){.kind = HOOK_REG, .rkind = kind, .rindex = index, .rcb = cb,
                           .ctx = ctx};
    if (reg_users(s, kind, index) == 0 &&
        e->glue.enable_exit(e->glue.ctx, kind, index, true) != HVI_OK) {
        free(h);
        return hvi_fail(e, HVI_E_BACKEND, "hook: enable_exit(%u, 0x%x) failed", kind, index);
    }
    h->next = s->live;
    s->live = h;
    s->hooks++;
    *out = h;
    return HVI_OK;
}

hvi_status hvi_hook_reg_remove(hvi_engine *e, struct hvi_hook *h)
{
    struct hvi_hook_state *s = e->hook;
    if (h->kind == HOOK_DETOUR) {
        if (e->glue.set_breakpoint(e->glue.ctx, h->gva, false) != HVI_OK)
            return hvi_fail(e, HVI_E_BACKEND, "hook: cannot clear breakpoint at 0x%llx",
                            (unsigned long long)h->gva);
        return HVI_OK;
    }
    if (reg_users(s, h->rkind, h->rindex) == 1 &&
        e->glue.enable_exit(e->glue.ctx, h->rkind, h->rindex, false) != HVI_OK)
        return hvi_fail(e, HVI_E_BACKEND, "hook: disable_exit(%u, 0x%x) failed", h->rkind,
                        h->rindex);
    return HVI_OK;
}

static uint32_t kind_of_event(uint32_t type)
{
    switch (type) {
    case HVI_EV_CR_WRITE: return HVI_EXIT_CR;
    case HVI_EV_MSR_WRITE: return HVI_EXIT_MSR;
    case HVI_EV_DTR_LOAD: return HVI_EXIT_DTR;
    case HVI_EV_XCR_WRITE: return HVI_EXIT_XCR;
    default: return 0;
    }
}

#define REG_SNAP 32u

hvi_status hvi_hook_on_reg(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply, void *ctx)
{
    (void)ctx;
    struct hvi_hook_state *s = e->hook;
    uint32_t kind = kind_of_event(ev->type);
    struct hvi_hook *snap[REG_SNAP];
    size_t n = 0;
    for (struct hvi_hook *h = s ? s->live : NULL; h && n < REG_SNAP; h = h->next)
        if (same_reg(h, kind, ev->index))
            snap[n++] = h;
    if (n == 0)
        return HVI_OK;
    uint32_t action = HVI_ACTION_ALLOW;
    s->depth++;
    for (size_t i = 0; i < n; i++)
        if (!snap[i]->removed)
            action = hvi_hook_strictest(action, snap[i]->rcb(e, snap[i], ev, snap[i]->ctx));
    s->depth--;
    hvi_hook_reap(s);
    reply->action = hvi_hook_strictest(reply->action, action);
    return HVI_OK;
}

/* ---- detours ---- */

static struct hvi_hook *find_detour(struct hvi_hook_state *s, hvi_gva gva)
{
    for (struct hvi_hook *h = s ? s->live : NULL; h; h = h->next)
        if (h->kind == HOOK_DETOUR && !h->removed && h->gva == gva)
            return h;
    return NULL;
}

hvi_status hvi_detour_add(hvi_engine *e, hvi_gva gva, hvi_detour_cb cb, void *ctx, hvi_hook **out)
{
    if (!e || !cb || !out)
        return HVI_E_INVAL;
    if (!(e->glue.caps & HVI_CAP_BREAKPOINT))
        return hvi_fail(e, HVI_E_UNSUPPORTED, "detour: backend has no hypervisor breakpoints");
    struct hvi_hook_state *s = hvi_hook_state_get(e);
    if (!s)
        return HVI_E_NOMEM;
    if (find_detour(s, gva))
        return hvi_fail(e, HVI_E_EXISTS, "detour: 0x%llx already detoured",
                        (unsigned long long)gva);
    struct hvi_hook *h = calloc(1, sizeof(*h));
    if (!h)
        return HVI_E_NOMEM;
    *h = (struct hvi_hook){.kind = HOOK_DETOUR, .gva = gva, .dcb = cb, .ctx = ctx};
    if (e->glue.set_breakpoint(e->glue.ctx, gva, true) != HVI_OK) {
        free(h);
        return hvi_fail(e, HVI_E_BACKEND, "detour: set_breakpoint(0x%llx) failed",
                        (unsigned long long)gva);
    }
    h->next = s->live;
    s->live = h;
    s->hooks++;
    *out = h;
    return HVI_OK;
}

hvi_status hvi_hook_on_bp(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply, void *ctx)
{
    (void)ctx;
    struct hvi_hook_state *s = e->hook;
    struct hvi_hook *h = find_detour(s, ev->gva);
    if (!h)
        return HVI_OK;
    hvi_regs regs;
    uint32_t want = HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_SEG | HVI_REGS_FSGS;
    memset(&regs, 0, sizeof(regs));
    if (e->glue.get_regs(e->glue.ctx, ev->vcpu, want, &regs) != HVI_OK)
        return hvi_fail(e, HVI_E_BACKEND, "detour: get_regs failed");
    s->depth++;
    bool changed = h->dcb(e, h, ev->vcpu, &regs, h->ctx);
    s->depth--;
    hvi_hook_reap(s);
    if (!changed)
        return HVI_OK;
    if (!(e->glue.caps & HVI_CAP_REGS_WRITE) ||
        e->glue.set_regs(e->glue.ctx, ev->vcpu, HVI_REGS_GPR, &regs) != HVI_OK)
        return hvi_fail(e, HVI_E_BACKEND, "detour: cannot write registers");
    reply->regs_changed = true;
    return HVI_OK;
}

hvi_status hvi_detour_return(hvi_engine *e, hvi_regs *regs, uint64_t value)
{
    uint64_t ret;
    if (!e || !regs)
        return HVI_E_INVAL;
    uint64_t cr3 = (regs->valid & HVI_REGS_CR) ? regs->cr3 : 0;
    hvi_status st = hvi_gva_read_u64(e, cr3, regs->gpr[HVI_RSP], &ret);
    if (st != HVI_OK)
        return hvi_fail(e, st, "detour: cannot read return address at 0x%llx",
                        (unsigned long long)regs->gpr[HVI_RSP]);
    regs->rip = ret;
    regs->gpr[HVI_RSP] += 8;
    regs->gpr[HVI_RAX] = value;
    return HVI_OK;
}
