/*
 * The dump backend on synthetic QEMU-style ELF cores built here: registers from the notes
 * (QEMU note first, NT_PRSTATUS as fallback, EFER derived), memory by GPA with holes refused,
 * pages split between segments, the read-only capability set, hostile files (truncated,
 * overlapping, huge counts, note sizes that overflow, offsets beyond the file) refused with
 * HVI_E_FORMAT, and the whole Linux view on a dump of the simulator's synthetic kernel (ELF and
 * raw) equal to the live view.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dump_internal.h" /* nbounce: pages handed out and not given back */
#include "elf_writer.h"
#include "harness.h"
#include "hvi/linux.h"
#include "hvi_dump.h"
#include "hvi_sim.h"

static hvi_regs sample_regs(uint32_t i)
{
    hvi_regs r;
    memset(&r, 0, sizeof(r));
    for (int g = 0; g < HVI_GPR_COUNT; g++)
        r.gpr[g] = 0x1000ull * (i + 1) + (uint64_t)g;
    r.rip = 0xffffffff81000000ull + i;
    r.rflags = 0x246;
    r.cr0 = 0x80050033ull;
    r.cr2 = 0x7f0000001000ull;
    r.cr3 = 0x1234000ull + 0x1000ull * i;
    r.cr4 = 0x3006f0ull;
    r.seg[HVI_CS] = (hvi_segment){.selector = 0x10, .limit = 0xfffff, .ar = 0xa09b, .base = 0};
    r.seg[HVI_SS] = (hvi_segment){.selector = 0x18, .limit = 0xfffff, .ar = 0xc093};
    r.seg[HVI_GS] = (hvi_segment){.selector = 0, .base = 0xffff88801fc00000ull + 0x1000ull * i};
    r.seg[HVI_FS] = (hvi_segment){.selector = 0, .base = 0x7f00deadb000ull};
    r.fs_base = r.seg[HVI_FS].base;
    r.gs_base = r.seg[HVI_GS].base;
    r.kernel_gs_base = 0x7777000ull + i;
    r.idtr_base = 0xfffffe0000000000ull;
    r.idtr_limit = 0xfff;
    r.gdtr_base = 0xfffffe0000001000ull + 0x10000ull * i;
    r.gdtr_limit = 0x7f;
    return r;
}

/* Two ranges like q35 with a hole: 64 KiB at 0 and 8 KiB at 4 GiB; each byte tells its GPA. */
static uint8_t low[0x10000], high[0x2000];

static void fill_ram(void)
{
    for (size_t i = 0; i < sizeof(low); i++)
        low[i] = (uint8_t)(i * 7 + (i >> 12));
    for (size_t i = 0; i < sizeof(high); i++)
        high[i] = (uint8_t)(i * 13 + 5);
}

static uint8_t *sample_dump(size_t ncpu, const struct ew_opts *o, size_t *len,
                            struct ew_layout *lay)
{
    fill_ram();
    hvi_regs cpus[4];
    for (size_t i = 0; i < ncpu && i < 4; i++)
        cpus[i] = sample_regs((uint32_t)i);
    struct ew_seg segs[] = {{0x100000000ull, high, sizeof(high)}, {0, low, sizeof(low)}};
    return ew_build(segs, 2, cpus, ncpu, o, len, lay);
}

static hvi_dump *open_buf(const uint8_t *b, size_t n, hvi_status *st)
{
    hvi_dump *d = NULL;
    *st = hvi_dump_open_buffer(b, n, &d);
    return d;
}

