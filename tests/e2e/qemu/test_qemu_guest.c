/*
 * e2e: a real Linux guest (Debian kernel, busybox initramfs, TCG, nokaslr, 1 vCPU) introspected
 * through the QEMU backend: registers, memory, breakpoints with step-over, early return through
 * changed registers, a write watchpoint, pause/resume and detach.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/engine.h"
#include "qemu_util.h"

static hvi_qemu_vm *vm;
static hvi_qemu *q;
static hvi_glue glue;
static hvi_engine *eng;
static const char *skip_why;

static void teardown(void)
{
    hvi_engine_free(eng);
    hvi_qemu_close(q);
    hvi_qemu_vm_stop(vm);
}

static bool setup(void)
{
    if (q)
        return true;
    if (skip_why || (skip_why = qt_missing()) != NULL)
        return false;
    hvi_qemu_vm_opts o = {.nokaslr = true, .boot_timeout_ms = 120000};
    hvi_status st = hvi_qemu_vm_start(&o, &vm);
    if (st != HVI_OK) {
        fprintf(stderr, "boot failed: %s: %s\n", hvi_strstatus(st), hvi_qemu_vm_last_error());
        return false;
    }
    atexit(teardown);
    if (hvi_qemu_open(vm, &q) != HVI_OK || hvi_qemu_glue(q, &glue) != HVI_OK ||
        hvi_engine_new(&glue, &eng) != HVI_OK)
        return false;
    /* Memory-level use: the paging context from vCPU 0 (the OS layers are tested elsewhere). */
    hvi_regs r;
    if (glue.get_regs(q, 0, HVI_REGS_CR | HVI_REGS_EFER, &r) != HVI_OK ||
        hvi_mem_set_context(eng, hvi_paging_mode_from_regs(r.cr0, r.cr4, r.efer),
                            r.cr3 & 0x000ffffffffff000ull) != HVI_OK)
        return false;
    /* the session starts paused; the guest shell must run for console commands */
    return glue.resume(q) == HVI_OK;
}

#define SETUP()                                                                                    \
    do {                                                                                           \
        if (!setup()) {                                                                            \
            if (skip_why)                                                                          \
                SKIP_CASE(skip_why);                                                               \
            REQUIRE(!"guest setup failed");                                                        \
        }                                                                                          \
    } while (0)

static uint64_t sym(const char *name)
{
    uint64_t a = 0;
    if (hvi_qemu_vm_kallsyms(vm, name, &a) != HVI_OK)
        return 0;
    return a;
}

HVI_TEST(registers_and_dtr)
{
    SETUP();
    hvi_regs r;
    CHECK_OK(glue.get_regs(q, 0, HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_DTR, &r));
    CHECK(r.cr0 & 0x80000000u);   /* paging on */
    CHECK(r.efer & (1u << 10));   /* long mode active */
    CHECK(!(r.cr4 & (1u << 12))); /* default CPU model: 4-level paging */
    CHECK(r.cr3 != 0);
    CHECK(r.rip >= 0xffffffff80000000ull); /* attached while idle: in kernel text */
    CHECK(r.valid & HVI_REGS_DTR);
    CHECK(r.idtr_base >= 0xfffffe0000000000ull);
    CHECK_EQ_U64(r.idtr_limit, 0xfff);
    CHECK(r.seg[HVI_CS].selector == 0x10);
    uint32_t n = 0;
    CHECK_OK(glue.vcpu_count(q, &n));
    CHECK_EQ_U64(n, 1);
    CHECK_EQ_U64(hvi_mem_paging_mode(eng), HVI_PAGING_4LVL);
}

HVI_TEST(gpa_outside_ram_refused)
{
    SETUP();
    void *p;
    uint64_t max;
    CHECK_OK(glue.max_gpfn(q, &max));
    CHECK_EQ_U64(max, (512ull << 20) / 4096 - 1);
    CHECK_STATUS(glue.map_gpa(q, 512ull << 20, &p), HVI_E_RANGE);
    CHECK_STATUS(glue.map_gpa(q, 4ull << 30, &p), HVI_E_RANGE);
    CHECK_STATUS(glue.map_gpa(q, 0x1001, &p), HVI_E_INVAL);
    CHECK_OK(glue.map_gpa(q, 0, &p));
}

