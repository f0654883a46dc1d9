/*
 * e2e: Linux events by detours on the real 6.1 guest (KASLR on, CAMI support data built from
 * cami/linux). Attach, start the events, run a workload on the guest console while a second
 * thread serves the breakpoints (hvi_qemu_run), then check against what the guest printed:
 *   - every `sh -c` child: process-create with its pid ($$), process-exec of /bin/PROG with the
 *     same pid, process-exit with the same pid;
 *   - a background process ($!) is created, appears in the engine's list, and its kill -9 gives
 *     a process-exit with code 9;
 *   - insmod/rmmod crc7: module-load/-unload named crc7, and the engine's module list equals
 *     /proc/modules in between;
 *   - the engine's process list (kept by the events only) equals a fresh walk of the task list
 *     and the guest's /proc after the workload;
 *   - with HVI_OPT_BLOCK_EXEC and /bin/uname blocked, `/bin/uname` fails with "Permission
 *     denied" (status 126) on the console, an exec-blocked alert names the rule, the shell
 *     still answers;
 *   - switching HVI_OPT_EVENT_PROCESS off removes its detours; detach removes all; no hit was
 *     undecodable.
 * The events are recorded by in-guest detours into a ring (docs/linux-indetour.md): no
 * breakpoint at all, also when an exec is to be blocked (the exec stub asks through a watched
 * doorbell: a write watchpoint). The ring is drained by the engine timer (hvi_timer_tick in the
 * run loop) and, before a check, by hvi_linux_events_drain() so that what the console printed
 * has been read.
 */
#define _GNU_SOURCE
#include <glob.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../qemu/qemu_util.h"
#include "../proc_compare.h"
#include "guest/linux/lix_indetour.h"
#include "harness.h"
#include "../runner_util.h"
#include "hvi/alert.h"
#include "hvi/cami.h"
#include "hvi/linux.h"
#include "hvi/linux_events.h"
#include "hvi/linux_indetour.h"
#include "hvi/mem.h"
#include "hvi_qemu.h"

#define MAX_ALERTS 4096

static void *g_support;
static size_t g_support_len;

static struct {
    pthread_mutex_t mu;
    hvi_alert *a;
    size_t n;
} g_rec = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_alert(const hvi_alert *a, void *user)
{
    (void)user;
    pthread_mutex_lock(&g_rec.mu);
    if (g_rec.n < MAX_ALERTS)
        g_rec.a[g_rec.n++] = *a;
    pthread_mutex_unlock(&g_rec.mu);
}

/* Is there an alert of `type` for `pid` (-2: any) whose detail contains `needle` ("" any)? */
static bool seen(uint32_t type, int32_t pid, const char *needle)
{
    bool found = false;
    pthread_mutex_lock(&g_rec.mu);
    for (size_t i = 0; i < g_rec.n && !found; i++)
        found = g_rec.a[i].type == type && (pid == -2 || g_rec.a[i].pid == pid) &&
                strstr(g_rec.a[i].detail, needle) != NULL;
    pthread_mutex_unlock(&g_rec.mu);
    return found;
}

/* ---- the event loop thread: tests/e2e/runner_util.h ---- */

/* Everything the guest recorded up to now is read (the runner is paused meanwhile: the engine
 * is not thread-safe). */
static void drain(struct e2e_runner *r)
{
    bool on = r->on;
    if (on)
        e2e_runner_stop(r);
    CHECK_OK(hvi_linux_events_drain(r->e));
    if (on)
        e2e_runner_start(r);
}

static char *sh(hvi_qemu_vm *vm, const char *cmd)
{
    char *out = NULL;
    hvi_status st = hvi_qemu_vm_console(vm, cmd, NULL, 90000, &out);
    if (st != HVI_OK)
        fprintf(stderr, "  console '%s': %s\n", cmd, hvi_strstatus(st));
    CHECK_OK(st);
    return out ? out : strdup("");
}

/* ---- comparisons ---- */

