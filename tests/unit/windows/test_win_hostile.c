/* Hostile input for the Windows layer: a malformed PE image (parser run directly and through
 * discovery), corrupted process and driver lists (cycles, non-canonical and absent pointers,
 * broken back links), hostile UNICODE_STRINGs and names, implausible globals. Each gives a
 * status and a message, never a crash or an endless walk. */
#include "guest/windows/win_pe.h"
#include "harness.h"
#include "win_fixture.h"

/* ---- the PE parser on a buffer ---- */

struct img {
    uint8_t b[0x3000];
};

static hvi_status img_read(void *ctx, uint32_t rva, void *buf, size_t len)
{
    struct img *m = ctx;
    if (rva > sizeof(m->b) || len > sizeof(m->b) - rva)
        return HVI_E_RANGE;
    memcpy(buf, m->b + rva, len);
    return HVI_OK;
}

static void p16(uint8_t *b, uint32_t o, uint16_t v)
{
    memcpy(b + o, &v, 2);
}
static void p32(uint8_t *b, uint32_t o, uint32_t v)
{
    memcpy(b + o, &v, 4);
}

#define NT 0x80u
#define OH (NT + 24u)
#define SEC (OH + 0xf0u)
#define EXP 0x2000u

/* A 3-page PE32+ image: .text at 0x1000, .rdata at 0x2000 with exports "Alpha", "Beta" (a
 * forwarder) and "Gamma". */
static void mk_pe(struct img *m)
{
    uint8_t *b = m->b;
    memset(b, 0, sizeof(m->b));
    b[0] = 'M', b[1] = 'Z';
    p32(b, 0x3c, NT);
    p32(b, NT, 0x4550);
    p16(b, NT + 4, 0x8664);
    p16(b, NT + 6, 2);
    p16(b, NT + 20, 0xf0);
    p16(b, OH, 0x20b);
    p32(b, OH + 56, 0x3000);
    p32(b, OH + 108, 16);
    p32(b, OH + 112, EXP);
    p32(b, OH + 116, 0x200);
    memcpy(b + SEC, ".text", 5);
    p32(b, SEC + 8, 0x1000), p32(b, SEC + 12, 0x1000), p32(b, SEC + 36, 0x60000020);
    memcpy(b + SEC + 40, ".rdata", 6);
    p32(b, SEC + 48, 0x1000), p32(b, SEC + 52, 0x2000), p32(b, SEC + 76, 0x40000040);
    uint8_t *e = b + EXP;
    p32(e, 12, EXP + 0x100);      /* Name */
    p32(e, 20, 3), p32(e, 24, 3); /* functions, names */
    p32(e, 28, EXP + 0x40), p32(e, 32, EXP + 0x50), p32(e, 36, EXP + 0x60);
    p32(e, 0x40, 0x1010), p32(e, 0x44, EXP + 0x180), p32(e, 0x48, 0x1030);
    p32(e, 0x50, EXP + 0x120), p32(e, 0x54, EXP + 0x130), p32(e, 0x58, EXP + 0x140);
    p16(e, 0x60, 0), p16(e, 0x62, 1), p16(e, 0x64, 2);
    memcpy(e + 0x100, "test.sys", 9);
    memcpy(e + 0x120, "Alpha", 6), memcpy(e + 0x130, "Beta", 5), memcpy(e + 0x140, "Gamma", 6);
    memcpy(e + 0x180, "other.Beta", 11);
}

static hvi_status parse(struct img *m, struct win_pe *pe, char *msg)
{
    return win_pe_parse(m->b, img_read, m, pe, msg, 160);
}

HVI_TEST(pe_valid_image_and_exports)
{
    struct img m;
    struct win_pe pe;
    char msg[160] = "";
    mk_pe(&m);
    REQUIRE(parse(&m, &pe, msg) == HVI_OK);
    CHECK(pe.is64);
    CHECK_EQ_U64(pe.nsec, 2);
    CHECK_STR(pe.sec[0].name, ".text");
    CHECK_STR(pe.exp_name, "test.sys");
    uint32_t rva = 0;
    CHECK_OK(win_pe_export(&pe, img_read, &m, "Alpha", &rva));
    CHECK_EQ_U64(rva, 0x1010);
    CHECK_OK(win_pe_export(&pe, img_read, &m, "Gamma", &rva));
    CHECK_EQ_U64(rva, 0x1030);
    CHECK_STATUS(win_pe_export(&pe, img_read, &m, "Beta", &rva), HVI_E_NOT_FOUND); /* forwarder */
    CHECK_STATUS(win_pe_export(&pe, img_read, &m, "Delta", &rva), HVI_E_NOT_FOUND);
    CHECK(win_pe_section_at(&pe, 0x1500) == &pe.sec[0]);
    CHECK(win_pe_section_at(&pe, 0x3500) == NULL);
}

