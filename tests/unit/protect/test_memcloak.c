/*
 * memcloak on the simulator: the engine patches guest memory; guest loads still see the original
 * bytes (emulated), guest writes to the cloaked bytes are denied (also in log-only mode).
 */
#include <string.h>

#include "harness.h"
#include "hook_fixture.h"
#include "hvi/protect.h"

/* 48 8b 40 08    mov rax, qword ptr [rax+0x8] */
static const uint8_t LOAD[] = {0x48, 0x8b, 0x40, 0x08};
/* 0f b6 40 0a    movzx eax, byte ptr [rax+0xa] */
static const uint8_t LOADB[] = {0x0f, 0xb6, 0x40, 0x0a};
/* ff 30          push qword ptr [rax] (reads memory, not emulated) */
static const uint8_t PUSHM[] = {0xff, 0x30};
/* 48 89 58 08    mov qword ptr [rax+0x8], rbx */
static const uint8_t STORE[] = {0x48, 0x89, 0x58, 0x08};

static int writes;
static void on_write(hvi_engine *e, hvi_memcloak *c, const hvi_hook_access *a, void *ctx)
{
    (void)e, (void)c, (void)a, (void)ctx;
    writes++;
}

HVI_TEST(cloaked_bytes_read_original_and_reject_writes)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    const uint8_t patch[4] = {0xcc, 0xcc, 0xcc, 0xcc};
    uint8_t orig[16], mem[16];
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x100, orig, 16);
    hvi_memcloak *c;
    REQUIRE(hvi_memcloak_add(f.e, 0, FX_GVA + 0x102, 4, NULL, patch, HVI_MEMCLOAK_APPLY_PATCH,
                             on_write, NULL, &c) == HVI_OK);
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x100, mem, 16);
    CHECK(memcmp(mem + 2, patch, 4) == 0);
    CHECK(memcmp(mem, orig, 2) == 0 && memcmp(mem + 6, orig + 6, 10) == 0);

    /* an 8-byte load over the cloaked bytes returns the original ones */
    uint64_t rip = f.regs->rip, want, buf;
    memcpy(&want, orig, 8);
    f.regs->gpr[HVI_RAX] = FX_GVA + 0x100 - 8;
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_guest_read(f.sim, 0, FX_GVA + 0x100, &buf, 8, LOAD, 4, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    CHECK(rep.regs_changed);
    CHECK_EQ_U64(f.regs->gpr[HVI_RAX], want);
    CHECK_EQ_U64(f.regs->rip, rip + 4);
    /* a zero-extending byte load */
    f.regs->rip = rip;
    f.regs->gpr[HVI_RAX] = FX_GVA + 0x102 - 0xa;
    CHECK_OK(hvi_sim_guest_read(f.sim, 0, FX_GVA + 0x102, &buf, 1, LOADB, 4, &rep));
    CHECK_EQ_U64(f.regs->gpr[HVI_RAX], orig[2]);
    /* writes to cloaked bytes are denied, also in log-only mode */
    CHECK_OK(hvi_options_set(f.e, HVI_OPT_LOG_ONLY));
    f.regs->rip = rip;
    f.regs->gpr[HVI_RAX] = FX_GVA + 0x104 - 8;
    f.regs->gpr[HVI_RBX] = 0x1111111111111111ull;
    uint64_t v = f.regs->gpr[HVI_RBX];
    CHECK_OK(hvi_sim_guest_write(f.sim, 0, FX_GVA + 0x104, &v, 8, STORE, 4, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_DENY);
    CHECK_EQ_U64(writes, 1);
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x100, mem, 16);
    CHECK(memcmp(mem + 2, patch, 4) == 0);
    /* elsewhere in the page: untouched by the cloak */
    f.regs->rip = rip;
    f.regs->gpr[HVI_RAX] = FX_GVA + 0x200 - 8;
    CHECK_OK(hvi_sim_guest_write(f.sim, 0, FX_GVA + 0x200, &v, 8, STORE, 4, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    CHECK_EQ_U64(writes, 1);
    /* a reading instruction the engine does not emulate is let through */
    f.regs->rip = rip;
    f.regs->gpr[HVI_RAX] = FX_GVA + 0x100;
    CHECK_OK(hvi_sim_guest_read(f.sim, 0, FX_GVA + 0x100, &buf, 8, PUSHM, 2, &rep));
    CHECK_EQ_U64(rep.action, HVI_ACTION_ALLOW);
    /* uncloak restores the original bytes and the rights */
    CHECK_OK(hvi_memcloak_remove(f.e, c, HVI_MEMCLOAK_APPLY_PATCH));
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x100, mem, 16);
    CHECK(memcmp(mem, orig, 16) == 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    fx_fini(&f);
}

HVI_TEST(cloak_bad_input_and_detach)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    hvi_memcloak *c;
    const uint8_t patch[8] = {0};
    CHECK_STATUS(hvi_memcloak_add(f.e, 0, FX_GVA + 0xffe, 8192, NULL, NULL, 0, NULL, NULL, &c),
                 HVI_E_INVAL); /* three pages */
    CHECK_STATUS(hvi_memcloak_add(f.e, 0, 0x7000, 8, NULL, patch, HVI_MEMCLOAK_APPLY_PATCH, NULL,
                                  NULL, &c),
                 HVI_E_NOT_PRESENT);
    uint8_t orig[8], mem[8];
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0xffc, orig, 4);
    hvi_sim_phys_read(f.sim, f.gpa[1], orig + 4, 4);
    REQUIRE(hvi_memcloak_add(f.e, 0, FX_GVA + 0xffc, 8, NULL, patch, HVI_MEMCLOAK_APPLY_PATCH,
                             NULL, NULL, &c) == HVI_OK); /* over a page boundary */
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 2);
    CHECK_OK(hvi_detach(f.e));
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0xffc, mem, 4);
    hvi_sim_phys_read(f.sim, f.gpa[1], mem + 4, 4);
    CHECK(memcmp(mem, orig, 8) == 0);
    CHECK_EQ_U64(hvi_sim_restricted_frames(f.sim), 0);
    REQUIRE(hvi_memcloak_add(f.e, 0, FX_GVA + 0x10, 8, NULL, patch, 0, NULL, NULL, &c) == HVI_OK);
    fx_fini(&f); /* left for engine free (ASan checks the release) */
    REQUIRE(fx_init(&f, HVI_SIM_CAPS_QEMU_LIKE));
    CHECK_STATUS(hvi_memcloak_add(f.e, 0, FX_GVA, 8, NULL, NULL, 0, NULL, NULL, &c),
                 HVI_E_UNSUPPORTED);
    fx_fini(&f);
}

HVI_TEST_MAIN()
