/*
 * hvi QEMU backend — connect/close and the event loop delivering stops to the engine.
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

static int64_t r_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static hvi_status list_threads(struct hvi_qemu *q)
{
    const char *r;
    hvi_status st = hvi_rsp_cmd(q->rsp, "qfThreadInfo", &r, NULL);
    for (int round = 0; st == HVI_OK && round < 64; round++) {
        if (r[0] == 'l')
            return q->nvcpu ? HVI_OK : HVI_E_FORMAT;
        if (r[0] != 'm')
            return HVI_E_FORMAT;
        for (const char *p = r + 1; *p;) {
            char *end;
            unsigned long t = strtoul(p, &end, 16);
            if (end == p || t == 0 || t > 0xffffffffu || (*end && *end != ','))
                return HVI_E_FORMAT;
            if (q->nvcpu == HVI_QEMU_MAX_VCPUS)
                return HVI_E_LIMIT;
            q->tid[q->nvcpu++] = (uint32_t)t;
            p = *end ? end + 1 : end;
        }
        st = hvi_rsp_cmd(q->rsp, "qsThreadInfo", &r, NULL);
    }
    return st == HVI_OK ? HVI_E_LIMIT : st;
}

/* target.xml must be read before QEMU answers `p`; read it whole (in chunks), check it is x86-64.
 */
static hvi_status read_target_xml(struct hvi_qemu *q)
{
    char cmd[80];
    size_t off = 0;
    bool x64 = false;
    for (int i = 0; i < 64; i++) {
        const char *r;
        size_t n = 0;
        snprintf(cmd, sizeof(cmd), "qXfer:features:read:target.xml:%zx,800", off);
        hvi_status st = hvi_rsp_cmd(q->rsp, cmd, &r, &n);
        if (st != HVI_OK)
            return st;
        if (r[0] != 'm' && r[0] != 'l')
            return HVI_E_FORMAT;
        x64 = x64 || strstr(r, "x86-64") != NULL;
        if (r[0] == 'l')
            return x64 ? HVI_OK : HVI_E_UNSUPPORTED;
        off += n - 1;
    }
    return HVI_E_LIMIT;
}

static hvi_status map_ram(struct hvi_qemu *q, const char *path, uint64_t bytes)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? HVI_E_NOT_FOUND : HVI_E_IO;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size < bytes || bytes == 0 || (bytes & 0xfff)) {
        close(fd);
        return HVI_E_RANGE;
    }
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return HVI_E_IO;
    q->ram = m;
    q->ram_bytes = bytes;
    /* q35: with 2.75 GiB of RAM or more, 2 GiB stay below 4 GiB; else up to 2.75 GiB do. */
    uint64_t low = bytes >= 0xb0000000ull ? 0x80000000ull : 0xb0000000ull;
    q->low_bytes = bytes < low ? bytes : low;
    return HVI_OK;
}

static hvi_status connect_parts(struct hvi_qemu *q, const hvi_qemu_conn *c)
{
    char stop[512];
    hvi_status st = hvi_rsp_connect(c->gdb_host ? c->gdb_host : "127.0.0.1", c->gdb_port,
                                    q->timeout_ms, &q->rsp);
    if (st != HVI_OK)
        return hvi_qemu_sfail(q, st, "connect to the gdbstub");
    q->running = true; /* QEMU stops the VM on connect and sends a stop reply unasked */
    if ((st = hvi_qemu_wait_stop(q, q->timeout_ms, stop, sizeof(stop))) != HVI_OK)
        return hvi_qemu_sfail(q, st, "initial stop reply");
    if ((st = read_target_xml(q)) != HVI_OK)
        return hvi_qemu_sfail(q, st, "target.xml");
    if ((st = list_threads(q)) != HVI_OK)
        return hvi_qemu_sfail(q, st, "thread list");
    q->cur_g = 0;
    if (c->qmp_path && (st = hvi_qmp_connect(c->qmp_path, q->timeout_ms, &q->qmp)) != HVI_OK)
        return hvi_qemu_sfail(q, st, "connect to QMP");
    q->bp_type = 0;
    q->max_bp = HVI_QEMU_MAX_BREAKPOINTS;
    char *kvm = NULL;
    if (q->qmp && hvi_qmp_exec(q->qmp, "query-kvm", NULL, &kvm) == HVI_OK && kvm &&
        strstr(kvm, "\"enabled\":true")) {
        q->bp_type = 1;
        q->max_bp = HVI_QEMU_MAX_WATCHPOINTS;
    } else if (kvm && strstr(kvm, "\"enabled\":false")) {
        /* TCG: gdbstub watchpoints are QEMU's software watchpoints (any number, any length;
         * only writes to the watched pages take the slow path). Unknown accel: be strict. */
        q->wp_range = true;
    }
    free(kvm);
    if (c->ram_path && (st = map_ram(q, c->ram_path, c->ram_bytes)) != HVI_OK)
        return hvi_qemu_sfail(q, st, "map the guest RAM file");
    return HVI_OK;
}

