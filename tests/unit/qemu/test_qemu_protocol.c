/*
 * Unit: the RSP and QMP clients and the session against fake peers — checksums, escapes,
 * run-length, retransmission, malformed replies, a socket closed mid-reply, silence.
 * Every failure must be a clear status, never a hang or a leak.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/engine.h"
#include "harness.h"
#include "hvi_qemu.h"
#include "qmp.h"
#include "rsp.h"
#include "session.h"
#include "vm_internal.h"

static void frame(char *out, size_t len, const char *payload)
{
    unsigned sum = 0;
    for (const char *p = payload; *p; p++)
        sum += (unsigned char)*p;
    snprintf(out, len, "$%s#%02x", payload, sum & 0xff);
}

static void put(int fd, const char *s)
{
    if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
        abort();
}

static hvi_rsp *rsp_pair(int *peer, int timeout_ms)
{
    int sv[2];
    *peer = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return NULL;
    hvi_rsp *r = NULL;
    if (hvi_rsp_from_fd(sv[0], timeout_ms, &r) != HVI_OK)
        return NULL;
    *peer = sv[1];
    return r;
}

static size_t drain(int fd, char *buf, size_t len)
{
    struct timespec ts = {0, 20000000L};
    nanosleep(&ts, NULL);
    ssize_t n = recv(fd, buf, len - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = '\0';
    return n > 0 ? (size_t)n : 0;
}

HVI_TEST(rsp_good_packet_is_acked)
{
    int peer;
    hvi_rsp *r = rsp_pair(&peer, 1000);
    REQUIRE(r);
    char f[64], ack[16];
    frame(f, sizeof(f), "OK");
    put(peer, f);
    const char *out;
    size_t n;
    CHECK_OK(hvi_rsp_recv(r, -1, &out, &n));
    CHECK_STR(out, "OK");
    drain(peer, ack, sizeof(ack));
    CHECK_STR(ack, "+");
    hvi_rsp_close(r);
    close(peer);
}

HVI_TEST(rsp_bad_checksum_asks_again_then_fails)
{
    int peer;
    hvi_rsp *r = rsp_pair(&peer, 1000);
    REQUIRE(r);
    put(peer, "$OK#00$OK#9a"); /* one bad, then good */
    const char *out;
    char acks[16];
    CHECK_OK(hvi_rsp_recv(r, -1, &out, NULL));
    CHECK_STR(out, "OK");
    drain(peer, acks, sizeof(acks));
    CHECK_STR(acks, "-+");
    put(peer, "$OK#00$OK#01$OK#zz"); /* three bad: give up */
    CHECK_STATUS(hvi_rsp_recv(r, -1, &out, NULL), HVI_E_FORMAT);
    hvi_rsp_close(r);
    close(peer);
}

HVI_TEST(rsp_escape_and_run_length)
{
    int peer;
    hvi_rsp *r = rsp_pair(&peer, 1000);
    REQUIRE(r);
    char f[64];
    frame(f, sizeof(f), "0* 1}]"); /* "0" + 3 more "0", "1", '}' ^ 0x20 ^ ... = 0x7d */
    put(peer, f);
    const char *out;
    size_t n = 0;
    CHECK_OK(hvi_rsp_recv(r, -1, &out, &n));
    CHECK_STR(out, "00001}");
    CHECK_EQ_U64(n, 6);
    frame(f, sizeof(f), "*!"); /* run-length with nothing to repeat */
    put(peer, f);
    CHECK_STATUS(hvi_rsp_recv(r, -1, &out, &n), HVI_E_FORMAT);
    frame(f, sizeof(f), "ab}"); /* escape at the end */
    put(peer, f);
    CHECK_STATUS(hvi_rsp_recv(r, -1, &out, &n), HVI_E_FORMAT);
    hvi_rsp_close(r);
    close(peer);
}

HVI_TEST(rsp_closed_mid_reply)
{
    int peer;
    hvi_rsp *r = rsp_pair(&peer, 1000);
    REQUIRE(r);
    put(peer, "$T05thr");
    close(peer);
    const char *out;
    CHECK_STATUS(hvi_rsp_recv(r, -1, &out, NULL), HVI_E_CLOSED);
    CHECK_STATUS(hvi_rsp_send(r, "g"), HVI_E_CLOSED);
    hvi_rsp_close(r);
}

HVI_TEST(rsp_silence_times_out)
{
    int peer;
    hvi_rsp *r = rsp_pair(&peer, 150);
    REQUIRE(r);
    const char *out;
    CHECK_STATUS(hvi_rsp_recv(r, -1, &out, NULL), HVI_E_TIMEOUT);
    CHECK_STATUS(hvi_rsp_send(r, "g"), HVI_E_TIMEOUT); /* no ack */
    hvi_rsp_close(r);
    close(peer);
}

