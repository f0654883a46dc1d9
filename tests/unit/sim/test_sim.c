/* The simulator backend: RAM and hole, glue table and caps, EPT denial really denying,
 * watchpoint strategy, breakpoints, register exits, injection, fault injection. */
#include "harness.h"
#include "core/engine.h"
#include "hvi_sim.h"

struct rec {
    uint32_t action; /* what the handler answers */
    int calls;
    hvi_event last;
    uint8_t insn0;
};

static hvi_status record(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply, void *ctx)
{
    (void)e;
    struct rec *r = ctx;
    r->calls++;
    r->last = *ev;
    r->insn0 = ev->insn && ev->insn_len ? ev->insn[0] : 0;
    reply->action = r->action;
    return HVI_OK;
}

struct env {
    hvi_sim *sim;
    hvi_engine *e;
    hvi_glue g;
    uint64_t cr3;
    hvi_gpa data;
};

static bool env_new(struct env *v, uint64_t caps)
{
    memset(v, 0, sizeof(*v));
    hvi_sim_config cfg = {.ram_size = 8ull << 20, .vcpus = 2};
    if (hvi_sim_new(&cfg, &v->sim) != HVI_OK)
        return false;
    hvi_sim_set_caps(v->sim, caps);
    if (hvi_sim_glue(v->sim, &v->g) != HVI_OK || hvi_glue_check(&v->g) != HVI_OK ||
        hvi_engine_new(&v->g, &v->e) != HVI_OK)
        return false;
    hvi_sim_attach(v->sim, v->e);
    if (hvi_sim_pt_new(v->sim, HVI_PAGING_4LVL, &v->cr3) != HVI_OK ||
        hvi_sim_alloc_frames(v->sim, 2, 4096, &v->data) != HVI_OK)
        return false;
    for (int i = 0; i < 2; i++)
        if (hvi_sim_map(v->sim, v->cr3, HVI_PAGING_4LVL, 0xffffffff81000000ull + i * 4096ull,
                        v->data + i * 4096ull, HVI_SIM_4K, HVI_SIM_PTE_W) != HVI_OK)
            return false;
    for (uint32_t c = 0; c < 2; c++)
        hvi_sim_set_paging(v->sim, c, HVI_PAGING_4LVL, v->cr3);
    return true;
}

static void env_free(struct env *v)
{
    hvi_engine_free(v->e);
    hvi_sim_free(v->sim);
}

#define VA 0xffffffff81000000ull

HVI_TEST(config_and_ram)
{
    hvi_sim *s = NULL;
    hvi_sim_config bad = {.ram_size = 12345};
    CHECK_STATUS(hvi_sim_new(&bad, &s), HVI_E_INVAL);
    hvi_sim_config cfg = {.ram_size = 4ull << 20, .hole_start = 2ull << 20, .hole_size = 1ull << 20};
    REQUIRE(hvi_sim_new(&cfg, &s) == HVI_OK);
    CHECK_EQ_U64(hvi_sim_phys_limit(s), 5ull << 20);
    uint8_t b = 7;
    CHECK_STATUS(hvi_sim_phys_write(s, (2ull << 20) + 5, &b, 1), HVI_E_RANGE);
    CHECK_OK(hvi_sim_phys_write(s, (3ull << 20) + 5, &b, 1));
    CHECK(hvi_sim_phys_ptr(s, (2ull << 20) + 5) == NULL);
    CHECK_STATUS(hvi_sim_phys_read(s, (2ull << 20) - 1, &b, 2), HVI_E_RANGE);
    hvi_gpa f = 0;
    int n = 0;
    while (hvi_sim_alloc_frame(s, &f) == HVI_OK) {
        CHECK(f < (2ull << 20) || f >= (3ull << 20));
        n++;
    }
    CHECK_EQ_U64(n, 256 + 512); /* 1..2 MiB and 3..5 MiB */
    hvi_glue g;
    REQUIRE(hvi_sim_glue(s, &g) == HVI_OK);
    uint64_t max = 0;
    CHECK_OK(g.max_gpfn(g.ctx, &max));
    CHECK_EQ_U64(max, (5ull << 8) - 1);
    void *p = NULL;
    CHECK_STATUS(g.map_gpa(g.ctx, 2ull << 20, &p), HVI_E_RANGE);
    CHECK_OK(g.map_gpa(g.ctx, 3ull << 20, &p));
    CHECK_EQ_U64(hvi_sim_outstanding_maps(s), 1);
    CHECK_OK(g.unmap_gpa(g.ctx, 3ull << 20, p));
    CHECK_EQ_U64(hvi_sim_outstanding_maps(s), 0);
    hvi_sim_free(s);
}

