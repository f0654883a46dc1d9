/*
 * hvi hook layer — dispatching EPT violations to the GPA hooks whose sub-range the access
 * touches (write watchpoints: watch.c).
 */
#include <string.h>

#include "hook_priv.h"
#include "hvi/decode.h"

#define SNAP_MAX 64u

struct access_range {
    hvi_gpa gpa;      /* first byte within the event's frame */
    hvi_gva gva;
    uint32_t size;
};

static hvi_status get_regs(hvi_engine *e, uint32_t vcpu, hvi_regs *r)
{
    uint32_t want = HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_SEG | HVI_REGS_FSGS;
    memset(r, 0, sizeof(*r));
    return e->glue.get_regs(e->glue.ctx, vcpu, want, r) == HVI_OK ? HVI_OK : HVI_E_BACKEND;
}

/* The accessed byte range within the event's frame: from the decoded access that contains the
 * faulting GVA, else the event's len, else one byte. */
static struct access_range range_of(const hvi_event *ev, const hvi_insn *insn)
{
    struct access_range r = {.gpa = ev->gpa, .gva = ev->gva, .size = ev->len ? ev->len : 1};
    for (uint32_t i = 0; insn && ev->access != HVI_EPT_X && i < insn->access_count; i++) {
        const hvi_mem_access *a = &insn->access[i];
        if (!a->addr_valid || !(a->access & ev->access) || ev->gva < a->gva ||
            ev->gva - a->gva >= a->size)
            continue;
        uint64_t before = ev->gva - a->gva;
        uint64_t frame_off = ev->gpa & (HVI_PAGE_SIZE - 1);
        if (before > frame_off)
            before = frame_off; /* the access starts on the previous page */
        r.gpa = ev->gpa - before;
        r.gva = ev->gva - before;
        r.size = (uint32_t)(a->gva + a->size - r.gva);
        break;
    }
    uint64_t room = HVI_PAGE_SIZE - (r.gpa & (HVI_PAGE_SIZE - 1));
    if (r.size > room)
        r.size = (uint32_t)room; /* the rest lies on another frame: its own violation */
    return r;
}

static bool touches(const struct hvi_hook *h, hvi_gpa gpa, uint32_t size)
{
    return gpa < h->gpa + h->len && h->gpa < gpa + size;
}

/* Call the hooks of a snapshot; removed ones are skipped. */
static uint32_t call_hooks(hvi_engine *e, struct hvi_hook **snap, size_t n, hvi_hook_access *acc)
{
    uint32_t action = HVI_ACTION_ALLOW;
    for (size_t i = 0; i < n; i++) {
        if (snap[i]->removed)
            continue;
        action = hvi_hook_strictest(action, snap[i]->cb(e, snap[i], acc, snap[i]->ctx));
    }
    return action;
}

static void write_values(hvi_engine *e, uint32_t vcpu, const hvi_insn *insn,
                         const hvi_regs *regs, hvi_hook_access *acc)
{
    uint8_t old[16];
    size_t n = 0;
    uint32_t len = acc->size > sizeof(old) ? sizeof(old) : acc->size;
    void *page;
    if (!insn || e->glue.map_gpa(e->glue.ctx, acc->gpa & HVI_PAGE_MASK, &page) != HVI_OK)
        return;
    memset(old, 0, sizeof(old));
    memcpy(old, (uint8_t *)page + (acc->gpa & (HVI_PAGE_SIZE - 1)), len);
    e->glue.unmap_gpa(e->glue.ctx, acc->gpa & HVI_PAGE_MASK, page);
    memcpy(acc->old_bytes, old, sizeof(old));
    if (hvi_decode_write_value(e, vcpu, insn, regs, old, sizeof(old), acc->new_bytes, &n) == HVI_OK)
        acc->values_known = true;
}

