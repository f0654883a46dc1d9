/* hvi vma-events — memory-map changes of a running guest through in-guest detours
 * (include/hvi/linux_indetour.h): prints every event and, with --follow PID, the engine's VMA
 * view of that process kept by the events, checked against a fresh maple-tree walk. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "hvi/linux.h"
#include "hvi/linux_indetour.h"
#include "linux_session.h"

#ifdef HVI_HAVE_BACKEND_qemu
#include "hvi_qemu.h"
#endif

#define VMAEV_USAGE                                                                                \
    "hvi vma-events [--vm NAME] [--cami FILE|DIR | --offsets FILE] [--follow PID]\n"               \
    "               [--seconds N] [--interval-ms N] [--ring RECORDS] [--quiet] [--json]\n"         \
    "  Installs the in-guest detours (stubs in kernel-text padding, a ring in the .bss tail),\n"   \
    "  lets the guest run, drains the ring every --interval-ms (default 200) and prints each\n"    \
    "  event (--quiet: only the summary). --follow PID keeps that process's VMA view from the\n"   \
    "  events and prints it at the end with a comparison against a full maple-tree walk.\n"        \
    "  Stops after --seconds (default 10) or ^C; detach restores every byte."

static volatile sig_atomic_t g_stop;
static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

struct vopts {
    int32_t follow;
    uint64_t seconds, interval_ms, ring;
    bool quiet, json;
};

static void print_event(hvi_engine *e, const hvi_linux_vma_event *ev, void *ctx)
{
    const struct vopts *o = ctx;
    (void)e;
    if (o->quiet)
        return;
    if (o->json) {
        printf("{\"seq\":%llu,\"event\":\"%s\",\"pid\":%d,\"comm\":", (unsigned long long)ev->seq,
               hvi_lixd_event_name(ev->id), ev->pid);
        linux_json_str(ev->comm);
        printf(",\"child_pid\":%d,\"vma\":\"0x%llx\",\"mm\":\"0x%llx\",\"start\":\"0x%llx\","
               "\"end\":\"0x%llx\",\"flags\":\"0x%llx\"}\n",
               ev->child_pid, (unsigned long long)ev->vma, (unsigned long long)ev->mm,
               (unsigned long long)ev->start, (unsigned long long)ev->end,
               (unsigned long long)ev->flags);
    } else {
        if (ev->id == HVI_LIXD_FORK) {
            printf("%8llu %-11s pid %-6d %-16s new task pid %d tgid %d\n",
                   (unsigned long long)ev->seq, hvi_lixd_event_name(ev->id), ev->pid, ev->comm,
                   ev->child_pid, ev->child_tgid);
            return;
        }
        printf("%8llu %-11s pid %-6d %-16s vma 0x%llx %llx-%llx flags 0x%llx\n",
               (unsigned long long)ev->seq, hvi_lixd_event_name(ev->id), ev->pid, ev->comm,
               (unsigned long long)ev->vma, (unsigned long long)ev->start,
               (unsigned long long)ev->end, (unsigned long long)ev->flags);
    }
}

/* Split our options from the session's (--vm, --cami, --offsets, --json). */
static int parse(struct vopts *o, int argc, char **argv, char **pass, int *npass)
{
    *npass = 0;
    pass[(*npass)++] = argv[0];
    o->seconds = 10;
    o->interval_ms = 200;
    for (int i = 1; i < argc; i++) {
        uint64_t v = 0;
        const char *a = argv[i];
        if (hvi_cli_is_help(a)) {
            printf("usage: %s\n", VMAEV_USAGE);
            return -1;
        } else if (i + 1 < argc && !strcmp(a, "--follow") && hvi_cli_parse_u64(argv[i + 1], &v) &&
                   v > 0 && v < 0x7fffffff) {
            o->follow = (int32_t)v;
            i++;
        } else if (i + 1 < argc && !strcmp(a, "--seconds") &&
                   hvi_cli_parse_u64(argv[i + 1], &o->seconds) && o->seconds <= 1000000) {
            i++;
        } else if (i + 1 < argc && !strcmp(a, "--interval-ms") &&
                   hvi_cli_parse_u64(argv[i + 1], &o->interval_ms) && o->interval_ms > 0 &&
                   o->interval_ms < 60000) {
            i++;
        } else if (i + 1 < argc && !strcmp(a, "--ring") &&
                   hvi_cli_parse_u64(argv[i + 1], &o->ring) && o->ring < (1u << 21)) {
            i++;
        } else if (!strcmp(a, "--quiet")) {
            o->quiet = true;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
            pass[(*npass)++] = argv[i];
        } else if (i + 1 < argc &&
                   (!strcmp(a, "--vm") || !strcmp(a, "--cami") || !strcmp(a, "--offsets"))) {
            pass[(*npass)++] = argv[i++];
            pass[(*npass)++] = argv[i];
        } else {
            fprintf(stderr, "usage: %s\n", VMAEV_USAGE);
            return 2;
        }
    }
    return 0;
}

#ifdef HVI_HAVE_BACKEND_qemu
static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Detach: the stubs go once nothing runs in them (the guest runs meanwhile). */
static hvi_status detach_all(struct linux_session *s)
{
    hvi_status st = HVI_E_BUSY;
    for (int i = 0; i < 50 && (st = hvi_detach(s->engine)) == HVI_E_BUSY; i++) {
        uint32_t n = 0;
        hvi_qemu_run(s->q, s->engine, 100, 0, &n);
    }
    if (st != HVI_OK)
        fprintf(stderr, "hvi vma-events: detach: %s\n", hvi_strstatus(st));
    return st;
}

