/*
 * Decoding guest code on the simulator: at RIP through the page tables, the per-RIP cache, and
 * its invalidation when the code changes or its page is written.
 */
#include <string.h>

#include "harness.h"
#include "hook_fixture.h"
#include "hvi/decode.h"

/* 48 89 58 08    mov qword ptr [rax+0x8], rbx */
static const uint8_t MOV[] = {0x48, 0x89, 0x58, 0x08};
/* 48 31 18       xor qword ptr [rax], rbx */
static const uint8_t XOR[] = {0x48, 0x31, 0x18};

static uint32_t allow_cb(hvi_engine *e, hvi_hook *h, const hvi_hook_access *a, void *c)
{
    (void)e, (void)h, (void)a, (void)c;
    return HVI_ACTION_ALLOW;
}

HVI_TEST(decode_at_rip_cache_and_invalidation)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    hvi_gva code = FX_GVA + 3 * 4096 + 0x100;
    hvi_sim_phys_write(f.sim, f.gpa[3] + 0x100, MOV, sizeof(MOV));
    f.regs->rip = code;
    f.regs->gpr[HVI_RAX] = FX_GVA + 0x40;
    hvi_insn i;
    uint64_t hits, misses;
    REQUIRE(hvi_decode_rip(f.e, 0, NULL, &i) == HVI_OK);
    CHECK_STR(i.text, "mov [rax+0x08], rbx");
    CHECK_EQ_U64(i.access[0].gva, FX_GVA + 0x48);
    REQUIRE(hvi_decode_rip(f.e, 0, NULL, &i) == HVI_OK);
    hvi_decode_cache_stats(f.e, &hits, &misses);
    CHECK_EQ_U64(hits, 1);
    CHECK_EQ_U64(misses, 1);
    /* registers change: the cached decode still computes fresh addresses */
    f.regs->gpr[HVI_RAX] = FX_GVA + 0x80;
    REQUIRE(hvi_decode_rip(f.e, 0, NULL, &i) == HVI_OK);
    CHECK_EQ_U64(i.access[0].gva, FX_GVA + 0x88);
    /* the code is rewritten behind the engine's back: never served stale */
    hvi_sim_phys_write(f.sim, f.gpa[3] + 0x100, XOR, sizeof(XOR));
    REQUIRE(hvi_decode_rip(f.e, 0, NULL, &i) == HVI_OK);
    CHECK_STR(i.text, "xor [rax], rbx");
    hvi_decode_cache_stats(f.e, &hits, &misses);
    CHECK_EQ_U64(misses, 2);
    /* explicit invalidation of the code frame */
    hvi_decode_invalidate_gpa(f.e, f.gpa[3] + 0x800);
    REQUIRE(hvi_decode_rip(f.e, 0, NULL, &i) == HVI_OK);
    hvi_decode_cache_stats(f.e, &hits, &misses);
    CHECK_EQ_U64(misses, 3);
    /* an allowed write to a hooked code page invalidates its decodes */
    hvi_hook *h;
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[3], 4096, HVI_EPT_W, allow_cb, NULL, &h) == HVI_OK);
    REQUIRE(hvi_decode_rip(f.e, 0, NULL, &i) == HVI_OK); /* hit */
    f.regs->rip = FX_GVA + 3 * 4096 + 0x200;
    hvi_sim_phys_write(f.sim, f.gpa[3] + 0x200, MOV, sizeof(MOV));
    f.regs->gpr[HVI_RAX] = code + 0x10 - 8;
    uint64_t v = 0x9090909090909090ull;
    hvi_event_reply rep;
    f.regs->gpr[HVI_RBX] = v;
    CHECK_OK(hvi_sim_guest_write(f.sim, 0, code + 0x10, &v, 8, NULL, 0, &rep));
    hvi_decode_cache_stats(f.e, &hits, &misses);
    uint64_t m0 = misses;
    f.regs->rip = code;
    REQUIRE(hvi_decode_rip(f.e, 0, NULL, &i) == HVI_OK);
    hvi_decode_cache_stats(f.e, &hits, &misses);
    CHECK_EQ_U64(misses, m0 + 1);
    CHECK_OK(hvi_hook_remove(f.e, h));
    /* unmapped RIP */
    f.regs->rip = 0x7000;
    CHECK_STATUS(hvi_decode_rip(f.e, 0, NULL, &i), HVI_E_NOT_PRESENT);
    fx_fini(&f);
}

HVI_TEST(decode_at_gva_end_of_mapping)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    /* a 3-byte instruction in the last bytes of the last mapped page: the fetch is shortened */
    hvi_gva at = FX_GVA + 4 * 4096 - 3;
    hvi_sim_phys_write(f.sim, f.gpa[3] + 4093, XOR, sizeof(XOR));
    hvi_insn i;
    CHECK_OK(hvi_decode_gva(f.e, 0, at, 64, NULL, &i));
    CHECK_EQ_U64(i.len, 3);
    /* a 4-byte one that would run into the unmapped page */
    hvi_sim_phys_write(f.sim, f.gpa[3] + 4093, MOV, 3);
    CHECK_STATUS(hvi_decode_gva(f.e, 0, at, 64, NULL, &i), HVI_E_DECODE);
    fx_fini(&f);
}

HVI_TEST_MAIN()
