/*
 * e2e: boot the Debian 6.1 guest with KASLR on and two modules loaded, print the guest's own
 * /proc views on its console, then attach hvi (discovery from the IDT, kallsyms from memory)
 * and compare: the same pids and names, the same module list and sizes, the same VMA ranges
 * and files for pid 1. Offsets come from the CAMI entry built from cami/linux (or generated from
 * the installed kernel's BTF when cami/linux has none for it: scripts/support-bin).
 */
#define _GNU_SOURCE
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../qemu/qemu_util.h"
#include "../proc_compare.h"
#include "../support_util.h"
#include "guest/linux/lix.h"
#include "hvi/cami.h"
#include "hvi/linux.h"
#include "hvi_qemu.h"

/* Support data for the installed kernel (scripts/support-bin). */
static void *g_support;
static size_t g_support_len;

static const char *need_support(void)
{
    if (g_support)
        return NULL;
    return hvi_test_support_bin(&g_support, &g_support_len);
}

static char *console_block(hvi_qemu_vm *vm, const char *cmd, const char *block)
{
    char *out = NULL;
    if (hvi_qemu_vm_console(vm, cmd, NULL, 60000, &out) != HVI_OK)
        return NULL;
    char *b = hvi_qemu_block(out, block);
    free(out);
    return b;
}

/* Commands of the console helper itself: alive while /proc was listed, gone when hvi looks. */
/* task->comm holds 15 characters; /proc/PID/comm shows a kernel thread's full name. */
static bool proc_has(const char *list, int pid, const char *comm)
{
    char *copy = strdup(list), *save = NULL;
    bool found = false;
    for (char *l = strtok_r(copy, "\n", &save); l && !found; l = strtok_r(NULL, "\n", &save)) {
        int p = 0;
        char c[80] = "";
        found = sscanf(l, "%d %79[^\n]", &p, c) == 2 && p == pid && comm_eq(comm, c);
    }
    free(copy);
    return found;
}

static void compare_ps(hvi_engine *e, const char *proc)
{
    hvi_linux_process *p = NULL;
    size_t n = 0;
    CHECK_OK(hvi_linux_list_processes(e, false, &p, &n));
    REQUIRE(p && n > 10);
    size_t matched = 0;
    for (size_t i = 0; i < n; i++) {
        if (proc_has(proc, p[i].pid, p[i].comm))
            matched++;
        else if (!transient(p[i].comm))
            fprintf(stderr, "  hvi sees pid %d %s, /proc did not\n", p[i].pid, p[i].comm);
        CHECK(proc_has(proc, p[i].pid, p[i].comm) || transient(p[i].comm));
    }
    /* every /proc entry (minus the console helper's own processes) is in hvi's list */
    char *copy = strdup(proc), *save = NULL;
    size_t proc_n = 0;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int pid = 0;
        char comm[32] = "";
        if (sscanf(l, "%d %31[^\n]", &pid, comm) != 2 || transient(comm))
            continue;
        proc_n++;
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = p[i].pid == pid && comm_eq(p[i].comm, comm);
        if (!found)
            fprintf(stderr, "  /proc has pid %d %s, hvi did not\n", pid, comm);
        CHECK(found);
    }
    fprintf(stderr, "  ps: hvi %zu processes, /proc %zu (non-transient), %zu matched\n", n, proc_n,
            matched);
    bool init_ok = false;
    for (size_t i = 0; i < n; i++)
        if (p[i].pid == 1)
            init_ok = !strcmp(p[i].exe, "/bin/busybox") && p[i].ppid == 0 && p[i].uid == 0;
    CHECK(init_ok);
    free(copy);
    hvi_linux_free(p);
}

static void compare_modules(hvi_engine *e, const char *proc)
{
    hvi_linux_module *m = NULL;
    size_t n = 0;
    CHECK_OK(hvi_linux_list_modules(e, &m, &n));
    size_t lines = 0;
    char *copy = strdup(proc), *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char name[64];
        unsigned size = 0;
        unsigned long long addr = 0;
        if (sscanf(l, "%63s %u %*s %*s %*s %llx", name, &size, &addr) < 2)
            continue;
        lines++;
        bool found = false;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(m[i].name, name))
                continue;
            found = true;
            CHECK_EQ_U64(m[i].size, size);
            if (addr)
                CHECK_EQ_U64(m[i].base, addr);
        }
        if (!found)
            fprintf(stderr, "  /proc/modules has %s, hvi did not\n", name);
        CHECK(found);
    }
    fprintf(stderr, "  modules: hvi %zu, /proc/modules %zu\n", n, lines);
    CHECK(lines == n && n >= 2);
    free(copy);
    hvi_linux_free(m);
}

