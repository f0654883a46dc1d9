/*
 * e2e: a KASLR guest with two vCPUs: both vCPUs' registers, the banner found through the
 * guest's own kallsyms, breakpoint hits from both vCPUs, and the session ending cleanly when QEMU
 * is killed under it.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/engine.h"
#include "qemu_util.h"

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t bp_addr;
static uint32_t bp_seen[2];

static hvi_status on_bp(hvi_engine *e, const hvi_event *ev, hvi_event_reply *rep, void *ctx)
{
    (void)e, (void)rep, (void)ctx;
    if (ev->gva == bp_addr && ev->vcpu < 2)
        bp_seen[ev->vcpu]++;
    return HVI_OK;
}

HVI_TEST(kaslr_smp2_then_qemu_killed)
{
    const char *why = qt_missing();
    if (why)
        SKIP_CASE(why);
    hvi_qemu_vm *vm = NULL;
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_qemu_vm_opts o = {.smp = 2, .boot_timeout_ms = 120000};
    hvi_status st = hvi_qemu_vm_start(&o, &vm);
    if (st != HVI_OK)
        fprintf(stderr, "  boot: %s\n", hvi_qemu_vm_last_error());
    REQUIRE(st == HVI_OK);
    uint64_t banner = 0, text = 0;
    CHECK_OK(hvi_qemu_vm_kallsyms(vm, "linux_banner", &banner));
    CHECK_OK(hvi_qemu_vm_kallsyms(vm, "_text", &text));
    CHECK(text != 0xffffffff81000000ull || banner != 0xffffffff82161900ull); /* randomized */
    if (hvi_qemu_open(vm, &q) != HVI_OK || hvi_qemu_glue(q, &g) != HVI_OK) {
        hvi_qemu_vm_stop(vm);
        REQUIRE(!"open failed");
    }
    uint32_t n = 0;
    CHECK_OK(g.vcpu_count(q, &n));
    CHECK_EQ_U64(n, 2);
    hvi_regs r0, r1;
    CHECK_OK(g.get_regs(q, 0, HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_DTR, &r0));
    CHECK_OK(g.get_regs(q, 1, HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_DTR, &r1));
    CHECK(r0.gs_base != r1.gs_base); /* per-CPU areas differ */
    CHECK(r0.cr0 & r1.cr0 & 0x80000000u);
    CHECK(r0.idtr_base == r1.idtr_base);
    char buf[64] = {0};
    CHECK_OK(qt_gva_read(&g, &r0, banner, buf, sizeof(buf) - 1));
    CHECK(strncmp(buf, "Linux version 6.", 16) == 0);
    /* Breakpoints on two vCPUs: hits from both, each stepped over (the loop keeps going). */
    uint64_t getpid = 0;
    char *out = NULL;
    CHECK_OK(g.resume(q));
    CHECK_OK(hvi_qemu_vm_kallsyms(vm, "__x64_sys_getpid", &getpid));
    CHECK_OK(hvi_qemu_vm_console(vm,
                                 "hvi-workload getpid >/dev/null 2>&1 & hvi-workload getpid "
                                 ">/dev/null 2>&1 & echo ok",
                                 NULL, 20000, &out));
    free(out);
    hvi_engine *e = NULL;
    REQUIRE(hvi_engine_new(&g, &e) == HVI_OK);
    REQUIRE(hvi_engine_add_handler(e, HVI_EV_BREAKPOINT, on_bp, NULL) == HVI_OK);
    bp_addr = getpid;
    CHECK_OK(g.set_breakpoint(q, getpid, true));
    uint32_t hits = 0;
    CHECK_OK(hvi_qemu_run(q, e, 30000, 40, &hits));
    CHECK_EQ_U64(hits, 40);
    CHECK_EQ_U64(bp_seen[0] + bp_seen[1], 40);
    CHECK(bp_seen[0] > 0 && bp_seen[1] > 0);
    fprintf(stderr, "  hits per vCPU: %u %u\n", bp_seen[0], bp_seen[1]);
    CHECK_OK(g.set_breakpoint(q, getpid, false));
    hvi_engine_free(e);
    CHECK_OK(g.resume(q));
    /* Kill QEMU mid-session: the loop must end with HVI_E_CLOSED quickly, not hang. */
    kill(hvi_qemu_vm_pid(vm), SIGKILL);
    int64_t t0 = ms_now();
    uint32_t events = 0;
    CHECK_STATUS(hvi_qemu_run(q, NULL, 20000, 0, &events), HVI_E_CLOSED);
    CHECK(ms_now() - t0 < 5000);
    CHECK_STATUS(g.get_regs(q, 0, HVI_REGS_GPR, &r0), HVI_E_CLOSED);
    CHECK(strlen(hvi_qemu_last_error(q)) > 0);
    hvi_qemu_close(q);
    hvi_qemu_vm_stop(vm);
}

