/* typeinfo on a mock kernel built here with -g (DWARF) and `pahole -J` (BTF): both paths give
 * identical offsets and identical generated YAML; bzImages with gzip/xz/zstd payloads are
 * extracted; malformed BTF/ELF/bzImage inputs give a clear error, never a crash; the extension
 * fields of lix_fields_ext.def are exactly the generator's extension rows. */
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "harness.h"
#include "ti_util.h"
#include "typeinfo/genlinux_rules.h"

extern const struct gl_field hvi_gl_fields[];
extern const size_t hvi_gl_field_count;

static char *g_dir;
static char g_so[128], g_nobtf[128];
static const char *g_skip;

static void build_mock(void)
{
    if (g_dir || g_skip)
        return;
    g_dir = ti_tmpdir();
    if (!g_dir) {
        g_skip = "cannot create a temp dir";
        return;
    }
    snprintf(g_so, sizeof(g_so), "%s/mock.so", g_dir);
    snprintf(g_nobtf, sizeof(g_nobtf), "%s/mock_nobtf.so", g_dir);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "cc -g -O0 -shared -fPIC -nostdlib -o %s %s/tests/unit/typeinfo/mock_kernel.c && "
             "cp %s %s && pahole -J %s",
             g_so, HVI_SOURCE_DIR, g_so, g_nobtf, g_so);
    if (ti_run(cmd) != 0)
        g_skip = "cannot build the mock kernel (needs cc -g and pahole -J from dwarves)";
}

static hvi_status gen(struct hvi_typeinfo *ti, char **text, size_t *len)
{
    FILE *f = open_memstream(text, len);
    if (!f)
        return HVI_E_NOMEM;
    struct hvi_genlinux_opts o = {NULL, NULL, true};
    char err[HVI_TI_ERR_LEN];
    hvi_status st = hvi_genlinux_write(ti, &o, f, NULL, err, sizeof(err));
    fclose(f);
    return st;
}

HVI_TEST(btf_and_dwarf_identical)
{
    build_mock();
    if (g_skip)
        SKIP_CASE(g_skip);
    struct hvi_typeinfo *b = NULL, *d = NULL;
    char err[HVI_TI_ERR_LEN];
    CHECK_OK(hvi_typeinfo_open_btf(g_so, &b, err, sizeof(err)));
    CHECK_OK(hvi_typeinfo_open_dwarf(g_so, &d, err, sizeof(err)));
    REQUIRE(b && d);
    CHECK_STR(hvi_typeinfo_source(b), "btf");
    CHECK_STR(hvi_typeinfo_source(d), "dwarf");
    unsigned compared = 0;
    for (size_t i = 0; i < hvi_gl_field_count; i++) {
        const struct gl_field *f = &hvi_gl_fields[i];
        if (f->rule != GL_OFF && f->rule != GL_BIT)
            continue;
        uint64_t bb = 1, db = 2;
        uint32_t bs = 1, ds = 2, bt = 1, dt = 2;
        hvi_status sb = hvi_typeinfo_member(b, f->a, f->b, &bb, &bs, &bt);
        hvi_status sd = hvi_typeinfo_member(d, f->a, f->b, &db, &ds, &dt);
        CHECK_EQ_U64(sb, sd);
        if (sb == HVI_OK && sd == HVI_OK) {
            CHECK_EQ_U64(bb, db);
            CHECK_EQ_U64(bs, ds);
            CHECK_EQ_U64(bt, dt);
            compared++;
        }
    }
    CHECK(compared >= 80); /* the mock defines most rows */
    uint32_t v = 0;
    CHECK_OK(hvi_typeinfo_offset(b, "task_struct", "comm", &v));
    CHECK_EQ_U64(v, 0x98);
    CHECK_OK(hvi_typeinfo_offset(d, "mm_struct", "context.vdso", &v)); /* nested + anonymous */
    CHECK_EQ_U64(v, 0x88);
    uint64_t bits;
    uint32_t bsz;
    CHECK_OK(hvi_typeinfo_member(d, "task_struct", "in_execve", &bits, &bsz, NULL));
    CHECK_EQ_U64(bits, 0x38 * 8 + 2);
    CHECK_EQ_U64(bsz, 1);
    int64_t e = 0;
    CHECK_OK(hvi_typeinfo_enum_value(b, "maple_arange_64", &e));
    CHECK_EQ_U64(e, 3);
    CHECK_STATUS(hvi_typeinfo_offset(b, "task_struct", "no_such", &v), HVI_E_NOT_FOUND);
    CHECK_OK(hvi_typeinfo_func_param(b, "__vma_adjust", "expand"));
    CHECK_OK(hvi_typeinfo_func_param(d, "__vma_adjust", "expand"));
    CHECK_STATUS(hvi_typeinfo_func_param(b, "__vma_adjust", "insert"), HVI_E_NOT_FOUND);
    CHECK_STATUS(hvi_typeinfo_func_param(d, "do_exit", "expand"), HVI_E_NOT_FOUND);
    CHECK_STATUS(hvi_typeinfo_func_param(d, "no_such_fn", "x"), HVI_E_NOT_FOUND);
    CHECK_STATUS(hvi_typeinfo_offset(d, "no_such_struct", "x", &v), HVI_E_NOT_FOUND);
    CHECK_STATUS(hvi_typeinfo_offset(b, "task_struct", "a..b", &v), HVI_E_INVAL);
    /* Whole outputs: identical apart from the source line. */
    char *tb = NULL, *td = NULL;
    size_t lb = 0, ld = 0;
    CHECK_OK(gen(b, &tb, &lb));
    CHECK_OK(gen(d, &td, &ld));
    if (tb && td) {
        const char *bb2 = strchr(tb, '\n'), *db2 = strchr(td, '\n');
        CHECK(bb2 && db2 && !strcmp(bb2, db2));
        CHECK(strstr(tb, "version: 6.1.0-mock*\n") != NULL);
        CHECK(strstr(tb, "VmNextOffset : 0xffffffff") != NULL); /* absent in the mock */
        CHECK(strstr(tb, "CommOffset : 0x0098") != NULL);
        CHECK(strstr(tb, "name: do_exit") != NULL);
        CHECK(strstr(tb, "name: panic") == NULL); /* not defined: left out */
        CHECK(strstr(tb, "HasVmaAdjustExpand : 0x0001") != NULL); /* from the prototype */
    }
    free(tb);
    free(td);
    hvi_typeinfo_free(b);
    hvi_typeinfo_free(d);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    void *buf = NULL;
    if (hvi_ti_read_file(path, &buf, len, NULL, 0) != HVI_OK)
        return NULL;
    return buf;
}

