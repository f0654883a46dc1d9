/* CAMI in the engine: support data validated at new guest (bad data refused, engine unchanged),
 * live update: the OS entry selected at start stays, options and the rest change at once, an
 * invalid update keeps the old data. Uses a minimal fake glue table. */
#include <stdlib.h>

#include "cami_test_util.h"
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

static hvi_engine *make_engine(void)
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
    hvi_engine *e = NULL;
    return hvi_engine_new(&g, &e) == HVI_OK ? e : NULL;
}

static void *support(uint32_t comm, const char *force_off, size_t *len)
{
    char text[2048], msg[256];
    void *out = NULL;
    snprintf(text, sizeof(text),
             "!intro_update_lix_supported_os\n"
             "version: 6.1.0-[13-]-amd64*\n"
             "hooks:\n"
             "    - !intro_update_lix_hook\n"
             "        name: commit_creds\n"
             "fields: !opaque_structures\n"
             "    type: lix_fields\n"
             "    os_structs:\n"
             "        TaskStruct: !opaque_fields\n"
             "            CommOffset: %u\n"
             "---\n"
             "globals: !global_introcore_options\n"
             "    linux: !global_options\n"
             "        core_options: !options_control\n"
             "            force_off: [%s]\n",
             comm, force_off);
    if (ct_build_text(text, &out, len, msg, sizeof(msg)) != HVI_OK) {
        fprintf(stderr, "support build failed: %s\n", msg);
        return NULL;
    }
    return out;
}

static hvi_status attach(hvi_engine *e, const void *buf, size_t len, uint64_t opts)
{
    hvi_guest_params p;
    memset(&p, 0, sizeof(p));
    p.size = sizeof(p);
    p.os_hint = HVI_OS_UNKNOWN; /* the fake guest is neither Linux nor Windows: memory-only */
    p.support = buf;
    p.support_len = len;
    p.options = opts;
    return hvi_new_guest(e, &p);
}

HVI_TEST(bad_support_refused_engine_unchanged)
{
    hvi_engine *e = make_engine();
    REQUIRE(e);
    size_t len;
    uint8_t *b = support(0x100, "NONE", &len);
    REQUIRE(b);
    uint32_t d;
    memcpy(&d, b + 28 + 16 + 12, 4); /* Linux descriptor table: flip a glob character */
    b[d + 2] ^= 1;                   /* structurally fine, only the checksum sees it */
    CHECK_STATUS(attach(e, b, len, 0), HVI_E_INTEGRITY);
    CHECK(!e->guest.attached);
    CHECK(e->support == NULL);
    CHECK(hvi_cami_engine_support(e) == NULL);
    b[d + 2] ^= 1;
    CHECK_OK(attach(e, b, len, 0));
    CHECK(hvi_cami_engine_support(e) != NULL);
    CHECK(e->support_len == len);
    hvi_engine_free(e);
    free(b);
}

HVI_TEST(live_update_keeps_selected_entry_and_applies_the_rest)
{
    hvi_engine *e = make_engine();
    REQUIRE(e);
    size_t l1, l2;
    void *s1 = support(0x5c0, "NONE", &l1), *s2 = support(0x777, "KM_IDT", &l2);
    REQUIRE(s1 && s2);
    CHECK_OK(attach(e, s1, l1, HVI_OPT_KM_IDT | HVI_OPT_KM_TEXT));
    CHECK_EQ_U64(hvi_options_get(e), HVI_OPT_KM_IDT | HVI_OPT_KM_TEXT);
    const hvi_cami_lix_entry *sel = NULL, *again = NULL;
    CHECK_OK(hvi_cami_engine_select_lix(e, "6.1.0-13-amd64 (debian-kernel@lists.debian.org)", &sel));
    REQUIRE(sel);
    CHECK(hvi_cami_engine_lix(e) == sel);
    const hvi_cami *before = hvi_cami_engine_support(e);

    CHECK_OK(hvi_update_support(e, s2, l2));
    uint32_t v = 0;
    CHECK(hvi_cami_engine_lix(e) == sel); /* OS-specific part stays until restart */
    CHECK_OK(hvi_cami_lix_field(hvi_cami_engine_lix(e), HVI_LIX_TASKSTRUCT, HVI_LIX_TASKSTRUCT_COMMOFFSET, &v));
    CHECK_EQ_U64(v, 0x5c0);
    const hvi_cami *now = hvi_cami_engine_support(e); /* the rest is the new data */
    CHECK(now != before);
    CHECK_OK(hvi_cami_lix_select(now, "6.1.0-13-amd64", &again));
    CHECK_OK(hvi_cami_lix_field(again, HVI_LIX_TASKSTRUCT, HVI_LIX_TASKSTRUCT_COMMOFFSET, &v));
    CHECK_EQ_U64(v, 0x777);
    CHECK_EQ_U64(hvi_cami_engine_os_prot(e)->core.force_off, HVI_OPT_KM_IDT);
    CHECK_EQ_U64(hvi_options_get(e), HVI_OPT_KM_TEXT); /* ForceOff took effect at once */
    CHECK(e->support_len == l2);

    /* an invalid update leaves the old data in force */
    uint8_t junk[64] = "CAMI";
    CHECK(hvi_update_support(e, junk, sizeof(junk)) != HVI_OK);
    CHECK(hvi_cami_engine_support(e) == now);
    CHECK(e->support_len == l2);
    CHECK_STATUS(hvi_update_support(e, NULL, 1), HVI_E_INVAL);
    /* a second update frees the intermediate data (ASan would report a leak otherwise) */
    CHECK_OK(hvi_update_support(e, s1, l1));
    CHECK(hvi_cami_engine_lix(e) == sel);
    hvi_engine_free(e);
    free(s1);
    free(s2);
}

HVI_TEST(selection_without_support_is_refused)
{
    hvi_engine *e = make_engine();
    REQUIRE(e);
    CHECK_STATUS(hvi_cami_engine_select_lix(e, "6.1.0", NULL), HVI_E_STATE);
    CHECK(hvi_cami_engine_lix(e) == NULL);
    CHECK(hvi_cami_engine_os_prot(e) == NULL);
    hvi_engine_free(e);
}

HVI_TEST_MAIN()
