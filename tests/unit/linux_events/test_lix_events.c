/* Linux events: decoding of detour arguments (task, current task, linux_binprm, module) from
 * synthetic and hostile guest memory, and the engine's sorted process/module lists. */
#include <string.h>

#include "guest/linux/lix_events.h"
#include "hvi/cami.h"
#include "harness.h"
#include "synth_mem.h"

#define KB 0xffff888000000000ull /* synthetic kernel heap */
#define GS 0xffff88803fc00000ull /* a per-CPU area */
#define PCPU_CURRENT 0x1fbc0ull

static struct lix_offsets offsets(void)
{
    struct lix_offsets o = {0};
    o.task_pid = 0x110, o.task_tgid = 0x114, o.task_real_parent = 0x118, o.task_mm = 0x120;
    o.task_cred = 0x128, o.task_comm = 0x130;
    o.mm_exe_file = 0x60;
    o.file_path = 0x10, o.path_dentry = 8, o.dentry_parent = 0x18, o.dentry_name = 0x20;
    o.qstr_len = 4, o.qstr_name = 8;
    o.cred_uid = 8, o.cred_gid = 12, o.cred_euid = 24, o.cred_egid = 28;
    o.mod_list = 8, o.mod_name = 0x18, o.mod_state = 0, o.mod_core_layout = 0x140;
    o.mod_name_len = 56;
    o.layout_base = 0, o.layout_size = 8, o.layout_text_size = 12, o.layout_ro_size = 16;
    return o;
}

static const struct lixe_binprm g_bprm = {.filename = 0x60, .interp = 0x68, .file = 0x40};

static void kernel_init(struct lix_kernel *k, struct synth_mem *m)
{
    memset(k, 0, sizeof(*k));
    k->mem = synth_reader(m);
    k->off = offsets();
    k->have_offsets = true;
}

/* A dentry named `name` under `parent` (0: a root, its own parent). */
static uint64_t dentry(struct synth_mem *m, uint64_t at, uint64_t parent, const char *name)
{
    synth_w64(m, at + 0x18, parent ? parent : at);
    synth_w32(m, at + 0x20 + 4, (uint32_t)strlen(name));
    synth_w64(m, at + 0x20 + 8, at + 0x80);
    synth_write(m, at + 0x80, name, strlen(name) + 1);
    return at;
}

/* /bin/busybox: file at `at`, dentries after it. */
static uint64_t file_busybox(struct synth_mem *m, uint64_t at)
{
    uint64_t root = dentry(m, at + 0x1000, 0, "/");
    uint64_t bin = dentry(m, at + 0x2000, root, "bin");
    uint64_t bb = dentry(m, at + 0x3000, bin, "busybox");
    synth_w64(m, at + 0x10 + 8, bb);
    return at;
}

/* A task: pid/tgid, comm, parent (tgid 7), cred, mm (with exe /bin/busybox) unless kthread. */
static uint64_t task(struct synth_mem *m, uint64_t at, int32_t pid, int32_t tgid, const char *comm,
                     bool kthread)
{
    uint64_t parent = at + 0x2000, cred = at + 0x3000, mm = at + 0x4000;
    synth_w32(m, at + 0x110, (uint32_t)pid);
    synth_w32(m, at + 0x114, (uint32_t)tgid);
    synth_w64(m, at + 0x118, parent);
    synth_w64(m, at + 0x120, kthread ? 0 : mm);
    synth_w64(m, at + 0x128, cred);
    synth_write(m, at + 0x130, comm, strlen(comm) + 1);
    synth_w32(m, parent + 0x114, 7);
    synth_w32(m, cred + 8, 1000);
    if (!kthread)
        synth_w64(m, mm + 0x60, file_busybox(m, at + 0x10000));
    return at;
}

