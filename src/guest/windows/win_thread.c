/* guest/windows — threads of a process (KPROCESS.ThreadListHead -> KTHREAD.ThreadListEntry, CAMI
 * Process/Thread groups), its user-mode parameters (PEB -> RTL_USER_PROCESS_PARAMETERS, read
 * through the process's own page tables) and the process running on a vCPU (KPCR at GS base ->
 * CurrentThread -> Process, CAMI Pcr group).
 *
 * Layout facts the CAMI corpus does not carry (its um Peb/Teb groups describe other fields) and
 * that are the same on every x64 build from Windows XP x64 to 10: PEB.ProcessParameters at 0x20,
 * RTL_USER_PROCESS_PARAMETERS.ImagePathName at 0x60 and CommandLine at 0x70 (UNICODE_STRINGs),
 * PEB.Ldr at 0x18, PEB_LDR_DATA.InLoadOrderModuleList at 0x10 (LDR_DATA_TABLE_ENTRY fields come
 * from the CAMI um Dll group, as for drivers), RTL_USER_PROCESS_PARAMETERS.Flags at 0x08 (bit 0:
 * normalized; until the process's first thread normalizes them, string buffers are offsets from the
 * structure), KPCR.Self at 0x18. */
#include <string.h>

#include "core/engine.h"
#include "guest/windows/win.h"

#define PEB64_LDR 0x18u
#define LDR64_IN_LOAD_ORDER 0x10u /* PEB_LDR_DATA.InLoadOrderModuleList */
#define PEB64_PROCESS_PARAMETERS 0x20u
#define PARAMS64_FLAGS 0x08u
#define PARAMS_NORMALIZED 0x1u /* RTL_USER_PROC_PARAMS_NORMALIZED */
#define PARAMS64_IMAGE_PATH 0x60u
#define PARAMS64_COMMAND_LINE 0x70u
#define KPCR64_SELF 0x18u
#define PARAMS_MAX_CHARS 1023u

static hvi_status read_thread(hvi_engine *e, const struct win_offsets *o, uint64_t th,
                              hvi_windows_thread *t)
{
    memset(t, 0, sizeof(*t));
    t->ethread = th;
    uint64_t id = 0;
    hvi_status st;
    if ((st = win_read_u64(e, th + o->t_id, &id)) != HVI_OK ||
        (st = win_read_u64(e, th + o->t_process, &t->process)) != HVI_OK)
        return st;
    t->tid = (uint32_t)id;
    if (o->t_teb)
        (void)win_read_u64(e, th + o->t_teb, &t->teb);
    if (o->t_start)
        (void)win_read_u64(e, th + o->t_start, &t->start_address);
    if (o->t_state)
        (void)hvi_gva_read(e, 0, th + o->t_state, &t->state, 1);
    return HVI_OK;
}

hvi_status win_walk_threads(hvi_engine *e, const hvi_windows_process *p, win_thread_cb cb,
                            void *ctx)
{
    struct win_state *w = win_get(e);
    if (!w || !w->active)
        return HVI_E_STATE;
    const struct win_offsets *o = &w->off;
    if (!o->p_threads || !o->t_list || !o->t_id || !o->t_process)
        return hvi_fail(e, HVI_E_UNSUPPORTED, "the CAMI entry of build %u has no thread layout",
                        w->build);
    uint64_t head = p->eprocess + o->p_threads, node = head;
    for (uint32_t i = 0; i < WIN_MAX_THREADS; i++) {
        uint64_t next = 0;
        hvi_status st = win_list_next(e, node, &next);
        if (st != HVI_OK)
            return hvi_fail(e, st, "thread list of pid %u: bad link after 0x%llx (%s)", p->pid,
                            (unsigned long long)node, hvi_strstatus(st));
        if (next == head)
            return HVI_OK;
        hvi_windows_thread t;
        if ((st = read_thread(e, o, next - o->t_list, &t)) != HVI_OK)
            return hvi_fail(e, st, "KTHREAD at 0x%llx unreadable (%s)",
                            (unsigned long long)(next - o->t_list), hvi_strstatus(st));
        t.foreign = t.process != p->eprocess;
        if (!cb(&t, ctx))
            return HVI_OK;
        node = next;
    }
    return hvi_fail(e, HVI_E_LIMIT, "thread list of pid %u longer than %u entries", p->pid,
                    WIN_MAX_THREADS);
}

static bool is_uptr(uint64_t va)
{
    return va && va < 0x0000800000000000ull;
}

/* A UNICODE_STRING in user memory at va (through cr3) -> UTF-8; `rebase` is added to its buffer
 * (the parameters' address while they are not normalized, else 0). */
