/*
 * hvi — the glue interface: the only way from the engine down to a hypervisor.
 *
 * A backend (simulator, QEMU, a memory dump, later Xen/KVM) fills in an
 * hvi_glue table and hands it to hvi_engine_new(). The table is copied; the
 * backend's `ctx` must stay valid until hvi_engine_free() returns.
 *
 * Contract for every function pointer:
 *   - `ctx` is the backend's own context, passed back unchanged.
 *   - returns HVI_OK or a negative hvi_status (usually HVI_E_BACKEND,
 *     HVI_E_RANGE for a GPA outside guest RAM, HVI_E_UNSUPPORTED when the
 *     capability is missing). A failing call changes nothing.
 *   - a NULL pointer means "not implemented"; the matching capability bit
 *     must then be clear. hvi_glue_check() enforces this.
 *
 * Versioning: `version` must equal HVI_GLUE_VERSION and `size` must be at
 * least the size of the version-1 table; members are only ever appended.
 */
#ifndef HVI_GLUE_H
#define HVI_GLUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HVI_GLUE_VERSION 1u

typedef uint64_t hvi_gpa; /* guest physical address */
typedef uint64_t hvi_gva; /* guest virtual (linear) address */

#define HVI_PAGE_SIZE 4096u
#define HVI_PAGE_MASK (~(uint64_t)(HVI_PAGE_SIZE - 1))

/* General purpose register indices, in the hardware encoding order. */
enum hvi_gpr {
    HVI_RAX, HVI_RCX, HVI_RDX, HVI_RBX, HVI_RSP, HVI_RBP, HVI_RSI, HVI_RDI,
    HVI_R8, HVI_R9, HVI_R10, HVI_R11, HVI_R12, HVI_R13, HVI_R14, HVI_R15,
    HVI_GPR_COUNT
};

/* Segment register indices, hardware encoding order. */
enum hvi_seg { HVI_ES, HVI_CS, HVI_SS, HVI_DS, HVI_FS, HVI_GS, HVI_SEG_COUNT };

typedef struct hvi_segment {
    uint64_t base;
    uint32_t limit;
    uint16_t selector;
    uint16_t ar; /* access rights in VMCS layout (type, S, DPL, P, AVL, L, D/B, G); 0 if unknown */
} hvi_segment;

/* Which parts of hvi_regs a backend filled in or a caller wants written. */
enum hvi_regs_part {
    HVI_REGS_GPR = 1u << 0,   /* gpr[], rip, rflags */
    HVI_REGS_CR = 1u << 1,    /* cr0, cr2, cr3, cr4, cr8 */
    HVI_REGS_EFER = 1u << 2,  /* efer */
    HVI_REGS_SEG = 1u << 3,   /* seg[] selectors (bases for FS/GS only, see below) */
    HVI_REGS_SEGBASE = 1u << 4, /* seg[].base/limit/ar for all segments */
    HVI_REGS_FSGS = 1u << 5,  /* fs_base, gs_base, kernel_gs_base */
    HVI_REGS_DTR = 1u << 6,   /* idtr/gdtr base and limit */
};

/* The architectural vCPU state the engine uses. */
typedef struct hvi_regs {
    uint32_t valid; /* OR of hvi_regs_part: what is filled in */
    uint64_t gpr[HVI_GPR_COUNT];
    uint64_t rip;
    uint64_t rflags;
    uint64_t cr0, cr2, cr3, cr4, cr8;
    uint64_t efer;
    hvi_segment seg[HVI_SEG_COUNT];
    uint64_t fs_base, gs_base, kernel_gs_base;
    uint64_t idtr_base, gdtr_base;
    uint16_t idtr_limit, gdtr_limit;
} hvi_regs;

/* Model-specific registers the engine knows by name. */
#define HVI_MSR_SYSENTER_CS 0x174u
#define HVI_MSR_SYSENTER_ESP 0x175u
#define HVI_MSR_SYSENTER_EIP 0x176u
#define HVI_MSR_EFER 0xC0000080u
#define HVI_MSR_STAR 0xC0000081u
#define HVI_MSR_LSTAR 0xC0000082u
#define HVI_MSR_CSTAR 0xC0000083u
#define HVI_MSR_FMASK 0xC0000084u
#define HVI_MSR_FS_BASE 0xC0000100u
#define HVI_MSR_GS_BASE 0xC0000101u
#define HVI_MSR_KERNEL_GS_BASE 0xC0000102u

