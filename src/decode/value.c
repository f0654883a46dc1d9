/*
 * hvi decode layer — the value a write instruction stores to memory.
 */
#include <string.h>

#include "decode_priv.h"

struct wctx {
    const struct hvi_zydis_form *f;
    const hvi_insn *insn;
    const hvi_regs *regs;
    int dst;          /* operand index of the written memory operand */
    uint32_t size;    /* bytes */
    uint64_t old;     /* old memory value (low 8 bytes) */
    uint64_t mask;
};

/* Value of the first explicit non-destination operand (register or immediate), masked. */
static hvi_status source_value(const struct wctx *w, uint64_t *out)
{
    for (uint32_t i = 0; i < w->f->zi.operand_count_visible; i++) {
        const ZydisDecodedOperand *op = &w->f->ops[i];
        if ((int)i == w->dst)
            continue;
        if (op->type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
            *out = op->imm.value.u & w->mask;
            return HVI_OK;
        }
        if (op->type == ZYDIS_OPERAND_TYPE_REGISTER) {
            hvi_status st = hvi_decode_gpr_value(w->regs, op->reg.value, out);
            if (st == HVI_OK)
                *out &= w->mask;
            return st;
        }
    }
    return HVI_E_UNSUPPORTED;
}

static uint64_t reg_sized(const struct wctx *w, enum hvi_gpr r)
{
    return w->regs->gpr[r] & w->mask;
}

