/*
 * bench: `hvi ps` on the live Debian 6.1 guest with ~100 extra sleeping processes.
 * Measured in the same run (medians of REPS):
 *   - whole_ps_command_ms: what `hvi ps` does in process (connect, attach, list, detach), with
 *     its CPU time (whole_ps_cpu_ms: the host is shared, waiting on QEMU is not our CPU);
 *   - cli_ps_ms: the `hvi ps` command itself (exec of the binary, when it is built);
 *   - attach_ms (hvi_new_guest: registers, IDT, discovery, CAMI) and discovery_ms (lix_discover
 *     alone, from the image start), list_ms (the process listing: the walk part);
 *   - baselines: one register read round trip through the gdbstub (the floor of anything that
 *     touches the vCPU), reading the image from _text to the kallsyms token index through the
 *     mapping (what the old discovery copied), and a bare walk of the task list.
 * Writes JSON to argv[1]. Exit 77 (with the reason) when no guest can be booted.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/linux/lix.h"
#include "hvi/cami.h"
#include "hvi/linux.h"
#include "hvi/mem.h"
#include "hvi_qemu.h"

#define REPS 30
#define VM_NAME "lixbench"

extern char **environ;

static double ms_now(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    if (n <= 0)
        return -1;
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

/* Read [start, end) page by page through the mapping (holes skipped): the raw cost of the bytes
 * a full copy of the image up to the token index would move. */
static size_t read_image(hvi_engine *e, uint64_t start, uint64_t end)
{
    static uint8_t page[HVI_PAGE_SIZE];
    size_t got = 0;
    for (uint64_t va = start; va < end; va += HVI_PAGE_SIZE)
        if (hvi_gva_read(e, 0, va, page, sizeof(page)) == HVI_OK)
            got += sizeof(page);
    return got;
}