HVI_TEST(rsp_nacks_and_noise)
{
    int peer;
    hvi_rsp *r = rsp_pair(&peer, 300);
    REQUIRE(r);
    put(peer, "---");
    CHECK_STATUS(hvi_rsp_send(r, "g"), HVI_E_FORMAT); /* the peer never accepts */
    char sent[128];
    drain(peer, sent, sizeof(sent));
    CHECK_STR(sent, "$g#67$g#67$g#67");
    char *noise = malloc(5000);
    REQUIRE(noise);
    memset(noise, 'x', 4999);
    noise[4999] = '\0';
    put(peer, noise);
    free(noise);
    const char *out;
    CHECK_STATUS(hvi_rsp_recv(r, -1, &out, NULL), HVI_E_FORMAT);
    put(peer, "+$E01#a6");
    CHECK_STATUS(hvi_rsp_cmd(r, "m0,1", &out, NULL), HVI_E_BACKEND);
    put(peer, "+$#00");
    CHECK_STATUS(hvi_rsp_cmd(r, "qFoo", &out, NULL), HVI_E_UNSUPPORTED);
    hvi_rsp_close(r);
    close(peer);
}

HVI_TEST(rsp_hex_helpers)
{
    uint64_t v = 0;
    CHECK(hvi_rsp_hex_le("3300058000000000", 8, &v));
    CHECK_EQ_U64(v, 0x80050033);
    CHECK(!hvi_rsp_hex_le("33zz", 2, &v));
    CHECK(!hvi_rsp_hex_le("33", 2, &v)); /* too short */
    char buf[17];
    hvi_rsp_put_hex_le(buf, 0x1122, 2);
    CHECK_STR(buf, "2211");
}

/* ---- QMP ---- */

static hvi_qmp *qmp_pair(int *peer, const char *prewritten, hvi_status *st)
{
    int sv[2];
    *peer = -1;
    *st = HVI_E_BACKEND;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return NULL;
    put(sv[1], prewritten);
    hvi_qmp *q = NULL;
    *st = hvi_qmp_from_fd(sv[0], 300, &q);
    *peer = sv[1];
    return q;
}

HVI_TEST(qmp_status_skips_events_and_reports_errors)
{
    int peer;
    hvi_status st;
    hvi_qmp *q = qmp_pair(&peer, "{\"QMP\": {\"version\": {}}}\r\n{\"return\": {}}\r\n", &st);
    CHECK_OK(st);
    REQUIRE(q);
    put(peer,
        "{\"event\": \"STOP\"}\r\n{\"return\": {\"status\": \"debug\", \"running\": false}}\r\n");
    char status[32];
    CHECK_OK(hvi_qmp_status(q, status, sizeof(status)));
    CHECK_STR(status, "debug");
    put(peer, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such thing\"}}\n");
    CHECK_STATUS(hvi_qmp_exec(q, "bogus", NULL, NULL), HVI_E_BACKEND);
    CHECK_STR(hvi_qmp_error(q), "no such thing");
    put(peer, "this is not json\n");
    CHECK_STATUS(hvi_qmp_exec(q, "query-status", NULL, NULL), HVI_E_FORMAT);
    put(peer, "{\"neither\": 1}\n");
    CHECK_STATUS(hvi_qmp_exec(q, "query-status", NULL, NULL), HVI_E_FORMAT);
    put(peer, "{\"return\": {\"status\": 7}}\n");
    CHECK_STATUS(hvi_qmp_status(q, status, sizeof(status)), HVI_E_FORMAT);
    CHECK_STATUS(hvi_qmp_exec(q, "query-status", NULL, NULL), HVI_E_TIMEOUT); /* silence */
    put(peer, "{\"return\": ");
    close(peer);
    CHECK_STATUS(hvi_qmp_exec(q, "query-status", NULL, NULL), HVI_E_CLOSED);
    hvi_qmp_close(q);
}

HVI_TEST(qmp_events_piled_up_between_commands_are_dropped)
{
    int peer;
    hvi_status st;
    hvi_qmp *q = qmp_pair(&peer, "{\"QMP\": {\"version\": {}}}\r\n{\"return\": {}}\r\n", &st);
    CHECK_OK(st);
    REQUIRE(q);
    /* a busy event session: a STOP and a RESUME per breakpoint stop, 3000 lines unread */
    size_t cap = 1500 * 64, n = 0;
    char *evs = malloc(cap); /* one write: thousands of small ones would fill the socket */
    REQUIRE(evs);
    for (int i = 0; i < 1500; i++)
        n += (size_t)snprintf(evs + n, cap - n,
                              "{\"event\":\"STOP\",\"n\":%d}\n{\"event\":\"RESUME\"}\n", i);
    put(peer, evs);
    free(evs);
    put(peer, "{\"event\": \"STO"); /* and half of one more */
    char status[32];
    /* the reply comes after the command, behind the rest of that event */
    put(peer, "P\"}\r\n{\"return\": {\"status\": \"running\", \"running\": true}}\r\n");
    CHECK_OK(hvi_qmp_status(q, status, sizeof(status)));
    CHECK_STR(status, "running");
    hvi_qmp_close(q);
    close(peer);
}

