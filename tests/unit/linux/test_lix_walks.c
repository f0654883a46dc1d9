/* Task, module, path and maple-tree walks over synthetic (and hostile) guest structures. */
#include "harness.h"
#include "synth_mem.h"

#define KB 0xffff888000000000ull /* synthetic kernel heap */

static struct lix_offsets test_offsets(void)
{
    struct lix_offsets o = {0};
    o.task_tasks = 0x100, o.task_pid = 0x110, o.task_tgid = 0x114, o.task_real_parent = 0x118;
    o.task_mm = 0x120, o.task_cred = 0x128, o.task_comm = 0x130, o.task_thread_group = 0x140;
    o.mm_mt = 0, o.mt_root = 8, o.mm_pgd = 0x48, o.mm_arg_start = 0x50, o.mm_arg_end = 0x58;
    o.mm_exe_file = 0x60;
    o.vma_start = 0, o.vma_end = 8, o.vma_flags = 0x20, o.vma_pgoff = 0x28, o.vma_file = 0x30;
    o.file_path = 0x10, o.dentry_parent = 0x18, o.dentry_name = 0x20;
    o.cred_uid = 8, o.cred_gid = 12, o.cred_euid = 24, o.cred_egid = 28;
    o.mod_list = 8, o.mod_name = 0x18, o.mod_state = 0, o.mod_core_layout = 0x140;
    o.mod_name_len = 56, o.maple_node_size = 256, o.maple_range64_slots = 16;
    o.maple_arange64_slots = 10;
    o.maple_r64_pivot = 8, o.maple_r64_slot = 128, o.maple_ar64_pivot = 8, o.maple_ar64_slot = 80;
    o.qstr_len = 4, o.qstr_name = 8, o.path_dentry = 8;
    o.task_stack = 0x150, o.thread_size = 0x4000;
    o.layout_base = 0, o.layout_size = 8, o.layout_text_size = 12, o.layout_ro_size = 16;
    return o;
}

static void kernel_init(struct lix_kernel *k, struct synth_mem *m)
{
    memset(k, 0, sizeof(*k));
    k->mem = synth_reader(m);
    k->off = test_offsets();
    k->have_offsets = true;
    k->init_task = KB;
    k->modules = KB + 0x800000;
}

static uint64_t task_at(int i)
{
    return KB + (uint64_t)i * 0x1000;
}

static void link(struct synth_mem *m, uint64_t node, uint64_t next)
{
    synth_w64(m, node, next);
    synth_w64(m, next + 8, node);
}

/* init_task (index 0) + n processes in a ring; each has one cred page. */
static void make_tasks(struct synth_mem *m, const struct lix_offsets *o, int n)
{
    for (int i = 0; i <= n; i++) {
        uint64_t t = task_at(i), cred = KB + 0x400000 + (uint64_t)i * 64;
        synth_w32(m, t + o->task_pid, (uint32_t)i);
        synth_w32(m, t + o->task_tgid, (uint32_t)i);
        synth_w64(m, t + o->task_real_parent, task_at(i > 1 ? 1 : 0));
        synth_w64(m, t + o->task_cred, cred);
        synth_w32(m, cred + o->cred_uid, (uint32_t)(1000 + i));
        synth_w32(m, cred + o->cred_euid, (uint32_t)(2000 + i));
        char comm[16] = {0};
        snprintf(comm, sizeof(comm), "proc%d", i);
        synth_write(m, t + o->task_comm, comm, 16);
        link(m, t + o->task_tasks, task_at(i == n ? 0 : i + 1) + o->task_tasks);
        link(m, t + o->task_thread_group, t + o->task_thread_group); /* single-threaded */
    }
}

struct collect {
    int pids[64];
    int n;
    char comm[64][17];
};

static bool collect_task(const struct lix_task *t, void *ctx)
{
    struct collect *c = ctx;
    if (c->n < 64) {
        memcpy(c->comm[c->n], t->comm, 17);
        c->pids[c->n++] = t->pid;
    }
    return true;
}

