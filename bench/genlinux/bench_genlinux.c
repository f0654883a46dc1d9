/*
 * bench_genlinux OUT.json — `hvi cami gen-linux` work on the installed /boot/vmlinuz-*:
 *   total   = read + extract + BTF parse + generate (what the command does), best of N;
 *   extract = read + decompress the bzImage payload only (baseline, same run), best of N;
 *   ratio   = total / extract (how much the type work adds over the unavoidable decompression).
 * Exit 77 when no kernel image is installed. Never fails on timing.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "typeinfo/typeinfo.h"

#define RUNS 3

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int one_total(const char *path, double *secs)
{
    double t0 = now();
    struct hvi_typeinfo *ti = NULL;
    char err[HVI_TI_ERR_LEN];
    if (hvi_typeinfo_open_btf(path, &ti, err, sizeof(err)) != HVI_OK) {
        fprintf(stderr, "bench_genlinux: %s\n", err);
        return -1;
    }
    FILE *null = fopen("/dev/null", "w");
    struct hvi_genlinux_opts o = {NULL, NULL, true};
    hvi_status st = null ? hvi_genlinux_write(ti, &o, null, NULL, err, sizeof(err)) : HVI_E_IO;
    if (null)
        fclose(null);
    hvi_typeinfo_free(ti);
    *secs = now() - t0;
    return st == HVI_OK ? 0 : -1;
}

static int one_extract(const char *path, double *secs)
{
    double t0 = now();
    void *buf = NULL, *elf = NULL;
    size_t len = 0, elf_len = 0;
    if (hvi_ti_read_file(path, &buf, &len, NULL, 0) != HVI_OK)
        return -1;
    hvi_status st = hvi_typeinfo_extract_vmlinux(buf, len, &elf, &elf_len, NULL, 0);
    free(buf);
    free(elf);
    *secs = now() - t0;
    return st == HVI_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    glob_t gl;
    if (glob("/boot/vmlinuz-*", 0, NULL, &gl) != 0 || gl.gl_pathc == 0) {
        fprintf(stderr, "bench_genlinux: skipped: no /boot/vmlinuz-* installed\n");
        return 77;
    }
    char path[256];
    snprintf(path, sizeof(path), "%s", gl.gl_pathv[gl.gl_pathc - 1]);
    globfree(&gl);
    double best_total = 1e9, best_extract = 1e9;
    for (int i = 0; i < RUNS; i++) {
        double te, tt;
        if (one_extract(path, &te) != 0 || one_total(path, &tt) != 0)
            return 1;
        best_extract = te < best_extract ? te : best_extract;
        best_total = tt < best_total ? tt : best_total;
    }
    FILE *f = argc > 1 ? fopen(argv[1], "w") : stdout;
    if (!f)
        return 1;
    fprintf(f,
            "{\n  \"bench\": \"genlinux\",\n  \"image\": \"%s\",\n  \"runs\": %d,\n"
            "  \"gen_linux_total_s\": %.4f,\n  \"extract_only_s\": %.4f,\n"
            "  \"total_vs_extract_ratio\": %.3f\n}\n",
            path, RUNS, best_total, best_extract, best_total / best_extract);
    if (f != stdout)
        fclose(f);
    printf("gen-linux %.3f s, decompression alone %.3f s, ratio %.2f (%s)\n", best_total,
           best_extract, best_total / best_extract, path);
    return 0;
}
