/*
 * hvi win-demo — the Windows guest layer on the simulator: build a synthetic, layout-faithful
 * Windows x64 guest (backends/sim/hvi_sim_windows.h) for a build of the CAMI support data,
 * attach an engine that finds ntoskrnl by itself, and print the detected build, the functions
 * located by CAMI code patterns, the processes and drivers, a process-creation event from the
 * PspInsertProcess detour, a creation refused by the block list, a driver load event
 * (MiProcessLoaderEntry detour), one process's VADs, threads, image path and command line, and a
 * denied SSDT write from a driver whose alert names the process running on the vCPU. No real
 * Windows guest is involved: this is the proof on the simulator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "hvi/cami.h"
#include "hvi/hvi.h"
#include "hvi/windows.h"

#ifdef HVI_HAVE_BACKEND_sim
#include "hvi_sim.h"
#include "hvi_sim_windows.h"

static int usage(FILE *to)
{
    fprintf(to,
            "usage: hvi win-demo [--cami FILE|DIR] [--build N] [--kpti on|off] [--processes N]\n"
            "                    [--drivers N] [--pid N] [--json]\n"
            "Builds a simulated Windows x64 guest (not a real Windows: the simulator backend)\n"
            "for a build of the support data, lets the engine find ntoskrnl, and prints the\n"
            "build, the kernel functions located by CAMI patterns, processes, drivers, a\n"
            "process-creation event from a detour, a creation refused by the block list, a\n"
            "driver load event and a denied KiServiceTable write, whose alert names the\n"
            "process running on the writing vCPU.\n"
            "  --cami      CAMI binary, or a folder of CAMI YAML sources (default: $HVI_CAMI)\n"
            "  --build     Windows build with an x64 entry in the support data (default 17763)\n"
            "  --kpti      the entry's KPTI flag (default on)\n"
            "  --processes user processes besides System (default 6, max 32)\n"
            "  --drivers   drivers besides ntoskrnl.exe and hal.dll (default 5, max 32)\n"
            "  --pid       the process shown in detail: VADs, threads, image path, command\n"
            "              line (default: the last one)\n"
            "  --json      print alerts and events as JSON lines\n"
            "Exit status 0 when the SSDT write was denied with an alert, 1 otherwise.\n");
    return to == stdout ? 0 : 2;
}

struct demo {
    hvi_sim *sim;
    hvi_engine *e;
    hvi_sim_win w;
    bool json;
    int denied_alerts, create_events;
    uint32_t pid; /* the process shown in detail (0: the last one built) */
};

static void on_alert(const hvi_alert *a, void *user)
{
    struct demo *d = user;
    char js[1024];
    if (a->type == HVI_ALERT_EPT_WRITE && a->action == HVI_ALERT_DENIED)
        d->denied_alerts++;
    if (a->type == HVI_EVENT_PROCESS_CREATE)
        d->create_events++;
    if (d->json && hvi_alert_to_json(a, js, sizeof(js), NULL) == HVI_OK) {
        printf("%s\n", js);
        return;
    }
    if (a->type == HVI_EVENT_MODULE_LOAD || a->type == HVI_EVENT_MODULE_UNLOAD)
        printf("  %s: %s, rip 0x%llx\n", hvi_alert_type_name(a->type), a->module,
               (unsigned long long)a->rip);
    else if (hvi_alert_is_violation(a->type))
        printf("  %s: object %s, insn \"%s\", rip 0x%llx in %s (%s)%s\n"
               "    current process: pid %d \"%s\"\n",
               hvi_alert_type_name(a->type), a->object, a->insn, (unsigned long long)a->rip,
               a->module, a->symbol, a->action == HVI_ALERT_DENIED ? ", DENIED" : "", a->pid,
               a->pid >= 0 ? a->comm : "unknown");
    else
        printf("  %s: %s pid %d \"%s\", rip 0x%llx in %s\n", hvi_alert_type_name(a->type),
               a->object, a->pid, a->comm, (unsigned long long)a->rip, a->module);
    if (a->detail[0])
        printf("    %s\n", a->detail);
}

