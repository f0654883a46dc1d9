/* typeinfo on the installed Debian kernel (/boot/vmlinuz-*): the release from the bzImage
 * header equals the file name's and the banner's; BTF offsets of sample fields equal what
 * `pahole` prints for the extracted vmlinux; a truncated vmlinuz fails cleanly; the generator
 * writes the maple-tree extension fields and marks rb-tree fields absent. Skips (77) when no
 * kernel image is installed or pahole is missing. */
#include <glob.h>

#include "harness.h"
#include "ti_util.h"

static char g_vmlinuz[256];
static uint8_t *g_img;
static size_t g_img_len;

static bool have_kernel(void)
{
    if (g_img)
        return true;
    glob_t gl;
    if (glob("/boot/vmlinuz-*", 0, NULL, &gl) != 0 || gl.gl_pathc == 0)
        return false;
    snprintf(g_vmlinuz, sizeof(g_vmlinuz), "%s", gl.gl_pathv[gl.gl_pathc - 1]);
    globfree(&gl);
    void *buf = NULL;
    if (hvi_ti_read_file(g_vmlinuz, &buf, &g_img_len, NULL, 0) != HVI_OK)
        return false;
    g_img = buf;
    return true;
}

HVI_TEST(release_and_banner)
{
    if (!have_kernel())
        SKIP_CASE("no readable /boot/vmlinuz-* (install linux-image-amd64)");
    char rel[128] = "", rel2[128] = "", banner[256] = "";
    CHECK_OK(hvi_typeinfo_release_from_buffer(g_img, g_img_len, rel, sizeof(rel)));
    CHECK_STR(rel, strrchr(g_vmlinuz, '/') + strlen("/vmlinuz-"));
    CHECK_OK(hvi_typeinfo_kernel_release(g_vmlinuz, rel2, sizeof(rel2)));
    CHECK_STR(rel, rel2);
    void *elf = NULL;
    size_t elf_len = 0;
    char err[HVI_TI_ERR_LEN];
    CHECK_OK(hvi_typeinfo_extract_vmlinux(g_img, g_img_len, &elf, &elf_len, err, sizeof(err)));
    REQUIRE(elf);
    CHECK_OK(hvi_typeinfo_find_banner(elf, elf_len, banner, sizeof(banner)));
    CHECK(!strncmp(banner, rel, strlen(rel)) && banner[strlen(rel)] == ' ');
    free(elf);
}

struct pa_field {
    const char *s, *m;
};

/* Offset of `m` in pahole's printout of struct `s` (first member line naming it). */
static long pahole_offset(const char *text, const char *s, const char *m)
{
    char head[96];
    snprintf(head, sizeof(head), "struct %s {\n", s);
    const char *p = strstr(text, head);
    if (!p)
        return -1;
    const char *end = strstr(p, "\n};");
    size_t ml = strlen(m);
    for (const char *l = p; l && l < end; l = strchr(l + 1, '\n')) {
        const char *semi = strchr(l + 1, ';');
        const char *nl = strchr(l + 1, '\n');
        if (!semi || !nl || semi > nl)
            continue;
        const char *n = semi;
        while (n > l && (n[-1] == ']' || (n[-1] >= '0' && n[-1] <= '9') || n[-1] == '['))
            n--; /* skip an array suffix */
        if ((size_t)(n - l) < ml || memcmp(n - ml, m, ml) ||
            !(n[-(long)ml - 1] == ' ' || n[-(long)ml - 1] == '*' || n[-(long)ml - 1] == '\t'))
            continue;
        const char *c = strstr(semi, "/*");
        if (!c || c > nl)
            continue;
        return strtol(c + 2, NULL, 10);
    }
    return -1;
}