HVI_TEST(pe_malformed_headers_are_refused)
{
    struct {
        const char *what;
        uint32_t off, value, width;
    } cases[] = {
        {"no MZ", 0, 0x5A4E, 2},
        {"e_lfanew past the page", 0x3c, 0xffc, 4},
        {"e_lfanew huge", 0x3c, 0x80000000u, 4},
        {"no PE signature", NT, 0x4551, 4},
        {"unknown machine", NT + 4, 0x1234, 2},
        {"PE32 magic on AMD64", OH, 0x10b, 2},
        {"no sections", NT + 6, 0, 2},
        {"too many sections", NT + 6, 200, 2},
        {"optional header too small", NT + 20, 0x10, 2},
        {"optional header past the page", NT + 20, 0xfff0, 2},
        {"SizeOfImage huge", OH + 56, 0xffffffffu, 4},
        {"SizeOfImage zero", OH + 56, 0, 4},
        {"section outside the image", SEC + 12, 0x7fff0000u, 4},
        {"export directory outside", OH + 112, 0xfffff000u, 4},
        {"export directory size wraps", OH + 116, 0xffffffffu, 4},
        {"export name count huge", EXP + 24, 0x7fffffffu, 4},
        {"export names table outside", EXP + 32, 0x2fff, 4},
        {"export functions table wraps", EXP + 28, 0xfffffffcu, 4},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct img m;
        struct win_pe pe;
        char msg[160] = "";
        mk_pe(&m);
        if (cases[i].width == 2)
            p16(m.b, cases[i].off, (uint16_t)cases[i].value);
        else
            p32(m.b, cases[i].off, cases[i].value);
        hvi_status st = parse(&m, &pe, msg);
        if (st != HVI_E_FORMAT)
            fprintf(stderr, "  case '%s': %s\n", cases[i].what, hvi_strstatus(st));
        CHECK_STATUS(st, HVI_E_FORMAT);
        CHECK(msg[0] != 0);
    }
}

HVI_TEST(pe_hostile_export_entries)
{
    struct img m;
    struct win_pe pe;
    char msg[160];
    uint32_t rva = 0;
    mk_pe(&m);
    p32(m.b, EXP + 0x50, 0x7ffffff0u); /* name pointer outside the image */
    REQUIRE(parse(&m, &pe, msg) == HVI_OK);
    CHECK(win_pe_export(&pe, img_read, &m, "Beta", &rva) != HVI_OK);
    mk_pe(&m);
    p16(m.b, EXP + 0x64, 9); /* ordinal past the function table */
    REQUIRE(parse(&m, &pe, msg) == HVI_OK);
    CHECK_STATUS(win_pe_export(&pe, img_read, &m, "Gamma", &rva), HVI_E_FORMAT);
    mk_pe(&m);
    p32(m.b, EXP + 0x48, 0x90000000u); /* function RVA outside */
    REQUIRE(parse(&m, &pe, msg) == HVI_OK);
    CHECK_STATUS(win_pe_export(&pe, img_read, &m, "Gamma", &rva), HVI_E_FORMAT);
    mk_pe(&m);
    memset(m.b + EXP + 0x100, 'A', 0x200); /* an unterminated image name is cut, not overrun */
    REQUIRE(parse(&m, &pe, msg) == HVI_OK);
    CHECK(strlen(pe.exp_name) < sizeof(pe.exp_name));
}

/* ---- hostile guest structures through the engine ---- */

static hvi_status attach(struct wf *f, uint32_t procs, uint32_t drivers)
{
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = procs, .drivers = drivers};
    hvi_status st = wf_build(f, &c);
    return st == HVI_OK ? wf_attach(f, 0, true) : st;
}

