/*
 * bench: what Linux events by detours cost the guest. A fork/exec loop (`/bin/true` N times,
 * each a fork, an exec and an exit) is typed on the guest console and timed from the host until
 * its end marker, in the same run and alternating:
 *   off   — no detours (events stopped),
 *   ring  — process events (wake_up_new_task, begin_new_exec, do_exit) and module events,
 *           recorded by in-guest detours into the ring (the default since issue 8 §3),
 *   bpev  — the same events by hypervisor breakpoints (hvi_linux_events_use_ring(e, false):
 *           the mechanism before),
 *   block — ring events plus exec blocking (HVI_OPT_BLOCK_EXEC, one path that is never run):
 *           every exec stops at the exec stub's doorbell, a write watchpoint (no breakpoint),
 *   exec  — exec blocking alone by the breakpoint on begin_new_exec (HVI_OPT_BLOCK_EXEC, events
 *           off, hvi_linux_events_use_ring(e, false): the blocking mechanism before the doorbell);
 * and, to tell what a stop costs by its kind, one stop per fork either way:
 *   bp    — a bare breakpoint on wake_up_new_task, resumed past its ftrace nop (no step),
 *   watch — a write watchpoint on the kernel's `total_forks` counter (copy_process increments it).
 * A second thread serves the breakpoints (hvi_qemu_run) and ticks the engine timer (which drains
 * the ring) in every configuration. Reports medians, ratios against `off`, and the cost per
 * event ((x - off) / events). JSON to argv[1].
 * Exit 77 (with the reason) when no guest can be booted.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "hvi/cami.h"
#include "hvi/hook.h"
#include "hvi/linux.h"
#include "hvi/linux_events.h"
#include "hvi/linux_indetour.h"
#include "hvi/mem.h"
#include "hvi_qemu.h"

#define ITERS 20
#define REPS 3

struct runner {
    hvi_qemu *q;
    hvi_engine *e;
    pthread_t th;
    atomic_bool stop;
    hvi_status failed;
};

static void *run_loop(void *p)
{
    struct runner *r = p;
    while (!atomic_load(&r->stop)) {
        uint32_t n = 0;
        hvi_status st = hvi_qemu_run(r->q, r->e, 200, 0, &n);
        if (st != HVI_OK && st != HVI_E_TIMEOUT) {
            r->failed = st;
            break;
        }
        (void)hvi_timer_tick(r->e); /* drains the in-guest ring */
    }
    return NULL;
}

static void runner_start(struct runner *r)
{
    atomic_store(&r->stop, false);
    if (pthread_create(&r->th, NULL, run_loop, r) != 0)
        abort();
}

static void runner_stop(struct runner *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->th, NULL);
}

static uint64_t g_raw_hits;

static bool bare_bp(hvi_engine *e, hvi_hook *h, uint32_t vcpu, hvi_regs *regs, void *ctx)
{
    static const uint8_t nop5[5] = {0x0f, 0x1f, 0x44, 0x00, 0x00};
    uint8_t b[5];
    (void)h, (void)vcpu, (void)ctx;
    g_raw_hits++;
    if (hvi_gva_read(e, 0, regs->rip, b, 5) != HVI_OK || memcmp(b, nop5, 5))
        return false;
    regs->rip += 5;
    return true;
}

static uint32_t bare_watch(hvi_engine *e, hvi_hook *h, const hvi_hook_access *a, void *ctx)
{
    (void)e, (void)h, (void)a, (void)ctx;
    g_raw_hits++;
    return HVI_ACTION_ALLOW;
}

enum { RAW_NONE, RAW_BP, RAW_WATCH };

