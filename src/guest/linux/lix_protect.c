/*
 * hvi guest/linux — kernel protection by shadow comparison on the timer.
 *
 * Kernel text + rodata, the IDT, the syscall tables, the vDSO image and every module's text are
 * copied when protection starts and compared on every tick (the hook layer's write hooks are
 * the planned faster path; on QEMU/TCG only a few watchpoints are cheap, so big areas stay on
 * the timer anyway). A difference is an alert naming the first changed address, its symbol,
 * old/new bytes and, for a pointer-sized change, the symbol/module the new value points to;
 * in deny mode the bytes are written back from the shadow. CR0.WP / CR4.SMEP/SMAP are read from
 * every vCPU on every tick; in deny mode a cleared bit is set again on that vCPU. Legitimate kernel code patching (jump labels, ftrace) is recognized
 * by shape: a 2- or 5-byte NOP/JMP/CALL window becoming another one with a plausible target.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/linux/lix_protect.h"
#include "hvi/mem.h"

#define CR0_WP (1ull << 16)
#define CR4_SMEP (1ull << 20)
#define CR4_SMAP (1ull << 21)

static bool deny_mode(const hvi_engine *e)
{
    return !(e->options & HVI_OPT_LOG_ONLY);
}

struct mod_find {
    const struct lix_kernel *k;
    uint64_t addr, base;
    char name[64];
    bool init;
};

static bool mod_find_cb(const struct lix_module *m, void *ctx)
{
    struct mod_find *f = ctx;
    if (f->addr >= m->core_base && f->addr - m->core_base < m->core_size) {
        hvi_strlcpy(f->name, m->name, sizeof(f->name));
        f->base = m->core_base;
        return false;
    }
    /* the init layout (module_init code runs from there until the module is live) */
    const struct lix_offsets *o = &f->k->off;
    uint64_t base = 0;
    uint32_t size = 0;
    if (o->mod_init_layout &&
        lix_read_u64(f->k, m->addr + o->mod_init_layout + o->layout_base, &base) == HVI_OK &&
        lix_read_u32(f->k, m->addr + o->mod_init_layout + o->layout_size, &size) == HVI_OK &&
        lix_is_kptr(base) && size && size <= LIXP_MAX_REGION_LEN && f->addr >= base &&
        f->addr - base < size) {
        hvi_strlcpy(f->name, m->name, sizeof(f->name));
        f->base = base;
        f->init = true;
        return false;
    }
    return true;
}

/* Symbol and module owning `addr` ("kernel" inside the image). */
static void describe(const struct lix_kernel *k, uint64_t addr, char *sym, size_t slen, char *mod,
                     size_t mlen)
{
    const char *name = NULL;
    uint64_t off = 0;
    sym[0] = mod[0] = 0;
    if (addr >= k->image_start && addr < k->image_end) {
        hvi_strlcpy(mod, "kernel", mlen);
        if (lix_kallsyms_find(&k->ks, addr, &name, &off) == HVI_OK && name)
            snprintf(sym, slen, "%s+0x%llx", name, (unsigned long long)off);
        return;
    }
    struct mod_find f = {.k = k, .addr = addr};
    if (lix_module_walk(k, mod_find_cb, &f) == HVI_OK && f.name[0]) {
        hvi_strlcpy(mod, f.name, mlen);
        snprintf(sym, slen, "%s%s+0x%llx", f.name, f.init ? ".init" : "",
                 (unsigned long long)(addr - f.base));
    }
}

void lixp_alert_writer(struct lixp_state *s, hvi_alert *a, uint64_t addr)
{
    describe(s->k, addr, a->symbol, sizeof(a->symbol), a->module, sizeof(a->module));
}

void lixp_accept(hvi_engine *e, uint64_t gva, uint32_t len)
{
    struct lixp_state *s = e ? e->lixp : NULL;
    for (uint32_t i = 0; s && i < s->nregions; i++) {
        struct lixp_region *r = &s->regions[i];
        uint64_t a = gva > r->gva ? gva : r->gva;
        uint64_t b = gva + len < r->gva + r->len ? gva + len : r->gva + r->len;
        if (a < b)
            (void)lix_read(s->k, a, r->shadow + (a - r->gva), (size_t)(b - a));
    }
    if (s)
        lixp_rhooks_accept(e, s, gva, len);
}

