/*
 * hvi hook layer — the VA-space monitor: write hooks on every paging structure of an address
 * space, kept in step with the tables the guest links and unlinks.
 */
#include <stdlib.h>
#include <string.h>

#include "hook_priv.h"
#include "hvi/mem.h"

#define VAS_MAX_TABLES 8192u
#define ADDR_MASK 0x000ffffffffff000ull
#define PTE_P 1ull
#define PTE_PS (1ull << 7)
#define PTE_AD ((1ull << 5) | (1ull << 6))
#define NO_GPA (~0ull)

struct vas_table {
    hvi_gpa gpa;
    uint32_t level;
    hvi_hook *hook;
    bool seen;        /* mark for the rescan */
};

struct vas_state {
    uint64_t cr3;
    uint32_t top;
    hvi_vasmon_cb cb;
    struct vas_table *tables;
    size_t count, cap;
};

static uint32_t table_write(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc, void *ctx);

void hvi_vasmon_free(struct vas_state *v)
{
    if (v) {
        free(v->tables);
        free(v);
    }
}

static struct vas_table *find(struct vas_state *v, hvi_gpa gpa)
{
    for (size_t i = 0; i < v->count; i++)
        if (v->tables[i].gpa == gpa)
            return &v->tables[i];
    return NULL;
}

static hvi_status add_table(hvi_engine *e, struct hvi_hook *mon, hvi_gpa gpa, uint32_t level)
{
    struct vas_state *v = mon->vas;
    struct vas_table *t = find(v, gpa);
    if (t) {
        t->seen = true;
        return HVI_OK;
    }
    if (v->count == VAS_MAX_TABLES)
        return HVI_E_LIMIT;
    if (v->count == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        struct vas_table *n = realloc(v->tables, cap * sizeof(*n));
        if (!n)
            return HVI_E_NOMEM;
        v->tables = n;
        v->cap = cap;
    }
    hvi_hook *h;
    hvi_status st = hvi_hook_gpa_add(e, gpa, HVI_PAGE_SIZE, HVI_EPT_W, table_write, mon, &h);
    if (st != HVI_OK)
        return st;
    h->internal = true;
    v->tables[v->count++] = (struct vas_table){.gpa = gpa, .level = level, .hook = h, .seen = true};
    return HVI_OK;
}

/* Hook the table, then read its entries and descend (depth <= 5, bounded by VAS_MAX_TABLES). */
static hvi_status scan(hvi_engine *e, struct hvi_hook *mon, hvi_gpa table, uint32_t level,
                       hvi_gpa ov_gpa, uint64_t ov_val)
{
    hvi_status st = add_table(e, mon, table, level);
    if (st != HVI_OK || level == 1)
        return st;
    uint64_t ent[512];
    void *page;
    if (e->glue.map_gpa(e->glue.ctx, table, &page) != HVI_OK)
        return HVI_E_BACKEND;
    memcpy(ent, page, sizeof(ent));
    e->glue.unmap_gpa(e->glue.ctx, table, page);
    for (uint32_t i = 0; i < 512 && st == HVI_OK; i++) {
        uint64_t x = table + i * 8ull == ov_gpa ? ov_val : ent[i];
        if (!(x & PTE_P) || ((level == 2 || level == 3) && (x & PTE_PS)))
            continue;
        st = scan(e, mon, x & ADDR_MASK, level - 1, ov_gpa, ov_val);
    }
    return st;
}

/* Re-scan the space and drop the tables no longer reachable. */
static hvi_status rescan(hvi_engine *e, struct hvi_hook *mon, hvi_gpa ov_gpa, uint64_t ov_val)
{
    struct vas_state *v = mon->vas;
    for (size_t i = 0; i < v->count; i++)
        v->tables[i].seen = false;
    hvi_status st = scan(e, mon, v->cr3 & ADDR_MASK, v->top, ov_gpa, ov_val);
    for (size_t i = 0; i < v->count;) {
        if (v->tables[i].seen || st != HVI_OK) {
            i++;
            continue;
        }
        (void)hvi_hook_remove(e, v->tables[i].hook);
        v->tables[i] = v->tables[--v->count];
    }
    return st;
}

