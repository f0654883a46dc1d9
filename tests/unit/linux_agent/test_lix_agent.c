/* Linux agents on the simulator: the argv/envp layout, the borrow-a-task call machine
 * (registers and stack saved and restored exactly, the return matched by RSP on any vCPU,
 * several calls in one borrowing), timeouts (no task, a call that never returns) and hostile
 * states (user mode, interrupts off, a stack that does not translate or is read-only, no room
 * left on the stack). lix_agent.c's Linux checks need a real kernel: tests/e2e/linux_agent. */
#include <string.h>
#include <time.h>

#include "guest/linux/lix_agent.h"
#include "harness.h"
#include "hvi/mem.h"
#include "hvi_sim.h"

#define TEXT_VA 0xffffffff81000000ull
#define TRIG_VA (TEXT_VA + 0x100)
#define FN_VA (TEXT_VA + 0x200)
#define FN2_VA (TEXT_VA + 0x300)
#define PAD_VA (TEXT_VA + 0x401)
#define STACK_VA 0xffffc90000010000ull /* 16 KiB task stack */
#define STACK_SIZE 0x4000ull
#define RSP0 (STACK_VA + STACK_SIZE - 0x98)

struct fx {
    hvi_sim *sim;
    hvi_engine *e;
    uint64_t cr3;
    hvi_gpa stack_gpa[4];
};

static int fx_init(struct fx *f, uint32_t vcpus)
{
    memset(f, 0, sizeof(*f));
    hvi_sim_config cfg = {.ram_size = 16u << 20, .vcpus = vcpus};
    hvi_gpa text = 0;
    if (hvi_sim_new(&cfg, &f->sim) != HVI_OK || hvi_sim_pt_new(f->sim, HVI_PAGING_4LVL, &f->cr3) ||
        hvi_sim_alloc_frame(f->sim, &text) ||
        hvi_sim_map(f->sim, f->cr3, HVI_PAGING_4LVL, TEXT_VA, text, HVI_SIM_4K, HVI_SIM_PTE_P))
        return -1;
    for (int i = 0; i < 4; i++)
        if (hvi_sim_alloc_frame(f->sim, &f->stack_gpa[i]) ||
            hvi_sim_map(f->sim, f->cr3, HVI_PAGING_4LVL, STACK_VA + (uint64_t)i * 4096,
                        f->stack_gpa[i], HVI_SIM_4K,
                        HVI_SIM_PTE_P | HVI_SIM_PTE_W | HVI_SIM_PTE_NX))
            return -1;
    for (int i = 0; i < 4; i++) { /* a recognisable stack */
        uint8_t *p = hvi_sim_phys_ptr(f->sim, f->stack_gpa[i]);
        for (int j = 0; j < 4096; j++)
            p[j] = (uint8_t)(j * 7 + i);
    }
    for (uint32_t v = 0; v < vcpus; v++) {
        if (hvi_sim_set_paging(f->sim, v, HVI_PAGING_4LVL, f->cr3) != HVI_OK)
            return -1;
        hvi_regs *r = hvi_sim_vcpu_regs(f->sim, v);
        for (int g = 0; g < HVI_GPR_COUNT; g++)
            r->gpr[g] = 0x1111111111111111ull * (uint64_t)(g + 1) + v;
        r->gpr[HVI_RSP] = RSP0;
        r->rflags = 0x246;
        r->seg[HVI_CS].selector = 0x10;
    }
    hvi_glue g;
    hvi_sim_set_caps(f->sim, HVI_SIM_CAPS_QEMU_LIKE);
    if (hvi_sim_glue(f->sim, &g) != HVI_OK || hvi_engine_new(&g, &f->e) != HVI_OK)
        return -1;
    hvi_sim_attach(f->sim, f->e);
    return hvi_mem_set_context(f->e, HVI_PAGING_4LVL, f->cr3) == HVI_OK ? 0 : -1;
}

static void fx_free(struct fx *f)
{
    hvi_sim_attach(f->sim, NULL);
    hvi_engine_free(f->e);
    hvi_sim_free(f->sim);
}

