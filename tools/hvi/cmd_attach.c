/*
 * hvi attach — attach an engine to the running QEMU test guest and print what it sees:
 * vCPU registers, paging mode, IDT base and a translated kernel address (the first IDT
 * entry's handler); with --cami FILE also the Linux view (kernel version, process and module
 * counts) through the Linux layer. The guest runs on after detach.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifdef HVI_HAVE_BACKEND_qemu
#include "hvi/hvi.h"
#include "hvi/linux.h"
#include "hvi/mem.h"
#include "hvi_qemu.h"
#ifdef HVI_HAVE_BACKEND_dump
#include "hvi_dump.h"
#endif

static void print_regs(uint32_t vcpu, const hvi_regs *r)
{
    static const char *const gpr[HVI_GPR_COUNT] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp",
                                                   "rsi", "rdi", "r8",  "r9",  "r10", "r11",
                                                   "r12", "r13", "r14", "r15"};
    printf("vCPU %u:\n", vcpu);
    for (int i = 0; i < HVI_GPR_COUNT; i++)
        printf("  %-3s %016" PRIx64 "%s", gpr[i], r->gpr[i], (i % 4 == 3) ? "\n" : "");
    printf("  rip %016" PRIx64 "  rflags %08" PRIx64 "  cs %04x ss %04x  fs_base %" PRIx64
           "  gs_base %" PRIx64 "\n",
           r->rip, r->rflags, r->seg[HVI_CS].selector, r->seg[HVI_SS].selector, r->fs_base,
           r->gs_base);
    printf("  cr0 %" PRIx64 "  cr2 %" PRIx64 "  cr3 %" PRIx64 "  cr4 %" PRIx64 "  efer %" PRIx64
           "\n",
           r->cr0, r->cr2, r->cr3, r->cr4, r->efer);
    if (r->valid & HVI_REGS_DTR)
        printf("  idtr %016" PRIx64 "/%x  gdtr %016" PRIx64 "/%x\n", r->idtr_base, r->idtr_limit,
               r->gdtr_base, r->gdtr_limit);
}

/* The first IDT entry (#DE): its handler address, translated to a GPA. */
static int show_idt(hvi_engine *e, const hvi_regs *r)
{
    uint8_t gate[16];
    hvi_status st = hvi_gva_read(e, 0, r->idtr_base, gate, sizeof(gate));
    if (st != HVI_OK) {
        printf("IDT[0]: unreadable at %" PRIx64 ": %s\n", r->idtr_base, hvi_strstatus(st));
        return 1;
    }
    uint64_t handler =
        (uint64_t)(gate[0] | gate[1] << 8) | (uint64_t)(gate[6] | gate[7] << 8) << 16 |
        (uint64_t)(gate[8] | gate[9] << 8 | gate[10] << 16 | (uint32_t)gate[11] << 24) << 32;
    hvi_translation t;
    memset(&t, 0, sizeof(t));
    st = hvi_gva_translate(e, hvi_mem_kernel_cr3(e), handler, &t);
    if (st != HVI_OK) {
        printf("IDT[0] handler %016" PRIx64 ": translation failed: %s\n", handler,
               hvi_strstatus(st));
        return 1;
    }
    uint8_t code[8] = {0};
    (void)hvi_gva_read(e, 0, handler, code, sizeof(code));
    printf("IDT[0] (#DE) handler %016" PRIx64 " -> GPA %" PRIx64 " (%" PRIu64 " KiB page%s%s), "
           "code %02x %02x %02x %02x %02x %02x %02x %02x\n",
           handler, t.gpa, t.page_size >> 10, t.writable ? ", writable" : "", t.nx ? ", NX" : "",
           code[0], code[1], code[2], code[3], code[4], code[5], code[6], code[7]);
    return 0;
}

