/*
 * e2e: in-guest detours on the real Debian 6.1 guest (KASLR on, 2 vCPUs).
 *
 * Boots the guest with tests/e2e/linux_indetour/vmchurn (built static here) in its initramfs,
 * attaches, installs the detours (stubs in kernel-text padding, ring in the .bss tail), follows
 * a vmchurn process and lets it mmap/mprotect/munmap 300 times. Then: the engine's VMA view of
 * that process, kept by the events alone (no re-walk), equals the guest's /proc/PID/maps; the
 * events seen include that process's stores, protects and frees. A second run with a 64-record
 * ring overflows: the loss is counted and the view, rebuilt by a maple-tree re-walk, still
 * equals /proc. The guest still answers; after detach the kernel text hashes as before and the
 * ring region is zero again.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../qemu/qemu_util.h"
#include "../support_util.h"
#include "hvi/linux.h"
#include "hvi/linux_indetour.h"
#include "hvi/linux_protect.h"
#include "hvi/mem.h"
#include "hvi_qemu.h"

#define ITER 300
#define LIXD_RING_CHECK (64 + 8192 * 64)

static void *g_support;
static size_t g_support_len;

static char *console(hvi_qemu_vm *vm, const char *cmd)
{
    char *out = NULL;
    if (hvi_qemu_vm_console(vm, cmd, NULL, 90000, &out) != HVI_OK) {
        free(out);
        return NULL;
    }
    return out;
}

static uint64_t fnv(hvi_engine *e, uint64_t gva, uint64_t len)
{
    static uint8_t buf[1 << 16];
    uint64_t h = 1469598103934665603ull;
    for (uint64_t off = 0; off < len; off += sizeof(buf)) {
        size_t n = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
        if (hvi_gva_read(e, 0, gva + off, buf, n) != HVI_OK)
            return 0;
        for (size_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 1099511628211ull;
    }
    return h;
}

struct counts {
    int32_t pid;
    uint64_t store, protect, free_, other, total, forks;
};

static void count_cb(hvi_engine *e, const hvi_linux_vma_event *ev, void *ctx)
{
    struct counts *c = ctx;
    (void)e;
    c->total++;
    if (ev->id == HVI_LIXD_FORK && ev->child_pid > 0 && ev->child_tgid > 0)
        c->forks++; /* the console's shell forks for every command */
    if (ev->tgid != c->pid)
        return;
    if (ev->id == HVI_LIXD_VMA_STORE)
        c->store++;
    else if (ev->id == HVI_LIXD_VMA_PROTECT)
        c->protect++;
    else if (ev->id == HVI_LIXD_VMA_FREE)
        c->free_++;
    else
        c->other++;
}

static unsigned g_text_alerts, g_alerts, g_indetour_alerts;

static void on_alert(const hvi_alert *a, void *user)
{
    (void)user;
    g_alerts++;
    if (!strcmp(a->object, "indetour"))
        g_indetour_alerts++;
    if (!strncmp(a->object, "kernel-text", 11)) {
        g_text_alerts++;
        fprintf(stderr, "  text alert: %s\n", a->detail);
    }
}

/* Enough timer rounds for the text check to compare all of _stext.._etext (2 MiB a round). */
static void text_check_rounds(hvi_engine *e)
{
    for (int i = 0; i < 24; i++)
        hvi_timer_tick(e);
}

