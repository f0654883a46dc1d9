/*
 * hvi QEMU backend — public API for tools and tests (include "hvi_qemu.h"; link hvi_backend_qemu).
 *
 * Two halves:
 *   1. Test-guest management: boot Debian's kernel with the busybox initramfs of scripts/guest
 *      under qemu-system-x86_64 -accel tcg, guest RAM in a shared file, a gdbstub on a free
 *      loopback port, QMP and the serial port on unix sockets, everything in a state directory
 *      (<root>/<name>/: state, serial.log, qmp.sock, serial.sock, qemu.pid, qemu.err).
 *   2. The session: a glue table over that VM (RAM file mmap, own RSP and QMP clients) and an
 *      event loop that delivers stops to an engine.
 * Every call has a timeout; nothing waits forever.
 */
#ifndef HVI_QEMU_H
#define HVI_QEMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi/glue.h"
#include "hvi/hvi.h"
#include "hvi/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HVI_QEMU_MAX_VCPUS 16
#define HVI_QEMU_MAX_BREAKPOINTS 64
#define HVI_QEMU_MAX_WATCHPOINTS 4        /* KVM (debug registers: 1/2/4/8 bytes), or accel unknown */
#define HVI_QEMU_MAX_WATCHPOINTS_TCG 256  /* TCG: software watchpoints of any length */

typedef struct hvi_qemu_vm_opts {
    const char *name;         /* state directory name; NULL = "t<pid>-<counter>" */
    const char *state_root;   /* NULL = $HVI_GUEST_WORK, else ./guest-work */
    const char *kernel;       /* NULL = $HVI_GUEST_KERNEL, else the newest /boot/vmlinuz-*-amd64 */
    const char *initramfs;    /* NULL = build one into the state directory */
    const char *const *add;   /* NULL-terminated "FILE:/path/in/guest" list for the initramfs */
    const char *workload;     /* hvi.workload=... (comma separated), NULL = none */
    const char *insmod;       /* hvi.insmod=... (module names in /modules), NULL = none */
    const char *append;       /* extra kernel command line, NULL = none */
    uint32_t mem_mib;         /* 0 = 512 */
    uint32_t smp;             /* 0 = 1 */
    bool nokaslr;             /* add "nokaslr" */
    bool cpu_max;             /* -cpu max (LA57: 5-level paging); default CPU model: 4-level */
    const char *cpu;          /* -cpu MODEL (e.g. "qemu64,+smep,+smap"); NULL = qemu64, or max
                                 with cpu_max. Takes precedence over cpu_max. */
    uint32_t boot_timeout_ms; /* 0 = 90000 */
    bool persistent;          /* QEMU outlives this process (-daemonize; `hvi vm start`). When
                                 false QEMU is this process's child and gets SIGKILL if it dies,
                                 so a crashed or killed test leaves no guest behind. */
    const char *accel;        /* "tcg" (NULL: default), "kvm", or "auto" (kvm when a KVM VM can
                                 be created here, else tcg) */
} hvi_qemu_vm_opts;

typedef struct hvi_qemu_vm hvi_qemu_vm;

/* Build the initramfs if needed, boot, wait for "HVI-READY" on the serial log. On failure the
 * reason (missing kernel, QEMU error output, boot timeout) is in hvi_qemu_vm_last_error(). */
hvi_status hvi_qemu_vm_start(const hvi_qemu_vm_opts *opts, hvi_qemu_vm **out);
/* Find a running VM by name (state_root as in opts; NULL = default). HVI_E_NOT_FOUND if none. */
hvi_status hvi_qemu_vm_find(const char *state_root, const char *name, hvi_qemu_vm **out);
/* Kill QEMU (if alive), remove the RAM file and sockets, free vm. Accepts NULL. */
void hvi_qemu_vm_stop(hvi_qemu_vm *vm);
/* Free the handle, leave QEMU running. Accepts NULL. */
void hvi_qemu_vm_release(hvi_qemu_vm *vm);
bool hvi_qemu_vm_alive(const hvi_qemu_vm *vm);

/* Type `cmd` into the guest shell on the serial port and collect what it prints until the end
 * marker. The marker is printed by the guest after the command (it is generated when
 * end_marker is NULL). *out (malloc'd, NUL-terminated, "\r" removed) holds the command's
 * output lines. HVI_E_TIMEOUT if the marker does not come within timeout_ms. */
hvi_status hvi_qemu_vm_console(hvi_qemu_vm *vm, const char *cmd, const char *end_marker,
                               int timeout_ms, char **out);
