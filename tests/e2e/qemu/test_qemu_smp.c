/*
 * e2e: a two-vCPU guest (-smp 2, MTTCG) with a breakpoint on a kernel function called from
 * workloads pinned to each CPU. Every hit must be reported exactly once, on the vCPU that
 * made it: the engine's count is compared with the number of calls the guest made (each
 * `sync` command is one sync(2) call, nothing else in the guest calls it), per vCPU.
 * Then, on the same guest: after detach QMP says the guest runs, and the CLI's
 * `hvi attach --cami` prints the Linux view matching the guest's own.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../support_util.h"
#include "core/engine.h"
#include "qemu_util.h"
#include "qmp.h"
#include "session.h" /* diagnostic counters */

#define SYNCS_PER_CPU 100

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct counts {
    hvi_glue *g;
    uint64_t bp;
    uint32_t seen[2];
    uint32_t wrong_rip; /* events whose vCPU was not at the breakpoint */
    uint32_t other;
};

static hvi_status on_bp(hvi_engine *e, const hvi_event *ev, hvi_event_reply *rep, void *ctx)
{
    struct counts *c = ctx;
    (void)e, (void)rep;
    if (ev->gva != c->bp || ev->vcpu >= 2) {
        c->other++;
        return HVI_OK;
    }
    hvi_regs r;
    if (c->g->get_regs(c->g->ctx, ev->vcpu, HVI_REGS_GPR, &r) != HVI_OK || r.rip != c->bp)
        c->wrong_rip++;
    c->seen[ev->vcpu]++;
    return HVI_OK;
}

static bool log_has(const hvi_qemu_vm *vm, const char *needle)
{
    FILE *f = fopen(hvi_qemu_vm_serial_log(vm), "r");
    if (!f)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static hvi_qemu_vm *vm;
static const char *skip_why;

static void stop_vm(void)
{
    hvi_qemu_vm_stop(vm);
}

static bool boot(void)
{
    if (vm)
        return true;
    if (skip_why || (skip_why = qt_missing()) != NULL)
        return false;
    hvi_qemu_vm_opts o = {.smp = 2, .nokaslr = true, .boot_timeout_ms = 120000};
    hvi_status st = hvi_qemu_vm_start(&o, &vm);
    if (st != HVI_OK) {
        fprintf(stderr, "  boot: %s\n", hvi_qemu_vm_last_error());
        return false;
    }
    atexit(stop_vm);
    return true;
}

#define BOOT()                                                                                     \
    do {                                                                                           \
        if (!boot()) {                                                                             \
            if (skip_why)                                                                          \
                SKIP_CASE(skip_why);                                                               \
            REQUIRE(!"guest boot failed");                                                         \
        }                                                                                          \
    } while (0)

HVI_TEST(smp2_every_breakpoint_hit_reported_once_on_its_vcpu)
{
    BOOT();
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_status st;
    uint64_t sync_fn = 0;
    CHECK_OK(hvi_qemu_vm_kallsyms(vm, "__x64_sys_sync", &sync_fn));
    REQUIRE(sync_fn != 0 && hvi_qemu_open(vm, &q) == HVI_OK && hvi_qemu_glue(q, &g) == HVI_OK);
    struct counts c = {.g = &g, .bp = sync_fn};
    hvi_engine *e = NULL;
    REQUIRE(hvi_engine_new(&g, &e) == HVI_OK);
    REQUIRE(hvi_engine_add_handler(e, HVI_EV_BREAKPOINT, on_bp, &c) == HVI_OK);
    CHECK_OK(g.set_breakpoint(q, sync_fn, true));
    CHECK_OK(g.resume(q));
    /* One loop pinned to each CPU, started a second later (the console must finish first:
     * nobody serves breakpoint stops while it waits). */
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof(cmd),
             "for c in 0 1; do (sleep 1; taskset -c $c sh -c 'i=0; while [ $i -lt %d ]; do sync; "
             "i=$((i+1)); done'; echo HVI-SYNC-DONE-$c > /dev/console) >/dev/null 2>&1 & done; "
             "echo started",
             SYNCS_PER_CPU);
    CHECK_OK(hvi_qemu_vm_console(vm, cmd, NULL, 20000, &out));
    free(out);
    int64_t t0 = ms_now();
    uint32_t total = 0;
    st = HVI_OK;
    while (st == HVI_OK && ms_now() - t0 < 100000 &&
           !(log_has(vm, "HVI-SYNC-DONE-0") && log_has(vm, "HVI-SYNC-DONE-1"))) {
        uint32_t n = 0;
        st = hvi_qemu_run(q, e, 500, 0, &n);
        total += n;
    }
    CHECK_OK(st);
    int64_t dt = ms_now() - t0;
    fprintf(stderr, "  %u events in %lld ms; per vCPU %u %u (guest made %d each); wrong rip %u\n",
            total, (long long)dt, c.seen[0], c.seen[1], SYNCS_PER_CPU, c.wrong_rip);
    fprintf(stderr,
            "  steps reported before the vCPU moved (stepped again): %u; step replies "
            "naming the other vCPU: %u\n",
            q->step_retries, q->foreign_stops);
    CHECK(log_has(vm, "HVI-SYNC-DONE-0") && log_has(vm, "HVI-SYNC-DONE-1"));
    CHECK_EQ_U64(c.seen[0], SYNCS_PER_CPU);
    CHECK_EQ_U64(c.seen[1], SYNCS_PER_CPU);
    CHECK_EQ_U64(c.wrong_rip, 0);
    CHECK_EQ_U64(c.other, 0);
    CHECK_EQ_U64(total, 2 * SYNCS_PER_CPU);
    CHECK_OK(g.set_breakpoint(q, sync_fn, false));
    hvi_engine_free(e);
    CHECK_OK(hvi_qemu_close(q));
    /* the guest was not left paused, survived and runs on */
    char qmp_path[700], status[64] = "";
    hvi_qmp *qmp = NULL;
    snprintf(qmp_path, sizeof(qmp_path), "%s/qmp.sock", hvi_qemu_vm_dir(vm));
    CHECK_OK(hvi_qmp_connect(qmp_path, 5000, &qmp));
    CHECK_OK(hvi_qmp_status(qmp, status, sizeof(status)));
    CHECK(strcmp(status, "running") == 0);
    hvi_qmp_close(qmp);
    CHECK_OK(hvi_qemu_vm_console(vm, "sync; echo alive-$((6*7))", NULL, 20000, &out));
    CHECK(out && strstr(out, "alive-42"));
    free(out);
}

