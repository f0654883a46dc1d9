/*
 * GPA hooks, register hooks and detours on the simulator, driven with real instruction bytes.
 */
#include <string.h>

#include "harness.h"
#include "hook_fixture.h"

/* 48 89 58 08    mov qword ptr [rax+0x8], rbx */
static const uint8_t MOV_RAX8_RBX[] = {0x48, 0x89, 0x58, 0x08};
/* 0f ff          (invalid opcode) */
static const uint8_t BAD[] = {0x0f, 0xff};

struct rec {
    int calls;
    uint32_t action;
    hvi_hook_access last;
    bool had_insn;
    char text[64];
    bool remove_self;
    hvi_hook *self;
};

static uint32_t record_cb(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc, void *ctx)
{
    struct rec *r = ctx;
    r->calls++;
    r->last = *acc;
    r->had_insn = acc->insn != NULL;
    if (acc->insn)
        memcpy(r->text, acc->insn->text, sizeof(r->text));
    if (r->remove_self)
        CHECK_OK(hvi_hook_remove(e, hook));
    return r->action;
}

static hvi_status guest_mov(struct fx *f, hvi_gva target, uint64_t value, hvi_event_reply *rep)
{
    f->regs->gpr[HVI_RAX] = target - 8;
    f->regs->gpr[HVI_RBX] = value;
    return hvi_sim_guest_write(f->sim, 0, target, &value, 8, MOV_RAX8_RBX, sizeof(MOV_RAX8_RBX),
                               rep);
}

HVI_TEST(ept_write_deny_leaves_memory_and_skips_insn)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    struct rec r = {.action = HVI_ACTION_DENY};
    hvi_hook *h;
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[0] + 0x100, 8, HVI_EPT_W, record_cb, &r, &h) == HVI_OK);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[0]), HVI_EPT_R | HVI_EPT_X);
    uint8_t before[8], after[8];
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x100, before, 8);
    uint64_t rip0 = f.regs->rip;
    hvi_event_reply rep;
    CHECK_OK(guest_mov(&f, FX_GVA + 0x100, 0x4141414142424242ull, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    CHECK_EQ_U64(r.calls, 1);
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x100, after, 8);
    CHECK(memcmp(before, after, 8) == 0);
    CHECK_EQ_U64(f.regs->rip, rip0 + 4);
    CHECK(rep.regs_changed);
    CHECK_EQ_U64(r.last.gpa, f.gpa[0] + 0x100);
    CHECK_EQ_U64(r.last.gva, FX_GVA + 0x100);
    CHECK_EQ_U64(r.last.size, 8);
    CHECK(r.last.values_known);
    CHECK(memcmp(r.last.old_bytes, before, 8) == 0);
    uint64_t nv;
    memcpy(&nv, r.last.new_bytes, 8);
    CHECK_EQ_U64(nv, 0x4141414142424242ull);
    CHECK_STR(r.text, "mov [rax+0x08], rbx");

    /* same frame, outside the hooked bytes: no callback, write done */
    f.regs->rip = rip0;
    CHECK_OK(guest_mov(&f, FX_GVA + 0x200, 0x1122334455667788ull, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    CHECK_EQ_U64(r.calls, 1);
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x200, after, 8);
    memcpy(&nv, after, 8);
    CHECK_EQ_U64(nv, 0x1122334455667788ull);

    /* allowed write inside the range goes through */
    r.action = HVI_ACTION_ALLOW;
    CHECK_OK(guest_mov(&f, FX_GVA + 0x104, 0x99, &rep)); /* overlaps bytes 0x104..0x107 */
    CHECK_EQ_U64(r.calls, 2);
    CHECK_EQ_U64(r.last.size, 8);
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x104, after, 8);
    CHECK_EQ_U64(after[0], 0x99);
    CHECK_OK(hvi_hook_remove(f.e, h));
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[0]), HVI_EPT_RWX);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    CHECK_EQ_U64(hvi_sim_outstanding_maps(f.sim), 0);
    fx_fini(&f);
}

