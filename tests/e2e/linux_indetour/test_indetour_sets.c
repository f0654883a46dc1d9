/*
 * e2e: the VMA detours (hvi_linux_indetour_start, as `hvi vma-events`) and the process/module
 * detours (hvi_linux_events_start, as `hvi monitor --events`) share one in-guest install, in
 * either start order (real Debian 6.1 guest, KASLR on, 1 vCPU).
 *
 * Order A, VMA first: the default set is installed; the events then add their four missing
 * functions (exec, exit, module load/unload; fork is shared) to it: 5 events in the ring, no
 * breakpoint, and the exec stub is there although the VMA install had no linux_binprm offsets.
 * Order B, events first (on a second engine): 5 detours; the VMA start then adds the VMA set.
 * In both: a `sh -c 'exec /bin/true'` on the console gives a process-exec event with
 * filename=/bin/true taken from the ring (0 breakpoint hits) and VMA stores reach the VMA
 * callback; detach restores _stext.._etext byte for byte (hash).
 * Before the sets were merged, order A left exec on a breakpoint (4 in the ring, 1 breakpoint)
 * and order B silently kept the 5 event detours only (no VMA event at all).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../qemu/qemu_util.h"
#include "../support_util.h"
#include "harness.h"
#include "hvi/alert.h"
#include "hvi/linux.h"
#include "hvi/linux_events.h"
#include "hvi/linux_indetour.h"
#include "hvi/mem.h"
#include "hvi_qemu.h"

static void *g_support;
static size_t g_support_len;
static unsigned g_execs_true, g_other_alerts;
static uint64_t g_stores;

static void on_alert(const hvi_alert *a, void *user)
{
    (void)user;
    if (a->type == HVI_EVENT_PROCESS_EXEC && strstr(a->detail, "filename=/bin/true"))
        g_execs_true++;
    else if (a->type < HVI_EVENT_PROCESS_CREATE)
        g_other_alerts++;
}

static void on_vma(hvi_engine *e, const hvi_linux_vma_event *ev, void *ctx)
{
    (void)e;
    (void)ctx;
    if (ev->id == HVI_LIXD_VMA_STORE)
        g_stores++;
}

static uint64_t text_hash(hvi_engine *e)
{
    uint64_t a = 0, b = 0, h = 1469598103934665603ull;
    static uint8_t buf[1 << 16];
    if (hvi_linux_find_symbol(e, "_stext", &a) != HVI_OK ||
        hvi_linux_find_symbol(e, "_etext", &b) != HVI_OK || b <= a)
        return 0;
    for (uint64_t p = a; p < b; p += sizeof(buf)) {
        size_t n = b - p < sizeof(buf) ? (size_t)(b - p) : sizeof(buf);
        if (hvi_gva_read(e, 0, p, buf, n) != HVI_OK)
            return 0;
        for (size_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 1099511628211ull;
    }
    return h;
}

/* A new engine attached to the running guest (paused for the attach); NULL on failure. */
static hvi_engine *attach(hvi_qemu *q, const hvi_glue *g)
{
    hvi_engine *e = NULL;
    if (hvi_engine_new(g, &e) != HVI_OK)
        return NULL;
    hvi_guest_params p = {.size = sizeof(p),
                          .os_hint = HVI_OS_LINUX,
                          .support = g_support,
                          .support_len = g_support_len};
    CHECK_OK(g->pause(q));
    hvi_status st = hvi_new_guest(e, &p);
    if (st != HVI_OK)
        fprintf(stderr, "  attach: %s\n", hvi_last_error(e));
    CHECK_OK(g->resume(q));
    if (st != HVI_OK) {
        hvi_engine_free(e);
        return NULL;
    }
    hvi_set_alert_callback(e, on_alert, NULL);
    CHECK_OK(hvi_options_set(e, HVI_OPT_EVENT_PROCESS | HVI_OPT_EVENT_MODULE));
    return e;
}

static void start_vma(hvi_engine *e)
{
    hvi_status st = hvi_linux_indetour_start(e, NULL);
    if (st != HVI_OK)
        fprintf(stderr, "  vma detours: %s\n", hvi_last_error(e));
    CHECK_OK(st);
    CHECK_OK(hvi_linux_indetour_set_callback(e, on_vma, NULL));
}

static void start_events(hvi_engine *e)
{
    hvi_status st = hvi_linux_events_start(e);
    if (st != HVI_OK)
        fprintf(stderr, "  events: %s\n", hvi_last_error(e));
    CHECK_OK(st);
}

static uint32_t ndetours(hvi_engine *e)
{
    hvi_linux_indetour_stats ds;
    memset(&ds, 0, sizeof(ds));
    CHECK_OK(hvi_linux_indetour_stats_get(e, &ds));
    return ds.detours;
}

/* Both sets in place: the five events by the ring, no breakpoint; an exec and VMA stores arrive
 * through the ring; detach restores the text. */
