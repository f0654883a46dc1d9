/*
 * Write hooks on a backend with software watchpoints of any length (HVI_CAP_WATCH_RANGE, QEMU
 * under TCG, simulated with HVI_SIM_CAPS_QEMU_TCG: the event names the watchpoint, not the bytes
 * written): a multi-page hook is one watchpoint, a hit in the middle is found against the shadow,
 * deny restores it on both frames, log-only accepts it, each changed run gets its own decision,
 * the writing instruction is found by decoding backwards, removal clears the watchpoint.
 */
#include <string.h>

#include "harness.h"
#include "hook_fixture.h"

/* 48 89 58 08    mov qword ptr [rax+0x8], rbx */
static const uint8_t MOV_RAX8_RBX[] = {0x48, 0x89, 0x58, 0x08};

#define CODE_GVA (FX_GVA + 3 * 4096 + 0x10) /* the writing instruction sits here (page 3) */
#define HOOK_GVA (FX_GVA + 0x100)           /* hooked: pages 0-2 */
#define HOOK_LEN 0x2e00u

struct rec {
    int calls;
    hvi_hook_access acc[8];
    uint32_t insn_len[8]; /* the decoded writer (acc->insn lives only during the call) */
    hvi_gva deny_at;      /* deny only the run starting here (0: deny every run) */
    bool allow_all;
};

static uint32_t rec_cb(hvi_engine *e, hvi_hook *h, const hvi_hook_access *a, void *ctx)
{
    (void)e, (void)h;
    struct rec *r = ctx;
    if (r->calls < 8) {
        r->acc[r->calls] = *a;
        r->acc[r->calls].insn = NULL;
        r->insn_len[r->calls] = a->insn && a->insn->rip == a->writer_rip ? a->insn->len : 0;
    }
    r->calls++;
    if (r->allow_all || (r->deny_at && a->gva != r->deny_at))
        return HVI_ACTION_ALLOW;
    return HVI_ACTION_DENY;
}

static bool setup(struct fx *f, uint64_t caps)
{
    if (!fx_init(f, caps))
        return false;
    hvi_gpa code;
    if (hvi_sim_translate(f->sim, f->cr3, HVI_PAGING_4LVL, CODE_GVA, &code) != HVI_OK)
        return false;
    hvi_sim_phys_write(f->sim, code, MOV_RAX8_RBX, sizeof(MOV_RAX8_RBX));
    /* the vCPU stops after the store, as QEMU reports a watchpoint */
    f->regs->rip = CODE_GVA + sizeof(MOV_RAX8_RBX);
    return true;
}

static hvi_status guest_mov(struct fx *f, hvi_gva target, uint64_t value)
{
    hvi_event_reply rep;
    f->regs->gpr[HVI_RAX] = target - 8;
    f->regs->gpr[HVI_RBX] = value;
    return hvi_sim_guest_write(f->sim, 0, target, &value, 8, MOV_RAX8_RBX, sizeof(MOV_RAX8_RBX),
                               &rep);
}

/* Read 8 guest bytes at a hooked linear address (may cross into the next, non-adjacent frame). */
static uint64_t peek(struct fx *f, hvi_gva gva)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) {
        hvi_gva p = gva + (uint64_t)i;
        hvi_sim_phys_read(f->sim, f->gpa[(p - FX_GVA) >> 12] + (p & 0xfff), &b[i], 1);
    }
    uint64_t v;
    memcpy(&v, b, 8);
    return v;
}

HVI_TEST(range_hook_is_one_watchpoint_and_denies_a_write_in_the_middle)
{
    struct fx f;
    REQUIRE(setup(&f, HVI_SIM_CAPS_QEMU_TCG));
    struct rec r = {0};
    hvi_hook *h = NULL;
    REQUIRE(hvi_hook_watch_range_add(f.e, 0, HOOK_GVA, HOOK_LEN, rec_cb, &r, &h) == HVI_OK);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 1);
    CHECK_EQ_U64(hvi_hook_count(f.e), 1);
    hvi_gva at = FX_GVA + 0x1ffc; /* crosses from page 1 into page 2 (another frame) */
    uint64_t before = peek(&f, at), value = ~before;
    CHECK_OK(guest_mov(&f, at, value));
    CHECK_EQ_U64(r.calls, 1);
    CHECK_EQ_U64(r.acc[0].gva, at);
    CHECK_EQ_U64(r.acc[0].gpa, f.gpa[1] + 0xffc);
    CHECK_EQ_U64(r.acc[0].size, 8);
    CHECK(r.acc[0].after_access && r.acc[0].values_known);
    uint64_t o, n;
    memcpy(&o, r.acc[0].old_bytes, 8);
    memcpy(&n, r.acc[0].new_bytes, 8);
    CHECK_EQ_U64(o, before);
    CHECK_EQ_U64(n, value);
    CHECK_EQ_U64(r.acc[0].rip, CODE_GVA + 4);
    CHECK_EQ_U64(r.acc[0].writer_rip, CODE_GVA); /* decoded backwards from the stop RIP */
    CHECK_EQ_U64(r.insn_len[0], 4);              /* and handed to the callback as acc->insn */
    CHECK_EQ_U64(peek(&f, at), before);          /* denied: restored on both frames */
    /* a write outside the hooked range: no callback */
    CHECK_OK(guest_mov(&f, FX_GVA + 0x20, 0x1234));
    CHECK_EQ_U64(r.calls, 1);
    CHECK_OK(hvi_hook_remove(f.e, h));
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    CHECK_OK(guest_mov(&f, at, value));
    CHECK_EQ_U64(r.calls, 1);
    CHECK_EQ_U64(peek(&f, at), value); /* no hook any more: the write stays */
    fx_fini(&f);
}

