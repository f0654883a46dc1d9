/* hvi api — guest attach (new-guest notification) and live support update.
 *
 * This is the top of the engine: it may call every layer. Each layer that takes part in
 * activation adds its step here, in order: support data -> paging context -> OS layer. */
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "hvi/cami.h"
#include "guest/linux/lix.h"
#include "guest/windows/win.h"

static hvi_status read_paging_context(hvi_engine *e)
{
    hvi_regs regs;
    memset(&regs, 0, sizeof(regs));
    hvi_status st = e->glue.get_regs(e->glue.ctx, 0, HVI_REGS_CR | HVI_REGS_EFER, &regs);
    if (st != HVI_OK)
        return hvi_fail(e, HVI_E_BACKEND, "reading vCPU 0 control registers: %s", hvi_strstatus(st));
    hvi_paging_mode mode = hvi_paging_mode_from_regs(regs.cr0, regs.cr4, regs.efer);
    /* CR3 bits 11:0 hold PCID/flags in long mode; the table base is what the walker needs. */
    uint64_t cr3 = regs.cr3 & (mode == HVI_PAGING_32 ? 0xFFFFF000ull : 0x000FFFFFFFFFF000ull);
    if (mode == HVI_PAGING_PAE)
        cr3 = regs.cr3 & 0xFFFFFFE0ull;
    return hvi_mem_set_context(e, mode, cr3);
}

hvi_status hvi_new_guest(hvi_engine *e, const hvi_guest_params *p)
{
    if (!e || !p || p->size < sizeof(hvi_guest_params))
        return HVI_E_INVAL;
    if (e->guest.attached)
        return hvi_fail(e, HVI_E_STATE, "a guest is already attached to this engine");
    uint32_t vcpus = 0;
    hvi_status st = e->glue.vcpu_count(e->glue.ctx, &vcpus);
    if (st != HVI_OK || vcpus == 0)
        return hvi_fail(e, HVI_E_BACKEND, "backend reports no vCPU");
    /* CAMI: validate and install the support data first; bad data leaves the engine unchanged */
    if (p->support && p->support_len) {
        st = hvi_cami_engine_load(e, p->support, p->support_len);
        if (st != HVI_OK)
            return st;
    }
    st = read_paging_context(e);
    if (st != HVI_OK)
        return st;
    if (p->os_hint == HVI_OS_LINUX || p->os_hint == HVI_OS_UNKNOWN) {
        st = lix_activate(e);
        /* an unknown guest that is not Linux stays memory-only; a found kernel with no
         * support entry is refused (the message names its version) */
        if (st != HVI_OK && (p->os_hint == HVI_OS_LINUX || lix_get(e)))
            return st;
    }
    if (!lix_get(e) && (p->os_hint == HVI_OS_WINDOWS || p->os_hint == HVI_OS_UNKNOWN)) {
        st = win_activate(e);
        /* same rule as Linux: a found ntoskrnl without a support entry is refused by build */
        if (st != HVI_OK && (p->os_hint == HVI_OS_WINDOWS || win_get(e)))
            return st;
    }
    e->guest.vcpus = vcpus;
    e->guest.os = lix_get(e) ? (uint32_t)HVI_OS_LINUX
                             : win_get(e) ? (uint32_t)HVI_OS_WINDOWS : p->os_hint;
    e->guest.attached = true;
    e->detaching = false;
    st = hvi_options_set(e, p->options);
    return st != HVI_OK ? st : hvi_cami_engine_apply_options(e); /* CAMI ForceOff */
}

hvi_status hvi_update_support(hvi_engine *e, const void *buf, size_t len)
{
    if (!e || !buf || !len)
        return HVI_E_INVAL;
    /* CAMI live update: the OS entry selected at start stays, the rest takes effect now */
    return hvi_cami_engine_update(e, buf, len);
}
