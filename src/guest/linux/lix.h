/*
 * hvi guest/linux — the discovered Linux kernel (private header of the layer).
 *
 * Everything here reads attacker-controlled guest memory through a `struct lix_mem` reader,
 * so the walks can be tested on synthetic memory without a backend: the engine's reader is
 * hvi_gva_read() with the kernel CR3 (lix_mem_from_engine()).
 *
 * Life cycle inside the engine: hvi_new_guest() -> lix_activate() discovers the kernel (IDT ->
 * image start -> banner -> kallsyms), selects the CAMI entry by version, fills the offsets;
 * lix_get() then returns the kernel for the other Linux files (events, protection) and for the
 * public query API (include/hvi/linux.h).
 *
 * Every walk is bounded (LIX_MAX_* below) and detects cycles; a failure returns a negative
 * hvi_status and, where an engine is at hand, a message through hvi_fail().
 */
#ifndef HVI_GUEST_LIX_H
#define HVI_GUEST_LIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvi/hvi.h"
#include "hvi/status.h"

/* ---- bounds ------------------------------------------------------------------------------ */
#define LIX_MAX_TASKS 32768u       /* processes + threads in one walk */
#define LIX_MAX_THREADS 4096u      /* threads of one process */
#define LIX_MAX_MODULES 4096u
#define LIX_MAX_VMAS 65536u        /* Linux's default vm.max_map_count */
#define LIX_MAX_MAPLE_DEPTH 16u
#define LIX_MAX_PATH_DEPTH 64u     /* dentries followed for one path */
#define LIX_MAX_SYMS 1000000u
#define LIX_MAX_IMAGE (64ull << 20) /* bytes scanned from the image start */
#define LIX_MAX_CMDLINE 4096u

/* ---- memory reader ----------------------------------------------------------------------- */
typedef hvi_status (*lix_read_fn)(void *ctx, uint64_t gva, void *buf, size_t len);
/* Read through another address space: `cr3` is a page-table base (physical). */
typedef hvi_status (*lix_read_as_fn)(void *ctx, uint64_t cr3, uint64_t gva, void *buf, size_t len);
/* In place: *page = the 4 KiB page holding gva (page-aligned gva), read-only, valid until the
 * next call into the reader; *flags = LIX_VIEW_* of its mapping. HVI_E_NOT_PRESENT for an
 * unmapped page. */
typedef hvi_status (*lix_view_fn)(void *ctx, uint64_t gva, const uint8_t **page, uint32_t *flags);
#define LIX_VIEW_EXEC 1u  /* executable (NX clear) */
#define LIX_VIEW_LARGE 2u /* mapped by a 2 MiB or larger page: the flags hold for the aligned 2 MiB */
struct lix_mem {
    lix_read_fn read;       /* must fail whole (no partial result) for an unmapped address */
    lix_read_as_fn read_as; /* optional: user memory of a process (command lines) */
    void *ctx;
    lix_view_fn view;       /* optional: lets discovery scan the image without copying it */
};

/* A visited set for cycle detection in list walks (open addressing, bounded). */
struct lix_seen {
    uint64_t *slots;
    size_t cap, count;
};
hvi_status lix_seen_init(struct lix_seen *s, size_t max_items);
/* HVI_OK when newly added, HVI_E_EXISTS when already present (a cycle), HVI_E_LIMIT when full. */
hvi_status lix_seen_add(struct lix_seen *s, uint64_t v);
void lix_seen_free(struct lix_seen *s);