HVI_TEST(caps_shape_the_glue)
{
    struct env v;
    REQUIRE(env_new(&v, HVI_SIM_CAPS_QEMU_LIKE));
    CHECK(v.g.set_ept_rights == NULL && v.g.enable_exit == NULL && v.g.inject_exception == NULL);
    CHECK(v.g.set_watchpoint != NULL && v.g.set_breakpoint != NULL);
    CHECK_EQ_U64(v.g.caps, HVI_SIM_CAPS_QEMU_LIKE);
    env_free(&v);
    REQUIRE(env_new(&v, HVI_SIM_CAPS_ALL));
    CHECK(v.g.set_ept_rights != NULL && v.g.enable_exit != NULL && v.g.inject_exception != NULL);
    hvi_regs r;
    hvi_sim_vcpu_regs(v.sim, 1)->rip = 0x1234;
    CHECK_OK(v.g.get_regs(v.g.ctx, 1, HVI_REGS_GPR, &r));
    CHECK_EQ_U64(r.rip, 0x1234);
    r.rip = 0x5678;
    CHECK_OK(v.g.set_regs(v.g.ctx, 1, HVI_REGS_GPR, &r));
    CHECK_EQ_U64(hvi_sim_vcpu_regs(v.sim, 1)->rip, 0x5678);
    CHECK_STATUS(v.g.get_regs(v.g.ctx, 2, HVI_REGS_GPR, &r), HVI_E_INVAL);
    CHECK_OK(v.g.set_msr(v.g.ctx, 0, HVI_MSR_LSTAR, 0xffffffff81800000ull));
    uint64_t m = 0;
    CHECK_OK(hvi_sim_get_msr(v.sim, 0, HVI_MSR_LSTAR, &m));
    CHECK_EQ_U64(m, 0xffffffff81800000ull);
    CHECK_OK(v.g.get_msr(v.g.ctx, 0, HVI_MSR_EFER, &m));
    CHECK(m & (1u << 10)); /* LMA from set_paging */
    env_free(&v);
}

