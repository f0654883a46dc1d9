/*
 * hvi guest/linux — write hooks over whole protected regions, with the writer.
 *
 * When the backend offers watchpoints of any length and number (HVI_CAP_WATCH_RANGE: QEMU under
 * TCG, whose gdbstub watchpoints are software ones: only writes to the watched pages take QEMU's
 * slow path), every protected memory region gets one write hook: kernel text, kernel rodata
 * (which holds the syscall tables and the vDSO image: they are named by their own, smaller
 * region), the IDT through both linear addresses the kernel has for it (the read-only alias the
 * IDTR points at and `idt_table`), the vDSO when it lies outside rodata, and each live module's
 * text (hooked when the module is first seen live, unhooked when it leaves the list).
 *
 * A hit arrives right after the write, per changed run (src/hook/watch.c). The run is checked
 * against the region's own shadow (the timer check's reference): a run equal to it is old news
 * (already handled by the timer), a legitimate code-patching shape is accepted, and anything else
 * is an alert naming the writing instruction (decoded backwards from the stop RIP), its symbol,
 * module and the task; in deny mode the hook layer writes the old bytes back before the vCPU
 * runs on. The timer checks stay as the backstop for writes through other aliases (the direct
 * map) and for backends without the capability; because a hooked write is undone (deny) or taken
 * into the region's shadow (log-only) at once, the timer never reports it a second time.
 *
 * A module's text can be freed and its pages reused (the next module load writes there) before
 * the timer notices the module is gone: a hit is only an alert while the module is still on the
 * list, live, at the same base; otherwise its hook and region are dropped silently.
 */
#include <stdio.h>
#include <string.h>

#include "guest/linux/lix_protect.h"
#include "hvi/hook.h"
#include "hvi/mem.h"

static bool deny_mode(const hvi_engine *e)
{
    return !(e->options & HVI_OPT_LOG_ONLY);
}

static struct lixp_region *region_of(struct lixp_state *s, const struct lixp_rhook *rh)
{
    for (uint32_t i = 0; i < s->nregions; i++)
        if (s->regions[i].gva == rh->region_gva && s->regions[i].module == rh->module &&
            s->regions[i].len == rh->len)
            return &s->regions[i];
    return NULL;
}

/* The smallest region enabled now that holds [a, a+n): it names the object (a syscall table
 * inside rodata is reported as the table). */
static struct lixp_region *owner_of(hvi_engine *e, struct lixp_state *s, uint64_t a, uint32_t n)
{
    struct lixp_region *best = NULL;
    for (uint32_t i = 0; i < s->nregions; i++) {
        struct lixp_region *r = &s->regions[i];
        if ((e->options & r->opt) && a >= r->gva && a + n <= r->gva + r->len &&
            (!best || r->len < best->len))
            best = r;
    }
    return best;
}

struct mod_check {
    uint64_t addr, base;
    bool live;
};

static bool mod_check_cb(const struct lix_module *m, void *ctx)
{
    struct mod_check *c = ctx;
    if (m->addr != c->addr)
        return true;
    c->live = m->state == 0 && m->core_base == c->base; /* MODULE_STATE_LIVE */
    return false;
}

/* Take the current bytes of [a, a+n) into every region shadow covering them. */
static void shadows_take(struct lixp_state *s, uint64_t a, uint32_t n)
{
    for (uint32_t i = 0; i < s->nregions; i++) {
        struct lixp_region *r = &s->regions[i];
        uint64_t lo = a > r->gva ? a : r->gva;
        uint64_t hi = a + n < r->gva + r->len ? a + n : r->gva + r->len;
        if (lo < hi)
            (void)lix_read(s->k, lo, r->shadow + (lo - r->gva), (size_t)(hi - lo));
    }
}

static void hook_drop(hvi_engine *e, struct lixp_rhook *rh)
{
    rh->s->hook_stops_gone += hvi_hook_hits(rh->hook);
    if (rh->hook) /* gone from the hook layer whatever it returns (a stale one is retried) */
        (void)hvi_hook_remove(e, rh->hook);
    rh->hook = NULL;
    rh->used = false;
    rh->s->nrhooks--;
}

