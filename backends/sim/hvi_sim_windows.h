/*
 * hvi simulator — a synthetic but layout-faithful 64-bit Windows guest, for tests and demos.
 *
 * There is no Windows guest on this project's machines; this builder is the Windows layer's test
 * bed. It lays out, in a simulator's RAM under 4-level paging:
 *   - an ntoskrnl PE32+ image (MZ/PE headers, sections .text, KVASCODE (kpti only), PAGE,
 *     .rdata, .data; an export directory with NtBuildNumber, PsInitialSystemProcess,
 *     PsLoadedModuleList, HalDispatchTable...), whose PAGE section holds the first CAMI code
 *     pattern of PspInsertProcess, MmCleanProcessAddressSpace and MiUnloadSystemImage of the
 *     chosen entry (wildcards filled with varying bytes, behind a near-miss decoy), and whose
 *     .text holds MiProcessLoaderEntry the same way and KiSystemServiceRepeat's two LEAs to
 *     KeServiceDescriptorTable and KiServiceTable;
 *   - EPROCESS objects (System + N) linked on PsActiveProcessHead with the entry's Process
 *     offsets (ListEntry, Id, ParentPid, Name, Cr3, Peb, Flags);
 *   - per process a VAD tree (MMVAD_SHORT, CAMI VadShort/VadFlags layout; MM_AVL_TABLE before
 *     build 9600, RTL_AVL_TREE after), threads on KPROCESS.ThreadListHead (CAMI Thread group),
 *     and in its own address space a PEB with RTL_USER_PROCESS_PARAMETERS (image path, command
 *     line); a KPCR per vCPU at GS base whose CurrentThread is System's thread;
 *   - KLDR_DATA_TABLE_ENTRY objects (ntoskrnl.exe, hal.dll + N) on PsLoadedModuleList with
 *     UTF-16 UNICODE_STRING names;
 *   - an IDT, a kernel stack, LSTAR = KiSystemCall64 (or KiSystemCall64Shadow in KVASCODE).
 * Everything the engine needs it finds by itself (no addresses are handed to it).
 */
#ifndef HVI_SIM_WINDOWS_H
#define HVI_SIM_WINDOWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi/cami.h"
#include "hvi_sim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HVI_SIM_WIN_MAX 32u          /* processes / drivers beyond the fixed ones */
#define HVI_SIM_WIN_VADS 5u          /* VADs of each user process */
#define HVI_SIM_WIN_THREADS 2u       /* threads of each user process (System has 1) */
#define HVI_SIM_WIN_VCPUS 8u         /* vCPUs given a KPCR */

enum hvi_sim_win_flags {
    HVI_SIM_WIN_NO_PATTERNS = 1u << 0, /* leave PspInsertProcess/MmClean... patterns out */
    HVI_SIM_WIN_NO_LSTAR = 1u << 1,    /* LSTAR = 0: discovery must go through the IDT */
};

typedef struct hvi_sim_win_config {
    uint32_t build;          /* a build with an x64 entry (with this kpti) in `cami` */
    bool kpti;
    uint32_t processes;      /* user processes after System, 0..HVI_SIM_WIN_MAX */
    uint32_t drivers;        /* drivers after ntoskrnl.exe and hal.dll, 0..HVI_SIM_WIN_MAX */
    uint32_t flags;
    uint32_t build_override; /* nonzero: write this NtBuildNumber instead (unknown-build tests) */
} hvi_sim_win_config;

