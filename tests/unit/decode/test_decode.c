/*
 * Decoder tests on real instruction bytes (assembled with GNU as, disassembled with objdump).
 */
#include <string.h>

#include "harness.h"
#include "hvi/decode.h"

static hvi_regs base_regs(void)
{
    hvi_regs r;
    memset(&r, 0, sizeof(r));
    r.valid = HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_FSGS;
    r.efer = 1u << 10 | 1u << 8;
    r.cr0 = 0x80050033;
    for (int i = 0; i < HVI_GPR_COUNT; i++)
        r.gpr[i] = 0x1000u * (uint64_t)(i + 1);
    r.rip = 0xffffffff81000000ull;
    r.fs_base = 0x7f0000000000ull;
    r.gs_base = 0xffff888000000000ull;
    return r;
}

static hvi_status dec(const uint8_t *b, size_t n, const hvi_regs *r, hvi_insn *i)
{
    return hvi_decode_buffer(b, n, 64, r->rip, r, i);
}

HVI_TEST(mov_store_explicit_operand)
{
    /* 48 89 58 08    mov qword ptr [rax+0x8], rbx */
    static const uint8_t b[] = {0x48, 0x89, 0x58, 0x08};
    hvi_regs r = base_regs();
    hvi_insn i;
    REQUIRE(dec(b, sizeof(b), &r, &i) == HVI_OK);
    CHECK_EQ_U64(i.len, 4);
    CHECK_STR(i.text, "mov [rax+0x08], rbx");
    REQUIRE(i.access_count == 1);
    CHECK_EQ_U64(i.access[0].gva, r.gpr[HVI_RAX] + 8);
    CHECK_EQ_U64(i.access[0].size, 8);
    CHECK_EQ_U64(i.access[0].access, HVI_EPT_W);
    CHECK(!i.access[0].implicit);
    CHECK_EQ_U64(hvi_insn_write_size(&i), 8);
    uint8_t old[8] = {0}, nv[16];
    size_t n = 0;
    CHECK_OK(hvi_insn_write_value(&i, &r, old, sizeof(old), nv, &n));
    CHECK_EQ_U64(n, 8);
    uint64_t v;
    memcpy(&v, nv, 8);
    CHECK_EQ_U64(v, r.gpr[HVI_RBX]);
}

HVI_TEST(push_call_write_below_rsp)
{
    /* 53  push rbx */
    static const uint8_t push[] = {0x53};
    /* e8 00 00 00 00  call +0 */
    static const uint8_t call[] = {0xe8, 0, 0, 0, 0};
    hvi_regs r = base_regs();
    hvi_insn i;
    REQUIRE(dec(push, sizeof(push), &r, &i) == HVI_OK);
    int w = hvi_insn_write_access(&i);
    REQUIRE(w >= 0);
    CHECK(i.access[w].implicit);
    CHECK_EQ_U64(i.access[w].gva, r.gpr[HVI_RSP] - 8);
    CHECK_EQ_U64(i.access[w].size, 8);
    uint8_t old[8] = {0}, nv[16];
    size_t n = 0;
    CHECK_OK(hvi_insn_write_value(&i, &r, old, 8, nv, &n));
    uint64_t v;
    memcpy(&v, nv, 8);
    CHECK_EQ_U64(v, r.gpr[HVI_RBX]);

    REQUIRE(dec(call, sizeof(call), &r, &i) == HVI_OK);
    w = hvi_insn_write_access(&i);
    REQUIRE(w >= 0);
    CHECK_EQ_U64(i.access[w].gva, r.gpr[HVI_RSP] - 8);
    CHECK_OK(hvi_insn_write_value(&i, &r, old, 8, nv, &n));
    memcpy(&v, nv, 8);
    CHECK_EQ_U64(v, r.rip + 5);
}

HVI_TEST(ret_pop_read_stack)
{
    /* c3  ret ; 59  pop rcx */
    static const uint8_t ret[] = {0xc3}, pop[] = {0x59};
    hvi_regs r = base_regs();
    hvi_insn i;
    REQUIRE(dec(ret, 1, &r, &i) == HVI_OK);
    REQUIRE(i.access_count >= 1);
    CHECK_EQ_U64(i.access[0].gva, r.gpr[HVI_RSP]);
    CHECK_EQ_U64(i.access[0].access, HVI_EPT_R);
    CHECK(hvi_insn_write_access(&i) < 0);
    REQUIRE(dec(pop, 1, &r, &i) == HVI_OK);
    REQUIRE(i.access_count >= 1);
    CHECK_EQ_U64(i.access[0].gva, r.gpr[HVI_RSP]);
    uint8_t nv[16];
    size_t n;
    CHECK_STATUS(hvi_insn_write_value(&i, &r, nv, 8, nv, &n), HVI_E_INVAL);
}