static hvi_status load_support(const char *path, void **buf, size_t *len)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char msg[256] = "";
        const char *paths[1] = {path};
        hvi_status st = hvi_cami_build(paths, 1, buf, len, msg, sizeof(msg));
        if (st != HVI_OK)
            fprintf(stderr, "hvi win-demo: %s\n", msg);
        return st;
    }
    return hvi_cli_read_file(path, buf, len);
}

static void print_lists(struct demo *d)
{
    hvi_windows_function *fn = NULL;
    hvi_windows_process *p = NULL;
    hvi_windows_module *m = NULL;
    size_t n = 0;
    if (hvi_windows_list_functions(d->e, &fn, &n) == HVI_OK) {
        printf("kernel functions located by CAMI code patterns:\n");
        for (size_t i = 0; i < n; i++)
            printf("  %-28s 0x%016llx  pattern %u%s\n", fn[i].name,
                   (unsigned long long)fn[i].address, fn[i].pattern,
                   fn[i].address ? (fn[i].detoured ? "  detoured" : "") : "  NOT FOUND");
        hvi_windows_free(fn);
    }
    hvi_status st = hvi_windows_list_processes(d->e, &p, &n);
    if (st == HVI_OK) {
        printf("processes (%zu, PsActiveProcessHead):\n  %6s %6s  %-18s %-12s %s\n", n, "PID",
               "PPID", "EPROCESS", "CR3", "NAME");
        for (size_t i = 0; i < n; i++)
            printf("  %6u %6u  0x%016llx 0x%-10llx %s\n", p[i].pid, p[i].ppid,
                   (unsigned long long)p[i].eprocess, (unsigned long long)p[i].cr3, p[i].name);
        hvi_windows_free(p);
    } else {
        printf("processes: %s (%s)\n", hvi_strstatus(st), hvi_last_error(d->e));
    }
    st = hvi_windows_list_modules(d->e, &m, &n);
    if (st == HVI_OK) {
        printf("drivers (%zu, PsLoadedModuleList):\n  %-18s %-9s %-14s %s\n", n, "BASE", "SIZE",
               "NAME", "PATH");
        for (size_t i = 0; i < n; i++)
            printf("  0x%016llx 0x%-7x %-14s %s\n", (unsigned long long)m[i].base, m[i].size,
                   m[i].name, m[i].path);
        hvi_windows_free(m);
    } else {
        printf("drivers: %s (%s)\n", hvi_strstatus(st), hvi_last_error(d->e));
    }
}

