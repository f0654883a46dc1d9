/* hvi guest/linux — events: decoding of detoured functions' arguments (guest-controlled) and the
 * engine's sorted process/module lists. */
#include <stdlib.h>
#include <string.h>

#include "guest/linux/lix_events.h"
#include "hvi/cami.h"

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

/* ---- which function each event is detoured at ---- */

static bool listed(const uint32_t *hashes, uint32_t n, const char *name)
{
    uint32_t h = hvi_cami_name_hash(name);
    for (uint32_t i = 0; i < n; i++)
        if (hashes[i] == h)
            return true;
    return false;
}

void lixe_choose(const uint32_t *hashes, uint32_t n, bool want_exec, lixe_lookup_fn lookup,
                 void *ctx, struct lixe_choice *out)
{
    static const char *const single[3] = {"wake_up_new_task", "begin_new_exec", "do_exit"};
    /* module pairs, tried in order: a pair is used only whole (a load seen at one point and its
     * unload at the matching one, failures included) */
    static const char *const pairs[2][2] = {
        {"module_param_sysfs_setup", "module_param_sysfs_remove"},
        {"do_init_module", "free_module"}};
    memset(out, 0, sizeof(*out));
    if (!hashes)
        n = 0;
    for (int ev = 0; ev < 3; ev++) {
        uint64_t a = 0;
        if (ev == 1 && !want_exec)
            continue;
        bool in = listed(hashes, n, single[ev]);
        if (n && !in) {
            out->unlisted[ev] = single[ev];
            continue;
        }
        if (lookup(ctx, single[ev], &a)) {
            out->addr[ev] = a;
            out->fn[ev] = single[ev];
            out->from_cami[ev] = in;
        }
    }
    /* pass 0: pairs in the list; pass 1 (no list only): any pair kallsyms has */
    for (int pass = 0; pass < (n ? 1 : 2) && !out->addr[3]; pass++)
        for (int i = 0; i < 2 && !out->addr[3]; i++) {
            bool in = listed(hashes, n, pairs[i][0]) && listed(hashes, n, pairs[i][1]);
            uint64_t a = 0, b = 0;
            if ((pass == 0 && !in) || !lookup(ctx, pairs[i][0], &a) ||
                !lookup(ctx, pairs[i][1], &b))
                continue;
            out->addr[3] = a, out->addr[4] = b;
            out->fn[3] = pairs[i][0], out->fn[4] = pairs[i][1];
            out->from_cami[3] = out->from_cami[4] = in;
        }
    if (n && !out->addr[3]) {
        bool any = false; /* a listed pair kallsyms lacks is not a refusal */
        for (int i = 0; i < 2; i++)
            any = any || (listed(hashes, n, pairs[i][0]) && listed(hashes, n, pairs[i][1]));
        if (!any)
            out->unlisted[3] = pairs[0][0], out->unlisted[4] = pairs[0][1];
    }
}
