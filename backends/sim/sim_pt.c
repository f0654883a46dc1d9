/* hvi simulator — page-table builder and the simulator's own simple translation. */
#include <string.h>

#include "sim_internal.h"

#define ADDR64 0x000ffffffffff000ull
#define ADDR32 0xfffff000ull

struct geo {
    uint32_t levels;
    uint32_t esize; /* entry size in bytes */
};

static bool geo_of(hvi_paging_mode mode, struct geo *g)
{
    switch (mode) {
    case HVI_PAGING_32: g->levels = 2, g->esize = 4; return true;
    case HVI_PAGING_PAE: g->levels = 3, g->esize = 8; return true;
    case HVI_PAGING_4LVL: g->levels = 4, g->esize = 8; return true;
    case HVI_PAGING_5LVL: g->levels = 5, g->esize = 8; return true;
    default: return false;
    }
}

static uint32_t shift_of(const struct geo *g, uint32_t level)
{
    return g->esize == 4 ? 12 + 10 * (level - 1) : 12 + 9 * (level - 1);
}

static uint64_t index_of(const struct geo *g, hvi_gva gva, uint32_t level)
{
    uint64_t mask = g->esize == 4 ? 1023 : 511;
    if (g->levels == 3 && level == 3)
        mask = 3;
    return (gva >> shift_of(g, level)) & mask;
}

static hvi_status read_entry(hvi_sim *s, const struct geo *g, hvi_gpa at, uint64_t *e)
{
    uint32_t v32 = 0;
    *e = 0;
    if (g->esize == 4) {
        hvi_status st = hvi_sim_phys_read(s, at, &v32, 4);
        *e = v32;
        return st;
    }
    return hvi_sim_phys_read(s, at, e, 8);
}

static hvi_status write_entry(hvi_sim *s, const struct geo *g, hvi_gpa at, uint64_t e)
{
    if (g->esize == 4) {
        uint32_t v32 = (uint32_t)e;
        return hvi_sim_phys_write(s, at, &v32, 4);
    }
    return hvi_sim_phys_write(s, at, &e, 8);
}

static uint64_t table_of(const struct geo *g, uint64_t entry_or_cr3, bool is_cr3)
{
    if (is_cr3 && g->levels == 3)
        return entry_or_cr3 & 0xffffffe0ull; /* PAE: 32-byte aligned PDPT */
    return entry_or_cr3 & (g->esize == 4 ? ADDR32 : ADDR64);
}

hvi_status hvi_sim_pt_new(hvi_sim *sim, hvi_paging_mode mode, uint64_t *cr3_out)
{
    struct geo g;
    if (!sim || !cr3_out || !geo_of(mode, &g))
        return HVI_E_INVAL;
    hvi_gpa f = 0;
    hvi_status st = hvi_sim_alloc_frame(sim, &f);
    if (st == HVI_OK && mode != HVI_PAGING_4LVL && mode != HVI_PAGING_5LVL && f > 0xffffffffull)
        return HVI_E_RANGE; /* 32-bit CR3 cannot hold it */
    if (st == HVI_OK)
        *cr3_out = f;
    return st;
}

/* GPA of the entry at `level` for gva; creates missing tables when `create`. */
static hvi_status entry_at(hvi_sim *s, const struct geo *g, uint64_t cr3, hvi_gva gva,
                           uint32_t level, bool create, hvi_gpa *out)
{
    uint64_t table = table_of(g, cr3, true);
    for (uint32_t l = g->levels; l >= 1; l--) {
        hvi_gpa at = table + index_of(g, gva, l) * g->esize;
        if (l == level) {
            *out = at;
            return HVI_OK;
        }
        uint64_t e = 0;
        hvi_status st = read_entry(s, g, at, &e);
        if (st != HVI_OK)
            return st;
        if (!(e & HVI_SIM_PTE_P)) {
            if (!create)
                return HVI_E_NOT_PRESENT;
            hvi_gpa f = 0;
            st = hvi_sim_alloc_frame(s, &f);
            if (st != HVI_OK)
                return st;
            if (g->esize == 4 && f > 0xffffffffull)
                return HVI_E_RANGE;
            bool pdpte = g->levels == 3 && l == 3;
            e = f | HVI_SIM_PTE_P | (pdpte ? 0 : HVI_SIM_PTE_W | HVI_SIM_PTE_U);
            st = write_entry(s, g, at, e);
            if (st != HVI_OK)
                return st;
        } else if (e & HVI_SIM_PTE_PS && l <= 3 && !(g->levels == 3 && l == 3)) {
            return create ? HVI_E_EXISTS : HVI_E_NOT_PRESENT;
        }
        table = table_of(g, e, false);
    }
    return HVI_E_INTERNAL;
}

