/*
 * e2e: boot the test guest (2 vCPUs) with the attack modules, attach, protect everything in
 * deny mode, run a normal workload (no alert allowed; a kprobe event armed and removed included),
 * then each attack (each must raise its
 * alert, with the expected type/object); the denied memory attacks must not be left in memory,
 * and the denied register/credential attacks are checked from inside the guest: CR0.WP set
 * again and LSTAR back at the original entry on every CPU (the attack modules' own readers,
 * the LSTAR trampoline's count no longer moving), the victim's /proc/PID/status uid back at
 * 1000. Then the same three attacks with HVI_OPT_LOG_ONLY: reported "logged" and left in place
 * (seen from inside the guest the same way). The guest must stay healthy (no Oops/BUG in dmesg).
 * Detach must leave kernel text byte-identical to what it was at attach (FNV-1a hash).
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
#include "../runner_util.h"
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
    struct e2e_runner r; /* the event loop (q, e copied in at start) */
    uint32_t nvcpu;
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

/* A guest shell command; its output in *out (caller frees) when out is not NULL. */
static hvi_status sh_out(struct ctx *c, const char *cmd, char **out)
{
    char *o = NULL;
    hvi_status st = hvi_qemu_vm_console(c->vm, cmd, NULL, 60000, &o);
    if (st != HVI_OK)
        fprintf(stderr, "  console '%s': status %d\n", cmd, st);
    if (out)
        *out = o;
    else
        free(o);
    return st;
}

static hvi_status sh(struct ctx *c, const char *cmd) { return sh_out(c, cmd, NULL); }

