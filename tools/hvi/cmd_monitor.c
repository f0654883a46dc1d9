/* hvi monitor — attach to a running Linux test guest, enable kernel protection and print
 * alerts/events as JSON lines until the time is up or SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "hvi/alert.h"
#include "hvi/linux.h"
#include "hvi/linux_events.h"
#include "hvi/linux_exploit.h"
#include "hvi/linux_protect.h"
#include "linux_session.h"

#ifdef HVI_HAVE_BACKEND_qemu
#include "hvi_qemu.h"
#endif

#define MONITOR_USAGE                                                                              \
    "hvi monitor [--vm NAME] --cami FILE|DIR [--protect LIST] [--deny] [--json]\n"                \
    "            [--seconds N] [--interval-ms N] [--offsets FILE]\n"                             \
    "  --cami: support data (a compiled CAMI file, or YAML sources such as cami/linux); the\n"   \
    "          entry is selected by the guest's version banner\n"                               \
    "  --offsets: developer option, a scripts/lix-offsets file instead of CAMI\n"                \
    "  LIST: comma-separated of text,idt,syscalls,vdso,modules,cr,msr,creds,hidden,unpacker,\n"  \
    "        all, none (default all; none: only --events/--block-exec)"

#define MONITOR_EVENTS_USAGE                                                                       \
    "  --events: also report process create/exec/exit and module load/unload (JSON lines)\n"    \
    "  --block-exec PATH: refuse execs of PATH in the guest (-EACCES; repeatable, max 16)\n"     \
    "  --protect-process P[,P...]: exploit protection of user processes: alert (with --deny:\n" \
    "        refuse with EACCES) when anonymous, heap or stack memory becomes executable\n"     \
    "        (mprotect PROT_EXEC, mmap PROT_EXEC|MAP_ANONYMOUS). P: a pid, a name (comm, 15\n"  \
    "        chars), an exe path (with '/'), or * for every process (repeatable)\n"            \
    "  --allow-exec P[,P...]: such processes may do it (JIT engines): no alert, no refusal"

static volatile sig_atomic_t g_stop;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static const struct {
    const char *name;
    uint64_t opt;
} g_protect_names[] = {
    {"text", HVI_OPT_KM_TEXT},       {"idt", HVI_OPT_KM_IDT},
    {"syscalls", HVI_OPT_KM_SYSCALL_TABLE}, {"vdso", HVI_OPT_KM_VDSO},
    {"modules", HVI_OPT_KM_MODULES}, {"cr", HVI_OPT_KM_CR},
    {"creds", HVI_OPT_CREDS},        {"hidden", HVI_OPT_INTEGRITY},
    {"msr", HVI_OPT_KM_MSR},         {"unpacker", HVI_OPT_KM_UNPACK},
    {"all", HVI_OPT_ALL_PROTECTION}, {"none", 0},
};

static bool parse_protect(const char *list, uint64_t *out)
{
    char buf[256];
    if (strlen(list) >= sizeof(buf))
        return false;
    memcpy(buf, list, strlen(list) + 1);
    *out = 0;
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        bool found = false;
        for (size_t i = 0; i < sizeof(g_protect_names) / sizeof(g_protect_names[0]); i++)
            if (!strcmp(w, g_protect_names[i].name)) {
                *out |= g_protect_names[i].opt;
                found = true;
            }
        if (!found)
            return false;
    }
    return true;
}

static void print_alert(const hvi_alert *a, void *user)
{
    char buf[2048];
    (void)user;
    if (hvi_alert_to_json(a, buf, sizeof(buf), NULL) == HVI_OK || buf[0]) {
        printf("%s\n", buf);
        fflush(stdout);
    }
}

struct monitor_args {
    uint64_t opts;
    bool deny;
    uint64_t seconds, interval_ms;
    char *pass[12];
    int npass;
    uint64_t evopts;           /* --events / --block-exec */
    const char *blocks[16];
    int nblocks;
    const char *xp[16];        /* --protect-process / --allow-exec lists */
    bool xp_allow[16];
    int nxp;
};

/* Add one --protect-process / --allow-exec list to the engine's policy. */
static hvi_status exploit_rules(hvi_engine *e, const char *list, bool allow)
{
    char buf[512];
    if (strlen(list) >= sizeof(buf))
        return HVI_E_INVAL;
    memcpy(buf, list, strlen(list) + 1);
    uint32_t flags = allow ? HVI_LINUX_XP_ALLOW_EXEC : 0;
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        uint64_t pid = 0;
        hvi_status st = hvi_cli_parse_u64(w, &pid) && pid > 0 && pid < 0x7fffffff
                            ? hvi_linux_exploit_protect_pid(e, (int32_t)pid, flags)
                            : hvi_linux_exploit_protect_name(e, w, flags);
        if (st != HVI_OK)
            return st;
    }
    return HVI_OK;
}

