/* hvi guest/linux — events by detours: process create/exec/exit and module load/unload on the
 * kernel functions of the CAMI hooks list, recorded by in-guest detours into a ring
 * (lix_indetour.c drains it and calls lixe_ring_record) or, where the ring cannot carry an
 * event, by hypervisor breakpoints; the engine's process and module lists kept by those events;
 * and exec blocking (the exec stub's doorbell, lix_events_ring.c, or a breakpoint on
 * begin_new_exec, placed only while there is something to block: early return with -EACCES,
 * before the exec's point of no return). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix_events.h"
#include "guest/linux/lix_events_state.h"
#include "guest/linux/lix_indetour.h"
#include "hvi/cami.h"
#include "hvi/hook.h"
#include "hvi/linux_events.h"
#include "hvi/linux_indetour.h"

static const char *const g_what[EV_N] = {"create", "exec", "exit", "module-load", "module-unload"};

/* Ring event id per EV_*, and the function lix_indetour.c patches for it. */
static const uint32_t g_ring_id[EV_N] = {HVI_LIXD_FORK, HVI_LIXD_EXEC, HVI_LIXD_EXIT,
                                         HVI_LIXD_MOD_LOAD, HVI_LIXD_MOD_UNLOAD};
static const char *const g_ring_fn[EV_N] = {"wake_up_new_task", "begin_new_exec", "do_exit",
                                            "module_param_sysfs_setup",
                                            "module_param_sysfs_remove"};

static uint64_t slot_opts(int ev);

/* ---- alerts ---- */

void lixe_emit(hvi_engine *e, uint32_t type, uint32_t action, uint32_t vcpu,
               const struct lixe_slot *sl, uint64_t gva, const char *object, int32_t pid,
               const char *comm, const char *fmt, ...)
{
    hvi_alert a;
    hvi_alert_init(&a, type, vcpu);
    a.action = action;
    a.rip = sl->addr;
    a.gva = gva;
    hvi_strlcpy(a.object, object, sizeof(a.object));
    hvi_strlcpy(a.symbol, sl->fn, sizeof(a.symbol));
    hvi_strlcpy(a.module, "kernel", sizeof(a.module));
    a.pid = pid;
    hvi_strlcpy(a.comm, comm ? comm : "", sizeof(a.comm));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a.detail, sizeof(a.detail), fmt, ap);
    va_end(ap);
    hvi_alert_emit(e, &a);
}

struct lixe_state *lixe_state_of(hvi_engine *e)
{
    return e ? e->lixe : NULL;
}

void lixe_bad(hvi_engine *e, struct lixe_state *s, int ev, hvi_status st, uint64_t arg)
{
    s->st.bad++;
    hvi_log(e, HVI_LOG_WARN, "linux events: %s at %s: argument 0x%llx not decoded: %s", g_what[ev],
            s->slot[ev].fn, (unsigned long long)arg, hvi_strstatus(st));
}

static hvi_status current_task(hvi_engine *e, struct lixe_state *s, const hvi_regs *regs,
                               uint64_t *task)
{
    if (!s->have_current || !(regs->valid & HVI_REGS_FSGS))
        return HVI_E_UNSUPPORTED;
    return lixe_current(lix_get(e), regs->gs_base, s->pcpu_current, task);
}

/*
 * Resume without a step-over: when the function starts with no-op instructions (endbr64, the
 * 5-byte nop that ftrace leaves at __fentry__ call sites) that are still there, move RIP past
 * them. The backend then simply continues (regs_changed), which on QEMU avoids the single-step
 * and breakpoint toggling that make TCG drop its translated code (docs/linux-guest.md, Events).
 * Returns the detour callback's "registers changed" answer.
 */
static bool resume_past_nops(hvi_engine *e, struct lixe_state *s, struct lixe_slot *sl,
                             hvi_regs *regs)
{
    uint8_t now[16];
    if (!sl->skip || regs->rip != sl->addr || !(e->glue.caps & HVI_CAP_REGS_WRITE) ||
        lix_read(lix_get(e), sl->addr, now, sl->skip) != HVI_OK || memcmp(now, sl->nops, sl->skip))
        return false; /* the code changed (ftrace on): ordinary step-over */
    regs->rip = sl->addr + sl->skip;
    s->st.stepless++;
    return true;
}

/* Length of the no-op prefix of code[0..len): endbr64, nopl 0(%rax,%rax,1) (5 and 6 bytes), nop. */
uint8_t lixe_nop_prefix(const uint8_t *code, size_t len)
{
    static const struct {
        uint8_t n;
        uint8_t b[6];
    } known[] = {{4, {0xf3, 0x0f, 0x1e, 0xfa}},
                 {5, {0x0f, 0x1f, 0x44, 0x00, 0x00}},
                 {6, {0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00}},
                 {2, {0x66, 0x90}},
                 {1, {0x90}}};
    size_t pos = 0;
    for (bool more = true; more;) {
        more = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            if (pos + known[i].n <= len && !memcmp(code + pos, known[i].b, known[i].n)) {
                pos += known[i].n;
                more = true;
                break;
            }
    }
    return (uint8_t)pos;
}

