/* hvi simulator — simulated guest activity turned into events for the attached engine. */
#include <string.h>

#include "sim_internal.h"

#define SIM_MAX_RETRY 4
#define PF_VECTOR 14

static void merge(hvi_event_reply *acc, const hvi_event_reply *r)
{
    /* strictest wins: DENY > RETRY > ALLOW */
    if (r->action == HVI_ACTION_DENY ||
        (r->action == HVI_ACTION_RETRY && acc->action == HVI_ACTION_ALLOW))
        acc->action = r->action;
    acc->regs_changed |= r->regs_changed;
}

hvi_status hvi_sim_raise(hvi_sim *sim, const hvi_event *ev, hvi_event_reply *reply)
{
    hvi_event_reply r = {HVI_ACTION_ALLOW, false};
    if (reply)
        *reply = r;
    if (!sim || !ev)
        return HVI_E_INVAL;
    hvi_status st = HVI_OK;
    if (sim->engine) {
        if (ev->type < HVI_EV_TYPE_MAX)
            sim->events[ev->type]++;
        st = hvi_handle_event(sim->engine, ev, &r);
    }
    if (reply)
        *reply = r;
    return st;
}

/* Deliver for a simulated activity: an engine failure leaves the reply ALLOW (the contract of
 * hvi_handle_event, so the guest is never stuck); the failure is kept in event_err and
 * returned by the activity once it completed. */
static hvi_status deliver(hvi_sim *s, const hvi_event *ev, hvi_event_reply *reply)
{
    hvi_status st = hvi_sim_raise(s, ev, reply);
    if (st != HVI_OK) {
        if (s->event_err == HVI_OK)
            s->event_err = st;
        reply->action = HVI_ACTION_ALLOW;
    }
    return HVI_OK;
}

static void ev_init(hvi_event *ev, uint32_t type, uint32_t vcpu)
{
    memset(ev, 0, sizeof(*ev));
    ev->size = sizeof(*ev);
    ev->type = type;
    ev->vcpu = vcpu;
}

static void record_pf(hvi_sim *s, uint32_t vcpu, hvi_gva gva, bool write)
{
    struct sim_vcpu *c = &s->cpu[vcpu];
    c->exc_pending = true;
    c->exc_vector = PF_VECTOR;
    c->exc_error = write ? 2u : 0u;
    c->exc_cr2 = gva;
    c->regs.cr2 = gva;
}

/* Translate every page of [gva, gva+len) with the vCPU's paging; first failure returned. */
static hvi_status vcpu_xlate(hvi_sim *s, uint32_t vcpu, hvi_gva gva, hvi_gpa *gpa)
{
    hvi_regs *r = &s->cpu[vcpu].regs;
    hvi_status st = hvi_sim_translate(s, r->cr3, hvi_sim_vcpu_paging(s, vcpu), gva, gpa);
    if (st == HVI_OK && sim_ram_off(s, *gpa) == UINT64_MAX)
        st = HVI_E_RANGE;
    return st;
}

struct acc {
    hvi_sim *s;
    uint32_t vcpu;
    hvi_gva gva;
    uint8_t *buf;
    size_t len;
    uint32_t right; /* HVI_EPT_R or HVI_EPT_W */
    const uint8_t *insn;
    size_t insn_len;
};

static hvi_status check_pages(const struct acc *a, hvi_event_reply *out)
{
    for (size_t done = 0; done < a->len;) {
        hvi_gva va = a->gva + done;
        size_t n = HVI_PAGE_SIZE - (size_t)(va & 0xfff);
        if (n > a->len - done)
            n = a->len - done;
        hvi_gpa pa = 0;
        hvi_status st = vcpu_xlate(a->s, a->vcpu, va, &pa);
        if (st != HVI_OK) {
            if (st == HVI_E_NOT_PRESENT)
                record_pf(a->s, a->vcpu, va, a->right == HVI_EPT_W);
            return st;
        }
        if ((a->s->caps & HVI_CAP_EPT) && !(hvi_sim_ept_rights(a->s, pa) & a->right)) {
            hvi_event ev;
            ev_init(&ev, HVI_EV_EPT_VIOLATION, a->vcpu);
            ev.access = a->right, ev.gpa = pa, ev.gva = va, ev.len = (uint32_t)n;
            ev.insn = a->insn, ev.insn_len = (uint32_t)a->insn_len;
            hvi_event_reply r = {HVI_ACTION_ALLOW, false};
            st = deliver(a->s, &ev, &r);
            if (st != HVI_OK)
                return st;
            merge(out, &r);
            if (out->action == HVI_ACTION_DENY)
                return HVI_OK;
        }
        done += n;
    }
    return HVI_OK;
}

