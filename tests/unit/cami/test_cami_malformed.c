/* CAMI malformed input: broken YAML, wrong tags, unknown names, out-of-range values, duplicates,
 * missing keys -> HVI_E_FORMAT naming file:line:column; corrupted binaries -> a status, no crash. */
#include <stdlib.h>

#include "cami/cami_priv.h"
#include "cami_test_util.h"
#include "harness.h"

static const char *const good_lix =
    "!intro_update_lix_supported_os\n"
    "version: 6.1.0-[13-]-amd64*\n"
    "hooks:\n"
    "    - !intro_update_lix_hook\n"
    "        name: commit_creds\n"
    "        handler: 0\n"
    "        skip_on_boot: 1\n"
    "fields: !opaque_structures\n"
    "    type: lix_fields\n"
    "    os_structs:\n"
    "        TaskStruct: !opaque_fields\n"
    "            CommOffset: 0x5c0\n";

static hvi_status build_msg(const char *text, char *msg, size_t n)
{
    void *out = NULL;
    size_t len = 0;
    hvi_status st = ct_build_text(text, &out, &len, msg, n);
    free(out);
    return st;
}

/* replace the first `from` in good_lix by `to` */
static hvi_status variant(const char *from, const char *to, char *msg, size_t n)
{
    char text[2048];
    const char *p = strstr(good_lix, from);
    if (!p)
        return HVI_E_INTERNAL;
    snprintf(text, sizeof(text), "%.*s%s%s", (int)(p - good_lix), good_lix, to, p + strlen(from));
    return build_msg(text, msg, n);
}

HVI_TEST(good_minimal_yaml_builds_and_reads_back)
{
    void *out = NULL;
    size_t len = 0;
    char msg[256];
    CHECK_OK(ct_build_text(good_lix, &out, &len, msg, sizeof(msg)));
    hvi_cami *c = NULL;
    REQUIRE(out);
    CHECK_OK(hvi_cami_open(out, len, &c, msg, sizeof(msg)));
    REQUIRE(c);
    const hvi_cami_lix_entry *e;
    CHECK_OK(hvi_cami_lix_select(c, "6.1.0-13-amd64 (debian-kernel@lists.debian.org)", &e));
    uint32_t v = 0;
    CHECK_OK(hvi_cami_lix_field(e, HVI_LIX_TASKSTRUCT, HVI_LIX_TASKSTRUCT_COMMOFFSET, &v));
    CHECK_EQ_U64(v, 0x5c0);
    v = 7;
    CHECK_OK(hvi_cami_lix_field(e, HVI_LIX_TASKSTRUCT, HVI_LIX_TASKSTRUCT_PIDOFFSET, &v));
    CHECK_EQ_U64(v, 0); /* left out of the YAML: reads 0 */
    v = 7;
    CHECK_OK(hvi_cami_lix_field_by_name(e, "MmStruct", "MapleTree", &v)); /* extension field */
    CHECK_EQ_U64(v, 0);
    CHECK_EQ_U64(e->hook_count, 1);
    CHECK_EQ_U64(e->hooks[0].name_hash, 0x5954dd24); /* commit_creds, from the format facts */
    CHECK_EQ_U64(e->hooks[0].skip_on_boot, 1);
    hvi_cami_close(c);
    free(out);
}

HVI_TEST(yaml_errors_name_file_line_column)
{
    char msg[512];
    CHECK_STATUS(variant("version: 6", "version: [6", msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, "YAML error") != NULL);
    CHECK_STATUS(variant("!intro_update_lix_hook", "!intro_update_lix_hookx", msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, ".yaml:4:7: expected tag !intro_update_lix_hook") != NULL);
    CHECK_STATUS(variant("CommOffset", "CommOffsett", msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, ".yaml:12:13: unknown field 'CommOffsett'") != NULL);
    CHECK_STATUS(variant("TaskStruct:", "TaskStructs:", msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, ":11:9: unknown group 'TaskStructs'") != NULL);
    CHECK_STATUS(variant("handler: 0", "handler: 300", msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, ":6:18: value 300 is out of range") != NULL);
    CHECK_STATUS(variant("0x5c0", "0x100000000", msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, "out of range") != NULL);
    CHECK_STATUS(variant("hooks:", "hookz:", msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, "unknown key 'hookz'") != NULL);
    CHECK_STATUS(variant("!intro_update_lix_supported_os", "!intro_update_lix_supported_oss", msg, sizeof(msg)),
                 HVI_E_FORMAT);
    CHECK(strstr(msg, ":1:1: unknown tag") != NULL);
    CHECK_STATUS(variant("0x5c0", "twelve", msg, sizeof(msg)), HVI_E_FORMAT);
}

