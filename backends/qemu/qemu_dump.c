/* hvi QEMU backend — QMP dump-guest-memory of a test guest (see hvi_qemu_dump.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hvi_qemu_dump.h"
#include "qmp.h"

static _Thread_local char dump_err[512];

const char *hvi_qemu_vm_dump_error(void)
{
    return dump_err;
}

static hvi_status dump_fail(hvi_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static hvi_status dump_fail(hvi_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dump_err, sizeof(dump_err), fmt, ap);
    va_end(ap);
    return st;
}

/* QEMU opens the file itself, relative to its own working directory: give it an absolute path,
 * JSON-escaped. */
static hvi_status make_args(const char *path, char *out, size_t len)
{
    char abs[4096];
    if (path[0] == '/') {
        snprintf(abs, sizeof(abs), "%s", path);
    } else {
        char cwd[2048];
        if (!getcwd(cwd, sizeof(cwd)))
            return dump_fail(HVI_E_IO, "getcwd: %s", strerror(errno));
        snprintf(abs, sizeof(abs), "%s/%s", cwd, path);
    }
    size_t o =
        (size_t)snprintf(out, len, "{\"paging\":false,\"detach\":false,\"protocol\":\"file:");
    for (const char *c = abs; *c; c++) {
        if ((unsigned char)*c < 0x20)
            return dump_fail(HVI_E_INVAL, "control character in the dump path");
        if (o + 3 >= len)
            return dump_fail(HVI_E_INVAL, "dump path too long");
        if (*c == '"' || *c == '\\')
            out[o++] = '\\';
        out[o++] = *c;
    }
    if (o + 3 >= len)
        return dump_fail(HVI_E_INVAL, "dump path too long");
    memcpy(out + o, "\"}", 3);
    return HVI_OK;
}

/* QEMU serves one QMP client at a time: a second one is accepted by the kernel but gets no
 * greeting until the first leaves. Wait for the greeting a short while only, then allow the
 * long per-reply timeout the dump itself needs. */
static hvi_status qmp_open(const char *sock, int timeout_ms, hvi_qmp **out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof(sa.sun_path))
        return dump_fail(HVI_E_RANGE, "QMP socket path too long: %s", sock);
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return dump_fail(HVI_E_IO, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int err = errno;
        close(fd);
        return dump_fail(HVI_E_CLOSED, "QMP %s: %s", sock, strerror(err));
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) {
        close(fd);
        return dump_fail(HVI_E_BUSY, "QMP %s: no greeting in 5 s (an open hvi session holds it?)",
                         sock);
    }
    hvi_status st = hvi_qmp_from_fd(fd, timeout_ms, out);
    if (st != HVI_OK)
        return dump_fail(st, "QMP %s: %s", sock, hvi_strstatus(st));
    return HVI_OK;
}

hvi_status hvi_qemu_vm_dump(hvi_qemu_vm *vm, const char *path, int timeout_ms)
{
    dump_err[0] = 0;
    if (!vm || !path || !path[0])
        return dump_fail(HVI_E_INVAL, "no VM or no output path");
    if (!hvi_qemu_vm_alive(vm))
        return dump_fail(HVI_E_CLOSED, "QEMU (pid %d) is not running", hvi_qemu_vm_pid(vm));
    char args[4300], sock[700], before[64] = "", after[64] = "";
    hvi_status st = make_args(path, args, sizeof(args));
    if (st != HVI_OK)
        return st;
    /* QEMU creates the file read-only for its owner: an old dump would make the open fail */
    if (unlink(path) != 0 && errno != ENOENT)
        return dump_fail(HVI_E_IO, "%s: %s", path, strerror(errno));
    snprintf(sock, sizeof(sock), "%s/qmp.sock", hvi_qemu_vm_dir(vm));
    hvi_qmp *q = NULL;
    if ((st = qmp_open(sock, timeout_ms > 0 ? timeout_ms : 120000, &q)) != HVI_OK)
        return st;
    if ((st = hvi_qmp_status(q, before, sizeof(before))) != HVI_OK) {
        dump_fail(st, "query-status: %s", hvi_strstatus(st));
    } else if ((st = hvi_qmp_exec(q, "dump-guest-memory", args, NULL)) != HVI_OK) {
        dump_fail(st, "dump-guest-memory: %s",
                  st == HVI_E_BACKEND ? hvi_qmp_error(q) : hvi_strstatus(st));
    }
    /* whatever happened: a guest that ran before runs after */
    if (!strcmp(before, "running") && hvi_qmp_status(q, after, sizeof(after)) == HVI_OK &&
        strcmp(after, "running") != 0) {
        hvi_status cst = hvi_qmp_exec(q, "cont", NULL, NULL);
        if (cst != HVI_OK && st == HVI_OK)
            st = dump_fail(cst, "cont after the dump: %s", hvi_strstatus(cst));
    }
    hvi_qmp_close(q);
    return st;
}