/* ---- detour callbacks ---- */

static bool on_create(hvi_engine *e, hvi_hook *h, uint32_t vcpu, hvi_regs *regs, void *ctx)
{
    (void)h, (void)ctx;
    struct lixe_state *s = lixe_state_of(e);
    struct lix_kernel *k = lix_get(e);
    if (!s || !k)
        return false;
    s->st.events++;
    struct lixe_proc p;
    uint64_t task = regs->gpr[HVI_RDI];
    hvi_status st = lixe_decode_task(k, task, &p);
    if (st != HVI_OK) {
        lixe_bad(e, s, EV_CREATE, st, task);
        return false;
    }
    if (p.pid != p.tgid) {
        s->st.threads++;
        return false;
    }
    s->st.creates++;
    if (s->procs_valid && lixe_proc_put(&s->l, &p) != HVI_OK)
        s->procs_valid = false; /* full: the list can no longer be trusted */
    lixe_emit(e, HVI_EVENT_PROCESS_CREATE, HVI_ALERT_ALLOWED, vcpu, &s->slot[EV_CREATE], task,
              "task", p.pid, p.comm, "ppid=%d kernel_thread=%d exe=%s", p.ppid, p.kernel_thread,
              p.exe);
    return false;
}

const char *lixe_block_rule(const struct lixe_state *s, const struct lixe_exec *x)
{
    for (size_t i = 0; i < s->nblocks; i++)
        if (!strcmp(s->blocks[i], x->filename) || !strcmp(s->blocks[i], x->interp) ||
            !strcmp(s->blocks[i], x->exe))
            return s->blocks[i];
    return NULL;
}

/*
 * With the exec event in the ring, the exec breakpoint (blocking only) sits on begin_new_exec's
 * first byte, before the in-guest detour's CALL that replaced the ftrace NOP. Do what that CALL
 * does — push the address after it, jump to the stub — so the vCPU continues without a
 * step-over and the stub records the exec as usual. false (ordinary step-over, which runs the
 * CALL) when the bytes are not exactly the prefix and our CALL, or the stack is not writable.
 */
static bool resume_into_stub(hvi_engine *e, struct lixe_state *s, const struct lixe_slot *sl,
                             hvi_regs *regs)
{
    uint64_t site = 0, stub = 0;
    uint8_t now[16], call[5];
    if (!lixd_site_stub(e, HVI_LIXD_EXEC, &site, &stub) || regs->rip != sl->addr ||
        site < sl->addr || site - sl->addr > 8 || !(e->glue.caps & HVI_CAP_REGS_WRITE) ||
        !lixd_call_emit(site, stub, call))
        return false;
    size_t pre = (size_t)(site - sl->addr);
    if (lix_read(lix_get(e), sl->addr, now, pre + 5) != HVI_OK || memcmp(now, sl->nops, pre) ||
        memcmp(now + pre, call, 5))
        return false;
    uint64_t ret = site + 5, rsp = regs->gpr[HVI_RSP] - 8;
    uint64_t cr3 = (regs->valid & HVI_REGS_CR) ? regs->cr3 : 0;
    if (!lix_is_kptr(rsp) || (rsp & 7) || hvi_gva_write(e, cr3, rsp, &ret, 8) != HVI_OK)
        return false;
    regs->gpr[HVI_RSP] = rsp;
    regs->rip = stub;
    s->st.stepless++;
    return true;
}

static bool on_exec(hvi_engine *e, hvi_hook *h, uint32_t vcpu, hvi_regs *regs, void *ctx)
{
    (void)h, (void)ctx;
    struct lixe_state *s = lixe_state_of(e);
    struct lix_kernel *k = lix_get(e);
    if (!s || !k)
        return false;
    bool ring = (s->ring >> EV_EXEC) & 1; /* the event itself comes through the ring */
    if (!ring)
        s->st.events++;
    struct lixe_exec x;
    uint64_t bprm = regs->gpr[HVI_RDI], task = 0;
    hvi_status st = lixe_decode_exec(k, &s->bprm, bprm, &x);
    struct lixe_proc p;
    if (st == HVI_OK && (st = current_task(e, s, regs, &task)) == HVI_OK)
        st = lixe_decode_task(k, task, &p);
    if (st != HVI_OK) {
        lixe_bad(e, s, EV_EXEC, st, bprm);
        return false;
    }
    const char *rule = (e->options & HVI_OPT_BLOCK_EXEC) ? lixe_block_rule(s, &x) : NULL;
    if (rule) {
        st = hvi_detour_return(e, regs, (uint64_t)(int64_t)-LIXE_EACCES);
        if (st == HVI_OK) {
            if (ring)
                s->st.events++;
            s->st.blocked++;
            lixe_emit(e, HVI_EVENT_EXEC_BLOCKED, HVI_ALERT_DENIED, vcpu, &s->slot[EV_EXEC], task,
                      "exec", p.tgid, p.comm, "rule=%s filename=%s interp=%s exe=%s", rule,
                      x.filename, x.interp, x.exe);
            return true;
        }
        hvi_log(e, HVI_LOG_ERROR, "linux events: exec of %s not blocked: %s", x.filename,
                hvi_strstatus(st));
    }
    if (ring)
        return resume_into_stub(e, s, &s->slot[EV_EXEC], regs);
    if (!(e->options & HVI_OPT_EVENT_PROCESS))
        return false;
    s->st.execs++;
    /* after begin_new_exec the task is named after the file execve was given (kbasename) and
     * its mm's exe_file is bprm->file; a non-leader thread takes over the leader's pid */
    char old_comm[17];
    memcpy(old_comm, p.comm, sizeof(old_comm));
    struct lixe_proc n = p;
    n.pid = p.tgid;
    n.kernel_thread = false;
    hvi_strlcpy(n.comm, lixe_basename(x.filename), sizeof(n.comm) - 1);
    n.comm[15] = 0;
    hvi_strlcpy(n.exe, x.exe, sizeof(n.exe));
    if (s->procs_valid && lixe_proc_put(&s->l, &n) != HVI_OK)
        s->procs_valid = false;
    lixe_emit(e, HVI_EVENT_PROCESS_EXEC, HVI_ALERT_ALLOWED, vcpu, &s->slot[EV_EXEC], task, "task",
              n.pid, n.comm, "ppid=%d old_comm=%s filename=%s interp=%s exe=%s", p.ppid, old_comm,
              x.filename, x.interp, x.exe);
    return false;
}