static const char options_fmt[] = "globals: !global_introcore_options\n"
                                  "    linux: !global_options\n"
                                  "        core_options: !options_control\n"
                                  "            force_off: [%s]\n"
                                  "        shemu_options: !options_control\n"
                                  "            force_off: [%s]\n"
                                  "---\n%s";

HVI_TEST(option_names_are_checked_per_list_kind)
{
    char text[2048], msg[512];
    /* hvi's option names in core lists, the shemu names in shemu lists, numbers in both */
    snprintf(text, sizeof(text), options_fmt, "KM_IDT, KM_TEXT, 0x100", "TIB_ACCESS, 2", good_lix);
    CHECK_OK(build_msg(text, msg, sizeof(msg)));
    /* a name of the other kind is an error naming the place, never a silent wrong bit */
    snprintf(text, sizeof(text), options_fmt, "TIB_ACCESS", "NONE", good_lix);
    CHECK_STATUS(build_msg(text, msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, ":4:25: unknown core/process option 'TIB_ACCESS'") != NULL);
    snprintf(text, sizeof(text), options_fmt, "NONE", "KM_IDT", good_lix);
    CHECK_STATUS(build_msg(text, msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, ":6:25: unknown shemu option 'KM_IDT'") != NULL);
}

HVI_TEST(yaml_missing_key_and_duplicates)
{
    char msg[512], text[4096];
    const char *fields = strstr(good_lix, "fields:");
    snprintf(text, sizeof(text), "%.*s", (int)(fields - good_lix), good_lix);
    CHECK_STATUS(build_msg(text, msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, ":1:1: missing key 'fields'") != NULL);
    snprintf(text, sizeof(text), "%s---\n%s", good_lix, good_lix);
    CHECK_STATUS(build_msg(text, msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, ":15:10: duplicate Linux entry") != NULL);
    CHECK_STATUS(variant("            CommOffset: 0x5c0\n", "            CommOffset: 1\n            CommOffset: 2\n", msg,
                         sizeof(msg)),
                 HVI_E_FORMAT);
    CHECK(strstr(msg, "duplicate field") != NULL);
    CHECK_STATUS(build_msg("", msg, sizeof(msg)), HVI_E_FORMAT); /* nothing to support */
    const char *none[] = {"/nonexistent/hvi-cami"};
    void *out;
    size_t len;
    CHECK_STATUS(hvi_cami_build(none, 1, &out, &len, msg, sizeof(msg)), HVI_E_IO);
}

/* aliases re-read their anchor: a small file naming one big pattern many times is refused */
HVI_TEST(yaml_alias_expansion_is_bounded)
{
    size_t cap = 1 << 20, n = 0;
    char *t = malloc(cap), msg[512];
    REQUIRE(t);
    n += (size_t)snprintf(t + n, cap - n,
                          "!intro_update_win_function\nname: F\nguest64: True\npatterns:\n"
                          "    - &p !intro_update_win_pattern\n        min_ver: 1\n        max_ver: 2\n"
                          "        pattern: !code_pattern\n            code:\n                - [");
    for (int i = 0; i < 20000; i++)
        n += (size_t)snprintf(t + n, cap - n, "%s1", i ? "," : "");
    n += (size_t)snprintf(t + n, cap - n, "]\n");
    for (int i = 0; i < 20000 && n + 16 < cap; i++)
        n += (size_t)snprintf(t + n, cap - n, "    - *p\n");
    CHECK_STATUS(build_msg(t, msg, sizeof(msg)), HVI_E_FORMAT);
    CHECK(strstr(msg, "too much work") != NULL);
    free(t);
}