HVI_TEST(string_instructions)
{
    /* f3 a4  rep movsb ; 48 ab  stosq */
    static const uint8_t movs[] = {0xf3, 0xa4}, stos[] = {0x48, 0xab};
    hvi_regs r = base_regs();
    hvi_insn i;
    REQUIRE(dec(movs, 2, &r, &i) == HVI_OK);
    CHECK(i.rep);
    REQUIRE(i.access_count == 2);
    bool saw_src = false, saw_dst = false;
    for (uint32_t k = 0; k < i.access_count; k++) {
        CHECK(i.access[k].implicit);
        CHECK_EQ_U64(i.access[k].size, 1);
        if (i.access[k].access & HVI_EPT_W) {
            saw_dst = i.access[k].gva == r.gpr[HVI_RDI] && i.access[k].seg == HVI_ES;
        } else {
            saw_src = i.access[k].gva == r.gpr[HVI_RSI];
        }
    }
    CHECK(saw_src && saw_dst);
    uint8_t nv[16];
    size_t n;
    CHECK_STATUS(hvi_insn_write_value(&i, &r, nv, 8, nv, &n), HVI_E_UNSUPPORTED);

    REQUIRE(dec(stos, 2, &r, &i) == HVI_OK);
    int w = hvi_insn_write_access(&i);
    REQUIRE(w >= 0);
    CHECK_EQ_U64(i.access[w].gva, r.gpr[HVI_RDI]);
    uint8_t old[8] = {0};
    CHECK_OK(hvi_insn_write_value(&i, &r, old, 8, nv, &n));
    uint64_t v;
    memcpy(&v, nv, 8);
    CHECK_EQ_U64(v, r.gpr[HVI_RAX]);
}

static uint64_t wv(const uint8_t *b, size_t blen, hvi_regs *r, uint64_t old, size_t *n)
{
    hvi_insn i;
    uint8_t o[16] = {0}, nv[16] = {0};
    memcpy(o, &old, 8);
    *n = 0;
    if (hvi_decode_buffer(b, blen, 64, r->rip, r, &i) != HVI_OK)
        return 0xdeadull;
    if (hvi_insn_write_value(&i, r, o, sizeof(o), nv, n) != HVI_OK)
        return 0xbadull;
    uint64_t v = 0;
    memcpy(&v, nv, *n < 8 ? *n : 8);
    return v;
}

