/*
 * hvi QEMU backend — GDB remote serial protocol client.
 *
 * Packets are "$payload#cc" with cc the modulo-256 sum of the payload bytes in two hex digits;
 * the receiver answers '+' (accepted) or '-' (send again). In replies '}' escapes the next
 * byte (XOR 0x20) and "X*n" repeats X (n - 29) more times.
 */
#define _GNU_SOURCE
#include "rsp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RSP_RETRIES 3

struct hvi_rsp {
    int fd;
    int timeout_ms;
    bool trace; /* HVI_RSP_TRACE set: log packets to stderr */
    uint8_t in[8192];
    size_t in_pos, in_len;
    char *pkt; /* decoded packet */
    size_t pkt_cap;
    char *raw; /* outgoing frame */
    size_t raw_cap;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

hvi_status hvi_rsp_from_fd(int fd, int timeout_ms, hvi_rsp **out)
{
    if (fd < 0 || !out)
        return HVI_E_INVAL;
    hvi_rsp *r = calloc(1, sizeof(*r));
    if (!r) {
        close(fd);
        return HVI_E_NOMEM;
    }
    r->fd = fd;
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    r->trace = getenv("HVI_RSP_TRACE") != NULL;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *out = r;
    return HVI_OK;
}

hvi_status hvi_rsp_connect(const char *host, uint16_t port, int timeout_ms, hvi_rsp **out)
{
    if (!host || !out || !port)
        return HVI_E_INVAL;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return HVI_E_INVAL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return HVI_E_IO;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (errno != EINPROGRESS) {
            close(fd);
            return HVI_E_CLOSED;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t el = sizeof(err);
        if (poll(&p, 1, timeout_ms) != 1) {
            close(fd);
            return HVI_E_TIMEOUT;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            close(fd);
            return HVI_E_CLOSED;
        }
    }
    return hvi_rsp_from_fd(fd, timeout_ms, out);
}

void hvi_rsp_close(hvi_rsp *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->pkt);
    free(r->raw);
    free(r);
}

int hvi_rsp_fd(const hvi_rsp *r)
{
    return r ? r->fd : -1;
}

void hvi_rsp_set_timeout(hvi_rsp *r, int timeout_ms)
{
    if (r && timeout_ms > 0)
        r->timeout_ms = timeout_ms;
}

hvi_status hvi_rsp_wait_readable(hvi_rsp *r, int timeout_ms)
{
    if (r->in_pos < r->in_len)
        return HVI_OK;
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    int n;
    do {
        n = poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return HVI_E_IO;
    if (n == 0)
        return HVI_E_TIMEOUT;
    return HVI_OK;
}

/* Next byte before the deadline. */
static hvi_status rsp_getc(hvi_rsp *r, int64_t deadline, uint8_t *c)
{
    while (r->in_pos >= r->in_len) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return HVI_E_TIMEOUT;
        hvi_status st = hvi_rsp_wait_readable(r, (int)left);
        if (st != HVI_OK)
            return st;
        ssize_t n = recv(r->fd, r->in, sizeof(r->in), 0);
        if (n == 0)
            return HVI_E_CLOSED;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return errno == ECONNRESET ? HVI_E_CLOSED : HVI_E_IO;
        }
        r->in_pos = 0;
        r->in_len = (size_t)n;
    }
    *c = r->in[r->in_pos++];
    return HVI_OK;
}

