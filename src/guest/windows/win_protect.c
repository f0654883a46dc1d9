/* guest/windows — protection of the kernel's critical structures through EPT write hooks (deny
 * and alert, or log only): KiServiceTable (the SSDT, found from KiSystemServiceRepeat's
 * "lea r10, KeServiceDescriptorTable; lea r11, KeServiceDescriptorTableShadow"), the
 * HalDispatchTable export, every vCPU's IDT, and ntoskrnl's code and read-only sections.
 * Alerts name the object; the writer's RIP is resolved to the driver that holds it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/windows/win.h"

#define WIN_SDT_SIZE 0x20u /* KSERVICE_TABLE_DESCRIPTOR: Base, Count, Limit, Number */
#define HAL_DISPATCH_PROTECTED                                                                     \
    0x40u /* Version + the first 7 pointers (HalQuerySystemInformation...) */

static void owner(hvi_engine *e, hvi_alert *a, void *ctx)
{
    (void)ctx;
    hvi_windows_module m;
    if (win_module_at(e, a->rip, &m) == HVI_OK) {
        hvi_strlcpy(a->module, m.name[0] ? m.name : "?", sizeof(a->module));
        snprintf(a->symbol, sizeof(a->symbol), "%.60s+0x%llx", m.name[0] ? m.name : "?",
                 (unsigned long long)(a->rip - m.base));
    } else {
        hvi_strlcpy(a->module, "unknown", sizeof(a->module));
    }
    /* the process whose thread runs on the writing vCPU */
    hvi_windows_process p;
    a->pid = -1;
    if (win_current_process(e, a->vcpu, &p, NULL) == HVI_OK) {
        a->pid = (int32_t)p.pid;
        hvi_strlcpy(a->comm, p.name, sizeof(a->comm));
    }
}

static hvi_status push(hvi_engine *e, struct win_state *w, hvi_protect *p, uint64_t opt)
{
    if (w->nprot == w->cap_prot) {
        size_t cap = w->cap_prot ? w->cap_prot * 2 : 64;
        struct win_prot *n = realloc(w->prot, cap * sizeof(*n));
        if (!n) {
            (void)hvi_protect_remove(e, p);
            return HVI_E_NOMEM;
        }
        w->prot = n;
        w->cap_prot = cap;
    }
    w->prot[w->nprot].p = p;
    w->prot[w->nprot].opt = opt;
    w->nprot++;
    return HVI_OK;
}

/* Write-protect [gva, gva+len) page by page (the frames need not be contiguous). Absent pages
 * are skipped and counted. */
static hvi_status protect_range(hvi_engine *e, struct win_state *w, const char *object,
                                uint64_t gva, uint64_t len, uint64_t opt, uint32_t *absent)
{
    hvi_protect_desc d = {.object = object, .alert_type = HVI_ALERT_EPT_WRITE, .owner = owner};
    for (uint64_t off = 0; off < len;) {
        uint64_t va = gva + off;
        uint64_t chunk = HVI_PAGE_SIZE - (va & (HVI_PAGE_SIZE - 1));
        if (chunk > len - off)
            chunk = len - off;
        off += chunk;
        hvi_gpa gpa = 0;
        if (hvi_gva_to_gpa(e, 0, va, &gpa) != HVI_OK) {
            if (absent)
                (*absent)++;
            continue;
        }
        hvi_protect *p = NULL;
        hvi_status st = hvi_protect_memory(e, &d, gpa, va, (uint32_t)chunk, HVI_EPT_W, &p);
        if (st == HVI_OK)
            st = push(e, w, p, opt);
        if (st != HVI_OK)
            return hvi_fail(e, st, "protecting %s at 0x%llx: %s", object, (unsigned long long)va,
                            hvi_strstatus(st));
    }
    return HVI_OK;
}

