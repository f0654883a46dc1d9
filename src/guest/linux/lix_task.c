/* hvi guest/linux — processes and threads from init_task: the `tasks` list (one entry per
 * thread-group leader) and each leader's `thread_group` ring. Every list step checks
 * next->prev == current and the visited set; walks are bounded by LIX_MAX_TASKS. The fields of
 * one object (task, cred, dentry, mm) are read together when they lie close. */
#include <string.h>

#include "guest/linux/lix.h"

static hvi_status need_offsets(const struct lix_kernel *k)
{
    if (!k || !k->mem.read)
        return HVI_E_INVAL;
    return k->have_offsets ? HVI_OK : HVI_E_STATE;
}

#define SPAN_MAX 4096u /* fields read together when their span is at most this long */

struct field {
    uint32_t off, len;
    void *out;
};

/* The fields of the object at `base`: one read of their span when it is short (each translation
 * costs a page walk), else, or when the span touches a page the fields do not, one read each. */
static hvi_status read_fields(const struct lix_kernel *k, uint64_t base, const struct field *f,
                              size_t n)
{
    uint64_t lo = UINT64_MAX, hi = 0;
    for (size_t i = 0; i < n; i++) {
        if (f[i].off < lo)
            lo = f[i].off;
        if ((uint64_t)f[i].off + f[i].len > hi)
            hi = (uint64_t)f[i].off + f[i].len;
    }
    if (n && hi - lo <= SPAN_MAX) {
        uint8_t buf[SPAN_MAX];
        if (lix_read(k, base + lo, buf, (size_t)(hi - lo)) == HVI_OK) {
            for (size_t i = 0; i < n; i++)
                memcpy(f[i].out, buf + (f[i].off - lo), f[i].len);
            return HVI_OK;
        }
    }
    for (size_t i = 0; i < n; i++) {
        hvi_status st = lix_read(k, base + f[i].off, f[i].out, f[i].len);
        if (st != HVI_OK)
            return st;
    }
    return HVI_OK;
}

hvi_status lix_task_read(const struct lix_kernel *k, uint64_t task, struct lix_task *out)
{
    hvi_status st = need_offsets(k);
    if (st != HVI_OK || !out)
        return st != HVI_OK ? st : HVI_E_INVAL;
    const struct lix_offsets *o = &k->off;
    struct lix_task t;
    memset(&t, 0, sizeof(t));
    t.addr = task;
    uint64_t parent = 0, cred = 0;
    const struct field tf[] = {{o->task_pid, 4, &t.pid},          {o->task_tgid, 4, &t.tgid},
                               {o->task_comm, 16, t.comm},        {o->task_mm, 8, &t.mm},
                               {o->task_real_parent, 8, &parent}, {o->task_cred, 8, &cred}};
    if ((st = read_fields(k, task, tf, sizeof(tf) / sizeof(tf[0]))) != HVI_OK)
        return st;
    t.comm[16] = 0;
    if (t.mm && !lix_is_kptr(t.mm))
        return HVI_E_FORMAT;
    t.ppid = -1;
    if (parent && lix_read(k, parent + o->task_tgid, &t.ppid, 4) != HVI_OK)
        t.ppid = -1;
    if (cred && lix_is_kptr(cred)) {
        const struct field cf[] = {{o->cred_uid, 4, &t.uid},
                                   {o->cred_gid, 4, &t.gid},
                                   {o->cred_euid, 4, &t.euid},
                                   {o->cred_egid, 4, &t.egid}};
        if ((st = read_fields(k, cred, cf, sizeof(cf) / sizeof(cf[0]))) != HVI_OK)
            return st;
    } else {
        return HVI_E_FORMAT;
    }
    *out = t;
    return HVI_OK;
}

/* One step along a list_head at `node`: *next = node->next, checked (next->prev == node). */
static hvi_status list_step(const struct lix_kernel *k, uint64_t node, uint64_t *next)
{
    uint64_t n = 0, back = 0;
    hvi_status st = lix_read_u64(k, node, &n);
    if (st != HVI_OK)
        return st;
    if (!lix_is_kptr(n) || (n & 7))
        return HVI_E_FORMAT;
    if ((st = lix_read_u64(k, n + 8, &back)) != HVI_OK)
        return st;
    if (back != node)
        return HVI_E_FORMAT;
    *next = n;
    return HVI_OK;
}

struct walk {
    const struct lix_kernel *k;
    struct lix_seen seen;
    lix_task_cb cb;
    void *ctx;
    bool stop;
};

static hvi_status visit(struct walk *w, uint64_t task)
{
    hvi_status st = lix_seen_add(&w->seen, task);
    if (st != HVI_OK)
        return st == HVI_E_EXISTS ? HVI_E_FORMAT : st;
    struct lix_task t;
    if ((st = lix_task_read(w->k, task, &t)) != HVI_OK)
        return st;
    if (!w->cb(&t, w->ctx))
        w->stop = true;
    return HVI_OK;
}

static hvi_status walk_threads(struct walk *w, uint64_t leader)
{
    uint32_t off = w->k->off.task_thread_group;
    uint64_t head = leader + off, cur = head;
    for (uint32_t n = 0; n < LIX_MAX_THREADS && !w->stop; n++) {
        hvi_status st = list_step(w->k, cur, &cur);
        if (st != HVI_OK)
            return st;
        if (cur == head)
            return HVI_OK;
        if ((st = visit(w, cur - off)) != HVI_OK)
            return st;
    }
    return w->stop ? HVI_OK : HVI_E_LIMIT;
}

