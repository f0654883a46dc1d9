/*
 * hvi guest/linux — the agents' two jobs (see lix_agent.h): what each call of a borrowed task
 * is, and what its return value means. The values come back from the guest's kernel and are
 * treated as hostile: a pointer must be a kernel pointer, a count must be the one asked for.
 */
#include <string.h>

#include "guest/linux/lix.h"
#include "guest/linux/lix_agent.h"

#define MAX_ERRNO 4095ull
#define EFAULT_NEG (-14)
#define ENOSPC_NEG (-28)

hvi_status lixa_run_set(struct lixa_run *r, const char *const *argv, const char *const *envp)
{
    if (!r)
        return HVI_E_INVAL;
    /* the same limits as the layout on the guest stack, checked with a block placed anywhere */
    hvi_status st = lixa_layout_argv(&r->blk, ~15ull, argv, envp);
    if (st != HVI_OK)
        return st;
    size_t at = 0, na = 0, ne = 0;
    for (; argv[na]; na++) {
        size_t l = strlen(argv[na]) + 1;
        memcpy(r->strs + at, argv[na], l);
        r->argv[na] = r->strs + at;
        at += l;
    }
    r->argv[na] = NULL;
    for (; envp && envp[ne]; ne++) {
        size_t l = strlen(envp[ne]) + 1;
        memcpy(r->strs + at, envp[ne], l);
        r->envp[ne] = r->strs + at;
        at += l;
    }
    r->envp[ne] = NULL;
    r->value = 0;
    return HVI_OK;
}

int lixa_run_next(void *job, bool first, uint64_t rax, uint64_t top, struct lixa_call *c)
{
    struct lixa_run *r = job;
    if (!first) {
        r->value = (int32_t)(uint32_t)rax; /* call_usermodehelper returns an int */
        return 0;
    }
    hvi_status st = lixa_layout_argv(&r->blk, top, r->argv, r->envp);
    if (st != HVI_OK)
        return st;
    *c = (struct lixa_call){
        .fn = r->fn, .data_base = r->blk.base, .data = r->blk.buf, .len = r->blk.len};
    c->args[0] = r->blk.path, c->args[1] = r->blk.argv, c->args[2] = r->blk.envp;
    c->args[3] = (uint64_t)r->wait;
    return 1;
}

/* Stage `n` bytes after a 16-byte header (the loff_t position) just below `top`. */
static void stage(struct lixa_put *p, uint64_t top, const void *bytes, uint32_t n, uint64_t pos)
{
    uint32_t len = (16 + n + 15) & ~15u;
    memset(p->blk.buf, 0, len);
    memcpy(p->blk.buf, &pos, 8);
    memcpy(p->blk.buf + 16, bytes, n);
    p->blk.len = len;
    p->blk.base = (top - len) & ~15ull;
}

static int put_call(struct lixa_put *p, uint64_t fn, struct lixa_call *c)
{
    *c = (struct lixa_call){
        .fn = fn, .data_base = p->blk.base, .data = p->blk.buf, .len = p->blk.len};
    return 1;
}

int lixa_put_next(void *job, bool first, uint64_t rax, uint64_t top, struct lixa_call *c)
{
    struct lixa_put *p = job;
    if (first) {
        size_t pl = strnlen(p->path, sizeof(p->path));
        if (!pl || pl >= sizeof(p->path) || top < LIXA_MAX_SCRATCH)
            return HVI_E_INVAL;
        p->off = 0, p->err = 0, p->file = 0, p->value = 0;
        stage(p, top, p->path, (uint32_t)pl + 1, 0);
        put_call(p, p->f_open, c);
        c->args[0] = p->blk.base + 16, c->args[1] = LIXA_O_WRONLY_CREAT_TRUNC;
        c->args[2] = p->mode;
        p->stage = 1;
        return 1;
    }
    if (p->stage == 1) { /* filp_open: a file or an ERR_PTR */
        if (rax >= (uint64_t)-MAX_ERRNO || !lix_is_kptr(rax)) {
            p->value = rax >= (uint64_t)-MAX_ERRNO ? (int64_t)rax : EFAULT_NEG;
            p->stage = 4;
            return 0;
        }
        p->file = rax;
    } else if (p->stage == 2) { /* kernel_write: the bytes written */
        if ((int64_t)rax != (int64_t)p->chunk)
            p->err =
                (int64_t)rax < 0 && (int64_t)rax >= -(int64_t)MAX_ERRNO ? (int64_t)rax : ENOSPC_NEG;
        else
            p->off += p->chunk;
    } else if (p->stage == 3) { /* filp_close */
        p->value = p->err ? p->err : (int64_t)p->len;
        p->stage = 4;
        return 0;
    } else {
        return HVI_E_STATE;
    }
    if (p->off < p->len && !p->err) {
        p->chunk = (uint32_t)(p->len - p->off < LIXA_PUT_CHUNK ? p->len - p->off : LIXA_PUT_CHUNK);
        stage(p, top, p->data + p->off, p->chunk, p->off);
        put_call(p, p->f_write, c);
        c->args[0] = p->file, c->args[1] = p->blk.base + 16, c->args[2] = p->chunk;
        c->args[3] = p->blk.base; /* &pos */
        p->stage = 2;
        return 1;
    }
    *c = (struct lixa_call){.fn = p->f_close};
    c->args[0] = p->file;
    p->stage = 3;
    return 1;
}