static hvi_status bit_op(const struct wctx *w, uint64_t *v)
{
    const ZydisDecodedOperand *src = &w->f->ops[1];
    uint64_t bit;
    hvi_status st = source_value(w, &bit);
    if (st != HVI_OK)
        return st;
    uint32_t bits = w->size * 8u;
    if (src->type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
        bit &= bits - 1u;
    else if (bit >= bits)
        return HVI_E_UNSUPPORTED; /* register bit offset outside the operand: another address */
    uint64_t m = 1ull << bit;
    switch (w->f->zi.mnemonic) {
    case ZYDIS_MNEMONIC_BTS: *v = w->old | m; break;
    case ZYDIS_MNEMONIC_BTR: *v = w->old & ~m; break;
    default: *v = w->old ^ m; break;
    }
    return HVI_OK;
}

static hvi_status arith(const struct wctx *w, uint64_t *v)
{
    uint64_t s = 0;
    ZydisMnemonic m = w->f->zi.mnemonic;
    uint64_t cf = w->regs->rflags & 1u;
    hvi_status st = HVI_OK;
    if (m != ZYDIS_MNEMONIC_INC && m != ZYDIS_MNEMONIC_DEC && m != ZYDIS_MNEMONIC_NOT &&
        m != ZYDIS_MNEMONIC_NEG)
        st = source_value(w, &s);
    if (st != HVI_OK)
        return st;
    switch (m) {
    case ZYDIS_MNEMONIC_ADD: *v = w->old + s; break;
    case ZYDIS_MNEMONIC_ADC: *v = w->old + s + cf; break;
    case ZYDIS_MNEMONIC_SUB: *v = w->old - s; break;
    case ZYDIS_MNEMONIC_SBB: *v = w->old - s - cf; break;
    case ZYDIS_MNEMONIC_AND: *v = w->old & s; break;
    case ZYDIS_MNEMONIC_OR: *v = w->old | s; break;
    case ZYDIS_MNEMONIC_XOR: *v = w->old ^ s; break;
    case ZYDIS_MNEMONIC_XADD: *v = w->old + s; break;
    case ZYDIS_MNEMONIC_INC: *v = w->old + 1; break;
    case ZYDIS_MNEMONIC_DEC: *v = w->old - 1; break;
    case ZYDIS_MNEMONIC_NOT: *v = ~w->old; break;
    case ZYDIS_MNEMONIC_NEG: *v = 0 - w->old; break;
    default: return HVI_E_UNSUPPORTED;
    }
    return HVI_OK;
}

static hvi_status cmpxchg_wide(const struct wctx *w, const uint8_t *old, uint8_t *out)
{
    const hvi_regs *r = w->regs;
    if (w->size == 8) {
        uint64_t cmp = (r->gpr[HVI_RDX] << 32) | (r->gpr[HVI_RAX] & 0xffffffffu);
        uint64_t nv = (r->gpr[HVI_RCX] << 32) | (r->gpr[HVI_RBX] & 0xffffffffu);
        memcpy(out, w->old == cmp ? (const void *)&nv : (const void *)old, 8);
        return HVI_OK;
    }
    uint64_t lo, hi;
    memcpy(&lo, old, 8);
    memcpy(&hi, old + 8, 8);
    if (lo == r->gpr[HVI_RAX] && hi == r->gpr[HVI_RDX]) {
        memcpy(out, &r->gpr[HVI_RBX], 8);
        memcpy(out + 8, &r->gpr[HVI_RCX], 8);
    } else {
        memcpy(out, old, 16);
    }
    return HVI_OK;
}

static hvi_status compute(const struct wctx *w, const uint8_t *old, uint8_t *out)
{
    uint64_t v = 0;
    hvi_status st;
    switch (w->f->zi.mnemonic) {
    case ZYDIS_MNEMONIC_MOV:
    case ZYDIS_MNEMONIC_MOVNTI:
    case ZYDIS_MNEMONIC_XCHG:
    case ZYDIS_MNEMONIC_PUSH:
        st = source_value(w, &v);
        break;
    case ZYDIS_MNEMONIC_CALL:
        v = (w->insn->rip + w->insn->len) & w->mask;
        st = HVI_OK;
        break;
    case ZYDIS_MNEMONIC_STOSB:
    case ZYDIS_MNEMONIC_STOSW:
    case ZYDIS_MNEMONIC_STOSD:
    case ZYDIS_MNEMONIC_STOSQ:
        v = reg_sized(w, HVI_RAX);
        st = HVI_OK;
        break;
    case ZYDIS_MNEMONIC_CMPXCHG: {
        uint64_t s;
        st = source_value(w, &s);
        v = (reg_sized(w, HVI_RAX) == w->old) ? s : w->old;
        break;
    }
    case ZYDIS_MNEMONIC_CMPXCHG8B:
    case ZYDIS_MNEMONIC_CMPXCHG16B:
        return cmpxchg_wide(w, old, out);
    case ZYDIS_MNEMONIC_BTS:
    case ZYDIS_MNEMONIC_BTR:
    case ZYDIS_MNEMONIC_BTC:
        st = bit_op(w, &v);
        break;
    default:
        st = hvi_decode_alu_value(w->f, w->regs, w->dst, w->size, w->old, &v);
        if (st == HVI_E_NOT_FOUND)
            st = arith(w, &v);
        break;
    }
    if (st != HVI_OK)
        return st;
    v &= w->mask;
    memcpy(out, &v, w->size); /* little-endian host, like the guest */
    return HVI_OK;
}

hvi_status hvi_insn_write_value(const hvi_insn *insn, const hvi_regs *regs, const void *old,
                                size_t old_len, uint8_t *out, size_t *out_len)
{
    if (!insn || !regs || !out || !out_len || insn->len == 0)
        return HVI_E_INVAL;
    const struct hvi_zydis_form *f = hvi_insn_cform(insn);
    struct wctx w = {.f = f, .insn = insn, .regs = regs, .dst = -1};
    for (uint32_t i = 0; i < f->zi.operand_count; i++) {
        const ZydisDecodedOperand *op = &f->ops[i];
        if (op->type == ZYDIS_OPERAND_TYPE_MEMORY && op->mem.type == ZYDIS_MEMOP_TYPE_MEM &&
            (op->actions & ZYDIS_OPERAND_ACTION_MASK_WRITE)) {
            w.dst = (int)i;
            w.size = op->size / 8u;
            break;
        }
    }
    if (w.dst < 0)
        return HVI_E_INVAL;
    if (w.size == 0 || w.size > 16)
        return HVI_E_UNSUPPORTED;
    if (f->zi.mnemonic == ZYDIS_MNEMONIC_MOVSB || f->zi.mnemonic == ZYDIS_MNEMONIC_MOVSW ||
        f->zi.mnemonic == ZYDIS_MNEMONIC_MOVSD || f->zi.mnemonic == ZYDIS_MNEMONIC_MOVSQ)
        return HVI_E_UNSUPPORTED; /* needs the source memory: read insn->access[] source */
    if (w.size > 8 && f->zi.mnemonic != ZYDIS_MNEMONIC_CMPXCHG16B)
        return HVI_E_UNSUPPORTED; /* SSE/AVX stores: the glue has no XMM access */
    if (!old || old_len < w.size)
        return HVI_E_INVAL;
    w.mask = w.size >= 8 ? ~0ull : ((1ull << (w.size * 8u)) - 1u);
    memcpy(&w.old, old, w.size < 8 ? w.size : 8);
    hvi_status st = compute(&w, old, out);
    if (st == HVI_OK)
        *out_len = w.size;
    return st;
}