HVI_TEST(banner_through_ram_file)
{
    SETUP();
    uint64_t banner = sym("linux_banner");
    REQUIRE(banner >= 0xffffffff80000000ull);
    CHECK_EQ_U64(banner, sym("linux_banner")); /* nokaslr: stable */
    hvi_regs r;
    REQUIRE(glue.get_regs(q, 0, HVI_REGS_CR, &r) == HVI_OK);
    char text[160] = {0}, *uname = NULL;
    CHECK_OK(qt_gva_read(&glue, &r, banner, text, sizeof(text) - 1));
    REQUIRE(hvi_qemu_vm_console(vm, "uname -r", NULL, 20000, &uname) == HVI_OK);
    uname[strcspn(uname, "\n")] = '\0';
    char want[128];
    snprintf(want, sizeof(want), "Linux version %s ", uname);
    CHECK(strncmp(text, want, strlen(want)) == 0);
    if (strncmp(text, want, strlen(want)) != 0)
        fprintf(stderr, "  banner read: %.80s / wanted %s\n", text, want);
    free(uname);
}

HVI_TEST(engine_walker_agrees_with_the_test_oracle)
{
    SETUP();
    uint64_t banner = sym("linux_banner"), handler = sym("asm_exc_divide_error");
    REQUIRE(banner && handler);
    hvi_regs r;
    REQUIRE(glue.get_regs(q, 0, HVI_REGS_CR | HVI_REGS_DTR, &r) == HVI_OK);
    uint64_t want = 0;
    hvi_translation t;
    memset(&t, 0, sizeof(t));
    CHECK_OK(qt_translate(&glue, r.cr3, false, banner, &want));
    CHECK_OK(hvi_gva_translate(eng, hvi_mem_kernel_cr3(eng), banner, &t));
    CHECK_EQ_U64(t.gpa, want);
    char a[64] = {0}, b[64] = {0};
    CHECK_OK(hvi_gva_read(eng, 0, banner, a, sizeof(a) - 1));
    CHECK_OK(qt_gva_read(&glue, &r, banner, b, sizeof(b) - 1));
    CHECK_STR(a, b);
    uint8_t gate[16]; /* IDT[0] points at the handler the guest's kallsyms names */
    CHECK_OK(hvi_gva_read(eng, 0, r.idtr_base, gate, sizeof(gate)));
    uint64_t h = (uint64_t)(gate[0] | gate[1] << 8) | (uint64_t)(gate[6] | gate[7] << 8) << 16 |
                 (uint64_t)(gate[8] | gate[9] << 8 | gate[10] << 16 | (uint32_t)gate[11] << 24)
                     << 32;
    CHECK_EQ_U64(h, handler);
}

/* ---- breakpoints ---- */

struct bp_state {
    uint64_t addr;
    uint32_t hits, steps, step_rip_moved, resumed_inside_event;
    bool step_after_hit, return_early;
    uint64_t fake_ret;
};
static struct bp_state bps;

static hvi_status on_bp(hvi_engine *e, const hvi_event *ev, hvi_event_reply *rep, void *ctx)
{
    (void)ctx;
    (void)rep;
    if (ev->gva != bps.addr)
        return HVI_OK;
    bps.hits++;
    if (bps.step_after_hit)
        e->glue.single_step(e->glue.ctx, ev->vcpu, true);
    if (bps.return_early) { /* pop the return address, set RAX: the function never runs */
        hvi_regs r;
        uint64_t ret = 0;
        if (e->glue.get_regs(e->glue.ctx, ev->vcpu, HVI_REGS_GPR | HVI_REGS_CR, &r) != HVI_OK ||
            qt_gva_read(&e->glue, &r, r.gpr[HVI_RSP], &ret, 8) != HVI_OK)
            return HVI_E_BACKEND;
        r.rip = ret;
        r.gpr[HVI_RSP] += 8;
        r.gpr[HVI_RAX] = bps.fake_ret;
        rep->regs_changed = true;
        return e->glue.set_regs(e->glue.ctx, ev->vcpu, HVI_REGS_GPR, &r);
    }
    return HVI_OK;
}