static bool on_task_exit(hvi_engine *e, hvi_hook *h, uint32_t vcpu, hvi_regs *regs, void *ctx)
{
    (void)h, (void)ctx;
    struct lixe_state *s = lixe_state_of(e);
    struct lix_kernel *k = lix_get(e);
    if (!s || !k)
        return false;
    s->st.events++;
    uint64_t task = 0;
    struct lixe_proc p;
    hvi_status st = current_task(e, s, regs, &task);
    if (st == HVI_OK)
        st = lixe_decode_task(k, task, &p);
    if (st != HVI_OK) {
        lixe_bad(e, s, EV_EXIT, st, regs->gs_base);
        return false;
    }
    if (p.pid != p.tgid) {
        s->st.threads++;
        return false;
    }
    s->st.exits++;
    if (s->procs_valid)
        lixe_proc_del(&s->l, p.pid);
    int64_t code = (int64_t)regs->gpr[HVI_RDI];
    lixe_emit(e, HVI_EVENT_PROCESS_EXIT, HVI_ALERT_ALLOWED, vcpu, &s->slot[EV_EXIT], task, "task",
              p.pid, p.comm, "ppid=%d code=%lld exe=%s", p.ppid, (long long)code, p.exe);
    return false;
}

/* A decoded module load/unload, from a breakpoint or the in-guest ring: the module list, the
 * counters and the event line. */
void lixe_module_event(hvi_engine *e, struct lixe_state *s, bool load, uint32_t vcpu,
                       const struct lixe_mod *m, const struct lixe_proc *p)
{
    if (load) {
        s->st.module_loads++;
        if (s->mods_valid && lixe_mod_put(&s->l, m) != HVI_OK)
            s->mods_valid = false;
    } else {
        s->st.module_unloads++;
        if (s->mods_valid)
            lixe_mod_del(&s->l, m->addr);
    }
    lixe_emit(e, load ? HVI_EVENT_MODULE_LOAD : HVI_EVENT_MODULE_UNLOAD, HVI_ALERT_ALLOWED, vcpu,
              &s->slot[load ? EV_MLOAD : EV_MUNLOAD], m->addr, "module", p->tgid, p->comm,
              "name=%s base=0x%llx size=%u text_size=%u state=%u", m->name,
              (unsigned long long)m->base, m->size, m->text_size, m->state);
}

static bool on_module(hvi_engine *e, bool load, uint32_t vcpu, const hvi_regs *regs)
{
    struct lixe_state *s = lixe_state_of(e);
    struct lix_kernel *k = lix_get(e);
    if (!s || !k)
        return false;
    s->st.events++;
    int ev = load ? EV_MLOAD : EV_MUNLOAD;
    struct lixe_mod m;
    uint64_t mod = regs->gpr[HVI_RDI], task = 0;
    hvi_status st = lixe_decode_module(k, mod, &m);
    if (st != HVI_OK) {
        lixe_bad(e, s, ev, st, mod);
        return false;
    }
    struct lixe_proc p;
    memset(&p, 0, sizeof(p));
    p.pid = -1;
    if (current_task(e, s, regs, &task) != HVI_OK || lixe_decode_task(k, task, &p) != HVI_OK) {
        memset(&p, 0, sizeof(p));
        p.tgid = -1;
    }
    lixe_module_event(e, s, load, vcpu, &m, &p);
    return false;
}

static bool on_mload(hvi_engine *e, hvi_hook *h, uint32_t vcpu, hvi_regs *regs, void *ctx)
{
    (void)h, (void)ctx;
    return on_module(e, true, vcpu, regs);
}

static bool on_munload(hvi_engine *e, hvi_hook *h, uint32_t vcpu, hvi_regs *regs, void *ctx)
{
    (void)h, (void)ctx;
    return on_module(e, false, vcpu, regs);
}