/* A REP MOVSB: QEMU stops after each element with RIP still on the instruction (RDI moved on):
 * the writer is the instruction at RIP. */
HVI_TEST(range_hook_names_a_rep_string_store_at_rip)
{
    struct fx f;
    REQUIRE(setup(&f, HVI_SIM_CAPS_QEMU_TCG));
    static const uint8_t rep_movsb[] = {0xf3, 0xa4};
    hvi_gpa code;
    REQUIRE(hvi_sim_translate(f.sim, f.cr3, HVI_PAGING_4LVL, CODE_GVA + 0x40, &code) == HVI_OK);
    hvi_sim_phys_write(f.sim, code, rep_movsb, sizeof(rep_movsb));
    struct rec r = {0};
    hvi_hook *h = NULL;
    REQUIRE(hvi_hook_watch_range_add(f.e, 0, HOOK_GVA, HOOK_LEN, rec_cb, &r, &h) == HVI_OK);
    hvi_gva at = FX_GVA + 0x1234;
    uint8_t before = (uint8_t)peek(&f, at), v = (uint8_t)~before;
    f.regs->rip = CODE_GVA + 0x40;
    f.regs->gpr[HVI_RDI] = at + 1; /* after one element */
    f.regs->gpr[HVI_RCX] = 3;
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_guest_write(f.sim, 0, at, &v, 1, rep_movsb, sizeof(rep_movsb), &rep));
    REQUIRE(r.calls == 1);
    CHECK_EQ_U64(r.acc[0].gva, at);
    CHECK_EQ_U64(r.acc[0].writer_rip, CODE_GVA + 0x40);
    CHECK_EQ_U64(r.insn_len[0], 2);
    CHECK_EQ_U64((uint8_t)peek(&f, at), before);
    CHECK_OK(hvi_hook_remove(f.e, h));
    fx_fini(&f);
}

HVI_TEST(range_hook_log_only_accepts_the_new_bytes)
{
    struct fx f;
    REQUIRE(setup(&f, HVI_SIM_CAPS_QEMU_TCG));
    struct rec r = {.allow_all = true};
    hvi_hook *h = NULL;
    REQUIRE(hvi_hook_watch_range_add(f.e, 0, HOOK_GVA, HOOK_LEN, rec_cb, &r, &h) == HVI_OK);
    hvi_gva at = FX_GVA + 0x2400;
    uint64_t before = peek(&f, at);
    CHECK_OK(guest_mov(&f, at, ~before));
    CHECK_EQ_U64(peek(&f, at), ~before);
    /* the accepted bytes are the new reference: the next write is compared with them */
    CHECK_OK(guest_mov(&f, at, 0x0102030405060708ull ^ before));
    CHECK_EQ_U64(r.calls, 2);
    uint64_t o;
    memcpy(&o, r.acc[1].old_bytes, 8);
    CHECK_EQ_U64(o, ~before);
    /* the same value written again changes nothing: no callback */
    CHECK_OK(guest_mov(&f, at, 0x0102030405060708ull ^ before));
    CHECK_EQ_U64(r.calls, 2);
    CHECK_OK(hvi_detach(f.e)); /* detach removes it */
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    fx_fini(&f);
}

