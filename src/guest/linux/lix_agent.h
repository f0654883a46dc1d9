/*
 * hvi guest/linux — agents: kernel functions called on a borrowed task (private header).
 *
 * The machine (lix_agent_core.c) knows nothing of Linux: it waits on hypervisor breakpoints
 * ("triggers") for a vCPU that an `accept` callback finds in a sleepable context, saves that
 * vCPU's registers and a window of the stack below its RSP, lays data out in that window,
 * pushes a return address that points at an int3 padding byte watched by another hypervisor
 * breakpoint ("the pad"), and sets RIP to the function to call. When the function returns to
 * the pad (on whatever vCPU the task runs by then; matched by RSP), the job may place another
 * call; when it is done every saved register and stack byte is written back and the task
 * continues where it was stopped. No guest code is written. lix_agent.c adds the Linux side
 * (symbols, the sleepable-context checks, the jobs) and the public API.
 */
#ifndef HVI_GUEST_LIX_AGENT_H
#define HVI_GUEST_LIX_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi/glue.h"
#include "hvi/hook.h"
#include "hvi/hvi.h"

#define LIXA_MAX_SCRATCH 4096u /* bytes of data one call may place on the stack */
#define LIXA_REDZONE 256u      /* bytes right below the interrupted RSP left untouched */
#define LIXA_SAVE (LIXA_MAX_SCRATCH + LIXA_REDZONE + 32u) /* stack window saved and restored */
#define LIXA_STACK_MARGIN 8192u /* stack that must stay free below the return slot */
#define LIXA_MAX_TRIGGERS 16u
#define LIXA_MAX_ARGS 64u /* argv and envp entries each */

/* ---- argv/envp layout in a scratch block (pure, unit-tested) ------------------------------ */
struct lixa_block {
    uint8_t buf[LIXA_MAX_SCRATCH];
    uint32_t len;              /* bytes of buf used (a multiple of 16) */
    uint64_t base;             /* guest address of buf[0]: 16-aligned, base + len <= top */
    uint64_t path, argv, envp; /* guest pointers: argv[0], the argv and envp arrays */
};
/* Lay out NULL-terminated pointer arrays argv[] and envp[] (envp may be NULL: an empty array)
 * and their strings so that the block ends at or below `top`: [argv ptrs, NULL][envp ptrs,
 * NULL][strings]. HVI_E_INVAL for no argv[0], HVI_E_LIMIT beyond LIXA_MAX_ARGS entries or
 * LIXA_MAX_SCRATCH bytes, HVI_E_RANGE when `top` is too low to hold the block. */
hvi_status lixa_layout_argv(struct lixa_block *b, uint64_t top, const char *const *argv,
                            const char *const *envp);

/* ---- one call ------------------------------------------------------------------------------ */
struct lixa_call {
    uint64_t fn;         /* kernel function to call */
    uint64_t args[6];    /* RDI RSI RDX RCX R8 R9 */
    uint64_t data_base;  /* where data goes (16-aligned), <= top; 0 with no data */
    const uint8_t *data; /* bytes to place at data_base (may be NULL: len 0) */
    uint32_t len;        /* <= LIXA_MAX_SCRATCH */
};

/* The job: asked for the first call (first = true) and after each return (rax = the returned
 * value). Return 1 with *call filled to make a call, 0 when done (the job's own result is kept
 * by the job), a negative hvi_status to stop (the task is restored all the same). `top` is the
 * highest address a call's data may reach. */
typedef int (*lixa_next_fn)(void *job, bool first, uint64_t rax, uint64_t top,
                            struct lixa_call *call);
/* May the trigger hit by `vcpu` with `regs` be used? HVI_OK and *stack_lo = the lowest address
 * of that task's stack, or an error (the hit is counted as rejected and the task goes on). */
typedef hvi_status (*lixa_accept_fn)(void *ctx, uint32_t vcpu, const hvi_regs *regs,
                                     uint64_t *stack_lo);

/* ---- the two jobs (lix_agent_jobs.c; pure: unit-tested with hostile return values) ------- */
/* run: call_usermodehelper(argv[0], argv, envp, wait) with argv/envp laid out below `top`. */
struct lixa_run {
    uint64_t fn;                 /* call_usermodehelper */
    int wait;                    /* UMH_WAIT_EXEC (1) or UMH_WAIT_PROC (2) */
    char strs[LIXA_MAX_SCRATCH]; /* copies of the strings (lixa_run_set) */
    const char *argv[LIXA_MAX_ARGS + 1], *envp[LIXA_MAX_ARGS + 1];
    struct lixa_block blk;
    int64_t value; /* the int it returned, sign-extended */
};
/* Copy argv/envp (limits of lixa_layout_argv: HVI_E_LIMIT / HVI_E_INVAL). */
hvi_status lixa_run_set(struct lixa_run *r, const char *const *argv, const char *const *envp);
int lixa_run_next(void *job, bool first, uint64_t rax, uint64_t top, struct lixa_call *c);

