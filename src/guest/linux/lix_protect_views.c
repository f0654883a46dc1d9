/*
 * hvi guest/linux — protection by cross-checking views of guest state on the timer.
 *
 * Credentials: each task's cred pointer and its ids (uid/gid/euid/egid/suid/sgid/fsuid/fsgid)
 * and capability sets (cap_permitted/cap_effective) are shadowed; a change while the cred
 * pointer stays the same was written in place (commit_creds always installs a new cred), so
 * that is an alert, and in deny mode the old values are written back. Pointer swaps outside
 * commit_creds are flagged (logged only): a user task whose cred/real_cred is the kernel's
 * init_cred, or whose real_cred changed to one another process (other tgid) is using.
 * Hidden processes: the tasks reachable through the parent->children lists (from init_task)
 * must all be on the init_task.tasks list (with their threads); one missing on two rounds in a
 * row is hidden. Hidden modules: every /sys/module kobject (module_kset) that belongs to a
 * loaded module must have its module on the `modules` list.
 * Layout facts used besides the CAMI offsets (checked at run time, the check disables itself
 * when they do not hold): task_struct.children/.sibling follow real_parent and parent;
 * struct kobject { name; entry; ... } is 64 bytes and module_kobject.mod follows it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/linux/lix_protect.h"
#include "hvi/mem.h"

#define KOBJ_ENTRY 8u
#define KOBJ_SIZE 64u
#define LIXP_MAX_KOBJS 4096u

static struct lixp_cred *cred_find(struct lixp_state *s, uint64_t task)
{
    for (size_t i = 0; i < s->ncreds; i++)
        if (s->creds[i].task == task)
            return &s->creds[i];
    return NULL;
}

struct cred_walk {
    hvi_engine *e;
    struct lixp_state *s;
};

/* The compared part of a cred: ids always, the others when CAMI has their offsets. */
static bool cred_read(const struct lix_kernel *k, uint64_t cred, struct lixp_cred *c)
{
    const struct lix_offsets *o = &k->off;
    c->suid = c->sgid = c->fsuid = c->fsgid = 0;
    c->cap_permitted = c->cap_effective = 0;
    return lix_read_u32(k, cred + o->cred_uid, &c->uid) == HVI_OK &&
           lix_read_u32(k, cred + o->cred_gid, &c->gid) == HVI_OK &&
           lix_read_u32(k, cred + o->cred_euid, &c->euid) == HVI_OK &&
           lix_read_u32(k, cred + o->cred_egid, &c->egid) == HVI_OK &&
           (!o->cred_suid || lix_read_u32(k, cred + o->cred_suid, &c->suid) == HVI_OK) &&
           (!o->cred_sgid || lix_read_u32(k, cred + o->cred_sgid, &c->sgid) == HVI_OK) &&
           (!o->cred_fsuid || lix_read_u32(k, cred + o->cred_fsuid, &c->fsuid) == HVI_OK) &&
           (!o->cred_fsgid || lix_read_u32(k, cred + o->cred_fsgid, &c->fsgid) == HVI_OK) &&
           (!o->cred_cap_permitted ||
            lix_read_u64(k, cred + o->cred_cap_permitted, &c->cap_permitted) == HVI_OK) &&
           (!o->cred_cap_effective ||
            lix_read_u64(k, cred + o->cred_cap_effective, &c->cap_effective) == HVI_OK);
}

static bool cred_same(const struct lixp_cred *a, const struct lixp_cred *b)
{
    return a->uid == b->uid && a->gid == b->gid && a->euid == b->euid && a->egid == b->egid &&
           a->suid == b->suid && a->sgid == b->sgid && a->fsuid == b->fsuid &&
           a->fsgid == b->fsgid && a->cap_permitted == b->cap_permitted &&
           a->cap_effective == b->cap_effective;
}

static void emit_cred(hvi_engine *e, struct lixp_state *s, hvi_alert *a, const char *d)
{
    hvi_strlcpy(a->object, "cred", sizeof(a->object));
    hvi_strlcpy(a->detail, d, sizeof(a->detail));
    hvi_alert_emit(e, a);
    s->stats.violations++;
    s->found++;
}