static void free_session(struct hvi_qemu *q)
{
    hvi_rsp_close(q->rsp);
    hvi_qmp_close(q->qmp);
    if (q->ram)
        munmap(q->ram, q->ram_bytes);
    free(q);
}

static _Thread_local char open_err[256];

hvi_status hvi_qemu_connect(const hvi_qemu_conn *c, hvi_qemu **out)
{
    if (!c || !out || !c->gdb_port)
        return HVI_E_INVAL;
    struct hvi_qemu *q = calloc(1, sizeof(*q));
    if (!q)
        return HVI_E_NOMEM;
    q->timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : 5000;
    hvi_status st = connect_parts(q, c);
    if (st != HVI_OK) {
        snprintf(open_err, sizeof(open_err), "%s", q->err);
        if (q->rsp && !q->dead)
            (void)hvi_rsp_cmd(q->rsp, "D;1", NULL, NULL); /* never leave the guest paused */
        free_session(q);
        return st;
    }
    *out = q;
    return HVI_OK;
}

hvi_status hvi_qemu_open(hvi_qemu_vm *vm, hvi_qemu **out)
{
    if (!vm || !out)
        return HVI_E_INVAL;
    if (!hvi_qemu_vm_alive(vm))
        return HVI_E_CLOSED;
    hvi_qemu_conn c = {.gdb_port = vm->gdb_port,
                       .qmp_path = vm->qmp_sock,
                       .ram_path = vm->ram_path,
                       .ram_bytes = vm->mem_bytes,
                       .timeout_ms = 5000};
    return hvi_qemu_connect(&c, out);
}

hvi_status hvi_qemu_close(hvi_qemu *q)
{
    if (!q)
        return HVI_OK;
    hvi_status st = HVI_OK;
    bool was_running;
    if (!q->dead && hvi_qemu_stop_now(q, &was_running) == HVI_OK) {
        char cmd[64];
        for (uint32_t i = 0; i < q->nbp; i++) {
            snprintf(cmd, sizeof(cmd), "z%u,%llx,1", q->bp_type, (unsigned long long)q->bp[i]);
            (void)hvi_rsp_cmd(q->rsp, cmd, NULL, NULL);
        }
        for (uint32_t i = 0; i < q->nwp; i++) {
            static const unsigned zt[4] = {0, 2, 3, 4};
            snprintf(cmd, sizeof(cmd), "z%u,%llx,%x", zt[q->wp[i].kind],
                     (unsigned long long)q->wp[i].gva, q->wp[i].len);
            (void)hvi_rsp_cmd(q->rsp, cmd, NULL, NULL);
        }
        const char *r = NULL;
        st = hvi_rsp_cmd(q->rsp, "D;1", &r, NULL);
        if (st == HVI_OK && strcmp(r, "OK") != 0)
            st = HVI_E_FORMAT;
    }
    if (q->qmp) { /* belt and braces: the VM must run after detach */
        char status[64];
        if (hvi_qmp_status(q->qmp, status, sizeof(status)) == HVI_OK &&
            (!strcmp(status, "debug") || !strcmp(status, "paused") ||
             !strcmp(status, "postmigrate")))
            (void)hvi_qmp_exec(q->qmp, "cont", NULL, NULL);
    }
    free_session(q);
    return st;
}