HVI_TEST(task_decoding_and_hostile_task_pointers)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    uint64_t t = task(&m, KB, 42, 42, "victim", false);
    struct lixe_proc p;
    CHECK_OK(lixe_decode_task(&k, t, &p));
    CHECK(p.pid == 42 && p.tgid == 42 && p.ppid == 7 && !p.kernel_thread);
    CHECK_STR(p.comm, "victim");
    CHECK_STR(p.exe, "/bin/busybox");
    uint64_t kt = task(&m, KB + 0x100000, 2, 2, "kthreadd", true);
    CHECK_OK(lixe_decode_task(&k, kt, &p));
    CHECK(p.kernel_thread && p.exe[0] == 0);
    /* a comm of 16 bytes without NUL stays bounded */
    synth_write(&m, t + 0x130, "AAAAAAAAAAAAAAAAAAAAAAAA", 24);
    CHECK_OK(lixe_decode_task(&k, t, &p));
    CHECK_EQ_U64(strlen(p.comm), 16);
    /* hostile pointers: user half, unaligned, unmapped, NULL */
    CHECK_STATUS(lixe_decode_task(&k, 0x7fff00001000ull, &p), HVI_E_FORMAT);
    CHECK_STATUS(lixe_decode_task(&k, t + 3, &p), HVI_E_FORMAT);
    CHECK_STATUS(lixe_decode_task(&k, 0, &p), HVI_E_FORMAT);
    CHECK_STATUS(lixe_decode_task(&k, KB + 0x40000000ull, &p), HVI_E_NOT_PRESENT);
    /* garbage fields: negative pid, cred pointing to user memory, mm not a kernel pointer */
    uint64_t bad = task(&m, KB + 0x200000, -5, 9, "x", true);
    CHECK_STATUS(lixe_decode_task(&k, bad, &p), HVI_E_FORMAT);
    bad = task(&m, KB + 0x300000, 9, 9, "x", true);
    synth_w64(&m, bad + 0x128, 0x1000);
    CHECK_STATUS(lixe_decode_task(&k, bad, &p), HVI_E_FORMAT);
    synth_w64(&m, bad + 0x128, KB + 0x303000);
    synth_w64(&m, bad + 0x120, 0x4141414141414141ull);
    CHECK_STATUS(lixe_decode_task(&k, bad, &p), HVI_E_FORMAT);
    /* an exe whose dentry chain is a cycle: the walk is bounded, the task still decodes */
    uint64_t c = task(&m, KB + 0x400000, 50, 50, "cyc", false);
    uint64_t d1 = KB + 0x480000, d2 = KB + 0x481000;
    dentry(&m, d1, d2, "a");
    dentry(&m, d2, d1, "b");
    synth_w64(&m, KB + 0x410000 + 0x18, d1);
    CHECK_OK(lixe_decode_task(&k, c, &p));
    CHECK(p.pid == 50 && p.exe[0] == 0);
    synth_free(&m);
}

HVI_TEST(current_task_from_the_per_cpu_area)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    synth_w64(&m, GS + PCPU_CURRENT, KB + 0x5000);
    uint64_t t = 0;
    CHECK_OK(lixe_current(&k, GS, PCPU_CURRENT, &t));
    CHECK_EQ_U64(t, KB + 0x5000);
    CHECK_STATUS(lixe_current(&k, 0, PCPU_CURRENT, &t), HVI_E_FORMAT); /* user GS */
    CHECK_STATUS(lixe_current(&k, GS, ~0ull - 4, &t), HVI_E_FORMAT);   /* wraps */
    CHECK_STATUS(lixe_current(&k, GS + 0x100000, PCPU_CURRENT, &t), HVI_E_NOT_PRESENT);
    synth_w64(&m, GS + PCPU_CURRENT, 0x400000); /* user ptr */
    CHECK_STATUS(lixe_current(&k, GS, PCPU_CURRENT, &t), HVI_E_FORMAT);
    synth_w64(&m, GS + PCPU_CURRENT, KB + 0x5001); /* unaligned */
    CHECK_STATUS(lixe_current(&k, GS, PCPU_CURRENT, &t), HVI_E_FORMAT);
    synth_free(&m);
}