HVI_TEST(msr_read_from_a_device_state_snapshot)
{
    BOOT();
    uint64_t entry = 0, sysenter = 0;
    CHECK_OK(hvi_qemu_vm_kallsyms(vm, "entry_SYSCALL_64", &entry));
    CHECK_OK(hvi_qemu_vm_kallsyms(vm, "entry_SYSENTER_compat", &sysenter));
    hvi_qemu *q = NULL;
    hvi_glue g;
    REQUIRE(hvi_qemu_open(vm, &q) == HVI_OK);
    CHECK_OK(hvi_qemu_glue(q, &g));
    CHECK(!(g.caps & HVI_CAP_MSR_READ) && !g.get_msr); /* opt-in */
    CHECK_OK(hvi_qemu_set_msr_read(q, true));
    CHECK_OK(hvi_qemu_glue(q, &g));
    CHECK((g.caps & HVI_CAP_MSR_READ) && g.get_msr);
    int64_t t0 = ms_now();
    for (uint32_t v = 0; v < 2; v++) {
        uint64_t lstar = 0, eip = 0, efer = 0, kgs = 0;
        CHECK_OK(g.get_msr(q, v, HVI_MSR_LSTAR, &lstar));
        CHECK_OK(g.get_msr(q, v, HVI_MSR_SYSENTER_EIP, &eip));
        CHECK_OK(g.get_msr(q, v, HVI_MSR_EFER, &efer));
        CHECK_OK(g.get_msr(q, v, HVI_MSR_KERNEL_GS_BASE, &kgs));
        CHECK_EQ_U64(lstar, entry);
        CHECK_EQ_U64(eip, sysenter);
        CHECK(efer & (1u << 10)); /* LMA */
        (void)kgs;
    }
    fprintf(stderr, "  LSTAR of both vCPUs (one snapshot, paused): %lld ms\n",
            (long long)(ms_now() - t0));
    uint64_t x;
    CHECK_STATUS(g.get_msr(q, 0, 0x1b /* APIC base: not in the snapshot */, &x), HVI_E_UNSUPPORTED);
    /* while running: stop, snapshot, continue */
    CHECK_OK(g.resume(q));
    t0 = ms_now();
    uint64_t lstar = 0;
    CHECK_OK(g.get_msr(q, 1, HVI_MSR_LSTAR, &lstar));
    CHECK_EQ_U64(lstar, entry);
    fprintf(stderr, "  LSTAR with the guest running (stop, snapshot, continue): %lld ms\n",
            (long long)(ms_now() - t0));
    CHECK(hvi_qemu_running(q));
    char *out = NULL;
    CHECK_OK(hvi_qemu_vm_console(vm, "echo msr-ok-$((40+2))", NULL, 20000, &out));
    CHECK(out && strstr(out, "msr-ok-42"));
    free(out);
    CHECK_OK(hvi_qemu_close(q));
    char qmp_path[700], status[64] = "";
    hvi_qmp *qmp = NULL;
    snprintf(qmp_path, sizeof(qmp_path), "%s/qmp.sock", hvi_qemu_vm_dir(vm));
    CHECK_OK(hvi_qmp_connect(qmp_path, 5000, &qmp));
    CHECK_OK(hvi_qmp_status(qmp, status, sizeof(status)));
    CHECK_STR(status, "running");
    hvi_qmp_close(qmp);
}