static hvi_status sym_range(struct lix_kernel *k, const char *start, const char *end,
                            uint64_t *gva, uint32_t *len)
{
    uint64_t a = 0, b = 0;
    hvi_status st = lix_kallsyms_lookup(&k->ks, start, &a);
    if (st == HVI_OK)
        st = lix_kallsyms_lookup(&k->ks, end, &b);
    if (st != HVI_OK)
        return st;
    if (b <= a || b - a > LIXP_MAX_REGION_LEN)
        return HVI_E_RANGE;
    *gva = a;
    *len = (uint32_t)(b - a);
    return HVI_OK;
}

static struct lixp_region *region_add(hvi_engine *e, struct lixp_state *s, const char *object,
                                      uint64_t opt, uint64_t gva, uint32_t len, bool code)
{
    if (s->nregions >= LIXP_MAX_REGIONS || !len || len > LIXP_MAX_REGION_LEN)
        return NULL;
    uint8_t *sh = malloc(len);
    if (!sh)
        return NULL;
    if (lix_read(s->k, gva, sh, len) != HVI_OK) {
        hvi_log(e, 2, "linux protect: %s at 0x%llx (+%u) unreadable, not protected", object,
                (unsigned long long)gva, len);
        free(sh);
        return NULL;
    }
    struct lixp_region *r = &s->regions[s->nregions++];
    memset(r, 0, sizeof(*r));
    hvi_strlcpy(r->object, object, sizeof(r->object));
    r->opt = opt;
    r->gva = gva;
    r->len = len;
    r->shadow = sh;
    r->code = code;
    return r;
}

static void add_kernel_regions(hvi_engine *e, struct lixp_state *s)
{
    struct lix_kernel *k = s->k;
    uint64_t gva = 0, v = 0;
    uint32_t len = 0;
    if (sym_range(k, "_stext", "_etext", &gva, &len) == HVI_OK)
        region_add(e, s, "kernel-text", HVI_OPT_KM_TEXT, gva, len, true);
    if (sym_range(k, "__start_rodata", "__end_rodata", &gva, &len) == HVI_OK)
        region_add(e, s, "kernel-rodata", HVI_OPT_KM_TEXT, gva, len, false);
    hvi_regs dtr;
    memset(&dtr, 0, sizeof(dtr));
    if (lix_kallsyms_lookup(&k->ks, "idt_table", &gva) == HVI_OK)
        region_add(e, s, "idt", HVI_OPT_KM_IDT, gva, 256 * 16, false);
    else if (e->glue.get_regs(e->glue.ctx, 0, HVI_REGS_DTR, &dtr) == HVI_OK &&
             (dtr.valid & HVI_REGS_DTR) && lix_is_kptr(dtr.idtr_base) && dtr.idtr_limit >= 0xfff)
        region_add(e, s, "idt", HVI_OPT_KM_IDT, dtr.idtr_base, 256 * 16, false); /* the alias */
    if (sym_range(k, "sys_call_table", "sys_call_table", &gva, &len) != HVI_OK &&
        lix_kallsyms_lookup(&k->ks, "sys_call_table", &gva) == HVI_OK) {
        /* the table ends where the next symbol starts; bounded */
        const char *n = NULL;
        uint64_t off = 0;
        len = 8;
        while (len < 4096 * 8 && lix_kallsyms_find(&k->ks, gva + len, &n, &off) == HVI_OK &&
               off == len && n && !strcmp(n, "sys_call_table"))
            len += 8;
        region_add(e, s, "sys_call_table", HVI_OPT_KM_SYSCALL_TABLE, gva, len, false);
    }
    if (lix_kallsyms_lookup(&k->ks, "ia32_sys_call_table", &gva) == HVI_OK)
        region_add(e, s, "ia32_sys_call_table", HVI_OPT_KM_SYSCALL_TABLE, gva, 512 * 8, false);
    /* struct vdso_image { void *data; unsigned long size; ... } */
    if (lix_kallsyms_lookup(&k->ks, "vdso_image_64", &gva) == HVI_OK &&
        lix_read_u64(k, gva, &v) == HVI_OK && lix_is_kptr(v)) {
        uint64_t size = 0;
        if (lix_read_u64(k, gva + 8, &size) == HVI_OK && size && size <= (1u << 20))
            region_add(e, s, "vdso", HVI_OPT_KM_VDSO, v, (uint32_t)size, true);
    }
}