HVI_TEST(ept_write_denial_really_denies)
{
    struct env v;
    REQUIRE(env_new(&v, HVI_SIM_CAPS_ALL));
    struct rec r = {.action = HVI_ACTION_DENY};
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_EPT_VIOLATION, record, &r) == HVI_OK);
    CHECK_OK(v.g.set_ept_rights(v.g.ctx, v.data, HVI_EPT_R | HVI_EPT_X));
    const uint8_t insn[] = {0x48, 0x89, 0x07}; /* mov [rdi], rax */
    uint64_t val = 0x4141414141414141ull, got = 0;
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_guest_write(v.sim, 1, VA + 8, &val, 8, insn, sizeof(insn), &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    CHECK_EQ_U64(r.calls, 1);
    CHECK_EQ_U64(r.last.type, HVI_EV_EPT_VIOLATION);
    CHECK_EQ_U64(r.last.gpa, v.data + 8);
    CHECK_EQ_U64(r.last.gva, VA + 8);
    CHECK_EQ_U64(r.last.access, HVI_EPT_W);
    CHECK_EQ_U64(r.last.len, 8);
    CHECK_EQ_U64(r.last.vcpu, 1);
    CHECK_EQ_U64(r.insn0, 0x48);
    REQUIRE(hvi_sim_phys_read(v.sim, v.data + 8, &got, 8) == HVI_OK);
    CHECK_EQ_U64(got, 0); /* denied: memory unchanged */
    /* a write spanning into the protected page from an open one: nothing is written */
    CHECK_OK(v.g.set_ept_rights(v.g.ctx, v.data, HVI_EPT_RWX));
    CHECK_OK(v.g.set_ept_rights(v.g.ctx, v.data + 4096, HVI_EPT_R));
    CHECK_OK(hvi_sim_guest_write(v.sim, 0, VA + 4092, &val, 8, NULL, 0, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    REQUIRE(hvi_sim_phys_read(v.sim, v.data + 4092, &got, 8) == HVI_OK);
    CHECK_EQ_U64(got, 0);
    /* allowed: the write happens */
    r.action = HVI_ACTION_ALLOW;
    CHECK_OK(hvi_sim_guest_write(v.sim, 0, VA + 4092, &val, 8, NULL, 0, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    REQUIRE(hvi_sim_phys_read(v.sim, v.data + 4092, &got, 8) == HVI_OK);
    CHECK_EQ_U64(got, val);
    /* reads of a page without R: denied read returns zeros */
    r.action = HVI_ACTION_DENY;
    CHECK_OK(v.g.set_ept_rights(v.g.ctx, v.data + 4096, 0));
    uint64_t rd = 1;
    CHECK_OK(hvi_sim_guest_read(v.sim, 0, VA + 4096, &rd, 8, NULL, 0, &rep));
    CHECK_EQ_U64(rd, 0);
    CHECK_EQ_U64(r.last.access, HVI_EPT_R);
    CHECK_EQ_U64(hvi_sim_restricted_frames(v.sim), 1);
    env_free(&v);
}

static hvi_status failing(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply, void *ctx)
{
    (void)e, (void)ev, (void)ctx;
    reply->action = HVI_ACTION_DENY; /* ignored: the handler fails */
    return HVI_E_INTERNAL;
}

HVI_TEST(engine_failure_lets_the_guest_proceed)
{
    struct env v;
    REQUIRE(env_new(&v, HVI_SIM_CAPS_ALL));
    hvi_set_log(v.e, NULL, -1, NULL);
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_EPT_VIOLATION, failing, NULL) == HVI_OK);
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_MSR_WRITE, failing, NULL) == HVI_OK);
    CHECK_OK(v.g.set_ept_rights(v.g.ctx, v.data, HVI_EPT_R));
    uint32_t val = 0x1234, got = 0;
    hvi_event_reply rep;
    CHECK_STATUS(hvi_sim_guest_write(v.sim, 0, VA, &val, 4, NULL, 0, &rep), HVI_E_INTERNAL);
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    REQUIRE(hvi_sim_phys_read(v.sim, v.data, &got, 4) == HVI_OK);
    CHECK_EQ_U64(got, val);
    CHECK_OK(v.g.enable_exit(v.g.ctx, HVI_EXIT_MSR, HVI_MSR_LSTAR, true));
    CHECK_STATUS(hvi_sim_msr_write(v.sim, 0, HVI_MSR_LSTAR, 0x77, &rep), HVI_E_INTERNAL);
    uint64_t m = 0;
    CHECK_OK(hvi_sim_get_msr(v.sim, 0, HVI_MSR_LSTAR, &m));
    CHECK_EQ_U64(m, 0x77);
    /* the next activity starts clean */
    CHECK_OK(v.g.set_ept_rights(v.g.ctx, v.data, HVI_EPT_RWX));
    CHECK_OK(hvi_sim_guest_write(v.sim, 0, VA, &val, 4, NULL, 0, &rep));
    env_free(&v);
}

