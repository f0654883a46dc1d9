/*
 * hvi guest/linux — in-guest detours for frequent events (include/hvi/linux_indetour.h).
 *
 * Install: stubs (lix_indetour_ring.c) go into int3 padding of kernel text found by scanning
 * _stext.._etext and handed to the slack allocator; the ring goes into the unused tail of .bss
 * (between the last .bss symbol plus a margin and the 2 MiB-aligned .bss..decrypted, which is
 * inside the kernel image reservation and never freed), checked zero, present, writable and NX
 * through the page tables. With the guest paused, each function's ftrace NOP5 (decoded and
 * compared byte for byte first) becomes `call stub`; QEMU/TCG keeps translated code, so the
 * glue's code_written() makes the backend drop it.
 *
 * Drain (lix_indetour_drain.c): the ring is read through the RAM mapping while the guest runs;
 * events update the VMA view of followed processes: STORE adds the VMA to its mm's set,
 * REMOVE/FREE drop it, ADJUST/PROTECT/EXPAND mark it touched; the entries of a touched process
 * are then re-read (in-place changes of vm_start/vm_end/vm_flags need no event). Lost events, a
 * brk (do_brk_flags inserts with mas_store_gfp, no vma_mas_store), exit_mmap, an exec
 * (task->mm changed) or an inconsistent view make the engine re-walk that process's maple tree.
 *
 * Remove: the call sites get their NOPs back at once; stubs and ring only when no vCPU runs in
 * a stub and no stack holds a pointer into one (lix_thread_safe), else HVI_E_BUSY.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix.h"
#include "guest/linux/lix_events.h"
#include "guest/linux/lix_indetour.h"
#include "guest/linux/lix_indetour_state.h"
#include "guest/linux/lix_protect.h"
#include "hvi/cami.h"
#include "hvi/decode.h"
#include "hvi/linux_indetour.h"
#include "hvi/mem.h"
#include "hvi/protect.h"

#define LIXD_DEFAULT_RECORDS 8192u
#define LIXD_MIN_RECORDS 64u
#define LIXD_BSS_MARGIN (64u << 10) /* left free above the last .bss symbol (its size is unknown)  \
                                     */
#define LIXD_SLACK_MIN_RUN 48u      /* int3 runs shorter than this are left alone */
#define LIXD_SCAN_CHUNK (64u << 10)
#define LIXD_GRACE_NS 1000000000ull /* stale stack words accepted this long after the sites went   \
                                     */


static const uint8_t NOP5[5] = {0x0f, 0x1f, 0x44, 0x00, 0x00};
static const uint8_t ENDBR64[4] = {0xf3, 0x0f, 0x1e, 0xfa};

static const struct {
    uint32_t id;
    const char *func;
    bool required;
} g_targets[LIXD_NDET] = {
    {HVI_LIXD_VMA_STORE, "vma_mas_store", true},
    {HVI_LIXD_VMA_REMOVE, "vma_mas_remove", false},
    {HVI_LIXD_VMA_FREE, "vm_area_free", true},
    {HVI_LIXD_VMA_ADJUST, "__vma_adjust", false},
    {HVI_LIXD_VMA_PROTECT, "mprotect_fixup", false},
    {HVI_LIXD_VMA_EXPAND, "expand_downwards", false},
    {HVI_LIXD_BRK, "do_brk_flags", false},
    {HVI_LIXD_EXIT_MMAP, "exit_mmap", false},
    {HVI_LIXD_FORK, "wake_up_new_task", false},
    {HVI_LIXD_EXEC, "begin_new_exec", false},
    {HVI_LIXD_EXIT, "do_exit", false},
    {HVI_LIXD_MOD_LOAD, "module_param_sysfs_setup", false},
    {HVI_LIXD_MOD_UNLOAD, "module_param_sysfs_remove", false},
};

