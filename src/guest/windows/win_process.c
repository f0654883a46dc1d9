/* guest/windows — processes (EPROCESS.ActiveProcessLinks from PsActiveProcessHead) and drivers
 * (KLDR_DATA_TABLE_ENTRY.InLoadOrderLinks from PsLoadedModuleList), with the offsets of the
 * selected CAMI entry. Walks are bounded, every link must be a kernel pointer whose Blink points
 * back, so cycles and cross-linked lists stop with HVI_E_FORMAT / HVI_E_LIMIT. */
#include <string.h>

#include "core/engine.h"
#include "guest/windows/win.h"

hvi_status win_read_process(hvi_engine *e, uint64_t ep, hvi_windows_process *out)
{
    struct win_state *w = win_get(e);
    if (!w || !w->active)
        return HVI_E_STATE;
    const struct win_offsets *o = &w->off;
    memset(out, 0, sizeof(*out));
    out->eprocess = ep;
    uint64_t id = 0, ppid = 0;
    uint8_t name[15];
    hvi_status st;
    if (!win_is_kptr(ep) || ep + o->p_name < ep || !win_is_kptr(ep + o->p_name))
        return HVI_E_RANGE;
    if ((st = win_read_u64(e, ep + o->p_id, &id)) != HVI_OK ||
        (st = hvi_gva_read(e, 0, ep + o->p_name, name, sizeof(name))) != HVI_OK)
        return st;
    out->pid = (uint32_t)id;
    if (o->p_ppid && win_read_u64(e, ep + o->p_ppid, &ppid) == HVI_OK)
        out->ppid = (uint32_t)ppid;
    if (o->p_cr3)
        (void)win_read_u64(e, ep + o->p_cr3, &out->cr3);
    if (o->p_peb)
        (void)win_read_u64(e, ep + o->p_peb, &out->peb);
    if (o->p_flags)
        (void)win_read_u32(e, ep + o->p_flags, &out->flags);
    out->exiting = (out->flags & (o->f_exiting | o->f_delete | o->f_vmdeleted)) != 0;
    size_t i = 0;
    for (; i < sizeof(name) && name[i]; i++)
        out->name[i] = (name[i] >= 0x20 && name[i] < 0x7f) ? (char)name[i] : '?';
    out->name[i] = 0;
    return HVI_OK;
}

/* Next node of a LIST_ENTRY at `node`: Flink, checked to be a kernel pointer whose Blink is
 * `node`. */
hvi_status win_list_next(hvi_engine *e, uint64_t node, uint64_t *next)
{
    uint64_t f = 0, b = 0;
    hvi_status st = win_read_u64(e, node, &f);
    if (st != HVI_OK)
        return st;
    if (!win_is_kptr(f) || (f & 7))
        return HVI_E_FORMAT;
    if ((st = win_read_u64(e, f + 8, &b)) != HVI_OK)
        return st;
    if (b != node)
        return HVI_E_FORMAT;
    *next = f;
    return HVI_OK;
}

/* PsActiveProcessHead is not exported: it is the one node of the System process's list that lies
 * inside ntoskrnl's image (every other node is an EPROCESS in pool). */
hvi_status win_find_process_head(hvi_engine *e, uint64_t *head)
{
    struct win_state *w = win_get(e);
    if (!w || !w->cami)
        return HVI_E_STATE;
    uint64_t start = w->system_process + w->off.p_list, node = start;
    for (uint32_t i = 0; i <= WIN_MAX_PROCESSES; i++) {
        uint64_t next = 0;
        hvi_status st = win_list_next(e, node, &next);
        if (st != HVI_OK)
            return hvi_fail(e, st,
                            "process list broken at 0x%llx (%s) while looking for "
                            "PsActiveProcessHead",
                            (unsigned long long)node, hvi_strstatus(st));
        if (next - w->base < w->pe.size_of_image) {
            *head = next;
            return HVI_OK;
        }
        if (next == start)
            break;
        node = next;
    }
    return hvi_fail(e, HVI_E_FORMAT,
                    "no node of the System process's list lies in ntoskrnl: "
                    "PsActiveProcessHead not found");
}

hvi_status win_walk_processes(hvi_engine *e, win_proc_cb cb, void *ctx)
{
    struct win_state *w = win_get(e);
    if (!w || !w->active)
        return HVI_E_STATE;
    uint64_t head = w->ps_active_head, node = head;
    for (uint32_t i = 0; i < WIN_MAX_PROCESSES; i++) {
        uint64_t next = 0;
        hvi_status st = win_list_next(e, node, &next);
        if (st != HVI_OK)
            return hvi_fail(e, st == HVI_E_FORMAT ? HVI_E_FORMAT : st,
                            "process list: bad link after 0x%llx (%s)", (unsigned long long)node,
                            hvi_strstatus(st));
        if (next == head)
            return HVI_OK;
        hvi_windows_process p;
        if ((st = win_read_process(e, next - w->off.p_list, &p)) != HVI_OK)
            return hvi_fail(e, st, "EPROCESS at 0x%llx unreadable (%s)",
                            (unsigned long long)(next - w->off.p_list), hvi_strstatus(st));
        if (!cb(&p, ctx))
            return HVI_OK;
        node = next;
    }
    return hvi_fail(e, HVI_E_LIMIT, "process list longer than %u entries (a cycle?)",
                    WIN_MAX_PROCESSES);
}