static uint8_t stack_copy[4][4096];
static void snap_stack(struct fx *f)
{
    for (int i = 0; i < 4; i++)
        memcpy(stack_copy[i], hvi_sim_phys_ptr(f->sim, f->stack_gpa[i]), 4096);
}
static bool stack_same(struct fx *f)
{
    for (int i = 0; i < 4; i++)
        if (memcmp(stack_copy[i], hvi_sim_phys_ptr(f->sim, f->stack_gpa[i]), 4096))
            return false;
    return true;
}

/* ---- accept and jobs for the tests ---- */
static uint64_t g_stack_lo = STACK_VA;
static hvi_status accept_ok(void *ctx, uint32_t vcpu, const hvi_regs *r, uint64_t *lo)
{
    (void)ctx, (void)vcpu, (void)r;
    *lo = g_stack_lo;
    return HVI_OK;
}

struct job {
    int calls_wanted, made;
    uint64_t rax[4];
    struct lixa_block b;
};

static int job_next(void *p, bool first, uint64_t rax, uint64_t top, struct lixa_call *c)
{
    struct job *j = p;
    if (!first)
        j->rax[j->made - 1] = rax;
    if (j->made == j->calls_wanted)
        return 0;
    static const char *const argv[] = {"/bin/sh", "-c", "echo hi > /tmp/x", NULL};
    static const char *const envp[] = {"PATH=/bin", NULL};
    hvi_status st = lixa_layout_argv(&j->b, top, argv, envp);
    if (st != HVI_OK)
        return st;
    *c = (struct lixa_call){
        .fn = j->made ? FN2_VA : FN_VA, .data_base = j->b.base, .data = j->b.buf, .len = j->b.len};
    c->args[0] = j->b.path, c->args[1] = j->b.argv, c->args[2] = j->b.envp, c->args[3] = 2;
    j->made++;
    return 1;
}

static uint64_t rd64(struct fx *f, uint64_t va)
{
    uint64_t v = 0;
    hvi_gva_read_u64(f->e, 0, va, &v);
    return v;
}

/* ---- tests ---- */

HVI_TEST(layout_argv_envp)
{
    static const char *const argv[] = {"/bin/sh", "-c", "echo hi", NULL};
    static const char *const envp[] = {"HOME=/", NULL};
    static struct lixa_block b;
    uint64_t top = 0xffffc90000013f00ull;
    CHECK_OK(lixa_layout_argv(&b, top, argv, envp));
    CHECK_EQ_U64(b.base & 15, 0);
    CHECK(b.base + b.len <= top && b.len % 16 == 0);
    CHECK_EQ_U64(b.argv, b.base);
    CHECK_EQ_U64(b.envp, b.base + 4 * 8);
    uint64_t p[6];
    memcpy(p, b.buf, sizeof(p));
    CHECK_EQ_U64(p[0], b.path);
    CHECK_EQ_U64(p[3], 0); /* argv NULL */
    CHECK_EQ_U64(p[5], 0); /* envp NULL */
    CHECK(!strcmp((const char *)b.buf + (p[0] - b.base), "/bin/sh"));
    CHECK(!strcmp((const char *)b.buf + (p[1] - b.base), "-c"));
    CHECK(!strcmp((const char *)b.buf + (p[2] - b.base), "echo hi"));
    CHECK(!strcmp((const char *)b.buf + (p[4] - b.base), "HOME=/"));
    for (int i = 0; i < 5; i++)
        if (i != 3)
            CHECK(p[i] >= b.base + 6 * 8 && p[i] < b.base + b.len);
    /* no envp: an empty array */
    CHECK_OK(lixa_layout_argv(&b, top, argv, NULL));
    memcpy(p, b.buf, 5 * 8);
    CHECK_EQ_U64(b.envp, b.base + 32);
    CHECK_EQ_U64(p[4], 0);
}

