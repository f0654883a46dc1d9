/*
 * swapmem on the simulator: a request over a swapped-out user page, #PF injection only at a safe
 * point, completion when the guest maps the page back (a real store to its PTE), cancellation.
 */
#include <string.h>

#include "harness.h"
#include "hook_fixture.h"
#include "hvi/protect.h"

#define UVA 0x400000ull
#define PTWIN 0xffffffff82000000ull
/* 48 89 58 08    mov qword ptr [rax+0x8], rbx */
static const uint8_t MOV_RAX8_RBX[] = {0x48, 0x89, 0x58, 0x08};

struct got {
    int n;
    uint8_t data[64];
    uint32_t len;
    hvi_gva gva;
};

static void on_data(hvi_engine *e, uint64_t cr3, hvi_gva gva, const void *d, uint32_t len, void *c)
{
    (void)e, (void)cr3;
    struct got *g = c;
    g->n++;
    g->gva = gva;
    g->len = len;
    memcpy(g->data, d, len < sizeof(g->data) ? len : sizeof(g->data));
}

static hvi_gpa user_frames[2];
static uint64_t pte_value;

/* Map two user pages, remember page 0's PTE, make a window on its page table, swap page 0 out. */
static bool setup(struct fx *f, hvi_gva *win)
{
    for (int i = 0; i < 2; i++) {
        if (hvi_sim_alloc_frame(f->sim, &user_frames[i]) != HVI_OK ||
            hvi_sim_map(f->sim, f->cr3, HVI_PAGING_4LVL, UVA + (uint64_t)i * 4096, user_frames[i],
                        HVI_SIM_4K, HVI_SIM_PTE_W | HVI_SIM_PTE_U) != HVI_OK)
            return false;
        uint8_t fill[4096];
        for (int k = 0; k < 4096; k++)
            fill[k] = (uint8_t)(0x40 + i + k);
        hvi_sim_phys_write(f->sim, user_frames[i], fill, sizeof(fill));
    }
    hvi_gpa pte;
    if (hvi_sim_pte_gpa(f->sim, f->cr3, HVI_PAGING_4LVL, UVA, 1, &pte) != HVI_OK ||
        hvi_sim_map(f->sim, f->cr3, HVI_PAGING_4LVL, PTWIN, pte & ~0xfffull, HVI_SIM_4K,
                    HVI_SIM_PTE_W) != HVI_OK)
        return false;
    hvi_sim_phys_read(f->sim, pte, &pte_value, 8);
    *win = PTWIN + (pte & 0xfff);
    hvi_mem_flush_translations(f->e, 0);
    return hvi_sim_unmap(f->sim, f->cr3, HVI_PAGING_4LVL, UVA) == HVI_OK;
}

static void bp_event(struct fx *f)
{
    hvi_event ev = {.size = sizeof(ev), .type = HVI_EV_BREAKPOINT, .vcpu = 0, .gva = 0x1234};
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_raise(f->sim, &ev, &rep));
}

