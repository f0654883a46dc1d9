/*
 * hvi simulator backend — a fully in-process guest for tests, fuzzing, benchmarks and demos.
 *
 * The simulator owns guest RAM (one host buffer, optional high-RAM hole), N vCPUs with
 * architectural registers and MSRs, per-4 KiB-frame EPT rights that really deny simulated
 * guest accesses, breakpoints, watchpoints, register exits, single step, pause/resume and
 * exception injection. It fills a complete hvi_glue table (every capability); a test can
 * weaken it with hvi_sim_set_caps() to look like a poorer backend (e.g. QEMU: watchpoints, no
 * EPT) and can make any glue call fail with hvi_sim_fail_call().
 *
 * Guest activity is simulated by explicit calls (hvi_sim_guest_write/read/exec, cr/msr/dtr/xcr
 * writes, vmcall, step); when the activity hits something the engine asked for, the matching
 * hvi_event is built (with the instruction bytes given by the caller) and delivered to the
 * attached engine through hvi_handle_event(); the engine's decision is applied.
 *
 * Page-table builders exist for every paging mode so tests can lay out guests by hand. Flags
 * use the architectural PTE bit positions; the builder always sets P on entries it creates.
 * Intermediate entries are created P|W|U (PAE PDPTEs: P only, their other bits are reserved),
 * so the leaf flags decide the effective rights.
 *
 * All functions return HVI_OK or a negative hvi_status; none aborts. Not thread-safe: one
 * simulator is driven by one thread.
 */
#ifndef HVI_SIM_H
#define HVI_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi/glue.h"
#include "hvi/hvi.h"
#include "hvi/mem.h"
#include "hvi/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hvi_sim hvi_sim;

typedef struct hvi_sim_config {
    uint64_t ram_size;   /* bytes of RAM, multiple of 4 KiB, >= 64 KiB (0 = 16 MiB) */
    uint32_t vcpus;      /* 1..64 (0 = 1) */
    uint64_t hole_start; /* optional hole in the physical map (both 0 = none): GPAs in */
    uint64_t hole_size;  /* [hole_start, hole_start + hole_size) are not RAM; RAM beyond the
                            hole start continues at hole_start + hole_size. 4 KiB aligned. */
} hvi_sim_config;

/* Create / free. hvi_sim_free accepts NULL and does not free an attached engine. */
hvi_status hvi_sim_new(const hvi_sim_config *cfg, hvi_sim **out);
void hvi_sim_free(hvi_sim *sim);

/* ---- glue ---------------------------------------------------------------------------- */
/* Fill `out` with the simulator's glue table; its caps are the current caps (hvi_sim_set_caps). */
hvi_status hvi_sim_glue(hvi_sim *sim, hvi_glue *out);
/* Restrict the capabilities advertised by later hvi_sim_glue() calls and honoured by the
 * simulator (a cleared bit also NULLs the member in the table). Default: HVI_SIM_CAPS_ALL. */
#define HVI_SIM_CAPS_ALL                                                                          \
    ((uint64_t)(HVI_CAP_PHYS_MAP | HVI_CAP_REGS_WRITE | HVI_CAP_MSR_READ | HVI_CAP_MSR_WRITE |   \
                HVI_CAP_DTR | HVI_CAP_EPT | HVI_CAP_REG_EXITS | HVI_CAP_BREAKPOINT |           \
                HVI_CAP_WATCHPOINT | HVI_CAP_SINGLE_STEP | HVI_CAP_PAUSE | HVI_CAP_INJECT |    \
                HVI_CAP_VMCALL | HVI_CAP_TIMER | HVI_CAP_VEC_REGS | HVI_CAP_WATCH_RANGE))
/* The QEMU-like profile: breakpoints, watchpoints, stepping, pause, registers; no EPT, no
 * register exits, no injection. */
#define HVI_SIM_CAPS_QEMU_LIKE                                                                    \
    ((uint64_t)(HVI_CAP_PHYS_MAP | HVI_CAP_REGS_WRITE | HVI_CAP_MSR_READ | HVI_CAP_DTR |          \
                HVI_CAP_BREAKPOINT | HVI_CAP_WATCHPOINT | HVI_CAP_SINGLE_STEP | HVI_CAP_PAUSE | \
                HVI_CAP_TIMER))
/* QEMU under TCG: the QEMU-like profile with software watchpoints of any length and number
 * (HVI_CAP_WATCH_RANGE); a watchpoint event names the watchpoint (start, length), as QEMU's
 * `watch:ADDR` stop reply does, not the bytes written. */
