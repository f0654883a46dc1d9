/* hvi QEMU backend — the VM handle (private). */
#ifndef HVI_QEMU_VM_INTERNAL_H
#define HVI_QEMU_VM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "hvi_qemu.h"

struct hvi_qemu_vm {
    char dir[512];
    char serial_log[600];
    char serial_sock[600];
    char qmp_sock[600];
    char ram_path[256];
    int pid;
    bool child; /* QEMU is our child process (not daemonized) */
    int ram_fd; /* child VMs: the RAM file, kept open after its name is removed; else -1 */
    uint16_t gdb_port;
    uint32_t smp;
    uint64_t mem_bytes;
    unsigned console_seq;
    char accel[8]; /* "tcg" or "kvm" as started */
};

/* QEMU's command line for a VM (strings owned by the struct; argv NULL-terminated). */
struct hvi_qemu_cmdline {
    char append[1024], memobj[512], chardev[1400], gdb[64], qmp[700], pidf[600];
    char smp[16], mem[24], accel[32];
    char *argv[48];
};

/* accel: "tcg" or "kvm" (resolved). Fails only for another accelerator name. */
hvi_status hvi_qemu_build_cmdline(const hvi_qemu_vm *vm, const hvi_qemu_vm_opts *o,
                                  const char *kernel, const char *initrd, const char *accel,
                                  struct hvi_qemu_cmdline *c);

#endif
