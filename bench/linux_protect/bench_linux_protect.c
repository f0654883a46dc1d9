/*
 * bench: guest slowdown of a fork/exec/mmap/syscall loop with every Linux kernel protection on
 * vs off, measured in the same run on the same booted guest, plus the same loop with each
 * protection group alone (to attribute the cost). argv[1]: JSON output path. Never fails on
 * timing: it reports medians and spreads, and the host load average at start and end.
 *
 * Rounds are short and interleaved: a pass runs every configuration once, odd passes in reverse
 * order (ABBA), so slow drifts of the host load hit every configuration alike; each round's ratio
 * is taken to the "off" round of the same pass. HVI_BENCH_PASSES=N (default 6),
 * HVI_BENCH_PROTECT=0x... replaces "all" by those options (and drops the per-group configs).
 *
 * A ticker thread owns the engine: it lets the guest run through the gdbstub session and ticks
 * the engine timer every TICK_MS; the main thread types the workload on the serial console and
 * times it. With protection "off" the ticker does the same minus the checks (options 0).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hvi/cami.h"
#include "hvi/hvi.h"
#include "hvi/linux.h"
#include "hvi/linux_protect.h"
#include "hvi_qemu.h"

#define TICK_MS 500
#define PASSES_DEFAULT 6 /* each pass runs every config once; odd passes in reverse (ABBA) */
#define MAX_PASSES 16
#define MAX_CFG 9

static atomic_bool g_quit;
static atomic_ullong g_want, g_applied; /* options asked for by main / in force in the ticker */
static hvi_qemu *g_q;
static hvi_engine *g_e;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t g_on_opts = HVI_OPT_ALL_PROTECTION;

/* Where the guest is stopped on behalf of the engine: the glue calls that talk to the gdbstub
 * (registers, MSRs, break/watchpoints, code writes) stop the VM for their duration, and a
 * pause()..resume() span stops it throughout. The bench wraps the backend's glue and adds up that
 * time, split by who called: the timer tick (the checks) or the event loop (hook stops, agents).
 * Only the ticker thread calls the glue, so plain counters suffice; the main thread reads them
 * between rounds through the atomics below. */
static hvi_glue g_real;
static bool g_in_tick;
static unsigned g_depth;
static double g_pause_t0;
static atomic_ullong g_stop_us_tick, g_stop_us_run, g_stop_calls, g_tick_us, g_ticks, g_events;
static atomic_ullong g_tick_max_us;
static atomic_bool g_bp_churn;
static uint64_t g_bp_addr;

static void stop_add(double ms)
{
    atomic_fetch_add(g_in_tick ? &g_stop_us_tick : &g_stop_us_run, (unsigned long long)(ms * 1e3));
    atomic_fetch_add(&g_stop_calls, 1);
}

/* the checks' stops by kind: register access, MSR access, break/watchpoint changes and code
 * written through the gdbstub (agents), pause spans */
enum { K_REGS, K_MSR, K_BPWP, K_PAUSE, NKIND };
static const char *const g_kind_name[NKIND] = {"regs", "msr", "bp_wp_code", "pause"};
static atomic_ullong g_stop_us_kind[NKIND];

static void stop_add_k(int kind, double ms)
{
    if (g_in_tick)
        atomic_fetch_add(&g_stop_us_kind[kind], (unsigned long long)(ms * 1e3));
    stop_add(ms);
}

#define TIMED(kind, call)                                                                          \
    do {                                                                                           \
        double t0_ = now_ms();                                                                     \
        hvi_status st_ = (call);                                                                   \
        if (g_depth == 0)                                                                          \
            stop_add_k(kind, now_ms() - t0_);                                                      \
        return st_;                                                                                \
    } while (0)

static hvi_status w_get_regs(void *c, uint32_t v, uint32_t want, hvi_regs *o)
{
    TIMED(K_REGS, g_real.get_regs(c, v, want, o));
}
static hvi_status w_set_regs(void *c, uint32_t v, uint32_t parts, const hvi_regs *r)
{
    TIMED(K_REGS, g_real.set_regs(c, v, parts, r));
}
static hvi_status w_get_msr(void *c, uint32_t v, uint32_t msr, uint64_t *o)
{
    TIMED(K_MSR, g_real.get_msr(c, v, msr, o));
}
static hvi_status w_set_msr(void *c, uint32_t v, uint32_t msr, uint64_t val)
{
    TIMED(K_MSR, g_real.set_msr(c, v, msr, val));
}
static hvi_status w_set_bp(void *c, hvi_gva gva, bool en)
{
    TIMED(K_BPWP, g_real.set_breakpoint(c, gva, en));
}
static hvi_status w_set_wp(void *c, hvi_gva gva, uint32_t len, uint32_t kind, bool en)
{
    TIMED(K_BPWP, g_real.set_watchpoint(c, gva, len, kind, en));
}
static hvi_status w_code_written(void *c, hvi_gva gva, const void *bytes, uint32_t len)
{
    TIMED(K_BPWP, g_real.code_written(c, gva, bytes, len));
}
static hvi_status w_pause(void *c)
{
    hvi_status st = g_real.pause(c);
    if (st == HVI_OK && g_depth++ == 0)
        g_pause_t0 = now_ms();
    return st;
}
static hvi_status w_resume(void *c)
{
    hvi_status st = g_real.resume(c);
    if (g_depth && --g_depth == 0)
        stop_add_k(K_PAUSE, now_ms() - g_pause_t0);
    return st;
}