static void cred_alert(hvi_engine *e, struct lixp_state *s, const struct lix_task *t,
                       const struct lixp_cred *old, const struct lixp_cred *now, bool denied)
{
    hvi_alert a;
    char d[512];
    hvi_alert_init(&a, HVI_ALERT_CREDS, e->current_vcpu);
    a.action = denied ? HVI_ALERT_DENIED : HVI_ALERT_LOGGED;
    a.gva = old->cred;
    a.old_value = old->uid | (uint64_t)old->euid << 32;
    a.new_value = now->uid | (uint64_t)now->euid << 32;
    a.pid = t->pid;
    hvi_strlcpy(a.comm, t->comm, sizeof(a.comm));
    snprintf(d, sizeof(d),
             "cred 0x%llx of pid %d changed in place: uid %u->%u euid %u->%u suid %u->%u fsuid "
             "%u->%u gid %u->%u egid %u->%u cap_eff 0x%llx->0x%llx cap_perm 0x%llx->0x%llx; "
             "writer RIP unknown (timer check)",
             (unsigned long long)old->cred, t->pid, old->uid, now->uid, old->euid, now->euid,
             old->suid, now->suid, old->fsuid, now->fsuid, old->gid, now->gid, old->egid,
             now->egid, (unsigned long long)old->cap_effective,
             (unsigned long long)now->cap_effective, (unsigned long long)old->cap_permitted,
             (unsigned long long)now->cap_permitted);
    emit_cred(e, s, &a, d);
}

static void swap_alert(hvi_engine *e, struct lixp_state *s, const struct lixp_cred *c,
                       const char *comm, uint64_t cred, const char *what)
{
    hvi_alert a;
    char d[512];
    hvi_alert_init(&a, HVI_ALERT_CREDS, e->current_vcpu);
    a.action = HVI_ALERT_LOGGED; /* no deny: the old cred's references are unknown */
    a.gva = c->task;
    a.new_value = cred;
    a.pid = c->pid;
    hvi_strlcpy(a.comm, comm, sizeof(a.comm));
    snprintf(d, sizeof(d),
             "cred pointer of pid %d (%s) is 0x%llx, %s (commit_creds always installs a new "
             "cred); uid %u euid %u cap_eff 0x%llx; writer RIP unknown (timer check)",
             c->pid, comm, (unsigned long long)cred, what, c->uid, c->euid,
             (unsigned long long)c->cap_effective);
    emit_cred(e, s, &a, d);
}

static bool restore_cred(hvi_engine *e, const struct lix_kernel *k, const struct lixp_cred *c)
{
    const struct lix_offsets *o = &k->off;
    const struct {
        uint32_t off, len;
        const void *v;
    } f[] = {{o->cred_uid, 4, &c->uid},     {o->cred_gid, 4, &c->gid},
             {o->cred_euid, 4, &c->euid},   {o->cred_egid, 4, &c->egid},
             {o->cred_suid, 4, &c->suid},   {o->cred_sgid, 4, &c->sgid},
             {o->cred_fsuid, 4, &c->fsuid}, {o->cred_fsgid, 4, &c->fsgid},
             {o->cred_cap_permitted, 8, &c->cap_permitted},
             {o->cred_cap_effective, 8, &c->cap_effective}};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        if ((f[i].off || i < 4) && hvi_gva_write(e, 0, c->cred + f[i].off, f[i].v, f[i].len) != HVI_OK)
            return false;
    return true;
}

static bool cred_cb(const struct lix_task *t, void *ctx)
{
    struct cred_walk *w = ctx;
    struct lixp_state *s = w->s;
    const struct lix_offsets *o = &s->k->off;
    struct lixp_cred now = {.task = t->addr, .pid = t->pid, .tgid = t->tgid,
                            .user = t->mm != 0, .seen = true};
    if (lix_read_u64(s->k, t->addr + o->task_cred, &now.cred) != HVI_OK ||
        !lix_is_kptr(now.cred) || !cred_read(s->k, now.cred, &now))
        return true;
    if (!o->task_real_cred ||
        lix_read_u64(s->k, t->addr + o->task_real_cred, &now.real_cred) != HVI_OK)
        now.real_cred = now.cred;
    struct lixp_cred *c = cred_find(s, t->addr);
    if (c && c->cred == now.cred && c->pid == t->pid && !cred_same(c, &now)) {
        bool denied = !(w->e->options & HVI_OPT_LOG_ONLY) && restore_cred(w->e, s->k, c);
        cred_alert(w->e, s, t, c, &now, denied);
        if (denied) {
            s->stats.restored++;
            c->seen = true;
            return true;
        }
    }
    now.flagged = c ? c->flagged : 0;
    /* a user task on the kernel's own init_cred: only the idle tasks and the very first
     * kernel threads run on it; every exec/fork/setuid path installs a new cred */
    if (s->init_cred && now.user && (now.cred == s->init_cred || now.real_cred == s->init_cred) &&
        now.flagged != s->init_cred) {
        swap_alert(w->e, s, &now, t->comm, s->init_cred, "the kernel's init_cred");
        now.flagged = s->init_cred;
    }
    if (!c) {
        if (s->ncreds == s->creds_cap) {
            size_t cap = s->creds_cap ? s->creds_cap * 2 : 256;
            if (cap > LIX_MAX_TASKS)
                return false;
            struct lixp_cred *n = realloc(s->creds, cap * sizeof(*n));
            if (!n)
                return false;
            s->creds = n;
            s->creds_cap = cap;
        }
        c = &s->creds[s->ncreds++];
    }
    *c = now;
    return true;
}

