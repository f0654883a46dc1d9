/* guest/windows — activation inside the engine: the entry from LSTAR (backends that read MSRs)
 * or the IDT, ntoskrnl discovery, CAMI selection by (build, kpti, is64), offsets, and the option
 * watcher that places and removes detours and protections. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/windows/win.h"

static void win_cleanup(hvi_engine *e, void *ctx)
{
    (void)ctx;
    if (!e->win)
        return;
    free(e->win->prot);
    free(e->win);
    e->win = NULL;
}

static hvi_status win_detach(hvi_engine *e, void *ctx)
{
    (void)ctx;
    struct win_state *w = e->win;
    if (!w)
        return HVI_OK;
    (void)win_detours_apply(e, 0);
    win_protect_remove_all(e);
    w->applied = 0;
    return HVI_OK;
}

static void win_options(hvi_engine *e, uint64_t old_opts, uint64_t new_opts, void *ctx)
{
    (void)ctx, (void)old_opts;
    struct win_state *w = e->win;
    if (!w || !w->active || e->detaching)
        return;
    hvi_status st = win_detours_apply(e, new_opts);
    if (st != HVI_OK)
        hvi_log(e, HVI_LOG_WARN, "windows: detours: %s", hvi_last_error(e));
    st = win_protect_apply(e, new_opts);
    if (st != HVI_OK)
        hvi_log(e, HVI_LOG_WARN, "windows: protections: %s", hvi_last_error(e));
}

static hvi_status win_state_new(hvi_engine *e)
{
    if (e->win)
        return HVI_OK;
    e->win = calloc(1, sizeof(*e->win));
    if (!e->win)
        return HVI_E_NOMEM;
    hvi_status st = hvi_engine_on_free(e, win_cleanup, NULL);
    if (st != HVI_OK) {
        free(e->win);
        e->win = NULL;
        return st;
    }
    if ((st = hvi_engine_on_detach(e, win_detach, NULL)) != HVI_OK ||
        (st = hvi_engine_on_options(e, win_options, NULL)) != HVI_OK)
        return st;
    return HVI_OK;
}

struct win_state *win_get(hvi_engine *e)
{
    return e && e->win && e->win->found ? e->win : NULL;
}

/* A kernel code address: LSTAR when readable, else the first present IDT gate. */
static hvi_status kernel_entry(hvi_engine *e, uint64_t *entry)
{
    if ((e->glue.caps & HVI_CAP_MSR_READ) && e->glue.get_msr &&
        e->glue.get_msr(e->glue.ctx, 0, HVI_MSR_LSTAR, entry) == HVI_OK && win_is_kptr(*entry))
        return HVI_OK;
    if (!(e->glue.caps & HVI_CAP_DTR))
        return hvi_fail(e, HVI_E_UNSUPPORTED,
                        "Windows discovery needs LSTAR or the IDTR; backend %s gives neither",
                        e->glue.name ? e->glue.name : "?");
    hvi_regs r;
    memset(&r, 0, sizeof(r));
    if (e->glue.get_regs(e->glue.ctx, 0, HVI_REGS_DTR, &r) != HVI_OK || !(r.valid & HVI_REGS_DTR))
        return hvi_fail(e, HVI_E_BACKEND, "reading the IDTR of vCPU 0 failed");
    for (uint32_t v = 0; v < 32 && 16u * v + 15 <= r.idtr_limit; v++) {
        uint8_t g[16];
        if (hvi_gva_read(e, 0, r.idtr_base + 16u * v, g, sizeof(g)) != HVI_OK || !(g[5] & 0x80))
            continue;
        uint64_t h = (uint64_t)g[0] | (uint64_t)g[1] << 8 | (uint64_t)g[6] << 16 |
                     (uint64_t)g[7] << 24 | (uint64_t)g[8] << 32 | (uint64_t)g[9] << 40 |
                     (uint64_t)g[10] << 48 | (uint64_t)g[11] << 56;
        if (win_is_kptr(h)) {
            *entry = h;
            return HVI_OK;
        }
    }
    return hvi_fail(e, HVI_E_NOT_FOUND, "no usable gate in the IDT at 0x%llx",
                    (unsigned long long)r.idtr_base);
}

static uint32_t field(const hvi_cami_win_entry *c, unsigned g, unsigned f)
{
    uint32_t v = 0;
    (void)hvi_cami_win_km_field(c, g, f, &v);
    return v;
}

/* Offsets from the CAMI entry. KLDR_DATA_TABLE_ENTRY shares DllBase/SizeOfImage/FullDllName with
 * the user-mode LDR_DATA_TABLE_ENTRY the um Dll group describes; BaseDllName is the
 * UNICODE_STRING after FullDllName. Without um fields the x64 layout is used (0x30/0x40/0x48). */
