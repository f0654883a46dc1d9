/*
 * hvi — Linux agents: run a process or deliver a file in the guest on the engine's request
 * (src/guest/linux/lix_agent*.c, docs/linux-agents.md).
 *
 * The engine borrows a task that enters a system call (a hypervisor breakpoint at the entry of
 * a frequent __x64_sys_* handler, accepted only in a sleepable context: kernel mode, interrupts
 * on, preempt count 0, a user process, room on its kernel stack), lays the arguments out on that
 * task's kernel stack below its RSP, makes it call a kernel function (call_usermodehelper, or
 * filp_open / kernel_write / filp_close for a file) with a return address on a watched int3
 * padding byte, then puts every register and stack byte back and lets the system call go on.
 * No guest code is written. Needs HVI_CAP_BREAKPOINT and HVI_CAP_REGS_WRITE.
 *
 * The engine is driven by its caller (events and timer ticks): *_start() arms the agent,
 * hvi_linux_agent_poll() says how far it is. hvi_linux_agent_run()/_put() do both with a
 * `pump` callback that lets the guest run for a while (e.g. hvi_qemu_run + hvi_timer_tick).
 */
#ifndef HVI_LINUX_AGENT_H
#define HVI_LINUX_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HVI_LINUX_AGENT_MAX_FILE (1u << 20) /* bytes hvi_linux_agent_put delivers at most */

typedef struct hvi_linux_agent_opts {
    uint32_t size;               /* sizeof(hvi_linux_agent_opts) */
    uint32_t trigger_timeout_ms; /* wait for a task to borrow (0: 30000) */
    uint32_t call_timeout_ms;    /* the borrowed task's calls (0: 60000) */
    bool no_wait;                /* run: UMH_WAIT_EXEC (return once exec'd) instead of
                                    UMH_WAIT_PROC (return when the process exited) */
    uint32_t mode;               /* put: file mode (0: 0644) */
} hvi_linux_agent_opts;

typedef struct hvi_linux_agent_result {
    /* run: call_usermodehelper's return: with UMH_WAIT_PROC the wait status (exit code << 8,
     * or the signal), else 0; a negative errno when the kernel could not start it.
     * put: bytes written (== the length on success) or a negative errno. */
    int64_t value;
    int32_t pid; /* the borrowed task */
    char comm[16];
    char trigger[48];                /* the system call handler it was borrowed at */
    uint32_t vcpu;                   /* where it was borrowed */
    uint64_t calls;                  /* kernel functions called */
    uint64_t other_vcpu;             /* calls that returned on another vCPU (the task migrated) */
    uint64_t trigger_hits, rejected; /* trigger breakpoint hits, and those refused */
    uint64_t wait_ns;                /* start -> borrowed */
    uint64_t run_ns;                 /* borrowed -> restored */
    char why[256];                   /* on failure */
} hvi_linux_agent_result;

/* Arm a process agent: argv[0] is the guest path of the program; envp may be NULL (then
 * HOME=/ and PATH=/sbin:/bin:/usr/sbin:/usr/bin). At most 64 entries each and 4 KiB in all.
 * HVI_E_STATE before the Linux layer found the kernel or while another agent runs,
 * HVI_E_UNSUPPORTED without breakpoints/register writes or a needed kernel symbol. */
hvi_status hvi_linux_agent_run_start(hvi_engine *e, const char *const *argv,
                                     const char *const *envp, const hvi_linux_agent_opts *o);
/* Arm a file agent: write data[0..len) to the absolute guest path (created or truncated) with
 * the borrowed task's file-system context; only a task whose fsuid is 0 is borrowed. */
hvi_status hvi_linux_agent_put_start(hvi_engine *e, const char *guest_path, const void *data,
                                     size_t len, const hvi_linux_agent_opts *o);
/* HVI_E_BUSY while the agent runs (*out then shows the progress: pid >= 0 once a task is
 * borrowed); HVI_OK when it finished and the task is restored (*out filled; for a put, value < len
 * or negative is still HVI_OK: the kernel's answer); an error with out->why (HVI_E_TIMEOUT: no task
 * borrowed in time, or a call that has not returned: then the task is restored when it returns and
 * hvi_detach answers HVI_E_BUSY until then). */
hvi_status hvi_linux_agent_poll(hvi_engine *e, hvi_linux_agent_result *out);
/* Stop waiting for a task: HVI_OK when nothing of the agent is left in the guest, HVI_E_BUSY
 * while a borrowed task is inside a call. */
hvi_status hvi_linux_agent_cancel(hvi_engine *e);

/* Let the guest run for about `ms` milliseconds, serving the engine's events and ticking its
 * timer (the QEMU backend: hvi_qemu_run + hvi_timer_tick). */
typedef hvi_status (*hvi_linux_agent_pump)(hvi_engine *e, uint32_t ms, void *user);
/* Start, pump until done, fill *out. The pump's failure is returned as is. */
hvi_status hvi_linux_agent_run(hvi_engine *e, const char *const *argv, const char *const *envp,
                               const hvi_linux_agent_opts *o, hvi_linux_agent_pump pump, void *user,
                               hvi_linux_agent_result *out);
hvi_status hvi_linux_agent_put(hvi_engine *e, const char *guest_path, const void *data, size_t len,
                               const hvi_linux_agent_opts *o, hvi_linux_agent_pump pump, void *user,
                               hvi_linux_agent_result *out);

#ifdef __cplusplus
}
#endif

#endif