static int by_real_cred(const void *a, const void *b)
{
    const struct lixp_cred *x = a, *y = b;
    return x->real_cred < y->real_cred ? -1 : x->real_cred > y->real_cred;
}

/* Another process's cred: real_cred is shared only by the threads of one process (copy_creds
 * with CLONE_THREAD); commit_creds installs a fresh one. A task whose real_cred changed since
 * the last round to one another process (other tgid) uses was given that cred by a swap. */
static void check_shared(hvi_engine *e, struct lixp_state *s, const struct lixp_cred *prev,
                         size_t nprev)
{
    struct lixp_cred *v = malloc(s->ncreds * sizeof(*v) + 1);
    if (!v)
        return;
    memcpy(v, s->creds, s->ncreds * sizeof(*v));
    qsort(v, s->ncreds, sizeof(*v), by_real_cred);
    for (size_t i = 0; i + 1 < s->ncreds; i++) {
        if (v[i].real_cred != v[i + 1].real_cred || v[i].tgid == v[i + 1].tgid)
            continue;
        for (size_t j = i; j <= i + 1; j++) {
            const struct lixp_cred *p = NULL;
            for (size_t q = 0; q < nprev && !p; q++)
                if (prev[q].task == v[j].task)
                    p = &prev[q];
            struct lixp_cred *c = cred_find(s, v[j].task);
            if (!p || p->real_cred == v[j].real_cred || !c || c->flagged == v[j].real_cred)
                continue; /* unchanged (the other one moved), or new this round, or reported */
            char comm[17] = "";
            struct lix_task t;
            if (lix_task_read(s->k, v[j].task, &t) == HVI_OK)
                hvi_strlcpy(comm, t.comm, sizeof(comm));
            char what[96];
            snprintf(what, sizeof(what), "the cred of pid %d (another process)",
                     v[j == i ? i + 1 : i].pid);
            swap_alert(e, s, c, comm, v[j].real_cred, what);
            c->flagged = v[j].real_cred;
        }
    }
    free(v);
}

void lixp_check_creds(hvi_engine *e, struct lixp_state *s)
{
    if (!s->init_cred_looked) {
        s->init_cred_looked = true;
        if (lix_kallsyms_lookup(&s->k->ks, "init_cred", &s->init_cred) != HVI_OK)
            s->init_cred = 0;
    }
    struct lixp_cred *prev = s->ncreds ? malloc(s->ncreds * sizeof(*prev)) : NULL;
    size_t nprev = prev ? s->ncreds : 0;
    if (prev)
        memcpy(prev, s->creds, nprev * sizeof(*prev));
    for (size_t i = 0; i < s->ncreds; i++)
        s->creds[i].seen = false;
    struct cred_walk w = {e, s};
    if (lix_task_walk(s->k, true, cred_cb, &w) != HVI_OK) {
        free(prev);
        return;
    }
    for (size_t i = 0; i < s->ncreds;) { /* forget exited tasks */
        if (!s->creds[i].seen)
            s->creds[i] = s->creds[--s->ncreds];
        else
            i++;
    }
    if (s->k->off.task_real_cred)
        check_shared(e, s, prev, nprev);
    free(prev);
}

/* ---- hidden modules ------------------------------------------------------------------------ */

static bool mod_collect_cb(const struct lix_module *m, void *ctx)
{
    return lix_seen_add(ctx, m->addr) != HVI_E_LIMIT;
}

static bool already_reported(struct lixp_state *s, uint64_t obj)
{
    for (uint32_t i = 0; i < s->nreported_hidden; i++)
        if (s->reported_hidden[i] == obj)
            return true;
    if (s->nreported_hidden < sizeof(s->reported_hidden) / sizeof(s->reported_hidden[0]))
        s->reported_hidden[s->nreported_hidden++] = obj;
    return false;
}