/* One process in detail: user-mode parameters, VA space (VAD tree), DLLs and threads. */
static void print_process(struct demo *d, uint32_t pid)
{
    hvi_windows_vad *v = NULL;
    hvi_windows_thread *t = NULL;
    size_t n = 0;
    hvi_windows_process_params pp;
    printf("process pid %u:\n", pid);
    hvi_status st = hvi_windows_process_params_get(d->e, pid, &pp);
    if (st == HVI_OK)
        printf("  PEB 0x%llx, ProcessParameters 0x%llx\n  image path:   %s\n  command line: %s\n",
               (unsigned long long)pp.peb, (unsigned long long)pp.params, pp.image_path,
               pp.command_line);
    else
        printf("  parameters: %s (%s)\n", hvi_strstatus(st), hvi_last_error(d->e));
    st = hvi_windows_vads(d->e, pid, &v, &n);
    if (st == HVI_OK) {
        printf("  VA space (%zu VADs, EPROCESS.VadRoot):\n    %-18s %-18s %-8s %-17s %s\n", n,
               "START", "END", "TYPE", "PROTECTION", "FILE");
        for (size_t i = 0; i < n; i++)
            printf("    0x%016llx 0x%016llx %-8s %-*s%s\n", (unsigned long long)v[i].start,
                   (unsigned long long)v[i].end, hvi_windows_vad_type_name(v[i].type),
                   v[i].file[0] ? 18 : 0, hvi_windows_protection_name(v[i].protection), v[i].file);
        hvi_windows_free(v);
    } else {
        printf("  VADs: %s (%s)\n", hvi_strstatus(st), hvi_last_error(d->e));
    }
    hvi_windows_module *m = NULL;
    st = hvi_windows_user_modules(d->e, pid, &m, &n);
    if (st == HVI_OK) {
        printf("  modules (%zu, PEB.Ldr):\n", n);
        for (size_t i = 0; i < n; i++)
            printf("    0x%016llx 0x%-7x %-14s %s\n", (unsigned long long)m[i].base, m[i].size,
                   m[i].name, m[i].path);
        hvi_windows_free(m);
    } else {
        printf("  modules: %s (%s)\n", hvi_strstatus(st), hvi_last_error(d->e));
    }
    st = hvi_windows_threads(d->e, pid, &t, &n);
    if (st == HVI_OK) {
        printf("  threads (%zu, ThreadListHead):\n    %6s  %-18s %-18s %s\n", n, "TID", "ETHREAD",
               "TEB", "START");
        for (size_t i = 0; i < n; i++)
            printf("    %6u  0x%016llx 0x%016llx 0x%llx%s\n", t[i].tid,
                   (unsigned long long)t[i].ethread, (unsigned long long)t[i].teb,
                   (unsigned long long)t[i].start_address, t[i].foreign ? "  FOREIGN" : "");
        hvi_windows_free(t);
    } else {
        printf("  threads: %s (%s)\n", hvi_strstatus(st), hvi_last_error(d->e));
    }
}

/* The kernel creates "notepad.exe" (PspInsertProcess detour), then a driver patches the SSDT. */
static void scenario(struct demo *d)
{
    uint64_t ep = 0;
    uint32_t parent = d->w.nproc > 1 ? d->w.nproc - 1 : 0;
    printf("simulated: the kernel inserts a new process notepad.exe (PspInsertProcess)\n");
    if (d->w.psp_insert_process && hvi_sim_win_new_eprocess(d->sim, &d->w, "notepad.exe", 0x1f40,
                                                            d->w.pid[parent], &ep) == HVI_OK) {
        uint64_t args[6] = {ep, d->w.eprocess[parent], 0x1fffff, 0, 0, 0};
        hvi_event_reply rep;
        (void)hvi_sim_win_call(d->sim, &d->w, d->w.psp_insert_process, args, 6, &rep);
    }
    printf("simulated: the kernel inserts mimikatz.exe, on the block list (HVI_OPT_BLOCK_EXEC)\n");
    if (d->w.psp_insert_process && hvi_windows_block_process_add(d->e, "mimikatz.exe") == HVI_OK &&
        hvi_sim_win_new_eprocess(d->sim, &d->w, "mimikatz.exe", 0x1f44, d->w.pid[parent], &ep) ==
            HVI_OK) {
        uint64_t args[6] = {ep, d->w.eprocess[parent], 0x1fffff, 0, 0, 0};
        hvi_event_reply rep = {0, false};
        (void)hvi_sim_win_call(d->sim, &d->w, d->w.psp_insert_process, args, 6, &rep);
        hvi_regs *r = hvi_sim_vcpu_regs(d->sim, 0);
        if (rep.regs_changed)
            printf("PspInsertProcess returned 0x%08llx to its caller at 0x%llx\n",
                   (unsigned long long)r->gpr[HVI_RAX], (unsigned long long)r->rip);
    }
    uint64_t ldr = 0;
    printf("simulated: the kernel loads the driver rootkit.sys (MiProcessLoaderEntry)\n");
    if (d->w.mi_process_loader_entry &&
        hvi_sim_win_new_ldr(d->sim, &d->w, "rootkit.sys", 0xfffff80007000000ull, 0x8000, &ldr) ==
            HVI_OK) {
        uint64_t args[2] = {ldr, 1};
        hvi_event_reply rep;
        (void)hvi_sim_win_call(d->sim, &d->w, d->w.mi_process_loader_entry, args, 2, &rep);
    }
    uint32_t cur = d->w.nproc - 1;
    printf("simulated: a thread (tid %u) of %s, pid %u, runs on vCPU 0\n", d->w.tid[cur][0],
           d->w.name[cur], d->w.pid[cur]);
    (void)hvi_sim_win_set_current(d->sim, &d->w, 0, d->w.ethread[cur][0]);
    uint32_t drv = d->w.ndrv > 2 ? 2 : d->w.ndrv - 1;
    uint64_t rip = d->w.drv_base[drv] + 0x1a2b, target = d->w.ssdt + 4 * 0x3a;
    printf("simulated: %s (rip 0x%llx) writes KiServiceTable[0x3a] at 0x%llx\n", d->w.drv_name[drv],
           (unsigned long long)rip, (unsigned long long)target);
    uint32_t before = 0, after = 0, value = 0x0badc0de;
    hvi_gpa gpa = 0;
    (void)hvi_sim_translate(d->sim, d->w.cr3, HVI_PAGING_4LVL, target, &gpa);
    (void)hvi_sim_phys_read(d->sim, gpa, &before, 4);
    static const uint8_t mov[] = {0x89, 0x58, 0x08}; /* mov [rax+8], ebx */
    hvi_regs *r = hvi_sim_vcpu_regs(d->sim, 0);
    r->rip = rip;
    r->gpr[HVI_RAX] = target - 8;
    r->gpr[HVI_RBX] = value;
    hvi_event_reply rep = {0, false};
    (void)hvi_sim_guest_write(d->sim, 0, target, &value, 4, mov, sizeof(mov), &rep);
    (void)hvi_sim_phys_read(d->sim, gpa, &after, 4);
    printf("write %s; KiServiceTable[0x3a] is 0x%08x (was 0x%08x)\n",
           rep.action == HVI_ACTION_DENY ? "DENIED" : "allowed", after, before);
}

