/*
 * Page-table and GVA hooks on the simulator: the guest rewrites its own PTE (through a window
 * mapping of the page table) with real store instructions; the GVA hook follows remap, swap-out
 * and swap-in, A/D-only writes are filtered, undecodable writes are resolved after a step.
 */
#include <string.h>

#include "harness.h"
#include "hook_fixture.h"

#define PTWIN 0xffffffff82000000ull
/* 48 89 58 08    mov qword ptr [rax+0x8], rbx */
static const uint8_t MOV_RAX8_RBX[] = {0x48, 0x89, 0x58, 0x08};
/* 0f ff (invalid) */
static const uint8_t BAD[] = {0x0f, 0xff};

struct moves {
    int n;
    hvi_gpa old_gpa, new_gpa;
    bool old_p, new_p;
    int hits;
};

static void on_moved(hvi_engine *e, hvi_hook *h, hvi_gpa og, bool op, hvi_gpa ng, bool np, void *c)
{
    (void)e, (void)h;
    struct moves *m = c;
    m->n++;
    m->old_gpa = og, m->old_p = op, m->new_gpa = ng, m->new_p = np;
}

static uint32_t on_write(hvi_engine *e, hvi_hook *h, const hvi_hook_access *a, void *c)
{
    (void)e, (void)h, (void)a;
    ((struct moves *)c)->hits++;
    return HVI_ACTION_DENY;
}

static hvi_gva pte_window(struct fx *f)
{
    hvi_gpa pte;
    if (hvi_sim_pte_gpa(f->sim, f->cr3, HVI_PAGING_4LVL, FX_GVA, 1, &pte) != HVI_OK ||
        hvi_sim_map(f->sim, f->cr3, HVI_PAGING_4LVL, PTWIN, pte & ~0xfffull, HVI_SIM_4K,
                    HVI_SIM_PTE_W) != HVI_OK)
        return 0;
    return PTWIN + (pte & 0xfff);
}

static hvi_status set_pte(struct fx *f, hvi_gva win, uint64_t v, const uint8_t *insn, size_t n)
{
    hvi_event_reply rep;
    f->regs->gpr[HVI_RAX] = win - 8;
    f->regs->gpr[HVI_RBX] = v;
    return hvi_sim_guest_write(f->sim, 0, win, &v, 8, insn, n, &rep);
}

HVI_TEST(gva_hook_follows_remap_swapout_swapin)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    hvi_gva win = pte_window(&f);
    REQUIRE(win != 0);
    struct moves m = {0};
    hvi_hook *h;
    REQUIRE(hvi_hook_gva_add(f.e, 0, FX_GVA + 0x100, 8, HVI_EPT_W, on_write, on_moved, &m, &h) ==
            HVI_OK);
    hvi_translation t;
    CHECK_OK(hvi_hook_translation(h, &t));
    CHECK_EQ_U64(t.gpa, f.gpa[0] + 0x100);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[0]), HVI_EPT_R | HVI_EPT_X);
    hvi_gpa pte_gpa = t.entry_gpa[0];
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, pte_gpa), HVI_EPT_R | HVI_EPT_X); /* PT hooked */
    uint64_t pte;
    hvi_sim_phys_read(f.sim, pte_gpa, &pte, 8);

    /* A/D-only write: filtered */
    CHECK_OK(set_pte(&f, win, pte | (3u << 5), MOV_RAX8_RBX, 4));
    CHECK_EQ_U64(m.n, 0);
    hvi_sim_phys_read(f.sim, pte_gpa, &pte, 8);
    CHECK(pte & (1u << 6));

    /* remap to gpa[3]: the hook moves, the owner is told */
    CHECK_OK(set_pte(&f, win, (pte & ~0x000ffffffffff000ull) | f.gpa[3], MOV_RAX8_RBX, 4));
    CHECK_EQ_U64(m.n, 1);
    CHECK_EQ_U64(m.old_gpa, f.gpa[0] + 0x100);
    CHECK_EQ_U64(m.new_gpa, f.gpa[3] + 0x100);
    CHECK(m.old_p && m.new_p);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[0]), HVI_EPT_RWX);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[3]), HVI_EPT_R | HVI_EPT_X);
    /* a write through the GVA now lands on the hook at the new frame */
    uint64_t before, after, v = 0x5555;
    hvi_sim_phys_read(f.sim, f.gpa[3] + 0x100, &before, 8);
    f.regs->gpr[HVI_RAX] = FX_GVA + 0x100 - 8;
    f.regs->gpr[HVI_RBX] = v;
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_guest_write(f.sim, 0, FX_GVA + 0x100, &v, 8, MOV_RAX8_RBX, 4, &rep));
    CHECK_EQ_U64(m.hits, 1);
    hvi_sim_phys_read(f.sim, f.gpa[3] + 0x100, &after, 8);
    CHECK_EQ_U64(after, before);

    /* swap-out: PTE cleared */
    CHECK_OK(set_pte(&f, win, 0, MOV_RAX8_RBX, 4));
    CHECK_EQ_U64(m.n, 2);
    CHECK(!m.new_p);
    CHECK_STATUS(hvi_hook_translation(h, &t), HVI_E_NOT_PRESENT);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[3]), HVI_EPT_RWX);

    /* swap-in with an instruction the decoder cannot read: resolved after the step */
    CHECK_OK(set_pte(&f, win, f.gpa[1] | 3, BAD, sizeof(BAD)));
    CHECK_EQ_U64(m.n, 2);
    CHECK(hvi_sim_single_step_enabled(f.sim, 0));
    CHECK_OK(hvi_sim_step(f.sim, 0, &rep));
    CHECK(!hvi_sim_single_step_enabled(f.sim, 0));
    CHECK_EQ_U64(m.n, 3);
    CHECK(m.new_p);
    CHECK_EQ_U64(m.new_gpa, f.gpa[1] + 0x100);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[1]), HVI_EPT_R | HVI_EPT_X);

    CHECK_OK(hvi_hook_remove(f.e, h));
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    fx_fini(&f);
}