HVI_TEST(registers_from_qemu_notes)
{
    size_t n;
    uint8_t *b = sample_dump(2, NULL, &n, NULL);
    REQUIRE(b);
    hvi_status st;
    hvi_dump *d = open_buf(b, n, &st);
    CHECK_OK(st);
    REQUIRE(d);
    hvi_glue g;
    CHECK_OK(hvi_dump_glue(d, &g));
    CHECK_OK(hvi_glue_check(&g));
    uint32_t count = 0;
    CHECK_OK(g.vcpu_count(g.ctx, &count));
    CHECK(count == 2);
    for (uint32_t v = 0; v < 2; v++) {
        hvi_regs want = sample_regs(v), r;
        CHECK_OK(g.get_regs(g.ctx, v,
                            HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_DTR |
                                HVI_REGS_SEGBASE | HVI_REGS_FSGS,
                            &r));
        CHECK(memcmp(r.gpr, want.gpr, sizeof(r.gpr)) == 0);
        CHECK_EQ_U64(r.rip, want.rip);
        CHECK_EQ_U64(r.rflags, want.rflags);
        CHECK_EQ_U64(r.cr0, want.cr0);
        CHECK_EQ_U64(r.cr2, want.cr2);
        CHECK_EQ_U64(r.cr3, want.cr3);
        CHECK_EQ_U64(r.cr4, want.cr4);
        CHECK_EQ_U64(r.efer, 0x500); /* LME|LMA derived from CR0.PG, CR4.PAE, CS.L */
        CHECK_EQ_U64(r.idtr_base, want.idtr_base);
        CHECK_EQ_U64(r.idtr_limit, want.idtr_limit);
        CHECK_EQ_U64(r.gdtr_base, want.gdtr_base);
        CHECK_EQ_U64(r.gdtr_limit, want.gdtr_limit);
        CHECK_EQ_U64(r.gs_base, want.gs_base);
        CHECK_EQ_U64(r.fs_base, want.fs_base);
        CHECK_EQ_U64(r.kernel_gs_base, want.kernel_gs_base);
        CHECK_EQ_U64(r.seg[HVI_CS].ar, 0xa09b);
        CHECK_EQ_U64(r.seg[HVI_CS].selector, 0x10);
        CHECK_EQ_U64(r.seg[HVI_SS].selector, 0x18);
        CHECK_EQ_U64(r.seg[HVI_GS].base, want.gs_base);
    }
    hvi_regs r;
    CHECK_STATUS(g.get_regs(g.ctx, 2, HVI_REGS_GPR, &r), HVI_E_INVAL);
    hvi_dump_info info;
    CHECK_OK(hvi_dump_get_info(d, &info));
    CHECK(info.format == HVI_DUMP_ELF && info.vcpus == 2 && info.qemu_notes == 2 &&
          info.segments == 2);
    CHECK_EQ_U64(info.mem_bytes, sizeof(low) + sizeof(high));
    CHECK_EQ_U64(info.max_gpa, 0x100002000ull);
    hvi_dump_close(d);
    free(b);
}

HVI_TEST(read_only_capabilities)
{
    size_t n;
    uint8_t *b = sample_dump(1, NULL, &n, NULL);
    hvi_status st;
    hvi_dump *d = open_buf(b, n, &st);
    REQUIRE(d);
    hvi_glue g;
    CHECK_OK(hvi_dump_glue(d, &g));
    CHECK_EQ_U64(g.caps, HVI_CAP_PHYS_MAP | HVI_CAP_DTR);
    CHECK(!g.set_regs && !g.set_msr && !g.get_msr && !g.set_ept_rights && !g.set_breakpoint &&
          !g.set_watchpoint && !g.single_step && !g.pause && !g.resume && !g.inject_exception &&
          !g.enable_exit);
    CHECK_STR(g.name, "dump");
    hvi_dump_close(d);
    free(b);
}

HVI_TEST(memory_by_gpa_holes_refused)
{
    size_t n;
    uint8_t *b = sample_dump(1, NULL, &n, NULL);
    hvi_status st;
    hvi_dump *d = open_buf(b, n, &st);
    REQUIRE(d);
    hvi_glue g;
    hvi_dump_glue(d, &g);
    void *p = NULL;
    for (uint64_t gpa = 0; gpa < sizeof(low); gpa += 4096) {
        CHECK_OK(g.map_gpa(g.ctx, gpa, &p));
        CHECK(p && memcmp(p, low + gpa, 4096) == 0);
        CHECK_OK(g.unmap_gpa(g.ctx, gpa, p));
    }
    CHECK_OK(g.map_gpa(g.ctx, 0x100001000ull, &p));
    CHECK(p && memcmp(p, high + 0x1000, 4096) == 0);
    CHECK_OK(g.unmap_gpa(g.ctx, 0x100001000ull, p));
    CHECK_STATUS(g.map_gpa(g.ctx, sizeof(low), &p), HVI_E_RANGE); /* the hole */
    CHECK_STATUS(g.map_gpa(g.ctx, 0xfffff000ull, &p), HVI_E_RANGE);
    CHECK_STATUS(g.map_gpa(g.ctx, 0x100002000ull, &p), HVI_E_RANGE); /* past the end */
    CHECK_STATUS(g.map_gpa(g.ctx, 0xfffffffffffff000ull, &p), HVI_E_RANGE);
    CHECK_STATUS(g.map_gpa(g.ctx, 0x10, &p), HVI_E_INVAL); /* unaligned */
    uint64_t gpfn = 0;
    CHECK_OK(g.max_gpfn(g.ctx, &gpfn));
    CHECK_EQ_U64(gpfn, 0x100001ull);
    /* pages are private copies: a write through a mapping never reaches the buffer or file */
    CHECK_OK(g.map_gpa(g.ctx, 0, &p));
    ((uint8_t *)p)[0] ^= 0xff;
    hvi_dump_close(d);
    free(b);
}