static void raise_hook_alert(hvi_engine *e, struct lixp_state *s, const struct lixp_rhook *rh,
                             const struct lixp_region *obj, const hvi_hook_access *acc, uint64_t at,
                             uint32_t first, uint32_t last, const uint8_t *now, const uint8_t *old,
                             bool deny)
{
    hvi_alert a;
    uint32_t width = last - first + 1, w = width < 8 ? width : 8;
    hvi_alert_init(&a, HVI_ALERT_INTEGRITY, acc->vcpu);
    a.action = deny ? HVI_ALERT_DENIED : HVI_ALERT_LOGGED;
    a.gva = at;
    (void)hvi_gva_to_gpa(e, 0, at, &a.gpa);
    a.width = width;
    memcpy(&a.old_value, old, w);
    memcpy(&a.new_value, now, w);
    hvi_strlcpy(a.object, obj->object, sizeof(a.object));
    uint64_t rip = acc->writer_rip ? acc->writer_rip : acc->rip;
    if (acc->writer_rip && acc->insn)
        hvi_strlcpy(a.insn, acc->insn->text, sizeof(a.insn));
    char note[192], where[96] = "?", tsym[96] = "", tmod[64] = "", tgt[200] = "";
    lixp_writer(s, acc->regs, rip, &a, note, sizeof(note));
    hvi_alert tmp;
    memset(&tmp, 0, sizeof(tmp));
    lixp_alert_writer(s, &tmp, at);
    if (tmp.symbol[0])
        hvi_strlcpy(where, tmp.symbol, sizeof(where));
    /* a pointer-sized change (syscall table entry, IDT gate): where it points now */
    uint64_t ptr = 0;
    if (!strcmp(obj->object, "idt")) { /* the gate holding the first changed byte */
        uint8_t g[16];
        if (lix_read(s->k, at & ~15ull, g, sizeof(g)) == HVI_OK) {
            uint16_t lo, mid;
            uint32_t hi;
            memcpy(&lo, g, 2);
            memcpy(&mid, g + 6, 2);
            memcpy(&hi, g + 8, 4);
            ptr = lo | (uint64_t)mid << 16 | (uint64_t)hi << 32;
        }
    } else if (!(at & 7) && width <= 8) {
        memcpy(&ptr, now, 8);
    }
    if (lix_is_kptr(ptr)) {
        memset(&tmp, 0, sizeof(tmp));
        lixp_alert_writer(s, &tmp, ptr);
        hvi_strlcpy(tsym, tmp.symbol, sizeof(tsym));
        hvi_strlcpy(tmod, tmp.module, sizeof(tmod));
        if (tmod[0])
            snprintf(tgt, sizeof(tgt), "; now points to %s (%s)", tsym[0] ? tsym : "?", tmod);
    }
    char d[1024];
    snprintf(d, sizeof(d), "%s written at %s (%u bytes)%s%s by RIP 0x%llx %s%s%s; write hook: %s",
             obj->object, where, width, rh->via ? " through " : "", rh->via ? rh->via : "",
             (unsigned long long)rip, a.symbol[0] ? a.symbol : "?", note, tgt,
             acc->writer_rip ? "the writing instruction (decoded back from the stop RIP)"
                             : "RIP where the vCPU stopped, after the write");
    hvi_strlcpy(a.detail, d, sizeof(a.detail));
    hvi_alert_emit(e, &a);
    s->stats.violations++;
    s->stats.watch_hits++;
}

