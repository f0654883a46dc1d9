/* Functions located by the CAMI code patterns (wildcards, decoys), detours on them giving
 * process events with the CAMI argument lists, and the protections: SSDT, HalDispatchTable, IDT
 * and ntoskrnl code writes denied with alerts naming the object and the writer. */
#include "harness.h"
#include "hvi/hook.h"
#include "win_fixture.h"

#define DRV_RIP_INDEX 3 /* a driver after ntoskrnl.exe and hal.dll */

static const hvi_windows_function *fn_named(const hvi_windows_function *f, size_t n,
                                            const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(f[i].name, name))
            return &f[i];
    return NULL;
}

static void check_located(struct wf *f)
{
    hvi_windows_function *fn = NULL;
    size_t n = 0;
    REQUIRE(hvi_windows_list_functions(f->e, &fn, &n) == HVI_OK);
    const hvi_windows_function *a = fn_named(fn, n, "PspInsertProcess");
    const hvi_windows_function *b = fn_named(fn, n, "MmCleanProcessAddressSpace");
    CHECK(a && b);
    if (a && b) {
        /* the real copy, not the near-miss decoy 0x100 bytes before it */
        CHECK_EQ_U64(a->address, f->w.psp_insert_process);
        CHECK_EQ_U64(b->address, f->w.mm_clean_process);
        CHECK_EQ_U64(a->pattern, 0);
    }
    const hvi_windows_function *l = fn_named(fn, n, "MiProcessLoaderEntry");
    const hvi_windows_function *u = fn_named(fn, n, "MiUnloadSystemImage");
    CHECK(l && u);
    if (l && u) {
        CHECK_EQ_U64(l->address, f->w.mi_process_loader_entry);
        CHECK_EQ_U64(u->address, f->w.mi_unload_system_image);
    }
    hvi_windows_free(fn);
}

HVI_TEST(patterns_locate_functions_in_every_corpus_x64_build)
{
    static const struct {
        uint32_t build;
        bool kpti;
    } b[] = {{7600, false}, {7601, false}, {7601, true}, {7602, true}, {17763, true}};
    for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
        struct wf f;
        hvi_sim_win_config c = {.build = b[i].build, .kpti = b[i].kpti};
        REQUIRE(wf_build(&f, &c) == HVI_OK);
        REQUIRE(f.w.psp_insert_process != 0 && f.w.mm_clean_process != 0);
        REQUIRE(f.w.mi_process_loader_entry != 0 && f.w.mi_unload_system_image != 0);
        REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
        check_located(&f);
        wf_free(&f);
    }
}

/* Position of the first wildcard / literal item of the entry's first PspInsertProcess pattern. */
static int item_index(const hvi_sim_win_config *c, bool wildcard)
{
    const hvi_cami_win_entry *ent = NULL;
    if (hvi_cami_win_select(wf_cami(), c->build, c->kpti, true, &ent) != HVI_OK)
        return -1;
    const hvi_cami_win_function *fn =
        hvi_cami_win_function_find(ent, hvi_cami_name_hash("PspInsertProcess"));
    if (!fn || !fn->pattern_count)
        return -1;
    for (uint32_t i = 0; i < fn->patterns[0].len; i++)
        if ((fn->patterns[0].items[i] == HVI_CAMI_WILDCARD) == wildcard)
            return (int)i;
    return -1;
}