static hvi_status read_user_ustr(hvi_engine *e, uint64_t cr3, uint64_t va, uint64_t rebase,
                                 char *out, size_t out_len, bool *truncated)
{
    uint8_t us[16];
    out[0] = 0;
    hvi_status st = hvi_gva_read(e, cr3, va, us, sizeof(us));
    if (st != HVI_OK)
        return st;
    uint16_t len = (uint16_t)(us[0] | us[1] << 8);
    uint64_t buf = 0;
    memcpy(&buf, us + 8, 8);
    if (len == 0)
        return HVI_OK;
    if (rebase && buf >= 0x100000000ull) /* an offset, not an address */
        return HVI_E_FORMAT;
    buf += rebase;
    if ((len & 1) || !is_uptr(buf))
        return HVI_E_FORMAT;
    size_t chars = len / 2u, got = 0;
    if (chars > PARAMS_MAX_CHARS) {
        chars = PARAMS_MAX_CHARS;
        *truncated = true;
    }
    st = hvi_gva_read_wstr(e, cr3, buf, chars, out, out_len, &got);
    if (st == HVI_E_LIMIT) /* no terminator needed */
        st = HVI_OK;
    if (st == HVI_OK && got + 1 >= out_len)
        *truncated = true;
    if (st != HVI_OK)
        out[0] = 0;
    return st;
}

hvi_status win_read_params(hvi_engine *e, const hvi_windows_process *p,
                           hvi_windows_process_params *out)
{
    memset(out, 0, sizeof(*out));
    out->pid = p->pid;
    out->peb = p->peb;
    if (!p->peb)
        return hvi_fail(e, HVI_E_NOT_FOUND, "pid %u has no PEB", p->pid);
    uint64_t cr3 = p->cr3 & 0x000ffffffffff000ull; /* PCID bits off */
    if (!is_uptr(p->peb) || !cr3)
        return hvi_fail(e, HVI_E_FORMAT, "pid %u: PEB 0x%llx / CR3 0x%llx unusable", p->pid,
                        (unsigned long long)p->peb, (unsigned long long)p->cr3);
    hvi_status st = hvi_gva_read(e, cr3, p->peb + PEB64_PROCESS_PARAMETERS, &out->params, 8);
    if (st != HVI_OK)
        return hvi_fail(e, st, "pid %u: PEB at 0x%llx unreadable (%s)", p->pid,
                        (unsigned long long)p->peb, hvi_strstatus(st));
    if (!is_uptr(out->params) || out->params > 0x00007fffffffff00ull)
        return hvi_fail(e, HVI_E_FORMAT, "pid %u: ProcessParameters 0x%llx is not a user address",
                        p->pid, (unsigned long long)out->params);
    uint8_t probe;
    uint32_t flags = 0;
    if ((st = hvi_gva_read(e, cr3, out->params + PARAMS64_COMMAND_LINE + 15, &probe, 1)) !=
            HVI_OK ||
        (st = hvi_gva_read(e, cr3, out->params + PARAMS64_FLAGS, &flags, 4)) != HVI_OK)
        return hvi_fail(e, st, "pid %u: ProcessParameters at 0x%llx unreadable (%s)", p->pid,
                        (unsigned long long)out->params, hvi_strstatus(st));
    uint64_t rebase = (flags & PARAMS_NORMALIZED) ? 0 : out->params;
    (void)read_user_ustr(e, cr3, out->params + PARAMS64_IMAGE_PATH, rebase, out->image_path,
                         sizeof(out->image_path), &out->truncated);
    (void)read_user_ustr(e, cr3, out->params + PARAMS64_COMMAND_LINE, rebase, out->command_line,
                         sizeof(out->command_line), &out->truncated);
    return HVI_OK;
}

/* Next node of a user-mode LIST_ENTRY: a canonical user pointer, 8-byte aligned, whose Blink is
 * node. */
static hvi_status user_list_next(hvi_engine *e, uint64_t cr3, uint64_t node, uint64_t *next)
{
    uint64_t f = 0, b = 0;
    hvi_status st = hvi_gva_read(e, cr3, node, &f, 8);
    if (st != HVI_OK)
        return st;
    if (!is_uptr(f) || (f & 7) || f > 0x00007fffffffff00ull)
        return HVI_E_FORMAT;
    if ((st = hvi_gva_read(e, cr3, f + 8, &b, 8)) != HVI_OK)
        return st;
    if (b != node)
        return HVI_E_FORMAT;
    *next = f;
    return HVI_OK;
}

