/* guest/windows — kernel functions located by the CAMI code patterns of the selected entry
 * (0x100 = any byte, searched in the section the pattern hints at), and the detours placed on
 * them: PspInsertProcess (process creation) and MmCleanProcessAddressSpace (termination). The
 * detour callbacks read their arguments as the entry's argument list says (a GPR, or the Nth
 * stack slot at function entry) and raise process events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/engine.h"
#include "guest/windows/win.h"

static const char *const fn_names[WIN_FN_COUNT] = {"PspInsertProcess", "MmCleanProcessAddressSpace",
                                                   "MiProcessLoaderEntry", "MiUnloadSystemImage"};

const char *win_fn_name(enum win_fn f)
{
    return (unsigned)f < WIN_FN_COUNT ? fn_names[f] : "?";
}

/* Section bytes read once per search; absent pages read as zero. */
struct scan_cache {
    uint8_t *buf[WIN_PE_MAX_SECTIONS];
    uint32_t len[WIN_PE_MAX_SECTIONS];
    uint64_t used; /* bytes held: a hostile image with many big overlapping sections stops at
                      WIN_SCAN_BUDGET instead of taking gigabytes */
    bool over_budget;
};

static const uint8_t *section_bytes(hvi_engine *e, struct win_state *w, struct scan_cache *c,
                                    uint32_t i, uint32_t *len)
{
    if (!c->buf[i]) {
        uint32_t n = w->pe.sec[i].vsize;
        if (n > WIN_MAX_SCAN_SECTION)
            n = WIN_MAX_SCAN_SECTION;
        if (c->used + n > WIN_SCAN_BUDGET) {
            c->over_budget = true;
            return NULL;
        }
        c->used += n;
        c->buf[i] = calloc(1, n ? n : 1);
        if (!c->buf[i])
            return NULL;
        uint64_t va = w->base + w->pe.sec[i].rva;
        for (uint32_t off = 0; off < n;) {
            uint32_t chunk = HVI_PAGE_SIZE - (uint32_t)((va + off) & (HVI_PAGE_SIZE - 1));
            if (chunk > n - off)
                chunk = n - off;
            (void)hvi_gva_read(e, 0, va + off, c->buf[i] + off, chunk);
            off += chunk;
        }
        c->len[i] = n;
    }
    *len = c->len[i];
    return c->buf[i];
}

/* First offset in buf where p matches, or -1. Patterns without a literal byte never match. */
static long find_pattern(const hvi_cami_pattern *p, const uint8_t *buf, uint32_t len)
{
    uint32_t k = 0;
    while (k < p->len && p->items[k] == HVI_CAMI_WILDCARD)
        k++;
    if (k == p->len || p->len > len)
        return -1;
    uint8_t first = (uint8_t)p->items[k];
    for (uint32_t pos = 0; pos + p->len <= len;) {
        const uint8_t *hit = memchr(buf + pos + k, first, len - p->len + 1 - pos);
        if (!hit)
            return -1;
        pos = (uint32_t)(hit - buf) - k;
        if (hvi_cami_pattern_match(p, buf + pos, len - pos))
            return (long)pos;
        pos++;
    }
    return -1;
}

static hvi_status search(hvi_engine *e, struct win_state *w, struct scan_cache *c,
                         const hvi_cami_win_function *fn, uint64_t *gva, uint32_t *pattern)
{
    for (uint32_t j = 0; j < fn->pattern_count; j++) {
        const hvi_cami_pattern *p = &fn->patterns[j];
        bool hinted = p->section[0] && win_pe_section_named(&w->pe, p->section);
        for (uint32_t i = 0; i < w->pe.nsec; i++) {
            const struct win_pe_section *s = &w->pe.sec[i];
            if (hinted ? strcmp(s->name, p->section) != 0
                       : !(s->characteristics & WIN_SCN_MEM_EXECUTE))
                continue;
            uint32_t len = 0;
            const uint8_t *b = section_bytes(e, w, c, i, &len);
            if (!b && c->over_budget)
                continue; /* this section is not searched */
            if (!b)
                return HVI_E_NOMEM;
            long at = find_pattern(p, b, len);
            if (at >= 0) {
                *gva = w->base + s->rva + (uint64_t)at;
                *pattern = j;
                return HVI_OK;
            }
        }
    }
    return HVI_E_NOT_FOUND;
}

