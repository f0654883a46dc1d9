/*
 * hvi — Windows guest queries: what the engine sees of a 64-bit Windows guest, read live from
 * its memory with the structure layouts of the selected CAMI entry.
 *
 * Valid after hvi_new_guest() found ntoskrnl (os_hint HVI_OS_WINDOWS, or UNKNOWN when the guest
 * is not Linux). Lists are malloc'd arrays released with hvi_windows_free(). Each call walks
 * guest memory afresh (bounded; a corrupted structure gives HVI_E_FORMAT / HVI_E_LIMIT with a
 * reason in hvi_last_error()). The test bed is the simulator (backends/sim/hvi_sim_windows.h):
 * no real Windows guest has been introspected with this layer yet (docs/windows-guest.md).
 */
#ifndef HVI_WINDOWS_H
#define HVI_WINDOWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hvi_windows_info {
    uint32_t build;              /* NtBuildNumber & 0xFFFF */
    bool kpti;                   /* the syscall entry lies in ntoskrnl's KVASCODE section */
    bool is64;
    bool have_offsets;           /* a CAMI entry was selected: processes/modules available */
    char version[65];            /* the CAMI entry's version string, "" without one */
    uint64_t kernel_base;        /* ntoskrnl image base and SizeOfImage */
    uint32_t kernel_size;
    uint32_t sections;
    uint64_t system_process;     /* *PsInitialSystemProcess */
    uint64_t ps_active_process_head;
    uint64_t ps_loaded_module_list;
    uint64_t service_table;      /* KiServiceTable (0 when not found) and its entry count */
    uint32_t service_count;
    uint64_t hal_dispatch_table; /* 0 when not exported */
} hvi_windows_info;

typedef struct hvi_windows_process {
    uint64_t eprocess;
    uint32_t pid, ppid;          /* UniqueProcessId, InheritedFromUniqueProcessId */
    uint64_t cr3;                /* DirectoryTableBase */
    uint64_t peb;
    uint32_t flags;              /* EPROCESS.Flags */
    bool exiting;                /* Exiting, Delete or VmDeleted set */
    char name[16];               /* ImageFileName (15 characters at most) */
} hvi_windows_process;

typedef struct hvi_windows_module {
    uint64_t entry;              /* KLDR_DATA_TABLE_ENTRY address */
    uint64_t base;               /* DllBase */
    uint32_t size;               /* SizeOfImage */
    bool truncated;              /* a name was longer than its field here */
    char name[128];              /* BaseDllName, UTF-8 */
    char path[256];              /* FullDllName, UTF-8 */
} hvi_windows_module;

typedef struct hvi_windows_function {
    char name[48];               /* "PspInsertProcess" ... */
    uint64_t address;            /* 0 when no CAMI pattern matched */
    uint32_t pattern;            /* index of the matching pattern in the CAMI entry */
    bool detoured;
} hvi_windows_function;

/* One VAD (MMVAD_SHORT) of a process's VA space: [start, end] inclusive, page aligned. */
typedef struct hvi_windows_vad {
    uint64_t node;               /* the MMVAD_SHORT's address */
    uint64_t start, end;         /* StartingVpn << 12, (EndingVpn << 12) | 0xfff (high parts in) */
    uint64_t flags;              /* the VadFlags word as read (FlagsSize bytes) */
    uint32_t type;               /* MI_VAD_TYPE: 0 none (private), 2 image map, ... */
    uint32_t protection;         /* MM protection index 0..31 (4 = READWRITE, 7 = EXECUTE_WRITECOPY) */
    bool no_change;
    uint32_t depth;              /* depth in the tree, root 0 */
    /* image VADs: FILE_OBJECT.FileName of the mapped image ("\\Windows\\System32\\ntdll.dll"),
     * UTF-8, "" when not an image VAD or unreadable */
    bool file_truncated;
    char file[256];
} hvi_windows_vad;

typedef struct hvi_windows_thread {
    uint64_t ethread;
    uint32_t tid;                /* Cid.UniqueThread (CAMI Thread.Id) */
    uint64_t process;            /* KTHREAD.Process (the owner) */
    bool foreign;                /* its Process is not the EPROCESS whose list holds it */
    uint64_t teb;                /* 0 for system threads */
    uint64_t start_address;      /* Win32StartAddress, 0 when the entry has no such field */
    uint8_t state;               /* KTHREAD.State (2 running, 5 waiting, ...) */
} hvi_windows_thread;

/* The user-mode parameters of a process, read through its own DirectoryTableBase. */
typedef struct hvi_windows_process_params {
    uint32_t pid;
    uint64_t peb, params;        /* EPROCESS.Peb, PEB.ProcessParameters */
    bool truncated;              /* a string was longer than its field here */
    char image_path[512];        /* RTL_USER_PROCESS_PARAMETERS.ImagePathName, UTF-8 */
    char command_line[1024];     /* .CommandLine, UTF-8 */
} hvi_windows_process_params;

/* What was found. HVI_E_INVAL for NULL arguments, HVI_E_STATE when no Windows kernel was found.
 * Also valid after hvi_new_guest() refused the build (have_offsets false). */
hvi_status hvi_windows_get_info(hvi_engine *engine, hvi_windows_info *out);

/*
 * Processes on PsActiveProcessHead, in list order (System first). On success *out is a malloc'd
 * array of *count entries (release with hvi_windows_free). HVI_E_STATE: no Windows kernel;
 * HVI_E_UNSUPPORTED: no CAMI entry (no offsets); HVI_E_FORMAT: a link that is not a kernel
 * pointer or whose Blink does not point back; HVI_E_NOT_PRESENT: a node on an absent page;
 * HVI_E_LIMIT: more than 4096 entries; HVI_E_NOMEM. On failure nothing is returned.
 */
