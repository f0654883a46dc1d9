/*
 * bench_qemu OUT.json — costs of the QEMU backend on a real guest, each with a baseline
 * measured in the same run:
 *   reg_read_us          get_regs (GPR+CR, one `g` packet)   vs a bare RSP round trip (qC)
 *   bp_event_*_us        breakpoint hit -> engine callback -> step-over -> continue, on
 *                        __x64_sys_write under a shell loop of `echo x > file`, and on
 *                        __x64_sys_getpid under a static tight getpid loop (guest_getpid_loop.c)
 *                        vs a pause/resume cycle (interrupt + stop reply + continue)
 *   phys_read_gbps       reading guest RAM through map_gpa, 4 KiB at a time, vs memcpy of
 *                        host memory of the same size
 *   smp2_bp_event_*_us   a second, two-vCPU guest: the tight loop pinned to one CPU, then to
 *                        both (both vCPUs hit the breakpoint); ratio both/one
 *   msr_snapshot_read_running_ms  get_msr(LSTAR) with the guest running (stop, QMP migrate
 *                        with x-ignore-shared to a file, parse, continue)
 * Without QEMU or a kernel it writes {"skipped": "..."} and exits 77.
 */
#define _GNU_SOURCE
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/engine.h"
#include "hvi_qemu.h"
#include "rsp.h"
#include "session.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t bp_hits, bp_vcpu[2];
static hvi_status on_bp(hvi_engine *e, const hvi_event *ev, hvi_event_reply *r, void *ctx)
{
    (void)e, (void)r, (void)ctx;
    bp_hits++;
    if (ev->vcpu < 2)
        bp_vcpu[ev->vcpu]++;
    return HVI_OK;
}

static volatile uint64_t sink;

static double phys_read(const hvi_glue *g, uint64_t bytes, uint8_t *dst)
{
    double t0 = now_s();
    for (uint64_t gpa = 0; gpa < bytes; gpa += HVI_PAGE_SIZE) {
        void *p;
        if (g->map_gpa(g->ctx, gpa, &p) != HVI_OK)
            return -1;
        memcpy(dst + (gpa & ((1u << 24) - 1)), p, HVI_PAGE_SIZE);
        g->unmap_gpa(g->ctx, gpa, p);
    }
    sink += dst[12345];
    return (double)bytes / (now_s() - t0) / 1e9;
}

static double host_read(const uint8_t *src, uint64_t bytes, uint8_t *dst)
{
    double t0 = now_s();
    for (uint64_t off = 0; off < bytes; off += HVI_PAGE_SIZE)
        memcpy(dst + (off & ((1u << 24) - 1)), src + off, HVI_PAGE_SIZE);
    sink += dst[12345];
    return (double)bytes / (now_s() - t0) / 1e9;
}

/* Wall time per breakpoint event (hit -> engine callback -> step-over -> continue) on `fn`
 * while the guest runs `workload` in the background; -1 on failure. */
static double bp_cost(hvi_qemu_vm *vm, hvi_qemu *q, hvi_engine *e, const char *fn,
                      const char *workload, uint32_t *events)
{
    hvi_glue g;
    uint64_t addr = 0;
    char cmd[160], *o = NULL;
    hvi_qemu_glue(q, &g);
    snprintf(cmd, sizeof(cmd), "%s >/dev/null 2>&1 & echo $! > /tmp/bench-wl", workload);
    if (hvi_qemu_vm_kallsyms(vm, fn, &addr) != HVI_OK ||
        hvi_qemu_vm_console(vm, cmd, NULL, 20000, &o) != HVI_OK)
        return -1;
    free(o);
    if (g.set_breakpoint(q, addr, true) != HVI_OK)
        return -1;
    hvi_qemu_run(q, e, 10000, 5, events); /* warm up */
    double t0 = now_s();
    hvi_status st = hvi_qemu_run(q, e, 60000, 300, events);
    double us = (now_s() - t0) / (*events ? *events : 1) * 1e6;
    g.set_breakpoint(q, addr, false);
    g.resume(q);
    if (hvi_qemu_vm_console(vm, "kill $(cat /tmp/bench-wl); killall getpid-loop", NULL, 20000,
                            &o) == HVI_OK)
        free(o);
    return st == HVI_OK ? us : -1;
}