#define HVI_SIM_CAPS_QEMU_TCG (HVI_SIM_CAPS_QEMU_LIKE | (uint64_t)HVI_CAP_WATCH_RANGE)
void hvi_sim_set_caps(hvi_sim *sim, uint64_t caps);
uint64_t hvi_sim_caps(const hvi_sim *sim);

/* Attach the engine events are delivered to (NULL detaches). The engine is borrowed. */
void hvi_sim_attach(hvi_sim *sim, hvi_engine *engine);

/* ---- physical memory ----------------------------------------------------------------- */
uint64_t hvi_sim_ram_size(const hvi_sim *sim);
/* Highest GPA + 1 (RAM size plus the hole). */
uint64_t hvi_sim_phys_limit(const hvi_sim *sim);
/* Direct access (no EPT checks, no events). HVI_E_RANGE when any byte is outside RAM. */
hvi_status hvi_sim_phys_read(hvi_sim *sim, hvi_gpa gpa, void *buf, size_t len);
hvi_status hvi_sim_phys_write(hvi_sim *sim, hvi_gpa gpa, const void *buf, size_t len);
/* Host pointer to the byte at gpa (valid until hvi_sim_free), NULL outside RAM. */
void *hvi_sim_phys_ptr(hvi_sim *sim, hvi_gpa gpa);
/* Allocate one zeroed 4 KiB frame (bump allocator from 1 MiB up, skipping the hole).
 * HVI_E_NOMEM when RAM is exhausted. */
hvi_status hvi_sim_alloc_frame(hvi_sim *sim, hvi_gpa *out);
/* Allocate `count` physically contiguous zeroed frames, first frame aligned to `align` bytes
 * (power of two >= 4 KiB), for large pages. */
hvi_status hvi_sim_alloc_frames(hvi_sim *sim, uint64_t count, uint64_t align, hvi_gpa *out);

/* ---- page tables ------------------------------------------------------------------------ */
/* Architectural PTE bits (P is implied). HVI_SIM_PTE_NX is ignored in 32-bit mode. */
#define HVI_SIM_PTE_P (1ull << 0)
#define HVI_SIM_PTE_W (1ull << 1)
#define HVI_SIM_PTE_U (1ull << 2)
#define HVI_SIM_PTE_PWT (1ull << 3)
#define HVI_SIM_PTE_PCD (1ull << 4)
#define HVI_SIM_PTE_A (1ull << 5)
#define HVI_SIM_PTE_D (1ull << 6)
#define HVI_SIM_PTE_PS (1ull << 7)
#define HVI_SIM_PTE_G (1ull << 8)
#define HVI_SIM_PTE_NX (1ull << 63)

#define HVI_SIM_4K 0x1000ull
#define HVI_SIM_2M 0x200000ull
#define HVI_SIM_4M 0x400000ull
#define HVI_SIM_1G 0x40000000ull

/* New empty top-level table for `mode`; *cr3_out is the CR3 value to load (frame address). */
hvi_status hvi_sim_pt_new(hvi_sim *sim, hvi_paging_mode mode, uint64_t *cr3_out);
/* Map gva -> gpa with `page_size` (4 KiB; 2 MiB for PAE/4/5-level; 4 MiB for 32-bit; 1 GiB for
 * 4/5-level), allocating missing tables. Both addresses must be aligned to page_size; gva must
 * be canonical for the mode. An existing large page in the way is HVI_E_EXISTS. */
hvi_status hvi_sim_map(hvi_sim *sim, uint64_t cr3, hvi_paging_mode mode, hvi_gva gva, hvi_gpa gpa,
                       uint64_t page_size, uint64_t flags);
/* Clear the leaf entry mapping gva (any size). HVI_E_NOT_PRESENT when nothing is mapped. */
hvi_status hvi_sim_unmap(hvi_sim *sim, uint64_t cr3, hvi_paging_mode mode, hvi_gva gva);
/* GPA of the paging entry for gva at `level` (1 = PT ... 5 = PML5), following present
 * non-leaf entries; HVI_E_NOT_PRESENT when a table on the way is missing. Entry size is 4
 * bytes in 32-bit mode, 8 otherwise. Tests edit raw entries through it (phys_read/write). */
hvi_status hvi_sim_pte_gpa(hvi_sim *sim, uint64_t cr3, hvi_paging_mode mode, hvi_gva gva,
                           uint32_t level, hvi_gpa *out);
/* The simulator's own (simple) translation, used for simulated guest accesses. Assumes
 * CR4.PSE=1 in 32-bit mode and EFER.NXE=1 otherwise; no reserved-bit checks. */
