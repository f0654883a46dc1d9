/*
 * e2e: boot the test guest with the attack modules, attach, protect everything in deny mode,
 * run a normal workload (no alert allowed), then each attack (each must raise its alert, with
 * the expected type/object); the denied memory attacks must not be left in memory. Detach must
 * leave kernel text byte-identical to what it was at attach (FNV-1a hash before/after).
 *
 * The engine's event loop (hvi_qemu_run + the protection timer) runs in its own thread while
 * the main thread types guest console commands: a vCPU stopped at an engine breakpoint or
 * watchpoint (IDT write hooks, the LSTAR agent) must be served while a command runs, or the
 * guest stays stopped and the command times out.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>
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

static const char *const g_mods[] = {"syscall_table", "text_patch", "idt_entry",
                                     "lstar",         "cr0_wp",     "cred_root",
                                     "hide_module",   "hide_process", "cred_swap",
                                     "unpack"};
#define NMODS (sizeof(g_mods) / sizeof(g_mods[0]))

/* Build the corpus and the support data (the YAML entries of cami/linux compiled with
 * hvi_cami_build; the Linux layer selects the entry by the guest's banner); NULL or the reason
 * to skip. */
static const char *prepare(char *adds[NMODS + 1], void **support, size_t *support_len)
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
    for (size_t i = 0; i < NMODS; i++) {
        adds[i] = malloc(512);
        if (!adds[i])
            return "out of memory";
        snprintf(adds[i], 512, "%s/attacks/hvi_%s.ko:/modules/hvi_%s.ko", HVI_BINARY_DIR,
                 g_mods[i], g_mods[i]);
    }
    adds[NMODS] = NULL;
    return NULL;
}

struct ctx {
    hvi_qemu_vm *vm;
    hvi_qemu *q;
    hvi_engine *e;
    struct seen seen;
    pthread_t th;
    atomic_bool stop;
    atomic_uint ticks;
    bool on;
    hvi_status failed;
};

/* The event loop thread: serve events, tick the protection timer every ~300 ms. */
static void *run_loop(void *p)
{
    struct ctx *c = p;
    while (!atomic_load(&c->stop)) {
        uint32_t ev = 0;
        hvi_status st = hvi_qemu_run(c->q, c->e, 300, 0, &ev);
        if (st != HVI_OK && st != HVI_E_TIMEOUT) {
            c->failed = st;
            break;
        }
        hvi_timer_tick(c->e);
        atomic_fetch_add(&c->ticks, 1);
    }
    return NULL;
}

static void runner_start(struct ctx *c)
{
    atomic_store(&c->stop, false);
    c->on = pthread_create(&c->th, NULL, run_loop, c) == 0;
    REQUIRE(c->on);
}

/* Engine calls from the main thread (memory reads, detach) happen with the loop stopped. */
static void runner_stop(struct ctx *c)
{
    if (!c->on)
        return;
    atomic_store(&c->stop, true);
    pthread_join(c->th, NULL);
    c->on = false;
    CHECK_EQ_U64(c->failed, HVI_OK);
}

static hvi_status sh(struct ctx *c, const char *cmd)
{
    char *out = NULL;
    hvi_status st = hvi_qemu_vm_console(c->vm, cmd, NULL, 60000, &out);
    if (st != HVI_OK)
        fprintf(stderr, "  console '%s': status %d\n", cmd, st);
    free(out);
    return st;
}

/* Wait until the loop thread has ticked `n` more times (bounded: 30 s). */
static void ticks(struct ctx *c, int n)
{
    unsigned target = atomic_load(&c->ticks) + (unsigned)n;
    for (int i = 0; i < 3000 && c->on && atomic_load(&c->ticks) < target; i++)
        usleep(10000);
}

static bool has_alert_detail(struct seen *s, uint32_t type, const char *object_prefix,
                             const char *detail)
{
    bool found = false;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n && !found; i++)
        found = s->a[i].type == type &&
                !strncmp(s->a[i].object, object_prefix, strlen(object_prefix)) &&
                (!detail || strstr(s->a[i].detail, detail));
    pthread_mutex_unlock(&s->mu);
    return found;
}