/* Configure the engine (event loop stopped), then time one loop. */
static double timed_loop(hvi_qemu_vm *vm, struct runner *r, uint64_t opts, bool ring, int raw,
                         uint64_t *hits, uint64_t *stops)
{
    hvi_linux_events_stats a, b;
    hvi_hook *hook = NULL;
    runner_stop(r);
    /* from scratch each time: stop (the ring's stubs go once no task is inside one) */
    for (int i = 0; i < 50 && hvi_linux_events_stop(r->e) != HVI_OK; i++) {
        runner_start(r);
        usleep(100000);
        runner_stop(r);
    }
    for (int i = 0; i < 50 && hvi_linux_indetour_stop(r->e) != HVI_OK; i++) {
        runner_start(r);
        usleep(100000);
        runner_stop(r);
    }
    hvi_options_set(r->e, opts);
    if (opts & HVI_OPT_BLOCK_EXEC)
        hvi_linux_block_exec_add(r->e, "/bin/hvi-bench-never-run");
    else
        hvi_linux_block_exec_clear(r->e);
    if (opts) {
        hvi_linux_events_use_ring(r->e, ring);
        if (hvi_linux_events_start(r->e) != HVI_OK)
            fprintf(stderr, "  events: %s\n", hvi_last_error(r->e));
    }
    hvi_linux_events_stats_get(r->e, &a);
    if (opts && ring && (opts & HVI_OPT_EVENT_PROCESS) && a.in_guest != 5)
        fprintf(stderr, "  warning: %u events in the ring, %u breakpoints\n", a.in_guest,
                a.breakpoints);
    uint64_t raw0 = g_raw_hits, addr = 0, gpa = 0;
    if (raw == RAW_BP && hvi_linux_find_symbol(r->e, "wake_up_new_task", &addr) == HVI_OK)
        hvi_detour_add(r->e, addr, bare_bp, NULL, &hook);
    if (raw == RAW_WATCH && hvi_linux_find_symbol(r->e, "total_forks", &addr) == HVI_OK &&
        hvi_gva_to_gpa(r->e, 0, addr, &gpa) == HVI_OK)
        hvi_hook_gpa_add_gva(r->e, gpa, addr, 8, HVI_EPT_W, bare_watch, NULL, &hook);
    if (raw != RAW_NONE && !hook)
        fprintf(stderr, "  could not place the %s: %s\n",
                raw == RAW_BP ? "breakpoint" : "watchpoint", hvi_last_error(r->e));
    runner_start(r);
    char cmd[160], *out = NULL;
    snprintf(cmd, sizeof(cmd), "i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done", ITERS);
    double t0 = ms_now();
    hvi_status st = hvi_qemu_vm_console(vm, cmd, NULL, 120000, &out);
    double t = ms_now() - t0;
    free(out);
    runner_stop(r);
    hvi_linux_events_drain(r->e);
    hvi_linux_events_stats_get(r->e, &b);
    *hits = b.events - a.events;
    *stops = b.breakpoint_hits - a.breakpoint_hits + (b.doorbell_hits - a.doorbell_hits) +
             (g_raw_hits - raw0);
    if (hook)
        hvi_hook_remove(r->e, hook);
    runner_start(r);
    return st == HVI_OK ? t : -1;
}