#define LIXA_PUT_CHUNK 2048u
#define LIXA_O_WRONLY_CREAT_TRUNC 01101 /* O_WRONLY | O_CREAT | O_TRUNC (x86-64 values) */
/* put: filp_open(path, O_WRONLY|O_CREAT|O_TRUNC, mode); kernel_write(file, chunk, n, &pos) per
 * LIXA_PUT_CHUNK bytes, each chunk and pos staged below `top`; filp_close(file, NULL). An
 * ERR_PTR or non-kernel pointer from filp_open ends the job (value = the errno, or -EFAULT); a
 * write returning anything but its length stops the writes (value = its errno, or -ENOSPC for a
 * short or impossible count) and still closes the file. value = len on success. */
struct lixa_put {
    uint64_t f_open, f_write, f_close;
    const uint8_t *data; /* borrowed */
    size_t len, off;
    uint32_t chunk, mode;
    char path[1024];
    int stage;
    uint64_t file;
    int64_t value, err;
    struct lixa_block blk;
};
int lixa_put_next(void *job, bool first, uint64_t rax, uint64_t top, struct lixa_call *c);

enum lixa_phase { LIXA_IDLE, LIXA_WAIT_TRIGGER, LIXA_IN_CALL, LIXA_DONE };

struct lixa_machine {
    hvi_engine *e;
    enum lixa_phase phase;
    uint64_t trigger_gva[LIXA_MAX_TRIGGERS];
    hvi_hook *trigger[LIXA_MAX_TRIGGERS];
    uint32_t ntriggers;
    uint32_t trigger_index; /* which trigger the borrowed task hit */
    uint64_t pad;           /* int3 padding byte in kernel text: the return address */
    bool pad_set;           /* its breakpoint is placed (a raw one, not a detour: the hook
                               layer's detach removes every detour, and the pad must outlive a
                               detach that a borrowed task still inside a call makes wait) */
    bool handler_added;     /* the machine's HVI_EV_BREAKPOINT handler (kept across runs) */
    lixa_accept_fn accept;
    void *accept_ctx;
    lixa_next_fn next;
    void *job;

    /* the borrowed task */
    uint32_t vcpu;    /* where the trigger hit */
    hvi_regs saved;   /* its registers then (GPR, RIP, RFLAGS) */
    uint64_t save_lo; /* saved stack window [save_lo, saved RSP) */
    uint8_t save_buf[LIXA_SAVE];
    uint64_t ret_slot; /* where the return address sits: RSP at the called function */
    uint64_t top;      /* highest address data may reach: saved RSP - LIXA_REDZONE */

    uint64_t trigger_deadline_ns, call_deadline_ns;
    uint32_t call_timeout_ms;
    hvi_status result; /* HVI_OK, or why it failed */
    bool result_taken; /* a timeout was reported while the task is still inside a call */
    char why[256];
    uint64_t trigger_hits, rejected, calls, wrong_returns;
    uint64_t other_vcpu; /* returns on a vCPU other than the one the task was borrowed on */
    uint64_t t_start_ns, t_trigger_ns, t_done_ns;
    uint64_t last_rax;
};

/* Arm: place the trigger breakpoints (addresses that a detour does not already hold; at least
 * one must be placed) and wait. HVI_E_STATE while another run is active. */
hvi_status lixa_start(struct lixa_machine *m, hvi_engine *e, const uint64_t *triggers, uint32_t n,
                      uint64_t pad, lixa_accept_fn accept, void *actx, lixa_next_fn next, void *job,
                      uint32_t trigger_timeout_ms, uint32_t call_timeout_ms);
/* Deadlines (call it from the engine timer and from polls): a trigger wait past its deadline
 * removes the triggers and fails with HVI_E_TIMEOUT; a call past its deadline is reported as
 * HVI_E_TIMEOUT but stays armed (the task is inside the kernel function: its registers and
 * stack are restored when it returns to the pad, never before). */
void lixa_tick(struct lixa_machine *m);
/* Give up: HVI_OK when nothing of the agent is left in the guest (also when idle), HVI_E_BUSY
 * while the borrowed task is inside a call (it must return to the pad first). */
hvi_status lixa_cancel(struct lixa_machine *m);
/* HVI_E_BUSY while running; then the result (once the task is restored, or a timeout). */
hvi_status lixa_poll(const struct lixa_machine *m);

#endif
