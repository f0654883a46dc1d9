/*
 * hvi QEMU backend — MSR reads from a device-state snapshot.
 *
 * Neither the gdbstub nor HMP `info registers` of QEMU 7.2 shows LSTAR and the other syscall
 * MSRs, but QEMU's migration stream carries them in every vCPU's "cpu" section. With the
 * `x-ignore-shared` capability the guest RAM (our shared memory-backend-file) is not copied,
 * so a migration to a file is small (under 1 MiB) and quick (tens of ms). The vCPUs are
 * stopped meanwhile (the gdbstub holds them); the VM is left in QEMU's "postmigrate" state,
 * which the next continue through the gdbstub leaves like any stop.
 *
 * The section has no field names, so the field offsets of QEMU 7.2's vmstate_x86_cpu (section
 * version 12) are used, and each snapshot is checked against registers read through the
 * gdbstub at the same stop (RIP, RSP, CR0, CR3, CR4, EFER at their offsets): a QEMU with
 * another layout is refused with HVI_E_UNSUPPORTED instead of giving wrong values.
 *
 * Migration inactivates the guest's block devices when it completes, and only QMP `cont`
 * (not a gdbstub continue) activates them again: a guest with block devices is refused.
 * Opt-in (hvi_qemu_set_msr_read) because each snapshot stops the guest for a while.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "session.h"

#define SNAP_MAX_BYTES (64u << 20)
#define CPU_SECTION_VERSION 12

/* Offsets in QEMU 7.2's vmstate_x86_cpu (TARGET_X86_64), from the first field. */
enum {
    OFF_RSP = 4 * 8,
    OFF_RIP = 128,
    OFF_SYSENTER_CS = 436, /* 4 bytes */
    OFF_SYSENTER_ESP = 440,
    OFF_SYSENTER_EIP = 448,
    OFF_CR0 = 456,
    OFF_CR3 = 472,
    OFF_CR4 = 480,
    OFF_EFER = 816,
    OFF_STAR = 824,
    OFF_LSTAR = 832,
    OFF_CSTAR = 840,
    OFF_FMASK = 848,
    OFF_KERNEL_GS_BASE = 856,
    CPU_FIELDS_MIN = 864,
};

static const uint32_t msr_ids[HVI_QEMU_NMSR] = {
    HVI_MSR_SYSENTER_CS, HVI_MSR_SYSENTER_ESP, HVI_MSR_SYSENTER_EIP,
    HVI_MSR_EFER,        HVI_MSR_STAR,         HVI_MSR_LSTAR,
    HVI_MSR_CSTAR,       HVI_MSR_FMASK,        HVI_MSR_KERNEL_GS_BASE};
static const uint16_t msr_off[HVI_QEMU_NMSR] = {
    OFF_SYSENTER_CS, OFF_SYSENTER_ESP, OFF_SYSENTER_EIP, OFF_EFER,          OFF_STAR,
    OFF_LSTAR,       OFF_CSTAR,        OFF_FMASK,        OFF_KERNEL_GS_BASE};

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t m_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

hvi_status hvi_qemu_set_msr_read(hvi_qemu *q, bool on)
{
    if (!q)
        return HVI_E_INVAL;
    if (on && !q->qmp)
        return HVI_E_UNSUPPORTED;
    q->msr_on = on;
    return HVI_OK;
}

/* Once per session: no block device with a medium (see above). */
static hvi_status prepare(struct hvi_qemu *q)
{
    if (q->msr_ready)
        return HVI_OK;
    char *ret = NULL;
    hvi_status st = hvi_qmp_exec(q->qmp, "query-block", NULL, &ret);
    if (st != HVI_OK) {
        char what[200];
        snprintf(what, sizeof(what), "MSR snapshot: QMP query-block (%.120s)",
                 hvi_qmp_error(q->qmp));
        return hvi_qemu_sfail(q, st, what);
    }
    json_object *a = json_tokener_parse(ret);
    free(ret);
    bool disks = !a || !json_object_is_type(a, json_type_array);
    for (size_t i = 0; a && !disks && i < json_object_array_length(a); i++) {
        json_object *ins = NULL;
        disks = json_object_object_get_ex(json_object_array_get_idx(a, i), "inserted", &ins);
    }
    json_object_put(a);
    if (disks) {
        snprintf(q->err, sizeof(q->err),
                 "MSR snapshot refused: the guest has block devices "
                 "(migration would leave them inactive)");
        return HVI_E_UNSUPPORTED;
    }
    q->msr_ready = true;
    return HVI_OK;
}

