/* Core engine: glue validation, dispatch, alerts, options, deferred detach. */
#include <stddef.h>
#include <stdlib.h>

#include "core/engine.h"
#include "harness.h"
#include "hvi/hvi.h"

static hvi_status fake_vcpu_count(void *ctx, uint32_t *out)
{
    (void)ctx;
    *out = 1;
    return HVI_OK;
}
static hvi_status fake_get_regs(void *ctx, uint32_t vcpu, uint32_t want, hvi_regs *out)
{
    (void)ctx;
    (void)vcpu;
    (void)want;
    memset(out, 0, sizeof(*out));
    out->valid = HVI_REGS_CR | HVI_REGS_EFER;
    return HVI_OK;
}
static hvi_status fake_map(void *ctx, hvi_gpa gpa, void **out)
{
    (void)ctx;
    (void)gpa;
    (void)out;
    return HVI_E_RANGE;
}
static hvi_status fake_unmap(void *ctx, hvi_gpa gpa, void *p)
{
    (void)ctx;
    (void)gpa;
    (void)p;
    return HVI_OK;
}

static hvi_glue make_glue(void)
{
    hvi_glue g;
    memset(&g, 0, sizeof(g));
    g.version = HVI_GLUE_VERSION;
    g.size = sizeof(g);
    g.name = "fake";
    g.vcpu_count = fake_vcpu_count;
    g.get_regs = fake_get_regs;
    g.map_gpa = fake_map;
    g.unmap_gpa = fake_unmap;
    return g;
}

HVI_TEST(glue_check_refuses_bad_tables)
{
    hvi_glue g = make_glue();
    CHECK_OK(hvi_glue_check(&g));
    CHECK_STATUS(hvi_glue_check(NULL), HVI_E_INVAL);
    g.version = 2;
    CHECK_STATUS(hvi_glue_check(&g), HVI_E_VERSION);
    g = make_glue();
    g.size = 16;
    CHECK_STATUS(hvi_glue_check(&g), HVI_E_VERSION);
    g = make_glue();
    g.map_gpa = NULL;
    CHECK_STATUS(hvi_glue_check(&g), HVI_E_INVAL);
    g = make_glue();
    g.caps = HVI_CAP_EPT; /* claims EPT without set/get_ept_rights */
    CHECK_STATUS(hvi_glue_check(&g), HVI_E_INVAL);
    g.caps = HVI_CAP_BREAKPOINT;
    CHECK_STATUS(hvi_glue_check(&g), HVI_E_INVAL);

    hvi_engine *e = (hvi_engine *)0x1;
    CHECK_STATUS(hvi_engine_new(&g, &e), HVI_E_INVAL);
    CHECK(e == NULL);
}

HVI_TEST(glue_check_appended_members)
{
    /* A capability whose member lies past the table's size is refused; a table of the
     * version-1 size without that capability is accepted. */
    hvi_glue g = make_glue();
    g.size = (uint32_t)offsetof(hvi_glue, get_vec_reg);
    CHECK_OK(hvi_glue_check(&g));
    g.caps |= HVI_CAP_VEC_REGS;
    CHECK_STATUS(hvi_glue_check(&g), HVI_E_INVAL);
    g.size = sizeof(hvi_glue);
    g.get_vec_reg = NULL;
    CHECK_STATUS(hvi_glue_check(&g), HVI_E_INVAL);
}

HVI_TEST(strstatus_names_every_status_distinctly)
{
    for (int a = 0; a > -HVI_STATUS_COUNT; a--) {
        CHECK(strcmp(hvi_strstatus((hvi_status)a), "unknown status") != 0);
        for (int b = a - 1; b > -HVI_STATUS_COUNT; b--)
            CHECK(strcmp(hvi_strstatus((hvi_status)a), hvi_strstatus((hvi_status)b)) != 0);
    }
    CHECK_STR(hvi_strstatus((hvi_status)-999), "unknown status");
}

struct order_log {
    int calls[8];
    int n;
    hvi_engine *e;
    int alerts;
    uint32_t last_alert_type;
};

static hvi_status h_allow(hvi_engine *e, const hvi_event *ev, hvi_event_reply *r, void *ctx)
{
    (void)e;
    (void)ev;
    struct order_log *l = ctx;
    l->calls[l->n++] = 1;
    r->action = HVI_ACTION_ALLOW;
    return HVI_OK;
}

