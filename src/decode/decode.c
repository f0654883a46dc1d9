/*
 * hvi decode layer — decoding a buffer with Zydis: length, text, memory accesses with their
 * effective linear addresses.
 */
#include <string.h>

#include "decode_priv.h"

uint32_t hvi_decode_mode(const hvi_regs *regs)
{
    if (!regs)
        return 64;
    const hvi_segment *cs = &regs->seg[HVI_CS];
    bool have_ar = (regs->valid & (HVI_REGS_SEGBASE)) && cs->ar != 0;
    bool lma = (regs->valid & HVI_REGS_EFER) && (regs->efer & (1u << 10));
    if (lma && (!have_ar || (cs->ar & (1u << 13))))
        return 64;
    if (!have_ar)
        return lma ? 64 : ((regs->valid & HVI_REGS_CR) && (regs->cr0 & 1) ? 32 : 16);
    return (cs->ar & (1u << 14)) ? 32 : 16;
}

static bool decoder_for(uint32_t mode, ZydisDecoder *dec)
{
    ZydisMachineMode mm;
    ZydisStackWidth sw;
    switch (mode) {
    case 64: mm = ZYDIS_MACHINE_MODE_LONG_64; sw = ZYDIS_STACK_WIDTH_64; break;
    case 32: mm = ZYDIS_MACHINE_MODE_LONG_COMPAT_32; sw = ZYDIS_STACK_WIDTH_32; break;
    case 16: mm = ZYDIS_MACHINE_MODE_LONG_COMPAT_16; sw = ZYDIS_STACK_WIDTH_16; break;
    default: return false;
    }
    return ZYAN_SUCCESS(ZydisDecoderInit(dec, mm, sw));
}

hvi_status hvi_decode_gpr_value(const hvi_regs *regs, ZydisRegister reg, uint64_t *out)
{
    ZydisRegisterClass cls = ZydisRegisterGetClass(reg);
    ZydisRegister big = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, reg);
    if (!regs || big == ZYDIS_REGISTER_NONE)
        return HVI_E_UNSUPPORTED;
    if (big == ZYDIS_REGISTER_RIP) {
        *out = regs->rip;
        return HVI_OK;
    }
    if (ZydisRegisterGetClass(big) != ZYDIS_REGCLASS_GPR64)
        return HVI_E_UNSUPPORTED;
    ZyanI8 id = ZydisRegisterGetId(big);
    if (id < 0 || id >= HVI_GPR_COUNT)
        return HVI_E_UNSUPPORTED;
    uint64_t v = regs->gpr[id];
    switch (cls) {
    case ZYDIS_REGCLASS_GPR8:
        if (reg == ZYDIS_REGISTER_AH || reg == ZYDIS_REGISTER_CH || reg == ZYDIS_REGISTER_DH ||
            reg == ZYDIS_REGISTER_BH)
            v >>= 8;
        v &= 0xff;
        break;
    case ZYDIS_REGCLASS_GPR16: v &= 0xffff; break;
    case ZYDIS_REGCLASS_GPR32: v &= 0xffffffffu; break;
    case ZYDIS_REGCLASS_GPR64: break;
    default: return HVI_E_UNSUPPORTED;
    }
    *out = v;
    return HVI_OK;
}

static uint8_t seg_index(ZydisRegister seg)
{
    switch (seg) {
    case ZYDIS_REGISTER_ES: return HVI_ES;
    case ZYDIS_REGISTER_CS: return HVI_CS;
    case ZYDIS_REGISTER_SS: return HVI_SS;
    case ZYDIS_REGISTER_FS: return HVI_FS;
    case ZYDIS_REGISTER_GS: return HVI_GS;
    default: return HVI_DS;
    }
}

static uint64_t seg_base(const hvi_regs *regs, uint8_t seg, uint32_t mode)
{
    if (seg == HVI_FS || seg == HVI_GS) {
        if (regs->valid & HVI_REGS_FSGS)
            return seg == HVI_FS ? regs->fs_base : regs->gs_base;
        if (regs->valid & (HVI_REGS_SEG | HVI_REGS_SEGBASE))
            return regs->seg[seg].base;
        return 0;
    }
    if (mode == 64 || !(regs->valid & HVI_REGS_SEGBASE))
        return 0;
    return regs->seg[seg].base;
}