static struct lixp_region *find_module_region(struct lixp_state *s, uint64_t mod)
{
    for (uint32_t i = 0; i < s->nregions; i++)
        if (s->regions[i].module == mod)
            return &s->regions[i];
    return NULL;
}

struct mod_sync {
    hvi_engine *e;
    struct lixp_state *s;
};

static bool mod_sync_cb(const struct lix_module *m, void *ctx)
{
    struct mod_sync *ms = ctx;
    struct lixp_region *r = find_module_region(ms->s, m->addr);
    /* MODULE_STATE_LIVE = 0: shadow a module once its init has run */
    if (!r && m->state == 0 && m->core_text_size && m->core_text_size <= m->core_size) {
        r = region_add(ms->e, ms->s, "module-text", HVI_OPT_KM_MODULES, m->core_base,
                       m->core_text_size, true);
        if (r) {
            r->module = m->addr;
            snprintf(r->object, sizeof(r->object), "module-text:%.18s", m->name);
            lixp_rhook_region(ms->e, ms->s, r);
        }
    }
    if (r)
        r->seen = true;
    return true;
}

void lixp_region_drop(struct lixp_state *s, uint32_t i)
{
    free(s->regions[i].shadow);
    s->regions[i] = s->regions[--s->nregions];
}

/* Follow the modules list: shadow new live modules, forget unloaded ones. */
static void sync_modules(hvi_engine *e, struct lixp_state *s)
{
    for (uint32_t i = 0; i < s->nregions; i++)
        s->regions[i].seen = false;
    struct mod_sync ms = {e, s};
    if (lix_module_walk(s->k, mod_sync_cb, &ms) != HVI_OK)
        return;
    for (uint32_t i = 0; i < s->nregions;) {
        if (s->regions[i].module && !s->regions[i].seen) {
            lixp_rhooks_module_gone(e, s, s->regions[i].module);
            lixp_region_drop(s, i);
        }
        else
            i++;
    }
}

/* Is w[0..n) a code-patching shape: NOP5, NOP2, JMP rel8/rel32 or CALL rel32? *target gets the
 * branch target (0 for a NOP). */
static bool patch_shape(const uint8_t *w, uint32_t n, uint64_t at, uint64_t *target)
{
    static const uint8_t nop5[5] = {0x0f, 0x1f, 0x44, 0x00, 0x00};
    *target = 0;
    if (n == 5 && !memcmp(w, nop5, 5))
        return true;
    if (n == 2 && w[0] == 0x66 && w[1] == 0x90)
        return true;
    if (n == 2 && w[0] == 0xeb) {
        *target = at + 2 + (uint64_t)(int64_t)(int8_t)w[1];
        return true;
    }
    if (n == 5 && (w[0] == 0xe9 || w[0] == 0xe8)) {
        int32_t rel;
        memcpy(&rel, w + 1, 4);
        *target = at + 5 + (uint64_t)(int64_t)rel;
        return true;
    }
    return false;
}

/* A CALL must land on a function start, a JMP inside the patched function. */
/* A CALL placed by ftrace at a function's fentry site (its first bytes: offset 0, or 4 after an
 * ENDBR64) into the module area but into no listed module: ftrace's per-ops trampoline, which
 * the kernel allocates there (module_alloc) for a kprobe on ftrace or a live patch. Seen on the
 * e2e guest: the attack modules' kprobe on kallsyms_lookup_name turned its NOP5 into
 * `call <module-area trampoline>` for the time of register/unregister_kprobe. A CALL into a
 * module's own memory stays an alert; a module_alloc'ed range of a module's making is the
 * unpacker's (its allocator is a module). */
static bool ftrace_trampoline_call(const struct lix_kernel *k, uint64_t at, uint64_t target)
{
    const char *fn = NULL;
    uint64_t foff = 0;
    if (target < 0xffffffffc0000000ull || target >= 0xffffffffff000000ull ||
        lix_kallsyms_find(&k->ks, at, &fn, &foff) != HVI_OK || (foff != 0 && foff != 4))
        return false;
    struct mod_find f = {.k = k, .addr = target};
    return lix_module_walk(k, mod_find_cb, &f) == HVI_OK && !f.name[0];
}

