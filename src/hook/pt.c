/*
 * hvi hook layer — page-table hooks (watch the paging entries translating a GVA) and GVA hooks
 * (a GPA hook that follows the translation).
 */
#include <stdlib.h>
#include <string.h>

#include "hook_priv.h"
#include "hvi/mem.h"

#define PTE_P 1ull
#define PTE_PS (1ull << 7)
#define PTE_AD ((1ull << 5) | (1ull << 6))
#define ADDR_MASK 0x000ffffffffff000ull
#define NO_GPA (~0ull)

struct pt_state {
    uint64_t cr3;
    hvi_gva gva;
    uint32_t top;                 /* 4 or 5 */
    struct hvi_hook *lvl[5];      /* internal write hooks on the entries, index = level - 1 */
    hvi_gpa lvl_gpa[5];
    hvi_translation tr;
    bool present;
    hvi_pt_hook_cb cb;
    /* GVA hooks */
    struct hvi_hook *gpa_hook;
    uint32_t len, access;
    hvi_gpa_hook_cb ucb;
    hvi_gva_moved_cb moved;
    bool pending;                 /* an entry write must be re-walked after a single step */
    uint32_t pending_vcpu;
};

static uint32_t entry_cb(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc, void *ctx);

static hvi_status read_entry(hvi_engine *e, hvi_gpa gpa, uint64_t *out)
{
    void *page;
    if (e->glue.map_gpa(e->glue.ctx, gpa & HVI_PAGE_MASK, &page) != HVI_OK)
        return HVI_E_BACKEND;
    memcpy(out, (uint8_t *)page + (gpa & (HVI_PAGE_SIZE - 1)), 8);
    e->glue.unmap_gpa(e->glue.ctx, gpa & HVI_PAGE_MASK, page);
    return HVI_OK;
}

static void drop_level(hvi_engine *e, struct pt_state *p, uint32_t lvl)
{
    if (p->lvl[lvl - 1]) {
        (void)hvi_hook_remove(e, p->lvl[lvl - 1]);
        p->lvl[lvl - 1] = NULL;
        p->lvl_gpa[lvl - 1] = NO_GPA;
    }
}

/* Hook the entry at egpa for level lvl (before it is read). */
static hvi_status hook_level(hvi_engine *e, struct hvi_hook *owner, uint32_t lvl, hvi_gpa egpa)
{
    struct pt_state *p = owner->pt;
    if (p->lvl[lvl - 1] && p->lvl_gpa[lvl - 1] == egpa)
        return HVI_OK;
    drop_level(e, p, lvl);
    hvi_hook *h;
    hvi_status st = hvi_hook_gpa_add(e, egpa, 8, HVI_EPT_W, entry_cb, owner, &h);
    if (st != HVI_OK)
        return st;
    h->internal = true;
    p->lvl[lvl - 1] = h;
    p->lvl_gpa[lvl - 1] = egpa;
    return HVI_OK;
}

static uint64_t leaf_size(uint32_t lvl)
{
    return lvl == 1 ? 0x1000ull : lvl == 2 ? 0x200000ull : 0x40000000ull;
}

/* Walk from the top, hooking each entry before reading it; `ov_gpa`/`ov_val` stand for an entry
 * whose pending write is not in memory yet. */
static hvi_status walk(hvi_engine *e, struct hvi_hook *owner, hvi_gpa ov_gpa, uint64_t ov_val)
{
    struct pt_state *p = owner->pt;
    hvi_translation *t = &p->tr;
    memset(t, 0, sizeof(*t));
    t->gva = p->gva;
    t->levels = 0;
    p->present = false;
    uint64_t base = p->cr3 & ADDR_MASK;
    uint32_t lvl = p->top;
    for (; lvl >= 1; lvl--) {
        hvi_gpa egpa = base + ((p->gva >> (12 + 9 * (lvl - 1))) & 511) * 8;
        hvi_status st = hook_level(e, owner, lvl, egpa);
        uint64_t ent = 0;
        if (st == HVI_OK)
            st = egpa == ov_gpa ? HVI_OK : read_entry(e, egpa, &ent);
        if (st != HVI_OK)
            return st;
        if (egpa == ov_gpa)
            ent = ov_val;
        t->entry_gpa[lvl - 1] = egpa;
        t->entry[lvl - 1] = ent;
        t->levels++;
        if (!(ent & PTE_P)) {
            t->fault_level = lvl;
            break;
        }
        if (lvl == 1 || ((lvl == 2 || lvl == 3) && (ent & PTE_PS))) {
            uint64_t size = leaf_size(lvl);
            t->page_size = size;
            t->gpa = (ent & ADDR_MASK & ~(size - 1)) + (p->gva & (size - 1));
            p->present = true;
            break;
        }
        base = ent & ADDR_MASK;
    }
    for (uint32_t l = lvl > 1 ? lvl - 1 : 0; l >= 1; l--)
        drop_level(e, p, l); /* levels below the leaf or the hole */
    return HVI_OK;
}

