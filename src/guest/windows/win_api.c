/* guest/windows — the public queries of include/hvi/windows.h. */
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/windows/win.h"

hvi_status hvi_windows_get_info(hvi_engine *e, hvi_windows_info *out)
{
    struct win_state *w = win_get(e);
    if (!out)
        return HVI_E_INVAL;
    if (!w)
        return e ? hvi_fail(e, HVI_E_STATE, "no Windows kernel was found") : HVI_E_INVAL;
    memset(out, 0, sizeof(*out));
    out->build = w->build;
    out->kpti = w->kpti;
    out->is64 = w->is64;
    out->have_offsets = w->active;
    if (w->cami)
        hvi_strlcpy(out->version, w->cami->version_string, sizeof(out->version));
    out->kernel_base = w->base;
    out->kernel_size = w->pe.size_of_image;
    out->sections = w->pe.nsec;
    out->system_process = w->system_process;
    out->ps_active_process_head = w->ps_active_head;
    out->ps_loaded_module_list = w->ps_loaded_list;
    out->service_table = w->ssdt;
    out->service_count = w->ssdt_count;
    out->hal_dispatch_table = w->hal_dispatch;
    return HVI_OK;
}

struct grow {
    void *items;
    size_t count, cap, size;
    bool oom;
};

static bool grow_push(struct grow *g, const void *item)
{
    if (g->count == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        void *n = realloc(g->items, cap * g->size);
        if (!n) {
            g->oom = true;
            return false;
        }
        g->items = n;
        g->cap = cap;
    }
    memcpy((char *)g->items + g->count * g->size, item, g->size);
    g->count++;
    return true;
}

static bool push_proc(const hvi_windows_process *p, void *ctx)
{
    return grow_push(ctx, p);
}
static bool push_mod(const hvi_windows_module *m, void *ctx)
{
    return grow_push(ctx, m);
}

static hvi_status finish(hvi_status st, struct grow *g, void **out, size_t *count)
{
    if (st == HVI_OK && g->oom)
        st = HVI_E_NOMEM;
    if (st != HVI_OK) {
        free(g->items);
        return st;
    }
    *out = g->items;
    *count = g->count;
    return HVI_OK;
}

static hvi_status need_offsets(hvi_engine *e)
{
    struct win_state *w = win_get(e);
    if (!w)
        return hvi_fail(e, HVI_E_STATE, "no Windows kernel was found");
    if (!w->active)
        return hvi_fail(e, HVI_E_UNSUPPORTED, "Windows build %u has no CAMI entry: no offsets",
                        w->build);
    return HVI_OK;
}

hvi_status hvi_windows_list_processes(hvi_engine *e, hvi_windows_process **out, size_t *count)
{
    if (!e || !out || !count)
        return HVI_E_INVAL;
    hvi_status st = need_offsets(e);
    if (st != HVI_OK)
        return st;
    struct grow g = {.size = sizeof(hvi_windows_process)};
    st = win_walk_processes(e, push_proc, &g);
    return finish(st, &g, (void **)out, count);
}

hvi_status hvi_windows_list_modules(hvi_engine *e, hvi_windows_module **out, size_t *count)
{
    if (!e || !out || !count)
        return HVI_E_INVAL;
    hvi_status st = need_offsets(e);
    if (st != HVI_OK)
        return st;
    struct grow g = {.size = sizeof(hvi_windows_module)};
    st = win_walk_modules(e, push_mod, &g);
    return finish(st, &g, (void **)out, count);
}

hvi_status hvi_windows_list_functions(hvi_engine *e, hvi_windows_function **out, size_t *count)
{
    if (!e || !out || !count)
        return HVI_E_INVAL;
    hvi_status st = need_offsets(e);
    if (st != HVI_OK)
        return st;
    struct win_state *w = e->win;
    hvi_windows_function *f = calloc(WIN_FN_COUNT, sizeof(*f));
    if (!f)
        return HVI_E_NOMEM;
    for (int i = 0; i < WIN_FN_COUNT; i++) {
        hvi_strlcpy(f[i].name, win_fn_name((enum win_fn)i), sizeof(f[i].name));
        f[i].address = w->fn[i].gva;
        f[i].pattern = w->fn[i].pattern;
        f[i].detoured = w->fn[i].detour != NULL;
    }
    *out = f;
    *count = WIN_FN_COUNT;
    return HVI_OK;
}

hvi_status hvi_windows_find_export(hvi_engine *e, const char *name, uint64_t *addr)
{
    if (!e || !name || !addr)
        return HVI_E_INVAL;
    return win_export(e, name, addr);
}

static bool push_vad(const hvi_windows_vad *v, void *ctx)
{
    return grow_push(ctx, v);
}
static bool push_thread(const hvi_windows_thread *t, void *ctx)
{
    return grow_push(ctx, t);
}

hvi_status hvi_windows_vads(hvi_engine *e, uint32_t pid, hvi_windows_vad **out, size_t *count)
{
    if (!e || !out || !count)
        return HVI_E_INVAL;
    hvi_windows_process p;
    hvi_status st = need_offsets(e);
    if (st == HVI_OK)
        st = win_find_pid(e, pid, &p);
    if (st != HVI_OK)
        return st;
    struct grow g = {.size = sizeof(hvi_windows_vad)};
    st = win_walk_vads(e, &p, push_vad, &g);
    return finish(st, &g, (void **)out, count);
}

hvi_status hvi_windows_threads(hvi_engine *e, uint32_t pid, hvi_windows_thread **out,
                               size_t *count)
{
    if (!e || !out || !count)
        return HVI_E_INVAL;
    hvi_windows_process p;
    hvi_status st = need_offsets(e);
    if (st == HVI_OK)
        st = win_find_pid(e, pid, &p);
    if (st != HVI_OK)
        return st;
    struct grow g = {.size = sizeof(hvi_windows_thread)};
    st = win_walk_threads(e, &p, push_thread, &g);
    return finish(st, &g, (void **)out, count);
}

hvi_status hvi_windows_process_params_get(hvi_engine *e, uint32_t pid,
                                          hvi_windows_process_params *out)
{
    if (!e || !out)
        return HVI_E_INVAL;
    hvi_windows_process p;
    hvi_status st = need_offsets(e);
    if (st == HVI_OK)
        st = win_find_pid(e, pid, &p);
    if (st != HVI_OK)
        return st;
    return win_read_params(e, &p, out);
}

hvi_status hvi_windows_user_modules(hvi_engine *e, uint32_t pid, hvi_windows_module **out,
                                    size_t *count)
{
    if (!e || !out || !count)
        return HVI_E_INVAL;
    hvi_windows_process p;
    hvi_status st = need_offsets(e);
    if (st == HVI_OK)
        st = win_find_pid(e, pid, &p);
    if (st != HVI_OK)
        return st;
    struct grow g = {.size = sizeof(hvi_windows_module)};
    st = win_walk_user_modules(e, &p, push_mod, &g);
    return finish(st, &g, (void **)out, count);
}

hvi_status hvi_windows_current_process(hvi_engine *e, uint32_t vcpu, hvi_windows_process *out,
                                       uint64_t *thread)
{
    if (!e || !out)
        return HVI_E_INVAL;
    hvi_status st = need_offsets(e);
    if (st != HVI_OK)
        return st;
    return win_current_process(e, vcpu, out, thread);
}

void hvi_windows_free(void *array)
{
    free(array);
}
