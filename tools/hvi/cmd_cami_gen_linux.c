/* hvi cami gen-linux — write a Linux OS-support YAML entry from the kernel's BTF or DWARF. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "typeinfo/typeinfo.h"

static void usage(FILE *to)
{
    fprintf(to, "usage: hvi cami gen-linux (--btf PATH | --dwarf PATH) [--version-glob GLOB]\n"
                "                          [--version STRING] [--quiet] -o FILE.yaml\n"
                "  --btf PATH     /sys/kernel/btf/vmlinux, a raw BTF blob, a vmlinux ELF with .BTF,\n"
                "                 or a compressed vmlinuz/bzImage (gzip, xz, lzma, zstd)\n"
                "  --dwarf PATH   a vmlinux ELF with DWARF (linux-image-*-dbg)\n"
                "  --version-glob the CAMI version glob (default: \"<release>*\" from the banner)\n"
                "  --version      the banner text after \"Linux version \" when the input has none\n"
                "  -o FILE        output YAML (\"-\" for stdout)\n");
}

struct gl_args {
    const char *btf, *dwarf, *out;
    struct hvi_genlinux_opts opts;
};

static int parse(int argc, char **argv, struct gl_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (hvi_cli_is_help(k)) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(k, "--quiet")) {
            a->opts.quiet = true;
            continue;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--btf"))
            a->btf = v;
        else if (!strcmp(k, "--dwarf"))
            a->dwarf = v;
        else if (!strcmp(k, "--version-glob"))
            a->opts.version_glob = v;
        else if (!strcmp(k, "--version"))
            a->opts.version = v;
        else if (!strcmp(k, "-o"))
            a->out = v;
        else {
            fprintf(stderr, "hvi cami gen-linux: unknown option %s\n", k);
            usage(stderr);
            return 2;
        }
    }
    if (!a->out || (!a->btf == !a->dwarf)) {
        usage(stderr);
        return 2;
    }
    return -1;
}

static int cmd_cami_gen_linux(int argc, char **argv)
{
    struct gl_args a;
    memset(&a, 0, sizeof(a));
    int rc = parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    char err[HVI_TI_ERR_LEN] = "";
    struct hvi_typeinfo *ti = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    hvi_status st = a.btf ? hvi_typeinfo_open_btf(a.btf, &ti, err, sizeof(err))
                          : hvi_typeinfo_open_dwarf(a.dwarf, &ti, err, sizeof(err));
    if (st != HVI_OK) {
        fprintf(stderr, "hvi cami gen-linux: %s: %s\n", err[0] ? err : "cannot read input",
                hvi_strstatus(st));
        return 1;
    }
    bool to_stdout = !strcmp(a.out, "-");
    FILE *f = to_stdout ? stdout : fopen(a.out, "w");
    if (!f) {
        hvi_typeinfo_free(ti);
        perror(a.out);
        return 1;
    }
    struct hvi_genlinux_stats stats;
    st = hvi_genlinux_write(ti, &a.opts, f, &stats, err, sizeof(err));
    hvi_typeinfo_free(ti);
    if (!to_stdout && fclose(f) != 0 && st == HVI_OK)
        st = HVI_E_IO;
    if (st != HVI_OK) {
        fprintf(stderr, "hvi cami gen-linux: %s: %s\n", err[0] ? err : "write failed",
                hvi_strstatus(st));
        if (!to_stdout)
            remove(a.out);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (!a.opts.quiet)
        fprintf(stderr, "hvi cami gen-linux: %u fields (%u absent), %u hooks -> %s in %.0f ms\n",
                stats.fields, stats.absent, stats.hooks, a.out, ms);
    return 0;
}

HVI_SUBCOMMAND("cami", "gen-linux", cmd_cami_gen_linux,
               "generate a Linux support YAML entry from BTF/DWARF (vmlinuz, vmlinux, raw BTF)")