/* EPT access rights of one 4 KiB guest frame (combine with |). */
enum hvi_ept_rights {
    HVI_EPT_R = 1u << 0,
    HVI_EPT_W = 1u << 1,
    HVI_EPT_X = 1u << 2,
    HVI_EPT_RWX = HVI_EPT_R | HVI_EPT_W | HVI_EPT_X,
};

/* Register exits the engine can ask for. */
enum hvi_exit_kind {
    HVI_EXIT_CR = 1,  /* index: control register number (0, 3, 4) */
    HVI_EXIT_MSR = 2, /* index: MSR number */
    HVI_EXIT_DTR = 3, /* index: 0 = IDTR, 1 = GDTR (loads through LIDT/LGDT) */
    HVI_EXIT_XCR = 4, /* index: XCR number (0) */
};

/* Watchpoint kinds. */
enum hvi_watch_kind { HVI_WATCH_WRITE = 1, HVI_WATCH_READ = 2, HVI_WATCH_ACCESS = 3 };

/* Watchpoints a backend with HVI_CAP_WATCH_RANGE offers at least, and the longest one. */
#define HVI_WATCH_RANGE_MAX 256u
#define HVI_WATCH_RANGE_MAX_LEN (64u << 20)

/* Capability bits: what a backend can do. The engine adapts to them. */
enum hvi_caps {
    HVI_CAP_PHYS_MAP = 1u << 0,     /* map_gpa/unmap_gpa */
    HVI_CAP_REGS_WRITE = 1u << 1,   /* set_regs */
    HVI_CAP_MSR_READ = 1u << 2,     /* get_msr */
    HVI_CAP_MSR_WRITE = 1u << 3,    /* set_msr */
    HVI_CAP_DTR = 1u << 4,          /* get_regs fills HVI_REGS_DTR */
    HVI_CAP_EPT = 1u << 5,          /* set/get_ept_rights really deny access */
    HVI_CAP_REG_EXITS = 1u << 6,    /* enable_exit */
    HVI_CAP_BREAKPOINT = 1u << 7,   /* hypervisor breakpoints, invisible to the guest */
    HVI_CAP_WATCHPOINT = 1u << 8,   /* write watchpoints (reported after the write) */
    HVI_CAP_SINGLE_STEP = 1u << 9,  /* single-step a vCPU */
    HVI_CAP_PAUSE = 1u << 10,       /* pause/resume all vCPUs */
    HVI_CAP_INJECT = 1u << 11,      /* inject an exception (e.g. #PF for swapmem) */
    HVI_CAP_VMCALL = 1u << 12,      /* the guest can call the engine with VMCALL */
    HVI_CAP_TIMER = 1u << 13,       /* the backend calls hvi_timer_tick() periodically */
    HVI_CAP_VEC_REGS = 1u << 14,    /* get_vec_reg (appended member: the table's size must cover it) */
    /* set_watchpoint takes any length (1 byte .. 64 MiB, any alignment) and many watchpoints
     * (HVI_WATCH_RANGE_MAX at least); the HVI_EV_WATCHPOINT event then names the watchpoint's
     * whole range (gva = its start, len = its length), not the bytes written. Without it a
     * watchpoint is 1/2/4/8 naturally aligned bytes and a handful exist (debug registers). */
    HVI_CAP_WATCH_RANGE = 1u << 15,
};