/* ---- binary ---------------------------------------------------------------------------- */

static void *good_bin(size_t *len)
{
    void *out = NULL;
    char msg[256];
    if (ct_build_text(good_lix, &out, len, msg, sizeof(msg)) != HVI_OK)
        return NULL;
    return out;
}

static uint32_t integrity_off(const uint8_t *b)
{
    uint32_t ns = cami_le32(b + 20), so = cami_le32(b + 24);
    for (uint32_t i = 0; i < ns; i++)
        if (cami_le32(b + so + 16 * i) == HVI_CAMI_HINT_INTEGRITY)
            return cami_le32(b + so + 16 * i + 12);
    return 0;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); } /* little-endian host */

static void reseal(uint8_t *b, size_t len)
{
    uint32_t io = integrity_off(b);
    put32(b + io + 4, cami_checksum(b, len, io + 4));
}

static hvi_status open_st(const void *b, size_t len)
{
    hvi_cami *c = NULL;
    char msg[256];
    hvi_status st = hvi_cami_open(b, len, &c, msg, sizeof(msg));
    if (st == HVI_OK)
        hvi_cami_close(c);
    else
        CHECK(msg[0] != 0);
    return st;
}

HVI_TEST(binary_header_checks)
{
    size_t len;
    uint8_t *b = good_bin(&len), *m = malloc(len + 8);
    REQUIRE(b && m);
    CHECK_OK(open_st(b, len));
    CHECK_STATUS(open_st(b, 10), HVI_E_FORMAT);
    memcpy(m, b, len);
    m[0] ^= 1;
    CHECK_STATUS(open_st(m, len), HVI_E_FORMAT); /* magic */
    memcpy(m, b, len);
    put32(m + 8, 2);
    CHECK_STATUS(open_st(m, len), HVI_E_VERSION);
    memcpy(m, b, len);
    put32(m + 4, 3);
    CHECK_STATUS(open_st(m, len), HVI_E_VERSION);
    memcpy(m, b, len);
    memset(m + len, 0, 8);
    CHECK_STATUS(open_st(m, len + 8), HVI_E_FORMAT); /* FileSize != length */
    memcpy(m, b, len);
    m[len - 20] ^= 0x40;
    CHECK_STATUS(open_st(m, len), HVI_E_INTEGRITY);
    memcpy(m, b, len);
    put32(m + 28 + 4 * 16, 0); /* hide the integrity section of a 1.5 file */
    CHECK_STATUS(open_st(m, len), HVI_E_INTEGRITY);
    for (size_t k = 0; k < len; k++) /* every truncation */
        CHECK(open_st(b, k) != HVI_OK);
    free(m);
    free(b);
}

HVI_TEST(binary_tables_out_of_range_huge_wrapping_overlapping)
{
    size_t len;
    uint8_t *b = good_bin(&len), *m = malloc(len);
    REQUIRE(b && m);
    const uint32_t sec1 = 28 + 16; /* Linux section header */
    const uint32_t vals[] = {0xFFFFFFFFu, 0x4000, 0x3FFF, (uint32_t)len, 0x80000000u};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        memcpy(m, b, len);
        put32(m + sec1 + 4, vals[i]); /* count */
        reseal(m, len);
        CHECK_STATUS(open_st(m, len), HVI_E_FORMAT);
        memcpy(m, b, len);
        put32(m + sec1 + 12, vals[i] | 0xFFFF0000u); /* table offset, wraps when added */
        reseal(m, len);
        CHECK_STATUS(open_st(m, len), HVI_E_FORMAT);
    }
    memcpy(m, b, len);
    put32(m + sec1 + 12 + 16, cami_le32(m + sec1 + 12)); /* Windows table on the Linux table */
    put32(m + sec1 + 4 + 16, 1);
    reseal(m, len);
    CHECK_STATUS(open_st(m, len), HVI_E_FORMAT);
    memcpy(m, b, len);
    put32(m + sec1 + 12, 4); /* table over the header */
    reseal(m, len);
    CHECK_STATUS(open_st(m, len), HVI_E_FORMAT);
    /* inside the Linux descriptor: structure count, hooks count, pointers */
    uint32_t d = cami_le32(b + sec1 + 12);
    const uint32_t fld[] = {80, 84, 88, 92, 96};
    for (size_t i = 0; i < 5; i++) {
        memcpy(m, b, len);
        put32(m + d + fld[i], 0xFFFFFFF0u);
        reseal(m, len);
        CHECK_STATUS(open_st(m, len), HVI_E_FORMAT);
    }
    memcpy(m, b, len);
    memset(m + d, 'A', 64); /* version glob without NUL */
    reseal(m, len);
    CHECK_STATUS(open_st(m, len), HVI_E_FORMAT);
    free(m);
    free(b);
}

