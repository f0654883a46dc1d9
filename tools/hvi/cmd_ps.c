/* hvi ps — the guest's processes, read from its memory (task list from init_task). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "hvi/linux.h"
#include "linux_session.h"

static void print_json(const hvi_linux_process *p, size_t n)
{
    printf("[");
    for (size_t i = 0; i < n; i++) {
        printf("%s{\"pid\":%d,\"tgid\":%d,\"ppid\":%d,\"uid\":%u,\"gid\":%u,\"euid\":%u,"
               "\"egid\":%u,\"kernel_thread\":%s,\"task\":\"0x%llx\",\"comm\":",
               i ? ",\n " : "", p[i].pid, p[i].tgid, p[i].ppid, p[i].uid, p[i].gid, p[i].euid,
               p[i].egid, p[i].kernel_thread ? "true" : "false", (unsigned long long)p[i].task);
        linux_json_str(p[i].comm);
        printf(",\"exe\":");
        linux_json_str(p[i].exe);
        printf(",\"cmdline\":");
        linux_json_str(p[i].cmdline);
        printf("}");
    }
    printf("]\n");
}

static int cmd_ps(int argc, char **argv)
{
    struct linux_session s;
    int rc = linux_session_open(
        &s, argc, argv, "hvi ps [--vm NAME | --dump FILE] [--json] [--threads] [--offsets FILE]"
                                         " [--cami FILE]");
    if (rc)
        return rc == LINUX_SESSION_HELP ? 0 : rc;
    hvi_linux_process *p = NULL;
    size_t n = 0;
    hvi_status st = hvi_linux_list_processes(s.engine, s.threads, &p, &n);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi ps: %s\n", hvi_last_error(s.engine));
        linux_session_close(&s);
        return 1;
    }
    if (s.json) {
        print_json(p, n);
    } else {
        hvi_linux_info info;
        if (hvi_linux_get_info(s.engine, &info) == HVI_OK)
            printf("kernel: Linux %s, _text 0x%llx (KASLR slide 0x%llx), %u kallsyms symbols\n",
                   info.release, (unsigned long long)info.image_start,
                   (unsigned long long)info.slide, info.symbols);
        printf("%7s %7s %7s %5s %-16s %s\n", "PID", "TGID", "PPID", "UID", "COMM", "EXE / CMDLINE");
        for (size_t i = 0; i < n; i++)
            printf("%7d %7d %7d %5u %-16s %s\n", p[i].pid, p[i].tgid, p[i].ppid, p[i].uid,
                   p[i].comm, p[i].cmdline[0] ? p[i].cmdline : p[i].exe);
    }
    hvi_linux_free(p);
    linux_session_close(&s);
    return 0;
}

HVI_COMMAND("ps", cmd_ps, "list the guest's processes, read from its memory")