/* Text between "HVI-BEGIN <block>" and "HVI-END <block>" in `text` (malloc'd copy), or NULL. */
char *hvi_qemu_block(const char *text, const char *block);
/* Address of `symbol` from the guest's /proc/kallsyms (runs hvi-syms in the guest). */
hvi_status hvi_qemu_vm_kallsyms(hvi_qemu_vm *vm, const char *symbol, uint64_t *addr);

const char *hvi_qemu_vm_last_error(void);
/* True when the CPU shows VMX/SVM, /dev/kvm opens and a KVM VM can be created (not merely
 * when /dev/kvm exists). */
bool hvi_qemu_kvm_usable(void);
/* "tcg"/NULL, "kvm", "auto" -> "tcg" or "kvm" (auto: kvm_usable). HVI_E_INVAL otherwise. */
hvi_status hvi_qemu_resolve_accel(const char *want, bool kvm_usable, const char **out);
const char *hvi_qemu_vm_accel(const hvi_qemu_vm *vm);
const char *hvi_qemu_vm_dir(const hvi_qemu_vm *vm);
const char *hvi_qemu_vm_serial_log(const hvi_qemu_vm *vm);
int hvi_qemu_vm_pid(const hvi_qemu_vm *vm);
uint16_t hvi_qemu_vm_gdb_port(const hvi_qemu_vm *vm);
uint32_t hvi_qemu_vm_smp(const hvi_qemu_vm *vm);
uint64_t hvi_qemu_vm_mem_bytes(const hvi_qemu_vm *vm);

/* ---- session ---------------------------------------------------------------------------- */

typedef struct hvi_qemu hvi_qemu;

/* Explicit endpoints (for tests with fake servers, or a VM started by other means). */
typedef struct hvi_qemu_conn {
    const char *gdb_host; /* NULL = 127.0.0.1 */
    uint16_t gdb_port;
    const char *qmp_path; /* NULL = no QMP (no DTR capability) */
    const char *ram_path; /* NULL = no RAM file (memory calls fail with HVI_E_RANGE) */
    uint64_t ram_bytes;
    int timeout_ms; /* per reply; 0 = 5000 */
} hvi_qemu_conn;

/* Connect: RSP (the VM stops; the unrequested stop reply is consumed), QMP, RAM mmap.
 * The session starts with every vCPU paused. */
hvi_status hvi_qemu_connect(const hvi_qemu_conn *conn, hvi_qemu **out);
/* Connect to a VM started with hvi_qemu_vm_start()/found with hvi_qemu_vm_find(). */
hvi_status hvi_qemu_open(hvi_qemu_vm *vm, hvi_qemu **out);
/* The glue table (ctx = q). */
hvi_status hvi_qemu_glue(hvi_qemu *q, hvi_glue *out);
/* Opt-in MSR reads (call before hvi_qemu_glue: the glue then has HVI_CAP_MSR_READ and get_msr).
 * Each read at a new stop takes a device-state snapshot through QMP (a migration to a file with
 * x-ignore-shared, tens of ms with the vCPUs stopped), checked against the gdbstub registers.
 * MSRs: SYSENTER_CS/ESP/EIP, EFER, STAR, LSTAR, CSTAR, FMASK, KERNEL_GS_BASE. Needs QMP, QEMU
 * 7.2's cpu section layout (else HVI_E_UNSUPPORTED) and a guest without block devices. */
hvi_status hvi_qemu_set_msr_read(hvi_qemu *q, bool on);
/* Remove breakpoints/watchpoints, detach (D;1), make sure the VM runs, free. Accepts NULL. */
hvi_status hvi_qemu_close(hvi_qemu *q);
/* Why the session ended / last failure ("" if none). */
const char *hvi_qemu_last_error(const hvi_qemu *q);

/*
 * Run the guest for up to timeout_ms, delivering every breakpoint, watchpoint and single-step
 * stop to `engine` with hvi_handle_event() while the vCPU is stopped, then resuming (stepping
 * over a breakpoint first). Returns HVI_OK when the time is up (the guest is left running) or
 * `max_events` (0 = no limit) events were delivered (the guest is left paused); *events counts
 * deliveries. HVI_E_CLOSED when QEMU or the guest went away, HVI_E_FORMAT for a garbage reply.
 */
hvi_status hvi_qemu_run(hvi_qemu *q, hvi_engine *engine, int timeout_ms, uint32_t max_events,
                        uint32_t *events);
bool hvi_qemu_running(const hvi_qemu *q);

#ifdef __cplusplus
}
#endif

#endif
