/* Randomized: the engine's translation against a deliberately simple reference walker
 * written here, over many random mappings in every paging mode. */
#include "harness.h"
#include "fixture.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

struct ref {
    bool ok;
    hvi_gpa gpa;
    uint64_t size;
    bool w, u, nx;
};

static uint64_t rd(hvi_sim *s, hvi_gpa at, bool wide)
{
    uint64_t v = 0;
    if (hvi_sim_phys_read(s, at, &v, wide ? 8 : 4) != HVI_OK)
        return 0;
    return v;
}

/* Textbook walk: one loop per level, index = bits of gva, table = entry address bits. */
static struct ref ref_walk(hvi_sim *s, hvi_paging_mode mode, uint64_t cr3, hvi_gva va)
{
    struct ref r = {false, 0, 0, true, true, false};
    int levels = mode == HVI_PAGING_32 ? 2 : mode == HVI_PAGING_PAE ? 3 : mode == HVI_PAGING_4LVL ? 4 : 5;
    bool wide = mode != HVI_PAGING_32;
    int bits = wide ? 9 : 10;
    uint64_t amask = wide ? 0x000ffffffffff000ull : 0xfffff000ull;
    uint64_t table = mode == HVI_PAGING_PAE ? (cr3 & 0xffffffe0ull) : (cr3 & amask);
    for (int l = levels; l >= 1; l--) {
        int shift = 12 + bits * (l - 1);
        uint64_t idx = (va >> shift) & ((1ull << bits) - 1);
        if (mode == HVI_PAGING_PAE && l == 3)
            idx = (va >> 30) & 3;
        uint64_t e = rd(s, table + idx * (wide ? 8 : 4), wide);
        if (!(e & 1))
            return r;
        if (!(mode == HVI_PAGING_PAE && l == 3)) {
            r.w = r.w && (e & 2);
            r.u = r.u && (e & 4);
            r.nx = r.nx || (wide && (e >> 63));
        }
        bool leaf = l == 1 || ((e & 0x80) && (l == 2 || (l == 3 && levels >= 4)));
        if (leaf) {
            r.size = 1ull << shift;
            r.gpa = (e & amask & ~(r.size - 1)) | (va & (r.size - 1));
            r.ok = true;
            return r;
        }
        table = e & amask;
    }
    return r;
}

static hvi_gva canon(hvi_paging_mode mode, uint64_t v)
{
    if (mode == HVI_PAGING_32 || mode == HVI_PAGING_PAE)
        return v & 0xffffffffull;
    int b = mode == HVI_PAGING_4LVL ? 48 : 57;
    return (uint64_t)((int64_t)(v << (64 - b)) >> (64 - b));
}

