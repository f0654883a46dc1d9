/* hvi mem — the page walker for every paging mode (Intel SDM vol. 3A, chapter 4).
 *
 * The walk depth is fixed by the mode (2..5 levels), so a self-referencing table cannot make
 * it loop. Every table frame is checked against guest RAM before it is read. Assumptions
 * about the guest's control bits the API does not carry: CR4.PSE = 1 for 32-bit paging
 * (4 MiB pages honoured) and EFER.NXE = 1 for PAE/4/5-level (bit 63 is XD, not reserved).
 * MAXPHYADDR is taken as 52 (the architectural maximum); addresses beyond guest RAM are then
 * caught by the RAM check (HVI_E_RANGE) rather than as reserved bits. */
#include <string.h>

#include "mem/mem_internal.h"

#define P_BIT (1ull << 0)
#define RW_BIT (1ull << 1)
#define US_BIT (1ull << 2)
#define PS_BIT (1ull << 7)
#define XD_BIT (1ull << 63)
#define ADDR64 0x000ffffffffff000ull
#define ADDR32 0xfffff000ull

/* Reserved-bit masks.
 * SDM 4.3, table 4-5/4-6: 32-bit paging, a 4 MiB PDE has bit 21 reserved (with PA limited to
 *   40 bits, bits 20:13 carry PA[39:32]).
 * SDM 4.4.1, table 4-8: PAE PDPTE bits 2:1 and 8:5 reserved, bits 63:M reserved.
 * SDM 4.4.2, tables 4-9..4-11: PAE PDE/PTE bits 62:M reserved; 2 MiB PDE bits 20:13 reserved.
 * SDM 4.5.4, tables 4-14..4-19: PML5E/PML4E bit 7 (PS) reserved; 1 GiB PDPTE bits 29:13,
 *   2 MiB PDE bits 20:13 reserved; bits 51:M reserved (none with M = 52). */
#define RSVD_32_4M (1ull << 21)
#define RSVD_PAE_PDPTE (0x1e6ull | 0xfff0000000000000ull)
#define RSVD_PAE_HI 0x7ff0000000000000ull
#define RSVD_2M 0x1fe000ull
#define RSVD_1G 0x3fffe000ull

uint64_t mem_cr3_root(hvi_paging_mode mode, uint64_t cr3)
{
    switch (mode) {
    case HVI_PAGING_32: return cr3 & ADDR32;
    case HVI_PAGING_PAE: return cr3 & 0xffffffe0ull; /* SDM 4.4.1: CR3[31:5] */
    default: return cr3 & ADDR64;
    }
}

uint64_t mem_cr3(const hvi_engine *e, uint64_t cr3)
{
    return cr3 ? cr3 : e->guest.kernel_cr3;
}

struct walk {
    hvi_engine *e;
    hvi_paging_mode mode;
    uint32_t levels;
    bool wide; /* 8-byte entries */
};

static uint32_t level_shift(const struct walk *w, uint32_t l)
{
    return w->wide ? 12 + 9 * (l - 1) : 12 + 10 * (l - 1);
}

static uint64_t level_index(const struct walk *w, hvi_gva gva, uint32_t l)
{
    if (!w->wide)
        return (gva >> level_shift(w, l)) & 1023;
    if (w->levels == 3 && l == 3)
        return (gva >> 30) & 3;
    return (gva >> level_shift(w, l)) & 511;
}

static hvi_status read_entry(struct walk *w, hvi_gpa at, uint64_t *out)
{
    uint8_t *p = NULL;
    bool transient = false;
    hvi_status st = mem_frame_get(w->e, at & HVI_PAGE_MASK, &p, &transient);
    if (st != HVI_OK)
        return st;
    if (w->wide) {
        memcpy(out, p + (at & 0xfff), 8);
    } else {
        uint32_t v;
        memcpy(&v, p + (at & 0xfff), 4);
        *out = v;
    }
    mem_frame_put(w->e, at & HVI_PAGE_MASK, p, transient);
    return HVI_OK;
}

/* Is `e` at level l a leaf (large page), and are its reserved bits clear? */
static bool entry_reserved(const struct walk *w, uint32_t l, uint64_t e)
{
    if (!w->wide)
        return l == 2 && (e & PS_BIT) && (e & RSVD_32_4M);
    if (w->levels == 3) {
        if (l == 3)
            return e & RSVD_PAE_PDPTE;
        if (e & RSVD_PAE_HI)
            return true;
    } else if (l >= 4) {
        return e & PS_BIT;
    }
    if (l == 2 && (e & PS_BIT))
        return e & RSVD_2M;
    if (l == 3 && (e & PS_BIT))
        return e & RSVD_1G;
    return false;
}

static bool is_leaf(const struct walk *w, uint32_t l, uint64_t e)
{
    if (l == 1)
        return true;
    if (!(e & PS_BIT))
        return false;
    return l == 2 || (l == 3 && w->levels >= 4);
}

/* Physical base of the page a leaf maps. */
static uint64_t leaf_base(const struct walk *w, uint32_t l, uint64_t e)
{
    if (!w->wide) {
        if (l == 1)
            return e & ADDR32;
        return (e & 0xffc00000ull) | ((e & 0x1fe000ull) << 19); /* PSE-36/40: PA[39:32] */
    }
    uint64_t size = 1ull << level_shift(w, l);
    return e & ADDR64 & ~(size - 1);
}