HVI_TEST(task_walk_lists_processes_in_order)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    make_tasks(&m, &k.off, 5);
    struct collect c = {0};
    CHECK_OK(lix_task_walk(&k, true, collect_task, &c));
    REQUIRE(c.n == 5);
    for (int i = 0; i < 5; i++)
        CHECK(c.pids[i] == i + 1);
    CHECK_STR(c.comm[2], "proc3");
    struct lix_task t;
    CHECK_OK(lix_task_read(&k, task_at(3), &t));
    CHECK(t.ppid == 1 && t.uid == 1003 && t.euid == 2003);
    synth_free(&m);
}

HVI_TEST(task_walk_detects_cycle_not_through_head)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    make_tasks(&m, &k.off, 5);
    /* 5 -> 3 instead of 5 -> init_task, with 3.prev updated so the link looks consistent */
    link(&m, task_at(5) + k.off.task_tasks, task_at(3) + k.off.task_tasks);
    struct collect c = {0};
    CHECK_STATUS(lix_task_walk(&k, false, collect_task, &c), HVI_E_FORMAT);
    CHECK(c.n <= 5);
    /* a consistent ring that never returns to the head: caught by the visited set */
    synth_w64(&m, task_at(2) + k.off.task_tasks + 8, task_at(1) + k.off.task_tasks);
    c.n = 0;
    CHECK_STATUS(lix_task_walk(&k, false, collect_task, &c), HVI_E_FORMAT);
    CHECK(c.n <= 5);
    synth_free(&m);
}

HVI_TEST(task_walk_stops_at_unmapped_and_user_pointers)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    make_tasks(&m, &k.off, 3);
    synth_w64(&m, task_at(2) + k.off.task_tasks, KB + 0x7000000); /* never mapped */
    struct collect c = {0};
    CHECK_STATUS(lix_task_walk(&k, false, collect_task, &c), HVI_E_NOT_PRESENT);
    CHECK(c.n == 2);
    synth_w64(&m, task_at(2) + k.off.task_tasks, 0x400000); /* user-half pointer */
    c.n = 0;
    CHECK_STATUS(lix_task_walk(&k, false, collect_task, &c), HVI_E_FORMAT);
    k.have_offsets = false;
    CHECK_STATUS(lix_task_walk(&k, false, collect_task, &c), HVI_E_STATE);
    synth_free(&m);
}

HVI_TEST(thread_group_walk_reports_threads)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    make_tasks(&m, &k.off, 2);
    const struct lix_offsets *o = &k.off;
    /* task 2 gets two threads (not on the tasks list) with pid 100, 101 */
    uint64_t th[2] = {KB + 0x200000, KB + 0x201000};
    uint64_t leader = task_at(2);
    for (int i = 0; i < 2; i++) {
        synth_w32(&m, th[i] + o->task_pid, (uint32_t)(100 + i));
        synth_w32(&m, th[i] + o->task_tgid, 2);
        synth_w64(&m, th[i] + o->task_cred, KB + 0x400000);
    }
    link(&m, leader + o->task_thread_group, th[0] + o->task_thread_group);
    link(&m, th[0] + o->task_thread_group, th[1] + o->task_thread_group);
    link(&m, th[1] + o->task_thread_group, leader + o->task_thread_group);
    struct collect c = {0};
    CHECK_OK(lix_task_walk(&k, true, collect_task, &c));
    REQUIRE(c.n == 4);
    CHECK(c.pids[0] == 1 && c.pids[1] == 2 && c.pids[2] == 100 && c.pids[3] == 101);
    c.n = 0;
    CHECK_OK(lix_task_walk(&k, false, collect_task, &c));
    CHECK(c.n == 2);
    synth_free(&m);
}

static void make_dentry(struct synth_mem *m, const struct lix_offsets *o, uint64_t d,
                        uint64_t parent, const char *name)
{
    synth_w64(m, d + o->dentry_parent, parent);
    synth_w32(m, d + o->dentry_name + 4, (uint32_t)strlen(name));
    synth_w64(m, d + o->dentry_name + 8, d + 0x100);
    synth_write(m, d + 0x100, name, strlen(name) + 1);
}