/* The engine's list == /proc (console hvi-ps), both ways, minus the helper's own processes. */
static void compare_with_proc(const hvi_linux_process *p, size_t n, const char *ps)
{
    char *copy = strdup(ps), *save = NULL;
    size_t proc_n = 0, matched = 0;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int pid = 0;
        char comm[64] = "";
        if (sscanf(l, "%d %63[^\n]", &pid, comm) != 2 || transient(comm))
            continue;
        proc_n++;
        const hvi_linux_process *x = find_pid(p, n, pid);
        if (!x || !comm_eq(x->comm, comm))
            fprintf(stderr, "  /proc has %d %s, the engine %s\n", pid, comm,
                    x ? x->comm : "does not");
        CHECK(x && comm_eq(x->comm, comm));
        matched += x != NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (transient(p[i].comm))
            continue;
        bool found = false;
        char pat[32];
        snprintf(pat, sizeof(pat), "%d ", p[i].pid);
        for (const char *l = ps; l && !found; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
            found = !strncmp(l, pat, strlen(pat));
        if (!found)
            fprintf(stderr, "  the engine has %d %s, /proc does not\n", p[i].pid, p[i].comm);
        CHECK(found);
    }
    fprintf(stderr, "  engine list %zu processes, /proc %zu (non-transient), %zu matched\n", n,
            proc_n, matched);
    CHECK(proc_n > 10 && matched == proc_n);
    free(copy);
}

/* The engine's list == a fresh walk of the task list (guest paused: one snapshot). */
static void compare_with_walk(hvi_engine *e, const hvi_glue *g, hvi_linux_process **lp, size_t *ln)
{
    hvi_linux_process *w = NULL;
    size_t wn = 0;
    REQUIRE(g->pause(g->ctx) == HVI_OK);
    CHECK_OK(hvi_linux_events_processes(e, lp, ln));
    CHECK_OK(hvi_linux_list_processes(e, false, &w, &wn));
    CHECK_OK(g->resume(g->ctx));
    REQUIRE(*lp && w);
    CHECK_EQ_U64(*ln, wn);
    for (size_t i = 0; i < wn; i++) {
        const hvi_linux_process *x = find_pid(*lp, *ln, w[i].pid);
        if (!x || strcmp(x->comm, w[i].comm) || x->task != w[i].task)
            fprintf(stderr, "  walk has %d %s, the engine %s\n", w[i].pid, w[i].comm,
                    x ? x->comm : "does not");
        CHECK(x && !strcmp(x->comm, w[i].comm) && x->task == w[i].task);
        if (x && !w[i].kernel_thread)
            CHECK_STR(x->exe, w[i].exe);
    }
    fprintf(stderr, "  engine list %zu processes == task-list walk %zu\n", *ln, wn);
    hvi_linux_free(w);
}

static bool module_listed(hvi_engine *e, const char *name)
{
    hvi_linux_module *m = NULL;
    size_t n = 0;
    bool found = false;
    CHECK_OK(hvi_linux_events_modules(e, &m, &n));
    for (size_t i = 0; m && i < n; i++)
        found = found || !strcmp(m[i].name, name);
    hvi_linux_free(m);
    return found;
}

/* ---- the test ---- */

struct guest {
    hvi_qemu_vm *vm;
    hvi_qemu *q;
    hvi_glue g;
    hvi_engine *e;
    struct e2e_runner r;
};

