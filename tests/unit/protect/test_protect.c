/*
 * Protections with alerts on the simulator: the decision, the alert fields and the guest memory.
 */
#include <string.h>

#include <xxhash.h>

#include "harness.h"
#include "hook_fixture.h"
#include "hvi/protect.h"

/* 48 89 58 08    mov qword ptr [rax+0x8], rbx */
static const uint8_t MOV_RAX8_RBX[] = {0x48, 0x89, 0x58, 0x08};

struct sink {
    int n;
    hvi_alert last;
    char json[1024];
};

static void on_alert(const hvi_alert *a, void *user)
{
    struct sink *s = user;
    s->n++;
    s->last = *a;
    hvi_alert_to_json(a, s->json, sizeof(s->json), NULL);
}

static hvi_status guest_mov(struct fx *f, hvi_gva target, uint64_t value, hvi_event_reply *rep)
{
    f->regs->gpr[HVI_RAX] = target - 8;
    f->regs->gpr[HVI_RBX] = value;
    return hvi_sim_guest_write(f->sim, 0, target, &value, 8, MOV_RAX8_RBX, sizeof(MOV_RAX8_RBX),
                               rep);
}

static void owner(hvi_engine *e, hvi_alert *a, void *ctx)
{
    (void)e;
    (void)ctx;
    a->pid = 42;
    snprintf(a->comm, sizeof(a->comm), "evil");
}

static void run_write_protection(uint64_t caps, bool log_only)
{
    struct fx f;
    REQUIRE(fx_init(&f, caps));
    struct sink s = {0};
    hvi_set_alert_callback(f.e, on_alert, &s);
    if (log_only)
        CHECK_OK(hvi_options_set(f.e, HVI_OPT_LOG_ONLY));
    hvi_protect_desc d = {.object = "sys_call_table", .owner = owner};
    hvi_protect *p;
    REQUIRE(hvi_protect_memory(f.e, &d, f.gpa[1] + 0x40, FX_GVA + 4096 + 0x40, 64, HVI_EPT_W, &p) ==
            HVI_OK);
    uint64_t before, after, rip = f.regs->rip;
    hvi_sim_phys_read(f.sim, f.gpa[1] + 0x48, &before, 8);
    hvi_event_reply rep;
    CHECK_OK(guest_mov(&f, FX_GVA + 4096 + 0x48, 0xffffffffc0001234ull, &rep));
    hvi_sim_phys_read(f.sim, f.gpa[1] + 0x48, &after, 8);
    REQUIRE(s.n == 1);
    CHECK_EQ_U64(s.last.type, HVI_ALERT_EPT_WRITE);
    CHECK_EQ_U64(s.last.action, log_only ? HVI_ALERT_LOGGED : HVI_ALERT_DENIED);
    CHECK_EQ_U64(after, log_only ? 0xffffffffc0001234ull : before);
    CHECK_EQ_U64(s.last.gpa, f.gpa[1] + 0x48);
    CHECK_EQ_U64(s.last.gva, FX_GVA + 4096 + 0x48);
    CHECK_EQ_U64(s.last.rip, rip);
    CHECK_EQ_U64(s.last.old_value, before);
    CHECK_EQ_U64(s.last.new_value, 0xffffffffc0001234ull);
    CHECK_EQ_U64(s.last.width, 8);
    CHECK_STR(s.last.object, "sys_call_table");
    CHECK_EQ_U64(s.last.pid, 42);
    CHECK_STR(s.last.comm, "evil");
    CHECK(strstr(s.json, "\"object\":\"sys_call_table\"") != NULL);
    if (caps == 0) {
        CHECK_STR(s.last.insn, "mov [rax+0x08], rbx");
        CHECK_EQ_U64(rep.action, log_only ? HVI_ACTION_ALLOW : HVI_ACTION_DENY);
    }
    CHECK_EQ_U64(hvi_protect_violations(f.e), 1);
    CHECK_OK(hvi_protect_remove(f.e, p));
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    fx_fini(&f);
}

