/*
 * soak: the whole Linux engine on a real guest for a long time (label `soak`, opt-in:
 * scripts/test --long or `ctest -L soak`).
 *
 * Boots the Debian 6.1 test guest (KASLR on, 2 vCPUs) with crc7.ko and vmchurn
 * (tests/e2e/linux_indetour/vmchurn.c, built static) in its initramfs, builds the CAMI support
 * data for the installed kernel (scripts/support-bin), attaches, and turns on everything:
 * HVI_OPT_ALL_PROTECTION in deny mode (hvi_linux_protect_start), the in-guest VMA detours
 * (hvi_linux_indetour_start, asked also for the process/module events) and the process/module
 * events (hvi_linux_events_start). The engine's event loop (hvi_qemu_run + hvi_timer_tick) runs
 * in its own thread while the main thread drives a workload on the guest console in rounds for
 * HVI_SOAK_SECONDS (default 600): fork/exec loops, pipes, /proc reads, insmod/rmmod crc7 and
 * two concurrent vmchurn processes (mmap/mprotect/munmap churn). After every round:
 *   - zero alerts other than events (the workload is clean);
 *   - one module-load and one module-unload event, and the engine's module list equals
 *     /proc/modules with crc7 loaded and after its removal;
 *   - the engine's process list (kept by the events) equals a fresh task-list walk and the
 *     guest's /proc (minus the console's short-lived helpers);
 *   - unless HVI_SOAK_FOLLOW=0: the VMA view of one vmchurn process followed since the start (kept
 *     by the in-guest detours) equals its /proc/PID/maps. (This "hung the guest" until the
 *     round's churn command named the jobs it waits for: a bare `wait` waited for the followed
 *     vmchurn too, a background job of the same shell that never exits; both vCPUs were idle.);
 *   - the test's anonymous RSS growth since round 1 stays under 64 MiB (a leak, not a timing);
 *   - the guest still answers on its console.
 * At the end: detach (retried while the stubs are busy), and _stext.._etext equals its copy taken
 * at attach, except where the kernel patched its own code meanwhile (a static key flipped, e.g.
 * when the CRNG becomes ready some minutes after boot): every changed run must be made of
 * code-patching shapes (NOP2/NOP5/JMP/CALL before and after), each run is printed. Per-round
 * counters are printed.
 *
 * The in-guest detours are installed for the VMA events first and the process/module events
 * join them when hvi_linux_events_start() runs (the exec stub needs the linux_binprm offsets that
 * only lix_events has): all five events come through the ring and no breakpoint is placed
 * (checked), so the per-round count of exec breakpoint hits stays 0.
 */
#define _GNU_SOURCE
#include <glob.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../e2e/qemu/qemu_util.h"
#include "../../e2e/support_util.h"
#include "harness.h"
#include "../../e2e/proc_compare.h"
#include "../../e2e/runner_util.h"
#include "hvi/alert.h"
#include "hvi/linux.h"
#include "hvi/linux_events.h"
#include "hvi/linux_indetour.h"
#include "hvi/linux_protect.h"
#include "hvi/mem.h"
#include "hvi_qemu.h"

#define RSS_LIMIT_KIB (64u * 1024u)

/* ---- alerts: events are counted, anything else is a failure of the clean workload ---- */

static struct {
    pthread_mutex_t mu;
    uint64_t events, alerts, module_loads, module_unloads;
} g_rec = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_alert(const hvi_alert *a, void *user)
{
    (void)user;
    pthread_mutex_lock(&g_rec.mu);
    if (a->type >= HVI_EVENT_PROCESS_CREATE) {
        g_rec.events++;
        g_rec.module_loads += a->type == HVI_EVENT_MODULE_LOAD && strstr(a->detail, "name=crc7 ");
        g_rec.module_unloads +=
            a->type == HVI_EVENT_MODULE_UNLOAD && strstr(a->detail, "name=crc7 ");
    } else {
        char buf[1024];
        hvi_alert_to_json(a, buf, sizeof(buf), NULL);
        if (g_rec.alerts < 16)
            fprintf(stderr, "  ALERT: %s\n", buf);
        g_rec.alerts++;
    }
    pthread_mutex_unlock(&g_rec.mu);
}