HVI_TEST(layout_limits)
{
    static struct lixa_block b;
    static const char *many[LIXA_MAX_ARGS + 2];
    for (unsigned i = 0; i < LIXA_MAX_ARGS + 1; i++)
        many[i] = "x";
    many[LIXA_MAX_ARGS + 1] = NULL;
    CHECK(lixa_layout_argv(&b, 1ull << 40, many, NULL) == HVI_E_LIMIT);
    static char big[LIXA_MAX_SCRATCH + 10];
    memset(big, 'a', sizeof(big) - 1);
    const char *const a2[] = {"/bin/x", big, NULL};
    CHECK(lixa_layout_argv(&b, 1ull << 40, a2, NULL) == HVI_E_LIMIT);
    const char *const a3[] = {NULL};
    CHECK(lixa_layout_argv(&b, 1ull << 40, a3, NULL) == HVI_E_INVAL);
    const char *const a4[] = {"/bin/sh", NULL};
    CHECK(lixa_layout_argv(&b, 16, a4, NULL) == HVI_E_RANGE);
}

/* One call: registers redirected, stack laid out; the return restores everything. */
HVI_TEST(call_and_restore_exactly)
{
    struct fx f;
    REQUIRE(fx_init(&f, 1) == 0);
    static struct lixa_machine m;
    struct job j = {.calls_wanted = 1};
    hvi_regs before = *hvi_sim_vcpu_regs(f.sim, 0);
    snap_stack(&f);
    uint64_t trig[] = {TRIG_VA};
    REQUIRE(lixa_start(&m, f.e, trig, 1, PAD_VA, accept_ok, NULL, job_next, &j, 5000, 5000) ==
            HVI_OK);
    CHECK(hvi_sim_breakpoint_at(f.sim, TRIG_VA));
    CHECK(lixa_poll(&m) == HVI_E_BUSY);
    hvi_event_reply rep = {0};
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, TRIG_VA, &rep));
    CHECK(rep.regs_changed);
    CHECK(m.phase == LIXA_IN_CALL);
    CHECK(!hvi_sim_breakpoint_at(f.sim, TRIG_VA));
    CHECK(hvi_sim_breakpoint_at(f.sim, PAD_VA));
    hvi_regs *r = hvi_sim_vcpu_regs(f.sim, 0);
    CHECK_EQ_U64(r->rip, FN_VA);
    CHECK_EQ_U64(r->gpr[HVI_RSP] & 15, 8); /* as after a call */
    CHECK(r->gpr[HVI_RSP] < RSP0 - LIXA_REDZONE);
    CHECK_EQ_U64(rd64(&f, r->gpr[HVI_RSP]), PAD_VA);
    CHECK_EQ_U64(r->gpr[HVI_RDI], j.b.path);
    CHECK_EQ_U64(r->gpr[HVI_RSI], j.b.argv);
    CHECK_EQ_U64(r->gpr[HVI_RDX], j.b.envp);
    CHECK_EQ_U64(r->gpr[HVI_RCX], 2);
    char s[32] = {0};
    CHECK_OK(hvi_gva_read(f.e, 0, rd64(&f, j.b.argv + 16), s, 17));
    CHECK(!strcmp(s, "echo hi > /tmp/x"));
    /* the bytes right below the interrupted RSP are untouched */
    uint8_t red[LIXA_REDZONE], red0[LIXA_REDZONE];
    CHECK_OK(hvi_gva_read(f.e, 0, RSP0 - LIXA_REDZONE, red, sizeof(red)));
    memcpy(red0, stack_copy[3] + ((RSP0 - LIXA_REDZONE) & 0xfff), sizeof(red0));
    CHECK(!memcmp(red, red0, sizeof(red)));
    /* the function returns: RSP one slot up, RAX the status */
    r->gpr[HVI_RSP] += 8;
    r->gpr[HVI_RAX] = 0x300;
    r->gpr[HVI_R11] = 0xdead; /* clobbered by the callee */
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, PAD_VA, &rep));
    CHECK(m.phase == LIXA_DONE);
    CHECK_OK(lixa_poll(&m));
    CHECK_EQ_U64(j.rax[0], 0x300);
    r = hvi_sim_vcpu_regs(f.sim, 0);
    CHECK_EQ_U64(r->rip, TRIG_VA);
    CHECK(!memcmp(r->gpr, before.gpr, sizeof(r->gpr)));
    CHECK_EQ_U64(r->rflags, before.rflags);
    CHECK(stack_same(&f));
    CHECK_EQ_U64(hvi_sim_breakpoint_count(f.sim), 0);
    CHECK_EQ_U64(m.calls, 1);
    CHECK_OK(lixa_cancel(&m));
    fx_free(&f);
}

