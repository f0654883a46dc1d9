/*
 * hvi dump backend — the ELF core parser (QEMU dump-guest-memory, paging=false).
 *
 * Facts used (ELF-64 gABI, Linux x86-64 core layout, QEMU's dump notes):
 *   - Elf64_Ehdr (64 bytes): e_ident, e_type 4 = ET_CORE, e_machine 62 = EM_X86_64, e_phoff at
 *     32, e_shoff at 40, e_phentsize at 54, e_phnum at 56, e_shentsize at 58. e_phnum 0xffff
 *     (PN_XNUM) means the real count is sh_info (offset 44) of section header 0.
 *   - Elf64_Phdr (56 bytes): p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz,
 *     p_align. PT_LOAD = 1, PT_NOTE = 4.
 *   - Notes: namesz, descsz, type (u32 each), then name and desc, each padded to 4 bytes.
 *   - NT_PRSTATUS (1, name "CORE"): elf_prstatus; pr_reg (27 u64: r15 r14 r13 r12 rbp rbx r11
 *     r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs)
 *     at offset 112; 336 bytes in all.
 *   - "QEMU" note: QEMUCPUState version 1: version, size (u32), rax rbx rcx rdx rsi rdi rsp rbp
 *     r8-r15 rip rflags (u64), ten segments cs ds es fs gs ss ldt tr gdt idt of 24 bytes
 *     (selector, limit, flags, pad: u32; base: u64), cr[5], then kernel_gs_base (present
 *     when size >= 440). A segment's flags are the descriptor's high dword (type at bit 8).
 * Everything is read with memcpy at offsets checked against the file size.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dump_internal.h"

#define PT_LOAD 1u
#define PT_NOTE 4u
#define NT_PRSTATUS 1u
#define PN_XNUM 0xffffu
#define EHDR_SIZE 64u
#define PHDR_SIZE 56u
#define SHDR_SIZE 64u
#define PRSTATUS_REG_OFF 112u
#define PRSTATUS_SIZE 336u
#define QEMU_STATE_MIN 432u /* version 1 without kernel_gs_base */
#define QEMU_STATE_KGS 440u /* with kernel_gs_base */

hvi_status hvi_dump_fail(struct hvi_dump *d, hvi_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, sizeof(d->err), fmt, ap);
    va_end(ap);
    return st;
}

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* [off, off + len) lies inside the file (no overflow). */
static bool in_file(const struct hvi_dump *d, uint64_t off, uint64_t len)
{
    return off <= d->size && len <= d->size - off;
}

/* ---- notes ---------------------------------------------------------------------------- */

/* The state of one vCPU as the notes give it; merged into struct dump_cpu afterwards. */
struct note_cpu {
    bool prstatus, qemu;
    hvi_regs pr; /* from NT_PRSTATUS */
    hvi_regs qs; /* from the QEMU note */
};

struct note_list {
    struct note_cpu *cpu;
    uint32_t npr, nqemu, cap;
};

static hvi_status note_slot(struct hvi_dump *d, struct note_list *l, uint32_t index,
                            struct note_cpu **out)
{
    if (index >= HVI_DUMP_MAX_VCPUS)
        return hvi_dump_fail(d, HVI_E_FORMAT, "more than %u vCPU notes", HVI_DUMP_MAX_VCPUS);
    if (index >= l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 4;
        while (cap <= index)
            cap *= 2;
        struct note_cpu *n = realloc(l->cpu, (size_t)cap * sizeof(*n));
        if (!n)
            return HVI_E_NOMEM;
        memset(n + l->cap, 0, (size_t)(cap - l->cap) * sizeof(*n));
        l->cpu = n;
        l->cap = cap;
    }
    *out = &l->cpu[index];
    return HVI_OK;
}

/* The i-th u64 of pr_reg. */
static uint64_t pr_reg(const uint8_t *reg, unsigned i)
{
    return rd64(reg + (size_t)8 * i);
}