hvi_status win_find_ssdt(hvi_engine *e)
{
    struct win_state *w = win_get(e);
    if (!w)
        return HVI_E_STATE;
    uint64_t budget = WIN_SCAN_BUDGET;
    for (uint32_t i = 0; i < w->pe.nsec; i++) {
        const struct win_pe_section *s = &w->pe.sec[i];
        if (!(s->characteristics & WIN_SCN_MEM_EXECUTE))
            continue;
        uint32_t n = s->vsize > WIN_MAX_SCAN_SECTION ? WIN_MAX_SCAN_SECTION : s->vsize;
        if (n > budget)
            break; /* a hostile image of many big overlapping sections: bounded work */
        budget -= n;
        uint8_t *b = calloc(1, n ? n : 1);
        if (!b)
            return HVI_E_NOMEM;
        for (uint32_t off = 0; off < n; off += HVI_PAGE_SIZE) {
            uint32_t c = n - off < HVI_PAGE_SIZE ? n - off : HVI_PAGE_SIZE;
            (void)hvi_gva_read(e, 0, w->base + s->rva + off, b + off, c);
        }
        for (uint32_t k = 0; k + 14 <= n; k++) {
            if (b[k] != 0x4c || b[k + 1] != 0x8d || b[k + 2] != 0x15 || b[k + 7] != 0x4c ||
                b[k + 8] != 0x8d || b[k + 9] != 0x1d)
                continue;
            int32_t d;
            memcpy(&d, b + k + 3, 4);
            uint64_t sdt = w->base + s->rva + k + 7 + (uint64_t)(int64_t)d, base = 0;
            uint32_t count = 0;
            if (sdt - w->base >= w->pe.size_of_image || win_read_u64(e, sdt, &base) != HVI_OK ||
                win_read_u32(e, sdt + 0x10, &count) != HVI_OK)
                continue;
            if (count == 0 || count > 4096 || base - w->base >= w->pe.size_of_image ||
                (uint64_t)count * 4 > w->pe.size_of_image - (base - w->base))
                continue;
            w->sdt = sdt;
            w->ssdt = base;
            w->ssdt_count = count;
            free(b);
            return HVI_OK;
        }
        free(b);
    }
    return hvi_fail(e, HVI_E_NOT_FOUND,
                    "no KiSystemServiceRepeat pattern leads to a plausible "
                    "KeServiceDescriptorTable");
}

/* Code and read-only sections, leaving out the SSDT bytes (their own protection names them). */
static hvi_status protect_image(hvi_engine *e, struct win_state *w, uint32_t *absent)
{
    for (uint32_t i = 0; i < w->pe.nsec; i++) {
        const struct win_pe_section *s = &w->pe.sec[i];
        uint32_t c = s->characteristics;
        if ((c & (WIN_SCN_MEM_WRITE | WIN_SCN_DISCARDABLE)) ||
            !(c & (WIN_SCN_MEM_EXECUTE | WIN_SCN_MEM_READ)))
            continue;
        char obj[32];
        snprintf(obj, sizeof(obj), "%s:%s", (c & WIN_SCN_MEM_EXECUTE) ? "nt-code" : "nt-ro",
                 s->name);
        uint64_t lo = w->base + s->rva, hi = lo + s->vsize;
        uint64_t ts = w->ssdt, te = w->ssdt + (uint64_t)w->ssdt_count * 4;
        hvi_status st;
        if (w->ssdt && ts < hi && te > lo) {
            if ((ts > lo &&
                 (st = protect_range(e, w, obj, lo, ts - lo, HVI_OPT_KM_TEXT, absent)) != HVI_OK) ||
                (te < hi &&
                 (st = protect_range(e, w, obj, te, hi - te, HVI_OPT_KM_TEXT, absent)) != HVI_OK))
                return st;
        } else if ((st = protect_range(e, w, obj, lo, hi - lo, HVI_OPT_KM_TEXT, absent)) !=
                   HVI_OK) {
            return st;
        }
    }
    return HVI_OK;
}

static hvi_status protect_idts(hvi_engine *e, struct win_state *w)
{
    uint64_t seen[64];
    uint32_t nseen = 0, vcpus = 0;
    if (e->glue.vcpu_count(e->glue.ctx, &vcpus) != HVI_OK)
        vcpus = 1;
    for (uint32_t v = 0; v < vcpus && v < 64; v++) {
        hvi_regs r;
        memset(&r, 0, sizeof(r));
        if (e->glue.get_regs(e->glue.ctx, v, HVI_REGS_DTR, &r) != HVI_OK ||
            !(r.valid & HVI_REGS_DTR))
            return hvi_fail(e, HVI_E_BACKEND, "reading the IDTR of vCPU %u failed", v);
        bool dup = false;
        for (uint32_t i = 0; i < nseen; i++)
            dup |= seen[i] == r.idtr_base;
        if (dup || !win_is_kptr(r.idtr_base))
            continue;
        seen[nseen++] = r.idtr_base;
        uint32_t len = (uint32_t)r.idtr_limit + 1u;
        hvi_status st =
            protect_range(e, w, "idt", r.idtr_base, len > 4096 ? 4096 : len, HVI_OPT_KM_IDT, NULL);
        if (st != HVI_OK)
            return st;
    }
    return HVI_OK;
}

