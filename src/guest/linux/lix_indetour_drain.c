/*
 * hvi guest/linux — in-guest detours: draining the ring (the engine timer and
 * hvi_linux_indetour_drain), the check of the engine's own bytes, and the VMA view of followed
 * processes (hvi_linux_vma_follow / hvi_linux_vma_view). Install and removal: lix_indetour.c.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix.h"
#include "guest/linux/lix_events.h"
#include "guest/linux/lix_indetour.h"
#include "guest/linux/lix_indetour_state.h"
#include "guest/linux/lix_protect.h"
#include "hvi/linux_indetour.h"
#include "hvi/mem.h"

void lixd_procs_free(struct lixd_state *s)
{
    for (uint32_t i = 0; i < s->nprocs; i++)
        free(s->procs[i].v);
    s->nprocs = 0;
}

/* ---- the VMA view --------------------------------------------------------------------------- */

static struct lixd_proc *proc_by_mm(struct lixd_state *s, uint64_t mm)
{
    for (uint32_t i = 0; mm && i < s->nprocs; i++)
        if (s->procs[i].mm == mm)
            return &s->procs[i];
    return NULL;
}

static struct lixd_proc *proc_by_pid(struct lixd_state *s, int32_t pid)
{
    for (uint32_t i = 0; i < s->nprocs; i++)
        if (s->procs[i].pid == pid)
            return &s->procs[i];
    return NULL;
}

static hvi_status ent_read(struct lixd_state *s, uint64_t vma, struct lixd_ent *x, uint64_t *mm)
{
    const struct lix_offsets *o = &s->k->off;
    hvi_status st;
    x->vma = vma;
    if (!lix_is_kptr(vma))
        return HVI_E_FORMAT;
    if ((st = lix_read_u64(s->k, vma + o->vma_start, &x->start)) != HVI_OK ||
        (st = lix_read_u64(s->k, vma + o->vma_end, &x->end)) != HVI_OK ||
        (st = lix_read_u64(s->k, vma + o->vma_flags, &x->flags)) != HVI_OK ||
        (st = lix_read_u64(s->k, vma + o->vma_pgoff, &x->pgoff)) != HVI_OK ||
        (st = lix_read_u64(s->k, vma + o->vma_file, &x->file)) != HVI_OK ||
        (st = lix_read_u64(s->k, vma + s->vma_mm_off, mm)) != HVI_OK)
        return st;
    return HVI_OK;
}

static hvi_status proc_add(struct lixd_proc *p, const struct lixd_ent *x)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].vma == x->vma) {
            p->v[i] = *x;
            return HVI_OK;
        }
    if (p->n >= LIX_MAX_VMAS)
        return HVI_E_LIMIT;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct lixd_ent *v = realloc(p->v, cap * sizeof(*v));
        if (!v)
            return HVI_E_NOMEM;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = *x;
    return HVI_OK;
}

static bool proc_del(struct lixd_proc *p, uint64_t vma)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].vma == vma) {
            p->v[i] = p->v[--p->n];
            return true;
        }
    return false;
}

static bool walk_cb(const struct lix_vma *v, void *ctx)
{
    struct lixd_proc *p = ctx;
    struct lixd_ent x = {v->addr, v->start, v->end, v->flags, v->pgoff, v->file};
    return proc_add(p, &x) == HVI_OK;
}

struct find_pid {
    int32_t pid;
    uint64_t task, mm;
    bool found;
};

static bool find_pid_cb(const struct lix_task *t, void *ctx)
{
    struct find_pid *f = ctx;
    if (t->pid != f->pid)
        return true;
    f->task = t->addr;
    f->mm = t->mm;
    f->found = true;
    return false;
}

/* A full maple-tree walk, with the guest paused (a tree changing under the walk fails it);
 * a failed walk is retried at the next drain. */
static hvi_status proc_walk(hvi_engine *e, struct lixd_state *s, struct lixd_proc *p)
{
    p->n = 0;
    p->dirty = p->need_walk = false;
    if (!p->mm)
        return HVI_OK;
    bool paused = lixd_pause(e) == HVI_OK;
    hvi_status st = lix_vma_walk(s->k, p->mm, walk_cb, p);
    if (paused)
        lixd_resume(e);
    if (st != HVI_OK) {
        p->n = 0;
        p->need_walk = true;
    }
    return st;
}

