/*
 * Fuzz target: the decoder and the write-value computation on arbitrary bytes.
 * Input: byte 0 selects the mode (16/32/64) and CF, bytes 1..8 seed the registers, the rest is
 * the instruction stream.
 */
#include <stdint.h>
#include <string.h>

#include "hvi/decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t modes[] = {16, 32, 64, 64};
    if (size < 10)
        return 0;
    hvi_regs r;
    memset(&r, 0, sizeof(r));
    r.valid = HVI_REGS_GPR | HVI_REGS_FSGS | HVI_REGS_SEGBASE | HVI_REGS_EFER;
    uint64_t seed;
    memcpy(&seed, data + 1, 8);
    for (int i = 0; i < HVI_GPR_COUNT; i++)
        r.gpr[i] = seed * (uint64_t)(i + 1) ^ ((uint64_t)i << 40);
    r.rflags = data[0] & 0x80 ? 1 : 0;
    r.fs_base = seed << 3;
    r.gs_base = ~seed;
    for (int s = 0; s < HVI_SEG_COUNT; s++)
        r.seg[s].base = seed >> (s + 1);
    r.rip = seed & ~0xfffull;
    const uint8_t *code = data + 9;
    size_t len = size - 9;
    hvi_insn insn;
    if (hvi_decode_buffer(code, len, modes[data[0] & 3], r.rip, &r, &insn) != HVI_OK)
        return 0;
    if (insn.len == 0 || insn.len > HVI_INSN_MAX_LEN || insn.access_count > HVI_INSN_MAX_ACCESS)
        __builtin_trap();
    uint8_t old[16], nv[16];
    size_t n = 0;
    memset(old, 0xa5, sizeof(old));
    if (hvi_insn_write_value(&insn, &r, old, sizeof(old), nv, &n) == HVI_OK &&
        (n == 0 || n > 16 || n != hvi_insn_write_size(&insn)))
        __builtin_trap();
    (void)hvi_insn_write_size(&insn);
    return 0;
}
