/* The Windows layer finds ntoskrnl on the simulated guest by itself (from LSTAR, or the IDT),
 * reads the build, decides KPTI, selects the CAMI entry and refuses unknown builds; the process
 * and driver walks return exactly what the builder laid out with the entry's offsets. */
#include "harness.h"
#include "win_fixture.h"

#define OPTS 0ull

static void check_info(struct wf *f, uint32_t build, bool kpti)
{
    hvi_windows_info info;
    CHECK_OK(hvi_windows_get_info(f->e, &info));
    CHECK_EQ_U64(info.build, build);
    CHECK(info.kpti == kpti);
    CHECK(info.is64);
    CHECK(info.have_offsets);
    CHECK(info.version[0] != 0);
    CHECK_EQ_U64(info.kernel_base, f->w.kernel_base);
    CHECK_EQ_U64(info.kernel_size, f->w.image_size);
    CHECK_EQ_U64(info.system_process, f->w.eprocess[0]);
    CHECK_EQ_U64(info.ps_active_process_head, f->w.ps_active_head);
    CHECK_EQ_U64(info.ps_loaded_module_list, f->w.ps_loaded_list);
    CHECK_EQ_U64(info.service_table, f->w.ssdt);
    CHECK_EQ_U64(info.service_count, f->w.ssdt_count);
    CHECK_EQ_U64(info.hal_dispatch_table, f->w.hal_dispatch);
}

HVI_TEST(discovery_from_lstar_build_17763_kpti)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 3, .drivers = 2};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    CHECK_OK(wf_attach(&f, OPTS, true));
    check_info(&f, 17763, true);
    hvi_windows_info info;
    CHECK_OK(hvi_windows_get_info(f.e, &info));
    CHECK_STR(info.version, "Windows 10 RS5 x64 kpti");
    uint64_t a = 0;
    CHECK_OK(hvi_windows_find_export(f.e, "PsLoadedModuleList", &a));
    CHECK_EQ_U64(a, f.w.ps_loaded_list);
    CHECK_STATUS(hvi_windows_find_export(f.e, "NoSuchExport", &a), HVI_E_NOT_FOUND);
    wf_free(&f);
}

HVI_TEST(discovery_from_idt_build_7601_no_kpti)
{
    struct wf f;
    hvi_sim_win_config c = {
        .build = 7601, .kpti = false, .processes = 2, .drivers = 1, .flags = HVI_SIM_WIN_NO_LSTAR};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    CHECK_OK(wf_attach(&f, OPTS, true));
    check_info(&f, 7601, false);
    wf_free(&f);
}

HVI_TEST(selection_by_kpti_gives_the_matching_entry)
{
    struct wf on, off;
    hvi_sim_win_config c1 = {.build = 7601, .kpti = true}, c0 = {.build = 7601, .kpti = false};
    REQUIRE(wf_build(&on, &c1) == HVI_OK);
    REQUIRE(wf_build(&off, &c0) == HVI_OK);
    CHECK_OK(wf_attach(&on, OPTS, true));
    CHECK_OK(wf_attach(&off, OPTS, true));
    hvi_windows_info a, b;
    CHECK_OK(hvi_windows_get_info(on.e, &a));
    CHECK_OK(hvi_windows_get_info(off.e, &b));
    CHECK(a.kpti && !b.kpti);
    const hvi_cami_win_entry *e1 = NULL, *e0 = NULL;
    CHECK_OK(hvi_cami_win_select(wf_cami(), 7601, true, true, &e1));
    CHECK_OK(hvi_cami_win_select(wf_cami(), 7601, false, true, &e0));
    REQUIRE(e1 && e0);
    CHECK_STR(a.version, e1->version_string);
    CHECK_STR(b.version, e0->version_string);
    wf_free(&on);
    wf_free(&off);
}

