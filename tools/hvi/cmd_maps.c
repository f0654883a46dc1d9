/* hvi maps PID — a guest process's memory map, read from its maple tree. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "hvi/linux.h"
#include "linux_session.h"

static void perms(uint64_t f, char out[5])
{
    out[0] = (f & 1) ? 'r' : '-';
    out[1] = (f & 2) ? 'w' : '-';
    out[2] = (f & 4) ? 'x' : '-';
    out[3] = (f & 8) ? 's' : 'p';
    out[4] = 0;
}

static int cmd_maps(int argc, char **argv)
{
    struct linux_session s;
    const char *usage =
        "hvi maps PID [--vm NAME | --dump FILE] [--json] [--offsets FILE] [--cami FILE]";
    int rc = linux_session_open(&s, argc, argv, usage);
    if (rc)
        return rc == LINUX_SESSION_HELP ? 0 : rc;
    uint64_t pid = 0;
    if (s.nrest != 1 || !hvi_cli_parse_u64(s.rest[0], &pid) || pid > 0x7fffffff) {
        fprintf(stderr, "usage: %s\n", usage);
        linux_session_close(&s);
        return 2;
    }
    hvi_linux_vma *v = NULL;
    size_t n = 0;
    hvi_status st = hvi_linux_list_vmas(s.engine, (int32_t)pid, &v, &n);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi maps: %s\n", hvi_last_error(s.engine));
        linux_session_close(&s);
        return 1;
    }
    if (s.json)
        printf("[");
    for (size_t i = 0; i < n; i++) {
        char p[5];
        perms(v[i].flags, p);
        if (s.json) {
            printf("%s{\"start\":\"0x%llx\",\"end\":\"0x%llx\",\"perms\":\"%s\",\"flags\":\"0x%llx\","
                   "\"pgoff\":%llu,\"path\":",
                   i ? ",\n " : "", (unsigned long long)v[i].start, (unsigned long long)v[i].end, p,
                   (unsigned long long)v[i].flags, (unsigned long long)v[i].pgoff);
            linux_json_str(v[i].path);
            printf("}");
        } else {
            printf("%08llx-%08llx %s %08llx %s\n", (unsigned long long)v[i].start,
                   (unsigned long long)v[i].end, p, (unsigned long long)(v[i].pgoff << 12),
                   v[i].path);
        }
    }
    if (s.json)
        printf("]\n");
    hvi_linux_free(v);
    linux_session_close(&s);
    return 0;
}

HVI_COMMAND("maps", cmd_maps, "show a guest process's memory map, read from its memory")