HVI_TEST(read_modify_write_values)
{
    hvi_regs r = base_regs();
    size_t n;
    /* f0 48 0f b1 0f  lock cmpxchg [rdi], rcx */
    static const uint8_t cx[] = {0xf0, 0x48, 0x0f, 0xb1, 0x0f};
    CHECK_EQ_U64(wv(cx, sizeof(cx), &r, r.gpr[HVI_RAX], &n), r.gpr[HVI_RCX]);
    CHECK_EQ_U64(wv(cx, sizeof(cx), &r, 0x55, &n), 0x55);
    /* 83 44 8e 10 7f  add dword ptr [rsi+rcx*4+0x10], 0x7f */
    static const uint8_t add[] = {0x83, 0x44, 0x8e, 0x10, 0x7f};
    CHECK_EQ_U64(wv(add, sizeof(add), &r, 0xffffffff, &n), 0x7e);
    CHECK_EQ_U64(n, 4);
    /* 30 22  xor byte ptr [rdx], ah  (ah = 0x30 with rax = 0x1000*1? rax=0x1000 -> ah=0x10) */
    static const uint8_t x[] = {0x30, 0x22};
    CHECK_EQ_U64(wv(x, 2, &r, 0xff, &n), 0xff ^ 0x10);
    CHECK_EQ_U64(n, 1);
    /* 48 0f ba 2b 05  bts qword ptr [rbx], 5 */
    static const uint8_t bts[] = {0x48, 0x0f, 0xba, 0x2b, 0x05};
    CHECK_EQ_U64(wv(bts, 5, &r, 0, &n), 0x20);
    /* 66 0f ba 30 03  btr word ptr [rax], 3 */
    static const uint8_t btr[] = {0x66, 0x0f, 0xba, 0x30, 0x03};
    CHECK_EQ_U64(wv(btr, 5, &r, 0xffff, &n), 0xfff7);
    CHECK_EQ_U64(n, 2);
    /* 48 0f c1 03  xadd qword ptr [rbx], rax */
    static const uint8_t xadd[] = {0x48, 0x0f, 0xc1, 0x03};
    CHECK_EQ_U64(wv(xadd, 4, &r, 5, &n), 5 + r.gpr[HVI_RAX]);
    /* 66 f7 1b  neg word ptr [rbx] */
    static const uint8_t neg[] = {0x66, 0xf7, 0x1b};
    CHECK_EQ_U64(wv(neg, 3, &r, 1, &n), 0xffff);
    /* 19 0b  sbb dword ptr [rbx], ecx  (CF set) */
    static const uint8_t sbb[] = {0x19, 0x0b};
    r.rflags = 1;
    CHECK_EQ_U64(wv(sbb, 2, &r, 0x10000, &n), 0x10000 - r.gpr[HVI_RCX] - 1);
    r.rflags = 0;
    /* 0f c3 0b  movnti dword ptr [rbx], ecx */
    static const uint8_t nti[] = {0x0f, 0xc3, 0x0b};
    CHECK_EQ_U64(wv(nti, 3, &r, 0, &n), r.gpr[HVI_RCX] & 0xffffffff);
    /* 48 ff 00  inc qword ptr [rax] ; f7 10  not dword ptr [rax] */
    static const uint8_t inc[] = {0x48, 0xff, 0x00}, not_[] = {0xf7, 0x10};
    CHECK_EQ_U64(wv(inc, 3, &r, 41, &n), 42);
    CHECK_EQ_U64(wv(not_, 2, &r, 0x0f0f0f0f, &n), 0xf0f0f0f0);
    /* 48 87 10  xchg qword ptr [rax], rdx */
    static const uint8_t xchg[] = {0x48, 0x87, 0x10};
    CHECK_EQ_U64(wv(xchg, 3, &r, 0, &n), r.gpr[HVI_RDX]);
}

HVI_TEST(shift_rotate_setcc_movbe_values)
{
    hvi_regs r = base_regs();
    size_t n;
    r.gpr[HVI_RCX] = 0x44; /* CL = 0x44: 4 after the 5/6-bit count mask */
    r.gpr[HVI_RDX] = 0xaabbccdd11223344ull;
    static const uint8_t shl[] = {0xc1, 0x23, 0x04};       /* shl dword [rbx], 4 */
    CHECK_EQ_U64(wv(shl, 3, &r, 0x80000001u, &n), 0x10);
    CHECK_EQ_U64(n, 4);
    static const uint8_t shr[] = {0x48, 0xd3, 0x2b};       /* shr qword [rbx], cl */
    CHECK_EQ_U64(wv(shr, 3, &r, 0xf000000000000000ull, &n), 0x0f00000000000000ull);
    static const uint8_t sar1[] = {0xd0, 0x3b};            /* sar byte [rbx], 1 */
    CHECK_EQ_U64(wv(sar1, 2, &r, 0x80, &n), 0xc0);
    CHECK_EQ_U64(n, 1);
    static const uint8_t sar3[] = {0x66, 0xc1, 0x3b, 0x03}; /* sar word [rbx], 3 */
    CHECK_EQ_U64(wv(sar3, 4, &r, 0x8000, &n), 0xf000);
    static const uint8_t rol[] = {0xc1, 0x03, 0x08};       /* rol dword [rbx], 8 */
    CHECK_EQ_U64(wv(rol, 3, &r, 0x12345678, &n), 0x34567812);
    static const uint8_t ror[] = {0x48, 0xc1, 0x0b, 0x04}; /* ror qword [rbx], 4 */
    CHECK_EQ_U64(wv(ror, 4, &r, 1, &n), 0x1000000000000000ull);
    static const uint8_t rolb[] = {0xd2, 0x03};            /* rol byte [rbx], cl */
    CHECK_EQ_U64(wv(rolb, 2, &r, 0x12, &n), 0x21);
    static const uint8_t rcl[] = {0xd0, 0x13};             /* rcl byte [rbx], 1 */
    r.rflags = 1;                                          /* CF rotates in */
    CHECK_EQ_U64(wv(rcl, 2, &r, 0x80, &n), 0x01);
    r.rflags = 0;
    CHECK_EQ_U64(wv(rcl, 2, &r, 0x80, &n), 0x00);
    static const uint8_t rcr[] = {0x66, 0xd3, 0x1b};       /* rcr word [rbx], cl (17-bit) */
    CHECK_EQ_U64(wv(rcr, 3, &r, 0x0001, &n), 0x2000);
    static const uint8_t shld[] = {0x0f, 0xa4, 0x13, 0x08}; /* shld dword [rbx], edx, 8 */
    CHECK_EQ_U64(wv(shld, 4, &r, 0x12345678, &n), 0x34567811);
    static const uint8_t shrd[] = {0x48, 0x0f, 0xad, 0x13}; /* shrd qword [rbx], rdx, cl */
    CHECK_EQ_U64(wv(shrd, 4, &r, 0x10, &n), 0x4000000000000001ull);
    static const uint8_t sete[] = {0x0f, 0x94, 0x03};      /* sete byte [rbx] */
    r.rflags = 1u << 6;
    CHECK_EQ_U64(wv(sete, 3, &r, 0x77, &n), 1);
    CHECK_EQ_U64(n, 1);
    r.rflags = 0;
    CHECK_EQ_U64(wv(sete, 3, &r, 0x77, &n), 0);
    static const uint8_t setl[] = {0x0f, 0x9c, 0x03};      /* setl byte [rbx]: SF != OF */
    r.rflags = 1u << 7;
    CHECK_EQ_U64(wv(setl, 3, &r, 0, &n), 1);
    r.rflags = (1u << 7) | (1u << 11);
    CHECK_EQ_U64(wv(setl, 3, &r, 0, &n), 0);
    r.rflags = 0;
    static const uint8_t movbe[] = {0x0f, 0x38, 0xf1, 0x13}; /* movbe dword [rbx], edx */
    CHECK_EQ_U64(wv(movbe, 4, &r, 0, &n), 0x44332211);
    /* shld word [rbx], dx, 20: a 16-bit operand shifted by more than 16 is undefined */
    static const uint8_t shldw[] = {0x66, 0x0f, 0xa4, 0x13, 0x14};
    CHECK_EQ_U64(wv(shldw, 5, &r, 0x1234, &n), 0xbad);
}