/* One `hvi ps` command: fork/exec, output to /dev/null. */
static int run_cli(const char *hvi, const char *cami)
{
    char *argv[] = {(char *)hvi, "ps", "--vm", VM_NAME, "--cami", (char *)cami, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, hvi, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    int status = 0;
    if (rc != 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct times {
    double attach[REPS], disc[REPS], list[REPS], bare[REPS], whole[REPS], whole_cpu[REPS];
    double regs[REPS], rimg[REPS], cli[REPS];
    int ncli;
    size_t nproc, nbare, img_bytes;
};

/* One in-process `hvi ps` plus the in-run baselines. */
static int one_rep(hvi_qemu_vm *vm, const void *support, size_t support_len, struct times *t, int r)
{
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_engine *e = NULL;
    int rc = 1;
    double c0 = ms_now(CLOCK_PROCESS_CPUTIME_ID), t0 = ms_now(CLOCK_MONOTONIC);
    if (hvi_qemu_open(vm, &q) != HVI_OK || hvi_qemu_glue(q, &g) != HVI_OK ||
        hvi_engine_new(&g, &e) != HVI_OK)
        goto out;
    hvi_guest_params p = {
        .size = sizeof(p), .os_hint = HVI_OS_LINUX, .support = support, .support_len = support_len};
    double t1 = ms_now(CLOCK_MONOTONIC);
    if (hvi_new_guest(e, &p) != HVI_OK) {
        fprintf(stderr, "attach: %s\n", hvi_last_error(e));
        goto out;
    }
    double t2 = ms_now(CLOCK_MONOTONIC);
    hvi_linux_process *ps = NULL;
    if (hvi_linux_list_processes(e, false, &ps, &t->nproc) != HVI_OK)
        goto out;
    double t3 = ms_now(CLOCK_MONOTONIC);
    hvi_linux_free(ps);
    /* baselines and the parts, outside the whole */
    struct lix_kernel *k = lix_get(e);
    double b0 = ms_now(CLOCK_MONOTONIC), c1 = ms_now(CLOCK_PROCESS_CPUTIME_ID);
    t->nbare = bare_walk(k);
    double b1 = ms_now(CLOCK_MONOTONIC);
    struct lix_mem mem = lix_mem_from_engine(e);
    struct lix_kernel k2;
    const char *why = "";
    hvi_status st = lix_discover(&k2, &mem, k->image_start, &why);
    double b2 = ms_now(CLOCK_MONOTONIC);
    lix_kernel_free(&k2);
    if (st != HVI_OK) {
        fprintf(stderr, "discovery: %s\n", why);
        goto out;
    }
    t->img_bytes = read_image(e, k->image_start, k->ks.token_index_va + 512);
    double b3 = ms_now(CLOCK_MONOTONIC);
    hvi_regs regs;
    memset(&regs, 0, sizeof(regs));
    if (g.get_regs(g.ctx, 0, HVI_REGS_GPR, &regs) != HVI_OK)
        goto out;
    double b4 = ms_now(CLOCK_MONOTONIC), c2 = ms_now(CLOCK_PROCESS_CPUTIME_ID);
    hvi_engine_free(e);
    e = NULL;
    hvi_qemu_close(q);
    q = NULL;
    double t5 = ms_now(CLOCK_MONOTONIC), c3 = ms_now(CLOCK_PROCESS_CPUTIME_ID);
    t->attach[r] = t2 - t1, t->list[r] = t3 - t2, t->bare[r] = b1 - b0, t->disc[r] = b2 - b1;
    t->rimg[r] = b3 - b2, t->regs[r] = b4 - b3;
    t->whole[r] = (t5 - t0) - (b4 - b0);
    t->whole_cpu[r] = (c3 - c0) - (c2 - c1);
    rc = 0;
out:
    hvi_engine_free(e);
    hvi_qemu_close(q);
    return rc;
}

static void write_json(const char *json, struct times *t)
{
    double ma = median(t->attach, REPS), md = median(t->disc, REPS), ml = median(t->list, REPS);
    double mb = median(t->bare, REPS), mw = median(t->whole, REPS);
    double mwc = median(t->whole_cpu, REPS), mr = median(t->regs, REPS);
    double mi = median(t->rimg, REPS), mc = median(t->cli, t->ncli);
    FILE *f = fopen(json, "w");
    if (f) {
        fprintf(f,
                "{\"bench\":\"linux_ps\",\"processes\":%zu,\"tasks_list_entries\":%zu,\"reps\":%d,"
                "\"whole_ps_command_ms\":%.2f,\"whole_ps_cpu_ms\":%.2f,\"cli_ps_ms\":%.2f,"
                "\"attach_ms\":%.2f,\"discovery_ms\":%.3f,\"list_ms\":%.3f,"
                "\"baseline_regs_roundtrip_ms\":%.3f,\"whole_vs_regs_roundtrip\":%.1f,"
                "\"baseline_read_image_ms\":%.3f,\"read_image_bytes\":%zu,"
                "\"discovery_vs_read_image\":%.2f,"
                "\"baseline_bare_walk_ms\":%.3f,\"list_vs_bare_walk\":%.2f,"
                "\"target_ms\":20,\"whole_meets_target\":%s}\n",
                t->nproc, t->nbare, REPS, mw, mwc, mc, ma, md, ml, mr, mr > 0 ? mw / mr : 0, mi,
                t->img_bytes, mi > 0 ? md / mi : 0, mb, mb > 0 ? ml / mb : 0,
                mw < 20 ? "true" : "false");
        fclose(f);
    }
    printf("processes %zu: whole %.2f ms (cpu %.2f ms), cli %.2f ms, attach %.2f ms, discovery "
           "%.3f ms (read of %zu image bytes %.3f ms), list %.3f ms (bare walk %.3f ms), register "
           "round trip %.3f ms\n",
           t->nproc, mw, mwc, mc, ma, md, t->img_bytes, mi, ml, mb, mr);
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
    char cami[] = "/tmp/hvi-bench-cami-XXXXXX";
    int fd = mkstemp(cami);
    if (fd < 0 || write(fd, support, support_len) != (ssize_t)support_len) {
        fprintf(stderr, "bench_linux_ps: writing %s failed\n", cami);
        free(support);
        return 1;
    }
    close(fd);
    hvi_qemu_vm_opts o = {.name = VM_NAME, .boot_timeout_ms = 120000};
    hvi_qemu_vm *vm = NULL;
    if (hvi_qemu_vm_start(&o, &vm) != HVI_OK) {
        fprintf(stderr, "skipped: guest boot failed: %s\n", hvi_qemu_vm_last_error());
        unlink(cami);
        free(support);
        return 77;
    }
    char *out = NULL;
    hvi_qemu_vm_console(vm, "i=0; while [ $i -lt 100 ]; do sleep 100000 & i=$((i+1)); done", NULL,
                        60000, &out);
    free(out);
    static struct times t;
    const char *hvi = HVI_BINARY_DIR "/tools/hvi/hvi";
    bool have_cli = access(hvi, X_OK) == 0;
    int rc = 0;
    for (int r = 0; r < REPS && rc == 0; r++) {
        rc = one_rep(vm, support, support_len, &t, r);
        double c0 = ms_now(CLOCK_MONOTONIC);
        if (rc == 0 && have_cli && run_cli(hvi, cami) == 0)
            t.cli[t.ncli++] = ms_now(CLOCK_MONOTONIC) - c0;
    }
    if (rc == 0)
        write_json(json, &t);
    hvi_qemu_vm_stop(vm);
    unlink(cami);
    free(support);
    return rc;
}
