/* kallsyms located by scanning and discovery from an IDT gate, on a synthetic kernel image laid
 * out like 6.1 (offsets, relative_base, num_syms, names, markers, token_table, token_index). */
#include "harness.h"
#include "synth_mem.h"

#include "synth_kernel.h"

HVI_TEST(kallsyms_found_and_resolved)
{
    uint8_t *img = malloc(IMG_LEN);
    REQUIRE(img);
    size_t idx = build_image(img);
    struct lix_kallsyms ks;
    const char *why = NULL;
    CHECK_OK(lix_kallsyms_parse(&ks, img, IMG_LEN, IMG_VA, &why));
    REQUIRE(ks.count == NSYMS);
    CHECK_EQ_U64(ks.token_index_va, IMG_VA + idx);
    CHECK_EQ_U64(ks.relative_base, IMG_VA);
    uint64_t a = 0;
    CHECK_OK(lix_kallsyms_lookup(&ks, "init_task", &a));
    CHECK_EQ_U64(a, sym_addr(1));
    CHECK_OK(lix_kallsyms_lookup(&ks, "fn_0599", &a));
    CHECK_EQ_U64(a, sym_addr(599));
    CHECK_STATUS(lix_kallsyms_lookup(&ks, "fn_0600", &a), HVI_E_NOT_FOUND);
    const char *name = NULL;
    uint64_t off = 0;
    CHECK_OK(lix_kallsyms_find(&ks, sym_addr(300) + 5, &name, &off));
    CHECK_STR(name, "fn_0300");
    CHECK_EQ_U64(off, 5);
    const struct lix_sym *syms = NULL;
    const char *names = NULL;
    CHECK_OK(lix_kallsyms_table(&ks, &syms, &names));
    CHECK(syms[1].type == 'D' && syms[3].type == 't');
    CHECK_STR(names + syms[2].name, "modules");
    CHECK_STATUS(lix_kallsyms_find(&ks, IMG_VA - 1, &name, &off), HVI_E_NOT_FOUND);
    lix_kallsyms_free(&ks);
    free(img);
}

HVI_TEST(garbage_kallsyms_is_refused)
{
    uint8_t *img = malloc(IMG_LEN);
    REQUIRE(img);
    struct lix_kallsyms ks;
    const char *why = NULL;
    /* random bytes: nothing found, no crash */
    uint32_t x = 12345;
    for (size_t i = 0; i < IMG_LEN; i++) {
        x = x * 1103515245u + 12345u;
        img[i] = (uint8_t)(x >> 16);
    }
    CHECK_STATUS(lix_kallsyms_parse(&ks, img, IMG_LEN, IMG_VA, &why), HVI_E_NOT_FOUND);
    CHECK(why && strstr(why, "kallsyms"));
    /* a valid image whose second marker lies about the names */
    size_t idx = build_image(img);
    (void)idx;
    uint8_t *m = NULL;
    for (size_t p = KS_AT; p + 12 < IMG_LEN; p += 8) {
        uint32_t a, b;
        memcpy(&a, img + p, 4);
        memcpy(&b, img + p + 4, 4);
        if (a == 0 && b > 256 && b < 5000) {
            m = img + p + 4;
            break;
        }
    }
    REQUIRE(m);
    put32(m, 999);
    CHECK_STATUS(lix_kallsyms_parse(&ks, img, IMG_LEN, IMG_VA, &why), HVI_E_NOT_FOUND);
    /* a name length running past the table */
    build_image(img);
    size_t names = al8(KS_AT + 4 * NSYMS) + 16;
    img[names] = 0x7f;
    CHECK_STATUS(lix_kallsyms_parse(&ks, img, IMG_LEN, IMG_VA, &why), HVI_E_NOT_FOUND);
    /* unsorted addresses */
    build_image(img);
    put32(img + KS_AT + 4 * 10, (uint32_t)-0x30000);
    CHECK_STATUS(lix_kallsyms_parse(&ks, img, IMG_LEN, IMG_VA, &why), HVI_E_NOT_FOUND);
    CHECK_STATUS(lix_kallsyms_parse(&ks, img, 100, IMG_VA, &why), HVI_E_INVAL);
    free(img);
}

/* The names of the lazy-lookup tests, with the answer from a linear search of the decoded
 * table (the lowest index of each name). */