HVI_TEST(rights_combine_and_restore_exactly)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    struct rec r = {0};
    hvi_hook *w, *x, *rd;
    hvi_sim_set_ept_rights(f.sim, f.gpa[1], HVI_EPT_R | HVI_EPT_X); /* someone else's rights */
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[0] + 16, 4, HVI_EPT_W, record_cb, &r, &w) == HVI_OK);
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[0] + 4000, 200, HVI_EPT_X, record_cb, &r, &x) == HVI_OK);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[0]), HVI_EPT_R);
    /* the X hook spans into the next virtual page's GPA + 4096 range: physically gpa[0]+4096 */
    CHECK_EQ_U64(hvi_hook_frame_count(f.e), 2);
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[1], 1, HVI_EPT_R, record_cb, &r, &rd) == HVI_OK);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[1]), HVI_EPT_X); /* read hook drops W too */
    CHECK_OK(hvi_hook_remove(f.e, w));
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[0]), HVI_EPT_R | HVI_EPT_W);
    CHECK_OK(hvi_hook_remove(f.e, x));
    CHECK_OK(hvi_hook_remove(f.e, rd));
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[0]), HVI_EPT_RWX);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[0] + 4096), HVI_EPT_RWX);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[1]), HVI_EPT_R | HVI_EPT_X);
    CHECK_EQ_U64(hvi_hook_frame_count(f.e), 0);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    CHECK_STATUS(hvi_hook_remove(f.e, NULL), HVI_E_INVAL);
    fx_fini(&f);
}

HVI_TEST(remove_inside_own_callback)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    struct rec a = {.action = HVI_ACTION_ALLOW, .remove_self = true};
    struct rec b = {.action = HVI_ACTION_ALLOW};
    hvi_hook *ha, *hb;
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[2] + 0x10, 8, HVI_EPT_W, record_cb, &a, &ha) == HVI_OK);
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[2] + 0x10, 8, HVI_EPT_W, record_cb, &b, &hb) == HVI_OK);
    hvi_event_reply rep;
    CHECK_OK(guest_mov(&f, FX_GVA + 2 * 4096 + 0x10, 7, &rep));
    CHECK_EQ_U64(a.calls, 1);
    CHECK_EQ_U64(b.calls, 1);
    CHECK_EQ_U64(hvi_hook_count(f.e), 1);
    CHECK_OK(guest_mov(&f, FX_GVA + 2 * 4096 + 0x10, 8, &rep));
    CHECK_EQ_U64(a.calls, 1);
    CHECK_EQ_U64(b.calls, 2);
    b.remove_self = true;
    CHECK_OK(guest_mov(&f, FX_GVA + 2 * 4096 + 0x10, 9, &rep));
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[2]), HVI_EPT_RWX);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    fx_fini(&f);
}

HVI_TEST(undecodable_instruction_still_dispatched_by_event_len)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    struct rec r = {.action = HVI_ACTION_DENY};
    hvi_hook *h;
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[0] + 0x300, 2, HVI_EPT_W, record_cb, &r, &h) == HVI_OK);
    uint8_t before[4], after[4];
    uint32_t v = 0xdeadbeef;
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x2fe, before, 4);
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_guest_write(f.sim, 0, FX_GVA + 0x2fe, &v, 4, BAD, sizeof(BAD), &rep));
    CHECK_EQ_U64(r.calls, 1);
    CHECK(!r.had_insn);
    CHECK_EQ_U64(r.last.size, 4);
    CHECK(!r.last.values_known);
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x2fe, after, 4);
    CHECK(memcmp(before, after, 4) == 0);
    fx_fini(&f);
}

HVI_TEST(access_straddling_pages)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    struct rec r = {.action = HVI_ACTION_DENY};
    hvi_hook *h;
    /* hook the first 2 bytes of page 1; write 8 bytes at the last 4 of page 0 */
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[1], 2, HVI_EPT_W, record_cb, &r, &h) == HVI_OK);
    uint8_t b0[4], b1[4], a0[4], a1[4];
    hvi_sim_phys_read(f.sim, f.gpa[0] + 4092, b0, 4);
    hvi_sim_phys_read(f.sim, f.gpa[1], b1, 4);
    hvi_event_reply rep;
    CHECK_OK(guest_mov(&f, FX_GVA + 4092, 0x0102030405060708ull, &rep));
    CHECK_EQ_U64(r.calls, 1);
    CHECK_EQ_U64(r.last.gpa, f.gpa[1]);
    CHECK_EQ_U64(r.last.size, 4);
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    hvi_sim_phys_read(f.sim, f.gpa[0] + 4092, a0, 4);
    hvi_sim_phys_read(f.sim, f.gpa[1], a1, 4);
    CHECK(memcmp(b0, a0, 4) == 0 && memcmp(b1, a1, 4) == 0);
    fx_fini(&f);
}