hvi_status hvi_windows_list_processes(hvi_engine *engine, hvi_windows_process **out,
                                      size_t *count);
/* Drivers on PsLoadedModuleList (ntoskrnl first); statuses as hvi_windows_list_processes. A name
 * that cannot be read is left empty (the walk goes on). */
hvi_status hvi_windows_list_modules(hvi_engine *engine, hvi_windows_module **out, size_t *count);
/* The kernel functions located by CAMI code patterns (address 0: not located) and whether they
 * are detoured now (HVI_OPT_EVENT_PROCESS). Statuses as above. */
hvi_status hvi_windows_list_functions(hvi_engine *engine, hvi_windows_function **out,
                                      size_t *count);
/* Address of an ntoskrnl export. HVI_E_NOT_FOUND when absent or forwarded, HVI_E_STATE without a
 * kernel, a read status when the export directory is unreadable. */
hvi_status hvi_windows_find_export(hvi_engine *engine, const char *name, uint64_t *addr);
/* Process creation block list (HVI_OPT_BLOCK_EXEC): a process whose ImageFileName equals a name
 * (case-insensitive, first 15 characters as Windows keeps them) is refused in the
 * PspInsertProcess detour: the function returns STATUS_ACCESS_DENIED to its caller at once, and
 * an exec-blocked alert (action denied) is raised. At most 64 names (HVI_E_LIMIT); HVI_E_STATE
 * without a Windows kernel; HVI_E_INVAL for an empty or over-long (>= 64) name. */
hvi_status hvi_windows_block_process_add(hvi_engine *engine, const char *name);
void hvi_windows_block_process_clear(hvi_engine *engine);
/*
 * The VADs of process pid (its EPROCESS.VadRoot tree, in address order; image VADs named by their
 * FILE_OBJECT, a hostile chain to it only leaves the name empty). *out is a malloc'd
 * array (hvi_windows_free); an empty VA space gives HVI_OK with *count 0 and *out NULL.
 * HVI_E_NOT_FOUND: no such pid; HVI_E_UNSUPPORTED: the CAMI entry has no VadRoot/VadShort
 * fields; HVI_E_FORMAT: a child that is not a kernel pointer, out of address order, overlapping
 * its neighbours or reached twice (cycles and shared nodes are caught this way); HVI_E_LIMIT:
 * deeper than 64 or more than 65536 nodes; HVI_E_NOT_PRESENT: a node on an absent page. On
 * failure nothing is returned; hvi_last_error() names the node.
 */
hvi_status hvi_windows_vads(hvi_engine *engine, uint32_t pid, hvi_windows_vad **out,
                            size_t *count);
/* The threads of process pid (KPROCESS.ThreadListHead -> KTHREAD.ThreadListEntry, list order).
 * Statuses as hvi_windows_list_processes, plus HVI_E_NOT_FOUND for no such pid and
 * HVI_E_UNSUPPORTED when the CAMI entry has no ThreadListHead/ThreadListEntry. */
hvi_status hvi_windows_threads(hvi_engine *engine, uint32_t pid, hvi_windows_thread **out,
                               size_t *count);
/* PEB -> ProcessParameters -> ImagePathName and CommandLine of process pid, read through the
 * process's CR3 (user addresses only). HVI_E_NOT_FOUND: no such pid, or no PEB (System);
 * HVI_E_NOT_PRESENT: the PEB or the parameters are paged out; HVI_E_FORMAT: a pointer that is
 * not a canonical user address. An unreadable string leaves its field empty. */
hvi_status hvi_windows_process_params_get(hvi_engine *engine, uint32_t pid,
                                          hvi_windows_process_params *out);
/* The DLLs of process pid: PEB.Ldr -> InLoadOrderModuleList of LDR_DATA_TABLE_ENTRY (the exe
 * first), read through the process's CR3 (entry, base, size, BaseDllName, FullDllName). A PEB
 * without Ldr (loader not run yet): HVI_OK, 0 entries. HVI_E_NOT_FOUND: no such pid or no PEB;
 * HVI_E_FORMAT: a link that is not a user pointer or whose Blink does not point back (cycles
 * are caught so); HVI_E_LIMIT: more than 4096 entries; HVI_E_NOT_PRESENT: a paged-out entry. */
hvi_status hvi_windows_user_modules(hvi_engine *engine, uint32_t pid, hvi_windows_module **out,
                                    size_t *count);
/* The process whose thread runs on vcpu now: GS base (or KERNEL_GS_BASE in user mode) is the
 * KPCR (its Self field must point to itself), Pcr.CurrentThread -> Thread.Process.
 * HVI_E_FORMAT: no KPCR there or a hostile pointer; HVI_E_BACKEND: the registers are
 * unavailable. *thread (optional) gets the KTHREAD. */
hvi_status hvi_windows_current_process(hvi_engine *engine, uint32_t vcpu,
                                       hvi_windows_process *out, uint64_t *thread);
/* "READWRITE", "EXECUTE_WRITECOPY", ... : the name of an MM protection index's low 3 bits (its
 * cache/guard bits 3-4 are not named); never NULL. */
const char *hvi_windows_protection_name(uint32_t protection);
/* "private", "image", "physical", ... for an MI_VAD_TYPE; never NULL. */
const char *hvi_windows_vad_type_name(uint32_t type);
/* Release an array returned above; accepts NULL. */
void hvi_windows_free(void *array);

#ifdef __cplusplus
}
#endif

#endif /* HVI_WINDOWS_H */