HVI_TEST(page_split_between_segments_is_assembled)
{
    uint8_t a[0x1800], c[0x800];
    memset(a, 0xaa, sizeof(a));
    memset(c, 0xcc, sizeof(c));
    hvi_regs r = sample_regs(0);
    /* [0, 0x1800) then [0x1c00, 0x2400): page 0x1000 = 0x800 of a, 0x400 zero, 0x400 of c */
    struct ew_seg segs[] = {{0, a, sizeof(a)}, {0x1c00, c, sizeof(c)}};
    size_t n;
    uint8_t *b = ew_build(segs, 2, &r, 1, NULL, &n, NULL);
    hvi_status st;
    hvi_dump *d = open_buf(b, n, &st);
    REQUIRE(d);
    hvi_glue g;
    hvi_dump_glue(d, &g);
    uint8_t *p = NULL;
    CHECK_OK(g.map_gpa(g.ctx, 0x1000, (void **)&p));
    REQUIRE(p);
    CHECK(p[0] == 0xaa && p[0x7ff] == 0xaa && p[0x800] == 0 && p[0xbff] == 0 && p[0xc00] == 0xcc &&
          p[0xfff] == 0xcc);
    CHECK_OK(g.unmap_gpa(g.ctx, 0x1000, p));
    CHECK_OK(g.map_gpa(g.ctx, 0x2000, (void **)&p)); /* 0x400 bytes of c, then zeros */
    CHECK(p && p[0x3ff] == 0xcc && p[0x400] == 0);
    CHECK_STATUS(g.unmap_gpa(g.ctx, 0x2000, low), HVI_E_INVAL); /* not ours */
    hvi_dump_close(d); /* frees the page still mapped (ASan: no leak) */
    free(b);
}

HVI_TEST(prstatus_only_has_no_control_registers)
{
    struct ew_opts o = {.no_qemu = true};
    size_t n;
    uint8_t *b = sample_dump(2, &o, &n, NULL);
    hvi_status st;
    hvi_dump *d = open_buf(b, n, &st);
    REQUIRE(d);
    hvi_glue g;
    hvi_dump_glue(d, &g);
    hvi_regs r, want = sample_regs(1);
    CHECK_OK(g.get_regs(g.ctx, 1, HVI_REGS_GPR | HVI_REGS_SEG | HVI_REGS_FSGS, &r));
    CHECK(memcmp(r.gpr, want.gpr, sizeof(r.gpr)) == 0);
    CHECK_EQ_U64(r.rip, want.rip);
    CHECK_EQ_U64(r.gs_base, want.gs_base);
    CHECK_EQ_U64(r.seg[HVI_CS].selector, 0x10);
    CHECK_STATUS(g.get_regs(g.ctx, 1, HVI_REGS_CR, &r), HVI_E_UNSUPPORTED);
    CHECK_STATUS(g.get_regs(g.ctx, 0, HVI_REGS_DTR, &r), HVI_E_UNSUPPORTED);
    CHECK(strstr(hvi_dump_last_error(d), "no register parts") != NULL);
    /* a missing part can be given by the integrator */
    hvi_regs cr = {.valid = HVI_REGS_CR | HVI_REGS_EFER, .cr3 = 0x5000, .cr0 = 1, .efer = 0xd01};
    CHECK_OK(hvi_dump_set_regs(d, 1, &cr));
    CHECK_OK(g.get_regs(g.ctx, 1, HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_GPR, &r));
    CHECK_EQ_U64(r.cr3, 0x5000);
    CHECK_EQ_U64(r.efer, 0xd01);
    CHECK_EQ_U64(r.rip, want.rip);
    CHECK_STATUS(hvi_dump_set_regs(d, 2, &cr), HVI_E_INVAL);
    hvi_dump_close(d);
    free(b);
}