struct late_writer {
    int fd;
    char *text;
};

static void *write_late(void *p)
{
    struct late_writer *w = p;
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    put(w->fd, w->text);
    return NULL;
}

HVI_TEST(qmp_event_backlog_flushed_during_a_command_is_skipped)
{
    int peer;
    hvi_status st;
    hvi_qmp *q = qmp_pair(&peer, "{\"QMP\": {\"version\": {}}}\r\n{\"return\": {}}\r\n", &st);
    CHECK_OK(st);
    REQUIRE(q);
    /* QEMU still flushing 3000 queued events after the command was sent, then the reply */
    size_t cap = 1500 * 64 + 128, n = 0;
    struct late_writer w = {.fd = peer, .text = malloc(cap)};
    REQUIRE(w.text);
    for (int i = 0; i < 1500; i++)
        n += (size_t)snprintf(w.text + n, cap - n,
                              "{\"event\":\"STOP\",\"n\":%d}\n{\"event\":\"RESUME\"}\n", i);
    snprintf(w.text + n, cap - n, "{\"return\": {\"status\": \"running\"}}\n");
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, write_late, &w) == 0);
    char status[32];
    CHECK_OK(hvi_qmp_status(q, status, sizeof(status)));
    CHECK_STR(status, "running");
    pthread_join(t, NULL);
    free(w.text);
    hvi_qmp_close(q);
    close(peer);
}

HVI_TEST(qmp_bad_greeting)
{
    int peer;
    hvi_status st;
    hvi_qmp *q = qmp_pair(&peer, "{\"hello\": 1}\n", &st);
    CHECK_STATUS(st, HVI_E_FORMAT);
    CHECK(q == NULL);
    close(peer);
}

HVI_TEST(qmp_info_registers_parse)
{
    const char *text = "RAX=0000000000000000 RBX=0000000000000000\r\n"
                       "ES =0000 0000000000000000 ffffffff 00c00000\r\n"
                       "CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]\r\n"
                       "SS =0018 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]\r\n"
                       "DS =0000 0000000000000000 ffffffff 00c00000\r\n"
                       "FS =0000 0000000000000000 ffffffff 00c00000\r\n"
                       "GS =0000 ffff88801f000000 ffffffff 00c00000\r\n"
                       "GDT=     fffffe0000001000 0000007f\r\n"
                       "IDT=     fffffe0000000000 00000fff\r\n";
    hvi_regs r = {0};
    CHECK_OK(hvi_qmp_parse_info_registers(text, &r));
    CHECK_EQ_U64(r.idtr_base, 0xfffffe0000000000ull);
    CHECK_EQ_U64(r.idtr_limit, 0xfff);
    CHECK_EQ_U64(r.gdtr_base, 0xfffffe0000001000ull);
    CHECK_EQ_U64(r.seg[HVI_CS].selector, 0x10);
    CHECK_EQ_U64(r.seg[HVI_CS].ar, 0xa09b);
    CHECK_EQ_U64(r.seg[HVI_GS].base, 0xffff88801f000000ull);
    hvi_regs bad = {0};
    CHECK_STATUS(hvi_qmp_parse_info_registers("IDT= zz\n", &bad), HVI_E_FORMAT);
    CHECK_EQ_U64(bad.valid, 0);
}

/* ---- a scripted fake gdbstub for the session ---- */

enum fake_mode {
    FAKE_OK,
    FAKE_GARBAGE_STOP,
    FAKE_EXIT,
    FAKE_SILENT,
    FAKE_SHORT_G,
    FAKE_SMP,
    FAKE_CUT_G,    /* the reply to `g` stops half way and the socket closes */
    FAKE_CUT_STOP, /* the stop reply after `c` stops half way and the socket closes */
    FAKE_HEX_G     /* `g` answered with non-hex register text */
};

struct fake {
    int listen_fd;
    uint16_t port;
    enum fake_mode mode;
    pthread_t thread;
    /* FAKE_SMP: two vCPUs (threads 1, 2), both stopped at a breakpoint at 0x1000 */
    uint64_t rip[3];
    unsigned sel, steps, conts;
};

/* FAKE_SMP, like QEMU's all-stop gdbstub after two vCPUs hit a breakpoint at once: the first
 * step is answered at once, naming the other vCPU (with a watchpoint hit), before the stepped
 * vCPU moved; `c` reports a vCPU still at 0x1000 (it hits the breakpoint again). */