hvi_status win_read_ustr(hvi_engine *e, uint64_t va, char *out, size_t out_len, bool *truncated)
{
    uint8_t us[16];
    out[0] = 0;
    hvi_status st = hvi_gva_read(e, 0, va, us, sizeof(us));
    if (st != HVI_OK)
        return st;
    uint16_t len = (uint16_t)(us[0] | us[1] << 8);
    uint64_t buf = 0;
    memcpy(&buf, us + 8, 8);
    if (len == 0)
        return HVI_OK;
    if ((len & 1) || !win_is_kptr(buf))
        return HVI_E_FORMAT;
    size_t chars = len / 2u;
    if (chars > 255) {
        chars = 255;
        *truncated = true;
    }
    size_t got = 0;
    st = hvi_gva_read_wstr(e, 0, buf, chars, out, out_len, &got);
    if (st == HVI_E_LIMIT) /* a UNICODE_STRING needs no terminator */
        st = HVI_OK;
    if (st == HVI_OK && got + 1 >= out_len)
        *truncated = true;
    return st;
}

/* DllBase and SizeOfImage must read; names are informative: an unreadable or hostile one leaves
 * the field empty. */
static hvi_status read_module(hvi_engine *e, const struct win_offsets *o, uint64_t entry,
                              bool names, hvi_windows_module *m)
{
    memset(m, 0, sizeof(*m));
    m->entry = entry;
    uint32_t size = 0;
    hvi_status st;
    if ((st = win_read_u64(e, entry + o->m_base, &m->base)) != HVI_OK ||
        (st = win_read_u32(e, entry + o->m_size, &size)) != HVI_OK)
        return st;
    m->size = size;
    if (names &&
        win_read_ustr(e, entry + o->m_basename, m->name, sizeof(m->name), &m->truncated) != HVI_OK)
        m->name[0] = 0;
    if (names &&
        win_read_ustr(e, entry + o->m_fullname, m->path, sizeof(m->path), &m->truncated) != HVI_OK)
        m->path[0] = 0;
    return HVI_OK;
}

hvi_status win_read_module(hvi_engine *e, uint64_t entry, hvi_windows_module *out)
{
    struct win_state *w = win_get(e);
    if (!w || !w->active)
        return HVI_E_STATE;
    return read_module(e, &w->off, entry, true, out);
}

/* Walk with names (list) or without (owner lookups: only DllBase/SizeOfImage per entry). */
static hvi_status walk_modules(hvi_engine *e, bool names, win_mod_cb cb, void *ctx);

hvi_status win_walk_modules(hvi_engine *e, win_mod_cb cb, void *ctx)
{
    return walk_modules(e, true, cb, ctx);
}

struct mod_at {
    uint64_t va;
    hvi_windows_module m;
    bool hit;
};

static bool mod_at_cb(const hvi_windows_module *m, void *ctx)
{
    struct mod_at *a = ctx;
    if (a->va >= m->base && a->va - m->base < m->size) {
        a->m = *m;
        a->hit = true;
        return false;
    }
    return true;
}

hvi_status win_module_at(hvi_engine *e, uint64_t va, hvi_windows_module *out)
{
    struct mod_at a = {.va = va};
    hvi_status st = walk_modules(e, false, mod_at_cb, &a);
    if (st != HVI_OK)
        return st;
    if (!a.hit)
        return HVI_E_NOT_FOUND;
    const struct win_offsets *o = &e->win->off;
    *out = a.m;
    if (win_read_ustr(e, a.m.entry + o->m_basename, out->name, sizeof(out->name),
                      &out->truncated) != HVI_OK)
        out->name[0] = 0;
    return HVI_OK;
}

static hvi_status walk_modules(hvi_engine *e, bool names, win_mod_cb cb, void *ctx)
{
    struct win_state *w = win_get(e);
    if (!w || !w->active)
        return HVI_E_STATE;
    const struct win_offsets *o = &w->off;
    uint64_t head = w->ps_loaded_list, node = head;
    for (uint32_t i = 0; i < WIN_MAX_MODULES; i++) {
        uint64_t next = 0;
        hvi_status st = win_list_next(e, node, &next);
        if (st != HVI_OK)
            return hvi_fail(e, st, "module list: bad link after 0x%llx (%s)",
                            (unsigned long long)node, hvi_strstatus(st));
        if (next == head)
            return HVI_OK;
        hvi_windows_module m;
        if ((st = read_module(e, o, next, names, &m)) != HVI_OK)
            return hvi_fail(e, st, "KLDR_DATA_TABLE_ENTRY at 0x%llx unreadable",
                            (unsigned long long)next);
        if (!cb(&m, ctx))
            return HVI_OK;
        node = next;
    }
    return hvi_fail(e, HVI_E_LIMIT, "module list longer than %u entries (a cycle?)",
                    WIN_MAX_MODULES);
}
