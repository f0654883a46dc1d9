/*
 * hvi QEMU backend — session life cycle and the event loop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "session.h"
#include "vm_internal.h"

#define GiB (1ull << 30)
#define STEP_TIMEOUT_MS 3000
#define STEP_TRIES 8

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parse a stop reply. Returns HVI_OK for T/S, HVI_E_CLOSED for W/X (the target exited). */
static hvi_status parse_stop(const char *r, uint32_t *tid, uint64_t *watch, bool *has_watch)
{
    *has_watch = false;
    *tid = 0;
    if (r[0] == 'W' || r[0] == 'X')
        return HVI_E_CLOSED;
    if ((r[0] != 'T' && r[0] != 'S') || !r[1] || !r[2])
        return HVI_E_FORMAT;
    for (const char *p = r + 3; *p;) {
        const char *colon = strchr(p, ':'), *semi = strchr(p, ';');
        if (!colon || !semi || colon > semi)
            return HVI_E_FORMAT;
        size_t kl = (size_t)(colon - p);
        char *end = NULL;
        unsigned long long v = strtoull(colon + 1, &end, 16);
        if (kl == 6 && !strncmp(p, "thread", 6) && end == semi)
            *tid = (uint32_t)v;
        else if ((kl == 5 && !strncmp(p, "watch", 5)) || (kl == 6 && !strncmp(p, "rwatch", 6)) ||
                 (kl == 6 && !strncmp(p, "awatch", 6))) {
            if (end != semi)
                return HVI_E_FORMAT;
            *watch = v;
            *has_watch = true;
        }
        p = semi + 1;
    }
    return HVI_OK;
}

hvi_status hvi_qemu_wait_stop(struct hvi_qemu *q, int timeout_ms, char *buf, size_t len)
{
    int64_t deadline = s_now_ms() + timeout_ms;
    for (int i = 0; i < 256; i++) {
        const char *r;
        size_t n;
        int64_t left = deadline - s_now_ms();
        hvi_status st = hvi_rsp_recv(q->rsp, left > 0 ? (int)left : 0, &r, &n);
        if (st == HVI_E_TIMEOUT)
            return st; /* not fatal: the guest may simply not have stopped yet */
        if (st != HVI_OK)
            return hvi_qemu_sfail(q, st, "waiting for a stop reply");
        if (r[0] == 'O') /* console output from the stub */
            continue;
        if (n >= len)
            return hvi_qemu_sfail(q, HVI_E_FORMAT, "stop reply too long");
        memcpy(buf, r, n + 1);
        uint32_t tid;
        uint64_t w;
        bool hw;
        st = parse_stop(buf, &tid, &w, &hw);
        if (st != HVI_OK)
            return hvi_qemu_sfail(q, st,
                                  st == HVI_E_CLOSED ? "the guest exited" : "garbage stop reply");
        q->running = false;
        q->stops++;
        q->cur_g = tid; /* QEMU selects the stopped thread for register access */
        int v = tid ? hvi_qemu_vcpu_of(q, tid) : -1;
        if (v >= 0)
            q->last_vcpu = (uint32_t)v;
        return HVI_OK;
    }
    return hvi_qemu_sfail(q, HVI_E_FORMAT, "too many console packets");
}

hvi_status hvi_qemu_stop_now(struct hvi_qemu *q, bool *was_running)
{
    *was_running = q->running;
    if (q->dead)
        return HVI_E_CLOSED;
    if (!q->running)
        return HVI_OK;
    hvi_status st = hvi_rsp_interrupt(q->rsp);
    if (st != HVI_OK)
        return hvi_qemu_sfail(q, st, "interrupt");
    st = hvi_qemu_wait_stop(q, q->timeout_ms, q->pending, sizeof(q->pending));
    if (st == HVI_E_TIMEOUT)
        return hvi_qemu_sfail(q, st, "no stop reply after interrupt");
    if (st == HVI_OK)
        q->has_pending = strncmp(q->pending, "T02", 3) != 0 && strncmp(q->pending, "S02", 3) != 0;
    return st;
}

bool hvi_qemu_is_bp(const struct hvi_qemu *q, uint64_t gva)
{
    for (uint32_t i = 0; i < q->nbp; i++)
        if (q->bp[i] == gva)
            return true;
    return false;
}

/* Keep a stop reply for run() to deliver (one slot; a second one is dropped and said so). */
static void stash(struct hvi_qemu *q, const char *reply)
{
    if (q->has_pending) {
        snprintf(q->err, sizeof(q->err), "a second pending stop was dropped: %.200s", reply);
        return;
    }
    snprintf(q->pending, sizeof(q->pending), "%s", reply);
    q->has_pending = true;
}

