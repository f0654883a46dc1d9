/* hvi guest/linux — the offsets struct and the names it is filled by (the CAMI adapter asks
 * the support data for each one; nothing is hard-coded). The maple node layout has 6.x ABI
 * defaults that CAMI may override. */
#include <stddef.h>
#include <string.h>

#include "guest/linux/lix.h"

struct field {
    const char *name;
    size_t off;
    bool optional;
};

#define F(n, m) {n, offsetof(struct lix_offsets, m), false}
#define OPT(n, m) {n, offsetof(struct lix_offsets, m), true}
static const struct field fields[] = {
    F("task_struct.tasks", task_tasks), F("task_struct.pid", task_pid),
    F("task_struct.tgid", task_tgid), F("task_struct.real_parent", task_real_parent),
    F("task_struct.mm", task_mm), F("task_struct.cred", task_cred),
    F("task_struct.comm", task_comm), F("task_struct.thread_group", task_thread_group),
    OPT("task_struct.group_leader", task_group_leader), OPT("task_struct.stack", task_stack),
    OPT("task_struct.real_cred", task_real_cred),
    OPT("kernel.thread_size", thread_size),
    F("mm_struct.mm_mt", mm_mt), F("mm_struct.pgd", mm_pgd),
    F("mm_struct.arg_start", mm_arg_start), F("mm_struct.arg_end", mm_arg_end),
    F("mm_struct.exe_file", mm_exe_file), OPT("maple_tree.ma_root", mt_root),
    F("vm_area_struct.vm_start", vma_start), F("vm_area_struct.vm_end", vma_end),
    F("vm_area_struct.vm_flags", vma_flags), F("vm_area_struct.vm_pgoff", vma_pgoff),
    F("vm_area_struct.vm_file", vma_file), F("file.f_path", file_path),
    F("dentry.d_parent", dentry_parent), F("dentry.d_name", dentry_name),
    F("cred.uid", cred_uid), F("cred.gid", cred_gid), F("cred.euid", cred_euid),
    F("cred.egid", cred_egid), OPT("cred.suid", cred_suid), OPT("cred.sgid", cred_sgid),
    OPT("cred.fsuid", cred_fsuid), OPT("cred.fsgid", cred_fsgid),
    OPT("cred.cap_permitted", cred_cap_permitted), OPT("cred.cap_effective", cred_cap_effective),
    F("module.list", mod_list), F("module.name", mod_name),
    F("module.state", mod_state), F("module.core_layout", mod_core_layout),
    OPT("module.name_len", mod_name_len), OPT("module.init_layout", mod_init_layout),
    OPT("maple_node.size", maple_node_size),
    OPT("maple_range_64.slots", maple_range64_slots),
    OPT("maple_arange_64.slots", maple_arange64_slots),
    OPT("maple_range_64.pivot", maple_r64_pivot), OPT("maple_range_64.slot", maple_r64_slot),
    OPT("maple_arange_64.pivot", maple_ar64_pivot), OPT("maple_arange_64.slot", maple_ar64_slot),
    OPT("qstr.len", qstr_len), OPT("qstr.name", qstr_name), OPT("path.dentry", path_dentry),
    OPT("module_layout.base", layout_base), OPT("module_layout.size", layout_size),
    OPT("module_layout.text_size", layout_text_size),
    OPT("module_layout.ro_size", layout_ro_size),
};
#undef F
#undef OPT

hvi_status lix_offsets_fill(struct lix_offsets *o, lix_field_fn fn, void *ctx,
                            const char **missing)
{
    if (!o || !fn)
        return HVI_E_INVAL;
    struct lix_offsets t;
    memset(&t, 0, sizeof(t));
    t.mt_root = 8;             /* struct maple_tree { spinlock_t; (hole); void *ma_root; ... } */
    t.mod_name_len = 56;       /* MODULE_NAME_LEN on 64-bit */
    t.thread_size = 16384;     /* x86-64 THREAD_SIZE without KASAN */
    t.maple_node_size = 256;
    t.maple_range64_slots = 16;
    t.maple_arange64_slots = 10;
    t.maple_r64_pivot = 8, t.maple_r64_slot = 128, t.maple_ar64_pivot = 8, t.maple_ar64_slot = 80;
    t.qstr_len = 4, t.qstr_name = 8, t.path_dentry = 8;
    t.layout_base = 0, t.layout_size = 8, t.layout_text_size = 12, t.layout_ro_size = 16;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        uint32_t v = 0;
        hvi_status st = fn(ctx, fields[i].name, &v);
        if (st == HVI_OK) {
            memcpy((char *)&t + fields[i].off, &v, sizeof(v));
            continue;
        }
        if (fields[i].optional && st == HVI_E_NOT_FOUND)
            continue;
        if (missing)
            *missing = fields[i].name;
        return st;
    }
    if (t.maple_node_size > 256 || t.mod_name_len == 0 || t.mod_name_len > 56 ||
        t.maple_range64_slots < 2 || t.maple_arange64_slots < 2 ||
        t.maple_r64_pivot + 8ull * (t.maple_range64_slots - 1) > t.maple_node_size ||
        t.maple_r64_slot + 8ull * t.maple_range64_slots > t.maple_node_size ||
        t.maple_ar64_pivot + 8ull * (t.maple_arange64_slots - 1) > t.maple_node_size ||
        t.maple_ar64_slot + 8ull * t.maple_arange64_slots > t.maple_node_size ||
        ((t.maple_r64_pivot | t.maple_r64_slot | t.maple_ar64_pivot | t.maple_ar64_slot) & 7) ||
        t.thread_size > (1u << 16) || (t.thread_size & (HVI_PAGE_SIZE - 1)) ||
        t.layout_base > 64 || t.layout_size > 64 || t.layout_text_size > 64 || t.layout_ro_size > 64 ||
        t.cred_suid > 4096 || t.cred_sgid > 4096 || t.cred_fsuid > 4096 || t.cred_fsgid > 4096 ||
        t.cred_cap_permitted > 4096 || t.cred_cap_effective > 4096 || t.mod_init_layout > 8192 ||
        t.task_real_cred > 65536)
        return HVI_E_FORMAT;
    *o = t;
    return HVI_OK;
}
