/* Physical/virtual access, strings, gva_map, the GPA cache and failure injection. */
#include "harness.h"
#include "fixture.h"

#define W HVI_SIM_PTE_W
#define NX HVI_SIM_PTE_NX

/* Map `n` pages at va onto scattered frames (every other frame) and return the frames. */
static void map_scattered(struct fx *f, hvi_gva va, int n, hvi_gpa *frames, uint64_t flags)
{
    for (int i = 0; i < n; i++) {
        frames[i] = fx_frame(f);
        (void)fx_frame(f); /* leave a gap so pages are not physically contiguous */
        (void)fx_map(f, va + (uint64_t)i * 4096, frames[i], HVI_SIM_4K, flags);
    }
}

HVI_TEST(gpa_read_write_across_frames)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
    uint8_t in[10000], out[10000];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 7 + 3);
    CHECK_OK(hvi_gpa_write(f.e, 0x200ffd, in, sizeof(in)));
    uint8_t direct[10000];
    CHECK_OK(hvi_sim_phys_read(f.sim, 0x200ffd, direct, sizeof(direct)));
    CHECK(memcmp(direct, in, sizeof(in)) == 0);
    CHECK_OK(hvi_gpa_read(f.e, 0x200ffd, out, sizeof(out)));
    CHECK(memcmp(out, in, sizeof(in)) == 0);
    CHECK_STATUS(hvi_gpa_read(f.e, (4ull << 20) - 2, out, 4), HVI_E_RANGE);
    CHECK_STATUS(hvi_gpa_read(f.e, UINT64_MAX - 1, out, 4), HVI_E_RANGE);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(gva_read_across_pages)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
    hvi_gpa fr[3];
    hvi_gva va = 0xffffc90000010000ull;
    map_scattered(&f, va, 3, fr, W);
    uint8_t pat[4096 * 3];
    for (size_t i = 0; i < sizeof(pat); i++)
        pat[i] = (uint8_t)(i ^ (i >> 8));
    for (int i = 0; i < 3; i++)
        REQUIRE(hvi_sim_phys_write(f.sim, fr[i], pat + i * 4096, 4096) == HVI_OK);
    uint8_t out[6000];
    CHECK_OK(hvi_gva_read(f.e, 0, va + 3000, out, sizeof(out)));
    CHECK(memcmp(out, pat + 3000, sizeof(out)) == 0);
    uint64_t q = 0;
    CHECK_OK(hvi_gva_read_u64(f.e, 0, va + 4092, &q));
    uint64_t want;
    memcpy(&want, pat + 4092, 8);
    CHECK_EQ_U64(q, want);
    /* write across a page boundary lands in both frames */
    CHECK_OK(hvi_gva_write(f.e, 0, va + 4094, "ABCD", 4));
    uint8_t a[2], b[2];
    REQUIRE(hvi_sim_phys_read(f.sim, fr[0] + 4094, a, 2) == HVI_OK);
    REQUIRE(hvi_sim_phys_read(f.sim, fr[1], b, 2) == HVI_OK);
    CHECK(a[0] == 'A' && a[1] == 'B' && b[0] == 'C' && b[1] == 'D');
    /* a missing page in the middle fails the whole access and writes nothing */
    REQUIRE(hvi_sim_unmap(f.sim, f.cr3, f.mode, va + 4096) == HVI_OK);
    hvi_mem_flush_translations(f.e, 0);
    CHECK_STATUS(hvi_gva_read(f.e, 0, va + 3000, out, sizeof(out)), HVI_E_NOT_PRESENT);
    uint8_t zeros[8] = {0};
    CHECK_STATUS(hvi_gva_write(f.e, 0, va + 4090, zeros, 8), HVI_E_NOT_PRESENT);
    REQUIRE(hvi_sim_phys_read(f.sim, fr[0] + 4094, a, 2) == HVI_OK);
    CHECK(a[0] == 'A');
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(fetch_respects_nx)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
    hvi_gpa fr[2];
    map_scattered(&f, 0x10000, 1, fr, W | NX);
    map_scattered(&f, 0x20000, 1, fr + 1, 0);
    uint8_t b[4];
    CHECK_STATUS(hvi_gva_fetch(f.e, 0, 0x10000, b, 4), HVI_E_DENIED);
    CHECK_OK(hvi_gva_read(f.e, 0, 0x10000, b, 4));
    CHECK_OK(hvi_gva_fetch(f.e, 0, 0x20000, b, 4));
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(ascii_strings)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
    hvi_gpa fr[2];
    hvi_gva va = 0x400000;
    map_scattered(&f, va, 2, fr, W);
    REQUIRE(hvi_sim_phys_write(f.sim, fr[0] + 4090, "hello,", 6) == HVI_OK);
    REQUIRE(hvi_sim_phys_write(f.sim, fr[1], " world", 7) == HVI_OK); /* with NUL */
    char out[64];
    size_t n = 0;
    CHECK_OK(hvi_gva_read_str(f.e, 0, va + 4090, 100, out, sizeof(out), &n));
    CHECK_STR(out, "hello, world");
    CHECK_EQ_U64(n, 12);
    /* no terminator within max_chars */
    CHECK_STATUS(hvi_gva_read_str(f.e, 0, va + 4090, 5, out, sizeof(out), &n), HVI_E_LIMIT);
    CHECK_STR(out, "hello");
    /* output buffer too small */
    CHECK_STATUS(hvi_gva_read_str(f.e, 0, va + 4090, 100, out, 4, &n), HVI_E_LIMIT);
    CHECK_STR(out, "hel");
    /* unterminated string running into an absent page */
    memset(out, 'x', sizeof(out));
    uint8_t fill[4096];
    memset(fill, 'z', sizeof(fill));
    REQUIRE(hvi_sim_phys_write(f.sim, fr[1], fill, sizeof(fill)) == HVI_OK);
    CHECK_STATUS(hvi_gva_read_str(f.e, 0, va + 4090, 1u << 20, out, sizeof(out), &n),
                 HVI_E_LIMIT);
    CHECK_EQ_U64(strlen(out), 63);
    char big[8192];
    CHECK_STATUS(hvi_gva_read_str(f.e, 0, va + 4090, 1u << 20, big, sizeof(big), &n),
                 HVI_E_NOT_PRESENT);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(utf16_strings)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
    hvi_gpa fr[2];
    hvi_gva va = 0x400000;
    map_scattered(&f, va, 2, fr, W);
    /* "Aé€😀" then NUL; the emoji's surrogate pair straddles the page boundary */
    const uint16_t s[] = {'A', 0xe9, 0x20ac, 0xd83d, 0xde00, 0};
    hvi_gva at = va + 4096 - 8;
    REQUIRE(hvi_sim_phys_write(f.sim, fr[0] + 4096 - 8, s, 8) == HVI_OK);
    REQUIRE(hvi_sim_phys_write(f.sim, fr[1], s + 4, 4) == HVI_OK);
    char out[64];
    size_t n = 0;
    CHECK_OK(hvi_gva_read_wstr(f.e, 0, at, 64, out, sizeof(out), &n));
    CHECK_STR(out, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    CHECK_EQ_U64(n, 10);
    /* lone surrogates become U+FFFD */
    const uint16_t bad[] = {0xdc00, 'x', 0xd800, 'y', 0xd800, 0};
    REQUIRE(hvi_sim_phys_write(f.sim, fr[0], bad, sizeof(bad)) == HVI_OK);
    CHECK_OK(hvi_gva_read_wstr(f.e, 0, va, 64, out, sizeof(out), &n));
    CHECK_STR(out, "\xef\xbf\xbdx\xef\xbf\xbdy\xef\xbf\xbd");
    /* no terminator */
    CHECK_STATUS(hvi_gva_read_wstr(f.e, 0, va, 2, out, sizeof(out), &n), HVI_E_LIMIT);
    CHECK_STR(out, "\xef\xbf\xbdx");
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(gva_map_contiguous_view)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
    hvi_gpa fr[3];
    hvi_gva va = 0x800000;
    map_scattered(&f, va, 3, fr, W);
    REQUIRE(hvi_sim_phys_write(f.sim, fr[1], "middle", 6) == HVI_OK);
    uint8_t *p = NULL;
    CHECK_OK(hvi_gva_map(f.e, 0, va + 100, 3 * 4096 - 200, (void **)&p));
    REQUIRE(p != NULL);
    CHECK(memcmp(p + 4096 - 100, "middle", 6) == 0);
    memcpy(p + 2 * 4096 - 100, "third", 5);
    hvi_gva_unmap(f.e, p);
    char got[6] = {0};
    REQUIRE(hvi_sim_phys_read(f.sim, fr[2], got, 5) == HVI_OK);
    CHECK_STR(got, "third");
    void *q = NULL;
    CHECK_STATUS(hvi_gva_map(f.e, 0, va + 2 * 4096, 2 * 4096, &q), HVI_E_NOT_PRESENT);
    CHECK(q == NULL);
    CHECK_OK(hvi_gva_map(f.e, 0, va, 16, &q)); /* left mapped: freed with the engine */
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(gpa_cache_refcounts)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
    uint8_t *p1 = NULL, *p2 = NULL;
    CHECK_OK(hvi_gpa_cache_find_and_add(f.e, 0x300010, (void **)&p1));
    CHECK_OK(hvi_gpa_cache_find_and_add(f.e, 0x300020, (void **)&p2));
    REQUIRE(p1 && p2);
    CHECK(p2 == p1 + 0x10);
    memcpy(p1, "cache", 5);
    char back[6] = {0};
    REQUIRE(hvi_sim_phys_read(f.sim, 0x300010, back, 5) == HVI_OK);
    CHECK_STR(back, "cache");
    CHECK_OK(hvi_gpa_cache_patch_and_add(f.e, 0x300ffe, "zz", 2));
    CHECK_STATUS(hvi_gpa_cache_patch_and_add(f.e, 0x300fff, "zz", 2), HVI_E_INVAL);
    char two[3] = {0};
    CHECK_OK(hvi_gpa_cache_fetch_and_add(f.e, 0x300ffe, two, 2));
    CHECK_STR(two, "zz");
    CHECK_OK(hvi_gpa_cache_release(f.e, 0x300000));
    CHECK_OK(hvi_gpa_cache_release(f.e, 0x300000));
    CHECK_STATUS(hvi_gpa_cache_release(f.e, 0x300000), HVI_E_NOT_FOUND);
    int64_t before = hvi_sim_outstanding_maps(f.sim);
    CHECK(before >= 1);
    hvi_gpa_cache_invalidate(f.e, 0x300000);
    CHECK_EQ_U64(hvi_sim_outstanding_maps(f.sim), (uint64_t)(before - 1));
    CHECK_STATUS(hvi_gpa_cache_release(f.e, 0x300000), HVI_E_NOT_FOUND);
    CHECK_STATUS(hvi_gpa_cache_find_and_add(f.e, 64ull << 20, (void **)&p1), HVI_E_RANGE);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(gpa_cache_many_frames_bounded)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 16ull << 20));
    /* touch far more frames than the cache holds: mappings stay bounded */
    uint8_t b;
    for (hvi_gpa g = 0; g < (16ull << 20); g += 4096)
        REQUIRE(hvi_gpa_read(f.e, g, &b, 1) == HVI_OK);
    CHECK(hvi_sim_outstanding_maps(f.sim) <= 1024);
    /* referenced frames: keep taking references until the cache refuses, then release */
    uint32_t got = 0;
    void *p;
    for (hvi_gpa g = 0; g < (16ull << 20); g += 4096, got++)
        if (hvi_gpa_cache_find_and_add(f.e, g, &p) != HVI_OK)
            break;
    CHECK(got > 16);
    CHECK(hvi_sim_outstanding_maps(f.sim) <= 1024);
    CHECK_OK(hvi_gpa_read(f.e, 0xf00000, &b, 1)); /* still works through a transient map */
    for (hvi_gpa g = 0; g < (hvi_gpa)got * 4096; g += 4096)
        CHECK_OK(hvi_gpa_cache_release(f.e, g));
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(failing_map_reports_status_without_leaks)
{
    for (uint32_t after = 0; after < 6; after++) {
        struct fx f;
        REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
        hvi_gpa fr[2];
        map_scattered(&f, 0x5000, 2, fr, W);
        REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_MAP_GPA, after, HVI_E_BACKEND) == HVI_OK);
        uint8_t out[6000];
        hvi_status st = hvi_gva_read(f.e, 0, 0x5000, out, sizeof(out));
        /* 4 table frames + 2 data frames are needed: the first `after` maps succeed */
        CHECK(after >= 6 ? st == HVI_OK : st == HVI_E_BACKEND);
        CHECK(strlen(hvi_last_error(f.e)) > 0);
        REQUIRE(hvi_sim_fail_call(f.sim, HVI_SIM_CALL_MAP_GPA, 0, HVI_OK) == HVI_OK);
        CHECK_OK(hvi_gva_read(f.e, 0, 0x5000, out, sizeof(out)));
        CHECK_EQ_U64(fx_free(&f), 0);
    }
}