HVI_TEST(exe_path_from_dentries)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    make_tasks(&m, &k.off, 1);
    const struct lix_offsets *o = &k.off;
    uint64_t mm = KB + 0x300000, file = KB + 0x310000;
    uint64_t root = KB + 0x320000, bin = KB + 0x321000, bb = KB + 0x322000;
    make_dentry(&m, o, root, root, "/");
    make_dentry(&m, o, bin, root, "bin");
    make_dentry(&m, o, bb, bin, "busybox");
    synth_w64(&m, file + o->file_path + 8, bb);
    synth_w64(&m, mm + o->mm_exe_file, file);
    synth_w64(&m, task_at(1) + o->task_mm, mm);
    struct lix_task t;
    REQUIRE(lix_task_read(&k, task_at(1), &t) == HVI_OK);
    char path[256];
    CHECK_OK(lix_task_exe(&k, &t, path, sizeof(path)));
    CHECK_STR(path, "/bin/busybox");
    /* a dentry whose parent chain loops without reaching a root: bounded */
    make_dentry(&m, o, bin, bb, "bin");
    CHECK_STATUS(lix_task_exe(&k, &t, path, sizeof(path)), HVI_E_LIMIT);
    synth_free(&m);
}

/* A task's fields are read with one read (and its cred's with one more) when they lie in mapped
 * pages; when the span between them crosses a page that is not mapped, field by field, with the
 * same result. */
HVI_TEST(task_fields_read_together_or_one_by_one)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    make_tasks(&m, &k.off, 2);
    struct lix_task t;
    uint64_t r0 = m.reads;
    CHECK_OK(lix_task_read(&k, task_at(2), &t));
    CHECK_EQ_U64(m.reads - r0, 3); /* task fields, the parent's tgid, the cred */
    CHECK(t.pid == 2 && t.tgid == 2 && t.ppid == 1 && t.uid == 1002 && t.euid == 2002);
    CHECK_STR(t.comm, "proc2");
    /* comm moved to the next page, with an unmapped page in between */
    struct lix_offsets far = k.off;
    far.task_comm = 0x2010;
    k.off = far;
    synth_write(&m, task_at(2) + 0x2010, "far-comm", 9);
    r0 = m.reads;
    CHECK_OK(lix_task_read(&k, task_at(2), &t));
    CHECK(m.reads - r0 > 3);
    CHECK(t.pid == 2 && t.ppid == 1 && t.uid == 1002);
    CHECK_STR(t.comm, "far-comm");
    synth_free(&m);
}

struct mods {
    int n;
    char names[8][57];
    uint64_t base[8];
};

static bool collect_mod(const struct lix_module *mo, void *ctx)
{
    struct mods *c = ctx;
    if (c->n < 8) {
        memcpy(c->names[c->n], mo->name, 57);
        c->base[c->n++] = mo->core_base;
    }
    return true;
}

HVI_TEST(module_walk_and_hostile_module_list)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    const struct lix_offsets *o = &k.off;
    uint64_t mods[3] = {KB + 0x810000, KB + 0x820000, KB + 0x830000};
    const char *names[3] = {"e1000", "virtio_net", "hvi_test"};
    uint64_t prev = k.modules;
    for (int i = 0; i < 3; i++) {
        synth_write(&m, mods[i] + o->mod_name, names[i], strlen(names[i]) + 1);
        synth_w64(&m, mods[i] + o->mod_core_layout, 0xffffffffc0000000ull + (uint64_t)i * 0x10000);
        synth_w32(&m, mods[i] + o->mod_core_layout + 8, 0x4000);
        link(&m, prev, mods[i] + o->mod_list);
        prev = mods[i] + o->mod_list;
    }
    link(&m, prev, k.modules);
    struct mods c = {0};
    CHECK_OK(lix_module_walk(&k, collect_mod, &c));
    REQUIRE(c.n == 3);
    CHECK_STR(c.names[1], "virtio_net");
    CHECK_EQ_U64(c.base[2], 0xffffffffc0020000ull);
    /* name without NUL: bounded to 56 characters */
    char big[64];
    memset(big, 'A', sizeof(big));
    synth_write(&m, mods[0] + o->mod_name, big, 56);
    c.n = 0;
    CHECK_OK(lix_module_walk(&k, collect_mod, &c));
    CHECK(strlen(c.names[0]) == 56);
    /* broken back link */
    synth_w64(&m, mods[2] + o->mod_list + 8, mods[0] + o->mod_list);
    c.n = 0;
    CHECK_STATUS(lix_module_walk(&k, collect_mod, &c), HVI_E_FORMAT);
    synth_free(&m);
}

/* ---- maple tree ---- */
#define MM KB + 0x900000
#define NODES KB + 0xa00000
#define VMAS KB + 0xb00000

