/*
 * hvi guest/linux — events by detours, the in-guest side: records taken from the ring of the
 * in-guest detours (lix_indetour_drain.c drains it, lix_events.c's lixe_ring_record picks the
 * event) and exec blocking by the exec stub's doorbell. The rest: lix_events.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix_events.h"
#include "guest/linux/lix_events_state.h"
#include "guest/linux/lix_indetour.h"
#include "hvi/linux_events.h"
#include "hvi/linux_indetour.h"

/* ---- exec blocking by the exec stub's doorbell (no breakpoint) ----
 *
 * The exec stub writes its record, marks it "asking" and stores the record's address into a
 * doorbell word that the engine watches (write watchpoint): the vCPU stops right after that
 * store. The engine decides every asking record (the record holds bprm and the current task,
 * both valid while the vCPU waits inside begin_new_exec's stub) and writes the verdict into it;
 * resumed, the stub commits the record and, for a denial, returns -EACCES to begin_new_exec's
 * caller. On QEMU/TCG a watchpoint stop costs about 1 ms where a breakpoint stop costs hundreds
 * (docs/linux-guest.md, "The bench settles what is expensive"). */

static bool exec_deny(hvi_engine *e, const struct lixd_record *r, void *ctx)
{
    struct lixe_state *s = ctx;
    struct lix_kernel *k = lix_get(e);
    struct lixe_exec x;
    struct lixe_proc p;
    hvi_status st = lixe_decode_exec(k, &s->bprm, r->args[0], &x);
    if (st == HVI_OK)
        st = lixe_decode_task(k, r->task, &p);
    if (st != HVI_OK) {
        lixe_bad(e, s, EV_EXEC, st, r->args[0]);
        return false; /* undecodable: let it run, as the breakpoint path does */
    }
    const char *rule = (e->options & HVI_OPT_BLOCK_EXEC) ? lixe_block_rule(s, &x) : NULL;
    if (!rule)
        return false;
    s->st.events++;
    s->st.blocked++;
    lixe_emit(e, HVI_EVENT_EXEC_BLOCKED, HVI_ALERT_DENIED, e->current_vcpu, &s->slot[EV_EXEC],
              r->task, "exec", p.tgid, p.comm, "rule=%s filename=%s interp=%s exe=%s", rule,
              x.filename, x.interp, x.exe);
    return true;
}

hvi_status lixe_on_doorbell(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply, void *ctx)
{
    (void)reply, (void)ctx;
    struct lixe_state *s = lixe_state_of(e);
    if (!s || !s->watching || ev->gva > s->doorbell ||
        ev->gva + (ev->len ? ev->len : 1) <= s->doorbell)
        return HVI_OK;
    s->st.doorbell_hits++;
    (void)lixd_answer(e, exec_deny, s);
    return HVI_OK;
}

/* Watch the doorbell (on) or stop watching it; whether it is watched now. */
bool lixe_doorbell_watch(hvi_engine *e, struct lixe_state *s, bool on)
{
    const hvi_glue *g = &e->glue;
    if (on && !s->watching && (g->caps & HVI_CAP_WATCHPOINT) && g->set_watchpoint &&
        lixd_doorbell(e, &s->doorbell)) {
        uint32_t settled = lixd_settle_asks(e);
        if (settled)
            hvi_log(e, HVI_LOG_DEBUG, "linux events: %u unanswered exec records settled", settled);
        hvi_status st = g->set_watchpoint(g->ctx, s->doorbell, 8, HVI_WATCH_WRITE, true);
        s->watching = st == HVI_OK;
        hvi_log(e, s->watching ? HVI_LOG_INFO : HVI_LOG_WARN, "linux events: exec blocking %s",
                s->watching ? "by the exec stub's doorbell (write watchpoint), no breakpoint"
                            : "by a breakpoint: no watchpoint free for the exec stub's doorbell");
    } else if (!on && s->watching) {
        if (g->set_watchpoint(g->ctx, s->doorbell, 8, HVI_WATCH_WRITE, false) == HVI_OK)
            s->watching = false;
    }
    return s->watching;
}