static void parse_prstatus(const uint8_t *desc, hvi_regs *r)
{
    /* pr_reg order -> hardware GPR index */
    static const uint8_t gpr_at[16] = {
        [HVI_R15] = 0,  [HVI_R14] = 1,  [HVI_R13] = 2,  [HVI_R12] = 3,
        [HVI_RBP] = 4,  [HVI_RBX] = 5,  [HVI_R11] = 6,  [HVI_R10] = 7,
        [HVI_R9] = 8,   [HVI_R8] = 9,   [HVI_RAX] = 10, [HVI_RCX] = 11,
        [HVI_RDX] = 12, [HVI_RSI] = 13, [HVI_RDI] = 14, [HVI_RSP] = 19,
    };
    const uint8_t *reg = desc + PRSTATUS_REG_OFF;
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < HVI_GPR_COUNT; i++)
        r->gpr[i] = pr_reg(reg, gpr_at[i]);
    r->rip = pr_reg(reg, 16);
    r->rflags = pr_reg(reg, 18);
    r->seg[HVI_CS].selector = (uint16_t)pr_reg(reg, 17);
    r->seg[HVI_SS].selector = (uint16_t)pr_reg(reg, 20);
    r->fs_base = pr_reg(reg, 21);
    r->gs_base = pr_reg(reg, 22);
    r->seg[HVI_DS].selector = (uint16_t)pr_reg(reg, 23);
    r->seg[HVI_ES].selector = (uint16_t)pr_reg(reg, 24);
    r->seg[HVI_FS].selector = (uint16_t)pr_reg(reg, 25);
    r->seg[HVI_GS].selector = (uint16_t)pr_reg(reg, 26);
    r->seg[HVI_FS].base = r->fs_base;
    r->seg[HVI_GS].base = r->gs_base;
    r->valid = HVI_REGS_GPR | HVI_REGS_SEG | HVI_REGS_FSGS;
}

/* QEMUCPUSegment at p -> hvi_segment (access rights in VMCS layout from the descriptor flags:
 * type/S/DPL/P at flags 15:8, AVL/L/D/G at flags 23:20). */
static hvi_segment qemu_seg(const uint8_t *p)
{
    hvi_segment s;
    uint32_t flags = rd32(p + 8);
    s.selector = (uint16_t)rd32(p);
    s.limit = rd32(p + 4);
    s.ar = (uint16_t)((flags >> 8) & 0xf0ffu);
    s.base = rd64(p + 16);
    return s;
}

#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define AR_L (1u << 13)

/*
 * The notes carry no EFER. Long mode is derived: paging with PAE, and a 64-bit code segment
 * (CS.L) or descriptor tables above 4 GiB (a vCPU running 32-bit user code of a 64-bit kernel
 * has CS.L = 0 but keeps its 64-bit IDT/GDT). NXE is not derived (the walker treats bit 63 as
 * XD in every PAE-or-wider mode anyway); SCE is unknown.
 */
static uint64_t derive_efer(const hvi_regs *r)
{
    if (!(r->cr0 & CR0_PG) || !(r->cr4 & CR4_PAE))
        return 0;
    if ((r->seg[HVI_CS].ar & AR_L) || r->idtr_base > 0xffffffffull || r->gdtr_base > 0xffffffffull)
        return EFER_LME | EFER_LMA;
    return 0;
}