static int ent_cmp(const void *a, const void *b)
{
    const struct lixd_ent *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Re-read every entry of a touched process; false when the view is inconsistent. */
static bool proc_refresh(struct lixd_state *s, struct lixd_proc *p)
{
    for (size_t i = 0; i < p->n;) {
        uint64_t mm = 0;
        struct lixd_ent x;
        if (ent_read(s, p->v[i].vma, &x, &mm) != HVI_OK)
            return false;
        if (mm != p->mm) { /* freed and reused (its free event is still in the ring) */
            p->v[i] = p->v[--p->n];
            continue;
        }
        p->v[i++] = x;
    }
    qsort(p->v, p->n, sizeof(*p->v), ent_cmp);
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].end <= p->v[i].start || (i && p->v[i].start < p->v[i - 1].end))
            return false;
    return true;
}

/* After events: exec (task->mm changed) and lost events need a walk, touched ones a refresh. */
static void procs_update(hvi_engine *e, struct lixd_state *s)
{
    bool lost = s->ring.lost_since;
    s->ring.lost_since = false;
    for (uint32_t i = 0; i < s->nprocs; i++) {
        struct lixd_proc *p = &s->procs[i];
        struct lix_task t;
        if (lix_task_read(s->k, p->task, &t) != HVI_OK || t.pid != p->pid) {
            p->mm = 0; /* the process is gone */
            p->n = 0;
            continue;
        }
        if (t.mm != p->mm) {
            p->mm = t.mm;
            p->need_walk = true;
        }
        if (lost)
            p->need_walk = true;
        if (!p->need_walk && p->dirty) {
            s->stats.refreshes++;
            if (!proc_refresh(s, p)) {
                hvi_log(e, HVI_LOG_DEBUG, "in-guest detours: pid %d view inconsistent, re-walk",
                        p->pid);
                p->need_walk = true;
            }
            p->dirty = false;
        }
        if (p->need_walk) {
            s->stats.rewalks++;
            if (proc_walk(e, s, p) == HVI_OK)
                qsort(p->v, p->n, sizeof(*p->v), ent_cmp);
        }
    }
}

#define LIXD_TASK_CACHE 8u

struct task_info {
    uint64_t task;
    struct lix_task t;
    bool ok;
};

struct drain_ctx {
    hvi_engine *e;
    struct lixd_state *s;
    struct task_info cache[LIXD_TASK_CACHE]; /* one drain: most events come from few tasks */
};

static const struct task_info *task_info(struct drain_ctx *d, uint64_t task)
{
    struct task_info *c = &d->cache[(task >> 6) % LIXD_TASK_CACHE];
    if (c->task != task || !task) {
        c->task = task;
        c->ok = lix_task_read(d->s->k, task, &c->t) == HVI_OK;
    }
    return c;
}