static const hvi_detour_cb g_cb[EV_N] = {on_create, on_exec, on_task_exit, on_mload, on_munload};

/* Every detour: the event's handler, then (unless it already set the registers, e.g. an early
 * return) a resume past the function's no-op prefix instead of a step-over. */
static bool on_hit(hvi_engine *e, hvi_hook *h, uint32_t vcpu, hvi_regs *regs, void *ctx)
{
    struct lixe_slot *sl = ctx;
    struct lixe_state *s = lixe_state_of(e);
    if (!s || !sl || sl->ev < 0 || sl->ev >= EV_N)
        return false;
    s->st.breakpoint_hits++;
    if (g_cb[sl->ev](e, h, vcpu, regs, s))
        return true;
    return resume_past_nops(e, s, sl, regs);
}

void lixe_ring_record(hvi_engine *e, const struct lixd_record *r)
{
    struct lixe_state *s = lixe_state_of(e);
    if (!s || !s->started || !r || !lix_get(e))
        return;
    int ev = -1;
    for (int i = 0; i < EV_N; i++)
        if (r->id == g_ring_id[i])
            ev = i;
    /* an event whose option is off (its stub keeps recording) or that a breakpoint reports */
    if (ev < 0 || !((s->ring >> ev) & 1) || !(e->options & slot_opts(ev) & ~HVI_OPT_BLOCK_EXEC))
        return;
    s->st.events++;
    s->st.ring_records++;
    lixe_ring_event(e, s, ev, r);
}

/* ---- seeding ---- */

struct seed {
    const struct lix_kernel *k;
    struct lixe_lists *l;
    hvi_status st;
};

static bool seed_task(const struct lix_task *t, void *ctx)
{
    struct seed *sd = ctx;
    struct lixe_proc p;
    memset(&p, 0, sizeof(p));
    p.task = t->addr;
    p.pid = t->pid, p.tgid = t->tgid, p.ppid = t->ppid;
    p.kernel_thread = t->mm == 0;
    memcpy(p.comm, t->comm, sizeof(p.comm));
    if (t->mm && lix_task_exe(sd->k, t, p.exe, sizeof(p.exe)) != HVI_OK)
        p.exe[0] = 0;
    sd->st = lixe_proc_put(sd->l, &p);
    return sd->st == HVI_OK;
}

static bool seed_module(const struct lix_module *m, void *ctx)
{
    struct seed *sd = ctx;
    struct lixe_mod x = {.addr = m->addr,
                         .state = m->state,
                         .base = m->core_base,
                         .size = m->core_size,
                         .text_size = m->core_text_size,
                         .ro_size = m->core_ro_size};
    hvi_strlcpy(x.name, m->name, sizeof(x.name));
    sd->st = lixe_mod_put(sd->l, &x);
    return sd->st == HVI_OK;
}

static hvi_status reseed(hvi_engine *e, struct lixe_state *s, bool procs, bool mods)
{
    struct lix_kernel *k = lix_get(e);
    struct seed sd = {.k = k, .l = &s->l, .st = HVI_OK};
    hvi_status st = HVI_OK;
    lixe_lists_clear(&s->l, procs, mods);
    if (procs) {
        st = lix_task_walk(k, false, seed_task, &sd);
        if (st == HVI_OK)
            st = sd.st;
        s->procs_valid = st == HVI_OK;
        if (st != HVI_OK)
            return hvi_fail(e, st, "linux events: process list walk failed: %s", hvi_strstatus(st));
    }
    if (mods) {
        st = lix_module_walk(k, seed_module, &sd);
        if (st == HVI_OK)
            st = sd.st;
        s->mods_valid = st == HVI_OK;
        if (st != HVI_OK)
            return hvi_fail(e, st, "linux events: module list walk failed: %s", hvi_strstatus(st));
    }
    s->st.reseeds++;
    return HVI_OK;
}

void lixe_ring_lost(hvi_engine *e)
{
    struct lixe_state *s = lixe_state_of(e);
    if (!s || !s->started || !s->ring)
        return;
    const uint32_t procs_ev = (1u << EV_CREATE) | (1u << EV_EXEC) | (1u << EV_EXIT);
    bool procs = (s->ring & procs_ev) && (e->options & HVI_OPT_EVENT_PROCESS);
    bool mods = ((s->ring >> EV_MLOAD) & 1) && (e->options & HVI_OPT_EVENT_MODULE);
    if (!procs && !mods)
        return;
    const hvi_glue *g = &e->glue;
    bool paused = (g->caps & HVI_CAP_PAUSE) && g->pause && g->pause(g->ctx) == HVI_OK;
    hvi_status st = reseed(e, s, procs, mods);
    if (paused && g->resume)
        g->resume(g->ctx);
    s->st.ring_reseeds++;
    hvi_log(e, st == HVI_OK ? HVI_LOG_INFO : HVI_LOG_WARN,
            "linux events: in-guest ring lost records: lists walked again (%s)", hvi_strstatus(st));
}

/* ---- detour placement following the options ---- */

