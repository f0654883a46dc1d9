/*
 * hvi guest/linux — agents: the borrow-a-task call machine (see lix_agent.h).
 *
 * Everything the guest can influence is checked: the stack window must lie inside the task's
 * stack with LIXA_STACK_MARGIN bytes free below it, every write goes through
 * hvi_gva_write_safe (present and writable at CPL 0), a return is ours only when it comes
 * back to the pad with RSP exactly one slot above the return address we pushed.
 */
#include <stdio.h>
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix_agent.h"
#include "hvi/mem.h"

#define RFLAGS_IF 0x200ull

static uint64_t align_down16(uint64_t v)
{
    return v & ~15ull;
}

hvi_status lixa_layout_argv(struct lixa_block *b, uint64_t top, const char *const *argv,
                            const char *const *envp)
{
    if (!b || !argv || !argv[0] || !argv[0][0])
        return HVI_E_INVAL;
    size_t na = 0, ne = 0, strbytes = 0;
    for (; argv[na]; na++) {
        if (na >= LIXA_MAX_ARGS)
            return HVI_E_LIMIT;
        strbytes += strnlen(argv[na], LIXA_MAX_SCRATCH) + 1;
        if (strbytes > LIXA_MAX_SCRATCH)
            return HVI_E_LIMIT;
    }
    for (; envp && envp[ne]; ne++) {
        if (ne >= LIXA_MAX_ARGS)
            return HVI_E_LIMIT;
        strbytes += strnlen(envp[ne], LIXA_MAX_SCRATCH) + 1;
        if (strbytes > LIXA_MAX_SCRATCH)
            return HVI_E_LIMIT;
    }
    size_t ptrs = (na + 1 + ne + 1) * 8;
    size_t len = (ptrs + strbytes + 15) & ~(size_t)15;
    if (len > LIXA_MAX_SCRATCH)
        return HVI_E_LIMIT;
    if (top < len + 16)
        return HVI_E_RANGE;
    memset(b, 0, sizeof(*b));
    b->len = (uint32_t)len;
    b->base = align_down16(top - len);
    b->argv = b->base;
    b->envp = b->base + (na + 1) * 8;
    size_t at = ptrs;
    for (size_t i = 0; i < na + ne; i++) {
        const char *s = i < na ? argv[i] : envp[i - na];
        size_t l = strlen(s) + 1;
        uint64_t p = b->base + at;
        size_t slot = i < na ? i * 8 : (na + 1 + (i - na)) * 8;
        memcpy(b->buf + slot, &p, 8);
        memcpy(b->buf + at, s, l);
        if (i == 0)
            b->path = p;
        at += l;
    }
    return HVI_OK; /* the NULL terminators are the zeroed slots */
}

static void remove_triggers(struct lixa_machine *m)
{
    for (uint32_t i = 0; i < m->ntriggers; i++)
        if (m->trigger[i]) {
            hvi_hook_remove(m->e, m->trigger[i]);
            m->trigger[i] = NULL;
        }
}

static void remove_pad(struct lixa_machine *m)
{
    if (m->pad_set && m->e->glue.set_breakpoint(m->e->glue.ctx, m->pad, false) == HVI_OK)
        m->pad_set = false;
}

static void finish(struct lixa_machine *m, hvi_status st, const char *why)
{
    if (m->result == HVI_OK && !m->result_taken) {
        m->result = st;
        if (why && why != m->why)
            hvi_strlcpy(m->why, why, sizeof(m->why));
    }
    m->phase = LIXA_DONE;
    m->t_done_ns = hvi_now_ns();
}

/* Put the stack window back exactly as it was at the trigger. */
static hvi_status restore_stack(struct lixa_machine *m)
{
    uint64_t rsp = m->saved.gpr[HVI_RSP];
    return hvi_gva_write(m->e, 0, m->save_lo, m->save_buf, (size_t)(rsp - m->save_lo));
}

/* Lay out one call on the borrowed stack and point *regs at the function. */
static hvi_status place_call(struct lixa_machine *m, const struct lixa_call *c, hvi_regs *regs)
{
    uint64_t base = c->len ? c->data_base : align_down16(m->top);
    if (!c->fn || c->len > LIXA_MAX_SCRATCH || (c->len && !c->data) || (base & 15) ||
        base < m->save_lo + 16 || base > m->top || c->len > m->top - base)
        return HVI_E_RANGE;
    uint64_t ret_slot = base - 8;
    if (c->len && hvi_gva_write_safe(m->e, 0, base, c->data, c->len, 0) != HVI_OK)
        return HVI_E_DENIED;
    if (hvi_gva_write_safe(m->e, 0, ret_slot, &m->pad, 8, 0) != HVI_OK)
        return HVI_E_DENIED;
    m->ret_slot = ret_slot;
    memcpy(regs->gpr, m->saved.gpr, sizeof(regs->gpr));
    regs->rflags = m->saved.rflags;
    static const int argreg[6] = {HVI_RDI, HVI_RSI, HVI_RDX, HVI_RCX, HVI_R8, HVI_R9};
    for (int i = 0; i < 6; i++)
        regs->gpr[argreg[i]] = c->args[i];
    regs->gpr[HVI_RAX] = 0;
    regs->gpr[HVI_RSP] = ret_slot; /* at a function entry RSP = 8 mod 16, as after a call */
    regs->rip = c->fn;
    return HVI_OK;
}