static hvi_status place(hvi_engine *e, struct win_state *w, uint64_t bit)
{
    uint32_t absent = 0;
    hvi_status st = HVI_OK;
    if (bit == HVI_OPT_KM_SYSCALL_TABLE) {
        if (!w->ssdt)
            return hvi_fail(e, HVI_E_NOT_FOUND, "KiServiceTable was not found: not protected");
        st = protect_range(e, w, "nt-ssdt", w->ssdt, (uint64_t)w->ssdt_count * 4, bit, NULL);
        if (st == HVI_OK && w->hal_dispatch)
            st = protect_range(e, w, "hal-dispatch-table", w->hal_dispatch, HAL_DISPATCH_PROTECTED,
                               bit, NULL);
    } else if (bit == HVI_OPT_INTEGRITY) {
        /* the descriptor lives in .data among hot variables: hashed on the timer, not hooked */
        if (!w->sdt)
            return hvi_fail(e, HVI_E_NOT_FOUND, "KeServiceDescriptorTable was not found");
        hvi_protect_desc d = {.object = "nt-sdt-descriptor", .owner = owner};
        hvi_protect *p = NULL;
        st = hvi_protect_integrity(e, &d, 0, w->sdt, WIN_SDT_SIZE, &p);
        if (st == HVI_OK)
            st = push(e, w, p, bit);
    } else if (bit == HVI_OPT_KM_MSR) {
        /* the syscall entry: a changed LSTAR bypasses KiSystemCall64 (every bit counts) */
        hvi_protect_desc d = {.object = "lstar", .owner = owner};
        hvi_protect *p = NULL;
        st = hvi_protect_register(e, &d, HVI_EXIT_MSR, HVI_MSR_LSTAR, ~(uint64_t)0, &p);
        if (st == HVI_OK)
            st = push(e, w, p, bit);
    } else if (bit == HVI_OPT_KM_IDT) {
        st = protect_idts(e, w);
    } else if (bit == HVI_OPT_KM_TEXT) {
        st = protect_image(e, w, &absent);
        if (absent)
            hvi_log(e, HVI_LOG_INFO, "windows: %u absent kernel pages left unprotected", absent);
    }
    return st;
}

static void remove_bit(hvi_engine *e, struct win_state *w, uint64_t bit)
{
    size_t k = 0;
    for (size_t i = 0; i < w->nprot; i++) {
        if (w->prot[i].opt & bit)
            (void)hvi_protect_remove(e, w->prot[i].p);
        else
            w->prot[k++] = w->prot[i];
    }
    w->nprot = k;
    w->applied &= ~bit;
}

hvi_status win_protect_apply(hvi_engine *e, uint64_t opts)
{
    struct win_state *w = win_get(e);
    if (!w || !w->active)
        return HVI_E_STATE;
    static const uint64_t bits[] = {HVI_OPT_KM_SYSCALL_TABLE, HVI_OPT_KM_IDT, HVI_OPT_KM_TEXT,
                                    HVI_OPT_INTEGRITY, HVI_OPT_KM_MSR};
    hvi_status worst = HVI_OK;
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        bool want = (opts & bits[i]) != 0, have = (w->applied & bits[i]) != 0;
        if (want && !have) {
            hvi_status st = place(e, w, bits[i]);
            if (st != HVI_OK) {
                remove_bit(e, w, bits[i]); /* all or nothing per option */
                worst = st;
                continue;
            }
            w->applied |= bits[i];
        } else if (!want && have) {
            remove_bit(e, w, bits[i]);
        }
    }
    return worst;
}

void win_protect_remove_all(hvi_engine *e)
{
    struct win_state *w = e ? e->win : NULL;
    if (!w)
        return;
    remove_bit(e, w, ~(uint64_t)0);
}