static int run(struct demo *d, const void *support, size_t support_len,
               const hvi_sim_win_config *cfg)
{
    hvi_cami *c = NULL;
    hvi_glue g;
    char msg[256] = "";
    hvi_status st = hvi_cami_open(support, support_len, &c, msg, sizeof(msg));
    if (st != HVI_OK) {
        fprintf(stderr, "hvi win-demo: support data: %s %s\n", hvi_strstatus(st), msg);
        return 1;
    }
    hvi_sim_config sc = {.ram_size = 32u << 20, .vcpus = 2};
    if ((st = hvi_sim_new(&sc, &d->sim)) != HVI_OK ||
        (st = hvi_sim_win_build(d->sim, c, cfg, &d->w)) != HVI_OK) {
        fprintf(stderr, "hvi win-demo: cannot build build %u kpti %s: %s%s\n", cfg->build,
                cfg->kpti ? "on" : "off", hvi_strstatus(st),
                st == HVI_E_NOT_FOUND ? " (no x64 entry for it in the support data)" : "");
        hvi_cami_close(c);
        return 1;
    }
    hvi_cami_close(c);
    if ((st = hvi_sim_glue(d->sim, &g)) != HVI_OK || (st = hvi_engine_new(&g, &d->e)) != HVI_OK)
        return hvi_cli_fail("engine", st);
    hvi_set_alert_callback(d->e, on_alert, d);
    hvi_sim_attach(d->sim, d->e);
    hvi_guest_params p = {.size = sizeof(p),
                          .os_hint = HVI_OS_WINDOWS,
                          .options = HVI_OPT_ALL_PROTECTION | HVI_OPT_EVENT_PROCESS |
                                     HVI_OPT_BLOCK_EXEC | HVI_OPT_EVENT_MODULE,
                          .support = support,
                          .support_len = support_len};
    if ((st = hvi_new_guest(d->e, &p)) != HVI_OK) {
        fprintf(stderr, "hvi win-demo: %s: %s\n", hvi_strstatus(st), hvi_last_error(d->e));
        return 1;
    }
    hvi_windows_info in;
    if ((st = hvi_windows_get_info(d->e, &in)) != HVI_OK)
        return hvi_cli_fail("windows info", st);
    printf("simulated Windows guest (backends/sim, not a real Windows)\n"
           "detected: build %u, x64, kpti %s; CAMI entry \"%s\"\n"
           "ntoskrnl.exe at 0x%llx, SizeOfImage 0x%x, %u sections\n"
           "KiServiceTable 0x%llx (%u entries), HalDispatchTable 0x%llx\n",
           in.build, in.kpti ? "on" : "off", in.version, (unsigned long long)in.kernel_base,
           in.kernel_size, in.sections, (unsigned long long)in.service_table, in.service_count,
           (unsigned long long)in.hal_dispatch_table);
    print_lists(d);
    print_process(d, d->pid ? d->pid : d->w.pid[d->w.nproc - 1]);
    scenario(d);
    (void)hvi_detach(d->e);
    return d->denied_alerts > 0 ? 0 : 1;
}