/* The first byte of a static-call trampoline (`__SCT__name`: `jmp rel32` to the current target,
 * or `ret; int3...` for none), which static_call_update() rewrites — e.g. every tracepoint's
 * `__SCT__tp_func_*` when a probe is attached (seen on the e2e guest when a kprobe event was
 * enabled: `__SCT__tp_func_sched_wakeup` and its neighbours changed). */
static bool static_call_site(const struct lix_kernel *k, uint64_t at)
{
    const char *fn = NULL;
    uint64_t foff = 0;
    return lix_kallsyms_find(&k->ks, at, &fn, &foff) == HVI_OK && fn && foff == 0 &&
           !strncmp(fn, "__SCT__", 7);
}

static bool target_ok(const struct lix_kernel *k, uint64_t at, const uint8_t *w, uint64_t target,
                      bool sct)
{
    const char *fn = NULL, *tn = NULL;
    uint64_t foff = 0, toff = 0;
    if (!target)
        return true;
    if (target < k->image_start || target >= k->image_end) {
        if (sct) { /* a static call may target a module's function (a module's probe) */
            struct mod_find f = {.k = k, .addr = target};
            return w[0] == 0xe9 && lix_module_walk(k, mod_find_cb, &f) == HVI_OK && f.name[0];
        }
        return w[0] == 0xe8 && at >= k->image_start && at < k->image_end &&
               ftrace_trampoline_call(k, at, target);
    }
    if (lix_kallsyms_find(&k->ks, target, &tn, &toff) != HVI_OK)
        return false;
    if (w[0] == 0xe8 || sct) /* a static call jumps to a function start */
        return toff == 0;
    return lix_kallsyms_find(&k->ks, at, &fn, &foff) == HVI_OK && fn == tn;
}

/* `ret; int3 x4`: a static-call trampoline with no target */
static bool ret_shape(const uint8_t *w, uint32_t n)
{
    static const uint8_t ret5[5] = {0xc3, 0xcc, 0xcc, 0xcc, 0xcc};
    return n == 5 && !memcmp(w, ret5, 5);
}

/* A legitimate patch window of n bytes at st (shape before and after, branch target). */
static bool patch_window(const struct lix_kernel *k, const struct lixp_region *r,
                         const uint8_t *now, uint32_t st, uint32_t n)
{
    uint64_t at = r->gva + st, t_old = 0, t_new = 0;
    if (st + n > r->len)
        return false;
    bool sct = n == 5 && static_call_site(k, at);
    return (patch_shape(r->shadow + st, n, at, &t_old) ||
            (sct && ret_shape(r->shadow + st, n))) &&
           (patch_shape(now + st, n, at, &t_new) || (sct && ret_shape(now + st, n))) &&
           target_ok(k, at, now + st, t_new, sct);
}

/* The changed bytes [first, last] of a code region are legitimate patch sites: every changed
 * byte lies in a 5- or 2-byte patch window, the windows not overlapping. Several sites can change
 * in one check interval and fall into one run (a static key flips all its sites: two JMP rel8 ->
 * NOP2 side by side in urandom_read_iter when the CRNG becomes ready, seen in the soak test). */
bool lixp_legit_code_patch(const struct lix_kernel *k, const struct lixp_region *r,
                           const uint8_t *now, uint32_t first, uint32_t last)
{
    static const uint32_t sizes[2] = {5, 2};
    uint32_t free_from = 0; /* the next window starts here or later */
    for (uint32_t i = first; i <= last;) {
        if (now[i] == r->shadow[i]) {
            i++;
            continue;
        }
        bool found = false;
        for (int z = 0; z < 2 && !found; z++) {
            uint32_t n = sizes[z];
            uint32_t lo = i + 1 >= n ? i + 1 - n : 0;
            if (lo < free_from)
                lo = free_from;
            for (uint32_t st = lo; st <= i && !found; st++)
                if (patch_window(k, r, now, st, n)) {
                    found = true;
                    free_from = st + n;
                    i = st + n;
                }
        }
        if (!found)
            return false;
    }
    return true;
}