static hvi_status rsp_write_all(hvi_rsp *r, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    int64_t deadline = now_ms() + r->timeout_ms;
    while (len) {
        ssize_t n = send(r->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pf = {.fd = r->fd, .events = POLLOUT};
                int64_t left = deadline - now_ms();
                if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
                    return HVI_E_TIMEOUT;
                continue;
            }
            return (errno == EPIPE || errno == ECONNRESET) ? HVI_E_CLOSED : HVI_E_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return HVI_OK;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

hvi_status hvi_rsp_interrupt(hvi_rsp *r)
{
    if (!r)
        return HVI_E_INVAL;
    const uint8_t b = 0x03;
    if (r->trace)
        fprintf(stderr, "rsp -> ^C\n");
    return rsp_write_all(r, &b, 1);
}

static hvi_status grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return HVI_OK;
    if (need > HVI_RSP_MAX_PACKET + 16)
        return HVI_E_FORMAT;
    size_t nc = *cap ? *cap : 1024;
    while (nc < need)
        nc *= 2;
    char *n = realloc(*buf, nc);
    if (!n)
        return HVI_E_NOMEM;
    *buf = n;
    *cap = nc;
    return HVI_OK;
}

hvi_status hvi_rsp_send(hvi_rsp *r, const char *payload)
{
    if (!r || !payload)
        return HVI_E_INVAL;
    size_t len = strlen(payload);
    hvi_status st = grow(&r->raw, &r->raw_cap, len + 5);
    if (st != HVI_OK)
        return st;
    uint8_t sum = 0;
    r->raw[0] = '$';
    for (size_t i = 0; i < len; i++) {
        sum = (uint8_t)(sum + (uint8_t)payload[i]);
        r->raw[i + 1] = payload[i];
    }
    snprintf(r->raw + len + 1, 4, "#%02x", sum);
    if (r->trace)
        fprintf(stderr, "rsp -> %.200s\n", payload);
    for (int attempt = 0; attempt < RSP_RETRIES; attempt++) {
        st = rsp_write_all(r, r->raw, len + 4);
        if (st != HVI_OK)
            return st;
        int64_t deadline = now_ms() + r->timeout_ms;
        uint8_t c;
        for (;;) {
            st = rsp_getc(r, deadline, &c);
            if (st != HVI_OK)
                return st;
            if (c == '+')
                return HVI_OK;
            if (c == '-')
                break;
            if (c == '$') { /* a reply without an ack: keep it for recv */
                r->in_pos--;
                return HVI_OK;
            }
            /* other bytes before the ack are noise; ignore a bounded amount */
        }
    }
    return HVI_E_FORMAT;
}

/* Read one frame after '$': payload into r->raw (undecoded), verify the checksum. */
static hvi_status read_frame(hvi_rsp *r, int64_t deadline, size_t *rawlen, bool *sum_ok)
{
    uint8_t c, sum = 0;
    size_t n = 0;
    hvi_status st;
    for (;;) {
        if ((st = rsp_getc(r, deadline, &c)) != HVI_OK)
            return st;
        if (c == '#')
            break;
        if (c == '$') /* a new frame starts: drop the partial one */
            n = 0, sum = 0;
        if (n >= HVI_RSP_MAX_PACKET)
            return HVI_E_FORMAT;
        if ((st = grow(&r->raw, &r->raw_cap, n + 1)) != HVI_OK)
            return st;
        if (c != '$') {
            r->raw[n++] = (char)c;
            sum = (uint8_t)(sum + c);
        }
    }
    uint8_t h1, h2;
    if ((st = rsp_getc(r, deadline, &h1)) != HVI_OK || (st = rsp_getc(r, deadline, &h2)) != HVI_OK)
        return st;
    int a = hexval(h1), b = hexval(h2);
    *sum_ok = a >= 0 && b >= 0 && (uint8_t)(a * 16 + b) == sum;
    *rawlen = n;
    return HVI_OK;
}

/* Undo escapes and run-length encoding from r->raw into r->pkt. */
static hvi_status decode_frame(hvi_rsp *r, size_t rawlen, size_t *outlen)
{
    size_t o = 0;
    hvi_status st;
    for (size_t i = 0; i < rawlen; i++) {
        char c = r->raw[i];
        if (c == '}') {
            if (++i >= rawlen)
                return HVI_E_FORMAT;
            c = (char)(r->raw[i] ^ 0x20);
        } else if (c == '*') {
            if (o == 0 || ++i >= rawlen)
                return HVI_E_FORMAT;
            int rep = (uint8_t)r->raw[i] - 29;
            if (rep < 0 || o + (size_t)rep > HVI_RSP_MAX_PACKET)
                return HVI_E_FORMAT;
            if ((st = grow(&r->pkt, &r->pkt_cap, o + (size_t)rep + 1)) != HVI_OK)
                return st;
            memset(r->pkt + o, r->pkt[o - 1], (size_t)rep);
            o += (size_t)rep;
            continue;
        }
        if ((st = grow(&r->pkt, &r->pkt_cap, o + 2)) != HVI_OK)
            return st;
        r->pkt[o++] = c;
    }
    if ((st = grow(&r->pkt, &r->pkt_cap, o + 1)) != HVI_OK)
        return st;
    r->pkt[o] = '\0';
    *outlen = o;
    return HVI_OK;
}

hvi_status hvi_rsp_recv(hvi_rsp *r, int timeout_ms, const char **out, size_t *len)
{
    if (!r || !out)
        return HVI_E_INVAL;
    int64_t deadline = now_ms() + (timeout_ms < 0 ? r->timeout_ms : timeout_ms);
    hvi_status st;
    for (int attempt = 0; attempt < RSP_RETRIES; attempt++) {
        uint8_t c;
        size_t skipped = 0;
        do { /* skip acks and noise up to the frame start */
            if ((st = rsp_getc(r, deadline, &c)) != HVI_OK)
                return st;
            if (c != '$' && ++skipped > 4096)
                return HVI_E_FORMAT;
        } while (c != '$');
        size_t rawlen = 0, dlen = 0;
        bool ok = false;
        if ((st = read_frame(r, deadline, &rawlen, &ok)) != HVI_OK)
            return st;
        if (!ok) {
            if ((st = rsp_write_all(r, "-", 1)) != HVI_OK)
                return st;
            continue;
        }
        if ((st = rsp_write_all(r, "+", 1)) != HVI_OK)
            return st;
        if ((st = decode_frame(r, rawlen, &dlen)) != HVI_OK)
            return st;
        *out = r->pkt;
        if (r->trace)
            fprintf(stderr, "rsp <- %.200s\n", r->pkt);
        if (len)
            *len = dlen;
        return HVI_OK;
    }
    return HVI_E_FORMAT;
}

hvi_status hvi_rsp_cmd(hvi_rsp *r, const char *payload, const char **out, size_t *len)
{
    const char *rep = NULL;
    size_t n = 0;
    hvi_status st = hvi_rsp_send(r, payload);
    if (st == HVI_OK)
        st = hvi_rsp_recv(r, -1, &rep, &n);
    if (st != HVI_OK)
        return st;
    if (out)
        *out = rep;
    if (len)
        *len = n;
    if (n == 0)
        return HVI_E_UNSUPPORTED;
    if (n == 3 && rep[0] == 'E' && hexval((uint8_t)rep[1]) >= 0 && hexval((uint8_t)rep[2]) >= 0)
        return HVI_E_BACKEND;
    return HVI_OK;
}

bool hvi_rsp_hex_le(const char *hex, size_t nbytes, uint64_t *out)
{
    if (!hex || nbytes > 8)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < nbytes; i++) {
        int hi = hexval((uint8_t)hex[2 * i]);
        int lo = hi < 0 ? -1 : hexval((uint8_t)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        v |= (uint64_t)(hi * 16 + lo) << (8 * i);
    }
    *out = v;
    return true;
}

void hvi_rsp_put_hex_le(char *dst, uint64_t v, size_t nbytes)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes; i++) {
        uint8_t b = (uint8_t)(v >> (8 * i));
        dst[2 * i] = digits[b >> 4];
        dst[2 * i + 1] = digits[b & 15];
    }
    dst[2 * nbytes] = '\0';
}