HVI_TEST(bad_arguments)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
    uint8_t b[8];
    CHECK_STATUS(hvi_gva_read(NULL, 0, 0, b, 1), HVI_E_INVAL);
    CHECK_STATUS(hvi_gva_read(f.e, 0, 0, NULL, 1), HVI_E_INVAL);
    CHECK_STATUS(hvi_gva_read(f.e, 0, UINT64_MAX - 2, b, 8), HVI_E_RANGE);
    CHECK_STATUS(hvi_gva_translate(f.e, 0, 0, NULL), HVI_E_INVAL);
    CHECK_STATUS(hvi_gva_map(f.e, 0, 0, 0, (void **)&b), HVI_E_INVAL);
    hvi_gva_unmap(f.e, b); /* unknown pointer: ignored */
    CHECK_STATUS(hvi_gva_read_str(f.e, 0, 0, 4, NULL, 0, NULL), HVI_E_INVAL);
    /* a read ending in the last page of the address space (found by fuzzing: the page loop
     * wrapped around to 0) */
    REQUIRE(hvi_mem_set_context(f.e, HVI_PAGING_NONE, 0) == HVI_OK);
    CHECK_STATUS(hvi_gva_read(f.e, 0, 0xffffffffffffdffeull, b, 8), HVI_E_RANGE);
    uint8_t big[5000];
    CHECK_STATUS(hvi_gva_read(f.e, 0, 0xffffffffffffdffeull, big, sizeof(big)), HVI_E_RANGE);
    CHECK_STATUS(hvi_gva_read(f.e, 0, 0xfffffffffffff000ull, big, 4096), HVI_E_RANGE);
    char s[16];
    CHECK_STATUS(hvi_gva_read_wstr(f.e, 0, UINT64_MAX - 3, 8, s, sizeof(s), NULL), HVI_E_RANGE);
    CHECK_STATUS(hvi_gva_read_str(f.e, 0, UINT64_MAX - 3, 8, s, sizeof(s), NULL), HVI_E_RANGE);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST(gva_write_safe_checks_tables_ring_and_ept)
{
    struct fx f;
    REQUIRE(fx_new(&f, HVI_PAGING_4LVL, 4ull << 20));
    hvi_gpa rw[2], ro[1], usr[1];
    hvi_gva va = 0xffffc90000100000ull, va_ro = va + 0x2000, va_u = 0x400000;
    map_scattered(&f, va, 2, rw, W);
    map_scattered(&f, va_ro, 1, ro, 0);
    map_scattered(&f, va_u, 1, usr, W | HVI_SIM_PTE_U);
    uint8_t z[8] = {0}, got[8];
    /* writable supervisor pages, across the page boundary: written at CPL 0, refused at CPL 3 */
    CHECK_OK(hvi_gva_write_safe(f.e, 0, va + 4092, "ABCDEFGH", 8, 0));
    CHECK_OK(hvi_gva_read(f.e, 0, va + 4092, got, 8));
    CHECK(memcmp(got, "ABCDEFGH", 8) == 0);
    CHECK_STATUS(hvi_gva_write_safe(f.e, 0, va, z, 8, 3), HVI_E_DENIED);
    CHECK(strstr(hvi_last_error(f.e), "supervisor") != NULL);
    /* a user page is writable at both levels */
    CHECK_OK(hvi_gva_write_safe(f.e, 0, va_u + 8, "u", 1, 3));
    /* read-only in the tables: refused, even though plain hvi_gva_write would write it */
    CHECK_STATUS(hvi_gva_write_safe(f.e, 0, va_ro, "x", 1, 0), HVI_E_DENIED);
    CHECK(strstr(hvi_last_error(f.e), "read-only") != NULL);
    /* a range whose second page is read-only or absent leaves the first page untouched */
    CHECK_OK(hvi_gva_write(f.e, 0, va_ro - 4, "\x11\x22\x33\x44", 4));
    CHECK_STATUS(hvi_gva_write_safe(f.e, 0, va_ro - 4, z, 8, 0), HVI_E_DENIED);
    CHECK_OK(hvi_gva_read(f.e, 0, va_ro - 4, got, 4));
    CHECK(memcmp(got, "\x11\x22\x33\x44", 4) == 0);
    CHECK_OK(hvi_gva_write(f.e, 0, va_u + 4092, "\x55", 1));
    CHECK_STATUS(hvi_gva_write_safe(f.e, 0, va_u + 4092, z, 8, 3), HVI_E_NOT_PRESENT);
    CHECK_OK(hvi_gva_read(f.e, 0, va_u + 4092, got, 1));
    CHECK_EQ_U64(got[0], 0x55);
    /* EPT: the frame write-protected (as the engine does for a write hook) is refused */
    hvi_glue g;
    REQUIRE(hvi_sim_glue(f.sim, &g) == HVI_OK);
    REQUIRE(g.set_ept_rights(g.ctx, rw[1], HVI_EPT_R | HVI_EPT_X) == HVI_OK);
    CHECK_STATUS(hvi_gva_write_safe(f.e, 0, va + 4096, z, 1, 0), HVI_E_DENIED);
    CHECK(strstr(hvi_last_error(f.e), "EPT") != NULL);
    CHECK_OK(hvi_gva_write_safe(f.e, 0, va, z, 1, 0)); /* the other frame still is */
    /* bad arguments */
    CHECK_STATUS(hvi_gva_write_safe(f.e, 0, va, z, 1, 4), HVI_E_INVAL);
    CHECK_STATUS(hvi_gva_write_safe(NULL, 0, va, z, 1, 0), HVI_E_INVAL);
    CHECK_STATUS(hvi_gva_write_safe(f.e, 0, UINT64_MAX - 2, z, 8, 0), HVI_E_RANGE);
    CHECK_EQ_U64(fx_free(&f), 0);
}

HVI_TEST_MAIN()