static uint8_t *g_text; /* kernel text at attach, to say where a difference is */
static bool g_text_done;
static uint64_t g_text_va, g_text_len;

static uint64_t text_hash(hvi_engine *e, bool *ok)
{
    uint64_t a = 0, b = 0, h = 1469598103934665603ull;
    uint8_t buf[4096];
    *ok = hvi_linux_find_symbol(e, "_stext", &a) == HVI_OK &&
          hvi_linux_find_symbol(e, "_etext", &b) == HVI_OK && b > a && b - a < (64u << 20);
    if (!*ok)
        fprintf(stderr, "  text range: %s\n", hvi_last_error(e));
    for (uint64_t p = a; *ok && p < b; p += sizeof(buf)) {
        size_t n = b - p < sizeof(buf) ? (size_t)(b - p) : sizeof(buf);
        if (hvi_gva_read(e, 0, p, buf, n) != HVI_OK) {
            fprintf(stderr, "  text read at 0x%llx: %s\n", (unsigned long long)p,
                    hvi_last_error(e));
            *ok = false;
            break;
        }
        for (size_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 1099511628211ull;
        if (!g_text && p == a && (g_text = malloc(b - a)) != NULL)
            g_text_va = a, g_text_len = b - a;
        if (g_text && g_text_va == a && g_text_len == b - a) {
            if (!g_text_done)
                memcpy(g_text + (p - a), buf, n);
            else
                for (size_t i = 0, shown = 0; i < n && shown < 4; i++)
                    if (g_text[p - a + i] != buf[i]) {
                        char sym[96] = "?";
                        uint64_t off = 0;
                        (void)hvi_linux_symbolize(e, p + i, sym, sizeof(sym), &off);
                        fprintf(stderr, "  text differs at %s+0x%llx: %02x -> %02x\n", sym,
                                (unsigned long long)off, g_text[p - a + i], buf[i]);
                        shown++;
                    }
        }
    }
    return h;
}

struct attack {
    const char *run;      /* guest shell command */
    uint32_t type;
    const char *object;   /* alert object prefix */
    const char *undo;     /* command after the check, or NULL */
    const char *writer;   /* module the alert must name as writer (write hooks), or NULL */
    int gate;             /* IDT vector whose gate must be unchanged afterwards, or -1 */
    const char *detail;   /* text the expected alert's detail must contain, or NULL */
};

static const struct attack g_attacks[] = {
    {"insmod /modules/hvi_text_patch.ko", HVI_ALERT_INTEGRITY, "kernel-text",
     "rmmod hvi_text_patch", NULL, -1, NULL},
    {"insmod /modules/hvi_syscall_table.ko", HVI_ALERT_INTEGRITY, "sys_call_table",
     "rmmod hvi_syscall_table", NULL, -1, NULL},
    /* an unused vector: caught by the timer check (writer unknown), restored */
    {"insmod /modules/hvi_idt_entry.ko", HVI_ALERT_INTEGRITY, "idt", "rmmod hvi_idt_entry",
     NULL, 0xee, NULL},
    /* int 0x80, one of the write-hooked gates: caught at the write with the writer's RIP,
     * module and process; never left in memory */
    {"insmod /modules/hvi_idt_entry.ko vec=0x80", HVI_ALERT_INTEGRITY, "idt",
     "rmmod hvi_idt_entry", "hvi_idt_entry", 0x80, NULL},
    {"insmod /modules/hvi_cr0_wp.ko", HVI_ALERT_CR, "cr0.wp", "rmmod hvi_cr0_wp", NULL, -1, NULL},
    /* read by the one-shot rdmsr agent every 4 ticks */
    {"insmod /modules/hvi_lstar.ko", HVI_ALERT_MSR, "lstar", "rmmod hvi_lstar", NULL, -1, NULL},
    /* code written into a vmalloc page whose PTE then loses NX: owner from the vm_struct */
    {"insmod /modules/hvi_unpack.ko", HVI_ALERT_UNPACK, "kernel-exec:vmalloc", "rmmod hvi_unpack",
     NULL, -1, "(hvi_unpack)"},
    /* module_alloc + set_memory_x through kallsyms: module area, allocated by a module */
    {"insmod /modules/hvi_unpack.ko mode=1", HVI_ALERT_UNPACK, "kernel-exec:module-area",
     "rmmod hvi_unpack", NULL, -1, "(hvi_unpack)"},
    {"echo 'u:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd; chmod 755 / /bin /tmp; "
     "(su -s /bin/sh u -c 'exec sleep 300' &); sleep 2",
     0, NULL, NULL, NULL, -1, NULL},
    {"insmod /modules/hvi_cred_root.ko pid=$(pidof sleep)", HVI_ALERT_CREDS, "cred", NULL, NULL, -1,
     "uid 1000->0"},
    /* capabilities raised in place (ids untouched): compared and restored too */
    {"insmod /modules/hvi_cred_swap.ko mode=1 pid=$(pidof sleep)", HVI_ALERT_CREDS, "cred",
     "rmmod hvi_cred_swap", NULL, -1, "cap_eff 0x0->0x1ffffffffff"},
    /* cred pointer swapped to init_cred outside commit_creds: flagged (logged) */
    {"insmod /modules/hvi_cred_swap.ko pid=$(pidof sleep)", HVI_ALERT_CREDS, "cred", NULL, NULL,
     -1, "init_cred"},
    {"sleep 400 & insmod /modules/hvi_hide_process.ko pid=$!", HVI_ALERT_HIDDEN_PROCESS,
     "task-list", NULL, NULL, -1, NULL},
    {"insmod /modules/hvi_hide_module.ko", HVI_ALERT_HIDDEN_MODULE, "module-list", NULL, NULL, -1, NULL},
};

static bool read_gate(hvi_engine *e, int vec, uint8_t out[16])
{
    uint64_t table = 0;
    return hvi_linux_find_symbol(e, "idt_table", &table) == HVI_OK &&
           hvi_gva_read(e, 0, table + 16ull * (uint64_t)vec, out, 16) == HVI_OK;
}

/* The alert of a write-hooked object names the writer: RIP in the attack module, insmod. */
static void check_writer(const struct seen *s, const struct attack *a)
{
    const hvi_alert *w = NULL;
    for (size_t i = 0; i < s->n && !w; i++)
        if (s->a[i].type == a->type && !strcmp(s->a[i].object, a->object) && s->a[i].rip)
            w = &s->a[i];
    CHECK(w != NULL);
    if (!w)
        return;
    CHECK(!strcmp(w->module, a->writer));
    CHECK(!strncmp(w->symbol, a->writer, strlen(a->writer)));
    CHECK(w->pid > 0);
    CHECK(!strcmp(w->comm, "insmod"));
    CHECK(w->action == HVI_ALERT_DENIED);
}

static void run_attacks(struct ctx *c)
{
    for (size_t i = 0; i < sizeof(g_attacks) / sizeof(g_attacks[0]); i++) {
        const struct attack *a = &g_attacks[i];
        uint8_t gate_before[16], gate_after[16];
        bool gate = a->object && !strcmp(a->object, "idt");
        runner_stop(c);
        if (gate)
            CHECK(read_gate(c->e, a->gate, gate_before));
        c->seen.n = 0;
        runner_start(c);
        CHECK_OK(sh(c, a->run));
        /* big regions are checked a slice per tick: allow one full round of them */
        for (int t = 0;
             t < 16 && !(a->object && has_alert_detail(&c->seen, a->type, a->object, a->detail));
             t++)
            ticks(c, 1);
        ticks(c, 1);
        runner_stop(c); /* the checks below read guest memory through the engine */
        if (a->object) {
            fprintf(stderr, "  attack '%s': %zu alert(s)\n", a->run, c->seen.n);
            CHECK(c->seen.n >= 1 && c->seen.a[0].type == a->type);
            CHECK(has_alert_detail(&c->seen, a->type, a->object, a->detail));
        }
        if (a->writer)
            check_writer(&c->seen, a);
        if (gate) { /* denied: not left in memory */
            CHECK(read_gate(c->e, a->gate, gate_after));
            CHECK(!memcmp(gate_before, gate_after, 16));
        }
        if (a->object && !strcmp(a->object, "kernel-text")) { /* denied: not left in memory */
            hvi_alert t;
            memset(&t, 0, sizeof(t));
            for (size_t k = 0; k < c->seen.n && !t.gva; k++)
                if (!strcmp(c->seen.a[k].object, "kernel-text"))
                    t = c->seen.a[k];
            uint64_t now = 0;
            uint32_t n = t.width < 8 ? t.width : 8;
            CHECK(t.gva && t.action == HVI_ALERT_DENIED && n);
            CHECK_OK(hvi_gva_read(c->e, 0, t.gva, &now, n));
            CHECK_EQ_U64(now, t.old_value);
        }
        runner_start(c);
        if (a->undo) {
            sh(c, a->undo);
            ticks(c, 2);
        }
    }
    runner_stop(c);
}

HVI_TEST(workload_clean_attacks_caught_detach_restores)
{
    const char *why = qt_missing();
    char *adds[NMODS + 1] = {0};
    void *support = NULL;
    size_t support_len = 0;
    if (why)
        SKIP_CASE(why);
    if ((why = prepare(adds, &support, &support_len)) != NULL)
        SKIP_CASE(why);
    struct ctx c;
    memset(&c, 0, sizeof(c));
    pthread_mutex_init(&c.seen.mu, NULL);
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
    g_text_done = true;
    CHECK(ok1);
    CHECK_OK(hvi_options_set(c.e, HVI_OPT_ALL_PROTECTION));
    uint64_t cr3_attach = hvi_mem_kernel_cr3(c.e), pgt = 0;
    CHECK_OK(hvi_linux_protect_start(c.e));
    /* protection runs on the kernel's own page-table root, not on whatever process vCPU 0
     * ran at attach (that root dies with the process) */
    hvi_gpa pgt_pa = 0;
    CHECK_OK(hvi_linux_find_symbol(c.e, "init_top_pgt", &pgt));
    CHECK_OK(hvi_gva_to_gpa(c.e, 0, pgt, &pgt_pa));
    fprintf(stderr, "  kernel CR3 at attach 0x%llx, after protect start 0x%llx (init_top_pgt)\n",
            (unsigned long long)cr3_attach, (unsigned long long)hvi_mem_kernel_cr3(c.e));
    CHECK_EQ_U64(hvi_mem_kernel_cr3(c.e), pgt_pa);
    hvi_linux_protect_stats ps;
    CHECK_OK(hvi_linux_protect_stats_get(c.e, &ps));
    fprintf(stderr, "  %u regions, %u IDT write hooks\n", ps.regions, ps.watches);
    CHECK(ps.watches >= 2); /* int 0x80 through the IDTR alias and idt_table */
    runner_start(&c); /* the gdbstub connection paused the guest: let it run */
    /* a normal workload: fork, exec, mmap, /proc walks */
    CHECK_OK(sh(&c, "for i in $(seq 30); do ls / > /dev/null; cat /proc/self/maps > /dev/null; done"));
    CHECK_OK(sh(&c, "sleep 1 & wait; uname -a > /dev/null; grep -c . /proc/kallsyms > /dev/null"));
    ticks(&c, 5);
    runner_stop(&c);
    CHECK_EQ_U64(c.seen.n, 0);
    run_attacks(&c);
    CHECK_OK(hvi_detach(c.e));
    uint64_t after = text_hash(c.e, &ok2);
    CHECK(ok2);
    CHECK_EQ_U64(after, before);
    hvi_engine_free(c.e);
    hvi_qemu_close(c.q);
    hvi_qemu_vm_stop(c.vm);
    for (size_t i = 0; i < NMODS + 1; i++)
        free(adds[i]);
    free(support);
    free(g_text);
}

HVI_TEST_MAIN()
