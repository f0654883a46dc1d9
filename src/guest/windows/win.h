/*
 * guest/windows — the Windows guest layer (private header).
 *
 * Life cycle inside the engine: hvi_new_guest() -> win_activate() finds ntoskrnl from the
 * syscall entry (LSTAR) or the IDT, parses its PE headers and exports, reads NtBuildNumber,
 * decides KPTI (the entry lies in the KVASCODE section) and selects the CAMI entry by (build,
 * kpti, is64). Structure offsets (EPROCESS, KLDR_DATA_TABLE_ENTRY, KTHREAD, MMVAD_SHORT, KPCR)
 * come from that entry's km/um fields. Option changes place or remove the process detours (functions located by the
 * entry's code patterns) and the protections (SSDT, IDT, HalDispatchTable, kernel sections).
 *
 * Everything read from the guest is hostile: walks are bounded (WIN_MAX_*), pointers must be
 * canonical kernel addresses, lists are checked for Flink/Blink consistency.
 */
#ifndef HVI_GUEST_WINDOWS_WIN_H
#define HVI_GUEST_WINDOWS_WIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/windows/win_pe.h"
#include "hvi/cami.h"
#include "hvi/hook.h"
#include "hvi/protect.h"
#include "hvi/windows.h"

#define WIN_SCAN_PAGES 8192u     /* discovery: at most 32 MiB scanned back from the entry */
#define WIN_MAX_PROCESSES 4096u  /* list walk bounds */
#define WIN_MAX_MODULES 4096u
#define WIN_MAX_SCAN_SECTION (32u << 20) /* pattern search: bytes per section */
#define WIN_SCAN_BUDGET (64ull << 20)   /* ... and over all sections of one search */
#define WIN_EXITED_RING 64u
#define WIN_MAX_BLOCKS 64u
#define WIN_STATUS_ACCESS_DENIED 0xC0000022u
#define WIN_MAX_VADS 65536u     /* VAD tree: node budget ... */
#define WIN_MAX_VAD_DEPTH 64u   /* ... and depth (an AVL tree of 65536 nodes is < 24 deep) */
#define WIN_MAX_THREADS 65536u

/* Functions the layer locates by CAMI code patterns and detours. */
enum win_fn {
    WIN_FN_PSP_INSERT_PROCESS,
    WIN_FN_MM_CLEAN_PROCESS_ADDRESS_SPACE,
    WIN_FN_MI_PROCESS_LOADER_ENTRY,
    WIN_FN_MI_UNLOAD_SYSTEM_IMAGE,
    WIN_FN_COUNT
};

struct win_offsets {
    uint32_t p_cr3, p_list, p_name, p_id, p_ppid, p_peb, p_flags;  /* Process group */
    uint32_t f_exiting, f_delete, f_vmdeleted;                    /* EprocessFlags masks */
    uint32_t m_base, m_size, m_fullname, m_basename;              /* KLDR_DATA_TABLE_ENTRY */
    /* VA space and threads (0: the entry has no such field) */
    uint32_t p_vadroot, p_threads;                   /* Process.VadRoot, ThreadListHead */
    uint32_t t_process, t_list, t_teb, t_id, t_start, t_state; /* Thread group */
    uint32_t pcr_thread, pcr_prcb;                   /* Pcr.CurrentThread, Pcr.Prcb */
    uint32_t v_left, v_right, v_start, v_start_hi, v_end, v_end_hi; /* VadShort */
    uint32_t v_flags, v_flags_size, v_vpn_size;
    uint32_t vf_type_shift, vf_type_mask, vf_prot_shift, vf_prot_mask, vf_nochange; /* VadFlags */
    bool vad_avl_table; /* VadRoot is an MM_AVL_TABLE (builds before 9600): root = its RightChild */
    /* image VAD file names: MMVAD.Subsection -> SUBSECTION.ControlArea -> CONTROL_AREA.FilePointer
     * (EX_FAST_REF) -> FILE_OBJECT.FileName; 0 for v_subsection when the entry lacks a field */
    uint32_t v_subsection, sub_ctlarea, ctl_file, fo_name_len, fo_name_buf;
};

struct win_located {
    uint64_t gva;              /* 0: not found */
    uint32_t pattern;          /* index of the matching CAMI pattern */
    const hvi_cami_win_function *fn;
    hvi_hook *detour;
    bool failed;               /* placement failed since its option came on (reported once) */
};

struct win_prot {
    hvi_protect *p;
    uint64_t opt;
};

struct win_state {
    bool found;                /* ntoskrnl found and its build read */
    bool active;               /* a CAMI entry was selected */
    uint64_t base;             /* ntoskrnl image base */
    uint64_t entry;            /* the syscall / interrupt entry discovery started from */
    struct win_pe pe;
    uint32_t build;
    bool kpti, is64;
    const hvi_cami_win_entry *cami;
    struct win_offsets off;
    uint64_t system_process, ps_active_head, ps_loaded_list, hal_dispatch;
    uint64_t sdt, ssdt;        /* KeServiceDescriptorTable, KiServiceTable */
    uint32_t ssdt_count;
    struct win_located fn[WIN_FN_COUNT];
    /* protections in force, each tagged with the option bit that placed it */
    struct win_prot *prot;
    size_t nprot, cap_prot;
    uint64_t applied;          /* option bits whose protections/detours are placed */
    char blocks[WIN_MAX_BLOCKS][16]; /* HVI_OPT_BLOCK_EXEC: image names refused at creation */
    uint32_t nblocks;
    uint64_t blocked;
    uint64_t exited[WIN_EXITED_RING];
    uint32_t exited_next;
};