static void on_record(const struct lixd_record *r, void *ctx)
{
    struct drain_ctx *d = ctx;
    struct lixd_state *s = d->s;
    hvi_linux_vma_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.seq = r->seq;
    ev.id = (uint32_t)r->id;
    ev.task = r->task;
    memcpy(ev.args, r->args, sizeof(ev.args));
    memcpy(ev.str, r->str, sizeof(ev.str) - 1);
    ev.pid = ev.tgid = ev.child_pid = ev.child_tgid = -1;
    const struct task_info *ti = task_info(d, r->task);
    bool have_task = ti->ok;
    if (have_task) {
        ev.pid = ti->t.pid;
        ev.tgid = ti->t.tgid;
        memcpy(ev.comm, ti->t.comm, sizeof(ev.comm));
    }
    switch (ev.id) {
    case HVI_LIXD_VMA_PROTECT: ev.vma = r->args[1]; break;
    case HVI_LIXD_BRK:
        ev.vma = r->args[1];
        ev.mm = have_task ? ti->t.mm : 0;
        break;
    case HVI_LIXD_EXIT_MMAP: ev.mm = r->args[0]; break;
    case HVI_LIXD_EXEC:
    case HVI_LIXD_EXIT:
        if (s->k->off.task_tgid == s->k->off.task_pid + 4) { /* loaded by the stub */
            ev.child_pid = (int32_t)(uint32_t)r->args[4];
            ev.child_tgid = (int32_t)(uint32_t)(r->args[4] >> 32);
        }
        break;
    case HVI_LIXD_MOD_LOAD:
    case HVI_LIXD_MOD_UNLOAD: break;
    case HVI_LIXD_FORK:
        if (s->k->off.task_tgid == s->k->off.task_pid + 4) { /* loaded by the stub */
            ev.child_pid = (int32_t)(uint32_t)r->args[4];
            ev.child_tgid = (int32_t)(uint32_t)(r->args[4] >> 32);
        }
        break;
    default: ev.vma = r->args[0]; break;
    }
    struct lixd_ent x;
    memset(&x, 0, sizeof(x));
    uint64_t mm = 0;
    bool have_vma = ev.vma && ent_read(s, ev.vma, &x, &mm) == HVI_OK;
    if (have_vma && ev.id != HVI_LIXD_BRK) {
        ev.mm = mm;
        ev.start = x.start;
        ev.end = x.end;
        ev.flags = x.flags;
    }
    struct lixd_proc *p = proc_by_mm(s, ev.mm);
    switch (ev.id) {
    case HVI_LIXD_VMA_STORE:
        if (p && have_vma) {
            p->dirty = true;
            if (proc_add(p, &x) != HVI_OK)
                p->need_walk = true;
        }
        break;
    case HVI_LIXD_VMA_REMOVE:
    case HVI_LIXD_VMA_FREE:
        for (uint32_t i = 0; i < s->nprocs; i++)
            if (proc_del(&s->procs[i], ev.vma))
                s->procs[i].dirty = true;
        break;
    case HVI_LIXD_BRK:
    case HVI_LIXD_EXIT_MMAP:
        if (p)
            p->need_walk = true; /* brk inserts without vma_mas_store */
        break;
    case HVI_LIXD_FORK:
    case HVI_LIXD_EXEC:
    case HVI_LIXD_EXIT:
    case HVI_LIXD_MOD_LOAD:
    case HVI_LIXD_MOD_UNLOAD: break; /* no VMA: reported through the callbacks */
    default:
        if (p)
            p->dirty = true;
        break;
    }
    if (ev.id == HVI_LIXD_FORK || ev.id >= HVI_LIXD_EXEC)
        lixe_ring_record(d->e, r); /* process and module events (lix_events.c) */
    if (s->cb)
        s->cb(d->e, &ev, s->cb_ctx);
}

struct ring_rd {
    hvi_engine *e;
    uint64_t base;
    uint32_t len;
};

static hvi_status ring_read(void *ctx, uint64_t off, void *buf, size_t len)
{
    struct ring_rd *r = ctx;
    if (off > r->len || len > r->len - off)
        return HVI_E_RANGE;
    return hvi_gva_read(r->e, 0, r->base + off, buf, len);
}

/* The engine's own bytes must still be there (the guest or an attacker may write them). */
static void check_own_bytes(hvi_engine *e, struct lixd_state *s)
{
    for (uint32_t i = 0; i < s->ndet; i++) {
        struct lixd_detour *d = &s->det[i];
        uint8_t now[LIXD_STUB_MAX], site[5];
        if (hvi_gva_read(e, 0, d->stub, now, d->stub_len) != HVI_OK ||
            hvi_gva_read(e, 0, d->site, site, 5) != HVI_OK)
            continue;
        if (!memcmp(now, d->stub_bytes, d->stub_len) && !memcmp(site, d->patch, 5))
            continue;
        s->stats.tamper++;
        hvi_alert a;
        hvi_alert_init(&a, HVI_ALERT_INTEGRITY, e->current_vcpu);
        /* always put back, also in log-only mode: this is code the engine made the kernel run */
        a.action = HVI_ALERT_DENIED;
        a.gva = memcmp(site, d->patch, 5) ? d->site : d->stub;
        a.pid = -1;
        hvi_strlcpy(a.object, "indetour", sizeof(a.object));
        snprintf(a.detail, sizeof(a.detail), "in-guest detour of %s changed (%s)", d->func,
                 memcmp(site, d->patch, 5) ? "call site" : "stub");
        hvi_alert_emit(e, &a);
        if (lixd_pause(e) == HVI_OK) {
            hvi_gva_write(e, 0, d->stub, d->stub_bytes, d->stub_len);
            lixd_code_sync(e, d->stub, d->stub_bytes, d->stub_len);
            hvi_gva_write(e, 0, d->site, d->patch, 5);
            lixd_code_sync(e, d->site, d->patch, 5);
            lixd_resume(e);
            lixp_accept(e, d->stub, d->stub_len);
            lixp_accept(e, d->site, 5);
        }
    }
}

