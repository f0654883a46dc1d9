/* hvi typeinfo — the Linux OS-support generator's rule table.
 *
 * One row per CAMI field: the tags.yaml fields of each group in tags.yaml order, then the
 * extension fields of src/cami/lix_fields_ext.def (same order). Member rows name the kernel
 * struct and member path the Linux guest code means by the field; non-member rows carry their
 * reasoning (docs/gen-linux.md has the table in prose). */
#include <stddef.h>

#include "typeinfo/genlinux_rules.h"

/* Shorthands: O(group, field, struct, member), S(group, field, struct). */
#define O(g, f, s, m) {g, f, GL_OFF, s, m, 0, NULL}
#define S(g, f, s) {g, f, GL_SIZEOF, s, NULL, 0, NULL}
#define K(g, f, v, why) {g, f, GL_CONST, NULL, NULL, v, why}

const struct gl_field hvi_gl_fields[] = {
    /* ---- Info ---- */
    K("Info", "ThreadSize", 0x4000,
      "x86_64 THREAD_SIZE = PAGE_SIZE << THREAD_SIZE_ORDER(2) since 3.15 (no KASAN)"),
    {"Info", "HasModuleLayout", GL_HAS_MEMBER, "module", "core_layout", 0,
     "struct module has core_layout (4.5 .. 6.3)"},
    {"Info", "HasVdsoImageStruct", GL_HAS_STRUCT, "vdso_image", NULL, 0,
     "struct vdso_image is defined"},
    K("Info", "HasSmallSlack", 0, "a property of the text layout, not of types; 0 on 64-bit"),
    {"Info", "HasKsymRelative", GL_VER_FROM, "4.6", NULL, 0,
     "KALLSYMS_BASE_RELATIVE exists and defaults on from 4.6"},
    K("Info", "HasKsymAbsolutePercpu", 1, "x86_64 SMP selects KALLSYMS_ABSOLUTE_PERCPU"),
    K("Info", "HasKsymSize", 0, "kallsyms_sizes table was removed before 4.x"),
    {"Info", "HasAlternateSyscall", GL_VER_FROM, "4.15", NULL, 0,
     "x86_64 entry through entry_SYSCALL_64 with PTI trampoline from 4.15"},
    {"Info", "HasVmaAdjustExpand", GL_HAS_PARAM, "__vma_adjust", "expand", 0,
     "__vma_adjust() takes an `expand` argument (function prototype in BTF/DWARF)"},
    K("Info", "HasVdsoFixed", 1, "x86_64 vdso image is mapped at vvar + fixed offset"),
    {"Info", "HasKsymReducedSize", GL_VER_FROM, "4.20", NULL, 0,
     "kallsyms stores 32-bit relative offsets (reduced size) from 4.20"},
    {"Info", "HasSlackInt3", GL_VER_FROM, "5.0", NULL, 0,
     "function padding filled with int3 rather than nop on 5.x+ x86_64"},
    K("Info", "CredAltered", 0, "set by the engine at run time, not by the support data"),
    /* ---- Module ---- */
    S("Module", "Sizeof", "module"),
    O("Module", "ListOffset", "module", "list"),
    O("Module", "NameOffset", "module", "name"),
    O("Module", "SymbolsOffset", "module", "syms"),
    O("Module", "NumberOfSymbolsOffset", "module", "num_syms"),
    O("Module", "GplSymbolsOffset", "module", "gpl_syms"),
    O("Module", "NumberOfGplSymbolsOffset", "module", "num_gpl_syms"),
    O("Module", "InitOffset", "module", "init"),
    O("Module", "ModuleInitOffset", "module", "module_init"),
    O("Module", "ModuleCoreOffset", "module", "module_core"),
    O("Module", "InitSizeOffset", "module", "init_size"),
    O("Module", "CoreSizeOffset", "module", "core_size"),
    O("Module", "InitTextSizeOffset", "module", "init_text_size"),
    O("Module", "CoreTextSizeOffset", "module", "core_text_size"),
    O("Module", "InitRoSizeOffset", "module", "init_ro_size"),
    O("Module", "CoreRoSizeOffset", "module", "core_ro_size"),
    O("Module", "CoreLayoutOffset", "module", "core_layout"),
    O("Module", "InitLayoutOffset", "module", "init_layout"),
    O("Module", "StateOffset", "module", "state"),
    /* ---- Binprm ---- */
    S("Binprm", "Sizeof", "linux_binprm"),
    O("Binprm", "MmOffset", "linux_binprm", "mm"),
    O("Binprm", "FileOffset", "linux_binprm", "file"),
    O("Binprm", "CredOffset", "linux_binprm", "cred"),
    O("Binprm", "FilenameOffset", "linux_binprm", "filename"),
    O("Binprm", "InterpOffset", "linux_binprm", "interp"),
    O("Binprm", "Vma", "linux_binprm", "vma"),
    O("Binprm", "Argc", "linux_binprm", "argc"),
    /* ---- Vma ---- */
    O("Vma", "VmaStartOffset", "vm_area_struct", "vm_start"),
    O("Vma", "VmaEndOffset", "vm_area_struct", "vm_end"),
    O("Vma", "VmNextOffset", "vm_area_struct", "vm_next"),
    O("Vma", "VmPrevOffset", "vm_area_struct", "vm_prev"),
    O("Vma", "MmOffset", "vm_area_struct", "vm_mm"),
    O("Vma", "FlagsOffset", "vm_area_struct", "vm_flags"),
    O("Vma", "FileOffset", "vm_area_struct", "vm_file"),
    O("Vma", "RbNodeOffset", "vm_area_struct", "vm_rb"),
    /* ---- Dentry ---- */
    O("Dentry", "ParentOffset", "dentry", "d_parent"),
    O("Dentry", "NameOffset", "dentry", "d_name"),
    O("Dentry", "DinameOffset", "dentry", "d_iname"),
    O("Dentry", "InodeOffset", "dentry", "d_inode"),
    O("Dentry", "HashListOffset", "dentry", "d_hash"),
    /* ---- MmStruct ---- */
    O("MmStruct", "PgdOffset", "mm_struct", "pgd"),
    O("MmStruct", "MmUsersOffset", "mm_struct", "mm_users"),
    O("MmStruct", "MmCountOffset", "mm_struct", "mm_count"),
    O("MmStruct", "MmListOffset", "mm_struct", "mmlist"),
    O("MmStruct", "StartCodeOffset", "mm_struct", "start_code"),
    O("MmStruct", "EndCodeOffset", "mm_struct", "end_code"),
    O("MmStruct", "StartDataOffset", "mm_struct", "start_data"),
    O("MmStruct", "EndDataOffset", "mm_struct", "end_data"),
    O("MmStruct", "FlagsOffset", "mm_struct", "flags"),
    O("MmStruct", "ExeFileOffset", "mm_struct", "exe_file"),
    O("MmStruct", "VmaOffset", "mm_struct", "mmap"),
    O("MmStruct", "StartStack", "mm_struct", "start_stack"),
    O("MmStruct", "RbNodeOffset", "mm_struct", "mm_rb"),
    O("MmStruct", "VdsoAddressOffset", "mm_struct", "context.vdso"),
    /* ---- TaskStruct ---- */
    O("TaskStruct", "StackOffset", "task_struct", "stack"),
    O("TaskStruct", "UsageOffset", "task_struct", "usage"),
    O("TaskStruct", "FlagsOffset", "task_struct", "flags"),
    O("TaskStruct", "TasksOffset", "task_struct", "tasks"),
    O("TaskStruct", "PidOffset", "task_struct", "pid"),
    O("TaskStruct", "TgidOffset", "task_struct", "tgid"),
    O("TaskStruct", "RealParentOffset", "task_struct", "real_parent"),
    O("TaskStruct", "ParentOffset", "task_struct", "parent"),
    O("TaskStruct", "MmOffset", "task_struct", "mm"),
    O("TaskStruct", "StartTimeOffset", "task_struct", "start_time"),
    O("TaskStruct", "CommOffset", "task_struct", "comm"),
    O("TaskStruct", "SignalOffset", "task_struct", "signal"),
    O("TaskStruct", "ExitCodeOffset", "task_struct", "exit_code"),
    O("TaskStruct", "ThreadNodeOffset", "task_struct", "thread_node"),
    O("TaskStruct", "ThreadGroupOffset", "task_struct", "thread_group"),
    O("TaskStruct", "CredOffset", "task_struct", "cred"),
    O("TaskStruct", "FsOffset", "task_struct", "fs"),
    O("TaskStruct", "FilesOffset", "task_struct", "files"),
    O("TaskStruct", "NsProxyOffset", "task_struct", "nsproxy"),
    O("TaskStruct", "GroupLeader", "task_struct", "group_leader"),
    O("TaskStruct", "ExitSignal", "task_struct", "exit_signal"),
    O("TaskStruct", "InExecve", "task_struct", "in_execve"),
    {"TaskStruct", "InExecveBit", GL_BIT, "task_struct", "in_execve", 0, NULL},
    O("TaskStruct", "ThreadStructSp", "thread_struct", "sp"),
    O("TaskStruct", "AltStackSp", "task_struct", "sas_ss_sp"),
    /* ---- Fs ---- */
    S("Fs", "Sizeof", "fs_struct"),
    O("Fs", "RootOffset", "fs_struct", "root"),
    O("Fs", "PwdOffset", "fs_struct", "pwd"),
    /* ---- FdTable ---- */
    O("FdTable", "MaxFdsOffset", "fdtable", "max_fds"),
    O("FdTable", "FdOffset", "fdtable", "fd"),
    /* ---- Files ---- */
    S("Files", "Sizeof", "files_struct"),
    O("Files", "FdtOffset", "files_struct", "fdt"),
    /* ---- Inode ---- */
    S("Inode", "Sizeof", "inode"),
    O("Inode", "ImodeOffset", "inode", "i_mode"),
    O("Inode", "UidOffset", "inode", "i_uid"),
    O("Inode", "GidOffset", "inode", "i_gid"),
    /* ---- Socket ---- */
    O("Socket", "StateOffset", "socket", "state"),
    O("Socket", "TypeOffset", "socket", "type"),
    O("Socket", "FlagsOffset", "socket", "flags"),
    O("Socket", "SkOffset", "socket", "sk"),
    /* ---- Sock ---- */
    S("Sock", "Sizeof", "sock"),
    O("Sock", "NumOffset", "sock", "__sk_common.skc_num"),
    O("Sock", "DportOffset", "sock", "__sk_common.skc_dport"),
    O("Sock", "DaddrOffset", "sock", "__sk_common.skc_daddr"),
    O("Sock", "RcvSaddrOffset", "sock", "__sk_common.skc_rcv_saddr"),
    O("Sock", "FamilyOffset", "sock", "__sk_common.skc_family"),
    O("Sock", "StateOffset", "sock", "__sk_common.skc_state"),
    O("Sock", "ProtoOffset", "sock", "__sk_common.skc_prot"),
    O("Sock", "V6DaddrOffset", "sock", "__sk_common.skc_v6_daddr"),
    O("Sock", "V6RcvSaddrOffset", "sock", "__sk_common.skc_v6_rcv_saddr"),
    /* ---- Cred ---- */
    S("Cred", "Sizeof", "cred"),
    O("Cred", "UsageOffset", "cred", "usage"),
    O("Cred", "RcuOffset", "cred", "rcu"),
    /* ---- NsProxy ---- */
    O("NsProxy", "CountOffset", "nsproxy", "count"),
    O("NsProxy", "UtsOffset", "nsproxy", "uts_ns"),
    O("NsProxy", "IpcOffset", "nsproxy", "ipc_ns"),
    O("NsProxy", "MntOffset", "nsproxy", "mnt_ns"),
    O("NsProxy", "PidOffset", "nsproxy", "pid_ns_for_children"),
    O("NsProxy", "NetOffset", "nsproxy", "net_ns"),
    /* ---- Ungrouped ---- */
    O("Ungrouped", "FileDentryOffset", "file", "f_path.dentry"),
    O("Ungrouped", "ProtoNameOffset", "proto", "name"),
    O("Ungrouped", "SignalListHeadOffset", "signal_struct", "thread_head"),
    O("Ungrouped", "SocketAllocVfsInodeOffset", "socket_alloc", "vfs_inode"),
    {"Ungrouped", "Running", GL_CONST, NULL, NULL, 2,
     "value kept from the reference corpus (all entries 2); not a type property"},
    O("Ungrouped", "FilePathOffset", "file", "f_path"),
    O("Ungrouped", "SignalNrThreadsOffset", "signal_struct", "nr_threads"),

    /* ======== extensions (src/cami/lix_fields_ext.def, same order) ======== */
    /* MmStruct: the 6.x VMA maple tree (mm_struct.mm_mt) and what a walker needs of it. */
    O("MmStruct", "MapleTree", "mm_struct", "mm_mt"),
    O("MmStruct", "ArgStartOffset", "mm_struct", "arg_start"),
    O("MmStruct", "ArgEndOffset", "mm_struct", "arg_end"),
    O("MmStruct", "MapleRootOffset", "maple_tree", "ma_root"),
    O("MmStruct", "MapleFlagsOffset", "maple_tree", "ma_flags"),
    S("MmStruct", "MapleNodeSize", "maple_node"),
    O("MmStruct", "MapleRange64PivotOffset", "maple_range_64", "pivot"),
    O("MmStruct", "MapleRange64SlotOffset", "maple_range_64", "slot"),
    {"MmStruct", "MapleRange64Slots", GL_SLOTS, "maple_range_64", "slot", 0, NULL},
    O("MmStruct", "MapleArange64PivotOffset", "maple_arange_64", "pivot"),
    O("MmStruct", "MapleArange64SlotOffset", "maple_arange_64", "slot"),
    {"MmStruct", "MapleArange64Slots", GL_SLOTS, "maple_arange_64", "slot", 0, NULL},
    O("MmStruct", "MapleArange64GapOffset", "maple_arange_64", "gap"),
    {"MmStruct", "MapleTypeLeaf64", GL_ENUM, "maple_leaf_64", NULL, 0, NULL},
    {"MmStruct", "MapleTypeRange64", GL_ENUM, "maple_range_64", NULL, 0, NULL},
    {"MmStruct", "MapleTypeArange64", GL_ENUM, "maple_arange_64", NULL, 0, NULL},
    K("MmStruct", "MapleNodeTypeShift", 3,
      "maple_enode: node type in bits 3..6 (MAPLE_NODE_TYPE_SHIFT 0x03, MASK 0x0F)"),
    K("MmStruct", "MapleNodeTypeMask", 0xF, "MAPLE_NODE_TYPE_MASK"),
    K("MmStruct", "MapleNodePointerMask", 0xFF,
      "nodes are 256-byte aligned: node address = entry & ~MAPLE_NODE_MASK(255)"),
    /* Vma */
    O("Vma", "PgoffOffset", "vm_area_struct", "vm_pgoff"),
    /* Module: module_layout (4.5 .. 6.3) members, the name buffer length */
    O("Module", "LayoutBaseOffset", "module_layout", "base"),
    O("Module", "LayoutSizeOffset", "module_layout", "size"),
    O("Module", "LayoutTextSizeOffset", "module_layout", "text_size"),
    O("Module", "LayoutRoSizeOffset", "module_layout", "ro_size"),
    {"Module", "NameLength", GL_MEMBER_SIZE, "module", "name", 0, NULL},
    /* TaskStruct */
    O("TaskStruct", "RealCredOffset", "task_struct", "real_cred"),
    /* Dentry: struct qstr */
    O("Dentry", "QstrNameOffset", "qstr", "name"),
    O("Dentry", "QstrLenOffset", "qstr", "len"),
    /* Cred: ids */
    O("Cred", "UidOffset", "cred", "uid"),
    O("Cred", "GidOffset", "cred", "gid"),
    O("Cred", "EuidOffset", "cred", "euid"),
    O("Cred", "EgidOffset", "cred", "egid"),
    O("Cred", "SuidOffset", "cred", "suid"),
    O("Cred", "SgidOffset", "cred", "sgid"),
    O("Cred", "FsuidOffset", "cred", "fsuid"),
    O("Cred", "FsgidOffset", "cred", "fsgid"),
    O("Cred", "CapPermittedOffset", "cred", "cap_permitted"),
    O("Cred", "CapEffectiveOffset", "cred", "cap_effective"),
    /* Ungrouped: struct path */
    O("Ungrouped", "PathMntOffset", "path", "mnt"),
    O("Ungrouped", "PathDentryOffset", "path", "dentry"),
    /* Ungrouped: who allocated a vmalloc range (vmap_area_list -> vmap_area.vm -> vm_struct) */
    O("Ungrouped", "VmapAreaStartOffset", "vmap_area", "va_start"),
    O("Ungrouped", "VmapAreaEndOffset", "vmap_area", "va_end"),
    O("Ungrouped", "VmapAreaListOffset", "vmap_area", "list"),
    O("Ungrouped", "VmapAreaVmOffset", "vmap_area", "vm"),
    O("Ungrouped", "VmStructAddrOffset", "vm_struct", "addr"),
    O("Ungrouped", "VmStructSizeOffset", "vm_struct", "size"),
    O("Ungrouped", "VmStructCallerOffset", "vm_struct", "caller"),
};