HVI_TEST(binprm_decoding_and_hostile_strings)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    uint64_t b = KB + 0x10000, fn = KB + 0x11000, in = KB + 0x11100;
    synth_write(&m, fn, "/tmp/run.sh", 12);
    synth_write(&m, in, "/bin/sh", 8);
    synth_w64(&m, b + 0x60, fn);
    synth_w64(&m, b + 0x68, in);
    synth_w64(&m, b + 0x40, file_busybox(&m, KB + 0x20000));
    struct lixe_exec x;
    CHECK_OK(lixe_decode_exec(&k, &g_bprm, b, &x));
    CHECK_STR(x.filename, "/tmp/run.sh");
    CHECK_STR(x.interp, "/bin/sh");
    CHECK_STR(x.exe, "/bin/busybox");
    CHECK_STR(lixe_basename(x.filename), "run.sh");
    CHECK_STR(lixe_basename("noslash"), "noslash");
    /* bad bprm pointers */
    CHECK_STATUS(lixe_decode_exec(&k, &g_bprm, 0, &x), HVI_E_FORMAT);
    CHECK_STATUS(lixe_decode_exec(&k, &g_bprm, 0x1000, &x), HVI_E_FORMAT);
    CHECK_STATUS(lixe_decode_exec(&k, &g_bprm, b + 4, &x), HVI_E_FORMAT);
    CHECK_STATUS(lixe_decode_exec(&k, &g_bprm, KB + 0x70000000ull, &x), HVI_E_NOT_PRESENT);
    /* filename: NULL, user pointer, unmapped, empty */
    synth_w64(&m, b + 0x60, 0);
    CHECK_STATUS(lixe_decode_exec(&k, &g_bprm, b, &x), HVI_E_FORMAT);
    synth_w64(&m, b + 0x60, 0x400000);
    CHECK_STATUS(lixe_decode_exec(&k, &g_bprm, b, &x), HVI_E_FORMAT);
    synth_w64(&m, b + 0x60, KB + 0x71000000ull);
    CHECK(lixe_decode_exec(&k, &g_bprm, b, &x) != HVI_OK);
    synth_w64(&m, b + 0x60, KB + 0x11050);
    CHECK_STATUS(lixe_decode_exec(&k, &g_bprm, b, &x), HVI_E_FORMAT);
    /* an unterminated name running into unmapped memory is cut, never overrun */
    uint64_t page = KB + 0x30000;
    uint8_t fill[4096];
    memset(fill, 'A', sizeof(fill));
    synth_write(&m, page, fill, sizeof(fill));
    synth_w64(&m, b + 0x60, page + 0x10);
    hvi_status st = lixe_decode_exec(&k, &g_bprm, b, &x);
    CHECK(st != HVI_OK || strlen(x.filename) < sizeof(x.filename));
    /* a garbage interp/file does not fail the exec decode: they read as "" */
    synth_w64(&m, b + 0x60, fn);
    synth_w64(&m, b + 0x68, 0x4242);
    synth_w64(&m, b + 0x40, KB + 0x72000000ull);
    CHECK_OK(lixe_decode_exec(&k, &g_bprm, b, &x));
    CHECK(x.interp[0] == 0 && x.exe[0] == 0);
    synth_free(&m);
}

HVI_TEST(module_decoding_and_hostile_modules)
{
    struct synth_mem m;
    struct lix_kernel k;
    synth_init(&m);
    kernel_init(&k, &m);
    uint64_t mod = KB + 0x50000;
    synth_w32(&m, mod, 1);
    synth_write(&m, mod + 0x18, "crc7", 5);
    synth_w64(&m, mod + 0x140, 0xffffffffc02dd000ull);
    synth_w32(&m, mod + 0x148, 16384);
    synth_w32(&m, mod + 0x14c, 4096);
    struct lixe_mod x;
    CHECK_OK(lixe_decode_module(&k, mod, &x));
    CHECK_STR(x.name, "crc7");
    CHECK(x.base == 0xffffffffc02dd000ull && x.size == 16384 && x.text_size == 4096 &&
          x.state == 1);
    CHECK_STATUS(lixe_decode_module(&k, 0, &x), HVI_E_FORMAT);
    CHECK_STATUS(lixe_decode_module(&k, mod + 2, &x), HVI_E_FORMAT);
    CHECK_STATUS(lixe_decode_module(&k, KB + 0x73000000ull, &x), HVI_E_NOT_PRESENT);
    /* a 56-byte name without NUL stays inside the buffer */
    uint8_t longname[64];
    memset(longname, 'm', sizeof(longname));
    synth_write(&m, mod + 0x18, longname, sizeof(longname));
    CHECK_OK(lixe_decode_module(&k, mod, &x));
    CHECK_EQ_U64(strlen(x.name), 56);
    synth_write(&m, mod + 0x18, "bad name\x01", 10); /* not printable */
    CHECK_STATUS(lixe_decode_module(&k, mod, &x), HVI_E_FORMAT);
    synth_write(&m, mod + 0x18, "", 1);
    CHECK_STATUS(lixe_decode_module(&k, mod, &x), HVI_E_FORMAT);
    synth_write(&m, mod + 0x18, "ok", 3);
    synth_w64(&m, mod + 0x140, 0x1000); /* base in user memory */
    CHECK_STATUS(lixe_decode_module(&k, mod, &x), HVI_E_FORMAT);
    k.have_offsets = false;
    CHECK_STATUS(lixe_decode_module(&k, mod, &x), HVI_E_STATE);
    synth_free(&m);
}

