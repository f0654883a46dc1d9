/*
 * hvi vm start|stop|status|console — the QEMU test guest (backends/qemu).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifdef HVI_HAVE_BACKEND_qemu
#include "hvi_qemu.h"

#define VM_MAX_ADD 32

static const char *vm_name_arg(int argc, char **argv, int *i)
{
    if (*i + 1 < argc && !strcmp(argv[*i], "--name"))
        return argv[++*i];
    return NULL;
}

static int vm_start(int argc, char **argv)
{
    hvi_qemu_vm_opts o = {.name = "default", .persistent = true};
    const char *add[VM_MAX_ADD + 1] = {0};
    int nadd = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n = 0;
        if (hvi_cli_is_help(a)) {
            printf(
                "usage: hvi vm start [--name N] [--nokaslr] [--smp N] [--mem MiB] [--cpu-max]\n"
                "                    [--cpu MODEL]\n"
                "                    [--workload W] [--insmod M] [--add FILE:DEST]... [--kernel "
                "K]\n"
                "                    [--accel tcg|kvm|auto]\n"
                "  --accel  tcg (default), kvm, or auto: kvm when the CPU has VMX/SVM and a KVM\n"
                "           VM can be created (not merely when /dev/kvm exists), else tcg\n"
                "  --cpu    QEMU CPU model, e.g. qemu64,+smep,+smap (default qemu64, or max)\n");
            return 0;
        } else if (!strcmp(a, "--nokaslr")) {
            o.nokaslr = true;
        } else if (!strcmp(a, "--cpu-max")) {
            o.cpu_max = true;
        } else if (v && !strcmp(a, "--name")) {
            o.name = argv[++i];
        } else if (v && !strcmp(a, "--smp") && hvi_cli_parse_u64(v, &n) && n && n <= 64) {
            o.smp = (uint32_t)n, i++;
        } else if (v && !strcmp(a, "--mem") && hvi_cli_parse_u64(v, &n) && n && n <= 65536) {
            o.mem_mib = (uint32_t)n, i++;
        } else if (v && !strcmp(a, "--workload")) {
            o.workload = argv[++i];
        } else if (v && !strcmp(a, "--insmod")) {
            o.insmod = argv[++i];
        } else if (v && !strcmp(a, "--cpu")) {
            o.cpu = argv[++i];
        } else if (v && !strcmp(a, "--accel")) {
            o.accel = argv[++i];
        } else if (v && !strcmp(a, "--kernel")) {
            o.kernel = argv[++i];
        } else if (v && !strcmp(a, "--add") && nadd < VM_MAX_ADD) {
            add[nadd++] = argv[++i];
        } else {
            fprintf(stderr, "hvi vm start: bad argument %s\n", a);
            return 2;
        }
    }
    o.add = add;
    hvi_qemu_vm *vm = NULL;
    hvi_status st = hvi_qemu_vm_start(&o, &vm);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi vm start: %s: %s\n", hvi_strstatus(st), hvi_qemu_vm_last_error());
        return 1;
    }
    printf("vm %s running: pid %d, gdbstub 127.0.0.1:%u, %u vCPU(s), %llu MiB, %s, state %s\n",
           o.name, hvi_qemu_vm_pid(vm), hvi_qemu_vm_gdb_port(vm), hvi_qemu_vm_smp(vm),
           (unsigned long long)(hvi_qemu_vm_mem_bytes(vm) >> 20), hvi_qemu_vm_accel(vm),
           hvi_qemu_vm_dir(vm));
    hvi_qemu_vm_release(vm);
    return 0;
}

static int vm_find_named(int argc, char **argv, hvi_qemu_vm **vm, int *next)
{
    const char *name = "default";
    int i = 1;
    for (; i < argc; i++) {
        const char *n = vm_name_arg(argc, argv, &i);
        if (n)
            name = n;
        else
            break;
    }
    *next = i;
    hvi_status st = hvi_qemu_vm_find(NULL, name, vm);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi vm: %s\n", hvi_qemu_vm_last_error());
        return 1;
    }
    return 0;
}

static int vm_stop(int argc, char **argv)
{
    hvi_qemu_vm *vm;
    int next;
    if (vm_find_named(argc, argv, &vm, &next))
        return 1;
    printf("stopping pid %d (serial log kept in %s)\n", hvi_qemu_vm_pid(vm),
           hvi_qemu_vm_serial_log(vm));
    hvi_qemu_vm_stop(vm);
    return 0;
}

static int vm_status(int argc, char **argv)
{
    hvi_qemu_vm *vm;
    int next;
    if (vm_find_named(argc, argv, &vm, &next))
        return 1;
    printf("running: pid %d, gdbstub 127.0.0.1:%u, %u vCPU(s), %llu MiB, %s\nstate: %s\n"
           "serial log: %s\n",
           hvi_qemu_vm_pid(vm), hvi_qemu_vm_gdb_port(vm), hvi_qemu_vm_smp(vm),
           (unsigned long long)(hvi_qemu_vm_mem_bytes(vm) >> 20), hvi_qemu_vm_accel(vm),
           hvi_qemu_vm_dir(vm), hvi_qemu_vm_serial_log(vm));
    hvi_qemu_vm_release(vm);
    return 0;
}

static int vm_console(int argc, char **argv)
{
    hvi_qemu_vm *vm;
    int next;
    if (vm_find_named(argc, argv, &vm, &next))
        return 1;
    int rc = 0;
    if (next >= argc) { /* no command: show the serial log */
        FILE *f = fopen(hvi_qemu_vm_serial_log(vm), "r");
        char buf[4096];
        size_t n;
        while (f && (n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, stdout);
        if (f)
            fclose(f);
    } else {
        char *out = NULL;
        hvi_status st = hvi_qemu_vm_console(vm, argv[next], NULL, 30000, &out);
        if (st == HVI_OK)
            fputs(out, stdout);
        else
            rc = hvi_cli_fail("console", st);
        free(out);
    }
    hvi_qemu_vm_release(vm);
    return rc;
}

HVI_SUBCOMMAND("vm", "start", vm_start,
               "boot the test guest (busybox initramfs, Debian kernel, TCG or KVM)")
HVI_SUBCOMMAND("vm", "stop", vm_stop, "stop the test guest (the serial log is kept)")
HVI_SUBCOMMAND("vm", "status", vm_status, "show whether the test guest runs, its ports and paths")
HVI_SUBCOMMAND("vm", "console", vm_console,
               "run a guest shell command [CMD], or print the serial log")

static int cmd_vm(int argc, char **argv)
{
    return hvi_cli_dispatch_sub("vm", argc, argv);
}
HVI_COMMAND("vm", cmd_vm, "manage the QEMU test guest (start, stop, status, console, dump)")
#endif