HVI_TEST(swapped_out_page_injected_then_read)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    hvi_gva win;
    REQUIRE(setup(&f, &win));
    hvi_mem_flush_translations(f.e, 0);
    struct got g = {0};
    hvi_swapmem *h;
    REQUIRE(hvi_swapmem_read(f.e, 0, UVA + 0xff0, 0x20, 0, on_data, &g, &h) == HVI_OK);
    CHECK(h != NULL);
    CHECK_EQ_U64(hvi_swapmem_pending(f.e), 1);
    CHECK_EQ_U64(g.n, 0);
    /* kernel mode: not a safe point */
    f.regs->seg[HVI_CS].selector = 0x10;
    f.regs->rflags = 0x202;
    bp_event(&f);
    CHECK(!hvi_sim_pending_exception(f.sim, 0, NULL, NULL, NULL));
    /* user mode, interrupts off: not yet */
    f.regs->seg[HVI_CS].selector = 0x33;
    f.regs->rflags = 0x2;
    bp_event(&f);
    CHECK(!hvi_sim_pending_exception(f.sim, 0, NULL, NULL, NULL));
    /* user mode, IF=1, same CR3: inject #PF for the missing page */
    f.regs->rflags = 0x202;
    bp_event(&f);
    uint8_t vec = 0;
    uint32_t err = 0;
    uint64_t cr2 = 0;
    CHECK(hvi_sim_pending_exception(f.sim, 0, &vec, &err, &cr2));
    CHECK_EQ_U64(vec, 14);
    CHECK_EQ_U64(cr2, UVA);
    CHECK_EQ_U64(err, 4);
    hvi_sim_clear_exception(f.sim, 0);
    bp_event(&f); /* injected once only */
    CHECK(!hvi_sim_pending_exception(f.sim, 0, NULL, NULL, NULL));
    /* the guest swaps the page in: its PTE is written back */
    hvi_event_reply rep;
    f.regs->gpr[HVI_RAX] = win - 8;
    f.regs->gpr[HVI_RBX] = pte_value;
    CHECK_OK(hvi_sim_guest_write(f.sim, 0, win, &pte_value, 8, MOV_RAX8_RBX, 4, &rep));
    REQUIRE(g.n == 1);
    CHECK_EQ_U64(g.gva, UVA + 0xff0);
    CHECK_EQ_U64(g.len, 0x20);
    for (int i = 0; i < 0x20; i++) {
        uint8_t want = i < 16 ? (uint8_t)(0x40 + 0xff0 + i) : (uint8_t)(0x41 + (i - 16));
        CHECK_EQ_U64(g.data[i], want);
    }
    CHECK_EQ_U64(hvi_swapmem_pending(f.e), 0);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    fx_fini(&f);
}

HVI_TEST(present_now_cancel_and_no_inject)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    hvi_gva win;
    REQUIRE(setup(&f, &win));
    struct got g = {0};
    hvi_swapmem *h = (hvi_swapmem *)&g;
    CHECK_OK(hvi_swapmem_read(f.e, 0, UVA + 4096, 16, 0, on_data, &g, &h));
    CHECK_EQ_U64(g.n, 1); /* present: immediate */
    CHECK(h == NULL);
    CHECK_OK(hvi_swapmem_read(f.e, 0, UVA, 8, HVI_SWAPMEM_NO_INJECT, on_data, &g, &h));
    f.regs->seg[HVI_CS].selector = 0x33;
    f.regs->rflags = 0x202;
    bp_event(&f);
    CHECK(!hvi_sim_pending_exception(f.sim, 0, NULL, NULL, NULL));
    CHECK_OK(hvi_swapmem_cancel(f.e, h));
    CHECK_STATUS(hvi_swapmem_cancel(f.e, h), HVI_E_NOT_FOUND);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    CHECK_OK(hvi_swapmem_read(f.e, 0, UVA, 8, 0, on_data, &g, &h));
    CHECK_OK(hvi_swapmem_read(f.e, 0, UVA + 8, 8, 0, on_data, &g, &h));
    CHECK_EQ_U64(hvi_swapmem_cancel_cr3(f.e, f.cr3 | 0x5), 2); /* PCID bits ignored */
    CHECK_EQ_U64(hvi_swapmem_pending(f.e), 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    CHECK_STATUS(hvi_swapmem_read(f.e, 0, UVA, 0, 0, on_data, &g, &h), HVI_E_INVAL);
    /* detach cancels what is pending */
    CHECK_OK(hvi_swapmem_read(f.e, 0, UVA, 8, 0, on_data, &g, &h));
    CHECK_OK(hvi_detach(f.e));
    CHECK_EQ_U64(hvi_swapmem_pending(f.e), 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    CHECK_EQ_U64(g.n, 1);
    fx_fini(&f);
}

HVI_TEST_MAIN()