/* The engine's view equals /proc/PID/maps line by line (range, rwx, file). */
static bool view_equals_proc(hvi_engine *e, hvi_qemu_vm *vm, int32_t pid)
{
    char cmd[64], blk[32];
    snprintf(cmd, sizeof(cmd), "hvi-maps %d", pid);
    snprintf(blk, sizeof(blk), "maps %d", pid);
    char *out = console(vm, cmd);
    char *maps = out ? hvi_qemu_block(out, blk) : NULL;
    free(out);
    hvi_linux_vma *v = NULL;
    size_t n = 0;
    bool ok = maps && hvi_linux_vma_view(e, pid, &v, &n) == HVI_OK;
    size_t i = 0;
    char *save = NULL;
    for (char *l = ok ? strtok_r(maps, "\n", &save) : NULL; l && ok;
         l = strtok_r(NULL, "\n", &save)) {
        unsigned long long s = 0, en = 0;
        char perm[8] = "", path[256] = "";
        if (sscanf(l, "%llx-%llx %7s %*s %*s %*s %255s", &s, &en, perm, path) < 3)
            continue;
        if (i >= n || v[i].start != s || v[i].end != en || (perm[0] == 'r') != !!(v[i].flags & 1) ||
            (perm[1] == 'w') != !!(v[i].flags & 2) || (perm[2] == 'x') != !!(v[i].flags & 4) ||
            (path[0] == '/' && strcmp(v[i].path, path))) {
            fprintf(stderr, "  /proc: %s\n  hvi:   %llx-%llx flags 0x%llx %s\n", l,
                    i < n ? (unsigned long long)v[i].start : 0ull,
                    i < n ? (unsigned long long)v[i].end : 0ull,
                    i < n ? (unsigned long long)v[i].flags : 0ull, i < n ? v[i].path : "-");
            ok = false;
        }
        i++;
    }
    if (ok && i != n) {
        fprintf(stderr, "  /proc has %zu VMAs, the view %zu\n", i, n);
        ok = false;
    }
    fprintf(stderr, "  pid %d: view %zu VMAs, /proc %zu: %s\n", pid, n, i, ok ? "equal" : "DIFFER");
    free(maps);
    hvi_linux_free(v);
    return ok;
}

/* Start vmchurn with `tag` in the background; its pid. */
static int32_t churn_start(hvi_qemu_vm *vm, const char *tag)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "vmchurn %d %s > /tmp/%s.out 2>&1 & sleep 0.5; cat /tmp/%s.out",
             ITER, tag, tag, tag);
    char *out = console(vm, cmd);
    const char *p = out ? strstr(out, "VMCHURN pid ") : NULL;
    int32_t pid = p ? (int32_t)atoi(p + 12) : -1;
    free(out);
    return pid;
}

static bool churn_run(hvi_qemu_vm *vm, const char *tag)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd),
             "touch /tmp/vmchurn-%s.go; while [ ! -e /tmp/vmchurn-%s.done ]; do sleep 0.1; done; "
             "echo churned",
             tag, tag);
    char *out = console(vm, cmd);
    bool ok = out && strstr(out, "churned");
    free(out);
    return ok;
}

