/* hvi guest/linux — the public query API (include/hvi/linux.h) over the walks. */
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix.h"
#include "hvi/linux.h"

static hvi_status need_kernel(hvi_engine *e, bool offsets, struct lix_kernel **out)
{
    if (!e)
        return HVI_E_INVAL;
    struct lix_kernel *k = lix_get(e);
    if (!k)
        return hvi_fail(e, HVI_E_STATE, "no Linux kernel has been discovered in this guest");
    if (offsets && !k->have_offsets)
        return hvi_fail(e, HVI_E_STATE, "Linux %s has no selected CAMI entry (no offsets)",
                        k->release);
    *out = k;
    return HVI_OK;
}

hvi_status hvi_linux_get_info(hvi_engine *e, hvi_linux_info *out)
{
    struct lix_kernel *k = NULL;
    hvi_status st = need_kernel(e, false, &k);
    if (st != HVI_OK || !out)
        return st != HVI_OK ? st : HVI_E_INVAL;
    memset(out, 0, sizeof(*out));
    hvi_strlcpy(out->release, k->release, sizeof(out->release));
    hvi_strlcpy(out->banner, k->banner, sizeof(out->banner));
    out->version = k->version;
    out->image_start = k->image_start;
    out->image_end = k->image_end;
    out->slide = k->slide;
    out->symbols = k->ks.count;
    out->have_offsets = k->have_offsets;
    return HVI_OK;
}

/* A growing array of fixed-size records. */
struct vec {
    void *data;
    size_t n, cap, elem, max;
    hvi_status err;
};

static void *vec_push(struct vec *v)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        if (cap > v->max)
            cap = v->max;
        void *d = v->n < cap ? realloc(v->data, cap * v->elem) : NULL;
        if (!d) {
            v->err = v->n >= v->max ? HVI_E_LIMIT : HVI_E_NOMEM;
            return NULL;
        }
        v->data = d;
        v->cap = cap;
    }
    void *p = (char *)v->data + v->n++ * v->elem;
    memset(p, 0, v->elem);
    return p;
}

struct pctx {
    const struct lix_kernel *k;
    struct vec v;
};

static bool add_process(const struct lix_task *t, void *ctx)
{
    struct pctx *c = ctx;
    hvi_linux_process *p = vec_push(&c->v);
    if (!p)
        return false;
    p->task = t->addr;
    p->pid = t->pid, p->tgid = t->tgid, p->ppid = t->ppid;
    p->uid = t->uid, p->gid = t->gid, p->euid = t->euid, p->egid = t->egid;
    p->kernel_thread = t->mm == 0;
    memcpy(p->comm, t->comm, sizeof(p->comm));
    if (lix_task_exe(c->k, t, p->exe, sizeof(p->exe)) != HVI_OK)
        p->exe[0] = 0;
    if (lix_task_cmdline(c->k, t, p->cmdline, sizeof(p->cmdline)) != HVI_OK)
        p->cmdline[0] = 0;
    return true;
}

static hvi_status finish(hvi_engine *e, hvi_status st, struct vec *v, void **out, size_t *count,
                         const char *what)
{
    if (st == HVI_OK)
        st = v->err;
    if (st != HVI_OK) {
        free(v->data);
        return hvi_fail(e, st, "walking the guest's %s: %s", what, hvi_strstatus(st));
    }
    *out = v->data;
    *count = v->n;
    return HVI_OK;
}

hvi_status hvi_linux_list_processes(hvi_engine *e, bool threads, hvi_linux_process **out,
                                    size_t *count)
{
    struct lix_kernel *k = NULL;
    hvi_status st = need_kernel(e, true, &k);
    if (st != HVI_OK || !out || !count)
        return st != HVI_OK ? st : HVI_E_INVAL;
    struct pctx c = {.k = k, .v = {.elem = sizeof(hvi_linux_process), .max = LIX_MAX_TASKS}};
    st = lix_task_walk(k, threads, add_process, &c);
    return finish(e, st, &c.v, (void **)out, count, "task list");
}