static const char *fake_smp(struct fake *f, const char *pkt, char *buf, size_t len)
{
    if (!strncmp(pkt, "Hg", 2)) {
        f->sel = (unsigned)strtoul(pkt + 2, NULL, 16);
        return f->sel == 1 || f->sel == 2 ? "OK" : "E01";
    }
    if (!strcmp(pkt, "p10")) {
        hvi_rsp_put_hex_le(buf, f->rip[f->sel == 2 ? 2 : 1], 8);
        return buf;
    }
    if (!strncmp(pkt, "vCont;s:", 8)) {
        unsigned t = (unsigned)strtoul(pkt + 8, NULL, 16);
        if (f->steps++ == 0) { /* (a stop selects the reported thread, as in QEMU) */
            f->sel = t == 1 ? 2 : 1;
            return t == 1 ? "T05thread:02;watch:2000;" : "T05thread:01;watch:2000;";
        }
        if (t == 1 || t == 2)
            f->rip[t] += 5;
        f->sel = t;
        snprintf(buf, len, "T05thread:%02x;", t);
        return buf;
    }
    if (!strcmp(pkt, "c")) {
        f->conts++;
        for (unsigned t = 1; t <= 2; t++)
            if (f->rip[t] == 0x1000) {
                f->sel = t;
                snprintf(buf, len, "T05thread:%02x;", t);
                return buf;
            }
        return NULL; /* both past the breakpoint: the guest runs on */
    }
    return NULL;
}

static const char *fake_reply(struct fake *f, const char *pkt, char *buf, size_t len)
{
    const char *smp = f->mode == FAKE_SMP ? fake_smp(f, pkt, buf, len) : NULL;
    if (smp)
        return smp;
    if (!strncmp(pkt, "qXfer:features:read:target.xml", 30))
        return "l<target><architecture>i386:x86-64</architecture></target>";
    if (!strcmp(pkt, "qfThreadInfo"))
        return "m01,02";
    if (!strcmp(pkt, "qsThreadInfo"))
        return "l";
    if (!strncmp(pkt, "Hg", 2) || !strncmp(pkt, "Z", 1) || !strncmp(pkt, "z", 1) ||
        !strcmp(pkt, "D;1"))
        return "OK";
    if (!strcmp(pkt, "g") && f->mode == FAKE_CUT_G)
        return "!$00000000000000000000"; /* '!': raw bytes, then close */
    if (!strcmp(pkt, "c") && f->mode == FAKE_CUT_STOP)
        return "!$T05thre";
    if (!strcmp(pkt, "g")) {
        size_t n = f->mode == FAKE_SHORT_G ? 100 : 608;
        for (size_t i = 0; i < 2 * n && i + 1 < len; i++)
            buf[i] = '0';
        buf[2 * n < len ? 2 * n : len - 1] = '\0';
        memcpy(buf + 2 * 16 * 8, "efbeadde00000000", 16); /* rip */
        /* xmm3: after 33 core registers (236 bytes), st0-7 (80), fctrl..fop (32), xmm0-2 (48) */
        if (n == 608)
            memcpy(buf + 2 * (236 + 80 + 32 + 48), "00112233445566778899aabbccddeeff", 32);
        if (f->mode == FAKE_HEX_G)
            memcpy(buf + 2 * 8 * 27, "zz", 2); /* cr0 */
        return buf;
    }
    if (!strcmp(pkt, "p10"))
        return "efbeadde00000000";
    if (!strcmp(pkt, "c"))
        return f->mode == FAKE_GARBAGE_STOP ? "Qgarbage" : f->mode == FAKE_EXIT ? "W00" : NULL;
    return "";
}

static void *fake_main(void *p)
{
    struct fake *f = p;
    int c = accept(f->listen_fd, NULL, NULL);
    if (c < 0)
        return NULL;
    int one = 1; /* answer each packet at once (no Nagle delay between "+" and the reply) */
    (void)setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char fr[4096], buf[2048], in[8192];
    if (f->mode != FAKE_SILENT) {
        frame(fr, sizeof(fr), "T02thread:01;");
        put(c, fr);
    }
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(c, in + have, sizeof(in) - have - 1, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        in[have] = '\0';
        char *brk;
        while (f->mode != FAKE_SILENT && (brk = memchr(in, 0x03, have))) { /* interrupt */
            memmove(brk, brk + 1, have - (size_t)(brk - in));
            have--;
            frame(fr, sizeof(fr), "T02thread:01;");
            put(c, fr);
        }
        char *s, *h;
        while ((s = strchr(in, '$')) && (h = strchr(s, '#')) && strlen(h) >= 3) {
            *h = '\0';
            const char *rep =
                f->mode == FAKE_SILENT ? NULL : fake_reply(f, s + 1, buf, sizeof(buf));
            put(c, "+");
            if (rep && rep[0] == '!') { /* cut the reply short: the peer went away */
                put(c, rep + 1);
                close(c);
                return NULL;
            }
            if (rep) {
                frame(fr, sizeof(fr), rep);
                put(c, fr);
            }
            memmove(in, h + 3, strlen(h + 3) + 1);
            have = strlen(in);
        }
        if (have >= sizeof(in) - 1)
            have = 0;
    }
    close(c);
    return NULL;
}

static bool fake_start(struct fake *f, enum fake_mode mode)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    f->mode = mode;
    f->rip[1] = f->rip[2] = 0x1000;
    f->sel = 1;
    f->steps = f->conts = 0;
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(f->listen_fd, 1) != 0 || getsockname(f->listen_fd, (struct sockaddr *)&sa, &sl) != 0)
        return false;
    f->port = ntohs(sa.sin_port);
    return pthread_create(&f->thread, NULL, fake_main, f) == 0;
}