HVI_TEST(wildcard_bytes_may_differ_literal_bytes_may_not)
{
    /* 7601's first PspInsertProcess pattern has wildcards (17763's first has none) */
    hvi_sim_win_config c = {.build = 7601, .kpti = false};
    int wi = item_index(&c, true), li = item_index(&c, false);
    REQUIRE(wi >= 0 && li >= 0);
    struct wf f;
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    uint8_t x = 0xA5;
    REQUIRE(hvi_sim_win_poke(f.sim, &f.w, f.w.psp_insert_process + (uint64_t)wi, &x, 1) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    check_located(&f);
    wf_free(&f);

    REQUIRE(wf_build(&f, &c) == HVI_OK);
    uint64_t fn = f.w.psp_insert_process;
    uint8_t old = 0;
    hvi_gpa gpa = 0;
    REQUIRE(hvi_sim_translate(f.sim, f.w.cr3, HVI_PAGING_4LVL, fn + (uint64_t)li, &gpa) == HVI_OK);
    REQUIRE(hvi_sim_phys_read(f.sim, gpa, &old, 1) == HVI_OK);
    x = (uint8_t)~old;
    REQUIRE(hvi_sim_win_poke(f.sim, &f.w, fn + (uint64_t)li, &x, 1) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    hvi_windows_function *fns = NULL;
    size_t n = 0;
    REQUIRE(hvi_windows_list_functions(f.e, &fns, &n) == HVI_OK);
    const hvi_windows_function *a = fn_named(fns, n, "PspInsertProcess");
    /* another pattern of the entry may still match elsewhere, but never the broken copy */
    CHECK(a && a->address != fn);
    hvi_windows_free(fns);
    wf_free(&f);
}

HVI_TEST(process_create_and_exit_events_from_detours)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 4};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_EVENT_PROCESS, true) == HVI_OK);
    CHECK(hvi_sim_breakpoint_at(f.sim, f.w.psp_insert_process));
    CHECK(hvi_sim_breakpoint_at(f.sim, f.w.mm_clean_process));
    uint64_t ep = 0;
    REQUIRE(hvi_sim_win_new_eprocess(f.sim, &f.w, "evil.exe", 0x999, f.w.pid[3], &ep) == HVI_OK);
    /* PspInsertProcess(Eprocess, Parent, DesiredAccess, CreateFlags, DebugHandle...) */
    uint64_t args[6] = {ep, f.w.eprocess[3], 0x1fffff, 0, 0x1234, 0};
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.psp_insert_process, args, 6, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    REQUIRE(wf_count(&f, HVI_EVENT_PROCESS_CREATE) == 1);
    const hvi_alert *a = wf_last(&f, HVI_EVENT_PROCESS_CREATE);
    CHECK_EQ_U64(a->pid, 0x999);
    CHECK_STR(a->comm, "evil.exe");
    CHECK_EQ_U64(a->rip, f.w.psp_insert_process);
    char want[64];
    snprintf(want, sizeof(want), "ppid=%u parent=%s", f.w.pid[3], f.w.name[3]);
    CHECK(strstr(a->detail, want) != NULL);

    uint64_t one[1] = {ep};
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.mm_clean_process, one, 1, &rep));
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.mm_clean_process, one, 1, &rep));
    CHECK_EQ_U64(wf_count(&f, HVI_EVENT_PROCESS_EXIT), 1); /* the second call is the same exit */
    a = wf_last(&f, HVI_EVENT_PROCESS_EXIT);
    CHECK(a && a->pid == 0x999);

    /* a hostile first argument gives no event and no failure */
    uint64_t bad[2] = {0x4141414141414141ull, 0};
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.psp_insert_process, bad, 2, &rep));
    CHECK_EQ_U64(wf_count(&f, HVI_EVENT_PROCESS_CREATE), 1);

    /* switching the option off removes the detours */
    CHECK_OK(hvi_options_set(f.e, 0));
    CHECK(!hvi_sim_breakpoint_at(f.sim, f.w.psp_insert_process));
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.psp_insert_process, args, 6, &rep));
    CHECK_EQ_U64(wf_count(&f, HVI_EVENT_PROCESS_CREATE), 1);
    wf_free(&f);
}

