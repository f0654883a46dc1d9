/*
 * e2e: the Linux protections that test_linux_protect does not attack — kernel rodata, the vDSO
 * image, another module's text, CR4.SMEP/SMAP — and the sys_call_table write read back from
 * the guest, on ONE boot of the Debian test guest (qemu64 plus SMEP and SMAP, 4-level paging).
 *
 * Attach in deny mode with every protection, run a clean workload (0 alerts, crc7.ko loaded
 * as the module whose text is attacked later), then each attack module of tests/e2e/attacks:
 * - the expected alert: type, exact object, the changed address (from the guest: the module's
 *   `state` parameter prints it), old/new bytes, `denied` for memory;
 * - writer: a timer check says so (rip 0, "timer" in the detail) and then the alert may not
 *   know the writer (for a pointer table it names where the entry points: the attack module);
 *   any other alert (write hook) must name the attack module as writer (rip, symbol, module);
 * - read back from the guest's OWN view (each module's read-only `state` parameter reads the
 *   patched location through the kernel's mapping, or CR4 of the CPU): "original" after a
 *   denied write; for CR4 "set" again only when the last alert of the bit says `denied` (else
 *   still "clear"; a deny put off to a later tick, "not set again yet", is waited for);
 *   the engine's view agrees (memory: the alert's old value at its gva);
 * - unloading the module (which writes its saved bytes back) raises nothing more.
 * The guest must not have oopsed at the end.
 */
#include <glob.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../qemu/qemu_util.h"
#include "../support_util.h"
#include "harness.h"
#include "../runner_util.h"
#include "hvi/alert.h"
#include "hvi/linux.h"
#include "hvi/linux_protect.h"
#include "hvi/mem.h"
#include "hvi_qemu.h"

#define MAX_SEEN 64
#define CR4_SMEP (1ull << 20)
#define CR4_SMAP (1ull << 21)
#define GUEST_CPU "qemu64,+smep,+smap"

struct seen {
    pthread_mutex_t mu;
    hvi_alert a[MAX_SEEN];
    size_t n;
};

static void on_alert(const hvi_alert *a, void *user)
{
    struct seen *s = user;
    char buf[1024];
    hvi_alert_to_json(a, buf, sizeof(buf), NULL);
    fprintf(stderr, "  alert: %s\n", buf);
    pthread_mutex_lock(&s->mu);
    if (s->n < MAX_SEEN)
        s->a[s->n++] = *a;
    pthread_mutex_unlock(&s->mu);
}

static const char *const g_mods[] = {"syscall_table", "rodata_patch", "vdso_patch",
                                     "modtext_patch", "cr4_smep"};
#define NMODS (sizeof(g_mods) / sizeof(g_mods[0]))
#define NADDS (NMODS + 1) /* + crc7.ko, the victim of modtext_patch */

/* Build the corpus; the guest's files (attack modules, crc7.ko); NULL or why to skip. */
static const char *prepare(char *adds[NADDS + 1])
{
    static char why[2200];
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s/tests/e2e/attacks/build.sh %s/attacks >/dev/null",
             HVI_SOURCE_DIR, HVI_BINARY_DIR);
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(why, sizeof(why), "attack modules do not build (%s, status %d)", cmd, rc);
        return why;
    }
    glob_t gl;
    if (glob("/lib/modules/*-amd64/kernel/lib/crc7.ko", 0, NULL, &gl) != 0 || !gl.gl_pathc)
        return "no /lib/modules/*-amd64/kernel/lib/crc7.ko to load in the guest";
    for (size_t i = 0; i < NADDS; i++) {
        if (!(adds[i] = malloc(600)))
            return "out of memory";
        if (i < NMODS)
            snprintf(adds[i], 600, "%s/attacks/hvi_%s.ko:/modules/hvi_%s.ko", HVI_BINARY_DIR,
                     g_mods[i], g_mods[i]);
        else
            snprintf(adds[i], 600, "%s:/modules/crc7.ko", gl.gl_pathv[gl.gl_pathc - 1]);
    }
    globfree(&gl);
    adds[NADDS] = NULL;
    return NULL;
}