static void parse_qemu_state(const uint8_t *desc, uint32_t size, hvi_regs *r)
{
    /* QEMUCPUState GPR order -> hardware GPR index */
    static const uint8_t order[16] = {HVI_RAX, HVI_RBX, HVI_RCX, HVI_RDX, HVI_RSI, HVI_RDI,
                                      HVI_RSP, HVI_RBP, HVI_R8,  HVI_R9,  HVI_R10, HVI_R11,
                                      HVI_R12, HVI_R13, HVI_R14, HVI_R15};
    /* segment order cs ds es fs gs ss -> hvi_seg */
    static const uint8_t segs[6] = {HVI_CS, HVI_DS, HVI_ES, HVI_FS, HVI_GS, HVI_SS};
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < 16; i++)
        r->gpr[order[i]] = rd64(desc + 8 + (size_t)8 * (unsigned)i);
    r->rip = rd64(desc + 136);
    r->rflags = rd64(desc + 144);
    for (int i = 0; i < 6; i++)
        r->seg[segs[i]] = qemu_seg(desc + 152 + (size_t)24 * (unsigned)i);
    hvi_segment gdt = qemu_seg(desc + 344),
                idt = qemu_seg(desc + 368); /* gdt, idt: segments 8, 9 */
    r->gdtr_base = gdt.base;
    r->gdtr_limit = (uint16_t)gdt.limit;
    r->idtr_base = idt.base;
    r->idtr_limit = (uint16_t)idt.limit;
    r->cr0 = rd64(desc + 392);
    r->cr2 = rd64(desc + 408);
    r->cr3 = rd64(desc + 416);
    r->cr4 = rd64(desc + 424);
    r->fs_base = r->seg[HVI_FS].base;
    r->gs_base = r->seg[HVI_GS].base;
    if (size >= QEMU_STATE_KGS)
        r->kernel_gs_base = rd64(desc + 432);
    r->efer = derive_efer(r);
    r->valid = HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_SEG | HVI_REGS_SEGBASE |
               HVI_REGS_FSGS | HVI_REGS_DTR;
}

static hvi_status parse_one_note(struct hvi_dump *d, struct note_list *l, uint32_t type,
                                 const uint8_t *name, uint32_t namesz, const uint8_t *desc,
                                 uint32_t descsz)
{
    struct note_cpu *c = NULL;
    hvi_status st;
    bool core = namesz == 5 && !memcmp(name, "CORE", 5);
    bool qemu =
        (namesz == 5 && !memcmp(name, "QEMU", 5)) || (namesz == 4 && !memcmp(name, "QEMU", 4));
    if (core && type == NT_PRSTATUS) {
        if (descsz < PRSTATUS_SIZE)
            return hvi_dump_fail(d, HVI_E_FORMAT, "NT_PRSTATUS note of %u bytes (< %u)", descsz,
                                 PRSTATUS_SIZE);
        if ((st = note_slot(d, l, l->npr, &c)) != HVI_OK)
            return st;
        l->npr++;
        c->prstatus = true;
        parse_prstatus(desc, &c->pr);
    } else if (qemu) {
        if (descsz < 8)
            return hvi_dump_fail(d, HVI_E_FORMAT, "QEMU note of %u bytes", descsz);
        uint32_t version = rd32(desc), size = rd32(desc + 4);
        if (version != 1)
            return hvi_dump_fail(d, HVI_E_FORMAT, "QEMU note version %u (only 1 is known)",
                                 version);
        if (size < QEMU_STATE_MIN || size > descsz)
            return hvi_dump_fail(d, HVI_E_FORMAT, "QEMU note state size %u (note holds %u)", size,
                                 descsz);
        if ((st = note_slot(d, l, l->nqemu, &c)) != HVI_OK)
            return st;
        l->nqemu++;
        c->qemu = true;
        parse_qemu_state(desc, size, &c->qs);
    }
    return HVI_OK; /* other notes (VMCOREINFO, ...) are ignored */
}

