/* Shared simulator setup for the hook tests: one 4-level guest with a few kernel pages. */
#ifndef HOOK_FIXTURE_H
#define HOOK_FIXTURE_H

#include "hvi/hook.h"
#include "hvi/hvi.h"
#include "hvi/mem.h"
#include "hvi_sim.h"

#define FX_PAGES 4
#define FX_GVA 0xffffffff81000000ull

struct fx {
    hvi_sim *sim;
    hvi_engine *e;
    uint64_t cr3;
    hvi_gpa gpa[FX_PAGES]; /* frame of FX_GVA + i * 4 KiB (not contiguous) */
    hvi_regs *regs;        /* vCPU 0 live registers */
};

/* caps 0 = everything. Returns false (and prints why) when the setup fails. */
bool fx_init(struct fx *f, uint64_t caps);
void fx_fini(struct fx *f);

#endif