const char *hvi_lixd_event_name(uint32_t id)
{
    static const char *const names[HVI_LIXD_EVENT_MAX] = {
        "?",           "vma-store",  "vma-remove", "vma-free",    "vma-adjust",
        "vma-protect", "vma-expand", "brk",        "exit-mmap",   "fork",
        "exec",        "exit",       "module-load", "module-unload"};
    return id < HVI_LIXD_EVENT_MAX ? names[id] : "?";
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* Make a backend that caches translated code (QEMU/TCG: writes to its RAM file go unseen) drop
 * what it translated from [gva, gva+len), which now holds `bytes`. */
void lixd_code_sync(hvi_engine *e, uint64_t gva, const void *bytes, uint32_t len)
{
    hvi_code_written(e, gva, bytes, len);
}

hvi_status lixd_pause(hvi_engine *e)
{
    const hvi_glue *g = &e->glue;
    if (!(g->caps & HVI_CAP_PAUSE) || !g->pause)
        return HVI_OK; /* a backend that stops the guest for every call (simulator) */
    return g->pause(g->ctx);
}

void lixd_resume(hvi_engine *e)
{
    const hvi_glue *g = &e->glue;
    if ((g->caps & HVI_CAP_PAUSE) && g->resume)
        g->resume(g->ctx);
}

/* vm_area_struct.vm_mm: CAMI Vma.MmOffset, or "vm_area_struct.vm_mm N" in the offsets file. */
static hvi_status vma_mm_offset(hvi_engine *e, uint32_t *out)
{
    struct lix_kernel *k = lix_get(e);
    hvi_cami *c = NULL;
    char msg[128];
    if (k && e->support && e->support_len &&
        hvi_cami_open(e->support, e->support_len, &c, msg, sizeof(msg)) == HVI_OK) {
        const hvi_cami_lix_entry *ce = NULL;
        const char *pre = "Linux version ";
        bool ok = !strncmp(k->banner, pre, strlen(pre)) &&
                  hvi_cami_lix_select(c, k->banner + strlen(pre), &ce) == HVI_OK &&
                  hvi_cami_lix_field_by_name(ce, "Vma", "MmOffset", out) == HVI_OK && *out < 4096;
        hvi_cami_close(c);
        if (ok)
            return HVI_OK;
    }
    const char *path = lix_offsets_path(e);
    FILE *f = path ? fopen(path, "r") : NULL;
    char line[256];
    hvi_status st = HVI_E_NOT_FOUND;
    while (f && fgets(line, sizeof(line), f)) {
        unsigned long v = 0;
        if (sscanf(line, "vm_area_struct.vm_mm %lu", &v) == 1 && v < 4096) {
            *out = (uint32_t)v;
            st = HVI_OK;
            break;
        }
    }
    if (f)
        fclose(f);
    return st;
}

/* ---- the ring region ------------------------------------------------------------------------ */

static hvi_status check_data_region(hvi_engine *e, uint64_t gva, uint32_t len, const char **why)
{
    uint8_t page[4096];
    for (uint64_t a = gva; a < gva + len; a += 4096) {
        hvi_translation t;
        if (hvi_gva_translate(e, 0, a, &t) != HVI_OK) {
            *why = "a page of the ring region is not mapped";
            return HVI_E_NOT_PRESENT;
        }
        if (!t.writable || t.user || !t.nx) {
            *why = "the ring region is not kernel read-write no-execute memory";
            return HVI_E_DENIED;
        }
        uint32_t n = gva + len - a < 4096 ? (uint32_t)(gva + len - a) : 4096;
        if (hvi_gva_read(e, 0, a, page, n) != HVI_OK) {
            *why = "the ring region is unreadable";
            return HVI_E_NOT_PRESENT;
        }
        for (uint32_t i = 0; i < n; i++)
            if (page[i]) {
                *why = "the ring region is not all zeros (in use)";
                return HVI_E_EXISTS;
            }
    }
    return HVI_OK;
}

static hvi_status find_ring(hvi_engine *e, struct lixd_state *s, const hvi_linux_indetour_opts *o)
{
    uint64_t lo = 0, hi = 0;
    const char *why = "";
    if (o && o->ring_gva) {
        lo = o->ring_gva;
        hi = o->ring_gva + o->ring_len;
        if (hi <= lo || (lo & 63))
            return hvi_fail(e, HVI_E_INVAL, "in-guest detours: bad ring region");
    } else {
        uint64_t dec = 0, sym = 0;
        const char *name = NULL;
        if (lix_kallsyms_lookup(&s->k->ks, "__start_bss_decrypted", &dec) != HVI_OK)
            return hvi_fail(e, HVI_E_NOT_FOUND,
                            "in-guest detours: no __start_bss_decrypted symbol: no known unused "
                            ".bss tail for the ring (give one with opts.ring_gva)");
        if (lix_kallsyms_find(&s->k->ks, dec - 1, &name, &sym) != HVI_OK || sym > (64u << 20))
            return hvi_fail(e, HVI_E_NOT_FOUND,
                            "in-guest detours: no symbol below .bss..decrypted");
        uint64_t last = dec - 1 - sym; /* the last .bss object starts here; its size is unknown */
        lo = (last + LIXD_BSS_MARGIN + 4095) & ~4095ull;
        hi = dec;
        if (lo >= hi)
            return hvi_fail(e, HVI_E_LIMIT,
                            "in-guest detours: the .bss tail after %s is too small (%llu bytes)",
                            name ? name : "?", (unsigned long long)(dec - last));
    }
    uint32_t want = o && o->ring_records ? o->ring_records : LIXD_DEFAULT_RECORDS;
    if (want & (want - 1) || want < LIXD_MIN_RECORDS || want > (1u << 20))
        return hvi_fail(e, HVI_E_INVAL,
                        "in-guest detours: ring_records must be a power of two "
                        "in [%u, 2^20]",
                        LIXD_MIN_RECORDS);
    while (want >= LIXD_MIN_RECORDS && LIXD_HDR_SIZE + (uint64_t)want * LIXD_REC_SIZE > hi - lo)
        want >>= 1;
    if (want < LIXD_MIN_RECORDS)
        return hvi_fail(e, HVI_E_LIMIT, "in-guest detours: ring region of %llu bytes too small",
                        (unsigned long long)(hi - lo));
    s->ring_gva = lo;
    s->ring_len = LIXD_HDR_SIZE + want * LIXD_REC_SIZE;
    s->ring.nrec = want;
    hvi_status st = check_data_region(e, s->ring_gva, s->ring_len, &why);
    if (st != HVI_OK)
        return hvi_fail(e, st, "in-guest detours: ring at 0x%llx (+%u): %s",
                        (unsigned long long)s->ring_gva, s->ring_len, why);
    s->ring_orig = calloc(1, s->ring_len); /* it was all zeros: that is what detach puts back */
    return s->ring_orig ? HVI_OK : HVI_E_NOMEM;
}

/* ---- slack in kernel text -------------------------------------------------------------------- */

/* Offer one int3 run to the slack allocator: 16 bytes kept from the code on each side, 16-byte
 * aligned, executable; returns the bytes added (also when an earlier start added it). */
static uint64_t add_run(hvi_engine *e, uint64_t run_start, uint32_t run)
{
    if (run < LIXD_SLACK_MIN_RUN)
        return 0;
    uint64_t lo = (run_start + 16 + 15) & ~15ull, hi = run_start + run - 16;
    if (hi <= lo + 32)
        return 0;
    uint32_t len = (uint32_t)(hi - lo < (1u << 20) ? hi - lo : (1u << 20));
    hvi_translation t;
    if (hvi_gva_translate(e, 0, lo, &t) != HVI_OK || t.nx ||
        hvi_gva_translate(e, 0, lo + len - 1, &t) != HVI_OK || t.nx)
        return 0;
    hvi_status st = hvi_slack_add_range(e, lo, len);
    return st == HVI_OK || st == HVI_E_EXISTS ? len : 0;
}

static hvi_status find_slack(hvi_engine *e, struct lixd_state *s, uint32_t need)
{
    uint64_t a = 0, b = 0;
    if (lix_kallsyms_lookup(&s->k->ks, "_stext", &a) != HVI_OK ||
        lix_kallsyms_lookup(&s->k->ks, "_etext", &b) != HVI_OK || b <= a || b - a > (256u << 20))
        return hvi_fail(e, HVI_E_NOT_FOUND, "in-guest detours: no _stext/_etext");
    uint8_t *buf = malloc(LIXD_SCAN_CHUNK);
    if (!buf)
        return HVI_E_NOMEM;
    uint64_t found = 0, run_start = 0;
    uint32_t run = 0;
    for (uint64_t p = a; p < b && found < need; p += LIXD_SCAN_CHUNK) {
        uint32_t n = b - p < LIXD_SCAN_CHUNK ? (uint32_t)(b - p) : LIXD_SCAN_CHUNK;
        if (hvi_gva_read(e, 0, p, buf, n) != HVI_OK) {
            run = 0;
            continue;
        }
        for (uint32_t i = 0; i < n && found < need; i++) {
            if (buf[i] == 0xcc) {
                if (!run++)
                    run_start = p + i;
                continue;
            }
            found += add_run(e, run_start, run);
            run = 0;
        }
    }
    free(buf);
    if (found < need)
        return hvi_fail(e, HVI_E_LIMIT,
                        "in-guest detours: only %llu bytes of int3 padding in kernel text, %u "
                        "needed",
                        (unsigned long long)found, need);
    return HVI_OK;
}

/* ---- install / remove --------------------------------------------------------------------- */

/* The patchable entry of `func`: its ftrace NOP5 (after ENDBR64 with IBT), verified by
 * decoding. */
static hvi_status entry_site(hvi_engine *e, struct lixd_state *s, const char *func, uint64_t *site,
                             const char **why)
{
    uint64_t a = 0;
    uint8_t b[16];
    if (lix_kallsyms_lookup(&s->k->ks, func, &a) != HVI_OK) {
        *why = "no such symbol";
        return HVI_E_NOT_FOUND;
    }
    if (hvi_gva_read(e, 0, a, b, sizeof(b)) != HVI_OK) {
        *why = "entry unreadable";
        return HVI_E_NOT_PRESENT;
    }
    uint32_t skip = memcmp(b, ENDBR64, 4) == 0 ? 4 : 0;
    hvi_insn insn;
    if (hvi_decode_buffer(b + skip, sizeof(b) - skip, 64, a + skip, NULL, &insn) != HVI_OK ||
        insn.len != 5 || memcmp(insn.bytes, NOP5, 5) != 0) {
        *why = "entry is not the 5-byte ftrace NOP (not traceable, or already patched)";
        return HVI_E_UNSUPPORTED;
    }
    *site = a + skip;
    return HVI_OK;
}

/* Every stub decodes into whole instructions ending with ret; int3. */
static bool stub_decodes(const uint8_t *b, uint32_t len, uint64_t at)
{
    uint32_t off = 0;
    while (off < len) {
        hvi_insn insn;
        if (hvi_decode_buffer(b + off, len - off, 64, at + off, NULL, &insn) != HVI_OK)
            return false;
        off += insn.len;
    }
    return off == len && len >= 2 && b[len - 2] == 0xc3;
}

static void write_all(hvi_engine *e, struct lixd_state *s, uint32_t from, bool on)
{
    for (uint32_t i = from; i < s->ndet; i++) {
        struct lixd_detour *d = &s->det[i];
        if (on) {
            hvi_gva_write(e, 0, d->stub, d->stub_bytes, d->stub_len);
            lixd_code_sync(e, d->stub, d->stub_bytes, d->stub_len);
            hvi_gva_write(e, 0, d->site, d->patch, 5);
            lixd_code_sync(e, d->site, d->patch, 5);
        } else {
            hvi_gva_write(e, 0, d->site, d->orig, 5);
            lixd_code_sync(e, d->site, d->orig, 5);
        }
    }
}

static void accept_all(hvi_engine *e, struct lixd_state *s, uint32_t from, bool stubs)
{
    for (uint32_t i = from; i < s->ndet; i++) {
        lixp_accept(e, s->det[i].site, 5);
        if (stubs)
            lixp_accept(e, s->det[i].stub, s->det[i].stub_len);
    }
}

static void state_free(hvi_engine *e, void *ctx)
{
    struct lixd_state *s = ctx;
    if (!s)
        return;
    lixd_procs_free(s);
    free(s->ring_orig);
    free(s);
    if (e && e->lixd == s)
        e->lixd = NULL;
}

/* Put the stubs' padding and the ring back (sites already restored). */
static hvi_status remove_stubs(hvi_engine *e, struct lixd_state *s)
{
    hvi_status st = lixd_pause(e);
    if (st != HVI_OK)
        return hvi_fail(e, st, "in-guest detours: cannot pause the guest");
    for (uint32_t i = 0; i < s->ndet; i++) {
        hvi_gva_write(e, 0, s->det[i].stub, s->det[i].stub_orig, s->det[i].stub_len);
        lixd_code_sync(e, s->det[i].stub, s->det[i].stub_orig, s->det[i].stub_len);
        hvi_slack_free(e, s->det[i].stub);
    }
    hvi_gva_write(e, 0, s->ring_gva, s->ring_orig, s->ring_len);
    lixd_resume(e);
    accept_all(e, s, 0, true);
    s->ndet = 0;
    s->phase = PH_OFF;
    return HVI_OK;
}

/* Can a task be preempted inside a stub (and sleep there)? With PREEMPT_DYNAMIC the mode is in
 * preempt_dynamic_mode (0 none, 1 voluntary, 2 full); unknown counts as yes. */
static bool preempt_full(struct lixd_state *s)
{
    uint64_t a = 0;
    int32_t mode = -1;
    if (lix_kallsyms_lookup(&s->k->ks, "preempt_dynamic_mode", &a) != HVI_OK ||
        lix_read(s->k, a, &mode, sizeof(mode)) != HVI_OK)
        return true;
    return mode != 0 && mode != 1;
}

static hvi_status do_stop(hvi_engine *e, struct lixd_state *s)
{
    if (s->phase == PH_OFF)
        return HVI_OK;
    hvi_status st;
    if (s->phase == PH_ACTIVE) {
        (void)hvi_linux_indetour_drain(e, NULL); /* keep what the guest already recorded */
        if ((st = lixd_pause(e)) != HVI_OK)
            return hvi_fail(e, st, "in-guest detours: cannot pause the guest");
        write_all(e, s, 0, false);
        lixd_resume(e);
        accept_all(e, s, 0, false);
        s->phase = PH_SITES_OFF;
        s->sites_off_ns = hvi_now_ns();
    }
    /* no vCPU inside a stub, no return address or interrupted RIP into one on any stack */
    struct lix_thrsafe_hit hit;
    memset(&hit, 0, sizeof(hit));
    st = lixd_pause(e);
    if (st == HVI_OK) {
        st = lix_thread_safe(e, s->stub_lo, s->stub_hi, &hit);
        lixd_resume(e);
    }
    if (st == HVI_E_BUSY && !hit.on_cpu && hvi_now_ns() - s->sites_off_ns > LIXD_GRACE_NS &&
        !preempt_full(s)) {
        /* Only stack words, long after the last entry, and no task can sleep inside a stub
         * (voluntary preemption): interrupt frames of stubs that ran (the scan cannot tell
         * stale words below a stack's top from live ones). With full preemption the stubs stay
         * until the scan is clean: unreachable once the sites are restored, so harmless. */
        hvi_log(e, HVI_LOG_INFO,
                "in-guest detours: pid %d's stack holds 0x%llx in a stub %llu ms after the "
                "sites were removed: stale, removing the stubs",
                hit.pid, (unsigned long long)hit.value,
                (unsigned long long)((hvi_now_ns() - s->sites_off_ns) / 1000000));
        st = HVI_OK;
    }
    if (st == HVI_E_BUSY)
        return HVI_E_BUSY;
    if (st != HVI_OK)
        return hvi_fail(e, st, "in-guest detours: thread-safeness check failed");
    return remove_stubs(e, s);
}

static hvi_status on_detach(hvi_engine *e, void *ctx)
{
    return do_stop(e, ctx);
}

static void on_tick(hvi_engine *e, void *ctx)
{
    struct lixd_state *s = ctx;
    if (s->phase == PH_ACTIVE && !e->detaching)
        (void)hvi_linux_indetour_drain(e, NULL);
}

/* gs:current_task must be a task on some vCPU (kernel GS: GS base at CPL 0, else KERNEL_GS). */
static hvi_status verify_current_task(hvi_engine *e, struct lixd_state *s)
{
    uint32_t n = 1;
    if (e->glue.vcpu_count && (e->glue.vcpu_count(e->glue.ctx, &n) != HVI_OK || n == 0))
        n = 1;
    if (lixd_pause(e) != HVI_OK)
        return hvi_fail(e, HVI_E_BACKEND, "in-guest detours: cannot pause the guest");
    bool regs_seen = false;
    uint64_t gs = 0, task = 0;
    for (uint32_t v = 0; v < n && v < 64; v++) {
        hvi_regs r;
        memset(&r, 0, sizeof(r));
        if (e->glue.get_regs(e->glue.ctx, v, HVI_REGS_SEG | HVI_REGS_FSGS, &r) != HVI_OK ||
            !(r.valid & HVI_REGS_FSGS))
            continue;
        regs_seen = true;
        struct lix_task t;
        /* at CPL 0 the kernel normally runs on GS_BASE, but not in the few entry instructions
         * before swapgs: try both */
        uint64_t cand[2] = {(r.seg[HVI_CS].selector & 3) ? r.kernel_gs_base : r.gs_base,
                            (r.seg[HVI_CS].selector & 3) ? r.gs_base : r.kernel_gs_base};
        for (int c = 0; c < 2; c++) {
            gs = cand[c];
            if (lix_is_kptr(gs) && lix_read_u64(s->k, gs + s->current_task, &task) == HVI_OK &&
                lix_task_read(s->k, task, &t) == HVI_OK && t.pid >= 0) {
                lixd_resume(e);
                hvi_log(e, HVI_LOG_INFO,
                        "in-guest detours: gs:current_task verified (vCPU %u runs pid %d %s)", v,
                        t.pid, t.comm);
                s->stats.task_verified = true;
                return HVI_OK;
            }
        }
    }
    lixd_resume(e);
    if (!regs_seen) {
        hvi_log(e, HVI_LOG_WARN, "in-guest detours: GS base unavailable, current_task unverified");
        return HVI_OK;
    }
    return hvi_fail(e, HVI_E_FORMAT,
                    "in-guest detours: gs:current_task is no task on any vCPU (last: GS 0x%llx + "
                    "0x%x -> 0x%llx)",
                    (unsigned long long)gs, s->current_task, (unsigned long long)task);
}

static bool installed(const struct lixd_state *s, uint32_t id)
{
    for (uint32_t i = 0; i < s->ndet; i++)
        if (s->det[i].id == id)
            return true;
    return false;
}

/* Append the functions of `want` not installed yet that can be patched (entry NOP verified);
 * with `strict` (the default set asked for) a required one missing fails. */
static hvi_status select_targets(hvi_engine *e, struct lixd_state *s, uint32_t want, bool strict)
{
    for (uint32_t i = 0; i < LIXD_NDET; i++) {
        if (!(want & (1u << g_targets[i].id)) || installed(s, g_targets[i].id))
            continue;
        if (g_targets[i].id == HVI_LIXD_EXEC && !s->bprm_filename) {
            hvi_log(e, HVI_LOG_INFO,
                    "in-guest detours: exec left out until the process events give the "
                    "linux_binprm offsets");
            continue;
        }
        const char *why = "";
        struct lixd_detour *d = &s->det[s->ndet];
        memset(d, 0, sizeof(*d));
        hvi_status st = entry_site(e, s, g_targets[i].func, &d->site, &why);
        if (st != HVI_OK) {
            if (g_targets[i].required && strict)
                return hvi_fail(e, st, "in-guest detours: %s: %s", g_targets[i].func, why);
            hvi_log(e, HVI_LOG_WARN, "in-guest detours: %s skipped: %s", g_targets[i].func, why);
            continue;
        }
        d->id = g_targets[i].id;
        d->func = g_targets[i].func;
        memcpy(d->orig, NOP5, 5);
        s->ndet++;
    }
    if (!s->ndet)
        return hvi_fail(e, HVI_E_UNSUPPORTED, "in-guest detours: no function could be patched");
    return HVI_OK;
}

/* Allocate slack for one detour's stub and generate it and its call. */
static hvi_status place_stub(hvi_engine *e, struct lixd_state *s, struct lixd_detour *d)
{
    const struct lix_offsets *o = &s->k->off;
    hvi_status st = hvi_slack_alloc(e, LIXD_STUB_MAX, 16, &d->stub);
    if (st != HVI_OK)
        return st;
    struct lixd_stub_params p = {.stub_va = d->stub,
                                 .head_va = s->ring_gva,
                                 .records_va = s->ring_gva + LIXD_HDR_SIZE,
                                 .mask = s->ring.nrec - 1,
                                 .event_id = d->id,
                                 .current_task = s->current_task};
    /* the new task may be gone by the drain: its pid and tgid (adjacent s32) at the call */
    bool pid_pair = o->task_tgid == o->task_pid + 4 && o->task_pid;
    if (d->id == HVI_LIXD_FORK && pid_pair)
        p.arg0_load = o->task_pid;
    if (d->id == HVI_LIXD_FORK && o->task_comm) { /* the name at the fork, before any exec */
        p.str = true;
        p.str_off = o->task_comm;
    }
    /* data only valid at the call, decoded later: the caller's pid/tgid (it may be reaped by the
     * drain), the exec's filename (freed with the bprm), the module's name (freed on unload) */
    if ((d->id == HVI_LIXD_EXEC || d->id == HVI_LIXD_EXIT) && pid_pair)
        p.task_load = o->task_pid;
    if (d->id == HVI_LIXD_EXEC) {
        p.str = p.str_deref = true;
        p.str_off = s->bprm_filename;
        p.ask = true; /* exec blocking by a watched doorbell write (lix_events.c) */
        p.doorbell_va = s->ring_gva + LIXD_DOORBELL_OFF;
    }
    if (d->id == HVI_LIXD_MOD_LOAD || d->id == HVI_LIXD_MOD_UNLOAD) {
        p.str = true;
        p.str_off = o->mod_name;
    }
    d->stub_len = (uint32_t)lixd_stub_emit(&p, d->stub_bytes, sizeof(d->stub_bytes));
    if (!d->stub_len || !stub_decodes(d->stub_bytes, d->stub_len, d->stub) ||
        !lixd_call_emit(d->site, d->stub, d->patch) ||
        hvi_gva_read(e, 0, d->stub, d->stub_orig, d->stub_len) != HVI_OK)
        return hvi_fail(e, HVI_E_INTERNAL, "in-guest detours: stub for %s not placeable", d->func);
    for (uint32_t j = 0; j < d->stub_len; j++)
        if (d->stub_orig[j] != 0xcc)
            return hvi_fail(e, HVI_E_EXISTS, "in-guest detours: slack at 0x%llx is in use",
                            (unsigned long long)d->stub);
    if (d->stub < s->stub_lo)
        s->stub_lo = d->stub;
    if (d->stub + d->stub_len > s->stub_hi)
        s->stub_hi = d->stub + d->stub_len;
    return HVI_OK;
}

/* Paused: the entries from `from` on must still be NOPs; then their stubs and calls are
 * written. */
static hvi_status write_detours(hvi_engine *e, struct lixd_state *s, uint32_t from)
{
    hvi_status st = lixd_pause(e);
    if (st != HVI_OK)
        return hvi_fail(e, st, "in-guest detours: cannot pause the guest");
    for (uint32_t i = from; i < s->ndet; i++) {
        uint8_t now[5];
        if (hvi_gva_read(e, 0, s->det[i].site, now, 5) != HVI_OK || memcmp(now, NOP5, 5) != 0) {
            lixd_resume(e);
            return hvi_fail(e, HVI_E_STATE, "in-guest detours: %s changed under us",
                            s->det[i].func);
        }
    }
    write_all(e, s, from, true);
    lixd_resume(e);
    accept_all(e, s, from, true);
    return HVI_OK;
}

/* Install the detours of `want` that are not in place yet (all of them at the first install,
 * the missing ones when another user asks for more while they run); nothing changes on
 * failure. */
static hvi_status add_detours(hvi_engine *e, struct lixd_state *s, uint32_t want, bool strict)
{
    uint32_t from = s->ndet;
    hvi_status st = select_targets(e, s, want, strict);
    if (st == HVI_OK && s->ndet > from)
        st = find_slack(e, s, s->ndet * LIXD_STUB_MAX);
    for (uint32_t i = from; i < s->ndet && st == HVI_OK; i++)
        st = place_stub(e, s, &s->det[i]);
    if (st == HVI_OK && s->ndet > from)
        st = write_detours(e, s, from);
    if (st != HVI_OK) {
        for (uint32_t i = from; i < s->ndet; i++)
            if (s->det[i].stub)
                hvi_slack_free(e, s->det[i].stub);
        s->ndet = from;
        return st;
    }
    s->stats.detours = s->ndet;
    s->stats.stub_gva = s->stub_lo;
    s->stats.stub_len = s->stub_hi - s->stub_lo;
    if (s->ndet > from && from)
        hvi_log(e, HVI_LOG_INFO, "in-guest detours: %u more functions, %u in all",
                s->ndet - from, s->ndet);
    return HVI_OK;
}

static hvi_status state_get(hvi_engine *e, struct lixd_state **out)
{
    struct lixd_state *s = e->lixd;
    if (!s) {
        if (!(s = calloc(1, sizeof(*s))))
            return HVI_E_NOMEM;
        hvi_status st = hvi_engine_on_free(e, state_free, s);
        if (st != HVI_OK) {
            free(s);
            return hvi_fail(e, st, "in-guest detours: engine cleanup table full");
        }
        e->lixd = s;
    }
    free(s->ring_orig);
    s->ring_orig = NULL;
    memset(&s->ring, 0, sizeof(s->ring));
    memset(&s->stats, 0, sizeof(s->stats));
    s->ndet = 0;
    s->stub_lo = UINT64_MAX;
    s->stub_hi = 0;
    for (uint32_t i = 0; i < s->nprocs; i++)
        s->procs[i].need_walk = true; /* changes while no detour was in place went unseen */
    *out = s;
    return HVI_OK;
}

static uint32_t wanted(const hvi_linux_indetour_opts *opts)
{
    return opts && opts->events ? opts->events : HVI_LIXD_DEFAULT_EVENTS;
}

hvi_status hvi_linux_indetour_start(hvi_engine *e, const hvi_linux_indetour_opts *opts)
{
    if (!e)
        return HVI_E_INVAL;
    if (e->lixd && e->lixd->phase == PH_ACTIVE) /* running for another user: add what is missing */
        return add_detours(e, e->lixd, wanted(opts), false);
    if (e->lixd && e->lixd->phase != PH_OFF)
        return hvi_fail(e, HVI_E_BUSY, "in-guest detours: still being removed");
    struct lix_kernel *k = lix_get(e);
    if (!k || !k->have_offsets)
        return hvi_fail(e, HVI_E_STATE, "in-guest detours: no Linux kernel with offsets");
    struct lixd_state *s = NULL;
    hvi_status st = state_get(e, &s);
    if (st != HVI_OK)
        return st;
    s->k = k;
    uint64_t ct = 0;
    if (vma_mm_offset(e, &s->vma_mm_off) != HVI_OK)
        return hvi_fail(e, HVI_E_NOT_FOUND,
                        "in-guest detours: no vm_area_struct.vm_mm offset "
                        "(CAMI Vma.MmOffset)");
    if (lix_kallsyms_lookup(&k->ks, "current_task", &ct) != HVI_OK || ct > 0x7fffffffu)
        return hvi_fail(e, HVI_E_NOT_FOUND,
                        "in-guest detours: no per-CPU current_task symbol (6.1 layout)");
    s->current_task = (uint32_t)ct;
    if ((st = verify_current_task(e, s)) != HVI_OK || (st = find_ring(e, s, opts)) != HVI_OK ||
        (st = add_detours(e, s, wanted(opts), !(opts && opts->events))) != HVI_OK)
        return st;
    s->phase = PH_ACTIVE;
    s->stats.ring_records = s->ring.nrec;
    s->stats.ring_gva = s->ring_gva;
    if (!s->registered) {
        if ((st = hvi_engine_add_timer(e, on_tick, s)) != HVI_OK ||
            (st = hvi_engine_on_detach(e, on_detach, s)) != HVI_OK) {
            (void)do_stop(e, s);
            return hvi_fail(e, st, "in-guest detours: engine timer/detach table full");
        }
        s->registered = true;
    }
    hvi_log(e, HVI_LOG_INFO,
            "in-guest detours: %u functions, stubs at 0x%llx, ring of %u at 0x%llx", s->ndet,
            (unsigned long long)s->stub_lo, s->ring.nrec, (unsigned long long)s->ring_gva);
    return HVI_OK;
}

hvi_status lixd_events_start(hvi_engine *e, uint32_t events, uint32_t bprm_filename)
{
    if (!e)
        return HVI_E_INVAL;
    if (e->lixd && e->lixd->phase == PH_ACTIVE) { /* e.g. the VMA detours: add ours to them */
        if (!e->lixd->bprm_filename)
            e->lixd->bprm_filename = bprm_filename;
        return add_detours(e, e->lixd, events, false);
    }
    if (e->lixd && e->lixd->phase != PH_OFF) { /* an earlier stop waits for the stubs */
        hvi_status st = do_stop(e, e->lixd);
        if (st != HVI_OK)
            return st;
    }
    struct lixd_state *s = NULL;
    hvi_status st = state_get(e, &s);
    if (st != HVI_OK)
        return st;
    s->bprm_filename = bprm_filename;
    hvi_linux_indetour_opts o = {.events = events};
    return hvi_linux_indetour_start(e, &o);
}

uint32_t lixd_events_installed(hvi_engine *e)
{
    uint32_t bits = 0;
    if (!e || !e->lixd || e->lixd->phase != PH_ACTIVE)
        return 0;
    for (uint32_t i = 0; i < e->lixd->ndet; i++)
        bits |= 1u << e->lixd->det[i].id;
    return bits;
}

bool lixd_site_stub(hvi_engine *e, uint32_t id, uint64_t *site, uint64_t *stub)
{
    if (!e || !e->lixd || e->lixd->phase != PH_ACTIVE)
        return false;
    for (uint32_t i = 0; i < e->lixd->ndet; i++)
        if (e->lixd->det[i].id == id) {
            *site = e->lixd->det[i].site;
            *stub = e->lixd->det[i].stub;
            return true;
        }
    return false;
}

bool lixd_doorbell(hvi_engine *e, uint64_t *gva)
{
    uint64_t site = 0, stub = 0;
    if (!lixd_site_stub(e, HVI_LIXD_EXEC, &site, &stub))
        return false;
    *gva = e->lixd->ring_gva + LIXD_DOORBELL_OFF;
    return true;
}

uint32_t lixd_answer(hvi_engine *e, lixd_deny_fn deny, void *ctx)
{
    struct lixd_state *s = e ? e->lixd : NULL;
    uint64_t head = 0;
    uint32_t n = 0;
    if (!s || s->phase != PH_ACTIVE || !deny ||
        hvi_gva_read(e, 0, s->ring_gva, &head, sizeof(head)) != HVI_OK)
        return 0;
    for (uint64_t i = head, k = 0; i > 0 && k < LIXD_ASK_SCAN && k < s->ring.nrec; k++) {
        i--;
        uint64_t at = s->ring_gva + LIXD_HDR_SIZE + (i & (s->ring.nrec - 1)) * LIXD_REC_SIZE;
        struct lixd_record r;
        if (hvi_gva_read(e, 0, at, &r, sizeof(r)) != HVI_OK)
            break;
        if (r.seq != 0 || r.id != HVI_LIXD_EXEC || r.args[LIXD_VERDICT_SLOT] != LIXD_VERDICT_ASK)
            continue;
        uint64_t v = deny(e, &r, ctx) ? LIXD_VERDICT_DENY : LIXD_VERDICT_ALLOW;
        if (hvi_gva_write(e, 0, at + offsetof(struct lixd_record, args) + 8 * LIXD_VERDICT_SLOT,
                          &v, sizeof(v)) == HVI_OK)
            n++;
    }
    return n;
}

uint32_t lixd_settle_asks(hvi_engine *e)
{
    struct lixd_state *s = e ? e->lixd : NULL;
    const uint32_t chunk = 512; /* records read at once (64 KiB) */
    uint32_t n = 0;
    if (!s || s->phase != PH_ACTIVE || !s->ring.nrec)
        return 0;
    struct lixd_record *buf = malloc((size_t)chunk * sizeof(*buf));
    if (!buf)
        return 0;
    /* paused: a slot claimed again while we read it must not get our ALLOW over its live ASK */
    if (lixd_pause(e) != HVI_OK) {
        free(buf);
        return 0;
    }
    for (uint32_t first = 0; first < s->ring.nrec; first += chunk) {
        uint32_t cnt = s->ring.nrec - first < chunk ? s->ring.nrec - first : chunk;
        uint64_t at = s->ring_gva + LIXD_HDR_SIZE + (uint64_t)first * LIXD_REC_SIZE;
        if (hvi_gva_read(e, 0, at, buf, (size_t)cnt * sizeof(*buf)) != HVI_OK)
            break;
        for (uint32_t i = 0; i < cnt; i++) {
            uint64_t v = LIXD_VERDICT_ALLOW;
            if (buf[i].seq == 0 || buf[i].id != HVI_LIXD_EXEC ||
                buf[i].args[LIXD_VERDICT_SLOT] != LIXD_VERDICT_ASK)
                continue;
            uint64_t slot = at + (uint64_t)i * LIXD_REC_SIZE +
                            offsetof(struct lixd_record, args) + 8 * LIXD_VERDICT_SLOT;
            if (hvi_gva_write(e, 0, slot, &v, sizeof(v)) == HVI_OK)
                n++;
        }
    }
    lixd_resume(e);
    free(buf);
    return n;
}

hvi_status hvi_linux_indetour_stop(hvi_engine *e)
{
    if (!e)
        return HVI_E_INVAL;
    return e->lixd ? do_stop(e, e->lixd) : HVI_OK;
}

bool hvi_linux_indetour_active(hvi_engine *e)
{
    return e && e->lixd && e->lixd->phase == PH_ACTIVE;
}

hvi_status hvi_linux_indetour_set_callback(hvi_engine *e, hvi_linux_vma_event_cb cb, void *ctx)
{
    if (!e || !e->lixd)
        return HVI_E_STATE;
    e->lixd->cb = cb;
    e->lixd->cb_ctx = ctx;
    return HVI_OK;
}

hvi_status hvi_linux_indetour_stats_get(hvi_engine *e, hvi_linux_indetour_stats *out)
{
    if (!e || !out)
        return HVI_E_INVAL;
    if (!e->lixd)
        return HVI_E_STATE;
    struct lixd_state *s = e->lixd;
    s->stats.lost = s->ring.lost;
    s->stats.garbage = s->ring.garbage;
    s->stats.resyncs = s->ring.resyncs;
    s->stats.events = s->ring.consumed;
    *out = s->stats;
    return HVI_OK;
}