/* Effective linear address of memory operand `op`; false if a register is not a GPR. */
static bool effective_address(const hvi_insn *insn, const ZydisDecodedOperand *op,
                              const hvi_regs *regs, uint64_t *out)
{
    const ZydisDecodedInstruction *zi = &hvi_insn_cform(insn)->zi;
    uint64_t addr = 0, v;
    if (op->mem.base != ZYDIS_REGISTER_NONE) {
        ZydisRegister b = op->mem.base;
        if (b == ZYDIS_REGISTER_RIP || b == ZYDIS_REGISTER_EIP || b == ZYDIS_REGISTER_IP)
            v = insn->rip + insn->len;
        else if (hvi_decode_gpr_value(regs, b, &v) != HVI_OK)
            return false;
        addr += v;
    }
    if (op->mem.index != ZYDIS_REGISTER_NONE) {
        if (hvi_decode_gpr_value(regs, op->mem.index, &v) != HVI_OK)
            return false;
        addr += v * (op->mem.scale ? op->mem.scale : 1);
    }
    if (op->mem.disp.has_displacement)
        addr += (uint64_t)op->mem.disp.value;
    if (zi->address_width == 32)
        addr &= 0xffffffffu;
    else if (zi->address_width == 16)
        addr &= 0xffffu;
    uint8_t seg = seg_index(op->mem.segment);
    addr += seg_base(regs, seg, insn->mode);
    if (insn->mode != 64)
        addr &= 0xffffffffu;
    *out = addr;
    return true;
}

static bool is_stack_pointer(ZydisRegister r)
{
    return r == ZYDIS_REGISTER_RSP || r == ZYDIS_REGISTER_ESP || r == ZYDIS_REGISTER_SP;
}

/* Stack pushes (PUSH, CALL, PUSHF, ENTER) write below the stack pointer: Zydis describes them as a
 * hidden write to [rsp], so the address is moved down by the pushed size. */
void hvi_decode_fill_accesses(hvi_insn *insn, const hvi_regs *regs)
{
    const struct hvi_zydis_form *f = hvi_insn_cform(insn);
    uint32_t n = 0;
    for (uint32_t i = 0; i < f->zi.operand_count && n < HVI_INSN_MAX_ACCESS; i++) {
        const ZydisDecodedOperand *op = &f->ops[i];
        if (op->type != ZYDIS_OPERAND_TYPE_MEMORY || op->mem.type != ZYDIS_MEMOP_TYPE_MEM)
            continue;
        hvi_mem_access *a = &insn->access[n++];
        memset(a, 0, sizeof(*a));
        a->size = op->size / 8u;
        if (op->actions & ZYDIS_OPERAND_ACTION_MASK_READ)
            a->access |= HVI_EPT_R;
        if (op->actions & ZYDIS_OPERAND_ACTION_MASK_WRITE)
            a->access |= HVI_EPT_W;
        a->seg = seg_index(op->mem.segment);
        a->implicit = op->visibility != ZYDIS_OPERAND_VISIBILITY_EXPLICIT;
        if (regs)
            a->addr_valid = effective_address(insn, op, regs, &a->gva);
        if (a->addr_valid && op->visibility == ZYDIS_OPERAND_VISIBILITY_HIDDEN &&
            is_stack_pointer(op->mem.base) && a->access == HVI_EPT_W)
            a->gva -= a->size;
    }
    insn->access_count = n;
}

static void format_text(hvi_insn *insn)
{
    ZydisFormatter fmt;
    const struct hvi_zydis_form *f = hvi_insn_cform(insn);
    if (!ZYAN_SUCCESS(ZydisFormatterInit(&fmt, ZYDIS_FORMATTER_STYLE_INTEL))) {
        insn->text[0] = 0;
        return;
    }
    if (!ZYAN_SUCCESS(ZydisFormatterFormatInstruction(&fmt, &f->zi, f->ops,
                                                      f->zi.operand_count_visible, insn->text,
                                                      sizeof(insn->text), insn->rip, NULL)))
        insn->text[0] = 0;
}

hvi_status hvi_decode_buffer(const void *buf, size_t len, uint32_t mode, uint64_t rip,
                             const hvi_regs *regs, hvi_insn *out)
{
    ZydisDecoder dec;
    if (!buf || !out || len == 0 || !decoder_for(mode, &dec))
        return HVI_E_INVAL;
    memset(out, 0, offsetof(hvi_insn, opaque));
    struct hvi_zydis_form *f = hvi_insn_form(out);
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, buf, len > HVI_INSN_MAX_LEN ? HVI_INSN_MAX_LEN
                                                                               : len,
                                             &f->zi, f->ops)))
        return HVI_E_DECODE;
    out->rip = rip;
    out->mode = mode;
    out->len = f->zi.length;
    memcpy(out->bytes, buf, out->len);
    out->mnemonic = (uint32_t)f->zi.mnemonic;
    out->rep = (f->zi.attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE |
                                    ZYDIS_ATTRIB_HAS_REPNE)) != 0;
    out->lock = (f->zi.attributes & ZYDIS_ATTRIB_HAS_LOCK) != 0;
    format_text(out);
    hvi_decode_fill_accesses(out, regs);
    return HVI_OK;
}

uint32_t hvi_insn_write_size(const hvi_insn *insn)
{
    uint32_t sz = 0;
    for (uint32_t i = 0; insn && i < insn->access_count; i++)
        if ((insn->access[i].access & HVI_EPT_W) && insn->access[i].size > sz)
            sz = insn->access[i].size;
    return sz;
}

int hvi_insn_write_access(const hvi_insn *insn)
{
    for (uint32_t i = 0; insn && i < insn->access_count; i++)
        if (insn->access[i].access & HVI_EPT_W)
            return (int)i;
    return -1;
}
