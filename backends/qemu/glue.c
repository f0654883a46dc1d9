/*
 * hvi QEMU backend — the glue table: guest RAM through the shared memory-backend-file, vCPU
 * state through the gdbstub, IDTR/GDTR and segment bases through QMP.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "session.h"
#include "vm_internal.h"

#define GiB (1ull << 30)

/* gdbstub register numbers of QEMU's x86-64 target (as used by `p`/`P` and laid out in `g`). */
enum {
    G_RIP = 16,
    G_EFLAGS = 17,
    G_CS = 18,
    G_FS_BASE = 24,
    G_CR0 = 27,
    G_EFER = 32,
    G_NCORE = 33,
    /* then the x87 block, st0-st7 (10 bytes each, 33-40) and fctrl..fop (4 bytes each, 41-48),
     * and the SSE block, xmm0-xmm15 (16 bytes each, 49-64) and mxcsr (65) */
    G_ST0 = 33,
    G_FCTRL = 41,
    G_XMM0 = 49,
    G_MXCSR = 65
};
/* GDB order rax rbx rcx rdx rsi rdi rbp rsp r8..r15 -> hvi_gpr. */
static const uint8_t gdb_gpr[16] = {HVI_RAX, HVI_RBX, HVI_RCX, HVI_RDX, HVI_RSI, HVI_RDI,
                                    HVI_RBP, HVI_RSP, HVI_R8,  HVI_R9,  HVI_R10, HVI_R11,
                                    HVI_R12, HVI_R13, HVI_R14, HVI_R15};
/* GDB order cs ss ds es fs gs -> hvi_seg. */
static const uint8_t gdb_seg[6] = {HVI_CS, HVI_SS, HVI_DS, HVI_ES, HVI_FS, HVI_GS};

static size_t reg_size(int n)
{
    if (n >= G_XMM0 && n < G_MXCSR)
        return 16;
    if (n >= G_ST0 && n < G_FCTRL)
        return 10;
    if (n >= G_FCTRL)
        return 4;
    return (n >= G_EFLAGS && n < G_FS_BASE) ? 4 : 8;
}

static size_t reg_off(int n) /* byte offset in the `g` packet */
{
    size_t off = 0;
    for (int i = 0; i < n; i++)
        off += reg_size(i);
    return off;
}

hvi_status hvi_qemu_sfail(struct hvi_qemu *q, hvi_status st, const char *what)
{
    if (st == HVI_E_CLOSED || st == HVI_E_FORMAT || st == HVI_E_TIMEOUT || st == HVI_E_IO)
        q->dead = true;
    snprintf(q->err, sizeof(q->err), "%s: %s", what, hvi_strstatus(st));
    return st;
}

const char *hvi_qemu_last_error(const hvi_qemu *q)
{
    return q ? q->err : "";
}

int hvi_qemu_vcpu_of(const struct hvi_qemu *q, uint32_t tid)
{
    for (uint32_t i = 0; i < q->nvcpu; i++)
        if (q->tid[i] == tid)
            return (int)i;
    return -1;
}

hvi_status hvi_qemu_select(struct hvi_qemu *q, uint32_t vcpu)
{
    if (vcpu >= q->nvcpu)
        return HVI_E_INVAL;
    if (q->cur_g == q->tid[vcpu])
        return HVI_OK;
    char cmd[32];
    snprintf(cmd, sizeof(cmd), "Hg%x", q->tid[vcpu]);
    const char *r;
    hvi_status st = hvi_rsp_cmd(q->rsp, cmd, &r, NULL);
    if (st == HVI_OK && strcmp(r, "OK") != 0)
        st = HVI_E_FORMAT;
    if (st != HVI_OK)
        return hvi_qemu_sfail(q, st, "select vCPU (Hg)");
    q->cur_g = q->tid[vcpu];
    return HVI_OK;
}

/* Read the `g` packet of one vCPU into a malloc'd hex copy. */
static hvi_status read_g(struct hvi_qemu *q, uint32_t vcpu, char **hex)
{
    hvi_status st = hvi_qemu_select(q, vcpu);
    const char *r;
    size_t n = 0;
    if (st == HVI_OK)
        st = hvi_rsp_cmd(q->rsp, "g", &r, &n);
    if (st == HVI_OK && n < 2 * reg_off(G_NCORE))
        st = HVI_E_FORMAT;
    if (st != HVI_OK)
        return hvi_qemu_sfail(q, st, "read registers (g)");
    *hex = strndup(r, n);
    return *hex ? HVI_OK : HVI_E_NOMEM;
}

