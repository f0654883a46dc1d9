/*
 * hvi vm dump — write the test guest's memory and vCPU state to an ELF core (QMP
 * dump-guest-memory) for `hvi ps|modules|maps --dump FILE`. The guest runs on afterwards if it
 * was running. Then prints what the dump backend reads back from the file.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#if defined(HVI_HAVE_BACKEND_qemu) && defined(HVI_HAVE_BACKEND_dump)
#include "hvi_dump.h"
#include "hvi_qemu.h"
#include "hvi_qemu_dump.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int vm_dump(int argc, char **argv)
{
    const char *name = "default", *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (hvi_cli_is_help(argv[i])) {
            printf("usage: hvi vm dump [--name N] -o FILE\n"
                   "  ELF core of guest RAM and vCPU state (QMP dump-guest-memory, paging=false);\n"
                   "  read it with hvi ps|modules|maps --dump FILE\n");
            return 0;
        } else if (i + 1 < argc && !strcmp(argv[i], "--name")) {
            name = argv[++i];
        } else if (i + 1 < argc && !strcmp(argv[i], "-o")) {
            out = argv[++i];
        } else {
            fprintf(stderr, "usage: hvi vm dump [--name N] -o FILE\n");
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "usage: hvi vm dump [--name N] -o FILE\n");
        return 2;
    }
    hvi_qemu_vm *vm = NULL;
    hvi_status st = hvi_qemu_vm_find(NULL, name, &vm);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi: %s\n", hvi_qemu_vm_last_error());
        return 1;
    }
    double t0 = now_ms();
    st = hvi_qemu_vm_dump(vm, out, 0);
    double t1 = now_ms();
    hvi_qemu_vm_release(vm);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi: dump of %s: %s\n", name, hvi_qemu_vm_dump_error());
        return 1;
    }
    hvi_dump *d = NULL;
    hvi_dump_info info;
    if (hvi_dump_open(out, &d) != HVI_OK || hvi_dump_get_info(d, &info) != HVI_OK) {
        fprintf(stderr, "hvi: %s: written, but unreadable: %s\n", out, hvi_dump_last_error(NULL));
        hvi_dump_close(d);
        return 1;
    }
    printf("%s: %llu MiB of guest memory in %u range(s), %u vCPU(s) (%u QEMU notes), %.0f ms\n",
           out, (unsigned long long)(info.mem_bytes >> 20), info.segments, info.vcpus,
           info.qemu_notes, t1 - t0);
    hvi_dump_close(d);
    return 0;
}

HVI_SUBCOMMAND("vm", "dump", vm_dump, "write the guest's memory and vCPU state to an ELF core")
#endif