struct ctx {
    hvi_qemu_vm *vm;
    hvi_qemu *q;
    hvi_engine *e;
    struct seen seen;
    struct e2e_runner r; /* the event loop (q, e copied in at start) */
};

/* The event loop (tests/e2e/runner_util.h): serve events, tick the timer every ~300 ms. Engine
 * calls from the main thread (memory reads, detach) happen with the loop stopped. */
static void runner_start(struct ctx *c)
{
    c->r.q = c->q, c->r.e = c->e, c->r.tick_ms = 300;
    e2e_runner_start(&c->r);
}

static void runner_stop(struct ctx *c)
{
    e2e_runner_stop(&c->r);
}

/* Run a guest shell command; its output in out (may be NULL). */
static hvi_status sh(struct ctx *c, const char *cmd, char *out, size_t outsz)
{
    char *o = NULL;
    hvi_status st = hvi_qemu_vm_console(c->vm, cmd, NULL, 60000, &o);
    if (st != HVI_OK)
        fprintf(stderr, "  console '%s': status %d\n", cmd, st);
    if (out && outsz)
        snprintf(out, outsz, "%s", o ? o : "");
    free(o);
    return st;
}

/* Wait until the loop thread has ticked `n` more times (bounded: 30 s). */
static void ticks(struct ctx *c, int n)
{
    unsigned target = atomic_load(&c->r.ticks) + (unsigned)n;
    for (int i = 0; i < 3000 && c->r.on && atomic_load(&c->r.ticks) < target; i++)
        usleep(10000);
}

static size_t nseen(struct ctx *c)
{
    pthread_mutex_lock(&c->seen.mu);
    size_t n = c->seen.n;
    pthread_mutex_unlock(&c->seen.mu);
    return n;
}

static void clear_seen(struct ctx *c)
{
    pthread_mutex_lock(&c->seen.mu);
    c->seen.n = 0;
    pthread_mutex_unlock(&c->seen.mu);
}

/* The first alert with this type and exact object (copied out), or false. */
static bool find_alert(struct ctx *c, uint32_t type, const char *object, hvi_alert *out)
{
    bool found = false;
    pthread_mutex_lock(&c->seen.mu);
    for (size_t i = 0; i < c->seen.n && !found; i++)
        if (c->seen.a[i].type == type && !strcmp(c->seen.a[i].object, object)) {
            found = true;
            if (out)
                *out = c->seen.a[i];
        }
    pthread_mutex_unlock(&c->seen.mu);
    return found;
}

/* The last alert with this type and exact object (copied out), or false. */
static bool find_last_alert(struct ctx *c, uint32_t type, const char *object, hvi_alert *out)
{
    bool found = false;
    pthread_mutex_lock(&c->seen.mu);
    for (size_t i = c->seen.n; i-- > 0 && !found;)
        if (c->seen.a[i].type == type && !strcmp(c->seen.a[i].object, object)) {
            found = true;
            if (out)
                *out = c->seen.a[i];
        }
    pthread_mutex_unlock(&c->seen.mu);
    return found;
}

/* A CR alert is final unless the deny was put off to a later tick (the vCPU had interrupts
 * off: the engine reports it "logged ... not set again yet" and retries). */
static bool cr_settled(struct ctx *c, uint32_t type, const char *object)
{
    hvi_alert a;
    return find_last_alert(c, type, object, &a) && !strstr(a.detail, "not set again yet");
}

struct step {
    const char *mod;     /* hvi_MOD.ko, and /sys/module/hvi_MOD/parameters/state */
    uint32_t type;       /* expected alert */
    const char *object;  /* its exact object */
    const char *object2; /* a second expected alert of the same type, or NULL */
    uint64_t flip;       /* memory: new = old ^ flip over the alert's width */
    uint32_t width;      /* memory: changed bytes */
    const char *points;  /* timer-check alerts must still name this module (pointer tables) */
    const char *then;    /* guest command right after the insmod, or NULL */
};