HVI_TEST(exec_and_read_hooks)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    struct rec rx = {.action = HVI_ACTION_ALLOW}, rr = {.action = HVI_ACTION_DENY};
    hvi_hook *hx, *hr;
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[3] + 0x40, 1, HVI_EPT_X, record_cb, &rx, &hx) == HVI_OK);
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[2] + 0x80, 8, HVI_EPT_R, record_cb, &rr, &hr) == HVI_OK);
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, FX_GVA + 3 * 4096 + 0x41, &rep)); /* other byte */
    CHECK_EQ_U64(rx.calls, 0);
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, FX_GVA + 3 * 4096 + 0x40, &rep));
    CHECK_EQ_U64(rx.calls, 1);
    CHECK_EQ_U64(rx.last.access, HVI_EPT_X);
    /* 48 8b 40 08   mov rax, qword ptr [rax+0x8] */
    static const uint8_t load[] = {0x48, 0x8b, 0x40, 0x08};
    uint8_t buf[8];
    f.regs->gpr[HVI_RAX] = FX_GVA + 2 * 4096 + 0x78;
    CHECK_OK(hvi_sim_guest_read(f.sim, 0, FX_GVA + 2 * 4096 + 0x80, buf, 8, load, 4, &rep));
    CHECK_EQ_U64(rr.calls, 1);
    CHECK_EQ_U64(rr.last.access, HVI_EPT_R);
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    fx_fini(&f);
}

HVI_TEST(glue_failure_mid_update_keeps_rights_consistent)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    struct rec r = {0};
    hvi_hook *h = NULL;
    /* a hook over 3 physical frames: the 2nd set_ept_rights fails */
    hvi_gpa base = f.gpa[0];
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_EPT, 1, HVI_E_BACKEND) == HVI_OK);
    CHECK_STATUS(hvi_hook_gpa_add(f.e, base + 100, 3 * 4096, HVI_EPT_W, record_cb, &r, &h),
                 HVI_E_BACKEND);
    /* the rollback of the first frame failed too (the glue keeps failing): it is stale */
    CHECK(h == NULL);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 1);
    hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_EPT, 0, HVI_OK);
    CHECK_OK(hvi_hook_sync(f.e));
    CHECK_EQ_U64(hvi_hook_frame_count(f.e), 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    /* removal fails half-way: the hook is gone, unrestored frames are stale until the glue
     * works again */
    REQUIRE(hvi_hook_gpa_add(f.e, base + 100, 3 * 4096, HVI_EPT_W, record_cb, &r, &h) == HVI_OK);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 4);
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_EPT, 2, HVI_E_BACKEND) == HVI_OK);
    CHECK_STATUS(hvi_hook_remove(f.e, h), HVI_E_BACKEND);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 2);
    CHECK_EQ_U64(hvi_hook_frame_count(f.e), 2);
    CHECK_STATUS(hvi_hook_sync(f.e), HVI_E_BACKEND);
    hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_EPT, 0, HVI_OK);
    CHECK_OK(hvi_hook_sync(f.e));
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    CHECK_EQ_U64(hvi_hook_frame_count(f.e), 0);
    /* get_ept_rights failing: nothing changes */
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_GET_EPT, 0, HVI_E_BACKEND) == HVI_OK);
    CHECK_STATUS(hvi_hook_gpa_add(f.e, base, 8, HVI_EPT_W, record_cb, &r, &h), HVI_E_BACKEND);
    hvi_sim_fail_call(f.sim, HVI_SIM_CALL_GET_EPT, 0, HVI_OK);
    CHECK_EQ_U64(hvi_hook_frame_count(f.e), 0);
    /* bad arguments */
    CHECK_STATUS(hvi_hook_gpa_add(f.e, base, 0, HVI_EPT_W, record_cb, &r, &h), HVI_E_INVAL);
    CHECK_STATUS(hvi_hook_gpa_add(f.e, base, 8, 0, record_cb, &r, &h), HVI_E_INVAL);
    CHECK_STATUS(hvi_hook_gpa_add(f.e, ~0ull - 2, 8, HVI_EPT_W, record_cb, &r, &h), HVI_E_INVAL);
    CHECK_STATUS(hvi_hook_gpa_add(f.e, base, 8, 8, record_cb, &r, &h), HVI_E_INVAL);
    fx_fini(&f);
}

