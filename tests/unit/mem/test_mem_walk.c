/* Page walks in every paging mode: sizes, rights, absent entries at each level, reserved
 * bits, tables outside RAM, self-referencing tables, KPTI CR3s. */
#include "harness.h"
#include "fixture.h"

#define W HVI_SIM_PTE_W
#define U HVI_SIM_PTE_U
#define NX HVI_SIM_PTE_NX

HVI_TEST(mode_from_regs)
{
    CHECK(hvi_paging_mode_from_regs(0, 0, 0) == HVI_PAGING_NONE);
    CHECK(hvi_paging_mode_from_regs(1ull << 31, 0, 0) == HVI_PAGING_32);
    CHECK(hvi_paging_mode_from_regs(1ull << 31, 1u << 5, 0) == HVI_PAGING_PAE);
    CHECK(hvi_paging_mode_from_regs(1ull << 31, 1u << 5, 1u << 10) == HVI_PAGING_4LVL);
    CHECK(hvi_paging_mode_from_regs(1ull << 31, (1u << 5) | (1u << 12), 1u << 10) ==
          HVI_PAGING_5LVL);
}

static void check_map(struct fx *f, hvi_gva gva, hvi_gpa gpa, uint64_t size, uint64_t flags,
                      uint32_t levels)
{
    CHECK_OK(fx_map(f, gva, gpa, size, flags));
    hvi_translation t;
    hvi_gva probe = gva + size / 2 + 0x123;
    CHECK_OK(hvi_gva_translate(f->e, 0, probe, &t));
    CHECK_EQ_U64(t.gpa, gpa + size / 2 + 0x123);
    CHECK_EQ_U64(t.page_size, size);
    CHECK(t.writable == !!(flags & W));
    CHECK(t.user == !!(flags & U));
    CHECK(t.nx == (f->mode != HVI_PAGING_32 && (flags & NX)));
    CHECK_EQ_U64(t.levels, levels);
    CHECK_EQ_U64(t.fault_level, 0);
    hvi_gpa fast = 0;
    CHECK_OK(hvi_gva_to_gpa(f->e, 0, probe, &fast));
    CHECK_EQ_U64(fast, t.gpa);
}

HVI_TEST(mode_32_with_4m_pages)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_32, 32ull << 20));
    check_map(&f, 0x00401000, fx_frame(&f), HVI_SIM_4K, W | U, 2);
    check_map(&f, 0xc0000000, 0x00800000, HVI_SIM_4M, W, 1);
    check_map(&f, 0x80000000, 0x00c00000, HVI_SIM_4M, U, 1);
    hvi_translation t;
    CHECK_STATUS(hvi_gva_translate(f.e, 0, 0x1ffff000ull | (1ull << 32), &t), HVI_E_RANGE);
    CHECK_EQ_U64(fx_free(&f), 0);
}