static void compare_maps(hvi_engine *e, const char *proc)
{
    hvi_linux_vma *v = NULL;
    size_t n = 0;
    CHECK_OK(hvi_linux_list_vmas(e, 1, &v, &n));
    char *copy = strdup(proc), *save = NULL;
    size_t i = 0;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save), i++) {
        unsigned long long s = 0, en = 0;
        char perm[8] = "", path[256] = "";
        if (sscanf(l, "%llx-%llx %7s %*s %*s %*s %255s", &s, &en, perm, path) < 3)
            continue;
        REQUIRE(i < n);
        CHECK_EQ_U64(v[i].start, s);
        CHECK_EQ_U64(v[i].end, en);
        CHECK((perm[0] == 'r') == !!(v[i].flags & 1) && (perm[1] == 'w') == !!(v[i].flags & 2) &&
              (perm[2] == 'x') == !!(v[i].flags & 4));
        if (path[0] == '/')
            CHECK_STR(v[i].path, path);
    }
    fprintf(stderr, "  maps of pid 1: hvi %zu VMAs, /proc %zu\n", n, i);
    CHECK(i == n && n > 3);
    free(copy);
    hvi_linux_free(v);
}

/* Sleeping tasks return into __schedule: changing its code is not thread safe. */
static void check_thread_safeness(hvi_engine *e)
{
    uint64_t start = 0, end = 0;
    struct lix_kernel *k = lix_get(e);
    const struct lix_sym *syms = NULL;
    const char *names = NULL;
    REQUIRE(k && hvi_linux_find_symbol(e, "__schedule", &start) == HVI_OK);
    REQUIRE(lix_kallsyms_table(&k->ks, &syms, &names) == HVI_OK);
    for (uint32_t i = 0; i + 1 < k->ks.count && !end; i++)
        if (syms[i].addr == start)
            for (uint32_t j = i + 1; j < k->ks.count && !end; j++)
                if (syms[j].addr > start)
                    end = syms[j].addr;
    REQUIRE(end > start && end - start < 0x10000);
    struct lix_thrsafe_hit hit;
    CHECK_STATUS(lix_thread_safe(e, start, end, &hit), HVI_E_BUSY);
    fprintf(stderr, "  thread safeness of __schedule [0x%llx, 0x%llx): busy (%s %d %s)\n",
            (unsigned long long)start, (unsigned long long)end, hit.on_cpu ? "vCPU" : "pid",
            hit.on_cpu ? (int)hit.vcpu : hit.pid, hit.comm);
}

/* The lazy kallsyms of the real kernel: attaching and `ps` decode no name table; a lookup
 * through kallsyms_seqs_of_names answers as the decoded table does (the lowest index of a name). */
static void check_lazy_symbols(hvi_engine *e, bool after_ps)
{
    struct lix_kernel *k = lix_get(e);
    REQUIRE(k);
    if (after_ps) {
        CHECK(!lix_kallsyms_decoded(&k->ks));
        CHECK(k->ks.seqs_va != 0); /* Debian's 6.1 has kallsyms_seqs_of_names */
        return;
    }
    const struct lix_sym *syms = NULL;
    const char *names = NULL;
    REQUIRE(lix_kallsyms_table(&k->ks, &syms, &names) == HVI_OK);
    uint32_t checked = 0, step = k->ks.count / 150 + 1;
    for (uint32_t i = 0; i < k->ks.count; i += step) {
        const char *n = names + syms[i].name;
        uint32_t first = 0;
        while (strcmp(names + syms[first].name, n) != 0)
            first++;
        uint64_t a = 0;
        CHECK_OK(lix_kallsyms_lookup(&k->ks, n, &a));
        CHECK_EQ_U64(a, syms[first].addr);
        checked++;
    }
    uint64_t a = 0;
    CHECK_STATUS(lix_kallsyms_lookup(&k->ks, "no_such_symbol_hvi", &a), HVI_E_NOT_FOUND);
    fprintf(stderr, "  kallsyms: %u names looked up through seqs_of_names = decoded table\n",
            checked);
}