static hvi_status parse_notes(struct hvi_dump *d, struct note_list *l, uint64_t off, uint64_t len)
{
    const uint8_t *p = d->base + off;
    uint64_t pos = 0;
    while (len - pos >= 12) {
        uint32_t namesz = rd32(p + pos), descsz = rd32(p + pos + 4), type = rd32(p + pos + 8);
        uint64_t name_pad = ((uint64_t)namesz + 3) & ~3ull,
                 desc_pad = ((uint64_t)descsz + 3) & ~3ull;
        uint64_t left = len - pos - 12;
        if (name_pad > left || desc_pad > left - name_pad)
            return hvi_dump_fail(d, HVI_E_FORMAT,
                                 "note at file offset 0x%llx (name %u, desc %u bytes) overruns "
                                 "its PT_NOTE segment",
                                 (unsigned long long)(off + pos), namesz, descsz);
        const uint8_t *name = p + pos + 12, *desc = name + name_pad;
        hvi_status st = parse_one_note(d, l, type, name, namesz, desc, descsz);
        if (st != HVI_OK)
            return st;
        pos += 12 + name_pad + desc_pad;
    }
    return HVI_OK;
}

/* ---- program headers ------------------------------------------------------------------ */

static hvi_status add_segment(struct hvi_dump *d, const uint8_t *ph, uint32_t *cap)
{
    uint64_t off = rd64(ph + 8), paddr = rd64(ph + 24), filesz = rd64(ph + 32),
             memsz = rd64(ph + 40);
    if (filesz == 0)
        return HVI_OK;
    if (filesz > memsz)
        return hvi_dump_fail(d, HVI_E_FORMAT, "PT_LOAD at GPA 0x%llx: p_filesz > p_memsz",
                             (unsigned long long)paddr);
    if (!in_file(d, off, filesz))
        return hvi_dump_fail(d, HVI_E_FORMAT,
                             "PT_LOAD at GPA 0x%llx: bytes 0x%llx+0x%llx are beyond the end of "
                             "the file (0x%zx bytes; truncated dump?)",
                             (unsigned long long)paddr, (unsigned long long)off,
                             (unsigned long long)filesz, d->size);
    if (paddr > UINT64_MAX - filesz)
        return hvi_dump_fail(d, HVI_E_FORMAT, "PT_LOAD at GPA 0x%llx wraps around",
                             (unsigned long long)paddr);
    if (d->nseg == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 8;
        struct dump_seg *n = realloc(d->seg, (size_t)ncap * sizeof(*n));
        if (!n)
            return HVI_E_NOMEM;
        d->seg = n;
        *cap = ncap;
    }
    d->seg[d->nseg++] = (struct dump_seg){.gpa = paddr, .len = filesz, .off = off};
    return HVI_OK;
}

static hvi_status read_header(struct hvi_dump *d, uint64_t *phoff, uint32_t *phnum,
                              uint32_t *phentsize)
{
    const uint8_t *h = d->base;
    if (d->size < EHDR_SIZE || memcmp(h,
                                      "\x7f"
                                      "ELF",
                                      4) != 0)
        return hvi_dump_fail(d, HVI_E_FORMAT, "not an ELF file");
    if (h[4] != 2 || h[5] != 1)
        return hvi_dump_fail(d, HVI_E_FORMAT, "not a 64-bit little-endian ELF file");
    if (rd16(h + 16) != 4 || rd16(h + 18) != 62)
        return hvi_dump_fail(d, HVI_E_FORMAT, "not an x86-64 ELF core (type %u, machine %u)",
                             rd16(h + 16), rd16(h + 18));
    *phoff = rd64(h + 32);
    *phentsize = rd16(h + 54);
    *phnum = rd16(h + 56);
    if (*phnum == PN_XNUM) { /* the real count is in section header 0 */
        uint64_t shoff = rd64(h + 40);
        if (rd16(h + 58) < SHDR_SIZE || !in_file(d, shoff, SHDR_SIZE))
            return hvi_dump_fail(d, HVI_E_FORMAT, "PN_XNUM without a readable section header 0");
        *phnum = rd32(d->base + shoff + 44);
    }
    if (*phentsize < PHDR_SIZE)
        return hvi_dump_fail(d, HVI_E_FORMAT, "program header size %u (< %u)", *phentsize,
                             PHDR_SIZE);
    if (*phnum == 0 || *phnum > HVI_DUMP_MAX_SEGMENTS)
        return hvi_dump_fail(d, HVI_E_FORMAT, "%u program headers (1..%u accepted)", *phnum,
                             HVI_DUMP_MAX_SEGMENTS);
    if (!in_file(d, *phoff, (uint64_t)*phnum * *phentsize))
        return hvi_dump_fail(d, HVI_E_FORMAT, "%u program headers at 0x%llx overrun the file",
                             *phnum, (unsigned long long)*phoff);
    return HVI_OK;
}