static uint64_t slot_opts(int ev)
{
    switch (ev) {
    case EV_EXEC: return HVI_OPT_EVENT_PROCESS | HVI_OPT_BLOCK_EXEC;
    case EV_CREATE:
    case EV_EXIT: return HVI_OPT_EVENT_PROCESS;
    default: return HVI_OPT_EVENT_MODULE;
    }
}

/* detours = breakpoints placed + in-guest detours whose events are on. */
static void count_detours(hvi_engine *e, struct lixe_state *s)
{
    s->st.breakpoints = s->st.in_guest = 0;
    for (int ev = 0; ev < EV_N; ev++) {
        s->st.breakpoints += s->slot[ev].hook != NULL;
        s->st.in_guest += s->started && ((s->ring >> ev) & 1) &&
                          (e->options & slot_opts(ev) & ~HVI_OPT_BLOCK_EXEC);
    }
    s->st.detours = s->st.breakpoints + s->st.in_guest;
    s->st.watchpoints = s->watching;
}

static hvi_status sync_detours(hvi_engine *e, struct lixe_state *s, uint64_t old_opts)
{
    hvi_status first = HVI_OK;
    for (int ev = 0; ev < EV_N; ev++) {
        struct lixe_slot *sl = &s->slot[ev];
        bool want = s->started && sl->addr && (e->options & slot_opts(ev)) != 0;
        if ((s->ring >> ev) & 1) { /* recorded in the guest: only exec blocking needs a stop */
            bool block =
                s->started && ev == EV_EXEC && (e->options & HVI_OPT_BLOCK_EXEC) && s->nblocks;
            /* the stub's doorbell when a watchpoint is free, else a breakpoint */
            want = ev == EV_EXEC && block && !lixe_doorbell_watch(e, s, true);
            if (ev == EV_EXEC && !block)
                lixe_doorbell_watch(e, s, false);
        }
        if (want && !sl->hook) {
            hvi_status st = hvi_detour_add(e, sl->addr, on_hit, sl, &sl->hook);
            if (st != HVI_OK) {
                sl->hook = NULL;
                if (first == HVI_OK)
                    first = st;
                continue;
            }
            hvi_hook_set_owned(sl->hook, true);
        } else if (!want && sl->hook) {
            if (hvi_hook_remove(e, sl->hook) == HVI_OK)
                sl->hook = NULL;
            else if (first == HVI_OK)
                first = HVI_E_BACKEND;
        }
    }
    count_detours(e, s);
    /* lists governed by an option that was off missed events: walk once more */
    bool procs_on = s->started && (e->options & HVI_OPT_EVENT_PROCESS);
    bool mods_on = s->started && (e->options & HVI_OPT_EVENT_MODULE);
    bool procs = procs_on && (!(old_opts & HVI_OPT_EVENT_PROCESS) || !s->procs_valid);
    bool mods = mods_on && (!(old_opts & HVI_OPT_EVENT_MODULE) || !s->mods_valid);
    if (!procs_on)
        s->procs_valid = false;
    if (!mods_on)
        s->mods_valid = false;
    if (procs || mods) {
        hvi_status st = reseed(e, s, procs, mods);
        if (st != HVI_OK && first == HVI_OK)
            first = st;
    }
    return first;
}

static void on_options(hvi_engine *e, uint64_t old_opts, uint64_t new_opts, void *ctx)
{
    (void)new_opts, (void)ctx;
    struct lixe_state *s = lixe_state_of(e);
    if (s && s->started && sync_detours(e, s, old_opts) != HVI_OK)
        hvi_log(e, HVI_LOG_WARN, "linux events: %s", hvi_last_error(e));
}

static void remove_all(hvi_engine *e, struct lixe_state *s)
{
    s->started = false;
    for (int ev = 0; ev < EV_N; ev++)
        if (s->slot[ev].hook && hvi_hook_remove(e, s->slot[ev].hook) == HVI_OK)
            s->slot[ev].hook = NULL;
    lixe_doorbell_watch(e, s, false);
    count_detours(e, s);
    if (s->own_indetour && hvi_linux_indetour_stop(e) == HVI_OK)
        s->own_indetour = false; /* else hvi_detach() finishes it (HVI_E_BUSY until safe) */
    s->ring = 0;
    lixe_lists_clear(&s->l, true, true);
    s->procs_valid = s->mods_valid = false;
}

static hvi_status on_detach(hvi_engine *e, void *ctx)
{
    (void)ctx;
    struct lixe_state *s = lixe_state_of(e);
    if (s)
        remove_all(e, s);
    return s && s->st.breakpoints ? HVI_E_BUSY : HVI_OK;
}

static void on_free(hvi_engine *e, void *ctx)
{
    (void)ctx;
    struct lixe_state *s = lixe_state_of(e);
    if (!s)
        return;
    lixe_lists_free(&s->l);
    free(s);
    e->lixe = NULL;
}

