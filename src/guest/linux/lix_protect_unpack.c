/*
 * hvi guest/linux — exec-after-write in kernel memory ("unpacker") without EPT.
 *
 * With EPT the engine would take the page's execute right away and see the first fetch. QEMU
 * gives no execute hooks, so this checks what can be checked honestly on the timer: the
 * kernel's own page tables. Every round walks the kernel CR3's tables over the vmalloc area
 * (vmalloc_base, KASLR'd) and the module area, and keeps, per present 4 KiB/2 MiB leaf, whether
 * it was non-executable (with a hash of its content when first seen) or executable. A leaf
 * that is executable now and was not in the previous round is judged:
 *   - inside a listed module's text (core or init layout): the module loader's work, accepted;
 *   - inside a listed module's layout but not its text: module data made executable: alert;
 *   - elsewhere in the module area: a module_alloc() user; accepted when the range was
 *     allocated from the kernel image (BPF JIT, kprobe slots, ftrace trampolines: the
 *     vm_struct's caller), an alert when a loaded module allocated it (module_alloc called
 *     through kallsyms and made executable, e.g. with set_memory_x);
 *   - in the vmalloc area: nothing in 6.1 maps vmalloc memory executable (module_alloc uses the
 *     module area): alert.
 * The alert (type unpack, logged, never denied: the guest's TLBs cannot be flushed from here)
 * names the page, whether its content changed since it was first seen non-executable (written,
 * then NX cleared), and the owner: for a vmalloc page the allocating code from the vm_struct
 * (vmap_area_list -> vmap_area.vm -> vm_struct.caller, CAMI extension fields) and its module.
 * The first round only takes the baseline. Executable leaves that go away are forgotten.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/linux/lix_protect.h"
#include "hvi/cami.h"
#include "hvi/mem.h"

#define PTE_P 1ull
#define PTE_PS (1ull << 7)
#define PTE_NX (1ull << 63)
#define PTE_ADDR 0x000ffffffffff000ull
#define MODULES_VADDR 0xffffffffc0000000ull /* __START_KERNEL_map + 1 GiB (KASLR kernels) */
#define MODULES_END 0xffffffffff000000ull
#define VMALLOC_4L (32ull << 40)            /* VMALLOC_SIZE_TB 32 (4-level) */
#define VMALLOC_5L (12800ull << 40)         /* 12800 TiB (5-level) */
#define UNPACK_MAX_TABLES 4096u             /* page-table pages read per round */
#define UNPACK_MAX_MODS 512u
#define UNPACK_MAX_VMAP 65536u

enum { XP_NX = 1, XP_X = 2 };

struct xpage {
    uint64_t va;            /* 0 = free slot */
    uint64_t hash;          /* content when first seen non-executable */
    uint32_t first_round;
    uint8_t state;
};

struct xmod {
    char name[57];
    uint64_t base[2];       /* core, init */
    uint32_t size[2], text[2];
};

struct lixp_unpack {
    struct xpage *tab, *next;  /* this round's table is built into `next` */
    uint32_t cap, used, next_used;
    uint32_t rounds;
    uint64_t vmalloc_lo, vmalloc_hi;
    struct xmod *mods;
    uint32_t nmods;
    uint32_t tables;           /* tables read this round */
    bool full;                 /* the table was full: some pages not tracked */
    /* vm_struct attribution (CAMI extension fields); valid when vmap_list != 0 */
    uint64_t vmap_list;
    uint32_t va_start, va_end, va_list, va_vm, vm_addr, vm_size, vm_caller;
};

static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static struct xpage *slot(struct xpage *t, uint32_t cap, uint64_t va)
{
    uint32_t i = (uint32_t)((va >> 12) * 0x9e3779b97f4a7c15ull >> 40) & (cap - 1);
    for (uint32_t n = 0; n < cap; n++, i = (i + 1) & (cap - 1))
        if (t[i].va == va || !t[i].va)
            return &t[i];
    return NULL;
}

/* ---- modules snapshot ---------------------------------------------------------------------- */

struct snap_ctx {
    const struct lix_kernel *k;
    struct lixp_unpack *u;
};

static bool snap_cb(const struct lix_module *m, void *ctx)
{
    struct snap_ctx *c = ctx;
    struct lixp_unpack *u = c->u;
    if (u->nmods >= UNPACK_MAX_MODS)
        return false;
    struct xmod *x = &u->mods[u->nmods++];
    memset(x, 0, sizeof(*x));
    hvi_strlcpy(x->name, m->name, sizeof(x->name));
    x->base[0] = m->core_base;
    x->size[0] = m->core_size;
    x->text[0] = m->core_text_size;
    const struct lix_offsets *o = &c->k->off;
    if (o->mod_init_layout) {
        uint64_t l = m->addr + o->mod_init_layout;
        if (lix_read_u64(c->k, l + o->layout_base, &x->base[1]) != HVI_OK ||
            lix_read_u32(c->k, l + o->layout_size, &x->size[1]) != HVI_OK ||
            lix_read_u32(c->k, l + o->layout_text_size, &x->text[1]) != HVI_OK)
            x->base[1] = 0, x->size[1] = 0, x->text[1] = 0;
    }
    return true;
}