HVI_TEST(thread_safeness_scans_rips_and_kernel_stacks)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    make_tasks(&m, &k.off, 3);
    const uint64_t code = 0xffffffff81234000ull, stacks = KB + 0x1000000;
    for (int i = 1; i <= 3; i++) { /* 16 KiB stacks, the first page left unmapped (guard) */
        uint64_t st = stacks + (uint64_t)i * 0x10000;
        synth_w64(&m, task_at(i) + k.off.task_stack, st);
        synth_map(&m, st + 0x1000, 0x3000);
        synth_w64(&m, st + 0x3ff0, 0xffffffff81000010ull); /* a return address elsewhere */
    }
    struct lix_thrsafe_hit hit;
    uint64_t rips[2] = {0xffffffff81000100ull, 0xffffffff81000200ull};
    CHECK_OK(lix_thread_safe_check(&k, rips, 2, code, code + 0x40, &hit));
    rips[1] = code + 5; /* vCPU 1 executes there */
    CHECK_STATUS(lix_thread_safe_check(&k, rips, 2, code, code + 0x40, &hit), HVI_E_BUSY);
    CHECK(hit.on_cpu && hit.vcpu == 1);
    rips[1] = 0;
    uint64_t where = stacks + 2 * 0x10000 + 0x2a08;
    synth_w64(&m, where, code + 0x3f); /* task 2 would return into the range */
    CHECK_STATUS(lix_thread_safe_check(&k, rips, 2, code, code + 0x40, &hit), HVI_E_BUSY);
    CHECK(!hit.on_cpu && hit.pid == 2);
    CHECK_EQ_U64(hit.where, where);
    CHECK_OK(lix_thread_safe_check(&k, rips, 2, code + 0x40, code + 0x80, &hit));
    synth_w64(&m, task_at(3) + k.off.task_stack, 0x1234); /* a user pointer as a stack */
    CHECK_STATUS(lix_thread_safe_check(&k, rips, 2, code + 0x40, code + 0x80, &hit), HVI_E_FORMAT);
    CHECK_STATUS(lix_thread_safe_check(&k, rips, 2, code, code, &hit), HVI_E_INVAL);
    synth_free(&m);
}

static uint64_t enc(uint64_t node, unsigned type)
{
    return node | ((uint64_t)type << 3) | 2;
}

static uint64_t make_vma(struct synth_mem *m, int i, uint64_t start, uint64_t end)
{
    uint64_t v = VMAS + (uint64_t)i * 0x100;
    synth_w64(m, v, start);
    synth_w64(m, v + 8, end);
    synth_w64(m, v + 0x20, 0x73 + (uint64_t)i);
    return v;
}

/* leaf: entries alternate gap / vma over [starts[i], ends[i]) */
static void make_leaf(struct synth_mem *m, uint64_t node, int first, int n, uint64_t base)
{
    int slot = 0;
    uint64_t *pivots = calloc(15, 8), *slots = calloc(16, 8);
    for (int i = 0; i < n; i++) {
        uint64_t s = base + (uint64_t)i * 0x10000, e = s + 0x3000;
        pivots[slot] = s - 1; /* gap up to the VMA */
        slot++;
        slots[slot] = make_vma(m, first + i, s, e);
        pivots[slot] = e - 1;
        slot++;
    }
    synth_write(m, node + 8, pivots, 15 * 8);
    synth_write(m, node + 128, slots, 16 * 8);
    free(pivots);
    free(slots);
}

struct vmas {
    int n;
    uint64_t start[64], end[64];
};

static bool collect_vma(const struct lix_vma *v, void *ctx)
{
    struct vmas *c = ctx;
    if (c->n < 64) {
        c->start[c->n] = v->start;
        c->end[c->n++] = v->end;
    }
    return true;
}

static void make_tree(struct synth_mem *m)
{
    uint64_t root = NODES, l1 = NODES + 0x100, l2 = NODES + 0x200;
    make_leaf(m, l1, 0, 3, 0x400000);
    make_leaf(m, l2, 3, 4, 0x7f0000000000ull);
    /* root range_64: [0, 0x10000000) -> l1, [0x10000000, max] -> l2 */
    synth_w64(m, root + 8, 0x0fffffff);
    synth_w64(m, root + 128, enc(l1, 1));
    synth_w64(m, root + 136, enc(l2, 1));
    synth_w64(m, MM + 8, enc(root, 2));
}