static void check_both(const char *order, hvi_engine *e, hvi_qemu *q, hvi_qemu_vm *vm,
                       uint32_t vma_set)
{
    hvi_linux_events_stats es;
    CHECK_OK(hvi_linux_events_stats_get(e, &es));
    uint32_t n = ndetours(e);
    fprintf(stderr,
            "  %s: %u in-guest detours (VMA set alone: %u); events: %u in the ring, %u "
            "breakpoints\n",
            order, n, vma_set, es.in_guest, es.breakpoints);
    CHECK_EQ_U64(es.in_guest, 5);
    CHECK_EQ_U64(es.breakpoints, 0);
    CHECK_EQ_U64(n, vma_set + 4); /* fork is in both sets */
    g_execs_true = 0;
    g_stores = 0;
    char *out = NULL;
    CHECK_OK(hvi_qemu_vm_console(vm, "sh -c 'exec /bin/true'; echo HVI-DONE", NULL, 60000, &out));
    CHECK(out && strstr(out, "HVI-DONE"));
    free(out);
    uint32_t nev = 0;
    (void)hvi_qemu_run(q, e, 300, 0, &nev);
    CHECK_OK(hvi_linux_indetour_drain(e, NULL));
    hvi_timer_tick(e); /* deliver the queued event lines */
    CHECK_OK(hvi_linux_events_stats_get(e, &es));
    fprintf(stderr,
            "  %s: exec of /bin/true seen %u times, %llu VMA stores, %llu ring records, "
            "%llu breakpoint hits\n",
            order, g_execs_true, (unsigned long long)g_stores, (unsigned long long)es.ring_records,
            (unsigned long long)es.breakpoint_hits);
    CHECK(g_execs_true >= 1);
    CHECK(g_stores > 0);
    CHECK_EQ_U64(es.breakpoint_hits, 0);
}

static void detach(hvi_engine *e, hvi_qemu *q, const hvi_glue *g, uint64_t h0)
{
    hvi_status st = HVI_E_BUSY;
    for (int i = 0; i < 40 && (st = hvi_detach(e)) == HVI_E_BUSY; i++) {
        uint32_t n = 0;
        (void)hvi_qemu_run(q, e, 100, 0, &n);
    }
    CHECK_OK(st);
    CHECK(!hvi_linux_indetour_active(e));
    CHECK_OK(g->pause(q));
    CHECK_EQ_U64(text_hash(e), h0);
    CHECK_OK(g->resume(q));
}

HVI_TEST(vma_and_process_detours_share_one_install_in_either_order)
{
    const char *why = qt_missing();
    if (why)
        SKIP_CASE(why);
    const char *serr = hvi_test_support_bin(&g_support, &g_support_len);
    if (serr) {
        fprintf(stderr, "  %s\n", serr);
        REQUIRE(!"building the CAMI support data for the installed kernel failed");
    }
    hvi_qemu_vm_opts o = {.smp = 1, .boot_timeout_ms = 120000};
    hvi_qemu_vm *vm = NULL;
    hvi_status st = hvi_qemu_vm_start(&o, &vm);
    if (st != HVI_OK)
        fprintf(stderr, "  boot: %s\n", hvi_qemu_vm_last_error());
    REQUIRE(st == HVI_OK);
    hvi_qemu *q = NULL;
    hvi_glue g;
    REQUIRE(hvi_qemu_open(vm, &q) == HVI_OK && hvi_qemu_glue(q, &g) == HVI_OK);
    CHECK_OK(g.resume(q)); /* the gdbstub connection paused the guest */

    /* A: the VMA detours first, then the events join them */
    hvi_engine *e = attach(q, &g);
    REQUIRE(e);
    CHECK_OK(g.pause(q));
    uint64_t h0 = text_hash(e);
    CHECK_OK(g.resume(q));
    CHECK(h0 != 0);
    start_vma(e);
    uint32_t vma_set = ndetours(e);
    CHECK(vma_set >= 6);
    start_events(e);
    check_both("VMA first", e, q, vm, vma_set);
    detach(e, q, &g, h0);
    hvi_engine_free(e);

    /* B: the events first, then the VMA detours join them */
    e = attach(q, &g);
    REQUIRE(e);
    start_events(e);
    CHECK_EQ_U64(ndetours(e), 5);
    start_vma(e);
    check_both("events first", e, q, vm, vma_set);
    detach(e, q, &g, h0);
    hvi_engine_free(e);

    CHECK_EQ_U64(g_other_alerts, 0);
    char *out = NULL;
    CHECK_OK(hvi_qemu_vm_console(vm, "echo alive-$((6*7))", NULL, 30000, &out));
    CHECK(out && strstr(out, "alive-42"));
    free(out);
    hvi_qemu_close(q);
    hvi_qemu_vm_stop(vm);
    free(g_support);
}

HVI_TEST_MAIN()