static bool add_module(const struct lix_module *m, void *ctx)
{
    struct vec *v = ctx;
    hvi_linux_module *o = vec_push(v);
    if (!o)
        return false;
    o->module = m->addr;
    memcpy(o->name, m->name, sizeof(o->name));
    o->state = m->state;
    o->base = m->core_base;
    o->size = m->core_size, o->text_size = m->core_text_size, o->ro_size = m->core_ro_size;
    return true;
}

hvi_status hvi_linux_list_modules(hvi_engine *e, hvi_linux_module **out, size_t *count)
{
    struct lix_kernel *k = NULL;
    hvi_status st = need_kernel(e, true, &k);
    if (st != HVI_OK || !out || !count)
        return st != HVI_OK ? st : HVI_E_INVAL;
    struct vec v = {.elem = sizeof(hvi_linux_module), .max = LIX_MAX_MODULES};
    st = lix_module_walk(k, add_module, &v);
    return finish(e, st, &v, (void **)out, count, "module list");
}

struct find_pid {
    int32_t pid;
    struct lix_task t;
    bool found;
};

static bool match_pid(const struct lix_task *t, void *ctx)
{
    struct find_pid *f = ctx;
    if (t->pid != f->pid)
        return true;
    f->t = *t;
    f->found = true;
    return false;
}

struct vctx {
    const struct lix_kernel *k;
    struct vec v;
};

static bool add_vma(const struct lix_vma *m, void *ctx)
{
    struct vctx *c = ctx;
    hvi_linux_vma *o = vec_push(&c->v);
    if (!o)
        return false;
    o->start = m->start, o->end = m->end, o->flags = m->flags, o->pgoff = m->pgoff;
    if (m->file && lix_file_path(c->k, m->file, o->path, sizeof(o->path)) != HVI_OK)
        hvi_strlcpy(o->path, "?", sizeof(o->path));
    return true;
}

hvi_status hvi_linux_list_vmas(hvi_engine *e, int32_t pid, hvi_linux_vma **out, size_t *count)
{
    struct lix_kernel *k = NULL;
    hvi_status st = need_kernel(e, true, &k);
    if (st != HVI_OK || !out || !count)
        return st != HVI_OK ? st : HVI_E_INVAL;
    struct find_pid f = {.pid = pid};
    st = lix_task_walk(k, true, match_pid, &f);
    if (st != HVI_OK)
        return hvi_fail(e, st, "walking the guest's task list: %s", hvi_strstatus(st));
    if (!f.found)
        return hvi_fail(e, HVI_E_NOT_FOUND, "no process with pid %d", (int)pid);
    struct vctx c = {.k = k, .v = {.elem = sizeof(hvi_linux_vma), .max = LIX_MAX_VMAS}};
    if (f.t.mm)
        st = lix_vma_walk(k, f.t.mm, add_vma, &c);
    return finish(e, st, &c.v, (void **)out, count, "memory map");
}

hvi_status hvi_linux_find_symbol(hvi_engine *e, const char *name, uint64_t *addr)
{
    struct lix_kernel *k = NULL;
    hvi_status st = need_kernel(e, false, &k);
    if (st != HVI_OK)
        return st;
    return lix_kallsyms_lookup(&k->ks, name, addr);
}

hvi_status hvi_linux_symbolize(hvi_engine *e, uint64_t addr, char *name, size_t len,
                               uint64_t *offset)
{
    struct lix_kernel *k = NULL;
    hvi_status st = need_kernel(e, false, &k);
    if (st != HVI_OK || !name || !len || !offset)
        return st != HVI_OK ? st : HVI_E_INVAL;
    const char *n = NULL;
    if ((st = lix_kallsyms_find(&k->ks, addr, &n, offset)) != HVI_OK)
        return st;
    hvi_strlcpy(name, n, len);
    return HVI_OK;
}

void hvi_linux_free(void *array) { free(array); }