HVI_TEST(exec_violation_and_breakpoint)
{
    struct env v;
    REQUIRE(env_new(&v, HVI_SIM_CAPS_ALL));
    struct rec bp = {.action = HVI_ACTION_ALLOW}, ept = {.action = HVI_ACTION_DENY};
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_BREAKPOINT, record, &bp) == HVI_OK);
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_EPT_VIOLATION, record, &ept) == HVI_OK);
    const uint8_t code[] = {0x0f, 0x01, 0xd9};
    REQUIRE(hvi_sim_phys_write(v.sim, v.data + 0x10, code, 3) == HVI_OK);
    CHECK_OK(v.g.set_breakpoint(v.g.ctx, VA + 0x10, true));
    CHECK(hvi_sim_breakpoint_at(v.sim, VA + 0x10));
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_guest_exec(v.sim, 0, VA + 0x10, &rep));
    CHECK_EQ_U64(bp.calls, 1);
    CHECK_EQ_U64(bp.insn0, 0x0f);
    CHECK_EQ_U64(ept.calls, 0);
    CHECK_EQ_U64(hvi_sim_vcpu_regs(v.sim, 0)->rip, VA + 0x10);
    CHECK_OK(v.g.set_ept_rights(v.g.ctx, v.data, HVI_EPT_R | HVI_EPT_W));
    CHECK_OK(hvi_sim_guest_exec(v.sim, 0, VA + 0x20, &rep));
    CHECK_EQ_U64(ept.calls, 1);
    CHECK_EQ_U64(ept.last.access, HVI_EPT_X);
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    CHECK_OK(v.g.set_breakpoint(v.g.ctx, VA + 0x10, false));
    CHECK_EQ_U64(hvi_sim_breakpoint_count(v.sim), 0);
    /* not mapped: #PF recorded */
    CHECK_STATUS(hvi_sim_guest_exec(v.sim, 0, 0x1000, &rep), HVI_E_NOT_PRESENT);
    uint8_t vec = 0;
    uint64_t cr2 = 0;
    CHECK(hvi_sim_pending_exception(v.sim, 0, &vec, NULL, &cr2));
    CHECK_EQ_U64(vec, 14);
    CHECK_EQ_U64(cr2, 0x1000);
    hvi_sim_clear_exception(v.sim, 0);
    CHECK(!hvi_sim_pending_exception(v.sim, 0, NULL, NULL, NULL));
    env_free(&v);
}

HVI_TEST(watchpoint_strategy_without_ept)
{
    struct env v;
    REQUIRE(env_new(&v, HVI_SIM_CAPS_QEMU_LIKE));
    struct rec r = {.action = HVI_ACTION_ALLOW};
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_WATCHPOINT, record, &r) == HVI_OK);
    CHECK_OK(v.g.set_watchpoint(v.g.ctx, VA + 0x100, 8, HVI_WATCH_WRITE, true));
    uint32_t val = 0xdeadbeef, got = 0;
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_guest_write(v.sim, 0, VA + 0x200, &val, 4, NULL, 0, &rep));
    CHECK_EQ_U64(r.calls, 0); /* outside the watched range */
    CHECK_OK(hvi_sim_guest_write(v.sim, 0, VA + 0x104, &val, 4, NULL, 0, &rep));
    CHECK_EQ_U64(r.calls, 1);
    CHECK(r.last.after_access);
    CHECK_EQ_U64(r.last.gva, VA + 0x104);
    REQUIRE(hvi_sim_phys_read(v.sim, v.data + 0x104, &got, 4) == HVI_OK);
    CHECK_EQ_U64(got, val); /* already written when reported */
    CHECK_OK(hvi_sim_guest_read(v.sim, 0, VA + 0x100, &got, 4, NULL, 0, &rep));
    CHECK_EQ_U64(r.calls, 1); /* write watchpoint: reads do not trigger */
    env_free(&v);
}

