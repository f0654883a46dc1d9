/* hvi modules — the guest's loaded kernel modules, read from its `modules` list. */
#include <stdio.h>

#include "cli.h"
#include "hvi/linux.h"
#include "linux_session.h"

static int cmd_modules(int argc, char **argv)
{
    struct linux_session s;
    int rc = linux_session_open(&s, argc, argv,
                                "hvi modules [--vm NAME | --dump FILE] [--json] [--offsets FILE]"
                                " [--cami FILE]");
    if (rc)
        return rc == LINUX_SESSION_HELP ? 0 : rc;
    hvi_linux_module *m = NULL;
    size_t n = 0;
    hvi_status st = hvi_linux_list_modules(s.engine, &m, &n);
    if (st != HVI_OK) {
        fprintf(stderr, "hvi modules: %s\n", hvi_last_error(s.engine));
        linux_session_close(&s);
        return 1;
    }
    if (s.json)
        printf("[");
    else
        printf("%-24s %-18s %10s %10s %10s\n", "NAME", "BASE", "SIZE", "TEXT", "RO");
    for (size_t i = 0; i < n; i++) {
        if (s.json) {
            printf("%s{\"name\":", i ? ",\n " : "");
            linux_json_str(m[i].name);
            printf(",\"base\":\"0x%llx\",\"size\":%u,\"text_size\":%u,\"ro_size\":%u,\"state\":%u}",
                   (unsigned long long)m[i].base, m[i].size, m[i].text_size, m[i].ro_size,
                   m[i].state);
        } else {
            printf("%-24s 0x%016llx %10u %10u %10u\n", m[i].name, (unsigned long long)m[i].base,
                   m[i].size, m[i].text_size, m[i].ro_size);
        }
    }
    if (s.json)
        printf("]\n");
    hvi_linux_free(m);
    linux_session_close(&s);
    return 0;
}

HVI_COMMAND("modules", cmd_modules, "list the guest's kernel modules, read from its memory")