typedef struct hvi_glue {
    uint32_t version;      /* HVI_GLUE_VERSION */
    uint32_t size;         /* sizeof(hvi_glue) as the backend was compiled */
    uint64_t caps;         /* OR of hvi_caps */
    void *ctx;             /* backend context, first argument of every call */
    const char *name;      /* short backend name for messages ("sim", "qemu") */

    /* --- vCPUs and registers --- */
    hvi_status (*vcpu_count)(void *ctx, uint32_t *out);
    /* Fill `out` with at least the parts in `want` (OR of hvi_regs_part); out->valid says what is filled. */
    hvi_status (*get_regs)(void *ctx, uint32_t vcpu, uint32_t want, hvi_regs *out);
    /* Write the parts of `regs` named by `parts`. */
    hvi_status (*set_regs)(void *ctx, uint32_t vcpu, uint32_t parts, const hvi_regs *regs);
    hvi_status (*get_msr)(void *ctx, uint32_t vcpu, uint32_t msr, uint64_t *out);
    hvi_status (*set_msr)(void *ctx, uint32_t vcpu, uint32_t msr, uint64_t value);
    hvi_status (*get_xcr0)(void *ctx, uint32_t vcpu, uint64_t *out);

    /* --- guest physical memory --- */
    /* Largest guest physical frame number that may be mapped. */
    hvi_status (*max_gpfn)(void *ctx, uint64_t *out);
    /* Map the 4 KiB frame holding `gpa` (must be page aligned); `*out` points at its first byte,
     * readable and writable by the engine without going through EPT rights. */
    hvi_status (*map_gpa)(void *ctx, hvi_gpa gpa, void **out);
    hvi_status (*unmap_gpa)(void *ctx, hvi_gpa gpa, void *ptr);

    /* --- EPT rights per 4 KiB frame --- */
    hvi_status (*set_ept_rights)(void *ctx, hvi_gpa gpa, uint32_t rights);
    hvi_status (*get_ept_rights)(void *ctx, hvi_gpa gpa, uint32_t *out);

    /* --- exits, breakpoints, watchpoints, stepping --- */
    hvi_status (*enable_exit)(void *ctx, uint32_t kind, uint32_t index, bool enable);
    /* Hypervisor breakpoint on a linear address, on every vCPU; invisible to the guest. */
    hvi_status (*set_breakpoint)(void *ctx, hvi_gva gva, bool enable);
    hvi_status (*set_watchpoint)(void *ctx, hvi_gva gva, uint32_t len, uint32_t kind, bool enable);
    hvi_status (*single_step)(void *ctx, uint32_t vcpu, bool enable);

    /* --- execution control --- */
    hvi_status (*pause)(void *ctx);
    hvi_status (*resume)(void *ctx);
    /* Inject exception `vector` on the next entry of `vcpu`; cr2 is used for #PF. */
    hvi_status (*inject_exception)(void *ctx, uint32_t vcpu, uint8_t vector, uint32_t error_code,
                                   uint64_t cr2);

    /* --- appended members: a table whose `size` ends before one of them does not have it --- */
    /* The 16 bytes of vector register XMM`index` (0-15) of `vcpu`, little-endian. Lets the engine
     * know the value an SSE store writes (hvi_decode_write_value). HVI_CAP_VEC_REGS. */
    hvi_status (*get_vec_reg)(void *ctx, uint32_t vcpu, uint32_t index, uint8_t out[16]);
    /* Optional (NULL: the backend caches no translated code). The engine changed guest code
     * through map_gpa, behind the hypervisor's back: `bytes` (len <= 4096) now sit at the kernel
     * linear address `gva`. A backend that caches translated guest code (QEMU/TCG does not see
     * writes to its RAM file) writes them again through its own memory path so that the cache
     * drops what it translated from the old bytes. */
    hvi_status (*code_written)(void *ctx, hvi_gva gva, const void *bytes, uint32_t len);
} hvi_glue;

/*
 * hvi_glue_check - validate a glue table before use.
 * Returns HVI_E_INVAL for a NULL table or missing mandatory members (vcpu_count, get_regs,
 * map_gpa, unmap_gpa), HVI_E_VERSION for a version other than HVI_GLUE_VERSION or a size
 * smaller than the version-1 table, and HVI_E_INVAL when a capability bit is set but its
 * function pointer is NULL.
 */
hvi_status hvi_glue_check(const hvi_glue *glue);

#ifdef __cplusplus
}
#endif

#endif /* HVI_GLUE_H */