static bool size_ok(hvi_paging_mode mode, uint64_t size, uint32_t *level)
{
    *level = 1;
    if (size == HVI_SIM_4K)
        return true;
    *level = 2;
    if (size == HVI_SIM_4M)
        return mode == HVI_PAGING_32;
    if (size == HVI_SIM_2M)
        return mode >= HVI_PAGING_PAE;
    *level = 3;
    return size == HVI_SIM_1G && mode >= HVI_PAGING_4LVL;
}

hvi_status hvi_sim_map(hvi_sim *sim, uint64_t cr3, hvi_paging_mode mode, hvi_gva gva, hvi_gpa gpa,
                       uint64_t page_size, uint64_t flags)
{
    struct geo g;
    uint32_t level = 0;
    if (!sim || !geo_of(mode, &g) || !size_ok(mode, page_size, &level) ||
        ((gva | gpa) & (page_size - 1)))
        return HVI_E_INVAL;
    if (g.esize == 4 && (gva > 0xffffffffull || gpa > 0xffffffffull))
        return HVI_E_RANGE;
    if (mode == HVI_PAGING_PAE && gva > 0xffffffffull)
        return HVI_E_RANGE;
    hvi_gpa at = 0;
    hvi_status st = entry_at(sim, &g, cr3, gva, level, true, &at);
    if (st != HVI_OK)
        return st;
    uint64_t e = gpa | (flags & ~HVI_SIM_PTE_PS) | HVI_SIM_PTE_P | (level > 1 ? HVI_SIM_PTE_PS : 0);
    if (g.esize == 4)
        e &= 0xffffffffull; /* no NX in 32-bit paging */
    return write_entry(sim, &g, at, e);
}

/* Walk gva: the leaf entry's GPA and value, and its level. */
static hvi_status leaf_of(hvi_sim *s, const struct geo *g, uint64_t cr3, hvi_gva gva,
                          hvi_gpa *at_out, uint64_t *e_out, uint32_t *level_out)
{
    uint64_t table = table_of(g, cr3, true);
    for (uint32_t l = g->levels; l >= 1; l--) {
        hvi_gpa at = table + index_of(g, gva, l) * g->esize;
        uint64_t e = 0;
        hvi_status st = read_entry(s, g, at, &e);
        if (st != HVI_OK)
            return st;
        if (!(e & HVI_SIM_PTE_P))
            return HVI_E_NOT_PRESENT;
        bool large = l == 2 || (l == 3 && g->levels >= 4);
        if (l == 1 || (large && (e & HVI_SIM_PTE_PS))) {
            *at_out = at, *e_out = e, *level_out = l;
            return HVI_OK;
        }
        table = table_of(g, e, false);
    }
    return HVI_E_INTERNAL;
}

hvi_status hvi_sim_unmap(hvi_sim *sim, uint64_t cr3, hvi_paging_mode mode, hvi_gva gva)
{
    struct geo g;
    if (!sim || !geo_of(mode, &g))
        return HVI_E_INVAL;
    hvi_gpa at = 0;
    uint64_t e = 0;
    uint32_t l = 0;
    hvi_status st = leaf_of(sim, &g, cr3, gva, &at, &e, &l);
    return st == HVI_OK ? write_entry(sim, &g, at, 0) : st;
}

hvi_status hvi_sim_pte_gpa(hvi_sim *sim, uint64_t cr3, hvi_paging_mode mode, hvi_gva gva,
                           uint32_t level, hvi_gpa *out)
{
    struct geo g;
    if (!sim || !out || !geo_of(mode, &g) || level < 1 || level > g.levels)
        return HVI_E_INVAL;
    return entry_at(sim, &g, cr3, gva, level, false, out);
}

hvi_status hvi_sim_translate(hvi_sim *sim, uint64_t cr3, hvi_paging_mode mode, hvi_gva gva,
                             hvi_gpa *out)
{
    if (!sim || !out)
        return HVI_E_INVAL;
    if (mode == HVI_PAGING_NONE) {
        *out = gva;
        return HVI_OK;
    }
    struct geo g;
    if (!geo_of(mode, &g))
        return HVI_E_INVAL;
    hvi_gpa at = 0;
    uint64_t e = 0;
    uint32_t l = 0;
    hvi_status st = leaf_of(sim, &g, cr3, gva, &at, &e, &l);
    if (st != HVI_OK)
        return st;
    uint64_t size = 1ull << shift_of(&g, l);
    uint64_t base = e & (g.esize == 4 ? ADDR32 : ADDR64) & ~(size - 1);
    *out = base | (gva & (size - 1));
    return HVI_OK;
}
