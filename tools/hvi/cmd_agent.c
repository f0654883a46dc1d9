/* hvi agent — run a process or deliver a file in a running Linux guest from outside
 * (include/hvi/linux_agent.h, docs/linux-agents.md). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hvi/linux_agent.h"
#include "linux_session.h"

#ifdef HVI_HAVE_BACKEND_qemu
#include "hvi_qemu.h"

#define RUN_USAGE                                                                                  \
    "hvi agent run [--vm NAME] [--cami FILE|DIR | --offsets FILE] [--timeout S] [--no-wait]\n"     \
    "              [--no-nudge] [--env NAME=VALUE]... -- PROGRAM [ARG]...\n"                       \
    "  Borrows a task entering a system call and has it call call_usermodehelper(PROGRAM,\n"       \
    "  ARGs); prints the exit status (--no-wait: return once exec'd). PROGRAM is a guest path.\n"  \
    "  An idle guest makes no system call: unless --no-nudge, an empty command is typed on\n"      \
    "  its console after 1 s without one. --timeout bounds each wait (default 30 s). Without\n"    \
    "  --env the environment is HOME=/ and PATH=/sbin:/bin:/usr/sbin:/usr/bin."
#define PUT_USAGE                                                                                  \
    "hvi agent put [--vm NAME] [--cami FILE|DIR | --offsets FILE] [--timeout S] [--mode OCTAL]\n"  \
    "              [--no-nudge] LOCAL GUEST_PATH\n"                                                \
    "  Writes the file LOCAL (at most 1 MiB) to GUEST_PATH in the guest (created or\n"             \
    "  truncated, mode 0644 by default) with filp_open/kernel_write/filp_close called by a\n"      \
    "  borrowed root task."

struct pump_ctx {
    struct linux_session *s;
    bool nudge;
    bool nudged;
    uint64_t waited_ms;
    pthread_t th;
    bool th_on;
};

static void *nudge_thread(void *p)
{
    struct pump_ctx *c = p;
    char *out = NULL;
    hvi_qemu_vm_console(c->s->vm, ":", NULL, 10000, &out);
    free(out);
    return NULL;
}

static hvi_status pump(hvi_engine *e, uint32_t ms, void *user)
{
    struct pump_ctx *c = user;
    uint32_t n = 0;
    hvi_status st = hvi_qemu_run(c->s->q, e, (int)ms, 0, &n);
    if (st != HVI_OK && st != HVI_E_TIMEOUT)
        return st;
    hvi_timer_tick(e);
    c->waited_ms += ms;
    if (c->nudge && !c->nudged && c->waited_ms >= 1000) {
        hvi_linux_agent_result r;
        memset(&r, 0, sizeof(r));
        if (hvi_linux_agent_poll(e, &r) == HVI_E_BUSY) {
            c->nudged = true;
            c->th_on = pthread_create(&c->th, NULL, nudge_thread, c) == 0;
        }
    }
    return HVI_OK;
}

/* Detach once the agent left nothing in the guest (bounded). */
static int finish(struct linux_session *s, struct pump_ctx *c, int rc)
{
    hvi_status st = HVI_E_BUSY;
    hvi_linux_agent_cancel(s->engine);
    for (int i = 0; i < 600 && (st = hvi_detach(s->engine)) == HVI_E_BUSY; i++) {
        uint32_t n = 0;
        if (i == 0)
            fprintf(stderr,
                    "hvi agent: waiting for the borrowed task to return before detaching\n");
        hvi_qemu_run(s->q, s->engine, 100, 0, &n);
        hvi_timer_tick(s->engine);
    }
    if (st != HVI_OK) {
        fprintf(stderr,
                "hvi agent: detach: %s (the borrowed task is still inside the kernel "
                "call; the guest will fault when it returns)\n",
                hvi_strstatus(st));
        rc = 1;
    }
    if (c->th_on)
        pthread_join(c->th, NULL);
    linux_session_close(s);
    return rc;
}

static void print_result(const char *what, hvi_status st, const hvi_linux_agent_result *r)
{
    if (st == HVI_OK)
        fprintf(stderr,
                "hvi agent: %s: borrowed pid %d (%s) at %s on vCPU %u after %.1f ms (%llu hits, "
                "%llu refused); %llu kernel call(s) in %.1f ms, %llu returned on another vCPU\n",
                what, r->pid, r->comm, r->trigger, r->vcpu, (double)r->wait_ns / 1e6,
                (unsigned long long)r->trigger_hits, (unsigned long long)r->rejected,
                (unsigned long long)r->calls, (double)r->run_ns / 1e6,
                (unsigned long long)r->other_vcpu);
    else
        fprintf(stderr, "hvi agent: %s: %s%s%s\n", what, hvi_strstatus(st), r->why[0] ? ": " : "",
                r->why);
}

/* Our options out of argv; the session's (--vm, --cami, --offsets) into pass[]. Returns the
 * index after the options (or after "--"), -1 for help, -2 for a usage error. */
