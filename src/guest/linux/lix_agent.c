/*
 * hvi guest/linux — process and file agents (include/hvi/linux_agent.h, docs/linux-agents.md).
 *
 * The Linux side of the call machine (lix_agent_core.c): which kernel functions, where the
 * task is borrowed (the entry of frequent system call handlers), when a borrowed context is
 * sleepable (kernel mode and IF set are checked by the machine; here: preempt count 0, a user
 * process's task, RSP inside that task's kernel stack), and the two jobs:
 *   run: call_usermodehelper(path, argv, envp, UMH_WAIT_PROC or UMH_WAIT_EXEC), argv/envp and
 *        their strings laid out on the borrowed stack;
 *   put: filp_open(path, O_WRONLY|O_CREAT|O_TRUNC, mode), kernel_write() of 2 KiB chunks staged
 *        on the borrowed stack one after the other, filp_close().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix.h"
#include "guest/linux/lix_agent.h"
#include "hvi/linux_agent.h"

#define UMH_WAIT_EXEC 1
#define UMH_WAIT_PROC 2
#define O_WRONLY_CREAT_TRUNC 01101 /* O_WRONLY | O_CREAT | O_TRUNC (x86-64 values) */
#define PUT_CHUNK 2048u
#define MAX_ERRNO 4095ull

/* Frequent system calls of a working guest (a shell, a loop, a daemon). Only the entry of the
 * handler is used: the task is in process context, holds no lock, interrupts are on. */
static const char *const trigger_names[] = {
    "__x64_sys_write",           "__x64_sys_read",         "__x64_sys_wait4",
    "__x64_sys_rt_sigprocmask",  "__x64_sys_rt_sigaction", "__x64_sys_ioctl",
    "__x64_sys_newfstatat",      "__x64_sys_openat",       "__x64_sys_close",
    "__x64_sys_getpid",          "__x64_sys_poll",         "__x64_sys_nanosleep",
    "__x64_sys_clock_nanosleep", "__x64_sys_dup2",         "__x64_sys_fcntl",
    "__x64_sys_getppid",
};

enum job_kind { JOB_RUN, JOB_PUT };

struct lixa_state {
    struct lixa_machine m;
    hvi_engine *e;
    bool hooked; /* timer, detach and cleanup registered */
    bool have_syms;
    uint64_t f_umh, f_open, f_write, f_close, pad;
    uint64_t pcpu_current, pcpu_preempt;
    uint64_t trig[LIXA_MAX_TRIGGERS];
    const char *trig_name[LIXA_MAX_TRIGGERS];
    uint32_t ntrig;
    /* the job */
    enum job_kind kind;
    struct lixa_block blk;       /* staging of the current call's data */
    char strs[LIXA_MAX_SCRATCH]; /* run: copies of the argv/envp strings */
    const char *argv[LIXA_MAX_ARGS + 1], *envp[LIXA_MAX_ARGS + 1];
    int wait;
    uint8_t *data; /* put: the file */
    size_t len, off;
    uint32_t chunk, mode;
    char path[1024];
    int stage;
    uint64_t file;
    int64_t value, err;
    /* the task borrowed (filled by accept) */
    int32_t pid;
    char comm[16];
};

static void on_free(hvi_engine *e, void *ctx)
{
    struct lixa_state *s = ctx;
    free(s->data);
    free(s);
    e->lixa = NULL;
}

static void on_tick(hvi_engine *e, void *ctx)
{
    (void)e;
    struct lixa_state *s = ctx;
    lixa_tick(&s->m);
}

static hvi_status on_detach(hvi_engine *e, void *ctx)
{
    (void)e;
    struct lixa_state *s = ctx;
    return lixa_cancel(&s->m);
}

/* Per-CPU variable `name` as an offset from the GS base (absolute in kallsyms on x86-64 SMP,
 * or relative to __per_cpu_start). */
static bool pcpu_offset(struct lix_kernel *k, const char *name, uint64_t *off)
{
    uint64_t v = 0, start = 0;
    if (lix_kallsyms_lookup(&k->ks, name, &v) != HVI_OK)
        return false;
    if (!lix_is_kptr(v)) {
        *off = v;
        return v < (1ull << 32);
    }
    if (lix_kallsyms_lookup(&k->ks, "__per_cpu_start", &start) != HVI_OK || v < start ||
        v - start >= (1ull << 32))
        return false;
    *off = v - start;
    return true;
}

