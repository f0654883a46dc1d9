/* Linux kernel protection on the simulator (synthetic 6.1-like kernel, see synth_kernel.h):
 * credentials compared in full and restored in deny mode, cred pointer swaps flagged, CR0.WP /
 * CR4.SMEP/SMAP set again in deny mode, and the unpacker's page-table check (a vmalloc page
 * that loses NX; hostile page tables stay bounded). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "hvi/alert.h"
#include "hvi/linux.h"
#include "hvi/linux_protect.h"
#include "hvi/mem.h"
#include "hvi_sim.h"
#include "synth_kernel.h"

#define IDT_VA 0xfffffe0000000000ull
#define HEAP_VA 0xffff888000100000ull
#define INIT_TASK_OFF 0x1010u              /* sym_addr(1) - IMG_VA */
#define TASK_A 0x000u                      /* heap offsets */
#define TASK_B 0x400u
#define CRED_A 0x800u
#define CRED_B 0x900u
#define VMALLOC_PAGE 0xffffc90000003000ull /* default vmalloc_base (no symbol in the image) */
#define MODULE_PAGE 0xffffffffc0000000ull

static const char *const OFFSETS =
    "task_struct.tasks 256\ntask_struct.pid 272\ntask_struct.tgid 276\n"
    "task_struct.real_parent 280\ntask_struct.mm 288\ntask_struct.cred 296\n"
    "task_struct.real_cred 240\n"
    "task_struct.comm 304\ntask_struct.thread_group 320\nmm_struct.mm_mt 0\nmm_struct.pgd 72\n"
    "mm_struct.arg_start 80\nmm_struct.arg_end 88\nmm_struct.exe_file 96\n"
    "vm_area_struct.vm_start 0\nvm_area_struct.vm_end 8\nvm_area_struct.vm_flags 32\n"
    "vm_area_struct.vm_pgoff 40\nvm_area_struct.vm_file 48\nfile.f_path 16\n"
    "dentry.d_parent 24\ndentry.d_name 32\ncred.uid 8\ncred.gid 12\ncred.euid 24\ncred.egid 28\n"
    "cred.suid 16\ncred.sgid 20\ncred.fsuid 32\ncred.fsgid 36\ncred.cap_permitted 52\n"
    "cred.cap_effective 60\n"
    "module.list 8\nmodule.name 24\nmodule.state 0\nmodule.core_layout 320\n";

struct env {
    hvi_sim *sim;
    hvi_engine *e;
    uint64_t cr3;
    char offsets[64];
    hvi_alert seen[16];
    size_t n;
};

static void on_alert(const hvi_alert *a, void *user)
{
    struct env *v = user;
    if (v->n < 16)
        v->seen[v->n++] = *a;
}

static void put_u64(uint8_t *b, size_t off, uint64_t v) { memcpy(b + off, &v, 8); }
static void put_u32(uint8_t *b, size_t off, uint32_t v) { memcpy(b + off, &v, 4); }

static hvi_status map_bytes(struct env *v, uint64_t va, const void *data, size_t len)
{
    size_t pages = (len + 4095) / 4096;
    hvi_gpa gpa = 0;
    hvi_status st = hvi_sim_alloc_frames(v->sim, pages, 4096, &gpa);
    for (size_t i = 0; st == HVI_OK && i < pages; i++)
        st = hvi_sim_map(v->sim, v->cr3, HVI_PAGING_4LVL, va + i * 4096, gpa + i * 4096, 4096,
                         HVI_SIM_PTE_W | HVI_SIM_PTE_NX);
    if (st == HVI_OK && data)
        st = hvi_sim_phys_write(v->sim, gpa, data, len);
    return st;
}

/* init_task -> A (pid 7) -> B (pid 8) -> init_task; both user processes (mm set) with their
 * own cred (uid 1000 / 1001); the modules list is empty (self-linked). */