/* Which module's layout holds va: *in_text tells whether it is in the text part. */
static const struct xmod *mod_of(const struct lixp_unpack *u, uint64_t va, uint64_t len,
                                 bool *in_text)
{
    for (uint32_t i = 0; i < u->nmods; i++)
        for (int l = 0; l < 2; l++) {
            const struct xmod *m = &u->mods[i];
            if (!m->base[l] || va < m->base[l] || va - m->base[l] >= m->size[l])
                continue;
            *in_text = va + len <= m->base[l] + m->text[l];
            return m;
        }
    *in_text = false;
    return NULL;
}

/* ---- vm_struct of a vmalloc address ---------------------------------------------------------- */

static void cami_vmap(hvi_engine *e, struct lixp_unpack *u, struct lix_kernel *k)
{
    hvi_cami *c = NULL;
    const hvi_cami_lix_entry *entry = NULL;
    char msg[128];
    if (!e->support || !e->support_len ||
        hvi_cami_open(e->support, e->support_len, &c, msg, sizeof(msg)) != HVI_OK)
        return;
    static const char *const f[7] = {"VmapAreaStartOffset", "VmapAreaEndOffset",
                                      "VmapAreaListOffset",  "VmapAreaVmOffset",
                                      "VmStructAddrOffset",  "VmStructSizeOffset",
                                      "VmStructCallerOffset"};
    uint32_t *dst[7] = {&u->va_start, &u->va_end, &u->va_list, &u->va_vm,
                        &u->vm_addr,  &u->vm_size, &u->vm_caller};
    bool ok = hvi_cami_lix_select(c, k->banner + strlen("Linux version "), &entry) == HVI_OK;
    for (int i = 0; ok && i < 7; i++)
        ok = hvi_cami_lix_field_by_name(entry, "Ungrouped", f[i], dst[i]) == HVI_OK &&
             *dst[i] < 4096;
    hvi_cami_close(c);
    /* fields the entry lacks read as 0: list, vm, end and caller cannot all sit at 0 */
    if (ok && u->va_list && u->va_vm && u->va_end && u->vm_caller && u->va_list != u->va_vm &&
        lix_kallsyms_lookup(&k->ks, "vmap_area_list", &u->vmap_list) != HVI_OK)
        u->vmap_list = 0;
    if (!ok || !u->va_list || !u->va_vm || !u->vm_caller)
        u->vmap_list = 0;
}

/* The code that allocated the vmalloc range holding va (vm_struct.caller), 0 if unknown. */
static uint64_t vmalloc_caller(const struct lix_kernel *k, const struct lixp_unpack *u,
                               uint64_t va, uint64_t *start, uint64_t *size)
{
    uint64_t head = u->vmap_list, node = 0;
    if (!head || lix_read_u64(k, head, &node) != HVI_OK)
        return 0;
    for (uint32_t n = 0; n < UNPACK_MAX_VMAP && node != head && lix_is_kptr(node); n++) {
        uint64_t area = node - u->va_list, s = 0, e = 0, vm = 0, caller = 0;
        if (lix_read_u64(k, area + u->va_start, &s) != HVI_OK ||
            lix_read_u64(k, area + u->va_end, &e) != HVI_OK)
            return 0;
        if (s > va)
            return 0; /* the list is sorted by address */
        if (va < e) {
            if (lix_read_u64(k, area + u->va_vm, &vm) != HVI_OK || !lix_is_kptr(vm) ||
                lix_read_u64(k, vm + u->vm_caller, &caller) != HVI_OK)
                return 0;
            *start = s;
            *size = e - s;
            return lix_is_kptr(caller) ? caller : 0;
        }
        if (lix_read_u64(k, node, &node) != HVI_OK)
            return 0;
    }
    return 0;
}

/* ---- the walk ---------------------------------------------------------------------------- */

struct walk {
    hvi_engine *e;
    struct lixp_state *s;
    struct lixp_unpack *u;
    uint64_t lo, hi;
    int top;                 /* 4 or 5 */
};