static const char *const g_lookups[] = {"_text",   "init_task", "modules", "dup_name",
                                        "fn_0003", "fn_0255",   "fn_0256", "fn_0257",
                                        "fn_0512", "fn_0599",   "fn_0600", "fn_"};
#define NLOOKUPS (sizeof(g_lookups) / sizeof(g_lookups[0]))

static void expected(const struct lix_kallsyms *ks, hvi_status *st, uint64_t *addr)
{
    const struct lix_sym *syms = NULL;
    const char *names = NULL;
    REQUIRE(lix_kallsyms_table(ks, &syms, &names) == HVI_OK);
    for (size_t j = 0; j < NLOOKUPS; j++) {
        st[j] = HVI_E_NOT_FOUND, addr[j] = 0;
        for (uint32_t i = 0; i < ks->count && st[j] != HVI_OK; i++)
            if (!strcmp(names + syms[i].name, g_lookups[j]))
                st[j] = HVI_OK, addr[j] = syms[i].addr;
    }
}

static void lookups(struct lix_kallsyms *ks, hvi_status *st, uint64_t *addr)
{
    for (size_t j = 0; j < NLOOKUPS; j++) {
        addr[j] = 0;
        st[j] = lix_kallsyms_lookup(ks, g_lookups[j], &addr[j]);
    }
}

static void same(const hvi_status *st_a, const uint64_t *a, const hvi_status *st_b,
                 const uint64_t *b)
{
    for (size_t j = 0; j < NLOOKUPS; j++) {
        CHECK_EQ_U64((uint64_t)(int64_t)st_a[j], (uint64_t)(int64_t)st_b[j]);
        CHECK_EQ_U64(a[j], b[j]);
    }
}

/* Name lookups need no decoded table: through seqs_of_names, or by streaming (then, after
 * LIX_LINEAR_LOOKUPS of them, through a by-name index). Every path answers as a linear search of
 * the decoded table does, before and after that table exists. */
HVI_TEST(lazy_lookups_match_the_decoded_table)
{
    uint8_t *img = malloc(IMG_LEN);
    REQUIRE(img);
    for (int seqs = 0; seqs < 2; seqs++) {
        build_image_opts(img, KS_AT, seqs);
        struct lix_kallsyms ks;
        const char *why = NULL;
        CHECK_OK(lix_kallsyms_parse(&ks, img, IMG_LEN, IMG_VA, &why));
        CHECK((ks.seqs_va != 0) == (seqs != 0));
        hvi_status st_before[NLOOKUPS], st_after[NLOOKUPS], st_want[NLOOKUPS];
        uint64_t before[NLOOKUPS], after[NLOOKUPS], want[NLOOKUPS];
        lookups(&ks, st_before, before);
        CHECK(!lix_kallsyms_decoded(&ks)); /* nothing decoded for name lookups */
        CHECK_EQ_U64(before[3], sym_addr(SYM_DUP_A));
        uint64_t many[6];
        bool found[6];
        CHECK_OK(lix_kallsyms_lookup_many(&ks, g_lookups + 6, 6, many, found));
        for (size_t j = 0; j < 6; j++)
            CHECK(found[j] == (st_before[6 + j] == HVI_OK) && many[j] == before[6 + j]);
        expected(&ks, st_want, want);
        CHECK(lix_kallsyms_decoded(&ks));
        same(st_before, before, st_want, want);
        for (int round = 0; round < 3; round++) { /* past LIX_LINEAR_LOOKUPS: the by-name index */
            lookups(&ks, st_after, after);
            same(st_after, after, st_want, want);
        }
        lix_kallsyms_free(&ks);
    }
    free(img);
}

/* A seqs_of_names that is not a permutation, or whose neighbours are out of name order, is not
 * used; lookups still answer right (by streaming). */