HVI_TEST(missing_patterns_leave_functions_unlocated)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .flags = HVI_SIM_WIN_NO_PATTERNS};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    CHECK_OK(wf_attach(&f, HVI_OPT_EVENT_PROCESS, true));
    hvi_windows_function *fn = NULL;
    size_t n = 0;
    REQUIRE(hvi_windows_list_functions(f.e, &fn, &n) == HVI_OK);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_U64(fn[i].address, 0);
        CHECK(!fn[i].detoured);
    }
    CHECK_EQ_U64(hvi_sim_breakpoint_count(f.sim), 0);
    hvi_windows_free(fn);
    wf_free(&f);
}

static void check_denied(struct wf *f, uint64_t va, uint32_t len, const char *object)
{
    uint64_t before = 0, after = 0;
    hvi_gpa gpa = 0;
    REQUIRE(hvi_sim_translate(f->sim, f->w.cr3, HVI_PAGING_4LVL, va, &gpa) == HVI_OK);
    REQUIRE(hvi_sim_phys_read(f->sim, gpa, &before, len) == HVI_OK);
    uint64_t rip = f->w.drv_base[DRV_RIP_INDEX] + 0x1234;
    int n0 = wf_count(f, HVI_ALERT_EPT_WRITE);
    hvi_event_reply rep;
    CHECK_OK(wf_write(f, va, 0xfffff80012345678ull, len, rip, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    REQUIRE(hvi_sim_phys_read(f->sim, gpa, &after, len) == HVI_OK);
    CHECK_EQ_U64(after, before);
    CHECK_EQ_U64(wf_count(f, HVI_ALERT_EPT_WRITE), n0 + 1);
    const hvi_alert *a = wf_last(f, HVI_ALERT_EPT_WRITE);
    REQUIRE(a != NULL);
    CHECK_STR(a->object, object);
    CHECK_EQ_U64(a->rip, rip);
    CHECK_EQ_U64(a->gva, va);
    CHECK_EQ_U64(a->action, HVI_ALERT_DENIED);
    CHECK_STR(a->module, f->w.drv_name[DRV_RIP_INDEX]);
    char sym[64];
    snprintf(sym, sizeof(sym), "%s+0x1234", f->w.drv_name[DRV_RIP_INDEX]);
    CHECK_STR(a->symbol, sym);
}

HVI_TEST(ssdt_and_hal_dispatch_writes_denied_with_alerts)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .drivers = 4};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_KM_SYSCALL_TABLE, true) == HVI_OK);
    check_denied(&f, f.w.ssdt + 4 * 0x50, 4, "nt-ssdt"); /* an entry in the middle */
    check_denied(&f, f.w.ssdt + 4 * (f.w.ssdt_count - 1), 4, "nt-ssdt"); /* the last one */
    check_denied(&f, f.w.hal_dispatch + 8, 8, "hal-dispatch-table"); /* HalQuerySystemInformation */
    /* the rest of .text is not covered by this option */
    hvi_event_reply rep;
    CHECK_OK(wf_write(&f, f.w.text + 0x800, 1, 4, f.w.text, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    /* switched off: allowed, EPT restored */
    CHECK_OK(hvi_options_set(f.e, 0));
    CHECK_OK(wf_write(&f, f.w.ssdt + 4 * 0x50, 7, 4, f.w.text, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    wf_free(&f);
}

HVI_TEST(kernel_code_idt_writes_denied_data_allowed)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 7601, .kpti = false, .drivers = 4};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_KM_TEXT | HVI_OPT_KM_IDT | HVI_OPT_KM_SYSCALL_TABLE, true) ==
            HVI_OK);
    check_denied(&f, f.w.lstar, 8, "nt-code:.text"); /* KiSystemCall64 */
    check_denied(&f, f.w.psp_insert_process, 8, "nt-code:PAGE");
    check_denied(&f, f.w.kernel_base + 0x8010, 4, "nt-ro:.rdata");
    check_denied(&f, f.w.idt + 16 * 14, 8, "idt"); /* #PF gate */
    /* SSDT bytes inside .text raise one alert, named for the table */
    int n0 = f.nalerts;
    check_denied(&f, f.w.ssdt, 4, "nt-ssdt");
    CHECK_EQ_U64(f.nalerts, n0 + 1);
    /* .data (writable section) is not protected */
    hvi_event_reply rep;
    CHECK_OK(wf_write(&f, f.w.kernel_base + 0x9000 + 0x300, 5, 8, f.w.text, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    /* log-only: reported, allowed */
    CHECK_OK(hvi_options_set(f.e, HVI_OPT_KM_TEXT | HVI_OPT_LOG_ONLY));
    CHECK_OK(wf_write(&f, f.w.lstar, 0x9090909090909090ull, 8, f.w.text, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    const hvi_alert *a = wf_last(&f, HVI_ALERT_EPT_WRITE);
    CHECK(a && a->action == HVI_ALERT_LOGGED);
    /* detach leaves nothing behind */
    CHECK_OK(hvi_detach(f.e));
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    CHECK_EQ_U64(hvi_sim_breakpoint_count(f.sim), 0);
    wf_free(&f);
}

HVI_TEST(detach_removes_detours)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_EVENT_PROCESS | HVI_OPT_ALL_PROTECTION, true) == HVI_OK);
    CHECK_EQ_U64(hvi_sim_breakpoint_count(f.sim), 2);
    CHECK(hvi_sim_restricted_frames(f.sim) > 0);
    CHECK_OK(hvi_detach(f.e));
    CHECK_EQ_U64(hvi_sim_breakpoint_count(f.sim), 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    wf_free(&f);
}

/* The CAMI argument lists differ per build: the debug handle is stack slot 5 on 17763 and 6 on
 * 7600-7602 ([RSP + 8 N] at entry). The detour must read the slot its entry names. */
static void check_stack_arg(uint32_t build, bool kpti, uint64_t want)
{
    struct wf f;
    hvi_sim_win_config c = {.build = build, .kpti = kpti, .processes = 2};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_EVENT_PROCESS, true) == HVI_OK);
    uint64_t ep = 0;
    REQUIRE(hvi_sim_win_new_eprocess(f.sim, &f.w, "child.exe", 0x777, f.w.pid[1], &ep) == HVI_OK);
    uint64_t args[6] = {ep, f.w.eprocess[1], 0x1fffff, 0, 0x5555, 0x6666};
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.psp_insert_process, args, 6, &rep));
    const hvi_alert *a = wf_last(&f, HVI_EVENT_PROCESS_CREATE);
    REQUIRE(a != NULL);
    char s[40];
    snprintf(s, sizeof(s), "debug_handle=0x%llx", (unsigned long long)want);
    CHECK(strstr(a->detail, s) != NULL);
    if (!strstr(a->detail, s))
        fprintf(stderr, "  build %u: %s\n", build, a->detail);
    wf_free(&f);
}