HVI_TEST(watchpoint_strategy_undoes_denied_write)
{
    struct fx f;
    REQUIRE(fx_init(&f, HVI_SIM_CAPS_QEMU_LIKE));
    struct rec r = {.action = HVI_ACTION_DENY};
    hvi_hook *h;
    hvi_gva gva = FX_GVA + 0x500;
    CHECK_STATUS(hvi_hook_gpa_add_gva(f.e, f.gpa[0] + 0x500, gva, 8, HVI_EPT_R, record_cb, &r, &h),
                 HVI_E_UNSUPPORTED);
    CHECK_STATUS(hvi_hook_gpa_add(f.e, f.gpa[0] + 0x500, 8, HVI_EPT_W, record_cb, &r, &h),
                 HVI_E_INVAL); /* no GVA */
    REQUIRE(hvi_hook_gpa_add_gva(f.e, f.gpa[0] + 0x500, gva, 12, HVI_EPT_W, record_cb, &r, &h) ==
            HVI_OK);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 2);
    CHECK_EQ_U64(hvi_sim_ept_rights(f.sim, f.gpa[0]), HVI_EPT_RWX);
    uint8_t before[12], after[12];
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x500, before, 12);
    hvi_event_reply rep;
    CHECK_OK(guest_mov(&f, gva + 2, 0xabababababababull, &rep));
    CHECK_EQ_U64(r.calls, 1);
    CHECK(r.last.after_access);
    CHECK_EQ_U64(r.last.gpa, f.gpa[0] + 0x502);
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x500, after, 12);
    CHECK(memcmp(before, after, 12) == 0);
    /* allowed: the new bytes stay and become the reference */
    r.action = HVI_ACTION_ALLOW;
    CHECK_OK(guest_mov(&f, gva, 0x1111111111111111ull, &rep));
    r.action = HVI_ACTION_DENY;
    CHECK_OK(guest_mov(&f, gva, 0x2222222222222222ull, &rep));
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x500, after, 8);
    uint64_t v;
    memcpy(&v, after, 8);
    CHECK_EQ_U64(v, 0x1111111111111111ull);
    CHECK_EQ_U64(r.calls, 3);
    CHECK_OK(hvi_hook_remove(f.e, h));
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    CHECK_EQ_U64(hvi_sim_outstanding_maps(f.sim), 0);
    fx_fini(&f);
}

HVI_TEST(watchpoint_glue_failures)
{
    struct fx f;
    REQUIRE(fx_init(&f, HVI_SIM_CAPS_QEMU_LIKE));
    struct rec r = {0};
    hvi_hook *h = NULL;
    /* the second watchpoint fails, and so does the rollback of the first: it stays stale */
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_WATCHPOINT, 1, HVI_E_BACKEND) == HVI_OK);
    CHECK_STATUS(hvi_hook_gpa_add_gva(f.e, f.gpa[0] + 0x500, FX_GVA + 0x500, 16, HVI_EPT_W,
                                      record_cb, &r, &h),
                 HVI_E_BACKEND);
    CHECK(h == NULL);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 1);
    hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_WATCHPOINT, 0, HVI_OK);
    CHECK_OK(hvi_hook_sync(f.e));
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    /* the shadow copy cannot be read: nothing placed */
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_MAP_GPA, 0, HVI_E_BACKEND) == HVI_OK);
    CHECK_STATUS(hvi_hook_gpa_add_gva(f.e, f.gpa[0] + 0x500, FX_GVA + 0x500, 16, HVI_EPT_W,
                                      record_cb, &r, &h),
                 HVI_E_BACKEND);
    hvi_sim_fail_call(f.sim, HVI_SIM_CALL_MAP_GPA, 0, HVI_OK);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    /* a watchpoint that cannot be cleared: the hook goes, the piece is retried */
    REQUIRE(hvi_hook_gpa_add_gva(f.e, f.gpa[0] + 0x500, FX_GVA + 0x500, 8, HVI_EPT_W, record_cb,
                                 &r, &h) == HVI_OK);
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_WATCHPOINT, 0, HVI_E_BACKEND) == HVI_OK);
    CHECK_STATUS(hvi_hook_remove(f.e, h), HVI_E_BACKEND);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 1);
    hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_WATCHPOINT, 0, HVI_OK);
    CHECK_OK(hvi_detach(f.e));
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    CHECK_EQ_U64(hvi_sim_outstanding_maps(f.sim), 0);
    fx_fini(&f);
}