static void fake_stop(struct fake *f)
{
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
}

HVI_TEST(session_against_fake_stub)
{
    struct fake f;
    REQUIRE(fake_start(&f, FAKE_OK));
    hvi_qemu_conn c = {.gdb_port = f.port, .timeout_ms = 500};
    hvi_qemu *q = NULL;
    hvi_glue g;
    CHECK_OK(hvi_qemu_connect(&c, &q));
    REQUIRE(q);
    CHECK_OK(hvi_qemu_glue(q, &g));
    CHECK_OK(hvi_glue_check(&g));
    CHECK(!(g.caps & HVI_CAP_PHYS_MAP) && !(g.caps & HVI_CAP_DTR) && !(g.caps & HVI_CAP_EPT));
    CHECK(!(g.caps & HVI_CAP_MSR_READ));
    uint32_t n = 0;
    CHECK_OK(g.vcpu_count(q, &n));
    CHECK_EQ_U64(n, 2);
    hvi_regs r;
    CHECK_OK(g.get_regs(q, 1, HVI_REGS_GPR, &r));
    CHECK_EQ_U64(r.rip, 0xdeadbeef);
    CHECK_STATUS(g.get_regs(q, 1, HVI_REGS_DTR, &r), HVI_E_UNSUPPORTED); /* no QMP */
    void *p;
    CHECK_STATUS(g.map_gpa(q, 0, &p), HVI_E_RANGE); /* no RAM file */
    CHECK_OK(g.set_breakpoint(q, 0x1000, true));
    CHECK_STATUS(g.set_breakpoint(q, 0x1000, true), HVI_E_EXISTS);
    CHECK_STATUS(g.set_breakpoint(q, 0x2000, false), HVI_E_NOT_FOUND);
    CHECK_STATUS(g.set_watchpoint(q, 0x1001, 8, HVI_WATCH_WRITE, true), HVI_E_INVAL);
    /* accelerator unknown (no QMP to ask query-kvm): debug-register rules, no range watchpoints */
    CHECK(!(g.caps & HVI_CAP_WATCH_RANGE));
    CHECK_STATUS(g.set_watchpoint(q, 0x1000, 16, HVI_WATCH_WRITE, true), HVI_E_INVAL);
    CHECK_OK(hvi_qemu_close(q));
    fake_stop(&f);
}

HVI_TEST(session_garbage_stop_and_exit_end_the_session)
{
    static const enum fake_mode modes[2] = {FAKE_GARBAGE_STOP, FAKE_EXIT};
    static const hvi_status want[2] = {HVI_E_FORMAT, HVI_E_CLOSED};
    for (int i = 0; i < 2; i++) {
        struct fake f;
        REQUIRE(fake_start(&f, modes[i]));
        hvi_qemu_conn c = {.gdb_port = f.port, .timeout_ms = 500};
        hvi_qemu *q = NULL;
        CHECK_OK(hvi_qemu_connect(&c, &q));
        REQUIRE(q);
        uint32_t ev = 0;
        CHECK_STATUS(hvi_qemu_run(q, NULL, 2000, 0, &ev), want[i]);
        CHECK_EQ_U64(ev, 0);
        CHECK(strlen(hvi_qemu_last_error(q)) > 0);
        hvi_regs r;
        hvi_glue g;
        hvi_qemu_glue(q, &g);
        CHECK_STATUS(g.get_regs(q, 0, HVI_REGS_GPR, &r), HVI_E_CLOSED);
        hvi_qemu_close(q);
        fake_stop(&f);
    }
}

HVI_TEST(session_silent_or_short_stub_fails_cleanly)
{
    struct fake f;
    REQUIRE(fake_start(&f, FAKE_SILENT));
    hvi_qemu_conn c = {.gdb_port = f.port, .timeout_ms = 200};
    hvi_qemu *q = NULL;
    CHECK_STATUS(hvi_qemu_connect(&c, &q), HVI_E_TIMEOUT);
    CHECK(q == NULL);
    fake_stop(&f);
    REQUIRE(fake_start(&f, FAKE_SHORT_G));
    c.gdb_port = f.port;
    CHECK_OK(hvi_qemu_connect(&c, &q));
    REQUIRE(q);
    hvi_glue g;
    hvi_regs r;
    hvi_qemu_glue(q, &g);
    CHECK_STATUS(g.get_regs(q, 0, HVI_REGS_GPR, &r), HVI_E_FORMAT);
    hvi_qemu_close(q);
    fake_stop(&f);
    hvi_qemu_conn none = {.gdb_port = 1, .timeout_ms = 200}; /* nothing listens on port 1 */
    CHECK_STATUS(hvi_qemu_connect(&none, &q), HVI_E_CLOSED);
}

