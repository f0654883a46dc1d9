/* Runs `hvi sim-demo` (path in argv[1]) in every paging mode and checks what it prints. */
#define _POSIX_C_SOURCE 200809L
#include <sys/wait.h>

#include "harness.h"

static const char *hvi_path;

/* Run `hvi args`, capture stdout into out; returns the exit status or -1. */
static int run(const char *args, char *out, size_t out_len)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", hvi_path, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, out_len - 1, p);
    out[n] = 0;
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void check_mode(const char *mode, const char *name, const char *direct_line)
{
    char args[64], out[8192];
    snprintf(args, sizeof(args), "sim-demo --mode %s", mode);
    CHECK_EQ_U64(run(args, out, sizeof(out)), 0);
    char want[128];
    snprintf(want, sizeof(want), "paging %s, CR3 0x", name);
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, direct_line) != NULL);
    CHECK(strstr(out, "-> gpa 0x101010 page 4 KiB") != NULL);
    CHECK(strstr(out, "RW user NX") != NULL || strcmp(mode, "32") == 0);
    CHECK(strstr(out, "absent  0x0000000000500000 -> guest page not present (level 1)") != NULL);
    CHECK(strstr(out, "read 8192 bytes at") != NULL && strstr(out, "across 2 pages: ok") != NULL);
    CHECK(strstr(out, "(45 bytes, ok): \"Linux version 6.1.0-hvi-sim (demo@hvi) #1 SMP\"") != NULL);
    CHECK(strstr(out, "(11 bytes, ok): \"/bin/\xc3\xa9\xf0\x9f\x98\x80\"") != NULL);
    CHECK(strstr(out, "backend mappings outstanding after engine free: 0") != NULL);
    if (strstr(out, "ok") == NULL)
        fprintf(stderr, "%s\n", out);
}

HVI_TEST(sim_demo_4lvl)
{
    check_mode("4lvl", "4-level", "-> gpa 0x12345 page 2048 KiB levels 3 RW kernel NX");
}

HVI_TEST(sim_demo_5lvl)
{
    check_mode("5lvl", "5-level", "-> gpa 0x12345 page 2048 KiB levels 4 RW kernel NX");
}

HVI_TEST(sim_demo_pae)
{
    check_mode("pae", "pae", "-> gpa 0x12345 page 2048 KiB levels 2 RW kernel NX");
}

HVI_TEST(sim_demo_32)
{
    check_mode("32", "32-bit", "-> gpa 0x12345 page 4096 KiB levels 1 RW kernel X");
}

HVI_TEST(sim_demo_help_and_bad_args)
{
    char out[4096];
    CHECK_EQ_U64(run("sim-demo --help", out, sizeof(out)), 0);
    CHECK(strstr(out, "usage: hvi sim-demo") != NULL);
    CHECK_EQ_U64(run("sim-demo --mode 7lvl", out, sizeof(out)), 2);
    CHECK(strstr(out, "bad argument") != NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_cli_sim_demo PATH_TO_HVI\n");
        return 2;
    }
    hvi_path = argv[1];
    return hvi_test_run_all();
}