static hvi_status resolve(hvi_engine *e, struct lixa_state *s, struct lix_kernel *k)
{
    if (s->have_syms)
        return HVI_OK;
    if (!k->have_offsets || !k->off.task_stack || !k->off.task_mm)
        return hvi_fail(e, HVI_E_UNSUPPORTED,
                        "linux agent: the support data lacks task_struct.stack or .mm");
    static const char *const fn[] = {"call_usermodehelper", "filp_open", "kernel_write",
                                     "filp_close"};
    uint64_t *dst[] = {&s->f_umh, &s->f_open, &s->f_write, &s->f_close};
    for (int i = 0; i < 4; i++)
        if (lix_kallsyms_lookup(&k->ks, fn[i], dst[i]) != HVI_OK || !lix_is_kptr(*dst[i]))
            return hvi_fail(e, HVI_E_UNSUPPORTED, "linux agent: kernel symbol %s not found", fn[i]);
    if (!pcpu_offset(k, "current_task", &s->pcpu_current) ||
        !pcpu_offset(k, "__preempt_count", &s->pcpu_preempt))
        return hvi_fail(e, HVI_E_UNSUPPORTED,
                        "linux agent: per-CPU current_task/__preempt_count not found");
    /* the return address: int3 padding in the text after call_usermodehelper */
    size_t off = 0, tlen = 65536;
    uint8_t *text = malloc(tlen);
    bool found =
        text && lix_read(k, s->f_umh, text, tlen) == HVI_OK && lix_find_int3_pad(text, tlen, &off);
    free(text);
    if (!found)
        return hvi_fail(e, HVI_E_NOT_FOUND, "linux agent: no int3 padding found in kernel text");
    s->pad = s->f_umh + off + 1; /* inside the run, not its first byte */
    s->ntrig = 0;
    for (size_t i = 0; i < sizeof(trigger_names) / sizeof(trigger_names[0]); i++) {
        uint64_t a = 0;
        if (s->ntrig < LIXA_MAX_TRIGGERS &&
            lix_kallsyms_lookup(&k->ks, trigger_names[i], &a) == HVI_OK && lix_is_kptr(a)) {
            s->trig[s->ntrig] = a;
            s->trig_name[s->ntrig++] = trigger_names[i];
        }
    }
    if (!s->ntrig)
        return hvi_fail(e, HVI_E_UNSUPPORTED, "linux agent: no system call handler found");
    s->have_syms = true;
    return HVI_OK;
}

/* Sleepable-context checks beyond the machine's (CPL 0, IF): see the file comment. */
static hvi_status accept(void *ctx, uint32_t vcpu, const hvi_regs *r, uint64_t *stack_lo)
{
    (void)vcpu;
    struct lixa_state *s = ctx;
    struct lix_kernel *k = lix_get(s->e);
    uint64_t gs = r->gs_base, task = 0, mm = 0, stack = 0;
    uint32_t pc = 0;
    if (!k || !lix_is_kptr(gs) || gs + s->pcpu_preempt < gs)
        return HVI_E_FORMAT;
    if (lix_read_u32(k, gs + s->pcpu_preempt, &pc) != HVI_OK || (pc & 0x7fffffffu) != 0)
        return HVI_E_BUSY; /* atomic context (bit 31 is the inverted need-resched flag) */
    if (lix_read_u64(k, gs + s->pcpu_current, &task) != HVI_OK || !lix_is_kptr(task) ||
        (task & 7) || lix_read_u64(k, task + k->off.task_mm, &mm) != HVI_OK || !mm ||
        lix_read_u64(k, task + k->off.task_stack, &stack) != HVI_OK || !lix_is_kptr(stack) ||
        (stack & (HVI_PAGE_SIZE - 1)))
        return HVI_E_FORMAT;
    uint64_t size = k->off.thread_size ? k->off.thread_size : 16384, rsp = r->gpr[HVI_RSP];
    if (stack + size < stack || rsp <= stack || rsp > stack + size)
        return HVI_E_RANGE;   /* not on its task stack (an IRQ or exception stack) */
    if (s->kind == JOB_PUT) { /* the file is created with this task's credentials */
        uint64_t cred = 0;
        uint32_t fsuid = 1, at = k->off.cred_fsuid ? k->off.cred_fsuid : k->off.cred_euid;
        if (lix_read_u64(k, task + k->off.task_cred, &cred) != HVI_OK || !lix_is_kptr(cred) ||
            lix_read_u32(k, cred + at, &fsuid) != HVI_OK || fsuid != 0)
            return HVI_E_DENIED;
    }
    uint32_t pid = 0;
    char comm[16] = {0};
    if (lix_read_u32(k, task + k->off.task_pid, &pid) != HVI_OK ||
        lix_read(k, task + k->off.task_comm, comm, sizeof(comm) - 1) != HVI_OK)
        return HVI_E_FORMAT;
    s->pid = (int32_t)pid;
    memcpy(s->comm, comm, sizeof(s->comm));
    *stack_lo = stack;
    return HVI_OK;
}

