/*
 * hvi decode layer — emulating simple loads with engine-supplied data (memcloak reads).
 */
#include <string.h>

#include "decode_priv.h"

static uint64_t sign_extend(uint64_t v, uint32_t bits)
{
    if (bits >= 64)
        return v;
    uint64_t m = 1ull << (bits - 1);
    v &= (1ull << bits) - 1;
    return (v ^ m) - m;
}

/* Write `v` to the GPR named by reg with the architectural width rules. */
static hvi_status set_gpr(hvi_regs *regs, ZydisRegister reg, uint64_t v)
{
    ZydisRegisterClass cls = ZydisRegisterGetClass(reg);
    ZydisRegister big = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, reg);
    ZyanI8 id = ZydisRegisterGetId(big);
    if (ZydisRegisterGetClass(big) != ZYDIS_REGCLASS_GPR64 || id < 0 || id >= HVI_GPR_COUNT)
        return HVI_E_UNSUPPORTED;
    uint64_t *r = &regs->gpr[id];
    switch (cls) {
    case ZYDIS_REGCLASS_GPR64: *r = v; break;
    case ZYDIS_REGCLASS_GPR32: *r = v & 0xffffffffu; break;
    case ZYDIS_REGCLASS_GPR16: *r = (*r & ~0xffffull) | (v & 0xffff); break;
    case ZYDIS_REGCLASS_GPR8:
        if (reg == ZYDIS_REGISTER_AH || reg == ZYDIS_REGISTER_CH || reg == ZYDIS_REGISTER_DH ||
            reg == ZYDIS_REGISTER_BH)
            *r = (*r & ~0xff00ull) | ((v & 0xff) << 8);
        else
            *r = (*r & ~0xffull) | (v & 0xff);
        break;
    default: return HVI_E_UNSUPPORTED;
    }
    return HVI_OK;
}

hvi_status hvi_insn_emulate_load(const hvi_insn *insn, hvi_regs *regs, const void *data,
                                 size_t len)
{
    if (!insn || !regs || !data || insn->len == 0)
        return HVI_E_INVAL;
    const struct hvi_zydis_form *f = hvi_insn_cform(insn);
    ZydisMnemonic m = f->zi.mnemonic;
    if (m != ZYDIS_MNEMONIC_MOV && m != ZYDIS_MNEMONIC_MOVZX && m != ZYDIS_MNEMONIC_MOVSX &&
        m != ZYDIS_MNEMONIC_MOVSXD)
        return HVI_E_UNSUPPORTED;
    const ZydisDecodedOperand *dst = &f->ops[0], *src = &f->ops[1];
    if (f->zi.operand_count_visible < 2 || dst->type != ZYDIS_OPERAND_TYPE_REGISTER ||
        src->type != ZYDIS_OPERAND_TYPE_MEMORY || src->mem.type != ZYDIS_MEMOP_TYPE_MEM)
        return HVI_E_UNSUPPORTED;
    uint32_t size = src->size / 8u;
    if (size == 0 || size > 8 || len < size)
        return size > 8 ? HVI_E_UNSUPPORTED : HVI_E_INVAL;
    uint64_t v = 0;
    memcpy(&v, data, size);
    if (m == ZYDIS_MNEMONIC_MOVSX || m == ZYDIS_MNEMONIC_MOVSXD)
        v = sign_extend(v, size * 8u);
    hvi_regs tmp = *regs;
    hvi_status st = set_gpr(&tmp, dst->reg.value, v);
    if (st != HVI_OK)
        return st;
    tmp.rip += insn->len;
    *regs = tmp;
    return HVI_OK;
}