static uint64_t g_reg(const char *hex, int n, bool *ok)
{
    uint64_t v = 0;
    if (!hvi_rsp_hex_le(hex + 2 * reg_off(n), reg_size(n), &v))
        *ok = false;
    return v;
}

hvi_status hvi_qemu_read_rip(struct hvi_qemu *q, uint32_t vcpu, uint64_t *rip)
{
    hvi_status st = hvi_qemu_select(q, vcpu);
    const char *r;
    size_t n = 0;
    if (st == HVI_OK)
        st = hvi_rsp_cmd(q->rsp, "p10", &r, &n);
    if (st == HVI_OK && (n != 16 || !hvi_rsp_hex_le(r, 8, rip)))
        st = HVI_E_FORMAT;
    return st == HVI_OK ? HVI_OK : hvi_qemu_sfail(q, st, "read rip (p)");
}

static hvi_status fill_from_g(const char *hex, hvi_regs *out)
{
    bool ok = true;
    for (int i = 0; i < 16; i++)
        out->gpr[gdb_gpr[i]] = g_reg(hex, i, &ok);
    out->rip = g_reg(hex, G_RIP, &ok);
    out->rflags = g_reg(hex, G_EFLAGS, &ok);
    for (int i = 0; i < 6; i++)
        out->seg[gdb_seg[i]].selector = (uint16_t)g_reg(hex, G_CS + i, &ok);
    out->fs_base = g_reg(hex, G_FS_BASE, &ok);
    out->gs_base = g_reg(hex, G_FS_BASE + 1, &ok);
    out->kernel_gs_base = g_reg(hex, G_FS_BASE + 2, &ok);
    out->seg[HVI_FS].base = out->fs_base;
    out->seg[HVI_GS].base = out->gs_base;
    out->cr0 = g_reg(hex, G_CR0, &ok);
    out->cr2 = g_reg(hex, G_CR0 + 1, &ok);
    out->cr3 = g_reg(hex, G_CR0 + 2, &ok);
    out->cr4 = g_reg(hex, G_CR0 + 3, &ok);
    out->cr8 = g_reg(hex, G_CR0 + 4, &ok);
    out->efer = g_reg(hex, G_EFER, &ok);
    out->valid |= HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_SEG | HVI_REGS_FSGS;
    return ok ? HVI_OK : HVI_E_FORMAT;
}

static hvi_status qemu_get_regs(void *ctx, uint32_t vcpu, uint32_t want, hvi_regs *out)
{
    struct hvi_qemu *q = ctx;
    if (!out || vcpu >= q->nvcpu)
        return HVI_E_INVAL;
    if (q->dead)
        return HVI_E_CLOSED;
    bool was_running = false;
    hvi_status st = hvi_qemu_stop_now(q, &was_running);
    char *hex = NULL;
    hvi_regs tmp = {0};
    if (st == HVI_OK)
        st = read_g(q, vcpu, &hex);
    if (st == HVI_OK && (st = fill_from_g(hex, &tmp)) != HVI_OK)
        hvi_qemu_sfail(q, st, "register packet");
    free(hex);
    if (st == HVI_OK && (want & (HVI_REGS_DTR | HVI_REGS_SEGBASE))) {
        char *text = NULL;
        if (!q->qmp)
            st = HVI_E_UNSUPPORTED;
        else if ((st = hvi_qmp_hmp(q->qmp, "info registers", (int)vcpu, &text)) == HVI_OK)
            st = hvi_qmp_parse_info_registers(text, &tmp);
        free(text);
        if (st != HVI_OK)
            hvi_qemu_sfail(q, st, "QMP info registers");
    }
    if (was_running) {
        hvi_status rs = hvi_qemu_resume_all(q);
        if (st == HVI_OK)
            st = rs;
    }
    if (st == HVI_OK)
        *out = tmp;
    return st;
}