static void add_tasks(uint8_t *img, uint8_t *heap)
{
    uint64_t it = IMG_VA + INIT_TASK_OFF, a = HEAP_VA + TASK_A, b = HEAP_VA + TASK_B;
    uint64_t mods = sym_addr(2);
    put_u64(img, mods - IMG_VA, mods);
    put_u64(img, mods - IMG_VA + 8, mods);
    put_u64(img, INIT_TASK_OFF + 256, a + 256);
    put_u64(img, INIT_TASK_OFF + 264, b + 256);
    const struct {
        uint32_t off, cred;
        uint64_t next, prev;
        uint32_t pid, uid;
        const char *comm;
    } t[2] = {{TASK_A, CRED_A, b + 256, it + 256, 7, 1000, "task_a"},
              {TASK_B, CRED_B, it + 256, a + 256, 8, 1001, "task_b"}};
    for (int i = 0; i < 2; i++) {
        uint8_t *p = heap + t[i].off;
        uint64_t self = HEAP_VA + t[i].off;
        put_u64(p, 256, t[i].next);
        put_u64(p, 264, t[i].prev);
        put_u64(p, 320, self + 320); /* thread_group: alone */
        put_u64(p, 328, self + 320);
        put_u32(p, 272, t[i].pid);
        put_u32(p, 276, t[i].pid);
        put_u64(p, 280, it);
        put_u64(p, 288, HEAP_VA + 0xf00); /* an mm: a user process */
        put_u64(p, 296, HEAP_VA + t[i].cred);
        put_u64(p, 240, HEAP_VA + t[i].cred);
        memcpy(p + 304, t[i].comm, strlen(t[i].comm) + 1);
        for (uint32_t f = 8; f <= 36; f += 4)
            put_u32(heap, t[i].cred + f, t[i].uid);
    }
}

static bool env_new_caps(struct env *v, uint64_t caps)
{
    memset(v, 0, sizeof(*v));
    hvi_sim_config cfg = {.ram_size = 16u << 20};
    hvi_glue g;
    if (hvi_sim_new(&cfg, &v->sim) != HVI_OK)
        return false;
    hvi_sim_set_caps(v->sim, caps);
    if (hvi_sim_pt_new(v->sim, HVI_PAGING_4LVL, &v->cr3) ||
        hvi_sim_set_paging(v->sim, 0, HVI_PAGING_4LVL, v->cr3) || hvi_sim_glue(v->sim, &g) ||
        hvi_engine_new(&g, &v->e))
        return false;
    uint8_t *img = malloc(IMG_LEN), heap[4096] = {0}, idt[4096] = {0};
    if (!img)
        return false;
    build_image(img);
    add_tasks(img, heap);
    /* one IDT gate at an image address, so the kernel is found from the IDT */
    uint64_t h = IMG_VA + 0x1a30;
    idt[0] = (uint8_t)h, idt[1] = (uint8_t)(h >> 8), idt[2] = 0x10, idt[5] = 0x8e;
    idt[6] = (uint8_t)(h >> 16), idt[7] = (uint8_t)(h >> 24);
    for (int i = 0; i < 4; i++)
        idt[8 + i] = (uint8_t)(h >> (32 + 8 * i));
    hvi_status st = HVI_OK;
    for (size_t i = 0; st == HVI_OK && i < IMG_LEN / 4096; i++) { /* the image: executable */
        hvi_gpa gpa = 0;
        st = hvi_sim_alloc_frames(v->sim, 1, 4096, &gpa);
        if (st == HVI_OK)
            st = hvi_sim_map(v->sim, v->cr3, HVI_PAGING_4LVL, IMG_VA + i * 4096, gpa, 4096,
                             HVI_SIM_PTE_W);
        if (st == HVI_OK)
            st = hvi_sim_phys_write(v->sim, gpa, img + i * 4096, 4096);
    }
    free(img);
    if (st != HVI_OK || map_bytes(v, HEAP_VA, heap, sizeof(heap)) != HVI_OK ||
        map_bytes(v, IDT_VA, idt, sizeof(idt)) != HVI_OK)
        return false;
    hvi_regs *r = hvi_sim_vcpu_regs(v->sim, 0);
    r->idtr_base = IDT_VA;
    r->idtr_limit = 0xfff;
    snprintf(v->offsets, sizeof(v->offsets), "/tmp/hvi-lixp-test-%d.txt", (int)getpid());
    FILE *f = fopen(v->offsets, "w");
    if (!f)
        return false;
    fputs(OFFSETS, f);
    fclose(f);
    hvi_guest_params p = {.size = sizeof(p), .os_hint = HVI_OS_LINUX};
    if (hvi_linux_set_offsets_file(v->e, v->offsets) != HVI_OK || hvi_new_guest(v->e, &p)) {
        fprintf(stderr, "  attach: %s\n", hvi_last_error(v->e));
        return false;
    }
    hvi_set_alert_callback(v->e, on_alert, v);
    hvi_sim_attach(v->sim, v->e);
    return true;
}