static void poke64(struct wf *f, uint64_t va, uint64_t v)
{
    CHECK_OK(hvi_sim_win_poke(f->sim, &f->w, va, &v, 8));
}

static hvi_status list_procs(struct wf *f, size_t *n)
{
    hvi_windows_process *p = NULL;
    hvi_status st = hvi_windows_list_processes(f->e, &p, n);
    hvi_windows_free(p);
    return st;
}

HVI_TEST(process_list_cycle_is_caught_by_back_links)
{
    struct wf f;
    REQUIRE(attach(&f, 5, 0) == HVI_OK);
    uint64_t n1 = f.w.eprocess[1] + f.w.off_list, n3 = f.w.eprocess[3] + f.w.off_list;
    poke64(&f, n3, n1);     /* node3 -> node1 ... */
    poke64(&f, n1 + 8, n3); /* ... node1 can point back to one predecessor only */
    size_t n = 0;
    CHECK_STATUS(list_procs(&f, &n), HVI_E_FORMAT);
    CHECK(strstr(hvi_last_error(f.e), "bad link") != NULL);
    wf_free(&f);
}

/* A consistent list longer than the bound: 4200 LIST_ENTRYs 64 bytes apart in a mapped pool
 * area (the EPROCESS fields read around each node overlap, all mapped). */
HVI_TEST(process_list_longer_than_the_bound_stops)
{
    struct wf f;
    REQUIRE(attach(&f, 1, 0) == HVI_OK);
    const uint64_t area = 0xffffa08100000000ull, pages = 80;
    hvi_gpa gpa = 0;
    REQUIRE(hvi_sim_alloc_frames(f.sim, pages, 4096, &gpa) == HVI_OK);
    for (uint64_t i = 0; i < pages; i++)
        REQUIRE(hvi_sim_map(f.sim, f.w.cr3, HVI_PAGING_4LVL, area + i * 4096, gpa + i * 4096, 4096,
                            HVI_SIM_PTE_W | HVI_SIM_PTE_NX) == HVI_OK);
    const uint32_t count = 4200;
    uint64_t first = area + 0x1000, head = f.w.ps_active_head;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t node = first + 64ull * i;
        uint64_t le[2] = {i + 1 < count ? node + 64 : head, i ? node - 64 : head};
        REQUIRE(hvi_sim_win_poke(f.sim, &f.w, node, le, 16) == HVI_OK);
    }
    poke64(&f, head, first);
    poke64(&f, head + 8, first + 64ull * (count - 1));
    size_t n = 0;
    CHECK_STATUS(list_procs(&f, &n), HVI_E_LIMIT);
    CHECK(strstr(hvi_last_error(f.e), "longer than") != NULL);
    wf_free(&f);
}

HVI_TEST(process_list_bad_links)
{
    struct wf f;
    REQUIRE(attach(&f, 4, 0) == HVI_OK);
    uint64_t n2 = f.w.eprocess[2] + f.w.off_list, next = f.w.eprocess[3] + f.w.off_list;
    size_t n = 0;
    poke64(&f, n2, 0x4141414141414141ull); /* not a kernel pointer */
    CHECK_STATUS(list_procs(&f, &n), HVI_E_FORMAT);
    poke64(&f, n2, 0xffffa0800ff00000ull); /* kernel, but not mapped */
    CHECK_STATUS(list_procs(&f, &n), HVI_E_NOT_PRESENT);
    poke64(&f, n2, next + 1); /* misaligned */
    CHECK_STATUS(list_procs(&f, &n), HVI_E_FORMAT);
    poke64(&f, n2, next);
    poke64(&f, next + 8, f.w.eprocess[1]); /* back link does not point back */
    CHECK_STATUS(list_procs(&f, &n), HVI_E_FORMAT);
    CHECK(hvi_last_error(f.e)[0] != 0);
    poke64(&f, next + 8, n2); /* repaired: the walk works again */
    CHECK_OK(list_procs(&f, &n));
    CHECK_EQ_U64(n, 5);
    wf_free(&f);
}

