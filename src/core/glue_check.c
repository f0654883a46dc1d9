/* hvi core — validation of a backend's glue table. */
#include <stddef.h>

#include "hvi/glue.h"

/* The size of the version-1 table: everything up to and including inject_exception. */
#define GLUE_V1_SIZE (offsetof(hvi_glue, inject_exception) + sizeof(((hvi_glue *)0)->inject_exception))

struct cap_need {
    uint64_t cap;
    size_t off;
};

/* Each capability bit and the member that must then be present. */
static const struct cap_need cap_needs[] = {
    {HVI_CAP_REGS_WRITE, offsetof(hvi_glue, set_regs)},
    {HVI_CAP_MSR_READ, offsetof(hvi_glue, get_msr)},
    {HVI_CAP_MSR_WRITE, offsetof(hvi_glue, set_msr)},
    {HVI_CAP_EPT, offsetof(hvi_glue, set_ept_rights)},
    {HVI_CAP_EPT, offsetof(hvi_glue, get_ept_rights)},
    {HVI_CAP_REG_EXITS, offsetof(hvi_glue, enable_exit)},
    {HVI_CAP_BREAKPOINT, offsetof(hvi_glue, set_breakpoint)},
    {HVI_CAP_WATCHPOINT, offsetof(hvi_glue, set_watchpoint)},
    {HVI_CAP_WATCH_RANGE, offsetof(hvi_glue, set_watchpoint)},
    {HVI_CAP_SINGLE_STEP, offsetof(hvi_glue, single_step)},
    {HVI_CAP_PAUSE, offsetof(hvi_glue, pause)},
    {HVI_CAP_PAUSE, offsetof(hvi_glue, resume)},
    {HVI_CAP_INJECT, offsetof(hvi_glue, inject_exception)},
    {HVI_CAP_VEC_REGS, offsetof(hvi_glue, get_vec_reg)},
};

static int member_missing(const hvi_glue *glue, size_t off)
{
    /* Every member checked is a function pointer; a NULL one is all zero bytes on the
     * platforms hvi supports. */
    if (off + sizeof(void (*)(void)) > glue->size)
        return 1; /* an appended member the backend's table does not reach */
    const unsigned char *p = (const unsigned char *)glue + off;
    for (size_t i = 0; i < sizeof(void (*)(void)); i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

hvi_status hvi_glue_check(const hvi_glue *glue)
{
    if (!glue)
        return HVI_E_INVAL;
    if (glue->version != HVI_GLUE_VERSION || glue->size < GLUE_V1_SIZE)
        return HVI_E_VERSION;
    if (!glue->vcpu_count || !glue->get_regs || !glue->map_gpa || !glue->unmap_gpa)
        return HVI_E_INVAL;
    for (size_t i = 0; i < sizeof(cap_needs) / sizeof(cap_needs[0]); i++)
        if ((glue->caps & cap_needs[i].cap) && member_missing(glue, cap_needs[i].off))
            return HVI_E_INVAL;
    return HVI_OK;
}