hvi_status hvi_linux_indetour_drain(hvi_engine *e, size_t *n)
{
    if (n)
        *n = 0;
    if (!e)
        return HVI_E_INVAL;
    struct lixd_state *s = e->lixd;
    if (!s || s->phase != PH_ACTIVE)
        return HVI_E_STATE;
    uint64_t t0 = hvi_now_ns();
    struct ring_rd rr = {e, s->ring_gva, s->ring_len};
    struct drain_ctx dc;
    memset(&dc, 0, sizeof(dc));
    dc.e = e;
    dc.s = s;
    hvi_status st = HVI_OK;
    uint64_t missed = s->ring.lost + s->ring.garbage + s->ring.resyncs;
    size_t got = lixd_ring_drain(&s->ring, ring_read, &rr, HVI_LIXD_EVENT_MAX, LIXD_DRAIN_BUDGET,
                                 on_record, &dc, &st);
    if (s->ring.lost + s->ring.garbage + s->ring.resyncs != missed)
        lixe_ring_lost(e); /* the process/module lists missed events: walk them again */
    procs_update(e, s);
    check_own_bytes(e, s);
    s->stats.drains++;
    s->stats.last_drain_ns = hvi_now_ns() - t0;
    if (n)
        *n = got;
    if (st != HVI_OK)
        return hvi_fail(e, st, "in-guest detours: ring at 0x%llx unreadable",
                        (unsigned long long)s->ring_gva);
    return HVI_OK;
}

hvi_status hvi_linux_vma_follow(hvi_engine *e, int32_t pid)
{
    if (!e || pid <= 0)
        return HVI_E_INVAL;
    struct lixd_state *s = e->lixd;
    if (!s || !s->k)
        return hvi_fail(e, HVI_E_STATE, "vma follow: in-guest detours not started");
    if (proc_by_pid(s, pid))
        return HVI_OK;
    if (s->nprocs == LIXD_MAX_PROCS)
        return hvi_fail(e, HVI_E_LIMIT, "vma follow: at most %u processes", LIXD_MAX_PROCS);
    struct find_pid f = {.pid = pid};
    bool paused = lixd_pause(e) == HVI_OK; /* a consistent task list */
    hvi_status st = lix_task_walk(s->k, false, find_pid_cb, &f);
    if (paused)
        lixd_resume(e);
    if (st != HVI_OK)
        return hvi_fail(e, st, "vma follow: task walk failed");
    if (!f.found)
        return hvi_fail(e, HVI_E_NOT_FOUND, "vma follow: no process %d", pid);
    struct lixd_proc *p = &s->procs[s->nprocs];
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->task = f.task;
    p->mm = f.mm;
    if ((st = proc_walk(e, s, p)) != HVI_OK) {
        free(p->v);
        return hvi_fail(e, st, "vma follow: maple tree of pid %d unreadable", pid);
    }
    qsort(p->v, p->n, sizeof(*p->v), ent_cmp);
    s->nprocs++;
    return HVI_OK;
}

hvi_status hvi_linux_vma_view(hvi_engine *e, int32_t pid, hvi_linux_vma **out, size_t *count)
{
    if (!e || !out || !count)
        return HVI_E_INVAL;
    *out = NULL;
    *count = 0;
    struct lixd_proc *p = e->lixd ? proc_by_pid(e->lixd, pid) : NULL;
    if (!p)
        return hvi_fail(e, HVI_E_NOT_FOUND, "vma view: pid %d is not followed", pid);
    hvi_linux_vma *v = calloc(p->n ? p->n : 1, sizeof(*v));
    if (!v)
        return HVI_E_NOMEM;
    for (size_t i = 0; i < p->n; i++) {
        v[i].start = p->v[i].start;
        v[i].end = p->v[i].end;
        v[i].flags = p->v[i].flags;
        v[i].pgoff = p->v[i].pgoff;
        if (p->v[i].file)
            (void)lix_file_path(e->lixd->k, p->v[i].file, v[i].path, sizeof(v[i].path));
    }
    *out = v;
    *count = p->n;
    return HVI_OK;
}