static void hidden_alert(hvi_engine *e, struct lixp_state *s, uint32_t type, uint64_t obj,
                         int32_t pid, const char *name, const char *how)
{
    hvi_alert a;
    hvi_alert_init(&a, type, e->current_vcpu);
    a.action = HVI_ALERT_LOGGED;
    a.gva = obj;
    a.pid = pid;
    hvi_strlcpy(a.comm, type == HVI_ALERT_HIDDEN_PROCESS ? name : "", sizeof(a.comm));
    hvi_strlcpy(a.object, type == HVI_ALERT_HIDDEN_PROCESS ? "task-list" : "module-list",
                sizeof(a.object));
    if (type == HVI_ALERT_HIDDEN_MODULE)
        hvi_strlcpy(a.module, name, sizeof(a.module));
    snprintf(a.detail, sizeof(a.detail), "%s %s (0x%llx) %s; writer RIP unknown (timer check)",
             type == HVI_ALERT_HIDDEN_PROCESS ? "process" : "module", name,
             (unsigned long long)obj, how);
    hvi_alert_emit(e, &a);
    s->stats.violations++;
    s->found++;
}

/* One /sys/module kobject: returns false when the layout does not hold. */
static bool check_kobj(hvi_engine *e, struct lixp_state *s, uint64_t kobj, struct lix_seen *mods)
{
    const struct lix_kernel *k = s->k;
    uint64_t name_p = 0, mod = 0;
    char kname[64], mname[64];
    if (lix_read_u64(k, kobj, &name_p) != HVI_OK || !lix_is_kptr(name_p) ||
        lix_read_str(k, name_p, kname, sizeof(kname)) != HVI_OK ||
        lix_read_u64(k, kobj + KOBJ_SIZE, &mod) != HVI_OK)
        return false;
    if (!mod) /* a built-in module's parameters: no struct module */
        return true;
    if (!lix_is_kptr(mod) || lix_read_str(k, mod + k->off.mod_name, mname, sizeof(mname)) != HVI_OK)
        return false;
    if (strcmp(kname, mname))
        return false;
    if (lix_seen_add(mods, mod) == HVI_OK && !already_reported(s, mod))
        hidden_alert(e, s, HVI_ALERT_HIDDEN_MODULE, mod, -1, mname,
                     "is in /sys/module (module_kset) but not on the modules list");
    return true;
}

void lixp_check_hidden_modules(hvi_engine *e, struct lixp_state *s)
{
    const struct lix_kernel *k = s->k;
    uint64_t kset = 0, head = 0, node = 0;
    if (!s->module_kset && lix_kallsyms_lookup(&s->k->ks, "module_kset", &s->module_kset) != HVI_OK)
        return;
    if (lix_read_u64(k, s->module_kset, &kset) != HVI_OK || !lix_is_kptr(kset))
        return;
    struct lix_seen mods, walk;
    if (lix_seen_init(&mods, LIX_MAX_MODULES) != HVI_OK)
        return;
    if (lix_seen_init(&walk, LIXP_MAX_KOBJS) != HVI_OK) {
        lix_seen_free(&mods);
        return;
    }
    head = kset; /* kset.list is its first member */
    if (lix_module_walk(k, mod_collect_cb, &mods) == HVI_OK &&
        lix_read_u64(k, head, &node) == HVI_OK) {
        uint32_t bad = 0;
        for (uint32_t n = 0; node != head && n < LIXP_MAX_KOBJS && bad < 4; n++) {
            if (!lix_is_kptr(node) || lix_seen_add(&walk, node) != HVI_OK)
                break;
            if (!check_kobj(e, s, node - KOBJ_ENTRY, &mods))
                bad++;
            if (lix_read_u64(k, node, &node) != HVI_OK)
                break;
        }
        if (bad >= 4)
            hvi_log(e, 2, "linux protect: module_kset layout not as expected, check off");
    }
    lix_seen_free(&walk);
    lix_seen_free(&mods);
}

/* ---- hidden processes ---------------------------------------------------------------------- */

static bool task_collect_cb(const struct lix_task *t, void *ctx)
{
    return lix_seen_add(ctx, t->addr) != HVI_E_LIMIT;
}

struct bfs {
    uint64_t *q;
    size_t n, cap;
};

