/*
 * hvi decode layer — the value a write stores, when it needs more than GPRs and the old bytes:
 * MOVS copies guest memory (read through the memory layer), SSE/AVX stores copy an XMM register
 * (read through the glue's get_vec_reg).
 */
#include <string.h>

#include "core/engine.h"
#include "decode_priv.h"
#include "hvi/mem.h"

/* How an SSE store takes its bytes from the source XMM register. */
enum vec_pick {
    PICK_NONE,
    PICK_LOW,  /* the low `size` bytes */
    PICK_HIGH, /* bytes 8..15 (MOVHPS/MOVHPD) */
    PICK_IMM,  /* element imm8 of `size` bytes (PEXTRx, EXTRACTPS) */
};

static enum vec_pick vec_store_kind(ZydisMnemonic m)
{
    switch (m) {
    case ZYDIS_MNEMONIC_MOVDQU:
    case ZYDIS_MNEMONIC_MOVDQA:
    case ZYDIS_MNEMONIC_MOVUPS:
    case ZYDIS_MNEMONIC_MOVAPS:
    case ZYDIS_MNEMONIC_MOVUPD:
    case ZYDIS_MNEMONIC_MOVAPD:
    case ZYDIS_MNEMONIC_MOVNTDQ:
    case ZYDIS_MNEMONIC_MOVNTPS:
    case ZYDIS_MNEMONIC_MOVNTPD:
    case ZYDIS_MNEMONIC_MOVSS:
    case ZYDIS_MNEMONIC_MOVSD: /* the SSE2 form; the string form has no XMM operand */
    case ZYDIS_MNEMONIC_MOVLPS:
    case ZYDIS_MNEMONIC_MOVLPD:
    case ZYDIS_MNEMONIC_MOVQ:
    case ZYDIS_MNEMONIC_MOVD:
    case ZYDIS_MNEMONIC_VMOVDQU:
    case ZYDIS_MNEMONIC_VMOVDQA:
    case ZYDIS_MNEMONIC_VMOVUPS:
    case ZYDIS_MNEMONIC_VMOVAPS:
    case ZYDIS_MNEMONIC_VMOVUPD:
    case ZYDIS_MNEMONIC_VMOVAPD:
    case ZYDIS_MNEMONIC_VMOVNTDQ:
    case ZYDIS_MNEMONIC_VMOVNTPS:
    case ZYDIS_MNEMONIC_VMOVNTPD:
    case ZYDIS_MNEMONIC_VMOVSS:
    case ZYDIS_MNEMONIC_VMOVSD:
    case ZYDIS_MNEMONIC_VMOVLPS:
    case ZYDIS_MNEMONIC_VMOVLPD:
    case ZYDIS_MNEMONIC_VMOVQ:
    case ZYDIS_MNEMONIC_VMOVD:
        return PICK_LOW;
    case ZYDIS_MNEMONIC_MOVHPS:
    case ZYDIS_MNEMONIC_MOVHPD:
    case ZYDIS_MNEMONIC_VMOVHPS:
    case ZYDIS_MNEMONIC_VMOVHPD:
        return PICK_HIGH;
    case ZYDIS_MNEMONIC_PEXTRB:
    case ZYDIS_MNEMONIC_PEXTRW:
    case ZYDIS_MNEMONIC_PEXTRD:
    case ZYDIS_MNEMONIC_PEXTRQ:
    case ZYDIS_MNEMONIC_EXTRACTPS:
    case ZYDIS_MNEMONIC_VPEXTRB:
    case ZYDIS_MNEMONIC_VPEXTRW:
    case ZYDIS_MNEMONIC_VPEXTRD:
    case ZYDIS_MNEMONIC_VPEXTRQ:
    case ZYDIS_MNEMONIC_VEXTRACTPS:
        return PICK_IMM;
    default:
        return PICK_NONE;
    }
}

/* The visible XMM source operand, -1 if none. */
static int xmm_operand(const struct hvi_zydis_form *f)
{
    for (uint32_t i = 0; i < f->zi.operand_count_visible; i++)
        if (f->ops[i].type == ZYDIS_OPERAND_TYPE_REGISTER &&
            ZydisRegisterGetClass(f->ops[i].reg.value) == ZYDIS_REGCLASS_XMM)
            return (int)i;
    return -1;
}