HVI_TEST(offsets_match_pahole)
{
    if (!have_kernel())
        SKIP_CASE("no readable /boot/vmlinuz-* (install linux-image-amd64)");
    if (ti_run("pahole --version >/dev/null 2>&1") != 0)
        SKIP_CASE("pahole (package dwarves) not installed");
    void *elf = NULL;
    size_t elf_len = 0;
    char err[HVI_TI_ERR_LEN];
    REQUIRE(hvi_typeinfo_extract_vmlinux(g_img, g_img_len, &elf, &elf_len, err, sizeof(err)) ==
            HVI_OK);
    char *dir = ti_tmpdir();
    REQUIRE(dir);
    char path[128], cmd[512];
    snprintf(path, sizeof(path), "%s/vmlinux", dir);
    int wr = ti_write(path, elf, elf_len);
    CHECK(wr == 0);
    struct hvi_typeinfo *ti = NULL;
    CHECK_OK(hvi_typeinfo_open_btf_mem(elf, elf_len, &ti, err, sizeof(err)));
    free(elf);
    snprintf(cmd, sizeof(cmd),
             "pahole -C task_struct,mm_struct,module,maple_tree,vm_area_struct,cred,"
             "maple_range_64,maple_arange_64,dentry,linux_binprm %s",
             path);
    FILE *p = popen(cmd, "r");
    char *text = NULL;
    size_t cap = 0;
    FILE *m = open_memstream(&text, &cap);
    char buf[4096];
    size_t n;
    while (p && m && (n = fread(buf, 1, sizeof(buf), p)) > 0)
        fwrite(buf, 1, n, m);
    if (m)
        fclose(m);
    CHECK(p && pclose(p) == 0);
    static const struct pa_field fields[] = {
        {"task_struct", "comm"},  {"task_struct", "pid"},       {"task_struct", "tgid"},
        {"task_struct", "tasks"}, {"task_struct", "mm"},        {"task_struct", "cred"},
        {"task_struct", "real_parent"}, {"task_struct", "group_leader"},
        {"task_struct", "thread_group"}, {"task_struct", "signal"},
        {"mm_struct", "pgd"},     {"mm_struct", "mm_mt"},       {"mm_struct", "exe_file"},
        {"mm_struct", "arg_start"}, {"module", "list"},         {"module", "name"},
        {"module", "state"},      {"module", "core_layout"},    {"maple_tree", "ma_root"},
        {"vm_area_struct", "vm_start"}, {"vm_area_struct", "vm_flags"},
        {"vm_area_struct", "vm_file"}, {"vm_area_struct", "vm_pgoff"}, {"cred", "uid"},
        {"cred", "euid"},         {"maple_range_64", "pivot"},  {"maple_arange_64", "gap"},
        {"dentry", "d_parent"},   {"dentry", "d_iname"},        {"linux_binprm", "file"},
    };
    for (size_t i = 0; ti && text && i < sizeof(fields) / sizeof(fields[0]); i++) {
        long want = pahole_offset(text, fields[i].s, fields[i].m);
        uint32_t got = 0;
        CHECK_OK(hvi_typeinfo_offset(ti, fields[i].s, fields[i].m, &got));
        if (want < 0 || (long)got != want) {
            fprintf(stderr, "  %s.%s: btf %u, pahole %ld\n", fields[i].s, fields[i].m, got, want);
            CHECK(0);
        }
    }
    free(text);
    hvi_typeinfo_free(ti);
    ti_rmdir(dir);
}

HVI_TEST(generator_on_kernel)
{
    if (!have_kernel())
        SKIP_CASE("no readable /boot/vmlinuz-* (install linux-image-amd64)");
    struct hvi_typeinfo *ti = NULL;
    char err[HVI_TI_ERR_LEN];
    REQUIRE(hvi_typeinfo_open_btf_mem(g_img, g_img_len, &ti, err, sizeof(err)) == HVI_OK);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    REQUIRE(f);
    struct hvi_genlinux_opts o = {NULL, NULL, true};
    struct hvi_genlinux_stats st;
    CHECK_OK(hvi_genlinux_write(ti, &o, f, &st, err, sizeof(err)));
    fclose(f);
    hvi_typeinfo_free(ti);
    REQUIRE(text);
    /* A 6.1 kernel: maple tree present, rb-tree/linked VMA fields absent. */
    CHECK(strstr(text, "MapleTree : 0x") && !strstr(text, "MapleTree : 0xffffffff"));
    CHECK(strstr(text, "VmNextOffset : 0xffffffff") != NULL);
    CHECK(strstr(text, "RbNodeOffset : 0xffffffff") != NULL);
    CHECK(strstr(text, "MapleRange64Slots : 0x0010") != NULL);
    CHECK(strstr(text, "MapleArange64Slots : 0x000a") != NULL);
    CHECK(strstr(text, "MapleNodeSize : 0x0100") != NULL);
    CHECK(strstr(text, "HasModuleLayout : 0x0001") != NULL);
    CHECK(st.fields > 150 && st.absent > 0 && st.absent < 20 && st.hooks >= 20);
    free(text);
}

