/*
 * bench: guest slowdown of a fork/exec/mmap/syscall loop with every Linux kernel protection on
 * vs off, measured in the same run on the same booted guest (rounds alternate off/on), plus the
 * cost of one protection check round. argv[1]: JSON output path. Never fails on timing.
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

#include "hvi/cami.h"
#include "hvi/hook.h"
#include "hvi/hvi.h"
#include "hvi/linux.h"
#include "hvi/linux_protect.h"
#include "hvi_qemu.h"

#define ROUNDS 4
#define TICK_MS 500

static atomic_bool g_on, g_quit;
static hvi_qemu *g_q;
static hvi_engine *g_e;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t g_on_opts = HVI_OPT_ALL_PROTECTION;

/* Cost of one write-hook hit: a range hook on the page of jiffies_64 (written by every timer
 * interrupt) placed/removed by the ticker on request; the callback only counts (ALLOW). */
static atomic_int g_hook_req; /* 1: place, 2: remove */
static atomic_ulong g_hits;
static hvi_hook *g_jiffies_hook;
static uint64_t g_jiffies_page;

static uint32_t count_cb(hvi_engine *e, hvi_hook *h, const hvi_hook_access *a, void *ctx)
{
    (void)e, (void)h, (void)a, (void)ctx;
    atomic_fetch_add(&g_hits, 1);
    return HVI_ACTION_ALLOW;
}

static void serve_hook_request(void)
{
    int req = atomic_exchange(&g_hook_req, 0);
    if (req == 1 && !g_jiffies_hook && g_jiffies_page &&
        hvi_hook_watch_range_add(g_e, 0, g_jiffies_page, 4096, count_cb, NULL, &g_jiffies_hook) !=
            HVI_OK)
        fprintf(stderr, "bench_linux_protect: no hook on jiffies: %s\n", hvi_last_error(g_e));
    if (req == 2 && g_jiffies_hook) {
        hvi_hook_remove(g_e, g_jiffies_hook);
        g_jiffies_hook = NULL;
    }
}

