/* hvi mem — layer state, the GPA cache of mapped frames (reference counted) and the
 * translation cache. */
#include <stdlib.h>
#include <string.h>

#include "mem/mem_internal.h"

static void mem_cleanup(hvi_engine *e, void *ctx)
{
    struct hvi_mem_state *m = ctx;
    mem_maps_free(e, m);
    for (uint32_t i = 0; i < MEM_GC_SIZE; i++)
        if (m->gc[i].used)
            (void)e->glue.unmap_gpa(e->glue.ctx, m->gc[i].gpa, m->gc[i].ptr);
    free(m);
    e->mem = NULL;
}

/* Guest page tables changed meaning: a CR3/CR4/CR0 write flushes the cache (as the TLB). */
static hvi_status on_cr_write(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply,
                              void *ctx)
{
    (void)ev, (void)reply, (void)ctx;
    hvi_mem_flush_translations(e, 0);
    return HVI_OK;
}

static void on_timer(hvi_engine *e, void *ctx)
{
    (void)ctx;
    hvi_mem_flush_translations(e, 0);
}

struct hvi_mem_state *mem_state(hvi_engine *e)
{
    if (e->mem)
        return e->mem;
    struct hvi_mem_state *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->gen = 1;
    m->kroot = mem_cr3_root(e->guest.paging, e->guest.kernel_cr3);
    m->kmix = mem_tc_mix(m->kroot);
    m->phys_limit = UINT64_MAX;
    uint64_t max = 0;
    if (e->glue.max_gpfn && e->glue.max_gpfn(e->glue.ctx, &max) == HVI_OK && max < (1ull << 40))
        m->phys_limit = (max + 1) << 12;
    if (hvi_engine_on_free(e, mem_cleanup, m) != HVI_OK) {
        free(m);
        return NULL;
    }
    e->mem = m;
    /* Best effort: without these slots the cache is still flushed explicitly. */
    (void)hvi_engine_add_handler(e, HVI_EV_CR_WRITE, on_cr_write, NULL);
    (void)hvi_engine_add_timer(e, on_timer, NULL);
    return m;
}

static inline uint32_t gc_hash(hvi_gpa gpa)
{
    return (uint32_t)(((gpa >> 12) * 0x9E3779B97F4A7C15ull) >> (64 - MEM_GC_BITS));
}

static struct mem_gc *gc_find(struct hvi_mem_state *m, hvi_gpa page)
{
    uint32_t h = gc_hash(page);
    for (uint32_t i = 0; i < MEM_GC_PROBE; i++) {
        struct mem_gc *g = &m->gc[(h + i) & (MEM_GC_SIZE - 1)];
        if (g->used && g->gpa == page)
            return g;
    }
    return NULL;
}

static inline struct mem_memo *memo_slot(struct hvi_mem_state *m, hvi_gpa page)
{
    return &m->memo[(page >> 12) & (MEM_MEMO_SIZE - 1)];
}

static void memo_forget(struct hvi_mem_state *m, hvi_gpa page)
{
    struct mem_memo *mm = memo_slot(m, page);
    if (mm->gpa == page + 1)
        mm->gpa = 0;
}

static hvi_status check_phys(hvi_engine *e, struct hvi_mem_state *m, hvi_gpa page)
{
    if (page >= m->phys_limit)
        return hvi_fail(e, HVI_E_RANGE, "mem: GPA 0x%llx outside guest RAM",
                        (unsigned long long)page);
    return HVI_OK;
}

/* Find or map the frame into the cache. NULL slot (and HVI_E_LIMIT) when the probe window is
 * full of referenced frames. */
static hvi_status gc_get(hvi_engine *e, struct hvi_mem_state *m, hvi_gpa page, struct mem_gc **out)
{
    struct mem_gc *g = gc_find(m, page);
    if (g) {
        *out = g;
        return HVI_OK;
    }
    hvi_status st = check_phys(e, m, page);
    if (st != HVI_OK)
        return st;
    uint32_t h = gc_hash(page);
    struct mem_gc *victim = NULL;
    for (uint32_t i = 0; i < MEM_GC_PROBE && !(victim && !victim->used); i++) {
        struct mem_gc *c = &m->gc[(h + i) & (MEM_GC_SIZE - 1)];
        if (!c->used || (!c->refs && !victim))
            victim = c;
    }
    if (!victim)
        return HVI_E_LIMIT;
    void *p = NULL;
    st = e->glue.map_gpa(e->glue.ctx, page, &p);
    if (st != HVI_OK || !p)
        return hvi_fail(e, st != HVI_OK ? st : HVI_E_BACKEND, "mem: map of GPA 0x%llx failed",
                        (unsigned long long)page);
    if (victim->used) {
        memo_forget(m, victim->gpa);
        (void)e->glue.unmap_gpa(e->glue.ctx, victim->gpa, victim->ptr);
    }
    else
        m->gc_used++;
    victim->gpa = page, victim->ptr = p, victim->refs = 0, victim->used = true;
    *out = victim;
    return HVI_OK;
}