static uint32_t table_write(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc, void *ctx)
{
    struct hvi_hook *mon = ctx;
    struct vas_state *v = mon->vas;
    struct vas_table *t = NULL;
    for (size_t i = 0; i < v->count; i++)
        if (v->tables[i].hook == hook)
            t = &v->tables[i];
    if (!t || mon->removed || !acc->values_known || acc->after_access)
        return HVI_ACTION_ALLOW;
    /* every 8-byte entry the access touches */
    hvi_gpa first = acc->gpa & ~7ull;
    for (hvi_gpa egpa = first; egpa < acc->gpa + acc->size; egpa += 8) {
        uint64_t old = 0, nv;
        if (hvi_gpa_read(e, egpa, &old, 8) != HVI_OK)
            continue;
        uint8_t b[8];
        memcpy(b, &old, 8);
        for (uint32_t i = 0; i < acc->size && i < 16; i++)
            if (acc->gpa + i >= egpa && acc->gpa + i < egpa + 8)
                b[acc->gpa + i - egpa] = acc->new_bytes[i];
        memcpy(&nv, b, 8);
        if (((old ^ nv) & ~PTE_AD) == 0)
            continue;
        uint32_t level = t->level;
        if (v->cb)
            v->cb(e, mon, egpa, level, old, nv, mon->ctx);
        if (mon->removed)
            return HVI_ACTION_ALLOW;
        if (level > 1 && rescan(e, mon, egpa, nv) != HVI_OK)
            hvi_log(e, HVI_LOG_WARN, "vasmon: rescan failed");
        t = NULL; /* the table array may have moved */
        for (size_t i = 0; i < v->count; i++)
            if (v->tables[i].hook == hook)
                t = &v->tables[i];
        if (!t)
            break;
    }
    hvi_mem_flush_translations(e, 0);
    return HVI_ACTION_ALLOW;
}

void hvi_vasmon_remove(hvi_engine *e, struct hvi_hook *h)
{
    struct vas_state *v = h->vas;
    for (size_t i = 0; v && i < v->count; i++)
        (void)hvi_hook_remove(e, v->tables[i].hook);
    if (v)
        v->count = 0;
}

hvi_status hvi_vasmon_add(hvi_engine *e, uint64_t cr3, hvi_vasmon_cb cb, void *ctx, hvi_hook **out)
{
    if (!e || !out)
        return HVI_E_INVAL;
    hvi_paging_mode mode = hvi_mem_paging_mode(e);
    if (!(e->glue.caps & HVI_CAP_EPT) || (mode != HVI_PAGING_4LVL && mode != HVI_PAGING_5LVL))
        return hvi_fail(e, HVI_E_UNSUPPORTED, "vasmon: needs EPT and 4/5-level paging");
    struct hvi_hook_state *s = hvi_hook_state_get(e);
    struct hvi_hook *h = s ? calloc(1, sizeof(*h)) : NULL;
    struct vas_state *v = h ? calloc(1, sizeof(*v)) : NULL;
    if (!v) {
        free(h);
        return HVI_E_NOMEM;
    }
    h->kind = HOOK_VAS;
    h->ctx = ctx;
    h->vas = v;
    v->cr3 = cr3 ? cr3 : hvi_mem_kernel_cr3(e);
    v->top = mode == HVI_PAGING_5LVL ? 5 : 4;
    v->cb = cb;
    h->next = s->live;
    s->live = h;
    s->hooks++;
    hvi_status st = rescan(e, h, NO_GPA, 0);
    if (st != HVI_OK) {
        (void)hvi_hook_remove(e, h);
        return hvi_fail(e, st, "vasmon: cannot hook the address space");
    }
    *out = h;
    return HVI_OK;
}

size_t hvi_vasmon_tables(const hvi_hook *mon)
{
    return mon && mon->vas ? mon->vas->count : 0;
}