static hvi_status on_step(hvi_engine *e, const hvi_event *ev, hvi_event_reply *rep, void *ctx)
{
    (void)ctx;
    (void)rep;
    hvi_regs r;
    bps.steps++;
    /* pause/resume inside an event must not let the vCPU go before the event is done */
    if (e->glue.pause(e->glue.ctx) != HVI_OK || e->glue.resume(e->glue.ctx) != HVI_OK ||
        hvi_qemu_running(q))
        bps.resumed_inside_event++;
    if (e->glue.get_regs(e->glue.ctx, ev->vcpu, HVI_REGS_GPR, &r) != HVI_OK)
        return HVI_E_BACKEND;
    if (r.rip == bps.addr) /* TCG may report a step before the instruction ran: step again */
        return HVI_OK;
    bps.step_rip_moved++;
    return e->glue.single_step(e->glue.ctx, ev->vcpu, false);
}

struct run_args {
    int ms;
    uint32_t max, events;
    hvi_status st;
};

static void *run_thread(void *p)
{
    struct run_args *a = p;
    a->st = hvi_qemu_run(q, eng, a->ms, a->max, &a->events);
    return NULL;
}

HVI_TEST(breakpoint_hit_step_over_and_continue)
{
    SETUP();
    bps = (struct bp_state){.addr = sym("__x64_sys_getpid"), .step_after_hit = true};
    REQUIRE(bps.addr >= 0xffffffff80000000ull);
    char *out = NULL;
    REQUIRE(hvi_qemu_vm_console(vm, "hvi-workload getpid >/dev/null 2>&1 & echo $! > /tmp/wl", NULL,
                                20000, &out) == HVI_OK);
    free(out);
    CHECK_OK(hvi_engine_add_handler(eng, HVI_EV_BREAKPOINT, on_bp, NULL));
    CHECK_OK(hvi_engine_add_handler(eng, HVI_EV_SINGLE_STEP, on_step, NULL));
    CHECK_OK(glue.set_breakpoint(q, bps.addr, true));
    CHECK_STATUS(glue.set_breakpoint(q, bps.addr, true), HVI_E_EXISTS);
    uint32_t events = 0, total = 0;
    while (bps.hits < 4 && total < 40) {
        CHECK_OK(hvi_qemu_run(q, eng, 20000, 1, &events));
        if (!events)
            break;
        total += events;
    }
    CHECK_EQ_U64(bps.hits, 4);
    CHECK_EQ_U64(bps.step_rip_moved, 3); /* every earlier hit was stepped past the breakpoint */
    CHECK(bps.steps >= 3 && bps.steps <= 6);
    CHECK_OK(hvi_qemu_run(q, eng, 5000, 1, &events)); /* the 4th hit's step */
    CHECK_EQ_U64(bps.step_rip_moved, 4);
    CHECK_EQ_U64(bps.resumed_inside_event, 0);
    CHECK_OK(glue.set_breakpoint(q, bps.addr, false));
    CHECK_OK(glue.resume(q));
    REQUIRE(hvi_qemu_vm_console(vm, "kill $(cat /tmp/wl); echo killed", NULL, 20000, &out) ==
            HVI_OK);
    CHECK(strstr(out, "killed") != NULL);
    free(out);
}