static const struct step g_steps[] = {
    /* one sys_call_table entry -> the module's function: a pointer, so even a timer check
     * names the module it points into */
    {"syscall_table", HVI_ALERT_INTEGRITY, "sys_call_table", NULL, 0, 8, "hvi_syscall_table",
     NULL},
    /* sysrq_crash_op.enable_mask, 4 bytes XOR 0xff, inside __start_rodata..__end_rodata */
    {"rodata_patch", HVI_ALERT_INTEGRITY, "kernel-rodata", NULL, 0xffffffffull, 4, NULL, NULL},
    /* one byte of __vdso_sgx_enter_enclave in vdso_image_64.data */
    {"vdso_patch", HVI_ALERT_INTEGRITY, "vdso", NULL, 0xff, 1, NULL, NULL},
    /* one byte of crc7_be in crc7.ko's text */
    {"modtext_patch", HVI_ALERT_INTEGRITY, "module-text:crc7", NULL, 0xff, 1, NULL, NULL},
    /* CR4.SMEP and CR4.SMAP cleared on the (only) CPU; cleared again once the insmod is over,
     * because the kernel's next global TLB flush rewrites CR4 from its own copy (no INVPCID
     * under TCG) and may have set them back already (the first state line shows it) */
    {"cr4_smep", HVI_ALERT_CR, "cr4.smep", "cr4.smap", 0, 0, NULL,
     "cat /sys/module/hvi_cr4_smep/parameters/state; "
     "echo 1 > /sys/module/hvi_cr4_smep/parameters/clear"},
};

/* A write hook saw the write (not a timer check): the alert must name the attack module as
 * the writer (rip, module, symbol or "called from"). A timer check may not know the writer. */
static void check_writer(const hvi_alert *a, const struct step *s)
{
    char mod[64];
    snprintf(mod, sizeof(mod), "hvi_%s", s->mod);
    bool timer = a->rip == 0 && strstr(a->detail, "timer") != NULL;
    if (timer) {
        fprintf(stderr, "  %s: timer check, writer unknown%s\n", a->object,
                s->points ? "; must point into the attack module" : "");
        if (s->points) {
            CHECK_STR(a->module, s->points);
            CHECK(!strncmp(a->symbol, s->points, strlen(s->points)));
        }
        return;
    }
    fprintf(stderr, "  %s: seen at the write, rip 0x%llx %s (%s), pid %d %s\n", a->object,
            (unsigned long long)a->rip, a->symbol, a->module, a->pid, a->comm);
    CHECK(a->rip != 0);
    CHECK_STR(a->module, mod);
    /* RIP in the module, or in a copy helper the module called (docs/linux-protection.md) */
    char from[80];
    snprintf(from, sizeof(from), "called from %s", mod);
    CHECK(!strncmp(a->symbol, mod, strlen(mod)) || strstr(a->detail, from));
}

/* The alert's JSON line (what `hvi monitor` prints) carries the same verdict. */
static void check_json(const hvi_alert *a, const char *type)
{
    char j[4096], want[160];
    CHECK_OK(hvi_alert_to_json(a, j, sizeof(j), NULL));
    snprintf(want, sizeof(want), "\"type\":\"%s\",\"kind\":\"violation\",\"action\":\"%s\"", type,
             a->action == HVI_ALERT_DENIED ? "denied" : "logged");
    CHECK(strstr(j, want) != NULL);
    snprintf(want, sizeof(want), "\"object\":\"%s\"", a->object);
    CHECK(strstr(j, want) != NULL);
    snprintf(want, sizeof(want), "\"gva\":\"0x%llx\"", (unsigned long long)a->gva);
    CHECK(strstr(j, want) != NULL);
    snprintf(want, sizeof(want), "\"old_value\":\"0x%llx\",\"new_value\":\"0x%llx\"",
             (unsigned long long)a->old_value, (unsigned long long)a->new_value);
    CHECK(strstr(j, want) != NULL);
}

