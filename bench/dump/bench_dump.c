/*
 * bench: the Linux view on a memory dump against the live guest it was taken from.
 * Boots the Debian guest with ~100 extra sleeping processes, then measures (medians):
 *   - the whole `hvi ps --vm` command and the whole `hvi ps --dump FILE` command (CLI processes,
 *     output to /dev/null), the baseline being the live one;
 *   - in-process: attach (discovery) + process list through the QEMU backend and through the
 *     dump backend;
 *   - one `hvi_qemu_vm_dump` (QMP dump-guest-memory) and the dump's size.
 * Writes JSON to argv[1]. Exit 77 (with the reason) when no guest can be booted.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "hvi/cami.h"
#include "hvi/linux.h"
#include "hvi_dump.h"
#include "hvi_qemu.h"
#include "hvi_qemu_dump.h"

#define REPS 9

/* Attach + list through `g`; the time in ms, or -1. */
static double attach_list(const hvi_glue *g, const void *support, size_t len, size_t *nproc)
{
    hvi_engine *e = NULL;
    hvi_linux_process *ps = NULL;
    double t0 = ms_now(), t = -1;
    hvi_guest_params p = {
        .size = sizeof(p), .os_hint = HVI_OS_LINUX, .support = support, .support_len = len};
    if (hvi_engine_new(g, &e) == HVI_OK && hvi_new_guest(e, &p) == HVI_OK &&
        hvi_linux_list_processes(e, false, &ps, nproc) == HVI_OK)
        t = ms_now() - t0;
    else if (e)
        fprintf(stderr, "bench_dump: %s view: %s\n", g->name, hvi_last_error(e));
    hvi_linux_free(ps);
    hvi_engine_free(e);
    return t;
}

static double run_cli(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s/tools/hvi/hvi' ps %s > /dev/null", HVI_BINARY_DIR, args);
    double t0 = ms_now();
    int rc = system(cmd);
    return rc == 0 ? ms_now() - t0 : -1;
}

int main(int argc, char **argv)
{
    const char *json = argc > 1 ? argv[1] : "bench_dump.json";
    char msg[256], sup[128], dump[600], args[1024];
    void *support = NULL;
    size_t support_len = 0;
    const char *paths[] = {HVI_SOURCE_DIR "/cami/linux"};
    if (hvi_cami_build(paths, 1, &support, &support_len, msg, sizeof(msg)) != HVI_OK) {
        fprintf(stderr, "bench_dump: building CAMI support from cami/linux: %s\n", msg);
        return 1;
    }
    snprintf(sup, sizeof(sup), "/tmp/hvi-bench-dump-%d.bin", (int)getpid());
    FILE *sf = fopen(sup, "wb");
    if (!sf || fwrite(support, 1, support_len, sf) != support_len) {
        fprintf(stderr, "bench_dump: cannot write %s\n", sup);
        return 1;
    }
    fclose(sf);
    if (access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
        fprintf(stderr, "skipped: needs qemu-system-x86_64\n");
        return 77;
    }
    /* persistent: `hvi ps --vm` (another process) must find it by name */
    hvi_qemu_vm_opts o = {.name = "dumpbench", .boot_timeout_ms = 120000, .persistent = true};
    hvi_qemu_vm *vm = NULL;
    if (hvi_qemu_vm_start(&o, &vm) != HVI_OK) {
        fprintf(stderr, "skipped: guest boot failed: %s\n", hvi_qemu_vm_last_error());
        unlink(sup);
        return 77;
    }
    char *out = NULL;
    hvi_qemu_vm_console(vm, "i=0; while [ $i -lt 100 ]; do sleep 100000 & i=$((i+1)); done", NULL,
                        60000, &out);
    free(out);
    snprintf(dump, sizeof(dump), "%s/bench.elf", hvi_qemu_vm_dir(vm));
    int rc = 1;
    double t0 = ms_now();
    if (hvi_qemu_vm_dump(vm, dump, 0) != HVI_OK) {
        fprintf(stderr, "bench_dump: dump: %s\n", hvi_qemu_vm_dump_error());
        goto out;
    }
    double dump_ms = ms_now() - t0;
    hvi_dump *d = NULL;
    hvi_dump_info info;
    hvi_glue dg, qg;
    if (hvi_dump_open(dump, &d) != HVI_OK || hvi_dump_get_info(d, &info) != HVI_OK ||
        hvi_dump_glue(d, &dg) != HVI_OK)
        goto out;
    double cli_vm[REPS], cli_dump[REPS], lib_vm[REPS], lib_dump[REPS];
    size_t nvm = 0, ndump = 0;
    for (int r = 0; r < REPS; r++) {
        snprintf(args, sizeof(args), "--vm dumpbench --cami '%s'", sup);
        cli_vm[r] = run_cli(args);
        snprintf(args, sizeof(args), "--dump '%s' --cami '%s'", dump, sup);
        cli_dump[r] = run_cli(args);
        hvi_qemu *q = NULL;
        double q0 = ms_now();
        if (hvi_qemu_open(vm, &q) != HVI_OK || hvi_qemu_glue(q, &qg) != HVI_OK) {
            hvi_qemu_close(q);
            goto out_dump;
        }
        double l = attach_list(&qg, support, support_len, &nvm);
        hvi_qemu_close(q);
        lib_vm[r] = l < 0 ? -1 : ms_now() - q0; /* open + attach + list + close */
        lib_dump[r] = attach_list(&dg, support, support_len, &ndump);
        if (cli_vm[r] < 0 || cli_dump[r] < 0 || lib_vm[r] < 0 || lib_dump[r] < 0)
            goto out_dump;
    }
    double mcv = median(cli_vm, REPS), mcd = median(cli_dump, REPS);
    double mlv = median(lib_vm, REPS), mld = median(lib_dump, REPS);
    FILE *f = fopen(json, "w");
    if (f) {
        fprintf(f,
                "{\"bench\":\"dump\",\"reps\":%d,\"processes_live\":%zu,\"processes_dump\":%zu,"
                "\"dump_mib\":%llu,\"dump_ms\":%.0f,"
                "\"cli_ps_dump_ms\":%.1f,\"baseline_cli_ps_vm_ms\":%.1f,\"cli_dump_vs_vm\":%.2f,"
                "\"lib_attach_list_dump_ms\":%.2f,\"baseline_lib_open_attach_list_vm_ms\":%.2f,"
                "\"lib_dump_vs_vm\":%.2f}\n",
                REPS, nvm, ndump, (unsigned long long)(info.file_bytes >> 20), dump_ms, mcd, mcv,
                mcv > 0 ? mcd / mcv : 0, mld, mlv, mlv > 0 ? mld / mlv : 0);
        fclose(f);
        rc = 0;
    }
    printf("dump of %llu MiB in %.0f ms; hvi ps --dump %.1f ms vs --vm %.1f ms (x%.2f); "
           "library attach+list: dump %.2f ms, live %.2f ms; %zu/%zu processes\n",
           (unsigned long long)(info.file_bytes >> 20), dump_ms, mcd, mcv, mcv > 0 ? mcd / mcv : 0,
           mld, mlv, ndump, nvm);
out_dump:
    hvi_dump_close(d);
out:
    hvi_qemu_vm_stop(vm);
    unlink(dump);
    unlink(sup);
    free(support);
    return rc;
}