HVI_TEST(breakpoint_return_early_changes_guest_result)
{
    SETUP();
    bps =
        (struct bp_state){.addr = sym("__x64_sys_getppid"), .return_early = true, .fake_ret = 4242};
    REQUIRE(bps.addr);
    CHECK_OK(glue.set_breakpoint(q, bps.addr, true));
    struct run_args a = {.ms = 8000};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, run_thread, &a) == 0);
    char *out = NULL; /* ash sets $PPID from getppid() at start */
    hvi_status st = hvi_qemu_vm_console(vm, "sh -c 'echo ppid=$PPID'", NULL, 7000, &out);
    pthread_join(t, NULL);
    CHECK_OK(st);
    CHECK_OK(a.st);
    CHECK(a.events >= 1);
    CHECK(out && strstr(out, "ppid=4242") != NULL);
    if (out && !strstr(out, "ppid=4242"))
        fprintf(stderr, "  guest said: %s\n", out);
    free(out);
    CHECK_OK(glue.set_breakpoint(q, bps.addr, false));
    bps.return_early = false;
    CHECK_OK(hvi_qemu_vm_console(vm, "sh -c 'echo ppid=$PPID'", NULL, 20000, &out));
    CHECK(out && !strstr(out, "ppid=4242"));
    free(out);
}

/* ---- watchpoint ---- */

static uint32_t watch_hits;
static uint64_t watch_addr;

static hvi_status on_watch(hvi_engine *e, const hvi_event *ev, hvi_event_reply *rep, void *ctx)
{
    (void)e, (void)rep, (void)ctx;
    if (ev->gva == watch_addr && ev->after_access && ev->len == 8)
        watch_hits++;
    return HVI_OK;
}

HVI_TEST(write_watchpoint_on_jiffies)
{
    SETUP();
    watch_addr = sym("jiffies_64");
    REQUIRE(watch_addr);
    hvi_regs r;
    uint64_t before = 0, after = 0;
    REQUIRE(glue.get_regs(q, 0, HVI_REGS_CR, &r) == HVI_OK);
    CHECK_OK(qt_gva_read(&glue, &r, watch_addr, &before, 8));
    CHECK_OK(hvi_engine_add_handler(eng, HVI_EV_WATCHPOINT, on_watch, NULL));
    CHECK_OK(glue.set_watchpoint(q, watch_addr, 8, HVI_WATCH_WRITE, true));
    uint32_t events = 0;
    CHECK_OK(hvi_qemu_run(q, eng, 10000, 1, &events));
    CHECK_EQ_U64(events, 1);
    CHECK_EQ_U64(watch_hits, 1);
    CHECK_OK(qt_gva_read(&glue, &r, watch_addr, &after, 8));
    CHECK(after > before); /* reported after the write */
    CHECK_OK(glue.set_watchpoint(q, watch_addr, 8, HVI_WATCH_WRITE, false));
    CHECK_OK(glue.resume(q));
}

HVI_TEST(pause_resume)
{
    SETUP();
    uint64_t j = sym("jiffies_64"), a = 0, b = 0, c = 0;
    REQUIRE(j);
    hvi_regs r;
    REQUIRE(glue.get_regs(q, 0, HVI_REGS_CR, &r) == HVI_OK);
    CHECK_OK(glue.pause(q));
    CHECK(!hvi_qemu_running(q));
    CHECK_OK(qt_gva_read(&glue, &r, j, &a, 8));
    struct timespec ts = {0, 300000000L};
    nanosleep(&ts, NULL);
    CHECK_OK(qt_gva_read(&glue, &r, j, &b, 8));
    CHECK_EQ_U64(a, b); /* frozen */
    CHECK_OK(glue.resume(q));
    CHECK(hvi_qemu_running(q));
    nanosleep(&ts, NULL);
    CHECK_OK(qt_gva_read(&glue, &r, j, &c, 8));
    CHECK(c > b);
}

HVI_TEST(zz_detach_leaves_guest_running)
{
    SETUP();
    CHECK_OK(glue.set_breakpoint(q, sym("__x64_sys_getpid"), true));
    CHECK_OK(glue.pause(q));
    hvi_engine_free(eng);
    eng = NULL;
    CHECK_OK(hvi_qemu_close(q)); /* paused with a breakpoint: close must remove it and resume */
    q = NULL;
    char *out = NULL;
    CHECK_OK(hvi_qemu_vm_console(vm, "sh -c 'echo alive $$'", NULL, 20000, &out));
    CHECK(out && strstr(out, "alive ") != NULL);
    free(out);
}

HVI_TEST_MAIN()