static hvi_status check_gva(const struct walk *w, hvi_gva gva)
{
    if (w->levels <= 3)
        return gva > 0xffffffffull ? HVI_E_RANGE : HVI_OK;
    int bits = w->levels == 4 ? 48 : 57;
    int64_t s = (int64_t)(gva << (64 - bits)) >> (64 - bits); /* canonical sign extension */
    return (uint64_t)s == gva ? HVI_OK : HVI_E_RANGE;
}

static hvi_status walk_levels(struct walk *w, uint64_t table, hvi_gva gva, hvi_translation *t)
{
    hvi_engine *e = w->e;
    for (uint32_t l = w->levels; l >= 1; l--) {
        hvi_gpa at = table + level_index(w, gva, l) * (w->wide ? 8 : 4);
        uint64_t ent = 0;
        t->levels++;
        t->entry_gpa[l - 1] = at;
        hvi_status st = read_entry(w, at, &ent);
        if (st != HVI_OK) {
            t->fault_level = l;
            return st;
        }
        t->entry[l - 1] = ent;
        if (!(ent & P_BIT)) {
            t->fault_level = l;
            return HVI_E_NOT_PRESENT;
        }
        if (entry_reserved(w, l, ent)) {
            t->fault_level = l;
            return hvi_fail(e, HVI_E_FORMAT, "mem: reserved bits in level-%u entry 0x%llx", l,
                            (unsigned long long)ent);
        }
        bool pdpte = w->levels == 3 && l == 3; /* PAE PDPTEs carry no rights */
        if (!pdpte) {
            t->writable = t->writable && (ent & RW_BIT);
            t->user = t->user && (ent & US_BIT);
            t->nx = t->nx || (w->wide && (ent & XD_BIT));
        }
        if (is_leaf(w, l, ent)) {
            t->page_size = 1ull << level_shift(w, l);
            t->gpa = leaf_base(w, l, ent) | (gva & (t->page_size - 1));
            return HVI_OK;
        }
        table = w->wide ? ent & ADDR64 : ent & ADDR32;
    }
    return HVI_E_INTERNAL;
}

hvi_status hvi_gva_translate(hvi_engine *e, uint64_t cr3, hvi_gva gva, hvi_translation *out)
{
    if (!e || !out)
        return HVI_E_INVAL;
    memset(out, 0, sizeof(*out));
    out->gva = gva;
    out->writable = out->user = true;
    struct walk w = {e, e->guest.paging, 0, true};
    switch (w.mode) {
    case HVI_PAGING_NONE:
        out->gpa = gva, out->page_size = HVI_PAGE_SIZE, out->nx = false;
        return HVI_OK;
    case HVI_PAGING_32: w.levels = 2, w.wide = false; break;
    case HVI_PAGING_PAE: w.levels = 3; break;
    case HVI_PAGING_4LVL: w.levels = 4; break;
    case HVI_PAGING_5LVL: w.levels = 5; break;
    default: return HVI_E_STATE;
    }
    hvi_status st = check_gva(&w, gva);
    if (st != HVI_OK)
        return hvi_fail(e, st, "mem: GVA 0x%llx not canonical for %s paging",
                        (unsigned long long)gva, hvi_paging_mode_name(w.mode));
    if (e->mem || mem_state(e))
        e->mem->walks++;
    return walk_levels(&w, mem_cr3_root(w.mode, mem_cr3(e, cr3)), gva, out);
}

hvi_status mem_xlate(hvi_engine *e, uint64_t cr3, hvi_gva gva, bool cached, hvi_gpa *gpa,
                     uint8_t *flags)
{
    struct hvi_mem_state *m = e->mem ? e->mem : mem_state(e);
    if (!m)
        return HVI_E_NOMEM;
    cr3 = mem_cr3(e, cr3);
    uint64_t root = mem_cr3_root(e->guest.paging, cr3), vpn = gva >> 12;
    struct mem_tc *c = mem_tc_slot(m, root, vpn);
    if (cached && c->gen == m->gen && c->vpn == vpn && c->root == root) {
        m->tc_hits++;
        *gpa = (c->gpa & HVI_PAGE_MASK) | (gva & 0xfff);
        *flags = (uint8_t)(c->gpa & 0xff);
        return HVI_OK;
    }
    hvi_translation t;
    hvi_status st = hvi_gva_translate(e, cr3, gva, &t);
    if (st != HVI_OK) {
        if (c->vpn == vpn && c->root == root)
            c->gen = 0; /* the page went away: drop a stale cached translation */
        return st;
    }
    *flags = (uint8_t)((t.writable ? MEM_TC_W : 0) | (t.user ? MEM_TC_U : 0) |
                       (t.nx ? MEM_TC_NX : 0));
    c->root = root, c->vpn = vpn, c->gen = m->gen, c->gpa = (t.gpa & HVI_PAGE_MASK) | *flags;
    *gpa = t.gpa;
    return HVI_OK;
}

hvi_status hvi_gva_to_gpa(hvi_engine *e, uint64_t cr3, hvi_gva gva, hvi_gpa *out)
{
    if (!e || !out)
        return HVI_E_INVAL;
    struct hvi_mem_state *m = e->mem;
    if (m && !cr3) { /* hot path: kernel CR3, cached translation */
        uint64_t vpn = gva >> 12;
        const struct mem_tc *c = &m->tc[(vpn ^ m->kmix) & (MEM_TC_SIZE - 1)];
        if (c->vpn == vpn && c->gen == m->gen && c->root == m->kroot) {
            *out = (c->gpa & HVI_PAGE_MASK) | (gva & 0xfff);
            return HVI_OK;
        }
    }
    uint8_t flags;
    return mem_xlate(e, cr3, gva, true, out, &flags);
}