hvi_status hvi_sim_translate(hvi_sim *sim, uint64_t cr3, hvi_paging_mode mode, hvi_gva gva,
                             hvi_gpa *out);

/* ---- vCPUs ------------------------------------------------------------------------------- */
uint32_t hvi_sim_vcpu_count(const hvi_sim *sim);
/* Live register block of a vCPU (NULL for a bad index); edit freely. `valid` is ignored. */
hvi_regs *hvi_sim_vcpu_regs(hvi_sim *sim, uint32_t vcpu);
/* Set CR0/CR4/EFER for `mode` (PG|PE, PAE, PSE, LA57, LME|LMA|NXE) and CR3. */
hvi_status hvi_sim_set_paging(hvi_sim *sim, uint32_t vcpu, hvi_paging_mode mode, uint64_t cr3);
/* Paging mode the vCPU's registers select. */
hvi_paging_mode hvi_sim_vcpu_paging(hvi_sim *sim, uint32_t vcpu);
/* MSRs (direct, no exits). Up to 64 distinct MSRs per vCPU; unknown MSRs read as 0. EFER,
 * FS_BASE, GS_BASE and KERNEL_GS_BASE are aliases of the register block. */
hvi_status hvi_sim_set_msr(hvi_sim *sim, uint32_t vcpu, uint32_t msr, uint64_t value);
hvi_status hvi_sim_get_msr(hvi_sim *sim, uint32_t vcpu, uint32_t msr, uint64_t *out);
hvi_status hvi_sim_set_xcr0(hvi_sim *sim, uint32_t vcpu, uint64_t value);
/* XMM0-15 of a vCPU (16 bytes each, little-endian; zero at start). */
hvi_status hvi_sim_set_xmm(hvi_sim *sim, uint32_t vcpu, uint32_t index, const uint8_t value[16]);

/* ---- EPT, breakpoints, watchpoints, exits (state the engine set through the glue) ---- */
uint32_t hvi_sim_ept_rights(hvi_sim *sim, hvi_gpa gpa); /* HVI_EPT_RWX default, 0 outside RAM */
hvi_status hvi_sim_set_ept_rights(hvi_sim *sim, hvi_gpa gpa, uint32_t rights);
bool hvi_sim_breakpoint_at(const hvi_sim *sim, hvi_gva gva);
uint32_t hvi_sim_breakpoint_count(const hvi_sim *sim);
uint32_t hvi_sim_watchpoint_count(const hvi_sim *sim);
bool hvi_sim_exit_enabled(const hvi_sim *sim, uint32_t kind, uint32_t index);
bool hvi_sim_single_step_enabled(const hvi_sim *sim, uint32_t vcpu);
bool hvi_sim_paused(const hvi_sim *sim);
/* Count of EPT frames whose rights differ from RWX (hooks left behind show here). */
uint64_t hvi_sim_restricted_frames(const hvi_sim *sim);

/* Exception injected through the glue and not yet consumed: true and fills the outputs
 * (each optional). hvi_sim_clear_exception() consumes it. */
bool hvi_sim_pending_exception(const hvi_sim *sim, uint32_t vcpu, uint8_t *vector,
                               uint32_t *error_code, uint64_t *cr2);
void hvi_sim_clear_exception(hvi_sim *sim, uint32_t vcpu);

/* ---- simulated guest activity -------------------------------------------------------------
 * Each call acts as vCPU `vcpu` doing one instruction. `reply` (optional) receives the
 * combined decision of the engine (ALLOW when no event was raised). Return: HVI_OK when the
 * access was simulated (allowed or denied, see reply), HVI_E_NOT_PRESENT when the GVA does
 * not translate with the vCPU's CR3 (the simulator then records a #PF as pending exception),
 * HVI_E_RANGE outside RAM, or the first failure of hvi_handle_event (the access is then still
 * simulated with the ALLOW reply the engine gives on failure, as a real backend would, so the
 * guest is never stuck; register writes likewise). RETRY re-runs the access (at
 * most 4 times, then it is treated as DENY). `insn` (optional) are the instruction's bytes,
 * passed in the event.
 *
 * Write: a page whose frame denies W (with HVI_CAP_EPT) raises HVI_EV_EPT_VIOLATION (access
 * W) before the write; the write happens only on ALLOW. Without HVI_CAP_EPT, the write is
 * performed, then every overlapping write/access watchpoint raises HVI_EV_WATCHPOINT with
 * after_access = true. A write crossing pages is checked page by page (all-or-nothing on
 * DENY: no byte is written when any page is denied). */
