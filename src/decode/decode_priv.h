/*
 * hvi decode layer — private: the Zydis form kept inside hvi_insn.opaque.
 */
#ifndef HVI_DECODE_PRIV_H
#define HVI_DECODE_PRIV_H

#include <Zydis/Zydis.h>

#include "hvi/decode.h"

struct hvi_zydis_form {
    ZydisDecodedInstruction zi;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
};

_Static_assert(sizeof(struct hvi_zydis_form) <= sizeof(((hvi_insn *)0)->opaque),
               "hvi_insn.opaque too small for the Zydis form");

static inline struct hvi_zydis_form *hvi_insn_form(hvi_insn *insn)
{
    return (struct hvi_zydis_form *)(void *)insn->opaque;
}

static inline const struct hvi_zydis_form *hvi_insn_cform(const hvi_insn *insn)
{
    return (const struct hvi_zydis_form *)(const void *)insn->opaque;
}

/* Value of a general purpose register operand (8/16/32/64-bit names incl. AH..BH), masked to its
 * width. HVI_E_UNSUPPORTED for non-GPR registers (XMM, ...). */
hvi_status hvi_decode_gpr_value(const hvi_regs *regs, ZydisRegister reg, uint64_t *out);

/* Value a shift/rotate/SHLD/SHRD/SETcc/MOVBE writes to memory operand `dst` (size bytes, old
 * contents `old`). HVI_E_NOT_FOUND for any other mnemonic (the caller handles it),
 * HVI_E_UNSUPPORTED for results the architecture leaves undefined. value_alu.c. */
hvi_status hvi_decode_alu_value(const struct hvi_zydis_form *f, const hvi_regs *regs, int dst,
                                uint32_t size, uint64_t old, uint64_t *out);

/* Recompute the linear addresses of insn's accesses for `regs` (NULL: mark them invalid). */
void hvi_decode_fill_accesses(hvi_insn *insn, const hvi_regs *regs);

#endif