/* The state when ntoskrnl was found (even without a CAMI entry), else NULL. */
struct win_state *win_get(hvi_engine *e);
hvi_status win_activate(hvi_engine *e);

/* Memory helpers (kernel CR3). */
bool win_is_kptr(uint64_t va);
hvi_status win_read_u64(hvi_engine *e, uint64_t va, uint64_t *out);
hvi_status win_read_u32(hvi_engine *e, uint64_t va, uint32_t *out);
hvi_status win_export(hvi_engine *e, const char *name, uint64_t *va);
hvi_status win_pe_reader(void *ctx, uint32_t rva, void *buf, size_t len); /* ctx: win_rd */
struct win_rd {
    hvi_engine *e;
    uint64_t base;
};

/* Discovery (win_discover.c). */
hvi_status win_find_ntoskrnl(hvi_engine *e, uint64_t entry, uint64_t *base, struct win_pe *pe,
                             char *why, size_t why_len);
hvi_status win_read_build(hvi_engine *e, uint64_t base, const struct win_pe *pe, uint32_t *build);

/* Processes and modules (win_process.c). Callbacks return false to stop. */
typedef bool (*win_proc_cb)(const hvi_windows_process *p, void *ctx);
typedef bool (*win_mod_cb)(const hvi_windows_module *m, void *ctx);
hvi_status win_read_process(hvi_engine *e, uint64_t eprocess, hvi_windows_process *out);
/* Next node of the LIST_ENTRY at node: its Flink, a kernel pointer whose Blink is node. */
hvi_status win_list_next(hvi_engine *e, uint64_t node, uint64_t *next);
hvi_status win_find_process_head(hvi_engine *e, uint64_t *head);
hvi_status win_walk_processes(hvi_engine *e, win_proc_cb cb, void *ctx);
hvi_status win_walk_modules(hvi_engine *e, win_mod_cb cb, void *ctx);
/* One KLDR_DATA_TABLE_ENTRY (names included). */
hvi_status win_read_module(hvi_engine *e, uint64_t entry, hvi_windows_module *out);
/* The driver whose [DllBase, DllBase+SizeOfImage) holds va (BaseDllName read for it only);
 * HVI_E_NOT_FOUND when none. */
hvi_status win_module_at(hvi_engine *e, uint64_t va, hvi_windows_module *out);
/* UNICODE_STRING at va -> UTF-8 (at most 255 characters). */
hvi_status win_read_ustr(hvi_engine *e, uint64_t va, char *out, size_t out_len, bool *truncated);

/* VA space, threads, user-mode parameters, current process (win_vad.c, win_thread.c). */
void win_load_va_offsets(struct win_state *w);
/* The EPROCESS of pid (first match on the process list); HVI_E_NOT_FOUND when none. */
hvi_status win_find_pid(hvi_engine *e, uint32_t pid, hvi_windows_process *out);
typedef bool (*win_vad_cb)(const hvi_windows_vad *v, void *ctx);
hvi_status win_walk_vads(hvi_engine *e, const hvi_windows_process *p, win_vad_cb cb, void *ctx);
typedef bool (*win_thread_cb)(const hvi_windows_thread *t, void *ctx);
hvi_status win_walk_threads(hvi_engine *e, const hvi_windows_process *p, win_thread_cb cb,
                            void *ctx);
hvi_status win_read_params(hvi_engine *e, const hvi_windows_process *p,
                           hvi_windows_process_params *out);
/* DLLs of a process: PEB.Ldr InLoadOrderModuleList, in user memory through its CR3. */
hvi_status win_walk_user_modules(hvi_engine *e, const hvi_windows_process *p, win_mod_cb cb,
                                 void *ctx);
/* The process of the thread running on vcpu (KPCR at GS base -> CurrentThread -> Process). */
hvi_status win_current_process(hvi_engine *e, uint32_t vcpu, hvi_windows_process *out,
                               uint64_t *thread);

/* Function patterns and detours (win_func.c). */
const char *win_fn_name(enum win_fn f);
hvi_status win_locate_functions(hvi_engine *e);
hvi_status win_pattern_search(hvi_engine *e, const hvi_cami_win_function *fn, uint64_t *gva,
                              uint32_t *pattern);
/* Place or remove each function's detour as the options need it. */
hvi_status win_detours_apply(hvi_engine *e, uint64_t opts);
const char *win_block_rule(const struct win_state *w, const char *image_name);

/* Protections (win_protect.c). */
hvi_status win_find_ssdt(hvi_engine *e);
hvi_status win_protect_apply(hvi_engine *e, uint64_t opts);
void win_protect_remove_all(hvi_engine *e);

#endif