/* Two calls in one borrowing, the task returning on another vCPU; a return with the wrong RSP
 * is not ours. */
HVI_TEST(two_calls_other_vcpu_wrong_rsp)
{
    struct fx f;
    REQUIRE(fx_init(&f, 2) == 0);
    static struct lixa_machine m;
    struct job j = {.calls_wanted = 2};
    hvi_regs before = *hvi_sim_vcpu_regs(f.sim, 0);
    snap_stack(&f);
    uint64_t trig[] = {TRIG_VA, TRIG_VA + 0x10};
    REQUIRE(lixa_start(&m, f.e, trig, 2, PAD_VA, accept_ok, NULL, job_next, &j, 5000, 5000) ==
            HVI_OK);
    hvi_event_reply rep = {0};
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, TRIG_VA, &rep));
    CHECK_EQ_U64(hvi_sim_breakpoint_count(f.sim), 1); /* both triggers gone, the pad set */
    uint64_t slot = hvi_sim_vcpu_regs(f.sim, 0)->gpr[HVI_RSP];
    /* vCPU 1 reaches the pad with another RSP: ignored */
    hvi_regs *r1 = hvi_sim_vcpu_regs(f.sim, 1);
    r1->gpr[HVI_RSP] = slot + 0x40;
    CHECK_OK(hvi_sim_guest_exec(f.sim, 1, PAD_VA, &rep));
    CHECK(!rep.regs_changed);
    CHECK_EQ_U64(m.wrong_returns, 1);
    CHECK(m.phase == LIXA_IN_CALL);
    CHECK(lixa_cancel(&m) == HVI_E_BUSY);
    /* the borrowed task, migrated, returns on vCPU 1: the second call is placed there */
    r1->gpr[HVI_RSP] = slot + 8;
    r1->gpr[HVI_RAX] = 7;
    CHECK_OK(hvi_sim_guest_exec(f.sim, 1, PAD_VA, &rep));
    CHECK(rep.regs_changed);
    r1 = hvi_sim_vcpu_regs(f.sim, 1);
    CHECK_EQ_U64(r1->rip, FN2_VA);
    CHECK_EQ_U64(j.rax[0], 7);
    CHECK_EQ_U64(m.other_vcpu, 1);
    r1->gpr[HVI_RSP] += 8;
    r1->gpr[HVI_RAX] = (uint64_t)-2;
    CHECK_OK(hvi_sim_guest_exec(f.sim, 1, PAD_VA, &rep));
    CHECK_OK(lixa_poll(&m));
    CHECK_EQ_U64(j.rax[1], (uint64_t)-2);
    r1 = hvi_sim_vcpu_regs(f.sim, 1);
    CHECK_EQ_U64(r1->rip, TRIG_VA);
    CHECK(!memcmp(r1->gpr, before.gpr, sizeof(r1->gpr))); /* vCPU 0's saved state, on vCPU 1 */
    CHECK(stack_same(&f));
    CHECK_EQ_U64(hvi_sim_breakpoint_count(f.sim), 0);
    fx_free(&f);
}

static void sleep_ms(long ms)
{
    struct timespec t = {0, ms * 1000000L};
    nanosleep(&t, NULL);
}