HVI_TEST(bad_seqs_of_names_is_ignored)
{
    uint8_t *img = malloc(IMG_LEN);
    REQUIRE(img);
    build_image_opts(img, KS_AT, true);
    struct lix_kallsyms ks;
    const char *why = NULL;
    CHECK_OK(lix_kallsyms_parse(&ks, img, IMG_LEN, IMG_VA, &why));
    REQUIRE(ks.seqs_va);
    size_t seqs = (size_t)(ks.seqs_va - IMG_VA);
    lix_kallsyms_free(&ks);
    for (int bad = 0; bad < 2; bad++) {
        build_image_opts(img, KS_AT, true);
        if (bad == 0) {
            memcpy(img + seqs + 3, img + seqs, 3); /* a duplicate index */
        } else {
            uint8_t t[3]; /* the first two names swapped */
            memcpy(t, img + seqs, 3);
            memcpy(img + seqs, img + seqs + 3, 3);
            memcpy(img + seqs + 3, t, 3);
        }
        CHECK_OK(lix_kallsyms_parse(&ks, img, IMG_LEN, IMG_VA, &why));
        CHECK_EQ_U64(ks.seqs_va, 0);
        hvi_status st[NLOOKUPS], st_want[NLOOKUPS];
        uint64_t a[NLOOKUPS], want[NLOOKUPS];
        lookups(&ks, st, a);
        expected(&ks, st_want, want);
        same(st, a, st_want, want);
        lix_kallsyms_free(&ks);
    }
    free(img);
}

static void idt_gate(struct synth_mem *m, uint64_t idt, unsigned vec, uint64_t h)
{
    uint8_t g[16] = {0};
    g[0] = (uint8_t)h, g[1] = (uint8_t)(h >> 8), g[2] = 0x10, g[5] = 0x8e;
    g[6] = (uint8_t)(h >> 16), g[7] = (uint8_t)(h >> 24);
    for (int i = 0; i < 4; i++)
        g[8 + i] = (uint8_t)(h >> (32 + 8 * i));
    synth_write(m, idt + 16ull * vec, g, 16);
}

HVI_TEST(discover_from_idt_with_slide)
{
    uint8_t *img = malloc(IMG_LEN);
    REQUIRE(img);
    build_image(img);
    struct synth_mem m;
    synth_init(&m);
    synth_write(&m, IMG_VA, img, IMG_LEN);
    uint64_t idt = 0xfffffe0000000000ull;
    idt_gate(&m, idt, 0, IMG_VA + 0x1a30); /* a handler far above the image start */
    struct lix_mem r = synth_reader(&m);
    uint64_t h = 0;
    CHECK_OK(lix_idt_handler(&r, idt, 0, &h));
    CHECK_EQ_U64(h, IMG_VA + 0x1a30);
    CHECK_STATUS(lix_idt_handler(&r, idt, 1, &h), HVI_E_FORMAT); /* not a gate */
    struct lix_kernel k;
    const char *why = NULL;
    CHECK_OK(lix_discover(&k, &r, h, &why));
    CHECK_EQ_U64(k.image_start, IMG_VA);
    CHECK_STR(k.release, "6.1.0-56-amd64");
    CHECK_EQ_U64(k.version, 0x060100);
    CHECK_EQ_U64(k.init_task, sym_addr(1));
    CHECK_EQ_U64(k.modules, sym_addr(2));
    lix_kernel_free(&k);
    /* an entry in unmapped memory, and a kernel with no banner */
    CHECK_STATUS(lix_discover(&k, &r, 0xffffffffc0000000ull, &why), HVI_E_NOT_FOUND);
    synth_write(&m, IMG_VA + 0x2000, "Linux versioX", 13);
    CHECK_STATUS(lix_discover(&k, &r, h, &why), HVI_E_NOT_FOUND);
    CHECK(why && strstr(why, "banner"));
    synth_free(&m);
    free(img);
}

/* Discovery probes every 480 bytes for the token index: it is found wherever the tables sit
 * (every 8-aligned position in a page), in place through a view as through copies, and
 * discovery decodes no name table. */
HVI_TEST(discovery_finds_kallsyms_at_any_alignment_in_place_or_copied)
{
    uint8_t *img = malloc(IMG_LEN);
    REQUIRE(img);
    for (size_t shift = 0; shift < HVI_PAGE_SIZE; shift += 8) {
        {
            int view = (int)(shift / 8) % 2;
            size_t idx = build_image_opts(img, KS_AT + shift, (shift / 16) % 2);
            struct synth_mem m;
            synth_init(&m);
            synth_write(&m, IMG_VA, img, IMG_LEN);
            struct lix_mem r = view ? synth_reader_view(&m) : synth_reader(&m);
            struct lix_kernel k;
            const char *why = NULL;
            CHECK_OK(lix_discover(&k, &r, IMG_VA + 0x1a30, &why));
            CHECK_EQ_U64(k.ks.token_index_va, IMG_VA + idx);
            CHECK_EQ_U64(k.init_task, sym_addr(1));
            CHECK_EQ_U64(k.modules, sym_addr(2));
            CHECK_STR(k.release, "6.1.0-56-amd64");
            CHECK(!lix_kallsyms_decoded(&k.ks));
            CHECK(view ? m.views > 0 : m.views == 0);
            lix_kernel_free(&k);
            synth_free(&m);
        }
    }
    free(img);
}