/* A small file whose many descriptors share one big function table must not blow up into
 * gigabytes of parsed copies: refused with HVI_E_LIMIT. */
HVI_TEST(binary_shared_table_amplification_is_bounded)
{
    const uint32_t ndesc = 2000, nfunc = 0x3FFF;
    const uint32_t hdr = 28 + 16, desc = hdr, km = desc + 64 * ndesc, um = km + 14 * 8, pat = um + 3 * 8,
                   items = pat + 24, ver = items + 2, fn = ver + 144, end = fn + 36 * nfunc;
    uint8_t *b = calloc(1, end);
    REQUIRE(b);
    put32(b, HVI_CAMI_MAGIC);
    put32(b + 4, 4);
    put32(b + 8, 1);
    put32(b + 16, end);
    put32(b + 20, 1);
    put32(b + 24, 28);
    put32(b + 28, HVI_CAMI_HINT_SUPPORTED_OS | HVI_CAMI_HINT_WINDOWS);
    put32(b + 32, ndesc);
    put32(b + 40, desc);
    for (uint32_t i = 0; i < ndesc; i++) {
        uint8_t *d = b + desc + 64 * i;
        put32(d + 24, 14);
        put32(d + 28, km);
        put32(d + 32, 3);
        put32(d + 36, um);
        put32(d + 40, nfunc);
        put32(d + 44, fn);
        put32(d + 52, ver);
    }
    put32(b + pat + 8, 1);
    put32(b + pat + 12, items);
    b[ver] = 1;  /* version string sizes 1 and 1: empty strings */
    b[ver + 72] = 1;
    for (uint32_t i = 0; i < nfunc; i++) {
        put32(b + fn + 36 * i + 4, 1);
        put32(b + fn + 36 * i + 8, pat);
    }
    hvi_cami *c = NULL;
    char msg[256];
    CHECK_STATUS(hvi_cami_open(b, end, &c, msg, sizeof(msg)), HVI_E_LIMIT);
    CHECK(strstr(msg, "referenced too often") != NULL);
    put32(b + 32, 1); /* one descriptor: the same tables parse fine */
    CHECK_OK(hvi_cami_open(b, end, &c, msg, sizeof(msg)));
    if (c) {
        CHECK_EQ_U64(c->win[0].function_count, nfunc);
        hvi_cami_close(c);
    }
    free(b);
}

HVI_TEST(reference_binary_corrupted_bytes_never_crash)
{
    REQUIRE(ct_have_reference());
    size_t len;
    uint8_t *b = ct_read(CAMI_REF_DIR "/intro_live_update.bin", &len);
    REQUIRE(b);
    uint8_t *m = malloc(len);
    REQUIRE(m);
    int refused = 0, total = 0;
    for (size_t k = 0; k < len; k += 61) {
        memcpy(m, b, len);
        m[k] ^= 0xA5;
        refused += open_st(m, len) != HVI_OK;
        total++;
    }
    /* a 1.4 file has no checksum: many flips land in values, but every pointer flip is caught */
    CHECK(refused > 0);
    fprintf(stderr, "  %d of %d corrupted reference copies refused, none crashed\n", refused, total);
    free(m);
    free(b);
}

HVI_TEST_MAIN()
