/*
 * hvi QEMU backend — QMP client: newline-delimited JSON over a unix socket.
 */
#define _GNU_SOURCE
#include "qmp.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct hvi_qmp {
    int fd;
    int timeout_ms;
    char *buf;
    size_t len, cap;
    char error[256];
};

static int64_t qmp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *hvi_qmp_error(const hvi_qmp *q)
{
    return q ? q->error : "";
}

void hvi_qmp_close(hvi_qmp *q)
{
    if (!q)
        return;
    if (q->fd >= 0)
        close(q->fd);
    free(q->buf);
    free(q);
}

/* One line (without the newline) into *line (a json_object parsed from it). */
static hvi_status qmp_read_obj(hvi_qmp *q, int64_t deadline, json_object **obj)
{
    for (;;) {
        char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
        if (nl) {
            size_t ll = (size_t)(nl - q->buf);
            *nl = '\0';
            json_object *o = json_tokener_parse(q->buf);
            if (!o || !json_object_is_type(o, json_type_object)) {
                snprintf(q->error, sizeof(q->error), "not a JSON object: %.120s", q->buf);
                json_object_put(o);
                memmove(q->buf, nl + 1, q->len - ll - 1);
                q->len -= ll + 1;
                return HVI_E_FORMAT;
            }
            memmove(q->buf, nl + 1, q->len - ll - 1);
            q->len -= ll + 1;
            *obj = o;
            return HVI_OK;
        }
        if (q->len >= HVI_QMP_MAX_LINE) {
            snprintf(q->error, sizeof(q->error), "a line longer than %u bytes", HVI_QMP_MAX_LINE);
            return HVI_E_FORMAT;
        }
        if (q->cap - q->len < 4096) {
            size_t nc = q->cap ? q->cap * 2 : 8192;
            char *n = realloc(q->buf, nc);
            if (!n)
                return HVI_E_NOMEM;
            q->buf = n;
            q->cap = nc;
        }
        int64_t left = deadline - qmp_now_ms();
        struct pollfd p = {.fd = q->fd, .events = POLLIN};
        int pr = left > 0 ? poll(&p, 1, (int)left) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return pr == 0 ? HVI_E_TIMEOUT : HVI_E_IO;
        ssize_t n = recv(q->fd, q->buf + q->len, q->cap - q->len - 1, 0);
        if (n == 0)
            return HVI_E_CLOSED;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return errno == ECONNRESET ? HVI_E_CLOSED : HVI_E_IO;
        }
        q->len += (size_t)n;
    }
}

static hvi_status qmp_send(hvi_qmp *q, const char *text)
{
    size_t len = strlen(text);
    while (len) {
        ssize_t n = send(q->fd, text, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EPIPE || errno == ECONNRESET) ? HVI_E_CLOSED : HVI_E_IO;
        }
        text += n;
        len -= (size_t)n;
    }
    return HVI_OK;
}

/* Drop complete event lines at the start of the buffer; true when a non-event line is next. */
static bool drop_events(hvi_qmp *q)
{
    size_t off = 0;
    bool other = false;
    char *nl;
    while (!other && off < q->len && (nl = memchr(q->buf + off, '\n', q->len - off))) {
        *nl = '\0';
        json_object *o = json_tokener_parse(q->buf + off), *v = NULL;
        other = !o || !json_object_object_get_ex(o, "event", &v);
        json_object_put(o);
        *nl = '\n';
        if (!other)
            off = (size_t)(nl - q->buf) + 1;
    }
    memmove(q->buf, q->buf + off, q->len - off);
    q->len -= off;
    return other;
}

/*
 * Drop the events QEMU sent since the last command: a STOP and a RESUME for every breakpoint
 * stop pile up while a session delivers events, thousands of lines after a busy run, more than
 * a command may skip. Stops at anything that is not an event; at most 64 MiB per call.
 */
static hvi_status qmp_drain(hvi_qmp *q)
{
    for (size_t got = 0; got < (64u << 20);) {
        if (drop_events(q))
            return HVI_OK;
        if (q->cap - q->len < 4096) {
            if (q->cap >= 2 * (size_t)HVI_QMP_MAX_LINE)
                return HVI_OK; /* a line without end: the command's read reports it */
            size_t nc = q->cap ? q->cap * 2 : 8192;
            char *n = realloc(q->buf, nc);
            if (!n)
                return HVI_E_NOMEM;
            q->buf = n;
            q->cap = nc;
        }
        ssize_t n = recv(q->fd, q->buf + q->len, q->cap - q->len - 1, MSG_DONTWAIT);
        if (n == 0)
            return HVI_E_CLOSED;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return HVI_OK;
            return errno == ECONNRESET ? HVI_E_CLOSED : HVI_E_IO;
        }
        q->len += (size_t)n;
        got += (size_t)n;
    }
    return HVI_OK;
}