/* x-ignore-shared on for our snapshot only: a real migration later must copy the RAM. */
static hvi_status ignore_shared(struct hvi_qemu *q, bool on)
{
    char args[128];
    snprintf(args, sizeof(args),
             "{\"capabilities\":[{\"capability\":\"x-ignore-shared\",\"state\":%s}]}",
             on ? "true" : "false");
    hvi_status st = hvi_qmp_exec(q->qmp, "migrate-set-capabilities", args, NULL);
    if (st == HVI_E_BACKEND) {
        snprintf(q->err, sizeof(q->err), "MSR snapshot: x-ignore-shared refused: %s",
                 hvi_qmp_error(q->qmp));
        return HVI_E_UNSUPPORTED;
    }
    return st == HVI_OK ? st : hvi_qemu_sfail(q, st, "MSR snapshot: QMP");
}

/* Wait for the migration to finish (completed/failed) within the session timeout. */
static hvi_status wait_migration(struct hvi_qemu *q)
{
    int64_t deadline = m_now_ms() + q->timeout_ms;
    for (;;) {
        char *ret = NULL;
        hvi_status st = hvi_qmp_exec(q->qmp, "query-migrate", NULL, &ret);
        if (st != HVI_OK)
            return hvi_qemu_sfail(q, st, "MSR snapshot: QMP query-migrate");
        json_object *o = json_tokener_parse(ret), *s = NULL;
        free(ret);
        char status[32] = "";
        if (o && json_object_object_get_ex(o, "status", &s))
            snprintf(status, sizeof(status), "%s", json_object_get_string(s));
        json_object_put(o);
        if (!strcmp(status, "completed"))
            return HVI_OK;
        if (!strcmp(status, "failed") || !strcmp(status, "cancelled") || !status[0]) {
            snprintf(q->err, sizeof(q->err), "MSR snapshot: migration %s",
                     status[0] ? status : "status unknown");
            return HVI_E_BACKEND;
        }
        if (m_now_ms() > deadline) {
            (void)hvi_qmp_exec(q->qmp, "migrate_cancel", NULL, NULL);
            snprintf(q->err, sizeof(q->err), "MSR snapshot: migration did not complete in %d ms",
                     q->timeout_ms);
            return HVI_E_TIMEOUT;
        }
        sleep_ms(2);
    }
}

/* Read the whole snapshot file (bounded). */
static hvi_status read_file(const char *path, uint8_t **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return HVI_E_IO;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size <= 0 || (uint64_t)sb.st_size > SNAP_MAX_BYTES) {
        close(fd);
        return HVI_E_RANGE;
    }
    uint8_t *b = malloc((size_t)sb.st_size);
    size_t got = 0;
    while (b && got < (size_t)sb.st_size) {
        ssize_t n = read(fd, b + got, (size_t)sb.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!b || got != (size_t)sb.st_size) {
        free(b);
        return b ? HVI_E_IO : HVI_E_NOMEM;
    }
    *buf = b;
    *len = got;
    return HVI_OK;
}

/*
 * The fields of vCPU `index`'s section: a full section is 0x04, section id (4), the name as
 * length + bytes ("\3cpu"), instance id (4) = the CPU index, version (4). Sections carry no
 * length, so the header is searched for; the match must be unique.
 */
const uint8_t *hvi_qemu_snapshot_cpu(const uint8_t *buf, size_t len, uint32_t index,
                                     uint32_t *version)
{
    const uint8_t *found = NULL;
    for (size_t i = 0; len >= 13 + CPU_FIELDS_MIN && i <= len - 13 - CPU_FIELDS_MIN; i++) {
        if (buf[i] != 0x04 || memcmp(buf + i + 5, "\3cpu", 4) != 0 || be(buf + i + 9, 4) != index)
            continue;
        if (found)
            return NULL; /* ambiguous */
        found = buf + i + 17;
        *version = (uint32_t)be(buf + i + 13, 4);
    }
    return found;
}