static hvi_status state_get(hvi_engine *e, struct lixe_state **out)
{
    if (!e->lixe) {
        struct lixe_state *s = calloc(1, sizeof(*s));
        if (!s)
            return HVI_E_NOMEM;
        hvi_status st = hvi_engine_on_free(e, on_free, NULL);
        if (st != HVI_OK) {
            free(s);
            return st;
        }
        e->lixe = s;
    }
    struct lixe_state *s = e->lixe;
    if (!s->registered) {
        hvi_status st = hvi_engine_on_detach(e, on_detach, NULL);
        if (st == HVI_OK)
            st = hvi_engine_on_options(e, on_options, NULL);
        if (st == HVI_OK)
            st = hvi_engine_add_handler(e, HVI_EV_WATCHPOINT, lixe_on_doorbell, NULL);
        if (st != HVI_OK)
            return st;
        s->registered = true;
    }
    *out = s;
    return HVI_OK;
}

/* ---- resolution: CAMI hooks list, kallsyms ---- */

struct cami_info {
    uint32_t hashes[512]; /* a Linux entry has at most 512 hooks (cami-format.md) */
    uint32_t nhashes;
};

static void load_cami(hvi_engine *e, struct lixe_state *s, struct cami_info *ci)
{
    struct lix_kernel *k = lix_get(e);
    hvi_cami *c = NULL;
    char msg[256] = "";
    const hvi_cami_lix_entry *entry = NULL;
    if (!e->support || !e->support_len ||
        hvi_cami_open(e->support, e->support_len, &c, msg, sizeof(msg)) != HVI_OK)
        return;
    if (hvi_cami_lix_select(c, k->banner + strlen("Linux version "), &entry) == HVI_OK) {
        for (uint32_t i = 0; i < entry->hook_count && ci->nhashes < 512; i++)
            ci->hashes[ci->nhashes++] = entry->hooks[i].name_hash;
        uint32_t f = 0, in = 0, fi = 0;
        if (hvi_cami_lix_field_by_name(entry, "Binprm", "FilenameOffset", &f) == HVI_OK && f &&
            f < 0x1000) {
            if (hvi_cami_lix_field_by_name(entry, "Binprm", "InterpOffset", &in) != HVI_OK ||
                in >= 0x1000)
                in = 0;
            if (hvi_cami_lix_field_by_name(entry, "Binprm", "FileOffset", &fi) != HVI_OK ||
                fi >= 0x1000)
                fi = 0;
            s->bprm = (struct lixe_binprm){.filename = f, .interp = in, .file = fi};
            s->have_bprm = true;
        }
    }
    hvi_cami_close(c);
}

_Static_assert(LIXE_EVENTS == EV_N, "lixe_choose orders its events as EV_*");

static bool ks_lookup(void *ctx, const char *name, uint64_t *addr)
{
    struct lix_kernel *k = ctx;
    return lix_kallsyms_lookup(&k->ks, name, addr) == HVI_OK && lix_is_kptr(*addr);
}

static void resolve(hvi_engine *e, struct lixe_state *s)
{
    struct lix_kernel *k = lix_get(e);
    struct cami_info ci;
    memset(&ci, 0, sizeof(ci));
    load_cami(e, s, &ci);
    for (int ev = 0; ev < EV_N; ev++)
        memset(&s->slot[ev], 0, sizeof(s->slot[ev]));
    /* with a hooks list only its functions are detoured; without one, kallsyms decides */
    struct lixe_choice ch;
    lixe_choose(ci.hashes, ci.nhashes, s->have_bprm, ks_lookup, k, &ch);
    for (int ev = 0; ev < EV_N; ev++) {
        if (ch.unlisted[ev] && ev < EV_MLOAD)
            hvi_log(e, HVI_LOG_WARN,
                    "linux events: %s not detoured: %s is not in the CAMI hooks list",
                    g_what[ev], ch.unlisted[ev]);
        else if (ch.unlisted[ev] && ev == EV_MLOAD)
            hvi_log(e, HVI_LOG_WARN,
                    "linux events: module-load/-unload not detoured: neither pair "
                    "module_param_sysfs_setup/_remove nor do_init_module/free_module is in the "
                    "CAMI hooks list");
        if (!ch.addr[ev])
            continue;
        s->slot[ev].addr = ch.addr[ev];
        hvi_strlcpy(s->slot[ev].fn, ch.fn[ev], sizeof(s->slot[ev].fn));
        s->slot[ev].from_cami = ch.from_cami[ev];
    }
    /* current task: per-CPU `current_task` (6.1), `pcpu_hot.current_task` (6.2+, offset 0) */
    uint64_t cur = 0, pcpu_start = 0;
    s->have_current = false;
    if (lix_kallsyms_lookup(&k->ks, "current_task", &cur) == HVI_OK ||
        lix_kallsyms_lookup(&k->ks, "pcpu_hot", &cur) == HVI_OK) {
        if (!lix_is_kptr(cur)) { /* absolute per-CPU offset */
            s->pcpu_current = cur;
            s->have_current = cur < (1ull << 32);
        } else if (lix_kallsyms_lookup(&k->ks, "__per_cpu_start", &pcpu_start) == HVI_OK &&
                   cur >= pcpu_start && cur - pcpu_start < (1ull << 32)) {
            s->pcpu_current = cur - pcpu_start;
            s->have_current = true;
        }
    }
    if (!s->have_current) /* exec and exit need the current task */
        s->slot[EV_EXEC].addr = s->slot[EV_EXIT].addr = 0;
    for (int ev = 0; ev < EV_N; ev++) {
        struct lixe_slot *sl = &s->slot[ev];
        sl->ev = ev;
        if (sl->addr && lix_read(k, sl->addr, sl->nops, sizeof(sl->nops)) == HVI_OK)
            sl->skip = lixe_nop_prefix(sl->nops, sizeof(sl->nops));
    }
    for (int ev = 0; ev < EV_N; ev++)
        hvi_log(e, HVI_LOG_INFO, "linux events: %s -> %s%s (%u no-op bytes)", g_what[ev],
                s->slot[ev].addr ? s->slot[ev].fn : "(none)",
                s->slot[ev].from_cami ? " (CAMI hooks list)" : "", s->slot[ev].skip);
}