/* No task comes: the triggers go and the run fails with HVI_E_TIMEOUT. */
HVI_TEST(trigger_timeout)
{
    struct fx f;
    REQUIRE(fx_init(&f, 1) == 0);
    static struct lixa_machine m;
    struct job j = {.calls_wanted = 1};
    uint64_t trig[] = {TRIG_VA};
    REQUIRE(lixa_start(&m, f.e, trig, 1, PAD_VA, accept_ok, NULL, job_next, &j, 1, 5000) == HVI_OK);
    CHECK(lixa_start(&m, f.e, trig, 1, PAD_VA, accept_ok, NULL, job_next, &j, 1, 5000) ==
          HVI_E_STATE);
    sleep_ms(3);
    lixa_tick(&m);
    CHECK(lixa_poll(&m) == HVI_E_TIMEOUT);
    CHECK(strstr(m.why, "no task") != NULL);
    CHECK_EQ_U64(hvi_sim_breakpoint_count(f.sim), 0);
    CHECK_OK(lixa_cancel(&m));
    fx_free(&f);
}

/* The status never comes back: reported as a timeout, the task is not touched (it is inside the
 * function); when it finally returns it is restored all the same. */
HVI_TEST(call_timeout_then_late_return)
{
    struct fx f;
    REQUIRE(fx_init(&f, 1) == 0);
    static struct lixa_machine m;
    struct job j = {.calls_wanted = 1};
    hvi_regs before = *hvi_sim_vcpu_regs(f.sim, 0);
    snap_stack(&f);
    uint64_t trig[] = {TRIG_VA};
    REQUIRE(lixa_start(&m, f.e, trig, 1, PAD_VA, accept_ok, NULL, job_next, &j, 5000, 1) == HVI_OK);
    hvi_event_reply rep = {0};
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, TRIG_VA, &rep));
    hvi_regs *r = hvi_sim_vcpu_regs(f.sim, 0);
    r->rip = FN_VA + 0x30; /* somewhere inside the function, sleeping */
    hvi_regs inside = *r;
    sleep_ms(3);
    lixa_tick(&m);
    CHECK(lixa_poll(&m) == HVI_E_TIMEOUT);
    CHECK(lixa_cancel(&m) == HVI_E_BUSY);
    CHECK(!memcmp(hvi_sim_vcpu_regs(f.sim, 0), &inside, sizeof(inside)));
    CHECK(hvi_sim_breakpoint_at(f.sim, PAD_VA));
    r->gpr[HVI_RSP] += 8;
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, PAD_VA, &rep));
    CHECK(lixa_poll(&m) == HVI_E_TIMEOUT); /* the timeout stays the answer */
    CHECK(m.phase == LIXA_DONE);
    CHECK(!memcmp(hvi_sim_vcpu_regs(f.sim, 0)->gpr, before.gpr, sizeof(before.gpr)));
    CHECK(stack_same(&f));
    CHECK_OK(lixa_cancel(&m));
    CHECK_EQ_U64(hvi_sim_breakpoint_count(f.sim), 0);
    fx_free(&f);
}

/* Hits that must not be used: user mode, interrupts off, too little stack left, a stack window
 * that does not translate. Each is refused and the machine keeps waiting. */
HVI_TEST(hostile_trigger_states_refused)
{
    struct fx f;
    REQUIRE(fx_init(&f, 1) == 0);
    static struct lixa_machine m;
    struct job j = {.calls_wanted = 1};
    uint64_t trig[] = {TRIG_VA};
    REQUIRE(lixa_start(&m, f.e, trig, 1, PAD_VA, accept_ok, NULL, job_next, &j, 5000, 5000) ==
            HVI_OK);
    hvi_regs *r = hvi_sim_vcpu_regs(f.sim, 0);
    hvi_event_reply rep = {0};
    r->seg[HVI_CS].selector = 0x33; /* user mode */
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, TRIG_VA, &rep));
    r->seg[HVI_CS].selector = 0x10;
    r->rflags = 0x46; /* IF clear */
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, TRIG_VA, &rep));
    r->rflags = 0x246;
    r->gpr[HVI_RSP] = STACK_VA + 0x2000; /* deep already: less than the margin left */
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, TRIG_VA, &rep));
    r->gpr[HVI_RSP] = 0xffffc90000100000ull; /* unmapped, and the accept says its stack is */
    g_stack_lo = 0xffffc900000f0000ull;      /* far below: the window does not translate */
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, TRIG_VA, &rep));
    g_stack_lo = STACK_VA;
    r->gpr[HVI_RSP] = 0x1000; /* below any window */
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, TRIG_VA, &rep));
    CHECK_EQ_U64(m.rejected, 5);
    CHECK_EQ_U64(m.trigger_hits, 5);
    CHECK(m.phase == LIXA_WAIT_TRIGGER);
    CHECK(!rep.regs_changed);
    CHECK(hvi_sim_breakpoint_at(f.sim, TRIG_VA));
    CHECK_OK(lixa_cancel(&m));
    CHECK(lixa_poll(&m) == HVI_E_STATE);
    CHECK_EQ_U64(hvi_sim_breakpoint_count(f.sim), 0);
    fx_free(&f);
}