static void unpack_alert(struct walk *w, uint64_t va, uint64_t len, const struct xpage *old,
                         const uint8_t *page, const struct xmod *owner)
{
    struct lixp_state *s = w->s;
    struct lixp_unpack *u = w->u;
    hvi_alert a;
    char d[768], how[160], who[256] = "";
    hvi_alert_init(&a, HVI_ALERT_UNPACK, 0);
    a.action = HVI_ALERT_LOGGED;
    a.gva = va;
    a.width = (uint32_t)len;
    a.pid = -1;
    if (page)
        memcpy(&a.new_value, page, 8);
    bool vmalloc = va >= u->vmalloc_lo && va < u->vmalloc_hi;
    hvi_strlcpy(a.object, vmalloc ? "kernel-exec:vmalloc"
                          : owner ? "kernel-exec:module-data" : "kernel-exec:module-area",
                sizeof(a.object));
    if (old && (old->state & XP_NX) && page)
        snprintf(how, sizeof(how), "seen NX in round %u, content %s since, then NX cleared",
                 old->first_round,
                 fnv(page, HVI_PAGE_SIZE) != old->hash ? "written" : "unchanged");
    else
        snprintf(how, sizeof(how), "new and executable (written + NX cleared within a round)");
    if (owner) {
        hvi_strlcpy(a.module, owner->name, sizeof(a.module));
        snprintf(who, sizeof(who), "in module %s's data", owner->name);
    } else {
        uint64_t start = 0, size = 0, caller = vmalloc_caller(s->k, u, va, &start, &size);
        if (caller) {
            hvi_alert t;
            memset(&t, 0, sizeof(t));
            lixp_alert_writer(s, &t, caller);
            hvi_strlcpy(a.symbol, t.symbol, sizeof(a.symbol));
            hvi_strlcpy(a.module, t.module, sizeof(a.module));
            snprintf(who, sizeof(who), "range 0x%llx+0x%llx vmalloc'ed by %s (%s)",
                     (unsigned long long)start, (unsigned long long)size,
                     t.symbol[0] ? t.symbol : "?", t.module[0] ? t.module : "unknown memory");
        } else {
            snprintf(who, sizeof(who), "allocator unknown (%s)",
                     u->vmap_list ? "no vm_struct found" : "no vmap_area layout in CAMI");
        }
    }
    snprintf(d, sizeof(d),
             "%s page 0x%llx (%llu KiB) executable, no module's text; %s; %s; writer RIP "
             "unknown (page tables checked on the timer)",
             vmalloc ? "vmalloc" : "module-area", (unsigned long long)va,
             (unsigned long long)(len >> 10), who[0] ? who : "owner unknown", how);
    hvi_strlcpy(a.detail, d, sizeof(a.detail));
    hvi_alert_emit(w->e, &a);
    s->stats.violations++;
    s->found++;
}

/* A module-area range whose vm_struct caller (the code that called module_alloc) lies in a
 * loaded module rather than the kernel image: a module allocating executable memory itself. */
static bool allocated_by_module(struct walk *w, uint64_t va)
{
    uint64_t start = 0, size = 0;
    uint64_t caller = vmalloc_caller(w->s->k, w->u, va, &start, &size);
    if (!caller || (caller >= w->s->k->image_start && caller < w->s->k->image_end))
        return false;
    hvi_alert t;
    memset(&t, 0, sizeof(t));
    lixp_alert_writer(w->s, &t, caller);
    return t.module[0] != 0;
}

static void leaf(struct walk *w, uint64_t va, uint64_t len, uint64_t pa, bool nx)
{
    struct lixp_unpack *u = w->u;
    const struct lix_kernel *k = w->s->k;
    if (va >= k->image_start && va < k->image_end)
        return;
    struct xpage *old = slot(u->tab, u->cap, va);
    if (old && !old->va)
        old = NULL;
    if (u->next_used + 1 >= u->cap / 4 * 3) {
        u->full = true;
        return;
    }
    struct xpage *nw = slot(u->next, u->cap, va);
    if (!nw || nw->va)
        return; /* already recorded this round (aliased walk) */
    *nw = (struct xpage){.va = va, .first_round = u->rounds, .state = nx ? XP_NX : XP_X};
    u->next_used++;
    if (old && old->state == nw->state) { /* unchanged since the last round: nothing to read */
        nw->hash = old->hash;
        nw->first_round = old->first_round;
        return;
    }
    /* the content is read only for a page seen for the first time or changing state */
    uint8_t page[HVI_PAGE_SIZE];
    bool have = len == HVI_PAGE_SIZE && hvi_gpa_read(w->e, pa, page, sizeof(page)) == HVI_OK;
    if (nx) {
        nw->hash = have ? fnv(page, sizeof(page)) : 0;
        return;
    }
    if (u->rounds == 0)
        return; /* baseline */
    bool in_text = false;
    const struct xmod *m = mod_of(u, va, len, &in_text);
    bool vmalloc = va >= u->vmalloc_lo && va < u->vmalloc_hi;
    if (in_text)
        return; /* the module loader */
    if (!m && !vmalloc && !allocated_by_module(w, va))
        return; /* a module_alloc() user in the kernel: BPF JIT, kprobe slots, ftrace */
    unpack_alert(w, va, len, old, have ? page : NULL, m);
}