HVI_TEST(register_exits)
{
    struct env v;
    REQUIRE(env_new(&v, HVI_SIM_CAPS_ALL));
    struct rec r = {.action = HVI_ACTION_DENY};
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_MSR_WRITE, record, &r) == HVI_OK);
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_CR_WRITE, record, &r) == HVI_OK);
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_DTR_LOAD, record, &r) == HVI_OK);
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_XCR_WRITE, record, &r) == HVI_OK);
    hvi_event_reply rep;
    uint64_t m = 0;
    /* exit not enabled: no event, write applied */
    CHECK_OK(hvi_sim_msr_write(v.sim, 0, HVI_MSR_LSTAR, 0x1111, &rep));
    CHECK_EQ_U64(r.calls, 0);
    CHECK_OK(v.g.enable_exit(v.g.ctx, HVI_EXIT_MSR, HVI_MSR_LSTAR, true));
    CHECK_OK(hvi_sim_msr_write(v.sim, 0, HVI_MSR_LSTAR, 0x2222, &rep));
    CHECK_EQ_U64(r.calls, 1);
    CHECK_EQ_U64(r.last.old_value, 0x1111);
    CHECK_EQ_U64(r.last.new_value, 0x2222);
    CHECK_OK(hvi_sim_get_msr(v.sim, 0, HVI_MSR_LSTAR, &m));
    CHECK_EQ_U64(m, 0x1111); /* denied */
    CHECK_OK(v.g.enable_exit(v.g.ctx, HVI_EXIT_CR, 4, true));
    uint64_t cr4 = hvi_sim_vcpu_regs(v.sim, 0)->cr4;
    CHECK_OK(hvi_sim_cr_write(v.sim, 0, 4, cr4 & ~(1ull << 20), &rep));
    CHECK_EQ_U64(r.last.index, 4);
    CHECK_EQ_U64(hvi_sim_vcpu_regs(v.sim, 0)->cr4, cr4);
    CHECK_OK(v.g.enable_exit(v.g.ctx, HVI_EXIT_DTR, 0, true));
    CHECK_OK(hvi_sim_dtr_load(v.sim, 0, 0, 0xfffffe0000000000ull, 0xfff, &rep));
    CHECK_EQ_U64(r.last.type, HVI_EV_DTR_LOAD);
    CHECK_EQ_U64(hvi_sim_vcpu_regs(v.sim, 0)->idtr_base, 0);
    CHECK_OK(hvi_sim_dtr_load(v.sim, 0, 1, 0x5000, 0x7f, &rep)); /* GDTR exit not enabled */
    CHECK_EQ_U64(hvi_sim_vcpu_regs(v.sim, 0)->gdtr_base, 0x5000);
    CHECK_OK(v.g.enable_exit(v.g.ctx, HVI_EXIT_XCR, 0, true));
    r.action = HVI_ACTION_ALLOW;
    CHECK_OK(hvi_sim_xcr_write(v.sim, 0, 0, 7, &rep));
    uint64_t x = 0;
    CHECK_OK(v.g.get_xcr0(v.g.ctx, 0, &x));
    CHECK_EQ_U64(x, 7);
    CHECK_EQ_U64(hvi_sim_event_count(v.sim, HVI_EV_XCR_WRITE), 1);
    env_free(&v);
}

HVI_TEST(step_pause_inject_vmcall)
{
    struct env v;
    REQUIRE(env_new(&v, HVI_SIM_CAPS_ALL));
    struct rec st = {.action = HVI_ACTION_ALLOW}, vm = {.action = HVI_ACTION_ALLOW};
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_SINGLE_STEP, record, &st) == HVI_OK);
    REQUIRE(hvi_engine_add_handler(v.e, HVI_EV_VMCALL, record, &vm) == HVI_OK);
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_step(v.sim, 1, &rep));
    CHECK_EQ_U64(st.calls, 0);
    CHECK_OK(v.g.single_step(v.g.ctx, 1, true));
    CHECK_OK(hvi_sim_step(v.sim, 1, &rep));
    CHECK_EQ_U64(st.calls, 1);
    CHECK_EQ_U64(st.last.vcpu, 1);
    CHECK_OK(hvi_sim_vmcall(v.sim, 0, &rep));
    CHECK_EQ_U64(vm.calls, 1);
    CHECK_OK(v.g.pause(v.g.ctx));
    CHECK(hvi_sim_paused(v.sim));
    CHECK_OK(v.g.resume(v.g.ctx));
    CHECK(!hvi_sim_paused(v.sim));
    CHECK_OK(v.g.inject_exception(v.g.ctx, 1, 14, 2, 0x7000));
    uint8_t vec = 0;
    uint32_t err = 0;
    uint64_t cr2 = 0;
    CHECK(hvi_sim_pending_exception(v.sim, 1, &vec, &err, &cr2));
    CHECK(vec == 14 && err == 2 && cr2 == 0x7000);
    CHECK_STATUS(v.g.inject_exception(v.g.ctx, 1, 13, 0, 0), HVI_E_BUSY);
    CHECK_OK(hvi_sim_tick(v.sim));
    env_free(&v);
}