static hvi_status copy_pages(const struct acc *a)
{
    for (size_t done = 0; done < a->len;) {
        hvi_gva va = a->gva + done;
        size_t n = HVI_PAGE_SIZE - (size_t)(va & 0xfff);
        if (n > a->len - done)
            n = a->len - done;
        hvi_gpa pa = 0;
        hvi_status st = vcpu_xlate(a->s, a->vcpu, va, &pa);
        if (st == HVI_OK)
            st = a->right == HVI_EPT_W ? hvi_sim_phys_write(a->s, pa, a->buf + done, n)
                                       : hvi_sim_phys_read(a->s, pa, a->buf + done, n);
        if (st != HVI_OK)
            return st;
        done += n;
    }
    return HVI_OK;
}

static hvi_status watch_after(const struct acc *a, hvi_event_reply *out)
{
    if ((a->s->caps & HVI_CAP_EPT) || !(a->s->caps & HVI_CAP_WATCHPOINT))
        return HVI_OK;
    uint32_t want = a->right == HVI_EPT_W ? HVI_WATCH_WRITE : HVI_WATCH_READ;
    for (uint32_t i = 0; i < a->s->nwp; i++) {
        const struct sim_wp *w = &a->s->wp[i];
        if (!(w->kind & want) || w->gva >= a->gva + a->len || a->gva >= w->gva + w->len)
            continue;
        hvi_event ev;
        ev_init(&ev, HVI_EV_WATCHPOINT, a->vcpu);
        ev.access = a->right, ev.gva = a->gva, ev.len = (uint32_t)a->len;
        if (a->s->caps & HVI_CAP_WATCH_RANGE) /* like QEMU/TCG: the watchpoint, not the bytes */
            ev.gva = w->gva, ev.len = w->len;
        ev.after_access = true;
        ev.insn = a->insn, ev.insn_len = (uint32_t)a->insn_len;
        (void)vcpu_xlate(a->s, a->vcpu, ev.gva, &ev.gpa);
        hvi_event_reply r = {HVI_ACTION_ALLOW, false};
        hvi_status st = deliver(a->s, &ev, &r);
        if (st != HVI_OK)
            return st;
        merge(out, &r);
    }
    return HVI_OK;
}

static hvi_status guest_access(struct acc *a, hvi_event_reply *reply)
{
    hvi_event_reply out = {HVI_ACTION_ALLOW, false};
    if (reply)
        *reply = out;
    if (!a->s || a->vcpu >= a->s->nvcpus || (!a->buf && a->len) || a->len > (1u << 20) ||
        a->gva > UINT64_MAX - a->len)
        return HVI_E_INVAL;
    a->s->event_err = HVI_OK;
    for (int attempt = 0;; attempt++) {
        hvi_event_reply r = {HVI_ACTION_ALLOW, false};
        hvi_status st = check_pages(a, &r);
        if (st != HVI_OK)
            return st;
        out.regs_changed |= r.regs_changed;
        if (r.action == HVI_ACTION_RETRY && attempt < SIM_MAX_RETRY)
            continue;
        out.action = r.action == HVI_ACTION_ALLOW ? HVI_ACTION_ALLOW : HVI_ACTION_DENY;
        break;
    }
    if (out.action == HVI_ACTION_DENY) {
        if (a->right == HVI_EPT_R)
            memset(a->buf, 0, a->len);
    } else {
        hvi_status st = copy_pages(a);
        if (st == HVI_OK)
            st = watch_after(a, &out);
        if (st != HVI_OK)
            return st;
    }
    if (reply)
        *reply = out;
    return a->s->event_err;
}

hvi_status hvi_sim_guest_write(hvi_sim *sim, uint32_t vcpu, hvi_gva gva, const void *data,
                               size_t len, const uint8_t *insn, size_t insn_len,
                               hvi_event_reply *reply)
{
    struct acc a = {sim, vcpu, gva, (uint8_t *)(uintptr_t)data, len, HVI_EPT_W, insn, insn_len};
    return guest_access(&a, reply);
}