static void workload_events(struct guest *t)
{
    /* fork + exec of several programs; each child prints its own pid */
    char *out = sh(t->vm, "for p in true ls date cat; do sh -c \"echo HVI-P \\$\\$ $p; "
                          "exec /bin/$p </dev/null >/dev/null\"; done; sleep 600 & echo HVI-BG $!");
    drain(&t->r);
    int children = 0, bg = 0;
    for (char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        int pid = 0;
        char prog[32] = "", want[64];
        if (sscanf(l, "HVI-P %d %31s", &pid, prog) == 2) {
            children++;
            snprintf(want, sizeof(want), "filename=/bin/%s ", prog);
            CHECK(seen(HVI_EVENT_PROCESS_CREATE, pid, "ppid="));
            CHECK(seen(HVI_EVENT_PROCESS_EXEC, pid, want));
            CHECK(seen(HVI_EVENT_PROCESS_EXIT, pid, "code=0 "));
            if (!seen(HVI_EVENT_PROCESS_EXEC, pid, want))
                fprintf(stderr, "  no exec event for pid %d %s\n", pid, prog);
        } else if (sscanf(l, "HVI-BG %d", &pid) == 1) {
            bg = pid;
        }
    }
    fprintf(stderr, "  %d fork/exec children checked, background pid %d\n", children, bg);
    CHECK(children == 4 && bg > 1);
    free(out);
    CHECK(seen(HVI_EVENT_PROCESS_CREATE, bg, ""));
    CHECK(!seen(HVI_EVENT_PROCESS_EXIT, bg, ""));

    /* the background process is in the engine's list while it lives */
    e2e_runner_stop(&t->r);
    hvi_linux_process *p = NULL;
    size_t n = 0;
    CHECK_OK(hvi_linux_events_processes(t->e, &p, &n));
    const hvi_linux_process *x = p ? find_pid(p, n, bg) : NULL;
    fprintf(stderr, "  background pid %d in the engine's list: %s\n", bg, x ? x->comm : "no");
    CHECK(x != NULL);
    hvi_linux_free(p);
    e2e_runner_start(&t->r);

    char cmd[128];
    snprintf(cmd, sizeof(cmd), "kill -9 %d; wait %d; echo HVI-KILLED", bg, bg);
    free(sh(t->vm, cmd));
    drain(&t->r);
    CHECK(seen(HVI_EVENT_PROCESS_EXIT, bg, "code=9 "));
}

static void workload_modules(struct guest *t)
{
    char *out = sh(t->vm, "insmod /modules/crc7.ko && echo HVI-INS-OK");
    CHECK(strstr(out, "HVI-INS-OK") != NULL);
    free(out);
    drain(&t->r);
    CHECK(seen(HVI_EVENT_MODULE_LOAD, -2, "name=crc7 "));
    char *mods = sh(t->vm, "hvi-modules");
    e2e_runner_stop(&t->r);
    CHECK(module_listed(t->e, "crc7"));
    /* every /proc/modules line is in the engine's list and the counts agree */
    hvi_linux_module *m = NULL;
    size_t n = 0, lines = 0;
    CHECK_OK(hvi_linux_events_modules(t->e, &m, &n));
    char *b = hvi_qemu_block(mods, "modules"), *save = NULL;
    for (char *l = b ? strtok_r(b, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save)) {
        char name[64];
        unsigned size = 0;
        if (sscanf(l, "%63s %u", name, &size) != 2)
            continue;
        lines++;
        bool found = false;
        for (size_t i = 0; m && i < n; i++)
            found = found || (!strcmp(m[i].name, name) && m[i].size == size);
        CHECK(found);
    }
    CHECK(lines == n && n >= 1);
    fprintf(stderr, "  modules: engine %zu, /proc/modules %zu\n", n, lines);
    free(b);
    free(mods);
    hvi_linux_free(m);
    e2e_runner_start(&t->r);
    out = sh(t->vm, "rmmod crc7 && echo HVI-RM-OK");
    CHECK(strstr(out, "HVI-RM-OK") != NULL);
    free(out);
    drain(&t->r);
    CHECK(seen(HVI_EVENT_MODULE_UNLOAD, -2, "name=crc7 "));
    e2e_runner_stop(&t->r);
    CHECK(!module_listed(t->e, "crc7"));
    e2e_runner_start(&t->r);
}

static void compare_lists(struct guest *t)
{
    char *out = sh(t->vm, "hvi-ps");
    char *ps = hvi_qemu_block(out, "ps");
    free(out);
    REQUIRE(ps);
    e2e_runner_stop(&t->r);
    hvi_linux_process *p = NULL;
    size_t n = 0;
    compare_with_walk(t->e, &t->g, &p, &n);
    if (p)
        compare_with_proc(p, n, ps);
    hvi_linux_free(p);
    free(ps);
    e2e_runner_start(&t->r);
}

