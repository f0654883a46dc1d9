/*
 * hvi — instruction decoding (x86, through Zydis inside src/decode only).
 *
 * An hvi_insn is one decoded instruction: its bytes, length, text, and every memory
 * location it accesses (explicit operands and implicit ones: the stack for PUSH/POP/CALL/RET,
 * [RSI]/[RDI] for MOVS/STOS/CMPS/SCAS/LODS, ...). When decoded with registers the accesses carry
 * their effective linear address (segment base + base + index*scale + displacement; in 64-bit
 * mode only FS and GS bases count).
 *
 * Everything decoded comes from the guest: undecodable bytes give HVI_E_DECODE, never a crash.
 */
#ifndef HVI_DECODE_H
#define HVI_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "glue.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hvi_engine hvi_engine;

#define HVI_INSN_MAX_LEN 15
#define HVI_INSN_MAX_ACCESS 4

/* One memory access of an instruction. */
typedef struct hvi_mem_access {
    hvi_gva gva;       /* effective linear address; valid when addr_valid */
    uint32_t size;     /* bytes accessed (for REP string instructions: one element) */
    uint32_t access;   /* HVI_EPT_R and/or HVI_EPT_W */
    uint8_t seg;       /* hvi_seg used */
    bool implicit;     /* not an explicit operand (stack, string registers) */
    bool addr_valid;   /* registers were available to compute gva */
} hvi_mem_access;

typedef struct hvi_insn {
    uint64_t rip;
    uint32_t mode;            /* 16, 32 or 64 */
    uint32_t len;             /* instruction length in bytes */
    uint8_t bytes[HVI_INSN_MAX_LEN];
    bool rep;                 /* REP/REPE/REPNE prefix present */
    bool lock;
    uint32_t mnemonic;        /* Zydis mnemonic id (opaque outside src/decode) */
    char text[64];            /* Intel syntax, with absolute addresses ("mov qword ptr [rax], rbx") */
    uint32_t access_count;
    hvi_mem_access access[HVI_INSN_MAX_ACCESS];
    /* Private decoder state (the full decoded form); do not touch. */
    uint64_t opaque[144];
} hvi_insn;

/* Decoding mode from the code segment and EFER: 64 when EFER.LMA and CS.L, else 32 or 16 from
 * CS.D. `regs` must carry HVI_REGS_SEG|HVI_REGS_EFER (or SEGBASE); without AR bytes 64 is
 * assumed when EFER.LMA is set. */
uint32_t hvi_decode_mode(const hvi_regs *regs);

/*
 * hvi_decode_buffer - decode the first instruction of buf[0..len) as if it sat at `rip`.
 * `mode` 16/32/64. `regs` (optional) lets the decoder compute linear addresses of the memory
 * accesses. HVI_E_DECODE for invalid or truncated bytes, HVI_E_INVAL for bad arguments.
 */
hvi_status hvi_decode_buffer(const void *buf, size_t len, uint32_t mode, uint64_t rip,
                             const hvi_regs *regs, hvi_insn *out);

/* Decode at a guest virtual address through `cr3` (0 = kernel) using hvi_gva_fetch (fetches up to
 * 15 bytes, fewer at the end of a mapped range). */
hvi_status hvi_decode_gva(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint32_t mode,
                          const hvi_regs *regs, hvi_insn *out);

/*
 * hvi_decode_rip - decode the instruction at the vCPU's RIP. `regs` must hold GPR, CR, EFER and
 * SEG/FSGS state (NULL: read through get_regs). Uses the per-RIP decode cache: an entry is keyed
 * by (CR3, RIP) and checked against the instruction bytes; hvi_decode_invalidate_gpa() drops the
 * entries whose code lies in a written frame.
 */
hvi_status hvi_decode_rip(hvi_engine *e, uint32_t vcpu, const hvi_regs *regs, hvi_insn *out);

/* Like hvi_decode_rip but from caller-supplied bytes (an event's insn); still cached. */
hvi_status hvi_decode_rip_bytes(hvi_engine *e, const hvi_regs *regs, const uint8_t *bytes,
                                size_t len, hvi_insn *out);