/* XMM`index` from the `g` packet: its 16 bytes in target (little-endian) order. */
static hvi_status qemu_get_vec_reg(void *ctx, uint32_t vcpu, uint32_t index, uint8_t out[16])
{
    struct hvi_qemu *q = ctx;
    if (!out || vcpu >= q->nvcpu || index >= 16)
        return HVI_E_INVAL;
    if (q->dead)
        return HVI_E_CLOSED;
    bool was_running = false;
    hvi_status st = hvi_qemu_stop_now(q, &was_running);
    char *hex = NULL;
    if (st == HVI_OK)
        st = read_g(q, vcpu, &hex);
    if (st == HVI_OK) {
        size_t at = 2 * reg_off(G_XMM0 + (int)index);
        uint64_t lo = 0, hi = 0;
        if (strlen(hex) < at + 32)
            st = HVI_E_UNSUPPORTED; /* a stub without the SSE registers */
        else if (!hvi_rsp_hex_le(hex + at, 8, &lo) || !hvi_rsp_hex_le(hex + at + 16, 8, &hi))
            st = hvi_qemu_sfail(q, HVI_E_FORMAT, "register packet (xmm)");
        for (int i = 0; st == HVI_OK && i < 8; i++) {
            out[i] = (uint8_t)(lo >> (8 * i));
            out[8 + i] = (uint8_t)(hi >> (8 * i));
        }
    }
    free(hex);
    if (was_running) {
        hvi_status rs = hvi_qemu_resume_all(q);
        if (st == HVI_OK)
            st = rs;
    }
    return st;
}

static void patch_reg(char *hex, int n, uint64_t v)
{
    char tmp[17];
    hvi_rsp_put_hex_le(tmp, v, reg_size(n));
    memcpy(hex + 2 * reg_off(n), tmp, 2 * reg_size(n));
}

static void patch_from_regs(char *hex, uint32_t parts, const hvi_regs *r)
{
    if (parts & HVI_REGS_GPR) {
        for (int i = 0; i < 16; i++)
            patch_reg(hex, i, r->gpr[gdb_gpr[i]]);
        patch_reg(hex, G_RIP, r->rip);
        patch_reg(hex, G_EFLAGS, r->rflags);
    }
    if (parts & HVI_REGS_SEG)
        for (int i = 0; i < 6; i++)
            patch_reg(hex, G_CS + i, r->seg[gdb_seg[i]].selector);
    if (parts & HVI_REGS_FSGS) {
        patch_reg(hex, G_FS_BASE, r->fs_base);
        patch_reg(hex, G_FS_BASE + 1, r->gs_base);
        patch_reg(hex, G_FS_BASE + 2, r->kernel_gs_base);
    }
    if (parts & HVI_REGS_CR) {
        const uint64_t cr[5] = {r->cr0, r->cr2, r->cr3, r->cr4, r->cr8};
        for (int i = 0; i < 5; i++)
            patch_reg(hex, G_CR0 + i, cr[i]);
    }
    if (parts & HVI_REGS_EFER)
        patch_reg(hex, G_EFER, r->efer);
}

static hvi_status qemu_set_regs(void *ctx, uint32_t vcpu, uint32_t parts, const hvi_regs *regs)
{
    struct hvi_qemu *q = ctx;
    const uint32_t can = HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_EFER | HVI_REGS_SEG | HVI_REGS_FSGS;
    if (!regs || vcpu >= q->nvcpu)
        return HVI_E_INVAL;
    if (parts & ~can)
        return HVI_E_UNSUPPORTED;
    if (q->dead)
        return HVI_E_CLOSED;
    bool was_running = false;
    char *hex = NULL, *cmd = NULL;
    hvi_status st = hvi_qemu_stop_now(q, &was_running);
    if (st == HVI_OK)
        st = read_g(q, vcpu, &hex);
    if (st == HVI_OK) {
        patch_from_regs(hex, parts, regs);
        if (asprintf(&cmd, "G%s", hex) < 0)
            st = HVI_E_NOMEM;
    }
    const char *r;
    if (st == HVI_OK && (st = hvi_rsp_cmd(q->rsp, cmd, &r, NULL)) == HVI_OK && strcmp(r, "OK"))
        st = HVI_E_FORMAT;
    if (st != HVI_OK)
        hvi_qemu_sfail(q, st, "write registers (G)");
    free(hex);
    free(cmd);
    if (was_running) {
        hvi_status rs = hvi_qemu_resume_all(q);
        if (st == HVI_OK)
            st = rs;
    }
    return st;
}

static hvi_status qemu_vcpu_count(void *ctx, uint32_t *out)
{
    struct hvi_qemu *q = ctx;
    if (!out)
        return HVI_E_INVAL;
    *out = q->nvcpu;
    return HVI_OK;
}

static hvi_status qemu_max_gpfn(void *ctx, uint64_t *out)
{
    struct hvi_qemu *q = ctx;
    if (!out || !q->ram)
        return q->ram ? HVI_E_INVAL : HVI_E_RANGE;
    uint64_t end =
        q->ram_bytes > q->low_bytes ? 4 * GiB + (q->ram_bytes - q->low_bytes) : q->ram_bytes;
    *out = end / HVI_PAGE_SIZE - 1;
    return HVI_OK;
}

