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