HVI_TEST(malformed_btf_and_elf)
{
    build_mock();
    if (g_skip)
        SKIP_CASE(g_skip);
    size_t len = 0;
    uint8_t *elf = slurp(g_so, &len);
    REQUIRE(elf);
    const void *sec = NULL;
    size_t sec_len = 0;
    CHECK_OK(hvi_typeinfo_elf_section(elf, len, ".BTF", &sec, &sec_len));
    REQUIRE(sec && sec_len > 24);
    struct hvi_typeinfo *ti = NULL;
    char err[HVI_TI_ERR_LEN];
    CHECK_OK(hvi_typeinfo_open_btf_mem(sec, sec_len, &ti, err, sizeof(err))); /* raw BTF */
    hvi_typeinfo_free(ti);
    size_t cuts[] = {0, 3, 4, 23, 24, 40, sec_len / 2, sec_len - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        ti = NULL;
        err[0] = 0;
        hvi_status st = hvi_typeinfo_open_btf_mem(sec, cuts[i], &ti, err, sizeof(err));
        CHECK(st != HVI_OK && ti == NULL && err[0]);
    }
    uint8_t *bad = malloc(sec_len);
    REQUIRE(bad);
    uint32_t junk[] = {0xffffffffu, 0x7fffffffu, 0xfffffff0u};
    for (size_t fld = 4; fld < 24; fld += 4) { /* hdr_len, type_off/len, str_off/len */
        for (size_t j = 0; j < 3; j++) { /* offsets/lengths past the end */
            memcpy(bad, sec, sec_len);
            memcpy(bad + fld, &junk[j], 4);
            ti = NULL;
            CHECK(hvi_typeinfo_open_btf_mem(bad, sec_len, &ti, err, sizeof(err)) != HVI_OK);
            hvi_typeinfo_free(ti);
        }
    }
    free(bad);
    /* Truncated ELF: section headers beyond the end. */
    for (size_t cut = 16; cut < len; cut = cut * 3) {
        ti = NULL;
        err[0] = 0;
        CHECK(hvi_typeinfo_open_btf_mem(elf, cut, &ti, err, sizeof(err)) != HVI_OK);
        CHECK(err[0] != 0);
    }
    free(elf);
    /* An ELF without .BTF names the problem. */
    err[0] = 0;
    CHECK_STATUS(hvi_typeinfo_open_btf(g_nobtf, &ti, err, sizeof(err)), HVI_E_NOT_FOUND);
    CHECK(strstr(err, ".BTF") != NULL);
    CHECK_STATUS(hvi_typeinfo_open_btf("/nonexistent/x", &ti, err, sizeof(err)), HVI_E_IO);
    CHECK_STATUS(hvi_typeinfo_open_dwarf("/nonexistent/x", &ti, err, sizeof(err)), HVI_E_IO);
    CHECK_STATUS(hvi_typeinfo_open_btf_mem("garbage!", 8, &ti, err, sizeof(err)), HVI_E_FORMAT);
}

