/*
 * hvi protect layer — the unpacker: a watched page that is written and then executed raises an
 * unpack event (execute-after-write), with the page and the writer.
 */
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "hvi/protect.h"
#include "protect_priv.h"

struct unpack_page {
    hvi_unpack_info info;
    hvi_unpack_cb cb;
    hvi_hook *whook, *xhook;
};

static uint32_t on_write(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc, void *ctx)
{
    (void)e;
    (void)hook;
    struct unpack_page *u = ctx;
    u->info.writer_rip = acc->rip;
    u->info.writer_vcpu = acc->vcpu;
    u->info.writes++;
    return HVI_ACTION_ALLOW;
}

static uint32_t on_exec(hvi_engine *e, hvi_hook *hook, const hvi_hook_access *acc, void *ctx)
{
    (void)hook;
    struct hvi_protect *p = ctx;
    struct unpack_page *u = p->priv;
    if (u->info.writes == 0)
        return HVI_ACTION_ALLOW;
    u->info.exec_rip = acc->rip ? acc->rip : acc->gva;
    u->info.exec_vcpu = acc->vcpu;
    uint32_t action = u->cb ? u->cb(e, &u->info, p->desc.ctx) : HVI_ACTION_ALLOW;
    hvi_alert a;
    hvi_alert_init(&a, p->desc.alert_type ? p->desc.alert_type : HVI_ALERT_UNPACK, acc->vcpu);
    a.gpa = u->info.page;
    a.gva = u->info.page_gva;
    a.rip = u->info.exec_rip;
    a.action = action == HVI_ACTION_DENY ? HVI_ALERT_DENIED : HVI_ALERT_ALLOWED;
    hvi_strlcpy(a.object, p->object, sizeof(a.object));
    snprintf(a.detail, sizeof(a.detail), "page written %u time(s), last by rip=0x%llx vcpu=%u",
             u->info.writes, (unsigned long long)u->info.writer_rip, u->info.writer_vcpu);
    if (p->desc.owner)
        p->desc.owner(e, &a, p->desc.ctx);
    hvi_alert_emit(e, &a);
    u->info.writes = 0;
    return action;
}

static void unpack_release(hvi_engine *e, struct hvi_protect *p)
{
    struct unpack_page *u = p->priv;
    if (!u)
        return;
    if (e && u->whook)
        (void)hvi_hook_remove(e, u->whook);
    if (e && u->xhook)
        (void)hvi_hook_remove(e, u->xhook);
    free(u);
    p->priv = NULL;
}

hvi_status hvi_unpack_watch(hvi_engine *e, const hvi_protect_desc *desc, hvi_gpa gpa, hvi_gva gva,
                            hvi_unpack_cb cb, hvi_protect **out)
{
    if (!e || !desc || !out)
        return HVI_E_INVAL;
    if (!(e->glue.caps & HVI_CAP_EPT))
        return hvi_fail(e, HVI_E_UNSUPPORTED, "unpacker: needs EPT execute hooks");
    struct hvi_protect *p = hvi_protect_new(e, desc, PROT_UNPACK);
    struct unpack_page *u = p ? calloc(1, sizeof(*u)) : NULL;
    if (!u) {
        free(p);
        return HVI_E_NOMEM;
    }
    p->priv = u;
    p->release = unpack_release;
    u->cb = cb;
    u->info.page = gpa & HVI_PAGE_MASK;
    u->info.page_gva = gva & HVI_PAGE_MASK;
    hvi_status st = hvi_hook_gpa_add(e, u->info.page, HVI_PAGE_SIZE, HVI_EPT_W, on_write, u,
                                     &u->whook);
    if (st == HVI_OK)
        st = hvi_hook_gpa_add(e, u->info.page, HVI_PAGE_SIZE, HVI_EPT_X, on_exec, p, &u->xhook);
    if (st != HVI_OK) {
        unpack_release(e, p);
        free(p);
        return st;
    }
    hvi_hook_set_owned(u->whook, true);
    hvi_hook_set_owned(u->xhook, true);
    hvi_protect_link(e, p);
    *out = p;
    return HVI_OK;
}