static void *ticker(void *arg)
{
    (void)arg;
    bool cur = false;
    while (!atomic_load(&g_quit)) {
        bool want = atomic_load(&g_on);
        if (want != cur) {
            hvi_options_set(g_e, (want ? g_on_opts : 0) | HVI_OPT_LOG_ONLY);
            cur = want;
        }
        serve_hook_request();
        uint32_t ev = 0;
        if (hvi_qemu_run(g_q, g_e, TICK_MS, 0, &ev) == HVI_E_CLOSED)
            break;
        hvi_timer_tick(g_e);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static const char *g_work =
    "i=0; while [ $i -lt 120 ]; do /bin/true; cat /proc/self/maps > /dev/null; i=$((i+1)); "
    "done; dd if=/dev/zero of=/dev/null bs=1 count=20000 2>/dev/null";

static int skip(const char *why)
{
    fprintf(stderr, "bench_linux_protect: skipped: %s\n", why);
    return 77;
}

static int run(const char *json, hvi_qemu_vm *vm)
{
    double off[ROUNDS], on[ROUNDS];
    pthread_t th;
    if (pthread_create(&th, NULL, ticker, NULL) != 0)
        return 1;
    for (int r = 0; r < 2 * ROUNDS; r++) {
        bool prot = r & 1;
        atomic_store(&g_on, prot);
        char *out = NULL;
        hvi_qemu_vm_console(vm, "sync", NULL, 60000, &out); /* settle, and let the option land */
        free(out);
        double t0 = now_ms();
        hvi_status st = hvi_qemu_vm_console(vm, g_work, NULL, 300000, &out);
        double dt = now_ms() - t0;
        free(out);
        if (st != HVI_OK) {
            fprintf(stderr, "bench_linux_protect: workload failed (%d)\n", st);
            atomic_store(&g_quit, true);
            pthread_join(th, NULL);
            return 1;
        }
        (prot ? on : off)[r / 2] = dt;
        hvi_linux_protect_stats rs;
        memset(&rs, 0, sizeof(rs));
        hvi_linux_protect_stats_get(g_e, &rs); /* racy read of counters: display only */
        fprintf(stderr,
                "round %d protection %s: %.1f ms (checks %llu, last %.2f ms, %llu bytes, "
                "unpacker %.2f ms over %u tables)\n",
                r / 2, prot ? "on " : "off", dt, (unsigned long long)rs.checks,
                rs.last_check_ns / 1e6, (unsigned long long)rs.bytes_compared,
                rs.last_unpack_ns / 1e6, rs.unpack_tables);
    }
    /* the cost of a hit: the workload with a hook on jiffies' page vs without, alternating */
    double hooked[ROUNDS] = {0}, plain[ROUNDS] = {0};
    unsigned long hits[ROUNDS] = {0};
    atomic_store(&g_on, true);
    for (int r = 0; r < 2 * ROUNDS; r++) {
        bool hook = !(r & 1);
        atomic_store(&g_hook_req, hook ? 1 : 2);
        char *out = NULL;
        hvi_qemu_vm_console(vm, "sync", NULL, 60000, &out);
        free(out);
        while (atomic_load(&g_hook_req) != 0)
            nanosleep(&(struct timespec){0, 10000000}, NULL);
        unsigned long h0 = atomic_load(&g_hits);
        double t0 = now_ms();
        hvi_status st = hvi_qemu_vm_console(vm, g_work, NULL, 300000, &out);
        double dt = now_ms() - t0;
        free(out);
        if (st != HVI_OK)
            break;
        if (hook)
            hooked[r / 2] = dt, hits[r / 2] = atomic_load(&g_hits) - h0;
        else
            plain[r / 2] = dt;
        fprintf(stderr, "hit round %d %s: %.1f ms%s", r / 2, hook ? "jiffies hooked" : "no hook", dt,
                hook ? "" : "\n");
        if (hook)
            fprintf(stderr, ", %lu hits\n", hits[r / 2]);
    }
    atomic_store(&g_hook_req, 2);
    atomic_store(&g_quit, true);
    pthread_join(th, NULL);
    serve_hook_request();
    unsigned long hsum = 0;
    for (int r = 0; r < ROUNDS; r++)
        hsum += hits[r];
    double mh = median(hooked, ROUNDS), mp = median(plain, ROUNDS);
    double per_hit_us = hsum ? (mh - mp) * 1e3 / ((double)hsum / ROUNDS) : 0;
    hvi_linux_protect_stats ps;
    memset(&ps, 0, sizeof(ps));
    hvi_linux_protect_stats_get(g_e, &ps);
    double mo = median(off, ROUNDS), mn = median(on, ROUNDS);
    FILE *f = fopen(json, "w");
    if (!f)
        return 1;
    fprintf(f,
            "{\"bench\":\"linux_protect\",\"guest\":\"tcg 1 vCPU 512 MiB\",\"rounds\":%d,"
            "\"tick_interval_ms\":%d,\"on_options\":\"0x%llx\",\"workload\":\"120x(fork+exec true, exec cat maps) + 20000 "
            "read/write syscalls\",\"median_off_ms\":%.1f,\"median_on_ms\":%.1f,"
            "\"slowdown_ratio\":%.4f,\"target_ratio\":1.05,\"check_round_ms\":%.2f,"
            "\"check_round_bytes\":%llu,\"regions\":%u,\"checks\":%llu,\"violations\":%llu,"
            "\"write_hooks\":%u,\"unpack_pages\":%u,\"unpack_tables\":%u,"
            "\"unpack_round_ms\":%.2f,\"hit_median_hooked_ms\":%.1f,"
            "\"hit_median_plain_ms\":%.1f,\"hits_per_round\":%.1f,\"guest_cost_per_hit_us\":%.1f}\n",
            ROUNDS, TICK_MS, (unsigned long long)g_on_opts, mo, mn, mn / mo, ps.last_check_ns / 1e6,
            (unsigned long long)ps.bytes_compared, ps.regions, (unsigned long long)ps.checks,
            (unsigned long long)ps.violations, ps.watches, ps.unpack_pages, ps.unpack_tables,
            ps.last_unpack_ns / 1e6, mh, mp, (double)hsum / ROUNDS, per_hit_us);
    fclose(f);
    printf("jiffies hook: %.1f ms vs %.1f ms, %.1f hits per round: %.1f us of guest time per hit\n",
           mh, mp, (double)hsum / ROUNDS, per_hit_us);
    printf("off %.1f ms, on %.1f ms, ratio %.4f; check round %.2f ms over %llu bytes\n", mo, mn,
           mn / mo, ps.last_check_ns / 1e6, (unsigned long long)ps.bytes_compared);
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
    hvi_guest_params p = {.size = sizeof(p), .os_hint = HVI_OS_LINUX, .support = support,
                          .support_len = support_len};
    /* protection starts with the "on" options so the IDT write hooks are placed and the
     * unpacker takes its baseline; the ticker then alternates */
    if (hvi_qemu_open(vm, &g_q) == HVI_OK && hvi_qemu_glue(g_q, &g) == HVI_OK &&
        hvi_engine_new(&g, &g_e) == HVI_OK && hvi_new_guest(g_e, &p) == HVI_OK &&
        hvi_options_set(g_e, g_on_opts | HVI_OPT_LOG_ONLY) == HVI_OK &&
        hvi_linux_protect_start(g_e) == HVI_OK && hvi_options_set(g_e, HVI_OPT_LOG_ONLY) == HVI_OK) {
        uint64_t j = 0;
        if (hvi_linux_find_symbol(g_e, "jiffies_64", &j) == HVI_OK)
            g_jiffies_page = j & ~0xfffull;
        rc = run(argv[1], vm);
    }
    else
        fprintf(stderr, "bench_linux_protect: attach failed: %s\n", g_e ? hvi_last_error(g_e) : "");
    hvi_engine_free(g_e);
    hvi_qemu_close(g_q);
    hvi_qemu_vm_stop(vm);
    free(support);
    return rc;
}
