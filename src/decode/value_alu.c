/*
 * hvi decode layer — written values of the shift, rotate, double-shift, SETcc and MOVBE stores
 * (the cases of hvi_insn_write_value() that need more than "source operand" or one ALU step).
 *
 * Counts are masked as the CPU masks them (5 bits, 6 for 64-bit operands; RCL/RCR of 8/16-bit
 * operands then modulo 9/17). Results the SDM leaves undefined (SHLD/SHRD of a 16-bit operand
 * by more than 16) are refused with HVI_E_UNSUPPORTED rather than guessed.
 */
#include "decode_priv.h"

#define CF_BIT (1ull << 0)
#define PF_BIT (1ull << 2)
#define ZF_BIT (1ull << 6)
#define SF_BIT (1ull << 7)
#define OF_BIT (1ull << 11)

/* Explicit operands other than the destination: the register source and the count. */
static hvi_status operands(const struct hvi_zydis_form *f, const hvi_regs *regs, int dst,
                           uint64_t *src, bool *have_src, uint64_t *count)
{
    *have_src = false;
    *count = 1; /* the D0/D1 forms: an implicit count of one */
    for (uint32_t i = 0; i < f->zi.operand_count_visible; i++) {
        const ZydisDecodedOperand *op = &f->ops[i];
        if ((int)i == dst)
            continue;
        if (op->type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
            *count = op->imm.value.u;
        } else if (op->type == ZYDIS_OPERAND_TYPE_REGISTER) {
            uint64_t v = 0;
            hvi_status st = hvi_decode_gpr_value(regs, op->reg.value, &v);
            if (st != HVI_OK)
                return st;
            if (op->reg.value == ZYDIS_REGISTER_CL)
                *count = v;
            else
                *src = v, *have_src = true;
        } else {
            return HVI_E_UNSUPPORTED;
        }
    }
    return HVI_OK;
}

static uint64_t rotate_carry(uint64_t v, uint64_t cf, uint32_t bits, uint32_t n, bool left)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t out;
        if (left) {
            out = (v >> (bits - 1)) & 1u;
            v = (v << 1) | cf;
        } else {
            out = v & 1u;
            v = (v >> 1) | (cf << (bits - 1));
        }
        cf = out;
    }
    return v;
}

static bool condition(ZydisMnemonic m, uint64_t fl, bool *known)
{
    bool cf = fl & CF_BIT, zf = fl & ZF_BIT, sf = fl & SF_BIT, of = fl & OF_BIT, pf = fl & PF_BIT;
    *known = true;
    switch (m) {
    case ZYDIS_MNEMONIC_SETO: return of;
    case ZYDIS_MNEMONIC_SETNO: return !of;
    case ZYDIS_MNEMONIC_SETB: return cf;
    case ZYDIS_MNEMONIC_SETNB: return !cf;
    case ZYDIS_MNEMONIC_SETZ: return zf;
    case ZYDIS_MNEMONIC_SETNZ: return !zf;
    case ZYDIS_MNEMONIC_SETBE: return cf || zf;
    case ZYDIS_MNEMONIC_SETNBE: return !cf && !zf;
    case ZYDIS_MNEMONIC_SETS: return sf;
    case ZYDIS_MNEMONIC_SETNS: return !sf;
    case ZYDIS_MNEMONIC_SETP: return pf;
    case ZYDIS_MNEMONIC_SETNP: return !pf;
    case ZYDIS_MNEMONIC_SETL: return sf != of;
    case ZYDIS_MNEMONIC_SETNL: return sf == of;
    case ZYDIS_MNEMONIC_SETLE: return zf || sf != of;
    case ZYDIS_MNEMONIC_SETNLE: return !zf && sf == of;
    default: *known = false; return false;
    }
}

static uint64_t bswap(uint64_t v, uint32_t size)
{
    uint64_t r = 0;
    for (uint32_t i = 0; i < size; i++)
        r |= ((v >> (8 * i)) & 0xffu) << (8 * (size - 1 - i));
    return r;
}

hvi_status hvi_decode_alu_value(const struct hvi_zydis_form *f, const hvi_regs *regs, int dst,
                                uint32_t size, uint64_t old, uint64_t *out)
{
    ZydisMnemonic m = f->zi.mnemonic;
    bool set_known = false;
    bool set = condition(m, regs->rflags, &set_known);
    if (set_known) {
        *out = set ? 1u : 0u;
        return HVI_OK;
    }
    if (size == 0 || size > 8)
        return HVI_E_UNSUPPORTED;
    uint32_t bits = size * 8u;
    uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1u, src = 0, cnt = 1;
    bool have_src = false;
    hvi_status st = operands(f, regs, dst, &src, &have_src, &cnt);
    if (st != HVI_OK)
        return st;
    old &= mask;
    if (m == ZYDIS_MNEMONIC_MOVBE) {
        if (!have_src)
            return HVI_E_UNSUPPORTED;
        *out = bswap(src & mask, size);
        return HVI_OK;
    }
    uint32_t c = (uint32_t)(cnt & (bits == 64 ? 0x3fu : 0x1fu));
    switch (m) {
    case ZYDIS_MNEMONIC_SHL: *out = (old << c) & mask; return HVI_OK;
    case ZYDIS_MNEMONIC_SHR: *out = old >> c; return HVI_OK;
    case ZYDIS_MNEMONIC_SAR: {
        int64_t s = (int64_t)(old << (64 - bits)) >> (64 - bits); /* sign-extend */
        *out = (uint64_t)(s >> c) & mask;
        return HVI_OK;
    }
    case ZYDIS_MNEMONIC_ROL:
    case ZYDIS_MNEMONIC_ROR: {
        uint32_t r = c % bits;
        if (m == ZYDIS_MNEMONIC_ROR && r)
            r = bits - r;
        *out = r ? ((old << r) | (old >> (bits - r))) & mask : old;
        return HVI_OK;
    }
    case ZYDIS_MNEMONIC_RCL:
    case ZYDIS_MNEMONIC_RCR:
        if (bits < 32)
            c %= bits + 1u;
        *out = rotate_carry(old, regs->rflags & CF_BIT, bits, c, m == ZYDIS_MNEMONIC_RCL) & mask;
        return HVI_OK;
    case ZYDIS_MNEMONIC_SHLD:
    case ZYDIS_MNEMONIC_SHRD:
        if (!have_src || c > bits)
            return HVI_E_UNSUPPORTED; /* 16-bit operand shifted by more than 16: undefined */
        if (c == 0) {
            *out = old;
        } else if (m == ZYDIS_MNEMONIC_SHLD) {
            *out = ((old << c) | ((src & mask) >> (bits - c))) & mask;
        } else {
            *out = ((old >> c) | ((src & mask) << (bits - c))) & mask;
        }
        return HVI_OK;
    default:
        return HVI_E_NOT_FOUND;
    }
}
