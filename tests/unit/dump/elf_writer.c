/* Tests: a QEMU-style ELF core writer (see elf_writer.h). */
#include "elf_writer.h"

#include <stdlib.h>
#include <string.h>

void ew_put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}
void ew_put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
void ew_put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

#define PRSTATUS 336u
#define QEMU_MAX 440u

static size_t note_len(size_t desc)
{
    return 12 + 8 + ((desc + 3) & ~(size_t)3);
}

static uint8_t *note_head(uint8_t *p, const char *name, uint32_t type, uint32_t desc)
{
    ew_put32(p, 5);
    ew_put32(p + 4, desc);
    ew_put32(p + 8, type);
    memcpy(p + 12, name, 5);
    return p + 20;
}

static void put_prstatus(uint8_t *d, uint32_t id, const hvi_regs *r)
{
    static const uint8_t gpr_of[15] = {HVI_R15, HVI_R14, HVI_R13, HVI_R12, HVI_RBP,
                                       HVI_RBX, HVI_R11, HVI_R10, HVI_R9,  HVI_R8,
                                       HVI_RAX, HVI_RCX, HVI_RDX, HVI_RSI, HVI_RDI};
    uint8_t *reg = d + 112;
    ew_put32(d + 32, id);
    for (int i = 0; i < 15; i++)
        ew_put64(reg + 8 * i, r->gpr[gpr_of[i]]);
    ew_put64(reg + 8 * 16, r->rip);
    ew_put64(reg + 8 * 17, r->seg[HVI_CS].selector);
    ew_put64(reg + 8 * 18, r->rflags);
    ew_put64(reg + 8 * 19, r->gpr[HVI_RSP]);
    ew_put64(reg + 8 * 20, r->seg[HVI_SS].selector);
    ew_put64(reg + 8 * 21, r->fs_base);
    ew_put64(reg + 8 * 22, r->gs_base);
    ew_put64(reg + 8 * 23, r->seg[HVI_DS].selector);
    ew_put64(reg + 8 * 24, r->seg[HVI_ES].selector);
    ew_put64(reg + 8 * 25, r->seg[HVI_FS].selector);
    ew_put64(reg + 8 * 26, r->seg[HVI_GS].selector);
}

static void put_seg(uint8_t *p, uint32_t sel, uint32_t limit, uint16_t ar, uint64_t base)
{
    ew_put32(p, sel);
    ew_put32(p + 4, limit);
    ew_put32(p + 8, (uint32_t)(ar & 0xf0ffu) << 8);
    ew_put64(p + 16, base);
}

static void put_qemu(uint8_t *d, uint32_t size, const hvi_regs *r)
{
    static const uint8_t order[16] = {HVI_RAX, HVI_RBX, HVI_RCX, HVI_RDX, HVI_RSI, HVI_RDI,
                                      HVI_RSP, HVI_RBP, HVI_R8,  HVI_R9,  HVI_R10, HVI_R11,
                                      HVI_R12, HVI_R13, HVI_R14, HVI_R15};
    static const uint8_t segs[6] = {HVI_CS, HVI_DS, HVI_ES, HVI_FS, HVI_GS, HVI_SS};
    ew_put32(d, 1);
    ew_put32(d + 4, size);
    for (int i = 0; i < 16; i++)
        ew_put64(d + 8 + 8 * i, r->gpr[order[i]]);
    ew_put64(d + 136, r->rip);
    ew_put64(d + 144, r->rflags);
    for (int i = 0; i < 6; i++) {
        const hvi_segment *s = &r->seg[segs[i]];
        put_seg(d + 152 + 24 * i, s->selector, s->limit, s->ar, s->base);
    }
    put_seg(d + 152 + 24 * 8, 0, r->gdtr_limit, 0, r->gdtr_base);
    put_seg(d + 152 + 24 * 9, 0, r->idtr_limit, 0, r->idtr_base);
    ew_put64(d + 392, r->cr0);
    ew_put64(d + 408, r->cr2);
    ew_put64(d + 416, r->cr3);
    ew_put64(d + 424, r->cr4);
    if (size >= 440)
        ew_put64(d + 432, r->kernel_gs_base);
}

uint8_t *ew_build(const struct ew_seg *segs, size_t nseg, const hvi_regs *cpus, size_t ncpu,
                  const struct ew_opts *opts, size_t *len, struct ew_layout *lay)
{
    struct ew_opts o = opts ? *opts : (struct ew_opts){0};
    uint32_t qsize = o.qemu_size ? o.qemu_size : QEMU_MAX;
    size_t notes =
        (o.no_prstatus ? 0 : ncpu * note_len(PRSTATUS)) + (o.no_qemu ? 0 : ncpu * note_len(qsize));
    size_t phoff = EW_EHDR, notes_off = phoff + (nseg + 1) * EW_PHDR, data_off = notes_off + notes;
    size_t total = data_off;
    for (size_t i = 0; i < nseg; i++)
        total += segs[i].len;
    uint8_t *b = calloc(1, total);
    if (!b)
        return NULL;
    memcpy(b,
           "\x7f"
           "ELF",
           4);
    b[4] = 2, b[5] = 1, b[6] = 1;
    ew_put16(b + 16, 4);  /* ET_CORE */
    ew_put16(b + 18, 62); /* EM_X86_64 */
    ew_put32(b + 20, 1);
    ew_put64(b + 32, phoff);
    ew_put16(b + 52, EW_EHDR);
    ew_put16(b + 54, EW_PHDR);
    ew_put16(b + 56, (uint16_t)(nseg + 1));
    uint8_t *ph = b + phoff;
    ew_put32(ph, 4); /* PT_NOTE */
    ew_put64(ph + 8, notes_off);
    ew_put64(ph + 32, notes);
    ew_put64(ph + 40, notes);
    uint8_t *n = b + notes_off;
    for (size_t i = 0; i < ncpu && !o.no_prstatus; i++) {
        put_prstatus(note_head(n, "CORE", 1, PRSTATUS), (uint32_t)i + 1, &cpus[i]);
        n += note_len(PRSTATUS);
    }
    for (size_t i = 0; i < ncpu && !o.no_qemu; i++) {
        put_qemu(note_head(n, "QEMU", 0, qsize), qsize, &cpus[i]);
        n += note_len(qsize);
    }
    size_t off = data_off;
    for (size_t i = 0; i < nseg; i++) {
        ph = b + phoff + (i + 1) * EW_PHDR;
        ew_put32(ph, 1); /* PT_LOAD */
        ew_put64(ph + 8, off);
        ew_put64(ph + 24, segs[i].gpa);
        ew_put64(ph + 32, segs[i].len);
        ew_put64(ph + 40, segs[i].len);
        if (segs[i].data)
            memcpy(b + off, segs[i].data, segs[i].len);
        off += segs[i].len;
    }
    *len = total;
    if (lay)
        *lay = (struct ew_layout){
            .phoff = phoff, .notes_off = notes_off, .notes_len = notes, .data_off = data_off};
    return b;
}
