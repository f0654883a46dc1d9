/*
 * hvi guest/linux — system-call entry MSRs (LSTAR, SYSENTER_EIP) checked (and denied) by a
 * one-shot agent, for backends that cannot read or write MSRs (QEMU's gdbstub exposes none).
 *
 * On a timer tick the guest is paused and one vCPU found in kernel mode (CPL 0) is taken, in
 * turn over the vCPUs (each vCPU alternating between the MSRs): the engine saves its registers,
 * writes `rdmsr` (0f 32) into int3 padding of kernel text (found in the shadow), sets RIP there
 * and RCX = the MSR, arms a hypervisor breakpoint right after the instruction and lets the guest
 * go. When the breakpoint is reported, EDX:EAX is the MSR. A value other than the kernel's entry
 * point (entry_SYSCALL_64, entry_SYSENTER_compat) is an alert; in deny mode the stub becomes
 * `wrmsr` (0f 30) with EDX:EAX = that entry point, RIP is set back to it and the same
 * breakpoint reports its end. Then the padding bytes and every register are put back and
 * the breakpoint is removed. Limits: skipped on a tick that finds every vCPU in user mode;
 * interrupts taken before the instruction return to the stub (harmless); the text check skips
 * the stub bytes while the agent is armed.
 */
#include <stdio.h>
#include <string.h>

#include "guest/linux/lix_protect.h"
#include "hvi/mem.h"

#define LIXP_MSR_EVERY 4u /* ticks between two agent runs */

enum lstar_how { LSTAR_LOGGED, LSTAR_DENIED, LSTAR_DENY_FAILED, LSTAR_DENY_UNCONFIRMED };

/* The MSRs checked, with the kernel symbol each must hold (a kernel without the symbol, e.g.
 * SYSENTER without IA32 emulation, does not get that MSR checked). */
static const struct {
    uint32_t msr;
    const char *object, *name, *symbol;
} g_kinds[LIXP_MSR_KINDS] = {
    {0xc0000082u, "lstar", "LSTAR", "entry_SYSCALL_64"},
    {0x176u, "sysenter_eip", "SYSENTER_EIP", "entry_SYSENTER_compat"},
};

static bool find_padding(struct lixp_state *s, uint64_t *stub)
{
    for (uint32_t i = 0; i < s->nregions; i++) {
        const struct lixp_region *r = &s->regions[i];
        size_t off = 0;
        if (strcmp(r->object, "kernel-text"))
            continue;
        if (lix_find_int3_pad(r->shadow, r->len < (8u << 20) ? r->len : (8u << 20), &off)) {
            *stub = r->gva + off;
            return true;
        }
    }
    return false;
}

static void lstar_alert(hvi_engine *e, struct lixp_state *s, uint32_t vcpu, uint64_t lstar,
                        enum lstar_how how)
{
    static const char *const what[] = {
        [LSTAR_LOGGED] = "",
        [LSTAR_DENIED] = " written back (one-shot wrmsr agent)",
        [LSTAR_DENY_FAILED] = " could not be written back (agent placement failed)",
        [LSTAR_DENY_UNCONFIRMED] = " written back, not confirmed (the agent did not complete)"};
    uint32_t k = s->msr_kind;
    hvi_alert a;
    hvi_alert_init(&a, HVI_ALERT_MSR, vcpu);
    a.action = how == LSTAR_DENIED ? HVI_ALERT_DENIED : HVI_ALERT_LOGGED;
    a.old_value = s->msr_expected[k];
    a.new_value = lstar;
    a.pid = -1;
    hvi_strlcpy(a.object, g_kinds[k].object, sizeof(a.object));
    lixp_alert_writer(s, &a, lstar);
    snprintf(a.detail, sizeof(a.detail),
             "MSR %s of vCPU %u is 0x%llx, expected %s 0x%llx (read by a one-shot rdmsr agent); "
             "now points into %s%s%s%s; writer RIP unknown (timer check)",
             g_kinds[k].name, vcpu, (unsigned long long)lstar, g_kinds[k].symbol,
             (unsigned long long)s->msr_expected[k], a.module[0] ? a.module : "unknown memory",
             how == LSTAR_LOGGED ? "" : "; ", how == LSTAR_LOGGED ? "" : g_kinds[k].symbol,
             what[how]);
    hvi_alert_emit(e, &a);
    s->stats.violations++;
    s->found++;
}

static void agent_disarm(hvi_engine *e, struct lixp_state *s)
{
    static const uint8_t pad[2] = {0xcc, 0xcc};
    if (hvi_gva_write(e, 0, s->msr_stub, pad, 2) == HVI_OK)
        hvi_code_written(e, s->msr_stub, pad, 2);
    e->glue.set_breakpoint(e->glue.ctx, s->msr_stub + 2, false);
    s->msr_armed = false;
}