const size_t hvi_gl_field_count = sizeof(hvi_gl_fields) / sizeof(hvi_gl_fields[0]);

/* Hooks: the Linux guest code's detour list (reference corpus order). Handler 0 = the first
 * engine descriptor with that name hash (one descriptor per function); skip_on_boot 0 (only
 * older engines used it). A row lists candidate names across kernel versions: the first one
 * the kernel describes (BTF FUNC / DWARF subprogram) is emitted; a name ending in '*' is a
 * kallsyms prefix pattern (compiler-suffixed clones such as .isra.0 carry no type info) and is
 * emitted as is. Rows with no existing candidate are left out with a warning. */
const struct gl_hook hvi_gl_hooks[] = {
    {{"run_init_process"}, 0, 0},
    {{"sched_init"}, 0, 0},
    {{"module_param_sysfs_setup"}, 0, 0},
    {{"module_param_sysfs_remove"}, 0, 0},
    {{"begin_new_exec", "flush_old_exec"}, 0, 0},
    {{"do_exit"}, 0, 0},
    {{"cgroup_post_fork"}, 0, 0},
    {{"wake_up_new_task"}, 0, 0},
    {{"arch_ptrace"}, 0, 0},
    {{"compat_arch_ptrace"}, 0, 0},
    {{"process_vm_rw_core*"}, 0, 0},
    {{"vma_mas_store", "__vma_link_rb"}, 0, 0},
    {{"change_protection"}, 0, 0},
    {{"__vma_adjust", "vma_expand"}, 0, 0},
    {{"vma_mas_remove", "__vma_rb_erase"}, 0, 0},
    {{"expand_downwards"}, 0, 0},
    {{"complete_signal"}, 0, 0},
    {{"text_poke", "__text_poke"}, 0, 0},
    {{"commit_creds"}, 0, 0},
    {{"ftrace_write"}, 0, 0},
    {{"crash_kexec", "__crash_kexec"}, 0, 0},
    {{"panic"}, 0, 0},
    {{"arch_jump_label_transform"}, 0, 0},
    {{"__access_remote_vm", "access_remote_vm"}, 0, 0},
};

const size_t hvi_gl_hook_count = sizeof(hvi_gl_hooks) / sizeof(hvi_gl_hooks[0]);