/* Wait until the loop thread has ticked `n` more times (bounded: 30 s). */
static void ticks(struct ctx *c, int n)
{
    unsigned target = atomic_load(&c->r.ticks) + (unsigned)n;
    for (int i = 0; i < 3000 && c->r.on && atomic_load(&c->r.ticks) < target; i++)
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

enum mode { DENY, LOG_ONLY };

struct attack {
    const char *run;      /* guest shell command */
    uint32_t type;
    const char *object;   /* alert object prefix */
    const char *undo;     /* command after the check, or NULL */
    const char *writer;   /* module the alert must name as writer (write hooks), or NULL */
    int gate;             /* IDT vector whose gate must be unchanged afterwards, or -1 */
    const char *detail;   /* text the expected alert's detail must contain, or NULL */
    enum mode mode;       /* LOG_ONLY: the step runs with HVI_OPT_LOG_ONLY */
    bool action;          /* an expected alert must have action DENIED / LOGGED (mode) */
    bool per_vcpu;        /* one such alert (with that action) for every vCPU */
    const char *verify;   /* guest command run after the alert (the guest's own view) */
    const char *expect;   /* text its output must contain */
    const char *reject;   /* text its output must not contain */
    int hits;             /* "hits N" counts in the output: 1 = must not move, 2 = must grow */
};

#define CR0_READ "for c in 0 1; do taskset -c $c cat /sys/module/hvi_cr0_wp/parameters/cr0; done"
#define LSTAR_READ                                                                               \
    "for c in 0 1; do taskset -c $c cat /sys/module/hvi_lstar/parameters/state; done"
#define LSTAR_VERIFY                                                                             \
    LSTAR_READ "; for i in $(seq 20); do ls /proc > /dev/null; done; " LSTAR_READ
#define VICTIM_UID "grep Uid: /proc/$(pidof sleep)/status"

/* Under TCG (HVI_CAP_WATCH_RANGE) kernel text, rodata (syscall tables), the whole IDT and module
 * text are write-hooked: those alerts name the writer (set in main); otherwise only the int 0x80
 * and #PF gates are. */
static bool g_range;

static const struct attack g_attacks[] = {
    {.run = "insmod /modules/hvi_text_patch.ko", .type = HVI_ALERT_INTEGRITY,
     .object = "kernel-text", .undo = "rmmod hvi_text_patch", .writer = "hvi_text_patch"},
    /* stays loaded for the next step; the guest's own view: getppid(2) is the kernel's again,
     * not the module's stub (which returns 0) */
    {.run = "insmod /modules/hvi_syscall_table.ko", .type = HVI_ALERT_INTEGRITY,
     .object = "sys_call_table", .writer = "hvi_syscall_table",
     .verify = "sh -c 'echo PPID=$PPID'", .expect = "PPID=", .reject = "PPID=0"},
    /* the text of a live module (hvi_syscall_table) patched by another module */
    {.run = "insmod /modules/hvi_text_patch.ko target=hvi_fake_syscall offset=1",
     .type = HVI_ALERT_INTEGRITY, .object = "module-text:hvi_syscall_table",
     .undo = "rmmod hvi_text_patch; rmmod hvi_syscall_table", .writer = "hvi_text_patch"},
    /* an unused vector: without range watchpoints caught by the timer check (writer unknown) */
    {.run = "insmod /modules/hvi_idt_entry.ko", .type = HVI_ALERT_INTEGRITY, .object = "idt",
     .undo = "rmmod hvi_idt_entry", .writer = "hvi_idt_entry", .gate = 0xee},
    /* int 0x80, one of the write-hooked gates: caught at the write with the writer's RIP,
     * module and process; never left in memory */
    {.run = "insmod /modules/hvi_idt_entry.ko vec=0x80", .type = HVI_ALERT_INTEGRITY,
     .object = "idt", .undo = "rmmod hvi_idt_entry", .writer = "hvi_idt_entry", .gate = 0x80},
    /* CR0.WP cleared on every CPU: set again on every vCPU; the guest's own CR0 reads say so */
    {.run = "insmod /modules/hvi_cr0_wp.ko", .type = HVI_ALERT_CR, .object = "cr0.wp",
     .undo = "rmmod hvi_cr0_wp", .action = true, .per_vcpu = true, .verify = CR0_READ,
     .expect = "wp set", .reject = "wp clear"},
    /* LSTAR read by the one-shot rdmsr agent every 4 ticks, one vCPU per run; written back
     * by the wrmsr agent: every CPU's LSTAR is the original again, and the trampoline's count
     * stays still while the guest makes system calls */
    {.run = "insmod /modules/hvi_lstar.ko", .type = HVI_ALERT_MSR, .object = "lstar",
     .undo = "rmmod hvi_lstar", .action = true, .per_vcpu = true, .verify = LSTAR_VERIFY,
     .expect = "original", .reject = "hooked", .hits = 1},
    /* SYSENTER_EIP (the 32-bit sysenter entry), read and written back by the same agent */
    {.run = "insmod /modules/hvi_lstar.ko sysenter=1", .type = HVI_ALERT_MSR,
     .object = "sysenter_eip", .undo = "rmmod hvi_lstar", .action = true, .per_vcpu = true,
     .verify = LSTAR_READ, .expect = "original", .reject = "hooked"},
    /* code written into a vmalloc page whose PTE then loses NX: owner from the vm_struct */
    {.run = "insmod /modules/hvi_unpack.ko", .type = HVI_ALERT_UNPACK,
     .object = "kernel-exec:vmalloc", .undo = "rmmod hvi_unpack", .detail = "(hvi_unpack)"},
    /* module_alloc + set_memory_x through kallsyms: module area, allocated by a module */
    {.run = "insmod /modules/hvi_unpack.ko mode=1", .type = HVI_ALERT_UNPACK,
     .object = "kernel-exec:module-area", .undo = "rmmod hvi_unpack", .detail = "(hvi_unpack)"},
    {.run = "echo 'u:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd; chmod 755 / /bin /tmp; "
            "(su -s /bin/sh u -c 'exec sleep 300' &); sleep 2"},
    /* ids written in place: written back, the guest sees uid 1000 again */
    {.run = "insmod /modules/hvi_cred_root.ko pid=$(pidof sleep)", .type = HVI_ALERT_CREDS,
     .object = "cred", .undo = "rmmod hvi_cred_root", .detail = "uid 1000->0", .action = true,
     .verify = VICTIM_UID, .expect = "Uid:\t1000\t1000\t1000\t1000"},
    /* capabilities raised in place (ids untouched): compared and restored too */
    {.run = "insmod /modules/hvi_cred_swap.ko mode=1 pid=$(pidof sleep)",
     .type = HVI_ALERT_CREDS, .object = "cred", .undo = "rmmod hvi_cred_swap",
     .detail = "cap_eff 0x0->0x1ffffffffff", .action = true,
     .verify = "grep CapEff: /proc/$(pidof sleep)/status", .expect = "0000000000000000"},
    /* cred pointer swapped to init_cred outside commit_creds: flagged (logged) */
    {.run = "insmod /modules/hvi_cred_swap.ko pid=$(pidof sleep)", .type = HVI_ALERT_CREDS,
     .object = "cred", .undo = "kill $(pidof sleep); sleep 1", .detail = "init_cred"},
    /* log-only mode: the same register and credential attacks are reported and left */
    {.run = "insmod /modules/hvi_cr0_wp.ko", .type = HVI_ALERT_CR, .object = "cr0.wp",
     .undo = "rmmod hvi_cr0_wp", .mode = LOG_ONLY, .action = true, .per_vcpu = true,
     .verify = CR0_READ, .expect = "wp clear", .reject = "wp set"},
    {.run = "insmod /modules/hvi_lstar.ko", .type = HVI_ALERT_MSR, .object = "lstar",
     .undo = "rmmod hvi_lstar", .mode = LOG_ONLY, .action = true, .per_vcpu = true,
     .verify = LSTAR_VERIFY, .expect = "hooked", .reject = "original", .hits = 2},
    {.run = "insmod /modules/hvi_lstar.ko sysenter=1", .type = HVI_ALERT_MSR,
     .object = "sysenter_eip", .undo = "rmmod hvi_lstar", .mode = LOG_ONLY, .action = true,
     .per_vcpu = true, .verify = LSTAR_READ, .expect = "hooked", .reject = "original"},
    {.run = "(su -s /bin/sh u -c 'exec sleep 300' &); sleep 2", .mode = LOG_ONLY},
    {.run = "insmod /modules/hvi_cred_root.ko pid=$(pidof sleep)", .type = HVI_ALERT_CREDS,
     .object = "cred", .undo = "rmmod hvi_cred_root; kill $(pidof sleep); sleep 1",
     .detail = "uid 1000->0", .mode = LOG_ONLY, .action = true, .verify = VICTIM_UID,
     .expect = "Uid:\t0\t0\t0\t0"},
    {.run = "sleep 400 & insmod /modules/hvi_hide_process.ko pid=$!",
     .type = HVI_ALERT_HIDDEN_PROCESS, .object = "task-list"},
    {.run = "insmod /modules/hvi_hide_module.ko", .type = HVI_ALERT_HIDDEN_MODULE,
     .object = "module-list"},
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

/* How many vCPUs have a matching alert of the step with `action`. (A CR bit met inside the
 * clearer's interrupts-off window is first reported "logged", then denied a tick later.) */
static uint32_t alert_vcpus(struct seen *s, const struct attack *a, uint32_t action)
{
    uint64_t mask = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n; i++)
        if (s->a[i].type == a->type && !strncmp(s->a[i].object, a->object, strlen(a->object)) &&
            (!a->detail || strstr(s->a[i].detail, a->detail)) && s->a[i].action == action &&
            s->a[i].vcpu < 64)
            mask |= 1ull << s->a[i].vcpu;
    pthread_mutex_unlock(&s->mu);
    return (uint32_t)__builtin_popcountll(mask);
}

/* Every "hits N" in out, in order (at most max); returns how many. */
static size_t parse_hits(const char *out, unsigned long *v, size_t max)
{
    size_t n = 0;
    for (const char *p = out; p && n < max && (p = strstr(p, "hits ")) != NULL; p += 5)
        v[n++] = strtoul(p + 5, NULL, 10);
    return n;
}

/* The guest's own view after the alert (runs with the engine loop going). */
static void verify_in_guest(struct ctx *c, const struct attack *a)
{
    char *out = NULL;
    CHECK_OK(sh_out(c, a->verify, &out));
    fprintf(stderr, "  guest says:\n%s", out ? out : "(nothing)\n");
    CHECK(out && strstr(out, a->expect));
    if (a->reject)
        CHECK(out && !strstr(out, a->reject));
    if (a->hits) {
        unsigned long h[8];
        size_t n = parse_hits(out, h, 8);
        CHECK(n >= 2);
        if (n >= 2 && a->hits == 1)
            CHECK_EQ_U64(h[n - 1], h[0]); /* no system call went through the trampoline */
        if (n >= 2 && a->hits == 2)
            CHECK(h[n - 1] > h[0]);
    }
    free(out);
}

static void run_attacks(struct ctx *c)
{
    for (size_t i = 0; i < sizeof(g_attacks) / sizeof(g_attacks[0]); i++) {
        struct attack cur = g_attacks[i];
        const struct attack *a = &cur;
        uint8_t gate_before[16], gate_after[16];
        bool gate = a->object && !strcmp(a->object, "idt");
        uint32_t action = a->mode == LOG_ONLY ? HVI_ALERT_LOGGED : HVI_ALERT_DENIED;
        runner_stop(c);
        CHECK_OK(hvi_options_set(c->e, HVI_OPT_ALL_PROTECTION |
                                           (a->mode == LOG_ONLY ? HVI_OPT_LOG_ONLY : 0)));
        if (gate)
            CHECK(read_gate(c->e, a->gate, gate_before));
        c->seen.n = 0;
        runner_start(c);
        CHECK_OK(sh(c, a->run));
        /* big regions are checked a slice per tick: allow one full round of them; the LSTAR
         * agent runs every 4 ticks on one vCPU at a time */
        for (int t = 0; t < (a->per_vcpu ? 60 : 16) && a->object &&
                        !(a->per_vcpu ? alert_vcpus(&c->seen, a, action) >= c->nvcpu
                                      : has_alert_detail(&c->seen, a->type, a->object, a->detail));
             t++)
            ticks(c, 1);
        ticks(c, 1);
        if (a->verify)
            verify_in_guest(c, a);
        runner_stop(c); /* the checks below read guest memory through the engine */
        if (a->object) {
            fprintf(stderr, "  attack '%s'%s: %zu alert(s)\n", a->run,
                    a->mode == LOG_ONLY ? " (log only)" : "", c->seen.n);
            CHECK(c->seen.n >= 1 && c->seen.a[0].type == a->type);
            CHECK(has_alert_detail(&c->seen, a->type, a->object, a->detail));
            uint32_t nv = alert_vcpus(&c->seen, a, action);
            if (a->per_vcpu)
                CHECK_EQ_U64(nv, c->nvcpu);
            if (a->action)
                CHECK(nv >= 1);
        }
        bool module_text = a->object && !strncmp(a->object, "module-text:", 12);
        if (module_text && !g_range) /* timer check: writer unknown */
            cur.writer = NULL;
        if (a->writer && (g_range || a->gate == 0x80))
            check_writer(&c->seen, a);
        if (gate) { /* denied: not left in memory */
            CHECK(read_gate(c->e, a->gate, gate_after));
            CHECK(!memcmp(gate_before, gate_after, 16));
        }
        if (a->object && (!strcmp(a->object, "kernel-text") || module_text)) {
            /* denied: not left in memory */
            hvi_alert t;
            memset(&t, 0, sizeof(t));
            for (size_t k = 0; k < c->seen.n && !t.gva; k++)
                if (!strcmp(c->seen.a[k].object, a->object))
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
    hvi_qemu_vm_opts o = {.add = (const char *const *)adds, .smp = 2, .boot_timeout_ms = 180000};
    hvi_status st = hvi_qemu_vm_start(&o, &c.vm);
    if (st != HVI_OK)
        fprintf(stderr, "  boot: %s\n", hvi_qemu_vm_last_error());
    REQUIRE(st == HVI_OK);
    hvi_glue g;
    REQUIRE(hvi_qemu_open(c.vm, &c.q) == HVI_OK && hvi_qemu_glue(c.q, &g) == HVI_OK);
    REQUIRE(hvi_engine_new(&g, &c.e) == HVI_OK);
    REQUIRE(g.vcpu_count(g.ctx, &c.nvcpu) == HVI_OK && c.nvcpu == 2);
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
    g_range = (g.caps & HVI_CAP_WATCH_RANGE) != 0;
    fprintf(stderr, "  %u regions, %u write hooks (%s)\n", ps.regions, ps.watches,
            g_range ? "whole regions: TCG range watchpoints" : "IDT gates");
    /* under TCG the gdbstub's watchpoints are software ones: any length, many */
    CHECK(g_range == !strcmp(hvi_qemu_vm_accel(c.vm), "tcg"));
    /* text, rodata, idt_table + the IDTR alias (the syscall tables and the vDSO lie in rodata);
     * else int 0x80 through the IDTR alias and idt_table */
    CHECK(ps.watches >= (g_range ? 4u : 2u));
    runner_start(&c); /* the gdbstub connection paused the guest: let it run */
    /* a normal workload: fork, exec, mmap, /proc walks */
    CHECK_OK(sh(&c, "for i in $(seq 30); do ls / > /dev/null; cat /proc/self/maps > /dev/null; done"));
    CHECK_OK(sh(&c, "sleep 1 & wait; uname -a > /dev/null; grep -c . /proc/kallsyms > /dev/null"));
    /* the kernel's own code patching is no alert: a kprobe event on a function's fentry site
     * (ftrace turns its NOP5 into a call to a trampoline it allocates in the module area), held
     * for more than a full round of the text check, then removed */
    char *kp = NULL;
    CHECK_OK(sh_out(&c, "mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; cd "
                        "/sys/kernel/tracing && echo 'p:hvi_kp kallsyms_lookup_name' >> "
                        "kprobe_events && echo 1 > events/kprobes/hvi_kp/enable && grep "
                        "kallsyms_lookup_name enabled_functions; cd /",
                    &kp));
    fprintf(stderr, "  kprobe armed: %s", kp ? kp : "(nothing)\n");
    CHECK(kp && strstr(kp, "kallsyms_lookup_name"));
    free(kp);
    ticks(&c, 16);
    CHECK_OK(sh(&c, "cd /sys/kernel/tracing && echo 0 > events/kprobes/hvi_kp/enable && echo "
                    "'-:hvi_kp' >> kprobe_events; cd /"));
    ticks(&c, 16);
    runner_stop(&c);
    CHECK_EQ_U64(c.seen.n, 0);
    /* nothing legitimate writes the hooked ranges through their own linear addresses: the
     * kernel patches code through text_poke's temporary mapping, so a clean workload does not
     * even stop the vCPU on a region hook */
    CHECK_OK(hvi_linux_protect_stats_get(c.e, &ps));
    fprintf(stderr, "  clean workload: %llu stops on the region write hooks\n",
            (unsigned long long)ps.hook_stops);
    CHECK_EQ_U64(ps.hook_stops, 0);
    run_attacks(&c);
    /* the guest is healthy after every attack and every denial: it answers, makes system
     * calls, and its kernel log has no oops */
    runner_start(&c);
    char *out = NULL;
    /* the kernel's own markers, case-sensitive ("loops_per_jiffy" is no oops) */
    CHECK_OK(sh_out(&c, "ls / > /dev/null && echo ALIVE; dmesg | grep -E -A12 'Oops:|BUG:|"
                        "general protection fault|Kernel panic'; echo OOPS-LINES $(dmesg | grep -cE "
                        "'Oops:|BUG:|general protection fault|Kernel panic')", &out));
    fprintf(stderr, "  health:\n%s", out ? out : "(nothing)\n");
    CHECK(out && strstr(out, "ALIVE") && strstr(out, "OOPS-LINES 0\n"));
    free(out);
    runner_stop(&c);
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