/* Back to the interrupted point: stack window and registers as saved. */
static void restore_task(struct lixa_machine *m, hvi_regs *regs)
{
    if (restore_stack(m) != HVI_OK)
        hvi_log(m->e, HVI_LOG_ERROR, "linux agent: could not restore the borrowed stack window");
    memcpy(regs->gpr, m->saved.gpr, sizeof(regs->gpr));
    regs->rip = m->saved.rip;
    regs->rflags = m->saved.rflags;
}

static hvi_status on_pad(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply, void *ctx)
{
    struct lixa_machine *m = ctx;
    if (m->phase != LIXA_IN_CALL || ev->gva != m->pad)
        return HVI_OK;
    hvi_regs now;
    memset(&now, 0, sizeof(now));
    if (e->glue.get_regs(e->glue.ctx, ev->vcpu, HVI_REGS_GPR, &now) != HVI_OK)
        return hvi_fail(e, HVI_E_BACKEND, "linux agent: cannot read vCPU %u at the pad", ev->vcpu);
    if (now.gpr[HVI_RSP] != m->ret_slot + 8 || now.rip != m->pad) {
        m->wrong_returns++;
        hvi_log(e, HVI_LOG_WARN,
                "linux agent: pad hit on vCPU %u with RSP 0x%llx, expected "
                "0x%llx: not the borrowed task",
                ev->vcpu, (unsigned long long)now.gpr[HVI_RSP],
                (unsigned long long)(m->ret_slot + 8));
        return HVI_OK;
    }
    m->last_rax = now.gpr[HVI_RAX];
    m->calls++;
    m->other_vcpu += ev->vcpu != m->vcpu;
    struct lixa_call c;
    memset(&c, 0, sizeof(c));
    int r = m->next(m->job, false, m->last_rax, m->top, &c);
    bool again = false;
    if (r == 1) {
        hvi_status st = place_call(m, &c, &now);
        again = st == HVI_OK;
        if (!again) {
            r = st;
            snprintf(m->why, sizeof(m->why), "the next call could not be placed on the stack");
        }
    }
    if (!again)
        restore_task(m, &now);
    /* the registers are written before anything else changes: if this fails the vCPU would
     * execute the int3 padding, so the pad stays armed and the next hit retries */
    if (e->glue.set_regs(e->glue.ctx, ev->vcpu, HVI_REGS_GPR, &now) != HVI_OK)
        return hvi_fail(e, HVI_E_BACKEND, "linux agent: cannot write vCPU %u's registers",
                        ev->vcpu);
    reply->regs_changed = true;
    if (!again) {
        remove_pad(m);
        finish(m, r == 0 ? HVI_OK : (hvi_status)r, r == 0 ? NULL : m->why);
    }
    return HVI_OK;
}

static bool on_trigger(hvi_engine *e, hvi_hook *hook, uint32_t vcpu, hvi_regs *regs, void *ctx)
{
    struct lixa_machine *m = ctx;
    if (m->phase != LIXA_WAIT_TRIGGER)
        return false;
    m->trigger_hits++;
    uint64_t rsp = regs->gpr[HVI_RSP], stack_lo = 0;
    for (uint32_t i = 0; i < m->ntriggers; i++)
        if (m->trigger[i] == hook)
            m->trigger_index = i;
    /* kernel mode, interrupts on, the callback's own checks, room on the stack */
    if ((regs->seg[HVI_CS].selector & 3) != 0 || !(regs->rflags & RFLAGS_IF) || rsp < LIXA_SAVE ||
        m->accept(m->accept_ctx, vcpu, regs, &stack_lo) != HVI_OK || rsp - LIXA_SAVE < stack_lo ||
        rsp - LIXA_SAVE - stack_lo < LIXA_STACK_MARGIN) {
        m->rejected++;
        return false;
    }
    m->save_lo = rsp - LIXA_SAVE;
    if (hvi_gva_read(e, 0, m->save_lo, m->save_buf, LIXA_SAVE) != HVI_OK) {
        m->rejected++;
        return false;
    }
    m->saved = *regs;
    m->vcpu = vcpu;
    m->top = align_down16(rsp - LIXA_REDZONE);
    struct lixa_call c;
    memset(&c, 0, sizeof(c));
    int r = m->next(m->job, true, 0, m->top, &c);
    hvi_status st = r == 1 ? place_call(m, &c, regs) : (r < 0 ? (hvi_status)r : HVI_E_INTERNAL);
    if (st == HVI_OK && !m->pad_set) {
        st = e->glue.set_breakpoint(e->glue.ctx, m->pad, true) == HVI_OK ? HVI_OK : HVI_E_BACKEND;
        m->pad_set = st == HVI_OK;
    }
    remove_triggers(m);
    m->t_trigger_ns = hvi_now_ns();
    if (st != HVI_OK) {
        restore_task(m, regs); /* puts back whatever part was written */
        finish(m, st,
               "the first call could not be placed (stack not writable, or the return "
               "breakpoint could not be set)");
        return true;
    }
    m->phase = LIXA_IN_CALL;
    m->call_deadline_ns = m->t_trigger_ns + (uint64_t)m->call_timeout_ms * 1000000ull;
    return true;
}