typedef struct hvi_sim_win {
    uint64_t cr3;
    uint64_t kernel_base;
    uint32_t image_size;
    uint64_t lstar, idt;
    uint64_t text, page_section;       /* section addresses */
    uint64_t ssdt, sdt;                /* KiServiceTable, KeServiceDescriptorTable */
    uint32_t ssdt_count;
    uint64_t hal_dispatch, ps_active_head, ps_loaded_list;
    uint64_t psp_insert_process, mm_clean_process; /* where the patterns were written, or 0 */
    uint64_t mi_process_loader_entry, mi_unload_system_image;
    uint64_t stack_top, return_address;
    uint32_t nproc;                    /* System + processes */
    uint64_t eprocess[HVI_SIM_WIN_MAX + 1];
    uint32_t pid[HVI_SIM_WIN_MAX + 1], ppid[HVI_SIM_WIN_MAX + 1];
    char name[HVI_SIM_WIN_MAX + 1][16];
    uint32_t ndrv;                     /* ntoskrnl + hal + drivers */
    uint64_t ldr[HVI_SIM_WIN_MAX + 2], drv_base[HVI_SIM_WIN_MAX + 2];
    uint32_t drv_size[HVI_SIM_WIN_MAX + 2];
    char drv_name[HVI_SIM_WIN_MAX + 2][32];
    uint32_t off_list, off_id, off_ppid, off_name, off_cr3, off_peb, off_flags; /* from CAMI */
    uint32_t off_ldr_base, off_ldr_size, off_ldr_fullname, off_ldr_basename;
    /* VA space of process i (System has none): MMVAD_SHORT nodes in address order, a balanced
     * tree rooted at the middle one; [start, end] inclusive */
    uint32_t nvad[HVI_SIM_WIN_MAX + 1];
    uint64_t vad_node[HVI_SIM_WIN_MAX + 1][HVI_SIM_WIN_VADS];
    uint64_t vad_start[HVI_SIM_WIN_MAX + 1][HVI_SIM_WIN_VADS];
    uint64_t vad_end[HVI_SIM_WIN_MAX + 1][HVI_SIM_WIN_VADS];
    uint32_t vad_type[HVI_SIM_WIN_MAX + 1][HVI_SIM_WIN_VADS];
    uint32_t vad_prot[HVI_SIM_WIN_MAX + 1][HVI_SIM_WIN_VADS];
    char vad_file[HVI_SIM_WIN_MAX + 1][HVI_SIM_WIN_VADS][48]; /* image VADs' FILE_OBJECT names */
    /* threads on KPROCESS.ThreadListHead */
    uint32_t nthread[HVI_SIM_WIN_MAX + 1];
    uint64_t ethread[HVI_SIM_WIN_MAX + 1][HVI_SIM_WIN_THREADS];
    uint32_t tid[HVI_SIM_WIN_MAX + 1][HVI_SIM_WIN_THREADS];
    uint64_t teb[HVI_SIM_WIN_MAX + 1][HVI_SIM_WIN_THREADS];
    uint64_t thread_start[HVI_SIM_WIN_MAX + 1][HVI_SIM_WIN_THREADS];
    /* user memory, mapped in the process's own CR3 only: PEB -> RTL_USER_PROCESS_PARAMETERS */
    uint64_t peb[HVI_SIM_WIN_MAX + 1], params[HVI_SIM_WIN_MAX + 1];
    hvi_gpa peb_gpa[HVI_SIM_WIN_MAX + 1];
    char image_path[HVI_SIM_WIN_MAX + 1][64];
    char command_line[HVI_SIM_WIN_MAX + 1][96];
    /* PEB.Ldr InLoadOrderModuleList: the exe and ntdll (at their image VADs) */
    uint32_t numod[HVI_SIM_WIN_MAX + 1];
    uint64_t umod_entry[HVI_SIM_WIN_MAX + 1][2], umod_base[HVI_SIM_WIN_MAX + 1][2];
    uint32_t umod_size[HVI_SIM_WIN_MAX + 1][2];
    char umod_name[HVI_SIM_WIN_MAX + 1][2][20];
    char umod_path[HVI_SIM_WIN_MAX + 1][2][64];
    uint64_t kpcr[HVI_SIM_WIN_VCPUS];  /* GS base of each vCPU; CurrentThread: System's thread */
    uint32_t off_vadroot, off_threads, off_t_process, off_t_list, off_t_teb, off_t_id;
    uint32_t off_t_start, off_t_state, off_pcr_thread, off_pcr_prcb;
    uint32_t off_v_parent, off_v_left, off_v_right, off_v_start, off_v_start_hi, off_v_end;
    uint32_t off_v_end_hi, off_v_flags, v_flags_size, v_vpn_size;
    uint32_t vf_type_shift, vf_prot_shift;
    uint32_t off_v_subsection, off_sub_ctlarea, off_ctl_file, off_fo_name_len, off_fo_name_buf;
    bool vad_avl_table;                /* build < 9600: VadRoot is an MM_AVL_TABLE */
    uint64_t pool_next;                /* next free pool page (builder bookkeeping) */
} hvi_sim_win;

/* Build the guest on a fresh simulator (>= 16 MiB RAM). HVI_E_NOT_FOUND when cami has no x64
 * entry for (build, kpti), HVI_E_INVAL for bad counts, HVI_E_NOMEM when RAM runs out. Sets the
 * paging, LSTAR and IDTR of every vCPU. */
hvi_status hvi_sim_win_build(hvi_sim *sim, const hvi_cami *cami, const hvi_sim_win_config *cfg,
                             hvi_sim_win *out);

/* A new EPROCESS in pool, not linked (what PspInsertProcess receives). */
hvi_status hvi_sim_win_new_eprocess(hvi_sim *sim, hvi_sim_win *w, const char *name, uint32_t pid,
                                    uint32_t ppid, uint64_t *out);

/* A new KLDR_DATA_TABLE_ENTRY in pool (name <= 60 characters), not linked (what
 * MiProcessLoaderEntry receives). */
hvi_status hvi_sim_win_new_ldr(hvi_sim *sim, hvi_sim_win *w, const char *name, uint64_t base,
                               uint32_t size, uint64_t *out);

/* The kernel calls `fn` on vCPU 0 (Windows x64 convention: RCX, RDX, R8, R9, then stack slots
 * 5.. at [RSP + 8 N]; [RSP] = return address): registers and stack are set and the first
 * instruction is executed (hvi_sim_guest_exec), raising the detour's breakpoint if one is set. */
hvi_status hvi_sim_win_call(hvi_sim *sim, hvi_sim_win *w, uint64_t fn, const uint64_t *args,
                            uint32_t nargs, hvi_event_reply *reply);

/* Map `pages` fresh kernel pool pages (writable, NX, after a guard gap); tests build hostile
 * structures in them. */
hvi_status hvi_sim_win_pool(hvi_sim *sim, hvi_sim_win *w, uint32_t pages, uint64_t *va);

/* Make `ethread` the current thread of vcpu (KPCR CurrentThread). */
hvi_status hvi_sim_win_set_current(hvi_sim *sim, const hvi_sim_win *w, uint32_t vcpu,
                                   uint64_t ethread);

/* Write guest kernel memory directly (no EPT, no events): tests corrupt structures with it. */
hvi_status hvi_sim_win_poke(hvi_sim *sim, const hvi_sim_win *w, uint64_t va, const void *data,
                            size_t len);

#ifdef __cplusplus
}
#endif

#endif
