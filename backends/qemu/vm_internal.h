/* hvi QEMU backend — the VM handle (private). */
#ifndef HVI_QEMU_VM_INTERNAL_H
#define HVI_QEMU_VM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

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
};

#endif