hvi_status win_pattern_search(hvi_engine *e, const hvi_cami_win_function *fn, uint64_t *gva,
                              uint32_t *pattern)
{
    struct win_state *w = win_get(e);
    if (!w || !fn || !gva || !pattern)
        return HVI_E_INVAL;
    struct scan_cache c;
    memset(&c, 0, sizeof(c));
    hvi_status st = search(e, w, &c, fn, gva, pattern);
    for (uint32_t i = 0; i < WIN_PE_MAX_SECTIONS; i++)
        free(c.buf[i]);
    return st;
}

hvi_status win_locate_functions(hvi_engine *e)
{
    struct win_state *w = win_get(e);
    if (!w || !w->cami)
        return HVI_E_STATE;
    struct scan_cache c;
    memset(&c, 0, sizeof(c));
    hvi_status worst = HVI_OK;
    for (int f = 0; f < WIN_FN_COUNT; f++) {
        struct win_located *l = &w->fn[f];
        l->fn = hvi_cami_win_function_find(w->cami, hvi_cami_name_hash(fn_names[f]));
        l->gva = 0;
        hvi_status st = l->fn ? search(e, w, &c, l->fn, &l->gva, &l->pattern) : HVI_E_NOT_FOUND;
        if (st != HVI_OK) {
            l->gva = 0;
            worst = st;
            hvi_log(e, HVI_LOG_WARN, "windows: %s not located (%s)", fn_names[f],
                    l->fn ? "no pattern matched" : "no CAMI function entry");
        }
    }
    for (uint32_t i = 0; i < WIN_PE_MAX_SECTIONS; i++)
        free(c.buf[i]);
    return worst;
}

/* Argument `i` of a detoured call: a GPR index, or (N << 16) | 0xFFFF for the Nth stack slot
 * at function entry ([RSP + 8 N]; slot 0 is the return address). */
static hvi_status detour_arg(hvi_engine *e, const struct win_located *l, const hvi_regs *r,
                             uint32_t i, uint64_t *out)
{
    const hvi_cami_pattern *p =
        l->fn && l->pattern < l->fn->pattern_count ? &l->fn->patterns[l->pattern] : NULL;
    const uint32_t *args = p && p->ext_arg_count ? p->ext_args : l->fn ? l->fn->args : NULL;
    uint32_t n = p && p->ext_arg_count ? p->ext_arg_count : l->fn ? l->fn->arg_count : 0;
    if (!args || i >= n)
        return HVI_E_NOT_FOUND;
    uint32_t a = args[i];
    if (a < HVI_GPR_COUNT) {
        *out = r->gpr[a];
        return HVI_OK;
    }
    if ((a & 0xFFFFu) != 0xFFFFu)
        return HVI_E_FORMAT;
    uint64_t slot = a >> 16, cr3 = r->cr3 & 0x000FFFFFFFFFF000ull;
    return hvi_gva_read(e, cr3, r->gpr[HVI_RSP] + 8u * slot, out, 8);
}

static void process_event(hvi_engine *e, uint32_t type, uint32_t vcpu, uint64_t rip,
                          const hvi_windows_process *p, const hvi_windows_process *parent,
                          const char *extra)
{
    hvi_alert a;
    hvi_alert_init(&a, type, vcpu);
    if (type == HVI_EVENT_EXEC_BLOCKED)
        a.action = HVI_ALERT_DENIED;
    a.rip = rip;
    a.pid = (int32_t)p->pid;
    hvi_strlcpy(a.comm, p->name, sizeof(a.comm));
    hvi_strlcpy(a.object, "process", sizeof(a.object));
    hvi_strlcpy(a.module, "ntoskrnl.exe", sizeof(a.module));
    snprintf(a.detail, sizeof(a.detail), "eprocess=0x%llx ppid=%u parent=%s cr3=0x%llx%s",
             (unsigned long long)p->eprocess, parent ? parent->pid : p->ppid,
             parent ? parent->name : "?", (unsigned long long)p->cr3, extra ? extra : "");
    hvi_alert_emit(e, &a);
}