HVI_TEST(lists_stay_sorted_replace_and_bound)
{
    struct lixe_lists l;
    memset(&l, 0, sizeof(l));
    int32_t pids[] = {50, 3, 700, 1, 42};
    for (size_t i = 0; i < 5; i++) {
        struct lixe_proc p = {.pid = pids[i], .tgid = pids[i]};
        CHECK_OK(lixe_proc_put(&l, &p));
    }
    CHECK_EQ_U64(l.np, 5);
    for (size_t i = 1; i < l.np; i++)
        CHECK(l.p[i - 1].pid < l.p[i].pid);
    struct lixe_proc r = {.pid = 42, .tgid = 42, .comm = "renamed"};
    CHECK_OK(lixe_proc_put(&l, &r));
    CHECK_EQ_U64(l.np, 5);
    CHECK_STR(lixe_proc_find(&l, 42)->comm, "renamed");
    CHECK(lixe_proc_del(&l, 3) && !lixe_proc_del(&l, 3) && !lixe_proc_find(&l, 3));
    CHECK(lixe_proc_find(&l, 700) && !lixe_proc_find(&l, 2));
    /* bounded: a guest forking without end cannot grow the list past LIXE_MAX_PROCS */
    lixe_lists_clear(&l, true, false);
    hvi_status st = HVI_OK;
    for (int32_t pid = 1; st == HVI_OK && pid <= (int32_t)LIXE_MAX_PROCS + 1; pid++) {
        struct lixe_proc p = {.pid = pid, .tgid = pid};
        st = lixe_proc_put(&l, &p);
    }
    CHECK_STATUS(st, HVI_E_LIMIT);
    CHECK_EQ_U64(l.np, LIXE_MAX_PROCS);
    struct lixe_mod a = {.addr = 0xffffffffc0002000ull, .name = "b"};
    struct lixe_mod b = {.addr = 0xffffffffc0001000ull, .name = "a"};
    CHECK_OK(lixe_mod_put(&l, &a));
    CHECK_OK(lixe_mod_put(&l, &b));
    CHECK(l.nm == 2 && l.m[0].addr < l.m[1].addr);
    CHECK(lixe_mod_del(&l, a.addr) && !lixe_mod_del(&l, a.addr) && l.nm == 1);
    lixe_lists_free(&l);
    CHECK(l.np == 0 && l.nm == 0 && !l.p && !l.m);
}

HVI_TEST(nop_prefix_only_counts_no_ops)
{
    static const uint8_t ftrace_nop[] = {0x0f, 0x1f, 0x44, 0x00, 0x00, 0x55, 0x48, 0x89, 0xe5};
    static const uint8_t ibt[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x41, 0x57};
    static const uint8_t traced[] = {0xe8, 0x10, 0x20, 0x30, 0x40, 0x55}; /* call __fentry__ */
    static const uint8_t plain[] = {0x55, 0x48, 0x89, 0xe5};
    static const uint8_t small[] = {0x66, 0x90, 0x90, 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3};
    CHECK_EQ_U64(lixe_nop_prefix(ftrace_nop, sizeof(ftrace_nop)), 5);
    CHECK_EQ_U64(lixe_nop_prefix(ibt, sizeof(ibt)), 9);
    CHECK_EQ_U64(lixe_nop_prefix(traced, sizeof(traced)), 0);
    CHECK_EQ_U64(lixe_nop_prefix(plain, sizeof(plain)), 0);
    CHECK_EQ_U64(lixe_nop_prefix(small, sizeof(small)), 9);
    /* an instruction cut by the end of the buffer is not counted */
    CHECK_EQ_U64(lixe_nop_prefix(ftrace_nop, 4), 0);
    CHECK_EQ_U64(lixe_nop_prefix(ibt, 7), 4);
    CHECK_EQ_U64(lixe_nop_prefix(ibt, 0), 0);
}

/* A kallsyms stand-in: every function of both module pairs and the three task functions. */
static bool fake_lookup(void *ctx, const char *name, uint64_t *addr)
{
    static const char *const names[] = {"wake_up_new_task",         "begin_new_exec",
                                        "do_exit",                  "module_param_sysfs_setup",
                                        "module_param_sysfs_remove", "do_init_module",
                                        "free_module"};
    const char *missing = ctx; /* a name kallsyms "lacks", or NULL */
    if (missing && !strcmp(name, missing))
        return false;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i])) {
            *addr = 0xffffffff81000000ull + 0x1000 * i;
            return true;
        }
    return false;
}

