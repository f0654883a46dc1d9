/*
 * hvi guest/linux — write-time protection of a few small critical objects, with the writer.
 *
 * The timer checks (lix_protect.c) see the result of a write up to one round later and cannot
 * name the writer. For a handful of 8-byte objects the hook layer's write hooks do better: on
 * QEMU (no EPT) each becomes a write watchpoint, reported right after the write with the vCPU's
 * registers, so the alert carries the writing instruction's RIP (the instruction after the
 * store: QEMU stops after the access), its kallsyms symbol and module, and the task running on
 * that vCPU (the per-CPU `current_task` read through the GS base). In deny mode the hook layer
 * writes the old bytes back before the vCPU runs on: the value never stays in memory.
 *
 * What is watched (the budget is ~4 watchpoints of 8 bytes): the first 8 bytes (handler offset
 * bits 0-31, selector, type) of the IDT gates most abused by rootkits, int 0x80 (IA32 system
 * calls) and #PF, each through both linear addresses the kernel has for the table: the read-only
 * alias the IDTR points at (CPU entry area, written only with CR0.WP cleared) and the writable
 * `idt_table`. QEMU watchpoints match linear addresses, so a write through any other alias (the
 * direct map) is not seen here; the timer check still catches it (without the writer).
 * A redirected handler needs new low offset bits (module and kernel addresses share the upper
 * 32), so these 8 bytes are the ones that change.
 */
#include <stdio.h>
#include <string.h>

#include "guest/linux/lix_protect.h"
#include "hvi/hook.h"
#include "hvi/mem.h"

static const struct {
    uint32_t vec;
    const char *name;
} g_gates[] = {{0x80, "int 0x80"}, {14, "#PF"}, {3, "#BP"}, {1, "#DB"}};

/* Copy helpers whose RIP says little: the caller (return address at [RSP]) is the writer. */
static bool copy_helper(const char *sym)
{
    static const char *const names[] = {"memcpy", "__memcpy", "memmove", "__memmove",
                                        "memset", "__memset", "memcpy_orig", "memcpy_erms",
                                        "memmove_orig", "memset_orig", "memset_erms"};
    size_t n = strcspn(sym, "+");
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == n && !strncmp(sym, names[i], n))
            return true;
    return false;
}

void lixp_current_task(const struct lixp_state *s, const hvi_regs *regs, int32_t *pid, char *comm,
                       size_t clen)
{
    *pid = -1;
    comm[0] = 0;
    uint64_t off = 0, gs = 0, task = 0;
    if (!regs || !(regs->valid & HVI_REGS_FSGS) ||
        lix_kallsyms_lookup(&s->k->ks, "current_task", &off) != HVI_OK || off >= (1u << 24))
        return; /* a per-CPU offset is small; anything else is not the 6.x layout */
    /* in the kernel GS holds the per-CPU base; right after entry from user mode (before
     * swapgs) it is in KERNEL_GS_BASE */
    gs = lix_is_kptr(regs->gs_base) ? regs->gs_base : regs->kernel_gs_base;
    struct lix_task t;
    if (!lix_is_kptr(gs) || lix_read_u64(s->k, gs + off, &task) != HVI_OK || !lix_is_kptr(task) ||
        lix_task_read(s->k, task, &t) != HVI_OK)
        return;
    *pid = t.pid;
    hvi_strlcpy(comm, t.comm, clen);
}

void lixp_writer(struct lixp_state *s, const hvi_regs *regs, uint64_t rip, hvi_alert *a,
                 char *note, size_t nlen)
{
    note[0] = 0;
    a->rip = rip;
    lixp_alert_writer(s, a, rip);
    if (a->symbol[0] && copy_helper(a->symbol) && regs && (regs->valid & HVI_REGS_GPR)) {
        uint64_t ret = 0;
        char sym[96], mod[64];
        hvi_alert tmp;
        memset(&tmp, 0, sizeof(tmp));
        if (lix_read_u64(s->k, regs->gpr[HVI_RSP], &ret) == HVI_OK && lix_is_kptr(ret)) {
            lixp_alert_writer(s, &tmp, ret);
            hvi_strlcpy(sym, tmp.symbol, sizeof(sym));
            hvi_strlcpy(mod, tmp.module, sizeof(mod));
            if (mod[0]) {
                snprintf(note, nlen, "; called from %s (%s)", sym, mod);
                hvi_strlcpy(a->module, mod, sizeof(a->module));
            }
        }
    }
    lixp_current_task(s, regs, &a->pid, a->comm, sizeof(a->comm));
}

static uint64_t gate_handler(const uint8_t g[16])
{
    uint16_t lo, mid;
    uint32_t hi;
    memcpy(&lo, g, 2);
    memcpy(&mid, g + 6, 2);
    memcpy(&hi, g + 8, 4);
    return lo | (uint64_t)mid << 16 | (uint64_t)hi << 32;
}