/* The Linux layer's view: kernel version, processes, modules. */
static int show_linux(hvi_engine *e)
{
    hvi_linux_info info;
    hvi_status st = hvi_linux_get_info(e, &info);
    if (st != HVI_OK) {
        printf("Linux: %s (%s)\n", hvi_last_error(e), hvi_strstatus(st));
        return 1;
    }
    printf("kernel: Linux %s, _text 0x%" PRIx64 " (KASLR slide 0x%" PRIx64
           "), %u kallsyms symbols\n",
           info.release, info.image_start, info.slide, info.symbols);
    int rc = 0;
    hvi_linux_process *p = NULL;
    size_t np = 0, kthreads = 0;
    if ((st = hvi_linux_list_processes(e, false, &p, &np)) == HVI_OK) {
        for (size_t i = 0; i < np; i++)
            kthreads += p[i].kernel_thread;
        printf("processes: %zu (%zu kernel threads, %zu user)\n", np, kthreads, np - kthreads);
    } else {
        printf("processes: %s (%s)\n", hvi_last_error(e), hvi_strstatus(st));
        rc = 1;
    }
    hvi_linux_free(p);
    hvi_linux_module *m = NULL;
    size_t nm = 0;
    if ((st = hvi_linux_list_modules(e, &m, &nm)) == HVI_OK) {
        printf("modules: %zu%s", nm, nm ? " (" : "\n");
        for (size_t i = 0; i < nm; i++)
            printf("%s%s%s", m[i].name, i + 1 < nm ? " " : ")", i + 1 < nm ? "" : "\n");
    } else {
        printf("modules: %s (%s)\n", hvi_last_error(e), hvi_strstatus(st));
        rc = 1;
    }
    hvi_linux_free(m);
    return rc;
}

static void print_msrs(const hvi_glue *g, uint32_t vcpu)
{
    static const struct {
        uint32_t id;
        const char *name;
    } m[] = {{HVI_MSR_LSTAR, "lstar"},
             {HVI_MSR_STAR, "star"},
             {HVI_MSR_CSTAR, "cstar"},
             {HVI_MSR_FMASK, "fmask"},
             {HVI_MSR_SYSENTER_EIP, "sysenter_eip"},
             {HVI_MSR_KERNEL_GS_BASE, "kernel_gs_base"}};
    printf(" ");
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        uint64_t v = 0;
        hvi_status st = g->get_msr(g->ctx, vcpu, m[i].id, &v);
        if (st == HVI_OK)
            printf(" %s %" PRIx64, m[i].name, v);
        else
            printf(" %s: %s", m[i].name, hvi_strstatus(st));
    }
    printf("\n");
}

/* `g` is the QEMU session's glue, or a dump's (--dump). */
static int attach_and_show(const hvi_glue *gp, const void *support, size_t support_len)
{
    hvi_glue g = *gp;
    void *q = g.ctx;
    hvi_engine *e = NULL;
    hvi_status st = hvi_engine_new(&g, &e);
    hvi_guest_params p = {.size = sizeof(p),
                          .os_hint = support ? HVI_OS_LINUX : HVI_OS_UNKNOWN,
                          .support = support,
                          .support_len = support_len};
    int rc = st == HVI_OK ? 0 : hvi_cli_fail("attach", st);
    bool os_view = false, linux_failed = false;
    if (!rc && (st = hvi_new_guest(e, &p)) != HVI_OK) {
        /* no (usable) OS support data: stay at memory level (paging context from vCPU 0) */
        printf("OS layer: %s (%s); memory-level view only%s\n", hvi_last_error(e),
               hvi_strstatus(st),
               support ? "" : " (--cami FILE enables the Linux view: kernel, processes, modules)");
        hvi_regs c;
        if (g.get_regs(q, 0, HVI_REGS_CR | HVI_REGS_EFER, &c) != HVI_OK ||
            hvi_mem_set_context(e, hvi_paging_mode_from_regs(c.cr0, c.cr4, c.efer),
                                c.cr3 & 0x000ffffffffff000ull) != HVI_OK)
            rc = hvi_cli_fail("paging context", HVI_E_BACKEND);
        linux_failed = support != NULL; /* the Linux view was asked for and is unavailable */
    } else if (!rc) {
        os_view = support != NULL;
    }
    uint32_t n = 0;
    if (!rc)
        g.vcpu_count(q, &n);
    hvi_regs r0 = {0};
    for (uint32_t v = 0; v < n && !rc; v++) {
        hvi_regs r;
        st = g.get_regs(q, v, HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_DTR, &r);
        if (st != HVI_OK) {
            rc = hvi_cli_fail("reading registers", st);
            break;
        }
        print_regs(v, &r);
        if (g.caps & HVI_CAP_MSR_READ)
            print_msrs(&g, v);
        if (v == 0)
            r0 = r;
    }
    if (!rc) {
        printf("paging: %s, kernel CR3 %" PRIx64 "\n", hvi_paging_mode_name(hvi_mem_paging_mode(e)),
               hvi_mem_kernel_cr3(e));
        rc = show_idt(e, &r0);
    }
    if (os_view && !rc)
        rc = show_linux(e);
    hvi_engine_free(e);
    return rc ? rc : linux_failed ? 1 : 0;
}