static uint32_t hash_list(uint32_t *h, const char *const *names)
{
    uint32_t n = 0;
    for (; names[n]; n++)
        h[n] = hvi_cami_name_hash(names[n]);
    return n;
}

HVI_TEST(cami_hooks_list_chooses_the_detoured_functions)
{
    struct lixe_choice c;
    uint32_t h[16];
    /* the committed entries' list: every event at its reference function */
    static const char *const full[] = {"module_param_sysfs_setup", "module_param_sysfs_remove",
                                       "begin_new_exec", "do_exit", "wake_up_new_task",
                                       "commit_creds", NULL};
    lixe_choose(h, hash_list(h, full), true, fake_lookup, NULL, &c);
    CHECK_STR(c.fn[0], "wake_up_new_task");
    CHECK_STR(c.fn[1], "begin_new_exec");
    CHECK_STR(c.fn[2], "do_exit");
    CHECK_STR(c.fn[3], "module_param_sysfs_setup");
    CHECK_STR(c.fn[4], "module_param_sysfs_remove");
    for (int i = 0; i < LIXE_EVENTS; i++)
        CHECK(c.addr[i] && c.from_cami[i] && !c.unlisted[i]);
    /* no linux_binprm offsets: exec stays empty, list or not */
    lixe_choose(h, hash_list(h, full), false, fake_lookup, NULL, &c);
    CHECK(!c.addr[1] && !c.fn[1] && !c.unlisted[1] && c.addr[2]);

    /* do_exit not listed: exit is not detoured although kallsyms has it */
    static const char *const no_exit[] = {"wake_up_new_task", "begin_new_exec", "do_init_module",
                                          "free_module", NULL};
    lixe_choose(h, hash_list(h, no_exit), true, fake_lookup, NULL, &c);
    CHECK(!c.addr[2] && !c.fn[2]);
    CHECK_STR(c.unlisted[2], "do_exit");
    CHECK(c.addr[0] && c.addr[1]);
    /* the module pair comes from the list: the listed second pair, not the first kallsyms has */
    CHECK_STR(c.fn[3], "do_init_module");
    CHECK_STR(c.fn[4], "free_module");
    CHECK(c.from_cami[3] && c.from_cami[4] && !c.unlisted[3]);

    /* half a pair listed: no module events, no fallback to a pair outside the list */
    static const char *const half[] = {"do_exit", "module_param_sysfs_setup", "free_module", NULL};
    lixe_choose(h, hash_list(h, half), true, fake_lookup, NULL, &c);
    CHECK(!c.addr[3] && !c.addr[4] && !c.fn[3] && !c.fn[4]);
    CHECK(c.unlisted[3] && c.unlisted[4]);
    CHECK(!c.addr[0] && c.unlisted[0] && !c.addr[1] && c.unlisted[1]);
    CHECK_STR(c.fn[2], "do_exit");

    /* a listed pair kallsyms lacks falls to the next listed pair; none left: empty, no refusal */
    static const char *const both[] = {"module_param_sysfs_setup", "module_param_sysfs_remove",
                                       "do_init_module", "free_module", NULL};
    lixe_choose(h, hash_list(h, both), true, fake_lookup, (void *)"module_param_sysfs_remove",
                &c);
    CHECK_STR(c.fn[3], "do_init_module");
    static const char *const first[] = {"module_param_sysfs_setup", "module_param_sysfs_remove",
                                        NULL};
    lixe_choose(h, hash_list(h, first), true, fake_lookup, (void *)"module_param_sysfs_remove",
                &c);
    CHECK(!c.addr[3] && !c.addr[4] && !c.unlisted[3]);

    /* no list (no CAMI entry or an empty list): kallsyms decides, first pair it has */
    lixe_choose(NULL, 0, true, fake_lookup, NULL, &c);
    for (int i = 0; i < LIXE_EVENTS; i++)
        CHECK(c.addr[i] && !c.from_cami[i] && !c.unlisted[i]);
    CHECK_STR(c.fn[2], "do_exit");
    CHECK_STR(c.fn[3], "module_param_sysfs_setup");
    lixe_choose(h, 0, true, fake_lookup, (void *)"module_param_sysfs_setup", &c);
    CHECK_STR(c.fn[3], "do_init_module");
    CHECK_STR(c.fn[4], "free_module");
}

HVI_TEST_MAIN()
