/*
 * e2e: the Linux view on a QEMU memory dump equals the live view. Boots the Debian guest (KASLR
 * on, crc7 and crc8 loaded), attaches through the QEMU backend while the gdbstub holds the
 * guest paused and takes the process (with threads), module and pid-1 VMA lists; closes the
 * session, dumps the guest with QMP dump-guest-memory, checks the guest runs again, opens the
 * dump with the dump backend (registers and IDT from the notes, discovery from scratch) and
 * compares: same kernel, same modules (name, base, size), same processes (pid, tgid, ppid,
 * uid, task address, comm, exe, cmdline) apart from kernel workers that may come and go in the
 * second between the two snapshots, same VMAs of pid 1. Also `hvi ps --dump` from the CLI.
 * Before all this two attack modules of tests/e2e/attacks hide a `sleep` from the task list and
 * themselves from the modules list; the second case finds both in the dump with the
 * cross-view checks (hvi_linux_protect_start with HVI_OPT_INTEGRITY only: nothing written).
 */
#define _GNU_SOURCE
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../qemu/qemu_util.h"
#include "../support_util.h"
#include "hvi/alert.h"
#include "hvi/linux.h"
#include "hvi/linux_protect.h"
#include "hvi_dump.h"
#include "hvi_qemu.h"
#include "hvi_qemu_dump.h"

struct view {
    hvi_linux_info info;
    hvi_linux_process *p;
    size_t np;
    hvi_linux_module *m;
    size_t nm;
    hvi_linux_vma *v;
    size_t nv;
    hvi_regs regs; /* vCPU 0: CR and DTR */
    double attach_ms;
};

static void *g_support;
static size_t g_support_len;

/* Shared by the two cases: the guest and its dump stay for the second one. */
static hvi_qemu_vm *g_vm;
static char g_dump[512];
static bool g_dumped;
static const char *g_no_attacks; /* why the attack modules are not there, or NULL */
static int g_hidden_pid = -1;

static void cleanup(void)
{
    if (g_dump[0])
        unlink(g_dump);
    hvi_qemu_vm_stop(g_vm);
    g_vm = NULL;
    free(g_support);
    g_support = NULL;
}

/* The attack modules (tests/e2e/attacks/build.sh into the build tree); NULL or why not. */
static const char *build_attacks(void)
{
    static char why[1200];
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s/tests/e2e/attacks/build.sh' '%s/attacks' >/dev/null",
             HVI_SOURCE_DIR, HVI_BINARY_DIR);
    int rc = system(cmd);
    if (rc == 0)
        return NULL;
    snprintf(why, sizeof(why), "attack modules do not build (%s: status %d)", cmd, rc);
    return why;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Attach an engine over `g` and take the whole view. */
static hvi_status take_view(const hvi_glue *g, struct view *out)
{
    hvi_engine *e = NULL;
    memset(out, 0, sizeof(*out));
    hvi_status st = g->get_regs(g->ctx, 0, HVI_REGS_CR | HVI_REGS_DTR, &out->regs);
    if (st == HVI_OK)
        st = hvi_engine_new(g, &e);
    if (st != HVI_OK)
        return st;
    double t0 = now_ms();
    hvi_guest_params gp = {.size = sizeof(gp),
                           .os_hint = HVI_OS_LINUX,
                           .support = g_support,
                           .support_len = g_support_len};
    st = hvi_new_guest(e, &gp);
    out->attach_ms = now_ms() - t0;
    if (st == HVI_OK)
        st = hvi_linux_get_info(e, &out->info);
    if (st == HVI_OK)
        st = hvi_linux_list_processes(e, true, &out->p, &out->np);
    if (st == HVI_OK)
        st = hvi_linux_list_modules(e, &out->m, &out->nm);
    if (st == HVI_OK)
        st = hvi_linux_list_vmas(e, 1, &out->v, &out->nv);
    if (st != HVI_OK)
        fprintf(stderr, "  %s view: %s\n", g->name, hvi_last_error(e));
    hvi_engine_free(e);
    return st;
}

static void free_view(struct view *v)
{
    hvi_linux_free(v->p);
    hvi_linux_free(v->m);
    hvi_linux_free(v->v);
}

/* Kernel workers are created and retired by the kernel on its own. */
static bool transient(const hvi_linux_process *p)
{
    return p->kernel_thread && !strncmp(p->comm, "kworker/", 8);
}