static bool env_new(struct env *v) { return env_new_caps(v, HVI_SIM_CAPS_ALL); }

static void env_free(struct env *v)
{
    hvi_engine_free(v->e);
    hvi_sim_free(v->sim);
    unlink(v->offsets);
}

static uint64_t rd64(struct env *v, uint64_t va)
{
    uint64_t x = 0;
    CHECK_OK(hvi_gva_read(v->e, 0, va, &x, 8));
    return x;
}

HVI_TEST(creds_changed_in_place_are_denied_every_field)
{
    struct env v;
    REQUIRE(env_new(&v));
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_CREDS));
    CHECK_OK(hvi_linux_protect_start(v.e));
    CHECK_EQ_U64(v.n, 0);
    /* capabilities only (ids untouched) */
    uint64_t full = 0x1ffffffffffull;
    CHECK_OK(hvi_gva_write(v.e, 0, HEAP_VA + CRED_A + 60, &full, 8));
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 1);
    REQUIRE(v.n == 1);
    CHECK_EQ_U64(v.seen[0].type, HVI_ALERT_CREDS);
    CHECK_EQ_U64((uint64_t)v.seen[0].pid, 7);
    CHECK_EQ_U64(v.seen[0].action, HVI_ALERT_DENIED);
    CHECK(strstr(v.seen[0].detail, "cap_eff 0x0->0x1ffffffffff") != NULL);
    CHECK_EQ_U64(rd64(&v, HEAP_VA + CRED_A + 60), 0); /* written back */
    /* fsuid alone, log only: reported, left */
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_CREDS | HVI_OPT_LOG_ONLY));
    uint32_t zero = 0;
    CHECK_OK(hvi_gva_write(v.e, 0, HEAP_VA + CRED_B + 32, &zero, 4));
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 1);
    REQUIRE(v.n == 2);
    CHECK_EQ_U64((uint64_t)v.seen[1].pid, 8);
    CHECK_EQ_U64(v.seen[1].action, HVI_ALERT_LOGGED);
    CHECK(strstr(v.seen[1].detail, "fsuid 1001->0") != NULL);
    CHECK_EQ_U64(rd64(&v, HEAP_VA + CRED_B + 32) & 0xffffffffu, 0);
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0); /* the new value is the reference now */
    env_free(&v);
}

HVI_TEST(cred_pointer_swapped_to_another_process_is_flagged_once)
{
    struct env v;
    REQUIRE(env_new(&v));
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_CREDS));
    CHECK_OK(hvi_linux_protect_start(v.e));
    uint64_t cred_a = HEAP_VA + CRED_A;
    CHECK_OK(hvi_gva_write(v.e, 0, HEAP_VA + TASK_B + 296, &cred_a, 8));
    CHECK_OK(hvi_gva_write(v.e, 0, HEAP_VA + TASK_B + 240, &cred_a, 8));
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 1);
    REQUIRE(v.n == 1);
    CHECK_EQ_U64(v.seen[0].type, HVI_ALERT_CREDS);
    CHECK_EQ_U64((uint64_t)v.seen[0].pid, 8);
    CHECK_EQ_U64(v.seen[0].action, HVI_ALERT_LOGGED); /* swaps are not undone */
    CHECK(strstr(v.seen[0].detail, "the cred of pid 7 (another process)") != NULL);
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0); /* once */
    env_free(&v);
}

/* CR0.WP / CR4.SMEP / CR4.SMAP cleared on a vCPU: denied = the bit is set again on that vCPU
 * (the other control registers untouched), deferred while the vCPU has interrupts off in kernel
 * mode, log only = reported and left. */