static void run_view(bool cpu_max, uint32_t smp)
{
    const char *why = qt_missing();
    const char *serr = why ? NULL : need_support();
    if (serr) {
        fprintf(stderr, "  %s\n", serr);
        REQUIRE(!"building the CAMI support data for the installed kernel failed");
    }
    if (why)
        SKIP_CASE(why);
    char add0[512], add1[512];
    glob_t gl;
    if (glob("/lib/modules/*-amd64/kernel/lib/crc7.ko", 0, NULL, &gl) != 0 || gl.gl_pathc == 0)
        SKIP_CASE("no /lib/modules/*-amd64/kernel/lib/crc7.ko to load in the guest");
    char dir[400];
    snprintf(dir, sizeof(dir), "%s", gl.gl_pathv[gl.gl_pathc - 1]);
    globfree(&gl);
    dir[strlen(dir) - strlen("/crc7.ko")] = 0;
    snprintf(add0, sizeof(add0), "%s/crc7.ko:/modules/crc7.ko", dir);
    snprintf(add1, sizeof(add1), "%s/crc8.ko:/modules/crc8.ko", dir);
    const char *adds[] = {add0, add1, NULL};
    hvi_qemu_vm_opts o = {.add = adds, .insmod = "crc7,crc8", .boot_timeout_ms = 120000,
                          .cpu_max = cpu_max, .smp = smp};
    hvi_qemu_vm *vm = NULL;
    hvi_status st = hvi_qemu_vm_start(&o, &vm);
    if (st != HVI_OK)
        fprintf(stderr, "  boot: %s\n", hvi_qemu_vm_last_error());
    REQUIRE(st == HVI_OK);
    char *ps = console_block(vm, "hvi-ps", "ps");
    char *mods = console_block(vm, "hvi-modules", "modules");
    char *maps = console_block(vm, "hvi-maps 1", "maps 1");
    uint64_t text = 0, init_task = 0;
    CHECK_OK(hvi_qemu_vm_kallsyms(vm, "_text", &text));
    CHECK_OK(hvi_qemu_vm_kallsyms(vm, "init_task", &init_task));
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_engine *e = NULL;
    if (ps && mods && maps && hvi_qemu_open(vm, &q) == HVI_OK && hvi_qemu_glue(q, &g) == HVI_OK &&
        hvi_engine_new(&g, &e) == HVI_OK) {
        hvi_guest_params p = {.size = sizeof(p), .os_hint = HVI_OS_LINUX, .support = g_support,
                              .support_len = g_support_len};
        st = hvi_new_guest(e, &p);
        if (st != HVI_OK)
            fprintf(stderr, "  attach: %s\n", hvi_last_error(e));
        CHECK_OK(st);
        hvi_linux_info info;
        if (st == HVI_OK && hvi_linux_get_info(e, &info) == HVI_OK) {
            CHECK_EQ_U64(info.image_start, text); /* KASLR: found, not assumed */
            CHECK(strncmp(info.release, "6.1.", 4) == 0);
            uint64_t a = 0;
            CHECK_OK(hvi_linux_find_symbol(e, "init_task", &a));
            CHECK_EQ_U64(a, init_task);
            compare_ps(e, ps);
            check_lazy_symbols(e, true);
            compare_modules(e, mods);
            compare_maps(e, maps);
            check_thread_safeness(e);
            check_lazy_symbols(e, false);
        }
    } else {
        CHECK(!"console views or attach failed");
    }
    hvi_engine_free(e);
    hvi_qemu_close(q);
    hvi_qemu_vm_stop(vm);
    free(ps);
    free(mods);
    free(maps);
}

HVI_TEST(ps_modules_maps_match_proc)
{
    run_view(false, 1);
}

/* 5-level paging (LA57: kernel pointers at 0xff11...) and two vCPUs. */
HVI_TEST(ps_modules_maps_match_proc_la57_smp2)
{
    run_view(true, 2);
}

HVI_TEST_MAIN()