HVI_TEST(session_xmm_register_from_the_register_packet)
{
    struct fake f;
    REQUIRE(fake_start(&f, FAKE_OK));
    hvi_qemu_conn c = {.gdb_port = f.port, .timeout_ms = 2000};
    hvi_qemu *q = NULL;
    CHECK_OK(hvi_qemu_connect(&c, &q));
    REQUIRE(q);
    hvi_glue g;
    hvi_qemu_glue(q, &g);
    CHECK_OK(hvi_glue_check(&g));
    CHECK(g.caps & HVI_CAP_VEC_REGS);
    uint8_t x[16], zero[16] = {0};
    CHECK_OK(g.get_vec_reg(q, 0, 3, x));
    for (int i = 0; i < 16; i++)
        CHECK_EQ_U64(x[i], (uint64_t)(i * 0x11));
    CHECK_OK(g.get_vec_reg(q, 0, 2, x));
    CHECK(memcmp(x, zero, 16) == 0);
    CHECK_STATUS(g.get_vec_reg(q, 0, 16, x), HVI_E_INVAL);
    hvi_qemu_close(q);
    fake_stop(&f);
}

HVI_TEST(session_cut_or_garbage_replies_end_the_session)
{
    static const enum fake_mode modes[3] = {FAKE_CUT_G, FAKE_CUT_STOP, FAKE_HEX_G};
    static const hvi_status want[3] = {HVI_E_CLOSED, HVI_E_CLOSED, HVI_E_FORMAT};
    for (int i = 0; i < 3; i++) {
        struct fake f;
        REQUIRE(fake_start(&f, modes[i]));
        hvi_qemu_conn c = {.gdb_port = f.port, .timeout_ms = 2000};
        hvi_qemu *q = NULL;
        hvi_glue g;
        hvi_regs r;
        CHECK_OK(hvi_qemu_connect(&c, &q));
        REQUIRE(q);
        CHECK_OK(hvi_qemu_glue(q, &g));
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (modes[i] == FAKE_CUT_STOP) {
            uint32_t ev = 7;
            CHECK_STATUS(hvi_qemu_run(q, NULL, 10000, 0, &ev), want[i]);
            CHECK_EQ_U64(ev, 0);
        } else {
            CHECK_STATUS(g.get_regs(q, 0, HVI_REGS_GPR | HVI_REGS_CR, &r), want[i]);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* at once, not after a timeout (the cut ones), and the session is over */
        if (want[i] == HVI_E_CLOSED)
            CHECK(t1.tv_sec - t0.tv_sec < 2);
        CHECK(strlen(hvi_qemu_last_error(q)) > 0);
        CHECK_STATUS(g.get_regs(q, 0, HVI_REGS_GPR, &r), HVI_E_CLOSED);
        CHECK_STATUS(g.set_breakpoint(q, 0x1000, true), HVI_E_CLOSED);
        CHECK_STATUS(hvi_qemu_run(q, NULL, 100, 0, NULL), HVI_E_CLOSED);
        hvi_qemu_close(q);
        fake_stop(&f);
    }
}

struct evlog {
    uint32_t n;
    hvi_event ev[8];
};

static hvi_status log_event(hvi_engine *e, const hvi_event *ev, hvi_event_reply *rep, void *ctx)
{
    struct evlog *l = ctx;
    (void)e, (void)rep;
    if (l->n < 8)
        l->ev[l->n] = *ev;
    l->n++;
    return HVI_OK;
}

HVI_TEST(session_smp_early_step_reply_and_other_vcpu_stop)
{
    struct fake f;
    REQUIRE(fake_start(&f, FAKE_SMP));
    hvi_qemu_conn c = {.gdb_port = f.port, .timeout_ms = 500};
    hvi_qemu *q = NULL;
    hvi_glue g;
    hvi_engine *e = NULL;
    struct evlog l = {0};
    CHECK_OK(hvi_qemu_connect(&c, &q));
    REQUIRE(q);
    CHECK_OK(hvi_qemu_glue(q, &g));
    REQUIRE(hvi_engine_new(&g, &e) == HVI_OK);
    REQUIRE(hvi_engine_add_handler(e, HVI_EV_BREAKPOINT, log_event, &l) == HVI_OK);
    REQUIRE(hvi_engine_add_handler(e, HVI_EV_WATCHPOINT, log_event, &l) == HVI_OK);
    CHECK_OK(g.set_breakpoint(q, 0x1000, true));
    CHECK_OK(g.set_watchpoint(q, 0x2000, 8, HVI_WATCH_WRITE, true));
    uint32_t n = 0;
    CHECK_OK(hvi_qemu_run(q, e, 1500, 0, &n));
    /* vCPU 0's hit once (its early-answered step repeated, not a second report), the other
     * vCPU's watchpoint stop met during that step delivered on vCPU 1, then vCPU 1's hit. */
    CHECK_EQ_U64(n, 3);
    CHECK_EQ_U64(l.n, 3);
    CHECK(l.ev[0].type == HVI_EV_BREAKPOINT && l.ev[0].vcpu == 0 && l.ev[0].gva == 0x1000);
    CHECK(l.ev[1].type == HVI_EV_WATCHPOINT && l.ev[1].vcpu == 1 && l.ev[1].gva == 0x2000);
    CHECK(l.ev[2].type == HVI_EV_BREAKPOINT && l.ev[2].vcpu == 1 && l.ev[2].gva == 0x1000);
    CHECK_EQ_U64(q->step_retries, 1);
    CHECK_EQ_U64(q->foreign_stops, 1);
    CHECK_EQ_U64(f.rip[1], 0x1005);
    CHECK_EQ_U64(f.rip[2], 0x1005);
    hvi_engine_free(e);
    CHECK_OK(hvi_qemu_close(q));
    fake_stop(&f);
}

HVI_TEST(snapshot_cpu_section_search)
{
    static uint8_t buf[4096];
    memset(buf, 0x55, sizeof(buf));
    /* a full section header for CPU 1, version 12, at 100; fields follow at 117 */
    const uint8_t hdr[17] = {0x04, 0, 0, 0, 9, 3, 'c', 'p', 'u', 0, 0, 0, 1, 0, 0, 0, 12};
    memcpy(buf + 100, hdr, sizeof(hdr));
    uint32_t ver = 0;
    CHECK(hvi_qemu_snapshot_cpu(buf, sizeof(buf), 1, &ver) == buf + 117);
    CHECK_EQ_U64(ver, 12);
    CHECK(hvi_qemu_snapshot_cpu(buf, sizeof(buf), 0, &ver) == NULL); /* no CPU 0 */
    CHECK(hvi_qemu_snapshot_cpu(buf, 117 + 100, 1, &ver) == NULL);   /* fields cut short */
    CHECK(hvi_qemu_snapshot_cpu(buf, 10, 1, &ver) == NULL);
    CHECK(hvi_qemu_snapshot_cpu(buf, 0, 1, &ver) == NULL);
    memcpy(buf + 2000, hdr, sizeof(hdr)); /* twice: ambiguous, refused */
    CHECK(hvi_qemu_snapshot_cpu(buf, sizeof(buf), 1, &ver) == NULL);
}

HVI_TEST(msr_read_is_opt_in_and_needs_qmp)
{
    struct fake f;
    REQUIRE(fake_start(&f, FAKE_OK));
    hvi_qemu_conn c = {.gdb_port = f.port, .timeout_ms = 500};
    hvi_qemu *q = NULL;
    hvi_glue g;
    uint64_t v;
    CHECK_OK(hvi_qemu_connect(&c, &q));
    REQUIRE(q);
    CHECK_OK(hvi_qemu_glue(q, &g));
    CHECK(!(g.caps & HVI_CAP_MSR_READ) && g.get_msr == NULL);
    CHECK_STATUS(hvi_qemu_set_msr_read(q, true), HVI_E_UNSUPPORTED); /* no QMP */
    CHECK_STATUS(hvi_qemu_get_msr(q, 0, HVI_MSR_LSTAR, &v), HVI_E_UNSUPPORTED);
    CHECK_STATUS(hvi_qemu_get_msr(q, 9, HVI_MSR_LSTAR, &v), HVI_E_INVAL);
    CHECK_OK(hvi_qemu_close(q));
    fake_stop(&f);
}

/* ---- test-guest management without booting ---- */

static int argv_find(char *const *argv, const char *a, const char *b)
{
    for (int i = 0; argv[i]; i++)
        if (!strcmp(argv[i], a) && (!b || (argv[i + 1] && !strcmp(argv[i + 1], b))))
            return i;
    return -1;
}

HVI_TEST(cmdline_tcg_kvm_and_accel_choice)
{
    struct hvi_qemu_vm vm;
    memset(&vm, 0, sizeof(vm));
    snprintf(vm.dir, sizeof(vm.dir), "/w/g");
    snprintf(vm.ram_path, sizeof(vm.ram_path), "/dev/shm/hvi-g-1");
    snprintf(vm.qmp_sock, sizeof(vm.qmp_sock), "/w/g/qmp.sock");
    vm.mem_bytes = 512ull << 20;
    vm.gdb_port = 4321;
    vm.smp = 1;
    hvi_qemu_vm_opts o = {.nokaslr = true, .workload = "getpid"};
    struct hvi_qemu_cmdline *c = malloc(sizeof(*c));
    REQUIRE(c);
    CHECK_OK(hvi_qemu_build_cmdline(&vm, &o, "/boot/k", "/w/i", "tcg", c));
    CHECK_STR(c->argv[0], "qemu-system-x86_64");
    CHECK(argv_find(c->argv, "-accel", "tcg") > 0);
    CHECK(argv_find(c->argv, "-cpu", "qemu64") > 0);
    CHECK(argv_find(c->argv, "-gdb", "tcp:127.0.0.1:4321") > 0);
    CHECK(argv_find(c->argv, "-m", "512M") > 0);
    CHECK(argv_find(c->argv, "-no-reboot", NULL) > 0);
    CHECK(argv_find(c->argv, "-daemonize", NULL) < 0);
    CHECK(strstr(c->memobj, "mem-path=/dev/shm/hvi-g-1,share=on"));
    CHECK(strstr(c->append, " nokaslr") && strstr(c->append, " hvi.workload=getpid"));
    vm.smp = 2;
    CHECK_OK(hvi_qemu_build_cmdline(&vm, &o, "/boot/k", "/w/i", "tcg", c));
    CHECK(argv_find(c->argv, "-accel", "tcg,thread=multi") > 0);
    CHECK(argv_find(c->argv, "-smp", "2") > 0);
    /* KVM: the same machine, RAM file, gdbstub and QMP; only the accelerator changes */
    o.persistent = true;
    o.cpu_max = true;
    CHECK_OK(hvi_qemu_build_cmdline(&vm, &o, "/boot/k", "/w/i", "kvm", c));
    CHECK(argv_find(c->argv, "-accel", "kvm") > 0);
    CHECK(argv_find(c->argv, "-accel", "tcg") < 0 &&
          argv_find(c->argv, "-accel", "tcg,thread=multi") < 0);
    CHECK(argv_find(c->argv, "-cpu", "max") > 0);
    o.cpu = "qemu64,+smep,+smap"; /* an explicit model wins over cpu_max */
    CHECK_OK(hvi_qemu_build_cmdline(&vm, &o, "/boot/k", "/w/i", "kvm", c));
    CHECK(argv_find(c->argv, "-cpu", "qemu64,+smep,+smap") > 0);
    o.cpu = NULL;
    CHECK(argv_find(c->argv, "-machine", "q35,memory-backend=mem") > 0);
    CHECK(argv_find(c->argv, "-gdb", "tcp:127.0.0.1:4321") > 0);
    CHECK(argv_find(c->argv, "-pidfile", "/w/g/qemu.pid") > 0);
    CHECK(argv_find(c->argv, "-daemonize", NULL) > 0);
    CHECK_STATUS(hvi_qemu_build_cmdline(&vm, &o, "/boot/k", "/w/i", "hax", c), HVI_E_INVAL);
    free(c);
    const char *a = NULL;
    CHECK_OK(hvi_qemu_resolve_accel(NULL, true, &a));
    CHECK_STR(a, "tcg"); /* TCG unless asked */
    CHECK_OK(hvi_qemu_resolve_accel("kvm", false, &a));
    CHECK_STR(a, "kvm"); /* asked for: QEMU says why it fails */
    CHECK_OK(hvi_qemu_resolve_accel("auto", true, &a));
    CHECK_STR(a, "kvm");
    CHECK_OK(hvi_qemu_resolve_accel("auto", false, &a));
    CHECK_STR(a, "tcg");
    CHECK_STATUS(hvi_qemu_resolve_accel("whpx", true, &a), HVI_E_INVAL);
    CHECK(strstr(hvi_qemu_vm_last_error(), "whpx"));
    if (access("/dev/kvm", F_OK) != 0)
        CHECK(!hvi_qemu_kvm_usable());
    else /* here /dev/kvm exists (and creates VMs) on a CPU without VMX/SVM: not usable */
        fprintf(stderr, "  /dev/kvm present; KVM %s\n",
                hvi_qemu_kvm_usable() ? "usable" : "not usable (no VMX/SVM flag)");
}

HVI_TEST(vm_start_missing_kernel_is_a_clear_error)
{
    hvi_qemu_vm_opts o = {.kernel = "/nonexistent/vmlinuz", .state_root = "/tmp"};
    hvi_qemu_vm *vm = NULL;
    CHECK_STATUS(hvi_qemu_vm_start(&o, &vm), HVI_E_NOT_FOUND);
    CHECK(vm == NULL);
    CHECK(strstr(hvi_qemu_vm_last_error(), "/nonexistent/vmlinuz") != NULL);
    o.kernel = "/etc/hostname";
    o.name = "bad/name";
    CHECK_STATUS(hvi_qemu_vm_start(&o, &vm), HVI_E_INVAL);
    CHECK_STATUS(hvi_qemu_vm_find("/tmp", "no-such-vm-here", &vm), HVI_E_NOT_FOUND);
    CHECK_STATUS(hvi_qemu_vm_find("/tmp", "../etc", &vm), HVI_E_INVAL);
}

HVI_TEST(block_extraction)
{
    const char *text = "noise\nHVI-BEGIN ps\n1 init\n2 kthreadd\nHVI-END ps\nmore\n";
    char *b = hvi_qemu_block(text, "ps");
    CHECK_STR(b, "1 init\n2 kthreadd\n");
    free(b);
    CHECK(hvi_qemu_block(text, "modules") == NULL);
    CHECK(hvi_qemu_block("HVI-BEGIN ps\nunterminated", "ps") == NULL);
}

HVI_TEST_MAIN()
