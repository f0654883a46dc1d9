/* hvi mem — paging mode detection and the engine's translation context. */
#include "mem/mem_internal.h"

/* Intel SDM vol. 3A, 4.1.1 "Four Paging Modes and Five...": CR0.PG selects paging, CR4.PAE
 * selects PAE-or-wider entries, EFER.LME (really LMA once active) selects long mode and CR4.LA57
 * (bit 12) selects five levels. */
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)

hvi_paging_mode hvi_paging_mode_from_regs(uint64_t cr0, uint64_t cr4, uint64_t efer)
{
    if (!(cr0 & CR0_PG))
        return HVI_PAGING_NONE;
    if (!(cr4 & CR4_PAE))
        return HVI_PAGING_32;
    if (!(efer & (EFER_LMA | EFER_LME)))
        return HVI_PAGING_PAE;
    return (cr4 & CR4_LA57) ? HVI_PAGING_5LVL : HVI_PAGING_4LVL;
}

const char *hvi_paging_mode_name(hvi_paging_mode mode)
{
    switch (mode) {
    case HVI_PAGING_NONE: return "none";
    case HVI_PAGING_32: return "32-bit";
    case HVI_PAGING_PAE: return "pae";
    case HVI_PAGING_4LVL: return "4-level";
    case HVI_PAGING_5LVL: return "5-level";
    }
    return "unknown";
}

hvi_status hvi_mem_set_context(hvi_engine *e, hvi_paging_mode mode, uint64_t kernel_cr3)
{
    if (!e || mode > HVI_PAGING_5LVL)
        return HVI_E_INVAL;
    e->guest.paging = mode;
    e->guest.kernel_cr3 = kernel_cr3;
    /* Create the layer state now, before OS layers register their cleanups: cleanups run in
     * reverse order, so the GPA cache outlives every layer that may still touch memory. */
    if (!mem_state(e))
        return HVI_E_NOMEM;
    hvi_mem_flush_translations(e, 0);
    return HVI_OK;
}

hvi_paging_mode hvi_mem_paging_mode(const hvi_engine *e)
{
    return e ? e->guest.paging : HVI_PAGING_NONE;
}

uint64_t hvi_mem_kernel_cr3(const hvi_engine *e)
{
    return e ? e->guest.kernel_cr3 : 0;
}