/* ---- offsets: filled from the CAMI entry (lix_offsets.c), never hard-coded ---------------- */
struct lix_offsets {
    /* task_struct */
    uint32_t task_tasks, task_pid, task_tgid, task_real_parent, task_mm, task_cred, task_comm;
    uint32_t task_thread_group, task_group_leader;
    uint32_t task_stack;            /* task_struct.stack (thread safeness) */
    uint32_t task_real_cred;        /* optional (0 = unknown): task_struct.real_cred */
    uint32_t thread_size;           /* kernel stack size (x86-64: 16 KiB) */
    /* mm_struct and its maple tree */
    uint32_t mm_mt, mm_pgd, mm_arg_start, mm_arg_end, mm_exe_file;
    uint32_t mt_root;               /* maple_tree.ma_root */
    /* vm_area_struct */
    uint32_t vma_start, vma_end, vma_flags, vma_pgoff, vma_file;
    /* file / dentry / cred */
    uint32_t file_path;             /* struct file.f_path */
    uint32_t dentry_parent, dentry_name; /* d_name is a struct qstr */
    uint32_t cred_uid, cred_gid, cred_euid, cred_egid;
    /* optional (0 = unknown): suid sgid fsuid fsgid (u32), cap_permitted/_effective (u64) */
    uint32_t cred_suid, cred_sgid, cred_fsuid, cred_fsgid, cred_cap_permitted, cred_cap_effective;
    /* module (6.1: core_layout is a struct module_layout) */
    uint32_t mod_list, mod_name, mod_state, mod_core_layout;
    uint32_t mod_name_len;
    uint32_t mod_init_layout;       /* optional (0 = unknown): module.init_layout */
    /* maple node layout (constants of the 6.x ABI, overridable by CAMI) */
    uint32_t maple_node_size;       /* 256 */
    uint32_t maple_range64_slots;   /* 16: pivots at +8, slots at +8 + 8*(slots-1) */
    uint32_t maple_arange64_slots;  /* 10 */
    uint32_t maple_r64_pivot, maple_r64_slot;   /* 8, 128 */
    uint32_t maple_ar64_pivot, maple_ar64_slot; /* 8, 80 */
    /* small embedded structs (defaults: the x86-64 layouts) */
    uint32_t qstr_len, qstr_name;   /* 4, 8 */
    uint32_t path_dentry;           /* 8 */
    uint32_t layout_base, layout_size, layout_text_size, layout_ro_size; /* 0, 8, 12, 16 */
};

/* The field names the CAMI adapter asks for, in struct order (see lix_offsets.c). */
typedef hvi_status (*lix_field_fn)(void *ctx, const char *name, uint32_t *out);
/* Fill every offset through `fn`; HVI_E_NOT_FOUND naming the first missing field in *missing. */
hvi_status lix_offsets_fill(struct lix_offsets *o, lix_field_fn fn, void *ctx,
                            const char **missing);

/* ---- kallsyms ---------------------------------------------------------------------------- */
struct lix_sym {
    uint64_t addr;
    uint32_t name;  /* offset of the NUL-terminated name in the table's names */
    char type;      /* 'T', 't', 'D', ... */
};

struct lix_ks_data; /* private to lix_kallsyms.c: the host copy of the tables, decoded parts */

struct lix_kallsyms {
    /* where the tables were found (guest virtual addresses) */
    uint64_t num_syms_va, names_va, markers_va, token_table_va, token_index_va;
    uint64_t offsets_va, relative_base_va, relative_base;
    uint64_t seqs_va;  /* kallsyms_seqs_of_names (symbol indexes in name order), 0 if unused */
    uint32_t count;    /* kallsyms_num_syms */
    struct lix_ks_data *d;
};
#define LIX_LINEAR_LOOKUPS 16u /* streaming name lookups before the by-name index is built */

/* Locate the 6.1 kallsyms tables inside image[0..len) (a host copy of the kernel image mapped at
 * `image_va`) and keep a copy of the tables only: no name is decoded yet, the caller may free
 * the image. HVI_E_NOT_FOUND naming the table that is missing or inconsistent in *why,
 * HVI_E_INVAL for no image, HVI_E_NOMEM. */
hvi_status lix_kallsyms_parse(struct lix_kallsyms *ks, const uint8_t *image, size_t len,
                              uint64_t image_va, const char **why);
/* The same, starting the token-table search at image offset `from` (a lix_kallsyms_probe hit). */
hvi_status lix_kallsyms_parse_at(struct lix_kallsyms *ks, const uint8_t *image, size_t len,
                                 uint64_t image_va, size_t from, const char **why);
/* The same on a malloc'd window (*win)[0..len) of an image mapped at win_va: the tables must lie
 * in the window, kallsyms_relative_base in [image_va, image_va + image_len). On HVI_OK the
 * buffer is taken over (it becomes the tables' copy) and *win is set to NULL; on failure it
 * stays the caller's. */
hvi_status lix_kallsyms_parse_window(struct lix_kallsyms *ks, uint8_t **win, size_t len,
                                     uint64_t win_va, size_t from, uint64_t image_va,
                                     uint64_t image_len, const char **why);
/* Is there a kallsyms token index in image[from..len)? *at receives its offset. */
bool lix_kallsyms_probe(const uint8_t *image, size_t len, size_t from, size_t *at);
/* Cheap pre-test for a scan: could p[0..32) be 16 consecutive entries of a token index (each
 * step 2..64)? Every token index holds such a run at any 256-byte boundary inside it. */
bool lix_kallsyms_index_hint(const uint8_t *p);
void lix_kallsyms_free(struct lix_kallsyms *ks);
/* Address of the lowest-index symbol named `name` (HVI_E_NOT_FOUND). Through
 * kallsyms_seqs_of_names when the kernel has it (a binary search decoding ~17 names), else the
 * first LIX_LINEAR_LOOKUPS lookups stream over the compressed names and later ones use a by-name
 * index built over the full table; every path gives the same answer. */