/* More events than the ring holds while nobody drains: records are lost, the engine walks its
 * lists again, and they equal the guest's again. */
static void ring_overflow(struct guest *t)
{
    e2e_runner_stop(&t->r); /* no drain now; no breakpoint either, so the guest runs on */
    hvi_linux_indetour_stats a, b;
    hvi_linux_events_stats s;
    CHECK_OK(hvi_linux_indetour_stats_get(t->e, &a));
    char *out = sh(t->vm, "i=0; while [ $i -lt 4400 ]; do ( : ); i=$((i+1)); done; echo HVI-STORM");
    CHECK(strstr(out, "HVI-STORM") != NULL);
    free(out);
    CHECK_OK(hvi_linux_events_drain(t->e));
    CHECK_OK(hvi_linux_indetour_stats_get(t->e, &b));
    CHECK_OK(hvi_linux_events_stats_get(t->e, &s));
    fprintf(stderr, "  storm: %llu records lost (ring of %u), %llu list walks after a loss\n",
            (unsigned long long)(b.lost - a.lost), b.ring_records,
            (unsigned long long)s.ring_reseeds);
    CHECK(b.lost > a.lost);
    CHECK(s.ring_reseeds >= 1);
    pthread_mutex_lock(&g_rec.mu); /* ~8 000 event alerts: make room for the checks after */
    g_rec.n = 0;
    pthread_mutex_unlock(&g_rec.mu);
    e2e_runner_start(&t->r);
    compare_lists(t);
}

/* Exec records in the ring: committed ones still saying ASK (nobody answered) and answered. */
static void ring_asks(hvi_engine *e, const hvi_glue *g, uint32_t *asking, uint32_t *answered)
{
    hvi_linux_indetour_stats ds;
    *asking = *answered = 0;
    CHECK_OK(hvi_linux_indetour_stats_get(e, &ds));
    CHECK_OK(g->pause(g->ctx));
    for (uint32_t i = 0; i < ds.ring_records; i++) {
        struct lixd_record r;
        if (hvi_gva_read(e, 0, ds.ring_gva + LIXD_HDR_SIZE + (uint64_t)i * LIXD_REC_SIZE, &r,
                         sizeof(r)) != HVI_OK || !r.seq || r.id != HVI_LIXD_EXEC)
            continue;
        *asking += r.args[LIXD_VERDICT_SLOT] == LIXD_VERDICT_ASK;
        *answered += r.args[LIXD_VERDICT_SLOT] == LIXD_VERDICT_ALLOW ||
                     r.args[LIXD_VERDICT_SLOT] == LIXD_VERDICT_DENY;
    }
    CHECK_OK(g->resume(g->ctx));
}