static void rec_get(uint64_t *events, uint64_t *alerts, uint64_t *loads, uint64_t *unloads)
{
    pthread_mutex_lock(&g_rec.mu);
    *events = g_rec.events, *alerts = g_rec.alerts;
    *loads = g_rec.module_loads, *unloads = g_rec.module_unloads;
    pthread_mutex_unlock(&g_rec.mu);
}

/* ---- the event loop thread ---- */

struct soak {
    hvi_qemu_vm *vm;
    hvi_qemu *q;
    hvi_glue g;
    hvi_engine *e;
    struct e2e_runner r; /* the event loop (q, e copied in at start) */
};

/* tests/e2e/runner_util.h, slices of 100 ms; engine calls from the main thread happen with the
 * loop stopped (the engine is not thread-safe). */
static void runner_start(struct soak *c)
{
    c->r.q = c->q, c->r.e = c->e, c->r.tick_ms = 100;
    e2e_runner_start(&c->r);
}

static void runner_stop(struct soak *c)
{
    e2e_runner_stop(&c->r);
}

static bool g_console_dead; /* a command timed out: the guest no longer answers */

/* Run a console command; its output (never NULL). A missing `want` is a failure. After one
 * timeout no further command is sent (each would wait its whole timeout). */
static char *sh(struct soak *c, const char *cmd, const char *want)
{
    char *out = NULL;
    if (g_console_dead) {
        CHECK(!"the guest stopped answering earlier");
        return strdup("");
    }
    hvi_status st = hvi_qemu_vm_console(c->vm, cmd, NULL, 120000, &out);
    if (st != HVI_OK) {
        fprintf(stderr, "  console '%s': %s\n", cmd, hvi_strstatus(st));
        if (st == HVI_E_TIMEOUT)
            g_console_dead = true;
    }
    CHECK_OK(st);
    if (!out)
        out = strdup("");
    if (want && !strstr(out, want)) {
        fprintf(stderr, "  console '%s' printed no '%s':\n%s\n", cmd, want, out);
        CHECK(!"expected console output missing");
    }
    return out;
}

static void sh0(struct soak *c, const char *cmd, const char *want)
{
    free(sh(c, cmd, want));
}

/* ---- oracles ---- */

/* _stext.._etext (malloc'ed copy, NULL if unreadable). */
static uint8_t *text_read(hvi_engine *e, uint64_t *va, uint64_t *len)
{
    uint64_t a = 0, b = 0;
    if (hvi_linux_find_symbol(e, "_stext", &a) != HVI_OK ||
        hvi_linux_find_symbol(e, "_etext", &b) != HVI_OK || b <= a || b - a >= (64u << 20))
        return NULL;
    uint8_t *t = malloc(b - a);
    for (uint64_t p = a; t && p < b; p += 65536) {
        size_t n = b - p < 65536 ? (size_t)(b - p) : 65536;
        if (hvi_gva_read(e, 0, p, t + (p - a), n) != HVI_OK) {
            fprintf(stderr, "  text read at 0x%llx: %s\n", (unsigned long long)p,
                    hvi_last_error(e));
            free(t);
            t = NULL;
        }
    }
    *va = a, *len = b - a;
    return t;
}