static const hvi_linux_process *find_pid(const struct view *v, int32_t pid)
{
    for (size_t i = 0; i < v->np; i++)
        if (v->p[i].pid == pid)
            return &v->p[i];
    return NULL;
}

static size_t compare_processes(const struct view *live, const struct view *dump)
{
    size_t same = 0;
    for (int pass = 0; pass < 2; pass++) {
        const struct view *a = pass ? dump : live, *b = pass ? live : dump;
        for (size_t i = 0; i < a->np; i++) {
            const hvi_linux_process *x = &a->p[i], *y = find_pid(b, x->pid);
            if (transient(x))
                continue;
            if (!y) {
                fprintf(stderr, "  pid %d %s only in the %s view\n", x->pid, x->comm,
                        pass ? "dump" : "live");
                CHECK(!"a stable process is missing from one view");
                continue;
            }
            bool eq = x->tgid == y->tgid && x->ppid == y->ppid && x->uid == y->uid &&
                      x->euid == y->euid && x->task == y->task && !strcmp(x->comm, y->comm) &&
                      !strcmp(x->exe, y->exe) && !strcmp(x->cmdline, y->cmdline) &&
                      x->kernel_thread == y->kernel_thread;
            if (!eq)
                fprintf(stderr, "  pid %d differs: live %s/%s dump %s/%s\n", x->pid, x->comm,
                        x->exe, y->comm, y->exe);
            CHECK(eq);
            same += eq && !pass;
        }
    }
    return same;
}

static void compare_modules(const struct view *live, const struct view *dump)
{
    CHECK(live->nm == dump->nm && live->nm >= 2);
    for (size_t i = 0; i < live->nm && i < dump->nm; i++) {
        CHECK_STR(live->m[i].name, dump->m[i].name);
        CHECK_EQ_U64(live->m[i].base, dump->m[i].base);
        CHECK_EQ_U64(live->m[i].size, dump->m[i].size);
        CHECK_EQ_U64(live->m[i].module, dump->m[i].module);
    }
    bool crc7 = false, crc8 = false;
    for (size_t i = 0; i < dump->nm; i++) {
        crc7 |= !strcmp(dump->m[i].name, "crc7");
        crc8 |= !strcmp(dump->m[i].name, "crc8");
    }
    CHECK(crc7 && crc8);
}

static void compare_vmas(const struct view *live, const struct view *dump)
{
    CHECK(live->nv == dump->nv && live->nv > 3);
    for (size_t i = 0; i < live->nv && i < dump->nv; i++) {
        CHECK_EQ_U64(live->v[i].start, dump->v[i].start);
        CHECK_EQ_U64(live->v[i].end, dump->v[i].end);
        CHECK_EQ_U64(live->v[i].flags, dump->v[i].flags);
        CHECK_STR(live->v[i].path, dump->v[i].path);
    }
}

/* `hvi ps --dump FILE --cami SUPPORT` from the CLI lists pid 1 and a module-less kernel view. */
static void cli_ps(const char *dump)
{
    char sup[128], out[128], cmd[1024];
    snprintf(sup, sizeof(sup), "/tmp/hvi-e2e-dump-sup-%d.bin", (int)getpid());
    snprintf(out, sizeof(out), "/tmp/hvi-e2e-dump-ps-%d.txt", (int)getpid());
    FILE *f = fopen(sup, "wb");
    REQUIRE(f);
    CHECK(fwrite(g_support, 1, g_support_len, f) == g_support_len);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "'%s/tools/hvi/hvi' ps --dump '%s' --cami '%s' > '%s'",
             HVI_BINARY_DIR, dump, sup, out);
    CHECK(system(cmd) == 0);
    char *text = NULL;
    size_t len = 0;
    FILE *o = fopen(out, "r");
    if (o) {
        text = calloc(1, 1 << 16);
        len = text ? fread(text, 1, (1 << 16) - 1, o) : 0;
        fclose(o);
    }
    CHECK(text && len > 0 && strstr(text, "kernel: Linux 6.1.") && strstr(text, " init "));
    free(text);
    unlink(sup);
    unlink(out);
}