HVI_TEST(detour_arguments_follow_the_cami_list_of_the_build)
{
    check_stack_arg(17763, true, 0x5555); /* DET_ARG_STACK5: the 5th argument */
    check_stack_arg(7601, false, 0x6666); /* DET_ARG_STACK6: the 6th argument */
}

HVI_TEST(writer_outside_every_driver_is_unknown)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .drivers = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_KM_SYSCALL_TABLE, true) == HVI_OK);
    hvi_event_reply rep;
    /* shellcode in pool memory */
    CHECK_OK(wf_write(&f, f.w.ssdt, 0x41414141, 4, 0xffffa08000000100ull, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    const hvi_alert *a = wf_last(&f, HVI_ALERT_EPT_WRITE);
    REQUIRE(a != NULL);
    CHECK_STR(a->module, "unknown");
    CHECK_STR(a->symbol, "");
    /* ntoskrnl writing its own table is named too (no exception: still denied) */
    CHECK_OK(wf_write(&f, f.w.ssdt, 0x41414141, 4, f.w.text + 0x10, &rep));
    a = wf_last(&f, HVI_ALERT_EPT_WRITE);
    CHECK(a && !strcmp(a->module, "ntoskrnl.exe") && !strcmp(a->symbol, "ntoskrnl.exe+0x1010"));
    wf_free(&f);
}

/* A QEMU-like backend (no EPT, 4 watchpoints): detours still work, the large protections are
 * refused whole and leave nothing behind. */
HVI_TEST(qemu_like_backend_detours_work_protections_refused_cleanly)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    hvi_sim_set_caps(f.sim, HVI_SIM_CAPS_QEMU_LIKE);
    CHECK_OK(
        wf_attach(&f, HVI_OPT_EVENT_PROCESS | HVI_OPT_KM_SYSCALL_TABLE | HVI_OPT_KM_TEXT, true));
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    CHECK_EQ_U64(hvi_hook_count(f.e), 2); /* the two detours only */
    uint64_t ep = 0;
    REQUIRE(hvi_sim_win_new_eprocess(f.sim, &f.w, "q.exe", 0x42, 4, &ep) == HVI_OK);
    uint64_t args[2] = {ep, f.w.eprocess[0]};
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.psp_insert_process, args, 2, &rep));
    CHECK_EQ_U64(wf_count(&f, HVI_EVENT_PROCESS_CREATE), 1);
    wf_free(&f);
}

