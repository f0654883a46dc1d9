/* hvi CLI — entry point and subcommand dispatch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hvi/hvi.h"

#define MAX_COMMANDS 64

static const struct hvi_cli_command *commands[MAX_COMMANDS];
static size_t command_count;

void hvi_cli_register(const struct hvi_cli_command *cmd)
{
    if (command_count < MAX_COMMANDS)
        commands[command_count++] = cmd;
}

int hvi_cli_fail(const char *what, hvi_status st)
{
    fprintf(stderr, "hvi: %s: %s\n", what, hvi_strstatus(st));
    return 1;
}

bool hvi_cli_is_help(const char *arg)
{
    return arg && (!strcmp(arg, "-h") || !strcmp(arg, "--help"));
}

bool hvi_cli_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || !end || *end || *s == '-')
        return false;
    *out = v;
    return true;
}

hvi_status hvi_cli_read_file(const char *path, void **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return HVI_E_IO;
    hvi_status st = HVI_E_IO;
    unsigned char *data = NULL;
    size_t used = 0, cap = 0;
    for (;;) {
        if (used == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            unsigned char *n = realloc(data, ncap);
            if (!n) {
                st = HVI_E_NOMEM;
                goto out;
            }
            data = n;
            cap = ncap;
        }
        size_t got = fread(data + used, 1, cap - used, f);
        used += got;
        if (got == 0) {
            if (ferror(f))
                goto out;
            break;
        }
    }
    *buf = data;
    *len = used;
    data = NULL;
    st = HVI_OK;
out:
    free(data);
    fclose(f);
    return st;
}

static int cmp_cmd(const void *a, const void *b)
{
    const struct hvi_cli_command *x = *(const struct hvi_cli_command *const *)a;
    const struct hvi_cli_command *y = *(const struct hvi_cli_command *const *)b;
    return strcmp(x->name, y->name);
}

void hvi_cli_list_sub(const char *parent, void *to)
{
    for (size_t i = 0; i < command_count; i++)
        if (commands[i]->parent && !strcmp(commands[i]->parent, parent))
            fprintf((FILE *)to, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
}

int hvi_cli_dispatch_sub(const char *parent, int argc, char **argv)
{
    if (argc < 2 || hvi_cli_is_help(argv[1])) {
        FILE *to = argc < 2 ? stderr : stdout;
        fprintf(to, "usage: hvi %s <subcommand> [args...]\n\nsubcommands:\n", parent);
        hvi_cli_list_sub(parent, to);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < command_count; i++)
        if (commands[i]->parent && !strcmp(commands[i]->parent, parent) &&
            !strcmp(commands[i]->name, argv[1]))
            return commands[i]->fn(argc - 1, argv + 1);
    fprintf(stderr, "hvi: unknown subcommand '%s %s' (see 'hvi %s --help')\n", parent, argv[1],
            parent);
    return 2;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: hvi [--version] [--help] <command> [args...]\n\n"
                "hvi is a hypervisor memory introspection engine: it reads a virtual machine's\n"
                "memory and vCPU state from outside, understands the guest kernel, and raises\n"
                "alerts on tampering.\n\ncommands:\n");
    for (size_t i = 0; i < command_count; i++)
        if (!commands[i]->parent)
            fprintf(to, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(to, "\nRun 'hvi <command> --help' for the options of one command.\n");
}

int main(int argc, char **argv)
{
    qsort(commands, command_count, sizeof(commands[0]), cmp_cmd);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (hvi_cli_is_help(argv[1]) || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("hvi %s\n", HVI_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < command_count; i++)
        if (!commands[i]->parent && !strcmp(argv[1], commands[i]->name))
            return commands[i]->fn(argc - 1, argv + 1);
    fprintf(stderr, "hvi: unknown command '%s' (see 'hvi --help')\n", argv[1]);
    return 2;
}