HVI_TEST(cmpxchg8b_16b)
{
    hvi_regs r = base_regs();
    hvi_insn i;
    /* 0f c7 0f  cmpxchg8b qword ptr [rdi] */
    static const uint8_t c8[] = {0x0f, 0xc7, 0x0f};
    REQUIRE(dec(c8, 3, &r, &i) == HVI_OK);
    uint64_t old = (r.gpr[HVI_RDX] << 32) | r.gpr[HVI_RAX];
    uint8_t o[16], nv[16];
    size_t n;
    memcpy(o, &old, 8);
    CHECK_OK(hvi_insn_write_value(&i, &r, o, 8, nv, &n));
    uint64_t v;
    memcpy(&v, nv, 8);
    CHECK_EQ_U64(v, (r.gpr[HVI_RCX] << 32) | r.gpr[HVI_RBX]);
    /* 48 0f c7 0f  cmpxchg16b [rdi] */
    static const uint8_t c16[] = {0x48, 0x0f, 0xc7, 0x0f};
    REQUIRE(dec(c16, 4, &r, &i) == HVI_OK);
    memcpy(o, &r.gpr[HVI_RAX], 8);
    memcpy(o + 8, &r.gpr[HVI_RDX], 8);
    CHECK_OK(hvi_insn_write_value(&i, &r, o, 16, nv, &n));
    CHECK_EQ_U64(n, 16);
    memcpy(&v, nv + 8, 8);
    CHECK_EQ_U64(v, r.gpr[HVI_RCX]);
    o[0] ^= 1; /* compare fails: memory keeps its value */
    CHECK_OK(hvi_insn_write_value(&i, &r, o, 16, nv, &n));
    CHECK(memcmp(nv, o, 16) == 0);
}