/* The "at 0x..." address in a state line, or 0. */
static uint64_t state_addr(const char *line)
{
    const char *p = strstr(line, " at ");
    return p ? strtoull(p + 4, NULL, 16) : 0;
}

static void run_memory_step(struct ctx *c, const struct step *s)
{
    char cmd[256], st[512] = "";
    hvi_alert a;
    memset(&a, 0, sizeof(a));
    bool got = find_alert(c, s->type, s->object, &a);
    CHECK(got);
    /* the guest's own view: the location the module patched, read through its mapping */
    snprintf(cmd, sizeof(cmd), "cat /sys/module/hvi_%s/parameters/state", s->mod);
    runner_start(c);
    CHECK_OK(sh(c, cmd, st, sizeof(st)));
    runner_stop(c);
    fprintf(stderr, "  guest: %s", st);
    if (!got)
        return;
    /* the alert's run lies in what the module changed (a pointer store changes its low
     * bytes only: kernel and module addresses share the upper 32 bits) */
    uint64_t at = state_addr(st);
    CHECK(at != 0);
    CHECK(a.gva >= at && a.gva - at < s->width);
    CHECK(a.width >= 1 && a.width <= s->width - (a.gva - at));
    CHECK(a.action == HVI_ALERT_DENIED);
    uint64_t mask = a.width >= 8 ? ~0ull : (1ull << (8 * a.width)) - 1;
    if (s->flip)
        CHECK_EQ_U64(a.old_value ^ a.new_value, s->flip & mask);
    else
        CHECK(a.old_value != a.new_value);
    /* what the guest reads now are the alert's old bytes */
    const char *p = strstr(st, " now ");
    uint64_t guest_now = 0;
    if (p && s->flip) { /* a byte string, in memory order */
        for (uint32_t k = 0; k < a.width && k < 8; k++) {
            unsigned b = 0;
            if (sscanf(p + 5 + 2 * (a.gva - at + k), "%2x", &b) == 1)
                guest_now |= (uint64_t)b << (8 * k);
        }
    } else if (p) { /* a pointer value */
        guest_now = (strtoull(p + 5, NULL, 16) >> (8 * (a.gva - at))) & mask;
    }
    CHECK(p != NULL);
    CHECK_EQ_U64(guest_now, a.old_value);
    check_writer(&a, s);
    check_json(&a, "integrity");
    /* denied: the guest reads the original bytes again, and so does the engine */
    CHECK(strstr(st, " original") != NULL);
    uint64_t now = 0;
    uint32_t n = a.width < 8 ? a.width : 8;
    CHECK_OK(hvi_gva_read(c->e, 0, a.gva, &now, n));
    CHECK_EQ_U64(now, a.old_value);
}

static uint64_t guest_cr4(struct ctx *c)
{
    hvi_glue g;
    hvi_regs r;
    memset(&r, 0, sizeof(r));
    if (hvi_qemu_glue(c->q, &g) != HVI_OK || g.get_regs(g.ctx, 0, HVI_REGS_CR, &r) != HVI_OK ||
        !(r.valid & HVI_REGS_CR))
        return 0;
    return r.cr4;
}