static int parse(int argc, char **argv, char **pass, int *npass, hvi_linux_agent_opts *o,
                 bool *nudge, bool dashdash, const char **env, int *nenv)
{
    *npass = 0;
    pass[(*npass)++] = argv[0];
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        uint64_t v = 0;
        if (hvi_cli_is_help(a))
            return -1;
        if (dashdash && !strcmp(a, "--"))
            return i + 1;
        if (!dashdash && a[0] != '-')
            return i;
        if (i + 1 < argc && !strcmp(a, "--timeout") && hvi_cli_parse_u64(argv[i + 1], &v) &&
            v > 0 && v <= 3600) {
            o->trigger_timeout_ms = o->call_timeout_ms = (uint32_t)v * 1000u;
            i++;
        } else if (i + 1 < argc && !strcmp(a, "--mode")) {
            char *end = NULL;
            unsigned long m = strtoul(argv[++i], &end, 8);
            if (!end || *end || m > 07777)
                return -2;
            o->mode = (uint32_t)m;
        } else if (i + 1 < argc && !strcmp(a, "--env") && env && strchr(argv[i + 1], '=')) {
            if (*nenv >= 64)
                return -2;
            env[(*nenv)++] = argv[++i];
            env[*nenv] = NULL;
        } else if (!strcmp(a, "--no-wait")) {
            o->no_wait = true;
        } else if (!strcmp(a, "--no-nudge")) {
            *nudge = false;
        } else if (i + 1 < argc &&
                   (!strcmp(a, "--vm") || !strcmp(a, "--cami") || !strcmp(a, "--offsets"))) {
            if (*npass > 10)
                return -2;
            pass[(*npass)++] = argv[i++];
            pass[(*npass)++] = argv[i];
        } else {
            return -2;
        }
    }
    return dashdash ? -2 : i;
}

static int agent_run(int argc, char **argv)
{
    char *pass[16];
    int npass = 0;
    bool nudge = true;
    hvi_linux_agent_opts o = {.size = sizeof(o)};
    const char *env[65] = {NULL};
    int nenv = 0;
    int at = parse(argc, argv, pass, &npass, &o, &nudge, true, env, &nenv);
    if (at == -1)
        return printf("usage: %s\n", RUN_USAGE), 0;
    if (at < 0 || at >= argc)
        return fprintf(stderr, "usage: %s\n", RUN_USAGE), 2;
    struct linux_session s;
    int rc = linux_session_open(&s, npass, pass, RUN_USAGE);
    if (rc)
        return rc == LINUX_SESSION_HELP ? 0 : rc;
    struct pump_ctx c = {.s = &s, .nudge = nudge};
    hvi_linux_agent_result r;
    memset(&r, 0, sizeof(r));
    hvi_status st = hvi_linux_agent_run(s.engine, (const char *const *)(argv + at),
                                        nenv ? env : NULL, &o, pump, &c, &r);
    if (st != HVI_OK && !r.why[0])
        snprintf(r.why, sizeof(r.why), "%s", hvi_last_error(s.engine));
    print_result("run", st, &r);
    if (st == HVI_OK) {
        if (o.no_wait)
            printf("started: %lld\n", (long long)r.value);
        else if (r.value >= 0 && (r.value & 0x7f) == 0)
            printf("exit status %lld\n", (long long)((r.value >> 8) & 0xff));
        else if (r.value >= 0)
            printf("killed by signal %lld\n", (long long)(r.value & 0x7f));
        else
            printf("not started: error %lld\n", (long long)r.value);
    }
    return finish(&s, &c, st == HVI_OK && r.value == 0 ? 0 : 1);
}

static int agent_put(int argc, char **argv)
{
    char *pass[16];
    int npass = 0;
    bool nudge = true;
    hvi_linux_agent_opts o = {.size = sizeof(o)};
    int at = parse(argc, argv, pass, &npass, &o, &nudge, false, NULL, NULL);
    if (at == -1)
        return printf("usage: %s\n", PUT_USAGE), 0;
    if (at < 0 || at + 2 != argc)
        return fprintf(stderr, "usage: %s\n", PUT_USAGE), 2;
    void *data = NULL;
    size_t len = 0;
    hvi_status st = hvi_cli_read_file(argv[at], &data, &len);
    if (st != HVI_OK)
        return hvi_cli_fail(argv[at], st);
    struct linux_session s;
    int rc = linux_session_open(&s, npass, pass, PUT_USAGE);
    if (rc) {
        free(data);
        return rc == LINUX_SESSION_HELP ? 0 : rc;
    }
    struct pump_ctx c = {.s = &s, .nudge = nudge};
    hvi_linux_agent_result r;
    memset(&r, 0, sizeof(r));
    st = hvi_linux_agent_put(s.engine, argv[at + 1], data, len, &o, pump, &c, &r);
    free(data);
    if (st != HVI_OK && !r.why[0])
        snprintf(r.why, sizeof(r.why), "%s", hvi_last_error(s.engine));
    print_result("put", st, &r);
    if (st == HVI_OK) {
        if (r.value == (int64_t)len)
            printf("wrote %zu bytes to %s\n", len, argv[at + 1]);
        else
            printf("failed: kernel returned %lld after writing part of %zu bytes\n",
                   (long long)r.value, len);
    }
    return finish(&s, &c, st == HVI_OK && r.value == (int64_t)len ? 0 : 1);
}

HVI_SUBCOMMAND("agent", "run", agent_run, "run a program in the guest (call_usermodehelper)")
HVI_SUBCOMMAND("agent", "put", agent_put, "write a file into the guest (filp_open/kernel_write)")

static int cmd_agent(int argc, char **argv)
{
    return hvi_cli_dispatch_sub("agent", argc, argv);
}
HVI_COMMAND("agent", cmd_agent, "run a process or drop a file in a Linux guest from outside")
#endif