static void drain_running(hvi_engine *e, hvi_qemu *q)
{
    uint32_t n = 0;
    (void)hvi_qemu_run(q, e, 300, 0, &n);
    CHECK_OK(hvi_linux_indetour_drain(e, NULL));
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static hvi_status stop_detours(hvi_engine *e, hvi_qemu *q)
{
    hvi_status st = HVI_E_BUSY;
    for (int i = 0; i < 40 && (st = hvi_linux_indetour_stop(e)) == HVI_E_BUSY; i++) {
        uint32_t n = 0;
        hvi_qemu_run(q, e, 100, 0, &n);
    }
    return st;
}

HVI_TEST(vma_view_from_in_guest_detours_matches_proc)
{
    const char *why = qt_missing();
    if (why)
        SKIP_CASE(why);
    const char *serr = hvi_test_support_bin(&g_support, &g_support_len);
    if (serr) {
        fprintf(stderr, "  %s\n", serr);
        REQUIRE(!"building the CAMI support data for the installed kernel failed");
    }
    char bin[512], src[512], cmd[1400], add[600];
    snprintf(bin, sizeof(bin), "%s/vmchurn-%d", HVI_BINARY_DIR, (int)getpid());
    snprintf(src, sizeof(src), "%s/tests/e2e/linux_indetour/vmchurn.c", HVI_SOURCE_DIR);
    snprintf(cmd, sizeof(cmd), "cc -static -O2 -o '%s' '%s'", bin, src);
    if (system(cmd) != 0)
        SKIP_CASE("cannot build the static guest workload (cc -static: libc6-dev missing?)");
    snprintf(add, sizeof(add), "%s:/bin/vmchurn", bin);
    const char *adds[] = {add, NULL};
    hvi_qemu_vm_opts o = {.add = adds, .smp = 2, .boot_timeout_ms = 120000};
    hvi_qemu_vm *vm = NULL;
    hvi_status st = hvi_qemu_vm_start(&o, &vm);
    if (st != HVI_OK)
        fprintf(stderr, "  boot: %s\n", hvi_qemu_vm_last_error());
    unlink(bin);
    REQUIRE(st == HVI_OK);
    int32_t pid_a = churn_start(vm, "a"), pid_b = churn_start(vm, "b");
    CHECK(pid_a > 0 && pid_b > 0);
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_engine *e = NULL;
    if (pid_a <= 0 || pid_b <= 0 || hvi_qemu_open(vm, &q) != HVI_OK ||
        hvi_qemu_glue(q, &g) != HVI_OK || hvi_engine_new(&g, &e) != HVI_OK) {
        CHECK(!"attach failed");
        goto out;
    }
    hvi_guest_params p = {.size = sizeof(p),
                          .os_hint = HVI_OS_LINUX,
                          .support = g_support,
                          .support_len = g_support_len};
    st = hvi_new_guest(e, &p);
    if (st != HVI_OK)
        fprintf(stderr, "  attach: %s\n", hvi_last_error(e));
    REQUIRE(st == HVI_OK);
    uint64_t stext = 0, etext = 0;
    CHECK_OK(hvi_linux_find_symbol(e, "_stext", &stext));
    CHECK_OK(hvi_linux_find_symbol(e, "_etext", &etext));
    uint64_t h0 = fnv(e, stext, etext - stext);
    CHECK(h0 != 0);

    /* the kernel-text check runs alongside (log only): the engine's own patches are no alert */
    hvi_set_alert_callback(e, on_alert, NULL);
    CHECK_OK(hvi_options_set(e, HVI_OPT_KM_TEXT | HVI_OPT_LOG_ONLY));
    CHECK_OK(hvi_linux_protect_start(e));

    /* 1: the view kept by events alone */
    struct counts c = {.pid = pid_a};
    double t0 = now_ms();
    st = hvi_linux_indetour_start(e, NULL);
    fprintf(stderr, "  install took %.1f ms\n", now_ms() - t0);
    if (st != HVI_OK)
        fprintf(stderr, "  start: %s\n", hvi_last_error(e));
    REQUIRE(st == HVI_OK);
    hvi_linux_indetour_stats s0;
    CHECK_OK(hvi_linux_indetour_stats_get(e, &s0));
    fprintf(stderr, "  %u detours, stubs at 0x%llx (+%llu), ring of %u at 0x%llx\n", s0.detours,
            (unsigned long long)s0.stub_gva, (unsigned long long)s0.stub_len, s0.ring_records,
            (unsigned long long)s0.ring_gva);
    CHECK(s0.detours >= 6);
    CHECK(s0.task_verified);
    CHECK_OK(hvi_linux_indetour_set_callback(e, count_cb, &c));
    CHECK_OK(hvi_linux_vma_follow(e, pid_a));
    CHECK_OK(g.resume(q));
    CHECK(churn_run(vm, "a"));
    drain_running(e, q);
    CHECK(view_equals_proc(e, vm, pid_a));
    hvi_linux_indetour_stats s1;
    CHECK_OK(hvi_linux_indetour_stats_get(e, &s1));
    fprintf(stderr,
            "  phase 1: %llu events (%llu of pid %d: %llu store, %llu protect, %llu free), %llu "
            "lost, %llu refreshes, %llu re-walks, last drain %.3f ms\n",
            (unsigned long long)s1.events,
            (unsigned long long)(c.store + c.protect + c.free_ + c.other), pid_a,
            (unsigned long long)c.store, (unsigned long long)c.protect, (unsigned long long)c.free_,
            (unsigned long long)s1.lost, (unsigned long long)s1.refreshes,
            (unsigned long long)s1.rewalks, s1.last_drain_ns / 1e6);
    CHECK(c.store >= ITER && c.protect >= ITER && c.free_ >= ITER / 2);
    fprintf(stderr, "  fork events with the new task's pid: %llu\n", (unsigned long long)c.forks);
    CHECK(c.forks >= 1);
    text_check_rounds(e);
    CHECK_EQ_U64(g_text_alerts, 0); /* stubs and call sites were accepted (lixp_accept) */
    /* someone overwrites a stub byte: the next drain alerts and puts it back */
    {
        uint8_t orig = 0, bad = 0xcc, now = 0;
        CHECK_OK(g.pause(q));
        CHECK_OK(hvi_gva_read(e, 0, s0.stub_gva + 10, &orig, 1));
        CHECK_OK(hvi_gva_write(e, 0, s0.stub_gva + 10, &bad, 1));
        CHECK_OK(g.resume(q));
        CHECK_OK(hvi_linux_indetour_drain(e, NULL));
        hvi_timer_tick(e); /* delivers the queued alert */
        CHECK_OK(hvi_gva_read(e, 0, s0.stub_gva + 10, &now, 1));
        CHECK_EQ_U64(now, orig);
        CHECK_EQ_U64(g_indetour_alerts, 1);
        hvi_linux_indetour_stats ts;
        CHECK_OK(hvi_linux_indetour_stats_get(e, &ts));
        CHECK_EQ_U64(ts.tamper, 1);
    }
    CHECK_EQ_U64(s1.lost, 0);
    CHECK_EQ_U64(s1.rewalks, 0); /* the view came from the events */
    CHECK(s1.refreshes > 0);

    /* 2: a 64-record ring overflows; the loss makes the engine re-walk */
    t0 = now_ms();
    CHECK_OK(stop_detours(e, q));
    fprintf(stderr, "  removal took %.1f ms\n", now_ms() - t0);
    CHECK_EQ_U64(fnv(e, stext, etext - stext), h0);
    text_check_rounds(e);
    CHECK_EQ_U64(g_text_alerts, 0); /* nor is putting the bytes back */
    hvi_linux_indetour_opts small = {.ring_records = 64};
    st = hvi_linux_indetour_start(e, &small);
    if (st != HVI_OK)
        fprintf(stderr, "  restart: %s\n", hvi_last_error(e));
    CHECK_OK(st);
    if (st == HVI_OK) {
        CHECK_OK(hvi_linux_vma_follow(e, pid_b));
        CHECK_OK(g.resume(q));
        CHECK(churn_run(vm, "b"));
        drain_running(e, q);
        hvi_linux_indetour_stats s2;
        CHECK_OK(hvi_linux_indetour_stats_get(e, &s2));
        fprintf(stderr, "  phase 2 (64 records): %llu events, %llu lost, %llu re-walks\n",
                (unsigned long long)s2.events, (unsigned long long)s2.lost,
                (unsigned long long)s2.rewalks);
        CHECK(s2.lost > 0);
        CHECK(s2.rewalks > 0);
        CHECK(view_equals_proc(e, vm, pid_b));
    }

    /* the guest still runs; detach puts every byte back */
    char *alive = console(vm, "echo alive-$((6*7))");
    CHECK(alive && strstr(alive, "alive-42"));
    free(alive);
    hvi_linux_indetour_stats s3;
    CHECK_OK(hvi_linux_indetour_stats_get(e, &s3));
    st = HVI_E_BUSY;
    for (int i = 0; i < 40 && (st = hvi_detach(e)) == HVI_E_BUSY; i++) {
        uint32_t n = 0;
        hvi_qemu_run(q, e, 100, 0, &n);
    }
    CHECK_OK(st);
    CHECK(!hvi_linux_indetour_active(e));
    CHECK_OK(g.pause(q));
    CHECK_EQ_U64(fnv(e, stext, etext - stext), h0);
    {
        static uint8_t z[LIXD_RING_CHECK];
        static uint8_t r[LIXD_RING_CHECK];
        uint64_t len = 64 + (uint64_t)s0.ring_records * 64; /* the bigger first ring */
        CHECK(len <= sizeof(r));
        CHECK_OK(hvi_gva_read(e, 0, s3.ring_gva, r, len <= sizeof(r) ? len : sizeof(r)));
        CHECK(!memcmp(r, z, len <= sizeof(r) ? len : sizeof(r)));
    }
    CHECK_OK(g.resume(q));
out:
    hvi_engine_free(e);
    hvi_qemu_close(q);
    hvi_qemu_vm_stop(vm);
}

HVI_TEST_MAIN()