HVI_TEST(fault_injection_on_any_call)
{
    struct env v;
    REQUIRE(env_new(&v, HVI_SIM_CAPS_ALL));
    CHECK_OK(hvi_sim_fail_call(v.sim, HVI_SIM_CALL_SET_EPT, 1, HVI_E_BACKEND));
    CHECK_OK(v.g.set_ept_rights(v.g.ctx, v.data, HVI_EPT_R));
    CHECK_STATUS(v.g.set_ept_rights(v.g.ctx, v.data, HVI_EPT_RWX), HVI_E_BACKEND);
    CHECK_EQ_U64(hvi_sim_ept_rights(v.sim, v.data), HVI_EPT_R); /* failing call changed nothing */
    CHECK_EQ_U64(hvi_sim_call_count(v.sim, HVI_SIM_CALL_SET_EPT), 2);
    CHECK_OK(hvi_sim_fail_call(v.sim, HVI_SIM_CALL_GET_REGS, 0, HVI_E_BACKEND));
    hvi_regs r;
    CHECK_STATUS(v.g.get_regs(v.g.ctx, 0, HVI_REGS_CR, &r), HVI_E_BACKEND);
    CHECK_OK(hvi_sim_fail_call(v.sim, HVI_SIM_CALL_GET_REGS, 0, HVI_OK));
    CHECK_OK(v.g.get_regs(v.g.ctx, 0, HVI_REGS_CR, &r));
    CHECK_STATUS(hvi_sim_fail_call(v.sim, HVI_SIM_CALL_COUNT, 0, HVI_E_BACKEND), HVI_E_INVAL);
    env_free(&v);
}

HVI_TEST(page_tables_every_mode)
{
    static const hvi_paging_mode modes[] = {HVI_PAGING_32, HVI_PAGING_PAE, HVI_PAGING_4LVL,
                                            HVI_PAGING_5LVL};
    for (int i = 0; i < 4; i++) {
        hvi_sim *s = NULL;
        REQUIRE(hvi_sim_new(NULL, &s) == HVI_OK);
        uint64_t cr3 = 0;
        REQUIRE(hvi_sim_pt_new(s, modes[i], &cr3) == HVI_OK);
        uint64_t big = modes[i] == HVI_PAGING_32 ? HVI_SIM_4M : HVI_SIM_2M;
        CHECK_OK(hvi_sim_map(s, cr3, modes[i], 0x40000000, 0x400000, big, HVI_SIM_PTE_W));
        CHECK_OK(hvi_sim_map(s, cr3, modes[i], 0x10000000, 0x5000, HVI_SIM_4K, 0));
        CHECK_STATUS(hvi_sim_map(s, cr3, modes[i], 0x40001000, 0x5000, HVI_SIM_4K, 0), HVI_E_EXISTS);
        CHECK_STATUS(hvi_sim_map(s, cr3, modes[i], 0x10000001, 0x5000, HVI_SIM_4K, 0), HVI_E_INVAL);
        hvi_gpa g = 0;
        CHECK_OK(hvi_sim_translate(s, cr3, modes[i], 0x40000123, &g));
        CHECK_EQ_U64(g, 0x400123);
        CHECK_OK(hvi_sim_translate(s, cr3, modes[i], 0x10000010, &g));
        CHECK_EQ_U64(g, 0x5010);
        CHECK_OK(hvi_sim_unmap(s, cr3, modes[i], 0x10000000));
        CHECK_STATUS(hvi_sim_translate(s, cr3, modes[i], 0x10000010, &g), HVI_E_NOT_PRESENT);
        CHECK_STATUS(hvi_sim_unmap(s, cr3, modes[i], 0x10000000), HVI_E_NOT_PRESENT);
        hvi_sim_free(s);
    }
}

HVI_TEST_MAIN()
