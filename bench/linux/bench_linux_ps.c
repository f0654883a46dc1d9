/*
 * bench: `hvi ps` on the live Debian 6.1 guest with ~100 extra sleeping processes.
 * Measured in the same run: the process listing through the public API (what `hvi ps` does
 * after attaching), the attach itself (discovery: IDT -> image -> banner -> kallsyms), the
 * whole `hvi ps` command, and as baseline a bare walk of the task list (next pointers only).
 * Writes JSON to argv[1]. Exit 77 (with the reason) when no guest can be booted.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guest/linux/lix.h"
#include "hvi/cami.h"
#include "hvi/linux.h"
#include "hvi_qemu.h"

#define REPS 30

static double ms_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    return v[n / 2];
}

static size_t bare_walk(const struct lix_kernel *k)
{
    uint64_t head = k->init_task + k->off.task_tasks, cur = head;
    size_t n = 0;
    while (n < LIX_MAX_TASKS && lix_read_u64(k, cur, &cur) == HVI_OK && cur != head)
        n++;
    return n;
}

int main(int argc, char **argv)
{
    const char *json = argc > 1 ? argv[1] : "bench_linux_ps.json";
    char msg[256];
    void *support = NULL;
    size_t support_len = 0;
    const char *paths[] = {HVI_SOURCE_DIR "/cami/linux"};
    if (hvi_cami_build(paths, 1, &support, &support_len, msg, sizeof(msg)) != HVI_OK) {
        fprintf(stderr, "bench_linux_ps: building CAMI support from cami/linux: %s\n", msg);
        return 1;
    }
    if (access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
        fprintf(stderr, "skipped: needs qemu-system-x86_64\n");
        free(support);
        return 77;
    }
    hvi_qemu_vm_opts o = {.name = "lixbench", .boot_timeout_ms = 120000};
    hvi_qemu_vm *vm = NULL;
    if (hvi_qemu_vm_start(&o, &vm) != HVI_OK) {
        fprintf(stderr, "skipped: guest boot failed: %s\n", hvi_qemu_vm_last_error());
        free(support);
        return 77;
    }
    char *out = NULL;
    hvi_qemu_vm_console(vm, "i=0; while [ $i -lt 100 ]; do sleep 100000 & i=$((i+1)); done",
                        NULL, 60000, &out);
    free(out);
    int rc = 1;
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_engine *e = NULL;
    double attach[REPS], list[REPS], bare[REPS], whole[REPS];
    size_t nproc = 0, nbare = 0;
    for (int r = 0; r < REPS; r++) {
        double t0 = ms_now();
        if (hvi_qemu_open(vm, &q) != HVI_OK || hvi_qemu_glue(q, &g) != HVI_OK ||
            hvi_engine_new(&g, &e) != HVI_OK)
            goto out;
        hvi_guest_params p = {.size = sizeof(p), .os_hint = HVI_OS_LINUX, .support = support,
                              .support_len = support_len};
        double t1 = ms_now();
        if (hvi_new_guest(e, &p) != HVI_OK) {
            fprintf(stderr, "attach: %s\n", hvi_last_error(e));
            goto out;
        }
        double t2 = ms_now();
        hvi_linux_process *ps = NULL;
        if (hvi_linux_list_processes(e, false, &ps, &nproc) != HVI_OK)
            goto out;
        double t3 = ms_now();
        hvi_linux_free(ps);
        nbare = bare_walk(lix_get(e));
        double t4 = ms_now();
        hvi_engine_free(e);
        e = NULL;
        hvi_qemu_close(q);
        q = NULL;
        double t5 = ms_now();
        attach[r] = t2 - t1, list[r] = t3 - t2, bare[r] = t4 - t3;
        whole[r] = (t5 - t0) - (t4 - t3);
    }
    double ma = median(attach, REPS), ml = median(list, REPS), mb = median(bare, REPS);
    double mw = median(whole, REPS);
    FILE *f = fopen(json, "w");
    if (f) {
        fprintf(f,
                "{\"bench\":\"linux_ps\",\"processes\":%zu,\"tasks_list_entries\":%zu,\"reps\":%d,"
                "\"list_ms\":%.3f,\"baseline_bare_walk_ms\":%.3f,\"list_vs_bare_walk\":%.2f,"
                "\"attach_discovery_ms\":%.2f,\"whole_ps_command_ms\":%.2f,"
                "\"target_list_ms\":20,\"list_meets_target\":%s}\n",
                nproc, nbare, REPS, ml, mb, mb > 0 ? ml / mb : 0, ma, mw, ml < 20 ? "true" : "false");
        fclose(f);
    }
    printf("processes %zu: list %.3f ms (bare walk %.3f ms, x%.1f), attach %.1f ms, whole %.1f ms\n",
           nproc, ml, mb, mb > 0 ? ml / mb : 0, ma, mw);
    rc = 0;
out:
    hvi_engine_free(e);
    hvi_qemu_close(q);
    hvi_qemu_vm_stop(vm);
    free(support);
    return rc;
}
