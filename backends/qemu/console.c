/*
 * hvi QEMU backend — talk to the guest shell on the serial port (a unix-socket chardev; QEMU
 * also keeps everything in serial.log).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hvi_qemu.h"
#include "vm_internal.h"

#define CONSOLE_MAX_OUTPUT (8u << 20)

static int64_t con_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int con_connect(const char *path, int64_t deadline)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    while (con_now_ms() < deadline) { /* the chardev takes one client at a time: retry */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return fd;
        close(fd);
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

/* Find a whole line equal to `line` (after "\r" removal) in buf[from..len). Returns its start. */
static char *find_line(char *buf, size_t from, const char *line, bool contains)
{
    size_t ll = strlen(line);
    for (char *p = buf + from; (p = strstr(p, line)) != NULL; p += ll) {
        bool start = p == buf || p[-1] == '\n';
        bool end = p[ll] == '\n';
        if (contains ? (memchr(p, '\n', strlen(p)) != NULL) : (start && end))
            return p;
    }
    return NULL;
}

static void strip_cr(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++)
        if (*r != '\r')
            *w++ = *r;
    *w = '\0';
}

static hvi_status con_collect(int fd, const char *begin, const char *end, bool user_end,
                              int64_t deadline, char **out)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return HVI_E_NOMEM;
    hvi_status st = HVI_E_TIMEOUT;
    for (;;) {
        int64_t left = deadline - con_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        if (cap - len < 4096) {
            if (cap >= CONSOLE_MAX_OUTPUT) {
                st = HVI_E_LIMIT;
                break;
            }
            char *n = realloc(buf, cap * 2);
            if (!n) {
                st = HVI_E_NOMEM;
                break;
            }
            buf = n;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            st = HVI_E_CLOSED;
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        strip_cr(buf);
        len = strlen(buf);
        char *b = find_line(buf, 0, begin, false);
        if (!b)
            continue;
        char *body = b + strlen(begin) + 1;
        char *e = find_line(buf, (size_t)(body - buf), end, user_end);
        if (!e)
            continue;
        if (user_end) /* keep the line carrying the user's marker */
            e = strchr(e, '\n') + 1;
        size_t bl = (size_t)(e - body);
        memmove(buf, body, bl);
        buf[bl] = '\0';
        *out = buf;
        return HVI_OK;
    }
    free(buf);
    return st;
}

hvi_status hvi_qemu_vm_console(hvi_qemu_vm *vm, const char *cmd, const char *end_marker,
                               int timeout_ms, char **out)
{
    if (!vm || !cmd || !out || strchr(cmd, '\n') || strlen(cmd) > 3000)
        return HVI_E_INVAL;
    if (timeout_ms <= 0)
        timeout_ms = 10000;
    int64_t deadline = con_now_ms() + timeout_ms;
    unsigned seq = vm->console_seq++;
    char begin[64], end[64], line[3300];
    /* The typed line holds the markers with '' inside, so its echo never matches them. */
    snprintf(begin, sizeof(begin), "HVI-B-%d-%u", (int)getpid(), seq);
    snprintf(end, sizeof(end), "HVI-E-%d-%u", (int)getpid(), seq);
    snprintf(line, sizeof(line), "echo H''VI-B-%d-%u; %s; echo H''VI-E-%d-%u\n", (int)getpid(), seq,
             cmd, (int)getpid(), seq);
    int fd = con_connect(vm->serial_sock, deadline);
    if (fd < 0)
        return hvi_qemu_vm_alive(vm) ? HVI_E_TIMEOUT : HVI_E_CLOSED;
    hvi_status st = HVI_OK;
    size_t left = strlen(line);
    for (const char *p = line; left && st == HVI_OK;) {
        ssize_t n = send(fd, p, left, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            st = HVI_E_CLOSED;
        else
            p += n, left -= (size_t)n;
    }
    if (st == HVI_OK)
        st = con_collect(fd, begin, end_marker ? end_marker : end, end_marker != NULL, deadline,
                         out);
    close(fd);
    return st;
}

char *hvi_qemu_block(const char *text, const char *block)
{
    if (!text || !block)
        return NULL;
    char b[128], e[128];
    snprintf(b, sizeof(b), "HVI-BEGIN %s\n", block);
    snprintf(e, sizeof(e), "HVI-END %s", block);
    const char *s = strstr(text, b);
    if (!s)
        return NULL;
    s += strlen(b);
    const char *t = strstr(s, e);
    if (!t)
        return NULL;
    return strndup(s, (size_t)(t - s));
}

hvi_status hvi_qemu_vm_kallsyms(hvi_qemu_vm *vm, const char *symbol, uint64_t *addr)
{
    if (!vm || !symbol || !addr || strlen(symbol) > 128 || strpbrk(symbol, " ;'\"$`\\|&<>()"))
        return HVI_E_INVAL;
    char cmd[200], *out = NULL;
    snprintf(cmd, sizeof(cmd), "hvi-syms %s", symbol);
    hvi_status st = hvi_qemu_vm_console(vm, cmd, NULL, 15000, &out);
    if (st != HVI_OK)
        return st;
    char *blk = hvi_qemu_block(out, "kallsyms");
    free(out);
    if (!blk)
        return HVI_E_FORMAT;
    st = HVI_E_NOT_FOUND;
    for (char *l = blk; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        uint64_t a;
        char type, name[160];
        if (sscanf(l, "%" SCNx64 " %c %159s", &a, &type, name) == 3 && !strcmp(name, symbol)) {
            *addr = a;
            st = HVI_OK;
            break;
        }
    }
    free(blk);
    return st;
}