HVI_TEST(efer_derivation_and_old_qemu_state)
{
    struct ew_opts o = {.qemu_size = 432, .no_prstatus = true}; /* no kernel_gs_base */
    hvi_regs cpus[3] = {sample_regs(0), sample_regs(1), sample_regs(2)};
    cpus[1].seg[HVI_CS].ar = 0xc0fb; /* compat-mode user code: CS.L = 0, IDT still 64-bit */
    cpus[2].cr4 &= ~(1ull << 5);     /* no PAE: not long mode */
    cpus[2].idtr_base = 0xc0000000;
    cpus[2].gdtr_base = 0xc0001000;
    struct ew_seg seg = {0, low, 0x1000};
    size_t n;
    uint8_t *b = ew_build(&seg, 1, cpus, 3, &o, &n, NULL);
    hvi_status st;
    hvi_dump *d = open_buf(b, n, &st);
    REQUIRE(d);
    hvi_glue g;
    hvi_dump_glue(d, &g);
    hvi_regs r;
    CHECK_OK(g.get_regs(g.ctx, 0, HVI_REGS_EFER | HVI_REGS_FSGS, &r));
    CHECK_EQ_U64(r.efer, 0x500);
    CHECK_EQ_U64(r.kernel_gs_base, 0);
    CHECK_EQ_U64(r.gs_base, cpus[0].gs_base);
    CHECK_OK(g.get_regs(g.ctx, 1, HVI_REGS_EFER, &r));
    CHECK_EQ_U64(r.efer, 0x500);
    CHECK_OK(g.get_regs(g.ctx, 2, HVI_REGS_EFER, &r));
    CHECK_EQ_U64(r.efer, 0);
    hvi_dump_close(d);
    free(b);
}

HVI_TEST(open_file_and_errors)
{
    size_t n;
    uint8_t *b = sample_dump(1, NULL, &n, NULL);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/hvi-dump-test-%d.elf", (int)getpid());
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    CHECK(fwrite(b, 1, n, f) == n);
    fclose(f);
    hvi_dump *d = NULL;
    CHECK_OK(hvi_dump_open(path, &d));
    REQUIRE(d);
    hvi_glue g;
    hvi_dump_glue(d, &g);
    void *p = NULL;
    CHECK_OK(g.map_gpa(g.ctx, 0x3000, &p));
    CHECK(p && memcmp(p, low + 0x3000, 4096) == 0);
    ((uint8_t *)p)[1] ^= 0x55; /* copy-on-write: the file keeps its bytes */
    hvi_dump_close(d);
    d = NULL;
    CHECK_OK(hvi_dump_open(path, &d));
    hvi_dump_glue(d, &g);
    CHECK_OK(g.map_gpa(g.ctx, 0x3000, &p));
    CHECK(p && memcmp(p, low + 0x3000, 4096) == 0);
    hvi_dump_close(d);
    d = NULL;
    /* truncated on disk: the last segment ends beyond the file */
    CHECK(truncate(path, (off_t)(n - 100)) == 0);
    CHECK_STATUS(hvi_dump_open(path, &d), HVI_E_FORMAT);
    CHECK(d == NULL && strstr(hvi_dump_last_error(NULL), "beyond the end of the file") != NULL);
    unlink(path);
    CHECK_STATUS(hvi_dump_open(path, &d), HVI_E_IO);
    CHECK(strstr(hvi_dump_last_error(NULL), "No such file") != NULL);
    CHECK_STATUS(hvi_dump_open("/tmp", &d), HVI_E_FORMAT);
    CHECK_STATUS(hvi_dump_open(NULL, &d), HVI_E_INVAL);
    CHECK_STATUS(hvi_dump_glue(NULL, &g), HVI_E_INVAL);
    hvi_dump_close(NULL);
    free(b);
}