static int run_next(void *job, bool first, uint64_t rax, uint64_t top, struct lixa_call *c)
{
    struct lixa_state *s = job;
    if (!first) {
        s->value = (int32_t)(uint32_t)rax; /* call_usermodehelper returns an int */
        return 0;
    }
    hvi_status st = lixa_layout_argv(&s->blk, top, s->argv, s->envp);
    if (st != HVI_OK)
        return st;
    *c = (struct lixa_call){
        .fn = s->f_umh, .data_base = s->blk.base, .data = s->blk.buf, .len = s->blk.len};
    c->args[0] = s->blk.path, c->args[1] = s->blk.argv, c->args[2] = s->blk.envp;
    c->args[3] = (uint64_t)s->wait;
    return 1;
}

/* put: stage `n` bytes of `bytes` after a 16-byte header (loff_t pos) below `top`. */
static void stage(struct lixa_state *s, uint64_t top, const void *bytes, uint32_t n, uint64_t pos)
{
    uint32_t len = (16 + n + 15) & ~15u;
    memset(s->blk.buf, 0, len);
    memcpy(s->blk.buf, &pos, 8);
    memcpy(s->blk.buf + 16, bytes, n);
    s->blk.len = len;
    s->blk.base = (top - len) & ~15ull;
}

static int put_next(void *job, bool first, uint64_t rax, uint64_t top, struct lixa_call *c)
{
    struct lixa_state *s = job;
    if (first) {
        s->stage = 0, s->off = 0, s->err = 0, s->file = 0;
        stage(s, top, s->path, (uint32_t)strlen(s->path) + 1, 0);
        *c = (struct lixa_call){
            .fn = s->f_open, .data_base = s->blk.base, .data = s->blk.buf, .len = s->blk.len};
        c->args[0] = s->blk.base + 16, c->args[1] = O_WRONLY_CREAT_TRUNC, c->args[2] = s->mode;
        s->stage = 1;
        return 1;
    }
    if (s->stage == 1) { /* filp_open returned a file or ERR_PTR */
        if (rax >= (uint64_t)-MAX_ERRNO || !lix_is_kptr(rax)) {
            s->value = rax >= (uint64_t)-MAX_ERRNO ? (int64_t)rax : -14 /* EFAULT */;
            return 0;
        }
        s->file = rax;
    } else if (s->stage == 2) {                /* kernel_write returned the bytes written */
        if ((int64_t)rax != (int64_t)s->chunk) /* stop writing, close */
            s->err = (int64_t)rax < 0 ? (int64_t)rax : -28 /* ENOSPC: short write */;
        else
            s->off += s->chunk;
    } else if (s->stage == 3) { /* filp_close */
        s->value = s->err ? s->err : (int64_t)s->len;
        return 0;
    }
    if (s->off < s->len && !s->err) {
        s->chunk = (uint32_t)(s->len - s->off < PUT_CHUNK ? s->len - s->off : PUT_CHUNK);
        stage(s, top, s->data + s->off, s->chunk, s->off);
        *c = (struct lixa_call){
            .fn = s->f_write, .data_base = s->blk.base, .data = s->blk.buf, .len = s->blk.len};
        c->args[0] = s->file, c->args[1] = s->blk.base + 16, c->args[2] = s->chunk;
        c->args[3] = s->blk.base;
        s->stage = 2;
        return 1;
    }
    *c = (struct lixa_call){.fn = s->f_close};
    c->args[0] = s->file;
    s->stage = 3;
    return 1;
}