/* Drop cached decodes whose code lies in the 4 KiB frame of `gpa` (call when it is written). */
void hvi_decode_invalidate_gpa(hvi_engine *e, hvi_gpa gpa);
/* Drop every cached decode. */
void hvi_decode_cache_flush(hvi_engine *e);
/* Cache statistics (hits, misses) for tests and benchmarks. */
void hvi_decode_cache_stats(const hvi_engine *e, uint64_t *hits, uint64_t *misses);

/* The size in bytes of the largest memory write of the instruction, 0 if it writes no memory. */
uint32_t hvi_insn_write_size(const hvi_insn *insn);
/* Index of the first written memory access, -1 if none. */
int hvi_insn_write_access(const hvi_insn *insn);

/*
 * hvi_insn_write_value - the bytes the instruction will store at its (first) written memory
 * operand. `old` holds the current memory content at that operand (old_len >= the write size):
 * read-modify-write instructions (ADD, XOR, BTS, XADD, ...) combine it with the source.
 * `regs` must hold the GPRs and RFLAGS (for ADC/SBB). Writes *out_len bytes (<= 16) into out.
 * Supported: MOV, MOVNTI, XCHG, CMPXCHG (the stored value when the compare succeeds; the old
 * value otherwise), CMPXCHG8B/16B, ADD, ADC, SUB, SBB, AND, OR, XOR, INC, DEC, NOT, NEG, BTS,
 * BTR, BTC, XADD, STOS (one element), PUSH reg/imm, CALL (return address), SETcc (from RFLAGS),
 * SHL/SHR/SAR, ROL/ROR, RCL/RCR (CF from RFLAGS), SHLD/SHRD, MOVBE (counts masked as the CPU
 * does; an undefined result, SHLD/SHRD of 16 bits by more than 16, is HVI_E_UNSUPPORTED). MOVS and
 * SSE/AVX stores need guest memory or XMM registers: HVI_E_UNSUPPORTED here, use
 * hvi_decode_write_value. Instructions that write no memory: HVI_E_INVAL.
 */
hvi_status hvi_insn_write_value(const hvi_insn *insn, const hvi_regs *regs, const void *old,
                                size_t old_len, uint8_t *out, size_t *out_len);

/*
 * hvi_decode_write_value - hvi_insn_write_value plus what needs the engine: MOVSB/W/D/Q (one
 * element, read from the source access through `regs->cr3`; `regs` must hold HVI_REGS_CR and
 * the instruction must have been decoded with registers), and SSE/AVX stores of an XMM
 * register of `vcpu` read through the glue's get_vec_reg: MOVDQU/A, MOV(U|A|NT)(PS|PD),
 * MOVNTDQ, MOVSS, MOVSD, MOVLPS/LPD, MOVHPS/HPD (high half), MOVQ, MOVD, PEXTRB/W/D/Q and
 * EXTRACTPS (element imm8), and their 128-bit VEX forms. HVI_E_UNSUPPORTED without
 * HVI_CAP_VEC_REGS, for 256/512-bit stores and XMM16-31; HVI_E_BACKEND when the glue fails.
 */
hvi_status hvi_decode_write_value(hvi_engine *e, uint32_t vcpu, const hvi_insn *insn,
                                  const hvi_regs *regs, const void *old, size_t old_len,
                                  uint8_t *out, size_t *out_len);

/*
 * hvi_insn_emulate_load - complete a load instruction with caller-supplied memory contents:
 * `data` holds the bytes of its (first) read memory operand. Sets the destination general
 * purpose register with the architectural width rules (32-bit destinations zero-extend, 8/16-bit
 * ones merge) and advances RIP past the instruction. Supported: MOV, MOVZX, MOVSX, MOVSXD with a
 * GPR destination. Others: HVI_E_UNSUPPORTED (regs unchanged).
 */
hvi_status hvi_insn_emulate_load(const hvi_insn *insn, hvi_regs *regs, const void *data,
                                 size_t len);

#ifdef __cplusplus
}
#endif

#endif /* HVI_DECODE_H */
