/* hvi cami gen-linux end to end through the CLI: the installed Debian vmlinuz gives exactly the
 * committed cami/linux entry (when it is the same kernel); `hvi cami build` compiles it with the
 * reference corpus and `hvi cami lookup --linux <banner>` selects it with the maple-tree fields;
 * another banner does not select it; usage and input errors give exit 2 / 1 with a message.
 * Skips (77) when no /boot/vmlinuz-* is installed. */
#include <glob.h>
#include <sys/wait.h>

#include "harness.h"
#include "typeinfo/typeinfo.h"

#define HVI_BIN HVI_BINARY_DIR "/tools/hvi/hvi"

static char g_dir[64];
static char g_vmlinuz[256];
static char g_release[128];

static int run(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char *text = NULL;
    size_t cap = 0;
    FILE *m = open_memstream(&text, &cap);
    char buf[4096];
    size_t n;
    while (m && (n = fread(buf, 1, sizeof(buf), p)) > 0)
        fwrite(buf, 1, n, m);
    if (m)
        fclose(m);
    int st = pclose(p);
    if (out)
        *out = text;
    else
        free(text);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool setup(void)
{
    if (g_dir[0])
        return true;
    glob_t gl;
    if (glob("/boot/vmlinuz-*", 0, NULL, &gl) != 0 || gl.gl_pathc == 0)
        return false;
    snprintf(g_vmlinuz, sizeof(g_vmlinuz), "%s", gl.gl_pathv[gl.gl_pathc - 1]);
    globfree(&gl);
    if (hvi_typeinfo_kernel_release(g_vmlinuz, g_release, sizeof(g_release)) != HVI_OK)
        return false;
    snprintf(g_dir, sizeof(g_dir), "/tmp/hvi-genlinux-XXXXXX");
    return mkdtemp(g_dir) != NULL;
}

HVI_TEST(generate_matches_committed)
{
    if (!setup())
        SKIP_CASE("no readable /boot/vmlinuz-* (install linux-image-amd64)");
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s cami gen-linux --btf %s -o %s/gen.yaml 2>&1", HVI_BIN,
             g_vmlinuz, g_dir);
    CHECK_EQ_U64(run(cmd, &out), 0);
    CHECK(out && strstr(out, "does not exist in this kernel") && strstr(out, "hooks ->"));
    free(out);
    char committed[512];
    snprintf(committed, sizeof(committed), "%s/cami/linux/debian-12-%s.yaml", HVI_SOURCE_DIR,
             g_release);
    FILE *f = fopen(committed, "r");
    if (!f) {
        fprintf(stderr, "  note: no committed entry for %s; comparison skipped\n", g_release);
        return;
    }
    fclose(f);
    snprintf(cmd, sizeof(cmd), "cmp %s/gen.yaml %s", g_dir, committed);
    CHECK_EQ_U64(run(cmd, NULL), 0); /* regenerating gives the committed file */
}

HVI_TEST(build_and_lookup)
{
    if (!setup())
        SKIP_CASE("no readable /boot/vmlinuz-* (install linux-image-amd64)");
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/src && %s cami gen-linux --quiet --btf %s -o %s/src/k.yaml",
             g_dir, HVI_BIN, g_vmlinuz, g_dir);
    REQUIRE(run(cmd, NULL) == 0);
    snprintf(cmd, sizeof(cmd), "%s cami build %s/src %s/reference/hvmi-cami/sources -o %s/x.bin 2>&1",
             HVI_BIN, g_dir, HVI_SHARED_DIR, g_dir);
    CHECK_EQ_U64(run(cmd, &out), 0);
    free(out);
    /* The guest's banner text after "Linux version ", as the kernel prints it. */
    char banner[256] = "";
    void *buf = NULL, *elf = NULL;
    size_t len = 0, elf_len = 0;
    REQUIRE(hvi_ti_read_file(g_vmlinuz, &buf, &len, NULL, 0) == HVI_OK);
    CHECK_OK(hvi_typeinfo_extract_vmlinux(buf, len, &elf, &elf_len, NULL, 0));
    free(buf);
    REQUIRE(elf);
    CHECK_OK(hvi_typeinfo_find_banner(elf, elf_len, banner, sizeof(banner)));
    free(elf);
    snprintf(cmd, sizeof(cmd), "%s cami lookup %s/x.bin --linux '%s' 2>&1", HVI_BIN, g_dir, banner);
    CHECK_EQ_U64(run(cmd, &out), 0);
    char want[160];
    snprintf(want, sizeof(want), "linux '%s*'", g_release);
    CHECK(out && strstr(out, want) != NULL);
    CHECK(out && strstr(out, "MapleTree") && strstr(out, "MapleRange64Slots            0x10"));
    free(out);
    snprintf(cmd, sizeof(cmd), "%s cami lookup %s/x.bin --linux '5.10.0-99-amd64 (x)' 2>&1",
             HVI_BIN, g_dir);
    CHECK(run(cmd, &out) != 0);
    CHECK(out && !strstr(out, want));
    free(out);
}

HVI_TEST(cli_errors)
{
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof(cmd), "%s cami gen-linux -o /dev/null 2>&1", HVI_BIN);
    CHECK_EQ_U64(run(cmd, &out), 2); /* neither --btf nor --dwarf */
    CHECK(out && strstr(out, "usage:"));
    free(out);
    snprintf(cmd, sizeof(cmd), "%s cami gen-linux --btf /etc/hostname -o /dev/null 2>&1", HVI_BIN);
    CHECK_EQ_U64(run(cmd, &out), 1);
    CHECK(out && strstr(out, "neither raw BTF"));
    free(out);
    snprintf(cmd, sizeof(cmd), "%s cami gen-linux --dwarf /nonexistent -o /dev/null 2>&1", HVI_BIN);
    CHECK_EQ_U64(run(cmd, &out), 1);
    CHECK(out && strstr(out, "/nonexistent"));
    free(out);
}

int main(void)
{
    int rc = hvi_test_run_all();
    if (g_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", g_dir);
    }
    return rc;
}