static uint32_t rhook_cb(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc, void *ctx)
{
    struct lixp_rhook *rh = ctx;
    struct lixp_state *s = rh->s;
    (void)hook;
    if (e->detaching || !rh->used)
        return HVI_ACTION_ALLOW;
    struct lixp_region *r = region_of(s, rh);
    if (!r || acc->gva < rh->hook_gva || acc->gva - rh->hook_gva >= r->len)
        return HVI_ACTION_ALLOW;
    if (rh->module) { /* still this module's text, or freed and reused? */
        struct mod_check mc = {.addr = rh->module, .base = r->gva};
        if (lix_module_walk(s->k, mod_check_cb, &mc) != HVI_OK || !mc.live) {
            hvi_log(e, 3, "linux protect: write into %s after the module left: unhooked",
                    r->object);
            lixp_region_drop(s, (uint32_t)(r - s->regions));
            hook_drop(e, rh);
            return HVI_ACTION_ALLOW;
        }
    }
    uint32_t off = (uint32_t)(acc->gva - rh->hook_gva);
    uint32_t n = acc->size <= r->len - off ? acc->size : r->len - off;
    /* the run's bytes now, compared with the region's reference (s->buf mirrors the region) */
    uint8_t *now = s->buf;
    uint32_t lo = off >= 16 ? off - 16 : 0, hi = off + n + 16 <= r->len ? off + n + 16 : r->len;
    if (lix_read(s->k, r->gva + lo, now + lo, hi - lo) != HVI_OK)
        return HVI_ACTION_ALLOW;
    uint32_t first = off, last = off + n - 1;
    while (first <= last && now[first] == r->shadow[first])
        first++;
    if (first > last)
        return HVI_ACTION_ALLOW; /* old news: the timer check already took it */
    while (now[last] == r->shadow[last])
        last--;
    uint64_t at = r->gva + first;
    uint32_t width = last - first + 1;
    if (s->msr_armed && at >= s->msr_stub && at + width <= s->msr_stub + 2)
        return HVI_ACTION_ALLOW; /* the LSTAR agent's own stub */
    struct lixp_region *obj = owner_of(e, s, at, width);
    if (!obj)
        return HVI_ACTION_ALLOW; /* that protection is off: not reported (as the timer) */
    if (r->code && lixp_legit_code_patch(s->k, r, now, first, last)) {
        shadows_take(s, at, width); /* the kernel's own patching (jump labels, ftrace) */
        return HVI_ACTION_ALLOW;
    }
    bool deny = deny_mode(e);
    raise_hook_alert(e, s, rh, obj, acc, at, first, last, now + first, r->shadow + first, deny);
    if (deny) {
        s->stats.restored++;
        return HVI_ACTION_DENY; /* the hook layer writes the old bytes back */
    }
    shadows_take(s, at, width); /* logged: the timer must not report it again */
    return HVI_ACTION_ALLOW;
}

static bool add_hook(hvi_engine *e, struct lixp_state *s, const struct lixp_region *r,
                     uint64_t hook_gva, const char *via)
{
    struct lixp_rhook *rh = NULL;
    for (uint32_t i = 0; i < LIXP_MAX_RHOOKS && !rh; i++)
        if (!s->rhooks[i].used)
            rh = &s->rhooks[i];
    if (!rh)
        return false;
    *rh = (struct lixp_rhook){.s = s,
                              .hook_gva = hook_gva,
                              .region_gva = r->gva,
                              .len = r->len,
                              .module = r->module,
                              .via = via,
                              .used = true};
    hvi_status st = hvi_hook_watch_range_add(e, 0, hook_gva, r->len, rhook_cb, rh, &rh->hook);
    if (st != HVI_OK) {
        hvi_log(e, 2, "linux protect: no write hook on %s at 0x%llx (+%u): %s; timer only",
                r->object, (unsigned long long)hook_gva, r->len, hvi_last_error(e));
        rh->used = false;
        return false;
    }
    hvi_hook_set_owned(rh->hook, true);
    s->nrhooks++;
    return true;
}

/* Regions inside another region that gets a hook need none of their own. */
static bool inside_hooked(hvi_engine *e, const struct lixp_state *s, const struct lixp_region *r)
{
    for (uint32_t i = 0; i < s->nregions; i++) {
        const struct lixp_region *o = &s->regions[i];
        if (o != r && (e->options & o->opt) && o->len > r->len && r->gva >= o->gva &&
            r->gva + r->len <= o->gva + o->len)
            return true;
    }
    return false;
}

static bool has_hook(const struct lixp_state *s, const struct lixp_region *r, uint64_t hook_gva)
{
    for (uint32_t i = 0; i < LIXP_MAX_RHOOKS; i++) {
        const struct lixp_rhook *rh = &s->rhooks[i];
        if (rh->used && rh->hook_gva == hook_gva && rh->region_gva == r->gva && rh->len == r->len &&
            rh->module == r->module)
            return true;
    }
    return false;
}

void lixp_rhook_region(hvi_engine *e, struct lixp_state *s, const struct lixp_region *r)
{
    if (!s->rhooks_on || !(e->options & r->opt) || inside_hooked(e, s, r))
        return;
    if (!has_hook(s, r, r->gva))
        add_hook(e, s, r, r->gva, NULL);
    if (s->idt_alias && !strcmp(r->object, "idt") && !has_hook(s, r, s->idt_alias))
        add_hook(e, s, r, s->idt_alias, "the IDTR alias");
}

/* The hooks follow the options: a protection switched off loses its watchpoints (no cost for the
 * guest any more), switched on gets them back; a change made while it was off is found by the
 * timer check (the region's shadow stayed the reference), not by the new hook. */