/* The hook layer's detach removes every detour; the pad is a raw breakpoint of the agent and
 * survives it, so a borrowed task inside a call still comes back to the engine. */
HVI_TEST(pad_survives_hook_detach)
{
    struct fx f;
    REQUIRE(fx_init(&f, 1) == 0);
    static struct lixa_machine m;
    struct job j = {.calls_wanted = 1};
    uint64_t trig[] = {TRIG_VA};
    REQUIRE(lixa_start(&m, f.e, trig, 1, PAD_VA, accept_ok, NULL, job_next, &j, 5000, 5000) ==
            HVI_OK);
    hvi_event_reply rep = {0};
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, TRIG_VA, &rep));
    CHECK(m.phase == LIXA_IN_CALL);
    (void)hvi_detach(f.e);
    CHECK(hvi_sim_breakpoint_at(f.sim, PAD_VA));
    CHECK(lixa_cancel(&m) == HVI_E_BUSY);
    fx_free(&f);
}

/* A stack that reads but is not writable: nothing is changed, the run fails cleanly. */
HVI_TEST(read_only_stack_fails_cleanly)
{
    struct fx f;
    REQUIRE(fx_init(&f, 1) == 0);
    for (int i = 0; i < 4; i++)
        REQUIRE(hvi_sim_map(f.sim, f.cr3, HVI_PAGING_4LVL, STACK_VA + (uint64_t)i * 4096,
                            f.stack_gpa[i], HVI_SIM_4K, HVI_SIM_PTE_P | HVI_SIM_PTE_NX) == HVI_OK);
    hvi_mem_flush_translations(f.e, 0);
    static struct lixa_machine m;
    struct job j = {.calls_wanted = 1};
    hvi_regs before = *hvi_sim_vcpu_regs(f.sim, 0);
    snap_stack(&f);
    uint64_t trig[] = {TRIG_VA};
    REQUIRE(lixa_start(&m, f.e, trig, 1, PAD_VA, accept_ok, NULL, job_next, &j, 5000, 5000) ==
            HVI_OK);
    hvi_event_reply rep = {0};
    CHECK_OK(hvi_sim_guest_exec(f.sim, 0, TRIG_VA, &rep));
    CHECK(m.phase == LIXA_DONE);
    CHECK(lixa_poll(&m) == HVI_E_DENIED);
    hvi_regs *r = hvi_sim_vcpu_regs(f.sim, 0);
    CHECK_EQ_U64(r->rip, TRIG_VA);
    CHECK(!memcmp(r->gpr, before.gpr, sizeof(r->gpr)));
    CHECK(stack_same(&f));
    CHECK_EQ_U64(hvi_sim_breakpoint_count(f.sim), 0);
    fx_free(&f);
}