static int measure(hvi_qemu_vm *vm, hvi_qemu *q, FILE *out)
{
    hvi_glue g;
    hvi_engine *e = NULL;
    hvi_regs r;
    const int nreg = 300, ncycle = 100;
    if (hvi_qemu_glue(q, &g) != HVI_OK || hvi_engine_new(&g, &e) != HVI_OK)
        return 1;
    double t0 = now_s();
    for (int i = 0; i < nreg; i++)
        if (g.get_regs(q, 0, HVI_REGS_GPR | HVI_REGS_CR, &r) != HVI_OK)
            return 1;
    double reg_us = (now_s() - t0) / nreg * 1e6;
    t0 = now_s();
    for (int i = 0; i < nreg; i++)
        if (hvi_rsp_cmd(q->rsp, "qC", NULL, NULL) != HVI_OK)
            return 1;
    double rtt_us = (now_s() - t0) / nreg * 1e6;
    t0 = now_s();
    for (int i = 0; i < ncycle; i++)
        if (g.resume(q) != HVI_OK || g.pause(q) != HVI_OK)
            return 1;
    double cycle_us = (now_s() - t0) / ncycle * 1e6;
    g.resume(q);
    hvi_engine_add_handler(e, HVI_EV_BREAKPOINT, on_bp, NULL);
    uint32_t ev_shell = 0, ev_tight = 0;
    double bp_shell = bp_cost(vm, q, e, "__x64_sys_write", "hvi-workload write", &ev_shell);
    double bp_tight = -1;
#ifdef HVI_GUEST_LOOP
    bp_tight = bp_cost(vm, q, e, "__x64_sys_getpid", "/bin/getpid-loop", &ev_tight);
#endif
    if (bp_shell < 0)
        return 1;
    g.pause(q);
    uint64_t bytes = hvi_qemu_vm_mem_bytes(vm);
    uint8_t *dst = malloc(1u << 24), *src = malloc(bytes);
    if (!dst || !src)
        return 1;
    memset(src, 0x5a, bytes);
    double host = host_read(src, bytes, dst), phys = phys_read(&g, bytes, dst);
    host = host_read(src, bytes, dst); /* again, now both warm */
    phys = phys_read(&g, bytes, dst);
    free(src);
    free(dst);
    fprintf(out,
            "{\n  \"bench\": \"qemu\",\n  \"guest\": \"Debian 6.1 kernel, busybox initramfs, TCG, "
            "1 vCPU\",\n"
            "  \"reg_read_us\": %.1f, \"reg_read_baseline_rsp_rtt_us\": %.1f, \"reg_read_ratio\": "
            "%.2f,\n"
            "  \"bp_event_shell_loop_us\": %.1f, \"bp_events_shell\": %u,\n"
            "  \"bp_event_tight_loop_us\": %.1f, \"bp_events_tight\": %u,\n"
            "  \"bp_event_baseline_pause_resume_us\": %.1f, \"bp_event_tight_ratio\": %.2f,\n"
            "  \"phys_read_gbps\": %.2f, \"phys_read_baseline_memcpy_gbps\": %.2f, "
            "\"phys_read_ratio\": %.3f,"
            " \"phys_read_bytes\": %llu,\n",
            reg_us, rtt_us, reg_us / rtt_us, bp_shell, ev_shell, bp_tight, ev_tight, cycle_us,
            bp_tight / cycle_us, phys, host, phys / host, (unsigned long long)bytes);
    printf("register read %.1f us (bare RSP round trip %.1f us, x%.2f)\n", reg_us, rtt_us,
           reg_us / rtt_us);
    printf("breakpoint event: %.1f us under a shell write loop (%u events), %.1f us under a tight "
           "getpid loop (%u events); pause/resume cycle %.1f us\n",
           bp_shell, ev_shell, bp_tight, ev_tight, cycle_us);
    printf("guest RAM read %.2f GB/s (memcpy %.2f GB/s, ratio %.3f)\n", phys, host, phys / host);
    hvi_engine_free(e);
    return 0;
}

/* Two vCPUs: the tight getpid loop pinned to one CPU, then one pinned to each (both CPUs hit
 * the breakpoint, step-overs of one vCPU while the other waits); and the MSR snapshot. */