static void rhooks_sync(hvi_engine *e, struct lixp_state *s)
{
    for (uint32_t i = 0; i < LIXP_MAX_RHOOKS; i++) {
        struct lixp_rhook *rh = &s->rhooks[i];
        const struct lixp_region *r = rh->used ? region_of(s, rh) : NULL;
        if (rh->used && (!r || !(e->options & r->opt)))
            hook_drop(e, rh);
    }
    for (uint32_t i = 0; i < s->nregions; i++)
        lixp_rhook_region(e, s, &s->regions[i]);
}

static void rhooks_options(hvi_engine *e, uint64_t old_opts, uint64_t new_opts, void *ctx)
{
    struct lixp_state *s = ctx;
    (void)old_opts, (void)new_opts;
    if (s && s->rhooks_on && !e->detaching && e->lixp == s)
        rhooks_sync(e, s);
}

bool lixp_rhooks_start(hvi_engine *e, struct lixp_state *s)
{
    if ((e->glue.caps & HVI_CAP_EPT) || !(e->glue.caps & HVI_CAP_WATCH_RANGE))
        return false; /* debug-register watchpoints: only the IDT gates (lix_protect_watch.c) */
    /* the alias the IDTR points at (CPU entry area: a read-only mapping of idt_table's page) */
    hvi_regs g;
    memset(&g, 0, sizeof(g));
    for (uint32_t i = 0; i < s->nregions; i++)
        if (!strcmp(s->regions[i].object, "idt") &&
            e->glue.get_regs(e->glue.ctx, 0, HVI_REGS_DTR, &g) == HVI_OK &&
            (g.valid & HVI_REGS_DTR) && lix_is_kptr(g.idtr_base) &&
            g.idtr_base != s->regions[i].gva && g.idtr_limit + 1u >= s->regions[i].len)
            s->idt_alias = g.idtr_base;
    if (hvi_engine_on_options(e, rhooks_options, s) != HVI_OK)
        return false;
    s->rhooks_on = true;
    rhooks_sync(e, s);
    hvi_log(e, 3, "linux protect: %u region write hooks", s->nrhooks);
    return true;
}

void lixp_rhooks_module_gone(hvi_engine *e, struct lixp_state *s, uint64_t module)
{
    for (uint32_t i = 0; i < LIXP_MAX_RHOOKS; i++)
        if (s->rhooks[i].used && s->rhooks[i].module == module)
            hook_drop(e, &s->rhooks[i]);
}

void lixp_rhooks_accept(hvi_engine *e, struct lixp_state *s, uint64_t gva, uint32_t len)
{
    for (uint32_t i = 0; i < LIXP_MAX_RHOOKS; i++) {
        struct lixp_rhook *rh = &s->rhooks[i];
        if (!rh->used || !rh->hook || gva >= rh->region_gva + rh->len ||
            rh->region_gva >= gva + len)
            continue;
        uint64_t lo = gva > rh->region_gva ? gva : rh->region_gva;
        uint64_t hi = gva + len < rh->region_gva + rh->len ? gva + len : rh->region_gva + rh->len;
        (void)hvi_hook_watch_accept(e, rh->hook, rh->hook_gva + (lo - rh->region_gva), hi - lo);
    }
}

void lixp_rhooks_stop(hvi_engine *e, struct lixp_state *s)
{
    for (uint32_t i = 0; i < LIXP_MAX_RHOOKS; i++)
        if (s->rhooks[i].used)
            hook_drop(e, &s->rhooks[i]);
    s->rhooks_on = false;
}

bool lixp_rhooks_defer(struct lixp_state *s, struct lixp_region *r, uint32_t off, uint32_t n)
{
    bool hooked = false;
    for (uint32_t i = 0; i < LIXP_MAX_RHOOKS && !hooked; i++) {
        const struct lixp_rhook *rh = &s->rhooks[i];
        hooked = rh->used && rh->hook && r->gva >= rh->region_gva &&
                 r->gva + r->len <= rh->region_gva + rh->len;
    }
    if (!hooked)
        return false;
    uint32_t first = off;
    while (first < off + n && s->buf[first] == r->shadow[first])
        first++;
    if (r->grace == r->gva + first) {
        r->grace = 0; /* still there a round later: the hook did not see it (another alias) */
        return false;
    }
    r->grace = r->gva + first;
    return true;
}

uint64_t lixp_rhooks_stops(const struct lixp_state *s)
{
    uint64_t n = s->hook_stops_gone;
    for (uint32_t i = 0; i < LIXP_MAX_RHOOKS; i++)
        if (s->rhooks[i].used)
            n += hvi_hook_hits(s->rhooks[i].hook);
    return n;
}
