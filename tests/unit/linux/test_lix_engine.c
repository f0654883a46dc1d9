/* The Linux layer through the engine on the simulator: hvi_new_guest() finds a synthetic
 * kernel from the IDT through real page tables, refuses it by version without support data,
 * accepts it with offsets, and leaves a guest that is not Linux memory-only. */
#include <unistd.h>

#include "harness.h"
#include "hvi/cami.h"
#include "hvi/linux.h"
#include "hvi_sim.h"
#include "synth_kernel.h"

#define IDT_VA 0xfffffe0000000000ull
#define HEAP_VA 0xffff888000100000ull
#define INIT_TASK_OFF 0x1010u /* sym_addr(1) - IMG_VA */

struct env {
    hvi_sim *sim;
    hvi_engine *e;
    uint64_t cr3;
    char offsets[64];
};

static hvi_status map_bytes(struct env *v, uint64_t va, const void *data, size_t len)
{
    size_t pages = (len + 4095) / 4096;
    hvi_gpa gpa = 0;
    hvi_status st = hvi_sim_alloc_frames(v->sim, pages, 4096, &gpa);
    for (size_t i = 0; st == HVI_OK && i < pages; i++)
        st = hvi_sim_map(v->sim, v->cr3, HVI_PAGING_4LVL, va + i * 4096, gpa + i * 4096, 4096, 0x3);
    if (st == HVI_OK && data)
        st = hvi_sim_phys_write(v->sim, gpa, data, len);
    return st;
}

static void gate(uint8_t *g, uint64_t h)
{
    memset(g, 0, 16);
    g[0] = (uint8_t)h, g[1] = (uint8_t)(h >> 8), g[2] = 0x10, g[5] = 0x8e;
    g[6] = (uint8_t)(h >> 16), g[7] = (uint8_t)(h >> 24);
    for (int i = 0; i < 4; i++)
        g[8 + i] = (uint8_t)(h >> (32 + 8 * i));
}

/* Offsets of the synthetic structures (same values as the offsets file below). */
static const char *const OFFSETS =
    "task_struct.tasks 256\ntask_struct.pid 272\ntask_struct.tgid 276\n"
    "task_struct.real_parent 280\ntask_struct.mm 288\ntask_struct.cred 296\n"
    "task_struct.comm 304\ntask_struct.thread_group 320\nmm_struct.mm_mt 0\nmm_struct.pgd 72\n"
    "mm_struct.arg_start 80\nmm_struct.arg_end 88\nmm_struct.exe_file 96\n"
    "vm_area_struct.vm_start 0\nvm_area_struct.vm_end 8\nvm_area_struct.vm_flags 32\n"
    "vm_area_struct.vm_pgoff 40\nvm_area_struct.vm_file 48\nfile.f_path 16\n"
    "dentry.d_parent 24\ndentry.d_name 32\ncred.uid 8\ncred.gid 12\ncred.euid 24\ncred.egid 28\n"
    "module.list 8\nmodule.name 24\nmodule.state 0\nmodule.core_layout 320\n";