/* The backend refuses an EPT change half way: the option is placed whole or not at all. */
HVI_TEST(glue_failure_while_protecting_leaves_nothing)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, 0, true) == HVI_OK);
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_EPT, 3, HVI_E_BACKEND) == HVI_OK);
    (void)hvi_options_set(f.e, HVI_OPT_KM_TEXT);
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_SET_EPT, 0, HVI_OK) == HVI_OK);
    (void)hvi_hook_sync(f.e);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    /* and placing it again once the backend behaves works */
    CHECK_OK(hvi_options_set(f.e, 0));
    CHECK_OK(hvi_options_set(f.e, HVI_OPT_KM_TEXT));
    CHECK(hvi_sim_restricted_frames(f.sim) > 0);
    wf_free(&f);
}

HVI_TEST(service_descriptor_integrity_restored_on_the_timer)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_INTEGRITY, true) == HVI_OK);
    CHECK_OK(hvi_sim_tick(f.sim));
    CHECK_EQ_U64(wf_count(&f, HVI_ALERT_INTEGRITY), 0);
    /* a rootkit points ServiceTableBase at its own table (no EPT hook on .data) */
    uint64_t evil = 0xffffa08000400080ull; /* differs from the first byte on */
    REQUIRE(hvi_sim_win_poke(f.sim, &f.w, f.w.sdt, &evil, 8) == HVI_OK);
    CHECK_OK(hvi_sim_tick(f.sim));
    REQUIRE(wf_count(&f, HVI_ALERT_INTEGRITY) == 1);
    const hvi_alert *a = wf_last(&f, HVI_ALERT_INTEGRITY);
    CHECK_STR(a->object, "nt-sdt-descriptor");
    CHECK_EQ_U64(a->new_value, evil);
    CHECK_EQ_U64(a->old_value, f.w.ssdt);
    CHECK(strstr(a->detail, "region=nt-sdt-descriptor") != NULL);
    uint64_t now = 0;
    hvi_gpa gpa = 0;
    REQUIRE(hvi_sim_translate(f.sim, f.w.cr3, HVI_PAGING_4LVL, f.w.sdt, &gpa) == HVI_OK);
    REQUIRE(hvi_sim_phys_read(f.sim, gpa, &now, 8) == HVI_OK);
    CHECK_EQ_U64(now, f.w.ssdt); /* written back */
    wf_free(&f);
}

