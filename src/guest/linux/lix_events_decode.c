/* hvi guest/linux — events: decoding of detoured functions' arguments (guest-controlled) and the
 * engine's sorted process/module lists. */
#include <stdlib.h>
#include <string.h>

#include "guest/linux/lix_events.h"

static bool kptr_aligned(uint64_t p, uint64_t align)
{
    return lix_is_kptr(p) && !(p & (align - 1));
}

hvi_status lixe_current(const struct lix_kernel *k, uint64_t gs_base, uint64_t pcpu_off,
                        uint64_t *task)
{
    if (!k || !task)
        return HVI_E_INVAL;
    if (!lix_is_kptr(gs_base) || gs_base + pcpu_off < gs_base)
        return HVI_E_FORMAT;
    uint64_t t = 0;
    hvi_status st = lix_read_u64(k, gs_base + pcpu_off, &t);
    if (st != HVI_OK)
        return st;
    if (!kptr_aligned(t, 8))
        return HVI_E_FORMAT;
    *task = t;
    return HVI_OK;
}

hvi_status lixe_decode_task(const struct lix_kernel *k, uint64_t task, struct lixe_proc *out)
{
    if (!k || !out)
        return HVI_E_INVAL;
    if (!kptr_aligned(task, 8))
        return HVI_E_FORMAT;
    struct lix_task t;
    hvi_status st = lix_task_read(k, task, &t);
    if (st != HVI_OK)
        return st;
    if (t.pid <= 0 || t.tgid <= 0)
        return HVI_E_FORMAT;
    memset(out, 0, sizeof(*out));
    out->task = task;
    out->pid = t.pid, out->tgid = t.tgid, out->ppid = t.ppid;
    out->kernel_thread = t.mm == 0;
    memcpy(out->comm, t.comm, sizeof(out->comm));
    out->comm[16] = 0;
    if (t.mm && lix_task_exe(k, &t, out->exe, sizeof(out->exe)) != HVI_OK)
        out->exe[0] = 0;
    return HVI_OK;
}

static hvi_status read_kstr(const struct lix_kernel *k, uint64_t at, char *out, size_t len)
{
    uint64_t p = 0;
    out[0] = 0;
    hvi_status st = lix_read_u64(k, at, &p);
    if (st != HVI_OK)
        return st;
    if (!p)
        return HVI_OK;
    if (!lix_is_kptr(p))
        return HVI_E_FORMAT;
    return lix_read_str(k, p, out, len);
}

hvi_status lixe_decode_exec(const struct lix_kernel *k, const struct lixe_binprm *b, uint64_t bprm,
                            struct lixe_exec *out)
{
    if (!k || !b || !out)
        return HVI_E_INVAL;
    if (!kptr_aligned(bprm, 8) || !b->filename)
        return HVI_E_FORMAT;
    memset(out, 0, sizeof(*out));
    out->bprm = bprm;
    hvi_status st = read_kstr(k, bprm + b->filename, out->filename, sizeof(out->filename));
    if (st != HVI_OK)
        return st;
    if (!out->filename[0])
        return HVI_E_FORMAT; /* the kernel never execs an empty name */
    if (b->interp && read_kstr(k, bprm + b->interp, out->interp, sizeof(out->interp)) != HVI_OK)
        out->interp[0] = 0;
    uint64_t file = 0;
    if (b->file && lix_read_u64(k, bprm + b->file, &file) == HVI_OK && kptr_aligned(file, 8) &&
        lix_file_path(k, file, out->exe, sizeof(out->exe)) != HVI_OK)
        out->exe[0] = 0;
    return HVI_OK;
}

hvi_status lixe_decode_module(const struct lix_kernel *k, uint64_t mod, struct lixe_mod *out)
{
    if (!k || !out)
        return HVI_E_INVAL;
    if (!k->have_offsets)
        return HVI_E_STATE;
    if (!kptr_aligned(mod, 8))
        return HVI_E_FORMAT;
    const struct lix_offsets *o = &k->off;
    size_t nl = o->mod_name_len && o->mod_name_len < sizeof(out->name) ? o->mod_name_len
                                                                       : sizeof(out->name) - 1;
    uint64_t lay = mod + o->mod_core_layout;
    memset(out, 0, sizeof(*out));
    out->addr = mod;
    hvi_status st;
    if ((st = lix_read(k, mod + o->mod_name, out->name, nl)) != HVI_OK ||
        (st = lix_read_u32(k, mod + o->mod_state, &out->state)) != HVI_OK ||
        (st = lix_read_u64(k, lay + o->layout_base, &out->base)) != HVI_OK ||
        (st = lix_read_u32(k, lay + o->layout_size, &out->size)) != HVI_OK ||
        (st = lix_read_u32(k, lay + o->layout_text_size, &out->text_size)) != HVI_OK ||
        (st = lix_read_u32(k, lay + o->layout_ro_size, &out->ro_size)) != HVI_OK)
        return st;
    out->name[nl] = 0;
    if (!out->name[0] || (out->base && !lix_is_kptr(out->base)))
        return HVI_E_FORMAT;
    for (const char *c = out->name; *c; c++)
        if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e)
            return HVI_E_FORMAT; /* module names are printable, without spaces */
    return HVI_OK;
}