/*
 * Step vCPU v once with any breakpoint at its RIP lifted.
 *
 * In all-stop mode QEMU sends one stop reply per stop, naming one vCPU, even when several hit
 * something at once; a debug request left over from such a stop makes the next resume stop
 * again at once. So the reply to `vCont;s` may come before the stepped vCPU moved, and may
 * name another vCPU. Hence: the step is repeated (up to STEP_TRIES) until v's RIP changed; a
 * watchpoint stop of another vCPU met meanwhile is kept for run() (a breakpoint stop of
 * another vCPU needs no keeping: that vCPU is still at the breakpoint and hits it again when
 * continued). The reply of v's own (last) step goes to reply.
 */
hvi_status hvi_qemu_step_once(struct hvi_qemu *q, uint32_t v, char *reply, size_t len)
{
    uint64_t rip = 0, now = 0;
    hvi_status st = hvi_qemu_read_rip(q, v, &rip);
    if (st != HVI_OK)
        return st;
    bool lifted = hvi_qemu_is_bp(q, rip);
    char cmd[64];
    const char *r;
    if (lifted) {
        snprintf(cmd, sizeof(cmd), "z%u,%llx,1", q->bp_type, (unsigned long long)rip);
        if ((st = hvi_rsp_cmd(q->rsp, cmd, &r, NULL)) != HVI_OK)
            return hvi_qemu_sfail(q, st, "lift breakpoint");
    }
    snprintf(cmd, sizeof(cmd), "vCont;s:%x", q->tid[v]);
    for (int attempt = 0; attempt < STEP_TRIES; attempt++) {
        if ((st = hvi_rsp_send(q->rsp, cmd)) != HVI_OK) {
            hvi_qemu_sfail(q, st, "single-step");
            break;
        }
        q->running = true;
        st = hvi_qemu_wait_stop(q, STEP_TIMEOUT_MS, reply, len);
        if (st == HVI_E_TIMEOUT)
            hvi_qemu_sfail(q, st, "single-step did not complete");
        if (st != HVI_OK)
            break;
        uint32_t tid = 0;
        uint64_t w = 0;
        bool hw = false, foreign;
        (void)parse_stop(reply, &tid, &w, &hw); /* validated by wait_stop */
        foreign = tid && tid != q->tid[v];
        if (foreign) {
            q->foreign_stops++;
            if (hw)
                stash(q, reply);
        } else if (hw) {
            break; /* v's instruction ran and hit a watchpoint */
        }
        if ((st = hvi_qemu_read_rip(q, v, &now)) != HVI_OK)
            break;
        if (now != rip) {
            if (foreign) /* v moved: the reply to hand back is v's plain step */
                snprintf(reply, len, "T05thread:%02x;", q->tid[v]);
            break;
        }
        q->step_retries++; /* reported, but v did not move: step again */
    }
    q->last_vcpu = v;
    q->hit_valid[v] = false;
    if (st == HVI_OK && lifted) {
        snprintf(cmd, sizeof(cmd), "Z%u,%llx,1", q->bp_type, (unsigned long long)rip);
        if ((st = hvi_rsp_cmd(q->rsp, cmd, &r, NULL)) != HVI_OK)
            hvi_qemu_sfail(q, st, "re-insert breakpoint");
    }
    return st;
}

hvi_status hvi_qemu_resume_all(struct hvi_qemu *q)
{
    if (q->dead)
        return HVI_E_CLOSED;
    if (q->running)
        return HVI_OK;
    if (q->has_pending) /* an event is waiting to be delivered by run(): stay stopped */
        return HVI_OK;
    uint64_t rip = 0;
    uint32_t lv = q->last_vcpu;
    hvi_status st = HVI_OK;
    if (q->hit_valid[lv] && (st = hvi_qemu_read_rip(q, lv, &rip)) == HVI_OK &&
        hvi_qemu_is_bp(q, rip) && q->hit_rip[lv] == rip) {
        /* Step over with single-step. (Moving the breakpoint to the next instruction instead
         * was measured: no faster. QEMU 7.2 TCG apparently discards translated code on
         * breakpoint insert/remove as it does on single-step toggles.) Only the stopped vCPU
         * steps (vCont;s:<id>): the others stay stopped, so none runs past the lifted
         * breakpoint unseen. */
        char reply[512];
        uint32_t v = q->last_vcpu;
        st = hvi_qemu_step_once(q, v, reply, sizeof(reply));
        if (st == HVI_OK && strstr(reply, "watch:"))
            stash(q, reply); /* the stepped instruction hit a watchpoint: deliver it */
        if (st == HVI_OK && q->has_pending) {
            q->last_vcpu = v;
            return HVI_OK; /* stay stopped: run() delivers the pending stop first */
        }
    }
    if (st != HVI_OK)
        return st;
    if ((st = hvi_rsp_send(q->rsp, "c")) != HVI_OK)
        return hvi_qemu_sfail(q, st, "continue");
    q->running = true;
    memset(q->hit_valid, 0, sizeof(q->hit_valid));
    return HVI_OK;
}

bool hvi_qemu_running(const hvi_qemu *q)
{
    return q && q->running;
}
