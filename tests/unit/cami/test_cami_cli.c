/* hvi cami build/dump/lookup as a user runs them: exit codes, messages, output equal to the API. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cami_test_util.h"
#include "harness.h"

#define HVI_BIN HVI_BINARY_DIR "/tools/hvi/hvi"

/* run a shell command, capture stdout+stderr (truncated) and the exit status */
static int run(const char *cmd, char *out, size_t cap)
{
    char full[2048];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    while (fgetc(p) != EOF) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char out[1 << 16];

HVI_TEST(build_equals_api_and_lookup_prints_fields)
{
    REQUIRE(ct_have_reference());
    REQUIRE(access(HVI_BIN, X_OK) == 0);
    char cmd[1024], path[64];
    snprintf(path, sizeof(path), "/tmp/hvi-cami-cli-%d.bin", (int)getpid());
    snprintf(cmd, sizeof(cmd), "%s cami build %s/sources -o %s", HVI_BIN, CAMI_REF_DIR, path);
    CHECK_EQ_U64(run(cmd, out, sizeof(out)), 0);
    size_t a_len, b_len;
    void *a = ct_read(path, &a_len), *b = ct_build_corpus(&b_len);
    REQUIRE(a && b);
    CHECK(a_len == b_len && memcmp(a, b, a_len) == 0);
    snprintf(cmd, sizeof(cmd), "%s cami lookup %s --linux '4.18.0-193.el8.x86_64 (mockbuild@x)'", HVI_BIN, path);
    CHECK_EQ_U64(run(cmd, out, sizeof(out)), 0);
    CHECK(strstr(out, "linux '4.18.0-[167-]*el8*'") != NULL);
    CHECK(strstr(out, "CommOffset") != NULL);
    snprintf(cmd, sizeof(cmd), "%s cami lookup %s --windows 17763 --kpti", HVI_BIN, path);
    CHECK_EQ_U64(run(cmd, out, sizeof(out)), 0);
    CHECK(strstr(out, "windows 17763 kpti 1 x64") != NULL);
    snprintf(cmd, sizeof(cmd), "%s cami lookup %s --windows 17763", HVI_BIN, path);
    CHECK_EQ_U64(run(cmd, out, sizeof(out)), 1);
    CHECK(strstr(out, "no Windows entry for build 17763") != NULL);
    snprintf(cmd, sizeof(cmd), "%s cami dump %s --json", HVI_BIN, path);
    CHECK_EQ_U64(run(cmd, out, sizeof(out)), 0);
    CHECK(strncmp(out, "{\"version\":\"1.5\"", 16) == 0);
    unlink(path);
    free(a);
    free(b);
}

HVI_TEST(errors_and_usage)
{
    REQUIRE(access(HVI_BIN, X_OK) == 0);
    char cmd[1024];
    const char *bad = ct_tmpfile(1, "!intro_update_lix_supported_os\nversion: x\nhooks: []\nfieldz: 1\n");
    REQUIRE(bad);
    snprintf(cmd, sizeof(cmd), "%s cami build %s -o /tmp/hvi-cami-cli-never.bin", HVI_BIN, bad);
    CHECK_EQ_U64(run(cmd, out, sizeof(out)), 1);
    CHECK(strstr(out, ":4:1: unknown key 'fieldz'") != NULL);
    CHECK(access("/tmp/hvi-cami-cli-never.bin", F_OK) != 0);
    unlink(bad);
    snprintf(cmd, sizeof(cmd), "%s cami build", HVI_BIN);
    CHECK_EQ_U64(run(cmd, out, sizeof(out)), 2);
    snprintf(cmd, sizeof(cmd), "%s cami lookup /dev/null --linux x --windows 1", HVI_BIN);
    CHECK_EQ_U64(run(cmd, out, sizeof(out)), 2);
    snprintf(cmd, sizeof(cmd), "%s cami dump /dev/null", HVI_BIN);
    CHECK_EQ_U64(run(cmd, out, sizeof(out)), 1);
    snprintf(cmd, sizeof(cmd), "%s cami --help", HVI_BIN);
    CHECK_EQ_U64(run(cmd, out, sizeof(out)), 0);
    CHECK(strstr(out, "lookup") != NULL && strstr(out, "build") != NULL && strstr(out, "dump") != NULL);
}

HVI_TEST_MAIN()