static void random_mode(hvi_paging_mode mode)
{
    struct fx f;
    REQUIRE(fx_new(&f, mode, 64ull << 20));
    static const uint64_t flagset[] = {HVI_SIM_PTE_W, HVI_SIM_PTE_U, HVI_SIM_PTE_NX,
                                       HVI_SIM_PTE_A, HVI_SIM_PTE_D, HVI_SIM_PTE_G,
                                       HVI_SIM_PTE_PCD};
    hvi_gva mapped[400];
    int nm = 0;
    /* cluster the addresses in a few regions so tables are shared and large pages collide */
    uint64_t regions[4];
    for (int i = 0; i < 4; i++)
        regions[i] = canon(mode, rnd() & ~((1ull << 30) - 1));
    for (int i = 0; i < 400; i++) {
        uint64_t size = HVI_SIM_4K, pick = rnd() % 10;
        if (pick == 0)
            size = mode == HVI_PAGING_32 ? HVI_SIM_4M : HVI_SIM_2M;
        else if (pick == 1 && mode >= HVI_PAGING_4LVL)
            size = HVI_SIM_1G;
        uint64_t flags = 0;
        for (int k = 0; k < 7; k++)
            if (rnd() & 1)
                flags |= flagset[k];
        /* 1 GiB pages live in their own region (region 3) so they do not swallow the rest */
        hvi_gva va = size == HVI_SIM_1G ? canon(mode, regions[3] + ((rnd() % 64) << 30))
                                        : canon(mode, regions[rnd() % 3] + (rnd() % (1ull << 30)));
        va &= ~(size - 1);
        hvi_gpa pa = (rnd() % (1ull << 34)) & ~(size - 1);
        if (mode == HVI_PAGING_32 || mode == HVI_PAGING_PAE)
            pa &= 0xffffffffull;
        if (hvi_sim_map(f.sim, f.cr3, mode, va, pa, size, flags) == HVI_OK)
            mapped[nm++] = va;
        if (rnd() % 8 == 0 && nm)
            (void)hvi_sim_unmap(f.sim, f.cr3, mode, mapped[rnd() % (uint64_t)nm]);
    }
    CHECK(nm > 300);
    /* vary the rights on upper levels too, so effective rights combine several entries */
    uint32_t levels = mode == HVI_PAGING_32 ? 2 : mode == HVI_PAGING_PAE ? 3 : mode == HVI_PAGING_4LVL ? 4 : 5;
    for (int i = 0; i < 150 && nm; i++) {
        uint32_t lvl = 2 + (uint32_t)(rnd() % (levels - 1));
        if (mode == HVI_PAGING_PAE && lvl == 3)
            continue; /* PDPTE rights bits are reserved */
        hvi_gpa at = 0;
        if (hvi_sim_pte_gpa(f.sim, f.cr3, mode, mapped[rnd() % (uint64_t)nm], lvl, &at) != HVI_OK)
            continue;
        uint64_t e = 0, flip = rnd() & (HVI_SIM_PTE_W | HVI_SIM_PTE_U | HVI_SIM_PTE_NX);
        size_t sz = mode == HVI_PAGING_32 ? 4 : 8;
        if (sz == 4)
            flip &= 0xffffffffull;
        (void)hvi_sim_phys_read(f.sim, at, &e, sz);
        if (e & 1)
            e ^= flip;
        (void)hvi_sim_phys_write(f.sim, at, &e, sz);
    }
    int agree = 0, present = 0;
    for (int i = 0; i < 4000; i++) {
        hvi_gva va = i % 2 && nm ? mapped[rnd() % (uint64_t)nm] + (rnd() % 4096)
                                 : canon(mode, regions[rnd() % 4] + (rnd() % (1ull << 30)));
        struct ref r = ref_walk(f.sim, mode, f.cr3, va);
        hvi_translation t;
        hvi_status st = hvi_gva_translate(f.e, 0, va, &t);
        bool same = r.ok ? st == HVI_OK && t.gpa == r.gpa && t.page_size == r.size &&
                               t.writable == r.w && t.user == r.u && t.nx == r.nx
                         : st == HVI_E_NOT_PRESENT;
        hvi_gpa fast = 0;
        hvi_status fst = hvi_gva_to_gpa(f.e, 0, va, &fast);
        same = same && fst == st && (!r.ok || fast == r.gpa);
        if (!same)
            fprintf(stderr, "  mode %d va 0x%" PRIx64 ": ref ok=%d gpa 0x%" PRIx64
                            " / engine %d gpa 0x%" PRIx64 "\n",
                    (int)mode, va, r.ok, r.gpa, (int)st, t.gpa);
        agree += same;
        present += r.ok;
    }
    CHECK_EQ_U64(agree, 4000);
    CHECK(present > 1500);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(random_32) { random_mode(HVI_PAGING_32); }
HVI_TEST(random_pae) { random_mode(HVI_PAGING_PAE); }
HVI_TEST(random_4lvl) { random_mode(HVI_PAGING_4LVL); }
HVI_TEST(random_5lvl) { random_mode(HVI_PAGING_5LVL); }

HVI_TEST_MAIN()
