/*
 * hvi QEMU backend — dump a test guest's memory and vCPU state to an ELF core with QMP
 * `dump-guest-memory` (paging=false), for the dump backend (backends/dump). Kept apart from
 * hvi_qemu.h: it only needs the VM's QMP socket.
 */
#ifndef HVI_QEMU_DUMP_H
#define HVI_QEMU_DUMP_H

#include "hvi/status.h"
#include "hvi_qemu.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * hvi_qemu_vm_dump - write guest RAM (PT_LOAD per RAM range, p_paddr = GPA) and one
 * NT_PRSTATUS plus one "QEMU" note per vCPU to `path` (overwritten). QEMU stops the guest for
 * the dump; a guest that was running is running again when this returns (checked with
 * query-status, `cont` if needed); a paused one stays paused. Needs the VM's QMP socket free:
 * an open hvi_qemu session holds it (close it first). `timeout_ms` bounds each QMP reply
 * (0 = 120000). Returns HVI_OK, HVI_E_INVAL (bad arguments, a path with control characters),
 * HVI_E_CLOSED (QEMU is gone), HVI_E_BUSY (QMP held by another client for 5 s), HVI_E_TIMEOUT,
 * HVI_E_BACKEND (QEMU refused), HVI_E_IO; the reason is in hvi_qemu_vm_dump_error().
 */
hvi_status hvi_qemu_vm_dump(hvi_qemu_vm *vm, const char *path, int timeout_ms);
/* Why the last hvi_qemu_vm_dump() of this thread failed ("" if it did not). */
const char *hvi_qemu_vm_dump_error(void);

#ifdef __cplusplus
}
#endif

#endif