static uint32_t mem_write_size(const struct hvi_zydis_form *f, uint64_t *imm)
{
    uint32_t size = 0;
    *imm = 0;
    for (uint32_t i = 0; i < f->zi.operand_count_visible; i++) {
        const ZydisDecodedOperand *op = &f->ops[i];
        if (op->type == ZYDIS_OPERAND_TYPE_MEMORY && op->mem.type == ZYDIS_MEMOP_TYPE_MEM &&
            (op->actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) && !size)
            size = op->size / 8u;
        if (op->type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
            *imm = op->imm.value.u;
    }
    return size;
}

static hvi_status vec_store(hvi_engine *e, uint32_t vcpu, const struct hvi_zydis_form *f, int xop,
                            enum vec_pick pick, uint8_t *out, size_t *out_len)
{
    uint64_t imm;
    uint32_t size = mem_write_size(f, &imm);
    ZyanI8 idx = ZydisRegisterGetId(f->ops[xop].reg.value);
    if (size == 0 || size > 16 || idx < 0 || idx > 15)
        return HVI_E_UNSUPPORTED; /* YMM/ZMM-wide stores, XMM16-31 (EVEX) */
    if (!(e->glue.caps & HVI_CAP_VEC_REGS) || !e->glue.get_vec_reg)
        return HVI_E_UNSUPPORTED;
    uint8_t x[16];
    if (e->glue.get_vec_reg(e->glue.ctx, vcpu, (uint32_t)idx, x) != HVI_OK)
        return HVI_E_BACKEND;
    uint32_t from = 0;
    if (pick == PICK_HIGH)
        from = 8;
    else if (pick == PICK_IMM)
        from = (uint32_t)((imm * size) % 16u);
    if (from + size > 16)
        return HVI_E_UNSUPPORTED;
    memcpy(out, x + from, size);
    *out_len = size;
    return HVI_OK;
}

static bool is_movs(ZydisMnemonic m)
{
    return m == ZYDIS_MNEMONIC_MOVSB || m == ZYDIS_MNEMONIC_MOVSW || m == ZYDIS_MNEMONIC_MOVSD ||
           m == ZYDIS_MNEMONIC_MOVSQ;
}

/* MOVS: one element read from [RSI] (the implicit read access). */
static hvi_status movs_store(hvi_engine *e, const hvi_insn *insn, const hvi_regs *regs,
                             uint8_t *out, size_t *out_len)
{
    if (!(regs->valid & HVI_REGS_CR))
        return HVI_E_INVAL;
    for (uint32_t i = 0; i < insn->access_count && i < HVI_INSN_MAX_ACCESS; i++) {
        const hvi_mem_access *a = &insn->access[i];
        if (!(a->access & HVI_EPT_R) || (a->access & HVI_EPT_W))
            continue;
        if (!a->addr_valid || a->size == 0 || a->size > 8)
            return HVI_E_UNSUPPORTED;
        hvi_status st = hvi_gva_read(e, regs->cr3, a->gva, out, a->size);
        if (st != HVI_OK)
            return st;
        *out_len = a->size;
        return HVI_OK;
    }
    return HVI_E_UNSUPPORTED;
}

hvi_status hvi_decode_write_value(hvi_engine *e, uint32_t vcpu, const hvi_insn *insn,
                                  const hvi_regs *regs, const void *old, size_t old_len,
                                  uint8_t *out, size_t *out_len)
{
    if (!e || !insn || !regs || !out || !out_len || insn->len == 0)
        return HVI_E_INVAL;
    const struct hvi_zydis_form *f = hvi_insn_cform(insn);
    int xop = xmm_operand(f);
    enum vec_pick pick = vec_store_kind(f->zi.mnemonic);
    if (xop >= 0 && pick != PICK_NONE && hvi_insn_write_access(insn) >= 0)
        return vec_store(e, vcpu, f, xop, pick, out, out_len);
    if (xop < 0 && is_movs(f->zi.mnemonic))
        return movs_store(e, insn, regs, out, out_len);
    return hvi_insn_write_value(insn, regs, old, old_len, out, out_len);
}