struct ptrec {
    int n;
    hvi_translation old_tr, new_tr;
};

static void on_pt(hvi_engine *e, hvi_hook *h, const hvi_translation *o, const hvi_translation *n,
                  void *c)
{
    (void)e, (void)h;
    struct ptrec *r = c;
    r->n++;
    r->old_tr = *o;
    r->new_tr = *n;
}

HVI_TEST(pt_hook_reports_upper_level_change_and_large_page)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    struct ptrec r = {0};
    hvi_hook *h;
    /* map the PD page into a window to rewrite the PD entry (large page / split) */
    hvi_gpa pde;
    REQUIRE(hvi_sim_pte_gpa(f.sim, f.cr3, HVI_PAGING_4LVL, FX_GVA, 2, &pde) == HVI_OK);
    REQUIRE(hvi_sim_map(f.sim, f.cr3, HVI_PAGING_4LVL, PTWIN, pde & ~0xfffull, HVI_SIM_4K,
                        HVI_SIM_PTE_W) == HVI_OK);
    hvi_gva win = PTWIN + (pde & 0xfff);
    REQUIRE(hvi_hook_pt_add(f.e, 0, FX_GVA + 0x123, on_pt, &r, &h) == HVI_OK);
    CHECK_EQ_U64(hvi_hook_frame_count(f.e), 4); /* one entry per level, four tables */
    uint64_t old_pde;
    hvi_sim_phys_read(f.sim, pde, &old_pde, 8);
    /* turn the PD entry into a 2 MiB page at 0x400000 */
    CHECK_OK(set_pte(&f, win, 0x400000ull | 0x83, MOV_RAX8_RBX, 4));
    REQUIRE(r.n == 1);
    CHECK_EQ_U64(r.new_tr.page_size, 0x200000);
    CHECK_EQ_U64(r.new_tr.gpa, 0x400000ull + ((FX_GVA + 0x123) & 0x1fffff));
    CHECK_EQ_U64(r.old_tr.gpa, f.gpa[0] + 0x123);
    CHECK_EQ_U64(hvi_hook_frame_count(f.e), 3); /* the PT level is no longer hooked */
    /* split back: the PD entry points at the old page table again */
    CHECK_OK(set_pte(&f, win, old_pde, MOV_RAX8_RBX, 4));
    CHECK_EQ_U64(r.n, 2);
    CHECK_EQ_U64(r.new_tr.page_size, 0x1000);
    CHECK_EQ_U64(r.new_tr.gpa, f.gpa[0] + 0x123);
    CHECK_EQ_U64(hvi_hook_frame_count(f.e), 4);
    CHECK_OK(hvi_hook_remove(f.e, h));
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    fx_fini(&f);
    REQUIRE(fx_init(&f, HVI_SIM_CAPS_QEMU_LIKE));
    CHECK_STATUS(hvi_hook_pt_add(f.e, 0, FX_GVA, on_pt, &r, &h), HVI_E_UNSUPPORTED);
    fx_fini(&f);
}

HVI_TEST_MAIN()