/* ---- lists ---- */

static size_t proc_lower(const struct lixe_lists *l, int32_t pid)
{
    size_t lo = 0, hi = l->np;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->p[mid].pid < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static hvi_status grow(void **arr, size_t *cap, size_t need, size_t elem, size_t max)
{
    if (need <= *cap)
        return HVI_OK;
    if (need > max)
        return HVI_E_LIMIT;
    size_t n = *cap ? *cap * 2 : 64;
    if (n > max)
        n = max;
    void *p = realloc(*arr, n * elem);
    if (!p)
        return HVI_E_NOMEM;
    *arr = p;
    *cap = n;
    return HVI_OK;
}

hvi_status lixe_proc_put(struct lixe_lists *l, const struct lixe_proc *p)
{
    if (!l || !p)
        return HVI_E_INVAL;
    size_t i = proc_lower(l, p->pid);
    if (i < l->np && l->p[i].pid == p->pid) {
        l->p[i] = *p;
        return HVI_OK;
    }
    hvi_status st = grow((void **)&l->p, &l->capp, l->np + 1, sizeof(*l->p), LIXE_MAX_PROCS);
    if (st != HVI_OK)
        return st;
    memmove(&l->p[i + 1], &l->p[i], (l->np - i) * sizeof(*l->p));
    l->p[i] = *p;
    l->np++;
    return HVI_OK;
}

struct lixe_proc *lixe_proc_find(struct lixe_lists *l, int32_t pid)
{
    if (!l)
        return NULL;
    size_t i = proc_lower(l, pid);
    return i < l->np && l->p[i].pid == pid ? &l->p[i] : NULL;
}

bool lixe_proc_del(struct lixe_lists *l, int32_t pid)
{
    struct lixe_proc *p = lixe_proc_find(l, pid);
    if (!p)
        return false;
    size_t i = (size_t)(p - l->p);
    memmove(&l->p[i], &l->p[i + 1], (l->np - i - 1) * sizeof(*l->p));
    l->np--;
    return true;
}

static size_t mod_lower(const struct lixe_lists *l, uint64_t addr)
{
    size_t lo = 0, hi = l->nm;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->m[mid].addr < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

hvi_status lixe_mod_put(struct lixe_lists *l, const struct lixe_mod *m)
{
    if (!l || !m)
        return HVI_E_INVAL;
    size_t i = mod_lower(l, m->addr);
    if (i < l->nm && l->m[i].addr == m->addr) {
        l->m[i] = *m;
        return HVI_OK;
    }
    hvi_status st = grow((void **)&l->m, &l->capm, l->nm + 1, sizeof(*l->m), LIXE_MAX_MODS);
    if (st != HVI_OK)
        return st;
    memmove(&l->m[i + 1], &l->m[i], (l->nm - i) * sizeof(*l->m));
    l->m[i] = *m;
    l->nm++;
    return HVI_OK;
}

bool lixe_mod_del(struct lixe_lists *l, uint64_t addr)
{
    if (!l)
        return false;
    size_t i = mod_lower(l, addr);
    if (i >= l->nm || l->m[i].addr != addr)
        return false;
    memmove(&l->m[i], &l->m[i + 1], (l->nm - i - 1) * sizeof(*l->m));
    l->nm--;
    return true;
}

void lixe_lists_clear(struct lixe_lists *l, bool procs, bool mods)
{
    if (!l)
        return;
    if (procs)
        l->np = 0;
    if (mods)
        l->nm = 0;
}

void lixe_lists_free(struct lixe_lists *l)
{
    if (!l)
        return;
    free(l->p);
    free(l->m);
    memset(l, 0, sizeof(*l));
}

const char *lixe_basename(const char *path)
{
    const char *s = path ? strrchr(path, '/') : NULL;
    return s ? s + 1 : (path ? path : "");
}
