/* hvi CLI — a Linux view session shared by `hvi ps`, `hvi modules` and `hvi maps`: connect to a
 * running test guest (QEMU backend) or open a memory dump (--dump FILE, dump backend), attach
 * an engine, find the kernel. */
#ifndef HVI_CLI_LINUX_SESSION_H
#define HVI_CLI_LINUX_SESSION_H

#include <stdbool.h>

#include "hvi/hvi.h"

struct linux_session {
    void *vm, *q;          /* hvi_qemu_vm, hvi_qemu */
    void *dump;            /* hvi_dump (--dump FILE) */
    hvi_engine *engine;
    bool json;
    bool threads;          /* --threads (hvi ps) */
    const char *rest[4];   /* positional arguments */
    int nrest;
};

/* linux_session_open() after printing --help: the command exits 0. */
#define LINUX_SESSION_HELP (-1)

/* Parse --vm NAME or --dump FILE (an ELF core from `hvi vm dump`), --offsets FILE, --cami
 * FILE|DIR (compiled CAMI, or YAML sources compiled on the fly), --json, --threads and up to 4
 * positional arguments, then connect (or open the dump) and attach. Returns 0, LINUX_SESSION_HELP, or the exit status (1 failure, 2 usage)
 * after a message. */
int linux_session_open(struct linux_session *s, int argc, char **argv, const char *usage);
void linux_session_close(struct linux_session *s);
/* Print s as a JSON string (quoted, escaped). */
void linux_json_str(const char *s);

#endif