HVI_TEST(cr_bits_cleared_are_set_again_in_deny_mode)
{
    struct env v;
    REQUIRE(env_new(&v));
    hvi_regs *r = hvi_sim_vcpu_regs(v.sim, 0);
    r->cr0 |= 1ull << 16;                 /* WP */
    r->cr4 |= (1ull << 20) | (1ull << 21); /* SMEP, SMAP */
    r->rflags = 0x202;                     /* kernel mode (CS 0), interrupts on */
    uint64_t cr3 = r->cr3, cr4 = r->cr4, cr0 = r->cr0;
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_KM_CR));
    CHECK_OK(hvi_linux_protect_start(v.e));
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0); /* baseline: nothing cleared */
    r->cr0 &= ~(1ull << 16);
    r->cr4 &= ~(1ull << 21);
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 2);
    REQUIRE(v.n == 2);
    CHECK(!strcmp(v.seen[0].object, "cr0.wp") && !strcmp(v.seen[1].object, "cr4.smap"));
    CHECK_EQ_U64(v.seen[0].type, HVI_ALERT_CR);
    CHECK_EQ_U64(v.seen[0].action, HVI_ALERT_DENIED);
    CHECK_EQ_U64(v.seen[1].action, HVI_ALERT_DENIED);
    CHECK(strstr(v.seen[0].detail, "set again") != NULL);
    CHECK_EQ_U64(r->cr0, cr0); /* set again on the vCPU */
    CHECK_EQ_U64(r->cr4, cr4);
    CHECK_EQ_U64(r->cr3, cr3);
    CHECK(!hvi_sim_paused(v.sim));
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0); /* restored: nothing more to say */
    /* cleared while the vCPU runs in kernel mode with interrupts off (the clearer's own short
     * write window): reported once, not set yet; set on the first tick with interrupts on */
    r->rflags = 0x2;
    r->cr0 &= ~(1ull << 16);
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 1);
    REQUIRE(v.n == 3);
    CHECK_EQ_U64(v.seen[2].action, HVI_ALERT_LOGGED);
    CHECK(strstr(v.seen[2].detail, "interrupts off") != NULL);
    CHECK_EQ_U64(r->cr0 & (1ull << 16), 0);
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0); /* still in the window: no repeat */
    r->rflags = 0x202;
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 1);
    REQUIRE(v.n == 4);
    CHECK_EQ_U64(v.seen[3].action, HVI_ALERT_DENIED);
    CHECK_EQ_U64(r->cr0, cr0);
    v.n = 0;
    /* log only: reported once and left */
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_KM_CR | HVI_OPT_LOG_ONLY));
    r->cr4 &= ~(1ull << 20);
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 1);
    REQUIRE(v.n == 1);
    CHECK(!strcmp(v.seen[0].object, "cr4.smep"));
    CHECK_EQ_U64(v.seen[0].action, HVI_ALERT_LOGGED);
    CHECK_EQ_U64(r->cr4 & (1ull << 20), 0);
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0);
    env_free(&v);
}

/* Map a fresh frame at va with the given flags; *gpa receives it. */
static void map_page(struct env *v, uint64_t va, uint64_t flags, hvi_gpa *gpa)
{
    CHECK_OK(hvi_sim_alloc_frames(v->sim, 1, 4096, gpa));
    CHECK_OK(hvi_sim_map(v->sim, v->cr3, HVI_PAGING_4LVL, va, *gpa, 4096, flags));
}