static void place_gpa_hook(hvi_engine *e, struct hvi_hook *owner)
{
    struct pt_state *p = owner->pt;
    if (!p->present || p->gpa_hook)
        return;
    hvi_hook *h;
    if (hvi_hook_gpa_add_gva(e, p->tr.gpa, p->gva, p->len, p->access, p->ucb, owner->ctx, &h) ==
        HVI_OK) {
        h->internal = true;
        p->gpa_hook = h;
    }
}

/* After a re-walk: report and move. */
static void changed(hvi_engine *e, struct hvi_hook *owner, const hvi_translation *old, bool was)
{
    struct pt_state *p = owner->pt;
    hvi_mem_flush_translations(e, 0);
    if (owner->kind == HOOK_PT) {
        if (p->cb)
            p->cb(e, owner, old, &p->tr, owner->ctx);
        return;
    }
    if (was == p->present && (!was || old->gpa == p->tr.gpa))
        return;
    if (p->gpa_hook) {
        (void)hvi_hook_remove(e, p->gpa_hook);
        p->gpa_hook = NULL;
    }
    place_gpa_hook(e, owner);
    if (p->moved)
        p->moved(e, owner, old->gpa, was, p->tr.gpa, p->present, owner->ctx);
}

static void rewalk(hvi_engine *e, struct hvi_hook *owner, hvi_gpa ov_gpa, uint64_t ov_val)
{
    struct pt_state *p = owner->pt;
    hvi_translation old = p->tr;
    bool was = p->present;
    if (walk(e, owner, ov_gpa, ov_val) != HVI_OK)
        hvi_log(e, HVI_LOG_WARN, "pt hook: re-walk of 0x%llx failed", (unsigned long long)p->gva);
    changed(e, owner, &old, was);
}

static uint32_t entry_cb(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc, void *ctx)
{
    struct hvi_hook *owner = ctx;
    struct pt_state *p = owner->pt;
    uint32_t lvl = 0;
    for (uint32_t l = 1; l <= 5; l++)
        if (p->lvl[l - 1] == hook)
            lvl = l;
    if (!lvl || owner->removed)
        return HVI_ACTION_ALLOW;
    hvi_gpa egpa = p->lvl_gpa[lvl - 1];
    uint64_t old = p->tr.entry[lvl - 1], nv = old;
    if (acc->after_access) {
        rewalk(e, owner, NO_GPA, 0);
        return HVI_ACTION_ALLOW;
    }
    if (!acc->values_known) {
        /* resolve after the instruction completed */
        if ((e->glue.caps & HVI_CAP_SINGLE_STEP) &&
            e->glue.single_step(e->glue.ctx, acc->vcpu, true) == HVI_OK) {
            p->pending = true;
            p->pending_vcpu = acc->vcpu;
        }
        return HVI_ACTION_ALLOW;
    }
    uint8_t b[8];
    memcpy(b, &old, 8);
    for (uint32_t i = 0; i < acc->size && i < 16; i++) {
        hvi_gpa x = acc->gpa + i;
        if (x >= egpa && x < egpa + 8)
            b[x - egpa] = acc->new_bytes[i];
    }
    memcpy(&nv, b, 8);
    if (((old ^ nv) & ~PTE_AD) == 0)
        return HVI_ACTION_ALLOW; /* only Accessed/Dirty changed */
    rewalk(e, owner, egpa, nv);
    return HVI_ACTION_ALLOW;
}

hvi_status hvi_hook_on_step(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply, void *ctx)
{
    (void)reply;
    (void)ctx;
    struct hvi_hook_state *s = e->hook;
    bool any = false;
    s->depth++;
    for (struct hvi_hook *h = s ? s->live : NULL; h; h = h->next) {
        if ((h->kind == HOOK_PT || h->kind == HOOK_GVA) && !h->removed && h->pt->pending &&
            h->pt->pending_vcpu == ev->vcpu) {
            h->pt->pending = false;
            any = true;
            rewalk(e, h, NO_GPA, 0);
        }
    }
    s->depth--;
    hvi_hook_reap(s);
    if (any)
        (void)e->glue.single_step(e->glue.ctx, ev->vcpu, false);
    return HVI_OK;
}