static hvi_status qemu_map_gpa(void *ctx, hvi_gpa gpa, void **out)
{
    struct hvi_qemu *q = ctx;
    if (!out || (gpa & (HVI_PAGE_SIZE - 1)))
        return HVI_E_INVAL;
    if (!q->ram)
        return HVI_E_RANGE;
    if (gpa < q->low_bytes) {
        *out = q->ram + gpa;
        return HVI_OK;
    }
    if (gpa >= 4 * GiB && gpa - 4 * GiB < q->ram_bytes - q->low_bytes) {
        *out = q->ram + q->low_bytes + (gpa - 4 * GiB);
        return HVI_OK;
    }
    return HVI_E_RANGE;
}

static hvi_status qemu_unmap_gpa(void *ctx, hvi_gpa gpa, void *ptr)
{
    (void)ctx;
    (void)gpa;
    return ptr ? HVI_OK : HVI_E_INVAL;
}

/* Insert or remove a Z-type breakpoint/watchpoint with the VM stopped. */
static hvi_status z_packet(struct hvi_qemu *q, bool insert, unsigned type, uint64_t addr,
                           uint32_t len)
{
    char cmd[64];
    const char *r;
    snprintf(cmd, sizeof(cmd), "%c%u,%llx,%x", insert ? 'Z' : 'z', type, (unsigned long long)addr,
             len);
    bool was_running = false;
    hvi_status st = hvi_qemu_stop_now(q, &was_running);
    if (st == HVI_OK && (st = hvi_rsp_cmd(q->rsp, cmd, &r, NULL)) == HVI_OK && strcmp(r, "OK"))
        st = HVI_E_FORMAT;
    if (st == HVI_E_UNSUPPORTED || st == HVI_E_BACKEND)
        snprintf(q->err, sizeof(q->err), "%s refused by the gdbstub", cmd);
    else if (st != HVI_OK)
        hvi_qemu_sfail(q, st, cmd);
    if (was_running) {
        hvi_status rs = hvi_qemu_resume_all(q);
        if (st == HVI_OK)
            st = rs;
    }
    return st;
}

static hvi_status qemu_set_breakpoint(void *ctx, hvi_gva gva, bool enable)
{
    struct hvi_qemu *q = ctx;
    uint32_t i = 0;
    while (i < q->nbp && q->bp[i] != gva)
        i++;
    if (q->dead)
        return HVI_E_CLOSED;
    if (enable && i < q->nbp)
        return HVI_E_EXISTS;
    if (!enable && i == q->nbp)
        return HVI_E_NOT_FOUND;
    if (enable && q->nbp >= (q->max_bp ? q->max_bp : HVI_QEMU_MAX_BREAKPOINTS))
        return HVI_E_LIMIT;
    hvi_status st = z_packet(q, enable, q->bp_type, gva, 1);
    if (st != HVI_OK)
        return st;
    if (enable)
        q->bp[q->nbp++] = gva;
    else
        q->bp[i] = q->bp[--q->nbp];
    return HVI_OK;
}

static hvi_status qemu_set_watchpoint(void *ctx, hvi_gva gva, uint32_t len, uint32_t kind,
                                      bool enable)
{
    struct hvi_qemu *q = ctx;
    if (kind < 1 || kind > 3 || !len || gva + len - 1 < gva)
        return HVI_E_INVAL;
    if (q->wp_range ? len > HVI_WATCH_RANGE_MAX_LEN
                    : (len != 1 && len != 2 && len != 4 && len != 8) || (gva & (len - 1)))
        return HVI_E_INVAL;
    if (q->dead)
        return HVI_E_CLOSED;
    uint32_t i = 0;
    while (i < q->nwp && !(q->wp[i].gva == gva && q->wp[i].len == len && q->wp[i].kind == kind))
        i++;
    if (enable && i < q->nwp)
        return HVI_E_EXISTS;
    if (!enable && i == q->nwp)
        return HVI_E_NOT_FOUND;
    if (enable && q->nwp == (q->wp_range ? HVI_QEMU_MAX_WATCHPOINTS_TCG : HVI_QEMU_MAX_WATCHPOINTS))
        return HVI_E_LIMIT;
    static const unsigned ztype[4] = {0, 2, 3, 4}; /* write, read, access */
    hvi_status st = z_packet(q, enable, ztype[kind], gva, len);
    if (st != HVI_OK)
        return st;
    if (enable)
        q->wp[q->nwp++] = (struct hvi_qemu_wp){gva, len, kind};
    else
        q->wp[i] = q->wp[--q->nwp];
    return HVI_OK;
}