HVI_TEST(dump_view_equals_live_view)
{
    const char *why = qt_missing();
    if (why)
        SKIP_CASE(why);
    const char *serr = hvi_test_support_bin(&g_support, &g_support_len);
    if (serr) {
        fprintf(stderr, "  %s\n", serr);
        REQUIRE(!"building the CAMI support data for the installed kernel failed");
    }
    glob_t gl;
    if (glob("/lib/modules/*-amd64/kernel/lib/crc7.ko", 0, NULL, &gl) != 0 || gl.gl_pathc == 0)
        SKIP_CASE("no /lib/modules/*-amd64/kernel/lib/crc7.ko to load in the guest");
    char dir[400], add[4][512];
    snprintf(dir, sizeof(dir), "%s", gl.gl_pathv[gl.gl_pathc - 1]);
    globfree(&gl);
    dir[strlen(dir) - strlen("/crc7.ko")] = 0;
    snprintf(add[0], sizeof(add[0]), "%s/crc7.ko:/modules/crc7.ko", dir);
    snprintf(add[1], sizeof(add[1]), "%s/crc8.ko:/modules/crc8.ko", dir);
    g_no_attacks = build_attacks();
    for (int i = 0; i < 2; i++)
        snprintf(add[2 + i], sizeof(add[2 + i]),
                 "%s/attacks/hvi_hide_%s.ko:/modules/hvi_hide_%s.ko", HVI_BINARY_DIR,
                 i ? "module" : "process", i ? "module" : "process");
    /* without attack modules the list ends after crc7 and crc8 */
    const char *adds[] = {add[0], add[1], g_no_attacks ? NULL : add[2], add[3], NULL};
    hvi_qemu_vm_opts o = {.add = adds, .insmod = "crc7,crc8", .boot_timeout_ms = 120000};
    atexit(cleanup);
    double t0 = now_ms();
    hvi_status st = hvi_qemu_vm_start(&o, &g_vm);
    if (st != HVI_OK)
        fprintf(stderr, "  boot: %s\n", hvi_qemu_vm_last_error());
    REQUIRE(st == HVI_OK);
    hvi_qemu_vm *vm = g_vm;
    fprintf(stderr, "  booted in %.0f ms\n", now_ms() - t0);
    char *path = g_dump;
    snprintf(g_dump, sizeof(g_dump), "%s/guest.elf", hvi_qemu_vm_dir(vm));
    if (!g_no_attacks) { /* hide a sleep from the task list, the module from the modules list */
        char *out = NULL;
        CHECK_OK(hvi_qemu_vm_console(vm,
                                     "sleep 400 & echo HIDE-PID $!; insmod "
                                     "/modules/hvi_hide_process.ko pid=$!; insmod "
                                     "/modules/hvi_hide_module.ko; echo HIDE-RC $?",
                                     NULL, 30000, &out));
        const char *p = out ? strstr(out, "HIDE-PID ") : NULL;
        if (p)
            g_hidden_pid = atoi(p + 9);
        CHECK(g_hidden_pid > 1 && out && strstr(out, "HIDE-RC 0"));
        free(out);
    }

    /* 1. live, paused by the gdbstub for the whole attach */
    struct view live, dump;
    memset(&live, 0, sizeof(live));
    memset(&dump, 0, sizeof(dump));
    hvi_qemu *q = NULL;
    hvi_glue g;
    st = hvi_qemu_open(vm, &q);
    if (st == HVI_OK)
        st = hvi_qemu_glue(q, &g);
    if (st == HVI_OK)
        st = take_view(&g, &live);
    CHECK_OK(st);
    if (st == HVI_OK) { /* the session holds QMP: the dump says so instead of hanging */
        double b0 = now_ms();
        CHECK_STATUS(hvi_qemu_vm_dump(vm, path, 0), HVI_E_BUSY);
        CHECK(now_ms() - b0 < 15000 && strstr(hvi_qemu_vm_dump_error(), "no greeting"));
    }
    hvi_qemu_close(q); /* the guest runs again */

    /* 2. the dump, then the guest must be running again: its console answers */
    double d0 = now_ms();
    hvi_status dst = hvi_qemu_vm_dump(vm, path, 0);
    g_dumped = dst == HVI_OK;
    double dump_ms = now_ms() - d0;
    if (dst != HVI_OK)
        fprintf(stderr, "  dump: %s\n", hvi_qemu_vm_dump_error());
    CHECK_OK(dst);
    char *out = NULL;
    CHECK_OK(hvi_qemu_vm_console(vm, "echo alive-after-dump", NULL, 30000, &out));
    CHECK(out && strstr(out, "alive-after-dump"));
    free(out);

    /* 3. the dump backend */
    hvi_dump *d = NULL;
    if (st == HVI_OK && dst == HVI_OK) {
        CHECK_OK(hvi_dump_open(path, &d));
        hvi_dump_info info;
        hvi_glue dg;
        if (d && hvi_dump_get_info(d, &info) == HVI_OK && hvi_dump_glue(d, &dg) == HVI_OK) {
            fprintf(stderr, "  dump: %llu MiB in %u ranges, %u vCPU, %u QEMU note, %.0f ms\n",
                    (unsigned long long)(info.mem_bytes >> 20), info.segments, info.vcpus,
                    info.qemu_notes, dump_ms);
            CHECK(info.vcpus == 1 && info.qemu_notes == 1);
            CHECK(info.mem_bytes >= (500ull << 20));
            CHECK_OK(take_view(&dg, &dump));
            /* registers from the notes: same IDT and paging mode as the live vCPU */
            CHECK_EQ_U64(dump.regs.idtr_base, live.regs.idtr_base);
            CHECK_EQ_U64(dump.regs.idtr_limit, live.regs.idtr_limit);
            CHECK_EQ_U64(dump.regs.gdtr_base, live.regs.gdtr_base);
            CHECK_EQ_U64(dump.regs.cr4, live.regs.cr4);
            CHECK_EQ_U64(dump.regs.cr0, live.regs.cr0);
            CHECK_STR(dump.info.release, live.info.release);
            CHECK_EQ_U64(dump.info.image_start, live.info.image_start);
            CHECK_EQ_U64(dump.info.symbols, live.info.symbols);
            size_t same = compare_processes(&live, &dump);
            fprintf(stderr, "  processes: live %zu, dump %zu, %zu stable ones identical\n", live.np,
                    dump.np, same);
            CHECK(same > 20);
            compare_modules(&live, &dump);
            compare_vmas(&live, &dump);
            fprintf(stderr,
                    "  modules %zu/%zu, pid 1 VMAs %zu/%zu; attach live %.1f ms, dump "
                    "%.1f ms\n",
                    live.nm, dump.nm, live.nv, dump.nv, live.attach_ms, dump.attach_ms);
        }
        hvi_dump_close(d);
        cli_ps(path);
    }
    free_view(&live);
    free_view(&dump);
}