HVI_TEST(segment_bases_and_rip_relative)
{
    hvi_regs r = base_regs();
    hvi_insn i;
    /* 65 48 89 04 25 28 00 00 00  mov qword ptr gs:[0x28], rax */
    static const uint8_t gs[] = {0x65, 0x48, 0x89, 0x04, 0x25, 0x28, 0, 0, 0};
    REQUIRE(dec(gs, sizeof(gs), &r, &i) == HVI_OK);
    CHECK_EQ_U64(i.access[0].gva, r.gs_base + 0x28);
    CHECK_EQ_U64(i.access[0].seg, HVI_GS);
    /* 64 48 8b 01  mov rax, qword ptr fs:[rcx] */
    static const uint8_t fs[] = {0x64, 0x48, 0x8b, 0x01};
    REQUIRE(dec(fs, 4, &r, &i) == HVI_OK);
    CHECK_EQ_U64(i.access[0].gva, r.fs_base + r.gpr[HVI_RCX]);
    CHECK_EQ_U64(i.access[0].access, HVI_EPT_R);
    /* c6 05 00 01 00 00 01  mov byte ptr [rip+0x100], 1 */
    static const uint8_t rel[] = {0xc6, 0x05, 0x00, 0x01, 0x00, 0x00, 0x01};
    REQUIRE(dec(rel, sizeof(rel), &r, &i) == HVI_OK);
    CHECK_EQ_U64(i.access[0].gva, r.rip + 7 + 0x100);
    size_t n;
    uint8_t o[8] = {0}, nv[16];
    CHECK_OK(hvi_insn_write_value(&i, &r, o, 8, nv, &n));
    CHECK_EQ_U64(n, 1);
    CHECK_EQ_U64(nv[0], 1);
}

HVI_TEST(sse_store_needs_xmm)
{
    hvi_regs r = base_regs();
    hvi_insn i;
    /* f3 0f 7f 08  movdqu xmmword ptr [rax], xmm1 */
    static const uint8_t b[] = {0xf3, 0x0f, 0x7f, 0x08};
    REQUIRE(dec(b, 4, &r, &i) == HVI_OK);
    CHECK_EQ_U64(hvi_insn_write_size(&i), 16);
    uint8_t o[16] = {0}, nv[16];
    size_t n;
    CHECK_STATUS(hvi_insn_write_value(&i, &r, o, 16, nv, &n), HVI_E_UNSUPPORTED);
}

HVI_TEST(compat_mode_segment_base)
{
    hvi_regs r = base_regs();
    r.valid |= HVI_REGS_SEGBASE;
    r.seg[HVI_DS].base = 0x10000;
    hvi_insn i;
    /* 89 18  mov dword ptr [eax], ebx  (32-bit code) */
    static const uint8_t b[] = {0x89, 0x18};
    REQUIRE(hvi_decode_buffer(b, 2, 32, 0x400000, &r, &i) == HVI_OK);
    CHECK_EQ_U64(i.access[0].gva, 0x10000 + (r.gpr[HVI_RAX] & 0xffffffff));
    CHECK_EQ_U64(i.access[0].size, 4);
}

HVI_TEST(bad_input)
{
    hvi_regs r = base_regs();
    hvi_insn i;
    /* 0f 0b is UD2 (valid); 0f ff is invalid; a truncated mov; 16 prefixes exceed 15 bytes */
    static const uint8_t inval[] = {0x0f, 0xff}, trunc[] = {0x48, 0x89};
    uint8_t prefixes[16];
    memset(prefixes, 0x66, sizeof(prefixes));
    CHECK_STATUS(dec(inval, 2, &r, &i), HVI_E_DECODE);
    CHECK_STATUS(dec(trunc, 2, &r, &i), HVI_E_DECODE);
    CHECK_STATUS(dec(prefixes, sizeof(prefixes), &r, &i), HVI_E_DECODE);
    CHECK_STATUS(hvi_decode_buffer(NULL, 2, 64, 0, NULL, &i), HVI_E_INVAL);
    CHECK_STATUS(hvi_decode_buffer(inval, 0, 64, 0, NULL, &i), HVI_E_INVAL);
    CHECK_STATUS(hvi_decode_buffer(inval, 2, 48, 0, NULL, &i), HVI_E_INVAL);
    /* without registers: accesses are listed but have no address */
    static const uint8_t mov[] = {0x48, 0x89, 0x58, 0x08};
    REQUIRE(hvi_decode_buffer(mov, 4, 64, 0, NULL, &i) == HVI_OK);
    CHECK(i.access_count == 1 && !i.access[0].addr_valid);
    uint8_t o[16] = {0}, nv[16];
    size_t n;
    CHECK_STATUS(hvi_insn_write_value(&i, &r, o, 4, nv, &n), HVI_E_INVAL); /* old too short */
}

HVI_TEST_MAIN()