static void block_exec(struct guest *t)
{
    e2e_runner_stop(&t->r);
    uint32_t asking = 0, answered = 0;
    ring_asks(t->e, &t->g, &asking, &answered);
    fprintf(stderr, "  exec records before blocking: %u asking (nobody watched), %u answered\n",
            asking, answered);
    CHECK(asking > 0); /* the workload's execs ran with nobody watching the doorbell */
    CHECK_OK(hvi_linux_block_exec_add(t->e, "/bin/uname"));
    CHECK_OK(hvi_options_set(t->e, hvi_options_get(t->e) | HVI_OPT_BLOCK_EXEC));
    /* watching starts by settling them: no stale ASK for a slot claimed again */
    ring_asks(t->e, &t->g, &asking, &answered);
    fprintf(stderr, "  after: %u asking, %u answered\n", asking, answered);
    CHECK_EQ_U64(asking, 0);
    CHECK(answered > 0);
    hvi_linux_events_stats s;
    CHECK_OK(hvi_linux_events_stats_get(t->e, &s));
    /* the decision comes from the exec stub's doorbell (a write watchpoint): no breakpoint */
    CHECK_EQ_U64(s.breakpoints, 0);
    CHECK_EQ_U64(s.watchpoints, 1);
    CHECK_EQ_U64(s.in_guest, 5);
    uint64_t hits0 = s.breakpoint_hits, bells0 = s.doorbell_hits;
    e2e_runner_start(&t->r);
    char *out = sh(t->vm, "/bin/uname -s; echo HVI-RC $?");
    fprintf(stderr, "  blocked exec printed: %s", out);
    CHECK(strstr(out, "Permission denied") != NULL);
    CHECK(strstr(out, "HVI-RC 126") != NULL);
    CHECK(strstr(out, "Linux") == NULL);
    free(out);
    CHECK(seen(HVI_EVENT_EXEC_BLOCKED, -2, "rule=/bin/uname filename=/bin/uname "));
    out = sh(t->vm, "/bin/echo HVI-ALIVE; uname -s");
    CHECK(strstr(out, "HVI-ALIVE") != NULL && strstr(out, "Linux") != NULL);
    free(out);
    /* the exec that was not blocked still came through the ring; the blocked one did not */
    drain(&t->r);
    CHECK(seen(HVI_EVENT_PROCESS_EXEC, -2, "filename=/bin/echo "));
    CHECK(!seen(HVI_EVENT_PROCESS_EXEC, -2, "filename=/bin/uname "));
    e2e_runner_stop(&t->r);
    CHECK_OK(hvi_linux_events_stats_get(t->e, &s));
    e2e_runner_start(&t->r);
    fprintf(stderr, "  exec decisions: %llu doorbell stops, %llu breakpoint stops\n",
            (unsigned long long)(s.doorbell_hits - bells0),
            (unsigned long long)(s.breakpoint_hits - hits0));
    CHECK(s.doorbell_hits - bells0 >= 2); /* /bin/uname and /bin/echo at least */
    CHECK_EQ_U64(s.breakpoint_hits, hits0);
}

