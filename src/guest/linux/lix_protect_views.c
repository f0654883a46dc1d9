/*
 * hvi guest/linux — protection by cross-checking views of guest state on the timer.
 *
 * Credentials: each task's cred pointer and ids are shadowed; ids that change while the cred
 * pointer stays the same were written in place (commit_creds always installs a new cred), so
 * that is an alert, and in deny mode the old ids are written back.
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

static void cred_alert(hvi_engine *e, struct lixp_state *s, const struct lix_task *t,
                       const struct lixp_cred *old, bool denied)
{
    hvi_alert a;
    hvi_alert_init(&a, HVI_ALERT_CREDS, e->current_vcpu);
    a.action = denied ? HVI_ALERT_DENIED : HVI_ALERT_LOGGED;
    a.gva = old->cred;
    a.old_value = old->uid | (uint64_t)old->euid << 32;
    a.new_value = t->uid | (uint64_t)t->euid << 32;
    a.pid = t->pid;
    hvi_strlcpy(a.comm, t->comm, sizeof(a.comm));
    hvi_strlcpy(a.object, "cred", sizeof(a.object));
    snprintf(a.detail, sizeof(a.detail),
             "cred 0x%llx of pid %d changed in place: uid %u->%u euid %u->%u gid %u->%u egid "
             "%u->%u; writer RIP unknown (timer check)",
             (unsigned long long)old->cred, t->pid, old->uid, t->uid, old->euid, t->euid,
             old->gid, t->gid, old->egid, t->egid);
    hvi_alert_emit(e, &a);
    s->stats.violations++;
    s->found++;
}

static bool restore_ids(hvi_engine *e, const struct lix_kernel *k, const struct lixp_cred *c)
{
    const struct lix_offsets *o = &k->off;
    return hvi_gva_write(e, 0, c->cred + o->cred_uid, &c->uid, 4) == HVI_OK &&
           hvi_gva_write(e, 0, c->cred + o->cred_gid, &c->gid, 4) == HVI_OK &&
           hvi_gva_write(e, 0, c->cred + o->cred_euid, &c->euid, 4) == HVI_OK &&
           hvi_gva_write(e, 0, c->cred + o->cred_egid, &c->egid, 4) == HVI_OK;
}

static bool cred_cb(const struct lix_task *t, void *ctx)
{
    struct cred_walk *w = ctx;
    struct lixp_state *s = w->s;
    uint64_t cred = 0;
    if (lix_read_u64(s->k, t->addr + s->k->off.task_cred, &cred) != HVI_OK || !lix_is_kptr(cred))
        return true;
    struct lixp_cred *c = cred_find(s, t->addr);
    if (c && c->cred == cred && c->pid == t->pid &&
        (c->uid != t->uid || c->gid != t->gid || c->euid != t->euid || c->egid != t->egid)) {
        bool denied = !(w->e->options & HVI_OPT_LOG_ONLY) && restore_ids(w->e, s->k, c);
        cred_alert(w->e, s, t, c, denied);
        if (denied) {
            s->stats.restored++;
            c->seen = true;
            return true;
        }
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
    *c = (struct lixp_cred){.task = t->addr, .cred = cred, .uid = t->uid, .gid = t->gid,
                            .euid = t->euid, .egid = t->egid, .pid = t->pid, .seen = true};
    return true;
}

void lixp_check_creds(hvi_engine *e, struct lixp_state *s)
{
    for (size_t i = 0; i < s->ncreds; i++)
        s->creds[i].seen = false;
    struct cred_walk w = {e, s};
    if (lix_task_walk(s->k, true, cred_cb, &w) != HVI_OK)
        return;
    for (size_t i = 0; i < s->ncreds;) { /* forget exited tasks */
        if (!s->creds[i].seen)
            s->creds[i] = s->creds[--s->ncreds];
        else
            i++;
    }
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
    snprintf(a.detail, sizeof(a.detail), "%s %s (0x%llx) %s", type == HVI_ALERT_HIDDEN_PROCESS ?
             "process" : "module", name, (unsigned long long)obj, how);
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

void lixp_check_hidden_tasks(hvi_engine *e, struct lixp_state *s)
{
    const struct lix_kernel *k = s->k;
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
             * second look at the list rules out a fork/exit racing with this round */
            bool listed_now = false;
            struct lix_seen again;
            if (lix_seen_init(&again, LIX_MAX_TASKS) == HVI_OK) {
                if (lix_task_walk(k, true, task_collect_cb, &again) == HVI_OK)
                    listed_now = lix_seen_add(&again, b.q[i]) != HVI_OK;
                lix_seen_free(&again);
            }
            if (!listed_now && !already_reported(s, b.q[i]))
                hidden_alert(e, s, HVI_ALERT_HIDDEN_PROCESS, b.q[i], t.pid, t.comm,
                             "is on its parent's children list but not on the task list");
        }
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