static hvi_status gen_text(struct hvi_typeinfo *ti, char **text)
{
    size_t len = 0;
    FILE *f = open_memstream(text, &len);
    if (!f)
        return HVI_E_NOMEM;
    struct hvi_genlinux_opts o = {NULL, NULL, true};
    char err[HVI_TI_ERR_LEN];
    hvi_status st = hvi_genlinux_write(ti, &o, f, NULL, err, sizeof(err));
    fclose(f);
    return st;
}

/* The DWARF vmlinux of the same kernel (linux-image-<release>-dbg, or HVI_DWARF_VMLINUX):
 * every member the generator reads and the whole YAML equal the BTF path's. */
HVI_TEST(btf_equals_dwarf_on_kernel)
{
    if (!have_kernel())
        SKIP_CASE("no readable /boot/vmlinuz-* (install linux-image-amd64)");
    char rel[128] = "", dbg[512];
    REQUIRE(hvi_typeinfo_release_from_buffer(g_img, g_img_len, rel, sizeof(rel)) == HVI_OK);
    const char *env = getenv("HVI_DWARF_VMLINUX");
    if (env)
        snprintf(dbg, sizeof(dbg), "%s", env);
    else
        snprintf(dbg, sizeof(dbg), "/usr/lib/debug/boot/vmlinux-%s", rel);
    if (access(dbg, R_OK) != 0)
        SKIP_CASE("no DWARF vmlinux (install linux-image-<release>-dbg or set HVI_DWARF_VMLINUX)");
    struct hvi_typeinfo *b = NULL, *d = NULL;
    char err[HVI_TI_ERR_LEN];
    CHECK_OK(hvi_typeinfo_open_btf_mem(g_img, g_img_len, &b, err, sizeof(err)));
    CHECK_OK(hvi_typeinfo_open_dwarf(dbg, &d, err, sizeof(err)));
    REQUIRE(b && d);
    CHECK_STR(hvi_typeinfo_banner(b), hvi_typeinfo_banner(d));
    char *tb = NULL, *td = NULL;
    CHECK_OK(gen_text(b, &tb));
    CHECK_OK(gen_text(d, &td));
    REQUIRE(tb && td);
    const char *bb = strchr(tb, '\n'), *db = strchr(td, '\n'); /* line 1 names the source */
    CHECK(bb && db && !strcmp(bb, db));
    free(tb);
    free(td);
    hvi_typeinfo_free(b);
    hvi_typeinfo_free(d);
}

HVI_TEST(truncated_vmlinuz)
{
    if (!have_kernel())
        SKIP_CASE("no readable /boot/vmlinuz-* (install linux-image-amd64)");
    /* The end of the compressed payload (setup header: payload_offset/length after the
     * (setup_sects + 1) * 512 setup code); decompressor code follows it in the file. */
    uint32_t poff = 0, plen = 0;
    memcpy(&poff, g_img + 0x248, 4);
    memcpy(&plen, g_img + 0x24c, 4);
    size_t pend = ((size_t)g_img[0x1f1] + 1) * 512 + poff + plen;
    REQUIRE(pend <= g_img_len && plen > 64);
    size_t cuts[] = {0x100, 0x300, 64 * 1024, g_img_len / 2, pend - 16};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        struct hvi_typeinfo *ti = NULL;
        char err[HVI_TI_ERR_LEN] = "";
        CHECK(hvi_typeinfo_open_btf_mem(g_img, cuts[i], &ti, err, sizeof(err)) != HVI_OK);
        CHECK(ti == NULL && err[0] != 0);
    }
}

int main(void)
{
    int rc = hvi_test_run_all();
    free(g_img);
    return rc;
}