static hvi_status load_offsets(hvi_engine *e, struct win_state *w)
{
    const hvi_cami_win_entry *c = w->cami;
    struct win_offsets *o = &w->off;
    o->p_cr3 = field(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_CR3);
    o->p_list = field(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_LISTENTRY);
    o->p_name = field(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_NAME);
    o->p_id = field(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_ID);
    o->p_ppid = field(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_PARENTPID);
    o->p_peb = field(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_PEB);
    o->p_flags = field(c, HVI_WIN_KM_PROCESS, HVI_WIN_KM_PROCESS_FLAGS);
    o->f_exiting = field(c, HVI_WIN_KM_EPROCESSFLAGS, HVI_WIN_KM_EPROCESSFLAGS_EXITING);
    o->f_delete = field(c, HVI_WIN_KM_EPROCESSFLAGS, HVI_WIN_KM_EPROCESSFLAGS_DELETE);
    o->f_vmdeleted = field(c, HVI_WIN_KM_EPROCESSFLAGS, HVI_WIN_KM_EPROCESSFLAGS_VMDELETED);
    uint32_t b = 0, s = 0, n = 0;
    (void)hvi_cami_win_um_field(c, HVI_WIN_UM_DLL, HVI_WIN_UM_DLL_BASEOFFSETINMODULE64, &b);
    (void)hvi_cami_win_um_field(c, HVI_WIN_UM_DLL, HVI_WIN_UM_DLL_SIZEOFFSETINMODULE64, &s);
    (void)hvi_cami_win_um_field(c, HVI_WIN_UM_DLL, HVI_WIN_UM_DLL_NAMEOFFSETINMODULE64, &n);
    o->m_base = b ? b : 0x30;
    o->m_size = s ? s : 0x40;
    o->m_fullname = n ? n : 0x48;
    o->m_basename = o->m_fullname + 0x10;
    win_load_va_offsets(w);
    if (!o->p_list || !o->p_id || !o->p_name)
        return hvi_fail(e, HVI_E_FORMAT,
                        "CAMI entry for Windows build %u lacks Process.ListEntry/Id/Name",
                        w->build);
    return HVI_OK;
}

/* Globals every later step needs: the System process, the two list heads, the HAL table. */
static hvi_status find_globals(hvi_engine *e, struct win_state *w)
{
    uint64_t var = 0;
    hvi_status st = win_export(e, "PsInitialSystemProcess", &var);
    if (st == HVI_OK)
        st = win_read_u64(e, var, &w->system_process);
    if (st != HVI_OK || !win_is_kptr(w->system_process))
        return hvi_fail(e, HVI_E_FORMAT, "PsInitialSystemProcess unusable (%s, value 0x%llx)",
                        hvi_strstatus(st), (unsigned long long)w->system_process);
    if ((st = win_export(e, "PsLoadedModuleList", &w->ps_loaded_list)) != HVI_OK)
        return hvi_fail(e, st, "ntoskrnl exports no PsLoadedModuleList");
    if (win_export(e, "HalDispatchTable", &w->hal_dispatch) != HVI_OK)
        w->hal_dispatch = 0;
    if ((st = win_find_process_head(e, &w->ps_active_head)) != HVI_OK)
        return st;
    return HVI_OK;
}

hvi_status win_activate(hvi_engine *e)
{
    if (!e)
        return HVI_E_INVAL;
    if (e->win && e->win->found)
        return HVI_E_STATE;
    hvi_status st = win_state_new(e);
    if (st != HVI_OK)
        return st;
    struct win_state *w = e->win;
    if ((st = kernel_entry(e, &w->entry)) != HVI_OK)
        return st;
    char why[320] = "";
    st = win_find_ntoskrnl(e, w->entry, &w->base, &w->pe, why, sizeof(why));
    if (st != HVI_OK)
        return hvi_fail(e, st, "no Windows kernel found: %s", why);
    if ((st = win_read_build(e, w->base, &w->pe, &w->build)) != HVI_OK)
        return hvi_fail(e, st, "ntoskrnl at 0x%llx: NtBuildNumber unreadable or implausible",
                        (unsigned long long)w->base);
    const struct win_pe_section *s = win_pe_section_at(&w->pe, (uint32_t)(w->entry - w->base));
    w->kpti = s && !strcmp(s->name, "KVASCODE");
    w->is64 = w->pe.is64;
    w->found = true;
    e->guest.os = HVI_OS_WINDOWS;
    snprintf(e->guest.os_version, sizeof(e->guest.os_version), "Windows build %u x64 kpti %s",
             w->build, w->kpti ? "on" : "off");
    hvi_log(e, HVI_LOG_INFO, "ntoskrnl at 0x%llx, build %u, kpti %s", (unsigned long long)w->base,
            w->build, w->kpti ? "on" : "off");
    const hvi_cami_win_entry *c = NULL;
    if (!hvi_cami_engine_support(e))
        return hvi_fail(e, HVI_E_UNSUPPORTED,
                        "Windows build %u (x64, kpti %s) found but no support data was given",
                        w->build, w->kpti ? "on" : "off");
    st = hvi_cami_engine_select_win(e, w->build, w->kpti, w->is64, &c);
    if (st != HVI_OK)
        return hvi_fail(e, HVI_E_UNSUPPORTED,
                        "Windows build %u (x64, kpti %s) has no entry in the support data",
                        w->build, w->kpti ? "on" : "off");
    w->cami = c;
    if ((st = load_offsets(e, w)) != HVI_OK || (st = find_globals(e, w)) != HVI_OK)
        return st;
    if (win_find_ssdt(e) != HVI_OK)
        hvi_log(e, HVI_LOG_WARN, "windows: KiServiceTable not found: %s", hvi_last_error(e));
    (void)win_locate_functions(e);
    w->active = true;
    return HVI_OK;
}
