/*
 * hvi protect layer — memcloak: the guest keeps reading the original bytes where the engine
 * patched its memory, and cannot write them.
 */
#include <stdlib.h>
#include <string.h>

#include "protect_priv.h"

#define CLOAK_MAX (2u * HVI_PAGE_SIZE)

struct hvi_memcloak {
    uint64_t cr3;
    hvi_gva gva;
    uint32_t len;
    uint8_t *original;
    hvi_hook *hooks[2];
    hvi_memcloak_write_cb on_write;
    void *ctx;
    uint32_t flags;
    struct hvi_memcloak *next;
};

/* The bytes a read of [gva, gva+size) must return: memory, with cloaked offsets replaced. */
static hvi_status cloaked_view(hvi_engine *e, const struct hvi_memcloak *c, const hvi_regs *regs,
                               hvi_gva gva, uint32_t size, uint8_t *out)
{
    uint64_t cr3 = regs && (regs->valid & HVI_REGS_CR) ? regs->cr3 : c->cr3;
    for (uint32_t i = 0; i < size; i++) {
        hvi_gva x = gva + i;
        if (x >= c->gva && x < c->gva + c->len) {
            out[i] = c->original[x - c->gva];
            continue;
        }
        hvi_status st = hvi_gva_read(e, cr3, x, &out[i], 1);
        if (st != HVI_OK)
            return st;
    }
    return HVI_OK;
}

static uint32_t on_access(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc, void *ctx)
{
    (void)hook;
    struct hvi_memcloak *c = ctx;
    if (acc->access == HVI_EPT_W) {
        if (c->on_write)
            c->on_write(e, c, acc, c->ctx);
        return HVI_ACTION_DENY; /* always, also in log-only mode */
    }
    int ai = -1;
    for (uint32_t i = 0; acc->insn && i < acc->insn->access_count; i++)
        if ((acc->insn->access[i].access & HVI_EPT_R) && acc->insn->access[i].addr_valid)
            ai = (int)i;
    uint8_t view[8];
    if (ai < 0 || !acc->emulate || acc->insn->access[ai].size > sizeof(view) ||
        cloaked_view(e, c, acc->regs, acc->insn->access[ai].gva, acc->insn->access[ai].size,
                     view) != HVI_OK ||
        hvi_insn_emulate_load(acc->insn, acc->emulate, view, acc->insn->access[ai].size) !=
            HVI_OK) {
        hvi_log(e, HVI_LOG_WARN, "memcloak: cannot emulate the read at rip 0x%llx (%s)",
                (unsigned long long)acc->rip, acc->insn ? acc->insn->text : "?");
        return HVI_ACTION_ALLOW;
    }
    return HVI_ACTION_DENY; /* completed by emulation */
}

static void cloak_free(hvi_engine *e, struct hvi_memcloak *c)
{
    for (int i = 0; e && i < 2; i++)
        if (c->hooks[i])
            (void)hvi_hook_remove(e, c->hooks[i]);
    free(c->original);
    free(c);
}

static hvi_status hook_pages(hvi_engine *e, struct hvi_memcloak *c)
{
    int k = 0;
    for (hvi_gva p = c->gva; p < c->gva + c->len; p = (p & HVI_PAGE_MASK) + HVI_PAGE_SIZE) {
        uint64_t room = HVI_PAGE_SIZE - (p & (HVI_PAGE_SIZE - 1));
        uint32_t n = (uint32_t)(c->gva + c->len - p < room ? c->gva + c->len - p : room);
        hvi_gpa gpa;
        hvi_status st = hvi_gva_to_gpa(e, c->cr3, p, &gpa);
        if (st == HVI_OK)
            st = hvi_hook_gpa_add_gva(e, gpa, p, n, HVI_EPT_R | HVI_EPT_W, on_access, c,
                                      &c->hooks[k]);
        if (st != HVI_OK)
            return st;
        hvi_hook_set_owned(c->hooks[k++], true);
    }
    return HVI_OK;
}

hvi_status hvi_memcloak_add(hvi_engine *e, uint64_t cr3, hvi_gva gva, uint32_t len,
                            const void *original, const void *patch, uint32_t flags,
                            hvi_memcloak_write_cb on_write, void *ctx, hvi_memcloak **out)
{
    if (!e || !out || len == 0 || gva + len < gva ||
        ((gva + len - 1) >> 12) - (gva >> 12) > 1 || ((flags & HVI_MEMCLOAK_APPLY_PATCH) && !patch))
        return e ? hvi_fail(e, HVI_E_INVAL, "memcloak: bad region") : HVI_E_INVAL;
    if (!(e->glue.caps & HVI_CAP_EPT))
        return hvi_fail(e, HVI_E_UNSUPPORTED, "memcloak: needs EPT read hooks");
    struct hvi_memcloak *c = calloc(1, sizeof(*c));
    if (c)
        c->original = malloc(len);
    if (!c || !c->original) {
        free(c);
        return HVI_E_NOMEM;
    }
    c->cr3 = cr3 ? cr3 : hvi_mem_kernel_cr3(e);
    c->gva = gva;
    c->len = len;
    c->on_write = on_write;
    c->ctx = ctx;
    hvi_status st = original ? (memcpy(c->original, original, len), HVI_OK)
                             : hvi_gva_read(e, c->cr3, gva, c->original, len);
    if (st == HVI_OK && (flags & HVI_MEMCLOAK_APPLY_PATCH))
        st = hvi_gva_write(e, c->cr3, gva, patch, len);
    if (st == HVI_OK)
        st = hook_pages(e, c);
    if (st != HVI_OK) {
        if (flags & HVI_MEMCLOAK_APPLY_PATCH)
            (void)hvi_gva_write(e, c->cr3, gva, c->original, len);
        cloak_free(e, c);
        return hvi_fail(e, st, "memcloak: cannot cloak 0x%llx", (unsigned long long)gva);
    }
    struct hvi_protect_state *s = hvi_protect_state(e);
    if (!s) {
        hvi_memcloak_remove(e, c, flags);
        return HVI_E_NOMEM;
    }
    c->flags = flags;
    c->next = s->cloaks;
    s->cloaks = c;
    *out = c;
    return HVI_OK;
}

void hvi_memcloak_release_all(hvi_engine *e, struct hvi_protect_state *s)
{
    while (s && s->cloaks) {
        struct hvi_memcloak *c = s->cloaks;
        s->cloaks = c->next;
        if (e && (c->flags & HVI_MEMCLOAK_APPLY_PATCH))
            (void)hvi_gva_write(e, c->cr3, c->gva, c->original, c->len);
        cloak_free(e, c);
    }
}

hvi_status hvi_memcloak_remove(hvi_engine *e, hvi_memcloak *c, uint32_t flags)
{
    if (!e || !c)
        return HVI_E_INVAL;
    struct hvi_protect_state *s = e->protect;
    struct hvi_memcloak **pp = s ? &s->cloaks : NULL;
    while (pp && *pp && *pp != c)
        pp = &(*pp)->next;
    if (pp && *pp)
        *pp = c->next;
    hvi_status st = HVI_OK;
    if (flags & HVI_MEMCLOAK_APPLY_PATCH)
        st = hvi_gva_write(e, c->cr3, c->gva, c->original, c->len);
    cloak_free(e, c);
    return st;
}