static uint64_t fnv(const uint8_t *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* A kernel code-patching shape (jump labels, static calls, ftrace): NOP5, NOP2, JMP rel8,
 * JMP rel32, CALL rel32. */
static bool patch_shape(const uint8_t *w, uint32_t n)
{
    static const uint8_t nop5[5] = {0x0f, 0x1f, 0x44, 0x00, 0x00};
    if (n == 5)
        return !memcmp(w, nop5, 5) || w[0] == 0xe9 || w[0] == 0xe8;
    return (w[0] == 0x66 && w[1] == 0x90) || w[0] == 0xeb;
}

/* Every changed byte of [first, last] lies in a 5- or 2-byte window that is a patching shape
 * before and after (windows not overlapping). */
static bool patch_run(const uint8_t *old, const uint8_t *now, uint64_t len, uint64_t first,
                      uint64_t last)
{
    uint64_t free_from = 0;
    for (uint64_t i = first; i <= last;) {
        bool found = false;
        if (old[i] == now[i]) {
            i++;
            continue;
        }
        for (uint32_t n = 5; n >= 2 && !found; n -= 3)
            for (uint64_t st = i + 1 >= n && i + 1 - n > free_from ? i + 1 - n : free_from;
                 st <= i && st + n <= len && !found; st++)
                if (patch_shape(old + st, n) && patch_shape(now + st, n))
                    found = true, free_from = st + n, i = st + n;
        if (!found)
            return false;
    }
    return true;
}

/* Kernel text after detach against the copy at attach: identical, or changed only by the
 * kernel's own code patching while the soak ran (a static key flipped: each run of changed
 * bytes is made of patching shapes). Anything else fails. Prints every changed run. */
static void compare_text(hvi_engine *e, const uint8_t *old, uint64_t va, uint64_t len,
                         const uint8_t *now)
{
    unsigned runs = 0, bad = 0;
    for (uint64_t i = 0; i < len;) {
        if (old[i] == now[i]) {
            i++;
            continue;
        }
        uint64_t first = i, last = i;
        for (uint64_t j = i + 1; j < len && j - last <= 8; j++)
            if (old[j] != now[j])
                last = j;
        i = last + 1;
        bool ok = patch_run(old, now, len, first, last);
        char sym[96] = "?";
        uint64_t off = 0;
        (void)hvi_linux_symbolize(e, va + first, sym, sizeof(sym), &off);
        if (runs < 32) {
            fprintf(stderr, "  text changed at %s+0x%llx (%llu bytes):", sym,
                    (unsigned long long)off, (unsigned long long)(last - first + 1));
            for (uint64_t k = first; k <= last && k < first + 8; k++)
                fprintf(stderr, " %02x>%02x", old[k], now[k]);
            fprintf(stderr, " %s\n", ok ? "(code-patching shape: the kernel's own)" : "NOT A PATCH");
        }
        runs++;
        bad += !ok;
    }
    fprintf(stderr,
            "  kernel text FNV-1a at attach 0x%016llx, after detach 0x%016llx: %u changed runs, "
            "%u not the kernel's own patching\n",
            (unsigned long long)fnv(old, len), (unsigned long long)fnv(now, len), runs, bad);
    CHECK_EQ_U64(bad, 0);
}

/* A "Field:  N kB" line of /proc/self/status. RssAnon is the heap: VmRSS also counts the pages of
 * the guest's RAM file the engine has touched through its mapping, which grow without a leak. */
static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, field, n) && line[n] == ':' && sscanf(line + n + 1, "%ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The engine's process list == a task-list walk (guest paused) and == /proc (`ps`, taken
 * just before with the loop running). Runner stopped. */