HVI_TEST(events_follow_the_guest_and_exec_is_blocked)
{
    const char *why = qt_missing();
    if (why)
        SKIP_CASE(why);
    char msg[256];
    const char *paths[] = {HVI_SOURCE_DIR "/cami/linux"};
    if (hvi_cami_build(paths, 1, &g_support, &g_support_len, msg, sizeof(msg)) != HVI_OK) {
        fprintf(stderr, "  cami: %s\n", msg);
        REQUIRE(!"building the CAMI support data failed");
    }
    glob_t gl;
    if (glob("/lib/modules/*-amd64/kernel/lib/crc7.ko", 0, NULL, &gl) != 0 || gl.gl_pathc == 0)
        SKIP_CASE("no /lib/modules/*-amd64/kernel/lib/crc7.ko to load in the guest");
    char add[512];
    snprintf(add, sizeof(add), "%s:/modules/crc7.ko", gl.gl_pathv[gl.gl_pathc - 1]);
    globfree(&gl);
    g_rec.a = calloc(MAX_ALERTS, sizeof(*g_rec.a));
    REQUIRE(g_rec.a);
    const char *adds[] = {add, NULL};
    hvi_qemu_vm_opts o = {.add = adds, .boot_timeout_ms = 120000};
    struct guest t;
    memset(&t, 0, sizeof(t));
    hvi_status st = hvi_qemu_vm_start(&o, &t.vm);
    if (st != HVI_OK)
        fprintf(stderr, "  boot: %s\n", hvi_qemu_vm_last_error());
    REQUIRE(st == HVI_OK);
    REQUIRE(hvi_qemu_open(t.vm, &t.q) == HVI_OK && hvi_qemu_glue(t.q, &t.g) == HVI_OK);
    REQUIRE(hvi_engine_new(&t.g, &t.e) == HVI_OK);
    hvi_guest_params p = {.size = sizeof(p),
                          .os_hint = HVI_OS_LINUX,
                          .support = g_support,
                          .support_len = g_support_len};
    st = hvi_new_guest(t.e, &p);
    if (st != HVI_OK)
        fprintf(stderr, "  attach: %s\n", hvi_last_error(t.e));
    CHECK_OK(st);
    hvi_set_alert_callback(t.e, on_alert, NULL);
    CHECK_OK(hvi_options_set(t.e, HVI_OPT_EVENT_PROCESS | HVI_OPT_EVENT_MODULE));
    st = hvi_linux_events_start(t.e);
    if (st != HVI_OK)
        fprintf(stderr, "  events: %s\n", hvi_last_error(t.e));
    REQUIRE(st == HVI_OK);
    CHECK_STR(hvi_linux_events_function(t.e, "create"), "wake_up_new_task");
    CHECK_STR(hvi_linux_events_function(t.e, "exec"), "begin_new_exec");
    CHECK_STR(hvi_linux_events_function(t.e, "exit"), "do_exit");
    CHECK(hvi_linux_events_function(t.e, "module-load")[0] != 0);
    hvi_linux_events_stats s0;
    CHECK_OK(hvi_linux_events_stats_get(t.e, &s0));
    CHECK_EQ_U64(s0.detours, 5);
    CHECK_EQ_U64(s0.in_guest, 5);    /* all five in the ring */
    CHECK_EQ_U64(s0.breakpoints, 0); /* blocking off: no breakpoint at all */
    t.r.q = t.q;
    t.r.e = t.e;
    e2e_runner_start(&t.r);
    workload_events(&t);
    workload_modules(&t);
    compare_lists(&t);
    ring_overflow(&t);
    block_exec(&t);
    e2e_runner_stop(&t.r);

    hvi_linux_events_stats s;
    CHECK_OK(hvi_linux_events_stats_get(t.e, &s));
    fprintf(stderr,
            "  stats: %llu hits, %llu creates, %llu execs, %llu exits, %llu thread events, "
            "%llu/%llu module load/unload, %llu blocked, %llu bad\n",
            (unsigned long long)s.events, (unsigned long long)s.creates,
            (unsigned long long)s.execs, (unsigned long long)s.exits, (unsigned long long)s.threads,
            (unsigned long long)s.module_loads, (unsigned long long)s.module_unloads,
            (unsigned long long)s.blocked, (unsigned long long)s.bad);
    CHECK_EQ_U64(s.bad, 0);
    /* no breakpoint stop at all: the events come through the ring, the exec decisions through
     * the doorbell watchpoint */
    fprintf(stderr,
            "  %llu events from the ring, %llu breakpoint hits, %llu resumed without a "
            "step-over\n",
            (unsigned long long)s.ring_records, (unsigned long long)s.breakpoint_hits,
            (unsigned long long)s.stepless);
    CHECK(s.ring_records > 0 && s.ring_records + s.blocked == s.events);
    CHECK_EQ_U64(s.breakpoint_hits, 0);
    CHECK(s.doorbell_hits >= s.blocked);
    CHECK(s.blocked >= 1 && s.module_loads == 1 && s.module_unloads == 1);
    /* options follow at run time: process events off keeps exec (blocking) and modules */
    CHECK_OK(hvi_options_set(t.e, HVI_OPT_EVENT_MODULE | HVI_OPT_BLOCK_EXEC));
    CHECK_OK(hvi_linux_events_stats_get(t.e, &s));
    CHECK_EQ_U64(s.detours, 2);     /* the module pair in the ring */
    CHECK_EQ_U64(s.watchpoints, 1); /* exec blocking: the doorbell */
    CHECK_STATUS(hvi_linux_events_processes(t.e, &(hvi_linux_process *){NULL}, &(size_t){0}),
                 HVI_E_STATE);
    CHECK_OK(hvi_detach(t.e));
    CHECK_OK(hvi_linux_events_stats_get(t.e, &s));
    CHECK_EQ_U64(s.detours, 0);
    CHECK_EQ_U64(s.watchpoints, 0);
    /* the guest runs on without the engine */
    char *out = sh(t.vm, "/bin/echo HVI-AFTER");
    CHECK(strstr(out, "HVI-AFTER") != NULL);
    free(out);
    hvi_engine_free(t.e);
    hvi_qemu_close(t.q);
    hvi_qemu_vm_stop(t.vm);
    free(g_rec.a);
}

HVI_TEST_MAIN()
