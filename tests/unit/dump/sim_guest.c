/* Tests: the simulator's synthetic Linux guest for dump tests (see sim_guest.h). */
#include "sim_guest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../linux/synth_kernel.h"
#include "elf_writer.h"

#define IDT_VA 0xfffffe0000000000ull
#define HEAP_VA 0xffff888000100000ull
#define INIT_TASK_OFF 0x1010u

static const char *const OFFSETS =
    "task_struct.tasks 256\ntask_struct.pid 272\ntask_struct.tgid 276\n"
    "task_struct.real_parent 280\ntask_struct.mm 288\ntask_struct.cred 296\n"
    "task_struct.comm 304\ntask_struct.thread_group 320\nmm_struct.mm_mt 0\nmm_struct.pgd 72\n"
    "mm_struct.arg_start 80\nmm_struct.arg_end 88\nmm_struct.exe_file 96\n"
    "vm_area_struct.vm_start 0\nvm_area_struct.vm_end 8\nvm_area_struct.vm_flags 32\n"
    "vm_area_struct.vm_pgoff 40\nvm_area_struct.vm_file 48\nfile.f_path 16\n"
    "dentry.d_parent 24\ndentry.d_name 32\ncred.uid 8\ncred.gid 12\ncred.euid 24\ncred.egid 28\n"
    "module.list 8\nmodule.name 24\nmodule.state 0\nmodule.core_layout 320\n";

static hvi_status map_bytes(struct simguest *v, uint64_t va, const void *data, size_t len)
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

/* Two processes (pids 7 and 8, "sim_proc"/"sim_two") in the ring of init_task. */
static void add_tasks(uint8_t *img, uint8_t *heap)
{
    uint64_t it = IMG_VA + INIT_TASK_OFF, t[2] = {HEAP_VA, HEAP_VA + 0x400}, cred = HEAP_VA + 0x800;
    uint64_t ring[4] = {it, t[0], t[1], it};
    for (int i = 0; i < 3; i++) {
        uint64_t cur = ring[i], next = ring[i + 1];
        uint8_t *cp = cur == it ? img + INIT_TASK_OFF : heap + (cur - HEAP_VA);
        uint8_t *np = next == it ? img + INIT_TASK_OFF : heap + (next - HEAP_VA);
        ew_put64(cp + 256, next + 256); /* cur.tasks.next */
        ew_put64(np + 264, cur + 256);  /* next.tasks.prev */
    }
    const char *comm[2] = {"sim_proc", "sim_two"};
    for (int i = 0; i < 2; i++) {
        uint8_t *p = heap + (t[i] - HEAP_VA);
        ew_put64(p + 320, t[i] + 320);
        ew_put64(p + 328, t[i] + 320);
        ew_put32(p + 272, 7u + (uint32_t)i);
        ew_put32(p + 276, 7u + (uint32_t)i);
        ew_put64(p + 280, it);
        ew_put64(p + 296, cred);
        memcpy(p + 304, comm[i], strlen(comm[i]) + 1);
    }
    ew_put32(heap + 0x800 + 8, 1000);
}

bool simguest_new(struct simguest *v)
{
    memset(v, 0, sizeof(*v));
    hvi_sim_config cfg = {.ram_size = 4u << 20};
    if (hvi_sim_new(&cfg, &v->sim) != HVI_OK || hvi_sim_pt_new(v->sim, HVI_PAGING_4LVL, &v->cr3) ||
        hvi_sim_set_paging(v->sim, 0, HVI_PAGING_4LVL, v->cr3))
        return false;
    uint8_t idt[4096] = {0}, heap[4096] = {0};
    uint8_t *img = malloc(IMG_LEN);
    if (!img)
        return false;
    build_image(img);
    uint64_t mods = sym_addr(2); /* "modules": an empty list head */
    ew_put64(img + (mods - IMG_VA), mods);
    ew_put64(img + (mods - IMG_VA) + 8, mods);
    add_tasks(img, heap);
    uint64_t h = IMG_VA + 0x1a30; /* an interrupt gate to kernel text */
    idt[0] = (uint8_t)h, idt[1] = (uint8_t)(h >> 8), idt[2] = 0x10, idt[5] = 0x8e;
    idt[6] = (uint8_t)(h >> 16), idt[7] = (uint8_t)(h >> 24);
    ew_put32(idt + 8, (uint32_t)(h >> 32));
    bool ok = map_bytes(v, IMG_VA, img, IMG_LEN) == HVI_OK &&
              map_bytes(v, HEAP_VA, heap, sizeof(heap)) == HVI_OK &&
              map_bytes(v, IDT_VA, idt, sizeof(idt)) == HVI_OK;
    free(img);
    hvi_regs *r = hvi_sim_vcpu_regs(v->sim, 0);
    r->idtr_base = IDT_VA;
    r->idtr_limit = 0xfff;
    r->seg[HVI_CS] = (hvi_segment){.selector = 0x10, .limit = 0xfffff, .ar = 0xa09b};
    snprintf(v->offsets, sizeof(v->offsets), "/tmp/hvi-dump-offsets-%d.txt", (int)getpid());
    FILE *f = fopen(v->offsets, "w");
    if (!f)
        return false;
    fputs(OFFSETS, f);
    fclose(f);
    return ok;
}

uint8_t *simguest_elf(struct simguest *v, size_t *len)
{
    uint64_t ram = hvi_sim_ram_size(v->sim);
    uint8_t *mem = malloc(ram), *b = NULL;
    if (mem && hvi_sim_phys_read(v->sim, 0, mem, ram) == HVI_OK) {
        hvi_regs regs = *hvi_sim_vcpu_regs(v->sim, 0);
        struct ew_seg segs[] = {{0, mem, ram / 2}, {ram / 2, mem + ram / 2, ram / 2}};
        b = ew_build(segs, 2, &regs, 1, NULL, len, NULL);
    }
    free(mem);
    return b;
}
