/* hvi simulator — private state shared by the simulator's files. */
#ifndef HVI_SIM_INTERNAL_H
#define HVI_SIM_INTERNAL_H

#include "hvi_sim.h"

#define SIM_MAX_VCPUS 64u
#define SIM_MAX_MSRS 64u
#define SIM_MAX_BP 64u
#define SIM_MAX_WP 16u /* without HVI_CAP_WATCH_RANGE; with it HVI_WATCH_RANGE_MAX */
#define SIM_MAX_EXITS 64u

struct sim_msr {
    uint32_t msr;
    uint64_t value;
};

struct sim_vcpu {
    hvi_regs regs;
    struct sim_msr msrs[SIM_MAX_MSRS];
    uint32_t nmsrs;
    uint64_t xcr0;
    uint8_t xmm[16][16];
    bool stepping;
    bool exc_pending;
    uint8_t exc_vector;
    uint32_t exc_error;
    uint64_t exc_cr2;
};

struct sim_wp {
    hvi_gva gva;
    uint32_t len, kind;
};

struct sim_exit {
    uint32_t kind, index;
};

struct sim_fail {
    bool armed;
    uint32_t left;
    hvi_status st;
};

struct hvi_sim {
    uint8_t *ram;
    uint64_t ram_size;
    uint64_t hole_start, hole_size;
    uint64_t next_frame; /* next GPA the bump allocator hands out */
    uint8_t *ept;        /* rights per RAM frame (indexed by RAM offset / 4 KiB) */
    uint64_t caps;
    hvi_engine *engine;
    struct sim_vcpu *cpu;
    uint32_t nvcpus;
    hvi_gva bp[SIM_MAX_BP];
    uint32_t nbp;
    struct sim_wp wp[HVI_WATCH_RANGE_MAX];
    uint32_t nwp;
    struct sim_exit exits[SIM_MAX_EXITS];
    uint32_t nexits;
    bool paused;
    struct sim_fail fail[HVI_SIM_CALL_COUNT];
    uint64_t calls[HVI_SIM_CALL_COUNT];
    int64_t maps_out;
    uint64_t events[HVI_EV_TYPE_MAX];
    hvi_status event_err; /* first hvi_handle_event failure during the current activity */
};

/* Offset of gpa in sim->ram, or UINT64_MAX outside RAM. */
uint64_t sim_ram_off(const hvi_sim *sim, hvi_gpa gpa);
/* Fault-injection gate: counts the call; returns the injected failure or HVI_OK. */
hvi_status sim_gate(hvi_sim *sim, uint32_t call);
void sim_fill_glue(hvi_sim *sim, hvi_glue *g);

#endif