HVI_TEST(cpu_max_gives_5_level_paging)
{
    const char *why = qt_missing();
    if (why)
        SKIP_CASE(why);
    hvi_qemu_vm *vm = NULL;
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_qemu_vm_opts o = {.cpu_max = true, .boot_timeout_ms = 120000};
    REQUIRE(hvi_qemu_vm_start(&o, &vm) == HVI_OK);
    uint64_t banner = 0;
    CHECK_OK(hvi_qemu_vm_kallsyms(vm, "linux_banner", &banner));
    if (hvi_qemu_open(vm, &q) != HVI_OK || hvi_qemu_glue(q, &g) != HVI_OK) {
        hvi_qemu_vm_stop(vm);
        REQUIRE(!"open failed");
    }
    hvi_regs r;
    CHECK_OK(g.get_regs(q, 0, HVI_REGS_CR | HVI_REGS_EFER, &r));
    CHECK(r.cr4 & (1u << 12)); /* LA57 */
    char buf[32] = {0};
    CHECK_OK(qt_gva_read(&g, &r, banner, buf, sizeof(buf) - 1)); /* a 5-level walk */
    CHECK(strncmp(buf, "Linux version 6.", 16) == 0);
    CHECK_OK(hvi_qemu_close(q));
    hvi_qemu_vm_stop(vm);
}

HVI_TEST(guest_reboot_ends_the_session)
{
    const char *why = qt_missing();
    if (why)
        SKIP_CASE(why);
    hvi_qemu_vm *vm = NULL;
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_qemu_vm_opts o = {.nokaslr = true, .boot_timeout_ms = 120000};
    /* also: a module copied into the initramfs and loaded by the init (hvi.insmod) */
    char mod[300];
    const char *add[2] = {NULL, NULL};
    glob_t gk;
    if (glob("/boot/vmlinuz-*-amd64", 0, NULL, &gk) == 0 && gk.gl_pathc > 0) { /* the booted one */
        const char *ver = gk.gl_pathv[gk.gl_pathc - 1] + strlen("/boot/vmlinuz-");
        snprintf(mod, sizeof(mod), "/lib/modules/%s/kernel/drivers/net/dummy.ko", ver);
        if (access(mod, R_OK) == 0) {
            strcat(mod, ":/modules/dummy.ko");
            add[0] = mod;
            o.add = add;
            o.insmod = "dummy";
        }
    }
    globfree(&gk);
    REQUIRE(hvi_qemu_vm_start(&o, &vm) == HVI_OK);
    char *out = NULL;
    if (o.insmod) {
        CHECK_OK(hvi_qemu_vm_console(vm, "hvi-modules", NULL, 20000, &out));
        char *mods = hvi_qemu_block(out, "modules");
        CHECK(mods && strncmp(mods, "dummy ", 6) == 0);
        free(mods);
        free(out);
        out = NULL;
    } else {
        fprintf(stderr, "  (no dummy.ko for the running kernel: insmod part not checked)\n");
    }
    if (hvi_qemu_open(vm, &q) != HVI_OK || hvi_qemu_glue(q, &g) != HVI_OK) {
        hvi_qemu_vm_stop(vm);
        REQUIRE(!"open failed");
    }
    CHECK_OK(g.resume(q));
    /* the console may or may not see the marker before QEMU exits */
    (void)hvi_qemu_vm_console(vm, "reboot -f", NULL, 3000, &out);
    free(out);
    uint32_t events = 0;
    int64_t t0 = ms_now();
    CHECK_STATUS(hvi_qemu_run(q, NULL, 20000, 0, &events), HVI_E_CLOSED); /* -no-reboot */
    CHECK(ms_now() - t0 < 15000);
    for (int i = 0; i < 100 && hvi_qemu_vm_alive(vm); i++) { /* QEMU may still be exiting */
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
    }
    CHECK(!hvi_qemu_vm_alive(vm));
    hvi_qemu_close(q);
    hvi_qemu_vm_stop(vm);
}

HVI_TEST_MAIN()