/* A backend without breakpoints or register writes is refused up front. */
HVI_TEST(backend_without_breakpoints)
{
    struct fx f;
    REQUIRE(fx_init(&f, 1) == 0);
    hvi_sim_attach(f.sim, NULL);
    hvi_engine_free(f.e);
    hvi_sim_set_caps(f.sim, HVI_SIM_CAPS_QEMU_LIKE & ~(uint64_t)HVI_CAP_BREAKPOINT);
    hvi_glue g;
    REQUIRE(hvi_sim_glue(f.sim, &g) == HVI_OK && hvi_engine_new(&g, &f.e) == HVI_OK);
    hvi_sim_attach(f.sim, f.e);
    static struct lixa_machine m;
    struct job j = {.calls_wanted = 1};
    uint64_t trig[] = {TRIG_VA};
    CHECK(lixa_start(&m, f.e, trig, 1, PAD_VA, accept_ok, NULL, job_next, &j, 5000, 5000) ==
          HVI_E_UNSUPPORTED);
    fx_free(&f);
}

/* ---- the jobs (lix_agent_jobs.c) with the kernel's answers, hostile ones included ---- */
#define F_OPEN 0xffffffff81300000ull
#define F_WRITE 0xffffffff81300100ull
#define F_CLOSE 0xffffffff81300200ull
#define FILEP 0xffff888001234500ull
#define TOP 0xffffc90000013f00ull

static void put_init(struct lixa_put *p, const uint8_t *data, size_t len)
{
    memset(p, 0, sizeof(*p));
    p->f_open = F_OPEN, p->f_write = F_WRITE, p->f_close = F_CLOSE;
    p->data = data, p->len = len, p->mode = 0600;
    strcpy(p->path, "/tmp/f");
}

HVI_TEST(put_job_calls_in_order)
{
    static uint8_t data[5000];
    static struct lixa_put p;
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 13);
    put_init(&p, data, sizeof(data));
    struct lixa_call c;
    REQUIRE(lixa_put_next(&p, true, 0, TOP, &c) == 1);
    CHECK_EQ_U64(c.fn, F_OPEN);
    CHECK_EQ_U64(c.args[0], c.data_base + 16);
    CHECK(!strcmp((const char *)c.data + 16, "/tmp/f"));
    CHECK_EQ_U64(c.args[1], 01101);
    CHECK_EQ_U64(c.args[2], 0600);
    CHECK(c.data_base + c.len <= TOP && (c.data_base & 15) == 0);
    uint64_t ret = FILEP;
    static const uint32_t chunk[3] = {2048, 2048, 904};
    for (int i = 0; i < 3; i++) {
        REQUIRE(lixa_put_next(&p, false, ret, TOP, &c) == 1);
        CHECK_EQ_U64(c.fn, F_WRITE);
        CHECK_EQ_U64(c.args[0], FILEP);
        CHECK_EQ_U64(c.args[1], c.data_base + 16);
        CHECK_EQ_U64(c.args[2], chunk[i]);
        CHECK_EQ_U64(c.args[3], c.data_base); /* &pos */
        uint64_t pos = 0;
        memcpy(&pos, c.data, 8);
        CHECK_EQ_U64(pos, 2048u * (unsigned)i);
        CHECK(!memcmp(c.data + 16, data + 2048 * i, chunk[i]));
        CHECK(c.data_base + c.len <= TOP && c.len <= LIXA_MAX_SCRATCH);
        ret = chunk[i];
    }
    REQUIRE(lixa_put_next(&p, false, ret, TOP, &c) == 1);
    CHECK_EQ_U64(c.fn, F_CLOSE);
    CHECK_EQ_U64(c.args[0], FILEP);
    CHECK_EQ_U64(c.len, 0);
    CHECK(lixa_put_next(&p, false, 0, TOP, &c) == 0);
    CHECK_EQ_U64((uint64_t)p.value, sizeof(data));
    CHECK(lixa_put_next(&p, false, 0, TOP, &c) == HVI_E_STATE); /* nothing after the end */
    /* an empty file: open, close */
    put_init(&p, data, 0);
    REQUIRE(lixa_put_next(&p, true, 0, TOP, &c) == 1);
    REQUIRE(lixa_put_next(&p, false, FILEP, TOP, &c) == 1);
    CHECK_EQ_U64(c.fn, F_CLOSE);
    CHECK(lixa_put_next(&p, false, 0, TOP, &c) == 0);
    CHECK_EQ_U64(p.value, 0);
}