/* DENY before the access: move RIP past the instruction so it never executes. */
static void skip_insn(hvi_engine *e, uint32_t vcpu, hvi_regs *regs, const hvi_insn *insn,
                      hvi_event_reply *reply)
{
    if (!insn || !(e->glue.caps & HVI_CAP_REGS_WRITE))
        return;
    regs->rip += insn->len;
    if (e->glue.set_regs(e->glue.ctx, vcpu, HVI_REGS_GPR, regs) == HVI_OK)
        reply->regs_changed = true;
    else
        hvi_log(e, HVI_LOG_WARN, "hook: cannot skip denied instruction at 0x%llx",
                (unsigned long long)(regs->rip - insn->len));
}

static void write_emulated(hvi_engine *e, uint32_t vcpu, const hvi_regs *regs,
                           hvi_event_reply *reply)
{
    if ((e->glue.caps & HVI_CAP_REGS_WRITE) &&
        e->glue.set_regs(e->glue.ctx, vcpu, HVI_REGS_GPR, regs) == HVI_OK)
        reply->regs_changed = true;
    else
        hvi_log(e, HVI_LOG_WARN, "hook: cannot write emulated registers");
}

static size_t snapshot(struct hook_frame *f, uint32_t access, hvi_gpa gpa, uint32_t size,
                       bool watch, struct hvi_hook **snap)
{
    size_t n = 0;
    for (size_t i = 0; i < f->count && n < SNAP_MAX; i++) {
        struct hvi_hook *h = f->hooks[i];
        if ((h->access & access) && h->watch == watch && touches(h, gpa, size))
            snap[n++] = h;
    }
    return n;
}

hvi_status hvi_hook_on_ept(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply, void *ctx)
{
    (void)ctx;
    struct hvi_hook_state *s = e->hook;
    struct hook_frame *f = hvi_hook_frame_find(s, ev->gpa >> 12);
    if (!f)
        return HVI_OK;
    hvi_regs regs;
    hvi_insn insn;
    const hvi_insn *ip = NULL;
    bool have_regs = get_regs(e, ev->vcpu, &regs) == HVI_OK;
    if (have_regs && ev->access != HVI_EPT_X) {
        hvi_status st = ev->insn ? hvi_decode_rip_bytes(e, &regs, ev->insn, ev->insn_len, &insn)
                                 : hvi_decode_rip(e, ev->vcpu, &regs, &insn);
        if (st == HVI_OK)
            ip = &insn;
    }
    struct access_range r = range_of(ev, ip);
    struct hvi_hook *snap[SNAP_MAX];
    size_t n = snapshot(f, ev->access, r.gpa, r.size, false, snap);
    if (n == 0)
        return HVI_OK;
    hvi_regs work = regs;
    hvi_hook_access acc = {.event = ev, .vcpu = ev->vcpu, .access = ev->access, .gpa = r.gpa,
                           .gva = r.gva, .size = r.size, .rip = have_regs ? regs.rip : 0,
                           .insn = ip, .regs = have_regs ? &regs : NULL,
                           .emulate = have_regs ? &work : NULL};
    if (ev->access == HVI_EPT_W && have_regs)
        write_values(e, ev->vcpu, ip, &regs, &acc);
    s->depth++;
    uint32_t action = call_hooks(e, snap, n, &acc);
    s->depth--;
    hvi_hook_reap(s);
    bool emulated = have_regs && memcmp(&work, &regs, sizeof(regs)) != 0;
    if (action == HVI_ACTION_DENY && emulated)
        write_emulated(e, ev->vcpu, &work, reply);
    else if (action == HVI_ACTION_DENY && ev->access != HVI_EPT_X && have_regs)
        skip_insn(e, ev->vcpu, &regs, ip, reply);
    if (action == HVI_ACTION_ALLOW && ev->access == HVI_EPT_W)
        hvi_decode_invalidate_gpa(e, ev->gpa);
    reply->action = hvi_hook_strictest(reply->action, action);
    return HVI_OK;
}