HVI_TEST(process_name_is_sanitized_and_bounded)
{
    struct wf f;
    REQUIRE(attach(&f, 2, 0) == HVI_OK);
    uint8_t name[16];
    memset(name, 0x07, sizeof(name)); /* control bytes, no terminator */
    CHECK_OK(hvi_sim_win_poke(f.sim, &f.w, f.w.eprocess[1] + f.w.off_name, name, sizeof(name)));
    hvi_windows_process *p = NULL;
    size_t n = 0;
    REQUIRE(hvi_windows_list_processes(f.e, &p, &n) == HVI_OK);
    REQUIRE(n == 3);
    CHECK_STR(p[1].name, "???????????????");
    hvi_windows_free(p);
    wf_free(&f);
}

static hvi_windows_module *mods(struct wf *f, size_t *n, hvi_status *st)
{
    hvi_windows_module *m = NULL;
    *st = hvi_windows_list_modules(f->e, &m, n);
    return m;
}

HVI_TEST(module_names_hostile_unicode_strings)
{
    struct wf f;
    REQUIRE(attach(&f, 0, 4) == HVI_OK);
    uint64_t e2 = f.w.ldr[2], e3 = f.w.ldr[3], e4 = f.w.ldr[4];
    uint16_t huge = 0xfffe, odd = 7;
    /* huge Length over a real buffer: cut at 255 characters / the terminator, flagged */
    CHECK_OK(hvi_sim_win_poke(f.sim, &f.w, e2 + f.w.off_ldr_basename, &huge, 2));
    /* odd Length: refused, name empty */
    CHECK_OK(hvi_sim_win_poke(f.sim, &f.w, e3 + f.w.off_ldr_basename, &odd, 2));
    /* buffer pointing nowhere */
    poke64(&f, e4 + f.w.off_ldr_basename + 8, 0xffffa0800fe00000ull);
    size_t n = 0;
    hvi_status st;
    hvi_windows_module *m = mods(&f, &n, &st);
    CHECK_OK(st);
    REQUIRE(m && n == f.w.ndrv);
    CHECK_STR(m[2].name, f.w.drv_name[2]);
    CHECK(m[2].truncated);
    CHECK_STR(m[3].name, "");
    CHECK_STR(m[4].name, "");
    CHECK(strstr(m[4].path, f.w.drv_name[4]) != NULL); /* the other name still reads */
    hvi_windows_free(m);
    wf_free(&f);
}

HVI_TEST(module_list_cycle_is_caught)
{
    struct wf f;
    REQUIRE(attach(&f, 0, 3) == HVI_OK);
    poke64(&f, f.w.ldr[3], f.w.ldr[1]);
    poke64(&f, f.w.ldr[1] + 8, f.w.ldr[3]);
    size_t n = 0;
    hvi_status st;
    hvi_windows_free(mods(&f, &n, &st));
    CHECK_STATUS(st, HVI_E_FORMAT);
    wf_free(&f);
}

static hvi_status attach_corrupted(struct wf *f, uint64_t va, const void *data, size_t len)
{
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 2};
    hvi_status st = wf_build(f, &c);
    if (st == HVI_OK)
        st = hvi_sim_win_poke(f->sim, &f->w, va, data, len);
    return st == HVI_OK ? wf_attach(f, HVI_OPT_KM_SYSCALL_TABLE, true) : st;
}

HVI_TEST(malformed_kernel_image_is_not_taken)
{
    struct wf f;
    uint32_t lfanew = 0xffc;
    hvi_sim_win_config c = {.build = 17763, .kpti = true};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    uint64_t base = f.w.kernel_base;
    wf_free(&f);
    CHECK_STATUS(attach_corrupted(&f, base + 0x3c, &lfanew, 4), HVI_E_NOT_FOUND);
    CHECK(strstr(hvi_last_error(f.e), "rejected") != NULL);
    CHECK(strstr(hvi_last_error(f.e), "e_lfanew") != NULL);
    wf_free(&f);
}