/* Merge the per-kind note lists into one register set per vCPU: the QEMU note gives
 * everything it has; NT_PRSTATUS fills in when there is no QEMU note for that vCPU. */
static hvi_status merge_cpus(struct hvi_dump *d, const struct note_list *l)
{
    uint32_t n = l->npr > l->nqemu ? l->npr : l->nqemu;
    d->nqemu = l->nqemu;
    if (n == 0)
        return HVI_OK;
    d->cpu = calloc(n, sizeof(*d->cpu));
    if (!d->cpu)
        return HVI_E_NOMEM;
    d->ncpu = n;
    for (uint32_t i = 0; i < n; i++)
        d->cpu[i].regs = l->cpu[i].qemu ? l->cpu[i].qs : l->cpu[i].pr;
    return HVI_OK;
}

hvi_status hvi_dump_parse_elf(struct hvi_dump *d)
{
    uint64_t phoff = 0;
    uint32_t phnum = 0, phentsize = 0, cap = 0;
    uint64_t note_bytes = 0;
    struct note_list notes = {0};
    hvi_status st = read_header(d, &phoff, &phnum, &phentsize);
    for (uint32_t i = 0; st == HVI_OK && i < phnum; i++) {
        const uint8_t *ph = d->base + phoff + (uint64_t)i * phentsize;
        uint32_t type = rd32(ph);
        if (type == PT_LOAD) {
            st = add_segment(d, ph, &cap);
        } else if (type == PT_NOTE) {
            uint64_t off = rd64(ph + 8), len = rd64(ph + 32);
            if (!in_file(d, off, len))
                st = hvi_dump_fail(d, HVI_E_FORMAT, "PT_NOTE 0x%llx+0x%llx beyond the file",
                                   (unsigned long long)off, (unsigned long long)len);
            else if ((note_bytes += len) > HVI_DUMP_MAX_NOTES_BYTES)
                st = hvi_dump_fail(d, HVI_E_FORMAT, "more than %u bytes of notes",
                                   HVI_DUMP_MAX_NOTES_BYTES);
            else
                st = parse_notes(d, &notes, off, len);
        }
    }
    if (st == HVI_OK && d->nseg == 0)
        st = hvi_dump_fail(d, HVI_E_FORMAT, "no guest memory (no PT_LOAD with file bytes)");
    if (st == HVI_OK)
        st = hvi_dump_finish_segments(d);
    if (st == HVI_OK)
        st = merge_cpus(d, &notes);
    free(notes.cpu);
    return st;
}

static int seg_cmp(const void *a, const void *b)
{
    const struct dump_seg *x = a, *y = b;
    return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

hvi_status hvi_dump_finish_segments(struct hvi_dump *d)
{
    qsort(d->seg, d->nseg, sizeof(*d->seg), seg_cmp);
    d->mem_bytes = 0;
    for (uint32_t i = 0; i < d->nseg; i++) {
        const struct dump_seg *s = &d->seg[i];
        if (i + 1 < d->nseg && s->gpa + s->len > d->seg[i + 1].gpa)
            return hvi_dump_fail(d, HVI_E_FORMAT,
                                 "memory segments overlap: GPA 0x%llx+0x%llx and 0x%llx",
                                 (unsigned long long)s->gpa, (unsigned long long)s->len,
                                 (unsigned long long)d->seg[i + 1].gpa);
        d->mem_bytes += s->len;
    }
    d->max_gpa = d->seg[d->nseg - 1].gpa + d->seg[d->nseg - 1].len;
    return HVI_OK;
}