HVI_TEST(write_denied_with_alert_ept) { run_write_protection(0, false); }
HVI_TEST(write_logged_only_ept) { run_write_protection(0, true); }
HVI_TEST(write_undone_with_alert_watchpoints) { run_write_protection(HVI_SIM_CAPS_QEMU_LIKE, false); }
HVI_TEST(write_logged_only_watchpoints) { run_write_protection(HVI_SIM_CAPS_QEMU_LIKE, true); }

static bool allow_rbx_magic(hvi_engine *e, const hvi_hook_access *acc, const hvi_event *ev,
                            void *ctx)
{
    (void)e;
    (void)ev;
    (void)ctx;
    return acc && acc->regs && acc->regs->gpr[HVI_RBX] == 0x600d;
}

HVI_TEST(exception_allows_without_alert)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    struct sink s = {0};
    hvi_set_alert_callback(f.e, on_alert, &s);
    hvi_protect_desc d = {.object = "idt", .exception = allow_rbx_magic};
    hvi_protect *p;
    REQUIRE(hvi_protect_memory(f.e, &d, f.gpa[2], FX_GVA + 2 * 4096, 4096, HVI_EPT_W, &p) ==
            HVI_OK);
    hvi_event_reply rep;
    CHECK_OK(guest_mov(&f, FX_GVA + 2 * 4096 + 8, 0x600d, &rep));
    CHECK_EQ_U64(s.n, 0);
    uint64_t v;
    hvi_sim_phys_read(f.sim, f.gpa[2] + 8, &v, 8);
    CHECK_EQ_U64(v, 0x600d);
    CHECK_OK(guest_mov(&f, FX_GVA + 2 * 4096 + 8, 0xbad, &rep));
    CHECK_EQ_U64(s.n, 1);
    hvi_sim_phys_read(f.sim, f.gpa[2] + 8, &v, 8);
    CHECK_EQ_U64(v, 0x600d);
    fx_fini(&f);
}

HVI_TEST(register_protection_cr4_smep_and_lstar)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    struct sink s = {0};
    hvi_set_alert_callback(f.e, on_alert, &s);
    hvi_protect_desc dcr = {.object = "cr4"}, dmsr = {.object = "lstar"};
    hvi_protect *pc, *pm;
    REQUIRE(hvi_protect_register(f.e, &dcr, HVI_EXIT_CR, 4, 1ull << 20, &pc) == HVI_OK);
    REQUIRE(hvi_protect_register(f.e, &dmsr, HVI_EXIT_MSR, HVI_MSR_LSTAR, ~0ull, &pm) == HVI_OK);
    f.regs->cr4 |= 1ull << 20;
    uint64_t cr4 = f.regs->cr4;
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_cr_write(f.sim, 0, 4, cr4 | (1ull << 7), &rep)); /* other bit: fine */
    CHECK_EQ_U64(s.n, 0);
    CHECK_OK(hvi_sim_cr_write(f.sim, 0, 4, cr4 & ~(1ull << 20), &rep));
    CHECK_EQ_U64(s.n, 1);
    CHECK_EQ_U64(s.last.type, HVI_ALERT_CR);
    CHECK_EQ_U64(s.last.action, HVI_ALERT_DENIED);
    CHECK_EQ_U64(s.last.new_value, cr4 & ~(1ull << 20));
    CHECK(f.regs->cr4 & (1ull << 20));
    hvi_sim_set_msr(f.sim, 0, HVI_MSR_LSTAR, 0xffffffff81800000ull);
    CHECK_OK(hvi_sim_msr_write(f.sim, 0, HVI_MSR_LSTAR, 0x4141414141414141ull, &rep));
    CHECK_EQ_U64(s.n, 2);
    CHECK_EQ_U64(s.last.type, HVI_ALERT_MSR);
    CHECK_EQ_U64(s.last.old_value, 0xffffffff81800000ull);
    CHECK_STR(s.last.object, "lstar");
    uint64_t lstar;
    hvi_sim_get_msr(f.sim, 0, HVI_MSR_LSTAR, &lstar);
    CHECK_EQ_U64(lstar, 0xffffffff81800000ull);
    CHECK_OK(hvi_protect_remove(f.e, pc));
    CHECK_OK(hvi_protect_remove(f.e, pm));
    CHECK(!hvi_sim_exit_enabled(f.sim, HVI_EXIT_CR, 4));
    fx_fini(&f);
}