static bool on_insert_process(hvi_engine *e, hvi_hook *hook, uint32_t vcpu, hvi_regs *regs,
                              void *ctx)
{
    (void)hook, (void)ctx;
    struct win_state *w = win_get(e);
    if (!w)
        return false;
    const struct win_located *l = &w->fn[WIN_FN_PSP_INSERT_PROCESS];
    uint64_t ep = 0, parent_ep = 0;
    hvi_windows_process p, parent;
    if (detour_arg(e, l, regs, 0, &ep) != HVI_OK || !win_is_kptr(ep) ||
        win_read_process(e, ep, &p) != HVI_OK) {
        hvi_log(e, HVI_LOG_WARN, "windows: PspInsertProcess with an unreadable EPROCESS 0x%llx",
                (unsigned long long)ep);
        return false;
    }
    /* a new process may reuse a freed EPROCESS: forget it among the exited ones */
    for (uint32_t i = 0; i < WIN_EXITED_RING; i++)
        if (w->exited[i] == ep)
            w->exited[i] = 0;
    bool have_parent = detour_arg(e, l, regs, 1, &parent_ep) == HVI_OK && win_is_kptr(parent_ep) &&
                       win_read_process(e, parent_ep, &parent) == HVI_OK;
    /* the third CAMI argument (a stack slot whose number differs between builds) */
    char extra[48] = "";
    uint64_t debug = 0;
    if (detour_arg(e, l, regs, 2, &debug) == HVI_OK)
        snprintf(extra, sizeof(extra), " debug_handle=0x%llx", (unsigned long long)debug);
    const char *rule = (e->options & HVI_OPT_BLOCK_EXEC) ? win_block_rule(w, p.name) : NULL;
    if (rule) {
        /* PspInsertProcess fails: the caller (NtCreateUserProcess...) tears the process down */
        hvi_status st = hvi_detour_return(e, regs, WIN_STATUS_ACCESS_DENIED);
        if (st == HVI_OK) {
            char why[96];
            snprintf(why, sizeof(why), " rule=%.15s status=0x%x", rule, WIN_STATUS_ACCESS_DENIED);
            w->blocked++;
            process_event(e, HVI_EVENT_EXEC_BLOCKED, vcpu, l->gva, &p, have_parent ? &parent : NULL,
                          why);
            return true;
        }
        hvi_log(e, HVI_LOG_ERROR, "windows: creation of %s not blocked: %s", p.name,
                hvi_strstatus(st));
    }
    if (e->options & HVI_OPT_EVENT_PROCESS)
        process_event(e, HVI_EVENT_PROCESS_CREATE, vcpu, regs->rip, &p,
                      have_parent ? &parent : NULL, extra);
    return false;
}

static bool on_clean_process(hvi_engine *e, hvi_hook *hook, uint32_t vcpu, hvi_regs *regs,
                             void *ctx)
{
    (void)hook, (void)ctx;
    struct win_state *w = win_get(e);
    if (!w)
        return false;
    uint64_t ep = 0;
    hvi_windows_process p;
    if (!(e->options & HVI_OPT_EVENT_PROCESS))
        return false;
    if (detour_arg(e, &w->fn[WIN_FN_MM_CLEAN_PROCESS_ADDRESS_SPACE], regs, 0, &ep) != HVI_OK ||
        !win_is_kptr(ep) || win_read_process(e, ep, &p) != HVI_OK)
        return false;
    /* some builds call it twice for one process: report the first call only */
    for (uint32_t i = 0; i < WIN_EXITED_RING; i++)
        if (w->exited[i] == ep)
            return false;
    w->exited[w->exited_next++ % WIN_EXITED_RING] = ep;
    process_event(e, HVI_EVENT_PROCESS_EXIT, vcpu, regs->rip, &p, NULL, NULL);
    return false;
}

static void module_event(hvi_engine *e, uint32_t type, uint32_t vcpu, uint64_t rip,
                         const hvi_windows_module *m)
{
    hvi_alert a;
    hvi_alert_init(&a, type, vcpu);
    a.rip = rip;
    a.pid = -1;
    hvi_strlcpy(a.object, "module", sizeof(a.object));
    hvi_strlcpy(a.module, m->name, sizeof(a.module));
    snprintf(a.detail, sizeof(a.detail), "entry=0x%llx base=0x%llx size=0x%x path=%.180s",
             (unsigned long long)m->entry, (unsigned long long)m->base, m->size, m->path);
    hvi_alert_emit(e, &a);
}

/* The KLDR_DATA_TABLE_ENTRY argument of a loader detour, read and checked. */
static bool ldr_arg(hvi_engine *e, const struct win_located *l, const hvi_regs *regs,
                    hvi_windows_module *m)
{
    uint64_t entry = 0;
    if (detour_arg(e, l, regs, 0, &entry) != HVI_OK || !win_is_kptr(entry) ||
        win_read_module(e, entry, m) != HVI_OK) {
        hvi_log(e, HVI_LOG_WARN, "windows: %s with an unreadable loader entry 0x%llx",
                fn_names[l - e->win->fn], (unsigned long long)entry);
        return false;
    }
    return true;
}