/* Children of `parent` (validated by their real_parent) appended to the queue. */
static void push_children(const struct lix_kernel *k, struct bfs *b, struct lix_seen *seen,
                          uint64_t parent)
{
    uint32_t rp = k->off.task_real_parent, ch = rp + 16, sib = rp + 32;
    uint64_t head = parent + ch, node = 0;
    if (lix_read_u64(k, head, &node) != HVI_OK)
        return;
    for (uint32_t n = 0; node != head && n < LIX_MAX_TASKS && b->n < b->cap; n++) {
        uint64_t child = node - sib, real_parent = 0;
        if (!lix_is_kptr(node) || lix_read_u64(k, child + rp, &real_parent) != HVI_OK)
            return;
        if (lix_seen_add(seen, child) != HVI_OK)
            return; /* a cycle, or the bound */
        if (real_parent == parent) /* anything else is not a child: not trusted as a task */
            b->q[b->n++] = child;
        if (lix_read_u64(k, node, &node) != HVI_OK)
            return;
    }
}

static bool was_suspect(const struct lixp_state *s, uint64_t task)
{
    for (uint32_t i = 0; i < s->nsuspect_hidden; i++)
        if (s->suspect_hidden[i] == task)
            return true;
    return false;
}

/* A task on its parent's children list but not on the task list is reported when two
 * consecutive rounds find it so: a task between the two unlinks of its exit (tasks first, then
 * sibling; the vCPU's host thread may be descheduled in between for a long time under TCG) is
 * seen once, a hidden one every round. */
void lixp_check_hidden_tasks(hvi_engine *e, struct lixp_state *s)
{
    const struct lix_kernel *k = s->k;
    uint64_t susp[sizeof(s->suspect_hidden) / sizeof(s->suspect_hidden[0])] = {0};
    uint32_t nsusp = 0;
    struct lix_seen listed, seen;
    struct bfs b = {calloc(LIX_MAX_TASKS, sizeof(uint64_t)), 0, LIX_MAX_TASKS};
    if (!b.q)
        return;
    if (lix_seen_init(&listed, LIX_MAX_TASKS) != HVI_OK) {
        free(b.q);
        return;
    }
    if (lix_seen_init(&seen, LIX_MAX_TASKS) != HVI_OK) {
        lix_seen_free(&listed);
        free(b.q);
        return;
    }
    if (lix_task_walk(k, true, task_collect_cb, &listed) == HVI_OK) {
        push_children(k, &b, &seen, k->init_task);
        for (size_t i = 0; i < b.n; i++)
            push_children(k, &b, &seen, b.q[i]);
        for (size_t i = 0; i < b.n; i++) {
            struct lix_task t;
            if (lix_seen_add(&listed, b.q[i]) != HVI_OK)
                continue; /* on the tasks list too */
            if (lix_task_read(k, b.q[i], &t) != HVI_OK || t.pid <= 0)
                continue;
            /* a task that is on its parent's children list but on no tasks-list walk; a
             * second look at the list, with the guest paused, rules out a fork/exit racing
             * with this round. A second walk that fails (the list changed under it) gives no
             * verdict: the next round looks again (seen in the soak as a false alert). */
            bool listed_now = false, looked = false;
            struct lix_seen again;
            if (lix_seen_init(&again, LIX_MAX_TASKS) == HVI_OK) {
                const hvi_glue *g = &e->glue;
                bool paused = (g->caps & HVI_CAP_PAUSE) && g->pause && g->resume &&
                              g->pause(g->ctx) == HVI_OK;
                looked = lix_task_walk(k, true, task_collect_cb, &again) == HVI_OK;
                if (paused)
                    g->resume(g->ctx);
                listed_now = looked && lix_seen_add(&again, b.q[i]) != HVI_OK;
                lix_seen_free(&again);
            }
            if (!looked || listed_now)
                continue;
            if (was_suspect(s, b.q[i]) && !already_reported(s, b.q[i]))
                hidden_alert(e, s, HVI_ALERT_HIDDEN_PROCESS, b.q[i], t.pid, t.comm,
                             "is on its parent's children list but not on the task list");
            if (nsusp < sizeof(susp) / sizeof(susp[0]))
                susp[nsusp++] = b.q[i];
        }
        memcpy(s->suspect_hidden, susp, sizeof(susp));
        s->nsuspect_hidden = nsusp;
    }
    lix_seen_free(&seen);
    lix_seen_free(&listed);
    free(b.q);
}

void lixp_views_free(struct lixp_state *s)
{
    free(s->creds);
    s->creds = NULL;
    s->ncreds = s->creds_cap = 0;
}