static int measure_smp(FILE *out)
{
#ifdef HVI_GUEST_LOOP
    const char *add[] = {HVI_GUEST_LOOP ":/bin/getpid-loop", NULL};
    hvi_qemu_vm_opts o = {.nokaslr = true, .smp = 2, .add = add};
    hvi_qemu_vm *vm = NULL;
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_engine *e = NULL;
    if (hvi_qemu_vm_start(&o, &vm) != HVI_OK) {
        fprintf(stderr, "bench_qemu: smp2 boot: %s\n", hvi_qemu_vm_last_error());
        return 1;
    }
    int rc = 1;
    uint32_t ev1 = 0, ev2 = 0, split[2] = {0, 0};
    double one = -1, two = -1, msr_ms = -1;
    if (hvi_qemu_open(vm, &q) == HVI_OK && hvi_qemu_set_msr_read(q, true) == HVI_OK &&
        hvi_qemu_glue(q, &g) == HVI_OK && hvi_engine_new(&g, &e) == HVI_OK &&
        hvi_engine_add_handler(e, HVI_EV_BREAKPOINT, on_bp, NULL) == HVI_OK &&
        g.resume(q) == HVI_OK) {
        one = bp_cost(vm, q, e, "__x64_sys_getpid", "taskset -c 0 /bin/getpid-loop", &ev1);
        bp_vcpu[0] = bp_vcpu[1] = 0;
        two = bp_cost(
            vm, q, e, "__x64_sys_getpid",
            "taskset -c 1 /bin/getpid-loop >/dev/null 2>&1 & taskset -c 0 /bin/getpid-loop", &ev2);
        split[0] = bp_vcpu[0], split[1] = bp_vcpu[1];
        uint64_t lstar = 0;
        const int nmsr = 10;
        double t0 = now_s();
        for (int i = 0; i < nmsr; i++)
            if (g.get_msr(q, i & 1, HVI_MSR_LSTAR, &lstar) != HVI_OK) {
                fprintf(stderr, "bench_qemu: MSR read: %s\n", hvi_qemu_last_error(q));
                t0 = -1;
                break;
            }
        if (t0 >= 0)
            msr_ms = (now_s() - t0) / nmsr * 1e3;
        rc = one > 0 && two > 0 ? 0 : 1;
    }
    if (rc)
        fprintf(stderr, "bench_qemu: smp2 failed: %s\n", q ? hvi_qemu_last_error(q) : "open");
    fprintf(
        out,
        "  \"smp2_bp_event_one_cpu_busy_us\": %.1f, \"smp2_bp_events_one\": %u,\n"
        "  \"smp2_bp_event_both_cpus_busy_us\": %.1f, \"smp2_bp_events_both\": %u,"
        " \"smp2_events_vcpu0\": %u, \"smp2_events_vcpu1\": %u, \"smp2_both_vs_one_ratio\": %.2f,\n"
        "  \"msr_snapshot_read_running_ms\": %.1f\n",
        one, ev1, two, ev2, split[0], split[1], two / one, msr_ms);
    printf("smp2: breakpoint event %.1f us with one CPU looping (%u events), %.1f us with both "
           "(%u events: %u on vCPU 0, %u on vCPU 1), ratio %.2f\n",
           one, ev1, two, ev2, split[0], split[1], two / one);
    printf("MSR read (device-state snapshot, guest running: stop + migrate + continue): %.1f ms\n",
           msr_ms);
    hvi_engine_free(e);
    hvi_qemu_close(q);
    hvi_qemu_vm_stop(vm);
    return rc;
#else
    fprintf(out, "  \"smp2\": \"not measured (no static guest loop under sanitizers)\"\n");
    return 0;
#endif
}

int main(int argc, char **argv)
{
    FILE *out = argc > 1 ? fopen(argv[1], "w") : stdout;
    if (!out)
        return 1;
    glob_t gl;
    bool kernel = glob("/boot/vmlinuz-*-amd64", 0, NULL, &gl) == 0 && gl.gl_pathc > 0;
    globfree(&gl);
    if (!kernel || access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
        fprintf(out,
                "{\"bench\": \"qemu\", \"skipped\": \"no QEMU or no /boot/vmlinuz-*-amd64\"}\n");
        fprintf(stderr, "bench_qemu: skipped: no QEMU or no kernel\n");
        return 77;
    }
    hvi_qemu_vm_opts o = {.nokaslr = true, .name = NULL};
#ifdef HVI_GUEST_LOOP
    const char *add[] = {HVI_GUEST_LOOP ":/bin/getpid-loop", NULL};
    o.add = add;
#endif
    hvi_qemu_vm *vm = NULL;
    hvi_qemu *q = NULL;
    if (getenv("HVI_BENCH_QEMU_SMP_ONLY")) { /* development aid: the two-vCPU part alone */
        fprintf(out, "{\n");
        int src = measure_smp(out);
        fprintf(out, "}\n");
        return src;
    }
    if (hvi_qemu_vm_start(&o, &vm) != HVI_OK) {
        fprintf(stderr, "bench_qemu: boot: %s\n", hvi_qemu_vm_last_error());
        return 1;
    }
    int rc = 1;
    if (hvi_qemu_open(vm, &q) == HVI_OK)
        rc = measure(vm, q, out);
    if (rc)
        fprintf(stderr, "bench_qemu: failed: %s\n",
                q ? hvi_qemu_last_error(q) : hvi_qemu_vm_last_error());
    hvi_qemu_close(q);
    hvi_qemu_vm_stop(vm);
    if (!rc)
        rc = measure_smp(out);
    fprintf(out, "}\n");
    if (out != stdout)
        fclose(out);
    return rc;
}