HVI_TEST(unpacker_flags_a_vmalloc_page_that_loses_nx)
{
    struct env v;
    REQUIRE(env_new(&v));
    hvi_gpa gpa = 0, mgpa = 0;
    map_page(&v, VMALLOC_PAGE, HVI_SIM_PTE_W | HVI_SIM_PTE_NX, &gpa);
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_KM_UNPACK));
    CHECK_OK(hvi_linux_protect_start(v.e)); /* baseline */
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0);
    hvi_linux_protect_stats ps;
    CHECK_OK(hvi_linux_protect_stats_get(v.e, &ps));
    CHECK(ps.unpack_pages >= 1);
    /* code written, then NX cleared */
    static const uint8_t code[6] = {0xb8, 0x2a, 0, 0, 0, 0xc3};
    CHECK_OK(hvi_sim_phys_write(v.sim, gpa, code, sizeof(code)));
    CHECK_OK(hvi_sim_unmap(v.sim, v.cr3, HVI_PAGING_4LVL, VMALLOC_PAGE));
    CHECK_OK(hvi_sim_map(v.sim, v.cr3, HVI_PAGING_4LVL, VMALLOC_PAGE, gpa, 4096, HVI_SIM_PTE_W));
    /* an executable module-area page nobody owns (no vm_struct layout: treated as kernel's) */
    map_page(&v, MODULE_PAGE, HVI_SIM_PTE_W, &mgpa);
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 1);
    REQUIRE(v.n == 1);
    CHECK_EQ_U64(v.seen[0].type, HVI_ALERT_UNPACK);
    CHECK(!strcmp(v.seen[0].object, "kernel-exec:vmalloc"));
    CHECK_EQ_U64(v.seen[0].gva, VMALLOC_PAGE);
    CHECK_EQ_U64(v.seen[0].rip, 0);
    CHECK(strstr(v.seen[0].detail, "content written since, then NX cleared") != NULL);
    CHECK(strstr(v.seen[0].detail, "writer RIP unknown") != NULL);
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0); /* once */
    /* made NX again and executable again: a new transition, reported again */
    CHECK_OK(hvi_sim_unmap(v.sim, v.cr3, HVI_PAGING_4LVL, VMALLOC_PAGE));
    CHECK_OK(hvi_sim_map(v.sim, v.cr3, HVI_PAGING_4LVL, VMALLOC_PAGE, gpa, 4096,
                         HVI_SIM_PTE_W | HVI_SIM_PTE_NX));
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0);
    CHECK_OK(hvi_sim_unmap(v.sim, v.cr3, HVI_PAGING_4LVL, VMALLOC_PAGE));
    CHECK_OK(hvi_sim_map(v.sim, v.cr3, HVI_PAGING_4LVL, VMALLOC_PAGE, gpa, 4096, HVI_SIM_PTE_W));
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 1);
    CHECK(strstr(v.seen[1].detail, "content unchanged since") != NULL);
    env_free(&v);
}

HVI_TEST(unpacker_walk_is_bounded_on_hostile_page_tables)
{
    struct env v;
    REQUIRE(env_new(&v));
    hvi_gpa gpa = 0;
    map_page(&v, MODULE_PAGE, HVI_SIM_PTE_W | HVI_SIM_PTE_NX, &gpa);
    hvi_translation t;
    CHECK_OK(hvi_gva_translate(v.e, 0, MODULE_PAGE, &t));
    REQUIRE(t.levels == 4 && t.fault_level == 0);
    /* PD entries: one back at the top-level table (a cycle: PML4 read as a page table),
     * one outside guest RAM, one pointing at the PD itself; every PT entry of the module
     * page's table pointing at the PD too */
    uint64_t pd_entry = t.entry_gpa[1], pd = pd_entry & ~0xfffull;
    uint64_t bad[3] = {v.cr3 | 0x3, 0x7ffffff000ull | 0x3, pd | 0x3};
    CHECK_OK(hvi_sim_phys_write(v.sim, pd_entry + 8, bad, sizeof(bad)));
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_KM_UNPACK));
    CHECK_OK(hvi_linux_protect_start(v.e));
    for (int i = 0; i < 3; i++)
        (void)hvi_linux_protect_check(v.e); /* returns, bounded, whatever it finds */
    hvi_linux_protect_stats ps;
    CHECK_OK(hvi_linux_protect_stats_get(v.e, &ps));
    CHECK(ps.unpack_tables <= 4096);
    CHECK(ps.checks == 4);
    env_free(&v);
}

/* QEMU-like backend (no EPT): the int 0x80 gate gets a watchpoint write hook through the IDTR
 * address; a write is reported after it with the writer's RIP and symbol, and undone. */