/* Give up an armed agent whose breakpoint never came. The vCPU's registers are put back and the
 * stub removed only while it is still in the stub (before the instruction or at the breakpoint
 * after it). Anywhere else it has moved on, e.g. into an interrupt handler that will return to
 * the stub: writing the saved registers would corrupt whatever it runs now, and removing the
 * stub would leave it returning into int3 padding. Then nothing is touched: HVI_E_BUSY. */
static hvi_status agent_undo_if_at_stub(hvi_engine *e, struct lixp_state *s)
{
    const hvi_glue *g = &e->glue;
    if (g->pause(g->ctx) != HVI_OK)
        return HVI_E_BUSY;
    hvi_regs now;
    memset(&now, 0, sizeof(now));
    bool at_stub = g->get_regs(g->ctx, s->msr_vcpu, HVI_REGS_GPR, &now) == HVI_OK &&
                   now.rip >= s->msr_stub && now.rip <= s->msr_stub + 2;
    if (at_stub) {
        hvi_log(e, 1, "linux protect: LSTAR agent did not complete on vCPU %u, disarmed",
                s->msr_vcpu);
        g->set_regs(g->ctx, s->msr_vcpu, HVI_REGS_GPR, &s->msr_saved);
        agent_disarm(e, s);
        if (s->msr_writing) { /* the wrmsr may or may not have run */
            lstar_alert(e, s, s->msr_vcpu, s->msr_bad, LSTAR_DENY_UNCONFIRMED);
            s->msr_last[s->msr_vcpu][s->msr_kind] = 0; /* read it again, judge afresh */
            s->msr_writing = false;
        }
    }
    g->resume(g->ctx);
    return at_stub ? HVI_OK : HVI_E_BUSY;
}

/* Deny: turn the stub into `wrmsr` of the entry point and run the vCPU through it once more;
 * the same breakpoint after it reports the end (on_breakpoint). False when it cannot be placed
 * (the stub keeps rdmsr; the caller puts everything back). */
static bool agent_write_back(hvi_engine *e, struct lixp_state *s, uint32_t v, uint64_t bad,
                             hvi_event_reply *reply)
{
    static const uint8_t wrmsr[2] = {0x0f, 0x30};
    uint64_t want = s->msr_expected[s->msr_kind];
    hvi_regs run = s->msr_saved;
    run.rip = s->msr_stub;
    run.gpr[HVI_RCX] = g_kinds[s->msr_kind].msr;
    run.gpr[HVI_RAX] = want & 0xffffffffull;
    run.gpr[HVI_RDX] = want >> 32;
    if (hvi_gva_write(e, 0, s->msr_stub, wrmsr, 2) != HVI_OK)
        return false;
    hvi_code_written(e, s->msr_stub, wrmsr, 2);
    if (e->glue.set_regs(e->glue.ctx, v, HVI_REGS_GPR, &run) != HVI_OK)
        return false;
    reply->regs_changed = true;
    s->msr_writing = true;
    s->msr_bad = bad;
    s->msr_wait = 0;
    return true;
}

static hvi_status on_breakpoint(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply,
                                void *ctx)
{
    struct lixp_state *s = ctx;
    uint32_t v = s->msr_vcpu, k = s->msr_kind;
    if (!s->msr_armed || ev->gva != s->msr_stub + 2 || ev->vcpu != v)
        return HVI_OK;
    if (s->msr_writing) { /* the wrmsr ran: put the vCPU back, report the denial */
        if (e->glue.set_regs(e->glue.ctx, v, HVI_REGS_GPR, &s->msr_saved) == HVI_OK)
            reply->regs_changed = true;
        agent_disarm(e, s);
        s->msr_writing = false;
        s->msr_writes++;
        s->stats.restored++;
        s->msr_last[v][k] = s->msr_expected[k]; /* a new bad value later is a new alert */
        lstar_alert(e, s, v, s->msr_bad, LSTAR_DENIED);
        return HVI_OK;
    }
    hvi_regs now;
    memset(&now, 0, sizeof(now));
    hvi_status st = e->glue.get_regs(e->glue.ctx, v, HVI_REGS_GPR, &now);
    uint64_t lstar = (now.gpr[HVI_RDX] & 0xffffffffull) << 32 | (now.gpr[HVI_RAX] & 0xffffffffull);
    s->msr_reads++;
    bool bad = st == HVI_OK && lstar != s->msr_expected[k];
    if (bad && !(e->options & HVI_OPT_LOG_ONLY)) {
        if (agent_write_back(e, s, v, lstar, reply))
            return HVI_OK; /* armed again, with wrmsr */
        /* put the vCPU back exactly where it was, whatever happened */
        if (e->glue.set_regs(e->glue.ctx, v, HVI_REGS_GPR, &s->msr_saved) == HVI_OK)
            reply->regs_changed = true;
        agent_disarm(e, s);
        if (lstar != s->msr_last[v][k])
            lstar_alert(e, s, v, lstar, LSTAR_DENY_FAILED);
        s->msr_last[v][k] = lstar;
        return HVI_OK;
    }
    if (e->glue.set_regs(e->glue.ctx, v, HVI_REGS_GPR, &s->msr_saved) == HVI_OK)
        reply->regs_changed = true;
    agent_disarm(e, s);
    /* one alert per new bad value (not one per agent run) */
    if (bad && lstar != s->msr_last[v][k])
        lstar_alert(e, s, v, lstar, LSTAR_LOGGED);
    if (st == HVI_OK)
        s->msr_last[v][k] = lstar;
    return HVI_OK;
}

