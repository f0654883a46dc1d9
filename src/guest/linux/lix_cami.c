/* hvi guest/linux — where the structure offsets come from: the CAMI support data (the Linux
 * entry whose version glob matches the banner, each lix_offsets field read by its CAMI group
 * and field name), or, for development, an offsets file ("struct.field value" lines,
 * hvi_linux_set_offsets_file) which then takes precedence. A kernel with neither is refused
 * with a message naming its version. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix.h"
#include "hvi/cami.h"

#define OFS_MAX_LINES 256

struct ofs_file {
    char name[OFS_MAX_LINES][64];
    uint32_t value[OFS_MAX_LINES];
    size_t n;
};

static hvi_status ofs_lookup(void *ctx, const char *name, uint32_t *out)
{
    const struct ofs_file *f = ctx;
    for (size_t i = 0; i < f->n; i++) {
        if (!strcmp(f->name[i], name)) {
            *out = f->value[i];
            return HVI_OK;
        }
    }
    return HVI_E_NOT_FOUND;
}

static hvi_status ofs_load(const char *path, struct ofs_file *f)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return HVI_E_IO;
    char line[256];
    hvi_status st = HVI_OK;
    while (fgets(line, sizeof(line), fp)) {
        char name[64];
        unsigned long v = 0;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%63s %lu", name, &v) != 2 || v > 0xffff) {
            st = HVI_E_FORMAT;
            break;
        }
        if (f->n == OFS_MAX_LINES) {
            st = HVI_E_LIMIT;
            break;
        }
        hvi_strlcpy(f->name[f->n], name, sizeof(f->name[0]));
        f->value[f->n++] = (uint32_t)v;
    }
    fclose(fp);
    return st;
}

/* lix_offsets names -> CAMI (tags.yaml + src/cami/lix_fields_ext.def) group/field names. */
static const struct {
    const char *name, *group, *field;
} cami_map[] = {
    {"task_struct.tasks", "TaskStruct", "TasksOffset"},
    {"task_struct.pid", "TaskStruct", "PidOffset"},
    {"task_struct.tgid", "TaskStruct", "TgidOffset"},
    {"task_struct.real_parent", "TaskStruct", "RealParentOffset"},
    {"task_struct.mm", "TaskStruct", "MmOffset"},
    {"task_struct.cred", "TaskStruct", "CredOffset"},
    {"task_struct.comm", "TaskStruct", "CommOffset"},
    {"task_struct.thread_group", "TaskStruct", "ThreadGroupOffset"},
    {"task_struct.group_leader", "TaskStruct", "GroupLeader"},
    {"task_struct.stack", "TaskStruct", "StackOffset"},
    {"task_struct.real_cred", "TaskStruct", "RealCredOffset"},
    {"kernel.thread_size", "Info", "ThreadSize"},
    {"mm_struct.mm_mt", "MmStruct", "MapleTree"},
    {"mm_struct.pgd", "MmStruct", "PgdOffset"},
    {"mm_struct.arg_start", "MmStruct", "ArgStartOffset"},
    {"mm_struct.arg_end", "MmStruct", "ArgEndOffset"},
    {"mm_struct.exe_file", "MmStruct", "ExeFileOffset"},
    {"maple_tree.ma_root", "MmStruct", "MapleRootOffset"},
    {"maple_node.size", "MmStruct", "MapleNodeSize"},
    {"maple_range_64.slots", "MmStruct", "MapleRange64Slots"},
    {"maple_arange_64.slots", "MmStruct", "MapleArange64Slots"},
    {"maple_range_64.pivot", "MmStruct", "MapleRange64PivotOffset"},
    {"maple_range_64.slot", "MmStruct", "MapleRange64SlotOffset"},
    {"maple_arange_64.pivot", "MmStruct", "MapleArange64PivotOffset"},
    {"maple_arange_64.slot", "MmStruct", "MapleArange64SlotOffset"},
    {"vm_area_struct.vm_start", "Vma", "VmaStartOffset"},
    {"vm_area_struct.vm_end", "Vma", "VmaEndOffset"},
    {"vm_area_struct.vm_flags", "Vma", "FlagsOffset"},
    {"vm_area_struct.vm_pgoff", "Vma", "PgoffOffset"},
    {"vm_area_struct.vm_file", "Vma", "FileOffset"},
    {"file.f_path", "Ungrouped", "FilePathOffset"},
    {"path.dentry", "Ungrouped", "PathDentryOffset"},
    {"dentry.d_parent", "Dentry", "ParentOffset"},
    {"dentry.d_name", "Dentry", "NameOffset"},
    {"qstr.len", "Dentry", "QstrLenOffset"},
    {"qstr.name", "Dentry", "QstrNameOffset"},
    {"cred.uid", "Cred", "UidOffset"},
    {"cred.gid", "Cred", "GidOffset"},
    {"cred.euid", "Cred", "EuidOffset"},
    {"cred.egid", "Cred", "EgidOffset"},
    {"cred.suid", "Cred", "SuidOffset"},
    {"cred.sgid", "Cred", "SgidOffset"},
    {"cred.fsuid", "Cred", "FsuidOffset"},
    {"cred.fsgid", "Cred", "FsgidOffset"},
    {"cred.cap_permitted", "Cred", "CapPermittedOffset"},
    {"cred.cap_effective", "Cred", "CapEffectiveOffset"},
    {"module.list", "Module", "ListOffset"},
    {"module.name", "Module", "NameOffset"},
    {"module.state", "Module", "StateOffset"},
    {"module.core_layout", "Module", "CoreLayoutOffset"},
    {"module.init_layout", "Module", "InitLayoutOffset"},
    {"module.name_len", "Module", "NameLength"},
    {"module_layout.base", "Module", "LayoutBaseOffset"},
    {"module_layout.size", "Module", "LayoutSizeOffset"},
    {"module_layout.text_size", "Module", "LayoutTextSizeOffset"},
    {"module_layout.ro_size", "Module", "LayoutRoSizeOffset"},
};