static hvi_status prepare(hvi_engine *e, struct lixa_state **out)
{
    struct lix_kernel *k = e ? lix_get(e) : NULL;
    if (!k)
        return e ? hvi_fail(e, HVI_E_STATE, "linux agent: no Linux kernel found") : HVI_E_INVAL;
    if (!e->lixa) {
        struct lixa_state *s = calloc(1, sizeof(*s));
        if (!s)
            return HVI_E_NOMEM;
        s->e = e;
        if (hvi_engine_on_free(e, on_free, s) != HVI_OK) {
            free(s);
            return HVI_E_LIMIT;
        }
        e->lixa = s;
    }
    struct lixa_state *s = e->lixa;
    if (s->m.phase == LIXA_WAIT_TRIGGER || s->m.phase == LIXA_IN_CALL)
        return hvi_fail(e, HVI_E_STATE, "linux agent: another agent is still running");
    if (!s->hooked) {
        if (hvi_engine_add_timer(e, on_tick, s) != HVI_OK ||
            hvi_engine_on_detach(e, on_detach, s) != HVI_OK)
            return HVI_E_LIMIT;
        s->hooked = true;
    }
    hvi_status st = resolve(e, s, k);
    if (st != HVI_OK)
        return st;
    *out = s;
    return HVI_OK;
}

static void opts_or_default(const hvi_linux_agent_opts *o, hvi_linux_agent_opts *d)
{
    memset(d, 0, sizeof(*d));
    if (o && o->size >= sizeof(*d))
        *d = *o;
    if (!d->trigger_timeout_ms)
        d->trigger_timeout_ms = 30000;
    if (!d->call_timeout_ms)
        d->call_timeout_ms = 60000;
    if (!d->mode)
        d->mode = 0644;
}

static hvi_status arm(hvi_engine *e, struct lixa_state *s, const hvi_linux_agent_opts *o,
                      lixa_next_fn next)
{
    s->pid = -1, s->comm[0] = 0, s->value = 0;
    return lixa_start(&s->m, e, s->trig, s->ntrig, s->pad, accept, s, next, s,
                      o->trigger_timeout_ms, o->call_timeout_ms);
}

hvi_status hvi_linux_agent_run_start(hvi_engine *e, const char *const *argv,
                                     const char *const *envp, const hvi_linux_agent_opts *o)
{
    static const char *const dflt_env[] = {"HOME=/", "PATH=/sbin:/bin:/usr/sbin:/usr/bin", NULL};
    struct lixa_state *s = NULL;
    hvi_linux_agent_opts d;
    opts_or_default(o, &d);
    if (!argv || !argv[0] || argv[0][0] != '/')
        return e ? hvi_fail(e, HVI_E_INVAL, "linux agent: argv[0] must be an absolute path")
                 : HVI_E_INVAL;
    hvi_status st = prepare(e, &s);
    if (st != HVI_OK)
        return st;
    if (!envp)
        envp = dflt_env;
    /* deep copy, checked against the layout limits with a block placed anywhere */
    if (lixa_layout_argv(&s->blk, ~0ull & ~15ull, argv, envp) != HVI_OK)
        return hvi_fail(e, HVI_E_LIMIT, "linux agent: argv/envp over %u entries or %u bytes",
                        LIXA_MAX_ARGS, LIXA_MAX_SCRATCH);
    size_t at = 0, na = 0, ne = 0;
    for (; argv[na]; na++, at += strlen(s->strs + at) + 1) {
        memcpy(s->strs + at, argv[na], strlen(argv[na]) + 1);
        s->argv[na] = s->strs + at;
    }
    s->argv[na] = NULL;
    for (; envp[ne]; ne++, at += strlen(s->strs + at) + 1) {
        memcpy(s->strs + at, envp[ne], strlen(envp[ne]) + 1);
        s->envp[ne] = s->strs + at;
    }
    s->envp[ne] = NULL;
    s->kind = JOB_RUN;
    s->wait = d.no_wait ? UMH_WAIT_EXEC : UMH_WAIT_PROC;
    return arm(e, s, &d, run_next);
}