HVI_TEST(reused_eprocess_exits_are_reported_again)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 1};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_EVENT_PROCESS, true) == HVI_OK);
    uint64_t ep = 0;
    REQUIRE(hvi_sim_win_new_eprocess(f.sim, &f.w, "a.exe", 0x50, 4, &ep) == HVI_OK);
    uint64_t args[2] = {ep, f.w.eprocess[0]}, one[1] = {ep};
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.psp_insert_process, args, 2, &rep));
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.mm_clean_process, one, 1, &rep));
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.psp_insert_process, args, 2, &rep));
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.mm_clean_process, one, 1, &rep));
    CHECK_EQ_U64(wf_count(&f, HVI_EVENT_PROCESS_CREATE), 2);
    CHECK_EQ_U64(wf_count(&f, HVI_EVENT_PROCESS_EXIT), 2);
    wf_free(&f);
}

HVI_TEST(lstar_write_denied)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 7601, .kpti = true};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_KM_MSR, true) == HVI_OK);
    CHECK(hvi_sim_exit_enabled(f.sim, HVI_EXIT_MSR, HVI_MSR_LSTAR));
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_msr_write(f.sim, 0, HVI_MSR_LSTAR, 0xffffa08000400000ull, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    uint64_t now = 0;
    CHECK_OK(hvi_sim_get_msr(f.sim, 0, HVI_MSR_LSTAR, &now));
    CHECK_EQ_U64(now, f.w.lstar);
    const hvi_alert *a = wf_last(&f, HVI_ALERT_MSR);
    REQUIRE(a != NULL);
    CHECK_STR(a->object, "lstar");
    CHECK_EQ_U64(a->new_value, 0xffffa08000400000ull);
    CHECK_OK(hvi_options_set(f.e, 0));
    CHECK(!hvi_sim_exit_enabled(f.sim, HVI_EXIT_MSR, HVI_MSR_LSTAR));
    wf_free(&f);
}

/* HVI_OPT_BLOCK_EXEC: PspInsertProcess returns STATUS_ACCESS_DENIED for a listed image name. */
HVI_TEST(blocked_process_creation_returns_access_denied)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .processes = 2};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_BLOCK_EXEC, true) == HVI_OK); /* no process events */
    CHECK(hvi_sim_breakpoint_at(f.sim, f.w.psp_insert_process));
    CHECK_OK(hvi_windows_block_process_add(f.e, "MIMIKATZ.EXE"));
    CHECK_STATUS(hvi_windows_block_process_add(f.e, ""), HVI_E_INVAL);
    uint64_t bad = 0, good = 0;
    REQUIRE(hvi_sim_win_new_eprocess(f.sim, &f.w, "mimikatz.exe", 0x666, f.w.pid[1], &bad) ==
            HVI_OK);
    REQUIRE(hvi_sim_win_new_eprocess(f.sim, &f.w, "calc.exe", 0x668, f.w.pid[1], &good) == HVI_OK);
    hvi_regs *r = hvi_sim_vcpu_regs(f.sim, 0);
    uint64_t args[2] = {good, f.w.eprocess[1]};
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.psp_insert_process, args, 2, &rep));
    CHECK(!rep.regs_changed);
    CHECK_EQ_U64(f.nalerts, 0); /* events are off: nothing for an allowed creation */
    args[0] = bad;
    r->gpr[HVI_RAX] = 0;
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.psp_insert_process, args, 2, &rep));
    CHECK(rep.regs_changed);
    CHECK_EQ_U64(r->rip, f.w.return_address);
    CHECK_EQ_U64(r->gpr[HVI_RAX], 0xC0000022u);
    /* popped the return address: RSP is back where the caller's CALL left it */
    CHECK_EQ_U64(r->gpr[HVI_RSP], (f.w.stack_top - 8 * 16) & ~0xfull);
    REQUIRE(wf_count(&f, HVI_EVENT_EXEC_BLOCKED) == 1);
    const hvi_alert *a = wf_last(&f, HVI_EVENT_EXEC_BLOCKED);
    CHECK_EQ_U64(a->action, HVI_ALERT_DENIED);
    CHECK_EQ_U64(a->pid, 0x666);
    CHECK_STR(a->comm, "mimikatz.exe");
    CHECK(strstr(a->detail, "rule=MIMIKATZ.EXE") != NULL);
    CHECK(strstr(a->detail, "status=0xc0000022") != NULL);
    /* without the option the list is not applied */
    CHECK_OK(hvi_options_set(f.e, HVI_OPT_EVENT_PROCESS));
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.psp_insert_process, args, 2, &rep));
    CHECK(!rep.regs_changed);
    CHECK_EQ_U64(wf_count(&f, HVI_EVENT_EXEC_BLOCKED), 1);
    CHECK_EQ_U64(wf_count(&f, HVI_EVENT_PROCESS_CREATE), 1);
    hvi_windows_block_process_clear(f.e);
    wf_free(&f);
}