/* Record create/exec/exit and the module pair in the guest (lix_indetour.c) where the function
 * resolved for the event is the one the in-guest detours patch; the others keep breakpoints. */
static void ring_setup(hvi_engine *e, struct lixe_state *s)
{
    uint32_t want = 0;
    s->ring = 0;
    if (s->no_ring)
        return;
    const struct lix_kernel *k = lix_get(e);
    /* create/exec/exit need the pid/tgid pair loaded by the stub (adjacent s32, as in 6.1) */
    bool pids = k && k->off.task_pid && k->off.task_tgid == k->off.task_pid + 4;
    for (int ev = 0; ev < EV_N; ev++)
        if (s->slot[ev].addr && !strcmp(s->slot[ev].fn, g_ring_fn[ev]) &&
            (pids || ev == EV_MLOAD || ev == EV_MUNLOAD))
            want |= 1u << g_ring_id[ev];
    if (!want)
        return;
    bool was_active = hvi_linux_indetour_active(e);
    hvi_status st = lixd_events_start(e, want, s->have_bprm ? s->bprm.filename : 0);
    if (st != HVI_OK) {
        hvi_log(e, HVI_LOG_WARN, "linux events: no in-guest detours (%s), breakpoints instead",
                hvi_last_error(e));
        return;
    }
    s->own_indetour = !was_active;
    uint32_t have = lixd_events_installed(e);
    for (int ev = 0; ev < EV_N; ev++)
        if ((want & have) >> g_ring_id[ev] & 1)
            s->ring |= 1u << ev;
    if (((s->ring >> EV_MLOAD) ^ (s->ring >> EV_MUNLOAD)) & 1) /* a pair is used only whole */
        s->ring &= ~((1u << EV_MLOAD) | (1u << EV_MUNLOAD));
    for (int ev = 0; ev < EV_N; ev++)
        hvi_log(e, HVI_LOG_INFO, "linux events: %s by %s", g_what[ev],
                (s->ring >> ev) & 1 ? "the in-guest ring" : "breakpoint");
}

/* ---- public API ---- */

hvi_status hvi_linux_events_use_ring(hvi_engine *e, bool on)
{
    if (!e)
        return HVI_E_INVAL;
    struct lixe_state *s = NULL;
    hvi_status st = state_get(e, &s);
    if (st != HVI_OK)
        return st;
    if (s->started)
        return hvi_fail(e, HVI_E_STATE, "linux events: choose the ring before starting");
    s->no_ring = !on;
    return HVI_OK;
}

hvi_status hvi_linux_events_drain(hvi_engine *e)
{
    struct lixe_state *s = lixe_state_of(e);
    if (!s || !s->started || !s->ring || !hvi_linux_indetour_active(e))
        return HVI_OK;
    return hvi_linux_indetour_drain(e, NULL);
}

hvi_status hvi_linux_events_start(hvi_engine *e)
{
    if (!e)
        return HVI_E_INVAL;
    struct lix_kernel *k = lix_get(e);
    if (!k || !k->have_offsets)
        return hvi_fail(e, HVI_E_STATE, "linux events: no Linux kernel with offsets attached");
    if (!(e->glue.caps & HVI_CAP_BREAKPOINT))
        return hvi_fail(e, HVI_E_UNSUPPORTED, "linux events: backend has no breakpoints");
    struct lixe_state *s = NULL;
    hvi_status st = state_get(e, &s);
    if (st != HVI_OK)
        return st;
    if (s->started)
        return HVI_OK;
    resolve(e, s);
    ring_setup(e, s);
    s->started = true;
    st = sync_detours(e, s, 0);
    if (st != HVI_OK) {
        remove_all(e, s);
        return st;
    }
    return HVI_OK;
}

hvi_status hvi_linux_events_stop(hvi_engine *e)
{
    struct lixe_state *s = lixe_state_of(e);
    if (!s)
        return e ? HVI_OK : HVI_E_INVAL;
    remove_all(e, s);
    return s->st.detours ? HVI_E_BACKEND : HVI_OK;
}

