/*
 * hvi protect layer — swapmem: read guest memory that may be swapped out, with page-table hooks
 * telling when pages come in and #PF injection at a safe point to make the guest bring them.
 */
#include <stdlib.h>
#include <string.h>

#include "protect_priv.h"

#define ADDR_MASK 0x000ffffffffff000ull
#define USER_TOP 0x0000800000000000ull
#define PF_VECTOR 14
#define PF_USER (1u << 2)

struct swap_page {
    hvi_gva gva;          /* page address */
    hvi_gpa gpa;          /* frame when present */
    bool present, injected;
    hvi_hook *pt;         /* page-table hook while missing */
};

struct hvi_swapmem {
    uint64_t cr3;
    hvi_gva gva;
    uint32_t len, flags;
    hvi_swapmem_cb cb;
    void *ctx;
    uint32_t npages, missing;
    struct swap_page *pages;
    bool done;
    struct hvi_swapmem *next;
};

static void swap_free(hvi_engine *e, struct hvi_swapmem *r)
{
    for (uint32_t i = 0; e && i < r->npages; i++)
        if (r->pages[i].pt)
            (void)hvi_hook_remove(e, r->pages[i].pt);
    free(r->pages);
    free(r);
}

void hvi_swapmem_release(struct hvi_protect_state *s)
{
    for (struct hvi_swapmem *r = s ? s->swaps : NULL, *n; r; r = n) {
        n = r->next;
        swap_free(NULL, r);
    }
    if (s) {
        s->swaps = NULL;
        s->nswaps = 0;
    }
}

static void unlink_req(struct hvi_protect_state *s, struct hvi_swapmem *r)
{
    for (struct hvi_swapmem **pp = &s->swaps; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            s->nswaps--;
            return;
        }
    }
}

/* Every page is present: read them physically (the mapping write may still be pending). */
static void complete(hvi_engine *e, struct hvi_swapmem *r)
{
    uint8_t *buf = malloc(r->len);
    uint32_t off = 0;
    bool ok = buf != NULL;
    for (uint32_t i = 0; ok && i < r->npages; i++) {
        hvi_gva start = i == 0 ? r->gva : r->pages[i].gva;
        uint32_t room = (uint32_t)(HVI_PAGE_SIZE - (start & (HVI_PAGE_SIZE - 1)));
        uint32_t n = r->len - off < room ? r->len - off : room;
        hvi_gpa gpa = r->pages[i].gpa + (start & (HVI_PAGE_SIZE - 1));
        ok = hvi_gpa_read(e, gpa, buf + off, n) == HVI_OK;
        off += n;
    }
    r->done = true;
    if (ok)
        r->cb(e, r->cr3, r->gva, buf, r->len, r->ctx);
    else
        hvi_log(e, HVI_LOG_WARN, "swapmem: cannot read 0x%llx after swap-in",
                (unsigned long long)r->gva);
    free(buf);
}

static void on_pt(hvi_engine *e, hvi_hook *hook, const hvi_translation *o,
                  const hvi_translation *n, void *ctx)
{
    (void)o;
    struct hvi_swapmem *r = ctx;
    if (r->done || n->fault_level != 0)
        return;
    for (uint32_t i = 0; i < r->npages; i++) {
        struct swap_page *p = &r->pages[i];
        if (p->pt != hook || p->present)
            continue;
        p->present = true;
        p->gpa = n->gpa & ~(uint64_t)(HVI_PAGE_SIZE - 1);
        r->missing--;
    }
    if (r->missing)
        return;
    complete(e, r);
    unlink_req(e->protect, r);
    swap_free(e, r);
}

static hvi_status try_inject(hvi_engine *e, const hvi_event *ev, hvi_event_reply *reply, void *c)
{
    (void)reply;
    (void)c;
    struct hvi_protect_state *s = e->protect;
    if (!s || !s->nswaps || !(e->glue.caps & HVI_CAP_INJECT))
        return HVI_OK;
    hvi_regs regs;
    memset(&regs, 0, sizeof(regs));
    if (e->glue.get_regs(e->glue.ctx, ev->vcpu, HVI_REGS_GPR | HVI_REGS_CR | HVI_REGS_SEG,
                         &regs) != HVI_OK)
        return HVI_OK;
    if ((regs.seg[HVI_CS].selector & 3) != 3 || !(regs.rflags & (1u << 9)))
        return HVI_OK;
    for (struct hvi_swapmem *r = s->swaps; r; r = r->next) {
        if (r->flags & HVI_SWAPMEM_NO_INJECT || (r->cr3 & ADDR_MASK) != (regs.cr3 & ADDR_MASK))
            continue;
        for (uint32_t i = 0; i < r->npages; i++) {
            struct swap_page *p = &r->pages[i];
            if (p->present || p->injected || p->gva >= USER_TOP)
                continue;
            if (e->glue.inject_exception(e->glue.ctx, ev->vcpu, PF_VECTOR, PF_USER, p->gva) ==
                HVI_OK)
                p->injected = true;
            return HVI_OK; /* one injection per event */
        }
    }
    return HVI_OK;
}