/* ---- events through the in-guest ring (lix_indetour.c drains it and calls
 * lixe_ring_record) ----
 *
 * A record is decoded when the ring is drained, possibly long after the call: the task may have
 * exited and been reaped, the bprm is freed, an unloaded module's memory too. What is only valid
 * at the call is captured there by the stub (the current task's pid/tgid, a new task's pid/tgid,
 * the exec filename and the module name, at most 63 bytes); the rest is read at the drain when
 * the object is still the same (pid or name matches), else taken from the engine's own list. */

/* pid/tgid loaded by the stub into the r8 slot (0 when the stub could not load them). */
static bool ring_pids(const struct lix_kernel *k, const struct lixd_record *r, int32_t *pid,
                      int32_t *tgid)
{
    *pid = (int32_t)(uint32_t)r->args[4];
    *tgid = (int32_t)(uint32_t)(r->args[4] >> 32);
    return k->off.task_pid && k->off.task_tgid == k->off.task_pid + 4 && *pid > 0 && *tgid > 0;
}

/* Who the task of a record was, when it is gone: the engine's list entry of `tgid`. */
static void proc_fallback(struct lixe_state *s, int32_t pid, int32_t tgid, uint64_t task,
                          struct lixe_proc *p)
{
    const struct lixe_proc *x = lixe_proc_find(&s->l, tgid);
    memset(p, 0, sizeof(*p));
    if (x)
        *p = *x;
    else
        p->ppid = -1;
    p->task = task;
    p->pid = pid;
    p->tgid = tgid;
}

static void ring_create(hvi_engine *e, struct lixe_state *s, const struct lixd_record *r)
{
    struct lix_kernel *k = lix_get(e);
    struct lixe_proc p, parent;
    int32_t pid = 0, tgid = 0;
    bool pids = ring_pids(k, r, &pid, &tgid);
    uint64_t task = r->args[0];
    hvi_status st = lixe_decode_task(k, task, &p);
    if (st != HVI_OK || (pids && (p.pid != pid || p.tgid != tgid))) {
        if (!pids) { /* nothing known about the new task */
            lixe_bad(e, s, EV_CREATE, st != HVI_OK ? st : HVI_E_FORMAT, task);
            return;
        }
        /* gone by the drain: a fork copies the parent (current at the call) */
        if (lixe_decode_task(k, r->task, &parent) != HVI_OK) {
            memset(&parent, 0, sizeof(parent));
            parent.tgid = -1;
        }
        p = parent;
        p.task = task;
        p.pid = pid;
        p.tgid = tgid;
        p.ppid = parent.tgid;
    }
    if (p.pid != p.tgid) {
        s->st.threads++;
        return;
    }
    if (r->str[0]) { /* comm at the fork (the child may have exec'd by the drain) */
        memcpy(p.comm, r->str, sizeof(p.comm) - 1);
        p.comm[sizeof(p.comm) - 1] = 0;
    }
    s->st.creates++;
    if (s->procs_valid && lixe_proc_put(&s->l, &p) != HVI_OK)
        s->procs_valid = false;
    lixe_emit(e, HVI_EVENT_PROCESS_CREATE, HVI_ALERT_ALLOWED, e->current_vcpu, &s->slot[EV_CREATE],
              task, "task", p.pid, p.comm, "ppid=%d kernel_thread=%d exe=%s", p.ppid,
              p.kernel_thread, p.exe);
}