static hvi_status pt_new(hvi_engine *e, uint32_t kind, uint64_t cr3, hvi_gva gva, void *ctx,
                         struct hvi_hook **out)
{
    hvi_paging_mode mode = hvi_mem_paging_mode(e);
    if (!(e->glue.caps & HVI_CAP_EPT))
        return hvi_fail(e, HVI_E_UNSUPPORTED, "pt hook: needs EPT write hooks on page tables");
    if (mode != HVI_PAGING_4LVL && mode != HVI_PAGING_5LVL)
        return hvi_fail(e, HVI_E_UNSUPPORTED, "pt hook: only 4/5-level paging");
    struct hvi_hook_state *s = hvi_hook_state_get(e);
    if (!s)
        return HVI_E_NOMEM;
    struct hvi_hook *h = calloc(1, sizeof(*h));
    struct pt_state *p = calloc(1, sizeof(*p));
    if (!h || !p) {
        free(h);
        free(p);
        return HVI_E_NOMEM;
    }
    h->kind = kind;
    h->ctx = ctx;
    h->gva = gva;
    h->pt = p;
    p->cr3 = cr3 ? cr3 : hvi_mem_kernel_cr3(e);
    p->gva = gva;
    p->top = mode == HVI_PAGING_5LVL ? 5 : 4;
    for (int i = 0; i < 5; i++)
        p->lvl_gpa[i] = NO_GPA;
    h->next = s->live;
    s->live = h;
    s->hooks++;
    *out = h;
    return HVI_OK;
}

hvi_status hvi_hook_pt_remove(hvi_engine *e, struct hvi_hook *h)
{
    struct pt_state *p = h->pt;
    for (uint32_t l = 1; l <= 5; l++)
        drop_level(e, p, l);
    if (p->gpa_hook) {
        (void)hvi_hook_remove(e, p->gpa_hook);
        p->gpa_hook = NULL;
    }
    if (p->pending)
        (void)e->glue.single_step(e->glue.ctx, p->pending_vcpu, false);
    return HVI_OK;
}

hvi_status hvi_hook_pt_add(hvi_engine *e, uint64_t cr3, hvi_gva gva, hvi_pt_hook_cb cb, void *ctx,
                           hvi_hook **out)
{
    if (!e || !out)
        return HVI_E_INVAL;
    struct hvi_hook *h = NULL;
    hvi_status st = pt_new(e, HOOK_PT, cr3, gva, ctx, &h);
    if (st != HVI_OK)
        return st;
    h->pt->cb = cb;
    st = walk(e, h, NO_GPA, 0);
    if (st != HVI_OK) {
        (void)hvi_hook_remove(e, h);
        return hvi_fail(e, st, "pt hook: cannot hook the tables of 0x%llx",
                        (unsigned long long)gva);
    }
    *out = h;
    return HVI_OK;
}

hvi_status hvi_hook_gva_add(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint32_t len, uint32_t access,
                            hvi_gpa_hook_cb cb, hvi_gva_moved_cb moved, void *ctx, hvi_hook **out)
{
    if (!e || !out || !cb || len == 0 || !access || (access & ~(uint32_t)HVI_EPT_RWX) ||
        (gva & HVI_PAGE_MASK) != ((gva + len - 1) & HVI_PAGE_MASK))
        return e ? hvi_fail(e, HVI_E_INVAL, "gva hook: bad arguments") : HVI_E_INVAL;
    struct hvi_hook *h = NULL;
    hvi_status st = pt_new(e, HOOK_GVA, cr3, gva, ctx, &h);
    if (st != HVI_OK)
        return st;
    struct pt_state *p = h->pt;
    p->len = len;
    p->access = access;
    p->ucb = cb;
    p->moved = moved;
    st = walk(e, h, NO_GPA, 0);
    if (st == HVI_OK) {
        place_gpa_hook(e, h);
        if (p->present && !p->gpa_hook)
            st = HVI_E_BACKEND;
    }
    if (st != HVI_OK) {
        (void)hvi_hook_remove(e, h);
        return hvi_fail(e, st, "gva hook: cannot hook 0x%llx", (unsigned long long)gva);
    }
    *out = h;
    return HVI_OK;
}

hvi_status hvi_hook_translation(const hvi_hook *hook, hvi_translation *out)
{
    if (!hook || !out || !hook->pt)
        return HVI_E_INVAL;
    *out = hook->pt->tr;
    return hook->pt->present ? HVI_OK : HVI_E_NOT_PRESENT;
}