hvi_status hvi_linux_agent_put_start(hvi_engine *e, const char *guest_path, const void *data,
                                     size_t len, const hvi_linux_agent_opts *o)
{
    struct lixa_state *s = NULL;
    hvi_linux_agent_opts d;
    opts_or_default(o, &d);
    if (!guest_path || guest_path[0] != '/' || strlen(guest_path) >= sizeof(s->path) ||
        (len && !data))
        return e ? hvi_fail(e, HVI_E_INVAL,
                            "linux agent: the guest path must be absolute "
                            "(under 1024 bytes)")
                 : HVI_E_INVAL;
    if (len > HVI_LINUX_AGENT_MAX_FILE)
        return hvi_fail(e, HVI_E_LIMIT, "linux agent: %zu bytes is over the %u-byte limit", len,
                        HVI_LINUX_AGENT_MAX_FILE);
    hvi_status st = prepare(e, &s);
    if (st != HVI_OK)
        return st;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return HVI_E_NOMEM;
    if (len)
        memcpy(copy, data, len);
    free(s->data);
    s->data = copy, s->len = len, s->mode = d.mode & 07777;
    hvi_strlcpy(s->path, guest_path, sizeof(s->path));
    s->kind = JOB_PUT;
    return arm(e, s, &d, put_next);
}

hvi_status hvi_linux_agent_poll(hvi_engine *e, hvi_linux_agent_result *out)
{
    struct lixa_state *s = e ? e->lixa : NULL;
    if (!s)
        return HVI_E_STATE;
    lixa_tick(&s->m);
    hvi_status st = lixa_poll(&s->m);
    if (out) {
        const struct lixa_machine *m = &s->m;
        memset(out, 0, sizeof(*out));
        out->value = s->value;
        out->pid = s->pid;
        memcpy(out->comm, s->comm, sizeof(out->comm));
        if (m->t_trigger_ns && m->trigger_index < s->ntrig)
            hvi_strlcpy(out->trigger, s->trig_name[m->trigger_index], sizeof(out->trigger));
        out->vcpu = m->vcpu;
        out->calls = m->calls;
        out->other_vcpu = m->other_vcpu;
        out->trigger_hits = m->trigger_hits, out->rejected = m->rejected;
        uint64_t t = m->t_trigger_ns ? m->t_trigger_ns : hvi_now_ns();
        out->wait_ns = t - m->t_start_ns;
        out->run_ns = m->t_done_ns && m->t_trigger_ns ? m->t_done_ns - m->t_trigger_ns : 0;
        hvi_strlcpy(out->why, m->why, sizeof(out->why));
    }
    return st;
}

hvi_status hvi_linux_agent_cancel(hvi_engine *e)
{
    return e && e->lixa ? lixa_cancel(&e->lixa->m) : HVI_OK;
}

static hvi_status pump_until_done(hvi_engine *e, hvi_linux_agent_pump pump, void *user,
                                  hvi_linux_agent_result *out)
{
    for (;;) {
        hvi_status st = hvi_linux_agent_poll(e, out);
        if (st != HVI_E_BUSY)
            return st;
        if ((st = pump(e, 200, user)) != HVI_OK)
            return st;
    }
}

hvi_status hvi_linux_agent_run(hvi_engine *e, const char *const *argv, const char *const *envp,
                               const hvi_linux_agent_opts *o, hvi_linux_agent_pump pump, void *user,
                               hvi_linux_agent_result *out)
{
    if (!pump)
        return HVI_E_INVAL;
    hvi_status st = hvi_linux_agent_run_start(e, argv, envp, o);
    return st != HVI_OK ? st : pump_until_done(e, pump, user, out);
}

hvi_status hvi_linux_agent_put(hvi_engine *e, const char *guest_path, const void *data, size_t len,
                               const hvi_linux_agent_opts *o, hvi_linux_agent_pump pump, void *user,
                               hvi_linux_agent_result *out)
{
    if (!pump)
        return HVI_E_INVAL;
    hvi_status st = hvi_linux_agent_put_start(e, guest_path, data, len, o);
    return st != HVI_OK ? st : pump_until_done(e, pump, user, out);
}