static uint32_t watch_cb(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc, void *ctx)
{
    struct lixp_watch *w = ctx;
    struct lixp_state *s = w->s;
    (void)hook;
    if (!(e->options & HVI_OPT_KM_IDT) || e->detaching)
        return HVI_ACTION_ALLOW;
    bool deny = !(e->options & HVI_OPT_LOG_ONLY);
    hvi_alert a;
    hvi_alert_init(&a, HVI_ALERT_INTEGRITY, acc->vcpu);
    a.action = deny ? HVI_ALERT_DENIED : HVI_ALERT_LOGGED;
    a.gva = acc->gva;
    a.gpa = acc->gpa;
    a.width = acc->size;
    uint32_t n = acc->size < 8 ? acc->size : 8;
    memcpy(&a.old_value, acc->old_bytes, n);
    memcpy(&a.new_value, acc->new_bytes, n);
    hvi_strlcpy(a.object, "idt", sizeof(a.object));
    char note[192], tsym[96] = "?", tmod[64] = "";
    lixp_writer(s, acc->regs, acc->rip, &a, note, sizeof(note));
    /* the handler the gate now holds (the write is in memory until we return) */
    uint8_t gate[16];
    if (lix_read(s->k, w->gva & ~15ull, gate, sizeof(gate)) == HVI_OK) {
        hvi_alert t;
        memset(&t, 0, sizeof(t));
        lixp_alert_writer(s, &t, gate_handler(gate));
        if (t.symbol[0])
            hvi_strlcpy(tsym, t.symbol, sizeof(tsym));
        hvi_strlcpy(tmod, t.module, sizeof(tmod));
    }
    char d[768];
    snprintf(d, sizeof(d),
             "IDT gate 0x%x (%s) written through %s by RIP 0x%llx %s%s; handler now %s (%s); "
             "watchpoint: seen right after the write",
             w->vec, w->name, w->via, (unsigned long long)acc->rip,
             a.symbol[0] ? a.symbol : "?", note, tsym, tmod[0] ? tmod : "unknown memory");
    hvi_strlcpy(a.detail, d, sizeof(a.detail));
    hvi_alert_emit(e, &a);
    s->stats.violations++;
    s->stats.watch_hits++;
    if (deny) {
        s->stats.restored++;
        return HVI_ACTION_DENY; /* the hook layer writes the old bytes back */
    }
    /* logged: the timer check must not report the same change again */
    for (uint32_t i = 0; i < s->nregions; i++) {
        struct lixp_region *r = &s->regions[i];
        if (!strcmp(r->object, "idt")) {
            uint64_t at = (uint64_t)w->vec * 16 + (acc->gva - w->gva);
            if (at + acc->size <= r->len && acc->size <= sizeof(acc->new_bytes))
                memcpy(r->shadow + at, acc->new_bytes, acc->size);
        }
    }
    return HVI_ACTION_ALLOW;
}

static bool add_watch(hvi_engine *e, struct lixp_state *s, uint64_t gva, uint32_t vec,
                      const char *name, const char *via)
{
    hvi_gpa gpa = 0;
    if (s->nwatch >= LIXP_MAX_WATCH)
        return false;
    struct lixp_watch *w = &s->watch[s->nwatch];
    *w = (struct lixp_watch){.s = s, .gva = gva, .vec = vec, .name = name, .via = via};
    hvi_status st = hvi_gva_to_gpa(e, 0, gva, &gpa);
    if (st == HVI_OK)
        st = hvi_hook_gpa_add_gva(e, gpa, gva, 8, HVI_EPT_W, watch_cb, w, &w->hook);
    if (st != HVI_OK) {
        hvi_log(e, 2, "linux protect: no write hook on IDT gate 0x%x via %s (%s): timer only",
                vec, via, hvi_strstatus(st));
        return false;
    }
    hvi_hook_set_owned(w->hook, true);
    s->nwatch++;
    return true;
}

void lixp_watch_start(hvi_engine *e, struct lixp_state *s)
{
    if (!(e->options & HVI_OPT_KM_IDT) ||
        !(e->glue.caps & (HVI_CAP_WATCHPOINT | HVI_CAP_EPT)))
        return;
    uint64_t table = 0, alias = 0;
    (void)lix_kallsyms_lookup(&s->k->ks, "idt_table", &table);
    hvi_regs r;
    memset(&r, 0, sizeof(r));
    if (e->glue.get_regs(e->glue.ctx, 0, HVI_REGS_DTR, &r) == HVI_OK && (r.valid & HVI_REGS_DTR) &&
        r.idtr_limit >= 0xfff && lix_is_kptr(r.idtr_base) && r.idtr_base != table)
        alias = r.idtr_base;
    for (size_t i = 0; i < sizeof(g_gates) / sizeof(g_gates[0]); i++) {
        uint32_t v = g_gates[i].vec;
        if (alias && !add_watch(e, s, alias + 16ull * v, v, g_gates[i].name, "the IDTR alias"))
            break;
        if (table && !add_watch(e, s, table + 16ull * v, v, g_gates[i].name, "idt_table"))
            break;
    }
    hvi_log(e, 3, "linux protect: %u IDT write hooks", s->nwatch);
}

void lixp_watch_stop(hvi_engine *e, struct lixp_state *s)
{
    for (uint32_t i = 0; i < s->nwatch; i++)
        if (s->watch[i].hook && hvi_hook_remove(e, s->watch[i].hook) != HVI_E_INVAL)
            s->watch[i].hook = NULL;
    s->nwatch = 0;
}