int main(int argc, char **argv)
{
    const char *json = argc > 1 ? argv[1] : "bench_linux_events.json";
    char msg[256];
    void *support = NULL;
    size_t support_len = 0;
    const char *paths[] = {HVI_SOURCE_DIR "/cami/linux"};
    if (hvi_cami_build(paths, 1, &support, &support_len, msg, sizeof(msg)) != HVI_OK) {
        fprintf(stderr, "bench_linux_events: building CAMI support from cami/linux: %s\n", msg);
        return 1;
    }
    if (access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
        fprintf(stderr, "skipped: needs qemu-system-x86_64\n");
        return 77;
    }
    hvi_qemu_vm_opts o = {.boot_timeout_ms = 120000};
    hvi_qemu_vm *vm = NULL;
    if (hvi_qemu_vm_start(&o, &vm) != HVI_OK) {
        fprintf(stderr, "skipped: guest boot failed: %s\n", hvi_qemu_vm_last_error());
        return 77;
    }
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_engine *e = NULL;
    int rc = 1;
    if (hvi_qemu_open(vm, &q) != HVI_OK || hvi_qemu_glue(q, &g) != HVI_OK ||
        hvi_engine_new(&g, &e) != HVI_OK) {
        fprintf(stderr, "bench_linux_events: session failed\n");
        goto out;
    }
    hvi_guest_params p = {
        .size = sizeof(p), .os_hint = HVI_OS_LINUX, .support = support, .support_len = support_len};
    if (hvi_new_guest(e, &p) != HVI_OK) {
        fprintf(stderr, "bench_linux_events: attach: %s\n", hvi_last_error(e));
        goto out;
    }
    struct runner r = {.q = q, .e = e};
    runner_start(&r);
#define NCFG 7
    const uint64_t ev = HVI_OPT_EVENT_PROCESS | HVI_OPT_EVENT_MODULE;
    const uint64_t cfg[NCFG] = {0, ev, ev, ev | HVI_OPT_BLOCK_EXEC, HVI_OPT_BLOCK_EXEC, 0, 0};
    const bool ring[NCFG] = {false, true, false, true, false, false, false};
    const int raw[NCFG] = {RAW_NONE, RAW_NONE, RAW_NONE, RAW_NONE, RAW_NONE, RAW_BP, RAW_WATCH};
    const char *name[NCFG] = {"off", "ring", "bpev", "block", "exec", "bp", "watch"};
    double t[NCFG][REPS];
    uint64_t hits[NCFG] = {0}, stops[NCFG] = {0};
    uint64_t h = 0, sp = 0;
    timed_loop(vm, &r, 0, false, RAW_NONE, &h, &sp); /* warm-up: page cache, translated code */
    for (int rep = 0; rep < REPS; rep++)
        for (int c = 0; c < NCFG; c++) {
            t[c][rep] = timed_loop(vm, &r, cfg[c], ring[c], raw[c], &h, &sp);
            hits[c] += h;
            stops[c] += sp;
            fprintf(stderr, "  rep %d %-5s %8.1f ms, %llu events, %llu stops\n", rep, name[c],
                    t[c][rep], (unsigned long long)h, (unsigned long long)sp);
            if (t[c][rep] < 0)
                goto stop;
        }
    double m[NCFG];
    for (int c = 0; c < NCFG; c++)
        m[c] = median(t[c], REPS);
    double per[NCFG], stp[NCFG];
    for (int c = 0; c < NCFG; c++) {
        per[c] = (double)hits[c] / REPS;
        stp[c] = (double)stops[c] / REPS;
    }
    FILE *f = fopen(json, "w");
    if (!f)
        goto stop;
    fprintf(f,
            "{\"bench\":\"linux_events\",\"loop\":\"%d x fork+exec /bin/true on the console\","
            "\"reps\":%d,\"configs\":{",
            ITERS, REPS);
    for (int c = 0; c < NCFG; c++)
        fprintf(f,
                "%s\"%s\":{\"median_ms\":%.1f,\"ratio_vs_off\":%.3f,\"events_per_loop\":%.1f,"
                "\"stops_per_loop\":%.1f,\"ms_per_stop\":%.3f}",
                c ? "," : "", name[c], m[c], m[c] / m[0], per[c], stp[c],
                stp[c] > 0 ? (m[c] - m[0]) / stp[c] : 0);
    fprintf(f, "},\"ratio_bpev_vs_ring\":%.3f}\n", m[2] / m[1]);
    fclose(f);
    fprintf(stderr, "bench_linux_events (%d fork/exec, medians of %d):\n", ITERS, REPS);
    for (int c = 0; c < NCFG; c++)
        fprintf(
            stderr, "  %-5s %8.1f ms  x%-6.2f %5.1f events/loop %5.1f stops/loop  %.1f ms/stop\n",
            name[c], m[c], m[c] / m[0], per[c], stp[c], stp[c] > 0 ? (m[c] - m[0]) / stp[c] : 0);
    rc = 0;
stop:
    runner_stop(&r);
out:
    hvi_engine_free(e);
    hvi_qemu_close(q);
    hvi_qemu_vm_stop(vm);
    free(support);
    return rc;
}
