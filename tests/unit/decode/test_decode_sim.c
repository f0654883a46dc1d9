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

/* ---- write values that need the engine: SSE stores (XMM through the glue) and MOVS ---- */

static hvi_regs live_regs(struct fx *f)
{
    hvi_regs r = *f->regs;
    r.valid |= HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_SEG | HVI_REGS_FSGS;
    return r;
}

static hvi_status store_value(struct fx *f, const uint8_t *b, size_t n, uint8_t *out, size_t *len)
{
    hvi_regs r = live_regs(f);
    hvi_insn i;
    hvi_status st = hvi_decode_buffer(b, n, 64, r.rip, &r, &i);
    if (st != HVI_OK)
        return st;
    uint8_t old[16] = {0};
    return hvi_decode_write_value(f->e, 0, &i, &r, old, sizeof(old), out, len);
}

HVI_TEST(sse_store_values_come_from_the_xmm_registers)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    uint8_t x[16][16];
    for (uint32_t k = 0; k < 16; k++) {
        for (int j = 0; j < 16; j++)
            x[k][j] = (uint8_t)(k * 16 + j);
        REQUIRE(hvi_sim_set_xmm(f.sim, 0, k, x[k]) == HVI_OK);
    }
    f.regs->gpr[HVI_RAX] = FX_GVA + 0x100;
    static const uint8_t movdqu[] = {0xf3, 0x0f, 0x7f, 0x18};       /* movdqu [rax], xmm3 */
    static const uint8_t movhps[] = {0x0f, 0x17, 0x10};             /* movhps [rax], xmm2 */
    static const uint8_t movss[] = {0xf3, 0x0f, 0x11, 0x08};        /* movss [rax], xmm1 */
    static const uint8_t movsd[] = {0xf2, 0x0f, 0x11, 0x08};        /* movsd [rax], xmm1 */
    static const uint8_t pextrd[] = {0x66, 0x0f, 0x3a, 0x16, 0x20, 0x02}; /* pextrd [rax],xmm4,2 */
    static const uint8_t vmovdqu[] = {0xc5, 0xfa, 0x7f, 0x28};      /* vmovdqu [rax], xmm5 */
    static const uint8_t vmovdqu256[] = {0xc5, 0xfe, 0x7f, 0x28};   /* vmovdqu [rax], ymm5 */
    static const uint8_t movq[] = {0x66, 0x0f, 0xd6, 0x30};         /* movq [rax], xmm6 */
    uint8_t out[16];
    size_t n = 0;
    CHECK_OK(store_value(&f, movdqu, sizeof(movdqu), out, &n));
    CHECK_EQ_U64(n, 16);
    CHECK(memcmp(out, x[3], 16) == 0);
    CHECK_OK(store_value(&f, movhps, sizeof(movhps), out, &n));
    CHECK_EQ_U64(n, 8);
    CHECK(memcmp(out, x[2] + 8, 8) == 0);
    CHECK_OK(store_value(&f, movss, sizeof(movss), out, &n));
    CHECK_EQ_U64(n, 4);
    CHECK(memcmp(out, x[1], 4) == 0);
    CHECK_OK(store_value(&f, movsd, sizeof(movsd), out, &n));
    CHECK_EQ_U64(n, 8);
    CHECK(memcmp(out, x[1], 8) == 0);
    CHECK_OK(store_value(&f, pextrd, sizeof(pextrd), out, &n));
    CHECK_EQ_U64(n, 4);
    CHECK(memcmp(out, x[4] + 8, 4) == 0);
    CHECK_OK(store_value(&f, vmovdqu, sizeof(vmovdqu), out, &n));
    CHECK_EQ_U64(n, 16);
    CHECK(memcmp(out, x[5], 16) == 0);
    CHECK_OK(store_value(&f, movq, sizeof(movq), out, &n));
    CHECK_EQ_U64(n, 8);
    CHECK(memcmp(out, x[6], 8) == 0);
    /* 32-byte stores do not fit the 16-byte value */
    CHECK_STATUS(store_value(&f, vmovdqu256, sizeof(vmovdqu256), out, &n), HVI_E_UNSUPPORTED);
    /* the register read fails in the glue: a backend error, no value */
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_GET_VEC_REG, 0, HVI_E_BACKEND) == HVI_OK);
    CHECK_STATUS(store_value(&f, movdqu, sizeof(movdqu), out, &n), HVI_E_BACKEND);
    REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_GET_VEC_REG, 0, HVI_OK) == HVI_OK);
    fx_fini(&f);
    /* a backend without vector registers: unsupported, not a wrong value */
    REQUIRE(fx_init(&f, HVI_SIM_CAPS_ALL & ~(uint64_t)HVI_CAP_VEC_REGS));
    f.regs->gpr[HVI_RAX] = FX_GVA + 0x100;
    CHECK_STATUS(store_value(&f, movdqu, sizeof(movdqu), out, &n), HVI_E_UNSUPPORTED);
    fx_fini(&f);
}