hvi_status hvi_sim_guest_read(hvi_sim *sim, uint32_t vcpu, hvi_gva gva, void *data, size_t len,
                              const uint8_t *insn, size_t insn_len, hvi_event_reply *reply)
{
    struct acc a = {sim, vcpu, gva, data, len, HVI_EPT_R, insn, insn_len};
    return guest_access(&a, reply);
}

/* Up to 16 instruction bytes at gva, stopping at the first untranslatable page. */
static uint32_t fetch_insn(hvi_sim *s, uint32_t vcpu, hvi_gva gva, uint8_t *buf)
{
    uint32_t got = 0;
    while (got < 16) {
        hvi_gpa pa = 0;
        if (vcpu_xlate(s, vcpu, gva + got, &pa) != HVI_OK)
            break;
        uint32_t n = HVI_PAGE_SIZE - (uint32_t)((gva + got) & 0xfff);
        if (n > 16 - got)
            n = 16 - got;
        if (hvi_sim_phys_read(s, pa, buf + got, n) != HVI_OK)
            break;
        got += n;
    }
    return got;
}

hvi_status hvi_sim_guest_exec(hvi_sim *sim, uint32_t vcpu, hvi_gva gva, hvi_event_reply *reply)
{
    hvi_event_reply out = {HVI_ACTION_ALLOW, false}, r = {HVI_ACTION_ALLOW, false};
    if (reply)
        *reply = out;
    if (!sim || vcpu >= sim->nvcpus)
        return HVI_E_INVAL;
    sim->event_err = HVI_OK;
    sim->cpu[vcpu].regs.rip = gva;
    hvi_gpa pa = 0;
    hvi_status st = vcpu_xlate(sim, vcpu, gva, &pa);
    if (st != HVI_OK) {
        if (st == HVI_E_NOT_PRESENT)
            record_pf(sim, vcpu, gva, false);
        return st;
    }
    uint8_t insn[16];
    uint32_t ilen = fetch_insn(sim, vcpu, gva, insn);
    hvi_event ev;
    if ((sim->caps & HVI_CAP_BREAKPOINT) && hvi_sim_breakpoint_at(sim, gva)) {
        ev_init(&ev, HVI_EV_BREAKPOINT, vcpu);
        ev.gva = gva, ev.gpa = pa, ev.insn = insn, ev.insn_len = ilen;
        if ((st = deliver(sim, &ev, &r)) != HVI_OK)
            return st;
        merge(&out, &r);
    }
    if ((sim->caps & HVI_CAP_EPT) && !(hvi_sim_ept_rights(sim, pa) & HVI_EPT_X)) {
        ev_init(&ev, HVI_EV_EPT_VIOLATION, vcpu);
        ev.access = HVI_EPT_X, ev.gva = gva, ev.gpa = pa, ev.insn = insn, ev.insn_len = ilen;
        if ((st = deliver(sim, &ev, &r)) != HVI_OK)
            return st;
        merge(&out, &r);
    }
    if (reply)
        *reply = out;
    return sim->event_err;
}

/* Raise a register-write exit when enabled; *apply says whether the write should happen. */
static hvi_status reg_exit(hvi_sim *s, hvi_event *ev, uint32_t kind, hvi_event_reply *reply,
                           bool *apply)
{
    hvi_event_reply r = {HVI_ACTION_ALLOW, false};
    *apply = true;
    if (reply)
        *reply = r;
    if (!(s->caps & HVI_CAP_REG_EXITS) || !hvi_sim_exit_enabled(s, kind, ev->index))
        return HVI_OK;
    s->event_err = HVI_OK;
    (void)deliver(s, ev, &r);
    *apply = r.action == HVI_ACTION_ALLOW;
    if (reply)
        *reply = r;
    return s->event_err;
}

hvi_status hvi_sim_cr_write(hvi_sim *sim, uint32_t vcpu, uint32_t cr, uint64_t value,
                            hvi_event_reply *reply)
{
    if (!sim || vcpu >= sim->nvcpus || (cr != 0 && cr != 3 && cr != 4 && cr != 8))
        return HVI_E_INVAL;
    hvi_regs *r = &sim->cpu[vcpu].regs;
    uint64_t *reg = cr == 0 ? &r->cr0 : cr == 3 ? &r->cr3 : cr == 4 ? &r->cr4 : &r->cr8;
    hvi_event ev;
    ev_init(&ev, HVI_EV_CR_WRITE, vcpu);
    ev.index = cr, ev.old_value = *reg, ev.new_value = value;
    bool apply = true;
    hvi_status st = reg_exit(sim, &ev, HVI_EXIT_CR, reply, &apply);
    if (apply)
        *reg = value;
    return st;
}