HVI_TEST(raw_file_uses_the_q35_split)
{
    /* 3 GiB of RAM (a sparse file): file [0, 2 GiB) is GPA 0, file [2 GiB, 3 GiB) is GPA 4 GiB */
    char path[64];
    snprintf(path, sizeof(path), "/tmp/hvi-dump-raw3g-%d.bin", (int)getpid());
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    bool ok = ftruncate(fileno(f), 3ll << 30) == 0 && fseek(f, 0x1000, SEEK_SET) == 0 &&
              fputs("low", f) >= 0 && fseek(f, (2ll << 30) + 0x1000, SEEK_SET) == 0 &&
              fputs("high", f) >= 0;
    fclose(f);
    REQUIRE(ok);
    hvi_dump *d = NULL;
    hvi_glue g;
    CHECK_OK(hvi_dump_open_raw(path, 2, &d));
    REQUIRE(d && hvi_dump_glue(d, &g) == HVI_OK);
    hvi_dump_info info;
    CHECK_OK(hvi_dump_get_info(d, &info));
    CHECK(info.format == HVI_DUMP_RAW && info.segments == 2 && info.vcpus == 2);
    CHECK_EQ_U64(info.max_gpa, 5ull << 30);
    void *p = NULL;
    CHECK_OK(g.map_gpa(g.ctx, 0x1000, &p));
    CHECK(p && !memcmp(p, "low", 3));
    CHECK_OK(g.map_gpa(g.ctx, (4ull << 30) + 0x1000, &p));
    CHECK(p && !memcmp(p, "high", 4));
    CHECK_STATUS(g.map_gpa(g.ctx, 2ull << 30, &p), HVI_E_RANGE); /* the hole below 4 GiB */
    CHECK_STATUS(g.map_gpa(g.ctx, 5ull << 30, &p), HVI_E_RANGE);
    hvi_regs r;
    CHECK_STATUS(g.get_regs(g.ctx, 1, HVI_REGS_CR, &r), HVI_E_UNSUPPORTED); /* none given */
    hvi_dump_close(d);
    unlink(path);
    CHECK_STATUS(hvi_dump_open_raw(path, 1, &d), HVI_E_IO);
    CHECK_STATUS(hvi_dump_open_raw("/tmp", 0, &d), HVI_E_INVAL);
}

/* ---- hostile files ------------------------------------------------------------------- */

static void expect_format(const uint8_t *b, size_t n, const char *words)
{
    hvi_dump *d = NULL;
    hvi_status st = hvi_dump_open_buffer(b, n, &d);
    CHECK_STATUS(st, HVI_E_FORMAT);
    CHECK(d == NULL);
    if (words && !strstr(hvi_dump_last_error(NULL), words)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", hvi_dump_last_error(NULL), words);
        CHECK(!"message");
    }
    hvi_dump_close(d);
}

HVI_TEST(every_truncation_is_refused)
{
    size_t n;
    struct ew_layout lay;
    uint8_t *b = sample_dump(2, NULL, &n, &lay);
    REQUIRE(b);
    size_t refused = 0, tried = 0;
    for (size_t len = 0; len < n; len += (len < lay.data_off + 64 ? 1 : 509), tried++) {
        hvi_dump *d = NULL;
        hvi_status st = hvi_dump_open_buffer(b, len, &d);
        refused += st == HVI_E_FORMAT;
        CHECK(st == HVI_E_FORMAT && d == NULL);
        hvi_dump_close(d);
    }
    fprintf(stderr, "  %zu prefixes, %zu refused\n", tried, refused);
    free(b);
}

HVI_TEST(overlapping_segments_refused)
{
    fill_ram();
    hvi_regs r = sample_regs(0);
    struct ew_seg segs[] = {{0, low, 0x4000}, {0x3000, high, 0x2000}};
    size_t n;
    uint8_t *b = ew_build(segs, 2, &r, 1, NULL, &n, NULL);
    expect_format(b, n, "overlap");
    free(b);
    struct ew_seg same[] = {{0x1000, low, 0x1000}, {0x1000, high, 0x1000}};
    b = ew_build(same, 2, &r, 1, NULL, &n, NULL);
    expect_format(b, n, "overlap");
    free(b);
}

