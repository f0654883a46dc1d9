/* hvi QEMU backend — the session object shared by glue.c and run.c (private). */
#ifndef HVI_QEMU_SESSION_H
#define HVI_QEMU_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "hvi_qemu.h"
#include "qmp.h"
#include "rsp.h"

#define HVI_QEMU_NMSR 9 /* MSRs in the device-state snapshot (msr.c) */

struct hvi_qemu_wp {
    uint64_t gva;
    uint32_t len, kind;
};

struct hvi_qemu {
    hvi_rsp *rsp;
    hvi_qmp *qmp;
    uint8_t *ram;
    uint64_t ram_bytes, low_bytes; /* low_bytes: RAM below 4 GiB (file offset == GPA) */
    uint32_t nvcpu;
    uint32_t tid[HVI_QEMU_MAX_VCPUS];
    uint32_t cur_g;     /* thread selected with Hg (0 = unknown) */
    uint32_t last_vcpu; /* vCPU of the last stop */
    bool running;
    bool dead; /* the peer went away; only close() is left */
    int timeout_ms;
    uint64_t bp[HVI_QEMU_MAX_BREAKPOINTS];
    uint32_t nbp;
    struct hvi_qemu_wp wp[HVI_QEMU_MAX_WATCHPOINTS_TCG];
    uint32_t nwp;
    bool wp_range; /* TCG (QMP query-kvm: disabled): watchpoints of any length, up to
                      HVI_QEMU_MAX_WATCHPOINTS_TCG; else 4 of 1/2/4/8 bytes (HVI_CAP_WATCH_RANGE) */
    bool step[HVI_QEMU_MAX_VCPUS];
    /* A breakpoint event was delivered for vCPU v at hit_rip[v] and not yet stepped over: only
     * then is a breakpoint at its RIP stepped over on resume; one not yet delivered is left for
     * the vCPU to hit again (and be reported) when continued. */
    bool hit_valid[HVI_QEMU_MAX_VCPUS];
    uint64_t hit_rip[HVI_QEMU_MAX_VCPUS];
    char pending[512]; /* a stop reply read while pausing, delivered by run() */
    bool has_pending;
    bool in_event;          /* hvi_qemu_run() is inside hvi_handle_event() */
    uint32_t pause_depth;   /* glue pause() calls not yet matched by resume() */
    uint32_t step_retries;  /* steps QEMU reported before the vCPU moved (stepped again) */
    uint32_t foreign_stops; /* replies to a step that named another vCPU */
    unsigned bp_type;       /* Z type of our breakpoints: 0 (TCG: invisible anyway), 1 under KVM
                               (hardware: 4 at most, shared with watchpoints; Z0 would write an
                               int3 into guest memory) */
    uint32_t max_bp;
    uint64_t stops; /* stop replies seen: a snapshot belongs to one stop */
    /* MSR reads from a device-state snapshot (msr.c) */
    bool msr_on, msr_ready, msr_valid;
    uint64_t msr_stop;     /* `stops` when the snapshot was taken */
    uint32_t msr_verified; /* vCPUs whose section matched their gdbstub registers */
    uint64_t msr[HVI_QEMU_MAX_VCPUS][HVI_QEMU_NMSR];
    uint64_t msr_check[HVI_QEMU_MAX_VCPUS][6];
    char err[256];
};

/* Record why the session failed (and mark it dead for CLOSED/FORMAT/TIMEOUT/IO). */
hvi_status hvi_qemu_sfail(struct hvi_qemu *q, hvi_status st, const char *what);
/* Wait for a stop reply (copied into buf). */
hvi_status hvi_qemu_wait_stop(struct hvi_qemu *q, int timeout_ms, char *buf, size_t len);
/* Make sure the VM is stopped; *was_running tells whether to resume afterwards. */
hvi_status hvi_qemu_stop_now(struct hvi_qemu *q, bool *was_running);
/* Resume every vCPU (stepping over a breakpoint at the stopped vCPU's RIP first). */
hvi_status hvi_qemu_resume_all(struct hvi_qemu *q);
hvi_status hvi_qemu_select(struct hvi_qemu *q, uint32_t vcpu);
hvi_status hvi_qemu_read_rip(struct hvi_qemu *q, uint32_t vcpu, uint64_t *rip);
/* Index of the vCPU with thread id tid, or -1. */
int hvi_qemu_vcpu_of(const struct hvi_qemu *q, uint32_t tid);
bool hvi_qemu_is_bp(const struct hvi_qemu *q, uint64_t gva);
/* Step vCPU v once (a breakpoint at its RIP lifted meanwhile); the stop reply goes to reply. */
hvi_status hvi_qemu_step_once(struct hvi_qemu *q, uint32_t v, char *reply, size_t len);
/* glue get_msr (msr.c) */
hvi_status hvi_qemu_get_msr(void *ctx, uint32_t vcpu, uint32_t msr, uint64_t *out);
/* The fields of CPU `index`'s section in a migration stream, or NULL (absent or ambiguous). */
const uint8_t *hvi_qemu_snapshot_cpu(const uint8_t *buf, size_t len, uint32_t index,
                                     uint32_t *version);

#endif