static void raise_mem_alert(hvi_engine *e, struct lixp_state *s, const struct lixp_region *r,
                            const uint8_t *now, uint32_t first, uint32_t last, bool denied)
{
    hvi_alert a;
    uint32_t w = last - first + 1 < 8 ? last - first + 1 : 8;
    uint64_t addr = r->gva + first;
    hvi_alert_init(&a, HVI_ALERT_INTEGRITY, e->current_vcpu);
    a.action = denied ? HVI_ALERT_DENIED : HVI_ALERT_LOGGED;
    a.gva = addr;
    a.width = last - first + 1;
    memcpy(&a.old_value, r->shadow + first, w);
    memcpy(&a.new_value, now + first, w);
    hvi_strlcpy(a.object, r->object, sizeof(a.object));
    a.pid = -1;
    char where[96], wmod[64], tsym[96] = "", tmod[64] = "";
    describe(s->k, addr, where, sizeof(where), wmod, sizeof(wmod));
    /* an aligned pointer-sized change: what does it point to now (the likely writer) */
    uint64_t ptr = 0;
    if (!(first & 7) && last - first < 8 && first + 8 <= r->len) {
        memcpy(&ptr, now + first, 8);
        if (lix_is_kptr(ptr))
            describe(s->k, ptr, tsym, sizeof(tsym), tmod, sizeof(tmod));
    }
    if (!strcmp(r->object, "idt") && (first & ~15u) + 16 <= r->len) {
        /* a 64-bit gate: offset bits 0-15 at +0, 16-31 at +6, 32-63 at +8 */
        const uint8_t *gt = now + (first & ~15u);
        uint16_t lo, mid;
        uint32_t hi;
        memcpy(&lo, gt, 2);
        memcpy(&mid, gt + 6, 2);
        memcpy(&hi, gt + 8, 4);
        ptr = lo | (uint64_t)mid << 16 | (uint64_t)hi << 32;
        describe(s->k, ptr, tsym, sizeof(tsym), tmod, sizeof(tmod));
    }
    if (tmod[0]) {
        hvi_strlcpy(a.symbol, tsym, sizeof(a.symbol));
        hvi_strlcpy(a.module, tmod, sizeof(a.module));
    }
    snprintf(a.detail, sizeof(a.detail),
             "%s changed at %s (%u bytes)%s%s; writer RIP unknown (timer check)", r->object,
             where[0] ? where : "?", a.width, tmod[0] ? "; now points into " : "", tmod);
    hvi_alert_emit(e, &a);
    s->stats.violations++;
    s->found++;
}

/* A change inside a smaller, enabled region (sys_call_table inside rodata) is that region's. */
static bool covered_elsewhere(const hvi_engine *e, const struct lixp_state *s,
                              const struct lixp_region *r, uint32_t first, uint32_t last)
{
    uint64_t a = r->gva + first, b = r->gva + last;
    for (uint32_t i = 0; i < s->nregions; i++) {
        const struct lixp_region *o = &s->regions[i];
        if (o != r && o->len < r->len && (e->options & o->opt) && a >= o->gva &&
            b < o->gva + o->len)
            return true;
    }
    return false;
}

/* Compare [off, off+n) of one region with its shadow; alert (and restore in deny mode) each
 * changed run. */
static void check_slice(hvi_engine *e, struct lixp_state *s, struct lixp_region *r, uint32_t off,
                        uint32_t n)
{
    if (lix_read(s->k, r->gva + off, s->buf + off, n) != HVI_OK)
        return;
    s->stats.bytes_compared += n;
    if (!memcmp(s->buf + off, r->shadow + off, n)) {
        if (r->grace >= r->gva + off && r->grace < r->gva + off + n)
            r->grace = 0; /* what was left to a hook is gone: the next sighting is new */
        return;
    }
    if (lixp_rhooks_defer(s, r, off, n))
        return; /* a write hook's stop may still be on its way: its verdict first */
    uint32_t reported = 0, end = off + n;
    for (uint32_t i = off; i < end && reported < LIXP_MAX_DIFFS_PER_TICK;) {
        if (s->buf[i] == r->shadow[i]) {
            i++;
            continue;
        }
        uint32_t first = i, last = i;
        /* a run: changed bytes separated by fewer than 8 equal ones */
        for (uint32_t j = i + 1; j < end && j - last <= 8; j++)
            if (s->buf[j] != r->shadow[j])
                last = j;
        i = last + 1;
        if (s->msr_armed && r->gva + first >= s->msr_stub && r->gva + last < s->msr_stub + 2)
            continue; /* the LSTAR agent's stub, put back when it completes */
        if (covered_elsewhere(e, s, r, first, last) ||
            (r->code && lixp_legit_code_patch(s->k, r, s->buf, first, last))) {
            memcpy(r->shadow + first, s->buf + first, last - first + 1);
            lixp_rhooks_accept(e, s, r->gva + first, last - first + 1);
            continue;
        }
        bool denied = false;
        if (deny_mode(e) && hvi_gva_write(e, 0, r->gva + first, r->shadow + first,
                                           last - first + 1) == HVI_OK) {
            denied = true;
            s->stats.restored++;
            if (r->code) /* a TCG backend would keep running translations of the patch */
                hvi_code_written(e, r->gva + first, r->shadow + first, last - first + 1);
        }
        raise_mem_alert(e, s, r, s->buf, first, last, denied);
        if (!denied) {
            memcpy(r->shadow + first, s->buf + first, last - first + 1);
            lixp_rhooks_accept(e, s, r->gva + first, last - first + 1);
        }
        reported++;
    }
}