HVI_TEST(header_fields_out_of_bounds)
{
    size_t n;
    struct ew_layout lay;
    uint8_t *b = sample_dump(1, NULL, &n, &lay), *c = malloc(n);
    REQUIRE(b && c);
#define MUTATE(stmt, words)                                                                        \
    do {                                                                                           \
        memcpy(c, b, n);                                                                           \
        stmt;                                                                                      \
        expect_format(c, n, words);                                                                \
    } while (0)
    uint8_t *load0 = c + lay.phoff + EW_PHDR, *note = c + lay.notes_off;
    MUTATE(c[0] = 'X', "not an ELF");
    MUTATE(c[4] = 1, "64-bit");
    MUTATE(ew_put16(c + 18, 3), "x86-64");
    MUTATE(ew_put16(c + 16, 2), "x86-64");
    MUTATE(ew_put16(c + 54, 32), "program header size");
    MUTATE(ew_put16(c + 56, 0), "program headers");
    MUTATE(ew_put16(c + 56, 0xfffe), "overrun the file");
    MUTATE(ew_put64(c + 32, ~0ull - 8), "overrun the file");
    /* PN_XNUM: no section header / a huge count in sh_info */
    MUTATE(ew_put16(c + 56, 0xffff), "PN_XNUM");
    MUTATE((ew_put16(c + 56, 0xffff), ew_put16(c + 58, 64), ew_put64(c + 40, 0x100),
            ew_put32(c + 0x100 + 44, 0xffffffffu)),
           "program headers");
    /* segments */
    MUTATE(ew_put64(load0 + 8, n), "beyond the end of the file");
    MUTATE(ew_put64(load0 + 8, ~0ull - 4), "beyond the end of the file");
    MUTATE(ew_put64(load0 + 32, ~0ull), "p_filesz > p_memsz");
    MUTATE((ew_put64(load0 + 32, ~0ull), ew_put64(load0 + 40, ~0ull)), "beyond the end");
    MUTATE(ew_put64(load0 + 24, ~0ull - 0x1000), "wraps");
    MUTATE((ew_put32(load0, 0), ew_put32(load0 + EW_PHDR, 0)), "no guest memory");
    /* notes */
    MUTATE(ew_put64(c + lay.phoff + 8, n - 4), "PT_NOTE");
    MUTATE(ew_put64(c + lay.phoff + 32, ~0ull), "PT_NOTE");
    MUTATE(ew_put32(note + 4, 0xffffffffu), "overruns");
    MUTATE(ew_put32(note, 0xfffffffdu), "overruns");
    MUTATE(ew_put32(note + 4, 100), "NT_PRSTATUS note of 100");
    uint8_t *qn = note + 20 + 336; /* the QEMU note follows the one NT_PRSTATUS */
    MUTATE(ew_put32(qn + 20, 2), "version 2");
    MUTATE(ew_put32(qn + 24, 100000), "state size");
    MUTATE(ew_put32(qn + 24, 200), "state size");
#undef MUTATE
    free(b);
    free(c);
}

HVI_TEST(too_many_vcpu_notes_refused)
{
    fill_ram();
    size_t cpus = HVI_DUMP_MAX_VCPUS + 1;
    hvi_regs *r = calloc(cpus, sizeof(*r));
    REQUIRE(r);
    struct ew_seg seg = {0, low, 0x1000};
    struct ew_opts o = {.no_prstatus = true};
    size_t n;
    uint8_t *b = ew_build(&seg, 1, r, cpus, &o, &n, NULL);
    expect_format(b, n, "vCPU notes");
    free(b);
    b = ew_build(&seg, 1, r, cpus - 1, &o, &n, NULL); /* exactly the bound: accepted */
    hvi_dump *d = NULL;
    CHECK_OK(hvi_dump_open_buffer(b, n, &d));
    hvi_dump_info info;
    CHECK(d && hvi_dump_get_info(d, &info) == HVI_OK && info.vcpus == HVI_DUMP_MAX_VCPUS);
    hvi_dump_close(d);
    free(b);
    free(r);
}

/* ---- the Linux view on a dump of the simulator's synthetic kernel --------------------- */
#include "sim_guest.h"