hvi_status mem_frame_get(hvi_engine *e, hvi_gpa page, uint8_t **ptr, bool *transient)
{
    struct hvi_mem_state *m = e->mem ? e->mem : mem_state(e);
    if (!m)
        return HVI_E_NOMEM;
    *transient = false;
    struct mem_memo *mm = memo_slot(m, page);
    if (mm->gpa == page + 1) {
        *ptr = mm->ptr;
        return HVI_OK;
    }
    struct mem_gc *g = NULL;
    hvi_status st = gc_get(e, m, page, &g);
    if (st == HVI_OK) {
        mm->gpa = page + 1, mm->ptr = g->ptr;
        *ptr = g->ptr;
        return HVI_OK;
    }
    if (st != HVI_E_LIMIT)
        return st;
    void *p = NULL;
    st = e->glue.map_gpa(e->glue.ctx, page, &p);
    if (st != HVI_OK || !p)
        return hvi_fail(e, st != HVI_OK ? st : HVI_E_BACKEND, "mem: map of GPA 0x%llx failed",
                        (unsigned long long)page);
    *ptr = p;
    *transient = true;
    return HVI_OK;
}

void mem_frame_put(hvi_engine *e, hvi_gpa page, uint8_t *ptr, bool transient)
{
    if (transient)
        (void)e->glue.unmap_gpa(e->glue.ctx, page, ptr);
}

hvi_status hvi_gpa_cache_find_and_add(hvi_engine *e, hvi_gpa gpa, void **out)
{
    if (!e || !out)
        return HVI_E_INVAL;
    struct hvi_mem_state *m = mem_state(e);
    if (!m)
        return HVI_E_NOMEM;
    struct mem_gc *g = NULL;
    hvi_status st = gc_get(e, m, gpa & HVI_PAGE_MASK, &g);
    if (st == HVI_E_LIMIT)
        return hvi_fail(e, st, "mem: GPA cache full of referenced frames");
    if (st != HVI_OK)
        return st;
    if (g->refs == UINT32_MAX)
        return HVI_E_LIMIT;
    g->refs++;
    *out = g->ptr + (gpa & 0xfff);
    return HVI_OK;
}

hvi_status hvi_gpa_cache_release(hvi_engine *e, hvi_gpa gpa)
{
    if (!e || !e->mem)
        return HVI_E_INVAL;
    struct mem_gc *g = gc_find(e->mem, gpa & HVI_PAGE_MASK);
    if (!g || !g->refs)
        return HVI_E_NOT_FOUND;
    g->refs--;
    return HVI_OK;
}

/* Read or patch within one frame through the cache (the frame stays cached, no reference). */
static hvi_status gc_rw(hvi_engine *e, hvi_gpa gpa, void *buf, size_t len, bool write)
{
    if (!e || (!buf && len) || len > HVI_PAGE_SIZE - (gpa & 0xfff))
        return HVI_E_INVAL;
    uint8_t *p = NULL;
    bool transient = false;
    hvi_status st = mem_frame_get(e, gpa & HVI_PAGE_MASK, &p, &transient);
    if (st != HVI_OK)
        return st;
    if (write) {
        memcpy(p + (gpa & 0xfff), buf, len);
        e->mem->gen++; /* the engine may have edited a paging structure */
    } else {
        memcpy(buf, p + (gpa & 0xfff), len);
    }
    mem_frame_put(e, gpa & HVI_PAGE_MASK, p, transient);
    return HVI_OK;
}

hvi_status hvi_gpa_cache_fetch_and_add(hvi_engine *e, hvi_gpa gpa, void *buf, size_t len)
{
    return gc_rw(e, gpa, buf, len, false);
}

hvi_status hvi_gpa_cache_patch_and_add(hvi_engine *e, hvi_gpa gpa, const void *buf, size_t len)
{
    return gc_rw(e, gpa, (void *)(uintptr_t)buf, len, true);
}

void hvi_gpa_cache_invalidate(hvi_engine *e, hvi_gpa gpa)
{
    if (!e || !e->mem)
        return;
    struct mem_gc *g = gc_find(e->mem, gpa & HVI_PAGE_MASK);
    if (!g)
        return;
    memo_forget(e->mem, g->gpa);
    (void)e->glue.unmap_gpa(e->glue.ctx, g->gpa, g->ptr);
    memset(g, 0, sizeof(*g));
    e->mem->gc_used--;
}

void hvi_mem_flush_translations(hvi_engine *e, uint64_t cr3)
{
    if (!e || !e->mem)
        return;
    struct hvi_mem_state *m = e->mem;
    if (!cr3) {
        m->gen++;
        m->kroot = mem_cr3_root(e->guest.paging, e->guest.kernel_cr3);
        m->kmix = mem_tc_mix(m->kroot);
        return;
    }
    uint64_t root = mem_cr3_root(e->guest.paging, cr3);
    for (uint32_t i = 0; i < MEM_TC_SIZE; i++)
        if (m->tc[i].root == root)
            m->tc[i].gen = 0;
}