HVI_TEST(idt_gate_write_hook_names_the_writer_and_denies)
{
    struct env v;
    REQUIRE(env_new_caps(&v, HVI_SIM_CAPS_QEMU_LIKE));
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_KM_IDT));
    CHECK_OK(hvi_linux_protect_start(v.e));
    hvi_linux_protect_stats ps;
    CHECK_OK(hvi_linux_protect_stats_get(v.e, &ps));
    CHECK(ps.watches >= 1); /* no idt_table symbol in the synthetic image: the alias only */
    uint8_t before[16], after[16], evil[8] = {0x11, 0x22, 0x10, 0, 0, 0x8e, 0x33, 0x44};
    CHECK_OK(hvi_gva_read(v.e, 0, IDT_VA + 0x800, before, 16));
    uint64_t rip = sym_addr(100) + 4;
    hvi_sim_vcpu_regs(v.sim, 0)->rip = rip;
    hvi_event_reply reply;
    CHECK_OK(hvi_sim_guest_write(v.sim, 0, IDT_VA + 0x800, evil, sizeof(evil), NULL, 0, &reply));
    CHECK_OK(hvi_gva_read(v.e, 0, IDT_VA + 0x800, after, 16));
    CHECK(!memcmp(before, after, 16)); /* denied: nothing left in memory */
    REQUIRE(v.n == 1);
    CHECK_EQ_U64(v.seen[0].type, HVI_ALERT_INTEGRITY);
    CHECK(!strcmp(v.seen[0].object, "idt"));
    CHECK_EQ_U64(v.seen[0].rip, rip);
    CHECK(!strncmp(v.seen[0].symbol, "fn_", 3) && strstr(v.seen[0].symbol, "+0x4") != NULL);
    CHECK(!strcmp(v.seen[0].module, "kernel"));
    CHECK_EQ_U64(v.seen[0].action, HVI_ALERT_DENIED);
    CHECK(strstr(v.seen[0].detail, "IDT gate 0x80") != NULL);
    /* log only: reported and left */
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_KM_IDT | HVI_OPT_LOG_ONLY));
    CHECK_OK(hvi_sim_guest_write(v.sim, 0, IDT_VA + 0x800, evil, sizeof(evil), NULL, 0, &reply));
    CHECK_OK(hvi_gva_read(v.e, 0, IDT_VA + 0x800, after, 8));
    CHECK(!memcmp(after, evil, 8));
    CHECK_EQ_U64(v.n, 2);
    CHECK_EQ_U64(v.seen[1].action, HVI_ALERT_LOGGED);
    /* protection off: allowed silently; detach removes the watchpoint */
    CHECK_OK(hvi_options_set(v.e, 0));
    CHECK_OK(hvi_sim_guest_write(v.sim, 0, IDT_VA + 0x800, before, 8, NULL, 0, &reply));
    CHECK_EQ_U64(v.n, 2);
    CHECK_OK(hvi_detach(v.e));
    env_free(&v);
}

/* QEMU under TCG (watchpoints of any length): the whole IDT (4 KiB) is one write hook instead of
 * the gate pieces; a write to any gate is reported at once with the writer, denied (nothing left,
 * and the timer check finds nothing to report a second time), logged in log-only mode (and again
 * not reported by the timer), and the hook is gone after detach. */