hvi_status lix_kallsyms_lookup(struct lix_kallsyms *ks, const char *name, uint64_t *addr);
/* Several names (at most 16) at once, streaming at most once: found[i] says whether names[i]
 * exists, addrs[i] its address (0 when not). HVI_E_INVAL, HVI_E_NOMEM. */
hvi_status lix_kallsyms_lookup_many(const struct lix_kallsyms *ks, const char *const *names,
                                    size_t n, uint64_t *addrs, bool *found);
/* Symbol containing addr (the closest symbol at or below, within the image); *off = addr - sym.
 * Decodes the full table on first use. *name is borrowed until lix_kallsyms_free. */
hvi_status lix_kallsyms_find(const struct lix_kallsyms *ks, uint64_t addr, const char **name,
                             uint64_t *off);
/* The full table (count entries, sorted by address as the kernel keeps them) and the names its
 * entries point into, decoded on first use; borrowed until lix_kallsyms_free. HVI_E_LIMIT when
 * the names would decode to more than 64 MiB. */
hvi_status lix_kallsyms_table(const struct lix_kallsyms *ks, const struct lix_sym **syms,
                              const char **names);
/* Has the full table been decoded? */
bool lix_kallsyms_decoded(const struct lix_kallsyms *ks);

/* ---- the discovered kernel --------------------------------------------------------------- */
struct lix_kernel {
    struct lix_mem mem;
    uint64_t image_start;   /* _text (2 MiB aligned, KASLR slide applied) */
    uint64_t image_end;     /* _end from kallsyms (else the end of the last mapped page scanned) */
    uint64_t slide;         /* image_start - 0xffffffff81000000 */
    char banner[256];       /* "Linux version 6.1.0-... (...) #1 SMP ..." */
    char release[64];       /* "6.1.0-56-amd64" */
    uint32_t version;       /* KERNEL_VERSION(a, b, c) = a << 16 | b << 8 | c */
    struct lix_kallsyms ks;
    struct lix_offsets off;
    bool have_offsets;
    uint64_t init_task;     /* &init_task */
    uint64_t modules;       /* &modules (list head) */
    uint64_t page_offset_base; /* direct-map base (value of the variable), 0 if unknown */
};

/*
 * lix_discover - find the kernel without prior knowledge. `entry` is a kernel code address:
 * LSTAR when the backend can read MSRs, else an IDT handler (lix_idt_handler()). Walks back to
 * the image start (bounded), scans the image for the kallsyms token index (in place through
 * mem->view when there is one), copies only the window around it to parse kallsyms, then takes
 * the banner from linux_banner (else the first "Linux version" in the image), init_task,
 * modules, _end and page_offset_base (its value) by name.
 * Fills *k (free with lix_kernel_free). *why receives a static explanation on failure.
 */
hvi_status lix_discover(struct lix_kernel *k, const struct lix_mem *mem, uint64_t entry,
                        const char **why);
void lix_kernel_free(struct lix_kernel *k);
/* Handler address of IDT vector `vec` at idt_base (64-bit gate). HVI_E_FORMAT if not a gate. */
hvi_status lix_idt_handler(const struct lix_mem *mem, uint64_t idt_base, uint32_t vec,
                           uint64_t *out);
/* Parse "Linux version X.Y.Z..." into release and version number. */
hvi_status lix_parse_banner(const char *banner, char *release, size_t len, uint32_t *version);

/* Bounded reads through the kernel's reader. */
hvi_status lix_read(const struct lix_kernel *k, uint64_t gva, void *buf, size_t len);
hvi_status lix_read_u64(const struct lix_kernel *k, uint64_t gva, uint64_t *out);
hvi_status lix_read_u32(const struct lix_kernel *k, uint64_t gva, uint32_t *out);
/* NUL-terminated string of at most len-1 bytes (reads page by page; stops at a fault). */
hvi_status lix_read_str(const struct lix_kernel *k, uint64_t gva, char *out, size_t len);
/* True for a kernel-half address (>= 0xff00000000000000: LA57's kernel half). */
bool lix_is_kptr(uint64_t p);

/* ---- tasks ------------------------------------------------------------------------------- */
struct lix_task {
    uint64_t addr;          /* task_struct */
    int32_t pid, tgid, ppid;
    char comm[17];
    uint64_t mm;            /* 0 for kernel threads */
    uint32_t uid, gid, euid, egid;
};