static hvi_status cami_lookup(void *ctx, const char *name, uint32_t *out)
{
    const hvi_cami_lix_entry *e = ctx;
    for (size_t i = 0; i < sizeof(cami_map) / sizeof(cami_map[0]); i++)
        if (!strcmp(cami_map[i].name, name))
            return hvi_cami_lix_field_by_name(e, cami_map[i].group, cami_map[i].field, out);
    return HVI_E_NOT_FOUND;
}

/* Fields a CAMI entry leaves out read as 0 (and the generator writes 0xFFFFFFFF for a member
 * the kernel lacks); for these fields a 0 also means "absent": keep the default. */
static bool zero_means_absent(const char *name)
{
    return !strncmp(name, "maple_", 6) || !strcmp(name, "kernel.thread_size") ||
           !strcmp(name, "task_struct.stack") || !strcmp(name, "module.name_len") ||
           !strcmp(name, "qstr.len") || !strcmp(name, "qstr.name") || !strcmp(name, "path.dentry") ||
           !strncmp(name, "cred.suid", 9) || !strncmp(name, "cred.sgid", 9) ||
           !strncmp(name, "cred.fs", 7) || !strncmp(name, "cred.cap_", 9) ||
           !strcmp(name, "module.init_layout") || !strcmp(name, "task_struct.real_cred") ||
           (!strncmp(name, "module_layout.", 14) && strcmp(name, "module_layout.base"));
}

#define CAMI_ABSENT 0xFFFFFFFFu /* the generator's "this kernel has no such member" */

static hvi_status cami_lookup_opt(void *ctx, const char *name, uint32_t *out)
{
    uint32_t v = 0;
    hvi_status st = cami_lookup(ctx, name, &v);
    if (st == HVI_OK && (v == CAMI_ABSENT || (v == 0 && zero_means_absent(name))))
        return HVI_E_NOT_FOUND; /* optional fields keep their default, required ones fail */
    if (st == HVI_OK)
        *out = v;
    return st;
}

static hvi_status from_cami(hvi_engine *e, struct lix_kernel *k)
{
    hvi_cami *c = NULL;
    char msg[256] = "";
    hvi_status st = hvi_cami_open(e->support, e->support_len, &c, msg, sizeof(msg));
    if (st != HVI_OK)
        return hvi_fail(e, st, "support data: %s", msg);
    const hvi_cami_lix_entry *entry = NULL;
    const char *version = k->banner + strlen("Linux version ");
    st = hvi_cami_lix_select(c, version, &entry);
    if (st != HVI_OK) {
        hvi_cami_close(c);
        return hvi_fail(e, HVI_E_UNSUPPORTED, "no CAMI entry for Linux %s (banner \"%s\")",
                        k->release, k->banner);
    }
    const char *missing = "";
    st = lix_offsets_fill(&k->off, cami_lookup_opt, (void *)entry, &missing);
    hvi_cami_close(c);
    if (st != HVI_OK)
        return hvi_fail(e, st, "CAMI entry for Linux %s: field %s: %s", k->release,
                        missing ? missing : "?", hvi_strstatus(st));
    return HVI_OK;
}

hvi_status lix_select_offsets(hvi_engine *e, struct lix_kernel *k)
{
    if (!e || !k)
        return HVI_E_INVAL;
    const char *path = lix_offsets_path(e);
    if (!path && e->support && e->support_len)
        return from_cami(e, k);
    if (!path)
        return hvi_fail(e, HVI_E_UNSUPPORTED,
                        "no CAMI entry for Linux %s: no support data was given", k->release);
    struct ofs_file *f = calloc(1, sizeof(*f));
    if (!f)
        return HVI_E_NOMEM;
    const char *missing = "";
    hvi_status st = ofs_load(path, f);
    if (st != HVI_OK) {
        free(f);
        return hvi_fail(e, st, "reading offsets file %s: %s", path, hvi_strstatus(st));
    }
    st = lix_offsets_fill(&k->off, ofs_lookup, f, &missing);
    free(f);
    if (st != HVI_OK)
        return hvi_fail(e, st, "offsets file %s for Linux %s: field %s: %s", path, k->release,
                        missing ? missing : "?", hvi_strstatus(st));
    return HVI_OK;
}