/* Small regions are compared whole on every tick; big ones (kernel text, rodata) a slice of
 * LIXP_TICK_SLICE per tick, round robin, so a round stays cheap for the host (and the guest
 * sharing its CPUs); the detection latency for them is len / LIXP_TICK_SLICE ticks.
 * Consecutive slices overlap by 64 bytes, so a run cut at a slice end is finished by the next. */
static void check_region(hvi_engine *e, struct lixp_state *s, struct lixp_region *r)
{
    if (r->len <= LIXP_TICK_SLICE) {
        check_slice(e, s, r, 0, r->len);
        return;
    }
    if (r->cursor >= r->len)
        r->cursor = 0;
    uint32_t n = r->len - r->cursor < LIXP_TICK_SLICE ? r->len - r->cursor : LIXP_TICK_SLICE;
    check_slice(e, s, r, r->cursor, n);
    r->cursor = r->cursor + n >= r->len ? 0 : r->cursor + n - 64;
}

#define RFLAGS_IF (1ull << 9)

enum cr_how { CR_LOGGED, CR_DENIED, CR_DENY_FAILED, CR_DEFERRED };

static void cr_alert(hvi_engine *e, struct lixp_state *s, uint32_t vcpu, const char *obj,
                     uint64_t old, uint64_t now, const char *what, enum cr_how how)
{
    static const char *const note[] = {
        [CR_LOGGED] = "",
        [CR_DENIED] = ", set again on the vCPU",
        [CR_DENY_FAILED] = ", could not be set again (register write failed)",
        [CR_DEFERRED] = ", not set again yet: the vCPU runs in kernel mode with interrupts off "
                        "(a short write window; setting it now would fault the writer), "
                        "retried on the next tick"};
    hvi_alert a;
    hvi_alert_init(&a, HVI_ALERT_CR, vcpu);
    a.action = how == CR_DENIED ? HVI_ALERT_DENIED : HVI_ALERT_LOGGED;
    a.old_value = old;
    a.new_value = now;
    a.pid = -1;
    hvi_strlcpy(a.object, obj, sizeof(a.object));
    snprintf(a.detail, sizeof(a.detail),
             "%s cleared on vCPU %u%s; writer RIP unknown (registers read on the timer)", what,
             vcpu, note[how]);
    hvi_alert_emit(e, &a);
    s->stats.violations++;
    s->found++;
}

/* In deny mode a protected bit found clear is set again on that vCPU. The read and the write
 * happen within one pause of the guest, so the other control registers written back with it
 * (a register write sets CR0, CR2, CR3, CR4 and CR8 together) are the values of that stop: a
 * CR3 switched in between would otherwise be undone. The write is read back to confirm. */
static bool cr_restore(hvi_engine *e, uint32_t v, const hvi_regs *now, uint64_t cr0, uint64_t cr4)
{
    const hvi_glue *g = &e->glue;
    hvi_regs w = *now, back;
    w.cr0 = cr0;
    w.cr4 = cr4;
    memset(&back, 0, sizeof(back));
    return g->set_regs(g->ctx, v, HVI_REGS_CR, &w) == HVI_OK &&
           g->get_regs(g->ctx, v, HVI_REGS_CR, &back) == HVI_OK && back.cr0 == cr0 &&
           back.cr4 == cr4;
}