static hvi_status ensure_handlers(hvi_engine *e, struct hvi_protect_state *s)
{
    static const uint32_t types[] = {HVI_EV_EPT_VIOLATION, HVI_EV_BREAKPOINT, HVI_EV_SINGLE_STEP,
                                     HVI_EV_CR_WRITE, HVI_EV_MSR_WRITE, HVI_EV_WATCHPOINT};
    if (s->swap_handlers)
        return HVI_OK;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (hvi_engine_add_handler(e, types[i], try_inject, NULL) != HVI_OK)
            return HVI_E_LIMIT;
    s->swap_handlers = true;
    return HVI_OK;
}

static hvi_status watch_missing(hvi_engine *e, struct hvi_swapmem *r)
{
    for (uint32_t i = 0; i < r->npages; i++) {
        struct swap_page *p = &r->pages[i];
        hvi_translation t;
        if (hvi_gva_translate(e, r->cr3, p->gva, &t) == HVI_OK) {
            p->present = true;
            p->gpa = t.gpa & ~(uint64_t)(HVI_PAGE_SIZE - 1);
            continue;
        }
        r->missing++;
        hvi_status st = hvi_hook_pt_add(e, r->cr3, p->gva, on_pt, r, &p->pt);
        if (st != HVI_OK)
            return st;
        hvi_hook_set_owned(p->pt, true);
        /* the page may have come in between the translation and the hook */
        if (hvi_hook_translation(p->pt, &t) == HVI_OK) {
            p->present = true;
            p->gpa = t.gpa & ~(uint64_t)(HVI_PAGE_SIZE - 1);
            r->missing--;
        }
    }
    return HVI_OK;
}

hvi_status hvi_swapmem_read(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint32_t len, uint32_t flags,
                            hvi_swapmem_cb cb, void *ctx, hvi_swapmem **handle)
{
    if (handle)
        *handle = NULL;
    if (!e || !cb || len == 0 || len > HVI_SWAPMEM_MAX_LEN || gva + len < gva)
        return e ? hvi_fail(e, HVI_E_INVAL, "swapmem: bad request") : HVI_E_INVAL;
    struct hvi_protect_state *s = hvi_protect_state(e);
    if (!s || ensure_handlers(e, s) != HVI_OK)
        return HVI_E_NOMEM;
    struct hvi_swapmem *r = calloc(1, sizeof(*r));
    uint32_t npages = (uint32_t)(((gva + len - 1) >> 12) - (gva >> 12) + 1);
    if (r)
        r->pages = calloc(npages, sizeof(*r->pages));
    if (!r || !r->pages) {
        free(r);
        return HVI_E_NOMEM;
    }
    *r = (struct hvi_swapmem){.cr3 = cr3 ? cr3 : hvi_mem_kernel_cr3(e), .gva = gva, .len = len,
                              .flags = flags, .cb = cb, .ctx = ctx, .npages = npages,
                              .pages = r->pages};
    for (uint32_t i = 0; i < npages; i++)
        r->pages[i].gva = (gva & HVI_PAGE_MASK) + (uint64_t)i * HVI_PAGE_SIZE;
    hvi_status st = watch_missing(e, r);
    if (st != HVI_OK) {
        swap_free(e, r);
        return hvi_fail(e, st, "swapmem: cannot watch 0x%llx", (unsigned long long)gva);
    }
    if (r->missing == 0) {
        complete(e, r);
        swap_free(e, r);
        return HVI_OK;
    }
    r->next = s->swaps;
    s->swaps = r;
    s->nswaps++;
    if (handle)
        *handle = r;
    return HVI_OK;
}

hvi_status hvi_swapmem_cancel(hvi_engine *e, hvi_swapmem *h)
{
    if (!e || !h || !e->protect)
        return HVI_E_INVAL;
    for (struct hvi_swapmem *r = e->protect->swaps; r; r = r->next) {
        if (r == h) {
            unlink_req(e->protect, r);
            swap_free(e, r);
            return HVI_OK;
        }
    }
    return HVI_E_NOT_FOUND;
}

size_t hvi_swapmem_cancel_cr3(hvi_engine *e, uint64_t cr3)
{
    size_t n = 0;
    struct hvi_protect_state *s = e ? e->protect : NULL;
    for (struct hvi_swapmem *r = s ? s->swaps : NULL, *next; r; r = next) {
        next = r->next;
        if ((r->cr3 & ADDR_MASK) == (cr3 & ADDR_MASK)) {
            unlink_req(s, r);
            swap_free(e, r);
            n++;
        }
    }
    return n;
}

size_t hvi_swapmem_cancel_all(hvi_engine *e)
{
    size_t n = 0;
    while (e->protect && e->protect->swaps) {
        struct hvi_swapmem *r = e->protect->swaps;
        unlink_req(e->protect, r);
        swap_free(e, r);
        n++;
    }
    return n;
}

size_t hvi_swapmem_pending(const hvi_engine *e)
{
    return e && e->protect ? e->protect->nswaps : 0;
}