static int read_whole_file(const char *path, void **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int rc = -1;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        *buf = n > 0 ? malloc((size_t)n) : NULL;
        if (*buf && fseek(f, 0, SEEK_SET) == 0 && fread(*buf, 1, (size_t)n, f) == (size_t)n) {
            *len = (size_t)n;
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

static void put_u64(uint8_t *b, size_t off, uint64_t v)
{
    memcpy(b + off, &v, 8);
}

/* init_task (in the image) -> one process "sim_proc" pid 7 (on the heap) -> init_task. */
static void add_tasks(uint8_t *img, uint8_t *heap)
{
    uint64_t it = IMG_VA + INIT_TASK_OFF, p = HEAP_VA, cred = HEAP_VA + 0x800;
    put_u64(img, INIT_TASK_OFF + 256, p + 256); /* init.tasks.next */
    put_u64(img, INIT_TASK_OFF + 264, p + 256); /* init.tasks.prev */
    put_u64(heap, 256, it + 256);
    put_u64(heap, 264, it + 256);
    put_u64(heap, 320, p + 320); /* thread_group: alone */
    put_u64(heap, 328, p + 320);
    uint32_t pid = 7;
    memcpy(heap + 272, &pid, 4);
    memcpy(heap + 276, &pid, 4);
    put_u64(heap, 280, it);
    put_u64(heap, 296, cred);
    memcpy(heap + 304, "sim_proc", 9);
    uint32_t uid = 1000;
    memcpy(heap + 0x800 + 8, &uid, 4);
}

enum idt_setup { IDT_FIXED, IDT_FIXED_GARBAGE, IDT_NO_IDTR };
#define IDT2_VA 0xfffffe0000200000ull /* the real IDT when the fixed address holds garbage */

static void env_new_idt(struct env *v, bool with_kernel, enum idt_setup how);

static void env_new(struct env *v, bool with_kernel)
{
    env_new_idt(v, with_kernel, IDT_FIXED);
}

/* IDT_FIXED: the IDT at Linux's fixed address, the IDTR pointing at it; IDT_FIXED_GARBAGE: a
 * gate into the heap there, the real IDT elsewhere (IDTR); IDT_NO_IDTR: the IDTR unusable. */
static void env_new_idt(struct env *v, bool with_kernel, enum idt_setup how)
{
    memset(v, 0, sizeof(*v));
    hvi_sim_config cfg = {.ram_size = 16u << 20};
    hvi_glue g;
    if (hvi_sim_new(&cfg, &v->sim) != HVI_OK || hvi_sim_pt_new(v->sim, HVI_PAGING_4LVL, &v->cr3) ||
        hvi_sim_set_paging(v->sim, 0, HVI_PAGING_4LVL, v->cr3) || hvi_sim_glue(v->sim, &g) ||
        hvi_engine_new(&g, &v->e)) {
        fprintf(stderr, "  simulator setup failed\n");
        return;
    }
    uint8_t idt[4096] = {0};
    if (with_kernel) {
        uint8_t *img = malloc(IMG_LEN), heap[4096] = {0};
        if (!img)
            return;
        build_image(img);
        add_tasks(img, heap);
        gate(idt, IMG_VA + 0x1a30);
        map_bytes(v, IMG_VA, img, IMG_LEN);
        map_bytes(v, HEAP_VA, heap, sizeof(heap));
        free(img);
    }
    hvi_regs *r = hvi_sim_vcpu_regs(v->sim, 0);
    r->idtr_base = IDT_VA;
    r->idtr_limit = how == IDT_NO_IDTR ? 0 : 0xfff;
    if (how == IDT_FIXED_GARBAGE) {
        uint8_t bad[4096] = {0};
        gate(bad, HEAP_VA + 0x40); /* mapped, but no kernel image around it */
        map_bytes(v, IDT_VA, bad, sizeof(bad));
        map_bytes(v, IDT2_VA, idt, sizeof(idt));
        r->idtr_base = IDT2_VA;
    } else {
        map_bytes(v, IDT_VA, idt, sizeof(idt));
    }
    snprintf(v->offsets, sizeof(v->offsets), "/tmp/hvi-lix-test-%d.txt", (int)getpid());
    FILE *f = fopen(v->offsets, "w");
    if (f) {
        fputs(OFFSETS, f);
        fclose(f);
    }
}

static void env_free(struct env *v)
{
    hvi_engine_free(v->e);
    hvi_sim_free(v->sim);
    unlink(v->offsets);
}

static hvi_status attach_with(struct env *v, uint32_t os, const void *support, size_t len)
{
    hvi_guest_params p = {.size = sizeof(p), .os_hint = os, .support = support, .support_len = len};
    return hvi_new_guest(v->e, &p);
}

static hvi_status attach(struct env *v, uint32_t os)
{
    return attach_with(v, os, NULL, 0);
}

HVI_TEST(cami_entry_selected_by_the_banner)
{
    const char *paths[] = {HVI_SOURCE_DIR "/cami/linux"};
    void *sup = NULL;
    size_t len = 0;
    char msg[256];
    REQUIRE(hvi_cami_build(paths, 1, &sup, &len, msg, sizeof(msg)) == HVI_OK);
    struct env v;
    env_new(&v, true); /* banner "Linux version 6.1.0-56-amd64 ...": cami/linux has it */
    REQUIRE(v.e);
    hvi_status st = attach_with(&v, HVI_OS_LINUX, sup, len);
    if (st != HVI_OK)
        fprintf(stderr, "  %s\n", hvi_last_error(v.e));
    CHECK_OK(st);
    hvi_linux_info info;
    CHECK_OK(hvi_linux_get_info(v.e, &info));
    CHECK(info.have_offsets);
    env_free(&v);
    free(sup);
}

HVI_TEST(cami_without_matching_entry_is_refused)
{
    void *sup = NULL;
    size_t len = 0;
    if (read_whole_file(HVI_SHARED_DIR "/reference/hvmi-cami/intro_live_update.bin", &sup, &len))
        SKIP_CASE("reference CAMI file not available");
    struct env v;
    env_new(&v, true);
    REQUIRE(v.e);
    CHECK_STATUS(attach_with(&v, HVI_OS_LINUX, sup, len), HVI_E_UNSUPPORTED);
    CHECK(strstr(hvi_last_error(v.e), "no CAMI entry for Linux 6.1.0-56-amd64") != NULL);
    env_free(&v);
    free(sup);
}

HVI_TEST(kernel_without_support_entry_is_refused_by_version)
{
    struct env v;
    env_new(&v, true);
    REQUIRE(v.e);
    CHECK_STATUS(attach(&v, HVI_OS_LINUX), HVI_E_UNSUPPORTED);
    CHECK(strstr(hvi_last_error(v.e), "6.1.0-56-amd64") != NULL);
    hvi_linux_info info;
    CHECK_OK(hvi_linux_get_info(v.e, &info)); /* discovered, but not usable */
    CHECK(!info.have_offsets);
    hvi_linux_process *ps = NULL;
    size_t n = 0;
    CHECK_STATUS(hvi_linux_list_processes(v.e, false, &ps, &n), HVI_E_STATE);
    env_free(&v);
}

/* The IDT is read at Linux's fixed address first: the kernel is found with an unusable IDTR, and
 * a gate there that leads to no kernel falls back to the IDTR. */
HVI_TEST(kernel_entry_from_the_fixed_idt_address_or_the_idtr)
{
    for (int how = IDT_FIXED_GARBAGE; how <= IDT_NO_IDTR; how++) {
        struct env v;
        env_new_idt(&v, true, (enum idt_setup)how);
        REQUIRE(v.e);
        CHECK_OK(hvi_linux_set_offsets_file(v.e, v.offsets));
        hvi_status st = attach(&v, HVI_OS_LINUX);
        if (st != HVI_OK)
            fprintf(stderr, "  %s\n", hvi_last_error(v.e));
        CHECK_OK(st);
        hvi_linux_info info;
        CHECK_OK(hvi_linux_get_info(v.e, &info));
        CHECK_EQ_U64(info.image_start, IMG_VA);
        env_free(&v);
    }
    struct env v; /* neither: the IDTR's failure is reported */
    env_new_idt(&v, false, IDT_NO_IDTR);
    REQUIRE(v.e);
    CHECK(attach(&v, HVI_OS_LINUX) != HVI_OK);
    CHECK(strstr(hvi_last_error(v.e), "no usable gate") != NULL);
    env_free(&v);
}

HVI_TEST(kernel_found_from_idt_through_page_tables)
{
    struct env v;
    env_new(&v, true);
    REQUIRE(v.e);
    CHECK_OK(hvi_linux_set_offsets_file(v.e, v.offsets));
    hvi_status st = attach(&v, HVI_OS_UNKNOWN);
    if (st != HVI_OK)
        fprintf(stderr, "  %s\n", hvi_last_error(v.e));
    REQUIRE(st == HVI_OK);
    hvi_linux_info info;
    CHECK_OK(hvi_linux_get_info(v.e, &info));
    CHECK_STR(info.release, "6.1.0-56-amd64");
    CHECK_EQ_U64(info.image_start, IMG_VA);
    CHECK_EQ_U64(info.symbols, NSYMS);
    CHECK(info.have_offsets);
    uint64_t a = 0;
    CHECK_OK(hvi_linux_find_symbol(v.e, "fn_0300", &a));
    CHECK_EQ_U64(a, sym_addr(300));
    char name[64];
    uint64_t off = 0;
    CHECK_OK(hvi_linux_symbolize(v.e, sym_addr(42) + 3, name, sizeof(name), &off));
    CHECK_STR(name, "fn_0042");
    CHECK_EQ_U64(off, 3);
    hvi_linux_process *ps = NULL;
    size_t n = 0;
    CHECK_OK(hvi_linux_list_processes(v.e, true, &ps, &n));
    REQUIRE(n == 1);
    CHECK(ps[0].pid == 7 && ps[0].ppid == 0 && ps[0].uid == 1000 && ps[0].kernel_thread);
    CHECK_STR(ps[0].comm, "sim_proc");
    hvi_linux_free(ps);
    hvi_linux_vma *vm = NULL;
    CHECK_STATUS(hvi_linux_list_vmas(v.e, 99, &vm, &n), HVI_E_NOT_FOUND);
    CHECK_OK(hvi_linux_list_vmas(v.e, 7, &vm, &n));
    CHECK(n == 0);
    hvi_linux_free(vm);
    env_free(&v);
}

HVI_TEST(guest_without_kernel)
{
    struct env v;
    env_new(&v, false);
    REQUIRE(v.e);
    CHECK_OK(attach(&v, HVI_OS_UNKNOWN)); /* unknown and not Linux: memory-only */
    hvi_linux_info info;
    CHECK_STATUS(hvi_linux_get_info(v.e, &info), HVI_E_STATE);
    env_free(&v);
    env_new(&v, false);
    REQUIRE(v.e);
    CHECK(attach(&v, HVI_OS_LINUX) != HVI_OK); /* told it is Linux: no kernel is an error */
    CHECK(strstr(hvi_last_error(v.e), "IDT") != NULL);
    env_free(&v);
}

HVI_TEST_MAIN()