hvi_status lix_task_read(const struct lix_kernel *k, uint64_t task, struct lix_task *out);
/* Callback returns false to stop the walk (the walk then returns HVI_OK). */
typedef bool (*lix_task_cb)(const struct lix_task *t, void *ctx);
/* Every process from init_task's `tasks` list (with_threads: every thread of each, from
 * thread_group). init_task (pid 0) itself is not reported. Cycle-safe, bounded. */
hvi_status lix_task_walk(const struct lix_kernel *k, bool with_threads, lix_task_cb cb, void *ctx);
/* Path of mm->exe_file ("" when none), and the command line (NULs replaced by spaces). */
hvi_status lix_task_exe(const struct lix_kernel *k, const struct lix_task *t, char *out,
                        size_t len);
hvi_status lix_task_cmdline(const struct lix_kernel *k, const struct lix_task *t, char *out,
                            size_t len);
/* Full path of a struct file (from its dentry chain to the root of its mount). */
hvi_status lix_file_path(const struct lix_kernel *k, uint64_t file, char *out, size_t len);

/* ---- modules ----------------------------------------------------------------------------- */
struct lix_module {
    uint64_t addr;          /* struct module */
    char name[57];
    uint32_t state;
    uint64_t core_base;
    uint32_t core_size, core_text_size, core_ro_size;
};
typedef bool (*lix_module_cb)(const struct lix_module *m, void *ctx);
hvi_status lix_module_walk(const struct lix_kernel *k, lix_module_cb cb, void *ctx);

/* ---- memory maps (6.x maple tree) --------------------------------------------------------- */
struct lix_vma {
    uint64_t addr;          /* vm_area_struct */
    uint64_t start, end, flags, pgoff, file;
};
typedef bool (*lix_vma_cb)(const struct lix_vma *v, void *ctx);
/* VMAs of `mm` in address order. HVI_E_FORMAT for a bad node type or pivots out of order,
 * HVI_E_LIMIT for a tree deeper than LIX_MAX_MAPLE_DEPTH or more than LIX_MAX_VMAS entries. */
hvi_status lix_vma_walk(const struct lix_kernel *k, uint64_t mm, lix_vma_cb cb, void *ctx);

/* ---- thread safeness (lix_thrsafe.c) -------------------------------------------------------- */
struct lix_thrsafe_hit {
    bool on_cpu;            /* a vCPU's RIP is in the range (vcpu), else a task's stack (pid) */
    uint32_t vcpu;
    int32_t pid;
    char comm[17];
    uint64_t value;         /* the RIP or the stack word found in the range */
    uint64_t where;         /* address of that stack word */
};
/*
 * Is it safe to change the code in [start, end)? No vCPU RIP (rips[0..nrips)) may lie in it
 * and no task's kernel stack (task_struct.stack, thread_size bytes; every thread) may hold a
 * word pointing into it (a return address). Conservative: stale stack words also count.
 * HVI_OK when safe, HVI_E_BUSY with *hit filled when not (retry later), walk errors otherwise.
 */
hvi_status lix_thread_safe_check(const struct lix_kernel *k, const uint64_t *rips, uint32_t nrips,
                                 uint64_t start, uint64_t end, struct lix_thrsafe_hit *hit);

/* Offset in text[0..len) of the first of at least 4 int3 padding bytes right after a `ret`
 * (lix_text_pad.c): never executed, so agents may use it as a stub or return address. */
bool lix_find_int3_pad(const uint8_t *text, size_t len, size_t *off);

/* ---- engine integration (lix_engine.c) ---------------------------------------------------- */
/* Discover the kernel of the attached guest, select the CAMI entry, fill the offsets. Called
 * by hvi_new_guest() for os_hint LINUX or UNKNOWN. HVI_E_UNSUPPORTED names the version when
 * no CAMI entry matches. */
hvi_status lix_activate(hvi_engine *e);
/* Select the support entry for k->release and fill k->off (lix_cami.c). HVI_E_UNSUPPORTED with
 * a message naming the version when no entry matches. */
hvi_status lix_select_offsets(hvi_engine *e, struct lix_kernel *k);
/* lix_thread_safe_check() with the RIPs of every vCPU of the engine's guest. */
hvi_status lix_thread_safe(hvi_engine *e, uint64_t start, uint64_t end, struct lix_thrsafe_hit *hit);
/* The interim offsets file set with hvi_linux_set_offsets_file(), or NULL. */
const char *lix_offsets_path(hvi_engine *e);
/* The discovered kernel, or NULL before a successful discovery (offsets may still be missing:
 * check have_offsets). */
struct lix_kernel *lix_get(hvi_engine *e);
/* The engine's reader: hvi_gva_read() with the kernel CR3 (and read_as for process address
 * spaces). */
struct lix_mem lix_mem_from_engine(hvi_engine *e);

#endif /* HVI_GUEST_LIX_H */