HVI_TEST(implausible_globals_are_refused)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    uint64_t sysvar = 0, ep0 = f.w.eprocess[0], off_list = f.w.off_list;
    uint64_t sdt = f.w.sdt;
    wf_free(&f);
    /* PsInitialSystemProcess is the variable right after NtBuildNumber in the builder's .data */
    sysvar = 0xfffff80002a00000ull + 0x9000 + 0x8;
    uint64_t junk = 0x1000;
    CHECK_STATUS(attach_corrupted(&f, sysvar, &junk, 8), HVI_E_FORMAT);
    CHECK(strstr(hvi_last_error(f.e), "PsInitialSystemProcess") != NULL);
    wf_free(&f);
    /* the System process links only to itself: no head in the image */
    uint64_t self[2] = {ep0 + off_list, ep0 + off_list};
    CHECK_STATUS(attach_corrupted(&f, ep0 + off_list, self, 16), HVI_E_FORMAT);
    CHECK(strstr(hvi_last_error(f.e), "PsActiveProcessHead") != NULL);
    wf_free(&f);
    /* a service table count of 1e9: the SSDT is not taken, the rest still works */
    uint32_t count = 1000000000u;
    CHECK_OK(attach_corrupted(&f, sdt + 0x10, &count, 4));
    hvi_windows_info info;
    CHECK_OK(hvi_windows_get_info(f.e, &info));
    CHECK_EQ_U64(info.service_table, 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    wf_free(&f);
}

HVI_TEST(exiting_processes_are_flagged_by_the_cami_masks)
{
    struct wf f;
    REQUIRE(attach(&f, 3, 0) == HVI_OK);
    uint32_t exiting = 0, del = 0;
    const hvi_cami_win_entry *ent = NULL;
    REQUIRE(hvi_cami_win_select(wf_cami(), 17763, true, true, &ent) == HVI_OK);
    CHECK_OK(hvi_cami_win_km_field(ent, HVI_WIN_KM_EPROCESSFLAGS, HVI_WIN_KM_EPROCESSFLAGS_EXITING,
                                   &exiting));
    CHECK_OK(hvi_cami_win_km_field(ent, HVI_WIN_KM_EPROCESSFLAGS, HVI_WIN_KM_EPROCESSFLAGS_DELETE,
                                   &del));
    REQUIRE(exiting && del);
    uint32_t v1 = 0x40000 | exiting, v2 = 0x40000 | del;
    CHECK_OK(hvi_sim_win_poke(f.sim, &f.w, f.w.eprocess[1] + f.w.off_flags, &v1, 4));
    CHECK_OK(hvi_sim_win_poke(f.sim, &f.w, f.w.eprocess[3] + f.w.off_flags, &v2, 4));
    hvi_windows_process *p = NULL;
    size_t n = 0;
    REQUIRE(hvi_windows_list_processes(f.e, &p, &n) == HVI_OK);
    REQUIRE(n == 4);
    CHECK(!p[0].exiting && p[1].exiting && !p[2].exiting && p[3].exiting);
    CHECK_EQ_U64(p[1].flags, v1);
    hvi_windows_free(p);
    wf_free(&f);
}

/* Paged-out kernel code: pattern search reads absent pages as zeros, a function in a present page
 * is still found, the one in the absent page is not, and code protection skips the hole. */
HVI_TEST(absent_kernel_pages)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(f.w.psp_insert_process >> 12 != f.w.mm_clean_process >> 12);
    REQUIRE(hvi_sim_unmap(f.sim, f.w.cr3, HVI_PAGING_4LVL, f.w.mm_clean_process & ~0xfffull) ==
            HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_KM_TEXT | HVI_OPT_EVENT_PROCESS, true) == HVI_OK);
    hvi_windows_function *fn = NULL;
    size_t n = 0;
    REQUIRE(hvi_windows_list_functions(f.e, &fn, &n) == HVI_OK);
    REQUIRE(n == 4); /* PspInsertProcess, MmCleanProcessAddressSpace, Mi... */
    CHECK_EQ_U64(fn[0].address, f.w.psp_insert_process);
    CHECK(fn[0].detoured);
    CHECK_EQ_U64(fn[1].address, 0);
    CHECK(!fn[1].detoured);
    hvi_windows_free(fn);
    CHECK(hvi_sim_restricted_frames(f.sim) > 0);
    hvi_event_reply rep;
    CHECK_OK(wf_write(&f, f.w.psp_insert_process, 0xcc, 4, f.w.text, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    wf_free(&f);
}

HVI_TEST_MAIN()