struct hidden {
    int processes, modules, pid;
    bool module_named;
};

static void on_alert(const hvi_alert *a, void *user)
{
    struct hidden *h = user;
    if (a->type == HVI_ALERT_HIDDEN_PROCESS) {
        h->processes++;
        h->pid = a->pid;
    } else if (a->type == HVI_ALERT_HIDDEN_MODULE) {
        h->modules++;
        h->module_named |= !strcmp(a->module, "hvi_hide_module");
    }
}

/* Runs after the first case, on its dump. */
HVI_TEST(hidden_process_and_module_found_in_dump)
{
    if (!g_vm)
        SKIP_CASE("no guest: the first case did not boot one (see its message)");
    if (g_no_attacks)
        SKIP_CASE(g_no_attacks);
    REQUIRE(g_dumped);
    hvi_dump *d = NULL;
    hvi_glue g;
    hvi_engine *e = NULL;
    REQUIRE(hvi_dump_open(g_dump, &d) == HVI_OK && hvi_dump_glue(d, &g) == HVI_OK);
    struct hidden h = {0};
    hvi_guest_params gp = {.size = sizeof(gp),
                           .os_hint = HVI_OS_LINUX,
                           .support = g_support,
                           .support_len = g_support_len};
    if (hvi_engine_new(&g, &e) == HVI_OK && hvi_new_guest(e, &gp) == HVI_OK) {
        hvi_set_alert_callback(e, on_alert, &h);
        CHECK_OK(hvi_options_set(e, HVI_OPT_INTEGRITY));
        CHECK_OK(hvi_linux_protect_start(e));
        CHECK_OK(hvi_timer_tick(e));
        CHECK_OK(hvi_timer_tick(e)); /* a second round reports nothing new */
    } else {
        CHECK(!"attach to the dump");
    }
    fprintf(stderr, "  hidden in the dump: %d process(es) (pid %d, sleep was %d), %d module(s)\n",
            h.processes, h.pid, g_hidden_pid, h.modules);
    CHECK(h.processes == 1 && h.pid == g_hidden_pid);
    CHECK(h.modules == 1 && h.module_named);
    hvi_engine_free(e);
    hvi_dump_close(d);
    cleanup();
}

HVI_TEST_MAIN()