/* Turn one stop reply into an event; false when it is not one the engine asked for. */
static bool make_event(struct hvi_qemu *q, const char *reply, bool stepping, hvi_event *ev)
{
    uint64_t watch = 0, rip = 0;
    bool has_watch = false;
    memset(ev, 0, sizeof(*ev));
    ev->size = sizeof(*ev);
    ev->vcpu = q->last_vcpu;
    /* re-parse cheaply: the reply was validated by wait_stop */
    const char *w = strstr(reply, "watch:");
    if (w) {
        has_watch = true;
        watch = strtoull(w + 6, NULL, 16);
    }
    if (has_watch) {
        ev->type = HVI_EV_WATCHPOINT;
        ev->gva = watch;
        ev->after_access = true;
        /* QEMU names the hit watchpoint by its start address: prefer the entry starting
         * there (the longest if several do), else one containing the address */
        int best = -1;
        for (uint32_t i = 0; i < q->nwp; i++) {
            const struct hvi_qemu_wp *wp = &q->wp[i];
            if (watch < wp->gva || watch - wp->gva >= wp->len)
                continue;
            if (best < 0 || (wp->gva == watch && (q->wp[best].gva != watch ||
                                                  wp->len > q->wp[best].len)))
                best = (int)i;
        }
        if (best >= 0)
            ev->len = q->wp[best].len, ev->gva = q->wp[best].gva;
        return true;
    }
    if (stepping) {
        ev->type = HVI_EV_SINGLE_STEP;
        return true;
    }
    if (hvi_qemu_read_rip(q, ev->vcpu, &rip) == HVI_OK && hvi_qemu_is_bp(q, rip)) {
        ev->type = HVI_EV_BREAKPOINT;
        ev->gva = rip;
        q->hit_valid[ev->vcpu] = true; /* step over it on resume */
        q->hit_rip[ev->vcpu] = rip;
        return true;
    }
    return false;
}

static int stepping_vcpu(const struct hvi_qemu *q)
{
    for (uint32_t i = 0; i < q->nvcpu; i++)
        if (q->step[i])
            return (int)i;
    return -1;
}

/* Hand out the stop kept for later; the event is that vCPU's, whatever ran since. */
static void pop_pending(struct hvi_qemu *q, char *reply, size_t len)
{
    q->has_pending = false;
    snprintf(reply, len, "%s", q->pending);
    const char *t = strstr(reply, "thread:");
    int v = t ? hvi_qemu_vcpu_of(q, (uint32_t)strtoul(t + 7, NULL, 16)) : -1;
    if (v >= 0)
        q->last_vcpu = (uint32_t)v;
}

/* Get the next stop: a pending one, a single step, or a stop while running until the deadline. */
static hvi_status next_stop(struct hvi_qemu *q, int64_t deadline, char *reply, size_t len,
                            bool *stepping)
{
    *stepping = false;
    if (q->has_pending) {
        pop_pending(q, reply, len);
        return HVI_OK;
    }
    hvi_status st;
    if (!q->running) {
        int v = stepping_vcpu(q);
        if (v >= 0) {
            *stepping = true;
            st = hvi_qemu_step_once(q, (uint32_t)v, reply, len);
            q->last_vcpu = (uint32_t)v;
            return st;
        }
        if ((st = hvi_qemu_resume_all(q)) != HVI_OK)
            return st;
        if (q->has_pending) { /* the step-over met a stop to deliver first */
            pop_pending(q, reply, len);
            return HVI_OK;
        }
    }
    int64_t left = deadline - r_now_ms();
    if (left <= 0)
        return HVI_E_TIMEOUT;
    return hvi_qemu_wait_stop(q, (int)left, reply, len);
}

hvi_status hvi_qemu_run(hvi_qemu *q, hvi_engine *engine, int timeout_ms, uint32_t max_events,
                        uint32_t *events)
{
    if (!q || timeout_ms < 0)
        return HVI_E_INVAL;
    uint32_t count = 0;
    int64_t deadline = r_now_ms() + timeout_ms;
    q->pause_depth = 0; /* running the loop means: let the guest run */
    hvi_status st = HVI_OK;
    if (events)
        *events = 0;
    while (!q->dead) {
        char reply[512];
        bool stepping = false;
        st = next_stop(q, deadline, reply, sizeof(reply), &stepping);
        if (st == HVI_E_TIMEOUT && !q->dead) {
            st = HVI_OK; /* time is up; the guest keeps running */
            break;
        }
        if (st != HVI_OK)
            break;
        hvi_event ev;
        if (!make_event(q, reply, stepping, &ev))
            continue; /* e.g. the stop of our own interrupt */
        if (engine) {
            hvi_event_reply rep = {0};
            q->in_event = true;
            hvi_status hs = hvi_handle_event(engine, &ev, &rep);
            q->in_event = false;
            if (hs != HVI_OK)
                snprintf(q->err, sizeof(q->err), "engine: %s", hvi_last_error(engine));
        }
        count++;
        if (events)
            *events = count;
        if (max_events && count >= max_events)
            break; /* leave the vCPU stopped at the event */
    }
    if (q->dead && st == HVI_OK)
        st = HVI_E_CLOSED;
    return st;
}