HVI_TEST(whole_idt_write_hook_with_range_watchpoints)
{
    struct env v;
    REQUIRE(env_new_caps(&v, HVI_SIM_CAPS_QEMU_TCG));
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_KM_IDT));
    CHECK_OK(hvi_linux_protect_start(v.e));
    hvi_linux_protect_stats ps;
    CHECK_OK(hvi_linux_protect_stats_get(v.e, &ps));
    CHECK_EQ_U64(ps.watches, 1);                         /* one hook: the whole table */
    CHECK_EQ_U64(hvi_sim_watchpoint_count(v.sim), 1);
    uint8_t before[16], after[16], evil[8] = {0x11, 0x22, 0x10, 0, 0, 0x8e, 0x33, 0x44};
    CHECK_OK(hvi_gva_read(v.e, 0, IDT_VA + 0xee0, before, 16));
    uint64_t rip = sym_addr(100) + 4;
    hvi_sim_vcpu_regs(v.sim, 0)->rip = rip;
    hvi_event_reply reply;
    /* vector 0xee: no gate hook would cover it */
    CHECK_OK(hvi_sim_guest_write(v.sim, 0, IDT_VA + 0xee0, evil, sizeof(evil), NULL, 0, &reply));
    CHECK_OK(hvi_gva_read(v.e, 0, IDT_VA + 0xee0, after, 16));
    CHECK(!memcmp(before, after, 16)); /* denied at the write */
    REQUIRE(v.n == 1);
    CHECK(!strcmp(v.seen[0].object, "idt"));
    CHECK_EQ_U64(v.seen[0].gva, IDT_VA + 0xee0);
    CHECK_EQ_U64(v.seen[0].rip, rip); /* no writing instruction decodes before it: the stop RIP */
    CHECK(!strncmp(v.seen[0].symbol, "fn_", 3));
    CHECK(!strcmp(v.seen[0].module, "kernel"));
    CHECK_EQ_U64(v.seen[0].action, HVI_ALERT_DENIED);
    CHECK(strstr(v.seen[0].detail, "write hook") != NULL);
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0); /* nothing left for the timer */
    /* log only: reported once, left in memory, and the timer does not report it again */
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_KM_IDT | HVI_OPT_LOG_ONLY));
    CHECK_OK(hvi_sim_guest_write(v.sim, 0, IDT_VA + 0xee0, evil, sizeof(evil), NULL, 0, &reply));
    CHECK_OK(hvi_gva_read(v.e, 0, IDT_VA + 0xee0, after, 8));
    CHECK(!memcmp(after, evil, 8));
    CHECK_EQ_U64(v.n, 2);
    CHECK_EQ_U64(v.seen[1].action, HVI_ALERT_LOGGED);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0);
    /* a write the hook cannot see (another alias: physical memory) is the timer's, one round
     * late (the first round leaves it to a hook stop that may still be queued) */
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_KM_IDT));
    hvi_gpa gpa = 0;
    CHECK_OK(hvi_gva_to_gpa(v.e, 0, IDT_VA + 0x100, &gpa));
    uint8_t orig[8];
    CHECK_OK(hvi_gva_read(v.e, 0, IDT_VA + 0x100, orig, 8));
    /* a transient change seen once and gone by the next round leaves nothing behind: the same
     * change seen again later is new again (first sighting deferred), not "still there" */
    CHECK_OK(hvi_sim_phys_write(v.sim, gpa, evil, sizeof(evil)));
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0);
    CHECK_OK(hvi_sim_phys_write(v.sim, gpa, orig, sizeof(orig)));
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0);
    CHECK_OK(hvi_sim_phys_write(v.sim, gpa, evil, sizeof(evil)));
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 0);
    CHECK_EQ_U64(hvi_linux_protect_check(v.e), 1);
    CHECK_EQ_U64(v.n, 3);
    CHECK_EQ_U64(v.seen[2].rip, 0);
    CHECK_OK(hvi_gva_read(v.e, 0, IDT_VA + 0x100, after, 8));
    CHECK(memcmp(after, evil, 8) != 0); /* restored by the timer */
    /* the hook follows the option: off = no watchpoint (a write is not seen), on = back */
    CHECK_OK(hvi_options_set(v.e, 0));
    CHECK_EQ_U64(hvi_sim_watchpoint_count(v.sim), 0);
    CHECK_OK(hvi_options_set(v.e, HVI_OPT_KM_IDT));
    CHECK_EQ_U64(hvi_sim_watchpoint_count(v.sim), 1);
    CHECK_OK(hvi_sim_guest_write(v.sim, 0, IDT_VA + 0xe00, evil, sizeof(evil), NULL, 0, &reply));
    CHECK_EQ_U64(v.n, 4);
    CHECK_EQ_U64(v.seen[3].gva, IDT_VA + 0xe00);
    CHECK_EQ_U64(v.seen[3].action, HVI_ALERT_DENIED);
    CHECK_OK(hvi_detach(v.e));
    CHECK_EQ_U64(hvi_sim_watchpoint_count(v.sim), 0);
    env_free(&v);
}

HVI_TEST_MAIN()