/* Place a detour on every trigger address that has none (another layer's detour there is left
 * alone). Returns how many of ours are placed. */
static uint32_t place_triggers(struct lixa_machine *m)
{
    uint32_t placed = 0;
    for (uint32_t i = 0; i < m->ntriggers; i++) {
        if (!m->trigger[i] &&
            hvi_detour_add(m->e, m->trigger_gva[i], on_trigger, m, &m->trigger[i]) != HVI_OK)
            m->trigger[i] = NULL;
        placed += m->trigger[i] != NULL;
    }
    return placed;
}

hvi_status lixa_start(struct lixa_machine *m, hvi_engine *e, const uint64_t *triggers, uint32_t n,
                      uint64_t pad, lixa_accept_fn accept, void *actx, lixa_next_fn next, void *job,
                      uint32_t trigger_timeout_ms, uint32_t call_timeout_ms)
{
    if (!m || !e || !triggers || !n || n > LIXA_MAX_TRIGGERS || !pad || !accept || !next)
        return HVI_E_INVAL;
    if (m->phase == LIXA_WAIT_TRIGGER || m->phase == LIXA_IN_CALL)
        return hvi_fail(e, HVI_E_STATE, "linux agent: another agent is still running");
    if (!(e->glue.caps & HVI_CAP_BREAKPOINT) || !(e->glue.caps & HVI_CAP_REGS_WRITE))
        return hvi_fail(
            e, HVI_E_UNSUPPORTED,
            "linux agent: the backend needs hypervisor breakpoints and register writes");
    bool handler = m->handler_added && m->e == e;
    if (handler && m->pad_set) { /* a pad breakpoint a finished run could not remove */
        remove_pad(m);
        if (m->pad_set)
            return hvi_fail(e, HVI_E_BACKEND,
                            "linux agent: the previous return breakpoint "
                            "could not be removed");
    }
    if (!handler && hvi_engine_add_handler(e, HVI_EV_BREAKPOINT, on_pad, m) != HVI_OK)
        return hvi_fail(e, HVI_E_LIMIT, "linux agent: no room for a breakpoint handler");
    memset(m, 0, sizeof(*m));
    m->handler_added = true;
    m->e = e;
    m->pad = pad;
    m->accept = accept, m->accept_ctx = actx, m->next = next, m->job = job;
    m->call_timeout_ms = call_timeout_ms;
    m->t_start_ns = hvi_now_ns();
    m->trigger_deadline_ns = m->t_start_ns + (uint64_t)trigger_timeout_ms * 1000000ull;
    for (uint32_t i = 0; i < n; i++)
        m->trigger_gva[m->ntriggers++] = triggers[i];
    if (!place_triggers(m)) {
        m->phase = LIXA_IDLE;
        return hvi_fail(e, HVI_E_BUSY, "linux agent: no trigger breakpoint could be placed");
    }
    m->phase = LIXA_WAIT_TRIGGER;
    return HVI_OK;
}

void lixa_tick(struct lixa_machine *m)
{
    uint64_t now = hvi_now_ns();
    if (m->phase == LIXA_WAIT_TRIGGER && now > m->trigger_deadline_ns) {
        remove_triggers(m);
        snprintf(m->why, sizeof(m->why),
                 "no task entered a trigger point in a sleepable context in time (%llu hits, "
                 "%llu rejected): is the guest idle?",
                 (unsigned long long)m->trigger_hits, (unsigned long long)m->rejected);
        finish(m, HVI_E_TIMEOUT, NULL);
    } else if (m->phase == LIXA_IN_CALL && now > m->call_deadline_ns && !m->result_taken) {
        m->result = HVI_E_TIMEOUT;
        snprintf(m->why, sizeof(m->why),
                 "the called kernel function has not returned after %u ms; the borrowed task "
                 "is restored when it returns (detach waits for it)",
                 m->call_timeout_ms);
        m->result_taken = true;
    }
}

hvi_status lixa_cancel(struct lixa_machine *m)
{
    if (m->phase == LIXA_IN_CALL)
        return HVI_E_BUSY;
    if (m->phase == LIXA_WAIT_TRIGGER) {
        remove_triggers(m);
        finish(m, HVI_E_STATE, "cancelled before a task was borrowed");
    }
    return HVI_OK;
}

hvi_status lixa_poll(const struct lixa_machine *m)
{
    switch (m->phase) {
    case LIXA_IDLE: return HVI_E_STATE;
    case LIXA_WAIT_TRIGGER: return HVI_E_BUSY;
    case LIXA_IN_CALL: return m->result_taken ? m->result : HVI_E_BUSY;
    default: return m->result;
    }
}