hvi_status hvi_sim_msr_write(hvi_sim *sim, uint32_t vcpu, uint32_t msr, uint64_t value,
                             hvi_event_reply *reply)
{
    if (!sim || vcpu >= sim->nvcpus)
        return HVI_E_INVAL;
    hvi_event ev;
    ev_init(&ev, HVI_EV_MSR_WRITE, vcpu);
    ev.index = msr, ev.new_value = value;
    (void)hvi_sim_get_msr(sim, vcpu, msr, &ev.old_value);
    bool apply = true;
    hvi_status st = reg_exit(sim, &ev, HVI_EXIT_MSR, reply, &apply);
    if (apply) {
        hvi_status ws = hvi_sim_set_msr(sim, vcpu, msr, value);
        st = st == HVI_OK ? ws : st;
    }
    return st;
}

hvi_status hvi_sim_dtr_load(hvi_sim *sim, uint32_t vcpu, uint32_t which, uint64_t base,
                            uint16_t limit, hvi_event_reply *reply)
{
    if (!sim || vcpu >= sim->nvcpus || which > 1)
        return HVI_E_INVAL;
    hvi_regs *r = &sim->cpu[vcpu].regs;
    hvi_event ev;
    ev_init(&ev, HVI_EV_DTR_LOAD, vcpu);
    ev.index = which, ev.new_value = base, ev.len = limit;
    ev.old_value = which ? r->gdtr_base : r->idtr_base;
    bool apply = true;
    hvi_status st = reg_exit(sim, &ev, HVI_EXIT_DTR, reply, &apply);
    if (apply) {
        if (which)
            r->gdtr_base = base, r->gdtr_limit = limit;
        else
            r->idtr_base = base, r->idtr_limit = limit;
    }
    return st;
}

hvi_status hvi_sim_xcr_write(hvi_sim *sim, uint32_t vcpu, uint32_t xcr, uint64_t value,
                             hvi_event_reply *reply)
{
    if (!sim || vcpu >= sim->nvcpus || xcr != 0)
        return HVI_E_INVAL;
    hvi_event ev;
    ev_init(&ev, HVI_EV_XCR_WRITE, vcpu);
    ev.index = xcr, ev.old_value = sim->cpu[vcpu].xcr0, ev.new_value = value;
    bool apply = true;
    hvi_status st = reg_exit(sim, &ev, HVI_EXIT_XCR, reply, &apply);
    if (apply)
        sim->cpu[vcpu].xcr0 = value;
    return st;
}

hvi_status hvi_sim_vmcall(hvi_sim *sim, uint32_t vcpu, hvi_event_reply *reply)
{
    if (reply)
        reply->action = HVI_ACTION_ALLOW, reply->regs_changed = false;
    if (!sim || vcpu >= sim->nvcpus)
        return HVI_E_INVAL;
    if (!(sim->caps & HVI_CAP_VMCALL))
        return HVI_E_UNSUPPORTED;
    hvi_event ev;
    ev_init(&ev, HVI_EV_VMCALL, vcpu);
    return hvi_sim_raise(sim, &ev, reply);
}

hvi_status hvi_sim_step(hvi_sim *sim, uint32_t vcpu, hvi_event_reply *reply)
{
    if (reply)
        reply->action = HVI_ACTION_ALLOW, reply->regs_changed = false;
    if (!sim || vcpu >= sim->nvcpus)
        return HVI_E_INVAL;
    if (!(sim->caps & HVI_CAP_SINGLE_STEP) || !sim->cpu[vcpu].stepping)
        return HVI_OK;
    hvi_event ev;
    ev_init(&ev, HVI_EV_SINGLE_STEP, vcpu);
    ev.gva = sim->cpu[vcpu].regs.rip;
    return hvi_sim_raise(sim, &ev, reply);
}

hvi_status hvi_sim_tick(hvi_sim *sim)
{
    if (!sim)
        return HVI_E_INVAL;
    if (!sim->engine)
        return HVI_E_STATE;
    return hvi_timer_tick(sim->engine);
}