static void compare_processes(struct soak *c, const char *ps, size_t *n_out)
{
    hvi_linux_process *lp = NULL, *w = NULL;
    size_t ln = 0, wn = 0;
    REQUIRE(c->g.pause(c->g.ctx) == HVI_OK);
    CHECK_OK(hvi_linux_events_processes(c->e, &lp, &ln));
    CHECK_OK(hvi_linux_list_processes(c->e, false, &w, &wn));
    CHECK_OK(c->g.resume(c->g.ctx));
    *n_out = ln;
    if (!lp || !w) {
        CHECK(!"no process list");
        hvi_linux_free(lp);
        hvi_linux_free(w);
        return;
    }
    CHECK_EQ_U64(ln, wn);
    for (size_t i = 0; i < wn; i++) {
        const hvi_linux_process *x = find_pid(lp, ln, w[i].pid);
        if (!x || strcmp(x->comm, w[i].comm) || x->task != w[i].task)
            fprintf(stderr, "  walk has %d %s, the engine %s\n", w[i].pid, w[i].comm,
                    x ? x->comm : "does not");
        CHECK(x && !strcmp(x->comm, w[i].comm) && x->task == w[i].task);
    }
    /* /proc, both ways, minus the helpers */
    char *copy = strdup(ps), *save = NULL;
    size_t proc_n = 0, matched = 0;
    for (char *l = copy ? strtok_r(copy, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save)) {
        int pid = 0;
        char comm[64] = "";
        if (sscanf(l, "%d %63[^\n]", &pid, comm) != 2 || transient(comm))
            continue;
        proc_n++;
        const hvi_linux_process *x = find_pid(lp, ln, pid);
        if (!x || !comm_eq(x->comm, comm))
            fprintf(stderr, "  /proc has %d %s, the engine %s\n", pid, comm,
                    x ? x->comm : "does not");
        matched += x && comm_eq(x->comm, comm);
    }
    for (size_t i = 0; i < ln; i++) {
        if (transient(lp[i].comm))
            continue;
        char pat[32];
        bool found = false;
        snprintf(pat, sizeof(pat), "%d ", lp[i].pid);
        for (const char *l = ps; l && !found; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
            found = !strncmp(l, pat, strlen(pat));
        if (!found)
            fprintf(stderr, "  the engine has %d %s, /proc does not\n", lp[i].pid, lp[i].comm);
        CHECK(found);
    }
    CHECK(proc_n > 10 && matched == proc_n);
    free(copy);
    hvi_linux_free(lp);
    hvi_linux_free(w);
}

/* The engine's module list == /proc/modules (names and sizes, same count); crc7 in it or not.
 * Runner running on entry and exit. */
static void compare_modules(struct soak *c, bool crc7, size_t *n_out)
{
    char *out = sh(c, "hvi-modules", "HVI-END modules");
    char *b = hvi_qemu_block(out, "modules"), *save = NULL;
    free(out);
    runner_stop(c);
    hvi_linux_module *m = NULL;
    size_t n = 0, lines = 0;
    bool have_crc7 = false;
    CHECK_OK(hvi_linux_events_modules(c->e, &m, &n));
    for (char *l = b ? strtok_r(b, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save)) {
        char name[64];
        unsigned size = 0;
        if (sscanf(l, "%63s %u", name, &size) != 2)
            continue;
        lines++;
        bool found = false;
        for (size_t i = 0; m && i < n; i++)
            found = found || (!strcmp(m[i].name, name) && m[i].size == size);
        if (!found)
            fprintf(stderr, "  /proc/modules has %s %u, the engine does not\n", name, size);
        CHECK(found);
    }
    for (size_t i = 0; m && i < n; i++)
        have_crc7 = have_crc7 || !strcmp(m[i].name, "crc7");
    CHECK(b != NULL && lines == n && n >= (crc7 ? 1u : 0u)); /* the test guest loads none */
    CHECK(have_crc7 == crc7);
    *n_out = n;
    free(b);
    hvi_linux_free(m);
    runner_start(c);
}

/* The engine's VMA view of the followed process (kept by the in-guest detours) equals its
 * /proc/PID/maps line by line (range, rwx, file). Runner running on entry and exit. */
static void compare_view(struct soak *c, int32_t pid, size_t *n_out)
{
    char cmd[64], blk[32];
    snprintf(cmd, sizeof(cmd), "hvi-maps %d", pid);
    snprintf(blk, sizeof(blk), "maps %d", pid);
    char *out = sh(c, cmd, "HVI-END maps");
    char *maps = hvi_qemu_block(out, blk), *save = NULL;
    free(out);
    runner_stop(c);
    hvi_linux_vma *v = NULL;
    size_t n = 0, i = 0;
    CHECK_OK(hvi_linux_indetour_drain(c->e, NULL));
    CHECK_OK(hvi_linux_vma_view(c->e, pid, &v, &n));
    bool ok = maps && v;
    for (char *l = ok ? strtok_r(maps, "\n", &save) : NULL; l && ok;
         l = strtok_r(NULL, "\n", &save)) {
        unsigned long long st = 0, en = 0;
        char perm[8] = "", path[256] = "";
        if (sscanf(l, "%llx-%llx %7s %*s %*s %*s %255s", &st, &en, perm, path) < 3)
            continue;
        if (i >= n || v[i].start != st || v[i].end != en ||
            (perm[0] == 'r') != !!(v[i].flags & 1) || (perm[1] == 'w') != !!(v[i].flags & 2) ||
            (perm[2] == 'x') != !!(v[i].flags & 4) || (path[0] == '/' && strcmp(v[i].path, path))) {
            fprintf(stderr, "  /proc: %s\n  hvi:   %llx-%llx flags 0x%llx\n", l,
                    i < n ? (unsigned long long)v[i].start : 0ull,
                    i < n ? (unsigned long long)v[i].end : 0ull,
                    i < n ? (unsigned long long)v[i].flags : 0ull);
            ok = false;
        }
        i++;
    }
    if (ok && i != n)
        fprintf(stderr, "  pid %d: /proc has %zu VMAs, the view %zu\n", pid, i, n);
    CHECK(ok && i == n && n > 0);
    *n_out = n;
    free(maps);
    hvi_linux_free(v);
    runner_start(c);
}

/* ---- one round ---- */

static void round_workload(struct soak *c, size_t *mods_in, size_t *mods_out)
{
    /* fork/exec: sh -c + exec, and plain fork+exec of ls */
    sh0(c,
        "i=0; while [ $i -lt 12 ]; do sh -c 'exec /bin/true'; /bin/ls / >/dev/null; "
        "i=$((i+1)); done; echo HVI-FE $i",
        "HVI-FE 12");
    /* pipes */
    sh0(c, "seq 4000 | sort -rn | head -n 100 | wc -l | sed 's/^/HVI-PIPE /'", "HVI-PIPE 100");
    sh0(c, "grep -c ' [Tt] ' /proc/kallsyms | sed 's/^[1-9].*/HVI-KSYMS/'", "HVI-KSYMS");
    /* /proc reads */
    sh0(c,
        "cat /proc/[0-9]*/status /proc/[0-9]*/maps /proc/[0-9]*/cmdline /proc/[0-9]*/stat "
        "/proc/meminfo /proc/stat /proc/interrupts /proc/vmstat >/dev/null 2>&1; echo HVI-PROC",
        "HVI-PROC");
    /* module load / unload, lists compared with crc7 present and after */
    sh0(c, "insmod /modules/crc7.ko && echo HVI-INS-OK", "HVI-INS-OK");
    compare_modules(c, true, mods_in);
    sh0(c, "rmmod crc7 && echo HVI-RM-OK", "HVI-RM-OK");
    compare_modules(c, false, mods_out);
    /* mmap churn, two processes at once on the 2 vCPUs. `wait` names them: a bare `wait` also
     * waits for the followed vmchurn (a background job of the same console shell that sleeps
     * until killed), which hung every HVI_SOAK_FOLLOW=1 run here until 2026-12-01 */
    sh0(c, "vmchurn 200 - & a=$!; vmchurn 200 - & b=$!; wait $a $b; echo HVI-CHURN", "HVI-CHURN");
}

static void run_soak(struct soak *c, unsigned seconds, int32_t followed)
{
    uint64_t ev0, al0, ld0, ul0;
    long rss0 = -1;
    double t0 = now_s();
    hvi_linux_events_stats es;
    hvi_linux_indetour_stats ds;
    hvi_linux_protect_stats ps;
    unsigned round = 0;
    rec_get(&ev0, &al0, &ld0, &ul0);
    CHECK_EQ_U64(al0, 0);
    while (!hvi_test_cur_failed && (round == 0 || now_s() - t0 < seconds)) {
        round++;
        double r0 = now_s();
        uint64_t ev1, al1, ld1, ul1;
        size_t mods_in = 0, mods_out = 0, nproc = 0, nvma = 0;
        rec_get(&ev1, &al1, &ld1, &ul1);
        round_workload(c, &mods_in, &mods_out);
        if (followed > 0)
            compare_view(c, followed, &nvma);
        char *out = sh(c, "hvi-ps", "HVI-END ps");
        char *pslist = hvi_qemu_block(out, "ps");
        free(out);
        runner_stop(c);
        CHECK_OK(hvi_linux_events_drain(c->e));
        if (pslist)
            compare_processes(c, pslist, &nproc);
        CHECK(pslist != NULL);
        free(pslist);
        hvi_timer_tick(c->e); /* deliver anything queued before the counts are read */
        CHECK_OK(hvi_linux_events_stats_get(c->e, &es));
        CHECK_OK(hvi_linux_indetour_stats_get(c->e, &ds));
        CHECK_OK(hvi_linux_protect_stats_get(c->e, &ps));
        runner_start(c);
        uint64_t ev2, al2, ld2, ul2;
        rec_get(&ev2, &al2, &ld2, &ul2);
        CHECK_EQ_U64(al2, 0);              /* clean workload: no alert at all */
        CHECK_EQ_U64(ld2 - ld1, 1);        /* crc7 loaded once... */
        CHECK_EQ_U64(ul2 - ul1, 1);        /* ...and unloaded once */
        CHECK(ev2 - ev1 >= 3 * 24);        /* >= create+exec+exit per fork/exec iteration */
        CHECK_EQ_U64(es.bad, 0);
        sh0(c, "echo alive-$((6*7))", "alive-42");
        long rss = status_kib("RssAnon"), vmrss = status_kib("VmRSS");
        if (rss0 < 0)
            rss0 = rss; /* after round 1: the engine's lists and caches have their size */
        CHECK(rss > 0 && rss - rss0 < (long)RSS_LIMIT_KIB);
        fprintf(stderr,
                "  round %u (%.1f s, t=%.0f s): events %llu (+%llu this round; totals %llu "
                "creates, %llu execs, %llu exits; crc7 +%llu/+%llu; %llu from the ring, %llu "
                "exec breakpoint hits, %llu list re-seeds after a loss); ring %llu records "
                "(%llu lost, %llu VMA re-walks); alerts %llu; check rounds %llu (%u regions); "
                "processes %zu == walk == /proc; followed pid %d (-1: none): %zu VMAs; modules %zu/%zu == /proc/modules; RssAnon %ld "
                "KiB (%+ld since round 1), VmRSS %ld KiB\n",
                round, now_s() - r0, now_s() - t0, (unsigned long long)es.events,
                (unsigned long long)(ev2 - ev1), (unsigned long long)es.creates,
                (unsigned long long)es.execs, (unsigned long long)es.exits,
                (unsigned long long)(ld2 - ld1), (unsigned long long)(ul2 - ul1),
                (unsigned long long)es.ring_records, (unsigned long long)es.breakpoint_hits,
                (unsigned long long)es.ring_reseeds, (unsigned long long)ds.events,
                (unsigned long long)ds.lost, (unsigned long long)ds.rewalks,
                (unsigned long long)al2, (unsigned long long)ps.checks, ps.regions, nproc,
                followed, nvma, mods_in, mods_out, rss, rss - rss0, vmrss);
    }
    fprintf(stderr, "  soak: %u rounds in %.0f s (asked %u s)%s\n", round, now_s() - t0, seconds,
            hvi_test_cur_failed ? ", stopped at the first failed round" : "");
}

/* ---- setup ---- */

static unsigned soak_seconds(void)
{
    const char *s = getenv("HVI_SOAK_SECONDS");
    long v = s && *s ? strtol(s, NULL, 10) : 600;
    return v > 0 && v < 86400 ? (unsigned)v : 600;
}

HVI_TEST(soak_all_protections_events_and_detours_on_a_clean_workload)
{
    unsigned seconds = soak_seconds();
    fprintf(stderr, "  HVI_SOAK_SECONDS=%u\n", seconds);
    const char *why = qt_missing();
    if (why)
        SKIP_CASE(why);
    glob_t gl;
    if (glob("/lib/modules/*-amd64/kernel/lib/crc7.ko", 0, NULL, &gl) != 0 || gl.gl_pathc == 0)
        SKIP_CASE("no /lib/modules/*-amd64/kernel/lib/crc7.ko to load in the guest");
    char add_crc7[512], add_churn[600], bin[512], cmd[1400];
    snprintf(add_crc7, sizeof(add_crc7), "%s:/modules/crc7.ko", gl.gl_pathv[gl.gl_pathc - 1]);
    globfree(&gl);
    snprintf(bin, sizeof(bin), "%s/soak-vmchurn-%d", HVI_BINARY_DIR, (int)getpid());
    snprintf(cmd, sizeof(cmd), "cc -static -O2 -o '%s' '%s/tests/e2e/linux_indetour/vmchurn.c'",
             bin, HVI_SOURCE_DIR);
    if (system(cmd) != 0)
        SKIP_CASE("cannot build the static guest workload (cc -static: libc6-dev missing?)");
    snprintf(add_churn, sizeof(add_churn), "%s:/bin/vmchurn", bin);
    void *support = NULL;
    size_t support_len = 0;
    const char *serr = hvi_test_support_bin(&support, &support_len);
    if (serr) {
        unlink(bin);
        fprintf(stderr, "  %s\n", serr);
        REQUIRE(!"building the CAMI support data for the installed kernel failed");
    }

    struct soak c;
    memset(&c, 0, sizeof(c));
    const char *adds[] = {add_crc7, add_churn, NULL};
    hvi_qemu_vm_opts o = {.add = adds, .smp = 2, .boot_timeout_ms = 180000};
    hvi_status st = hvi_qemu_vm_start(&o, &c.vm);
    unlink(bin);
    if (st != HVI_OK)
        fprintf(stderr, "  boot: %s\n", hvi_qemu_vm_last_error());
    if (st != HVI_OK) {
        free(support);
        REQUIRE(st == HVI_OK);
    }
    bool ok = hvi_qemu_open(c.vm, &c.q) == HVI_OK && hvi_qemu_glue(c.q, &c.g) == HVI_OK &&
              hvi_engine_new(&c.g, &c.e) == HVI_OK;
    CHECK(ok);
    hvi_guest_params p = {.size = sizeof(p), .os_hint = HVI_OS_LINUX, .support = support,
                          .support_len = support_len};
    if (ok && (st = hvi_new_guest(c.e, &p)) != HVI_OK) {
        fprintf(stderr, "  attach: %s\n", hvi_last_error(c.e));
        ok = false;
        CHECK_OK(st);
    }
    uint64_t text_va = 0, text_len = 0, text_va2 = 0, text_len2 = 0;
    uint8_t *text0 = ok ? text_read(c.e, &text_va, &text_len) : NULL;
    CHECK(!ok || text0);
    if (ok) {
        hvi_set_alert_callback(c.e, on_alert, NULL);
        CHECK_OK(hvi_options_set(c.e, HVI_OPT_ALL_PROTECTION | HVI_OPT_EVENT_PROCESS |
                                          HVI_OPT_EVENT_MODULE | HVI_OPT_EVENT_VMA));
        CHECK_OK(hvi_linux_protect_start(c.e));
        /* the VMA set plus the process/module events in one install (the set is fixed then) */
        hvi_linux_indetour_opts io = {
            .events = HVI_LIXD_DEFAULT_EVENTS | (1u << HVI_LIXD_EXEC) | (1u << HVI_LIXD_EXIT) |
                      (1u << HVI_LIXD_MOD_LOAD) | (1u << HVI_LIXD_MOD_UNLOAD)};
        if ((st = hvi_linux_indetour_start(c.e, &io)) != HVI_OK)
            fprintf(stderr, "  indetour: %s\n", hvi_last_error(c.e));
        CHECK_OK(st);
        if ((st = hvi_linux_events_start(c.e)) != HVI_OK)
            fprintf(stderr, "  events: %s\n", hvi_last_error(c.e));
        CHECK_OK(st);
        hvi_linux_protect_stats ps;
        hvi_linux_indetour_stats ds;
        hvi_linux_events_stats es;
        CHECK_OK(hvi_linux_protect_stats_get(c.e, &ps));
        CHECK_OK(hvi_linux_indetour_stats_get(c.e, &ds));
        CHECK_OK(hvi_linux_events_stats_get(c.e, &es));
        fprintf(stderr,
                "  protection: %u regions, %u IDT write hooks; in-guest detours: %u functions, "
                "ring of %u; events: %u detours (%u in the ring, %u breakpoints)\n",
                ps.regions, ps.watches, ds.detours, ds.ring_records, es.detours, es.in_guest,
                es.breakpoints);
        /* the process/module stubs joined the VMA set (exec included): no breakpoint */
        CHECK(ds.detours >= 10 && es.detours == 5 && es.in_guest == 5 && es.breakpoints == 0);
        ok = !hvi_test_cur_failed;
    }
    int32_t followed = -1;
    const char *fenv = getenv("HVI_SOAK_FOLLOW");
    bool follow = !(fenv && !strcmp(fenv, "0"));
    fprintf(stderr, "  HVI_SOAK_FOLLOW=%d (VMA view of a followed process: %s)\n", follow,
            follow ? "checked" : "off");
    if (ok)
        runner_start(&c); /* the gdbstub connection paused the guest: let it run */
    if (ok && follow) {
        /* one process followed for the whole soak: churned once under the detours, then its
         * view is compared with /proc after every round (losses and re-walks included) */
        char *out = sh(&c, "vmchurn 300 soak > /tmp/soak.out 2>&1 & sleep 0.5; cat /tmp/soak.out",
                       "VMCHURN pid ");
        const char *pp = strstr(out, "VMCHURN pid ");
        followed = pp ? (int32_t)atoi(pp + 12) : -1;
        free(out);
        runner_stop(&c);
        CHECK(followed > 0);
        if (followed > 0)
            CHECK_OK(hvi_linux_vma_follow(c.e, followed));
        runner_start(&c);
        sh0(&c,
            "touch /tmp/vmchurn-soak.go; while [ ! -e /tmp/vmchurn-soak.done ]; do sleep 0.1; "
            "done; echo HVI-CHURNED",
            "HVI-CHURNED");
        ok = !hvi_test_cur_failed;
    }
    if (ok) {
        run_soak(&c, seconds, followed);
        runner_stop(&c);
        st = HVI_E_BUSY;
        for (int i = 0; i < 60 && (st = hvi_detach(c.e)) == HVI_E_BUSY; i++) {
            uint32_t n = 0;
            hvi_qemu_run(c.q, c.e, 100, 0, &n);
        }
        CHECK_OK(st);
        CHECK(!hvi_linux_indetour_active(c.e));
        CHECK_OK(c.g.pause(c.g.ctx));
        uint8_t *text1 = text_read(c.e, &text_va2, &text_len2);
        CHECK_OK(c.g.resume(c.g.ctx));
        CHECK(text0 && text1 && text_va2 == text_va && text_len2 == text_len);
        if (text0 && text1 && text_len2 == text_len)
            compare_text(c.e, text0, text_va, text_len, text1);
        free(text1);
        sh0(&c, "echo after-$((6*7))", "after-42");
    }
    runner_stop(&c); /* when the setup above failed with the loop running */
    hvi_engine_free(c.e);
    hvi_qemu_close(c.q);
    hvi_qemu_vm_stop(c.vm);
    free(support);
    free(text0);
}

HVI_TEST_MAIN()