HVI_TEST(range_hook_decides_each_changed_run_on_its_own)
{
    struct fx f;
    REQUIRE(setup(&f, HVI_SIM_CAPS_QEMU_TCG));
    hvi_gva legit = FX_GVA + 0x300, attack = FX_GVA + 0x2800;
    struct rec r = {.deny_at = attack};
    hvi_hook *h = NULL;
    REQUIRE(hvi_hook_watch_range_add(f.e, 0, HOOK_GVA, HOOK_LEN, rec_cb, &r, &h) == HVI_OK);
    /* a change through another alias (physical memory: no watchpoint), seen only at the next hit */
    uint8_t nop2[2] = {0x66, 0x90};
    hvi_sim_phys_write(f.sim, f.gpa[0] + 0x300, nop2, 2);
    uint64_t legit_now = peek(&f, legit), attack_before = peek(&f, attack);
    CHECK_OK(guest_mov(&f, attack, ~attack_before));
    CHECK_EQ_U64(r.calls, 2); /* two runs: two decisions */
    CHECK_EQ_U64(r.acc[0].gva, legit);
    CHECK_EQ_U64(r.acc[0].size, 2);
    CHECK_EQ_U64(r.acc[0].writer_rip, 0); /* not what the stopped instruction wrote */
    CHECK_EQ_U64(r.acc[1].gva, attack);
    CHECK_EQ_U64(r.acc[1].writer_rip, CODE_GVA);
    CHECK_EQ_U64(peek(&f, legit), legit_now);      /* allowed run kept */
    CHECK_EQ_U64(peek(&f, attack), attack_before); /* denied run undone */
    /* hvi_hook_watch_accept: a change accepted by other means is no run at the next hit */
    hvi_sim_phys_write(f.sim, f.gpa[0] + 0x400, nop2, 2);
    CHECK_OK(hvi_hook_watch_accept(f.e, h, FX_GVA + 0x400, 2));
    CHECK_OK(guest_mov(&f, attack, ~attack_before));
    CHECK_EQ_U64(r.calls, 3);
    CHECK_EQ_U64(r.acc[2].gva, attack);
    CHECK_STATUS(hvi_hook_watch_accept(f.e, NULL, FX_GVA, 2), HVI_E_INVAL);
    CHECK_OK(hvi_hook_remove(f.e, h)); /* h is freed: no call may use it after this */
    fx_fini(&f);
}

HVI_TEST(range_hooks_need_the_capability_and_present_pages)
{
    struct fx f;
    struct rec r = {0};
    hvi_hook *h = NULL;
    /* debug-register watchpoints (KVM-like): no range hooks; a 12-byte hook is two 8-byte pieces */
    REQUIRE(setup(&f, HVI_SIM_CAPS_QEMU_LIKE));
    CHECK_STATUS(hvi_hook_watch_range_add(f.e, 0, HOOK_GVA, HOOK_LEN, rec_cb, &r, &h),
                 HVI_E_UNSUPPORTED);
    REQUIRE(hvi_hook_gpa_add_gva(f.e, f.gpa[0] + 0x500, FX_GVA + 0x500, 12, HVI_EPT_W, rec_cb, &r,
                                 &h) == HVI_OK);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 2);
    fx_fini(&f);
    REQUIRE(setup(&f, HVI_SIM_CAPS_QEMU_TCG));
    /* with the capability the same hook is one watchpoint of exactly its bytes */
    REQUIRE(hvi_hook_gpa_add_gva(f.e, f.gpa[0] + 0x500, FX_GVA + 0x500, 12, HVI_EPT_W, rec_cb, &r,
                                 &h) == HVI_OK);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 1);
    uint64_t before = peek(&f, FX_GVA + 0x504);
    CHECK_OK(guest_mov(&f, FX_GVA + 0x504, ~before));
    CHECK_EQ_U64(r.calls, 1);
    CHECK_EQ_U64(r.acc[0].gva, FX_GVA + 0x504);
    CHECK_EQ_U64(peek(&f, FX_GVA + 0x504), before);
    CHECK_OK(hvi_hook_remove(f.e, h));
    /* a page that is not present: nothing placed */
    CHECK_STATUS(hvi_hook_watch_range_add(f.e, 0, FX_GVA + 0x3800, 0x1000, rec_cb, &r, &h),
                 HVI_E_NOT_PRESENT);
    CHECK_STATUS(hvi_hook_watch_range_add(f.e, 0, HOOK_GVA, 0, rec_cb, &r, &h), HVI_E_INVAL);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    /* the backend refusing the watchpoint: nothing placed */
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_WATCHPOINT, 0, HVI_E_BACKEND) == HVI_OK);
    CHECK_STATUS(hvi_hook_watch_range_add(f.e, 0, HOOK_GVA, HOOK_LEN, rec_cb, &r, &h),
                 HVI_E_BACKEND);
    hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_WATCHPOINT, 0, HVI_OK);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    /* a hook object region is one range hook too */
    hvi_hook_object *o;
    REQUIRE(hvi_hook_object_new(f.e, "kernel-text", &o) == HVI_OK);
    REQUIRE(hvi_hook_object_add_region(f.e, o, 0, HOOK_GVA, HOOK_LEN, HVI_EPT_W, rec_cb, NULL,
                                       &r) == HVI_OK);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 1);
    CHECK_OK(hvi_hook_object_remove_region(f.e, o, HOOK_GVA));
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    hvi_hook_object_free(f.e, o);
    fx_fini(&f);
}

HVI_TEST_MAIN()