hvi_status hvi_qmp_exec(hvi_qmp *q, const char *cmd, const char *args, char **ret)
{
    if (!q || !cmd)
        return HVI_E_INVAL;
    hvi_status dst = qmp_drain(q);
    if (dst != HVI_OK)
        return dst;
    char *line = NULL;
    if (asprintf(&line, "{\"execute\":\"%s\"%s%s}\n", cmd, args ? ",\"arguments\":" : "",
                 args ? args : "") < 0)
        return HVI_E_NOMEM;
    hvi_status st = qmp_send(q, line);
    free(line);
    q->error[0] = '\0';
    /* Events before the reply are skipped within the timeout (QEMU may still be flushing a
     * backlog of them that did not fit the socket), plus a sanity bound on their number. */
    int64_t deadline = qmp_now_ms() + q->timeout_ms;
    for (int skipped = 0; st == HVI_OK; skipped++) {
        json_object *o = NULL, *v = NULL;
        if (skipped > 1000000) {
            snprintf(q->error, sizeof(q->error), "more than a million events before the reply");
            return HVI_E_FORMAT;
        }
        if ((st = qmp_read_obj(q, deadline, &o)) != HVI_OK)
            break;
        if (json_object_object_get_ex(o, "event", &v)) {
            json_object_put(o);
            continue;
        }
        if (json_object_object_get_ex(o, "return", &v)) {
            if (ret) {
                *ret = strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
                st = *ret ? HVI_OK : HVI_E_NOMEM;
            }
        } else if (json_object_object_get_ex(o, "error", &v)) {
            json_object *d = NULL;
            json_object_object_get_ex(v, "desc", &d);
            snprintf(q->error, sizeof(q->error), "%s", d ? json_object_get_string(d) : "error");
            st = HVI_E_BACKEND;
        } else {
            st = HVI_E_FORMAT;
        }
        json_object_put(o);
        return st;
    }
    return st;
}

hvi_status hvi_qmp_from_fd(int fd, int timeout_ms, hvi_qmp **out)
{
    if (fd < 0 || !out)
        return HVI_E_INVAL;
    hvi_qmp *q = calloc(1, sizeof(*q));
    if (!q) {
        close(fd);
        return HVI_E_NOMEM;
    }
    q->fd = fd;
    q->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    json_object *greet = NULL, *v = NULL;
    hvi_status st = qmp_read_obj(q, qmp_now_ms() + q->timeout_ms, &greet);
    if (st == HVI_OK && !json_object_object_get_ex(greet, "QMP", &v))
        st = HVI_E_FORMAT;
    json_object_put(greet);
    if (st == HVI_OK)
        st = hvi_qmp_exec(q, "qmp_capabilities", NULL, NULL);
    if (st != HVI_OK) {
        hvi_qmp_close(q);
        return st;
    }
    *out = q;
    return HVI_OK;
}

hvi_status hvi_qmp_connect(const char *path, int timeout_ms, hvi_qmp **out)
{
    if (!path || !out)
        return HVI_E_INVAL;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return HVI_E_RANGE;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return HVI_E_IO;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return HVI_E_CLOSED;
    }
    return hvi_qmp_from_fd(fd, timeout_ms, out);
}

hvi_status hvi_qmp_status(hvi_qmp *q, char *buf, size_t len)
{
    char *ret = NULL;
    hvi_status st = hvi_qmp_exec(q, "query-status", NULL, &ret);
    if (st != HVI_OK)
        return st;
    json_object *o = json_tokener_parse(ret), *s = NULL;
    st = HVI_E_FORMAT;
    if (o && json_object_object_get_ex(o, "status", &s) &&
        json_object_is_type(s, json_type_string)) {
        snprintf(buf, len, "%s", json_object_get_string(s));
        st = HVI_OK;
    }
    json_object_put(o);
    free(ret);
    return st;
}

hvi_status hvi_qmp_hmp(hvi_qmp *q, const char *cmdline, int cpu_index, char **out)
{
    if (!q || !cmdline || !out)
        return HVI_E_INVAL;
    json_object *args = json_object_new_object();
    if (!args)
        return HVI_E_NOMEM;
    json_object_object_add(args, "command-line", json_object_new_string(cmdline));
    if (cpu_index >= 0)
        json_object_object_add(args, "cpu-index", json_object_new_int(cpu_index));
    char *ret = NULL;
    hvi_status st =
        hvi_qmp_exec(q, "human-monitor-command",
                     json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN), &ret);
    json_object_put(args);
    if (st != HVI_OK)
        return st;
    json_object *o = json_tokener_parse(ret);
    st = HVI_E_FORMAT;
    if (o && json_object_is_type(o, json_type_string)) {
        *out = strdup(json_object_get_string(o));
        st = *out ? HVI_OK : HVI_E_NOMEM;
    }
    json_object_put(o);
    free(ret);
    return st;
}

/* "NAME =SSSS BASE LIMIT FLAGS" or "NAME=     BASE LIMIT" lines of `info registers`. */
static const char *find_field(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, name, nl) == 0)
            return p + nl;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NULL;
}

hvi_status hvi_qmp_parse_info_registers(const char *text, hvi_regs *out)
{
    static const char *const segs[HVI_SEG_COUNT] = {"ES =", "CS =", "SS =", "DS =", "FS =", "GS ="};
    if (!text || !out)
        return HVI_E_INVAL;
    uint64_t base;
    unsigned limit, sel, flags;
    const char *p = find_field(text, "IDT=");
    if (!p || sscanf(p, " %" SCNx64 " %x", &base, &limit) != 2)
        return HVI_E_FORMAT;
    out->idtr_base = base;
    out->idtr_limit = (uint16_t)limit;
    if (!(p = find_field(text, "GDT=")) || sscanf(p, " %" SCNx64 " %x", &base, &limit) != 2)
        return HVI_E_FORMAT;
    out->gdtr_base = base;
    out->gdtr_limit = (uint16_t)limit;
    out->valid |= HVI_REGS_DTR;
    for (int i = 0; i < HVI_SEG_COUNT; i++) {
        if (!(p = find_field(text, segs[i])) ||
            sscanf(p, "%x %" SCNx64 " %x %x", &sel, &base, &limit, &flags) != 4)
            return HVI_E_FORMAT;
        out->seg[i].selector = (uint16_t)sel;
        out->seg[i].base = base;
        out->seg[i].limit = limit;
        out->seg[i].ar = (uint16_t)((flags >> 8) & 0xf0ffu);
    }
    out->valid |= HVI_REGS_SEGBASE | HVI_REGS_SEG;
    return HVI_OK;
}