/* SDM 4.3: a 4 MiB PDE carries PA[39:32] in bits 20:13 (PSE-36/40). */
HVI_TEST(mode_32_pse36_high_address)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_32, 4ull << 20));
    uint32_t pde = 0x00c00000u | (0x12u << 13) | 0x83u; /* PA 0x12_00c0_0000, P|W|PS */
    REQUIRE(hvi_sim_phys_write(f.sim, f.cr3 + (0x80000000u >> 22) * 4, &pde, 4) == HVI_OK);
    hvi_translation t;
    CHECK_OK(hvi_gva_translate(f.e, 0, 0x80012345, &t));
    CHECK_EQ_U64(t.gpa, 0x1200c12345ull);
    CHECK_EQ_U64(t.page_size, 4ull << 20);
    uint8_t b;
    CHECK_STATUS(hvi_gva_read(f.e, 0, 0x80012345, &b, 1), HVI_E_RANGE);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(mode_pae_with_2m_pages)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_PAE, 32ull << 20));
    check_map(&f, 0x00401000, fx_frame(&f), HVI_SIM_4K, W | U | NX, 3);
    check_map(&f, 0xc0000000, 0x00400000, HVI_SIM_2M, W, 2);
    check_map(&f, 0x7fe00000, 0x00600000, HVI_SIM_2M, U | NX, 2);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(mode_4lvl_with_2m_and_1g_pages)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 32ull << 20));
    check_map(&f, 0xffffffff81000000ull, fx_frame(&f), HVI_SIM_4K, W | NX, 4);
    check_map(&f, 0xffffffff82000000ull, 0x00400000, HVI_SIM_2M, W, 3);
    /* a 1 GiB page may point past RAM: translation succeeds, reading does not */
    check_map(&f, 0xffff888000000000ull, 0, HVI_SIM_1G, W | NX, 2);
    check_map(&f, 0x00007f0000000000ull, 0x40000000, HVI_SIM_1G, U, 2);
    uint8_t b;
    CHECK_STATUS(hvi_gva_read(f.e, 0, 0x00007f0000000000ull + 0x100, &b, 1), HVI_E_RANGE);
    hvi_translation t;
    CHECK_STATUS(hvi_gva_translate(f.e, 0, 0x0000800000000000ull, &t), HVI_E_RANGE);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(mode_5lvl)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_5LVL, 32ull << 20));
    check_map(&f, 0xff11000000001000ull, fx_frame(&f), HVI_SIM_4K, W, 5);
    check_map(&f, 0x00fe000000200000ull, 0x00400000, HVI_SIM_2M, U, 4);
    check_map(&f, 0xffffffffc0000000ull, 0x40000000, HVI_SIM_1G, 0, 3);
    hvi_translation t;
    CHECK_STATUS(hvi_gva_translate(f.e, 0, 0x0100000000000000ull, &t), HVI_E_RANGE);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(paging_off_is_identity)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_NONE, 1ull << 20));
    hvi_gpa g = 0;
    CHECK_OK(hvi_gva_to_gpa(f.e, 0, 0x12345, &g));
    CHECK_EQ_U64(g, 0x12345);
    CHECK_EQ_U64(fx_free(&f), 0);
}

/* Clear the entry at each level in turn: NOT_PRESENT with fault_level = that level. */
HVI_TEST(not_present_at_each_level)
{
    static const hvi_paging_mode modes[] = {HVI_PAGING_32, HVI_PAGING_PAE, HVI_PAGING_4LVL,
                                            HVI_PAGING_5LVL};
    static const uint32_t levels[] = {2, 3, 4, 5};
    for (int m = 0; m < 4; m++) {
        for (uint32_t lvl = 1; lvl <= levels[m]; lvl++) {
            struct fx f;
            REQUIRE(fx_new(&f, modes[m], 8ull << 20));
            hvi_gva va = 0x40201000;
            REQUIRE(fx_map(&f, va, fx_frame(&f), HVI_SIM_4K, W) == HVI_OK);
            hvi_gpa at = 0;
            REQUIRE(hvi_sim_pte_gpa(f.sim, f.cr3, f.mode, va, lvl, &at) == HVI_OK);
            uint64_t zero = 0;
            REQUIRE(hvi_sim_phys_write(f.sim, at, &zero, modes[m] == HVI_PAGING_32 ? 4 : 8) ==
                    HVI_OK);
            hvi_translation t;
            CHECK_STATUS(hvi_gva_translate(f.e, 0, va, &t), HVI_E_NOT_PRESENT);
            CHECK_EQ_U64(t.fault_level, lvl);
            CHECK_EQ_U64(t.entry_gpa[lvl - 1], at);
            uint8_t b;
            CHECK_STATUS(hvi_gva_read(f.e, 0, va, &b, 1), HVI_E_NOT_PRESENT);
            CHECK_EQ_U64(fx_free(&f), 0);
        }
    }
}

static void set_bits(struct fx *f, hvi_gva va, uint32_t lvl, uint64_t bits)
{
    hvi_gpa at = 0;
    uint64_t e = 0;
    size_t sz = f->mode == HVI_PAGING_32 ? 4 : 8;
    if (hvi_sim_pte_gpa(f->sim, f->cr3, f->mode, va, lvl, &at) != HVI_OK ||
        hvi_sim_phys_read(f->sim, at, &e, sz) != HVI_OK)
        return;
    e |= bits;
    (void)hvi_sim_phys_write(f->sim, at, &e, sz);
}