static void run_cr_step(struct ctx *c, const struct step *s)
{
    char cmd[256], st[512] = "";
    const char *objs[2] = {s->object, s->object2};
    const char *bits[2] = {"smep ", "smap "};
    hvi_alert a[2];
    memset(a, 0, sizeof(a));
    snprintf(cmd, sizeof(cmd), "cat /sys/module/hvi_%s/parameters/state", s->mod);
    runner_start(c);
    CHECK_OK(sh(c, cmd, st, sizeof(st)));
    runner_stop(c);
    fprintf(stderr, "  guest: %s", st);
    uint64_t cr4 = guest_cr4(c);
    fprintf(stderr, "  engine: vCPU 0 CR4 0x%llx\n", (unsigned long long)cr4);
    for (int i = 0; i < 2; i++) {
        bool got = find_last_alert(c, s->type, objs[i], &a[i]); /* the final verdict */
        CHECK(got);
        if (!got)
            continue;
        uint64_t bit = i ? CR4_SMAP : CR4_SMEP;
        CHECK_EQ_U64(a[i].vcpu, 0);
        CHECK(a[i].old_value & bit);
        CHECK(!(a[i].new_value & bit));
        check_writer(&a[i], s);
        check_json(&a[i], "cr");
        /* restored only when the alert says so; logged: the guest still runs without it */
        char want[32];
        const char *p = strstr(st, bits[i]);
        bool denied = a[i].action == HVI_ALERT_DENIED;
        CHECK(denied || a[i].action == HVI_ALERT_LOGGED);
        snprintf(want, sizeof(want), "%s%s", bits[i], denied ? "set" : "clear");
        CHECK(p && !strncmp(p, want, strlen(want)));
        CHECK(!(cr4 & bit) == !denied);
    }
}

static void run_steps(struct ctx *c)
{
    for (size_t i = 0; i < sizeof(g_steps) / sizeof(g_steps[0]); i++) {
        const struct step *s = &g_steps[i];
        char cmd[256], out[2048] = "";
        clear_seen(c);
        runner_start(c);
        snprintf(cmd, sizeof(cmd), "insmod /modules/hvi_%s.ko && %s%secho LOADED", s->mod,
                 s->then ? s->then : "", s->then ? " && " : "");
        CHECK_OK(sh(c, cmd, out, sizeof(out)));
        if (s->then)
            fprintf(stderr, "  guest: %s", out);
        bool loaded = strstr(out, "LOADED") != NULL;
        CHECK(loaded);
        if (!loaded)
            fprintf(stderr, "  insmod hvi_%s: %s\n", s->mod, out);
        /* kernel text/rodata are compared a 2 MiB slice per tick: allow two full rounds */
        for (int t = 0; t < 24 && loaded &&
                        !(s->type == HVI_ALERT_CR
                              ? cr_settled(c, s->type, s->object) &&
                                    (!s->object2 || cr_settled(c, s->type, s->object2))
                              : find_alert(c, s->type, s->object, NULL));
             t++)
            ticks(c, 1);
        ticks(c, 1);
        runner_stop(c);
        size_t n = nseen(c);
        fprintf(stderr, "  attack hvi_%s: %zu alert(s)\n", s->mod, n);
        /* nothing but what this attack is about */
        for (size_t k = 0; k < n; k++)
            CHECK(c->seen.a[k].type == s->type &&
                  (!strcmp(c->seen.a[k].object, s->object) ||
                   (s->object2 && !strcmp(c->seen.a[k].object, s->object2))));
        if (loaded) {
            if (s->type == HVI_ALERT_CR)
                run_cr_step(c, s);
            else
                run_memory_step(c, s);
        }
        /* unload: the module writes back what it saved, which the engine already restored
         * (or sets the CR4 bits again): no new alert */
        clear_seen(c);
        runner_start(c);
        snprintf(cmd, sizeof(cmd), "rmmod hvi_%s", s->mod);
        if (loaded)
            CHECK_OK(sh(c, cmd, NULL, 0));
        ticks(c, 3);
        runner_stop(c);
        CHECK_EQ_U64(nseen(c), 0);
    }
}