static void print_view(hvi_engine *e, int32_t pid, bool json)
{
    hvi_linux_vma *v = NULL, *w = NULL;
    size_t n = 0, m = 0;
    if (hvi_linux_vma_view(e, pid, &v, &n) != HVI_OK) {
        fprintf(stderr, "hvi vma-events: %s\n", hvi_last_error(e));
        return;
    }
    bool same = hvi_linux_list_vmas(e, pid, &w, &m) == HVI_OK && m == n;
    for (size_t i = 0; same && i < n; i++)
        same = v[i].start == w[i].start && v[i].end == w[i].end && v[i].flags == w[i].flags;
    if (json)
        printf("{\"view\":{\"pid\":%d,\"equals_walk\":%s,\"walk_vmas\":%zu,\"vmas\":[", pid,
               same ? "true" : "false", m);
    else
        printf("view of pid %d from events (%zu VMAs):\n", pid, n);
    for (size_t i = 0; i < n; i++) {
        char perm[4] = {(v[i].flags & 1) ? 'r' : '-', (v[i].flags & 2) ? 'w' : '-',
                        (v[i].flags & 4) ? 'x' : '-', 0};
        if (json) {
            printf("%s{\"start\":\"0x%llx\",\"end\":\"0x%llx\",\"perms\":\"%s\",\"path\":",
                   i ? "," : "", (unsigned long long)v[i].start, (unsigned long long)v[i].end,
                   perm);
            linux_json_str(v[i].path);
            printf("}");
        } else {
            printf("%08llx-%08llx %s %08llx %s\n", (unsigned long long)v[i].start,
                   (unsigned long long)v[i].end, perm, (unsigned long long)(v[i].pgoff << 12),
                   v[i].path);
        }
    }
    if (json)
        printf("]}}\n");
    else
        printf("view %s a fresh maple-tree walk (%zu VMAs)\n", same ? "equals" : "DIFFERS from", m);
    hvi_linux_free(v);
    hvi_linux_free(w);
}
#endif

static int cmd_vma_events(int argc, char **argv)
{
    struct vopts o;
    memset(&o, 0, sizeof(o));
    char *pass[16];
    int npass = 0;
    if (argc > 12)
        return fprintf(stderr, "usage: %s\n", VMAEV_USAGE), 2;
    int rc = parse(&o, argc, argv, pass, &npass);
    if (rc)
        return rc < 0 ? 0 : rc;
#ifdef HVI_HAVE_BACKEND_qemu
    struct linux_session s;
    if ((rc = linux_session_open(&s, npass, pass, VMAEV_USAGE)) != 0)
        return rc == LINUX_SESSION_HELP ? 0 : rc;
    hvi_linux_indetour_opts io = {.ring_records = (uint32_t)o.ring};
    hvi_status st = hvi_linux_indetour_start(s.engine, &io);
    if (st == HVI_OK)
        st = hvi_linux_indetour_set_callback(s.engine, print_event, &o);
    if (st == HVI_OK && o.follow)
        st = hvi_linux_vma_follow(s.engine, o.follow);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi vma-events: %s\n", hvi_last_error(s.engine));
        detach_all(&s);
        linux_session_close(&s);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    uint64_t end = mono_ns() + o.seconds * 1000000000ull;
    while (!g_stop && mono_ns() < end) {
        uint32_t n = 0;
        st = hvi_qemu_run(s.q, s.engine, (int)o.interval_ms, 0, &n);
        if (st != HVI_OK && st != HVI_E_TIMEOUT) {
            fprintf(stderr, "hvi vma-events: guest session ended: %s\n", hvi_qemu_last_error(s.q));
            break;
        }
        hvi_linux_indetour_drain(s.engine, NULL);
        fflush(stdout);
    }
    if (o.follow)
        print_view(s.engine, o.follow, o.json);
    hvi_linux_indetour_stats ds;
    if (hvi_linux_indetour_stats_get(s.engine, &ds) == HVI_OK)
        fprintf(stderr,
                "hvi vma-events: %u detours, ring %u records at 0x%llx, stubs at 0x%llx (+%llu); "
                "%llu events, %llu lost, %llu garbage, %llu drains (last %.3f ms), %llu "
                "refreshes, %llu re-walks\n",
                ds.detours, ds.ring_records, (unsigned long long)ds.ring_gva,
                (unsigned long long)ds.stub_gva, (unsigned long long)ds.stub_len,
                (unsigned long long)ds.events, (unsigned long long)ds.lost,
                (unsigned long long)ds.garbage, (unsigned long long)ds.drains,
                ds.last_drain_ns / 1e6, (unsigned long long)ds.refreshes,
                (unsigned long long)ds.rewalks);
    st = detach_all(&s);
    linux_session_close(&s);
    return st == HVI_OK ? 0 : 1;
#else
    fprintf(stderr, "hvi vma-events: this build has no QEMU backend\n");
    return 1;
#endif
}

HVI_COMMAND("vma-events", cmd_vma_events,
            "follow memory-map changes through in-guest detours (ring buffer, no VM exit)")