static int parse_args(struct monitor_args *m, int argc, char **argv)
{
    m->opts = HVI_OPT_ALL_PROTECTION;
    m->interval_ms = 1000;
    m->pass[m->npass++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (hvi_cli_is_help(a)) {
            printf("usage: %s\n%s\n", MONITOR_USAGE, MONITOR_EVENTS_USAGE);
            return 2;
        } else if (!strcmp(a, "--events")) {
            m->evopts |= HVI_OPT_EVENT_PROCESS | HVI_OPT_EVENT_MODULE;
        } else if (i + 1 < argc && !strcmp(a, "--block-exec")) {
            if (m->nblocks >= 16 || argv[i + 1][0] != '/')
                goto usage;
            m->blocks[m->nblocks++] = argv[++i];
            m->evopts |= HVI_OPT_BLOCK_EXEC;
        } else if (i + 1 < argc &&
                   (!strcmp(a, "--protect-process") || !strcmp(a, "--allow-exec"))) {
            if (m->nxp >= 16 || !argv[i + 1][0])
                goto usage;
            m->xp_allow[m->nxp] = !strcmp(a, "--allow-exec");
            m->xp[m->nxp++] = argv[++i];
        } else if (!strcmp(a, "--deny")) {
            m->deny = true;
        } else if (i + 1 < argc && !strcmp(a, "--protect")) {
            if (!parse_protect(argv[++i], &m->opts))
                goto usage;
        } else if (i + 1 < argc && !strcmp(a, "--seconds")) {
            if (!hvi_cli_parse_u64(argv[++i], &m->seconds))
                goto usage;
        } else if (i + 1 < argc && !strcmp(a, "--interval-ms")) {
            if (!hvi_cli_parse_u64(argv[++i], &m->interval_ms) || !m->interval_ms ||
                m->interval_ms > 60000)
                goto usage;
        } else if (!strcmp(a, "--json")) {
            m->pass[m->npass++] = argv[i];
        } else if (i + 1 < argc && m->npass + 2 < 12 &&
                   (!strcmp(a, "--vm") || !strcmp(a, "--offsets") || !strcmp(a, "--cami"))) {
            m->pass[m->npass++] = argv[i];
            m->pass[m->npass++] = argv[++i];
        } else {
            goto usage;
        }
    }
    return 0;
usage:
    fprintf(stderr, "usage: %s\n", MONITOR_USAGE);
    return 2;
}

static int cmd_monitor(int argc, char **argv)
{
    struct monitor_args m;
    memset(&m, 0, sizeof(m));
    int rc = parse_args(&m, argc, argv);
    if (rc)
        return rc;
#ifdef HVI_HAVE_BACKEND_qemu
    struct linux_session s;
    if ((rc = linux_session_open(&s, m.npass, m.pass, MONITOR_USAGE)) != 0)
        return rc;
    hvi_set_alert_callback(s.engine, print_alert, NULL);
    hvi_status st = hvi_options_set(s.engine, m.opts | (m.deny ? 0 : HVI_OPT_LOG_ONLY));
    if (st == HVI_OK)
        st = hvi_linux_protect_start(s.engine);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi monitor: %s\n", hvi_last_error(s.engine));
        linux_session_close(&s);
        return 1;
    }
    for (int i = 0; m.evopts && st == HVI_OK && i < m.nblocks; i++)
        st = hvi_linux_block_exec_add(s.engine, m.blocks[i]);
    if (m.evopts && st == HVI_OK &&
        (st = hvi_options_set(s.engine, hvi_options_get(s.engine) | m.evopts)) == HVI_OK)
        st = hvi_linux_events_start(s.engine);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi monitor: events: %s\n", hvi_last_error(s.engine));
        hvi_detach(s.engine);
        linux_session_close(&s);
        return 1;
    }
    for (int i = 0; i < m.nxp && st == HVI_OK; i++)
        st = exploit_rules(s.engine, m.xp[i], m.xp_allow[i]);
    if (m.nxp && st == HVI_OK &&
        (st = hvi_options_set(s.engine, hvi_options_get(s.engine) | HVI_OPT_PROC_EXPLOIT)) ==
            HVI_OK)
        st = hvi_linux_exploit_start(s.engine);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi monitor: exploit protection: %s\n", hvi_last_error(s.engine));
        hvi_detach(s.engine);
        linux_session_close(&s);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "hvi monitor: protecting (options 0x%llx%s); ^C to stop\n",
            (unsigned long long)m.opts, m.deny ? ", deny" : ", log only");
    uint64_t end = m.seconds ? mono_ns() + m.seconds * 1000000000ull : 0;
    while (!g_stop && (!end || mono_ns() < end)) {
        uint32_t events = 0;
        st = hvi_qemu_run(s.q, s.engine, (int)m.interval_ms, 0, &events);
        if (st != HVI_OK && st != HVI_E_TIMEOUT) {
            fprintf(stderr, "hvi monitor: guest session ended: %s\n",
                    hvi_qemu_last_error(s.q));
            break;
        }
        hvi_timer_tick(s.engine);
    }
    hvi_linux_protect_stats ps;
    if (hvi_linux_protect_stats_get(s.engine, &ps) == HVI_OK)
        fprintf(stderr,
                "hvi monitor: %llu checks, %llu violations, %llu restored, %u regions, last "
                "check %.2f ms over %llu bytes; %u write hooks, %llu stops on them, %llu "
                "caught at the write\n",
                (unsigned long long)ps.checks, (unsigned long long)ps.violations,
                (unsigned long long)ps.restored, ps.regions, ps.last_check_ns / 1e6,
                (unsigned long long)ps.bytes_compared, ps.watches,
                (unsigned long long)ps.hook_stops, (unsigned long long)ps.watch_hits);
    hvi_linux_exploit_stats xs;
    if (m.nxp && hvi_linux_exploit_stats_get(s.engine, &xs) == HVI_OK)
        fprintf(stderr,
                "hvi monitor: exploit protection: %llu breakpoint hits, %llu violations (%llu "
                "denied), %llu allowed, %llu undecoded\n",
                (unsigned long long)xs.hits, (unsigned long long)xs.violations,
                (unsigned long long)xs.denied, (unsigned long long)xs.allowed,
                (unsigned long long)xs.bad);
    hvi_detach(s.engine);
    linux_session_close(&s);
    return st == HVI_OK || st == HVI_E_TIMEOUT ? 0 : 1;
#else
    fprintf(stderr, "hvi monitor: this build has no QEMU backend\n");
    return 1;
#endif
}

HVI_COMMAND("monitor", cmd_monitor, "protect a running Linux guest's kernel, print alerts as JSON")