/* The next vCPU (in turn from msr_next) paused in kernel mode; false when none is. */
static bool pick_vcpu(hvi_engine *e, struct lixp_state *s, uint32_t *vcpu, hvi_regs *r)
{
    const hvi_glue *g = &e->glue;
    uint32_t n = 1;
    if (g->vcpu_count && (g->vcpu_count(g->ctx, &n) != HVI_OK || !n))
        n = 1;
    if (n > LIXP_MAX_VCPUS)
        n = LIXP_MAX_VCPUS;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = (s->msr_next + i) % n;
        memset(r, 0, sizeof(*r));
        if (g->get_regs(g->ctx, v, HVI_REGS_GPR | HVI_REGS_SEG, r) == HVI_OK &&
            (r->seg[HVI_CS].selector & 3) == 0) {
            *vcpu = v;
            s->msr_next = (v + 1) % n;
            return true;
        }
    }
    return false;
}

/* Called on every tick with HVI_OPT_KM_MSR. */
void lixp_check_msr(hvi_engine *e, struct lixp_state *s)
{
    const hvi_glue *g = &e->glue;
    if (s->msr_armed) { /* the breakpoint never came: give up, but only if it is safe */
        if (++s->msr_wait > 8 && agent_undo_if_at_stub(e, s) == HVI_E_BUSY && s->msr_wait == 9)
            hvi_log(e, 1, "linux protect: LSTAR agent did not complete and vCPU %u is not at "
                          "its stub: left armed until it returns there", s->msr_vcpu);
        return;
    }
    if (s->msr_disabled || (s->stats.checks % LIXP_MSR_EVERY) != 0)
        return;
    if (!s->msr_stub) {
        for (uint32_t k = 0; k < LIXP_MSR_KINDS; k++)
            if (lix_kallsyms_lookup(&s->k->ks, g_kinds[k].symbol, &s->msr_expected[k]) != HVI_OK)
                s->msr_expected[k] = 0;
        if (!(g->caps & HVI_CAP_BREAKPOINT) || !(g->caps & HVI_CAP_REGS_WRITE) || !g->pause ||
            !g->resume || !s->msr_expected[0] || !find_padding(s, &s->msr_stub) ||
            hvi_engine_add_handler(e, HVI_EV_BREAKPOINT, on_breakpoint, s) != HVI_OK) {
            s->msr_disabled = true;
            hvi_log(e, 1, "linux protect: LSTAR agent unavailable on this backend/kernel");
            return;
        }
    }
    if (g->pause(g->ctx) != HVI_OK)
        return;
    hvi_regs r;
    uint32_t v = 0;
    if (!pick_vcpu(e, s, &v, &r)) {
        g->resume(g->ctx);
        return;
    }
    static const uint8_t rdmsr[2] = {0x0f, 0x32};
    uint32_t k = s->msr_next_kind[v] % LIXP_MSR_KINDS;
    if (!s->msr_expected[k])
        k = 0; /* LSTAR is always there (checked above) */
    s->msr_next_kind[v] = (uint8_t)((k + 1) % LIXP_MSR_KINDS);
    s->msr_saved = r;
    s->msr_vcpu = v;
    s->msr_kind = k;
    s->msr_writing = false;
    hvi_regs run = r;
    run.rip = s->msr_stub;
    run.gpr[HVI_RCX] = g_kinds[k].msr;
    bool placed = hvi_gva_write(e, 0, s->msr_stub, rdmsr, 2) == HVI_OK;
    if (placed)
        hvi_code_written(e, s->msr_stub, rdmsr, 2);
    if (!placed || g->set_breakpoint(g->ctx, s->msr_stub + 2, true) != HVI_OK) {
        agent_disarm(e, s);
        g->resume(g->ctx);
        return;
    }
    s->msr_armed = true;
    s->msr_wait = 0;
    if (g->set_regs(g->ctx, v, HVI_REGS_GPR, &run) != HVI_OK) {
        agent_disarm(e, s);
        g->set_regs(g->ctx, v, HVI_REGS_GPR, &s->msr_saved);
    }
    g->resume(g->ctx);
}

/* Detach: an armed agent is undone (registers, stub bytes, breakpoint) when that is safe;
 * HVI_E_BUSY while its vCPU is elsewhere (the engine retries the detach from the timer). */
hvi_status lixp_msr_detach(hvi_engine *e, struct lixp_state *s)
{
    return s->msr_armed ? agent_undo_if_at_stub(e, s) : HVI_OK;
}
