/*
 * hvi sim-demo — build a small simulated guest (backends/sim), put an engine on it and show
 * the memory layer at work: translations (4 KiB and large pages), virtual reads across
 * pages, ASCII and UTF-16 strings, and that no backend mapping is left behind.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "hvi/hvi.h"
#include "hvi/mem.h"

#ifdef HVI_HAVE_BACKEND_sim
#include "hvi_sim.h"

#define TEXT_VA 0xffffffff81000000ull
#define USER_VA 0x0000000000400000ull

struct demo {
    hvi_sim *sim;
    hvi_engine *e;
    hvi_paging_mode mode;
    uint64_t cr3;
    hvi_gva text, direct, user;
    hvi_gpa text_gpa;
};

static const char banner[] = "Linux version 6.1.0-hvi-sim (demo@hvi) #1 SMP";

static int demo_usage(FILE *to)
{
    fprintf(to, "usage: hvi sim-demo [--mode 32|pae|4lvl|5lvl]\n"
                "Builds a simulated guest with a few mappings (one a large page), attaches an\n"
                "engine and prints what the memory layer translates and reads.\n");
    return to == stdout ? 0 : 2;
}

static bool parse_mode(const char *s, hvi_paging_mode *m)
{
    static const struct { const char *n; hvi_paging_mode m; } tab[] = {
        {"32", HVI_PAGING_32}, {"pae", HVI_PAGING_PAE}, {"4lvl", HVI_PAGING_4LVL},
        {"5lvl", HVI_PAGING_5LVL}};
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (!strcmp(s, tab[i].n)) {
            *m = tab[i].m;
            return true;
        }
    return false;
}

/* Lay out the guest: two kernel text pages (banner straddling them), a large page of
 * "direct map", and a user page holding a UTF-16 string. */
static hvi_status demo_build(struct demo *d)
{
    bool narrow = d->mode <= HVI_PAGING_PAE;
    uint64_t big = d->mode == HVI_PAGING_32 ? HVI_SIM_4M : HVI_SIM_2M;
    d->text = narrow ? 0xc1000000ull : TEXT_VA;
    d->direct = narrow ? 0xc0000000ull : 0xffff888000000000ull;
    d->user = USER_VA;
    hvi_gpa user_gpa = 0;
    hvi_status st = hvi_sim_pt_new(d->sim, d->mode, &d->cr3);
    if (st == HVI_OK)
        st = hvi_sim_alloc_frames(d->sim, 2, 4096, &d->text_gpa);
    if (st == HVI_OK)
        st = hvi_sim_alloc_frame(d->sim, &user_gpa);
    for (int i = 0; st == HVI_OK && i < 2; i++)
        st = hvi_sim_map(d->sim, d->cr3, d->mode, d->text + 4096u * (unsigned)i,
                         d->text_gpa + 4096u * (unsigned)i, HVI_SIM_4K, HVI_SIM_PTE_A);
    if (st == HVI_OK)
        st = hvi_sim_map(d->sim, d->cr3, d->mode, d->direct, 0, big,
                         HVI_SIM_PTE_W | HVI_SIM_PTE_NX | HVI_SIM_PTE_G);
    if (st == HVI_OK)
        st = hvi_sim_map(d->sim, d->cr3, d->mode, d->user, user_gpa, HVI_SIM_4K,
                         HVI_SIM_PTE_U | HVI_SIM_PTE_W | HVI_SIM_PTE_NX);
    if (st == HVI_OK) /* the banner starts 20 bytes before the end of the first text page */
        st = hvi_sim_phys_write(d->sim, d->text_gpa + 4096 - 20, banner, sizeof(banner));
    const uint16_t w[] = {'/', 'b', 'i', 'n', '/', 0x00e9, 0xd83d, 0xde00, 0};
    if (st == HVI_OK)
        st = hvi_sim_phys_write(d->sim, user_gpa + 0x80, w, sizeof(w));
    if (st == HVI_OK)
        st = hvi_sim_set_paging(d->sim, 0, d->mode, d->cr3);
    return st;
}