#ifdef HVI_HAVE_BACKEND_dump
/* The same printout from a memory dump (backends/dump; docs/dump-backend.md). */
static int attach_dump(const char *path, const void *support, size_t support_len)
{
    hvi_dump *d = NULL;
    hvi_glue g;
    if (hvi_dump_open(path, &d) != HVI_OK) {
        fprintf(stderr, "hvi attach: %s: %s\n", path, hvi_dump_last_error(NULL));
        return 1;
    }
    int rc = hvi_dump_glue(d, &g) == HVI_OK ? attach_and_show(&g, support, support_len) : 1;
    hvi_dump_close(d);
    return rc;
}
#endif

static int cmd_attach(int argc, char **argv)
{
    const char *name = "default", *cami = NULL, *dump = NULL;
    bool msr = false;
    for (int i = 1; i < argc; i++) {
        if (hvi_cli_is_help(argv[i])) {
            printf(
                "usage: hvi attach [--name N | --dump FILE] [--cami FILE] [--msr]\n"
                "  attach to a VM started with `hvi vm start`, print registers, paging mode,\n"
                "  IDT and a translated kernel address, detach (the guest runs on).\n"
                "  --dump FILE  the same from a dump (`hvi vm dump`) instead of a running VM\n"
                "  --cami FILE  support data (`hvi cami build`): also the Linux view\n"
                "               (kernel version, process and module counts)\n"
                "  --msr        also read LSTAR, STAR, SYSENTER_EIP... from a QEMU device-state\n"
                "               snapshot (QMP migrate to a file, guest RAM not copied; ~30-100 ms\n"
                "               paused; QEMU 7.2 layout; guests without block devices)\n");
            return 0;
        } else if (!strcmp(argv[i], "--name") && i + 1 < argc) {
            name = argv[++i];
        } else if (!strcmp(argv[i], "--dump") && i + 1 < argc) {
            dump = argv[++i];
        } else if (!strcmp(argv[i], "--msr")) {
            msr = true;
        } else if (!strcmp(argv[i], "--cami") && i + 1 < argc) {
            cami = argv[++i];
        } else {
            fprintf(stderr, "hvi attach: bad argument %s\n", argv[i]);
            return 2;
        }
    }
    void *support = NULL;
    size_t support_len = 0;
    hvi_status rs = cami ? hvi_cli_read_file(cami, &support, &support_len) : HVI_OK;
    if (rs != HVI_OK)
        return hvi_cli_fail(cami, rs);
#ifdef HVI_HAVE_BACKEND_dump
    if (dump) {
        int drc = attach_dump(dump, support, support_len);
        free(support);
        return drc;
    }
#endif
    (void)dump;
    hvi_qemu_vm *vm = NULL;
    hvi_qemu *q = NULL;
    if (hvi_qemu_vm_find(NULL, name, &vm) != HVI_OK) {
        free(support);
        fprintf(stderr, "hvi attach: %s (start one with `hvi vm start`)\n",
                hvi_qemu_vm_last_error());
        return 1;
    }
    hvi_status st = hvi_qemu_open(vm, &q);
    hvi_qemu_vm_release(vm);
    if (st != HVI_OK) {
        free(support);
        return hvi_cli_fail("connecting to QEMU", st);
    }
    if (msr && (st = hvi_qemu_set_msr_read(q, true)) != HVI_OK)
        printf("MSR read: %s (needs QMP)\n", hvi_strstatus(st));
    hvi_glue g;
    int rc = hvi_qemu_glue(q, &g) == HVI_OK ? attach_and_show(&g, support, support_len)
                                            : hvi_cli_fail("attach", HVI_E_BACKEND);
    free(support);
    st = hvi_qemu_close(q);
    if (st != HVI_OK)
        rc = hvi_cli_fail("detach", st);
    else
        printf("detached; the guest keeps running\n");
    return rc;
}

HVI_COMMAND("attach", cmd_attach,
            "attach to the running QEMU test guest and print what hvi sees (--cami: Linux view)")
#endif