/* MiProcessLoaderEntry(Entry, Insert): a driver goes on (Insert != 0) PsLoadedModuleList. */
static bool on_loader_entry(hvi_engine *e, hvi_hook *hook, uint32_t vcpu, hvi_regs *regs, void *ctx)
{
    (void)hook, (void)ctx;
    struct win_state *w = win_get(e);
    const struct win_located *l = w ? &w->fn[WIN_FN_MI_PROCESS_LOADER_ENTRY] : NULL;
    uint64_t insert = 0;
    hvi_windows_module m;
    if (!l || detour_arg(e, l, regs, 1, &insert) != HVI_OK || !(insert & 0xff) ||
        !ldr_arg(e, l, regs, &m))
        return false; /* removals are reported by MiUnloadSystemImage */
    module_event(e, HVI_EVENT_MODULE_LOAD, vcpu, regs->rip, &m);
    return false;
}

static bool on_unload_image(hvi_engine *e, hvi_hook *hook, uint32_t vcpu, hvi_regs *regs, void *ctx)
{
    (void)hook, (void)ctx;
    struct win_state *w = win_get(e);
    hvi_windows_module m;
    if (!w || !ldr_arg(e, &w->fn[WIN_FN_MI_UNLOAD_SYSTEM_IMAGE], regs, &m))
        return false;
    module_event(e, HVI_EVENT_MODULE_UNLOAD, vcpu, regs->rip, &m);
    return false;
}

/* Which options need each function's detour. */
static const uint64_t fn_opts[WIN_FN_COUNT] = {
    HVI_OPT_EVENT_PROCESS | HVI_OPT_BLOCK_EXEC, /* PspInsertProcess: events and the block list */
    HVI_OPT_EVENT_PROCESS,
    HVI_OPT_EVENT_MODULE,
    HVI_OPT_EVENT_MODULE,
};

hvi_status win_detours_apply(hvi_engine *e, uint64_t opts)
{
    struct win_state *w = win_get(e);
    if (!w || !w->active)
        return HVI_E_STATE;
    static const hvi_detour_cb cbs[WIN_FN_COUNT] = {on_insert_process, on_clean_process,
                                                    on_loader_entry, on_unload_image};
    hvi_status worst = HVI_OK;
    for (int f = 0; f < WIN_FN_COUNT; f++) {
        struct win_located *l = &w->fn[f];
        if (!(opts & fn_opts[f])) {
            if (l->detour && hvi_hook_remove(e, l->detour) == HVI_OK)
                l->detour = NULL;
            l->failed = false;
            continue;
        }
        if (l->detour || l->failed) /* placed, or already reported since the option came on */
            continue;
        hvi_status st = HVI_E_NOT_FOUND;
        if (l->gva)
            st = hvi_detour_add(e, l->gva, cbs[f], NULL, &l->detour);
        if (st == HVI_OK) {
            hvi_hook_set_owned(l->detour, true);
            continue;
        }
        l->detour = NULL;
        l->failed = true;
        worst = l->gva ? hvi_fail(e, st, "detour on %s at 0x%llx: %s", fn_names[f],
                                  (unsigned long long)l->gva, hvi_strstatus(st))
                       : hvi_fail(e, st, "%s was not located: no detour", fn_names[f]);
    }
    return worst;
}

/* Windows names are case-insensitive and ImageFileName keeps the first 15 characters. */
const char *win_block_rule(const struct win_state *w, const char *image_name)
{
    for (uint32_t i = 0; i < w->nblocks; i++)
        if (!strncasecmp(w->blocks[i], image_name, 15))
            return w->blocks[i];
    return NULL;
}

hvi_status hvi_windows_block_process_add(hvi_engine *e, const char *name)
{
    struct win_state *w = win_get(e);
    if (!e || !name || !name[0] || strlen(name) >= 64)
        return HVI_E_INVAL;
    if (!w)
        return hvi_fail(e, HVI_E_STATE, "no Windows kernel was found");
    if (w->nblocks == WIN_MAX_BLOCKS)
        return hvi_fail(e, HVI_E_LIMIT, "block list full (%u names)", WIN_MAX_BLOCKS);
    hvi_strlcpy(w->blocks[w->nblocks++], name, sizeof(w->blocks[0])); /* first 15 characters */
    return HVI_OK;
}

void hvi_windows_block_process_clear(hvi_engine *e)
{
    struct win_state *w = win_get(e);
    if (w)
        w->nblocks = 0;
}
