/*
 * Hook objects: multi-page regions hooked and removed together, on EPT (GVA hooks) and on a
 * QEMU-like backend (watchpoints); detach empties objects and restores every right.
 */
#include <string.h>

#include "harness.h"
#include "hook_fixture.h"

/* 48 89 58 08    mov qword ptr [rax+0x8], rbx */
static const uint8_t MOV_RAX8_RBX[] = {0x48, 0x89, 0x58, 0x08};

static uint32_t deny_cb(hvi_engine *e, hvi_hook *h, const hvi_hook_access *a, void *c)
{
    (void)e, (void)h, (void)a;
    (*(int *)c)++;
    return HVI_ACTION_DENY;
}

static void write_at(struct fx *f, hvi_gva gva, uint64_t v)
{
    hvi_event_reply rep;
    f->regs->gpr[HVI_RAX] = gva - 8;
    f->regs->gpr[HVI_RBX] = v;
    CHECK_OK(hvi_sim_guest_write(f->sim, 0, gva, &v, 8, MOV_RAX8_RBX, 4, &rep));
}

static void run(uint64_t caps)
{
    struct fx f;
    REQUIRE(fx_init(&f, caps));
    int n = 0;
    hvi_hook_object *o;
    REQUIRE(hvi_hook_object_new(f.e, "kernel-rodata", &o) == HVI_OK);
    /* EPT: 3 pages and a bit; watchpoints (16 of them in the simulator, 8 bytes each): 16 bytes
     * over a page boundary */
    bool ept = caps == 0;
    hvi_gva start = ept ? FX_GVA + 0xff0 : FX_GVA + 0xff8;
    uint64_t len = ept ? 0x2020 : 0x10;
    hvi_gva inside = ept ? FX_GVA + 0x1800 : FX_GVA + 0x1000;
    REQUIRE(hvi_hook_object_add_region(f.e, o, 0, start, len, HVI_EPT_W, deny_cb, NULL, &n) ==
            HVI_OK);
    uint64_t before, after;
    hvi_sim_phys_read(f.sim, f.gpa[1] + (inside & 0xfff), &before, 8);
    write_at(&f, inside, 0x77);
    CHECK_EQ_U64(n, 1);
    hvi_sim_phys_read(f.sim, f.gpa[1] + (inside & 0xfff), &after, 8);
    CHECK_EQ_U64(after, before);
    write_at(&f, start + len + 0x100, 0x77); /* beyond the region */
    CHECK_EQ_U64(n, 1);
    CHECK_STATUS(hvi_hook_object_remove_region(f.e, o, FX_GVA), HVI_E_NOT_FOUND);
    CHECK_OK(hvi_hook_object_remove_region(f.e, o, start));
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    write_at(&f, inside, 0x77);
    CHECK_EQ_U64(n, 1);
    /* detach empties the object */
    REQUIRE(hvi_hook_object_add_region(f.e, o, 0, FX_GVA, 0x40, HVI_EPT_W, deny_cb, NULL, &n) ==
            HVI_OK);
    CHECK(hvi_hook_count(f.e) > 0);
    CHECK_OK(hvi_detach(f.e));
    CHECK_EQ_U64(hvi_hook_count(f.e), 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    CHECK_EQ_U64(hvi_sim_watchpoint_count(f.sim), 0);
    hvi_hook_object_free(f.e, o);
    fx_fini(&f);
}

HVI_TEST(object_regions_ept) { run(0); }
HVI_TEST(object_regions_watchpoints) { run(HVI_SIM_CAPS_QEMU_LIKE); }

HVI_TEST(object_left_for_engine_free)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    int n = 0;
    hvi_hook_object *o;
    REQUIRE(hvi_hook_object_new(f.e, "x", &o) == HVI_OK);
    REQUIRE(hvi_hook_object_add_region(f.e, o, 0, FX_GVA, 0x3000, HVI_EPT_W, deny_cb, NULL, &n) ==
            HVI_OK);
    size_t hooks = hvi_hook_count(f.e);
    CHECK(hvi_hook_object_add_region(f.e, o, 0, 0x7000, 0x10, HVI_EPT_W, deny_cb, NULL, &n) ==
          HVI_OK); /* with EPT a non-present page is hooked when it appears */
    CHECK(hvi_hook_count(f.e) > hooks);
    fx_fini(&f); /* engine free releases the object (ASan checks) */
}

HVI_TEST_MAIN()
