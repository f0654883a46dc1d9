/* Shared fixture for the mem tests: a simulator with one page-table root and an engine. */
#ifndef HVI_TEST_MEM_FIXTURE_H
#define HVI_TEST_MEM_FIXTURE_H

#include "core/engine.h"
#include "hvi_sim.h"

struct fx {
    hvi_sim *sim;
    hvi_engine *e;
    uint64_t cr3;
    hvi_paging_mode mode;
};

static inline bool fx_new(struct fx *f, hvi_paging_mode mode, uint64_t ram)
{
    memset(f, 0, sizeof(*f));
    hvi_sim_config cfg = {.ram_size = ram, .vcpus = 1};
    hvi_glue g;
    if (hvi_sim_new(&cfg, &f->sim) != HVI_OK || hvi_sim_glue(f->sim, &g) != HVI_OK ||
        hvi_engine_new(&g, &f->e) != HVI_OK)
        return false;
    hvi_set_log(f->e, NULL, -1, NULL);
    f->mode = mode;
    if (mode != HVI_PAGING_NONE && hvi_sim_pt_new(f->sim, mode, &f->cr3) != HVI_OK)
        return false;
    hvi_sim_set_paging(f->sim, 0, mode, f->cr3);
    hvi_sim_attach(f->sim, f->e);
    return hvi_mem_set_context(f->e, mode, f->cr3) == HVI_OK;
}

static inline hvi_gpa fx_frame(struct fx *f)
{
    hvi_gpa g = 0;
    (void)hvi_sim_alloc_frame(f->sim, &g);
    return g;
}

static inline hvi_status fx_map(struct fx *f, hvi_gva gva, hvi_gpa gpa, uint64_t size, uint64_t flags)
{
    return hvi_sim_map(f->sim, f->cr3, f->mode, gva, gpa, size, flags);
}

/* Frees the engine then checks the simulator holds no mapping; returns outstanding maps. */
static inline int64_t fx_free(struct fx *f)
{
    hvi_engine_free(f->e);
    int64_t out = hvi_sim_outstanding_maps(f->sim);
    hvi_sim_free(f->sim);
    return out;
}

#endif
