/* hvi guest/linux — thread safeness: before code in [start, end) is changed (a detour placed
 * or removed), no vCPU may execute there and no task may later return there. Every vCPU's RIP
 * is checked, and every thread's kernel stack (and init_task's) is scanned for words pointing
 * into the range. The idle tasks of secondary CPUs are not on the task list: only their vCPU's
 * RIP covers them. */
#include <string.h>

#include "core/engine.h"
#include "guest/linux/lix.h"

struct scan {
    const struct lix_kernel *k;
    uint64_t start, end;
    struct lix_thrsafe_hit *hit;
    hvi_status st;
};

static hvi_status scan_stack(struct scan *s, const struct lix_task *t)
{
    uint64_t stack = 0;
    hvi_status st = lix_read_u64(s->k, t->addr + s->k->off.task_stack, &stack);
    if (st != HVI_OK || !stack)
        return st; /* a task without a stack (exiting) has nothing to return into */
    if (!lix_is_kptr(stack) || (stack & (HVI_PAGE_SIZE - 1)))
        return HVI_E_FORMAT;
    uint64_t page[HVI_PAGE_SIZE / 8];
    for (uint32_t off = 0; off < s->k->off.thread_size; off += HVI_PAGE_SIZE) {
        if (lix_read(s->k, stack + off, page, sizeof(page)) != HVI_OK)
            continue; /* an unmapped (guard or not yet used) stack page holds nothing */
        for (size_t i = 0; i < HVI_PAGE_SIZE / 8; i++) {
            if (page[i] < s->start || page[i] >= s->end)
                continue;
            s->hit->pid = t->pid;
            memcpy(s->hit->comm, t->comm, sizeof(s->hit->comm));
            s->hit->value = page[i];
            s->hit->where = stack + off + 8 * i;
            return HVI_E_BUSY;
        }
    }
    return HVI_OK;
}

static bool visit(const struct lix_task *t, void *ctx)
{
    struct scan *s = ctx;
    s->st = scan_stack(s, t);
    return s->st == HVI_OK;
}

hvi_status lix_thread_safe_check(const struct lix_kernel *k, const uint64_t *rips, uint32_t nrips,
                                 uint64_t start, uint64_t end, struct lix_thrsafe_hit *hit)
{
    if (!k || !hit || end <= start || (nrips && !rips))
        return HVI_E_INVAL;
    if (!k->have_offsets)
        return HVI_E_STATE;
    if (!k->off.task_stack || !k->off.thread_size)
        return HVI_E_UNSUPPORTED;
    memset(hit, 0, sizeof(*hit));
    hit->pid = -1;
    for (uint32_t i = 0; i < nrips; i++) {
        if (rips[i] >= start && rips[i] < end) {
            hit->on_cpu = true;
            hit->vcpu = i;
            hit->value = rips[i];
            return HVI_E_BUSY;
        }
    }
    struct scan s = {.k = k, .start = start, .end = end, .hit = hit, .st = HVI_OK};
    /* the boot CPU's idle task (init_task) is not on its own tasks list */
    struct lix_task idle;
    hvi_status st = lix_task_read(k, k->init_task, &idle);
    if (st == HVI_OK)
        st = scan_stack(&s, &idle);
    if (st != HVI_OK)
        return st;
    st = lix_task_walk(k, true, visit, &s);
    if (st != HVI_OK)
        return st;
    return s.st;
}

hvi_status lix_thread_safe(hvi_engine *e, uint64_t start, uint64_t end, struct lix_thrsafe_hit *hit)
{
    struct lix_kernel *k = lix_get(e);
    if (!k)
        return HVI_E_STATE;
    uint32_t n = 0;
    if (e->glue.vcpu_count(e->glue.ctx, &n) != HVI_OK || n == 0)
        return hvi_fail(e, HVI_E_BACKEND, "thread safeness: no vCPU count");
    uint64_t rips[64];
    if (n > 64)
        return hvi_fail(e, HVI_E_LIMIT, "thread safeness: more than 64 vCPUs");
    for (uint32_t i = 0; i < n; i++) {
        hvi_regs r;
        memset(&r, 0, sizeof(r));
        if (e->glue.get_regs(e->glue.ctx, i, HVI_REGS_GPR, &r) != HVI_OK)
            return hvi_fail(e, HVI_E_BACKEND, "thread safeness: registers of vCPU %u", i);
        rips[i] = r.rip;
    }
    return lix_thread_safe_check(k, rips, n, start, end, hit);
}
