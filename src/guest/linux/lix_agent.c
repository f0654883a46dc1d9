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
    /* the job (lix_agent_jobs.c) */
    enum job_kind kind;
    struct lixa_run run;
    struct lixa_put put;
    uint8_t *data; /* put: the engine's copy of the file */
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
    /* the return address: int3 padding in the text after call_usermodehelper, in a run shorter
     * than the in-guest detours' slack minimum (48 bytes: lix_indetour.c) so that no stub is
     * ever placed over it */
    size_t off = 0, tlen = 65536, at = 0;
    uint8_t *text = malloc(tlen);
    bool found = false;
    if (text && lix_read(k, s->f_umh, text, tlen) == HVI_OK)
        while (!found && at < tlen && lix_find_int3_pad(text + at, tlen - at, &off)) {
            size_t run = 0;
            off += at;
            while (off + run < tlen && text[off + run] == 0xcc)
                run++;
            found = run < 48 && off + run < tlen;
            at = off + run;
        }
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
                      lixa_next_fn next, void *job)
{
    s->pid = -1, s->comm[0] = 0, s->run.value = 0, s->put.value = 0;
    return lixa_start(&s->m, e, s->trig, s->ntrig, s->pad, accept, s, next, job,
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
    if (lixa_run_set(&s->run, argv, envp) != HVI_OK)
        return hvi_fail(e, HVI_E_LIMIT, "linux agent: argv/envp over %u entries or %u bytes",
                        LIXA_MAX_ARGS, LIXA_MAX_SCRATCH);
    s->kind = JOB_RUN;
    s->run.fn = s->f_umh;
    s->run.wait = d.no_wait ? UMH_WAIT_EXEC : UMH_WAIT_PROC;
    return arm(e, s, &d, lixa_run_next, &s->run);
}

hvi_status hvi_linux_agent_put_start(hvi_engine *e, const char *guest_path, const void *data,
                                     size_t len, const hvi_linux_agent_opts *o)
{
    struct lixa_state *s = NULL;
    hvi_linux_agent_opts d;
    opts_or_default(o, &d);
    if (!guest_path || guest_path[0] != '/' || strlen(guest_path) >= sizeof(s->put.path) ||
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
    s->data = copy;
    memset(&s->put, 0, sizeof(s->put));
    s->put.f_open = s->f_open, s->put.f_write = s->f_write, s->put.f_close = s->f_close;
    s->put.data = copy, s->put.len = len, s->put.mode = d.mode & 07777;
    hvi_strlcpy(s->put.path, guest_path, sizeof(s->put.path));
    s->kind = JOB_PUT;
    return arm(e, s, &d, lixa_put_next, &s->put);
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
        out->value = s->kind == JOB_PUT ? s->put.value : s->run.value;
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