hvi_status lix_task_walk(const struct lix_kernel *k, bool with_threads, lix_task_cb cb, void *ctx)
{
    hvi_status st = need_offsets(k);
    if (st != HVI_OK || !cb || !k->init_task)
        return st != HVI_OK ? st : HVI_E_INVAL;
    struct walk w = {.k = k, .cb = cb, .ctx = ctx};
    if ((st = lix_seen_init(&w.seen, LIX_MAX_TASKS)) != HVI_OK)
        return st;
    uint32_t off = k->off.task_tasks;
    uint64_t head = k->init_task + off, cur = head;
    st = HVI_E_LIMIT;
    for (uint32_t n = 0; n < LIX_MAX_TASKS && !w.stop; n++) {
        hvi_status s2 = list_step(k, cur, &cur);
        if (s2 == HVI_OK && cur == head) {
            st = HVI_OK;
            break;
        }
        if (s2 == HVI_OK)
            s2 = visit(&w, cur - off);
        if (s2 == HVI_OK && with_threads)
            s2 = walk_threads(&w, cur - off);
        if (s2 != HVI_OK) {
            st = s2;
            break;
        }
    }
    if (w.stop)
        st = HVI_OK;
    lix_seen_free(&w.seen);
    return st;
}

hvi_status lix_file_path(const struct lix_kernel *k, uint64_t file, char *out, size_t len)
{
    hvi_status st = need_offsets(k);
    if (st != HVI_OK || !out || len < 2)
        return st != HVI_OK ? st : HVI_E_INVAL;
    const struct lix_offsets *o = &k->off;
    uint64_t d = 0;
    if ((st = lix_read_u64(k, file + o->file_path + o->path_dentry, &d)) != HVI_OK)
        return st;
    char tmp[LIX_MAX_PATH_DEPTH][256];
    uint32_t depth = 0;
    for (;; depth++) {
        if (depth == LIX_MAX_PATH_DEPTH)
            return HVI_E_LIMIT;
        uint64_t parent = 0, name = 0;
        uint32_t nlen = 0;
        if (!lix_is_kptr(d))
            return HVI_E_FORMAT;
        const struct field df[] = {{o->dentry_parent, 8, &parent},
                                   {o->dentry_name + o->qstr_len, 4, &nlen},
                                   {o->dentry_name + o->qstr_name, 8, &name}};
        if ((st = read_fields(k, d, df, sizeof(df) / sizeof(df[0]))) != HVI_OK)
            return st;
        if (parent == d)
            break; /* the root of this mount */
        if (nlen == 0 || nlen >= sizeof(tmp[0]))
            return HVI_E_FORMAT;
        if ((st = lix_read(k, name, tmp[depth], nlen)) != HVI_OK)
            return st;
        tmp[depth][nlen] = 0;
        d = parent;
    }
    size_t pos = 0;
    out[0] = 0;
    for (uint32_t i = depth; i-- > 0;) {
        size_t n = strlen(tmp[i]);
        if (pos + 1 + n + 1 > len)
            return HVI_E_LIMIT;
        out[pos++] = '/';
        memcpy(out + pos, tmp[i], n + 1);
        pos += n;
    }
    if (depth == 0) {
        out[0] = '/';
        out[1] = 0;
    }
    return HVI_OK;
}

hvi_status lix_task_exe(const struct lix_kernel *k, const struct lix_task *t, char *out, size_t len)
{
    if (!k || !t || !out || !len)
        return HVI_E_INVAL;
    out[0] = 0;
    if (!t->mm)
        return HVI_OK;
    uint64_t file = 0;
    hvi_status st = lix_read_u64(k, t->mm + k->off.mm_exe_file, &file);
    if (st != HVI_OK || !file)
        return st;
    return lix_file_path(k, file, out, len);
}

hvi_status lix_task_cmdline(const struct lix_kernel *k, const struct lix_task *t, char *out,
                            size_t len)
{
    if (!k || !t || !out || !len)
        return HVI_E_INVAL;
    out[0] = 0;
    if (!t->mm)
        return HVI_OK;
    if (!k->mem.read_as || !k->page_offset_base)
        return HVI_E_UNSUPPORTED;
    uint64_t a = 0, b = 0, pgd = 0;
    hvi_status st;
    const struct field mf[] = {
        {k->off.mm_arg_start, 8, &a}, {k->off.mm_arg_end, 8, &b}, {k->off.mm_pgd, 8, &pgd}};
    if ((st = read_fields(k, t->mm, mf, sizeof(mf) / sizeof(mf[0]))) != HVI_OK)
        return st;
    if (b <= a || pgd < k->page_offset_base)
        return b == a ? HVI_OK : HVI_E_FORMAT;
    size_t n = (size_t)(b - a);
    if (n > LIX_MAX_CMDLINE)
        n = LIX_MAX_CMDLINE;
    if (n >= len)
        n = len - 1;
    st = k->mem.read_as(k->mem.ctx, pgd - k->page_offset_base, a, out, n);
    if (st != HVI_OK)
        return st;
    while (n > 0 && out[n - 1] == 0)
        n--;
    for (size_t i = 0; i < n; i++)
        if (out[i] == 0)
            out[i] = ' ';
    out[n] = 0;
    return HVI_OK;
}