static char *run_capture(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf && n + 1 < cap) {
        size_t got = fread(buf + n, 1, cap - 1 - n, p);
        if (got == 0)
            break;
        n += got;
    }
    if (buf)
        buf[n] = '\0';
    *status = pclose(p);
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

HVI_TEST(attach_cli_with_cami_prints_the_linux_view)
{
    BOOT();
    void *sup = NULL;
    size_t sup_len = 0;
    const char *why = hvi_test_support_bin(&sup, &sup_len);
    if (why)
        SKIP_CASE(why);
    char path[300], cmd[1500];
    snprintf(path, sizeof(path), "%s/attach-support-%ld.bin", HVI_BINARY_DIR, (long)getpid());
    FILE *f = fopen(path, "wb");
    REQUIRE(f && fwrite(sup, 1, sup_len, f) == sup_len);
    fclose(f);
    free(sup);
    char *out = NULL;
    CHECK_OK(hvi_qemu_vm_console(vm, "uname -r; hvi-ps", NULL, 20000, &out));
    char *ps = hvi_qemu_block(out, "ps");
    int guest_procs = count_lines(ps);
    char release[80] = "";
    if (out)
        sscanf(out, "%79s", release);
    free(ps);
    free(out);
    const char *dir = hvi_qemu_vm_dir(vm), *name = strrchr(dir, '/');
    REQUIRE(name);
    /* the state root is the VM directory's parent */
    snprintf(cmd, sizeof(cmd),
             "HVI_GUEST_WORK='%.*s' '%s/tools/hvi/hvi' attach --name '%s' --cami '%s'",
             (int)(name - dir), dir, HVI_BINARY_DIR, name + 1, path);
    int status = -1;
    char *text = run_capture(cmd, &status);
    unlink(path);
    REQUIRE(text);
    CHECK_EQ_U64(status, 0);
    char want[128];
    snprintf(want, sizeof(want), "kernel: Linux %s,", release);
    CHECK(release[0] && strstr(text, want));
    const char *pl = strstr(text, "processes: ");
    int procs = pl ? atoi(pl + 11) : -1;
    fprintf(stderr, "  hvi attach: %d processes; the guest's /proc: %d\n", procs, guest_procs);
    /* the guest's listing ran a few short-lived processes of its own */
    CHECK(procs > 10 && procs >= guest_procs - 4 && procs <= guest_procs + 4);
    CHECK(strstr(text, "modules: 0"));
    CHECK(strstr(text, "vCPU 1:"));
    CHECK(strstr(text, "detached; the guest keeps running"));
    free(text);
    /* --msr: LSTAR of every vCPU from the device-state snapshot */
    uint64_t entry = 0;
    CHECK_OK(hvi_qemu_vm_kallsyms(vm, "entry_SYSCALL_64", &entry));
    snprintf(cmd, sizeof(cmd), "HVI_GUEST_WORK='%.*s' '%s/tools/hvi/hvi' attach --name '%s' --msr",
             (int)(name - dir), dir, HVI_BINARY_DIR, name + 1);
    text = run_capture(cmd, &status);
    REQUIRE(text);
    CHECK_EQ_U64(status, 0);
    snprintf(want, sizeof(want), "lstar %llx star", (unsigned long long)entry);
    const char *first = strstr(text, want);
    CHECK(first && strstr(first + 1, want)); /* both vCPUs */
    free(text);
    /* without --cami: the memory-level view, and a hint */
    snprintf(cmd, sizeof(cmd), "HVI_GUEST_WORK='%.*s' '%s/tools/hvi/hvi' attach --name '%s'",
             (int)(name - dir), dir, HVI_BINARY_DIR, name + 1);
    text = run_capture(cmd, &status);
    REQUIRE(text);
    CHECK_EQ_U64(status, 0);
    CHECK(strstr(text, "--cami FILE enables the Linux view") && !strstr(text, "kernel: Linux"));
    CHECK(strstr(text, "paging: 4-level"));
    free(text);
}

HVI_TEST_MAIN()
