/* Runs `hvi win-demo` (path in argv[1]) on the reference support data and checks what it
 * prints: the detected build, processes, drivers, the detour event and the denied SSDT write;
 * usage errors and an unknown build. */
#define _POSIX_C_SOURCE 200809L
#include <sys/wait.h>

#include "harness.h"

#define CAMI_BIN HVI_SHARED_DIR "/reference/hvmi-cami/intro_live_update.bin"

static const char *hvi_path;

static int run(const char *args, char *out, size_t out_len)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "env -u HVI_CAMI '%s' %s 2>&1", hvi_path, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, out_len - 1, p);
    out[n] = 0;
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static bool have_cami(void)
{
    FILE *f = fopen(CAMI_BIN, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

HVI_TEST(win_demo_default_build)
{
    if (!have_cami())
        SKIP_CASE("reference CAMI file missing: " CAMI_BIN);
    static char out[32768];
    CHECK_EQ_U64(run("win-demo --cami " CAMI_BIN, out, sizeof(out)), 0);
    CHECK(strstr(out, "not a real Windows") != NULL);
    CHECK(strstr(out,
                 "detected: build 17763, x64, kpti on; CAMI entry \"Windows 10 RS5 x64 kpti\"") !=
          NULL);
    CHECK(strstr(out, "KiServiceTable 0x") != NULL && strstr(out, "(448 entries)") != NULL);
    CHECK(strstr(out, "PspInsertProcess") != NULL && strstr(out, "detoured") != NULL);
    CHECK(strstr(out, "NOT FOUND") == NULL);
    CHECK(strstr(out, "processes (7, PsActiveProcessHead)") != NULL);
    CHECK(strstr(out, "System") != NULL && strstr(out, "svchost.exe") != NULL);
    CHECK(strstr(out, "drivers (7, PsLoadedModuleList)") != NULL);
    CHECK(strstr(out, "\\SystemRoot\\system32\\ntoskrnl.exe") != NULL);
    CHECK(strstr(out, "process-create: process pid 8000 \"notepad.exe\"") != NULL);
    CHECK(strstr(out, "parent=svchost.exe") != NULL);
    CHECK(strstr(out, "exec-blocked: process pid 8004 \"mimikatz.exe\"") != NULL);
    CHECK(strstr(out, "rule=mimikatz.exe status=0xc0000022") != NULL);
    CHECK(strstr(out, "PspInsertProcess returned 0xc0000022 to its caller") != NULL);
    CHECK(strstr(out, "MiProcessLoaderEntry") != NULL &&
          strstr(out, "MiUnloadSystemImage") != NULL);
    CHECK(strstr(out, "module-load:") != NULL && strstr(out, "rootkit.sys") != NULL);
    CHECK(strstr(out, "ept-write: object nt-ssdt") != NULL);
    CHECK(strstr(out, "in kd.dll (kd.dll+0x1a2b), DENIED") != NULL);
    CHECK(strstr(out, "write DENIED") != NULL);
    /* the last process in detail: parameters through its CR3, VADs, threads */
    CHECK(strstr(out, "process pid 280:") != NULL);
    CHECK(strstr(out, "image path:   C:\\Windows\\System32\\svchost.exe") != NULL);
    CHECK(strstr(out, "command line: \"C:\\Windows\\System32\\svchost.exe\" -sim 280") != NULL);
    CHECK(strstr(out, "VA space (5 VADs, EPROCESS.VadRoot)") != NULL);
    CHECK(strstr(out, "0x00007ffab0000000 0x00007ffab01fffff image    EXECUTE_WRITECOPY "
                      "\\Windows\\System32\\ntdll.dll") != NULL);
    CHECK(strstr(out, "image    EXECUTE_WRITECOPY \\Windows\\System32\\svchost.exe") != NULL);
    CHECK(strstr(out, "0x00000000001e0000 0x00000000001effff private  READWRITE") != NULL);
    CHECK(strstr(out, "threads (2, ThreadListHead)") != NULL);
    CHECK(strstr(out, "modules (2, PEB.Ldr):") != NULL);
    CHECK(strstr(out, "0x00007ffab0000000 0x200000  ntdll.dll      "
                      "C:\\Windows\\System32\\ntdll.dll") != NULL);
    CHECK(strstr(out, "10432  0xffffa08") != NULL);
    /* the SSDT alert names the process whose thread runs on the writing vCPU */
    CHECK(strstr(out, "current process: pid 280 \"svchost.exe\"") != NULL);
}

HVI_TEST(win_demo_pid_option)
{
    if (!have_cami())
        SKIP_CASE("reference CAMI file missing: " CAMI_BIN);
    static char out[32768];
    CHECK_EQ_U64(run("win-demo --pid 4 --cami " CAMI_BIN, out, sizeof(out)), 0);
    CHECK(strstr(out, "process pid 4:") != NULL);
    CHECK(strstr(out, "parameters: not found (pid 4 has no PEB)") != NULL);
    CHECK(strstr(out, "VA space (0 VADs") != NULL);
    CHECK(strstr(out, "threads (1, ThreadListHead)") != NULL);
    CHECK_EQ_U64(run("win-demo --pid 9999 --cami " CAMI_BIN, out, sizeof(out)), 0);
    CHECK(strstr(out, "VADs: not found (no process with pid 9999)") != NULL);
    CHECK_EQ_U64(run("win-demo --pid 0 --cami " CAMI_BIN, out, sizeof(out)), 2);
}

HVI_TEST(win_demo_json_and_other_build)
{
    if (!have_cami())
        SKIP_CASE("reference CAMI file missing: " CAMI_BIN);
    static char out[32768];
    CHECK_EQ_U64(
        run("win-demo --json --build 7601 --kpti off --processes 2 --drivers 1 --cami " CAMI_BIN,
            out, sizeof(out)),
        0);
    CHECK(strstr(out, "detected: build 7601, x64, kpti off") != NULL);
    CHECK(strstr(out, "processes (3,") != NULL && strstr(out, "drivers (3,") != NULL);
    CHECK(strstr(out, "\"type\":\"ept-write\"") != NULL);
    CHECK(strstr(out, "\"object\":\"nt-ssdt\"") != NULL);
    CHECK(strstr(out, "\"action\":\"denied\"") != NULL);
    CHECK(strstr(out, "\"type\":\"process-create\"") != NULL);
    CHECK(strstr(out, "\"pid\":264,\"comm\":\"csrss.exe\"") != NULL); /* the SSDT writer's */
    CHECK(strstr(out, "VA space (5 VADs") != NULL);
}

HVI_TEST(win_demo_errors)
{
    static char out[8192];
    CHECK_EQ_U64(run("win-demo --help", out, sizeof(out)), 0);
    CHECK(strstr(out, "usage: hvi win-demo") != NULL);
    CHECK(strstr(out, "not a real Windows") != NULL);
    CHECK_EQ_U64(run("win-demo", out, sizeof(out)), 2);
    CHECK(strstr(out, "no support data") != NULL);
    CHECK_EQ_U64(run("win-demo --bogus", out, sizeof(out)), 2);
    CHECK_EQ_U64(run("win-demo --processes 99 --cami x", out, sizeof(out)), 2);
    CHECK_EQ_U64(run("win-demo --cami /nonexistent/file", out, sizeof(out)), 1);
    if (!have_cami())
        SKIP_CASE("reference CAMI file missing: " CAMI_BIN);
    CHECK_EQ_U64(run("win-demo --build 19041 --cami " CAMI_BIN, out, sizeof(out)), 1);
    CHECK(strstr(out, "no x64 entry") != NULL);
    CHECK_EQ_U64(run("--help", out, sizeof(out)), 0);
    CHECK(strstr(out, "win-demo") != NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_cli_win_demo PATH-TO-HVI\n");
        return 2;
    }
    hvi_path = argv[1];
    return hvi_test_run_all();
}