HVI_TEST(rodata_vdso_modtext_cr4_syscall_table_caught_and_read_back)
{
    const char *why = qt_missing();
    char *adds[NADDS + 1] = {0};
    void *support = NULL;
    size_t support_len = 0;
    if (why)
        SKIP_CASE(why);
    if ((why = prepare(adds)) != NULL || (why = hvi_test_support_bin(&support, &support_len)))
        SKIP_CASE(why);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct ctx c;
    memset(&c, 0, sizeof(c));
    pthread_mutex_init(&c.seen.mu, NULL);
    hvi_qemu_vm_opts o = {.add = (const char *const *)adds, .boot_timeout_ms = 120000,
                          .cpu = GUEST_CPU};
    hvi_status st = hvi_qemu_vm_start(&o, &c.vm);
    if (st != HVI_OK)
        fprintf(stderr, "  boot: %s\n", hvi_qemu_vm_last_error());
    REQUIRE(st == HVI_OK);
    hvi_glue g;
    REQUIRE(hvi_qemu_open(c.vm, &c.q) == HVI_OK && hvi_qemu_glue(c.q, &g) == HVI_OK);
    REQUIRE(hvi_engine_new(&g, &c.e) == HVI_OK);
    hvi_guest_params p = {.size = sizeof(p), .os_hint = HVI_OS_LINUX, .support = support,
                          .support_len = support_len};
    st = hvi_new_guest(c.e, &p);
    if (st != HVI_OK)
        fprintf(stderr, "  attach: %s\n", hvi_last_error(c.e));
    REQUIRE(st == HVI_OK);
    hvi_set_alert_callback(c.e, on_alert, &c.seen);
    /* the CPU model gives the guest SMEP and SMAP, which the kernel turns on */
    uint64_t cr4 = guest_cr4(&c);
    fprintf(stderr, "  -cpu %s: CR4 0x%llx at attach\n", GUEST_CPU, (unsigned long long)cr4);
    CHECK((cr4 & (CR4_SMEP | CR4_SMAP)) == (CR4_SMEP | CR4_SMAP));
    CHECK_OK(hvi_options_set(c.e, HVI_OPT_ALL_PROTECTION));
    CHECK_OK(hvi_linux_protect_start(c.e));
    hvi_linux_protect_stats ps;
    CHECK_OK(hvi_linux_protect_stats_get(c.e, &ps));
    fprintf(stderr, "  %u regions, %u write hooks\n", ps.regions, ps.watches);
    runner_start(&c); /* the gdbstub connection paused the guest: let it run */
    /* a clean workload: fork, exec, mmap, the vDSO (every process maps it), /proc walks, and
     * crc7.ko loaded: its text is shadowed once it is live */
    CHECK_OK(sh(&c, "for i in $(seq 30); do ls / > /dev/null; cat /proc/self/maps > /dev/null; "
                    "done; date > /dev/null",
                NULL, 0));
    CHECK_OK(sh(&c, "insmod /modules/crc7.ko; sleep 1 & wait; uname -a > /dev/null; "
                    "grep -c . /proc/kallsyms > /dev/null",
                NULL, 0));
    ticks(&c, 24); /* a full round of text and rodata, and the new module's text */
    runner_stop(&c);
    CHECK_EQ_U64(nseen(&c), 0);
    CHECK_OK(hvi_linux_protect_stats_get(c.e, &ps));
    fprintf(stderr, "  after the workload: %u regions (crc7 text added)\n", ps.regions);
    run_steps(&c);
    char out[4096] = "";
    runner_start(&c);
    CHECK_OK(sh(&c, "rmmod crc7; dmesg | grep -c -e 'Oops' -e 'BUG:' -e 'general protection'",
                out, sizeof(out)));
    runner_stop(&c);
    fprintf(stderr, "  guest oops count: %s", out);
    CHECK(atoi(out) == 0);
    /* an LSTAR agent run in flight makes detach answer busy until its breakpoint is served */
    hvi_status dst = hvi_detach(c.e);
    for (int i = 0; i < 20 && dst == HVI_E_BUSY; i++) {
        runner_start(&c);
        ticks(&c, 1);
        runner_stop(&c);
        dst = hvi_detach(c.e);
    }
    CHECK_OK(dst);
    hvi_engine_free(c.e);
    hvi_qemu_close(c.q);
    hvi_qemu_vm_stop(c.vm);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "  guest boot to stop: %.1f s\n",
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    for (size_t i = 0; i < NADDS + 1; i++)
        free(adds[i]);
    free(support);
}

HVI_TEST_MAIN()