static void wrap_glue(hvi_glue *g)
{
    g_real = *g;
#define W(f, w)                                                                                    \
    if (g->f)                                                                                      \
    g->f = w
    W(get_regs, w_get_regs);
    W(set_regs, w_set_regs);
    W(get_msr, w_get_msr);
    W(set_msr, w_set_msr);
    W(set_breakpoint, w_set_bp);
    W(set_watchpoint, w_set_wp);
    W(code_written, w_code_written);
    W(pause, w_pause);
    W(resume, w_resume);
#undef W
}

static void *ticker(void *arg)
{
    (void)arg;
    uint64_t cur = ~0ull;
    unsigned bp_ticks = 0;
    while (!atomic_load(&g_quit)) {
        uint64_t want = atomic_load(&g_want);
        if (want != cur) {
            hvi_options_set(g_e, want | HVI_OPT_LOG_ONLY);
            cur = want;
            atomic_store(&g_applied, cur);
        }
        uint32_t ev = 0;
        if (hvi_qemu_run(g_q, g_e, TICK_MS, 0, &ev) == HVI_E_CLOSED)
            break;
        atomic_fetch_add(&g_events, ev);
        double t0 = now_ms();
        g_in_tick = true;
        hvi_timer_tick(g_e);
        /* "bp": no check, only what the LSTAR agent does to QEMU's TCG every 4 ticks besides
         * running: a breakpoint placed and removed (on a function never run) */
        if (atomic_load(&g_bp_churn) && g_bp_addr && ++bp_ticks % 4 == 0) {
            g_real.set_breakpoint(g_real.ctx, g_bp_addr, true);
            g_real.set_breakpoint(g_real.ctx, g_bp_addr, false);
        }
        g_in_tick = false;
        unsigned long long us = (unsigned long long)((now_ms() - t0) * 1e3);
        atomic_fetch_add(&g_tick_us, us);
        atomic_fetch_add(&g_ticks, 1);
        if (us > atomic_load(&g_tick_max_us))
            atomic_store(&g_tick_max_us, us);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* quantile q of n values (linear interpolation), v left sorted */
static double quant(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    if (n == 0)
        return 0;
    double x = q * (n - 1);
    int i = (int)x;
    return i + 1 < n ? v[i] + (v[i + 1] - v[i]) * (x - i) : v[i];
}

static const char *g_work =
    "i=0; while [ $i -lt 60 ]; do /bin/true; cat /proc/self/maps > /dev/null; i=$((i+1)); "
    "done; dd if=/dev/zero of=/dev/null bs=1 count=10000 2>/dev/null";

static int skip(const char *why)
{
    fprintf(stderr, "bench_linux_protect: skipped: %s\n", why);
    return 77;
}

struct cfg {
    const char *name;
    uint64_t opts;
    bool bp;                                  /* breakpoint churn only (see the ticker) */
    double ms[MAX_PASSES], ratio[MAX_PASSES]; /* ratio: to the "off" round of the same pass */
    double tick_ms[MAX_PASSES], tick_max_ms[MAX_PASSES], stop_tick_ms[MAX_PASSES],
        stop_run_ms[MAX_PASSES], ticks[MAX_PASSES], events[MAX_PASSES];
    double qemu_cpu_ms[MAX_PASSES], qemu_ratio[MAX_PASSES], engine_cpu_ms[MAX_PASSES];
    double stop_kind_ms[NKIND][MAX_PASSES];
};

/* CPU time (user+sys) QEMU used: the guest's work in host terms, which a busy host stretches in
 * wall time but much less in CPU time (10 ms resolution) */
static double qemu_cpu_ms(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* comm may hold spaces */
    unsigned long long ut = 0, stt = 0;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
        return 0;
    return (double)(ut + stt) * 1e3 / (double)sysconf(_SC_CLK_TCK);
}

static double thread_cpu_ms(pthread_t th)
{
    clockid_t id;
    struct timespec ts;
    if (pthread_getcpuclockid(th, &id) != 0 || clock_gettime(id, &ts) != 0)
        return 0;
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct snap {
    unsigned long long tick_us, ticks, stop_tick, stop_run, events;
};

static struct snap snap_now(void)
{
    return (struct snap){atomic_load(&g_tick_us), atomic_load(&g_ticks),
                         atomic_load(&g_stop_us_tick), atomic_load(&g_stop_us_run),
                         atomic_load(&g_events)};
}

/* "name": {"median":..,"min":..,"q1":..,"q3":..,"max":..} */
static void put_stats(FILE *f, const char *name, const double *src, int n, const char *fmt_end)
{
    double v[MAX_PASSES];
    memcpy(v, src, sizeof(double) * (size_t)n);
    qsort(v, (size_t)n, sizeof(*v), cmp_d); /* v[0], v[n-1] below: min, max */
    fprintf(f, "\"%s\":{\"median\":%.4g,\"min\":%.4g,\"q1\":%.4g,\"q3\":%.4g,\"max\":%.4g}%s", name,
            quant(v, n, 0.5), v[0], quant(v, n, 0.25), quant(v, n, 0.75), v[n - 1], fmt_end);
}

static double med(const double *src, int n)
{
    double v[MAX_PASSES];
    memcpy(v, src, sizeof(double) * (size_t)n);
    return quant(v, n, 0.5);
}

static int run(const char *json, hvi_qemu_vm *vm, int passes)
{
    struct cfg cf[MAX_CFG];
    int nc = 0;
    memset(cf, 0, sizeof(cf));
    cf[nc].name = "off", cf[nc++].opts = 0;
    cf[nc].name = "on", cf[nc++].opts = g_on_opts;
    if (g_on_opts == HVI_OPT_ALL_PROTECTION) { /* attribution: each group alone */
        cf[nc].name = "regions", cf[nc++].opts = HVI_OPT_KM_TEXT | HVI_OPT_KM_IDT |
                                                 HVI_OPT_KM_SYSCALL_TABLE | HVI_OPT_KM_VDSO |
                                                 HVI_OPT_KM_MODULES;
        cf[nc].name = "cr", cf[nc++].opts = HVI_OPT_KM_CR;
        cf[nc].name = "msr", cf[nc++].opts = HVI_OPT_KM_MSR;
        cf[nc].name = "creds", cf[nc++].opts = HVI_OPT_CREDS;
        cf[nc].name = "unpack", cf[nc++].opts = HVI_OPT_KM_UNPACK;
        cf[nc].name = "hidden", cf[nc++].opts = HVI_OPT_INTEGRITY;
        if (g_bp_addr)
            cf[nc].name = "bp", cf[nc++].bp = true;
    }
    double load0[3] = {0}, load1[3] = {0};
    if (getloadavg(load0, 3) < 0)
        load0[0] = -1;
    double t_start = now_ms();
    int qpid = hvi_qemu_vm_pid(vm);
    pthread_t th;
    if (pthread_create(&th, NULL, ticker, NULL) != 0)
        return 1;
    for (int p = 0; p < passes; p++) {
        for (int k = 0; k < nc; k++) {
            struct cfg *c = &cf[p & 1 ? nc - 1 - k : k];
            atomic_store(&g_bp_churn, c->bp);
            atomic_store(&g_want, c->opts);
            while (atomic_load(&g_applied) != c->opts) /* the ticker switched the options */
                nanosleep(&(struct timespec){0, 5000000}, NULL);
            char *out = NULL;
            hvi_qemu_vm_console(vm, "sync", NULL, 60000, &out); /* settle */
            free(out);
            atomic_store(&g_tick_max_us, 0);
            struct snap s0 = snap_now();
            double q0 = qemu_cpu_ms(qpid), e0 = thread_cpu_ms(th);
            unsigned long long k0[NKIND];
            for (int i = 0; i < NKIND; i++)
                k0[i] = atomic_load(&g_stop_us_kind[i]);
            double t0 = now_ms();
            hvi_status st = hvi_qemu_vm_console(vm, g_work, NULL, 300000, &out);
            double dt = now_ms() - t0;
            struct snap s1 = snap_now();
            c->qemu_cpu_ms[p] = qemu_cpu_ms(qpid) - q0;
            c->engine_cpu_ms[p] = thread_cpu_ms(th) - e0;
            for (int i = 0; i < NKIND; i++)
                c->stop_kind_ms[i][p] = (double)(atomic_load(&g_stop_us_kind[i]) - k0[i]) / 1e3;
            free(out);
            if (st != HVI_OK) {
                fprintf(stderr, "bench_linux_protect: workload failed (%d)\n", st);
                atomic_store(&g_quit, true);
                pthread_join(th, NULL);
                return 1;
            }
            c->ms[p] = dt;
            c->ticks[p] = (double)(s1.ticks - s0.ticks);
            c->tick_ms[p] = (double)(s1.tick_us - s0.tick_us) / 1e3;
            c->tick_max_ms[p] = (double)atomic_load(&g_tick_max_us) / 1e3;
            c->stop_tick_ms[p] = (double)(s1.stop_tick - s0.stop_tick) / 1e3;
            c->stop_run_ms[p] = (double)(s1.stop_run - s0.stop_run) / 1e3;
            c->events[p] = (double)(s1.events - s0.events);
            fprintf(stderr,
                    "pass %d %-7s %7.1f ms: %2.0f ticks, %6.1f ms in ticks (max %5.1f), guest "
                    "stopped %6.1f ms by checks + %6.1f ms by events (%.0f); CPU: QEMU %6.0f ms, "
                    "engine %5.1f ms\n",
                    p, c->name, dt, c->ticks[p], c->tick_ms[p], c->tick_max_ms[p],
                    c->stop_tick_ms[p], c->stop_run_ms[p], c->events[p], c->qemu_cpu_ms[p],
                    c->engine_cpu_ms[p]);
        }
        for (int k = 0; k < nc; k++)
            cf[k].ratio[p] = cf[k].ms[p] / cf[0].ms[p],
            cf[k].qemu_ratio[p] =
                cf[0].qemu_cpu_ms[p] > 0 ? cf[k].qemu_cpu_ms[p] / cf[0].qemu_cpu_ms[p] : 0;
    }
    atomic_store(&g_quit, true);
    pthread_join(th, NULL);
    if (getloadavg(load1, 3) < 0)
        load1[0] = -1;
    hvi_linux_protect_stats ps;
    memset(&ps, 0, sizeof(ps));
    hvi_linux_protect_stats_get(g_e, &ps);
    FILE *f = fopen(json, "w");
    if (!f)
        return 1;
    fprintf(f,
            "{\"bench\":\"linux_protect\",\"guest\":\"tcg 1 vCPU 512 MiB\",\"passes\":%d,"
            "\"order\":\"ABBA: every config once per pass, odd passes reversed\","
            "\"tick_interval_ms\":%d,\"on_options\":\"0x%llx\",\"workload\":\"60x(fork+exec "
            "true, exec cat maps) + 10000 read/write syscalls\",\"target_ratio\":1.05,"
            "\"loadavg_start\":[%.2f,%.2f,%.2f],\"loadavg_end\":[%.2f,%.2f,%.2f],"
            "\"wall_s\":%.0f,\"configs\":[\n",
            passes, TICK_MS, (unsigned long long)g_on_opts, load0[0], load0[1], load0[2], load1[0],
            load1[1], load1[2], (now_ms() - t_start) / 1e3);
    for (int k = 0; k < nc; k++) {
        struct cfg *c = &cf[k];
        fprintf(f, " {\"name\":\"%s\",\"options\":\"0x%llx\",", c->name,
                (unsigned long long)c->opts);
        put_stats(f, "round_ms", c->ms, passes, ",");
        put_stats(f, "ratio_to_off_same_pass", c->ratio, passes, ",");
        put_stats(f, "qemu_cpu_ms", c->qemu_cpu_ms, passes, ",");
        put_stats(f, "qemu_cpu_ratio_to_off_same_pass", c->qemu_ratio, passes, ",");
        put_stats(f, "engine_cpu_ms", c->engine_cpu_ms, passes, ",");
        fprintf(f,
                "\"median_ticks\":%.1f,\"median_tick_ms_per_round\":%.2f,"
                "\"median_tick_max_ms\":%.2f,\"median_guest_stopped_by_checks_ms\":%.2f,"
                "\"median_guest_stopped_by_events_ms\":%.2f,\"median_events\":%.1f,",
                med(c->ticks, passes), med(c->tick_ms, passes), med(c->tick_max_ms, passes),
                med(c->stop_tick_ms, passes), med(c->stop_run_ms, passes), med(c->events, passes));
        fprintf(f, "\"median_guest_stopped_by_checks_ms_by_kind\":{");
        for (int i = 0; i < NKIND; i++)
            fprintf(f, "\"%s\":%.2f%s", g_kind_name[i], med(c->stop_kind_ms[i], passes),
                    i + 1 < NKIND ? "," : "");
        fprintf(f, "}}%s\n", k + 1 < nc ? "," : "");
    }
    fprintf(f,
            "],\"regions\":%u,\"checks\":%llu,\"violations\":%llu,\"write_hooks\":%u,"
            "\"unpack_pages\":%u,\"unpack_tables\":%u,\"hook_stops\":%llu}\n",
            ps.regions, (unsigned long long)ps.checks, (unsigned long long)ps.violations,
            ps.watches, ps.unpack_pages, ps.unpack_tables, (unsigned long long)ps.hook_stops);
    fclose(f);
    for (int k = 0; k < nc; k++) {
        double r[MAX_PASSES], m[MAX_PASSES], qr[MAX_PASSES];
        memcpy(r, cf[k].ratio, sizeof(r));
        memcpy(m, cf[k].ms, sizeof(m));
        memcpy(qr, cf[k].qemu_ratio, sizeof(qr));
        double mm = quant(m, passes, 0.5), mr = quant(r, passes, 0.5), mq = quant(qr, passes, 0.5);
        printf("%-7s median %7.1f ms [%7.1f..%7.1f], ratio to off %.3f [%.3f..%.3f], QEMU CPU "
               "ratio %.3f [%.3f..%.3f], guest stopped by checks %.1f ms/round, engine CPU %.1f "
               "ms/round\n",
               cf[k].name, mm, m[0], m[passes - 1], mr, r[0], r[passes - 1], mq, qr[0],
               qr[passes - 1], med(cf[k].stop_tick_ms, passes), med(cf[k].engine_cpu_ms, passes));
        printf("        checks' stops by kind (median ms/round):");
        for (int i = 0; i < NKIND; i++)
            printf(" %s %.1f", g_kind_name[i], med(cf[k].stop_kind_ms[i], passes));
        printf("\n");
    }
    printf("load average %.2f -> %.2f\n", load0[0], load1[0]);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    /* HVI_BENCH_PROTECT=0x... restricts "on" to some protections (to attribute the cost) */
    const char *env = getenv("HVI_BENCH_PROTECT");
    if (env)
        g_on_opts = strtoull(env, NULL, 0);
    /* support data: the entries of cami/linux, selected by the guest's banner */
    char dir[1024], msg[256] = "";
    snprintf(dir, sizeof(dir), "%s/cami/linux", HVI_SOURCE_DIR);
    const char *paths[1] = {dir};
    void *support = NULL;
    size_t support_len = 0;
    if (hvi_cami_build(paths, 1, &support, &support_len, msg, sizeof(msg)) != HVI_OK)
        return skip(msg);
    hvi_qemu_vm *vm = NULL;
    hvi_qemu_vm_opts o = {.boot_timeout_ms = 120000};
    if (hvi_qemu_vm_start(&o, &vm) != HVI_OK)
        return skip(hvi_qemu_vm_last_error());
    hvi_glue g;
    int rc = 1;
    const char *pe = getenv("HVI_BENCH_PASSES");
    int passes = pe ? atoi(pe) : PASSES_DEFAULT;
    if (passes < 2 || passes > MAX_PASSES)
        passes = PASSES_DEFAULT;
    hvi_guest_params p = {
        .size = sizeof(p), .os_hint = HVI_OS_LINUX, .support = support, .support_len = support_len};
    /* protection starts with the "on" options so the IDT write hooks are placed and the
     * unpacker takes its baseline; the ticker then alternates */
    if (hvi_qemu_open(vm, &g_q) == HVI_OK && hvi_qemu_glue(g_q, &g) == HVI_OK &&
        (wrap_glue(&g), true) && hvi_engine_new(&g, &g_e) == HVI_OK &&
        hvi_new_guest(g_e, &p) == HVI_OK &&
        hvi_options_set(g_e, g_on_opts | HVI_OPT_LOG_ONLY) == HVI_OK &&
        hvi_linux_protect_start(g_e) == HVI_OK &&
        hvi_options_set(g_e, HVI_OPT_LOG_ONLY) == HVI_OK) {
        if (hvi_linux_find_symbol(g_e, "sysrq_handle_crash", &g_bp_addr) != HVI_OK)
            g_bp_addr = 0;
        rc = run(argv[1], vm, passes);
    } else
        fprintf(stderr, "bench_linux_protect: attach failed: %s\n", g_e ? hvi_last_error(g_e) : "");
    hvi_engine_free(g_e);
    hvi_qemu_close(g_q);
    hvi_qemu_vm_stop(vm);
    free(support);
    return rc;
}