HVI_TEST(module_load_and_unload_events_from_detours)
{
    struct wf f;
    hvi_sim_win_config c = {.build = 17763, .kpti = true, .drivers = 2};
    REQUIRE(wf_build(&f, &c) == HVI_OK);
    REQUIRE(wf_attach(&f, HVI_OPT_EVENT_MODULE, true) == HVI_OK);
    CHECK(hvi_sim_breakpoint_at(f.sim, f.w.mi_process_loader_entry));
    CHECK(hvi_sim_breakpoint_at(f.sim, f.w.mi_unload_system_image));
    CHECK(!hvi_sim_breakpoint_at(f.sim, f.w.psp_insert_process)); /* process events are off */
    uint64_t ldr = 0;
    REQUIRE(hvi_sim_win_new_ldr(f.sim, &f.w, "rootkit.sys", 0xfffff80007000000ull, 0x8000, &ldr) ==
            HVI_OK);
    uint64_t load[2] = {ldr, 1}, remove[2] = {ldr, 0}, one[1] = {ldr};
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.mi_process_loader_entry, load, 2, &rep));
    REQUIRE(wf_count(&f, HVI_EVENT_MODULE_LOAD) == 1);
    const hvi_alert *a = wf_last(&f, HVI_EVENT_MODULE_LOAD);
    CHECK_STR(a->module, "rootkit.sys");
    CHECK(strstr(a->detail, "base=0xfffff80007000000 size=0x8000") != NULL);
    CHECK(strstr(a->detail, "path=\\SystemRoot\\System32\\drivers\\rootkit.sys") != NULL);
    /* the removal call of MiProcessLoaderEntry is not an event; MiUnloadSystemImage is */
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.mi_process_loader_entry, remove, 2, &rep));
    CHECK_EQ_U64(wf_count(&f, HVI_EVENT_MODULE_LOAD), 1);
    CHECK_EQ_U64(wf_count(&f, HVI_EVENT_MODULE_UNLOAD), 0);
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.mi_unload_system_image, one, 1, &rep));
    REQUIRE(wf_count(&f, HVI_EVENT_MODULE_UNLOAD) == 1);
    CHECK_STR(wf_last(&f, HVI_EVENT_MODULE_UNLOAD)->module, "rootkit.sys");
    /* a hostile entry pointer: no event, no failure */
    uint64_t junk[2] = {0xffffa0800ff00000ull, 1};
    CHECK_OK(hvi_sim_win_call(f.sim, &f.w, f.w.mi_process_loader_entry, junk, 2, &rep));
    CHECK_EQ_U64(wf_count(&f, HVI_EVENT_MODULE_LOAD), 1);
    /* options: module events off, process events on */
    CHECK_OK(hvi_options_set(f.e, HVI_OPT_EVENT_PROCESS));
    CHECK(!hvi_sim_breakpoint_at(f.sim, f.w.mi_process_loader_entry));
    CHECK(hvi_sim_breakpoint_at(f.sim, f.w.psp_insert_process));
    wf_free(&f);
}

HVI_TEST_MAIN()
