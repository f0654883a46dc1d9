/*
 * VA-space monitor: every page-table write of the address space is reported (A/D-only filtered),
 * linked tables get hooked, unlinked ones unhooked.
 */
#include <string.h>

#include "harness.h"
#include "hook_fixture.h"

#define PTWIN 0xffffffff82000000ull
/* 48 89 58 08    mov qword ptr [rax+0x8], rbx */
static const uint8_t STORE[] = {0x48, 0x89, 0x58, 0x08};

struct seen {
    int n;
    hvi_gpa gpa;
    uint32_t level;
    uint64_t old_e, new_e;
};

static void on_change(hvi_engine *e, hvi_hook *m, hvi_gpa g, uint32_t lvl, uint64_t o, uint64_t n,
                      void *c)
{
    (void)e, (void)m;
    struct seen *s = c;
    s->n++;
    s->gpa = g, s->level = lvl, s->old_e = o, s->new_e = n;
}

static void store(struct fx *f, hvi_gva at, uint64_t v)
{
    hvi_event_reply rep;
    f->regs->gpr[HVI_RAX] = at - 8;
    f->regs->gpr[HVI_RBX] = v;
    CHECK_OK(hvi_sim_guest_write(f->sim, 0, at, &v, 8, STORE, 4, &rep));
}

HVI_TEST(vasmon_tracks_tables)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    hvi_gpa pde;
    REQUIRE(hvi_sim_pte_gpa(f.sim, f.cr3, HVI_PAGING_4LVL, FX_GVA, 2, &pde) == HVI_OK);
    REQUIRE(hvi_sim_map(f.sim, f.cr3, HVI_PAGING_4LVL, PTWIN, pde & ~0xfffull, HVI_SIM_4K,
                        HVI_SIM_PTE_W) == HVI_OK);
    struct seen s = {0};
    hvi_hook *m;
    REQUIRE(hvi_vasmon_add(f.e, 0, on_change, &s, &m) == HVI_OK);
    /* PML4, PDPT, PD, the PT of FX_GVA and the PT of the window */
    size_t tables = hvi_vasmon_tables(m);
    CHECK_EQ_U64(tables, 5);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 5);
    /* link a new page table under the next PD entry */
    hvi_gpa pt;
    REQUIRE(hvi_sim_alloc_frame(f.sim, &pt) == HVI_OK);
    hvi_gva slot = PTWIN + (pde & 0xfff) + 8;
    store(&f, slot, pt | 3);
    CHECK_EQ_U64(s.n, 1);
    CHECK_EQ_U64(s.level, 2);
    CHECK_EQ_U64(s.gpa, pde + 8);
    CHECK_EQ_U64(s.new_e, pt | 3);
    CHECK_EQ_U64(hvi_vasmon_tables(m), tables + 1);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, pt), HVI_EPT_R | HVI_EPT_X);
    /* A/D only: filtered */
    store(&f, slot, pt | 3 | 0x20);
    CHECK_EQ_U64(s.n, 1);
    /* unlink: the table is unhooked */
    store(&f, slot, 0);
    CHECK_EQ_U64(s.n, 2);
    CHECK_EQ_U64(hvi_vasmon_tables(m), tables);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, pt), HVI_EPT_RWX);
    CHECK_OK(hvi_hook_remove(f.e, m));
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    fx_fini(&f);
}

HVI_TEST(vasmon_self_reference_is_bounded)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    /* a self-referencing PML4 entry (as Windows uses) must not loop */
    uint64_t self = (f.cr3 & ~0xfffull) | 3;
    hvi_sim_phys_write(f.sim, (f.cr3 & ~0xfffull) + 0x100 * 8, &self, 8);
    hvi_hook *m;
    struct seen s = {0};
    REQUIRE(hvi_vasmon_add(f.e, 0, on_change, &s, &m) == HVI_OK);
    CHECK(hvi_vasmon_tables(m) >= 4);
    CHECK_OK(hvi_detach(f.e));
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    fx_fini(&f);
}

HVI_TEST_MAIN()