static hvi_status h_deny_and_alert(hvi_engine *e, const hvi_event *ev, hvi_event_reply *r, void *ctx)
{
    struct order_log *l = ctx;
    l->calls[l->n++] = 2;
    hvi_alert a;
    hvi_alert_init(&a, HVI_ALERT_EPT_WRITE, ev->vcpu);
    a.gpa = ev->gpa;
    hvi_alert_emit(e, &a);
    /* Queued, not yet delivered: the event is still being handled. */
    CHECK(e->alert_count == 1);
    r->action = HVI_ACTION_DENY;
    return HVI_OK;
}

static hvi_status h_remove_self(hvi_engine *e, const hvi_event *ev, hvi_event_reply *r, void *ctx)
{
    struct order_log *l = ctx;
    l->calls[l->n++] = 3;
    (void)r;
    CHECK_OK(hvi_engine_remove_handler(e, ev->type, h_remove_self, ctx));
    return HVI_OK;
}

static void on_alert(const hvi_alert *a, void *user)
{
    struct order_log *l = user;
    l->alerts++;
    l->last_alert_type = a->type;
}

HVI_TEST(dispatch_calls_handlers_in_order_and_deny_wins)
{
    hvi_glue g = make_glue();
    hvi_engine *e = NULL;
    REQUIRE(hvi_engine_new(&g, &e) == HVI_OK);
    struct order_log l;
    memset(&l, 0, sizeof(l));
    hvi_set_alert_callback(e, on_alert, &l);
    CHECK_OK(hvi_engine_add_handler(e, HVI_EV_EPT_VIOLATION, h_allow, &l));
    CHECK_OK(hvi_engine_add_handler(e, HVI_EV_EPT_VIOLATION, h_deny_and_alert, &l));
    CHECK_OK(hvi_engine_add_handler(e, HVI_EV_EPT_VIOLATION, h_remove_self, &l));
    CHECK_STATUS(hvi_engine_add_handler(e, HVI_EV_EPT_VIOLATION, h_allow, &l), HVI_E_EXISTS);

    hvi_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.size = sizeof(ev);
    ev.type = HVI_EV_EPT_VIOLATION;
    ev.gpa = 0x1234;
    hvi_event_reply rep;
    CHECK_OK(hvi_handle_event(e, &ev, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    CHECK_EQ_U64(l.n, 3);
    CHECK(l.calls[0] == 1 && l.calls[1] == 2 && l.calls[2] == 3);
    CHECK_EQ_U64(l.alerts, 1);
    CHECK_EQ_U64(l.last_alert_type, HVI_ALERT_EPT_WRITE);

    /* The self-removing handler is gone on the second event. */
    l.n = 0;
    CHECK_OK(hvi_handle_event(e, &ev, &rep));
    CHECK_EQ_U64(l.n, 2);

    /* Unknown event type and short struct are refused; the reply stays ALLOW. */
    ev.type = 999;
    CHECK_STATUS(hvi_handle_event(e, &ev, &rep), HVI_E_INVAL);
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    ev.type = HVI_EV_EPT_VIOLATION;
    ev.size = 4;
    CHECK_STATUS(hvi_handle_event(e, &ev, &rep), HVI_E_INVAL);
    hvi_engine_free(e);
}

static int busy_rounds;
static hvi_status detach_busy_twice(hvi_engine *e, void *ctx)
{
    (void)e;
    (void)ctx;
    return busy_rounds-- > 0 ? HVI_E_BUSY : HVI_OK;
}
static int cleaned;
static void cleanup_count(hvi_engine *e, void *ctx)
{
    (void)e;
    (void)ctx;
    cleaned++;
}

HVI_TEST(detach_is_deferred_until_layers_are_done)
{
    hvi_glue g = make_glue();
    hvi_engine *e = NULL;
    REQUIRE(hvi_engine_new(&g, &e) == HVI_OK);
    busy_rounds = 2;
    cleaned = 0;
    CHECK_OK(hvi_engine_on_detach(e, detach_busy_twice, NULL));
    CHECK_OK(hvi_engine_on_free(e, cleanup_count, NULL));
    CHECK_STATUS(hvi_detach(e), HVI_E_BUSY);
    /* The timer retries the deferred detach. */
    CHECK_OK(hvi_timer_tick(e));
    CHECK(e->detaching);
    CHECK_OK(hvi_timer_tick(e));
    CHECK(!e->detaching);
    CHECK_OK(hvi_detach(e)); /* already done: nothing left */
    hvi_engine_free(e);
    CHECK_EQ_U64(cleaned, 1);
    hvi_engine_free(NULL);
}

static uint64_t seen_old, seen_new;
static void watch_opts(hvi_engine *e, uint64_t o, uint64_t n, void *ctx)
{
    (void)e;
    (void)ctx;
    seen_old = o;
    seen_new = n;
}

HVI_TEST(options_changes_reach_watchers)
{
    hvi_glue g = make_glue();
    hvi_engine *e = NULL;
    REQUIRE(hvi_engine_new(&g, &e) == HVI_OK);
    CHECK_OK(hvi_engine_on_options(e, watch_opts, NULL));
    CHECK_OK(hvi_options_set(e, HVI_OPT_KM_TEXT | HVI_OPT_LOG_ONLY));
    CHECK_EQ_U64(seen_old, 0);
    CHECK_EQ_U64(seen_new, HVI_OPT_KM_TEXT | HVI_OPT_LOG_ONLY);
    CHECK_EQ_U64(hvi_options_get(e), HVI_OPT_KM_TEXT | HVI_OPT_LOG_ONLY);
    hvi_engine_free(e);
}

HVI_TEST(new_guest_reads_paging_context_and_refuses_second_attach)
{
    hvi_glue g = make_glue();
    hvi_engine *e = NULL;
    REQUIRE(hvi_engine_new(&g, &e) == HVI_OK);
    hvi_guest_params p;
    memset(&p, 0, sizeof(p));
    p.size = sizeof(p);
    CHECK_OK(hvi_new_guest(e, &p));
    CHECK_EQ_U64(hvi_mem_paging_mode(e), HVI_PAGING_NONE);
    CHECK_STATUS(hvi_new_guest(e, &p), HVI_E_STATE);
    CHECK(strlen(hvi_last_error(e)) > 0);
    hvi_engine_free(e);
}

HVI_TEST(paging_mode_from_control_registers)
{
    CHECK_EQ_U64(hvi_paging_mode_from_regs(0, 0, 0), HVI_PAGING_NONE);
    CHECK_EQ_U64(hvi_paging_mode_from_regs(1ull << 31, 0, 0), HVI_PAGING_32);
    CHECK_EQ_U64(hvi_paging_mode_from_regs(1ull << 31, 1u << 5, 0), HVI_PAGING_PAE);
    CHECK_EQ_U64(hvi_paging_mode_from_regs(1ull << 31, 1u << 5, 1u << 10), HVI_PAGING_4LVL);
    CHECK_EQ_U64(hvi_paging_mode_from_regs(1ull << 31, (1u << 5) | (1u << 12), 1u << 10),
                 HVI_PAGING_5LVL);
}

HVI_TEST(alert_json_escapes_and_reports_truncation)
{
    hvi_alert a;
    hvi_alert_init(&a, HVI_ALERT_MSR, 1);
    a.rip = 0xffffffff81000000ull;
    strcpy(a.object, "lstar");
    strcpy(a.detail, "quote\" back\\ nl\n");
    memset(a.comm, 'A', sizeof(a.comm)); /* no terminator: must stay bounded */
    char buf[2048];
    size_t need = 0;
    CHECK_OK(hvi_alert_to_json(&a, buf, sizeof(buf), &need));
    CHECK(strstr(buf, "\"type\":\"msr\"") != NULL);
    CHECK(strstr(buf, "\"kind\":\"violation\"") != NULL);
    CHECK(strstr(buf, "\"rip\":\"0xffffffff81000000\"") != NULL);
    CHECK(strstr(buf, "quote\\\" back\\\\ nl\\u000a") != NULL);
    CHECK(strstr(buf, "\"comm\":\"AAAAAAAAAAAAAAAAAAAAAAAA\"") != NULL);
    CHECK_EQ_U64(need, strlen(buf));
    char small[16];
    CHECK_STATUS(hvi_alert_to_json(&a, small, sizeof(small), NULL), HVI_E_LIMIT);
    CHECK_EQ_U64(strlen(small), sizeof(small) - 1);
    CHECK_STR(hvi_alert_type_name(HVI_EVENT_PROCESS_EXEC), "process-exec");
    CHECK(!hvi_alert_is_violation(HVI_EVENT_PROCESS_EXEC));
}

HVI_TEST_MAIN()