static int cmd_win_demo(int argc, char **argv)
{
    const char *cami = getenv("HVI_CAMI");
    hvi_sim_win_config cfg = {.build = 17763, .kpti = true, .processes = 6, .drivers = 5};
    struct demo d;
    memset(&d, 0, sizeof(d));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        uint64_t v = 0;
        if (hvi_cli_is_help(a))
            return usage(stdout);
        if (!strcmp(a, "--json")) {
            d.json = true;
        } else if (i + 1 < argc && !strcmp(a, "--cami")) {
            cami = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--kpti") &&
                   (!strcmp(argv[i + 1], "on") || !strcmp(argv[i + 1], "off"))) {
            cfg.kpti = !strcmp(argv[++i], "on");
        } else if (i + 1 < argc && hvi_cli_parse_u64(argv[i + 1], &v) &&
                   (!strcmp(a, "--build") || !strcmp(a, "--processes") || !strcmp(a, "--drivers") ||
                    !strcmp(a, "--pid"))) {
            i++;
            if (!strcmp(a, "--pid") && v && v <= 0xffffffffu)
                d.pid = (uint32_t)v;
            else if (!strcmp(a, "--build") && v <= 0xffff)
                cfg.build = (uint32_t)v;
            else if (!strcmp(a, "--processes") && v <= HVI_SIM_WIN_MAX)
                cfg.processes = (uint32_t)v;
            else if (!strcmp(a, "--drivers") && v <= HVI_SIM_WIN_MAX)
                cfg.drivers = (uint32_t)v;
            else
                return usage(stderr);
        } else {
            return usage(stderr);
        }
    }
    if (!cami || !cami[0]) {
        fprintf(stderr, "hvi win-demo: no support data: give --cami FILE|DIR (e.g. "
                        "../shared/reference/hvmi-cami/intro_live_update.bin) or set HVI_CAMI\n");
        return 2;
    }
    void *buf = NULL;
    size_t len = 0;
    hvi_status st = load_support(cami, &buf, &len);
    if (st != HVI_OK) {
        free(buf);
        return hvi_cli_fail(cami, st);
    }
    int rc = run(&d, buf, len, &cfg);
    if (d.sim)
        hvi_sim_attach(d.sim, NULL);
    hvi_engine_free(d.e);
    hvi_sim_free(d.sim);
    free(buf);
    return rc;
}
#else
static int cmd_win_demo(int argc, char **argv)
{
    (void)argc, (void)argv;
    fprintf(stderr, "hvi: this build has no simulator backend\n");
    return 1;
}
#endif

HVI_COMMAND("win-demo", cmd_win_demo,
            "simulated Windows x64 guest: build, processes, drivers, SSDT alert")