HVI_TEST(put_job_hostile_returns)
{
    static uint8_t data[3000];
    static struct lixa_put p;
    struct lixa_call c;
    /* filp_open: ERR_PTR(-ENOENT) ends the job with the errno, no close */
    put_init(&p, data, sizeof(data));
    REQUIRE(lixa_put_next(&p, true, 0, TOP, &c) == 1);
    CHECK(lixa_put_next(&p, false, (uint64_t)-2, TOP, &c) == 0);
    CHECK(p.value == -2);
    /* a user-space "file": -EFAULT, nothing written, no close of a bogus pointer */
    put_init(&p, data, sizeof(data));
    REQUIRE(lixa_put_next(&p, true, 0, TOP, &c) == 1);
    CHECK(lixa_put_next(&p, false, 0x7fff00001000ull, TOP, &c) == 0);
    CHECK(p.value == -14);
    /* kernel_write: an errno, a count larger than asked, a negative non-errno: stop, close */
    static const uint64_t bad[3] = {(uint64_t)-5, 100000, 0xffff800000000000ull};
    static const int64_t want[3] = {-5, -28, -28};
    for (int i = 0; i < 3; i++) {
        put_init(&p, data, sizeof(data));
        REQUIRE(lixa_put_next(&p, true, 0, TOP, &c) == 1);
        REQUIRE(lixa_put_next(&p, false, FILEP, TOP, &c) == 1);
        REQUIRE(lixa_put_next(&p, false, bad[i], TOP, &c) == 1);
        CHECK_EQ_U64(c.fn, F_CLOSE);
        CHECK_EQ_U64(c.args[0], FILEP);
        CHECK(lixa_put_next(&p, false, 0, TOP, &c) == 0);
        CHECK(p.value == want[i]);
    }
    /* a short write stops too */
    put_init(&p, data, sizeof(data));
    REQUIRE(lixa_put_next(&p, true, 0, TOP, &c) == 1);
    REQUIRE(lixa_put_next(&p, false, FILEP, TOP, &c) == 1);
    REQUIRE(lixa_put_next(&p, false, 10, TOP, &c) == 1);
    CHECK_EQ_U64(c.fn, F_CLOSE);
    /* no path, or a top too low for a block: refused before any call */
    put_init(&p, data, 1);
    p.path[0] = 0;
    CHECK(lixa_put_next(&p, true, 0, TOP, &c) == HVI_E_INVAL);
    put_init(&p, data, 1);
    CHECK(lixa_put_next(&p, true, 0, 64, &c) == HVI_E_INVAL);
}

HVI_TEST(run_job_call_and_status)
{
    static struct lixa_run r;
    static const char *const argv[] = {"/bin/sh", "-c", "exit 3", NULL};
    memset(&r, 0, sizeof(r));
    REQUIRE(lixa_run_set(&r, argv, NULL) == HVI_OK);
    r.fn = 0xffffffff81100000ull, r.wait = 2;
    struct lixa_call c;
    REQUIRE(lixa_run_next(&r, true, 0, TOP, &c) == 1);
    CHECK_EQ_U64(c.fn, 0xffffffff81100000ull);
    CHECK_EQ_U64(c.args[0], r.blk.path);
    CHECK_EQ_U64(c.args[1], r.blk.argv);
    CHECK_EQ_U64(c.args[2], r.blk.envp);
    CHECK_EQ_U64(c.args[3], 2);
    CHECK(c.data == r.blk.buf && c.len == r.blk.len && c.data_base == r.blk.base);
    /* an int comes back in EAX; the upper half is garbage */
    CHECK(lixa_run_next(&r, false, 0xdeadbeef00000300ull, TOP, &c) == 0);
    CHECK(r.value == 0x300);
    CHECK(lixa_run_next(&r, false, 0x00000000fffffffeull, TOP, &c) == 0);
    CHECK(r.value == -2);
    const char *const none[] = {NULL};
    CHECK(lixa_run_set(&r, none, NULL) == HVI_E_INVAL);
}

HVI_TEST_MAIN()