hvi_status hvi_linux_block_exec_add(hvi_engine *e, const char *path)
{
    if (!e || !path || path[0] != '/' || strlen(path) >= LIXE_PATH)
        return HVI_E_INVAL;
    struct lixe_state *s = NULL;
    hvi_status st = state_get(e, &s);
    if (st != HVI_OK)
        return st;
    for (size_t i = 0; i < s->nblocks; i++)
        if (!strcmp(s->blocks[i], path))
            return HVI_OK;
    if (s->nblocks >= LIXE_MAX_BLOCKS)
        return hvi_fail(e, HVI_E_LIMIT, "linux events: block list full (%u paths)",
                        LIXE_MAX_BLOCKS);
    hvi_strlcpy(s->blocks[s->nblocks++], path, LIXE_PATH);
    if (s->started && s->nblocks == 1)
        return sync_detours(e, s, e->options); /* the exec breakpoint may be needed now */
    return HVI_OK;
}

void hvi_linux_block_exec_clear(hvi_engine *e)
{
    struct lixe_state *s = lixe_state_of(e);
    if (!s)
        return;
    s->nblocks = 0;
    if (s->started && sync_detours(e, s, e->options) != HVI_OK)
        hvi_log(e, HVI_LOG_WARN, "linux events: %s", hvi_last_error(e));
}

hvi_status hvi_linux_events_processes(hvi_engine *e, hvi_linux_process **out, size_t *count)
{
    if (!e || !out || !count)
        return HVI_E_INVAL;
    struct lixe_state *s = lixe_state_of(e);
    struct lix_kernel *k = lix_get(e);
    if (!s || !k || !s->started || !s->procs_valid)
        return hvi_fail(e, HVI_E_STATE,
                        "linux events: no process list (events not started or "
                        "HVI_OPT_EVENT_PROCESS off)");
    (void)hvi_linux_events_drain(e);
    hvi_linux_process *p = calloc(s->l.np ? s->l.np : 1, sizeof(*p));
    if (!p)
        return HVI_E_NOMEM;
    for (size_t i = 0; i < s->l.np; i++) {
        const struct lixe_proc *x = &s->l.p[i];
        p[i].task = x->task;
        p[i].pid = x->pid, p[i].tgid = x->tgid, p[i].ppid = x->ppid;
        p[i].kernel_thread = x->kernel_thread;
        char comm[17] = "";
        if (lix_read(k, x->task + k->off.task_comm, comm, 16) == HVI_OK)
            comm[16] = 0;
        else
            memcpy(comm, x->comm, sizeof(comm));
        hvi_strlcpy(p[i].comm, comm, sizeof(p[i].comm));
        struct lix_task t;
        if (x->exe_pending && lix_task_read(k, x->task, &t) == HVI_OK && t.pid == x->pid && t.mm &&
            lix_task_exe(k, &t, s->l.p[i].exe, sizeof(s->l.p[i].exe)) == HVI_OK)
            s->l.p[i].exe_pending = false; /* an exec from the ring: its binary, now known */
        hvi_strlcpy(p[i].exe, x->exe, sizeof(p[i].exe));
    }
    *out = p;
    *count = s->l.np;
    return HVI_OK;
}

hvi_status hvi_linux_events_modules(hvi_engine *e, hvi_linux_module **out, size_t *count)
{
    if (!e || !out || !count)
        return HVI_E_INVAL;
    struct lixe_state *s = lixe_state_of(e);
    (void)hvi_linux_events_drain(e);
    if (!s || !s->started || !s->mods_valid)
        return hvi_fail(e, HVI_E_STATE,
                        "linux events: no module list (events not started or "
                        "HVI_OPT_EVENT_MODULE off)");
    hvi_linux_module *m = calloc(s->l.nm ? s->l.nm : 1, sizeof(*m));
    if (!m)
        return HVI_E_NOMEM;
    for (size_t i = 0; i < s->l.nm; i++) {
        const struct lixe_mod *x = &s->l.m[i];
        m[i].module = x->addr;
        hvi_strlcpy(m[i].name, x->name, sizeof(m[i].name));
        m[i].state = x->state;
        m[i].base = x->base;
        m[i].size = x->size, m[i].text_size = x->text_size, m[i].ro_size = x->ro_size;
    }
    *out = m;
    *count = s->l.nm;
    return HVI_OK;
}

hvi_status hvi_linux_events_stats_get(hvi_engine *e, hvi_linux_events_stats *out)
{
    if (!e || !out)
        return HVI_E_INVAL;
    struct lixe_state *s = lixe_state_of(e);
    memset(out, 0, sizeof(*out));
    if (!s)
        return HVI_OK;
    *out = s->st;
    out->processes = s->procs_valid ? (uint32_t)s->l.np : 0;
    out->modules = s->mods_valid ? (uint32_t)s->l.nm : 0;
    return HVI_OK;
}

const char *hvi_linux_events_function(hvi_engine *e, const char *what)
{
    if (!what)
        return NULL;
    for (int ev = 0; ev < EV_N; ev++)
        if (!strcmp(what, g_what[ev])) {
            struct lixe_state *s = lixe_state_of(e);
            return s && s->slot[ev].addr ? s->slot[ev].fn : "";
        }
    return NULL;
}