static uint32_t cr_cb(hvi_engine *e, hvi_hook *hook, const hvi_event *ev, void *ctx)
{
    (void)e;
    (void)hook;
    int *n = ctx;
    (*n)++;
    /* deny clearing CR4.SMEP (bit 20) */
    return ((ev->old_value & ~ev->new_value) & (1u << 20)) ? HVI_ACTION_DENY : HVI_ACTION_ALLOW;
}

HVI_TEST(register_hooks)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    int n = 0;
    hvi_hook *h1, *h2;
    REQUIRE(hvi_hook_reg_add(f.e, HVI_EXIT_CR, 4, cr_cb, &n, &h1) == HVI_OK);
    REQUIRE(hvi_hook_reg_add(f.e, HVI_EXIT_CR, 4, cr_cb, &n, &h2) == HVI_OK);
    CHECK(hvi_sim_exit_enabled(f.sim, HVI_EXIT_CR, 4));
    f.regs->cr4 |= 1u << 20;
    uint64_t cr4 = f.regs->cr4;
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_cr_write(f.sim, 0, 4, cr4 & ~(1ull << 20), &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    CHECK_EQ_U64(f.regs->cr4, cr4);
    CHECK_EQ_U64(n, 2);
    CHECK_OK(hvi_sim_cr_write(f.sim, 0, 4, cr4 | (1ull << 21), &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    CHECK_EQ_U64(f.regs->cr4, cr4 | (1ull << 21));
    CHECK_OK(hvi_hook_remove(f.e, h1));
    CHECK(hvi_sim_exit_enabled(f.sim, HVI_EXIT_CR, 4));
    CHECK_OK(hvi_hook_remove(f.e, h2));
    CHECK(!hvi_sim_exit_enabled(f.sim, HVI_EXIT_CR, 4));
    /* MSR hook: LSTAR */
    REQUIRE(hvi_hook_reg_add(f.e, HVI_EXIT_MSR, HVI_MSR_LSTAR, cr_cb, &n, &h1) == HVI_OK);
    CHECK(hvi_sim_exit_enabled(f.sim, HVI_EXIT_MSR, HVI_MSR_LSTAR));
    CHECK_OK(hvi_hook_remove(f.e, h1));
    fx_fini(&f);
    /* no register exits on a QEMU-like backend */
    REQUIRE(fx_init(&f, HVI_SIM_CAPS_QEMU_LIKE));
    CHECK_STATUS(hvi_hook_reg_add(f.e, HVI_EXIT_CR, 4, cr_cb, &n, &h1), HVI_E_UNSUPPORTED);
    fx_fini(&f);
}

static uint32_t deny_all(hvi_engine *e, hvi_hook *hook, const hvi_event *ev, void *ctx)
{
    (void)e, (void)hook;
    *(hvi_event *)ctx = *ev;
    return HVI_ACTION_DENY;
}

HVI_TEST(dtr_and_xcr_hooks)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    hvi_event seen;
    hvi_hook *hi, *hx;
    REQUIRE(hvi_hook_reg_add(f.e, HVI_EXIT_DTR, 0, deny_all, &seen, &hi) == HVI_OK);
    REQUIRE(hvi_hook_reg_add(f.e, HVI_EXIT_XCR, 0, deny_all, &seen, &hx) == HVI_OK);
    f.regs->idtr_base = 0xfffffe0000000000ull;
    f.regs->idtr_limit = 0xfff;
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_dtr_load(f.sim, 0, 0, 0x4141000, 0xfff, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    CHECK_EQ_U64(seen.type, HVI_EV_DTR_LOAD);
    CHECK_EQ_U64(seen.new_value, 0x4141000);
    CHECK_EQ_U64(f.regs->idtr_base, 0xfffffe0000000000ull);
    /* GDTR loads are not hooked */
    CHECK_OK(hvi_sim_dtr_load(f.sim, 0, 1, 0x5000, 0x7f, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    hvi_sim_set_xcr0(f.sim, 0, 0x7);
    CHECK_OK(hvi_sim_xcr_write(f.sim, 0, 0, 0x3, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    CHECK_EQ_U64(seen.type, HVI_EV_XCR_WRITE);
    CHECK_EQ_U64(seen.old_value, 0x7);
    CHECK_EQ_U64(seen.new_value, 0x3);
    CHECK_OK(hvi_hook_remove(f.e, hi));
    CHECK_OK(hvi_hook_remove(f.e, hx));
    CHECK(!hvi_sim_exit_enabled(f.sim, HVI_EXIT_DTR, 0));
    CHECK(!hvi_sim_exit_enabled(f.sim, HVI_EXIT_XCR, 0));
    /* enable_exit failing: nothing registered */
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_ENABLE_EXIT, 0, HVI_E_BACKEND) == HVI_OK);
    CHECK_STATUS(hvi_hook_reg_add(f.e, HVI_EXIT_MSR, HVI_MSR_EFER, deny_all, &seen, &hi),
                 HVI_E_BACKEND);
    hvi_sim_fail_call(f.sim, HVI_SIM_CALL_ENABLE_EXIT, 0, HVI_OK);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    fx_fini(&f);
}

struct det {
    int calls;
    bool early_return;
    hvi_status st;
};

static bool detour_cb(hvi_engine *e, hvi_hook *hook, uint32_t vcpu, hvi_regs *regs, void *ctx)
{
    (void)hook;
    (void)vcpu;
    struct det *d = ctx;
    d->calls++;
    if (!d->early_return)
        return false;
    d->st = hvi_detour_return(e, regs, (uint64_t)-1);
    return d->st == HVI_OK;
}

HVI_TEST(detour_early_return)
{
    struct fx f;
    REQUIRE(fx_init(&f, HVI_SIM_CAPS_QEMU_LIKE));
    struct det d = {0};
    hvi_hook *h, *h2;
    hvi_gva fn = FX_GVA + 3 * 4096 + 0x100;
    REQUIRE(hvi_detour_add(f.e, fn, detour_cb, &d, &h) == HVI_OK);
    CHECK_STATUS(hvi_detour_add(f.e, fn, detour_cb, &d, &h2), HVI_E_EXISTS);
    CHECK(hvi_sim_breakpoint_at(f.sim, fn));
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, fn, &rep));
    CHECK_EQ_U64(d.calls, 1);
    CHECK(!rep.regs_changed);
    CHECK_EQ_U64(f.regs->rip, fn);
    /* early return: [rsp] holds the return address */
    uint64_t ret = FX_GVA + 3 * 4096 + 0x20, rsp = f.regs->gpr[HVI_RSP];
    hvi_gpa rsp_gpa;
    REQUIRE(hvi_sim_translate(f.sim, f.cr3, HVI_PAGING_4LVL, rsp, &rsp_gpa) == HVI_OK);
    hvi_sim_phys_write(f.sim, rsp_gpa, &ret, 8);
    d.early_return = true;
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, fn, &rep));
    CHECK_OK(d.st);
    CHECK(rep.regs_changed);
    CHECK_EQ_U64(f.regs->rip, ret);
    CHECK_EQ_U64(f.regs->gpr[HVI_RSP], rsp + 8);
    CHECK_EQ_U64(f.regs->gpr[HVI_RAX], (uint64_t)-1);
    CHECK_OK(hvi_hook_remove(f.e, h));
    CHECK(!hvi_sim_breakpoint_at(f.sim, fn));
    fx_fini(&f);
}

HVI_TEST_MAIN()