/* Executable pages are scanned last: a token table and index copied into the text (a decoy with
 * no other table) costs a failed parse when every page is data, none when the text is marked
 * executable; tables that are themselves in executable pages are still found. */
HVI_TEST(discovery_scans_executable_pages_last)
{
    uint8_t *img = malloc(IMG_LEN);
    REQUIRE(img);
    size_t idx = build_image(img);
    struct lix_kallsyms ks;
    const char *why = NULL;
    REQUIRE(lix_kallsyms_parse(&ks, img, IMG_LEN, IMG_VA, &why) == HVI_OK);
    size_t table = (size_t)(ks.token_table_va - IMG_VA);
    lix_kallsyms_free(&ks);
    memcpy(img + 0x4000, img + table, idx + 512 - table);
    uint64_t views[3] = {0, 0, 0};
    for (int c = 0; c < 3; c++) {
        struct synth_mem m;
        synth_init(&m);
        synth_write(&m, IMG_VA, img, IMG_LEN);
        if (c == 1) { /* the text below the tables, 4 KiB pages */
            m.exec_lo = IMG_VA, m.exec_hi = IMG_VA + KS_AT;
        } else if (c == 2) { /* the whole image in one large executable page */
            m.exec_lo = IMG_VA, m.exec_hi = IMG_VA + (2u << 20);
            m.exec_large = LIX_VIEW_LARGE;
        }
        struct lix_mem r = synth_reader_view(&m);
        struct lix_kernel k;
        CHECK_OK(lix_discover(&k, &r, IMG_VA + 0x1a30, &why));
        CHECK_EQ_U64(k.ks.token_index_va, IMG_VA + idx);
        CHECK_EQ_U64(k.init_task, sym_addr(1));
        views[c] = m.views;
        lix_kernel_free(&k);
        synth_free(&m);
    }
    CHECK(views[1] * 2 < views[0]); /* the decoy in the text was never parsed */
    free(img);
}

/* Garbage where kallsyms should be: discovery fails with a message naming the table. */
HVI_TEST(garbage_kallsyms_through_discovery_is_a_clear_error)
{
    uint8_t *img = malloc(IMG_LEN);
    REQUIRE(img);
    uint32_t x = 777;
    for (size_t i = 0; i < IMG_LEN; i++) {
        x = x * 1103515245u + 12345u;
        img[i] = (uint8_t)(x >> 16);
    }
    struct synth_mem m;
    synth_init(&m);
    synth_write(&m, IMG_VA, img, IMG_LEN);
    struct lix_mem r = synth_reader_view(&m);
    struct lix_kernel k;
    const char *why = NULL;
    CHECK_STATUS(lix_discover(&k, &r, IMG_VA + 0x1a30, &why), HVI_E_NOT_FOUND);
    CHECK(why && strstr(why, "kallsyms_token"));
    /* a real token table and index, but markers and names that do not agree */
    build_image(img);
    for (size_t p = KS_AT; p < KS_AT + 0x1800; p++)
        img[p] = (uint8_t)(p * 7);
    synth_write(&m, IMG_VA, img, IMG_LEN);
    CHECK_STATUS(lix_discover(&k, &r, IMG_VA + 0x1a30, &why), HVI_E_NOT_FOUND);
    CHECK(why && strstr(why, "kallsyms_markers"));
    synth_free(&m);
    free(img);
}

HVI_TEST(banner_parsing)
{
    char rel[64];
    uint32_t v = 0;
    CHECK_OK(lix_parse_banner("Linux version 5.15.0-91-generic (b@x) #1", rel, sizeof(rel), &v));
    CHECK_STR(rel, "5.15.0-91-generic");
    CHECK_EQ_U64(v, 0x050f00);
    CHECK_STATUS(lix_parse_banner("Linux version x.y", rel, sizeof(rel), &v), HVI_E_FORMAT);
    CHECK_STATUS(lix_parse_banner("Linux version 6.1", rel, 3, &v), HVI_E_FORMAT);
}

HVI_TEST_MAIN()