HVI_TEST(unknown_build_is_refused_by_number)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .build_override = 19041};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    CHECK_STATUS(wf_attach(&f, OPTS, true), HVI_E_UNSUPPORTED);
    CHECK(strstr(hvi_last_error(f.e), "19041") != NULL);
    CHECK(strstr(hvi_last_error(f.e), "kpti on") != NULL);
    /* the kernel was found, the queries say so, but there are no offsets */
    hvi_windows_info info;
    CHECK_OK(hvi_windows_get_info(f.e, &info));
    CHECK_EQ_U64(info.build, 19041);
    CHECK(!info.have_offsets);
    hvi_windows_process *p = NULL;
    size_t n = 0;
    CHECK_STATUS(hvi_windows_list_processes(f.e, &p, &n), HVI_E_UNSUPPORTED);
    wf_free(&f);
}

HVI_TEST(no_support_data_is_refused)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    CHECK_STATUS(wf_attach(&f, OPTS, false), HVI_E_UNSUPPORTED);
    CHECK(strstr(hvi_last_error(f.e), "17763") != NULL);
    wf_free(&f);
}

HVI_TEST(unknown_os_hint_finds_windows)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    hvi_glue g;
    REQUIRE(hvi_sim_glue(f.sim, &g) == HVI_OK);
    REQUIRE(hvi_engine_new(&g, &f.e) == HVI_OK);
    hvi_set_log(f.e, NULL, HVI_LOG_ERROR, NULL);
    hvi_sim_attach(f.sim, f.e);
    size_t len = 0;
    const void *buf = wf_support(&len);
    hvi_guest_params p = {
        .size = sizeof(p), .os_hint = HVI_OS_UNKNOWN, .support = buf, .support_len = len};
    CHECK_OK(hvi_new_guest(f.e, &p));
    check_info(&f, 17763, true);
    wf_free(&f);
}

HVI_TEST(process_walk_equals_what_was_built)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 12, .drivers = 3};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, OPTS, true) == HVI_OK);
    hvi_windows_process *p = NULL;
    size_t n = 0;
    CHECK_OK(hvi_windows_list_processes(f.e, &p, &n));
    REQUIRE(p != NULL);
    CHECK_EQ_U64(n, f.w.nproc);
    for (size_t i = 0; i < n && i < f.w.nproc; i++) {
        CHECK_EQ_U64(p[i].eprocess, f.w.eprocess[i]);
        CHECK_EQ_U64(p[i].pid, f.w.pid[i]);
        CHECK_EQ_U64(p[i].ppid, f.w.ppid[i]);
        CHECK_STR(p[i].name, f.w.name[i]);
        CHECK(!p[i].exiting);
        CHECK(p[i].cr3 != 0);
    }
    CHECK_STR(p[0].name, "System");
    CHECK_EQ_U64(p[0].cr3, f.w.cr3);
    hvi_windows_free(p);
    wf_free(&f);
}

HVI_TEST(driver_walk_equals_what_was_built)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 7601, .kpti = true, .processes = 1, .drivers = 10};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, OPTS, true) == HVI_OK);
    hvi_windows_module *m = NULL;
    size_t n = 0;
    CHECK_OK(hvi_windows_list_modules(f.e, &m, &n));
    REQUIRE(m != NULL);
    CHECK_EQ_U64(n, f.w.ndrv);
    for (size_t i = 0; i < n && i < f.w.ndrv; i++) {
        CHECK_EQ_U64(m[i].entry, f.w.ldr[i]);
        CHECK_EQ_U64(m[i].base, f.w.drv_base[i]);
        CHECK_EQ_U64(m[i].size, f.w.drv_size[i]);
        CHECK_STR(m[i].name, f.w.drv_name[i]);
        CHECK(strstr(m[i].path, f.w.drv_name[i]) != NULL);
        CHECK(!m[i].truncated);
    }
    CHECK_STR(m[0].name, "ntoskrnl.exe");
    CHECK_STR(m[0].path, "\\SystemRoot\\system32\\ntoskrnl.exe");
    hvi_windows_free(m);
    wf_free(&f);
}

HVI_TEST_MAIN()
