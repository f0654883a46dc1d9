#include "hook_fixture.h"

#include <stdio.h>
#include <string.h>

bool fx_init(struct fx *f, uint64_t caps)
{
    hvi_sim_config cfg = {.ram_size = 8u << 20, .vcpus = 1};
    hvi_glue g;
    memset(f, 0, sizeof(*f));
    if (hvi_sim_new(&cfg, &f->sim) != HVI_OK)
        return false;
    if (caps)
        hvi_sim_set_caps(f->sim, caps);
    if (hvi_sim_pt_new(f->sim, HVI_PAGING_4LVL, &f->cr3) != HVI_OK ||
        hvi_sim_set_paging(f->sim, 0, HVI_PAGING_4LVL, f->cr3) != HVI_OK)
        return false;
    for (int i = 0; i < FX_PAGES; i++) {
        hvi_gpa spare;
        /* leave a gap so neighbouring pages are not physically contiguous */
        if (hvi_sim_alloc_frame(f->sim, &spare) != HVI_OK ||
            hvi_sim_alloc_frame(f->sim, &f->gpa[i]) != HVI_OK ||
            hvi_sim_map(f->sim, f->cr3, HVI_PAGING_4LVL, FX_GVA + (uint64_t)i * 4096, f->gpa[i],
                        HVI_SIM_4K, HVI_SIM_PTE_W) != HVI_OK)
            return false;
        uint8_t fill[4096];
        for (int k = 0; k < 4096; k++)
            fill[k] = (uint8_t)(k * 7 + i);
        hvi_sim_phys_write(f->sim, f->gpa[i], fill, sizeof(fill));
    }
    if (hvi_sim_glue(f->sim, &g) != HVI_OK || hvi_engine_new(&g, &f->e) != HVI_OK)
        return false;
    hvi_set_log(f->e, NULL, -1, NULL);
    hvi_sim_attach(f->sim, f->e);
    if (hvi_mem_set_context(f->e, HVI_PAGING_4LVL, f->cr3) != HVI_OK)
        return false;
    f->regs = hvi_sim_vcpu_regs(f->sim, 0);
    f->regs->rip = FX_GVA + 3 * 4096;
    f->regs->gpr[HVI_RSP] = FX_GVA + 3 * 4096 + 0x800;
    f->regs->seg[HVI_CS].ar = 0xa09b; /* 64-bit code */
    return true;
}

void fx_fini(struct fx *f)
{
    if (f->sim)
        hvi_sim_attach(f->sim, NULL);
    hvi_engine_free(f->e);
    hvi_sim_free(f->sim);
    memset(f, 0, sizeof(*f));
}