static void show_translation(hvi_engine *e, const char *what, hvi_gva gva)
{
    hvi_translation t;
    hvi_status st = hvi_gva_translate(e, 0, gva, &t);
    if (st != HVI_OK) {
        printf("translate %-7s 0x%016llx -> %s (level %u)\n", what, (unsigned long long)gva,
               hvi_strstatus(st), t.fault_level);
        return;
    }
    printf("translate %-7s 0x%016llx -> gpa 0x%llx page %llu KiB levels %u %s %s %s\n", what,
           (unsigned long long)gva, (unsigned long long)t.gpa,
           (unsigned long long)(t.page_size >> 10), t.levels, t.writable ? "RW" : "RO",
           t.user ? "user" : "kernel", t.nx ? "NX" : "X");
}

static int demo_run(struct demo *d)
{
    hvi_glue g;
    hvi_status st = hvi_sim_glue(d->sim, &g);
    if (st == HVI_OK)
        st = hvi_engine_new(&g, &d->e);
    if (st != HVI_OK)
        return hvi_cli_fail("engine", st);
    hvi_sim_attach(d->sim, d->e);
    const hvi_regs *r = hvi_sim_vcpu_regs(d->sim, 0);
    hvi_paging_mode mode = hvi_paging_mode_from_regs(r->cr0, r->cr4, r->efer);
    if ((st = hvi_mem_set_context(d->e, mode, r->cr3)) != HVI_OK)
        return hvi_cli_fail("context", st);
    printf("guest: %llu MiB RAM, %u vCPU, paging %s, CR3 0x%llx\n",
           (unsigned long long)(hvi_sim_ram_size(d->sim) >> 20), hvi_sim_vcpu_count(d->sim),
           hvi_paging_mode_name(hvi_mem_paging_mode(d->e)), (unsigned long long)r->cr3);
    show_translation(d->e, "text", d->text + 0x10);
    show_translation(d->e, "direct", d->direct + 0x12345);
    show_translation(d->e, "user", d->user + 0x80);
    show_translation(d->e, "absent", d->user + 0x100000);
    uint8_t buf[8192];
    st = hvi_gva_read(d->e, 0, d->text, buf, sizeof(buf));
    printf("read %zu bytes at 0x%llx across 2 pages: %s\n", sizeof(buf),
           (unsigned long long)d->text, hvi_strstatus(st));
    char s[128];
    size_t n = 0;
    st = hvi_gva_read_str(d->e, 0, d->text + 4096 - 20, 128, s, sizeof(s), &n);
    printf("string at 0x%llx (%zu bytes, %s): \"%s\"\n",
           (unsigned long long)(d->text + 4096 - 20), n, hvi_strstatus(st), s);
    st = hvi_gva_read_wstr(d->e, 0, d->user + 0x80, 64, s, sizeof(s), &n);
    printf("utf16 string at 0x%llx (%zu bytes, %s): \"%s\"\n",
           (unsigned long long)(d->user + 0x80), n, hvi_strstatus(st), s);
    hvi_engine_free(d->e);
    d->e = NULL;
    printf("backend mappings outstanding after engine free: %lld\n",
           (long long)hvi_sim_outstanding_maps(d->sim));
    return hvi_sim_outstanding_maps(d->sim) ? 1 : 0;
}

static int cmd_sim_demo(int argc, char **argv)
{
    struct demo d = {.mode = HVI_PAGING_4LVL};
    for (int i = 1; i < argc; i++) {
        if (hvi_cli_is_help(argv[i]))
            return demo_usage(stdout);
        if (!strcmp(argv[i], "--mode") && i + 1 < argc && parse_mode(argv[i + 1], &d.mode)) {
            i++;
            continue;
        }
        fprintf(stderr, "hvi sim-demo: bad argument '%s'\n", argv[i]);
        return demo_usage(stderr);
    }
    hvi_sim_config cfg = {.ram_size = 16u << 20, .vcpus = 1};
    hvi_status st = hvi_sim_new(&cfg, &d.sim);
    if (st != HVI_OK)
        return hvi_cli_fail("simulator", st);
    st = demo_build(&d);
    int rc = st == HVI_OK ? demo_run(&d) : hvi_cli_fail("guest layout", st);
    hvi_sim_free(d.sim);
    return rc;
}
#else
static int cmd_sim_demo(int argc, char **argv)
{
    (void)argc, (void)argv;
    fprintf(stderr, "hvi sim-demo: built without the simulator backend\n");
    return 1;
}
#endif

HVI_COMMAND("sim-demo", cmd_sim_demo, "build a simulated guest and show translations and reads")