static hvi_status qemu_single_step(void *ctx, uint32_t vcpu, bool enable)
{
    struct hvi_qemu *q = ctx;
    if (vcpu >= q->nvcpu)
        return HVI_E_INVAL;
    q->step[vcpu] = enable;
    return HVI_OK;
}

/* Rewrite code the engine changed in the RAM file through the gdbstub (`M`): QEMU's debug write
 * path invalidates the translated blocks made from those bytes, a write to the file does not. */
static hvi_status qemu_code_written(void *ctx, hvi_gva gva, const void *bytes, uint32_t len)
{
    struct hvi_qemu *q = ctx;
    if (!bytes || !len || len > 4096)
        return HVI_E_INVAL;
    if (q->dead)
        return HVI_E_CLOSED;
    bool was_running = false;
    hvi_status st = hvi_qemu_stop_now(q, &was_running);
    const uint8_t *b = bytes;
    char cmd[40 + 2 * 1024];
    for (uint32_t off = 0; st == HVI_OK && off < len;) {
        uint32_t n = len - off < 1024 ? len - off : 1024; /* QEMU's packet limit is 4 KiB */
        int k = snprintf(cmd, sizeof(cmd), "M%llx,%x:", (unsigned long long)(gva + off), n);
        for (uint32_t i = 0; i < n; i++)
            k += snprintf(cmd + k, sizeof(cmd) - (size_t)k, "%02x", b[off + i]);
        const char *r;
        if ((st = hvi_rsp_cmd(q->rsp, cmd, &r, NULL)) == HVI_OK && strcmp(r, "OK"))
            st = HVI_E_BACKEND;
        off += n;
    }
    if (st != HVI_OK && st != HVI_E_BACKEND)
        hvi_qemu_sfail(q, st, "write code (M)");
    if (was_running) {
        hvi_status rs = hvi_qemu_resume_all(q);
        if (st == HVI_OK)
            st = rs;
    }
    return st;
}

/* pause()/resume() nest. Inside an event the vCPUs stay stopped until the event loop resumes
 * them, whatever the engine does with pause/resume meanwhile. */
static hvi_status qemu_pause(void *ctx)
{
    struct hvi_qemu *q = ctx;
    bool was_running;
    hvi_status st = hvi_qemu_stop_now(q, &was_running);
    if (st == HVI_OK)
        q->pause_depth++;
    return st;
}

static hvi_status qemu_resume(void *ctx)
{
    struct hvi_qemu *q = ctx;
    if (q->pause_depth)
        q->pause_depth--;
    if (q->pause_depth || q->in_event || q->running)
        return q->dead ? HVI_E_CLOSED : HVI_OK;
    if (q->has_pending) { /* a stop caught while pausing, outside the event loop: let it go */
        q->has_pending = false;
        snprintf(q->err, sizeof(q->err), "a stop event met while pausing was dropped on resume");
    }
    return hvi_qemu_resume_all(q);
}

hvi_status hvi_qemu_glue(hvi_qemu *q, hvi_glue *out)
{
    if (!q || !out)
        return HVI_E_INVAL;
    memset(out, 0, sizeof(*out));
    out->version = HVI_GLUE_VERSION;
    out->size = sizeof(*out);
    out->caps = HVI_CAP_REGS_WRITE | HVI_CAP_BREAKPOINT | HVI_CAP_WATCHPOINT | HVI_CAP_SINGLE_STEP |
                HVI_CAP_PAUSE | (q->ram ? HVI_CAP_PHYS_MAP : 0) | (q->qmp ? HVI_CAP_DTR : 0) |
                (q->msr_on ? HVI_CAP_MSR_READ : 0) | HVI_CAP_VEC_REGS |
                (q->wp_range ? HVI_CAP_WATCH_RANGE : 0);
    out->ctx = q;
    out->name = "qemu";
    out->vcpu_count = qemu_vcpu_count;
    out->get_regs = qemu_get_regs;
    out->get_vec_reg = qemu_get_vec_reg;
    out->set_regs = qemu_set_regs;
    out->get_msr = q->msr_on ? hvi_qemu_get_msr : NULL;
    out->max_gpfn = qemu_max_gpfn;
    out->map_gpa = qemu_map_gpa;
    out->unmap_gpa = qemu_unmap_gpa;
    out->set_breakpoint = qemu_set_breakpoint;
    out->set_watchpoint = qemu_set_watchpoint;
    out->single_step = qemu_single_step;
    out->pause = qemu_pause;
    out->resume = qemu_resume;
    out->code_written = qemu_code_written;
    return HVI_OK;
}
