/*
 * The CLI on a dump, without QEMU: an ELF core of the simulator's synthetic Linux guest is
 * written to a file and `hvi ps|modules|maps|hidden --dump FILE --offsets ...` are run as
 * processes. Their output must show the guest's two processes; a missing file, a truncated
 * dump and a dump without registers must fail with exit 1 and say why.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../unit/dump/elf_writer.h"
#include "../../unit/dump/sim_guest.h"
#include "harness.h"

static char g_out[1 << 16];

/* Run `hvi ARGS`, stdout and stderr into g_out; the exit status. */
static int hvi(const char *args)
{
    char cmd[2048], path[64];
    snprintf(path, sizeof(path), "/tmp/hvi-cli-dump-out-%d.txt", (int)getpid());
    snprintf(cmd, sizeof(cmd), "'%s/tools/hvi/hvi' %s > '%s' 2>&1", HVI_BINARY_DIR, args, path);
    int rc = system(cmd);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(g_out, 1, sizeof(g_out) - 1, f) : 0;
    g_out[n] = 0;
    if (f)
        fclose(f);
    unlink(path);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static bool write_file(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(b, 1, n, f) == n;
    if (f)
        fclose(f);
    return ok;
}

HVI_TEST(ps_modules_maps_hidden_on_a_dump_file)
{
    struct simguest v;
    REQUIRE(simguest_new(&v));
    size_t n = 0;
    uint8_t *b = simguest_elf(&v, &n);
    REQUIRE(b);
    char dump[64], args[512];
    snprintf(dump, sizeof(dump), "/tmp/hvi-cli-dump-%d.elf", (int)getpid());
    REQUIRE(write_file(dump, b, n));

    snprintf(args, sizeof(args), "ps --dump %s --offsets %s --json", dump, v.offsets);
    CHECK(hvi(args) == 0);
    CHECK(strstr(g_out, "\"pid\":7,") && strstr(g_out, "\"comm\":\"sim_proc\"") &&
          strstr(g_out, "\"pid\":8,") && strstr(g_out, "\"comm\":\"sim_two\"") &&
          strstr(g_out, "\"uid\":1000"));
    snprintf(args, sizeof(args), "ps --dump %s --offsets %s", dump, v.offsets);
    CHECK(hvi(args) == 0);
    CHECK(strstr(g_out, "kernel: Linux 6.1.0-56-amd64") && strstr(g_out, "sim_two"));
    snprintf(args, sizeof(args), "modules --dump %s --offsets %s --json", dump, v.offsets);
    CHECK(hvi(args) == 0);
    CHECK(!strcmp(g_out, "[]\n"));
    if (strcmp(g_out, "[]\n"))
        fprintf(stderr, "%s", g_out);
    snprintf(args, sizeof(args), "maps 7 --dump %s --offsets %s", dump, v.offsets);
    CHECK(hvi(args) == 0);
    snprintf(args, sizeof(args), "hidden --dump %s --offsets %s", dump, v.offsets);
    CHECK(hvi(args) == 0);
    CHECK(strstr(g_out, "0 hidden process(es), 0 hidden module(s)"));
    if (!strstr(g_out, "0 hidden"))
        fprintf(stderr, "%s", g_out);

    snprintf(args, sizeof(args), "attach --dump %s", dump); /* no support data: memory level */
    CHECK(hvi(args) == 0);
    CHECK(strstr(g_out, "vCPU 0:") && strstr(g_out, "paging: 4-level") && strstr(g_out, "IDT") &&
          !strstr(g_out, "detached"));
    if (!strstr(g_out, "paging: 4-level"))
        fprintf(stderr, "%s", g_out);

    /* failures: missing, truncated, no registers, both --vm and --dump usage stays valid */
    snprintf(args, sizeof(args), "ps --dump %s.missing --offsets %s", dump, v.offsets);
    CHECK(hvi(args) == 1);
    CHECK(strstr(g_out, "No such file"));
    REQUIRE(write_file(dump, b, n - 4096));
    snprintf(args, sizeof(args), "ps --dump %s --offsets %s", dump, v.offsets);
    CHECK(hvi(args) == 1);
    CHECK(strstr(g_out, "beyond the end of the file"));
    hvi_regs none;
    memset(&none, 0, sizeof(none));
    struct ew_seg seg = {0, b, 0x10000};
    struct ew_opts o = {.no_qemu = true};
    size_t m = 0;
    uint8_t *c = ew_build(&seg, 1, &none, 1, &o, &m, NULL);
    REQUIRE(c && write_file(dump, c, m));
    CHECK(hvi(args) == 1);
    CHECK(strstr(g_out, "control registers"));
    CHECK(hvi("ps --dump") == 2);               /* no file name: usage */
    CHECK(hvi("ps --vm x --dump /tmp/y") == 2); /* a guest or a dump, not both */
    free(c);
    free(b);
    unlink(dump);
    unlink(v.offsets);
    hvi_sim_free(v.sim);
}

HVI_TEST_MAIN()