HVI_TEST(integrity_region_on_timer)
{
    struct fx f;
    REQUIRE(fx_init(&f, HVI_SIM_CAPS_QEMU_LIKE));
    struct sink s = {0};
    hvi_set_alert_callback(f.e, on_alert, &s);
    hvi_protect_desc d = {.object = "idt"};
    hvi_protect *p;
    REQUIRE(hvi_protect_integrity(f.e, &d, 0, FX_GVA + 0x800, 256, &p) == HVI_OK);
    uint8_t orig[256], cur[256];
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x800, orig, 256);
    CHECK_OK(hvi_sim_tick(f.sim));
    CHECK_EQ_U64(s.n, 0);
    uint32_t evil = 0x90909090;
    hvi_sim_phys_write(f.sim, f.gpa[0] + 0x810, &evil, 4);
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x800, cur, 256);
    uint64_t new_hash = XXH3_64bits(cur, 256), old_hash = XXH3_64bits(orig, 256);
    CHECK_OK(hvi_sim_tick(f.sim));
    REQUIRE(s.n == 1);
    CHECK_EQ_U64(s.last.type, HVI_ALERT_INTEGRITY);
    CHECK_EQ_U64(s.last.action, HVI_ALERT_DENIED);
    CHECK_EQ_U64(s.last.gva, FX_GVA + 0x810);
    uint64_t nv8, ov8;
    memcpy(&nv8, cur + 16, 8);
    memcpy(&ov8, orig + 16, 8);
    CHECK_EQ_U64(s.last.new_value, nv8);
    CHECK_EQ_U64(s.last.old_value, ov8);
    CHECK_EQ_U64(s.last.new_value & 0xffffffff, 0x90909090);
    CHECK_EQ_U64(s.last.width, 8);
    char want[128];
    snprintf(want, sizeof(want), "region=idt old_hash=%016llx new_hash=%016llx offset=16",
             (unsigned long long)old_hash, (unsigned long long)new_hash);
    CHECK_STR(s.last.detail, want);
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x800, cur, 256);
    CHECK(memcmp(cur, orig, 256) == 0); /* restored */
    /* log-only: reported once, the new contents become the reference */
    CHECK_OK(hvi_options_set(f.e, HVI_OPT_LOG_ONLY));
    hvi_sim_phys_write(f.sim, f.gpa[0] + 0x810, &evil, 4);
    CHECK_OK(hvi_sim_tick(f.sim));
    CHECK_OK(hvi_sim_tick(f.sim));
    CHECK_EQ_U64(s.n, 2);
    CHECK_EQ_U64(s.last.action, HVI_ALERT_LOGGED);
    CHECK_OK(hvi_protect_remove(f.e, p));
    CHECK_STATUS(hvi_protect_integrity(f.e, &d, 0, 0x1000, 16, &p), HVI_E_NOT_PRESENT);
    CHECK_STATUS(hvi_protect_integrity(f.e, &d, 0, FX_GVA, 0, &p), HVI_E_INVAL);
    fx_fini(&f);
}

struct unp {
    int n;
    hvi_unpack_info info;
};

static uint32_t on_unpack(hvi_engine *e, const hvi_unpack_info *info, void *ctx)
{
    (void)e;
    struct unp *u = ctx;
    u->n++;
    u->info = *info;
    return HVI_ACTION_ALLOW;
}