static void cr_report(hvi_engine *e, struct lixp_state *s, uint32_t v, const hvi_regs *r,
                      uint64_t lost0, uint64_t lost4, enum cr_how how)
{
    if (lost0)
        cr_alert(e, s, v, "cr0.wp", s->cr0[v], r->cr0, "CR0.WP", how);
    if (lost4 & CR4_SMEP)
        cr_alert(e, s, v, "cr4.smep", s->cr4[v], r->cr4, "CR4.SMEP", how);
    if (lost4 & CR4_SMAP)
        cr_alert(e, s, v, "cr4.smap", s->cr4[v], r->cr4, "CR4.SMAP", how);
}

static void check_cr(hvi_engine *e, struct lixp_state *s)
{
    const hvi_glue *g = &e->glue;
    uint32_t n = 0;
    if (!g->vcpu_count || g->vcpu_count(g->ctx, &n) != HVI_OK)
        return;
    bool deny = deny_mode(e), can_write = deny && (g->caps & HVI_CAP_REGS_WRITE) &&
                                        g->set_regs && g->pause && g->resume;
    bool paused = can_write && g->pause(g->ctx) == HVI_OK;
    for (uint32_t v = 0; v < n && v < LIXP_MAX_VCPUS; v++) {
        hvi_regs r;
        memset(&r, 0, sizeof(r));
        if (g->get_regs(g->ctx, v, HVI_REGS_CR | HVI_REGS_GPR | HVI_REGS_SEG, &r) != HVI_OK ||
            !(r.valid & HVI_REGS_CR))
            continue;
        if (!s->cr_known[v]) {
            /* Linux always runs with CR0.WP set: a clear bit at start is already a violation */
            s->cr0[v] = r.cr0 | CR0_WP;
            s->cr4[v] = r.cr4;
            s->cr_known[v] = true;
        }
        /* the bits protected at start (or after the last legitimate change) and now clear */
        uint64_t lost0 = s->cr0[v] & CR0_WP & ~r.cr0;
        uint64_t lost4 = s->cr4[v] & (CR4_SMEP | CR4_SMAP) & ~r.cr4;
        if (!lost0 && !lost4) {
            s->cr_deferred[v] = false;
            s->cr0[v] = r.cr0;
            s->cr4[v] = r.cr4;
            continue;
        }
        /* Kernel mode with interrupts off: most likely inside the clearer's own short window
         * (clear WP, store to read-only memory, set WP again, with interrupts disabled).
         * Setting the bit there faults the pending store: an oops in the guest, seen in the
         * e2e test when a tick met a module's poke stopped at a watchpoint. Such a window
         * closes by itself; a bit left clear is met with interrupts on at a later tick. */
        if (paused && (r.valid & HVI_REGS_GPR) && (r.valid & HVI_REGS_SEG) &&
            (r.seg[HVI_CS].selector & 3) == 0 && !(r.rflags & RFLAGS_IF)) {
            if (!s->cr_deferred[v])
                cr_report(e, s, v, &r, lost0, lost4, CR_DEFERRED);
            s->cr_deferred[v] = true;
            continue; /* the reference keeps the bits: judged again next tick */
        }
        s->cr_deferred[v] = false;
        bool denied = paused && cr_restore(e, v, &r, r.cr0 | lost0, r.cr4 | lost4);
        if (denied)
            s->stats.restored++;
        cr_report(e, s, v, &r, lost0, lost4,
                  denied ? CR_DENIED : deny ? CR_DENY_FAILED : CR_LOGGED);
        /* logged: the clear bit is the new state (alert on the next transition only) */
        s->cr0[v] = denied ? r.cr0 | lost0 : r.cr0;
        s->cr4[v] = denied ? r.cr4 | lost4 : r.cr4;
    }
    if (paused)
        g->resume(g->ctx);
}

static void state_free(hvi_engine *e, void *ctx)
{
    struct lixp_state *s = ctx;
    (void)e;
    if (!s)
        return;
    for (uint32_t i = 0; i < s->nregions; i++)
        free(s->regions[i].shadow);
    lixp_views_free(s);
    lixp_unpack_free(s);
    free(s->buf);
    free(s);
    if (e && e->lixp == s)
        e->lixp = NULL;
}