hvi_status hvi_sim_guest_write(hvi_sim *sim, uint32_t vcpu, hvi_gva gva, const void *data,
                               size_t len, const uint8_t *insn, size_t insn_len,
                               hvi_event_reply *reply);
/* Read: EPT R denial -> violation before the read; read/access watchpoints after it. On DENY
 * `data` is zero-filled. */
hvi_status hvi_sim_guest_read(hvi_sim *sim, uint32_t vcpu, hvi_gva gva, void *data, size_t len,
                              const uint8_t *insn, size_t insn_len, hvi_event_reply *reply);
/* Execute at gva (sets RIP = gva first): a breakpoint at gva raises HVI_EV_BREAKPOINT; a frame
 * denying X raises HVI_EV_EPT_VIOLATION (access X). The instruction bytes in the event are
 * read from guest memory at gva (up to 16 bytes within the mapped pages). */
hvi_status hvi_sim_guest_exec(hvi_sim *sim, uint32_t vcpu, hvi_gva gva, hvi_event_reply *reply);
/* Register writes: raise the exit when enabled (old/new values), apply unless denied. */
hvi_status hvi_sim_cr_write(hvi_sim *sim, uint32_t vcpu, uint32_t cr, uint64_t value,
                            hvi_event_reply *reply);
hvi_status hvi_sim_msr_write(hvi_sim *sim, uint32_t vcpu, uint32_t msr, uint64_t value,
                             hvi_event_reply *reply);
/* which: 0 = IDTR, 1 = GDTR. */
hvi_status hvi_sim_dtr_load(hvi_sim *sim, uint32_t vcpu, uint32_t which, uint64_t base,
                            uint16_t limit, hvi_event_reply *reply);
hvi_status hvi_sim_xcr_write(hvi_sim *sim, uint32_t vcpu, uint32_t xcr, uint64_t value,
                             hvi_event_reply *reply);
/* VMCALL from the guest with the vCPU's current registers (needs HVI_CAP_VMCALL). */
hvi_status hvi_sim_vmcall(hvi_sim *sim, uint32_t vcpu, hvi_event_reply *reply);
/* One single-step completion on vcpu: raises HVI_EV_SINGLE_STEP when stepping is enabled. */
hvi_status hvi_sim_step(hvi_sim *sim, uint32_t vcpu, hvi_event_reply *reply);
/* Timer tick to the attached engine (hvi_timer_tick). HVI_E_STATE without an engine. */
hvi_status hvi_sim_tick(hvi_sim *sim);
/* Deliver an arbitrary event as-is (for tests). */
hvi_status hvi_sim_raise(hvi_sim *sim, const hvi_event *ev, hvi_event_reply *reply);
/* Number of events delivered so far, per type (0 for a bad type). */
uint64_t hvi_sim_event_count(const hvi_sim *sim, uint32_t type);

/* ---- fault injection and accounting ------------------------------------------------------ */
enum hvi_sim_call {
    HVI_SIM_CALL_VCPU_COUNT = 0,
    HVI_SIM_CALL_GET_REGS,
    HVI_SIM_CALL_SET_REGS,
    HVI_SIM_CALL_GET_MSR,
    HVI_SIM_CALL_SET_MSR,
    HVI_SIM_CALL_GET_XCR0,
    HVI_SIM_CALL_MAX_GPFN,
    HVI_SIM_CALL_MAP_GPA,
    HVI_SIM_CALL_UNMAP_GPA,
    HVI_SIM_CALL_SET_EPT,
    HVI_SIM_CALL_GET_EPT,
    HVI_SIM_CALL_ENABLE_EXIT,
    HVI_SIM_CALL_SET_BREAKPOINT,
    HVI_SIM_CALL_SET_WATCHPOINT,
    HVI_SIM_CALL_SINGLE_STEP,
    HVI_SIM_CALL_PAUSE,
    HVI_SIM_CALL_RESUME,
    HVI_SIM_CALL_INJECT,
    HVI_SIM_CALL_GET_VEC_REG,
    HVI_SIM_CALL_COUNT
};
/* After `after_n_successes` more successful calls of `call`, every further call fails with
 * `st` (changing nothing) until reset with st == HVI_OK. */
hvi_status hvi_sim_fail_call(hvi_sim *sim, uint32_t call, uint32_t after_n_successes,
                             hvi_status st);
/* Glue calls made so far (successful or not). */
uint64_t hvi_sim_call_count(const hvi_sim *sim, uint32_t call);
/* map_gpa minus unmap_gpa successes: 0 when the engine holds no mapping. */
int64_t hvi_sim_outstanding_maps(const hvi_sim *sim);

#ifdef __cplusplus
}
#endif

#endif /* HVI_SIM_H */
