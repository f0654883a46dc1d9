/*
 * hvi CLI — subcommand registration and small shared helpers.
 *
 * Each subcommand lives in its own file and registers itself with
 * HVI_COMMAND(name, function, one-line summary); main.c dispatches. A
 * command returns the process exit status: 0 success, 1 failure of the
 * operation, 2 usage error.
 */
#ifndef HVI_CLI_H
#define HVI_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "hvi/status.h"

typedef int (*hvi_cmd_fn)(int argc, char **argv);

struct hvi_cli_command {
    const char *parent; /* NULL for a top-level command, else e.g. "cami" */
    const char *name;
    hvi_cmd_fn fn;
    const char *summary;
};

void hvi_cli_register(const struct hvi_cli_command *cmd);

#define HVI_COMMAND(name_, fn_, summary_) HVI_SUBCOMMAND(NULL, name_, fn_, summary_)

/* A subcommand of `parent` ("hvi cami gen-linux"): the parent's function calls
 * hvi_cli_dispatch_sub() to reach it, so its file can live apart from the parent's. */
#define HVI_SUBCOMMAND(parent_, name_, fn_, summary_)                                              \
    static const struct hvi_cli_command hvi_cmd_desc_##fn_ = {parent_, name_, fn_, summary_};      \
    __attribute__((constructor)) static void hvi_cmd_register_##fn_(void)                         \
    {                                                                                              \
        hvi_cli_register(&hvi_cmd_desc_##fn_);                                                    \
    }

/* Run subcommand argv[1] of `parent` with (argc - 1, argv + 1). Prints the parent's subcommand
 * list for --help or no argument. Returns the exit status (2 for an unknown subcommand). */
int hvi_cli_dispatch_sub(const char *parent, int argc, char **argv);
/* Print the registered subcommands of `parent`, one per line, to `to` (a FILE *). */
void hvi_cli_list_sub(const char *parent, void *to);

/* Print "hvi: <what>: <status text>" to stderr and return 1. */
int hvi_cli_fail(const char *what, hvi_status st);
/* True when argv[i] is -h or --help. */
bool hvi_cli_is_help(const char *arg);
/* Parse an unsigned integer (decimal or 0x hex). */
bool hvi_cli_parse_u64(const char *s, uint64_t *out);
/* Read a whole file into a malloc'd buffer. */
hvi_status hvi_cli_read_file(const char *path, void **buf, size_t *len);

#endif