static void walk_table(struct walk *w, uint64_t table, int level, uint64_t base, bool nx)
{
    struct lixp_unpack *u = w->u;
    if (u->tables >= UNPACK_MAX_TABLES)
        return;
    u->tables++;
    uint64_t ent[512];
    if (hvi_gpa_read(w->e, table & PTE_ADDR, ent, sizeof(ent)) != HVI_OK)
        return;
    int shift = 12 + 9 * (level - 1);
    for (uint32_t i = 0; i < 512; i++) {
        uint64_t va = base + ((uint64_t)i << shift);
        if (level == w->top) { /* canonical: sign-extend the top bit */
            int bits = w->top == 5 ? 57 : 48;
            if (va >> (bits - 1) & 1)
                va |= ~0ull << bits;
        }
        uint64_t span = 1ull << shift;
        if (va + span - 1 < w->lo || va >= w->hi || !(ent[i] & PTE_P))
            continue;
        bool x_nx = nx || (ent[i] & PTE_NX);
        if (level == 1 || ((level == 2 || level == 3) && (ent[i] & PTE_PS))) {
            /* a 2 MiB leaf is tracked as one unit (not hashed); 1 GiB ones do not occur here */
            if (level <= 2)
                leaf(w, va, span, ent[i] & PTE_ADDR & ~(span - 1), x_nx);
        } else if (level > 1) {
            walk_table(w, ent[i], level - 1, va, x_nx);
        }
    }
}

static bool unpack_init(hvi_engine *e, struct lixp_state *s)
{
    struct lixp_unpack *u = calloc(1, sizeof(*u));
    if (!u)
        return false;
    u->cap = 1u << 15;
    u->tab = calloc(u->cap, sizeof(*u->tab));
    u->next = calloc(u->cap, sizeof(*u->next));
    u->mods = calloc(UNPACK_MAX_MODS, sizeof(*u->mods));
    if (!u->tab || !u->next || !u->mods) {
        free(u->tab), free(u->next), free(u->mods), free(u);
        return false;
    }
    uint64_t vb = 0, vbase = 0;
    bool la57 = hvi_mem_paging_mode(e) == HVI_PAGING_5LVL;
    if (lix_kallsyms_lookup(&s->k->ks, "vmalloc_base", &vb) != HVI_OK ||
        lix_read_u64(s->k, vb, &vbase) != HVI_OK || !lix_is_kptr(vbase))
        vbase = la57 ? 0xffa0000000000000ull : 0xffffc90000000000ull; /* non-KASLR defaults */
    u->vmalloc_lo = vbase;
    u->vmalloc_hi = vbase + (la57 ? VMALLOC_5L : VMALLOC_4L);
    cami_vmap(e, u, s->k);
    s->unpack = u;
    return true;
}

void lixp_check_unpack(hvi_engine *e, struct lixp_state *s)
{
    if (!s->unpack && (s->unpack_failed || !(s->unpack_failed = !unpack_init(e, s))))
        return;
    struct lixp_unpack *u = s->unpack;
    uint64_t t0 = hvi_now_ns();
    hvi_paging_mode mode = hvi_mem_paging_mode(e);
    uint64_t cr3 = hvi_mem_kernel_cr3(e);
    if ((mode != HVI_PAGING_4LVL && mode != HVI_PAGING_5LVL) || !cr3)
        return;
    struct snap_ctx sc = {s->k, u};
    u->nmods = 0;
    if (lix_module_walk(s->k, snap_cb, &sc) != HVI_OK)
        return; /* without the module list nothing can be judged this round */
    memset(u->next, 0, u->cap * sizeof(*u->next));
    u->next_used = 0;
    u->tables = 0;
    struct walk w = {e, s, u, u->vmalloc_lo, u->vmalloc_hi, mode == HVI_PAGING_5LVL ? 5 : 4};
    walk_table(&w, cr3, w.top, 0, false);
    w.lo = MODULES_VADDR;
    w.hi = MODULES_END;
    walk_table(&w, cr3, w.top, 0, false);
    struct xpage *t = u->tab;
    u->tab = u->next;
    u->next = t;
    u->used = u->next_used;
    u->rounds++;
    s->stats.unpack_pages = u->used;
    s->stats.unpack_tables = u->tables;
    s->stats.last_unpack_ns = hvi_now_ns() - t0;
}

void lixp_unpack_free(struct lixp_state *s)
{
    struct lixp_unpack *u = s->unpack;
    if (!u)
        return;
    free(u->tab);
    free(u->next);
    free(u->mods);
    free(u);
    s->unpack = NULL;
}