HVI_TEST(unpacker_execute_after_write)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    struct sink s = {0};
    struct unp u = {0};
    hvi_set_alert_callback(f.e, on_alert, &s);
    hvi_protect_desc d = {.object = "module-page", .ctx = &u};
    hvi_protect *p;
    hvi_gva page = FX_GVA + 2 * 4096;
    REQUIRE(hvi_unpack_watch(f.e, &d, f.gpa[2], page, on_unpack, &p) == HVI_OK);
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, page + 0x10, &rep)); /* not written yet */
    CHECK_EQ_U64(u.n, 0);
    uint64_t writer = FX_GVA + 3 * 4096 + 0x40;
    f.regs->rip = writer;
    CHECK_OK(guest_mov(&f, page + 0x10, 0xc3c3c3c3c3c3c3c3ull, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    uint64_t v;
    hvi_sim_phys_read(f.sim, f.gpa[2] + 0x10, &v, 8);
    CHECK_EQ_U64(v, 0xc3c3c3c3c3c3c3c3ull); /* the write went through */
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, page + 0x10, &rep));
    REQUIRE(u.n == 1);
    CHECK_EQ_U64(u.info.page, f.gpa[2]);
    CHECK_EQ_U64(u.info.writer_rip, writer);
    CHECK_EQ_U64(u.info.exec_rip, page + 0x10);
    CHECK_EQ_U64(u.info.writes, 1);
    REQUIRE(s.n == 1);
    CHECK_EQ_U64(s.last.type, HVI_ALERT_UNPACK);
    CHECK_EQ_U64(s.last.gva, page);
    CHECK_STR(s.last.object, "module-page");
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, page + 0x20, &rep)); /* clean again */
    CHECK_EQ_U64(u.n, 1);
    CHECK_OK(hvi_protect_remove(f.e, p));
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    fx_fini(&f);
    REQUIRE(fx_init(&f, HVI_SIM_CAPS_QEMU_LIKE));
    CHECK_STATUS(hvi_unpack_watch(f.e, &d, f.gpa[2], page, on_unpack, &p), HVI_E_UNSUPPORTED);
    fx_fini(&f);
}

HVI_TEST(slack_allocator)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    hvi_gva a, b, c, d;
    CHECK_STATUS(hvi_slack_alloc(f.e, 16, 16, &a), HVI_E_LIMIT); /* no ranges yet */
    CHECK_OK(hvi_slack_add_range(f.e, 0x1003, 61)); /* [0x1003, 0x1040) */
    CHECK_OK(hvi_slack_add_range(f.e, 0x2000, 0x100));
    CHECK_STATUS(hvi_slack_add_range(f.e, 0x1020, 4), HVI_E_EXISTS);
    CHECK_EQ_U64(hvi_slack_free_bytes(f.e), 61 + 0x100);
    CHECK_OK(hvi_slack_alloc(f.e, 16, 16, &a));
    CHECK_EQ_U64(a, 0x1010);
    CHECK_OK(hvi_slack_alloc(f.e, 16, 16, &b));
    CHECK_EQ_U64(b, 0x1020);
    CHECK_OK(hvi_slack_alloc(f.e, 32, 16, &c)); /* does not fit the first range */
    CHECK_EQ_U64(c, 0x2000);
    CHECK_OK(hvi_slack_alloc(f.e, 5, 1, &d));
    CHECK_EQ_U64(d, 0x1003);
    CHECK_STATUS(hvi_slack_alloc(f.e, 0x200, 1, &d), HVI_E_LIMIT);
    CHECK_STATUS(hvi_slack_alloc(f.e, 8, 3, &d), HVI_E_INVAL);
    CHECK_OK(hvi_slack_free(f.e, a));
    CHECK_STATUS(hvi_slack_free(f.e, a), HVI_E_NOT_FOUND);
    CHECK_OK(hvi_slack_alloc(f.e, 16, 16, &a));
    CHECK_EQ_U64(a, 0x1010);
    CHECK_EQ_U64(hvi_slack_free_bytes(f.e), 61 + 0x100 - 16 - 16 - 32 - 5);
    fx_fini(&f);
}

HVI_TEST_MAIN()