HVI_TEST(maple_walk_returns_vmas_in_order)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    make_tree(&m);
    struct vmas c = {0};
    CHECK_OK(lix_vma_walk(&k, MM, collect_vma, &c));
    REQUIRE(c.n == 7);
    CHECK_EQ_U64(c.start[0], 0x400000);
    CHECK_EQ_U64(c.end[2], 0x423000);
    CHECK_EQ_U64(c.start[3], 0x7f0000000000ull);
    for (int i = 1; i < c.n; i++)
        CHECK(c.start[i] >= c.end[i - 1]);
    synth_free(&m);
}

HVI_TEST(maple_walk_rejects_hostile_nodes)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    make_tree(&m);
    struct vmas c = {0};
    /* bad node type (dense) in the root */
    synth_w64(&m, MM + 8, enc(NODES, 0));
    CHECK_STATUS(lix_vma_walk(&k, MM, collect_vma, &c), HVI_E_FORMAT);
    synth_w64(&m, MM + 8, enc(NODES, 7));
    CHECK_STATUS(lix_vma_walk(&k, MM, collect_vma, &c), HVI_E_FORMAT);
    /* a VMA outside its slot's range */
    synth_w64(&m, MM + 8, enc(NODES, 2));
    synth_w64(&m, VMAS + 8, 0x20000000);
    CHECK_STATUS(lix_vma_walk(&k, MM, collect_vma, &c), HVI_E_FORMAT);
    synth_w64(&m, VMAS + 8, 0x403000);
    /* decreasing pivots */
    synth_w64(&m, NODES + 0x100 + 16, 0x10);
    CHECK_STATUS(lix_vma_walk(&k, MM, collect_vma, &c), HVI_E_FORMAT);
    /* too deep: a chain of range nodes each pointing to the next (and finally to itself) */
    for (int i = 0; i < 40; i++) {
        uint64_t n = NODES + 0x10000 + (uint64_t)i * 0x100;
        synth_w64(&m, n + 128, enc(i == 39 ? n : n + 0x100, 2));
    }
    synth_w64(&m, MM + 8, enc(NODES + 0x10000, 2));
    CHECK_STATUS(lix_vma_walk(&k, MM, collect_vma, &c), HVI_E_LIMIT);
    /* root pointing into unmapped memory */
    synth_w64(&m, MM + 8, enc(KB + 0x5000000, 2));
    CHECK_STATUS(lix_vma_walk(&k, MM, collect_vma, &c), HVI_E_NOT_PRESENT);
    /* empty tree */
    synth_w64(&m, MM + 8, 0);
    c.n = 0;
    CHECK_OK(lix_vma_walk(&k, MM, collect_vma, &c));
    CHECK(c.n == 0);
    synth_free(&m);
}

static hvi_status lookup_all_but(void *ctx, const char *name, uint32_t *out)
{
    const char *skip = ctx;
    if (skip && !strcmp(name, skip))
        return HVI_E_NOT_FOUND;
    if (!strncmp(name, "maple", 5) || !strcmp(name, "module.name_len") ||
        !strncmp(name, "kernel.", 7) || !strncmp(name, "module_layout.", 14) ||
        !strncmp(name, "qstr.", 5) || !strncmp(name, "path.", 5))
        return HVI_E_NOT_FOUND;    /* optional: defaults apply */
    *out = (uint32_t)strlen(name); /* any deterministic value */
    return HVI_OK;
}

HVI_TEST(offsets_fill_names_missing_field)
{
    struct lix_offsets o;
    const char *missing = NULL;
    CHECK_STATUS(lix_offsets_fill(&o, NULL, NULL, &missing), HVI_E_INVAL);
    CHECK_STATUS(lix_offsets_fill(&o, lookup_all_but, (void *)"dentry.d_parent", &missing),
                 HVI_E_NOT_FOUND);
    CHECK_STR(missing, "dentry.d_parent");
    CHECK_OK(lix_offsets_fill(&o, lookup_all_but, NULL, &missing));
    CHECK(o.task_pid == strlen("task_struct.pid"));
    CHECK(o.maple_range64_slots == 16 && o.maple_arange64_slots == 10 && o.mt_root == 8);
}

HVI_TEST_MAIN()
