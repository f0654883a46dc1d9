/* Mock kernel structures with the names and shapes the Linux generator reads (anonymous
 * unions, nested structs, bitfields, arrays, an enum). Compiled with -g by the typeinfo test;
 * its BTF is added with `pahole -J`, so BTF and DWARF describe the same layout. */
struct list_head { struct list_head *next, *prev; };
struct qstr { union { struct { unsigned int hash; unsigned int len; }; unsigned long hash_len; }; const unsigned char *name; };
struct path { void *mnt; struct dentry *dentry; };
struct dentry { unsigned int d_flags; int d_seq; struct list_head d_hash; struct dentry *d_parent; struct qstr d_name; void *d_inode; unsigned char d_iname[32]; };
struct module_layout { void *base; unsigned int size, text_size, ro_size, ro_after_init_size; };
struct module { int state; struct list_head list; char name[56]; const void *syms; unsigned int num_syms; const void *gpl_syms; unsigned int num_gpl_syms; int (*init)(void); struct module_layout core_layout, init_layout; };
enum maple_type { maple_dense, maple_leaf_64, maple_range_64, maple_arange_64 };
struct maple_tree { union { unsigned int ma_lock; void *ma_external_lock; }; void *ma_root; unsigned int ma_flags; };
struct maple_range_64 { void *parent; unsigned long pivot[15]; union { void *slot[16]; struct { void *pad[15]; unsigned short meta; }; }; };
struct maple_arange_64 { void *parent; unsigned long pivot[9]; void *slot[10]; unsigned long gap[10]; unsigned short meta; };
struct maple_node { union { struct { void *parent; void *slot[31]; }; struct maple_range_64 mr64; struct maple_arange_64 ma64; }; };
struct mm_context { unsigned long ctx_id; void *vdso; };
struct mm_struct { struct { struct maple_tree mm_mt; unsigned long mmap_base; void *pgd; int mm_users; int mm_count; struct list_head mmlist; unsigned long start_code, end_code, start_data, end_data, start_stack, arg_start, arg_end; unsigned long flags; struct mm_context context; void *exe_file; }; };
struct vm_area_struct { unsigned long vm_start, vm_end; struct mm_struct *vm_mm; unsigned long vm_page_prot; unsigned long vm_flags; unsigned long vm_pgoff; void *vm_file; };
struct thread_struct { unsigned long tls[3]; unsigned long sp; };
struct cred { int usage; unsigned int uid, gid, suid, sgid, euid, egid; union { int non_rcu; struct { void *next; void *func; } rcu; }; };
struct task_struct { unsigned int __state; void *stack; int usage; unsigned int flags; struct list_head tasks; struct mm_struct *mm; int exit_code, exit_signal; unsigned sched_reset_on_fork:1; unsigned sched_contributes_to_load:1; unsigned in_execve:1; unsigned in_iowait:1; int pid, tgid; struct task_struct *real_parent, *parent, *group_leader; struct list_head thread_group, thread_node; unsigned long start_time; const struct cred *real_cred, *cred; char comm[16]; void *fs, *files, *nsproxy, *signal; unsigned long sas_ss_sp; struct thread_struct thread; };

struct task_struct mock_task;
struct module mock_module;
struct maple_node mock_node;
struct vm_area_struct mock_vma;
struct dentry mock_dentry;
struct path mock_path;
enum maple_type mock_type;

int do_exit(long code);
int do_exit(long code) { return (int)code + mock_task.pid; }
int __vma_adjust(struct vm_area_struct *vma, unsigned long start, struct vm_area_struct *expand);
int __vma_adjust(struct vm_area_struct *vma, unsigned long start, struct vm_area_struct *expand)
{
    return (int)(vma->vm_start + start) + (expand != 0);
}
int commit_creds(struct cred *c);
int commit_creds(struct cred *c) { return c->usage; }

/* The banner the generator reads the release from (as linux_banner in .rodata). */
const char linux_banner[] = "Linux version 6.1.0-mock (hvi@test) (gcc) #1 SMP PREEMPT_DYNAMIC\n";