/* Attach an engine over `g` and list the processes; NULL on failure (message printed). */
static hvi_linux_process *view(const hvi_glue *g, const char *offsets, size_t *n)
{
    hvi_engine *e = NULL;
    hvi_linux_process *p = NULL;
    if (hvi_engine_new(g, &e) != HVI_OK)
        return NULL;
    hvi_guest_params gp = {.size = sizeof(gp), .os_hint = HVI_OS_LINUX};
    if (hvi_linux_set_offsets_file(e, offsets) != HVI_OK || hvi_new_guest(e, &gp) != HVI_OK ||
        hvi_linux_list_processes(e, true, &p, n) != HVI_OK)
        fprintf(stderr, "  %s view: %s\n", g->name, hvi_last_error(e));
    hvi_engine_free(e);
    return p;
}

static void same_processes(const hvi_linux_process *a, size_t na, const hvi_linux_process *b,
                           size_t nb)
{
    CHECK(na == nb && na == 2);
    for (size_t i = 0; i < na && i < nb; i++) {
        CHECK(a[i].pid == b[i].pid && a[i].ppid == b[i].ppid && a[i].uid == b[i].uid);
        CHECK_EQ_U64(a[i].task, b[i].task);
        CHECK_STR(a[i].comm, b[i].comm);
    }
    if (na == 2 && nb == 2) {
        CHECK(b[0].pid == 7 && b[1].pid == 8 && b[0].uid == 1000);
        CHECK_STR(b[1].comm, "sim_two");
    }
}

HVI_TEST(linux_view_on_elf_and_raw_dump_equals_live)
{
    struct simguest v;
    REQUIRE(simguest_new(&v));
    hvi_glue sg;
    REQUIRE(hvi_sim_glue(v.sim, &sg) == HVI_OK);
    size_t nlive = 0, ndump = 0, nraw = 0;
    hvi_linux_process *live = view(&sg, v.offsets, &nlive);
    REQUIRE(live);
    /* the dump: all of the simulator's RAM in two PT_LOADs (split mid-way, unaligned in the
     * file), registers of vCPU 0 in the notes */
    uint64_t ram = hvi_sim_ram_size(v.sim);
    uint8_t *mem = malloc(ram);
    REQUIRE(mem && hvi_sim_phys_read(v.sim, 0, mem, ram) == HVI_OK);
    hvi_regs regs = *hvi_sim_vcpu_regs(v.sim, 0);
    struct ew_seg segs[] = {{0, mem, ram / 2}, {ram / 2, mem + ram / 2, ram / 2}};
    size_t n;
    uint8_t *b = ew_build(segs, 2, &regs, 1, NULL, &n, NULL);
    hvi_dump *d = NULL;
    hvi_glue dg;
    REQUIRE(b && hvi_dump_open_buffer(b, n, &d) == HVI_OK && hvi_dump_glue(d, &dg) == HVI_OK);
    hvi_linux_process *fromdump = view(&dg, v.offsets, &ndump);
    CHECK(fromdump != NULL);
    if (fromdump)
        same_processes(live, nlive, fromdump, ndump);
    CHECK(d->nbounce == 0); /* every page the engine mapped was given back */
    hvi_dump_close(d);
    /* raw: the same RAM in a file, registers given through the API */
    char path[64];
    snprintf(path, sizeof(path), "/tmp/hvi-dump-raw-%d.bin", (int)getpid());
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    CHECK(fwrite(mem, 1, ram, f) == ram);
    fclose(f);
    d = NULL;
    CHECK_OK(hvi_dump_open_raw(path, 1, &d));
    REQUIRE(d && hvi_dump_glue(d, &dg) == HVI_OK);
    regs.valid = HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_DTR;
    size_t nnoregs = 0;
    hvi_linux_process *noregs = view(&dg, v.offsets, &nnoregs); /* no CR3 yet: refused */
    CHECK(noregs == NULL);
    CHECK_OK(hvi_dump_set_regs(d, 0, &regs));
    hvi_linux_process *fromraw = view(&dg, v.offsets, &nraw);
    CHECK(fromraw != NULL);
    if (fromraw)
        same_processes(live, nlive, fromraw, nraw);
    hvi_dump_close(d);
    unlink(path);
    hvi_linux_free(live);
    hvi_linux_free(fromdump);
    hvi_linux_free(fromraw);
    free(b);
    free(mem);
    hvi_sim_free(v.sim);
    unlink(v.offsets);
}

HVI_TEST_MAIN()