static hvi_status snapshot(struct hvi_qemu *q)
{
    hvi_status st = prepare(q);
    if (st != HVI_OK)
        return st;
    char path[64] = "/tmp/hvi-msr-XXXXXX", args[160];
    const char *tmp = getenv("TMPDIR");
    if (tmp && *tmp && strlen(tmp) < 40 && !strpbrk(tmp, "'\"\\$`; \t\n"))
        snprintf(path, sizeof(path), "%s/hvi-msr-XXXXXX", tmp);
    int fd = mkstemp(path);
    if (fd < 0)
        return HVI_E_IO;
    close(fd);
    if ((st = ignore_shared(q, true)) != HVI_OK) {
        unlink(path);
        return st;
    }
    /* mkstemp names are [A-Za-z0-9]: nothing for the shell QEMU runs to interpret */
    snprintf(args, sizeof(args), "{\"uri\":\"exec:cat > %s\"}", path);
    st = hvi_qmp_exec(q->qmp, "migrate", args, NULL);
    if (st == HVI_E_BACKEND)
        snprintf(q->err, sizeof(q->err), "MSR snapshot: migrate refused: %s",
                 hvi_qmp_error(q->qmp));
    else if (st != HVI_OK)
        hvi_qemu_sfail(q, st, "MSR snapshot: QMP migrate");
    if (st == HVI_OK)
        st = wait_migration(q);
    if (!q->dead) {
        hvi_status off = ignore_shared(q, false);
        if (st == HVI_OK)
            st = off;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (st == HVI_OK && (st = read_file(path, &buf, &len)) != HVI_OK)
        snprintf(q->err, sizeof(q->err), "MSR snapshot: reading %s: %s", path, hvi_strstatus(st));
    unlink(path);
    if (st != HVI_OK)
        return st;
    for (uint32_t v = 0; v < q->nvcpu && st == HVI_OK; v++) {
        uint32_t version = 0;
        const uint8_t *f = hvi_qemu_snapshot_cpu(buf, len, v, &version);
        if (!f || version != CPU_SECTION_VERSION) {
            snprintf(q->err, sizeof(q->err),
                     "MSR snapshot: no usable cpu section for vCPU %u "
                     "(version %u; this code knows %u)",
                     v, version, CPU_SECTION_VERSION);
            st = HVI_E_UNSUPPORTED;
            break;
        }
        for (int i = 0; i < HVI_QEMU_NMSR; i++)
            q->msr[v][i] = be(f + msr_off[i], msr_ids[i] == HVI_MSR_SYSENTER_CS ? 4 : 8);
        q->msr_check[v][0] = be(f + OFF_RIP, 8);
        q->msr_check[v][1] = be(f + OFF_RSP, 8);
        q->msr_check[v][2] = be(f + OFF_CR0, 8);
        q->msr_check[v][3] = be(f + OFF_CR3, 8);
        q->msr_check[v][4] = be(f + OFF_CR4, 8);
        q->msr_check[v][5] = be(f + OFF_EFER, 8);
    }
    free(buf);
    if (st == HVI_OK)
        q->msr_stop = q->stops;
    return st;
}

/* The snapshot's registers must be the gdbstub's (same stop): else the layout is not 7.2's. */
static hvi_status verify(struct hvi_qemu *q, uint32_t vcpu)
{
    if (q->msr_verified & (1u << vcpu))
        return HVI_OK;
    hvi_glue g;
    hvi_regs r;
    hvi_status st = hvi_qemu_glue(q, &g);
    if (st == HVI_OK)
        st = g.get_regs(q, vcpu, HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER, &r);
    if (st != HVI_OK)
        return st;
    const uint64_t want[6] = {r.rip, r.gpr[HVI_RSP], r.cr0, r.cr3, r.cr4, r.efer};
    for (int i = 0; i < 6; i++)
        if (q->msr_check[vcpu][i] != want[i]) {
            snprintf(q->err, sizeof(q->err),
                     "MSR snapshot: vCPU %u's section does not match its "
                     "registers (field %d): unknown QEMU device-state layout",
                     vcpu, i);
            return HVI_E_UNSUPPORTED;
        }
    q->msr_verified |= 1u << vcpu;
    return HVI_OK;
}

hvi_status hvi_qemu_get_msr(void *ctx, uint32_t vcpu, uint32_t msr, uint64_t *out)
{
    struct hvi_qemu *q = ctx;
    if (!q || !out || vcpu >= q->nvcpu)
        return HVI_E_INVAL;
    if (q->dead)
        return HVI_E_CLOSED;
    if (!q->msr_on || !q->qmp)
        return HVI_E_UNSUPPORTED;
    int idx = -1;
    for (int i = 0; i < HVI_QEMU_NMSR; i++)
        if (msr_ids[i] == msr)
            idx = i;
    if (idx < 0) {
        snprintf(q->err, sizeof(q->err), "MSR 0x%x is not in QEMU's device state snapshot", msr);
        return HVI_E_UNSUPPORTED;
    }
    bool was_running = false;
    hvi_status st = hvi_qemu_stop_now(q, &was_running);
    if (st == HVI_OK && (q->msr_stop != q->stops || !q->msr_valid)) {
        q->msr_verified = 0;
        q->msr_valid = false;
        if ((st = snapshot(q)) == HVI_OK)
            q->msr_valid = true;
    }
    if (st == HVI_OK)
        st = verify(q, vcpu);
    if (st == HVI_OK)
        *out = q->msr[vcpu][idx];
    if (was_running) {
        hvi_status rs = hvi_qemu_resume_all(q);
        if (st == HVI_OK)
            st = rs;
    }
    return st;
}