HVI_TEST(movs_store_value_is_read_from_the_source)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    static const uint8_t movsq[] = {0x48, 0xa5}; /* movsq */
    static const uint8_t movsb[] = {0xa4};       /* movsb */
    uint8_t src[8] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
    hvi_sim_phys_write(f.sim, f.gpa[1] + 0x40, src, sizeof(src));
    f.regs->gpr[HVI_RSI] = FX_GVA + 4096 + 0x40;
    f.regs->gpr[HVI_RDI] = FX_GVA + 0x200;
    uint8_t out[16];
    size_t n = 0;
    CHECK_OK(store_value(&f, movsq, sizeof(movsq), out, &n));
    CHECK_EQ_U64(n, 8);
    CHECK(memcmp(out, src, 8) == 0);
    f.regs->gpr[HVI_RSI] += 3;
    CHECK_OK(store_value(&f, movsb, sizeof(movsb), out, &n));
    CHECK_EQ_U64(n, 1);
    CHECK_EQ_U64(out[0], 0x44);
    /* the source is not mapped: the memory layer's status, no value */
    f.regs->gpr[HVI_RSI] = 0x1000;
    CHECK(store_value(&f, movsq, sizeof(movsq), out, &n) != HVI_OK);
    fx_fini(&f);
}

static uint32_t deny_record_cb(hvi_engine *e, hvi_hook *h, const hvi_hook_access *a, void *c)
{
    (void)e, (void)h;
    *(hvi_hook_access *)c = *a;
    return HVI_ACTION_DENY;
}

HVI_TEST(write_hook_sees_the_sse_value_and_denies_it)
{
    struct fx f;
    REQUIRE(fx_init(&f, 0));
    uint8_t x3[16];
    for (int j = 0; j < 16; j++)
        x3[j] = (uint8_t)(0xa0 + j);
    REQUIRE(hvi_sim_set_xmm(f.sim, 0, 3, x3) == HVI_OK);
    static const uint8_t movdqu[] = {0xf3, 0x0f, 0x7f, 0x18}; /* movdqu [rax], xmm3 */
    hvi_hook_access seen;
    memset(&seen, 0, sizeof(seen));
    hvi_hook *h;
    REQUIRE(hvi_hook_gpa_add(f.e, f.gpa[0] + 0x100, 16, HVI_EPT_W, deny_record_cb, &seen, &h) ==
            HVI_OK);
    f.regs->gpr[HVI_RAX] = FX_GVA + 0x100;
    uint8_t before[16], after[16];
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x100, before, 16);
    hvi_event_reply rep;
    CHECK_OK(hvi_sim_guest_write(f.sim, 0, FX_GVA + 0x100, x3, 16, movdqu, sizeof(movdqu), &rep));
    CHECK(seen.values_known);
    CHECK(memcmp(seen.new_bytes, x3, 16) == 0);
    CHECK(memcmp(seen.old_bytes, before, 16) == 0);
    hvi_sim_phys_read(f.sim, f.gpa[0] + 0x100, after, 16);
    CHECK(memcmp(before, after, 16) == 0); /* denied: not written */
    CHECK_OK(hvi_hook_remove(f.e, h));
    fx_fini(&f);
}