static void ring_exec(hvi_engine *e, struct lixe_state *s, const struct lixd_record *r)
{
    struct lix_kernel *k = lix_get(e);
    int32_t pid = 0, tgid = 0;
    char filename[LIXD_STR_LEN];
    memcpy(filename, r->str, sizeof(filename) - 1);
    filename[sizeof(filename) - 1] = 0;
    if (r->args[LIXD_VERDICT_SLOT] == LIXD_VERDICT_DENY)
        return; /* refused at the doorbell (exec-blocked reported there): no exec happened */
    if (!ring_pids(k, r, &pid, &tgid) || !filename[0]) {
        lixe_bad(e, s, EV_EXEC, HVI_E_FORMAT, r->args[0]);
        return;
    }
    s->st.execs++;
    /* the list entry is the state before the exec (old comm, parent) */
    struct lixe_proc old, now;
    proc_fallback(s, tgid, tgid, r->task, &old);
    old.exe_pending = false;
    struct lixe_proc n = old;
    n.pid = tgid;
    n.kernel_thread = false;
    hvi_strlcpy(n.comm, lixe_basename(filename), sizeof(n.comm) - 1);
    n.comm[15] = 0;
    /* the new binary's path: the task's exe once the exec is through (its comm is the new one);
     * otherwise (gone, or not that far yet) read again when the list is asked for */
    n.exe[0] = 0;
    n.exe_pending = true;
    if (lixe_decode_task(k, r->task, &now) == HVI_OK && now.pid == pid &&
        !strcmp(now.comm, n.comm)) {
        hvi_strlcpy(n.exe, now.exe, sizeof(n.exe));
        n.exe_pending = false;
        if (old.ppid < 0)
            n.ppid = now.ppid;
    }
    if (s->procs_valid && lixe_proc_put(&s->l, &n) != HVI_OK)
        s->procs_valid = false;
    lixe_emit(e, HVI_EVENT_PROCESS_EXEC, HVI_ALERT_ALLOWED, e->current_vcpu, &s->slot[EV_EXEC],
              r->task, "task", n.pid, n.comm, "ppid=%d old_comm=%s filename=%s interp=%s exe=%s",
              n.ppid, old.comm, filename, "", n.exe);
}

static void ring_exit(hvi_engine *e, struct lixe_state *s, const struct lixd_record *r)
{
    struct lix_kernel *k = lix_get(e);
    int32_t pid = 0, tgid = 0;
    struct lixe_proc p;
    if (!ring_pids(k, r, &pid, &tgid)) {
        lixe_bad(e, s, EV_EXIT, HVI_E_FORMAT, r->task);
        return;
    }
    if (pid != tgid) {
        s->st.threads++;
        return;
    }
    proc_fallback(s, pid, tgid, r->task, &p);
    if (!lixe_proc_find(&s->l, tgid)) {
        struct lixe_proc now;
        if (lixe_decode_task(k, r->task, &now) == HVI_OK && now.pid == pid)
            p = now;
    }
    s->st.exits++;
    if (s->procs_valid)
        lixe_proc_del(&s->l, pid);
    lixe_emit(e, HVI_EVENT_PROCESS_EXIT, HVI_ALERT_ALLOWED, e->current_vcpu, &s->slot[EV_EXIT],
              r->task, "task", pid, p.comm, "ppid=%d code=%lld exe=%s", p.ppid,
              (long long)(int64_t)r->args[0], p.exe);
}

static void ring_module(hvi_engine *e, struct lixe_state *s, bool load, const struct lixd_record *r)
{
    struct lix_kernel *k = lix_get(e);
    int ev = load ? EV_MLOAD : EV_MUNLOAD;
    char name[LIXD_STR_LEN];
    memcpy(name, r->str, sizeof(name) - 1);
    name[sizeof(name) - 1] = 0;
    struct lixe_mod m;
    uint64_t mod = r->args[0];
    hvi_status st = lixe_decode_module(k, mod, &m);
    if (st != HVI_OK || strcmp(m.name, name)) { /* freed (unload) or reused: the name at the call */
        bool ok = name[0] && lix_is_kptr(mod) && !(mod & 7);
        for (const char *c = name; ok && *c; c++)
            ok = (unsigned char)*c > 0x20 && (unsigned char)*c < 0x7f;
        if (!ok) {
            lixe_bad(e, s, ev, st != HVI_OK ? st : HVI_E_FORMAT, mod);
            return;
        }
        memset(&m, 0, sizeof(m));
        m.addr = mod;
        hvi_strlcpy(m.name, name, sizeof(m.name));
    }
    struct lixe_proc p;
    if (lixe_decode_task(k, r->task, &p) != HVI_OK) {
        memset(&p, 0, sizeof(p));
        p.tgid = -1;
    }
    lixe_module_event(e, s, load, e->current_vcpu, &m, &p);
}

void lixe_ring_event(hvi_engine *e, struct lixe_state *s, int ev, const struct lixd_record *r)
{
    switch (ev) {
    case EV_CREATE: ring_create(e, s, r); break;
    case EV_EXEC: ring_exec(e, s, r); break;
    case EV_EXIT: ring_exit(e, s, r); break;
    default: ring_module(e, s, ev == EV_MLOAD, r); break;
    }
}