/* A minimal boot image: setup header at 0x1f1.., payload at (1+1)*512. */
static uint8_t *make_bzimage(const uint8_t *payload, size_t plen, size_t *out_len)
{
    size_t hdr = 1024;
    uint8_t *b = calloc(1, hdr + plen);
    if (!b)
        return NULL;
    b[0x1f1] = 1;
    memcpy(b + 0x202, "HdrS", 4);
    b[0x206] = 0x0f;
    b[0x207] = 0x02;
    uint32_t pl = (uint32_t)plen;
    memcpy(b + 0x24c, &pl, 4);
    memcpy(b + hdr, payload, plen);
    *out_len = hdr + plen;
    return b;
}

static uint8_t *gzip_of(const uint8_t *in, size_t n, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, n) + 64;
    uint8_t *o = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = o;
    z.avail_out = (uInt)cap;
    int r = o ? deflate(&z, Z_FINISH) : Z_MEM_ERROR;
    *out_len = z.total_out;
    deflateEnd(&z);
    if (r != Z_STREAM_END) {
        free(o);
        return NULL;
    }
    return o;
}

static uint8_t *compress_as(int codec, const uint8_t *in, size_t n, size_t *out_len)
{
    if (codec == 0)
        return gzip_of(in, n, out_len);
    size_t cap = n + n / 2 + 4096;
    uint8_t *o = malloc(cap);
    if (!o)
        return NULL;
    if (codec == 1) {
        size_t pos = 0;
        if (lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, in, n, o, &pos, cap) != LZMA_OK) {
            free(o);
            return NULL;
        }
        *out_len = pos;
        return o;
    }
    size_t r = ZSTD_compress(o, cap, in, n, 3);
    if (ZSTD_isError(r)) {
        free(o);
        return NULL;
    }
    *out_len = r;
    return o;
}

HVI_TEST(bzimage_payloads)
{
    build_mock();
    if (g_skip)
        SKIP_CASE(g_skip);
    size_t len = 0;
    uint8_t *elf = slurp(g_so, &len);
    REQUIRE(elf);
    for (int codec = 0; codec < 3; codec++) {
        size_t clen = 0, blen = 0;
        uint8_t *c = compress_as(codec, elf, len, &clen);
        REQUIRE(c);
        uint8_t *bz = make_bzimage(c, clen, &blen);
        free(c);
        REQUIRE(bz);
        CHECK_EQ_U64(hvi_typeinfo_classify(bz, blen), HVI_TI_BZIMAGE);
        void *out = NULL;
        size_t out_len = 0;
        char err[HVI_TI_ERR_LEN];
        CHECK_OK(hvi_typeinfo_extract_vmlinux(bz, blen, &out, &out_len, err, sizeof(err)));
        CHECK(out_len == len && out && !memcmp(out, elf, len));
        free(out);
        char rel[64] = "";
        CHECK_OK(hvi_typeinfo_release_from_buffer(bz, blen, rel, sizeof(rel)));
        CHECK_STR(rel, "6.1.0-mock");
        struct hvi_typeinfo *ti = NULL;
        CHECK_OK(hvi_typeinfo_open_btf_mem(bz, blen, &ti, err, sizeof(err)));
        hvi_typeinfo_free(ti);
        /* Truncated payloads fail cleanly (header length kept: it now lies). */
        for (size_t cut = 1100; cut < blen; cut += (blen - 1000) / 3) {
            ti = NULL;
            err[0] = 0;
            CHECK(hvi_typeinfo_open_btf_mem(bz, cut, &ti, err, sizeof(err)) != HVI_OK);
            CHECK(ti == NULL && err[0] != 0);
        }
        free(bz);
    }
    free(elf);
}

/* The def file lists exactly the extension rows, in table order within each group. */
struct ext_name {
    const char *g, *f;
};
static const struct ext_name ext_def[] = {
#define HVI_LIX_EXT_FIELD(g, f) {#g, #f},
#include "cami/lix_fields_ext.def"
#undef HVI_LIX_EXT_FIELD
};

HVI_TEST(ext_def_matches_table)
{
    size_t n = sizeof(ext_def) / sizeof(ext_def[0]);
    CHECK(n >= 20);
    size_t last_row = 0, first_row = hvi_gl_field_count;
    for (size_t i = 0; i < n; i++) {
        size_t row = hvi_gl_field_count;
        for (size_t r = 0; r < hvi_gl_field_count; r++)
            if (!strcmp(hvi_gl_fields[r].group, ext_def[i].g) &&
                !strcmp(hvi_gl_fields[r].field, ext_def[i].f))
                row = r;
        if (row == hvi_gl_field_count) {
            fprintf(stderr, "  %s.%s has no generator row\n", ext_def[i].g, ext_def[i].f);
            CHECK(0);
            continue;
        }
        CHECK(i == 0 || row > last_row); /* same order as the table */
        if (i == 0)
            first_row = row;
        last_row = row;
    }
    /* and every row after the first extension row is in the def file */
    CHECK_EQ_U64(hvi_gl_field_count - first_row, n);
}

int main(void)
{
    int rc = hvi_test_run_all();
    if (g_dir)
        ti_rmdir(g_dir);
    return rc;
}