hvi_status win_walk_user_modules(hvi_engine *e, const hvi_windows_process *p, win_mod_cb cb,
                                 void *ctx)
{
    struct win_state *w = win_get(e);
    if (!w || !w->active)
        return HVI_E_STATE;
    const struct win_offsets *o = &w->off;
    uint64_t cr3 = p->cr3 & 0x000ffffffffff000ull, ldr = 0;
    if (!p->peb)
        return hvi_fail(e, HVI_E_NOT_FOUND, "pid %u has no PEB", p->pid);
    if (!is_uptr(p->peb) || !cr3)
        return hvi_fail(e, HVI_E_FORMAT, "pid %u: PEB 0x%llx / CR3 0x%llx unusable", p->pid,
                        (unsigned long long)p->peb, (unsigned long long)p->cr3);
    hvi_status st = hvi_gva_read(e, cr3, p->peb + PEB64_LDR, &ldr, 8);
    if (st != HVI_OK)
        return hvi_fail(e, st, "pid %u: PEB at 0x%llx unreadable (%s)", p->pid,
                        (unsigned long long)p->peb, hvi_strstatus(st));
    if (!ldr) /* the loader has not run yet */
        return HVI_OK;
    if (!is_uptr(ldr) || ldr > 0x00007fffffffff00ull)
        return hvi_fail(e, HVI_E_FORMAT, "pid %u: PEB.Ldr 0x%llx is not a user address", p->pid,
                        (unsigned long long)ldr);
    uint64_t head = ldr + LDR64_IN_LOAD_ORDER, node = head;
    for (uint32_t i = 0; i < WIN_MAX_MODULES; i++) {
        uint64_t next = 0;
        if ((st = user_list_next(e, cr3, node, &next)) != HVI_OK)
            return hvi_fail(e, st, "module list of pid %u: bad link after 0x%llx (%s)", p->pid,
                            (unsigned long long)node, hvi_strstatus(st));
        if (next == head)
            return HVI_OK;
        hvi_windows_module m;
        memset(&m, 0, sizeof(m));
        m.entry = next;
        if ((st = hvi_gva_read(e, cr3, next + o->m_base, &m.base, 8)) != HVI_OK ||
            (st = hvi_gva_read(e, cr3, next + o->m_size, &m.size, 4)) != HVI_OK)
            return hvi_fail(e, st, "LDR_DATA_TABLE_ENTRY at 0x%llx unreadable (%s)",
                            (unsigned long long)next, hvi_strstatus(st));
        (void)read_user_ustr(e, cr3, next + o->m_basename, 0, m.name, sizeof(m.name), &m.truncated);
        (void)read_user_ustr(e, cr3, next + o->m_fullname, 0, m.path, sizeof(m.path), &m.truncated);
        if (!cb(&m, ctx))
            return HVI_OK;
        node = next;
    }
    return hvi_fail(e, HVI_E_LIMIT, "module list of pid %u longer than %u entries", p->pid,
                    WIN_MAX_MODULES);
}

/* The KPCR candidate is taken when its Self field points to itself. */
static bool kpcr_ok(hvi_engine *e, uint64_t kpcr)
{
    uint64_t self = 0;
    return win_is_kptr(kpcr) && win_read_u64(e, kpcr + KPCR64_SELF, &self) == HVI_OK &&
           self == kpcr;
}

hvi_status win_current_process(hvi_engine *e, uint32_t vcpu, hvi_windows_process *out,
                               uint64_t *thread)
{
    struct win_state *w = win_get(e);
    if (!w || !w->active)
        return HVI_E_STATE;
    const struct win_offsets *o = &w->off;
    if (!o->pcr_thread || !o->t_process)
        return hvi_fail(e, HVI_E_UNSUPPORTED, "the CAMI entry of build %u has no Pcr layout",
                        w->build);
    hvi_regs r;
    memset(&r, 0, sizeof(r));
    if (!e->glue.get_regs || e->glue.get_regs(e->glue.ctx, vcpu, HVI_REGS_FSGS, &r) != HVI_OK ||
        !(r.valid & HVI_REGS_FSGS))
        return hvi_fail(e, HVI_E_BACKEND, "vCPU %u: GS base unavailable", vcpu);
    /* in kernel mode GS base is the KPCR; in user mode (before SWAPGS) KERNEL_GS_BASE is */
    uint64_t kpcr = kpcr_ok(e, r.gs_base)          ? r.gs_base
                    : kpcr_ok(e, r.kernel_gs_base) ? r.kernel_gs_base
                                                   : 0;
    if (!kpcr)
        return hvi_fail(e, HVI_E_FORMAT, "vCPU %u: no KPCR at GS base 0x%llx / 0x%llx", vcpu,
                        (unsigned long long)r.gs_base, (unsigned long long)r.kernel_gs_base);
    uint64_t th = 0, ep = 0;
    hvi_status st = win_read_u64(e, kpcr + o->pcr_thread, &th);
    if (st == HVI_OK && !win_is_kptr(th))
        st = HVI_E_FORMAT;
    if (st == HVI_OK)
        st = win_read_u64(e, th + o->t_process, &ep);
    if (st == HVI_OK && !win_is_kptr(ep))
        st = HVI_E_FORMAT;
    if (st == HVI_OK)
        st = win_read_process(e, ep, out);
    if (st != HVI_OK)
        return hvi_fail(e, st, "vCPU %u: current thread 0x%llx / process 0x%llx unusable (%s)",
                        vcpu, (unsigned long long)th, (unsigned long long)ep, hvi_strstatus(st));
    if (thread)
        *thread = th;
    return HVI_OK;
}
