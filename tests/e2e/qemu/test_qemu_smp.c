/*
 * e2e: a two-vCPU guest (-smp 2, MTTCG) with a breakpoint on a kernel function called from
 * workloads pinned to each CPU. Every hit must be reported exactly once, on the vCPU that
 * made it: the engine's count is compared with the number of calls the guest made (each
 * `sync` command is one sync(2) call, nothing else in the guest calls it), per vCPU.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/engine.h"
#include "qemu_util.h"
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

HVI_TEST(smp2_every_breakpoint_hit_reported_once_on_its_vcpu)
{
    const char *why = qt_missing();
    if (why)
        SKIP_CASE(why);
    hvi_qemu_vm *vm = NULL;
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_qemu_vm_opts o = {.smp = 2, .nokaslr = true, .boot_timeout_ms = 120000};
    hvi_status st = hvi_qemu_vm_start(&o, &vm);
    if (st != HVI_OK)
        fprintf(stderr, "  boot: %s\n", hvi_qemu_vm_last_error());
    REQUIRE(st == HVI_OK);
    uint64_t sync_fn = 0;
    CHECK_OK(hvi_qemu_vm_kallsyms(vm, "__x64_sys_sync", &sync_fn));
    if (sync_fn == 0 || hvi_qemu_open(vm, &q) != HVI_OK || hvi_qemu_glue(q, &g) != HVI_OK) {
        hvi_qemu_vm_stop(vm);
        REQUIRE(!"open failed");
    }
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
    fprintf(stderr, "  steps reported before the vCPU moved (stepped again): %u; step replies "
            "naming the other vCPU: %u\n", q->step_retries, q->foreign_stops);
    CHECK(log_has(vm, "HVI-SYNC-DONE-0") && log_has(vm, "HVI-SYNC-DONE-1"));
    CHECK_EQ_U64(c.seen[0], SYNCS_PER_CPU);
    CHECK_EQ_U64(c.seen[1], SYNCS_PER_CPU);
    CHECK_EQ_U64(c.wrong_rip, 0);
    CHECK_EQ_U64(c.other, 0);
    CHECK_EQ_U64(total, 2 * SYNCS_PER_CPU);
    CHECK_OK(g.set_breakpoint(q, sync_fn, false));
    hvi_engine_free(e);
    CHECK_OK(hvi_qemu_close(q));
    /* the guest survived and runs on */
    CHECK_OK(hvi_qemu_vm_console(vm, "sync; echo alive-$((6*7))", NULL, 20000, &out));
    CHECK(out && strstr(out, "alive-42"));
    free(out);
    hvi_qemu_vm_stop(vm);
}

HVI_TEST_MAIN()