size_t hvi_linux_protect_check(hvi_engine *e)
{
    struct lixp_state *s = e ? e->lixp : NULL;
    if (!s || e->detaching)
        return 0;
    uint64_t t0 = hvi_now_ns(), o = e->options;
    s->found = 0;
    s->stats.bytes_compared = 0;
    if (o & HVI_OPT_KM_MODULES)
        sync_modules(e, s);
    for (uint32_t i = 0; i < s->nregions; i++)
        if (o & s->regions[i].opt)
            check_region(e, s, &s->regions[i]);
    if (o & HVI_OPT_KM_CR)
        check_cr(e, s);
    if (o & HVI_OPT_KM_MSR)
        lixp_check_msr(e, s);
    if (o & HVI_OPT_CREDS)
        lixp_check_creds(e, s);
    if (o & HVI_OPT_KM_UNPACK)
        lixp_check_unpack(e, s);
    if (o & HVI_OPT_INTEGRITY) {
        lixp_check_hidden_modules(e, s);
        lixp_check_hidden_tasks(e, s);
    }
    s->stats.checks++;
    s->stats.regions = s->nregions;
    s->stats.last_check_ns = hvi_now_ns() - t0;
    return s->found;
}

static void protect_tick(hvi_engine *e, void *ctx)
{
    (void)ctx;
    hvi_linux_protect_check(e);
}

/* Only the LSTAR agent ever places something in the guest (2 bytes and a breakpoint, for the
 * time of one rdmsr): undo it if armed (HVI_E_BUSY until vCPU 0 is back at it); remove the IDT write hooks (watchpoints, nothing in
 * guest memory); then the checks stop. */
static hvi_status protect_detach(hvi_engine *e, void *ctx)
{
    struct lixp_state *s = ctx;
    if (s) {
        if (lixp_msr_detach(e, s) == HVI_E_BUSY)
            return HVI_E_BUSY; /* vCPU 0 is away from the LSTAR agent's stub: retried */
        lixp_watch_stop(e, s);
        lixp_rhooks_stop(e, s);
    }
    return HVI_OK;
}

hvi_status hvi_linux_protect_start(hvi_engine *e)
{
    if (!e)
        return HVI_E_INVAL;
    if (e->lixp)
        return HVI_OK;
    struct lix_kernel *k = lix_get(e);
    if (!k)
        return hvi_fail(e, HVI_E_STATE, "linux protect: no Linux kernel found on this guest");
    struct lixp_state *s = calloc(1, sizeof(*s));
    if (!s || !(s->buf = malloc(LIXP_MAX_REGION_LEN))) {
        free(s);
        return hvi_fail(e, HVI_E_NOMEM, "linux protect: out of memory");
    }
    s->k = k;
    hvi_status st = hvi_engine_on_free(e, state_free, s);
    if (st != HVI_OK) {
        free(s->buf);
        free(s);
        return hvi_fail(e, st, "linux protect: engine cleanup table full");
    }
    e->lixp = s;
    add_kernel_regions(e, s);
    sync_modules(e, s);
    if (!lixp_rhooks_start(e, s)) /* whole regions; else a few IDT gates */
        lixp_watch_start(e, s);
    s->stats.watches = s->nwatch + s->nrhooks;
    if ((st = hvi_engine_add_timer(e, protect_tick, s)) != HVI_OK ||
        (st = hvi_engine_on_detach(e, protect_detach, s)) != HVI_OK)
        return hvi_fail(e, st, "linux protect: engine timer/detach table full");
    /* first round takes the cross-view shadows (credentials, task and module sets) */
    uint64_t saved = e->options;
    e->options &= ~(uint64_t)(HVI_OPT_KM_CR | HVI_OPT_KM_MSR);
    hvi_linux_protect_check(e);
    e->options = saved;
    hvi_log(e, 3, "linux protect: %u regions shadowed", s->nregions);
    return HVI_OK;
}

hvi_status hvi_linux_protect_stats_get(hvi_engine *e, hvi_linux_protect_stats *out)
{
    if (!e || !out)
        return HVI_E_INVAL;
    if (!e->lixp)
        return HVI_E_STATE;
    *out = e->lixp->stats;
    out->hook_stops = lixp_rhooks_stops(e->lixp);
    return HVI_OK;
}