static void expect_reserved(hvi_paging_mode mode, uint64_t size, uint32_t lvl, uint64_t bits)
{
    struct fx f;
    REQUIRE(fx_new(&f, mode, 16ull << 20));
    hvi_gva va = 0x40000000;
    REQUIRE(fx_map(&f, va, size == HVI_SIM_4K ? fx_frame(&f) : 0x800000, size, W) == HVI_OK);
    hvi_translation t;
    CHECK_OK(hvi_gva_translate(f.e, 0, va, &t));
    set_bits(&f, va, lvl, bits);
    CHECK_STATUS(hvi_gva_translate(f.e, 0, va, &t), HVI_E_FORMAT);
    CHECK_EQ_U64(t.fault_level, lvl);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(reserved_bits)
{
    expect_reserved(HVI_PAGING_32, HVI_SIM_4M, 2, 1ull << 21);
    expect_reserved(HVI_PAGING_PAE, HVI_SIM_4K, 3, 1ull << 1); /* PDPTE R/W is reserved */
    expect_reserved(HVI_PAGING_PAE, HVI_SIM_4K, 3, 1ull << 7);
    expect_reserved(HVI_PAGING_PAE, HVI_SIM_4K, 1, 1ull << 60);
    expect_reserved(HVI_PAGING_PAE, HVI_SIM_2M, 2, 1ull << 13);
    expect_reserved(HVI_PAGING_4LVL, HVI_SIM_4K, 4, 1ull << 7); /* PS in a PML4E */
    expect_reserved(HVI_PAGING_5LVL, HVI_SIM_4K, 5, 1ull << 7);
    expect_reserved(HVI_PAGING_4LVL, HVI_SIM_2M, 2, 1ull << 20);
}

HVI_TEST(reserved_bits_1g)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 16ull << 20));
    REQUIRE(fx_map(&f, 0x40000000, 0x40000000, HVI_SIM_1G, W) == HVI_OK);
    set_bits(&f, 0x40000000, 3, 1ull << 13);
    hvi_translation t;
    CHECK_STATUS(hvi_gva_translate(f.e, 0, 0x40000000, &t), HVI_E_FORMAT);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(table_outside_ram_is_range)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
    hvi_gva va = 0xffff800000001000ull;
    REQUIRE(fx_map(&f, va, fx_frame(&f), HVI_SIM_4K, W) == HVI_OK);
    hvi_gpa at = 0;
    REQUIRE(hvi_sim_pte_gpa(f.sim, f.cr3, f.mode, va, 3, &at) == HVI_OK);
    uint64_t bad = 0x7ff00000000ull | 3; /* PDPTE -> page directory far beyond RAM */
    REQUIRE(hvi_sim_phys_write(f.sim, at, &bad, 8) == HVI_OK);
    hvi_translation t;
    CHECK_STATUS(hvi_gva_translate(f.e, 0, va, &t), HVI_E_RANGE);
    CHECK_EQ_U64(t.fault_level, 2);
    /* a CR3 outside RAM */
    CHECK_STATUS(hvi_gva_translate(f.e, 0x7ff00000000ull, va, &t), HVI_E_RANGE);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(self_referencing_table_terminates)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
    uint64_t self = f.cr3 | 3; /* PML4[0] -> PML4 itself, at every level */
    REQUIRE(hvi_sim_phys_write(f.sim, f.cr3, &self, 8) == HVI_OK);
    hvi_translation t;
    CHECK_OK(hvi_gva_translate(f.e, 0, 0x0, &t));
    CHECK_EQ_U64(t.levels, 4);
    CHECK_EQ_U64(t.gpa, f.cr3); /* the PML4 seen as a data page */
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(kpti_two_cr3s)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 8ull << 20));
    uint64_t user_cr3 = 0;
    REQUIRE(hvi_sim_pt_new(f.sim, f.mode, &user_cr3) == HVI_OK);
    hvi_gpa a = fx_frame(&f), b = fx_frame(&f);
    hvi_gva va = 0x401000;
    REQUIRE(fx_map(&f, va, a, HVI_SIM_4K, W | U) == HVI_OK);
    REQUIRE(hvi_sim_map(f.sim, user_cr3, f.mode, va, b, HVI_SIM_4K, U) == HVI_OK);
    hvi_gpa ga = 0, gb = 0;
    CHECK_OK(hvi_gva_to_gpa(f.e, 0, va, &ga));
    CHECK_OK(hvi_gva_to_gpa(f.e, user_cr3 | 0x800 /* PCID bits */, va, &gb));
    CHECK_EQ_U64(ga, a);
    CHECK_EQ_U64(gb, b);
    CHECK_OK(hvi_gva_to_gpa(f.e, f.cr3, va, &ga));
    CHECK_EQ_U64(ga, a);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(translation_cache_flush)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 8ull << 20));
    hvi_gpa a = fx_frame(&f), b = fx_frame(&f);
    hvi_gva va = 0x7000;
    REQUIRE(fx_map(&f, va, a, HVI_SIM_4K, W) == HVI_OK);
    hvi_gpa g = 0;
    CHECK_OK(hvi_gva_to_gpa(f.e, 0, va, &g));
    CHECK_EQ_U64(g, a);
    REQUIRE(hvi_sim_unmap(f.sim, f.cr3, f.mode, va) == HVI_OK);
    REQUIRE(fx_map(&f, va, b, HVI_SIM_4K, W) == HVI_OK);
    CHECK_OK(hvi_gva_to_gpa(f.e, 0, va, &g)); /* cached: still the old frame until a flush */
    CHECK_EQ_U64(g, a);
    /* reads always walk the tables: they see the new frame at once (and refresh the cache) */
    REQUIRE(hvi_sim_phys_write(f.sim, b, "new", 3) == HVI_OK);
    char got[4] = {0};
    CHECK_OK(hvi_gva_read(f.e, 0, va, got, 3));
    CHECK_STR(got, "new");
    REQUIRE(hvi_sim_unmap(f.sim, f.cr3, f.mode, va) == HVI_OK);
    REQUIRE(fx_map(&f, va, a, HVI_SIM_4K, W) == HVI_OK);
    CHECK_OK(hvi_gva_to_gpa(f.e, 0, va, &g));
    CHECK_EQ_U64(g, b); /* the refreshed (now stale again) entry */
    REQUIRE(hvi_sim_unmap(f.sim, f.cr3, f.mode, va) == HVI_OK);
    REQUIRE(fx_map(&f, va, b, HVI_SIM_4K, W) == HVI_OK);
    hvi_mem_flush_translations(f.e, f.cr3);
    CHECK_OK(hvi_gva_to_gpa(f.e, 0, va, &g));
    CHECK_EQ_U64(g, b);
    /* the engine's own write to a paging entry drops cached translations */
    hvi_gpa pte = 0;
    REQUIRE(hvi_sim_pte_gpa(f.sim, f.cr3, f.mode, va, 1, &pte) == HVI_OK);
    uint64_t ent = a | 3;
    CHECK_OK(hvi_gpa_write(f.e, pte, &ent, 8));
    CHECK_OK(hvi_gva_to_gpa(f.e, 0, va, &g));
    CHECK_EQ_U64(g, a);
    ent = b | 3;
    CHECK_OK(hvi_gpa_cache_patch_and_add(f.e, pte, &ent, 8));
    CHECK_OK(hvi_gva_to_gpa(f.e, 0, va, &g));
    CHECK_EQ_U64(g, b);
    /* a guest CR3 write seen by the engine flushes as the TLB would */
    REQUIRE(hvi_sim_unmap(f.sim, f.cr3, f.mode, va) == HVI_OK);
    REQUIRE(fx_map(&f, va, a, HVI_SIM_4K, W) == HVI_OK);
    hvi_event ev = {.size = sizeof(ev), .type = HVI_EV_CR_WRITE, .index = 3,
                    .new_value = f.cr3};
    hvi_event_reply r;
    CHECK_OK(hvi_sim_raise(f.sim, &ev, &r));
    CHECK_OK(hvi_gva_to_gpa(f.e, 0, va, &g));
    CHECK_EQ_U64(g, a);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST_MAIN()
